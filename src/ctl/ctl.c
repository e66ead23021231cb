/* ctl.c: see ctl.h. */
#include "ctl/ctl.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#define CONNECT_MS 5000
#define IO_TIMEOUT_S 30
#define ANSWER_MAX (64u << 20)
#define INPUT_MAX (16u << 20)
#define PAGE_MAX 500      /* the API's largest page */
#define PURGE_BATCH 64    /* the API's most values per purge */
#define RETRIES_429 3     /* a rate-limited request is tried again this often (Retry-After, at most 5 s) */
#define MAX_POS 8
#define YAML_NODES_MAX 500000 /* values in one document, aliases expanded */

/* ================================================================ HTTP/1.1 client */

static void seterr(char *err, size_t cap, const char *fmt, ...)
{
    if (!err || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Visible ASCII only: what may go into a request line or a header field we build. */
static int token_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* addr without an "http://" in front and trailing slashes: the Host field. */
static size_t addr_core(const char **addr)
{
    if (!strncmp(*addr, "http://", 7))
        *addr += 7;
    size_t n = strlen(*addr);
    while (n && (*addr)[n - 1] == '/')
        n--;
    return n;
}

/* HOST:PORT, [V6]:PORT or :PORT into host (127.0.0.1 when empty) and port (digits). */
static int split_addr(const char *addr, char *host, size_t hcap, char *port, size_t pcap)
{
    size_t n = addr_core(&addr);
    const char *end = addr + n, *h, *colon;
    size_t hl;
    if (n && addr[0] == '[') {
        const char *rb = memchr(addr, ']', n);
        if (!rb || rb + 1 >= end || rb[1] != ':')
            return -1;
        h = addr + 1, hl = (size_t)(rb - h), colon = rb + 1;
    } else {
        colon = n ? memrchr(addr, ':', n) : NULL;
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return -1;
        h = addr, hl = (size_t)(colon - addr);
    }
    size_t pl = (size_t)(end - colon - 1);
    if (!pl || pl >= pcap || hl >= hcap)
        return -1;
    for (size_t i = 0; i < pl; i++)
        if (!isdigit((unsigned char)colon[1 + i]))
            return -1;
    memcpy(port, colon + 1, pl);
    port[pl] = 0;
    if (hl)
        memcpy(host, h, hl);
    host[hl] = 0;
    if (!hl)
        snprintf(host, hcap, "127.0.0.1");
    return 0;
}

/* A connected blocking socket with I/O timeouts, or a negative code. */
static int connect_to(const char *addr, char *err, size_t errcap)
{
    char host[256], port[8];
    if (!token_ok(addr) || split_addr(addr, host, sizeof host, port, sizeof port) < 0) {
        seterr(err, errcap, "bad address (HOST:PORT or [IPV6]:PORT)");
        return GH_EINVAL;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g != 0) {
        seterr(err, errcap, "%s: %s", host, gai_strerror(g));
        return GH_EIO;
    }
    int fd = -1, why = ECONNREFUSED;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        int s = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s < 0) {
            why = errno;
            continue;
        }
        if (connect(s, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
            why = errno;
            close(s);
            continue;
        }
        struct pollfd pf = {.fd = s, .events = POLLOUT};
        int r;
        do
            r = poll(&pf, 1, CONNECT_MS);
        while (r < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r > 0 && getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0) {
            fd = s;
            break;
        }
        why = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
        close(s);
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        seterr(err, errcap, "%s", strerror(why));
        return GH_EIO;
    }
    int fl = fcntl(fd, F_GETFL);
    struct timeval tv = {IO_TIMEOUT_S, 0};
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
        seterr(err, errcap, "%s", strerror(errno));
        close(fd);
        return GH_EIO;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? GH_ETIMEOUT : GH_ECLOSED;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The value of header field name in head[0..n) (after the status line), trimmed, into out. */
static int field_value(const char *head, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', n), *end = head + n;
    if (cap)
        out[0] = 0;
    while (p && ++p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if ((size_t)(le - p) > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            const char *v = p + nl + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            while (le > v && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t'))
                le--;
            size_t vl = GH_MIN((size_t)(le - v), cap ? cap - 1 : 0);
            if (cap) {
                memcpy(out, v, vl);
                out[vl] = 0;
            }
            return 1;
        }
        p = eol;
    }
    return 0;
}

/* Decode a chunked body p[0..n): 1 complete (*out, *outlen), 0 more is needed, or an error. */
static int dechunk(const char *p, size_t n, char **out, size_t *outlen)
{
    size_t i = 0, len = 0, cap = 4096;
    char *b = malloc(cap + 1);
    if (!b)
        return GH_ENOMEM;
    int rc;
    for (;;) {
        const char *eol = memmem(p + i, n - i, "\r\n", 2);
        if (!eol) {
            rc = 0;
            break;
        }
        if (!isxdigit((unsigned char)p[i])) {
            rc = GH_ECLOSED;
            break;
        }
        char *e = NULL;
        unsigned long long sz = strtoull(p + i, &e, 16);
        if (e > eol || sz > ANSWER_MAX) {
            rc = sz > ANSWER_MAX ? GH_ELIMIT : GH_ECLOSED;
            break;
        }
        i = (size_t)(eol - p) + 2;
        if (sz == 0) { /* trailer fields up to an empty line */
            for (;;) {
                eol = memmem(p + i, n - i, "\r\n", 2);
                if (!eol || eol == p + i)
                    break;
                i = (size_t)(eol - p) + 2;
            }
            rc = eol ? 1 : 0;
            break;
        }
        if (n - i < sz + 2) {
            rc = 0;
            break;
        }
        if (memcmp(p + i + sz, "\r\n", 2)) {
            rc = GH_ECLOSED;
            break;
        }
        if (len + sz > cap) {
            while (len + sz > cap)
                cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                rc = GH_ENOMEM;
                break;
            }
            b = nb;
        }
        memcpy(b + len, p + i, sz);
        len += sz;
        i += sz + 2;
    }
    if (rc == 1) {
        b[len] = 0;
        *out = b;
        *outlen = len;
    } else {
        free(b);
    }
    return rc;
}

/* What has arrived in buf[0..len): 1 a complete answer (in *r), 0 more is needed, or an error. */
static int parse_answer(const char *buf, size_t len, int eof, int no_body, gh_ctl_resp_t *r)
{
    const char *he = memmem(buf, len, "\r\n\r\n", 4);
    if (!he)
        return eof ? GH_ECLOSED : 0;
    size_t hl = (size_t)(he - buf) + 2, bo = hl + 2;
    int status = 0;
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) || !isdigit((unsigned char)buf[7]) || buf[8] != ' ' ||
        sscanf(buf + 9, "%3d", &status) != 1 || status < 100 || status > 999)
        return GH_ECLOSED;
    char te[64], cl[32];
    char *body = NULL;
    size_t blen = 0;
    if (no_body || status < 200 || status == 204 || status == 304) {
        body = strdup("");
    } else if (field_value(buf, hl, "transfer-encoding", te, sizeof te) && strcasestr(te, "chunked")) {
        int rc = dechunk(buf + bo, len - bo, &body, &blen);
        if (rc <= 0)
            return rc < 0 ? rc : eof ? GH_ECLOSED : 0;
    } else if (field_value(buf, hl, "content-length", cl, sizeof cl)) {
        char *e = NULL;
        unsigned long long want = strtoull(cl, &e, 10);
        if (!isdigit((unsigned char)cl[0]) || *e || want > ANSWER_MAX)
            return GH_ECLOSED;
        if (len - bo < want)
            return eof ? GH_ECLOSED : 0;
        blen = (size_t)want;
        body = malloc(blen + 1);
        if (body) {
            memcpy(body, buf + bo, blen);
            body[blen] = 0;
        }
    } else { /* delimited by the close */
        if (!eof)
            return 0;
        blen = len - bo;
        body = malloc(blen + 1);
        if (body) {
            memcpy(body, buf + bo, blen);
            body[blen] = 0;
        }
    }
    r->head = strndup(buf, hl);
    if (!body || !r->head) {
        free(body);
        free(r->head);
        r->head = NULL;
        return GH_ENOMEM;
    }
    r->status = status;
    r->body = body;
    r->body_len = blen;
    return 1;
}

