/* accesslog.c: see accesslog.h. */
#include "obs/accesslog.h"

#include "core/json.h"
#include "events/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RING_SIZE (1u << 20) /* per producer */

typedef struct {
    uint64_t head __attribute__((aligned(GH_CACHELINE))); /* consumer position */
    uint64_t tail __attribute__((aligned(GH_CACHELINE))); /* producer position */
    uint64_t head_seen; /* the producer's last read of head: it rereads only when that looks full */
    char *data;
} ring_t;

/* The logs written: the access log and the exposure log, each a file (or syslog, or nothing
 * when only the event stream takes them) and one ring per producer; one writer thread drains
 * both. The rings carry records, not lines: the worker copies the fields (rec_put, no
 * formatting) and the writer formats them in a batch, once for every sink that takes them (the
 * file or syslog, and the event stream). */
typedef struct rec_kind rec_kind_t;
enum { SINK_ACCESS = 0, SINK_EXPOSURE, NSINKS };
typedef struct {
    ring_t *rings;
    uint32_t nrings;
    const rec_kind_t *kind; /* what its rings carry */
    int fd;                 /* -1: no file (the stream alone) */
    int on;
    int stream;          /* its records also go to the event stream */
    char *path;          /* NULL: standard output */
    uint64_t written;    /* bytes in the file since it was opened (or its size then) */
    uint64_t max_size;   /* rotate past this (0: never) */
    uint32_t keep;       /* rotated files kept: path.1 (newest) .. path.keep */
    int syslog_pri;      /* >= 0: fd is a connected datagram socket to syslog, one message per line */
    char syslog_head[160]; /* " HOST TAG PID - - " after the priority, version and timestamp */
} sink_t;
static int reopen_asked; /* SIGUSR1: reopen the files (after an outside rotation) */
static sink_t sinks[NSINKS] = {{.fd = -1, .syslog_pri = -1}, {.fd = -1, .syslog_pri = -1}};
static int running;
static pthread_t writer;

int gh_accesslog_enabled(void) { return sinks[SINK_ACCESS].on; } /* (also on for the stream alone) */
int gh_exposurelog_enabled(void) { return sinks[SINK_EXPOSURE].on; }

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* a broken log must not take the process down */
        }
        p += w;
        n -= (size_t)w;
    }
}

static int open_log(const char *path, uint64_t *size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    *size = fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return fd;
}

/* Reopen a file sink (its path may have been moved away); when rotating, shift path.N to
 * path.N+1 first (the oldest dropped) and move path to path.1. On failure the old descriptor
 * stays, so lines keep going somewhere. Writer thread only. */
static void reopen_sink(sink_t *k, int rotate)
{
    if (!k->path)
        return;
    if (rotate) {
        size_t n = strlen(k->path) + 16;
        char *from = malloc(n), *to = malloc(n);
        if (!from || !to) {
            free(from);
            free(to);
            return;
        }
        for (uint32_t i = k->keep; i >= 1; i--) {
            if (i == 1)
                snprintf(from, n, "%s", k->path);
            else
                snprintf(from, n, "%s.%u", k->path, i - 1);
            snprintf(to, n, "%s.%u", k->path, i);
            rename(from, to);
        }
        free(from);
        free(to);
    }
    uint64_t size = 0;
    int fd = open_log(k->path, &size);
    if (fd < 0)
        return;
    close(k->fd);
    k->fd = fd;
    k->written = size;
}

/* ---- records: copied by the workers, formatted by the writer ---- */

/* A record's strings, in the line's order, with the bytes of each the line keeps: the one list
 * per kind that the worker's copy (rec_put) and the formatter both cut by. */
#define ACCESS_STRS(X)                                                                                  \
    X(client, 64) X(tenant, 128) X(route, 128) X(method, 32) X(host, 256) X(path, 2048) X(query, 1024) \
    X(upstream, 256) X(request_id, 128) X(proto, 16) X(tls, 16) X(ja4, 40) X(protect_reason, 32)       \
    X(protect_action, 32) X(protect_detail, 96) X(cache, 16) X(flag, 128) X(variant, 128)
