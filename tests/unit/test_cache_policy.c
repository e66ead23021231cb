/* test_cache_policy.c: unit tests of the RFC 9111 rule layer (src/cache/policy.c):
 * Cache-Control directives and their malformed, repeated and quoted forms, the three
 * HTTP-date forms and their ranges, delta-seconds, the storable matrix, freshness
 * lifetime precedence and heuristics, ages, and the serve/revalidate decisions. */
#include "cache/policy.h"
#include "http/h1.h"
#include "t.h"

#define T0 1700000000LL /* a response_time */

static gh_cc_t cc_of(const char *s)
{
    gh_cc_t cc;
    gh_cc_init(&cc);
    gh_cc_parse(&cc, gh_str(s, strlen(s)));
    return cc;
}

static int64_t date_of(const char *s) { return gh_http_date(gh_str(s, strlen(s))); }
static int64_t delta_of(const char *s) { return gh_delta_seconds(gh_str(s, strlen(s))); }

static gh_req_facts_t req_get(const char *cc)
{
    gh_req_facts_t r;
    memset(&r, 0, sizeof(r));
    r.method_id = GH_M_GET;
    r.cc = cc_of(cc);
    return r;
}

static gh_resp_facts_t resp_of(int status, const char *cc)
{
    gh_resp_facts_t r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.cc = cc_of(cc);
    r.date = T0;
    r.expires = r.last_modified = r.age = -1;
    return r;
}

/* A stored response of this lifetime, received at T0 with initial age 0. */
static gh_stored_facts_t stored(int64_t lifetime, const char *cc)
{
    gh_stored_facts_t s = {lifetime, 0, T0, cc_of(cc)};
    return s;
}

static int use(const char *req_cc, int64_t lifetime, const char *resp_cc, int64_t age)
{
    gh_req_facts_t r = req_get(req_cc);
    gh_stored_facts_t s = stored(lifetime, resp_cc);
    return gh_cache_usable(&r, &s, T0 + age);
}

static void test_cc_init(void)
{
    gh_cc_t cc = cc_of("");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, GH_CC_UNSET);
    CHECK_INT(cc.s_maxage, GH_CC_UNSET);
    CHECK_INT(cc.max_stale, GH_CC_UNSET);
    CHECK_INT(cc.min_fresh, GH_CC_UNSET);
    CHECK_INT(cc.swr, GH_CC_UNSET);
    CHECK_INT(cc.sie, GH_CC_UNSET);
    CHECK(cc.private_fields.n == 0);
    gh_cc_parse(&cc, GH_STR_NULL);
    CHECK_INT(cc.flags, 0);
}

static void test_cc_directives(void)
{
    static const struct {
        const char *s;
        uint32_t flag;
    } flags[] = {
        {"no-store", GH_CC_NO_STORE},
        {"no-cache", GH_CC_NO_CACHE},
        {"private", GH_CC_PRIVATE},
        {"public", GH_CC_PUBLIC},
        {"must-revalidate", GH_CC_MUST_REVALIDATE},
        {"proxy-revalidate", GH_CC_PROXY_REVALIDATE},
        {"must-understand", GH_CC_MUST_UNDERSTAND},
        {"only-if-cached", GH_CC_ONLY_IF_CACHED},
        {"no-transform", GH_CC_NO_TRANSFORM},
        {"immutable", GH_CC_IMMUTABLE},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(flags); i++)
        CHECK_INT(cc_of(flags[i].s).flags, flags[i].flag);

    gh_cc_t cc = cc_of("max-age=60, s-maxage=30, max-stale=10, min-fresh=5, "
                       "stale-while-revalidate=7, stale-if-error=86400");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 60);
    CHECK_INT(cc.s_maxage, 30);
    CHECK_INT(cc.max_stale, 10);
    CHECK_INT(cc.min_fresh, 5);
    CHECK_INT(cc.swr, 7);
    CHECK_INT(cc.sie, 86400);

    CHECK_INT(cc_of("max-stale").max_stale, GH_DELTA_MAX); /* any */
    CHECK_INT(cc_of("max-age=0").max_age, 0);
    CHECK_INT(cc_of("public, max-age=5").flags, GH_CC_PUBLIC);
    CHECK_INT(cc_of("frobnicate, x-ext=\"a,b\", max-age=9, private").max_age, 9);
    CHECK_INT(cc_of("frobnicate, x-ext=\"a,b\", max-age=9, private").flags, GH_CC_PRIVATE);
    /* several fields (lines) accumulate */
    cc = cc_of("public");
    gh_cc_parse(&cc, GH_STR("max-age=3"));
    CHECK_INT(cc.flags, GH_CC_PUBLIC);
    CHECK_INT(cc.max_age, 3);
}

