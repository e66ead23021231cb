/* accesslog.h: the JSON-lines access and exposure logs, written off the worker threads.
 *
 * A worker copies one record per request into its own single-producer ring (the access log:
 * the fields, unformatted; the exposure log: its line); a writer thread drains all rings every
 * few milliseconds, formats the access records in a batch and writes them to the file, syslog
 * and the event stream. A worker never blocks on the disk: when its ring is full the record is
 * dropped and counted (gatehouse_access_log_dropped_total).
 *
 * Called by workers (gh_accesslog_log) and main (start/stop). */
#ifndef GH_OBS_ACCESSLOG_H
#define GH_OBS_ACCESSLOG_H

#include <stdint.h>

#include "core/common.h"

typedef struct { /* the numbers first, then the strings (the rings copy the numbers as one block) */
    uint64_t time_ms; /* wall clock, ms since the epoch, at request start */
    int status;
    uint64_t bytes_in, bytes_out;
    int64_t upstream_us; /* -1 when no upstream was used */
    uint64_t total_us;
    gh_str_t client, tenant, route, method, host, path, query, upstream, request_id;
    gh_str_t tls, ja4; /* TLS version and client fingerprint; empty over plain HTTP */
    gh_str_t proto;    /* "HTTP/1.1", "HTTP/2" */
    gh_str_t protect_reason, protect_action, protect_detail; /* a protection decision, or empty */
    gh_str_t flag, variant; /* a route's flag and the variant served (an exposure), or empty */
    gh_str_t cache; /* the cache's result (hit, stale, miss, revalidated, bypass, error, refresh), or empty */
} gh_access_rec_t;

/* Open path ("-" = stdout) and start the writer for nslots producer threads. Past max_size
 * bytes (0: never) the writer rotates the file: path.N-1 -> path.N up to keep, path -> path.1,
 * and a new path. */
int gh_accesslog_start(const char *path, uint32_t nslots, uint64_t max_size, uint32_t keep);
/* The access log to syslog instead: address "/dev/log" (a datagram socket) or host:port (UDP);
 * each line becomes one RFC 5424 message (severity informational, APP-NAME tag, the JSON line
 * as MSG). Same rings and writer. */
int gh_accesslog_start_syslog(const char *address, uint32_t nslots, uint32_t facility, const char *tag);
/* Reopen the log files on the writer's next round (SIGUSR1, after logrotate moved them). */
void gh_accesslog_reopen(void);
/* Whether the log is on. */
int gh_accesslog_enabled(void);
/* Copy a record into producer slot's ring (the writer formats it); 0, or GH_ELIMIT when dropped. */
int gh_accesslog_log(uint32_t slot, const gh_access_rec_t *r);
/* The exposure log: one line per flag evaluation that serves an experiment (a route's flag
 * with exposure on), {"time","tenant","route","flag","variant","reason","unit","request_id"},
 * the unit being the targeting key the variant was chosen for. Same writer, same rules. */
typedef struct {
    uint64_t time_ms;
    gh_str_t tenant, route, flag, variant, reason, unit, request_id;
} gh_exposure_rec_t;
int gh_exposurelog_start(const char *path, uint32_t nslots);
int gh_exposurelog_enabled(void);
int gh_exposurelog_log(uint32_t slot, const gh_exposure_rec_t *e);
size_t gh_exposurelog_format(char *out, size_t cap, const gh_exposure_rec_t *e); /* cap >= 64 */

/* After gh_stream_start: access records and exposures also go to the event stream (when it
 * publishes their kind), each kind through its log's rings (made here when the log is off); the
 * writer formats each record once and hands the line to the file and to gh_stream_put_many.
 * The *_enabled calls above then say 1 even when the files are off. */
int gh_accesslog_stream_start(uint32_t nslots);

/* Flush everything queued (both logs) and stop the writer. */
void gh_accesslog_stop(void);
/* Format r as one JSON line into out (cap >= 256); returns its length (truncated fields
 * keep the line valid JSON). Exposed for tests. */
size_t gh_accesslog_format(char *out, size_t cap, const gh_access_rec_t *r);

#endif
