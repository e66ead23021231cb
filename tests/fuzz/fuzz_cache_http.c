/* fuzz_cache_http.c: libFuzzer target for the HTTP glue of the cache (src/cache/http.c,
 * and gh_cache_vary_values / gh_cobj_new of cache.c).
 *
 * Input: CTL control bytes, then text lines ('\n'): the first line is a query string,
 * each further line a header field "name:value" (at most MAXH). The fields are used
 * twice: raw (any bytes, every function called for memory safety only) and as the
 * h1 parser would hand them over (lines whose name is not a token or whose value has
 * a CTL other than HTAB are left out, values trimmed of OWS), with invariants that
 * trap (__builtin_trap) when broken:
 *  - gh_cache_key: deterministic; exactly its length fits (cap = len works, len - 1
 *    gives -1) and nothing is written past cap; the sorted mode gives the same key for
 *    every order of parameters with distinct names; ignore ignores the query; the
 *    parameters kept obey query_keep / query_drop;
 *  - gh_cache_range: -1, 0 or 1; 1 means cnt > 0 and off + cnt <= len; a plain
 *    "bytes=a-b" without If-Range agrees with a reference computation;
 *  - gh_cache_vary_values: never writes past cap, -1 exactly below its length, one
 *    "\n"-terminated record per Vary name ("0\n" when absent), Accept-* lowercased, the
 *    same when a field's lines are combined into one with ",", and idempotent: a
 *    normalised value fed back alone normalises to itself;
 *  - gh_cache_stored_head: lines "Name: value\r\n" only, a subsequence of the fields
 *    but for one Date line added when none was given; never a hop-by-hop, framing, Age,
 *    Connection-listed or private="..." field, nor Set-Cookie when stripping;
 *  - gh_cache_updated_head: lines only; the stored lines the 304 does not name are kept
 *    in order, every field of the 304 that may be stored is there;
 *  - gh_cache_tags: entries non-empty, NUL-terminated, without separators, at most
 *    GH_CACHE_MAX_TAGS, within cap, each found in a Cache-Tag / Surrogate-Key value;
 *  - gh_cache_not_modified: 0 or 1; 0 without If-None-Match and If-Modified-Since.
 *
 * RAW_HEAD_LAST_CR (on) also feeds raw stored heads ending in a bare CR, which
 * gh_cache_updated_head once read one byte past.
 *
 * UPDATED_HEAD_STRICT (on) adds two checks RFC 9111 3.2 asks for (both once failed): a
 * stored field the 304 repeats but that may not be updated (Content-Encoding...) stays,
 * and fields the 304's Connection names are not added. */
#include "cache/cache.h"
#include "cache/http.h"

#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

#ifndef UPDATED_HEAD_STRICT
#define UPDATED_HEAD_STRICT 1
#endif
#ifndef RAW_HEAD_LAST_CR /* also feed stored heads ending in a bare CR (an overread once) */
#define RAW_HEAD_LAST_CR 1
#endif

#define CTL 4
#define MAXH 40
#define GUARD 32
#define T0 1700000000LL

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int name_is(gh_str_t n, const char *lit) { return gh_str_caseeq_lit(n, lit); }

/* ---- buffers with guards: a byte written past cap traps ---- */

static char gbuf[16384 + GUARD];
static char *guarded(size_t cap)
{
    memset(gbuf, 0xA5, cap + GUARD);
    return gbuf;
}
static void guard_ok(size_t cap)
{
    for (size_t i = cap; i < cap + GUARD; i++)
        ASSERT((unsigned char)gbuf[i] == 0xA5);
}

/* ---- gh_cache_key ---- */

static char *keep_pats[] = {"a", "b*", "utm_*"};
static char *drop_pats[] = {"utm_*", "x"};
static char *key_hdrs[] = {"x-k", "Accept"};
static char *key_cks[] = {"c", "lang"};

static int pat_match(char *const *pats, int n, gh_str_t name)
{
    for (int i = 0; i < n; i++) {
        size_t l = strlen(pats[i]);
        if (l && pats[i][l - 1] == '*' ? name.n >= l - 1 && !memcmp(name.p, pats[i], l - 1)
                                       : name.n == l && !memcmp(name.p, pats[i], l))
            return 1;
    }
    return 0;
}

