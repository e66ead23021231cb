/* glimit.c: see glimit.h.
 *
 * Each table entry keeps two window slots (current, previous) with, per slot, the
 * global counts read at the last round (g_*), this node's counts (my_*), and the part of
 * ours Redis has not acknowledged yet: pend_* (not yet picked up by the sync thread) and
 * fl_* (in flight). Phase 1 of a round moves pend to fl under the shard lock, sends, and
 * on the reply sets g_* (the totals then include what we sent) and clears fl; on a
 * connection error fl goes back to pend. Phase 2 only raises g_*. Decisions use g +
 * pend + fl, so nothing is counted twice or missed while a round is in flight, whatever
 * the window does meanwhile: a roll moves slot 0 to slot 1, and a reply is applied to
 * the slot that now holds its window.
 *
 * Entries are identified by (hi, lo) and a generation bumped on reuse, so a reply for
 * an evicted key is dropped. A set's 8 tags (lo | 1) share one cache line, so a lookup
 * reads one line plus the entry's two hot lines (its key text sits in the cold tail).
 * The queue of a shard holds way indexes (each at most once, flag `queued`), so a key
 * evicted while queued hands its place to its successor. */
#include "protect/glimit.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define NSHARDS 64
#define WAYS 8
#define CHUNK 1024           /* keys per pipeline */
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define IDLE_PING_MS 1000    /* with nothing to sync, check the connection this often */
#define MAX_WINDOW_MS 4000000000u
#define TRUST_ROUNDS 3       /* rounds after which a new key is decided on global counts only */
/* Texts longer than this are sent as their first TEXT_KEEP bytes, '~' and a 32-hex-digit
 * hash of the whole text (fixed, so every node names the key alike). */
#define TEXT_KEEP (GH_GLIMIT_KEY_MAX - 33)
#define RKEY_MAX (sizeof(GH_GLIMIT_PREFIX) + GH_GLIMIT_KEY_MAX + 24)

typedef struct {
    uint32_t g_a, g_d;       /* all nodes (ours included) as read at the last round */
    uint32_t my_a, my_d;     /* this node, sent or not: the local limit and our share */
    uint32_t pend_a, pend_d; /* ours, not yet picked up by the sync thread */
    uint32_t fl_a, fl_d;     /* ours, sent, not yet acknowledged */
    uint32_t synced;         /* g_* were read from Redis for this window */
} slot_t;

typedef struct {
    uint64_t hi, lo;
    uint64_t win;     /* window index of s[0] */
    uint64_t last_ns; /* last use, for LRU eviction */
    uint32_t w_ms;    /* window length the slots are counted in */
    uint32_t gen;     /* bumped when the way gets a new key */
    uint32_t round;   /* the last round that took the key */
    float u;          /* uniform in [0, 1), drawn each round: see global_ok */
    uint8_t used, queued, key_len;
    uint8_t rounds; /* successful rounds since the key was added, up to TRUST_ROUNDS */
    slot_t s[2];
    char key[GH_GLIMIT_KEY_MAX]; /* Redis name part, already shortened; cold */
} __attribute__((aligned(GH_CACHELINE))) entry_t;

typedef struct {
    pthread_mutex_t mu;
    uint64_t *tag; /* nsets * WAYS: key_lo | 1 of each way, 0 = free; a set's 8 in one line */
    entry_t *e;    /* nsets * WAYS */
    uint32_t *queue;
    uint32_t nqueue;
    uint32_t nkeys;
    uint64_t admitted, rejected, disc, local, evictions;
} __attribute__((aligned(GH_CACHELINE))) shard_t;

/* One key of a round, owned by the sync thread. */
typedef struct {
    uint32_t shard, idx, gen, w_ms;
    uint64_t hi, lo, win;
    uint32_t a0, d0, a1, d1; /* counts sent for win and win - 1 */
    int prev_incr;           /* win - 1 gets HINCRBYs (else HMGET) */
    int has_prev;            /* win > 0 */
    int ok;                  /* 1 replies read, 0 connection failed, -1 error reply */
    uint64_t ra0, rd0, ra1, rd1;
    float u; /* the entry's next u */
    uint32_t key_len;
    char key[GH_GLIMIT_KEY_MAX];
} item_t;

struct gh_glimit {
    shard_t shard[NSHARDS];
    uint32_t nsets;
    uint32_t expected_nodes;
    uint32_t round_max;
    uint32_t sync_ms, timeout_ms;
    int fail_open;
    char *host, *password;
    int port;

    atomic_int up;
    atomic_int stop;
    atomic_uint_fast64_t syncs, sync_errors, connects, keys_synced, last_round_us;

