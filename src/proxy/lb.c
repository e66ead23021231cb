/* lb.c: see lb.h.
 *
 * Eligibility is "ok[i] != 0 (or ok NULL) and weight > 0" everywhere. The pick paths
 * never allocate: round-robin is one O(n) pass (as nginx); the power-of-two-choices
 * policies sample indexes by rejection and only fall back to an O(n) pass when few
 * backends are eligible; the hash walks the Maglev table from the key's slot and
 * counts eligible backends only when the cheap load bound (computed with n) fails.
 *
 * Maglev weighting: backends take turns in iterations; in iteration k backend i takes
 * a turn when k * w_i >= credit_i, then credit_i += w_max. A backend of the largest
 * weight takes a turn every iteration, one of half that weight every other
 * iteration, so slot shares are proportional to weight and turns are interleaved
 * (a "w turns in a row per round" scheme over-serves whoever comes first in the
 * last, partial round). With equal weights this is the paper's algorithm exactly. */
#include "proxy/lb.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Bounded tries of the rejection sampler before the exact O(n) fallback. */
#define SAMPLE_TRIES 8

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_next(gh_lb_t *lb)
{
    uint64_t s1 = lb->rng[0];
    const uint64_t s0 = lb->rng[1];
    const uint64_t r = s0 + s1;
    lb->rng[0] = s0;
    s1 ^= s1 << 23;
    lb->rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return r;
}

/* Uniform-enough index in [0, m): multiply-shift on the high half, whose bits are
 * the strongest of xorshift128+ (bias < m / 2^32, irrelevant here). */
static uint32_t rng_below(gh_lb_t *lb, uint32_t m)
{
    return (uint32_t)(((rng_next(lb) >> 32) * (uint64_t)m) >> 32);
}

static inline int eligible(const gh_lb_t *lb, const uint8_t *ok, uint32_t i)
{
    return (!ok || ok[i]) && lb->b[i].weight > 0;
}

gh_lb_t *gh_lb_new(int policy, uint32_t n, const uint32_t *weights, const uint32_t *maglev,
                   uint32_t maglev_size, uint64_t seed)
{
    gh_lb_t *lb = calloc(1, sizeof(*lb) + (size_t)n * sizeof(lb->b[0]));
    if (!lb)
        return NULL;
    lb->policy = policy;
    lb->n = n;
    lb->maglev = maglev;
    lb->maglev_size = maglev ? maglev_size : 0;
    lb->load_factor = 1.25;
    lb->decay_us = 10000000;
    for (uint32_t i = 0; i < n; i++)
        lb->b[i].weight = weights && weights[i] ? weights[i] : 1;
    /* splitmix64 spreads even a small or zero seed over both words; all-zero state
     * would make xorshift128+ return 0 forever. */
    uint64_t x = seed;
    lb->rng[0] = splitmix64(&x);
    lb->rng[1] = splitmix64(&x);
    if (!lb->rng[0] && !lb->rng[1])
        lb->rng[0] = 1;
    return lb;
}

void gh_lb_free(gh_lb_t *lb)
{
    free(lb);
}

/* nginx's ngx_http_upstream_get_peer: every eligible backend gains its weight, the
 * largest running weight wins (first on ties) and pays back the eligible total. */
static int pick_wrr(gh_lb_t *lb, const uint8_t *ok)
{
    int best = -1;
    int64_t total = 0;
    for (uint32_t i = 0; i < lb->n; i++) {
        if (!eligible(lb, ok, i))
            continue;
        gh_lb_backend_t *b = &lb->b[i];
        b->current += b->weight;
        total += b->weight;
        if (best < 0 || b->current > lb->b[best].current)
            best = (int)i;
    }
    if (best >= 0)
        lb->b[best].current -= total;
    return best;
}

/* The r-th eligible backend other than skip (skip -1: none), and the count of those
 * when r is out of range: one exact O(n) pass for when rejection sampling gave up. */
static int nth_eligible(const gh_lb_t *lb, const uint8_t *ok, int skip, uint32_t r, uint32_t *count)
{
    uint32_t c = 0;
    for (uint32_t i = 0; i < lb->n; i++) {
        if ((int)i == skip || !eligible(lb, ok, i))
            continue;
        if (c++ == r)
            return (int)i;
    }
    *count = c;
    return -1;
}

