/* slo.c: see slo.h. */
#include "obs/slo.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "obs/metrics.h"

#define MONTH_MS 2592000000ull /* the SRE workbook's 30-day window its alert windows are given for */

const char *const gh_slo_window_names[GH_SLO_NWIN] = {"5m", "30m", "1h", "2h", "6h", "1d", "3d"};
static const uint64_t window_30d_s[GH_SLO_NWIN] = {300, 1800, 3600, 7200, 21600, 86400, 259200};

uint64_t gh_slo_tick_ms(uint64_t window_ms)
{
    uint64_t t = window_ms / 34560;
    return t < 25 ? 25 : t > 10000 ? 10000 : t;
}

uint64_t gh_slo_window_ms(uint64_t window_ms, int w)
{
    return (uint64_t)((double)window_ms * (double)window_30d_s[w] * 1000.0 / (double)MONTH_MS + 0.5);
}

/* ---------------------------------------------------------------- series (pure) */

static void ring_push(gh_slo_ring_t *r, gh_slo_count_t c)
{
    r->s[r->head] = c;
    r->head = (r->head + 1) % r->len;
    if (r->n < r->len)
        r->n++;
}

/* The sample j places before the newest (j < n). */
static gh_slo_count_t ring_back(const gh_slo_ring_t *r, uint32_t j)
{
    return r->s[(r->head + r->len - 1 - j) % r->len];
}

int gh_slo_series_init(gh_slo_series_t *s, uint64_t window_ms, uint64_t now_ms)
{
    memset(s, 0, sizeof *s);
    s->window_ms = window_ms;
    s->tick_ms = gh_slo_tick_ms(window_ms);
    uint64_t step[3] = {s->tick_ms, gh_slo_window_ms(window_ms, GH_SLO_W5M), gh_slo_window_ms(window_ms, GH_SLO_W1H)};
    uint64_t span[3] = {gh_slo_window_ms(window_ms, GH_SLO_W1H), gh_slo_window_ms(window_ms, GH_SLO_W3D), window_ms};
    for (int k = 0; k < 3; k++) {
        gh_slo_ring_t *r = &s->lv[k];
        r->step_ms = step[k] < s->tick_ms ? s->tick_ms : step[k];
        r->len = (uint32_t)((span[k] + r->step_ms - 1) / r->step_ms) + 2;
        if (!(r->s = calloc(r->len, sizeof *r->s))) {
            gh_slo_series_free(s);
            return GH_ENOMEM;
        }
        ring_push(r, (gh_slo_count_t){0, 0});
        r->last_ms = now_ms;
        r->next_ms = now_ms + r->step_ms;
    }
    s->now_ms = now_ms;
    return 0;
}

void gh_slo_series_free(gh_slo_series_t *s)
{
    for (int k = 0; k < 3; k++) {
        free(s->lv[k].s);
        s->lv[k].s = NULL;
    }
}

void gh_slo_series_add(gh_slo_series_t *s, uint64_t now_ms, gh_slo_count_t cum)
{
    s->cur = cum;
    s->now_ms = now_ms;
    for (int k = 0; k < 3; k++) {
        gh_slo_ring_t *r = &s->lv[k];
        if (now_ms < r->next_ms)
            continue;
        ring_push(r, cum);
        r->last_ms = now_ms;
        /* keep the grid when on time; after a stall restart it from now */
        r->next_ms = r->next_ms + r->step_ms > now_ms ? r->next_ms + r->step_ms : now_ms + r->step_ms;
    }
}

