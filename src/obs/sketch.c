/* sketch.c: HyperLogLog, Space-Saving top-k, DDSketch, sketch sets and rolling windows
 * (see sketch.h and docs/analytics-sketches.md). */
#include "obs/sketch.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>


/* gh_sk_hash: a multiply-fold hash under a fixed key. The key is public (every worker and
 * process must hash alike), so a cryptographic hash would buy no resistance to chosen keys here
 * and cost five to eight times as much on every request (docs/analytics-sketches.md, "Hashing").
 * Each 8-byte word is xored in and folded through a 64x64->128 multiply (the high and low halves
 * xored); the length enters first and a last fold and xor-shift spread every input bit over the
 * whole output, the HLL's leading zeros and the index's low bits alike. */
#define SK_K0 0x73756f6865746167ULL /* "gatehous" */
#define SK_K1 0x316863746b736565ULL /* "esketch1" */
#define SK_M0 0x9e3779b97f4a7c15ULL /* odd multipliers: 2^64 / golden ratio, and a 64-bit prime */
#define SK_M1 0xff51afd7ed558ccdULL

static _Atomic size_t g_allocated;

static inline uint64_t sk_fold(uint64_t a, uint64_t b)
{
    unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t gh_sk_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = sk_fold(SK_K0 ^ n, SK_M0), w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = sk_fold(h ^ w ^ SK_K1, SK_M0);
    }
    if (n) { /* 1..7 bytes left: one more word, zero-padded (the length went in first) */
        w = gh_load_tail(s, n);
        h = sk_fold(h ^ w ^ SK_K1, SK_M0);
    }
    h = sk_fold(h, SK_M1);
    return h ^ (h >> 29);
}

size_t gh_sk_allocated(void) { return atomic_load_explicit(&g_allocated, memory_order_relaxed); }

/* Every allocation of this module goes through here (counted for gh_sk_allocated). */
static void *sk_alloc(size_t n)
{
    void *p = calloc(1, n);
    if (p)
        atomic_fetch_add_explicit(&g_allocated, n, memory_order_relaxed);
    return p;
}

static void sk_free(void *p, size_t n)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&g_allocated, n, memory_order_relaxed);
    free(p);
}

/* --- HyperLogLog ----------------------------------------------------------------------- */

int gh_sk_hll_init(gh_sk_hll_t *h, unsigned p)
{
    h->p = 0;
    h->reg = NULL;
    if (p < GH_SK_HLL_P_MIN || p > GH_SK_HLL_P_MAX)
        return GH_EINVAL;
    h->reg = sk_alloc((size_t)1 << p);
    if (!h->reg)
        return GH_ENOMEM;
    h->p = (uint8_t)p;
    return 0;
}

void gh_sk_hll_free(gh_sk_hll_t *h)
{
    if (h->reg)
        sk_free(h->reg, (size_t)1 << h->p);
    h->reg = NULL;
    h->p = 0;
}

void gh_sk_hll_reset(gh_sk_hll_t *h) { memset(h->reg, 0, (size_t)1 << h->p); }

size_t gh_sk_hll_bytes(const gh_sk_hll_t *h) { return h->reg ? (size_t)1 << h->p : 0; }

double gh_sk_hll_stderr(unsigned p) { return 1.04 / sqrt((double)(1u << p)); }

int gh_sk_hll_merge(gh_sk_hll_t *dst, const gh_sk_hll_t *src)
{
    if (dst->p != src->p || !dst->reg || !src->reg)
        return GH_EINVAL;
    size_t m = (size_t)1 << dst->p;
    for (size_t i = 0; i < m; i++)
        if (src->reg[i] > dst->reg[i])
            dst->reg[i] = src->reg[i];
    return 0;
}

/* Ertl (2017), algorithm 6: sigma(x) = x + sum_k x^(2^k) 2^(k-1) ... for the empty registers,
 * tau(x) for the saturated ones; both series summed until they stop changing. */
static double hll_sigma(double x)
{
    if (x == 1)
        return INFINITY;
    double y = 1, z = x, zp;
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (z != zp);
    return z;
}

static double hll_tau(double x)
{
    if (x == 0 || x == 1)
        return 0;
    double y = 1, z = 1 - x, zp;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1 - x) * (1 - x) * y;
    } while (z != zp);
    return z / 3;
}

