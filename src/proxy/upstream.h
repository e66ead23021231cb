/* upstream.h: connections to backends and the per-worker keep-alive pools.
 *
 * A worker keeps idle connections per backend address (not per configuration, so
 * they survive a reload) up to the pool's keepalive count, each for at most
 * keepalive_timeout. An idle connection that the backend closes is noticed by its
 * event and dropped. A request takes a pooled connection or opens a new
 * non-blocking one; it gives it back only when both messages ended cleanly. TLS
 * connections (session.c does the handshake) are pooled apart, by their settings'
 * tag; an idle one consumes what the backend sends unasked after a handshake (TLS
 * 1.3 session tickets) instead of taking it for a close.
 *
 * Called by session.c. */
#ifndef GH_PROXY_UPSTREAM_H
#define GH_PROXY_UPSTREAM_H

#include "proxy/worker.h"

struct gh_req;

typedef struct gh_uppool {
    struct gh_uppool *next; /* hash chain */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t tls_tag; /* 0: plain TCP; else the TLS settings' tag (config.h): pools never mix them */
    struct gh_upconn *idle; /* most recently used first */
    uint32_t nidle;
} gh_uppool_t;

typedef struct gh_upconn {
    gh_io_t io;
    gh_worker_t *w;
    gh_uppool_t *pool;
    struct gh_upconn *next, *prev; /* pool idle list */
    gh_timer_t timer;              /* idle expiry while pooled */
    struct gh_req *req;            /* owner while in use */
    uint8_t readable, writable, hup, connected;
    uint8_t tls_done;    /* TLS: handshake complete */
    uint8_t read_wants_write; /* TLS: a read waits for the socket to be writable */
    struct ssl_st *ssl;  /* TLS to the backend, or NULL */
    struct gh_h2upst *h2st; /* an HTTP/2 stream (h2up.c): no socket of its own (io.fd -1) */
    uint32_t nreq; /* requests sent on it */
    uint32_t *live; /* the pool's open-connection count (circuit breaker), or NULL */
} gh_upconn_t;

/* A connection to addr: a pooled one (*reused = 1) or, if allow_new, a new one being
 * connected (connected = 0 until writable). NULL with *err = -errno when the connect
 * fails at once, or GH_ELIMIT when a new one is needed but not allowed. */
gh_upconn_t *gh_upstream_get(gh_worker_t *w, const struct sockaddr *addr, socklen_t len, uint64_t tls_tag,
                             int allow_new, int *reused, int *err);
/* Put u back in its pool, or close it when the pool is full or keepalive is 0. */
void gh_upstream_release(gh_upconn_t *u, uint32_t keepalive, uint32_t idle_ms);
void gh_upstream_close(gh_upconn_t *u);
/* Close every pooled connection of w (at exit). */
void gh_upstream_close_all(gh_worker_t *w);

/* HTTP/2 to backends (h2up.c). A request's upstream "connection" is a stream on a
 * shared HTTP/2 connection to the backend (one per worker and backend while it has
 * room for more streams), presented with the same interface: the request writes an
 * HTTP/1.1 request and reads an HTTP/1.1 response (trailers as chunked trailers),
 * which h2up.c turns into frames and back. */
struct gh_conf_upstream;
/* A stream to backend b of up: *ready = 1 when its connection is usable now, else it
 * is being connected (gh_h2up_ready says when). NULL with *err as gh_upstream_get. */
gh_upconn_t *gh_h2up_get(gh_worker_t *w, const struct gh_conf_upstream *up, const gh_conf_backend_t *b,
                         uint32_t connect_ms, int allow_new, int *ready, int *err);
/* 1 when u's connection is ready, 0 while connecting, -1 when it failed. */
int gh_h2up_ready(gh_upconn_t *u);
/* The request's I/O on its stream, with read(2)/writev(2) semantics. */
ssize_t gh_h2up_recv(gh_upconn_t *u, void *buf, size_t n);
ssize_t gh_h2up_writev(gh_upconn_t *u, const struct iovec *iov, int n);
/* The request is done with u (a stream not ended is reset); u is freed. */
void gh_h2up_release(gh_upconn_t *u);
void gh_h2up_close_all(gh_worker_t *w);

#endif
