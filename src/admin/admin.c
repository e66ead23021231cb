/* admin.c: see admin.h. */
#include "protect/protect.h"
#include "admin/admin.h"
#include "admin/cp.h"
#include "admin/grpc_admin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/http.h"
#include "core/json.h"
#include "core/log.h"
#include "events/chsink.h"
#include "events/stream.h"
#include "experiments/exp.h"
#include "experiments/stats.h"
#include "obs/analytics.h"
#include "obs/slo.h"
#include "proxy/router.h"
#include "proxy/dns.h"
#include "proxy/health.h"

static void problem(gh_req_t *r, int status, const char *title, const char *detail);

/* GET /upstreams: pools, their policy and backends with their health, as JSON. */
static void upstreams_json(gh_req_t *r, const gh_conf_t *c)
{
    static const char *const policies[] = {"round_robin", "least_request", "peak_ewma", "hash"};
    size_t cap = 4096 + (size_t)c->nupstreams * 512;
    for (uint32_t i = 0; i < c->nupstreams; i++)
        cap += (size_t)c->upstreams[i].nbackends * 512;
    char *out = malloc(cap);
    if (!out) {
        problem(r, 503, "Service Unavailable", "out of memory");
        return;
    }
    size_t n = 0;
#define OUT(...) (n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__))
    OUT("{\"upstreams\":[");
    for (uint32_t i = 0; i < c->nupstreams; i++) {
        const gh_conf_upstream_t *u = &c->upstreams[i];
        OUT("%s{\"name\":\"%s\",\"balance\":\"%s\",\"health_check\":%s,\"backends\":[", i ? "," : "",
            u->name, policies[u->balance & 3], u->health.enabled ? "true" : "false");
        for (uint32_t k = 0; k < u->nbackends; k++) {
            const gh_conf_backend_t *b = &u->backends[k];
            const gh_health_t *h = b->health;
            gh_backend_view_t v;
            gh_backend_view(b, &v);
            OUT("%s{\"address\":\"%s\",\"weight\":%u,\"state\":\"%s\",\"drained\":%s", k ? "," : "", b->name,
                b->weight, !u->health.enabled ? "unchecked" : gh_health_up(b) ? "up" : "down",
                gh_health_drained(b) ? "true" : "false");
            if (b->dns_name)
                OUT(",\"dns_name\":\"%s\"", b->dns_name);
            OUT(",\"ejected_by_workers\":%u,\"ejections\":%llu,\"active_requests\":%llu,\"requests\":%llu,"
                "\"failures\":%llu,\"latency_ewma_ms\":%.3f",
                v.ejected, (unsigned long long)v.ejections, (unsigned long long)v.active,
                (unsigned long long)v.requests, (unsigned long long)v.failures, (double)v.latency_us / 1e3);
            if (h && u->health.enabled) {
                char err[sizeof h->last_error];
                size_t e = 0;
                for (size_t j = 0; j < sizeof h->last_error && h->last_error[j] && e + 1 < sizeof err; j++)
                    if (h->last_error[j] != '"' && h->last_error[j] != '\\' && (unsigned char)h->last_error[j] >= 0x20)
                        err[e++] = h->last_error[j];
                err[e] = 0;
                OUT(",\"checks\":%llu,\"failed_checks\":%llu,\"transitions\":%llu,\"last_error\":\"%s\"",
                    (unsigned long long)h->checks, (unsigned long long)h->failures,
                    (unsigned long long)h->transitions, err);
            }
            OUT("}");
        }
        OUT("]}");
    }
    OUT("]}\n");
#undef OUT
    if (n >= cap)
        problem(r, 503, "Service Unavailable", "the answer is too large");
    else
        gh_session_respond(r, 200, "application/json", out, n, "Cache-Control: no-store\r\n");
    free(out);
}

/* POST /upstreams/{name}/drain?backend=ADDR and .../undrain?backend=ADDR; the name may hold
 * a slash (an API tenant's pool, TENANT/NAME), raw or as %2F. */
