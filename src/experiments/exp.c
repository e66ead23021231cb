/* exp.c: see exp.h. Called by main.c, session.c, flags/ofrep.c, admin.c and the fuzz target;
 * calls evlog.c (the durable logs: STORE.evlog for first exposures and events, STORE.edges for
 * edge-value snapshots), stats.c (the statistics), SQLite (meta, and an older store's rows, read
 * or migrated once), jansson (results, the audit log, the event stream, and the fuzz check's
 * reference parser only: publish bodies are parsed by the purpose-built parser below),
 * events/stream.h, proxy/worker.h. */
#include "experiments/exp.h"
#include "events/stream.h"
#include "core/path.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "experiments/evlog.h"
#include "experiments/stats.h"
#include "protect/shtab.h"
#include "proxy/worker.h"

#define RING_RECS 32768u         /* records per producer ring (power of two; 64 bytes each: 2 MiB, one huge page) */
#define MAX_EVENTS 1000u         /* events in one publish */
#define MAX_NAME 256u            /* bytes of an event name, unit, event id */
#define MAX_PAYLOAD (16u << 10)  /* bytes of one event's payload (as JSON) */
#define FUTURE_MS (5 * 60 * 1000) /* an eventTime later than now + this is refused */
#define UNITS_MAX (16u << 20)    /* units per experiment */
#define PRE_MAX (1u << 20)       /* covariate entries of units not yet exposed */
#define SNAPSHOT_MS 2000
#define PERSIST_MS 200            /* first exposures are written at least this often ... */
#define PERSIST_BYTES (1u << 20)  /* ... or when this many bytes of them wait */
#define PATH_HEAD 24 /* bytes of an observation's path in its record ... */
#define PATH_CONT 63 /* ... and in a continuation record */
#define DRAIN_MAX (RING_RECS / 8) /* a loop whose fullest ring held fewer records waits ... */
#define WAIT_MS 10                /* ... this long, or until a publish */
#define JSON_MAX_DEPTH 2048       /* jansson's JSON_PARSER_MAX_DEPTH: the same bodies are refused */

/* log records (evlog.h frames hold these back to back; little-endian, as the host) */
#define LR_EXPOSE 'X' /* u8 type, u64 key_h (tenant\0experiment), u64 variant_h, u64 unit_h, i64 first_ms */
#define LR_EVENT 'E'  /* u8 type, u16 payload len, u64 tenant_h, u64 id_h[2], u64 name_h, u64 unit_h,
                         i64 time_ms, payload (JSON text) */
#define LR_EXPOSE_LEN 33u
#define LR_EVENT_LEN 51u

uint64_t gh_exp_hash(const char *p, size_t n)
{
    uint64_t h = gh_siphash24(0x6578706572696dull, 0x656e7473ull, p, n);
    return h ? h : 1; /* 0 marks an empty slot */
}


static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- records from workers */

enum { R_EXPOSE = 1, R_OBSERVE, R_CONT };

/* One cache line per record: a worker writes one per exposure and one per observed request, into
 * lines a ring's turn ago last touched (a miss each). An observation keeps as much of the request's
 * path as its tenant's longest path prefix needs (at most 64 bytes, config.c): the first PATH_HEAD
 * bytes in the record, the rest in the next slot, an R_CONT record. */
typedef union {
    struct {
        uint8_t kind;
        uint8_t path_len; /* R_OBSERVE: bytes of the path kept */
        uint16_t status;
        uint32_t latency_us;
        uint64_t tenant_h, unit_h, time_ms;
        uint64_t a; /* R_EXPOSE: flag_h; R_OBSERVE: bytes */
        union {
            uint64_t b; /* R_EXPOSE: variant_h */
            char path[PATH_HEAD];
        };
    };
    struct {
        uint8_t cont_kind; /* R_CONT */
        char more[PATH_CONT];
    };
} rec_t;
_Static_assert(sizeof(rec_t) == 64, "a ring record is one cache line");

typedef struct {
    uint64_t head __attribute__((aligned(64)));
    uint64_t tail __attribute__((aligned(64)));
    uint64_t head_seen; /* the producer's last read of head: reread only when the ring looks full */
    uint64_t dropped;
    rec_t *recs;
} ring_t;

/* A string view (data path: never NUL-terminated). */
typedef struct {
    const char *p;
    size_t n;
} sv_t;

/* A bump arena: a publish's batch lives in one (its body copy, events, decoded strings, errors),
 * freed in one shot. */
typedef struct achunk {
    struct achunk *next;
    size_t used, cap;
    max_align_t data[];
} achunk_t;

typedef struct {
    achunk_t *head;
} arena_t;

/* Chunks of ACHUNK_POOLED bytes are recycled (a publish of 1000 events needs ~0.7 MiB: from
 * malloc that is a fresh mmap and its page faults per publish); other sizes come from malloc. */
#define ACHUNK_POOLED (1u << 20)
#define ACHUNK_KEEP 8

static struct {
    pthread_mutex_t mu;
    achunk_t *free;
    uint32_t n;
} APOOL = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* n bytes from the arena; hint: the size of a new chunk if one is needed (0: 16 KiB). */
static void *arena_alloc_hint(arena_t *a, size_t n, size_t hint)
{
    n = (n + 15) & ~(size_t)15;
    achunk_t *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = GH_MAX(n, hint ? hint : (size_t)(16u << 10));
        c = NULL;
        if (cap > (64u << 10) && cap <= ACHUNK_POOLED) {
            cap = ACHUNK_POOLED;
            pthread_mutex_lock(&APOOL.mu);
            if ((c = APOOL.free))
                APOOL.free = c->next, APOOL.n--;
            pthread_mutex_unlock(&APOOL.mu);
        }
        if (!c && !(c = malloc(sizeof *c + cap)))
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void *arena_alloc(arena_t *a, size_t n) { return arena_alloc_hint(a, n, 0); }

static void arena_free(arena_t *a)
{
    for (achunk_t *c = a->head, *n; c; c = n) {
        n = c->next;
        if (c->cap == ACHUNK_POOLED) {
            pthread_mutex_lock(&APOOL.mu);
            if (APOOL.n < ACHUNK_KEEP) {
                c->next = APOOL.free;
                APOOL.free = c;
                APOOL.n++;
                c = NULL;
            }
            pthread_mutex_unlock(&APOOL.mu);
        }
        free(c);
    }
    a->head = NULL;
}

/* A publish handed to the pipeline: views into the batch's copy of the body (or its arena, for
 * strings with escapes). */
typedef struct pevent {
    sv_t name, unit, id, payload; /* payload: the event's JSON object as sent ("{}" when absent) */
    uint64_t name_h, unit_h, id_h, id_h2; /* id_h, id_h2: of tenant\0id (the idempotency key) */
    int64_t time_ms;
    uint8_t fresh; /* accepted by the commit (not a duplicate) */
} pevent_t;

typedef struct {
    uint32_t index;
    const char *reason; /* a constant */
} everr_t;

typedef struct batch {
    struct batch *next;
    gh_wtask_t task; /* the answer, run on the worker */
    uint32_t slot;
    char tenant[128];
    uint64_t tenant_h;
    pevent_t *ev;
    uint32_t nev;
    everr_t *errs; /* per-event problems found while parsing, by ascending index */
    uint32_t nerr;
    uint32_t accepted, duplicates;
    int failed;     /* the commit failed: 503 */
    gh_exp_done_fn done;
    void *arg;
    arena_t arena; /* this struct lives in it too */
} batch_t;

/* ---------------------------------------------------------------- aggregator state */

typedef struct {
    double n, conv, s1, s2, sx, sxx, sxy, sa, sb, saa, sbb, sab;
} vsum_t; /* per variant and metric */

#define NO_ROW UINT32_MAX

typedef struct {
    uint64_t unit_h; /* 0: empty */
    int64_t first_ms;
    uint32_t vi;     /* its row in vals, NO_ROW until it has a value (most units never have one) */
    uint8_t variant;
} unit_t;

/* A unit's row of values holds, per metric, its number (num), and its denominator (den) when it is a
 * ratio or its covariate (pre) when it has CUPED: xstate_t.col says where. */
enum { C_NUM, C_DEN, C_PRE };
#define NO_COL UINT16_MAX

typedef struct xstate {
    struct xstate *next;
    char *tenant, *id, *flag;
    uint64_t tenant_h, flag_h, key_h; /* key_h: of tenant and id */
    uint8_t replay;                   /* being rebuilt from the store */
    char **variants;
    uint64_t *variant_h;
    uint64_t *metric_h; /* of the metrics' names */
    double *weights;
    uint32_t nv;
    gh_conf_xmetric_t *metrics; /* owned copies of the definitions' strings are not needed: conf held */
    uint32_t nm;
    uint32_t *edge_m; /* the metrics with an edge-observed part (what a request's observation updates) */
    uint32_t nedge;
    int64_t start_ms, stop_ms;
    double alpha, n_star;
    /* units */
    unit_t *units;
    double *vals; /* vcap * rowlen, row vi of a unit: dense in the order units got their first value */
    uint16_t *col; /* nm x 3: the row's column of metric m's num, den, pre (NO_COL: it has none) */
    uint32_t rowlen;
    uint64_t *vuh; /* vcap: the unit of row vi (the snapshot walks rows in order, not the hash table) */
    uint8_t *vdirty; /* vcap: row vi's edge values changed since the last snapshot */
    uint32_t cap, count, vcap, nrows;
    double *vn;   /* units per variant */
    vsum_t *sums; /* nv * nm */
    uint64_t exposures, observations, unattributed, dropped_units, late; /* observations: records of its tenant's requests */
    int live; /* in the current configuration */
} xstate_t;

typedef struct {
    uint64_t key; /* hash(exp, unit, metric), 0 empty */
    double v;
} pre_t;

/* The idempotency set: 128-bit identities of every accepted event (tenant\0eventId), linear
 * probing; a = 0 marks an empty slot (gh_exp_hash is never 0). */
typedef struct {
    uint64_t a, b;
} idk_t;

static struct {
    pthread_mutex_t mu; /* the state below, against results readers */
    pthread_mutex_t qmu; /* publishes */
    pthread_cond_t qcv;
    batch_t *queue, **qtail;
    pthread_t thread;
    int running, stop, replaying;
    ring_t *rings;
    uint32_t nrings;
    sqlite3 *db; /* meta, and an older store's rows (migrated, or edge values read at start) */
    gh_evlog_t *edges; /* edge-value snapshots */
    char edges_path[1100];
    gh_evlog_t *log; /* first exposures and accepted events */
    int log_failed;  /* the last write failed: logged once */
    FILE *audit;
    gh_conf_t *conf, *next_conf;
    xstate_t *xs;
    pre_t *pre;
    uint32_t npre;
    idk_t *ids;
    uint64_t ids_cap, ids_n;
    int ids_built; /* the set was rebuilt from the log (first replay) */
    int64_t last_snapshot, last_persist;
    uint64_t dropped_logged;
    int64_t dropped_log_ms;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .qmu = PTHREAD_MUTEX_INITIALIZER, .qcv = PTHREAD_COND_INITIALIZER};

int gh_exp_running(void) { return P.running; }

/* Big tables (units, values, the idempotency set) come from mmap, aligned to 2 MiB and with
 * transparent huge pages asked for: they are touched at random, and with 4-KiB pages a lookup is
 * a TLB miss besides the cache miss (one that a prefetch does not hide); 4-KiB page faults on a
 * growing table also cost more than its rehash on this VM. Small ones from calloc. Both zeroed. */
#define BIG_MIN (2u << 20)
#define HUGE_PAGE (2u << 20)

static size_t big_len(size_t n) { return (n + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1); }

static void *big_alloc(size_t n)
{
    if (n < BIG_MIN)
        return calloc(1, n ? n : 1);
    size_t len = big_len(n);
    uint8_t *p = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (p + len + HUGE_PAGE > a + len)
        munmap(a + len, (size_t)(p + len + HUGE_PAGE - (a + len)));
    madvise(a, len, MADV_HUGEPAGE);
    return a;
}

static void big_free(void *p, size_t n)
{
    if (!p)
        return;
    if (n < BIG_MIN)
        free(p);
    else
        munmap(p, big_len(n));
}

/* ---- the idempotency set ---- */

/* Insert (a, b): 1 when new, 0 when there, -1 when out of memory. */
static int ids_add(uint64_t a, uint64_t b)
{
    if ((P.ids_n + 1) * 4 > P.ids_cap * 3) {
        uint64_t nc = P.ids_cap ? P.ids_cap * 2 : 1u << 16;
        idk_t *nt = big_alloc(nc * sizeof *nt);
        if (!nt)
            return -1;
        for (uint64_t i = 0; i < P.ids_cap; i++) {
            if (!P.ids[i].a)
                continue;
            uint64_t j = P.ids[i].b & (nc - 1);
            while (nt[j].a)
                j = (j + 1) & (nc - 1);
            nt[j] = P.ids[i];
        }
        big_free(P.ids, P.ids_cap * sizeof *P.ids);
        P.ids = nt;
        P.ids_cap = nc;
    }
    uint64_t mask = P.ids_cap - 1, i = b & mask;
    for (;; i = (i + 1) & mask) {
        if (!P.ids[i].a) {
            P.ids[i] = (idk_t){a, b};
            P.ids_n++;
            return 1;
        }
        if (P.ids[i].a == a && P.ids[i].b == b)
            return 0;
    }
}

/* Remove (a, b) (a commit that failed): backward-shift deletion keeps the probe chains whole. */
static void ids_del(uint64_t a, uint64_t b)
{
    if (!P.ids_cap)
        return;
    uint64_t mask = P.ids_cap - 1, i = b & mask;
    for (;; i = (i + 1) & mask) {
        if (!P.ids[i].a)
            return;
        if (P.ids[i].a == a && P.ids[i].b == b)
            break;
    }
    for (uint64_t j = i;;) {
        j = (j + 1) & mask;
        if (!P.ids[j].a)
            break;
        uint64_t home = P.ids[j].b & mask;
        /* j's entry may move to i when its home is not in (i, j] (cyclically) */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            P.ids[i] = P.ids[j];
            i = j;
        }
    }
    P.ids[i] = (idk_t){0, 0};
    P.ids_n--;
}

/* ---- numbers in a payload (validated JSON text: by the parser below, or from the log) ---- */

/* Skip one JSON value at p (< e) of already validated text; returns the end (never past e). */
static const char *skip_json(const char *p, const char *e)
{
    int depth = 0;
    while (p < e) {
        char c = *p;
        if (c == '"') {
            for (p++; p < e && *p != '"'; p++)
                if (*p == '\\')
                    p++;
            p++;
            if (!depth)
                return p < e ? p : e;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth <= 0)
                return p + 1;
        } else if (!depth && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return p;
        }
        p++;
    }
    return e;
}

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static size_t unescape(const char *s, size_t n, char *out, size_t cap);

/* The number a top-level member key of the JSON object text pl has, or NAN (absent, not a
 * number). The same as jansson's json_number_value(json_object_get(obj, key)). */