/* A uniformly random eligible backend other than skip, or -1 if there is none. */
static int sample_eligible(gh_lb_t *lb, const uint8_t *ok, int skip)
{
    for (int t = 0; t < SAMPLE_TRIES; t++) {
        uint32_t i = rng_below(lb, lb->n);
        if ((int)i != skip && eligible(lb, ok, i))
            return (int)i;
    }
    uint32_t count = 0;
    nth_eligible(lb, ok, skip, UINT32_MAX, &count);
    if (!count)
        return -1;
    return nth_eligible(lb, ok, skip, rng_below(lb, count), &count);
}

/* Two distinct random eligible backends in *a and *b; *b is -1 when only *a is
 * eligible, *a is -1 when none is. */
static void sample_two(gh_lb_t *lb, const uint8_t *ok, int *a, int *b)
{
    *b = -1;
    *a = lb->n ? sample_eligible(lb, ok, -1) : -1;
    if (*a >= 0 && lb->n > 1)
        *b = sample_eligible(lb, ok, *a);
}

static int pick_least_request(gh_lb_t *lb, const uint8_t *ok)
{
    int a, b;
    sample_two(lb, ok, &a, &b);
    if (b < 0)
        return a;
    /* inflight_b / w_b < inflight_a / w_a without dividing; a wins ties (it is as
     * random as b). */
    const gh_lb_backend_t *x = &lb->b[a], *y = &lb->b[b];
    if ((uint64_t)y->inflight * x->weight < (uint64_t)x->inflight * y->weight)
        return b;
    return a;
}

/* exp(-dt / decay_us): how much of an average taken dt ago still counts. */
static double decay_weight(const gh_lb_t *lb, uint64_t at, uint64_t now)
{
    if (now <= at)
        return 1.0;
    if (!lb->decay_us)
        return 0.0;
    return exp(-(double)(now - at) / (double)lb->decay_us);
}

/* The latency average as seen at now, decayed toward 0 since its last sample so a
 * once-slow backend that gets no traffic (hence no samples) is eventually retried;
 * -1 when there is no sample yet. */
static double ewma_at(const gh_lb_t *lb, const gh_lb_backend_t *b, uint64_t now)
{
    if (b->ewma_us <= 0)
        return -1;
    return b->ewma_us * decay_weight(lb, b->ewma_at_us, now);
}

/* What an unsampled backend is assumed to cost: the slowest eligible average (an
 * ejected backend's failure penalties must not make new backends look that slow),
 * or 1 when nobody has a sample. O(n), but only while some backend is unsampled. */
static double ewma_unknown(const gh_lb_t *lb, const uint8_t *ok, uint64_t now)
{
    double m = -1;
    for (uint32_t i = 0; i < lb->n; i++) {
        if (!eligible(lb, ok, i))
            continue;
        double e = ewma_at(lb, &lb->b[i], now);
        if (e > m)
            m = e;
    }
    return m > 0 ? m : 1.0;
}

static int pick_peak_ewma(gh_lb_t *lb, const uint8_t *ok, uint64_t now)
{
    int a, b;
    sample_two(lb, ok, &a, &b);
    if (b < 0)
        return a;
    const gh_lb_backend_t *x = &lb->b[a], *y = &lb->b[b];
    double ex = ewma_at(lb, x, now), ey = ewma_at(lb, y, now);
    if (ex < 0 || ey < 0) {
        double u = ewma_unknown(lb, ok, now);
        if (ex < 0)
            ex = u;
        if (ey < 0)
            ey = u;
    }
    /* cost = ewma * (inflight + 1) / weight, compared cross-multiplied. */
    double cx = ex * ((double)x->inflight + 1) * (double)y->weight;
    double cy = ey * ((double)y->inflight + 1) * (double)x->weight;
    return cy < cx ? b : a;
}

/* ceil(load_factor * (total_inflight + 1) / ne): the most in-flight requests a
 * backend may have and still take a hashed key. */
