/* http.c: see http.h. */
#include "cache/http.h"

#include <stdio.h>
#include <stdlib.h>

#define APPEND(p, n)                                  \
    do {                                              \
        if (len + (n) > cap)                          \
            return -1;                                \
        memcpy(out + len, (p), (n));                  \
        len += (n);                                   \
    } while (0)
#define APPENDC(ch)                                   \
    do {                                              \
        if (len + 1 > cap)                            \
            return -1;                                \
        out[len++] = (ch);                            \
    } while (0)

static int name_matches(char *const *pats, uint32_t n, gh_str_t name)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(pats[i]);
        if (l && pats[i][l - 1] == '*') {
            if (name.n >= l - 1 && !memcmp(name.p, pats[i], l - 1))
                return 1;
        } else if (name.n == l && !memcmp(name.p, pats[i], l)) {
            return 1;
        }
    }
    return 0;
}

typedef struct {
    gh_str_t all, name;
} param_t;

static int param_cmp(const void *a, const void *b)
{
    const param_t *x = a, *y = b;
    size_t n = GH_MIN(x->name.n, y->name.n);
    int c = memcmp(x->name.p, y->name.p, n);
    if (c)
        return c;
    if (x->name.n != y->name.n)
        return x->name.n < y->name.n ? -1 : 1;
    return x->all.p < y->all.p ? -1 : x->all.p > y->all.p; /* stable: original order */
}

int gh_cache_key(const gh_conf_route_t *rt, const gh_h1_request_t *m, int https, char *out, size_t cap)
{
    const gh_conf_cache_t *cc = rt->cache;
    size_t len = 0;
    const char *t = rt->tenant->name;
    APPEND(t, strlen(t));
    APPENDC('\n');
    if (https)
        APPEND("https\n", 6);
    else
        APPEND("http\n", 5);
    if (cc->key_host)
        for (size_t i = 0; i < m->host.n; i++) {
            char ch = m->host.p[i];
            APPENDC(ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch);
        }
    APPENDC('\n');
    APPEND(m->path.p, m->path.n);
    APPENDC('\n');
    if (cc->query != GH_CQ_IGNORE && m->query.n) {
        param_t ps[128];
        size_t np = 0;
        const char *p = m->query.p, *end = p + m->query.n;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p));
            gh_str_t all = gh_str(p, (size_t)((amp ? amp : end) - p));
            p = amp ? amp + 1 : end;
            if (!all.n)
                continue;
            const char *eq = memchr(all.p, '=', all.n);
            gh_str_t name = gh_str(all.p, eq ? (size_t)(eq - all.p) : all.n);
            if (cc->nquery_keep && !name_matches(cc->query_keep, cc->nquery_keep, name))
                continue;
            if (cc->nquery_drop && name_matches(cc->query_drop, cc->nquery_drop, name))
                continue;
            if (np == sizeof ps / sizeof *ps)
                return -1; /* an unusual query: not cached rather than a lossy key */
            ps[np++] = (param_t){all, name};
        }
        if (cc->query == GH_CQ_SORTED)
            qsort(ps, np, sizeof *ps, param_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i)
                APPENDC('&');
            APPEND(ps[i].all.p, ps[i].all.n);
        }
    }
    APPENDC('\n');
    for (uint32_t i = 0; i < cc->nkey_headers; i++) {
        APPEND("h:", 2);
        const char *nm = cc->key_headers[i];
        gh_str_t name = gh_str(nm, strlen(nm));
        int first = 1;
        for (size_t k = 0; k < m->nheaders; k++)
            if (gh_str_caseeq(m->headers[k].name, name)) {
                if (!first)
                    APPENDC(',');
                first = 0;
                APPEND(m->headers[k].value.p, m->headers[k].value.n);
            }
        APPENDC('\n');
    }
    for (uint32_t i = 0; i < cc->nkey_cookies; i++) {
        APPEND("c:", 2);
        const char *nm = cc->key_cookies[i];
        gh_str_t v = gh_h1_cookie(m->headers, m->nheaders, gh_str(nm, strlen(nm)));
        if (v.p) {
            APPENDC('=');
            APPEND(v.p, v.n);
        }
        APPENDC('\n');
    }
    return (int)len;
}

static int is_name(gh_str_t n, const char *lit) { return gh_str_caseeq_lit(n, lit); }

