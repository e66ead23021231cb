/* h2.c: HTTP/2 server connections on nghttp2 (see conn.h for the design).
 *
 * The connection (gh_h2conn_t) owns the nghttp2 session and moves bytes between it
 * and the socket: reads are fed to nghttp2_session_mem_recv, frames come out of
 * nghttp2_session_mem_send and are written directly, only what the socket does not
 * take being copied into an output buffer. Each stream (gh_h2stream_t) is served by
 * a stream client (session.c) that sees an HTTP/1.1 exchange:
 *
 *  - request: when the header block ends, its fields become an HTTP/1.1 head in the
 *    stream's input buffer ("GET /p HTTP/1.1", Host from :authority, cookies joined,
 *    Transfer-Encoding: chunked when there is a body without content-length); DATA
 *    frames follow (chunk-framed when so). Flow control is manual: a DATA payload is
 *    acknowledged (nghttp2_session_consume) only when the stream client has read it,
 *    so a client cannot make us buffer more than its stream window.
 *  - response: the stream client writes an HTTP/1.1 response; its head is parsed
 *    back (our own output: always valid) into HEADERS, its body (de-chunked, with
 *    trailers kept for a trailing HEADERS) is queued for DATA frames, at most
 *    OUT_HIGH bytes: past that the stream client's write is short, which stops it
 *    reading its upstream (backpressure).
 *
 * Protections (counted in gatehouse_h2_protections_total, each cutting the
 * connection with GOAWAY ENHANCE_YOUR_CALM unless said otherwise): client
 * RST_STREAMs per 10 s (rapid reset), SETTINGS / PING / PRIORITY / WINDOW_UPDATE per
 * 10 s, CONTINUATION frames per header block (nghttp2 also enforces it), the decoded
 * header list size (the stream is reset), concurrent streams over the advertised
 * limit (refused), and a peer that keeps a response waiting on a zero window for
 * timeouts.client_send. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/h1.h"
#include "proxy/h2util.h"
#include "proxy/conn.h"
#include "tls/tls.h"

#define OUT_HIGH (64 * 1024)  /* response bytes queued per stream before the stream client waits */
#define OUT_LOW (16 * 1024)   /* ... and below which it may write again */
#define WINDOW_MS 10000       /* the window of the frame-rate protections */
#define TRAILERS_MAX 4096     /* response trailer section kept for a trailing HEADERS */
#define READ_CHUNK 16384

enum { RS_HEAD, RS_BODY, RS_DONE };
enum { T_NONE, T_IDLE, T_PREFACE, T_STALL };

typedef struct gh_h2stream {
    struct gh_h2stream *next, *ready_next;
    struct gh_h2conn *conn;
    int32_t id;
    gh_client_t *sc; /* its stream client, NULL once that closed */
    /* request */
    gh_buf_t hdrs;   /* regular fields as HTTP/1.1 lines, then the whole head is built in `in` */
    gh_buf_t cookie; /* cookie crumbs, joined with "; " */
    gh_buf_t in;     /* request bytes not yet read by the stream client */
    char method[24], scheme[8];
    char *path, *authority; /* malloc'd */
    uint32_t header_bytes;
    uint64_t unconsumed; /* DATA payload given to `in`, not yet acknowledged */
    uint8_t has_cl, chunked_in, head_done, in_ended, trailers_in, queued, method_head;
    /* response */
    gh_buf_t rhead;   /* the stream client's response head, until complete */
    gh_buf_t out;     /* body bytes for DATA frames */
    gh_h1_chunked_t rchunk;
    char *trailers;   /* TRAILERS_MAX bytes when the body is chunked */
    int resp_body;
    uint64_t resp_left;
    uint8_t rstate, submitted, deferred, out_ended, closed, reset_sent;
} gh_h2stream_t;

typedef struct gh_h2conn {
    nghttp2_session *ng;
    gh_client_t *c;
    gh_h2stream_t *streams, *ready;
    uint32_t nstreams;
    gh_buf_t out; /* frame bytes the socket did not take yet */
    uint64_t win_start;
    uint32_t resets, settings, pings, priorities, window_updates, continuations;
    uint32_t data_sent, streams_opened; /* in the window: what legitimately earns WINDOW_UPDATE and PRIORITY */
    uint8_t dead, draining, timer_kind, in_recv, freeing, wrote;
} gh_h2conn_t;

