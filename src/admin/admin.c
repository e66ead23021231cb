/* admin.c: see admin.h. */
#include "protect/protect.h"
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>

#include "proxy/dns.h"
#include "proxy/health.h"

/* GET /upstreams: pools, their policy and backends with their health, as JSON. */
static void upstreams_json(gh_req_t *r, const gh_conf_t *c)
{
    static const char *const policies[] = {"round_robin", "least_request", "peak_ewma", "hash"};
    size_t cap = 4096 + (size_t)c->nupstreams * 512;
    for (uint32_t i = 0; i < c->nupstreams; i++)
        cap += (size_t)c->upstreams[i].nbackends * 512;
    char *out = malloc(cap);
    if (!out) {
        gh_session_respond(r, 503, "text/plain", "out of memory\n", 14, NULL);
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
        gh_session_respond(r, 503, "text/plain", "too large\n", 10, NULL);
    else
        gh_session_respond(r, 200, "application/json", out, n, "Cache-Control: no-store\r\n");
    free(out);
}

/* POST /upstreams/{name}/drain?backend=ADDR and .../undrain?backend=ADDR */
static void drain_request(gh_req_t *r, const gh_h1_request_t *m)
{
    gh_str_t rest = gh_str(m->path.p + 11, m->path.n - 11);
    const char *slash = memchr(rest.p, '/', rest.n);
    gh_str_t q = m->query;
    if (!slash || q.n < 9 || memcmp(q.p, "backend=", 8) || memchr(q.p, '&', q.n)) {
        gh_session_respond(r, 400, "text/plain", "use POST /upstreams/NAME/drain?backend=HOST:PORT (or /undrain)\n",
                           63, NULL);
        return;
    }
    gh_str_t name = gh_str(rest.p, (size_t)(slash - rest.p));
    gh_str_t action = gh_str(slash + 1, rest.n - name.n - 1);
    gh_str_t backend = gh_str(q.p + 8, q.n - 8);
    int drain = gh_str_eq(action, GH_STR("drain"));
    if (!drain && !gh_str_eq(action, GH_STR("undrain"))) {
        gh_session_respond(r, 404, "text/plain", "not found\n", 10, NULL);
        return;
    }
    if (gh_health_set_drain(name, backend, drain) < 0) {
        gh_session_respond(r, 404, "text/plain", "no such upstream backend\n", 25, NULL);
        return;
    }
    gh_session_respond(r, 200, "text/plain", drain ? "drained\n" : "undrained\n", drain ? 8 : 10, NULL);
}

void gh_admin_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    if (m->method_id == GH_M_POST && m->path.n > 11 && !memcmp(m->path.p, "/upstreams/", 11)) {
        drain_request(r, m);
        return;
    }
    if (m->method_id != GH_M_GET && m->method_id != GH_M_HEAD) {
        gh_session_respond(r, 405, "text/plain", "method not allowed\n", 19, "Allow: GET, HEAD\r\n");
        return;
    }
    if (gh_str_eq(m->path, GH_STR("/healthz"))) {
        gh_session_respond(r, 200, "text/plain", "ok\n", 3, "Cache-Control: no-store\r\n");
    } else if (gh_str_eq(m->path, GH_STR("/readyz"))) {
        if (gh_workers_draining())
            gh_session_respond(r, 503, "text/plain", "draining\n", 9, "Cache-Control: no-store\r\n");
        else
            gh_session_respond(r, 200, "text/plain", "ready\n", 6, "Cache-Control: no-store\r\n");
    } else if (gh_str_eq(m->path, GH_STR("/upstreams"))) {
        upstreams_json(r, v->w->gen->conf);
    } else if (gh_str_eq(m->path, GH_STR("/metrics"))) {
        size_t len = 0, hlen = 0;
        char *text = gh_metrics_render(&len);
        char *health = gh_health_metrics(v->w->gen->conf, &hlen);
        char dns[640];
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
        size_t pcap = 16384 + (size_t)v->w->gen->conf->ntenants * 4096;
        char *prot = malloc(pcap);
        size_t pn = prot ? gh_protect_metrics(v->w->gen->conf, prot, pcap) : 0;
        char *all = text && health ? realloc(text, len + hlen + dn + pn) : NULL;
        if (!all) {
            free(text);
            free(health);
            free(prot);
            gh_session_respond(r, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        memcpy(all + len, health, hlen);
        memcpy(all + len + hlen, dns, dn);
        if (pn)
            memcpy(all + len + hlen + dn, prot, pn);
        free(health);
        free(prot);
        gh_session_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", all, len + hlen + dn + pn,
                           "Cache-Control: no-store\r\n");
        free(all);
    } else if (gh_str_eq(m->path, GH_STR("/protection/top"))) {
        char *out = malloc(32768);
        size_t n = out ? gh_protect_top_json(v->w->gen->conf, out, 32768) : 0;
        gh_session_respond(r, out ? 200 : 503, "application/json", out ? out : "", n, "Cache-Control: no-store\r\n");
        free(out);
    } else {
        gh_session_respond(r, 404, "text/plain", "not found\n", 10, NULL);
    }
}
