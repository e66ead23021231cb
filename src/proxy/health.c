/* health.c: see health.h. */
#include "proxy/health.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/loop.h"
#include "http/h1.h"
#include "tls/tls.h"

static gh_health_t *records;
uint32_t gh_health_ndrained;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct check {
    gh_io_t io;
    gh_timer_t timer;
    gh_health_t *h;
    const gh_conf_upstream_t *u;
    const gh_conf_backend_t *b;
    int busy;        /* a probe is in flight (timer = its timeout) */
    int connected;   /* its TCP connect completed */
    int sent;        /* its request is written */
    SSL *ssl;        /* upstream tls: the probe's TLS (handshake done when sent or hs_done) */
    int hs_done;
    uint32_t have;   /* response bytes in buf */
    char buf[2048];
} check_t;

static struct {
    pthread_t thread;
    gh_loop_t loop;
    gh_io_t notify;
    gh_conf_t *mailbox; /* next snapshot, referenced */
    gh_conf_t *conf;    /* the one being checked, referenced */
    check_t *checks;
    uint32_t nchecks;
    int stop, running;
    uint64_t rng;
} hc;

static gh_health_t *record(const char *up, const char *be)
{
    size_t lu = strlen(up), lb = strlen(be);
    for (gh_health_t *h = records; h; h = h->next)
        if (!strncmp(h->key, up, lu) && h->key[lu] == '\n' && !strcmp(h->key + lu + 1, be))
            return h;
    gh_health_t *h = calloc(1, sizeof(*h));
    size_t slots = (size_t)gh_metrics_nslots() * sizeof(gh_backend_slot_t);
    if (!h || !(h->key = malloc(lu + lb + 2)) || !(h->slot = aligned_alloc(GH_CACHELINE, slots ? slots : GH_CACHELINE))) {
        if (h)
            free(h->key);
        free(h);
        return NULL;
    }
    memset(h->slot, 0, slots);
    memcpy(h->key, up, lu);
    h->key[lu] = '\n';
    memcpy(h->key + lu + 1, be, lb + 1);
    h->up = 1;
    h->next = records;
    records = h;
    return h;
}

