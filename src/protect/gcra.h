/* gcra.h: the generic cell rate algorithm (GCRA), the rate limiter of the
 * traffic-protection feature.
 *
 * A key's whole state is one uint64_t, its theoretical arrival time (TAT, in the
 * caller's nanosecond clock; 0 = new key, and any TAT <= now is the same as a new key).
 * A request of cost c conforms at time now when max(TAT, now) + c * interval <=
 * now + (burst + 1) * interval; admitting it sets TAT to that left side. So a new key
 * takes burst + 1 requests at once (nginx's limit_req burst, nodelay), then one per
 * interval; a key at rest for (burst + 1) intervals is new again. All arithmetic is
 * in integer nanoseconds: no drift, no floating point after gh_gcra_init.
 *
 * The clock is the caller's (the worker loop's cached monotonic ns), so tests step
 * time. Workers with slightly different clocks may share a key: a step with an older
 * now than the TAT was written with is still correct (it only sees less credit).
 *
 * gh_gcra_step is a pure function on a TAT the caller owns. gh_gcra_take runs it on
 * the TAT stored in a shared table (shtab.h) created with value_size >= 8 and
 * gh_gcra_evict: idle keys are evicted first, then the key closest to idle; an
 * evicted active key fails open (it comes back with a full burst).
 *
 * Called by the request-limit phase of the protection pipeline. Calls shtab.c.
 * Thread-safety: gh_gcra_step is reentrant (the TAT is the caller's to protect);
 * gh_gcra_take may be called from any thread (the shard lock covers the step);
 * a gh_gcra_t is read-only after init. No allocation. */
#ifndef GH_PROTECT_GCRA_H
#define GH_PROTECT_GCRA_H

#include "core/common.h"
#include "protect/shtab.h"

/* The step reads interval_ns and tolerance_ns only, so a filled-in struct works too;
 * interval_ns 0 means "no limit" (everything allowed). */
typedef struct {
    uint64_t interval_ns;  /* 1e9 / rate, rounded to the nearest ns */
    uint64_t tolerance_ns; /* burst * interval_ns */
    uint32_t burst;        /* informational */
    double rate;           /* as configured, informational */
} gh_gcra_t;

/* rate_per_s > 0 and finite, burst < UINT32_MAX, with 1 ns <= interval and (burst + 1) * interval <= 2^62
 * ns (about 146 years); burst = requests beyond the first that may arrive at once.
 * Rates whose interval is not a whole ns are rounded (at 3/s: 333333333 ns, 1 part
 * in 3e8 fast). 0 or GH_EINVAL. */
int gh_gcra_init(gh_gcra_t *g, double rate_per_s, uint32_t burst);

typedef struct {
    int allowed;
    uint64_t delay_ns;       /* allowed after this wait (the delay action); 0 = now */
    uint64_t retry_after_ns; /* from now until a request of this cost conforms without
                                delay, given the state after this step; 0 = it would now;
                                UINT64_MAX = never (cost > burst + 1) */
    uint64_t reset_ns;       /* from now until the key is back to new (TAT - now) */
    uint32_t remaining;      /* cost-1 requests that would conform now, after this step */
    uint32_t limit;          /* burst + 1 ((tolerance + interval) / interval): requests a
                                new key may make at once */
} gh_gcra_result_t;

/* One request of `cost` (usually 1; 0 only reads the state) at now_ns against *tat.
 * Conforming now: allowed, *tat advanced. Else, when max_wait_ns > 0 and it would
 * conform after a wait of at most max_wait_ns: allowed with delay_ns = that wait, and
 * *tat is advanced as if it had arrived then (later requests queue behind it). Else
 * rejected and *tat unchanged. */
void gh_gcra_step(uint64_t *tat, const gh_gcra_t *g, uint64_t now_ns, uint32_t cost,
                  uint64_t max_wait_ns, gh_gcra_result_t *res);

/* gh_gcra_step on the TAT stored under key (hi, lo) in t. 0, or GH_EINVAL when the
 * table's values are smaller than 8 bytes, or GH_ENOMEM when the key was absent and
 * the table refused to create it (res is then the answer for a new key, i.e. allowed
 * unless cost > burst + 1: fail open, or let the caller decide). */
int gh_gcra_take(gh_shtab_t *t, uint64_t hi, uint64_t lo, const gh_gcra_t *g, uint64_t now_ns,
                 uint32_t cost, uint64_t max_wait_ns, gh_gcra_result_t *res);

/* The shtab eviction callback for GCRA tables: ctx points at the caller's now_ns
 * (uint64_t; NULL reads as 0). Weight 0 (idle) when TAT <= now, else TAT - now. */
uint64_t gh_gcra_evict(const void *value, void *ctx);

#endif
