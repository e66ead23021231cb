/* test_sketch.c: unit tests of the traffic-analytics sketches (src/obs/sketch.c): each sketch's
 * error against exact answers on generated traffic (HLL within 2% and 3 standard errors,
 * Space-Saving bounds and the true top-20 on a Zipf stream, DDSketch quantiles within alpha on
 * three distributions), merges, memory that does not grow after init, and the rolling windows'
 * expiry and coverage. Prints the measured error figures (stdout) for the docs. */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "obs/sketch.h"
#include "t.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double unif(void) { return ((double)(rnd() >> 11) + 0.5) * 0x1p-53; } /* (0, 1) */

static double normal(void) { return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif()); }

static uint64_t key_hash(uint64_t seed, uint64_t i)
{
    uint64_t k[2] = {seed, i};
    return gh_sk_hash(k, sizeof(k));
}

/* --- HyperLogLog ---------------------------------------------------------------------- */

static void test_hll_accuracy(void)
{
    static const uint64_t ns[] = {0, 1, 10, 1000, 100000, 1000000};
    double se = gh_sk_hll_stderr(14);
    CHECK(fabs(se - 0.008125) < 1e-6);
    double worst[GH_ARRAY_LEN(ns)] = {0};
    for (uint64_t seed = 1; seed <= 5; seed++) {
        gh_sk_hll_t h;
        CHECK_INT(gh_sk_hll_init(&h, GH_SK_HLL_P_DEFAULT), 0);
        CHECK_INT(gh_sk_hll_bytes(&h), 16384);
        uint64_t added = 0;
        for (size_t k = 0; k < GH_ARRAY_LEN(ns); k++) {
            for (; added < ns[k]; added++)
                gh_sk_hll_add(&h, key_hash(seed, added));
            double est = gh_sk_hll_estimate(&h), n = (double)ns[k];
            if (ns[k] == 0) {
                CHECK(est == 0);
                continue;
            }
            double err = fabs(est - n) / n;
            if (err > worst[k])
                worst[k] = err;
            if (!(err <= 0.02 && err <= 3 * se))
                fprintf(stderr, "  hll seed %llu n %llu: estimate %.1f (error %.4f)\n",
                        (unsigned long long)seed, (unsigned long long)ns[k], est, err);
            CHECK(err <= 0.02 && err <= 3 * se);
        }
        /* adding again changes nothing */
        double before = gh_sk_hll_estimate(&h);
        for (uint64_t i = 0; i < 1000; i++)
            gh_sk_hll_add(&h, key_hash(seed, i));
        CHECK(gh_sk_hll_estimate(&h) == before);
        gh_sk_hll_free(&h);
    }
    printf("hll p=14 (16 KiB, stderr %.2f%%): worst relative error over 5 seeds:", 100 * se);
    for (size_t k = 1; k < GH_ARRAY_LEN(ns); k++)
        printf(" n=%llu %.3f%%", (unsigned long long)ns[k], 100 * worst[k]);
    printf("\n");

    /* a smaller precision: within 3 of its standard errors */
    gh_sk_hll_t h;
    CHECK_INT(gh_sk_hll_init(&h, 10), 0);
    for (uint64_t i = 0; i < 100000; i++)
        gh_sk_hll_add(&h, key_hash(77, i));
    CHECK(fabs(gh_sk_hll_estimate(&h) / 1e5 - 1) <= 3 * gh_sk_hll_stderr(10));
    gh_sk_hll_free(&h);
    CHECK_INT(gh_sk_hll_init(&h, 3), GH_EINVAL);
    CHECK_INT(gh_sk_hll_init(&h, 19), GH_EINVAL);
    gh_sk_hll_free(&h); /* a failed init leaves a freeable struct */
}

static void test_hll_merge(void)
{
    gh_sk_hll_t a, b, c, d;
    CHECK_INT(gh_sk_hll_init(&a, 14), 0);
    CHECK_INT(gh_sk_hll_init(&b, 14), 0);
    CHECK_INT(gh_sk_hll_init(&c, 14), 0);
    CHECK_INT(gh_sk_hll_init(&d, 12), 0);
    for (uint64_t i = 0; i < 600000; i++)
        gh_sk_hll_add(&a, key_hash(9, i));
    for (uint64_t i = 400000; i < 1000000; i++)
        gh_sk_hll_add(&b, key_hash(9, i));
    for (uint64_t i = 0; i < 1000000; i++)
        gh_sk_hll_add(&c, key_hash(9, i));
    CHECK_INT(gh_sk_hll_merge(&a, &b), 0);
    double est = gh_sk_hll_estimate(&a);
    printf("hll merge of [0, 600k) and [400k, 1M): %.0f (union 1000000, error %.3f%%)\n", est,
           100 * fabs(est / 1e6 - 1));
    CHECK(fabs(est / 1e6 - 1) <= 0.02);
    /* the union sketch equals the sketch of the union */
    CHECK(memcmp(a.reg, c.reg, 16384) == 0);
    CHECK_INT(gh_sk_hll_merge(&a, &c), 0); /* idempotent */
    CHECK(memcmp(a.reg, c.reg, 16384) == 0);
    CHECK_INT(gh_sk_hll_merge(&a, &d), GH_EINVAL);
    gh_sk_hll_reset(&a);
    CHECK(gh_sk_hll_estimate(&a) == 0);
    gh_sk_hll_free(&a);
    gh_sk_hll_free(&b);
    gh_sk_hll_free(&c);
    gh_sk_hll_free(&d);
}

