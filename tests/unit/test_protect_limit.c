/* test_protect_limit.c: the rate-limit state engine (src/protect/shtab.c, gcra.c,
 * topk.c): SipHash against the reference vectors, GCRA on an injected clock (no
 * sleeping), the shared table (find/create/remove, a million keys, eviction order when
 * full, several threads on the same keys) and the heavy-hitter summary.
 *
 * Measurements are printed on stdout: bytes per key, insert and lookup ns per key of a
 * 1M-key table, and threaded gcra_take throughput. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "protect/gcra.h"
#include "protect/shtab.h"
#include "protect/topk.h"
#include "t.h"

#define MS 1000000ull
#define SEC 1000000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

static int sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return 1;
#endif
#endif
    return getenv("GATEHOUSE_SANITIZED") != NULL;
}

/* --- SipHash ---------------------------------------------------------------------- */

static const uint64_t REF_K0 = 0x0706050403020100ull, REF_K1 = 0x0f0e0d0c0b0a0908ull;

static uint64_t le64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

/* SipHash-2-4 as the paper writes it: message words assembled byte by byte. */
#define REF_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define REF_ROUND                                                                                                      \
    do {                                                                                                               \
        v0 += v1, v1 = REF_ROTL(v1, 13), v1 ^= v0, v0 = REF_ROTL(v0, 32);                                             \
        v2 += v3, v3 = REF_ROTL(v3, 16), v3 ^= v2;                                                                     \
        v0 += v3, v3 = REF_ROTL(v3, 21), v3 ^= v0;                                                                     \
        v2 += v1, v1 = REF_ROTL(v1, 17), v1 ^= v2, v2 = REF_ROTL(v2, 32);                                             \
    } while (0)
static uint64_t sip_ref(uint64_t k0, uint64_t k1, const uint8_t *p, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    for (size_t w = 0; w <= n / 8; w++) {
        uint64_t m = w == n / 8 ? (uint64_t)(n & 0xff) << 56 : 0;
        for (size_t i = 0; i < 8 && w * 8 + i < n; i++)
            m |= (uint64_t)p[w * 8 + i] << (8 * i);
        v3 ^= m;
        REF_ROUND;
        REF_ROUND;
        v0 ^= m;
    }
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        REF_ROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void test_siphash_paper(void)
{
    uint8_t m[64];
    for (int i = 0; i < 64; i++)
        m[i] = (uint8_t)i;
    /* The paper's Appendix A: key 00..0f, message 00..0e. */
    CHECK(gh_siphash24(REF_K0, REF_K1, m, 15) == 0xa129ca6149be45e5ull);
    /* Reference vectors_sip64 (bytes of the output, little-endian) for lengths 0, 8, 63. */
    static const uint8_t v0[8] = {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72};
    static const uint8_t v8[8] = {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93};
    static const uint8_t v63[8] = {0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95};
    CHECK(gh_siphash24(REF_K0, REF_K1, m, 0) == le64(v0));
    CHECK(gh_siphash24(REF_K0, REF_K1, m, 8) == le64(v8));
    CHECK(gh_siphash24(REF_K0, REF_K1, m, 63) == le64(v63));
    /* every length 0..64 at every alignment 0..7 against a byte-at-a-time reference (the one-shot
     * reads its tail in overlapping loads) */
    uint8_t big[80];
    for (int i = 0; i < 80; i++)
        big[i] = (uint8_t)(i * 37 + 11);
    int bad = 0;
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= 64; n++)
            bad += gh_siphash24(REF_K0 + n, REF_K1, big + off, n) != sip_ref(REF_K0 + n, REF_K1, big + off, n);
    CHECK_INT(bad, 0);
    CHECK(sip_ref(REF_K0, REF_K1, m, 15) == 0xa129ca6149be45e5ull); /* (the reference itself) */
}

static void test_siphash128_vectors(void)
{
    /* Reference vectors_sip128 for message lengths 0, 7, 8, 15 and 63. */
    static const struct {
        size_t len;
        uint8_t out[16];
    } v[] = {
        {0, {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93}},
        {7, {0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8, 0x4a, 0xa6, 0x1f, 0xf0, 0x82, 0x39}},
        {8, {0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14, 0x97, 0xb4}},
        {15, {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3, 0xd9}},
        {63, {0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97, 0x3f, 0xbd, 0x7c}},
    };
    uint8_t m[64];
    for (int i = 0; i < 64; i++)
        m[i] = (uint8_t)i;
    for (size_t i = 0; i < GH_ARRAY_LEN(v); i++) {
        /* Fed whole, then in every two-piece split, then byte by byte. */
        for (size_t cut = 0; cut <= v[i].len + 1; cut++) {
            gh_keyhash_t k;
            gh_keyhash_init_key(&k, REF_K0, REF_K1);
            if (cut <= v[i].len) {
                gh_keyhash_add(&k, m, cut);
                gh_keyhash_add(&k, m + cut, v[i].len - cut);
            } else {
                for (size_t j = 0; j < v[i].len; j++)
                    gh_keyhash_add(&k, m + j, 1);
            }
            uint64_t hi, lo;
            gh_keyhash_final(&k, &hi, &lo);
            CHECK(hi == le64(v[i].out) && lo == le64(v[i].out + 8));
        }
    }
}

