/* Unit tests for src/obs/slo.c: the burn-rate arithmetic on synthetic counters. Time is
 * stepped by hand (the series take it as an argument). */
#include <math.h>
#include <stdlib.h>

#include "config/config.h"
#include "obs/slo.h"
#include "t.h"

#define DAY 86400000ull
#define HOUR 3600000ull
#define MIN 60000ull

#define NEAR(a, b, tol) CHECK(fabs((double)(a) - (double)(b)) <= (tol))

/* Feed dur ms of traffic at rate requests per tick, err of them bad, one add per tick. */
static void feed(gh_slo_series_t *s, uint64_t *now, gh_slo_count_t *acc, uint64_t dur, uint64_t rate, uint64_t err)
{
    for (uint64_t t = 0; t < dur; t += s->tick_ms) {
        *now += s->tick_ms;
        acc->total += rate;
        acc->good += rate - err;
        gh_slo_series_add(s, *now, *acc);
    }
}

static void test_windows(void)
{
    CHECK_INT(gh_slo_window_ms(30 * DAY, GH_SLO_W1H), HOUR);
    CHECK_INT(gh_slo_window_ms(30 * DAY, GH_SLO_W5M), 5 * MIN);
    CHECK_INT(gh_slo_window_ms(30 * DAY, GH_SLO_W3D), 3 * DAY);
    CHECK_INT(gh_slo_window_ms(HOUR, GH_SLO_W1H), 5000); /* scaled: 1h / 720 */
    CHECK_INT(gh_slo_window_ms(HOUR, GH_SLO_W6H), 30000);
    CHECK_INT(gh_slo_tick_ms(30 * DAY), 10000);
    CHECK_INT(gh_slo_tick_ms(HOUR), 104);
    CHECK_INT(gh_slo_tick_ms(10 * MIN), 25);
}

static void test_quiet_and_good(void)
{
    gh_slo_series_t s;
    CHECK_INT(gh_slo_series_init(&s, 30 * DAY, 1000), 0);
    gh_slo_eval_t ev;
    gh_slo_eval(&s, 0.999, &ev); /* no traffic: nothing burns */
    for (int w = 0; w < GH_SLO_NWIN; w++)
        CHECK(ev.burn[w] == 0);
    CHECK(ev.budget == 1 && !ev.page && !ev.ticket);
    uint64_t now = 1000;
    gh_slo_count_t acc = {0, 0};
    feed(&s, &now, &acc, 2 * DAY, 100, 0);
    gh_slo_eval(&s, 0.999, &ev);
    for (int w = 0; w < GH_SLO_NWIN; w++)
        CHECK(ev.burn[w] == 0);
    CHECK(ev.budget == 1 && !ev.page && !ev.ticket);
    CHECK_INT(ev.in_window.total, acc.total); /* less than a window held: all of it */
    gh_slo_series_free(&s);
}

/* An hour of 10% errors against 99.9%: burn 100, the page fires; then recovery. */
static void test_page_and_recovery(void)
{
    gh_slo_series_t s;
    gh_slo_series_init(&s, 30 * DAY, 0);
    uint64_t now = 0;
    gh_slo_count_t acc = {0, 0};
    gh_slo_eval_t ev;
    feed(&s, &now, &acc, 2 * DAY, 100, 0);
    feed(&s, &now, &acc, 4 * MIN, 100, 10);
    gh_slo_eval(&s, 0.999, &ev);
    NEAR(ev.burn[GH_SLO_W5M], 80, 0.5); /* 4 of 5 minutes bad */
    NEAR(ev.burn[GH_SLO_W1H], 100.0 * 4 / 60, 0.2);
    CHECK(!ev.page); /* the long window is not there yet */
    feed(&s, &now, &acc, 56 * MIN, 100, 10);
    gh_slo_eval(&s, 0.999, &ev);
    NEAR(ev.burn[GH_SLO_W5M], 100, 0.01);
    NEAR(ev.burn[GH_SLO_W30M], 100, 0.01);
    NEAR(ev.burn[GH_SLO_W1H], 100, 0.01);
    NEAR(ev.burn[GH_SLO_W2H], 50, 0.5);
    NEAR(ev.burn[GH_SLO_W6H], 100.0 / 6, 0.5);
    NEAR(ev.burn[GH_SLO_W1D], 100.0 / 24, 0.2);
    NEAR(ev.burn[GH_SLO_W3D], 100.0 / 49, 0.1); /* only 49 h of data held */
    CHECK(ev.page && ev.ticket);
    NEAR(ev.budget, 1 - 100.0 / 49, 0.05);
    /* 10 good minutes: 5m is clean, but 30m (and 6h) still burn over 6: still a page */
    feed(&s, &now, &acc, 10 * MIN, 100, 0);
    gh_slo_eval(&s, 0.999, &ev);
    CHECK(ev.burn[GH_SLO_W5M] == 0);
    NEAR(ev.burn[GH_SLO_W30M], 100.0 * 20 / 30, 0.5);
    CHECK(ev.page);
    /* 30 good minutes: the page resolves, the ticket stays (1d and 2h over 3) */
    feed(&s, &now, &acc, 21 * MIN, 100, 0);
    gh_slo_eval(&s, 0.999, &ev);
    CHECK(ev.burn[GH_SLO_W30M] == 0);
    CHECK(!ev.page && ev.ticket);
    /* two more hours: 2h is clean, 3d (2.0) and 6h (16.7) keep the slow ticket on */
    feed(&s, &now, &acc, 2 * HOUR, 100, 0);
    gh_slo_eval(&s, 0.999, &ev);
    CHECK(ev.burn[GH_SLO_W2H] == 0);
    CHECK(!ev.page && ev.ticket);
    /* seven hours later: 6h is clean, nothing fires */
    feed(&s, &now, &acc, 7 * HOUR, 100, 0);
    gh_slo_eval(&s, 0.999, &ev);
    CHECK(!ev.page && !ev.ticket);
    gh_slo_series_free(&s);
}

