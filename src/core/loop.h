/* loop.h: the per-thread event loop: epoll (edge-triggered), a timer wheel, the clock.
 *
 * Each worker thread owns one loop; nothing here is shared between threads. Every
 * fd is registered once for IN|OUT|RDHUP edge-triggered, so the request path makes
 * no epoll_ctl calls: handlers keep "readable/writable" flags and work until EAGAIN.
 * Timers live in a hashed wheel of 1 ms ticks (O(1) arm/disarm, the common case
 * being an idle timeout re-armed on every read). Time comes from the loop
 * (gh_loop_now), refreshed once per wake-up, so tests and modules can reason about
 * it without syscalls.
 *
 * Called by workers (src/core/worker.c) and everything that owns an fd or a timer. */
#ifndef GH_CORE_LOOP_H
#define GH_CORE_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct gh_loop gh_loop_t;
typedef struct gh_io gh_io_t;
typedef struct gh_timer gh_timer_t;

/* An fd in the loop; embed it in the object that owns the fd. */
struct gh_io {
    int fd;
    void (*cb)(gh_io_t *io, uint32_t events); /* EPOLLIN/OUT/RDHUP/HUP/ERR */
};

/* Work to run on the next turn of the loop, after the events of this one (used to
 * yield: a connection that could go on moving bytes lets the others have a turn). */
typedef struct gh_task {
    struct gh_task *next, *prev; /* NULL prev when not queued */
    void (*cb)(struct gh_task *t);
} gh_task_t;

struct gh_timer {
    gh_timer_t *next, *prev; /* NULL prev when not armed */
    uint64_t expire;         /* ms on the loop clock */
    void (*cb)(gh_timer_t *t);
};

#define GH_WHEEL_SLOTS 4096 /* power of two; timers further out wait for their round */

struct gh_loop {
    int epfd;
    uint64_t now;      /* ms, CLOCK_MONOTONIC */
    uint64_t (*clock)(void); /* gh_clock_ms; tests put a stepped clock here */
    uint64_t wheel_at; /* next tick to process */
    uint32_t ntimers;
    uint64_t hint;     /* no armed timer expires before this (a lower bound, kept by set) */
    int stop;
    gh_task_t tasks; /* list head of queued tasks */
    void **dead; /* objects freed after the current batch of events (gh_loop_free_later) */
    uint32_t ndead, capdead;
    gh_timer_t wheel[GH_WHEEL_SLOTS]; /* list heads */
};

int gh_loop_init(gh_loop_t *l);
void gh_loop_close(gh_loop_t *l);
/* Register fd for IN|OUT|RDHUP, edge-triggered. */
int gh_loop_add(gh_loop_t *l, gh_io_t *io);
/* Register a level-triggered reader (listeners, eventfds). */
int gh_loop_add_reader(gh_loop_t *l, gh_io_t *io);
void gh_loop_del(gh_loop_t *l, gh_io_t *io);
/* Close io->fd (set to -1): closing the last descriptor of a socket removes it from
 * the epoll set, so no EPOLL_CTL_DEL is needed (one syscall less per connection).
 * Only for descriptors never dup'd; an event of this batch still pending for io
 * sees fd == -1 (the io's memory must be freed with gh_loop_free_later). */
void gh_loop_close_fd(gh_loop_t *l, gh_io_t *io);
/* Wait for events up to max_wait_ms (and the next timer), dispatch them and fire timers. */
void gh_loop_run_once(gh_loop_t *l, int max_wait_ms);
static inline uint64_t gh_loop_now(const gh_loop_t *l) { return l->now; }
uint64_t gh_clock_ms(void);

/* free(p) once the current batch of events is dispatched: an fd's owner that is closed
 * by one event may still be named by a later event of the same batch. The owner sets
 * its io.fd to -1 when closing, and its callback ignores events when fd < 0. */
void gh_loop_free_later(gh_loop_t *l, void *p);

/* Queue t to run on the next turn (no-op when already queued); cancel with gh_task_cancel. */
void gh_task_post(gh_loop_t *l, gh_task_t *t);
void gh_task_cancel(gh_task_t *t);

/* Arm (or re-arm) t to fire after ms milliseconds. */
void gh_timer_set(gh_loop_t *l, gh_timer_t *t, uint64_t ms);
void gh_timer_stop(gh_loop_t *l, gh_timer_t *t);
static inline int gh_timer_armed(const gh_timer_t *t) { return t->prev != NULL; }

#endif