    pthread_mutex_t mu; /* cond, last_error, ctx pointer */
    pthread_cond_t cond;
    char last_error[128];
    int first_done; /* the first connection attempt finished */
    redisContext *ctx;
    pthread_t thread;

    item_t *items; /* round_max */
    uint32_t read_delay_ms; /* phase 2 of a round starts this long after its tick */
    uint32_t next_shard; /* where the next round starts */
    uint32_t round;      /* number of the current round (never 0) */
    uint64_t rng;        /* the thread's random state (splitmix64 steps) */
    uint64_t last_io_ms;
};

/* ---- small helpers ---- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static inline uint32_t sat_add(uint32_t a, uint32_t b)
{
    uint32_t r = a + b;
    return r < a ? UINT32_MAX : r;
}

static inline uint32_t sat_sub(uint32_t a, uint32_t b)
{
    return a > b ? a - b : 0;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A fixed 64-bit hash of bytes (FNV-1a, then a finalizer): names long keys alike on
 * every node. Not collision-resistant against a chosen text; see glimit.h. */
static uint64_t text_hash(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return mix64(h ^ n);
}

static void set_error(gh_glimit_t *g, const char *what, const char *detail)
{
    /* "what: detail", truncated to the buffer. */
    const char *parts[3] = {what, detail && *detail ? ": " : "", detail ? detail : ""};
    pthread_mutex_lock(&g->mu);
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        size_t n = GH_MIN(strlen(parts[i]), sizeof g->last_error - 1 - o);
        memcpy(g->last_error + o, parts[i], n);
        o += n;
    }
    g->last_error[o] = 0;
    pthread_mutex_unlock(&g->mu);
}

/* ---- the table (workers, under the shard lock) ---- */

static void roll(entry_t *e, uint64_t win)
{
    if (win <= e->win)
        return;
    if (win == e->win + 1)
        e->s[1] = e->s[0];
    else
        memset(&e->s[1], 0, sizeof e->s[1]);
    memset(&e->s[0], 0, sizeof e->s[0]);
    e->win = win;
}

