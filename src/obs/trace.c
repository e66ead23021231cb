/* trace.c: distributed tracing, see trace.h. Called by session.c (context, records), main.c
 * (start/stop) and metrics.c (counters). Calls core/json (JSON strings), core/log, the
 * protoc-c code generated from proto/opentelemetry/ (OTLP protobuf bodies) and OpenSSL
 * (https:// collectors), from its own exporter thread. */
#include "obs/trace.h"

#include "core/json.h"
#include "core/log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <arpa/inet.h>
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

int gh_trace_active;

const char *const gh_trace_outcome_names[GH_TT__COUNT] = {
    [GH_TT_OPEN] = "ok",           [GH_TT_OK] = "ok",           [GH_TT_RETRIED] = "retried_status",
    [GH_TT_CONNECT_ERROR] = "connect_error", [GH_TT_TIMEOUT] = "timeout", [GH_TT_RESET] = "reset",
    [GH_TT_BAD_RESPONSE] = "bad_response",   [GH_TT_ABORTED] = "aborted",
};

/* ---------------------------------------------------------------- the context */

static const char hexd[] = "0123456789abcdef";

/* "00".."ff": a byte's two digits in one load (every request formats a traceparent) */
static char hex2[256][2];
__attribute__((constructor)) static void hex2_init(void)
{
    for (int i = 0; i < 256; i++)
        hex2[i][0] = hexd[i >> 4], hex2[i][1] = hexd[i & 15];
}

void gh_trace_hex(char *out, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + 2 * i, hex2[p[i]], 2);
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

/* A C string known to need no escape (our own keys, names and messages). */
static void put_cstr(out_t *o, const char *s) { put(o, s, strlen(s)); }

/* Decimal digits of v (a span's JSON is mostly numbers and keys: no printf for them). */
static void put_u64(out_t *o, unsigned long long v)
{
    char d[20];
    put(o, d, gh_u64_dec(d, v));
}

static void put_i64(out_t *o, long long v)
{
    if (v < 0) {
        PUTL(o, "-");
        put_u64(o, 0ull - (unsigned long long)v);
    } else {
        put_u64(o, (unsigned long long)v);
    }
}

/* ,"key":"<decimal>" (OTLP JSON writes 64-bit integers as strings) */
#define PUT_U64_STR(o, key, v) (PUTL(o, key ":\""), put_u64(o, v), PUTL(o, "\""))

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

/* host[:port] -> host, port (0 when none); an IPv6 literal keeps no brackets */
static gh_str_t split_host(gh_str_t h, long *port)
{
    *port = 0;
    size_t i = h.n;
    while (i && h.p[i - 1] >= '0' && h.p[i - 1] <= '9')
        i--;
    if (i && i < h.n && h.p[i - 1] == ':' && (i < 2 || h.p[i - 2] == ']' || !memchr(h.p, ':', i - 1))) {
        long v = 0; /* the view's digits only: what follows it in a record may be digits too */
        for (size_t k = i; k < h.n && v < 100000; k++)
            v = v * 10 + (h.p[k] - '0');
        *port = v;
        h.n = i - 1;
    }
    if (h.n >= 2 && h.p[0] == '[' && h.p[h.n - 1] == ']')
        h = gh_str(h.p + 1, h.n - 2);
    return h;
}

/* ---------------------------------------------------------------- spans of a record */

/* One record read back as the spans it exports: the one model both encoders (JSON and
 * protobuf) write, so the two carry the same names, ids, times and attributes. Views point
 * into the record and into this struct (ids): it lives as long as they are used. */
typedef struct {
    const char *key;
    gh_str_t s;
    long long i;
    uint8_t is_int;
} attr_t;

typedef struct {
    const char *name;
    uint64_t t_ns;
    attr_t a[4];
    int na;
} event_t;

#define SPAN_ATTRS 16

