/* cache.h: the shared in-memory HTTP response store (one per process, all workers).
 *
 * Objects are immutable once inserted: a stored response (status, the header lines
 * to send, the body) with what the cache needs to judge it (policy.h facts), its
 * key, the Vary it was stored under with the selecting values of the request that
 * fetched it, its surrogate keys (tags) and its URL (for purges). Readers hold a
 * reference while they send it; an update (a 304's new headers, a new version)
 * inserts a new object that replaces the old.
 *
 * Layout: GH_CACHE_SHARDS shards by key hash, each a chained hash table and the two
 * queues of S3-FIFO under one mutex; a lookup or an insert holds one shard's lock for
 * a few hundred nanoseconds, so two workers rarely meet. Memory: the sum of object
 * sizes is kept under the configured cap (a global count; an insert evicts, from its
 * own shard first).
 *
 * Eviction: S3-FIFO (Yang et al., SOSP 2023). New objects enter a small FIFO (10% of
 * the bytes); an object hit again while there moves to the main FIFO when it reaches
 * the tail, one never hit is evicted and its key hash remembered in a ghost table; a
 * key found in the ghost table enters main directly. Main is a FIFO with a 2-bit
 * frequency: an object at the tail with freq > 0 is reinserted with freq - 1. Why:
 * one-hit wonders (a scan, a crawler walking a catalogue) leave through the small
 * queue without displacing the hot set, which LRU does not resist; it has no
 * per-hit list manipulation (a hit sets a counter under the lock it already holds),
 * which matters with many workers; and it matches or beats TinyLFU-style admission
 * on web traces while being simpler.
 *
 * Coalescing: a miss takes a fetch marker for its key; concurrent misses of the same
 * key find the marker and wait (their worker is woken when it is done).
 *
 * Purge: by tag, URL, URL prefix or tenant, by scanning the shards (an admin action:
 * exact, and the memory is freed at once); soft purge marks objects stale instead.
 * Invalidation by unsafe methods is O(1): a tombstone per URL hash slot makes every
 * object of that URL stored before it invalid (a slot collision only costs a miss).
 *
 * Thread-safe: every function may be called from any worker. */
#ifndef GH_CACHE_CACHE_H
#define GH_CACHE_CACHE_H

#include "cache/policy.h"
#include "http/h1.h"

#define GH_CACHE_SHARDS 16
#define GH_CACHE_MAX_TAGS 64

typedef struct gh_cobj {
    /* immutable once inserted */
    uint64_t khash;  /* key hash (shard, bucket) */
    uint64_t uhash;  /* tenant + host + path: invalidation tombstones */
    uint64_t seq;    /* cache sequence when its fetch started (tombstones compare to it) */
    uint64_t size;   /* bytes accounted */
    int status;
    gh_stored_facts_t facts;
    const char *key;   uint32_t key_len;   /* the primary key */
    const char *tenant; uint32_t tenant_len;
    const char *host;  uint32_t host_len;  /* lowercased */
    const char *path;  uint32_t path_len;  /* path and "?query" as requested */
    const char *vary;  uint32_t vary_len;  /* "name,name" lowercased, deduplicated; "" none */
    const char *vvals; uint32_t vvals_len; /* selecting values (gh_cache_vary_values) */
    const char *tags;  uint32_t tags_len;  /* tags, each NUL-terminated */
    const char *head;  uint32_t head_len;  /* header lines to send, "Name: value\r\n"... */
    gh_str_t etag, last_modified;          /* views into head ("" when absent) */
    char *body; uint64_t body_len, body_cap;
    /* shared state */
    uint32_t refs;         /* atomic */
    uint8_t soft;          /* atomic: soft-purged, treated as stale */
    uint8_t revalidating;  /* atomic: a background refresh is running */
    /* owned by the shard lock */
    uint8_t freq, queue, linked;
    uint32_t shard;
    struct gh_cobj *hnext, *qprev, *qnext;
} gh_cobj_t;

typedef struct {
    uint64_t cap, used, objects, evictions, purged, inserts, max_object;
} gh_cache_stats_t;

/* Configure (first call) or resize the store. 0, or GH_ENOMEM. */
int gh_cache_setup(uint64_t memory, uint64_t max_object);
/* Whether the store is set up (some route caches). */
int gh_cache_enabled(void);
uint64_t gh_cache_max_object(void);
void gh_cache_stats(gh_cache_stats_t *out);

