/* bot.c: see bot.h.
 *
 * One pass per request: lower-case the User-Agent once into a stack buffer (its first
 * UA_SCAN bytes: a name hidden past them buys an automation client nothing it could
 * not get by sending no name), classify it (automation tool, browser family and major
 * version, or neither), then run the header and JA4 rule tables, roll the windows and
 * add this request, and sum the weights. The rule tables are the place to add a rule. */
#include "protect/bot.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#define UA_SCAN 512
#define BITMAP_BITS 128

_Static_assert(sizeof(gh_bot_state_t) <= 64, "the caller's table slot is 64 bytes");

enum family { FAM_NONE = 0, FAM_CHROMIUM, FAM_FIREFOX, FAM_SAFARI, FAM__COUNT };

void gh_bot_conf_default(gh_bot_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    c->window_ms = 30000;
    c->max_rate = 5.0;
    c->max_paths = 20;
    c->max_page_ratio = 3.0;
    c->min_requests = 10;
    c->w_rate = 30;
    c->w_paths = 40;
    c->w_no_assets = 30;
    c->w_headers = 35;
    c->w_automation_ua = 80;
    c->w_ja4 = 45;
}

static const char *const reason_names[GH_BOT_R__COUNT] = {
    "rate", "paths", "no_assets", "headers", "automation_ua", "ja4_mismatch",
};

const char *gh_bot_reason_name(uint32_t bit)
{
    if (bit == 0 || (bit & (bit - 1)))
        return NULL;
    int i = __builtin_ctz(bit);
    return i < GH_BOT_R__COUNT ? reason_names[i] : NULL;
}

size_t gh_bot_reasons_format(uint32_t reasons, char *out, size_t cap)
{
    size_t n = 0;
    if (!cap)
        return 0;
    out[0] = 0;
    for (int i = 0; i < GH_BOT_R__COUNT; i++) {
        if (!(reasons & (1u << i)))
            continue;
        size_t l = strlen(reason_names[i]);
        if (n + (n ? 1 : 0) + l + 1 > cap)
            break;
        if (n)
            out[n++] = ',';
        memcpy(out + n, reason_names[i], l);
        n += l;
        out[n] = 0;
    }
    return n;
}

/* ---- paths ---------------------------------------------------------------------- */

static const char *const asset_exts[] = {
    "css", "js",   "mjs", "png",  "jpg",   "jpeg", "gif", "svg", "ico", "webp", "avif",
    "bmp", "woff", "woff2", "ttf", "otf", "eot",  "map", "mp4", "webm", "mp3", "ogg",
    "wav", "m4a",  "wasm",
};

static size_t path_end(gh_str_t p)
{
    for (size_t i = 0; i < p.n; i++)
        if (p.p[i] == '?' || p.p[i] == '#')
            return i;
    return p.n;
}