static double pl_number(sv_t pl, const char *key, size_t klen)
{
    const char *p = pl.p, *e = pl.p + pl.n;
    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        return NAN;
    p++;
    for (;;) {
        p = skip_ws(p, e);
        if (p >= e || *p != '"')
            return NAN;
        const char *ks = ++p;
        int esc = 0;
        for (; p < e && *p != '"'; p++)
            if (*p == '\\')
                esc = 1, p++;
        if (p >= e)
            return NAN;
        size_t kn = (size_t)(p - ks);
        p = skip_ws(p + 1, e);
        if (p >= e || *p != ':')
            return NAN;
        p = skip_ws(p + 1, e);
        int match;
        if (!esc) {
            match = kn == klen && !memcmp(ks, key, klen);
        } else {
            char kb[256];
            size_t dn = kn < sizeof kb ? unescape(ks, kn, kb, sizeof kb) : (size_t)-1;
            match = dn == klen && !memcmp(kb, key, klen);
        }
        if (match) {
            if (p >= e || !(*p == '-' || (*p >= '0' && *p <= '9')))
                return NAN;
            const char *ns = p;
            uint64_t iv = 0;
            int neg = *p == '-', digits = 0, plain = 1;
            if (neg)
                p++;
            for (; p < e && *p >= '0' && *p <= '9'; p++, digits++)
                iv = iv * 10 + (uint64_t)(*p - '0');
            if (p < e && (*p == '.' || *p == 'e' || *p == 'E'))
                plain = 0;
            if (plain && digits <= 15) /* exact in a double: (double)int64, as jansson */
                return neg ? -(double)iv : (double)iv;
            while (p < e && (*p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-' || (*p >= '0' && *p <= '9')))
                p++;
            char nb[400];
            size_t nl = (size_t)(p - ns);
            if (nl >= sizeof nb)
                return NAN; /* (never a number jansson keeps as a finite double here) */
            memcpy(nb, ns, nl);
            nb[nl] = 0;
            if (plain) /* an integer: jansson keeps json_int_t, then converts */
                return (double)strtoll(nb, NULL, 10);
            return strtod(nb, NULL);
        }
        p = skip_ws(skip_json(p, e), e);
        if (p >= e || *p != ',')
            return NAN;
        p++;
    }
}

/* ---- metric values of a record ---- */

static int path_match(const gh_conf_xsource_t *s, const char *path, size_t n)
{
    return n >= s->path_len && !memcmp(path, s->path, s->path_len);
}

/* The numbers of one event's payload fields, looked up once per event however many metrics use
 * them. */
typedef struct {
    const char *field[4];
    double v[4];
    uint32_t n;
} fcache_t;

/* The value a source takes from an event (name_h, payload), or NAN when it does not apply. */
static double event_value(const gh_conf_xsource_t *s, uint64_t name_h, sv_t payload, fcache_t *fc)
{
    if (s->source != GH_XS_EVENT || s->event_h != name_h)
        return NAN;
    if (!s->field)
        return 1;
    for (uint32_t i = 0; i < fc->n; i++)
        if (fc->field[i] == s->field)
            return fc->v[i];
    double v = pl_number(payload, s->field, strlen(s->field));
    if (fc->n < 4) {
        fc->field[fc->n] = s->field;
        fc->v[fc->n++] = v;
    }
    return v;
}

static double observe_value(const gh_conf_xsource_t *s, const rec_t *r, const char *path)
{
    switch (s->source) {
    case GH_XS_PATH:
        return path_match(s, path, r->path_len) ? 1 : NAN;
    case GH_XS_REQUESTS:
        return 1;
    case GH_XS_ERRORS:
        return r->status >= 500 ? 1 : 0;
    case GH_XS_LATENCY:
        return r->latency_us / 1000.0; /* ms, with microsecond resolution */
    case GH_XS_BYTES:
        return (double)r->a;
    default:
        return NAN;
    }
}


/* ---- units ---- */

static unit_t *unit_find(xstate_t *x, uint64_t h, uint32_t *idx)
{
    if (!x->cap)
        return NULL;
    uint32_t i = (uint32_t)h & (x->cap - 1);
    for (;; i = (i + 1) & (x->cap - 1)) {
        if (!x->units[i].unit_h)
            return NULL;
        if (x->units[i].unit_h == h) {
            *idx = i;
            return &x->units[i];
        }
    }
}

static size_t vals_row(const xstate_t *x) { return (size_t)x->rowlen * sizeof(double); }

/* The units table doubles; the values stay where they are (dense, by unit number). */
static int units_grow(xstate_t *x)
{
    uint32_t ncap = x->cap ? x->cap * 2 : 1024;
    unit_t *nu = big_alloc((size_t)ncap * sizeof *nu);
    if (!nu)
        return -1;
    for (uint32_t i = 0; i < x->cap; i++) {
        if (!x->units[i].unit_h)
            continue;
        uint32_t j = (uint32_t)x->units[i].unit_h & (ncap - 1);
        while (nu[j].unit_h)
            j = (j + 1) & (ncap - 1);
        nu[j] = x->units[i];
    }
    big_free(x->units, (size_t)x->cap * sizeof *x->units);
    x->units = nu;
    x->cap = ncap;
    return 0;
}

static int vals_grow(xstate_t *x)
{
    uint32_t nc = x->vcap ? x->vcap * 2 : 1024;
    double *nv = big_alloc((size_t)nc * vals_row(x));
    uint64_t *nuh = big_alloc((size_t)nc * sizeof *nuh);
    uint8_t *nd = big_alloc(nc);
    if (!nv || !nuh || !nd) {
        big_free(nv, (size_t)nc * vals_row(x));
        big_free(nuh, (size_t)nc * sizeof *nuh);
        big_free(nd, nc);
        return -1;
    }
    if (x->vals) {
        memcpy(nv, x->vals, (size_t)x->nrows * vals_row(x));
        memcpy(nuh, x->vuh, (size_t)x->nrows * sizeof *nuh);
        memcpy(nd, x->vdirty, x->nrows);
    }
    big_free(x->vals, (size_t)x->vcap * vals_row(x));
    big_free(x->vuh, (size_t)x->vcap * sizeof *x->vuh);
    big_free(x->vdirty, x->vcap);
    x->vals = nv;
    x->vuh = nuh;
    x->vdirty = nd;
    x->vcap = nc;
    return 0;
}

static uint64_t pre_key(const xstate_t *x, uint64_t unit_h, uint32_t m)
{
    uint64_t k[3] = {x->key_h, unit_h, m};
    return gh_siphash24(1, 2, k, sizeof k) | 1;
}

static pre_t *pre_slot(uint64_t key, int create)
{
    if (!P.pre && !(P.pre = big_alloc(PRE_MAX * 2 * sizeof *P.pre)))
        return NULL;
    uint32_t mask = PRE_MAX * 2 - 1, i = (uint32_t)key & mask;
    for (uint32_t probe = 0; probe < 64; probe++, i = (i + 1) & mask) {
        if (P.pre[i].key == key)
            return &P.pre[i];
        if (!P.pre[i].key) {
            if (!create || P.npre >= PRE_MAX)
                return NULL;
            P.npre++;
            P.pre[i].key = key;
            P.pre[i].v = 0;
            return &P.pre[i];
        }
    }
    return NULL;
}

/* The row of unit ui's values, made for it now if it has none (its values all 0 so far): NULL, and
 * counted as a dropped unit, when out of memory. */
static double *unit_row(xstate_t *x, uint32_t ui)
{
    unit_t *u = &x->units[ui];
    if (u->vi == NO_ROW) {
        if (x->nrows >= x->vcap && vals_grow(x) < 0) {
            x->dropped_units++;
            return NULL;
        }
        u->vi = x->nrows++;
        x->vuh[u->vi] = u->unit_h;
    }
    return &x->vals[(size_t)u->vi * x->rowlen];
}

/* A unit's value of metric m changes by (dnum, dden, dpre): the variant's sums follow. (A metric
 * without a den or pre column keeps those at 0.) */
static void unit_add(xstate_t *x, uint32_t ui, uint32_t m, double dnum, double dden, double dpre)
{
    unit_t *u = &x->units[ui];
    double *row = unit_row(x, ui);
    if (!row)
        return;
    const uint16_t *c = &x->col[m * 3];
    double none[2] = {0, 0}, *vn = &row[c[C_NUM]], *vd = c[C_DEN] != NO_COL ? &row[c[C_DEN]] : &none[0],
           *vp = c[C_PRE] != NO_COL ? &row[c[C_PRE]] : &none[1];
    if (c[C_DEN] == NO_COL)
        dden = 0;
    if (c[C_PRE] == NO_COL)
        dpre = 0;
    vsum_t *s = &x->sums[(size_t)u->variant * x->nm + m];
    double y0 = *vn, y1 = y0 + dnum, d0 = *vd, d1 = d0 + dden, p0 = *vp, p1 = p0 + dpre;
    if (y0 <= 0 && y1 > 0)
        s->conv += 1;
    else if (y0 > 0 && y1 <= 0)
        s->conv -= 1;
    s->s1 += y1 - y0;
    s->s2 += y1 * y1 - y0 * y0;
    s->sx += p1 - p0;
    s->sxx += p1 * p1 - p0 * p0;
    s->sxy += p1 * y1 - p0 * y0;
    s->sa += y1 - y0;
    s->sb += d1 - d0;
    s->saa += y1 * y1 - y0 * y0;
    s->sbb += d1 * d1 - d0 * d0;
    s->sab += y1 * d1 - y0 * d0;
    *vn = y1;
    *vd = d1;
    *vp = p1;
}


static int64_t expose(xstate_t *x, uint64_t unit_h, uint32_t v, int64_t ms, int persist)
{
    uint32_t idx;
    unit_t *u = unit_find(x, unit_h, &idx);
    if (u) {
        if (ms < u->first_ms) /* an earlier exposure came late (or replayed out of order) */
            u->first_ms = ms;
        return idx;
    }
    if (x->count >= UNITS_MAX) {
        x->dropped_units++;
        return -1;
    }
    if ((x->count + 1) * 4 > x->cap * 3 && units_grow(x) < 0) {
        x->dropped_units++;
        return -1;
    }
    idx = (uint32_t)unit_h & (x->cap - 1);
    while (x->units[idx].unit_h)
        idx = (idx + 1) & (x->cap - 1);
    u = &x->units[idx];
    *u = (unit_t){.unit_h = unit_h, .first_ms = ms, .vi = NO_ROW, .variant = (uint8_t)v};
    x->count++;
    x->vn[v] += 1;
    for (uint32_t m = 0; P.npre && m < x->nm; m++) { /* its covariates so far */
        /* (none kept, the common case: no lookup, which is a TLB and cache miss in a 32-MiB table) */
        if (!x->metrics[m].cuped)
            continue;
        pre_t *p = pre_slot(pre_key(x, unit_h, m), 0);
        if (p) {
            unit_add(x, idx, m, 0, 0, p->v);
            p->v = 0;
        }
    }
    if (persist && P.log) { /* to the log's pending frame: written within PERSIST_MS or with the next commit */
        uint8_t *r = gh_evlog_put(P.log, LR_EXPOSE_LEN);
        if (r) {
            r[0] = LR_EXPOSE;
            memcpy(r + 1, &x->key_h, 8);
            memcpy(r + 9, &x->variant_h[v], 8);
            memcpy(r + 17, &unit_h, 8);
            memcpy(r + 25, &ms, 8);
        }
    }
    if (P.audit && persist) {
        json_t *ln = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s}", "type", "exposure", "time_ms", (json_int_t)ms, "tenant",
                               x->tenant, "experiment", x->id, "variant", x->variants[v], "unit_hash", "");
        char hx[20];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)unit_h);
        json_object_set_new(ln, "unit_hash", json_string(hx));
        char *txt = ln ? json_dumps(ln, JSON_COMPACT) : NULL;
        if (txt)
            fprintf(P.audit, "%s\n", txt);
        free(txt);
        json_decref(ln);
    }
    return idx;
}


static xstate_t *xs_by(uint64_t tenant_h, const char *tenant, const char *id)
{
    for (xstate_t *x = P.xs; x; x = x->next)
        if (x->tenant_h == tenant_h && !strcmp(x->tenant, tenant) && !strcmp(x->id, id))
            return x;
    return NULL;
}

static void apply_expose(const rec_t *r)
{
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (!x->live || x->tenant_h != r->tenant_h || x->flag_h != r->a)
            continue;
        if ((x->start_ms && (int64_t)r->time_ms < x->start_ms) || (x->stop_ms && (int64_t)r->time_ms >= x->stop_ms))
            continue;
        for (uint32_t v = 0; v < x->nv; v++)
            if (x->variant_h[v] == r->b) {
                x->exposures++;
                expose(x, r->unit_h, v, (int64_t)r->time_ms, 1);
                break;
            }
    }
}

/* cont: the record's continuation (R_CONT) when its path is longer than PATH_HEAD. */
static void apply_observe(const rec_t *r, const rec_t *cont)
{
    char buf[PATH_HEAD + PATH_CONT];
    const char *path = r->path;
    if (cont) {
        memcpy(buf, r->path, PATH_HEAD);
        memcpy(buf + PATH_HEAD, cont->more, r->path_len - PATH_HEAD);
        path = buf;
    }
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (!x->live || x->tenant_h != r->tenant_h)
            continue;
        x->observations++;
        uint32_t idx;
        unit_t *u = unit_find(x, r->unit_h, &idx);
        if (!u || (int64_t)r->time_ms < u->first_ms)
            continue;
        for (uint32_t k = 0; k < x->nedge; k++) {
            uint32_t m = x->edge_m[k];
            const gh_conf_xmetric_t *mt = &x->metrics[m];
            double dn = gh_conf_xpart_edge(mt, 0) ? observe_value(&mt->num, r, path) : NAN;
            double dd = gh_conf_xpart_edge(mt, 1) ? observe_value(&mt->den, r, path) : NAN;
            if (isnan(dn) && isnan(dd))
                continue;
            unit_add(x, idx, m, isnan(dn) ? 0 : dn, isnan(dd) ? 0 : dd, 0);
            if (u->vi != NO_ROW)
                x->vdirty[u->vi] = 1;
        }
    }
}

/* One committed (new) event: the experiments of its tenant whose metrics use it. */