int gh_health_bind(gh_conf_t *c)
{
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    for (uint32_t i = 0; i < c->nupstreams; i++) {
        gh_conf_upstream_t *u = &c->upstreams[i];
        for (uint32_t k = 0; k < u->nbackends; k++)
            if (!(u->backends[k].health = record(u->name, u->backends[k].name)))
                rc = GH_ENOMEM;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

int gh_health_set_drain(gh_str_t upstream, gh_str_t backend, int drain)
{
    int rc = GH_ENOTFOUND;
    pthread_mutex_lock(&reg_lock);
    for (gh_health_t *h = records; h; h = h->next) {
        size_t lu = upstream.n;
        if (strncmp(h->key, upstream.p, lu) || h->key[lu] != '\n' || strlen(h->key + lu + 1) != backend.n ||
            memcmp(h->key + lu + 1, backend.p, backend.n))
            continue;
        uint8_t was = __atomic_exchange_n(&h->drained, (uint8_t)(drain != 0), __ATOMIC_RELAXED);
        if (was != (drain != 0)) {
            if (drain)
                __atomic_add_fetch(&gh_health_ndrained, 1, __ATOMIC_RELAXED);
            else
                __atomic_sub_fetch(&gh_health_ndrained, 1, __ATOMIC_RELAXED);
            gh_log(GH_LOG_WARN, "upstream %.*s: backend %.*s %s", (int)upstream.n, upstream.p, (int)backend.n,
                   backend.p, drain ? "drained (no new requests)" : "back from drain");
        }
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

static uint32_t jitter(uint32_t ms)
{
    hc.rng ^= hc.rng << 13;
    hc.rng ^= hc.rng >> 7;
    hc.rng ^= hc.rng << 17;
    uint32_t span = ms / 5 + 1; /* +-10% */
    return ms - ms / 10 + (uint32_t)(hc.rng % span);
}

static void probe_close(check_t *k)
{
    if (k->ssl) {
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    if (k->io.fd >= 0) {
        gh_loop_del(&hc.loop, &k->io);
        close(k->io.fd);
        k->io.fd = -1;
    }
}

static void result(check_t *k, int ok, const char *why)
{
    gh_health_t *h = k->h;
    probe_close(k);
    k->busy = 0;
    __atomic_add_fetch(&h->checks, 1, __ATOMIC_RELAXED);
    if (ok) {
        h->ok_streak++;
        h->fail_streak = 0;
        if (!h->up && h->ok_streak >= k->u->health.rise) {
            __atomic_store_n(&h->up_since, gh_loop_now(&hc.loop), __ATOMIC_RELAXED);
            __atomic_store_n(&h->up, 1, __ATOMIC_RELAXED);
            h->transitions++;
            gh_log(GH_LOG_WARN, "upstream %s: backend %s is UP (%u checks passed)", k->u->name, k->b->name,
                   h->ok_streak);
        }
    } else {
        __atomic_add_fetch(&h->failures, 1, __ATOMIC_RELAXED);
        h->fail_streak++;
        h->ok_streak = 0;
        snprintf(h->last_error, sizeof h->last_error, "%s", why);
        if (h->up && h->fail_streak >= k->u->health.fall) {
            __atomic_store_n(&h->up, 0, __ATOMIC_RELAXED);
            h->transitions++;
            gh_log(GH_LOG_WARN, "upstream %s: backend %s is DOWN (%u checks failed, last: %s)", k->u->name,
                   k->b->name, h->fail_streak, why);
        }
    }
    gh_timer_set(&hc.loop, &k->timer, jitter(k->u->health.interval));
}

/* One probe: connect, TLS handshake when the pool speaks TLS, "GET path", read the
 * status line and headers. */
static void probe_io(gh_io_t *io, uint32_t ev)
{
    check_t *k = (check_t *)io;
    if (io->fd < 0 || !k->busy)
        return;
    if (!k->connected) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t sl = sizeof err;
        if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err) {
            result(k, 0, err ? strerror(err) : "connect failed");
            return;
        }
        k->connected = 1;
        if (k->u->tls_client &&
            !(k->ssl = gh_tls_client_ssl(k->u->tls_client, io->fd, k->b->tls_name, k->b->name))) {
            result(k, 0, "out of memory");
            return;
        }
    }
    if (k->ssl && !k->hs_done) {
        int rc = gh_tls_handshake(k->ssl);
        if (rc == GH_EAGAIN)
            return;
        if (rc < 0) {
            char why[sizeof k->h->last_error];
            memcpy(why, "TLS: ", 5);
            gh_tls_strerror(k->ssl, why + 5, sizeof why - 5);
            result(k, 0, why);
            return;
        }
        k->hs_done = 1;
    }
    if (!k->sent) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gatehouse-health-check\r\nConnection: close\r\n\r\n",
                         k->u->health.path, k->b->tls_name ? k->b->tls_name : k->b->name);
        ssize_t w = n < 0 || n >= (int)sizeof req ? -1
                    : k->ssl                        ? gh_tls_write(k->ssl, req, (size_t)n)
                                                    : send(io->fd, req, (size_t)n, MSG_NOSIGNAL);
        if (w != n) { /* a few hundred bytes on a fresh connection: all or a failure */
            result(k, 0, "send failed");
            return;
        }
        k->sent = 1;
    }
    uint32_t have = k->have;
    for (;;) {
        ssize_t n = k->ssl ? gh_tls_read(k->ssl, k->buf + have, sizeof(k->buf) - have)
                           : read(io->fd, k->buf + have, sizeof(k->buf) - have);
        if (n > 0) {
            have += (uint32_t)n;
            gh_h1_response_t m;
            gh_h1_header_t hdrs[64];
            gh_h1_limits_t lim = {sizeof k->buf, sizeof k->buf, 64};
            int rc = gh_h1_parse_response(k->buf, have, &lim, GH_M_GET, &m, hdrs, 64);
            if (rc > 0) {
                char why[40];
                snprintf(why, sizeof why, "status %d", m.status);
                result(k, m.status >= k->u->health.status_min && m.status <= k->u->health.status_max, why);
                return;
            }
            if (rc != GH_EAGAIN || have == sizeof k->buf) {
                result(k, 0, "invalid response");
                return;
            }
            continue;
        }
        if (n == 0 || n == GH_ECLOSED) {
            result(k, 0, "closed before a response");
            return;
        }
        if (k->ssl ? n == GH_EAGAIN : (errno == EAGAIN || errno == EINTR))
            break;
        result(k, 0, k->ssl ? "TLS read failed" : strerror(errno));
        return;
    }
    k->have = have;
}

static void probe_timer(gh_timer_t *t)
{
    check_t *k = (check_t *)((char *)t - offsetof(check_t, timer));
    if (k->busy) {
        result(k, 0, "timed out");
        return;
    }
    /* start a probe */
    int fd = socket(k->b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        gh_timer_set(&hc.loop, &k->timer, k->u->health.interval);
        return;
    }
    k->busy = 1;
    k->connected = 0;
    k->sent = 0;
    k->hs_done = 0;
    k->have = 0;
    k->io.fd = fd;
    if ((connect(fd, (const struct sockaddr *)&k->b->addr, k->b->addrlen) < 0 && errno != EINPROGRESS) ||
        gh_loop_add(&hc.loop, &k->io) < 0) {
        result(k, 0, strerror(errno));
        return;
    }
    gh_timer_set(&hc.loop, &k->timer, k->u->health.timeout);
}

static void checks_clear(void)
{
    for (uint32_t i = 0; i < hc.nchecks; i++) {
        probe_close(&hc.checks[i]);
        gh_timer_stop(&hc.loop, &hc.checks[i].timer);
    }
    free(hc.checks);
    hc.checks = NULL;
    hc.nchecks = 0;
    if (hc.conf)
        gh_conf_unref(hc.conf);
    hc.conf = NULL;
}

/* Check what c says (c's reference is taken over). */
static void checks_set(gh_conf_t *c)
{
    checks_clear();
    hc.conf = c;
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->nupstreams; i++)
        if (c->upstreams[i].health.enabled)
            n += c->upstreams[i].nbackends;
    if (!n || !(hc.checks = calloc(n, sizeof(*hc.checks))))
        return;
    for (uint32_t i = 0; i < c->nupstreams; i++) {
        const gh_conf_upstream_t *u = &c->upstreams[i];
        if (!u->health.enabled)
            continue;
        for (uint32_t b = 0; b < u->nbackends; b++) {
            check_t *k = &hc.checks[hc.nchecks++];
            k->io.fd = -1;
            k->io.cb = probe_io;
            k->timer.cb = probe_timer;
            k->u = u;
            k->b = &u->backends[b];
            k->h = u->backends[b].health;
            gh_timer_set(&hc.loop, &k->timer, jitter(200)); /* first probes soon, spread */
        }
    }
}