int gh_ctl_http(const char *addr, const char *method, const char *target, const char *headers, const char *body,
                size_t body_len, gh_ctl_resp_t *resp, char *err, size_t errcap)
{
    memset(resp, 0, sizeof *resp);
    if (!token_ok(method) || !token_ok(target) || !*target) {
        seterr(err, errcap, "bad method or target");
        return GH_EINVAL;
    }
    int fd = connect_to(addr, err, errcap);
    if (fd < 0)
        return fd;
    const char *host = addr;
    size_t hostlen = addr_core(&host);
    int with_len = body || !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
    char cl[48] = "";
    if (with_len)
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body ? body_len : 0);
    char *req = NULL; /* one write: no Nagle / delayed-ACK stall between the head and the body */
    int n = asprintf(&req,
                     "%s %s HTTP/1.1\r\nHost: %.*s\r\nUser-Agent: gatehouse-ctl\r\n"
                     "Accept: application/json, application/problem+json\r\nConnection: close\r\n%s%s\r\n",
                     method, target, (int)hostlen, host, headers ? headers : "", cl);
    char *all = n < 0 ? NULL : body && body_len ? malloc((size_t)n + body_len) : req;
    if (!all) {
        if (n >= 0)
            free(req);
        close(fd);
        seterr(err, errcap, "out of memory");
        return GH_ENOMEM;
    }
    size_t total = (size_t)n;
    if (all != req) {
        memcpy(all, req, (size_t)n);
        memcpy(all + n, body, body_len);
        total += body_len;
        explicit_bzero(req, (size_t)n); /* it holds the Authorization field */
        free(req);
    }
    int send_rc = send_all(fd, all, total); /* on an error the server may have answered early (413): read it */
    explicit_bzero(all, total);
    free(all);
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : GH_ENOMEM;
    int eof = 0, no_body = !strcmp(method, "HEAD");
    while (rc == 0) {
        if (len == cap) {
            char *nb = cap < ANSWER_MAX ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb) {
                rc = cap < ANSWER_MAX ? GH_ENOMEM : GH_ELIMIT;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = recv(fd, buf + len, cap - len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = GH_ETIMEOUT;
            break;
        }
        if (k <= 0)
            eof = 1; /* a reset after the answer counts as its end */
        else
            len += (size_t)k;
        buf[len] = 0;
        int p = parse_answer(buf, len, eof, no_body, resp);
        if (p)
            rc = p < 0 ? p : 1;
    }
    close(fd);
    free(buf);
    if (rc == 1)
        return 0;
    if (send_rc && rc == GH_ECLOSED)
        rc = send_rc;
    seterr(err, errcap, "%s", rc == GH_ETIMEOUT ? "no answer in time"
                              : rc == GH_ELIMIT  ? "the answer is too large"
                              : rc == GH_ENOMEM  ? "out of memory"
                                                 : "the connection closed before a complete HTTP answer");
    return rc;
}

void gh_ctl_resp_free(gh_ctl_resp_t *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int gh_ctl_resp_header(const gh_ctl_resp_t *r, const char *name, char *out, size_t cap)
{
    if (!r->head) {
        if (cap)
            out[0] = 0;
        return 0;
    }
    return field_value(r->head, strlen(r->head), name, out, cap);
}

/* ================================================================ small helpers */

static _Noreturn void oom(void)
{
    fputs("gatehouse ctl: out of memory\n", stderr);
    exit(GH_CTL_API);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        oom();
    return d;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom();
    return s;
}

/* A growing string. */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            oom();
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

/* s percent-encoded: all but the unreserved characters (RFC 3986). */
static void sb_enc(sbuf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || strchr("-._~", ch)) {
            sb_add(b, s, 1);
        } else {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", ch);
            sb_add(b, e, 3);
        }
    }
}

/* "/v1/SEG/SEG..." with each segment percent-encoded; the list ends at the first NULL. */
static char *api_path(const char *first, ...)
{
    sbuf_t b = {0};
    sb_str(&b, "/v1");
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s; s = va_arg(ap, const char *)) {
        sb_str(&b, "/");
        sb_enc(&b, s);
    }
    va_end(ap);
    return b.p;
}

/* Append "?k=v" or "&k=v" (v percent-encoded) to a malloc'd target. */
static char *add_query(char *target, const char *k, const char *v)
{
    sbuf_t b = {0};
    sb_str(&b, target);
    sb_str(&b, strchr(target, '?') ? "&" : "?");
    sb_str(&b, k);
    sb_str(&b, "=");
    sb_enc(&b, v);
    free(target);
    return b.p;
}

/* A copy of s fit for a terminal: control bytes become '?'. */
static char *clean(const char *s)
{
    char *d = xstrdup(s);
    for (char *p = d; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return d;
}

/* A JSON value as text: a string as itself, NULL as "-", anything else compact JSON. */
static char *jtext(const json_t *v)
{
    if (!v || json_is_null(v))
        return xstrdup("-");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        oom();
    return t;
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static size_t jcount(const json_t *v) { return json_is_array(v) ? json_array_size(v) : json_is_object(v) ? json_object_size(v) : 0; }

/* The strings of an array (or the keys of an object) joined by sep; "-" when none. */
static char *jjoin(const json_t *v, const char *field, const char *sep)
{
    sbuf_t b = {0};
    if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            const json_t *x = field && json_is_object(e) ? json_object_get(e, field) : e;
            char *t = jtext(x);
            if (b.n)
                sb_str(&b, sep);
            sb_str(&b, t);
            free(t);
        }
    } else if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) {
            if (b.n)
                sb_str(&b, sep);
            sb_str(&b, k);
        }
    }
    return b.p ? b.p : xstrdup("-");
}

static void print_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    fputc('\n', stdout);
}

/* ================================================================ tables */

typedef struct {
    size_t ncol, nrow, cap;
    char **cell; /* nrow * ncol, row 0 the heading */
} table_t;

/* Add a row of ncol cells (NULL or "" shows as "-"); the strings are copied. */
static void tab_row(table_t *t, const char *const *cells)
{
    if (t->nrow == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cell, t->cap * t->ncol * sizeof *c);
        if (!c)
            oom();
        t->cell = c;
    }
    for (size_t i = 0; i < t->ncol; i++)
        t->cell[t->nrow * t->ncol + i] = clean(cells[i] && *cells[i] ? cells[i] : "-");
    t->nrow++;
}

/* The same with cells the caller allocated (consumed). */
static void tab_row_free(table_t *t, char **cells)
{
    tab_row(t, (const char *const *)cells);
    for (size_t i = 0; i < t->ncol; i++)
        free(cells[i]);
}

static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80; /* UTF-8: count the lead bytes */
    return w;
}

static void tab_print(table_t *t)
{
    size_t *w = calloc(t->ncol, sizeof *w);
    if (!w)
        oom();
    for (size_t r = 0; r < t->nrow; r++)
        for (size_t c = 0; c < t->ncol; c++)
            w[c] = GH_MAX(w[c], width(t->cell[r * t->ncol + c]));
    for (size_t r = 0; r < t->nrow; r++) {
        for (size_t c = 0; c < t->ncol; c++) {
            const char *s = t->cell[r * t->ncol + c];
            fputs(s, stdout);
            if (c + 1 < t->ncol)
                printf("%*s", (int)(w[c] - width(s) + 2), "");
        }
        fputc('\n', stdout);
    }
    free(w);
    for (size_t i = 0; i < t->nrow * t->ncol; i++)
        free(t->cell[i]);
    free(t->cell);
    memset(t, 0, sizeof *t);
}

/* ================================================================ options and usage */

enum {
    O_ADMIN = 1u << 0, O_KEY = 1u << 1, O_KEYFILE = 1u << 2, O_OUTPUT = 1u << 3, O_HELP = 1u << 4,
    O_TENANT = 1u << 5, O_SITE = 1u << 6, O_FILE = 1u << 7, O_DRY = 1u << 8, O_LIMIT = 1u << 9,
    O_FROM = 1u << 10, O_NAME = 1u << 11, O_SCOPES = 1u << 12, O_TTL = 1u << 13, O_TAG = 1u << 14,
    O_URL = 1u << 15, O_PREFIX = 1u << 16, O_ALL = 1u << 17, O_SOFT = 1u << 18, O_PAGE = 1u << 19,
};
#define O_GLOBAL (O_ADMIN | O_KEY | O_KEYFILE | O_OUTPUT | O_HELP)

static const struct opt {
    const char *name;
    char letter;
    unsigned bit;
    int arg;
} opts[] = {
    {"admin", 0, O_ADMIN, 1},    {"key", 0, O_KEY, 1},       {"key-file", 0, O_KEYFILE, 1},
    {"output", 'o', O_OUTPUT, 1}, {"help", 'h', O_HELP, 0},   {"tenant", 't', O_TENANT, 1},
    {"site", 's', O_SITE, 1},    {"file", 'f', O_FILE, 1},   {"filename", 0, O_FILE, 1},
    {"dry-run", 0, O_DRY, 0},    {"limit", 0, O_LIMIT, 1},   {"from", 0, O_FROM, 1},
    {"name", 0, O_NAME, 1},      {"scopes", 0, O_SCOPES, 1}, {"ttl", 0, O_TTL, 1},
    {"tag", 0, O_TAG, 1},        {"url", 0, O_URL, 1},       {"prefix", 0, O_PREFIX, 1},
    {"all", 0, O_ALL, 0},        {"soft", 0, O_SOFT, 0},     {"page-size", 0, O_PAGE, 1},
};

typedef struct {
    const char *admin, *output, *tenant, *site, *file, *from, *name, *scopes, *ttl, *limit_s, *page_s, *key_arg, *key_file;
    char key[1024];
    int json, dry_run, all, soft;
    long limit; /* 0: all */
    long page;  /* items asked per request */
    json_t *tags, *urls, *prefixes;
    const char *pos[MAX_POS];
    int npos;
    unsigned given;
} ctl_t;

static const char usage_main[] =
    "usage: gatehouse ctl <command> [options]\n"
    "  The command-line client of the gatehouse admin API.\n"
    "\n"
    "commands:\n"
    "  get tenants | get tenant NAME\n"
    "  get sites|upstreams|flags|experiments --tenant T [NAME]\n"
    "  get routes --tenant T --site S [NAME]\n"
    "  get protection|cache --tenant T\n"
    "  apply -f FILE [--dry-run]        create or update what FILE (YAML or JSON; - for stdin) describes\n"
    "  delete KIND [NAME] --tenant T [--site S] [--dry-run]\n"
    "  versions [--limit N]             configuration versions, newest first\n"
    "  diff N [--from M]                what version N changed (since M, default N-1)\n"
    "  rollback N [--dry-run]           make version N's configuration current again (as a new version)\n"
    "  keys list --tenant T\n"
    "  keys create --tenant T --name NAME --scopes read,write,... [--ttl SECONDS]\n"
    "  keys revoke --tenant T ID\n"
    "  purge --tenant T (--tag X ... | --url U ... | --prefix P ... | --all) [--soft]\n"
    "  audit [--tenant T] [--limit N]   the audit log, newest first\n"
    "  Lists (get, versions, keys list, audit) follow the pages to the end; --limit N stops after N\n"
    "  items, --page-size N (1..500) sets the items asked per request.\n"
    "\n"
    "options of every command:\n"
    "  --admin HOST:PORT     the admin listener (env GATEHOUSE_ADMIN; default 127.0.0.1:9090)\n"
    "  --key KEY             the operator key or a tenant API key (env GATEHOUSE_ADMIN_KEY)\n"
    "  --key-file FILE       the key on FILE's first line\n"
    "  -o, --output FORMAT   table (default: aligned columns) or json (the API's JSON; pages merged)\n"
    "  -h, --help            this text; 'gatehouse ctl COMMAND --help' describes a command\n"
    "\n"
    "exit codes: 0 success, 1 the API refused (its problem on stderr), 2 usage error, 3 cannot connect.\n";