static void drain_request(gh_req_t *r, const gh_h1_request_t *m)
{
    gh_str_t rest = gh_str(m->path.p + 11, m->path.n - 11);
    const char *slash = memrchr(rest.p, '/', rest.n);
    gh_str_t q = m->query;
    char name[300], backend[300];
    if (!slash || q.n < 9 || memcmp(q.p, "backend=", 8) || memchr(q.p, '&', q.n) ||
        gh_h1_pct_decode(gh_str(rest.p, (size_t)(slash - rest.p)), name, sizeof name, 0) <= 0 ||
        gh_h1_pct_decode(gh_str(q.p + 8, q.n - 8), backend, sizeof backend, 1) <= 0) {
        problem(r, 400, "Bad Request", "use POST /upstreams/NAME/drain?backend=HOST:PORT (or /undrain)");
        return;
    }
    gh_str_t action = gh_str(slash + 1, rest.n - (size_t)(slash + 1 - rest.p));
    int drain = gh_str_eq(action, GH_STR("drain"));
    if (gh_health_set_drain(gh_str(name, strlen(name)), gh_str(backend, strlen(backend)), drain) < 0) {
        problem(r, 404, "Not Found", "no such upstream backend");
        return;
    }
    gh_session_respond(r, 200, "text/plain", drain ? "drained\n" : "undrained\n", drain ? 8 : 10, NULL);
}

/* RFC 9457 problem+json; the type is the one the control plane gives for the status. */
static void problem(gh_req_t *r, int status, const char *title, const char *detail)
{
    (void)title;
    gh_session_problem(r, status, NULL, detail, NULL);
}

static void method_not_allowed(gh_req_t *r, const char *allow)
{
    char hdr[96];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    gh_session_problem(r, 405, NULL, "see the Allow header", hdr);
}

/* The dashboard's files (web/dashboard and uPlot), embedded at build time by scripts/embed_web.py
 * into build/gen/web_assets.c (the same layout there). */
typedef struct {
    const char *name, *type, *etag;
    const unsigned char *data;
    size_t len;
} gh_web_asset_t;
extern const gh_web_asset_t gh_web_assets[];
extern const size_t gh_web_nassets;

/* GET/HEAD /dashboard (a redirect), /dashboard/ (index.html) and /dashboard/NAME, without a key:
 * the page asks for one and sends it with each request for data. */
static void dashboard_request(gh_req_t *r, const gh_h1_request_t *m)
{
    int get = m->method_id == GH_M_GET || m->method_id == GH_M_HEAD;
    if (m->path.n == 10) {
        if (!get)
            method_not_allowed(r, "GET, HEAD");
        else
            gh_session_respond(r, 308, "text/plain", "/dashboard/\n", 12,
                               "Location: /dashboard/\r\nCache-Control: no-cache\r\n");
        return;
    }
    gh_str_t name = m->path.n == 11 ? GH_STR("index.html") : gh_str(m->path.p + 11, m->path.n - 11);
    const gh_web_asset_t *a = NULL;
    for (size_t i = 0; i < gh_web_nassets && !a; i++)
        if (gh_str_eq(name, gh_str(gh_web_assets[i].name, strlen(gh_web_assets[i].name))))
            a = &gh_web_assets[i];
    if (!a) {
        problem(r, 404, "Not Found", "no such file of the dashboard");
        return;
    }
    if (!get) {
        method_not_allowed(r, "GET, HEAD");
        return;
    }
    char hdr[512];
    snprintf(hdr, sizeof hdr,
             "ETag: %s\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
             "Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
             "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
             "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'\r\n",
             a->etag);
    const gh_h1_header_t *inm = gh_h1_find(m->headers, m->nheaders, GH_STR("if-none-match"));
    if (inm && ((inm->value.n == 1 && inm->value.p[0] == '*') ||
                memmem(inm->value.p, inm->value.n, a->etag, strlen(a->etag)))) {
        gh_session_respond(r, 304, NULL, "", 0, hdr);
        return;
    }
    gh_session_respond(r, 200, a->type, (const char *)a->data, a->len, hdr);
}

/* "http://host/path?q" or "host/path?q" -> "host/path?q" (the store's URL form). */
static gh_str_t url_form(const char *u, size_t n)
{
    if (n > 7 && !strncasecmp(u, "http://", 7))
        return gh_str(u + 7, n - 7);
    if (n > 8 && !strncasecmp(u, "https://", 8))
        return gh_str(u + 8, n - 8);
    if (n > 2 && u[0] == '/' && u[1] == '/')
        return gh_str(u + 2, n - 2);
    return gh_str(u, n);
}

/* A URL ("host/path?query") as the store's URL purge compares it: the part of the key after
 * the tenant and scheme lines, built by the route that would cache a GET of it (its query
 * rules; no header or cookie values), or with the default rules when none does. -1 when
 * it does not fit. */