static void key_store(entry_t *e, const char *text, size_t len)
{
    if (len <= GH_GLIMIT_KEY_MAX) {
        memcpy(e->key, text, len);
        e->key_len = (uint8_t)len;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t h[2] = {text_hash(text, len, 0), text_hash(text, len, 0x5bd1e9955bd1e995ull)};
    memcpy(e->key, text, TEXT_KEEP);
    char *o = e->key + TEXT_KEEP;
    *o++ = '~';
    for (int w = 0; w < 2; w++)
        for (int i = 15; i >= 0; i--)
            *o++ = hex[(h[w] >> (4 * i)) & 15];
    e->key_len = (uint8_t)(o - e->key);
}

static entry_t *lookup(gh_glimit_t *g, shard_t *sh, uint64_t h, uint64_t hi, uint64_t lo, const char *text,
                       size_t len, uint32_t w_ms, uint64_t win)
{
    size_t base = (size_t)((h >> 8) & (g->nsets - 1)) * WAYS;
    entry_t *set = &sh->e[base];
    const uint64_t *tags = &sh->tag[base];
    uint64_t t = lo | 1;
    entry_t *free_way = NULL;
    for (int i = 0; i < WAYS; i++) {
        if (tags[i] == t && set[i].hi == hi && set[i].lo == lo)
            return &set[i];
        if (!tags[i] && !free_way)
            free_way = &set[i];
    }
    entry_t *e = free_way;
    if (e) {
        sh->nkeys++;
    } else {
        /* LRU of the set, preferring a key with nothing unsent. */
        for (int i = 0; i < WAYS; i++) {
            entry_t *x = &set[i];
            if (!e || (e->queued && !x->queued) || (e->queued == x->queued && x->last_ns < e->last_ns))
                e = x;
        }
        sh->evictions++;
    }
    uint8_t queued = e->queued;
    uint32_t gen = e->gen + 1;
    memset(e, 0, offsetof(entry_t, key));
    e->queued = queued; /* its index stays in the queue and now stands for the new key */
    e->gen = gen;
    e->used = 1;
    e->hi = hi;
    e->lo = lo;
    e->w_ms = w_ms;
    e->win = win;
    sh->tag[e - sh->e] = t;
    key_store(e, text, len);
    return e;
}

/* This node alone may admit L / expected_nodes per sliding window. */
static int local_ok(const gh_glimit_t *g, const entry_t *e, double w, double limit)
{
    double lim = limit / g->expected_nodes;
    if (lim < 1)
        lim = 1;
    double mine = e->s[1].my_a * w + e->s[0].my_a;
    return mine + 1 <= lim + 1e-9;
}

/* The global rule (glimit.h), w = 1 - f: this node may admit share * (L - known) in
 * all since the last round, rounded by the round's random u (randomized rounding: a
 * node admits floor(share * H + u) for a headroom H, share * H on average). A
 * deterministic cut would leave up to N - 1 requests of a window unused when N nodes
 * split a small headroom, a bias that matters for small limits. */
static int global_ok(const entry_t *e, double w, double limit)
{
    const slot_t *c = &e->s[0], *p = &e->s[1];
    double known_a = p->g_a * w + c->g_a;
    double un_a = ((double)p->pend_a + p->fl_a) * w + ((double)c->pend_a + c->fl_a);
    double known_d = p->g_d * w + c->g_d;
    double un_d = ((double)p->pend_d + p->fl_d) * w + ((double)c->pend_d + c->fl_d);
    double my_d = p->my_d * w + c->my_d;
    double tot = known_d + un_d;
    double share = tot > 0 ? my_d / tot : 1;
    if (share > 1)
        share = 1;
    return un_a + 1 <= share * (limit - known_a) + e->u;
}

int gh_glimit_take(gh_glimit_t *g, uint64_t key_hi, uint64_t key_lo, const char *key_text, size_t key_len,
                   double rate_per_s, uint32_t burst, uint64_t now_ns)
{
    if (!g || !key_text || key_len == 0 || !(rate_per_s > 0))
        return GH_EINVAL;
    double wsec = (double)(burst ? burst : 1) / rate_per_s;
    if (!(wsec >= 1))
        wsec = 1;
    uint32_t w_ms = wsec * 1000 >= MAX_WINDOW_MS ? MAX_WINDOW_MS : (uint32_t)ceil(wsec * 1000 - 1e-6);
    double limit = rate_per_s * w_ms / 1000.0;
    uint64_t w_ns = (uint64_t)w_ms * 1000000u;
    uint64_t win = now_ns / w_ns;

    uint64_t h = mix64(key_lo ^ mix64(key_hi));
    shard_t *sh = &g->shard[h >> 58];
    int up = atomic_load_explicit(&g->up, memory_order_acquire);

    pthread_mutex_lock(&sh->mu);
    entry_t *e = lookup(g, sh, h, key_hi, key_lo, key_text, key_len, w_ms, win);
    if (e->w_ms != w_ms) { /* the limit changed: start over in the new windows */
        memset(e->s, 0, sizeof e->s);
        e->w_ms = w_ms;
        e->win = win;
    }
    roll(e, win);
    /* A worker whose clock read is older than the last roll counts at the window start. */
    double f = win < e->win ? 0 : (double)(now_ns - win * w_ns) / (double)w_ns;
    double w = 1 - f;
    e->last_ns = now_ns;
    slot_t *c = &e->s[0];
    c->my_d = sat_add(c->my_d, 1);
    c->pend_d = sat_add(c->pend_d, 1);

    int admit;
    if (!up) {
        sh->disc++;
        admit = g->fail_open ? local_ok(g, e, w, limit) : 0;
    } else if (!e->s[0].synced && !e->s[1].synced) {
        sh->local++;
        admit = local_ok(g, e, w, limit);
    } else {
        /* Until its third round (two sync periods after the first), nodes that started
         * with this key at about the same time may not have reported yet, so the global
         * counts may not show their local admissions: the local limit holds too. */
        admit = global_ok(e, w, limit) && (e->rounds >= TRUST_ROUNDS || local_ok(g, e, w, limit));
    }
    if (admit) {
        c->my_a = sat_add(c->my_a, 1);
        c->pend_a = sat_add(c->pend_a, 1);
        sh->admitted++;
    } else {
        sh->rejected++;
    }
    if (!e->queued) {
        e->queued = 1;
        sh->queue[sh->nqueue++] = (uint32_t)(e - sh->e);
    }
    pthread_mutex_unlock(&sh->mu);
    return admit;
}

/* ---- the sync thread ---- */

/* Waits on the condition until deadline (CLOCK_MONOTONIC ms) or stop. */
static void wait_until(gh_glimit_t *g, uint64_t deadline_ms)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000), .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
    pthread_mutex_lock(&g->mu);
    while (!atomic_load(&g->stop) && mono_ms() < deadline_ms)
        if (pthread_cond_timedwait(&g->cond, &g->mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&g->mu);
}

