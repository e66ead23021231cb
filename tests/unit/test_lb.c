/* test_lb.c: load-balancing policies, Maglev tables and the key hash (src/proxy/lb.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy/lb.h"
#include "t.h"

static void test_wrr_sequence(void)
{
    uint32_t w[] = {5, 1, 1};
    gh_lb_t *lb = gh_lb_new(GH_LB_ROUND_ROBIN, 3, w, NULL, 0, 1);
    CHECK(lb != NULL);
    /* nginx's documented order for weights {5, 1, 1}. */
    static const int want[] = {0, 0, 1, 0, 2, 0, 0};
    int count[3] = {0};
    for (int k = 0; k < 7; k++) {
        int i = gh_lb_pick(lb, NULL, 0, 0);
        CHECK_INT(i, want[k]);
        if (i >= 0)
            count[i]++;
    }
    CHECK_INT(count[0], 5);
    CHECK_INT(count[1], 1);
    CHECK_INT(count[2], 1);
    /* Exact shares over every later window of sum(weights) picks too. */
    for (int round = 0; round < 10; round++) {
        int c[3] = {0};
        for (int k = 0; k < 7; k++)
            c[gh_lb_pick(lb, NULL, 0, 0)]++;
        CHECK(c[0] == 5 && c[1] == 1 && c[2] == 1);
    }
    gh_lb_free(lb);
}

static void test_wrr_mask(void)
{
    uint32_t w[] = {5, 1, 1};
    gh_lb_t *lb = gh_lb_new(GH_LB_ROUND_ROBIN, 3, w, NULL, 0, 1);
    uint8_t ok[] = {1, 0, 1};
    int c[3] = {0};
    for (int k = 0; k < 600; k++)
        c[gh_lb_pick(lb, ok, 0, 0)]++;
    CHECK_INT(c[0], 500);
    CHECK_INT(c[1], 0);
    CHECK_INT(c[2], 100);

    uint8_t none[] = {0, 0, 0};
    CHECK_INT(gh_lb_pick(lb, none, 0, 0), -1);
    uint8_t only[] = {0, 1, 0};
    for (int k = 0; k < 10; k++)
        CHECK_INT(gh_lb_pick(lb, only, 0, 0), 1);
    gh_lb_free(lb);
}

static void test_wrr_weight_zero(void)
{
    /* A 0 in the configured weights counts as 1. */
    uint32_t w[] = {0, 2, 1};
    gh_lb_t *lb = gh_lb_new(GH_LB_ROUND_ROBIN, 3, w, NULL, 0, 1);
    CHECK_INT(lb->b[0].weight, 1);
    gh_lb_set_weight(lb, 1, 0); /* drained */
    int c[3] = {0};
    for (int k = 0; k < 200; k++)
        c[gh_lb_pick(lb, NULL, 0, 0)]++;
    CHECK_INT(c[1], 0);
    CHECK_INT(c[0], 100);
    CHECK_INT(c[2], 100);
    gh_lb_set_weight(lb, 0, 0);
    gh_lb_set_weight(lb, 2, 0);
    CHECK_INT(gh_lb_pick(lb, NULL, 0, 0), -1);
    /* Out-of-range indexes are ignored, not written. */
    gh_lb_set_weight(lb, 3, 7);
    gh_lb_set_weight(lb, -1, 7);
    gh_lb_begin(lb, 3);
    gh_lb_end(lb, -1, 0, 0, 0);
    CHECK_INT(lb->total_inflight, 0);
    gh_lb_free(lb);

    CHECK_INT(gh_lb_pick(NULL, NULL, 0, 0), -1);
    gh_lb_t *empty = gh_lb_new(GH_LB_LEAST_REQUEST, 0, NULL, NULL, 0, 0);
    CHECK(empty != NULL);
    CHECK_INT(gh_lb_pick(empty, NULL, 0, 0), -1);
    gh_lb_free(empty);
}

