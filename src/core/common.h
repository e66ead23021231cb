/* common.h: the few definitions every gatehouse module shares.
 *
 * String views (gh_str_t), the error convention (0 ok, negative GH_E* codes
 * from one X-macro table that gives each a name and a message), and small
 * helpers. Included by every layer; includes nothing of ours. */
#ifndef GH_CORE_COMMON_H
#define GH_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* A view of bytes owned elsewhere: never NUL-terminated by contract. */
typedef struct {
    const char *p;
    size_t n;
} gh_str_t;

#define GH_STR(lit) ((gh_str_t){(lit), sizeof(lit) - 1})
#define GH_STR_NULL ((gh_str_t){NULL, 0})

static inline gh_str_t gh_str(const char *p, size_t n) { return (gh_str_t){p, n}; }

static inline int gh_str_eq(gh_str_t a, gh_str_t b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* ASCII case-insensitive comparison (header names, tokens). The first bytes are compared inline
 * first (equal up to case only if equal with bit 5 set): most names of the same length differ
 * there, and a call is saved. */
static inline int gh_str_caseeq(gh_str_t a, gh_str_t b)
{
    return a.n == b.n &&
           (a.n == 0 || ((a.p[0] | 0x20) == (b.p[0] | 0x20) && strncasecmp(a.p, b.p, a.n) == 0));
}

static inline int gh_str_caseeq_lit(gh_str_t a, const char *lit)
{
    return gh_str_caseeq(a, gh_str(lit, strlen(lit)));
}

/* The error table: X(NAME, message). Codes are negative and below -GH_ERR_BASE, GH_E##NAME =
 * -(GH_ERR_BASE + index), apart from the negative errno values (-1..-4095) that functions also
 * return on the same channel: GH_ENOMEM was -2, which is -ENOENT, and a missing file was once
 * reported as "out of memory". */
#define GH_ERR_BASE 4096
#define GH_ERRORS(X)                                             \
    X(AGAIN, "need more input")                                  \
    X(NOMEM, "out of memory")                                    \
    X(INVAL, "invalid argument")                                 \
    X(IO, "input/output error")                                  \
    X(TIMEOUT, "timed out")                                      \
    X(CLOSED, "connection closed")                               \
    X(LIMIT, "limit exceeded")                                   \
    X(NOTFOUND, "not found")                                     \
    X(CONFIG, "configuration error")                             \
    /* HTTP/1 parser rejections: one code per reason, counted */ \
    X(H1_METHOD, "invalid method")                               \
    X(H1_TARGET, "invalid request target")                       \
    X(H1_VERSION, "invalid HTTP version")                        \
    X(H1_VERSION_UNSUPPORTED, "unsupported HTTP version")        \
    X(H1_LINE_TOO_LONG, "request line too long")                 \
    X(H1_HEAD_TOO_LARGE, "header section too large")             \
    X(H1_TOO_MANY_HEADERS, "too many header fields")             \
    X(H1_HEADER_NAME, "invalid header field name")               \
    X(H1_HEADER_VALUE, "invalid header field value")             \
    X(H1_SPACE_BEFORE_COLON, "whitespace before colon")          \
    X(H1_OBS_FOLD, "obsolete line folding")                      \
    X(H1_BARE_CR, "bare CR")                                     \
    X(H1_BARE_LF, "bare LF (CRLF required)")                     \
    X(H1_CL_AND_TE, "Content-Length with Transfer-Encoding")     \
    X(H1_DUP_CL, "duplicate Content-Length")                     \
    X(H1_BAD_CL, "invalid Content-Length")                       \
    X(H1_BAD_TE, "unsupported Transfer-Encoding")                \
    X(H1_HOST, "missing, duplicate or invalid Host")             \
    X(H1_EXPECT, "unsupported Expect")                           \
    X(H1_CHUNK, "invalid chunked encoding")                      \
    X(H1_STATUS, "invalid status line")

enum {
    GH_OK = 0,
#define GH_X_ENUM(name, msg) GH_E##name##_IDX,
    GH_ERRORS(GH_X_ENUM)
#undef GH_X_ENUM
    GH_E__COUNT
};

#define GH_X_CODE(name, msg) GH_E##name = -(GH_ERR_BASE + GH_E##name##_IDX),
enum { GH_ERRORS(GH_X_CODE) GH_E__LAST = -(GH_ERR_BASE + GH_E__COUNT) };
#undef GH_X_CODE

/* Name ("H1_BARE_CR") of a GH_E* code ("UNKNOWN" for anything else); message of a negative code:
 * a GH_E* code's ("bare CR") or a negative errno's (strerror). */
const char *gh_err_name(int code);
const char *gh_err_msg(int code);
/* Index 1..GH_E__COUNT-1 of a GH_E* code, for per-reason counters, and back. */
static inline int gh_err_index(int code) { return -code - GH_ERR_BASE; }
static inline int gh_err_code(int index) { return -(GH_ERR_BASE + index); }

#define GH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GH_MAX(a, b) ((a) > (b) ? (a) : (b))
#define GH_LIKELY(x) __builtin_expect(!!(x), 1)
#define GH_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define GH_CACHELINE 64

/* The k < 8 bytes at p as a little-endian word, zero above them, reading no byte past p + k:
 * two overlapping loads instead of a memcpy of variable length (a call, on the hot paths that
 * end every string with one). */
static inline uint64_t gh_load_tail(const void *p, size_t k)
{
    const unsigned char *s = p;
    if (k >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + k - 4, 4);
        return lo | (uint64_t)hi << (8 * (k - 4));
    }
    if (k >= 2) {
        uint16_t lo, hi;
        memcpy(&lo, s, 2);
        memcpy(&hi, s + k - 2, 2);
        return lo | (uint64_t)hi << (8 * (k - 2));
    }
    return k ? s[0] : 0;
}

/* v in decimal into out (room for 20 bytes); the number of digits. The one decimal writer of the
 * tree (access log, trace export, the heads the proxy writes): digits counted first, then written
 * from the last, two at a time. No printf: numbers are written on every request. */
static inline size_t gh_u64_dec(char *out, uint64_t v)
{
    static const char dig2[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                               "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                               "8081828384858687888990919293949596979899";
    size_t n = 1;
    for (uint64_t p = 10; n < 20 && v >= p; p *= 10) /* (p wraps only once n is 20: unsigned, defined) */
        n++;
    char *e = out + n;
    for (; v >= 100; v /= 100) {
        e -= 2;
        memcpy(e, dig2 + 2 * (v % 100), 2);
    }
    if (v >= 10)
        memcpy(e - 2, dig2 + 2 * v, 2);
    else
        e[-1] = (char)('0' + v);
    return n;
}

#endif
