/* session.c: client connections, requests, and proxying to upstreams (see session.h).
 *
 * A client connection is IDLE (between requests), HEAD (a head is arriving), ACTIVE
 * (one request in progress) or LINGER (response sent, closing: write side shut,
 * reading what the client still sends so that it gets our answer, not a reset).
 *
 * An ACTIVE request runs in phases: CONNECT (to a backend), PROXY (request out,
 * response back, both streamed), TUNNEL (after 101 Switching Protocols) or DIRECT
 * (an answer made here). req_run() pumps bytes in every direction that can move
 * until nothing moves, then arms one timer for whatever it waits on.
 *
 * Buffers: c->in holds the request head (kept for the request's lifetime: the views
 * used for logging point into it) then the request body being streamed; r->uhead
 * is the head sent upstream; r->resp holds bytes from the upstream; r->chead is the
 * head sent to the client (or a whole direct response). Reads stop when a buffer is
 * full, which is the backpressure: memory per request is bounded. */
#include "proxy/session.h"
#include "core/json.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cache/http.h"
#include "core/log.h"
#include "flags/flags.h"
#include "obs/accesslog.h"
#include "obs/trace.h"
#include "proxy/conn.h"
#include "proxy/health.h"
#include "proxy/lb.h"
#include "proxy/router.h"
#include "experiments/exp.h"
#include "obs/analytics.h"
#include "protect/protect.h"
#include "protect/geoip.h"
#include "edge/lua.h"
#include "rules/rules.h"
#include "tls/ja4.h"
#include "tls/tls.h"

enum { P_CONNECT = 1, P_PROXY, P_TUNNEL, P_DIRECT, P_BACKOFF, P_HOLD, P_CWAIT, P_BODY, P_STREAM, P_DEFER };

/* the cache's part in a request (src/cache) */
enum { CS_NONE = 0, CS_BYPASS, CS_UNSAFE, CS_MISS, CS_REVAL, CS_BG };
enum { CF_URI_MISS = 1, CF_VARY_MISS, CF_REQUEST, CF_STALE, CF_BYPASS };
enum { CD_SWR = 1, CD_SIE, CD_OIC, CD_REVAL };

/* pump results below zero: what went wrong */
enum {
    E_CLIENT = -1,    /* client closed, reset or timed out: drop everything */
    E_UPSTREAM = -2,  /* upstream closed or reset before a complete response */
    E_BADRESP = -3,   /* upstream sent something we cannot parse */
    E_TOOLARGE = -4,  /* request body over the route's limit */
    E_BADBODY = -5,   /* client's chunked body is malformed */
};

#define LINGER_MS 2000


struct gh_req {
    gh_client_t *c;
    gh_worker_t *w;
    gh_gen_t *gen;
    const gh_conf_route_t *route;
    gh_timer_t timer;
    uint64_t t_start_us, t_up_us, phase_start;
    uint64_t wall_ns; /* the wall clock at the start (unix ns), when a log, an experiment or tracing wants it; else 0 */
    int64_t up_us;
    /* the request (views into the head kept at c->in.rd) */
    gh_str_t method, path, query, host, upgrade;
    int method_id;
    uint8_t minor, keep_alive, ws, phase;
    uint32_t head_len;
    /* request body: [in_pos, in_pos + in_ready) of c->in is validated, not yet sent */
    uint8_t body, body_done, sent_done, too_large;
    uint64_t body_left;
    gh_h1_chunked_t chunk;
    uint32_t in_pos, in_ready;
    uint64_t bytes_in;
    /* upstream */
    gh_conf_upstream_t *ups;
    const gh_conf_backend_t *backend;
    gh_upconn_t *u;
    uint32_t backend_idx;
    uint64_t hash_key; /* GH_LB_HASH: the request's key */
    uint64_t tried;    /* backends (index < 64) this request was sent to */
    uint8_t lb_active, counted, replayed;
    uint8_t active; /* counted in its backend slot's active tries */
    uint8_t breaker_req, breaker_pending; /* counted in the pool's live requests / pending */
    uint8_t reused, tries, up_keepalive, up_extra;
    gh_buf_t uhead;
    /* response: resp [rd, ready_end) ready for the client, [scan, wr) not yet framed */
    gh_buf_t resp;
    uint32_t ready_end, scan;
    gh_h1_chunked_t rchunk;
    uint8_t resp_body, head_done, resp_done, dechunk, resp_started, head_only;
    uint64_t resp_left;
    gh_buf_t chead;
    int status;
    uint64_t bytes_out;
    char peer[INET6_ADDRSTRLEN + 2];
    uint8_t peer_len; /* strlen(peer) */
    char reqid[40];
    uint8_t reqid_len;
    uint8_t is_error;
    uint8_t accounted; /* metrics and access log written */
    /* protection: the decision that marked the request (protect.h), held answer */
    uint8_t prot_reason, prot_action, prot_counted;
    uint16_t hold_status;
    const char *prot_detail;
    uint64_t slow_deadline; /* ms: the minimum-rate deadline armed, earlier than ... (0: none) */
    uint64_t gap_deadline;  /* ... the plain timeout's */
    /* cache: state (CS_*), how it went forward (CF_*), result (GH_CR_*), detail (CD_*) */
    uint8_t cstate, cfwd, cresult, cdetail, cserve, ccollapsed, cleader;
    uint64_t khash, cseq;
    int64_t creq_time;       /* wall seconds when the fetch started */
    char *ckey;
    uint32_t ckey_len;
    gh_req_facts_t creq;
    gh_cobj_t *cobj;         /* served, or the stale one being revalidated (referenced) */
    gh_cobj_t *cnew;         /* the response being stored */
    gh_cfetch_t *cfetch;     /* coalescing: the fetch led or waited on */
    uint64_t cbody_off, cbody_end; /* cserve: the part of cobj's body still to send */
    struct gh_req *cw_next, *cw_prev; /* P_CWAIT: the worker's waiting list */
    /* the route's flag: the variant this request got (names owned by the snapshot) */
    const char *fvariant;
    const gh_conf_flagvariant_t *fv;
    char funit_new[36]; /* a unit generated here, set as a cookie; "" none */
    uint64_t xunit_h;   /* the unit's hash when the flag is under an experiment (0: none) */
    gh_str_t referer, ua; /* for a route's analytics (views into the head) */
    /* P_STREAM: a handler's streamed response (gh_session_stream_start) */
    gh_stream_fn sfn;
    void *sctx;
    uint32_t stick_ms;
    /* P_DEFER: waiting for gh_session_answer_deferred */
    uint64_t dtoken;
    /* on one of the worker's lists (w->streams or w->deferred), or none */
    struct gh_req *l_next, *l_prev;
    void **list;
    /* the programmable edge: rules' and functions' changes, a shadowed rule (applied on a 404) */
    gh_edits_t *ed;
    const gh_rule_t *shadow;
    gh_str_t shadow_to;
    int rstatus;        /* a rewrite's answer status (Netlify "404" rewrites), 0: the origin's */
    int fn_ctx;         /* the edge function's r.ctx reference (0: none) */
    char country[3];    /* the client's country, looked up once ("" not yet, "-" unknown) */
    uint8_t shadow_done, fn_failed;
    gh_trace_ctx_t tr; /* tracing (obs/trace.h): zero when not traced; stays last (req_new clears up to its tries) */
};

static gh_handler_fn role_handlers[8];

void gh_session_set_handler(int role, gh_handler_fn fn) { role_handlers[role] = fn; }

static void client_run(gh_client_t *c);
static void client_timeout(gh_timer_t *t);
static void client_resume(gh_task_t *t);
static void client_close(gh_client_t *c);
static void req_timeout(gh_timer_t *t);
static void trace_try(gh_req_t *r);
static void trace_finish(gh_req_t *r, uint64_t dur);
/* the current upstream try of a sampled request ended (GH_TT_*) */
#define TRACE_TRY_END(r, oc)                                  \
    do {                                                      \
        if ((r)->tr.sampled)                                  \
            gh_trace_try_end(&(r)->tr, (oc), now_us());       \
    } while (0)
static void backend_result(gh_req_t *r, int failed);
static void try_end(gh_req_t *r);
static void pending_done(gh_req_t *r);
static void upstream_start(gh_req_t *r, int fresh);
static int retry_allowed(gh_req_t *r, uint32_t cond);
static int replayable(const gh_req_t *r);
static int pick_backend(gh_req_t *r);
static void retry_start(gh_req_t *r);
static void dispatch(gh_req_t *r);
static int protect_request(gh_req_t *r, const gh_h1_request_t *m, uint32_t *hold_ms);
static int cache_response(gh_req_t *r, const gh_h1_response_t *m, uint32_t head_len);
static int cache_stale_on_error(gh_req_t *r, int status);
static void cache_capture(gh_req_t *r, const char *p, size_t n);
static void cache_store(gh_req_t *r);
static void cache_req_free(gh_req_t *r);
static void cache_fetched(gh_req_t *r);
static int put_cache_status_fwd(gh_req_t *r, gh_buf_t *b, int status);
static void cache_wait_end(gh_req_t *r, int woken);
static int cache_lookup(gh_req_t *r, const gh_h1_request_t *m);
static void forward(gh_req_t *r, const gh_h1_request_t *m, uint32_t hold_ms);
static void route_flag(gh_req_t *r, const gh_h1_request_t *m);
static int put_flag_headers(gh_req_t *r, gh_buf_t *b);
static int put_resp_edits(gh_req_t *r, gh_buf_t *b);
static int apply_rules(gh_req_t *r, const gh_h1_request_t *m, const gh_conf_site_t *site);
static int shadow_apply(gh_req_t *r);
static int function_answer(gh_req_t *r);
static int edit_written(const gh_edits_t *e, uint32_t i, int resp);
static int reparse(gh_req_t *r, gh_h1_request_t *m);
static int body_validate(gh_req_t *r);
static int run_function(gh_req_t *r, const gh_h1_request_t *m, int phase, const gh_h1_header_t *rh, uint32_t nrh);
static void edge_done(gh_req_t *r);

/* The request's start in unix ms (0 when nothing asked for the wall clock). */
static inline uint64_t req_wall_ms(const gh_req_t *r) { return r->wall_ns / 1000000u; }

static uint64_t now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const gh_conf_t *conf_of(gh_worker_t *w) { return w->gen->conf; }

/* ---- client I/O: plain TCP or TLS, with read(2)/writev(2) semantics ---- */

/* TLS writes are coalesced up to this much: one record for a head and a small body. */
#define TLS_COALESCE 16384

static ssize_t tls_errno(gh_client_t *c, ssize_t rc)
{
    if (rc == GH_EAGAIN) {
        /* TLS may need the other direction: wait for it, then retry this one */
        if (gh_tls_want(c->ssl) == GH_TLS_WANT_WRITE)
            c->writable = 0;
        else
            c->readable = 0;
        errno = EAGAIN;
    } else {
        errno = EIO;
    }
    return -1;
}

/* The socket of a TCP (or TLS) client. */
ssize_t gh_client_sock_recv(gh_client_t *c, void *buf, size_t n)
{
    if (!c->ssl)
        return read(c->io.fd, buf, n);
    ssize_t k = gh_tls_read(c->ssl, buf, n);
    if (k >= 0)
        return k;
    if (k == GH_ECLOSED) /* EOF without close_notify: like a TCP close (HTTP framing judges truncation) */
        return 0;
    return tls_errno(c, k);
}

static ssize_t client_recv(gh_client_t *c, void *buf, size_t n)
{
    if (c->bg) /* a background client: its head is all it ever sends */
        return 0;
    return c->h2s ? gh_h2_stream_recv(c, buf, n) : gh_client_sock_recv(c, buf, n);
}

/* writev over TLS. The bytes passed are always a prefix of the concatenated iovecs
 * that only grows between calls (the rule of gh_tls_write: a retry passes the same
 * bytes again, never fewer): the first iovec, topped up from the second to one record. */
static ssize_t tls_writev(SSL *ssl, const struct iovec *iov, int n)
{
    const void *p = iov[0].iov_base;
    size_t len = iov[0].iov_len;
    char scratch[TLS_COALESCE];
    if (n > 1 && len < TLS_COALESCE) {
        size_t more = GH_MIN(iov[1].iov_len, TLS_COALESCE - len);
        memcpy(scratch, iov[0].iov_base, len);
        memcpy(scratch + len, iov[1].iov_base, more);
        p = scratch;
        len += more;
    }
    return gh_tls_write(ssl, p, len);
}

/* A short count means the socket (or the stream's response buffer) is full. */
static ssize_t client_writev(gh_client_t *c, const struct iovec *iov, int n)
{
    if (c->bg) { /* a background client: the answer is not wanted */
        size_t all = 0;
        for (int i = 0; i < n; i++)
            all += iov[i].iov_len;
        return (ssize_t)all;
    }
    if (c->h2s)
        return gh_h2_stream_writev(c, iov, n);
    if (!c->ssl)
        return writev(c->io.fd, iov, n);
    ssize_t k = tls_writev(c->ssl, iov, n);
    return k >= 0 ? k : tls_errno(c, k);
}

ssize_t gh_client_sock_send(gh_client_t *c, const void *buf, size_t n)
{
    struct iovec iov = {(void *)buf, n};
    if (!c->ssl)
        return writev(c->io.fd, &iov, 1);
    ssize_t k = gh_tls_write(c->ssl, buf, n);
    return k >= 0 ? k : tls_errno(c, k);
}

/* The same for a backend connection (TLS when the pool says so). */
static ssize_t up_errno(gh_upconn_t *u, ssize_t rc, int reading)
{
    if (rc == GH_EAGAIN) {
        if (gh_tls_want(u->ssl) == GH_TLS_WANT_WRITE) {
            u->writable = 0;
            u->read_wants_write = (uint8_t)reading;
        }
        errno = EAGAIN;
    } else {
        errno = rc == GH_ECLOSED ? ECONNRESET : EIO;
    }
    return -1;
}

static ssize_t up_recv(gh_upconn_t *u, void *buf, size_t n)
{
    if (u->h2st || u->io.fd < 0)
        return gh_h2up_recv(u, buf, n);
    if (!u->ssl)
        return read(u->io.fd, buf, n);
    ssize_t k = gh_tls_read(u->ssl, buf, n);
    if (k == GH_ECLOSED) /* EOF without close_notify: a close (framing judges truncation) */
        return 0;
    return k >= 0 ? k : up_errno(u, k, 1);
}

static ssize_t up_writev(gh_upconn_t *u, const struct iovec *iov, int n)
{
    if (u->h2st || u->io.fd < 0)
        return gh_h2up_writev(u, iov, n);
    if (!u->ssl)
        return writev(u->io.fd, iov, n);
    ssize_t k = tls_writev(u->ssl, iov, n);
    return k >= 0 ? k : up_errno(u, k, 0);
}

/* Best effort, for the few bytes of an interim response (100 Continue). */
static void client_send_small(gh_client_t *c, const char *p, size_t n)
{
    if (c->h2s || c->bg) /* HTTP/2 has no interim 100: the client sends its body within flow control */
        return;
    if (c->ssl) {
        struct iovec iov = {(void *)p, n};
        (void)client_writev(c, &iov, 1);
    } else {
        ssize_t k = send(c->io.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)k;
    }
}

void gh_session_tls_hello(SSL *ssl, void *arg)
{
    (void)arg;
    gh_client_t *c = SSL_get_app_data(ssl);
    if (c && !c->ja4[0] && gh_ja4_from_ssl(ssl, c->ja4) < 0) /* after a HelloRetryRequest: keep the first */
        c->ja4[0] = 0;
}

/* ---- small output helpers (bounded appends into a buffer that grows on demand) ---- */

static int put(gh_worker_t *w, gh_buf_t *b, const char *p, size_t n)
{
    if (GH_UNLIKELY(gh_buf_room(b) < n)) {
        uint32_t want = b->cap ? b->cap : GH_BUF_SIZE;
        while (want - b->wr < n)
            want *= 2;
        if (gh_buf_grow(&w->bufs, b, want) < 0)
            return GH_ENOMEM;
    }
    memcpy(b->base + b->wr, p, n);
    b->wr += (uint32_t)n;
    return 0;
}

#define PUTL(w, b, lit) put((w), (b), (lit), sizeof(lit) - 1)
#define PUTS(w, b, s) put((w), (b), (s).p, (s).n)

static int put_u64(gh_worker_t *w, gh_buf_t *b, uint64_t v)
{
    char d[20];
    return put(w, b, d, gh_u64_dec(d, v));
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 410: return "Gone";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

/* "HTTP/1.1 STATUS REASON\r\n" */
static int put_status_line(gh_worker_t *w, gh_buf_t *b, int status)
{
    int rc = PUTL(w, b, "HTTP/1.1 ");
    rc |= put_u64(w, b, (uint64_t)status);
    rc |= PUTL(w, b, " ");
    const char *reason = reason_of(status);
    rc |= put(w, b, reason, strlen(reason));
    return rc | PUTL(w, b, "\r\n");
}

/* The connection field of an answer made here, and the end of the head. */
static int put_head_end(gh_worker_t *w, gh_buf_t *b, const gh_client_t *c, int minor)
{
    int rc = 0;
    if (c->close_after)
        rc |= PUTL(w, b, "Connection: close\r\n");
    else if (minor == 0)
        rc |= PUTL(w, b, "Connection: keep-alive\r\n");
    return rc | PUTL(w, b, "\r\n");
}

/* ---- requests: allocation, accounting, release ---- */

static gh_req_t *req_new(gh_client_t *c)
{
    gh_worker_t *w = c->w;
    gh_req_t *r = w->req_free;
    if (r) {
        w->req_free = *(void **)r;
        w->nreq_free--;
    } else if (!(r = malloc(sizeof(*r)))) {
        return NULL;
    }
    /* the trace context's try records (last) are written before they are read: not cleared */
    memset(r, 0, offsetof(gh_req_t, tr) + offsetof(gh_trace_ctx_t, tries));
    r->c = c;
    r->w = w;
    r->up_us = -1;
    r->timer.cb = req_timeout;
    return r;
}

static void stream_unlink(gh_req_t *r);

static void req_free(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    if (r->lb_active && r->gen->up[r->ups->index].lb) /* ended without an outcome (client gone) */
        gh_lb_end(r->gen->up[r->ups->index].lb, (int)r->backend_idx, now_us() - r->t_up_us, 0, now_us());
    r->lb_active = 0;
    try_end(r);

    if (r->breaker_req)
        __atomic_sub_fetch(&((gh_upstream_stats_t *)r->ups->stats)->live.requests, 1, __ATOMIC_RELAXED);
    r->breaker_req = 0;
    if (r->breaker_pending)
        pending_done(r);
    gh_timer_stop(&w->loop, &r->timer);
    stream_unlink(r);
    cache_req_free(r);
    gh_buf_put(&w->bufs, &r->uhead);
    gh_buf_put(&w->bufs, &r->resp);
    gh_buf_put(&w->bufs, &r->chead);
    if (r->u) {
        gh_upstream_close(r->u);
        r->u = NULL;
    }
    edge_done(r);
    if (r->gen)
        gh_gen_release(w, r->gen);
    if (w->nreq_free < 256) {
        *(void **)r = w->req_free;
        w->req_free = r;
        w->nreq_free++;
    } else {
        free(r);
    }
}

static const char *req_country(gh_req_t *r, const gh_h1_header_t *hs, uint32_t nh);

static void req_account(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    if (r->accounted)
        return;
    r->accounted = 1;
    uint64_t dur = now_us() - r->t_start_us;
    if (r->prot_counted || (r->route && r->route->tenant->flood.latency && r->up_us > 0))
        gh_protect_done(r->route, r->prot_counted, r->up_us > 0 ? (uint64_t)r->up_us : 0);
    r->prot_counted = 0;
    if (r->route && !r->c->bg) {
        gh_metrics_request(r->route->stats, w->id, r->status, dur, r->bytes_in, r->bytes_out);
        if (r->cresult)
            gh_metrics_cache(r->route->stats, w->id, r->cresult);
        if (r->route->analytics) {
            gh_sk_event_t ev = {.key = {r->path, r->referer, r->ua, gh_str(r->peer, r->peer_len),
                                        r->country[0] && r->country[0] != '-' ? gh_str(r->country, 2) : GH_STR("")},
                                .latency = (double)dur, .status = (unsigned)r->status, .cache = r->cresult,
                                .bytes_in = r->bytes_in, .bytes_out = r->bytes_out, .has_visitor = 1};
            uint64_t vh[2] = {gh_sk_hash(r->peer, r->peer_len), gh_sk_hash(r->ua.p, r->ua.n)};
            ev.visitor = gh_sk_hash(vh, sizeof vh); /* a visitor: an address and a user agent */
            gh_analytics_record(w, r->route, &ev, (int64_t)(r->wall_ns ? req_wall_ms(r) : now_wall_ms()));
        }
        if (r->xunit_h) /* an experiment's unit: its request as an edge observation */
            gh_exp_observe(w->id, r->route->tenant, r->xunit_h, r->path.p, r->path.n, r->status, dur, r->bytes_out,
                           req_wall_ms(r));
    }
    if (r->tr.sampled)
        trace_finish(r, dur);
    if (!gh_accesslog_enabled() || r->c->listener->role != GH_LISTEN_PROXY)
        return;
    gh_access_rec_t rec = {
        .time_ms = req_wall_ms(r),
        .client = gh_str(r->peer, r->peer_len),
        .method = r->method,
        .host = r->host,
        .path = r->path,
        .query = r->query,
        .status = r->status,
        .bytes_in = r->bytes_in,
        .bytes_out = r->bytes_out,
        .upstream_us = r->up_us,
        .total_us = dur,
        .request_id = gh_str(r->reqid, r->reqid_len),
    };
    if (r->route) {
        rec.tenant = gh_str(r->route->tenant->name, strlen(r->route->tenant->name));
        rec.route = gh_str(r->route->name, strlen(r->route->name));
    }
    if (r->backend)
        rec.upstream = gh_str(r->backend->name, strlen(r->backend->name));
    SSL *tls = gh_client_tls(r->c);
    if (tls) {
        const gh_client_t *conn = r->c->parent ? r->c->parent : r->c;
        const char *v = gh_tls_version(tls);
        rec.tls = gh_str(v, strlen(v));
        rec.ja4 = gh_str(conn->ja4, strlen(conn->ja4));
    }
    rec.proto = r->c->h2s ? GH_STR("HTTP/2") : r->minor ? GH_STR("HTTP/1.1") : GH_STR("HTTP/1.0");
    if (r->prot_reason) {
        const char *rs = gh_protect_reason_name(r->prot_reason), *as = gh_protect_action_name(r->prot_action);
        rec.protect_reason = gh_str(rs, strlen(rs));
        rec.protect_action = gh_str(as, strlen(as));
        if (r->prot_detail)
            rec.protect_detail = gh_str(r->prot_detail, strlen(r->prot_detail));
    }
    if (r->route && r->route->flag && r->route->flag->exposure) { /* an exposure: who saw which variant */
        rec.flag = gh_str(r->route->flag->key, strlen(r->route->flag->key));
        if (r->fvariant)
            rec.variant = gh_str(r->fvariant, strlen(r->fvariant));
    }
    if (r->cresult) {
        const char *cr = r->c->bg ? "refresh" : gh_cache_result_names[r->cresult];
        rec.cache = gh_str(cr, strlen(cr));
    }
    if (gh_accesslog_log(w->id, &rec) < 0)
        GH_COUNT(w->stats->access_log_dropped, 1);
}

/* ---- direct responses ---- */

/* Strict-Transport-Security of the request's site, over TLS only (RFC 6797 8.1). */
static int put_hsts(gh_req_t *r, gh_buf_t *b)
{
    const char *v = gh_client_tls(r->c) && r->route ? r->route->site->hsts : NULL;
    if (!v)
        return 0;
    int rc = PUTL(r->w, b, "Strict-Transport-Security: ");
    rc |= put(r->w, b, v, strlen(v));
    return rc | PUTL(r->w, b, "\r\n");
}

static void respond_full(gh_req_t *r, int status, const char *ctype, const char *body, size_t len,
                         const char *extra, const gh_conf_kv_t *kv, uint32_t nkv, int close)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    if (r->u) {
        gh_upstream_close(r->u);
        r->u = NULL;
    }
    gh_buf_put(&w->bufs, &r->resp);
    r->ready_end = r->scan = 0;
    gh_buf_put(&w->bufs, &r->chead);
    r->status = status;
    r->phase = P_DIRECT;
    /* the rest of a request body we do not read makes the connection unusable */
    if (!r->body_done || close || w->draining || !r->keep_alive) /* (the client asked to close) */
        c->close_after = 1;
    gh_buf_t *b = &r->chead;
    int rc = put_status_line(w, b, status);
    const char *date = gh_worker_date(w);
    rc |= put(w, b, date, strlen(date));
    if (ctype) {
        rc |= PUTL(w, b, "Content-Type: ");
        rc |= put(w, b, ctype, strlen(ctype));
        rc |= PUTL(w, b, "\r\n");
    }
    if (status >= 200 && status != 204 && status != 304) {
        rc |= PUTL(w, b, "Content-Length: ");
        rc |= put_u64(w, b, len);
        rc |= PUTL(w, b, "\r\n");
    }
    if (extra)
        rc |= put(w, b, extra, strlen(extra));
    rc |= put_hsts(r, b);
    if (r->ed)
        rc |= put_resp_edits(r, b);
    for (uint32_t i = 0; i < nkv; i++) {
        rc |= put(w, b, kv[i].name, kv[i].name_len);
        rc |= PUTL(w, b, ": ");
        rc |= put(w, b, kv[i].value, kv[i].value_len);
        rc |= PUTL(w, b, "\r\n");
    }
    rc |= put_head_end(w, b, c, r->minor);
    if (len && !r->head_only && status >= 200 && status != 204 && status != 304)
        rc |= put(w, b, body, len);
    if (rc < 0) { /* out of memory: nothing sensible to send */
        gh_buf_put(&w->bufs, b);
        c->close_after = 1;
    }
    r->resp_done = 1;
}

