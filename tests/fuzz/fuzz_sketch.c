/* fuzz_sketch.c: libFuzzer target for the traffic-analytics sketches (src/obs/sketch.c). The
 * sketches have no wire form, so the input is a program of operations on two Space-Saving
 * summaries (few counters, short keys with UTF-8 bytes, so that truncation, eviction and the
 * merge's every case happen), two DDSketches (few buckets: the window moves and collapses;
 * any double, NaN and infinities included) and two HyperLogLogs, checked against exact shadows:
 *   - top-k: the structural self-check (heap, index, error <= min <= total / m) after every
 *     operation, and count - error <= true <= count for every key ever seen, kept or not;
 *     listings sorted, bounded by max;
 *   - DDSketch: counts, min/max; quantiles monotone in q, inside [min, max], and within alpha of
 *     the exact quantile whenever the sketch says the rank is not collapsed;
 *   - HLL: 0 exactly when empty, merge idempotent and commutative.
 * A failed check traps. Leaks are ASan's to find. */
#include "obs/sketch.h"

#include <math.h>
#include <stdlib.h>

#define NKEYS 256
#define NVALS 2048

typedef struct {
    const uint8_t *p;
    size_t n;
} in_t;

static uint8_t byte(in_t *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static void need(int cond)
{
    if (!cond)
        __builtin_trap();
}

/* the documented truncation: at key_max bytes, backed off to a UTF-8 boundary (at most 3) */
static size_t trunc_len(const char *k, size_t n, uint32_t max)
{
    if (n <= max)
        return n;
    size_t c = max;
    for (int i = 0; i < 3 && c > 0 && ((uint8_t)k[c] & 0xC0) == 0x80; i++)
        c--;
    if (c == 0 || ((uint8_t)k[c] & 0xC0) == 0x80)
        c = max;
    return c;
}

static struct {
    char key[8];
    size_t len;
    uint64_t w[2];
} keys[NKEYS];
static size_t nkeys;

static double vals[2][NVALS];
static size_t nvals[2];
static int vals_ok[2];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void check_top(gh_sk_top_t *t, int j)
{
    need(gh_sk_top_check(t) == 0);
    for (size_t i = 0; i < nkeys; i++) {
        uint64_t c, e;
        gh_sk_top_get(t, gh_str(keys[i].key, keys[i].len), &c, &e);
        need(e <= c && c - e <= keys[i].w[j] && keys[i].w[j] <= c);
    }
}

static void check_dd(const gh_sk_dd_t *d, int j, double q)
{
    int exact;
    double v = gh_sk_dd_quantile(d, q, &exact);
    if (d->count == 0) {
        need(isnan(v));
        return;
    }
    need(!isnan(v));
    need(v >= fmin(d->min, 0) && v <= fmax(d->max, 0));
    double v2 = gh_sk_dd_quantile(d, q + (1 - q) / 2, NULL);
    need(v2 >= v);
    if (!vals_ok[j] || nvals[j] != d->count)
        return;
    static double sorted[NVALS];
    memcpy(sorted, vals[j], nvals[j] * sizeof(double));
    qsort(sorted, nvals[j], sizeof(double), cmp_double);
    need(sorted[0] == d->min && sorted[nvals[j] - 1] == d->max);
    double want = sorted[(size_t)floor(q * (double)(nvals[j] - 1))];
    if (want <= GH_SK_DD_MIN_VALUE)
        return;
    if (exact)
        need(fabs(v - want) <= d->alpha * (1 + 1e-9) * want);
    else
        need(v >= want * (1 - d->alpha * (1 + 1e-9))); /* collapsed: overestimates */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in_t in = {data, size};
    uint32_t m = 1 + byte(&in) % 8, kmax = 1 + byte(&in) % 6;
    static const double alphas[] = {0.01, 0.05, 0.3, 1e-4};
    double alpha = alphas[byte(&in) % 4];
    uint32_t nb = 16 + byte(&in) % 64;
    unsigned p = GH_SK_HLL_P_MIN + byte(&in) % 3;
    gh_sk_top_t t[2];
    gh_sk_dd_t d[2];
    gh_sk_hll_t h[2], tmp;
    size_t base = gh_sk_allocated();
    for (int j = 0; j < 2; j++) {
        need(gh_sk_top_init(&t[j], m, kmax) == 0);
        need(gh_sk_dd_init(&d[j], alpha, j ? nb : 16 + (nb * 7) % 64) == 0);
        need(gh_sk_hll_init(&h[j], p) == 0);
        nvals[j] = 0;
        vals_ok[j] = 1;
    }
    need(gh_sk_hll_init(&tmp, p) == 0);
    size_t after_init = gh_sk_allocated();
    nkeys = 0;
    static const char alphabet[4] = {'a', 'b', (char)0xC3, (char)0xA9};
    while (in.n > 0) {
        uint8_t op = byte(&in);
        int j = op >> 7, o = 1 - j;
        switch (op & 7) {
        case 0: { /* add a key */
            char k[8];
            size_t n = byte(&in) % 8;
            for (size_t i = 0; i < n; i++)
                k[i] = alphabet[byte(&in) % 4];
            uint8_t wb = byte(&in);
            uint64_t w = wb < 250 ? wb % 4 : (uint64_t)1 << (wb - 218);
            gh_sk_top_add(&t[j], gh_str(k, n), w);
            size_t tn = trunc_len(k, n, kmax), i;
            for (i = 0; i < nkeys; i++)
                if (keys[i].len == tn && memcmp(keys[i].key, k, tn) == 0)
                    break;
            if (i == nkeys && nkeys < NKEYS) {
                memcpy(keys[i].key, k, tn);
                keys[i].len = tn;
                keys[i].w[0] = keys[i].w[1] = 0;
                nkeys++;
            }
            need(i < NKEYS); /* at most 4^0 + ... + 4^6 truncated keys: fits */
            keys[i].w[j] += w;
            break;
        }
        case 1: /* merge the other summary into this one (totals kept far from 2^64) */
            if (gh_sk_top_total(&t[j]) > (1ULL << 50) || gh_sk_top_total(&t[o]) > (1ULL << 50))
                break;
            need(gh_sk_top_merge(&t[j], &t[o]) == 0);
            for (size_t i = 0; i < nkeys; i++)
                keys[i].w[j] += keys[i].w[o];
            break;
        case 2: { /* list */
            gh_sk_item_t it[10];
            size_t max = byte(&in) % 10, n = gh_sk_top_list(&t[j], it, max);
            need(n == GH_MIN(max, (size_t)gh_sk_top_size(&t[j])));
            for (size_t i = 0; i < n; i++) {
                need(it[i].key.n <= kmax && it[i].error <= it[i].count);
                if (i > 0)
                    need(it[i].count <= it[i - 1].count);
            }
            if (byte(&in) == 0) {
                gh_sk_top_reset(&t[j]);
                for (size_t i = 0; i < nkeys; i++)
                    keys[i].w[j] = 0;
            }
            break;
        }
        case 3: { /* add a value */
            uint64_t bits = 0;
            uint8_t kind = byte(&in);
            double v;
            if (kind < 128) {
                v = (kind + 1) * pow(10, (double)(byte(&in) % 24) - 12);
            } else {
                for (int i = 0; i < 8; i++)
                    bits = bits << 8 | byte(&in);
                memcpy(&v, &bits, sizeof(v));
            }
            uint64_t before = d[j].count;
            gh_sk_dd_add(&d[j], v);
            need(d[j].count == before + (isfinite(v) ? 1 : 0));
            if (isfinite(v)) {
                if (nvals[j] < NVALS)
                    vals[j][nvals[j]++] = v;
                else
                    vals_ok[j] = 0;
            }
            break;
        }
        case 4: /* merge the other DDSketch into this one */
            if (d[j].count > (1ULL << 40) || d[o].count > (1ULL << 40))
                break;
            need(gh_sk_dd_merge(&d[j], &d[o]) == 0);
            if (nvals[j] + nvals[o] <= NVALS) {
                memcpy(vals[j] + nvals[j], vals[o], nvals[o] * sizeof(double));
                nvals[j] += nvals[o];
            } else {
                vals_ok[j] = 0;
            }
            vals_ok[j] &= vals_ok[o];
            break;
        case 5: /* a quantile */
            check_dd(&d[j], j, byte(&in) / 255.0);
            break;
        case 6: { /* HLL add */
            uint64_t hv = 0;
            for (int i = 0; i < 3; i++)
                hv = hv << 8 | byte(&in);
            gh_sk_hll_add(&h[j], gh_sk_hash(&hv, sizeof(hv)));
            need(gh_sk_hll_estimate(&h[j]) > 0);
            break;
        }
        case 7: { /* HLL merges: commutative, idempotent */
            size_t sz = (size_t)1 << p;
            memcpy(tmp.reg, h[o].reg, sz);
            need(gh_sk_hll_merge(&tmp, &h[j]) == 0);
            need(gh_sk_hll_merge(&h[j], &h[o]) == 0);
            need(memcmp(tmp.reg, h[j].reg, sz) == 0);
            need(gh_sk_hll_merge(&tmp, &h[o]) == 0);
            need(memcmp(tmp.reg, h[j].reg, sz) == 0);
            double e = gh_sk_hll_estimate(&h[j]);
            need(e >= 0 && isfinite(e));
            break;
        }
        }
        check_top(&t[0], 0);
        check_top(&t[1], 1);
        need(gh_sk_allocated() == after_init);
    }
    for (int j = 0; j < 2; j++) {
        need(gh_sk_hll_estimate(&h[j]) >= 0);
        check_dd(&d[j], j, 0.5);
        check_dd(&d[j], j, 0.99);
        gh_sk_top_free(&t[j]);
        gh_sk_dd_free(&d[j]);
        gh_sk_hll_free(&h[j]);
    }
    gh_sk_hll_free(&tmp);
    need(gh_sk_allocated() == base);
    return 0;
}