void gh_cache_req_facts(const gh_h1_header_t *h, size_t n, int method_id, gh_req_facts_t *out)
{
    memset(out, 0, sizeof(*out));
    gh_cc_init(&out->cc);
    out->method_id = method_id;
    int has_cc = 0, pragma = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.n == 13 && is_name(h[i].name, "cache-control")) {
            has_cc = 1;
            gh_cc_parse(&out->cc, h[i].value);
        } else if (h[i].name.n == 6 && is_name(h[i].name, "pragma")) {
            pragma |= gh_h1_has_token(h[i].value, GH_STR("no-cache"));
        } else if (h[i].name.n == 13 && is_name(h[i].name, "authorization")) {
            out->authorization = 1;
        }
    }
    out->pragma_no_cache = pragma && !has_cc;
}

/* Vary names: lowercased, trimmed, deduplicated, joined by ","; "*" alone if present. */
static int vary_names(const gh_h1_header_t *h, size_t n, char *out, size_t cap, int *star)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(h[i].name.n == 4 && is_name(h[i].name, "vary")))
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p == s)
                continue;
            gh_str_t name = gh_str(s, (size_t)(p - s));
            if (name.n == 1 && name.p[0] == '*') {
                *star = 1;
                continue;
            }
            /* already listed? */
            int dup = 0;
            for (size_t q = 0; q < len && !dup;) {
                const char *c = memchr(out + q, ',', len - q);
                size_t l = (size_t)((c ? c : out + len) - (out + q));
                dup = gh_str_caseeq(gh_str(out + q, l), name);
                q += l + 1;
            }
            if (dup)
                continue;
            if (len)
                APPENDC(',');
            for (size_t k = 0; k < name.n; k++) {
                char ch = name.p[k];
                APPENDC(ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch);
            }
        }
    }
    return (int)len;
}

void gh_cache_resp_facts(const gh_h1_header_t *h, size_t n, int status, const char *targeted,
                         gh_resp_facts_t *out, char *vbuf, size_t vcap, int *vlen)
{
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->date = out->expires = out->last_modified = out->age = -1;
    gh_str_t tname = targeted ? gh_str(targeted, strlen(targeted)) : GH_STR_NULL;
    /* which field governs: the tenant's, CDN-Cache-Control, Cache-Control */
    int have_t = 0, have_cdn = 0;
    for (size_t i = 0; i < n; i++) {
        if (tname.n && gh_str_caseeq(h[i].name, tname))
            have_t = 1;
        else if (h[i].name.n == 17 && is_name(h[i].name, "cdn-cache-control"))
            have_cdn = 1;
    }
    gh_str_t gov = have_t ? tname : have_cdn ? GH_STR("cdn-cache-control") : GH_STR("cache-control");
    out->targeted = have_t || have_cdn;
    gh_cc_init(&out->cc);
    for (size_t i = 0; i < n; i++) {
        gh_str_t nm = h[i].name;
        if (gh_str_caseeq(nm, gov)) {
            gh_cc_parse(&out->cc, h[i].value);
        } else if (nm.n == 4 && is_name(nm, "date")) {
            out->date = gh_http_date(h[i].value);
        } else if (nm.n == 7 && is_name(nm, "expires")) {
            /* more than one Expires: stale (4.2.1) */
            out->expires = out->has_expires ? -1 : gh_http_date(h[i].value);
            out->has_expires = 1;
        } else if (nm.n == 13 && is_name(nm, "last-modified")) {
            out->last_modified = gh_http_date(h[i].value);
        } else if (nm.n == 3 && is_name(nm, "age")) {
            out->age = out->age >= 0 ? -1 : gh_delta_seconds(h[i].value);
        }
    }
    int star = 0;
    *vlen = vary_names(h, n, vbuf, vcap, &star);
    out->has_vary_star = star;
}

static int hop_by_hop(gh_str_t name)
{
    switch (name.n) {
    case 2: return is_name(name, "te");
    case 7: return is_name(name, "upgrade") || is_name(name, "trailer");
    case 10: return is_name(name, "connection") || is_name(name, "keep-alive");
    case 16: return is_name(name, "proxy-connection");
    case 17: return is_name(name, "transfer-encoding");
    case 18: return is_name(name, "proxy-authenticate");
    case 19: return is_name(name, "proxy-authorization");
    default: return 0;
    }
}

