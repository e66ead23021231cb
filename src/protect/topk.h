/* topk.h: the "top blocked keys" of the traffic-protection feature: a per-worker
 * Space-Saving summary (Metwally, Agrawal, El Abbadi, ICDT 2005) of the labels of
 * rejected requests, mergeable across workers for the admin API.
 *
 * A table keeps k (label, count, error) entries. Adding a label already kept adds to
 * its count; a new label takes a free entry, or replaces the entry of smallest count m
 * and starts at m + inc with error m. For every kept label, count - error <= true count
 * <= count; any label with a true count above N / k (N = sum of all adds) is kept.
 * Labels are short text (a key description such as "limit=api ip=192.0.2.7"),
 * truncated to GH_TOPK_LABEL_MAX bytes at a UTF-8 character boundary; labels equal
 * after truncation count as one.
 *
 * Called by the protection phase of each worker on every block (gh_topk_add, O(k):
 * one scan of k 64-bit label hashes) and by the admin thread (gh_topk_merge). Calls
 * libc and pthreads only. Thread-safety: each table has a small mutex, so one worker
 * adds while the admin thread merges; any thread may call any function except
 * gh_topk_free, which must be the last use. Only new/free/merge allocate. */
#ifndef GH_PROTECT_TOPK_H
#define GH_PROTECT_TOPK_H

#include "core/common.h"

#define GH_TOPK_LABEL_MAX 95
#define GH_TOPK_K_MAX 4096

typedef struct gh_topk gh_topk_t;

typedef struct {
    uint64_t count; /* upper bound of the true count */
    uint64_t error; /* count - error is a lower bound */
    uint32_t len;
    char label[GH_TOPK_LABEL_MAX + 1]; /* NUL-terminated for convenience; may hold any byte */
} gh_topk_item_t;

/* A table of k entries (1..GH_TOPK_K_MAX); NULL on bad k or ENOMEM. */
gh_topk_t *gh_topk_new(uint32_t k);
void gh_topk_free(gh_topk_t *t);
/* Counts inc (>= 1) more occurrences of label. */
void gh_topk_add(gh_topk_t *t, gh_str_t label, uint64_t inc);
/* Forgets everything (e.g. at the start of a new reporting window). */
void gh_topk_reset(gh_topk_t *t);

/* Merges n tables (each read under its mutex, one at a time; NULL ones are skipped)
 * into out: at most max
 * items, by count descending (then by guaranteed count, then label). A label missing
 * from a full table may still have occurred there up to that table's smallest count:
 * that amount is added to its count and error, so the bounds above hold for the
 * merged items too. Returns the number of items written, or GH_ENOMEM. */
int gh_topk_merge(gh_topk_t *const *tabs, size_t n, gh_topk_item_t *out, size_t max);

#endif