double gh_sk_hll_estimate(const gh_sk_hll_t *h)
{
    unsigned p = h->p, q = 64 - p;
    size_t m = (size_t)1 << p;
    uint32_t c[66] = {0};
    for (size_t i = 0; i < m; i++)
        c[h->reg[i]]++;
    double md = (double)m;
    double z = md * hll_tau(1 - c[q + 1] / md);
    for (unsigned k = q; k >= 1; k--)
        z = 0.5 * (z + c[k]);
    z += md * hll_sigma(c[0] / md);
    if (isinf(z))
        return 0;
    return md * md / (2 * M_LN2 * z);
}

/* --- Space-Saving top-k ---------------------------------------------------------------- */

/* Truncates a key to at most max bytes, backing off to a UTF-8 character boundary when the
 * cut falls inside a multi-byte character (at most 3 bytes back; other bytes are kept). */
static size_t key_trunc(gh_str_t k, uint32_t max)
{
    if (k.n <= max)
        return k.n;
    size_t n = max;
    for (int i = 0; i < 3 && n > 0 && ((uint8_t)k.p[n] & 0xC0) == 0x80; i++)
        n--;
    if (n == 0 || ((uint8_t)k.p[n] & 0xC0) == 0x80)
        n = max; /* not UTF-8 there: cut at the byte bound */
    return n;
}

static inline char *top_key(const gh_sk_top_t *t, uint32_t e) { return t->keys + (size_t)e * t->key_max; }

static size_t top_layout(uint32_t m, uint32_t key_max, uint32_t *isz)
{
    uint32_t s = 1;
    while (s < 2 * m)
        s <<= 1;
    if (isz)
        *isz = s;
    return (size_t)m * (3 * sizeof(uint64_t) + sizeof(uint16_t) + sizeof(uint8_t) + 3 * sizeof(uint32_t) + key_max) +
           (size_t)s * sizeof(uint32_t) + 64;
}

int gh_sk_top_init(gh_sk_top_t *t, uint32_t m, uint32_t key_max)
{
    memset(t, 0, sizeof(*t));
    if (m < 1 || m > GH_SK_TOP_M_MAX || key_max < 1 || key_max > GH_SK_KEY_MAX)
        return GH_EINVAL;
    uint32_t isz;
    size_t bytes = top_layout(m, key_max, &isz);
    char *mem = sk_alloc(bytes);
    if (!mem)
        return GH_ENOMEM;
    /* 8-byte arrays first, then 4, 2, 1: every array stays aligned */
    char *p = mem;
    t->cnt = (uint64_t *)p, p += (size_t)m * 8;
    t->err = (uint64_t *)p, p += (size_t)m * 8;
    t->hash = (uint64_t *)p, p += (size_t)m * 8;
    t->heap = (uint32_t *)p, p += (size_t)m * 4;
    t->pos = (uint32_t *)p, p += (size_t)m * 4;
    t->pend = (uint32_t *)p, p += (size_t)m * 4;
    t->idx = (uint32_t *)p, p += (size_t)isz * 4;
    t->len = (uint16_t *)p, p += (size_t)m * 2;
    t->mark = (uint8_t *)p, p += m;
    t->keys = p;
    t->m = m;
    t->key_max = key_max;
    t->mask = isz - 1;
    t->mem = mem;
    t->bytes = bytes;
    return 0;
}

void gh_sk_top_free(gh_sk_top_t *t)
{
    sk_free(t->mem, t->bytes);
    memset(t, 0, sizeof(*t));
}

void gh_sk_top_reset(gh_sk_top_t *t)
{
    memset(t->idx, 0, ((size_t)t->mask + 1) * sizeof(uint32_t));
    memset(t->mark, 0, t->m);
    t->n = 0;
    t->total = 0;
}

size_t gh_sk_top_bytes(const gh_sk_top_t *t) { return t->bytes; }

uint64_t gh_sk_top_min(const gh_sk_top_t *t) { return t->n == t->m ? t->cnt[t->heap[0]] : 0; }

/* The entry of a key (already truncated) with hash h, or UINT32_MAX. */
static uint32_t top_find(const gh_sk_top_t *t, uint64_t h, const char *k, size_t n, uint32_t *slot)
{
    for (uint32_t i = (uint32_t)h & t->mask;; i = (i + 1) & t->mask) {
        uint32_t v = t->idx[i];
        if (v == 0) {
            if (slot)
                *slot = i;
            return UINT32_MAX;
        }
        uint32_t e = v - 1;
        if (t->hash[e] == h && t->len[e] == n && memcmp(top_key(t, e), k, n) == 0) {
            if (slot)
                *slot = i;
            return e;
        }
    }
}