int gh_bot_is_asset(gh_str_t path)
{
    size_t end = path_end(path), dot = end;
    for (size_t i = end; i-- > 0;) {
        if (path.p[i] == '/')
            break;
        if (path.p[i] == '.') {
            dot = i;
            break;
        }
    }
    size_t el = end - dot;
    if (dot == end || el < 2 || el > 6)
        return 0;
    char ext[6];
    for (size_t i = 1; i < el; i++) {
        char ch = path.p[dot + i];
        ext[i - 1] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    for (size_t k = 0; k < GH_ARRAY_LEN(asset_exts); k++)
        if (strlen(asset_exts[k]) == el - 1 && !memcmp(asset_exts[k], ext, el - 1))
            return 1;
    return 0;
}

/* Keyed FNV-1a with a splitmix finaliser: the low bits pick the bitmap position. */
static uint64_t path_hash(gh_str_t p, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    size_t end = p.n;
    for (size_t i = 0; i < p.n; i++)
        if (p.p[i] == '#') {
            end = i;
            break;
        }
    for (size_t i = 0; i < end; i++)
        h = (h ^ (uint8_t)p.p[i]) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

/* Linear counting (Whang et al. 1990): n ~ -m ln(zero bits / m); a full bitmap
 * answers m ln m (~621), the most it can tell. */
static double distinct_estimate(const uint64_t bm[2])
{
    int ones = __builtin_popcountll(bm[0]) + __builtin_popcountll(bm[1]);
    int zeros = BITMAP_BITS - ones;
    if (zeros == 0)
        zeros = 1;
    return BITMAP_BITS * log((double)BITMAP_BITS / zeros);
}

/* ---- window --------------------------------------------------------------------- */

static void roll(gh_bot_state_t *st, uint64_t now, uint64_t w)
{
    uint64_t ws = now - now % w;
    if (ws <= st->win_start_ms)
        return; /* same window, or a clock that went backwards */
    uint64_t k = (ws - st->win_start_ms) / w;
    if (k == 1) {
        st->prev = st->cur;
        double d = distinct_estimate(st->paths) + 0.5;
        st->prev_paths = (uint16_t)(d > 65535 ? 65535 : d);
    } else {
        st->prev = 0;
        st->prev_paths = 0;
    }
    st->cur = 0;
    st->paths[0] = st->paths[1] = 0;
    unsigned sh = k > 16 ? 16 : (unsigned)k;
    st->pages = (uint16_t)(st->pages >> sh);
    st->assets = (uint16_t)(st->assets >> sh);
    st->win_start_ms = ws;
}

/* Half the weight at the limit, growing linearly to the full weight at twice it. */
static double graded(double x, double limit, unsigned w)
{
    if (limit <= 0 || x <= limit)
        return 0;
    return w * GH_MIN(1.0, x / (2 * limit));
}

/* ---- user agent ----------------------------------------------------------------- */

/* One table of lower-case needles, found in one scan of the User-Agent: the names of
 * HTTP libraries and automation tools, and the browser product tokens whose version
 * the rules read. */
enum { TOK_AUTOMATION = 0, TOK_FIREFOX, TOK_CHROME, TOK_SAFARI, TOK_VERSION, TOK__COUNT };

static const struct needle {
    const char *s;
    int kind;
} needles[] = {
    {"curl/", 0},          {"wget/", 0},       {"python-requests", 0}, {"python-urllib", 0},
    {"python-httpx", 0},   {"aiohttp", 0},     {"go-http-client", 0},  {"java/", 0},
    {"okhttp", 0},         {"httpclient", 0},  {"libwww-perl", 0},     {"lwp-", 0},
    {"scrapy", 0},         {"headlesschrome", 0}, {"phantomjs", 0},    {"node-fetch", 0},
    {"axios/", 0},         {"undici", 0},      {"guzzlehttp", 0},      {"httpie", 0},
    {"postmanruntime", 0}, {"libcurl", 0},     {"winhttp", 0},         {"powershell", 0},
    {"mechanize", 0},      {"ruby", 0},        {"dart:io", 0},         {"crawler", 0},
    {"spider", 0},         {"scraper", 0},
    {"firefox/", TOK_FIREFOX}, {"chrome/", TOK_CHROME}, {"safari/", TOK_SAFARI},
    {"version/", TOK_VERSION},
};
_Static_assert(GH_ARRAY_LEN(needles) <= 64, "one bit per needle");

/* The needles by first byte, so the scan tries at each position only the needles that
 * start there (one memmem per needle costs ~2 us for a browser's User-Agent). */
static pthread_once_t needles_once = PTHREAD_ONCE_INIT;
static uint64_t needles_by_first[256];
static uint8_t needle_len[GH_ARRAY_LEN(needles)];

static void needles_init(void)
{
    for (size_t k = 0; k < GH_ARRAY_LEN(needles); k++) {
        needles_by_first[(uint8_t)needles[k].s[0]] |= 1ull << k;
        needle_len[k] = (uint8_t)strlen(needles[k].s);
    }
}

typedef struct {
    int automation;
    int family;
    unsigned version; /* major; 0 when not given */
} ua_t;

static unsigned major_at(const char *s, size_t n, size_t i)
{
    unsigned v = 0;
    for (int k = 0; k < 5 && i < n && s[i] >= '0' && s[i] <= '9'; k++, i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    return v;
}

static ua_t classify_ua(gh_str_t ua)
{
    ua_t r = {0, FAM_NONE, 0};
    if (ua.n == 0) {
        r.automation = 1;
        return r;
    }
    char low[UA_SCAN];
    size_t n = GH_MIN(ua.n, sizeof(low));
    for (size_t i = 0; i < n; i++) {
        char ch = ua.p[i];
        low[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    pthread_once(&needles_once, needles_init);
    size_t at[TOK__COUNT] = {0}; /* end of each token's first occurrence, 0 = absent */
    for (size_t i = 0; i < n; i++) {
        uint64_t m = needles_by_first[(uint8_t)low[i]];
        while (m) {
            int k = __builtin_ctzll(m);
            m &= m - 1;
            size_t l = needle_len[k];
            if (l <= n - i && low[i + 1] == needles[k].s[1] && !memcmp(low + i, needles[k].s, l) &&
                !at[needles[k].kind])
                at[needles[k].kind] = i + l;
        }
    }
    r.automation = at[TOK_AUTOMATION] != 0;
    if (n < 11 || memcmp(low, "mozilla/5.0", 11) != 0)
        return r;
    if (at[TOK_FIREFOX]) {
        r.family = FAM_FIREFOX;
        r.version = major_at(low, n, at[TOK_FIREFOX]);
    } else if (at[TOK_CHROME]) {
        r.family = FAM_CHROMIUM;
        r.version = major_at(low, n, at[TOK_CHROME]);
    } else if (at[TOK_SAFARI]) {
        /* Safari's own version is in Version/; iOS Chrome/Firefox/Edge (WebKit) have
         * none and keep version 0: only the version-free rules apply to them. */
        r.family = FAM_SAFARI;
        r.version = at[TOK_VERSION] ? major_at(low, n, at[TOK_VERSION]) : 0;
    }
    return r;
}

/* ---- header rules --------------------------------------------------------------- */

enum { H_ACCEPT = 1, H_LANG = 2, H_ENC = 4, H_FETCH = 8, H_CHUA = 16 };

static const struct header_rule {
    int family; /* FAM_NONE: any browser */
    unsigned min_version;
    int tls_only; /* Sec-Fetch-* and client hints go to secure origins only */
    unsigned need;
} header_rules[] = {
    {FAM_NONE, 0, 0, H_ACCEPT | H_LANG | H_ENC},
    {FAM_CHROMIUM, 89, 1, H_FETCH | H_CHUA}, /* Sec-CH-UA by default since 89 */
    {FAM_FIREFOX, 90, 1, H_FETCH},
    {FAM_SAFARI, 17, 1, H_FETCH}, /* since 16.4 */
};

static int headers_suspicious(const ua_t *u, const gh_bot_obs_t *o)
{
    unsigned have = (o->has_accept ? H_ACCEPT : 0) | (o->has_accept_language ? H_LANG : 0) |
                    (o->has_accept_encoding ? H_ENC : 0) | (o->has_sec_fetch ? H_FETCH : 0) |
                    (o->has_sec_ch_ua ? H_CHUA : 0);
    int tls = o->ja4.n > 0;
    for (size_t i = 0; i < GH_ARRAY_LEN(header_rules); i++) {
        const struct header_rule *r = &header_rules[i];
        if (r->family != FAM_NONE && r->family != u->family)
            continue;
        if (u->version < r->min_version || (r->tls_only && !tls))
            continue;
        if ((have & r->need) != r->need)
            return 1;
    }
    return 0;
}

/* ---- JA4 rules ------------------------------------------------------------------ */

typedef struct {
    char proto;        /* 't' or 'q' */
    char ver[2];       /* "13", "12", ... */
    unsigned ciphers;  /* count, capped at 99 by JA4 */
    char alpn[2];      /* first and last character of the first ALPN value, "00" none */
    const char *chash; /* 12 hex digits, or NULL when the string stops after part a */
} ja4v_t;

static int ja4_parse(gh_str_t s, ja4v_t *j)
{
    if (s.n < 10 || (s.p[0] != 't' && s.p[0] != 'q'))
        return 0;
    for (int i = 4; i < 8; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return 0;
    j->proto = s.p[0];
    j->ver[0] = s.p[1], j->ver[1] = s.p[2];
    j->ciphers = (unsigned)(s.p[4] - '0') * 10 + (unsigned)(s.p[5] - '0');
    j->alpn[0] = s.p[8], j->alpn[1] = s.p[9];
    j->chash = (s.n >= 23 && s.p[10] == '_') ? s.p + 11 : NULL;
    return 1;
}

static int no_tls13(const ja4v_t *j) { return !(j->ver[0] == '1' && j->ver[1] == '3'); }

static int no_h2_first(const ja4v_t *j)
{
    char want = j->proto == 'q' ? '3' : '2';
    return !(j->alpn[0] == 'h' && j->alpn[1] == want);
}

static int many_ciphers(const ja4v_t *j) { return j->ciphers > 24; }

/* Cipher-suite hashes (JA4 part b) of TLS libraries' default lists. */
static const char *const library_chash[] = {
    "e8f1e7e78f70", /* OpenSSL 3.0 defaults: curl, Python ssl, s_client (tests/unit/data) */
    "d943125447b4", /* the same list capped at TLS 1.2 (curl --tls-max 1.2) */
    "c7886603b240", /* python-requests 2.28 / urllib3 on OpenSSL 3.0 (captured, Debian 12) */
    "3c41e4bed497", /* Python ssl capped at TLS 1.2 (tests/unit/data) */
    "723694b0fccc", /* GnuTLS 3.7 defaults: wget (captured, Debian 12) */
    "a33745022dd6", /* Node.js 20 https and fetch (captured, Debian 12) */
    "9dc949149365", /* Go crypto/tls (FoxIO ja4plus-mapping.csv) */
    "85036bcba153", /* Python (FoxIO ja4plus-mapping.csv) */
};

static int library_ciphers(const ja4v_t *j)
{
    if (!j->chash)
        return 0;
    for (size_t i = 0; i < GH_ARRAY_LEN(library_chash); i++)
        if (!memcmp(j->chash, library_chash[i], 12))
            return 1;
    return 0;
}

/* A rule applies to a claimed browser from min_version[family] on (UINT16_MAX: never). */
static const struct ja4_rule {
    int (*hit)(const ja4v_t *j);
    uint16_t min_version[FAM__COUNT];
} ja4_rules[] = {
    {no_tls13, {UINT16_MAX, 70, 63, 13}},
    {no_h2_first, {UINT16_MAX, 0, 0, 0}},
    {many_ciphers, {UINT16_MAX, 0, 0, 0}},
    {library_ciphers, {UINT16_MAX, 0, 0, 0}},
};

static int ja4_mismatch(const ua_t *u, gh_str_t ja4)
{
    ja4v_t j;
    if (u->family == FAM_NONE || !ja4_parse(ja4, &j))
        return 0;
    for (size_t i = 0; i < GH_ARRAY_LEN(ja4_rules); i++)
        if (u->version >= ja4_rules[i].min_version[u->family] && ja4_rules[i].hit(&j))
            return 1;
    return 0;
}

/* ---- the scorer ----------------------------------------------------------------- */

int gh_bot_observe(gh_bot_state_t *st, const gh_bot_conf_t *c, const gh_bot_obs_t *o,
                   uint32_t *reasons)
{
    uint64_t w = c->window_ms ? c->window_ms : 30000;
    uint32_t r = 0;
    double score = 0;

    roll(st, o->now_ms, w);
    if (st->cur < UINT32_MAX)
        st->cur++;
    if (gh_bot_is_asset(o->path)) {
        if (st->assets < UINT16_MAX)
            st->assets++;
    } else {
        if (st->pages < UINT16_MAX)
            st->pages++;
        uint64_t h = path_hash(o->path, c->path_seed);
        st->paths[(h >> 6) & 1] |= 1ull << (h & 63);
    }

    /* The share of the previous window still inside the sliding window. */
    uint64_t el = o->now_ms > st->win_start_ms ? o->now_ms - st->win_start_ms : 0;
    double keep = el >= w ? 0 : (double)(w - el) / (double)w;

    double rate = (st->prev * keep + st->cur) * 1000.0 / (double)w;
    double s = graded(rate, c->max_rate, c->w_rate);
    if (s > 0)
        r |= GH_BOT_R_RATE, score += s;

    double paths = st->prev_paths * keep + distinct_estimate(st->paths);
    s = graded(paths, c->max_paths, c->w_paths);
    if (s > 0)
        r |= GH_BOT_R_PATHS, score += s;

    if ((uint32_t)st->pages + st->assets >= c->min_requests &&
        st->pages > c->max_page_ratio * st->assets && c->w_no_assets)
        r |= GH_BOT_R_NO_ASSETS, score += c->w_no_assets;

    ua_t u = classify_ua(o->ua);
    if (u.automation && c->w_automation_ua)
        r |= GH_BOT_R_AUTOMATION_UA, score += c->w_automation_ua;
    if (u.family != FAM_NONE && headers_suspicious(&u, o) && c->w_headers)
        r |= GH_BOT_R_HEADERS, score += c->w_headers;
    if (ja4_mismatch(&u, o->ja4) && c->w_ja4)
        r |= GH_BOT_R_JA4_MISMATCH, score += c->w_ja4;

    if (reasons)
        *reasons = r;
    int out = (int)(score + 0.5);
    return out > 100 ? 100 : out;
}
