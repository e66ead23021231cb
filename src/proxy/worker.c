/* worker.c: worker threads, listeners, configuration generations, drain (see worker.h). */
#include "proxy/worker.h"
#include "edge/lua.h"
#include "obs/analytics.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/lb.h"
#include "proxy/session.h"
#include "proxy/upstream.h"

static gh_worker_t *workers;
static uint32_t nthreads; /* workers + the admin thread, if any */
static int draining;

int gh_workers_draining(void) { return __atomic_load_n(&draining, __ATOMIC_ACQUIRE); }

uint64_t gh_worker_rand(gh_worker_t *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return w->rng[1] + s0;
}

const char *gh_worker_date(gh_worker_t *w)
{
    time_t now = time(NULL);
    if ((uint64_t)now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_sec = (uint64_t)now;
    }
    return w->date;
}

static gh_gen_t *gen_new(gh_conf_t *c)
{
    gh_gen_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->up = calloc(c->nupstreams ? c->nupstreams : 1, sizeof(*g->up));
    if (!g->up) {
        free(g);
        return NULL;
    }
    g->conf = c; /* takes the caller's reference */
    return g;
}

static void gen_free(gh_gen_t *g)
{
    for (uint32_t i = 0; i < g->conf->nupstreams; i++) {
        gh_upstate_t *u = &g->up[i];
        gh_lb_free(u->lb);
        free(u->ok);
        free(u->scratch);
    }
    for (uint32_t i = 0; g->lua && i < g->conf->ntenants; i++)
        gh_lua_free(g->lua[i]);
    free(g->lua);
    gh_conf_unref(g->conf);
    free(g->up);
    free(g);
}

void gh_gen_release(gh_worker_t *w, gh_gen_t *g)
{
    if (--g->nreq || g == w->gen)
        return;
    for (gh_gen_t **p = &w->retired; *p; p = &(*p)->next)
        if (*p == g) {
            *p = g->next;
            break;
        }
    gen_free(g);
}

static void switch_conf(gh_worker_t *w, gh_conf_t *c)
{
    gh_gen_t *g = gen_new(c);
    if (!g) {
        gh_log(GH_LOG_ERROR, "worker %u: out of memory switching configuration", w->id);
        gh_conf_unref(c);
        return;
    }
    gh_gen_t *old = w->gen;
    w->gen = g;
    if (!old)
        return;
    if (old->nreq == 0) {
        gen_free(old);
    } else {
        old->next = w->retired;
        w->retired = old;
    }
}

static void close_listeners(gh_worker_t *w)
{
    for (uint32_t i = 0; i < w->nlisteners; i++) {
        gh_listener_t *l = &w->listeners[i];
        gh_timer_stop(&w->loop, &l->paused);
        if (l->io.fd >= 0) {
            gh_loop_del(&w->loop, &l->io);
            close(l->io.fd);
            l->io.fd = -1;
        }
    }
}

static void run_tasks(gh_worker_t *w);

static void notify_cb(gh_io_t *io, uint32_t ev)
{
    gh_worker_t *w = (gh_worker_t *)((char *)io - offsetof(gh_worker_t, notify));
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    (void)n;
    gh_conf_t *c = __atomic_exchange_n(&w->mailbox, NULL, __ATOMIC_ACQ_REL);
    if (c) {
        switch_conf(w, c);
        if (w->streams) /* streamed answers (the flagd EventStream) follow configuration changes */
            gh_session_streams_event(w, GH_STREAM_CONF);
    }
    if (__atomic_exchange_n(&w->rotate, 0, __ATOMIC_ACQ_REL))
        gh_session_rotate(w);
    if (__atomic_exchange_n(&w->cache_wake, 0, __ATOMIC_ACQ_REL))
        gh_session_cache_wake(w);
    if (__atomic_load_n(&w->tasks, __ATOMIC_ACQUIRE))
        run_tasks(w);
    if (gh_workers_draining() && !w->draining) {
        w->draining = 1;
        close_listeners(w);
        gh_session_drain(w);
    }
}

