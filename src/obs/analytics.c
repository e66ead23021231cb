/* analytics.c: see analytics.h. */
#include "obs/analytics.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "obs/metrics.h"

typedef struct {
    uint64_t key[GH_ANALYTICS_ROUTES]; /* 0: empty */
    gh_sk_win_t *win[GH_ANALYTICS_ROUTES];
    uint32_t n;
} wtab_t;

static gh_sk_win_t *window_of(gh_worker_t *w, uint64_t key, int create, int64_t now_ms)
{
    wtab_t *t = w->analytics;
    if (!t) {
        if (!create || !(t = w->analytics = calloc(1, sizeof *t)))
            return NULL;
    }
    uint32_t i = (uint32_t)key & (GH_ANALYTICS_ROUTES - 1);
    for (uint32_t probe = 0; probe < GH_ANALYTICS_ROUTES; probe++, i = (i + 1) & (GH_ANALYTICS_ROUTES - 1)) {
        if (t->key[i] == key)
            return t->win[i];
        if (!t->key[i]) {
            if (!create || t->n >= GH_ANALYTICS_ROUTES / 2)
                return NULL; /* full: this route is not recorded on this worker */
            gh_sk_win_t *win = malloc(sizeof *win);
            gh_sk_cfg_t cfg;
            gh_sk_cfg_compact(&cfg);
            if (!win || gh_sk_win_init(win, &cfg, now_ms) != 0) {
                free(win);
                return NULL;
            }
            t->key[i] = key;
            t->win[i] = win;
            t->n++;
            return win;
        }
    }
    return NULL;
}

void gh_analytics_record(gh_worker_t *w, const gh_conf_route_t *rt, const gh_sk_event_t *ev, int64_t now_ms)
{
    gh_sk_win_t *win = window_of(w, rt->analytics_key, 1, now_ms);
    if (win)
        gh_sk_win_add(win, now_ms, ev);
}

void gh_analytics_free(gh_worker_t *w)
{
    wtab_t *t = w->analytics;
    if (!t)
        return;
    for (uint32_t i = 0; i < GH_ANALYTICS_ROUTES; i++)
        if (t->win[i]) {
            gh_sk_win_free(t->win[i]);
            free(t->win[i]);
        }
    free(t);
    w->analytics = NULL;
}

/* ---- the request: a read on every worker, merged, answered by the admin thread ---- */

struct areq;
typedef struct {
    gh_wtask_t t;
    struct areq *a;
} rtask_t;