#define EXPOSURE_STRS(X) \
    X(tenant, 256) X(route, 256) X(flag, 256) X(variant, 256) X(reason, 32) X(unit, 256) X(request_id, 64)
#define ACCESS_INDEX(f, max) F_##f,
enum { ACCESS_STRS(ACCESS_INDEX) NACCESS_STRS };
#define EXPOSURE_INDEX(f, max) X_##f,
enum { EXPOSURE_STRS(EXPOSURE_INDEX) NEXPOSURE_STRS };
typedef struct {
    uint16_t off, max; /* a gh_str_t of the record, and the bytes of it the line keeps */
} rec_str_t;
#define ACCESS_ENTRY(f, max) {offsetof(gh_access_rec_t, f), max},
static const rec_str_t access_strs[] = {ACCESS_STRS(ACCESS_ENTRY)};
#define EXPOSURE_ENTRY(f, max) {offsetof(gh_exposure_rec_t, f), max},
static const rec_str_t exposure_strs[] = {EXPOSURE_STRS(EXPOSURE_ENTRY)};
#define REC_MAX_STRS NACCESS_STRS

/* What a ring carries: the record's numbers (the struct's leading fields, before its first
 * string, copied as they are), its strings, how a line is made of it, and which strings name the
 * event stream's message (its tenant and id). */
struct rec_kind {
    size_t nums;
    const rec_str_t *strs;
    uint32_t nstrs;
    uint32_t tenant, id;
    gh_ev_kind_t ev;
    size_t (*format)(char *buf, size_t cap, const void *rec);
};
static size_t format_access(char *buf, size_t cap, const void *r) { return gh_accesslog_format(buf, cap, r); }
static size_t format_exposure(char *buf, size_t cap, const void *e) { return gh_exposurelog_format(buf, cap, e); }
static const rec_kind_t access_kind = {offsetof(gh_access_rec_t, client), access_strs, NACCESS_STRS, F_tenant,
                                       F_request_id, GH_EV_ACCESS, format_access};
static const rec_kind_t exposure_kind = {offsetof(gh_exposure_rec_t, tenant), exposure_strs, NEXPOSURE_STRS,
                                         X_tenant, X_request_id, GH_EV_EXPOSURE, format_exposure};
_Static_assert(offsetof(gh_access_rec_t, client) % 8 == 0 && offsetof(gh_exposure_rec_t, tenant) % 8 == 0,
               "a record's numbers keep its lengths aligned");

/* A record in a ring: its size (a multiple of 8; 0: the rest of the ring is skipped, the record
 * went to the start), 4 bytes unused, the numbers, the strings' lengths (u16 each), then the
 * strings back to back, each cut at the length the line keeps of it. Records never wrap. */
#define REC_HEAD 8
#define REC_STR(r, k, i) ((gh_str_t *)((char *)(r) + (k)->strs[i].off))

/* Worker: copy rec, a record of kind k, into its ring; GH_ELIMIT when the ring has no room.
 * Inlined for each kind, so its table's values are known when compiled. */
static inline __attribute__((always_inline)) int rec_put(ring_t *rg, const rec_kind_t *k, const void *rec)
{
    uint16_t len[REC_MAX_STRS];
    size_t size = REC_HEAD + k->nums + k->nstrs * sizeof len[0];
#pragma GCC unroll 32 /* (the kind's table is known here: each string's offset and limit become constants) */
    for (size_t i = 0; i < k->nstrs; i++) {
        len[i] = (uint16_t)GH_MIN(REC_STR(rec, k, i)->n, (size_t)k->strs[i].max);
        size += len[i];
    }
    size = (size + 7) & ~(size_t)7;
    uint64_t tail = rg->tail;
    size_t off = (size_t)(tail & (RING_SIZE - 1)), skip = RING_SIZE - off < size ? RING_SIZE - off : 0;
    if (RING_SIZE - (tail - rg->head_seen) < skip + size) { /* (the consumer's line only when needed) */
        rg->head_seen = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
        if (RING_SIZE - (tail - rg->head_seen) < skip + size)
            return GH_ELIMIT;
    }
    if (skip) { /* (8-byte aligned: the skip mark's size field fits) */
        *(uint32_t *)(void *)(rg->data + off) = 0;
        off = 0;
    }
    char *p = rg->data + off;
    *(uint32_t *)(void *)p = (uint32_t)size;
    memcpy(p + REC_HEAD, rec, k->nums);
    p += REC_HEAD + k->nums;
    memcpy(p, len, k->nstrs * sizeof len[0]);
    p += k->nstrs * sizeof len[0];
#pragma GCC unroll 32
    for (size_t i = 0; i < k->nstrs; i++)
        if (len[i]) {
            memcpy(p, REC_STR(rec, k, i)->p, len[i]);
            p += len[i];
        }
    __atomic_store_n(&rg->tail, tail + skip + size, __ATOMIC_RELEASE);
    return 0;
}

