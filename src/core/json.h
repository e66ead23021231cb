/* json.h: writing a JSON string, the one escaper of the tree (access log, OFREP, the demo
 * origin). Calls nothing. */
#ifndef GH_CORE_JSON_H
#define GH_CORE_JSON_H

#include "core/common.h"

/* Write s as a JSON string ("..." with ", \ and control bytes escaped as \u00XX) into
 * out[0..cap). utf8: bytes >= 0x80 are copied (s is known to be UTF-8, e.g. from a parsed
 * JSON document); otherwise they are escaped one by one too (bytes from the wire, for a log
 * that must stay valid JSON). When it does not fit, the content is cut at an escape
 * boundary and the string still closed. Returns the length of the result (0 when cap < 2);
 * bytes of out past it but before cap may have been used as scratch. */
size_t gh_json_str(char *out, size_t cap, gh_str_t s, int utf8);

#endif
