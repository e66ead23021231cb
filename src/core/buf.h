/* buf.h: I/O buffers and the per-thread pool they come from.
 *
 * A buffer is a window [rd, wr) over base[0..cap). Connections hold buffers only
 * while bytes are in flight and give them back when empty, so an idle keep-alive
 * connection costs no buffer memory. Pool buffers are GH_BUF_SIZE; a bigger one
 * (a request head over it, up to the configured limit) is malloc'd and freed.
 * Owned by one thread; no locking. */
#ifndef GH_CORE_BUF_H
#define GH_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define GH_BUF_SIZE 16384

typedef struct {
    char *base; /* NULL when the buffer holds nothing */
    uint32_t rd, wr, cap;
} gh_buf_t;

typedef struct {
    void *free;     /* singly linked through the first word of each buffer */
    uint32_t nfree; /* kept at most max_free */
    uint32_t max_free;
} gh_bufpool_t;

/* Give b a GH_BUF_SIZE buffer if it has none. 0 or GH_ENOMEM. */
int gh_buf_get(gh_bufpool_t *p, gh_buf_t *b);
/* Grow b's capacity to at least cap, keeping its bytes at the front. */
int gh_buf_grow(gh_bufpool_t *p, gh_buf_t *b, uint32_t cap);
/* Give b's memory back; b is then empty with base NULL. */
void gh_buf_put(gh_bufpool_t *p, gh_buf_t *b);
/* Move the unread bytes to the front. */
void gh_buf_compact(gh_buf_t *b);
static inline uint32_t gh_buf_len(const gh_buf_t *b) { return b->wr - b->rd; }
static inline uint32_t gh_buf_room(const gh_buf_t *b) { return b->cap - b->wr; }
void gh_bufpool_clear(gh_bufpool_t *p);

/* A lazily malloc'd scratch block of this thread, freed when the thread ends (a
 * pthread key's destructor): handlers' per-thread arenas. Declare the slot static
 * and zeroed; size must be the same on every call for one slot. NULL on OOM. */
typedef struct {
    unsigned ready;
    unsigned key; /* pthread_key_t */
} gh_tlsbuf_t;
void *gh_tlsbuf(gh_tlsbuf_t *slot, size_t size);

#endif