static void notify_cb(gh_io_t *io, uint32_t ev)
{
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    (void)n;
    gh_conf_t *c = __atomic_exchange_n(&hc.mailbox, NULL, __ATOMIC_ACQ_REL);
    if (c)
        checks_set(c);
}

static void *checker_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!__atomic_load_n(&hc.stop, __ATOMIC_ACQUIRE))
        gh_loop_run_once(&hc.loop, 500);
    checks_clear();
    return NULL;
}

int gh_health_start(gh_conf_t *c)
{
    if (gh_loop_init(&hc.loop) < 0)
        return GH_ENOMEM;
    hc.rng = (uint64_t)gh_clock_ms() * 0x9E3779B97F4A7C15ull | 1;
    hc.notify.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    hc.notify.cb = notify_cb;
    if (hc.notify.fd < 0 || gh_loop_add_reader(&hc.loop, &hc.notify) < 0)
        return -errno;
    gh_conf_ref(c);
    checks_set(c);
    if (pthread_create(&hc.thread, NULL, checker_main, NULL) != 0)
        return GH_ENOMEM;
    hc.running = 1;
    return 0;
}

void gh_health_publish(gh_conf_t *c)
{
    if (!hc.running)
        return;
    gh_conf_ref(c);
    gh_conf_t *old = __atomic_exchange_n(&hc.mailbox, c, __ATOMIC_ACQ_REL);
    if (old)
        gh_conf_unref(old);
    uint64_t one = 1;
    ssize_t n = write(hc.notify.fd, &one, sizeof one);
    (void)n;
}

