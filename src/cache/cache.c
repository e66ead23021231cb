/* cache.c: the shared response store (see cache.h). */
#include "cache/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>

#include "protect/shtab.h"

#define GHOST_SLOTS 16384 /* per shard: remembered key hashes of objects evicted unused */
#define TOMB_SLOTS 65536  /* invalidation tombstones, by URL hash */
#define OBJ_OVERHEAD 64   /* allocator overhead counted per object */

typedef struct {
    gh_cobj_t *head, *tail;
    uint64_t bytes;
} queue_t;

struct gh_cfetch {
    uint64_t khash;
    char *key;
    size_t key_len;
    uint32_t refs;       /* under the shard lock */
    uint8_t done;        /* atomic */
    uint64_t wake[4];    /* workers waiting (bit per worker id < 256) */
    struct gh_cfetch *next;
};

typedef struct {
    pthread_mutex_t mu;
    gh_cobj_t **buckets;
    uint32_t mask, n;
    queue_t small, main;
    uint64_t ghost[GHOST_SLOTS];
    struct gh_cfetch *fetches;
    uint64_t evictions, purged, inserts;
} shard_t;

static struct {
    int ready;
    uint64_t cap, max_object;
    uint64_t used;  /* atomic */
    uint64_t small; /* atomic: bytes in the small queues (S3-FIFO's S, 10% of the cap) */
    uint64_t nobj;  /* atomic */
    uint64_t seq;   /* atomic */
    uint64_t k0, k1;
    shard_t shards[GH_CACHE_SHARDS];
    uint64_t tomb[TOMB_SLOTS]; /* atomic: seq of the last invalidation of the slot */
    void (*waker)(uint32_t);
} C;

/* ---- objects ---- */

uint64_t gh_cache_hash(const void *p, size_t n) { return gh_siphash24(C.k0, C.k1, p, n); }

uint64_t gh_cache_seq(void) { return __atomic_add_fetch(&C.seq, 1, __ATOMIC_RELAXED); }

static gh_str_t find_value(gh_str_t head, const char *name, size_t nlen)
{
    const char *p = head.p, *end = head.p + head.n;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol)
            break;
        if ((size_t)(eol - p) > nlen + 1 && p[nlen] == ':' && !strncasecmp(p, name, nlen)) {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            return gh_str(v, (size_t)(eol - v));
        }
        p = eol + 2;
    }
    return gh_str("", 0);
}

gh_cobj_t *gh_cobj_new(const gh_cobj_parts_t *p)
{
    size_t extra = p->key.n + p->tenant.n + p->host.n + p->path.n + p->vary.n + p->vvals.n + p->tags.n + p->head.n;
    gh_cobj_t *o = calloc(1, sizeof(*o) + extra + 1);
    if (!o)
        return NULL;
    char *q = (char *)(o + 1);
#define PLACE(field, src)                                 \
    do {                                                  \
        if ((src).n)                                      \
            memcpy(q, (src).p, (src).n);                  \
        o->field = q;                                     \
        o->field##_len = (uint32_t)(src).n;               \
        q += (src).n;                                     \
    } while (0)
    PLACE(key, p->key);
    PLACE(tenant, p->tenant);
    PLACE(host, p->host);
    PLACE(path, p->path);
    PLACE(vary, p->vary);
    PLACE(vvals, p->vvals);
    PLACE(tags, p->tags);
    PLACE(head, p->head);
#undef PLACE
    for (uint32_t i = 0; i < o->host_len; i++) /* lowercase (the copy) */
        if (o->host[i] >= 'A' && o->host[i] <= 'Z')
            ((char *)o->host)[i] = (char)(o->host[i] + 32);
    o->refs = 1;
    o->size = sizeof(*o) + extra + OBJ_OVERHEAD;
    o->etag = find_value(gh_str(o->head, o->head_len), "etag", 4);
    o->last_modified = find_value(gh_str(o->head, o->head_len), "last-modified", 13);
    return o;
}

