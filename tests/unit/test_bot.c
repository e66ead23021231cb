/* test_bot.c: the bot scorer (src/protect/bot.c) and the proof-of-work challenge and
 * pass cookie (src/protect/challenge.c).
 *
 * Scorer: simulated clients on a stepped clock (no sleeping): a browser (assets, full
 * header set, Chrome's JA4, a page every few seconds) stays at 0; a scraper with a
 * browser User-Agent but a library's header set and no assets crosses
 * GH_BOT_SCORE_CHALLENGE within min_requests requests, one with a perfect header set
 * once it walks enough distinct pages; automation User-Agents score high; bursts and
 * walks age out of the sliding window; each JA4 rule fires alone and stays quiet for
 * real browser fingerprints. Challenge: a token solved here in C verifies; every
 * tampered character, another prefix or User-Agent, age, skew and a wrong n are refused;
 * cookies are refused when forged, replayed from another /24 or User-Agent, or expired;
 * the page escapes what it embeds and refuses open redirects.
 *
 * Helper modes for tests/integration/pow_js_check.py (fixed secret, peer 127.0.0.1,
 * User-Agent "pow-js-check", clock GH_TEST_NOW):
 *   test_bot --page DIFFICULTY RETURN_TO   print a challenge page
 *   test_bot --verify TOKEN N              exit 0 when gh_chal_verify accepts */
#include "protect/bot.h"
#include "protect/challenge.h"
#include "t.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <time.h>

#define GH_TEST_NOW 1700000000ull

static const char CHROME_UA[] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like "
                                "Gecko) Chrome/120.0.0.0 Safari/537.36";
static const char FIREFOX_UA[] =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
static const char SAFARI_UA[] =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15";
static const char CRIOS_UA[] = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) "
                               "AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 "
                               "Mobile/15E148 Safari/604.1";
static const char CHROME_JA4[] = "t13d1516h2_8daaf6152771_e5627efa2ab1"; /* FoxIO's Chrome */
static const char CURL_JA4[] = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";   /* tests/unit/data */

static gh_str_t S(const char *s) { return gh_str(s, strlen(s)); }

/* A browser's request: every header a browser sends. */
static gh_bot_obs_t browser_obs(uint64_t now, const char *path, const char *ua, const char *ja4)
{
    gh_bot_obs_t o;
    memset(&o, 0, sizeof(o));
    o.now_ms = now;
    o.path = S(path);
    o.ua = S(ua);
    o.ja4 = S(ja4);
    o.has_accept = o.has_accept_language = o.has_accept_encoding = 1;
    o.has_sec_fetch = o.has_sec_ch_ua = o.has_cookie = o.has_referer = 1;
    o.is_h2 = ja4[0] != 0;
    return o;
}

/* ---- scorer --------------------------------------------------------------------- */

static void test_state_plain(void)
{
    CHECK(sizeof(gh_bot_state_t) <= 64);
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    uint32_t r = 99;
    gh_bot_obs_t o = browser_obs(5, "/", CHROME_UA, CHROME_JA4);
    CHECK_INT(gh_bot_observe(&st, &c, &o, &r), 0); /* clock near 0: still a new client */
    CHECK_INT(r, 0);
    CHECK_INT(st.cur, 1);
    CHECK_INT(gh_bot_observe(&st, &c, &o, NULL), 0); /* reasons may be NULL */
}

static void test_browser_stays_low(void)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    static const char *const assets[] = {"/static/app.css",    "/static/app.js", "/img/logo.svg",
                                         "/fonts/inter.woff2", "/favicon.ico",   "/img/hero.webp"};
    uint64_t t = GH_TEST_NOW * 1000;
    int max = 0;
    uint32_t all = 0;
    char path[64];
    /* 10 minutes: a page every 8 s, all assets on the first, two fresh images after */
    for (int page = 0; page < 75; page++, t += 8000) {
        snprintf(path, sizeof(path), "/articles/%d?ref=home", page);
        uint32_t r;
        gh_bot_obs_t o = browser_obs(t, path, CHROME_UA, CHROME_JA4);
        int s = gh_bot_observe(&st, &c, &o, &r);
        max = GH_MAX(max, s), all |= r;
        int na = page == 0 ? (int)GH_ARRAY_LEN(assets) : 2;
        for (int a = 0; a < na; a++) {
            char ap[64];
            if (page == 0)
                snprintf(ap, sizeof(ap), "%s", assets[a]);
            else
                snprintf(ap, sizeof(ap), "/img/p%d-%d.jpg", page, a);
            o = browser_obs(t + 50 + (uint64_t)a * 10, ap, CHROME_UA, CHROME_JA4);
            s = gh_bot_observe(&st, &c, &o, &r);
            max = GH_MAX(max, s), all |= r;
        }
    }
    CHECK_INT(max, 0);
    CHECK_INT(all, 0);

    /* Firefox, Safari and iOS Chrome with their header sets and a JA4 shaped like a
     * browser's (TLS 1.3, 17 suites, h2): 0 too */
    static const char *const uas[] = {FIREFOX_UA, SAFARI_UA, CRIOS_UA};
    for (size_t u = 0; u < GH_ARRAY_LEN(uas); u++) {
        memset(&st, 0, sizeof(st));
        max = 0;
        for (int page = 0; page < 20; page++, t += 6000) {
            snprintf(path, sizeof(path), "/p/%d", page);
            gh_bot_obs_t o = browser_obs(t, path, uas[u], "t13d1715h2_5b57614c22b0_3d5424432f57");
            o.has_sec_ch_ua = 0; /* Chromium only */
            max = GH_MAX(max, gh_bot_observe(&st, &c, &o, NULL));
            o = browser_obs(t + 40, "/s/site.css", uas[u], "t13d1715h2_5b57614c22b0_3d5424432f57");
            o.has_sec_ch_ua = 0;
            max = GH_MAX(max, gh_bot_observe(&st, &c, &o, NULL));
        }
        CHECK_INT(max, 0);
    }
}

