/* h1.h: the strict HTTP/1.1 message parser (RFC 9110/9112), server and client side.
 *
 * Stateless over a contiguous buffer: the caller keeps the bytes received so far
 * and calls again when more arrive; the parser answers GH_EAGAIN until the whole
 * header section is present, then fills a request or response whose strings are
 * views into the caller's buffer. Bodies are framed by the caller from the parsed
 * framing (content_length / chunked / until-close) and, for chunked, decoded or
 * validated incrementally by gh_h1_chunked_step().
 *
 * Strictness (safe defaults at the perimeter): anything that two parsers could
 * read differently is an error, never normalised: CRLF line endings only (bare LF
 * and bare CR rejected), obs-fold, whitespace before the colon, bytes outside
 * token in names, NUL/CR/LF/other CTLs (except HTAB) in values, Content-Length with
 * Transfer-Encoding, duplicate Content-Length (even equal), a Content-Length that
 * is not 1*DIGIT or overflows, any transfer coding but a single final "chunked",
 * Transfer-Encoding in HTTP/1.0, a missing (1.1), duplicate or malformed Host.
 *
 * Called by the connection code (src/http/conn.c, src/proxy) and the fuzz target.
 * Calls nothing but libc. */
#ifndef GH_HTTP_H1_H
#define GH_HTTP_H1_H

#include "core/common.h"

typedef struct {
    gh_str_t name;
    gh_str_t value; /* leading and trailing OWS removed */
} gh_h1_header_t;

typedef struct {
    uint32_t max_line;    /* request line / status line incl. CRLF; over it: H1_LINE_TOO_LONG (414) */
    uint32_t max_head;    /* whole header section incl. request line; over it: H1_HEAD_TOO_LARGE (431) */
    uint16_t max_headers; /* field count; over it: H1_TOO_MANY_HEADERS (431) */
} gh_h1_limits_t;

enum gh_h1_method {
    GH_M_OTHER = 0, /* a valid token we do not know: forwarded as is */
    GH_M_GET,
    GH_M_HEAD,
    GH_M_POST,
    GH_M_PUT,
    GH_M_DELETE,
    GH_M_CONNECT,
    GH_M_OPTIONS,
    GH_M_TRACE,
    GH_M_PATCH,
};

/* Framing of a body, decided by the parser from the head. */
enum gh_h1_body {
    GH_H1_BODY_NONE = 0,  /* no body (requests without CL/TE; HEAD/1xx/204/304 responses) */
    GH_H1_BODY_LENGTH,    /* content_length bytes */
    GH_H1_BODY_CHUNKED,   /* chunked */
    GH_H1_BODY_UNTIL_CLOSE /* responses only: read until the connection closes */
};

typedef struct {
    gh_str_t method;
    int method_id;          /* enum gh_h1_method */
    gh_str_t target;        /* request-target as received */
    gh_str_t path;          /* origin-form: target up to '?'; absolute-form: path part (at least "/") */
    gh_str_t query;         /* after '?', without it; empty if none */
    int minor;              /* 0 or 1 (HTTP/1.0 or HTTP/1.1) */
    gh_h1_header_t *headers; /* the caller's array, filled */
    uint16_t nheaders;
    uint32_t head_len;      /* bytes of the whole header section incl. final CRLF */
    int body;               /* enum gh_h1_body: NONE, LENGTH or CHUNKED */
    uint64_t content_length; /* valid when body == GH_H1_BODY_LENGTH */
    gh_str_t host;          /* Host header value, or the authority of an absolute-form target; as received */
    unsigned keep_alive : 1;      /* 1.1 without "close", or 1.0 with "keep-alive" */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned upgrade_websocket : 1; /* Upgrade: websocket with Connection: upgrade */
    unsigned upgrade_other : 1;   /* some other Upgrade (h2c included): never forwarded */
    unsigned has_te_trailers : 1; /* TE: trailers */
} gh_h1_request_t;

