/* h2up.c: HTTP/2 to backends (nghttp2 client sessions), see upstream.h.
 *
 * Mirror of h2.c: the request machinery in session.c talks HTTP/1.1 to a
 * gh_upconn_t; for an upstream with `http2: true` that gh_upconn_t is a stream on
 * a shared HTTP/2 connection (gh_h2up_t, one per worker and backend while it has
 * room). The request head it writes (our own output: always valid) becomes
 * HEADERS (Host -> :authority, hop-by-hop fields dropped, "te: trailers" added so
 * gRPC servers answer with trailers), its body DATA; the response HEADERS become an
 * HTTP/1.1 head (chunked unless it has a content-length), DATA the body, and
 * trailers the chunked trailer section, which the client side turns back into
 * HTTP/2 trailers: gRPC passes through unchanged.
 *
 * Flow control: response DATA is acknowledged when the request reads it; request
 * DATA is queued at most OUT_HIGH bytes per stream (a short write past that). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "http/h1.h"
#include "proxy/h2util.h"
#include "proxy/upstream.h"
#include "tls/tls.h"

#define OUT_HIGH (64 * 1024)
#define OUT_LOW (16 * 1024)

void gh_session_upstream_event(gh_upconn_t *u); /* session.c */

enum { S_CONNECTING, S_HANDSHAKE, S_READY, S_DEAD };
enum { Q_HEAD, Q_BODY, Q_DONE };

typedef struct gh_h2upst {
    struct gh_h2upst *next, *ready_next;
    struct gh_h2up *sess;
    gh_upconn_t *u; /* the request's side, NULL once released */
    int32_t id;     /* 0 until the request head was submitted */
    /* request */
    gh_buf_t qhead, out;
    gh_h1_chunked_t qchunk;
    int qbody;
    uint64_t qleft;
    uint8_t qstate, out_ended, deferred, head_req;
    /* response */
    gh_buf_t rhdrs; /* response fields as HTTP/1.1 lines, until the header block ends */
    gh_buf_t in;    /* HTTP/1.1 response bytes for the request */
    int status;
    uint64_t unconsumed;
    uint8_t has_cl, chunked, head_done, in_ended, closed, queued, trailers;
} gh_h2upst_t;

typedef struct gh_h2up {
    gh_io_t io; /* first: the io callback finds the session */
    struct gh_h2up *next;
    gh_worker_t *w;
    SSL *ssl;
    nghttp2_session *ng;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t tag;
    char name[80]; /* "addr:port", for logs */
    gh_h2upst_t *streams, *ready;
    uint32_t nstreams;
    gh_buf_t outbuf;
    gh_timer_t timer; /* connect + handshake; idle */
    gh_task_t task;   /* run on the next turn */
    uint8_t state, readable, writable, goaway;
    uint32_t idle_ms;
} gh_h2up_t;

static void sess_run(gh_h2up_t *h);
static void sess_fail(gh_h2up_t *h, const char *why);


static void st_ready(gh_h2upst_t *st)
{
    if (!st->queued && st->u) {
        st->queued = 1;
        st->ready_next = st->sess->ready;
        st->sess->ready = st;
    }
}

static void st_free(gh_h2up_t *h, gh_h2upst_t *st)
{
    for (gh_h2upst_t **p = &h->streams; *p; p = &(*p)->next)
        if (*p == st) {
            *p = st->next;
            h->nstreams--;
            break;
        }
    for (gh_h2upst_t **p = &h->ready; *p; p = &(*p)->ready_next)
        if (*p == st) {
            *p = st->ready_next;
            break;
        }
    gh_buf_put(&h->w->bufs, &st->qhead);
    gh_buf_put(&h->w->bufs, &st->out);
    gh_buf_put(&h->w->bufs, &st->rhdrs);
    gh_buf_put(&h->w->bufs, &st->in);
    free(st);
}