/* Backward-shift deletion (linear probing): no tombstones, probe lengths stay short. */
static void top_unindex(gh_sk_top_t *t, uint32_t e)
{
    uint32_t i = (uint32_t)t->hash[e] & t->mask;
    while (t->idx[i] != e + 1)
        i = (i + 1) & t->mask;
    for (uint32_t j = i;;) {
        j = (j + 1) & t->mask;
        uint32_t v = t->idx[j];
        if (v == 0)
            break;
        uint32_t home = (uint32_t)t->hash[v - 1] & t->mask;
        if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
            t->idx[i] = v;
            i = j;
        }
    }
    t->idx[i] = 0;
}

static void heap_swap(gh_sk_top_t *t, uint32_t a, uint32_t b)
{
    uint32_t ea = t->heap[a], eb = t->heap[b];
    t->heap[a] = eb;
    t->heap[b] = ea;
    t->pos[eb] = a;
    t->pos[ea] = b;
}

static void heap_down(gh_sk_top_t *t, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, s = i;
        if (l < t->n && t->cnt[t->heap[l]] < t->cnt[t->heap[s]])
            s = l;
        if (r < t->n && t->cnt[t->heap[r]] < t->cnt[t->heap[s]])
            s = r;
        if (s == i)
            return;
        heap_swap(t, i, s);
        i = s;
    }
}

static void heap_up(gh_sk_top_t *t, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (t->cnt[t->heap[p]] <= t->cnt[t->heap[i]])
            return;
        heap_swap(t, i, p);
        i = p;
    }
}

/* Stores key k (n bytes, hash h) in entry e with the given counts and indexes it. */
static void top_store(gh_sk_top_t *t, uint32_t e, uint64_t h, const char *k, size_t n, uint64_t c, uint64_t er)
{
    memcpy(top_key(t, e), k, n);
    t->len[e] = (uint16_t)n;
    t->hash[e] = h;
    t->cnt[e] = c;
    t->err[e] = er;
    uint32_t slot;
    top_find(t, h, k, n, &slot);
    t->idx[slot] = e + 1;
}

/* A key not kept, with counts c, er: takes a free entry or replaces the minimum. */
static void top_insert(gh_sk_top_t *t, uint64_t h, const char *k, size_t n, uint64_t c, uint64_t er)
{
    if (t->n < t->m) {
        uint32_t e = t->n++;
        top_store(t, e, h, k, n, c, er);
        t->heap[e] = e;
        t->pos[e] = e;
        heap_up(t, e);
        return;
    }
    uint32_t e = t->heap[0];
    top_unindex(t, e);
    top_store(t, e, h, k, n, c, er);
    heap_down(t, 0);
}

void gh_sk_top_add(gh_sk_top_t *t, gh_str_t key, uint64_t w)
{
    if (w == 0)
        return;
    size_t n = key_trunc(key, t->key_max);
    uint64_t h = gh_sk_hash(key.p, n);
    t->total += w;
    uint32_t e = top_find(t, h, key.p, n, NULL);
    if (e != UINT32_MAX) {
        t->cnt[e] += w;
        heap_down(t, t->pos[e]);
        return;
    }
    uint64_t min = gh_sk_top_min(t);
    top_insert(t, h, key.p, n, min + w, min);
}

int gh_sk_top_get(const gh_sk_top_t *t, gh_str_t key, uint64_t *count, uint64_t *error)
{
    size_t n = key_trunc(key, t->key_max);
    uint32_t e = top_find(t, gh_sk_hash(key.p, n), key.p, n, NULL);
    if (e == UINT32_MAX) {
        *count = *error = gh_sk_top_min(t);
        return 0;
    }
    *count = t->cnt[e];
    *error = t->err[e];
    return 1;
}

