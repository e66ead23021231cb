/* json.c: see json.h. */
#include "core/json.h"

size_t gh_json_str(char *out, size_t cap, gh_str_t s, int utf8)
{
    static const char hex[] = "0123456789abcdef";
    if (cap < 2)
        return 0;
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c == '"' || c == '\\') {
            if (n + 2 + 1 > cap)
                break;
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8)) {
            if (n + 6 + 1 > cap)
                break;
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            if (n + 1 + 1 > cap)
                break;
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    return n;
}
