/* chsink.c: the ClickHouse sink (see chsink.h). One thread pulls the event stream from a durable
 * JetStream consumer in batches, rewrites each record into a row of its table (only the table's
 * columns, types checked, `time` made canonical), drops the ids it inserted recently, sends one
 * JSONEachRow INSERT per table per batch over its own small blocking HTTP/1.1 client and
 * acknowledges the messages of each table once ClickHouse answered 200 (otherwise it naks them,
 * so they come again, and backs off).
 *
 * Why rewrite rather than pass records through: ClickHouse rejects a whole INSERT for one value
 * of the wrong type or one unparsable time, and the batch would then come back for ever. The sink
 * checks every value itself, so ClickHouse never sees a row it refuses; records that do not fit
 * are counted bad and dropped. `time` is written as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC, always ms),
 * so that strings compare as times, and the tables derive `ts DateTime('UTC')` from it.
 *
 * Called by main.c (start/stop) and admin.c (metrics). Calls libnats, jansson, core/log and the
 * sockets API. */
#include "events/chsink.h"

#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nats/nats.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECENT_MAX (1u << 20)     /* ids remembered as inserted (FIFO eviction) */
#define RECENT_BITS 21            /* hash slots: 2^21, at most half full */
#define CONNECT_TIMEOUT_MS 2000   /* ClickHouse TCP connect */
#define IO_TIMEOUT_MS 15000       /* ClickHouse send / answer */
#define ACK_WAIT_NS (30ll * 1000000000ll)
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define ANSWER_KEEP 512           /* bytes of an answer kept (error messages) */
#define ANSWER_MAX (1u << 20)     /* bytes of an answer read at most */

/* ---------------------------------------------------------------- tables */

typedef enum {
    C_STR,   /* String: a JSON string (numbers and booleans taken as their text) */
    C_NSTR,  /* Nullable(String) */
    C_U16,   /* UInt16: an integer 0..65535 */
    C_U64,   /* UInt64: an integer >= 0 */
    C_F64,   /* Float64: a number */
    C_NF64,  /* Nullable(Float64) */
    C_TIME,  /* String: an ISO-8601 time with a zone, written canonical; missing: the stream's time */
    C_JSON,  /* String holding JSON text: a string as is, anything else serialized */
} ctype_t;

typedef struct {
    const char *name;
    ctype_t type;
} col_t;

static const col_t access_cols[] = {
    {"time", C_TIME},        {"tenant", C_STR},         {"client", C_STR},         {"route", C_STR},
    {"method", C_STR},       {"host", C_STR},           {"path", C_STR},           {"query", C_STR},
    {"status", C_U16},       {"bytes_in", C_U64},       {"bytes_out", C_U64},      {"upstream", C_NSTR},
    {"upstream_time_ms", C_NF64}, {"request_id", C_STR}, {"proto", C_STR},          {"tls", C_STR},
    {"ja4", C_STR},          {"protect_reason", C_STR}, {"protect_action", C_STR}, {"protect_detail", C_STR},
    {"cache", C_STR},        {"flag", C_STR},           {"variant", C_STR},        {"total_time_ms", C_F64},
};
static const col_t exposure_cols[] = {
    {"time", C_TIME}, {"tenant", C_STR}, {"route", C_STR}, {"flag", C_STR},
    {"variant", C_STR}, {"reason", C_STR}, {"unit", C_STR}, {"request_id", C_STR},
};
static const col_t event_cols[] = {
    {"time", C_TIME}, {"tenant", C_STR}, {"event_id", C_STR}, {"name", C_STR},
    {"unit", C_STR},  {"value", C_NF64}, {"payload", C_JSON},
};

/* The statements the sink issues (docs/events.md shows them with the database "gatehouse"; the
 * test checks that they match). %s is the database. */
#define DDL_DATABASE "CREATE DATABASE IF NOT EXISTS %s"
static const char ddl_access[] =
    "CREATE TABLE IF NOT EXISTS %s.access (\n"
    "    time String,\n"
    "    ts DateTime('UTC') MATERIALIZED parseDateTimeBestEffort(time),\n"
    "    tenant String,\n"
    "    client String,\n"
    "    route String,\n"
    "    method String,\n"
    "    host String,\n"
    "    path String,\n"
    "    query String,\n"
    "    status UInt16,\n"
    "    bytes_in UInt64,\n"
    "    bytes_out UInt64,\n"
    "    upstream Nullable(String),\n"
    "    upstream_time_ms Nullable(Float64),\n"
    "    request_id String,\n"
    "    proto String,\n"
    "    tls String,\n"
    "    ja4 String,\n"
    "    protect_reason String,\n"
    "    protect_action String,\n"
    "    protect_detail String,\n"
    "    cache String,\n"
    "    flag String,\n"
    "    variant String,\n"
    "    total_time_ms Float64\n"
    ") ENGINE = ReplacingMergeTree\n"
    "PARTITION BY toYYYYMMDD(ts)\n"
    "ORDER BY (tenant, request_id)";
static const char ddl_exposures[] =
    "CREATE TABLE IF NOT EXISTS %s.exposures (\n"
    "    time String,\n"
    "    ts DateTime('UTC') MATERIALIZED parseDateTimeBestEffort(time),\n"
    "    tenant String,\n"
    "    route String,\n"
    "    flag String,\n"
    "    variant String,\n"
    "    reason String,\n"
    "    unit String,\n"
    "    request_id String\n"
    ") ENGINE = ReplacingMergeTree\n"
    "PARTITION BY toYYYYMMDD(ts)\n"
    "ORDER BY (tenant, request_id)";