static const char usage_get[] =
    "usage: gatehouse ctl get KIND [NAME] [--tenant T] [--site S] [--limit N] [--page-size N] [-o table|json]\n"
    "  KIND: tenants, sites, routes (needs --site), upstreams, flags, experiments, protection, cache\n"
    "  (singular or plural); every kind but tenants needs --tenant. Without NAME: the whole list,\n"
    "  page after page (--page-size items a request, default 500), or the first N with --limit.\n"
    "  json output: the item, or the list's items merged into one array.\n";

static const char usage_apply[] =
    "usage: gatehouse ctl apply -f FILE [--dry-run] [--tenant T] [--site S]\n"
    "  FILE (YAML or JSON; - reads stdin) holds one or more documents (YAML '---', or a JSON array):\n"
    "  - a whole tenant: {name: acme, sites: [...], upstreams: {...}, ...}  -> PUT /v1/tenants/acme\n"
    "  - one item: {kind: route, tenant: acme, site: main, spec: {name: api, ...}}\n"
    "    kinds: tenant, site, route, upstream, flag, experiment, protection, cache (tenant and site\n"
    "    may come from --tenant and --site instead)\n"
    "  An existing object is replaced only if it did not change since it was read (If-Match).\n"
    "  Prints created, configured or unchanged and the configuration version for each document;\n"
    "  --dry-run only validates. Stops at the first refusal (the documents before it stay applied).\n";

static const char usage_delete[] =
    "usage: gatehouse ctl delete KIND [NAME] [--tenant T] [--site S] [--dry-run]\n"
    "  delete tenant NAME | delete site|upstream|flag|experiment NAME --tenant T |\n"
    "  delete route NAME --tenant T --site S | delete protection|cache --tenant T\n";

static const char usage_versions[] =
    "usage: gatehouse ctl versions [--limit N] [--page-size N] [-o table|json]\n"
    "  The stored configuration versions, newest first (* marks the current one). Operator only.\n";

static const char usage_diff[] =
    "usage: gatehouse ctl diff N [--from M] [-o table|json]\n"
    "  The changes from version M (default N-1) to version N: + added, - removed, ~ replaced.\n";

static const char usage_rollback[] =
    "usage: gatehouse ctl rollback N [--dry-run]\n"
    "  Makes version N's configuration current again; the rollback is a new version.\n";

static const char usage_keys[] =
    "usage: gatehouse ctl keys list --tenant T [--limit N] [--page-size N]\n"
    "       gatehouse ctl keys create --tenant T --name NAME --scopes SCOPE,... [--ttl SECONDS]\n"
    "       gatehouse ctl keys revoke --tenant T ID\n"
    "  Tenant API keys. Scopes: read, write, admin, flags:evaluate, events:publish. create prints\n"
    "  the new key once: store it then, it cannot be read again.\n";

static const char usage_purge[] =
    "usage: gatehouse ctl purge --tenant T (--tag X ... | --url U ... | --prefix P ... | --all) [--soft]\n"
    "  Removes the tenant's cached objects by tag, URL or URL prefix (each option may be repeated),\n"
    "  or all of them; --soft marks them stale instead (served while revalidating).\n";

static const char usage_audit[] =
    "usage: gatehouse ctl audit [--tenant T] [--limit N] [--page-size N] [-o table|json]\n"
    "  The audit log, newest first: who changed what, when, from where.\n";

static int usage_error(const char *usage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *usage, const char *fmt, ...)
{
    fputs("gatehouse ctl: ", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(usage, stderr);
    return GH_CTL_USAGE;
}

/* Collect options (anywhere on the line, --opt VALUE or --opt=VALUE) and positionals. 0, or
 * GH_CTL_USAGE after saying why (help is still noticed). */
static int parse_args(ctl_t *c, int argc, char **argv, char *why, size_t whycap)
{
    int bad = 0, dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (dashdash || a[0] != '-' || !a[1]) {
            if (c->npos == MAX_POS) {
                if (!bad++)
                    snprintf(why, whycap, "too many arguments");
                continue;
            }
            c->pos[c->npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            dashdash = 1;
            continue;
        }
        const struct opt *o = NULL;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            for (size_t k = 0; k < GH_ARRAY_LEN(opts); k++)
                if (strlen(opts[k].name) == nl && !strncmp(opts[k].name, a + 2, nl))
                    o = &opts[k];
            if (eq)
                val = eq + 1;
        } else if (!a[2]) {
            for (size_t k = 0; k < GH_ARRAY_LEN(opts); k++)
                if (opts[k].letter == a[1])
                    o = &opts[k];
        }
        if (!o || (val && !o->arg)) {
            if (!bad++)
                snprintf(why, whycap, "unknown option '%.100s'", a);
            continue;
        }
        if (o->arg && !val) {
            if (i + 1 >= argc) {
                if (!bad++)
                    snprintf(why, whycap, "%.100s needs a value", a);
                continue;
            }
            val = argv[++i];
        }
        c->given |= o->bit;
        switch (o->bit) {
        case O_ADMIN: c->admin = val; break;
        case O_KEY: c->key_arg = val; break;
        case O_KEYFILE: c->key_file = val; break;
        case O_OUTPUT: c->output = val; break;
        case O_TENANT: c->tenant = val; break;
        case O_SITE: c->site = val; break;
        case O_FILE: c->file = val; break;
        case O_DRY: c->dry_run = 1; break;
        case O_LIMIT: c->limit_s = val; break;
        case O_PAGE: c->page_s = val; break;
        case O_FROM: c->from = val; break;
        case O_NAME: c->name = val; break;
        case O_SCOPES: c->scopes = val; break;
        case O_TTL: c->ttl = val; break;
        case O_ALL: c->all = 1; break;
        case O_SOFT: c->soft = 1; break;
        case O_TAG:
        case O_URL:
        case O_PREFIX: {
            json_t **arr = o->bit == O_TAG ? &c->tags : o->bit == O_URL ? &c->urls : &c->prefixes;
            if (!*arr)
                *arr = json_array();
            if (!*arr || json_array_append_new(*arr, json_string(val)) < 0) {
                if (!bad++)
                    snprintf(why, whycap, "%.100s: not UTF-8", a);
            }
            break;
        }
        default: break;
        }
    }
    return bad ? GH_CTL_USAGE : 0;
}

/* A positive integer (1..max) from s, or -1. */
static long long positive(const char *s, long long max)
{
    char *e = NULL;
    errno = 0;
    long long v = s && isdigit((unsigned char)s[0]) ? strtoll(s, &e, 10) : -1;
    return v >= 1 && v <= max && e && !*e && !errno ? v : -1;
}

/* The key from --key, --key-file or the environment, into c->key ("" for none). */
static int resolve_key(ctl_t *c)
{
    const char *src = NULL;
    if (c->key_arg) {
        src = "--key";
        if (strlen(c->key_arg) >= sizeof c->key)
            return usage_error(usage_main, "the key given with --key is too long");
        snprintf(c->key, sizeof c->key, "%s", c->key_arg);
    } else if (c->key_file) {
        src = c->key_file;
        FILE *f = fopen(c->key_file, "r");
        if (!f)
            return usage_error(usage_main, "--key-file %s: %s", c->key_file, strerror(errno));
        if (!fgets(c->key, sizeof c->key, f))
            c->key[0] = 0;
        fclose(f);
        size_t n = strlen(c->key);
        while (n && (c->key[n - 1] == '\n' || c->key[n - 1] == '\r' || c->key[n - 1] == ' ' || c->key[n - 1] == '\t'))
            c->key[--n] = 0;
        if (!n)
            return usage_error(usage_main, "--key-file %s: no key on the first line", c->key_file);
    } else if (getenv("GATEHOUSE_ADMIN_KEY") && *getenv("GATEHOUSE_ADMIN_KEY")) {
        src = "GATEHOUSE_ADMIN_KEY";
        if (strlen(getenv("GATEHOUSE_ADMIN_KEY")) >= sizeof c->key)
            return usage_error(usage_main, "the key in GATEHOUSE_ADMIN_KEY is too long");
        snprintf(c->key, sizeof c->key, "%s", getenv("GATEHOUSE_ADMIN_KEY"));
    }
    if (src && !token_ok(c->key)) /* never echo the key itself */
        return usage_error(usage_main, "the key from %s has spaces or control characters", src);
    return 0;
}

/* ================================================================ API calls */

typedef struct {
    int status;
    json_t *json;       /* the parsed body, or NULL */
    char version[24];   /* Gatehouse-Config-Version, or "" */
    char etag[72];
    char origin[16];    /* Gatehouse-Origin */
    gh_ctl_resp_t raw;
} ans_t;

static void ans_free(ans_t *a)
{
    json_decref(a->json);
    gh_ctl_resp_free(&a->raw);
    memset(a, 0, sizeof *a);
}

