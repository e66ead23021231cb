/* trace.h: distributed tracing. W3C Trace Context in and out, spans exported as OTLP/HTTP JSON.
 *
 * A proxied request carries a small fixed trace context in its request object
 * (gh_trace_ctx_t: no allocation). session.c begins it from the caller's traceparent /
 * tracestate (gh_trace_begin), gives every upstream try a span id that the backend sees as
 * the parent in the traceparent it receives (gh_trace_try_begin/_end), and at the end of a
 * sampled request copies one record (the server span, its try spans, the cache and
 * protection events) into its worker's single-producer ring (gh_trace_record). A worker
 * never blocks: a full ring drops the record and counts its spans. One exporter thread
 * drains the rings, turns records into an OTLP ExportTraceServiceRequest and POSTs batches
 * (up to tracing.batch spans, or every second) to {endpoint}/v1/traces over HTTP/1.1,
 * blocking on its own thread with timeouts and a bounded retry. The body is OTLP/HTTP JSON
 * or protobuf (tracing.protocol; protoc-c code generated from proto/opentelemetry/), both
 * written from one reading of a record so they carry the same spans. An https:// collector
 * is reached over TLS (OpenSSL: SNI, its certificate verified against tracing.ca_file or
 * the system's CAs); a failed handshake is a failed export.
 *
 * HTTP/1 and HTTP/2 upstreams alike: session.c writes every upstream request head as
 * HTTP/1.1 with the traceparent in it and patches each try's span id into it; h2up.c turns
 * that head into the HEADERS of an HTTP/2 stream, so the backends of `http2: true` pools
 * (gRPC) see the same traceparent and tracestate, and their tries are spans the same way.
 *
 * Called by session.c (the context, records), main.c (start/stop) and metrics.c (counters). */
#ifndef GH_OBS_TRACE_H
#define GH_OBS_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define GH_TRACE_MAX_TRIES 8 /* try spans recorded per request; later tries still propagate */
#define GH_TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */

/* How an upstream try ended. */
enum {
    GH_TT_OPEN = 0, /* still running: closed with the request */
    GH_TT_OK,            /* a response was relayed */
    GH_TT_RETRIED,       /* a response with a retried status, dropped for another try */
    GH_TT_CONNECT_ERROR, /* no connection (refused, TLS, breaker) */
    GH_TT_TIMEOUT,
    GH_TT_RESET,         /* the backend closed before a complete response */
    GH_TT_BAD_RESPONSE,
    GH_TT_ABORTED,       /* the request ended (client gone) before the try finished */
    GH_TT__COUNT
};
extern const char *const gh_trace_outcome_names[GH_TT__COUNT];

typedef struct {
    uint8_t span_id[8];
    uint8_t outcome; /* GH_TT_* */
    uint8_t num;     /* 1-based try number */
    uint16_t status; /* the backend's status, or 0 */
    uint64_t start_us, end_us; /* monotonic (the session's now_us) */
    const char *backend;       /* owned by the request's snapshot (held until the record is made) */
} gh_trace_try_t;

/* The per-request context: all zero means "not traced". */
typedef struct {
    uint8_t on;        /* propagated (a traceparent goes to the backend) */
    uint8_t sampled;   /* spans are recorded */
    uint8_t parent_ok; /* the caller sent a valid traceparent */
    uint8_t ntries;    /* tries started (try spans recorded: at most GH_TRACE_MAX_TRIES) */
    uint8_t trace_id[16], parent_id[8], span_id[8];
    uint32_t tp_off;   /* offset in the upstream head of the traceparent's parent-id hex (0: none) */
    uint64_t wall_ns;  /* unix ns at the request's start */
    uint64_t decide_us; /* monotonic: when routing, protection and the cache lookup ran */
    gh_str_t tracestate; /* the caller's (a view into the request head), when parent_ok */
    gh_trace_try_t tries[GH_TRACE_MAX_TRIES];
} gh_trace_ctx_t;

/* Whether the exporter runs: the request path's one branch. */
extern int gh_trace_active;
static inline int gh_trace_on(void) { return __atomic_load_n(&gh_trace_active, __ATOMIC_RELAXED); }

/* Parse a traceparent value strictly (version 00, exactly 55 bytes, lowercase hex, trace and
 * parent ids not all zero). 0, or GH_EINVAL. */