gh_slo_count_t gh_slo_series_delta(const gh_slo_series_t *s, uint64_t d)
{
    /* the finest ring that reaches d back; its samples are a step apart, the newest one
     * taken at last_ms */
    int k = 0;
    while (k < 2 && (uint64_t)(s->lv[k].len - 2) * s->lv[k].step_ms < d)
        k++;
    const gh_slo_ring_t *r = &s->lv[k];
    uint64_t age = s->now_ms > r->last_ms ? s->now_ms - r->last_ms : 0; /* cur covers it */
    uint64_t j = d > age ? (d - age + r->step_ms / 2) / r->step_ms : 0;
    if (j >= r->n)
        j = r->n - 1;
    gh_slo_count_t old = ring_back(r, (uint32_t)j), out;
    out.total = s->cur.total > old.total ? s->cur.total - old.total : 0;
    out.good = s->cur.good > old.good ? s->cur.good - old.good : 0;
    if (out.good > out.total)
        out.good = out.total;
    return out;
}

static double burn(gh_slo_count_t c, double target)
{
    if (!c.total)
        return 0;
    return (double)(c.total - c.good) / (double)c.total / (1.0 - target);
}

void gh_slo_eval(const gh_slo_series_t *s, double target, gh_slo_eval_t *ev)
{
    for (int w = 0; w < GH_SLO_NWIN; w++)
        ev->burn[w] = burn(gh_slo_series_delta(s, gh_slo_window_ms(s->window_ms, w)), target);
    ev->in_window = gh_slo_series_delta(s, s->window_ms);
    ev->budget = 1.0 - burn(ev->in_window, target);
    const double *b = ev->burn;
    ev->page = (b[GH_SLO_W1H] > 14.4 && b[GH_SLO_W5M] > 14.4) || (b[GH_SLO_W6H] > 6 && b[GH_SLO_W30M] > 6);
    ev->ticket = (b[GH_SLO_W1D] > 3 && b[GH_SLO_W2H] > 3) || (b[GH_SLO_W3D] > 1 && b[GH_SLO_W6H] > 1);
}

/* ---------------------------------------------------------------- registry */

typedef struct {
    gh_route_stats_t *st;
    gh_slo_count_t last; /* the source's counts when last read */
} source_t;

typedef struct slo {
    struct slo *next;
    char *tenant, *route, *name; /* route "" for a tenant's SLO */
    int objective;
    double target;
    uint32_t threshold_ms, window_ms;
    int bucket;              /* latency: the last histogram bucket counted good */
    uint64_t eff_threshold_us; /* its upper bound */
    int live;                /* in the configuration in force */
    source_t *src;
    uint32_t nsrc;
    gh_slo_count_t acc;      /* good and total since the state began */
    gh_slo_series_t ser;
    gh_slo_eval_t ev;        /* as of the last tick */
    int page, ticket;        /* alert states (logged when they change) */
} slo_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER; /* re-made on CLOCK_MONOTONIC by gh_slo_start */
static slo_t *slos;
static pthread_t thr;
static int running, stopping;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A source's cumulative counts for s's objective. */
static gh_slo_count_t read_source(const slo_t *s, const gh_route_stats_t *st)
{
    gh_slo_count_t c = {0, 0};
    uint32_t ns = gh_metrics_nslots();
    for (uint32_t i = 0; i < ns; i++) {
        const gh_route_slot_t *x = &st->slot[i];
        if (s->objective == GH_SLO_AVAILABILITY) {
            uint64_t all = 0;
            for (int k = 0; k < 5; k++)
                all += GH_READ(x->code[k]);
            c.total += all;
            c.good += all - GH_READ(x->code[4]);
        } else {
            for (int b = 0; b < GH_HIST_BUCKETS; b++) {
                uint64_t v = GH_READ(x->hist[b]);
                c.total += v;
                if (b <= s->bucket)
                    c.good += v;
            }
        }
    }
    if (c.good > c.total) /* read while being written */
        c.good = c.total;
    return c;
}

static slo_t *find(const char *tenant, const char *route, const char *name)
{
    for (slo_t *s = slos; s; s = s->next)
        if (!strcmp(s->tenant, tenant) && !strcmp(s->route, route) && !strcmp(s->name, name))
            return s;
    return NULL;
}

