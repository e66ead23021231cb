/* shtab.c: see shtab.h.
 *
 * SipHash-2-4 follows Aumasson and Bernstein, "SipHash: a fast short-input PRF"
 * (2012): the state v0..v3 is the key xor the four constants, each 8-byte
 * little-endian message word m is absorbed as v3 ^= m, 2 SipRounds, v0 ^= m; the last
 * word carries the remaining bytes and the length mod 256 in its top byte; then
 * v2 ^= 0xff and 4 SipRounds, output v0^v1^v2^v3. The 128-bit output variant (from the
 * authors' reference distribution) starts with v1 ^= 0xee, finalizes with v2 ^= 0xee,
 * and after the first output word does v1 ^= 0xdd and 4 more rounds for the second.
 *
 * The table: shard = top bits of hi; bucket 1 from the low 32 bits of hi, bucket 2
 * from the high 32 bits of lo (never equal to bucket 1), both by multiply-shift range
 * reduction. A key lives in one of its two buckets, so a lookup reads at most two key
 * lines. An all-zero key marks an empty slot. Removal just clears the slot (cuckoo
 * tables need no tombstones). */
#include "protect/shtab.h"

#include <endian.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>

/* --- SipHash ------------------------------------------------------------------------ */

static uint64_t g_seed[2];

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND(v0, v1, v2, v3) \
    do {                         \
        v0 += v1;                \
        v1 = rotl(v1, 13);       \
        v1 ^= v0;                \
        v0 = rotl(v0, 32);       \
        v2 += v3;                \
        v3 = rotl(v3, 16);       \
        v3 ^= v2;                \
        v0 += v3;                \
        v3 = rotl(v3, 21);       \
        v3 ^= v0;                \
        v2 += v1;                \
        v1 = rotl(v1, 17);       \
        v1 ^= v2;                \
        v2 = rotl(v2, 32);       \
    } while (0)

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline void sip_compress(gh_keyhash_t *k, uint64_t m)
{
    uint64_t v0 = k->v0, v1 = k->v1, v2 = k->v2, v3 = k->v3;
    v3 ^= m;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
    k->v0 = v0, k->v1 = v1, k->v2 = v2, k->v3 = v3;
}

static void sip_init(gh_keyhash_t *k, uint64_t k0, uint64_t k1, int wide)
{
    k->v0 = 0x736f6d6570736575ull ^ k0;
    k->v1 = 0x646f72616e646f6dull ^ k1;
    k->v2 = 0x6c7967656e657261ull ^ k0;
    k->v3 = 0x7465646279746573ull ^ k1;
    if (wide)
        k->v1 ^= 0xee;
    k->tail = 0;
    k->total = 0;
}

void gh_keyhash_init_key(gh_keyhash_t *k, uint64_t k0, uint64_t k1)
{
    sip_init(k, k0, k1, 1);
}

void gh_keyhash_init(gh_keyhash_t *k, uint64_t domain)
{
    sip_init(k, g_seed[0], g_seed[1], 1);
    sip_compress(k, domain);
    k->total = 8;
}

void gh_keyhash_add(gh_keyhash_t *k, const void *p, size_t n)
{
    const uint8_t *b = p;
    unsigned have = (unsigned)(k->total & 7);
    k->total += n;
    if (have) {
        while (n && have < 8) {
            k->tail |= (uint64_t)*b++ << (8 * have++);
            n--;
        }
        if (have < 8)
            return;
        sip_compress(k, k->tail);
        k->tail = 0;
    }
    for (; n >= 8; n -= 8, b += 8)
        sip_compress(k, load_le64(b));
    for (unsigned i = 0; i < n; i++)
        k->tail |= (uint64_t)b[i] << (8 * i);
}

void gh_keyhash_add_u64(gh_keyhash_t *k, uint64_t v)
{
    if ((k->total & 7) == 0) {
        sip_compress(k, v);
        k->total += 8;
        return;
    }
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    gh_keyhash_add(k, b, 8);
}

void gh_keyhash_add_str(gh_keyhash_t *k, gh_str_t s)
{
    gh_keyhash_add_u64(k, (uint64_t)s.n);
    gh_keyhash_add(k, s.p, s.n);
}

/* Absorbs the last word (remaining bytes + length byte) and runs the finalization up
 * to the first output word. */