typedef struct {
    int minor;
    int status;             /* 100..999 */
    gh_str_t reason;
    gh_h1_header_t *headers;
    uint16_t nheaders;
    uint32_t head_len;
    int body;               /* enum gh_h1_body */
    uint64_t content_length;
    unsigned keep_alive : 1; /* the server will keep the connection open */
    unsigned upgrade : 1;    /* 101 with Upgrade header */
} gh_h1_response_t;

/* Parse a request head from buf[0..len).
 * Returns head_len (> 0) when complete, GH_EAGAIN when more bytes are needed (and
 * no limit has been exceeded yet), or a negative GH_EH1_* code. headers/max_headers
 * is the caller's storage (max_headers >= lim->max_headers). On error *status (if
 * not NULL) receives the status to answer: 400, 414, 431, 501 or 505 (417 for
 * an unsupported Expect). */
int gh_h1_parse_request(const char *buf, size_t len, const gh_h1_limits_t *lim,
                        gh_h1_request_t *req, gh_h1_header_t *headers, size_t max_headers,
                        int *status);

/* Parse a response head. req_method_id is the method of the request it answers
 * (HEAD and CONNECT change the framing). Interim 1xx responses parse as complete
 * heads with body NONE; the caller loops. Same return convention as above. */
int gh_h1_parse_response(const char *buf, size_t len, const gh_h1_limits_t *lim,
                         int req_method_id, gh_h1_response_t *resp, gh_h1_header_t *headers,
                         size_t max_headers);

/* Find a header by name (case-insensitive); NULL if absent. */
const gh_h1_header_t *gh_h1_find(const gh_h1_header_t *h, size_t n, gh_str_t name);
/* Percent-decode v into out (NUL-terminated); plus: '+' is a space (query strings). The
 * length, or -1 on a bad escape or when it does not fit. */
int gh_h1_pct_decode(gh_str_t v, char *out, size_t cap, int plus);

/* The value of cookie name (case-sensitive, as RFC 6265) across the Cookie fields; a
 * DQUOTE-wrapped value without its quotes. p is NULL when absent (an empty value has p set). */
gh_str_t gh_h1_cookie(const gh_h1_header_t *h, size_t n, gh_str_t name);

/* Whether a comma-separated field value contains token tok (case-insensitive). */
int gh_h1_has_token(gh_str_t value, gh_str_t tok);

/* Incremental chunked-body decoder/validator. Zero it before the first call. */
typedef struct {
    uint8_t state;
    uint8_t done;         /* last-chunk and trailer section consumed */
    uint16_t line_len;    /* bytes in the current chunk-size or trailer line */
    uint32_t trailer_len; /* bytes of trailers so far */
    uint64_t remaining;   /* data bytes left in the current chunk */
    uint64_t total;       /* data bytes seen so far (for body size limits) */
    char *trailers;       /* optional: the trailer section is copied here (HTTP/2 sends it as HEADERS) */
    uint32_t trailers_cap, trailers_len; /* bytes copied stop at cap (the section is validated regardless) */
} gh_h1_chunked_t;

#define GH_H1_CHUNK_LINE_MAX 4096   /* chunk-size line incl. extensions */
#define GH_H1_TRAILER_MAX 16384     /* whole trailer section */

/* Consume input p[0..n) up to the end of the next chunk-data span (or through the
 * end of the body). Returns bytes consumed (0 <= ret <= n; 0 only when n == 0 or
 * done) or GH_EH1_CHUNK. *data is set to the chunk data inside the consumed bytes
 * (possibly empty). A proxy forwarding chunked as chunked sends the consumed bytes
 * unchanged (they have been validated); one de-chunking sends only *data.
 * Loop until all input is consumed or c->done. */
long gh_h1_chunked_step(gh_h1_chunked_t *c, const char *p, size_t n, gh_str_t *data);

#endif