/* One committed (new) event: the experiments of its tenant whose metrics use it. */
static void apply_event(uint64_t tenant_h, uint64_t name_h, uint64_t unit_h, int64_t time_ms, sv_t payload)
{
    fcache_t fc;
    fc.n = 0;
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (x->tenant_h != tenant_h || (P.replaying && !x->replay))
            continue;
        uint32_t idx;
        unit_t *u = unit_find(x, unit_h, &idx);
        int used = 0;
        for (uint32_t m = 0; m < x->nm; m++) {
            const gh_conf_xmetric_t *mt = &x->metrics[m];
            double dn = event_value(&mt->num, name_h, payload, &fc);
            double dd = mt->kind == GH_XK_RATIO ? event_value(&mt->den, name_h, payload, &fc) : NAN;
            if (isnan(dn) && isnan(dd))
                continue;
            used = 1;
            if (u && time_ms >= u->first_ms) {
                unit_add(x, idx, m, isnan(dn) ? 0 : dn, isnan(dd) ? 0 : dd, 0);
            } else if (mt->cuped && !isnan(dn)) { /* before exposure: the covariate */
                if (u) {
                    unit_add(x, idx, m, 0, 0, dn);
                    x->late++;
                } else {
                    pre_t *p = pre_slot(pre_key(x, unit_h, m), 1);
                    if (p)
                        p->v += dn;
                }
            }
        }
        if (used && !u)
            x->unattributed++;
    }
}

/* ---------------------------------------------------------------- the store */

/* An accepted event as a log record (in the pending frame); 0, or -1 when out of memory. */
static int put_event(gh_evlog_t *l, uint64_t tenant_h, uint64_t id1, uint64_t id2, uint64_t name_h, uint64_t unit_h,
                     int64_t time_ms, sv_t payload)
{
    uint16_t pn = (uint16_t)payload.n;
    uint8_t *r = gh_evlog_put(l, LR_EVENT_LEN + pn);
    if (!r)
        return -1;
    r[0] = LR_EVENT;
    memcpy(r + 1, &pn, 2);
    memcpy(r + 3, &tenant_h, 8);
    memcpy(r + 11, &id1, 8);
    memcpy(r + 19, &id2, 8);
    memcpy(r + 27, &name_h, 8);
    memcpy(r + 35, &unit_h, 8);
    memcpy(r + 43, &time_ms, 8);
    memcpy(r + LR_EVENT_LEN, payload.p, pn);
    return 0;
}

/* The identity of event id of tenant: SipHash-2-4-128 (a fixed key: it is persisted) of the
 * tenant (length-prefixed) and the id. 128 bits: at 1e9 events the chance that two distinct ids
 * collide is ~1e-21, against ~3e-2 with 64 bits. a is never 0 (0 marks an empty slot). */
static void event_ident(const char *tenant, size_t tlen, sv_t id, uint64_t *a, uint64_t *b)
{
    gh_keyhash_t k;
    gh_keyhash_init_key(&k, 0x6964656d706f74ull, 0x656e63792d6578ull);
    gh_keyhash_add_str(&k, (gh_str_t){tenant, tlen});
    gh_keyhash_add(&k, id.p, id.n);
    gh_keyhash_final(&k, a, b);
    if (!*a)
        *a = 1;
}