static void respond(gh_req_t *r, int status, const char *ctype, const char *body, size_t len,
                    const char *extra, int close)
{
    respond_full(r, status, ctype, body, len, extra, NULL, 0, close);
}

/* A route's configured direct response. */
static void respond_kv(gh_req_t *r, int status, const char *body, size_t len, const gh_conf_kv_t *kv,
                       uint32_t nkv)
{
    respond_full(r, status, NULL, body, len, NULL, kv, nkv, 0);
}

void gh_session_respond(gh_req_t *r, int status, const char *ctype, const char *body, size_t len,
                        const char *extra_headers)
{
    respond(r, status, ctype, body, len, extra_headers, 0);
}

/* The admin listener's problem type for a status (https://gatehouse.dev/problems/<type>). */
static const char *problem_type(int status)
{
    switch (status) {
    case 400: return "bad-request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not-found";
    case 405: return "method-not-allowed";
    case 408: return "request-timeout";
    case 413: return "payload-too-large";
    case 414:
    case 431: return "header-too-large";
    case 429: return "rate-limited";
    case 502:
    case 503:
    case 504: return "unavailable";
    default: return "internal";
    }
}

void gh_session_problem(gh_req_t *r, int status, const char *type, const char *detail, const char *extra_headers)
{
    if (!type)
        type = problem_type(status);
    char body[1400], esc[1000], hdr[512];
    esc[gh_json_str(esc, sizeof esc - 1, gh_str(detail, GH_MIN(strlen(detail), 300u)), 1)] = 0; /* details may quote input */
    int n = snprintf(body, sizeof body,
                     "{\"type\":\"https://gatehouse.dev/problems/%s\",\"title\":\"%s\",\"status\":%d,\"detail\":%s}\n",
                     type, reason_of(status), status, esc);
    snprintf(hdr, sizeof hdr, "Cache-Control: no-store\r\n%s", extra_headers ? extra_headers : "");
    respond(r, status, "application/problem+json", body, (size_t)GH_MIN(n, (int)sizeof body - 1), hdr, 0);
}

/* ---- streamed answers (see session.h) ---- */

#define STREAM_PENDING_MAX (1u << 20) /* bytes a client may leave unread before the stream is cut */

/* The worker's lists of requests waiting on an event (streams, deferred answers); a request is
 * on at most one. */
static void wlist_add(void **head, gh_req_t *r)
{
    r->list = head;
    r->l_prev = NULL;
    r->l_next = *head;
    if (*head)
        ((gh_req_t *)*head)->l_prev = r;
    *head = r;
}

static void wlist_del(gh_req_t *r)
{
    if (!r->list)
        return;
    if (r->l_prev)
        r->l_prev->l_next = r->l_next;
    else
        *r->list = r->l_next;
    if (r->l_next)
        r->l_next->l_prev = r->l_prev;
    r->l_next = r->l_prev = NULL;
    r->list = NULL;
}

static void defer_unlink(gh_req_t *r)
{
    if (!r->dtoken)
        return;
    wlist_del(r);
    r->dtoken = 0;
}

uint64_t gh_session_defer(gh_req_t *r, uint32_t timeout_ms)
{
    gh_worker_t *w = r->w;
    r->dtoken = ((uint64_t)w->id << 48) | (++w->defer_seq & 0xffffffffffffull);
    r->phase = P_DEFER;
    r->phase_start = gh_loop_now(&w->loop) + timeout_ms; /* the deadline (req_timer_arm) */
    wlist_add(&w->deferred, r);
    return r->dtoken;
}

int gh_session_answer_deferred(uint64_t token, int status, const char *ctype, const char *body, size_t len,
                               const char *extra)
{
    gh_worker_t *w = gh_worker_self();
    if (!w || !token)
        return -1;
    for (gh_req_t *r = w->deferred; r; r = r->l_next)
        if (r->dtoken == token) {
            defer_unlink(r);
            r->phase = 0;
            respond(r, status, ctype, body, len, extra, 0);
            gh_task_post(&w->loop, &r->c->resume);
            return 0;
        }
    return -1; /* the client went away, or it timed out */
}

static void stream_unlink(gh_req_t *r)
{
    defer_unlink(r);
    free(r->sctx);
    r->sctx = NULL;
    if (!r->sfn)
        return;
    wlist_del(r);
    r->sfn = NULL;
}

int gh_session_stream_start(gh_req_t *r, const char *ctype, const char *extra, gh_stream_fn fn, void *ctx,
                            uint32_t tick_ms)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    if (r->minor == 0 || r->head_only || w->draining)
        return -1; /* no chunked framing for HTTP/1.0 */
    gh_buf_put(&w->bufs, &r->chead);
    gh_buf_t *b = &r->chead;
    int rc = put_status_line(w, b, 200);
    const char *date = gh_worker_date(w);
    rc |= put(w, b, date, strlen(date));
    rc |= PUTL(w, b, "Content-Type: ");
    rc |= put(w, b, ctype, strlen(ctype));
    rc |= PUTL(w, b, "\r\nTransfer-Encoding: chunked\r\n");
    if (extra)
        rc |= put(w, b, extra, strlen(extra));
    c->close_after |= !r->body_done;
    rc |= put_head_end(w, b, c, r->minor);
    if (rc < 0) {
        gh_buf_put(&w->bufs, b);
        return -1;
    }
    r->status = 200;
    r->resp_started = 1;
    r->phase = P_STREAM;
    r->sfn = fn;
    r->sctx = ctx;
    r->stick_ms = tick_ms ? tick_ms : 15000;
    if (fn) /* one that lasts: it hears of events */
        wlist_add(&w->streams, r);
    gh_task_post(&w->loop, &c->resume);
    return 0;
}

int gh_session_stream_send(gh_req_t *r, const void *p, size_t n)
{
    gh_worker_t *w = r->w;
    if (r->phase != P_STREAM || !n)
        return r->phase == P_STREAM ? 0 : -1;
    if (gh_buf_len(&r->chead) + n > STREAM_PENDING_MAX)
        return -1;
    char hex[24];
    int hl = snprintf(hex, sizeof hex, "%zx\r\n", n);
    int rc = put(w, &r->chead, hex, (size_t)hl);
    rc |= put(w, &r->chead, p, n);
    rc |= PUTL(w, &r->chead, "\r\n");
    if (rc < 0)
        return -1;
    r->bytes_out += n;
    gh_task_post(&w->loop, &r->c->resume);
    return 0;
}

void gh_session_stream_end(gh_req_t *r, const char *trailers)
{
    gh_worker_t *w = r->w;
    if (r->phase != P_STREAM)
        return;
    stream_unlink(r);
    int rc = PUTL(w, &r->chead, "0\r\n");
    if (trailers)
        rc |= put(w, &r->chead, trailers, strlen(trailers));
    rc |= PUTL(w, &r->chead, "\r\n");
    if (rc < 0)
        r->c->close_after = 1;
    r->phase = P_DIRECT;
    r->resp_done = 1;
    gh_task_post(&w->loop, &r->c->resume);
}

void *gh_session_stream_ctx(gh_req_t *r) { return r->sctx; }

const gh_conf_t *gh_session_stream_conf(gh_req_t *r) { return r->gen->conf; }

void gh_session_stream_regen(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    if (r->gen == w->gen)
        return;
    gh_gen_t *old = r->gen;
    r->gen = gh_gen_hold(w);
    r->route = NULL;
    gh_gen_release(w, old);
}

void gh_session_streams_event(gh_worker_t *w, int event)
{
    gh_req_t *r = w->streams;
    while (r) {
        gh_req_t *next = r->l_next; /* the callback may end (unlink) r */
        r->sfn(r, event);
        r = next;
    }
}

static void respond_error(gh_req_t *r, int status, const char *msg)
{
    gh_client_t *c = r->c;
    if (status >= 500 && r->cobj && cache_stale_on_error(r, status))
        return;
    if (r->resp_started) { /* the client has part of another response: cut it */
        r->status = r->status ? r->status : status;
        c->close_after = 1;
        r->phase = P_DIRECT;
        r->is_error = 1;
        gh_buf_put(&r->w->bufs, &r->chead);
        gh_buf_put(&r->w->bufs, &r->resp);
        r->ready_end = r->scan = 0;
        if (r->u) {
            gh_upstream_close(r->u);
            r->u = NULL;
        }
        return;
    }
    if (c->listener->role == GH_LISTEN_GRPC) {
        /* a gRPC client reads the status from grpc-status (HTTP 200, trailers-only), mapped as
         * gRPC's HTTP-to-gRPC table says, a too large message RESOURCE_EXHAUSTED */
        int code = status == 413 ? 8 : status == 408 ? 4 : status == 401 ? 16 : status == 403 ? 7 : status == 404 ? 12
                 : status == 429 || status == 502 || status == 503 || status == 504 ? 14 : status == 400 ? 13 : 2;
        char extra[200];
        snprintf(extra, sizeof extra, "grpc-status: %d\r\ngrpc-message: %s\r\n", code, msg); /* msg: our constants */
        respond(r, 200, "application/grpc", NULL, 0, extra, status == 400 || status == 408 || status == 413);
        return;
    }
    char body[320];
    int close = status == 400 || status == 408 || status == 413;
    if (c->listener->role == GH_LISTEN_ADMIN) { /* the admin API answers problem+json (RFC 9457) */
        int n = snprintf(body, sizeof body,
                         "{\"type\":\"https://gatehouse.dev/problems/%s\",\"title\":\"%s\",\"status\":%d,"
                         "\"detail\":\"%s\"}\n", problem_type(status), reason_of(status), status, msg); /* msg: ours */
        respond(r, status, "application/problem+json", body, (size_t)n, "Cache-Control: no-store\r\n", close);
        return;
    }
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, reason_of(status), msg);
    respond(r, status, "text/plain; charset=utf-8", body, (size_t)n, NULL, close);
}

/* ---- the request body from the client ---- */

/* Validate newly received body bytes; advances in_ready. */
static int body_validate(gh_req_t *r)
{
    gh_client_t *c = r->c;
    if (r->body_done)
        return 0;
    uint32_t from = r->in_pos + r->in_ready;
    uint32_t avail = c->in.wr - from;
    if (!avail)
        return 0;
    if (r->body == GH_H1_BODY_LENGTH) {
        uint32_t take = (uint32_t)GH_MIN((uint64_t)avail, r->body_left);
        r->in_ready += take;
        r->bytes_in += take;
        r->body_left -= take;
        if (!r->body_left)
            r->body_done = 1;
        return take > 0;
    }
    uint64_t max = r->route ? r->route->max_body_size : 0;
    int progress = 0;
    while (avail && !r->chunk.done) {
        gh_str_t data;
        long n = gh_h1_chunked_step(&r->chunk, c->in.base + from, avail, &data);
        if (n < 0)
            return E_BADBODY;
        if (n == 0)
            break;
        r->in_ready += (uint32_t)n;
        r->bytes_in += (uint64_t)n;
        from += (uint32_t)n;
        avail -= (uint32_t)n;
        progress = 1;
        if (max && r->chunk.total > max)
            return E_TOOLARGE;
    }
    if (r->chunk.done)
        r->body_done = 1;
    return progress;
}

/* Read more of the request body (or tunnel bytes) from the client. */
static int client_read_body(gh_req_t *r, int tunnel)
{
    gh_client_t *c = r->c;
    int progress = 0;
    if (!tunnel) {
        int v = body_validate(r);
        if (v < 0)
            return v;
        progress |= v;
        if (r->body_done)
            return progress;
    }
    if (!c->readable)
        return progress;
    uint32_t head_end = c->in.rd + r->head_len;
    if (!gh_buf_room(&c->in)) {
        /* reclaim the space of body bytes already sent */
        if (r->in_pos > head_end) {
            uint32_t keep = c->in.wr - r->in_pos;
            memmove(c->in.base + head_end, c->in.base + r->in_pos, keep);
            c->in.wr = head_end + keep;
            r->in_pos = head_end;
        }
        if (!gh_buf_room(&c->in))
            return progress; /* the upstream must drain first */
    }
    size_t room = gh_buf_room(&c->in);
    ssize_t n = client_recv(c, c->in.base + c->in.wr, room);
    if (n > 0) {
        if ((size_t)n < room && !c->rdhup)
            c->readable = 0;
        c->in.wr += (uint32_t)n;
        if (tunnel) {
            r->bytes_in += (uint64_t)n;
            r->in_ready = c->in.wr - r->in_pos;
            return 1;
        }
        int v = body_validate(r);
        return v < 0 ? v : 1;
    }
    if (n == 0)
        return E_CLIENT;
    if (errno == EAGAIN || errno == EINTR) {
        c->readable = 0;
        return progress;
    }
    return E_CLIENT;
}

/* ---- to and from the upstream ---- */

static int upstream_write(gh_req_t *r)
{
    gh_client_t *c = r->c;
    gh_upconn_t *u = r->u;
    if (r->sent_done || !u->writable)
        return 0;
    struct iovec iov[2];
    int n = 0;
    if (gh_buf_len(&r->uhead))
        iov[n++] = (struct iovec){r->uhead.base + r->uhead.rd, gh_buf_len(&r->uhead)};
    if (r->in_ready)
        iov[n++] = (struct iovec){c->in.base + r->in_pos, r->in_ready};
    if (!n) {
        if (r->body_done && r->phase == P_PROXY) {
            r->sent_done = 1;
            r->phase_start = gh_loop_now(&r->w->loop);
            return 1;
        }
        return 0;
    }
    ssize_t k = up_writev(u, iov, n);
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            u->writable = 0;
            return 0;
        }
        return E_UPSTREAM;
    }
    if ((size_t)k < iov[0].iov_len + (n > 1 ? iov[1].iov_len : 0))
        u->writable = 0; /* the send buffer is full: wait for EPOLLOUT */
    size_t left = (size_t)k;
    size_t h = GH_MIN(left, (size_t)gh_buf_len(&r->uhead));
    r->uhead.rd += (uint32_t)h;
    left -= h;
    r->in_pos += (uint32_t)left;
    r->in_ready -= (uint32_t)left;
    uint32_t head_end = c->in.rd + r->head_len;
    if (r->in_pos == c->in.wr && r->in_pos > head_end) /* all sent: reuse the space */
        r->in_pos = c->in.wr = head_end;
    if (r->phase == P_PROXY && !gh_buf_len(&r->uhead) && r->body_done && !r->in_ready) {
        r->sent_done = 1;
        r->phase_start = gh_loop_now(&r->w->loop);
    }
    return 1;
}

static int is_hop_by_hop(gh_str_t name)
{
    switch (name.n) {
    case 2: return gh_str_caseeq_lit(name, "te");
    case 7: return gh_str_caseeq_lit(name, "upgrade");
    case 10: return gh_str_caseeq_lit(name, "connection") || gh_str_caseeq_lit(name, "keep-alive");
    case 16: return gh_str_caseeq_lit(name, "proxy-connection");
    case 17: return gh_str_caseeq_lit(name, "transfer-encoding");
    default: return 0;
    }
}

/* Names the Connection header lists are hop-by-hop too. */
static int named_in_connection(const gh_h1_header_t *h, size_t n, gh_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == 10 && gh_str_caseeq_lit(h[i].name, "connection") &&
            gh_h1_has_token(h[i].value, name))
            return 1;
    return 0;
}

/* Build the client's response head from the upstream's. */
static int build_client_head(gh_req_t *r, const gh_h1_response_t *m)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    gh_buf_t *b = &r->chead;
    int close = !r->keep_alive || c->close_after || w->draining || m->body == GH_H1_BODY_UNTIL_CLOSE ||
                r->dechunk || !r->body_done;
    if (close)
        c->close_after = 1;
    int rc = PUTL(w, b, "HTTP/1.1 ");
    if (r->rstatus && !m->upgrade) { /* a rewrite that answers with its own status */
        rc |= put_u64(w, b, (uint64_t)r->rstatus);
        rc |= PUTL(w, b, " ");
        rc |= put(w, b, reason_of(r->rstatus), strlen(reason_of(r->rstatus)));
        r->status = r->rstatus;
    } else {
        rc |= put_u64(w, b, (uint64_t)m->status);
        rc |= PUTL(w, b, " ");
        rc |= PUTS(w, b, m->reason);
    }
    rc |= PUTL(w, b, "\r\n");
    int has_conn = 0, has_hsts = 0;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const gh_h1_header_t *h = &m->headers[i];
        if (h->name.n == 10 && gh_str_caseeq_lit(h->name, "connection"))
            has_conn = 1;
        if (h->name.n == 25 && gh_str_caseeq_lit(h->name, "strict-transport-security"))
            has_hsts = 1;
        if (is_hop_by_hop(h->name) && !(m->upgrade && h->name.n == 7))
            continue;
        if (r->dechunk && h->name.n == 14 && gh_str_caseeq_lit(h->name, "content-length"))
            continue;
        if (has_conn && named_in_connection(m->headers, m->nheaders, h->name))
            continue;
        if (r->ed && gh_edits_drops(r->ed, 1, h->name))
            continue;
        rc |= PUTS(w, b, h->name);
        rc |= PUTL(w, b, ": ");
        rc |= PUTS(w, b, h->value);
        rc |= PUTL(w, b, "\r\n");
    }
    if (m->body == GH_H1_BODY_CHUNKED && !r->dechunk)
        rc |= PUTL(w, b, "Transfer-Encoding: chunked\r\n");
    if (!has_hsts)
        rc |= put_hsts(r, b);
    if (r->cstate && r->route->cache)
        rc |= put_cache_status_fwd(r, b, m->status);
    if (r->route && r->route->flag)
        rc |= put_flag_headers(r, b);
    if (r->ed)
        rc |= put_resp_edits(r, b);
    if (m->upgrade)
        rc |= PUTL(w, b, "Connection: upgrade\r\n");
    else if (close)
        rc |= PUTL(w, b, "Connection: close\r\n");
    else if (r->minor == 0)
        rc |= PUTL(w, b, "Connection: keep-alive\r\n");
    rc |= PUTL(w, b, "\r\n");
    return rc;
}

static int retried_status(const gh_req_t *r, int status)
{
    for (uint32_t i = 0; i < r->ups->retry.nstatuses; i++)
        if (r->ups->retry.statuses[i] == status)
            return 1;
    return 0;
}

/* Parse the response head: 1 when complete, 0 for more input, 2 when the response
 * was dropped for a retry, or E_BADRESP. */
static int response_head(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    const gh_conf_t *conf = r->gen->conf;
    gh_h1_limits_t lim = {conf->limits.max_header_size, conf->limits.max_header_size, GH_MAX_HEADERS};
    for (;;) {
        gh_h1_response_t m;
        int rc = gh_h1_parse_response(r->resp.base + r->resp.rd, gh_buf_len(&r->resp), &lim, r->method_id, &m,
                                      w->hdrs, GH_MAX_HEADERS);
        if (rc == GH_EAGAIN) {
            if (!gh_buf_room(&r->resp) && gh_buf_len(&r->resp) >= r->resp.cap) {
                if (r->resp.cap >= conf->limits.max_header_size)
                    return E_BADRESP;
                if (gh_buf_grow(&w->bufs, &r->resp, conf->limits.max_header_size + 1) < 0)
                    return E_BADRESP;
            }
            return 0;
        }
        if (rc < 0)
            return E_BADRESP;
        if (m.status < 200 && m.status != 101) { /* interim: 100 was ours to send; drop 1xx */
            r->resp.rd += (uint32_t)rc;
            continue;
        }
        if (m.status == 101 && !r->ws)
            return E_BADRESP;
        r->status = m.status;
        if (r->tr.sampled)
            gh_trace_try_status(&r->tr, m.status);
        r->up_us = (int64_t)(now_us() - r->t_up_us);
        backend_result(r, m.status == 502 || m.status == 503 || m.status == 504);
        if (retried_status(r, m.status) && replayable(r) && retry_allowed(r, 0) && pick_backend(r) == 0) {
            /* the response is dropped, with its connection (its body is not read) */
            pending_done(r);
            try_end(r);
            gh_upstream_close(r->u);
            r->u = NULL;
            r->status = 0;
            TRACE_TRY_END(r, GH_TT_RETRIED);
            retry_start(r);
            return 2;
        }
        if (r->cstate && cache_response(r, &m, (uint32_t)rc))
            return 2; /* answered from the cache: r is P_DIRECT now */
        if (r->shadow && !r->shadow_done && m.status == 404 && shadow_apply(r))
            return 2; /* a shadowed rule took over: answered, or sent again rewritten */
        const gh_conf_function_t *fn = r->route ? r->route->function : NULL;
        if (fn && (fn->phases & GH_FN_RESPONSE) && !m.upgrade &&
            run_function(r, NULL, GH_FN_RESPONSE, m.headers, m.nheaders) < 0) {
            respond_error(r, 500, "edge function failed"); /* drops the upstream response */
            return 2;
        }
        r->resp.rd += (uint32_t)rc;
        r->scan = r->ready_end = r->resp.rd;
        r->resp_body = (uint8_t)m.body;
        r->resp_left = m.content_length;
        r->dechunk = m.body == GH_H1_BODY_CHUNKED && r->minor == 0;
        r->up_keepalive = m.keep_alive && !m.upgrade;
        r->head_done = 1;
        if (m.body == GH_H1_BODY_NONE)
            r->resp_done = 1;
        if (build_client_head(r, &m) < 0)
            return E_BADRESP;
        if (m.upgrade) {
            r->phase = P_TUNNEL;
            r->resp_done = 1;
            r->ready_end = r->scan = r->resp.wr;
            r->in_ready = r->c->in.wr - r->in_pos;
        }
        return 1;
    }
}

