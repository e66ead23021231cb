/* metrics.c: see metrics.h. */
#include "obs/metrics.h"
#include "obs/slo.h"
#include "obs/trace.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint32_t nslots;
static gh_thread_stats_t *threads;
static gh_route_stats_t *routes;
static gh_upstream_stats_t *upstreams;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t reloads_ok, reloads_failed;
static uint64_t start_time;

/* Upper bounds of the duration histogram, in microseconds. */
static const uint64_t bucket_us[GH_HIST_BUCKETS - 1] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[GH_HIST_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};

uint64_t gh_metrics_bucket_us(int b) { return b >= 0 && b < GH_HIST_BUCKETS - 1 ? bucket_us[b] : UINT64_MAX; }

int gh_metrics_init(uint32_t n)
{
    nslots = n;
    threads = aligned_alloc(GH_CACHELINE, sizeof(*threads) * n);
    if (!threads)
        return GH_ENOMEM;
    memset(threads, 0, sizeof(*threads) * n);
    start_time = (uint64_t)time(NULL);
    return 0;
}

gh_thread_stats_t *gh_metrics_thread(uint32_t slot) { return &threads[slot]; }

uint32_t gh_metrics_nslots(void) { return nslots; }

static void *alloc_series(size_t head, size_t slot)
{
    size_t sz = head + slot * nslots;
    void *p = aligned_alloc(GH_CACHELINE, (sz + GH_CACHELINE - 1) / GH_CACHELINE * GH_CACHELINE);
    if (p)
        memset(p, 0, sz);
    return p;
}

static gh_route_stats_t *route_series(const char *tenant, const char *route)
{
    for (gh_route_stats_t *s = routes; s; s = s->next)
        if (!strcmp(s->tenant, tenant) && !strcmp(s->route, route))
            return s;
    gh_route_stats_t *s = alloc_series(sizeof(*s), sizeof(gh_route_slot_t));
    if (!s)
        return NULL;
    s->tenant = strdup(tenant);
    s->route = strdup(route);
    if (!s->tenant || !s->route) {
        free(s->tenant);
        free(s->route);
        free(s);
        return NULL;
    }
    s->next = routes;
    routes = s;
    return s;
}

static gh_upstream_stats_t *upstream_series(const char *name)
{
    for (gh_upstream_stats_t *s = upstreams; s; s = s->next)
        if (!strcmp(s->name, name))
            return s;
    gh_upstream_stats_t *s = alloc_series(sizeof(*s), sizeof(gh_upstream_slot_t));
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    s->next = upstreams;
    upstreams = s;
    return s;
}

int gh_metrics_bind(gh_conf_t *c)
{
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i < c->nupstreams; i++)
        if (!(c->upstreams[i].stats = upstream_series(c->upstreams[i].name)))
            rc = GH_ENOMEM;
    for (uint32_t t = 0; t < c->ntenants; t++) {
        gh_conf_tenant_t *tn = &c->tenants[t];
        for (uint32_t s = 0; s < tn->nsites; s++)
            for (uint32_t r = 0; r < tn->sites[s].nroutes; r++) {
                gh_conf_route_t *rt = &tn->sites[s].routes[r];
                if (!(rt->stats = route_series(tn->name, rt->name)))
                    rc = GH_ENOMEM;
            }
    }
    pthread_mutex_unlock(&reg_lock);
    if (gh_slo_bind(c) < 0)
        rc = GH_ENOMEM;
    return rc;
}

void gh_metrics_request(gh_route_stats_t *s, uint32_t slot, int status, uint64_t dur_us,
                        uint64_t bytes_in, uint64_t bytes_out)
{
    if (!s)
        return;
    gh_route_slot_t *x = &s->slot[slot];
    int cls = status / 100 - 1;
    if (cls < 0 || cls > 4)
        cls = 4;
    GH_COUNT(x->code[cls], 1);
    int b = 0;
    while (b < GH_HIST_BUCKETS - 1 && dur_us > bucket_us[b])
        b++;
    GH_COUNT(x->hist[b], 1);
    GH_COUNT(x->sum_us, dur_us);
    GH_COUNT(x->bytes_in, bytes_in);
    GH_COUNT(x->bytes_out, bytes_out);
}

