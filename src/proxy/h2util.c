/* h2util.c: see h2util.h. */
#include "proxy/h2util.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define COALESCE 16384

int gh_h2_append(gh_bufpool_t *pool, gh_buf_t *b, const void *p, size_t n)
{
    if (gh_buf_get(pool, b) < 0)
        return GH_ENOMEM;
    if (gh_buf_room(b) < n) {
        gh_buf_compact(b);
        if (gh_buf_room(b) < n) {
            uint32_t want = b->cap;
            while (want - b->wr < n)
                want *= 2;
            if (gh_buf_grow(pool, b, want) < 0)
                return GH_ENOMEM;
        }
    }
    memcpy(b->base + b->wr, p, n);
    b->wr += (uint32_t)n;
    return 0;
}

/* Fields HTTP/2 forbids (RFC 9113 8.2.2); TE is re-added where it belongs. */
static int connection_specific(const char *n, size_t l, int drop_host)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                      "upgrade", "te"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (strlen(hop[i]) == l && !strncasecmp(hop[i], n, l))
            return 1;
    return drop_host && l == 4 && !strncasecmp(n, "host", 4);
}

size_t gh_h2_fields(const gh_h1_header_t *h, size_t count, int drop_host, nghttp2_nv *nv, size_t n, char *names)
{
    size_t added = 0, off = 0;
    for (size_t i = 0; i < count; i++) {
        if (connection_specific(h[i].name.p, h[i].name.n, drop_host))
            continue;
        char *lname = names + off;
        for (size_t k = 0; k < h[i].name.n; k++) {
            char ch = h[i].name.p[k];
            lname[k] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        }
        off += h[i].name.n;
        nv[n + added++] = (nghttp2_nv){(uint8_t *)lname, (uint8_t *)h[i].value.p, h[i].name.n, h[i].value.n,
                                       NGHTTP2_NV_FLAG_NONE};
    }
    return added;
}

ssize_t gh_h2_queue_body(gh_bufpool_t *pool, gh_buf_t *out, size_t high, int framing, uint64_t *left,
                         gh_h1_chunked_t *ch, const char *p, size_t n, int *done)
{
    size_t room = gh_buf_len(out) < high ? high - gh_buf_len(out) : 0;
    if (!room)
        return 0;
    if (n > room)
        n = room; /* de-chunked data is never more than its input */
    switch (framing) {
    case GH_H1_BODY_LENGTH: {
        size_t k = n < *left ? n : (size_t)*left;
        if (k && gh_h2_append(pool, out, p, k) < 0)
            return -1;
        *left -= k;
        *done = *left == 0;
        return (ssize_t)k;
    }
    case GH_H1_BODY_CHUNKED: {
        size_t taken = 0;
        while (taken < n && !ch->done) {
            gh_str_t data;
            long k = gh_h1_chunked_step(ch, p + taken, n - taken, &data);
            if (k < 0)
                return -1;
            if (k == 0)
                break;
            if (data.n && gh_h2_append(pool, out, data.p, data.n) < 0)
                return -1;
            taken += (size_t)k;
        }
        *done = ch->done;
        return (ssize_t)taken;
    }
    default: /* until the message's end is signalled otherwise */
        if (gh_h2_append(pool, out, p, n) < 0)
            return -1;
        return (ssize_t)n;
    }
}

size_t gh_h2_dequeue(gh_bufpool_t *pool, gh_buf_t *q, uint8_t *buf, size_t len)
{
    size_t n = gh_buf_len(q);
    if (n > len)
        n = len;
    if (n) {
        memcpy(buf, q->base + q->rd, n);
        q->rd += (uint32_t)n;
        if (q->rd == q->wr)
            gh_buf_put(pool, q);
    }
    return n;
}

int gh_h2_flush(nghttp2_session *ng, gh_bufpool_t *pool, gh_buf_t *out, ssize_t (*send)(void *, const void *, size_t),
                void *arg, uint8_t *writable, uint8_t *wrote)
{
    for (int rounds = 0; rounds < 256 && *writable; rounds++) {
        if (gh_buf_len(out)) {
            ssize_t k = send(arg, out->base + out->rd, gh_buf_len(out));
            if (k < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    *writable = 0;
                    return 0;
                }
                return -1;
            }
            if (k > 0)
                *wrote = 1;
            out->rd += (uint32_t)k;
            if (out->rd < out->wr) {
                *writable = 0;
                return 0;
            }
            gh_buf_put(pool, out);
        }
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(ng, &data);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (gh_h2_append(pool, out, data, (size_t)n) < 0)
            return -1;
        while (gh_buf_len(out) < COALESCE && (n = nghttp2_session_mem_send(ng, &data)) > 0)
            if (gh_h2_append(pool, out, data, (size_t)n) < 0)
                return -1;
        if (n < 0)
            return -1;
    }
    return 0;
}
