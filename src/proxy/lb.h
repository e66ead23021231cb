/* lb.h: load-balancing policies over one upstream pool's backends.
 *
 * The state (gh_lb_t) is per worker and per upstream: no locks, no atomics. The
 * caller says which backends may be picked (healthy, not drained, not ejected) with
 * an `ok` array, and reports each request's start and end so the policies that
 * need it see in-flight counts and latency.
 *
 * Policies:
 * - GH_LB_ROUND_ROBIN: smooth weighted round-robin (nginx's algorithm): over any
 *   window of sum(weights) picks, each backend gets exactly its weight's share, and
 *   picks of one backend are spread, not bunched.
 * - GH_LB_LEAST_REQUEST: power of two choices: two distinct random eligible
 *   backends, the one with fewer in-flight requests relative to its weight wins.
 * - GH_LB_PEAK_EWMA: power of two choices on cost = ewma_latency * (inflight + 1) /
 *   weight, where the latency average jumps up at once to a slower sample ("peak")
 *   and decays with time constant decay_us otherwise; a backend with no sample yet
 *   costs as much as the slowest known one, so it is tried without being flooded.
 * - GH_LB_HASH: Maglev consistent hashing (Eisenbud et al., NSDI 2016) on a caller
 *   key: removing one of N backends remaps about 1/N of keys. Bounded load: a
 *   backend with more than ceil(load_factor * (total_inflight + 1) / n_ok) in-flight
 *   requests is skipped for the next entry of the table.
 *
 * Called by session.c for every proxied request; gh_maglev_build by the config
 * compiler. Calls nothing but libc and libm. */
#ifndef GH_PROXY_LB_H
#define GH_PROXY_LB_H

#include <stddef.h>
#include <stdint.h>

enum gh_lb_policy { GH_LB_ROUND_ROBIN = 0, GH_LB_LEAST_REQUEST, GH_LB_PEAK_EWMA, GH_LB_HASH };

typedef struct {
    int64_t current;     /* smooth WRR running weight */
    uint32_t weight;     /* effective weight (slow start / drain may lower it; 0 = never picked) */
    uint32_t inflight;
    double ewma_us;      /* 0 = no sample yet */
    uint64_t ewma_at_us; /* time of the last sample or decay */
} gh_lb_backend_t;

typedef struct gh_lb {
    int policy;
    uint32_t n;
    const uint32_t *maglev; /* GH_LB_HASH: backend index per slot, maglev_size slots (owned by the caller) */
    uint32_t maglev_size;
    double load_factor;     /* GH_LB_HASH bounded load, default 1.25; 0 = unbounded */
    uint64_t decay_us;      /* GH_LB_PEAK_EWMA time constant, default 10 s */
    uint64_t rng[2];        /* xorshift128+ state */
    uint32_t total_inflight;
    gh_lb_backend_t b[];
} gh_lb_t;

/* New state for n backends with their configured weights (>= 1). NULL on ENOMEM. */
gh_lb_t *gh_lb_new(int policy, uint32_t n, const uint32_t *weights, const uint32_t *maglev,
                   uint32_t maglev_size, uint64_t seed);
void gh_lb_free(gh_lb_t *lb);

/* Pick a backend among those with ok[i] != 0 and weight > 0 (ok NULL: all). key is
 * used by GH_LB_HASH only. Returns the index, or -1 when none is eligible. */
int gh_lb_pick(gh_lb_t *lb, const uint8_t *ok, uint64_t key, uint64_t now_us);
/* A request was sent to backend i / it ended: latency_us until its response head,
 * or failed != 0 when the backend failed it (connect error, reset, timeout): the
 * EWMA then takes a sample of max(latency_us, GH_LB_FAIL_PENALTY_US). */
#define GH_LB_FAIL_PENALTY_US 1000000
void gh_lb_begin(gh_lb_t *lb, int i);
void gh_lb_end(gh_lb_t *lb, int i, uint64_t latency_us, int failed, uint64_t now_us);
/* Change backend i's effective weight (slow start ramps it, drain sets 0). */
void gh_lb_set_weight(gh_lb_t *lb, int i, uint32_t weight);

/* The Maglev lookup table for n backends identified by names (stable across
 * reloads: "host:port"), weighted; size must be a prime > n (use gh_maglev_size).
 * Returns a malloc'd array of size entries, or NULL. */
uint32_t *gh_maglev_build(const char *const *names, const uint32_t *weights, uint32_t n, uint32_t size);
/* A prime table size for n backends: the smallest listed prime >= 100 * n (at least 251, at most 65537). */
uint32_t gh_maglev_size(uint32_t n);
/* 64-bit hash of a key (client address bytes, a header value, ...). */
uint64_t gh_lb_hash(const void *p, size_t len);

#endif