static void reset_state(slo_t *s, uint64_t now)
{
    gh_slo_series_free(&s->ser);
    s->acc = (gh_slo_count_t){0, 0};
    memset(&s->ev, 0, sizeof s->ev);
    s->ev.budget = 1;
    s->page = s->ticket = 0;
    if (gh_slo_series_init(&s->ser, s->window_ms, now) < 0)
        s->live = 0;
}

/* Follow one configured SLO whose sources are sts[0..n). */
static int bind_one(const char *tenant, const char *route, const gh_conf_slo_t *cs, gh_route_stats_t **sts, uint32_t n,
                    uint64_t now)
{
    slo_t *s = find(tenant, route, cs->name);
    int fresh = 0;
    if (!s) {
        if (!(s = calloc(1, sizeof *s)) || !(s->tenant = strdup(tenant)) || !(s->route = strdup(route)) ||
            !(s->name = strdup(cs->name))) {
            if (s) {
                free(s->tenant);
                free(s->route);
            }
            free(s);
            return GH_ENOMEM;
        }
        s->next = slos;
        slos = s;
        fresh = 1;
    }
    int bucket = GH_HIST_BUCKETS - 1;
    if (cs->objective == GH_SLO_LATENCY) { /* the last bucket whose bound is at or under the threshold */
        bucket = -1;
        while (bucket + 1 < GH_HIST_BUCKETS - 1 && gh_metrics_bucket_us(bucket + 1) <= (uint64_t)cs->threshold_ms * 1000)
            bucket++;
        if (bucket < 0)
            bucket = 0;
        if (gh_metrics_bucket_us(bucket) != (uint64_t)cs->threshold_ms * 1000 &&
            (fresh || s->threshold_ms != cs->threshold_ms))
            gh_log(GH_LOG_INFO, "slo %s/%s/%s: latency threshold %ums is not a histogram bound; counting requests under %gms",
                   tenant, route, cs->name, cs->threshold_ms, (double)gh_metrics_bucket_us(bucket) / 1000);
    }
    if (fresh || s->window_ms != cs->window_ms || s->objective != cs->objective || s->bucket != bucket) {
        s->window_ms = cs->window_ms;
        s->objective = cs->objective;
        s->bucket = bucket;
        s->live = 1;
        reset_state(s, now);
        free(s->src);
        s->src = NULL;
        s->nsrc = 0;
    }
    s->threshold_ms = cs->threshold_ms;
    s->eff_threshold_us = cs->objective == GH_SLO_LATENCY ? gh_metrics_bucket_us(bucket) : 0;
    s->target = cs->target;
    /* sources: the ones followed already keep their last counts; new ones start from now */
    source_t *src = calloc(n ? n : 1, sizeof *src);
    if (!src)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        src[i].st = sts[i];
        src[i].last = read_source(s, sts[i]);
        for (uint32_t j = 0; j < s->nsrc; j++)
            if (s->src[j].st == sts[i])
                src[i].last = s->src[j].last;
    }
    free(s->src);
    s->src = src;
    s->nsrc = n;
    s->live = s->ser.lv[0].s != NULL;
    return 0;
}

int gh_slo_bind(const gh_conf_t *c)
{
    int rc = 0;
    uint64_t now = now_ms();
    pthread_mutex_lock(&lock);
    for (slo_t *s = slos; s; s = s->next)
        s->live = 0;
    for (uint32_t t = 0; t < c->ntenants; t++) {
        const gh_conf_tenant_t *tn = &c->tenants[t];
        uint32_t nr = 0;
        for (uint32_t si = 0; si < tn->nsites; si++)
            nr += tn->sites[si].nroutes;
        gh_route_stats_t **all = calloc(nr ? nr : 1, sizeof *all);
        if (!all) {
            rc = GH_ENOMEM;
            continue;
        }
        uint32_t k = 0;
        for (uint32_t si = 0; si < tn->nsites; si++)
            for (uint32_t r = 0; r < tn->sites[si].nroutes; r++) {
                const gh_conf_route_t *rt = &tn->sites[si].routes[r];
                if (rt->stats)
                    all[k++] = rt->stats;
                for (uint32_t q = 0; q < rt->nslos && rt->stats; q++) {
                    gh_route_stats_t *one = rt->stats;
                    if (bind_one(tn->name, rt->name, &rt->slos[q], &one, 1, now) < 0)
                        rc = GH_ENOMEM;
                }
            }
        for (uint32_t q = 0; q < tn->nslos; q++)
            if (bind_one(tn->name, "", &tn->slos[q], all, k, now) < 0)
                rc = GH_ENOMEM;
        free(all);
    }
    pthread_cond_signal(&wake); /* the tick may have changed */
    pthread_mutex_unlock(&lock);
    return rc;
}