static void accept_cb(gh_io_t *io, uint32_t ev)
{
    gh_listener_t *l = (gh_listener_t *)io;
    gh_worker_t *w = l->w;
    /* One connection per readiness (nginx's default): the listener is level-triggered, so
     * the next loop turn takes the next one, and a lone arrival costs no EAGAIN accept. */
    {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* the listener stays readable: stop watching it for a while instead of spinning */
                static __thread uint64_t last;
                if (gh_loop_now(&w->loop) - last > 1000) {
                    gh_log(GH_LOG_ERROR, "accept: %s (raise the open files limit)", strerror(errno));
                    last = gh_loop_now(&w->loop);
                }
                gh_loop_del(&w->loop, io);
                gh_timer_set(&w->loop, &l->paused, 100);
            }
            return;
        }
        gh_session_accept(w, l->conf, fd, (struct sockaddr *)&ss, len);
    }
}

static void accept_resume(gh_timer_t *t)
{
    gh_listener_t *l = (gh_listener_t *)((char *)t - offsetof(gh_listener_t, paused));
    if (l->io.fd >= 0 && gh_loop_add_reader(&l->w->loop, &l->io) < 0)
        gh_log(GH_LOG_ERROR, "listener %s: cannot resume accepting", l->conf->name);
}

static int open_listener(const gh_conf_listener_t *lc)
{
    int fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (lc->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) < 0 ||
        listen(fd, (int)(lc->backlog ? lc->backlog : 4096)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static __thread gh_worker_t *self;

gh_worker_t *gh_worker_self(void) { return self; }

static void *worker_main(void *arg)
{
    gh_worker_t *w = arg;
    self = w;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!(w->draining && w->nconns == 0))
        gh_loop_run_once(&w->loop, 1000);
    gh_upstream_close_all(w);
    gh_loop_run_once(&w->loop, 0); /* frees what the closes deferred */
    gh_analytics_free(w);
    __atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int worker_init(gh_worker_t *w, uint32_t id, int is_admin, gh_conf_t *c)
{
    w->id = id;
    w->is_admin = is_admin;
    w->bufs.max_free = 1024;
    w->stats = gh_metrics_thread(id);
    if (gh_loop_init(&w->loop) < 0)
        return GH_ENOMEM;
    if (getrandom(w->rng, sizeof w->rng, 0) != sizeof w->rng || (!w->rng[0] && !w->rng[1]))
        w->rng[0] = (uint64_t)time(NULL) ^ ((uint64_t)id << 32), w->rng[1] = 0x9E3779B97F4A7C15ull;
    if (!(w->hdrs = calloc(GH_MAX_HEADERS, sizeof(*w->hdrs))))
        return GH_ENOMEM;
    w->notify.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->notify.cb = notify_cb;
    if (w->notify.fd < 0 || gh_loop_add_reader(&w->loop, &w->notify) < 0)
        return -errno;
    gh_conf_ref(c);
    if (!(w->gen = gen_new(c))) {
        gh_conf_unref(c);
        return GH_ENOMEM;
    }
    w->listeners = calloc(c->nlisteners ? c->nlisteners : 1, sizeof(*w->listeners));
    if (!w->listeners)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < c->nlisteners; i++) {
        const gh_conf_listener_t *lc = &c->listeners[i];
        if ((lc->role == GH_LISTEN_ADMIN) != is_admin)
            continue;
        int fd = open_listener(lc);
        if (fd < 0) {
            gh_log(GH_LOG_ERROR, "listener %s at %s: %s", lc->name, lc->listen, gh_err_msg(fd));
            return GH_EIO;
        }
        gh_listener_t *l = &w->listeners[w->nlisteners++];
        l->io.fd = fd;
        l->io.cb = accept_cb;
        l->paused.cb = accept_resume;
        l->w = w;
        l->conf = lc;
        if (gh_loop_add_reader(&w->loop, &l->io) < 0)
            return -errno;
    }
    return 0;
}

/* SO_REUSEPORT would let us share a port another process listens on (and take half
 * its connections): bind each address once without it first, so a port in use is
 * an error at start, as it would be for nginx. */
static int port_free(const gh_conf_listener_t *lc)
{
    int fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lc->addr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

int gh_workers_start(gh_conf_t *c)
{
    for (uint32_t i = 0; i < c->nlisteners; i++) {
        int rc = port_free(&c->listeners[i]);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "listener %s at %s: %s", c->listeners[i].name, c->listeners[i].listen, gh_err_msg(rc));
            return GH_EIO;
        }
    }
    int has_admin = 0;
    for (uint32_t i = 0; i < c->nlisteners; i++)
        has_admin |= c->listeners[i].role == GH_LISTEN_ADMIN;
    nthreads = c->workers + (uint32_t)has_admin;
    workers = calloc(nthreads, sizeof(*workers));
    if (!workers)
        return GH_ENOMEM;
    /* open every listener before starting any thread: a busy port fails the start cleanly */
    for (uint32_t i = 0; i < nthreads; i++) {
        int rc = worker_init(&workers[i], i, has_admin && i == nthreads - 1, c);
        if (rc < 0)
            return rc;
    }
    for (uint32_t i = 0; i < nthreads; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            return GH_ENOMEM;
    return 0;
}

static void poke(gh_worker_t *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->notify.fd, &one, sizeof one);
    (void)n;
}