/* One API request (body: JSON, or NULL). 0 with *a for any HTTP answer (429 is retried a few
 * times); GH_CTL_CONNECT or GH_CTL_API after printing why there is none. */
static int api(ctl_t *c, const char *method, const char *target, const char *extra, const json_t *body, ans_t *a)
{
    memset(a, 0, sizeof *a);
    sbuf_t h = {0};
    sb_str(&h, "");
    if (c->key[0]) {
        sb_str(&h, "Authorization: Bearer ");
        sb_str(&h, c->key);
        sb_str(&h, "\r\n");
    }
    if (body)
        sb_str(&h, "Content-Type: application/json\r\n");
    if (extra)
        sb_str(&h, extra);
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (body && !text)
        oom();
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        char err[256] = "";
        int r = gh_ctl_http(c->admin, method, target, h.p, text, text ? strlen(text) : 0, &a->raw, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "gatehouse ctl: %s the admin API at %s: %s\n",
                    r == GH_EIO || r == GH_EINVAL ? "cannot connect to" : "no answer from", c->admin, err);
            rc = r == GH_EIO ? GH_CTL_CONNECT : r == GH_EINVAL ? GH_CTL_USAGE : GH_CTL_API;
            break;
        }
        char ra[16];
        long wait = gh_ctl_resp_header(&a->raw, "retry-after", ra, sizeof ra) ? atol(ra) : 1;
        if (a->raw.status == 429 && attempt < RETRIES_429 && wait >= 0 && wait <= 5) {
            gh_ctl_resp_free(&a->raw);
            sleep((unsigned)(wait ? wait : 1));
            continue;
        }
        break;
    }
    if (h.p) {
        explicit_bzero(h.p, h.n);
        free(h.p);
    }
    free(text);
    if (rc)
        return rc;
    a->status = a->raw.status;
    gh_ctl_resp_header(&a->raw, "gatehouse-config-version", a->version, sizeof a->version);
    gh_ctl_resp_header(&a->raw, "etag", a->etag, sizeof a->etag);
    gh_ctl_resp_header(&a->raw, "gatehouse-origin", a->origin, sizeof a->origin);
    if (a->raw.body_len)
        a->json = json_loadb(a->raw.body, a->raw.body_len, 0, NULL);
    return 0;
}

/* Print an unsuccessful answer (RFC 9457 problem: title, detail, each error path) and return 1. */
static int api_fail(const char *method, const char *target, const ans_t *a)
{
    const json_t *j = a->json;
    char *title = clean(jstr(j, "title") ? jstr(j, "title") : "");
    char *detail = clean(jstr(j, "detail") ? jstr(j, "detail") : "");
    const char *type = jstr(j, "type");
    const char *slash = type ? strrchr(type, '/') : NULL;
    char *tname = clean(slash ? slash + 1 : "");
    char *t = clean(target);
    fprintf(stderr, "gatehouse ctl: %s %s: %d", method, t, a->status);
    if (*title)
        fprintf(stderr, " %s", title);
    if (*tname)
        fprintf(stderr, " (%s)", tname);
    if (*detail)
        fprintf(stderr, ": %s", detail);
    if (!j && a->raw.body_len) { /* not JSON: the first line of it */
        char line[200];
        snprintf(line, sizeof line, "%s", a->raw.body);
        line[strcspn(line, "\r\n")] = 0;
        char st[8];
        snprintf(st, sizeof st, "%d ", a->status);
        char *l = clean(strncmp(line, st, strlen(st)) ? line : line + strlen(st)); /* "413 Content Too Large: ..." */
        fprintf(stderr, ": %s", l);
        free(l);
    }
    fputc('\n', stderr);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "errors"), i, e) {
        char *p = clean(jstr(e, "path") ? jstr(e, "path") : "-");
        char *m = clean(jstr(e, "message") ? jstr(e, "message") : "");
        fprintf(stderr, "  %s: %s\n", p, m);
        free(p);
        free(m);
    }
    if (a->status == 401)
        fputs("  (check --key, --key-file or GATEHOUSE_ADMIN_KEY)\n", stderr);
    free(title);
    free(detail);
    free(tname);
    free(t);
    return GH_CTL_API;
}

/* api() that also treats any answer but 2xx as a failure (printed). */
static int api_ok(ctl_t *c, const char *method, const char *target, const char *extra, const json_t *body, ans_t *a)
{
    int rc = api(c, method, target, extra, body, a);
    if (rc)
        return rc;
    if (a->status < 200 || a->status > 299) {
        rc = api_fail(method, target, a);
        ans_free(a);
        return rc;
    }
    if (a->status != 204 && a->raw.body_len && !a->json) {
        fprintf(stderr, "gatehouse ctl: %s %s: the answer is not JSON\n", method, target);
        ans_free(a);
        return GH_CTL_API;
    }
    return 0;
}

/* GET base page by page (?limit=&cursor=) until next_cursor is null or limit items are there
 * (0: all): *items all of them in one array; *first (if wanted) the first page. */
static int list_all(ctl_t *c, const char *base, long limit, json_t **items, json_t **first)
{
    *items = json_array();
    if (first)
        *first = NULL;
    char *cursor = NULL;
    int rc = 0;
    for (;;) {
        long want = limit ? GH_MIN(limit - (long)json_array_size(*items), c->page) : c->page;
        char n[24];
        snprintf(n, sizeof n, "%ld", want);
        char *target = add_query(xstrdup(base), "limit", n);
        if (cursor)
            target = add_query(target, "cursor", cursor);
        ans_t a;
        rc = api_ok(c, "GET", target, NULL, NULL, &a);
        free(target);
        if (rc)
            break;
        json_t *page = json_object_get(a.json, "items");
        if (!json_is_array(page)) {
            fprintf(stderr, "gatehouse ctl: GET %s: the answer has no items\n", base);
            ans_free(&a);
            rc = GH_CTL_API;
            break;
        }
        json_array_extend(*items, page);
        const char *next = jstr(a.json, "next_cursor");
        int again = next && (!cursor || strcmp(next, cursor)) && json_array_size(page) &&
                    (!limit || (long)json_array_size(*items) < limit);
        free(cursor);
        cursor = again ? xstrdup(next) : NULL;
        if (first && !*first)
            *first = json_incref(a.json);
        ans_free(&a);
        if (!again)
            break;
    }
    free(cursor);
    if (rc) {
        json_decref(*items);
        *items = NULL;
        if (first) {
            json_decref(*first);
            *first = NULL;
        }
    }
    return rc;
}

/* ================================================================ kinds of objects */

typedef struct kind {
    const char *name, *plural, *coll, *key; /* coll: the path segment; key: the field naming an item */
    int routes, single;
    const char *const *cols;
    void (*row)(char **cells, const json_t *item, const char *origin);
} kind_t;

static void row_tenant(char **o, const json_t *t, const char *origin)
{
    size_t routes = 0, i;
    json_t *s;
    json_array_foreach(json_object_get(t, "sites"), i, s) routes += jcount(json_object_get(s, "routes"));
    o[0] = jtext(json_object_get(t, "name"));
    o[1] = xstrdup(origin);
    o[2] = xasprintf("%zu", jcount(json_object_get(t, "sites")));
    o[3] = xasprintf("%zu", routes);
    o[4] = xasprintf("%zu", jcount(json_object_get(t, "upstreams")));
    o[5] = xasprintf("%zu", jcount(json_object_get(json_object_get(json_object_get(t, "flags"), "definition"), "flags")));
    o[6] = xasprintf("%zu", jcount(json_object_get(t, "experiments")));
}

static void row_site(char **o, const json_t *s, const char *origin)
{
    (void)origin;
    o[0] = jtext(json_object_get(s, "name"));
    o[1] = jjoin(json_object_get(s, "hosts"), NULL, ",");
    o[2] = xasprintf("%zu", jcount(json_object_get(s, "routes")));
}

static void row_route(char **o, const json_t *r, const char *origin)
{
    (void)origin;
    sbuf_t m = {0};
    const json_t *match = json_object_get(r, "match"), *path = json_object_get(match, "path");
    if (json_is_string(path)) {
        sb_str(&m, "prefix ");
        sb_str(&m, json_string_value(path));
    } else if (json_is_object(path)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)path, k, v) {
            char *t = jtext(v);
            sb_str(&m, k);
            sb_str(&m, " ");
            sb_str(&m, t);
            free(t);
            break;
        }
    }
    if (json_object_get(match, "methods")) {
        char *t = jjoin(json_object_get(match, "methods"), NULL, ",");
        sb_str(&m, m.n ? " " : "");
        sb_str(&m, t);
        free(t);
    }
    if (json_object_get(match, "headers")) {
        char *t = jjoin(json_object_get(match, "headers"), "name", ",");
        sb_str(&m, m.n ? " headers " : "headers ");
        sb_str(&m, t);
        free(t);
    }
    o[0] = jtext(json_object_get(r, "name"));
    o[1] = m.p ? m.p : xstrdup("*");
    const json_t *resp = json_object_get(r, "respond");
    const json_t *st = json_object_get(resp, "status");
    o[2] = json_object_get(r, "upstream") ? xasprintf("upstream %s", jstr(r, "upstream") ? jstr(r, "upstream") : "?")
           : resp ? xasprintf("respond %lld", st ? (long long)json_integer_value(st) : 200LL)
                  : xstrdup("-");
    const char *flag = jstr(json_object_get(r, "flag"), "key");
    if (flag) {
        char *t = xasprintf("%s, flag %s", o[2], flag);
        free(o[2]);
        o[2] = t;
    }
}