#define OUT_SIZE (256u << 10) /* the writer's batch of formatted lines */
#define LINE_MAX_BYTES 8192   /* one formatted line at most */
static char *outbuf;
static size_t outn;
static gh_stream_rec_t srecs[1024]; /* the batch's lines for the event stream */
static size_t nsrecs;

/* Hand the batch to the file and the stream. */
static void out_flush(sink_t *k)
{
    if (k->fd >= 0 && k->syslog_pri < 0)
        write_all(k->fd, outbuf, outn);
    if (nsrecs)
        gh_stream_put_many(srecs, nsrecs);
    outn = nsrecs = 0;
}

/* Format every record of ring r into lines for the sink's output (file, or one RFC 5424
 * datagram per line "<PRI>1 TIMESTAMP HOST TAG PID - - LINE" to syslog) and the event stream;
 * the ring's space is given back after each batch (the stream's records point into it).
 * Returns the bytes of lines formatted. Writer thread only. */
static size_t drain_recs(sink_t *k, ring_t *rg)
{
    uint64_t head = rg->head, tail = __atomic_load_n(&rg->tail, __ATOMIC_ACQUIRE);
    if (head == tail)
        return 0;
    const rec_kind_t *kind = k->kind;
    char pre[64 + sizeof k->syslog_head];
    int pn = 0;
    if (k->syslog_pri >= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        pn = snprintf(pre, sizeof pre, "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ%s", k->syslog_pri,
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ts.tv_nsec / 1000000, k->syslog_head);
    }
    size_t total = 0;
    while (head != tail) {
        size_t off = (size_t)(head & (RING_SIZE - 1));
        const char *h = rg->data + off;
        uint32_t size = *(const uint32_t *)(const void *)h;
        if (!size) {
            head += RING_SIZE - off;
            continue;
        }
        union {
            gh_access_rec_t a;
            gh_exposure_rec_t e;
        } r; /* every field set below: the numbers, then each string */
        memcpy(&r, h + REC_HEAD, kind->nums);
        const uint16_t *len = (const uint16_t *)(const void *)(h + REC_HEAD + kind->nums);
        const char *p = (const char *)(len + kind->nstrs);
        for (size_t i = 0; i < kind->nstrs; i++) {
            *REC_STR(&r, kind, i) = gh_str(p, len[i]);
            p += len[i];
        }
        head += size;
        char *line = outbuf + outn;
        size_t n = kind->format(line, LINE_MAX_BYTES, &r);
        outn += n;
        total += n;
        if (k->syslog_pri >= 0 && k->fd >= 0) {
            struct iovec iov[2] = {{pre, (size_t)pn}, {line, n - 1}};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
            while (sendmsg(k->fd, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
                ;
        }
        if (k->stream) {
            gh_str_t tenant = *REC_STR(&r, kind, kind->tenant), id = *REC_STR(&r, kind, kind->id);
            if (!tenant.n) /* no route matched: the subject needs a token */
                tenant = GH_STR("-");
            srecs[nsrecs++] = (gh_stream_rec_t){.kind = kind->ev, .tenant = tenant.p,
                                                .tenant_len = GH_MIN(tenant.n, (size_t)255), .id = id.p,
                                                .id_len = GH_MIN(id.n, (size_t)255), .json = line, .len = n - 1};
        }
        if (OUT_SIZE - outn < LINE_MAX_BYTES || nsrecs == GH_ARRAY_LEN(srecs)) {
            out_flush(k);
            __atomic_store_n(&rg->head, head, __ATOMIC_RELEASE);
        }
    }
    out_flush(k);
    __atomic_store_n(&rg->head, head, __ATOMIC_RELEASE);
    return total;
}

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        int stop = !__atomic_load_n(&running, __ATOMIC_ACQUIRE);
        int reopen = __atomic_exchange_n(&reopen_asked, 0, __ATOMIC_ACQ_REL);
        size_t n = 0;
        for (int k = 0; k < NSINKS; k++) {
            sink_t *sk = &sinks[k];
            if (!sk->on)
                continue;
            if (reopen)
                reopen_sink(sk, 0);
            size_t got = 0;
            for (uint32_t i = 0; i < sk->nrings; i++)
                got += drain_recs(sk, &sk->rings[i]);
            n += got;
            sk->written += got;
            if (sk->max_size && sk->written >= sk->max_size && sk->path)
                reopen_sink(sk, 1);
        }
        if (stop)
            break;
        if (!n) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* A datagram socket connected to syslog at address: a path (/dev/log) or host:port (UDP). */
static int syslog_connect(const char *address)
{
    int fd;
    if (address[0] == '/') {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(address) >= sizeof sun.sun_path)
            return -ENAMETOOLONG;
        strcpy(sun.sun_path, address);
        if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
            return -errno;
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        return fd;
    }
    char host[256];
    const char *colon = strrchr(address, ':');
    size_t hn = colon ? (size_t)(colon - address) : 0;
    if (!colon || hn >= sizeof host)
        return -EINVAL;
    memcpy(host, address, hn);
    host[hn] = 0;
    if (host[0] == '[' && hn > 1 && host[hn - 1] == ']')
        memmove(host, host + 1, hn - 2), host[hn - 2] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0 || !ai)
        return -EHOSTUNREACH;
    fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -e;
    }
    freeaddrinfo(ai);
    return fd;
}