static void close_ctx(gh_glimit_t *g)
{
    atomic_store(&g->up, 0);
    pthread_mutex_lock(&g->mu);
    redisContext *c = g->ctx;
    g->ctx = NULL;
    pthread_mutex_unlock(&g->mu);
    if (c)
        redisFree(c);
}

/* The connection failed: record why and close it. */
static void drop_ctx(gh_glimit_t *g, const char *what)
{
    set_error(g, what, g->ctx && g->ctx->errstr[0] ? g->ctx->errstr : "connection lost");
    atomic_fetch_add(&g->sync_errors, 1);
    close_ctx(g);
}

/* Sends one command and checks its reply is not an error. 0, or -1 with ctx dropped
 * (connection) / left (error reply, detail in last_error). */
static int command(gh_glimit_t *g, int argc, const char **argv, const size_t *len, const char *what)
{
    redisReply *r = redisCommandArgv(g->ctx, argc, argv, len);
    if (!r) {
        drop_ctx(g, what);
        return -1;
    }
    int bad = r->type == REDIS_REPLY_ERROR;
    if (bad) {
        set_error(g, what, r->str);
        atomic_fetch_add(&g->sync_errors, 1);
    }
    freeReplyObject(r);
    return bad ? -1 : 0;
}

static int connect_redis(gh_glimit_t *g)
{
    struct timeval tv = {.tv_sec = g->timeout_ms / 1000, .tv_usec = (g->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(g->host, g->port, tv);
    if (!c || c->err) {
        set_error(g, "connect", c ? c->errstr : "out of memory");
        atomic_fetch_add(&g->sync_errors, 1);
        if (c)
            redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    redisEnableKeepAlive(c);
    pthread_mutex_lock(&g->mu);
    g->ctx = c; /* published so gh_glimit_free can cut a blocked read short */
    pthread_mutex_unlock(&g->mu);
    if (atomic_load(&g->stop)) {
        close_ctx(g);
        return -1;
    }
    int rc;
    if (g->password) {
        const char *argv[] = {"AUTH", g->password};
        size_t len[] = {4, strlen(g->password)};
        rc = command(g, 2, argv, len, "AUTH");
    } else {
        const char *argv[] = {"PING"};
        size_t len[] = {4};
        rc = command(g, 1, argv, len, "PING");
    }
    if (rc < 0) {
        if (g->ctx) /* an error reply (wrong password): last_error says it */
            close_ctx(g);
        return -1;
    }
    atomic_fetch_add(&g->connects, 1);
    atomic_store(&g->up, 1);
    g->last_io_ms = mono_ms();
    return 0;
}

/* "gh:rl:<key>:<win>" into out (RKEY_MAX bytes). */
static size_t rkey(char *out, const item_t *it, uint64_t win)
{
    size_t n = sizeof(GH_GLIMIT_PREFIX) - 1;
    memcpy(out, GH_GLIMIT_PREFIX, n);
    memcpy(out + n, it->key, it->key_len);
    n += it->key_len;
    n += (size_t)snprintf(out + n, RKEY_MAX - n, ":%llu", (unsigned long long)win);
    return n;
}

/* Picks up to max queued keys into items[], moving their pending counts in flight. A
 * round visits the shards once, from a starting shard that rotates between rounds, and
 * takes a key at most once (stamp `round`): a key used again while the round is in
 * flight waits for the next round. *cursor counts the shards finished in this round. */
static uint32_t collect(gh_glimit_t *g, item_t *items, uint32_t max, uint32_t *cursor)
{
    uint32_t n = 0;
    while (*cursor < NSHARDS && n < max) {
        uint32_t si = (g->next_shard + *cursor) % NSHARDS;
        shard_t *sh = &g->shard[si];
        pthread_mutex_lock(&sh->mu);
        uint32_t keep = 0;
        for (uint32_t q = 0; q < sh->nqueue; q++) {
            uint32_t idx = sh->queue[q];
            entry_t *e = &sh->e[idx];
            if (n == max || e->round == g->round) {
                sh->queue[keep++] = idx;
                continue;
            }
            e->queued = 0;
            e->round = g->round;
            item_t *it = &items[n++];
            it->shard = si;
            it->idx = idx;
            it->gen = e->gen;
            it->w_ms = e->w_ms;
            it->hi = e->hi;
            it->lo = e->lo;
            it->win = e->win;
            slot_t *c = &e->s[0], *p = &e->s[1];
            it->a0 = c->pend_a;
            it->d0 = c->pend_d;
            it->a1 = p->pend_a;
            it->d1 = p->pend_d;
            c->fl_a = sat_add(c->fl_a, c->pend_a);
            c->fl_d = sat_add(c->fl_d, c->pend_d);
            p->fl_a = sat_add(p->fl_a, p->pend_a);
            p->fl_d = sat_add(p->fl_d, p->pend_d);
            c->pend_a = c->pend_d = p->pend_a = p->pend_d = 0;
            it->has_prev = e->win > 0;
            it->prev_incr = it->has_prev && (it->a1 || it->d1);
            it->key_len = e->key_len;
            memcpy(it->key, e->key, e->key_len);
            it->ok = 0;
            it->ra0 = it->rd0 = it->ra1 = it->rd1 = 0;
            g->rng = mix64(g->rng);
            it->u = (float)((g->rng >> 40) * 0x1p-24); /* 24 bits: exact in a float, < 1 */
        }
        sh->nqueue = keep;
        pthread_mutex_unlock(&sh->mu);
        if (n == max)
            break; /* this shard may have more: the next chunk goes on from it */
        (*cursor)++;
    }
    return n;
}

/* Appends HINCRBY a, HINCRBY d, PEXPIRE for one window. 0, or -1 out of memory. */
static int append_incr(gh_glimit_t *g, const item_t *it, uint64_t win, uint32_t a, uint32_t d)
{
    char k[RKEY_MAX], na[16], nd[16], nt[24];
    size_t kn = rkey(k, it, win);
    size_t la = (size_t)snprintf(na, sizeof na, "%u", a);
    size_t ld = (size_t)snprintf(nd, sizeof nd, "%u", d);
    size_t lt = (size_t)snprintf(nt, sizeof nt, "%llu", (unsigned long long)it->w_ms * 2 + 1000);
    const char *v1[] = {"HINCRBY", k, "a", na};
    size_t l1[] = {7, kn, 1, la};
    const char *v2[] = {"HINCRBY", k, "d", nd};
    size_t l2[] = {7, kn, 1, ld};
    const char *v3[] = {"PEXPIRE", k, nt};
    size_t l3[] = {7, kn, lt};
    if (redisAppendCommandArgv(g->ctx, 4, v1, l1) != REDIS_OK || redisAppendCommandArgv(g->ctx, 4, v2, l2) != REDIS_OK ||
        redisAppendCommandArgv(g->ctx, 3, v3, l3) != REDIS_OK)
        return -1;
    return 0;
}

static int append_hmget(gh_glimit_t *g, const item_t *it, uint64_t win)
{
    char k[RKEY_MAX];
    const char *v[] = {"HMGET", k, "a", "d"};
    size_t l[] = {5, rkey(k, it, win), 1, 1};
    return redisAppendCommandArgv(g->ctx, 4, v, l) == REDIS_OK ? 0 : -1;
}

static uint64_t reply_u64(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (r->type == REDIS_REPLY_STRING && r->str)
        return strtoull(r->str, NULL, 10);
    return 0;
}

/* The two counts of an HMGET a d reply. */
static void reply_pair(const redisReply *r, uint64_t *a, uint64_t *d)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        *a = reply_u64(r->element[0]);
        *d = reply_u64(r->element[1]);
    }
}

/* Reads n replies into r[] (freed by the caller). 0, or -1 when the connection failed
 * (ctx dropped). */
static int read_replies(gh_glimit_t *g, redisReply **r, int n)
{
    for (int i = 0; i < n; i++) {
        void *p = NULL;
        if (redisGetReply(g->ctx, &p) != REDIS_OK || !p) {
            for (int j = 0; j < i; j++)
                freeReplyObject(r[j]);
            drop_ctx(g, "sync");
            return -1;
        }
        r[i] = p;
    }
    return 0;
}

/* Phase 1 or 2 for items[0..n): sends the pipeline and reads the replies into the items
 * (ok, ra*, rd*). Phase 1 (write) adds the counts and reads the totals back; phase 2
 * (read) reads the totals of both windows. 0, or -1 when the connection was lost (items
 * not read keep ok == 0). */
static int exchange(gh_glimit_t *g, item_t *items, uint32_t n, int write)
{
    for (uint32_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        it->ok = 0;
        int rc;
        if (write) {
            rc = append_incr(g, it, it->win, it->a0, it->d0);
            if (rc == 0 && it->prev_incr)
                rc = append_incr(g, it, it->win - 1, it->a1, it->d1);
            else if (rc == 0 && it->has_prev)
                rc = append_hmget(g, it, it->win - 1);
        } else {
            rc = append_hmget(g, it, it->win);
            if (rc == 0 && it->has_prev)
                rc = append_hmget(g, it, it->win - 1);
        }
        if (rc < 0) { /* out of memory: the pipeline is unusable, start afresh */
            drop_ctx(g, "sync");
            return -1;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        item_t *it = &items[i];
        redisReply *r[6] = {0};
        int prev = it->has_prev ? (write && it->prev_incr ? 3 : 1) : 0;
        int nr = (write ? 3 : 1) + prev;
        if (read_replies(g, r, nr) < 0)
            return -1;
        int err = 0;
        for (int j = 0; j < nr; j++)
            if (r[j]->type == REDIS_REPLY_ERROR) {
                if (!err)
                    set_error(g, "sync", r[j]->str);
                err = 1;
            }
        if (err) {
            it->ok = -1;
            atomic_fetch_add(&g->sync_errors, 1);
        } else {
            it->ok = 1;
            int p = write ? 3 : 1; /* index of the first reply about win - 1 */
            if (write) {
                it->ra0 = reply_u64(r[0]);
                it->rd0 = reply_u64(r[1]);
            } else {
                reply_pair(r[0], &it->ra0, &it->rd0);
            }
            if (prev == 3) {
                it->ra1 = reply_u64(r[p]);
                it->rd1 = reply_u64(r[p + 1]);
            } else if (prev == 1) {
                reply_pair(r[p], &it->ra1, &it->rd1);
            }
        }
        for (int j = 0; j < nr; j++)
            freeReplyObject(r[j]);
    }
    return 0;
}

static inline uint32_t clamp32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static inline void raise32(uint32_t *x, uint64_t v)
{
    if (clamp32(v) > *x)
        *x = clamp32(v);
}

/* Applies one item's replies to its entry (shard locked). Phase 1 acknowledges the
 * counts in flight; phase 2 only raises the global counts (they never fall within a
 * window: a lower read means Redis lost data, and ours are still in them). */
static void apply(shard_t *sh, const item_t *it, int write)
{
    entry_t *e = &sh->e[it->idx];
    if (!e->used || e->gen != it->gen || e->hi != it->hi || e->lo != it->lo || e->w_ms != it->w_ms ||
        e->win < it->win || e->win - it->win > 1)
        return; /* evicted, reset, or its windows are gone */
    slot_t *s0 = e->win == it->win ? &e->s[0] : &e->s[1]; /* the slot of it->win */
    slot_t *s1 = e->win == it->win ? &e->s[1] : NULL;     /* the slot of it->win - 1 */
    if (write) {
        s0->fl_a = sat_sub(s0->fl_a, it->a0);
        s0->fl_d = sat_sub(s0->fl_d, it->d0);
        if (s1) {
            s1->fl_a = sat_sub(s1->fl_a, it->a1);
            s1->fl_d = sat_sub(s1->fl_d, it->d1);
        }
    }
    if (it->ok > 0) {
        if (write) {
            if (e->rounds < TRUST_ROUNDS)
                e->rounds++;
            e->u = it->u;
            s0->g_a = clamp32(it->ra0);
            s0->g_d = clamp32(it->rd0);
        } else {
            raise32(&s0->g_a, it->ra0);
            raise32(&s0->g_d, it->rd0);
        }
        s0->synced = 1;
        if (s1 && it->has_prev) {
            raise32(&s1->g_a, it->ra1);
            raise32(&s1->g_d, it->rd1);
            s1->synced = 1;
        }
    } else if (it->ok == 0 && write) { /* not known to be counted: send again */
        s0->pend_a = sat_add(s0->pend_a, it->a0);
        s0->pend_d = sat_add(s0->pend_d, it->d0);
        if (s1) {
            s1->pend_a = sat_add(s1->pend_a, it->a1);
            s1->pend_d = sat_add(s1->pend_d, it->d1);
        }
        if (!e->queued) {
            e->queued = 1;
            sh->queue[sh->nqueue++] = it->idx;
        }
    } /* ok < 0: an error reply (e.g. WRONGTYPE): the counts are dropped */
}

static void apply_all(gh_glimit_t *g, const item_t *items, uint32_t n, int write)
{
    uint32_t i = 0;
    while (i < n) {
        uint32_t si = items[i].shard;
        shard_t *sh = &g->shard[si];
        pthread_mutex_lock(&sh->mu);
        for (; i < n && items[i].shard == si; i++)
            apply(sh, &items[i], write);
        pthread_mutex_unlock(&sh->mu);
    }
}

/* One round, started at a tick shared by all nodes (tick_mono_ms: that tick on our
 * monotonic clock). Phase 1 sends every used key's counts at once (chunked pipelines);
 * phase 2, read_delay_ms after the tick, reads the totals again: by then every node
 * has sent its counts of the same tick, so all nodes see the same totals, and what
 * each node admits after the tick is what its share rule predicts (glimit.h). 0 or -1
 * (connection lost). */
static int sync_round(gh_glimit_t *g, uint64_t tick_mono_ms)
{
    uint32_t n = 0, cursor = 0;
    uint64_t t0 = mono_us(), io_us = 0;
    if (++g->round == 0) /* 0 is the stamp of a key never taken */
        g->round = 1;
    while (n < g->round_max && !atomic_load(&g->stop)) {
        uint32_t k = collect(g, g->items + n, GH_MIN((uint32_t)CHUNK, g->round_max - n), &cursor);
        if (!k)
            break;
        int rc = exchange(g, g->items + n, k, 1);
        apply_all(g, g->items + n, k, 1); /* on failure, items not read are re-queued */
        if (rc < 0)
            return -1;
        n += k;
    }
    g->next_shard = (g->next_shard + 1) % NSHARDS;
    if (n) {
        io_us = mono_us() - t0;
        wait_until(g, tick_mono_ms + g->read_delay_ms);
        t0 = mono_us();
        for (uint32_t i = 0; i < n && !atomic_load(&g->stop); i += CHUNK) {
            uint32_t k = GH_MIN((uint32_t)CHUNK, n - i);
            int rc = exchange(g, g->items + i, k, 0);
            apply_all(g, g->items + i, k, 0);
            if (rc < 0)
                return -1;
        }
        atomic_fetch_add(&g->keys_synced, n);
    } else if (mono_ms() - g->last_io_ms >= IDLE_PING_MS) {
        const char *argv[] = {"PING"};
        size_t len[] = {4};
        if (command(g, 1, argv, len, "PING") < 0 && !g->ctx)
            return -1;
    } else {
        return 0;
    }
    g->last_io_ms = mono_ms();
    atomic_store(&g->last_round_us, io_us + (mono_us() - t0));
    atomic_store(&g->up, 1);
    atomic_fetch_add(&g->syncs, 1);
    return 0;
}

/* Waits for the next tick: the next multiple of sync_ms of wall-clock time, so that
 * the nodes' rounds coincide. Returns the tick on the monotonic clock (ms). */
static uint64_t wait_tick(gh_glimit_t *g)
{
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t now_rt = (uint64_t)rt.tv_sec * 1000 + (uint64_t)rt.tv_nsec / 1000000;
    uint64_t tick = mono_ms() + (g->sync_ms - now_rt % g->sync_ms);
    wait_until(g, tick);
    return tick;
}

static void *sync_main(void *arg)
{
    gh_glimit_t *g = arg;
    /* hiredis writes with write(2): a Redis that went away must not kill the process
     * if the embedding program did not ignore SIGPIPE (a blocked one stays pending). */
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
    uint32_t backoff = 0;
    uint64_t seed = mono_us() ^ (uintptr_t)g;
    while (!atomic_load(&g->stop)) {
        if (!g->ctx) {
            int rc = connect_redis(g);
            if (!g->first_done) {
                pthread_mutex_lock(&g->mu);
                g->first_done = 1;
                pthread_cond_broadcast(&g->cond);
                pthread_mutex_unlock(&g->mu);
            }
            if (rc < 0) {
                atomic_store(&g->up, 0);
                backoff = backoff ? GH_MIN(backoff * 2, (uint32_t)BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
                seed = mix64(seed);
                wait_until(g, mono_ms() + backoff / 2 + seed % (backoff / 2 + 1)); /* jittered */
                continue;
            }
            backoff = 0;
        }
        uint64_t tick = wait_tick(g);
        if (atomic_load(&g->stop))
            break;
        sync_round(g, tick);
    }
    pthread_mutex_lock(&g->mu);
    redisContext *c = g->ctx;
    g->ctx = NULL;
    pthread_mutex_unlock(&g->mu);
    if (c)
        redisFree(c);
    return NULL;
}

/* ---- lifecycle ---- */

static void destroy(gh_glimit_t *g)
{
    for (int i = 0; i < NSHARDS; i++) {
        free(g->shard[i].e);
        free(g->shard[i].tag);
        free(g->shard[i].queue);
        pthread_mutex_destroy(&g->shard[i].mu);
    }
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
    free(g->items);
    free(g->host);
    free(g->password);
    free(g);
}

gh_glimit_t *gh_glimit_new_config(const gh_glimit_config_t *cfg)
{
    if (!cfg || !cfg->host || !*cfg->host)
        return NULL;
    gh_glimit_t *g = aligned_alloc(GH_CACHELINE, (sizeof(*g) + GH_CACHELINE - 1) / GH_CACHELINE * GH_CACHELINE);
    if (!g)
        return NULL;
    memset(g, 0, sizeof *g);
    g->port = cfg->port > 0 ? cfg->port : 6379;
    g->sync_ms = cfg->sync_ms ? cfg->sync_ms : 50;
    g->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 200;
    g->fail_open = cfg->fail_open;
    g->expected_nodes = cfg->expected_nodes ? cfg->expected_nodes : 2;
    g->round_max = cfg->round_max ? cfg->round_max : 8192;
    uint32_t cap = cfg->capacity ? cfg->capacity : 65536;
    uint32_t per_shard = (cap + NSHARDS - 1) / NSHARDS;
    uint32_t nsets = 1;
    while (nsets * WAYS < per_shard && nsets < (1u << 20))
        nsets <<= 1;
    g->nsets = nsets;

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->mu, NULL);
    int ok = 1;
    for (int i = 0; i < NSHARDS; i++) {
        shard_t *sh = &g->shard[i];
        pthread_mutex_init(&sh->mu, NULL);
        size_t nways = (size_t)nsets * WAYS;
        sh->e = aligned_alloc(GH_CACHELINE, nways * sizeof(entry_t));
        sh->tag = aligned_alloc(GH_CACHELINE, nways * sizeof(uint64_t));
        if (sh->e)
            memset(sh->e, 0, nways * sizeof(entry_t));
        if (sh->tag)
            memset(sh->tag, 0, nways * sizeof(uint64_t));
        sh->queue = calloc((size_t)nsets * WAYS, sizeof(uint32_t));
        ok = ok && sh->e && sh->tag && sh->queue;
    }
    g->host = strdup(cfg->host);
    g->password = cfg->password ? strdup(cfg->password) : NULL;
    g->items = calloc(g->round_max, sizeof(item_t));
    g->read_delay_ms = g->sync_ms / 4 ? g->sync_ms / 4 : 1;
    g->rng = mono_us() ^ (uintptr_t)g;
    if (!ok || !g->host || (cfg->password && !g->password) || !g->items) {
        destroy(g);
        return NULL;
    }
    if (pthread_create(&g->thread, NULL, sync_main, g) != 0) {
        destroy(g);
        return NULL;
    }
    /* Wait for the first connection attempt, so that the first requests are decided
     * on the connected path rather than as "disconnected" (fail-closed rejects). */
    uint64_t deadline = mono_ms() + 2ull * g->timeout_ms + 100;
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000), .tv_nsec = (long)(deadline % 1000) * 1000000};
    pthread_mutex_lock(&g->mu);
    while (!g->first_done)
        if (pthread_cond_timedwait(&g->cond, &g->mu, &ts) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&g->mu);
    return g;
}