static int db_exec(const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(P.db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        gh_log(GH_LOG_ERROR, "experiments store: %s: %s", msg ? msg : sqlite3_errstr(rc), sql);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* The SQLite store keeps meta only. (Before the logs it held units, events and the snapshots of
 * edge values too: see migrate_store and load_edges.) */
static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version','2');";

static int db_open(const char *path, char *err, size_t errcap)
{
    gh_mkdir_parents(path);
    int rc = sqlite3_open_v2(path, &P.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errcap, "experiments store %s: %s", path, P.db ? sqlite3_errmsg(P.db) : sqlite3_errstr(rc));
        sqlite3_close(P.db);
        P.db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(P.db, 5000);
    if (db_exec(SCHEMA) < 0) {
        snprintf(err, errcap, "experiments store %s: %s", path, sqlite3_errmsg(P.db));
        return -1;
    }
    return 0;
}

static int64_t db_count(const char *table)
{
    char sql[160];
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    if (sqlite3_prepare_v2(P.db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st); /* (no such table: an error, n = 0) */
    return n;
}

/* A store of the previous version (units and events in SQLite) gets its rows copied into a new log
 * once, in the order the old start replayed them (all units, then events by id): written to
 * LOG.migrating, fsynced, renamed to LOG, then the rows are deleted. A crash before the rename
 * leaves the old store as it was (the next start migrates again); after it, the log is used and
 * rows left over are ignored. */
static int migrate_store(const char *logpath, char *err, size_t errcap)
{
    struct stat sb;
    if (stat(logpath, &sb) == 0)
        return 0;
    int64_t nu = db_count("units"), ne = db_count("events");
    if (!nu && !ne)
        return 0;
    char tmp[1200];
    if (snprintf(tmp, sizeof tmp, "%s.migrating", logpath) >= (int)sizeof tmp)
        return GH_EINVAL;
    unlink(tmp);
    gh_evlog_t *l = NULL;
    int rc = gh_evlog_open(&l, tmp, NULL, err, errcap);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = NULL;
    uint64_t wu = 0, we = 0;
    if (sqlite3_prepare_v2(P.db, "SELECT tenant, experiment, unit_h, variant, first_ms FROM units", -1, &st, NULL) ==
        SQLITE_OK) {
        while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
            const char *tn = (const char *)sqlite3_column_text(st, 0), *xn = (const char *)sqlite3_column_text(st, 1),
                       *vn = (const char *)sqlite3_column_text(st, 3);
            if (!tn || !xn || !vn)
                continue;
            char kb[512];
            int kl = snprintf(kb, sizeof kb, "%s%c%s", tn, 0, xn);
            uint64_t key_h = gh_exp_hash(kb, (size_t)GH_MIN(kl, (int)sizeof kb - 1)), var_h = gh_exp_hash(vn, strlen(vn)),
                     unit_h = (uint64_t)sqlite3_column_int64(st, 2);
            int64_t ms = sqlite3_column_int64(st, 4);
            uint8_t *r = gh_evlog_put(l, LR_EXPOSE_LEN);
            if (!r) {
                rc = GH_ENOMEM;
                break;
            }
            r[0] = LR_EXPOSE;
            memcpy(r + 1, &key_h, 8);
            memcpy(r + 9, &var_h, 8);
            memcpy(r + 17, &unit_h, 8);
            memcpy(r + 25, &ms, 8);
            wu++;
            if (gh_evlog_pending(l) >= (4u << 20))
                rc = gh_evlog_flush(l, 0);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == 0 && sqlite3_prepare_v2(P.db, "SELECT tenant, event_id, name, unit, time_ms, payload FROM events ORDER BY id",
                                      -1, &st, NULL) == SQLITE_OK) {
        while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
            const char *tn = (const char *)sqlite3_column_text(st, 0), *id = (const char *)sqlite3_column_text(st, 1),
                       *nm = (const char *)sqlite3_column_text(st, 2), *un = (const char *)sqlite3_column_text(st, 3),
                       *pl = (const char *)sqlite3_column_text(st, 5);
            if (!tn || !id || !nm || !un || !pl || strlen(pl) > 65535)
                continue;
            uint64_t a, b;
            event_ident(tn, strlen(tn), (sv_t){id, strlen(id)}, &a, &b);
            if (put_event(l, gh_exp_hash(tn, strlen(tn)), a, b, gh_exp_hash(nm, strlen(nm)), gh_exp_hash(un, strlen(un)),
                          sqlite3_column_int64(st, 4), (sv_t){pl, strlen(pl)}) < 0) {
                rc = GH_ENOMEM;
                break;
            }
            we++;
            if (gh_evlog_pending(l) >= (4u << 20))
                rc = gh_evlog_flush(l, 0);
        }
    }
    sqlite3_finalize(st);
    if (rc == 0)
        rc = gh_evlog_flush(l, 1);
    gh_evlog_close(l);
    if (rc == 0 && rename(tmp, logpath) < 0)
        rc = -errno;
    if (rc < 0) {
        snprintf(err, errcap, "experiments store: migrating to the log %s: %s", logpath, gh_err_msg(rc));
        unlink(tmp);
        return rc;
    }
    char dir[1200];
    snprintf(dir, sizeof dir, "%.1100s", logpath);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    int dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    db_exec("BEGIN; DELETE FROM units; DELETE FROM events;"
            " INSERT OR REPLACE INTO meta VALUES('migrated_to_log', datetime('now')); COMMIT;");
    gh_log(GH_LOG_INFO, "experiments: migrated %llu units and %llu events of the SQLite store to the log %s",
           (unsigned long long)wu, (unsigned long long)we, logpath);
    return 0;
}

/* Edge values: per unit and edge metric the edge parts of its value (the event parts come back
 * from the log). Every SNAPSHOT_MS the changed ones are appended to a second log, STORE.edges
 * (records 'W' below; the last record of a unit and metric wins), with one write(2) and no
 * fdatasync (a kill -9 loses at most
 * SNAPSHOT_MS of edge observations, as before). When the file holds 4 times what is live it is
 * rewritten with the live values (written aside, fsynced, renamed). An older store's SQLite
 * snapshots (table unit_edge) are read at start before this file. */
#define LR_EDGE 'V' /* one unit and metric (what earlier builds wrote; still read) */
#define LR_EDGE_LEN 41u
/* The snapshot record written now: one experiment and up to EDGE_BATCH units, only the edge parts
 * of its metrics. 'W', u64 key_h, u8 nparts, nparts x (u64 metric name hash, u8 0: num / 1: den),
 * u32 nunits, then per unit: u64 unit_h and nparts f64 values. The record's layout comes from its
 * own header, so a configuration that changed since it was written still reads it (parts of
 * metrics that are gone are skipped). 8 + 8 x nparts bytes per unit: 32 for the bench's two edge
 * metrics (a path conversion and a latency ratio), where 'V' took 82. */
#define LR_EDGES 'W'
#define EDGE_BATCH 65536u
#define EDGE_PARTS_MAX (2 * GH_EXP_METRICS_MAX) /* every metric a ratio of two edge values */

/* The edge parts of x's metrics: (metric, 0 num / 1 den) in order; their count. */
static uint32_t edge_parts(const xstate_t *x, uint32_t *pm, uint8_t *pf)
{
    uint32_t np = 0;
    for (uint32_t m = 0; m < x->nm && np + 2 <= EDGE_PARTS_MAX; m++) {
        const gh_conf_xmetric_t *mt = &x->metrics[m];
        if (gh_conf_xpart_edge(mt, 0))
            pm[np] = m, pf[np++] = 0;
        if (gh_conf_xpart_edge(mt, 1))
            pm[np] = m, pf[np++] = 1;
    }
    return np;
}

/* Snapshot records of x's rows (all, or the dirty ones, clearing their flags) into l, a record per
 * EDGE_BATCH units; the frame is written whenever 4 MiB are pending. 0, or -1 (out of memory or
 * a failed write). */
static int put_edges(gh_evlog_t *l, xstate_t *x, int only_dirty)
{
    uint32_t pm[EDGE_PARTS_MAX];
    uint8_t pf[EDGE_PARTS_MAX];
    uint32_t np = edge_parts(x, pm, pf);
    if (!np)
        return 0;
    size_t head = 1 + 8 + 1 + 9 * (size_t)np + 4, per = 8 + 8 * (size_t)np;
    for (uint32_t vi = 0; vi < x->nrows;) {
        uint32_t n = 0, end = vi; /* this record's rows: [vi, end) holds n of them to write */
        for (; end < x->nrows && n < EDGE_BATCH; end++)
            n += !only_dirty || x->vdirty[end];
        if (n) {
            uint8_t *r = gh_evlog_put(l, head + per * n);
            if (!r)
                return -1;
            r[0] = LR_EDGES;
            memcpy(r + 1, &x->key_h, 8);
            r[9] = (uint8_t)np;
            uint8_t *q = r + 10;
            for (uint32_t i = 0; i < np; i++, q += 9) {
                memcpy(q, &x->metric_h[pm[i]], 8);
                q[8] = pf[i];
            }
            memcpy(q, &n, 4);
            q += 4;
            for (uint32_t i = vi; i < end; i++) { /* rows in order: values, units and flags read sequentially */
                if (only_dirty && !x->vdirty[i])
                    continue;
                x->vdirty[i] = 0;
                memcpy(q, &x->vuh[i], 8);
                q += 8;
                const double *v = &x->vals[(size_t)i * x->rowlen];
                for (uint32_t k = 0; k < np; k++, q += 8) /* (pf: 0 num, 1 den: C_NUM, C_DEN) */
                    memcpy(q, &v[x->col[pm[k] * 3 + pf[k]]], 8);
            }
        }
        vi = end;
        if (gh_evlog_pending(l) >= (4u << 20) && gh_evlog_flush(l, 0) < 0)
            return -1;
    }
    return 0;
}

/* Bytes of snapshot records that hold every live value: what the file would be if rewritten. */
static uint64_t edges_live_bytes(void)
{
    uint64_t live = 8;
    for (xstate_t *x = P.xs; x; x = x->next) {
        uint32_t pm[EDGE_PARTS_MAX];
        uint8_t pf[EDGE_PARTS_MAX];
        uint32_t np = edge_parts(x, pm, pf);
        if (np)
            live += (uint64_t)x->nrows * (8 + 8 * np) + (x->nrows / EDGE_BATCH + 1) * (14 + 9 * np);
    }
    return live;
}

/* Rewrite STORE.edges with the live values only. */
static void compact_edges(void)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", P.edges_path);
    unlink(tmp);
    gh_evlog_t *n = NULL;
    char err[512];
    int rc = gh_evlog_open(&n, tmp, NULL, err, sizeof err);
    for (xstate_t *x = P.xs; rc == 0 && x; x = x->next)
        if (put_edges(n, x, 0) < 0)
            rc = GH_ENOMEM;
    if (rc == 0)
        rc = gh_evlog_flush(n, 1);
    gh_evlog_close(n);
    if (rc == 0 && rename(tmp, P.edges_path) < 0)
        rc = -errno;
    if (rc < 0) {
        gh_log(GH_LOG_ERROR, "experiments edge snapshots %s: compaction failed (%s): the file keeps growing",
               P.edges_path, rc == GH_ENOMEM ? "out of memory or a failed write" : n ? gh_err_msg(rc) : err);
        unlink(tmp);
        return;
    }
    gh_evlog_close(P.edges);
    P.edges = NULL;
    if (gh_evlog_open(&P.edges, P.edges_path, NULL, err, sizeof err) < 0)
        gh_log(GH_LOG_ERROR, "experiments edge snapshots: %s (no more snapshots until a restart)", err);
}

/* Changed edge values to STORE.edges (every SNAPSHOT_MS, and at stop). */
static void persist_edges(int64_t now, int sync)
{
    if (now - P.last_snapshot < SNAPSHOT_MS || !P.edges)
        return;
    P.last_snapshot = now;
    int bad = 0;
    for (xstate_t *x = P.xs; x; x = x->next)
        bad |= put_edges(P.edges, x, 1) < 0;
    if (gh_evlog_flush(P.edges, sync) < 0 || bad)
        gh_log(GH_LOG_ERROR, "experiments edge snapshots %s: write failed", P.edges_path);
    uint64_t size = gh_evlog_size(P.edges), live = edges_live_bytes();
    if (size > (8u << 20) && size > 4 * live)
        compact_edges();
}

/* A unit's snapshot value: the experiment being rebuilt takes it (the last snapshot wins). */
static void replay_edge_value(xstate_t *x, uint64_t unit_h, uint32_t m, int den, double val)
{
    uint32_t idx;
    if (!unit_find(x, unit_h, &idx))
        return;
    const gh_conf_xmetric_t *mt = &x->metrics[m];
    uint32_t vi = x->units[idx].vi;
    const double *row = vi == NO_ROW ? NULL : &x->vals[(size_t)vi * x->rowlen];
    const uint16_t *c = &x->col[m * 3];
    if (!den && gh_conf_xpart_edge(mt, 0))
        unit_add(x, idx, m, val - (row ? row[c[C_NUM]] : 0), 0, 0);
    else if (den && gh_conf_xpart_edge(mt, 1))
        unit_add(x, idx, m, 0, val - (row ? row[c[C_DEN]] : 0), 0);
}

/* One frame of STORE.edges: the experiments being rebuilt take their units' edge values. */
static int replay_edge_frame(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    const uint8_t *e = p + n;
    while (p < e) {
        if (*p == LR_EDGE && p + LR_EDGE_LEN <= e) {
            uint64_t key_h, unit_h, mh;
            double num, den;
            memcpy(&key_h, p + 1, 8);
            memcpy(&unit_h, p + 9, 8);
            memcpy(&mh, p + 17, 8);
            memcpy(&num, p + 25, 8);
            memcpy(&den, p + 33, 8);
            for (xstate_t *x = P.xs; x; x = x->next)
                for (uint32_t m = 0; x->key_h == key_h && x->replay && m < x->nm; m++)
                    if (x->metric_h[m] == mh) {
                        replay_edge_value(x, unit_h, m, 0, num);
                        replay_edge_value(x, unit_h, m, 1, den);
                    }
            p += LR_EDGE_LEN;
            continue;
        }
        if (*p != LR_EDGES || e - p < 10 || p[9] > EDGE_PARTS_MAX || (size_t)(e - p) < 14 + 9 * (size_t)p[9])
            break; /* (a frame's CRC held: only a record this build does not know ends it) */
        uint64_t key_h;
        memcpy(&key_h, p + 1, 8);
        uint32_t np = p[9], nu, pm[EDGE_PARTS_MAX];
        int pd[EDGE_PARTS_MAX];
        const uint8_t *q = p + 10;
        xstate_t *x = P.xs;
        while (x && !(x->key_h == key_h && x->replay))
            x = x->next;
        for (uint32_t i = 0; i < np; i++, q += 9) {
            uint64_t mh;
            memcpy(&mh, q, 8);
            pd[i] = q[8];
            pm[i] = UINT32_MAX;
            for (uint32_t m = 0; x && m < x->nm; m++)
                if (x->metric_h[m] == mh)
                    pm[i] = m;
        }
        memcpy(&nu, q, 4);
        q += 4;
        size_t per = 8 + 8 * (size_t)np;
        if ((size_t)(e - q) / per < nu)
            break;
        for (uint32_t u = 0; x && u < nu; u++) {
            const uint8_t *row = q + per * u;
            uint64_t unit_h;
            memcpy(&unit_h, row, 8);
            for (uint32_t i = 0; i < np; i++) {
                double val;
                memcpy(&val, row + 8 + 8 * i, 8);
                if (pm[i] != UINT32_MAX)
                    replay_edge_value(x, unit_h, pm[i], pd[i], val);
            }
        }
        p = q + per * nu;
    }
    return 0;
}

/* Write the pending frame (first exposures, events); sync for a commit that answers publishes. */
static int log_flush(int sync)
{
    if (!P.log)
        return -1;
    int rc = gh_evlog_flush(P.log, sync);
    if (rc < 0 && !P.log_failed)
        gh_log(GH_LOG_ERROR, "experiments log: write failed: %s (publishes are answered 503; exposures of the "
                             "frame are kept in memory only)", gh_err_msg(rc));
    P.log_failed = rc < 0;
    P.last_persist = (int64_t)now_ms();
    return rc;
}

/* ---------------------------------------------------------------- replay */

/* One frame of the log: its records applied to the experiments being rebuilt (all of them at
 * start); at the first replay also the idempotency set. */
static int replay_frame(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    const uint8_t *e = p + n;
    while (p < e) {
        if (*p == LR_EXPOSE && (size_t)(e - p) >= LR_EXPOSE_LEN) {
            uint64_t key_h, var_h, unit_h;
            int64_t ms;
            memcpy(&key_h, p + 1, 8);
            memcpy(&var_h, p + 9, 8);
            memcpy(&unit_h, p + 17, 8);
            memcpy(&ms, p + 25, 8);
            p += LR_EXPOSE_LEN;
            for (xstate_t *x = P.xs; x; x = x->next) {
                if (x->key_h != key_h || !x->replay)
                    continue;
                for (uint32_t v = 0; v < x->nv; v++)
                    if (x->variant_h[v] == var_h) {
                        expose(x, unit_h, v, ms, 0);
                        break;
                    }
            }
        } else if (*p == LR_EVENT && (size_t)(e - p) >= LR_EVENT_LEN) {
            uint16_t pn;
            uint64_t tenant_h, a, b, name_h, unit_h;
            int64_t ms;
            memcpy(&pn, p + 1, 2);
            if ((size_t)(e - p) < LR_EVENT_LEN + pn)
                break;
            memcpy(&tenant_h, p + 3, 8);
            memcpy(&a, p + 11, 8);
            memcpy(&b, p + 19, 8);
            memcpy(&name_h, p + 27, 8);
            memcpy(&unit_h, p + 35, 8);
            memcpy(&ms, p + 43, 8);
            sv_t pl = {(const char *)p + LR_EVENT_LEN, pn};
            p += LR_EVENT_LEN + pn;
            if (!P.ids_built && ids_add(a, b) == 0)
                continue; /* (a record twice: a migration repeated; counted once) */
            apply_event(tenant_h, name_h, unit_h, ms, pl);
        } else {
            gh_log(GH_LOG_ERROR, "experiments log: unknown record type %u in a frame (a newer version's log?): rest "
                                 "of the frame skipped", (unsigned)*p);
            break;
        }
    }
    return 0;
}

/* Replay the log for the experiments in list (not yet counted), and the first time for the
 * idempotency set. */
static void replay_log(xstate_t **list, uint32_t n)
{
    if ((!n && P.ids_built) || !P.log)
        return;
    log_flush(0); /* the pending first exposures too */
    for (uint32_t i = 0; i < n; i++)
        list[i]->replay = 1;
    P.replaying = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (gh_evlog_replay(P.log, replay_frame, NULL) < 0)
        gh_log(GH_LOG_ERROR, "experiments log: replay failed: results miss part of the log");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!P.ids_built)
        gh_log(GH_LOG_INFO, "experiments log: replayed %llu bytes, %llu events, in %.3f s",
               (unsigned long long)gh_evlog_size(P.log), (unsigned long long)P.ids_n,
               (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    P.ids_built = 1;
    P.replaying = 0;
    for (uint32_t i = 0; i < n; i++)
        list[i]->replay = 0;
}

/* ---------------------------------------------------------------- experiment states and configuration */

/* ---------------------------------------------------------------- experiment states and configuration */

static void xs_free(xstate_t *x)
{
    big_free(x->units, (size_t)x->cap * sizeof *x->units);
    big_free(x->vals, (size_t)x->vcap * vals_row(x));
    big_free(x->vuh, (size_t)x->vcap * sizeof *x->vuh);
    big_free(x->vdirty, x->vcap);
    free(x->vn);
    free(x->sums);
    free(x->variant_h);
    free(x->metric_h);
    free(x->edge_m);
    free(x->col);
    free(x);
}

static int same_def(const xstate_t *x, const gh_conf_experiment_t *e)
{
    if (x->nv != e->nvariants || x->nm != e->nmetrics || strcmp(x->flag, e->flag))
        return 0;
    for (uint32_t v = 0; v < x->nv; v++)
        if (strcmp(x->variants[v], e->variants[v]))
            return 0;
    for (uint32_t m = 0; m < x->nm; m++) {
        const gh_conf_xmetric_t *a = &x->metrics[m], *b = &e->metrics[m];
        if (strcmp(a->name, b->name) || a->kind != b->kind || a->num.source != b->num.source ||
            a->den.source != b->den.source || a->num.event_h != b->num.event_h || a->den.event_h != b->den.event_h ||
            !!a->num.field != !!b->num.field || (a->num.field && strcmp(a->num.field, b->num.field)) ||
            !!a->num.path != !!b->num.path || (a->num.path && strcmp(a->num.path, b->num.path)) || a->cuped != b->cuped)
            return 0;
    }
    return 1;
}

static xstate_t *xs_new(const gh_conf_tenant_t *t, const gh_conf_experiment_t *e)
{
    xstate_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->nv = e->nvariants;
    x->nm = e->nmetrics;
    x->vn = calloc(x->nv, sizeof *x->vn);
    x->sums = calloc((size_t)x->nv * (x->nm ? x->nm : 1), sizeof *x->sums);
    x->variant_h = calloc(x->nv, sizeof *x->variant_h);
    x->metric_h = calloc(x->nm ? x->nm : 1, sizeof *x->metric_h);
    x->edge_m = calloc(x->nm ? x->nm : 1, sizeof *x->edge_m);
    x->col = calloc((size_t)(x->nm ? x->nm : 1) * 3, sizeof *x->col);
    if (!x->vn || !x->sums || !x->variant_h || !x->metric_h || !x->edge_m || !x->col) {
        xs_free(x);
        return NULL;
    }
    for (uint32_t m = 0; m < x->nm; m++) { /* the row's layout (same_def keeps it across reloads) */
        const gh_conf_xmetric_t *mt = &e->metrics[m];
        uint16_t *c = &x->col[m * 3];
        c[C_NUM] = (uint16_t)x->rowlen++;
        c[C_DEN] = mt->kind == GH_XK_RATIO ? (uint16_t)x->rowlen++ : NO_COL;
        c[C_PRE] = mt->cuped ? (uint16_t)x->rowlen++ : NO_COL;
    }
    if (!x->rowlen)
        x->rowlen = 1;
    return x;
}

/* Point x at definition e of tenant t (names owned by the configuration P holds). */
static void xs_bind(xstate_t *x, const gh_conf_tenant_t *t, const gh_conf_experiment_t *e)
{
    x->tenant = t->name;
    x->id = e->id;
    x->flag = e->flag;
    x->tenant_h = gh_exp_hash(t->name, strlen(t->name));
    x->flag_h = gh_exp_hash(e->flag, strlen(e->flag));
    char kb[512];
    int kl = snprintf(kb, sizeof kb, "%s%c%s", t->name, 0, e->id);
    x->key_h = gh_exp_hash(kb, (size_t)GH_MIN(kl, (int)sizeof kb - 1));
    x->variants = e->variants;
    x->weights = e->weights;
    for (uint32_t v = 0; v < x->nv; v++)
        x->variant_h[v] = gh_exp_hash(e->variants[v], strlen(e->variants[v]));
    x->metrics = e->metrics;
    x->nedge = 0;
    for (uint32_t m = 0; m < x->nm; m++) {
        const gh_conf_xmetric_t *mt = &e->metrics[m];
        x->metric_h[m] = gh_exp_hash(mt->name, strlen(mt->name));
        if (gh_conf_xpart_edge(mt, 0) || gh_conf_xpart_edge(mt, 1))
            x->edge_m[x->nedge++] = m;
    }
    x->start_ms = e->start_ms;
    x->stop_ms = e->stop_ms;
    x->alpha = e->alpha;
    x->n_star = e->n_star;
    x->live = 1;
}

/* Load an experiment's units and edge values from the store. */

/* An older store's edge values (SQLite table unit_edge, if any; after the log gave the units and
 * before STORE.edges, whose records are newer). */
static void load_edges(xstate_t *x)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(P.db, "SELECT unit_h, metric, num, den FROM unit_edge WHERE tenant=? AND experiment=?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, x->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, x->id, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            uint32_t idx;
            const char *mn = (const char *)sqlite3_column_text(st, 1);
            if (!unit_find(x, (uint64_t)sqlite3_column_int64(st, 0), &idx) || !mn)
                continue;
            for (uint32_t m = 0; m < x->nm; m++)
                if (!strcmp(x->metrics[m].name, mn))
                    unit_add(x, idx, m, sqlite3_column_double(st, 2), sqlite3_column_double(st, 3), 0);
        }
    }
    sqlite3_finalize(st);
}

/* Switch to configuration c (P.mu held): keep the states of unchanged experiments, build the
 * others from the log (and their edge values from the store). */
static void switch_conf(gh_conf_t *c)
{
    for (xstate_t *x = P.xs; x; x = x->next)
        x->live = 0;
    xstate_t **fresh = NULL;
    uint32_t nfresh = 0, total = 0;
    for (uint32_t i = 0; i < c->ntenants; i++)
        total += c->tenants[i].nexperiments;
    fresh = calloc(total ? total : 1, sizeof *fresh);
    for (uint32_t i = 0; i < c->ntenants; i++) {
        const gh_conf_tenant_t *t = &c->tenants[i];
        for (uint32_t k = 0; k < t->nexperiments; k++) {
            const gh_conf_experiment_t *e = &t->experiments[k];
            xstate_t *x = xs_by(gh_exp_hash(t->name, strlen(t->name)), t->name, e->id);
            if (x && same_def(x, e)) {
                xs_bind(x, t, e);
                continue;
            }
            if (x) { /* redefined: counted again from the log */
                for (xstate_t **pp = &P.xs; *pp; pp = &(*pp)->next)
                    if (*pp == x) {
                        *pp = x->next;
                        break;
                    }
                xs_free(x);
            }
            if (!(x = xs_new(t, e)))
                continue;
            xs_bind(x, t, e);
            x->next = P.xs;
            P.xs = x;
            if (fresh)
                fresh[nfresh++] = x;
        }
    }
    replay_log(fresh, nfresh);
    for (uint32_t i = 0; i < nfresh; i++) {
        load_edges(fresh[i]);
        fresh[i]->replay = 1;
    }
    if (nfresh && P.edges) {
        gh_evlog_flush(P.edges, 0);
        gh_evlog_replay(P.edges, replay_edge_frame, NULL);
    }
    for (uint32_t i = 0; i < nfresh; i++)
        fresh[i]->replay = 0;
    free(fresh);
    /* states no longer configured: dropped (their data stays in the log) */
    for (xstate_t **pp = &P.xs; *pp;) {
        if (!(*pp)->live) {
            xstate_t *d = *pp;
            *pp = d->next;
            xs_free(d);
        } else {
            pp = &(*pp)->next;
        }
    }
    gh_conf_t *old = P.conf;
    P.conf = c;
    if (old)
        gh_conf_unref(old);
}

/* ---------------------------------------------------------------- the pipeline thread */

/* ---------------------------------------------------------------- the pipeline thread */

static void prefetch_unit(uint64_t tenant_h, uint64_t unit_h, int stage);