static void test_keyhash_builder(void)
{
    gh_shtab_seed_set(REF_K0, REF_K1);
    /* init(domain) is the plain hash of the domain word followed by the fields. */
    uint8_t m[15];
    for (int i = 0; i < 15; i++)
        m[i] = (uint8_t)i;
    gh_keyhash_t a, b;
    uint64_t ah, al, bh, bl;
    gh_keyhash_init(&a, 0x0706050403020100ull);
    gh_keyhash_add(&a, m + 8, 7);
    gh_keyhash_final(&a, &ah, &al);
    gh_keyhash_init_key(&b, REF_K0, REF_K1);
    gh_keyhash_add(&b, m, 15);
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah == bh && al == bl);
    CHECK(ah == 0x11a8b03399e99354ull && al == 0xd9c3cf970fec087eull); /* vectors_sip128[15] */

    /* add_u64 at an unaligned position equals its 8 little-endian bytes. */
    gh_keyhash_init(&a, 1);
    gh_keyhash_add(&a, "xyz", 3);
    gh_keyhash_add_u64(&a, 0x1122334455667788ull);
    gh_keyhash_final(&a, &ah, &al);
    gh_keyhash_init(&b, 1);
    gh_keyhash_add(&b, "xyz\x88\x77\x66\x55\x44\x33\x22\x11", 11);
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah == bh && al == bl);

    /* ... and at an aligned position too. */
    gh_keyhash_init(&a, 1);
    gh_keyhash_add_u64(&a, 0x1122334455667788ull);
    gh_keyhash_final(&a, &ah, &al);
    gh_keyhash_init(&b, 1);
    gh_keyhash_add(&b, "\x88\x77\x66\x55\x44\x33\x22\x11", 8);
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah == bh && al == bl);

    /* Length-prefixed fields: ("ab","c") and ("a","bc") differ; domains separate. */
    gh_keyhash_init(&a, 7);
    gh_keyhash_add_str(&a, GH_STR("ab"));
    gh_keyhash_add_str(&a, GH_STR("c"));
    gh_keyhash_final(&a, &ah, &al);
    gh_keyhash_init(&b, 7);
    gh_keyhash_add_str(&b, GH_STR("a"));
    gh_keyhash_add_str(&b, GH_STR("bc"));
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah != bh || al != bl);
    gh_keyhash_init(&b, 8);
    gh_keyhash_add_str(&b, GH_STR("ab"));
    gh_keyhash_add_str(&b, GH_STR("c"));
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah != bh || al != bl);

    /* The random seed changes keys. */
    CHECK_INT(gh_shtab_seed_init(), 0);
    gh_keyhash_init(&b, 7);
    gh_keyhash_add_str(&b, GH_STR("ab"));
    gh_keyhash_add_str(&b, GH_STR("c"));
    gh_keyhash_final(&b, &bh, &bl);
    CHECK(ah != bh || al != bl);
}

/* --- GCRA ------------------------------------------------------------------------- */

static void test_gcra_init(void)
{
    gh_gcra_t g;
    CHECK_INT(gh_gcra_init(&g, 0, 1), GH_EINVAL);
    CHECK_INT(gh_gcra_init(&g, -5, 1), GH_EINVAL);
    CHECK_INT(gh_gcra_init(&g, NAN, 1), GH_EINVAL);
    CHECK_INT(gh_gcra_init(&g, INFINITY, 1), GH_EINVAL);
    CHECK_INT(gh_gcra_init(&g, 3e9, 1), GH_EINVAL); /* interval rounds to 0 ns */
    CHECK_INT(gh_gcra_init(&g, 1e-12, 0), GH_EINVAL); /* window beyond 2^62 ns */
    CHECK_INT(gh_gcra_init(&g, 1, UINT32_MAX), GH_EINVAL);
    CHECK_INT(gh_gcra_init(&g, 1e9, 0), 0);
    CHECK_INT(g.interval_ns, 1);
    CHECK_INT(gh_gcra_init(&g, 3, 2), 0);
    CHECK_INT(g.interval_ns, 333333333);
    CHECK_INT(g.tolerance_ns, 666666666);
    /* 100 per minute, written as a rate per second, is an exact interval again. */
    CHECK_INT(gh_gcra_init(&g, 100.0 / 60.0, 0), 0);
    CHECK_INT(g.interval_ns, 600 * MS);
}

static void test_gcra_steady(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 1000, 0);
    uint64_t tat = 0, base = 5 * SEC;
    gh_gcra_result_t r;
    int admitted = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        gh_gcra_step(&tat, &g, base + k * MS, 1, 0, &r);
        admitted += r.allowed;
        if (k == 0) {
            CHECK_INT(r.limit, 1);
            CHECK_INT(r.remaining, 0);
            CHECK_INT(r.reset_ns, MS);
            CHECK_INT(r.retry_after_ns, MS);
        }
    }
    CHECK_INT(admitted, 1000);
    /* One more in the same instant as the 1000th does not conform, and waits exactly
     * until the next slot. */
    uint64_t before = tat;
    gh_gcra_step(&tat, &g, base + 999 * MS, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(tat, before);
    CHECK_INT(r.retry_after_ns, MS);
    CHECK_INT(r.remaining, 0);
    gh_gcra_step(&tat, &g, base + 1000 * MS - 1, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, 1);
    gh_gcra_step(&tat, &g, base + 1000 * MS, 1, 0, &r);
    CHECK_INT(r.allowed, 1);

    /* A steady rate of 3/s (interval not a whole ns: rounded) over 1000 requests. */
    gh_gcra_init(&g, 3, 0);
    tat = 0;
    admitted = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        gh_gcra_step(&tat, &g, k * g.interval_ns, 1, 0, &r);
        admitted += r.allowed;
    }
    CHECK_INT(admitted, 1000);
}