int gh_cobj_reserve(gh_cobj_t *o, uint64_t n)
{
    if (n > C.max_object)
        return GH_ELIMIT;
    if (n <= o->body_cap)
        return 0;
    char *b = realloc(o->body, n ? n : 1);
    if (!b)
        return GH_ENOMEM;
    o->body = b;
    o->body_cap = n;
    return 0;
}

int gh_cobj_append(gh_cobj_t *o, const void *p, size_t n)
{
    if (!n)
        return 0;
    uint64_t want = o->body_len + n;
    if (want > C.max_object)
        return GH_ELIMIT;
    if (want > o->body_cap) { /* powers of two while growing; insert trims the slack */
        uint64_t nc = o->body_cap ? o->body_cap : 4096;
        while (nc < want)
            nc *= 2;
        char *b = realloc(o->body, nc);
        if (!b)
            return GH_ENOMEM;
        o->body = b;
        o->body_cap = nc;
    }
    memcpy(o->body + o->body_len, p, n);
    o->body_len = want;
    return 0;
}

static void obj_destroy(gh_cobj_t *o)
{
    free(o->body);
    free(o);
}

void gh_cobj_free(gh_cobj_t *o)
{
    if (o)
        obj_destroy(o);
}

void gh_cache_ref(gh_cobj_t *o) { __atomic_add_fetch(&o->refs, 1, __ATOMIC_RELAXED); }

void gh_cache_release(gh_cobj_t *o)
{
    if (o && __atomic_sub_fetch(&o->refs, 1, __ATOMIC_ACQ_REL) == 0)
        obj_destroy(o);
}

/* ---- setup ---- */

int gh_cache_setup(uint64_t memory, uint64_t max_object)
{
    if (!C.ready) {
        uint64_t seed[2]; /* keys hashed under a secret: no chosen collisions */
        if (getrandom(seed, sizeof seed, 0) != sizeof seed)
            return GH_EIO;
        C.k0 = seed[0];
        C.k1 = seed[1];
        for (int i = 0; i < GH_CACHE_SHARDS; i++) {
            shard_t *s = &C.shards[i];
            pthread_mutex_init(&s->mu, NULL);
            s->mask = 1023;
            s->buckets = calloc(s->mask + 1, sizeof(*s->buckets));
            if (!s->buckets)
                return GH_ENOMEM;
        }
    }
    __atomic_store_n(&C.cap, memory, __ATOMIC_RELAXED);
    __atomic_store_n(&C.max_object, max_object, __ATOMIC_RELAXED);
    __atomic_store_n(&C.ready, 1, __ATOMIC_RELEASE);
    return 0;
}

int gh_cache_enabled(void) { return __atomic_load_n(&C.ready, __ATOMIC_ACQUIRE); }
uint64_t gh_cache_max_object(void) { return C.max_object; }

void gh_cache_stats(gh_cache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->cap = C.cap;
    out->max_object = C.max_object;
    out->used = __atomic_load_n(&C.used, __ATOMIC_RELAXED);
    out->objects = __atomic_load_n(&C.nobj, __ATOMIC_RELAXED);
    if (!C.ready)
        return;
    for (int i = 0; i < GH_CACHE_SHARDS; i++) {
        out->evictions += __atomic_load_n(&C.shards[i].evictions, __ATOMIC_RELAXED);
        out->purged += __atomic_load_n(&C.shards[i].purged, __ATOMIC_RELAXED);
        out->inserts += __atomic_load_n(&C.shards[i].inserts, __ATOMIC_RELAXED);
    }
}

/* ---- shard internals (lock held) ---- */

static shard_t *shard_of(uint64_t khash) { return &C.shards[(khash >> 56) % GH_CACHE_SHARDS]; }

static void q_push(queue_t *q, gh_cobj_t *o) /* at the head */
{
    if (!o->queue)
        __atomic_add_fetch(&C.small, o->size, __ATOMIC_RELAXED);
    o->qprev = NULL;
    o->qnext = q->head;
    if (q->head)
        q->head->qprev = o;
    q->head = o;
    if (!q->tail)
        q->tail = o;
    q->bytes += o->size;
}