static int key_of(const gh_conf_route_t *rt, gh_h1_request_t *m, gh_str_t query, int https, char *out, size_t cap)
{
    m->query = query;
    return gh_cache_key(rt, m, https, out, cap);
}

static char key_a[GH_CACHE_KEY_MAX], key_b[GH_CACHE_KEY_MAX], qbuf[8192];

static void fuzz_key(const uint8_t *ctl, gh_str_t query, gh_h1_header_t *h, size_t n, int sane)
{
    static gh_conf_tenant_t tenant = {.name = "fz"};
    gh_conf_cache_t cc;
    memset(&cc, 0, sizeof cc);
    cc.query = ctl[0] % 3;
    cc.key_host = (ctl[0] >> 2) & 1;
    if ((ctl[0] >> 3) & 1)
        cc.query_keep = keep_pats, cc.nquery_keep = 3;
    if ((ctl[0] >> 4) & 1)
        cc.query_drop = drop_pats, cc.nquery_drop = 2;
    if ((ctl[0] >> 5) & 1)
        cc.key_headers = key_hdrs, cc.nkey_headers = 2;
    if ((ctl[0] >> 6) & 1)
        cc.key_cookies = key_cks, cc.nkey_cookies = 2;
    int https = ctl[0] >> 7;
    gh_conf_route_t rt = {.tenant = &tenant, .cache = &cc};
    gh_h1_request_t m;
    memset(&m, 0, sizeof m);
    m.path = GH_STR("/p");
    m.headers = h;
    m.nheaders = (uint16_t)n;
    const gh_h1_header_t *host = gh_h1_find(h, n, GH_STR("host"));
    m.host = host ? host->value : GH_STR("Fz.Example");

    int la = key_of(&rt, &m, query, https, key_a, sizeof key_a);
    int lb = key_of(&rt, &m, query, https, key_b, sizeof key_b);
    ASSERT(la == lb && la >= -1);
    if (la < 0)
        return;
    ASSERT(!memcmp(key_a, key_b, (size_t)la));
    ASSERT((size_t)la > 3 && !memcmp(key_a, "fz\n", 3));
    ASSERT(!memcmp(key_a + 3, https ? "https\n" : "http\n", https ? 6 : 5));
    /* exactly its length fits; nothing past cap */
    size_t caps[2] = {(size_t)la, la > 0 ? (size_t)la - 1 : 0};
    for (int k = 0; k < 2; k++) {
        char *g = guarded(caps[k]);
        int l = key_of(&rt, &m, query, https, g, caps[k]);
        guard_ok(caps[k]);
        if (k == 0)
            ASSERT(l == la && !memcmp(g, key_a, (size_t)la));
        else
            ASSERT(l == -1);
    }
    if (!sane)
        return;
    if (cc.query == GH_CQ_IGNORE) {
        int l = key_of(&rt, &m, GH_STR(""), https, key_b, sizeof key_b);
        ASSERT(l == la && !memcmp(key_a, key_b, (size_t)la));
    }
    /* the query line (the fifth) holds only parameters the patterns allow */
    const char *p = key_a, *end = key_a + la;
    for (int line = 0; line < 4; line++) {
        p = memchr(p, '\n', (size_t)(end - p));
        ASSERT(p);
        p++;
    }
    const char *qe = memchr(p, '\n', (size_t)(end - p));
    ASSERT(qe);
    while (p < qe) {
        const char *amp = memchr(p, '&', (size_t)(qe - p));
        gh_str_t seg = gh_str(p, (size_t)((amp ? amp : qe) - p));
        p = amp ? amp + 1 : qe;
        ASSERT(seg.n > 0);
        const char *eq = memchr(seg.p, '=', seg.n);
        gh_str_t name = gh_str(seg.p, eq ? (size_t)(eq - seg.p) : seg.n);
        if (cc.nquery_keep)
            ASSERT(pat_match(keep_pats, 3, name));
        if (cc.nquery_drop)
            ASSERT(!pat_match(drop_pats, 2, name));
    }
    /* sorted: any order of parameters with distinct names gives the same key */
    if (cc.query != GH_CQ_SORTED || query.n >= sizeof qbuf)
        return;
    gh_str_t segs[256];
    size_t ns = 0;
    p = query.p, end = query.p + query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t seg = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (!seg.n)
            continue;
        if (ns == 256)
            return;
        segs[ns++] = seg;
    }
    for (size_t i = 0; i < ns; i++) {
        const char *e1 = memchr(segs[i].p, '=', segs[i].n);
        gh_str_t n1 = gh_str(segs[i].p, e1 ? (size_t)(e1 - segs[i].p) : segs[i].n);
        for (size_t j = i + 1; j < ns; j++) {
            const char *e2 = memchr(segs[j].p, '=', segs[j].n);
            gh_str_t n2 = gh_str(segs[j].p, e2 ? (size_t)(e2 - segs[j].p) : segs[j].n);
            if (gh_str_eq(n1, n2))
                return;
        }
    }
    for (int perm = 0; perm < 2 && ns > 1; perm++) {
        size_t ql = 0, rot = (size_t)ctl[1] % ns;
        for (size_t i = 0; i < ns; i++) {
            size_t k = perm == 0 ? ns - 1 - i : (i + rot) % ns;
            if (ql)
                qbuf[ql++] = '&';
            memcpy(qbuf + ql, segs[k].p, segs[k].n);
            ql += segs[k].n;
        }
        int l = key_of(&rt, &m, gh_str(qbuf, ql), https, key_b, sizeof key_b);
        ASSERT(l == la && !memcmp(key_a, key_b, (size_t)la));
    }
}