/* Every ring's records applied; *most: the most one ring held (how long the next wait may be).
 * A record's misses (its unit's slot, then for an observation the unit's values) are fetched ahead as in
 * commit_batches: the slot 16 records ahead, the values 8 ahead (a record takes less time than
 * an event, so further ahead than there). */
static size_t drain_rings(size_t *most)
{
    size_t n = 0;
    *most = 0;
    for (uint32_t i = 0; i < P.nrings; i++) {
        ring_t *rg = &P.rings[i];
        uint64_t head = rg->head, tail = __atomic_load_n(&rg->tail, __ATOMIC_ACQUIRE);
        if (tail - head > *most)
            *most = (size_t)(tail - head);
        for (; head != tail; head++, n++) {
            const rec_t *r = &rg->recs[head & (RING_RECS - 1)];
            if (tail - head > 16) {
                const rec_t *a = &rg->recs[(head + 16) & (RING_RECS - 1)];
                if (a->kind != R_CONT)
                    prefetch_unit(a->tenant_h, a->unit_h, 0);
            }
            if (tail - head > 8) { /* (an exposure does not read the values: a new unit's row is the next one) */
                const rec_t *a = &rg->recs[(head + 8) & (RING_RECS - 1)];
                if (a->kind == R_OBSERVE)
                    prefetch_unit(a->tenant_h, a->unit_h, 2);
            }
            if (r->kind == R_EXPOSE) {
                apply_expose(r);
            } else if (r->kind == R_OBSERVE) {
                const rec_t *cont = NULL;
                if (r->path_len > PATH_HEAD) /* (published with it: tail is past it) */
                    cont = &rg->recs[++head & (RING_RECS - 1)], n++;
                apply_observe(r, cont);
            }
        }
        __atomic_store_n(&rg->head, head, __ATOMIC_RELEASE);
    }
    return n;
}


static void batch_free(batch_t *b);

#define FAIL_STORE "{\"type\":\"about:blank\",\"title\":\"the event store failed\",\"status\":503}\n"
#define FAIL_NOMEM "{\"type\":\"about:blank\",\"title\":\"out of memory\",\"status\":500}\n"

static void answer_task(gh_wtask_t *t)
{
    batch_t *b = (batch_t *)((char *)t - offsetof(batch_t, task));
    if (b->failed) {
        b->done(b->arg, 503, FAIL_STORE, sizeof FAIL_STORE - 1);
        batch_free(b);
        return;
    }
    /* {"accepted":N,"duplicates":N,"errors":[{"index":I,"reason":"..."}]}: the reasons are
     * constants without characters to escape */
    size_t cap = 64;
    for (uint32_t i = 0; i < b->nerr; i++)
        cap += 32 + strlen(b->errs[i].reason);
    char stackbuf[2048], *body = cap <= sizeof stackbuf ? stackbuf : malloc(cap);
    if (!body) {
        b->done(b->arg, 500, FAIL_NOMEM, sizeof FAIL_NOMEM - 1);
        batch_free(b);
        return;
    }
    size_t o = (size_t)snprintf(body, cap, "{\"accepted\":%u,\"duplicates\":%u,\"errors\":[", b->accepted, b->duplicates);
    for (uint32_t i = 0; i < b->nerr; i++)
        o += (size_t)snprintf(body + o, cap - o, "%s{\"index\":%u,\"reason\":\"%s\"}", i ? "," : "", b->errs[i].index,
                              b->errs[i].reason);
    o += (size_t)snprintf(body + o, cap - o, "]}");
    b->done(b->arg, 200, body, o);
    if (body != stackbuf)
        free(body);
    batch_free(b);
}

/* A committed event to the event stream: {time, tenant, event_id, name, unit, value, payload},
 * value the payload's numeric "value" (else null), payload as JSON text. The event is already
 * in the log; the stream's spool takes it from here. */
static void stream_event(const char *tenant, const pevent_t *e)
{
    char ts[64];
    time_t sec = (time_t)(e->time_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(e->time_ms % 1000));
    double v = pl_number(e->payload, "value", 5);
    json_t *o = json_pack("{s:s, s:s, s:s%, s:s%, s:s%, s:o, s:s%}", "time", ts, "tenant", tenant, "event_id", e->id.p,
                          e->id.n, "name", e->name.p, e->name.n, "unit", e->unit.p, e->unit.n, "value",
                          isnan(v) ? json_null() : json_real(v), "payload", e->payload.p, e->payload.n);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (txt)
        gh_stream_put(GH_EV_EVENT, tenant, strlen(tenant), e->id.p, e->id.n, txt, strlen(txt));
    free(txt);
    json_decref(o);
}

static void audit_event(const char *tenant, const pevent_t *e)
{
    json_t *payload = json_loadb(e->payload.p, e->payload.n, 0, NULL);
    json_t *ln = json_pack("{s:s, s:I, s:s, s:s%, s:s%, s:s%, s:o?}", "type", "event", "time_ms", (json_int_t)e->time_ms,
                           "tenant", tenant, "event_id", e->id.p, e->id.n, "name", e->name.p, e->name.n, "unit",
                           e->unit.p, e->unit.n, "payload", payload);
    char *txt = ln ? json_dumps(ln, JSON_COMPACT) : NULL;
    if (txt)
        fprintf(P.audit, "%s\n", txt);
    free(txt);
    json_decref(ln);
}

/* Two cache misses per record and experiment (the unit's slot, then its values), fetched ahead:
 * stage 0 the slot; once the slot is in cache, stage 1 the start of its values' row (an event's)
 * or stage 2 the values of the edge metrics (an observation's: a row of rowlen doubles can span
 * two lines, and the edge metrics' are often not in the first). */
static void prefetch_unit(uint64_t tenant_h, uint64_t unit_h, int stage)
{
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (x->tenant_h != tenant_h || !x->cap)
            continue;
        if (!stage) {
            __builtin_prefetch(&x->units[(uint32_t)unit_h & (x->cap - 1)]);
            continue;
        }
        uint32_t idx;
        const unit_t *u = unit_find(x, unit_h, &idx);
        if (!u || u->vi == NO_ROW)
            continue;
        const double *row = &x->vals[(size_t)u->vi * x->rowlen];
        if (stage == 1)
            __builtin_prefetch(row);
        else
            for (uint32_t k = 0; k < x->nedge; k++)
                __builtin_prefetch(&row[x->col[x->edge_m[k] * 3]]);
    }
}

/* Commit a list of publishes: their new events (and the first exposures waiting) as one frame of
 * the log, one write(2) and one fdatasync; then apply them, stream them and answer. */
static void commit_batches(batch_t *list)
{
    int ok = P.log != NULL;
    size_t mark = ok ? gh_evlog_pending(P.log) : 0; /* the first exposures before the events */
    for (batch_t *b = list; ok && b; b = b->next) {
        /* (a frame stays far below GH_EVLOG_MAX_FRAME: a long queue of big publishes is written in
         * parts, the last write's fdatasync covering all) */
        if (b != list && gh_evlog_pending(P.log) > (64u << 20)) {
            if (log_flush(0) < 0) {
                ok = 0;
                break;
            }
            mark = 0;
        }
        for (uint32_t i = 0; i < b->nev; i++) {
            pevent_t *e = &b->ev[i];
            if (i + 8 < b->nev && P.ids) /* a miss per event in a big set: fetched ahead */
                __builtin_prefetch(&P.ids[b->ev[i + 8].id_h2 & (P.ids_cap - 1)]);
            int r = ids_add(e->id_h, e->id_h2);
            if (r < 0 || (r && put_event(P.log, b->tenant_h, e->id_h, e->id_h2, e->name_h, e->unit_h, e->time_ms,
                                         e->payload) < 0)) {
                if (r > 0)
                    ids_del(e->id_h, e->id_h2);
                ok = 0;
                break;
            }
            e->fresh = (uint8_t)r;
            if (r)
                b->accepted++;
            else
                b->duplicates++;
        }
    }
    if (ok && log_flush(1) == 0) {
        int streaming = gh_stream_on(GH_EV_EVENT);
        for (batch_t *b = list; b; b = b->next)
            for (uint32_t i = 0; i < b->nev; i++) {
                const pevent_t *e = &b->ev[i];
                if (i + 8 < b->nev)
                    prefetch_unit(b->tenant_h, b->ev[i + 8].unit_h, 0);
                if (i + 4 < b->nev)
                    prefetch_unit(b->tenant_h, b->ev[i + 4].unit_h, 1);
                if (!e->fresh)
                    continue;
                apply_event(b->tenant_h, e->name_h, e->unit_h, e->time_ms, e->payload);
                if (streaming)
                    stream_event(b->tenant, e);
                if (P.audit)
                    audit_event(b->tenant, e);
            }
    } else {
        /* nothing of these publishes is kept: their identities leave the set again (the pending
         * frame was dropped with the failed write) */
        for (batch_t *b = list; b; b = b->next) {
            for (uint32_t i = 0; i < b->nev; i++)
                if (b->ev[i].fresh)
                    ids_del(b->ev[i].id_h, b->ev[i].id_h2);
            b->failed = 1, b->accepted = b->duplicates = 0;
        }
        if (P.log) /* (after a failed write the pending frame is empty already) */
            gh_evlog_unput(P.log, mark);
    }
    for (batch_t *b = list, *n; b; b = n) {
        n = b->next;
        b->task.fn = answer_task;
        gh_worker_post(b->slot, &b->task);
    }
}

static uint64_t records_dropped(void);

static void *pipeline_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&P.qmu);
        batch_t *list = P.queue;
        P.queue = NULL;
        P.qtail = &P.queue;
        gh_conf_t *nc = P.next_conf;
        P.next_conf = NULL;
        int stop = P.stop;
        pthread_mutex_unlock(&P.qmu);

        pthread_mutex_lock(&P.mu);
        if (nc)
            switch_conf(nc);
        size_t most;
        size_t n = drain_rings(&most); /* exposures before the events that follow them */
        if (list) {
            commit_batches(list);
        } else if (P.log && gh_evlog_pending(P.log) &&
                   (gh_evlog_pending(P.log) >= PERSIST_BYTES || (int64_t)now_ms() - P.last_persist >= PERSIST_MS)) {
            /* first exposures without publishes: one write (not acknowledged to anyone, so no
             * fdatasync: a kill -9 loses at most PERSIST_MS of them, a power loss what the page
             * cache held; the next commit's fdatasync covers them too) */
            log_flush(0);
        }
        persist_edges((int64_t)now_ms(), 0);
        if (P.audit)
            fflush(P.audit);
        uint64_t dropped = records_dropped();
        if (dropped != P.dropped_logged && (int64_t)now_ms() - P.dropped_log_ms >= 60000) {
            gh_log(GH_LOG_WARN, "experiments: %llu exposure/observation records dropped so far (the pipeline fell behind); "
                                "results miss them", (unsigned long long)dropped);
            P.dropped_logged = dropped;
            P.dropped_log_ms = (int64_t)now_ms();
        }
        pthread_mutex_unlock(&P.mu);
        if (stop && !list && !n)
            break;
        if (!list && most < DRAIN_MAX) {
            /* no ring was near full: wait (a publish wakes it at once) rather than spin on a
             * trickle of records, which on a worker's core takes its CPU for little work per loop
             * (a wake-up, and the cache it finds cold, cost more than draining a few thousand
             * records; WAIT_MS of records is ~2,000 at 100,000 requests/s per worker, far below a
             * ring's 32,768) */
            pthread_mutex_lock(&P.qmu);
            if (!P.queue && !P.stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += WAIT_MS * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&P.qcv, &P.qmu, &ts);
            }
            pthread_mutex_unlock(&P.qmu);
        }
    }
    /* last: the pending exposures, and a snapshot of everything */
    pthread_mutex_lock(&P.mu);
    log_flush(1);
    P.last_snapshot = 0;
    persist_edges(SNAPSHOT_MS + 1, 1);
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

int gh_exp_start(const gh_conf_t *c, uint32_t nslots, char *err, size_t errcap)
{
    struct stat st;
    const char *path = c->exp.store ? c->exp.store : "gatehouse-experiments.db";
    if (!c->exp.used && stat(path, &st) < 0)
        return 0;
    if (db_open(path, err, errcap) < 0)
        return GH_EIO;
    char logpath[1100];
    if (snprintf(logpath, sizeof logpath, "%s.evlog", path) >= (int)sizeof logpath) {
        snprintf(err, errcap, "experiments store path too long");
        return GH_EINVAL;
    }
    if (migrate_store(logpath, err, errcap) < 0)
        return GH_EIO;
    gh_evlog_stat_t ls;
    if (gh_evlog_open(&P.log, logpath, &ls, err, errcap) < 0)
        return GH_EIO;
    if (ls.torn_bytes)
        gh_log(GH_LOG_WARN, "experiments log %s: cut a torn tail of %llu bytes (an append the process or the machine did "
                            "not finish: never acknowledged)", logpath, (unsigned long long)ls.torn_bytes);
    snprintf(P.edges_path, sizeof P.edges_path, "%s.edges", path);
    if (gh_evlog_open(&P.edges, P.edges_path, &ls, err, errcap) < 0)
        return GH_EIO;
    if (c->exp.audit_log && !(P.audit = fopen(c->exp.audit_log, "a"))) {
        snprintf(err, errcap, "experiments audit log %s: %s", c->exp.audit_log, strerror(errno));
        return GH_EIO;
    }
    P.rings = calloc(nslots, sizeof *P.rings);
    if (!P.rings)
        return GH_ENOMEM;
    P.nrings = nslots; /* (gh_exp_stop frees what was allocated) */
    for (uint32_t i = 0; i < nslots; i++)
        if (!(P.rings[i].recs = big_alloc(RING_RECS * sizeof(rec_t))))
            return GH_ENOMEM;
    P.qtail = &P.queue;
    P.stop = 0;
    P.ids_built = 0;
    P.last_persist = P.last_snapshot = (int64_t)now_ms();
    gh_conf_ref((gh_conf_t *)c);
    pthread_mutex_lock(&P.mu);
    switch_conf((gh_conf_t *)c);
    replay_log(NULL, 0); /* the idempotency set, when no experiment asked for a replay */
    pthread_mutex_unlock(&P.mu);
    P.running = 1;
    if (pthread_create(&P.thread, NULL, pipeline_main, NULL) != 0) {
        P.running = 0;
        return GH_ENOMEM;
    }
    return 0;
}

void gh_exp_config(gh_conf_t *c)
{
    if (!P.running)
        return;
    gh_conf_ref(c);
    pthread_mutex_lock(&P.qmu);
    gh_conf_t *old = P.next_conf;
    P.next_conf = c;
    pthread_cond_signal(&P.qcv);
    pthread_mutex_unlock(&P.qmu);
    if (old)
        gh_conf_unref(old);
}