static void q_del(queue_t *q, gh_cobj_t *o)
{
    if (!o->queue)
        __atomic_sub_fetch(&C.small, o->size, __ATOMIC_RELAXED);
    if (o->qprev)
        o->qprev->qnext = o->qnext;
    else
        q->head = o->qnext;
    if (o->qnext)
        o->qnext->qprev = o->qprev;
    else
        q->tail = o->qprev;
    q->bytes -= o->size;
    o->qprev = o->qnext = NULL;
}

static void grow(shard_t *s)
{
    uint32_t nm = s->mask * 2 + 1;
    gh_cobj_t **nb = calloc((size_t)nm + 1, sizeof(*nb));
    if (!nb)
        return;
    for (uint32_t i = 0; i <= s->mask; i++)
        for (gh_cobj_t *o = s->buckets[i], *next; o; o = next) {
            next = o->hnext;
            uint32_t b = (uint32_t)o->khash & nm;
            o->hnext = nb[b];
            nb[b] = o;
        }
    free(s->buckets);
    s->buckets = nb;
    s->mask = nm;
}

/* Unlink o from its bucket and queue; drop the table's reference (after unlock is not
 * needed: the reference count is atomic and the last holder frees). */
static void unlink_obj(shard_t *s, gh_cobj_t *o)
{
    gh_cobj_t **pp = &s->buckets[(uint32_t)o->khash & s->mask];
    while (*pp && *pp != o)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = o->hnext;
    q_del(o->queue ? &s->main : &s->small, o);
    o->linked = 0;
    s->n--;
    __atomic_sub_fetch(&C.used, o->size, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&C.nobj, 1, __ATOMIC_RELAXED);
    gh_cache_release(o);
}

static int tombstoned(const gh_cobj_t *o)
{
    return __atomic_load_n(&C.tomb[o->uhash % TOMB_SLOTS], __ATOMIC_RELAXED) >= o->seq;
}

/* One S3-FIFO eviction step in shard s: frees one object (1) or nothing (0). Which
 * queue is decided for the whole store (S is kept at 10% of the cap); strict: a shard
 * without an object in that queue frees nothing (another shard will), rather than
 * eating into the other queue. */
static int evict_one(shard_t *s, int strict)
{
    for (;;) {
        if (!s->small.tail && !s->main.tail)
            return 0;
        int want_small = __atomic_load_n(&C.small, __ATOMIC_RELAXED) * 10 >= __atomic_load_n(&C.cap, __ATOMIC_RELAXED);
        if (strict && (want_small ? !s->small.tail : !s->main.tail))
            return 0;
        int from_small = s->small.tail && (want_small || !s->main.tail);
        if (from_small) {
            gh_cobj_t *o = s->small.tail;
            if (o->freq >= 1) { /* hit while in the probation queue: promote */
                q_del(&s->small, o);
                o->freq = 0;
                o->queue = 1;
                q_push(&s->main, o);
                continue;
            }
            s->ghost[o->khash % GHOST_SLOTS] = o->khash | 1;
            unlink_obj(s, o);
        } else {
            gh_cobj_t *o = s->main.tail;
            if (o->freq > 0) {
                o->freq--;
                q_del(&s->main, o);
                q_push(&s->main, o);
                continue;
            }
            unlink_obj(s, o);
        }
        s->evictions++;
        return 1;
    }
}

/* ---- lookup / insert ---- */