/* A sink's rings (before the workers start: they are read without a lock); the writer starts
 * with the first sink. */
static int sink_rings(sink_t *k, uint32_t nslots)
{
    if (!outbuf && !(outbuf = malloc(OUT_SIZE)))
        return GH_ENOMEM;
    k->kind = k == &sinks[SINK_ACCESS] ? &access_kind : &exposure_kind;
    k->rings = calloc(nslots, sizeof(*k->rings));
    if (!k->rings)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < nslots; i++)
        if (!(k->rings[i].data = malloc(RING_SIZE)))
            return GH_ENOMEM;
    k->nrings = nslots;
    k->on = 1;
    if (!running) {
        running = 1;
        if (pthread_create(&writer, NULL, writer_main, NULL) != 0) {
            running = 0;
            k->on = 0;
            return GH_ENOMEM;
        }
    }
    return 0;
}

/* Open a sink's output (path, "-" or NULL for standard output, or syslog) and its rings. */
static int sink_start(sink_t *k, const char *path, uint32_t nslots)
{
    if (k->syslog_pri >= 0) {
        k->fd = syslog_connect(path);
        if (k->fd < 0)
            return k->fd;
    } else if (!path || !strcmp(path, "-")) {
        k->fd = STDOUT_FILENO;
    } else {
        k->fd = open_log(path, &k->written);
        if (k->fd < 0)
            return -errno;
        if (!(k->path = strdup(path)))
            return GH_ENOMEM;
    }
    return sink_rings(k, nslots);
}

int gh_accesslog_start(const char *path, uint32_t nslots, uint64_t max_size, uint32_t keep)
{
    sinks[SINK_ACCESS].max_size = path && strcmp(path, "-") ? max_size : 0;
    sinks[SINK_ACCESS].keep = keep ? keep : 1;
    return sink_start(&sinks[SINK_ACCESS], path, nslots);
}