/* Requests until the score reaches GH_BOT_SCORE_CHALLENGE (0 = never within limit). */
static int scrape(const gh_bot_conf_t *c, gh_bot_obs_t tmpl, uint64_t step_ms, int limit,
                  uint32_t *reasons)
{
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    char path[64];
    for (int i = 1; i <= limit; i++) {
        snprintf(path, sizeof(path), "/catalog/item-%d", i);
        tmpl.path = S(path);
        tmpl.now_ms = GH_TEST_NOW * 1000 + (uint64_t)i * step_ms;
        if (gh_bot_observe(&st, c, &tmpl, reasons) >= GH_BOT_SCORE_CHALLENGE)
            return i;
    }
    return 0;
}

static void test_scraper_climbs(void)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    uint32_t r = 0;

    /* A library with a browser User-Agent: Accept only, plain HTTP, pages every 500 ms */
    gh_bot_obs_t o;
    memset(&o, 0, sizeof(o));
    o.ua = S(CHROME_UA);
    o.has_accept = 1;
    int n = scrape(&c, o, 500, 200, &r);
    CHECK(n > 0 && n <= (int)c.min_requests);
    CHECK_INT(r & (GH_BOT_R_HEADERS | GH_BOT_R_NO_ASSETS), GH_BOT_R_HEADERS | GH_BOT_R_NO_ASSETS);
    CHECK_INT(r & (GH_BOT_R_AUTOMATION_UA | GH_BOT_R_JA4_MISMATCH | GH_BOT_R_RATE), 0);

    /* Perfect headers and Chrome's JA4, but 2 distinct pages a second and no assets:
     * paths (half weight at 20, full at 40 per window) plus no_assets */
    o = browser_obs(0, "/", CHROME_UA, CHROME_JA4);
    n = scrape(&c, o, 500, 200, &r);
    CHECK(n > 20 && n <= 45);
    CHECK_INT(r, GH_BOT_R_PATHS | GH_BOT_R_NO_ASSETS);

    /* The same walk at one page every 3 s never crosses: 10 pages per window */
    n = scrape(&c, o, 3000, 300, &r);
    CHECK_INT(n, 0);
    CHECK_INT(r, GH_BOT_R_NO_ASSETS);

    /* A fast flood of one page: rate, no paths */
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    int s = 0;
    for (int i = 0; i < 400; i++) {
        o = browser_obs(GH_TEST_NOW * 1000 + (uint64_t)i * 50, "/", CHROME_UA, CHROME_JA4);
        s = gh_bot_observe(&st, &c, &o, &r);
    }
    CHECK(r & GH_BOT_R_RATE);
    CHECK(!(r & GH_BOT_R_PATHS));
    CHECK(s >= GH_BOT_SCORE_CHALLENGE); /* rate (20 req/s: full) + no_assets */
}

static void test_automation_ua(void)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    static const char *const uas[] = {
        "curl/7.88.1",
        "Wget/1.21.3",
        "python-requests/2.28.1",
        "Python-urllib/3.11",
        "Go-http-client/2.0",
        "Java/17.0.9",
        "okhttp/4.12.0",
        "Scrapy/2.11.0 (+https://scrapy.org)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.109 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
        "PhantomJS/2.1.1 Safari/538.1",
        "libwww-perl/6.68",
        "Apache-HttpClient/4.5.14 (Java/17.0.9)",
        "Python/3.11 aiohttp/3.8.6",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "axios/1.6.2",
        "CURL/8.5.0", /* case-insensitive */
        "",           /* no User-Agent at all */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(uas); i++) {
        gh_bot_state_t st;
        memset(&st, 0, sizeof(st));
        gh_bot_obs_t o = browser_obs(GH_TEST_NOW * 1000, "/", uas[i], "");
        uint32_t r;
        int s = gh_bot_observe(&st, &c, &o, &r);
        if (!(r & GH_BOT_R_AUTOMATION_UA) || s < 80)
            fprintf(stderr, "  ua %zu \"%s\": score %d reasons %x\n", i, uas[i], s, r);
        CHECK(r & GH_BOT_R_AUTOMATION_UA);
        CHECK(s >= 80);
    }
    /* Browsers and an app that names itself without a library are not automation */
    static const char *const ok[] = {CHROME_UA, FIREFOX_UA, SAFARI_UA, CRIOS_UA,
                                     "MyShopApp/3.2 (iOS)"};
    for (size_t i = 0; i < GH_ARRAY_LEN(ok); i++) {
        gh_bot_state_t st;
        memset(&st, 0, sizeof(st));
        gh_bot_obs_t o = browser_obs(GH_TEST_NOW * 1000, "/", ok[i], "");
        uint32_t r;
        CHECK_INT(gh_bot_observe(&st, &c, &o, &r), 0);
        CHECK_INT(r, 0);
    }
}