/* --- Space-Saving --------------------------------------------------------------------- */

#define ZN 100000   /* distinct keys */
#define ZS 1000000  /* stream length */
#define TOPM 256

static int zkey(uint32_t r, char *buf) { return snprintf(buf, 32, "/api/v1/item/%u", r); }

/* The rank in a key "/api/v1/item/R" (views are not NUL-terminated), or ZN. */
static unsigned zparse(gh_str_t k)
{
    char buf[64];
    unsigned r;
    if (k.n >= sizeof(buf))
        return ZN;
    memcpy(buf, k.p, k.n);
    buf[k.n] = 0;
    return sscanf(buf, "/api/v1/item/%u", &r) == 1 && r < ZN ? r : ZN;
}

static const uint64_t *zcount_sort;
static int by_true_count(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    if (zcount_sort[x] != zcount_sort[y])
        return zcount_sort[x] < zcount_sort[y] ? 1 : -1;
    return x < y ? -1 : 1;
}

/* Checks a summary of a stream with exact counts cnt: every listed item's bounds, every key
 * of weight > total/m kept, and the true top-20 equal to the listed top-20. Returns the largest
 * error among the top 20 (for the report). */
static uint64_t check_summary(const gh_sk_top_t *t, const uint64_t *cnt, const uint32_t *order, const char *what)
{
    CHECK_INT(gh_sk_top_check(t), 0);
    CHECK_INT(gh_sk_top_total(t), ZS);
    static gh_sk_item_t items[TOPM];
    size_t n = gh_sk_top_list(t, items, TOPM);
    CHECK_INT(n, TOPM);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        unsigned r = zparse(items[i].key);
        CHECK(r < ZN);
        if (r >= ZN)
            continue;
        CHECK(zkey(r, buf) == (int)items[i].key.n && memcmp(buf, items[i].key.p, items[i].key.n) == 0);
        if (!(items[i].count - items[i].error <= cnt[r] && cnt[r] <= items[i].count))
            bad++;
        if (i > 0)
            CHECK(items[i].count <= items[i - 1].count);
    }
    CHECK_INT(bad, 0);
    uint64_t min = gh_sk_top_min(t);
    CHECK(min * TOPM <= ZS);
    for (uint32_t r = 0; r < ZN; r++) {
        char buf[32];
        uint64_t c, e;
        int kept = gh_sk_top_get(t, gh_str(buf, (size_t)zkey(r, buf)), &c, &e);
        if (cnt[r] * TOPM > ZS)
            CHECK(kept);
        CHECK(c - e <= cnt[r] && cnt[r] <= c);
    }
    uint64_t maxerr = 0;
    int same = 1;
    for (int i = 0; i < 20; i++) {
        char buf[32];
        uint64_t c, e;
        uint32_t r = order[i];
        CHECK(gh_sk_top_get(t, gh_str(buf, (size_t)zkey(r, buf)), &c, &e));
        if (e > maxerr)
            maxerr = e;
        /* the listed top-20 is the true top-20 */
        int found = 0;
        for (int j = 0; j < 20; j++)
            if (zparse(items[j].key) == r)
                found = 1;
        same &= found;
    }
    CHECK(same);
    printf("top-k %s: m=%d, min counter %llu (N/m = %d), largest error in the top 20: %llu; "
           "top-20 %s\n",
           what, TOPM, (unsigned long long)min, ZS / TOPM, (unsigned long long)maxerr,
           same ? "exact" : "DIFFERENT");
    return maxerr;
}

