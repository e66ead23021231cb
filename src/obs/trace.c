/* trace.c: see trace.h. */
#include "obs/trace.h"

#include "core/json.h"
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int gh_trace_active;

const char *const gh_trace_outcome_names[GH_TT__COUNT] = {
    [GH_TT_OPEN] = "ok",           [GH_TT_OK] = "ok",           [GH_TT_RETRIED] = "retried_status",
    [GH_TT_CONNECT_ERROR] = "connect_error", [GH_TT_TIMEOUT] = "timeout", [GH_TT_RESET] = "reset",
    [GH_TT_BAD_RESPONSE] = "bad_response",   [GH_TT_ABORTED] = "aborted",
};

/* ---------------------------------------------------------------- the context */

static const char hexd[] = "0123456789abcdef";

void gh_trace_hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[p[i] >> 4];
        out[2 * i + 1] = hexd[p[i] & 15];
    }
}

/* a lowercase hex digit's value, or -1 (W3C: lowercase only) */
static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* n bytes from 2n hex digits: 0, or -1 when a digit is bad or the id is all zero */
static int unhex_id(const char *p, size_t n, uint8_t *out)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero ? 0 : -1;
}

int gh_trace_parse(const char *p, size_t n, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags)
{
    if (!p || n != GH_TRACEPARENT_LEN || p[0] != '0' || p[1] != '0' || p[2] != '-' || p[35] != '-' || p[52] != '-')
        return GH_EINVAL;
    uint8_t tid[16], pid[8];
    int hi = hexval(p[53]), lo = hexval(p[54]);
    if (hi < 0 || lo < 0 || unhex_id(p + 3, 16, tid) < 0 || unhex_id(p + 36, 8, pid) < 0)
        return GH_EINVAL;
    memcpy(trace_id, tid, 16);
    memcpy(parent_id, pid, 8);
    *flags = (uint8_t)(hi << 4 | lo);
    return 0;
}

void gh_trace_format(char *out, const uint8_t trace_id[16], const uint8_t span_id[8], int sampled)
{
    memcpy(out, "00-", 3);
    gh_trace_hex(out + 3, trace_id, 16);
    out[35] = '-';
    gh_trace_hex(out + 36, span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = sampled ? '1' : '0';
}

static void rand_id(uint8_t *out, size_t n, uint64_t (*rnd)(void *), void *arg)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = rnd(arg);
            memcpy(out + i, &v, GH_MIN((size_t)8, n - i));
        }
        uint8_t any = 0;
        for (size_t i = 0; i < n; i++)
            any |= out[i];
        if (any)
            return;
    } while (1);
}

void gh_trace_begin(gh_trace_ctx_t *t, gh_str_t tp, double ratio, int respect_parent, uint64_t (*rnd)(void *),
                    void *arg, uint64_t now_us, uint64_t wall_ns)
{
    uint8_t flags = 0;
    t->on = 1;
    t->parent_ok = tp.n && gh_trace_parse(tp.p, tp.n, t->trace_id, t->parent_id, &flags) == 0;
    if (!t->parent_ok) {
        rand_id(t->trace_id, 16, rnd, arg);
        memset(t->parent_id, 0, 8);
    }
    rand_id(t->span_id, 8, rnd, arg);
    if (t->parent_ok && respect_parent) {
        t->sampled = flags & 1;
    } else {
        /* 53 random bits against the ratio: 1.0 always, 0 never */
        double u = (double)(rnd(arg) >> 11) * (1.0 / 9007199254740992.0);
        t->sampled = u < ratio;
    }
    t->wall_ns = wall_ns - now_us * 1000u; /* an offset: monotonic us -> unix ns */
    t->decide_us = now_us;
}

const uint8_t *gh_trace_try_begin(gh_trace_ctx_t *t, const char *backend, uint64_t rnd, uint64_t now_us)
{
    static __thread uint8_t spare[8]; /* tries beyond the recorded ones still get an id */
    uint8_t *id = spare;
    if (t->ntries < GH_TRACE_MAX_TRIES) {
        t->tries[t->ntries] = (gh_trace_try_t){.outcome = GH_TT_OPEN,
                                               .num = (uint8_t)(t->ntries + 1),
                                               .start_us = now_us,
                                               .backend = backend};
        id = t->tries[t->ntries].span_id;
    }
    memcpy(id, &rnd, 8);
    if (!rnd)
        id[0] = 1;
    if (t->ntries < 255)
        t->ntries++;
    return id;
}