void gh_worker_post(uint32_t id, gh_wtask_t *t)
{
    if (id >= nthreads) { /* no such worker: run it here, on no worker's thread, rather than lose it */
        t->fn(t);
        return;
    }
    gh_worker_t *w = &workers[id];
    gh_wtask_t *head = __atomic_load_n(&w->tasks, __ATOMIC_RELAXED);
    do
        t->next = head;
    while (!__atomic_compare_exchange_n(&w->tasks, &head, t, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    poke(w);
}

static void run_tasks(gh_worker_t *w)
{
    gh_wtask_t *t = __atomic_exchange_n(&w->tasks, NULL, __ATOMIC_ACQUIRE), *rev = NULL;
    while (t) { /* pushed last first: back to posting order */
        gh_wtask_t *n = t->next;
        t->next = rev;
        rev = t;
        t = n;
    }
    while (rev) {
        gh_wtask_t *n = rev->next;
        rev->fn(rev); /* may free rev */
        rev = n;
    }
}

void gh_worker_cache_poke(uint32_t id)
{
    if (id >= nthreads)
        return;
    __atomic_store_n(&workers[id].cache_wake, 1, __ATOMIC_RELEASE);
    poke(&workers[id]);
}

void gh_workers_publish(gh_conf_t *c, int rotate)
{
    for (uint32_t i = 0; i < nthreads; i++) {
        if (rotate)
            __atomic_store_n(&workers[i].rotate, 1, __ATOMIC_RELEASE);
        gh_conf_ref(c);
        gh_conf_t *old = __atomic_exchange_n(&workers[i].mailbox, c, __ATOMIC_ACQ_REL);
        if (old)
            gh_conf_unref(old);
        poke(&workers[i]);
    }
}

void gh_workers_drain(uint32_t timeout_ms)
{
    __atomic_store_n(&draining, 1, __ATOMIC_RELEASE);
    for (uint32_t i = 0; i < nthreads; i++)
        poke(&workers[i]);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int all = 1;
    for (uint32_t i = 0; i < nthreads; i++)
        if (pthread_timedjoin_np(workers[i].thread, NULL, &deadline) != 0)
            all = 0;
    if (!all)
        gh_log(GH_LOG_WARN, "drain timeout reached with requests still in flight");
}