static int listed(gh_str_t list, gh_str_t name) { return list.n && gh_h1_has_token(list, name); }

int gh_cache_stored_head(const gh_h1_header_t *h, size_t n, const gh_cc_t *cc, int strip_cookie, int64_t now,
                         char *out, size_t cap)
{
    size_t len = 0;
    int has_date = 0;
    for (size_t i = 0; i < n; i++) {
        gh_str_t nm = h[i].name;
        if (hop_by_hop(nm) || (nm.n == 14 && is_name(nm, "content-length")) || (nm.n == 3 && is_name(nm, "age")))
            continue;
        if (strip_cookie && nm.n == 10 && is_name(nm, "set-cookie"))
            continue;
        if ((cc->flags & GH_CC_PRIVATE_FIELDS) && listed(cc->private_fields, nm))
            continue;
        int in_conn = 0;
        for (size_t k = 0; k < n && !in_conn; k++)
            if (h[k].name.n == 10 && is_name(h[k].name, "connection"))
                in_conn = gh_h1_has_token(h[k].value, nm);
        if (in_conn)
            continue;
        if (nm.n == 4 && is_name(nm, "date"))
            has_date = 1;
        APPEND(nm.p, nm.n);
        APPEND(": ", 2);
        APPEND(h[i].value.p, h[i].value.n);
        APPEND("\r\n", 2);
    }
    if (!has_date) {
        char d[30];
        gh_http_date_fmt(now, d);
        APPEND("Date: ", 6);
        APPEND(d, 29);
        APPEND("\r\n", 2);
    }
    return (int)len;
}

/* Whether a 304's field may update a stored response (RFC 9111 3.2): not the fields a
 * cache never stores (hop-by-hop, those the 304's Connection names, its private="..."
 * fields), not framing or Age, not Set-Cookie (a 304 is answered to one client; the
 * stored response is shared), not Content-Encoding or Content-Range (they describe the
 * stored body, which the 304 does not carry). */
static int updates(const gh_h1_header_t *h, size_t n, const gh_cc_t *cc, gh_str_t nm)
{
    if (hop_by_hop(nm) || (nm.n == 14 && is_name(nm, "content-length")) || (nm.n == 3 && is_name(nm, "age")) ||
        (nm.n == 16 && is_name(nm, "content-encoding")) || (nm.n == 13 && is_name(nm, "content-range")) ||
        (nm.n == 10 && is_name(nm, "set-cookie")))
        return 0;
    if ((cc->flags & GH_CC_PRIVATE_FIELDS) && listed(cc->private_fields, nm))
        return 0;
    for (size_t k = 0; k < n; k++)
        if (h[k].name.n == 10 && is_name(h[k].name, "connection") && gh_h1_has_token(h[k].value, nm))
            return 0;
    return 1;
}

int gh_cache_updated_head(gh_str_t stored, const gh_h1_header_t *h, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    gh_cc_t cc;
    gh_cc_init(&cc);
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == 13 && is_name(h[i].name, "cache-control"))
            gh_cc_parse(&cc, h[i].value);
    const char *p = stored.p, *end = stored.p + stored.n;
    /* stored lines whose field the 304 does not update */
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n')
            break;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        gh_str_t nm = gh_str(p, colon ? (size_t)(colon - p) : 0);
        int replaced = 0;
        for (size_t i = 0; i < n && !replaced; i++)
            replaced = gh_str_caseeq(h[i].name, nm) && updates(h, n, &cc, nm);
        if (!replaced)
            APPEND(p, (size_t)(eol + 2 - p));
        p = eol + 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (!updates(h, n, &cc, h[i].name))
            continue;
        APPEND(h[i].name.p, h[i].name.n);
        APPEND(": ", 2);
        APPEND(h[i].value.p, h[i].value.n);
        APPEND("\r\n", 2);
    }
    return (int)len;
}