static gh_trace_try_t *cur_try(gh_trace_ctx_t *t)
{
    if (!t->ntries || t->ntries > GH_TRACE_MAX_TRIES)
        return NULL;
    return &t->tries[t->ntries - 1];
}

void gh_trace_try_status(gh_trace_ctx_t *t, int status)
{
    gh_trace_try_t *tr = cur_try(t);
    if (tr && !tr->end_us)
        tr->status = (uint16_t)status;
}

void gh_trace_try_end(gh_trace_ctx_t *t, int outcome, uint64_t now_us)
{
    gh_trace_try_t *tr = cur_try(t);
    if (!tr || tr->end_us)
        return;
    tr->outcome = (uint8_t)outcome;
    tr->end_us = now_us ? now_us : 1;
}

/* ---------------------------------------------------------------- records */

/* A record in a ring: rec_hdr_t, ntries rec_try_t, then NSTR + ntries strings (u16 length,
 * bytes). Read back only by this process. */
typedef struct {
    uint32_t len; /* of the whole record */
    uint8_t trace_id[16], span_id[8], parent_id[8];
    uint8_t parent_ok, sampled, ntries, pad;
    int32_t status;
    uint64_t start_ns, end_ns, decide_ns;
} rec_hdr_t;

typedef struct {
    uint8_t span_id[8];
    uint8_t outcome, num;
    uint16_t status;
    uint32_t pad;
    uint64_t start_ns, end_ns;
} rec_try_t;

enum { S_METHOD, S_PATH, S_HOST, S_TENANT, S_ROUTE, S_CLIENT, S_PROTO, S_UPSTREAM, S_CACHE, S_PACTION, S_PREASON,
       S_PDETAIL, S_TSTATE, S_REQID, NSTR };
static const uint16_t str_max[NSTR] = {32, 1024, 256, 128, 128, 64, 16, 256, 16, 32, 32, 128, 512, 128};

#define REC_MAX 8192

static size_t put_rstr(char *out, size_t cap, size_t at, gh_str_t s, size_t max)
{
    uint16_t n = (uint16_t)GH_MIN(GH_MIN(s.n, max), cap - at - 2);
    if (at + 2 > cap)
        return at;
    memcpy(out + at, &n, 2);
    if (n)
        memcpy(out + at + 2, s.p, n);
    return at + 2 + n;
}

size_t gh_trace_record_encode(char *out, size_t cap, const gh_trace_req_t *q)
{
    const gh_trace_ctx_t *t = q->ctx;
    uint8_t nt = (uint8_t)GH_MIN(t->ntries, GH_TRACE_MAX_TRIES);
    size_t need = sizeof(rec_hdr_t) + nt * sizeof(rec_try_t);
    if (cap < need + 2 * (NSTR + nt))
        return 0;
    int64_t off = (int64_t)t->wall_ns;
    rec_hdr_t h = {.parent_ok = t->parent_ok,
                   .sampled = t->sampled,
                   .ntries = nt,
                   .status = q->status,
                   .start_ns = (uint64_t)((int64_t)q->start_us * 1000 + off),
                   .end_ns = (uint64_t)((int64_t)q->end_us * 1000 + off),
                   .decide_ns = (uint64_t)((int64_t)t->decide_us * 1000 + off)};
    memcpy(h.trace_id, t->trace_id, 16);
    memcpy(h.span_id, t->span_id, 8);
    memcpy(h.parent_id, t->parent_id, 8);
    size_t at = sizeof h;
    for (uint8_t i = 0; i < nt; i++) {
        const gh_trace_try_t *tr = &t->tries[i];
        uint64_t end = tr->end_us ? tr->end_us : q->end_us;
        rec_try_t rt = {.outcome = tr->end_us ? tr->outcome : tr->status ? GH_TT_OK : GH_TT_ABORTED,
                        .num = tr->num,
                        .status = tr->status,
                        .start_ns = (uint64_t)((int64_t)tr->start_us * 1000 + off),
                        .end_ns = (uint64_t)((int64_t)end * 1000 + off)};
        memcpy(rt.span_id, tr->span_id, 8);
        memcpy(out + at, &rt, sizeof rt);
        at += sizeof rt;
    }
    const gh_str_t s[NSTR] = {q->method, q->path,        q->host,        q->tenant,     q->route,
                              q->client, q->proto,       q->upstream,    q->cache,      q->prot_action,
                              q->prot_reason, q->prot_detail, t->parent_ok ? t->tracestate : GH_STR_NULL, q->request_id};
    for (int i = 0; i < NSTR; i++)
        at = put_rstr(out, cap, at, s[i], str_max[i]);
    for (uint8_t i = 0; i < nt; i++) {
        const char *b = t->tries[i].backend;
        at = put_rstr(out, cap, at, b ? gh_str(b, strlen(b)) : GH_STR_NULL, 256);
    }
    h.len = (uint32_t)at;
    memcpy(out, &h, sizeof h);
    return at;
}