int gh_sk_top_merge(gh_sk_top_t *dst, const gh_sk_top_t *src)
{
    if (dst == src || dst->m != src->m || dst->key_max != src->key_max || !dst->mem || !src->mem)
        return GH_EINVAL;
    uint64_t smin = gh_sk_top_min(src), dmin = gh_sk_top_min(dst);
    uint32_t npend = 0;
    /* 1. common keys: sum; src keys absent from dst wait in pend */
    for (uint32_t i = 0; i < src->n; i++) {
        uint32_t e = top_find(dst, src->hash[i], top_key(src, i), src->len[i], NULL);
        if (e == UINT32_MAX) {
            dst->pend[npend++] = i;
            continue;
        }
        dst->cnt[e] += src->cnt[i];
        dst->err[e] += src->err[i];
        dst->mark[e] = 1;
    }
    /* 2. dst keys absent from src may have weighed up to src's minimum there */
    for (uint32_t e = 0; e < dst->n; e++) {
        if (dst->mark[e]) {
            dst->mark[e] = 0;
        } else {
            dst->cnt[e] += smin;
            dst->err[e] += smin;
        }
    }
    for (uint32_t i = dst->n / 2; i-- > 0;)
        heap_down(dst, i);
    /* 3. src keys absent from dst (up to dst's minimum there) compete for the m places */
    for (uint32_t k = 0; k < npend; k++) {
        uint32_t i = dst->pend[k];
        uint64_t c = src->cnt[i] + dmin;
        if (dst->n == dst->m && c <= dst->cnt[dst->heap[0]])
            continue;
        top_insert(dst, src->hash[i], top_key(src, i), src->len[i], c, src->err[i] + dmin);
    }
    dst->total += src->total;
    return 0;
}

/* count desc, then lower bound desc, then key bytes */
static int item_before(const gh_sk_item_t *a, const gh_sk_item_t *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    uint64_t la = a->count - a->error, lb = b->count - b->error;
    if (la != lb)
        return la > lb;
    size_t n = GH_MIN(a->key.n, b->key.n);
    int c = n ? memcmp(a->key.p, b->key.p, n) : 0;
    if (c != 0)
        return c < 0;
    return a->key.n < b->key.n;
}

size_t gh_sk_top_list(const gh_sk_top_t *t, gh_sk_item_t *out, size_t max)
{
    size_t k = 0;
    for (uint32_t e = 0; e < t->n && max > 0; e++) {
        gh_sk_item_t it = {gh_str(top_key(t, e), t->len[e]), t->cnt[e], t->err[e]};
        if (k == max && !item_before(&it, &out[k - 1]))
            continue;
        size_t j = k < max ? k++ : k - 1; /* insertion sort into the kept best */
        while (j > 0 && item_before(&it, &out[j - 1])) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = it;
    }
    return k;
}

int gh_sk_top_check(const gh_sk_top_t *t)
{
    if (t->n > t->m)
        return -__LINE__;
    uint64_t sum = 0;
    uint32_t indexed = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        uint32_t e = t->heap[i];
        if (e >= t->n || t->pos[e] != i)
            return -__LINE__;
        if (i > 0 && t->cnt[t->heap[(i - 1) / 2]] > t->cnt[e])
            return -__LINE__;
        if (t->err[e] > t->cnt[e] || t->len[e] > t->key_max || t->mark[e])
            return -__LINE__;
        if (t->hash[e] != gh_sk_hash(top_key(t, e), t->len[e]))
            return -__LINE__;
        if (top_find(t, t->hash[e], top_key(t, e), t->len[e], NULL) != e)
            return -__LINE__;
        if (t->n == t->m && t->err[e] > t->cnt[t->heap[0]])
            return -__LINE__; /* an error is at most the minimum */
        if (t->n < t->m && t->err[e] != 0)
            return -__LINE__; /* nothing was ever evicted */
        sum += t->cnt[e];
    }
    for (uint32_t i = 0; i <= t->mask; i++)
        if (t->idx[i]) {
            if (t->idx[i] > t->n)
                return -__LINE__;
            indexed++;
        }
    if (indexed != t->n || sum > t->total)
        return -__LINE__;
    if (t->n == t->m && (uint64_t)t->cnt[t->heap[0]] * t->m > t->total)
        return -__LINE__; /* min <= total / m */
    return 0;
}

/* --- DDSketch -------------------------------------------------------------------------- */

int gh_sk_dd_init(gh_sk_dd_t *d, double alpha, uint32_t nb)
{
    memset(d, 0, sizeof(*d));
    if (!(alpha >= 1e-4 && alpha <= 0.5) || nb < 16 || nb > (1u << 20))
        return GH_EINVAL;
    d->b = sk_alloc((size_t)nb * sizeof(uint64_t));
    if (!d->b)
        return GH_ENOMEM;
    d->alpha = alpha;
    d->gamma = (1 + alpha) / (1 - alpha);
    d->lng = log1p(2 * alpha / (1 - alpha));
    d->nb = nb;
    gh_sk_dd_reset(d);
    return 0;
}