static int url_key(const gh_conf_t *c, gh_str_t tenant, gh_str_t url, char *out, size_t cap)
{
    const char *slash = memchr(url.p, '/', url.n);
    gh_str_t host = gh_str(url.p, slash ? (size_t)(slash - url.p) : url.n);
    gh_str_t target = slash ? gh_str(slash, url.n - host.n) : GH_STR("/");
    const char *qm = memchr(target.p, '?', target.n);
    gh_h1_request_t m;
    memset(&m, 0, sizeof m);
    m.method = GH_STR("GET");
    m.method_id = GH_M_GET;
    m.minor = 1;
    m.target = target;
    m.path = gh_str(target.p, qm ? (size_t)(qm - target.p) : target.n);
    m.query = qm ? gh_str(qm + 1, target.n - m.path.n - 1) : GH_STR("");
    m.host = host;
    const gh_conf_site_t *site = gh_router_site(c, host);
    const gh_conf_route_t *rt = site ? gh_router_route(site, &m, "") : NULL;
    gh_conf_tenant_t t = {.name = (char *)"-"};
    gh_conf_cache_t dflt = {.key_host = 1, .query = GH_CQ_SORTED};
    gh_conf_route_t tmp = {.tenant = &t, .cache = &dflt};
    if (!rt || !rt->cache || !gh_str_eq(gh_str(rt->tenant->name, strlen(rt->tenant->name)), tenant))
        rt = &tmp;
    char key[GH_CACHE_KEY_MAX];
    int n = gh_cache_key(rt, &m, 0, key, sizeof key);
    if (n < 0)
        return -1;
    /* skip "tenant\nscheme\n", keep "host\npath\nquery\n" */
    const char *p = key, *end = key + n;
    for (int i = 0; i < 2 && p; i++)
        p = memchr(p, '\n', (size_t)(end - p)), p = p ? p + 1 : NULL;
    const char *q = p;
    for (int i = 0; i < 3 && q; i++)
        q = memchr(q, '\n', (size_t)(end - q)), q = q ? q + 1 : NULL;
    if (!p || !q || (size_t)(q - p) > cap)
        return -1;
    memcpy(out, p, (size_t)(q - p));
    return (int)(q - p);
}

int64_t gh_admin_purge(const gh_conf_t *c, gh_str_t tenant, int kind, const char *value, int soft)
{
    gh_str_t v = kind == GH_PURGE_URL || kind == GH_PURGE_PREFIX ? url_form(value, strlen(value))
                                                                  : gh_str(value, strlen(value));
    char uk[GH_CACHE_KEY_MAX];
    if (kind == GH_PURGE_URL) {
        int l = url_key(c, tenant, v, uk, sizeof uk);
        if (l < 0)
            return -1;
        v = gh_str(uk, (size_t)l);
    }
    return (int64_t)gh_cache_purge(tenant, kind, v, soft);
}

static const char *const purge_kinds[] = {[GH_PURGE_TAG] = "tag", [GH_PURGE_URL] = "url",
                                          [GH_PURGE_PREFIX] = "prefix", [GH_PURGE_ALL] = "all"};

void gh_admin_purge_share(const char *tenant, int kind, const char *const *values, int nvalues, int soft)
{
    if (!gh_stream_on(GH_EV_PURGE))
        return;
    json_t *vals = json_array();
    for (int i = 0; i < nvalues; i++)
        json_array_append_new(vals, json_string(values[i]));
    json_t *o = json_pack("{s:s, s:s, s:o, s:b}", "tenant", tenant, "kind", purge_kinds[kind], "values", vals, "soft",
                          soft);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (!txt || gh_stream_purge(txt, strlen(txt)) < 0)
        gh_log(GH_LOG_WARN, "purge of tenant %s not told to the other nodes (the event stream's spool is full)", tenant);
    free(txt);
    json_decref(o);
}

void gh_admin_purge_remote(const char *json, size_t len)
{
    json_t *o = json_loadb(json, len, 0, NULL);
    const char *tenant = json_string_value(json_object_get(o, "tenant"));
    const char *k = json_string_value(json_object_get(o, "kind"));
    const char *node = json_string_value(json_object_get(o, "node"));
    json_t *vals = json_object_get(o, "values");
    int kind = -1;
    for (int i = 0; k && i < (int)GH_ARRAY_LEN(purge_kinds); i++)
        if (!strcmp(k, purge_kinds[i]))
            kind = i;
    if (!tenant || kind < 0 || !json_is_array(vals) || json_array_size(vals) > 64) {
        gh_log(GH_LOG_WARN, "a purge from the event stream was not understood; ignored");
        json_decref(o);
        return;
    }
    gh_conf_t *c = gh_cp_current();
    gh_str_t tn = gh_str(tenant, strlen(tenant));
    int soft = json_is_true(json_object_get(o, "soft"));
    uint64_t n = 0;
    if (kind == GH_PURGE_ALL) {
        int64_t got = gh_admin_purge(c, tn, kind, "", soft);
        n = got > 0 ? (uint64_t)got : 0;
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(vals, i, v) {
            if (!json_is_string(v) || json_string_length(v) > 1024)
                continue;
            int64_t got = gh_admin_purge(c, tn, kind, json_string_value(v), soft);
            n += got > 0 ? (uint64_t)got : 0;
        }
    }
    gh_conf_unref(c);
    gh_log(GH_LOG_INFO, "purge from node %s: tenant %s, %s, %llu object%s", node ? node : "?", tenant, k,
           (unsigned long long)n, n == 1 ? "" : "s");
    json_decref(o);
}