static void test_cc_case_and_spacing(void)
{
    gh_cc_t cc = cc_of("No-Store,MAX-AGE=12 ,\tPublic ,, , S-MaxAge=4");
    CHECK_INT(cc.flags, GH_CC_NO_STORE | GH_CC_PUBLIC);
    CHECK_INT(cc.max_age, 12);
    CHECK_INT(cc.s_maxage, 4);
    CHECK_INT(cc_of("max-age = 7").max_age, 7); /* BWS around '=' tolerated */
    CHECK_INT(cc_of("STALE-WHILE-REVALIDATE=3").swr, 3);
    CHECK_INT(cc_of(",,,").flags, 0);
    CHECK_INT(cc_of("   ").flags, 0);
}

static void test_cc_quoted(void)
{
    gh_cc_t cc = cc_of("max-age=\"60\", s-maxage=\"1\\2\"");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 60);
    CHECK_INT(cc.s_maxage, 12); /* quoted-pair */
    cc = cc_of("private=\"Set-Cookie, X-User\", max-age=5");
    CHECK_INT(cc.flags, GH_CC_PRIVATE_FIELDS);
    CHECK_STR(cc.private_fields, "Set-Cookie, X-User");
    CHECK_INT(cc.max_age, 5);
    cc = cc_of("private=Set-Cookie");
    CHECK_INT(cc.flags, GH_CC_PRIVATE_FIELDS);
    CHECK_STR(cc.private_fields, "Set-Cookie");
    cc = cc_of("private=\"a\", private=\"a\"");
    CHECK_INT(cc.flags, GH_CC_PRIVATE_FIELDS);
    cc = cc_of("private=\"a\", private=\"b\""); /* two lists: cannot keep both */
    CHECK(cc.flags & GH_CC_PRIVATE);
    CHECK_INT(cc_of("no-cache=\"Set-Cookie\"").flags, GH_CC_NO_CACHE | GH_CC_NO_CACHE_FIELDS);
    CHECK_INT(cc_of("no-cache=Set-Cookie").flags, GH_CC_NO_CACHE | GH_CC_NO_CACHE_FIELDS);
    /* a comma inside quotes does not split */
    cc = cc_of("x=\"max-age=1, no-store\", max-age=2");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 2);
    cc = cc_of("x=\"a\\\"b, no-store\", max-age=2"); /* escaped quote */
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 2);
}

static void test_cc_bad_args(void)
{
    static const char *bad[] = {"max-age=abc", "max-age=-1", "max-age=\"\"",  "max-age=",
                                "max-age",     "max-age=+5", "max-age=5 6",   "max-age=5;x",
                                "max-age=1.5", "max-age=\"5", "max-age=\"5x\"", "max-age=0x10"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        gh_cc_t cc = cc_of(bad[i]);
        if (!(cc.flags & GH_CC_INVALID))
            fprintf(stderr, "not INVALID: %s\n", bad[i]);
        CHECK(cc.flags & GH_CC_INVALID);
        CHECK(cc.max_age == GH_CC_UNSET);
    }
    CHECK(cc_of("s-maxage=x").flags & GH_CC_INVALID);
    CHECK(cc_of("s-maxage").flags & GH_CC_INVALID);
    /* other directives with bad arguments are ignored, not INVALID */
    gh_cc_t cc = cc_of("max-stale=x, min-fresh=-1, stale-while-revalidate=, stale-if-error=a");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_stale, GH_CC_UNSET);
    CHECK_INT(cc.min_fresh, GH_CC_UNSET);
    CHECK_INT(cc.swr, GH_CC_UNSET);
    CHECK_INT(cc.sie, GH_CC_UNSET);
    /* restrictive directives hold whatever follows; permissive ones need no argument */
    CHECK_INT(cc_of("no-store=1").flags, GH_CC_NO_STORE);
    CHECK_INT(cc_of("no-store junk").flags, GH_CC_NO_STORE);
    CHECK_INT(cc_of("private=\"unterminated").flags, GH_CC_PRIVATE);
    CHECK_INT(cc_of("no-cache=").flags, GH_CC_NO_CACHE);
    CHECK_INT(cc_of("must-revalidate=x").flags, GH_CC_MUST_REVALIDATE);
    CHECK_INT(cc_of("public=1").flags, 0);
    CHECK_INT(cc_of("must-understand=yes").flags, 0);
    /* junk that is not a directive: skipped up to the next comma */
    cc = cc_of("=5, \"q,q\", ;;, max-age=8, @");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 8);
}