/* ---------------------------------------------------------------- JSON */

typedef struct {
    char *p;
    size_t n, cap;
    int over;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->over || o->n + n > o->cap) {
        o->over = 1;
        return;
    }
    memcpy(o->p + o->n, s, n);
    o->n += n;
}
#define PUTL(o, lit) put(o, lit, sizeof(lit) - 1)

static void put_fmt(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(out_t *o, const char *fmt, ...)
{
    if (o->over)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= o->cap - o->n)
        o->over = 1;
    else
        o->n += (size_t)m;
}

static void put_jstr(out_t *o, gh_str_t s)
{
    if (o->over)
        return;
    size_t room = o->cap - o->n;
    if (room < s.n + 2) { /* escaping may only grow it: a cut string is a failed record */
        o->over = 1;
        return;
    }
    size_t m = gh_json_str(o->p + o->n, room, s, 0);
    if (!m || (m == room && s.n)) {
        o->over = 1;
        return;
    }
    o->n += m;
}

static void put_hex(out_t *o, const uint8_t *p, size_t n)
{
    if (o->over || o->n + 2 * n + 2 > o->cap) {
        o->over = 1;
        return;
    }
    o->p[o->n++] = '"';
    gh_trace_hex(o->p + o->n, p, n);
    o->n += 2 * n;
    o->p[o->n++] = '"';
}

/* attributes: a comma before all but the first of a list (*first) */
static void attr_str(out_t *o, int *first, const char *key, gh_str_t v)
{
    put_fmt(o, "%s{\"key\":\"%s\",\"value\":{\"stringValue\":", *first ? "" : ",", key);
    put_jstr(o, v);
    PUTL(o, "}}");
    *first = 0;
}

static void attr_int(out_t *o, int *first, const char *key, long long v)
{
    put_fmt(o, "%s{\"key\":\"%s\",\"value\":{\"intValue\":\"%lld\"}}", *first ? "" : ",", key, v);
    *first = 0;
}

/* host[:port] -> host, port (0 when none); an IPv6 literal keeps no brackets */
static gh_str_t split_host(gh_str_t h, long *port)
{
    *port = 0;
    size_t i = h.n;
    while (i && h.p[i - 1] >= '0' && h.p[i - 1] <= '9')
        i--;
    if (i && i < h.n && h.p[i - 1] == ':' && (i < 2 || h.p[i - 2] == ']' || !memchr(h.p, ':', i - 1))) {
        *port = strtol(h.p + i, NULL, 10);
        h.n = i - 1;
    }
    if (h.n >= 2 && h.p[0] == '[' && h.p[h.n - 1] == ']')
        h = gh_str(h.p + 1, h.n - 2);
    return h;
}