/* ---- gh_cache_vary_values ---- */

static char vv_a[4096], vv_b[4096], join[8192];

static void fuzz_vary(gh_str_t vary, const gh_h1_header_t *h, size_t n, int sane)
{
    char *g = guarded(sizeof vv_a);
    int l = gh_cache_vary_values(vary, h, n, g, sizeof vv_a);
    guard_ok(sizeof vv_a);
    if (l < 0)
        return;
    memcpy(vv_a, g, (size_t)l);
    for (int k = 0; k < 2; k++) {
        size_t cap = k == 0 ? (size_t)l : (l ? (size_t)l - 1 : 0);
        g = guarded(cap);
        int r = gh_cache_vary_values(vary, h, n, g, cap);
        guard_ok(cap);
        ASSERT(k == 0 ? (r == l && !memcmp(g, vv_a, (size_t)l)) : (l == 0 ? r == 0 : r == -1));
    }
    /* one record per name */
    size_t names = vary.n ? 1 : 0;
    for (size_t i = 0; i < vary.n; i++)
        names += vary.p[i] == ',';
    if (!sane) {
        return;
    }
    const char *p = vv_a, *end = vv_a + l, *np = vary.p, *nend = vary.p + vary.n;
    size_t recs = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ASSERT(nl);
        const char *comma = memchr(np, ',', (size_t)(nend - np));
        gh_str_t name = gh_str(np, (size_t)((comma ? comma : nend) - np));
        np = comma ? comma + 1 : nend;
        ASSERT(*p == '0' || *p == '1');
        int present = gh_h1_find(h, n, name) != NULL;
        ASSERT(present == (*p == '1'));
        if (*p == '0')
            ASSERT(nl == p + 1);
        gh_str_t v = gh_str(p + 1, (size_t)(nl - p - 1));
        int accept = name.n >= 6 && !strncasecmp(name.p, "accept", 6);
        if (accept)
            for (size_t i = 0; i < v.n; i++)
                ASSERT(!(v.p[i] >= 'A' && v.p[i] <= 'Z'));
        if (present && name.n) {
            /* idempotent: the normalised value alone normalises to itself */
            gh_h1_header_t one = {name, v};
            int r = gh_cache_vary_values(name, &one, 1, vv_b, sizeof vv_b);
            ASSERT(r == (int)v.n + 2 && vv_b[0] == '1' && !memcmp(vv_b + 1, v.p, v.n) && vv_b[r - 1] == '\n');
            /* the field's lines combined with "," into one line: the same */
            size_t jl = 0, lines = 0;
            int ok = 1;
            for (size_t i = 0; i < n && ok; i++) {
                if (!gh_str_caseeq(h[i].name, name))
                    continue;
                if (jl + h[i].value.n + 1 > sizeof join) {
                    ok = 0;
                    break;
                }
                if (lines++)
                    join[jl++] = ',';
                memcpy(join + jl, h[i].value.p, h[i].value.n);
                jl += h[i].value.n;
            }
            if (ok) {
                gh_h1_header_t comb = {name, gh_str(join, jl)};
                r = gh_cache_vary_values(name, &comb, 1, vv_b, sizeof vv_b);
                ASSERT(r == (int)v.n + 2 && !memcmp(vv_b + 1, v.p, v.n));
            }
        }
        recs++;
        p = nl + 1;
    }
    ASSERT(recs == names);
}