int gh_cache_vary_values(gh_str_t vary, const gh_h1_header_t *h, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    const char *p = vary.p, *end = vary.p + vary.n;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        gh_str_t name = gh_str(p, (size_t)((comma ? comma : end) - p));
        p = comma ? comma + 1 : end;
        int lower = name.n >= 6 && !strncasecmp(name.p, "accept", 6);
        if (len + 2 > cap)
            return -1;
        size_t flag = len++;
        out[flag] = '0';
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (!gh_str_caseeq(h[i].name, name))
                continue;
            out[flag] = '1';
            /* the field lines joined by ",", OWS around commas dropped */
            const char *v = h[i].value.p, *ve = v + h[i].value.n;
            if (!first) {
                if (len + 1 > cap)
                    return -1;
                out[len++] = ',';
            }
            first = 0;
            while (v < ve) {
                char ch = *v++;
                if (ch == ' ' || ch == '\t') {
                    const char *w = v;
                    while (w < ve && (*w == ' ' || *w == '\t'))
                        w++;
                    if (w == ve || *w == ',' || (len && out[len - 1] == ','))
                        { v = w; continue; }
                    ch = ' ';
                    v = w;
                }
                if (lower && ch >= 'A' && ch <= 'Z')
                    ch = (char)(ch + 32);
                if (len + 1 > cap)
                    return -1;
                out[len++] = ch;
            }
        }
        if (len + 1 > cap)
            return -1;
        out[len++] = '\n';
    }
    return (int)len;
}

gh_cobj_t *gh_cache_lookup(uint64_t khash, gh_str_t key, const gh_h1_header_t *h, size_t n, int *uri_found)
{
    static __thread char vals[8192];
    *uri_found = 0;
    if (!C.ready)
        return NULL;
    shard_t *s = shard_of(khash);
    gh_cobj_t *best = NULL;
    pthread_mutex_lock(&s->mu);
    gh_cobj_t **pp = &s->buckets[(uint32_t)khash & s->mask];
    while (*pp) {
        gh_cobj_t *o = *pp;
        if (o->khash != khash || o->key_len != key.n || memcmp(o->key, key.p, key.n)) {
            pp = &o->hnext;
            continue;
        }
        if (tombstoned(o)) {
            unlink_obj(s, o); /* *pp now holds the next */
            continue;
        }
        *uri_found = 1;
        int match = 1;
        if (o->vary_len) {
            int l = gh_cache_vary_values(gh_str(o->vary, o->vary_len), h, n, vals, sizeof vals);
            match = l >= 0 && (uint32_t)l == o->vvals_len && !memcmp(vals, o->vvals, (size_t)l);
        }
        if (match && (!best || o->seq > best->seq))
            best = o;
        pp = &o->hnext;
    }
    if (best) {
        if (best->freq < 3)
            best->freq++;
        gh_cache_ref(best);
    }
    pthread_mutex_unlock(&s->mu);
    return best;
}

/* Evict until room more bytes fit under the cap: from shard own first, then the others. */
static void evict_for(shard_t *own, uint64_t room)
{
    uint32_t start = (uint32_t)(own - C.shards);
    for (uint32_t k = 0; k < 2 * GH_CACHE_SHARDS; k++) { /* a strict round, then a lenient one */
        uint64_t cap = __atomic_load_n(&C.cap, __ATOMIC_RELAXED);
        uint64_t limit = cap > room ? cap - room : 0;
        if (__atomic_load_n(&C.used, __ATOMIC_RELAXED) <= limit)
            return;
        shard_t *s = &C.shards[(start + k) % GH_CACHE_SHARDS];
        pthread_mutex_lock(&s->mu);
        while (__atomic_load_n(&C.used, __ATOMIC_RELAXED) > limit && evict_one(s, k < GH_CACHE_SHARDS))
            ;
        pthread_mutex_unlock(&s->mu);
    }
}