size_t gh_trace_record_json(char *buf, size_t cap, const void *recp, size_t len, int *nspans)
{
    const char *rec = recp;
    *nspans = 0;
    rec_hdr_t h;
    if (len < sizeof h)
        return 0;
    memcpy(&h, rec, sizeof h);
    if (h.len != len || h.ntries > GH_TRACE_MAX_TRIES || len < sizeof h + h.ntries * sizeof(rec_try_t))
        return 0;
    rec_try_t tries[GH_TRACE_MAX_TRIES];
    memcpy(tries, rec + sizeof h, h.ntries * sizeof(rec_try_t));
    size_t at = sizeof h + h.ntries * sizeof(rec_try_t);
    gh_str_t s[NSTR + GH_TRACE_MAX_TRIES];
    for (int i = 0; i < NSTR + h.ntries; i++) {
        uint16_t n;
        if (at + 2 > len)
            return 0;
        memcpy(&n, rec + at, 2);
        if (at + 2 + n > len)
            return 0;
        s[i] = gh_str(rec + at + 2, n);
        at += 2 + (size_t)n;
    }
    out_t o = {buf, 0, cap, 0};
    int first;
    /* the server span */
    PUTL(&o, "{\"traceId\":");
    put_hex(&o, h.trace_id, 16);
    PUTL(&o, ",\"spanId\":");
    put_hex(&o, h.span_id, 8);
    if (h.parent_ok) {
        PUTL(&o, ",\"parentSpanId\":");
        put_hex(&o, h.parent_id, 8);
    }
    if (s[S_TSTATE].n) {
        PUTL(&o, ",\"traceState\":");
        put_jstr(&o, s[S_TSTATE]);
    }
    PUTL(&o, ",\"name\":");
    char name[48];
    int nn = snprintf(name, sizeof name, "HTTP %.*s", (int)s[S_METHOD].n, s[S_METHOD].p);
    put_jstr(&o, gh_str(name, (size_t)GH_MIN(nn, (int)sizeof name - 1)));
    put_fmt(&o, ",\"kind\":2,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\",\"attributes\":[",
            (unsigned long long)h.start_ns, (unsigned long long)h.end_ns);
    first = 1;
    attr_str(&o, &first, "http.request.method", s[S_METHOD]);
    attr_str(&o, &first, "url.path", s[S_PATH]);
    if (h.status)
        attr_int(&o, &first, "http.response.status_code", h.status);
    long port;
    gh_str_t host = split_host(s[S_HOST], &port);
    if (host.n)
        attr_str(&o, &first, "server.address", host);
    if (port)
        attr_int(&o, &first, "server.port", port);
    if (s[S_TENANT].n)
        attr_str(&o, &first, "gatehouse.tenant", s[S_TENANT]);
    if (s[S_ROUTE].n)
        attr_str(&o, &first, "gatehouse.route", s[S_ROUTE]);
    attr_str(&o, &first, "client.address", s[S_CLIENT]);
    attr_str(&o, &first, "network.protocol.version", s[S_PROTO]);
    if (s[S_UPSTREAM].n)
        attr_str(&o, &first, "gatehouse.upstream", s[S_UPSTREAM]);
    if (s[S_REQID].n)
        attr_str(&o, &first, "gatehouse.request_id", s[S_REQID]);
    if (s[S_CACHE].n)
        attr_str(&o, &first, "gatehouse.cache.result", s[S_CACHE]);
    if (s[S_PREASON].n) {
        attr_str(&o, &first, "gatehouse.protect.decision", s[S_PACTION]);
        attr_str(&o, &first, "gatehouse.protect.reason", s[S_PREASON]);
    }
    PUTL(&o, "],\"events\":[");
    int ev = 0;
    if (s[S_CACHE].n) {
        put_fmt(&o, "{\"timeUnixNano\":\"%llu\",\"name\":\"cache.lookup\",\"attributes\":[",
                (unsigned long long)h.decide_ns);
        first = 1;
        attr_str(&o, &first, "gatehouse.cache.result", s[S_CACHE]);
        PUTL(&o, "]}");
        ev = 1;
    }
    if (s[S_PREASON].n) {
        put_fmt(&o, "%s{\"timeUnixNano\":\"%llu\",\"name\":\"protection.decision\",\"attributes\":[", ev ? "," : "",
                (unsigned long long)h.decide_ns);
        first = 1;
        attr_str(&o, &first, "gatehouse.protect.decision", s[S_PACTION]);
        attr_str(&o, &first, "gatehouse.protect.reason", s[S_PREASON]);
        if (s[S_PDETAIL].n)
            attr_str(&o, &first, "gatehouse.protect.detail", s[S_PDETAIL]);
        PUTL(&o, "]}");
    }
    PUTL(&o, "]");
    if (h.status >= 500)
        put_fmt(&o, ",\"status\":{\"code\":2,\"message\":\"HTTP %d\"}", (int)h.status);
    PUTL(&o, "}");
    /* one client span per try */
    for (int i = 0; i < h.ntries; i++) {
        const rec_try_t *t = &tries[i];
        PUTL(&o, ",{\"traceId\":");
        put_hex(&o, h.trace_id, 16);
        PUTL(&o, ",\"spanId\":");
        put_hex(&o, t->span_id, 8);
        PUTL(&o, ",\"parentSpanId\":");
        put_hex(&o, h.span_id, 8);
        put_fmt(&o, ",\"name\":\"upstream try\",\"kind\":3,\"startTimeUnixNano\":\"%llu\",\"endTimeUnixNano\":\"%llu\","
                    "\"attributes\":[",
                (unsigned long long)t->start_ns, (unsigned long long)t->end_ns);
        first = 1;
        attr_str(&o, &first, "http.request.method", s[S_METHOD]);
        if (s[S_UPSTREAM].n)
            attr_str(&o, &first, "gatehouse.upstream", s[S_UPSTREAM]);
        gh_str_t b = s[NSTR + i];
        attr_str(&o, &first, "gatehouse.backend", b);
        gh_str_t bh = split_host(b, &port);
        attr_str(&o, &first, "server.address", bh);
        if (port)
            attr_int(&o, &first, "server.port", port);
        attr_int(&o, &first, "gatehouse.try", t->num);
        const char *oc = t->outcome < GH_TT__COUNT ? gh_trace_outcome_names[t->outcome] : "unknown";
        attr_str(&o, &first, "gatehouse.try.outcome", gh_str(oc, strlen(oc)));
        if (t->status)
            attr_int(&o, &first, "http.response.status_code", t->status);
        PUTL(&o, "]");
        int failed = t->outcome != GH_TT_OK && t->outcome != GH_TT_OPEN;
        if (failed || t->status >= 500)
            put_fmt(&o, ",\"status\":{\"code\":2,\"message\":\"%s\"}", failed ? oc : "HTTP 5xx");
        PUTL(&o, "}");
    }
    if (o.over)
        return 0;
    *nspans = 1 + h.ntries;
    return o.n;
}

