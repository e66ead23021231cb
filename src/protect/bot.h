/* bot.h: the per-client behaviour scorer of the scraper/bot defence.
 *
 * A pure function over a small state that the caller keeps per client (a shared hash
 * table keyed by client IP; the state is plain data, at most 64 bytes, all-zero for a
 * client never seen). Each request updates the state and yields a score 0..100 and the
 * GH_BOT_R_* reasons behind it; the caller compares the score with its threshold
 * (GH_BOT_SCORE_CHALLENGE suggested) and serves the proof-of-work challenge
 * (protect/challenge.h), blocks, or only logs. Verified good bots (IP ranges) and
 * clients holding a valid pass cookie are the caller's business and never reach here.
 *
 * Score = min(100, sum of the weights of the signals that fire). Behaviour signals look
 * at the client's recent history in the state; the others at this request alone:
 *
 *  rate          (w_rate 30) requests per second over a sliding window of window_ms
 *                (two fixed windows, the previous weighted by how much of it still
 *                overlaps: the standard sliding-window counter). Fires above max_rate
 *                with half its weight, growing linearly to the full weight at twice
 *                max_rate. Assets count too: a page load of 100 assets is a burst,
 *                which is why the default allows 5/s over 30 s and the weight is low.
 *  paths         (w_paths 40) distinct page paths as given (pass the query too and
 *                pagination and search walks count) in the sliding window, in a 128-bit
 *                linear-counting bitmap of keyed path hashes, reset per window; the
 *                previous window's estimate is weighted like the rate. A scraper walks
 *                many distinct pages, a reader a few per minute. Half weight above
 *                max_paths, full at twice. A page seen in both windows may count twice.
 *  no_assets     (w_no_assets 30) pages per asset above max_page_ratio once the client
 *                has made min_requests requests (counts halve every window, so old
 *                behaviour fades). Browsers fetch stylesheets, scripts, images and fonts
 *                (asset = path ending in .css .js .mjs .png .jpg .jpeg .gif .svg .ico
 *                .webp .avif .bmp .woff .woff2 .ttf .otf .eot .map .mp4 .webm .mp3 .ogg
 *                .wav .m4a .wasm, query and fragment ignored; page = everything else,
 *                API calls included); scrapers mostly fetch pages. A browser with a warm
 *                cache fetches few assets, so this weight alone stays under the cut.
 *  headers       (w_headers 35) a browser User-Agent (Mozilla/5.0 with Chrome/,
 *                Firefox/ or Safari/) without a header that browser always sends:
 *                Accept, Accept-Language and Accept-Encoding from any browser; over TLS
 *                (ja4 present: Sec-Fetch-* and client hints are sent only to secure
 *                origins) also Sec-Fetch-* and Sec-CH-UA from Chromium >= 89,
 *                Sec-Fetch-* from Firefox >= 90 and Safari >= 17. HTTP libraries that
 *                borrow a browser's User-Agent rarely copy its header set.
 *  automation_ua (w_automation_ua 80) a User-Agent naming an HTTP library or automation
 *                tool (curl, wget, python-requests, python-urllib, Go-http-client, Java/,
 *                okhttp, scrapy, HeadlessChrome, PhantomJS, libwww-perl, httpclient,
 *                aiohttp, node-fetch, axios, ..., case-insensitive), or none at all:
 *                such a client says it is not a browser, and this defence is for pages
 *                meant for browsers (exempt API routes and known partners upstream).
 *  ja4_mismatch  (w_ja4 45) the connection's JA4 (what the TLS stack really sent)
 *                contradicts a browser User-Agent, by the rules of one table: no TLS
 *                1.3 offered while the claimed browser has had it for years
 *                (Chromium >= 70, Firefox >= 63, Safari >= 13); h2 not the first ALPN
 *                protocol offered ("00" none, "h1" only http/1.1; every browser offers
 *                h2 first over TLS); more than 24 cipher suites (browsers offer 15 to
 *                20; OpenSSL, GnuTLS and Node defaults 29 to 59); the cipher-suite hash
 *                of a known library's default list (OpenSSL 3 as used by curl and
 *                Python, python-requests, GnuTLS wget, Node, Go).
 *                A TLS-intercepting middlebox (corporate proxy, antivirus) also looks
 *                like this: its clients then need a pass cookie or an allow rule.
 *                JA4's 'i' (no SNI) is not a rule: browsers send no SNI to an IP address.
 *
 * A plausible-looking scraper (browser User-Agent, missing headers, pages only) crosses
 * 60 after min_requests requests (headers + no_assets); one with a perfect header set
 * once it walks 1.5 times max_paths pages per window without assets (paths + no_assets).
 *
 * Called by the protection phase of the request pipeline, once per request, with the
 * state locked or owned by the caller. Calls only libc, libm and pthread_once (a
 * table built on first use). Never allocates; ~0.2 us per request for a browser.
 * Thread-safety: the functions are pure; one state must not be updated by two threads
 * at once; a conf is read-only after gh_bot_conf_default and the caller's changes. */