static const gh_conf_t *conf_of(const gh_client_t *c) { return c->w->gen->conf; }

/* ---- protections ---- */

static void goaway(gh_h2conn_t *h, uint32_t code)
{
    if (h->dead)
        return;
    h->dead = 1;
    nghttp2_session_terminate_session(h->ng, code);
    GH_COUNT(h->c->w->stats->h2_goaways, 1);
}

static void protect(gh_h2conn_t *h, int kind, int cut)
{
    GH_COUNT(h->c->w->stats->h2_protections[kind], 1);
    if (cut)
        goaway(h, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* Count one frame of a rate-limited kind; true when over the limit. */
static int over(gh_h2conn_t *h, uint32_t *count, uint32_t limit)
{
    uint64_t now = gh_loop_now(&h->c->w->loop);
    if (now - h->win_start >= WINDOW_MS) {
        h->win_start = now;
        h->resets = h->settings = h->pings = h->priorities = h->window_updates = 0;
        h->data_sent = h->streams_opened = 0;
    }
    return ++*count > limit;
}

/* ---- streams ---- */

static gh_h2stream_t *stream_of(gh_h2conn_t *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

static void stream_ready(gh_h2stream_t *s)
{
    if (!s->queued && s->sc) {
        s->queued = 1;
        s->ready_next = s->conn->ready;
        s->conn->ready = s;
    }
}

static void stream_free(gh_h2conn_t *h, gh_h2stream_t *s)
{
    gh_worker_t *w = h->c->w;
    for (gh_h2stream_t **p = &h->streams; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    for (gh_h2stream_t **p = &h->ready; *p; p = &(*p)->ready_next)
        if (*p == s) {
            *p = s->ready_next;
            break;
        }
    h->nstreams--;
    gh_buf_put(&w->bufs, &s->hdrs);
    gh_buf_put(&w->bufs, &s->cookie);
    gh_buf_put(&w->bufs, &s->in);
    gh_buf_put(&w->bufs, &s->rhead);
    gh_buf_put(&w->bufs, &s->out);
    free(s->path);
    free(s->authority);
    free(s->trailers);
    free(s);
}


/* The header block ended: the HTTP/1.1 head of the request, and its stream client. */
static int request_ready(gh_h2conn_t *h, gh_h2stream_t *s, int end_stream)
{
    gh_worker_t *w = h->c->w;
    gh_buf_t *b = &s->in;
    int rc = 0;
    const char *path = s->path ? s->path : "/";
    if (!s->method[0]) /* nghttp2 checks the pseudo-fields; be safe anyway */
        return -1;
    rc |= gh_h2_append(&w->bufs, b, s->method, strlen(s->method));
    rc |= GH_H2_APPEND_LIT(&w->bufs, b, " ");
    rc |= gh_h2_append(&w->bufs, b, path, strlen(path));
    rc |= GH_H2_APPEND_LIT(&w->bufs, b, " HTTP/1.1\r\n");
    if (s->authority) {
        rc |= GH_H2_APPEND_LIT(&w->bufs, b, "Host: ");
        rc |= gh_h2_append(&w->bufs, b, s->authority, strlen(s->authority));
        rc |= GH_H2_APPEND_LIT(&w->bufs, b, "\r\n");
    }
    if (gh_buf_len(&s->hdrs))
        rc |= gh_h2_append(&w->bufs, b, s->hdrs.base + s->hdrs.rd, gh_buf_len(&s->hdrs));
    if (gh_buf_len(&s->cookie)) {
        rc |= GH_H2_APPEND_LIT(&w->bufs, b, "Cookie: ");
        rc |= gh_h2_append(&w->bufs, b, s->cookie.base + s->cookie.rd, gh_buf_len(&s->cookie));
        rc |= GH_H2_APPEND_LIT(&w->bufs, b, "\r\n");
    }
    if (!end_stream && !s->has_cl) {
        s->chunked_in = 1;
        rc |= GH_H2_APPEND_LIT(&w->bufs, b, "Transfer-Encoding: chunked\r\n");
    }
    rc |= GH_H2_APPEND_LIT(&w->bufs, b, "\r\n");
    gh_buf_put(&w->bufs, &s->hdrs);
    gh_buf_put(&w->bufs, &s->cookie);
    if (rc < 0)
        return -1;
    s->head_done = 1;
    s->in_ended = (uint8_t)end_stream;
    if (!(s->sc = gh_client_new_stream(h->c, s)))
        return -1;
    GH_COUNT(w->stats->h2_streams, 1);
    stream_ready(s);
    return 0;
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gh_h2conn_t *h = ud;
    h->continuations = 0;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h->draining || h->dead) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    gh_h2stream_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->conn = h;
    s->id = f->hd.stream_id;
    s->next = h->streams;
    h->streams = s;
    h->nstreams++;
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    h->streams_opened++;
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    gh_h2conn_t *h = ud;
    gh_h2stream_t *s = stream_of(h, f->hd.stream_id);
    if (!s || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    gh_worker_t *w = h->c->w;
    s->header_bytes += (uint32_t)(nl + vl + 32);
    const gh_conf_t *conf = conf_of(h->c);
    if (s->header_bytes > conf->http2.max_header_list_size) {
        /* an HPACK bomb, or just too much: this stream is reset, the connection lives */
        protect(h, GH_H2P_HEADER_LIST, 0);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (s->head_done) { /* trailers of the request: chunk trailer fields when the body is chunked */
        if (!s->chunked_in || (nl && name[0] == ':'))
            return 0;
        s->trailers_in = 1;
        int rc = gh_h2_append(&w->bufs, &s->hdrs, name, nl) | GH_H2_APPEND_LIT(&w->bufs, &s->hdrs, ": ") | gh_h2_append(&w->bufs, &s->hdrs, value, vl) |
                 GH_H2_APPEND_LIT(&w->bufs, &s->hdrs, "\r\n");
        return rc < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nl && name[0] == ':') {
        if (nl == 7 && !memcmp(name, ":method", 7)) {
            if (vl >= sizeof s->method)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            memcpy(s->method, value, vl);
            s->method[vl] = 0;
            s->method_head = vl == 4 && !memcmp(value, "HEAD", 4);
        } else if (nl == 5 && !memcmp(name, ":path", 5)) {
            free(s->path);
            s->path = strndup((const char *)value, vl);
        } else if (nl == 10 && !memcmp(name, ":authority", 10)) {
            free(s->authority);
            s->authority = strndup((const char *)value, vl);
        } else if (nl == 7 && !memcmp(name, ":scheme", 7)) {
            size_t n = vl < sizeof s->scheme - 1 ? vl : sizeof s->scheme - 1;
            memcpy(s->scheme, value, n);
            s->scheme[n] = 0;
        }
        return 0;
    }
    if (nl == 4 && !memcmp(name, "host", 4)) {
        if (!s->authority) /* :authority wins when both are there */
            s->authority = strndup((const char *)value, vl);
        return 0;
    }
    if (nl == 6 && !memcmp(name, "cookie", 6)) {
        int rc = (gh_buf_len(&s->cookie) ? GH_H2_APPEND_LIT(&w->bufs, &s->cookie, "; ") : 0) | gh_h2_append(&w->bufs, &s->cookie, value, vl);
        return rc < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nl == 14 && !memcmp(name, "content-length", 14))
        s->has_cl = 1;
    int rc = gh_h2_append(&w->bufs, &s->hdrs, name, nl) | GH_H2_APPEND_LIT(&w->bufs, &s->hdrs, ": ") | gh_h2_append(&w->bufs, &s->hdrs, value, vl) |
             GH_H2_APPEND_LIT(&w->bufs, &s->hdrs, "\r\n");
    (void)flags;
    return rc < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    gh_h2conn_t *h = ud;
    gh_h2stream_t *s = stream_of(h, id);
    if (!s || !s->sc) { /* nobody reads it: give the window back now */
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    gh_worker_t *w = h->c->w;
    int rc = 0;
    if (s->chunked_in && len) {
        char size[24];
        int n = snprintf(size, sizeof size, "%zx\r\n", len);
        rc |= gh_h2_append(&w->bufs, &s->in, size, (size_t)n);
    }
    rc |= gh_h2_append(&w->bufs, &s->in, data, len);
    if (s->chunked_in && len)
        rc |= GH_H2_APPEND_LIT(&w->bufs, &s->in, "\r\n");
    if (rc < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->unconsumed += len;
    s->sc->readable = 1;
    stream_ready(s);
    (void)flags;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gh_h2conn_t *h = ud;
    const gh_conf_t *conf = conf_of(h->c);
    switch (f->hd.type) {
    case NGHTTP2_HEADERS: {
        gh_h2stream_t *s = stream_of(h, f->hd.stream_id);
        if (!s)
            break;
        int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        if (!s->head_done) {
            if (request_ready(h, s, end) < 0)
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        } else if (end) { /* trailers end the body */
            gh_worker_t *w = h->c->w;
            int rc = 0;
            if (s->chunked_in) {
                rc |= GH_H2_APPEND_LIT(&w->bufs, &s->in, "0\r\n");
                if (gh_buf_len(&s->hdrs))
                    rc |= gh_h2_append(&w->bufs, &s->in, s->hdrs.base + s->hdrs.rd, gh_buf_len(&s->hdrs));
                rc |= GH_H2_APPEND_LIT(&w->bufs, &s->in, "\r\n");
            }
            gh_buf_put(&w->bufs, &s->hdrs);
            s->in_ended = 1;
            if (rc < 0)
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
            stream_ready(s);
        }
        break;
    }
    case NGHTTP2_DATA: {
        gh_h2stream_t *s = stream_of(h, f->hd.stream_id);
        if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->in_ended) {
            s->in_ended = 1;
            if (s->chunked_in && s->sc && GH_H2_APPEND_LIT(&h->c->w->bufs, &s->in, "0\r\n\r\n") < 0)
                nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
            if (s->sc) {
                s->sc->readable = 1;
                stream_ready(s);
            }
        }
        break;
    }
    case NGHTTP2_RST_STREAM:
        if (over(h, &h->resets, conf->http2.max_resets))
            protect(h, GH_H2P_RAPID_RESET, 1);
        break;
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && over(h, &h->settings, conf->http2.max_control_frames))
            protect(h, GH_H2P_SETTINGS_FLOOD, 1);
        break;
    case NGHTTP2_PING:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK) && over(h, &h->pings, conf->http2.max_control_frames))
            protect(h, GH_H2P_PING_FLOOD, 1);
        break;
    case NGHTTP2_PRIORITY: /* a browser may send one per stream it opens */
        if (over(h, &h->priorities, conf->http2.max_control_frames + h->streams_opened))
            protect(h, GH_H2P_PRIORITY_FLOOD, 1);
        break;
    case NGHTTP2_WINDOW_UPDATE: /* a reader sends up to two (stream, connection) per DATA frame it got */
        if (over(h, &h->window_updates, conf->http2.max_control_frames + 2 * h->data_sent))
            protect(h, GH_H2P_WINDOW_UPDATE_FLOOD, 1);
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    gh_h2conn_t *h = ud;
    if (f->hd.type == NGHTTP2_DATA)
        h->data_sent++;
    (void)ng;
    return 0;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
    gh_h2conn_t *h = ud;
    if (hd->type == NGHTTP2_CONTINUATION && ++h->continuations > conf_of(h->c)->http2.max_continuations) {
        protect(h, GH_H2P_CONTINUATION, 1);
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    (void)ng;
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int lib_error, void *ud)
{
    gh_h2conn_t *h = ud;
    if (f->hd.type == NGHTTP2_HEADERS && lib_error == NGHTTP2_ERR_REFUSED_STREAM)
        protect(h, GH_H2P_REFUSED_STREAM, 0);
    (void)ng;
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *ud)
{
    gh_h2conn_t *h = ud;
    gh_h2stream_t *s = stream_of(h, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    s->closed = 1;
    if (s->sc) { /* the request still runs: reset by the peer (or by us): cut it */
        s->sc->rdhup = 1;
        s->sc->readable = 1;
        stream_ready(s);
        return 0;
    }
    if (!s->queued)
        stream_free(h, s);
    (void)error_code;
    return 0;
}

/* DATA from the stream's queue. */
static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    gh_h2conn_t *h = ud;
    gh_h2stream_t *s = src->ptr;
    size_t n = gh_h2_dequeue(&h->c->w->bufs, &s->out, buf, len);
    if (n) {
        if (s->sc && !s->sc->writable && gh_buf_len(&s->out) < OUT_LOW) {
            s->sc->writable = 1;
            stream_ready(s);
        }
    }
    if (s->out_ended && !gh_buf_len(&s->out)) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->trailers && s->rchunk.trailers_len > 2) {
            /* "name: value\r\n..." then the empty line: HEADERS with END_STREAM */
            nghttp2_nv nv[64];
            size_t nnv = 0;
            char *p = s->trailers, *end = s->trailers + s->rchunk.trailers_len;
            while (p < end && nnv < 64) {
                char *eol = memchr(p, '\r', (size_t)(end - p));
                if (!eol || eol == p)
                    break;
                char *colon = memchr(p, ':', (size_t)(eol - p));
                if (colon) {
                    for (char *q = p; q < colon; q++)
                        if (*q >= 'A' && *q <= 'Z')
                            *q = (char)(*q + 32);
                    char *v = colon + 1;
                    while (v < eol && (*v == ' ' || *v == '\t'))
                        v++;
                    char *ve = eol;
                    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                        ve--;
                    nv[nnv++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p), (size_t)(ve - v),
                                             NGHTTP2_NV_FLAG_NONE};
                }
                p = eol + 2;
            }
            if (nnv && nghttp2_submit_trailer(ng, id, nv, nnv) == 0)
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
        return (ssize_t)n;
    }
    if (!n) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- the stream client's side ---- */

ssize_t gh_h2_stream_recv(gh_client_t *sc, void *buf, size_t n)
{
    gh_h2stream_t *s = sc->h2s;
    if (!s || (s->closed && !gh_buf_len(&s->in)))
        return 0; /* reset: like a closed connection */
    size_t k = gh_buf_len(&s->in);
    if (!k) {
        sc->readable = 0;
        errno = EAGAIN;
        return -1;
    }
    if (k > n)
        k = n;
    memcpy(buf, s->in.base + s->in.rd, k);
    s->in.rd += (uint32_t)k;
    if (s->in.rd == s->in.wr)
        gh_buf_put(&sc->w->bufs, &s->in);
    if (s->unconsumed && !s->closed) {
        /* acknowledge what was read (framing bytes count too: never more than received) */
        uint64_t ack = k < s->unconsumed ? k : s->unconsumed;
        if (!gh_buf_len(&s->in))
            ack = s->unconsumed;
        s->unconsumed -= ack;
        nghttp2_session_consume(s->conn->ng, s->id, (size_t)ack);
        gh_task_post(&sc->w->loop, &s->conn->c->resume); /* WINDOW_UPDATE goes out */
    }
    return (ssize_t)k;
}

/* The stream client's response head is complete in s->rhead: HEADERS. */
static int submit_head(gh_h2stream_t *s, size_t *used)
{
    gh_h2conn_t *h = s->conn;
    gh_worker_t *w = h->c->w;
    const gh_conf_t *conf = conf_of(h->c);
    gh_h1_limits_t lim = {conf->limits.max_header_size + 1024, conf->limits.max_header_size + 1024, GH_MAX_HEADERS};
    gh_h1_response_t m;
    int rc = gh_h1_parse_response(s->rhead.base + s->rhead.rd, gh_buf_len(&s->rhead), &lim,
                                  s->method_head ? GH_M_HEAD : GH_M_GET, &m, w->hdrs, GH_MAX_HEADERS);
    if (rc == GH_EAGAIN)
        return 0;
    if (rc < 0)
        return -1;
    *used = (size_t)rc;
    if (m.status < 200) /* interim: nothing to send */
        return 1;
    nghttp2_nv *nv = malloc(((size_t)m.nheaders + 1) * sizeof(*nv));
    char *names = malloc(m.head_len);
    if (!nv || !names) {
        free(nv);
        free(names);
        return -1;
    }
    char status[4] = {(char)('0' + m.status / 100 % 10), (char)('0' + m.status / 10 % 10), (char)('0' + m.status % 10), 0};
    size_t n = 0;
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    n += gh_h2_fields(m.headers, m.nheaders, 0, nv, n, names);
    s->resp_body = m.body;
    s->resp_left = m.content_length;
    if (m.body == GH_H1_BODY_CHUNKED && (s->trailers = malloc(TRAILERS_MAX))) {
        s->rchunk.trailers = s->trailers;
        s->rchunk.trailers_cap = TRAILERS_MAX;
    }
    int none = m.body == GH_H1_BODY_NONE || (m.body == GH_H1_BODY_LENGTH && !m.content_length);
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    int srv = nghttp2_submit_response(h->ng, s->id, nv, n, none ? NULL : &prd);
    free(nv);
    free(names);
    if (srv != 0)
        return -1;
    s->submitted = 1;
    s->rstate = none ? RS_DONE : RS_BODY;
    if (none)
        s->out_ended = 1;
    return 1;
}

/* Body bytes of the response, framed as the head said: queued for DATA. Returns the
 * input bytes taken (0 when the queue is full), or -1. */
/* Response body bytes, framed as the head said: queued for DATA. */
static ssize_t take_body(gh_h2stream_t *s, const char *p, size_t n)
{
    int done = 0;
    ssize_t k = gh_h2_queue_body(&s->conn->c->w->bufs, &s->out, OUT_HIGH, s->resp_body, &s->resp_left, &s->rchunk, p,
                                 n, &done);
    if (k >= 0 && done && s->resp_body != GH_H1_BODY_UNTIL_CLOSE) {
        s->rstate = RS_DONE;
        s->out_ended = 1;
    }
    return k;
}

ssize_t gh_h2_stream_writev(gh_client_t *sc, const struct iovec *iov, int n)
{
    gh_h2stream_t *s = sc->h2s;
    if (!s || s->closed || s->conn->dead) {
        errno = EPIPE;
        return -1;
    }
    gh_worker_t *w = sc->w;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *p = iov[i].iov_base;
        size_t len = iov[i].iov_len, off = 0;
        while (off < len) {
            if (s->rstate == RS_HEAD) {
                /* take the whole iovec into the head buffer, then give back what follows the head */
                size_t before = gh_buf_len(&s->rhead);
                if (gh_h2_append(&w->bufs, &s->rhead, p + off, len - off) < 0)
                    goto fail;
                size_t used = 0;
                int rc = submit_head(s, &used);
                if (rc < 0)
                    goto fail;
                if (rc == 0) { /* the head goes on in the next write */
                    total += len - off;
                    off = len;
                    break;
                }
                size_t from_this = used - before; /* bytes of this iovec that were head */
                s->rhead.rd += (uint32_t)used;
                size_t rest = gh_buf_len(&s->rhead);
                gh_buf_put(&w->bufs, &s->rhead);
                (void)rest;
                total += from_this;
                off += from_this;
                continue; /* an interim head, or the body follows */
            }
            if (s->rstate == RS_DONE) { /* bytes after the end: not ours to send */
                total += len - off;
                off = len;
                break;
            }
            ssize_t k = take_body(s, p + off, len - off);
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
    sc->writable = 0;
out:
    if (s->deferred && (gh_buf_len(&s->out) || s->out_ended)) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->conn->ng, s->id);
    }
    gh_task_post(&w->loop, &s->conn->c->resume);
    if (!total) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)total;
fail:
    errno = EPROTO;
    return -1;
}

void gh_h2_stream_closed(gh_client_t *sc)
{
    gh_h2stream_t *s = sc->h2s;
    if (!s)
        return;
    gh_h2conn_t *h = s->conn;
    s->sc = NULL;
    sc->h2s = NULL;
    if (!s->closed && !h->dead) {
        if (s->rstate == RS_BODY && s->resp_body == GH_H1_BODY_UNTIL_CLOSE) {
            s->rstate = RS_DONE; /* the close ends such a body */
            s->out_ended = 1;
        }
        if (s->rstate != RS_DONE && !s->reset_sent) {
            /* the response was cut (or never made): the stream is reset, not ended */
            s->reset_sent = 1;
            nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        } else if (s->deferred) {
            s->deferred = 0;
            nghttp2_session_resume_data(h->ng, s->id);
        }
        if (s->unconsumed) { /* unread request body: its window back */
            nghttp2_session_consume(h->ng, s->id, (size_t)s->unconsumed);
            s->unconsumed = 0;
        }
        gh_buf_put(&sc->w->bufs, &s->in);
    }
    if (h->freeing) /* the connection is being closed: nothing to run, and never again */
        return;
    gh_task_post(&sc->w->loop, &h->c->resume);
    if (s->closed && !s->queued)
        stream_free(h, s);
}

void gh_h2_stream_stalled(gh_client_t *sc)
{
    gh_h2stream_t *s = sc->h2s;
    gh_client_t *c = sc->parent;
    if (s && !s->conn->dead) {
        protect(s->conn, GH_H2P_ZERO_WINDOW, 1);
        gh_task_post(&c->w->loop, &c->resume);
    }
    gh_client_abort(sc);
}

/* ---- the connection ---- */

/* Arm the connection timer for kind; an armed timer of the same kind keeps its
 * deadline unless rearm (progress was made). */
static void set_timer(gh_h2conn_t *h, int kind, uint32_t ms, int rearm)
{
    gh_client_t *c = h->c;
    if (kind == T_NONE) {
        if (h->timer_kind != T_NONE)
            gh_timer_stop(&c->w->loop, &c->timer);
    } else if (h->timer_kind != kind || rearm) {
        gh_timer_set(&c->w->loop, &c->timer, ms);
    }
    h->timer_kind = (uint8_t)kind;
}

int gh_h2_start(gh_client_t *c)
{
    const gh_conf_t *conf = conf_of(c);
    gh_h2conn_t *h = calloc(1, sizeof(*h));
    if (!h)
        return GH_ENOMEM;
    h->c = c;
    h->win_start = gh_loop_now(&c->w->loop);
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        free(h);
        return GH_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        free(h);
        return GH_ENOMEM;
    }
    nghttp2_option_set_no_auto_window_update(opt, 1); /* we acknowledge what the stream client read */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_continuations(opt, conf->http2.max_continuations);
    /* our own reset limit (per 10 s, counted) acts first; nghttp2's stays as a backstop */
    nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)conf->http2.max_resets * 4, conf->http2.max_resets);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    int rv = nghttp2_session_server_new2(&h->ng, cb, h, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0) {
        free(h);
        return GH_ENOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, conf->http2.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, conf->http2.initial_window_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, conf->http2.max_header_list_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0) {
        nghttp2_session_del(h->ng);
        free(h);
        return GH_ENOMEM;
    }
    c->h2 = h;
    c->state = C_H2;
    c->readable = 1;
    gh_timer_stop(&c->w->loop, &c->timer);
    GH_COUNT(c->w->stats->h2_conns, 1);
    /* what was read already (the h2c preface and whatever followed) */
    if (gh_buf_len(&c->in)) {
        h->in_recv = 1;
        ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)c->in.base + c->in.rd, gh_buf_len(&c->in));
        h->in_recv = 0;
        c->in.rd = c->in.wr = 0;
        if (n < 0)
            goaway(h, NGHTTP2_PROTOCOL_ERROR);
    }
    set_timer(h, T_PREFACE, conf->timeouts.client_header, 0);
    return 0;
}

