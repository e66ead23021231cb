/* analytics.h: traffic analytics per route without a warehouse (routes with `analytics: true`).
 *
 * Each worker keeps, per such route, rolling minute/hour/day windows of streaming sketches
 * (obs/sketch.h: top paths, referrers, user agents and client IPs, unique visitors, latency
 * quantiles, status and cache mix, bytes) and adds every finished request to its own window:
 * no lock, no allocation but the window's, made at the route's first request on that worker.
 * Windows are found by a hash of the tenant's and route's names, so they outlive reloads.
 * Memory per route and worker is fixed (gh_sk_cfg_compact: about 2.2 MiB), whatever the
 * traffic's cardinality; at most GH_ANALYTICS_ROUTES routes per worker.
 *
 * GET /v1/analytics?tenant=T&route=R[&window=minute|hour|day][&top=N] on the admin listener:
 * the admin thread posts a read to every worker (gh_worker_post), each merges its window into
 * one set under a mutex, the last posts the answer back; the request waits deferred.
 *
 * Called by session.c (record) and admin.c (the request). */
#ifndef GH_OBS_ANALYTICS_H
#define GH_OBS_ANALYTICS_H

#include "obs/sketch.h"
#include "proxy/session.h"

#define GH_ANALYTICS_ROUTES 256

/* On worker w's thread: one finished request of route rt. */
void gh_analytics_record(gh_worker_t *w, const gh_conf_route_t *rt, const gh_sk_event_t *ev, int64_t now_ms);
/* The admin handler of GET /v1/analytics. */
void gh_analytics_request(gh_req_t *r, const gh_req_view_t *v);
/* Free worker w's windows (at its exit). */
void gh_analytics_free(gh_worker_t *w);

#endif