/* POST /cache/purge?tenant=T&(tag=A[&tag=B..] | url=U | prefix=U | all=1)[&soft=1] */
static void purge_request(gh_req_t *r, const gh_h1_request_t *m, const gh_conf_t *conf)
{
    char tenant[256] = "", val[16][1024], tmp[1024];
    int kind = -1, nval = 0, soft = 0;
    const char *p = m->query.p, *end = m->query.p + m->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        const char *eq = memchr(kv.p, '=', kv.n);
        if (!eq)
            continue;
        gh_str_t k = gh_str(kv.p, (size_t)(eq - kv.p)), v = gh_str(eq + 1, kv.n - k.n - 1);
        int l = gh_h1_pct_decode(v, tmp, sizeof tmp, 1);
        if (l < 0) {
            problem(r, 400, "Bad Request", "a parameter is badly percent-encoded or too long");
            return;
        }
        int k2 = gh_str_eq(k, GH_STR("tag")) ? GH_PURGE_TAG : gh_str_eq(k, GH_STR("url")) ? GH_PURGE_URL
                 : gh_str_eq(k, GH_STR("prefix")) ? GH_PURGE_PREFIX : gh_str_eq(k, GH_STR("all")) ? GH_PURGE_ALL : -1;
        if (gh_str_eq(k, GH_STR("tenant"))) {
            if ((size_t)l >= sizeof tenant) {
                problem(r, 400, "Bad Request", "tenant name too long");
                return;
            }
            memcpy(tenant, tmp, (size_t)l + 1);
        } else if (gh_str_eq(k, GH_STR("soft"))) {
            soft = tmp[0] == '1' || !strcmp(tmp, "true");
        } else if (k2 >= 0) {
            if ((kind >= 0 && kind != k2) || nval == 16) {
                problem(r, 400, "Bad Request", "give one kind of purge (tag, url, prefix or all), at most 16 values");
                return;
            }
            kind = k2;
            memcpy(val[nval++], tmp, (size_t)l + 1);
        } else {
            problem(r, 400, "Bad Request", "unknown parameter (use tenant, tag, url, prefix, all, soft)");
            return;
        }
    }
    if (!tenant[0] || kind < 0) {
        problem(r, 400, "Bad Request", "use POST /cache/purge?tenant=T and one of tag=, url=, prefix=, all=1 (and soft=1)");
        return;
    }
    uint64_t n = 0;
    gh_str_t tn = gh_str(tenant, strlen(tenant));
    int known = 0;
    for (uint32_t i = 0; i < conf->ntenants && !known; i++)
        known = !strcmp(conf->tenants[i].name, tenant);
    if (!known) {
        problem(r, 404, "Not Found", "no such tenant");
        return;
    }
    for (int i = 0; i < nval; i++) {
        int64_t got = gh_admin_purge(conf, tn, kind, val[i], soft);
        if (got < 0) {
            problem(r, 400, "Bad Request", "URL too long");
            return;
        }
        n += (uint64_t)got;
    }
    const char *vp[16];
    for (int i = 0; i < nval; i++)
        vp[i] = val[i];
    gh_admin_purge_share(tenant, kind, vp, kind == GH_PURGE_ALL ? 0 : nval, soft);
    char body[96];
    int bl = snprintf(body, sizeof body, "{\"purged\":%llu,\"soft\":%s}\n", (unsigned long long)n, soft ? "true" : "false");
    gh_session_respond(r, 200, "application/json", body, (size_t)bl, "Cache-Control: no-store\r\n");
}