static void log_change(const slo_t *s, const char *severity, int firing)
{
    const double *b = s->ev.burn;
    gh_log(firing ? GH_LOG_WARN : GH_LOG_INFO,
           "slo alert %s: tenant=%s route=%s slo=%s severity=%s burn_5m=%.2f burn_30m=%.2f burn_1h=%.2f burn_2h=%.2f "
           "burn_6h=%.2f burn_1d=%.2f burn_3d=%.2f budget_remaining=%.4f",
           firing ? "firing" : "resolved", s->tenant, s->route[0] ? s->route : "-", s->name, severity, b[0], b[1], b[2],
           b[3], b[4], b[5], b[6], s->ev.budget);
}

/* One tick (under the lock): read the counters, keep samples, evaluate, log alert changes.
 * Returns the period until the next one. */
static uint64_t tick(uint64_t now)
{
    uint64_t period = 10000;
    for (slo_t *s = slos; s; s = s->next) {
        if (!s->live)
            continue;
        for (uint32_t i = 0; i < s->nsrc; i++) {
            gh_slo_count_t c = read_source(s, s->src[i].st);
            uint64_t dt = c.total > s->src[i].last.total ? c.total - s->src[i].last.total : 0;
            uint64_t dg = c.good > s->src[i].last.good ? c.good - s->src[i].last.good : 0;
            s->acc.total += dt;
            s->acc.good += dg;
            s->src[i].last = c;
        }
        if (s->acc.good > s->acc.total)
            s->acc.good = s->acc.total;
        gh_slo_series_add(&s->ser, now, s->acc);
        gh_slo_eval(&s->ser, s->target, &s->ev);
        if (s->ev.page != s->page)
            log_change(s, "page", s->ev.page);
        if (s->ev.ticket != s->ticket)
            log_change(s, "ticket", s->ev.ticket);
        s->page = s->ev.page;
        s->ticket = s->ev.ticket;
        if (s->ser.tick_ms < period)
            period = s->ser.tick_ms;
    }
    return period;
}

static void *ticker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!stopping) {
        uint64_t period = tick(now_ms());
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(period / 1000);
        ts.tv_nsec += (long)(period % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (!stopping && pthread_cond_timedwait(&wake, &lock, &ts) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int gh_slo_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wake, &ca);
    pthread_condattr_destroy(&ca);
    stopping = 0;
    if (pthread_create(&thr, NULL, ticker, NULL) != 0)
        return GH_ENOMEM;
    running = 1;
    return 0;
}

void gh_slo_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thr, NULL);
    running = 0;
}

/* ---------------------------------------------------------------- reading */

static const char *labels(const slo_t *s, char *out, size_t cap)
{
    char t[300], r[300], n[300];
    snprintf(out, cap, "tenant=\"%s\",route=\"%s\",slo=\"%s\"", gh_metrics_esc(s->tenant, t, sizeof t), gh_metrics_esc(s->route, r, sizeof r),
             gh_metrics_esc(s->name, n, sizeof n));
    return out;
}