static void test_cc_duplicates(void)
{
    gh_cc_t cc = cc_of("max-age=60, max-age=60");
    CHECK_INT(cc.flags, 0);
    CHECK_INT(cc.max_age, 60);
    CHECK(cc_of("max-age=60, max-age=61").flags & GH_CC_INVALID);
    CHECK(cc_of("max-age=60, max-age=\"061\"").flags & GH_CC_INVALID);
    CHECK_INT(cc_of("max-age=60, max-age=\"060\"").flags, 0); /* the same value */
    CHECK(cc_of("s-maxage=1, s-maxage=2").flags & GH_CC_INVALID);
    CHECK(cc_of("max-age=1, max-age=x").flags & GH_CC_INVALID);
    cc = cc_of("max-age=1");
    gh_cc_parse(&cc, GH_STR("max-age=2")); /* across field lines too */
    CHECK(cc.flags & GH_CC_INVALID);
    /* windows: the stricter value */
    CHECK_INT(cc_of("max-stale=10, max-stale=5").max_stale, 5);
    CHECK_INT(cc_of("max-stale, max-stale=5").max_stale, 5);
    CHECK_INT(cc_of("min-fresh=10, min-fresh=50").min_fresh, 50);
    CHECK_INT(cc_of("stale-while-revalidate=9, stale-while-revalidate=3").swr, 3);
    CHECK_INT(cc_of("stale-if-error=9, stale-if-error=30").sie, 9);
}

static void test_cc_huge(void)
{
    gh_cc_t cc = cc_of("max-age=99999999999999999999999999, s-maxage=2147483648, "
                       "max-stale=2147483649, min-fresh=2147483647, stale-if-error=\"1e9\"");
    CHECK_INT(cc.max_age, GH_DELTA_MAX);
    CHECK_INT(cc.s_maxage, GH_DELTA_MAX);
    CHECK_INT(cc.max_stale, GH_DELTA_MAX);
    CHECK_INT(cc.min_fresh, 2147483647);
    CHECK_INT(cc.sie, GH_CC_UNSET);
    CHECK_INT(cc.flags, 0);
    /* two huge values both capped: the same value, not a conflict */
    CHECK_INT(cc_of("max-age=4294967296, max-age=9999999999").flags, 0);
    CHECK_INT(cc_of("max-age=000000000000000000000000007").max_age, 7);
}

static void test_delta_seconds(void)
{
    CHECK_INT(delta_of("0"), 0);
    CHECK_INT(delta_of("00012"), 12);
    CHECK_INT(delta_of("2147483647"), 2147483647);
    CHECK_INT(delta_of("2147483648"), GH_DELTA_MAX);
    CHECK_INT(delta_of("2147483649"), GH_DELTA_MAX);
    CHECK_INT(delta_of("999999999999999999999999999999"), GH_DELTA_MAX);
    static const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1 2", "1, 2", "1,2", "1a", "0x1",
                                "1.0", "\"1\""};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++)
        CHECK_INT(delta_of(bad[i]), -1);
    CHECK_INT(gh_delta_seconds(GH_STR_NULL), -1);
}

