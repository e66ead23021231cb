/* sketch.h: streaming sketches for traffic analytics without a warehouse (issue 10).
 *
 * Each worker keeps its own sketches per tenant and route and updates them on the request
 * path without a lock and without allocating; a reader merges copies. Memory is fixed at
 * init whatever the cardinality of the traffic (gh_sk_*_bytes() is the whole cost):
 *   - gh_sk_hll_*: HyperLogLog distinct counting (unique visitors), 2^p bytes, Ertl's
 *     improved estimator (O. Ertl, "New cardinality estimation algorithms for HyperLogLog
 *     sketches", arXiv:1702.01284, 2017), relative standard error ~1.04/sqrt(2^p).
 *   - gh_sk_top_*: Space-Saving heavy hitters (Metwally, Agrawal, El Abbadi, ICDT 2005) with
 *     keys stored inline (truncated to key_max bytes), O(1) expected index + O(log m) heap per
 *     add, and a merge that keeps the per-item bounds count - error <= true <= count.
 *   - gh_sk_dd_*: DDSketch quantiles (Masson, Rim, Lee, VLDB 2019) with relative accuracy
 *     alpha over a fixed bucket window that collapses its lowest buckets when full.
 *   - gh_sk_set_*: one of each per dimension of a request (top paths, referrers, user agents,
 *     client IPs, countries; unique visitors; latency; status class and cache-result mix;
 *     requests and bytes).
 *   - gh_sk_win_*: rolling windows of sets (last minute = 6 x 10 s, last hour = 12 x 5 min,
 *     last day = 24 x 1 h), rotated by a caller-supplied clock (ms), merged on read.
 * The error bounds, the memory per set and the merge rules are in docs/analytics-sketches.md.
 *
 * Thread-safety: a sketch, set or window is owned by one thread (its worker); nothing here
 * locks. Merges read their source and write their destination only, so a reader merges sets
 * it owns, or has the owning worker merge its window into a reader-owned set (gh_sk_win_read,
 * e.g. posted to the worker's loop with gh_task_post) and then merges those sets itself.
 * Allocation: only *_init allocates (one block per sketch); add, merge, reset, read and the
 * window's rotation never allocate. Every sketch must be initialised before use and freed with
 * its *_free; a zeroed struct may be freed.
 *
 * Calls libc and libm. Called by workers
 * (add), the admin/analytics reader (merge, read, list, quantile, estimate). */
#ifndef GH_OBS_SKETCH_H
#define GH_OBS_SKETCH_H

#include <stdint.h>

#include "core/common.h"

/* --- hashing -------------------------------------------------------------------------- */

/* The 64-bit hash every sketch here uses: a multiply-fold hash under a fixed, compiled-in key,
 * so that sketches of different workers and processes hash alike and merge. Not secret: a client
 * that can choose keys can find colliding ones, which costs an HLL undercount of its own
 * keys or longer top-k index probes (bounded by m), never memory or a crash. */
uint64_t gh_sk_hash(const void *p, size_t n);
static inline uint64_t gh_sk_hash_str(gh_str_t s) { return gh_sk_hash(s.p, s.n); }

/* Bytes currently allocated by this module (all sketches of all threads), for tests and the
 * admin's memory report. */
size_t gh_sk_allocated(void);

/* --- HyperLogLog ---------------------------------------------------------------------- */

#define GH_SK_HLL_P_MIN 4
#define GH_SK_HLL_P_MAX 18
#define GH_SK_HLL_P_DEFAULT 14 /* 16 KiB of registers, ~0.81% standard error */

typedef struct {
    uint8_t p;    /* precision: 2^p registers */
    uint8_t *reg; /* 2^p registers of 6 bits, one byte each */
} gh_sk_hll_t;

/* p in [GH_SK_HLL_P_MIN, GH_SK_HLL_P_MAX]. 0, GH_EINVAL or GH_ENOMEM. */
int gh_sk_hll_init(gh_sk_hll_t *h, unsigned p);
void gh_sk_hll_free(gh_sk_hll_t *h);
void gh_sk_hll_reset(gh_sk_hll_t *h);
/* Adds an item by its 64-bit hash (gh_sk_hash or any well-mixed 64-bit hash; the same one
 * for every sketch that will be merged). Idempotent per hash. */