char *gh_slo_metrics(size_t *len)
{
    gh_text_t b = {.p = malloc(4096), .cap = 4096};
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    char l[1024];
    pthread_mutex_lock(&lock);
    gh_text_printf(&b, "# HELP gatehouse_slo_error_budget_remaining_ratio Share of the SLO window's error budget left (below 0: overspent).\n"
                  "# TYPE gatehouse_slo_error_budget_remaining_ratio gauge\n");
    for (slo_t *s = slos; s; s = s->next)
        if (s->live)
            gh_text_printf(&b, "gatehouse_slo_error_budget_remaining_ratio{%s} %.6f\n", labels(s, l, sizeof l), s->ev.budget);
    gh_text_printf(&b, "# HELP gatehouse_slo_burn_rate Error rate over an alert window divided by the error budget rate (1 - target).\n"
                  "# TYPE gatehouse_slo_burn_rate gauge\n");
    for (slo_t *s = slos; s; s = s->next)
        for (int w = 0; s->live && w < GH_SLO_NWIN; w++)
            gh_text_printf(&b, "gatehouse_slo_burn_rate{%s,window=\"%s\"} %.6f\n", labels(s, l, sizeof l),
                      gh_slo_window_names[w], s->ev.burn[w]);
    gh_text_printf(&b, "# HELP gatehouse_slo_alert Whether a multi-window burn-rate alert fires (1) or not (0).\n"
                  "# TYPE gatehouse_slo_alert gauge\n");
    for (slo_t *s = slos; s; s = s->next)
        if (s->live) {
            labels(s, l, sizeof l);
            gh_text_printf(&b, "gatehouse_slo_alert{%s,severity=\"page\"} %d\ngatehouse_slo_alert{%s,severity=\"ticket\"} %d\n", l,
                      s->page, l, s->ticket);
        }
    pthread_mutex_unlock(&lock);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}

json_t *gh_slo_json(const char *tenant)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    pthread_mutex_lock(&lock);
    for (slo_t *s = slos; s; s = s->next) {
        if (!s->live || (tenant && strcmp(tenant, s->tenant)))
            continue;
        json_t *o = json_object(), *br = json_object(), *wl = json_object();
        for (int w = 0; w < GH_SLO_NWIN; w++) {
            json_object_set_new(br, gh_slo_window_names[w], json_real(s->ev.burn[w]));
            json_object_set_new(wl, gh_slo_window_names[w], json_real((double)gh_slo_window_ms(s->window_ms, w) / 1000));
        }
        json_object_set_new(o, "tenant", json_string(s->tenant));
        json_object_set_new(o, "route", s->route[0] ? json_string(s->route) : json_null());
        json_object_set_new(o, "name", json_string(s->name));
        json_object_set_new(o, "objective", json_string(s->objective == GH_SLO_LATENCY ? "latency" : "availability"));
        json_object_set_new(o, "target", json_real(s->target));
        if (s->objective == GH_SLO_LATENCY) {
            json_object_set_new(o, "threshold_ms", json_integer(s->threshold_ms));
            json_object_set_new(o, "threshold_effective_ms", json_real((double)s->eff_threshold_us / 1000));
        }
        json_object_set_new(o, "window_s", json_real((double)s->window_ms / 1000));
        json_object_set_new(o, "good", json_integer((json_int_t)s->ev.in_window.good));
        json_object_set_new(o, "total", json_integer((json_int_t)s->ev.in_window.total));
        json_object_set_new(o, "error_budget_remaining", json_real(s->ev.budget));
        json_object_set_new(o, "burn_rates", br);
        json_object_set_new(o, "alert_windows_s", wl);
        json_t *al = json_object();
        json_object_set_new(al, "page", json_boolean(s->page));
        json_object_set_new(al, "ticket", json_boolean(s->ticket));
        json_object_set_new(o, "alerts", al);
        json_array_append_new(arr, o);
    }
    pthread_mutex_unlock(&lock);
    json_t *out = json_object();
    json_object_set_new(out, "slos", arr);
    return out;
}
