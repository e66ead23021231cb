/* protect.c: traffic protection glue (see protect.h). */
#include "protect/protect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "protect/bot.h"
#include "protect/challenge.h"
#include "protect/gcra.h"
#include "protect/geoip.h"
#include "protect/glimit.h"
#include "protect/iptree.h"
#include "protect/shtab.h"
#include "protect/topk.h"

#define CHALLENGE_PATH "/.gatehouse/challenge"
#define PASS_COOKIE "__gh_pass"
#define MAX_TOPK_WORKERS 64

/* ---- lasting state ---- */

/* A tenant's state outlives snapshots: found by name when a snapshot is built. */
typedef struct tstate {
    struct tstate *next;
    char *name;
    uint64_t decisions[GH_PR__N][GH_PA__N]; /* atomics */
    uint32_t inflight;                      /* atomic */
    pthread_mutex_t mu;                     /* window roll-overs below */
    uint64_t minute_id, day_id;             /* current quota windows ... */
    uint64_t minute_count, day_count;       /* ... and their counts (atomics) */
    /* flood mode */
    uint64_t sec_id;      /* the second being counted */
    uint64_t sec_count;   /* atomic */
    double rate;          /* requests in the last complete second */
    double baseline;      /* learned rate (EWMA over quiet seconds) */
    double lat_ewma_us;   /* upstream latency EWMA */
    int flood;            /* atomic: in flood mode */
    uint64_t enter_at;    /* atomic: a count within one second that enters flood mode (0: not yet known) */
    uint64_t flood_since_ms, calm_since_ms;
    uint64_t flood_entered, flood_left; /* counts */
} tstate_t;

static struct {
    int started;
    gh_shtab_t *limits; /* GCRA TAT per limit key */
    gh_shtab_t *conns;  /* connections per client address */
    gh_shtab_t *bots;   /* behaviour state per client address */
    uint8_t secret[64];
    uint32_t secret_len;
    gh_glimit_t *glimit;
    gh_topk_t *topk[MAX_TOPK_WORKERS];
    uint64_t path_seed; /* the bot scorer's path hash key */
    pthread_mutex_t mu; /* tenants list */
    tstate_t *tenants;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_s(void) { return (uint64_t)time(NULL); }

static tstate_t *tenant_state(const char *name)
{
    pthread_mutex_lock(&G.mu);
    tstate_t *t = G.tenants;
    while (t && strcmp(t->name, name))
        t = t->next;
    if (!t && (t = calloc(1, sizeof *t))) {
        if (!(t->name = strdup(name))) {
            free(t);
            t = NULL;
        } else {
            pthread_mutex_init(&t->mu, NULL);
            t->next = G.tenants;
            G.tenants = t;
        }
    }
    pthread_mutex_unlock(&G.mu);
    return t;
}

static void count(const gh_conf_route_t *rt, int reason, int action)
{
    tstate_t *t = rt && rt->tenant ? rt->tenant->state : NULL;
    if (t)
        __atomic_add_fetch(&t->decisions[reason][action], 1, __ATOMIC_RELAXED);
}

void gh_protect_count(const gh_conf_route_t *rt, int reason, int action) { count(rt, reason, action); }

/* ---- snapshots ---- */

static void conf_err(gh_conf_errors_t *errs, const char *fmt, const char *a, const char *b)
{
    char msg[600];
    if (!errs)
        return;
    snprintf(msg, sizeof msg, fmt, a, b);
    char **m = realloc(errs->msgs, (errs->n + 1) * sizeof *m);
    if (!m)
        return;
    errs->msgs = m;
    if ((m[errs->n] = strdup(msg)))
        errs->n++;
}

static int build_acl(gh_conf_acl_t *acl)
{
    if (!acl->ncidrs)
        return 0;
    gh_iptree_t *t = gh_iptree_new();
    if (!t)
        return GH_ENOMEM;
    for (uint32_t i = 0; i < acl->ncidrs; i++)
        if (gh_iptree_add(t, acl->cidrs[i].family, acl->cidrs[i].addr, acl->cidrs[i].prefix, acl->tags[i]) < 0) {
            gh_iptree_free(t);
            return GH_ENOMEM;
        }
    acl->tree = t;
    return 0;
}

static void gcra_params(gh_conf_ratelimit_t *rl)
{
    gh_gcra_t g;
    gh_gcra_init(&g, (double)rl->quota / rl->period_s, rl->burst);
    rl->interval_ns = g.interval_ns;
    rl->tolerance_ns = g.tolerance_ns;
}

static int build_scope(gh_conf_protect_t *p)
{
    if (!p)
        return 0;
    for (uint32_t i = 0; i < p->nlimits; i++)
        gcra_params(&p->limits[i]);
    return build_acl(&p->acl);
}

int gh_protect_build(gh_conf_t *c, gh_conf_errors_t *errs)
{
    int rc = 0;
    for (uint32_t i = 0; i < c->protect.nlists && !rc; i++) {
        struct gh_conf_iplist *l = &c->protect.lists[i];
        char err[512];
        if (!(l->tree = gh_iptree_new()))
            return GH_ENOMEM;
        struct stat st;
        if (stat(l->file, &st) == 0) {
            l->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            l->size = (int64_t)st.st_size;
        }
        if (gh_iptree_load_file(l->tree, l->file, 1, err, sizeof err) < 0) {
            conf_err(errs, "%s (protection.ip_lists.%s)", err, l->name);
            rc = GH_ECONFIG;
        }
    }
    if (!rc && c->protect.ngood_bots) {
        gh_iptree_t *t = gh_iptree_new();
        if (!t)
            return GH_ENOMEM;
        c->protect.good_bots_tree = t;
        for (uint32_t i = 0; i < c->protect.ngood_bots; i++)
            if (gh_iptree_add(t, c->protect.good_bots[i].family, c->protect.good_bots[i].addr,
                              c->protect.good_bots[i].prefix, 1) < 0)
                return GH_ENOMEM;
    }
    if (!rc && c->protect.geoip) {
        char err[512];
        if (!(c->protect.geoip_db = gh_geoip_open(c->protect.geoip, err, sizeof err))) {
            conf_err(errs, "%s (protection.geoip.database: %s)", err, c->protect.geoip);
            rc = GH_ECONFIG;
        }
    }
    for (uint32_t ti = 0; ti < c->ntenants && !rc; ti++) {
        gh_conf_tenant_t *t = &c->tenants[ti];
        if (!(t->state = tenant_state(t->name)))
            return GH_ENOMEM;
        if (t->flood.enabled) {
            gh_gcra_t g;
            gh_gcra_init(&g, (double)t->flood.per_ip_quota / t->flood.per_ip_period, t->flood.per_ip_quota);
            t->flood.per_ip_interval_ns = g.interval_ns;
            t->flood.per_ip_tolerance_ns = g.tolerance_ns;
        }
        if ((rc = build_scope(t->prot)))
            break;
        for (uint32_t si = 0; si < t->nsites && !rc; si++) {
            gh_conf_site_t *s = &t->sites[si];
            rc = build_scope(s->prot);
            for (uint32_t ri = 0; ri < s->nroutes && !rc; ri++)
                rc = build_scope((gh_conf_protect_t *)s->routes[ri].prot[2]);
        }
    }
    return rc;
}

void gh_protect_free(gh_conf_t *c)
{
    for (uint32_t i = 0; i < c->protect.nlists; i++) {
        gh_iptree_free(c->protect.lists[i].tree);
        c->protect.lists[i].tree = NULL;
    }
    gh_iptree_free(c->protect.good_bots_tree);
    c->protect.good_bots_tree = NULL;
    if (c->protect.geoip_db)
        gh_geoip_close(c->protect.geoip_db);
    c->protect.geoip_db = NULL;
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        gh_conf_tenant_t *t = &c->tenants[ti];
        if (t->prot) {
            gh_iptree_free(t->prot->acl.tree);
            t->prot->acl.tree = NULL;
        }
        for (uint32_t si = 0; si < t->nsites; si++) {
            gh_conf_site_t *s = &t->sites[si];
            if (s->prot) {
                gh_iptree_free(s->prot->acl.tree);
                s->prot->acl.tree = NULL;
            }
            for (uint32_t ri = 0; ri < s->nroutes; ri++) {
                gh_conf_protect_t *p = (gh_conf_protect_t *)s->routes[ri].prot[2];
                if (p) {
                    gh_iptree_free(p->acl.tree);
                    p->acl.tree = NULL;
                }
            }
        }
    }
}