static gh_h2upst_t *st_of(gh_h2up_t *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    gh_h2up_t *h = ud;
    gh_h2upst_t *st = st_of(h, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (nl == 7 && !memcmp(name, ":status", 7)) {
        int s = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            s = s * 10 + (value[i] - '0');
        st->status = s;
        return 0;
    }
    if (nl && name[0] == ':')
        return 0;
    if (st->head_done && !st->chunked) /* trailers without a chunked body to carry them */
        return 0;
    if (!st->head_done && nl == 14 && !memcmp(name, "content-length", 14))
        st->has_cl = 1;
    if (st->head_done)
        st->trailers = 1;
    gh_worker_t *w = h->w;
    int rc = gh_h2_append(&w->bufs, &st->rhdrs, name, nl) | GH_H2_APPEND_LIT(&w->bufs, &st->rhdrs, ": ") | gh_h2_append(&w->bufs, &st->rhdrs, value, vl) |
             GH_H2_APPEND_LIT(&w->bufs, &st->rhdrs, "\r\n");
    (void)ng;
    (void)flags;
    return rc < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gh_h2up_t *h = ud;
    gh_worker_t *w = h->w;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway = 1; /* no new streams on it */
        return 0;
    }
    gh_h2upst_t *st = f->hd.stream_id ? st_of(h, f->hd.stream_id) : NULL;
    if (!st)
        return 0;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    int rc = 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->head_done) {
        if (st->status < 200) { /* interim: dropped, its fields too */
            gh_buf_put(&w->bufs, &st->rhdrs);
            return 0;
        }
        char line[48];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %d \r\n", st->status); /* HTTP/2 has no reason phrase */
        rc |= gh_h2_append(&w->bufs, &st->in, line, (size_t)n);
        if (gh_buf_len(&st->rhdrs))
            rc |= gh_h2_append(&w->bufs, &st->in, st->rhdrs.base + st->rhdrs.rd, gh_buf_len(&st->rhdrs));
        gh_buf_put(&w->bufs, &st->rhdrs);
        if (!st->has_cl && !st->head_req) {
            if (end)
                rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "Content-Length: 0\r\n");
            else {
                st->chunked = 1;
                rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "Transfer-Encoding: chunked\r\n");
            }
        }
        rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "\r\n");
        st->head_done = 1;
    } else if (f->hd.type == NGHTTP2_HEADERS && end && st->chunked) { /* trailers */
        rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "0\r\n");
        if (gh_buf_len(&st->rhdrs))
            rc |= gh_h2_append(&w->bufs, &st->in, st->rhdrs.base + st->rhdrs.rd, gh_buf_len(&st->rhdrs));
        gh_buf_put(&w->bufs, &st->rhdrs);
        rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "\r\n");
        st->in_ended = 1;
    } else if (f->hd.type == NGHTTP2_DATA && end && st->chunked && !st->in_ended) {
        rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "0\r\n\r\n");
        st->in_ended = 1;
    }
    if (end)
        st->in_ended = 1;
    if (rc < 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
    if (st->u) {
        st->u->readable = 1;
        st_ready(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    gh_h2up_t *h = ud;
    gh_h2upst_t *st = st_of(h, id);
    if (!st || !st->u) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    gh_worker_t *w = h->w;
    int rc = 0;
    if (st->chunked && len) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        rc |= gh_h2_append(&w->bufs, &st->in, size, (size_t)n);
    }
    rc |= gh_h2_append(&w->bufs, &st->in, data, len);
    if (st->chunked && len)
        rc |= GH_H2_APPEND_LIT(&w->bufs, &st->in, "\r\n");
    if (rc < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->unconsumed += len;
    st->u->readable = 1;
    st_ready(st);
    (void)flags;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
    gh_h2up_t *h = ud;
    gh_h2upst_t *st = st_of(h, id);
    if (!st)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    st->closed = 1;
    if (st->u) { /* the request learns it on its next read */
        if (!st->in_ended)
            st->u->hup = 1;
        st->u->readable = 1;
        st_ready(st);
        return 0;
    }
    if (!st->queued)
        st_free(h, st);
    (void)code;
    return 0;
}

/* Request DATA from the stream's queue. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    gh_h2up_t *h = ud;
    gh_h2upst_t *st = src->ptr;
    size_t n = gh_h2_dequeue(&h->w->bufs, &st->out, buf, len);
    if (n) {
        if (st->u && !st->u->writable && gh_buf_len(&st->out) < OUT_LOW) {
            st->u->writable = 1;
            st_ready(st);
        }
    }
    if (st->out_ended && !gh_buf_len(&st->out)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (!n) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    (void)ng;
    (void)id;
    return (ssize_t)n;
}

/* ---- the request's side ---- */

/* The request head is complete in st->qhead: HEADERS. 0 more needed, >0 bytes used, -1. */
static long submit_request(gh_h2upst_t *st)
{
    gh_h2up_t *h = st->sess;
    gh_worker_t *w = h->w;
    gh_h1_limits_t lim = {1 << 20, 1 << 20, GH_MAX_HEADERS};
    gh_h1_request_t m;
    int status;
    int rc = gh_h1_parse_request(st->qhead.base + st->qhead.rd, gh_buf_len(&st->qhead), &lim, &m, w->hdrs,
                                 GH_MAX_HEADERS, &status);
    if (rc == GH_EAGAIN)
        return 0;
    if (rc < 0)
        return -1;
    nghttp2_nv *nv = malloc(((size_t)m.nheaders + 5) * sizeof(*nv));
    char *names = malloc(m.head_len + 1);
    if (!nv || !names) {
        free(nv);
        free(names);
        return -1;
    }
    const char *scheme = h->ssl ? "https" : "http";
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)m.method.p, 7, m.method.n, NGHTTP2_NV_FLAG_NONE};
    nv[n++] = (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)scheme, 7, strlen(scheme), NGHTTP2_NV_FLAG_NONE};
    nv[n++] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)m.host.p, 10, m.host.n, NGHTTP2_NV_FLAG_NONE};
    nv[n++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)m.target.p, 5, m.target.n, NGHTTP2_NV_FLAG_NONE};
    nv[n++] = (nghttp2_nv){(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE};
    n += gh_h2_fields(m.headers, m.nheaders, 1, nv, n, names);
    st->qbody = m.body;
    st->qleft = m.content_length;
    st->head_req = m.method_id == GH_M_HEAD;
    int none = m.body == GH_H1_BODY_NONE || (m.body == GH_H1_BODY_LENGTH && !m.content_length);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(h->ng, NULL, nv, n, none ? NULL : &prd, st);
    free(nv);
    free(names);
    if (id < 0)
        return -1;
    st->id = id;
    st->qstate = none ? Q_DONE : Q_BODY;
    if (none)
        st->out_ended = 1;
    return rc;
}

