/* accesslog.c: see accesslog.h. */
#include "obs/accesslog.h"

#include "core/json.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define RING_SIZE (1u << 20) /* per producer; records over RING_SIZE/4 are dropped */

typedef struct {
    uint64_t head __attribute__((aligned(GH_CACHELINE))); /* consumer position */
    uint64_t tail __attribute__((aligned(GH_CACHELINE))); /* producer position */
    char *data;
} ring_t;

/* The logs written: the access log and the exposure log, each a file and one ring per
 * producer; one writer thread drains both. */
enum { SINK_ACCESS = 0, SINK_EXPOSURE, NSINKS };
typedef struct {
    ring_t *rings;
    uint32_t nrings;
    int fd;
    int on;
} sink_t;
static sink_t sinks[NSINKS] = {{.fd = -1}, {.fd = -1}};
static int running;
static pthread_t writer;

int gh_accesslog_enabled(void) { return sinks[SINK_ACCESS].on; }
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

/* Drain one ring to the file; returns bytes drained. */
static size_t drain(int fd, ring_t *r)
{
    uint64_t head = r->head;
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    size_t total = (size_t)(tail - head);
    while (head != tail) {
        size_t off = (size_t)(head & (RING_SIZE - 1));
        size_t n = GH_MIN((size_t)(tail - head), RING_SIZE - off);
        write_all(fd, r->data + off, n);
        head += n;
    }
    __atomic_store_n(&r->head, head, __ATOMIC_RELEASE);
    return total;
}

