/* exp.c: see exp.h. */
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "experiments/stats.h"
#include "protect/shtab.h"
#include "proxy/worker.h"

#define RING_RECS 16384u         /* records per producer ring (power of two) */
#define MAX_EVENTS 1000u         /* events in one publish */
#define MAX_NAME 256u            /* bytes of an event name, unit, event id */
#define MAX_PAYLOAD (16u << 10)  /* bytes of one event's payload (as JSON) */
#define FUTURE_MS (5 * 60 * 1000) /* an eventTime later than now + this is refused */
#define UNITS_MAX (16u << 20)    /* units per experiment */
#define PRE_MAX (1u << 20)       /* covariate entries of units not yet exposed */
#define SNAPSHOT_MS 2000
#define PERSIST_MS 200            /* first exposures are written at least this often ... */
#define PERSIST_BATCH 8192        /* ... or when this many wait */
#define PATH_KEEP 72

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

enum { R_EXPOSE = 1, R_OBSERVE };

typedef struct {
    uint8_t kind;
    uint8_t path_len;
    uint16_t status;
    uint32_t latency_us;
    uint64_t tenant_h, unit_h, time_ms;
    uint64_t a, b; /* R_EXPOSE: flag_h, variant_h; R_OBSERVE: bytes */
    char path[PATH_KEEP];
} rec_t;

typedef struct {
    uint64_t head __attribute__((aligned(64)));
    uint64_t tail __attribute__((aligned(64)));
    uint64_t dropped;
    rec_t *recs;
} ring_t;

/* A publish handed to the pipeline. */
typedef struct pevent {
    char *name, *unit, *id, *payload; /* payload: compact JSON text (stored) */
    json_t *pl;                       /* ... and parsed (applied), or NULL for {} */
    uint64_t name_h, unit_h, id_h;
    int64_t time_ms;
} pevent_t;

typedef struct batch {
    struct batch *next;
    gh_wtask_t task; /* the answer, run on the worker */
    uint32_t slot;
    char tenant[128];
    uint64_t tenant_h;
    pevent_t *ev;
    uint32_t nev;
    json_t *errors; /* per-event problems found while parsing: [{index, reason}] */
    uint32_t accepted, duplicates;
    int failed;     /* the commit failed: 503 */
    gh_exp_done_fn done;
    void *arg;
} batch_t;

/* ---------------------------------------------------------------- aggregator state */

typedef struct {
    double n, conv, s1, s2, sx, sxx, sxy, sa, sb, saa, sbb, sab;
} vsum_t; /* per variant and metric */

typedef struct {
    uint64_t unit_h; /* 0: empty */
    int64_t first_ms;
    uint8_t variant;
    uint8_t dirty;   /* edge values changed since the last snapshot */
    uint8_t persisted;
} unit_t;

typedef struct {
    double num, den, pre;
} uval_t;

typedef struct xstate {
    struct xstate *next;
    char *tenant, *id, *flag;
    uint64_t tenant_h, flag_h, key_h; /* key_h: of tenant and id */
    uint8_t replay;                   /* being rebuilt from the store */
    char **variants;
    uint64_t *variant_h;
    double *weights;
    uint32_t nv;
    gh_conf_xmetric_t *metrics; /* owned copies of the definitions' strings are not needed: conf held */
    uint32_t nm;
    int64_t start_ms, stop_ms;
    double alpha, n_star;
    /* units */
    unit_t *units;
    uval_t *vals; /* cap * nm */
    uint32_t cap, count;
    double *vn;   /* units per variant */
    vsum_t *sums; /* nv * nm */
    uint64_t exposures, unattributed, dropped_units, late;
    int live; /* in the current configuration */
} xstate_t;

typedef struct {
    uint64_t key; /* hash(exp, unit, metric), 0 empty */
    double v;
} pre_t;