/* ---- stored head, updated head ---- */

static int never_stored(gh_str_t nm)
{
    static const char *no[] = {"connection",        "keep-alive",          "proxy-connection", "te",
                               "transfer-encoding", "upgrade",             "trailer",          "content-length",
                               "age",               "proxy-authenticate",  "proxy-authorization"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (name_is(nm, no[i]))
            return 1;
    return 0;
}

typedef struct {
    gh_str_t name, value;
} line_t;

/* Split "Name: value\r\n" lines; traps on anything else. */
static size_t lines_of(const char *p, size_t len, line_t *out, size_t max)
{
    const char *end = p + len;
    size_t n = 0;
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        ASSERT(cr && cr + 1 < end && cr[1] == '\n');
        const char *colon = memchr(p, ':', (size_t)(cr - p));
        ASSERT(colon && colon > p && colon + 2 <= cr && colon[1] == ' ');
        for (const char *q = p; q < colon; q++)
            ASSERT(is_tchar((unsigned char)*q));
        for (const char *q = colon + 2; q < cr; q++)
            ASSERT(*q != '\n' && *q != '\0');
        ASSERT(n < max);
        out[n].name = gh_str(p, (size_t)(colon - p));
        out[n].value = gh_str(colon + 2, (size_t)(cr - colon - 2));
        n++;
        p = cr + 2;
    }
    return n;
}

static int conn_listed(const gh_h1_header_t *h, size_t n, gh_str_t nm)
{
    for (size_t k = 0; k < n; k++)
        if (name_is(h[k].name, "connection") && gh_h1_has_token(h[k].value, nm))
            return 1;
    return 0;
}

static char head_a[16384], head_b[16384];

static int fuzz_stored_head(const uint8_t *ctl, const gh_h1_header_t *h, size_t n, const gh_cc_t *cc, int sane)
{
    int strip = ctl[2] & 1;
    size_t need = 64;
    for (size_t i = 0; i < n; i++)
        need += h[i].name.n + h[i].value.n + 4;
    if (need > sizeof head_a)
        return -1;
    char *g = guarded(need);
    int l = gh_cache_stored_head(h, n, cc, strip, T0, g, need);
    guard_ok(need);
    ASSERT(l >= 0);
    memcpy(head_a, g, (size_t)l);
    if (l) {
        g = guarded((size_t)l - 1);
        ASSERT(gh_cache_stored_head(h, n, cc, strip, T0, g, (size_t)l - 1) == -1);
        guard_ok((size_t)l - 1);
    }
    if (!sane)
        return l;
    static line_t ls[MAXH + 2];
    size_t nl = lines_of(head_a, (size_t)l, ls, MAXH + 2);
    int dates = 0;
    size_t k = 0; /* subsequence of the input */
    for (size_t i = 0; i < nl; i++) {
        ASSERT(!never_stored(ls[i].name));
        ASSERT(!(strip && name_is(ls[i].name, "set-cookie")));
        ASSERT(!conn_listed(h, n, ls[i].name) || name_is(ls[i].name, "date")); /* ours, when theirs was not kept */
        if (cc->flags & GH_CC_PRIVATE_FIELDS)
            ASSERT(!gh_h1_has_token(cc->private_fields, ls[i].name));
        if (name_is(ls[i].name, "date"))
            dates++;
        while (k < n && !(gh_str_eq(h[k].name, ls[i].name) && gh_str_eq(h[k].value, ls[i].value)))
            k++;
        if (k < n) {
            k++;
        } else { /* not from the input: only the Date added last, when none of the input's was
                  * kept (none given, or theirs named by Connection or private="...") */
            ASSERT(i == nl - 1 && dates == 1 && gh_str_eq(ls[i].name, GH_STR("Date")));
            ASSERT(ls[i].value.n == 29 && gh_http_date(ls[i].value) == T0);
        }
    }
    ASSERT(dates >= 1);
    return l;
}