typedef struct {
    const uint8_t *trace_id, *span_id, *parent_id; /* parent_id NULL: a root */
    gh_str_t trace_state, name;
    int kind;       /* 2 server, 3 client */
    uint32_t flags; /* Span.flags: W3C flags, and whether the parent is remote */
    uint64_t start_ns, end_ns;
    attr_t a[SPAN_ATTRS];
    int na;
    event_t ev[2];
    int nev;
    int error; /* status ERROR with msg */
    char msg[32];
    char namebuf[48];
} span_t;

typedef struct {
    rec_hdr_t h;
    rec_try_t tries[GH_TRACE_MAX_TRIES];
    span_t spans[1 + GH_TRACE_MAX_TRIES];
} rec_spans_t;

#define SPAN_FLAG_SAMPLED 0x01u
#define SPAN_FLAG_HAS_IS_REMOTE 0x100u
#define SPAN_FLAG_IS_REMOTE 0x200u

static void add_str(span_t *sp, const char *key, gh_str_t v)
{
    if (sp->na < SPAN_ATTRS)
        sp->a[sp->na++] = (attr_t){.key = key, .s = v};
}

static void add_int(span_t *sp, const char *key, long long v)
{
    if (sp->na < SPAN_ATTRS)
        sp->a[sp->na++] = (attr_t){.key = key, .i = v, .is_int = 1};
}

static void ev_str(event_t *e, const char *key, gh_str_t v)
{
    if (e->na < 4)
        e->a[e->na++] = (attr_t){.key = key, .s = v};
}

/* Read a record (validated: never past len) into v's spans; their number, or 0 when the
 * record is truncated or corrupt. */