/* Frame newly read response body bytes: advance scan / ready_end. */
static int response_body(gh_req_t *r)
{
    gh_buf_t *b = &r->resp;
    if (r->resp_done) {
        if (b->wr > r->scan && r->phase != P_TUNNEL) { /* bytes after the end: not reusable */
            r->up_extra = 1;
            b->wr = r->scan;
        }
        return 0;
    }
    uint32_t avail = b->wr - r->scan;
    if (!avail)
        return 0;
    switch (r->resp_body) {
    case GH_H1_BODY_LENGTH: {
        uint32_t take = (uint32_t)GH_MIN((uint64_t)avail, r->resp_left);
        if (r->cnew)
            cache_capture(r, b->base + r->scan, take);
        r->scan += take;
        r->ready_end = r->scan;
        r->resp_left -= take;
        if (!r->resp_left)
            r->resp_done = 1;
        if (avail > take) {
            r->up_extra = 1;
            b->wr = r->scan;
        }
        return 1;
    }
    case GH_H1_BODY_CHUNKED:
        while (r->scan < b->wr && !r->rchunk.done) {
            gh_str_t data;
            long n = gh_h1_chunked_step(&r->rchunk, b->base + r->scan, b->wr - r->scan, &data);
            if (n < 0)
                return E_BADRESP;
            if (n == 0)
                break;
            if (r->cnew && data.n)
                cache_capture(r, data.p, data.n);
            if (r->dechunk) {
                if (data.n)
                    memmove(b->base + r->ready_end, data.p, data.n);
                r->ready_end += (uint32_t)data.n;
            }
            r->scan += (uint32_t)n;
            if (!r->dechunk)
                r->ready_end = r->scan;
        }
        if (r->rchunk.done) {
            r->resp_done = 1;
            if (b->wr > r->scan) {
                r->up_extra = 1;
                b->wr = r->scan;
            }
        }
        return 1;
    default: /* until close */
        if (r->cnew)
            cache_capture(r, b->base + r->scan, b->wr - r->scan);
        r->scan = r->ready_end = b->wr;
        return 1;
    }
}

static int upstream_read(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    gh_upconn_t *u = r->u;
    if ((!u->readable && !u->hup) || (r->resp_done && r->phase != P_TUNNEL))
        return 0;
    if (gh_buf_get(&w->bufs, &r->resp) < 0)
        return E_UPSTREAM;
    gh_buf_t *b = &r->resp;
    if (!gh_buf_room(b)) {
        if (!r->head_done) {
            int rc = response_head(r); /* grows, or fails over the limit */
            if (rc < 0)
                return E_BADRESP;
            if (rc == 2)
                return 1;
        } else if (b->rd == r->ready_end) { /* nothing waiting for the client: drop the gap */
            uint32_t keep = b->wr - r->scan;
            memmove(b->base, b->base + r->scan, keep);
            b->rd = r->ready_end = r->scan = 0;
            b->wr = keep;
        }
        if (!gh_buf_room(b))
            return 0; /* the client must drain first */
    }
    size_t room = gh_buf_room(b);
    ssize_t n = up_recv(u, b->base + b->wr, room);
    if (n > 0 && (size_t)n < room && !u->hup)
        u->readable = 0; /* a short read drained the socket; the next bytes bring a new edge */
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            u->readable = 0;
            return 0;
        }
        u->hup = 1;
        return E_UPSTREAM;
    }
    if (n == 0) {
        u->hup = 1;
        u->readable = 0;
        if (r->phase == P_TUNNEL)
            return E_UPSTREAM;
        if (r->head_done && r->resp_body == GH_H1_BODY_UNTIL_CLOSE) {
            r->resp_done = 1;
            return 1;
        }
        return E_UPSTREAM;
    }
    b->wr += (uint32_t)n;
    if (r->phase == P_TUNNEL) {
        r->ready_end = r->scan = b->wr;
        return 1;
    }
    if (!r->head_done) {
        int rc = response_head(r);
        if (rc <= 0 || rc == 2)
            return rc < 0 ? rc : 1;
        if (r->phase == P_TUNNEL)
            return 1;
    }
    int rc = response_body(r);
    return rc < 0 ? rc : 1;
}

/* ---- to the client ---- */

static int client_write(gh_req_t *r)
{
    gh_client_t *c = r->c;
    if (!c->writable)
        return 0;
    struct iovec iov[2];
    int n = 0;
    if (gh_buf_len(&r->chead))
        iov[n++] = (struct iovec){r->chead.base + r->chead.rd, gh_buf_len(&r->chead)};
    uint32_t ready = r->resp.base && r->ready_end > r->resp.rd ? r->ready_end - r->resp.rd : 0;
    if (ready && !r->head_only)
        iov[n++] = (struct iovec){r->resp.base + r->resp.rd, ready};
    else if (r->cserve && r->cbody_off < r->cbody_end) /* a stored body, sent from the store */
        iov[n++] = (struct iovec){r->cobj->body + r->cbody_off, (size_t)GH_MIN(r->cbody_end - r->cbody_off, 1u << 30)};
    if (!n)
        return 0;
    ssize_t k = client_writev(c, iov, n);
    if (k < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            if (!c->ssl)
                c->writable = 0;
            return 0;
        }
        return E_CLIENT;
    }
    if ((size_t)k < iov[0].iov_len + (n > 1 ? iov[1].iov_len : 0))
        c->writable = 0;
    r->resp_started = 1;
    r->bytes_out += (uint64_t)k;
    size_t left = (size_t)k;
    size_t h = GH_MIN(left, (size_t)gh_buf_len(&r->chead));
    r->chead.rd += (uint32_t)h;
    left -= h;
    if (r->cserve) {
        r->cbody_off += left;
        return 1;
    }
    r->resp.rd += (uint32_t)left;
    if (r->resp.base && r->resp.rd == r->ready_end) {
        r->resp.rd = r->ready_end = r->scan; /* skip what de-chunking left behind */
        if (r->resp.rd == r->resp.wr)
            r->resp.rd = r->resp.wr = r->ready_end = r->scan = 0;
    }
    return 1;
}

static int output_pending(const gh_req_t *r)
{
    return gh_buf_len(&r->chead) || (r->resp.base && r->ready_end > r->resp.rd && !r->head_only) ||
           (r->cserve && r->cbody_off < r->cbody_end);
}

/* ---- choosing a backend and connecting ---- */

/* Passive health (outlier_detection): a backend failing consecutive_failures
 * requests in a row is ejected for base_ejection, doubling with each ejection up to
 * max_ejection; at most max_ejected_percent of a pool is ejected at once, and when
 * nothing is left to pick the whole pool is used (panic) rather than failing
 * everything.
 *
 * The retry budget is a token bucket per pool and worker (as Finagle's
 * RetryBudget): every request sent upstream deposits budget_ratio of a token,
 * budget_min_per_s tokens are added each second, a retry takes one, and the bucket
 * holds at most RETRY_CAP. Losing one backend of several is absorbed (its burst of
 * failures is small against the credit of the traffic), while an outage of all of
 * them cannot make more than about 1 + ratio attempts per request plus the reserve. */
#define RETRY_CAP 1000.0

static gh_upstate_t *upstate(gh_req_t *r)
{
    gh_upstate_t *s = &r->gen->up[r->ups->index];
    if (s->lb)
        return s;
    uint32_t n = r->ups->nbackends;
    uint32_t *weights = malloc((n ? n : 1) * sizeof(*weights));
    if (weights) {
        /* with slow start, weights are kept x100 so a ramp can go below a weight of 1 */
        uint32_t scale = r->ups->slow_start ? 100 : 1;
        for (uint32_t i = 0; i < n; i++)
            weights[i] = r->ups->backends[i].weight * scale;
        s->lb = gh_lb_new(r->ups->balance, n, weights, r->ups->maglev, r->ups->maglev_size, gh_worker_rand(r->w));
        free(weights);
    }
    s->ok = malloc(n ? n : 1);
    s->scratch = malloc(n ? n : 1);
    if (!s->lb || !s->ok || !s->scratch) {
        gh_lb_free(s->lb);
        free(s->ok);
        free(s->scratch);
        memset(s, 0, sizeof(*s));
        return NULL;
    }
    /* ejections made under an earlier configuration still hold (they live in the slots) */
    uint64_t now = gh_loop_now(&r->w->loop);
    for (uint32_t i = 0; i < n; i++) {
        s->ok[i] = gh_backend_slot(&r->ups->backends[i], r->w->id)->ejected_until <= now;
        s->nejected += !s->ok[i];
    }
    s->retry_tokens = r->ups->retry.budget_min_per_s; /* the credit of the first second */
    s->retry_refill_ms = gh_loop_now(&r->w->loop);
    return s;
}

static uint64_t hash_key(gh_req_t *r, const gh_h1_request_t *m)
{
    const gh_conf_upstream_t *up = r->ups;
    gh_client_t *c = r->c;
    gh_str_t v = GH_STR_NULL;
    if (up->hash_source == GH_HASH_PATH) {
        v = m->path;
    } else if (up->hash_source != GH_HASH_CLIENT_IP) {
        gh_str_t want = gh_str(up->hash_name, up->hash_name_len);
        if (up->hash_source == GH_HASH_HEADER) {
            const gh_h1_header_t *h = gh_h1_find(m->headers, m->nheaders, want);
            if (h)
                v = h->value;
        } else {
            v = gh_h1_cookie(m->headers, m->nheaders, want);
        }
    }
    if (v.p)
        return gh_lb_hash(v.p, v.n);
    /* client address (also the fallback when the header or cookie is absent) */
    if (c->peer.sa.sa_family == AF_INET6)
        return gh_lb_hash(&c->peer.in6.sin6_addr, 16);
    return gh_lb_hash(&c->peer.in4.sin_addr, 4);
}

/* Slow start: a backend back in rotation (health check up, or end of an ejection)
 * ramps from 10% to its full weight over slow_start ms. */
static void slow_start(gh_req_t *r, gh_upstate_t *s, uint64_t now)
{
    const gh_conf_upstream_t *up = r->ups;
    for (uint32_t i = 0; i < up->nbackends; i++) {
        uint64_t since = gh_health_up_since(&up->backends[i]);
        uint64_t back = gh_backend_slot(&up->backends[i], r->w->id)->ejected_until;
        if (back > since && back <= now)
            since = back;
        uint32_t full = up->backends[i].weight * 100, w = full;
        if (since && now < since + up->slow_start) {
            uint64_t frac = (now - since) * 100 / up->slow_start; /* 0..99 */
            w = (uint32_t)((uint64_t)full * (frac < 10 ? 10 : frac) / 100);
            if (!w)
                w = 1;
        }
        if (s->lb->b[i].weight != w)
            gh_lb_set_weight(s->lb, (int)i, w);
    }
}

/* Choose a backend not tried yet by this request. 0, or -1 when none is left. */
static int pick_backend(gh_req_t *r)
{
    gh_upstate_t *s = upstate(r);
    if (!s)
        return -1;
    uint32_t n = r->ups->nbackends;
    uint64_t now = gh_loop_now(&r->w->loop);
    if (s->nejected)
        for (uint32_t i = 0; i < n; i++)
            if (!s->ok[i] && now >= gh_backend_slot(&r->ups->backends[i], r->w->id)->ejected_until) {
                s->ok[i] = 1;
                gh_backend_slot(&r->ups->backends[i], r->w->id)->fails = 0;
                s->nejected--;
                gh_log(GH_LOG_INFO, "upstream %s: backend %s back in rotation", r->ups->name,
                       r->ups->backends[i].name);
            }
    if (r->ups->slow_start)
        slow_start(r, s, now);
    const uint8_t *ok = s->ok;
    int checked = r->ups->health.enabled;
    int drains = __atomic_load_n(&gh_health_ndrained, __ATOMIC_RELAXED) != 0;
    if (r->tried || checked || drains) {
        for (uint32_t i = 0; i < n; i++)
            s->scratch[i] = s->ok[i] && !(i < 64 && (r->tried >> i & 1)) &&
                            (!checked || gh_health_up(&r->ups->backends[i])) &&
                            !(drains && gh_health_drained(&r->ups->backends[i]));
        ok = s->scratch;
    }
    uint64_t us = now_us();
    int i = gh_lb_pick(s->lb, ok, r->hash_key, us);
    if (i < 0 && !r->tried) { /* panic: everything is down or ejected; use the whole pool (not drained) */
        for (uint32_t k = 0; k < n; k++)
            s->scratch[k] = !(drains && gh_health_drained(&r->ups->backends[k]));
        i = gh_lb_pick(s->lb, s->scratch, r->hash_key, us);
    }
    if (i < 0 && r->tried) { /* every eligible one tried: an ejected one that was not */
        for (uint32_t k = 0; k < n; k++)
            s->scratch[k] = !(k < 64 && (r->tried >> k & 1)) && !(drains && gh_health_drained(&r->ups->backends[k]));
        i = gh_lb_pick(s->lb, s->scratch, r->hash_key, us);
    }
    if (i < 0)
        return -1;
    r->backend_idx = (uint32_t)i;
    r->backend = &r->ups->backends[i];
    if (i < 64)
        r->tried |= 1ull << i;
    return 0;
}

/* A try on r->backend is over (its response is complete, or it failed). */
static void try_end(gh_req_t *r)
{
    if (r->active) {
        GH_COUNT(gh_backend_slot(r->backend, r->w->id)->active, -1);
        r->active = 0;
    }
}

/* The outcome of one attempt on r->backend: feeds the balancer and passive health. */
static void backend_result(gh_req_t *r, int failed)
{
    gh_upstate_t *s = upstate(r);
    if (!s)
        return;
    uint32_t i = r->backend_idx;
    gh_backend_slot_t *bs = gh_backend_slot(r->backend, r->w->id);
    if (r->lb_active) {
        uint64_t now = now_us();
        uint64_t lat = r->up_us > 0 ? (uint64_t)r->up_us : now - r->t_up_us;
        gh_lb_end(s->lb, (int)i, lat, failed, now);
        r->lb_active = 0;
        uint64_t avg = GH_READ(bs->latency_us);
        __atomic_store_n(&bs->latency_us, avg ? avg - avg / 8 + lat / 8 : lat, __ATOMIC_RELAXED);
    }
    if (!failed) {
        bs->fails = 0;
        return;
    }
    try_end(r);
    GH_COUNT(bs->failures, 1);
    uint32_t n = r->ups->nbackends;
    const typeof(r->ups->outlier) *od = &r->ups->outlier;
    if (!od->consecutive_failures || ++bs->fails < od->consecutive_failures || !s->ok[i] ||
        (s->nejected + 1) * 100 > n * od->max_ejected_percent)
        return;
    /* the backoff level grows with each ejection and starts over once the backend
     * has stayed in rotation for max_ejection */
    uint64_t now = gh_loop_now(&r->w->loop);
    if (bs->ejected_until && now > bs->ejected_until + od->max_ejection)
        bs->level = 0;
    uint64_t ms = (uint64_t)od->base_ejection << GH_MIN(bs->level, 16u);
    if (ms > od->max_ejection)
        ms = od->max_ejection;
    s->ok[i] = 0;
    s->nejected++;
    bs->level++;
    bs->fails = 0;
    GH_COUNT(bs->ejections, 1);
    __atomic_store_n(&bs->ejected_until, now + ms, __ATOMIC_RELAXED);
    gh_upstream_stats_t *st = r->ups->stats;
    if (st)
        GH_COUNT(st->slot[r->w->id].ejections, 1);
    gh_log(GH_LOG_WARN, "upstream %s: backend %s ejected for %llu ms after %u failures in a row (worker %u)",
           r->ups->name, r->backend->name, (unsigned long long)ms, od->consecutive_failures, r->w->id);
}

/* Back to the start of the request head, to send it again (nothing reached the client). */
static void rewind_request(gh_req_t *r)
{
    r->uhead.rd = 0;
    gh_buf_put(&r->w->bufs, &r->resp);
    r->ready_end = r->scan = 0;
    r->sent_done = 0;
}

/* Whether a request that reached a backend may be sent again: nothing of its body
 * was streamed, nothing of a response reached the client, and its method is
 * idempotent (or the pool retries any method). */
static int replayable(const gh_req_t *r)
{
    int m = r->method_id;
    return r->body == GH_H1_BODY_NONE && !r->resp_started && !r->ws &&
           (m == GH_M_GET || m == GH_M_HEAD || m == GH_M_OPTIONS || m == GH_M_TRACE || m == GH_M_PUT ||
            m == GH_M_DELETE || r->ups->retry.non_idempotent);
}

/* Whether another try may start after a failure of kind cond (GH_RETRY_*, or 0 for
 * a retried status): the pool retries on it, tries are left, and the pool's retry
 * budget has a token, which is taken. */
static int retry_allowed(gh_req_t *r, uint32_t cond)
{
    gh_worker_t *w = r->w;
    const gh_conf_upstream_t *up = r->ups;
    if ((cond && !(up->retry.on & cond)) || r->tries >= up->retry.attempts || r->tries >= up->nbackends)
        return 0;
    gh_upstate_t *s = upstate(r);
    if (!s)
        return 0;
    uint64_t now = gh_loop_now(&w->loop);
    s->retry_tokens += (double)(now - s->retry_refill_ms) * (up->retry.budget_min_per_s / 1000.0);
    s->retry_refill_ms = now;
    if (s->retry_tokens > RETRY_CAP)
        s->retry_tokens = RETRY_CAP;
    gh_upstream_stats_t *st = up->stats;
    if (s->retry_tokens < 1.0) {
        if (st)
            GH_COUNT(st->slot[w->id].budget_exhausted, 1);
        return 0;
    }
    s->retry_tokens -= 1.0;
    if (st)
        GH_COUNT(st->slot[w->id].retries, 1);
    return 1;
}

/* The next try, on the backend pick_backend chose: at once, or after an exponential
 * backoff with full jitter (try n waits a random time in [0, min(max, base * 2^(n-2))]). */
static void retry_start(gh_req_t *r)
{
    const gh_conf_upstream_t *up = r->ups;
    rewind_request(r);
    uint64_t cap = (uint64_t)up->retry.backoff_base << (r->tries >= 2 ? GH_MIN(r->tries - 1u, 20u) : 0);
    if (cap > up->retry.backoff_max)
        cap = up->retry.backoff_max;
    uint64_t delay = cap ? gh_worker_rand(r->w) % (cap + 1) : 0;
    if (!delay) {
        upstream_start(r, 0);
        return;
    }
    r->phase = P_BACKOFF;
    r->phase_start = gh_loop_now(&r->w->loop) + delay; /* when the try starts */
}

/* Circuit breaker: may this request open a new connection to the pool? */
static int breaker_allows_connect(gh_req_t *r)
{
    const gh_conf_upstream_t *up = r->ups;
    gh_upstream_stats_t *st = up->stats;
    if (!st)
        return 1;
    if (up->breaker.max_connections &&
        __atomic_load_n(&st->live.conns, __ATOMIC_RELAXED) >= up->breaker.max_connections)
        return 0;
    if (up->breaker.max_pending && !r->breaker_pending &&
        __atomic_load_n(&st->live.pending, __ATOMIC_RELAXED) >= up->breaker.max_pending)
        return 0;
    return 1;
}

static void pending_done(gh_req_t *r)
{
    if (r->breaker_pending) {
        __atomic_sub_fetch(&((gh_upstream_stats_t *)r->ups->stats)->live.pending, 1, __ATOMIC_RELAXED);
        r->breaker_pending = 0;
    }
}

/* Connect (or take a pooled connection) to r->backend; when that fails at once,
 * retry on another backend within the budget, else answer 502. */
static void upstream_start(gh_req_t *r, int fresh)
{
    gh_worker_t *w = r->w;
    gh_upstream_stats_t *st = r->ups->stats;
    if (!r->counted) { /* the first attempt: a deposit into the retry budget */
        r->counted = 1;
        gh_upstate_t *s = upstate(r);
        if (s && (s->retry_tokens += r->ups->retry.budget_ratio) > RETRY_CAP)
            s->retry_tokens = RETRY_CAP;
    }
    for (;;) {
        int reused = 0, err = 0;
        int allow_new = breaker_allows_connect(r);
        gh_upconn_t *u;
        if (r->ups->http2) { /* a stream on a shared HTTP/2 connection: no stale-connection replay needed */
            const gh_conf_timeouts_t *to = r->route ? &r->route->timeouts : &conf_of(w)->timeouts;
            u = gh_h2up_get(w, r->ups, r->backend, to->upstream_connect, allow_new, &reused, &err);
            fresh = 0;
        } else {
            u = gh_upstream_get(w, (const struct sockaddr *)&r->backend->addr, r->backend->addrlen, r->ups->tls.tag,
                                allow_new, &reused, &err);
        }
        while (fresh && u && reused) { /* a replay after a stale pooled connection: a new one */
            gh_upstream_close(u);
            u = gh_upstream_get(w, (const struct sockaddr *)&r->backend->addr, r->backend->addrlen,
                                r->ups->tls.tag, allow_new, &reused, &err);
        }
        if (!u && err == GH_ELIMIT) {
            if (st)
                GH_COUNT(st->slot[w->id].overflows, 1);
            respond_error(r, 503, "upstream overloaded (circuit breaker)");
            return;
        }
        r->tries++;
        if (r->tr.on)
            trace_try(r);
        if (u && !reused && st) {
            u->live = &st->live.conns;
            __atomic_add_fetch(u->live, 1, __ATOMIC_RELAXED);
            if (r->ups->breaker.max_pending) {
                __atomic_add_fetch(&st->live.pending, 1, __ATOMIC_RELAXED);
                r->breaker_pending = 1;
            }
        }
        if (u) {
            u->req = r;
            r->u = u;
            r->reused = (uint8_t)reused;
            u->nreq++;
            gh_upstate_t *s = upstate(r);
            if (s && !r->lb_active) {
                gh_lb_begin(s->lb, (int)r->backend_idx);
                r->lb_active = 1;
                gh_backend_slot_t *bs = gh_backend_slot(r->backend, w->id);
                GH_COUNT(bs->active, 1);
                GH_COUNT(bs->requests, 1);
                r->active = 1;
            }
            if (st)
                GH_COUNT(st->slot[w->id].requests, 1);
            if (reused) {
                if (st)
                    GH_COUNT(st->slot[w->id].conns_reused, 1);
                r->phase = P_PROXY;
            } else {
                if (st)
                    GH_COUNT(st->slot[w->id].conns_opened, 1);
                r->phase = P_CONNECT;
                r->phase_start = gh_loop_now(&w->loop);
            }
            r->t_up_us = now_us();
            return;
        }
        if (st)
            GH_COUNT(st->slot[w->id].connect_errors, 1);
        TRACE_TRY_END(r, GH_TT_CONNECT_ERROR);
        backend_result(r, 1);
        if (!retry_allowed(r, GH_RETRY_CONNECT) || pick_backend(r) < 0) {
            respond_error(r, 502, "cannot connect to upstream");
            return;
        }
        retry_start(r);
        return;
    }
}

