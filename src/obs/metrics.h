/* metrics.h: counters and histograms, written per thread, summed when read.
 *
 * Each series (per route, per upstream, per thread) has one slot per thread
 * (workers and the admin thread), each slot on its own cache lines. A thread only
 * ever writes its own slot, with relaxed atomic stores, so the request path takes
 * no lock and shares no cache line; the admin thread reads all slots and renders
 * Prometheus text. Series are created (under a mutex, off the request path) when a
 * configuration is bound, and live for the process: a reload that keeps a route's
 * name keeps its counters.
 *
 * Called by workers (increments), the config reload path (gh_metrics_bind) and the
 * admin listener (gh_metrics_render). */
#ifndef GH_OBS_METRICS_H
#define GH_OBS_METRICS_H

#include <stdint.h>

#include "config/config.h"
#include "core/common.h"

#define GH_HIST_BUCKETS 14 /* 1ms .. 10s, then +Inf */

typedef struct {
    uint64_t code[5];                 /* responses by class 1xx..5xx */
    uint64_t hist[GH_HIST_BUCKETS];   /* request duration, cumulative on render */
    uint64_t sum_us;
    uint64_t bytes_in, bytes_out;
    uint64_t cache[7];                /* cache results (GH_CR_*), on routes that cache */
    uint64_t rules[4];                /* request rules applied (GH_RULE_*: header edits, redirect, rewrite, respond) */
    uint64_t fn[3];                   /* edge function invocations: ok, error, limit */
} __attribute__((aligned(GH_CACHELINE))) gh_route_slot_t;

/* Cache results (gatehouse_cache_requests_total, the access log's "cache"). */
enum { GH_CR_NONE = 0, GH_CR_HIT, GH_CR_STALE, GH_CR_MISS, GH_CR_REVALIDATED, GH_CR_BYPASS, GH_CR_ERROR };
extern const char *const gh_cache_result_names[7];

typedef struct gh_route_stats {
    struct gh_route_stats *next;
    char *tenant, *route;
    gh_route_slot_t slot[];
} gh_route_stats_t;

typedef struct {
    uint64_t requests;
    uint64_t connect_errors;
    uint64_t timeouts;
    uint64_t failures;      /* reset/closed before a complete response */
    uint64_t conns_opened;  /* new upstream connections */
    uint64_t conns_reused;  /* requests sent on a pooled connection */
    uint64_t retries;       /* attempts after the first, on another backend */
    uint64_t budget_exhausted; /* retries refused by the retry budget */
    uint64_t ejections;     /* backends ejected by passive health checking */
    uint64_t overflows;     /* requests refused (503) by the pool's circuit breaker */
    uint64_t tls_failures;  /* TLS handshakes with a backend that failed */
} __attribute__((aligned(GH_CACHELINE))) gh_upstream_slot_t;

typedef struct gh_upstream_stats {
    struct gh_upstream_stats *next;
    char *name;
    /* live counts shared by all workers (atomics), for circuit breaking; they
     * outlive snapshots because connections do */
    struct {
        uint32_t conns;    /* open connections to the pool's backends */
        uint32_t requests; /* requests in flight to the pool (counted only when max_requests is set) */
        uint32_t pending;  /* requests waiting for a new connection to be established */
    } live __attribute__((aligned(GH_CACHELINE)));
    gh_upstream_slot_t slot[];
} gh_upstream_stats_t;

/* One backend as one worker sees it. Besides counters it holds the worker's passive
 * health state of the backend, so that an ejection outlives a reload or a DNS
 * change (the slot lives in the backend's record, keyed by upstream and name). */