/* The shared engines: the configuration store, the event stream, the ClickHouse sink. */
static size_t scaleout_metrics(char *out, size_t cap)
{
    int64_t version = 0, since = 0;
    int st = gh_cp_store_state(&version, &since);
    int n = snprintf(out, cap,
                     "# HELP gatehouse_config_version The configuration version in force (the store's numbering; 0 without a store).\n"
                     "# TYPE gatehouse_config_version gauge\ngatehouse_config_version %lld\n",
                     (long long)version);
    size_t len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    if (st >= 0) {
        n = snprintf(out + len, cap - len,
                     "# HELP gatehouse_config_store_up Whether the configuration store answered at its last check (1) or not (0: the last good configuration is served).\n"
                     "# TYPE gatehouse_config_store_up gauge\ngatehouse_config_store_up %d\n",
                     st);
        len += n > 0 && (size_t)n < cap - len ? (size_t)n : 0;
    }
    if (gh_stream_on(GH_EV_PURGE))
        len += gh_stream_metrics(out + len, cap - len);
    len += gh_chsink_metrics(out + len, cap - len);
    return len;
}

/* GET /cache: the store's state. */
static void cache_json(gh_req_t *r)
{
    gh_cache_stats_t st;
    gh_cache_stats(&st);
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"enabled\":%s,\"memory\":%llu,\"max_object\":%llu,\"used\":%llu,\"objects\":%llu,"
                     "\"inserts\":%llu,\"evictions\":%llu,\"purged\":%llu,\"eviction\":\"s3-fifo\"}\n",
                     gh_cache_enabled() ? "true" : "false", (unsigned long long)st.cap,
                     (unsigned long long)st.max_object, (unsigned long long)st.used, (unsigned long long)st.objects,
                     (unsigned long long)st.inserts, (unsigned long long)st.evictions, (unsigned long long)st.purged);
    gh_session_respond(r, 200, "application/json", body, (size_t)n, "Cache-Control: no-store\r\n");
}