static uint64_t sip_finish(gh_keyhash_t *k, uint64_t fin)
{
    sip_compress(k, k->tail | (k->total << 56));
    uint64_t v0 = k->v0, v1 = k->v1, v2 = k->v2 ^ fin, v3 = k->v3;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    k->v0 = v0, k->v1 = v1, k->v2 = v2, k->v3 = v3;
    return v0 ^ v1 ^ v2 ^ v3;
}

void gh_keyhash_final(gh_keyhash_t *k, uint64_t *hi, uint64_t *lo)
{
    *hi = sip_finish(k, 0xee);
    uint64_t v0 = k->v0, v1 = k->v1 ^ 0xdd, v2 = k->v2, v3 = k->v3;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    *lo = v0 ^ v1 ^ v2 ^ v3;
}

/* One shot, in registers: the state never goes to memory and the tail is read in at most two loads
 * (a 16-byte unit id: ~160 instructions against ~230 through gh_keyhash_t). */
uint64_t gh_siphash24(uint64_t k0, uint64_t k1, const void *p, size_t n)
{
    const uint8_t *b = p, *end = b + (n & ~(size_t)7);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    for (; b != end; b += 8) {
        uint64_t m = load_le64(b);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t m = gh_load_tail(b, n & 7) | (uint64_t)n << 56;
    v3 ^= m;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= m;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

int gh_shtab_seed_init(void)
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t r = getrandom(b + got, sizeof(b) - got, 0);
        if (r < 0)
            return GH_EIO; /* EINTR included: at startup a retry loop is the caller's */
        got += (size_t)r;
    }
    g_seed[0] = load_le64(b);
    g_seed[1] = load_le64(b + 8);
    return 0;
}

void gh_shtab_seed_set(uint64_t k0, uint64_t k1)
{
    g_seed[0] = k0;
    g_seed[1] = k1;
}

/* --- the table ---------------------------------------------------------------------- */

#define SLOTS 4         /* per bucket: 4 x 16-byte keys = one cache line */
#define MAX_SHARDS 256
#define BFS_NODES 64    /* bound of the cuckoo search (about 3 levels) */
#define SPINS 128       /* pause loops before a sched_yield */

typedef struct {
    uint64_t hi, lo;
} slotkey_t;

typedef struct {
    uint32_t lock;
    uint32_t entries;
    uint64_t evict_idle, evict_active, refused, reloc, contended;
    slotkey_t *keys; /* nb * SLOTS */
    uint8_t *vals;   /* nb * SLOTS * stride */
} __attribute__((aligned(GH_CACHELINE))) shard_t;

struct gh_shtab {
    shard_t *shards;
    uint32_t nshards, shard_bits, nb, vsize, stride;
    gh_shtab_evict_fn fn;
    void *map;
    size_t map_len;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void bump(uint64_t *c) { __atomic_store_n(c, *c + 1, __ATOMIC_RELAXED); }

static void shard_lock(shard_t *s)
{
    if (GH_LIKELY(!__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE)))
        return;
    for (;;) {
        unsigned n = 0;
        while (__atomic_load_n(&s->lock, __ATOMIC_RELAXED)) {
            if (++n < SPINS) {
                cpu_relax();
            } else {
                sched_yield(); /* the holder may be preempted: let it run */
                n = 0;
            }
        }
        if (!__atomic_exchange_n(&s->lock, 1, __ATOMIC_ACQUIRE))
            break;
    }
    bump(&s->contended);
}

static inline void shard_unlock(shard_t *s) { __atomic_store_n(&s->lock, 0, __ATOMIC_RELEASE); }

static inline uint32_t reduce(uint32_t x, uint32_t n) { return (uint32_t)(((uint64_t)x * n) >> 32); }

static inline uint32_t bucket1(const gh_shtab_t *t, uint64_t hi) { return reduce((uint32_t)hi, t->nb); }

static inline uint32_t bucket2(const gh_shtab_t *t, uint32_t b1, uint64_t lo)
{
    uint32_t b = reduce((uint32_t)(lo >> 32), t->nb);
    if (b == b1)
        b = b1 + 1 == t->nb ? 0 : b1 + 1;
    return b;
}