static const char ddl_events[] =
    "CREATE TABLE IF NOT EXISTS %s.events (\n"
    "    time String,\n"
    "    ts DateTime('UTC') MATERIALIZED parseDateTimeBestEffort(time),\n"
    "    tenant String,\n"
    "    event_id String,\n"
    "    name String,\n"
    "    unit String,\n"
    "    value Nullable(Float64),\n"
    "    payload String\n"
    ") ENGINE = ReplacingMergeTree\n"
    "PARTITION BY toYYYYMMDD(ts)\n"
    "ORDER BY (tenant, event_id)";

/* Security decisions are the access records that carry one (protect_reason set): a view. */
static const char ddl_security[] =
    "CREATE VIEW IF NOT EXISTS %s.security AS\n"
    "SELECT time, ts, tenant, route, client, method, host, path, status, protect_reason, protect_action,\n"
    "       protect_detail, ja4, request_id\n"
    "FROM %s.access\n"
    "WHERE protect_reason != ''";

enum { T_ACCESS, T_EXPOSURE, T_EVENT, T_N };

typedef struct {
    const char *kind;  /* the subject's second token */
    const char *table;
    const char *idcol; /* the record's id */
    const col_t *cols;
    size_t ncols;
    const char *ddl;
} table_t;

static const table_t tables[T_N] = {
    {"access", "access", "request_id", access_cols, sizeof access_cols / sizeof *access_cols, ddl_access},
    {"exposure", "exposures", "request_id", exposure_cols, sizeof exposure_cols / sizeof *exposure_cols,
     ddl_exposures},
    {"event", "events", "event_id", event_cols, sizeof event_cols / sizeof *event_cols, ddl_events},
};

/* ---------------------------------------------------------------- small helpers */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf_t;

static int sb_put(sbuf_t *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static void sb_free(sbuf_t *b)
{
    free(b->p);
    *b = (sbuf_t){0};
}

static uint64_t now_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A warning at most every 10 s per call site (last is the site's clock). */
static void warn_every(uint64_t *last, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn_every(uint64_t *last, const char *fmt, ...)
{
    uint64_t now = now_ms(CLOCK_MONOTONIC);
    if (*last && now - *last < 10000)
        return;
    *last = now;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gh_log(GH_LOG_WARN, "clickhouse sink: %s", msg);
}

/* 64-bit FNV-1a of the parts, finished with a mixer so the low and high bits both spread; never 0. */
static uint64_t id_hash(const char *kind, const char *tenant, size_t tn, const char *id, size_t idn)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[3] = {kind, tenant, id};
    size_t lens[3] = {strlen(kind), tn, idn};
    for (int k = 0; k < 3; k++) {
        if (k)
            h = (h ^ ':') * 0x100000001b3ull;
        for (size_t i = 0; i < lens[k]; i++)
            h = (h ^ (unsigned char)parts[k][i]) * 0x100000001b3ull;
    }
    h ^= h >> 31;
    h *= 0x7fb5d329728ea185ull;
    h ^= h >> 27;
    h *= 0x81dadef4bc2dd44dull;
    h ^= h >> 33;
    return h ? h : 1;
}

/* ---------------------------------------------------------------- the recent-id set */

/* Open addressing (linear probing, backward-shift deletion) over 64-bit id hashes, with a FIFO
 * ring giving the eviction order: the oldest id goes when RECENT_MAX are held. */
typedef struct {
    uint64_t *slot; /* 1 << bits; 0 = empty */
    uint64_t *fifo; /* max entries, oldest at head */
    uint32_t bits, max, n, head;
} recent_t;

static size_t rs_home(const recent_t *r, uint64_t h) { return (size_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - r->bits)); }

static int rs_init(recent_t *r, uint32_t bits, uint32_t max)
{
    r->bits = bits;
    r->max = max;
    r->n = r->head = 0;
    r->slot = calloc((size_t)1 << bits, sizeof *r->slot);
    r->fifo = calloc(max, sizeof *r->fifo);
    if (!r->slot || !r->fifo) {
        free(r->slot);
        free(r->fifo);
        r->slot = r->fifo = NULL;
        return -1;
    }
    return 0;
}

static void rs_free(recent_t *r)
{
    free(r->slot);
    free(r->fifo);
    r->slot = r->fifo = NULL;
}

static int rs_has(const recent_t *r, uint64_t h)
{
    size_t mask = ((size_t)1 << r->bits) - 1;
    for (size_t i = rs_home(r, h); r->slot[i]; i = (i + 1) & mask)
        if (r->slot[i] == h)
            return 1;
    return 0;
}

static void rs_del(recent_t *r, uint64_t h)
{
    size_t mask = ((size_t)1 << r->bits) - 1, i = rs_home(r, h);
    while (r->slot[i] && r->slot[i] != h)
        i = (i + 1) & mask;
    if (!r->slot[i])
        return;
    /* shift back the entries of the cluster that may no longer be reached past the hole */
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!r->slot[j])
            break;
        size_t k = rs_home(r, r->slot[j]);
        /* the entry at j stays when its home k lies cyclically in (i, j] */
        int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            r->slot[i] = r->slot[j];
            i = j;
        }
    }
    r->slot[i] = 0;
}