void gh_exp_stop(void)
{
    if (!P.running)
        return;
    pthread_mutex_lock(&P.qmu);
    P.stop = 1;
    pthread_cond_signal(&P.qcv);
    pthread_mutex_unlock(&P.qmu);
    pthread_join(P.thread, NULL);
    P.running = 0;
    gh_evlog_close(P.edges);
    P.edges = NULL;
    sqlite3_close(P.db);
    P.db = NULL;
    gh_evlog_close(P.log);
    P.log = NULL;
    if (P.audit)
        fclose(P.audit);
    P.audit = NULL;
    for (xstate_t *x = P.xs, *n; x; x = n) {
        n = x->next;
        xs_free(x);
    }
    P.xs = NULL;
    if (P.conf)
        gh_conf_unref(P.conf);
    if (P.next_conf)
        gh_conf_unref(P.next_conf);
    P.conf = P.next_conf = NULL;
    for (uint32_t i = 0; i < P.nrings; i++)
        big_free(P.rings[i].recs, RING_RECS * sizeof(rec_t));
    free(P.rings);
    P.rings = NULL;
    big_free(P.pre, PRE_MAX * 2 * sizeof *P.pre);
    P.pre = NULL;
    P.npre = 0;
    big_free(P.ids, P.ids_cap * sizeof *P.ids);
    P.ids = NULL;
    P.ids_cap = P.ids_n = 0;
    P.ids_built = 0;
    P.log_failed = 0;
}

/* ---------------------------------------------------------------- producers (workers) */

int gh_exp_flag_watched(const gh_conf_tenant_t *t, const char *flag)
{
    for (uint32_t i = 0; i < t->nexperiments; i++)
        if (!strcmp(t->experiments[i].flag, flag))
            return 1;
    return 0;
}

/* Room for k records at the tail of slot's ring (the first; the next at tail + 1), or NULL when
 * the ring is full (counted). */
static rec_t *ring_slot(uint32_t slot, uint32_t k)
{
    if (!P.running || slot >= P.nrings)
        return NULL;
    ring_t *rg = &P.rings[slot];
    if (rg->tail + k - rg->head_seen > RING_RECS) { /* (the pipeline's line only when needed) */
        rg->head_seen = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
        if (rg->tail + k - rg->head_seen > RING_RECS) { /* (read by results and the log) */
            __atomic_store_n(&rg->dropped, rg->dropped + 1, __ATOMIC_RELAXED);
            return NULL;
        }
    }
    return &rg->recs[rg->tail & (RING_RECS - 1)];
}

static void ring_push(uint32_t slot, uint32_t k)
{
    __atomic_store_n(&P.rings[slot].tail, P.rings[slot].tail + k, __ATOMIC_RELEASE);
}

/* gh_exp_hash of the variant name the workers pass on every request (the tenant's and the flag's
 * come hashed from the configuration): a per-thread memo keyed by the string's address and checked
 * against a copy of its bytes, so an address reused for another name (after a reload) never
 * returns the old name's hash. */
typedef struct {
    const char *p;
    uint64_t h;
    uint32_t n;
    char copy[44];
} name_memo_t;
static __thread name_memo_t name_memo[32];

static uint64_t name_hash(const char *s)
{
    size_t n = strlen(s);
    if (n > sizeof name_memo[0].copy)
        return gh_exp_hash(s, n);
    name_memo_t *m = &name_memo[((uintptr_t)s >> 3) & 31];
    if (m->p == s && m->n == n && memcmp(m->copy, s, n) == 0)
        return m->h;
    m->p = s;
    m->n = (uint32_t)n;
    memcpy(m->copy, s, n);
    return m->h = gh_exp_hash(s, n);
}

void gh_exp_expose(uint32_t slot, const gh_conf_tenant_t *t, uint64_t flag_h, const char *variant, uint64_t unit_h,
                   uint64_t time_ms)
{
    rec_t *r = ring_slot(slot, 1);
    if (!r)
        return;
    r->kind = R_EXPOSE;
    r->tenant_h = t->name_xh;
    r->unit_h = unit_h;
    r->time_ms = time_ms;
    r->a = flag_h;
    r->b = name_hash(variant);
    ring_push(slot, 1);
}

void gh_exp_observe(uint32_t slot, const gh_conf_tenant_t *t, uint64_t unit_h, const char *path, size_t path_len,
                    int status, uint64_t latency_us, uint64_t bytes, uint64_t time_ms)
{
    if (!t->xedges) /* (no experiment of the tenant has a metric to observe) */
        return;
    size_t keep = GH_MIN(GH_MIN(path_len, (size_t)t->xpath_max), PATH_HEAD + PATH_CONT); /* (64 at most) */
    uint32_t k = keep > PATH_HEAD ? 2 : 1;
    rec_t *r = ring_slot(slot, k);
    if (!r)
        return;
    r->kind = R_OBSERVE;
    r->tenant_h = t->name_xh;
    r->unit_h = unit_h;
    r->time_ms = time_ms;
    r->status = (uint16_t)status;
    r->latency_us = (uint32_t)GH_MIN(latency_us, UINT32_MAX);
    r->a = bytes;
    r->path_len = (uint8_t)keep;
    memcpy(r->path, path, GH_MIN(keep, PATH_HEAD));
    if (k == 2) {
        rec_t *c = &P.rings[slot].recs[(P.rings[slot].tail + 1) & (RING_RECS - 1)];
        c->cont_kind = R_CONT;
        memcpy(c->more, path + PATH_HEAD, keep - PATH_HEAD);
    }
    ring_push(slot, k);
}

/* ---------------------------------------------------------------- publish */

static int64_t parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            if (digits++ < 3)
                ms = ms * 10 + (*p - '0');
        while (digits > 0 && digits < 3)
            ms *= 10, digits++;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int hh = (p[1] - '0') * 10 + (p[2] - '0'), mm = (p[4] - '0') * 10 + (p[5] - '0');
        off = (int64_t)(hh * 60 + mm) * 60000 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (int64_t)t * 1000 + ms - off;
}


/* ---------------------------------------------------------------- publish: the body's parser */

/* A purpose-built parser for the publish body: one pass, no tree. It accepts exactly the
 * documents jansson's json_loadb(JSON_REJECT_DUPLICATES) accepts (UTF-8 checked, no \u0000, no
 * lone surrogates, integers within int64, reals without overflow, depth at most 2048, no
 * duplicate key in any object, an object or array at the top, nothing after it) and keeps views
 * of what parse_batch needs: per element of "events" its eventDefinition, eventId, eventTime,
 * payload (its text) and the targetingKeys of payload.context, payload and context, and the
 * body's context.targetingKey. The fuzz target checks it against jansson (gh_exp_parse_check). */

enum { JT_NONE = 0, JT_OBJ, JT_ARR, JT_STR, JT_NUM, JT_LIT };
enum { RO_NONE, RO_TOP, RO_EVENTS, RO_EVENT, RO_PAYLOAD, RO_CTX, RO_KEEP };

typedef struct {
    uint8_t t;
    const char *b, *e; /* the value's text */
    sv_t s;            /* JT_STR: the decoded string */
} jv_t;

typedef struct {
    jv_t ev, def, id, tm, pl, pl_tk, plctx_tk, ectx_tk;
} rawev_t;

typedef struct {
    const char *p, *e, *start;
    char err[96];
    int depth;
    arena_t *arena;
    sv_t *keys;
    size_t nkeys, capkeys;
    rawev_t *evs;
    uint32_t capev, total;
    jv_t doc_tk;
    int events_array;
} jp_t;

static int jerr(jp_t *j, const char *what)
{
    if (!j->err[0])
        snprintf(j->err, sizeof j->err, "%s at byte %zu", what, (size_t)(j->p - j->start));
    return -1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decode the (validated) string text s..s+n into out: its length, or (size_t)-1 when over cap. */
static size_t unescape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c != '\\') {
            if (o >= cap)
                return (size_t)-1;
            out[o++] = c;
            i++;
            continue;
        }
        if (i + 1 >= n)
            return (size_t)-1;
        c = s[i + 1];
        i += 2;
        uint32_t cp;
        switch (c) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            if (i + 4 > n)
                return (size_t)-1;
            int v = hex4(s + i);
            if (v < 0)
                return (size_t)-1;
            i += 4;
            cp = (uint32_t)v;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u') {
                int w = hex4(s + i + 2);
                if (w >= 0xDC00 && w <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)w - 0xDC00);
                    i += 6;
                }
            }
            break;
        }
        default: cp = (uint8_t)c; break; /* " \ / */
        }
        char u[4];
        size_t k;
        if (cp < 0x80) {
            u[0] = (char)cp, k = 1;
        } else if (cp < 0x800) {
            u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), k = 2;
        } else if (cp < 0x10000) {
            u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), k = 3;
        } else {
            u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)),
            u[3] = (char)(0x80 | (cp & 0x3F)), k = 4;
        }
        if (o + k > cap)
            return (size_t)-1;
        memcpy(out + o, u, k);
        o += k;
    }
    return o;
}

/* One UTF-8 sequence at p (a byte >= 0x80): its length, 0 when invalid (as jansson's utf.c:
 * no overlong form, no surrogate, nothing above U+10FFFF). */
static int utf8_seq(const unsigned char *p, const unsigned char *e)
{
    unsigned c = p[0];
    int n;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, v = c & 0x07;
    else
        return 0;
    if (e - p < n)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
        return 0;
    return n;
}

static int parse_str(jp_t *j, sv_t *out, int keep)
{
    const char *p = j->p + 1, *e = j->e, *s = p;
    int esc = 0;
    for (;;) {
        while (p < e && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= e) {
            j->p = p;
            return jerr(j, "premature end of input in a string");
        }
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            break;
        if (c < 0x20) {
            j->p = p;
            return jerr(j, "control character in a string");
        }
        if (c == '\\') {
            esc = 1;
            if (p + 1 >= e) {
                j->p = p;
                return jerr(j, "premature end of input in a string");
            }
            char x = p[1];
            if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' || x == 'r' || x == 't') {
                p += 2;
                continue;
            }
            if (x != 'u' || e - p < 6 || hex4(p + 2) < 0) {
                j->p = p;
                return jerr(j, "invalid escape");
            }
            int v = hex4(p + 2);
            if (v == 0) {
                j->p = p;
                return jerr(j, "\\u0000 is not allowed");
            }
            if (v >= 0xDC00 && v <= 0xDFFF) {
                j->p = p;
                return jerr(j, "invalid Unicode (a lone low surrogate)");
            }
            if (v >= 0xD800 && v <= 0xDBFF) {
                int w = e - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
                if (w < 0xDC00 || w > 0xDFFF) {
                    j->p = p;
                    return jerr(j, "invalid Unicode (a lone high surrogate)");
                }
                p += 12;
            } else {
                p += 6;
            }
            continue;
        }
        int n = utf8_seq((const unsigned char *)p, (const unsigned char *)e);
        if (!n) {
            j->p = p;
            return jerr(j, "invalid UTF-8");
        }
        p += n;
    }
    out->p = s;
    out->n = (size_t)(p - s);
    if (esc && keep) {
        char *d = arena_alloc(j->arena, out->n ? out->n : 1);
        if (!d)
            return jerr(j, "out of memory");
        out->n = unescape(s, (size_t)(p - s), d, out->n);
        out->p = d;
    }
    j->p = p + 1;
    return 0;
}

static int parse_num(jp_t *j)
{
    const char *p = j->p, *e = j->e, *s = p;
    int neg = 0, real = 0, expo = 0;
    if (*p == '-')
        p++, neg = 1;
    if (p < e && *p == '0') {
        p++;
        if (p < e && *p >= '0' && *p <= '9')
            return jerr(j, "invalid number (a leading zero)");
    } else if (p < e && *p >= '1' && *p <= '9') {
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    } else {
        return jerr(j, "invalid token");
    }
    const char *ie = p;
    if (p < e && *p == '.') {
        p++;
        if (!(p < e && *p >= '0' && *p <= '9')) {
            j->p = p;
            return jerr(j, "invalid number");
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        real = 1;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p < e && *p >= '0' && *p <= '9')) {
            j->p = p;
            return jerr(j, "invalid number");
        }
        while (p < e && *p >= '0' && *p <= '9')
            p++;
        real = expo = 1;
    }
    if (!real) { /* jansson keeps an int64: "too big integer" beyond */
        size_t nd = (size_t)(p - s) - (size_t)neg;
        if (nd > 19 || (nd == 19 && memcmp(s + neg, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0))
            return jerr(j, "too big integer");
    } else if (expo || ie - s > 300) { /* only then can strtod overflow */
        size_t n = (size_t)(p - s);
        char sb[512], *b = n < sizeof sb ? sb : malloc(n + 1);
        if (!b)
            return jerr(j, "out of memory");
        memcpy(b, s, n);
        b[n] = 0;
        double v = strtod(b, NULL);
        if (b != sb)
            free(b);
        if (isinf(v))
            return jerr(j, "real number overflow");
    }
    j->p = p;
    return 0;
}

static int key_cmp(const void *a, const void *b)
{
    const sv_t *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}

static int parse_value(jp_t *j, jv_t *out, int role, void *dst);

/* A member key's role below an object of role `role`, and where it captures. */
static int member_role(int role, void *dst, sv_t k, jp_t *j, jv_t **out, void **cdst)
{
#define KEY(lit) (k.n == sizeof lit - 1 && !memcmp(k.p, lit, sizeof lit - 1))
    rawev_t *r = dst;
    switch (role) {
    case RO_TOP:
        if (KEY("events"))
            return RO_EVENTS;
        if (KEY("context"))
            return *cdst = &j->doc_tk, RO_CTX;
        break;
    case RO_EVENT:
        if (KEY("eventDefinition"))
            return *out = &r->def, RO_KEEP;
        if (KEY("eventId"))
            return *out = &r->id, RO_KEEP;
        if (KEY("eventTime"))
            return *out = &r->tm, RO_KEEP;
        if (KEY("payload"))
            return *out = &r->pl, *cdst = r, RO_PAYLOAD;
        if (KEY("context"))
            return *cdst = &r->ectx_tk, RO_CTX;
        break;
    case RO_PAYLOAD:
        if (KEY("targetingKey"))
            return *out = &r->pl_tk, RO_KEEP;
        if (KEY("context"))
            return *cdst = &r->plctx_tk, RO_CTX;
        break;
    case RO_CTX:
        if (KEY("targetingKey"))
            return *out = (jv_t *)dst, RO_KEEP;
        break;
    }
    return RO_NONE;
#undef KEY
}