static uint64_t load_bound(const gh_lb_t *lb, uint32_t ne)
{
    return (uint64_t)ceil(lb->load_factor * ((double)lb->total_inflight + 1) / (double)ne);
}

static int pick_hash(gh_lb_t *lb, const uint8_t *ok, uint64_t key)
{
    if (!lb->maglev || !lb->maglev_size) {
        uint32_t count = 0;
        nth_eligible(lb, ok, -1, UINT32_MAX, &count);
        return count ? nth_eligible(lb, ok, -1, (uint32_t)(key % count), &count) : -1;
    }
    int bounded = lb->load_factor > 0;
    /* The bound computed with n is never above the one with n_eligible <= n, so a
     * backend within it is within the real one: count eligible backends (O(n)) only
     * when a candidate fails this cheap test. */
    uint64_t bound = bounded ? load_bound(lb, lb->n) : 0;
    int exact = 0, first = -1;
    uint32_t slot = (uint32_t)(key % lb->maglev_size);
    for (uint32_t step = 0; step < lb->maglev_size; step++) {
        uint32_t i = lb->maglev[slot];
        if (++slot == lb->maglev_size)
            slot = 0;
        if (i >= lb->n || !eligible(lb, ok, i)) {
            /* With every backend down the walk would cover the whole table (up to
             * 65537 slots) per request: after a few misses, check there is anyone. */
            if (step == 16 && first < 0 && !exact) {
                uint32_t count = 0;
                nth_eligible(lb, ok, -1, UINT32_MAX, &count);
                if (!count)
                    return -1;
            }
            continue;
        }
        if (!bounded || lb->b[i].inflight <= bound)
            return (int)i;
        if (first < 0)
            first = (int)i;
        if (!exact) {
            uint32_t count = 0;
            nth_eligible(lb, ok, -1, UINT32_MAX, &count);
            bound = load_bound(lb, count);
            exact = 1;
            if (lb->b[i].inflight <= bound)
                return (int)i;
        }
    }
    return first;
}

int gh_lb_pick(gh_lb_t *lb, const uint8_t *ok, uint64_t key, uint64_t now_us)
{
    if (!lb || !lb->n)
        return -1;
    switch (lb->policy) {
    case GH_LB_LEAST_REQUEST:
        return pick_least_request(lb, ok);
    case GH_LB_PEAK_EWMA:
        return pick_peak_ewma(lb, ok, now_us);
    case GH_LB_HASH:
        return pick_hash(lb, ok, key);
    default:
        return pick_wrr(lb, ok);
    }
}

void gh_lb_begin(gh_lb_t *lb, int i)
{
    if (!lb || i < 0 || (uint32_t)i >= lb->n)
        return;
    lb->b[i].inflight++;
    lb->total_inflight++;
}

/* Peak EWMA as in Finagle/Linkerd: a slower sample replaces the average at once; a
 * faster one is blended in with a weight that grows with the time since the last. */
void gh_lb_end(gh_lb_t *lb, int i, uint64_t latency_us, int failed, uint64_t now_us)
{
    if (!lb || i < 0 || (uint32_t)i >= lb->n)
        return;
    gh_lb_backend_t *b = &lb->b[i];
    /* An unmatched end must not skew the total: it stays the sum of the inflights. */
    if (b->inflight) {
        b->inflight--;
        if (lb->total_inflight)
            lb->total_inflight--;
    }
    if (lb->policy != GH_LB_PEAK_EWMA)
        return;
    if (failed && latency_us < GH_LB_FAIL_PENALTY_US)
        latency_us = GH_LB_FAIL_PENALTY_US;
    /* At least 1 us: 0 means "no sample yet". */
    double sample = latency_us ? (double)latency_us : 1.0;
    if (b->ewma_us <= 0 || sample > b->ewma_us) {
        b->ewma_us = sample;
    } else {
        double w = decay_weight(lb, b->ewma_at_us, now_us);
        b->ewma_us = b->ewma_us * w + sample * (1 - w);
    }
    if (now_us > b->ewma_at_us || b->ewma_at_us == 0)
        b->ewma_at_us = now_us;
}