static void test_window_slides(void)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    uint64_t t0 = 1000000ull * c.window_ms; /* a window boundary */
    uint32_t r = 0;
    char path[64];
    /* 300 requests in 10 s (one page, the rest assets): rate only */
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof(path), i == 0 ? "/gallery" : "/img/%d.jpg", i);
        gh_bot_obs_t o = browser_obs(t0 + (uint64_t)i * 33, path, CHROME_UA, CHROME_JA4);
        gh_bot_observe(&st, &c, &o, &r);
    }
    CHECK_INT(r, GH_BOT_R_RATE);
    /* 40 s later (10 s into the next window): 2/3 of the old window still counts */
    gh_bot_obs_t o = browser_obs(t0 + 40000, "/img/x.png", CHROME_UA, CHROME_JA4);
    gh_bot_observe(&st, &c, &o, &r);
    CHECK_INT(r, GH_BOT_R_RATE);
    /* 29 s into the next window: 1/30 of 300 = 10 requests, 0.4/s */
    o.now_ms = t0 + 59000;
    CHECK_INT(gh_bot_observe(&st, &c, &o, &r), 0);
    CHECK_INT(r, 0);
    /* a fresh burst, then silence past two windows: gone at once */
    for (int i = 0; i < 300; i++) {
        o.now_ms = t0 + 60000 + (uint64_t)i * 10;
        gh_bot_observe(&st, &c, &o, &r);
    }
    CHECK(r & GH_BOT_R_RATE);
    o.now_ms = t0 + 60000 + 2 * c.window_ms + 1;
    CHECK_INT(gh_bot_observe(&st, &c, &o, &r), 0);
    CHECK_INT(r, 0);

    /* breadth ages out the same way: 60 distinct pages in 30 s, then quiet */
    memset(&st, 0, sizeof(st));
    for (int i = 0; i < 60; i++) {
        snprintf(path, sizeof(path), "/doc/%d", i);
        o = browser_obs(t0 + (uint64_t)i * 450, path, CHROME_UA, CHROME_JA4);
        gh_bot_observe(&st, &c, &o, &r);
        o = browser_obs(t0 + (uint64_t)i * 450 + 5, "/a.css", CHROME_UA, CHROME_JA4);
        gh_bot_observe(&st, &c, &o, &r);
    }
    CHECK_INT(r, GH_BOT_R_PATHS);
    o = browser_obs(t0 + 3 * c.window_ms + 1, "/doc/next", CHROME_UA, CHROME_JA4);
    CHECK_INT(gh_bot_observe(&st, &c, &o, &r), 0);
    CHECK_INT(r, 0);

    /* a clock going backwards is the current window, not a crash or a reset */
    o.now_ms = t0;
    gh_bot_observe(&st, &c, &o, &r);
    CHECK_INT(r, 0);
}

static void test_linear_counting(void)
{
    /* the distinct estimate tracks the truth while the bitmap is far from full */
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    c.max_paths = 1000000; /* observe the state, not the signal */
    for (int trial = 0; trial < 3; trial++) {
        gh_bot_state_t st;
        memset(&st, 0, sizeof(st));
        c.path_seed = (uint64_t)trial * 0x9e3779b97f4a7c15ull;
        char path[64];
        for (int i = 0; i < 30; i++) {
            snprintf(path, sizeof(path), "/x/%d", i);
            gh_bot_obs_t o = browser_obs(1000 + (uint64_t)i, path, CHROME_UA, CHROME_JA4);
            gh_bot_observe(&st, &c, &o, NULL);
        }
        int ones = __builtin_popcountll(st.paths[0]) + __builtin_popcountll(st.paths[1]);
        double est = 128 * log(128.0 / (128 - ones));
        CHECK(est > 22 && est < 40);
        /* the same path again changes nothing */
        uint64_t before[2] = {st.paths[0], st.paths[1]};
        gh_bot_obs_t o = browser_obs(2000, "/x/7", CHROME_UA, CHROME_JA4);
        gh_bot_observe(&st, &c, &o, NULL);
        CHECK(st.paths[0] == before[0] && st.paths[1] == before[1]);
    }
}

static uint32_t ja4_reasons(const char *ua, const char *ja4)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    gh_bot_state_t st;
    memset(&st, 0, sizeof(st));
    gh_bot_obs_t o = browser_obs(GH_TEST_NOW * 1000, "/", ua, ja4);
    uint32_t r;
    gh_bot_observe(&st, &c, &o, &r);
    return r;
}