/* The store's gauges and counters for /metrics. */
static size_t cache_metrics(char *out, size_t cap)
{
    if (!gh_cache_enabled())
        return 0;
    gh_cache_stats_t st;
    gh_cache_stats(&st);
    int n = snprintf(out, cap,
                     "# HELP gatehouse_cache_bytes Bytes held by the HTTP cache.\n# TYPE gatehouse_cache_bytes gauge\n"
                     "gatehouse_cache_bytes %llu\n"
                     "# HELP gatehouse_cache_memory_limit_bytes The HTTP cache's memory cap.\n"
                     "# TYPE gatehouse_cache_memory_limit_bytes gauge\ngatehouse_cache_memory_limit_bytes %llu\n"
                     "# HELP gatehouse_cache_objects Responses stored.\n# TYPE gatehouse_cache_objects gauge\n"
                     "gatehouse_cache_objects %llu\n"
                     "# HELP gatehouse_cache_evictions_total Objects evicted to stay under the cap.\n"
                     "# TYPE gatehouse_cache_evictions_total counter\ngatehouse_cache_evictions_total %llu\n"
                     "# HELP gatehouse_cache_purged_total Objects purged (or soft-purged) through the admin API.\n"
                     "# TYPE gatehouse_cache_purged_total counter\ngatehouse_cache_purged_total %llu\n",
                     (unsigned long long)st.used, (unsigned long long)st.cap, (unsigned long long)st.objects,
                     (unsigned long long)st.evictions, (unsigned long long)st.purged);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* GET /v1/experiments/{id}/results?tenant=T: the experiment's statistics (exp.h, stats.h). */
static void results_request(gh_req_t *r, const gh_h1_request_t *m)
{
    static const char pre[] = "/v1/experiments/", suf[] = "/results";
    gh_str_t idp = gh_str(m->path.p + sizeof pre - 1, m->path.n - (sizeof pre - 1) - (sizeof suf - 1));
    char id[256], tenant[256] = "";
    int il = gh_h1_pct_decode(idp, id, sizeof id, 1);
    if (il <= 0 || memchr(id, '/', (size_t)il)) {
        problem(r, 400, "Bad Request", "the experiment id is badly percent-encoded, empty or too long");
        return;
    }
    const char *p = m->query.p, *end = m->query.p + m->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (kv.n > 7 && !memcmp(kv.p, "tenant=", 7) && gh_h1_pct_decode(gh_str(kv.p + 7, kv.n - 7), tenant, sizeof tenant, 1) < 0) {
            problem(r, 400, "Bad Request", "the tenant is badly percent-encoded or too long");
            return;
        }
    }
    if (!tenant[0]) {
        problem(r, 400, "Bad Request", "use GET /v1/experiments/{id}/results?tenant=T");
        return;
    }
    int status = 0;
    char err[256];
    json_t *res = gh_exp_results(tenant, id, &status, err, sizeof err);
    if (!res) {
        problem(r, status, status == 404 ? "Not Found" : "Error", err);
        return;
    }
    char *body = json_dumps(res, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(res);
    if (!body) {
        problem(r, 500, "Internal Server Error", "out of memory");
        return;
    }
    gh_session_respond(r, 200, "application/json", body, strlen(body), "Cache-Control: no-store\r\n");
    free(body);
}

/* GET /v1/experiments/plan?metric=conversion&baseline=P | metric=mean&sd=S, mde=D (absolute),
 * alpha (0.05), power (0.8), variants (2), daily_units (optional): units needed per variant and
 * in all, and the days that takes. */
static void plan_request(gh_req_t *r, const gh_h1_request_t *m)
{
    double baseline = NAN, sd = NAN, mde = NAN, alpha = 0.05, power = 0.8, variants = 2, daily = NAN;
    int conversion = -1;
    const char *p = m->query.p, *end = m->query.p + m->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        const char *eq = memchr(kv.p, '=', kv.n);
        char val[64];
        if (!eq || kv.n - (size_t)(eq - kv.p) - 1 >= sizeof val) {
            problem(r, 400, "Bad Request", "parameters are name=value, values at most 63 bytes");
            return;
        }
        gh_str_t k = gh_str(kv.p, (size_t)(eq - kv.p));
        memcpy(val, eq + 1, kv.n - k.n - 1);
        val[kv.n - k.n - 1] = 0;
        if (gh_str_eq(k, GH_STR("metric"))) {
            conversion = !strcmp(val, "conversion") ? 1 : !strcmp(val, "mean") ? 0 : -2;
            continue;
        }
        char *e = NULL;
        double d = strtod(val, &e);
        if (!e || *e || !isfinite(d)) {
            problem(r, 400, "Bad Request", "a numeric parameter is not a number");
            return;
        }
        if (gh_str_eq(k, GH_STR("baseline")))
            baseline = d;
        else if (gh_str_eq(k, GH_STR("sd")))
            sd = d;
        else if (gh_str_eq(k, GH_STR("mde")))
            mde = d;
        else if (gh_str_eq(k, GH_STR("alpha")))
            alpha = d;
        else if (gh_str_eq(k, GH_STR("power")))
            power = d;
        else if (gh_str_eq(k, GH_STR("variants")))
            variants = d;
        else if (gh_str_eq(k, GH_STR("daily_units")))
            daily = d;
        else {
            problem(r, 400, "Bad Request", "unknown parameter (metric, baseline, sd, mde, alpha, power, variants, daily_units)");
            return;
        }
    }
    if (conversion < 0 || !(mde > 0) || !(alpha > 0 && alpha < 0.5) || !(power > 0.5 && power < 1) ||
        !(variants >= 2 && variants <= 16) || (conversion && !(baseline > 0 && baseline < 1 && baseline + mde < 1)) ||
        (!conversion && !(sd > 0))) {
        problem(r, 400, "Bad Request",
                "give metric=conversion&baseline=P (0<P, P+mde<1) or metric=mean&sd=S, and mde>0; alpha in (0,0.5), power in (0.5,1)");
        return;
    }
    double n = conversion ? gh_stats_sample_size_prop(baseline, mde, alpha, power) : gh_stats_sample_size_mean(sd, mde, alpha, power);
    n = ceil(n);
    char days[32] = "null", body[512];
    if (isfinite(daily) && daily > 0)
        snprintf(days, sizeof days, "%.0f", ceil(n * variants / daily));
    int len = snprintf(body, sizeof body,
                       "{\"units_per_variant\":%.0f,\"units_total\":%.0f,\"alpha\":%g,\"power\":%g,\"mde\":%g,\"days\":%s}\n",
                       n, n * variants, alpha, power, mde, days);
    gh_session_respond(r, 200, "application/json", body, (size_t)len, "Cache-Control: no-store\r\n");
}

/* GET /v1/slos[?tenant=T]: the SLOs (slo.h) with their budgets, burn rates and alerts; a
 * tenant key sees its tenant's (read scope). */
static void slos_request(gh_req_t *r, const gh_h1_request_t *m, const gh_cp_actor_t *a)
{
    if (m->method_id != GH_M_GET && m->method_id != GH_M_HEAD) {
        method_not_allowed(r, "GET, HEAD");
        return;
    }
    if (!a->operator && !(a->scopes & GH_SCOPE_READ)) {
        problem(r, 403, "Forbidden", "this key lacks the read scope");
        return;
    }
    char tenant[256] = "";
    const char *p = m->query.p, *end = m->query.p + m->query.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (kv.n > 7 && !memcmp(kv.p, "tenant=", 7) && gh_h1_pct_decode(gh_str(kv.p + 7, kv.n - 7), tenant, sizeof tenant, 1) < 0) {
            problem(r, 400, "Bad Request", "the tenant is badly percent-encoded or too long");
            return;
        }
    }
    if (!a->operator) {
        if (tenant[0] && strcmp(tenant, a->tenant)) {
            problem(r, 404, "Not Found", "no such tenant");
            return;
        }
        snprintf(tenant, sizeof tenant, "%s", a->tenant);
    }
    json_t *res = gh_slo_json(tenant[0] ? tenant : NULL);
    char *body = res ? json_dumps(res, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(res);
    if (!body) {
        problem(r, 500, "Internal Server Error", "out of memory");
        return;
    }
    gh_session_respond(r, 200, "application/json", body, strlen(body), "Cache-Control: no-store\r\n");
    free(body);
}