int gh_cache_insert(gh_cobj_t *o)
{
    if (!C.ready)
        return GH_EINVAL;
    if (o->body_len > C.max_object)
        return GH_ELIMIT;
    if (o->body && o->body_len && o->body_cap != o->body_len) { /* trim the growth slack */
        char *b = realloc(o->body, o->body_len);
        if (b)
            o->body = b;
    }
    o->size += o->body_len;
    if (o->size > C.cap)
        return GH_ELIMIT;
    shard_t *s = shard_of(o->khash);
    evict_for(s, o->size); /* room first, so that the new object is not its own victim */
    pthread_mutex_lock(&s->mu);
    /* a variant with the same selecting values is replaced */
    gh_cobj_t **pp = &s->buckets[(uint32_t)o->khash & s->mask];
    while (*pp) {
        gh_cobj_t *x = *pp;
        if (x->khash == o->khash && x->key_len == o->key_len && !memcmp(x->key, o->key, o->key_len) &&
            ((x->vvals_len == o->vvals_len && x->vary_len == o->vary_len && !memcmp(x->vvals, o->vvals, o->vvals_len) &&
              !memcmp(x->vary, o->vary, o->vary_len)) ||
             tombstoned(x))) {
            unlink_obj(s, x);
            continue;
        }
        pp = &x->hnext;
    }
    if (s->n >= (s->mask + 1) * 2)
        grow(s);
    uint32_t b = (uint32_t)o->khash & s->mask;
    o->hnext = s->buckets[b];
    s->buckets[b] = o;
    o->shard = (uint32_t)(s - C.shards);
    o->freq = 0;
    uint64_t *g = &s->ghost[o->khash % GHOST_SLOTS];
    o->queue = *g == (o->khash | 1);
    if (o->queue)
        *g = 0;
    q_push(o->queue ? &s->main : &s->small, o);
    o->linked = 1;
    s->n++;
    s->inserts++;
    gh_cache_ref(o);
    __atomic_add_fetch(&C.used, o->size, __ATOMIC_RELAXED);
    __atomic_add_fetch(&C.nobj, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&s->mu);
    evict_for(s, 0); /* other inserts raced this one over the cap */
    return 0;
}

void gh_cache_remove(gh_cobj_t *o)
{
    shard_t *s = shard_of(o->khash);
    pthread_mutex_lock(&s->mu);
    if (o->linked)
        unlink_obj(s, o);
    pthread_mutex_unlock(&s->mu);
}

/* ---- invalidation and purge ---- */

uint64_t gh_cache_url_hash(gh_str_t tenant, gh_str_t host, gh_str_t path)
{
    gh_keyhash_t k;
    gh_keyhash_init_key(&k, C.k0, C.k1);
    gh_keyhash_add_str(&k, tenant);
    char lower[256];
    size_t n = GH_MIN(host.n, sizeof lower);
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)(host.p[i] >= 'A' && host.p[i] <= 'Z' ? host.p[i] + 32 : host.p[i]);
    gh_keyhash_add_str(&k, gh_str(lower, n));
    gh_keyhash_add_str(&k, path);
    uint64_t hi, lo;
    gh_keyhash_final(&k, &hi, &lo);
    return hi;
}

void gh_cache_invalidate(gh_str_t tenant, gh_str_t host, gh_str_t path)
{
    if (!C.ready)
        return;
    uint64_t h = gh_cache_url_hash(tenant, host, path);
    __atomic_store_n(&C.tomb[h % TOMB_SLOTS], gh_cache_seq(), __ATOMIC_RELAXED);
}

static int has_tag(const gh_cobj_t *o, gh_str_t tag)
{
    const char *p = o->tags, *end = o->tags + o->tags_len;
    while (p < end) {
        size_t l = strlen(p);
        if (l == tag.n && !memcmp(p, tag.p, l))
            return 1;
        p += l + 1;
    }
    return 0;
}

static int matches(const gh_cobj_t *o, int kind, gh_str_t v)
{
    switch (kind) {
    case GH_PURGE_TAG:
        return has_tag(o, v);
    case GH_PURGE_ALL:
        return 1;
    case GH_PURGE_URL: { /* the key's "host\npath\nquery\n" (any scheme, any selected headers) */
        const char *p = memchr(o->key, '\n', o->key_len);
        p = p ? memchr(p + 1, '\n', o->key_len - (size_t)(p + 1 - o->key)) : NULL;
        if (!p)
            return 0;
        size_t left = o->key_len - (size_t)(p + 1 - o->key);
        return v.n && v.n <= left && !memcmp(p + 1, v.p, v.n);
    }
    default: { /* prefix: "host/path" */
        if (v.n < o->host_len || strncasecmp(v.p, o->host, o->host_len))
            return 0;
        gh_str_t rest = gh_str(v.p + o->host_len, v.n - o->host_len);
        return rest.n <= o->path_len && !memcmp(rest.p, o->path, rest.n);
    }
    }
}

