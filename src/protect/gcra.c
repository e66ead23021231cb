/* gcra.c: see gcra.h.
 *
 * With T = interval, L = (burst + 1) * T (the tolerance plus one interval) and
 * inc = cost * T, a request waits w = max(TAT, now) + inc - now - L when positive.
 * Every quantity is a difference against now taken after max(TAT, now) >= now, so
 * nothing underflows; the only sums (TAT + inc, and ahead + inc) are checked against
 * overflow. */
#include "protect/gcra.h"

#include <math.h>

#define MAX_WINDOW (1ull << 62)

int gh_gcra_init(gh_gcra_t *g, double rate_per_s, uint32_t burst)
{
    if (!g || !isfinite(rate_per_s) || rate_per_s <= 0 || burst == UINT32_MAX)
        return GH_EINVAL;
    double iv = nearbyint(1e9 / rate_per_s);
    if (!(iv >= 1) || iv > (double)MAX_WINDOW)
        return GH_EINVAL;
    uint64_t t = (uint64_t)iv;
    if (t > MAX_WINDOW / ((uint64_t)burst + 1))
        return GH_EINVAL;
    g->interval_ns = t;
    g->tolerance_ns = (uint64_t)burst * t;
    g->burst = burst;
    g->rate = rate_per_s;
    return 0;
}

void gh_gcra_step(uint64_t *tat, const gh_gcra_t *g, uint64_t now_ns, uint32_t cost,
                  uint64_t max_wait_ns, gh_gcra_result_t *res)
{
    const uint64_t T = g->interval_ns, L = g->tolerance_ns + T;
    res->allowed = 0;
    res->delay_ns = 0;
    if (GH_UNLIKELY(T == 0 || L < T)) {
        /* Not from gh_gcra_init (zero interval or a wrapped window): no limit. */
        *res = (gh_gcra_result_t){.allowed = 1, .remaining = UINT32_MAX, .limit = UINT32_MAX};
        return;
    }
    /* Everything follows from T and L (not from g->burst), so a gh_gcra_t filled by
     * hand is consistent too. cost * T <= L exactly when cost <= L / T. */
    const uint64_t cap = L / T;
    const uint64_t tat0 = *tat > now_ns ? *tat : now_ns;
    const int never = cost > cap || cost * T > UINT64_MAX - tat0;
    const uint64_t inc = never ? 0 : cost * T; /* <= L <= 2^64 - 1 */
    uint64_t cur = tat0; /* the TAT after this step */

    if (!never) {
        uint64_t ahead = tat0 + inc - now_ns;
        uint64_t wait = ahead > L ? ahead - L : 0;
        if (wait == 0 || wait <= max_wait_ns) {
            res->allowed = 1;
            res->delay_ns = wait;
            cur = tat0 + inc;
            *tat = cur;
        }
    }

    uint64_t ahead = cur - now_ns;
    res->reset_ns = ahead;
    res->remaining = ahead < L ? (uint32_t)GH_MIN((L - ahead) / T, UINT32_MAX) : 0;
    res->limit = (uint32_t)GH_MIN(cap, UINT32_MAX);
    if (never) {
        res->retry_after_ns = UINT64_MAX;
    } else {
        uint64_t need = ahead + inc < ahead ? UINT64_MAX : ahead + inc;
        res->retry_after_ns = need > L ? need - L : 0;
    }
}

int gh_gcra_take(gh_shtab_t *t, uint64_t hi, uint64_t lo, const gh_gcra_t *g, uint64_t now_ns,
                 uint32_t cost, uint64_t max_wait_ns, gh_gcra_result_t *res)
{
    if (gh_shtab_value_size(t) < sizeof(uint64_t)) {
        memset(res, 0, sizeof(*res));
        return GH_EINVAL;
    }
    gh_shtab_ref_t ref;
    int created;
    uint64_t *tat = gh_shtab_lock(t, hi, lo, 1, &created, &ref, &now_ns);
    if (!tat) {
        uint64_t fresh = 0;
        gh_gcra_step(&fresh, g, now_ns, cost, max_wait_ns, res);
        return GH_ENOMEM;
    }
    gh_gcra_step(tat, g, now_ns, cost, max_wait_ns, res);
    /* A new key that took nothing (rejected, or cost 0) holds no information. */
    if (created && *tat <= now_ns)
        gh_shtab_remove_locked(t, &ref);
    gh_shtab_unlock(t, &ref);
    return 0;
}

uint64_t gh_gcra_evict(const void *value, void *ctx)
{
    uint64_t tat, now = ctx ? *(const uint64_t *)ctx : 0;
    memcpy(&tat, value, sizeof(tat));
    return tat > now ? tat - now : 0;
}