static void *writer_main(void *arg)
{
    (void)arg;
    for (;;) {
        int stop = !__atomic_load_n(&running, __ATOMIC_ACQUIRE);
        size_t n = 0;
        for (int k = 0; k < NSINKS; k++)
            for (uint32_t i = 0; sinks[k].on && i < sinks[k].nrings; i++)
                n += drain(sinks[k].fd, &sinks[k].rings[i]);
        if (stop)
            break;
        if (!n) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Open a sink (before the workers start: its rings are read without a lock); the writer
 * starts with the first. */
static int sink_start(sink_t *k, const char *path, uint32_t nslots)
{
    if (!path || !strcmp(path, "-")) {
        k->fd = STDOUT_FILENO;
    } else {
        k->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (k->fd < 0)
            return -errno;
    }
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

int gh_accesslog_start(const char *path, uint32_t nslots) { return sink_start(&sinks[SINK_ACCESS], path, nslots); }
int gh_exposurelog_start(const char *path, uint32_t nslots) { return sink_start(&sinks[SINK_EXPOSURE], path, nslots); }

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
        *sk = (sink_t){.fd = -1};
    }
}

typedef struct {
    char *p;
    size_t n, cap;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->n + n > o->cap)
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

static void put_key_str(out_t *o, const char *key, gh_str_t v, size_t max)
{
    put(o, key, strlen(key));
    put_str(o, v, max);
}

static void put_fmt(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(out_t *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (m > 0)
        o->n += GH_MIN((size_t)m, o->cap - o->n - 1);
}

/* Decimal digits of v (no printf on the request path: it is most of a line's cost). */
static void put_u64(out_t *o, uint64_t v)
{
    char d[20];
    int i = 20;
    do
        d[--i] = (char)('0' + v % 10);
    while ((v /= 10) && i > 0);
    put(o, d + i, (size_t)(20 - i));
}

/* Microseconds as milliseconds with three decimals (what "%.3f" of us / 1000.0 prints). */
static void put_ms3(out_t *o, uint64_t us)
{
    put_u64(o, us / 1000);
    char f[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
    put(o, f, 4);
}

size_t gh_accesslog_format(char *buf, size_t cap, const gh_access_rec_t *r)
{
    out_t o = {buf, 0, cap - 64}; /* reserve room for the numeric tail and "}\n" */
    /* the date and time to the second are the same for many lines: formatted once a second */
    static __thread int64_t ts_sec = -1;
    static __thread char ts[32];
    static __thread size_t tn;
    int64_t sec = r->time_ms / 1000;
    if (sec != ts_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        tn = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
        ts_sec = sec;
    }
    unsigned ms = (unsigned)(r->time_ms % 1000);
    char msz[5] = {'.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z'};
    put(&o, "{\"time\":\"", 9);
    put(&o, ts, tn);
    put(&o, msz, 5);
    put(&o, "\"", 1);
    put_key_str(&o, ",\"client\":", r->client, 64);
    put_key_str(&o, ",\"tenant\":", r->tenant, 128);
    put_key_str(&o, ",\"route\":", r->route, 128);
    put_key_str(&o, ",\"method\":", r->method, 32);
    put_key_str(&o, ",\"host\":", r->host, 256);
    put_key_str(&o, ",\"path\":", r->path, 2048);
    put_key_str(&o, ",\"query\":", r->query, 1024);
    put(&o, ",\"status\":", 10);
    put_u64(&o, (uint64_t)(r->status > 0 ? r->status : 0));
    put(&o, ",\"bytes_in\":", 12);
    put_u64(&o, r->bytes_in);
    put(&o, ",\"bytes_out\":", 13);
    put_u64(&o, r->bytes_out);
    if (r->upstream.n)
        put_key_str(&o, ",\"upstream\":", r->upstream, 256);
    else
        put(&o, ",\"upstream\":null", 16);
    if (r->upstream_us >= 0)
        put(&o, ",\"upstream_time_ms\":", 20), put_ms3(&o, (uint64_t)r->upstream_us);
    else
        put(&o, ",\"upstream_time_ms\":null", 24);
    put_key_str(&o, ",\"request_id\":", r->request_id, 128);
    if (r->proto.n)
        put_key_str(&o, ",\"proto\":", r->proto, 16);
    if (r->tls.n) {
        put_key_str(&o, ",\"tls\":", r->tls, 16);
        put_key_str(&o, ",\"ja4\":", r->ja4, 40);
    }
    if (r->protect_reason.n) {
        put_key_str(&o, ",\"protect_reason\":", r->protect_reason, 32);
        put_key_str(&o, ",\"protect_action\":", r->protect_action, 32);
        put_key_str(&o, ",\"protect_detail\":", r->protect_detail, 96);
    }
    if (r->cache.n)
        put_key_str(&o, ",\"cache\":", r->cache, 16);
    if (r->flag.n) {
        put_key_str(&o, ",\"flag\":", r->flag, 128);
        put_key_str(&o, ",\"variant\":", r->variant, 128);
    }
    o.cap = cap;
    put(&o, ",\"total_time_ms\":", 17);
    put_ms3(&o, (uint64_t)r->total_us);
    put(&o, "}\n", 2);
    return o.n;
}

static int enqueue(sink_t *k, uint32_t slot, const char *line, size_t n)
{
    ring_t *rg = &k->rings[slot];
    uint64_t tail = rg->tail;
    uint64_t head = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
    if (RING_SIZE - (tail - head) < n)
        return GH_ELIMIT;
    size_t off = (size_t)(tail & (RING_SIZE - 1));
    size_t first = GH_MIN(n, RING_SIZE - off);
    memcpy(rg->data + off, line, first);
    memcpy(rg->data, line + first, n - first);
    __atomic_store_n(&rg->tail, tail + n, __ATOMIC_RELEASE);
    return 0;
}

int gh_accesslog_log(uint32_t slot, const gh_access_rec_t *r)
{
    char line[8192];
    size_t n = gh_accesslog_format(line, sizeof line, r);
    return enqueue(&sinks[SINK_ACCESS], slot, line, n);
}

size_t gh_exposurelog_format(char *buf, size_t cap, const gh_exposure_rec_t *e)
{
    out_t o = {buf, 0, cap - 8};
    time_t sec = (time_t)(e->time_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    put_fmt(&o, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\"", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(e->time_ms % 1000));
    put_key_str(&o, ",\"tenant\":", e->tenant, 256);
    put_key_str(&o, ",\"route\":", e->route, 256);
    put_key_str(&o, ",\"flag\":", e->flag, 256);
    put_key_str(&o, ",\"variant\":", e->variant, 256);
    put_key_str(&o, ",\"reason\":", e->reason, 32);
    put_key_str(&o, ",\"unit\":", e->unit, 256);
    put_key_str(&o, ",\"request_id\":", e->request_id, 64);
    o.cap = cap;
    put(&o, "}\n", 2);
    return o.n;
}

int gh_exposurelog_log(uint32_t slot, const gh_exposure_rec_t *e)
{
    char line[2048];
    size_t n = gh_exposurelog_format(line, sizeof line, e);
    return enqueue(&sinks[SINK_EXPOSURE], slot, line, n);
}
