/* router.c: the host index of a snapshot and per-request site/route selection.
 *
 * Every configured host goes into one open-addressing hash table keyed by its
 * lowercased name; a wildcard "*.example.com" is stored under ".example.com", a key
 * no exact host can have. A lookup hashes the request's host (lowercased on the fly,
 * port and one trailing dot ignored) for the exact entry, then each suffix starting at
 * a '.' from the left, which tries wildcards longest first, then falls back to "*".
 * Route selection walks a site's routes in order. Nothing allocates per request but
 * the PCRE2 match data, created once per thread and freed at thread exit.
 *
 * Called by config.c (build/free) and the request path (site/route). Calls PCRE2. */
#define _GNU_SOURCE
#include "proxy/router.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct {
    const char *name; /* lowercased; NULL = empty slot */
    uint32_t len;
    uint32_t hash;
    uint32_t wild;
    const gh_conf_site_t *site;
    uint32_t t, s, h; /* where it was configured, for messages */
} rent_t;

typedef struct {
    rent_t *tab;
    size_t mask;
    size_t nwild;
    const gh_conf_site_t *any;
} router_t;

/* The largest capture count of any regex compiled into any snapshot so far: the
 * per-thread match data grows to it. */
static uint32_t max_captures;

static inline unsigned char lc(unsigned char ch) { return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch; }

static uint32_t hash_lc(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= lc((unsigned char)p[i]);
        h *= 16777619u;
    }
    return h;
}

/* p[0..n) (any case) against a lowercased name. */
static bool eq_lc(const char *p, const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lc((unsigned char)p[i]) != (unsigned char)name[i])
            return false;
    return true;
}

static const rent_t *lookup(const router_t *r, const char *p, size_t n, bool wild)
{
    uint32_t h = hash_lc(p, n);
    for (size_t i = h & r->mask;; i = (i + 1) & r->mask) {
        const rent_t *e = &r->tab[i];
        if (!e->name)
            return NULL;
        if (e->hash == h && e->len == n && e->wild == wild && eq_lc(p, e->name, n))
            return e;
    }
}