void gh_sk_dd_free(gh_sk_dd_t *d)
{
    sk_free(d->b, (size_t)d->nb * sizeof(uint64_t));
    memset(d, 0, sizeof(*d));
}

void gh_sk_dd_reset(gh_sk_dd_t *d)
{
    memset(d->b, 0, (size_t)d->nb * sizeof(uint64_t));
    d->off = 0;
    d->lo = 1;
    d->hi = 0;
    d->chi = INT32_MIN;
    d->zero = d->count = d->invalid = 0;
    d->sum = 0;
    d->min = d->max = NAN;
}

size_t gh_sk_dd_bytes(const gh_sk_dd_t *d) { return d->b ? (size_t)d->nb * sizeof(uint64_t) : 0; }

/* Moves the window to start at noff. Buckets below noff are collapsed into noff; the caller
 * guarantees that nothing is above noff + nb - 1. */
static void dd_move(gh_sk_dd_t *d, int32_t noff)
{
    if (noff == d->off)
        return;
    int64_t nb = d->nb;
    if (d->lo > d->hi) { /* empty */
        d->off = noff;
        return;
    }
    uint64_t low = 0; /* counts below the new start */
    for (int32_t i = d->lo; i < noff && i <= d->hi; i++) {
        low += d->b[i - d->off];
        d->b[i - d->off] = 0;
    }
    int64_t shift = (int64_t)noff - d->off; /* > 0: window moves up */
    if (shift >= nb || -shift >= nb) {
        memset(d->b, 0, (size_t)nb * sizeof(uint64_t));
    } else if (shift > 0) {
        memmove(d->b, d->b + shift, (size_t)(nb - shift) * sizeof(uint64_t));
        memset(d->b + (nb - shift), 0, (size_t)shift * sizeof(uint64_t));
    } else {
        memmove(d->b - shift, d->b, (size_t)(nb + shift) * sizeof(uint64_t));
        memset(d->b, 0, (size_t)(-shift) * sizeof(uint64_t));
    }
    d->off = noff;
    if (low) {
        d->b[0] += low;
        if (d->lo < noff)
            d->lo = noff;
        if (d->hi < noff)
            d->hi = noff;
        if (noff > d->chi)
            d->chi = noff;
    }
}

/* Adds c values at bucket index i (moving the window and collapsing as needed). */
static void dd_add_index(gh_sk_dd_t *d, int32_t i, uint64_t c)
{
    int64_t nb = d->nb;
    if (d->lo > d->hi) {
        d->off = (int32_t)(i - nb / 2);
        d->lo = d->hi = i;
    } else if (i < d->off) {
        if ((int64_t)d->hi - i < nb) {
            dd_move(d, (int32_t)(d->hi - nb + 1)); /* all the room below */
        } else {
            dd_move(d, (int32_t)(d->hi - nb + 1));
            i = d->off; /* too low: collapsed into the lowest bucket */
            if (i > d->chi)
                d->chi = i;
        }
    } else if ((int64_t)i >= d->off + nb) {
        if ((int64_t)i - d->lo < nb)
            dd_move(d, d->lo); /* all the room above */
        else
            dd_move(d, (int32_t)(i - nb + 1)); /* the lowest buckets collapse */
    }
    d->b[i - d->off] += c;
    if (i < d->lo)
        d->lo = i;
    if (i > d->hi)
        d->hi = i;
}

void gh_sk_dd_add(gh_sk_dd_t *d, double v)
{
    if (!isfinite(v)) {
        d->invalid++;
        return;
    }
    d->count++;
    d->sum += v;
    if (!(v >= d->min))
        d->min = v;
    if (!(v <= d->max))
        d->max = v;
    if (v <= GH_SK_DD_MIN_VALUE) {
        d->zero++;
        return;
    }
    dd_add_index(d, (int32_t)ceil(log(v) / d->lng), 1);
}