static int parse_object(jp_t *j, int role, void *dst)
{
    size_t base = j->nkeys;
    j->p++;
    j->p = skip_ws(j->p, j->e);
    if (j->p < j->e && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (j->p >= j->e || *j->p != '"')
            return jerr(j, "string or '}' expected");
        sv_t k;
        if (parse_str(j, &k, 1) < 0)
            return -1;
        size_t nk = j->nkeys - base;
        if (nk <= 32)
            for (size_t i = base; i < j->nkeys; i++)
                if (j->keys[i].n == k.n && !memcmp(j->keys[i].p, k.p, k.n))
                    return jerr(j, "duplicate object key");
        if (j->nkeys == j->capkeys) {
            size_t nc = j->capkeys ? j->capkeys * 2 : 64;
            sv_t *nkp = realloc(j->keys, nc * sizeof *nkp);
            if (!nkp)
                return jerr(j, "out of memory");
            j->keys = nkp;
            j->capkeys = nc;
        }
        j->keys[j->nkeys++] = k;
        j->p = skip_ws(j->p, j->e);
        if (j->p >= j->e || *j->p != ':')
            return jerr(j, "':' expected");
        j->p = skip_ws(j->p + 1, j->e);
        jv_t tmp, *out = &tmp;
        void *cdst = NULL;
        int cr = role == RO_NONE ? RO_NONE : member_role(role, dst, k, j, &out, &cdst);
        if (parse_value(j, out, cr, cdst) < 0)
            return -1;
        if (cr == RO_EVENTS)
            j->events_array = out->t == JT_ARR;
        j->p = skip_ws(j->p, j->e);
        if (j->p < j->e && *j->p == ',') {
            j->p = skip_ws(j->p + 1, j->e);
            continue;
        }
        if (j->p < j->e && *j->p == '}') {
            j->p++;
            break;
        }
        return jerr(j, "',' or '}' expected");
    }
    if (j->nkeys - base > 33) { /* big objects: sorted once, neighbours compared */
        qsort(j->keys + base, j->nkeys - base, sizeof *j->keys, key_cmp);
        for (size_t i = base + 1; i < j->nkeys; i++)
            if (!key_cmp(&j->keys[i - 1], &j->keys[i]))
                return jerr(j, "duplicate object key");
    }
    j->nkeys = base;
    return 0;
}

static int parse_array(jp_t *j, int role)
{
    j->p = skip_ws(j->p + 1, j->e);
    if (j->p < j->e && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        jv_t tmp;
        if (role == RO_EVENTS) {
            uint32_t i = j->total++;
            rawev_t *r = NULL;
            if (i < j->capev) { /* (the rest: a 413 after the whole body is checked) */
                r = &j->evs[i];
                memset(r, 0, sizeof *r);
            }
            if (parse_value(j, r ? &r->ev : &tmp, r ? RO_EVENT : RO_NONE, r) < 0)
                return -1;
        } else if (parse_value(j, &tmp, RO_NONE, NULL) < 0) {
            return -1;
        }
        j->p = skip_ws(j->p, j->e);
        if (j->p < j->e && *j->p == ',') {
            j->p = skip_ws(j->p + 1, j->e);
            continue;
        }
        if (j->p < j->e && *j->p == ']') {
            j->p++;
            return 0;
        }
        return jerr(j, "',' or ']' expected");
    }
}

static int parse_value(jp_t *j, jv_t *out, int role, void *dst)
{
    if (++j->depth > JSON_MAX_DEPTH)
        return jerr(j, "maximum parsing depth reached");
    if (j->p >= j->e)
        return jerr(j, "premature end of input");
    out->b = j->p;
    out->s.p = NULL;
    out->s.n = 0;
    int rc;
    switch (*j->p) {
    case '{':
        out->t = JT_OBJ;
        rc = parse_object(j, role == RO_TOP || role == RO_EVENT || role == RO_PAYLOAD || role == RO_CTX ? role : RO_NONE, dst);
        break;
    case '[':
        out->t = JT_ARR;
        rc = parse_array(j, role == RO_EVENTS ? role : RO_NONE);
        break;
    case '"':
        out->t = JT_STR;
        rc = parse_str(j, &out->s, role == RO_KEEP);
        break;
    case 't':
    case 'f':
    case 'n': {
        static const char *lits[] = {"true", "false", "null"};
        const char *l = lits[*j->p == 't' ? 0 : *j->p == 'f' ? 1 : 2];
        size_t n = strlen(l);
        out->t = JT_LIT;
        if ((size_t)(j->e - j->p) < n || memcmp(j->p, l, n) ||
            ((size_t)(j->e - j->p) > n && ((j->p[n] | 0x20) >= 'a' && (j->p[n] | 0x20) <= 'z')))
            rc = jerr(j, "invalid token");
        else
            j->p += n, rc = 0;
        break;
    }
    default:
        out->t = JT_NUM;
        rc = parse_num(j);
        break;
    }
    /* jansson's lexer drops one NUL byte right after a number or a literal ("[1\0]" loads as
     * [1]: its unget of that byte is lost); so does this parser, to accept the same bodies */
    if (!rc && (out->t == JT_NUM || out->t == JT_LIT) && j->p < j->e && !*j->p)
        j->p++;
    out->e = j->p;
    j->depth--;
    return rc;
}

/* The whole body: 0, or -1 with j->err. */
static int parse_doc(jp_t *j)
{
    j->p = skip_ws(j->p, j->e);
    if (j->p >= j->e || (*j->p != '{' && *j->p != '['))
        return jerr(j, "'[' or '{' expected");
    jv_t root;
    if (parse_value(j, &root, RO_TOP, NULL) < 0)
        return -1;
    if (root.t != JT_OBJ)
        j->events_array = 0;
    j->p = skip_ws(j->p, j->e);
    if (j->p < j->e)
        return jerr(j, "end of file expected");
    return 0;
}

/* ---------------------------------------------------------------- publish */

static void batch_free(batch_t *b)
{
    arena_t a = b->arena; /* b lives in it */
    arena_free(&a);
}

static void ev_err(batch_t *b, uint32_t i, const char *reason) { b->errs[b->nerr++] = (everr_t){i, reason}; }

static const char R_DEF[] = "eventDefinition (a string) is required", R_DEFLEN[] = "eventDefinition must be 1..256 bytes",
                  R_PL[] = "payload must be an object",
                  R_UNIT[] = "no unit: give payload.context.targetingKey, payload.targetingKey or context.targetingKey (1..256 bytes)",
                  R_TIME[] = "eventTime must be an RFC 3339 time such as 2026-11-23T08:00:00Z",
                  R_FUTURE[] = "eventTime is more than 5 minutes in the future",
                  R_ID[] = "eventId must be a string of 1..128 bytes", R_BIG[] = "payload over 16 KiB",
                  R_NOMEM[] = "out of memory";