static void connect_failed(gh_req_t *r);

/* The TLS handshake with a backend failed (verification, protocol): a connect
 * failure, logged (at most once a second per worker: a bad certificate fails
 * every request). */
static void upstream_tls_failed(gh_req_t *r)
{
    static __thread uint64_t last;
    uint64_t now = gh_loop_now(&r->w->loop);
    char why[200];
    gh_tls_strerror(r->u->ssl, why, sizeof why);
    if (!last || now - last >= 1000) {
        last = now;
        gh_log(GH_LOG_WARN, "upstream %s: TLS handshake with %s (as %s) failed: %s", r->ups->name,
               r->backend->name, r->backend->tls_name ? r->backend->tls_name : "-", why);
    }
    gh_upstream_stats_t *st = r->ups->stats;
    if (st)
        GH_COUNT(st->slot[r->w->id].tls_failures, 1);
    connect_failed(r);
}

static void connect_failed(gh_req_t *r)
{
    pending_done(r);
    gh_upstream_stats_t *st = r->ups->stats;
    if (st)
        GH_COUNT(st->slot[r->w->id].connect_errors, 1);
    gh_upstream_close(r->u);
    r->u = NULL;
    TRACE_TRY_END(r, GH_TT_CONNECT_ERROR);
    backend_result(r, 1);
    if (!retry_allowed(r, GH_RETRY_CONNECT) || pick_backend(r) < 0) {
        respond_error(r, 502, "cannot connect to upstream");
        return;
    }
    retry_start(r);
}

/* The upstream went away before a complete response. A request sent on a reused
 * connection without a body may have raced the backend's close: it is sent again
 * once on a new connection to the same backend. Otherwise a replayable request is
 * retried on another backend when the pool retries on resets. */
static void upstream_failed(gh_req_t *r, int err)
{
    gh_upstream_stats_t *st = r->ups ? r->ups->stats : NULL;
    int untouched = !r->head_done && r->body == GH_H1_BODY_NONE && !r->resp_started;
    int stale = untouched && r->reused && !r->replayed;
    if (r->u) {
        gh_upstream_close(r->u);
        r->u = NULL;
    }
    TRACE_TRY_END(r, err == E_BADRESP ? GH_TT_BAD_RESPONSE : GH_TT_RESET);
    if (stale) {
        r->replayed = 1;
        rewind_request(r);
        upstream_start(r, 1);
        return;
    }
    if (st)
        GH_COUNT(st->slot[r->w->id].failures, 1);
    backend_result(r, 1);
    if (untouched && replayable(r) && retry_allowed(r, GH_RETRY_RESET) && pick_backend(r) == 0) {
        retry_start(r);
        return;
    }
    respond_error(r, 502, err == E_BADRESP ? "invalid response from upstream" : "upstream closed the connection");
}

/* ---- building the upstream request ---- */

static int valid_request_id(gh_str_t v)
{
    if (!v.n || v.n > 36 * 3 || v.n >= sizeof(((gh_req_t *)0)->reqid))
        return 0;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' ||
              ch == '_' || ch == '.' || ch == ':'))
            return 0;
    }
    return 1;
}

/* Fields of the client's request that a fetch for the cache does not forward: a
 * Range (the whole response is fetched, stored, and the range served from it) and,
 * when validating a stored response, the client's own preconditions (ours replace them). */
static int cache_drops_field(const gh_req_t *r, gh_str_t n)
{
    if (r->method_id != GH_M_GET)
        return 0;
    if (gh_str_caseeq_lit(n, "range") || gh_str_caseeq_lit(n, "if-range"))
        return 1;
    return r->cstate >= CS_REVAL && r->cobj &&
           (gh_str_caseeq_lit(n, "if-none-match") || gh_str_caseeq_lit(n, "if-modified-since") ||
            gh_str_caseeq_lit(n, "if-match") || gh_str_caseeq_lit(n, "if-unmodified-since"));
}

static int build_upstream_head(gh_req_t *r, const gh_h1_request_t *m)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    const gh_conf_t *conf = r->gen->conf;
    int trusted = gh_conf_is_trusted(conf, &c->peer.sa);
    gh_buf_t *b = &r->uhead;
    if (gh_buf_get(&w->bufs, b) < 0)
        return GH_ENOMEM;
    const gh_edits_t *ed = r->ed;
    int rc = PUTS(w, b, ed && ed->method.p ? ed->method : m->method);
    rc |= PUTL(w, b, " ");
    if (r->fv && r->fv->path_prefix && (m->path.n && m->path.p[0] == '/'))
        rc |= put(w, b, r->fv->path_prefix, r->fv->path_prefix_len); /* the variant's path */
    gh_str_t host = m->host, eh;
    if (ed && gh_edits_req_header(ed, GH_STR("host"), &eh) && eh.n)
        host = eh;
    if (ed && (ed->path.p || ed->query.p)) { /* rewritten by a rule or a function */
        gh_str_t qs = ed->query.p ? ed->query : m->query;
        rc |= PUTS(w, b, ed->path.p ? ed->path : m->path);
        if (qs.n) {
            rc |= PUTL(w, b, "?");
            rc |= PUTS(w, b, qs);
        }
    } else if (m->target.n && m->target.p[0] != '/' && !(m->target.n == 1 && m->target.p[0] == '*')) {
        rc |= PUTS(w, b, m->path); /* absolute-form: send origin-form */
        if (m->query.n) {
            rc |= PUTL(w, b, "?");
            rc |= PUTS(w, b, m->query);
        }
    } else {
        rc |= PUTS(w, b, m->target);
    }
    rc |= PUTL(w, b, " HTTP/1.1\r\nHost: ");
    rc |= PUTS(w, b, host);
    rc |= PUTL(w, b, "\r\n");

    int has_conn = 0;
    gh_str_t xff_in[16];
    int nxff = 0;
    gh_str_t xfp = GH_STR_NULL, xfh = GH_STR_NULL, fwd = GH_STR_NULL;
    for (uint16_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name.n == 10 && gh_str_caseeq_lit(m->headers[i].name, "connection"))
            has_conn = 1;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        const gh_h1_header_t *h = &m->headers[i];
        gh_str_t n = h->name;
        if (is_hop_by_hop(n))
            continue;
        switch (n.n) {
        case 4:
            if (gh_str_caseeq_lit(n, "host"))
                continue;
            break;
        case 6:
            if (gh_str_caseeq_lit(n, "expect"))
                continue;
            break;
        case 9:
            if (gh_str_caseeq_lit(n, "forwarded")) {
                if (trusted && !fwd.n)
                    fwd = h->value;
                continue;
            }
            break;
        case 10: /* forwarded only with a valid traceparent (ours follows), unchanged */
            if (r->tr.on && !r->tr.parent_ok && gh_str_caseeq_lit(n, "tracestate"))
                continue;
            break;
        case 11:
            if (r->tr.on && gh_str_caseeq_lit(n, "traceparent"))
                continue;
            break;
        case 12:
            if (gh_str_caseeq_lit(n, "x-request-id"))
                continue;
            break;
        case 14:
            if (gh_str_caseeq_lit(n, "content-length") || gh_str_caseeq_lit(n, "http2-settings"))
                continue;
            break;
        case 15:
            if (gh_str_caseeq_lit(n, "x-forwarded-for")) {
                if (trusted && nxff < 16)
                    xff_in[nxff++] = h->value;
                continue;
            }
            break;
        case 16:
            if (gh_str_caseeq_lit(n, "x-forwarded-host")) {
                if (trusted && !xfh.n)
                    xfh = h->value;
                continue;
            }
            break;
        case 17:
            if (gh_str_caseeq_lit(n, "x-forwarded-proto")) {
                if (trusted && !xfp.n)
                    xfp = h->value;
                continue;
            }
            break;
        case 19:
            if (gh_str_caseeq_lit(n, "proxy-authorization"))
                continue;
            break;
        }
        if (has_conn && named_in_connection(m->headers, m->nheaders, n))
            continue;
        if (r->cstate >= CS_MISS && cache_drops_field(r, n))
            continue;
        if (ed && gh_edits_drops(ed, 0, n))
            continue;
        rc |= PUTS(w, b, n);
        rc |= PUTL(w, b, ": ");
        rc |= PUTS(w, b, h->value);
        rc |= PUTL(w, b, "\r\n");
    }
    if (r->cobj && r->cstate >= CS_REVAL) { /* validate the stored response (RFC 9111 4.3.1) */
        if (r->cobj->etag.n) {
            rc |= PUTL(w, b, "If-None-Match: ");
            rc |= PUTS(w, b, r->cobj->etag);
            rc |= PUTL(w, b, "\r\n");
        }
        if (r->cobj->last_modified.n) {
            rc |= PUTL(w, b, "If-Modified-Since: ");
            rc |= PUTS(w, b, r->cobj->last_modified);
            rc |= PUTL(w, b, "\r\n");
        }
    }
    gh_str_t peer = gh_str(r->peer, r->peer_len);
    rc |= PUTL(w, b, "X-Forwarded-For: ");
    for (int i = 0; i < nxff; i++) {
        rc |= PUTS(w, b, xff_in[i]);
        rc |= PUTL(w, b, ", ");
    }
    rc |= PUTS(w, b, peer);
    rc |= PUTL(w, b, "\r\nX-Forwarded-Proto: ");
    int https = gh_client_tls(c) != NULL;
    rc |= xfp.n ? PUTS(w, b, xfp) : https ? PUTL(w, b, "https") : PUTL(w, b, "http");
    rc |= PUTL(w, b, "\r\nX-Forwarded-Host: ");
    rc |= PUTS(w, b, xfh.n ? xfh : m->host);
    rc |= PUTL(w, b, "\r\nForwarded: ");
    if (fwd.n) {
        rc |= PUTS(w, b, fwd);
        rc |= PUTL(w, b, ", ");
    }
    int v6 = c->peer.sa.sa_family == AF_INET6;
    rc |= v6 ? PUTL(w, b, "for=\"[") : PUTL(w, b, "for=");
    rc |= PUTS(w, b, peer);
    if (https)
        rc |= v6 ? PUTL(w, b, "]\";proto=https;host=\"") : PUTL(w, b, ";proto=https;host=\"");
    else
        rc |= v6 ? PUTL(w, b, "]\";proto=http;host=\"") : PUTL(w, b, ";proto=http;host=\"");
    rc |= PUTS(w, b, m->host);
    rc |= PUTL(w, b, "\"\r\n");
    if (conf->via)
        rc |= PUTL(w, b, "Via: 1.1 gatehouse\r\n");
    rc |= PUTL(w, b, "X-Request-Id: ");
    rc |= put(w, b, r->reqid, r->reqid_len);
    rc |= PUTL(w, b, "\r\n");
    if (r->tr.on) { /* the parent id is each try's span id, patched in by trace_try */
        char tp[GH_TRACEPARENT_LEN];
        gh_trace_format(tp, r->tr.trace_id, r->tr.span_id, r->tr.sampled);
        rc |= PUTL(w, b, "traceparent: ");
        r->tr.tp_off = b->wr + 36;
        rc |= put(w, b, tp, sizeof tp);
        rc |= PUTL(w, b, "\r\n");
    }
    if (r->route && r->route->flag) {
        const gh_conf_routeflag_t *rf = r->route->flag;
        if (rf->variant_header && r->fvariant) {
            rc |= put(w, b, rf->variant_header, strlen(rf->variant_header));
            rc |= PUTL(w, b, ": ");
            rc |= put(w, b, r->fvariant, strlen(r->fvariant));
            rc |= PUTL(w, b, "\r\n");
        }
        for (uint32_t i = 0; r->fv && i < r->fv->nreq_headers; i++) {
            rc |= put(w, b, r->fv->req_headers[i].name, r->fv->req_headers[i].name_len);
            rc |= PUTL(w, b, ": ");
            rc |= put(w, b, r->fv->req_headers[i].value, r->fv->req_headers[i].value_len);
            rc |= PUTL(w, b, "\r\n");
        }
    }
    for (uint32_t i = 0; ed && i < ed->nh; i++) /* the edge's request fields (Host was written above) */
        if (edit_written(ed, i, 0) && !gh_str_caseeq_lit(ed->h[i].name, "host")) {
            rc |= PUTS(w, b, ed->h[i].name);
            rc |= PUTL(w, b, ": ");
            rc |= PUTS(w, b, ed->h[i].value);
            rc |= PUTL(w, b, "\r\n");
        }
    if (m->body == GH_H1_BODY_LENGTH) {
        rc |= PUTL(w, b, "Content-Length: ");
        rc |= put_u64(w, b, m->content_length);
        rc |= PUTL(w, b, "\r\n");
    } else if (m->body == GH_H1_BODY_CHUNKED) {
        rc |= PUTL(w, b, "Transfer-Encoding: chunked\r\n");
    }
    if (m->has_te_trailers)
        rc |= PUTL(w, b, "TE: trailers\r\n");
    if (r->ws) {
        rc |= PUTL(w, b, "Connection: upgrade\r\nUpgrade: ");
        rc |= PUTS(w, b, r->upgrade);
        rc |= PUTL(w, b, "\r\n");
    }
    rc |= PUTL(w, b, "\r\n");
    return rc;
}

/* ---- dispatch ---- */

static gh_str_t host_only(gh_str_t h)
{
    if (h.n && h.p[0] == '[') {
        const char *end = memchr(h.p, ']', h.n);
        return end ? gh_str(h.p, (size_t)(end - h.p) + 1) : h;
    }
    const char *colon = memchr(h.p, ':', h.n);
    return colon ? gh_str(h.p, (size_t)(colon - h.p)) : h;
}

/* A request answered here: a body already received is skipped (otherwise the connection
 * closes after the answer). */
static void skip_body(gh_req_t *r)
{
    body_validate(r);
    if (r->body_done) {
        r->in_pos += r->in_ready;
        r->in_ready = 0;
    }
}

/* A redirect made at the edge (a rule or a function): status, Location, a one-line body. */
static void respond_redirect(gh_req_t *r, int status, gh_str_t to)
{
    size_t cap = to.n + 16;
    char *loc = malloc(cap);
    if (!loc) {
        respond_error(r, 503, "out of memory");
        return;
    }
    snprintf(loc, cap, "Location: %.*s\r\n", (int)to.n, to.p);
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason_of(status));
    respond(r, status, "text/plain; charset=utf-8", body, (size_t)n, loc, 0);
    free(loc);
}

/* A site with https_redirect, reached over plain HTTP: 308 to the same host and
 * target over https, on the port of the first TLS listener. */
static void https_redirect(gh_req_t *r, const gh_h1_request_t *m)
{
    const gh_conf_t *conf = r->gen->conf;
    unsigned port = 443;
    for (uint32_t i = 0; i < conf->nlisteners; i++)
        if (conf->listeners[i].tls.enabled) {
            const struct sockaddr_storage *a = &conf->listeners[i].addr;
            port = ntohs(a->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
                                                  : ((const struct sockaddr_in *)a)->sin_port);
            break;
        }
    gh_str_t host = host_only(m->host); /* drop a port, keep an IPv6 literal whole */
    int absolute = m->target.n && m->target.p[0] != '/' && m->target.p[0] != '*';
    gh_str_t target = absolute ? m->path : m->target.n && m->target.p[0] == '/' ? m->target : GH_STR("/");
    size_t cap = host.n + target.n + m->query.n + 64;
    char *loc = malloc(cap);
    if (!loc) {
        respond_error(r, 503, "out of memory");
        return;
    }
    int n = snprintf(loc, cap, "Location: https://%.*s", (int)host.n, host.p);
    if (port != 443)
        n += snprintf(loc + n, cap - (size_t)n, ":%u", port);
    n += snprintf(loc + n, cap - (size_t)n, "%.*s", (int)target.n, target.p);
    if (absolute && m->query.n)
        n += snprintf(loc + n, cap - (size_t)n, "?%.*s", (int)m->query.n, m->query.p);
    snprintf(loc + n, cap - (size_t)n, "\r\n");
    static const char body[] = "308 Permanent Redirect: use https\n";
    respond(r, 308, "text/plain; charset=utf-8", body, sizeof body - 1, loc, 0);
    free(loc);
}

static void route_and_dispatch(gh_req_t *r, const gh_h1_request_t *m)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    const gh_conf_t *conf = r->gen->conf;
    const gh_conf_site_t *site = gh_router_site(conf, m->host);
    if (!site) {
        GH_COUNT(w->stats->no_site, 1);
        respond_error(r, 404, "no site for this host");
        return;
    }
    if (site->https_redirect && !gh_client_tls(c)) {
        https_redirect(r, m);
        return;
    }
    const gh_conf_route_t *rt = gh_router_route(site, m, (c->parent ? c->parent : c)->ja4);
    if (!rt) { /* a site's rules may still redirect or answer */
        if (site->rules && apply_rules(r, m, site))
            return;
        GH_COUNT(w->stats->no_route, 1);
        respond_error(r, 404, "no route");
        return;
    }
    r->route = rt;
    if (r->tr.sampled)
        r->tr.decide_us = now_us(); /* protection and the cache lookup come next */
    if (rt->analytics) { /* only its routes pay for the lookup: both headers (the first of each) in one pass */
        r->referer = r->ua = GH_STR("");
        for (uint16_t i = 0, got = 0; i < m->nheaders && got != 3; i++) {
            gh_str_t n = m->headers[i].name;
            if (n.n == 7 && !(got & 1) && gh_str_caseeq_lit(n, "referer"))
                r->referer = m->headers[i].value, got |= 1;
            else if (n.n == 10 && !(got & 2) && gh_str_caseeq_lit(n, "user-agent"))
                r->ua = m->headers[i].value, got |= 2;
        }
        if (r->gen->conf->protect.geoip_db) /* the country, for the top countries */
            req_country(r, m->headers, m->nheaders);
    }
    if (m->method_id == GH_M_CONNECT) {
        respond_error(r, 405, "CONNECT is not allowed");
        return;
    }
    uint32_t hold_ms = 0;
    if (conf->protect.used && !c->bg && protect_request(r, m, &hold_ms))
        return;
    if (rt->max_body_size && m->body == GH_H1_BODY_LENGTH && m->content_length > rt->max_body_size) {
        respond_error(r, 413, "request body too large");
        return;
    }
    if (rt->flag)
        route_flag(r, m); /* before the rules: they may ask for its variant */
    if (site->rules && apply_rules(r, m, site))
        return;
    if (rt->has_respond) {
        skip_body(r);
        respond_kv(r, rt->respond.status, rt->respond.body, rt->respond.body_len, rt->respond.headers,
                   rt->respond.nheaders);
        return;
    }
    if (rt->function && (rt->function->phases & GH_FN_REQUEST)) {
        if (run_function(r, m, GH_FN_REQUEST, NULL, 0) < 0) {
            respond_error(r, 500, "edge function failed");
            return;
        }
        if (function_answer(r))
            return;
    }
    /* a request the edge changed is not the one a stored response answers */
    int edited = r->ed && (r->ed->path.p || r->ed->query.p || r->ed->method.p || r->ed->upstream || r->shadow);
    for (uint32_t i = 0; r->ed && !edited && i < r->ed->nh; i++)
        edited = !r->ed->h[i].resp;
    if (gh_cache_enabled() && !edited) {
        if (rt->cache) {
            if (cache_lookup(r, m))
                return;
        } else if (m->method_id != GH_M_GET && m->method_id != GH_M_HEAD && m->method_id != GH_M_OPTIONS &&
                   m->method_id != GH_M_TRACE) {
            r->cstate = CS_UNSAFE; /* invalidates what another route of the tenant may have stored */
        }
    }
    forward(r, m, hold_ms);
}

/* To the upstream: the request head, 100-continue, the circuit breaker, then the
 * backend (after a protection delay of hold_ms). */
static void forward(gh_req_t *r, const gh_h1_request_t *m, uint32_t hold_ms)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    const gh_conf_route_t *rt = r->route;
    r->ups = r->ed && r->ed->upstream ? (gh_conf_upstream_t *)r->ed->upstream
             : r->fv && r->fv->upstream ? r->fv->upstream : rt->upstream;
    if (!r->ups || !r->ups->nbackends) {
        respond_error(r, 503, "no backend");
        return;
    }
    r->ws = m->upgrade_websocket;
    if (r->ws) {
        const gh_h1_header_t *up = gh_h1_find(m->headers, m->nheaders, GH_STR("upgrade"));
        r->upgrade = up ? up->value : GH_STR("websocket");
    }
    if (build_upstream_head(r, m) < 0) {
        respond_error(r, 500, "out of memory");
        return;
    }
    /* 100-continue: we forward the body ourselves, so we tell the client to send it */
    if (m->expect_continue && m->body != GH_H1_BODY_NONE && r->in_ready == 0 &&
        c->in.wr == c->in.rd + r->head_len) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        client_send_small(c, cont, sizeof(cont) - 1);
    }
    gh_upstream_stats_t *st = r->ups->stats;
    if (st && r->ups->breaker.max_requests) {
        if (__atomic_add_fetch(&st->live.requests, 1, __ATOMIC_RELAXED) > r->ups->breaker.max_requests) {
            __atomic_sub_fetch(&st->live.requests, 1, __ATOMIC_RELAXED);
            GH_COUNT(st->slot[w->id].overflows, 1);
            respond_error(r, 503, "upstream overloaded (circuit breaker)");
            return;
        }
        r->breaker_req = 1; /* counted only with a limit: a shared atomic per request otherwise */
    }
    if (r->ups->balance == GH_BALANCE_HASH)
        r->hash_key = hash_key(r, m);
    if (hold_ms) { /* a rate limit's delay: wait, then go on (req_timeout) */
        r->phase = P_HOLD;
        r->phase_start = gh_loop_now(&w->loop) + hold_ms;
        return;
    }
    dispatch(r);
}

