/* fuzz_cache_policy.c: libFuzzer target for the RFC 9111 rule layer (src/cache/policy.c).
 *
 * The whole input is parsed as a Cache-Control value, an HTTP-date and delta-seconds.
 * When it is long enough, its last FACTS bytes are response/request facts and times
 * (raw, near a base time, or absent) and the rest, split at the first '\n', is the
 * response's and the request's Cache-Control. Beyond "does not crash" it traps on
 * broken invariants:
 *  - parsed directives are UNSET or within [0, 2^31], flags are known bits, the
 *    private list is a view inside the input;
 *  - a parsed date lies within [1970, 9999] and survives formatting and parsing again;
 *    an IMF-fixdate is formatted back to the same bytes (but the weekday name);
 *  - delta-seconds are -1 exactly when the input is not 1*DIGIT, else its value capped;
 *  - storable is 0/1, lifetimes and ages are never negative and respect max_ttl, the
 *    usable decision is in the enum and agrees with the directives (no stale service
 *    under must-revalidate, proxy-revalidate or s-maxage; fresh means lifetime > age). */
#include "cache/policy.h"
#include "http/h1.h"

#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

#define FACTS 80
#define BASE 1700000000LL
#define YEAR_END 253402300799LL /* 9999-12-31T23:59:59Z */

static const char *in_lo, *in_hi;

static void delta_ok(int64_t v) { ASSERT(v == GH_CC_UNSET || (v >= 0 && v <= GH_DELTA_MAX)); }

static void cc_ok(const gh_cc_t *cc)
{
    ASSERT(cc->flags < (1u << 13));
    delta_ok(cc->max_age);
    delta_ok(cc->s_maxage);
    delta_ok(cc->max_stale);
    delta_ok(cc->min_fresh);
    delta_ok(cc->swr);
    delta_ok(cc->sie);
    if (cc->flags & GH_CC_NO_CACHE_FIELDS)
        ASSERT(cc->flags & GH_CC_NO_CACHE);
    if (cc->private_fields.n)
        ASSERT(cc->private_fields.p >= in_lo && cc->private_fields.p + cc->private_fields.n <= in_hi);
}

static void fuzz_date(gh_str_t v)
{
    int64_t t = gh_http_date(v);
    if (t == -1)
        return;
    ASSERT(t >= 0 && t <= YEAR_END + 1); /* + a leap second on the last day */
    char out[30];
    ASSERT(gh_http_date_fmt(t, out) == 29 && out[29] == 0 && strlen(out) == 29);
    if (t <= YEAR_END)
        ASSERT(gh_http_date(gh_str(out, 29)) == t);
    /* IMF-fixdate after 1970 without a leap second: the same bytes but the weekday */
    if (v.n == 29 && v.p[3] == ',' && t > 0 && memcmp(v.p + 23, "60", 2))
        ASSERT(!memcmp(out + 3, v.p + 3, 26));
}

static void fuzz_delta(gh_str_t v)
{
    int64_t d = gh_delta_seconds(v);
    int all_digits = v.n > 0;
    for (size_t i = 0; i < v.n; i++)
        all_digits &= v.p[i] >= '0' && v.p[i] <= '9';
    ASSERT((d == -1) == !all_digits);
    if (all_digits) {
        size_t i = 0;
        while (i < v.n - 1 && v.p[i] == '0')
            i++;
        int64_t want = 0;
        for (; i < v.n && want < GH_DELTA_MAX; i++)
            want = want * 10 + (v.p[i] - '0');
        ASSERT(d == GH_MIN(want, GH_DELTA_MAX));
    }
}

/* An int64 from 8 bytes: absent (-1), near BASE, small, or raw. */
static int64_t num(const uint8_t *b)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | b[i];
    switch (b[0] >> 6) {
    case 0:
        return -1;
    case 1:
        return BASE + (int16_t)(u & 0xffff);
    case 2:
        return (int64_t)(u & 0xfffff);
    default:
        return (int64_t)u;
    }
}

