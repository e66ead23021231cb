/* shtab.h: the bounded hash table that every worker of one process shares for
 * rate-limit and counter state, and the keyed hash that makes its keys.
 *
 * Keys are 128-bit values the caller derives with gh_keyhash_* (SipHash-2-4 with
 * 128-bit output under a process-wide random seed, so a client cannot choose keys
 * that collide or pile into one bucket). Values are value_size bytes (1..64) owned
 * by the caller's module: a GCRA TAT (8), a connection count (4), a bot-score state.
 *
 * Memory is allocated and committed once by gh_shtab_new (anonymous mmap, populated)
 * and never grows: gh_shtab_bytes() is the whole cost. Each shard gets slots for its
 * mean share of max_keys plus three standard deviations plus 4, at GH_SHTAB_LOAD
 * percent; with 8-byte values (16 key + 8 value bytes per slot) that is 28 bytes per
 * key at max_keys = 1M (28 MB), and all 1M uniformly hashed keys fit.
 *
 * Layout: 2^s shards (up to 256), each its own cuckoo table under one spinlock: a key
 * has two candidate buckets of 4 slots in its shard; the 4 keys of a bucket share one
 * cache line, the values sit in a parallel array.
 *
 * Full buckets degrade, never grow. To create a key whose two buckets are full, the
 * table asks the eviction callback for the weight of the 8 entries there and:
 *   1. reuses an idle entry (weight 0)                     -> stats.evictions_idle
 *   2. else moves entries to their other bucket (breadth-first cuckoo search of at
 *      most 64 buckets, skipped when under 1/64 of the shard is free) to free a slot,
 *      losing nothing                                       -> stats.relocations
 *   3. else evicts the lowest weight of the 8              -> stats.evictions_active
 *   4. else (all 8 are GH_SHTAB_KEEP, or fn is NULL) creates nothing: the lock call
 *      returns NULL and the caller decides                  -> stats.refused
 * What an evicted entry's owner loses (callers state this for their tables):
 *   - a GCRA state (gcra.h): an idle one nothing; an active one comes back as a new
 *     key with a full burst, i.e. the limiter fails open for that key, by at most
 *     burst+1 requests per eviction. gh_gcra_evict weighs entries by TAT - now, so
 *     the key closest to conforming goes first.
 *   - a windowed request counter: the count so far in the window (fails open for the
 *     rest of the window).
 *   - a concurrency count (open connections/streams): the count, and the later
 *     decrements would land on a fresh entry. Such tables must answer GH_SHTAB_KEEP
 *     for every non-zero count, and treat NULL as "limit reached" (fail closed) or
 *     "not tracked" (fail open) by policy.
 *
 * Thread-safety: gh_shtab_new/free/seed_init are not concurrent with anything else on
 * the same table (startup, shutdown). Everything else may be called from any thread at
 * once. A lock call holds one shard spinlock until gh_shtab_unlock: keep the section
 * short (no I/O, no other shtab lock: two held locks may deadlock). Stats are per-shard
 * counters updated under the lock and read with relaxed atomics, readable any time.
 *
 * Called by the traffic-protection modules (gcra.c and the limit/counter layer). Calls
 * libc only (getrandom, mmap). Hot path (lock/unlock) allocates nothing and makes no
 * syscall except sched_yield when a shard lock has been spinning for a while. */
#ifndef GH_PROTECT_SHTAB_H
#define GH_PROTECT_SHTAB_H

#include "core/common.h"

/* --- keyed hash ------------------------------------------------------------------ */

/* Reads 16 random bytes with getrandom(2) into the process-wide seed that
 * gh_keyhash_init uses. Once, at startup, before any worker runs. 0 or GH_EIO. */
int gh_shtab_seed_init(void);
/* Sets the seed explicitly (tests, or reproducing a key). Same rules as seed_init. */
void gh_shtab_seed_set(uint64_t k0, uint64_t k1);

/* SipHash-2-4 with 128-bit output, fed incrementally. Fields of variable length must
 * go through gh_keyhash_add_str (length-prefixed) so that ("ab","c") and ("a","bc")
 * differ; gh_keyhash_add is raw concatenation. On the stack, no allocation. */
typedef struct {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;  /* pending bytes, little-endian */
    uint64_t total; /* bytes fed so far */
} gh_keyhash_t;

/* Starts a key under the process seed; domain (a limit id, a table kind) is the first
 * 8 bytes hashed, so equal fields under different domains give unrelated keys. */