static void test_gcra_burst(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 10, 5); /* 100 ms interval, 6 at once */
    uint64_t tat = 0, now = 42 * SEC;
    gh_gcra_result_t r;
    for (uint32_t i = 0; i < 6; i++) {
        gh_gcra_step(&tat, &g, now, 1, 0, &r);
        CHECK_INT(r.allowed, 1);
        CHECK_INT(r.delay_ns, 0);
        CHECK_INT(r.limit, 6);
        CHECK_INT(r.remaining, 5 - i);
        CHECK_INT(r.reset_ns, (i + 1) * 100 * MS);
        CHECK_INT(r.retry_after_ns, i < 5 ? 0 : 100 * MS);
    }
    gh_gcra_step(&tat, &g, now, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, 100 * MS);
    CHECK_INT(r.reset_ns, 600 * MS);
    /* Exactly at retry_after it conforms, 1 ns before it does not. */
    gh_gcra_step(&tat, &g, now + 100 * MS - 1, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, 1);
    gh_gcra_step(&tat, &g, now + 100 * MS, 1, 0, &r);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(r.remaining, 0);
    /* Partial recovery: 250 ms later 2 slots are back (floor), the third at 300 ms. */
    gh_gcra_step(&tat, &g, now + 350 * MS, 0, 0, &r); /* cost 0 reads */
    CHECK_INT(r.allowed, 1);
    CHECK_INT(r.remaining, 2);
    CHECK_INT(r.reset_ns, 350 * MS);
    /* Back to new after (burst + 1) intervals at rest. */
    gh_gcra_step(&tat, &g, now + 700 * MS, 0, 0, &r);
    CHECK_INT(r.remaining, 6);
    CHECK_INT(r.reset_ns, 0);
}

static void test_gcra_delay(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 10, 0);
    uint64_t tat = 0, now = SEC;
    gh_gcra_result_t r;
    gh_gcra_step(&tat, &g, now, 1, 250 * MS, &r);
    CHECK(r.allowed && r.delay_ns == 0);
    gh_gcra_step(&tat, &g, now, 1, 250 * MS, &r);
    CHECK(r.allowed && r.delay_ns == 100 * MS);
    gh_gcra_step(&tat, &g, now, 1, 250 * MS, &r);
    CHECK(r.allowed && r.delay_ns == 200 * MS);
    CHECK_INT(r.reset_ns, 300 * MS);
    CHECK_INT(r.retry_after_ns, 300 * MS);
    uint64_t before = tat;
    gh_gcra_step(&tat, &g, now, 1, 250 * MS, &r); /* would wait 300 ms */
    CHECK_INT(r.allowed, 0);
    CHECK_INT(tat, before);
    CHECK_INT(r.retry_after_ns, 300 * MS);
    /* 50 ms later the wait is 250 ms: admitted, and the state is as if it came then. */
    gh_gcra_step(&tat, &g, now + 50 * MS, 1, 250 * MS, &r);
    CHECK(r.allowed && r.delay_ns == 250 * MS);
    CHECK_INT(tat, now + 400 * MS);
    /* Without max_wait the same request is a plain reject. */
    gh_gcra_step(&tat, &g, now + 50 * MS, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.delay_ns, 0);
}

static void test_gcra_time_jumps(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 10, 2);
    uint64_t tat = 0, now = 1000;
    gh_gcra_result_t r;
    for (int i = 0; i < 3; i++)
        gh_gcra_step(&tat, &g, now, 1, 0, &r);
    gh_gcra_step(&tat, &g, now, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    /* A clock behind the one that wrote the TAT (another worker's) sees less credit. */
    gh_gcra_step(&tat, &g, now - 999, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, 100 * MS + 999);
    CHECK_INT(r.reset_ns, 300 * MS + 999);
    /* Years later: a new key again, nothing overflows. */
    uint64_t later = now + 100ull * 365 * 86400 * SEC;
    gh_gcra_step(&tat, &g, later, 1, 0, &r);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(r.remaining, 2);
    /* A clock near the end of its range: the sum would overflow, so never admitted. */
    tat = 0;
    gh_gcra_step(&tat, &g, UINT64_MAX - 5, 1, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(tat, 0);
    /* A zero clock and zero state are a new key. */
    tat = 0;
    gh_gcra_step(&tat, &g, 0, 1, 0, &r);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(tat, 100 * MS);
}

static void test_gcra_cost(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 10, 9); /* 10 at once */
    uint64_t tat = 0, now = SEC;
    gh_gcra_result_t r;
    gh_gcra_step(&tat, &g, now, 4, 0, &r);
    CHECK(r.allowed && r.remaining == 6);
    gh_gcra_step(&tat, &g, now, 4, 0, &r);
    CHECK(r.allowed && r.remaining == 2);
    CHECK_INT(r.retry_after_ns, 200 * MS); /* a cost-4 request needs 2 more slots */
    gh_gcra_step(&tat, &g, now, 4, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, 200 * MS);
    CHECK_INT(r.remaining, 2);
    gh_gcra_step(&tat, &g, now, 2, 0, &r);
    CHECK(r.allowed && r.remaining == 0);
    /* More than the bucket holds never conforms, even on a new key. */
    uint64_t fresh = 0;
    gh_gcra_step(&fresh, &g, now, 11, 0, &r);
    CHECK_INT(r.allowed, 0);
    CHECK(r.retry_after_ns == UINT64_MAX);
    CHECK_INT(fresh, 0);
    gh_gcra_step(&fresh, &g, now, 10, 0, &r);
    CHECK(r.allowed && r.remaining == 0);
    gh_gcra_step(&fresh, &g, now, UINT32_MAX, 0, &r);
    CHECK_INT(r.allowed, 0);

    /* A hand-filled struct: only interval and tolerance count (burst left 0). */
    gh_gcra_t h = {.interval_ns = 100 * MS, .tolerance_ns = 900 * MS};
    fresh = 0;
    gh_gcra_step(&fresh, &h, now, 10, 0, &r);
    CHECK(r.allowed && r.limit == 10 && r.remaining == 0);
    gh_gcra_t none = {0};
    fresh = 0;
    gh_gcra_step(&fresh, &none, now, 1000, 0, &r);
    CHECK(r.allowed && r.delay_ns == 0 && fresh == 0);
}