static void test_top_zipf(void)
{
    double *cdf = malloc(ZN * sizeof(double));
    uint64_t *cnt = calloc(ZN, sizeof(uint64_t));
    uint32_t *order = malloc(ZN * sizeof(uint32_t));
    uint32_t *stream = malloc(ZS * sizeof(uint32_t));
    double acc = 0;
    for (uint32_t r = 0; r < ZN; r++)
        cdf[r] = (acc += pow(r + 1.0, -1.1));
    rng_state = 42;
    for (uint32_t i = 0; i < ZS; i++) {
        double u = unif() * acc;
        uint32_t lo = 0, hi = ZN - 1;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        stream[i] = lo;
        cnt[lo]++;
    }
    for (uint32_t r = 0; r < ZN; r++)
        order[r] = r;
    zcount_sort = cnt;
    qsort(order, ZN, sizeof(uint32_t), by_true_count);

    gh_sk_top_t all, a, b;
    CHECK_INT(gh_sk_top_init(&all, TOPM, 128), 0);
    CHECK_INT(gh_sk_top_init(&a, TOPM, 128), 0);
    CHECK_INT(gh_sk_top_init(&b, TOPM, 128), 0);
    for (uint32_t i = 0; i < ZS; i++) {
        char buf[32];
        gh_str_t k = gh_str(buf, (size_t)zkey(stream[i], buf));
        gh_sk_top_add(&all, k, 1);
        gh_sk_top_add(i < ZS / 2 ? &a : &b, k, 1);
    }
    printf("zipf s=1.1: %d items over %d keys; true counts #1 %llu, #20 %llu, #21 %llu\n", ZS, ZN,
           (unsigned long long)cnt[order[0]], (unsigned long long)cnt[order[19]],
           (unsigned long long)cnt[order[20]]);
    check_summary(&all, cnt, order, "one stream");
    CHECK_INT(gh_sk_top_merge(&a, &b), 0);
    check_summary(&a, cnt, order, "merge of halves");

    /* the stream split over 8 workers round-robin, merged in one reader */
    gh_sk_top_t w[8], acc8;
    CHECK_INT(gh_sk_top_init(&acc8, TOPM, 128), 0);
    for (int j = 0; j < 8; j++)
        CHECK_INT(gh_sk_top_init(&w[j], TOPM, 128), 0);
    for (uint32_t i = 0; i < ZS; i++) {
        char buf[32];
        gh_sk_top_add(&w[i % 8], gh_str(buf, (size_t)zkey(stream[i], buf)), 1);
    }
    for (int j = 0; j < 8; j++) {
        CHECK_INT(gh_sk_top_merge(&acc8, &w[j]), 0);
        gh_sk_top_free(&w[j]);
    }
    check_summary(&acc8, cnt, order, "merge of 8 workers");
    gh_sk_top_free(&acc8);

    CHECK_INT(gh_sk_top_merge(&a, &a), GH_EINVAL);
    gh_sk_top_t other;
    CHECK_INT(gh_sk_top_init(&other, TOPM, 64), 0);
    CHECK_INT(gh_sk_top_merge(&a, &other), GH_EINVAL);
    gh_sk_top_free(&other);
    gh_sk_top_free(&all);
    gh_sk_top_free(&a);
    gh_sk_top_free(&b);
    free(cdf);
    free(cnt);
    free(order);
    free(stream);
}

static void test_top_basic(void)
{
    gh_sk_top_t t;
    gh_sk_item_t it[8];
    uint64_t c, e;
    CHECK_INT(gh_sk_top_init(&t, 0, 8), GH_EINVAL);
    CHECK_INT(gh_sk_top_init(&t, 3, 0), GH_EINVAL);
    CHECK_INT(gh_sk_top_init(&t, 3, GH_SK_KEY_MAX + 1), GH_EINVAL);
    CHECK_INT(gh_sk_top_init(&t, 3, 8), 0);
    CHECK_INT(gh_sk_top_list(&t, it, 8), 0);
    CHECK_INT(gh_sk_top_min(&t), 0);
    gh_sk_top_add(&t, GH_STR("a"), 5);
    gh_sk_top_add(&t, GH_STR("b"), 3);
    gh_sk_top_add(&t, GH_STR("c"), 1);
    gh_sk_top_add(&t, GH_STR("x"), 0); /* weight 0: nothing */
    CHECK_INT(gh_sk_top_size(&t), 3);
    CHECK_INT(gh_sk_top_min(&t), 1);
    gh_sk_top_add(&t, GH_STR("d"), 2); /* replaces c: count 1 + 2, error 1 */
    CHECK_INT(gh_sk_top_get(&t, GH_STR("d"), &c, &e), 1);
    CHECK_INT(c, 3);
    CHECK_INT(e, 1);
    CHECK_INT(gh_sk_top_get(&t, GH_STR("c"), &c, &e), 0);
    CHECK_INT(c, 3); /* c's true weight (1) is at most the minimum */
    CHECK_INT(gh_sk_top_list(&t, it, 8), 3);
    CHECK_STR(it[0].key, "a");
    CHECK_INT(it[0].count, 5);
    CHECK_STR(it[1].key, "b"); /* b and d tie at 3: b's lower bound is higher */
    CHECK_STR(it[2].key, "d");
    CHECK_INT(gh_sk_top_list(&t, it, 1), 1);
    CHECK_STR(it[0].key, "a");
    CHECK_INT(gh_sk_top_total(&t), 11);
    CHECK_INT(gh_sk_top_check(&t), 0);

    /* keys are truncated to key_max bytes, at a UTF-8 boundary */
    gh_sk_top_add(&t, GH_STR("abcdefghij"), 10);
    gh_sk_top_add(&t, GH_STR("abcdefghXY"), 1);
    CHECK_INT(gh_sk_top_get(&t, GH_STR("abcdefgh"), &c, &e), 1);
    CHECK_INT(c - e, 11);
    gh_sk_top_add(&t, GH_STR("abcdef\xc3\xa9\xc3\xa9"), 20); /* "abcdef" + e-acute: the 2nd one cut */
    CHECK_INT(gh_sk_top_get(&t, GH_STR("abcdef\xc3\xa9"), &c, &e), 1);
    CHECK_INT(gh_sk_top_list(&t, it, 1), 1);
    CHECK_STR(it[0].key, "abcdef\xc3\xa9");
    gh_sk_top_add(&t, GH_STR("1234567\xe2\x82\xac"), 30); /* euro sign cut entirely */
    CHECK_INT(gh_sk_top_list(&t, it, 1), 1);
    CHECK_STR(it[0].key, "1234567");
    CHECK_INT(gh_sk_top_check(&t), 0);

    gh_sk_top_reset(&t);
    CHECK_INT(gh_sk_top_size(&t), 0);
    CHECK_INT(gh_sk_top_total(&t), 0);
    CHECK_INT(gh_sk_top_get(&t, GH_STR("a"), &c, &e), 0);
    CHECK_INT(c, 0);

    /* merge of small summaries by hand: A = {a:5, b:3, c:2} (full), B = {a:1, d:4} */
    gh_sk_top_t b;
    CHECK_INT(gh_sk_top_init(&b, 3, 8), 0);
    gh_sk_top_add(&t, GH_STR("a"), 5);
    gh_sk_top_add(&t, GH_STR("b"), 3);
    gh_sk_top_add(&t, GH_STR("c"), 2);
    gh_sk_top_add(&b, GH_STR("a"), 1);
    gh_sk_top_add(&b, GH_STR("d"), 4);
    CHECK_INT(gh_sk_top_merge(&t, &b), 0); /* B not full: its absent keys weigh 0 there */
    CHECK_INT(gh_sk_top_list(&t, it, 8), 3);
    CHECK_STR(it[0].key, "a");
    CHECK_INT(it[0].count, 6);
    CHECK_INT(it[0].error, 0);
    CHECK_STR(it[1].key, "d"); /* 4 + A's minimum 2, error 2 */
    CHECK_INT(it[1].count, 6);
    CHECK_INT(it[1].error, 2);
    CHECK_STR(it[2].key, "b");
    CHECK_INT(it[2].count, 3);
    CHECK_INT(gh_sk_top_total(&t), 15);
    CHECK_INT(gh_sk_top_check(&t), 0);
    gh_sk_top_free(&b);
    gh_sk_top_free(&t);
    gh_sk_top_free(&t); /* freeing twice is harmless */
}