/* Request body bytes, framed as the head said: queued for DATA (request trailers of a
 * chunked body are dropped). */
static ssize_t take_body(gh_h2upst_t *st, const char *p, size_t n)
{
    int done = 0;
    ssize_t k = gh_h2_queue_body(&st->sess->w->bufs, &st->out, OUT_HIGH, st->qbody, &st->qleft, &st->qchunk, p, n,
                                 &done);
    if (k >= 0 && done) {
        st->qstate = Q_DONE;
        st->out_ended = 1;
    }
    return k;
}

ssize_t gh_h2up_writev(gh_upconn_t *u, const struct iovec *iov, int n)
{
    gh_h2upst_t *st = u->h2st;
    if (!st || st->closed || st->sess->state != S_READY) {
        errno = EPIPE;
        return -1;
    }
    gh_h2up_t *h = st->sess;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len, off = 0;
        while (off < len) {
            if (st->qstate == Q_HEAD) {
                size_t before = gh_buf_len(&st->qhead);
                if (gh_h2_append(&h->w->bufs, &st->qhead, p + off, len - off) < 0)
                    goto fail;
                long used = submit_request(st);
                if (used < 0)
                    goto fail;
                if (used == 0) {
                    total += len - off;
                    off = len;
                    break;
                }
                size_t from_this = (size_t)used - before;
                gh_buf_put(&h->w->bufs, &st->qhead);
                total += from_this;
                off += from_this;
                continue;
            }
            if (st->qstate == Q_DONE) {
                total += len - off;
                off = len;
                break;
            }
            ssize_t k = take_body(st, p + off, len - off);
            if (k < 0)
                goto fail;
            if (k == 0)
                goto full;
            total += (size_t)k;
            off += (size_t)k;
        }
    }
    goto out;
full:
    u->writable = 0;
out:
    if (st->deferred && st->id && (gh_buf_len(&st->out) || st->out_ended)) {
        st->deferred = 0;
        nghttp2_session_resume_data(h->ng, st->id);
    }
    gh_task_post(&h->w->loop, &h->task);
    if (!total) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)total;
fail:
    errno = EPROTO;
    return -1;
}