static int add_err(gh_conf_errors_t *errs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int add_err(gh_conf_errors_t *errs, const char *fmt, ...)
{
    if (!errs)
        return 0;
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return GH_ENOMEM;
    char **m = realloc(errs->msgs, (errs->n + 1) * sizeof *m);
    if (!m) {
        free(s);
        return GH_ENOMEM;
    }
    errs->msgs = m;
    errs->msgs[errs->n++] = s;
    return 0;
}

static void note_captures(const gh_regex_t *re)
{
    uint32_t n = 0;
    if (!re || pcre2_pattern_info((const pcre2_code *)re, PCRE2_INFO_CAPTURECOUNT, &n) != 0)
        return;
    uint32_t cur = __atomic_load_n(&max_captures, __ATOMIC_RELAXED);
    while (n > cur &&
           !__atomic_compare_exchange_n(&max_captures, &cur, n, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

int gh_router_build(gh_conf_t *c, gh_conf_errors_t *errs)
{
    size_t n = 0;
    int rc = 0;
    for (uint32_t t = 0; t < c->ntenants; t++)
        for (uint32_t s = 0; s < c->tenants[t].nsites; s++) {
            const gh_conf_site_t *site = &c->tenants[t].sites[s];
            n += site->nhosts;
            for (uint32_t i = 0; i < site->nroutes; i++) {
                const gh_conf_route_t *rt = &site->routes[i];
                note_captures(rt->path_re);
                for (uint32_t j = 0; j < rt->nheaders; j++)
                    note_captures(rt->headers[j].re);
            }
        }
    size_t cap = 8;
    while (cap < n * 2)
        cap *= 2;
    router_t *r = calloc(1, sizeof *r);
    if (!r || !(r->tab = calloc(cap, sizeof *r->tab))) {
        free(r);
        return GH_ENOMEM;
    }
    r->mask = cap - 1;
    uint32_t any_t = 0, any_s = 0, any_h = 0;
    for (uint32_t t = 0; t < c->ntenants; t++)
        for (uint32_t s = 0; s < c->tenants[t].nsites; s++) {
            const gh_conf_site_t *site = &c->tenants[t].sites[s];
            for (uint32_t h = 0; h < site->nhosts; h++) {
                const gh_conf_host_t *host = &site->hosts[h];
                const gh_conf_site_t *other = NULL;
                uint32_t ot = 0, os = 0, oh = 0;
                if (host->any) {
                    if (r->any) {
                        other = r->any;
                        ot = any_t, os = any_s, oh = any_h;
                    } else {
                        r->any = site;
                        any_t = t, any_s = s, any_h = h;
                    }
                } else {
                    const rent_t *e = lookup(r, host->name, host->len, host->wildcard != 0);
                    if (e) {
                        other = e->site;
                        ot = e->t, os = e->s, oh = e->h;
                    } else {
                        uint32_t hv = hash_lc(host->name, host->len);
                        size_t i = hv & r->mask;
                        while (r->tab[i].name)
                            i = (i + 1) & r->mask;
                        r->tab[i] = (rent_t){host->name, (uint32_t)host->len, hv,
                                             host->wildcard != 0, site, t, s, h};
                        r->nwild += host->wildcard != 0;
                    }
                }
                if (other) {
                    rc = GH_ECONFIG;
                    if (add_err(errs,
                                "%s:0:0: tenants[%u].sites[%u].hosts[%u]: duplicate host \"%s%s\": "
                                "also in tenant \"%s\" site \"%s\" (tenants[%u].sites[%u].hosts[%u])",
                                c->path ? c->path : "<config>", t, s, h, host->wildcard ? "*" : "",
                                host->name, other->tenant ? other->tenant->name : "?", other->name,
                                ot, os, oh) != 0) {
                        free(r->tab);
                        free(r);
                        return GH_ENOMEM;
                    }
                }
            }
        }
    if (rc != 0) {
        free(r->tab);
        free(r);
        return rc;
    }
    c->router = r;
    return 0;
}

void gh_router_free(gh_conf_t *c)
{
    router_t *r = c ? c->router : NULL;
    if (!r)
        return;
    free(r->tab);
    free(r);
    c->router = NULL;
}

const gh_conf_site_t *gh_router_site(const gh_conf_t *c, gh_str_t host)
{
    const router_t *r = c ? c->router : NULL;
    if (!r)
        return NULL;
    const char *p = host.p;
    size_t n = p ? host.n : 0;
    if (n && p[0] == '[') {
        /* IPv6 literal: the port, if any, follows the ']' */
        const char *e = memchr(p, ']', n);
        if (e)
            n = (size_t)(e - p) + 1;
    } else if (n) {
        const char *colon = memchr(p, ':', n);
        if (colon)
            n = (size_t)(colon - p);
        if (n && p[n - 1] == '.')
            n--;
    }
    if (n) {
        const rent_t *e = lookup(r, p, n, false);
        if (e)
            return e->site;
        if (r->nwild)
            for (size_t i = 1; i < n; i++)
                if (p[i] == '.' && (e = lookup(r, p + i, n - i, true)))
                    return e->site;
    }
    return r->any;
}

/* ---------------------------------------------------------------- matching */

static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pcre2_match_context *mctx; /* shared: only read while matching */
static __thread pcre2_match_data *tl_md;

static void md_free(void *md) { pcre2_match_data_free(md); }

static void md_init(void)
{
    (void)pthread_key_create(&md_key, md_free);
    mctx = pcre2_match_context_create(NULL);
    if (mctx) {
        /* bounds a pathological pattern; hitting the limit counts as no match */
        pcre2_set_match_limit(mctx, 1000000);
        pcre2_set_depth_limit(mctx, 10000);
    }
}

static pcre2_match_data *match_data(void)
{
    uint32_t want = __atomic_load_n(&max_captures, __ATOMIC_RELAXED) + 1;
    if (GH_LIKELY(tl_md && pcre2_get_ovector_count(tl_md) >= want))
        return tl_md;
    pthread_once(&md_once, md_init);
    pcre2_match_data *md = pcre2_match_data_create(want, NULL);
    if (!md)
        return tl_md; /* keep the smaller one: matching still works, captures are cut */
    pcre2_match_data_free(tl_md);
    tl_md = md;
    (void)pthread_setspecific(md_key, md);
    return md;
}

static bool re_match(const gh_regex_t *re, gh_str_t s)
{
    pcre2_match_data *md = match_data();
    if (!md)
        return false;
    int rc = pcre2_match((const pcre2_code *)re, (PCRE2_SPTR)(s.p ? s.p : ""), s.n, 0, 0, md, mctx);
    return rc >= 0; /* 0: matched, ovector too small */
}

static bool header_ok(const gh_conf_header_match_t *m, const gh_h1_request_t *req)
{
    for (uint16_t i = 0; i < req->nheaders; i++) {
        const gh_h1_header_t *h = &req->headers[i];
        if (h->name.n != m->name_len || strncasecmp(h->name.p, m->name, m->name_len) != 0)
            continue;
        switch (m->kind) {
        case GH_MATCH_PRESENT: return true;
        case GH_MATCH_EXACT:
            if (h->value.n == m->value_len &&
                (m->value_len == 0 || memcmp(h->value.p, m->value, m->value_len) == 0))
                return true;
            break;
        case GH_MATCH_REGEX:
            if (re_match(m->re, h->value))
                return true;
            break;
        }
    }
    return false;
}

/* A route's tls_fingerprints against the client's JA4 ("" without TLS). */
static int ja4_ok(const gh_conf_route_t *r, const char *ja4)
{
    if (!ja4 || !ja4[0])
        return 0;
    for (uint32_t i = 0; i < r->nja4; i++) {
        size_t n = strlen(r->ja4[i]);
        if (r->ja4[i][n - 1] == '*' ? !strncmp(r->ja4[i], ja4, n - 1) : !strcmp(r->ja4[i], ja4))
            return 1;
    }
    return 0;
}

const gh_conf_route_t *gh_router_route(const gh_conf_site_t *site, const gh_h1_request_t *req, const char *ja4)
{
    if (!site || !req)
        return NULL;
    const gh_str_t path = req->path;
    for (uint32_t i = 0; i < site->nroutes; i++) {
        const gh_conf_route_t *r = &site->routes[i];
        if (r->methods) {
            unsigned m = (unsigned)req->method_id;
            if (m >= 32 || !(r->methods & (1u << m)))
                continue;
        }
        switch (r->path_kind) {
        case GH_MATCH_EXACT:
            if (path.n != r->path_len || memcmp(path.p, r->path, path.n) != 0)
                continue;
            break;
        case GH_MATCH_PREFIX:
            if (path.n < r->path_len || memcmp(path.p, r->path, r->path_len) != 0)
                continue;
            break;
        case GH_MATCH_REGEX:
            if (!re_match(r->path_re, path))
                continue;
            break;
        default: break;
        }
        if (r->nja4 && !ja4_ok(r, ja4))
            continue;
        uint32_t j = 0;
        while (j < r->nheaders && header_ok(&r->headers[j], req))
            j++;
        if (j == r->nheaders)
            return r;
    }
    return NULL;
}