static void test_ja4_rules(void)
{
    static const struct {
        const char *ua, *ja4;
        int mismatch;
    } cases[] = {
        {CHROME_UA, CHROME_JA4, 0},
        {CHROME_UA, "t13d1517h2_8daaf6152771_b1ff8ab2d16f", 0},
        {CHROME_UA, "q13d0312h3_55b375c5d22e_06cda9e17597", 0},  /* QUIC offers h3 */
        {CHROME_UA, "t13i1516h2_8daaf6152771_02713d6af862", 0},  /* no SNI: an IP literal */
        {CHROME_UA, CURL_JA4, 1},                                /* library list, 31 suites */
        {CHROME_UA, "t12d1516h2_8daaf6152771_e5627efa2ab1", 1},  /* no TLS 1.3 */
        {CHROME_UA, "t13d1516h1_8daaf6152771_e5627efa2ab1", 1},  /* http/1.1 only */
        {CHROME_UA, "t13d151600_8daaf6152771_e5627efa2ab1", 1},  /* no ALPN */
        {CHROME_UA, "t13d3016h2_0123456789ab_e5627efa2ab1", 1},  /* 30 suites */
        {FIREFOX_UA, "t13d1909h2_9dc949149365_97f8aa674fd9", 1}, /* Go's list */
        {FIREFOX_UA, "t13d1715h2_5b57614c22b0_3d5424432f57", 0},
        {SAFARI_UA, "t13d2014h2_a09f3c656075_14788d8d241b", 0},
        {SAFARI_UA, "t12d2014h2_a09f3c656075_14788d8d241b", 1},
        {CRIOS_UA, "t12d2014h2_a09f3c656075_14788d8d241b", 0}, /* WebKit, version unknown */
        {"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0 "
         "Safari/537.36",
         "t12d1516h2_8daaf6152771_e5627efa2ab1", 0}, /* Chrome 60 had no TLS 1.3 */
        {CHROME_UA, "", 0},                          /* plain HTTP */
        {CHROME_UA, "garbage", 0},                   /* unparseable: no rule */
        {CHROME_UA, "t13d15", 0},
        {"curl/8.5.0", CURL_JA4, 0}, /* honest library: automation_ua, not a mismatch */
        {"MyShopApp/3.2", CURL_JA4, 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        uint32_t r = ja4_reasons(cases[i].ua, cases[i].ja4);
        int got = !!(r & GH_BOT_R_JA4_MISMATCH);
        if (got != cases[i].mismatch)
            fprintf(stderr, "  ja4 case %zu (%s): mismatch %d\n", i, cases[i].ja4, got);
        CHECK_INT(got, cases[i].mismatch);
    }
    CHECK_INT(ja4_reasons(CHROME_UA, CURL_JA4), GH_BOT_R_JA4_MISMATCH);
}

static void test_header_rules(void)
{
    gh_bot_conf_t c;
    gh_bot_conf_default(&c);
    static const struct {
        const char *ua, *ja4;
        unsigned clear; /* 1 accept, 2 language, 4 encoding, 8 sec-fetch, 16 sec-ch-ua */
        int flagged;
    } cases[] = {
        {CHROME_UA, CHROME_JA4, 0, 0},
        {CHROME_UA, CHROME_JA4, 2, 1},
        {CHROME_UA, "", 4, 1},
        {CHROME_UA, "", 1, 1},
        {CHROME_UA, CHROME_JA4, 16, 1}, /* Chrome 120 over TLS always sends Sec-CH-UA */
        {CHROME_UA, CHROME_JA4, 8, 1},
        {CHROME_UA, "", 8 | 16, 0}, /* plain HTTP: not a secure context */
        {"Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/80.0 "
         "Safari/537.36",
         CHROME_JA4, 16, 0}, /* no client hints before 89 */
        {FIREFOX_UA, CHROME_JA4, 16, 0},
        {FIREFOX_UA, CHROME_JA4, 8 | 16, 1},
        {SAFARI_UA, CHROME_JA4, 8 | 16, 1},
        {CRIOS_UA, CHROME_JA4, 8 | 16, 0},
        {CRIOS_UA, CHROME_JA4, 2, 1},
        {"MyShopApp/3.2 (iOS)", "", 1 | 2 | 4 | 8 | 16, 0}, /* claims no browser */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        gh_bot_state_t st;
        memset(&st, 0, sizeof(st));
        gh_bot_obs_t o = browser_obs(GH_TEST_NOW * 1000, "/", cases[i].ua, cases[i].ja4);
        unsigned k = cases[i].clear;
        if (k & 1)
            o.has_accept = 0;
        if (k & 2)
            o.has_accept_language = 0;
        if (k & 4)
            o.has_accept_encoding = 0;
        if (k & 8)
            o.has_sec_fetch = 0;
        if (k & 16)
            o.has_sec_ch_ua = 0;
        uint32_t r;
        int s = gh_bot_observe(&st, &c, &o, &r);
        if (!!(r & GH_BOT_R_HEADERS) != cases[i].flagged)
            fprintf(stderr, "  header case %zu: reasons %x\n", i, r);
        CHECK_INT(!!(r & GH_BOT_R_HEADERS), cases[i].flagged);
        CHECK_INT(s, cases[i].flagged ? c.w_headers : 0);
    }
}

static void test_assets_and_names(void)
{
    static const struct {
        const char *p;
        int asset;
    } cases[] = {
        {"/static/app.css", 1},
        {"/app.JS?v=12", 1},
        {"/img/a.b.PNG#x", 1},
        {"/f/x.woff2", 1},
        {"/v.mp4", 1},
        {"/a.map", 1},
        {"/", 0},
        {"/index.html", 0},
        {"/blog/post", 0},
        {"/api/items.json", 0},
        {"/x.css/page", 0},
        {"/search?q=a.css", 0},
        {"/file.", 0},
        {"", 0},
        {"/.css", 1},
        {"/x.cssx", 0},
        {"/x.longextension", 0},
        {"/dir.js/", 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        int a = gh_bot_is_asset(S(cases[i].p));
        if (a != cases[i].asset)
            fprintf(stderr, "  asset \"%s\": %d\n", cases[i].p, a);
        CHECK_INT(a, cases[i].asset);
    }
    CHECK(!strcmp(gh_bot_reason_name(GH_BOT_R_RATE), "rate"));
    CHECK(!strcmp(gh_bot_reason_name(GH_BOT_R_JA4_MISMATCH), "ja4_mismatch"));
    CHECK(!strcmp(gh_bot_reason_name(GH_BOT_R_AUTOMATION_UA), "automation_ua"));
    CHECK(gh_bot_reason_name(0) == NULL);
    CHECK(gh_bot_reason_name(3) == NULL);
    CHECK(gh_bot_reason_name(1u << 20) == NULL);
    char buf[64];
    CHECK_INT(gh_bot_reasons_format(GH_BOT_R_PATHS | GH_BOT_R_NO_ASSETS, buf, sizeof(buf)), 15);
    CHECK(!strcmp(buf, "paths,no_assets"));
    CHECK_INT(gh_bot_reasons_format(0, buf, sizeof(buf)), 0);
    CHECK(!strcmp(buf, ""));
    CHECK_INT(gh_bot_reasons_format(GH_BOT_R_RATE | GH_BOT_R_PATHS, buf, 10), 10 - 6);
    CHECK(!strcmp(buf, "rate")); /* truncated at a name */
}

/* ---- challenge ------------------------------------------------------------------ */

static const uint8_t SECRET[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t SECRET2[32] = "0123456789abcdef0123456789abcdeF";

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(40000);
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* The smallest n whose SHA-256(token "." n) has the token's zero bits. */
static uint64_t solve(const char *token, unsigned difficulty)
{
    char n[24];
    for (uint64_t i = 0;; i++) {
        snprintf(n, sizeof(n), "%llu", (unsigned long long)i);
        if (gh_chal_pow_bits(S(token), S(n)) >= difficulty)
            return i;
    }
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_token_round_trip(void)
{
    struct sockaddr_storage peer = v4("203.0.113.7");
    gh_str_t ua = S(CHROME_UA);
    char tok[GH_CHAL_TOKEN_MAX], n[24];
    int len =
        gh_chal_token(SECRET, sizeof(SECRET), SA(peer), ua, GH_TEST_NOW, 16, tok, sizeof(tok));
    CHECK(len > 0 && (size_t)len == strlen(tok));
    CHECK(!strncmp(tok, "v1.1700000000.16.", 17));
    for (int i = 0; i < len; i++)
        CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", tok[i]));

    double t = mono();
    uint64_t sol = solve(tok, 16);
    double dt = mono() - t;
    printf("test_bot: difficulty 16 solved with n=%llu in %.1f ms (%.2f M hashes/s via "
           "gh_chal_pow_bits)\n",
           (unsigned long long)sol, dt * 1e3, (double)(sol + 1) / dt / 1e6);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)sol);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW, 300), 1);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW + 300, 300), 1);
    /* same /24, IPv4-mapped IPv6 of it */
    struct sockaddr_storage near = v4("203.0.113.250"), mapped = v6("::ffff:203.0.113.9");
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(near), ua, S(tok), S(n), GH_TEST_NOW, 300), 1);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(mapped), ua, S(tok), S(n), GH_TEST_NOW, 300), 1);

    /* refused: other /24, other UA, other secret, too old, from the future, wrong n */
    struct sockaddr_storage far = v4("203.0.114.7");
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(far), ua, S(tok), S(n), GH_TEST_NOW, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), S(FIREFOX_UA), S(tok), S(n), GH_TEST_NOW, 300),
              0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), GH_STR(""), S(tok), S(n), GH_TEST_NOW, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET2, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 31, SA(peer), ua, S(tok), S(n), GH_TEST_NOW, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW + 301, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW - 60, 300), 1);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW - 61, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, NULL, ua, S(tok), S(n), GH_TEST_NOW, 300), 0);
    uint64_t wrong = sol + 1;
    char wn[24];
    for (;; wrong++) {
        snprintf(wn, sizeof(wn), "%llu", (unsigned long long)wrong);
        if (gh_chal_pow_bits(S(tok), S(wn)) < 16)
            break;
    }
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(wn), GH_TEST_NOW, 300), 0);
    char lead[32];
    snprintf(lead, sizeof(lead), "0%s", n); /* another string: another hash */
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(lead), GH_TEST_NOW, 300),
              gh_chal_pow_bits(S(tok), S(lead)) >= 16);
    static const char *const badn[] = {"", "-1", "1e3", " 1", "12345678901234567", "0x10"};
    for (size_t i = 0; i < GH_ARRAY_LEN(badn); i++)
        CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(badn[i]), GH_TEST_NOW, 300),
                  0);

    /* every single-character change of the token is refused */
    char mut[GH_CHAL_TOKEN_MAX + 8];
    int refused = 0;
    for (int i = 0; i < len; i++) {
        static const char alt[] = "0A1b.-_9";
        for (const char *a = alt; *a; a++) {
            if (*a == tok[i])
                continue;
            memcpy(mut, tok, (size_t)len + 1);
            mut[i] = *a;
            if (gh_chal_verify(SECRET, 32, SA(peer), ua, S(mut), S(n), GH_TEST_NOW, 300) == 0)
                refused++;
            else
                fprintf(stderr, "  accepted mutant %s\n", mut);
        }
    }
    int total = 0;
    for (int i = 0; i < len; i++)
        total += 8 - (strchr("0A1b.-_9", tok[i]) != NULL);
    CHECK_INT(refused, total);
    /* truncated, extended, difficulty lowered with the MAC kept */
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, gh_str(tok, (size_t)len - 1), S(n),
                             GH_TEST_NOW, 300),
              0);
    snprintf(mut, sizeof(mut), "%sA", tok);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(mut), S(n), GH_TEST_NOW, 300), 0);
    memcpy(mut, tok, (size_t)len + 1);
    mut[14] = '8';
    memmove(mut + 15, mut + 16, (size_t)len - 15); /* ".16." -> ".8." */
    CHECK(!strncmp(mut, "v1.1700000000.8.", 16));
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(mut), S(n), GH_TEST_NOW, 300), 0);

    /* IPv6: bound to the /64 */
    struct sockaddr_storage a6 = v6("2001:db8:1:2::10"), b6 = v6("2001:db8:1:2:ffff::1"),
                            c6 = v6("2001:db8:1:3::10");
    len = gh_chal_token(SECRET, 32, SA(a6), ua, GH_TEST_NOW, 4, tok, sizeof(tok));
    CHECK(len > 0);
    snprintf(n, sizeof(n), "%llu", (unsigned long long)solve(tok, 4));
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(b6), ua, S(tok), S(n), GH_TEST_NOW, 300), 1);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(c6), ua, S(tok), S(n), GH_TEST_NOW, 300), 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(peer), ua, S(tok), S(n), GH_TEST_NOW, 300), 0);

    /* difficulty 0 needs no work; fresh nonces make fresh tokens */
    char tok2[GH_CHAL_TOKEN_MAX];
    gh_chal_token(SECRET, 32, SA(a6), ua, GH_TEST_NOW, 0, tok, sizeof(tok));
    gh_chal_token(SECRET, 32, SA(a6), ua, GH_TEST_NOW, 0, tok2, sizeof(tok2));
    CHECK(strcmp(tok, tok2) != 0);
    CHECK_INT(gh_chal_verify(SECRET, 32, SA(a6), ua, S(tok), GH_STR("0"), GH_TEST_NOW, 300), 1);

    /* argument errors */
    CHECK_INT(gh_chal_token(SECRET, 31, SA(peer), ua, GH_TEST_NOW, 16, tok, sizeof(tok)),
              GH_EINVAL);
    CHECK_INT(gh_chal_token(SECRET, 32, SA(peer), ua, GH_TEST_NOW, 33, tok, sizeof(tok)),
              GH_EINVAL);
    CHECK_INT(gh_chal_token(SECRET, 32, SA(peer), ua, GH_TEST_NOW, 16, tok, 20), GH_ELIMIT);
    CHECK_INT(gh_chal_token(SECRET, 32, SA(peer), ua, UINT64_MAX, 32, tok, sizeof(tok)) > 0, 1);
    CHECK((size_t)strlen(tok) < GH_CHAL_TOKEN_MAX);
}

