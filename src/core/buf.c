/* buf.c: see buf.h. */
#include "core/buf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

int gh_buf_get(gh_bufpool_t *p, gh_buf_t *b)
{
    if (b->base)
        return 0;
    if (p->free) {
        b->base = p->free;
        p->free = *(void **)p->free;
        p->nfree--;
    } else if (!(b->base = malloc(GH_BUF_SIZE))) {
        return GH_ENOMEM;
    }
    b->rd = b->wr = 0;
    b->cap = GH_BUF_SIZE;
    return 0;
}

int gh_buf_grow(gh_bufpool_t *p, gh_buf_t *b, uint32_t cap)
{
    if (!b->base)
        return gh_buf_get(p, b) ? GH_ENOMEM : (cap <= GH_BUF_SIZE ? 0 : gh_buf_grow(p, b, cap));
    if (b->cap >= cap)
        return 0;
    char *n = malloc(cap);
    if (!n)
        return GH_ENOMEM;
    uint32_t len = gh_buf_len(b);
    memcpy(n, b->base + b->rd, len);
    gh_buf_put(p, b);
    b->base = n;
    b->rd = 0;
    b->wr = len;
    b->cap = cap;
    return 0;
}

void gh_buf_put(gh_bufpool_t *p, gh_buf_t *b)
{
    if (!b->base)
        return;
    if (b->cap == GH_BUF_SIZE && p->nfree < p->max_free) {
        *(void **)b->base = p->free;
        p->free = b->base;
        p->nfree++;
    } else {
        free(b->base);
    }
    b->base = NULL;
    b->rd = b->wr = b->cap = 0;
}

void gh_buf_compact(gh_buf_t *b)
{
    if (b->rd == 0)
        return;
    uint32_t len = gh_buf_len(b);
    if (len)
        memmove(b->base, b->base + b->rd, len);
    b->rd = 0;
    b->wr = len;
}

void gh_bufpool_clear(gh_bufpool_t *p)
{
    while (p->free) {
        void *n = *(void **)p->free;
        free(p->free);
        p->free = n;
    }
    p->nfree = 0;
}

void *gh_tlsbuf(gh_tlsbuf_t *slot, size_t size)
{
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    _Static_assert(sizeof(pthread_key_t) <= sizeof slot->key, "pthread_key_t fits");
    if (!__atomic_load_n(&slot->ready, __ATOMIC_ACQUIRE)) {
        pthread_mutex_lock(&once);
        if (!slot->ready) {
            pthread_key_t k;
            if (pthread_key_create(&k, free) != 0) {
                pthread_mutex_unlock(&once);
                return NULL;
            }
            slot->key = (unsigned)k;
            __atomic_store_n(&slot->ready, 1, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&once);
    }
    void *p = pthread_getspecific((pthread_key_t)slot->key);
    if (!p && (p = malloc(size)) && pthread_setspecific((pthread_key_t)slot->key, p) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}