static void row_upstream(char **o, const json_t *u, const char *origin)
{
    (void)origin;
    o[0] = jtext(json_object_get(u, "name"));
    sbuf_t b = {0};
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(u, "backends"), i, e) {
        char *t = jtext(json_is_object(e) ? json_object_get(e, "address") : e);
        if (b.n)
            sb_str(&b, ",");
        sb_str(&b, t);
        free(t);
    }
    o[1] = b.p ? b.p : xstrdup("-");
    o[2] = json_object_get(u, "balance") ? jtext(json_object_get(u, "balance")) : xstrdup("round_robin");
}

static void row_flag(char **o, const json_t *f, const char *origin)
{
    (void)origin;
    o[0] = jtext(json_object_get(f, "key"));
    o[1] = jtext(json_object_get(f, "state"));
    o[2] = jtext(json_object_get(f, "defaultVariant"));
    o[3] = jjoin(json_object_get(f, "variants"), NULL, ",");
}

static void row_experiment(char **o, const json_t *x, const char *origin)
{
    (void)origin;
    o[0] = jtext(json_object_get(x, "id"));
    o[1] = jtext(json_object_get(x, "flag"));
    o[2] = jjoin(json_object_get(x, "variants"), NULL, ",");
    o[3] = jjoin(json_object_get(x, "metrics"), "name", ",");
}

static void row_key(char **o, const json_t *k, const char *origin)
{
    (void)origin;
    o[0] = jtext(json_object_get(k, "id"));
    o[1] = jtext(json_object_get(k, "name"));
    o[2] = jjoin(json_object_get(k, "scopes"), NULL, ",");
    o[3] = jtext(json_object_get(k, "created_at"));
    o[4] = jtext(json_object_get(k, "expires_at"));
    o[5] = jtext(json_object_get(k, "revoked_at"));
}

static const char *const cols_tenant[] = {"NAME", "ORIGIN", "SITES", "ROUTES", "UPSTREAMS", "FLAGS", "EXPERIMENTS", NULL};
static const char *const cols_site[] = {"NAME", "HOSTS", "ROUTES", NULL};
static const char *const cols_route[] = {"NAME", "MATCH", "ACTION", NULL};
static const char *const cols_upstream[] = {"NAME", "BACKENDS", "BALANCE", NULL};
static const char *const cols_flag[] = {"KEY", "STATE", "DEFAULT", "VARIANTS", NULL};
static const char *const cols_experiment[] = {"ID", "FLAG", "VARIANTS", "METRICS", NULL};
static const char *const cols_key[] = {"ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED", NULL};

static const kind_t kinds[] = {
    {"tenant", "tenants", NULL, "name", 0, 0, cols_tenant, row_tenant},
    {"site", "sites", "sites", "name", 0, 0, cols_site, row_site},
    {"route", "routes", "routes", "name", 1, 0, cols_route, row_route},
    {"upstream", "upstreams", "upstreams", "name", 0, 0, cols_upstream, row_upstream},
    {"flag", "flags", "flags", "key", 0, 0, cols_flag, row_flag},
    {"experiment", "experiments", "experiments", "id", 0, 0, cols_experiment, row_experiment},
    {"protection", "protection", "protection", NULL, 0, 1, NULL, NULL},
    {"cache", "cache", "cache", NULL, 0, 1, NULL, NULL},
};
static const kind_t K_KEYS = {"key", "keys", "keys", "id", 0, 0, cols_key, row_key};

static const kind_t *kind_find(const char *s)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(kinds); i++)
        if (!strcmp(s, kinds[i].name) || !strcmp(s, kinds[i].plural))
            return &kinds[i];
    return NULL;
}

static size_t ncols(const char *const *cols)
{
    size_t n = 0;
    while (cols[n])
        n++;
    return n;
}

/* The API path of kind's item name (NULL: its collection). */
static char *kind_path(const kind_t *k, const char *tenant, const char *site, const char *name)
{
    if (!k->coll)
        return api_path("tenants", name, NULL);
    if (k->routes)
        return api_path("tenants", tenant, "sites", site, "routes", name, NULL);
    return api_path("tenants", tenant, k->coll, name, NULL);
}

/* "route acme/main/api", "tenant acme", "cache acme". */
static char *kind_label(const kind_t *k, const char *tenant, const char *site, const char *name)
{
    if (!k->coll)
        return xasprintf("tenant %s", name);
    if (k->single)
        return xasprintf("%s %s", k->name, tenant);
    if (k->routes)
        return xasprintf("%s %s/%s/%s", k->name, tenant, site, name);
    return xasprintf("%s %s/%s", k->name, tenant, name);
}

/* Check the options kind needs: --tenant (all but tenants), --site (routes). */
static int kind_needs(const kind_t *k, const char *tenant, const char *site, const char *usage)
{
    if (k->coll && !tenant)
        return usage_error(usage, "%s needs --tenant", k->plural);
    if (k->routes && !site)
        return usage_error(usage, "routes need --site");
    return 0;
}

static void print_rows(const kind_t *k, const json_t *items, const json_t *file_managed, const char *origin)
{
    table_t t = {.ncol = ncols(k->cols)};
    tab_row(&t, k->cols);
    size_t i, j;
    json_t *it, *f;
    json_array_foreach(items, i, it) {
        const char *o = origin;
        if (!o) {
            o = "api";
            json_array_foreach(file_managed, j, f) if (json_is_string(f) && jstr(it, "name") && !strcmp(json_string_value(f), jstr(it, "name"))) o = "file";
        }
        char *cells[8] = {0};
        k->row(cells, it, o);
        tab_row_free(&t, cells);
    }
    tab_print(&t);
}

/* A singleton (protection, cache): its top-level fields. */
static void print_fields(const json_t *obj)
{
    static const char *const head[] = {"FIELD", "VALUE"};
    table_t t = {.ncol = 2};
    tab_row(&t, head);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        char *cells[2] = {xstrdup(k), jtext(v)};
        tab_row_free(&t, cells);
    }
    tab_print(&t);
}

/* ================================================================ commands */

static int cmd_keys_list(ctl_t *c, const char *id);

static int cmd_get(ctl_t *c)
{
    if (c->npos < 2)
        return usage_error(usage_get, "get what?");
    if (!strcmp(c->pos[1], "keys") || !strcmp(c->pos[1], "key"))
        return c->npos > 3 ? usage_error(usage_get, "too many arguments") : cmd_keys_list(c, c->npos > 2 ? c->pos[2] : NULL);
    const kind_t *k = kind_find(c->pos[1]);
    if (!k)
        return usage_error(usage_get, "unknown kind '%.100s'", c->pos[1]);
    if (c->npos > (k->single ? 2 : 3))
        return usage_error(usage_get, "too many arguments");
    const char *name = c->npos > 2 ? c->pos[2] : NULL;
    int rc = kind_needs(k, c->tenant, c->site, usage_get);
    if (rc)
        return rc;
    char *path = k->single ? kind_path(k, c->tenant, NULL, NULL) : kind_path(k, c->tenant, c->site, name);
    if (name || k->single) {
        ans_t a;
        rc = api_ok(c, "GET", path, NULL, NULL, &a);
        if (rc == 0) {
            if (c->json)
                print_json(a.json);
            else if (k->single)
                print_fields(a.json);
            else {
                json_t *one = json_pack("[O]", a.json);
                print_rows(k, one, NULL, strcmp(a.origin, "file") ? "api" : "file");
                json_decref(one);
            }
            ans_free(&a);
        }
    } else {
        json_t *items = NULL, *first = NULL;
        rc = list_all(c, path, c->limit, &items, &first);
        if (rc == 0) {
            if (c->json)
                print_json(items);
            else
                print_rows(k, items, json_object_get(first, "file_managed"), k->coll ? "api" : NULL);
        }
        json_decref(items);
        json_decref(first);
    }
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- apply: reading documents */

static int input_error(const char *file, size_t line, size_t col, const char *what)
{
    char *w = clean(what);
    if (line)
        fprintf(stderr, "gatehouse ctl: %s:%zu:%zu: %s\n", file, line, col, w);
    else
        fprintf(stderr, "gatehouse ctl: %s: %s\n", file, w);
    free(w);
    return GH_CTL_USAGE;
}

/* A plain YAML scalar as JSON: true/false, null/~/empty, integers and decimals are typed (the
 * core schema, as gatehouse's own loader does); everything else is a string. */
static json_t *plain_scalar(const char *s, size_t n)
{
    static const char *const trues[] = {"true", "True", "TRUE"}, *const falses[] = {"false", "False", "FALSE"},
                             *const nulls[] = {"null", "Null", "NULL", "~"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, trues[i]))
            return json_true();
        if (!strcmp(s, falses[i]))
            return json_false();
    }
    if (!n)
        return json_null();
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, nulls[i]))
            return json_null();
    const char *d = s + (s[0] == '-' || s[0] == '+');
    int digits = 0, other = 0, fl = 0;
    for (const char *p = d; *p; p++) {
        if (isdigit((unsigned char)*p))
            digits++;
        else if (strchr(".eE+-", *p))
            fl = 1;
        else
            other = 1;
    }
    if (digits && !other) {
        char *e = NULL;
        errno = 0;
        if (!fl) {
            long long v = strtoll(s, &e, 10);
            if (!*e && !errno)
                return json_integer(v);
        }
        errno = 0;
        double v = strtod(s, &e);
        if (!*e && !errno && isdigit((unsigned char)s[n - 1]))
            return json_real(v);
    }
    return json_stringn(s, n);
}

/* A YAML node as JSON, or NULL with *why and *mark (duplicate keys, non-scalar keys, depth,
 * more than *budget nodes: aliases can make a small file huge). */