static void test_cookie(void)
{
    struct sockaddr_storage peer = v4("198.51.100.23"), same24 = v4("198.51.100.200"),
                            other24 = v4("198.51.101.23"), mapped = v6("::ffff:198.51.100.1");
    gh_str_t ua = S(FIREFOX_UA);
    char ck[GH_CHAL_COOKIE_MAX];
    uint64_t exp = GH_TEST_NOW + 3600;
    int len = gh_chal_cookie(SECRET, 32, SA(peer), ua, exp, ck, sizeof(ck));
    CHECK(len > 0 && (size_t)len == strlen(ck));
    CHECK(!strncmp(ck, "v1.1700003600.", 14));
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(ck), GH_TEST_NOW), 1);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(same24), ua, S(ck), GH_TEST_NOW), 1);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(mapped), ua, S(ck), GH_TEST_NOW), 1);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(ck), exp - 1), 1);
    /* replayed elsewhere, other UA, expired, other secret */
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(other24), ua, S(ck), GH_TEST_NOW), 0);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), S(CHROME_UA), S(ck), GH_TEST_NOW), 0);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(ck), exp), 0);
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(ck), exp + 100000), 0);
    CHECK_INT(gh_chal_cookie_check(SECRET2, 32, SA(peer), ua, S(ck), GH_TEST_NOW), 0);
    /* forged: expiry pushed out with the MAC kept, every MAC character changed */
    char f[GH_CHAL_COOKIE_MAX];
    memcpy(f, ck, (size_t)len + 1);
    f[3] = '2';
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(f), GH_TEST_NOW), 0);
    int refused = 0;
    for (int i = 14; i < len; i++) {
        memcpy(f, ck, (size_t)len + 1);
        f[i] = f[i] == 'A' ? 'B' : 'A';
        refused += gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(f), GH_TEST_NOW) == 0;
    }
    CHECK_INT(refused, len - 14);
    static const char *const junk[] = {"",
                                       "v1",
                                       "v1.",
                                       "v1.1700003600",
                                       "v1.1700003600.",
                                       "v2.1700003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                       "v1.01700003600.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                       "v1.99999999999999999999999.AAAA"};
    for (size_t i = 0; i < GH_ARRAY_LEN(junk); i++)
        CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(junk[i]), GH_TEST_NOW), 0);
    /* a token is not a cookie, even for the same client */
    char tok[GH_CHAL_TOKEN_MAX];
    gh_chal_token(SECRET, 32, SA(peer), ua, exp, 0, tok, sizeof(tok));
    CHECK_INT(gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(tok), GH_TEST_NOW), 0);
    /* a cookie MAC is not a token MAC: splice it into a token shape */
    char splice[GH_CHAL_TOKEN_MAX + GH_CHAL_COOKIE_MAX];
    snprintf(splice, sizeof(splice), "v1.1700003600.0.AAAAAAAAAAAAAAAA.%s", ck + 14);
    CHECK_INT(
        gh_chal_verify(SECRET, 32, SA(peer), ua, S(splice), GH_STR("0"), GH_TEST_NOW, 1 << 20), 0);
    CHECK_INT(gh_chal_cookie(SECRET, 16, SA(peer), ua, exp, ck, sizeof(ck)), GH_EINVAL);
    CHECK_INT(gh_chal_cookie(SECRET, 32, SA(peer), ua, exp, ck, 10), GH_ELIMIT);
    CHECK(gh_chal_cookie(SECRET, 32, SA(peer), ua, UINT64_MAX, ck, sizeof(ck)) > 0);

    /* cost of one check (one HMAC-SHA256 through EVP_MAC) */
    len = gh_chal_cookie(SECRET, 32, SA(peer), ua, exp, ck, sizeof(ck));
    int iters = 20000, ok = 0;
    double t = mono();
    for (int i = 0; i < iters; i++)
        ok += gh_chal_cookie_check(SECRET, 32, SA(peer), ua, S(ck), GH_TEST_NOW);
    double dt = mono() - t;
    CHECK_INT(ok, iters);
    printf("test_bot: gh_chal_cookie_check %.2f us per call\n", dt / iters * 1e6);
}