static int excepted_304(gh_str_t nm)
{
    return never_stored(nm) || name_is(nm, "content-encoding") || name_is(nm, "content-range") ||
           name_is(nm, "set-cookie"); /* a 304 answers one client: its cookies are not shared */
}

/* A field the 304's own private="..." names (not stored, so not an update either). */
static int private_in_304(const gh_h1_header_t *u, size_t nu, gh_str_t nm)
{
    gh_cc_t cc;
    gh_cc_init(&cc);
    for (size_t i = 0; i < nu; i++)
        if (name_is(u[i].name, "cache-control"))
            gh_cc_parse(&cc, u[i].value);
    return (cc.flags & GH_CC_PRIVATE_FIELDS) && cc.private_fields.n && gh_h1_has_token(cc.private_fields, nm);
}

static void fuzz_updated_head(const uint8_t *ctl, gh_str_t stored, const gh_h1_header_t *h, size_t n, int sane)
{
    /* the 304 carries the fields selected by ctl[3]'s bits (cycled) */
    gh_h1_header_t u[MAXH];
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if ((ctl[3] >> (i % 8)) & 1)
            u[nu++] = h[i];
    size_t need = stored.n + 16;
    for (size_t i = 0; i < nu; i++)
        need += u[i].name.n + u[i].value.n + 4;
    if (need > sizeof head_b)
        return;
    char *g = guarded(need);
    int l = gh_cache_updated_head(stored, u, nu, g, need);
    guard_ok(need);
    if (!sane)
        return;
    ASSERT(l >= 0);
    memcpy(head_b, g, (size_t)l);
    if (l) {
        g = guarded((size_t)l - 1);
        ASSERT(gh_cache_updated_head(stored, u, nu, g, (size_t)l - 1) == -1);
        guard_ok((size_t)l - 1);
    }
    static line_t st[MAXH + 2], out[2 * MAXH + 2];
    size_t ns = lines_of(stored.p, stored.n, st, MAXH + 2);
    size_t no = lines_of(head_b, (size_t)l, out, 2 * MAXH + 2);
    size_t k = 0;
    for (size_t i = 0; i < ns; i++) {
        int named = gh_h1_find(u, nu, st[i].name) != NULL;
        int keep = !named;
#if UPDATED_HEAD_STRICT
        /* named by the 304 but not updatable: the stored line stays */
        int updatable = 0;
        for (size_t j = 0; j < nu; j++)
            if (gh_str_caseeq(u[j].name, st[i].name) && !excepted_304(u[j].name) && !conn_listed(u, nu, u[j].name) &&
                !private_in_304(u, nu, u[j].name))
                updatable = 1;
        keep = !updatable;
#endif
        if (!keep)
            continue;
        while (k < no && !(gh_str_eq(out[k].name, st[i].name) && gh_str_eq(out[k].value, st[i].value)))
            k++;
        ASSERT(k < no);
        k++;
    }
    for (size_t j = 0; j < nu; j++) {
        int found = 0;
        for (size_t i = 0; i < no && !found; i++)
            found = gh_str_eq(out[i].name, u[j].name) && gh_str_eq(out[i].value, u[j].value);
        if (!excepted_304(u[j].name) && !(UPDATED_HEAD_STRICT && conn_listed(u, nu, u[j].name)) &&
            !private_in_304(u, nu, u[j].name))
            ASSERT(found);
    }
    for (size_t i = 0; i < no; i++) {
        ASSERT(!never_stored(out[i].name));
#if UPDATED_HEAD_STRICT
        if (conn_listed(u, nu, out[i].name)) { /* only as stored */
            int in_stored = 0;
            for (size_t s = 0; s < ns && !in_stored; s++)
                in_stored = gh_str_eq(st[s].name, out[i].name) && gh_str_eq(st[s].value, out[i].value);
            ASSERT(in_stored);
        }
#endif
    }
}