static ssize_t sock_send(void *arg, const void *p, size_t n)
{
    return gh_client_sock_send(arg, p, n);
}

/* Write what nghttp2 has to send; 0, or -1 when the socket failed. */
static int flush(gh_h2conn_t *h)
{
    return gh_h2_flush(h->ng, &h->c->w->bufs, &h->out, sock_send, h->c, &h->c->writable, &h->wrote);
}

/* Run the stream clients that have something to do. */
static void run_streams(gh_h2conn_t *h)
{
    for (int rounds = 0; rounds < 8 && h->ready; rounds++) {
        gh_h2stream_t *list = h->ready;
        h->ready = NULL;
        while (list) {
            gh_h2stream_t *s = list;
            list = s->ready_next;
            s->queued = 0;
            gh_client_t *sc = s->sc;
            if (sc) {
                if (sc->rdhup && s->closed)
                    gh_client_abort(sc); /* reset by the peer */
                else
                    gh_client_run(sc);
            } else if (s->closed) {
                stream_free(h, s);
            }
        }
    }
}

void gh_h2_run(gh_client_t *c)
{
    gh_h2conn_t *h = c->h2;
    gh_worker_t *w = c->w;
    const gh_conf_t *conf = conf_of(c);
    h->wrote = 0;
    for (int rounds = 0; rounds < 16; rounds++) {
        int progress = 0;
        while (c->readable && !h->dead && nghttp2_session_want_read(h->ng)) {
            if (gh_buf_get(&w->bufs, &c->in) < 0)
                goto close;
            ssize_t n = gh_client_sock_recv(c, c->in.base, c->in.cap);
            if (n == 0)
                goto close;
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    c->readable = 0;
                    break;
                }
                goto close;
            }
            if ((size_t)n < c->in.cap)
                c->readable = 0;
            if (h->timer_kind == T_PREFACE)
                set_timer(h, T_NONE, 0, 0);
            h->in_recv = 1;
            ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)c->in.base, (size_t)n);
            h->in_recv = 0;
            if (rv < 0 && !h->dead) {
                if (rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
                    protect(h, GH_H2P_CONTINUATION, 1);
                else if (rv == NGHTTP2_ERR_FLOODED)
                    protect(h, h->pings >= h->settings ? GH_H2P_PING_FLOOD : GH_H2P_SETTINGS_FLOOD, 1);
                else
                    goaway(h, NGHTTP2_PROTOCOL_ERROR);
            }
            progress = 1;
        }
        gh_buf_put(&w->bufs, &c->in);
        if (h->ready) {
            run_streams(h);
            progress = 1;
        }
        if (flush(h) < 0)
            goto close;
        if (!progress && !h->ready)
            break;
    }
    if (h->ready) /* more to do: next turn, after the other connections */
        gh_task_post(&w->loop, &c->resume);
    if (h->dead || (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))) {
        if (!gh_buf_len(&h->out) && !nghttp2_session_want_write(h->ng))
            goto done;
        set_timer(h, T_STALL, conf->timeouts.client_send, h->wrote); /* the last frames, then close */
        return;
    }
    if (h->draining && !h->nstreams && !gh_buf_len(&h->out) && !nghttp2_session_want_write(h->ng))
        goto done;
    /* timers: a peer that keeps responses (or our frames) waiting on a zero window or
     * a full socket for timeouts.client_send; idle between streams */
    int stalled = gh_buf_len(&h->out) != 0;
    for (gh_h2stream_t *s = h->streams; s && !stalled; s = s->next)
        stalled = gh_buf_len(&s->out) && !s->sc &&
                  (nghttp2_session_get_stream_remote_window_size(h->ng, s->id) <= 0 ||
                   nghttp2_session_get_remote_window_size(h->ng) <= 0);
    if (stalled)
        set_timer(h, T_STALL, conf->timeouts.client_send, h->wrote);
    else if (!h->nstreams && h->timer_kind != T_PREFACE)
        set_timer(h, T_IDLE, conf->timeouts.keepalive, 0);
    else if (h->nstreams)
        set_timer(h, T_NONE, 0, 0);
    return;
