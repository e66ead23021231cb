/* fuzz_h1.c: libFuzzer target for the HTTP/1.1 parser (src/http/h1.c).
 *
 * The input is parsed as a request (default and small limits), as a response to
 * GET, HEAD and CONNECT, and as a chunked body (and, for a chunked request, its
 * body). Beyond "does not crash" it traps on broken invariants: every view lies
 * inside the input, results are internally consistent (trimmed values, token
 * names, head ends with CRLFCRLF, status matches the code), a prefix of the input
 * answers GH_EAGAIN or the same result as the whole (the parser is positional),
 * and chunked decoding split at input-derived positions agrees with decoding the
 * whole buffer on the data bytes, the totals, the end and the errors. */
#include "http/h1.h"

#include <stdlib.h>

#define NH 64
#define ASSERT(c)                    \
    do {                             \
        if (!(c))                    \
            __builtin_trap();        \
    } while (0)

static const char *in_lo, *in_hi; /* the input buffer, for view checks */

static void in_buf(gh_str_t v)
{
    if (!v.n)
        return;
    ASSERT(v.p >= in_lo && v.p + v.n <= in_hi);
}

static int is_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_headers(const gh_h1_header_t *h, size_t n, const char *head_end)
{
    for (size_t i = 0; i < n; i++) {
        in_buf(h[i].name);
        in_buf(h[i].value);
        ASSERT(h[i].name.n > 0 && h[i].name.p + h[i].name.n < head_end);
        for (size_t k = 0; k < h[i].name.n; k++)
            ASSERT(is_tchar((uint8_t)h[i].name.p[k]));
        gh_str_t v = h[i].value;
        if (v.n) {
            ASSERT(v.p[0] != ' ' && v.p[0] != '\t' && v.p[v.n - 1] != ' ' && v.p[v.n - 1] != '\t');
            ASSERT(v.p + v.n < head_end);
        }
        for (size_t k = 0; k < v.n; k++) {
            uint8_t c = (uint8_t)v.p[k];
            ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
    }
}

static int expected_status(int rc)
{
    switch (rc) {
    case GH_EH1_LINE_TOO_LONG: return 414;
    case GH_EH1_HEAD_TOO_LARGE:
    case GH_EH1_TOO_MANY_HEADERS: return 431;
    case GH_EH1_VERSION_UNSUPPORTED: return 505;
    case GH_EH1_EXPECT: return 417;
    case GH_EH1_BAD_TE: return 0; /* 400 or 501 */
    default: return 400;
    }
}

static int parse_req(const char *b, size_t n, const gh_h1_limits_t *l, gh_h1_request_t *r,
                     gh_h1_header_t *h, int *st)
{
    *st = -1;
    return gh_h1_parse_request(b, n, l, r, h, NH, st);
}

static void same_request(const gh_h1_request_t *a, const gh_h1_request_t *b)
{
    ASSERT(a->head_len == b->head_len && a->nheaders == b->nheaders && a->body == b->body &&
           a->minor == b->minor && a->method_id == b->method_id &&
           a->keep_alive == b->keep_alive && a->expect_continue == b->expect_continue &&
           a->upgrade_websocket == b->upgrade_websocket && a->upgrade_other == b->upgrade_other &&
           a->has_te_trailers == b->has_te_trailers);
    ASSERT(a->body != GH_H1_BODY_LENGTH || a->content_length == b->content_length);
    ASSERT(a->target.p == b->target.p && a->target.n == b->target.n);
    ASSERT(a->host.p == b->host.p && a->host.n == b->host.n);
    ASSERT(a->path.p == b->path.p && a->path.n == b->path.n);
    ASSERT(a->query.p == b->query.p && a->query.n == b->query.n);
}

static void check_request(const char *b, size_t n, const gh_h1_limits_t *l, uint32_t seed,
                          gh_h1_request_t *out, int *out_rc)
{
    static gh_h1_header_t h[NH], h2[NH];
    gh_h1_request_t r, r2;
    int st, st2;
    int rc = parse_req(b, n, l, &r, h, &st);
    *out = r;
    *out_rc = rc;
    ASSERT(rc > 0 || rc == GH_EAGAIN || (rc <= GH_EAGAIN && rc > GH_E__LAST));
    if (rc > 0) {
        const char *end = b + rc;
        ASSERT((size_t)rc <= n && (uint32_t)rc == r.head_len && r.head_len <= l->max_head);
        ASSERT(rc >= 4 && !memcmp(end - 4, "\r\n\r\n", 4));
        ASSERT(r.nheaders <= l->max_headers && r.headers == h);
        ASSERT(r.minor == 0 || r.minor == 1);
        ASSERT(r.body == GH_H1_BODY_NONE || r.body == GH_H1_BODY_LENGTH ||
               r.body == GH_H1_BODY_CHUNKED);
        ASSERT(r.body != GH_H1_BODY_LENGTH || r.content_length <= (1ull << 62));
        ASSERT(!(r.upgrade_websocket && r.upgrade_other));
        in_buf(r.method);
        in_buf(r.target);
        in_buf(r.query);
        in_buf(r.host);
        if (!(r.path.n == 1 && r.path.p[0] == '/')) /* absolute-form without a path: static "/" */
            in_buf(r.path);
        ASSERT(r.method.p == b || (r.method.p > b && r.method.p[-1] == '\n'));
        ASSERT(r.method.n && r.target.n && r.target.p + r.target.n < end);
        for (size_t k = 0; k < r.method.n; k++)
            ASSERT(is_tchar((uint8_t)r.method.p[k]));
        for (size_t k = 0; k < r.target.n; k++)
            ASSERT(r.target.p[k] >= 0x21 && r.target.p[k] <= 0x7e && r.target.p[k] != '#');
        ASSERT(r.minor == 0 || r.host.n > 0);
        if (r.method_id == GH_M_CONNECT)
            ASSERT(r.host.p == r.target.p && r.host.n == r.target.n);
        check_headers(h, r.nheaders, end);
        /* positional: the head alone parses the same; any shorter prefix waits */
        ASSERT(parse_req(b, (size_t)rc, l, &r2, h2, &st2) == rc);
        same_request(&r, &r2);
        size_t ks[4] = {(size_t)rc - 1, (size_t)rc / 2, seed % (size_t)rc, (seed >> 8) % (size_t)rc};
        for (int i = 0; i < 4; i++)
            ASSERT(parse_req(b, ks[i], l, &r2, h2, &st2) == GH_EAGAIN);
    } else if (rc == GH_EAGAIN) {
        ASSERT(n <= l->max_head);
        ASSERT(st == -1);
    } else {
        int want = expected_status(rc);
        ASSERT(want ? st == want : (st == 400 || st == 501));
        if (n) {
            size_t ks[3] = {n - 1, seed % n, (seed >> 12) % n};
            for (int i = 0; i < 3; i++) {
                int rk = parse_req(b, ks[i], l, &r2, h2, &st2);
                ASSERT(rk == GH_EAGAIN || (rk == rc && st2 == st));
            }
        }
    }
    /* every prefix, for small inputs */
    if (n <= 96) {
        for (size_t k = 0; k < n; k++) {
            int rk = parse_req(b, k, l, &r2, h2, &st2);
            if (rc > 0)
                ASSERT(k < (size_t)rc ? rk == GH_EAGAIN : rk == rc);
            else
                ASSERT(rk == GH_EAGAIN || rk == rc);
        }
    }
}

static void check_response(const char *b, size_t n, const gh_h1_limits_t *l, int method,
                           uint32_t seed)
{
    static gh_h1_header_t h[NH], h2[NH];
    gh_h1_response_t r, r2;
    int rc = gh_h1_parse_response(b, n, l, method, &r, h, NH);
    ASSERT(rc > 0 || rc == GH_EAGAIN || (rc <= GH_EAGAIN && rc > GH_E__LAST));
    if (rc > 0) {
        ASSERT((size_t)rc <= n && (uint32_t)rc == r.head_len && r.head_len <= l->max_head);
        ASSERT(rc >= 4 && !memcmp(b + rc - 4, "\r\n\r\n", 4));
        ASSERT(r.status >= 100 && r.status <= 999 && (r.minor == 0 || r.minor == 1));
        ASSERT(r.nheaders <= l->max_headers);
        ASSERT(r.upgrade == (r.status == 101));
        in_buf(r.reason);
        check_headers(h, r.nheaders, b + rc);
        if (method == GH_M_HEAD || r.status < 200 || r.status == 204 || r.status == 304)
            ASSERT(r.body == GH_H1_BODY_NONE);
        if (r.body == GH_H1_BODY_UNTIL_CLOSE)
            ASSERT(!r.keep_alive);
        ASSERT(gh_h1_parse_response(b, (size_t)rc, l, method, &r2, h2, NH) == rc);
        ASSERT(r2.status == r.status && r2.body == r.body && r2.keep_alive == r.keep_alive &&
               r2.nheaders == r.nheaders && r2.content_length == r.content_length);
        ASSERT(gh_h1_parse_response(b, seed % (size_t)rc, l, method, &r2, h2, NH) == GH_EAGAIN);
    } else if (rc == GH_EAGAIN) {
        ASSERT(n <= l->max_head);
    } else if (n) {
        int rk = gh_h1_parse_response(b, seed % n, l, method, &r2, h2, NH);
        ASSERT(rk == GH_EAGAIN || rk == rc);
    }
}

/* ---- chunked ---- */

typedef struct {
    long rc;
    int done;
    size_t consumed;
    uint64_t total;
    uint64_t data_hash; /* over (offset, byte) of every data byte, in order */
    size_t ndata;
    uint64_t trailer_hash; /* over the trailer section the decoder copied (HTTP/2 sends it as HEADERS) */
    uint32_t trailers_len;
} run_t;

static uint32_t rng(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* mode 0: whole buffer per call; 1: one byte per call; 2: random pieces. */
static run_t dechunk(const char *b, size_t n, int mode, uint32_t seed)
{
    run_t o;
    memset(&o, 0, sizeof o);
    gh_h1_chunked_t c;
    memset(&c, 0, sizeof c);
    char tb[100]; /* small: the copy must stop at its cap, never write past it */
    c.trailers = tb;
    c.trailers_cap = sizeof tb;
    uint64_t hsh = 1469598103934665603ull;
    size_t off = 0;
    uint32_t s = seed | 1;
    while (off < n && !c.done) {
        size_t len = n - off;
        if (mode == 1)
            len = 1;
        else if (mode == 2) {
            size_t piece = (size_t)(rng(&s) % 24) + 1; /* not inside GH_MIN: it evaluates twice */
            len = GH_MIN(len, piece);
        }
        gh_str_t d = {NULL, 12345};
        long k = gh_h1_chunked_step(&c, b + off, len, &d);
        if (k < 0) {
            ASSERT(k == GH_EH1_CHUNK);
            o.rc = k;
            /* sticky */
            ASSERT(gh_h1_chunked_step(&c, b + off, len, &d) == GH_EH1_CHUNK);
            break;
        }
        ASSERT((size_t)k <= len);
        ASSERT(k > 0 || c.done);
        ASSERT(d.n <= (size_t)k);
        if (d.n)
            ASSERT(d.p >= b + off && d.p + d.n <= b + off + k);
        for (size_t i = 0; i < d.n; i++) {
            hsh = (hsh ^ (uint64_t)(d.p - b + (ptrdiff_t)i)) * 1099511628211ull;
            hsh = (hsh ^ (uint8_t)d.p[i]) * 1099511628211ull;
        }
        o.ndata += d.n;
        off += (size_t)k;
        ASSERT(c.line_len <= GH_H1_CHUNK_LINE_MAX && c.trailer_len <= GH_H1_TRAILER_MAX);
    }
    if (c.done) {
        gh_str_t d;
        ASSERT(gh_h1_chunked_step(&c, b, n, &d) == 0);
    }
    ASSERT(c.trailers_len <= c.trailers_cap && c.trailers_len <= c.trailer_len);
    o.trailers_len = c.trailers_len;
    o.trailer_hash = 1469598103934665603ull;
    for (uint32_t i = 0; i < c.trailers_len; i++)
        o.trailer_hash = (o.trailer_hash ^ (uint8_t)tb[i]) * 1099511628211ull;
    o.done = c.done;
    o.consumed = off;
    o.total = c.total;
    o.data_hash = hsh;
    return o;
}

static void same_run(const run_t *a, const run_t *b)
{
    ASSERT(a->rc == b->rc && a->done == b->done && a->total == b->total &&
           a->ndata == b->ndata && a->data_hash == b->data_hash);
    if (!a->rc)
        ASSERT(a->trailers_len == b->trailers_len && a->trailer_hash == b->trailer_hash);
    ASSERT(a->total == a->ndata);
    if (!a->rc)
        ASSERT(a->consumed == b->consumed);
}

static void check_chunked(const char *b, size_t n, uint32_t seed)
{
    run_t whole = dechunk(b, n, 0, seed);
    if (!whole.rc && !whole.done)
        ASSERT(whole.consumed == n);
    run_t r2 = dechunk(b, n, 2, seed);
    same_run(&whole, &r2);
    run_t r3 = dechunk(b, n, 2, seed * 2654435761u + 7);
    same_run(&whole, &r3);
    if (n <= 4096) {
        run_t r1 = dechunk(b, n, 1, seed);
        same_run(&whole, &r1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    in_lo = b;
    in_hi = b + size;
    uint32_t seed = 2166136261u;
    for (size_t i = 0; i < size && i < 64; i++)
        seed = (seed ^ data[i]) * 16777619u;
    seed ^= (uint32_t)size;

    static const gh_h1_limits_t dflt = {8192, 16384, 64};
    gh_h1_limits_t small = {(uint32_t)(8 + seed % 120), (uint32_t)(16 + (seed >> 7) % 400),
                            (uint16_t)((seed >> 16) % 8)};
    gh_h1_request_t r;
    int rc;
    check_request(b, size, &small, seed, &r, &rc);
    check_request(b, size, &dflt, seed, &r, &rc);

    /* a chunked request's body, as the connection code would feed it */
    if (rc > 0 && r.body == GH_H1_BODY_CHUNKED)
        check_chunked(b + rc, size - (size_t)rc, seed);

    static const int methods[] = {GH_M_GET, GH_M_HEAD, GH_M_CONNECT};
    for (int i = 0; i < 3; i++)
        check_response(b, size, &dflt, methods[i], seed);
    check_response(b, size, &small, GH_M_GET, seed);

    check_chunked(b, size, seed);

    /* has_token over the input, as a value: must not read outside */
    gh_str_t v = gh_str(b, GH_MIN(size, (size_t)256));
    (void)gh_h1_has_token(v, GH_STR("close"));
    return 0;
}