/* ---- tags ---- */

static void fuzz_tags(const uint8_t *ctl, const gh_h1_header_t *h, size_t n, int sane)
{
    size_t cap = ctl[1] & 1 ? 4096 : (size_t)ctl[1] / 4;
    char *g = guarded(cap);
    int l = gh_cache_tags(h, n, g, cap);
    guard_ok(cap);
    ASSERT(l >= 0 && (size_t)l <= cap);
    ASSERT(l == 0 || g[l - 1] == 0);
    unsigned count = 0;
    const char *p = g, *end = g + l;
    while (sane && p < end) { /* raw values may hold NULs: bounds only */
        size_t tl = strlen(p);
        ASSERT(tl > 0 && p + tl < end);
        ASSERT(!memchr(p, ' ', tl) && !memchr(p, '\t', tl) && !memchr(p, ',', tl));
        int found = 0;
        for (size_t i = 0; i < n && !found; i++)
            if (name_is(h[i].name, "cache-tag") || name_is(h[i].name, "surrogate-key"))
                found = memmem(h[i].value.p, h[i].value.n, p, tl) != NULL;
        ASSERT(found);
        count++;
        p += tl + 1;
    }
    ASSERT(count <= GH_CACHE_MAX_TAGS);
}

/* ---- conditionals and Range ---- */

static int digits(const char *p, const char *e, uint64_t *v)
{
    if (p == e || e - p > 18)
        return 0;
    uint64_t x = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return 1;
}

static void fuzz_conditionals(const uint8_t *ctl, gh_str_t head, const gh_h1_header_t *h, size_t n, int sane)
{
    gh_cobj_parts_t parts = {.key = GH_STR("k"), .tenant = GH_STR("t"), .host = GH_STR("h"), .path = GH_STR("/"),
                             .head = head};
    gh_cobj_t *o = gh_cobj_new(&parts);
    if (!o)
        return;
    o->status = ctl[2] & 2 ? 200 : 404;
    int nm = gh_cache_not_modified(h, n, o);
    ASSERT(nm == 0 || nm == 1);
    if (!gh_h1_find(h, n, GH_STR("if-none-match")) && !gh_h1_find(h, n, GH_STR("if-modified-since")))
        ASSERT(nm == 0);
    static const uint64_t lens[] = {0, 1, 100, 4096, 1ull << 40, UINT64_MAX};
    uint64_t len = (ctl[2] >> 2) % 7 == 6 ? (uint64_t)ctl[3] * 3 : lens[(ctl[2] >> 2) % 7];
    uint64_t off = 7, cnt = 7;
    int r = gh_cache_range(h, n, o, len, &off, &cnt);
    ASSERT(r >= -1 && r <= 1);
    if (r == 1)
        ASSERT(cnt > 0 && off < len && cnt <= len - off);
    const gh_h1_header_t *rg = gh_h1_find(h, n, GH_STR("range"));
    if (!rg || o->status != 200)
        ASSERT(r == 0);
    /* reference: "bytes=a-b" / "bytes=a-" / "bytes=-s", digits only, no If-Range */
    if (sane && rg && o->status == 200 && !gh_h1_find(h, n, GH_STR("if-range")) && rg->value.n > 6 &&
        !memcmp(rg->value.p, "bytes=", 6)) {
        const char *s = rg->value.p + 6, *e = rg->value.p + rg->value.n;
        const char *dash = memchr(s, '-', (size_t)(e - s));
        uint64_t a, b;
        if (dash && dash == s && digits(dash + 1, e, &b)) {
            if (!b || !len)
                ASSERT(r == -1);
            else
                ASSERT(r == 1 && cnt == GH_MIN(b, len) && off == len - cnt);
        } else if (dash && digits(s, dash, &a) && (dash + 1 == e || digits(dash + 1, e, &b))) {
            if (dash + 1 == e)
                b = UINT64_MAX;
            if (b < a)
                ASSERT(r == 0);
            else if (a >= len)
                ASSERT(r == -1);
            else
                ASSERT(r == 1 && off == a && cnt == GH_MIN(b, len - 1) - a + 1);
        }
    }
    gh_cobj_free(o);
}