done: /* everything we had to say is sent (a GOAWAY last): linger, then close */
    gh_h2_free(c);
    gh_client_linger(c);
    return;
close:
    gh_client_close(c);
}

void gh_h2_timeout(gh_client_t *c)
{
    gh_h2conn_t *h = c->h2;
    int kind = h->timer_kind;
    h->timer_kind = T_NONE;
    if (kind == T_STALL && !h->dead) { /* responses (or our frames) wait on a peer that does not read */
        protect(h, GH_H2P_ZERO_WINDOW, 1);
        c->writable = 1;
        flush(h);
        gh_client_close(c);
        return;
    }
    if (kind == T_IDLE && !h->dead) {
        goaway(h, NGHTTP2_NO_ERROR);
        c->writable = 1;
        flush(h);
        if (!gh_buf_len(&h->out)) {
            gh_h2_free(c);
            gh_client_linger(c);
            return;
        }
    }
    gh_client_close(c);
}

void gh_h2_drain(gh_client_t *c)
{
    gh_h2conn_t *h = c->h2;
    if (h->draining || h->dead)
        return;
    h->draining = 1;
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                          NULL, 0);
    GH_COUNT(c->w->stats->h2_goaways, 1);
    gh_task_post(&c->w->loop, &c->resume);
}

void gh_h2_free(gh_client_t *c)
{
    gh_h2conn_t *h = c->h2;
    if (!h)
        return;
    gh_worker_t *w = c->w;
    h->dead = 1;
    h->freeing = 1; /* streams are freed below, not as their clients close */
    /* the stream clients go first (their requests are cut) */
    for (gh_h2stream_t *s = h->streams; s; s = s->next)
        if (s->sc) {
            s->closed = 1;
            gh_client_abort(s->sc); /* calls gh_h2_stream_closed: s->sc = NULL */
        }
    while (h->streams) {
        gh_h2stream_t *s = h->streams;
        nghttp2_session_set_stream_user_data(h->ng, s->id, NULL);
        stream_free(h, s);
    }
    nghttp2_session_del(h->ng);
    gh_buf_put(&w->bufs, &h->out);
    free(h);
    c->h2 = NULL;
}