typedef struct areq {
    uint64_t token, key;
    uint32_t admin_id, nworkers;
    int span, top, pending;
    pthread_mutex_t mu;
    gh_sk_set_t out;
    char tenant[130], route[130];
    gh_wtask_t done;
    rtask_t reads[];
} areq_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void answer(gh_wtask_t *t)
{
    areq_t *a = (areq_t *)((char *)t - offsetof(areq_t, done));
    static const char *const spans[] = {"minute", "hour", "day"};
    const gh_sk_set_t *s = &a->out;
    json_t *o = json_object(), *tops = json_object(), *lat = json_object(), *st = json_object(), *cache = json_object();
    json_object_set_new(o, "tenant", json_string(a->tenant));
    json_object_set_new(o, "route", json_string(a->route));
    json_object_set_new(o, "window", json_string(spans[a->span]));
    json_object_set_new(o, "requests", json_integer((json_int_t)s->requests));
    json_object_set_new(o, "bytes_in", json_integer((json_int_t)s->bytes_in));
    json_object_set_new(o, "bytes_out", json_integer((json_int_t)s->bytes_out));
    json_object_set_new(o, "visitors",
                        json_pack("{s:o, s:f}", "estimate", num(round(gh_sk_hll_estimate(&s->visitors))),
                                  "relative_standard_error", gh_sk_hll_stderr(s->cfg.hll_p)));
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    static const char *const qn[] = {"p50", "p90", "p99", "p999"};
    for (int i = 0; i < 4; i++) /* recorded in microseconds */
        json_object_set_new(lat, qn[i], num(gh_sk_dd_quantile(&s->latency, qs[i], NULL) / 1000.0));
    json_object_set_new(lat, "max", num(s->latency.count ? s->latency.max / 1000.0 : NAN));
    json_object_set_new(lat, "mean", num(s->latency.count ? s->latency.sum / (double)s->latency.count / 1000.0 : NAN));
    json_object_set_new(lat, "relative_accuracy", json_real(s->cfg.dd_alpha));
    json_object_set_new(o, "latency_ms", lat);
    static const char *const classes[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < GH_SK_STATUS_CLASSES; i++)
        json_object_set_new(st, classes[i], json_integer((json_int_t)s->status[i]));
    json_object_set_new(o, "status", st);
    for (int i = 0; i < GH_SK_CACHE_RESULTS && i < 7; i++) /* gh_cache_result_names */
        json_object_set_new(cache, gh_cache_result_names[i][0] ? gh_cache_result_names[i] : "none",
                            json_integer((json_int_t)s->cache[i]));
    json_object_set_new(o, "cache", cache);
    gh_sk_item_t items[100];
    for (int d = 0; d < GH_SK_NDIM; d++) {
        json_t *arr = json_array();
        size_t n = gh_sk_top_list(&s->top[d], items, (size_t)a->top);
        for (size_t i = 0; i < n; i++) {
            json_t *k = json_stringn(items[i].key.p, items[i].key.n);
            if (!k) { /* not UTF-8 (bytes from the wire): escaped as latin-1-ish replacement */
                char hexk[2 * 128 + 1];
                size_t m = GH_MIN(items[i].key.n, 128);
                for (size_t j = 0; j < m; j++)
                    snprintf(hexk + 2 * j, 3, "%02x", (unsigned char)items[i].key.p[j]);
                k = json_pack("{s:s}", "hex", hexk);
            }
            json_array_append_new(arr, json_pack("{s:o, s:I, s:I}", "key", k, "count", (json_int_t)items[i].count,
                                                 "error", (json_int_t)items[i].error));
        }
        json_object_set_new(tops, gh_sk_dim_names[d], arr);
    }
    json_object_set_new(o, "top", tops);
    char *body = json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (body)
        gh_session_answer_deferred(a->token, 200, "application/json", body, strlen(body), "Cache-Control: no-store\r\n");
    else {
        static const char oom[] = "{\"type\":\"https://gatehouse.dev/problems/internal\",\"title\":\"Internal Server "
                                  "Error\",\"status\":500,\"detail\":\"out of memory\"}\n";
        gh_session_answer_deferred(a->token, 500, "application/problem+json", oom, sizeof oom - 1,
                                   "Cache-Control: no-store\r\n");
    }
    free(body);
    gh_sk_set_free(&a->out);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static void read_one(gh_wtask_t *t)
{
    rtask_t *rt = (rtask_t *)t;
    areq_t *a = rt->a;
    gh_worker_t *w = gh_worker_self();
    gh_sk_win_t *win = w ? window_of(w, a->key, 0, 0) : NULL;
    if (win) {
        pthread_mutex_lock(&a->mu);
        gh_sk_win_read(win, wall_ms(), a->span, &a->out);
        pthread_mutex_unlock(&a->mu);
    }
    if (__atomic_sub_fetch(&a->pending, 1, __ATOMIC_ACQ_REL) == 0) {
        a->done.fn = answer;
        gh_worker_post(a->admin_id, &a->done);
    }
}

static void problem(gh_req_t *r, int status, const char *detail)
{
    gh_session_problem(r, status, NULL, detail, NULL);
}

static int param(gh_str_t q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (kv.n > nl && kv.p[nl] == '=' && !memcmp(kv.p, name, nl)) {
            size_t n = 0;
            for (size_t i = nl + 1; i < kv.n; i++) { /* percent-decoding, '+' as a space */
                int c = (unsigned char)kv.p[i];
                if (c == '%' && i + 2 < kv.n) {
                    char hx[3] = {kv.p[i + 1], kv.p[i + 2], 0};
                    char *e;
                    long v = strtol(hx, &e, 16);
                    if (*e || v == 0)
                        return -1;
                    c = (int)v;
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (n + 1 >= cap)
                    return -1;
                out[n++] = (char)c;
            }
            out[n] = 0;
            return 1;
        }
    }
    return 0;
}

void gh_analytics_request(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_conf_t *c = v->w->gen->conf;
    char tenant[130], route[130], window[16] = "minute", top[8] = "10";
    if (param(v->msg->query, "tenant", tenant, sizeof tenant) != 1 || param(v->msg->query, "route", route, sizeof route) != 1 ||
        param(v->msg->query, "window", window, sizeof window) < 0 || param(v->msg->query, "top", top, sizeof top) < 0) {
        problem(r, 400, "use GET /v1/analytics?tenant=T&route=R[&window=minute|hour|day][&top=N]");
        return;
    }
    int span = !strcmp(window, "minute") ? GH_SK_MINUTE : !strcmp(window, "hour") ? GH_SK_HOUR
             : !strcmp(window, "day")    ? GH_SK_DAY
                                         : -1;
    char *e;
    long ntop = strtol(top, &e, 10);
    if (span < 0 || *e || ntop < 1 || ntop > 100) {
        problem(r, 400, "window is minute, hour or day; top is 1..100");
        return;
    }
    const gh_conf_route_t *rt = NULL;
    for (uint32_t i = 0; i < c->ntenants && !rt; i++) {
        const gh_conf_tenant_t *t = &c->tenants[i];
        if (strcmp(t->name, tenant))
            continue;
        for (uint32_t s = 0; s < t->nsites && !rt; s++)
            for (uint32_t k = 0; k < t->sites[s].nroutes && !rt; k++)
                if (!strcmp(t->sites[s].routes[k].name, route) && t->sites[s].routes[k].analytics)
                    rt = &t->sites[s].routes[k];
    }
    if (!rt) {
        problem(r, 404, "no such tenant and route with analytics: true");
        return;
    }
    uint32_t nw = c->workers;
    areq_t *a = calloc(1, sizeof *a + nw * sizeof(rtask_t));
    gh_sk_cfg_t cfg;
    gh_sk_cfg_compact(&cfg);
    if (!a || gh_sk_set_init(&a->out, &cfg) != 0) {
        free(a);
        problem(r, 503, "out of memory");
        return;
    }
    pthread_mutex_init(&a->mu, NULL);
    snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
    snprintf(a->route, sizeof a->route, "%s", route);
    a->key = rt->analytics_key;
    a->span = span;
    a->top = (int)ntop;
    a->admin_id = v->w->id;
    a->nworkers = nw;
    a->pending = (int)nw;
    a->token = gh_session_defer(r, 10000);
    for (uint32_t i = 0; i < nw; i++) {
        a->reads[i].a = a;
        a->reads[i].t.fn = read_one;
        gh_worker_post(i, &a->reads[i].t);
    }
}
