/* worker.h: worker threads, their listeners, configuration generations, reload and drain.
 *
 * One worker thread per core, each with its own loop, SO_REUSEPORT listening sockets,
 * buffer pool, upstream connection pools and counters; plus one admin thread, built
 * the same way, that serves only the admin listener. Configuration reaches a worker
 * as a refcounted snapshot dropped in its mailbox; the worker switches to it between
 * events. Each request holds the generation it started on (a per-worker count, no
 * atomics), and a generation's snapshot is released when its last request ends.
 *
 * Called by main.c (start, reload, drain) and session.c (generations, pools). */
#ifndef GH_PROXY_WORKER_H
#define GH_PROXY_WORKER_H

#include <pthread.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/loop.h"
#include "http/h1.h"
#include "obs/metrics.h"

struct gh_lb;

/* A worker's view of one upstream pool: its balancer, passive health (outlier
 * ejection) and retry budget. Per worker, so nothing here is shared or locked; each worker ejects a
 * backend from what it sees itself. Created on first use. */
typedef struct {
    struct gh_lb *lb;
    uint8_t *ok;       /* not ejected (the ejection itself is in the backend's slot) */
    uint8_t *scratch;  /* ok minus the backends a request already tried */
    uint32_t nejected;
    double retry_tokens;      /* the pool's retry budget on this worker: a token bucket */
    uint64_t retry_refill_ms; /* loop time of its last time-based refill */
} gh_upstate_t;

typedef struct gh_gen {
    gh_conf_t *conf;
    uint32_t nreq;       /* requests of this worker running on it */
    gh_upstate_t *up;    /* per upstream (conf->nupstreams) */
    struct gh_lua **lua; /* per tenant (conf->ntenants): its edge functions' Lua state, made on first use */
    struct gh_gen *next; /* retired generations still in use */
} gh_gen_t;

struct gh_worker;

typedef struct {
    gh_io_t io;
    struct gh_worker *w;
    const gh_conf_listener_t *conf; /* from the first configuration (listeners are fixed) */
    gh_timer_t paused; /* out of file descriptors: accepting resumes when it fires */
} gh_listener_t;

struct gh_client;
struct gh_uppool;

/* Work handed to a worker's thread from any thread (gh_worker_post). */
typedef struct gh_wtask {
    struct gh_wtask *next;
    void (*fn)(struct gh_wtask *t); /* runs on the worker's thread; may free t */
} gh_wtask_t;

#define GH_UPPOOL_BUCKETS 256

typedef struct gh_worker {
    uint32_t id; /* metrics and access-log slot */
    int is_admin;
    pthread_t thread;
    gh_loop_t loop;
    gh_bufpool_t bufs;
    gh_io_t notify; /* eventfd: new configuration or drain */
    gh_conf_t *mailbox; /* next configuration, referenced; taken with an atomic exchange */
    int rotate;         /* atomic: the next switch also sends GOAWAY to HTTP/2 connections */
    gh_gen_t *gen;      /* current */
    gh_gen_t *retired;
    gh_listener_t *listeners;
    uint32_t nlisteners;
    struct gh_client *conns; /* all client connections, for drain */
    uint32_t nconns;
    gh_thread_stats_t *stats;
    uint64_t rng[2];
    struct gh_uppool *pools[GH_UPPOOL_BUCKETS];
    struct gh_h2up *h2ups; /* HTTP/2 connections to backends (h2up.c) */
    gh_h1_header_t *hdrs; /* parse scratch, GH_MAX_HEADERS entries */
    void *req_free; /* recycled request objects */
    uint32_t nreq_free;
    char date[40];        /* "Date: ...\r\n" for direct responses */
    uint64_t date_sec;
    int draining;
    int exited;
    int cache_wake;      /* atomic: a fetch some request here waits on is done */
    void *cache_waiters; /* requests waiting for another's fetch (session.c) */
    void *streams;       /* requests with a streamed answer (session.c) */
    void *deferred;      /* requests whose answer comes later (session.c) */
    uint64_t defer_seq;
    gh_wtask_t *tasks;   /* posted by other threads (gh_worker_post), a lock-free stack */
    void *analytics;     /* routes' analytics windows (obs/analytics.c) */
} gh_worker_t;

#define GH_MAX_HEADERS 1000

/* Create listening sockets and threads for c (workers + admin). Errors are logged. */
int gh_workers_start(gh_conf_t *c);
/* Hand a new snapshot to every thread (takes its own references). rotate: an
 * operator's reload: HTTP/2 connections get a graceful GOAWAY so that clients move to
 * new connections (and new certificates); DNS rebuilds leave connections alone. */
void gh_workers_publish(gh_conf_t *c, int rotate);
/* Stop accepting, finish in-flight requests up to timeout_ms, then return. */
void gh_workers_drain(uint32_t timeout_ms);
/* Whether the process is draining (readyz answers 503). */
int gh_workers_draining(void);

/* Generations, used by session.c. */
static inline gh_gen_t *gh_gen_hold(gh_worker_t *w)
{
    w->gen->nreq++;
    return w->gen;
}
void gh_gen_release(gh_worker_t *w, gh_gen_t *g);

/* Random 64 bits from the worker's generator (xorshift128+, seeded by getrandom). */
uint64_t gh_worker_rand(gh_worker_t *w);
/* Run t->fn(t) on worker id's thread, soon (any thread; lock-free). */
void gh_worker_post(uint32_t id, gh_wtask_t *t);
/* The worker whose thread this is, or NULL. */
gh_worker_t *gh_worker_self(void);
/* Wake worker id: a cache fetch its requests wait on is done (any thread). */
void gh_worker_cache_poke(uint32_t id);
/* "Date: <IMF-fixdate>\r\n", refreshed once a second. */
const char *gh_worker_date(gh_worker_t *w);

#endif