int gh_sk_dd_merge(gh_sk_dd_t *dst, const gh_sk_dd_t *src)
{
    if (dst == src || dst->gamma != src->gamma || !dst->b || !src->b)
        return GH_EINVAL;
    if (src->count == 0) {
        dst->invalid += src->invalid;
        return 0;
    }
    /* from the top down: the window moves up at most once */
    for (int32_t i = src->hi; i >= src->lo && src->lo <= src->hi; i--) {
        uint64_t c = src->b[i - src->off];
        if (c)
            dd_add_index(dst, i, c);
    }
    if (src->chi > dst->chi)
        dst->chi = src->chi;
    dst->zero += src->zero;
    dst->count += src->count;
    dst->invalid += src->invalid;
    dst->sum += src->sum;
    if (!(src->min >= dst->min))
        dst->min = src->min;
    if (!(src->max <= dst->max))
        dst->max = src->max;
    return 0;
}

double gh_sk_dd_quantile(const gh_sk_dd_t *d, double q, int *exact)
{
    if (exact)
        *exact = 1;
    if (d->count == 0 || !(q >= 0 && q <= 1))
        return NAN;
    double rank = floor(q * (double)(d->count - 1));
    uint64_t r = (uint64_t)rank;
    if (r < d->zero)
        return d->min > 0 ? d->min : 0; /* the zero bucket: values <= MIN_VALUE */
    uint64_t cum = d->zero;
    int32_t i = d->lo;
    for (; i <= d->hi; i++) {
        cum += d->b[i - d->off];
        if (cum > r)
            break;
    }
    if (i > d->hi)
        i = d->hi;
    if (exact && i <= d->chi)
        *exact = 0;
    double v = 2 * exp(i * d->lng) / (d->gamma + 1);
    if (v < d->min)
        v = d->min;
    if (v > d->max)
        v = d->max;
    return v;
}

/* --- sets ------------------------------------------------------------------------------ */

const char *const gh_sk_dim_names[GH_SK_NDIM] = {"path", "referrer", "user_agent", "client_ip", "country"};

void gh_sk_cfg_default(gh_sk_cfg_t *c)
{
    static const uint32_t m[GH_SK_NDIM] = {256, 128, 128, 256, 64};
    static const uint32_t k[GH_SK_NDIM] = {128, 128, 128, 16, 2};
    memset(c, 0, sizeof(*c));
    memcpy(c->top_m, m, sizeof(m));
    memcpy(c->key_max, k, sizeof(k));
    c->hll_p = GH_SK_HLL_P_DEFAULT;
    c->dd_alpha = GH_SK_DD_ALPHA_DEFAULT;
    c->dd_buckets = GH_SK_DD_BUCKETS_DEFAULT;
}

void gh_sk_cfg_compact(gh_sk_cfg_t *c)
{
    static const uint32_t m[GH_SK_NDIM] = {128, 64, 64, 128, 32};
    static const uint32_t k[GH_SK_NDIM] = {96, 96, 96, 16, 2};
    memset(c, 0, sizeof(*c));
    memcpy(c->top_m, m, sizeof(m));
    memcpy(c->key_max, k, sizeof(k));
    c->hll_p = 12;
    c->dd_alpha = 0.02;
    c->dd_buckets = 512;
}

static int cfg_valid(const gh_sk_cfg_t *c)
{
    for (int i = 0; i < GH_SK_NDIM; i++)
        if (c->top_m[i] < 1 || c->top_m[i] > GH_SK_TOP_M_MAX || c->key_max[i] < 1 || c->key_max[i] > GH_SK_KEY_MAX)
            return 0;
    return c->hll_p >= GH_SK_HLL_P_MIN && c->hll_p <= GH_SK_HLL_P_MAX && c->dd_alpha >= 1e-4 &&
           c->dd_alpha <= 0.5 && c->dd_buckets >= 16 && c->dd_buckets <= (1u << 20);
}

static int cfg_eq(const gh_sk_cfg_t *a, const gh_sk_cfg_t *b)
{
    return memcmp(a->top_m, b->top_m, sizeof(a->top_m)) == 0 &&
           memcmp(a->key_max, b->key_max, sizeof(a->key_max)) == 0 && a->hll_p == b->hll_p &&
           a->dd_alpha == b->dd_alpha && a->dd_buckets == b->dd_buckets;
}

size_t gh_sk_cfg_bytes(const gh_sk_cfg_t *cfg)
{
    if (!cfg_valid(cfg))
        return 0;
    size_t b = ((size_t)1 << cfg->hll_p) + (size_t)cfg->dd_buckets * sizeof(uint64_t);
    for (int i = 0; i < GH_SK_NDIM; i++)
        b += top_layout(cfg->top_m[i], cfg->key_max[i], NULL);
    return b;
}