/* ---- driver ---- */

static gh_h1_header_t raw[MAXH], sane[MAXH];

static gh_str_t trim(gh_str_t v)
{
    while (v.n && (v.p[0] == ' ' || v.p[0] == '\t'))
        v.p++, v.n--;
    while (v.n && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t'))
        v.n--;
    return v;
}

static int valid_field(gh_str_t name, gh_str_t value)
{
    if (!name.n)
        return 0;
    for (size_t i = 0; i < name.n; i++)
        if (!is_tchar((unsigned char)name.p[i]))
            return 0;
    for (size_t i = 0; i < value.n; i++) {
        unsigned char c = (unsigned char)value.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        gh_cache_setup(1 << 20, 1 << 18);
        ready = 1;
    }
    if (size < CTL)
        return 0;
    const uint8_t *ctl = data;
    const char *p = (const char *)data + CTL, *end = (const char *)data + size;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    gh_str_t query = gh_str(p, (size_t)((nl ? nl : end) - p));
    p = nl ? nl + 1 : end;
    size_t nraw = 0, nsane = 0;
    while (p < end && nraw < MAXH) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        gh_str_t name = gh_str(p, (size_t)((colon ? colon : le) - p));
        gh_str_t value = colon ? gh_str(colon + 1, (size_t)(le - colon - 1)) : GH_STR("");
        raw[nraw++] = (gh_h1_header_t){name, value};
        gh_str_t tv = trim(value);
        if (valid_field(name, tv))
            sane[nsane++] = (gh_h1_header_t){name, tv};
        p = nl ? nl + 1 : end;
    }

    for (int pass = 0; pass < 2; pass++) {
        int ok = pass == 1;
        gh_h1_header_t *h = ok ? sane : raw;
        size_t n = ok ? nsane : nraw;
        gh_str_t q = query;
        if (ok)
            for (size_t i = 0; i < q.n; i++)
                if ((unsigned char)q.p[i] <= 0x20 || q.p[i] == 0x7f || q.p[i] == '#') {
                    q.n = i; /* what a request-target could carry */
                    break;
                }
        fuzz_key(ctl, q, h, n, ok);

        gh_resp_facts_t rf;
        char vnames[1024];
        int vlen = -1;
        gh_cache_resp_facts(h, n, 200, (ctl[2] & 4) ? "Fz-Cache-Control" : NULL, &rf, vnames, sizeof vnames, &vlen);
        gh_req_facts_t qf;
        gh_cache_req_facts(h, n, GH_M_GET, &qf);
        gh_str_t vary = vlen > 0 ? gh_str(vnames, (size_t)vlen) : GH_STR("accept-encoding,x-k");
        fuzz_vary(vary, h, n, ok);
        if (!ok) /* any bytes as a Vary list too */
            fuzz_vary(query, h, n, 0);

        int hl = fuzz_stored_head(ctl, h, n, &rf.cc, ok);
        if (hl >= 0) {
            char stored[16384];
            memcpy(stored, head_a, (size_t)hl);
            fuzz_updated_head(ctl, gh_str(stored, (size_t)hl), h, n, ok);
            fuzz_conditionals(ctl, gh_str(stored, (size_t)hl), h, n, ok);
        }
        if (!ok) { /* any bytes as a stored head (but a last bare CR: gh_cache_updated_head
                    * reads one byte past a head ending in "\r", http.c APPEND(p, eol + 2 - p);
                    * heads stored by the cache always end in "\r\n") */
            gh_str_t sh = query;
            if (!RAW_HEAD_LAST_CR && sh.n && sh.p[sh.n - 1] == '\r')
                sh.n--;
            fuzz_updated_head(ctl, sh, h, n, 0);
            fuzz_conditionals(ctl, query, h, n, 0);
        }
        fuzz_tags(ctl, h, n, ok);
    }
    return 0;
}