/* ---- process ---- */

/* Behaviour states: the one least recently seen goes first (the client starts over). */
static uint64_t bot_weight(const void *value, void *ctx)
{
    const gh_bot_state_t *st = value;
    uint64_t now = ctx ? *(const uint64_t *)ctx : 0;
    return st->win_start_ms + 2 * 3600000ull <= now ? 0 : st->win_start_ms + 1;
}

/* Connection counts are never evicted (a lost count would let the address open more). */
static uint64_t conn_weight(const void *value, void *ctx)
{
    (void)ctx;
    return *(const uint32_t *)value ? GH_SHTAB_KEEP : 0;
}

int gh_protect_start(const gh_conf_t *c)
{
    if (G.started)
        return 0;
    uint32_t keys = c->protect.max_keys ? c->protect.max_keys : 1000000;
    G.limits = gh_shtab_new(keys, sizeof(uint64_t), gh_gcra_evict);
    G.conns = gh_shtab_new(GH_MIN(keys, 1u << 20), sizeof(uint32_t), conn_weight);
    G.bots = gh_shtab_new(GH_MIN(keys, 1u << 20), sizeof(gh_bot_state_t), bot_weight);
    if (!G.limits || !G.conns || !G.bots) {
        gh_log(GH_LOG_ERROR, "protection: cannot allocate the state tables (%u keys)", keys);
        return GH_ENOMEM;
    }
    if (gh_shtab_seed_init() < 0) { /* keys hashed under a secret: no chosen collisions */
        gh_log(GH_LOG_ERROR, "protection: no randomness for the key hash");
        return GH_EIO;
    }
    if (getrandom(&G.path_seed, sizeof G.path_seed, 0) != sizeof G.path_seed)
        return GH_EIO;
    if (c->protect.secret_len) {
        memcpy(G.secret, c->protect.secret, c->protect.secret_len);
        G.secret_len = c->protect.secret_len;
    } else {
        if (getrandom(G.secret, 32, 0) != 32)
            return GH_EIO;
        G.secret_len = 32;
    }
    for (int i = 0; i < MAX_TOPK_WORKERS; i++)
        G.topk[i] = gh_topk_new(32);
    if (c->protect.redis_host) {
        G.glimit = gh_glimit_new(c->protect.redis_host, c->protect.redis_port, c->protect.redis_password,
                                 c->protect.redis_sync ? c->protect.redis_sync : 50, 1000, c->protect.redis_fail_open);
        if (!G.glimit) {
            gh_log(GH_LOG_ERROR, "protection: cannot start the Redis syncer");
            return GH_ENOMEM;
        }
    }
    G.started = 1;
    return 0;
}

void gh_protect_stop(void)
{
    if (G.glimit)
        gh_glimit_free(G.glimit);
    G.glimit = NULL;
}