static json_t *yaml_node_json(yaml_document_t *d, yaml_node_t *n, int depth, size_t *budget, const char **why,
                              yaml_mark_t *mark)
{
    if (!n)
        return json_null();
    if (depth > 100 || !*budget) {
        *why = depth > 100 ? "nested too deeply" : "too many values (aliases?)", *mark = n->start_mark;
        return NULL;
    }
    --*budget;
    if (n->type == YAML_SCALAR_NODE) {
        const char *s = (const char *)n->data.scalar.value;
        size_t len = n->data.scalar.length;
        json_t *v = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? plain_scalar(s, len) : json_stringn(s, len);
        if (!v)
            *why = "a string that is not UTF-8", *mark = n->start_mark;
        return v;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start; a && i < n->data.sequence.items.top; i++) {
            json_t *v = yaml_node_json(d, yaml_document_get_node(d, *i), depth + 1, budget, why, mark);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key);
        if (!k || k->type != YAML_SCALAR_NODE) {
            *why = "a mapping key must be a plain string", *mark = k ? k->start_mark : n->start_mark;
            json_decref(o);
            return NULL;
        }
        const char *ks = (const char *)k->data.scalar.value;
        if (strlen(ks) != k->data.scalar.length || json_object_get(o, ks)) {
            *why = strlen(ks) != k->data.scalar.length ? "a key with a NUL byte" : "a duplicate key",
            *mark = k->start_mark;
            json_decref(o);
            return NULL;
        }
        json_t *v = yaml_node_json(d, yaml_document_get_node(d, p->value), depth + 1, budget, why, mark);
        if (!v || json_object_set_new(o, ks, v) < 0) {
            if (!*why)
                *why = "a key that is not UTF-8", *mark = k->start_mark;
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* The documents of text (JSON: one value, an array being several documents; else YAML, '---'
 * separated) as a JSON array in *docs; GH_CTL_USAGE after printing where it is wrong. */
static int parse_docs(const char *file, const char *text, size_t len, json_t **docs)
{
    *docs = json_array();
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && (text[i] == '{' || text[i] == '[')) {
        json_error_t je;
        json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
            return input_error(file, (size_t)je.line, (size_t)je.column, je.text);
        if (json_is_array(j))
            json_array_extend(*docs, j);
        else
            json_array_append(*docs, j);
        json_decref(j);
        return 0;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        oom();
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0;
    for (;;) {
        yaml_document_t d;
        if (!yaml_parser_load(&p, &d)) {
            char w[300];
            snprintf(w, sizeof w, "%s%s%s", p.problem ? p.problem : "bad YAML", p.context ? " " : "", p.context ? p.context : "");
            rc = input_error(file, p.problem_mark.line + 1, p.problem_mark.column + 1, w);
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&d);
        if (!root) { /* the end of the stream */
            yaml_document_delete(&d);
            break;
        }
        const char *why = NULL;
        yaml_mark_t mark = {0};
        size_t budget = YAML_NODES_MAX;
        json_t *j = yaml_node_json(&d, root, 0, &budget, &why, &mark);
        yaml_document_delete(&d);
        if (!j) {
            rc = input_error(file, mark.line + 1, mark.column + 1, why ? why : "cannot read");
            break;
        }
        if (!json_is_null(j))
            json_array_append(*docs, j);
        json_decref(j);
    }
    yaml_parser_delete(&p);
    return rc;
}

/* FILE (or stdin for "-") into a NUL-terminated buffer. */
static char *read_input(const char *file, size_t *len)
{
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "gatehouse ctl: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    sbuf_t b = {0};
    sb_str(&b, "");
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0 && b.n <= INPUT_MAX)
        sb_add(&b, chunk, k);
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad || b.n > INPUT_MAX) {
        fprintf(stderr, "gatehouse ctl: %s: %s\n", file, bad ? "read error" : "larger than 16 MiB");
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}

/* ---------------------------------------------------------------- apply: one document */

typedef struct {
    const kind_t *k;
    const char *tenant, *site, *name;
    json_t *body; /* borrowed */
} target_t;

/* What document number idx describes; GH_CTL_USAGE after saying what is wrong with it. */
static int classify(ctl_t *c, json_t *doc, size_t idx, target_t *t)
{
    memset(t, 0, sizeof *t);
    char where[64];
    snprintf(where, sizeof where, "%s: document %zu", c->file, idx + 1);
    if (!json_is_object(doc))
        return input_error(where, 0, 0, "not a mapping");
    json_t *kind = json_object_get(doc, "kind");
    if (!kind) { /* a whole tenant */
        t->k = &kinds[0];
        t->body = doc;
        t->name = jstr(doc, "name");
        if (!t->name)
            return input_error(where, 0, 0, "neither a tenant (with \"name\") nor an item (with \"kind\" and \"spec\")");
        if (c->tenant && strcmp(c->tenant, t->name))
            return input_error(where, 0, 0, "the tenant's name differs from --tenant");
        return 0;
    }
    if (!json_is_string(kind) || !(t->k = kind_find(json_string_value(kind))))
        return input_error(where, 0, 0, "unknown kind: use tenant, site, route, upstream, flag, experiment, protection or cache");
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v) if (strcmp(k, "kind") && strcmp(k, "tenant") && strcmp(k, "site") && strcmp(k, "spec") &&
                                       strcmp(k, "name") && (!t->k->key || strcmp(k, t->k->key))) {
        char w[200];
        snprintf(w, sizeof w, "unknown field \"%.100s\" (a document has kind, tenant, site, spec)", k);
        return input_error(where, 0, 0, w);
    }
    t->body = json_object_get(doc, "spec");
    if (!json_is_object(t->body))
        return input_error(where, 0, 0, "\"spec\" must be a mapping");
    t->tenant = jstr(doc, "tenant") ? jstr(doc, "tenant") : c->tenant;
    t->site = jstr(doc, "site") ? jstr(doc, "site") : c->site;
    if (!t->k->single) {
        const char *outer = jstr(doc, "name") ? jstr(doc, "name") : jstr(doc, t->k->key);
        const char *inner = jstr(t->body, t->k->key);
        if (outer && inner && strcmp(outer, inner))
            return input_error(where, 0, 0, "the document's name differs from the spec's");
        t->name = outer ? outer : inner;
        if (!t->name) {
            char w[100];
            snprintf(w, sizeof w, "no name: give spec.%s", t->k->key);
            return input_error(where, 0, 0, w);
        }
    }
    if (!t->k->coll) {
        if (t->tenant && jstr(doc, "tenant") && strcmp(t->tenant, t->name))
            return input_error(where, 0, 0, "\"tenant\" differs from the tenant's name");
        return 0;
    }
    if (!t->tenant)
        return input_error(where, 0, 0, "no tenant: give \"tenant\" (or --tenant)");
    if (t->k->routes && !t->site)
        return input_error(where, 0, 0, "a route needs \"site\" (or --site)");
    return 0;
}

/* GET the target for its ETag, PUT it (If-Match), say what happened. */
static int apply_one(ctl_t *c, const target_t *t, json_t *report)
{
    char *path = kind_path(t->k, t->tenant, t->site, t->name);
    char *label = kind_label(t->k, t->tenant, t->site, t->name);
    ans_t a;
    int rc = api(c, "GET", path, NULL, NULL, &a);
    if (rc) {
        free(path);
        free(label);
        return rc;
    }
    int existed = a.status == 200;
    char etag[72] = "";
    if (existed)
        snprintf(etag, sizeof etag, "%s", a.etag);
    else if (a.status != 404)
        rc = api_fail("GET", path, &a);
    ans_free(&a);
    if (rc) {
        free(path);
        free(label);
        return rc;
    }
    char *target = c->dry_run ? add_query(xstrdup(path), "dry_run", "true") : xstrdup(path);
    char *hdr = existed && etag[0] && token_ok(etag) ? xasprintf("If-Match: %s\r\n", etag) : NULL;
    rc = api(c, "PUT", target, hdr, t->body, &a);
    free(hdr);
    if (rc == 0 && (a.status < 200 || a.status > 299)) {
        rc = api_fail("PUT", target, &a);
        if (a.status == 412)
            fprintf(stderr, "  %s changed since it was read: run apply again\n", label);
        else
            fprintf(stderr, "  %s was not applied\n", label);
    }
    if (rc == 0) {
        const char *result = !existed || a.status == 201 ? "created" : "configured";
        char version[24];
        if (c->dry_run) {
            snprintf(version, sizeof version, "%lld", (long long)json_integer_value(json_object_get(a.json, "version")));
        } else {
            if (existed && a.status != 201 && !strcmp(a.etag, etag))
                result = "unchanged";
            snprintf(version, sizeof version, "%s", a.version[0] ? a.version : "?");
        }
        if (c->json) {
            json_t *r = json_pack("{s:s,s:s*,s:s*,s:s*,s:s,s:s,s:b}", "kind", t->k->name, "tenant",
                                  t->k->coll ? t->tenant : t->name, "site", t->k->routes ? t->site : NULL, "name", t->name,
                                  "result", result, "version", version, "dry_run", c->dry_run);
            if (r)
                json_array_append_new(report, r);
        } else {
            char *l = clean(label);
            if (c->dry_run)
                printf("%s would be %s (dry run: valid; version %s stays current)\n", l, result, version);
            else
                printf("%s %s (version %s)\n", l, result, version);
            free(l);
        }
    }
    ans_free(&a);
    free(target);
    free(path);
    free(label);
    return rc;
}