gh_glimit_t *gh_glimit_new(const char *host, int port, const char *password_or_NULL, uint32_t sync_ms,
                           uint32_t timeout_ms, int fail_open)
{
    gh_glimit_config_t cfg = {.host = host,
                              .port = port,
                              .password = password_or_NULL,
                              .sync_ms = sync_ms,
                              .timeout_ms = timeout_ms,
                              .fail_open = fail_open};
    return gh_glimit_new_config(&cfg);
}

void gh_glimit_free(gh_glimit_t *g)
{
    if (!g)
        return;
    atomic_store(&g->stop, 1);
    pthread_mutex_lock(&g->mu);
    if (g->ctx)
        shutdown(g->ctx->fd, SHUT_RDWR); /* a read blocked on a hung Redis returns now */
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    destroy(g);
}

void gh_glimit_status(gh_glimit_t *g, gh_glimit_status_t *out)
{
    memset(out, 0, sizeof *out);
    if (!g)
        return;
    out->connected = atomic_load(&g->up);
    out->syncs = atomic_load(&g->syncs);
    out->sync_errors = atomic_load(&g->sync_errors);
    out->connects = atomic_load(&g->connects);
    out->keys_synced = atomic_load(&g->keys_synced);
    out->last_round_us = (uint32_t)GH_MIN(atomic_load(&g->last_round_us), (uint64_t)UINT32_MAX);
    pthread_mutex_lock(&g->mu);
    memcpy(out->last_error, g->last_error, sizeof out->last_error);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < NSHARDS; i++) {
        shard_t *sh = &g->shard[i];
        pthread_mutex_lock(&sh->mu);
        out->admitted += sh->admitted;
        out->rejected += sh->rejected;
        out->disconnected_decisions += sh->disc;
        out->local_decisions += sh->local;
        out->evictions += sh->evictions;
        out->keys += sh->nkeys;
        pthread_mutex_unlock(&sh->mu);
    }
}