static int record_spans(const char *rec, size_t len, rec_spans_t *v)
{
    rec_hdr_t *h = &v->h;
    if (len < sizeof *h)
        return 0;
    memcpy(h, rec, sizeof *h);
    if (h->len != len || h->ntries > GH_TRACE_MAX_TRIES || len < sizeof *h + h->ntries * sizeof(rec_try_t))
        return 0;
    memcpy(v->tries, rec + sizeof *h, h->ntries * sizeof(rec_try_t));
    size_t at = sizeof *h + h->ntries * sizeof(rec_try_t);
    gh_str_t s[NSTR + GH_TRACE_MAX_TRIES];
    for (int i = 0; i < NSTR + h->ntries; i++) {
        uint16_t n;
        if (at + 2 > len)
            return 0;
        memcpy(&n, rec + at, 2);
        if (at + 2 + n > len)
            return 0;
        s[i] = gh_str(rec + at + 2, n);
        at += 2 + (size_t)n;
    }
    uint32_t wflags = h->sampled ? SPAN_FLAG_SAMPLED : 0;
    /* the server span */
    span_t *sp = &v->spans[0];
    memset(sp, 0, sizeof *sp);
    sp->trace_id = h->trace_id;
    sp->span_id = h->span_id;
    sp->parent_id = h->parent_ok ? h->parent_id : NULL;
    sp->trace_state = s[S_TSTATE];
    int nn = snprintf(sp->namebuf, sizeof sp->namebuf, "HTTP %.*s", (int)s[S_METHOD].n, s[S_METHOD].p);
    sp->name = gh_str(sp->namebuf, (size_t)GH_MIN(nn, (int)sizeof sp->namebuf - 1));
    sp->kind = 2;
    sp->flags = wflags | SPAN_FLAG_HAS_IS_REMOTE | (h->parent_ok ? SPAN_FLAG_IS_REMOTE : 0);
    sp->start_ns = h->start_ns;
    sp->end_ns = h->end_ns;
    add_str(sp, "http.request.method", s[S_METHOD]);
    add_str(sp, "url.path", s[S_PATH]);
    if (h->status)
        add_int(sp, "http.response.status_code", h->status);
    long port;
    gh_str_t host = split_host(s[S_HOST], &port);
    if (host.n)
        add_str(sp, "server.address", host);
    if (port)
        add_int(sp, "server.port", port);
    if (s[S_TENANT].n)
        add_str(sp, "gatehouse.tenant", s[S_TENANT]);
    if (s[S_ROUTE].n)
        add_str(sp, "gatehouse.route", s[S_ROUTE]);
    add_str(sp, "client.address", s[S_CLIENT]);
    add_str(sp, "network.protocol.version", s[S_PROTO]);
    if (s[S_UPSTREAM].n)
        add_str(sp, "gatehouse.upstream", s[S_UPSTREAM]);
    if (s[S_REQID].n)
        add_str(sp, "gatehouse.request_id", s[S_REQID]);
    if (s[S_CACHE].n)
        add_str(sp, "gatehouse.cache.result", s[S_CACHE]);
    if (s[S_PREASON].n) {
        add_str(sp, "gatehouse.protect.decision", s[S_PACTION]);
        add_str(sp, "gatehouse.protect.reason", s[S_PREASON]);
    }
    if (s[S_CACHE].n) {
        event_t *e = &sp->ev[sp->nev++];
        e->name = "cache.lookup";
        e->t_ns = h->decide_ns;
        ev_str(e, "gatehouse.cache.result", s[S_CACHE]);
    }
    if (s[S_PREASON].n) {
        event_t *e = &sp->ev[sp->nev++];
        e->name = "protection.decision";
        e->t_ns = h->decide_ns;
        ev_str(e, "gatehouse.protect.decision", s[S_PACTION]);
        ev_str(e, "gatehouse.protect.reason", s[S_PREASON]);
        if (s[S_PDETAIL].n)
            ev_str(e, "gatehouse.protect.detail", s[S_PDETAIL]);
    }
    if (h->status >= 500) {
        sp->error = 1;
        snprintf(sp->msg, sizeof sp->msg, "HTTP %d", (int)h->status);
    }
    /* one client span per try: its parent is the server span */
    for (int i = 0; i < h->ntries; i++) {
        const rec_try_t *t = &v->tries[i];
        sp = &v->spans[1 + i];
        memset(sp, 0, sizeof *sp);
        sp->trace_id = h->trace_id;
        sp->span_id = t->span_id;
        sp->parent_id = h->span_id;
        sp->name = GH_STR("upstream try");
        sp->kind = 3;
        sp->flags = wflags | SPAN_FLAG_HAS_IS_REMOTE;
        sp->start_ns = t->start_ns;
        sp->end_ns = t->end_ns;
        add_str(sp, "http.request.method", s[S_METHOD]);
        if (s[S_UPSTREAM].n)
            add_str(sp, "gatehouse.upstream", s[S_UPSTREAM]);
        gh_str_t b = s[NSTR + i];
        add_str(sp, "gatehouse.backend", b);
        gh_str_t bh = split_host(b, &port);
        add_str(sp, "server.address", bh);
        if (port)
            add_int(sp, "server.port", port);
        add_int(sp, "gatehouse.try", t->num);
        const char *oc = t->outcome < GH_TT__COUNT ? gh_trace_outcome_names[t->outcome] : "unknown";
        add_str(sp, "gatehouse.try.outcome", gh_str(oc, strlen(oc)));
        if (t->status)
            add_int(sp, "http.response.status_code", t->status);
        int failed = t->outcome != GH_TT_OK && t->outcome != GH_TT_OPEN;
        if (failed || t->status >= 500) {
            sp->error = 1;
            snprintf(sp->msg, sizeof sp->msg, "%s", failed ? oc : "HTTP 5xx");
        }
    }
    return 1 + h->ntries;
}

/* ---------------------------------------------------------------- JSON */

