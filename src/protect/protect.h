/* protect.h: traffic protection, the glue between a configuration and the engines.
 *
 * The engines are pure and small: gcra.h + shtab.h (rate limits over one bounded table
 * shared by every worker), iptree.h (allow/deny lists), geoip.h (countries), bot.h (a
 * behaviour score per client), challenge.h (proof-of-work page and pass cookie),
 * glimit.h (limits shared by nodes through Redis), topk.h (top blocked keys). This file
 * builds what a configuration declares (gh_protect_build, called by config.c when a
 * snapshot is compiled), keeps what must outlive a snapshot (the tables, per-tenant
 * counters and flood state: a reload keeps every limit's state), and answers the one
 * question the session asks for each request: pass, wait, or answer now with what.
 *
 * Order of the checks for a request (cheapest and most certain first): the challenge's
 * own verification path; allow/deny lists and countries (tenant, site, route scopes);
 * tenant quota and concurrency; flood mode (per-IP limit, challenge, shedding); the
 * bot score; the rate limits of the three scopes (all apply; shadow ones only count).
 *
 * Thread-safety: gh_protect_check, gh_protect_done, gh_protect_conn_* are called by any
 * worker at once; gh_protect_build/free by whoever loads a snapshot; gh_protect_start
 * once by main before the workers start. */
#ifndef GH_PROTECT_PROTECT_H
#define GH_PROTECT_PROTECT_H

#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "core/common.h"
#include "http/h1.h"

/* ---- snapshots (config.c) ---- */

/* Builds the trees, loads the named lists (errors "FILE:LINE:COL: ..." into errs),
 * opens the country database, computes the GCRA parameters and binds each tenant to
 * its lasting state. 0 or GH_ECONFIG / GH_ENOMEM. */
int gh_protect_build(gh_conf_t *c, gh_conf_errors_t *errs);
void gh_protect_free(gh_conf_t *c);

/* ---- process (main) ---- */

/* Creates the shared tables (sized by the first configuration's protection.max_keys),
 * the random secret when the configuration has none, and the Redis syncer when
 * configured. 0 or an error (logged). */
int gh_protect_start(const gh_conf_t *c);
void gh_protect_stop(void);
/* 1 when a named list's file changed since c was built (main polls and rebuilds). */
int gh_protect_lists_changed(const gh_conf_t *c);

/* ---- connections (session.c) ---- */

/* Counts a new connection from peer against protection.connections.per_ip: 1 counted
 * (call gh_protect_conn_close once when it ends), 0 not counted (no cap), GH_ELIMIT
 * over the cap (close it). */
int gh_protect_conn_open(const gh_conf_t *c, const struct sockaddr *peer);
void gh_protect_conn_close(const struct sockaddr *peer);

/* ---- requests (session.c) ---- */

typedef struct {
    const gh_conf_t *conf;
    const gh_conf_route_t *route;
    const struct sockaddr *client; /* the client's address (trusted X-Forwarded-For applied) */
    const gh_h1_header_t *headers;
    size_t nheaders;
    gh_str_t method, path, query, ja4;
    uint8_t tls, h2;
    uint32_t worker; /* for the per-worker top-keys table */
} gh_protect_req_t;

enum {
    GH_PV_PASS = 0, /* go on (maybe after delay_ms: action delay) */
    GH_PV_ANSWER,   /* answer with status, headers and body now (maybe after delay_ms: tarpit) */
};

/* Why a request was stopped or marked; the names are the metric's reason label. */
enum {
    GH_PR_NONE = 0,
    GH_PR_DENY,        /* deny list, or no allow entry matched */
    GH_PR_COUNTRY,
    GH_PR_QUOTA,       /* tenant quota per minute / per day */
    GH_PR_CONCURRENCY, /* tenant requests in flight */
    GH_PR_FLOOD,       /* flood mode: per-IP limit or shed */
    GH_PR_BOT,         /* behaviour score */
    GH_PR_RATE,        /* a rate limit */
    GH_PR_CHALLENGE,   /* challenge verification (passed or failed) */
    GH_PR_SLOW,        /* a request body or a response read under the minimum data rate */
    GH_PR__N
};
enum { GH_PA_BLOCK = 0, GH_PA_CHALLENGE, GH_PA_TARPIT, GH_PA_DELAY, GH_PA_SHADOW, GH_PA_LOG, GH_PA_PASS, GH_PA__N };

typedef struct {
    int verdict;         /* GH_PV_* */
    int reason;          /* GH_PR_*: the decision that counted (none: passed untouched) */
    int action;          /* GH_PA_* */
    const char *detail;  /* the limit's name or the bot reasons, for the access log (static or in conf) */
    int status;          /* GH_PV_ANSWER */
    uint32_t delay_ms;   /* wait before going on (delay) or before the answer (tarpit) */
    const char *ctype;   /* the body's Content-Type, or NULL */
    char headers[512];   /* extra response header lines, each ending in CRLF */
    size_t headers_len;
    char *body;          /* malloc'd body (a challenge page), or NULL: a short text by status */
    size_t body_len;
    uint8_t counted;     /* holds a tenant concurrency slot: call gh_protect_done */
    uint8_t score;       /* bot score, when scored */
} gh_protect_verdict_t;

/* The decision for a request. Allocation-free unless it answers with a page. */
void gh_protect_check(const gh_protect_req_t *in, gh_protect_verdict_t *out);
/* The end of a request that passed: releases the concurrency slot, feeds flood
 * detection with the upstream's latency (0: not proxied). */
void gh_protect_done(const gh_conf_route_t *rt, int counted, uint64_t latency_us);

/* The client's address for protection: the peer, or when the peer is a trusted proxy
 * the right-most X-Forwarded-For address that is not a trusted proxy. */
void gh_protect_client(const gh_conf_t *c, const struct sockaddr *peer, const gh_h1_header_t *h, size_t nh,
                       struct sockaddr_storage *out);

const char *gh_protect_reason_name(int reason);
/* Counts a decision taken elsewhere (the session's minimum data rates). */
void gh_protect_count(const gh_conf_route_t *rt, int reason, int action);
const char *gh_protect_action_name(int action);

/* ---- operators (admin.c) ---- */

/* Prometheus text of the decision counters, flood state and table stats; appends to
 * out (up to cap), returns the length written. */
size_t gh_protect_metrics(const gh_conf_t *c, char *out, size_t cap);
/* JSON: {"top": [{"key": ..., "count": ..., "reason": ...}], "flood": {...}} */
size_t gh_protect_top_json(const gh_conf_t *c, char *out, size_t cap);

#endif
