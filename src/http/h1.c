/* h1.c: the strict HTTP/1.1 parser (see h1.h for the contract).
 *
 * One left-to-right pass over the bytes received so far, validating as it goes:
 * every error is detected at the byte that makes the message invalid, so a prefix
 * of a message answers either GH_EAGAIN or the same error as the whole, and bad
 * input (bare LF, NUL, an over-long line) is refused as soon as it arrives rather
 * than when the head completes. Each call restarts from byte 0 (the API is
 * stateless); callers bound the cost with max_head.
 *
 * Choices where RFC 9110/9112 leave room (all on the side of rejecting):
 * - Up to MAX_LEADING_CRLF empty lines before a request line are skipped (RFC
 *   9112 §2.2 asks for at least one); more are a METHOD error.
 * - Request-target: bytes 0x21-0x7E except '#' (a fragment is never part of a
 *   request-target and parsers disagree on stripping it). Absolute-form only with
 *   the http and https schemes and without userinfo (RFC 9110 §4.2.4).
 *   OPTIONS * gives path "*"; CONNECT authority-form gives an empty path.
 * - Host: RFC 3986 uri-host (reg-name with pct-encoding, or an IPv6 literal;
 *   IPvFuture refused), the port 1-5 digits <= 65535 when the colon is present.
 *   An empty Host is accepted only in HTTP/1.0 (where Host is optional).
 *   The Host field is validated for absolute-form too, though host comes from the
 *   target.
 * - Whitespace right after the start line is answered as OBS_FOLD.
 * - Transfer-Encoding: only the single coding "chunked". A single other coding
 *   token answers 501 (RFC 9112 §6.1: unknown coding); lists, parameters, empty
 *   values and repeated fields answer 400 (they are framing ambiguity, not an
 *   unimplemented feature). The same rule applies to responses: a backend that
 *   sends "gzip, chunked" is refused rather than re-framed.
 * - Expect: 100-continue in HTTP/1.0 is ignored (RFC 9110 §10.1.1); anything else
 *   answers 417 whatever the version.
 * - upgrade_websocket needs GET, HTTP/1.1, exactly one Upgrade field whose value
 *   is the single token "websocket", and Connection: upgrade; any other Upgrade
 *   sets upgrade_other so that "websocket, h2c" cannot slip an h2c upgrade through.
 * - gh_h1_has_token compares whole list elements (no parameter stripping).
 * - Responses: a 101 without an Upgrade field is a STATUS error; a 2xx to CONNECT
 *   is a tunnel (body NONE, keep_alive 0). Host/Expect/TE in responses are not
 *   interpreted. A status line that does not start with HTTP/x.y is VERSION.
 * - Chunk extensions: BWS only where the grammar puts it (before ';' and around
 *   '='); trailing whitespace before CRLF is an error. */
#include "http/h1.h"

#include <ctype.h>

#define MAX_LEADING_CRLF 4
#define CL_MAX (1ull << 62)
#define CHUNK_SIZE_MAX (1ull << 60)

/* Defaults when the caller passes no limits. */
static const gh_h1_limits_t default_limits = {8192, 65536, 100};

/* ---- character classes ---------------------------------------------------- */

enum {
    C_TCHAR = 1,  /* token: ALPHA DIGIT !#$%&'*+-.^_`|~ */
    C_TARGET = 2, /* request-target byte: 0x21-0x7E except '#' */
    C_VALUE = 4,  /* field-value byte: VCHAR obs-text SP HTAB */
    C_HOST = 8,   /* reg-name without '%': unreserved sub-delims */
    C_HEX = 16,
    C_QDTEXT = 32, /* quoted-string text: HTAB SP 0x21 0x23-0x5B 0x5D-0x7E obs-text */
};

static uint8_t ctab[256];

/* Built at load time: a constructor keeps the table readable (one line per class)
 * without a 256-entry literal, and the parser never branches on initialisation. */
__attribute__((constructor)) static void init_tables(void)
{
    for (int c = 0; c < 256; c++) {
        uint8_t f = 0;
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alnum || (c && strchr("!#$%&'*+-.^_`|~", c)))
            f |= C_TCHAR;
        if (c >= 0x21 && c <= 0x7e && c != '#')
            f |= C_TARGET;
        if ((c >= 0x20 && c != 0x7f) || c == '\t')
            f |= C_VALUE;
        if (alnum || (c && strchr("-._~!$&'()*+,;=", c)))
            f |= C_HOST;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            f |= C_HEX;
        if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
            (c >= 0x5d && c <= 0x7e) || c >= 0x80)
            f |= C_QDTEXT;
        ctab[c] = f;
    }
}

#define IS(c, cls) (ctab[(uint8_t)(c)] & (cls))