static void test_gcra_take(void)
{
    gh_gcra_t g;
    gh_gcra_init(&g, 1, 1);
    gh_shtab_t *t = gh_shtab_new(1000, 8, gh_gcra_evict);
    gh_shtab_stats_t st;
    gh_gcra_result_t r;
    uint64_t now = 10 * SEC;
    CHECK_INT(gh_gcra_take(t, 1, 2, &g, now, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(gh_gcra_take(t, 1, 2, &g, now, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 1);
    CHECK_INT(gh_gcra_take(t, 1, 2, &g, now, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 0);
    CHECK_INT(r.retry_after_ns, SEC);
    CHECK_INT(gh_gcra_take(t, 3, 4, &g, now, 1, 0, &r), 0); /* another key */
    CHECK_INT(r.allowed, 1);
    /* A rejected new key (cost beyond the burst) leaves nothing behind. */
    CHECK_INT(gh_gcra_take(t, 5, 6, &g, now, 3, 0, &r), 0);
    CHECK_INT(r.allowed, 0);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 2);
    /* A sweep 2 s later finds both idle. */
    uint64_t later = now + 2 * SEC;
    uint32_t swept = 0;
    for (uint32_t s = 0; s < gh_shtab_nshards(t); s++)
        swept += gh_shtab_sweep(t, s, &later);
    CHECK_INT(swept, 2);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 0);
    gh_shtab_free(t);

    t = gh_shtab_new(1000, 4, NULL);
    CHECK_INT(gh_gcra_take(t, 1, 2, &g, now, 1, 0, &r), GH_EINVAL);
    gh_shtab_free(t);
}

/* --- shtab ------------------------------------------------------------------------ */

static void test_shtab_basic(void)
{
    CHECK(gh_shtab_new(0, 8, NULL) == NULL);
    CHECK(gh_shtab_new(10, 0, NULL) == NULL);
    CHECK(gh_shtab_new(10, 65, NULL) == NULL);
    gh_shtab_t *t = gh_shtab_new(100, 12, NULL);
    CHECK(t != NULL);
    CHECK_INT(gh_shtab_value_size(t), 12);
    gh_shtab_ref_t ref;
    int created = -1;
    CHECK(gh_shtab_lock(t, 11, 22, 0, &created, &ref, NULL) == NULL);
    CHECK(ref.shard == NULL && created == 0);
    gh_shtab_unlock(t, &ref); /* no-op */
    uint8_t *v = gh_shtab_lock(t, 11, 22, 1, &created, &ref, NULL);
    CHECK(v != NULL && created == 1);
    CHECK(((uintptr_t)v & 7) == 0);
    for (int i = 0; i < 12; i++)
        CHECK(v[i] == 0);
    memset(v, 0xab, 12);
    gh_shtab_unlock(t, &ref);
    v = gh_shtab_lock(t, 11, 22, 1, &created, &ref, NULL);
    CHECK(v != NULL && created == 0 && v[11] == 0xab);
    gh_shtab_unlock(t, &ref);
    /* The all-zero key works (stored as lo = 1, i.e. the same key as (0, 1)). */
    v = gh_shtab_lock(t, 0, 0, 1, &created, &ref, NULL);
    CHECK(v != NULL && created == 1);
    v[0] = 7;
    gh_shtab_unlock(t, &ref);
    v = gh_shtab_lock(t, 0, 1, 0, &created, &ref, NULL);
    CHECK(v != NULL && v[0] == 7);
    gh_shtab_unlock(t, &ref);
    gh_shtab_stats_t st;
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 2);
    /* remove_locked, then the key is new again and zeroed. */
    v = gh_shtab_lock(t, 11, 22, 0, &created, &ref, NULL);
    CHECK(v != NULL);
    gh_shtab_remove_locked(t, &ref);
    gh_shtab_remove_locked(t, &ref); /* twice is harmless */
    gh_shtab_unlock(t, &ref);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 1);
    CHECK(gh_shtab_lock(t, 11, 22, 0, NULL, &ref, NULL) == NULL);
    v = gh_shtab_lock(t, 11, 22, 1, &created, &ref, NULL);
    CHECK(v != NULL && created == 1 && v[11] == 0);
    gh_shtab_unlock(t, &ref);
    CHECK_INT(gh_shtab_remove(t, 11, 22), 1);
    CHECK_INT(gh_shtab_remove(t, 11, 22), 0);
    CHECK_INT(gh_shtab_remove(t, 0, 0), 1);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 0);
    CHECK(gh_shtab_bytes(t) > 0 && gh_shtab_bytes(t) < 64 * 1024);
    gh_shtab_free(t);

    /* 4-byte values (connection counts) sit 4-aligned, 4 bytes apart. */
    t = gh_shtab_new(1000, 4, NULL);
    uint32_t *c = gh_shtab_lock(t, 5, 5, 1, NULL, &ref, NULL);
    CHECK(c != NULL && ((uintptr_t)c & 3) == 0 && *c == 0);
    *c = 3;
    gh_shtab_unlock(t, &ref);
    gh_shtab_free(t);
}

/* Weight = the first 8 bytes of the value, as the test sets them. */
static uint64_t weight_of(const void *value, void *ctx)
{
    uint64_t w;
    memcpy(&w, value, 8);
    if (ctx)
        (*(int *)ctx)++;
    return w;
}