/* A slow burn (4x for a day) pages nobody but opens a ticket. */
static void test_ticket_only(void)
{
    gh_slo_series_t s;
    gh_slo_series_init(&s, 30 * DAY, 0);
    uint64_t now = 0;
    gh_slo_count_t acc = {0, 0};
    gh_slo_eval_t ev;
    feed(&s, &now, &acc, DAY, 1000, 4);
    gh_slo_eval(&s, 0.999, &ev);
    for (int w = 0; w < GH_SLO_NWIN; w++)
        NEAR(ev.burn[w], 4, 0.01);
    CHECK(!ev.page && ev.ticket);
    NEAR(ev.budget, -3, 0.01);
    gh_slo_series_free(&s);
}

/* The SLO window slides: errors older than the window no longer count. */
static void test_window_slides(void)
{
    gh_slo_series_t s;
    gh_slo_series_init(&s, 30 * DAY, 0);
    uint64_t now = 0;
    gh_slo_count_t acc = {0, 0};
    gh_slo_eval_t ev;
    feed(&s, &now, &acc, 4 * DAY, 10, 10); /* everything failing */
    gh_slo_eval(&s, 0.99, &ev);
    NEAR(ev.budget, 1 - 100, 0.01);
    feed(&s, &now, &acc, 31 * DAY, 10, 0);
    gh_slo_eval(&s, 0.99, &ev);
    CHECK(ev.budget == 1);
    NEAR(ev.in_window.total, 30 * DAY / 10000 * 10, 400); /* about 30 days of 10 per tick */
    CHECK(!ev.page && !ev.ticket);
    gh_slo_series_free(&s);
}

/* Short windows (tests and the integration suite): the same arithmetic, scaled. */
static void test_short_window(void)
{
    gh_slo_series_t s;
    gh_slo_series_init(&s, HOUR, 0); /* "1h" is 5 s, "5m" 417 ms */
    uint64_t now = 0;
    gh_slo_count_t acc = {0, 0};
    gh_slo_eval_t ev;
    feed(&s, &now, &acc, 60000, 5, 0);
    feed(&s, &now, &acc, 6000, 5, 5);
    gh_slo_eval(&s, 0.99, &ev);
    NEAR(ev.burn[GH_SLO_W1H], 100, 0.01);
    CHECK(ev.page);
    feed(&s, &now, &acc, 3000, 5, 0); /* "30m" is 2.5 s */
    gh_slo_eval(&s, 0.99, &ev);
    CHECK(!ev.page && ev.ticket);
    gh_slo_series_free(&s);
}

/* slos: in the configuration, on a tenant and on a route. */
static void test_config(void)
{
    static const char y[] = "listeners: [{listen: \"127.0.0.1:1\"}]\n"
                            "upstreams: {app: {backends: [\"127.0.0.1:2\"]}}\n"
                            "tenants:\n"
                            "  - name: t\n"
                            "    slos: [{name: up, objective: availability, target: 0.999}]\n"
                            "    sites:\n"
                            "      - hosts: [\"*\"]\n"
                            "        routes:\n"
                            "          - name: r\n"
                            "            upstream: app\n"
                            "            slos: [{name: fast, objective: latency, target: 0.99, threshold: 300ms, window: 10m}]\n";
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    int rc = gh_conf_load_string("t.yaml", y, sizeof y - 1, &c, &errs);
    CHECK_INT(rc, 0);
    for (uint32_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    gh_conf_errors_free(&errs);
    if (rc != 0)
        return;
    CHECK_INT(c->tenants[0].nslos, 1);
    CHECK(!strcmp(c->tenants[0].slos[0].name, "up") && c->tenants[0].slos[0].objective == GH_SLO_AVAILABILITY);
    CHECK(c->tenants[0].slos[0].target == 0.999);
    CHECK_INT(c->tenants[0].slos[0].window_ms, 30 * DAY);
    const gh_conf_route_t *r = &c->tenants[0].sites[0].routes[0];
    CHECK_INT(r->nslos, 1);
    CHECK(r->slos[0].objective == GH_SLO_LATENCY);
    CHECK_INT(r->slos[0].threshold_ms, 300);
    CHECK_INT(r->slos[0].window_ms, 10 * MIN);
    gh_conf_unref(c);
}

int main(void)
{
    RUN(test_windows);
    RUN(test_quiet_and_good);
    RUN(test_page_and_recovery);
    RUN(test_ticket_only);
    RUN(test_window_slides);
    RUN(test_short_window);
    RUN(test_config);
    return t_done("test_slo");
}