static inline int hexval(uint8_t c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* SWAR over 8 bytes: nonzero if any byte is < 0x20 or == 0x7f, i.e. the word may
 * hold something that is not plain field-value text (HTAB included, which the
 * byte loop then accepts). Exact for presence, which is all we need. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline uint64_t word_has_ctl(uint64_t x)
{
    uint64_t lt20 = (x - ONES * 0x20) & ~x & HIGHS;
    uint64_t y = x ^ (ONES * 0x7f);
    uint64_t del = (y - ONES) & ~y & HIGHS;
    return lt20 | del;
}

/* Nonzero if any byte is outside 0x21-0x7e or is '#': not plain target text. */
static inline uint64_t word_not_target(uint64_t x)
{
    uint64_t lt21 = (x - ONES * 0x21) & ~x & HIGHS;
    uint64_t ge7f = ((x & ~HIGHS) + ONES * 0x01) | x; /* high bit set if byte >= 0x7f */
    uint64_t y = x ^ (ONES * '#');
    uint64_t hash = (y - ONES) & ~y & HIGHS;
    return lt21 | (ge7f & HIGHS) | hash;
}

/* First byte in [p, end) that is not field-value text. */
static inline const char *scan_value(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (word_has_ctl(x)) {
            for (int i = 0; i < 8; i++)
                if (!IS(p[i], C_VALUE))
                    return p + i;
        }
        p += 8;
    }
    while (p < end && IS(*p, C_VALUE))
        p++;
    return p;
}

static inline const char *scan_target(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (word_not_target(x)) {
            for (int i = 0; i < 8; i++)
                if (!IS(p[i], C_TARGET))
                    return p + i;
        }
        p += 8;
    }
    while (p < end && IS(*p, C_TARGET))
        p++;
    return p;
}

/* Eight table lookups ANDed per step: one branch per 8 name bytes on the hot path. */
static inline const char *scan_token(const char *p, const char *end)
{
    const uint8_t *u = (const uint8_t *)p;
    while (end - (const char *)u >= 8 &&
           (ctab[u[0]] & ctab[u[1]] & ctab[u[2]] & ctab[u[3]] & ctab[u[4]] & ctab[u[5]] &
            ctab[u[6]] & ctab[u[7]] & C_TCHAR))
        u += 8;
    p = (const char *)u;
    while (p < end && IS(*p, C_TCHAR))
        p++;
    return p;
}

/* Case-insensitive match of a token against a lowercase literal. |0x20 folds
 * only letters among token bytes (no other tchar maps onto a letter or '-'). */
static inline int name_is(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((uint8_t)p[i] | 0x20) != (uint8_t)lit[i])
            return 0;
    return 1;
}

/* The error for an unexpected byte at p: CR/LF misuse is reported as such (bare
 * LF, bare CR), a proper CRLF in the wrong place as err; GH_EAGAIN if a CR is the
 * last byte available and the next one decides. */
static int line_err(const char *p, const char *end, int err)
{
    if (*p == '\n')
        return GH_EH1_BARE_LF;
    if (*p == '\r') {
        if (p + 1 >= end)
            return GH_EAGAIN;
        return p[1] == '\n' ? err : GH_EH1_BARE_CR;
    }
    return err;
}

static int status_of(int err)
{
    switch (err) {
    case GH_EH1_LINE_TOO_LONG: return 414;
    case GH_EH1_HEAD_TOO_LARGE:
    case GH_EH1_TOO_MANY_HEADERS: return 431;
    case GH_EH1_VERSION_UNSUPPORTED: return 505;
    case GH_EH1_EXPECT: return 417;
    default: return 400;
    }
}

/* ---- list values ----------------------------------------------------------- */

static inline uint8_t lower(uint8_t c)
{
    return (uint8_t)(c + ((unsigned)(c - 'A') < 26u) * 32);
}

static int ascii_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((uint8_t)a[i]) != lower((uint8_t)b[i]))
            return 0;
    return 1;
}

#define CASEEQ_LIT(v, lit) ((v).n == sizeof(lit) - 1 && ascii_caseeq((v).p, (lit), sizeof(lit) - 1))

/* Next element of a comma-separated list at or after *pp, OWS trimmed (maybe
 * empty); 0 when the list is exhausted. */
static int next_element(const char **pp, const char *end, gh_str_t *el)
{
    const char *p = *pp, *s, *e;
    if (p >= end)
        return 0;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    s = p;
    while (p < end && *p != ',')
        p++;
    e = p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *el = gh_str(s, (size_t)(e - s));
    *pp = p < end ? p + 1 : p;
    return 1;
}