static void fuzz_facts(gh_str_t resp_cc, gh_str_t req_cc, const uint8_t *f)
{
    gh_resp_facts_t r;
    gh_req_facts_t q;
    memset(&r, 0, sizeof(r));
    memset(&q, 0, sizeof(q));
    gh_cc_init(&r.cc);
    gh_cc_parse(&r.cc, resp_cc);
    gh_cc_init(&q.cc);
    gh_cc_parse(&q.cc, req_cc);
    cc_ok(&r.cc);
    cc_ok(&q.cc);

    r.status = (f[0] << 8 | f[1]) % 700;
    uint8_t fl = f[2];
    r.targeted = fl & 1, r.has_expires = (fl >> 1) & 1, r.has_vary_star = (fl >> 2) & 1;
    q.authorization = (fl >> 3) & 1, q.pragma_no_cache = (fl >> 4) & 1;
    q.method_id = (fl & 0x20) ? (f[3] % 12) : GH_M_GET;
    f += 8;
    r.date = num(f), r.expires = num(f + 8), r.last_modified = num(f + 16), r.age = num(f + 24);
    int64_t req_t = num(f + 32), resp_t = num(f + 40), now = num(f + 48);
    int64_t dttl = num(f + 56), mttl = num(f + 64);

    int st = gh_cache_storable(&q, &r);
    ASSERT(st == 0 || st == 1);
    if (st)
        ASSERT(q.method_id == GH_M_GET && !(r.cc.flags & GH_CC_PRIVATE) && !r.has_vary_star &&
               !(q.cc.flags & GH_CC_NO_STORE));

    int h = -1;
    int64_t lt = gh_fresh_lifetime(&r, resp_t, dttl, mttl, &h);
    ASSERT(lt >= 0 && (h == 0 || h == 1));
    if (mttl > 0)
        ASSERT(lt <= mttl);
    if (r.cc.flags & GH_CC_INVALID)
        ASSERT(lt == 0 && h == 0);
    int64_t ia = gh_initial_age(&r, req_t, resp_t);
    ASSERT(ia >= 0);

    /* as stored, and with raw lifetime/age (the cache's fields, not trusted here) */
    gh_stored_facts_t s = {lt, ia, resp_t, r.cc};
    for (int k = 0; k < 2; k++) {
        int64_t age = gh_current_age(&s, now);
        ASSERT(age >= 0);
        int u = gh_cache_usable(&q, &s, now);
        ASSERT(u >= GH_USE_FRESH && u <= GH_USE_REVALIDATE);
        int strict = (s.cc.flags & (GH_CC_MUST_REVALIDATE | GH_CC_PROXY_REVALIDATE)) ||
                     s.cc.s_maxage >= 0;
        if (u == GH_USE_FRESH)
            ASSERT(s.lifetime > age);
        if (u == GH_USE_STALE_SWR)
            ASSERT(!strict && s.cc.swr >= 0 && age >= s.lifetime);
        if (u != GH_USE_REVALIDATE)
            ASSERT(!(q.cc.flags & GH_CC_NO_CACHE) && !q.pragma_no_cache &&
                   !(s.cc.flags & GH_CC_NO_CACHE));
        int e = gh_cache_stale_if_error(&q, &s, now);
        ASSERT(e == 0 || e == 1);
        if (e)
            ASSERT(!strict && (q.cc.sie >= 0 || s.cc.sie >= 0));
        s.lifetime = num(f + 56), s.initial_age = num(f + 64);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gh_str_t all = gh_str((const char *)data, size);
    in_lo = all.p, in_hi = all.p + size;

    gh_cc_t cc;
    gh_cc_init(&cc);
    gh_cc_parse(&cc, all);
    cc_ok(&cc);
    fuzz_date(all);
    fuzz_delta(all);

    if (size < FACTS)
        return 0;
    size_t n = size - FACTS;
    const char *nl = memchr(all.p, '\n', n);
    size_t a = nl ? (size_t)(nl - all.p) : n;
    gh_str_t resp_cc = gh_str(all.p, a);
    gh_str_t req_cc = nl ? gh_str(nl + 1, n - a - 1) : GH_STR_NULL;
    fuzz_facts(resp_cc, req_cc, data + n);
    return 0;
}