void gh_lb_set_weight(gh_lb_t *lb, int i, uint32_t weight)
{
    if (!lb || i < 0 || (uint32_t)i >= lb->n)
        return;
    lb->b[i].weight = weight;
}

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* murmur3's 64-bit finaliser: every input bit affects every output bit. */
static inline uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Little-endian whatever the host, so Maglev tables (built from hashes of names)
 * agree across a mixed fleet. */
static inline uint64_t load64le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* 8-byte lanes mixed murmur3-style (multiply, rotate, multiply into the state), the
 * tail as one zero-padded lane, the length folded in, then fmix64. */
static uint64_t hash_seeded(const void *p, size_t len, uint64_t seed)
{
    const uint64_t c1 = 0x87c37b91114253d5ull, c2 = 0x4cf5ad432745937full;
    const unsigned char *s = p;
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ull;
    size_t n = len;
    for (; n >= 8; n -= 8, s += 8) {
        uint64_t k = load64le(s);
        k *= c1;
        k = rotl64(k, 31);
        k *= c2;
        h ^= k;
        h = rotl64(h, 27) * 5 + 0x52dce729;
    }
    if (n) {
        uint64_t k = 0;
        for (size_t j = 0; j < n; j++)
            k |= (uint64_t)s[j] << (8 * j);
        k *= c1;
        k = rotl64(k, 31);
        k *= c2;
        h ^= k;
    }
    return fmix64(h ^ (uint64_t)len);
}

uint64_t gh_lb_hash(const void *p, size_t len)
{
    return hash_seeded(p, len, 0);
}

static int is_prime(uint32_t x)
{
    if (x < 2)
        return 0;
    for (uint32_t d = 2; (uint64_t)d * d <= x; d++)
        if (x % d == 0)
            return 0;
    return 1;
}

uint32_t *gh_maglev_build(const char *const *names, const uint32_t *weights, uint32_t n, uint32_t size)
{
    /* A prime size makes every backend's (offset + j * skip) % size a permutation of
     * all slots, which is what guarantees the fill below terminates. */
    if (!names || !n || size <= n || !is_prime(size))
        return NULL;
    uint32_t *table = malloc((size_t)size * sizeof(*table));
    /* per backend: offset, skip, next, weight, credit */
    uint64_t *st = malloc((size_t)n * 5 * sizeof(*st));
    if (!table || !st) {
        free(table);
        free(st);
        return NULL;
    }
    uint64_t *offset = st, *skip = st + n, *next = st + 2 * (size_t)n, *w = st + 3 * (size_t)n,
             *credit = st + 4 * (size_t)n;
    uint64_t wmax = 1;
    for (uint32_t i = 0; i < n; i++) {
        const char *name = names[i] ? names[i] : "";
        size_t len = strlen(name);
        offset[i] = hash_seeded(name, len, 0x6d61676c65763031ull) % size;
        skip[i] = hash_seeded(name, len, 0x6d61676c65763032ull) % (size - 1) + 1;
        next[i] = 0;
        w[i] = weights && weights[i] ? weights[i] : 1;
        credit[i] = 0;
        if (w[i] > wmax)
            wmax = w[i];
    }
    memset(table, 0xff, (size_t)size * sizeof(*table));
    uint32_t filled = 0;
    /* Each iteration at least the heaviest backend fills a slot: <= size iterations. */
    for (uint64_t k = 0; filled < size; k++) {
        for (uint32_t i = 0; i < n && filled < size; i++) {
            if (k * w[i] < credit[i])
                continue;
            credit[i] += wmax;
            uint32_t c;
            do {
                c = (uint32_t)((offset[i] + next[i] * skip[i]) % size);
                next[i]++;
            } while (table[c] != UINT32_MAX);
            table[c] = i;
            filled++;
        }
    }
    free(st);
    return table;
}

uint32_t gh_maglev_size(uint32_t n)
{
    static const uint32_t primes[] = {251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537};
    uint64_t want = (uint64_t)n * 100;
    for (size_t i = 0; i < sizeof(primes) / sizeof(primes[0]); i++)
        if (primes[i] >= want)
            return primes[i];
    return 65537;
}