int gh_h1_has_token(gh_str_t value, gh_str_t tok)
{
    const char *p = value.p, *end = value.p + value.n;
    gh_str_t el;
    while (next_element(&p, end, &el))
        if (el.n == tok.n && ascii_caseeq(el.p, tok.p, tok.n))
            return 1;
    return 0;
}

const gh_h1_header_t *gh_h1_find(const gh_h1_header_t *h, size_t n, gh_str_t name)
{
    for (size_t i = 0; i < n; i++)
        if (h[i].name.n == name.n && ascii_caseeq(h[i].name.p, name.p, name.n))
            return &h[i];
    return NULL;
}

gh_str_t gh_h1_cookie(const gh_h1_header_t *h, size_t n, gh_str_t name)
{
    for (size_t i = 0; i < n; i++) {
        if (h[i].name.n != 6 || !ascii_caseeq(h[i].name.p, "cookie", 6))
            continue;
        /* Cookie: a=1; b=2 */
        const char *p = h[i].value.p, *end = p + h[i].value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *eq = memchr(p, '=', (size_t)(end - p));
            const char *semi = memchr(p, ';', (size_t)(end - p));
            if (!semi)
                semi = end;
            if (eq && eq < semi && (size_t)(eq - p) == name.n && !memcmp(p, name.p, name.n)) {
                const char *v = eq + 1;
                size_t vn = (size_t)(semi - v);
                if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"')
                    v++, vn -= 2;
                return gh_str(v, vn);
            }
            p = semi;
        }
    }
    return GH_STR_NULL;
}

/* ---- Host ------------------------------------------------------------------ */

/* uri-host [ ":" port ] (see the file comment); need_port for CONNECT targets. */
static int valid_authority(const char *p, size_t n, int need_port)
{
    const char *end = p + n, *q = p;
    if (!n)
        return 0;
    if (*q == '[') {
        int colon = 0;
        q++;
        const char *s = q;
        while (q < end && (IS(*q, C_HEX) || *q == ':' || *q == '.')) {
            colon |= *q == ':';
            q++;
        }
        if (q == end || *q != ']' || q - s < 2 || !colon)
            return 0;
        q++;
    } else {
        const char *s = q;
        while (q < end) {
            if (IS(*q, C_HOST))
                q++;
            else if (*q == '%' && end - q >= 3 && IS(q[1], C_HEX) && IS(q[2], C_HEX))
                q += 3;
            else
                break;
        }
        if (q == s)
            return 0;
    }
    if (q == end)
        return !need_port;
    if (*q != ':')
        return 0;
    q++;
    if (q == end || end - q > 5)
        return 0;
    unsigned port = 0;
    for (; q < end; q++) {
        if (*q < '0' || *q > '9')
            return 0;
        port = port * 10 + (unsigned)(*q - '0');
    }
    return port <= 65535;
}

/* ---- header section (shared by requests and responses) --------------------- */

/* What the framing and connection fields said, gathered while scanning. */
typedef struct {
    int is_request;
    int minor;
    int status;          /* a status other than the error's default (501 for BAD_TE) */
    uint8_t cl_seen, te_seen, host_seen, upgrade_seen;
    uint8_t conn_close, conn_keepalive, conn_upgrade, expect_continue, te_trailers;
    uint64_t cl;
    gh_str_t host;
    gh_str_t upgrade;
} fields_t;

