/* health.h: active HTTP health checks of upstream backends.
 *
 * One checker thread, with its own loop, probes every backend of every upstream that
 * has a health_check: connect, "GET path", read the status, within a timeout, every
 * interval (+-10% jitter so checks of many backends do not beat in step). rise
 * successes in a row mark a backend up, fall failures down; changes are logged.
 *
 * The state lives in records keyed by upstream and backend name that outlive
 * configuration snapshots (a reload keeps what is known). Workers read a record's
 * `up` flag with a relaxed atomic load: the request path takes no lock. A record
 * also holds one slot per worker (gh_backend_slot_t) that only that worker
 * writes: its counters and passive health of the backend, rendered by
 * gh_health_metrics and the admin listener.
 *
 * Called by main.c (bind, start, publish, stop), session.c (gh_health_up) and the
 * admin listener (gh_health_render_json). */
#ifndef GH_PROXY_HEALTH_H
#define GH_PROXY_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "obs/metrics.h"

typedef struct gh_health {
    struct gh_health *next;
    char *key; /* "upstream\nbackend" */
    gh_backend_slot_t *slot; /* per worker: counters and passive health (obs/metrics.h) */
    uint8_t up;      /* atomic; starts up; only active checks change it */
    uint8_t drained; /* atomic; set from the admin listener: no new requests */
    uint64_t up_since; /* atomic; monotonic ms of the last down -> up transition (0: never down) */
    /* written by the checker thread only; read (racily, for display) by admin */
    uint32_t ok_streak, fail_streak;
    uint64_t checks, failures, transitions;
    char last_error[64];
} gh_health_t;

/* Point every backend of c at its record (created on first sight). */
int gh_health_bind(gh_conf_t *c);
/* Drain (no new requests; in-flight ones finish) or undrain a backend of an
 * upstream by their names. 0, or GH_ENOTFOUND. */
int gh_health_set_drain(gh_str_t upstream, gh_str_t backend, int drain);
extern uint32_t gh_health_ndrained; /* backends drained now, all pools (atomic) */
/* Per-backend Prometheus lines (up, drained, checks, requests, failures, ejections,
 * active, latency) for the records of c; malloc'd. */
char *gh_health_metrics(const gh_conf_t *c, size_t *len);
/* Start the checker with c; gh_health_publish hands it a new snapshot. */
int gh_health_start(gh_conf_t *c);
void gh_health_publish(gh_conf_t *c);
void gh_health_stop(void);

/* The calling worker's slot of backend b. */
static inline gh_backend_slot_t *gh_backend_slot(const gh_conf_backend_t *b, uint32_t worker)
{
    return &((gh_health_t *)b->health)->slot[worker];
}

/* Sums over workers of a backend's slots, for display. */
typedef struct {
    uint64_t requests, failures, ejections, active, latency_us;
    uint32_t ejected; /* workers that eject it now */
} gh_backend_view_t;
void gh_backend_view(const gh_conf_backend_t *b, gh_backend_view_t *out);

static inline int gh_health_up(const gh_conf_backend_t *b)
{
    return !b->health || __atomic_load_n(&((gh_health_t *)b->health)->up, __ATOMIC_RELAXED);
}

static inline uint64_t gh_health_up_since(const gh_conf_backend_t *b)
{
    return b->health ? __atomic_load_n(&((gh_health_t *)b->health)->up_since, __ATOMIC_RELAXED) : 0;
}

static inline int gh_health_drained(const gh_conf_backend_t *b)
{
    return b->health && __atomic_load_n(&((gh_health_t *)b->health)->drained, __ATOMIC_RELAXED);
}

#endif