int gh_trace_parse(const char *p, size_t n, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags);
/* Write 2*n lowercase hex digits of p to out. */
void gh_trace_hex(char *out, const uint8_t *p, size_t n);
/* Format "00-TRACE-SPAN-FLAGS" (GH_TRACEPARENT_LEN bytes, no NUL) into out. */
void gh_trace_format(char *out, const uint8_t trace_id[16], const uint8_t span_id[8], int sampled);

/* Begin t from the caller's traceparent (tp.n == 0: none; invalid: ignored, a new trace),
 * sampling new traces with probability ratio or following the caller's flag when
 * respect_parent. rnd gives 64 random bits. */
void gh_trace_begin(gh_trace_ctx_t *t, gh_str_t tp, double ratio, int respect_parent, uint64_t (*rnd)(void *),
                    void *arg, uint64_t now_us, uint64_t wall_ns);
/* A try starts on backend (a name the snapshot owns): a new span id, returned for the
 * traceparent sent with it. */
const uint8_t *gh_trace_try_begin(gh_trace_ctx_t *t, const char *backend, uint64_t rnd, uint64_t now_us);
/* The current try got a response head with status (it stays open until the request ends). */
void gh_trace_try_status(gh_trace_ctx_t *t, int status);
/* The current try ended with outcome (GH_TT_*), if it is still open. */
void gh_trace_try_end(gh_trace_ctx_t *t, int outcome, uint64_t now_us);

/* What the server span says, at the request's end (views copied into the record). */
typedef struct {
    const gh_trace_ctx_t *ctx;
    uint64_t start_us, end_us; /* monotonic */
    int status;
    gh_str_t method, path, host, tenant, route, client, proto, upstream, request_id;
    gh_str_t cache;                    /* the cache's result, or empty: an event */
    gh_str_t prot_action, prot_reason, prot_detail; /* a protection decision, or empty: an event */
} gh_trace_req_t;

/* Copy a sampled request's spans into producer slot's ring; 0, or GH_ELIMIT when dropped
 * (counted). */
int gh_trace_record(uint32_t slot, const gh_trace_req_t *q);

/* The exporter's body format (tracing.protocol). */
enum { GH_TRACE_PROTO_JSON = 0, GH_TRACE_PROTO_PROTOBUF = 1 };

/* How the exporter that gh_trace_start starts talks to its collector: protocol
 * (GH_TRACE_PROTO_*) and, for an https:// endpoint, the PEM file of the CAs that verify it
 * (NULL: the system's). Called before gh_trace_start (default: JSON, the system's CAs). */
void gh_trace_set_export(int protocol, const char *ca_file);

/* Start the exporter for nslots producers (before the workers start). endpoint is
 * "http[s]://host[:port][/prefix]". 0, or a negative code (a CA file that does not load:
 * GH_EINVAL, logged). */
int gh_trace_start(const char *endpoint, const char *service_name, const char *service_version, uint32_t batch,
                   uint32_t nslots);
/* Export what is queued (bounded) and stop the exporter. */
void gh_trace_stop(void);

typedef struct {
    uint64_t exported;      /* spans accepted by the collector */
    uint64_t dropped_ring;  /* spans lost to a full ring */
    uint64_t dropped_export; /* spans lost to failed exports (after the retries) */
    uint64_t exports_ok, exports_failed; /* POSTs */
} gh_trace_stats_t;
/* Counters, summed (any thread); all zero when tracing is off. */
void gh_trace_stats(gh_trace_stats_t *s);

/* Exposed for tests: the JSON of one record's spans appended to out (cap bytes); returns
 * the length, or 0 when it did not fit. */
size_t gh_trace_record_json(char *out, size_t cap, const void *rec, size_t len, int *nspans);
/* Exposed for tests: the ExportTraceServiceRequest (OTLP protobuf) of len bytes of
 * concatenated records, with the resource's service.name and service.version: malloc'd
 * bytes (*out_len long, *nspans spans), or NULL when a record is bad or memory ran out. */
uint8_t *gh_trace_records_protobuf(const void *recs, size_t len, const char *service_name,
                                   const char *service_version, size_t *out_len, int *nspans);
/* Exposed for tests: serialize q as a ring record into out (cap >= 64); returns its length. */
size_t gh_trace_record_encode(char *out, size_t cap, const gh_trace_req_t *q);

#endif
