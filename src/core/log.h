/* log.h: the error log (stderr), one line per message, written with one write(2)
 * so threads never interleave. Not the access log (src/obs/accesslog.h). */
#ifndef GH_CORE_LOG_H
#define GH_CORE_LOG_H

enum { GH_LOG_ERROR = 0, GH_LOG_WARN, GH_LOG_INFO, GH_LOG_DEBUG };

extern int gh_log_level; /* messages above it are dropped; default GH_LOG_INFO */

void gh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