/* The bucket other than b among the key's two. */
static inline uint32_t alt_bucket(const gh_shtab_t *t, const slotkey_t *k, uint32_t b)
{
    uint32_t b1 = bucket1(t, k->hi);
    return b == b1 ? bucket2(t, b1, k->lo) : b1;
}

static inline shard_t *shard_of(const gh_shtab_t *t, uint64_t hi)
{
    return &t->shards[t->shard_bits ? hi >> (64 - t->shard_bits) : 0];
}

static inline int key_empty(const slotkey_t *k) { return (k->hi | k->lo) == 0; }

static inline void *val_at(const gh_shtab_t *t, const shard_t *s, uint32_t slot)
{
    return s->vals + (size_t)slot * t->stride;
}

static uint64_t isqrt(uint64_t x)
{
    uint64_t r = 0;
    while ((r + 1) * (r + 1) <= x)
        r++;
    return r;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }

gh_shtab_t *gh_shtab_new(uint32_t max_keys, uint32_t value_size, gh_shtab_evict_fn fn)
{
    if (max_keys < 1 || value_size < 1 || value_size > GH_SHTAB_VALUE_MAX)
        return NULL;
    gh_shtab_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    /* As many shards as possible (up to 256) for little contention, each sized for
     * its mean share plus three standard deviations (the count of uniformly hashed
     * keys per shard is about Poisson) plus 4, at GH_SHTAB_LOAD percent. The sigma
     * term costs ~5% at 1M keys and makes tiny tables roomy. */
    uint32_t bits = 0;
    while ((1u << bits) < MAX_SHARDS && ((uint64_t)max_keys >> (bits + 1)) >= 4)
        bits++;
    t->shard_bits = bits;
    t->nshards = 1u << bits;
    uint64_t per = ((uint64_t)max_keys + t->nshards - 1) / t->nshards;
    uint64_t want = per + 3 * isqrt(per) + 4;
    uint64_t slots = (want * 100 + GH_SHTAB_LOAD - 1) / GH_SHTAB_LOAD;
    uint64_t nb = (slots + SLOTS - 1) / SLOTS;
    if (nb < 2)
        nb = 2;
    if (nb * SLOTS > UINT32_MAX) {
        free(t);
        return NULL;
    }
    t->nb = (uint32_t)nb;
    t->vsize = value_size;
    t->stride = value_size <= 4 ? 4 : (uint32_t)align_up(value_size, 8);
    t->fn = fn;

    size_t per_slots = (size_t)nb * SLOTS;
    size_t keys_len = align_up(per_slots * sizeof(slotkey_t), GH_CACHELINE);
    size_t vals_len = align_up(per_slots * t->stride, GH_CACHELINE);
    size_t head_len = align_up((size_t)t->nshards * sizeof(shard_t), GH_CACHELINE);
    t->map_len = head_len + (size_t)t->nshards * (keys_len + vals_len);
    /* Committed now: first-touch page faults would land on the request path (on this
     * project's VM, ~12 us each, 80 ms over 28 MB; MAP_POPULATE takes ~6 ms). */
    t->map = mmap(NULL, t->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                  -1, 0);
    if (t->map == MAP_FAILED) {
        free(t);
        return NULL;
    }
    uint8_t *base = t->map;
    t->shards = (shard_t *)base;
    uint8_t *p = base + head_len;
    for (uint32_t i = 0; i < t->nshards; i++) {
        t->shards[i].keys = (slotkey_t *)p;
        p += keys_len;
        t->shards[i].vals = p;
        p += vals_len;
    }
    return t;
}

void gh_shtab_free(gh_shtab_t *t)
{
    if (!t)
        return;
    munmap(t->map, t->map_len);
    free(t);
}

size_t gh_shtab_bytes(const gh_shtab_t *t) { return t->map_len + sizeof(*t); }
uint32_t gh_shtab_value_size(const gh_shtab_t *t) { return t->vsize; }
uint32_t gh_shtab_nshards(const gh_shtab_t *t) { return t->nshards; }

static int find_in(const shard_t *s, uint32_t b, uint64_t hi, uint64_t lo)
{
    const slotkey_t *k = &s->keys[b * SLOTS];
    for (int i = 0; i < SLOTS; i++)
        if (k[i].hi == hi && k[i].lo == lo)
            return (int)(b * SLOTS + i);
    return -1;
}