static void test_inflight_counts(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_LEAST_REQUEST, 2, NULL, NULL, 0, 0);
    CHECK(lb->rng[0] || lb->rng[1]);
    gh_lb_begin(lb, 0);
    gh_lb_begin(lb, 0);
    gh_lb_begin(lb, 1);
    CHECK_INT(lb->b[0].inflight, 2);
    CHECK_INT(lb->total_inflight, 3);
    gh_lb_end(lb, 0, 10, 0, 1);
    gh_lb_end(lb, 1, 10, 0, 1);
    gh_lb_end(lb, 1, 10, 0, 1); /* one end too many: no underflow */
    CHECK_INT(lb->b[1].inflight, 0);
    CHECK_INT(lb->b[0].inflight, 1);
    CHECK_INT(lb->total_inflight, 1);
    gh_lb_end(lb, 0, 10, 0, 1);
    gh_lb_end(lb, 0, 10, 0, 1);
    CHECK_INT(lb->b[0].inflight, 0);
    CHECK_INT(lb->total_inflight, 0);
    gh_lb_free(lb);
}

static void test_p2c_loaded(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_LEAST_REQUEST, 3, NULL, NULL, 0, 42);
    for (int k = 0; k < 10; k++)
        gh_lb_begin(lb, 0);
    int c[3] = {0};
    for (int k = 0; k < 1000; k++)
        c[gh_lb_pick(lb, NULL, 0, 0)]++;
    CHECK(c[0] < 50);
    CHECK(c[1] > 300 && c[2] > 300);

    uint8_t single[] = {1, 0, 0};
    for (int k = 0; k < 100; k++)
        CHECK_INT(gh_lb_pick(lb, single, 0, 0), 0);
    uint8_t none[] = {0, 0, 0};
    CHECK_INT(gh_lb_pick(lb, none, 0, 0), -1);
    gh_lb_free(lb);

    /* Relative to weight: 3 in flight on weight 3 beats 3 on weight 1. */
    uint32_t w[] = {1, 3};
    lb = gh_lb_new(GH_LB_LEAST_REQUEST, 2, w, NULL, 0, 7);
    for (int k = 0; k < 3; k++) {
        gh_lb_begin(lb, 0);
        gh_lb_begin(lb, 1);
    }
    for (int k = 0; k < 50; k++)
        CHECK_INT(gh_lb_pick(lb, NULL, 0, 0), 1);
    gh_lb_free(lb);
}

static void test_p2c_uniform(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_LEAST_REQUEST, 4, NULL, NULL, 0, 3);
    int c[4] = {0};
    for (int k = 0; k < 30000; k++)
        c[gh_lb_pick(lb, NULL, 0, 0)]++;
    for (int i = 0; i < 4; i++)
        CHECK(c[i] > 7500 * 0.85 && c[i] < 7500 * 1.15);
    gh_lb_free(lb);
}

/* Few eligible among many: the rejection sampler gives up and the exact scan picks. */
static void test_p2c_sparse(void)
{
    enum { N = 64 };
    gh_lb_t *lb = gh_lb_new(GH_LB_LEAST_REQUEST, N, NULL, NULL, 0, 9);
    uint8_t ok[N] = {0};
    ok[5] = ok[40] = 1;
    int c5 = 0, c40 = 0;
    for (int k = 0; k < 2000; k++) {
        int i = gh_lb_pick(lb, ok, 0, 0);
        CHECK(i == 5 || i == 40);
        c5 += i == 5;
        c40 += i == 40;
    }
    CHECK(c5 > 800 && c40 > 800);
    ok[5] = 0;
    for (int k = 0; k < 100; k++)
        CHECK_INT(gh_lb_pick(lb, ok, 0, 0), 40);
    gh_lb_free(lb);
}

/* One simulated request at now: pick, begin, end with the backend's latency. */
static int ewma_step(gh_lb_t *lb, const uint64_t *lat, uint64_t now)
{
    int i = gh_lb_pick(lb, NULL, 0, now);
    if (i >= 0) {
        gh_lb_begin(lb, i);
        gh_lb_end(lb, i, lat[i], 0, now);
    }
    return i;
}