/* The cache sequence now: a fetch takes it when it starts, and its object keeps it. */
uint64_t gh_cache_seq(void);

/* The keyed hash of bytes (SipHash under the process seed). */
uint64_t gh_cache_hash(const void *p, size_t n);

/* Normalise the selecting header values of a request for a Vary list: for each name
 * in vary ("a,b"): a presence byte, then the field lines combined with "," and OWS
 * around commas removed (lowercased for the Accept-* fields), then "\n". Writes at
 * most cap bytes to out; returns the length, or -1 when it does not fit. */
int gh_cache_vary_values(gh_str_t vary, const gh_h1_header_t *h, size_t n, char *out, size_t cap);

/* An object under construction: one allocation for the fixed parts, the body apart.
 * Lengths are those of the strings given; gh_cobj_new copies them. */
typedef struct {
    gh_str_t key, tenant, host, path, vary, vvals, tags, head;
} gh_cobj_parts_t;
gh_cobj_t *gh_cobj_new(const gh_cobj_parts_t *p);
/* Allocate the body at its final size when it is known (Content-Length): no growth,
 * no slack left in the allocator. 0, GH_ELIMIT past max_object, or GH_ENOMEM. */
int gh_cobj_reserve(gh_cobj_t *o, uint64_t n);
/* Append body bytes (grows; fails with GH_ELIMIT past max_object, GH_ENOMEM). */
int gh_cobj_append(gh_cobj_t *o, const void *p, size_t n);
/* Free an object never inserted. */
void gh_cobj_free(gh_cobj_t *o);

/* Look up key; among its variants the newest whose Vary matches the request's
 * headers. Returns a referenced object (gh_cache_release it) or NULL; *uri_found is
 * set when some variant of the key exists (a vary miss). */
gh_cobj_t *gh_cache_lookup(uint64_t khash, gh_str_t key, const gh_h1_header_t *h, size_t n, int *uri_found);
void gh_cache_ref(gh_cobj_t *o);
void gh_cache_release(gh_cobj_t *o);
/* Insert o (the store takes its own reference; the caller keeps the one it has), and
 * replace a variant of the same key with the same selecting values. Evicts to stay
 * under the cap. 0, or GH_ELIMIT when o is larger than max_object. */
int gh_cache_insert(gh_cobj_t *o);
/* Remove o if it is still stored (a response that must no longer be used). */
void gh_cache_remove(gh_cobj_t *o);

/* Invalidate every object of the URL (tenant, lowercased host, path without query),
 * stored by fetches started before now. */
void gh_cache_invalidate(gh_str_t tenant, gh_str_t host, gh_str_t path);
uint64_t gh_cache_url_hash(gh_str_t tenant, gh_str_t host, gh_str_t path);

enum { GH_PURGE_TAG, GH_PURGE_URL, GH_PURGE_PREFIX, GH_PURGE_ALL };
/* Purge the tenant's objects matching value: a tag; for URL, the part of the key after
 * its tenant and scheme lines up to its query line ("host\npath\nquery\n", as
 * gh_cache_url_key builds it), so every scheme and every selected header or cookie
 * value goes; for a prefix, "host/path" against the host and path as requested; ignored
 * for ALL. soft: mark stale instead of removing. Returns the number purged (or marked). */
uint64_t gh_cache_purge(gh_str_t tenant, int kind, gh_str_t value, int soft);

/* Coalescing of misses. */
typedef struct gh_cfetch gh_cfetch_t;
/* Join the fetch of khash/key: returns the marker, *leader = 1 when this caller made it
 * (it must gh_cache_fetch_done it), 0 when another fetch runs (the caller waits: it is
 * woken through the waker with its worker id once the marker is done). NULL when out
 * of memory (fetch alone). */
gh_cfetch_t *gh_cache_fetch_join(uint64_t khash, gh_str_t key, uint32_t worker, int *leader);
/* The leader's fetch is over (stored or not): waiters are woken. Drops its reference. */
void gh_cache_fetch_done(gh_cfetch_t *f);
int gh_cache_fetch_is_done(const gh_cfetch_t *f);
/* A waiter drops its reference (woken, or gave up). */
void gh_cache_fetch_put(gh_cfetch_t *f);
void gh_cache_set_waker(void (*fn)(uint32_t worker));

#endif