/* Parse a publish body for tenant into a batch (see gh_exp_publish). */
static batch_t *parse_batch(const char *tenant, const char *body, size_t len, int64_t now, int *status, char *err,
                            size_t errcap)
{
    *status = 500;
    arena_t a = {0};
    /* one chunk for all: the batch, the body's copy, decoded strings, per event its views
     * (at most one event per 2 bytes of body), its pevent_t and error, an anonymous id */
    size_t nmax = GH_MIN(len / 2 + 1, (size_t)MAX_EVENTS);
    size_t need = sizeof(batch_t) + 2 * len + 256 + nmax * (sizeof(rawev_t) + sizeof(pevent_t) + sizeof(everr_t) + 48);
    batch_t *b = arena_alloc_hint(&a, sizeof *b, need);
    if (!b) {
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    memset(b, 0, sizeof *b);
    b->arena = a;
    char *copy = arena_alloc(&b->arena, len + 1); /* the batch outlives the request's buffer */
    if (!copy) {
        batch_free(b);
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    memcpy(copy, body, len);
    jp_t j;
    memset(&j, 0, sizeof j);
    j.p = j.start = copy;
    j.e = copy + len;
    j.arena = &b->arena;
    j.capev = (uint32_t)nmax;
    j.evs = arena_alloc(&b->arena, nmax * sizeof *j.evs);
    if (!j.evs) {
        batch_free(b);
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    *status = 400;
    int rc = parse_doc(&j);
    free(j.keys);
    if (rc < 0 || !j.events_array || j.total > MAX_EVENTS) {
        if (rc < 0)
            snprintf(err, errcap, "the body is not JSON: %.160s", j.err);
        else if (!j.events_array)
            snprintf(err, errcap, "the body must be {\"events\": [...]}");
        else
            *status = 413, snprintf(err, errcap, "%u events: at most %u in one request", j.total, MAX_EVENTS);
        if (rc < 0 && strstr(j.err, "out of memory"))
            *status = 500, snprintf(err, errcap, "out of memory");
        batch_free(b);
        return NULL;
    }
    uint32_t n = j.total;
    b->ev = arena_alloc(&b->arena, (n ? n : 1) * sizeof *b->ev);
    b->errs = arena_alloc(&b->arena, (n ? n : 1) * sizeof *b->errs);
    if (!b->ev || !b->errs) {
        batch_free(b);
        *status = 500;
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
    size_t tlen = strlen(b->tenant);
    b->tenant_h = gh_exp_hash(b->tenant, tlen);
    sv_t last_name = {NULL, 0};
    uint64_t last_name_h = 0;
    for (uint32_t i = 0; i < n; i++) {
        const rawev_t *r = &j.evs[i];
        if (r->ev.t != JT_OBJ || r->def.t != JT_STR) {
            ev_err(b, i, R_DEF);
            continue;
        }
        sv_t name = r->def.s;
        if (name.n >= 17 && !memcmp(name.p, "eventDefinitions/", 17)) /* Confidence's resource name */
            name.p += 17, name.n -= 17;
        if (!name.n || name.n > MAX_NAME) {
            ev_err(b, i, R_DEFLEN);
            continue;
        }
        if (r->pl.t != JT_NONE && r->pl.t != JT_OBJ) {
            ev_err(b, i, R_PL);
            continue;
        }
        const jv_t *cands[] = {&r->plctx_tk, &r->pl_tk, &r->ectx_tk, &j.doc_tk}, *unit = NULL;
        for (size_t k = 0; k < 4 && !unit; k++)
            if (cands[k]->t == JT_STR)
                unit = cands[k];
        if (!unit || !unit->s.n || unit->s.n > MAX_NAME) {
            ev_err(b, i, R_UNIT);
            continue;
        }
        int64_t t_ms = now;
        if (r->tm.t != JT_NONE) {
            char tb[256], *tp = tb;
            if (r->tm.t == JT_STR && r->tm.s.n >= sizeof tb)
                tp = malloc(r->tm.s.n + 1);
            if (r->tm.t != JT_STR || !tp) {
                ev_err(b, i, r->tm.t != JT_STR ? R_TIME : R_NOMEM);
                continue;
            }
            memcpy(tp, r->tm.s.p, r->tm.s.n);
            tp[r->tm.s.n] = 0;
            t_ms = parse_time(tp);
            if (tp != tb)
                free(tp);
            if (t_ms < 0) {
                ev_err(b, i, R_TIME);
                continue;
            }
            if (t_ms > now + FUTURE_MS) {
                ev_err(b, i, R_FUTURE);
                continue;
            }
        }
        if (r->id.t != JT_NONE && (r->id.t != JT_STR || !r->id.s.n || r->id.s.n > 128)) {
            ev_err(b, i, R_ID);
            continue;
        }
        sv_t pl = r->pl.t == JT_OBJ ? (sv_t){r->pl.b, (size_t)(r->pl.e - r->pl.b)} : (sv_t){"{}", 2};
        if (pl.n > MAX_PAYLOAD) {
            ev_err(b, i, R_BIG);
            continue;
        }
        pevent_t *e = &b->ev[b->nev];
        e->unit = unit->s;
        if (r->id.t == JT_STR) {
            e->id = r->id.s;
        } else { /* no id: the event's content is its identity (an identical retry is one event) */
            char *idb = arena_alloc(&b->arena, 24);
            if (!idb) {
                ev_err(b, i, R_NOMEM);
                continue;
            }
            uint64_t h = gh_exp_hash(r->ev.b, (size_t)(r->ev.e - r->ev.b)) ^ gh_exp_hash(e->unit.p, e->unit.n);
            e->id = (sv_t){idb, (size_t)snprintf(idb, 24, "h:%016llx", (unsigned long long)h)};
        }
        if (name.n != last_name.n || memcmp(name.p, last_name.p, name.n)) {
            last_name = name;
            last_name_h = gh_exp_hash(name.p, name.n);
        }
        e->name = name;
        e->name_h = last_name_h;
        e->payload = pl;
        e->unit_h = gh_exp_hash(e->unit.p, e->unit.n);
        event_ident(b->tenant, tlen, e->id, &e->id_h, &e->id_h2);
        e->time_ms = t_ms;
        e->fresh = 0;
        b->nev++;
    }
    *status = 200;
    return b;
}

int gh_exp_publish(uint32_t slot, const gh_conf_tenant_t *t, const char *body, size_t len, gh_exp_done_fn done,
                   void *arg, int *status, char *err, size_t errcap)
{
    if (!P.running) {
        *status = 503;
        snprintf(err, errcap, "experiments are not enabled (no experiments configured and no store)");
        return -1;
    }
    batch_t *b = parse_batch(t->name, body, len, (int64_t)now_ms(), status, err, errcap);
    if (!b)
        return -1;
    b->slot = slot;
    b->done = done;
    b->arg = arg;
    pthread_mutex_lock(&P.qmu);
    *P.qtail = b;
    P.qtail = &b->next;
    pthread_cond_signal(&P.qcv);
    pthread_mutex_unlock(&P.qmu);
    *status = 200;
    return 0;
}

/* ---------------------------------------------------------------- results */

/* Exposure and observation records the workers could not hand over (a full ring), all
 * experiments together since the start: results are missing these. */
static uint64_t records_dropped(void)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < P.nrings; i++)
        n += __atomic_load_n(&P.rings[i].dropped, __ATOMIC_RELAXED);
    return n;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *pair(double a, double b)
{
    json_t *x = json_array();
    json_array_append_new(x, num(a));
    json_array_append_new(x, num(b));
    return x;
}

static const char *kind_name(int k)
{
    return k == GH_XK_CONVERSION ? "conversion" : k == GH_XK_MEAN ? "mean" : "ratio";
}

/* The metric's value in one variant (a proportion, a mean per unit, or a ratio of sums). */
static double metric_value(const xstate_t *x, uint32_t v, uint32_t m)
{
    const vsum_t *s = &x->sums[(size_t)v * x->nm + m];
    double n = x->vn[v];
    switch (x->metrics[m].kind) {
    case GH_XK_CONVERSION:
        return n ? s->conv / n : NAN;
    case GH_XK_MEAN:
        return n ? s->s1 / n : NAN;
    default:
        return s->sb ? s->sa / s->sb : NAN;
    }
}

/* One treatment against control for metric m (stats.h). */
static int compare(const xstate_t *x, uint32_t m, uint32_t t, gh_effect_t *ef, double *theta)
{
    const vsum_t *c = &x->sums[m], *s = &x->sums[(size_t)t * x->nm + m];
    double nc = x->vn[0], nt = x->vn[t];
    *theta = NAN;
    switch (x->metrics[m].kind) {
    case GH_XK_CONVERSION:
        return gh_stats_prop(nc, c->conv, nt, s->conv, x->alpha, ef);
    case GH_XK_MEAN:
        if (x->metrics[m].cuped) {
            gh_cuped_moments_t a = {nc, c->s1, c->s2, c->sx, c->sxx, c->sxy}, b = {nt, s->s1, s->s2, s->sx, s->sxx, s->sxy};
            return gh_stats_cuped(&a, &b, x->alpha, ef, theta);
        } else {
            gh_moments_t a = {nc, c->s1, c->s2}, b = {nt, s->s1, s->s2};
            return gh_stats_welch(&a, &b, x->alpha, ef);
        }
    default: {
        gh_ratio_moments_t a = {nc, c->sa, c->sb, c->saa, c->sbb, c->sab}, b = {nt, s->sa, s->sb, s->saa, s->sbb, s->sab};
        return gh_stats_ratio(&a, &b, x->alpha, ef);
    }
    }
}

json_t *gh_exp_results(const char *tenant, const char *id, int *status, char *err, size_t errcap)
{
    if (!P.running) {
        *status = 404;
        snprintf(err, errcap, "experiments are not enabled");
        return NULL;
    }
    pthread_mutex_lock(&P.mu);
    xstate_t *x = xs_by(gh_exp_hash(tenant, strlen(tenant)), tenant, id);
    if (!x) {
        pthread_mutex_unlock(&P.mu);
        *status = 404;
        snprintf(err, errcap, "tenant %.100s has no experiment %.100s", tenant, id);
        return NULL;
    }
    json_t *out = json_object(), *units = json_object(), *metrics = json_array();
    json_object_set_new(out, "tenant", json_string(x->tenant));
    json_object_set_new(out, "experiment", json_string(x->id));
    json_object_set_new(out, "flag", json_string(x->flag));
    json_object_set_new(out, "control", json_string(x->variants[0]));
    double total = 0;
    for (uint32_t v = 0; v < x->nv; v++) {
        json_object_set_new(units, x->variants[v], json_integer((json_int_t)x->vn[v]));
        total += x->vn[v];
    }
    json_object_set_new(out, "units", units);
    json_object_set_new(out, "exposure_records_since_start", json_integer((json_int_t)x->exposures));
    json_object_set_new(out, "observation_records_since_start", json_integer((json_int_t)x->observations));
    json_object_set_new(out, "unattributed_events", json_integer((json_int_t)x->unattributed));
    json_object_set_new(out, "dropped_units", json_integer((json_int_t)x->dropped_units));
    json_object_set_new(out, "records_dropped", json_integer((json_int_t)records_dropped()));
    /* sample-ratio mismatch against the planned allocation */
    double chi2 = NAN, srm_p = gh_stats_srm(x->vn, x->weights, (int)x->nv, &chi2);
    json_t *srm = json_pack("{s:o, s:o, s:b}", "p", num(srm_p), "chi2", num(chi2), "warning", isfinite(srm_p) && srm_p < 0.001);
    json_t *exp_share = json_object();
    for (uint32_t v = 0; v < x->nv; v++)
        json_object_set_new(exp_share, x->variants[v], json_real(x->weights[v]));
    json_object_set_new(srm, "allocation", exp_share);
    json_object_set_new(out, "srm", srm);
    json_object_set_new(out, "sequential",
                        json_pack("{s:s, s:f, s:f}", "method",
                                  "asymptotic confidence sequences (Howard et al. 2021; GrowthBook's sequential testing): "
                                  "valid at every look",
                                  "alpha", x->alpha, "n_star", x->n_star));
    /* every comparison, then the corrections across all of them */
    uint32_t ncmp = x->nm * (x->nv - 1), k = 0;
    double *ps = calloc(ncmp ? ncmp : 1, sizeof *ps), *holm = calloc(ncmp ? ncmp : 1, sizeof *holm),
           *bonf = calloc(ncmp ? ncmp : 1, sizeof *bonf);
    json_t **cmps = calloc(ncmp ? ncmp : 1, sizeof *cmps);
    int may_stop = 0, guard_bad = 0;
    for (uint32_t m = 0; m < x->nm && ps && holm && bonf && cmps; m++) {
        const gh_conf_xmetric_t *mt = &x->metrics[m];
        json_t *jm = json_object(), *vals = json_object(), *jc = json_array();
        json_object_set_new(jm, "name", json_string(mt->name));
        json_object_set_new(jm, "kind", json_string(kind_name(mt->kind)));
        json_object_set_new(jm, "direction", json_string(mt->direction < 0 ? "decrease" : "increase"));
        json_object_set_new(jm, "guardrail", json_boolean(mt->guardrail));
        for (uint32_t v = 0; v < x->nv; v++)
            json_object_set_new(vals, x->variants[v], num(metric_value(x, v, m)));
        json_object_set_new(jm, "values", vals);
        for (uint32_t t = 1; t < x->nv; t++, k++) {
            gh_effect_t ef;
            memset(&ef, 0, sizeof ef);
            double theta = NAN, slo = NAN, shi = NAN, sp = NAN;
            int ok = compare(x, m, t, &ef, &theta) == 0;
            if (ok)
                gh_stats_seq_ci(ef.diff, ef.diff_se, total, x->n_star, x->alpha, &slo, &shi, &sp);
            ps[k] = ok && isfinite(ef.p) ? ef.p : 1;
            json_t *c = json_object();
            json_object_set_new(c, "treatment", json_string(x->variants[t]));
            json_object_set_new(c, "defined", json_boolean(ok));
            json_object_set_new(c, "diff", num(ok ? ef.diff : NAN));
            json_object_set_new(c, "diff_ci", pair(ok ? ef.diff_lo : NAN, ok ? ef.diff_hi : NAN));
            json_object_set_new(c, "rel", num(ok ? ef.rel : NAN));
            json_object_set_new(c, "rel_ci", pair(ok ? ef.rel_lo : NAN, ok ? ef.rel_hi : NAN));
            json_object_set_new(c, "stat", num(ok ? ef.stat : NAN));
            json_object_set_new(c, "p", num(ok ? ef.p : NAN));
            json_object_set_new(c, "seq_ci", pair(slo, shi));
            json_object_set_new(c, "seq_p", num(sp));
            if (mt->cuped)
                json_object_set_new(c, "cuped_theta", num(theta));
            int excl = ok && isfinite(slo) && (slo > 0 || shi < 0);
            int good = excl && ((ef.diff > 0) == (mt->direction >= 0));
            json_object_set_new(c, "may_stop", json_boolean(excl));
            json_object_set_new(c, "verdict", json_string(!excl ? "inconclusive" : good ? "better" : "worse"));
            if (excl && !mt->guardrail)
                may_stop = 1;
            if (excl && !good && mt->guardrail)
                guard_bad = 1;
            cmps[k] = c;
            json_array_append_new(jc, json_incref(c));
        }
        json_object_set_new(jm, "comparisons", jc);
        json_array_append_new(metrics, jm);
    }
    if (ps && holm && bonf && cmps) {
        gh_stats_holm(ps, (int)ncmp, holm);
        gh_stats_bonferroni(ps, (int)ncmp, bonf);
        for (uint32_t i = 0; i < ncmp; i++) {
            json_object_set_new(cmps[i], "p_holm", num(holm[i]));
            json_object_set_new(cmps[i], "p_bonferroni", num(bonf[i]));
            json_decref(cmps[i]);
        }
    }
    free(ps);
    free(holm);
    free(bonf);
    free(cmps);
    json_object_set_new(out, "metrics", metrics);
    json_object_set_new(out, "decision",
                        json_string(guard_bad ? "stop: a guardrail metric is worse"
                                    : may_stop ? "may stop: a metric's always-valid interval excludes 0"
                                               : "keep running: no always-valid interval excludes 0 yet"));
    pthread_mutex_unlock(&P.mu);
    *status = 200;
    return out;
}


/* ---------------------------------------------------------------- the fuzz target's check */

/* The previous parse_batch, on jansson, kept as the reference the purpose-built parser is
 * checked against (gh_exp_parse_check only: not on the publish path). Per event: its error
 * reason, or NULL with its name, unit, id (NULL when derived) and time. */
typedef struct {
    const char *reason;
    char *name, *unit, *id;
    int64_t time_ms;
} refev_t;

static const char *ref_unit_of(const json_t *ev, const json_t *ctx)
{
    const json_t *pl = json_object_get(ev, "payload");
    const json_t *cands[] = {json_object_get(json_object_get(pl, "context"), "targetingKey"),
                             json_object_get(pl, "targetingKey"),
                             json_object_get(json_object_get(ev, "context"), "targetingKey"),
                             json_object_get(ctx, "targetingKey")};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++)
        if (json_is_string(cands[i]))
            return json_string_value(cands[i]);
    return NULL;
}

/* 0 with *out (n events), or the whole request's status; *notjson when jansson refused it. */
static int ref_parse(const char *body, size_t len, int64_t now, refev_t **out, size_t *nout, int *notjson)
{
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    const json_t *events = json_object_get(doc, "events");
    *notjson = !doc;
    *out = NULL;
    *nout = 0;
    if (!doc || !json_is_array(events)) {
        json_decref(doc);
        return 400;
    }
    size_t n = json_array_size(events);
    if (n > MAX_EVENTS) {
        json_decref(doc);
        return 413;
    }
    refev_t *r = calloc(n ? n : 1, sizeof *r);
    if (!r) {
        json_decref(doc);
        return 500;
    }
    const json_t *ctx = json_object_get(doc, "context");
    for (size_t i = 0; i < n; i++) {
        const json_t *ev = json_array_get(events, i);
        const json_t *def = json_object_get(ev, "eventDefinition"), *pl = json_object_get(ev, "payload"),
                     *tm = json_object_get(ev, "eventTime"), *id = json_object_get(ev, "eventId");
        const char *unit = ref_unit_of(ev, ctx);
        if (!json_is_object(ev) || !json_is_string(def)) {
            r[i].reason = R_DEF;
            continue;
        }
        const char *name = json_string_value(def);
        if (!strncmp(name, "eventDefinitions/", 17))
            name += 17;
        if (!*name || strlen(name) > MAX_NAME) {
            r[i].reason = R_DEFLEN;
            continue;
        }
        if (pl && !json_is_object(pl)) {
            r[i].reason = R_PL;
            continue;
        }
        if (!unit || !*unit || strlen(unit) > MAX_NAME) {
            r[i].reason = R_UNIT;
            continue;
        }
        int64_t t_ms = now;
        if (tm) {
            if (!json_is_string(tm) || (t_ms = parse_time(json_string_value(tm))) < 0) {
                r[i].reason = R_TIME;
                continue;
            }
            if (t_ms > now + FUTURE_MS) {
                r[i].reason = R_FUTURE;
                continue;
            }
        }
        if (id && (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > 128)) {
            r[i].reason = R_ID;
            continue;
        }
        char *ptext = pl ? json_dumps(pl, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (ptext && strlen(ptext) > MAX_PAYLOAD)
            r[i].reason = R_BIG;
        free(ptext);
        if (r[i].reason)
            continue;
        r[i].name = strdup(name);
        r[i].unit = strdup(unit);
        r[i].id = id ? strdup(json_string_value(id)) : NULL;
        r[i].time_ms = t_ms;
    }
    json_decref(doc);
    *out = r;
    *nout = n;
    return 0;
}

static int sv_eq(sv_t a, const char *s) { return s && a.n == strlen(s) && !memcmp(a.p, s, a.n); }

int gh_exp_parse_check(const char *body, size_t len, int64_t now_ms_, uint32_t *nev, uint32_t *nerr, char *err,
                       size_t errcap)
{
    int status = 0, bad = 0, notjson = 0;
    refev_t *ref = NULL;
    size_t nref = 0;
    int rstatus = ref_parse(body, len, now_ms_, &ref, &nref, &notjson);
    batch_t *b = parse_batch("fuzz", body, len, now_ms_, &status, err, errcap);
    if (!b) {
        /* refused as a whole: for the same reason as jansson's parser (out of memory aside) */
        bad |= status != 500 && rstatus != 500 &&
               (status != rstatus || notjson != !strncmp(err, "the body is not JSON", 20));
        for (size_t i = 0; i < nref; i++)
            free(ref[i].name), free(ref[i].unit), free(ref[i].id);
        free(ref);
        return bad ? -1000 : -status;
    }
    *nev = b->nev;
    *nerr = b->nerr;
    bad |= rstatus != 0 && rstatus != 500;
    for (uint32_t i = 0; i < b->nev; i++) { /* what the store and the aggregator rely on */
        const pevent_t *e = &b->ev[i];
        bad |= !e->name.n || e->name.n > MAX_NAME || !e->unit.n || e->unit.n > MAX_NAME || !e->id.n ||
               e->payload.n > MAX_PAYLOAD || e->time_ms > now_ms_ + FUTURE_MS || e->time_ms < 0 ||
               e->name_h != gh_exp_hash(e->name.p, e->name.n) || e->unit_h != gh_exp_hash(e->unit.p, e->unit.n);
        json_t *pl = json_loadb(e->payload.p, e->payload.n, JSON_REJECT_DUPLICATES, NULL);
        bad |= !json_is_object(pl);
        /* the numbers the aggregates read, as jansson reads them */
        const char *keys[] = {"value", "amount", "a"};
        for (size_t k = 0; k < 3 && pl; k++) {
            const json_t *v = json_object_get(pl, keys[k]);
            double mine = pl_number(e->payload, keys[k], strlen(keys[k])), want = json_is_number(v) ? json_number_value(v) : NAN;
            bad |= isnan(mine) != isnan(want) || (!isnan(want) && mine != want);
        }
        json_decref(pl);
    }
    uint32_t k = 0, ie = 0;
    int64_t last = -1;
    for (uint32_t i = 0; i < b->nerr; i++) { /* indexes ascending, each with a reason */
        bad |= (int64_t)b->errs[i].index <= last || !b->errs[i].reason;
        last = b->errs[i].index;
    }
    /* event by event, the same outcome as the reference (sizes of payloads aside: the reference
     * measured its re-serialised text, this parser the text as sent) */
    bad |= rstatus == 0 && nref != (size_t)b->nev + b->nerr;
    for (size_t i = 0; rstatus == 0 && i < nref && !bad; i++) {
        int mine_err = ie < b->nerr && b->errs[ie].index == i;
        const char *mr = mine_err ? b->errs[ie].reason : NULL;
        if (mine_err)
            ie++;
        const pevent_t *e = mine_err ? NULL : &b->ev[k++];
        if ((mr && mr == R_BIG) || ref[i].reason == R_BIG)
            continue;
        if (mr || ref[i].reason) {
            bad |= mr != ref[i].reason;
            continue;
        }
        bad |= !sv_eq(e->name, ref[i].name) || !sv_eq(e->unit, ref[i].unit) || (ref[i].id && !sv_eq(e->id, ref[i].id)) ||
               e->time_ms != ref[i].time_ms;
    }
    for (size_t i = 0; i < nref; i++)
        free(ref[i].name), free(ref[i].unit), free(ref[i].id);
    free(ref);
    batch_free(b);
    return bad ? -1000 : 0;
}
