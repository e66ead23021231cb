/* topk.c: see topk.h.
 *
 * Struct of arrays: the add path scans the k hashes and counts (16 bytes per entry)
 * and touches a label only on a hash match. The hash (FNV-1a) is a filter, not a
 * defence: a collision costs one extra memcmp. The merge sorts a snapshot of all
 * entries by label to sum each label's counts, then sorts the sums by count. */
#include "protect/topk.h"

#include <pthread.h>
#include <stdlib.h>

struct gh_topk {
    pthread_mutex_t mu;
    uint32_t k, used;
    uint64_t *hash, *count, *err;
    char (*label)[GH_TOPK_LABEL_MAX + 1];
    uint8_t *len;
};

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Length of label once cut to GH_TOPK_LABEL_MAX bytes without splitting a UTF-8
 * sequence. */
static size_t cut_len(gh_str_t s)
{
    if (s.n <= GH_TOPK_LABEL_MAX)
        return s.n;
    size_t n = GH_TOPK_LABEL_MAX;
    /* s.p[n] is the first byte left out: back off while it continues a sequence. */
    while (n > 0 && ((uint8_t)s.p[n] & 0xc0) == 0x80 && GH_TOPK_LABEL_MAX - n < 3)
        n--;
    return n;
}

gh_topk_t *gh_topk_new(uint32_t k)
{
    if (k < 1 || k > GH_TOPK_K_MAX)
        return NULL;
    size_t sz = sizeof(gh_topk_t) + (size_t)k * (3 * sizeof(uint64_t) + GH_TOPK_LABEL_MAX + 1 + 1);
    gh_topk_t *t = calloc(1, sz);
    if (!t)
        return NULL;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->k = k;
    uint8_t *p = (uint8_t *)(t + 1);
    t->hash = (uint64_t *)p;
    t->count = t->hash + k;
    t->err = t->count + k;
    t->label = (char (*)[GH_TOPK_LABEL_MAX + 1])(t->err + k);
    t->len = (uint8_t *)(t->label + k);
    return t;
}

void gh_topk_free(gh_topk_t *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void gh_topk_add(gh_topk_t *t, gh_str_t label, uint64_t inc)
{
    size_t n = cut_len(label);
    uint64_t h = fnv1a(label.p, n);
    pthread_mutex_lock(&t->mu);
    uint32_t min = 0;
    for (uint32_t i = 0; i < t->used; i++) {
        if (t->hash[i] == h && t->len[i] == n && (n == 0 || memcmp(t->label[i], label.p, n) == 0)) {
            t->count[i] += inc;
            pthread_mutex_unlock(&t->mu);
            return;
        }
        if (t->count[i] < t->count[min])
            min = i;
    }
    uint32_t i;
    if (t->used < t->k) {
        i = t->used++;
        t->err[i] = 0;
        t->count[i] = inc;
    } else {
        i = min;
        t->err[i] = t->count[i];
        t->count[i] += inc;
    }
    t->hash[i] = h;
    t->len[i] = (uint8_t)n;
    if (n)
        memcpy(t->label[i], label.p, n);
    t->label[i][n] = '\0';
    pthread_mutex_unlock(&t->mu);
}

void gh_topk_reset(gh_topk_t *t)
{
    pthread_mutex_lock(&t->mu);
    t->used = 0;
    pthread_mutex_unlock(&t->mu);
}

typedef struct {
    gh_topk_item_t it;
    uint64_t hash;
    uint64_t floor; /* the smallest count of the table it came from, 0 if not full */
} snap_t;

static int by_label(const void *a, const void *b)
{
    const snap_t *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    if (x->it.len != y->it.len)
        return x->it.len < y->it.len ? -1 : 1;
    return memcmp(x->it.label, y->it.label, x->it.len);
}

static int by_count(const void *a, const void *b)
{
    const gh_topk_item_t *x = &((const snap_t *)a)->it, *y = &((const snap_t *)b)->it;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    uint64_t gx = x->count - x->error, gy = y->count - y->error;
    if (gx != gy)
        return gx > gy ? -1 : 1;
    size_t n = GH_MIN(x->len, y->len);
    int c = memcmp(x->label, y->label, n);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int same_label(const snap_t *x, const snap_t *y)
{
    return x->hash == y->hash && x->it.len == y->it.len && memcmp(x->it.label, y->it.label, x->it.len) == 0;
}

int gh_topk_merge(gh_topk_t *const *tabs, size_t n, gh_topk_item_t *out, size_t max)
{
    size_t cap = 0;
    for (size_t j = 0; j < n; j++)
        cap += tabs[j] ? tabs[j]->k : 0;
    snap_t *s = cap ? malloc(cap * sizeof(*s)) : NULL;
    if (cap && !s)
        return GH_ENOMEM;
    size_t m = 0;
    uint64_t floors = 0;
    for (size_t j = 0; j < n; j++) {
        gh_topk_t *t = tabs[j];
        if (!t)
            continue;
        pthread_mutex_lock(&t->mu);
        uint64_t floor = 0;
        if (t->used == t->k) {
            floor = UINT64_MAX;
            for (uint32_t i = 0; i < t->used; i++)
                floor = GH_MIN(floor, t->count[i]);
        }
        for (uint32_t i = 0; i < t->used; i++, m++) {
            s[m].hash = t->hash[i];
            s[m].floor = floor;
            s[m].it.count = t->count[i];
            s[m].it.error = t->err[i];
            s[m].it.len = t->len[i];
            memcpy(s[m].it.label, t->label[i], (size_t)t->len[i] + 1);
        }
        pthread_mutex_unlock(&t->mu);
        floors += floor;
    }
    if (m)
        qsort(s, m, sizeof(*s), by_label);
    /* Collapse each run of one label into its first element. */
    size_t u = 0;
    for (size_t a = 0; a < m;) {
        size_t b = a + 1;
        uint64_t count = s[a].it.count, err = s[a].it.error, present = s[a].floor;
        for (; b < m && same_label(&s[a], &s[b]); b++) {
            count += s[b].it.count;
            err += s[b].it.error;
            present += s[b].floor;
        }
        s[u] = s[a];
        s[u].it.count = count + (floors - present);
        s[u].it.error = err + (floors - present);
        u++;
        a = b;
    }
    if (u)
        qsort(s, u, sizeof(*s), by_count);
    size_t w = GH_MIN(u, max);
    for (size_t i = 0; i < w; i++)
        out[i] = s[i].it;
    free(s);
    return (int)w;
}
