/* session.h: a client connection and the requests on it, proxied or answered here.
 *
 * The request path of the design: read and parse the head (strict HTTP/1.1), pick
 * the site and route, then either answer directly (route `respond`, errors, the
 * admin and demo listeners) or forward to an upstream: build the upstream head
 * (hop-by-hop headers removed, X-Forwarded-*, Forwarded, Via, X-Request-Id), stream
 * the request body with backpressure, parse the response, stream it back, and
 * account for it (metrics, access log). Every wait has a timer.
 *
 * Memory: an idle connection holds only its struct; buffers come from the worker
 * pool while bytes are in flight.
 *
 * Called by worker.c (accept, drain) and handlers (admin.c, demo.c). */
#ifndef GH_PROXY_SESSION_H
#define GH_PROXY_SESSION_H

#include <netinet/in.h>

#include "proxy/upstream.h"
#include "proxy/worker.h"

typedef struct gh_req gh_req_t;

/* Take ownership of an accepted, non-blocking client socket. */
void gh_session_accept(gh_worker_t *w, const gh_conf_listener_t *l, int fd,
                       const struct sockaddr *peer, socklen_t peerlen);
/* The TLS client-hello observer of proxy listeners (gh_tls_server_conf_t.on_hello):
 * computes the connection's JA4 fingerprint. */
struct ssl_st;
void gh_session_tls_hello(struct ssl_st *ssl, void *arg);
/* An operator's reload: HTTP/2 connections get a graceful GOAWAY (their streams
 * finish; clients reconnect and meet the new configuration and certificates). */
void gh_session_rotate(gh_worker_t *w);
/* Requests of w waiting for another request's cache fetch: those whose fetch is done go on. */
void gh_session_cache_wake(gh_worker_t *w);
/* Draining: close idle connections now; active ones close after their response. */
void gh_session_drain(gh_worker_t *w);

/* For handlers that answer directly: status, optional Content-Type, body (copied),
 * and extra header lines (each "Name: value\r\n", may be NULL). */
void gh_session_respond(gh_req_t *r, int status, const char *ctype, const char *body, size_t len,
                        const char *extra_headers);

/* An RFC 9457 problem+json answer (the admin listener's errors): type is the last part of
 * https://gatehouse.dev/problems/<type> (NULL: the one for status: bad-request, unauthorized,
 * forbidden, not-found, method-not-allowed, payload-too-large, rate-limited, unavailable,
 * internal); detail is escaped. extra_headers as above. */
void gh_session_problem(gh_req_t *r, int status, const char *type, const char *detail, const char *extra_headers);

/* What a handler may read of the request it answers. */
typedef struct {
    const gh_h1_request_t *msg;
    gh_worker_t *w;
    const char *peer; /* client address as text */
    const char *body; /* the whole request body (de-chunked), at most GH_HANDLER_BODY_MAX bytes */
    size_t body_len;
} gh_req_view_t;

/* Largest request body a handler is given (a larger one is answered 413). */
#define GH_HANDLER_BODY_MAX (1u << 20)

typedef void (*gh_handler_fn)(gh_req_t *r, const gh_req_view_t *v);

/* Streamed answers (server streaming: the gRPC EventStream). Called from a handler instead
 * of gh_session_respond: a 200 head with ctype and extra header lines, then a chunked body
 * that stays open (over HTTP/2: DATA frames, the trailers a last HEADERS) until
 * gh_session_stream_end. fn is called on the worker's thread with GH_STREAM_TICK every
 * tick_ms (0: 15 s) of quiet, GH_STREAM_CONF after the worker switched to a new
 * configuration, and GH_STREAM_DRAIN when the process drains (fn must end the stream
 * then). A client that resets the stream, goes away, or leaves 1 MiB unread ends it
 * silently. ctx (malloc'd, may be NULL) is freed with free() when the stream ends. fn NULL:
 * an answer sent at once (start, send, end in one go: a unary gRPC call). */
enum { GH_STREAM_TICK = 1, GH_STREAM_CONF, GH_STREAM_DRAIN };
typedef void (*gh_stream_fn)(gh_req_t *r, int event);
int gh_session_stream_start(gh_req_t *r, const char *ctype, const char *extra, gh_stream_fn fn, void *ctx,
                            uint32_t tick_ms);
/* One body piece (copied). -1 when the stream is over or the client is too far behind. */
int gh_session_stream_send(gh_req_t *r, const void *p, size_t n);
/* The last piece: trailer lines ("Name: value\r\n"..., may be NULL). */
void gh_session_stream_end(gh_req_t *r, const char *trailers);
void *gh_session_stream_ctx(gh_req_t *r);
/* The configuration the stream runs on; _regen moves it to the worker's current one. */
const gh_conf_t *gh_session_stream_conf(gh_req_t *r);
void gh_session_stream_regen(gh_req_t *r);
/* Call every streamed answer's fn with event (worker.c: GH_STREAM_CONF). */
void gh_session_streams_event(gh_worker_t *w, int event);

/* Deferred answers: a handler that must wait for another thread (the experiments pipeline's
 * commit) calls gh_session_defer and returns; the request waits without holding its worker.
 * Later, on the same worker's thread (gh_worker_post), gh_session_answer_deferred answers it;
 * -1 when it is gone (client closed) or timed out (after timeout_ms it was answered 503). */
uint64_t gh_session_defer(gh_req_t *r, uint32_t timeout_ms);
int gh_session_answer_deferred(uint64_t token, int status, const char *ctype, const char *body, size_t len,
                               const char *extra);

/* Register the handler answering every request on listeners of a role (admin, demo). */
void gh_session_set_handler(int role, gh_handler_fn fn);

#endif