static void set_weight(gh_shtab_t *t, uint64_t hi, uint64_t w)
{
    gh_shtab_ref_t ref;
    uint64_t *v = gh_shtab_lock(t, hi, 0, 0, NULL, &ref, NULL);
    CHECK(v != NULL);
    if (v)
        *v = w;
    gh_shtab_unlock(t, &ref);
}

static int present(gh_shtab_t *t, uint64_t hi)
{
    gh_shtab_ref_t ref;
    void *v = gh_shtab_lock(t, hi, 0, 0, NULL, &ref, NULL);
    gh_shtab_unlock(t, &ref);
    return v != NULL;
}

static void test_shtab_full(void)
{
    /* Keys (hi, 0) with a small hi all map to shard 0 and buckets 0 and 1 (the layout
     * in shtab.c: shard = top bits of hi, bucket 1 from hi's low 32 bits, bucket 2 from
     * lo's high 32 bits, moved off bucket 1): 8 slots, and no key can move elsewhere. */
    gh_shtab_t *t = gh_shtab_new(1000, 8, weight_of);
    gh_shtab_stats_t st;
    gh_shtab_ref_t ref;
    int created, calls = 0;
    for (uint64_t k = 1; k <= 8; k++) {
        uint64_t *v = gh_shtab_lock(t, k, 0, 1, &created, &ref, &calls);
        CHECK(v != NULL && created);
        if (v)
            *v = 100 + k; /* all active, weights 101..108 */
        gh_shtab_unlock(t, &ref);
    }
    CHECK_INT(calls, 0);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, 8);
    CHECK_INT(st.evictions_idle + st.evictions_active + st.refused, 0);

    /* 1. An idle entry goes first, whatever the weights of the others. */
    set_weight(t, 6, 0);
    uint64_t *v = gh_shtab_lock(t, 9, 0, 1, &created, &ref, &calls);
    CHECK(v != NULL && created && *v == 0);
    if (v)
        *v = 500;
    gh_shtab_unlock(t, &ref);
    CHECK(calls > 0 && calls <= 8);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.evictions_idle, 1);
    CHECK_INT(st.evictions_active, 0);
    CHECK_INT(st.entries, 8);
    CHECK(!present(t, 6));
    for (uint64_t k = 1; k <= 9; k++)
        if (k != 6)
            CHECK(present(t, k));

    /* 2. No idle entry: the lowest weight (key 1, 101) is evicted. */
    set_weight(t, 3, 102); /* a tie elsewhere does not matter: 101 is lowest */
    v = gh_shtab_lock(t, 10, 0, 1, &created, &ref, NULL);
    CHECK(v != NULL && created);
    if (v)
        *v = 600;
    gh_shtab_unlock(t, &ref);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.evictions_active, 1);
    CHECK(!present(t, 1));
    CHECK(present(t, 2) && present(t, 3) && present(t, 10));
    /* Finding an existing key never evicts. */
    v = gh_shtab_lock(t, 2, 0, 1, &created, &ref, NULL);
    CHECK(v != NULL && !created && *v == 102);
    gh_shtab_unlock(t, &ref);

    /* 3. Every candidate refuses: NULL, nothing held, nothing lost. */
    for (uint64_t k = 2; k <= 10; k++)
        if (k != 6)
            set_weight(t, k, GH_SHTAB_KEEP);
    v = gh_shtab_lock(t, 11, 0, 1, &created, &ref, NULL);
    CHECK(v == NULL && ref.shard == NULL && !created);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.refused, 1);
    CHECK_INT(st.entries, 8);
    CHECK_INT(st.evictions_active, 1);
    /* Other buckets are unaffected. */
    v = gh_shtab_lock(t, 0xc0000000ull, 0, 1, &created, &ref, NULL); /* bucket 1 != 0, 1 */
    CHECK(v != NULL && created);
    gh_shtab_unlock(t, &ref);
    /* A removal makes room again. */
    CHECK_INT(gh_shtab_remove(t, 4, 0), 1);
    v = gh_shtab_lock(t, 11, 0, 1, &created, &ref, NULL);
    CHECK(v != NULL && created);
    gh_shtab_unlock(t, &ref);
    gh_shtab_free(t);

    /* fn NULL: never evicts. */
    t = gh_shtab_new(1000, 8, NULL);
    for (uint64_t k = 1; k <= 8; k++) {
        CHECK(gh_shtab_lock(t, k, 0, 1, NULL, &ref, NULL) != NULL);
        gh_shtab_unlock(t, &ref);
    }
    CHECK(gh_shtab_lock(t, 9, 0, 1, NULL, &ref, NULL) == NULL);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.refused, 1);
    gh_shtab_free(t);
}

static void test_shtab_gcra_eviction(void)
{
    /* A full GCRA bucket evicts the key closest to idle; the evicted key comes back
     * with a full burst (the documented fail-open). */
    gh_gcra_t g;
    gh_gcra_init(&g, 1, 0); /* 1/s, no burst */
    gh_shtab_t *t = gh_shtab_new(1000, 8, gh_gcra_evict);
    gh_gcra_result_t r;
    gh_shtab_stats_t st;
    uint64_t now = 100 * SEC;
    for (uint64_t k = 1; k <= 8; k++) /* key k's TAT ends k*10 ms ahead of the last now */
        CHECK_INT(gh_gcra_take(t, k, 0, &g, now - SEC + k * 10 * MS, 1, 0, &r), 0);
    CHECK_INT(gh_gcra_take(t, 9, 0, &g, now, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 1);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.evictions_active, 1);
    CHECK(!present(t, 1));
    CHECK_INT(gh_gcra_take(t, 2, 0, &g, now, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 0);
    /* 15 ms later key 1 would have been idle anyway; key 2 has 5 ms to go. */
    CHECK_INT(gh_gcra_take(t, 1, 0, &g, now + 15 * MS, 1, 0, &r), 0);
    CHECK_INT(r.allowed, 1);
    gh_shtab_stats(t, &st);
    CHECK_INT(st.evictions_active, 2);
    CHECK_INT(st.evictions_idle, 0);
    gh_shtab_free(t);
}

#define NKEYS 1000000

static uint64_t weight_one(const void *value, void *ctx) { return 1; }

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * 4;
}