ssize_t gh_h2up_recv(gh_upconn_t *u, void *buf, size_t n)
{
    gh_h2upst_t *st = u->h2st;
    if (!st)
        return 0;
    size_t k = gh_buf_len(&st->in);
    if (!k) {
        if (st->closed || st->sess->state == S_DEAD)
            return 0; /* ended (a clean end is framed: the request knows it is complete) */
        u->readable = 0;
        errno = EAGAIN;
        return -1;
    }
    if (k > n)
        k = n;
    memcpy(buf, st->in.base + st->in.rd, k);
    st->in.rd += (uint32_t)k;
    if (st->in.rd == st->in.wr)
        gh_buf_put(&st->sess->w->bufs, &st->in);
    if (st->unconsumed && !st->closed && st->sess->state == S_READY) {
        uint64_t ack = k < st->unconsumed ? k : st->unconsumed;
        if (!gh_buf_len(&st->in))
            ack = st->unconsumed;
        st->unconsumed -= ack;
        nghttp2_session_consume(st->sess->ng, st->id, (size_t)ack);
        gh_task_post(&st->sess->w->loop, &st->sess->task);
    }
    return (ssize_t)k;
}

int gh_h2up_ready(gh_upconn_t *u)
{
    gh_h2upst_t *st = u->h2st;
    if (!st || st->sess->state == S_DEAD)
        return -1;
    return st->sess->state == S_READY;
}

void gh_h2up_release(gh_upconn_t *u)
{
    gh_h2upst_t *st = u->h2st;
    gh_worker_t *w = u->w;
    if (u->live) {
        __atomic_sub_fetch(u->live, 1, __ATOMIC_RELAXED);
        u->live = NULL;
    }
    u->h2st = NULL;
    u->req = NULL;
    gh_loop_free_later(&w->loop, u);
    if (!st)
        return;
    gh_h2up_t *h = st->sess;
    st->u = NULL;
    if (st->id && !st->closed && h->state == S_READY) {
        if (!st->in_ended || !st->out_ended) /* cut before its end: cancel it */
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        if (st->unconsumed)
            nghttp2_session_consume(h->ng, st->id, (size_t)st->unconsumed);
        st->unconsumed = 0;
        gh_task_post(&w->loop, &h->task);
    }
    if ((st->closed || !st->id || h->state != S_READY) && !st->queued)
        st_free(h, st);
}

/* ---- the connection ---- */

static void sess_free(gh_h2up_t *h)
{
    gh_worker_t *w = h->w;
    for (gh_h2up_t **p = &w->h2ups; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    gh_timer_stop(&w->loop, &h->timer);
    gh_task_cancel(&h->task);
    while (h->streams) {
        gh_h2upst_t *st = h->streams;
        if (st->u) { /* a request still on it: it sees the end */
            st->u->h2st = NULL;
            st->u->hup = 1;
        }
        if (h->ng && st->id)
            nghttp2_session_set_stream_user_data(h->ng, st->id, NULL);
        st_free(h, st);
    }
    if (h->ng)
        nghttp2_session_del(h->ng);
    if (h->ssl)
        SSL_free(h->ssl);
    if (h->io.fd >= 0) {
        gh_loop_del(&w->loop, &h->io);
        close(h->io.fd);
    }
    gh_buf_put(&w->bufs, &h->outbuf);
    gh_loop_free_later(&w->loop, h);
}

/* The connection failed: the requests on it see a failed connect (or a reset). */
static void sess_fail(gh_h2up_t *h, const char *why)
{
    if (h->state == S_DEAD)
        return;
    static __thread uint64_t last;
    uint64_t now = gh_loop_now(&h->w->loop);
    if (why && (!last || now - last >= 1000)) {
        last = now;
        gh_log(GH_LOG_WARN, "HTTP/2 connection to %s failed: %s", h->name, why);
    }
    h->state = S_DEAD;
    for (gh_h2upst_t *st = h->streams; st; st = st->next)
        if (st->u) {
            st->u->hup = 1;
            st->u->readable = st->u->writable = 1;
            st_ready(st);
        }
    gh_task_post(&h->w->loop, &h->task);
}

static int sess_start(gh_h2up_t *h)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    int rv = nghttp2_session_client_new2(&h->ng, cb, h, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, 2) != 0)
        return -1;
    nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, 4 << 20);
    h->state = S_READY;
    gh_timer_stop(&h->w->loop, &h->timer);
    /* the requests that waited for it */
    for (gh_h2upst_t *st = h->streams; st; st = st->next)
        if (st->u) {
            st->u->writable = 1;
            st_ready(st);
        }
    return 0;
}