/* Random small streams over a small alphabet split into 2..4 summaries of few counters, merged
 * in a chain: after every add and merge, every key's bounds hold against the exact weights. */
static void test_top_random_merge(void)
{
    enum { KEYS = 24 };
    int bad = 0;
    rng_state = 99;
    for (int round = 0; round < 3000; round++) {
        uint32_t m = 1 + (uint32_t)(rnd() % 8), nk = 1 + (uint32_t)(rnd() % KEYS), ns = 2 + (uint32_t)(rnd() % 3);
        gh_sk_top_t t[4];
        uint64_t exact[4][KEYS] = {{0}};
        for (uint32_t j = 0; j < ns; j++)
            CHECK_INT(gh_sk_top_init(&t[j], m, 4), 0);
        int nadd = (int)(rnd() % 200);
        for (int i = 0; i < nadd; i++) {
            uint32_t j = (uint32_t)(rnd() % ns), k = (uint32_t)(rnd() % nk);
            /* skewed: low keys are frequent */
            k = (uint32_t)(k * (rnd() % 4 == 0 ? 1 : (uint64_t)k) % nk);
            uint64_t wt = 1 + rnd() % 3;
            char key[4] = {'k', (char)('a' + k), 0, 0};
            gh_sk_top_add(&t[j], gh_str(key, 2), wt);
            exact[j][k] += wt;
        }
        for (uint32_t j = 1; j < ns; j++) {
            CHECK_INT(gh_sk_top_merge(&t[0], &t[j]), 0);
            for (uint32_t k = 0; k < KEYS; k++)
                exact[0][k] += exact[j][k];
        }
        if (gh_sk_top_check(&t[0]) != 0)
            bad++;
        for (uint32_t k = 0; k < KEYS; k++) {
            char key[4] = {'k', (char)('a' + k), 0, 0};
            uint64_t c, e;
            gh_sk_top_get(&t[0], gh_str(key, 2), &c, &e);
            if (!(c - e <= exact[0][k] && exact[0][k] <= c))
                bad++;
        }
        for (uint32_t j = 0; j < ns; j++)
            gh_sk_top_free(&t[j]);
    }
    CHECK_INT(bad, 0);

    /* by hand: B = {p:5, q:6 (error 1)} is full, so "k" (10 in A) may have weighed up to 5 in B */
    gh_sk_top_t a, b;
    uint64_t c, e;
    CHECK_INT(gh_sk_top_init(&a, 2, 4), 0);
    CHECK_INT(gh_sk_top_init(&b, 2, 4), 0);
    gh_sk_top_add(&a, GH_STR("k"), 10);
    gh_sk_top_add(&a, GH_STR("a"), 1);
    gh_sk_top_add(&b, GH_STR("k"), 1);
    gh_sk_top_add(&b, GH_STR("p"), 5);
    gh_sk_top_add(&b, GH_STR("q"), 5);
    CHECK_INT(gh_sk_top_merge(&a, &b), 0);
    CHECK_INT(gh_sk_top_get(&a, GH_STR("k"), &c, &e), 1);
    CHECK_INT(c, 15);
    CHECK_INT(e, 5);
    CHECK_INT(gh_sk_top_get(&a, GH_STR("q"), &c, &e), 1); /* 6 + A's minimum 1 */
    CHECK_INT(c, 7);
    CHECK_INT(e, 2);
    CHECK_INT(gh_sk_top_check(&a), 0);
    gh_sk_top_free(&a);
    gh_sk_top_free(&b);
}

