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

static ring_t *rings;
static uint32_t nrings;
static int log_fd = -1;
static int running;
static pthread_t writer;

int gh_accesslog_enabled(void) { return running; }

static void write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(log_fd, p, n);
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
static size_t drain(ring_t *r)
{
    uint64_t head = r->head;
    uint64_t tail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
    size_t total = (size_t)(tail - head);
    while (head != tail) {
        size_t off = (size_t)(head & (RING_SIZE - 1));
        size_t n = GH_MIN((size_t)(tail - head), RING_SIZE - off);
        write_all(r->data + off, n);
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
        for (uint32_t i = 0; i < nrings; i++)
            n += drain(&rings[i]);
        if (stop)
            break;
        if (!n) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int gh_accesslog_start(const char *path, uint32_t nslots)
{
    if (!path || !strcmp(path, "-")) {
        log_fd = STDOUT_FILENO;
    } else {
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (log_fd < 0)
            return -errno;
    }
    rings = calloc(nslots, sizeof(*rings));
    if (!rings)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < nslots; i++)
        if (!(rings[i].data = malloc(RING_SIZE)))
            return GH_ENOMEM;
    nrings = nslots;
    running = 1;
    if (pthread_create(&writer, NULL, writer_main, NULL) != 0) {
        running = 0;
        return GH_ENOMEM;
    }
    return 0;
}

void gh_accesslog_stop(void)
{
    if (!running)
        return;
    __atomic_store_n(&running, 0, __ATOMIC_RELEASE);
    pthread_join(writer, NULL);
    for (uint32_t i = 0; i < nrings; i++)
        free(rings[i].data);
    free(rings);
    rings = NULL;
    nrings = 0;
    if (log_fd > STDERR_FILENO)
        close(log_fd);
    log_fd = -1;
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

size_t gh_accesslog_format(char *buf, size_t cap, const gh_access_rec_t *r)
{
    out_t o = {buf, 0, cap - 64}; /* reserve room for the numeric tail and "}\n" */
    time_t sec = (time_t)(r->time_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[40];
    size_t tn = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tn, sizeof ts - tn, ".%03uZ", (unsigned)(r->time_ms % 1000));
    put(&o, "{\"time\":\"", 9);
    put(&o, ts, strlen(ts));
    put(&o, "\"", 1);
    put_key_str(&o, ",\"client\":", r->client, 64);
    put_key_str(&o, ",\"tenant\":", r->tenant, 128);
    put_key_str(&o, ",\"route\":", r->route, 128);
    put_key_str(&o, ",\"method\":", r->method, 32);
    put_key_str(&o, ",\"host\":", r->host, 256);
    put_key_str(&o, ",\"path\":", r->path, 2048);
    put_key_str(&o, ",\"query\":", r->query, 1024);
    put_fmt(&o, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu", r->status,
            (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out);
    if (r->upstream.n)
        put_key_str(&o, ",\"upstream\":", r->upstream, 256);
    else
        put(&o, ",\"upstream\":null", 16);
    if (r->upstream_us >= 0)
        put_fmt(&o, ",\"upstream_time_ms\":%.3f", (double)r->upstream_us / 1000.0);
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
    put_fmt(&o, ",\"total_time_ms\":%.3f}\n", (double)r->total_us / 1000.0);
    return o.n;
}

int gh_accesslog_log(uint32_t slot, const gh_access_rec_t *r)
{
    char line[8192];
    size_t n = gh_accesslog_format(line, sizeof line, r);
    ring_t *rg = &rings[slot];
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
