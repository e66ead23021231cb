/* conn.h: the client connection, shared by session.c (HTTP/1.1, TLS) and h2.c
 * (HTTP/2). Private to src/proxy.
 *
 * An HTTP/2 connection is a gh_client_t in state C_H2 that owns an nghttp2
 * session; each of its streams is served by a *stream client*: a gh_client_t with
 * h2s set, no socket and no place in the worker's connection list, that runs the
 * same HTTP/1.1 request machinery as a TCP client. Its reads come from the
 * stream's request (a head made from the HTTP/2 headers, then the DATA frames), its
 * writes go to the stream's response (the head becomes HEADERS, the body DATA),
 * through client_recv/client_writev in session.c. So routing, proxying, retries,
 * timeouts and accounting are written once. */
#ifndef GH_PROXY_CONN_H
#define GH_PROXY_CONN_H

#include <netinet/in.h>
#include <openssl/ssl.h>

#include "proxy/session.h"

enum { C_IDLE, C_HEAD, C_ACTIVE, C_LINGER, C_TLS, C_H2 };

struct gh_h2conn;
struct gh_h2stream;

typedef struct gh_client {
    gh_io_t io;
    gh_worker_t *w;
    struct gh_client *next, *prev;
    gh_timer_t timer;
    gh_task_t resume; /* run again next turn: yielded after a burst of work */
    gh_buf_t in;
    gh_req_t *req;
    const gh_conf_listener_t *listener;
    SSL *ssl; /* TLS listeners: the connection's TLS state; NULL over plain TCP */
    uint8_t state, readable, writable, rdhup, close_after;
    uint8_t conn_counted; /* counted against protection's per-address connection cap */
    uint8_t bg;           /* a background client (1, or 2 for https): the cache's refresh (no socket, answers discarded) */
    uint32_t nrequests;   /* requests started on this connection */
    char ja4[37]; /* TLS client fingerprint, "" when none */
    struct gh_h2conn *h2;     /* C_H2: the HTTP/2 connection */
    struct gh_h2stream *h2s;  /* a stream client: its stream (io.fd is -1) */
    struct gh_client *parent; /* a stream client: the connection it belongs to */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
} gh_client_t;

/* The TLS of the connection a client (or stream client) belongs to, or NULL. */
static inline SSL *gh_client_tls(const gh_client_t *c) { return c->parent ? c->parent->ssl : c->ssl; }

/* session.c, for h2.c */
void gh_client_run(gh_client_t *c);
void gh_client_close(gh_client_t *c);
/* Shut the write side and read away the rest for a moment, then close. */
void gh_client_linger(gh_client_t *c);
/* A new stream client of parent for stream s (state C_IDLE, readable, writable). */
gh_client_t *gh_client_new_stream(gh_client_t *parent, struct gh_h2stream *s);
/* The peer gave up on c's request (a reset stream): account it as 499 and close c. */
void gh_client_abort(gh_client_t *c);
ssize_t gh_client_sock_recv(gh_client_t *c, void *buf, size_t n);
ssize_t gh_client_sock_send(gh_client_t *c, const void *buf, size_t n);

/* h2.c, for session.c */
/* Switch c (TLS with ALPN h2, or h2c prior knowledge) to HTTP/2; the first n bytes
 * already read (at least the client preface, on h2c) are in c->in. 0, or a negative
 * GH_E* (c must then be closed). */
int gh_h2_start(gh_client_t *c);
/* Drive an HTTP/2 connection: read frames, run its streams, write frames. */
void gh_h2_run(gh_client_t *c);
/* The connection is closing: free the session and every stream's state. */
void gh_h2_free(gh_client_t *c);
/* Draining: GOAWAY, then close once the streams in flight have ended. */
void gh_h2_drain(gh_client_t *c);
/* A stream client's I/O (read: its request bytes; write: its response bytes), with
 * read(2)/writev(2) semantics (-1 and errno EAGAIN when there is nothing / no room). */
ssize_t gh_h2_stream_recv(gh_client_t *sc, void *buf, size_t n);
ssize_t gh_h2_stream_writev(gh_client_t *sc, const struct iovec *iov, int n);
/* A stream client is being closed (its request is over, or was cut). */
void gh_h2_stream_closed(gh_client_t *sc);
/* The connection's timer fired (idle, preface, or a stalled peer). */
void gh_h2_timeout(gh_client_t *c);
/* A stream client's response waited on a zero flow-control window too long
 * (timeouts.client_send): the peer is stalling; the connection is closed. */
void gh_h2_stream_stalled(gh_client_t *sc);

/* The client preface, as h2c prior knowledge starts. */
#define GH_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define GH_H2_PREFACE_LEN 24

#endif
