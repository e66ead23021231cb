/* upstream.c: see upstream.h. */
#include "proxy/upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "tls/tls.h"

void gh_session_upstream_event(gh_upconn_t *u); /* session.c */

static uint32_t addr_hash(const struct sockaddr *a, socklen_t len)
{
    const unsigned char *p = (const unsigned char *)a;
    uint32_t h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static gh_uppool_t *pool_of(gh_worker_t *w, const struct sockaddr *a, socklen_t len, uint64_t tag)
{
    uint32_t b = (addr_hash(a, len) ^ (uint32_t)tag ^ (uint32_t)(tag >> 32)) % GH_UPPOOL_BUCKETS;
    for (gh_uppool_t *p = w->pools[b]; p; p = p->next)
        if (p->addrlen == len && p->tls_tag == tag && !memcmp(&p->addr, a, len))
            return p;
    gh_uppool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    memcpy(&p->addr, a, len);
    p->addrlen = len;
    p->tls_tag = tag;
    p->next = w->pools[b];
    w->pools[b] = p;
    return p;
}

static void unlink_idle(gh_upconn_t *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        u->pool->idle = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->next = u->prev = NULL;
    u->pool->nidle--;
}

static void upconn_cb(gh_io_t *io, uint32_t ev)
{
    gh_upconn_t *u = (gh_upconn_t *)io;
    if (io->fd < 0)
        return;
    if (ev & (EPOLLIN | EPOLLRDHUP))
        u->readable = 1;
    if (ev & EPOLLOUT) {
        u->writable = 1;
        if (u->read_wants_write) /* TLS: the read that waited for this can go on */
            u->readable = 1, u->read_wants_write = 0;
    }
    if (ev & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
        u->hup = 1;
    if (u->req) {
        gh_session_upstream_event(u);
        return;
    }
    /* idle in the pool: the backend closed it or sent something unasked for; over
     * TLS it may be a post-handshake message (a session ticket), which is kept */
    if (u->ssl && !(ev & (EPOLLHUP | EPOLLERR)) && (ev & EPOLLIN)) {
        char byte;
        ssize_t n = gh_tls_read(u->ssl, &byte, 1);
        if (n == GH_EAGAIN && gh_tls_want(u->ssl) == GH_TLS_WANT_READ) {
            u->readable = 0;
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        unlink_idle(u);
        gh_upstream_close(u);
    }
}

static void idle_expired(gh_timer_t *t)
{
    gh_upconn_t *u = (gh_upconn_t *)((char *)t - offsetof(gh_upconn_t, timer));
    unlink_idle(u);
    gh_upstream_close(u);
}

gh_upconn_t *gh_upstream_get(gh_worker_t *w, const struct sockaddr *addr, socklen_t len, uint64_t tls_tag,
                             int allow_new, int *reused, int *err)
{
    gh_uppool_t *p = pool_of(w, addr, len, tls_tag);
    if (!p) {
        *err = GH_ENOMEM;
        return NULL;
    }
    if (p->idle) {
        gh_upconn_t *u = p->idle;
        unlink_idle(u);
        gh_timer_stop(&w->loop, &u->timer);
        *reused = 1;
        return u;
    }
    *reused = 0;
    if (!allow_new) {
        *err = GH_ELIMIT;
        return NULL;
    }
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, addr, len) < 0 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    gh_upconn_t *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        *err = GH_ENOMEM;
        return NULL;
    }
    u->io.fd = fd;
    u->io.cb = upconn_cb;
    u->w = w;
    u->pool = p;
    u->timer.cb = idle_expired;
    if (gh_loop_add(&w->loop, &u->io) < 0) {
        *err = -errno;
        close(fd);
        free(u);
        return NULL;
    }
    return u;
}

void gh_upstream_release(gh_upconn_t *u, uint32_t keepalive, uint32_t idle_ms)
{
    gh_worker_t *w = u->w;
    if (u->h2st) { /* the stream ended; its connection stays for others */
        gh_h2up_release(u);
        return;
    }
    u->req = NULL;
    /* readable still set means unread bytes may wait: they would be taken for the
     * next request's response, so such a connection is never reused */
    if (u->hup || u->readable || keepalive == 0 || u->pool->nidle >= keepalive || w->draining) {
        gh_upstream_close(u);
        return;
    }
    u->next = u->pool->idle;
    u->prev = NULL;
    if (u->next)
        u->next->prev = u;
    u->pool->idle = u;
    u->pool->nidle++;
    gh_timer_set(&w->loop, &u->timer, idle_ms ? idle_ms : 60000);
}

void gh_upstream_close(gh_upconn_t *u)
{
    gh_worker_t *w = u->w;
    if (u->h2st) {
        gh_h2up_release(u);
        return;
    }
    gh_timer_stop(&w->loop, &u->timer);
    if (u->ssl) {
        SSL_free(u->ssl);
        u->ssl = NULL;
    }
    gh_loop_close_fd(&w->loop, &u->io);
    u->req = NULL;
    if (u->live) {
        __atomic_sub_fetch(u->live, 1, __ATOMIC_RELAXED);
        u->live = NULL;
    }
    gh_loop_free_later(&w->loop, u);
}

void gh_upstream_close_all(gh_worker_t *w)
{
    gh_h2up_close_all(w);
    for (int b = 0; b < GH_UPPOOL_BUCKETS; b++) {
        gh_uppool_t *p = w->pools[b];
        while (p) {
            while (p->idle) {
                gh_upconn_t *u = p->idle;
                unlink_idle(u);
                gh_upstream_close(u);
            }
            gh_uppool_t *n = p->next;
            free(p);
            p = n;
        }
        w->pools[b] = NULL;
    }
}