typedef struct {
    uint64_t requests;      /* tries sent */
    uint64_t failures;      /* tries failed: connect error, reset, timeout, 502/503/504 */
    uint64_t ejections;     /* times this worker ejected it */
    uint64_t active;        /* gauge: tries in flight */
    uint64_t latency_us;    /* EWMA (alpha 1/8) of the time to the response head */
    uint64_t ejected_until; /* monotonic ms (gh_clock_ms); ejected while now is below */
    uint32_t fails;         /* failures in a row */
    uint32_t level;         /* ejection backoff level: the next ejection lasts base << level */
} __attribute__((aligned(GH_CACHELINE))) gh_backend_slot_t;

/* HTTP/2 protections (gatehouse_h2_protections_total{kind=...}). */
#define GH_H2_PROTECTIONS(X)                                                                       \
    X(RAPID_RESET, "rapid_reset") X(CONTINUATION, "continuation") X(HEADER_LIST, "header_list")      \
    X(SETTINGS_FLOOD, "settings_flood") X(PING_FLOOD, "ping_flood") X(PRIORITY_FLOOD, "priority_flood") \
    X(WINDOW_UPDATE_FLOOD, "window_update_flood") X(ZERO_WINDOW, "zero_window")                       \
    X(REFUSED_STREAM, "refused_stream")
enum {
#define X(n, s) GH_H2P_##n,
    GH_H2_PROTECTIONS(X)
#undef X
        GH_H2P__COUNT
};

typedef struct {
    uint64_t conns_active; /* gauge, owned by this thread */
    uint64_t conns_accepted;
    uint64_t conns_rejected;   /* over the connection cap */
    uint64_t requests;
    uint64_t no_site;          /* 404: no site for Host */
    uint64_t no_route;         /* 404: no route in site */
    uint64_t access_log_dropped;
    uint64_t tls_handshakes;   /* completed */
    uint64_t tls_resumed;      /* of which resumed a session (ticket) */
    uint64_t tls_failed;       /* failed or abandoned handshakes */
    uint64_t tls_plain_http;   /* plain HTTP sent to a TLS listener (answered 400) */
    uint64_t h2_conns;         /* HTTP/2 connections */
    uint64_t h2_streams;       /* HTTP/2 streams (requests) */
    uint64_t h2_goaways;       /* GOAWAY frames sent */
    uint64_t h2_protections[GH_H2P__COUNT]; /* connections or streams cut, by attack kind */
    uint64_t parser_rejections[GH_E__COUNT]; /* by GH_E* index */
} __attribute__((aligned(GH_CACHELINE))) gh_thread_stats_t;

/* Counter increment by the slot's owner thread (single writer, racing readers). */
#define GH_COUNT(field, n) __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)
#define GH_READ(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* Once, before any thread starts: nslots = workers + admin thread. */
int gh_metrics_init(uint32_t nslots);
/* Point every route and upstream of c at its series (created on first sight), and follow
 * c's SLOs (slo.h). */
int gh_metrics_bind(gh_conf_t *c);
gh_thread_stats_t *gh_metrics_thread(uint32_t slot);
/* Slots per series (workers + admin thread). */
uint32_t gh_metrics_nslots(void);
/* The upper bound (us) of duration histogram bucket b (UINT64_MAX for the last, +Inf). */
uint64_t gh_metrics_bucket_us(int b);
/* Record one finished request on a route. */
void gh_metrics_request(gh_route_stats_t *s, uint32_t slot, int status, uint64_t dur_us,
                        uint64_t bytes_in, uint64_t bytes_out);
/* Record a cache result (GH_CR_*) on a route. */
void gh_metrics_cache(gh_route_stats_t *s, uint32_t slot, int result);
/* Process-wide counters bumped by the main thread. */
void gh_metrics_reload(int ok);
/* Render everything as Prometheus text (malloc'd, *len set). NULL on ENOMEM. */
char *gh_metrics_render(size_t *len);

/* A growing text (Prometheus rendering): p malloc'd with cap bytes at first; oom once a grow failed. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} gh_text_t;
void gh_text_printf(gh_text_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A label value escaped per the exposition format (\\, \", \n) into out (cut to fit). */
const char *gh_metrics_esc(const char *s, char *out, size_t cap);

#endif