static int empty_in(const shard_t *s, uint32_t b)
{
    const slotkey_t *k = &s->keys[b * SLOTS];
    for (int i = 0; i < SLOTS; i++)
        if (key_empty(&k[i]))
            return (int)(b * SLOTS + i);
    return -1;
}

typedef struct {
    uint32_t bucket;
    int16_t parent; /* node index, -1 for the two roots */
    uint8_t slot;   /* slot in the parent's bucket whose key moves to this bucket */
} bfs_node_t;

static int in_chain(const bfs_node_t *nodes, int n, uint32_t bucket)
{
    for (; n >= 0; n = nodes[n].parent)
        if (nodes[n].bucket == bucket)
            return 1;
    return 0;
}

/* Frees a slot in bucket b1 or b2 (both full) by moving keys to their other bucket
 * along the shortest path found within BFS_NODES nodes. Returns the freed slot or -1.
 * A bucket appears at most once per path, so each move's source still holds the key
 * the search saw there. */
static int cuckoo_free_slot(const gh_shtab_t *t, shard_t *s, uint32_t b1, uint32_t b2)
{
    bfs_node_t nodes[BFS_NODES];
    int tail = 2, found = -1, free_slot = -1;
    nodes[0] = (bfs_node_t){b1, -1, 0};
    nodes[1] = (bfs_node_t){b2, -1, 0};
    /* A bucket is checked for a free slot when it is reached, so the search stops
     * without expanding the rest of that level. */
    for (int head = 0; head < tail && found < 0; head++) {
        uint32_t b = nodes[head].bucket;
        for (int i = 0; i < SLOTS && tail < BFS_NODES; i++) {
            uint32_t alt = alt_bucket(t, &s->keys[b * SLOTS + i], b);
            if (in_chain(nodes, head, alt))
                continue;
            nodes[tail] = (bfs_node_t){alt, (int16_t)head, (uint8_t)i};
            if ((free_slot = empty_in(s, alt)) >= 0) {
                found = tail;
                break;
            }
            tail++;
        }
    }
    if (found < 0)
        return -1;
    for (int n = found; nodes[n].parent >= 0; n = nodes[n].parent) {
        uint32_t from = nodes[nodes[n].parent].bucket * SLOTS + nodes[n].slot;
        s->keys[free_slot] = s->keys[from];
        memcpy(val_at(t, s, (uint32_t)free_slot), val_at(t, s, from), t->stride);
        s->keys[from] = (slotkey_t){0, 0};
        bump(&s->reloc);
        free_slot = (int)from;
    }
    return free_slot;
}

/* A slot for a new key whose buckets b1 and b2 are full, or -1 (refused). */
static int make_room(gh_shtab_t *t, shard_t *s, uint32_t b1, uint32_t b2, void *ctx)
{
    uint64_t w[2 * SLOTS];
    uint32_t at[2 * SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        at[i] = b1 * SLOTS + i;
        at[SLOTS + i] = b2 * SLOTS + i;
    }
    if (t->fn) {
        for (int i = 0; i < 2 * SLOTS; i++) {
            w[i] = t->fn(val_at(t, s, at[i]), ctx);
            if (w[i] == 0) {
                bump(&s->evict_idle);
                s->keys[at[i]] = (slotkey_t){0, 0};
                __atomic_store_n(&s->entries, s->entries - 1, __ATOMIC_RELAXED);
                return (int)at[i];
            }
        }
    }
    /* With under 1/64 of its slots free, a shard's search mostly fails after costing
     * up to BFS_NODES cache misses: evict instead. This is the steady state of a table
     * flooded with new keys; measured at 1M keys, the transition from 86% to 100%
     * full costs ~0.2 us per insert this way, ~5 us with a 256-node search always. */
    if (s->entries + t->nb * SLOTS / 64 < t->nb * SLOTS) {
        int slot = cuckoo_free_slot(t, s, b1, b2);
        if (slot >= 0)
            return slot;
    }
    int best = -1;
    if (t->fn)
        for (int i = 0; i < 2 * SLOTS; i++)
            if (w[i] != GH_SHTAB_KEEP && (best < 0 || w[i] < w[best]))
                best = i;
    if (best < 0) {
        bump(&s->refused);
        return -1;
    }
    bump(&s->evict_active);
    s->keys[at[best]] = (slotkey_t){0, 0};
    __atomic_store_n(&s->entries, s->entries - 1, __ATOMIC_RELAXED);
    return (int)at[best];
}