static int cmd_apply(ctl_t *c)
{
    if (!c->file)
        return usage_error(usage_apply, "apply needs -f FILE");
    if (c->npos > 1)
        return usage_error(usage_apply, "unexpected argument '%.100s'", c->pos[1]);
    size_t len = 0;
    char *text = read_input(c->file, &len);
    if (!text)
        return GH_CTL_USAGE;
    json_t *docs = NULL;
    int rc = parse_docs(c->file, text, len, &docs);
    free(text);
    size_t n = json_array_size(docs);
    target_t *t = calloc(n ? n : 1, sizeof *t);
    if (!t)
        oom();
    if (rc == 0 && !n)
        rc = input_error(c->file, 0, 0, "no documents");
    for (size_t i = 0; rc == 0 && i < n; i++) /* all checked before anything is sent */
        rc = classify(c, json_array_get(docs, i), i, &t[i]);
    json_t *report = json_array();
    size_t done = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = apply_one(c, &t[i], report);
        done += rc == 0;
    }
    if (rc == GH_CTL_API && done)
        fprintf(stderr, "gatehouse ctl: %zu of %zu documents were applied before the refusal\n", done, n);
    if (c->json && (rc == 0 || done))
        print_json(report);
    json_decref(report);
    json_decref(docs);
    free(t);
    return rc;
}

/* ---------------------------------------------------------------- delete */

static int cmd_delete(ctl_t *c)
{
    if (c->npos < 2)
        return usage_error(usage_delete, "delete what?");
    const kind_t *k = kind_find(c->pos[1]);
    if (!k)
        return usage_error(usage_delete, "unknown kind '%.100s'", c->pos[1]);
    const char *name = c->npos > 2 ? c->pos[2] : NULL;
    if (c->npos > (k->single ? 2 : 3))
        return usage_error(usage_delete, "too many arguments");
    if (!k->single && !name)
        return usage_error(usage_delete, "delete %s needs a NAME", k->name);
    int rc = kind_needs(k, c->tenant, c->site, usage_delete);
    if (rc)
        return rc;
    char *path = kind_path(k, c->tenant, c->site, name);
    char *label = kind_label(k, c->tenant, c->site, k->single ? NULL : name);
    if (c->dry_run)
        path = add_query(path, "dry_run", "true");
    ans_t a;
    rc = api_ok(c, "DELETE", path, NULL, NULL, &a);
    if (rc == 0) {
        char v[24];
        snprintf(v, sizeof v, "%s", a.version[0] ? a.version : "?");
        if (c->dry_run)
            snprintf(v, sizeof v, "%lld", (long long)json_integer_value(json_object_get(a.json, "version")));
        if (c->json) {
            json_t *r = json_pack("{s:s,s:s,s:s,s:b}", "kind", k->name, "result", "deleted", "version", v, "dry_run", c->dry_run);
            print_json(r);
            json_decref(r);
        } else {
            char *l = clean(label);
            if (c->dry_run)
                printf("%s would be deleted (dry run: valid; version %s stays current)\n", l, v);
            else
                printf("%s deleted (version %s)\n", l, v);
            free(l);
        }
        ans_free(&a);
    }
    free(path);
    free(label);
    return rc;
}

/* ---------------------------------------------------------------- versions, diff, rollback */

static int cmd_versions(ctl_t *c)
{
    if (c->npos > 1)
        return usage_error(usage_versions, "unexpected argument '%.100s'", c->pos[1]);
    json_t *items = NULL, *first = NULL;
    int rc = list_all(c, "/v1/versions", c->limit, &items, &first);
    if (rc == 0) {
        if (c->json) {
            print_json(items);
        } else {
            static const char *const head[] = {"VERSION", "CREATED", "ACTOR", "COMMENT"};
            json_int_t cur = json_integer_value(json_object_get(first, "current"));
            table_t t = {.ncol = 4};
            tab_row(&t, head);
            size_t i;
            json_t *v;
            json_array_foreach(items, i, v) {
                json_int_t id = json_integer_value(json_object_get(v, "id"));
                char *cells[4] = {xasprintf("%lld%s", (long long)id, id == cur ? " *" : ""), jtext(json_object_get(v, "created_at")),
                                  jtext(json_object_get(v, "actor")), jtext(json_object_get(v, "comment"))};
                tab_row_free(&t, cells);
            }
            tab_print(&t);
        }
    }
    json_decref(items);
    json_decref(first);
    return rc;
}

static int cmd_diff(ctl_t *c)
{
    if (c->npos != 2)
        return usage_error(usage_diff, c->npos < 2 ? "diff needs a version number" : "too many arguments");
    long long n = positive(c->pos[1], INT64_MAX), from = c->from ? positive(c->from, INT64_MAX) : 0;
    if (n < 0 || from < 0)
        return usage_error(usage_diff, "versions are numbers from 1");
    char *path = api_path("versions", c->pos[1], "diff", NULL);
    if (c->from)
        path = add_query(path, "from", c->from);
    ans_t a;
    int rc = api_ok(c, "GET", path, NULL, NULL, &a);
    free(path);
    if (rc)
        return rc;
    if (c->json) {
        print_json(a.json);
    } else {
        const json_t *ch = json_object_get(a.json, "changes");
        printf("version %lld -> %lld: %zu change%s\n", (long long)json_integer_value(json_object_get(a.json, "from")),
               (long long)json_integer_value(json_object_get(a.json, "to")), json_array_size(ch),
               json_array_size(ch) == 1 ? "" : "s");
        size_t i;
        json_t *d;
        json_array_foreach(ch, i, d) {
            const char *op = jstr(d, "op") ? jstr(d, "op") : "";
            char *p = clean(jstr(d, "path") ? jstr(d, "path") : "");
            char *b = jtext(json_object_get(d, "before")), *af = jtext(json_object_get(d, "after"));
            char *cb = clean(b), *ca = clean(af);
            if (!strcmp(op, "add"))
                printf("+ %s: %s\n", p, ca);
            else if (!strcmp(op, "remove"))
                printf("- %s: %s\n", p, cb);
            else
                printf("~ %s: %s -> %s\n", p, cb, ca);
            free(p), free(b), free(af), free(cb), free(ca);
        }
    }
    ans_free(&a);
    return 0;
}

static int cmd_rollback(ctl_t *c)
{
    if (c->npos != 2)
        return usage_error(usage_rollback, c->npos < 2 ? "rollback needs a version number" : "too many arguments");
    if (positive(c->pos[1], INT64_MAX) < 0)
        return usage_error(usage_rollback, "versions are numbers from 1");
    ans_t a;
    int rc = api_ok(c, "GET", "/v1/versions?limit=1", NULL, NULL, &a);
    if (rc)
        return rc;
    long long before = (long long)json_integer_value(json_object_get(a.json, "current"));
    ans_free(&a);
    char *path = api_path("versions", c->pos[1], "rollback", NULL);
    if (c->dry_run)
        path = add_query(path, "dry_run", "true");
    rc = api_ok(c, "POST", path, NULL, NULL, &a);
    free(path);
    if (rc)
        return rc;
    long long now = c->dry_run ? (long long)json_integer_value(json_object_get(a.json, "version")) : atoll(a.version);
    if (c->json) {
        json_t *r = json_pack("{s:I,s:I,s:I,s:b}", "rolled_back_to", (json_int_t)positive(c->pos[1], INT64_MAX), "previous",
                              (json_int_t)before, "version", (json_int_t)now, "dry_run", c->dry_run);
        print_json(r);
        json_decref(r);
    } else if (c->dry_run) {
        printf("rollback to version %s is valid (dry run; version %lld stays current)\n", c->pos[1], now);
    } else if (now == before) {
        printf("version %lld already has version %s's configuration: nothing changed\n", now, c->pos[1]);
    } else {
        printf("rolled back to version %s's configuration: version %lld (was %lld)\n", c->pos[1], now, before);
    }
    ans_free(&a);
    return 0;
}

/* ---------------------------------------------------------------- keys */

static int cmd_keys_list(ctl_t *c, const char *id)
{
    if (!c->tenant)
        return usage_error(usage_keys, "keys need --tenant");
    char *path = api_path("tenants", c->tenant, "keys", id, NULL);
    int rc;
    json_t *items = NULL;
    if (id) {
        ans_t a;
        rc = api_ok(c, "GET", path, NULL, NULL, &a);
        if (rc == 0)
            items = json_pack("[O]", a.json);
        ans_free(&a);
    } else {
        rc = list_all(c, path, c->limit, &items, NULL);
    }
    if (rc == 0) {
        if (c->json)
            print_json(id ? json_array_get(items, 0) : items);
        else
            print_rows(&K_KEYS, items, NULL, "");
    }
    json_decref(items);
    free(path);
    return rc;
}