static void test_ewma_fast_wins_then_recovery(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_PEAK_EWMA, 2, NULL, NULL, 0, 5);
    uint64_t lat[] = {1000, 50000};
    uint64_t now = 1000000;
    int c[2] = {0};
    for (int k = 0; k < 1000; k++, now += 1000)
        c[ewma_step(lb, lat, now)]++;
    CHECK(c[0] > 900);
    CHECK(c[1] >= 1); /* unsampled at first, so tried */

    /* Backend 1 recovers; it gets no traffic, so it gets no samples, but its average
     * decays at pick time until it is retried and its fast samples bring it back. */
    lat[1] = 1000;
    int late[2] = {0};
    for (int k = 0; k < 3000; k++, now += 100000) {
        int i = ewma_step(lb, lat, now);
        if (k >= 2000)
            late[i]++;
    }
    CHECK(late[1] > 200);
    CHECK(late[0] > 200);
    gh_lb_free(lb);
}

static void test_ewma_failure_penalty(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_PEAK_EWMA, 2, NULL, NULL, 0, 5);
    uint64_t now = 1000000;
    for (int i = 0; i < 2; i++) {
        gh_lb_begin(lb, i);
        gh_lb_end(lb, i, 1000, 0, now);
    }
    gh_lb_begin(lb, 1);
    gh_lb_end(lb, 1, 200, 1, now); /* fast but failed: counts as the penalty */
    CHECK(lb->b[1].ewma_us >= GH_LB_FAIL_PENALTY_US);
    uint64_t lat[] = {1000, 1000};
    for (int k = 0; k < 100; k++, now += 1000)
        CHECK_INT(ewma_step(lb, lat, now), 0);
    gh_lb_free(lb);
}

static void test_ewma_peak_and_decay(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_PEAK_EWMA, 1, NULL, NULL, 0, 5);
    gh_lb_end(lb, 0, 1000, 0, 100);
    CHECK(lb->b[0].ewma_us == 1000);
    gh_lb_end(lb, 0, 5000, 0, 200); /* slower: taken at once */
    CHECK(lb->b[0].ewma_us == 5000);
    /* Faster, one time constant later: weight exp(-1) on the old value. */
    gh_lb_end(lb, 0, 1000, 0, 200 + lb->decay_us);
    CHECK(lb->b[0].ewma_us > 2470 && lb->b[0].ewma_us < 2480);
    gh_lb_end(lb, 0, 0, 0, 300 + lb->decay_us); /* 0 us still counts as a sample */
    CHECK(lb->b[0].ewma_us > 0);
    gh_lb_free(lb);
}

/* The inflight term: with equal latency, a backend with requests in flight loses. */
static void test_ewma_inflight(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_PEAK_EWMA, 2, NULL, NULL, 0, 5);
    for (int i = 0; i < 2; i++) {
        gh_lb_begin(lb, i);
        gh_lb_end(lb, i, 1000, 0, 10);
    }
    gh_lb_begin(lb, 0);
    for (int k = 0; k < 50; k++)
        CHECK_INT(gh_lb_pick(lb, NULL, 0, 10), 1);
    gh_lb_free(lb);
}

static const char *names10[] = {"10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80",
                                "10.0.0.4:80", "10.0.0.5:80", "10.0.0.6:80", "10.0.0.7:80",
                                "10.0.0.8:80", "10.0.0.9:80"};

static void test_maglev_size(void)
{
    CHECK_INT(gh_maglev_size(0), 251);
    CHECK_INT(gh_maglev_size(1), 251);
    CHECK_INT(gh_maglev_size(3), 509);
    CHECK_INT(gh_maglev_size(10), 1021);
    CHECK_INT(gh_maglev_size(40), 4093);
    CHECK_INT(gh_maglev_size(41), 8191);
    CHECK_INT(gh_maglev_size(655), 65521);
    CHECK_INT(gh_maglev_size(1000), 65537);
    CHECK_INT(gh_maglev_size(UINT32_MAX), 65537);
    CHECK(gh_maglev_build(names10, NULL, 10, 1000) == NULL); /* not prime */
    CHECK(gh_maglev_build(names10, NULL, 10, 7) == NULL);    /* not > n */
    CHECK(gh_maglev_build(names10, NULL, 0, 251) == NULL);
}