/* --- DDSketch ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define DN 1000000

static void test_dd_accuracy(void)
{
    static const char *names[] = {"lognormal", "uniform", "exponential"};
    static const double qs[] = {0, 0.25, 0.5, 0.9, 0.99, 0.999, 1};
    double *x = malloc(DN * sizeof(double));
    rng_state = 7;
    for (int dist = 0; dist < 3; dist++) {
        for (int i = 0; i < DN; i++)
            x[i] = dist == 0   ? exp(log(2000) + 1.2 * normal()) /* latency in us, median 2 ms */
                   : dist == 1 ? 1000 * unif()
                               : -500 * log(unif());
        gh_sk_dd_t all, half[2];
        CHECK_INT(gh_sk_dd_init(&all, 0.01, GH_SK_DD_BUCKETS_DEFAULT), 0);
        CHECK_INT(gh_sk_dd_init(&half[0], 0.01, GH_SK_DD_BUCKETS_DEFAULT), 0);
        CHECK_INT(gh_sk_dd_init(&half[1], 0.01, 2048), 0); /* another bucket count merges too */
        double sum = 0;
        for (int i = 0; i < DN; i++) {
            gh_sk_dd_add(&all, x[i]);
            gh_sk_dd_add(&half[i & 1], x[i]);
            sum += x[i];
        }
        qsort(x, DN, sizeof(double), cmp_double);
        CHECK_INT(all.count, DN);
        CHECK(all.min == x[0] && all.max == x[DN - 1]);
        CHECK(fabs(all.sum / sum - 1) < 1e-9);
        CHECK_INT(gh_sk_dd_merge(&half[0], &half[1]), 0);
        double worst = 0;
        printf("ddsketch alpha=1%% %s:", names[dist]);
        for (size_t k = 0; k < GH_ARRAY_LEN(qs); k++) {
            double want = x[(size_t)floor(qs[k] * (DN - 1))];
            int exact = 0;
            double got = gh_sk_dd_quantile(&all, qs[k], &exact);
            double err = fabs(got - want) / want;
            CHECK(exact);
            if (!(err <= 0.01 * (1 + 1e-9)))
                fprintf(stderr, "  %s q=%g: got %.9g want %.9g (error %.5f)\n", names[dist], qs[k], got, want, err);
            CHECK(err <= 0.01 * (1 + 1e-9));
            if (err > worst)
                worst = err;
            if (qs[k] >= 0.5 && qs[k] < 1)
                printf(" p%g %.4f%%", 100 * qs[k], 100 * err);
            /* the merged halves answer exactly as the whole */
            CHECK(gh_sk_dd_quantile(&half[0], qs[k], NULL) == got);
        }
        printf(" (worst %.4f%%)\n", 100 * worst);
        CHECK_INT(half[0].count, DN);
        CHECK(half[0].min == all.min && half[0].max == all.max);
        CHECK(fabs(half[0].sum / all.sum - 1) < 1e-9);
        for (double q = 0; q <= 1; q += 0.001)
            CHECK(gh_sk_dd_quantile(&half[0], q, NULL) == gh_sk_dd_quantile(&all, q, NULL));
        gh_sk_dd_free(&all);
        gh_sk_dd_free(&half[0]);
        gh_sk_dd_free(&half[1]);
    }
    free(x);
}

static void test_dd_edges(void)
{
    gh_sk_dd_t d, e;
    CHECK_INT(gh_sk_dd_init(&d, 0, 1024), GH_EINVAL);
    CHECK_INT(gh_sk_dd_init(&d, 0.01, 8), GH_EINVAL);
    CHECK_INT(gh_sk_dd_init(&d, 0.01, 64), 0);
    CHECK(isnan(gh_sk_dd_quantile(&d, 0.5, NULL)));
    gh_sk_dd_add(&d, NAN);
    gh_sk_dd_add(&d, INFINITY);
    CHECK_INT(d.count, 0);
    CHECK_INT(d.invalid, 2);
    gh_sk_dd_add(&d, 0);
    gh_sk_dd_add(&d, -3);
    gh_sk_dd_add(&d, 100);
    CHECK_INT(d.zero, 2);
    CHECK(gh_sk_dd_quantile(&d, 0, NULL) == 0);
    CHECK(gh_sk_dd_quantile(&d, 1, NULL) == 100); /* clamped to max */
    CHECK(isnan(gh_sk_dd_quantile(&d, 1.5, NULL)));

    /* 64 buckets at 1% span a ratio of 3.6: values over 1e-3 .. 1e3 (345 buckets) collapse the
     * lowest; high quantiles keep the guarantee, low ones are flagged and overestimated */
    gh_sk_dd_reset(&d);
    CHECK_INT(gh_sk_dd_init(&e, 0.01, 1024), 0);
    static double x[100000];
    rng_state = 11;
    for (int i = 0; i < 100000; i++) {
        x[i] = exp(log(1e-3) + unif() * log(1e6));
        gh_sk_dd_add(&d, x[i]);
        gh_sk_dd_add(&e, x[i]);
    }
    qsort(x, 100000, sizeof(double), cmp_double);
    for (double q = 0; q <= 1.0001; q += 0.01) {
        double qq = q > 1 ? 1 : q;
        int exact;
        double want = x[(size_t)floor(qq * 99999)], got = gh_sk_dd_quantile(&d, qq, &exact);
        if (exact)
            CHECK(fabs(got - want) <= 0.01 * (1 + 1e-9) * want);
        else
            CHECK(got >= want * (1 - 0.01 * (1 + 1e-9)));
        if (qq >= 0.99)
            CHECK(exact);
        if (qq <= 0.5)
            CHECK(!exact);
    }
    /* merging the wide sketch into a narrow one collapses; into a wide one it does not */
    gh_sk_dd_t f;
    CHECK_INT(gh_sk_dd_init(&f, 0.01, 1024), 0);
    CHECK_INT(gh_sk_dd_merge(&f, &e), 0);
    CHECK_INT(gh_sk_dd_merge(&d, &e), 0);
    int ex;
    CHECK(gh_sk_dd_quantile(&f, 0.01, &ex) == gh_sk_dd_quantile(&e, 0.01, NULL) && ex);
    gh_sk_dd_quantile(&d, 0.01, &ex);
    CHECK(!ex);
    CHECK(gh_sk_dd_quantile(&d, 0.999, &ex) == gh_sk_dd_quantile(&e, 0.999, NULL) && ex);
    gh_sk_dd_t g;
    CHECK_INT(gh_sk_dd_init(&g, 0.02, 1024), 0);
    CHECK_INT(gh_sk_dd_merge(&f, &g), GH_EINVAL);
    CHECK_INT(gh_sk_dd_merge(&f, &f), GH_EINVAL);
    gh_sk_dd_free(&d);
    gh_sk_dd_free(&e);
    gh_sk_dd_free(&f);
    gh_sk_dd_free(&g);
}