/* ---------------------------------------------------------------- rings */

#define RING_SIZE (1u << 20) /* per producer */

typedef struct {
    uint64_t head __attribute__((aligned(GH_CACHELINE))); /* consumer position */
    uint64_t tail __attribute__((aligned(GH_CACHELINE))); /* producer position */
    uint64_t dropped;                                      /* spans, written by the producer */
    char *data;
} ring_t;

static ring_t *rings;
static uint32_t nrings;
static int running;
static pthread_t exporter;
static uint64_t n_exported, n_dropped_export, n_exports_ok, n_exports_failed; /* the exporter writes */

static void count(uint64_t *c, uint64_t n) { __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED); }

int gh_trace_record(uint32_t slot, const gh_trace_req_t *q)
{
    if (!rings || slot >= nrings)
        return GH_ELIMIT;
    char rec[REC_MAX];
    size_t n = gh_trace_record_encode(rec, sizeof rec, q);
    ring_t *rg = &rings[slot];
    uint64_t tail = rg->tail;
    uint64_t head = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
    if (!n || RING_SIZE - (tail - head) < n) {
        count(&rg->dropped, 1u + GH_MIN(q->ctx->ntries, GH_TRACE_MAX_TRIES));
        return GH_ELIMIT;
    }
    size_t off = (size_t)(tail & (RING_SIZE - 1));
    size_t first = GH_MIN(n, RING_SIZE - off);
    memcpy(rg->data + off, rec, first);
    memcpy(rg->data, rec + first, n - first);
    __atomic_store_n(&rg->tail, tail + n, __ATOMIC_RELEASE);
    return 0;
}