void gh_keyhash_init(gh_keyhash_t *k, uint64_t domain);
/* Starts a plain SipHash-2-4-128 under an explicit key (no domain word). */
void gh_keyhash_init_key(gh_keyhash_t *k, uint64_t k0, uint64_t k1);
void gh_keyhash_add(gh_keyhash_t *k, const void *p, size_t n);
void gh_keyhash_add_u64(gh_keyhash_t *k, uint64_t v); /* 8 bytes, little-endian */
void gh_keyhash_add_str(gh_keyhash_t *k, gh_str_t s); /* length (u64) then the bytes */
/* The 128-bit output: hi = bytes 0..7, lo = bytes 8..15 of the reference byte string,
 * each read little-endian. k may not be fed further. */
void gh_keyhash_final(gh_keyhash_t *k, uint64_t *hi, uint64_t *lo);
/* One-shot SipHash-2-4, 64-bit output (the paper's function). */
uint64_t gh_siphash24(uint64_t k0, uint64_t k1, const void *p, size_t n);

/* --- the table -------------------------------------------------------------------- */

#define GH_SHTAB_VALUE_MAX 64
#define GH_SHTAB_LOAD 90         /* percent of slots that max_keys fills */
#define GH_SHTAB_KEEP UINT64_MAX /* evict_fn weight: never evict this entry */

typedef struct gh_shtab gh_shtab_t;

/* The weight of a live entry (see the top comment). value is value_size bytes; ctx is
 * what the caller passed to gh_shtab_lock (e.g. a pointer to the caller's now_ns).
 * Called with the shard locked: no shtab calls, no blocking. */
typedef uint64_t (*gh_shtab_evict_fn)(const void *value, void *ctx);

/* What gh_shtab_lock holds: pass it to unlock/remove_locked. shard NULL: nothing held. */
typedef struct {
    void *shard;
    uint32_t slot;
} gh_shtab_ref_t;

typedef struct {
    uint64_t entries;          /* live keys now */
    uint64_t slots;            /* capacity in slots (fixed) */
    uint64_t evictions_idle;   /* idle entries reused for a new key */
    uint64_t evictions_active; /* live entries evicted for a new key (state lost) */
    uint64_t refused;          /* creations refused (candidates all GH_SHTAB_KEEP, or fn NULL) */
    uint64_t relocations;      /* cuckoo moves made to free a slot */
    uint64_t contended;        /* lock calls that found their shard held */
} gh_shtab_stats_t;

/* A table for max_keys (>= 1) keys of value_size (1..64) bytes. fn NULL: live entries
 * are never evicted (creation is refused when the key's buckets are full). NULL on
 * bad arguments or when the memory cannot be reserved. */
gh_shtab_t *gh_shtab_new(uint32_t max_keys, uint32_t value_size, gh_shtab_evict_fn fn);
void gh_shtab_free(gh_shtab_t *t);
/* Bytes reserved by the table, all included (fixed for its lifetime). */
size_t gh_shtab_bytes(const gh_shtab_t *t);
uint32_t gh_shtab_value_size(const gh_shtab_t *t);
uint32_t gh_shtab_nshards(const gh_shtab_t *t);

/* Locks the key's shard and finds the key. Found: returns its value (*created = 0).
 * Absent and create != 0: makes it (evicting as the top comment says) and returns its
 * value zeroed (*created = 1). The value is aligned to 8 bytes (to 4 when value_size
 * <= 4) and stays valid until unlock. Returns NULL when absent and not created; the
 * shard is then not held (unlock is a no-op on that ref). A key of hi = lo = 0 is
 * stored as lo = 1. created may be NULL; evict_ctx is passed to the evict callback. */
void *gh_shtab_lock(gh_shtab_t *t, uint64_t hi, uint64_t lo, int create, int *created,
                    gh_shtab_ref_t *ref, void *evict_ctx);
void gh_shtab_unlock(gh_shtab_t *t, gh_shtab_ref_t *ref);
/* Removes the locked entry (e.g. a count that reached 0). The value pointer is dead;
 * the shard stays held until gh_shtab_unlock. */
void gh_shtab_remove_locked(gh_shtab_t *t, gh_shtab_ref_t *ref);
/* Removes a key if present. 1 removed, 0 absent. */
int gh_shtab_remove(gh_shtab_t *t, uint64_t hi, uint64_t lo);

/* Removes the entries of shard `shard` whose evict weight is 0 (idle), for a
 * maintenance timer that walks the shards one at a time so that stats.entries means
 * "active keys". Returns the number removed (0 when fn is NULL). */
uint32_t gh_shtab_sweep(gh_shtab_t *t, uint32_t shard, void *evict_ctx);

/* Sums the per-shard counters (each read atomically; the sum is not a snapshot). */
void gh_shtab_stats(const gh_shtab_t *t, gh_shtab_stats_t *st);

#endif