static struct {
    pthread_mutex_t mu; /* the state below, against results readers */
    pthread_mutex_t qmu; /* publishes */
    pthread_cond_t qcv;
    batch_t *queue, **qtail;
    pthread_t thread;
    int running, stop, replaying;
    ring_t *rings;
    uint32_t nrings;
    sqlite3 *db;
    sqlite3_stmt *ins_event, *ins_unit, *up_edge;
    FILE *audit;
    gh_conf_t *conf, *next_conf;
    xstate_t *xs;
    pre_t *pre;
    uint32_t npre;
    int64_t last_snapshot, last_persist;
    uint64_t dropped_logged;
    int64_t dropped_log_ms;
    /* first exposures not yet in the store */
    struct pend {
        xstate_t *x;
        uint64_t unit_h;
        int64_t ms;
        uint8_t v;
    } *pend;
    uint32_t npend, cappend;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .qmu = PTHREAD_MUTEX_INITIALIZER, .qcv = PTHREAD_COND_INITIALIZER};

int gh_exp_running(void) { return P.running; }

/* ---- metric values of a record ---- */

static int path_match(const gh_conf_xsource_t *s, const char *path, size_t n)
{
    return n >= s->path_len && !memcmp(path, s->path, s->path_len);
}

/* The value a source takes from an event (name_h, payload), or NAN when it does not apply. */
static double event_value(const gh_conf_xsource_t *s, uint64_t name_h, const json_t *payload)
{
    if (s->source != GH_XS_EVENT || s->event_h != name_h)
        return NAN;
    if (!s->field)
        return 1;
    const json_t *v = json_object_get(payload, s->field);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static double observe_value(const gh_conf_xsource_t *s, const rec_t *r)
{
    switch (s->source) {
    case GH_XS_PATH:
        return path_match(s, r->path, r->path_len) ? 1 : NAN;
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

static int is_edge(const gh_conf_xsource_t *s) { return s->source >= GH_XS_PATH; }

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

static int units_grow(xstate_t *x)
{
    uint32_t ncap = x->cap ? x->cap * 2 : 1024;
    unit_t *nu = calloc(ncap, sizeof *nu);
    uval_t *nvl = calloc((size_t)ncap * (x->nm ? x->nm : 1), sizeof *nvl);
    if (!nu || !nvl) {
        free(nu);
        free(nvl);
        return -1;
    }
    for (uint32_t i = 0; i < x->cap; i++) {
        if (!x->units[i].unit_h)
            continue;
        uint32_t j = (uint32_t)x->units[i].unit_h & (ncap - 1);
        while (nu[j].unit_h)
            j = (j + 1) & (ncap - 1);
        nu[j] = x->units[i];
        memcpy(&nvl[(size_t)j * x->nm], &x->vals[(size_t)i * x->nm], x->nm * sizeof *nvl);
    }
    free(x->units);
    free(x->vals);
    x->units = nu;
    x->vals = nvl;
    x->cap = ncap;
    return 0;
}

static uint64_t pre_key(const xstate_t *x, uint64_t unit_h, uint32_t m)
{
    uint64_t k[3] = {x->key_h, unit_h, m};
    return gh_siphash24(1, 2, k, sizeof k) | 1;
}

static pre_t *pre_slot(uint64_t key, int create)
{
    if (!P.pre && !(P.pre = calloc(PRE_MAX * 2, sizeof *P.pre)))
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

/* A unit's value of metric m changes by (dnum, dden, dpre): the variant's sums follow. */
static void unit_add(xstate_t *x, uint32_t ui, uint32_t m, double dnum, double dden, double dpre)
{
    unit_t *u = &x->units[ui];
    uval_t *v = &x->vals[(size_t)ui * x->nm + m];
    vsum_t *s = &x->sums[(size_t)u->variant * x->nm + m];
    double y0 = v->num, y1 = y0 + dnum, d0 = v->den, d1 = d0 + dden, p0 = v->pre, p1 = p0 + dpre;
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
    v->num = y1;
    v->den = d1;
    v->pre = p1;
}

static void pend_add(xstate_t *x, uint64_t unit_h, int64_t ms, uint8_t v)
{
    if (P.npend == P.cappend) {
        uint32_t nc = P.cappend ? P.cappend * 2 : 1024;
        struct pend *np = realloc(P.pend, nc * sizeof *np);
        if (!np)
            return; /* kept in memory only; the next exposure of a new unit tries again */
        P.pend = np;
        P.cappend = nc;
    }
    P.pend[P.npend++] = (struct pend){x, unit_h, ms, v};
}

/* A unit's first exposure to variant v of x at ms. Returns its slot, or -1. */
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
    *u = (unit_t){.unit_h = unit_h, .first_ms = ms, .variant = (uint8_t)v, .persisted = !persist};
    x->count++;
    x->vn[v] += 1;
    for (uint32_t m = 0; m < x->nm; m++) { /* its covariates so far */
        if (!x->metrics[m].cuped)
            continue;
        pre_t *p = pre_slot(pre_key(x, unit_h, m), 0);
        if (p) {
            unit_add(x, idx, m, 0, 0, p->v);
            p->v = 0;
        }
    }
    if (persist)
        pend_add(x, unit_h, ms, (uint8_t)v);
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

static void apply_observe(const rec_t *r)
{
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (!x->live || x->tenant_h != r->tenant_h)
            continue;
        uint32_t idx;
        unit_t *u = unit_find(x, r->unit_h, &idx);
        if (!u || (int64_t)r->time_ms < u->first_ms)
            continue;
        for (uint32_t m = 0; m < x->nm; m++) {
            const gh_conf_xmetric_t *mt = &x->metrics[m];
            double dn = is_edge(&mt->num) ? observe_value(&mt->num, r) : NAN;
            double dd = mt->kind == GH_XK_RATIO && is_edge(&mt->den) ? observe_value(&mt->den, r) : NAN;
            if (isnan(dn) && isnan(dd))
                continue;
            unit_add(x, idx, m, isnan(dn) ? 0 : dn, isnan(dd) ? 0 : dd, 0);
            u->dirty = 1;
        }
    }
}

/* One committed (new) event: the experiments of its tenant whose metrics use it. */
static void apply_event(uint64_t tenant_h, const pevent_t *e, const json_t *payload)
{
    for (xstate_t *x = P.xs; x; x = x->next) {
        if (x->tenant_h != tenant_h || (P.replaying && !x->replay))
            continue;
        uint32_t idx;
        unit_t *u = unit_find(x, e->unit_h, &idx);
        int used = 0;
        for (uint32_t m = 0; m < x->nm; m++) {
            const gh_conf_xmetric_t *mt = &x->metrics[m];
            double dn = event_value(&mt->num, e->name_h, payload);
            double dd = mt->kind == GH_XK_RATIO ? event_value(&mt->den, e->name_h, payload) : NAN;
            if (isnan(dn) && isnan(dd))
                continue;
            used = 1;
            if (u && e->time_ms >= u->first_ms) {
                unit_add(x, idx, m, isnan(dn) ? 0 : dn, isnan(dd) ? 0 : dd, 0);
            } else if (mt->cuped && !isnan(dn)) { /* before exposure: the covariate */
                if (u) {
                    unit_add(x, idx, m, 0, 0, dn);
                    x->late++;
                } else {
                    pre_t *p = pre_slot(pre_key(x, e->unit_h, m), 1);
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

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA cache_size=-65536;" /* 64 MiB: the units index stays in memory (random inserts) */
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "INSERT OR IGNORE INTO meta VALUES('schema_version','1');"
    "CREATE TABLE IF NOT EXISTS units(tenant TEXT NOT NULL, experiment TEXT NOT NULL, unit_h INTEGER NOT NULL,"
    " variant TEXT NOT NULL, first_ms INTEGER NOT NULL, PRIMARY KEY(tenant, experiment, unit_h)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, event_id TEXT NOT NULL,"
    " name TEXT NOT NULL, unit TEXT NOT NULL, time_ms INTEGER NOT NULL, payload TEXT NOT NULL,"
    " UNIQUE(tenant, event_id));"
    "CREATE TABLE IF NOT EXISTS unit_edge(tenant TEXT NOT NULL, experiment TEXT NOT NULL, unit_h INTEGER NOT NULL,"
    " metric TEXT NOT NULL, num REAL NOT NULL, den REAL NOT NULL,"
    " PRIMARY KEY(tenant, experiment, unit_h, metric)) WITHOUT ROWID;";

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
    if (db_exec(SCHEMA) < 0 ||
        sqlite3_prepare_v2(P.db, "INSERT OR IGNORE INTO events(tenant,event_id,name,unit,time_ms,payload) VALUES(?,?,?,?,?,?)",
                           -1, &P.ins_event, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(P.db, "INSERT OR IGNORE INTO units VALUES(?,?,?,?,?)", -1, &P.ins_unit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(P.db, "INSERT OR REPLACE INTO unit_edge VALUES(?,?,?,?,?,?)", -1, &P.up_edge, NULL) !=
            SQLITE_OK) {
        snprintf(err, errcap, "experiments store %s: %s", path, sqlite3_errmsg(P.db));
        return -1;
    }
    return 0;
}

/* First exposures and changed edge values to the store (inside a transaction). */
static void persist_units(int64_t now)
{
    P.last_persist = now;
    for (uint32_t i = 0; i < P.npend; i++) {
        struct pend *p = &P.pend[i];
        sqlite3_bind_text(P.ins_unit, 1, p->x->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(P.ins_unit, 2, p->x->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(P.ins_unit, 3, (sqlite3_int64)p->unit_h);
        sqlite3_bind_text(P.ins_unit, 4, p->x->variants[p->v], -1, SQLITE_STATIC);
        sqlite3_bind_int64(P.ins_unit, 5, p->ms);
        sqlite3_step(P.ins_unit);
        sqlite3_reset(P.ins_unit);
    }
    P.npend = 0;
    if (now - P.last_snapshot < SNAPSHOT_MS)
        return;
    P.last_snapshot = now;
    for (xstate_t *x = P.xs; x; x = x->next)
        for (uint32_t i = 0; i < x->cap; i++) {
            unit_t *u = &x->units[i];
            if (!u->unit_h || !u->dirty)
                continue;
            u->dirty = 0;
            for (uint32_t m = 0; m < x->nm; m++) {
                if (!is_edge(&x->metrics[m].num) && !(x->metrics[m].kind == GH_XK_RATIO && is_edge(&x->metrics[m].den)))
                    continue;
                uval_t *v = &x->vals[(size_t)i * x->nm + m];
                sqlite3_bind_text(P.up_edge, 1, x->tenant, -1, SQLITE_STATIC);
                sqlite3_bind_text(P.up_edge, 2, x->id, -1, SQLITE_STATIC);
                sqlite3_bind_int64(P.up_edge, 3, (sqlite3_int64)u->unit_h);
                sqlite3_bind_text(P.up_edge, 4, x->metrics[m].name, -1, SQLITE_STATIC);
                /* edge parts only: event parts come back by replaying the events */
                sqlite3_bind_double(P.up_edge, 5, is_edge(&x->metrics[m].num) ? v->num : 0);
                sqlite3_bind_double(P.up_edge, 6, x->metrics[m].kind == GH_XK_RATIO && is_edge(&x->metrics[m].den) ? v->den : 0);
                sqlite3_step(P.up_edge);
                sqlite3_reset(P.up_edge);
            }
        }
}

/* ---------------------------------------------------------------- experiment states and configuration */

static void xs_free(xstate_t *x)
{
    free(x->units);
    free(x->vals);
    free(x->vn);
    free(x->sums);
    free(x->variant_h);
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
    if (!x->vn || !x->sums || !x->variant_h) {
        xs_free(x);
        return NULL;
    }
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
    x->start_ms = e->start_ms;
    x->stop_ms = e->stop_ms;
    x->alpha = e->alpha;
    x->n_star = e->n_star;
    x->live = 1;
}

/* Load an experiment's units and edge values from the store. */
static void load_units(xstate_t *x)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(P.db, "SELECT unit_h, variant, first_ms FROM units WHERE tenant=? AND experiment=?", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, x->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, x->id, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *vn = (const char *)sqlite3_column_text(st, 1);
            for (uint32_t v = 0; vn && v < x->nv; v++)
                if (!strcmp(x->variants[v], vn)) {
                    expose(x, (uint64_t)sqlite3_column_int64(st, 0), v, sqlite3_column_int64(st, 2), 0);
                    break;
                }
        }
    }
    sqlite3_finalize(st);
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

/* Replay the stored events of the experiments in list (not yet counted) in order. */
static void replay_events(xstate_t **list, uint32_t n)
{
    if (!n)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(P.db, "SELECT tenant, name, unit, time_ms, payload FROM events ORDER BY id", -1, &st, NULL) !=
        SQLITE_OK)
        return;
    /* only the listed experiments see the replay */
    for (uint32_t i = 0; i < n; i++)
        list[i]->replay = 1;
    P.replaying = 1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *tn = (const char *)sqlite3_column_text(st, 0), *nm = (const char *)sqlite3_column_text(st, 1),
                   *un = (const char *)sqlite3_column_text(st, 2), *pl = (const char *)sqlite3_column_text(st, 4);
        if (!tn || !nm || !un || !pl)
            continue;
        pevent_t e = {.name_h = gh_exp_hash(nm, strlen(nm)), .unit_h = gh_exp_hash(un, strlen(un)),
                      .time_ms = sqlite3_column_int64(st, 3)};
        json_t *payload = json_loads(pl, 0, NULL);
        apply_event(gh_exp_hash(tn, strlen(tn)), &e, payload);
        json_decref(payload);
    }
    sqlite3_finalize(st);
    P.replaying = 0;
    for (uint32_t i = 0; i < n; i++)
        list[i]->replay = 0;
}

/* Switch to configuration c (P.mu held): keep the states of unchanged experiments, build and
 * replay the others. */
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
            if (x) { /* redefined: counted again from the store */
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
            load_units(x);
            if (fresh)
                fresh[nfresh++] = x;
        }
    }
    replay_events(fresh, nfresh);
    free(fresh);
    /* states no longer configured: dropped (their data stays in the store) */
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

static size_t drain_rings(void)
{
    size_t n = 0;
    for (uint32_t i = 0; i < P.nrings; i++) {
        ring_t *rg = &P.rings[i];
        uint64_t head = rg->head, tail = __atomic_load_n(&rg->tail, __ATOMIC_ACQUIRE);
        for (; head != tail; head++, n++) {
            const rec_t *r = &rg->recs[head & (RING_RECS - 1)];
            if (r->kind == R_EXPOSE)
                apply_expose(r);
            else
                apply_observe(r);
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
    json_t *ans = json_pack("{s:i, s:i, s:O}", "accepted", (int)b->accepted, "duplicates", (int)b->duplicates, "errors",
                            b->errors);
    char *body = ans ? json_dumps(ans, JSON_COMPACT) : NULL;
    if (b->failed)
        b->done(b->arg, 503, FAIL_STORE, sizeof FAIL_STORE - 1);
    else if (body)
        b->done(b->arg, 200, body, strlen(body));
    else
        b->done(b->arg, 500, FAIL_NOMEM, sizeof FAIL_NOMEM - 1);
    free(body);
    json_decref(ans);
    batch_free(b);
}

/* A committed event to the event stream: {time, tenant, event_id, name, unit, value, payload},
 * value the payload's numeric "value" (else null), payload as JSON text. The event is already
 * in SQLite; the stream's spool takes it from here. */
static void stream_event(const char *tenant, const pevent_t *e, const json_t *payload)
{
    char ts[64];
    time_t sec = (time_t)(e->time_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(e->time_ms % 1000));
    const json_t *v = payload ? json_object_get(payload, "value") : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "time", ts, "tenant", tenant, "event_id", e->id,
                          "name", e->name, "unit", e->unit, "value",
                          json_is_number(v) ? json_real(json_number_value(v)) : json_null(), "payload",
                          e->payload ? e->payload : "{}");
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (txt)
        gh_stream_put(GH_EV_EVENT, tenant, strlen(tenant), e->id, strlen(e->id), txt, strlen(txt));
    free(txt);
    json_decref(o);
}

/* Commit a list of publishes in one transaction, apply the new events, answer. */
static void commit_batches(batch_t *list)
{
    int ok = db_exec("BEGIN") == 0;
    for (batch_t *b = list; ok && b; b = b->next)
        for (uint32_t i = 0; i < b->nev; i++) {
            pevent_t *e = &b->ev[i];
            sqlite3_bind_text(P.ins_event, 1, b->tenant, -1, SQLITE_STATIC);
            sqlite3_bind_text(P.ins_event, 2, e->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(P.ins_event, 3, e->name, -1, SQLITE_STATIC);
            sqlite3_bind_text(P.ins_event, 4, e->unit, -1, SQLITE_STATIC);
            sqlite3_bind_int64(P.ins_event, 5, e->time_ms);
            sqlite3_bind_text(P.ins_event, 6, e->payload, -1, SQLITE_STATIC);
            int rc = sqlite3_step(P.ins_event);
            sqlite3_reset(P.ins_event);
            if (rc != SQLITE_DONE) {
                ok = 0;
                break;
            }
            if (sqlite3_changes(P.db) == 0) {
                b->duplicates++;
                e->id_h = 0; /* not applied */
            } else {
                b->accepted++;
                e->id_h = 1;
            }
        }
    persist_units((int64_t)now_ms());
    if (ok && db_exec("COMMIT") == 0) {
        for (batch_t *b = list; b; b = b->next)
            for (uint32_t i = 0; i < b->nev; i++) {
                if (!b->ev[i].id_h)
                    continue;
                const json_t *payload = b->ev[i].pl; /* parsed once, on the worker */
                apply_event(b->tenant_h, &b->ev[i], payload);
                if (gh_stream_on(GH_EV_EVENT))
                    stream_event(b->tenant, &b->ev[i], payload);
                if (P.audit) {
                    json_t *ln = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:O?}", "type", "event", "time_ms",
                                           (json_int_t)b->ev[i].time_ms, "tenant", b->tenant, "event_id", b->ev[i].id,
                                           "name", b->ev[i].name, "unit", b->ev[i].unit, "payload", payload);
                    char *txt = ln ? json_dumps(ln, JSON_COMPACT) : NULL;
                    if (txt)
                        fprintf(P.audit, "%s\n", txt);
                    free(txt);
                    json_decref(ln);
                }
            }
    } else {
        db_exec("ROLLBACK");
        for (batch_t *b = list; b; b = b->next)
            b->failed = 1, b->accepted = b->duplicates = 0;
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
        size_t n = drain_rings(); /* exposures before the events that follow them */
        if (list) {
            commit_batches(list);
        } else if (P.npend >= PERSIST_BATCH || (P.npend && (int64_t)now_ms() - P.last_persist >= PERSIST_MS) ||
                   (int64_t)now_ms() - P.last_snapshot >= SNAPSHOT_MS) {
            /* first exposures go to the store in batches (not acknowledged to anyone: a crash
             * loses at most PERSIST_MS of them), one transaction for many */
            if (db_exec("BEGIN") == 0) {
                persist_units((int64_t)now_ms());
                db_exec("COMMIT");
            }
        }
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
        if (!list && !n) {
            pthread_mutex_lock(&P.qmu);
            if (!P.queue && !P.stop) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 5 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&P.qcv, &P.qmu, &ts);
            }
            pthread_mutex_unlock(&P.qmu);
        }
    }
    /* last snapshot of everything */
    pthread_mutex_lock(&P.mu);
    P.last_snapshot = 0;
    if (db_exec("BEGIN") == 0) {
        persist_units(SNAPSHOT_MS + 1);
        db_exec("COMMIT");
    }
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
    if (c->exp.audit_log && !(P.audit = fopen(c->exp.audit_log, "a"))) {
        snprintf(err, errcap, "experiments audit log %s: %s", c->exp.audit_log, strerror(errno));
        return GH_EIO;
    }
    P.rings = calloc(nslots, sizeof *P.rings);
    if (!P.rings)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < nslots; i++)
        if (!(P.rings[i].recs = calloc(RING_RECS, sizeof(rec_t))))
            return GH_ENOMEM;
    P.nrings = nslots;
    P.qtail = &P.queue;
    gh_conf_ref((gh_conf_t *)c);
    pthread_mutex_lock(&P.mu);
    switch_conf((gh_conf_t *)c);
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
    sqlite3_finalize(P.ins_event);
    sqlite3_finalize(P.ins_unit);
    sqlite3_finalize(P.up_edge);
    sqlite3_close(P.db);
    P.db = NULL;
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
        free(P.rings[i].recs);
    free(P.rings);
    P.rings = NULL;
    free(P.pre);
    P.pre = NULL;
    P.npre = 0;
    free(P.pend);
    P.pend = NULL;
    P.npend = P.cappend = 0;
}

/* ---------------------------------------------------------------- producers (workers) */

int gh_exp_flag_watched(const gh_conf_tenant_t *t, const char *flag)
{
    for (uint32_t i = 0; i < t->nexperiments; i++)
        if (!strcmp(t->experiments[i].flag, flag))
            return 1;
    return 0;
}

static rec_t *ring_slot(uint32_t slot)
{
    if (!P.running || slot >= P.nrings)
        return NULL;
    ring_t *rg = &P.rings[slot];
    uint64_t head = __atomic_load_n(&rg->head, __ATOMIC_ACQUIRE);
    if (rg->tail - head >= RING_RECS) { /* (read by results and the log) */
        __atomic_store_n(&rg->dropped, rg->dropped + 1, __ATOMIC_RELAXED);
        return NULL;
    }
    return &rg->recs[rg->tail & (RING_RECS - 1)];
}

static void ring_push(uint32_t slot) { __atomic_store_n(&P.rings[slot].tail, P.rings[slot].tail + 1, __ATOMIC_RELEASE); }

void gh_exp_expose(uint32_t slot, const gh_conf_tenant_t *t, const char *flag, const char *variant, uint64_t unit_h,
                   uint64_t time_ms)
{
    rec_t *r = ring_slot(slot);
    if (!r)
        return;
    r->kind = R_EXPOSE;
    r->tenant_h = gh_exp_hash(t->name, strlen(t->name));
    r->unit_h = unit_h;
    r->time_ms = time_ms;
    r->a = gh_exp_hash(flag, strlen(flag));
    r->b = gh_exp_hash(variant, strlen(variant));
    ring_push(slot);
}

void gh_exp_observe(uint32_t slot, const gh_conf_tenant_t *t, uint64_t unit_h, const char *path, size_t path_len,
                    int status, uint64_t latency_us, uint64_t bytes, uint64_t time_ms)
{
    rec_t *r = ring_slot(slot);
    if (!r)
        return;
    r->kind = R_OBSERVE;
    r->tenant_h = gh_exp_hash(t->name, strlen(t->name));
    r->unit_h = unit_h;
    r->time_ms = time_ms;
    r->status = (uint16_t)status;
    r->latency_us = (uint32_t)GH_MIN(latency_us, UINT32_MAX);
    r->a = bytes;
    r->path_len = (uint8_t)GH_MIN(path_len, PATH_KEEP);
    memcpy(r->path, path, r->path_len);
    ring_push(slot);
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

static const char *unit_of(const json_t *ev, const json_t *ctx)
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

static void ev_error(json_t *errors, size_t i, const char *reason)
{
    json_array_append_new(errors, json_pack("{s:i, s:s}", "index", (int)i, "reason", reason));
}

static void batch_free(batch_t *b)
{
    for (uint32_t i = 0; i < b->nev; i++) {
        free(b->ev[i].name);
        free(b->ev[i].unit);
        free(b->ev[i].id);
        free(b->ev[i].payload);
        json_decref(b->ev[i].pl);
    }
    free(b->ev);
    json_decref(b->errors);
    free(b);
}

/* Parse a publish body for tenant into a batch (see gh_exp_publish). */
static batch_t *parse_batch(const char *tenant, const char *body, size_t len, int64_t now, int *status, char *err,
                            size_t errcap)
{
    *status = 400;
    json_error_t je;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    const json_t *events = json_object_get(doc, "events");
    if (!doc || !json_is_array(events)) {
        snprintf(err, errcap, doc ? "the body must be {\"events\": [...]}" : "the body is not JSON: %.160s", je.text);
        json_decref(doc);
        return NULL;
    }
    if (json_array_size(events) > MAX_EVENTS) {
        *status = 413;
        snprintf(err, errcap, "%zu events: at most %u in one request", json_array_size(events), MAX_EVENTS);
        json_decref(doc);
        return NULL;
    }
    batch_t *b = calloc(1, sizeof *b);
    size_t n = json_array_size(events);
    if (!b || !(b->ev = calloc(n ? n : 1, sizeof *b->ev)) || !(b->errors = json_array())) {
        if (b)
            free(b->ev);
        free(b);
        json_decref(doc);
        *status = 500;
        snprintf(err, errcap, "out of memory");
        return NULL;
    }
    snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
    b->tenant_h = gh_exp_hash(tenant, strlen(tenant));
    const json_t *ctx = json_object_get(doc, "context");
    for (size_t i = 0; i < n; i++) {
        const json_t *ev = json_array_get(events, i);
        const json_t *def = json_object_get(ev, "eventDefinition"), *pl = json_object_get(ev, "payload"),
                     *tm = json_object_get(ev, "eventTime"), *id = json_object_get(ev, "eventId");
        const char *unit = unit_of(ev, ctx);
        if (!json_is_object(ev) || !json_is_string(def)) {
            ev_error(b->errors, i, "eventDefinition (a string) is required");
            continue;
        }
        const char *name = json_string_value(def);
        if (!strncmp(name, "eventDefinitions/", 17)) /* Confidence's resource name */
            name += 17;
        if (!*name || strlen(name) > MAX_NAME) {
            ev_error(b->errors, i, "eventDefinition must be 1..256 bytes");
            continue;
        }
        if (pl && !json_is_object(pl)) {
            ev_error(b->errors, i, "payload must be an object");
            continue;
        }
        if (!unit || !*unit || strlen(unit) > MAX_NAME) {
            ev_error(b->errors, i, "no unit: give payload.context.targetingKey, payload.targetingKey or context.targetingKey (1..256 bytes)");
            continue;
        }
        int64_t t_ms = now;
        if (tm) {
            if (!json_is_string(tm) || (t_ms = parse_time(json_string_value(tm))) < 0) {
                ev_error(b->errors, i, "eventTime must be an RFC 3339 time such as 2026-11-23T08:00:00Z");
                continue;
            }
            if (t_ms > now + FUTURE_MS) {
                ev_error(b->errors, i, "eventTime is more than 5 minutes in the future");
                continue;
            }
        }
        if (id && (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > 128)) {
            ev_error(b->errors, i, "eventId must be a string of 1..128 bytes");
            continue;
        }
        char *ptext = pl ? json_dumps(pl, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
        if (!ptext || strlen(ptext) > MAX_PAYLOAD) {
            free(ptext);
            ev_error(b->errors, i, "payload over 16 KiB");
            continue;
        }
        pevent_t *e = &b->ev[b->nev];
        char idbuf[40];
        if (!id) { /* no id: the event's content is its identity (an identical retry is one event) */
            char *whole = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
            uint64_t h = whole ? gh_exp_hash(whole, strlen(whole)) ^ gh_exp_hash(unit, strlen(unit)) : 0;
            free(whole);
            snprintf(idbuf, sizeof idbuf, "h:%016llx", (unsigned long long)h);
        }
        e->name = strdup(name);
        e->unit = strdup(unit);
        e->id = strdup(id ? json_string_value(id) : idbuf);
        e->payload = ptext;
        e->pl = pl ? json_incref((json_t *)pl) : NULL;
        if (!e->name || !e->unit || !e->id) {
            free(e->name);
            free(e->unit);
            free(e->id);
            free(e->payload);
            json_decref(e->pl);
            e->pl = NULL;
            ev_error(b->errors, i, "out of memory");
            continue;
        }
        e->name_h = gh_exp_hash(name, strlen(name));
        e->unit_h = gh_exp_hash(unit, strlen(unit));
        e->time_ms = t_ms;
        b->nev++;
    }
    json_decref(doc);
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

int gh_exp_parse_check(const char *body, size_t len, int64_t now_ms_, uint32_t *nev, uint32_t *nerr, char *err,
                       size_t errcap)
{
    int status = 0;
    batch_t *b = parse_batch("fuzz", body, len, now_ms_, &status, err, errcap);
    if (!b)
        return -status;
    *nev = b->nev;
    *nerr = (uint32_t)json_array_size(b->errors);
    int bad = 0;
    for (uint32_t i = 0; i < b->nev; i++) { /* what the store and the aggregator rely on */
        const pevent_t *e = &b->ev[i];
        bad |= !e->name[0] || strlen(e->name) > MAX_NAME || !e->unit[0] || strlen(e->unit) > MAX_NAME || !e->id[0] ||
               strlen(e->payload) > MAX_PAYLOAD || e->time_ms > now_ms_ + FUTURE_MS || e->time_ms < 0 ||
               e->name_h != gh_exp_hash(e->name, strlen(e->name)) || e->unit_h != gh_exp_hash(e->unit, strlen(e->unit));
        json_t *pl = json_loads(e->payload, 0, NULL);
        bad |= !json_is_object(pl);
        json_decref(pl);
    }
    size_t k;
    json_t *x;
    int64_t last = -1;
    json_array_foreach(b->errors, k, x) { /* indexes ascending, each with a reason */
        int64_t ix = json_integer_value(json_object_get(x, "index"));
        bad |= ix <= last || !json_is_string(json_object_get(x, "reason"));
        last = ix;
    }
    batch_free(b);
    return bad ? -1000 : 0;
}