static inline void gh_sk_hll_add(gh_sk_hll_t *h, uint64_t hash)
{
    unsigned p = h->p;
    uint64_t w = hash << p;
    unsigned r = w ? (unsigned)__builtin_clzll(w) + 1 : 64 - p + 1;
    uint8_t *reg = &h->reg[hash >> (64 - p)];
    if (r > *reg)
        *reg = (uint8_t)r;
}
/* dst |= src (register max): dst then estimates the union. Same p, else GH_EINVAL. */
int gh_sk_hll_merge(gh_sk_hll_t *dst, const gh_sk_hll_t *src);
/* The estimated number of distinct hashes added (0 when none). */
double gh_sk_hll_estimate(const gh_sk_hll_t *h);
/* The relative standard error of the estimate at precision p: 1.04 / sqrt(2^p). */
double gh_sk_hll_stderr(unsigned p);
size_t gh_sk_hll_bytes(const gh_sk_hll_t *h);

/* --- Space-Saving top-k --------------------------------------------------------------- */

#define GH_SK_TOP_M_MAX 65536
#define GH_SK_KEY_MAX 1024 /* the largest key_max */

/* m counters with keys of at most key_max bytes (longer keys are truncated at a UTF-8
 * character boundary; keys equal after truncation count as one). For each kept key,
 * count - error <= true weight <= count; a key not kept has true weight <= gh_sk_top_min();
 * error <= min <= total / m, so every key of true weight > total / m is kept. Fields are
 * private: use the functions. */
typedef struct {
    uint32_t m, key_max, n, mask; /* capacity, key bound, entries in use, index mask */
    uint64_t total;               /* sum of the weights added (and merged) */
    uint64_t *cnt, *err, *hash;   /* per entry */
    uint16_t *len;                /* per entry: key length */
    uint8_t *mark;                /* per entry: merge scratch */
    uint32_t *heap, *pos;         /* min-heap of entries by cnt; entry -> heap position */
    uint32_t *idx;                /* open-addressing index: entry + 1, 0 empty */
    uint32_t *pend;               /* merge scratch */
    char *keys;                   /* m * key_max bytes */
    void *mem;
    size_t bytes;
} gh_sk_top_t;

/* One reported item. key views the sketch's storage: valid until its next add/merge/reset. */
typedef struct {
    gh_str_t key;
    uint64_t count; /* upper bound of the true weight */
    uint64_t error; /* count - error is a lower bound */
} gh_sk_item_t;

/* m in [1, GH_SK_TOP_M_MAX], key_max in [1, GH_SK_KEY_MAX]. 0, GH_EINVAL or GH_ENOMEM. */
int gh_sk_top_init(gh_sk_top_t *t, uint32_t m, uint32_t key_max);
void gh_sk_top_free(gh_sk_top_t *t);
void gh_sk_top_reset(gh_sk_top_t *t);
/* Adds weight w (0: nothing) to key. */
void gh_sk_top_add(gh_sk_top_t *t, gh_str_t key, uint64_t w);
/* Merges src into dst (the standard Space-Saving merge: counts and errors of common keys are
 * summed; a key missing from a full summary gets that summary's smallest count added to both
 * its count and error; the m largest counts are kept). The bounds above hold for the result,
 * with total the sum of the totals. Same m and key_max, dst != src, else GH_EINVAL. */
int gh_sk_top_merge(gh_sk_top_t *dst, const gh_sk_top_t *src);
/* Writes at most max items by count descending (then count - error descending, then key
 * bytes). Returns the number written. */
size_t gh_sk_top_list(const gh_sk_top_t *t, gh_sk_item_t *out, size_t max);
/* The bounds of one key (truncated as by add): 1 if kept (count, error as listed), else 0
 * with *count = gh_sk_top_min() and *error = *count (true weight in [0, min]). */
int gh_sk_top_get(const gh_sk_top_t *t, gh_str_t key, uint64_t *count, uint64_t *error);
/* The upper bound of the true weight of any key not kept: the smallest count when all m
 * counters are in use, else 0. */
uint64_t gh_sk_top_min(const gh_sk_top_t *t);
static inline uint64_t gh_sk_top_total(const gh_sk_top_t *t) { return t->total; }
static inline uint32_t gh_sk_top_size(const gh_sk_top_t *t) { return t->n; }
size_t gh_sk_top_bytes(const gh_sk_top_t *t);
/* Structural self-check (heap order, index consistency, sums): 0 ok, else a negative line
 * number. For tests and fuzzing; O(m). */
int gh_sk_top_check(const gh_sk_top_t *t);

/* --- DDSketch ------------------------------------------------------------------------- */