int gh_accesslog_start_syslog(const char *address, uint32_t nslots, uint32_t facility, const char *tag)
{
    sink_t *k = &sinks[SINK_ACCESS];
    char host[64] = "-";
    if (gethostname(host, sizeof host - 1) < 0 || !host[0])
        strcpy(host, "-");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++) /* HOSTNAME: visible ASCII */
        if (*p <= 32 || *p >= 127)
            *p = '-';
    k->syslog_pri = (int)(facility * 8 + 6); /* severity informational */
    snprintf(k->syslog_head, sizeof k->syslog_head, " %s %.48s %ld - - ", host, tag, (long)getpid());
    int rc = sink_start(k, address, nslots);
    if (rc < 0)
        k->syslog_pri = -1;
    return rc;
}

void gh_accesslog_reopen(void) { __atomic_store_n(&reopen_asked, 1, __ATOMIC_RELEASE); }
int gh_exposurelog_start(const char *path, uint32_t nslots) { return sink_start(&sinks[SINK_EXPOSURE], path, nslots); }

int gh_accesslog_stream_start(uint32_t nslots)
{
    /* each kind through its log's rings, made here (with no output) when the log is off */
    static const gh_ev_kind_t ev[NSINKS] = {GH_EV_ACCESS, GH_EV_EXPOSURE};
    for (int i = 0; i < NSINKS; i++) {
        sink_t *k = &sinks[i];
        if (!gh_stream_on(ev[i]))
            continue;
        int rc = k->on ? 0 : sink_rings(k, nslots);
        if (rc < 0)
            return rc;
        k->stream = 1;
    }
    return 0;
}

void gh_accesslog_stop(void)
{
    if (!running)
        return;
    __atomic_store_n(&running, 0, __ATOMIC_RELEASE);
    pthread_join(writer, NULL); /* its last round drains everything */
    for (int k = 0; k < NSINKS; k++) {
        sink_t *sk = &sinks[k];
        for (uint32_t i = 0; i < sk->nrings; i++)
            free(sk->rings[i].data);
        free(sk->rings);
        if (sk->fd > STDERR_FILENO)
            close(sk->fd);
        free(sk->path);
        *sk = (sink_t){.fd = -1, .syslog_pri = -1};
    }
    free(outbuf);
    outbuf = NULL;
}

typedef struct {
    char *p;
    size_t n, cap;
} out_t;