void gh_trace_stats(gh_trace_stats_t *s)
{
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < nrings; i++)
        s->dropped_ring += __atomic_load_n(&rings[i].dropped, __ATOMIC_RELAXED);
    s->exported = __atomic_load_n(&n_exported, __ATOMIC_RELAXED);
    s->dropped_export = __atomic_load_n(&n_dropped_export, __ATOMIC_RELAXED);
    s->exports_ok = __atomic_load_n(&n_exports_ok, __ATOMIC_RELAXED);
    s->exports_failed = __atomic_load_n(&n_exports_failed, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- the exporter */

static struct {
    char host[256], port[8], path[512], hostport[300];
    uint32_t batch;
    char *prefix; /* {"resourceSpans":[{"resource":...,"scopeSpans":[{"scope":...,"spans":[ */
    size_t prefix_len;
    char *body; /* spans, comma separated, after room for the prefix */
    size_t n, cap;
    int nspans;
    uint64_t first_ms; /* when the oldest pending span was queued */
} ex;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define IO_TIMEOUT_MS 2000

/* Connect to the collector within IO_TIMEOUT_MS; the socket has send/receive timeouts. */
static int dial(void)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(ex.host, ex.port, &hints, &res) != 0 || !res)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t el = sizeof err;
            if (poll(&p, 1, IO_TIMEOUT_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && !err)
                rc = 0;
        }
        if (rc < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    int fl = fcntl(fd, F_GETFL); /* blocking from here, with timeouts */
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One POST of body: the collector's status, or -1 (no connection, timeout, no answer). */
static int post(const char *body, size_t n)
{
    int fd = dial();
    if (fd < 0)
        return -1;
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gatehouse\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      ex.path, ex.hostport, n);
    int status = -1;
    if (write_all(fd, head, (size_t)hn) == 0 && write_all(fd, body, n) == 0) {
        char resp[256];
        size_t got = 0;
        while (got < sizeof resp - 1) { /* the status line is all we need */
            ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
            if (memchr(resp, '\n', got))
                break;
        }
        resp[got] = 0;
        int code;
        if (got >= 12 && !strncmp(resp, "HTTP/1.", 7) && sscanf(resp + 9, "%3d", &code) == 1)
            status = code;
    }
    close(fd);
    return status;
}

/* POST the pending spans: up to 3 attempts (100 ms, 400 ms apart; one when stopping) on a
 * connection failure, 429 or 5xx; then counted and dropped either way. After a failed
 * export the collector is left alone for a while (1 s, doubling to 30 s while it keeps
 * failing): batches meanwhile are dropped at once, so the exporter never falls behind. */
static void flush(void)
{
    static uint64_t down_until, down_ms;
    if (!ex.nspans)
        return;
    int stopping = !__atomic_load_n(&running, __ATOMIC_ACQUIRE);
    if (down_until && mono_ms() < down_until) {
        count(&n_dropped_export, (uint64_t)ex.nspans);
        ex.n = 0;
        ex.nspans = 0;
        return;
    }
    static const char tail[] = "]}]}]}";
    if (ex.n + sizeof tail > ex.cap) /* room was kept for it */
        ex.n = ex.cap - sizeof tail;
    memcpy(ex.body + ex.n, tail, sizeof tail - 1);
    char *doc = ex.body - ex.prefix_len; /* the prefix sits right before the spans */
    size_t len = ex.prefix_len + ex.n + sizeof tail - 1;
    int status = -1;
    for (int attempt = 0; attempt < (stopping ? 1 : 3); attempt++) {
        if (attempt)
            sleep_ms(attempt == 1 ? 100 : 400);
        status = post(doc, len);
        if (status >= 200 && status < 300)
            break;
        if (status > 0 && status != 429 && status < 500)
            break; /* the collector refuses this body: no use sending it again */
    }
    if (status >= 200 && status < 300) {
        count(&n_exported, (uint64_t)ex.nspans);
        count(&n_exports_ok, 1);
        down_until = down_ms = 0;
    } else {
        count(&n_dropped_export, (uint64_t)ex.nspans);
        count(&n_exports_failed, 1);
        down_ms = down_ms ? GH_MIN(down_ms * 2, (uint64_t)30000) : 1000;
        down_until = mono_ms() + down_ms;
        static uint64_t last;
        uint64_t now = mono_ms();
        if (!last || now - last >= 10000) {
            last = now;
            char why[32];
            if (status < 0)
                snprintf(why, sizeof why, "no answer");
            else
                snprintf(why, sizeof why, "status %d", status);
            gh_log(GH_LOG_WARN, "tracing: export to http://%s%s failed (%s): %d spans dropped", ex.hostport, ex.path,
                   why, ex.nspans);
        }
    }
    ex.n = 0;
    ex.nspans = 0;
}