/* --- sets, memory, windows ------------------------------------------------------------ */

static void make_event(gh_sk_event_t *ev, char (*bufs)[64], uint64_t i, int distinct)
{
    uint64_t r = distinct ? i : i % 50;
    memset(ev, 0, sizeof(*ev));
    ev->key[GH_SK_PATH] = gh_str(bufs[0], (size_t)snprintf(bufs[0], 64, "/p/%llu", (unsigned long long)r));
    ev->key[GH_SK_REFERRER] = gh_str(bufs[1], (size_t)snprintf(bufs[1], 64, "https://r%llu.example/", (unsigned long long)r));
    ev->key[GH_SK_UA] = gh_str(bufs[2], (size_t)snprintf(bufs[2], 64, "agent/%llu", (unsigned long long)r));
    memcpy(bufs[3], &r, 4);
    ev->key[GH_SK_IP] = gh_str(bufs[3], 4);
    bufs[4][0] = (char)('A' + r % 26);
    bufs[4][1] = (char)('A' + r / 26 % 26);
    ev->key[GH_SK_COUNTRY] = gh_str(bufs[4], 2);
    ev->visitor = key_hash(5, r);
    ev->has_visitor = 1;
    ev->latency = 100 + (double)(i % 1000);
    ev->status = 200 + (unsigned)(i % 4) * 100; /* 2xx..5xx */
    ev->cache = (unsigned)(i % 7);
    ev->bytes_in = 100;
    ev->bytes_out = 1000 + i % 10;
}

static void test_set(void)
{
    gh_sk_cfg_t cfg;
    gh_sk_cfg_default(&cfg);
    gh_sk_set_t a, b;
    CHECK_INT(gh_sk_set_init(&a, &cfg), 0);
    CHECK_INT(gh_sk_set_init(&b, &cfg), 0);
    CHECK_INT(gh_sk_set_bytes(&a), gh_sk_cfg_bytes(&cfg));
    char bufs[5][64];
    gh_sk_event_t ev;
    for (uint64_t i = 0; i < 1000; i++) {
        make_event(&ev, bufs, i, 0);
        gh_sk_set_add(i < 600 ? &a : &b, &ev);
    }
    ev.status = 99;
    ev.cache = 42;
    ev.key[GH_SK_PATH] = GH_STR_NULL;
    gh_sk_set_add(&b, &ev);
    CHECK_INT(gh_sk_set_merge(&a, &b), 0);
    CHECK_INT(a.requests, 1001);
    CHECK_INT(a.status[2] + a.status[3] + a.status[4] + a.status[5], 1000);
    CHECK_INT(a.status[0], 1);
    CHECK_INT(a.cache[7], 1);
    CHECK_INT(a.bytes_in, 100100);
    CHECK_INT(gh_sk_top_total(&a.top[GH_SK_PATH]), 1000);
    CHECK_INT(gh_sk_top_total(&a.top[GH_SK_COUNTRY]), 1001);
    CHECK_INT(gh_sk_top_size(&a.top[GH_SK_PATH]), 50);
    CHECK(fabs(gh_sk_hll_estimate(&a.visitors) - 50) < 1);
    CHECK_INT(a.latency.count, 1001);
    uint64_t c, e;
    CHECK_INT(gh_sk_top_get(&a.top[GH_SK_PATH], GH_STR("/p/7"), &c, &e), 1);
    CHECK_INT(c, 20);
    CHECK_INT(e, 0);
    CHECK_INT(gh_sk_set_merge(&a, &a), GH_EINVAL);
    gh_sk_cfg_t cfg2 = cfg;
    cfg2.hll_p = 12;
    gh_sk_set_t o;
    CHECK_INT(gh_sk_set_init(&o, &cfg2), 0);
    CHECK_INT(gh_sk_set_merge(&a, &o), GH_EINVAL);
    CHECK_INT(a.requests, 1001);
    gh_sk_set_free(&o);
    cfg2.top_m[GH_SK_IP] = 0;
    CHECK_INT(gh_sk_set_init(&o, &cfg2), GH_EINVAL);
    gh_sk_set_free(&o); /* a failed init leaves a freeable struct */
    gh_sk_set_free(&a);
    gh_sk_set_free(&b);
}