/* Content-Length = 1*DIGIT, bounded (no sign, no list, no hex, no whitespace). */
static int parse_cl(gh_str_t v, uint64_t *out)
{
    uint64_t x = 0;
    if (!v.n)
        return GH_EH1_BAD_CL;
    for (size_t i = 0; i < v.n; i++) {
        unsigned d = (unsigned)(uint8_t)v.p[i] - '0';
        if (d > 9 || x > (CL_MAX - d) / 10)
            return GH_EH1_BAD_CL;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Interpret one field whose name is one of the few that change framing, routing
 * or the connection. Order of checks: repeated/conflicting framing first, so that
 * smuggling attempts are counted as such whatever the values look like. */
static int on_field(fields_t *f, gh_str_t name, gh_str_t v)
{
    const char *n = name.p;
    switch (name.n) {
    case 2:
        if (f->is_request && name_is(n, "te", 2) && gh_h1_has_token(v, GH_STR("trailers")))
            f->te_trailers = 1;
        return 0;
    case 4:
        if (!f->is_request || !name_is(n, "host", 4))
            return 0;
        if (f->host_seen)
            return GH_EH1_HOST;
        f->host_seen = 1;
        f->host = v;
        if (v.n ? !valid_authority(v.p, v.n, 0) : f->minor == 1)
            return GH_EH1_HOST;
        return 0;
    case 6:
        if (!f->is_request || !name_is(n, "expect", 6))
            return 0;
        if (!CASEEQ_LIT(v, "100-continue"))
            return GH_EH1_EXPECT;
        f->expect_continue = f->minor == 1;
        return 0;
    case 7:
        if (!name_is(n, "upgrade", 7))
            return 0;
        if (f->upgrade_seen < 2) /* saturate: 256 fields must not wrap back to "none" */
            f->upgrade_seen++;
        f->upgrade = v;
        return 0;
    case 10:
        if (!name_is(n, "connection", 10))
            return 0;
        {
            /* one pass for the three options we act on */
            const char *p = v.p, *end = v.p + v.n;
            gh_str_t el;
            while (next_element(&p, end, &el)) {
                if (el.n == 5 && ascii_caseeq(el.p, "close", 5))
                    f->conn_close = 1;
                else if (el.n == 10 && ascii_caseeq(el.p, "keep-alive", 10))
                    f->conn_keepalive = 1;
                else if (el.n == 7 && ascii_caseeq(el.p, "upgrade", 7))
                    f->conn_upgrade = 1;
            }
        }
        return 0;
    case 14:
        if (!name_is(n, "content-length", 14))
            return 0;
        if (f->cl_seen)
            return GH_EH1_DUP_CL;
        f->cl_seen = 1;
        if (f->te_seen)
            return GH_EH1_CL_AND_TE;
        return parse_cl(v, &f->cl);
    case 17:
        if (!name_is(n, "transfer-encoding", 17))
            return 0;
        if (f->te_seen)
            return GH_EH1_BAD_TE;
        f->te_seen = 1;
        if (f->cl_seen)
            return GH_EH1_CL_AND_TE;
        if (f->minor == 0) /* RFC 9112 §6.1: 1.0 peers do not know chunked */
            return GH_EH1_BAD_TE;
        if (CASEEQ_LIT(v, "chunked"))
            return 0;
        if (v.n && scan_token(v.p, v.p + v.n) == v.p + v.n)
            f->status = 501; /* one well-formed coding we do not implement */
        return GH_EH1_BAD_TE;
    default:
        return 0;
    }
}

/* Field lines from p up to and including the empty line. Sets *out past it. */
static int parse_fields(const char *p, const char *end, fields_t *f, gh_h1_header_t *hdr,
                        size_t maxh, uint16_t *nh, const char **out)
{
    size_t n = 0;
    for (;;) {
        if (p >= end)
            return GH_EAGAIN;
        uint8_t c = (uint8_t)*p;
        if (c == '\r') {
            if (p + 1 >= end)
                return GH_EAGAIN;
            if (p[1] != '\n')
                return GH_EH1_BARE_CR;
            *out = p + 2;
            *nh = (uint16_t)n;
            return 0;
        }
        if (c == '\n')
            return GH_EH1_BARE_LF;
        if (c == ' ' || c == '\t')
            return GH_EH1_OBS_FOLD;
        if (n >= maxh)
            return GH_EH1_TOO_MANY_HEADERS;

        const char *ns = p;
        p = scan_token(p, end);
        if (p >= end)
            return GH_EAGAIN;
        if (*p != ':' || p == ns) {
            if (p == ns || (*p != ' ' && *p != '\t'))
                return line_err(p, end, GH_EH1_HEADER_NAME);
            /* "Name : v" is the classic smuggling variant; "Na me: v" is just a bad name */
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            if (p >= end)
                return GH_EAGAIN;
            return *p == ':' ? GH_EH1_SPACE_BEFORE_COLON : line_err(p, end, GH_EH1_HEADER_NAME);
        }
        gh_str_t name = gh_str(ns, (size_t)(p - ns));
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *vs = p;
        p = scan_value(p, end);
        if (p >= end)
            return GH_EAGAIN;
        if (*p != '\r')
            return line_err(p, end, GH_EH1_HEADER_VALUE);
        if (p + 1 >= end)
            return GH_EAGAIN;
        if (p[1] != '\n')
            return GH_EH1_BARE_CR;
        const char *ve = p;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        gh_str_t value = gh_str(vs, (size_t)(ve - vs));
        hdr[n].name = name;
        hdr[n].value = value;
        n++;
        int rc = on_field(f, name, value);
        if (rc)
            return rc;
        p += 2;
    }
}

/* "HTTP/1.x" then what must follow it (CRLF for requests, SP for responses).
 * Validates byte by byte so that garbage is refused before the line ends. */
static int parse_version(const char *p, const char *end, char next, int *minor)
{
    static const char pat[] = "HTTP/";
    for (int i = 0; i < 9; i++) {
        if (p + i >= end)
            return GH_EAGAIN;
        char c = p[i];
        int ok;
        if (i < 5)
            ok = c == pat[i];
        else if (i == 5 || i == 7)
            ok = c >= '0' && c <= '9';
        else if (i == 6)
            ok = c == '.';
        else
            ok = c == next;
        if (!ok)
            return line_err(p + i, end, GH_EH1_VERSION);
    }
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return GH_EH1_VERSION_UNSUPPORTED;
    *minor = p[7] - '0';
    return 0;
}

static int method_id(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (!memcmp(m, "GET", 3)) return GH_M_GET;
        if (!memcmp(m, "PUT", 3)) return GH_M_PUT;
        break;
    case 4:
        if (!memcmp(m, "POST", 4)) return GH_M_POST;
        if (!memcmp(m, "HEAD", 4)) return GH_M_HEAD;
        break;
    case 5:
        if (!memcmp(m, "PATCH", 5)) return GH_M_PATCH;
        if (!memcmp(m, "TRACE", 5)) return GH_M_TRACE;
        break;
    case 6:
        if (!memcmp(m, "DELETE", 6)) return GH_M_DELETE;
        break;
    case 7:
        if (!memcmp(m, "OPTIONS", 7)) return GH_M_OPTIONS;
        if (!memcmp(m, "CONNECT", 7)) return GH_M_CONNECT;
        break;
    }
    return GH_M_OTHER;
}

/* Request-target form by method, and path/query/host views. */
static int classify_target(gh_h1_request_t *r)
{
    const char *t = r->target.p, *end = t + r->target.n;
    static const char slash[] = "/";
    if (*t == '/') {
        if (r->method_id == GH_M_CONNECT)
            return GH_EH1_TARGET;
        const char *q = memchr(t, '?', r->target.n);
        r->path = gh_str(t, (size_t)((q ? q : end) - t));
        if (q)
            r->query = gh_str(q + 1, (size_t)(end - q - 1));
        return 0;
    }
    if (r->target.n == 1 && *t == '*') {
        if (r->method_id != GH_M_OPTIONS)
            return GH_EH1_TARGET;
        r->path = r->target;
        return 0;
    }
    if (r->method_id == GH_M_CONNECT) {
        if (!valid_authority(t, r->target.n, 1))
            return GH_EH1_TARGET;
        r->host = r->target;
        return 0;
    }
    size_t skip;
    if (r->target.n >= 7 && ascii_caseeq(t, "http://", 7))
        skip = 7;
    else if (r->target.n >= 8 && ascii_caseeq(t, "https://", 8))
        skip = 8;
    else
        return GH_EH1_TARGET;
    const char *a = t + skip, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?')
        ae++;
    if (!valid_authority(a, (size_t)(ae - a), 0))
        return GH_EH1_TARGET;
    r->host = gh_str(a, (size_t)(ae - a));
    const char *q = memchr(ae, '?', (size_t)(end - ae));
    if (q)
        r->query = gh_str(q + 1, (size_t)(end - q - 1));
    const char *pe = q ? q : end;
    r->path = pe > ae ? gh_str(ae, (size_t)(pe - ae)) : gh_str(slash, 1);
    return 0;
}

/* method SP request-target SP HTTP-version CRLF, within [p, lend). */
static int parse_request_line(const char *p, const char *lend, gh_h1_request_t *r,
                              const char **out)
{
    const char *s = p;
    p = scan_token(p, lend);
    if (p >= lend)
        return GH_EAGAIN;
    if (*p != ' ' || p == s)
        return line_err(p, lend, GH_EH1_METHOD);
    r->method = gh_str(s, (size_t)(p - s));
    r->method_id = method_id(s, r->method.n);

    s = ++p;
    p = scan_target(p, lend);
    if (p >= lend)
        return GH_EAGAIN;
    if (*p != ' ' || p == s)
        return line_err(p, lend, p == s || *p != '\r' ? GH_EH1_TARGET : GH_EH1_VERSION);
    r->target = gh_str(s, (size_t)(p - s));

    p++;
    int rc = parse_version(p, lend, '\r', &r->minor);
    if (rc)
        return rc;
    if (p + 9 >= lend)
        return GH_EAGAIN;
    if (p[9] != '\n')
        return GH_EH1_BARE_CR;
    rc = classify_target(r);
    if (rc)
        return rc;
    *out = p + 10;
    return 0;
}

/* The parse window: bytes past max_head are never looked at, and the start line
 * also stops at max_line. Running out of bytes at a limit is the limit's error. */
typedef struct {
    size_t max_line, max_head, max_fields;
} window_t;

static window_t window_of(const gh_h1_limits_t *lim, size_t max_headers)
{
    if (!lim)
        lim = &default_limits;
    window_t w;
    w.max_line = lim->max_line;
    w.max_head = lim->max_head > 0x7fffffffu ? 0x7fffffffu : lim->max_head;
    w.max_fields = GH_MIN((size_t)lim->max_headers, max_headers);
    return w;
}

/* The parse stopped for want of the byte at offset at: more bytes are coming
 * (EAGAIN) unless they are already there and a limit cut the window. line_limit is
 * the offset where the start line's window ends (SIZE_MAX past the start line). */
static int out_of_bytes(size_t at, size_t len, size_t line_limit)
{
    if (at >= len)
        return GH_EAGAIN;
    return at == line_limit ? GH_EH1_LINE_TOO_LONG : GH_EH1_HEAD_TOO_LARGE;
}

static int request(const char *buf, size_t len, const window_t *w, gh_h1_request_t *r,
                   gh_h1_header_t *hdr, fields_t *f)
{
    const char *end = buf + GH_MIN(len, w->max_head), *p = buf;
    for (int i = 0; i < MAX_LEADING_CRLF && p < end && *p == '\r'; i++) {
        if (p + 1 >= end)
            return out_of_bytes((size_t)(end - buf), len, SIZE_MAX);
        if (p[1] != '\n')
            return GH_EH1_BARE_CR;
        p += 2;
    }
    const char *lend = (size_t)(end - p) > w->max_line ? p + w->max_line : end;
    size_t line_limit = (size_t)(p - buf) + w->max_line;
    int rc = parse_request_line(p, lend, r, &p);
    if (rc == GH_EAGAIN)
        return out_of_bytes((size_t)(lend - buf), len, line_limit);
    if (rc)
        return rc;

    f->is_request = 1;
    f->minor = r->minor;
    rc = parse_fields(p, end, f, hdr, w->max_fields, &r->nheaders, &p);
    if (rc == GH_EAGAIN)
        return out_of_bytes((size_t)(end - buf), len, SIZE_MAX);
    if (rc)
        return rc;

    if (r->minor == 1 && !f->host_seen)
        return GH_EH1_HOST;
    if (!r->host.p)
        r->host = f->host;
    if (f->te_seen) {
        r->body = GH_H1_BODY_CHUNKED;
    } else if (f->cl_seen) {
        r->body = GH_H1_BODY_LENGTH;
        r->content_length = f->cl;
    }
    r->keep_alive = !f->conn_close && (r->minor == 1 || f->conn_keepalive);
    r->expect_continue = f->expect_continue;
    r->has_te_trailers = f->te_trailers;
    if (f->upgrade_seen) {
        int ws = f->upgrade_seen == 1 && f->conn_upgrade && r->minor == 1 &&
                 r->method_id == GH_M_GET && CASEEQ_LIT(f->upgrade, "websocket");
        r->upgrade_websocket = ws;
        r->upgrade_other = !ws;
    }
    r->head_len = (uint32_t)(p - buf);
    return (int)r->head_len;
}

/* Zeroing in two halves: gcc -O2 turns one 136-byte memset into rep stos, whose
 * start-up cost measured ~8% of a whole parse; halves become plain vector stores. */
static inline void zero_request(gh_h1_request_t *r)
{
    memset(r, 0, sizeof(*r) / 2);
    memset((char *)r + sizeof(*r) / 2, 0, sizeof(*r) - sizeof(*r) / 2);
}

int gh_h1_parse_request(const char *buf, size_t len, const gh_h1_limits_t *lim,
                        gh_h1_request_t *req, gh_h1_header_t *headers, size_t max_headers,
                        int *status)
{
    window_t w = window_of(lim, max_headers);
    fields_t f = {0};
    zero_request(req);
    req->headers = headers;
    int rc = request(buf, len, &w, req, headers, &f);
    if (rc < 0 && rc != GH_EAGAIN && status)
        *status = f.status ? f.status : status_of(rc);
    return rc;
}

/* ---- responses ------------------------------------------------------------- */

/* HTTP-version SP 3DIGIT SP reason CRLF ("HTTP/1.1 200\r\n" accepted too). */
static int parse_status_line(const char *p, const char *lend, gh_h1_response_t *r,
                             const char **out)
{
    int rc = parse_version(p, lend, ' ', &r->minor);
    if (rc)
        return rc;
    p += 9;
    int st = 0;
    for (int i = 0; i < 3; i++) {
        if (p + i >= lend)
            return GH_EAGAIN;
        if (p[i] < '0' || p[i] > '9' || (i == 0 && p[i] == '0'))
            return line_err(p + i, lend, GH_EH1_STATUS);
        st = st * 10 + (p[i] - '0');
    }
    r->status = st;
    p += 3;
    if (p >= lend)
        return GH_EAGAIN;
    const char *rs = p, *re = p;
    if (*p == ' ') {
        rs = ++p;
        p = scan_value(p, lend);
        re = p;
        if (p >= lend)
            return GH_EAGAIN;
    }
    if (*p != '\r')
        return line_err(p, lend, GH_EH1_STATUS);
    if (p + 1 >= lend)
        return GH_EAGAIN;
    if (p[1] != '\n')
        return GH_EH1_BARE_CR;
    r->reason = gh_str(rs, (size_t)(re - rs));
    *out = p + 2;
    return 0;
}

int gh_h1_parse_response(const char *buf, size_t len, const gh_h1_limits_t *lim,
                         int req_method_id, gh_h1_response_t *resp, gh_h1_header_t *headers,
                         size_t max_headers)
{
    window_t w = window_of(lim, max_headers);
    fields_t f = {0};
    gh_h1_response_t *r = resp;
    *r = (gh_h1_response_t){.headers = headers};

    const char *end = buf + GH_MIN(len, w.max_head), *p = buf;
    const char *lend = (size_t)(end - p) > w.max_line ? p + w.max_line : end;
    int rc = parse_status_line(p, lend, r, &p);
    if (rc == GH_EAGAIN)
        return out_of_bytes((size_t)(lend - buf), len, w.max_line);
    if (rc)
        return rc;

    f.minor = r->minor;
    rc = parse_fields(p, end, &f, headers, w.max_fields, &r->nheaders, &p);
    if (rc == GH_EAGAIN)
        return out_of_bytes((size_t)(end - buf), len, SIZE_MAX);
    if (rc)
        return rc;

    int st = r->status;
    if (st == 101 && !f.upgrade_seen)
        return GH_EH1_STATUS;
    r->upgrade = st == 101;
    r->keep_alive = !f.conn_close && (r->minor == 1 || f.conn_keepalive);
    r->content_length = f.cl;
    /* RFC 9112 §6.3, in its order. */
    if (req_method_id == GH_M_HEAD || st < 200 || st == 204 || st == 304) {
        r->body = GH_H1_BODY_NONE;
    } else if (req_method_id == GH_M_CONNECT && st < 300) {
        r->body = GH_H1_BODY_NONE;
        r->keep_alive = 0; /* the connection is now a tunnel */
    } else if (f.te_seen) {
        r->body = GH_H1_BODY_CHUNKED;
    } else if (f.cl_seen) {
        r->body = GH_H1_BODY_LENGTH;
    } else {
        r->body = GH_H1_BODY_UNTIL_CLOSE;
        r->keep_alive = 0;
    }
    r->head_len = (uint32_t)(p - buf);
    return (int)r->head_len;
}

/* ---- chunked --------------------------------------------------------------- */

enum {
    CS_SIZE0 = 0, /* first hex digit of chunk-size (zeroed state starts here) */
    CS_SIZE,      /* more hex digits */
    CS_BWS,       /* whitespace after size or ext value: only ';' may follow */
    CS_NAME0,     /* after ';': BWS then ext name */
    CS_NAME,
    CS_NAME_BWS,  /* whitespace after a name: '=' or ';' may follow */
    CS_VAL0,      /* after '=': BWS then token or quoted-string */
    CS_VAL,
    CS_QS,
    CS_QP,
    CS_QEND,      /* after the closing quote */
    CS_LINE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TR0,       /* start of a trailer line (or the final CRLF) */
    CS_TR_NAME,
    CS_TR_VAL,
    CS_TR_LF,
    CS_END_LF,
    CS_ERROR,
};

/* One framing byte; returns 0 or -1. Chunk-line and trailer bytes are counted
 * against their bounds here so that no state can grow without limit. */
static int chunk_byte(gh_h1_chunked_t *c, uint8_t b)
{
    uint8_t s = c->state;
    if (s <= CS_LINE_LF) {
        if (++c->line_len > GH_H1_CHUNK_LINE_MAX)
            return -1;
    } else if (s >= CS_TR0) {
        if (++c->trailer_len > GH_H1_TRAILER_MAX)
            return -1;
        if (c->trailers && c->trailers_len < c->trailers_cap)
            c->trailers[c->trailers_len++] = (char)b;
    }
    int ws = b == ' ' || b == '\t';
    switch (s) {
    case CS_SIZE0:
    case CS_SIZE:
        if (IS(b, C_HEX)) {
            if (c->remaining >= CHUNK_SIZE_MAX >> 4)
                return -1;
            c->remaining = (c->remaining << 4) | (uint64_t)hexval(b);
            c->state = CS_SIZE;
            return 0;
        }
        if (s == CS_SIZE0)
            return -1;
        if (b == ';') c->state = CS_NAME0;
        else if (ws) c->state = CS_BWS;
        else if (b == '\r') c->state = CS_LINE_LF;
        else return -1;
        return 0;
    case CS_BWS:
        if (b == ';') c->state = CS_NAME0;
        else if (!ws) return -1;
        return 0;
    case CS_NAME0:
        if (IS(b, C_TCHAR)) c->state = CS_NAME;
        else if (!ws) return -1;
        return 0;
    case CS_NAME:
        if (IS(b, C_TCHAR)) return 0;
        if (b == '=') c->state = CS_VAL0;
        else if (b == ';') c->state = CS_NAME0;
        else if (ws) c->state = CS_NAME_BWS;
        else if (b == '\r') c->state = CS_LINE_LF;
        else return -1;
        return 0;
    case CS_NAME_BWS:
        if (b == '=') c->state = CS_VAL0;
        else if (b == ';') c->state = CS_NAME0;
        else if (!ws) return -1;
        return 0;
    case CS_VAL0:
        if (IS(b, C_TCHAR)) c->state = CS_VAL;
        else if (b == '"') c->state = CS_QS;
        else if (!ws) return -1;
        return 0;
    case CS_VAL:
        if (IS(b, C_TCHAR)) return 0;
        __attribute__((fallthrough)); /* same followers as after a quoted value */
    case CS_QEND:
        if (b == ';') c->state = CS_NAME0;
        else if (ws) c->state = CS_BWS;
        else if (b == '\r') c->state = CS_LINE_LF;
        else return -1;
        return 0;
    case CS_QS:
        if (b == '"') c->state = CS_QEND;
        else if (b == '\\') c->state = CS_QP;
        else if (!IS(b, C_QDTEXT)) return -1;
        return 0;
    case CS_QP:
        if (!IS(b, C_VALUE)) /* HTAB SP VCHAR obs-text */
            return -1;
        c->state = CS_QS;
        return 0;
    case CS_LINE_LF:
        if (b != '\n')
            return -1;
        c->line_len = 0;
        c->state = c->remaining ? CS_DATA : CS_TR0;
        return 0;
    case CS_DATA_CR:
        if (b != '\r')
            return -1;
        c->state = CS_DATA_LF;
        return 0;
    case CS_DATA_LF:
        if (b != '\n')
            return -1;
        c->state = CS_SIZE0;
        return 0;
    case CS_TR0:
        if (b == '\r') c->state = CS_END_LF;
        else if (IS(b, C_TCHAR)) c->state = CS_TR_NAME; /* not SP/HTAB: obs-fold */
        else return -1;
        return 0;
    case CS_TR_NAME:
        if (IS(b, C_TCHAR)) return 0;
        if (b != ':')
            return -1;
        c->state = CS_TR_VAL;
        return 0;
    case CS_TR_VAL:
        if (IS(b, C_VALUE)) return 0;
        if (b != '\r')
            return -1;
        c->state = CS_TR_LF;
        return 0;
    case CS_TR_LF:
        if (b != '\n')
            return -1;
        c->state = CS_TR0;
        return 0;
    case CS_END_LF:
        if (b != '\n')
            return -1;
        c->done = 1;
        return 0;
    default:
        return -1;
    }
}

long gh_h1_chunked_step(gh_h1_chunked_t *c, const char *p, size_t n, gh_str_t *data)
{
    size_t i = 0;
    *data = gh_str(p, 0);
    if (c->state == CS_ERROR)
        return GH_EH1_CHUNK;
    if (c->done)
        return 0;
    while (i < n) {
        if (c->state == CS_DATA) {
            size_t take = (size_t)GH_MIN((uint64_t)(n - i), c->remaining);
            *data = gh_str(p + i, take);
            i += take;
            c->remaining -= take;
            c->total += take;
            if (!c->remaining)
                c->state = CS_DATA_CR;
            return (long)i;
        }
        if (chunk_byte(c, (uint8_t)p[i++])) {
            c->state = CS_ERROR;
            return GH_EH1_CHUNK;
        }
        if (c->done)
            return (long)i;
    }
    return (long)i;
}

int gh_h1_pct_decode(gh_str_t v, char *out, size_t cap, int plus)
{
    size_t n = 0;
    for (size_t i = 0; i < v.n; i++) {
        char ch = v.p[i];
        if (ch == '%') {
            if (i + 2 >= v.n)
                return -1;
            uint8_t x1 = (uint8_t)v.p[i + 1], x2 = (uint8_t)v.p[i + 2];
            if (!isxdigit(x1) || !isxdigit(x2))
                return -1;
            int a = hexval(x1), b = hexval(x2);
            ch = (char)(a * 16 + b);
            i += 2;
        } else if (ch == '+' && plus) {
            ch = ' ';
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = ch;
    }
    out[n] = 0;
    return (int)n;
}