/* Append one record's spans, flushing first when the batch would overflow. */
static void add_record(const char *rec, size_t len)
{
    static const size_t reserve = 16; /* the tail */
    for (int pass = 0; pass < 2; pass++) {
        int ns = 0;
        size_t room = ex.cap - ex.n - reserve;
        size_t m = room > 1 ? gh_trace_record_json(ex.body + ex.n + (ex.n ? 1 : 0), room - 1, rec, len, &ns) : 0;
        if (m && (uint32_t)(ex.nspans + ns) <= ex.batch + GH_TRACE_MAX_TRIES) {
            if (ex.n)
                ex.body[ex.n++] = ',';
            ex.n += m;
            if (!ex.nspans)
                ex.first_ms = mono_ms();
            ex.nspans += ns;
            if ((uint32_t)ex.nspans >= ex.batch)
                flush();
            return;
        }
        if (!ex.nspans) /* does not fit an empty body: never will */
            break;
        flush();
    }
    count(&n_dropped_export, 1);
}

/* Take the records a ring holds; returns how many bytes. */
static size_t drain(ring_t *r)
{
    static char rec[REC_MAX];
    uint64_t head = r->head;
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    size_t total = (size_t)(tail - head);
    while (tail - head >= sizeof(uint32_t)) {
        uint32_t len;
        for (size_t i = 0; i < sizeof len; i++)
            ((char *)&len)[i] = r->data[(head + i) & (RING_SIZE - 1)];
        if (len < sizeof(uint32_t) || len > REC_MAX || len > tail - head) {
            head = tail; /* cannot happen: the producer writes whole records */
            break;
        }
        size_t off = (size_t)(head & (RING_SIZE - 1));
        size_t first = GH_MIN((size_t)len, RING_SIZE - off);
        memcpy(rec, r->data + off, first);
        memcpy(rec + first, r->data, len - first);
        head += len;
        __atomic_store_n(&r->head, head, __ATOMIC_RELEASE); /* the worker may reuse the space */
        add_record(rec, len);
    }
    __atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
    return total;
}

static void *exporter_main(void *arg)
{
    (void)arg;
    for (;;) {
        int stop = !__atomic_load_n(&running, __ATOMIC_ACQUIRE);
        size_t n = 0;
        for (uint32_t i = 0; i < nrings; i++)
            n += drain(&rings[i]);
        if (ex.nspans && (stop || mono_ms() - ex.first_ms >= 1000))
            flush();
        if (stop)
            break;
        if (!n)
            sleep_ms(50);
    }
    return NULL;
}