void gh_health_stop(void)
{
    if (!hc.running)
        return;
    __atomic_store_n(&hc.stop, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    ssize_t n = write(hc.notify.fd, &one, sizeof one);
    (void)n;
    pthread_join(hc.thread, NULL);
    hc.running = 0;
}

void gh_backend_view(const gh_conf_backend_t *b, gh_backend_view_t *out)
{
    memset(out, 0, sizeof *out);
    const gh_health_t *h = b->health;
    if (!h)
        return;
    uint64_t now = gh_clock_ms(), lat = 0, nlat = 0;
    for (uint32_t i = 0; i < gh_metrics_nslots(); i++) {
        const gh_backend_slot_t *s = &h->slot[i];
        out->requests += GH_READ(s->requests);
        out->failures += GH_READ(s->failures);
        out->ejections += GH_READ(s->ejections);
        out->active += GH_READ(s->active);
        out->ejected += GH_READ(s->ejected_until) > now;
        uint64_t l = GH_READ(s->latency_us);
        if (l)
            lat += l, nlat++;
    }
    out->latency_us = nlat ? lat / nlat : 0;
}

char *gh_health_metrics(const gh_conf_t *c, size_t *len)
{
    size_t cap = 8192; /* the HELP and TYPE lines alone are about 2 KB */
    for (uint32_t i = 0; i < c->nupstreams; i++)
        cap += (size_t)c->upstreams[i].nbackends * 10 * 256;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
#define OUT(...) (n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__))
    OUT("# HELP gatehouse_upstream_backend_up Active health check state (1 up, 0 down) of checked backends.\n"
        "# TYPE gatehouse_upstream_backend_up gauge\n");
    for (uint32_t i = 0; i < c->nupstreams; i++)
        for (uint32_t k = 0; c->upstreams[i].health.enabled && k < c->upstreams[i].nbackends; k++)
            OUT("gatehouse_upstream_backend_up{upstream=\"%s\",backend=\"%s\"} %d\n", c->upstreams[i].name,
                c->upstreams[i].backends[k].name, gh_health_up(&c->upstreams[i].backends[k]));
    OUT("# HELP gatehouse_upstream_backend_drained Whether a backend is drained from the admin listener.\n"
        "# TYPE gatehouse_upstream_backend_drained gauge\n");
    for (uint32_t i = 0; i < c->nupstreams; i++)
        for (uint32_t k = 0; k < c->upstreams[i].nbackends; k++)
            OUT("gatehouse_upstream_backend_drained{upstream=\"%s\",backend=\"%s\"} %d\n", c->upstreams[i].name,
                c->upstreams[i].backends[k].name, gh_health_drained(&c->upstreams[i].backends[k]));
    OUT("# HELP gatehouse_upstream_health_checks_total Active health checks by result.\n"
        "# TYPE gatehouse_upstream_health_checks_total counter\n");
    for (uint32_t i = 0; i < c->nupstreams; i++)
        for (uint32_t k = 0; c->upstreams[i].health.enabled && k < c->upstreams[i].nbackends; k++) {
            const gh_health_t *h = c->upstreams[i].backends[k].health;
            if (!h)
                continue;
            uint64_t all = __atomic_load_n(&h->checks, __ATOMIC_RELAXED);
            uint64_t bad = __atomic_load_n(&h->failures, __ATOMIC_RELAXED);
            OUT("gatehouse_upstream_health_checks_total{upstream=\"%s\",backend=\"%s\",result=\"ok\"} %llu\n",
                c->upstreams[i].name, c->upstreams[i].backends[k].name, (unsigned long long)(all - bad));
            OUT("gatehouse_upstream_health_checks_total{upstream=\"%s\",backend=\"%s\",result=\"failed\"} %llu\n",
                c->upstreams[i].name, c->upstreams[i].backends[k].name, (unsigned long long)bad);
        }
    static const struct {
        const char *name, *type, *help;
    } series[] = {
        {"requests_total", "counter", "Tries sent to the backend (retries included)."},
        {"failures_total", "counter", "Tries the backend failed: connect error, reset, timeout, 502/503/504."},
        {"ejections_total", "counter", "Times a worker ejected the backend (passive outlier detection)."},
        {"ejected", "gauge", "Workers that hold the backend ejected now."},
        {"active_requests", "gauge", "Tries in flight to the backend."},
        {"latency_ewma_seconds", "gauge", "Moving average of the time to the response head (mean of the workers')."},
    };
    for (size_t j = 0; j < sizeof series / sizeof series[0]; j++) {
        OUT("# HELP gatehouse_upstream_backend_%s %s\n# TYPE gatehouse_upstream_backend_%s %s\n", series[j].name,
            series[j].help, series[j].name, series[j].type);
        for (uint32_t i = 0; i < c->nupstreams; i++)
            for (uint32_t k = 0; k < c->upstreams[i].nbackends; k++) {
                gh_backend_view_t v;
                gh_backend_view(&c->upstreams[i].backends[k], &v);
                OUT("gatehouse_upstream_backend_%s{upstream=\"%s\",backend=\"%s\"} ", series[j].name,
                    c->upstreams[i].name, c->upstreams[i].backends[k].name);
                switch (j) {
                case 0: OUT("%llu\n", (unsigned long long)v.requests); break;
                case 1: OUT("%llu\n", (unsigned long long)v.failures); break;
                case 2: OUT("%llu\n", (unsigned long long)v.ejections); break;
                case 3: OUT("%u\n", v.ejected); break;
                case 4: OUT("%llu\n", (unsigned long long)v.active); break;
                default: OUT("%.6f\n", (double)v.latency_us / 1e6); break;
                }
            }
    }
#undef OUT
    if (n >= cap) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}