int gh_cache_tags(const gh_h1_header_t *h, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    unsigned count = 0;
    for (size_t i = 0; i < n; i++) {
        gh_str_t nm = h[i].name;
        if (!((nm.n == 9 && is_name(nm, "cache-tag")) || (nm.n == 13 && is_name(nm, "surrogate-key"))))
            continue;
        const char *p = h[i].value.p, *end = p + h[i].value.n;
        while (p < end && count < GH_CACHE_MAX_TAGS) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ' ' && *p != '\t' && *p != ',')
                p++;
            if (p == s)
                continue;
            if (len + (size_t)(p - s) + 1 > cap)
                return (int)len;
            memcpy(out + len, s, (size_t)(p - s));
            len += (size_t)(p - s);
            out[len++] = 0;
            count++;
        }
    }
    return (int)len;
}

/* Weak comparison of entity tags: W/ prefixes ignored. */
static int etag_weak_eq(gh_str_t a, gh_str_t b)
{
    if (a.n >= 2 && a.p[0] == 'W' && a.p[1] == '/')
        a = gh_str(a.p + 2, a.n - 2);
    if (b.n >= 2 && b.p[0] == 'W' && b.p[1] == '/')
        b = gh_str(b.p + 2, b.n - 2);
    return a.n >= 2 && gh_str_eq(a, b);
}

int gh_cache_not_modified(const gh_h1_header_t *h, size_t n, const gh_cobj_t *o)
{
    int has_inm = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(h[i].name.n == 13 && is_name(h[i].name, "if-none-match")))
            continue;
        has_inm = 1;
        const char *p = h[i].value.p, *end = p + h[i].value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            if (p < end && *p == '*') /* any current representation: the stored one */
                return 1;
            if (p + 1 < end && p[0] == 'W' && p[1] == '/')
                p += 2;
            if (p < end && *p == '"') {
                const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
                if (!q)
                    break;
                p = q + 1;
                if (o->etag.n && etag_weak_eq(gh_str(s, (size_t)(p - s)), o->etag))
                    return 1;
            } else {
                while (p < end && *p != ',')
                    p++;
            }
        }
    }
    if (has_inm)
        return 0;
    const gh_h1_header_t *ims = gh_h1_find(h, n, GH_STR("if-modified-since"));
    if (!ims || o->status != 200)
        return 0;
    int64_t since = gh_http_date(ims->value), lm = o->last_modified.n ? gh_http_date(o->last_modified) : -1;
    return since >= 0 && lm >= 0 && lm <= since;
}

static int parse_u64(const char *p, const char *end, uint64_t *v)
{
    if (p == end)
        return 0;
    uint64_t x = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return 1;
}

int gh_cache_range(const gh_h1_header_t *h, size_t n, const gh_cobj_t *o, uint64_t len, uint64_t *off,
                   uint64_t *cnt)
{
    const gh_h1_header_t *r = gh_h1_find(h, n, GH_STR("range"));
    if (!r || o->status != 200)
        return 0;
    const gh_h1_header_t *ir = gh_h1_find(h, n, GH_STR("if-range"));
    if (ir) { /* a strong validator that matches, or the whole representation */
        gh_str_t v = ir->value;
        if (v.n && v.p[0] == '"') {
            if (!gh_str_eq(v, o->etag))
                return 0;
        } else {
            int64_t d = gh_http_date(v), lm = o->last_modified.n ? gh_http_date(o->last_modified) : -1;
            if (d < 0 || lm < 0 || d != lm)
                return 0;
        }
    }
    gh_str_t v = r->value;
    if (v.n < 6 || strncasecmp(v.p, "bytes=", 6) || memchr(v.p, ',', v.n))
        return 0; /* another unit, or several ranges: the whole representation */
    const char *p = v.p + 6, *end = v.p + v.n;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    const char *dash = memchr(p, '-', (size_t)(end - p));
    if (!dash)
        return 0;
    uint64_t a, b;
    if (dash == p) { /* suffix: the last N bytes */
        if (!parse_u64(dash + 1, end, &b))
            return 0;
        if (!b || !len)
            return -1;
        *cnt = GH_MIN(b, len);
        *off = len - *cnt;
        return 1;
    }
    if (!parse_u64(p, dash, &a))
        return 0;
    if (dash + 1 == end)
        b = len ? len - 1 : 0;
    else if (!parse_u64(dash + 1, end, &b) || b < a)
        return 0;
    if (a >= len)
        return -1;
    if (b >= len)
        b = len - 1;
    *off = a;
    *cnt = b - a + 1;
    return 1;
}