static void test_shtab_million(void)
{
    gh_shtab_seed_set(0x1234, 0x5678);
    uint64_t (*keys)[2] = malloc(sizeof(*keys) * NKEYS);
    CHECK(keys != NULL);
    if (!keys)
        return;
    memset(keys, 0, sizeof(*keys) * NKEYS); /* page faults out of the timing */
    uint64_t t0 = mono_ns();
    for (uint32_t i = 0; i < NKEYS; i++) {
        gh_keyhash_t k;
        gh_keyhash_init(&k, 42);
        gh_keyhash_add(&k, &i, sizeof(i));
        gh_keyhash_final(&k, &keys[i][0], &keys[i][1]);
    }
    uint64_t t1 = mono_ns();
    long rss0 = rss_kb();
    gh_shtab_t *t = gh_shtab_new(NKEYS, 8, NULL); /* NULL: a refusal would show */
    CHECK(t != NULL);
    if (!t) {
        free(keys);
        return;
    }
    gh_shtab_ref_t ref;
    int created, made = 0;
    uint64_t t2 = mono_ns();
    for (uint32_t i = 0; i < NKEYS; i++) {
        uint64_t *v = gh_shtab_lock(t, keys[i][0], keys[i][1], 1, &created, &ref, NULL);
        if (v) {
            *v = i;
            made += created;
        }
        gh_shtab_unlock(t, &ref);
    }
    uint64_t t3 = mono_ns();
    int found = 0;
    for (uint32_t i = 0; i < NKEYS; i++) {
        uint64_t *v = gh_shtab_lock(t, keys[i][0], keys[i][1], 0, NULL, &ref, NULL);
        found += v && *v == i;
        gh_shtab_unlock(t, &ref);
    }
    uint64_t t4 = mono_ns();
    long rss1 = rss_kb();
    gh_shtab_stats_t st;
    gh_shtab_stats(t, &st);
    CHECK_INT(made, NKEYS);
    CHECK_INT(found, NKEYS);
    CHECK_INT(st.entries, NKEYS);
    CHECK_INT(st.refused, 0);
    CHECK(gh_shtab_bytes(t) < 40u * 1000 * 1000);
    printf("  shtab 1M keys x 8-byte values: %zu bytes reserved (%.1f bytes/key, %llu slots, %u shards, "
           "RSS +%ld KiB), %llu relocations\n",
           gh_shtab_bytes(t), (double)gh_shtab_bytes(t) / NKEYS, (unsigned long long)st.slots,
           gh_shtab_nshards(t), rss1 - rss0, (unsigned long long)st.relocations);
    printf("  keyhash %.1f ns/key, insert %.1f ns/key, lookup %.1f ns/key\n", (double)(t1 - t0) / NKEYS,
           (double)(t3 - t2) / NKEYS, (double)(t4 - t3) / NKEYS);
    /* Past capacity: 10% more keys; with fn NULL they are refused, never grown. */
    size_t bytes = gh_shtab_bytes(t);
    int extra = 0;
    for (uint32_t i = NKEYS; i < NKEYS + NKEYS / 10; i++) {
        gh_keyhash_t k;
        uint64_t hi, lo;
        gh_keyhash_init(&k, 42);
        gh_keyhash_add(&k, &i, sizeof(i));
        gh_keyhash_final(&k, &hi, &lo);
        extra += gh_shtab_lock(t, hi, lo, 1, NULL, &ref, NULL) != NULL;
        gh_shtab_unlock(t, &ref);
    }
    gh_shtab_stats(t, &st);
    CHECK_INT(gh_shtab_bytes(t), bytes);
    CHECK_INT(st.entries, NKEYS + extra);
    printf("  +10%% keys beyond max_keys: %d stored, %llu refused (load %.1f%% of slots)\n", extra,
           (unsigned long long)st.refused, 100.0 * st.entries / st.slots);
    gh_shtab_free(t);

    /* A flood: 2M new keys through a full 1M table whose entries are all active
     * (weight 1): every insert past the first ~1.16M evicts. */
    t = gh_shtab_new(NKEYS, 8, weight_one);
    uint64_t t5 = mono_ns();
    for (uint32_t i = 0; i < 2 * NKEYS; i++) {
        uint64_t hi = keys[i % NKEYS][0] ^ (i / NKEYS) * 0x9e3779b97f4a7c15ull, lo = keys[i % NKEYS][1];
        uint64_t *v = gh_shtab_lock(t, hi, lo, 1, NULL, &ref, NULL);
        CHECK(v != NULL);
        gh_shtab_unlock(t, &ref);
    }
    uint64_t t6 = mono_ns();
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries + st.evictions_active, 2 * NKEYS);
    printf("  flood of 2M new keys into a 1M table of active entries: %.1f ns/insert, %llu evicted, "
           "%.2f%% of slots used\n",
           (double)(t6 - t5) / (2 * NKEYS), (unsigned long long)st.evictions_active,
           100.0 * st.entries / st.slots);
    gh_shtab_free(t);
    free(keys);
}

/* --- threads ---------------------------------------------------------------------- */

#define NT 4
#define TKEYS 64
#define PHASES 20
#define TRIES 40