const char *const gh_cache_result_names[7] = {"", "hit", "stale", "miss", "revalidated", "bypass", "error"};

void gh_metrics_cache(gh_route_stats_t *s, uint32_t slot, int result)
{
    if (s && result > 0 && result < 7)
        GH_COUNT(s->slot[slot].cache[result], 1);
}

void gh_metrics_reload(int ok)
{
    __atomic_add_fetch(ok ? &reloads_ok : &reloads_failed, 1, __ATOMIC_RELAXED);
}

void gh_text_printf(gh_text_t *b, const char *fmt, ...)
{
    for (;;) {
        if (b->oom)
            return;
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (m >= 0 && (size_t)m < b->cap - b->n) {
            b->n += (size_t)m;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)(m > 0 ? m : 0);
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

const char *gh_metrics_esc(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = 0;
    return out;
}

#define SUM(var, expr)                   \
    uint64_t var = 0;                    \
    for (uint32_t i_ = 0; i_ < nslots; i_++) \
        var += GH_READ(expr);

char *gh_metrics_render(size_t *len)
{
    gh_text_t b = {.p = malloc(16384), .cap = 16384};
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    char t1[256], t2[256];
    pthread_mutex_lock(&reg_lock);

    gh_text_printf(&b, "# HELP gatehouse_requests_total Requests answered, by tenant, route and status class.\n"
                  "# TYPE gatehouse_requests_total counter\n");
    for (gh_route_stats_t *s = routes; s; s = s->next)
        for (int c = 0; c < 5; c++) {
            SUM(v, s->slot[i_].code[c]);
            gh_text_printf(&b, "gatehouse_requests_total{tenant=\"%s\",route=\"%s\",code=\"%dxx\"} %llu\n",
                      gh_metrics_esc(s->tenant, t1, sizeof t1), gh_metrics_esc(s->route, t2, sizeof t2), c + 1,
                      (unsigned long long)v);
        }
    gh_text_printf(&b, "# HELP gatehouse_request_duration_seconds Time from the first byte of a request to its last response byte.\n"
                  "# TYPE gatehouse_request_duration_seconds histogram\n");
    for (gh_route_stats_t *s = routes; s; s = s->next) {
        uint64_t cum = 0;
        gh_metrics_esc(s->tenant, t1, sizeof t1);
        gh_metrics_esc(s->route, t2, sizeof t2);
        for (int h = 0; h < GH_HIST_BUCKETS; h++) {
            SUM(v, s->slot[i_].hist[h]);
            cum += v;
            gh_text_printf(&b, "gatehouse_request_duration_seconds_bucket{tenant=\"%s\",route=\"%s\",le=\"%s\"} %llu\n",
                      t1, t2, bucket_le[h], (unsigned long long)cum);
        }
        SUM(sum, s->slot[i_].sum_us);
        gh_text_printf(&b, "gatehouse_request_duration_seconds_sum{tenant=\"%s\",route=\"%s\"} %.6f\n", t1, t2,
                  (double)sum / 1e6);
        gh_text_printf(&b, "gatehouse_request_duration_seconds_count{tenant=\"%s\",route=\"%s\"} %llu\n", t1, t2,
                  (unsigned long long)cum);
    }
    gh_text_printf(&b, "# HELP gatehouse_request_bytes_total Bytes received from clients (in) and sent to them (out).\n"
                  "# TYPE gatehouse_request_bytes_total counter\n");
    for (gh_route_stats_t *s = routes; s; s = s->next) {
        SUM(in, s->slot[i_].bytes_in);
        SUM(out, s->slot[i_].bytes_out);
        gh_metrics_esc(s->tenant, t1, sizeof t1);
        gh_metrics_esc(s->route, t2, sizeof t2);
        gh_text_printf(&b, "gatehouse_request_bytes_total{tenant=\"%s\",route=\"%s\",direction=\"in\"} %llu\n", t1, t2,
                  (unsigned long long)in);
        gh_text_printf(&b, "gatehouse_request_bytes_total{tenant=\"%s\",route=\"%s\",direction=\"out\"} %llu\n", t1, t2,
                  (unsigned long long)out);
    }

    gh_text_printf(&b, "# HELP gatehouse_cache_requests_total Requests on caching routes, by cache result.\n"
                  "# TYPE gatehouse_cache_requests_total counter\n");
    for (gh_route_stats_t *s = routes; s; s = s->next) {
        uint64_t any = 0;
        for (int k = 1; k < 7; k++) {
            SUM(v, s->slot[i_].cache[k]);
            any |= v;
        }
        if (!any)
            continue;
        gh_metrics_esc(s->tenant, t1, sizeof t1);
        gh_metrics_esc(s->route, t2, sizeof t2);
        for (int k = 1; k < 7; k++) {
            SUM(v, s->slot[i_].cache[k]);
            gh_text_printf(&b, "gatehouse_cache_requests_total{tenant=\"%s\",route=\"%s\",result=\"%s\"} %llu\n", t1, t2,
                      gh_cache_result_names[k], (unsigned long long)v);
        }
    }

    /* the programmable edge: only routes where something happened */
    static const char *const rule_kinds[4] = {"headers", "redirect", "rewrite", "respond"};
    static const char *const fn_results[3] = {"ok", "error", "limit"};
    gh_text_printf(&b, "# HELP gatehouse_rules_applied_total Requests a site's rules changed, by what they did.\n"
                       "# TYPE gatehouse_rules_applied_total counter\n");
    for (gh_route_stats_t *s = routes; s; s = s->next)
        for (int k = 0; k < 4; k++) {
            SUM(v, s->slot[i_].rules[k]);
            if (v)
                gh_text_printf(&b, "gatehouse_rules_applied_total{tenant=\"%s\",route=\"%s\",action=\"%s\"} %llu\n",
                               gh_metrics_esc(s->tenant, t1, sizeof t1), gh_metrics_esc(s->route, t2, sizeof t2),
                               rule_kinds[k], (unsigned long long)v);
        }
    gh_text_printf(&b, "# HELP gatehouse_edge_function_calls_total Edge function invocations, by result (error: the "
                       "function raised an error; limit: it hit its instruction or memory limit).\n"
                       "# TYPE gatehouse_edge_function_calls_total counter\n");
    for (gh_route_stats_t *s = routes; s; s = s->next)
        for (int k = 0; k < 3; k++) {
            SUM(v, s->slot[i_].fn[k]);
            if (v)
                gh_text_printf(&b, "gatehouse_edge_function_calls_total{tenant=\"%s\",route=\"%s\",result=\"%s\"} "
                                   "%llu\n",
                               gh_metrics_esc(s->tenant, t1, sizeof t1), gh_metrics_esc(s->route, t2, sizeof t2),
                               fn_results[k], (unsigned long long)v);
        }

    static const struct {
        const char *name, *help;
        size_t off;
    } ups[] = {
        {"gatehouse_upstream_requests_total", "Requests sent to an upstream pool.", offsetof(gh_upstream_slot_t, requests)},
        {"gatehouse_upstream_connect_errors_total", "Failed connects to a backend of the pool.", offsetof(gh_upstream_slot_t, connect_errors)},
        {"gatehouse_upstream_timeouts_total", "Connect, response or idle timeouts towards the pool.", offsetof(gh_upstream_slot_t, timeouts)},
        {"gatehouse_upstream_failures_total", "Upstream connections reset or closed before a complete response.", offsetof(gh_upstream_slot_t, failures)},
        {"gatehouse_upstream_connections_opened_total", "New connections to backends of the pool.", offsetof(gh_upstream_slot_t, conns_opened)},
        {"gatehouse_upstream_connections_reused_total", "Requests sent on a pooled keep-alive connection.", offsetof(gh_upstream_slot_t, conns_reused)},
        {"gatehouse_upstream_retries_total", "Attempts retried on another backend.", offsetof(gh_upstream_slot_t, retries)},
        {"gatehouse_upstream_retry_budget_exhausted_total", "Retries refused by the retry budget.", offsetof(gh_upstream_slot_t, budget_exhausted)},
        {"gatehouse_upstream_ejections_total", "Backends ejected after consecutive failures (per worker).", offsetof(gh_upstream_slot_t, ejections)},
        {"gatehouse_upstream_breaker_overflows_total", "Requests refused with 503 by the pool's circuit breaker.", offsetof(gh_upstream_slot_t, overflows)},
        {"gatehouse_upstream_tls_failures_total", "TLS handshakes with the pool's backends that failed (verification, protocol).", offsetof(gh_upstream_slot_t, tls_failures)},
    };
    for (size_t k = 0; k < GH_ARRAY_LEN(ups); k++) {
        gh_text_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", ups[k].name, ups[k].help, ups[k].name);
        for (gh_upstream_stats_t *s = upstreams; s; s = s->next) {
            SUM(v, *(uint64_t *)((char *)&s->slot[i_] + ups[k].off));
            gh_text_printf(&b, "%s{upstream=\"%s\"} %llu\n", ups[k].name, gh_metrics_esc(s->name, t1, sizeof t1),
                      (unsigned long long)v);
        }
    }
    gh_text_printf(&b, "# HELP gatehouse_upstream_active_connections Open connections to the pool's backends.\n"
                  "# TYPE gatehouse_upstream_active_connections gauge\n");
    for (gh_upstream_stats_t *s = upstreams; s; s = s->next)
        gh_text_printf(&b, "gatehouse_upstream_active_connections{upstream=\"%s\"} %u\n", gh_metrics_esc(s->name, t1, sizeof t1),
                  __atomic_load_n(&s->live.conns, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&reg_lock);

    static const struct {
        const char *name, *type, *help;
        size_t off;
    } th[] = {
        {"gatehouse_connections_active", "gauge", "Open client connections.", offsetof(gh_thread_stats_t, conns_active)},
        {"gatehouse_connections_accepted_total", "counter", "Client connections accepted.", offsetof(gh_thread_stats_t, conns_accepted)},
        {"gatehouse_connections_rejected_total", "counter", "Client connections refused over a connection cap.", offsetof(gh_thread_stats_t, conns_rejected)},
        {"gatehouse_http_requests_total", "counter", "Request heads received (all listeners, all outcomes).", offsetof(gh_thread_stats_t, requests)},
        {"gatehouse_no_site_total", "counter", "Requests whose Host matched no site (404).", offsetof(gh_thread_stats_t, no_site)},
        {"gatehouse_tls_handshakes_total", "counter", "TLS handshakes completed.", offsetof(gh_thread_stats_t, tls_handshakes)},
        {"gatehouse_tls_resumed_total", "counter", "TLS handshakes that resumed a session (ticket).", offsetof(gh_thread_stats_t, tls_resumed)},
        {"gatehouse_tls_handshake_failures_total", "counter", "TLS handshakes that failed or were abandoned.", offsetof(gh_thread_stats_t, tls_failed)},
        {"gatehouse_tls_plain_http_total", "counter", "Plain HTTP requests sent to a TLS listener (answered 400).", offsetof(gh_thread_stats_t, tls_plain_http)},
        {"gatehouse_h2_connections_total", "counter", "HTTP/2 connections.", offsetof(gh_thread_stats_t, h2_conns)},
        {"gatehouse_h2_streams_total", "counter", "HTTP/2 streams (requests).", offsetof(gh_thread_stats_t, h2_streams)},
        {"gatehouse_h2_goaways_total", "counter", "HTTP/2 GOAWAY frames sent (drain, idle, protections).", offsetof(gh_thread_stats_t, h2_goaways)},
        {"gatehouse_no_route_total", "counter", "Requests that matched no route of their site (404).", offsetof(gh_thread_stats_t, no_route)},
        {"gatehouse_access_log_dropped_total", "counter", "Access log records dropped because the writer fell behind.", offsetof(gh_thread_stats_t, access_log_dropped)},
    };
    for (size_t k = 0; k < GH_ARRAY_LEN(th); k++) {
        SUM(v, *(uint64_t *)((char *)&threads[i_] + th[k].off));
        gh_text_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", th[k].name, th[k].help, th[k].name, th[k].type,
                  th[k].name, (unsigned long long)v);
    }
    { /* tracing (obs/trace.c): zero when it is off */
        gh_trace_stats_t ts;
        gh_trace_stats(&ts);
        gh_text_printf(&b,
                  "# HELP gatehouse_trace_spans_exported_total Spans the OTLP collector accepted.\n"
                  "# TYPE gatehouse_trace_spans_exported_total counter\ngatehouse_trace_spans_exported_total %llu\n"
                  "# HELP gatehouse_trace_spans_dropped_total Spans lost: a worker's ring was full, or an export failed after its retries.\n"
                  "# TYPE gatehouse_trace_spans_dropped_total counter\n"
                  "gatehouse_trace_spans_dropped_total{reason=\"ring_full\"} %llu\n"
                  "gatehouse_trace_spans_dropped_total{reason=\"export_failed\"} %llu\n"
                  "# HELP gatehouse_trace_exports_total OTLP export requests (batches), by result.\n"
                  "# TYPE gatehouse_trace_exports_total counter\n"
                  "gatehouse_trace_exports_total{result=\"ok\"} %llu\n"
                  "gatehouse_trace_exports_total{result=\"error\"} %llu\n",
                  (unsigned long long)ts.exported, (unsigned long long)ts.dropped_ring,
                  (unsigned long long)ts.dropped_export, (unsigned long long)ts.exports_ok,
                  (unsigned long long)ts.exports_failed);
    }
    gh_text_printf(&b, "# HELP gatehouse_parser_rejections_total Requests rejected by the HTTP/1 parser, by reason.\n"
                  "# TYPE gatehouse_parser_rejections_total counter\n");
    for (int e = gh_err_index(GH_EH1_METHOD); e <= gh_err_index(GH_EH1_STATUS); e++) {
        SUM(v, threads[i_].parser_rejections[e]);
        gh_text_printf(&b, "gatehouse_parser_rejections_total{reason=\"%s\"} %llu\n", gh_err_name(gh_err_code(e)),
                  (unsigned long long)v);
    }
    static const char *const h2kinds[] = {
#define X(n, s) s,
        GH_H2_PROTECTIONS(X)
#undef X
    };
    gh_text_printf(&b, "# HELP gatehouse_h2_protections_total HTTP/2 connections or streams cut by a protection, by attack kind.\n"
                  "# TYPE gatehouse_h2_protections_total counter\n");
    for (int k = 0; k < GH_H2P__COUNT; k++) {
        SUM(v, threads[i_].h2_protections[k]);
        gh_text_printf(&b, "gatehouse_h2_protections_total{kind=\"%s\"} %llu\n", h2kinds[k], (unsigned long long)v);
    }
    gh_text_printf(&b, "# HELP gatehouse_config_reloads_total Configuration reloads, by result.\n"
                  "# TYPE gatehouse_config_reloads_total counter\n"
                  "gatehouse_config_reloads_total{result=\"ok\"} %llu\n"
                  "gatehouse_config_reloads_total{result=\"error\"} %llu\n",
              (unsigned long long)__atomic_load_n(&reloads_ok, __ATOMIC_RELAXED),
              (unsigned long long)__atomic_load_n(&reloads_failed, __ATOMIC_RELAXED));
    gh_text_printf(&b, "# HELP gatehouse_start_time_seconds Unix time the process started.\n"
                  "# TYPE gatehouse_start_time_seconds gauge\ngatehouse_start_time_seconds %llu\n",
              (unsigned long long)start_time);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