#define GH_SK_DD_ALPHA_DEFAULT 0.01
#define GH_SK_DD_BUCKETS_DEFAULT 1024 /* at alpha 1%: a value range of 7.8e8 (1 us .. 13 min) */
#define GH_SK_DD_MIN_VALUE 1e-9       /* smaller values (and 0, negatives) count as 0 */

/* Quantiles of non-negative values with relative accuracy alpha: value v > MIN_VALUE goes to
 * bucket i = ceil(log_gamma v), gamma = (1 + alpha) / (1 - alpha), which holds the values of
 * (gamma^(i-1), gamma^i] and reports 2 gamma^i / (gamma + 1), within alpha of each of them.
 * The nb buckets are a sliding window of indexes [off, off + nb); when the values span more
 * than nb buckets, the lowest ones are collapsed into the lowest bucket kept (their quantiles
 * are then overestimated; gh_sk_dd_quantile says so). Fields are read-only for callers. */
typedef struct {
    double alpha, gamma, lng; /* lng = ln(gamma) */
    uint64_t *b;              /* nb counts: b[j] is bucket index off + j */
    uint32_t nb;
    int32_t off, lo, hi;      /* window start; occupied indexes [lo, hi] (lo > hi: none) */
    int32_t chi;              /* highest index that received collapsed values (INT32_MIN: none) */
    uint64_t zero;            /* values <= GH_SK_DD_MIN_VALUE */
    uint64_t count;           /* all values counted (zero included) */
    uint64_t invalid;         /* NaN and infinite values, not counted */
    double sum, min, max;     /* of the values counted (min, max: NaN when none) */
} gh_sk_dd_t;

/* alpha in [1e-4, 0.5], nb in [16, 1 << 20]. 0, GH_EINVAL or GH_ENOMEM. */
int gh_sk_dd_init(gh_sk_dd_t *d, double alpha, uint32_t nb);
void gh_sk_dd_free(gh_sk_dd_t *d);
void gh_sk_dd_reset(gh_sk_dd_t *d);
void gh_sk_dd_add(gh_sk_dd_t *d, double v);
/* Adds src's values to dst. Same alpha (nb may differ), dst != src, else GH_EINVAL. */
int gh_sk_dd_merge(gh_sk_dd_t *dst, const gh_sk_dd_t *src);
/* The q-quantile (q in [0, 1]): the value of rank floor(q (count - 1)) in sorted order, within
 * relative error alpha, clamped to [min, max]. NaN when empty or q outside [0, 1]. *exact (if
 * not NULL) is 0 when that rank fell in a collapsed bucket (the guarantee does not hold there:
 * the answer may overestimate the true quantile by more than alpha), else 1. */
double gh_sk_dd_quantile(const gh_sk_dd_t *d, double q, int *exact);
size_t gh_sk_dd_bytes(const gh_sk_dd_t *d);

/* --- a set of sketches per tenant/route ---------------------------------------------- */

enum { GH_SK_PATH, GH_SK_REFERRER, GH_SK_UA, GH_SK_IP, GH_SK_COUNTRY, GH_SK_NDIM };
extern const char *const gh_sk_dim_names[GH_SK_NDIM]; /* "path", "referrer", ... */

#define GH_SK_STATUS_CLASSES 6 /* [0] invalid, [1..5] 1xx..5xx */
#define GH_SK_CACHE_RESULTS 8  /* GH_CR_* of obs/metrics.h (0..6); 7 and up count in [7] */

typedef struct {
    uint32_t top_m[GH_SK_NDIM];   /* counters per top-k dimension */
    uint32_t key_max[GH_SK_NDIM]; /* key bound per dimension */
    unsigned hll_p;
    double dd_alpha;
    uint32_t dd_buckets;
} gh_sk_cfg_t;

/* The defaults: paths 256 x 128 B, referrers 128 x 128 B, user agents 128 x 128 B, client IPs
 * 256 x 16 B (the 4 or 16 address bytes), countries 64 x 2 B; HLL p 14; DDSketch 1%, 1024
 * buckets. About 131 KiB per set (docs/analytics-sketches.md has the arithmetic). */
void gh_sk_cfg_default(gh_sk_cfg_t *c);
/* A smaller cfg for many routes: paths 128 x 96 B, referrers and user agents 64 x 96 B, client
 * IPs 128 x 16 B, countries 32 x 2 B; HLL p 12 (1.6%); DDSketch 2%, 512 buckets (the same value
 * range as the default). About 54 KiB per set. */
void gh_sk_cfg_compact(gh_sk_cfg_t *c);