static int cmd_keys(ctl_t *c)
{
    const char *sub = c->npos > 1 ? c->pos[1] : "";
    if (strcmp(sub, "list") && strcmp(sub, "create") && strcmp(sub, "revoke"))
        return usage_error(usage_keys, "keys list, create or revoke?");
    if (!c->tenant)
        return usage_error(usage_keys, "keys need --tenant");
    if (!strcmp(sub, "list")) {
        if (c->npos > 2 || (c->given & (O_NAME | O_SCOPES | O_TTL)))
            return usage_error(usage_keys, "keys list takes only --tenant");
        return cmd_keys_list(c, NULL);
    }
    if (!strcmp(sub, "revoke")) {
        if (c->npos != 3 || (c->given & (O_NAME | O_SCOPES | O_TTL | O_LIMIT | O_PAGE)))
            return usage_error(usage_keys, "keys revoke takes --tenant and one key ID");
        char *path = api_path("tenants", c->tenant, "keys", c->pos[2], NULL);
        ans_t a;
        int rc = api_ok(c, "DELETE", path, NULL, NULL, &a);
        free(path);
        if (rc == 0) {
            char *id = clean(c->pos[2]);
            if (c->json) {
                json_t *r = json_pack("{s:s,s:s}", "id", id, "result", "revoked");
                print_json(r);
                json_decref(r);
            } else
                printf("key %s revoked\n", id);
            free(id);
            ans_free(&a);
        }
        return rc;
    }
    if (c->npos != 2)
        return usage_error(usage_keys, "unexpected argument '%.100s'", c->pos[2]);
    if (!c->name || !c->scopes)
        return usage_error(usage_keys, "keys create needs --name and --scopes");
    if (c->given & (O_LIMIT | O_PAGE))
        return usage_error(usage_keys, "keys create does not take --limit or --page-size");
    long long ttl = c->ttl ? positive(c->ttl, 10LL * 365 * 86400) : 0;
    if (ttl < 0)
        return usage_error(usage_keys, "--ttl is a number of seconds, 1..315360000");
    json_t *scopes = json_array();
    char *list = xstrdup(c->scopes), *save = NULL;
    for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        while (*s == ' ')
            s++;
        size_t n = strlen(s);
        while (n && s[n - 1] == ' ')
            s[--n] = 0;
        if (n)
            json_array_append_new(scopes, json_string(s));
    }
    free(list);
    if (!json_array_size(scopes)) {
        json_decref(scopes);
        return usage_error(usage_keys, "--scopes is a comma-separated list");
    }
    json_t *body = json_pack("{s:s,s:o}", "name", c->name, "scopes", scopes);
    if (!body)
        return usage_error(usage_keys, "--name is not UTF-8");
    if (ttl)
        json_object_set_new(body, "ttl_seconds", json_integer(ttl));
    char *path = api_path("tenants", c->tenant, "keys", NULL);
    ans_t a;
    int rc = api_ok(c, "POST", path, NULL, body, &a);
    free(path);
    json_decref(body);
    if (rc)
        return rc;
    if (c->json) {
        print_json(a.json);
    } else {
        json_t *one = json_pack("[O]", a.json);
        print_rows(&K_KEYS, one, NULL, "");
        json_decref(one);
        char *k = clean(jstr(a.json, "key") ? jstr(a.json, "key") : "?");
        printf("\nkey: %s\n(shown this once: store it now)\n", k);
        explicit_bzero(k, strlen(k));
        free(k);
    }
    ans_free(&a);
    return 0;
}

/* ---------------------------------------------------------------- purge, audit */

static int cmd_purge(ctl_t *c)
{
    if (!c->tenant)
        return usage_error(usage_purge, "purge needs --tenant");
    if (c->npos > 1)
        return usage_error(usage_purge, "unexpected argument '%.100s'", c->pos[1]);
    int kinds_given = !!c->tags + !!c->urls + !!c->prefixes + c->all;
    if (kinds_given != 1)
        return usage_error(usage_purge, "give one of --tag, --url, --prefix (repeatable) or --all");
    const char *field = c->tags ? "tags" : c->urls ? "urls" : "prefixes";
    json_t *vals = c->tags ? c->tags : c->urls ? c->urls : c->prefixes;
    char *path = api_path("tenants", c->tenant, "purges", NULL);
    long long total = 0;
    int rc = 0;
    size_t n = c->all ? 1 : json_array_size(vals);
    for (size_t i = 0; rc == 0 && i < n; i += PURGE_BATCH) {
        json_t *body = json_pack("{s:b}", "soft", c->soft);
        if (c->all) {
            json_object_set_new(body, "all", json_true());
        } else {
            json_t *part = json_array();
            for (size_t j = i; j < n && j < i + PURGE_BATCH; j++)
                json_array_append(part, json_array_get(vals, j));
            json_object_set_new(body, field, part);
        }
        ans_t a;
        rc = api_ok(c, "POST", path, NULL, body, &a);
        json_decref(body);
        if (rc == 0) {
            total += (long long)json_integer_value(json_object_get(a.json, "purged"));
            ans_free(&a);
        }
    }
    free(path);
    if (rc)
        return rc;
    if (c->json) {
        json_t *r = json_pack("{s:I,s:b}", "purged", (json_int_t)total, "soft", c->soft);
        print_json(r);
        json_decref(r);
    } else {
        printf("purged %lld object%s%s\n", total, total == 1 ? "" : "s", c->soft ? " (soft: marked stale)" : "");
    }
    return 0;
}

static int cmd_audit(ctl_t *c)
{
    if (c->npos > 1)
        return usage_error(usage_audit, "unexpected argument '%.100s'", c->pos[1]);
    char *path = xstrdup("/v1/audit");
    if (c->tenant)
        path = add_query(path, "tenant", c->tenant);
    json_t *items = NULL;
    int rc = list_all(c, path, c->limit, &items, NULL);
    free(path);
    if (rc == 0) {
        if (c->json) {
            print_json(items);
        } else {
            static const char *const head[] = {"ID", "AT", "ACTOR", "SOURCE", "ACTION", "TENANT", "RESOURCE", "VERSION", "CHANGES"};
            table_t t = {.ncol = 9};
            tab_row(&t, head);
            size_t i;
            json_t *e;
            json_array_foreach(items, i, e) {
                char *cells[9] = {jtext(json_object_get(e, "id")),       jtext(json_object_get(e, "at")),
                                  jtext(json_object_get(e, "actor")),    jtext(json_object_get(e, "source")),
                                  jtext(json_object_get(e, "action")),   jtext(json_object_get(e, "tenant")),
                                  jtext(json_object_get(e, "resource")), jtext(json_object_get(e, "version")),
                                  xasprintf("%zu", json_array_size(json_object_get(e, "diff")))};
                tab_row_free(&t, cells);
            }
            tab_print(&t);
        }
    }
    json_decref(items);
    return rc;
}

/* ================================================================ entry */

static const struct cmd {
    const char *name;
    int (*run)(ctl_t *c);
    unsigned opts;
    const char *usage;
} cmds[] = {
    {"get", cmd_get, O_TENANT | O_SITE | O_LIMIT | O_PAGE, usage_get},
    {"apply", cmd_apply, O_FILE | O_DRY | O_TENANT | O_SITE, usage_apply},
    {"delete", cmd_delete, O_TENANT | O_SITE | O_DRY, usage_delete},
    {"versions", cmd_versions, O_LIMIT | O_PAGE, usage_versions},
    {"diff", cmd_diff, O_FROM, usage_diff},
    {"rollback", cmd_rollback, O_DRY, usage_rollback},
    {"keys", cmd_keys, O_TENANT | O_NAME | O_SCOPES | O_TTL | O_LIMIT | O_PAGE, usage_keys},
    {"purge", cmd_purge, O_TENANT | O_TAG | O_URL | O_PREFIX | O_ALL | O_SOFT, usage_purge},
    {"audit", cmd_audit, O_TENANT | O_LIMIT | O_PAGE, usage_audit},
};

static const struct cmd *cmd_find(const char *s)
{
    for (size_t i = 0; s && i < GH_ARRAY_LEN(cmds); i++)
        if (!strcmp(s, cmds[i].name))
            return &cmds[i];
    return NULL;
}

static int run(ctl_t *c, int argc, char **argv)
{
    char why[200] = "";
    int bad = parse_args(c, argc, argv, why, sizeof why);
    const char *name = c->npos ? c->pos[0] : NULL;
    if (name && !strcmp(name, "help")) { /* gatehouse ctl help [COMMAND] */
        const struct cmd *h = cmd_find(c->npos > 1 ? c->pos[1] : NULL);
        fputs(h ? h->usage : usage_main, stdout);
        return GH_CTL_OK;
    }
    const struct cmd *cmd = cmd_find(name);
    if (c->given & O_HELP) {
        fputs(cmd ? cmd->usage : usage_main, stdout);
        return GH_CTL_OK;
    }
    if (bad)
        return usage_error(cmd ? cmd->usage : usage_main, "%s", why);
    if (!name)
        return usage_error(usage_main, "which command?");
    if (!cmd)
        return usage_error(usage_main, "unknown command '%.100s'", name);
    for (size_t i = 0; i < GH_ARRAY_LEN(opts); i++)
        if ((c->given & opts[i].bit) && !((cmd->opts | O_GLOBAL) & opts[i].bit))
            return usage_error(cmd->usage, "%s does not take --%s", cmd->name, opts[i].name);
    if (c->output && strcmp(c->output, "json") && strcmp(c->output, "table"))
        return usage_error(usage_main, "--output is table or json");
    c->json = c->output && !strcmp(c->output, "json");
    if (c->limit_s && (c->limit = (long)positive(c->limit_s, 1000000000)) < 0)
        return usage_error(cmd->usage, "--limit is a positive number");
    c->page = PAGE_MAX;
    if (c->page_s && (c->page = (long)positive(c->page_s, PAGE_MAX)) < 0)
        return usage_error(cmd->usage, "--page-size is 1..%d", PAGE_MAX);
    if (!c->admin)
        c->admin = getenv("GATEHOUSE_ADMIN") && *getenv("GATEHOUSE_ADMIN") ? getenv("GATEHOUSE_ADMIN") : "127.0.0.1:9090";
    int rc = resolve_key(c);
    return rc ? rc : cmd->run(c);
}

int gh_ctl_main(int argc, char **argv)
{
    ctl_t c;
    memset(&c, 0, sizeof c);
    int rc = run(&c, argc, argv);
    fflush(stdout);
    explicit_bzero(c.key, sizeof c.key);
    json_decref(c.tags);
    json_decref(c.urls);
    json_decref(c.prefixes);
    return rc;
}