uint64_t gh_cache_purge(gh_str_t tenant, int kind, gh_str_t value, int soft)
{
    if (!C.ready)
        return 0;
    uint64_t count = 0;
    for (int i = 0; i < GH_CACHE_SHARDS; i++) {
        shard_t *s = &C.shards[i];
        pthread_mutex_lock(&s->mu);
        for (uint32_t b = 0; b <= s->mask; b++) {
            gh_cobj_t **pp = &s->buckets[b];
            while (*pp) {
                gh_cobj_t *o = *pp;
                if (o->tenant_len == tenant.n && !memcmp(o->tenant, tenant.p, tenant.n) && matches(o, kind, value)) {
                    count++;
                    s->purged++;
                    if (soft) {
                        __atomic_store_n(&o->soft, 1, __ATOMIC_RELAXED);
                    } else {
                        unlink_obj(s, o);
                        continue;
                    }
                }
                pp = &o->hnext;
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
    return count;
}

/* ---- coalescing ---- */

void gh_cache_set_waker(void (*fn)(uint32_t)) { C.waker = fn; }

gh_cfetch_t *gh_cache_fetch_join(uint64_t khash, gh_str_t key, uint32_t worker, int *leader)
{
    *leader = 1;
    if (!C.ready)
        return NULL;
    shard_t *s = shard_of(khash);
    pthread_mutex_lock(&s->mu);
    gh_cfetch_t *f = s->fetches;
    for (; f; f = f->next)
        if (f->khash == khash && f->key_len == key.n && !memcmp(f->key, key.p, key.n))
            break;
    if (f && worker < 256) {
        *leader = 0;
        f->refs++;
        f->wake[worker / 64] |= 1ull << (worker % 64);
        pthread_mutex_unlock(&s->mu);
        return f;
    }
    f = calloc(1, sizeof(*f) + key.n);
    if (f) {
        f->key = (char *)(f + 1);
        memcpy(f->key, key.p, key.n);
        f->key_len = key.n;
        f->khash = khash;
        f->refs = 1;
        f->next = s->fetches;
        s->fetches = f;
    }
    pthread_mutex_unlock(&s->mu);
    return f;
}

static void fetch_put_locked(shard_t *s, gh_cfetch_t *f, int *freeit)
{
    *freeit = --f->refs == 0;
}

void gh_cache_fetch_done(gh_cfetch_t *f)
{
    shard_t *s = shard_of(f->khash);
    uint64_t wake[4];
    pthread_mutex_lock(&s->mu);
    for (gh_cfetch_t **pp = &s->fetches; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    __atomic_store_n(&f->done, 1, __ATOMIC_RELEASE);
    memcpy(wake, f->wake, sizeof wake);
    int freeit;
    fetch_put_locked(s, f, &freeit);
    pthread_mutex_unlock(&s->mu);
    if (freeit)
        free(f);
    if (C.waker)
        for (uint32_t i = 0; i < 256; i++)
            if (wake[i / 64] >> (i % 64) & 1)
                C.waker(i);
}

int gh_cache_fetch_is_done(const gh_cfetch_t *f) { return __atomic_load_n(&f->done, __ATOMIC_ACQUIRE); }

void gh_cache_fetch_put(gh_cfetch_t *f)
{
    shard_t *s = shard_of(f->khash);
    int freeit;
    pthread_mutex_lock(&s->mu);
    fetch_put_locked(s, f, &freeit);
    pthread_mutex_unlock(&s->mu);
    if (freeit)
        free(f);
}
