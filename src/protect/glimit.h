/* glimit.h: global (cross-node) rate limits through Redis, with local batching.
 *
 * Several gatehouse nodes share one limit ("100 requests/s per client IP across all
 * nodes"). Workers decide locally, from a bounded table of keys, and never wait on
 * Redis; one background thread per gh_glimit_t owns a blocking hiredis connection
 * (timeouts on connect and every read/write, reconnection with jittered backoff) and
 * syncs every sync_ms. Called by the traffic-protection phase of the request pipeline
 * (gh_glimit_take, via protect.c) and by metrics (gh_glimit_status). Calls
 * core/common.h, libc, pthreads and hiredis (pkg-config hiredis).
 *
 * Algorithm: a sliding-window counter. A limit (rate r per second, burst b) uses
 * windows of W = max(1 s, max(b, 1) / r), aligned on the Unix epoch so all nodes agree,
 * and admits L = r * W per window, a request being admitted while
 *     count(previous window) * (1 - f) + count(current window) + 1 <= L
 * (f: elapsed fraction of the current window). Under constant overload this admits L
 * per window, i.e. r per second; a key idle for a window gets its whole L at once (the
 * burst). A burst below r * 1 s gives no tighter burst control than L = r.
 *
 * Redis state: per key and window one hash gh:rl:<key_text>:<window index> with fields
 * "a" (admitted by all nodes) and "d" (demand: admitted + rejected, all nodes),
 * expiring 2 W + 1 s after its last write. Rounds start on wall-clock multiples of
 * sync_ms, so all nodes' rounds coincide, and have two phases:
 *   1. at the tick, per key used since the last round: HINCRBY a n, HINCRBY d m and
 *      PEXPIRE on the current window (the replies are the new totals), and HMGET a d
 *      on the previous one (HINCRBYs when this node still has unsent counts for it);
 *   2. sync_ms / 4 later, HMGET a d on both windows again: by then every node has sent
 *      its counts of the same tick, so every node sees the same totals.
 * Commands are pipelined, 1024 keys per pipeline, at most round_max keys per round.
 *
 * Decision (improving "admit while global_seen + local_unsent fits": with that rule N
 * busy nodes each spend the same free capacity between two rounds, up to N times what
 * the window frees). Each node predicts all nodes' admissions since the tick from its
 * own, using its share of the demand (the "d" counts, ours over everyone's, as sliding
 * window estimates), and admits while
 *     ours_unsent + 1 <= share * (L - known_global) + u
 * with u uniform in [0, 1) drawn per key and round: randomized rounding, so that N
 * nodes splitting a headroom of a few requests admit that headroom on average, not N
 * times it and not zero. Busy nodes split the capacity in proportion to their demand,
 * as one central limiter seeing interleaved arrivals would; a node alone has share 1.
 * Measured (tests/unit/test_glimit.c, 2 processes at 10x overload, 200/s, 6 s): total
 * within 1% of rate x time. The rule needs the nodes' clocks within about sync_ms / 4
 * (NTP); with worse skew, reads miss other nodes' latest counts and over-admission
 * grows towards one sync period's worth of the rate.
 *
 * New keys and degraded modes. A key that has no global counts yet (new to this node,
 * evicted, or idle for two windows) is limited locally to L / expected_nodes per window
 * until its first round (at most sync_ms), so a new client does not wait; the local
 * limit keeps applying (with the global rule) until the key's third round, since nodes
 * that started on the key at the same time may not have reported yet. So a key's first
 * window may see up to L * (nodes / expected_nodes) when more nodes than expected start
 * on it at once, and a node joining a key that others keep at the limit may add up to
 * L / expected_nodes once. While Redis is unreachable (connect or I/O error, or no reply
 * within timeout_ms): fail_open != 0 keeps that local limit (the total is right when
 * expected_nodes is the number of busy nodes), fail_open == 0 rejects everything.
 * Counts made while disconnected are sent after reconnecting (current and previous
 * window only); after a failed write whose effect is unknown (timeout) counts are sent
 * again: errors over-count, never under-count. A Redis that hangs is noticed after
 * timeout_ms; meanwhile the last global counts and the share rule keep deciding.
 *
 * Clock: now_ns must be wall-clock time (CLOCK_REALTIME ns) or another clock all nodes
 * share: window indexes name Redis keys. All nodes must use the same rate and burst
 * for one key text (put the limit's name or a hash of its settings in the text); a key
 * whose W changes is reset locally. The text may hold any bytes; one longer than
 * GH_GLIMIT_KEY_MAX is named by its first 95 bytes, '~' and a fixed 128-bit FNV-based
 * hash of the whole (the same on every node; not collision-resistant against texts
 * chosen to collide, which would only make two keys share a count).
 *
 * Local table: capacity keys (rounded up to 64 shards x 8-way sets x a power of two),
 * 268 bytes per key plus 240 per round_max item, allocated at creation (65536 keys:
 * ~18 MB of virtual memory, pages touched as used). When a set is full, the least
 * recently used key of the set is evicted, preferring keys with nothing unsent; its
 * next use starts as a new key (above), its Redis counts are unaffected. Redis cost:
 * 5 to 8 commands per active key per round; rounds that take longer than sync_ms skip
 * the ticks they overran (keys then sync less often, decisions stay local-first).
 *
 * Threads: gh_glimit_take and gh_glimit_status from any thread; take locks one shard
 * mutex for well under a microsecond, never allocates, never does I/O, never waits for
 * the sync thread (which holds a shard lock only to copy counts, never during I/O).
 * gh_glimit_new and gh_glimit_free must not race with other calls on the same object. */