int gh_protect_lists_changed(const gh_conf_t *c)
{
    for (uint32_t i = 0; i < c->protect.nlists; i++) {
        struct stat st;
        const struct gh_conf_iplist *l = &c->protect.lists[i];
        if (stat(l->file, &st) < 0)
            continue; /* gone for a moment (replaced): keep the loaded one */
        if ((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != l->mtime_ns || st.st_size != l->size)
            return 1;
    }
    return 0;
}

/* ---- connections ---- */

static void addr_key(const struct sockaddr *sa, uint64_t domain, uint64_t *hi, uint64_t *lo)
{
    gh_keyhash_t k;
    gh_keyhash_init(&k, domain);
    if (sa->sa_family == AF_INET6)
        gh_keyhash_add(&k, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    else if (sa->sa_family == AF_INET)
        gh_keyhash_add(&k, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    gh_keyhash_final(&k, hi, lo);
}

int gh_protect_conn_open(const gh_conf_t *c, const struct sockaddr *peer)
{
    uint32_t cap = c->protect.per_ip_conns;
    if (!cap || !G.conns || (peer->sa_family != AF_INET && peer->sa_family != AF_INET6))
        return 0;
    uint64_t hi, lo;
    addr_key(peer, 0xc0, &hi, &lo);
    gh_shtab_ref_t ref;
    int created = 0;
    uint32_t *n = gh_shtab_lock(G.conns, hi, lo, 1, &created, &ref, NULL);
    if (!n)
        return 0; /* table full of live counts: not counted (fails open) */
    int rc = 1;
    if (*n >= cap)
        rc = GH_ELIMIT;
    else
        (*n)++;
    gh_shtab_unlock(G.conns, &ref);
    return rc;
}

void gh_protect_conn_close(const struct sockaddr *peer)
{
    uint64_t hi, lo;
    addr_key(peer, 0xc0, &hi, &lo);
    gh_shtab_ref_t ref;
    uint32_t *n = gh_shtab_lock(G.conns, hi, lo, 0, NULL, &ref, NULL);
    if (!n)
        return;
    if (*n > 1)
        (*n)--;
    else
        gh_shtab_remove_locked(G.conns, &ref);
    gh_shtab_unlock(G.conns, &ref);
}

/* ---- requests ---- */

const char *gh_protect_reason_name(int reason)
{
    static const char *const n[GH_PR__N] = {"none", "deny", "country", "quota", "concurrency", "flood",
                                            "bot", "rate_limit", "challenge", "slow_client"};
    return reason >= 0 && reason < GH_PR__N ? n[reason] : "?";
}

const char *gh_protect_action_name(int action)
{
    static const char *const n[GH_PA__N] = {"block", "challenge", "tarpit", "delay", "shadow", "log", "pass"};
    return action >= 0 && action < GH_PA__N ? n[action] : "?";
}


static gh_str_t query_param(gh_str_t q, const char *name, size_t nlen)
{
    const char *p = q.p, *end = q.p + q.n;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        if (!amp)
            amp = end;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        const char *ne = eq ? eq : amp;
        if ((size_t)(ne - p) == nlen && !memcmp(p, name, nlen))
            return eq ? gh_str(eq + 1, (size_t)(amp - eq - 1)) : gh_str(amp, 0);
        p = amp + 1;
    }
    return GH_STR_NULL;
}

static void masked(const struct sockaddr *sa, uint8_t bits4, uint8_t bits6, uint8_t out[16], size_t *n)
{
    const uint8_t *a;
    unsigned bits;
    if (sa->sa_family == AF_INET6) {
        a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        *n = 16;
        bits = bits6;
    } else {
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        *n = 4;
        bits = bits4;
    }
    for (size_t i = 0; i < *n; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * (unsigned)i : 0;
        out[i] = (uint8_t)(a[i] & (uint8_t)(0xff00u >> keep));
    }
}

/* The limit's key for this request; 0 when a part is absent (the limit does not apply). */
static int limit_key(const gh_protect_req_t *in, const gh_conf_ratelimit_t *rl, uint64_t *hi, uint64_t *lo,
                     char *text, size_t cap)
{
    gh_keyhash_t k;
    gh_keyhash_init(&k, rl->id);
    size_t o = 0;
    if (text)
        o = (size_t)snprintf(text, cap, "%s/%s", rl->where, rl->name);
    for (uint32_t i = 0; i < rl->nkeys; i++) {
        const gh_conf_rlkey_t *kp = &rl->keys[i];
        gh_str_t v = GH_STR_NULL;
        uint8_t buf[16];
        size_t n = 0;
        switch (kp->kind) {
        case GH_RLK_IP:
            masked(in->client, 32, 128, buf, &n);
            v = gh_str((const char *)buf, n);
            break;
        case GH_RLK_PREFIX:
            masked(in->client, kp->prefix4, kp->prefix6, buf, &n);
            v = gh_str((const char *)buf, n);
            break;
        case GH_RLK_TENANT:
            v = gh_str(in->route->tenant->name, strlen(in->route->tenant->name));
            break;
        case GH_RLK_ROUTE:
            v = gh_str(in->route->name, strlen(in->route->name));
            break;
        case GH_RLK_JA4:
            v = in->ja4;
            if (!v.n)
                return 0;
            break;
        case GH_RLK_HEADER: {
            const gh_h1_header_t *h = gh_h1_find(in->headers, in->nheaders, gh_str(kp->name, kp->name_len));
            if (!h)
                return 0;
            v = h->value;
            break;
        }
        case GH_RLK_COOKIE:
            v = gh_h1_cookie(in->headers, in->nheaders, gh_str(kp->name, kp->name_len));
            if (!v.p)
                return 0;
            break;
        case GH_RLK_QUERY:
            v = query_param(in->query, kp->name, kp->name_len);
            if (!v.p)
                return 0;
            break;
        }
        uint64_t len = v.n;
        gh_keyhash_add(&k, &len, sizeof len);
        gh_keyhash_add(&k, v.p, v.n);
        if (text && o < cap) {
            if (kp->kind == GH_RLK_IP || kp->kind == GH_RLK_PREFIX) {
                char a[INET6_ADDRSTRLEN];
                inet_ntop(n == 16 ? AF_INET6 : AF_INET, buf, a, sizeof a);
                o += (size_t)snprintf(text + o, cap - o, " %s", a);
            } else {
                o += (size_t)snprintf(text + o, cap - o, " %.*s", (int)GH_MIN(v.n, (size_t)40), v.p);
            }
        }
    }
    gh_keyhash_final(&k, hi, lo);
    return 1;
}

static void add_header(gh_protect_verdict_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_header(gh_protect_verdict_t *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof v->headers - v->headers_len;
    int k = vsnprintf(v->headers + v->headers_len, room, fmt, ap);
    va_end(ap);
    if (k > 0 && (size_t)k < room)
        v->headers_len += (size_t)k;
}

static void answer(gh_protect_verdict_t *v, int status, int reason, int action, const char *detail)
{
    v->verdict = GH_PV_ANSWER;
    v->status = status;
    v->reason = reason;
    v->action = action;
    v->detail = detail;
}

static void note_top(const gh_protect_req_t *in, const char *text)
{
    if (in->worker < MAX_TOPK_WORKERS && G.topk[in->worker])
        gh_topk_add(G.topk[in->worker], gh_str(text, strlen(text)), 1);
}

static void note_top_addr(const gh_protect_req_t *in, const char *what)
{
    char a[INET6_ADDRSTRLEN], t[160];
    uint8_t buf[16];
    size_t n;
    masked(in->client, 32, 128, buf, &n);
    inet_ntop(n == 16 ? AF_INET6 : AF_INET, buf, a, sizeof a);
    snprintf(t, sizeof t, "%s/%s %s", in->route->tenant->name, what, a);
    note_top(in, t);
}

/* The longest prefix of t matching the client, with its tag: better than *best_len? */
static void lpm(const gh_iptree_t *t, int fam, const uint8_t *a, uint32_t tag_override, int *best_len,
                uint32_t *best_tag)
{
    uint32_t tag;
    uint8_t plen;
    if (!t || gh_iptree_lookup(t, fam, a, &tag, &plen) != 1)
        return;
    if (tag_override)
        tag = tag_override;
    /* longest prefix wins; at equal length a deny wins */
    if ((int)plen > *best_len || ((int)plen == *best_len && tag == GH_ACL_DENY)) {
        *best_len = plen;
        *best_tag = tag;
    }
}

/* allow / deny / countries of one scope: 1 when refused. */
static int acl_refuses(const gh_protect_req_t *in, const gh_conf_acl_t *acl, int *reason)
{
    int fam = in->client->sa_family;
    const uint8_t *a = fam == AF_INET6 ? (const uint8_t *)&((const struct sockaddr_in6 *)in->client)->sin6_addr
                                       : (const uint8_t *)&((const struct sockaddr_in *)in->client)->sin_addr;
    int best_len = -1;
    uint32_t best_tag = 0;
    lpm(acl->tree, fam, a, 0, &best_len, &best_tag);
    const struct gh_conf_iplist *lists = in->conf->protect.lists;
    for (uint32_t i = 0; i < acl->nlists; i++)
        lpm(lists[acl->list_idx[i]].tree, fam, a, acl->list_tags[i], &best_len, &best_tag);
    if (best_tag == GH_ACL_DENY || (acl->has_allow && best_tag != GH_ACL_ALLOW)) {
        *reason = GH_PR_DENY;
        return 1;
    }
    if ((acl->ncc_allow || acl->ncc_deny) && in->conf->protect.geoip_db) {
        char cc[3] = {0};
        int known = gh_geoip_country(in->conf->protect.geoip_db, in->client, cc) == 1;
        uint16_t code = known ? (uint16_t)((unsigned char)cc[0] << 8 | (unsigned char)cc[1]) : 0;
        for (uint32_t i = 0; known && i < acl->ncc_deny; i++)
            if (acl->cc_deny[i] == code) {
                *reason = GH_PR_COUNTRY;
                return 1;
            }
        if (acl->ncc_allow) {
            int ok = 0;
            for (uint32_t i = 0; known && i < acl->ncc_allow && !ok; i++)
                ok = acl->cc_allow[i] == code;
            if (!ok) {
                *reason = GH_PR_COUNTRY;
                return 1;
            }
        }
    }
    return 0;
}

/* Per-second accounting and the flood mode state machine of a tenant. */
static void flood_tick(const gh_conf_tenant_t *ct, tstate_t *t, uint64_t ms)
{
    uint64_t sec = ms / 1000;
    uint64_t now_count = __atomic_add_fetch(&t->sec_count, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&t->sec_id, __ATOMIC_RELAXED) == sec) {
        /* a surge is seen as it passes the bound, not a second later */
        uint64_t at = __atomic_load_n(&t->enter_at, __ATOMIC_RELAXED);
        if (!at || now_count <= at || __atomic_load_n(&t->flood, __ATOMIC_RELAXED))
            return;
        pthread_mutex_lock(&t->mu);
        if (!t->flood && t->enter_at && t->sec_id == sec) {
            __atomic_store_n(&t->flood, 1, __ATOMIC_RELAXED);
            __atomic_store_n(&t->flood_since_ms, ms, __ATOMIC_RELAXED);
            t->calm_since_ms = 0;
            t->flood_entered++;
            gh_log(GH_LOG_WARN, "protection: tenant %s enters flood mode (%llu requests %llu ms into this second, "
                   "baseline %.1f req/s)", ct->name, (unsigned long long)now_count,
                   (unsigned long long)(ms % 1000), t->baseline);
        }
        pthread_mutex_unlock(&t->mu);
        return;
    }
    pthread_mutex_lock(&t->mu);
    if (t->sec_id != sec) {
        uint64_t n = __atomic_exchange_n(&t->sec_count, 1, __ATOMIC_RELAXED) - 1;
        double rate = sec == t->sec_id + 1 ? (double)n : 0; /* a gap: the last second had none */
        __atomic_store_n(&t->sec_id, sec, __ATOMIC_RELAXED);
        t->rate = rate;
        if (ct->flood.enabled) {
            double bound = ct->flood.multiple * GH_MAX(t->baseline, ct->flood.min_rate);
            uint32_t inflight = __atomic_load_n(&t->inflight, __ATOMIC_RELAXED);
            int hot = rate > bound || (ct->flood.concurrency && inflight > ct->flood.concurrency) ||
                      (ct->flood.latency && t->lat_ewma_us > ct->flood.latency * 1000.0);
            /* leaving needs clearly calmer traffic (hysteresis): 80% of every bound */
            int calm = rate < 0.8 * bound && (!ct->flood.concurrency || inflight < 0.8 * ct->flood.concurrency) &&
                       (!ct->flood.latency || t->lat_ewma_us < 0.8 * ct->flood.latency * 1000.0);
            if (!t->flood && hot) {
                __atomic_store_n(&t->flood, 1, __ATOMIC_RELAXED);
                __atomic_store_n(&t->flood_since_ms, ms, __ATOMIC_RELAXED);
                t->calm_since_ms = 0;
                t->flood_entered++;
                gh_log(GH_LOG_WARN, "protection: tenant %s enters flood mode (%.0f req/s, baseline %.1f, %u in flight, "
                       "upstream latency %.1f ms)", ct->name, rate, t->baseline, inflight, t->lat_ewma_us / 1000);
            } else if (t->flood) {
                if (!calm)
                    t->calm_since_ms = 0;
                else if (!t->calm_since_ms)
                    t->calm_since_ms = ms;
                if (calm && ms - t->flood_since_ms >= ct->flood.hold && ms - t->calm_since_ms >= ct->flood.hold) {
                    __atomic_store_n(&t->flood, 0, __ATOMIC_RELAXED);
                    t->flood_left++;
                    gh_log(GH_LOG_WARN, "protection: tenant %s leaves flood mode after %.1f s (%.0f req/s, baseline %.1f)",
                           ct->name, (double)(ms - t->flood_since_ms) / 1000, rate, t->baseline);
                }
            }
            /* the baseline learns only from ordinary seconds: an attack does not teach it */
            if (!t->flood)
                t->baseline = t->baseline ? t->baseline + (rate - t->baseline) / 60.0 : rate;
            /* the count within the next second that enters flood mode at once */
            __atomic_store_n(&t->enter_at, (uint64_t)(ct->flood.multiple * GH_MAX(t->baseline, ct->flood.min_rate)),
                             __ATOMIC_RELAXED);
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* Tenant quota windows: 1 when over. */
static int quota_over(const gh_conf_tenant_t *ct, tstate_t *t, uint64_t now_s)
{
    if (!ct->quota_minute && !ct->quota_day)
        return 0;
    uint64_t mid = now_s / 60, did = now_s / 86400;
    if (__atomic_load_n(&t->minute_id, __ATOMIC_RELAXED) != mid ||
        __atomic_load_n(&t->day_id, __ATOMIC_RELAXED) != did) {
        pthread_mutex_lock(&t->mu);
        if (t->minute_id != mid) {
            __atomic_store_n(&t->minute_count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&t->minute_id, mid, __ATOMIC_RELEASE);
        }
        if (t->day_id != did) {
            __atomic_store_n(&t->day_count, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&t->day_id, did, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&t->mu);
    }
    uint64_t m = __atomic_add_fetch(&t->minute_count, 1, __ATOMIC_RELAXED);
    uint64_t d = __atomic_add_fetch(&t->day_count, 1, __ATOMIC_RELAXED);
    return (ct->quota_minute && m > ct->quota_minute) || (ct->quota_day && d > ct->quota_day);
}

static void ua_of(const gh_protect_req_t *in, gh_str_t *ua)
{
    const gh_h1_header_t *h = gh_h1_find(in->headers, in->nheaders, GH_STR("user-agent"));
    *ua = h ? h->value : GH_STR("");
}

static int pass_cookie_ok(const gh_protect_req_t *in, gh_str_t ua)
{
    gh_str_t v = gh_h1_cookie(in->headers, in->nheaders, GH_STR(PASS_COOKIE));
    return v.p && v.n && gh_chal_cookie_check(G.secret, G.secret_len, in->client, ua, v, wall_s()) == 1;
}

/* The challenge page for this request (status 403). */
static void challenge(const gh_protect_req_t *in, gh_protect_verdict_t *out, gh_str_t ua, uint32_t difficulty,
                      int reason)
{
    char token[GH_CHAL_TOKEN_MAX];
    int tn = gh_chal_token(G.secret, G.secret_len, in->client, ua, wall_s(), difficulty, token, sizeof token);
    if (tn <= 0) {
        answer(out, 403, reason, GH_PA_BLOCK, "challenge unavailable");
        return;
    }
    char back[1024];
    size_t n = GH_MIN(in->path.n, sizeof back - 2);
    memcpy(back, in->path.p, n);
    if (in->query.n && n + 1 + in->query.n < sizeof back) {
        back[n++] = '?';
        memcpy(back + n, in->query.p, in->query.n);
        n += in->query.n;
    }
    back[n] = 0;
    if (in->method.n != 3 || memcmp(in->method.p, "GET", 3))
        strcpy(back, "/"); /* after a non-GET the original request cannot be replayed: home */
    size_t cap = GH_CHAL_PAGE_SIZE(n, sizeof CHALLENGE_PATH);
    char *page = malloc(cap);
    int len = page ? gh_chal_page(page, cap, gh_str(token, (size_t)tn), difficulty, gh_str(back, strlen(back)),
                                  GH_STR(CHALLENGE_PATH))
                   : 0;
    if (len <= 0) {
        free(page);
        answer(out, 403, reason, GH_PA_BLOCK, "challenge unavailable");
        return;
    }
    answer(out, 403, reason, GH_PA_CHALLENGE, "challenge issued");
    out->body = page;
    out->body_len = (size_t)len;
    out->ctype = "text/html; charset=utf-8";
    add_header(out, "Cache-Control: no-store\r\n");
}

/* GET /.gatehouse/challenge?t=TOKEN&n=N&r=RETURN: a solved challenge earns the pass cookie. */
static void verify(const gh_protect_req_t *in, gh_protect_verdict_t *out, const gh_conf_bots_t *b)
{
    gh_str_t ua;
    ua_of(in, &ua);
    gh_str_t t = query_param(in->query, "t", 1), n = query_param(in->query, "n", 1), r = query_param(in->query, "r", 1);
    if (!t.p || !n.p || gh_chal_verify(G.secret, G.secret_len, in->client, ua, t, n, wall_s(), 600) != 1) {
        answer(out, 403, GH_PR_CHALLENGE, GH_PA_BLOCK, "challenge failed");
        return;
    }
    char value[GH_CHAL_COOKIE_MAX];
    if (gh_chal_cookie(G.secret, G.secret_len, in->client, ua, wall_s() + b->cookie_ttl, value, sizeof value) <= 0) {
        answer(out, 403, GH_PR_CHALLENGE, GH_PA_BLOCK, "challenge failed");
        return;
    }
    /* the return path: percent-decoded, same site only */
    char back[1024];
    size_t o = 0;
    for (size_t i = 0; r.p && i < r.n && o + 1 < sizeof back; i++) {
        char ch = r.p[i];
        if (ch == '%' && i + 2 < r.n + 0 && i + 2 <= r.n - 1) {
            char hx[3] = {r.p[i + 1], r.p[i + 2], 0};
            char *e;
            long v = strtol(hx, &e, 16);
            if (*e == 0 && v > 0x1f && v < 0x7f) {
                ch = (char)v;
                i += 2;
            }
        } else if (ch == '+')
            ch = ' ';
        if ((unsigned char)ch <= 0x20 || (unsigned char)ch >= 0x7f)
            break;
        back[o++] = ch;
    }
    back[o] = 0;
    if (!gh_chal_return_ok(gh_str(back, o)))
        strcpy(back, "/");
    answer(out, 303, GH_PR_CHALLENGE, GH_PA_PASS, "challenge passed");
    add_header(out, "Set-Cookie: %s=%s; Path=/; Max-Age=%u; HttpOnly; SameSite=Lax%s\r\n", PASS_COOKIE, value,
               b->cookie_ttl, in->tls ? "; Secure" : "");
    add_header(out, "Location: %s\r\nCache-Control: no-store\r\n", back);
}

/* Seconds (mod 65535, plus one: 0 = unset) a client was first seen, kept in the behaviour
 * state's spare field: the reputation flood mode relies on. */
#define FIRST_SEEN_MOD 65535u
#define ESTABLISHED_S 3 /* seen this long before a flood began: not part of it */
#define FLOOD_TARPIT_MS 1000 /* how long flood mode holds a refusal */

static int bot_check(const gh_protect_req_t *in, gh_protect_verdict_t *out, const gh_conf_bots_t *b, int has_pass,
                     gh_str_t ua, uint64_t ms, uint64_t flood_since_ms, int *established)
{
    *established = 0;
    if (in->conf->protect.good_bots_tree) {
        uint32_t tag;
        if (gh_iptree_lookup_sa(in->conf->protect.good_bots_tree, in->client, &tag) == 1)
            return 0;
    }
    gh_bot_obs_t o;
    memset(&o, 0, sizeof o);
    o.now_ms = ms;
    o.path = in->path; /* with the query when it follows: ?page=N walks count as distinct pages */
    if (in->query.n && in->query.p == in->path.p + in->path.n + 1)
        o.path = gh_str(in->path.p, in->path.n + 1 + in->query.n);
    o.ua = ua;
    o.ja4 = in->ja4;
    for (size_t i = 0; i < in->nheaders; i++) { /* one pass over the fields the scorer looks at */
        gh_str_t n = in->headers[i].name;
        switch (n.n) {
        case 6:
            o.has_accept |= gh_str_caseeq_lit(n, "accept");
            o.has_cookie |= gh_str_caseeq_lit(n, "cookie");
            break;
        case 7:
            o.has_referer |= gh_str_caseeq_lit(n, "referer");
            break;
        case 9:
            o.has_sec_ch_ua |= gh_str_caseeq_lit(n, "sec-ch-ua");
            break;
        case 14:
        case 15:
            o.has_sec_fetch |= gh_str_caseeq_lit(n, "sec-fetch-mode") || gh_str_caseeq_lit(n, "sec-fetch-site") ||
                               gh_str_caseeq_lit(n, "sec-fetch-dest");
            o.has_accept_language |= gh_str_caseeq_lit(n, "accept-language");
            o.has_accept_encoding |= gh_str_caseeq_lit(n, "accept-encoding");
            break;
        }
    }
    o.is_h2 = in->h2;
    gh_bot_conf_t bc;
    gh_bot_conf_default(&bc);
    bc.window_ms = b->window;
    bc.path_seed = G.path_seed;
    uint64_t hi, lo;
    addr_key(in->client, 0xb0, &hi, &lo);
    gh_shtab_ref_t ref;
    int created;
    uint32_t reasons = 0;
    int score = 0;
    gh_bot_state_t *st = gh_shtab_lock(G.bots, hi, lo, 1, &created, &ref, &ms);
    if (st) {
        if (!st->reserved)
            st->reserved = (uint16_t)((ms / 1000) % FIRST_SEEN_MOD + 1);
        uint32_t first = st->reserved - 1u;
        score = gh_bot_observe(st, &bc, &o, &reasons);
        gh_shtab_unlock(G.bots, &ref);
        if (flood_since_ms) {
            uint32_t age = (uint32_t)((flood_since_ms / 1000 + FIRST_SEEN_MOD - first) % FIRST_SEEN_MOD);
            uint32_t cut = b->challenge ? b->challenge : 50;
            *established = age >= ESTABLISHED_S && age < FIRST_SEEN_MOD - 600 && score < (int)cut;
        }
    }
    out->score = (uint8_t)score;
    const char *why = reasons ? gh_bot_reason_name(reasons & (~reasons + 1)) : "score";
    if (b->block && score >= (int)b->block) {
        answer(out, 403, GH_PR_BOT, GH_PA_BLOCK, why);
        note_top_addr(in, "bot");
        return 1;
    }
    if (b->tarpit && score >= (int)b->tarpit && !has_pass) {
        answer(out, 429, GH_PR_BOT, GH_PA_TARPIT, why);
        out->delay_ms = b->tarpit_delay;
        note_top_addr(in, "bot");
        return 1;
    }
    if (b->challenge && score >= (int)b->challenge && !has_pass) {
        challenge(in, out, ua, b->difficulty, GH_PR_BOT);
        note_top_addr(in, "bot");
        return 1;
    }
    if (b->log && score >= (int)b->log) {
        out->reason = GH_PR_BOT;
        out->action = GH_PA_LOG;
        out->detail = why;
    }
    return 0;
}

static int rate_limits(const gh_protect_req_t *in, gh_protect_verdict_t *out, const gh_conf_protect_t *p,
                       uint64_t ns)
{
    for (uint32_t i = 0; i < p->nlimits; i++) {
        const gh_conf_ratelimit_t *rl = &p->limits[i];
        uint64_t hi, lo;
        char text[200];
        if (!limit_key(in, rl, &hi, &lo, rl->global ? text : NULL, sizeof text))
            continue;
        gh_gcra_result_t res;
        int allowed;
        if (rl->global && G.glimit) {
            /* the Redis key names the settings too: nodes with other settings (a rollout) do not
             * share windows of another length; the windows are wall-clock ones */
            size_t tl = strlen(text);
            snprintf(text + tl, sizeof text - tl, "|%u/%u/%u", rl->quota, rl->period_s, rl->burst);
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            allowed = gh_glimit_take(G.glimit, hi, lo, text, strlen(text), (double)rl->quota / rl->period_s,
                                     rl->burst, (uint64_t)wall.tv_sec * 1000000000u + (uint64_t)wall.tv_nsec) == 1;
            text[tl] = 0;
            memset(&res, 0, sizeof res);
            res.retry_after_ns = rl->interval_ns;
            res.limit = rl->quota;
        } else {
            gh_gcra_t g = {.interval_ns = rl->interval_ns, .tolerance_ns = rl->tolerance_ns, .burst = rl->burst};
            uint64_t wait = rl->action == GH_RLA_DELAY ? (uint64_t)rl->max_delay * 1000000u : 0;
            gh_gcra_take(G.limits, hi, lo, &g, ns, 1, wait, &res);
            allowed = res.allowed;
        }
        if (allowed && res.delay_ns && rl->action == GH_RLA_DELAY) {
            uint32_t ms = (uint32_t)((res.delay_ns + 999999) / 1000000);
            if (ms > out->delay_ms)
                out->delay_ms = ms;
            out->reason = GH_PR_RATE;
            out->action = GH_PA_DELAY;
            out->detail = rl->name;
            count(in->route, GH_PR_RATE, GH_PA_DELAY);
            continue;
        }
        if (allowed)
            continue;
        if (!rl->global) /* the key as text: for the top blocked keys (only now: snprintf is not free) */
            limit_key(in, rl, &hi, &lo, text, sizeof text);
        if (rl->action == GH_RLA_SHADOW) {
            count(in->route, GH_PR_RATE, GH_PA_SHADOW);
            note_top(in, text);
            if (out->reason == GH_PR_NONE) {
                out->reason = GH_PR_RATE;
                out->action = GH_PA_SHADOW;
                out->detail = rl->name;
            }
            continue;
        }
        answer(out, 429, GH_PR_RATE, GH_PA_BLOCK, rl->name);
        uint64_t ra = (res.retry_after_ns + 999999999) / 1000000000;
        add_header(out, "Retry-After: %llu\r\n", (unsigned long long)GH_MAX(ra, 1ull));
        add_header(out, "RateLimit-Policy: \"%s\";q=%u;w=%u\r\n", rl->name, rl->quota, rl->period_s);
        add_header(out, "RateLimit: \"%s\";r=0;t=%llu\r\n", rl->name, (unsigned long long)GH_MAX(ra, 1ull));
        note_top(in, text);
        return 1;
    }
    return 0;
}

void gh_protect_check(const gh_protect_req_t *in, gh_protect_verdict_t *out)
{
    memset(out, 0, offsetof(gh_protect_verdict_t, headers));
    out->headers_len = 0;
    out->body = NULL;
    out->body_len = 0;
    out->counted = 0;
    out->score = 0;
    const gh_conf_route_t *rt = in->route;
    const gh_conf_tenant_t *ct = rt->tenant;
    tstate_t *ts = ct->state;
    if (!G.started || !ts)
        return;
    uint64_t ns = now_ns(), ms = ns / 1000000;
    const gh_conf_bots_t *bots = rt->bots;
    int flooding = 0, established = 0, has_pass = -1; /* has_pass: -1 not checked yet */

    if (bots && in->path.n == sizeof CHALLENGE_PATH - 1 && !memcmp(in->path.p, CHALLENGE_PATH, in->path.n)) {
        verify(in, out, bots);
        goto done;
    }
    for (int i = 0; i < 3; i++) {
        int reason;
        if (rt->prot[i] && acl_refuses(in, &rt->prot[i]->acl, &reason)) {
            answer(out, 403, reason, GH_PA_BLOCK, reason == GH_PR_COUNTRY ? "country" : "address");
            note_top_addr(in, reason == GH_PR_COUNTRY ? "country" : "deny");
            goto done;
        }
    }
    flood_tick(ct, ts, ms);
    if (quota_over(ct, ts, ms / 1000)) {
        answer(out, 429, GH_PR_QUOTA, GH_PA_BLOCK, "tenant quota");
        add_header(out, "Retry-After: %u\r\n", (unsigned)(60 - (ms / 1000) % 60));
        goto done;
    }
    gh_str_t ua;
    ua_of(in, &ua);
    flooding = ct->flood.enabled && __atomic_load_n(&ts->flood, __ATOMIC_RELAXED);
    if (bots) {
        has_pass = pass_cookie_ok(in, ua);
        if (bot_check(in, out, bots, has_pass, ua, ms, flooding ? __atomic_load_n(&ts->flood_since_ms, __ATOMIC_RELAXED) : 0,
                      &established))
            goto done;
    }
    if (flooding) {
        /* flood mode: a stricter per-address limit; clients without a reputation (a pass cookie,
         * or a well-behaved history from before the flood) are shed first when the upstream is
         * busy and challenged (when the tenant has bot defence) */
        if (has_pass < 0)
            has_pass = pass_cookie_ok(in, ua);
        int reputed = has_pass || established;
        uint64_t hi, lo;
        addr_key(in->client, ct->flood.per_ip_interval_ns ^ 0xf1, &hi, &lo);
        gh_gcra_t g = {.interval_ns = ct->flood.per_ip_interval_ns, .tolerance_ns = ct->flood.per_ip_tolerance_ns};
        gh_gcra_result_t res;
        gh_gcra_take(G.limits, hi, lo, &g, ns, 1, 0, &res);
        if (!res.allowed) {
            answer(out, 429, GH_PR_FLOOD, GH_PA_BLOCK, "flood per-ip limit");
            add_header(out, "Retry-After: %llu\r\n", (unsigned long long)GH_MAX((res.retry_after_ns + 999999999) / 1000000000, 1ull));
            note_top_addr(in, "flood");
            goto done;
        }
        uint32_t inflight = __atomic_load_n(&ts->inflight, __ATOMIC_RELAXED);
        uint32_t cap = ct->max_concurrent ? ct->max_concurrent : ct->flood.concurrency;
        if (!reputed && cap && inflight >= cap / 2) {
            answer(out, 503, GH_PR_FLOOD, GH_PA_BLOCK, "shed: no reputation");
            add_header(out, "Retry-After: 5\r\n");
            goto done;
        }
        if (!reputed && bots && bots->challenge) {
            challenge(in, out, ua, bots->difficulty, GH_PR_FLOOD);
            goto done;
        }
    }
    for (int i = 0; i < 3; i++)
        if (rt->prot[i] && rt->prot[i]->nlimits && rate_limits(in, out, rt->prot[i], ns))
            goto done;
    if (ct->max_concurrent || ct->flood.enabled) {
        uint32_t n = __atomic_add_fetch(&ts->inflight, 1, __ATOMIC_RELAXED);
        if (ct->max_concurrent && n > ct->max_concurrent) {
            __atomic_sub_fetch(&ts->inflight, 1, __ATOMIC_RELAXED);
            answer(out, 503, GH_PR_CONCURRENCY, GH_PA_BLOCK, "tenant concurrency");
            add_header(out, "Retry-After: 1\r\n");
            goto done;
        }
        out->counted = 1;
    }
done:
    if (flooding && out->verdict == GH_PV_ANSWER && out->action == GH_PA_BLOCK && !out->body && !established &&
        has_pass != 1 && out->delay_ms < FLOOD_TARPIT_MS)
        /* in flood mode a refusal is held a moment: the attacker's connection sends nothing more
         * meanwhile (each waits for its answer), so a flood costs a fraction of the CPU */
        out->delay_ms = FLOOD_TARPIT_MS;
    if (out->verdict == GH_PV_ANSWER || (out->reason != GH_PR_NONE && out->action == GH_PA_LOG))
        count(rt, out->reason, out->action);
}

void gh_protect_done(const gh_conf_route_t *rt, int counted, uint64_t latency_us)
{
    tstate_t *ts = rt && rt->tenant ? rt->tenant->state : NULL;
    if (!ts)
        return;
    if (counted)
        __atomic_sub_fetch(&ts->inflight, 1, __ATOMIC_RELAXED);
    if (latency_us && rt->tenant->flood.latency) {
        /* racy by design: an estimate, updated by every worker */
        double e = ts->lat_ewma_us;
        ts->lat_ewma_us = e ? e + ((double)latency_us - e) / 32.0 : (double)latency_us;
    }
}

void gh_protect_client(const gh_conf_t *c, const struct sockaddr *peer, const gh_h1_header_t *h, size_t nh,
                       struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    memcpy(out, peer, peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (!c->ntrusted_proxies || !gh_conf_is_trusted(c, peer))
        return;
    /* the right-most address that is not a trusted proxy, across all X-Forwarded-For fields */
    for (size_t i = nh; i-- > 0;) {
        if (!gh_str_caseeq_lit(h[i].name, "x-forwarded-for"))
            continue;
        const char *p = h[i].value.p;
        size_t n = h[i].value.n;
        while (n) {
            size_t start = n;
            while (start && p[start - 1] != ',')
                start--;
            const char *a = p + start;
            size_t an = n - start;
            while (an && (*a == ' ' || *a == '\t'))
                a++, an--;
            while (an && (a[an - 1] == ' ' || a[an - 1] == '\t'))
                an--;
            char buf[INET6_ADDRSTRLEN];
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof ss);
            if (an && an < sizeof buf) {
                memcpy(buf, a, an);
                buf[an] = 0;
                struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
                if (inet_pton(AF_INET, buf, &s4->sin_addr) == 1)
                    s4->sin_family = AF_INET;
                else if (inet_pton(AF_INET6, buf, &s6->sin6_addr) == 1)
                    s6->sin6_family = AF_INET6;
            }
            if (!ss.ss_family)
                return; /* garbage: keep the last good one */
            *out = ss;
            if (!gh_conf_is_trusted(c, (struct sockaddr *)&ss))
                return;
            n = start ? start - 1 : 0;
        }
    }
}

/* ---- operators ---- */

size_t gh_protect_metrics(const gh_conf_t *c, char *out, size_t cap)
{
    size_t o = 0;
#define PUT(...)                                                                     \
    do {                                                                             \
        if (o < cap) {                                                               \
            int k_ = snprintf(out + o, cap - o, __VA_ARGS__);                        \
            o += k_ > 0 ? (size_t)k_ : 0;                                            \
        }                                                                            \
    } while (0)
    if (!G.started)
        return 0;
    PUT("# HELP gatehouse_protection_decisions_total Protection decisions by tenant, reason and action.\n"
        "# TYPE gatehouse_protection_decisions_total counter\n");
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        tstate_t *t = c->tenants[ti].state;
        for (int r = 1; t && r < GH_PR__N; r++)
            for (int a = 0; a < GH_PA__N; a++) {
                uint64_t v = __atomic_load_n(&t->decisions[r][a], __ATOMIC_RELAXED);
                if (v)
                    PUT("gatehouse_protection_decisions_total{tenant=\"%s\",reason=\"%s\",action=\"%s\"} %llu\n",
                        t->name, gh_protect_reason_name(r), gh_protect_action_name(a), (unsigned long long)v);
            }
    }
    PUT("# HELP gatehouse_protection_flood_mode Whether the tenant is in flood mode.\n"
        "# TYPE gatehouse_protection_flood_mode gauge\n");
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        tstate_t *t = c->tenants[ti].state;
        if (t && c->tenants[ti].flood.enabled)
            PUT("gatehouse_protection_flood_mode{tenant=\"%s\"} %d\n", t->name, __atomic_load_n(&t->flood, __ATOMIC_RELAXED));
    }
    PUT("# HELP gatehouse_protection_flood_transitions_total Flood mode entered and left.\n"
        "# TYPE gatehouse_protection_flood_transitions_total counter\n");
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        tstate_t *t = c->tenants[ti].state;
        if (t && c->tenants[ti].flood.enabled) {
            PUT("gatehouse_protection_flood_transitions_total{tenant=\"%s\",to=\"on\"} %llu\n", t->name,
                (unsigned long long)t->flood_entered);
            PUT("gatehouse_protection_flood_transitions_total{tenant=\"%s\",to=\"off\"} %llu\n", t->name,
                (unsigned long long)t->flood_left);
        }
    }
    PUT("# HELP gatehouse_protection_tenant_requests_per_second The tenant's request rate as flood detection measures it.\n"
        "# TYPE gatehouse_protection_tenant_requests_per_second gauge\n");
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        tstate_t *t = c->tenants[ti].state;
        if (t && c->tenants[ti].flood.enabled)
            PUT("gatehouse_protection_tenant_requests_per_second{tenant=\"%s\"} %.0f\n", t->name, t->rate);
    }
    PUT("# HELP gatehouse_protection_tenant_baseline_requests_per_second The tenant's learned baseline request rate.\n"
        "# TYPE gatehouse_protection_tenant_baseline_requests_per_second gauge\n");
    for (uint32_t ti = 0; ti < c->ntenants; ti++) {
        tstate_t *t = c->tenants[ti].state;
        if (t && c->tenants[ti].flood.enabled)
            PUT("gatehouse_protection_tenant_baseline_requests_per_second{tenant=\"%s\"} %.1f\n", t->name, t->baseline);
    }
    gh_shtab_stats_t st;
    gh_shtab_stats(G.limits, &st);
    PUT("# HELP gatehouse_protection_keys Rate-limit states held.\n"
        "# TYPE gatehouse_protection_keys gauge\ngatehouse_protection_keys %llu\n"
        "# HELP gatehouse_protection_keys_capacity Rate-limit states the table can hold (protection.max_keys).\n"
        "# TYPE gatehouse_protection_keys_capacity gauge\ngatehouse_protection_keys_capacity %llu\n"
        "# HELP gatehouse_protection_key_evictions_total States evicted from the full table (active: a limited key lost its state).\n"
        "# TYPE gatehouse_protection_key_evictions_total counter\n"
        "gatehouse_protection_key_evictions_total{kind=\"idle\"} %llu\n"
        "gatehouse_protection_key_evictions_total{kind=\"active\"} %llu\n",
        (unsigned long long)st.entries, (unsigned long long)st.slots, (unsigned long long)st.evictions_idle,
        (unsigned long long)st.evictions_active);
    if (G.glimit) {
        gh_glimit_status_t gs;
        gh_glimit_status(G.glimit, &gs);
        PUT("# HELP gatehouse_protection_redis_up Whether the Redis of the global limits answers.\n"
            "# TYPE gatehouse_protection_redis_up gauge\ngatehouse_protection_redis_up %d\n"
            "# HELP gatehouse_protection_redis_syncs_total Syncs of the global limits with Redis.\n"
            "# TYPE gatehouse_protection_redis_syncs_total counter\ngatehouse_protection_redis_syncs_total %llu\n"
            "# HELP gatehouse_protection_redis_errors_total Syncs with Redis that failed.\n"
            "# TYPE gatehouse_protection_redis_errors_total counter\ngatehouse_protection_redis_errors_total %llu\n",
            gs.connected, (unsigned long long)gs.syncs, (unsigned long long)gs.sync_errors);
    }
#undef PUT
    return GH_MIN(o, cap);
}

size_t gh_protect_top_json(const gh_conf_t *c, char *out, size_t cap)
{
    (void)c;
    static __thread gh_topk_item_t e[64];
    int got = gh_topk_merge(G.topk, MAX_TOPK_WORKERS, e, 64);
    size_t n = got > 0 ? (size_t)got : 0;
    size_t o = (size_t)snprintf(out, cap, "{\"top_blocked\":[");
    for (size_t i = 0; i < n && o < cap; i++) {
        char key[200];
        size_t k = 0;
        for (size_t j = 0; j < e[i].len && k + 7 < sizeof key; j++) {
            unsigned char ch = (unsigned char)e[i].label[j];
            if (ch == '"' || ch == '\\')
                key[k++] = '\\', key[k++] = (char)ch;
            else if (ch < 0x20 || ch >= 0x7f)
                k += (size_t)snprintf(key + k, sizeof key - k, "\\u%04x", ch);
            else
                key[k++] = (char)ch;
        }
        key[k] = 0;
        o += (size_t)snprintf(out + o, cap - o, "%s{\"key\":\"%s\",\"count\":%llu}", i ? "," : "", key,
                              (unsigned long long)e[i].count);
    }
    if (o < cap)
        o += (size_t)snprintf(out + o, cap - o, "]}\n");
    return GH_MIN(o, cap);
}