/* attributes: a comma before all but the first of a list */
static void put_attrs(out_t *o, const attr_t *a, int n)
{
    for (int i = 0; i < n; i++) {
        if (i)
            PUTL(o, ",");
        PUTL(o, "{\"key\":\"");
        put_cstr(o, a[i].key);
        if (a[i].is_int) {
            PUTL(o, "\",\"value\":{\"intValue\":\"");
            put_i64(o, a[i].i);
            PUTL(o, "\"}}");
        } else {
            PUTL(o, "\",\"value\":{\"stringValue\":");
            put_jstr(o, a[i].s);
            PUTL(o, "}}");
        }
    }
}

static void put_span_json(out_t *o, const span_t *sp)
{
    PUTL(o, "{\"traceId\":");
    put_hex(o, sp->trace_id, 16);
    PUTL(o, ",\"spanId\":");
    put_hex(o, sp->span_id, 8);
    if (sp->parent_id) {
        PUTL(o, ",\"parentSpanId\":");
        put_hex(o, sp->parent_id, 8);
    }
    if (sp->trace_state.n) {
        PUTL(o, ",\"traceState\":");
        put_jstr(o, sp->trace_state);
    }
    PUTL(o, ",\"name\":");
    put_jstr(o, sp->name);
    PUTL(o, ",\"kind\":");
    put_i64(o, sp->kind);
    PUTL(o, ",\"flags\":");
    put_u64(o, sp->flags);
    PUT_U64_STR(o, ",\"startTimeUnixNano\"", (unsigned long long)sp->start_ns);
    PUT_U64_STR(o, ",\"endTimeUnixNano\"", (unsigned long long)sp->end_ns);
    PUTL(o, ",\"attributes\":[");
    put_attrs(o, sp->a, sp->na);
    PUTL(o, "]");
    if (sp->kind == 2) { /* the server span always lists its events, none or more */
        PUTL(o, ",\"events\":[");
        for (int i = 0; i < sp->nev; i++) {
            if (i)
                PUTL(o, ",");
            PUT_U64_STR(o, "{\"timeUnixNano\"", (unsigned long long)sp->ev[i].t_ns);
            PUTL(o, ",\"name\":\"");
            put_cstr(o, sp->ev[i].name);
            PUTL(o, "\",\"attributes\":[");
            put_attrs(o, sp->ev[i].a, sp->ev[i].na);
            PUTL(o, "]}");
        }
        PUTL(o, "]");
    }
    if (sp->error) {
        PUTL(o, ",\"status\":{\"code\":2,\"message\":\"");
        put_cstr(o, sp->msg);
        PUTL(o, "\"}");
    }
    PUTL(o, "}");
}

size_t gh_trace_record_json(char *buf, size_t cap, const void *recp, size_t len, int *nspans)
{
    *nspans = 0;
    rec_spans_t v;
    int ns = record_spans(recp, len, &v);
    if (!ns)
        return 0;
    out_t o = {buf, 0, cap, 0};
    for (int i = 0; i < ns; i++) {
        if (i)
            PUTL(&o, ",");
        put_span_json(&o, &v.spans[i]);
    }
    if (o.over)
        return 0;
    *nspans = ns;
    return o.n;
}

/* ---------------------------------------------------------------- protobuf */

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any_t;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event_t;

/* Bump memory for the messages of one request: all of it freed at once. */
typedef struct {
    char *p;
    size_t n, cap;
} arena_t;

static void *aalloc(arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->cap - a->n < n)
        return NULL;
    void *p = a->p + a->n;
    a->n += n;
    return p;
}

/* A view as a protobuf-c string (NUL-terminated), valid UTF-8 as OTLP wants: a byte over
 * 0x7f is the Latin-1 character, as the JSON body writes it ("\u00XX"), so both bodies say
 * the same; a NUL (HTTP allows none in what is recorded) ends it. At most 2n + 1 bytes. */
static char *astr(arena_t *a, gh_str_t s)
{
    char *p = aalloc(a, 2 * s.n + 1);
    if (!p)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s.n && s.p[i]; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c < 0x80) {
            p[k++] = (char)c;
        } else {
            p[k++] = (char)(0xc0 | c >> 6);
            p[k++] = (char)(0x80 | (c & 0x3f));
        }
    }
    p[k] = 0;
    return p;
}