typedef struct {
    gh_shtab_t *t;
    const gh_gcra_t *g;
    pthread_barrier_t *bar;
    int id;
    long admitted;
} worker_arg_t;

static void *hammer(void *p)
{
    worker_arg_t *a = p;
    gh_gcra_result_t r;
    for (int ph = 0; ph < PHASES; ph++) {
        uint64_t now = SEC + (uint64_t)ph * 5 * MS;
        pthread_barrier_wait(a->bar);
        for (int i = 0; i < TRIES * TKEYS; i++) {
            uint64_t key = (uint64_t)((i * 7 + a->id * 13) % TKEYS);
            if (gh_gcra_take(a->t, key * 0x9e3779b97f4a7c15ull, key, a->g, now, 1, 0, &r) == 0)
                a->admitted += r.allowed;
        }
    }
    return NULL;
}

static void test_threads_no_lost_update(void)
{
    /* 1000/s with burst 9: frozen time per phase, phases 5 ms apart. Per key, phase 0
     * admits 10 and each later phase exactly 5, however the threads interleave. */
    gh_gcra_t g;
    gh_gcra_init(&g, 1000, 9);
    gh_shtab_t *t = gh_shtab_new(1000, 8, gh_gcra_evict);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, NT);
    pthread_t th[NT];
    worker_arg_t args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (worker_arg_t){t, &g, &bar, i, 0};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    long total = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        total += args[i].admitted;
    }
    pthread_barrier_destroy(&bar);
    CHECK_INT(total, (long)TKEYS * (10 + 5 * (PHASES - 1)));
    gh_shtab_stats_t st;
    gh_shtab_stats(t, &st);
    CHECK_INT(st.entries, TKEYS);
    CHECK_INT(st.evictions_active + st.evictions_idle + st.refused, 0);
    printf("  %d threads x %d phases on %d shared keys: %ld admitted (exact), %llu contended locks\n", NT,
           PHASES, TKEYS, total, (unsigned long long)st.contended);
    gh_shtab_free(t);
}

typedef struct {
    gh_shtab_t *t;
    const gh_gcra_t *g;
    uint64_t seed, ops, ns;
} tput_arg_t;

static void *tput(void *p)
{
    tput_arg_t *a = p;
    gh_gcra_result_t r;
    uint64_t x = a->seed, t0 = mono_ns();
    for (uint64_t i = 0; i < a->ops; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        gh_gcra_take(a->t, x, x >> 3, a->g, SEC + i * 1000, 1, 0, &r);
    }
    a->ns = mono_ns() - t0;
    return NULL;
}

static void test_threads_throughput(void)
{
    /* Random keys over a 1M table from 1 and 2 threads (this box has 2 cores). */
    gh_gcra_t g;
    gh_gcra_init(&g, 100, 10);
    gh_shtab_t *t = gh_shtab_new(NKEYS, 8, gh_gcra_evict);
    uint64_t ops = sanitized() ? 100000 : 1000000;
    for (int nt = 1; nt <= 2; nt++) {
        pthread_t th[2];
        tput_arg_t a[2];
        for (int i = 0; i < nt; i++) {
            a[i] = (tput_arg_t){t, &g, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1 + nt * 2), ops, 0};
            pthread_create(&th[i], NULL, tput, &a[i]);
        }
        double worst = 0;
        for (int i = 0; i < nt; i++) {
            pthread_join(th[i], NULL);
            worst = GH_MAX(worst, (double)a[i].ns / (double)ops);
        }
        printf("  gcra_take, %d thread%s, random keys in a 1M table: %.1f ns/op per thread\n", nt,
               nt > 1 ? "s" : "", worst);
    }
    gh_shtab_stats_t st;
    gh_shtab_stats(t, &st);
    printf("  (after %llu takes: %llu entries, %llu idle + %llu active evictions, %llu contended)\n",
           (unsigned long long)ops * 3, (unsigned long long)st.entries,
           (unsigned long long)st.evictions_idle, (unsigned long long)st.evictions_active,
           (unsigned long long)st.contended);
    CHECK(st.entries <= st.slots);
    gh_shtab_free(t);
}

/* --- topk ------------------------------------------------------------------------- */

