/* loop.c: epoll + timer wheel (see loop.h). */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

uint64_t gh_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int gh_loop_init(gh_loop_t *l)
{
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    l->clock = gh_clock_ms;
    l->now = l->clock();
    l->wheel_at = l->now;
    l->ntimers = 0;
    l->stop = 0;
    l->dead = NULL;
    l->ndead = l->capdead = 0;
    l->tasks.next = l->tasks.prev = &l->tasks;
    for (int i = 0; i < GH_WHEEL_SLOTS; i++)
        l->wheel[i].next = l->wheel[i].prev = &l->wheel[i];
    return 0;
}

void gh_loop_free_later(gh_loop_t *l, void *p)
{
    if (l->ndead == l->capdead) {
        uint32_t cap = l->capdead ? l->capdead * 2 : 64;
        void **d = realloc(l->dead, cap * sizeof(*d));
        if (!d) { /* cannot defer: leaking beats a use-after-free */
            return;
        }
        l->dead = d;
        l->capdead = cap;
    }
    l->dead[l->ndead++] = p;
}

static void free_dead(gh_loop_t *l)
{
    for (uint32_t i = 0; i < l->ndead; i++)
        free(l->dead[i]);
    l->ndead = 0;
}

void gh_loop_close(gh_loop_t *l)
{
    free_dead(l);
    free(l->dead);
    l->dead = NULL;
    l->capdead = 0;
    if (l->epfd >= 0)
        close(l->epfd);
    l->epfd = -1;
}

int gh_loop_add(gh_loop_t *l, gh_io_t *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

int gh_loop_add_reader(gh_loop_t *l, gh_io_t *io)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0 ? -errno : 0;
}

void gh_loop_del(gh_loop_t *l, gh_io_t *io)
{
    if (io->fd >= 0)
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

void gh_loop_close_fd(gh_loop_t *l, gh_io_t *io)
{
    (void)l;
    if (io->fd >= 0) {
        close(io->fd);
        io->fd = -1;
    }
}

void gh_task_post(gh_loop_t *l, gh_task_t *t)
{
    if (t->prev)
        return;
    t->prev = l->tasks.prev;
    t->next = &l->tasks;
    l->tasks.prev->next = t;
    l->tasks.prev = t;
}

void gh_task_cancel(gh_task_t *t)
{
    if (!t->prev)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

/* Run the tasks queued before this call; those they queue wait for the next turn. */
static void run_tasks(gh_loop_t *l)
{
    if (l->tasks.next == &l->tasks)
        return;
    gh_task_t now = {.next = l->tasks.next, .prev = l->tasks.prev};
    now.next->prev = &now;
    now.prev->next = &now;
    l->tasks.next = l->tasks.prev = &l->tasks;
    while (now.next != &now) {
        gh_task_t *t = now.next;
        gh_task_cancel(t);
        t->cb(t);
    }
}

void gh_timer_stop(gh_loop_t *l, gh_timer_t *t)
{
    if (!t->prev)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
    l->ntimers--;
}

void gh_timer_set(gh_loop_t *l, gh_timer_t *t, uint64_t ms)
{
    gh_timer_stop(l, t);
    t->expire = l->now + ms;
    if (t->expire < l->hint)
        l->hint = t->expire;
    /* never file a timer behind the wheel's cursor: it would wait a whole round */
    uint64_t tick = t->expire < l->wheel_at ? l->wheel_at : t->expire;
    gh_timer_t *head = &l->wheel[tick & (GH_WHEEL_SLOTS - 1)];
    t->next = head->next;
    t->prev = head;
    head->next->prev = t;
    head->next = t;
    l->ntimers++;
}

static void fire_timers(gh_loop_t *l)
{
    uint64_t end = l->now;
    if (end < l->wheel_at) /* a second turn within the same millisecond: nothing new is due (and
                            * end - wheel_at would wrap and rescan the whole wheel) */
        return;
    if (end - l->wheel_at >= GH_WHEEL_SLOTS) /* slept longer than a round: visit each slot once */
        l->wheel_at = end - GH_WHEEL_SLOTS + 1;
    while (l->wheel_at <= end) {
        gh_timer_t *head = &l->wheel[l->wheel_at & (GH_WHEEL_SLOTS - 1)];
        /* detach the due ones first: callbacks may re-arm timers into this slot */
        gh_timer_t due = {.next = &due, .prev = &due};
        for (gh_timer_t *t = head->next, *n; t != head; t = n) {
            n = t->next;
            if (t->expire <= end) {
                t->prev->next = t->next;
                t->next->prev = t->prev;
                t->next = due.next;
                t->prev = &due;
                due.next->prev = t;
                due.next = t;
            }
        }
        /* move the cursor first: a callback re-arming for "now" lands on the next tick,
         * not behind the cursor where it would wait a whole round */
        l->wheel_at++;
        while (due.next != &due) {
            gh_timer_t *t = due.next;
            gh_timer_stop(l, t);
            t->cb(t);
        }
    }
}

/* ms until the next armed timer (at most max_wait). The wheel is scanned only when
 * the hint has passed: under load the loop turns thousands of times a second while
 * the nearest timer is seconds away. */
static int next_timeout(gh_loop_t *l, int max_wait)
{
    if (l->ntimers == 0)
        return max_wait;
    uint64_t limit = max_wait < 0 ? GH_WHEEL_SLOTS : (uint64_t)max_wait;
    if (l->hint <= l->now) {
        uint64_t d = 0;
        for (; d < GH_WHEEL_SLOTS; d++) {
            gh_timer_t *head = &l->wheel[(l->wheel_at + d) & (GH_WHEEL_SLOTS - 1)];
            if (head->next != head)
                break;
        }
        l->hint = l->wheel_at + d; /* the first non-empty slot, or a round ahead */
    }
    uint64_t wait = l->hint > l->now ? l->hint - l->now : 0;
    return (int)(wait < limit ? wait : limit);
}

void gh_loop_run_once(gh_loop_t *l, int max_wait_ms)
{
    struct epoll_event evs[256];
    int timeout = l->tasks.next != &l->tasks ? 0 : next_timeout(l, max_wait_ms);
    int n = epoll_wait(l->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
    l->now = l->clock();
    for (int i = 0; i < n; i++) {
        gh_io_t *io = evs[i].data.ptr;
        io->cb(io, evs[i].events);
    }
    run_tasks(l);
    free_dead(l);
    fire_timers(l);
    free_dead(l);
}