static void rs_add(recent_t *r, uint64_t h)
{
    if (rs_has(r, h))
        return;
    if (r->n == r->max) {
        rs_del(r, r->fifo[r->head]);
        r->head = (r->head + 1) % r->max;
        r->n--;
    }
    size_t mask = ((size_t)1 << r->bits) - 1, i = rs_home(r, h);
    while (r->slot[i])
        i = (i + 1) & mask;
    r->slot[i] = h;
    r->fifo[(r->head + r->n) % r->max] = h;
    r->n++;
}

/* ---------------------------------------------------------------- time */

static int dig(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* An ISO-8601 date and time with a zone ("2026-11-23T17:26:33.123Z", "...+02:00", fraction
 * optional, 'T' or ' ') as Unix ms; -1 when it is not one or not in DateTime's range. */
static int64_t parse_time(const char *s, size_t n)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return -1;
    int y = dig(s, 4), mo = dig(s + 5, 2), d = dig(s + 8, 2), h = dig(s + 11, 2), mi = dig(s + 14, 2),
        se = dig(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return -1;
    size_t i = 19;
    int ms = 0;
    if (s[i] == '.') {
        int nd = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, nd++)
            if (nd < 3)
                ms = ms * 10 + (s[i] - '0');
        if (!nd)
            return -1;
        for (; nd < 3; nd++)
            ms *= 10;
    }
    int off = 0;
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i] == '-' ? -1 : 1;
        if (n - i < 3)
            return -1;
        int oh = dig(s + i + 1, 2), om = 0;
        i += 3;
        if (i < n && s[i] == ':')
            i++;
        if (n - i >= 2) {
            om = dig(s + i, 2);
            i += 2;
        }
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (i != n)
        return -1;
    int64_t sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - (int64_t)off * 60;
    if (sec < 0 || sec > 4294967295ll)
        return -1;
    return sec * 1000 + ms;
}

/* Unix ms (within DateTime's range) as "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes and a NUL). */
static void format_time(char *out, size_t cap, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---------------------------------------------------------------- records to rows */

/* The text of a scalar for a String column: strings as they are, numbers and booleans as their
 * JSON text; NULL for anything else. *tmp holds what was made (free it). */
static const char *scalar_text(json_t *v, char **tmp, size_t *len)
{
    *tmp = NULL;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    if (json_is_number(v) || json_is_boolean(v)) {
        *tmp = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!*tmp)
            return NULL;
        *len = strlen(*tmp);
        return *tmp;
    }
    return NULL;
}

/* Rewrite record obj as a row of table t (a new object in *row). subj_tenant (from the subject)
 * stands in for a missing tenant, stream_ms (the message's time in the stream) for a missing
 * time. The row's tenant and id in *tenant and *id (views into *row). 0, or -1 when the record does
 * not fit the table (a value of the wrong type, no id, a time that is not one). */
static int make_row(const table_t *t, json_t *obj, const char *subj_tenant, size_t subj_tn, int64_t stream_ms,
                    json_t **row, const char **tenant, size_t *tn, const char **id, size_t *idn)
{
    json_t *r = json_object();
    if (!r)
        return -1;
    for (size_t c = 0; c < t->ncols; c++) {
        const col_t *col = &t->cols[c];
        json_t *v = json_object_get(obj, col->name), *nv = NULL;
        char *tmp = NULL;
        size_t len = 0;
        const char *s;
        switch (col->type) {
        case C_TIME: {
            int64_t ms = stream_ms;
            if (v && !json_is_null(v)) {
                if (!json_is_string(v) || (ms = parse_time(json_string_value(v), json_string_length(v))) < 0)
                    goto bad;
            }
            char buf[80];
            format_time(buf, sizeof buf, ms);
            nv = json_string(buf);
            break;
        }
        case C_STR:
        case C_NSTR:
            if (!v || (json_is_null(v) && col->type == C_STR))
                break;
            if (json_is_null(v)) {
                nv = json_null();
                break;
            }
            if (!(s = scalar_text(v, &tmp, &len)))
                goto bad;
            nv = json_stringn(s, len);
            free(tmp);
            break;
        case C_U16:
        case C_U64:
            if (!v || json_is_null(v))
                break;
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                (col->type == C_U16 && json_integer_value(v) > 65535))
                goto bad;
            nv = json_incref(v);
            break;
        case C_F64:
        case C_NF64:
            if (!v || (json_is_null(v) && col->type == C_F64))
                break;
            if (json_is_null(v)) {
                nv = json_null();
                break;
            }
            if (!json_is_number(v))
                goto bad;
            nv = json_incref(v);
            break;
        case C_JSON:
            if (!v || json_is_null(v))
                break;
            if (json_is_string(v)) {
                nv = json_incref(v);
            } else {
                char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                if (!txt)
                    goto bad;
                nv = json_string(txt);
                free(txt);
            }
            break;
        }
        if (nv && json_object_set_new(r, col->name, nv) < 0)
            goto bad;
    }
    json_t *tv = json_object_get(r, "tenant");
    if (!tv || !json_string_length(tv)) {
        if (!subj_tn || json_object_set_new(r, "tenant", json_stringn(subj_tenant, subj_tn)) < 0)
            goto bad;
        tv = json_object_get(r, "tenant");
    }
    json_t *iv = json_object_get(r, t->idcol);
    if (!iv || !json_string_length(iv))
        goto bad;
    *tenant = json_string_value(tv);
    *tn = json_string_length(tv);
    *id = json_string_value(iv);
    *idn = json_string_length(iv);
    *row = r;
    return 0;