void *gh_shtab_lock(gh_shtab_t *t, uint64_t hi, uint64_t lo, int create, int *created,
                    gh_shtab_ref_t *ref, void *evict_ctx)
{
    if ((hi | lo) == 0)
        lo = 1;
    if (created)
        *created = 0;
    shard_t *s = shard_of(t, hi);
    uint32_t b1 = bucket1(t, hi), b2 = bucket2(t, b1, lo);
    shard_lock(s);
    int slot = find_in(s, b1, hi, lo);
    if (slot < 0)
        slot = find_in(s, b2, hi, lo);
    if (slot >= 0) {
        ref->shard = s;
        ref->slot = (uint32_t)slot;
        return val_at(t, s, (uint32_t)slot);
    }
    if (create) {
        slot = empty_in(s, b1);
        if (slot < 0)
            slot = empty_in(s, b2);
        if (slot < 0)
            slot = make_room(t, s, b1, b2, evict_ctx);
    }
    if (slot < 0) {
        shard_unlock(s);
        ref->shard = NULL;
        return NULL;
    }
    s->keys[slot] = (slotkey_t){hi, lo};
    __atomic_store_n(&s->entries, s->entries + 1, __ATOMIC_RELAXED);
    void *v = val_at(t, s, (uint32_t)slot);
    memset(v, 0, t->stride);
    if (created)
        *created = 1;
    ref->shard = s;
    ref->slot = (uint32_t)slot;
    return v;
}

void gh_shtab_unlock(gh_shtab_t *t, gh_shtab_ref_t *ref)
{
    (void)t;
    if (ref->shard) {
        shard_unlock(ref->shard);
        ref->shard = NULL;
    }
}

void gh_shtab_remove_locked(gh_shtab_t *t, gh_shtab_ref_t *ref)
{
    shard_t *s = ref->shard;
    if (!s || key_empty(&s->keys[ref->slot]))
        return;
    s->keys[ref->slot] = (slotkey_t){0, 0};
    __atomic_store_n(&s->entries, s->entries - 1, __ATOMIC_RELAXED);
}

int gh_shtab_remove(gh_shtab_t *t, uint64_t hi, uint64_t lo)
{
    gh_shtab_ref_t ref;
    if (!gh_shtab_lock(t, hi, lo, 0, NULL, &ref, NULL))
        return 0;
    gh_shtab_remove_locked(t, &ref);
    gh_shtab_unlock(t, &ref);
    return 1;
}

uint32_t gh_shtab_sweep(gh_shtab_t *t, uint32_t shard, void *evict_ctx)
{
    if (!t->fn || shard >= t->nshards)
        return 0;
    shard_t *s = &t->shards[shard];
    uint32_t removed = 0;
    shard_lock(s);
    for (uint32_t i = 0; i < t->nb * SLOTS; i++) {
        if (key_empty(&s->keys[i]) || t->fn(val_at(t, s, i), evict_ctx) != 0)
            continue;
        s->keys[i] = (slotkey_t){0, 0};
        removed++;
    }
    __atomic_store_n(&s->entries, s->entries - removed, __ATOMIC_RELAXED);
    shard_unlock(s);
    return removed;
}

void gh_shtab_stats(const gh_shtab_t *t, gh_shtab_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    st->slots = (uint64_t)t->nshards * t->nb * SLOTS;
    for (uint32_t i = 0; i < t->nshards; i++) {
        const shard_t *s = &t->shards[i];
        st->entries += __atomic_load_n(&s->entries, __ATOMIC_RELAXED);
        st->evictions_idle += __atomic_load_n(&s->evict_idle, __ATOMIC_RELAXED);
        st->evictions_active += __atomic_load_n(&s->evict_active, __ATOMIC_RELAXED);
        st->refused += __atomic_load_n(&s->refused, __ATOMIC_RELAXED);
        st->relocations += __atomic_load_n(&s->reloc, __ATOMIC_RELAXED);
        st->contended += __atomic_load_n(&s->contended, __ATOMIC_RELAXED);
    }
}