#ifndef GH_PROTECT_BOT_H
#define GH_PROTECT_BOT_H

#include "core/common.h"

#include <stddef.h>
#include <stdint.h>

/* Suggested cut: a score at or above it gets the challenge. */
#define GH_BOT_SCORE_CHALLENGE 60

/* Reasons: bits of *reasons. */
#define GH_BOT_R_RATE (1u << 0)
#define GH_BOT_R_PATHS (1u << 1)
#define GH_BOT_R_NO_ASSETS (1u << 2)
#define GH_BOT_R_HEADERS (1u << 3)
#define GH_BOT_R_AUTOMATION_UA (1u << 4)
#define GH_BOT_R_JA4_MISMATCH (1u << 5)
#define GH_BOT_R__COUNT 6

/* Per-client state, owned by the caller; all-zero = a new client. Plain data (copy,
 * memset, store in shared memory as is). */
typedef struct {
    uint64_t win_start_ms; /* start of the current window (aligned to window_ms) */
    uint64_t paths[2];     /* linear-counting bitmap of page-path hashes, this window */
    uint32_t cur, prev;    /* requests in this window / the previous one (saturating) */
    uint16_t prev_paths;   /* distinct page paths estimated for the previous window */
    uint16_t pages, assets; /* decayed counts: halved at every window boundary */
    uint16_t reserved;
} gh_bot_state_t;

/* One request, as views into the request (nothing is kept). */
typedef struct {
    uint64_t now_ms; /* the loop's clock (any epoch, monotonic per client) */
    gh_str_t path;   /* request target in origin form: path, query optional */
    gh_str_t ua;     /* User-Agent value, empty when absent */
    gh_str_t ja4;    /* JA4 of the connection, empty for plain HTTP */
    unsigned has_accept : 1, has_accept_language : 1, has_accept_encoding : 1,
        has_sec_fetch : 1,  /* any Sec-Fetch-Site/Mode/Dest */
        has_sec_ch_ua : 1, has_cookie : 1, has_referer : 1,
        is_h2 : 1; /* has_cookie, has_referer, is_h2: reported but read by no rule today */
} gh_bot_obs_t;

typedef struct {
    uint32_t window_ms;     /* sliding window, default 30000 */
    double max_rate;        /* requests per second over the window, default 5 */
    uint32_t max_paths;     /* distinct page paths per window, default 20 */
    double max_page_ratio;  /* pages per asset, default 3 */
    uint32_t min_requests;  /* decayed pages + assets before no_assets counts, default 10 */
    uint64_t path_seed;     /* keys the path hash; set a random per-process value so a
                             * client cannot pick paths that collide (default 0) */
    /* Weights, 0..100 each (0 disables the signal). */
    uint8_t w_rate, w_paths, w_no_assets, w_headers, w_automation_ua, w_ja4;
} gh_bot_conf_t;

void gh_bot_conf_default(gh_bot_conf_t *c);

/* Updates st with this request and returns the score 0..100; *reasons (may be NULL)
 * gets the GH_BOT_R_* bits of the signals that fired. A clock that goes backwards is
 * treated as the current window. Never fails. */
int gh_bot_observe(gh_bot_state_t *st, const gh_bot_conf_t *c, const gh_bot_obs_t *o,
                   uint32_t *reasons);

/* "rate", "paths", "no_assets", "headers", "automation_ua", "ja4_mismatch" for one
 * GH_BOT_R_* bit; NULL for anything else. */
const char *gh_bot_reason_name(uint32_t bit);

/* The reasons as a comma-separated list ("paths,no_assets", "" for none) in out,
 * always NUL-terminated when cap > 0 (truncated at a name boundary). Returns the
 * length written. */
size_t gh_bot_reasons_format(uint32_t reasons, char *out, size_t cap);

/* 1 when path (query and fragment ignored) ends in one of the asset extensions above,
 * case-insensitive; 0 for a page. */
int gh_bot_is_asset(gh_str_t path);

#endif