static int contains(const char *h, size_t n, const char *needle)
{
    return memmem(h, n, needle, strlen(needle)) != NULL;
}

static void test_page(void)
{
    struct sockaddr_storage peer = v4("192.0.2.1");
    char tok[GH_CHAL_TOKEN_MAX];
    int tl = gh_chal_token(SECRET, 32, SA(peer), S(CHROME_UA), GH_TEST_NOW, 16, tok, sizeof(tok));
    CHECK(tl > 0);
    static char page[GH_CHAL_PAGE_SIZE(4096, 64)];
    gh_str_t vp = GH_STR("/.gatehouse/challenge");
    int n = gh_chal_page(page, sizeof(page), S(tok), 16, GH_STR("/shop?item=1&x=2"), vp);
    CHECK(n > 0);
    printf("test_bot: challenge page %d bytes\n", n);
    CHECK(n < 6144);
    CHECK(contains(page, (size_t)n, tok));
    CHECK(contains(page, (size_t)n, "D=16,"));
    CHECK(contains(page, (size_t)n, "V=\"/.gatehouse/challenge\""));
    CHECK(contains(page, (size_t)n, "R=\"/shop?item=1&x=2\""));
    CHECK(contains(page, (size_t)n, "<noscript>"));
    CHECK(contains(page, (size_t)n, "crypto&&W.crypto.subtle"));
    CHECK(!contains(page, (size_t)n, "http://") && !contains(page, (size_t)n, "https://"));
    CHECK(!contains(page, (size_t)n, " src="));

    /* hostile return_to: escaped, never ends the script or the string */
    static const char evil[] = "/a\"</script><script>alert(1)</script>'\\u0041";
    /* ... but gh_chal_return_ok refuses the backslash: "/" is used instead */
    n = gh_chal_page(page, sizeof(page), S(tok), 16, S(evil), vp);
    CHECK(n > 0 && contains(page, (size_t)n, "R=\"/\";"));
    static const char evil2[] = "/a\"</script><script>alert(1)</script>'x";
    n = gh_chal_page(page, sizeof(page), S(tok), 16, S(evil2), vp);
    CHECK(n > 0);
    CHECK(!contains(page, (size_t)n, "alert(1)</script>"));
    CHECK(contains(page, (size_t)n,
                   "R=\"/a\\u0022\\u003c/script\\u003e\\u003cscript\\u003ealert"
                   "\\u00281\\u0029\\u003c/script\\u003e\\u0027x\""));
    /* exactly one script element */
    const char *first = memmem(page, (size_t)n, "</script>", 9);
    CHECK(first && !memmem(first + 1, (size_t)(page + n - first - 1), "</script>", 9));

    /* open redirects become "/" */
    static const char *const off[] = {
        "//evil.example/", "/\\evil.example", "https://evil.example/", "evil", "", "/a b",
        "/a\tb",           "/caf\xc3\xa9"};
    for (size_t i = 0; i < GH_ARRAY_LEN(off); i++) {
        CHECK_INT(gh_chal_return_ok(S(off[i])), 0);
        n = gh_chal_page(page, sizeof(page), S(tok), 16, S(off[i]), vp);
        CHECK(n > 0 && contains(page, (size_t)n, "R=\"/\";"));
    }
    CHECK_INT(gh_chal_return_ok(GH_STR("/")), 1);
    CHECK_INT(gh_chal_return_ok(GH_STR("/a/b?c=%2F%2F&d=//x#f")), 1);

    /* argument errors */
    CHECK_INT(gh_chal_page(page, sizeof(page), S(tok), 15, GH_STR("/"), vp), GH_EINVAL);
    CHECK_INT(gh_chal_page(page, sizeof(page), GH_STR("v1.x"), 16, GH_STR("/"), vp), GH_EINVAL);
    CHECK_INT(gh_chal_page(page, sizeof(page), S(tok), 16, GH_STR("/"), GH_STR("//x")), GH_EINVAL);
    CHECK_INT(gh_chal_page(page, sizeof(page), S(tok), 16, GH_STR("/"), GH_STR("/v?x=1")),
              GH_EINVAL);
    CHECK_INT(gh_chal_page(page, 1000, S(tok), 16, GH_STR("/"), vp), GH_ELIMIT);
    /* the size macro holds the worst case: every return_to byte escaped */
    char rt[2048];
    rt[0] = '/';
    memset(rt + 1, '"', sizeof(rt) - 1);
    n = gh_chal_page(page, GH_CHAL_PAGE_SIZE(sizeof(rt), vp.n), S(tok), 16, gh_str(rt, sizeof(rt)),
                     vp);
    CHECK(n > 0);
}