static ssize_t sock_send(void *arg, const void *p, size_t n)
{
    gh_h2up_t *h = arg;
    if (!h->ssl)
        return send(h->io.fd, p, n, MSG_NOSIGNAL);
    ssize_t k = gh_tls_write(h->ssl, p, n);
    if (k < 0)
        errno = k == GH_EAGAIN ? EAGAIN : EIO;
    return k < 0 ? -1 : k;
}

static int flush(gh_h2up_t *h)
{
    uint8_t wrote = 0;
    return gh_h2_flush(h->ng, &h->w->bufs, &h->outbuf, sock_send, h, &h->writable, &wrote);
}

static void sess_run(gh_h2up_t *h)
{
    gh_worker_t *w = h->w;
    if (h->state == S_CONNECTING) {
        if (!h->writable)
            return;
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(h->io.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            sess_fail(h, err ? strerror(err) : "connect failed");
            goto events;
        }
        h->state = h->ssl ? S_HANDSHAKE : S_CONNECTING;
        if (!h->ssl && sess_start(h) < 0) {
            sess_fail(h, "out of memory");
            goto events;
        }
    }
    if (h->state == S_HANDSHAKE) {
        int rc = gh_tls_handshake(h->ssl);
        if (rc == GH_EAGAIN) {
            if (gh_tls_want(h->ssl) == GH_TLS_WANT_WRITE)
                h->writable = 0;
            else
                h->readable = 0;
            return;
        }
        char why[200];
        const char *alpn = rc == 0 ? gh_tls_alpn(h->ssl) : NULL;
        if (rc < 0) {
            sess_fail(h, gh_tls_strerror(h->ssl, why, sizeof why));
            goto events;
        }
        if (!alpn || strcmp(alpn, "h2")) {
            sess_fail(h, "the backend did not negotiate h2 (ALPN)");
            goto events;
        }
        if (sess_start(h) < 0) {
            sess_fail(h, "out of memory");
            goto events;
        }
    }
    if (h->state == S_READY) {
        char buf[16384];
        while (h->readable) {
            ssize_t n = h->ssl ? gh_tls_read(h->ssl, buf, sizeof buf) : recv(h->io.fd, buf, sizeof buf, 0);
            if (n == 0 || n == GH_ECLOSED) {
                sess_fail(h, nghttp2_session_want_read(h->ng) && h->nstreams ? "closed by the backend" : NULL);
                break;
            }
            if (n < 0) {
                if (h->ssl ? n == GH_EAGAIN : (errno == EAGAIN || errno == EINTR)) {
                    h->readable = 0;
                    break;
                }
                sess_fail(h, "read failed");
                break;
            }
            if ((size_t)n < sizeof buf)
                h->readable = 0;
            if (nghttp2_session_mem_recv(h->ng, (const uint8_t *)buf, (size_t)n) < 0) {
                sess_fail(h, "protocol error from the backend");
                break;
            }
        }
        if (h->state == S_READY && flush(h) < 0)
            sess_fail(h, "write failed");
    }
events:
    /* wake the requests with news, outside nghttp2's callbacks */
    for (int rounds = 0; rounds < 8 && h->ready; rounds++) {
        gh_h2upst_t *list = h->ready;
        h->ready = NULL;
        while (list) {
            gh_h2upst_t *st = list;
            list = st->ready_next;
            st->queued = 0;
            if (st->u)
                gh_session_upstream_event(st->u);
            else if (st->closed || h->state != S_READY)
                st_free(h, st);
        }
        if (h->state == S_READY && flush(h) < 0)
            sess_fail(h, "write failed");
    }
    if (h->state == S_DEAD) {
        int busy = 0;
        for (gh_h2upst_t *st = h->streams; st; st = st->next)
            busy |= st->u != NULL;
        if (!busy)
            sess_free(h);
        return;
    }
    if (h->state == S_READY) {
        if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
            sess_fail(h, NULL);
            gh_task_post(&w->loop, &h->task);
        } else if (!h->nstreams && !gh_timer_armed(&h->timer)) {
            gh_timer_set(&w->loop, &h->timer, h->idle_ms); /* idle: closed after keepalive_timeout */
        } else if (h->nstreams) {
            gh_timer_stop(&w->loop, &h->timer);
        }
    }
}