static uint8_t *abytes(arena_t *a, const uint8_t *p, size_t n)
{
    uint8_t *q = aalloc(a, n);
    if (q)
        memcpy(q, p, n);
    return q;
}

/* The worst case one span of a len-byte record takes: its messages, and copies of strings
 * that together are at most the record (plus their NULs). */
#define PB_SPAN_FIXED                                                                                      \
    (sizeof(pb_span_t *) + sizeof(pb_span_t) + sizeof(Opentelemetry__Proto__Trace__V1__Status) + 32 + 64 + \
     (SPAN_ATTRS + 8) * (sizeof(pb_kv_t *) + sizeof(pb_kv_t) + sizeof(pb_any_t) + 48) +                     \
     2 * (sizeof(pb_event_t *) + sizeof(pb_event_t) + 16) + 1024)

static pb_kv_t **pb_attrs(arena_t *a, const attr_t *at, int n)
{
    pb_kv_t **v = aalloc(a, (size_t)(n ? n : 1) * sizeof *v);
    if (!v)
        return NULL;
    for (int i = 0; i < n; i++) {
        pb_kv_t *kv = aalloc(a, sizeof *kv);
        pb_any_t *av = aalloc(a, sizeof *av);
        if (!kv || !av)
            return NULL;
        opentelemetry__proto__common__v1__key_value__init(kv);
        opentelemetry__proto__common__v1__any_value__init(av);
        kv->key = (char *)at[i].key; /* static: only read by the packer */
        kv->value = av;
        if (at[i].is_int) {
            av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
            av->int_value = at[i].i;
        } else {
            av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            if (!(av->string_value = astr(a, at[i].s)))
                return NULL;
        }
        v[i] = kv;
    }
    return v;
}

static pb_span_t *pb_span(arena_t *a, const span_t *sp)
{
    pb_span_t *m = aalloc(a, sizeof *m);
    if (!m)
        return NULL;
    opentelemetry__proto__trace__v1__span__init(m);
    m->trace_id = (ProtobufCBinaryData){16, abytes(a, sp->trace_id, 16)};
    m->span_id = (ProtobufCBinaryData){8, abytes(a, sp->span_id, 8)};
    if (sp->parent_id)
        m->parent_span_id = (ProtobufCBinaryData){8, abytes(a, sp->parent_id, 8)};
    if (sp->trace_state.n)
        m->trace_state = astr(a, sp->trace_state);
    m->name = astr(a, sp->name);
    m->flags = sp->flags;
    m->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)sp->kind;
    m->start_time_unix_nano = sp->start_ns;
    m->end_time_unix_nano = sp->end_ns;
    m->n_attributes = (size_t)sp->na;
    m->attributes = pb_attrs(a, sp->a, sp->na);
    if (!m->trace_id.data || !m->span_id.data || (sp->parent_id && !m->parent_span_id.data) || !m->trace_state ||
        !m->name || !m->attributes)
        return NULL;
    if (sp->nev) {
        m->n_events = (size_t)sp->nev;
        if (!(m->events = aalloc(a, (size_t)sp->nev * sizeof *m->events)))
            return NULL;
        for (int i = 0; i < sp->nev; i++) {
            pb_event_t *e = aalloc(a, sizeof *e);
            if (!e)
                return NULL;
            opentelemetry__proto__trace__v1__span__event__init(e);
            e->time_unix_nano = sp->ev[i].t_ns;
            e->name = (char *)sp->ev[i].name;
            e->n_attributes = (size_t)sp->ev[i].na;
            if (!(e->attributes = pb_attrs(a, sp->ev[i].a, sp->ev[i].na)))
                return NULL;
            m->events[i] = e;
        }
    }
    if (sp->error) {
        Opentelemetry__Proto__Trace__V1__Status *st = aalloc(a, sizeof *st);
        if (!st)
            return NULL;
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        if (!(st->message = astr(a, gh_str(sp->msg, strlen(sp->msg)))))
            return NULL;
        m->status = st;
    }
    return m;
}