static void dispatch(gh_req_t *r)
{
    if (pick_backend(r) < 0) {
        respond_error(r, 503, "no backend available");
        return;
    }
    upstream_start(r, 0);
}

/* Traffic protection for a routed request: 1 when it was answered (or held for a
 * tarpit's answer); 0 to go on, after *hold_ms when a limit delays it. */
static int protect_request(gh_req_t *r, const gh_h1_request_t *m, uint32_t *hold_ms)
{
    gh_client_t *c = r->c, *conn = c->parent ? c->parent : c;
    const gh_conf_t *conf = r->gen->conf;
    struct sockaddr_storage client;
    gh_protect_client(conf, &c->peer.sa, m->headers, m->nheaders, &client);
    gh_protect_req_t in = {
        .conf = conf,
        .route = r->route,
        .client = (const struct sockaddr *)&client,
        .headers = m->headers,
        .nheaders = m->nheaders,
        .method = m->method,
        .path = m->path,
        .query = m->query,
        .ja4 = gh_str(conn->ja4, strlen(conn->ja4)),
        .tls = gh_client_tls(c) != NULL,
        .h2 = c->h2s != NULL,
        .worker = r->w->id,
    };
    gh_protect_verdict_t v;
    gh_protect_check(&in, &v);
    r->prot_reason = (uint8_t)v.reason;
    r->prot_action = (uint8_t)v.action;
    r->prot_detail = v.detail;
    r->prot_counted = v.counted;
    if (v.verdict == GH_PV_PASS) {
        *hold_ms = v.delay_ms;
        return 0;
    }
    if (v.delay_ms) { /* tarpit: hold the answer */
        r->hold_status = (uint16_t)v.status;
        r->phase = P_HOLD;
        r->phase_start = gh_loop_now(&r->w->loop) + v.delay_ms;
        free(v.body);
        return 1;
    }
    v.headers[GH_MIN(v.headers_len, sizeof v.headers - 1)] = 0;
    if (v.body) {
        respond(r, v.status, v.ctype, v.body, v.body_len, v.headers_len ? v.headers : NULL, 0);
        free(v.body);
    } else {
        char body[160];
        int n = snprintf(body, sizeof body, "%d %s: %s\n", v.status, reason_of(v.status),
                         v.reason == GH_PR_RATE ? "rate limit exceeded" : v.reason == GH_PR_CHALLENGE && v.status == 303
                                                                             ? "challenge passed"
                                                                             : gh_protect_reason_name(v.reason));
        respond(r, v.status, "text/plain; charset=utf-8", body, (size_t)n, v.headers_len ? v.headers : NULL, 0);
    }
    return 1;
}

/* ---- the cache (src/cache): lookup, serving stored responses, storing, coalescing ---- */

static int64_t wall_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec;
}

/* The request head again (it stays at c->in.rd for the request's life), parsed into
 * this thread's second header array: the cache needs the request's fields after the
 * parse scratch has been reused for the response. */
static int reparse(gh_req_t *r, gh_h1_request_t *m)
{
    static gh_tlsbuf_t slot;
    gh_h1_header_t *hdrs = gh_tlsbuf(&slot, GH_MAX_HEADERS * sizeof *hdrs);
    if (!hdrs)
        return GH_ENOMEM;
    gh_client_t *c = r->c;
    gh_h1_limits_t lim = {UINT32_MAX, UINT32_MAX, GH_MAX_HEADERS};
    int rc = gh_h1_parse_request(c->in.base + c->in.rd, r->head_len, &lim, m, hdrs, GH_MAX_HEADERS, NULL);
    return rc > 0 ? 0 : GH_EINVAL;
}

static void cache_count(gh_req_t *r, int result)
{
    if (!r->cresult)
        r->cresult = (uint8_t)result;
}

/* "Cache-Status: ..." (RFC 9211) for a forwarded response. */
static int put_cache_status_fwd(gh_req_t *r, gh_buf_t *b, int status)
{
    static const char *const fwd[] = {"", "uri-miss", "vary-miss", "request", "stale", "bypass"};
    gh_worker_t *w = r->w;
    int rc = PUTL(w, b, "Cache-Status: gatehouse; fwd=");
    const char *f = fwd[r->cfwd < 6 ? r->cfwd : 0];
    rc |= put(w, b, f, strlen(f));
    if (r->cfwd == CF_STALE || r->cfwd == CF_REQUEST) {
        rc |= PUTL(w, b, "; fwd-status=");
        rc |= put_u64(w, b, (uint64_t)status);
    }
    if (r->cnew)
        rc |= PUTL(w, b, "; stored");
    return rc | PUTL(w, b, "\r\n");
}

static int head_has(const gh_cobj_t *o, const char *name)
{
    size_t n = strlen(name);
    const char *p = o->head, *end = o->head + o->head_len;
    while (p < end) {
        if ((size_t)(end - p) > n && p[n] == ':' && !strncasecmp(p, name, n))
            return 1;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            break;
        p = eol + 1;
    }
    return 0;
}

/* Answer from stored object o (its reference passes to r): 200 (or 206 for a Range,
 * 304 when the client's own conditional matches, 416), with Age and Cache-Status. */
static void serve_object(gh_req_t *r, const gh_h1_request_t *m, gh_cobj_t *o)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    int64_t now = wall_sec();
    if (r->u) {
        gh_upstream_close(r->u);
        r->u = NULL;
    }
    gh_buf_put(&w->bufs, &r->resp);
    r->ready_end = r->scan = 0;
    gh_buf_put(&w->bufs, &r->chead);
    if (r->cobj && r->cobj != o)
        gh_cache_release(r->cobj);
    r->cobj = o;
    gh_stored_facts_t f = o->facts;
    if (__atomic_load_n(&o->soft, __ATOMIC_RELAXED))
        f.lifetime = 0;
    int64_t age = gh_current_age(&f, now);
    int64_t ttl = f.lifetime - age;
    char cs[160];
    int csn;
    if (r->cdetail == CD_SIE)
        csn = snprintf(cs, sizeof cs, "Cache-Status: gatehouse; fwd=stale; fwd-status=%d; detail=stale-if-error\r\n",
                       r->status ? r->status : 502);
    else if (r->cdetail == CD_REVAL) /* validated by a 304 just now */
        csn = snprintf(cs, sizeof cs, "Cache-Status: gatehouse; fwd=%s; fwd-status=304; ttl=%lld; stored\r\n",
                       r->cfwd == CF_REQUEST ? "request" : "stale", (long long)ttl);
    else
        csn = snprintf(cs, sizeof cs, "Cache-Status: gatehouse; hit; ttl=%lld%s%s\r\n", (long long)ttl,
                       r->cdetail == CD_SWR ? "; detail=stale-while-revalidate" : "",
                       r->ccollapsed ? "; collapsed" : "");
    uint64_t off = 0, cnt = o->body_len;
    int status = o->status, range = 0;
    if (gh_cache_not_modified(m->headers, m->nheaders, o)) {
        status = 304;
        cnt = 0;
    } else {
        range = gh_cache_range(m->headers, m->nheaders, o, o->body_len, &off, &cnt);
        if (range > 0)
            status = 206;
    }
    if (range < 0) { /* unsatisfiable: a small answer of our own */
        char extra[256];
        snprintf(extra, sizeof extra, "Content-Range: bytes */%llu\r\n%.*s", (unsigned long long)o->body_len,
                 csn, cs);
        static const char body[] = "416 Range Not Satisfiable\n";
        r->cobj = NULL;
        gh_cache_release(o);
        respond(r, 416, "text/plain; charset=utf-8", body, sizeof body - 1, extra, 0);
        return;
    }
    r->status = status;
    r->phase = P_DIRECT;
    r->cserve = 1;
    r->resp_done = 1;
    if (!r->body_done || w->draining)
        c->close_after = 1;
    gh_buf_t *b = &r->chead;
    const gh_conf_function_t *fn = r->route ? r->route->function : NULL;
    int rc = 0;
    if ((fn && (fn->phases & GH_FN_RESPONSE) && !r->fn_failed) || r->ed) { /* the edge sees the stored fields */
        static gh_tlsbuf_t slot;
        gh_h1_header_t *hs = gh_tlsbuf(&slot, GH_MAX_HEADERS * sizeof *hs);
        uint32_t nh = 0;
        for (const char *p = o->head, *end = o->head + o->head_len; hs && p < end && nh < GH_MAX_HEADERS;) {
            const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon = memchr(p, ':', (size_t)(end - p));
            if (!eol || !colon || colon > eol)
                break;
            const char *v = colon + 1, *ve = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            hs[nh++] = (gh_h1_header_t){gh_str(p, (size_t)(colon - p)), gh_str(v, (size_t)(ve - v))};
            p = eol + 1;
        }
        r->status = status;
        if (fn && (fn->phases & GH_FN_RESPONSE) && !r->fn_failed && run_function(r, m, GH_FN_RESPONSE, hs, nh) < 0) {
            r->cobj = NULL;
            r->cserve = 0;
            gh_cache_release(o);
            respond_error(r, 500, "edge function failed");
            return;
        }
        rc |= put_status_line(w, b, status);
        for (uint32_t i = 0; i < nh; i++) /* the stored fields, less those the edge replaces */
            if (!r->ed || !gh_edits_drops(r->ed, 1, hs[i].name)) {
                rc |= PUTS(w, b, hs[i].name);
                rc |= PUTL(w, b, ": ");
                rc |= PUTS(w, b, hs[i].value);
                rc |= PUTL(w, b, "\r\n");
            }
        if (r->ed)
            rc |= put_resp_edits(r, b);
    } else {
        rc |= put_status_line(w, b, status);
        rc |= put(w, b, o->head, o->head_len);
    }
    rc |= PUTL(w, b, "Age: ");
    rc |= put_u64(w, b, (uint64_t)(age > 0 ? age : 0));
    rc |= PUTL(w, b, "\r\n");
    rc |= put(w, b, cs, (size_t)csn);
    if (status == 206) {
        char cr[96];
        int n = snprintf(cr, sizeof cr, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)off,
                         (unsigned long long)(off + cnt - 1), (unsigned long long)o->body_len);
        rc |= put(w, b, cr, (size_t)n);
    }
    if (status != 304 && status != 204) {
        rc |= PUTL(w, b, "Content-Length: ");
        rc |= put_u64(w, b, cnt);
        rc |= PUTL(w, b, "\r\n");
    }
    if (!head_has(o, "strict-transport-security"))
        rc |= put_hsts(r, b);
    if (r->route && r->route->flag)
        rc |= put_flag_headers(r, b);
    rc |= put_head_end(w, b, c, r->minor);
    if (rc < 0) {
        gh_buf_put(&w->bufs, b);
        c->close_after = 1;
    }
    r->cbody_off = off;
    r->cbody_end = (r->head_only || status == 304 || status == 204) ? off : off + cnt;
}

static void cache_waiting_unlink(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    if (r->cw_prev)
        r->cw_prev->cw_next = r->cw_next;
    else if (w->cache_waiters == r)
        w->cache_waiters = r->cw_next;
    if (r->cw_next)
        r->cw_next->cw_prev = r->cw_prev;
    r->cw_next = r->cw_prev = NULL;
}

static void background_refresh(gh_req_t *r);

/* Look the key up and act on what is stored: 1 when the request was answered (or
 * parked to wait for another's fetch), 0 to go to the upstream. */
static int cache_decide(gh_req_t *r, const gh_h1_request_t *m, int may_wait)
{
    int uri_found = 0;
    int64_t now = wall_sec();
    gh_cobj_t *o = gh_cache_lookup(r->khash, gh_str(r->ckey, r->ckey_len), m->headers, m->nheaders, &uri_found);
    if (r->c->bg) { /* a background refresh: always to the origin, validating what is stored */
        r->cstate = CS_BG;
        r->cobj = o;
        r->cfwd = CF_STALE;
        return 0;
    }
    if (o) {
        gh_stored_facts_t f = o->facts;
        if (__atomic_load_n(&o->soft, __ATOMIC_RELAXED))
            f.lifetime = 0;
        int use = gh_cache_usable(&r->creq, &f, now);
        if (use != GH_USE_REVALIDATE) {
            if (use == GH_USE_STALE_SWR) {
                r->cdetail = CD_SWR;
                if (!__atomic_exchange_n(&o->revalidating, 1, __ATOMIC_ACQ_REL))
                    background_refresh(r);
            }
            cache_count(r, use == GH_USE_FRESH ? GH_CR_HIT : GH_CR_STALE);
            serve_object(r, m, o);
            return 1;
        }
        if (r->creq.cc.flags & GH_CC_ONLY_IF_CACHED) {
            gh_cache_release(o);
            goto only_if_cached;
        }
        r->cstate = CS_REVAL;
        r->cobj = o;
        r->cfwd = f.lifetime > gh_current_age(&f, now) ? CF_REQUEST : CF_STALE;
        return 0;
    }
    if (r->creq.cc.flags & GH_CC_ONLY_IF_CACHED)
        goto only_if_cached;
    r->cstate = CS_MISS;
    r->cfwd = uri_found ? CF_VARY_MISS : CF_URI_MISS;
    if (m->method_id == GH_M_GET && may_wait) {
        int leader = 1;
        gh_cfetch_t *f = gh_cache_fetch_join(r->khash, gh_str(r->ckey, r->ckey_len), r->w->id, &leader);
        r->cfetch = f;
        r->cleader = (uint8_t)leader;
        if (f && !leader) { /* another request fetches it: wait (bounded) */
            gh_worker_t *w = r->w;
            r->cw_next = w->cache_waiters;
            r->cw_prev = NULL;
            if (r->cw_next)
                r->cw_next->cw_prev = r;
            w->cache_waiters = r;
            r->phase = P_CWAIT;
            r->phase_start = gh_loop_now(&w->loop) + r->route->cache->lock_timeout;
            return 1;
        }
    }
    return 0;
only_if_cached:
    cache_count(r, GH_CR_ERROR);
    respond(r, 504, "text/plain; charset=utf-8", "504 Gateway Timeout: not in cache (only-if-cached)\n", 51,
            "Cache-Status: gatehouse; fwd=miss; detail=only-if-cached\r\n", 0);
    return 1;
}

/* The cache's look at a routed request: 1 when answered from the cache (or waiting). */
static int cache_lookup(gh_req_t *r, const gh_h1_request_t *m)
{
    int mid = m->method_id;
    if (mid != GH_M_GET && mid != GH_M_HEAD) {
        /* unsafe methods invalidate what they change (RFC 9111 4.4) */
        r->cstate = mid == GH_M_OPTIONS || mid == GH_M_TRACE ? CS_BYPASS : CS_UNSAFE;
        r->cfwd = CF_BYPASS;
        cache_count(r, GH_CR_BYPASS);
        return 0;
    }
    char key[GH_CACHE_KEY_MAX];
    int kl = gh_cache_key(r->route, m, gh_client_tls(r->c) != NULL || r->c->bg == 2, key, sizeof key);
    if (kl < 0 || m->upgrade_websocket || !(r->ckey = malloc((size_t)kl))) {
        r->cstate = CS_BYPASS;
        r->cfwd = CF_BYPASS;
        cache_count(r, GH_CR_BYPASS);
        return 0;
    }
    memcpy(r->ckey, key, (size_t)kl);
    r->ckey_len = (uint32_t)kl;
    if (r->route->flag) { /* each variant is its own representation */
        const char *v = r->fvariant ? r->fvariant : "";
        size_t vl = strlen(v);
        char *k2 = realloc(r->ckey, (size_t)kl + vl + 3);
        if (k2) {
            r->ckey = k2;
            memcpy(k2 + kl, "v:", 2);
            memcpy(k2 + kl + 2, v, vl);
            k2[kl + 2 + vl] = '\n';
            r->ckey_len = (uint32_t)(kl + vl + 3);
        }
    }
    r->khash = gh_cache_hash(key, (size_t)kl);
    gh_cache_req_facts(m->headers, m->nheaders, mid, &r->creq);
    r->cseq = gh_cache_seq();
    r->creq_time = wall_sec();
    return cache_decide(r, m, 1);
}

static void forward(gh_req_t *r, const gh_h1_request_t *m, uint32_t hold_ms);

/* A waiting request goes on: its fetch is done (woken) or the wait is over. */
static void cache_wait_end(gh_req_t *r, int woken)
{
    cache_waiting_unlink(r);
    if (r->cfetch) {
        gh_cache_fetch_put(r->cfetch);
        r->cfetch = NULL;
    }
    gh_h1_request_t m;
    if (reparse(r, &m) < 0) {
        respond_error(r, 500, "out of memory");
        return;
    }
    r->phase = 0;
    r->ccollapsed = (uint8_t)woken;
    if (cache_decide(r, &m, 0))
        return;
    r->ccollapsed = 0;
    forward(r, &m, 0);
}

void gh_session_cache_wake(gh_worker_t *w)
{
    gh_req_t *r = w->cache_waiters, *next;
    for (; r; r = next) {
        next = r->cw_next;
        if (r->cfetch && gh_cache_fetch_is_done(r->cfetch)) {
            gh_client_t *c = r->c;
            cache_wait_end(r, 1);
            client_run(c);
            next = w->cache_waiters; /* the list may have changed: start over (done ones are gone) */
        }
    }
}

/* Invalidate the URL a path (or an absolute URI of the same host) names. */
static void invalidate_uri(gh_req_t *r, gh_str_t v)
{
    gh_str_t tenant = gh_str(r->route->tenant->name, strlen(r->route->tenant->name));
    if (v.n > 8 && (!strncasecmp(v.p, "http://", 7) || !strncasecmp(v.p, "https://", 8))) {
        size_t skip = v.p[4] == ':' ? 7 : 8;
        gh_str_t rest = gh_str(v.p + skip, v.n - skip);
        const char *slash = memchr(rest.p, '/', rest.n);
        gh_str_t host = gh_str(rest.p, slash ? (size_t)(slash - rest.p) : rest.n);
        if (!gh_str_caseeq(host, r->host))
            return; /* another origin: not ours to invalidate (4.4) */
        v = slash ? gh_str(slash, rest.n - host.n) : GH_STR("/");
    }
    if (!v.n || v.p[0] != '/')
        return;
    const char *qm = memchr(v.p, '?', v.n);
    gh_cache_invalidate(tenant, r->host, gh_str(v.p, qm ? (size_t)(qm - v.p) : v.n));
}

/* Build the object that a storable response will fill (r->cnew), or nothing. */
static void cache_begin_store(gh_req_t *r, const gh_h1_response_t *m, const gh_resp_facts_t *rf, gh_str_t vary,
                              int64_t now)
{
    const gh_conf_cache_t *cc = r->route->cache;
    gh_h1_request_t q;
    if (reparse(r, &q) < 0)
        return;
    if (rf->status == 304 || (m->body == GH_H1_BODY_LENGTH && m->content_length > gh_cache_max_object()))
        return;
    if (!cc->strip_set_cookie && gh_h1_find(m->headers, m->nheaders, GH_STR("set-cookie")))
        return;
    int heur = 0;
    int64_t life = gh_fresh_lifetime(rf, now, cc->default_ttl, cc->max_ttl, &heur);
    int validators = gh_h1_find(m->headers, m->nheaders, GH_STR("etag")) ||
                     gh_h1_find(m->headers, m->nheaders, GH_STR("last-modified"));
    if (life <= 0 && !validators && rf->cc.swr <= 0 && rf->cc.sie <= 0)
        return; /* nothing it could ever be used for */
    size_t hcap = m->head_len + 128;
    char *head = malloc(hcap), vvals[4096], tags[4096], path[8192];
    if (!head)
        return;
    int hl = gh_cache_stored_head(m->headers, m->nheaders, &rf->cc, cc->strip_set_cookie, now, head, hcap);
    int vl = vary.n ? gh_cache_vary_values(vary, q.headers, q.nheaders, vvals, sizeof vvals) : 0;
    int tl = gh_cache_tags(m->headers, m->nheaders, tags, sizeof tags);
    int pl = snprintf(path, sizeof path, "%.*s%s%.*s", (int)r->path.n, r->path.p, r->query.n ? "?" : "",
                      (int)r->query.n, r->query.p);
    const char *tn = r->route->tenant->name;
    if (hl < 0 || vl < 0 || pl < 0 || (size_t)pl >= sizeof path) {
        free(head);
        return;
    }
    gh_cobj_parts_t parts = {
        .key = gh_str(r->ckey, r->ckey_len),
        .tenant = gh_str(tn, strlen(tn)),
        .host = r->host,
        .path = gh_str(path, (size_t)pl),
        .vary = vary,
        .vvals = gh_str(vvals, (size_t)vl),
        .tags = gh_str(tags, (size_t)tl),
        .head = gh_str(head, (size_t)hl),
    };
    gh_cobj_t *o = gh_cobj_new(&parts);
    free(head);
    if (!o)
        return;
    if (m->body == GH_H1_BODY_LENGTH && gh_cobj_reserve(o, m->content_length) < 0) {
        gh_cobj_free(o);
        return;
    }
    o->khash = r->khash;
    o->uhash = gh_cache_url_hash(parts.tenant, r->host, r->path);
    o->seq = r->cseq;
    o->status = m->status;
    o->facts.lifetime = life;
    o->facts.initial_age = gh_initial_age(rf, r->creq_time, now);
    o->facts.response_time = now;
    o->facts.cc = rf->cc;
    o->facts.cc.private_fields = GH_STR_NULL; /* a view into the response: gone after this */
    r->cnew = o;
}

/* A 304 validated the stored r->cobj: a new object with the stored body and the
 * updated header fields (RFC 9111 3.2, 4.3.4). NULL when out of memory. */