void gh_admin_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    if (gh_admin_grpc_is(m)) { /* the gRPC admin API (grpc_admin.h): its own key and rate checks */
        gh_admin_grpc_handle(r, v);
        return;
    }
    /* the dashboard's page and files: no key (the data it fetches needs one) */
    if (m->path.n >= 10 && !memcmp(m->path.p, "/dashboard", 10) && (m->path.n == 10 || m->path.p[10] == '/')) {
        dashboard_request(r, m);
        return;
    }
    /* everything but the probes needs a key: the operator's, or a tenant's (cp.h) */
    if (!gh_str_eq(m->path, GH_STR("/healthz")) && !gh_str_eq(m->path, GH_STR("/readyz"))) {
        const gh_conf_t *c = v->w->gen->conf;
        gh_cp_actor_t a;
        if (gh_cp_auth(c, m, &a) != 0) {
            gh_session_problem(r, 401, NULL, "send Authorization: Bearer <operator key or API key>",
                               "WWW-Authenticate: Bearer realm=\"gatehouse admin\"\r\n");
            return;
        }
        int wait = gh_cp_rate(c, &a, v->peer);
        if (wait > 0) {
            char hdr[64];
            snprintf(hdr, sizeof hdr, "Retry-After: %d\r\n", wait);
            gh_session_problem(r, 429, NULL, "the admin API's rate limit (admin.rate_limit)", hdr);
            return;
        }
        if (gh_cp_handle(r, v, &a))
            return;
        if (gh_str_eq(m->path, GH_STR("/v1/slos"))) {
            slos_request(r, m, &a);
            return;
        }
        if (!a.operator) {
            problem(r, 403, "Forbidden", "this endpoint is the operator's: tenant keys use /v1/tenants/{tenant}/...");
            return;
        }
    }
    /* the path first, then the method: 404 for what is not here, 405 with Allow for the wrong method */
    int get = m->method_id == GH_M_GET || m->method_id == GH_M_HEAD;
    gh_str_t path = m->path;
    int drain = path.n > 11 && !memcmp(path.p, "/upstreams/", 11) &&
                ((path.n > 17 && !memcmp(path.p + path.n - 6, "/drain", 6)) ||
                 (path.n > 19 && !memcmp(path.p + path.n - 8, "/undrain", 8)));
    if (gh_str_eq(path, GH_STR("/cache/purge")) || drain) {
        if (m->method_id != GH_M_POST)
            method_not_allowed(r, "POST");
        else if (drain)
            drain_request(r, m);
        else
            purge_request(r, m, v->w->gen->conf);
        return;
    }
    static const char *const gets[] = {"/healthz", "/readyz", "/upstreams", "/metrics", "/cache", "/v1/analytics",
                                       "/v1/experiments/plan", "/protection/top"};
    int known = path.n > 24 && !memcmp(path.p, "/v1/experiments/", 16) && !memcmp(path.p + path.n - 8, "/results", 8);
    for (size_t i = 0; i < GH_ARRAY_LEN(gets) && !known; i++)
        known = gh_str_eq(path, gh_str(gets[i], strlen(gets[i])));
    if (!known) {
        problem(r, 404, "Not Found", "no such resource");
        return;
    }
    if (!get) {
        method_not_allowed(r, "GET, HEAD");
        return;
    }
    if (gh_str_eq(m->path, GH_STR("/healthz"))) {
        gh_session_respond(r, 200, "text/plain", "ok\n", 3, "Cache-Control: no-store\r\n");
    } else if (gh_str_eq(m->path, GH_STR("/readyz"))) {
        int64_t version = 0, since = 0;
        if (gh_workers_draining()) {
            gh_session_respond(r, 503, "text/plain", "draining\n", 9, "Cache-Control: no-store\r\n");
        } else if (gh_cp_store_state(&version, &since) == 0) {
            /* still ready: the last good configuration keeps serving; the operator is told */
            char body[200];
            time_t t = (time_t)(since / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            int bl = snprintf(body, sizeof body,
                              "ready (store unreachable since %04d-%02d-%02dT%02d:%02d:%02dZ, serving configuration version %lld)\n",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                              (long long)version);
            gh_session_respond(r, 200, "text/plain", body, (size_t)bl, "Cache-Control: no-store\r\n");
        } else {
            gh_session_respond(r, 200, "text/plain", "ready\n", 6, "Cache-Control: no-store\r\n");
        }
    } else if (gh_str_eq(m->path, GH_STR("/upstreams"))) {
        upstreams_json(r, v->w->gen->conf);
    } else if (gh_str_eq(m->path, GH_STR("/metrics"))) {
        size_t len = 0, hlen = 0;
        char *text = gh_metrics_render(&len);
        char *health = gh_health_metrics(v->w->gen->conf, &hlen);
        char dns[8192];
        gh_dns_stats_t ds;
        gh_dns_stats(&ds);
        int dlen = snprintf(dns, sizeof dns,
                            "# HELP gatehouse_dns_queries_total DNS lookups of discovery: dns names.\n"
                            "# TYPE gatehouse_dns_queries_total counter\ngatehouse_dns_queries_total %llu\n"
                            "# HELP gatehouse_dns_failures_total DNS lookups that failed (the last addresses are kept).\n"
                            "# TYPE gatehouse_dns_failures_total counter\ngatehouse_dns_failures_total %llu\n"
                            "# HELP gatehouse_dns_changes_total Address set changes seen.\n"
                            "# TYPE gatehouse_dns_changes_total counter\ngatehouse_dns_changes_total %llu\n"
                            "# HELP gatehouse_dns_names Names followed.\n"
                            "# TYPE gatehouse_dns_names gauge\ngatehouse_dns_names %u\n",
                            (unsigned long long)ds.queries, (unsigned long long)ds.failures,
                            (unsigned long long)ds.changes, ds.names);
        size_t dn = dlen > 0 && (size_t)dlen < sizeof dns ? (size_t)dlen : 0;
        dn += scaleout_metrics(dns + dn, sizeof dns - dn);
        size_t pcap = 16384 + (size_t)v->w->gen->conf->ntenants * 8192, pn = 0;
        char *prot = NULL;
        for (int tries = 0; tries < 4; tries++, pcap *= 2) { /* it says what it needs when cut short */
            free(prot);
            if (!(prot = malloc(pcap)))
                break;
            pn = gh_protect_metrics(v->w->gen->conf, prot, pcap);
            if (pn + 4096 < pcap) /* room for the cache's lines too */
                break;
        }
        if (prot && pn + 4096 < pcap)
            pn += cache_metrics(prot + pn, pcap - pn);
        else
            pn = 0; /* never a cut line: without them rather than broken */
        size_t sn = 0;
        char *slo = gh_slo_metrics(&sn);
        char *all = text && health && slo ? realloc(text, len + hlen + dn + pn + sn) : NULL;
        if (!all) {
            free(text);
            free(health);
            free(prot);
            free(slo);
            problem(r, 503, "Service Unavailable", "out of memory");
            return;
        }
        memcpy(all + len, health, hlen);
        memcpy(all + len + hlen, dns, dn);
        if (pn)
            memcpy(all + len + hlen + dn, prot, pn);
        memcpy(all + len + hlen + dn + pn, slo, sn);
        free(slo);
        free(health);
        free(prot);
        gh_session_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", all, len + hlen + dn + pn + sn,
                           "Cache-Control: no-store\r\n");
        free(all);
    } else if (gh_str_eq(m->path, GH_STR("/cache"))) {
        cache_json(r);
    } else if (gh_str_eq(m->path, GH_STR("/v1/analytics"))) {
        gh_analytics_request(r, v);
    } else if (gh_str_eq(m->path, GH_STR("/v1/experiments/plan"))) {
        plan_request(r, m);
    } else if (m->path.n > 24 && !memcmp(m->path.p, "/v1/experiments/", 16) &&
               !memcmp(m->path.p + m->path.n - 8, "/results", 8)) {
        results_request(r, m);
    } else if (gh_str_eq(m->path, GH_STR("/protection/top"))) {
        char *out = malloc(32768);
        size_t n = out ? gh_protect_top_json(v->w->gen->conf, out, 32768) : 0;
        gh_session_respond(r, out ? 200 : 503, "application/json", out ? out : "", n, "Cache-Control: no-store\r\n");
        free(out);
    } else {
        problem(r, 404, "Not Found", "no such resource");
    }
}