uint8_t *gh_trace_records_protobuf(const void *recsp, size_t len, const char *service_name,
                                   const char *service_version, size_t *out_len, int *nspans)
{
    const char *recs = recsp;
    *out_len = 0;
    *nspans = 0;
    /* a first pass sizes the memory and counts the spans: the records were validated when
     * they were queued, this one checks again */
    size_t need = 4096, at = 0;
    int total = 0;
    while (at < len) {
        uint32_t rl;
        rec_hdr_t h;
        if (len - at < sizeof h)
            return NULL;
        memcpy(&h, recs + at, sizeof h);
        rl = h.len;
        if (rl < sizeof h || rl > len - at || h.ntries > GH_TRACE_MAX_TRIES)
            return NULL;
        total += 1 + h.ntries;
        need += (size_t)(1 + h.ntries) * (PB_SPAN_FIXED + 2 * (size_t)rl);
        at += rl;
    }
    arena_t a = {malloc(need), 0, need};
    if (!a.p)
        return NULL;
    uint8_t *out = NULL;
    pb_span_t **spans = aalloc(&a, (size_t)(total ? total : 1) * sizeof *spans);
    rec_spans_t *v = malloc(sizeof *v);
    if (!spans || !v)
        goto done;
    int k = 0;
    for (at = 0; at < len;) {
        uint32_t rl;
        memcpy(&rl, recs + at, sizeof rl);
        int ns = record_spans(recs + at, rl, v);
        if (!ns || k + ns > total)
            goto done;
        for (int i = 0; i < ns; i++)
            if (!(spans[k++] = pb_span(&a, &v->spans[i])))
                goto done;
        at += rl;
    }
    /* the resource (this service) and the scope (gatehouse's own instrumentation) */
    attr_t ra[2] = {{.key = "service.name", .s = gh_str(service_name, strlen(service_name))},
                    {.key = "service.version", .s = gh_str(service_version, strlen(service_version))}};
    Opentelemetry__Proto__Resource__V1__Resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    res.n_attributes = 2;
    res.attributes = pb_attrs(&a, ra, 2);
    Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
        OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    scope.name = "gatehouse";
    scope.version = (char *)service_version;
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, *ssp = &ss;
    ss.scope = &scope;
    ss.n_spans = (size_t)k;
    ss.spans = spans;
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT,
                                                  *rsp = &rs;
    rs.resource = &res;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;
    if (!res.attributes)
        goto done;
    size_t sz = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(&req);
    if (!(out = malloc(sz ? sz : 1)))
        goto done;
    *out_len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(&req, out);
    *nspans = k;
done:
    free(v);
    free(a.p);
    return out;
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

static int opt_protocol = GH_TRACE_PROTO_JSON; /* gh_trace_set_export, before the start */
static char *opt_ca_file;

static struct {
    char host[256], port[8], path[512], hostport[300];
    int tls, protocol;
    SSL_CTX *ssl_ctx;
    char service_name[256], service_version[64];
    uint32_t batch;
    char *prefix; /* JSON: {"resourceSpans":[{"resource":...,"scopeSpans":[{"scope":...,"spans":[ */
    size_t prefix_len;
    char *body; /* JSON: spans, comma separated, after room for the prefix; protobuf: the records */
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

/* The collector's host is an IP literal (verified as such; no SNI). */
static int host_is_ip(void)
{
    unsigned char a[16];
    return inet_pton(AF_INET, ex.host, a) == 1 || inet_pton(AF_INET6, ex.host, a) == 1;
}

/* TLS over fd (blocking, the socket's timeouts): SNI, the collector's certificate verified
 * for its name or address. The session, or NULL with why. */
static SSL *tls_connect(int fd, char *why, size_t wn)
{
    SSL *s = SSL_new(ex.ssl_ctx);
    if (!s) {
        snprintf(why, wn, "TLS: out of memory");
        return NULL;
    }
    X509_VERIFY_PARAM *vp = SSL_get0_param(s);
    int ok = SSL_set_fd(s, fd) == 1;
    if (host_is_ip()) {
        ok = ok && X509_VERIFY_PARAM_set1_ip_asc(vp, ex.host) == 1;
    } else {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = ok && SSL_set_tlsext_host_name(s, ex.host) == 1 && SSL_set1_host(s, ex.host) == 1;
    }
    if (ok && SSL_connect(s) == 1)
        return s;
    long vr = SSL_get_verify_result(s);
    unsigned long e = ERR_peek_last_error();
    if (vr != X509_V_OK)
        snprintf(why, wn, "TLS handshake: %s", X509_verify_cert_error_string(vr));
    else if (e)
        snprintf(why, wn, "TLS handshake: %s", ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "failed");
    else
        snprintf(why, wn, "TLS handshake failed");
    ERR_clear_error();
    SSL_free(s);
    return NULL;
}

static int write_all(int fd, SSL *ssl, const char *p, size_t n)
{
    while (n) {
        ssize_t w;
        if (ssl) {
            int k = SSL_write(ssl, p, (int)GH_MIN(n, (size_t)1 << 30));
            w = k > 0 ? k : -1;
        } else {
            w = send(fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One POST of body: the collector's status, or -1 (no connection, TLS, timeout, no answer)
 * with why. */
static int post(const char *body, size_t n, char *why, size_t wn)
{
    snprintf(why, wn, "no answer");
    int fd = dial();
    if (fd < 0)
        return -1;
    SSL *ssl = NULL;
    if (ex.tls && !(ssl = tls_connect(fd, why, wn))) {
        close(fd);
        return -1;
    }
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gatehouse\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      ex.path, ex.hostport,
                      ex.protocol == GH_TRACE_PROTO_PROTOBUF ? "application/x-protobuf" : "application/json", n);
    int status = -1;
    if (write_all(fd, ssl, head, (size_t)hn) == 0 && write_all(fd, ssl, body, n) == 0) {
        char resp[256];
        size_t got = 0;
        while (got < sizeof resp - 1) { /* the status line is all we need */
            ssize_t r;
            if (ssl) {
                int k = SSL_read(ssl, resp + got, (int)(sizeof resp - 1 - got));
                r = k > 0 ? k : -1;
            } else {
                r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
                if (r < 0 && errno == EINTR)
                    continue;
            }
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
    if (ssl) {
        ERR_clear_error();
        SSL_free(ssl);
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
    const char *doc;
    size_t len;
    uint8_t *pb = NULL;
    if (ex.protocol == GH_TRACE_PROTO_PROTOBUF) {
        int ns = 0;
        pb = gh_trace_records_protobuf(ex.body, ex.n, ex.service_name, ex.service_version, &len, &ns);
        if (!pb) { /* out of memory (the records were checked when queued) */
            count(&n_dropped_export, (uint64_t)ex.nspans);
            count(&n_exports_failed, 1);
            ex.n = 0;
            ex.nspans = 0;
            return;
        }
        doc = (const char *)pb;
    } else {
        static const char tail[] = "]}]}]}";
        if (ex.n + sizeof tail > ex.cap) /* room was kept for it */
            ex.n = ex.cap - sizeof tail;
        memcpy(ex.body + ex.n, tail, sizeof tail - 1);
        doc = ex.body - ex.prefix_len; /* the prefix sits right before the spans */
        len = ex.prefix_len + ex.n + sizeof tail - 1;
    }
    int status = -1;
    char why[160];
    for (int attempt = 0; attempt < (stopping ? 1 : 3); attempt++) {
        if (attempt)
            sleep_ms(attempt == 1 ? 100 : 400);
        status = post(doc, len, why, sizeof why);
        if (status >= 200 && status < 300)
            break;
        if (status > 0 && status != 429 && status < 500)
            break; /* the collector refuses this body: no use sending it again */
    }
    free(pb);
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
            if (status >= 0)
                snprintf(why, sizeof why, "status %d", status);
            gh_log(GH_LOG_WARN, "tracing: export to %s://%s%s failed (%s): %d spans dropped", ex.tls ? "https" : "http",
                   ex.hostport, ex.path, why, ex.nspans);
        }
    }
    ex.n = 0;
    ex.nspans = 0;
}

/* Append one record's spans (JSON: as text; protobuf: the record itself, encoded at the
 * flush), flushing first when the batch would overflow. */
static void add_record(const char *rec, size_t len)
{
    static const size_t reserve = 16; /* the JSON tail */
    for (int pass = 0; pass < 2; pass++) {
        int ns = 0;
        size_t room = ex.cap - ex.n - reserve, m = 0;
        if (ex.protocol == GH_TRACE_PROTO_PROTOBUF) {
            static rec_spans_t v; /* the exporter thread's */
            ns = record_spans(rec, len, &v);
            if (ns && len <= room) {
                memcpy(ex.body + ex.n, rec, len);
                m = len;
            }
        } else {
            m = room > 1 ? gh_trace_record_json(ex.body + ex.n + (ex.n ? 1 : 0), room - 1, rec, len, &ns) : 0;
            if (m && ex.n)
                m++; /* the comma */
        }
        if (m && (uint32_t)(ex.nspans + ns) <= ex.batch + GH_TRACE_MAX_TRIES) {
            if (ex.n && ex.protocol != GH_TRACE_PROTO_PROTOBUF)
                ex.body[ex.n] = ',';
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

/* endpoint "http[s]://host[:port][/prefix]" -> ex.tls, host, port, path ("/prefix/v1/traces") */
static int parse_endpoint(const char *e)
{
    if (!strncmp(e, "https://", 8))
        ex.tls = 1;
    else if (!strncmp(e, "http://", 7))
        ex.tls = 0;
    else
        return GH_EINVAL;
    const char *h = e + (ex.tls ? 8 : 7), *slash = strchr(h, '/');
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
        strcpy(ex.port, ex.tls ? "443" : "80");
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

void gh_trace_set_export(int protocol, const char *ca_file)
{
    opt_protocol = protocol == GH_TRACE_PROTO_PROTOBUF ? GH_TRACE_PROTO_PROTOBUF : GH_TRACE_PROTO_JSON;
    free(opt_ca_file);
    opt_ca_file = ca_file ? strdup(ca_file) : NULL;
}

/* The client context of an https:// collector: peer verification against ca_file or the
 * system's CAs, TLS 1.2 at least. 0, or GH_EINVAL (logged). */
static int tls_setup(void)
{
    ex.ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!ex.ssl_ctx)
        return GH_ENOMEM;
    SSL_CTX_set_min_proto_version(ex.ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ex.ssl_ctx, SSL_VERIFY_PEER, NULL);
    int ok = opt_ca_file ? SSL_CTX_load_verify_locations(ex.ssl_ctx, opt_ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ex.ssl_ctx);
    if (ok != 1) {
        unsigned long e = ERR_get_error();
        gh_log(GH_LOG_ERROR, "tracing: cannot load the CAs of %s: %s", opt_ca_file ? opt_ca_file : "the system",
               e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "no certificates");
        ERR_clear_error();
        SSL_CTX_free(ex.ssl_ctx);
        ex.ssl_ctx = NULL;
        return GH_EINVAL;
    }
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
    ex.protocol = opt_protocol;
    if (ex.tls && (rc = tls_setup()) < 0)
        return rc;
    snprintf(ex.service_name, sizeof ex.service_name, "%s", service_name);
    snprintf(ex.service_version, sizeof ex.service_version, "%s", service_version);
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