static inline void put(out_t *o, const char *s, size_t n)
{
    if (GH_LIKELY(o->n + n <= o->cap)) { /* (a literal's length stays known here: no memcpy call) */
        memcpy(o->p + o->n, s, n);
        o->n += n;
        return;
    }
    n = o->cap - o->n;
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

/* A JSON string, escaped, cut at max bytes of input so the line stays bounded. */
static void put_str(out_t *o, gh_str_t s, size_t max)
{
    if (o->n < o->cap) /* bytes from the wire: escaped, so the line stays valid JSON */
        o->n += gh_json_str(o->p + o->n, o->cap - o->n, gh_str(s.p, GH_MIN(s.n, max)), 0);
}

/* ,"key": then the value; the key a string literal (its length known when compiled) */
#define put_key_str(o, key, v, max) (put((o), key, sizeof(key) - 1), put_str((o), (v), (max)))
/* ,"f": then the access record's string f, cut where ACCESS_STRS says */
#define put_field(o, r, f) put_key_str(o, ",\"" #f "\":", (r)->f, access_strs[F_##f].max)

/* Decimal digits of v, in place when the line has room for any number. */
static void put_u64(out_t *o, uint64_t v)
{
    if (GH_LIKELY(o->n + 20 <= o->cap)) {
        o->n += gh_u64_dec(o->p + o->n, v);
        return;
    }
    char d[20];
    put(o, d, gh_u64_dec(d, v)); /* (cut at the line's end) */
}

/* Microseconds as milliseconds with three decimals (what "%.3f" of us / 1000.0 prints). */
static void put_ms3(out_t *o, uint64_t us)
{
    put_u64(o, us / 1000);
    unsigned f = (unsigned)(us % 1000);
    char t[4] = {'.', (char)('0' + f / 100), (char)('0' + f / 10 % 10), (char)('0' + f % 10)};
    put(o, t, 4);
}

/* {"time":"YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC). The date and time to the second are the same for many
 * lines: formatted once a second per thread. */
static void put_time(out_t *o, uint64_t time_ms)
{
    static __thread int64_t ts_sec = -1;
    static __thread char ts[32];
    static __thread size_t tn;
    int64_t sec = (int64_t)(time_ms / 1000);
    if (sec != ts_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        tn = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        ts_sec = sec;
    }
    unsigned ms = (unsigned)(time_ms % 1000);
    char msz[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z'};
    put(o, "{\"time\":\"", 9);
    put(o, ts, tn);
    put(o, msz, 5);
    put(o, "\"", 1);
}

size_t gh_accesslog_format(char *buf, size_t cap, const gh_access_rec_t *r)
{
    out_t o = {buf, 0, cap - 64}; /* reserve room for the numeric tail and "}\n" */
    put_time(&o, r->time_ms);
    put_field(&o, r, client);
    put_field(&o, r, tenant);
    put_field(&o, r, route);
    put_field(&o, r, method);
    put_field(&o, r, host);
    put_field(&o, r, path);
    put_field(&o, r, query);
    put(&o, ",\"status\":", 10);
    put_u64(&o, (uint64_t)(r->status > 0 ? r->status : 0));
    put(&o, ",\"bytes_in\":", 12);
    put_u64(&o, r->bytes_in);
    put(&o, ",\"bytes_out\":", 13);
    put_u64(&o, r->bytes_out);
    if (r->upstream.n)
        put_field(&o, r, upstream);
    else
        put(&o, ",\"upstream\":null", 16);
    if (r->upstream_us >= 0)
        put(&o, ",\"upstream_time_ms\":", 20), put_ms3(&o, (uint64_t)r->upstream_us);
    else
        put(&o, ",\"upstream_time_ms\":null", 24);
    put_field(&o, r, request_id);
    if (r->proto.n)
        put_field(&o, r, proto);
    if (r->tls.n) {
        put_field(&o, r, tls);
        put_field(&o, r, ja4);
    }
    if (r->protect_reason.n) {
        put_field(&o, r, protect_reason);
        put_field(&o, r, protect_action);
        put_field(&o, r, protect_detail);
    }
    if (r->cache.n)
        put_field(&o, r, cache);
    if (r->flag.n) {
        put_field(&o, r, flag);
        put_field(&o, r, variant);
    }
    o.cap = cap;
    put(&o, ",\"total_time_ms\":", 17);
    put_ms3(&o, (uint64_t)r->total_us);
    put(&o, "}\n", 2);
    return o.n;
}

int gh_accesslog_log(uint32_t slot, const gh_access_rec_t *r)
{
    return sinks[SINK_ACCESS].on ? rec_put(&sinks[SINK_ACCESS].rings[slot], &access_kind, r) : 0;
}

size_t gh_exposurelog_format(char *buf, size_t cap, const gh_exposure_rec_t *e)
{
#define EXPOSURE_KEY(f, max) {",\"" #f "\":", sizeof(",\"" #f "\":") - 1},
    static const struct {
        const char *s;
        size_t n;
    } keys[] = {EXPOSURE_STRS(EXPOSURE_KEY)}; /* every string, in the record's order */
    out_t o = {buf, 0, cap - 8};
    put_time(&o, e->time_ms);
    for (size_t i = 0; i < NEXPOSURE_STRS; i++) {
        put(&o, keys[i].s, keys[i].n);
        put_str(&o, *REC_STR(e, &exposure_kind, i), exposure_strs[i].max);
    }
    o.cap = cap;
    put(&o, "}\n", 2);
    return o.n;
}

int gh_exposurelog_log(uint32_t slot, const gh_exposure_rec_t *e)
{
    return sinks[SINK_EXPOSURE].on ? rec_put(&sinks[SINK_EXPOSURE].rings[slot], &exposure_kind, e) : 0;
}