static gh_cobj_t *cache_updated(gh_req_t *r, const gh_h1_response_t *m, int64_t now)
{
    gh_cobj_t *old = r->cobj;
    const gh_conf_cache_t *cc = r->route->cache;
    size_t cap = old->head_len + m->head_len + 64;
    char *head = malloc(cap);
    gh_h1_header_t *hs = malloc(GH_MAX_HEADERS * sizeof *hs);
    gh_cobj_t *o = NULL;
    int hl = head && hs ? gh_cache_updated_head(gh_str(old->head, old->head_len), m->headers, m->nheaders, head, cap)
                        : -1;
    if (hl >= 0) {
        /* the updated fields as a header list, for the new facts */
        size_t n = 0;
        const char *p = head, *end = head + hl;
        while (p < end && n < GH_MAX_HEADERS) {
            const char *eol = memchr(p, '\r', (size_t)(end - p));
            const char *colon = eol ? memchr(p, ':', (size_t)(eol - p)) : NULL;
            if (!colon)
                break;
            const char *v = colon + 1;
            while (v < eol && *v == ' ')
                v++;
            hs[n].name = gh_str(p, (size_t)(colon - p));
            hs[n].value = gh_str(v, (size_t)(eol - v));
            n++;
            p = eol + 2;
        }
        gh_resp_facts_t rf;
        char vb[1024];
        int vl;
        gh_cache_resp_facts(hs, n, old->status, r->route->tenant->cache_targeted, &rf, vb, sizeof vb, &vl);
        const gh_h1_header_t *age = gh_h1_find(m->headers, m->nheaders, GH_STR("age"));
        rf.age = age ? gh_delta_seconds(age->value) : -1; /* the 304's own Age (not stored as a field) */
        gh_cobj_parts_t parts = {
            .key = gh_str(old->key, old->key_len),
            .tenant = gh_str(old->tenant, old->tenant_len),
            .host = gh_str(old->host, old->host_len),
            .path = gh_str(old->path, old->path_len),
            .vary = gh_str(old->vary, old->vary_len),
            .vvals = gh_str(old->vvals, old->vvals_len),
            .tags = gh_str(old->tags, old->tags_len),
            .head = gh_str(head, (size_t)hl),
        };
        o = gh_cobj_new(&parts);
        if (o && gh_cobj_append(o, old->body, old->body_len) < 0) {
            gh_cobj_free(o);
            o = NULL;
        }
        if (o) {
            o->khash = old->khash;
            o->uhash = old->uhash;
            o->seq = r->cseq;
            o->status = old->status;
            o->facts.lifetime = gh_fresh_lifetime(&rf, now, cc->default_ttl, cc->max_ttl, NULL);
            o->facts.initial_age = gh_initial_age(&rf, r->creq_time, now);
            o->facts.response_time = now;
            o->facts.cc = rf.cc;
            o->facts.cc.private_fields = GH_STR_NULL;
        }
    }
    free(head);
    free(hs);
    return o;
}

/* Serve the stale r->cobj because the origin failed (stale-if-error); 1 when done. */
static int cache_stale_on_error(gh_req_t *r, int status)
{
    if (r->cstate != CS_REVAL || !r->cobj || r->resp_started ||
        !gh_cache_stale_if_error(&r->creq, &r->cobj->facts, wall_sec()))
        return 0;
    gh_h1_request_t q;
    if (reparse(r, &q) < 0)
        return 0;
    gh_cobj_t *o = r->cobj;
    r->status = status;
    r->cdetail = CD_SIE;
    cache_count(r, GH_CR_STALE);
    serve_object(r, &q, o);
    return 1;
}

/* The upstream's response head, seen by the cache. 1 when the response is replaced by
 * one from the cache (a 304 that validated it, stale-if-error): the upstream response
 * is over and r is now P_DIRECT. */
static int cache_response(gh_req_t *r, const gh_h1_response_t *m, uint32_t head_len)
{
    if (r->cstate == CS_UNSAFE) {
        if (m->status >= 200 && m->status < 400) {
            invalidate_uri(r, r->path);
            const gh_h1_header_t *h = gh_h1_find(m->headers, m->nheaders, GH_STR("location"));
            if (h)
                invalidate_uri(r, h->value);
            if ((h = gh_h1_find(m->headers, m->nheaders, GH_STR("content-location"))))
                invalidate_uri(r, h->value);
        }
        return 0;
    }
    if (r->cstate < CS_MISS)
        return 0;
    int64_t now = wall_sec();
    if (r->cobj && m->status == 304) {
        gh_cobj_t *o = cache_updated(r, m, now);
        if (o && gh_cache_insert(o) < 0) {
            gh_cobj_free(o);
            o = NULL;
        }
        cache_count(r, GH_CR_REVALIDATED);
        if (r->cstate == CS_BG) {
            if (o)
                gh_cache_release(o);
            return 0; /* the refresh's own answer is discarded */
        }
        /* the 304 has no body: the connection goes back to the pool */
        r->resp.rd += head_len;
        r->resp_done = 1;
        r->head_done = 1;
        if (m->keep_alive && r->sent_done && gh_buf_len(&r->resp) == 0 && !r->u->hup)
            gh_upstream_release(r->u, r->ups->keepalive, r->ups->keepalive_timeout);
        else
            gh_upstream_close(r->u);
        r->u = NULL;
        try_end(r);
        gh_h1_request_t q;
        if (reparse(r, &q) < 0) {
            if (o)
                gh_cache_release(o);
            respond_error(r, 500, "out of memory");
            return 1;
        }
        r->status = 304;
        r->cdetail = CD_REVAL;
        serve_object(r, &q, o ? o : (gh_cache_ref(r->cobj), r->cobj));
        return 1;
    }
    if (m->status >= 500 && cache_stale_on_error(r, m->status))
        return 1;
    cache_count(r, r->cobj ? GH_CR_REVALIDATED : GH_CR_MISS);
    if (r->method_id != GH_M_GET)
        return 0;
    gh_resp_facts_t rf;
    char vb[1024];
    int vl;
    gh_cache_resp_facts(m->headers, m->nheaders, m->status, r->route->tenant->cache_targeted, &rf, vb, sizeof vb, &vl);
    if (vl >= 0 && gh_cache_storable(&r->creq, &rf))
        cache_begin_store(r, m, &rf, gh_str(vb, (size_t)vl), now);
    return 0;
}

/* Body bytes of a response being stored. */
static void cache_capture(gh_req_t *r, const char *p, size_t n)
{
    if (r->cnew && gh_cobj_append(r->cnew, p, n) < 0) { /* over max_object, or no memory: not stored */
        gh_cobj_free(r->cnew);
        r->cnew = NULL;
    }
}

/* A complete response: store it. */
static void cache_store(gh_req_t *r)
{
    gh_cobj_t *o = r->cnew;
    r->cnew = NULL;
    if (gh_cache_insert(o) < 0) {
        gh_cobj_free(o);
        return;
    }
    gh_cache_release(o);
}

/* The whole response is in: store it, and let the requests waiting for it go on. */
static void cache_fetched(gh_req_t *r)
{
    if (r->cnew)
        cache_store(r);
    if (r->cfetch && r->cleader) {
        gh_cache_fetch_done(r->cfetch);
        r->cfetch = NULL;
    }
}

/* The cache's part of releasing a request. */
static void cache_req_free(gh_req_t *r)
{
    if (r->phase == P_CWAIT || r->cw_prev || r->cw_next || r->w->cache_waiters == r)
        cache_waiting_unlink(r);
    if (r->cfetch) {
        if (r->cleader)
            gh_cache_fetch_done(r->cfetch);
        else
            gh_cache_fetch_put(r->cfetch);
        r->cfetch = NULL;
    }
    if (r->cnew) {
        gh_cobj_free(r->cnew);
        r->cnew = NULL;
    }
    if (r->cobj) {
        if (r->cstate == CS_BG)
            __atomic_store_n(&r->cobj->revalidating, 0, __ATOMIC_RELEASE);
        gh_cache_release(r->cobj);
        r->cobj = NULL;
    }
    free(r->ckey);
    r->ckey = NULL;
}

/* stale-while-revalidate: a request of its own, on a client with no socket, fetches
 * the key again (with the stored validators); what it answers is discarded. */
static void background_refresh(gh_req_t *r)
{
    gh_client_t *c = r->c, *bc = calloc(1, sizeof(*bc));
    gh_worker_t *w = r->w;
    if (!bc)
        return;
    bc->io.fd = -1;
    bc->w = w;
    bc->listener = c->listener;
    bc->timer.cb = client_timeout;
    bc->resume.cb = client_resume;
    bc->state = C_IDLE;
    bc->readable = bc->writable = 1;
    bc->bg = gh_client_tls(c) || c->bg == 2 ? 2 : 1;
    bc->peer = c->peer;
    if (put(w, &bc->in, c->in.base + c->in.rd, r->head_len) < 0) {
        gh_buf_put(&w->bufs, &bc->in);
        free(bc);
        return;
    }
    gh_task_post(&w->loop, &bc->resume); /* runs next turn, as a request of its own */
}

/* ---- the route's flag (src/flags): evaluated per request, its variant steers the request ---- */

static gh_str_t query_param(gh_str_t q, gh_str_t name)
{
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (kv.n > name.n && kv.p[name.n] == '=' && !memcmp(kv.p, name.p, name.n))
            return gh_str(kv.p + name.n + 1, kv.n - name.n - 1);
    }
    return GH_STR_NULL;
}

static void route_flag(gh_req_t *r, const gh_h1_request_t *m)
{
    static gh_tlsbuf_t slot;
    const gh_conf_routeflag_t *rf = r->route->flag;
    const gh_flagset_t *set = r->route->tenant->flags.set;
    char *arena_mem = set ? gh_tlsbuf(&slot, 64 << 10) : NULL;
    if (!arena_mem)
        return;
    gh_str_t unit = GH_STR_NULL, name = gh_str(rf->unit.name, rf->unit.name_len);
    switch (rf->unit.kind) {
    case GH_RLK_COOKIE:
        unit = gh_h1_cookie(m->headers, m->nheaders, name);
        if (!unit.p || !unit.n || unit.n > 128) { /* a new unit, kept in a cookie so the user stays put */
            static const char hex[] = "0123456789abcdef";
            uint64_t a = gh_worker_rand(r->w), b = gh_worker_rand(r->w);
            for (int i = 0; i < 16; i++) {
                r->funit_new[i] = hex[(a >> (i * 4)) & 15];
                r->funit_new[16 + i] = hex[(b >> (i * 4)) & 15];
            }
            r->funit_new[32] = 0;
            unit = gh_str(r->funit_new, 32);
        }
        break;
    case GH_RLK_HEADER: {
        const gh_h1_header_t *h = gh_h1_find(m->headers, m->nheaders, name);
        if (h)
            unit = h->value;
        break;
    }
    case GH_RLK_QUERY:
        unit = query_param(m->query, name);
        break;
    default:
        unit = gh_str(r->peer, r->peer_len);
        break;
    }
    /* the evaluation context: the unit and what the edge knows of the request */
    json_t *ctx = json_object();
    if (!ctx)
        return;
    if (unit.p && unit.n)
        json_object_set_new_nocheck(ctx, "targetingKey", json_stringn_nocheck(unit.p, unit.n));
    json_object_set_new_nocheck(ctx, "ip", json_string_nocheck(r->peer));
    json_object_set_new_nocheck(ctx, "path", json_stringn_nocheck(m->path.p, m->path.n));
    json_object_set_new_nocheck(ctx, "host", json_stringn_nocheck(m->host.p, m->host.n));
    json_object_set_new_nocheck(ctx, "method", json_stringn_nocheck(m->method.p, m->method.n));
    const gh_h1_header_t *ua = gh_h1_find(m->headers, m->nheaders, GH_STR("user-agent"));
    if (ua)
        json_object_set_new_nocheck(ctx, "userAgent", json_stringn_nocheck(ua->value.p, ua->value.n));
    gh_jl_arena_t arena = {arena_mem, 64 << 10, 0};
    gh_flag_result_t res;
    gh_flags_eval(set, gh_str(rf->key, strlen(rf->key)), ctx, GH_FT_ANY, GH_JL_NOW, &arena, &res);
    json_decref(ctx);
    r->fvariant = res.variant;
    if (rf->exposure && res.variant && gh_exposurelog_enabled()) { /* who saw which variant, for experiments */
        const char *reason = gh_flag_reason_name(res.reason);
        gh_exposure_rec_t e = {
            .time_ms = req_wall_ms(r),
            .tenant = gh_str(r->route->tenant->name, strlen(r->route->tenant->name)),
            .route = gh_str(r->route->name, strlen(r->route->name)),
            .flag = gh_str(rf->key, strlen(rf->key)),
            .variant = gh_str(res.variant, strlen(res.variant)),
            .reason = gh_str(reason, strlen(reason)),
            .unit = unit,
            .request_id = gh_str(r->reqid, r->reqid_len),
        };
        if (gh_exposurelog_log(r->w->id, &e) < 0)
            GH_COUNT(r->w->stats->access_log_dropped, 1);
    }
    if (res.variant && unit.n && rf->experimented && gh_exp_running()) {
        r->xunit_h = gh_exp_hash(unit.p, unit.n);
        gh_exp_expose(r->w->id, r->route->tenant, rf->key_xh, res.variant, r->xunit_h, req_wall_ms(r));
    }
    for (uint32_t i = 0; r->fvariant && i < rf->nvariants; i++)
        if (!strcmp(rf->variants[i].name, r->fvariant))
            r->fv = &rf->variants[i];
}

/* The variant's response fields, the variant header, and a new unit's cookie. */
static int put_flag_headers(gh_req_t *r, gh_buf_t *b)
{
    gh_worker_t *w = r->w;
    const gh_conf_routeflag_t *rf = r->route->flag;
    int rc = 0;
    if (rf->variant_header && r->fvariant) {
        rc |= put(w, b, rf->variant_header, strlen(rf->variant_header));
        rc |= PUTL(w, b, ": ");
        rc |= put(w, b, r->fvariant, strlen(r->fvariant));
        rc |= PUTL(w, b, "\r\n");
    }
    for (uint32_t i = 0; r->fv && i < r->fv->nresp_headers; i++) {
        rc |= put(w, b, r->fv->resp_headers[i].name, r->fv->resp_headers[i].name_len);
        rc |= PUTL(w, b, ": ");
        rc |= put(w, b, r->fv->resp_headers[i].value, r->fv->resp_headers[i].value_len);
        rc |= PUTL(w, b, "\r\n");
    }
    if (r->funit_new[0]) {
        char ck[256];
        int n = snprintf(ck, sizeof ck, "Set-Cookie: %.*s=%s; Path=/; Max-Age=%u; SameSite=Lax%s\r\n",
                         (int)rf->unit.name_len, rf->unit.name, r->funit_new, rf->cookie_max_age,
                         gh_client_tls(r->c) ? "; Secure" : "");
        if (n > 0 && (size_t)n < sizeof ck)
            rc |= put(w, b, ck, (size_t)n);
    }
    return rc;
}

/* ---- the programmable edge: request rules (src/rules) and edge functions (src/edge) ---- */

static gh_edits_t *edits_of(gh_req_t *r)
{
    if (!r->ed)
        r->ed = gh_edits_new();
    return r->ed;
}

/* Whether edit i is the one written for its name: not a removal, and no later set or removal of
 * the same name in the same direction replaces it. */
static int edit_written(const gh_edits_t *e, uint32_t i, int resp)
{
    const gh_hedit_t *h = &e->h[i];
    if (h->resp != resp || h->op == GH_HE_REMOVE)
        return 0;
    for (uint32_t j = i + 1; j < e->nh; j++)
        if (e->h[j].resp == resp && e->h[j].op != GH_HE_APPEND && gh_str_caseeq(e->h[j].name, h->name))
            return 0;
    return 1;
}

static int put_edits(gh_req_t *r, gh_buf_t *b, int resp)
{
    const gh_edits_t *e = r->ed;
    int rc = 0;
    for (uint32_t i = 0; i < e->nh; i++) {
        if (!edit_written(e, i, resp))
            continue;
        rc |= PUTS(r->w, b, e->h[i].name);
        rc |= PUTL(r->w, b, ": ");
        rc |= PUTS(r->w, b, e->h[i].value);
        rc |= PUTL(r->w, b, "\r\n");
    }
    return rc;
}

static int put_resp_edits(gh_req_t *r, gh_buf_t *b) { return put_edits(r, b, 1); }


/* The client's country (the GeoIP database of protection), looked up once per request. */
static const char *req_country(gh_req_t *r, const gh_h1_header_t *hs, uint32_t nh)
{
    if (!r->country[0]) {
        const gh_conf_t *conf = r->gen->conf;
        struct sockaddr_storage cl;
        r->country[0] = '-';
        if (conf->protect.geoip_db) {
            gh_protect_client(conf, &r->c->peer.sa, hs, nh, &cl);
            char cc[3];
            if (gh_geoip_country(conf->protect.geoip_db, (const struct sockaddr *)&cl, cc) == 1)
                memcpy(r->country, cc, 3);
        }
    }
    return r->country[0] == '-' ? NULL : r->country;
}

/* Rules and functions ask for a flag's variant: the route's flag, as this request got it. */
static const char *edge_variant(void *arg, const char *flag)
{
    gh_req_t *r = arg;
    if (r->route && r->route->flag && r->fvariant && !strcmp(r->route->flag->key, flag))
        return r->fvariant;
    return NULL;
}

static void count_rule(gh_req_t *r, int action)
{
    if (r->route && r->route->stats)
        GH_COUNT(((gh_route_stats_t *)r->route->stats)->slot[r->w->id].rules[action], 1);
}

/* The request's path and query after a rewrite to target (a path, or an absolute URL whose
 * authority becomes the Host sent upstream). */
static int set_target(gh_req_t *r, gh_str_t t)
{
    gh_edits_t *e = edits_of(r);
    if (!e)
        return GH_ENOMEM;
    if (t.n > 8 && (!strncmp(t.p, "http://", 7) || !strncmp(t.p, "https://", 8))) {
        const char *a = memchr(t.p, '/', t.n) + 2, *end = t.p + t.n;
        const char *slash = memchr(a, '/', (size_t)(end - a)), *qm = memchr(a, '?', (size_t)(end - a));
        const char *pe = slash && (!qm || slash < qm) ? slash : qm ? qm : end;
        if (gh_edits_header(e, 0, GH_HE_SET, GH_STR("Host"), gh_str(a, (size_t)(pe - a))) < 0)
            return GH_ENOMEM;
        t = pe < end && *pe == '/' ? gh_str(pe, (size_t)(end - pe)) : GH_STR("/");
        if (qm && pe == qm) { /* "https://host?q": the path is "/" and the query follows */
            char *d = gh_edits_dup(e, "/", 1);
            if (!d || gh_edits_set(e, &e->query, gh_str(qm + 1, (size_t)(end - qm - 1))) < 0)
                return GH_ENOMEM;
            e->path = gh_str(d, 1);
            return 0;
        }
    }
    const char *qm = memchr(t.p, '?', t.n);
    size_t pl = qm ? (size_t)(qm - t.p) : t.n;
    if (gh_edits_set(e, &e->path, gh_str(t.p, pl)) < 0 ||
        gh_edits_set(e, &e->query, qm ? gh_str(qm + 1, t.n - pl - 1) : GH_STR("")) < 0)
        return GH_ENOMEM;
    return 0;
}

/* A rule's terminal action with its expanded target: 1 when the request was answered. */
static int rule_action(gh_req_t *r, const gh_rule_t *a, gh_str_t to)
{
    if (a->action == GH_RULE_REDIRECT) {
        count_rule(r, GH_RULE_REDIRECT);
        respond_redirect(r, a->status, to);
        return 1;
    }
    if (a->action == GH_RULE_RESPOND) {
        count_rule(r, GH_RULE_RESPOND);
        skip_body(r);
        respond(r, a->status, a->ctype, a->body, a->body_len, NULL, 0);
        return 1;
    }
    count_rule(r, GH_RULE_REWRITE);
    if (set_target(r, to) < 0) {
        respond_error(r, 503, "out of memory");
        return 1;
    }
    if (a->upstream)
        r->ed->upstream = a->upstream;
    if (a->status != 200)
        r->rstatus = a->status;
    return 0;
}

/* The site's rules for this request: header edits recorded, the first action applied (or kept
 * for a 404 from the origin when it is shadowed). 1 when the request was answered. */
static int apply_rules(gh_req_t *r, const gh_h1_request_t *m, const gh_conf_site_t *site)
{
    struct sockaddr_storage cl;
    const gh_conf_t *conf = r->gen->conf;
    gh_protect_client(conf, &r->c->peer.sa, m->headers, m->nheaders, &cl);
    gh_rules_in_t in = {
        .path = m->path,
        .query = m->query,
        .host = host_only(m->host),
        .method_id = m->method_id,
        .headers = m->headers,
        .nheaders = m->nheaders,
        .peer = (const struct sockaddr *)&cl,
        .country = req_country(r, m->headers, m->nheaders),
        .variant = edge_variant,
        .arg = r,
    };
    gh_rules_out_t out;
    if (!gh_rules_match(site->rules, &in, &out))
        return 0;
    gh_edits_t *e = edits_of(r);
    if (!e) {
        respond_error(r, 503, "out of memory");
        return 1;
    }
    for (uint32_t i = 0; i < out.nedits; i++) {
        const gh_rule_t *ru = out.edits[i];
        for (uint32_t k = 0; k < ru->nedits; k++) {
            const gh_rule_hedit_t *h = &ru->edits[k];
            if (gh_edits_header(e, h->resp, h->op, gh_str(h->name, h->name_len), gh_str(h->value, h->value_len)) < 0) {
                respond_error(r, 500, "too many header edits");
                return 1;
            }
        }
    }
    if (out.nedits)
        count_rule(r, GH_RULE_NONE);
    const gh_rule_t *a = out.action;
    if (!a)
        return 0;
    char to[8192];
    ssize_t n = 0;
    if (a->action == GH_RULE_REDIRECT || a->action == GH_RULE_REWRITE) {
        n = gh_rules_expand(&out, m->query, to, sizeof to);
        if (n < 0) {
            respond_error(r, 414, "the rule's target is too long");
            return 1;
        }
    }
    /* shadowed (Netlify without "!"): the origin answers first; the rule applies on its 404 */
    if (!a->force && r->route && !r->route->has_respond && m->body == GH_H1_BODY_NONE) {
        char *d = n ? gh_edits_dup(e, to, (size_t)n) : NULL;
        if (n && !d) {
            respond_error(r, 503, "out of memory");
            return 1;
        }
        r->shadow = a;
        r->shadow_to = gh_str(d, (size_t)n);
        return 0;
    }
    return rule_action(r, a, gh_str(to, (size_t)n));
}

/* The origin answered 404 to a request with a shadowed rule: the rule applies now. A redirect or
 * response replaces the 404; a rewrite sends the request again, rewritten. 1 when it took over. */
static int shadow_apply(gh_req_t *r)
{
    const gh_rule_t *a = r->shadow;
    r->shadow_done = 1;
    if (a->action != GH_RULE_REWRITE)
        return rule_action(r, a, r->shadow_to);
    gh_h1_request_t m;
    if (!replayable(r) || reparse(r, &m) < 0)
        return 0;
    pending_done(r);
    try_end(r);
    gh_upstream_close(r->u);
    r->u = NULL;
    r->status = 0;
    TRACE_TRY_END(r, GH_TT_RETRIED);
    if (rule_action(r, a, r->shadow_to))
        return 1;
    if (r->ed->upstream && r->ed->upstream != r->ups) {
        if (r->breaker_req)
            __atomic_sub_fetch(&((gh_upstream_stats_t *)r->ups->stats)->live.requests, 1, __ATOMIC_RELAXED);
        r->breaker_req = 0;
        r->ups = (gh_conf_upstream_t *)r->ed->upstream;
        r->tried = 0;
    }
    gh_buf_put(&r->w->bufs, &r->uhead);
    if (build_upstream_head(r, &m) < 0) {
        respond_error(r, 500, "out of memory");
        return 1;
    }
    r->tried = 0;
    if (!r->ups->nbackends || pick_backend(r) < 0) {
        respond_error(r, 503, "no backend available");
        return 1;
    }
    retry_start(r);
    return 1;
}