static void test_memory(void)
{
    gh_sk_cfg_t cfg;
    gh_sk_cfg_default(&cfg);
    size_t base = gh_sk_allocated();
    gh_sk_win_t w;
    gh_sk_set_t out;
    int64_t t0 = 1700000000000LL;
    CHECK_INT(gh_sk_win_init(&w, &cfg, t0), 0);
    CHECK_INT(gh_sk_set_init(&out, &cfg), 0);
    size_t set_bytes = gh_sk_cfg_bytes(&cfg), win_bytes = gh_sk_win_bytes(&w);
    CHECK_INT(gh_sk_allocated() - base, win_bytes + set_bytes);
    printf("memory: one set %zu bytes (%.1f KiB): hll %zu, ddsketch %zu, top-k", set_bytes,
           set_bytes / 1024.0, gh_sk_hll_bytes(&out.visitors), gh_sk_dd_bytes(&out.latency));
    for (int i = 0; i < GH_SK_NDIM; i++)
        printf(" %s %zu", gh_sk_dim_names[i], gh_sk_top_bytes(&out.top[i]));
    printf("; one window (42 sets) %zu bytes (%.2f MiB)\n", win_bytes, win_bytes / 1048576.0);
    gh_sk_cfg_t small;
    gh_sk_cfg_compact(&small);
    gh_sk_win_t ws;
    CHECK_INT(gh_sk_win_init(&ws, &small, t0), 0);
    printf("memory, compact cfg: one set %zu bytes (%.1f KiB), one window %zu bytes (%.2f MiB)\n",
           gh_sk_cfg_bytes(&small), gh_sk_cfg_bytes(&small) / 1024.0, gh_sk_win_bytes(&ws),
           gh_sk_win_bytes(&ws) / 1048576.0);
    CHECK(gh_sk_cfg_bytes(&small) < 56 * 1024);
    gh_sk_win_free(&ws);
    fflush(stdout);

    /* 1.5M requests with distinct keys over 26 hours: nothing allocated, nothing freed */
    struct mallinfo2 m0 = mallinfo2();
    size_t a0 = gh_sk_allocated();
    char bufs[5][64];
    gh_sk_event_t ev;
    clock_t c0 = clock();
    for (uint64_t i = 0; i < 1500000; i++) {
        make_event(&ev, bufs, i, 1);
        gh_sk_win_add(&w, t0 + (int64_t)i * 62, &ev); /* 62 ms apart: 26 h */
        if (i % 100000 == 0) {
            gh_sk_set_reset(&out);
            CHECK_INT(gh_sk_win_read(&w, t0 + (int64_t)i * 62, GH_SK_DAY, &out), 0);
        }
    }
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    struct mallinfo2 m1 = mallinfo2();
    CHECK_INT(gh_sk_allocated(), a0);
    CHECK_INT(m1.uordblks, m0.uordblks);
    CHECK_INT(m1.hblkhd, m0.hblkhd);
    CHECK_INT(gh_sk_win_bytes(&w), win_bytes);
    CHECK_INT(gh_sk_set_bytes(&out), set_bytes);
    printf("window add with 5 distinct keys per request (incl. rotations and 15 day reads): %.0f ns/request\n",
           secs * 1e9 / 1500000);
    gh_sk_win_free(&w);
    gh_sk_set_free(&out);
    CHECK_INT(gh_sk_allocated(), base);
}

static void test_window_expiry(void)
{
    gh_sk_cfg_t cfg;
    gh_sk_cfg_default(&cfg);
    cfg.hll_p = 8;
    cfg.dd_buckets = 64;
    for (int i = 0; i < GH_SK_NDIM; i++)
        cfg.top_m[i] = 16;
    const int64_t H = 3600000, M = 60000;
    int64_t t0 = 1700000000000LL; /* 22:13:20 UTC: not on a slice boundary of any level */
    gh_sk_win_t w;
    gh_sk_set_t out;
    CHECK_INT(gh_sk_win_init(&w, &cfg, t0), 0);
    CHECK_INT(gh_sk_set_init(&out, &cfg), 0);
    gh_sk_event_t ev = {0};
    ev.key[GH_SK_PATH] = GH_STR("/old");
    ev.status = 200;
    gh_sk_win_add(&w, t0, &ev);
    uint64_t c, e;
    int64_t now = t0 + 2 * H;
    ev.key[GH_SK_PATH] = GH_STR("/new");
    gh_sk_win_add(&w, now, &ev);
    for (int span = 0; span < GH_SK_SPANS; span++) {
        gh_sk_set_reset(&out);
        CHECK_INT(gh_sk_win_read(&w, now, span, &out), 0);
        CHECK_INT(gh_sk_top_get(&out.top[GH_SK_PATH], GH_STR("/old"), &c, &e), span == GH_SK_DAY);
        CHECK_INT(gh_sk_top_get(&out.top[GH_SK_PATH], GH_STR("/new"), &c, &e), 1);
        CHECK_INT(c, 1); /* once, not once per level */
        CHECK_INT(out.requests, span == GH_SK_DAY ? 2 : 1);
    }
    /* a day and a bit later everything has expired; reading an idle window advances it */
    gh_sk_set_reset(&out);
    CHECK_INT(gh_sk_win_read(&w, now + 24 * H + 10 * M, GH_SK_DAY, &out), 0);
    CHECK_INT(out.requests, 0);
    CHECK_INT(gh_sk_win_read(&w, now, 7, &out), GH_EINVAL);
    /* a clock step back: the event lands in the current slice */
    gh_sk_win_add(&w, now, &ev);
    gh_sk_set_reset(&out);
    CHECK_INT(gh_sk_win_read(&w, now, GH_SK_MINUTE, &out), 0);
    CHECK_INT(out.requests, 1);
    gh_sk_win_free(&w);
    gh_sk_set_free(&out);
}

