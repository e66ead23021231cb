/* h2util.h: what the HTTP/2 server side (h2.c) and the HTTP/2 upstream side
 * (h2up.c) share: both turn an HTTP/1.1 message written by the request machinery
 * into HTTP/2 frames (a head into a name/value list, a framed body into a DATA
 * queue) and move nghttp2's output to a socket. Private to src/proxy. */
#ifndef GH_PROXY_H2UTIL_H
#define GH_PROXY_H2UTIL_H

#include <nghttp2/nghttp2.h>
#include <sys/types.h>

#include "core/buf.h"
#include "http/h1.h"

/* Append n bytes to b (a pool buffer, grown as needed). 0 or GH_ENOMEM. */
int gh_h2_append(gh_bufpool_t *pool, gh_buf_t *b, const void *p, size_t n);
#define GH_H2_APPEND_LIT(pool, b, lit) gh_h2_append(pool, b, lit, sizeof(lit) - 1)

/* HTTP/1.1 header fields as HTTP/2 fields: names lowercased into `names` (at least
 * the head's length), connection-specific fields (and Host, when drop_host) left
 * out. Returns how many entries were written after the first `n` of nv. */
size_t gh_h2_fields(const gh_h1_header_t *h, size_t count, int drop_host, nghttp2_nv *nv, size_t n, char *names);

/* A body framed as an HTTP/1.1 message says (GH_H1_BODY_LENGTH with *left bytes to
 * go, CHUNKED decoded by ch, or until the end), queued into out for DATA frames, at
 * most until out holds high bytes. Returns the input bytes taken (0: out is full),
 * or -1 on a framing error; *done is set once the body is complete. */
ssize_t gh_h2_queue_body(gh_bufpool_t *pool, gh_buf_t *out, size_t high, int framing, uint64_t *left,
                         gh_h1_chunked_t *ch, const char *p, size_t n, int *done);

/* Copy up to len queued bytes from q to buf (for a data source read callback),
 * giving q's buffer back once empty. */
size_t gh_h2_dequeue(gh_bufpool_t *pool, gh_buf_t *q, uint8_t *buf, size_t len);

/* Write nghttp2's output to a socket through send(arg, p, n) (write(2) semantics,
 * -1/EAGAIN when full): pending bytes in out first, then frames coalesced up to
 * 16 KiB per write. *writable is cleared when the socket is full, *wrote set when
 * bytes left. 0, or -1 when the socket or the session failed. */
int gh_h2_flush(nghttp2_session *ng, gh_bufpool_t *pool, gh_buf_t *out, ssize_t (*send)(void *, const void *, size_t),
                void *arg, uint8_t *writable, uint8_t *wrote);

#endif