/* ---- edge functions ---- */

/* The tenant's Lua state on this worker for the request's configuration: made, with every
 * function of the tenant loaded, on first use. NULL when it cannot be made. */
static gh_lua_t *lua_state(gh_req_t *r, const gh_conf_tenant_t *t)
{
    gh_gen_t *g = r->gen;
    if (!g->lua) {
        g->lua = calloc(g->conf->ntenants ? g->conf->ntenants : 1, sizeof *g->lua);
        if (!g->lua)
            return NULL;
    }
    if (!g->lua[t->index]) {
        gh_lua_t *L = gh_lua_new();
        if (!L)
            return NULL;
        for (uint32_t i = 0; i < t->nfunctions; i++) {
            const gh_conf_function_t *fn = t->functions[i];
            gh_fn_limits_t lim = {fn->max_instructions, (size_t)fn->max_memory};
            char err[256];
            if (gh_lua_load(L, fn->id, fn->chunkname, fn->code, fn->code_len, &lim, err, sizeof err) < 0)
                gh_log(GH_LOG_ERROR, "tenant %s: edge function %s: %s", t->name, fn->chunkname + 1, err);
        }
        g->lua[t->index] = L;
    }
    return g->lua[t->index];
}

static const void *edge_upstream(void *arg, const char *name, size_t n)
{
    /* a pool the tenant's routes or rules already use (its own API pools are TENANT/NAME) */
    gh_req_t *r = arg;
    const gh_conf_tenant_t *t = r->route->tenant;
    char full[300];
    int fl = snprintf(full, sizeof full, "%s/%.*s", t->name, (int)n, name);
    for (uint32_t si = 0; si < t->nsites; si++)
        for (uint32_t ri = 0; ri < t->sites[si].nroutes; ri++) {
            const gh_conf_upstream_t *u = t->sites[si].routes[ri].upstream;
            if (u && ((strlen(u->name) == n && !memcmp(u->name, name, n)) || (fl > 0 && !strcmp(u->name, full))))
                return u;
        }
    return NULL;
}

static void edge_log(void *arg, const char *msg, size_t n)
{
    gh_req_t *r = arg;
    gh_log(GH_LOG_INFO, "edge function %s/%s: %.*s", r->route->tenant->name, r->route->name, (int)GH_MIN(n, 2000u),
           msg);
}

/* Run the route's function for a phase. 0: go on (the function may have answered: the request is
 * then P_DIRECT, checked by the caller through r->ed->status); -1: it failed and on_error is fail.
 * rh: the response's fields in the response phase. */
static int run_function(gh_req_t *r, const gh_h1_request_t *m, int phase, const gh_h1_header_t *rh, uint32_t nrh)
{
    const gh_conf_function_t *fn = r->route->function;
    const gh_conf_tenant_t *t = r->route->tenant;
    gh_route_stats_t *st = r->route->stats;
    gh_h1_request_t req;
    if (!m) {
        if (reparse(r, &req) < 0)
            return 0;
        m = &req;
    }
    gh_lua_t *L = lua_state(r, t);
    gh_edits_t *e = edits_of(r);
    if (!L || !e)
        return fn->on_error == GH_FN_FAIL ? -1 : 0;
    gh_client_t *conn = r->c->parent ? r->c->parent : r->c;
    gh_fn_req_t fr = {
        .method = m->method, .path = m->path, .query = m->query, .host = m->host,
        .headers = m->headers, .nheaders = m->nheaders,
        .tenant = t->name, .route = r->route->name, .client_ip = r->peer,
        .country = req_country(r, m->headers, m->nheaders),
        .ja4 = conn->ja4[0] ? conn->ja4 : NULL,
        .variant = edge_variant, .upstream = edge_upstream, .log = edge_log, .arg = r,
        .status = phase == GH_FN_RESPONSE ? r->status : 0,
        .resp_headers = rh, .nresp_headers = nrh,
        .edits = e, .ctx_ref = r->fn_ctx,
        .now_ms = r->wall_ns ? req_wall_ms(r) : now_wall_ms(),
    };
    /* what the function changes is undone when it fails */
    gh_edits_t keep = *e;
    char err[512];
    gh_fn_limits_t lim = {fn->max_instructions, (size_t)fn->max_memory};
    int rc = gh_lua_run(L, fn->id, phase, &fr, &lim, err, sizeof err);
    r->fn_ctx = fr.ctx_ref;
    if (st)
        GH_COUNT(st->slot[r->w->id].fn[rc == GH_FN_OK ? 0 : rc == GH_FN_LIMIT ? 2 : 1], 1);
    if (rc == GH_FN_OK)
        return 0;
    gh_log(GH_LOG_WARN, "edge function %s (tenant %s, route %s): %s", fn->chunkname + 1, t->name, r->route->name, err);
    e->nh = keep.nh;
    e->method = keep.method;
    e->path = keep.path;
    e->query = keep.query;
    e->status = keep.status;
    e->location = keep.location;
    e->body = keep.body;
    e->ctype = keep.ctype;
    e->upstream = keep.upstream;
    r->fn_failed = 1;
    return fn->on_error == GH_FN_FAIL ? -1 : 0;
}

/* A function's own answer (r:respond / r:redirect): 1 when there is one (sent). */
static int function_answer(gh_req_t *r)
{
    gh_edits_t *e = r->ed;
    if (!e || !e->status)
        return 0;
    if (e->location.p) {
        respond_redirect(r, e->status, e->location);
        return 1;
    }
    skip_body(r);
    respond(r, e->status, e->ctype.p, e->body.p, e->body.n, NULL, 0);
    return 1;
}

static void edge_done(gh_req_t *r)
{
    if (r->fn_ctx && r->route && r->route->function && r->gen && r->gen->lua && r->gen->lua[r->route->tenant->index]) {
        gh_fn_req_t fr = {.ctx_ref = r->fn_ctx};
        gh_lua_done(r->gen->lua[r->route->tenant->index], &fr);
    }
    r->fn_ctx = 0;
    gh_edits_free(r->ed);
    r->ed = NULL;
}

/* The client's address as text into out (IPv4 by hand: inet_ntop goes through sprintf, too slow
 * per request); its length. */
static uint8_t format_peer(const gh_client_t *c, char *out)
{
    if (c->peer.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &c->peer.in6.sin6_addr, out, INET6_ADDRSTRLEN);
        return (uint8_t)strlen(out);
    }
    const uint8_t *a = (const uint8_t *)&c->peer.in4.sin_addr;
    char *o = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
        *o++ = i < 3 ? '.' : 0;
    }
    return (uint8_t)(o - 1 - out);
}

/* A request object for c, made current: time, generation, peer. NULL (and c
 * closed) when out of memory. */