int gh_sk_set_init(gh_sk_set_t *s, const gh_sk_cfg_t *cfg)
{
    memset(s, 0, sizeof(*s));
    if (!cfg_valid(cfg))
        return GH_EINVAL;
    s->cfg = *cfg;
    int rc = gh_sk_hll_init(&s->visitors, cfg->hll_p);
    if (rc == 0)
        rc = gh_sk_dd_init(&s->latency, cfg->dd_alpha, cfg->dd_buckets);
    for (int i = 0; i < GH_SK_NDIM && rc == 0; i++)
        rc = gh_sk_top_init(&s->top[i], cfg->top_m[i], cfg->key_max[i]);
    if (rc != 0)
        gh_sk_set_free(s);
    return rc;
}

void gh_sk_set_free(gh_sk_set_t *s)
{
    for (int i = 0; i < GH_SK_NDIM; i++)
        gh_sk_top_free(&s->top[i]);
    gh_sk_hll_free(&s->visitors);
    gh_sk_dd_free(&s->latency);
    memset(s, 0, sizeof(*s));
}

void gh_sk_set_reset(gh_sk_set_t *s)
{
    for (int i = 0; i < GH_SK_NDIM; i++)
        gh_sk_top_reset(&s->top[i]);
    gh_sk_hll_reset(&s->visitors);
    gh_sk_dd_reset(&s->latency);
    s->requests = s->bytes_in = s->bytes_out = 0;
    memset(s->status, 0, sizeof(s->status));
    memset(s->cache, 0, sizeof(s->cache));
}

size_t gh_sk_set_bytes(const gh_sk_set_t *s)
{
    size_t b = gh_sk_hll_bytes(&s->visitors) + gh_sk_dd_bytes(&s->latency);
    for (int i = 0; i < GH_SK_NDIM; i++)
        b += gh_sk_top_bytes(&s->top[i]);
    return b;
}

void gh_sk_set_add(gh_sk_set_t *s, const gh_sk_event_t *ev)
{
    for (int i = 0; i < GH_SK_NDIM; i++)
        if (ev->key[i].n)
            gh_sk_top_add(&s->top[i], ev->key[i], 1);
    if (ev->has_visitor)
        gh_sk_hll_add(&s->visitors, ev->visitor);
    gh_sk_dd_add(&s->latency, ev->latency);
    s->requests++;
    s->status[ev->status >= 100 && ev->status < 600 ? ev->status / 100 : 0]++;
    s->cache[ev->cache < GH_SK_CACHE_RESULTS ? ev->cache : GH_SK_CACHE_RESULTS - 1]++;
    s->bytes_in += ev->bytes_in;
    s->bytes_out += ev->bytes_out;
}

int gh_sk_set_merge(gh_sk_set_t *dst, const gh_sk_set_t *src)
{
    if (dst == src || !cfg_eq(&dst->cfg, &src->cfg) || !dst->visitors.reg || !src->visitors.reg)
        return GH_EINVAL;
    for (int i = 0; i < GH_SK_NDIM; i++)
        gh_sk_top_merge(&dst->top[i], &src->top[i]);
    gh_sk_hll_merge(&dst->visitors, &src->visitors);
    gh_sk_dd_merge(&dst->latency, &src->latency);
    dst->requests += src->requests;
    for (int i = 0; i < GH_SK_STATUS_CLASSES; i++)
        dst->status[i] += src->status[i];
    for (int i = 0; i < GH_SK_CACHE_RESULTS; i++)
        dst->cache[i] += src->cache[i];
    dst->bytes_in += src->bytes_in;
    dst->bytes_out += src->bytes_out;
    return 0;
}

/* --- rolling windows ------------------------------------------------------------------- */

static const int64_t win_ms[GH_SK_SPANS] = {GH_SK_SLICE_MS_0, GH_SK_SLICE_MS_1, GH_SK_SLICE_MS_2};
static const uint32_t win_n[GH_SK_SPANS] = {6, 12, 24};