/* One request as the sketches see it. Empty keys are not counted in their dimension. */
typedef struct {
    gh_str_t key[GH_SK_NDIM]; /* path, referrer, user agent, client IP bytes, country code */
    uint64_t visitor;         /* hash of the visitor identity (e.g. gh_sk_hash of IP + UA) */
    int has_visitor;          /* 0: the request has no visitor identity */
    double latency;           /* in the caller's unit (microseconds recommended) */
    unsigned status;          /* HTTP status */
    unsigned cache;           /* GH_CR_* */
    uint64_t bytes_in, bytes_out;
} gh_sk_event_t;

typedef struct {
    gh_sk_cfg_t cfg;
    gh_sk_top_t top[GH_SK_NDIM];
    gh_sk_hll_t visitors;
    gh_sk_dd_t latency;
    uint64_t requests;
    uint64_t status[GH_SK_STATUS_CLASSES];
    uint64_t cache[GH_SK_CACHE_RESULTS];
    uint64_t bytes_in, bytes_out;
} gh_sk_set_t;

/* 0, GH_EINVAL (a bad cfg field) or GH_ENOMEM (then nothing is left allocated). */
int gh_sk_set_init(gh_sk_set_t *s, const gh_sk_cfg_t *cfg);
void gh_sk_set_free(gh_sk_set_t *s);
void gh_sk_set_reset(gh_sk_set_t *s);
void gh_sk_set_add(gh_sk_set_t *s, const gh_sk_event_t *ev);
/* Same cfg, dst != src, else GH_EINVAL (dst untouched). */
int gh_sk_set_merge(gh_sk_set_t *dst, const gh_sk_set_t *src);
size_t gh_sk_set_bytes(const gh_sk_set_t *s);
/* What a set of this cfg allocates (without initialising one). */
size_t gh_sk_cfg_bytes(const gh_sk_cfg_t *cfg);

/* --- rolling windows ------------------------------------------------------------------ */

enum { GH_SK_MINUTE, GH_SK_HOUR, GH_SK_DAY, GH_SK_SPANS };
#define GH_SK_SLICE_MS_0 10000LL   /* minute level: 6 slices of 10 s */
#define GH_SK_SLICE_MS_1 300000LL  /* hour level: 12 slices of 5 min */
#define GH_SK_SLICE_MS_2 3600000LL /* day level: 24 slices of 1 h */

/* Three rings of sets. An add goes into the current 10 s slice only; when a slice closes it
 * is merged ("folded") into the current slice of the level above, so each event is in one
 * slice per level and a read merges without double counting:
 *   minute = the 6 newest 10 s slices          (covers the last 50..60 s)
 *   hour   = the 12 newest 5 min slices + the current 10 s slice   (55..60 min)
 *   day    = the 24 newest 1 h slices + the current 5 min and 10 s slices (23..24 h)
 * A slice older than its ring is never read again (lazily reset when its slot is reused).
 * Memory: 42 sets allocated at init (gh_sk_win_bytes), fixed; rotation never allocates. */
typedef struct {
    gh_sk_cfg_t cfg;
    gh_sk_set_t *slice[GH_SK_SPANS]; /* 6, 12, 24 sets */
    int64_t *epoch[GH_SK_SPANS];     /* per slot: its slice number (now_ms / slice_ms), or -1 */
    int64_t cur[GH_SK_SPANS];        /* the current slice number per level */
} gh_sk_win_t;

/* Starts empty at now_ms (>= 0). 0, GH_EINVAL or GH_ENOMEM. */
int gh_sk_win_init(gh_sk_win_t *w, const gh_sk_cfg_t *cfg, int64_t now_ms);
void gh_sk_win_free(gh_sk_win_t *w);
/* Moves the clock to now_ms, closing and folding the slices that ended. A now_ms before the
 * current slice (a clock step back) changes nothing: later adds go to the current slice. */
void gh_sk_win_advance(gh_sk_win_t *w, int64_t now_ms);
/* advance(now_ms), then adds ev to the current 10 s slice. */
void gh_sk_win_add(gh_sk_win_t *w, int64_t now_ms, const gh_sk_event_t *ev);
/* advance(now_ms), then merges the span (GH_SK_MINUTE, HOUR or DAY) into out, which must
 * have the window's cfg; out accumulates (reset it first for one window alone, or call once
 * per worker's window to sum them). 0 or GH_EINVAL. On the window's owner thread. */
int gh_sk_win_read(gh_sk_win_t *w, int64_t now_ms, int span, gh_sk_set_t *out);
size_t gh_sk_win_bytes(const gh_sk_win_t *w);

#endif