/* endpoint "http://host[:port][/prefix]" -> ex.host, port, path ("/prefix/v1/traces") */
static int parse_endpoint(const char *e)
{
    if (strncmp(e, "http://", 7))
        return GH_EINVAL;
    const char *h = e + 7, *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (!hl || hl >= sizeof ex.hostport)
        return GH_EINVAL;
    memcpy(ex.hostport, h, hl);
    ex.hostport[hl] = 0;
    const char *hs = h, *port = NULL;
    size_t hn = hl;
    if (h[0] == '[') {
        const char *rb = memchr(h, ']', hl);
        if (!rb)
            return GH_EINVAL;
        hs = h + 1;
        hn = (size_t)(rb - h - 1);
        if (rb + 1 < h + hl) {
            if (rb[1] != ':')
                return GH_EINVAL;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', hl);
        if (colon) {
            hn = (size_t)(colon - h);
            port = colon + 1;
        }
    }
    if (!hn || hn >= sizeof ex.host)
        return GH_EINVAL;
    memcpy(ex.host, hs, hn);
    ex.host[hn] = 0;
    size_t pl = port ? (size_t)(h + hl - port) : 0;
    if (port && (!pl || pl >= sizeof ex.port || strspn(port, "0123456789") < pl))
        return GH_EINVAL;
    if (port) {
        memcpy(ex.port, port, pl);
        ex.port[pl] = 0;
    } else {
        strcpy(ex.port, "80");
    }
    const char *prefix = slash ? slash : "";
    size_t pfl = strlen(prefix);
    while (pfl && prefix[pfl - 1] == '/')
        pfl--;
    if (pfl + sizeof "/v1/traces" > sizeof ex.path)
        return GH_EINVAL;
    snprintf(ex.path, sizeof ex.path, "%.*s/v1/traces", (int)pfl, prefix);
    return 0;
}

int gh_trace_start(const char *endpoint, const char *service_name, const char *service_version, uint32_t batch,
                   uint32_t nslots)
{
    if (running)
        return 0;
    int rc = parse_endpoint(endpoint);
    if (rc < 0)
        return rc;
    ex.batch = batch ? batch : 512;
    char sn[512], sv[128];
    size_t a = gh_json_str(sn, sizeof sn, gh_str(service_name, strlen(service_name)), 1);
    size_t b = gh_json_str(sv, sizeof sv, gh_str(service_version, strlen(service_version)), 1);
    char prefix[1024];
    int pn = snprintf(prefix, sizeof prefix,
                      "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                      "{\"key\":\"service.name\",\"value\":{\"stringValue\":%.*s}},"
                      "{\"key\":\"service.version\",\"value\":{\"stringValue\":%.*s}}]},"
                      "\"scopeSpans\":[{\"scope\":{\"name\":\"gatehouse\",\"version\":%.*s},\"spans\":[",
                      (int)a, sn, (int)b, sv, (int)b, sv);
    if (pn < 0 || (size_t)pn >= sizeof prefix)
        return GH_EINVAL;
    /* one buffer: the prefix, then the spans of a batch (a few KB each at most), then the tail */
    ex.prefix_len = (size_t)pn;
    ex.cap = (size_t)ex.batch * 6144 + 65536;
    ex.prefix = malloc(ex.prefix_len + ex.cap);
    if (!ex.prefix)
        return GH_ENOMEM;
    memcpy(ex.prefix, prefix, ex.prefix_len);
    ex.body = ex.prefix + ex.prefix_len;
    ex.n = 0;
    ex.nspans = 0;
    rings = calloc(nslots, sizeof *rings);
    if (!rings)
        return GH_ENOMEM;
    nrings = nslots;
    for (uint32_t i = 0; i < nslots; i++)
        if (!(rings[i].data = malloc(RING_SIZE)))
            return GH_ENOMEM;
    running = 1;
    if (pthread_create(&exporter, NULL, exporter_main, NULL) != 0) {
        running = 0;
        return GH_ENOMEM;
    }
    __atomic_store_n(&gh_trace_active, 1, __ATOMIC_RELAXED);
    return 0;
}

void gh_trace_stop(void)
{
    if (!running)
        return;
    __atomic_store_n(&gh_trace_active, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&running, 0, __ATOMIC_RELEASE);
    pthread_join(exporter, NULL); /* its last round drains and exports everything */
    gh_trace_stats_t st;
    gh_trace_stats(&st);
    gh_log(GH_LOG_INFO, "tracing: %llu spans exported, %llu dropped", (unsigned long long)st.exported,
           (unsigned long long)(st.dropped_ring + st.dropped_export));
    /* the rings stay: a worker still finishing (a drain timeout) may write into them */
}