int gh_sk_win_init(gh_sk_win_t *w, const gh_sk_cfg_t *cfg, int64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    if (!cfg_valid(cfg) || now_ms < 0)
        return GH_EINVAL;
    w->cfg = *cfg;
    for (int l = 0; l < GH_SK_SPANS; l++) {
        w->slice[l] = sk_alloc(win_n[l] * sizeof(gh_sk_set_t));
        w->epoch[l] = sk_alloc(win_n[l] * sizeof(int64_t));
        if (!w->slice[l] || !w->epoch[l]) {
            gh_sk_win_free(w);
            return GH_ENOMEM;
        }
        for (uint32_t i = 0; i < win_n[l]; i++) {
            w->epoch[l][i] = -1;
            int rc = gh_sk_set_init(&w->slice[l][i], cfg);
            if (rc != 0) {
                gh_sk_win_free(w);
                return rc;
            }
        }
        w->cur[l] = now_ms / win_ms[l];
        w->epoch[l][w->cur[l] % win_n[l]] = w->cur[l];
    }
    return 0;
}

void gh_sk_win_free(gh_sk_win_t *w)
{
    for (int l = 0; l < GH_SK_SPANS; l++) {
        if (w->slice[l])
            for (uint32_t i = 0; i < win_n[l]; i++)
                gh_sk_set_free(&w->slice[l][i]);
        sk_free(w->slice[l], win_n[l] * sizeof(gh_sk_set_t));
        sk_free(w->epoch[l], win_n[l] * sizeof(int64_t));
    }
    memset(w, 0, sizeof(*w));
}

size_t gh_sk_win_bytes(const gh_sk_win_t *w)
{
    size_t b = 0;
    for (int l = 0; l < GH_SK_SPANS; l++) {
        b += win_n[l] * (sizeof(gh_sk_set_t) + sizeof(int64_t));
        for (uint32_t i = 0; w->slice[l] && i < win_n[l]; i++)
            b += gh_sk_set_bytes(&w->slice[l][i]);
    }
    return b;
}

static inline gh_sk_set_t *win_cur(gh_sk_win_t *w, int l) { return &w->slice[l][w->cur[l] % win_n[l]]; }

/* Makes epoch e the current slice of level l (its slot reset). */
static void win_open(gh_sk_win_t *w, int l, int64_t e)
{
    uint32_t s = (uint32_t)(e % win_n[l]);
    gh_sk_set_reset(&w->slice[l][s]);
    w->epoch[l][s] = e;
    w->cur[l] = e;
}

void gh_sk_win_advance(gh_sk_win_t *w, int64_t now_ms)
{
    if (now_ms < 0)
        return;
    int64_t e0 = now_ms / win_ms[0];
    if (e0 <= w->cur[0])
        return;
    /* the 10 s slice closes into the current 5 min slice (its own: cur[1] = cur[0] / 30) */
    gh_sk_set_merge(win_cur(w, 1), win_cur(w, 0));
    int64_t e1 = now_ms / win_ms[1];
    if (e1 > w->cur[1]) {
        gh_sk_set_merge(win_cur(w, 2), win_cur(w, 1));
        int64_t e2 = now_ms / win_ms[2];
        if (e2 > w->cur[2])
            win_open(w, 2, e2);
        win_open(w, 1, e1);
    }
    win_open(w, 0, e0);
}

void gh_sk_win_add(gh_sk_win_t *w, int64_t now_ms, const gh_sk_event_t *ev)
{
    if (GH_UNLIKELY(now_ms / win_ms[0] > w->cur[0]))
        gh_sk_win_advance(w, now_ms);
    gh_sk_set_add(win_cur(w, 0), ev);
}

/* Merges the live slots of level l (the newest win_n[l] epochs) into out. */
static void win_merge_level(gh_sk_win_t *w, int l, gh_sk_set_t *out)
{
    for (uint32_t i = 0; i < win_n[l]; i++) {
        int64_t e = w->epoch[l][i];
        if (e >= 0 && e <= w->cur[l] && e > w->cur[l] - (int64_t)win_n[l])
            gh_sk_set_merge(out, &w->slice[l][i]);
    }
}

int gh_sk_win_read(gh_sk_win_t *w, int64_t now_ms, int span, gh_sk_set_t *out)
{
    if (span < 0 || span >= GH_SK_SPANS || !cfg_eq(&w->cfg, &out->cfg) || !out->visitors.reg)
        return GH_EINVAL;
    gh_sk_win_advance(w, now_ms);
    win_merge_level(w, span, out);
    /* the current slices below the span's level are not folded into it yet */
    for (int l = span - 1; l >= 0; l--)
        gh_sk_set_merge(out, win_cur(w, l));
    return 0;
}