/* ---- helper modes for pow_js_check.py ------------------------------------------- */

static int helper(int argc, char **argv)
{
    struct sockaddr_storage peer = v4("127.0.0.1");
    gh_str_t ua = GH_STR("pow-js-check");
    if (argc == 4 && !strcmp(argv[1], "--page")) {
        unsigned d = (unsigned)atoi(argv[2]);
        char tok[GH_CHAL_TOKEN_MAX];
        if (gh_chal_token(SECRET, 32, SA(peer), ua, GH_TEST_NOW, d, tok, sizeof(tok)) < 0)
            return 2;
        size_t cap = GH_CHAL_PAGE_SIZE(strlen(argv[3]), 32);
        char *page = malloc(cap);
        int n = page ? gh_chal_page(page, cap, S(tok), d, S(argv[3]), GH_STR("/.gatehouse/verify"))
                     : -1;
        if (n < 0)
            return 2;
        fwrite(page, 1, (size_t)n, stdout);
        free(page);
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "--verify"))
        return gh_chal_verify(SECRET, 32, SA(peer), ua, S(argv[2]), S(argv[3]), GH_TEST_NOW, 600)
                   ? 0
                   : 1;
    fprintf(stderr, "usage: test_bot [--page DIFFICULTY RETURN_TO | --verify TOKEN N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return helper(argc, argv);
    RUN(test_state_plain);
    RUN(test_browser_stays_low);
    RUN(test_scraper_climbs);
    RUN(test_automation_ua);
    RUN(test_window_slides);
    RUN(test_linear_counting);
    RUN(test_ja4_rules);
    RUN(test_header_rules);
    RUN(test_assets_and_names);
    RUN(test_token_round_trip);
    RUN(test_cookie);
    RUN(test_page);
    return t_done("test_bot");
}