/* Events at random times over 3 days, read at random moments: each span counts exactly the
 * events of its slices (no event counted twice or lost), and covers what the header says. */
static void test_window_coverage(void)
{
    gh_sk_cfg_t cfg;
    gh_sk_cfg_default(&cfg);
    cfg.hll_p = 6;
    cfg.dd_buckets = 32;
    for (int i = 0; i < GH_SK_NDIM; i++) {
        cfg.top_m[i] = 8;
        cfg.key_max[i] = 8;
    }
    static const int64_t ms[3] = {10000, 300000, 3600000};
    static const int nsl[3] = {6, 12, 24};
    enum { NEV = 40000 };
    static int64_t when[NEV];
    int64_t t0 = 1700000001234LL, t = t0;
    gh_sk_win_t w[2]; /* two workers, read into one set */
    gh_sk_set_t out;
    CHECK_INT(gh_sk_win_init(&w[0], &cfg, t0), 0);
    CHECK_INT(gh_sk_win_init(&w[1], &cfg, t0), 0);
    CHECK_INT(gh_sk_set_init(&out, &cfg), 0);
    rng_state = 3;
    gh_sk_event_t ev = {0};
    ev.key[GH_SK_PATH] = GH_STR("/x");
    int bad = 0, reads = 0;
    for (int i = 0; i < NEV; i++) {
        /* mostly seconds apart, sometimes minutes or hours: gaps of every size */
        uint64_t r = rnd() % 1000;
        t += r < 900 ? (int64_t)(rnd() % 12000) : r < 990 ? (int64_t)(rnd() % 900000) : (int64_t)(rnd() % (5 * 3600000));
        when[i] = t;
        gh_sk_win_add(&w[i & 1], t, &ev);
        if (rnd() % 50 == 0) {
            int64_t now = t + (int64_t)(rnd() % 20000);
            for (int span = 0; span < 3; span++) {
                gh_sk_set_reset(&out);
                CHECK_INT(gh_sk_win_read(&w[0], now, span, &out), 0);
                CHECK_INT(gh_sk_win_read(&w[1], now, span, &out), 0);
                uint64_t want = 0;
                int64_t cur = now / ms[span];
                for (int j = 0; j <= i; j++) {
                    int64_t age = now - when[j];
                    int in = when[j] / ms[span] > cur - nsl[span];
                    want += (uint64_t)in;
                    /* the stated coverage: at least (n-1) slices, at most n */
                    if ((age < (nsl[span] - 1) * ms[span] && !in) || (age >= nsl[span] * ms[span] && in))
                        bad++;
                }
                if (out.requests != want)
                    bad++;
                uint64_t c, e;
                gh_sk_top_get(&out.top[GH_SK_PATH], GH_STR("/x"), &c, &e);
                if (c != want || e != 0)
                    bad++;
                reads++;
            }
            t = now; /* the next events are not before this read (no clock step back) */
        }
    }
    CHECK(reads > 1000);
    CHECK_INT(bad, 0);
    gh_sk_win_free(&w[0]);
    gh_sk_win_free(&w[1]);
    gh_sk_set_free(&out);
}

static void bench_add(void)
{
    gh_sk_cfg_t cfg;
    gh_sk_cfg_default(&cfg);
    gh_sk_set_t s;
    CHECK_INT(gh_sk_set_init(&s, &cfg), 0);
    char bufs[5][64];
    gh_sk_event_t ev;
    enum { N = 1000000 };
    rng_state = 5;
    clock_t c0 = clock();
    for (uint64_t i = 0; i < N; i++) {
        make_event(&ev, bufs, rnd() % 5000, 1);
        gh_sk_set_add(&s, &ev);
    }
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    printf("set add (5 keys of 5000 each, hll, ddsketch; incl. building the event): %.0f ns/request\n",
           secs * 1e9 / N);
    gh_sk_set_free(&s);
}

int main(void)
{
    RUN(test_hll_accuracy);
    RUN(test_hll_merge);
    RUN(test_top_basic);
    RUN(test_top_zipf);
    RUN(test_top_random_merge);
    RUN(test_dd_accuracy);
    RUN(test_dd_edges);
    RUN(test_set);
    RUN(test_memory);
    RUN(test_window_expiry);
    RUN(test_window_coverage);
    RUN(bench_add);
    return t_done("sketch");
}