bad:
    json_decref(r);
    return -1;
}

/* ---------------------------------------------------------------- the HTTP client */

typedef struct {
    char host[256]; /* without brackets */
    char port[8];
    char path[256]; /* "/" or the URL's path */
    const char *user, *password;
} endpoint_t;

/* "http://host[:port][/path]"; 0 or -1. */
static int parse_url(endpoint_t *e, const char *url)
{
    if (!url || strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *end = h + strcspn(h, "/"), *hp, *he, *colon = NULL;
    if (*h == '[') {
        hp = h + 1;
        he = memchr(hp, ']', (size_t)(end - hp));
        if (!he)
            return -1;
        if (he + 1 < end) {
            if (he[1] != ':')
                return -1;
            colon = he + 1;
        }
    } else {
        hp = h;
        colon = memchr(h, ':', (size_t)(end - h));
        he = colon ? colon : end;
    }
    if (he == hp || (size_t)(he - hp) >= sizeof e->host)
        return -1;
    memcpy(e->host, hp, (size_t)(he - hp));
    e->host[he - hp] = 0;
    if (colon) {
        size_t pn = (size_t)(end - colon - 1);
        if (pn == 0 || pn >= sizeof e->port || strspn(colon + 1, "0123456789") < pn)
            return -1;
        memcpy(e->port, colon + 1, pn);
        e->port[pn] = 0;
    } else {
        strcpy(e->port, "8123");
    }
    if (!*end)
        strcpy(e->path, "/");
    else if (strlen(end) < sizeof e->path && !strpbrk(end, "?# \r\n"))
        strcpy(e->path, end);
    else
        return -1;
    return 0;
}

static int connect_to(const endpoint_t *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(e->host, e->port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t el = sizeof err;
            if (poll(&p, 1, CONNECT_TIMEOUT_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && !err)
                rc = 0;
        }
        if (rc == 0) {
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
            struct timeval tv = {.tv_sec = IO_TIMEOUT_MS / 1000, .tv_usec = (IO_TIMEOUT_MS % 1000) * 1000};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decode a chunked body in b[0..n): 1 with the data moved to the front (*out bytes) when the
 * last chunk arrived, 0 when more is needed, -1 when it is malformed. */
static int dechunk(char *b, size_t n, size_t *out)
{
    size_t i = 0, o = 0;
    for (;;) {
        char *eol = memmem(b + i, n - i, "\r\n", 2);
        if (!eol)
            return 0;
        char *e;
        unsigned long long sz = strtoull(b + i, &e, 16);
        if (e == b + i)
            return -1;
        i = (size_t)(eol - b) + 2;
        if (sz == 0) {
            *out = o;
            return 1; /* trailers are not needed */
        }
        if (sz > n - i || n - i - sz < 2) /* (sz + 2 could wrap) */
            return 0;
        memmove(b + o, b + i, sz);
        /* the source has moved ahead of the destination; keep the rest where it is */
        o += sz;
        i += sz + 2;
    }
}

/* POST body to e with the query string qs (already URL-encoded, may be NULL). The answer's status,
 * or -1 (no connection, timeout, no HTTP answer). The start of the answer's body goes to
 * ans[0..anscap) (NUL-terminated), or to *full when full is not NULL (malloc'd, *fulln bytes). */
static int http_post(const endpoint_t *e, const char *qs, const char *body, size_t bn, char *ans, size_t anscap,
                     char **full, size_t *fulln)
{
    if (anscap)
        ans[0] = 0;
    int fd = connect_to(e);
    if (fd < 0)
        return -1;
    sbuf_t req = {0};
    char line[1024];
    int k = snprintf(line, sizeof line, "POST %s%s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nContent-Length: %zu\r\n"
                                        "Content-Type: text/plain; charset=UTF-8\r\nConnection: close\r\n",
                     e->path, qs ? "?" : "", qs ? qs : "", strchr(e->host, ':') ? "[" : "", e->host,
                     strchr(e->host, ':') ? "]" : "", e->port, bn);
    int rc = -1;
    if (sb_put(&req, line, (size_t)k) < 0)
        goto out;
    if (e->user && *e->user) {
        if (sb_put(&req, "X-ClickHouse-User: ", 19) < 0 || sb_put(&req, e->user, strlen(e->user)) < 0 ||
            sb_put(&req, "\r\n", 2) < 0)
            goto out;
        if (e->password && (sb_put(&req, "X-ClickHouse-Key: ", 18) < 0 ||
                            sb_put(&req, e->password, strlen(e->password)) < 0 || sb_put(&req, "\r\n", 2) < 0))
            goto out;
    }
    if (sb_put(&req, "\r\n", 2) < 0 || send_all(fd, req.p, req.n) < 0 || send_all(fd, body, bn) < 0)
        goto out;
    /* the answer: read until its framing says it is complete, or the server closes */
    sbuf_t a = {0};
    size_t head = 0, clen = (size_t)-1, blen = 0;
    int chunked = 0, status = -1, done = 0;
    char tmp[16384];
    for (;;) {
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break; /* timeout or reset: an answer cut short counts as none */
        if (r == 0) {
            done = head && !chunked && clen == (size_t)-1; /* framed by the close */
            if (done)
                blen = a.n - head;
            break;
        }
        if (a.n + (size_t)r > ANSWER_MAX || sb_put(&a, tmp, (size_t)r) < 0)
            break;
        if (!head) {
            char *eoh = memmem(a.p, a.n, "\r\n\r\n", 4);
            if (!eoh)
                continue;
            head = (size_t)(eoh - a.p) + 4;
            if (a.n < 12 || memcmp(a.p, "HTTP/1.", 7) != 0 || a.p[8] != ' ' || (status = dig(a.p + 9, 3)) < 100)
                break;
            for (char *l = memmem(a.p, head, "\r\n", 2) + 2; l < a.p + head - 2;) {
                char *le = memmem(l, (size_t)(a.p + head - l), "\r\n", 2);
                if (!strncasecmp(l, "content-length:", 15))
                    clen = strtoull(l + 15, NULL, 10);
                else if (!strncasecmp(l, "transfer-encoding:", 18) && memmem(l, (size_t)(le - l), "chunked", 7))
                    chunked = 1;
                l = le + 2;
            }
        }
        if (chunked) {
            /* decode a copy: the bytes may still be incomplete */
            char *c = malloc(a.n - head + 1);
            if (!c)
                break;
            memcpy(c, a.p + head, a.n - head);
            int d = dechunk(c, a.n - head, &blen);
            if (d == 1) {
                memcpy(a.p + head, c, blen);
                done = 1;
            }
            free(c);
            if (d != 0)
                break;
        } else if (clen != (size_t)-1 && a.n - head >= clen) {
            blen = clen;
            done = 1;
            break;
        }
    }
    if (done && status >= 100) {
        rc = status;
        if (full) {
            *full = malloc(blen + 1);
            if (*full) {
                memcpy(*full, a.p + head, blen);
                (*full)[blen] = 0;
                *fulln = blen;
            }
        }
        if (anscap) {
            size_t m = blen < anscap - 1 ? blen : anscap - 1;
            memcpy(ans, a.p + head, m);
            ans[m] = 0;
            for (size_t i = 0; i < m; i++)
                if (ans[i] == '\n' || ans[i] == '\r')
                    ans[i] = ' ';
        }
    }
    sb_free(&a);
out:
    sb_free(&req);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- the sink */

static struct {
    pthread_mutex_t lock; /* start/stop */
    int running;
    int stop;            /* atomic: the thread should finish */
    pthread_t th;
    char *nats_url, *stream, *prefix, *consumer, *db, *user, *password;
    uint32_t batch, flush_ms;
    endpoint_t ch;
    recent_t recent;
    /* per batch, reused */
    uint64_t *bset;      /* batch-local id hashes (a set of 4 * batch slots) */
    uint32_t bbits;
    natsMsg **msgs[T_N];
    uint64_t *keys[T_N];
    sbuf_t body[T_N];
    int schema_ok;
    uint64_t warn_nats, warn_fetch, warn_insert, warn_schema;
    /* counters, atomics; they survive stop/start (counters never go back) */
    uint64_t fetched, inserted, duplicates, insert_errors, bad;
    int connected;
    int started; /* ever: the metrics appear once the sink is configured */
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int stopping(void) { return __atomic_load_n(&S.stop, __ATOMIC_ACQUIRE); }
static void count(uint64_t *c, uint64_t n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }

/* Sleep ms, waking early when asked to stop. */
static void nap(uint32_t ms)
{
    uint64_t end = now_ms(CLOCK_MONOTONIC) + ms;
    while (!stopping()) {
        uint64_t now = now_ms(CLOCK_MONOTONIC);
        if (now >= end)
            break;
        uint64_t left = end - now < 50 ? end - now : 50;
        struct timespec ts = {0, (long)left * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Run one statement (no result wanted). 0, or -1 with ClickHouse's words in ans. */
static int ch_exec(const char *sql, char *ans, size_t anscap)
{
    int st = http_post(&S.ch, NULL, sql, strlen(sql), ans, anscap, NULL, NULL);
    if (st < 0 && anscap)
        snprintf(ans, anscap, "no answer from %s:%s", S.ch.host, S.ch.port);
    return st == 200 ? 0 : -1;
}

/* The database and the three tables, created when missing. 0 or -1. */
static int ensure_schema(void)
{
    char sql[4096], ans[ANSWER_KEEP];
    snprintf(sql, sizeof sql, DDL_DATABASE, S.db);
    if (ch_exec(sql, ans, sizeof ans) < 0)
        goto fail;
    for (int t = 0; t < T_N; t++) {
        snprintf(sql, sizeof sql, tables[t].ddl, S.db);
        if (ch_exec(sql, ans, sizeof ans) < 0)
            goto fail;
    }
    snprintf(sql, sizeof sql, ddl_security, S.db, S.db);
    if (ch_exec(sql, ans, sizeof ans) < 0)
        goto fail;
    return 0;
fail:
    warn_every(&S.warn_schema, "cannot create the tables: %s", ans);
    return -1;
}

/* INSERT the rows of table t. 0, or -1 with why in ans. */
static int ch_insert(int t, char *ans, size_t anscap)
{
    char qs[512];
    snprintf(qs, sizeof qs, "query=INSERT%%20INTO%%20%s.%s%%20FORMAT%%20JSONEachRow&input_format_skip_unknown_fields=1",
             S.db, tables[t].table);
    int st = http_post(&S.ch, qs, S.body[t].p, S.body[t].n, ans, anscap, NULL, NULL);
    if (st < 0)
        snprintf(ans, anscap, "no answer from %s:%s", S.ch.host, S.ch.port);
    return st == 200 ? 0 : -1;
}

/* Whether h was already seen in this batch (and remember it). */
static int batch_seen(uint64_t h)
{
    size_t mask = ((size_t)1 << S.bbits) - 1;
    size_t i = (size_t)((h * 0x9E3779B97F4A7C15ull) >> (64 - S.bbits));
    for (; S.bset[i]; i = (i + 1) & mask)
        if (S.bset[i] == h)
            return 1;
    S.bset[i] = h;
    return 0;
}

static void ack(natsMsg *m) { natsMsg_Ack(m, NULL); }

/* One batch: classify, dedupe, insert per table, ack or nak. Returns 0, or -1 when an insert
 * failed (the caller backs off). */
static int process(natsMsgList *l)
{
    size_t cnt[T_N] = {0};
    memset(S.bset, 0, sizeof *S.bset << S.bbits);
    for (int t = 0; t < T_N; t++)
        S.body[t].n = 0;
    size_t plen = strlen(S.prefix);
    for (int i = 0; i < l->Count; i++) {
        natsMsg *m = l->Msgs[i];
        const char *subj = natsMsg_GetSubject(m);
        /* "<prefix>.<kind>[.<tenant>]" */
        if (strncmp(subj, S.prefix, plen) != 0 || subj[plen] != '.') {
            count(&S.bad, 1), ack(m);
            continue;
        }
        const char *kind = subj + plen + 1, *dot = strchr(kind, '.');
        size_t kn = dot ? (size_t)(dot - kind) : strlen(kind);
        const char *stenant = dot ? dot + 1 : "";
        if (kn == 5 && !memcmp(kind, "purge", 5)) {
            ack(m);
            continue;
        }
        int t = -1;
        for (int k = 0; k < T_N; k++)
            if (strlen(tables[k].kind) == kn && !memcmp(tables[k].kind, kind, kn))
                t = k;
        json_t *obj = NULL, *row = NULL;
        if (t >= 0)
            obj = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), JSON_REJECT_DUPLICATES, NULL);
        int64_t sms = 0;
        if (obj && json_is_object(obj) && !json_is_string(json_object_get(obj, "time"))) {
            jsMsgMetaData *md = NULL;
            if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
                sms = md->Timestamp / 1000000;
                jsMsgMetaData_Destroy(md);
            } else {
                sms = (int64_t)now_ms(CLOCK_REALTIME);
            }
        }
        const char *tenant, *id;
        size_t tn, idn;
        if (!obj || !json_is_object(obj) ||
            make_row(&tables[t], obj, stenant, strlen(stenant), sms, &row, &tenant, &tn, &id, &idn) < 0) {
            json_decref(obj);
            count(&S.bad, 1), ack(m);
            continue;
        }
        uint64_t h = id_hash(tables[t].kind, tenant, tn, id, idn);
        if (rs_has(&S.recent, h) || batch_seen(h)) {
            json_decref(obj);
            json_decref(row);
            count(&S.duplicates, 1), ack(m);
            continue;
        }
        char *txt = json_dumps(row, JSON_COMPACT);
        json_decref(obj);
        json_decref(row);
        if (!txt || sb_put(&S.body[t], txt, strlen(txt)) < 0 || sb_put(&S.body[t], "\n", 1) < 0) {
            free(txt); /* out of memory: not acknowledged, it comes again */
            continue;
        }
        free(txt);
        S.msgs[t][cnt[t]] = m;
        S.keys[t][cnt[t]] = h;
        cnt[t]++;
    }
    int rc = 0;
    for (int t = 0; t < T_N; t++) {
        if (!cnt[t])
            continue;
        char ans[ANSWER_KEEP];
        if (ch_insert(t, ans, sizeof ans) == 0) {
            for (size_t i = 0; i < cnt[t]; i++) {
                rs_add(&S.recent, S.keys[t][i]);
                ack(S.msgs[t][i]);
            }
            count(&S.inserted, cnt[t]);
        } else {
            count(&S.insert_errors, 1);
            warn_every(&S.warn_insert, "insert into %s.%s failed (%zu rows, delivered again): %s", S.db,
                       tables[t].table, cnt[t], ans);
            for (size_t i = 0; i < cnt[t]; i++)
                natsMsg_Nak(S.msgs[t][i], NULL);
            S.schema_ok = 0; /* ClickHouse may come back empty */
            rc = -1;
        }
    }
    return rc;
}

/* Bind to the durable consumer, creating it when missing. */
static natsStatus subscribe(jsCtx *js, natsSubscription **sub)
{
    char filter[512];
    snprintf(filter, sizeof filter, "%s.>", S.prefix);
    jsConsumerInfo *ci = NULL;
    jsErrCode je = 0;
    natsStatus s = js_GetConsumerInfo(&ci, js, S.stream, S.consumer, NULL, &je);
    if (s == NATS_NOT_FOUND) {
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = S.consumer;
        cc.DeliverPolicy = js_DeliverAll;
        cc.AckPolicy = js_AckExplicit;
        cc.AckWait = ACK_WAIT_NS;
        cc.FilterSubject = filter;
        cc.MaxAckPending = S.batch * 4 > 20000 ? (int64_t)S.batch * 4 : 20000;
        s = js_AddConsumer(&ci, js, S.stream, &cc, NULL, &je);
    }
    if (s != NATS_OK)
        return s;
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = S.stream;
    so.Consumer = S.consumer;
    return js_PullSubscribe(sub, js, filter, S.consumer, NULL, &so, &je);
}

static void *run(void *arg)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    uint32_t backoff = 0, fetch_errors = 0;
    if (natsOptions_Create(&o) != NATS_OK || natsOptions_SetURL(o, S.nats_url) != NATS_OK ||
        natsOptions_SetMaxReconnect(o, -1) != NATS_OK || natsOptions_SetReconnectWait(o, 500) != NATS_OK ||
        natsOptions_SetTimeout(o, 2000) != NATS_OK || natsOptions_SetRetryOnFailedConnect(o, true, NULL, NULL) != NATS_OK) {
        gh_log(GH_LOG_ERROR, "clickhouse sink: cannot set up the NATS options");
        goto out;
    }
    while (!stopping()) {
        natsStatus s = natsConnection_Connect(&nc, o);
        if (s == NATS_OK || s == NATS_NOT_YET_CONNECTED)
            break;
        nc = NULL;
        warn_every(&S.warn_nats, "NATS: %s", natsStatus_GetText(s));
        nap(1000);
    }
    if (!nc || natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
        goto out;
    while (!stopping()) {
        int conn = natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED;
        __atomic_store_n(&S.connected, conn, __ATOMIC_RELAXED);
        if (!conn) {
            nap(100);
            continue;
        }
        if (!S.schema_ok) {
            if (ensure_schema() < 0) {
                backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
                nap(backoff);
                continue;
            }
            S.schema_ok = 1;
        }
        if (!sub) {
            natsStatus s = subscribe(js, &sub);
            if (s != NATS_OK) {
                sub = NULL;
                warn_every(&S.warn_nats, "cannot bind the consumer %s of stream %s: %s", S.consumer, S.stream,
                           natsStatus_GetText(s));
                nap(1000);
                continue;
            }
        }
        natsMsgList list = {0};
        jsErrCode je = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, (int)S.batch, S.flush_ms, &je);
        if (s == NATS_TIMEOUT) {
            fetch_errors = 0;
            continue;
        }
        if (s != NATS_OK) {
            natsMsgList_Destroy(&list);
            warn_every(&S.warn_fetch, "fetch: %s (%d)", natsStatus_GetText(s), (int)je);
            /* the consumer may be gone (stream re-created): bind again after a few failures */
            if (++fetch_errors >= 3 || s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED) {
                natsSubscription_Destroy(sub);
                sub = NULL;
                fetch_errors = 0;
            }
            nap(200);
            continue;
        }
        fetch_errors = 0;
        count(&S.fetched, (uint64_t)list.Count);
        int rc = process(&list);
        natsMsgList_Destroy(&list);
        if (rc < 0) {
            backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : BACKOFF_MIN_MS;
            nap(backoff);
        } else {
            backoff = 0;
        }
    }
out:
    if (nc)
        natsConnection_FlushTimeout(nc, 1000); /* the last acks */
    if (sub)
        natsSubscription_Destroy(sub); /* not Unsubscribe: the durable consumer stays */
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    __atomic_store_n(&S.connected, 0, __ATOMIC_RELAXED);
    return NULL;
}

static void free_state(void)
{
    free(S.nats_url), free(S.stream), free(S.prefix), free(S.consumer), free(S.db), free(S.user);
    if (S.password)
        memset(S.password, 0, strlen(S.password));
    free(S.password);
    S.nats_url = S.stream = S.prefix = S.consumer = S.db = S.user = S.password = NULL;
    rs_free(&S.recent);
    free(S.bset);
    S.bset = NULL;
    for (int t = 0; t < T_N; t++) {
        free(S.msgs[t]);
        free(S.keys[t]);
        S.msgs[t] = NULL;
        S.keys[t] = NULL;
        sb_free(&S.body[t]);
    }
}

static int ident_ok(const char *s)
{
    return s && *s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s) &&
           !isdigit((unsigned char)*s);
}

int gh_chsink_start(const gh_chsink_conf_t *c, char *err, size_t errcap)
{
    pthread_mutex_lock(&S.lock);
    const char *why = NULL;
    if (S.running) {
        why = "already started";
        goto fail_locked;
    }
    const char *db = c->database ? c->database : "gatehouse";
    const char *prefix = c->prefix ? c->prefix : "gatehouse";
    const char *consumer = c->consumer ? c->consumer : "gatehouse-clickhouse";
    if (!c->nats_url || !*c->nats_url) {
        why = "no NATS url";
        goto fail_locked;
    }
    if (parse_url(&S.ch, c->url) < 0) {
        why = "the ClickHouse url is not http://host[:port][/path]";
        goto fail_locked;
    }
    if (!ident_ok(db)) {
        why = "the database name must be letters, digits and '_'";
        goto fail_locked;
    }
    if (!*prefix || strpbrk(prefix, " *>\t\r\n") || !*consumer || strpbrk(consumer, " .*>\t\r\n")) {
        why = "bad subject prefix or consumer name";
        goto fail_locked;
    }
    if ((c->user && strpbrk(c->user, "\r\n")) || (c->password && strpbrk(c->password, "\r\n"))) {
        why = "the ClickHouse user or password holds a line break";
        goto fail_locked;
    }
    S.batch = c->batch ? c->batch : 10000;
    if (S.batch > 1000000)
        S.batch = 1000000;
    S.flush_ms = c->flush_ms ? c->flush_ms : 1000;
    S.nats_url = strdup(c->nats_url);
    S.stream = strdup(c->stream ? c->stream : "GATEHOUSE");
    S.prefix = strdup(prefix);
    S.consumer = strdup(consumer);
    S.db = strdup(db);
    S.user = c->user ? strdup(c->user) : NULL;
    S.password = c->password ? strdup(c->password) : NULL;
    S.ch.user = S.user;
    S.ch.password = S.password;
    for (S.bbits = 4; ((size_t)1 << S.bbits) < (size_t)S.batch * 4; S.bbits++) {
    }
    S.bset = calloc((size_t)1 << S.bbits, sizeof *S.bset);
    int ok = S.nats_url && S.stream && S.prefix && S.consumer && S.db && (!c->user || S.user) &&
             (!c->password || S.password) && S.bset && rs_init(&S.recent, RECENT_BITS, RECENT_MAX) == 0;
    for (int t = 0; ok && t < T_N; t++) {
        S.msgs[t] = calloc(S.batch, sizeof *S.msgs[t]);
        S.keys[t] = calloc(S.batch, sizeof *S.keys[t]);
        ok = S.msgs[t] && S.keys[t];
    }
    if (!ok) {
        free_state();
        why = "out of memory";
        goto fail_locked;
    }
    S.schema_ok = 0;
    __atomic_store_n(&S.stop, 0, __ATOMIC_RELEASE);
    if (pthread_create(&S.th, NULL, run, NULL) != 0) {
        free_state();
        why = "cannot start a thread";
        goto fail_locked;
    }
    S.running = 1;
    __atomic_store_n(&S.started, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&S.lock);
    return 0;
fail_locked:
    pthread_mutex_unlock(&S.lock);
    if (errcap)
        snprintf(err, errcap, "%s", why);
    return -1;
}

void gh_chsink_stop(void)
{
    pthread_mutex_lock(&S.lock);
    if (S.running) {
        __atomic_store_n(&S.stop, 1, __ATOMIC_RELEASE);
        pthread_join(S.th, NULL);
        S.running = 0;
        free_state();
    }
    pthread_mutex_unlock(&S.lock);
}

void gh_chsink_stats(gh_chsink_stats_t *s)
{
    s->fetched = __atomic_load_n(&S.fetched, __ATOMIC_RELAXED);
    s->inserted = __atomic_load_n(&S.inserted, __ATOMIC_RELAXED);
    s->duplicates = __atomic_load_n(&S.duplicates, __ATOMIC_RELAXED);
    s->insert_errors = __atomic_load_n(&S.insert_errors, __ATOMIC_RELAXED);
    s->bad = __atomic_load_n(&S.bad, __ATOMIC_RELAXED);
    s->connected = __atomic_load_n(&S.connected, __ATOMIC_RELAXED);
}

size_t gh_chsink_metrics(char *out, size_t cap)
{
    if (!__atomic_load_n(&S.started, __ATOMIC_RELAXED) || !cap)
        return 0;
    gh_chsink_stats_t s;
    gh_chsink_stats(&s);
    static const struct {
        const char *name, *help;
        size_t off;
    } ctr[] = {
        {"fetched_total", "Messages the ClickHouse sink fetched from the stream.", offsetof(gh_chsink_stats_t, fetched)},
        {"inserted_total", "Rows inserted into ClickHouse.", offsetof(gh_chsink_stats_t, inserted)},
        {"duplicates_total", "Messages dropped because their id was inserted already.", offsetof(gh_chsink_stats_t, duplicates)},
        {"insert_errors_total", "Inserts ClickHouse did not accept; their messages are delivered again.",
         offsetof(gh_chsink_stats_t, insert_errors)},
        {"bad_total", "Messages that were not a JSON object of a known kind (acknowledged and dropped).", offsetof(gh_chsink_stats_t, bad)},
    };
    size_t o = 0;
    for (size_t i = 0; i < sizeof ctr / sizeof *ctr && o < cap; i++) {
        uint64_t v = *(const uint64_t *)((const char *)&s + ctr[i].off);
        int k = snprintf(out + o, cap - o, "# HELP gatehouse_clickhouse_%s %s\n# TYPE gatehouse_clickhouse_%s counter\n"
                                           "gatehouse_clickhouse_%s %llu\n",
                         ctr[i].name, ctr[i].help, ctr[i].name, ctr[i].name, (unsigned long long)v);
        o += k > 0 ? (size_t)k : 0;
    }
    if (o < cap) {
        int k = snprintf(out + o, cap - o, "# HELP gatehouse_clickhouse_connected Whether the sink is connected to NATS.\n"
                                           "# TYPE gatehouse_clickhouse_connected gauge\n"
                                           "gatehouse_clickhouse_connected %d\n",
                         s.connected);
        o += k > 0 ? (size_t)k : 0;
    }
    return o < cap ? o : cap - 1;
}
