/* slo.h: service level objectives, computed in process from the route counters (metrics.h).
 *
 * Each SLO (config: `slos:` under a tenant or a route) counts good and total requests:
 * availability: a response that is not 5xx (gatehouse's own 502/503/504 included) is good;
 * latency: a request whose duration falls in a histogram bucket at or under the threshold is
 * good (the threshold is rounded down to a bucket bound). A ticker thread reads the counters
 * (summing thread slots) every tick and keeps cumulative (good, total) samples in three
 * rings of growing step (fine: covers the 1h alert window; medium: 5m steps over 3d; coarse:
 * 1h steps over the whole SLO window), all scaled to the SLO window: for a 30d window the
 * ticks are 10 s, and a shorter window scales every alert window in proportion (window/720
 * is "1h"), which is how tests run the alerts in seconds. From them: the error budget left
 * over the SLO window and the burn rates of the Google SRE workbook's multi-window,
 * multi-burn-rate alerts (page: 1h and 5m over 14.4, or 6h and 30m over 6; ticket: 1d and 2h
 * over 3, or 3d and 6h over 1). Alert changes are logged. State is kept by tenant, route and
 * SLO name across reloads (a changed window, objective or threshold starts it afresh).
 *
 * Called by gh_metrics_bind (gh_slo_bind), main.c (start/stop) and the admin listener
 * (gh_slo_metrics, gh_slo_json). The series functions are pure (time passed in), for tests. */
#ifndef GH_OBS_SLO_H
#define GH_OBS_SLO_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"

/* The alert windows, in the SRE workbook's names for a 30-day SLO window. */
enum { GH_SLO_W5M = 0, GH_SLO_W30M, GH_SLO_W1H, GH_SLO_W2H, GH_SLO_W6H, GH_SLO_W1D, GH_SLO_W3D, GH_SLO_NWIN };
extern const char *const gh_slo_window_names[GH_SLO_NWIN];

typedef struct {
    uint64_t good, total;
} gh_slo_count_t;

typedef struct {
    uint64_t step_ms, next_ms, last_ms; /* last_ms: when the newest sample was taken */
    uint32_t len, n, head; /* head: where the next sample goes; n: samples held */
    gh_slo_count_t *s;
} gh_slo_ring_t;

/* Cumulative counts of one SLO over time. */
typedef struct {
    uint64_t window_ms, tick_ms;
    uint64_t now_ms;    /* the last gh_slo_series_add */
    gh_slo_count_t cur; /* ... and the counts then */
    gh_slo_ring_t lv[3];
} gh_slo_series_t;

typedef struct {
    double burn[GH_SLO_NWIN]; /* error rate over the window / (1 - target) */
    double budget;            /* error budget left over the SLO window: 1 - burn(window); may go below 0 */
    gh_slo_count_t in_window; /* good and total over the SLO window */
    int page, ticket;
} gh_slo_eval_t;

/* The ticker's period for an SLO window: window / 34560 (10 s for 30 days), within 25 ms..10 s. */
uint64_t gh_slo_tick_ms(uint64_t window_ms);
/* The length of alert window w for an SLO window (w's 30-day length, scaled). */
uint64_t gh_slo_window_ms(uint64_t window_ms, int w);
int gh_slo_series_init(gh_slo_series_t *s, uint64_t window_ms, uint64_t now_ms);
void gh_slo_series_free(gh_slo_series_t *s);
/* The cumulative counts at now (monotonic ms, non-decreasing); samples are kept as they fall due. */
void gh_slo_series_add(gh_slo_series_t *s, uint64_t now_ms, gh_slo_count_t cum);
/* The counts over the last d ms (what is held when less). */
gh_slo_count_t gh_slo_series_delta(const gh_slo_series_t *s, uint64_t d);
void gh_slo_eval(const gh_slo_series_t *s, double target, gh_slo_eval_t *ev);

/* Follow the SLOs of c (under the registry lock; called by gh_metrics_bind). */
int gh_slo_bind(const gh_conf_t *c);
/* The ticker thread. */
int gh_slo_start(void);
void gh_slo_stop(void);
/* Prometheus text of the SLO families (malloc'd, *len set), NULL on ENOMEM. */
char *gh_slo_metrics(size_t *len);
/* {"slos": [...]} of one tenant's SLOs, or all (tenant NULL). */
json_t *gh_slo_json(const char *tenant);

#endif