#ifndef GH_PROTECT_GLIMIT_H
#define GH_PROTECT_GLIMIT_H

#include "core/common.h"

#include <stdint.h>

#define GH_GLIMIT_KEY_MAX 128     /* longest key_text used as is in Redis key names */
#define GH_GLIMIT_PREFIX "gh:rl:" /* Redis key prefix */

typedef struct gh_glimit gh_glimit_t;

typedef struct {
    const char *host;         /* Redis host (name or address); required */
    int port;                 /* default 6379 */
    const char *password;     /* AUTH password, or NULL */
    uint32_t sync_ms;         /* period of a sync round; default 50 */
    uint32_t timeout_ms;      /* connect and per-I/O timeout; default 200 */
    int fail_open;            /* admit under the local limit while Redis is unreachable */
    uint32_t capacity;        /* keys in the local table; default 65536 */
    uint32_t expected_nodes;  /* local limit = L / expected_nodes (see above); default 2 */
    uint32_t round_max;       /* keys synced per round at most; default 8192 */
} gh_glimit_config_t;

typedef struct {
    int connected;                  /* the last round (or connect + AUTH) succeeded */
    char last_error[128];           /* "" if none yet */
    uint64_t syncs;                 /* rounds completed */
    uint64_t sync_errors;           /* rounds or connects that failed, error replies */
    uint64_t connects;              /* successful connections (1 + reconnections) */
    uint64_t keys_synced;           /* key updates sent, summed over rounds */
    uint64_t admitted, rejected;    /* decisions of gh_glimit_take */
    uint64_t disconnected_decisions; /* decisions made while not connected */
    uint64_t local_decisions;       /* decisions on the local limit (key not synced yet) */
    uint64_t evictions;             /* keys evicted from a full set */
    uint32_t keys;                  /* keys in the local table */
    uint32_t last_round_us;         /* I/O time of the last round (both phases) */
} gh_glimit_status_t;

/* Creates the table and starts the sync thread, and waits for its first connection
 * attempt (at most about 2 x timeout_ms), so the first requests are decided connected
 * when Redis is up. NULL on a bad config (no host) or when out of memory or threads;
 * an unreachable Redis is not an error (see gh_glimit_status). */
gh_glimit_t *gh_glimit_new_config(const gh_glimit_config_t *cfg);

/* The same with the default capacity (65536), expected_nodes (2) and round_max. */
gh_glimit_t *gh_glimit_new(const char *host, int port, const char *password_or_NULL, uint32_t sync_ms,
                           uint32_t timeout_ms, int fail_open);

/* Stops the thread and frees everything. Bounded: a wait or a read blocked on a hung
 * Redis is cut short at once (the socket is shut down); only a TCP connect in progress
 * may take up to timeout_ms. NULL is a no-op. */
void gh_glimit_free(gh_glimit_t *g);

/* One request for the key identified by (key_hi, key_lo), a 128-bit hash of key_text
 * (local identity only: it may be keyed per process), whose text key_text[0..key_len)
 * names it in Redis (key_len >= 1, any bytes). now_ns: wall clock (above). Returns 1
 * admit, 0 reject; GH_EINVAL when g or key_text is NULL, key_len is 0 or rate_per_s is
 * not > 0 (NaN included). Never blocks on Redis, never allocates. */
int gh_glimit_take(gh_glimit_t *g, uint64_t key_hi, uint64_t key_lo, const char *key_text,
                   size_t key_len, double rate_per_s, uint32_t burst, uint64_t now_ns);

/* Counters and connection state, for metrics. */
void gh_glimit_status(gh_glimit_t *g, gh_glimit_status_t *out);

#endif