static void test_maglev_even(void)
{
    uint32_t size = gh_maglev_size(10);
    uint32_t *t = gh_maglev_build(names10, NULL, 10, size);
    CHECK(t != NULL);
    if (!t)
        return;
    int c[10] = {0}, bad = 0;
    for (uint32_t s = 0; s < size; s++) {
        if (t[s] >= 10)
            bad++;
        else
            c[t[s]]++;
    }
    CHECK_INT(bad, 0);
    for (int i = 0; i < 10; i++)
        CHECK(c[i] >= size / 10 * 0.9 && c[i] <= size / 10 * 1.1);
    /* Deterministic for the same names in the same order. */
    uint32_t *t2 = gh_maglev_build(names10, NULL, 10, size);
    CHECK(t2 && !memcmp(t, t2, size * sizeof(*t)));
    free(t2);
    free(t);
}

static void test_maglev_weighted(void)
{
    uint32_t w[] = {1, 2, 3, 4};
    uint32_t size = gh_maglev_size(4);
    uint32_t *t = gh_maglev_build(names10, w, 4, size);
    CHECK(t != NULL);
    if (!t)
        return;
    int c[4] = {0};
    for (uint32_t s = 0; s < size; s++)
        if (t[s] < 4)
            c[t[s]]++;
    CHECK_INT(c[0] + c[1] + c[2] + c[3], size);
    for (int i = 0; i < 4; i++) {
        double want = size * w[i] / 10.0;
        CHECK(c[i] >= want * 0.9 && c[i] <= want * 1.1);
    }
    free(t);

    /* Equal large weights share evenly (no first-come bias in the last round). */
    uint32_t w2[] = {100, 100};
    t = gh_maglev_build(names10, w2, 2, 251);
    int c2[2] = {0};
    for (uint32_t s = 0; t && s < 251; s++)
        c2[t[s]]++;
    CHECK(c2[0] >= 125 && c2[1] >= 125);
    free(t);
}

static void test_maglev_removal(void)
{
    uint32_t size = gh_maglev_size(10);
    CHECK_INT(gh_maglev_size(9), size);
    const char *names9[9];
    for (int i = 0, j = 0; i < 10; i++)
        if (i != 4)
            names9[j++] = names10[i];
    uint32_t *t10 = gh_maglev_build(names10, NULL, 10, size);
    uint32_t *t9 = gh_maglev_build(names9, NULL, 9, size);
    CHECK(t10 && t9);
    if (!t10 || !t9)
        goto out;
    int moved = 0, kept = 0, others = 0;
    for (uint64_t k = 0; k < 100000; k++) {
        uint64_t h = gh_lb_hash(&k, sizeof(k));
        const char *before = names10[t10[h % size]];
        const char *after = names9[t9[h % size]];
        if (before != after)
            moved++;
        if (before != names10[4]) {
            others++;
            kept += before == after;
        }
    }
    double f = moved / 100000.0, stay = (double)kept / others;
    CHECK(f >= 0.08 && f <= 0.14);
    CHECK(stay >= 0.95);
out:
    free(t10);
    free(t9);
}