static void test_topk_skewed(void)
{
    CHECK(gh_topk_new(0) == NULL);
    enum { W = 4, K = 64, HEAVY = 10, LIGHT = 20000 };
    gh_topk_t *tabs[W];
    for (int w = 0; w < W; w++)
        tabs[w] = gh_topk_new(K);
    /* Heavy key h occurs 10000 - 800 h times, light keys 1..3 times each (40000 in
     * all), all shuffled and dealt to the workers round-robin. */
    uint32_t heavy_n[HEAVY], total = 0;
    for (int h = 0; h < HEAVY; h++)
        total += heavy_n[h] = 10000 - 800 * (uint32_t)h;
    uint32_t nlight = 0;
    for (int l = 0; l < LIGHT; l++)
        nlight += 1 + (uint32_t)(l % 3);
    uint32_t n = total + nlight;
    int32_t *stream = malloc(sizeof(*stream) * n);
    uint32_t m = 0;
    for (int h = 0; h < HEAVY; h++)
        for (uint32_t i = 0; i < heavy_n[h]; i++)
            stream[m++] = -1 - h;
    for (int l = 0; l < LIGHT; l++)
        for (int i = 0; i <= l % 3; i++)
            stream[m++] = l;
    uint64_t x = 88172645463325252ull;
    for (uint32_t i = n - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint32_t j = (uint32_t)(x % (i + 1));
        int32_t tmp = stream[i];
        stream[i] = stream[j];
        stream[j] = tmp;
    }
    char buf[64];
    for (uint32_t i = 0; i < n; i++) {
        int len = stream[i] < 0 ? snprintf(buf, sizeof(buf), "limit=api ip=heavy-%d", -1 - stream[i])
                                : snprintf(buf, sizeof(buf), "limit=api ip=10.%d.%d.%d", stream[i] >> 16,
                                           (stream[i] >> 8) & 255, stream[i] & 255);
        gh_topk_add(tabs[i % W], gh_str(buf, (size_t)len), 1);
    }
    gh_topk_item_t out[20];
    int got = gh_topk_merge(tabs, W, out, 20);
    CHECK_INT(got, 20);
    for (int h = 0; h < HEAVY && h < got; h++) {
        snprintf(buf, sizeof(buf), "limit=api ip=heavy-%d", h);
        CHECK(strcmp(out[h].label, buf) == 0);
        CHECK(out[h].len == strlen(buf));
        CHECK(out[h].count >= heavy_n[h] && out[h].count - out[h].error <= heavy_n[h]);
    }
    printf("  topk: %u adds over %d workers (k=%d): heavy-0 count %llu (true %u, error %llu)\n", n, W, K,
           (unsigned long long)out[0].count, heavy_n[0], (unsigned long long)out[0].error);
    /* max smaller than the distinct labels, and n = 0. */
    CHECK_INT(gh_topk_merge(tabs, W, out, 3), 3);
    CHECK_INT(gh_topk_merge(tabs, 0, out, 3), 0);
    free(stream);
    for (int w = 0; w < W; w++)
        gh_topk_free(tabs[w]);
}

static void test_topk_exact_and_labels(void)
{
    gh_topk_t *t = gh_topk_new(4);
    gh_topk_add(t, GH_STR("a"), 5);
    gh_topk_add(t, GH_STR("b"), 2);
    gh_topk_add(t, GH_STR("a"), 1);
    gh_topk_item_t out[8];
    CHECK_INT(gh_topk_merge(&t, 1, out, 8), 2);
    CHECK(strcmp(out[0].label, "a") == 0 && out[0].count == 6 && out[0].error == 0);
    CHECK(strcmp(out[1].label, "b") == 0 && out[1].count == 2 && out[1].error == 0);
    /* Fill, then a new label replaces the smallest and inherits its count as error. */
    gh_topk_add(t, GH_STR("c"), 3);
    gh_topk_add(t, GH_STR("d"), 4);
    gh_topk_add(t, GH_STR("e"), 1);
    CHECK_INT(gh_topk_merge(&t, 1, out, 8), 4);
    CHECK(strcmp(out[3].label, "e") == 0 && out[3].count == 3 && out[3].error == 2);

    /* The empty label is a label. */
    gh_topk_reset(t);
    gh_topk_add(t, GH_STR_NULL, 2);
    gh_topk_add(t, gh_str("", 0), 1);
    CHECK_INT(gh_topk_merge(&t, 1, out, 8), 1);
    CHECK(out[0].len == 0 && out[0].count == 3 && out[0].label[0] == 0);

    /* Truncation to 95 bytes, at a character boundary. */
    char lab[200];
    memset(lab, 'x', sizeof(lab));
    gh_topk_reset(t);
    gh_topk_add(t, gh_str(lab, 200), 1);
    gh_topk_add(t, gh_str(lab, 150), 1); /* the same after truncation */
    CHECK_INT(gh_topk_merge(&t, 1, out, 8), 1);
    CHECK_INT(out[0].len, GH_TOPK_LABEL_MAX);
    CHECK_INT(out[0].count, 2);
    CHECK_INT(strlen(out[0].label), GH_TOPK_LABEL_MAX);
    memcpy(lab + 93, "\xe2\x82\xac", 3); /* a euro sign over bytes 93..95 */
    gh_topk_reset(t);
    gh_topk_add(t, gh_str(lab, 120), 1);
    CHECK_INT(gh_topk_merge(&t, 1, out, 8), 1);
    CHECK_INT(out[0].len, 93);
    gh_topk_free(t);

    /* Merging keeps the bounds when a label is missing from a full table. */
    gh_topk_t *a = gh_topk_new(2), *b = gh_topk_new(2);
    gh_topk_add(a, GH_STR("x"), 10);
    gh_topk_add(a, GH_STR("y"), 4);
    gh_topk_add(b, GH_STR("x"), 7);
    gh_topk_add(b, GH_STR("z"), 3);
    gh_topk_t *both[] = {a, b};
    CHECK_INT(gh_topk_merge(both, 2, out, 8), 3);
    CHECK(strcmp(out[0].label, "x") == 0 && out[0].count == 17 && out[0].error == 0);
    CHECK(strcmp(out[1].label, "y") == 0 && out[1].count == 7 && out[1].error == 3);
    CHECK(strcmp(out[2].label, "z") == 0 && out[2].count == 7 && out[2].error == 4);
    gh_topk_free(a);
    gh_topk_free(b);
}

int main(void)
{
    RUN(test_siphash_paper);
    RUN(test_siphash128_vectors);
    RUN(test_keyhash_builder);
    RUN(test_gcra_init);
    RUN(test_gcra_steady);
    RUN(test_gcra_burst);
    RUN(test_gcra_delay);
    RUN(test_gcra_time_jumps);
    RUN(test_gcra_cost);
    RUN(test_gcra_take);
    RUN(test_shtab_basic);
    RUN(test_shtab_full);
    RUN(test_shtab_gcra_eviction);
    RUN(test_shtab_million);
    RUN(test_threads_no_lost_update);
    RUN(test_threads_throughput);
    RUN(test_topk_skewed);
    RUN(test_topk_exact_and_labels);
    return t_done("test_protect_limit");
}