static void test_date_forms(void)
{
    CHECK_INT(date_of("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    CHECK_INT(date_of("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    CHECK_INT(date_of("Sun Nov  6 08:49:37 1994"), 784111777);
    CHECK_INT(date_of("Sun Nov 06 08:49:37 1994"), 784111777);
    CHECK_INT(date_of("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    CHECK_INT(date_of("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799LL);
    CHECK_INT(date_of("Wed, 15 Jun 2049 01:02:03 GMT"), 2507331723LL);
    /* the weekday name is not checked, only that it is one */
    CHECK_INT(date_of("Mon, 06 Nov 1994 08:49:37 GMT"), 784111777);
    CHECK_INT(date_of("Wednesday, 06-Nov-94 08:49:37 GMT"), 784111777);
    /* second 60 (a leap second) is the next minute's 0 */
    CHECK_INT(date_of("Sat, 31 Dec 2016 23:59:60 GMT"), 1483228799 + 1);
    /* before 1970: in the past, 0 */
    CHECK_INT(date_of("Sun, 01 Jan 1950 00:00:00 GMT"), 0);
    CHECK_INT(date_of("Sat, 01 Jan 0000 00:00:00 GMT"), 0);
}

static void test_date_leap(void)
{
    CHECK_INT(date_of("Thu, 29 Feb 2024 00:00:00 GMT"), 1709164800);
    CHECK_INT(date_of("Tue, 29 Feb 2000 12:00:00 GMT"), 951825600); /* 400-year rule */
    CHECK_INT(date_of("Tuesday, 29-Feb-00 12:00:00 GMT"), 951825600);
    CHECK_INT(date_of("Tue Feb 29 12:00:00 2000"), 951825600);
    CHECK_INT(date_of("Wed, 29 Feb 2023 00:00:00 GMT"), -1);
    CHECK_INT(date_of("Mon, 29 Feb 2100 00:00:00 GMT"), -1); /* 100-year rule */
    CHECK_INT(date_of("Thu, 29 Feb 1900 00:00:00 GMT"), -1);
    CHECK_INT(date_of("Sat, 30 Feb 2024 00:00:00 GMT"), -1);
    CHECK_INT(date_of("Mon, 31 Apr 2024 00:00:00 GMT"), -1);
    CHECK(date_of("Tue, 30 Apr 2024 00:00:00 GMT") > 0);
    CHECK(date_of("Tue, 31 Dec 2024 00:00:00 GMT") > 0);
}

static void test_date_two_digit_year(void)
{
    /* RFC 9110 5.6.7: more than 50 years ahead (of 2026) is the past century */
    CHECK_INT(date_of("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    CHECK_INT(date_of("Saturday, 01-Jan-00 00:00:00 GMT"), 946684800);
    CHECK_INT(date_of("Thursday, 01-Jan-76 00:00:00 GMT"), 3345062400LL); /* 2076: 50 ahead */
    CHECK_INT(date_of("Saturday, 01-Jan-77 00:00:00 GMT"), 220924800);    /* 1977 */
    CHECK_INT(date_of("Monday, 23-Nov-26 00:00:00 GMT"), 1795392000);
}

static void test_date_invalid(void)
{
    static const char *bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37 GMT ",  /* trailing space */
        " Sun, 06 Nov 1994 08:49:37 GMT",  /* leading space */
        "sun, 06 Nov 1994 08:49:37 GMT",   /* case */
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 6 Nov 1994 08:49:37 GMT",    /* one-digit day */
        "Sun,  6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",     /* rfc850 wants the long name */
        "Sunday, 06-Nov-94 08:49:37 UTC",
        "Sunday,06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-94  08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994 ",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun Nov   6 08:49:37 1994",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",   /* ranges */
        "Sun, 32 Oct 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 0a Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19x4 08:49:37 GMT",
        "Sun Nov  0 08:49:37 1994",
        "Sunday, 31-Jun-94 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "784111777",
        ",",
        "Monday,",
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        int64_t t = date_of(bad[i]);
        if (t != -1)
            fprintf(stderr, "accepted: \"%s\" = %lld\n", bad[i], (long long)t);
        CHECK_INT(t, -1);
    }
    CHECK_INT(gh_http_date(GH_STR_NULL), -1);
    /* NUL and high bytes inside */
    CHECK_INT(gh_http_date(GH_STR("Sun, 06 Nov 1994 08:49:37 GM\0")), -1);
    CHECK_INT(gh_http_date(GH_STR("Sun, 06 Nov 1994 08:49:\xff" "7 GMT")), -1);
}

static void test_date_format(void)
{
    char out[30];
    CHECK_INT(gh_http_date_fmt(784111777, out), 29);
    CHECK(!strcmp(out, "Sun, 06 Nov 1994 08:49:37 GMT"));
    gh_http_date_fmt(0, out);
    CHECK(!strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT"));
    gh_http_date_fmt(1709164800, out);
    CHECK(!strcmp(out, "Thu, 29 Feb 2024 00:00:00 GMT"));
    gh_http_date_fmt(253402300799LL, out);
    CHECK(!strcmp(out, "Fri, 31 Dec 9999 23:59:59 GMT"));
    gh_http_date_fmt(-5, out); /* clamped */
    CHECK(!strcmp(out, "Thu, 01 Jan 1970 00:00:00 GMT"));
    gh_http_date_fmt(INT64_MAX, out);
    CHECK(!strcmp(out, "Fri, 31 Dec 9999 23:59:59 GMT"));
    /* round trip over the whole range, on odd steps that hit every field */
    int bad = 0;
    for (int64_t t = 0; t <= 253402300799LL; t += 7777777 + t % 86399) {
        gh_http_date_fmt(t, out);
        if (strlen(out) != 29 || gh_http_date(gh_str(out, 29)) != t) {
            if (!bad++)
                fprintf(stderr, "round trip of %lld: %s\n", (long long)t, out);
        }
    }
    CHECK_INT(bad, 0);
    /* every day of 2023..2025 (leap day included) */
    for (int64_t t = 1672531200; t < 1767225600; t += 86400 + 3661) {
        gh_http_date_fmt(t, out);
        if (gh_http_date(gh_str(out, 29)) != t)
            bad++;
    }
    CHECK_INT(bad, 0);
}

static void test_status(void)
{
    static const int dflt[] = {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501};
    int n = 0;
    for (int s = 0; s < 1000; s++)
        n += gh_status_cacheable_default(s);
    CHECK_INT(n, GH_ARRAY_LEN(dflt));
    for (size_t i = 0; i < GH_ARRAY_LEN(dflt); i++)
        CHECK(gh_status_cacheable_default(dflt[i]));
    n = 0;
    for (int s = 0; s < 1000; s++)
        n += gh_status_understood(s);
    CHECK_INT(n, 7 + 7 + 18 + 3 + 6);
    CHECK(!gh_status_understood(305) && !gh_status_understood(306));
    CHECK(!gh_status_understood(418) && !gh_status_understood(299) && !gh_status_understood(100));
    CHECK(gh_status_understood(421) && gh_status_understood(426) && gh_status_understood(505));
}

static int storable(const char *req_cc, int status, const char *resp_cc)
{
    gh_req_facts_t q = req_get(req_cc);
    gh_resp_facts_t r = resp_of(status, resp_cc);
    return gh_cache_storable(&q, &r);
}

static void test_storable(void)
{
    CHECK_INT(storable("", 200, ""), 1);
    CHECK_INT(storable("", 200, "max-age=60"), 1);
    /* status */
    CHECK_INT(storable("", 206, "max-age=60"), 0);
    CHECK_INT(storable("", 304, "max-age=60"), 0);
    CHECK_INT(storable("", 100, "max-age=60"), 0);
    CHECK_INT(storable("", 600, "max-age=60"), 0);
    CHECK_INT(storable("", 302, ""), 0);              /* not cacheable by default */
    CHECK_INT(storable("", 302, "max-age=60"), 1);    /* explicit freshness */
    CHECK_INT(storable("", 302, "s-maxage=60"), 1);
    CHECK_INT(storable("", 302, "public"), 1);
    CHECK_INT(storable("", 500, "max-age=x"), 1);     /* invalid max-age: stored stale */
    CHECK_INT(storable("", 404, ""), 1);
    CHECK_INT(storable("", 501, ""), 1);
    gh_req_facts_t q = req_get("");
    gh_resp_facts_t r = resp_of(302, "");
    r.has_expires = 1;
    CHECK_INT(gh_cache_storable(&q, &r), 1); /* invalid Expires (-1) still counts */
    /* methods */
    static const int methods[] = {GH_M_HEAD, GH_M_POST, GH_M_PUT, GH_M_DELETE, GH_M_OPTIONS,
                                  GH_M_OTHER, GH_M_PATCH, GH_M_CONNECT, GH_M_TRACE};
    r = resp_of(200, "max-age=60, public");
    for (size_t i = 0; i < GH_ARRAY_LEN(methods); i++) {
        q.method_id = methods[i];
        CHECK_INT(gh_cache_storable(&q, &r), 0);
    }
    /* no-store, private, must-understand */
    CHECK_INT(storable("no-store", 200, "max-age=60"), 0);
    CHECK_INT(storable("", 200, "max-age=60, no-store"), 0);
    CHECK_INT(storable("", 200, "no-store, must-understand"), 1);
    CHECK_INT(storable("no-store", 200, "no-store, must-understand"), 0);
    CHECK_INT(storable("", 418, "max-age=60, must-understand"), 0);
    CHECK_INT(storable("", 299, "max-age=60, must-understand"), 0);
    CHECK_INT(storable("", 418, "max-age=60"), 1);
    CHECK_INT(storable("", 200, "private"), 0);
    CHECK_INT(storable("", 200, "private, public, max-age=60"), 0);
    CHECK_INT(storable("", 200, "private=\"Set-Cookie\", max-age=60"), 1);
    CHECK_INT(storable("", 200, "no-cache"), 1);
    /* Authorization */
    q = req_get("");
    q.authorization = 1;
    static const struct {
        const char *cc;
        int ok;
    } auth[] = {{"max-age=60", 0}, {"", 0}, {"must-revalidate", 1}, {"public", 1},
                {"s-maxage=60", 1}, {"s-maxage=x", 0}, {"proxy-revalidate, max-age=9", 0}};
    for (size_t i = 0; i < GH_ARRAY_LEN(auth); i++) {
        r = resp_of(200, auth[i].cc);
        CHECK_INT(gh_cache_storable(&q, &r), auth[i].ok);
    }
    /* Vary: * */
    q = req_get("");
    r = resp_of(200, "max-age=60, public");
    r.has_vary_star = 1;
    CHECK_INT(gh_cache_storable(&q, &r), 0);
}

static int64_t life(const gh_resp_facts_t *r, int64_t dttl, int64_t mttl, int *h)
{
    return gh_fresh_lifetime(r, T0, dttl, mttl, h);
}

static void test_lifetime_explicit(void)
{
    int h = -1;
    gh_resp_facts_t r = resp_of(200, "max-age=60, s-maxage=30");
    r.has_expires = 1, r.expires = T0 + 1000;
    CHECK_INT(life(&r, 0, 0, &h), 30); /* s-maxage first */
    CHECK_INT(h, 0);
    r.cc = cc_of("max-age=60");
    CHECK_INT(life(&r, 0, 0, &h), 60); /* then max-age */
    r.cc = cc_of("");
    CHECK_INT(life(&r, 0, 0, &h), 1000); /* then Expires - Date */
    CHECK_INT(h, 0);
    r.date = -1; /* no Date: Expires - response_time */
    CHECK_INT(gh_fresh_lifetime(&r, T0 + 400, 0, 0, &h), 600);
    r.date = T0;
    r.expires = T0 - 50; /* in the past */
    CHECK_INT(life(&r, 3600, 0, &h), 0);
    r.expires = -1; /* invalid Expires: already expired, no heuristic */
    r.last_modified = T0 - 100000;
    CHECK_INT(life(&r, 3600, 0, &h), 0);
    CHECK_INT(h, 0);
    /* a targeted field ignores Expires (RFC 9213 2.2) */
    r.targeted = 1;
    r.expires = T0 + 1000;
    CHECK_INT(life(&r, 0, 0, &h), 10000); /* heuristic instead */
    CHECK_INT(h, 1);
    r.cc = cc_of("max-age=5");
    CHECK_INT(life(&r, 0, 0, &h), 5);
    /* INVALID: 0 whatever else is there */
    r = resp_of(200, "max-age=60, max-age=70, s-maxage=30");
    r.has_expires = 1, r.expires = T0 + 1000;
    CHECK_INT(life(&r, 3600, 0, &h), 0);
    CHECK_INT(h, 0);
    CHECK_INT(life(&r, 3600, 0, NULL), 0);
    r = resp_of(200, "max-age=0");
    CHECK_INT(life(&r, 3600, 0, &h), 0);
    CHECK_INT(h, 0);
}

static void test_lifetime_heuristic(void)
{
    int h = -1;
    gh_resp_facts_t r = resp_of(200, "");
    CHECK_INT(life(&r, 0, 0, &h), 0); /* no Last-Modified */
    CHECK_INT(h, 1);
    r.last_modified = T0 - 36000;
    CHECK_INT(life(&r, 0, 0, &h), 3600); /* 10% */
    CHECK_INT(h, 1);
    CHECK_INT(life(&r, 120, 0, &h), 120); /* default_ttl first */
    CHECK_INT(h, 1);
    r.date = -1; /* no Date: response_time */
    CHECK_INT(gh_fresh_lifetime(&r, T0 + 4000, 0, 0, &h), 4000);
    r.date = T0;
    r.last_modified = T0 + 10; /* not earlier */
    CHECK_INT(life(&r, 0, 0, &h), 0);
    r.last_modified = T0;
    CHECK_INT(life(&r, 0, 0, &h), 0);
    /* a status not cacheable by default: no heuristic, unless public */
    r = resp_of(302, "");
    r.last_modified = T0 - 36000;
    CHECK_INT(life(&r, 120, 0, &h), 0);
    CHECK_INT(h, 0);
    r.cc = cc_of("public");
    CHECK_INT(life(&r, 0, 0, &h), 3600);
    CHECK_INT(h, 1);
    CHECK_INT(life(&r, 120, 0, &h), 120);
    r = resp_of(500, "no-cache");
    CHECK_INT(life(&r, 120, 0, &h), 0);
    r = resp_of(404, "");
    CHECK_INT(life(&r, 120, 0, &h), 120);
}

static void test_lifetime_cap(void)
{
    int h;
    gh_resp_facts_t r = resp_of(200, "max-age=100000");
    CHECK_INT(life(&r, 0, 3600, &h), 3600);
    CHECK_INT(life(&r, 0, 0, &h), 100000);
    CHECK_INT(life(&r, 0, -5, &h), 100000);
    r.cc = cc_of("");
    CHECK_INT(life(&r, 7200, 3600, &h), 3600);
    r.last_modified = 0;
    CHECK_INT(life(&r, 0, 60, &h), 60);
    CHECK_INT(life(&r, 0, 0, &h), T0 / 10);
    r.cc = cc_of("max-age=99999999999");
    CHECK_INT(life(&r, 0, 0, &h), GH_DELTA_MAX);
}

static void test_ages(void)
{
    gh_resp_facts_t r = resp_of(200, "");
    /* apparent age 10 (Date 10s before receipt), no Age, delay 2 */
    r.date = T0 - 10;
    CHECK_INT(gh_initial_age(&r, T0 - 2, T0), 10);
    /* Age 100 + delay 2 wins */
    r.age = 100;
    CHECK_INT(gh_initial_age(&r, T0 - 2, T0), 102);
    /* no Date: apparent 0 */
    r.date = -1, r.age = -1;
    CHECK_INT(gh_initial_age(&r, T0 - 3, T0), 3);
    /* Date in the future: apparent 0 */
    r.date = T0 + 500;
    CHECK_INT(gh_initial_age(&r, T0, T0), 0);
    r.age = 7;
    CHECK_INT(gh_initial_age(&r, T0, T0), 7);
    /* huge values saturate */
    r.date = INT64_MIN + 1, r.age = INT64_MAX;
    CHECK(gh_initial_age(&r, INT64_MIN, INT64_MAX) > 0);

    gh_stored_facts_t s = stored(60, "");
    s.initial_age = 5;
    CHECK_INT(gh_current_age(&s, T0), 5);
    CHECK_INT(gh_current_age(&s, T0 + 30), 35);
    CHECK_INT(gh_current_age(&s, T0 - 30), 5); /* clock went back: no negative resident time */
    CHECK_INT(gh_current_age(&s, INT64_MAX), INT64_MAX - T0 + 5);
    s.initial_age = INT64_MAX; /* saturates */
    CHECK_INT(gh_current_age(&s, T0 + 1), INT64_MAX);
}

static void test_usable_fresh(void)
{
    CHECK_INT(use("", 60, "", 0), GH_USE_FRESH);
    CHECK_INT(use("", 60, "", 59), GH_USE_FRESH);
    CHECK_INT(use("", 60, "", 60), GH_USE_REVALIDATE); /* lifetime must exceed age */
    CHECK_INT(use("", 0, "", 0), GH_USE_REVALIDATE);
    gh_req_facts_t r = req_get("");
    gh_stored_facts_t s = stored(60, "");
    s.initial_age = 50;
    CHECK_INT(gh_cache_usable(&r, &s, T0 + 9), GH_USE_FRESH);
    CHECK_INT(gh_cache_usable(&r, &s, T0 + 10), GH_USE_REVALIDATE);
    /* min-fresh */
    CHECK_INT(use("min-fresh=10", 60, "", 50), GH_USE_FRESH);
    CHECK_INT(use("min-fresh=10", 60, "", 51), GH_USE_REVALIDATE);
    CHECK_INT(use("min-fresh=10, max-stale", 60, "", 51), GH_USE_REVALIDATE);
    CHECK_INT(use("min-fresh=10", 60, "stale-while-revalidate=100", 70), GH_USE_REVALIDATE);
    /* request max-age */
    CHECK_INT(use("max-age=30", 60, "", 30), GH_USE_FRESH);
    CHECK_INT(use("max-age=30", 60, "", 31), GH_USE_REVALIDATE);
    CHECK_INT(use("max-age=0", 60, "", 0), GH_USE_FRESH);
    CHECK_INT(use("max-age=0", 60, "", 1), GH_USE_REVALIDATE);
    CHECK_INT(use("max-age=30, max-stale=5", 60, "", 35), GH_USE_STALE_OK);
    CHECK_INT(use("max-age=30, max-stale=5", 60, "", 36), GH_USE_REVALIDATE);
    CHECK_INT(use("max-age=30, max-stale", 60, "", 59), GH_USE_STALE_OK);
    CHECK_INT(use("max-age=x", 60, "", 1), GH_USE_REVALIDATE); /* unreadable: as max-age=0 */
    /* must-revalidate only bites once stale */
    CHECK_INT(use("", 60, "must-revalidate", 10), GH_USE_FRESH);
    CHECK_INT(use("max-age=5, max-stale", 60, "must-revalidate", 10), GH_USE_STALE_OK);
}

static void test_usable_no_cache(void)
{
    CHECK_INT(use("no-cache", 60, "", 0), GH_USE_REVALIDATE);
    CHECK_INT(use("NO-CACHE, max-stale", 60, "", 0), GH_USE_REVALIDATE);
    CHECK_INT(use("", 60, "no-cache", 0), GH_USE_REVALIDATE);
    CHECK_INT(use("", 60, "no-cache=\"Set-Cookie\"", 0), GH_USE_REVALIDATE);
    CHECK_INT(use("", 60, "no-cache, stale-while-revalidate=600", 70), GH_USE_REVALIDATE);
    gh_req_facts_t r = req_get("");
    r.pragma_no_cache = 1;
    gh_stored_facts_t s = stored(60, "");
    CHECK_INT(gh_cache_usable(&r, &s, T0), GH_USE_REVALIDATE);
    r = req_get("no-store"); /* no-store alone does not forbid using a stored response */
    CHECK_INT(gh_cache_usable(&r, &s, T0), GH_USE_FRESH);
}

static void test_usable_stale(void)
{
    /* max-stale: any, or >= staleness */
    CHECK_INT(use("max-stale", 60, "", 100000), GH_USE_STALE_OK);
    CHECK_INT(use("max-stale=10", 60, "", 70), GH_USE_STALE_OK);
    CHECK_INT(use("max-stale=10", 60, "", 71), GH_USE_REVALIDATE);
    CHECK_INT(use("max-stale=0", 60, "", 60), GH_USE_STALE_OK);
    CHECK_INT(use("max-stale=x", 60, "", 61), GH_USE_REVALIDATE);
    /* max-stale and max-age together: both must hold */
    CHECK_INT(use("max-age=100, max-stale=10", 60, "", 70), GH_USE_STALE_OK);
    CHECK_INT(use("max-age=50, max-stale=10", 60, "", 65), GH_USE_REVALIDATE);
    /* stale-while-revalidate */
    CHECK_INT(use("", 60, "stale-while-revalidate=30", 90), GH_USE_STALE_SWR);
    CHECK_INT(use("", 60, "stale-while-revalidate=30", 91), GH_USE_REVALIDATE);
    CHECK_INT(use("", 60, "stale-while-revalidate=0", 60), GH_USE_STALE_SWR);
    CHECK_INT(use("max-stale=5", 60, "stale-while-revalidate=30", 64), GH_USE_STALE_OK);
    CHECK_INT(use("max-stale=5", 60, "stale-while-revalidate=30", 80), GH_USE_STALE_SWR);
    CHECK_INT(use("max-age=3600", 60, "stale-while-revalidate=30", 70), GH_USE_REVALIDATE);
    /* must-revalidate, proxy-revalidate, s-maxage forbid stale */
    static const char *strict[] = {"must-revalidate", "proxy-revalidate", "s-maxage=60",
                                   "MUST-REVALIDATE"};
    for (size_t i = 0; i < GH_ARRAY_LEN(strict); i++) {
        char cc[128];
        snprintf(cc, sizeof(cc), "%s, stale-while-revalidate=600", strict[i]);
        CHECK_INT(use("max-stale", 60, cc, 61), GH_USE_REVALIDATE);
        CHECK_INT(use("", 60, cc, 61), GH_USE_REVALIDATE);
        CHECK_INT(use("", 60, cc, 59), GH_USE_FRESH);
    }
}

static int sie(const char *req_cc, int64_t lifetime, const char *resp_cc, int64_t age)
{
    gh_req_facts_t r = req_get(req_cc);
    gh_stored_facts_t s = stored(lifetime, resp_cc);
    return gh_cache_stale_if_error(&r, &s, T0 + age);
}

static void test_stale_if_error(void)
{
    CHECK_INT(sie("", 60, "", 61), 0);
    CHECK_INT(sie("", 60, "stale-if-error=100", 160), 1);
    CHECK_INT(sie("", 60, "stale-if-error=100", 161), 0);
    CHECK_INT(sie("stale-if-error=200", 60, "", 260), 1);
    CHECK_INT(sie("stale-if-error=200", 60, "stale-if-error=10", 200), 1); /* the larger */
    CHECK_INT(sie("stale-if-error=10", 60, "stale-if-error=200", 200), 1);
    CHECK_INT(sie("stale-if-error=10", 60, "stale-if-error=20", 200), 0);
    CHECK_INT(sie("", 60, "stale-if-error=0", 60), 1);
    CHECK_INT(sie("", 60, "stale-if-error=100", 10), 1); /* still fresh */
    CHECK_INT(sie("", 60, "must-revalidate, stale-if-error=100", 70), 0);
    CHECK_INT(sie("", 60, "proxy-revalidate, stale-if-error=100", 70), 0);
    CHECK_INT(sie("", 60, "s-maxage=60, stale-if-error=100", 70), 0);
    CHECK_INT(sie("stale-if-error=100", 60, "must-revalidate", 70), 0);
}

int main(void)
{
    RUN(test_cc_init);
    RUN(test_cc_directives);
    RUN(test_cc_case_and_spacing);
    RUN(test_cc_quoted);
    RUN(test_cc_bad_args);
    RUN(test_cc_duplicates);
    RUN(test_cc_huge);
    RUN(test_delta_seconds);
    RUN(test_date_forms);
    RUN(test_date_leap);
    RUN(test_date_two_digit_year);
    RUN(test_date_invalid);
    RUN(test_date_format);
    RUN(test_status);
    RUN(test_storable);
    RUN(test_lifetime_explicit);
    RUN(test_lifetime_heuristic);
    RUN(test_lifetime_cap);
    RUN(test_ages);
    RUN(test_usable_fresh);
    RUN(test_usable_no_cache);
    RUN(test_usable_stale);
    RUN(test_stale_if_error);
    return t_done("test_cache_policy");
}