static void test_hash_pick_mask_and_bound(void)
{
    uint32_t size = gh_maglev_size(10);
    uint32_t *t = gh_maglev_build(names10, NULL, 10, size);
    CHECK(t != NULL);
    if (!t)
        return;
    gh_lb_t *lb = gh_lb_new(GH_LB_HASH, 10, NULL, t, size, 1);
    uint8_t ok[10];
    memset(ok, 1, sizeof(ok));
    ok[3] = 0;
    int bad = 0, moved = 0, off3 = 0;
    for (uint64_t k = 0; k < 20000; k++) {
        uint64_t h = gh_lb_hash(&k, sizeof(k));
        int a = gh_lb_pick(lb, NULL, h, 0);
        int b = gh_lb_pick(lb, ok, h, 0);
        if (a != (int)t[h % size] || b < 0 || b == 3)
            bad++;
        if (a != 3 && a != b)
            moved++;
        off3 += a == 3;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(moved, 0);
    CHECK(off3 > 1500);

    /* Bounded load: backend 2 far over ceil(1.25 * (total + 1) / n) sheds its keys,
     * and only those move. */
    for (int k = 0; k < 1000; k++)
        gh_lb_begin(lb, 2);
    int on2 = 0, others_moved = 0;
    for (uint64_t k = 0; k < 20000; k++) {
        uint64_t h = gh_lb_hash(&k, sizeof(k));
        int i = gh_lb_pick(lb, NULL, h, 0);
        on2 += i == 2;
        if (t[h % size] != 2 && i != (int)t[h % size])
            others_moved++;
    }
    CHECK_INT(on2, 0);
    CHECK_INT(others_moved, 0);
    /* Unbounded: keys stay put however loaded. */
    lb->load_factor = 0;
    CHECK_INT(gh_lb_pick(lb, NULL, 0, 0), (int)t[0]);
    int to2 = 0;
    for (uint64_t k = 0; k < 2000; k++)
        to2 += gh_lb_pick(lb, NULL, gh_lb_hash(&k, sizeof(k)), 0) == 2;
    CHECK(to2 > 100);
    /* Nobody within the bound (the only eligible one over it): still served. */
    lb->load_factor = 0.5;
    uint8_t only2[10] = {0};
    only2[2] = 1;
    CHECK_INT(gh_lb_pick(lb, only2, 12345, 0), 2);
    memset(only2, 0, sizeof(only2));
    CHECK_INT(gh_lb_pick(lb, only2, 12345, 0), -1);
    gh_lb_free(lb);
    free(t);
}

static void test_hash_no_table(void)
{
    gh_lb_t *lb = gh_lb_new(GH_LB_HASH, 4, NULL, NULL, 0, 1);
    for (uint64_t k = 0; k < 8; k++)
        CHECK_INT(gh_lb_pick(lb, NULL, k, 0), (int)(k % 4));
    uint8_t ok[] = {1, 0, 1, 1}; /* eligible: 0, 2, 3 */
    CHECK_INT(gh_lb_pick(lb, ok, 0, 0), 0);
    CHECK_INT(gh_lb_pick(lb, ok, 1, 0), 2);
    CHECK_INT(gh_lb_pick(lb, ok, 5, 0), 3);
    uint8_t none[] = {0, 0, 0, 0};
    CHECK_INT(gh_lb_pick(lb, none, 5, 0), -1);
    gh_lb_free(lb);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_hash_fn(void)
{
    CHECK(gh_lb_hash("abc", 3) == gh_lb_hash("abc", 3));
    CHECK(gh_lb_hash("abc", 3) != gh_lb_hash("abd", 3));
    CHECK(gh_lb_hash("", 0) != gh_lb_hash("\0", 1));
    CHECK(gh_lb_hash("\0", 1) != gh_lb_hash("\0\0", 2));
    /* Every prefix of a 40-byte string (all tail lengths, several lanes) distinct. */
    const char *s = "10.1.2.3:443/some/long/path?and=a-query";
    enum { N = 4000 };
    static uint64_t h[N];
    int n = 0;
    for (size_t len = 0; len <= 39; len++)
        h[n++] = gh_lb_hash(s, len);
    for (uint32_t k = 0; n < N; k++)
        h[n++] = gh_lb_hash(&k, sizeof(k));
    qsort(h, N, sizeof(h[0]), cmp_u64);
    int dup = 0;
    for (int i = 1; i < N; i++)
        dup += h[i] == h[i - 1];
    CHECK_INT(dup, 0);
    /* Avalanche: flipping one input bit flips about half the output bits. */
    uint64_t x = 0x0123456789abcdefull, base = gh_lb_hash(&x, sizeof(x));
    int total = 0;
    for (int b = 0; b < 64; b++) {
        uint64_t y = x ^ (1ull << b);
        total += __builtin_popcountll(gh_lb_hash(&y, sizeof(y)) ^ base);
    }
    CHECK(total > 64 * 24 && total < 64 * 40);
}

int main(void)
{
    RUN(test_wrr_sequence);
    RUN(test_wrr_mask);
    RUN(test_wrr_weight_zero);
    RUN(test_inflight_counts);
    RUN(test_p2c_loaded);
    RUN(test_p2c_uniform);
    RUN(test_p2c_sparse);
    RUN(test_ewma_fast_wins_then_recovery);
    RUN(test_ewma_failure_penalty);
    RUN(test_ewma_peak_and_decay);
    RUN(test_ewma_inflight);
    RUN(test_maglev_size);
    RUN(test_maglev_even);
    RUN(test_maglev_weighted);
    RUN(test_maglev_removal);
    RUN(test_hash_pick_mask_and_bound);
    RUN(test_hash_no_table);
    RUN(test_hash_fn);
    return t_done("test_lb");
}