static gh_req_t *request_begin(gh_client_t *c)
{
    gh_worker_t *w = c->w;
    gh_req_t *r = req_new(c);
    if (!r) {
        client_close(c);
        return NULL;
    }
    c->req = r;
    c->state = C_ACTIVE;
    gh_timer_stop(&w->loop, &c->timer);
    r->gen = gh_gen_hold(w);
    r->t_start_us = now_us();
    r->minor = 1;
    if (gh_accesslog_enabled() || gh_exposurelog_enabled() || gh_exp_running() || gh_trace_on()) {
        struct timespec ts; /* (one clock read for all of them) */
        clock_gettime(CLOCK_REALTIME, &ts);
        r->wall_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    r->peer_len = format_peer(c, r->peer);
    GH_COUNT(w->stats->requests, 1);
    return r;
}

static void new_request_id(gh_req_t *r)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = gh_worker_rand(r->w), b = gh_worker_rand(r->w);
    for (int i = 0; i < 16; i++) {
        r->reqid[i] = hex[(a >> (i * 4)) & 15];
        r->reqid[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    r->reqid_len = 32;
}

static uint64_t trace_rand(void *w) { return gh_worker_rand(w); }

/* Tracing is on: the request's trace context from the caller's traceparent (exactly one
 * valid field, else a new trace) and its tracestate (kept only with a valid traceparent). */
static void trace_start(gh_req_t *r, const gh_h1_request_t *m)
{
    const gh_conf_t *conf = r->gen->conf;
    if (!conf->tracing.enabled) /* turned off by a reload */
        return;
    gh_str_t tp = GH_STR_NULL, ts = GH_STR_NULL;
    int ntp = 0;
    for (uint16_t i = 0; i < m->nheaders; i++) {
        gh_str_t n = m->headers[i].name;
        if (n.n == 11 && gh_str_caseeq_lit(n, "traceparent")) {
            tp = m->headers[i].value;
            ntp++;
        } else if (n.n == 10 && !ts.n && gh_str_caseeq_lit(n, "tracestate")) {
            ts = m->headers[i].value;
        }
    }
    gh_trace_begin(&r->tr, ntp == 1 ? tp : GH_STR_NULL, conf->tracing.sample_ratio, conf->tracing.respect_parent,
                   trace_rand, r->w, r->t_start_us, r->wall_ns);
    if (r->tr.parent_ok)
        r->tr.tracestate = ts;
}

/* A try starts: its span id, also patched into the traceparent of the upstream head. */
static void trace_try(gh_req_t *r)
{
    const uint8_t *id = gh_trace_try_begin(&r->tr, r->backend->name, gh_worker_rand(r->w), now_us());
    if (r->tr.tp_off && r->tr.tp_off + 16 <= r->uhead.wr)
        gh_trace_hex(r->uhead.base + r->tr.tp_off, id, 8);
}

/* A sampled request ends: its spans to the exporter (dropped and counted when its ring is full). */
static void trace_finish(gh_req_t *r, uint64_t dur)
{
    gh_trace_req_t q = {
        .ctx = &r->tr,
        .start_us = r->t_start_us,
        .end_us = r->t_start_us + dur,
        .status = r->status,
        .method = r->method,
        .path = r->path,
        .host = r->host,
        .client = gh_str(r->peer, r->peer_len),
        .proto = r->c->h2s ? GH_STR("2") : r->minor ? GH_STR("1.1") : GH_STR("1.0"),
        .request_id = gh_str(r->reqid, r->reqid_len),
    };
    if (r->route) {
        q.tenant = gh_str(r->route->tenant->name, strlen(r->route->tenant->name));
        q.route = gh_str(r->route->name, strlen(r->route->name));
    }
    if (r->ups)
        q.upstream = gh_str(r->ups->name, strlen(r->ups->name));
    if (r->cresult) {
        const char *cr = gh_cache_result_names[r->cresult];
        q.cache = gh_str(cr, strlen(cr));
    }
    if (r->prot_reason) {
        const char *rs = gh_protect_reason_name(r->prot_reason), *as = gh_protect_action_name(r->prot_action);
        q.prot_reason = gh_str(rs, strlen(rs));
        q.prot_action = gh_str(as, strlen(as));
        if (r->prot_detail)
            q.prot_detail = gh_str(r->prot_detail, strlen(r->prot_detail));
    }
    gh_trace_record(r->w->id, &q);
}

/* A complete head at c->in.rd: start the request. */
static void request_start(gh_client_t *c, const gh_h1_request_t *m)
{
    gh_req_t *r = request_begin(c);
    if (!r)
        return;
    r->method = m->method;
    r->method_id = m->method_id;
    r->path = m->path;
    r->query = m->query;
    r->host = m->host;
    r->minor = (uint8_t)m->minor;
    r->keep_alive = m->keep_alive;
    c->nrequests++;
    uint32_t maxreq = r->gen->conf->protect.max_requests;
    if (maxreq && c->nrequests >= maxreq && !c->h2s)
        c->close_after = 1; /* the last one this connection serves: answered with Connection: close */
    r->head_only = m->method_id == GH_M_HEAD;
    r->head_len = m->head_len;
    r->bytes_in = m->head_len;
    /* "Content-Length: 0" is no body: such a request can be retried like a GET */
    r->body = (uint8_t)(m->body == GH_H1_BODY_LENGTH && !m->content_length ? GH_H1_BODY_NONE : m->body);
    r->body_left = m->content_length;
    r->body_done = r->body == GH_H1_BODY_NONE;
    r->in_pos = c->in.rd + m->head_len;
    const gh_h1_header_t *rid = gh_h1_find(m->headers, m->nheaders, GH_STR("x-request-id"));
    if (rid && valid_request_id(rid->value)) {
        memcpy(r->reqid, rid->value.p, rid->value.n);
        r->reqid_len = (uint8_t)rid->value.n;
    } else {
        new_request_id(r);
    }
    int role = c->listener->role;
    if (gh_trace_on() && role == GH_LISTEN_PROXY && !c->bg)
        trace_start(r, m);
    if (role == GH_LISTEN_PROXY) {
        route_and_dispatch(r, m);
    } else if (role_handlers[role]) {
        if (m->body == GH_H1_BODY_LENGTH && m->content_length > GH_HANDLER_BODY_MAX) {
            respond_error(r, 413, "request body too large");
            return;
        }
        r->phase = P_BODY; /* the handler runs once the whole body is here (req_run) */
    } else {
        respond_error(r, 404, "nothing here");
    }
}

/* ---- the pump ---- */

static void req_timer_arm(gh_req_t *r);

/* P_BODY: read the request body of a handler's request into c->in (grown as needed, up to
 * GH_HANDLER_BODY_MAX). 1 when it is complete, 0 to wait, or an E_* code. */
static int handler_body(gh_req_t *r)
{
    gh_client_t *c = r->c;
    for (;;) {
        int rc = client_read_body(r, 0);
        if (rc < 0)
            return rc;
        /* the raw body (chunk framing included) may pass the limit by 64 KiB; the body itself
         * is checked once de-chunked (handler_call) */
        if (r->bytes_in - r->head_len > GH_HANDLER_BODY_MAX + 65536)
            return E_TOOLARGE;
        if (r->body_done)
            return 1;
        if (gh_buf_room(&c->in)) {
            if (!rc)
                return 0;
            continue;
        }
        uint32_t want = c->in.cap * 2;
        if (want > r->head_len + GH_HANDLER_BODY_MAX + 65536)
            want = r->head_len + GH_HANDLER_BODY_MAX + 65536;
        if (want <= c->in.cap || gh_buf_grow(&r->w->bufs, &c->in, want) < 0)
            return E_TOOLARGE;
    }
}

/* P_BODY done: give the handler the request and its body (de-chunked). */
static void handler_call(gh_req_t *r)
{
    gh_client_t *c = r->c;
    gh_h1_request_t m;
    if (reparse(r, &m) < 0) {
        respond_error(r, 500, "out of memory");
        return;
    }
    const char *body = c->in.base + c->in.rd + r->head_len;
    size_t len = r->in_ready;
    char *dechunked = NULL;
    if (r->body == GH_H1_BODY_CHUNKED) {
        gh_h1_chunked_t ck;
        memset(&ck, 0, sizeof ck);
        dechunked = malloc(len ? len : 1);
        size_t n = 0, off = 0;
        while (dechunked && off < len && !ck.done) {
            gh_str_t data;
            long k = gh_h1_chunked_step(&ck, body + off, len - off, &data);
            if (k <= 0)
                break;
            memcpy(dechunked + n, data.p, data.n);
            n += data.n;
            off += (size_t)k;
        }
        if (!dechunked) {
            respond_error(r, 500, "out of memory");
            return;
        }
        body = dechunked;
        len = n;
    } else if (r->body == GH_H1_BODY_NONE) {
        len = 0;
    }
    if (len > GH_HANDLER_BODY_MAX) {
        free(dechunked);
        respond_error(r, 413, "request body too large");
        return;
    }
    r->in_pos += r->in_ready; /* consumed */
    r->in_ready = 0;
    r->phase = 0;
    gh_req_view_t v = {&m, r->w, r->peer, body, len};
    role_handlers[c->listener->role](r, &v);
    free(dechunked);
    if (r->phase != P_DIRECT && r->phase != P_STREAM && r->phase != P_DEFER)
        respond_error(r, 500, "handler gave no answer");
}

/* Finish the request: account, give connections back, go on with the client.
 * Returns 1 if the client connection continues, 0 if it was closed. */
static int request_finish(gh_req_t *r)
{
    gh_client_t *c = r->c;
    if (r->cnew && r->resp_done && r->phase == P_PROXY)
        cache_store(r);
    req_account(r);
    if (r->u) {
        int reusable = r->up_keepalive && r->sent_done && r->resp_done && !r->up_extra && !r->u->hup &&
                       r->phase == P_PROXY;
        if (reusable) {
            gh_upstream_release(r->u, r->ups->keepalive, r->ups->keepalive_timeout);
        } else {
            gh_upstream_close(r->u);
        }
        r->u = NULL;
    }
    /* the client asked to close and everything it sent was read: nothing to linger for */
    int quiet = !r->keep_alive && r->body_done && !r->in_ready;
    if (r->body_done && !r->in_ready)
        c->in.rd = r->in_pos;
    else
        c->close_after = 1;
    req_free(r);
    c->req = NULL;
    if (c->h2s || c->bg) { /* one request per stream (or background refresh) */
        client_close(c);
        return 0;
    }
    if (c->close_after || c->w->draining) {
        if (quiet && !gh_buf_len(&c->in) && !(c->ssl && gh_tls_pending(c->ssl))) {
            /* as nginx: a lingering close only where unread input could turn the close
             * into a reset that destroys the response in flight */
            if (c->ssl)
                gh_tls_shutdown(c->ssl);
            client_close(c);
            return 0;
        }
        c->state = C_LINGER;
        if (c->ssl)
            gh_tls_shutdown(c->ssl); /* close_notify, best effort */
        shutdown(c->io.fd, SHUT_WR);
        gh_buf_put(&c->w->bufs, &c->in);
        gh_timer_set(&c->w->loop, &c->timer, LINGER_MS);
        return 0;
    }
    c->state = C_IDLE;
    if (!gh_buf_len(&c->in))
        gh_buf_put(&c->w->bufs, &c->in);
    return 1;
}

static void client_gone(gh_req_t *r)
{
    if (!r->status)
        r->status = 499; /* nginx's "client closed request" */
    client_close(r->c);  /* closes the upstream connection too: that is the cancel */
}

/* Returns 1 when the request finished and the client may go on, 0 otherwise. */
static int req_run(gh_req_t *r)
{
    gh_client_t *c = r->c;
    for (int rounds = 0; rounds < 64; rounds++) {
        int progress = 0, rc;
        switch (r->phase) {
        case P_CONNECT: {
            gh_upconn_t *u = r->u;
            if (r->ups->http2) { /* a stream waiting for its HTTP/2 connection */
                int ready = gh_h2up_ready(u);
                if (ready < 0) {
                    connect_failed(r);
                    progress = 1;
                } else if (ready > 0) {
                    u->connected = u->tls_done = 1;
                    r->phase = P_PROXY;
                    pending_done(r);
                    progress = 1;
                }
                break;
            }
            if (!u->connected) {
                if (!u->writable && !u->hup)
                    break;
                int err = 0;
                socklen_t len = sizeof err;
                if (getsockopt(u->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
                    connect_failed(r);
                    progress = 1;
                    break;
                }
                u->connected = 1;
                if (r->ups->tls_client &&
                    !(u->ssl = gh_tls_client_ssl(r->ups->tls_client, u->io.fd, r->backend->tls_name, r->backend->name))) {
                    connect_failed(r);
                    progress = 1;
                    break;
                }
            }
            if (u->ssl && !u->tls_done) { /* TLS to the backend, within the connect timeout */
                int hs = gh_tls_handshake(u->ssl);
                if (hs == GH_EAGAIN) {
                    if (gh_tls_want(u->ssl) == GH_TLS_WANT_WRITE)
                        u->writable = 0;
                    else
                        u->readable = 0;
                    break;
                }
                if (hs < 0) {
                    upstream_tls_failed(r);
                    progress = 1;
                    break;
                }
                u->tls_done = 1;
            }
            r->phase = P_PROXY;
            pending_done(r);
            progress = 1;
            break;
        }
        case P_PROXY:
            if (c->rdhup && r->body_done && c->h2s) { /* the stream was reset */
                client_gone(r);
                return 0;
            }
            if (c->rdhup && r->body_done) {
                char x;
                ssize_t k = recv(c->io.fd, &x, 1, MSG_PEEK | MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN)) {
                    client_gone(r);
                    return 0;
                }
                c->rdhup = 0;
            }
            if ((rc = client_read_body(r, 0)) < 0)
                goto fail;
            progress |= rc;
            if ((rc = upstream_write(r)) < 0)
                goto fail;
            progress |= rc;
            if ((rc = upstream_read(r)) < 0)
                goto fail;
            progress |= rc;
            if (r->resp_done && r->phase == P_PROXY && (r->cnew || r->cfetch))
                cache_fetched(r); /* stored as soon as it is all here, not when the client has it */
            if ((rc = client_write(r)) < 0)
                goto fail;
            progress |= rc;
            if (r->phase == P_PROXY && r->head_done && r->resp_done && !output_pending(r))
                return request_finish(r);
            break;
        case P_TUNNEL:
            if ((rc = client_write(r)) < 0)
                goto tunnel_end;
            progress |= rc;
            if (gh_buf_len(&r->chead))
                break;
            if ((rc = upstream_read(r)) < 0)
                goto tunnel_end;
            progress |= rc;
            if ((rc = client_read_body(r, 1)) < 0)
                goto tunnel_end;
            progress |= rc;
            if (r->in_ready && r->u->writable) {
                struct iovec one = {c->in.base + r->in_pos, r->in_ready};
                ssize_t k = up_writev(r->u, &one, 1);
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                    goto tunnel_end;
                if (k < 0) {
                    r->u->writable = 0;
                } else {
                    r->in_pos += (uint32_t)k;
                    r->in_ready -= (uint32_t)k;
                    if (!r->in_ready)
                        r->in_pos = c->in.wr = c->in.rd + r->head_len;
                    progress = 1;
                }
            }
            break;
        case P_CWAIT: /* waiting for another request's fetch: woken by gh_session_cache_wake */
        case P_DEFER: /* waiting for a handler's later answer (gh_session_answer_deferred) */
            break;
        case P_BODY:
            if ((rc = handler_body(r)) < 0)
                goto fail;
            if (rc > 0) {
                handler_call(r);
                progress = 1;
            }
            break;
        case P_STREAM: /* a streamed answer: what the handler sent, until it ends it */
            if (c->rdhup && c->h2s) { /* the stream was reset (a cancel) */
                client_gone(r);
                return 0;
            }
            if (c->rdhup) {
                char x;
                ssize_t k = recv(c->io.fd, &x, 1, MSG_PEEK | MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN)) {
                    client_gone(r);
                    return 0;
                }
                c->rdhup = 0;
            }
            if ((rc = client_write(r)) < 0) {
                client_gone(r);
                return 0;
            }
            progress |= rc;
            break;
        case P_DIRECT:
            if ((rc = client_write(r)) < 0) {
                client_gone(r);
                return 0;
            }
            progress |= rc;
            if (!output_pending(r))
                return request_finish(r);
            break;
        }
        if (!progress)
            break;
        if (rounds == 63) { /* still moving: let the other connections have a turn */
            gh_task_post(&r->w->loop, &c->resume);
            break;
        }
        continue;
    fail:
        switch (rc) {
        case E_CLIENT:
            client_gone(r);
            return 0;
        case E_TOOLARGE:
            r->body_done = 0;
            respond_error(r, 413, "request body too large");
            break;
        case E_BADBODY:
            r->body_done = 0;
            GH_COUNT(r->w->stats->parser_rejections[gh_err_index(GH_EH1_CHUNK)], 1);
            respond_error(r, 400, "invalid chunked body");
            break;
        default:
            if (r->head_done && r->resp_started) {
                /* a response is half sent: all we can do is cut it */
                c->close_after = 1;
                req_account(r);
                client_close(c);
                return 0;
            }
            upstream_failed(r, rc);
            break;
        }
        continue;
    tunnel_end:
        req_account(r);
        client_close(c);
        return 0;
    }
    req_timer_arm(r);
    return 0;
}

static int slow_client(gh_req_t *r);

static void req_timeout(gh_timer_t *t)
{
    gh_req_t *r = (gh_req_t *)((char *)t - offsetof(gh_req_t, timer));
    gh_client_t *c = r->c;
    gh_upstream_stats_t *st = r->ups ? r->ups->stats : NULL;
    if (c->h2s && output_pending(r) && !c->writable &&
        (r->phase == P_PROXY || r->phase == P_DIRECT || r->phase == P_STREAM)) {
        gh_h2_stream_stalled(c); /* the peer withholds its window: closes the connection */
        return;
    }
    gh_log(GH_LOG_DEBUG, "timeout phase=%d head_done=%d resp_done=%d body_done=%d sent_done=%d in_ready=%u in_pos=%u rd=%u wr=%u cap=%u head_len=%u c.r=%d c.w=%d u.r=%d u.w=%d uhead=%u resp=%u/%u ready_end=%u scan=%u chunk.state=%d",
           r->phase, r->head_done, r->resp_done, r->body_done, r->sent_done, r->in_ready, r->in_pos, c->in.rd, c->in.wr, c->in.cap, r->head_len, c->readable, c->writable, r->u ? r->u->readable : -1, r->u ? r->u->writable : -1, gh_buf_len(&r->uhead), r->resp.rd, r->resp.wr, r->ready_end, r->scan, r->chunk.state);
    switch (r->phase) {
    case P_CONNECT:
        if (st)
            GH_COUNT(st->slot[r->w->id].timeouts, 1);
        gh_upstream_close(r->u);
        r->u = NULL;
        TRACE_TRY_END(r, GH_TT_TIMEOUT);
        backend_result(r, 1);
        if (retry_allowed(r, GH_RETRY_CONNECT) && pick_backend(r) == 0) /* nothing was sent: safe elsewhere */
            retry_start(r);
        else
            respond_error(r, 504, "upstream connect timed out");
        break;
    case P_PROXY:
        /* under the minimum data rate (a slow POST or a slow reader): the answer below */
        if (r->slow_deadline && r->route && !slow_client(r))
            return;
        if (!r->head_done) {
            if (!r->body_done && !c->readable) {
                respond_error(r, 408, "request body timed out");
            } else {
                if (st)
                    GH_COUNT(st->slot[r->w->id].timeouts, 1);
                pending_done(r);
                gh_upstream_close(r->u);
                r->u = NULL;
                TRACE_TRY_END(r, GH_TT_TIMEOUT);
                backend_result(r, 1);
                if (r->sent_done && replayable(r) && retry_allowed(r, GH_RETRY_TIMEOUT) && pick_backend(r) == 0)
                    retry_start(r);
                else
                    respond_error(r, 504, "upstream timed out");
            }
        } else if (output_pending(r) && !c->writable) {
            /* the client does not read (or too slowly): reset, so that the kernel drops what
             * it still holds for it instead of trickling it out after the close */
            struct linger lg = {1, 0};
            setsockopt(c->io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            req_account(r);
            client_close(c);
            return;
        } else {
            if (st)
                GH_COUNT(st->slot[r->w->id].timeouts, 1);
            respond_error(r, 504, "upstream timed out");
        }
        break;
    case P_BACKOFF:
        if (gh_loop_now(&r->w->loop) < r->phase_start) /* the request's own deadline came first */
            respond_error(r, 504, "request timed out");
        else
            upstream_start(r, 0);
        break;
    case P_BODY:
        respond_error(r, 408, "request body timed out");
        break;
    case P_CWAIT: /* the fetch waited on takes too long: fetch alone */
        cache_waiting_unlink(r);
        if (r->cfetch) {
            gh_cache_fetch_put(r->cfetch);
            r->cfetch = NULL;
        }
        if (gh_loop_now(&r->w->loop) < r->phase_start) /* the request's own deadline came first */
            respond_error(r, 504, "request timed out");
        else
            cache_wait_end(r, 0);
        break;
    case P_HOLD:
        if (gh_loop_now(&r->w->loop) < r->phase_start)
            respond_error(r, 504, "request timed out");
        else if (r->hold_status)
            respond_error(r, r->hold_status, "too many requests");
        else
            dispatch(r);
        break;
    case P_DEFER:
        defer_unlink(r);
        respond_error(r, 503, "the answer did not come in time");
        break;
    case P_STREAM:
        if ((output_pending(r) && !c->writable) || !r->sfn) { /* a client that does not read */
            req_account(r);
            client_close(c);
            return;
        }
        r->sfn(r, GH_STREAM_TICK);
        break;
    default: /* tunnel idle, or a client that does not read */
        req_account(r);
        client_close(c);
        return;
    }
    client_run(c);
}

/* Slow clients (slow POST, slow read): with a minimum rate configured, the moment at which
 * the bytes moved so far stop averaging that rate (after a 5 s grace) if no more come. */
static uint64_t min_rate_deadline(gh_req_t *r, uint64_t gap_deadline, int body)
{
    const gh_conf_t *conf = r->gen->conf;
    uint32_t rate = body ? conf->protect.body_min_rate : conf->protect.send_min_rate;
    if (!rate || r->c->h2s) /* HTTP/2 streams share a connection: its own flow control rules */
        return gap_deadline;
    uint64_t t0 = body ? r->t_start_us / 1000 : (r->t_up_us + (uint64_t)GH_MAX(r->up_us, 0)) / 1000;
    uint64_t bytes = body ? r->bytes_in - r->head_len : r->bytes_out;
    if (!body) { /* what the client took, not what sits in our socket's send queue */
        int queued = 0;
        if (ioctl(r->c->io.fd, SIOCOUTQ, &queued) == 0 && queued > 0)
            bytes = bytes > (uint64_t)queued ? bytes - (uint64_t)queued : 0;
    }
    uint64_t d = t0 + GH_MAX(5000u, bytes * 1000 / rate);
    r->gap_deadline = gap_deadline;
    r->slow_deadline = d < gap_deadline ? d : 0;
    return GH_MIN(d, gap_deadline);
}

/* The minimum-rate deadline fired: 1 when the client is really under the rate (else the
 * timer is armed again for the moment it would be). */
static int slow_client(gh_req_t *r)
{
    uint64_t now = gh_loop_now(&r->w->loop), gap = r->gap_deadline;
    int body = !(output_pending(r) && !r->c->writable);
    uint64_t d = min_rate_deadline(r, gap, body);
    if (d > now) {
        gh_timer_set(&r->w->loop, &r->timer, d - now);
        return 0;
    }
    r->slow_deadline = 0;
    if (now >= gap)
        return 0; /* the plain gap timeout */
    r->prot_reason = GH_PR_SLOW;
    r->prot_action = GH_PA_BLOCK;
    r->prot_detail = body ? "body_min_rate" : "send_min_rate";
    gh_protect_count(r->route, GH_PR_SLOW, GH_PA_BLOCK);
    return 1;
}

static void req_timer_arm(gh_req_t *r)
{
    gh_worker_t *w = r->w;
    gh_client_t *c = r->c;
    const gh_conf_timeouts_t *to = r->route ? &r->route->timeouts : &conf_of(w)->timeouts;
    uint64_t now = gh_loop_now(&w->loop), deadline;
    r->slow_deadline = 0;
    switch (r->phase) {
    case P_CONNECT:
        deadline = r->phase_start + to->upstream_connect;
        break;
    case P_PROXY:
        if (output_pending(r) && !c->writable)
            deadline = min_rate_deadline(r, now + to->client_send, 0);
        else if (!r->head_done && r->sent_done)
            deadline = r->phase_start + (r->ups && r->ups->retry.per_try_timeout
                                             ? GH_MIN(r->ups->retry.per_try_timeout, to->upstream_response)
                                             : to->upstream_response);
        else if (!r->body_done && !c->readable)
            deadline = min_rate_deadline(r, now + to->client_body, 1);
        else
            deadline = now + to->upstream_idle;
        break;
    case P_TUNNEL:
        deadline = now + (output_pending(r) && !c->writable ? to->client_send : to->upstream_idle);
        break;
    case P_BACKOFF:
    case P_HOLD:
    case P_CWAIT:
    case P_DEFER:
        deadline = r->phase_start;
        break;
    case P_BODY:
        deadline = now + to->client_body;
        break;
    case P_STREAM:
        deadline = now + (output_pending(r) && !c->writable ? to->client_send : r->stick_ms);
        break;
    default:
        deadline = now + to->client_send;
        break;
    }
    if (to->request && r->phase != P_TUNNEL && r->phase != P_STREAM) {
        uint64_t end = r->t_start_us / 1000 + to->request; /* same clock base: CLOCK_MONOTONIC */
        if (end < deadline)
            deadline = end;
    }
    gh_timer_set(&w->loop, &r->timer, deadline > now ? deadline - now : 0);
}

/* ---- client connections ---- */

static void client_close(gh_client_t *c)
{
    gh_worker_t *w = c->w;
    if (c->req) {
        gh_req_t *r = c->req;
        c->req = NULL;
        req_account(r);
        req_free(r);
    }
    gh_timer_stop(&w->loop, &c->timer);
    gh_task_cancel(&c->resume);
    gh_buf_put(&w->bufs, &c->in);
    if (c->h2s || c->bg) { /* a stream or background client: no socket, not in the connection list */
        if (c->h2s)
            gh_h2_stream_closed(c);
        gh_loop_free_later(&w->loop, c);
        return;
    }
    if (c->h2) {
        gh_h2_free(c); /* closes its stream clients first */
        gh_task_cancel(&c->resume); /* nothing they posted may run on a freed client */
    }
    if (c->ssl) {
        if (c->state == C_TLS)
            GH_COUNT(w->stats->tls_failed, 1);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->conn_counted) {
        gh_protect_conn_close(&c->peer.sa);
        c->conn_counted = 0;
    }
    gh_loop_close_fd(&w->loop, &c->io);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    GH_COUNT(w->stats->conns_active, (uint64_t)-1);
    gh_loop_free_later(&w->loop, c);
}

static void reject_head(gh_client_t *c, int err, int status)
{
    GH_COUNT(c->w->stats->parser_rejections[gh_err_index(err)], 1);
    gh_req_t *r = request_begin(c);
    if (!r)
        return;
    new_request_id(r);
    r->body_done = 0; /* never read past a head we could not parse */
    char msg[96];
    snprintf(msg, sizeof msg, "%s", gh_err_msg(err));
    respond_error(r, status ? status : 400, msg);
    c->close_after = 1;
}

/* Read and parse a request head. Returns 1 when a request started, 0 to wait. */
static int client_head(gh_client_t *c)
{
    gh_worker_t *w = c->w;
    const gh_conf_t *conf = conf_of(w);
    gh_h1_limits_t lim = {conf->limits.max_request_line, conf->limits.max_header_size,
                          (uint16_t)GH_MIN(conf->limits.max_headers, GH_MAX_HEADERS)};
    for (;;) {
        uint32_t have = gh_buf_len(&c->in);
        if (have && c->listener->h2c && !c->h2s &&
            !memcmp(c->in.base + c->in.rd, GH_H2_PREFACE, GH_MIN(have, (uint32_t)GH_H2_PREFACE_LEN))) {
            /* cleartext HTTP/2 with prior knowledge: the preface, or the start of it */
            if (have >= GH_H2_PREFACE_LEN) {
                if (gh_h2_start(c) < 0) {
                    client_close(c);
                    return 0;
                }
                return 1;
            }
            have = 0; /* wait for the rest of it */
        }
        if (have) {
            gh_h1_request_t m;
            int status = 400;
            int rc = gh_h1_parse_request(c->in.base + c->in.rd, gh_buf_len(&c->in), &lim, &m, w->hdrs,
                                         GH_MAX_HEADERS, &status);
            if (rc > 0) {
                request_start(c, &m);
                return 1;
            }
            if (rc != GH_EAGAIN) {
                reject_head(c, rc, status);
                return 1;
            }
        }
        if (w->draining && c->state == C_IDLE && !gh_buf_len(&c->in)) {
            client_close(c);
            return 0;
        }
        if (!c->readable)
            break;
        if (gh_buf_get(&w->bufs, &c->in) < 0) {
            client_close(c);
            return 0;
        }
        if (!gh_buf_room(&c->in)) {
            gh_buf_compact(&c->in);
            if (!gh_buf_room(&c->in) &&
                gh_buf_grow(&w->bufs, &c->in, conf->limits.max_header_size + 1024) < 0) {
                client_close(c);
                return 0;
            }
            if (!gh_buf_room(&c->in)) { /* cannot happen: the parser caps the head first */
                client_close(c);
                return 0;
            }
        }
        size_t room = gh_buf_room(&c->in);
        ssize_t n = client_recv(c, c->in.base + c->in.wr, room);
        if (n > 0) {
            if ((size_t)n < room && !c->rdhup)
                c->readable = 0;
            c->in.wr += (uint32_t)n;
            if (c->state == C_IDLE) {
                c->state = C_HEAD;
                gh_timer_set(&w->loop, &c->timer, conf->timeouts.client_header);
            }
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            client_close(c);
            return 0;
        }
        c->readable = 0;
    }
    if (c->state == C_IDLE) {
        if (!gh_buf_len(&c->in))
            gh_buf_put(&w->bufs, &c->in);
        gh_timer_set(&w->loop, &c->timer, conf->timeouts.keepalive);
    } else if (!gh_timer_armed(&c->timer)) {
        gh_timer_set(&w->loop, &c->timer, conf->timeouts.client_header);
    }
    return 0;
}

/* TLS listeners: the handshake, bounded by the client_header timeout. 1 once done
 * (the connection goes on as HTTP/1.1), 0 to wait or when closed. */
static int client_handshake(gh_client_t *c)
{
    gh_worker_t *w = c->w;
    int rc = gh_tls_handshake(c->ssl);
    if (rc == 0) {
        GH_COUNT(w->stats->tls_handshakes, 1);
        if (gh_tls_resumed(c->ssl))
            GH_COUNT(w->stats->tls_resumed, 1);
        c->state = C_IDLE;
        c->readable = 1; /* the first request may have come with the last handshake flight */
        const char *alpn = gh_tls_alpn(c->ssl);
        if (alpn && !strcmp(alpn, "h2") && gh_h2_start(c) < 0) {
            client_close(c);
            return 0;
        }
        return 1;
    }
    if (rc == GH_EAGAIN) {
        if (gh_tls_want(c->ssl) == GH_TLS_WANT_WRITE)
            c->writable = 0;
        else
            c->readable = 0;
        return 0;
    }
    if (rc == GH_EINVAL && gh_tls_plain_http(c->ssl)) {
        /* as nginx: answer in clear text, then close */
        static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                  "Content-Length: 55\r\nConnection: close\r\n\r\n"
                                  "400 Bad Request: plain HTTP was sent to an HTTPS port\n\n";
        ssize_t k = send(c->io.fd, msg, sizeof msg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)k;
        GH_COUNT(w->stats->tls_plain_http, 1);
        /* the request was only peeked: read it away before closing, or the close is a reset */
        c->state = C_LINGER;
        shutdown(c->io.fd, SHUT_WR);
        gh_timer_set(&w->loop, &c->timer, LINGER_MS);
        c->readable = 1;
        return 1;
    } else if (gh_log_level >= GH_LOG_DEBUG) {
        char why[160];
        gh_log(GH_LOG_DEBUG, "TLS handshake with %s failed: %s", c->listener->name,
               gh_tls_strerror(c->ssl, why, sizeof why));
    } else {
        ERR_clear_error();
    }
    client_close(c);
    return 0;
}

static void client_linger(gh_client_t *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = read(c->io.fd, sink, sizeof sink);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            c->readable = 0;
            return;
        }
        client_close(c);
        return;
    }
}

static void client_run(gh_client_t *c)
{
    for (;;) {
        switch (c->state) {
        case C_IDLE:
        case C_HEAD:
            if (!client_head(c))
                return;
            break;
        case C_ACTIVE:
            if (!req_run(c->req))
                return;
            break;
        case C_LINGER:
            if (c->readable || c->rdhup)
                client_linger(c);
            return;
        case C_TLS:
            if (!client_handshake(c))
                return;
            break;
        case C_H2:
            gh_h2_run(c);
            return;
        }
    }
}

void gh_client_run(gh_client_t *c) { client_run(c); }

/* Close after our last bytes: shut the write side, read away what the peer still
 * sends for a moment (closing with unread data would reset the connection and could
 * destroy the last response, or a GOAWAY, in flight). */
void gh_client_linger(gh_client_t *c)
{
    if (c->ssl)
        gh_tls_shutdown(c->ssl);
    shutdown(c->io.fd, SHUT_WR);
    gh_buf_put(&c->w->bufs, &c->in);
    c->state = C_LINGER;
    c->readable = 1;
    gh_timer_set(&c->w->loop, &c->timer, LINGER_MS);
    client_linger(c);
}
void gh_client_close(gh_client_t *c) { client_close(c); }

void gh_client_abort(gh_client_t *c)
{
    if (c->req && c->state == C_ACTIVE) {
        client_gone(c->req);
        return;
    }
    client_close(c);
}

gh_client_t *gh_client_new_stream(gh_client_t *parent, struct gh_h2stream *s)
{
    gh_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->io.fd = -1;
    c->w = parent->w;
    c->listener = parent->listener;
    c->timer.cb = client_timeout;
    c->resume.cb = client_resume;
    c->state = C_IDLE;
    c->readable = c->writable = 1;
    c->h2s = s;
    c->parent = parent;
    c->peer = parent->peer;
    return c;
}

static void client_cb(gh_io_t *io, uint32_t ev)
{
    gh_client_t *c = (gh_client_t *)io;
    if (io->fd < 0)
        return;
    if (c->state == C_TLS && !(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && SSL_in_before(c->ssl))
        return; /* the writable event that follows accept: no ClientHello to peek at yet */
    if (ev & EPOLLIN)
        c->readable = 1;
    if (ev & EPOLLOUT)
        c->writable = 1;
    if (c->ssl && (ev & (EPOLLIN | EPOLLOUT)))
        c->readable = c->writable = 1; /* a TLS read may wait on the socket's write side, and the other way round */
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        c->rdhup = 1;
        c->readable = 1;
    }
    if ((ev & (EPOLLHUP | EPOLLERR)) && c->state != C_ACTIVE) {
        client_close(c);
        return;
    }
    client_run(c);
}

static void client_resume(gh_task_t *t)
{
    gh_client_t *c = (gh_client_t *)((char *)t - offsetof(gh_client_t, resume));
    if (c->io.fd >= 0 || c->h2s || c->bg)
        client_run(c);
}

void gh_session_upstream_event(gh_upconn_t *u)
{
    gh_req_t *r = u->req;
    if (r && r->c->state == C_ACTIVE)
        client_run(r->c);
}

static void client_timeout(gh_timer_t *t)
{
    gh_client_t *c = (gh_client_t *)((char *)t - offsetof(gh_client_t, timer));
    if (c->state == C_H2) {
        gh_h2_timeout(c);
        return;
    }
    if (c->state == C_HEAD && gh_buf_len(&c->in)) {
        /* a head that did not arrive in time: say so, then close */
        gh_req_t *r = request_begin(c);
        if (r) {
            new_request_id(r);
            respond_error(r, 408, "request head timed out");
            c->close_after = 1;
            c->writable = 1;
            client_run(c);
            return;
        }
    }
    client_close(c);
}

void gh_session_accept(gh_worker_t *w, const gh_conf_listener_t *l, int fd, const struct sockaddr *peer,
                       socklen_t peerlen)
{
    gh_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->io.fd = fd;
    c->io.cb = client_cb;
    c->w = w;
    c->listener = l;
    c->timer.cb = client_timeout;
    c->resume.cb = client_resume;
    c->state = C_IDLE;
    memcpy(&c->peer, peer, GH_MIN((size_t)peerlen, sizeof c->peer));
    if (conf_of(w)->protect.per_ip_conns) {
        int rc = gh_protect_conn_open(conf_of(w), &c->peer.sa);
        if (rc < 0) { /* over the per-address cap: closed at once (counted) */
            GH_COUNT(w->stats->conns_rejected, 1);
            close(fd);
            free(c);
            return;
        }
        c->conn_counted = rc == 1;
    }
    if (l->tls.enabled) {
        /* the certificates of the configuration in force (a reload may have changed them) */
        const gh_conf_t *cur = conf_of(w);
        gh_tls_server_t *ts = NULL;
        for (uint32_t i = 0; i < cur->nlisteners && !ts; i++)
            if (!strcmp(cur->listeners[i].name, l->name))
                ts = cur->listeners[i].tls_server;
        if (!ts || !(c->ssl = gh_tls_server_ssl(ts, fd))) {
            if (c->conn_counted)
                gh_protect_conn_close(&c->peer.sa);
            close(fd);
            free(c);
            return;
        }
        SSL_set_app_data(c->ssl, c);
        c->state = C_TLS;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (gh_loop_add(&w->loop, &c->io) < 0) {
        if (c->conn_counted)
            gh_protect_conn_close(&c->peer.sa);
        SSL_free(c->ssl);
        close(fd);
        free(c);
        return;
    }
    c->next = w->conns;
    if (c->next)
        c->next->prev = c;
    w->conns = c;
    w->nconns++;
    GH_COUNT(w->stats->conns_active, 1);
    GH_COUNT(w->stats->conns_accepted, 1);
    gh_timer_set(&w->loop, &c->timer, conf_of(w)->timeouts.client_header);
}

void gh_session_rotate(gh_worker_t *w)
{
    for (gh_client_t *c = w->conns, *n; c; c = n) {
        n = c->next;
        if (c->state == C_H2)
            gh_h2_drain(c);
    }
}

void gh_session_drain(gh_worker_t *w)
{
    gh_session_streams_event(w, GH_STREAM_DRAIN); /* streamed answers end: their clients reconnect elsewhere */
    for (gh_client_t *c = w->conns, *n; c; c = n) {
        n = c->next;
        if (c->state == C_IDLE && !gh_buf_len(&c->in))
            client_close(c);
        else if (c->state == C_ACTIVE)
            c->close_after = 1;
        else if (c->state == C_H2)
            gh_h2_drain(c);
    }
}