static void sess_io(gh_io_t *io, uint32_t ev)
{
    gh_h2up_t *h = (gh_h2up_t *)io;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        h->readable = 1;
    if (ev & EPOLLOUT)
        h->writable = 1;
    if (h->ssl && (ev & (EPOLLIN | EPOLLOUT)))
        h->readable = h->writable = 1; /* TLS reads may wait on writes and the other way round */
    sess_run(h);
}

static void sess_task(gh_task_t *t)
{
    gh_h2up_t *h = (gh_h2up_t *)((char *)t - offsetof(gh_h2up_t, task));
    h->writable = 1;
    sess_run(h);
}

static void sess_timer(gh_timer_t *t)
{
    gh_h2up_t *h = (gh_h2up_t *)((char *)t - offsetof(gh_h2up_t, timer));
    if (h->state == S_READY && !h->nstreams) { /* idle */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        h->writable = 1;
        flush(h);
        h->state = S_DEAD;
        sess_free(h);
        return;
    }
    if (h->state != S_READY)
        sess_fail(h, "connect timed out");
    sess_run(h);
}

static gh_h2up_t *sess_new(gh_worker_t *w, const gh_conf_upstream_t *up, const gh_conf_backend_t *b,
                           uint32_t connect_ms, int *err)
{
    int fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)&b->addr, b->addrlen) < 0 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    gh_h2up_t *h = calloc(1, sizeof(*h));
    if (!h) {
        close(fd);
        *err = GH_ENOMEM;
        return NULL;
    }
    h->io.fd = fd;
    h->io.cb = sess_io;
    h->w = w;
    memcpy(&h->addr, &b->addr, b->addrlen);
    h->addrlen = b->addrlen;
    h->tag = up->tls.tag;
    h->idle_ms = up->keepalive_timeout ? up->keepalive_timeout : 60000;
    snprintf(h->name, sizeof h->name, "%s", b->name);
    h->timer.cb = sess_timer;
    h->task.cb = sess_task;
    if (up->tls_client && !(h->ssl = gh_tls_client_ssl(up->tls_client, fd, b->tls_name, b->name))) {
        close(fd);
        free(h);
        *err = GH_ENOMEM;
        return NULL;
    }
    if (gh_loop_add(&w->loop, &h->io) < 0) {
        *err = -errno;
        if (h->ssl)
            SSL_free(h->ssl);
        close(fd);
        free(h);
        return NULL;
    }
    gh_timer_set(&w->loop, &h->timer, connect_ms ? connect_ms : 5000);
    h->next = w->h2ups;
    w->h2ups = h;
    return h;
}

gh_upconn_t *gh_h2up_get(gh_worker_t *w, const gh_conf_upstream_t *up, const gh_conf_backend_t *b,
                         uint32_t connect_ms, int allow_new, int *ready, int *err)
{
    gh_h2up_t *h = w->h2ups;
    for (; h; h = h->next) {
        if (h->state == S_DEAD || h->goaway || h->tag != up->tls.tag || h->addrlen != b->addrlen ||
            memcmp(&h->addr, &b->addr, b->addrlen))
            continue;
        if (h->state == S_READY &&
            h->nstreams >= nghttp2_session_get_remote_settings(h->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS))
            continue;
        break;
    }
    if (!h) {
        if (!allow_new) {
            *err = GH_ELIMIT;
            return NULL;
        }
        if (!(h = sess_new(w, up, b, connect_ms, err)))
            return NULL;
    }
    gh_upconn_t *u = calloc(1, sizeof(*u));
    gh_h2upst_t *st = calloc(1, sizeof(*st));
    if (!u || !st) {
        free(u);
        free(st);
        *err = GH_ENOMEM;
        return NULL;
    }
    u->io.fd = -1;
    u->w = w;
    u->h2st = st;
    st->sess = h;
    st->u = u;
    st->next = h->streams;
    h->streams = st;
    h->nstreams++;
    if (h->state == S_READY) {
        gh_timer_stop(&w->loop, &h->timer); /* it was idle */
        u->connected = 1;
        u->tls_done = 1;
        u->writable = 1;
        *ready = 1;
    } else {
        *ready = 0;
        if (!gh_timer_armed(&h->timer))
            gh_timer_set(&w->loop, &h->timer, connect_ms ? connect_ms : 5000);
    }
    return u;
}

void gh_h2up_close_all(gh_worker_t *w)
{
    while (w->h2ups) {
        gh_h2up_t *h = w->h2ups;
        h->state = S_DEAD;
        sess_free(h);
    }
}
