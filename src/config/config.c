/* config.c: loads a YAML configuration, validates it and compiles it into a snapshot.
 *
 * One walk over the libyaml document tree both checks every key against the schema
 * and fills the snapshot: strict (unknown keys, wrong types, duplicate keys are
 * errors), and it keeps going after an error so that one run reports all of them,
 * each as "FILE:LINE:COL: key.path: message" (1-based, from the offending node's
 * start mark), sorted by position. Everything the snapshot owns lives in one arena
 * (plus the PCRE2 codes it lists, and the router index), freed in one go when the
 * last reference is dropped. Allocation failure while loading unwinds with longjmp
 * to the entry point, which frees the arena: no partial snapshot escapes.
 *
 * Called by main.c, the reload path and tests. Calls libyaml, PCRE2, getaddrinfo and
 * the router (gh_router_build) once a snapshot validates. */
#define _GNU_SOURCE
#include "config/config.h"
#include "experiments/exp.h"

/* Something built at load that the snapshot owns besides its arena (a flag set, a rule set):
 * registered before it exists, so that no unwinding (longjmp on a full arena) can lose it. */
struct gh_conf_owned {
    struct gh_conf_owned *next;
    void *obj;
    void (*free)(void *obj);
};
#include "flags/flags.h"
#include "edge/lua.h"
#include "rules/rules.h"
#include "proxy/dns.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <jansson.h>
#include <yaml.h>

#include "core/log.h"
#include "http/h1.h"
#include "proxy/lb.h"
#include "proxy/router.h"
#include "protect/gcra.h"
#include "protect/iptree.h"
#include "protect/protect.h"
#include "tls/tls.h"


#define MAX_FILE_SIZE (64u << 20)
#define MAX_NAME 128
/* Keys and items visited, aliases included: aliases are references, so a small file
 * could otherwise make the walk (and the snapshot) grow combinatorially. */
#define MAX_VISITS (8u << 20)

/* ---------------------------------------------------------------- arena */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk_t;

typedef struct re_node {
    struct re_node *next;
    pcre2_code *re;
} re_node_t;

typedef struct {
    chunk_t *chunks;
    re_node_t *res; /* regexes owned by the snapshot, freed with it */
} arena_t;

#define CHUNK_SIZE 16384

/* Zeroed, 16-byte aligned memory that lives as long as the arena; NULL on OOM. */
static void *arena_alloc(arena_t *a, size_t n)
{
    n = n ? (n + 15) & ~(size_t)15 : 16;
    chunk_t *ch = a->chunks;
    if (!ch || ch->cap - ch->used < n) {
        size_t cap = n > CHUNK_SIZE ? n : CHUNK_SIZE;
        chunk_t *nc = calloc(1, sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->cap = cap;
        if (ch && n > CHUNK_SIZE / 4) {
            /* a big block gets a chunk of its own; keep filling the current one */
            nc->next = ch->next;
            ch->next = nc;
            nc->used = n;
            return nc->data;
        }
        nc->next = ch;
        a->chunks = nc;
        ch = nc;
    }
    void *p = (char *)ch->data + ch->used;
    ch->used += n;
    return p;
}

static void arena_destroy(arena_t *a)
{
    if (!a)
        return;
    for (re_node_t *r = a->res; r; r = r->next)
        pcre2_code_free(r->re);
    chunk_t *ch = a->chunks;
    while (ch) {
        chunk_t *next = ch->next;
        free(ch);
        ch = next;
    }
    free(a);
}

/* ---------------------------------------------------------------- context */

typedef struct {
    uint32_t line, col, seq;
    char *msg;
} cerr_t;

/* One configured host, for the duplicate check across the whole file. */
typedef struct {
    const char *key; /* normalised: "example.com", ".example.com" (wildcard), "*" */
    uint32_t t, s, h;
    uint32_t line, col, seq;
    const char *tenant, *site;
} hostrec_t;

/* Per-upstream timeout overrides (connect/response/idle), applied to its routes. */
typedef struct {
    uint32_t connect, response, idle;
    unsigned set; /* bit 0 connect, 1 response, 2 idle */
} up_tmo_t;

typedef struct {
    const char *file;
    const char *src; /* the YAML text (reader errors give only a byte offset) */
    size_t srclen;
    yaml_document_t *doc;
    arena_t *a;   /* the snapshot's */
    arena_t *tmp; /* scratch, freed when loading ends */
    gh_conf_t *c;
    cerr_t *errs;
    size_t nerrs, caperrs;
    uint32_t seq;
    hostrec_t *hosts;
    size_t nhosts, caphosts;
    up_tmo_t *up_tmo;
    yaml_node_t *resolver_node; /* for errors of the resolver settings */
    int dns_state;              /* 0: resolver not configured yet, 1: configured, -1: failed */
    /* listen-value nodes and paths, for the duplicate listener check */
    yaml_node_t **lnodes;
    char **lpaths;
    char path[1024];
    size_t plen;
    char qbuf[4][192];
    unsigned qi;
    size_t visits;
    int over_budget;
    /* libyaml state lives here, not on the stack, so that it survives longjmp */
    yaml_parser_t parser;
    yaml_document_t ydoc, ydoc2;
    int have_parser, have_doc, have_doc2;
    const char *overlay; /* JSON of API-defined objects layered over the file (gh_conf_load_layered) */
    size_t overlay_len;
    jmp_buf oom;
} ctx_t;

static void *xalloc(ctx_t *x, size_t n)
{
    void *p = arena_alloc(x->a, n);
    if (!p)
        longjmp(x->oom, 1);
    return p;
}

static void *talloc(ctx_t *x, size_t n)
{
    void *p = arena_alloc(x->tmp, n);
    if (!p)
        longjmp(x->oom, 1);
    return p;
}

static char *xstrndup(ctx_t *x, const char *s, size_t n)
{
    char *p = xalloc(x, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *tstrdup(ctx_t *x, const char *s)
{
    size_t n = strlen(s);
    char *p = talloc(x, n + 1);
    memcpy(p, s, n + 1);
    return p;
}

static struct gh_conf_owned *owned(ctx_t *x, void (*fn)(void *))
{
    struct gh_conf_owned *own = xalloc(x, sizeof *own);
    own->free = fn;
    own->next = x->c->owned;
    x->c->owned = own;
    return own;
}

static void free_flagset(void *set) { gh_flags_free(set); }

/* A printable, quoted copy of s for messages (a few rotating buffers). */
static const char *q(ctx_t *x, const char *s, size_t n)
{
    char *b = x->qbuf[x->qi++ % 4];
    size_t o = 0, cap = sizeof x->qbuf[0];
    b[o++] = '"';
    for (size_t i = 0; i < n && o < cap - 8; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            b[o++] = '\\';
            b[o++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            o += (size_t)snprintf(b + o, cap - o, "\\x%02x", ch);
        } else {
            b[o++] = (char)ch;
        }
        if (i + 1 < n && o >= cap - 8) {
            memcpy(b + o, "...", 3);
            o += 3;
            break;
        }
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}

static size_t path_key(ctx_t *x, const char *k)
{
    size_t old = x->plen;
    int n = snprintf(x->path + x->plen, sizeof x->path - x->plen, "%s%s", x->plen ? "." : "", k);
    if (n > 0)
        x->plen = GH_MIN(x->plen + (size_t)n, sizeof x->path - 1);
    return old;
}

static size_t path_idx(ctx_t *x, size_t i)
{
    size_t old = x->plen;
    int n = snprintf(x->path + x->plen, sizeof x->path - x->plen, "[%zu]", i);
    if (n > 0)
        x->plen = GH_MIN(x->plen + (size_t)n, sizeof x->path - 1);
    return old;
}

static void path_pop(ctx_t *x, size_t old)
{
    x->plen = old;
    x->path[old] = '\0';
}

/* Nodes layered from the API's JSON have no place in the file: their errors read "api: path: msg". */
#define OVERLAY_LINE UINT32_MAX

static void add_err(ctx_t *x, uint32_t line, uint32_t col, const char *path, const char *fmt,
                    va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (x->nerrs == x->caperrs) {
        size_t cap = x->caperrs ? x->caperrs * 2 : 16;
        cerr_t *e = realloc(x->errs, cap * sizeof *e);
        if (!e)
            longjmp(x->oom, 1);
        x->errs = e;
        x->caperrs = cap;
    }
    char *s;
    if (line == OVERLAY_LINE ? asprintf(&s, "api: %s: %s", path && *path ? path : "(root)", msg) < 0
                             : asprintf(&s, "%s:%u:%u: %s: %s", x->file, line, col, path && *path ? path : "(root)",
                                        msg) < 0)
        longjmp(x->oom, 1);
    x->errs[x->nerrs++] = (cerr_t){line, col, x->seq++, s};
}

static void errat(ctx_t *x, uint32_t line, uint32_t col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void errat(ctx_t *x, uint32_t line, uint32_t col, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_err(x, line, col, path, fmt, ap);
    va_end(ap);
}

/* An error about node n at the current key path. */
static void err(ctx_t *x, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(ctx_t *x, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_err(x, n ? (uint32_t)n->start_mark.line + 1 : 0, n ? (uint32_t)n->start_mark.column + 1 : 0,
            x->path, fmt, ap);
    va_end(ap);
}

/* An error about key k (path extended by the key) at the key's node. */
static void err_key(ctx_t *x, const yaml_node_t *kn, const char *k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err_key(ctx_t *x, const yaml_node_t *kn, const char *k, const char *fmt, ...)
{
    size_t o = path_key(x, k);
    va_list ap;
    va_start(ap, fmt);
    add_err(x, (uint32_t)kn->start_mark.line + 1, (uint32_t)kn->start_mark.column + 1, x->path,
            fmt, ap);
    va_end(ap);
    path_pop(x, o);
}

/* ---------------------------------------------------------------- nodes */

static yaml_node_t *node(ctx_t *x, int i) { return yaml_document_get_node(x->doc, i); }
static const char *sv(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }
static size_t sl(const yaml_node_t *n) { return n->data.scalar.length; }

static bool seq_eq(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static bool is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = sv(n);
    size_t len = sl(n);
    return len == 0 || seq_eq(s, len, "~") || seq_eq(s, len, "null") || seq_eq(s, len, "Null") ||
           seq_eq(s, len, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
    if (is_null(n))
        return "null";
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a sequence";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static bool is_scalar(const yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE && !is_null(n); }

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* Charges k visits; false (one error in all) once over the budget. */
static bool charge(ctx_t *x, yaml_node_t *n, size_t k)
{
    if (x->visits + k > MAX_VISITS) {
        if (!x->over_budget)
            err(x, n, "configuration too large: more than %u keys and items (aliases included)",
                MAX_VISITS);
        x->over_budget = 1;
        return false;
    }
    x->visits += k;
    return true;
}

static bool want_seq(ctx_t *x, yaml_node_t *n, bool nonempty)
{
    if (!n || n->type != YAML_SEQUENCE_NODE) {
        err(x, n, "expected a sequence, got %s", kind(n));
        return false;
    }
    if (!charge(x, n, seq_len(n) + 1))
        return false;
    if (nonempty && seq_len(n) == 0) {
        err(x, n, "must not be empty");
        return false;
    }
    return true;
}

static bool want_map(ctx_t *x, yaml_node_t *n)
{
    if (!n || n->type != YAML_MAPPING_NODE) {
        err(x, n, "expected a mapping, got %s", kind(n));
        return false;
    }
    return charge(x, n, (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start) + 1);
}

/* Reports (and says to skip) a key already seen earlier in the same mapping. */
static bool dup_key(ctx_t *x, yaml_node_t *map, yaml_node_pair_t *p, yaml_node_t *k)
{
    for (yaml_node_pair_t *e = map->data.mapping.pairs.start; e < p; e++) {
        yaml_node_t *ek = node(x, e->key);
        if (ek && ek->type == YAML_SCALAR_NODE && sl(ek) == sl(k) &&
            memcmp(sv(ek), sv(k), sl(k)) == 0) {
            err_key(x, k, sv(k), "duplicate key (first at line %u, column %u)",
                    (unsigned)ek->start_mark.line + 1, (unsigned)ek->start_mark.column + 1);
            return true;
        }
    }
    return false;
}

static bool printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return n > 0;
}

typedef struct {
    const char *name;
    yaml_node_t *key, *val;
} field_t;
#define F(n) {.name = (n)}

/* Sorts a mapping's pairs into the fields it may have. Unknown and duplicate keys are
 * errors. False (after an error) when n is no mapping at all. */
static bool fields(ctx_t *x, yaml_node_t *n, field_t *f, size_t nf)
{
    if (!want_map(x, n))
        return false;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
        if (!k || k->type != YAML_SCALAR_NODE) {
            err(x, k, "keys must be strings, got %s", kind(k));
            continue;
        }
        size_t i;
        for (i = 0; i < nf; i++)
            if (seq_eq(sv(k), sl(k), f[i].name))
                break;
        if (i == nf) {
            char allowed[512];
            size_t o = 0;
            for (size_t j = 0; j < nf && o < sizeof allowed; j++)
                o += (size_t)snprintf(allowed + o, sizeof allowed - o, "%s%s", j ? ", " : "",
                                      f[j].name);
            err_key(x, k, printable(sv(k), sl(k)) ? sv(k) : q(x, sv(k), sl(k)),
                    "unknown key %s (allowed here: %s)", q(x, sv(k), sl(k)), allowed);
            continue;
        }
        if (f[i].key) {
            err_key(x, k, f[i].name, "duplicate key (first at line %u, column %u)",
                    (unsigned)f[i].key->start_mark.line + 1,
                    (unsigned)f[i].key->start_mark.column + 1);
            continue;
        }
        f[i].key = k;
        f[i].val = v;
    }
    return true;
}

static void missing(ctx_t *x, yaml_node_t *map, const char *k)
{
    size_t o = path_key(x, k);
    err(x, map, "required key is missing");
    path_pop(x, o);
}

/* ---------------------------------------------------------------- scalars */

/* A non-null scalar, copied into the snapshot; NUL bytes rejected unless allow_nul. */
static bool get_str(ctx_t *x, yaml_node_t *v, char **out, size_t *len, bool allow_empty,
                    bool allow_nul)
{
    if (!is_scalar(v)) {
        err(x, v, "expected a string, got %s", kind(v));
        return false;
    }
    if (!allow_empty && sl(v) == 0) {
        err(x, v, "must not be empty");
        return false;
    }
    if (!allow_nul && memchr(sv(v), '\0', sl(v))) {
        err(x, v, "must not contain a NUL byte");
        return false;
    }
    *out = xstrndup(x, sv(v), sl(v));
    if (len)
        *len = sl(v);
    return true;
}

/* Names of tenants, sites, routes, upstreams, listeners: visible ASCII, no quotes. */
static bool get_name(ctx_t *x, yaml_node_t *v, char **out)
{
    if (!get_str(x, v, out, NULL, false, false))
        return false;
    size_t n = sl(v);
    if (n > MAX_NAME) {
        err(x, v, "name longer than %d bytes", MAX_NAME);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)sv(v)[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\'' || ch == '\\') {
            err(x, v, "bad name %s: use visible ASCII without spaces, quotes or backslashes",
                q(x, sv(v), n));
            return false;
        }
    }
    return true;
}

static bool get_bool(ctx_t *x, yaml_node_t *v, int *out)
{
    if (is_scalar(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
        static const char *const f[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
        for (size_t i = 0; i < GH_ARRAY_LEN(t); i++) {
            if (seq_eq(sv(v), sl(v), t[i])) {
                *out = 1;
                return true;
            }
            if (seq_eq(sv(v), sl(v), f[i])) {
                *out = 0;
                return true;
            }
        }
    }
    err(x, v, "expected a boolean (true or false), got %s",
        is_scalar(v) ? q(x, sv(v), sl(v)) : kind(v));
    return false;
}

static bool parse_digits(const char *s, size_t n, size_t *used, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *used = i;
    *out = v;
    return i > 0;
}

static bool get_uint(ctx_t *x, yaml_node_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t u;
    size_t used;
    if (!is_scalar(v)) {
        err(x, v, "expected an integer, got %s", kind(v));
        return false;
    }
    if (!parse_digits(sv(v), sl(v), &used, &u) || used != sl(v)) {
        err(x, v, "expected an integer, got %s", q(x, sv(v), sl(v)));
        return false;
    }
    if (u < min || u > max) {
        err(x, v, "%llu is out of range %llu..%llu", (unsigned long long)u,
            (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = u;
    return true;
}

/* "8192", "8k", "1m", "1g" (1024-based; K/M/G too). */
static bool parse_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t v;
    size_t used;
    if (!parse_digits(s, n, &used, &v))
        return false;
    if (used == n) {
        *out = v;
        return true;
    }
    if (used + 1 != n)
        return false;
    unsigned shift;
    switch (s[used]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return false;
    }
    if (v > (UINT64_MAX >> shift))
        return false;
    *out = v << shift;
    return true;
}

static bool get_size(ctx_t *x, yaml_node_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t u;
    if (!is_scalar(v)) {
        err(x, v, "expected a size, got %s", kind(v));
        return false;
    }
    if (!parse_size(sv(v), sl(v), &u)) {
        err(x, v, "bad size %s: use bytes or a k/m/g suffix (1024-based), e.g. 8k, 1m",
            q(x, sv(v), sl(v)));
        return false;
    }
    if (u < min || u > max) {
        err(x, v, "size %s is out of range %llu..%llu bytes", q(x, sv(v), sl(v)),
            (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = u;
    return true;
}

/* "500ms", "10s", "2m", "1h", or a bare integer of seconds -> milliseconds.
 * 0 ok, -1 bad syntax, -2 too large for 32-bit milliseconds. */
static int parse_duration(const char *s, size_t n, uint32_t *out)
{
    uint64_t v, mul;
    size_t used;
    if (!parse_digits(s, n, &used, &v))
        return -1;
    const char *u = s + used;
    size_t ul = n - used;
    if (ul == 0 || seq_eq(u, ul, "s"))
        mul = 1000;
    else if (seq_eq(u, ul, "ms"))
        mul = 1;
    else if (seq_eq(u, ul, "m"))
        mul = 60000;
    else if (seq_eq(u, ul, "h"))
        mul = 3600000;
    else if (seq_eq(u, ul, "d"))
        mul = 86400000;
    else
        return -1;
    if (v > UINT32_MAX / mul)
        return -2;
    *out = (uint32_t)(v * mul);
    return 0;
}

static bool get_dur(ctx_t *x, yaml_node_t *v, bool allow0, uint32_t *out)
{
    uint32_t ms;
    if (!is_scalar(v)) {
        err(x, v, "expected a duration, got %s", kind(v));
        return false;
    }
    int rc = parse_duration(sv(v), sl(v), &ms);
    if (rc == -1) {
        err(x, v, "bad duration %s: use e.g. 500ms, 10s, 2m, 1h, 1d (a bare number means seconds)",
            q(x, sv(v), sl(v)));
        return false;
    }
    if (rc == -2) {
        err(x, v, "duration %s is too large (at most %u ms)", q(x, sv(v), sl(v)), UINT32_MAX);
        return false;
    }
    if (ms == 0 && !allow0) {
        err(x, v, "must not be 0");
        return false;
    }
    *out = ms;
    return true;
}

/* Field wrappers: absent -> false and *out untouched; the key path is extended. */
static bool f_u32(ctx_t *x, field_t *f, uint64_t min, uint64_t max, uint32_t *out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    uint64_t u;
    bool ok = get_uint(x, f->val, min, max, &u);
    if (ok)
        *out = (uint32_t)u;
    path_pop(x, o);
    return ok;
}

static bool f_size(ctx_t *x, field_t *f, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = get_size(x, f->val, min, max, out);
    path_pop(x, o);
    return ok;
}

static bool f_dur(ctx_t *x, field_t *f, bool allow0, uint32_t *out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = get_dur(x, f->val, allow0, out);
    path_pop(x, o);
    return ok;
}

static bool f_bool(ctx_t *x, field_t *f, int *out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = get_bool(x, f->val, out);
    path_pop(x, o);
    return ok;
}

static bool f_str(ctx_t *x, field_t *f, char **out, size_t *len, bool allow_empty)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = get_str(x, f->val, out, len, allow_empty, false);
    path_pop(x, o);
    return ok;
}

static bool f_name(ctx_t *x, field_t *f, char **out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = get_name(x, f->val, out);
    path_pop(x, o);
    return ok;
}

/* ---------------------------------------------------------------- addresses */

/* NULL on success, else why s is no usable address. */
/* "host:port" or "[v6]:port" -> host (NUL-terminated, brackets removed) and port.
 * NULL on success, else what is wrong. */
#define HOST_MAX 256

static const char *split_hostport(const char *s, char host[HOST_MAX], uint16_t *portp, int *bracketp)
{
    const char *port;
    size_t hl;
    int bracket = 0;
    if (!s || !*s)
        return "empty address";
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e)
            return "missing ']'";
        if (e[1] != ':')
            return "missing port (use [addr]:port)";
        hl = (size_t)(e - s - 1);
        if (hl == 0)
            return "empty IPv6 address";
        if (hl >= HOST_MAX)
            return "host too long";
        memcpy(host, s + 1, hl);
        port = e + 2;
        bracket = 1;
    } else {
        const char *c = strrchr(s, ':');
        if (!c)
            return "missing port (use host:port)";
        hl = (size_t)(c - s);
        if (memchr(s, ':', hl))
            return "IPv6 addresses need brackets, e.g. [::1]:8080";
        if (hl >= HOST_MAX)
            return "host too long";
        memcpy(host, s, hl);
        port = c + 1;
    }
    host[hl] = '\0';
    uint64_t p;
    size_t used;
    if (!parse_digits(port, strlen(port), &used, &p) || port[used] != '\0')
        return "bad port";
    if (p < 1 || p > 65535)
        return "port out of range 1..65535";
    *portp = (uint16_t)p;
    *bracketp = bracket;
    return NULL;
}

static const char *parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[HOST_MAX];
    uint16_t p;
    int bracket;
    const char *why = split_hostport(s, host, &p, &bracket);
    if (why)
        return why;
    size_t hl = strlen(host);
    memset(ss, 0, sizeof *ss);
    if (hl == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)p);
        *len = sizeof *sin;
        return NULL;
    }
    struct addrinfo hints = {.ai_family = bracket ? AF_INET6 : AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        if (bracket)
            return "bad IPv6 address";
        /* not numeric: resolve it (localhost and friends) */
        hints.ai_flags = 0;
        rc = getaddrinfo(host, NULL, &hints, &res);
        if (rc != 0)
            return rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
    }
    /* prefer IPv4: "localhost" backends usually listen on 127.0.0.1 */
    struct addrinfo *pick = NULL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
        if (!pick && ai->ai_family == AF_INET6)
            pick = ai;
    }
    if (!pick || pick->ai_addrlen > sizeof *ss) {
        freeaddrinfo(res);
        return "no IPv4 or IPv6 address";
    }
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *len = pick->ai_addrlen;
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)p);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)p);
    freeaddrinfo(res);
    return NULL;
}

int gh_conf_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    return parse_addr(s, ss, len) ? GH_EINVAL : 0;
}

/* Whether two listen addresses would collide (same port; same address or a wildcard). */
static bool addr_conflict(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port &&
               (x->sin_addr.s_addr == y->sin_addr.s_addr || x->sin_addr.s_addr == INADDR_ANY ||
                y->sin_addr.s_addr == INADDR_ANY);
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           (memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 ||
            IN6_IS_ADDR_UNSPECIFIED(&x->sin6_addr) || IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr));
}

/* "10.0.0.0/8", "::1/128", or a bare address (full-length prefix). */
/* A CIDR or a bare address (iptree.h's strict parser): NULL, or why not (in msg). */
static const char *parse_cidr(const char *s, size_t n, gh_cidr_t *out, char *msg, size_t msglen)
{
    int fam = 0;
    uint8_t prefix = 0;
    memset(out, 0, sizeof *out);
    if (gh_cidr_parse_diag(s, n, &fam, out->addr, &prefix, NULL, msg, msglen) < 0)
        return msg;
    out->family = fam;
    out->prefix = prefix;
    return NULL;
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

int gh_conf_is_trusted(const gh_conf_t *c, const struct sockaddr *addr)
{
    if (!c || !addr)
        return 0;
    int fam;
    const uint8_t *bytes;
    if (addr->sa_family == AF_INET) {
        fam = AF_INET;
        bytes = (const uint8_t *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr;
    } else if (addr->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            fam = AF_INET;
            bytes = a6->s6_addr + 12;
        } else {
            fam = AF_INET6;
            bytes = a6->s6_addr;
        }
    } else {
        return 0;
    }
    for (uint32_t i = 0; i < c->ntrusted_proxies; i++) {
        const gh_cidr_t *t = &c->trusted_proxies[i];
        if (t->family == fam && prefix_match(bytes, t->addr, t->prefix))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- hosts */

/* Normalises a configured site host into out (lowercase, one trailing dot dropped;
 * "*.x.y" -> ".x.y"). NULL if valid, else why not. */
static const char *check_host(const char *s, size_t n, char *out, size_t *outlen, int *wild,
                              int *any)
{
    *wild = *any = 0;
    if (n == 1 && s[0] == '*') {
        *any = 1;
        out[0] = '*';
        *outlen = 1;
        return NULL;
    }
    size_t o = 0;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        *wild = 1;
        out[o++] = '.';
        s += 2;
        n -= 2;
    }
    if (n && s[n - 1] == '.')
        n--;
    if (n == 0)
        return "empty host name";
    if (memchr(s, '*', n))
        return "a wildcard must be \"*\" or start with \"*.\"";
    if (s[0] == '[') {
        char a[INET6_ADDRSTRLEN + 1];
        struct in6_addr tmp;
        if (*wild)
            return "no wildcard with an IPv6 literal";
        if (s[n - 1] != ']' || n - 2 >= sizeof a)
            return "bad IPv6 literal (use e.g. [::1])";
        memcpy(a, s + 1, n - 2);
        a[n - 2] = '\0';
        if (inet_pton(AF_INET6, a, &tmp) != 1)
            return "bad IPv6 literal (use e.g. [::1])";
        for (size_t i = 0; i < n; i++)
            out[o++] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
        *outlen = o;
        return NULL;
    }
    if (memchr(s, ':', n))
        return "a host must not include a port";
    if (n > 253)
        return "host name longer than 253 bytes";
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch == '.') {
            if (label == 0)
                return "empty label in host name";
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                   ch == '_') {
            if (++label > 63)
                return "label longer than 63 bytes in host name";
        } else {
            return "bad character in host name (letters, digits, '-', '_' and '.'; use punycode "
                   "for IDNs)";
        }
        out[o++] = ch;
    }
    if (label == 0)
        return "empty label in host name";
    *outlen = o;
    return NULL;
}

static int hostrec_cmp(const void *a, const void *b)
{
    const hostrec_t *x = a, *y = b;
    int r = strcmp(x->key, y->key);
    if (r)
        return r;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void check_dup_hosts(ctx_t *x)
{
    if (x->nhosts < 2)
        return;
    qsort(x->hosts, x->nhosts, sizeof *x->hosts, hostrec_cmp);
    for (size_t i = 1, first = 0; i < x->nhosts; i++) {
        const hostrec_t *h = &x->hosts[i], *f = &x->hosts[first];
        if (strcmp(h->key, f->key) != 0) {
            first = i;
            continue;
        }
        char p[128];
        snprintf(p, sizeof p, "tenants[%u].sites[%u].hosts[%u]", h->t, h->s, h->h);
        const char *shown = h->key[0] == '.' ? "*" : "";
        errat(x, h->line, h->col, p,
              "duplicate host \"%s%s\" in tenant \"%s\" site \"%s\": already in tenant \"%s\" "
              "site \"%s\" (tenants[%u].sites[%u].hosts[%u] at line %u, column %u)",
              shown, h->key, h->tenant, h->site, f->tenant, f->site, f->t, f->s, f->h, f->line,
              f->col);
    }
}

/* ---------------------------------------------------------------- sections */

enum {
    T_CLIENT_HEADER,
    T_CLIENT_BODY,
    T_CLIENT_SEND,
    T_KEEPALIVE,
    T_UP_CONNECT,
    T_UP_RESPONSE,
    T_UP_IDLE,
    T_REQUEST,
    T__N
};

static uint32_t *tmo_slot(gh_conf_timeouts_t *t, int i)
{
    switch (i) {
    case T_CLIENT_HEADER: return &t->client_header;
    case T_CLIENT_BODY: return &t->client_body;
    case T_CLIENT_SEND: return &t->client_send;
    case T_KEEPALIVE: return &t->keepalive;
    case T_UP_CONNECT: return &t->upstream_connect;
    case T_UP_RESPONSE: return &t->upstream_response;
    case T_UP_IDLE: return &t->upstream_idle;
    default: return &t->request;
    }
}

/* The global timeouts, or a route's overrides (setmask says which were given). */
static void parse_timeouts(ctx_t *x, yaml_node_t *n, gh_conf_timeouts_t *t, unsigned *setmask)
{
    field_t f[T__N] = {F("client_header"),     F("client_body"),       F("client_send"),
                       F("keepalive"),         F("upstream_connect"),  F("upstream_response"),
                       F("upstream_idle"),     F("request")};
    if (!fields(x, n, f, T__N))
        return;
    for (int i = 0; i < T__N; i++)
        if (f_dur(x, &f[i], i == T_REQUEST, tmo_slot(t, i)) && setmask)
            *setmask |= 1u << i;
}

static void parse_limits(ctx_t *x, yaml_node_t *n, gh_conf_limits_t *l)
{
    field_t f[] = {F("max_request_line"), F("max_header_size"), F("max_headers"), F("max_body_size")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    uint64_t v;
    if (f_size(x, &f[0], 256, 1u << 20, &v))
        l->max_request_line = (uint32_t)v;
    if (f_size(x, &f[1], 1024, 1u << 20, &v))
        l->max_header_size = (uint32_t)v;
    f_u32(x, &f[2], 1, 1000, &l->max_headers);
    f_size(x, &f[3], 0, UINT64_MAX, &l->max_body_size);
}

static void parse_access_log(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    if (is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        static const char *const words[] = {"true", "false", "on", "off", "yes", "no",
                                            "True", "False", "On", "Off", "Yes", "No",
                                            "TRUE", "FALSE", "ON", "OFF", "YES", "NO"};
        for (size_t i = 0; i < GH_ARRAY_LEN(words); i++)
            if (seq_eq(sv(n), sl(n), words[i])) {
                get_bool(x, n, &c->access_log.enabled);
                return;
            }
    }
    if (!n || n->type != YAML_MAPPING_NODE) {
        err(x, n, "expected a mapping or a boolean, got %s", kind(n));
        return;
    }
    field_t f[] = {F("enabled"), F("path"), F("max_size"), F("keep"), F("syslog")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    f_bool(x, &f[0], &c->access_log.enabled);
    f_str(x, &f[1], &c->access_log.path, NULL, false);
    f_size(x, &f[2], 4096, 1ull << 40, &c->access_log.max_size);
    f_u32(x, &f[3], 1, 100, &c->access_log.keep);
    if (f[4].val) { /* syslog: {address, facility, tag} */
        size_t o = path_key(x, "syslog");
        field_t g[] = {F("address"), F("facility"), F("tag")};
        if (f[1].val || f[2].val)
            err(x, f[4].val, "give path (a file) or syslog, not both");
        if (fields(x, f[4].val, g, GH_ARRAY_LEN(g))) {
            c->access_log.syslog = "/dev/log";
            c->access_log.facility = 16;
            c->access_log.tag = "gatehouse";
            f_str(x, &g[0], &c->access_log.syslog, NULL, false);
            if (g[0].val && c->access_log.syslog[0] != '/') {
                char host[HOST_MAX];
                uint16_t port;
                int br;
                const char *why = split_hostport(c->access_log.syslog, host, &port, &br);
                if (why) {
                    size_t o2 = path_key(x, "address");
                    err(x, g[0].val, "expected a socket path (/dev/log) or host:port (UDP): %s", why);
                    path_pop(x, o2);
                }
            }
            if (g[1].val) {
                static const char *const fac[] = {"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                                                  "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
                                                  "local0", "local1", "local2", "local3", "local4", "local5",
                                                  "local6", "local7"};
                size_t o2 = path_key(x, "facility");
                int k = -1;
                for (int i = 0; is_scalar(g[1].val) && i < (int)GH_ARRAY_LEN(fac); i++)
                    if (seq_eq(sv(g[1].val), sl(g[1].val), fac[i]))
                        k = i;
                if (k < 0)
                    err(x, g[1].val, "expected a syslog facility name (daemon, local0 .. local7, ...)");
                else
                    c->access_log.facility = (uint32_t)k;
                path_pop(x, o2);
            }
            if (f_str(x, &g[2], &c->access_log.tag, NULL, false)) {
                bool ok = strlen(c->access_log.tag) <= 48;
                for (const char *p = c->access_log.tag; *p && ok; p++)
                    ok = *p > 32 && *p < 127;
                if (!ok) {
                    size_t o2 = path_key(x, "tag");
                    err(x, g[2].val, "an APP-NAME is 1..48 visible ASCII characters");
                    path_pop(x, o2);
                }
            }
        }
        path_pop(x, o);
    }
}

static bool f_num(ctx_t *x, field_t *f, double min, double max, double *out);

/* tracing: {endpoint, protocol, ca_file, sample_ratio, service_name, respect_parent, batch}.
 * The exporter speaks HTTP/1.1, in the clear (http://) or over TLS (https://, verified against
 * ca_file or the system's CAs); protocol is the OTLP/HTTP body: http/json or http/protobuf. */
static void parse_tracing(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    size_t o = path_key(x, "tracing");
    field_t f[] = {F("endpoint"),       F("sample_ratio"), F("service_name"), F("respect_parent"),
                   F("batch"),          F("protocol"),     F("ca_file")};
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        c->tracing.enabled = 1;
        c->tracing.endpoint = "http://127.0.0.1:4318";
        c->tracing.sample_ratio = 0.01;
        c->tracing.service_name = "gatehouse";
        c->tracing.respect_parent = 1;
        c->tracing.batch = 512;
        c->tracing.protocol = 0;
        c->tracing.ca_file = NULL;
        int https = 0;
        if (f_str(x, &f[0], &c->tracing.endpoint, NULL, false)) {
            const char *e = c->tracing.endpoint;
            https = !strncmp(e, "https://", 8);
            size_t o2 = path_key(x, "endpoint");
            if (!https && strncmp(e, "http://", 7))
                err(x, f[0].val, "only http:// and https:// collector endpoints are supported (OTLP/HTTP), got %s",
                    q(x, sv(f[0].val), sl(f[0].val)));
            else if (!e[https ? 8 : 7] || e[https ? 8 : 7] == '/')
                err(x, f[0].val, "the endpoint needs a host, e.g. http://127.0.0.1:4318");
            path_pop(x, o2);
        }
        f_num(x, &f[1], 0, 1, &c->tracing.sample_ratio);
        f_str(x, &f[2], &c->tracing.service_name, NULL, false);
        f_bool(x, &f[3], &c->tracing.respect_parent);
        f_u32(x, &f[4], 1, 65536, &c->tracing.batch);
        char *proto = NULL;
        if (f_str(x, &f[5], &proto, NULL, false)) {
            size_t o2 = path_key(x, "protocol");
            if (!strcmp(proto, "http/protobuf"))
                c->tracing.protocol = 1;
            else if (strcmp(proto, "http/json"))
                err(x, f[5].val, "expected http/json or http/protobuf, got %s", q(x, sv(f[5].val), sl(f[5].val)));
            path_pop(x, o2);
        }
        if (f_str(x, &f[6], &c->tracing.ca_file, NULL, false)) {
            size_t o2 = path_key(x, "ca_file");
            if (f[0].val && !https)
                err(x, f[6].val, "a CA file is for an https:// endpoint");
            else if (access(c->tracing.ca_file, R_OK) < 0)
                err(x, f[6].val, "cannot read %s: %s", q(x, sv(f[6].val), sl(f[6].val)), strerror(errno));
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

static char *read_text(ctx_t *x, yaml_node_t *at, const char *name, size_t max, bool keep, size_t *len);
static const char *secret_file(ctx_t *x, yaml_node_t *v, size_t *len);

/* events: {nats: {url, stream, subject_prefix, spool_dir, spool_max, publish}, clickhouse: {...}} */
static bool nats_urls_ok(const char *u)
{
    for (const char *p = u; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n && *p == ' ')
            p++, n--;
        if (!((n > 7 && !strncmp(p, "nats://", 7)) || (n > 6 && !strncmp(p, "tls://", 6))))
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return *u != '\0';
}

static void parse_events(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    field_t f[] = {F("nats"), F("clickhouse")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (f[0].val) {
        size_t o = path_key(x, "nats");
        field_t g[] = {F("url"), F("stream"), F("subject_prefix"), F("spool_dir"), F("spool_max"), F("publish"),
                       F("max_age"), F("max_bytes")};
        if (fields(x, f[0].val, g, GH_ARRAY_LEN(g))) {
            c->events.nats.stream = "GATEHOUSE";
            c->events.nats.prefix = "gatehouse";
            c->events.nats.spool_dir = "gatehouse-spool";
            c->events.nats.spool_max = 1ull << 30;
            c->events.nats.kinds = 7; /* access, exposure, event */
            c->events.nats.max_age = 7u * 86400000u;
            f_dur(x, &g[6], true, &c->events.nats.max_age);
            f_size(x, &g[7], 1 << 20, 1ull << 50, &c->events.nats.max_bytes);
            if (!g[0].val)
                missing(x, f[0].val, "url");
            else if (f_str(x, &g[0], &c->events.nats.url, NULL, false) && !nats_urls_ok(c->events.nats.url)) {
                size_t o2 = path_key(x, "url");
                err(x, g[0].val, "expected nats://host:port (or tls://), several separated by commas, got %s",
                    q(x, sv(g[0].val), sl(g[0].val)));
                path_pop(x, o2);
            }
            for (int i = 1; i <= 2; i++) {
                char **dst = i == 1 ? &c->events.nats.stream : &c->events.nats.prefix;
                if (f_str(x, &g[i], dst, NULL, false)) {
                    const char *s = *dst;
                    bool ok = strlen(s) <= 64;
                    for (const char *p = s; *p && ok; p++)
                        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || (i == 2 && *p == '.' && p != s && p[1]);
                    if (!ok) {
                        size_t o2 = path_key(x, g[i].name);
                        err(x, g[i].val, "use letters, digits, '_' and '-'%s, at most 64, got %s",
                            i == 2 ? " (and '.' between tokens)" : "", q(x, s, strlen(s)));
                        path_pop(x, o2);
                    }
                }
            }
            f_str(x, &g[3], &c->events.nats.spool_dir, NULL, false);
            f_size(x, &g[4], 1 << 20, 1ull << 40, &c->events.nats.spool_max);
            if (g[5].val) {
                size_t o2 = path_key(x, "publish");
                c->events.nats.kinds = 0;
                if (want_seq(x, g[5].val, false))
                    for (size_t i = 0; i < seq_len(g[5].val); i++) {
                        yaml_node_t *v = node(x, g[5].val->data.sequence.items.start[i]);
                        size_t o3 = path_idx(x, i);
                        int k = !is_scalar(v) ? -1 : seq_eq(sv(v), sl(v), "access") ? 0
                                : seq_eq(sv(v), sl(v), "exposure") ? 1 : seq_eq(sv(v), sl(v), "event") ? 2 : -1;
                        if (k < 0)
                            err(x, v, "expected access, exposure or event, got %s",
                                is_scalar(v) ? q(x, sv(v), sl(v)) : kind(v));
                        else
                            c->events.nats.kinds |= 1u << k;
                        path_pop(x, o3);
                    }
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[1].val) {
        size_t o = path_key(x, "clickhouse");
        field_t g[] = {F("url"), F("database"), F("user"), F("password"), F("password_file"),
                       F("consumer"), F("batch"), F("flush_interval")};
        if (!f[0].val)
            err(x, f[1].val, "the ClickHouse sink reads the event stream: events.nats is needed too");
        if (fields(x, f[1].val, g, GH_ARRAY_LEN(g))) {
            c->events.clickhouse.database = "gatehouse";
            c->events.clickhouse.consumer = "gatehouse-clickhouse";
            c->events.clickhouse.batch = 10000;
            c->events.clickhouse.flush_ms = 1000;
            if (!g[0].val)
                missing(x, f[1].val, "url");
            else if (f_str(x, &g[0], &c->events.clickhouse.url, NULL, false) &&
                     strncmp(c->events.clickhouse.url, "http://", 7)) {
                size_t o2 = path_key(x, "url");
                err(x, g[0].val, "expected the HTTP interface, http://host:port, got %s", q(x, sv(g[0].val), sl(g[0].val)));
                path_pop(x, o2);
            }
            if (f_str(x, &g[1], &c->events.clickhouse.database, NULL, false)) {
                bool ok = strlen(c->events.clickhouse.database) <= 64;
                for (const char *p = c->events.clickhouse.database; *p && ok; p++)
                    ok = isalnum((unsigned char)*p) || *p == '_';
                if (!ok) {
                    size_t o2 = path_key(x, "database");
                    err(x, g[1].val, "use letters, digits and '_', at most 64");
                    path_pop(x, o2);
                }
            }
            f_str(x, &g[2], &c->events.clickhouse.user, NULL, false);
            if (g[3].val && g[4].val)
                err(x, f[1].val, "give password or password_file, not both");
            f_str(x, &g[3], &c->events.clickhouse.password, NULL, true);
            if (g[4].val && is_scalar(g[4].val)) {
                size_t o2 = path_key(x, "password_file"), pl = 0;
                const char *pw = secret_file(x, g[4].val, &pl);
                if (pw)
                    c->events.clickhouse.password = xstrndup(x, pw, pl);
                path_pop(x, o2);
            }
            f_str(x, &g[5], &c->events.clickhouse.consumer, NULL, false);
            f_u32(x, &g[6], 1, 1000000, &c->events.clickhouse.batch);
            f_dur(x, &g[7], false, &c->events.clickhouse.flush_ms);
        }
        path_pop(x, o);
    }
}

static void parse_trusted(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    if (!want_seq(x, n, false))
        return;
    size_t cnt = seq_len(n);
    c->trusted_proxies = xalloc(x, (cnt ? cnt : 1) * sizeof *c->trusted_proxies);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *v = node(x, n->data.sequence.items.start[i]);
        size_t o = path_idx(x, i);
        if (!is_scalar(v)) {
            err(x, v, "expected a CIDR or an address, got %s", kind(v));
        } else {
            char msg[96];
            const char *why = parse_cidr(sv(v), sl(v), &c->trusted_proxies[c->ntrusted_proxies], msg, sizeof msg);
            if (why)
                err(x, v, "%s: %s", why, q(x, sv(v), sl(v)));
            else
                c->ntrusted_proxies++;
        }
        path_pop(x, o);
    }
}

/* One listener mapping; role decides the default name and whether name is allowed. */
/* min_version: "1.2" | "1.3" (listeners and upstreams). */
static void f_tls_version(ctx_t *x, field_t *f, int *out)
{
    char *v = NULL;
    size_t vl = 0;
    if (!f_str(x, f, &v, &vl, false))
        return;
    size_t o = path_key(x, f->name);
    if (!strcmp(v, "1.3"))
        *out = TLS1_3_VERSION;
    else if (!strcmp(v, "1.2"))
        *out = TLS1_2_VERSION;
    else
        err(x, f->val, "min_version must be \"1.2\" or \"1.3\", got %s", q(x, v, vl));
    path_pop(x, o);
}

/* Load a certificate and key now, to report a bad file at its place in the YAML
 * (the server built at compile loads them again). */
static void check_cert(ctx_t *x, yaml_node_t *at, const char *cert, const char *key)
{
    gh_tls_cert_conf_t cc = {cert, key, NULL, 0};
    gh_tls_server_conf_t sc = {.certs = &cc, .ncerts = 1};
    char why[256] = "";
    gh_tls_server_t *t = gh_tls_server_new(&sc, why, sizeof why);
    if (!t) {
        size_t o = path_key(x, "cert");
        err(x, at, "%s", why);
        path_pop(x, o);
    }
    gh_tls_server_free(t);
}

/* cert: FILE, key: FILE (both or neither) in mapping n; true when both are set. */
static bool parse_cert_pair(ctx_t *x, yaml_node_t *n, field_t *cert, field_t *key, char **c_out, char **k_out)
{
    bool have_c = f_str(x, cert, c_out, NULL, false), have_k = f_str(x, key, k_out, NULL, false);
    if (have_c != have_k) {
        err(x, n, "cert and key go together: set both");
        return false;
    }
    if (have_c)
        check_cert(x, cert->val, *c_out, *k_out);
    return have_c;
}

/* tls: true | {cert, key, min_version: "1.2" | "1.3", ciphers, ciphersuites, session_tickets} */
static bool parse_listener_tls(ctx_t *x, gh_conf_listener_t *l, yaml_node_t *n)
{
    size_t o = path_key(x, "tls");
    size_t before = x->nerrs;
    l->tls.min_version = TLS1_2_VERSION;
    l->tls.session_tickets = 1;
    l->tls.alpn_h2 = l->tls.alpn_h1 = 1;
    if (is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        get_bool(x, n, &l->tls.enabled);
    } else {
        field_t f[] = {F("cert"), F("key"), F("min_version"), F("ciphers"), F("ciphersuites"), F("session_tickets"),
                       F("alpn")};
        if (fields(x, n, f, GH_ARRAY_LEN(f))) {
            l->tls.enabled = 1;
            parse_cert_pair(x, n, &f[0], &f[1], &l->tls.cert, &l->tls.key);
            f_tls_version(x, &f[2], &l->tls.min_version);
            bool c3 = f_str(x, &f[3], &l->tls.ciphers, NULL, false);
            bool c4 = f_str(x, &f[4], &l->tls.ciphersuites, NULL, false);
            if (c3 || c4) {
                char why[200];
                if (gh_tls_check_settings(l->tls.ciphers, l->tls.ciphersuites, why, sizeof why) < 0) {
                    int suites = strncmp(why, "ciphers ", 8) != 0;
                    size_t o2 = path_key(x, suites ? "ciphersuites" : "ciphers");
                    err(x, suites ? (f[4].val ? f[4].val : n) : (f[3].val ? f[3].val : n), "%s", why);
                    path_pop(x, o2);
                }
            }
            f_bool(x, &f[5], &l->tls.session_tickets);
            if (f[6].val) {
                size_t o2 = path_key(x, "alpn");
                if (want_seq(x, f[6].val, true)) {
                    l->tls.alpn_h2 = l->tls.alpn_h1 = 0;
                    for (size_t i = 0; i < seq_len(f[6].val); i++) {
                        yaml_node_t *it = node(x, f[6].val->data.sequence.items.start[i]);
                        size_t o3 = path_idx(x, i);
                        if (is_scalar(it) && seq_eq(sv(it), sl(it), "h2"))
                            l->tls.alpn_h2 = 1;
                        else if (is_scalar(it) && seq_eq(sv(it), sl(it), "http/1.1"))
                            l->tls.alpn_h1 = 1;
                        else
                            err(x, it, "unknown ALPN protocol %s (h2 or http/1.1)",
                                is_scalar(it) ? q(x, sv(it), sl(it)) : kind(it));
                        path_pop(x, o3);
                    }
                }
                path_pop(x, o2);
            }
        }
    }
    path_pop(x, o);
    return x->nerrs == before;
}

/* The operator key of the admin API: GATEHOUSE_ADMIN_KEY from the environment, else the first
 * line of admin.key_file. Kept out of logs and errors (only its length is ever shown). */
static bool admin_key(ctx_t *x, yaml_node_t *file_node)
{
    gh_conf_t *c = x->c;
    const char *env = getenv("GATEHOUSE_ADMIN_KEY");
    char buf[512];
    const char *key = NULL;
    if (env && *env) {
        key = env;
    } else if (file_node) {
        size_t o = path_key(x, "key_file");
        char *path = NULL;
        if (get_str(x, file_node, &path, NULL, false, false)) {
            FILE *fp = fopen(path, "r");
            if (!fp || !fgets(buf, sizeof buf, fp)) {
                err(x, file_node, "cannot read the admin key from %s: %s", q(x, path, strlen(path)),
                    fp ? "empty" : strerror(errno));
            } else {
                buf[strcspn(buf, "\r\n")] = 0;
                key = buf;
            }
            if (fp)
                fclose(fp);
        }
        path_pop(x, o);
        if (!key)
            return false;
    }
    if (!key)
        return true;
    if (strlen(key) < 16) {
        err(x, file_node, "the admin key (%s) must have at least 16 characters", env && *env ? "GATEHOUSE_ADMIN_KEY" : "key_file");
        return false;
    }
    c->admin_key = xstrndup(x, key, strlen(key));
    return true;
}

static bool f_rate(ctx_t *x, field_t *f, uint32_t *quota, uint32_t *period);

static void parse_listener(ctx_t *x, yaml_node_t *n, int role, size_t idx)
{
    gh_conf_t *c = x->c;
    gh_conf_listener_t *l = &c->listeners[c->nlisteners];
    memset(l, 0, sizeof *l); /* the slot of a listener that failed before may be reused */
    field_t f[] = {F("listen"), F("backlog"), F("name"), F("tls"), F("h2c"), F("keepalive"), F("h2c")};
    /* tls, h2c: proxy, OFREP and flagd gRPC; keepalive: flagd gRPC; the admin listener: f[6] h2c */
    size_t nf = role == GH_LISTEN_GRPC ? 6 : role == GH_LISTEN_PROXY || role == GH_LISTEN_OFREP ? 5 : 2;
    if (role == GH_LISTEN_ADMIN) { /* the admin listener: its operator key, store and rate instead */
        f[2] = (field_t)F("key_file");
        f[3] = (field_t)F("store");
        f[4] = (field_t)F("rate_limit");
        f[5] = (field_t)F("burst");
        nf = 7;
    }
    if (!fields(x, n, f, nf))
        return;
    bool ok = true;
    l->role = role;
    l->backlog = 4096;
    if (role == GH_LISTEN_ADMIN)
        l->name = "admin";
    else if (role == GH_LISTEN_DEMO)
        l->name = "demo";
    else if (role == GH_LISTEN_OFREP)
        l->name = "ofrep";
    else if (role == GH_LISTEN_GRPC)
        l->name = "flagd_grpc";
    else if (!f_name(x, &f[2], &l->name)) {
        if (f[2].val)
            ok = false;
        else {
            char nm[32];
            snprintf(nm, sizeof nm, "listener%zu", idx);
            l->name = xstrndup(x, nm, strlen(nm));
        }
    }
    if (f[1].val && !f_u32(x, &f[1], 1, 65535, &l->backlog))
        ok = false;
    if (role == GH_LISTEN_ADMIN) {
        if (!admin_key(x, f[2].val))
            ok = false;
        size_t o = path_key(x, "store");
        if (f[3].val && !get_str(x, f[3].val, &c->admin.store, NULL, false, false))
            ok = false;
        path_pop(x, o);
        c->admin.rate_quota = 100, c->admin.rate_period = 1, c->admin.burst = 200;
        if (f[4].val && !f_rate(x, &f[4], &c->admin.rate_quota, &c->admin.rate_period))
            ok = false;
        if (f[5].val && !f_u32(x, &f[5], 1, 1000000, &c->admin.burst))
            ok = false;
        l->h2c = 1; /* the gRPC admin API: HTTP/2 with prior knowledge beside HTTP/1.1 */
        if (f[6].val && !f_bool(x, &f[6], &l->h2c))
            ok = false;
    } else {
        if (nf > 3 && f[3].val && !parse_listener_tls(x, l, f[3].val))
            ok = false;
        if (role == GH_LISTEN_GRPC)
            l->h2c = 1; /* gRPC clients speak HTTP/2 with prior knowledge over cleartext */
        if (nf > 4 && f[4].val && !f_bool(x, &f[4], &l->h2c))
            ok = false;
        if (nf > 5 && f[5].val && !f_dur(x, &f[5], false, &c->flagd_grpc_keepalive))
            ok = false;
    }
    if (!f[0].val) {
        missing(x, n, "listen");
        return;
    }
    size_t o = path_key(x, "listen");
    if (get_str(x, f[0].val, &l->listen, NULL, false, false)) {
        const char *why = parse_addr(l->listen, &l->addr, &l->addrlen);
        if (why) {
            err(x, f[0].val, "bad address %s: %s", q(x, l->listen, strlen(l->listen)), why);
            ok = false;
        }
    } else {
        ok = false;
    }
    if (ok && role == GH_LISTEN_ADMIN && !c->admin_key) { /* no key: loopback only */
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&l->addr;
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&l->addr;
        int loop = l->addr.ss_family == AF_INET ? (ntohl(v4->sin_addr.s_addr) >> 24) == 127
                                                : IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
        if (!loop) {
            err(x, f[0].val, "an admin listener on a non-loopback address needs an operator key "
                             "(GATEHOUSE_ADMIN_KEY or admin.key_file)");
            ok = false;
        }
    }
    if (ok) {
        x->lnodes[c->nlisteners] = f[0].val;
        x->lpaths[c->nlisteners] = tstrdup(x, x->path);
        c->nlisteners++;
    }
    path_pop(x, o);
}

static void check_listeners(ctx_t *x)
{
    gh_conf_t *c = x->c;
    for (uint32_t i = 1; i < c->nlisteners; i++) {
        for (uint32_t j = 0; j < i; j++) {
            gh_conf_listener_t *a = &c->listeners[j], *b = &c->listeners[i];
            yaml_node_t *bn = x->lnodes[i], *an = x->lnodes[j];
            if (addr_conflict(&a->addr, &b->addr)) {
                errat(x, (uint32_t)bn->start_mark.line + 1, (uint32_t)bn->start_mark.column + 1,
                      x->lpaths[i],
                      "listen address \"%s\" conflicts with listener \"%s\" (\"%s\", %s at line %u, column %u)",
                      b->listen, a->name, a->listen, x->lpaths[j], (unsigned)an->start_mark.line + 1,
                      (unsigned)an->start_mark.column + 1);
                break;
            }
            if (strcmp(a->name, b->name) == 0) {
                errat(x, (uint32_t)bn->start_mark.line + 1, (uint32_t)bn->start_mark.column + 1,
                      x->lpaths[i], "listener name \"%s\" is used twice (also %s)", b->name,
                      x->lpaths[j]);
                break;
            }
        }
    }
}

/* The resolver is set up by the first upstream that needs it. */
static bool dns_ready(ctx_t *x, yaml_node_t *at)
{
    if (x->dns_state == 0) {
        const gh_conf_t *c = x->c;
        gh_dns_conf_t dc = {c->resolver.nameservers, c->resolver.timeout, c->resolver.min_ttl, c->resolver.max_ttl};
        char why[160];
        if (gh_dns_configure(&dc, why, sizeof why) < 0) {
            err(x, x->resolver_node ? x->resolver_node : at, "resolver: %s", why);
            x->dns_state = -1;
        } else {
            x->dns_state = 1;
        }
    }
    return x->dns_state > 0;
}

/* discovery: dns: b->name is "host:port"; every address of host becomes a backend
 * named "ADDR:port", from b on (b holds the weight). A name that resolves to no
 * address, or whose resolution fails now, leaves no backend: the refresher keeps
 * asking, and a later answer rebuilds the configuration. */
static void dns_backend(ctx_t *x, yaml_node_t *addr, gh_conf_upstream_t *u, gh_conf_backend_t *b)
{
    char host[HOST_MAX];
    uint16_t port;
    int bracket;
    const char *why = split_hostport(b->name, host, &port, &bracket);
    if (!why && !host[0])
        why = "a host name is required";
    if (why) {
        err(x, addr, "bad address %s: %s", q(x, b->name, strlen(b->name)), why);
        return;
    }
    x->c->uses_dns = 1;
    if (!dns_ready(x, addr))
        return;
    gh_dns_addr_t found[GH_DNS_MAX_ADDRS];
    char e[160] = "";
    int n = gh_dns_lookup(host, u->dns_family, x->c->dns_gen, found, GH_DNS_MAX_ADDRS, e, sizeof e);
    if (n < 0) {
        gh_log(GH_LOG_WARN, "%s: upstream %s: cannot resolve %s now (%s); retrying in the background", x->file,
               u->name, host, e);
        return;
    }
    if (n == 0)
        gh_log(GH_LOG_WARN, "%s: upstream %s: %s has no address now; following it in the background", x->file,
               u->name, host);
    char *from = b->name;
    uint32_t weight = b->weight;
    for (int i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN], name[INET6_ADDRSTRLEN + 10];
        gh_conf_backend_t *d = &u->backends[u->nbackends];
        memset(d, 0, sizeof *d);
        d->addr = found[i].addr;
        d->addrlen = found[i].len;
        if (d->addr.ss_family == AF_INET) {
            ((struct sockaddr_in *)&d->addr)->sin_port = htons(port);
            inet_ntop(AF_INET, &((struct sockaddr_in *)&d->addr)->sin_addr, ip, sizeof ip);
            snprintf(name, sizeof name, "%s:%u", ip, port);
        } else {
            ((struct sockaddr_in6 *)&d->addr)->sin6_port = htons(port);
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&d->addr)->sin6_addr, ip, sizeof ip);
            snprintf(name, sizeof name, "[%s]:%u", ip, port);
        }
        bool dup = false; /* two names with one address: one backend */
        for (uint32_t k = 0; k < u->nbackends && !dup; k++)
            dup = !strcmp(u->backends[k].name, name);
        if (dup)
            continue;
        d->name = xstrndup(x, name, strlen(name));
        d->weight = weight;
        d->dns_name = from;
        u->nbackends++;
    }
}

static void parse_backend(ctx_t *x, yaml_node_t *n, gh_conf_upstream_t *u)
{
    gh_conf_backend_t *b = &u->backends[u->nbackends];
    yaml_node_t *addr = n;
    memset(b, 0, sizeof *b); /* a slot a failed entry used may be reused */
    b->weight = 1;
    size_t o = x->plen;
    if (n && n->type == YAML_MAPPING_NODE) {
        field_t f[] = {F("address"), F("weight")};
        if (!fields(x, n, f, GH_ARRAY_LEN(f)))
            return;
        if (f[1].val && !f_u32(x, &f[1], 1, 10000, &b->weight))
            return;
        if (!f[0].val) {
            missing(x, n, "address");
            return;
        }
        addr = f[0].val;
        path_key(x, "address");
    } else if (!is_scalar(n)) {
        err(x, n, "expected an address (host:port) or a mapping, got %s", kind(n));
        return;
    }
    if (get_str(x, addr, &b->name, NULL, false, false)) {
        if (u->discovery == GH_DISCOVERY_DNS) {
            dns_backend(x, addr, u, b);
            path_pop(x, o);
            return;
        }
        const char *why = parse_addr(b->name, &b->addr, &b->addrlen);
        if (why)
            err(x, addr, "bad address %s: %s", q(x, b->name, strlen(b->name)), why);
        else
            u->nbackends++;
    }
    path_pop(x, o);
}

static bool is_token(const char *s, size_t n);

/* balance: round_robin | least_request | peak_ewma | hash;
 * hash_key: client_ip | path | header:NAME | cookie:NAME (hash only, default client_ip). */
static void parse_balance(ctx_t *x, gh_conf_upstream_t *u, field_t *bal, field_t *key)
{
    static const char *const names[] = {"round_robin", "least_request", "peak_ewma", "hash"};
    char *v = NULL;
    size_t n = 0;
    u->balance = GH_BALANCE_ROUND_ROBIN;
    u->hash_source = GH_HASH_CLIENT_IP;
    if (f_str(x, bal, &v, &n, false)) {
        int found = -1;
        for (int i = 0; i < (int)GH_ARRAY_LEN(names); i++)
            if (!strcmp(v, names[i]))
                found = i;
        if (found < 0) {
            size_t o = path_key(x, "balance");
            err(x, bal->val, "unknown balance policy %s (round_robin, least_request, peak_ewma or hash)",
                q(x, v, n));
            path_pop(x, o);
        } else {
            u->balance = found;
        }
    }
    if (!key->val)
        return;
    size_t o = path_key(x, "hash_key");
    if (u->balance != GH_BALANCE_HASH) {
        err(x, key->val, "hash_key needs balance: hash");
    } else if (get_str(x, key->val, &v, &n, false, false)) {
        if (!strcmp(v, "client_ip")) {
            u->hash_source = GH_HASH_CLIENT_IP;
        } else if (!strcmp(v, "path")) {
            u->hash_source = GH_HASH_PATH;
        } else if ((!strncmp(v, "header:", 7) || !strncmp(v, "cookie:", 7)) && is_token(v + 7, n - 7)) {
            u->hash_source = v[0] == 'h' ? GH_HASH_HEADER : GH_HASH_COOKIE;
            u->hash_name = v + 7;
            u->hash_name_len = n - 7;
        } else {
            err(x, key->val, "hash_key must be client_ip, path, header:NAME or cookie:NAME, got %s",
                q(x, v, n));
        }
    }
    path_pop(x, o);
}

/* health_check: {path, interval, timeout, rise, fall, expect_status: "200-399" | 200} */
static void parse_health(ctx_t *x, gh_conf_upstream_t *u, yaml_node_t *n)
{
    size_t o = path_key(x, "health_check");
    field_t f[] = {F("path"), F("interval"), F("timeout"), F("rise"), F("fall"), F("expect_status")};
    u->health.enabled = 1;
    u->health.path = "/";
    u->health.interval = 5000;
    u->health.timeout = 2000;
    u->health.rise = 2;
    u->health.fall = 3;
    u->health.status_min = 200;
    u->health.status_max = 399;
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        char *v = NULL;
        size_t len = 0;
        if (f_str(x, &f[0], &v, &len, false)) {
            int bad = v[0] != '/';
            for (size_t i = 0; i < len; i++)
                bad |= (unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f;
            if (bad) {
                size_t o2 = path_key(x, "path");
                err(x, f[0].val, "path must start with / and hold visible ASCII only");
                path_pop(x, o2);
            } else {
                u->health.path = v;
            }
        }
        f_dur(x, &f[1], false, &u->health.interval);
        f_dur(x, &f[2], false, &u->health.timeout);
        f_u32(x, &f[3], 1, 100, &u->health.rise);
        f_u32(x, &f[4], 1, 100, &u->health.fall);
        if (f_str(x, &f[5], &v, &len, false)) {
            unsigned lo = 0, hi = 0;
            int k = 0, cnt = sscanf(v, "%3u-%3u%n", &lo, &hi, &k);
            if (cnt == 1) {
                k = 0;
                sscanf(v, "%3u%n", &lo, &k);
                hi = lo;
            }
            size_t o2 = path_key(x, "expect_status");
            if (cnt < 1 || (size_t)k != len || lo < 100 || hi > 599 || lo > hi)
                err(x, f[5].val, "expect_status must be a status or a range like 200-399, got %s", q(x, v, len));
            else
                u->health.status_min = (uint16_t)lo, u->health.status_max = (uint16_t)hi;
            path_pop(x, o2);
        }
        if (u->health.timeout >= u->health.interval) {
            size_t o2 = path_key(x, "timeout");
            err(x, f[2].val ? f[2].val : n, "timeout must be shorter than interval");
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

/* tls: true | {server_name, ca, verify, cert, key, min_version}: TLS to the backends. */
static void parse_upstream_tls(ctx_t *x, gh_conf_upstream_t *u, yaml_node_t *n)
{
    size_t o = path_key(x, "tls");
    u->tls.verify = 1;
    u->tls.min_version = TLS1_2_VERSION;
    if (is_scalar(n) && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        get_bool(x, n, &u->tls.enabled);
    } else {
        field_t f[] = {F("server_name"), F("ca"), F("verify"), F("cert"), F("key"), F("min_version")};
        size_t before = x->nerrs;
        if (fields(x, n, f, GH_ARRAY_LEN(f))) {
            u->tls.enabled = 1;
            size_t vl = 0;
            if (f_str(x, &f[0], &u->tls.server_name, &vl, false)) {
                for (size_t i = 0; i < vl; i++) {
                    unsigned char ch = (unsigned char)u->tls.server_name[i];
                    if (!(ch == '.' || ch == '-' || ch == '_' || ch == ':' || (ch >= '0' && ch <= '9') ||
                          (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
                        size_t o2 = path_key(x, "server_name");
                        err(x, f[0].val, "server_name must be a host name or an IP address, got %s",
                            q(x, u->tls.server_name, vl));
                        path_pop(x, o2);
                        break;
                    }
                }
            }
            f_str(x, &f[1], &u->tls.ca, NULL, false);
            f_bool(x, &f[2], &u->tls.verify);
            bool have_c = f_str(x, &f[3], &u->tls.cert, NULL, false);
            bool have_k = f_str(x, &f[4], &u->tls.key, NULL, false);
            if (have_c != have_k)
                err(x, n, "cert and key go together: set both");
            f_tls_version(x, &f[5], &u->tls.min_version);
            if (x->nerrs == before) {
                /* load the files now, to report a bad one at its place */
                gh_tls_client_conf_t cc = {.ca_file = u->tls.ca, .insecure = !u->tls.verify,
                                           .cert_file = u->tls.cert, .key_file = u->tls.key,
                                           .min_version = u->tls.min_version};
                char why[256] = "";
                gh_tls_client_t *t = gh_tls_client_new(&cc, why, sizeof why);
                if (!t)
                    err(x, n, "%s", why);
                gh_tls_client_free(t);
            }
        }
    }
    path_pop(x, o);
}

/* The defaults of an upstream (documented in docs/configuration.md). */
static void upstream_defaults(gh_conf_upstream_t *u)
{
    u->keepalive = 128;
    u->keepalive_timeout = 60000;
    u->retry.attempts = 3;
    u->retry.on = GH_RETRY_CONNECT | GH_RETRY_RESET;
    u->retry.backoff_base = 10;
    u->retry.backoff_max = 250;
    u->retry.budget_ratio = 0.2;
    u->retry.budget_min_per_s = 10;
    u->outlier.consecutive_failures = 5;
    u->outlier.base_ejection = 30000;
    u->outlier.max_ejection = 300000;
    u->outlier.max_ejected_percent = 50;
}

/* A decimal number in [min, max] ("0.2", "10", "1.5"). */
static bool f_num(ctx_t *x, field_t *f, double min, double max, double *out)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = false;
    if (!is_scalar(f->val)) {
        err(x, f->val, "expected a number, got %s", kind(f->val));
    } else {
        char buf[32], *end = NULL;
        size_t n = sl(f->val);
        double v = 0;
        if (n && n < sizeof buf && strspn(sv(f->val), "0123456789.") == n) {
            memcpy(buf, sv(f->val), n);
            buf[n] = 0;
            v = strtod(buf, &end);
        }
        if (!end || *end || end == buf)
            err(x, f->val, "expected a number like 0.2, got %s", q(x, sv(f->val), n));
        else if (v < min || v > max)
            err(x, f->val, "%s is out of range %g..%g", q(x, sv(f->val), n), min, max);
        else
            *out = v, ok = true;
    }
    path_pop(x, o);
    return ok;
}

/* retries: {attempts, on: [connect_failure, reset, timeout, 503, ...], non_idempotent,
 *           per_try_timeout, backoff: {base, max}, budget: {ratio, min_per_second}} */
static void parse_retries(ctx_t *x, gh_conf_upstream_t *u, yaml_node_t *n)
{
    size_t o = path_key(x, "retries");
    field_t f[] = {F("attempts"), F("on"), F("non_idempotent"), F("per_try_timeout"), F("backoff"), F("budget")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f))) {
        path_pop(x, o);
        return;
    }
    f_u32(x, &f[0], 1, 10, &u->retry.attempts);
    if (f[1].val) {
        size_t o2 = path_key(x, "on");
        if (want_seq(x, f[1].val, false)) {
            u->retry.on = 0;
            for (size_t i = 0; i < seq_len(f[1].val); i++) {
                yaml_node_t *v = node(x, f[1].val->data.sequence.items.start[i]);
                size_t o3 = path_idx(x, i);
                uint64_t st = 0;
                size_t used = 0;
                if (!is_scalar(v))
                    err(x, v, "expected a retry condition, got %s", kind(v));
                else if (seq_eq(sv(v), sl(v), "connect_failure"))
                    u->retry.on |= GH_RETRY_CONNECT;
                else if (seq_eq(sv(v), sl(v), "reset"))
                    u->retry.on |= GH_RETRY_RESET;
                else if (seq_eq(sv(v), sl(v), "timeout"))
                    u->retry.on |= GH_RETRY_TIMEOUT;
                else if (parse_digits(sv(v), sl(v), &used, &st) && used == sl(v) && st >= 400 && st <= 599) {
                    if (u->retry.nstatuses == GH_ARRAY_LEN(u->retry.statuses))
                        err(x, v, "at most %zu retried statuses", GH_ARRAY_LEN(u->retry.statuses));
                    else
                        u->retry.statuses[u->retry.nstatuses++] = (uint16_t)st;
                } else
                    err(x, v, "unknown retry condition %s (connect_failure, reset, timeout or a status 400..599)",
                        q(x, sv(v), sl(v)));
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
    f_bool(x, &f[2], &u->retry.non_idempotent);
    f_dur(x, &f[3], true, &u->retry.per_try_timeout);
    if (f[4].val) {
        size_t o2 = path_key(x, "backoff");
        field_t g[] = {F("base"), F("max")};
        if (fields(x, f[4].val, g, GH_ARRAY_LEN(g))) {
            f_dur(x, &g[0], true, &u->retry.backoff_base);
            f_dur(x, &g[1], true, &u->retry.backoff_max);
            if (u->retry.backoff_max < u->retry.backoff_base) {
                size_t o3 = path_key(x, "max");
                err(x, g[1].val ? g[1].val : f[4].val, "max must not be below base");
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
    if (f[5].val) {
        size_t o2 = path_key(x, "budget");
        field_t g[] = {F("ratio"), F("min_per_second")};
        if (fields(x, f[5].val, g, GH_ARRAY_LEN(g))) {
            f_num(x, &g[0], 0, 1, &u->retry.budget_ratio);
            f_num(x, &g[1], 0, 100000, &u->retry.budget_min_per_s);
        }
        path_pop(x, o2);
    }
    path_pop(x, o);
}

/* outlier_detection: {consecutive_failures, base_ejection, max_ejection, max_ejected_percent} */
static void parse_outlier(ctx_t *x, gh_conf_upstream_t *u, yaml_node_t *n)
{
    size_t o = path_key(x, "outlier_detection");
    field_t f[] = {F("consecutive_failures"), F("base_ejection"), F("max_ejection"), F("max_ejected_percent")};
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        f_u32(x, &f[0], 0, 1000, &u->outlier.consecutive_failures);
        f_dur(x, &f[1], false, &u->outlier.base_ejection);
        f_dur(x, &f[2], false, &u->outlier.max_ejection);
        f_u32(x, &f[3], 0, 100, &u->outlier.max_ejected_percent);
        if (u->outlier.max_ejection < u->outlier.base_ejection) {
            size_t o2 = path_key(x, "max_ejection");
            err(x, f[2].val ? f[2].val : n, "max_ejection must not be below base_ejection");
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

static void parse_upstream(ctx_t *x, yaml_node_t *n, gh_conf_upstream_t *u, up_tmo_t *t)
{
    field_t f[] = {F("backends"), F("keepalive"), F("keepalive_timeout"), F("timeouts"), F("balance"),
                   F("hash_key"), F("health_check"), F("circuit_breaker"), F("slow_start"), F("retries"),
                   F("outlier_detection"), F("discovery"), F("dns_family"), F("tls"), F("http2")};
    upstream_defaults(u);
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    char *v = NULL;
    size_t vlen = 0;
    if (f_str(x, &f[11], &v, &vlen, false)) {
        size_t o = path_key(x, "discovery");
        if (!strcmp(v, "dns"))
            u->discovery = GH_DISCOVERY_DNS;
        else if (strcmp(v, "static"))
            err(x, f[11].val, "unknown discovery %s (static or dns)", q(x, v, vlen));
        path_pop(x, o);
    }
    if (f_str(x, &f[12], &v, &vlen, false)) {
        size_t o = path_key(x, "dns_family");
        if (u->discovery != GH_DISCOVERY_DNS)
            err(x, f[12].val, "dns_family needs discovery: dns");
        else if (!strcmp(v, "ipv4"))
            u->dns_family = AF_INET;
        else if (!strcmp(v, "ipv6"))
            u->dns_family = AF_INET6;
        else if (strcmp(v, "any"))
            err(x, f[12].val, "unknown dns_family %s (any, ipv4 or ipv6)", q(x, v, vlen));
        path_pop(x, o);
    }
    if (!f[0].val) {
        missing(x, n, "backends");
    } else {
        size_t o = path_key(x, "backends");
        if (want_seq(x, f[0].val, true)) {
            size_t cnt = seq_len(f[0].val);
            /* discovery: dns: each name may bring up to GH_DNS_MAX_ADDRS backends */
            u->backends = xalloc(x, cnt * (u->discovery == GH_DISCOVERY_DNS ? GH_DNS_MAX_ADDRS : 1) *
                                        sizeof *u->backends);
            for (size_t i = 0; i < cnt; i++) {
                size_t o2 = path_idx(x, i);
                parse_backend(x, node(x, f[0].val->data.sequence.items.start[i]), u);
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    f_u32(x, &f[1], 0, 65535, &u->keepalive);
    f_dur(x, &f[2], false, &u->keepalive_timeout);
    parse_balance(x, u, &f[4], &f[5]);
    if (f[6].val)
        parse_health(x, u, f[6].val);
    f_dur(x, &f[8], true, &u->slow_start);
    if (f[13].val)
        parse_upstream_tls(x, u, f[13].val);
    f_bool(x, &f[14], &u->http2);
    if (f[9].val)
        parse_retries(x, u, f[9].val);
    if (f[10].val)
        parse_outlier(x, u, f[10].val);
    if (f[7].val) {
        size_t o = path_key(x, "circuit_breaker");
        field_t g[] = {F("max_connections"), F("max_pending"), F("max_requests")};
        if (fields(x, f[7].val, g, GH_ARRAY_LEN(g))) {
            f_u32(x, &g[0], 0, 10000000, &u->breaker.max_connections);
            f_u32(x, &g[1], 0, 10000000, &u->breaker.max_pending);
            f_u32(x, &g[2], 0, 10000000, &u->breaker.max_requests);
        }
        path_pop(x, o);
    }
    if (f[3].val) {
        size_t o = path_key(x, "timeouts");
        field_t g[] = {F("connect"), F("response"), F("idle")};
        if (fields(x, f[3].val, g, GH_ARRAY_LEN(g))) {
            if (f_dur(x, &g[0], false, &t->connect))
                t->set |= 1;
            if (f_dur(x, &g[1], false, &t->response))
                t->set |= 2;
            if (f_dur(x, &g[2], false, &t->idle))
                t->set |= 4;
        }
        path_pop(x, o);
    }
}

static void parse_upstreams(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    if (!want_map(x, n))
        return;
    size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    c->upstreams = xalloc(x, (cnt ? cnt : 1) * sizeof *c->upstreams);
    x->up_tmo = talloc(x, (cnt ? cnt : 1) * sizeof *x->up_tmo);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
        if (!is_scalar(k)) {
            err(x, k, "upstream names must be strings, got %s", kind(k));
            continue;
        }
        if (dup_key(x, n, p, k))
            continue;
        gh_conf_upstream_t *u = &c->upstreams[c->nupstreams];
        size_t o = path_key(x, sv(k));
        if (get_name(x, k, &u->name)) {
            u->index = c->nupstreams;
            parse_upstream(x, v, u, &x->up_tmo[c->nupstreams]);
            c->nupstreams++;
        }
        path_pop(x, o);
    }
}

static const char *const method_names[] = {
    [GH_M_GET] = "GET",         [GH_M_HEAD] = "HEAD",       [GH_M_POST] = "POST",
    [GH_M_PUT] = "PUT",         [GH_M_DELETE] = "DELETE",   [GH_M_CONNECT] = "CONNECT",
    [GH_M_OPTIONS] = "OPTIONS", [GH_M_TRACE] = "TRACE",     [GH_M_PATCH] = "PATCH",
};

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static gh_regex_t *compile_re(ctx_t *x, yaml_node_t *v, const char *pat, size_t len)
{
    int ec;
    PCRE2_SIZE off;
    /* link the list node first: once compiled, the code is owned by the arena */
    re_node_t *rn = xalloc(x, sizeof *rn);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, 0, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(ec, msg, sizeof msg) < 0)
            snprintf((char *)msg, sizeof msg, "error %d", ec);
        err(x, v, "bad regex %s: %s at offset %zu", q(x, pat, len), (const char *)msg, (size_t)off);
        return NULL;
    }
    rn->re = re;
    rn->next = x->a->res;
    x->a->res = rn;
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return re;
}

static void parse_path(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r)
{
    yaml_node_t *v = n;
    int kind_ = GH_MATCH_PREFIX;
    size_t o = x->plen;
    if (n && n->type == YAML_MAPPING_NODE) {
        field_t f[] = {F("exact"), F("prefix"), F("regex")};
        if (!fields(x, n, f, GH_ARRAY_LEN(f)))
            return;
        int cnt = !!f[0].val + !!f[1].val + !!f[2].val;
        if (cnt != 1) {
            err(x, n, "needs exactly one of exact, prefix or regex");
            return;
        }
        int i = f[0].val ? 0 : f[1].val ? 1 : 2;
        kind_ = i == 0 ? GH_MATCH_EXACT : i == 1 ? GH_MATCH_PREFIX : GH_MATCH_REGEX;
        v = f[i].val;
        path_key(x, f[i].name);
    } else if (!is_scalar(n)) {
        err(x, n, "expected a path prefix or a mapping (exact, prefix or regex), got %s", kind(n));
        return;
    }
    if (get_str(x, v, &r->path, &r->path_len, false, false)) {
        if (kind_ == GH_MATCH_REGEX) {
            r->path_re = compile_re(x, v, r->path, r->path_len);
            if (r->path_re)
                r->path_kind = kind_;
        } else if (r->path[0] != '/') {
            err(x, v, "a path must start with \"/\"");
        } else {
            r->path_kind = kind_;
        }
    }
    path_pop(x, o);
}

static void parse_methods(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r)
{
    if (!want_seq(x, n, true))
        return;
    for (size_t i = 0; i < seq_len(n); i++) {
        yaml_node_t *v = node(x, n->data.sequence.items.start[i]);
        size_t o = path_idx(x, i);
        if (!is_scalar(v)) {
            err(x, v, "expected a method name, got %s", kind(v));
        } else if (!is_token(sv(v), sl(v))) {
            err(x, v, "bad method name %s", q(x, sv(v), sl(v)));
        } else {
            int id = GH_M_OTHER;
            for (int m = 1; m < (int)GH_ARRAY_LEN(method_names); m++) {
                if (seq_eq(sv(v), sl(v), method_names[m]))
                    id = m;
                else if (sl(v) == strlen(method_names[m]) &&
                         strncasecmp(sv(v), method_names[m], sl(v)) == 0) {
                    err(x, v, "method names are case-sensitive: %s is not %s", q(x, sv(v), sl(v)),
                        method_names[m]);
                    id = -1;
                }
            }
            if (id >= 0)
                r->methods |= 1u << id;
        }
        path_pop(x, o);
    }
}

static void parse_header_match(ctx_t *x, yaml_node_t *n, gh_conf_header_match_t *arr, uint32_t *narr)
{
    gh_conf_header_match_t *h = &arr[*narr];
    field_t f[] = {F("name"), F("exact"), F("regex"), F("present")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    bool ok = true;
    if (!f[0].val) {
        missing(x, n, "name");
        ok = false;
    } else if (f_str(x, &f[0], &h->name, &h->name_len, false)) {
        if (!is_token(h->name, h->name_len)) {
            size_t o = path_key(x, "name");
            err(x, f[0].val, "bad header name %s", q(x, h->name, h->name_len));
            path_pop(x, o);
            ok = false;
        }
    } else {
        ok = false;
    }
    int cnt = !!f[1].val + !!f[2].val + !!f[3].val;
    if (cnt != 1) {
        err(x, n, "needs exactly one of exact, regex or present");
        return;
    }
    if (f[1].val) {
        h->kind = GH_MATCH_EXACT;
        ok &= f_str(x, &f[1], &h->value, &h->value_len, true);
    } else if (f[2].val) {
        h->kind = GH_MATCH_REGEX;
        if (f_str(x, &f[2], &h->value, &h->value_len, false)) {
            size_t o = path_key(x, "regex");
            h->re = compile_re(x, f[2].val, h->value, h->value_len);
            ok &= h->re != NULL;
            path_pop(x, o);
        } else {
            ok = false;
        }
    } else {
        int b = 0;
        h->kind = GH_MATCH_PRESENT;
        if (f_bool(x, &f[3], &b) && !b) {
            size_t o = path_key(x, "present");
            err(x, f[3].val, "only \"present: true\" is supported");
            path_pop(x, o);
            ok = false;
        } else if (!b) {
            ok = false;
        }
    }
    if (ok)
        (*narr)++;
}

static void parse_match(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r)
{
    field_t f[] = {F("path"), F("methods"), F("headers"), F("tls_fingerprints")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (f[0].val) {
        size_t o = path_key(x, "path");
        parse_path(x, f[0].val, r);
        path_pop(x, o);
    }
    if (f[3].val) {
        size_t o = path_key(x, "tls_fingerprints");
        if (want_seq(x, f[3].val, true)) {
            size_t cnt = seq_len(f[3].val);
            r->ja4 = xalloc(x, cnt * sizeof *r->ja4);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *v = node(x, f[3].val->data.sequence.items.start[i]);
                size_t o2 = path_idx(x, i);
                char *fp = NULL;
                size_t len = 0;
                if (get_str(x, v, &fp, &len, false, false)) {
                    /* JA4: a_b_c, 10 + 12 + 12 characters and two underscores; "prefix*" matches a family */
                    bool star = fp[len - 1] == '*', bad = len > 36 || (!star && len != 36);
                    for (size_t k = 0; k < len - star && !bad; k++)
                        bad = !(fp[k] == '_' || (fp[k] >= '0' && fp[k] <= '9') || (fp[k] >= 'a' && fp[k] <= 'z'));
                    if (bad)
                        err(x, v, "expected a JA4 fingerprint like t13d1516h2_8daaf6152771_e5627efa2ab1 (or a prefix "
                                  "ending in *), got %s", q(x, fp, len));
                    else
                        r->ja4[r->nja4++] = fp;
                }
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[1].val) {
        size_t o = path_key(x, "methods");
        parse_methods(x, f[1].val, r);
        path_pop(x, o);
    }
    if (f[2].val) {
        size_t o = path_key(x, "headers");
        if (want_seq(x, f[2].val, false)) {
            size_t cnt = seq_len(f[2].val);
            r->headers = xalloc(x, (cnt ? cnt : 1) * sizeof *r->headers);
            for (size_t i = 0; i < cnt; i++) {
                size_t o2 = path_idx(x, i);
                parse_header_match(x, node(x, f[2].val->data.sequence.items.start[i]), r->headers, &r->nheaders);
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
}

static bool valid_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* A mapping of header fields (name -> value) to send, in the order written. */
static void parse_header_map(ctx_t *x, yaml_node_t *h, gh_conf_kv_t **out, uint32_t *nout)
{
    if (!want_map(x, h))
        return;
    size_t cnt = (size_t)(h->data.mapping.pairs.top - h->data.mapping.pairs.start);
    *out = xalloc(x, (cnt ? cnt : 1) * sizeof **out);
    for (yaml_node_pair_t *p = h->data.mapping.pairs.start; p < h->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
        if (!is_scalar(k)) {
            err(x, k, "header names must be strings, got %s", kind(k));
            continue;
        }
        if (dup_key(x, h, p, k))
            continue;
        if (!is_token(sv(k), sl(k))) {
            err_key(x, k, q(x, sv(k), sl(k)), "bad header name");
            continue;
        }
        if (gh_str_caseeq_lit(gh_str(sv(k), sl(k)), "content-length") ||
            gh_str_caseeq_lit(gh_str(sv(k), sl(k)), "transfer-encoding")) {
            err_key(x, k, sv(k), "is set by gatehouse and cannot be configured");
            continue;
        }
        gh_conf_kv_t *kv = &(*out)[*nout];
        size_t o2 = path_key(x, sv(k));
        if (is_scalar(v) && !valid_field_value(sv(v), sl(v))) {
            err(x, v, "header value must not contain control characters");
        } else if (get_str(x, v, &kv->value, &kv->value_len, true, false)) {
            kv->name = xstrndup(x, sv(k), sl(k));
            kv->name_len = sl(k);
            (*nout)++;
        }
        path_pop(x, o2);
    }
}

static void parse_respond(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r)
{
    field_t f[] = {F("status"), F("body"), F("headers")};
    r->has_respond = 1;
    r->respond.status = 200;
    r->respond.body = "";
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    uint32_t st;
    if (f_u32(x, &f[0], 200, 599, &st))
        r->respond.status = (int)st;
    if (f[1].val) {
        size_t o = path_key(x, "body");
        get_str(x, f[1].val, &r->respond.body, &r->respond.body_len, true, true);
        path_pop(x, o);
    }
    if (f[2].val) {
        size_t o = path_key(x, "headers");
        parse_header_map(x, f[2].val, &r->respond.headers, &r->respond.nheaders);
        path_pop(x, o);
    }
}

static void merge_timeouts(gh_conf_timeouts_t *t, const gh_conf_timeouts_t *global,
                           const up_tmo_t *up, const gh_conf_timeouts_t *own, unsigned ownset)
{
    *t = *global;
    if (up) {
        if (up->set & 1)
            t->upstream_connect = up->connect;
        if (up->set & 2)
            t->upstream_response = up->response;
        if (up->set & 4)
            t->upstream_idle = up->idle;
    }
    for (int i = 0; i < T__N; i++)
        if (ownset & (1u << i))
            *tmo_slot(t, i) = *tmo_slot((gh_conf_timeouts_t *)own, i);
}

/* ---------------------------------------------------------------- protection */

static uint64_t tag_mix(uint64_t h, const char *s);

/* "100/s", "600/m", "1000/h", "50000/d" */
static bool f_rate(ctx_t *x, field_t *f, uint32_t *quota, uint32_t *period)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = false;
    if (!is_scalar(f->val)) {
        err(x, f->val, "expected a rate like 100/s, got %s", kind(f->val));
    } else {
        const char *s = sv(f->val);
        size_t n = sl(f->val), used = 0;
        uint64_t v = 0;
        if (parse_digits(s, n, &used, &v) && used < n && s[used] == '/' && v >= 1 && v <= 100000000) {
            const char *u = s + used + 1;
            size_t un = n - used - 1;
            uint32_t per = seq_eq(u, un, "s") ? 1 : seq_eq(u, un, "m") ? 60 : seq_eq(u, un, "h") ? 3600
                         : seq_eq(u, un, "d") ? 86400 : 0;
            if (per) {
                *quota = (uint32_t)v;
                *period = per;
                ok = true;
            }
        }
        if (!ok)
            err(x, f->val, "expected a rate like 100/s, 600/m, 1000/h or 50000/d (1..100000000 per unit), got %s",
                q(x, s, n));
    }
    path_pop(x, o);
    return ok;
}

/* A rate limit's key part: ip | ip_prefix[:V4/V6] | tenant | route | ja4 | header:NAME | cookie:NAME |
 * query:NAME */
static bool parse_rl_key(ctx_t *x, yaml_node_t *v, gh_conf_rlkey_t *k)
{
    if (!is_scalar(v)) {
        err(x, v, "expected a key part such as ip or header:X-Api-Key, got %s", kind(v));
        return false;
    }
    const char *s = sv(v);
    size_t n = sl(v);
    const char *colon = memchr(s, ':', n);
    size_t head = colon ? (size_t)(colon - s) : n;
    const char *arg = colon ? colon + 1 : NULL;
    size_t alen = colon ? n - head - 1 : 0;
    memset(k, 0, sizeof *k);
    if (!colon && seq_eq(s, n, "ip"))
        k->kind = GH_RLK_IP;
    else if (!colon && seq_eq(s, n, "tenant"))
        k->kind = GH_RLK_TENANT;
    else if (!colon && seq_eq(s, n, "route"))
        k->kind = GH_RLK_ROUTE;
    else if (!colon && seq_eq(s, n, "ja4"))
        k->kind = GH_RLK_JA4;
    else if (seq_eq(s, head, "ip_prefix")) {
        k->kind = GH_RLK_PREFIX;
        k->prefix4 = 24;
        k->prefix6 = 64;
        if (colon) {
            uint64_t a = 0, b = 0;
            size_t u1 = 0, u2 = 0;
            if (!parse_digits(arg, alen, &u1, &a) || u1 >= alen || arg[u1] != '/' ||
                !parse_digits(arg + u1 + 1, alen - u1 - 1, &u2, &b) || u1 + 1 + u2 != alen || a < 1 || a > 32 ||
                b < 1 || b > 128) {
                err(x, v, "expected ip_prefix or ip_prefix:V4/V6 such as ip_prefix:16/48 (1..32 / 1..128), got %s",
                    q(x, s, n));
                return false;
            }
            k->prefix4 = (uint8_t)a;
            k->prefix6 = (uint8_t)b;
        }
    } else if (colon && (seq_eq(s, head, "header") || seq_eq(s, head, "cookie") || seq_eq(s, head, "query"))) {
        k->kind = s[0] == 'h' ? GH_RLK_HEADER : s[0] == 'c' ? GH_RLK_COOKIE : GH_RLK_QUERY;
        bool good = alen > 0 && alen <= 128 && (k->kind == GH_RLK_QUERY ? printable(arg, alen) : is_token(arg, alen));
        for (size_t i = 0; good && k->kind == GH_RLK_QUERY && i < alen; i++)
            good = arg[i] != '&' && arg[i] != '=' && arg[i] != '#';
        if (!good) {
            err(x, v, "bad name in %s: a %s", q(x, s, n),
                k->kind == GH_RLK_QUERY ? "query parameter name (no &, = or #)" : "token (RFC 9110)");
            return false;
        }
        k->name = xstrndup(x, arg, alen);
        k->name_len = alen;
        if (k->kind == GH_RLK_HEADER)
            for (size_t i = 0; i < alen; i++)
                k->name[i] = (char)tolower((unsigned char)k->name[i]);
    } else {
        err(x, v, "unknown key part %s (ip, ip_prefix, tenant, route, ja4, header:NAME, cookie:NAME, query:NAME)",
            q(x, s, n));
        return false;
    }
    return true;
}

static void parse_rate_limit(ctx_t *x, yaml_node_t *n, gh_conf_ratelimit_t *rl, const char *where, size_t idx)
{
    field_t f[] = {F("name"), F("key"), F("rate"), F("burst"), F("action"), F("max_delay"), F("scope")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (!f_name(x, &f[0], &rl->name)) {
        char nm[32];
        snprintf(nm, sizeof nm, "limit%zu", idx);
        rl->name = xstrndup(x, nm, strlen(nm));
    }
    rl->where = xstrndup(x, where, strlen(where));
    if (f[1].val) {
        size_t o = path_key(x, "key");
        if (is_scalar(f[1].val)) {
            if (parse_rl_key(x, f[1].val, &rl->keys[0]))
                rl->nkeys = 1;
        } else if (want_seq(x, f[1].val, true)) {
            size_t cnt = seq_len(f[1].val);
            if (cnt > GH_RL_MAX_KEYS)
                err(x, f[1].val, "at most %d key parts", GH_RL_MAX_KEYS);
            for (size_t i = 0; i < cnt && i < GH_RL_MAX_KEYS; i++) {
                size_t o2 = path_idx(x, i);
                if (parse_rl_key(x, node(x, f[1].val->data.sequence.items.start[i]), &rl->keys[rl->nkeys]))
                    rl->nkeys++;
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    } else {
        rl->keys[0].kind = GH_RLK_IP;
        rl->nkeys = 1;
    }
    if (!f[2].val)
        missing(x, n, "rate");
    f_rate(x, &f[2], &rl->quota, &rl->period_s);
    rl->burst = rl->quota;
    f_u32(x, &f[3], 0, 100000000, &rl->burst);
    rl->action = GH_RLA_REJECT;
    if (f[4].val) {
        size_t o = path_key(x, "action");
        yaml_node_t *v = f[4].val;
        if (is_scalar(v) && seq_eq(sv(v), sl(v), "reject"))
            rl->action = GH_RLA_REJECT;
        else if (is_scalar(v) && seq_eq(sv(v), sl(v), "delay"))
            rl->action = GH_RLA_DELAY;
        else if (is_scalar(v) && seq_eq(sv(v), sl(v), "shadow"))
            rl->action = GH_RLA_SHADOW;
        else
            err(x, v, "expected reject, delay or shadow");
        path_pop(x, o);
    }
    rl->max_delay = 1000;
    if (f_dur(x, &f[5], false, &rl->max_delay) && rl->action != GH_RLA_DELAY) {
        size_t o = path_key(x, "max_delay");
        err(x, f[5].val, "max_delay applies to action: delay only");
        path_pop(x, o);
    } else if (rl->max_delay > 60000) {
        size_t o = path_key(x, "max_delay");
        err(x, f[5].val, "max_delay is at most 60s (a delayed request holds its connection)");
        path_pop(x, o);
    }
    if (f[6].val) {
        size_t o = path_key(x, "scope");
        yaml_node_t *v = f[6].val;
        if (is_scalar(v) && seq_eq(sv(v), sl(v), "local"))
            rl->global = 0;
        else if (is_scalar(v) && seq_eq(sv(v), sl(v), "global")) {
            rl->global = 1;
            if (!x->c->protect.redis_host)
                err(x, v, "scope: global needs protection.redis (the limit is shared through Redis)");
            if (rl->action == GH_RLA_DELAY)
                err(x, v, "a global limit cannot delay (action: reject or shadow)");
        } else
            err(x, v, "expected local or global");
        path_pop(x, o);
    }
    uint64_t h = 0xcbf29ce484222325ull;
    h = tag_mix(h, rl->where);
    h = tag_mix(h, rl->name);
    rl->id = h;
}

static uint32_t find_list(ctx_t *x, const char *name, size_t n)
{
    for (uint32_t i = 0; i < x->c->protect.nlists; i++)
        if (seq_eq(name, n, x->c->protect.lists[i].name))
            return i;
    return UINT32_MAX;
}

/* allow: / deny: entries, CIDRs, addresses or list:NAME, into acl. */
static void parse_acl(ctx_t *x, yaml_node_t *n, gh_conf_acl_t *acl, uint8_t tag, const char *k)
{
    size_t o = path_key(x, k);
    if (want_seq(x, n, false)) {
        size_t cnt = seq_len(n);
        gh_cidr_t *nc = xalloc(x, (acl->ncidrs + cnt + 1) * sizeof *nc);
        uint8_t *nt = xalloc(x, acl->ncidrs + cnt + 1);
        uint32_t *nl = xalloc(x, (acl->nlists + cnt + 1) * sizeof *nl);
        uint8_t *nlt = xalloc(x, acl->nlists + cnt + 1);
        if (acl->ncidrs) {
            memcpy(nc, acl->cidrs, acl->ncidrs * sizeof *nc);
            memcpy(nt, acl->tags, acl->ncidrs);
        }
        if (acl->nlists) {
            memcpy(nl, acl->list_idx, acl->nlists * sizeof *nl);
            memcpy(nlt, acl->list_tags, acl->nlists);
        }
        acl->cidrs = nc, acl->tags = nt, acl->list_idx = nl, acl->list_tags = nlt;
        for (size_t i = 0; i < cnt; i++) {
            yaml_node_t *v = node(x, n->data.sequence.items.start[i]);
            size_t o2 = path_idx(x, i);
            if (!is_scalar(v)) {
                err(x, v, "expected a CIDR, an address or list:NAME, got %s", kind(v));
            } else if (sl(v) > 5 && !memcmp(sv(v), "list:", 5)) {
                uint32_t li = find_list(x, sv(v) + 5, sl(v) - 5);
                if (li == UINT32_MAX)
                    err(x, v, "unknown list %s (declare it under protection.ip_lists)", q(x, sv(v) + 5, sl(v) - 5));
                else {
                    acl->list_idx[acl->nlists] = li;
                    acl->list_tags[acl->nlists++] = tag;
                }
            } else {
                char msg[96];
                const char *why = parse_cidr(sv(v), sl(v), &acl->cidrs[acl->ncidrs], msg, sizeof msg);
                if (why)
                    err(x, v, "%s: %s", why, q(x, sv(v), sl(v)));
                else
                    acl->tags[acl->ncidrs++] = tag;
            }
            path_pop(x, o2);
        }
        if (tag == GH_ACL_ALLOW)
            acl->has_allow = 1;
    }
    path_pop(x, o);
}

static void parse_countries(ctx_t *x, yaml_node_t *n, gh_conf_acl_t *acl)
{
    size_t o = path_key(x, "countries");
    field_t f[] = {F("allow"), F("deny")};
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        if (!x->c->protect.geoip)
            err(x, n, "countries needs a country database (protection.geoip.database)");
        for (int w = 0; w < 2; w++) {
            if (!f[w].val)
                continue;
            size_t o2 = path_key(x, f[w].name);
            if (want_seq(x, f[w].val, true)) {
                size_t cnt = seq_len(f[w].val);
                uint16_t *cc = xalloc(x, cnt * sizeof *cc);
                uint32_t k = 0;
                for (size_t i = 0; i < cnt; i++) {
                    yaml_node_t *v = node(x, f[w].val->data.sequence.items.start[i]);
                    size_t o3 = path_idx(x, i);
                    if (!is_scalar(v) || sl(v) != 2 || !isupper((unsigned char)sv(v)[0]) ||
                        !isupper((unsigned char)sv(v)[1]))
                        err(x, v, "expected an ISO 3166 country code such as DE (two capital letters)");
                    else
                        cc[k++] = (uint16_t)((unsigned char)sv(v)[0] << 8 | (unsigned char)sv(v)[1]);
                    path_pop(x, o3);
                }
                if (w == 0)
                    acl->cc_allow = cc, acl->ncc_allow = k;
                else
                    acl->cc_deny = cc, acl->ncc_deny = k;
            }
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

static void parse_bots(ctx_t *x, yaml_node_t *n, gh_conf_bots_t *b)
{
    size_t o = path_key(x, "bots");
    field_t f[] = {F("enabled"), F("window"),     F("log"),        F("challenge"),   F("tarpit"),
                   F("block"),   F("difficulty"), F("cookie_ttl"), F("tarpit_delay")};
    *b = (gh_conf_bots_t){.enabled = 1, .window = 60000, .challenge = 60, .block = 90, .difficulty = 16,
                          .cookie_ttl = 3600, .tarpit_delay = 5000};
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        f_bool(x, &f[0], &b->enabled);
        f_dur(x, &f[1], false, &b->window);
        f_u32(x, &f[2], 0, 100, &b->log);
        f_u32(x, &f[3], 0, 100, &b->challenge);
        f_u32(x, &f[4], 0, 100, &b->tarpit);
        f_u32(x, &f[5], 0, 100, &b->block);
        f_u32(x, &f[6], 1, 28, &b->difficulty);
        uint32_t ttl_ms = b->cookie_ttl * 1000;
        if (f_dur(x, &f[7], false, &ttl_ms))
            b->cookie_ttl = GH_MAX(ttl_ms / 1000, 1u);
        f_dur(x, &f[8], false, &b->tarpit_delay);
        if (b->window > 3600000) {
            size_t o2 = path_key(x, "window");
            err(x, f[1].val, "window is at most 1h");
            path_pop(x, o2);
        }
        if (b->tarpit_delay > 60000) {
            size_t o2 = path_key(x, "tarpit_delay");
            err(x, f[8].val, "tarpit_delay is at most 60s");
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

/* The scope keys every level has: allow, deny, countries, rate_limits, bots. f holds them first. */
#define SCOPE_FIELDS F("allow"), F("deny"), F("countries"), F("rate_limits"), F("bots")
enum { SC_ALLOW, SC_DENY, SC_COUNTRIES, SC_LIMITS, SC_BOTS, SC_N };

static gh_conf_protect_t *parse_scope(ctx_t *x, field_t *f, const char *where)
{
    gh_conf_protect_t *p = xalloc(x, sizeof *p);
    memset(p, 0, sizeof *p);
    if (f[SC_ALLOW].val)
        parse_acl(x, f[SC_ALLOW].val, &p->acl, GH_ACL_ALLOW, "allow");
    if (f[SC_DENY].val)
        parse_acl(x, f[SC_DENY].val, &p->acl, GH_ACL_DENY, "deny");
    if (f[SC_COUNTRIES].val)
        parse_countries(x, f[SC_COUNTRIES].val, &p->acl);
    if (f[SC_LIMITS].val) {
        size_t o = path_key(x, "rate_limits");
        yaml_node_t *ln = f[SC_LIMITS].val;
        if (want_seq(x, ln, false)) {
            size_t cnt = seq_len(ln);
            if (cnt > 16)
                err(x, ln, "at most 16 rate limits per scope");
            p->limits = xalloc(x, (cnt ? cnt : 1) * sizeof *p->limits);
            memset(p->limits, 0, (cnt ? cnt : 1) * sizeof *p->limits);
            for (size_t i = 0; i < cnt && i < 16; i++) {
                size_t o2 = path_idx(x, i);
                gh_conf_ratelimit_t *rl = &p->limits[p->nlimits];
                parse_rate_limit(x, node(x, ln->data.sequence.items.start[i]), rl, where, i);
                for (uint32_t j = 0; j < p->nlimits; j++)
                    if (!strcmp(p->limits[j].name, rl->name)) {
                        err(x, node(x, ln->data.sequence.items.start[i]), "rate limit name \"%s\" is used twice here",
                            rl->name);
                        break;
                    }
                p->nlimits++;
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[SC_BOTS].val)
        parse_bots(x, f[SC_BOTS].val, &p->bots);
    x->c->protect.used = 1;
    return p;
}

/* A site's or a route's protection: the scope keys only. */
static gh_conf_protect_t *parse_protection(ctx_t *x, yaml_node_t *n, const char *where)
{
    size_t o = path_key(x, "protection");
    field_t f[] = {SCOPE_FIELDS};
    gh_conf_protect_t *p = fields(x, n, f, GH_ARRAY_LEN(f)) ? parse_scope(x, f, where) : NULL;
    path_pop(x, o);
    return p;
}

/* A tenant's protection: the scope keys, its quotas, concurrency cap and flood mode. */
static void parse_tenant_protection(ctx_t *x, yaml_node_t *n, gh_conf_tenant_t *t)
{
    size_t o = path_key(x, "protection");
    field_t f[] = {SCOPE_FIELDS, F("max_concurrent"), F("quota"), F("flood")};
    if (fields(x, n, f, GH_ARRAY_LEN(f))) {
        t->prot = parse_scope(x, f, t->name);
        f_u32(x, &f[SC_N], 0, 10000000, &t->max_concurrent);
        if (f[SC_N + 1].val) {
            size_t o2 = path_key(x, "quota");
            field_t g[] = {F("per_minute"), F("per_day")};
            if (fields(x, f[SC_N + 1].val, g, GH_ARRAY_LEN(g))) {
                uint64_t v;
                if (g[0].val) {
                    size_t o3 = path_key(x, "per_minute");
                    if (get_uint(x, g[0].val, 0, 1000000000, &v))
                        t->quota_minute = v;
                    path_pop(x, o3);
                }
                if (g[1].val) {
                    size_t o3 = path_key(x, "per_day");
                    if (get_uint(x, g[1].val, 0, 100000000000ull, &v))
                        t->quota_day = v;
                    path_pop(x, o3);
                }
            }
            path_pop(x, o2);
        }
        if (f[SC_N + 2].val) {
            size_t o2 = path_key(x, "flood");
            field_t g[] = {F("enabled"), F("multiple"), F("min_rate"), F("concurrency"), F("latency"), F("hold"),
                           F("per_ip")};
            t->flood.enabled = 1;
            t->flood.multiple = 4;
            t->flood.min_rate = 50;
            t->flood.hold = 10000;
            t->flood.per_ip_quota = 10;
            t->flood.per_ip_period = 1;
            if (fields(x, f[SC_N + 2].val, g, GH_ARRAY_LEN(g))) {
                f_bool(x, &g[0], &t->flood.enabled);
                f_num(x, &g[1], 1.5, 1000, &t->flood.multiple);
                f_num(x, &g[2], 1, 10000000, &t->flood.min_rate);
                f_u32(x, &g[3], 0, 10000000, &t->flood.concurrency);
                f_dur(x, &g[4], true, &t->flood.latency);
                f_dur(x, &g[5], false, &t->flood.hold);
                f_rate(x, &g[6], &t->flood.per_ip_quota, &t->flood.per_ip_period);
            }
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

static bool hexval(char ch, uint8_t *v)
{
    if (ch >= '0' && ch <= '9')
        return *v = (uint8_t)(ch - '0'), true;
    if (ch >= 'a' && ch <= 'f')
        return *v = (uint8_t)(ch - 'a' + 10), true;
    if (ch >= 'A' && ch <= 'F')
        return *v = (uint8_t)(ch - 'A' + 10), true;
    return false;
}

/* A secret kept in a file (a password, a key): the first line of the file named at node v,
 * without its line end, in scratch memory; NULL after an error that names the file (never the
 * secret). */
static const char *secret_file(ctx_t *x, yaml_node_t *v, size_t *len)
{
    char *name = xstrndup(x, sv(v), sl(v));
    size_t n = 0;
    char *t = read_text(x, v, name, 4096, false, &n);
    if (!t)
        return NULL;
    t[strcspn(t, "\r\n")] = 0;
    *len = strlen(t);
    if (!*len) {
        err(x, v, "%s: the first line is empty", q(x, name, strlen(name)));
        return NULL;
    }
    return t;
}

/* protection: at the top: the process-wide settings and the named lists. */
static void parse_protection_root(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    size_t o = path_key(x, "protection");
    field_t f[] = {F("max_keys"), F("secret"), F("connections"), F("redis"), F("geoip"), F("ip_lists"),
                   F("good_bots"), F("secret_file")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f))) {
        path_pop(x, o);
        return;
    }
    f_u32(x, &f[0], 1000, 100000000, &c->protect.max_keys);
    if (f[1].val && f[7].val)
        err(x, n, "give secret or secret_file, not both");
    if (f[1].val || f[7].val) {
        size_t o2 = path_key(x, f[1].val ? "secret" : "secret_file");
        yaml_node_t *v = f[1].val ? f[1].val : f[7].val;
        const char *text = is_scalar(v) ? sv(v) : NULL;
        size_t tl = is_scalar(v) ? sl(v) : 0;
        if (f[7].val && is_scalar(v)) /* the secret is the file's first line (kept out of the configuration) */
            text = secret_file(x, v, &tl);
        /* 64 hex digits (32 bytes) or more: the HMAC key, the same on every node */
        bool ok = text && tl >= 64 && tl <= 128 && tl % 2 == 0;
        for (size_t i = 0; ok && i < tl; i += 2) {
            uint8_t a, b;
            ok = hexval(text[i], &a) && hexval(text[i + 1], &b);
            if (ok)
                c->protect.secret[i / 2] = (uint8_t)(a << 4 | b);
        }
        if (ok)
            c->protect.secret_len = (uint32_t)tl / 2;
        else if (text || !f[7].val)
            err(x, v, "expected 64 to 128 hex digits (32 to 64 random bytes, e.g. from `openssl rand -hex 32`)%s",
                f[7].val ? " on the file's first line" : "");
        path_pop(x, o2);
    }
    if (f[2].val) {
        size_t o2 = path_key(x, "connections");
        field_t g[] = {F("per_ip"), F("max_requests"), F("body_min_rate"), F("send_min_rate")};
        if (fields(x, f[2].val, g, GH_ARRAY_LEN(g))) {
            f_u32(x, &g[0], 0, 1000000, &c->protect.per_ip_conns);
            f_u32(x, &g[1], 0, 100000000, &c->protect.max_requests);
            uint64_t v;
            if (f_size(x, &g[2], 0, 1u << 30, &v))
                c->protect.body_min_rate = (uint32_t)v;
            if (f_size(x, &g[3], 0, 1u << 30, &v))
                c->protect.send_min_rate = (uint32_t)v;
            if (c->protect.per_ip_conns)
                c->protect.used = 1;
        }
        path_pop(x, o2);
    }
    if (f[3].val) {
        size_t o2 = path_key(x, "redis");
        field_t g[] = {F("address"), F("sync_interval"), F("on_failure"), F("password"), F("password_file")};
        if (fields(x, f[3].val, g, GH_ARRAY_LEN(g))) {
            char *addr;
            if (!g[0].val)
                missing(x, f[3].val, "address");
            else if (f_str(x, &g[0], &addr, NULL, false)) {
                char host[HOST_MAX];
                uint16_t port = 0;
                int br = 0;
                const char *why = split_hostport(addr, host, &port, &br);
                if (why || !host[0]) {
                    size_t o3 = path_key(x, "address");
                    err(x, g[0].val, "expected host:port, %s", why ? why : "the host is missing");
                    path_pop(x, o3);
                } else {
                    c->protect.redis_host = xstrndup(x, host, strlen(host));
                    c->protect.redis_port = port;
                }
            }
            f_dur(x, &g[1], false, &c->protect.redis_sync);
            f_str(x, &g[3], &c->protect.redis_password, NULL, false);
            if (g[3].val && g[4].val)
                err(x, f[3].val, "give password or password_file, not both");
            if (g[4].val && is_scalar(g[4].val)) {
                size_t o3 = path_key(x, "password_file"), pl = 0;
                const char *pw = secret_file(x, g[4].val, &pl);
                if (pw)
                    c->protect.redis_password = xstrndup(x, pw, pl);
                path_pop(x, o3);
            }
            if (g[2].val) {
                size_t o3 = path_key(x, "on_failure");
                yaml_node_t *v = g[2].val;
                if (is_scalar(v) && seq_eq(sv(v), sl(v), "open"))
                    c->protect.redis_fail_open = 1;
                else if (is_scalar(v) && seq_eq(sv(v), sl(v), "closed"))
                    c->protect.redis_fail_open = 0;
                else
                    err(x, v, "expected open (admit while Redis is unreachable) or closed (refuse)");
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
    if (f[4].val) {
        size_t o2 = path_key(x, "geoip");
        field_t g[] = {F("database")};
        if (fields(x, f[4].val, g, GH_ARRAY_LEN(g))) {
            if (!g[0].val)
                missing(x, f[4].val, "database");
            f_str(x, &g[0], &c->protect.geoip, NULL, false);
        }
        path_pop(x, o2);
    }
    if (f[5].val) {
        size_t o2 = path_key(x, "ip_lists");
        yaml_node_t *ln = f[5].val;
        if (want_map(x, ln)) {
            size_t cnt = (size_t)(ln->data.mapping.pairs.top - ln->data.mapping.pairs.start);
            c->protect.lists = xalloc(x, (cnt ? cnt : 1) * sizeof *c->protect.lists);
            for (yaml_node_pair_t *p = ln->data.mapping.pairs.start; p < ln->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
                struct gh_conf_iplist *l = &c->protect.lists[c->protect.nlists];
                memset(l, 0, sizeof *l);
                if (!get_name(x, k, &l->name))
                    continue;
                size_t o3 = path_key(x, l->name);
                field_t g[] = {F("file")};
                if (find_list(x, l->name, strlen(l->name)) != UINT32_MAX)
                    err(x, k, "list %s is declared twice", q(x, l->name, strlen(l->name)));
                else if (fields(x, v, g, GH_ARRAY_LEN(g))) {
                    if (!g[0].val)
                        missing(x, v, "file");
                    else if (f_str(x, &g[0], &l->file, NULL, false))
                        c->protect.nlists++;
                }
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
    if (f[6].val) {
        size_t o2 = path_key(x, "good_bots");
        yaml_node_t *gn = f[6].val;
        if (want_seq(x, gn, false)) {
            size_t cnt = seq_len(gn);
            c->protect.good_bots = xalloc(x, (cnt ? cnt : 1) * sizeof *c->protect.good_bots);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *v = node(x, gn->data.sequence.items.start[i]);
                size_t o3 = path_idx(x, i);
                char msg[96];
                const char *why = is_scalar(v) ? parse_cidr(sv(v), sl(v), &c->protect.good_bots[c->protect.ngood_bots],
                                                            msg, sizeof msg)
                                               : "expected a CIDR";
                if (why)
                    err(x, v, "%s", why);
                else
                    c->protect.ngood_bots++;
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
    path_pop(x, o);
}

/* A list of header names / parameter names (tokens; a trailing * allowed when star). */
static void parse_names(ctx_t *x, field_t *f, bool star, char ***out, uint32_t *nout)
{
    if (!f->val)
        return;
    size_t o = path_key(x, f->name);
    if (want_seq(x, f->val, false)) {
        size_t cnt = seq_len(f->val);
        *out = xalloc(x, (cnt ? cnt : 1) * sizeof **out);
        for (size_t i = 0; i < cnt; i++) {
            yaml_node_t *v = node(x, f->val->data.sequence.items.start[i]);
            size_t o2 = path_idx(x, i);
            char *name = NULL;
            size_t len = 0;
            if (get_str(x, v, &name, &len, false, false)) {
                size_t tl = star && name[len - 1] == '*' ? len - 1 : len;
                if (!is_token(name, tl) && !(star && tl == 0 && len == 1))
                    err(x, v, "expected a name (a token%s), got %s", star ? ", or a prefix ending in *" : "",
                        q(x, name, len));
                else
                    (*out)[(*nout)++] = name;
            }
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

/* slos: [{name, objective: availability|latency, target: 0.999, threshold: 300ms, window: 30d}]
 * under a tenant or a route (src/obs/slo.c computes them). */
static void parse_slos(ctx_t *x, yaml_node_t *n, gh_conf_slo_t **out, uint32_t *nout)
{
    if (!want_seq(x, n, false))
        return;
    size_t cnt = seq_len(n);
    gh_conf_slo_t *v = xalloc(x, (cnt ? cnt : 1) * sizeof *v);
    char **seen = xalloc(x, (cnt ? cnt : 1) * sizeof *seen); /* every name, valid entry or not */
    uint32_t k = 0, nseen = 0;
    for (size_t i = 0; i < cnt; i++) {
        size_t o = path_idx(x, i);
        yaml_node_t *sn = node(x, n->data.sequence.items.start[i]);
        gh_conf_slo_t *e = &v[k];
        memset(e, 0, sizeof *e);
        field_t f[] = {F("name"), F("objective"), F("target"), F("threshold"), F("window")};
        if (!fields(x, sn, f, GH_ARRAY_LEN(f))) {
            path_pop(x, o);
            continue;
        }
        bool ok = true;
        if (!f[0].val || !f[1].val || !f[2].val) {
            missing(x, sn, !f[0].val ? "name" : !f[1].val ? "objective" : "target");
            ok = false;
        }
        ok &= !f[0].val || f_name(x, &f[0], &e->name);
        for (uint32_t j = 0; e->name && j < nseen; j++)
            if (!strcmp(seen[j], e->name)) {
                size_t o2 = path_key(x, "name");
                err(x, f[0].val, "SLO name \"%s\" is used twice here", e->name);
                path_pop(x, o2);
                ok = false;
                break;
            }
        if (e->name)
            seen[nseen++] = e->name;
        if (f[1].val) {
            size_t o2 = path_key(x, "objective");
            if (is_scalar(f[1].val) && seq_eq(sv(f[1].val), sl(f[1].val), "availability"))
                e->objective = GH_SLO_AVAILABILITY;
            else if (is_scalar(f[1].val) && seq_eq(sv(f[1].val), sl(f[1].val), "latency"))
                e->objective = GH_SLO_LATENCY;
            else {
                err(x, f[1].val, "objective must be availability or latency");
                ok = false;
            }
            path_pop(x, o2);
        }
        if (f[2].val && f_num(x, &f[2], 0, 1, &e->target) && !(e->target > 0 && e->target < 1)) {
            size_t o2 = path_key(x, "target");
            err(x, f[2].val, "target must be between 0 and 1 (exclusive), e.g. 0.999");
            path_pop(x, o2);
            ok = false;
        }
        if (e->objective == GH_SLO_LATENCY) {
            if (!f[3].val) {
                missing(x, sn, "threshold");
                ok = false;
            } else if (f_dur(x, &f[3], false, &e->threshold_ms) && (e->threshold_ms < 1 || e->threshold_ms > 10000)) {
                size_t o2 = path_key(x, "threshold");
                err(x, f[3].val, "threshold must be 1ms..10s (the request duration histogram's range)");
                path_pop(x, o2);
                ok = false;
            }
        } else if (f[3].val) {
            size_t o2 = path_key(x, "threshold");
            err(x, f[3].val, "threshold is for objective: latency");
            path_pop(x, o2);
            ok = false;
        }
        e->window_ms = 30u * 86400000u;
        if (f_dur(x, &f[4], false, &e->window_ms) && e->window_ms < 600000) {
            size_t o2 = path_key(x, "window");
            err(x, f[4].val, "window must be at least 10m (usual: 28d or 30d)");
            path_pop(x, o2);
            ok = false;
        }
        if (ok)
            k++;
        path_pop(x, o);
    }
    *out = v;
    *nout = k;
}

static void parse_route_cache(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r)
{
    field_t f[] = {F("enabled"), F("default_ttl"), F("max_ttl"), F("lock_timeout"), F("set_cookie"), F("key")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    int enabled = 1;
    f_bool(x, &f[0], &enabled);
    gh_conf_cache_t *cc = xalloc(x, sizeof *cc);
    cc->lock_timeout = 5000;
    cc->key_host = 1;
    uint32_t ms;
    if (f_dur(x, &f[1], true, &ms))
        cc->default_ttl = ms / 1000;
    if (f_dur(x, &f[2], true, &ms))
        cc->max_ttl = ms / 1000;
    f_dur(x, &f[3], true, &cc->lock_timeout);
    if (f[4].val) {
        size_t o = path_key(x, "set_cookie");
        if (is_scalar(f[4].val) && seq_eq(sv(f[4].val), sl(f[4].val), "strip"))
            cc->strip_set_cookie = 1;
        else if (!is_scalar(f[4].val) || !seq_eq(sv(f[4].val), sl(f[4].val), "bypass"))
            err(x, f[4].val, "expected bypass (a response with Set-Cookie is not stored) or strip (stored without it)");
        path_pop(x, o);
    }
    if (f[5].val) {
        size_t o = path_key(x, "key");
        field_t g[] = {F("host"), F("query"), F("query_keep"), F("query_drop"), F("headers"), F("cookies")};
        if (fields(x, f[5].val, g, GH_ARRAY_LEN(g))) {
            f_bool(x, &g[0], &cc->key_host);
            if (g[1].val) {
                size_t o2 = path_key(x, "query");
                yaml_node_t *v = g[1].val;
                if (is_scalar(v) && seq_eq(sv(v), sl(v), "sorted"))
                    cc->query = GH_CQ_SORTED;
                else if (is_scalar(v) && seq_eq(sv(v), sl(v), "as_is"))
                    cc->query = GH_CQ_AS_IS;
                else if (is_scalar(v) && seq_eq(sv(v), sl(v), "ignore"))
                    cc->query = GH_CQ_IGNORE;
                else
                    err(x, v, "expected sorted, as_is or ignore");
                path_pop(x, o2);
            }
            parse_names(x, &g[2], true, &cc->query_keep, &cc->nquery_keep);
            parse_names(x, &g[3], true, &cc->query_drop, &cc->nquery_drop);
            if (g[2].val && g[3].val)
                err_key(x, g[3].key, "query_drop", "use query_keep or query_drop, not both");
            parse_names(x, &g[4], false, &cc->key_headers, &cc->nkey_headers);
            parse_names(x, &g[5], true, &cc->key_cookies, &cc->nkey_cookies);
        }
        path_pop(x, o);
    }
    if (enabled) {
        r->cache = cc;
        x->c->cache.used = 1;
    }
}

static bool parse_rl_key(ctx_t *x, yaml_node_t *v, gh_conf_rlkey_t *k);

/* route flag: {key, unit, cookie_max_age, variant_header, exposure, variants: {NAME: {upstream,
 * path_prefix, request_headers, response_headers}}} */
static void parse_route_flag(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r, gh_conf_tenant_t *t)
{
    gh_conf_t *c = x->c;
    field_t f[] = {F("key"), F("unit"), F("cookie_max_age"), F("variant_header"), F("exposure"), F("variants")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    gh_conf_routeflag_t *rf = xalloc(x, sizeof *rf);
    rf->cookie_max_age = 365 * 86400;
    rf->variant_header = "X-Gatehouse-Variant";
    rf->exposure = 1;
    if (!f[0].val)
        missing(x, n, "key");
    else if (f_str(x, &f[0], &rf->key, NULL, false)) {
        int found = 0;
        const gh_flagset_t *set = t->flags.set;
        for (uint32_t i = 0; set && i < gh_flags_count(set) && !found; i++)
            found = !strcmp(gh_flags_key(set, i), rf->key);
        if (!found) {
            size_t o = path_key(x, "key");
            err(x, f[0].val, "tenant \"%s\" has no flag %s%s", t->name, q(x, rf->key, strlen(rf->key)),
                t->flags.set ? "" : " (it declares no flags)");
            path_pop(x, o);
        }
    }
    if (f[1].val) {
        size_t o = path_key(x, "unit");
        if (parse_rl_key(x, f[1].val, &rf->unit) && rf->unit.kind != GH_RLK_IP && rf->unit.kind != GH_RLK_HEADER &&
            rf->unit.kind != GH_RLK_COOKIE && rf->unit.kind != GH_RLK_QUERY)
            err(x, f[1].val, "the unit is one of cookie:NAME, header:NAME, query:NAME or ip");
        path_pop(x, o);
    } else {
        rf->unit.kind = GH_RLK_COOKIE;
        rf->unit.name = "gh_uid";
        rf->unit.name_len = 6;
    }
    uint32_t ms;
    if (f_dur(x, &f[2], false, &ms))
        rf->cookie_max_age = ms / 1000 ? ms / 1000 : 1;
    if (f[3].val) {
        size_t o = path_key(x, "variant_header");
        char *h = NULL;
        size_t hl = 0;
        if (get_str(x, f[3].val, &h, &hl, true, false)) {
            if (hl && !is_token(h, hl))
                err(x, f[3].val, "expected a header field name (or \"\" for none)");
            rf->variant_header = hl ? h : NULL;
        }
        path_pop(x, o);
    }
    f_bool(x, &f[4], &rf->exposure);
    if (f[5].val) {
        size_t o = path_key(x, "variants");
        yaml_node_t *vm = f[5].val;
        if (want_map(x, vm)) {
            size_t cnt = (size_t)(vm->data.mapping.pairs.top - vm->data.mapping.pairs.start);
            rf->variants = xalloc(x, (cnt ? cnt : 1) * sizeof *rf->variants);
            for (yaml_node_pair_t *p = vm->data.mapping.pairs.start; p < vm->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
                if (!is_scalar(k) || dup_key(x, vm, p, k))
                    continue;
                gh_conf_flagvariant_t *fv = &rf->variants[rf->nvariants];
                fv->name = xstrndup(x, sv(k), sl(k));
                size_t o2 = path_key(x, fv->name);
                field_t g[] = {F("upstream"), F("path_prefix"), F("request_headers"), F("response_headers")};
                if (fields(x, v, g, GH_ARRAY_LEN(g))) {
                    char *name = NULL;
                    if (g[0].val) {
                        size_t o3 = path_key(x, "upstream");
                        if (get_str(x, g[0].val, &name, NULL, false, false)) {
                            for (uint32_t i = 0; i < c->nupstreams; i++)
                                if (!strcmp(c->upstreams[i].name, name))
                                    fv->upstream = &c->upstreams[i];
                            if (!fv->upstream)
                                err(x, g[0].val, "unknown upstream %s", q(x, name, strlen(name)));
                        }
                        path_pop(x, o3);
                    }
                    if (g[1].val) {
                        size_t o3 = path_key(x, "path_prefix");
                        if (get_str(x, g[1].val, &fv->path_prefix, &fv->path_prefix_len, false, false) &&
                            (fv->path_prefix[0] != '/' || fv->path_prefix[fv->path_prefix_len - 1] == '/' ||
                             !printable(fv->path_prefix, fv->path_prefix_len)))
                            err(x, g[1].val, "a path prefix starts with / and does not end with / (e.g. /v2)");
                        path_pop(x, o3);
                    }
                    if (g[2].val) {
                        size_t o3 = path_key(x, "request_headers");
                        parse_header_map(x, g[2].val, &fv->req_headers, &fv->nreq_headers);
                        path_pop(x, o3);
                    }
                    if (g[3].val) {
                        size_t o3 = path_key(x, "response_headers");
                        parse_header_map(x, g[3].val, &fv->resp_headers, &fv->nresp_headers);
                        path_pop(x, o3);
                    }
                    rf->nvariants++;
                }
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (rf->key) { /* what the experiments' records carry (src/experiments), computed once */
        rf->key_xh = gh_exp_hash(rf->key, strlen(rf->key));
        for (uint32_t i = 0; i < t->nexperiments; i++) /* (a tenant's experiments are read before its sites) */
            rf->experimented |= !strcmp(t->experiments[i].flag, rf->key);
    }
    r->flag = rf;
}

/* ---------------------------------------------------------------- request rules and edge functions */

static void free_ruleset(void *rs) { gh_rules_free(rs); }

/* Problems gh_rules_* report: at the YAML node that brought the rules (a file's or inline
 * text's own line and column lead the message). */
typedef struct {
    ctx_t *x;
    yaml_node_t *at;
    const char *yaml_file; /* rules declared in the YAML itself: the error is placed at their line */
} rules_err_t;

static void rules_err(void *arg, const char *file, uint32_t line, uint32_t col, const char *msg)
{
    rules_err_t *e = arg;
    if (e->yaml_file && file == e->yaml_file) {
        errat(e->x, line, col, e->x->path, "%s", msg);
        return;
    }
    if (line)
        err(e->x, e->at, "%s:%u:%u: %s", file, line, col ? col : 1, msg);
    else
        err(e->x, e->at, "%s: %s", file, msg);
}

/* A whole file named at node at, at most max bytes, NUL-terminated, in the snapshot (keep) or in
 * scratch memory; NULL after an error naming the file and why. */
static char *read_text(ctx_t *x, yaml_node_t *at, const char *name, size_t max, bool keep, size_t *len)
{
    FILE *fp = fopen(name, "rb");
    struct stat st;
    char *text = NULL;
    if (!fp || fstat(fileno(fp), &st) < 0 || (size_t)st.st_size > max) {
        err(x, at, "cannot read %s: %s", q(x, name, strlen(name)), fp ? "too large" : strerror(errno));
    } else {
        text = keep ? xalloc(x, (size_t)st.st_size + 1) : talloc(x, (size_t)st.st_size + 1);
        *len = fread(text, 1, (size_t)st.st_size, fp);
        text[*len] = '\0';
        if (*len != (size_t)st.st_size) {
            err(x, at, "cannot read %s", q(x, name, strlen(name)));
            text = NULL;
        }
    }
    if (fp)
        fclose(fp);
    return text;
}

/* Netlify text for a site: {file: PATH} or {text: "..."} (tenant keys: text only). */
static void parse_netlify(ctx_t *x, yaml_node_t *n, gh_ruleset_t *rs, int headers)
{
    field_t f[] = {F("file"), F("text")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (!!f[0].val == !!f[1].val) {
        err(x, n, "give one of file (a Netlify %s file) or text (the same, inline)", headers ? "_headers" : "_redirects");
        return;
    }
    char *name = NULL, *text = NULL;
    size_t len = 0;
    size_t o = path_key(x, f[0].val ? "file" : "text");
    yaml_node_t *at = f[0].val ? f[0].val : f[1].val;
    if (f[0].val) {
        if (get_str(x, f[0].val, &name, NULL, false, false)) {
            text = read_text(x, at, name, 16 << 20, false, &len);
        }
    } else if (get_str(x, f[1].val, &text, &len, true, true)) {
        char nm[64];
        snprintf(nm, sizeof nm, "(inline %s)", headers ? "_headers" : "_redirects");
        name = xstrndup(x, nm, strlen(nm));
    }
    if (text) {
        rules_err_t e = {x, at, NULL};
        char *fname = gh_rules_strdup(rs, name, strlen(name));
        if (!fname)
            longjmp(x->oom, 1);
        if (headers)
            gh_rules_netlify_headers(rs, fname, text, len, rules_err, &e);
        else
            gh_rules_netlify_redirects(rs, fname, text, len, rules_err, &e);
    }
    path_pop(x, o);
}

static char *rdup(ctx_t *x, gh_ruleset_t *rs, const char *p, size_t n)
{
    char *d = gh_rules_strdup(rs, p, n);
    if (!d)
        longjmp(x->oom, 1);
    return d;
}

static void *ralloc(ctx_t *x, gh_ruleset_t *rs, size_t n)
{
    void *d = gh_rules_alloc(rs, n ? n : 1);
    if (!d)
        longjmp(x->oom, 1);
    return d;
}

/* A string list (countries, languages, variants) into the rule set's memory. */
static void rule_names(ctx_t *x, gh_ruleset_t *rs, field_t *f, int upper, int lower, char ***out, uint32_t *nout)
{
    if (!f->val)
        return;
    size_t o = path_key(x, f->name);
    if (want_seq(x, f->val, true)) {
        size_t cnt = seq_len(f->val);
        *out = ralloc(x, rs, cnt * sizeof **out);
        for (size_t i = 0; i < cnt; i++) {
            yaml_node_t *v = node(x, f->val->data.sequence.items.start[i]);
            size_t o2 = path_idx(x, i);
            if (!is_scalar(v) || !printable(sv(v), sl(v)) || sl(v) > 64) {
                err(x, v, "expected a name, got %s", is_scalar(v) ? q(x, sv(v), sl(v)) : kind(v));
            } else {
                char *d = rdup(x, rs, sv(v), sl(v));
                for (char *p = d; *p; p++)
                    *p = (char)(upper ? toupper((unsigned char)*p) : lower ? tolower((unsigned char)*p) : *p);
                (*out)[(*nout)++] = d;
            }
            path_pop(x, o2);
        }
    }
    path_pop(x, o);
}

static void rule_match(ctx_t *x, gh_ruleset_t *rs, yaml_node_t *n, gh_rule_t *r)
{
    field_t f[] = {F("path"),      F("host"),      F("methods"),   F("query"),   F("headers"),
                   F("cookies"),   F("countries"), F("languages"), F("client_ip"), F("variant")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    char *s = NULL;
    size_t len = 0;
    if (f_str(x, &f[0], &s, &len, false)) {
        if (s[0] != '/') {
            size_t o = path_key(x, "path");
            err(x, f[0].val, "a path pattern must start with \"/\"");
            path_pop(x, o);
        }
        r->from = rdup(x, rs, s, len);
    }
    if (f_str(x, &f[1], &s, &len, false)) {
        char *d = rdup(x, rs, s, len);
        for (char *p = d; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        r->host = d;
    }
    if (f[2].val) {
        gh_conf_route_t tmp = {0};
        size_t o = path_key(x, "methods");
        parse_methods(x, f[2].val, &tmp);
        path_pop(x, o);
        r->methods = tmp.methods;
    }
    if (f[3].val) {
        size_t o = path_key(x, "query");
        if (want_map(x, f[3].val)) {
            yaml_node_t *m = f[3].val;
            size_t cnt = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
            r->query = ralloc(x, rs, cnt * sizeof *r->query);
            for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
                if (!is_scalar(k) || !printable(sv(k), sl(k))) {
                    err(x, k, "expected a query parameter name");
                } else if (!v || v->type != YAML_SCALAR_NODE) {
                    err_key(x, k, sv(k), "expected a value (\":name\" captures it, \"\" any value)");
                } else if (!dup_key(x, m, p, k)) {
                    r->query[r->nquery++] = (gh_rule_query_t){rdup(x, rs, sv(k), sl(k)), rdup(x, rs, sv(v), sl(v))};
                }
            }
        }
        path_pop(x, o);
    }
    if (f[4].val) {
        size_t o = path_key(x, "headers");
        if (want_seq(x, f[4].val, true)) {
            size_t cnt = seq_len(f[4].val);
            r->headers = ralloc(x, rs, cnt * sizeof *r->headers);
            for (size_t i = 0; i < cnt; i++) {
                size_t o2 = path_idx(x, i);
                parse_header_match(x, node(x, f[4].val->data.sequence.items.start[i]), r->headers, &r->nheaders);
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[5].val) { /* cookies: {name: value} exact, {name: true} present */
        size_t o = path_key(x, "cookies");
        if (want_map(x, f[5].val)) {
            yaml_node_t *m = f[5].val;
            size_t cnt = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
            r->cookies = ralloc(x, rs, cnt * sizeof *r->cookies);
            for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
                int present = 0;
                if (!is_scalar(k) || !is_token(sv(k), sl(k))) {
                    err(x, k, "expected a cookie name");
                    continue;
                }
                if (dup_key(x, m, p, k))
                    continue;
                size_t o2 = path_key(x, sv(k));
                if (is_scalar(v) && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && seq_eq(sv(v), sl(v), "true"))
                    present = 1;
                if (!present && !is_scalar(v))
                    err(x, v, "expected the cookie's value, or true (present)");
                else
                    r->cookies[r->ncookies++] =
                        (gh_rule_cookie_t){rdup(x, rs, sv(k), sl(k)), present ? NULL : rdup(x, rs, sv(v), sl(v))};
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    rule_names(x, rs, &f[6], 1, 0, &r->countries, &r->ncountries);
    rule_names(x, rs, &f[7], 0, 1, &r->languages, &r->nlanguages);
    if (f[8].val) {
        size_t o = path_key(x, "client_ip");
        if (want_seq(x, f[8].val, true)) {
            size_t cnt = seq_len(f[8].val);
            r->cidrs = ralloc(x, rs, cnt * sizeof *r->cidrs);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *v = node(x, f[8].val->data.sequence.items.start[i]);
                size_t o2 = path_idx(x, i);
                char msg[128];
                if (!is_scalar(v))
                    err(x, v, "expected an address or CIDR, got %s", kind(v));
                else if (parse_cidr(sv(v), sl(v), &r->cidrs[r->ncidrs], msg, sizeof msg))
                    err(x, v, "bad CIDR %s: %s", q(x, sv(v), sl(v)), msg);
                else
                    r->ncidrs++;
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[9].val) { /* variant: {flag: NAME, in: [v1, v2]} */
        size_t o = path_key(x, "variant");
        field_t g[] = {F("flag"), F("in")};
        if (fields(x, f[9].val, g, GH_ARRAY_LEN(g))) {
            if (!g[0].val || !g[1].val)
                err(x, f[9].val, "a variant condition needs flag and in (the variants that match)");
            if (f_str(x, &g[0], &s, &len, false))
                r->flag = rdup(x, rs, s, len);
            rule_names(x, rs, &g[1], 0, 0, &r->variants, &r->nvariants);
        }
        path_pop(x, o);
    }
}

/* request_headers / response_headers: {set: {N: V}, append: {N: V}, remove: [N]} */
static void rule_hedits(ctx_t *x, gh_ruleset_t *rs, field_t *fh, int resp, gh_rule_t *r, uint32_t cap)
{
    if (!fh->val)
        return;
    size_t o = path_key(x, fh->name);
    field_t f[] = {F("set"), F("append"), F("remove")};
    if (fields(x, fh->val, f, GH_ARRAY_LEN(f))) {
        for (int k = 0; k < 2; k++) {
            if (!f[k].val)
                continue;
            gh_conf_kv_t *kv = NULL;
            uint32_t nkv = 0;
            size_t o2 = path_key(x, f[k].name);
            parse_header_map(x, f[k].val, &kv, &nkv);
            path_pop(x, o2);
            for (uint32_t i = 0; i < nkv && r->nedits < cap; i++)
                r->edits[r->nedits++] = (gh_rule_hedit_t){(uint8_t)(k ? GH_HE_APPEND : GH_HE_SET), (uint8_t)resp,
                                                          rdup(x, rs, kv[i].name, kv[i].name_len), kv[i].name_len,
                                                          rdup(x, rs, kv[i].value, kv[i].value_len), kv[i].value_len};
        }
        if (f[2].val) {
            char **names = NULL;
            uint32_t nn = 0;
            parse_names(x, &f[2], false, &names, &nn);
            for (uint32_t i = 0; i < nn && r->nedits < cap; i++)
                r->edits[r->nedits++] = (gh_rule_hedit_t){GH_HE_REMOVE, (uint8_t)resp, rdup(x, rs, names[i],
                                                          strlen(names[i])), strlen(names[i]), rdup(x, rs, "", 0), 0};
        }
    }
    path_pop(x, o);
}

static size_t hedit_count(ctx_t *x, yaml_node_t *n)
{
    size_t cnt = 0;
    if (!n || n->type != YAML_MAPPING_NODE)
        return 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *v = node(x, p->value);
        if (v && v->type == YAML_MAPPING_NODE)
            cnt += (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
        else if (v && v->type == YAML_SEQUENCE_NODE)
            cnt += seq_len(v);
    }
    return cnt;
}

static const gh_conf_upstream_t *find_upstream(const gh_conf_t *c, const char *name)
{
    for (uint32_t i = 0; i < c->nupstreams; i++)
        if (strcmp(c->upstreams[i].name, name) == 0)
            return &c->upstreams[i];
    return NULL;
}

/* One YAML rule: match, one of redirect / rewrite / respond (or none: header edits only),
 * request_headers, response_headers, force. */
static void parse_rule(ctx_t *x, gh_ruleset_t *rs, yaml_node_t *n)
{
    field_t f[] = {F("match"),           F("redirect"),         F("rewrite"), F("respond"),
                   F("request_headers"), F("response_headers"), F("force")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    gh_rule_t *r = gh_rules_add(rs);
    if (!r)
        longjmp(x->oom, 1);
    r->file = x->file;
    r->line = (uint32_t)n->start_mark.line + 1;
    r->force = 1;
    f_bool(x, &f[6], &r->force);
    if (f[0].val) {
        size_t o = path_key(x, "match");
        rule_match(x, rs, f[0].val, r);
        path_pop(x, o);
    }
    if (!!f[1].val + !!f[2].val + !!f[3].val > 1)
        err(x, n, "a rule has at most one of redirect, rewrite or respond");
    char *s = NULL;
    size_t len = 0;
    if (f[1].val || f[2].val) {
        int redirect = f[1].val != NULL;
        size_t o = path_key(x, redirect ? "redirect" : "rewrite");
        field_t g[] = {F("to"), F("status"), F("upstream")};
        if (fields(x, f[redirect ? 1 : 2].val, g, redirect ? 2 : 3)) {
            r->action = redirect ? GH_RULE_REDIRECT : GH_RULE_REWRITE;
            r->status = redirect ? 301 : 200;
            uint32_t st;
            if (f_u32(x, &g[1], redirect ? 301 : 200, redirect ? 308 : 599, &st))
                r->status = (int)st;
            if (!g[0].val && !(g[2].val && !redirect))
                missing(x, f[redirect ? 1 : 2].val, "to");
            if (f_str(x, &g[0], &s, &len, false))
                r->to = rdup(x, rs, s, len);
            if (f_str(x, &g[2], &s, &len, false)) {
                r->upstream_name = rdup(x, rs, s, len);
                r->upstream = find_upstream(x->c, s);
                if (!r->upstream) {
                    size_t o2 = path_key(x, "upstream");
                    err(x, g[2].val, "unknown upstream %s", q(x, s, len));
                    path_pop(x, o2);
                }
            }
        }
        path_pop(x, o);
    }
    if (f[3].val) {
        size_t o = path_key(x, "respond");
        field_t g[] = {F("status"), F("body"), F("headers"), F("content_type")};
        if (fields(x, f[3].val, g, GH_ARRAY_LEN(g))) {
            r->action = GH_RULE_RESPOND;
            r->status = 200;
            uint32_t st;
            if (f_u32(x, &g[0], 200, 599, &st))
                r->status = (int)st;
            r->body = rdup(x, rs, "", 0);
            if (g[1].val) {
                size_t o2 = path_key(x, "body");
                if (get_str(x, g[1].val, &s, &len, true, true)) {
                    r->body = rdup(x, rs, s, len);
                    r->body_len = len;
                }
                path_pop(x, o2);
            }
            if (f_str(x, &g[3], &s, &len, false)) {
                if (!valid_field_value(s, len))
                    err(x, g[3].val, "content_type must not contain control characters");
                r->ctype = rdup(x, rs, s, len);
            }
            size_t cap = hedit_count(x, f[4].val) + hedit_count(x, f[5].val) +
                         (g[2].val && g[2].val->type == YAML_MAPPING_NODE
                              ? (size_t)(g[2].val->data.mapping.pairs.top - g[2].val->data.mapping.pairs.start)
                              : 0);
            r->edits = ralloc(x, rs, cap * sizeof *r->edits);
            if (g[2].val) {
                gh_conf_kv_t *kv = NULL;
                uint32_t nkv = 0;
                size_t o2 = path_key(x, "headers");
                parse_header_map(x, g[2].val, &kv, &nkv);
                path_pop(x, o2);
                for (uint32_t i = 0; i < nkv; i++)
                    r->edits[r->nedits++] = (gh_rule_hedit_t){GH_HE_SET, 1, rdup(x, rs, kv[i].name, kv[i].name_len),
                                                              kv[i].name_len, rdup(x, rs, kv[i].value, kv[i].value_len),
                                                              kv[i].value_len};
            }
            rule_hedits(x, rs, &f[4], 0, r, (uint32_t)cap);
            rule_hedits(x, rs, &f[5], 1, r, (uint32_t)cap);
        }
        path_pop(x, o);
        return;
    }
    size_t cap = hedit_count(x, f[4].val) + hedit_count(x, f[5].val);
    r->edits = ralloc(x, rs, cap * sizeof *r->edits);
    rule_hedits(x, rs, &f[4], 0, r, (uint32_t)cap);
    rule_hedits(x, rs, &f[5], 1, r, (uint32_t)cap);
    if (!r->action && !r->nedits && !f[4].val && !f[5].val)
        err(x, n, "a rule needs an effect: redirect, rewrite, respond, request_headers or response_headers");
}

/* After compiling: no rule edits a field gatehouse manages, and a rewrite to an absolute URL
 * (Netlify's proxying) goes to a declared pool with that backend ("host:port", TLS for https):
 * gatehouse proxies only where the operator said traffic may go. */
static bool rules_resolve(ctx_t *x, gh_ruleset_t *rs, rules_err_t *e)
{
    size_t nerr0 = x->nerrs;
    for (uint32_t i = 0; i < gh_rules_count(rs); i++) {
        gh_rule_t *r = gh_rules_at(rs, i);
        char msg[1024];
        for (uint32_t k = 0; k < r->nedits; k++)
            if (gh_edits_managed(gh_str(r->edits[k].name, r->edits[k].name_len))) {
                snprintf(msg, sizeof msg, "%s is managed by gatehouse and cannot be set by a rule", r->edits[k].name);
                rules_err(e, r->file, r->line, 0, msg);
            }
        if (r->action != GH_RULE_REWRITE || r->upstream || !r->to)
            continue;
        int tls = !strncmp(r->to, "https://", 8);
        if (!tls && strncmp(r->to, "http://", 7))
            continue;
        const char *a = r->to + (tls ? 8 : 7);
        size_t al = strcspn(a, "/?#");
        char want[300];
        if (al == 0 || al > 255) {
            snprintf(msg, sizeof msg, "bad proxy target %.200s", r->to);
            rules_err(e, r->file, r->line, 0, msg);
            continue;
        }
        const char *colon = a[0] == '[' ? strstr(a, "]:") : memchr(a, ':', al);
        if (colon && colon < a + al)
            snprintf(want, sizeof want, "%.*s", (int)al, a);
        else
            snprintf(want, sizeof want, "%.*s:%d", (int)al, a, tls ? 443 : 80);
        for (uint32_t u = 0; u < x->c->nupstreams && !r->upstream; u++) {
            const gh_conf_upstream_t *up = &x->c->upstreams[u];
            for (uint32_t b = 0; b < up->nbackends && !r->upstream; b++) {
                const char *bn = up->backends[b].dns_name ? up->backends[b].dns_name : up->backends[b].name;
                if (!strcasecmp(bn, want) && !!up->tls.enabled == tls)
                    r->upstream = up;
            }
        }
        if (!r->upstream) {
            snprintf(msg, sizeof msg, "proxy target %.200s: no upstream has the backend %s%s; declare one (gatehouse "
                     "proxies only to declared pools)", r->to, want, tls ? " with tls" : "");
            rules_err(e, r->file, r->line, 0, msg);
        }
    }
    return x->nerrs == nerr0;
}

/* A site's rules: the YAML list, then _headers, then _redirects (first match among the actions
 * in that order; every matching header rule applies). */
static void parse_site_rules(ctx_t *x, gh_conf_site_t *s, field_t *rules, field_t *redirects, field_t *headers)
{
    if (!rules->val && !redirects->val && !headers->val)
        return;
    struct gh_conf_owned *own = owned(x, free_ruleset);
    gh_ruleset_t *rs = gh_rules_new();
    if (!rs)
        longjmp(x->oom, 1);
    own->obj = rs;
    size_t nerr0 = x->nerrs;
    if (rules->val) {
        size_t o = path_key(x, "rules");
        if (want_seq(x, rules->val, false))
            for (size_t i = 0; i < seq_len(rules->val); i++) {
                size_t o2 = path_idx(x, i);
                parse_rule(x, rs, node(x, rules->val->data.sequence.items.start[i]));
                path_pop(x, o2);
            }
        path_pop(x, o);
    }
    if (headers->val) {
        size_t o = path_key(x, "headers");
        parse_netlify(x, headers->val, rs, 1);
        path_pop(x, o);
    }
    if (redirects->val) {
        size_t o = path_key(x, "redirects");
        parse_netlify(x, redirects->val, rs, 0);
        path_pop(x, o);
    }
    if (x->nerrs != nerr0)
        return;
    size_t o = path_key(x, rules->val ? "rules" : redirects->val ? "redirects" : "headers");
    rules_err_t e = {x, rules->val ? rules->val : redirects->val ? redirects->val : headers->val, x->file};
    if (gh_rules_compile(rs, rules_err, &e) == 0 && rules_resolve(x, rs, &e))
        s->rules = rs;
    path_pop(x, o);
}

/* A route's edge function: {file: PATH | code: TEXT, on_error: fail|continue,
 * max_instructions: N, max_memory: SIZE}. Checked (compiled, top level run) here. */
static void parse_function(ctx_t *x, yaml_node_t *n, gh_conf_route_t *r, gh_conf_tenant_t *t)
{
    field_t f[] = {F("file"), F("code"), F("on_error"), F("max_instructions"), F("max_memory")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    gh_conf_function_t *fn = xalloc(x, sizeof *fn);
    fn->max_instructions = 1000000;
    fn->max_memory = 8 << 20;
    if (f[3].val) {
        size_t o = path_key(x, "max_instructions");
        get_uint(x, f[3].val, 1000, 1000000000000ull, &fn->max_instructions);
        path_pop(x, o);
    }
    f_size(x, &f[4], 64 << 10, 1ull << 30, &fn->max_memory);
    if (f[2].val) {
        size_t o = path_key(x, "on_error");
        if (is_scalar(f[2].val) && seq_eq(sv(f[2].val), sl(f[2].val), "fail"))
            fn->on_error = GH_FN_FAIL;
        else if (is_scalar(f[2].val) && seq_eq(sv(f[2].val), sl(f[2].val), "continue"))
            fn->on_error = GH_FN_CONTINUE;
        else
            err(x, f[2].val, "expected fail (the request gets 500) or continue (it goes on unchanged)");
        path_pop(x, o);
    }
    if (!!f[0].val == !!f[1].val) {
        err(x, n, "give one of file (a Lua file) or code (the same, inline)");
        return;
    }
    char *s = NULL;
    size_t len = 0;
    yaml_node_t *at = f[0].val ? f[0].val : f[1].val;
    size_t o = path_key(x, f[0].val ? "file" : "code");
    if (f[0].val) {
        if (get_str(x, f[0].val, &s, NULL, false, false)) {
            fn->code = read_text(x, at, s, 1 << 20, true, &fn->code_len);
            if (fn->code) {
                char cn[600];
                snprintf(cn, sizeof cn, "@%s", s);
                fn->chunkname = xstrndup(x, cn, strlen(cn));
            }
        }
    } else if (get_str(x, f[1].val, &s, &len, false, true)) {
        if (len > (1 << 20)) {
            err(x, at, "code over 1 MiB");
        } else {
            fn->code = s;
            fn->code_len = len;
            char cn[600];
            snprintf(cn, sizeof cn, "=%s/%s", t->name, r->name ? r->name : "route");
            fn->chunkname = xstrndup(x, cn, strlen(cn));
        }
    }
    if (fn->code) {
        char msg[512];
        gh_fn_limits_t lim = {fn->max_instructions, (size_t)fn->max_memory};
        int ph = gh_lua_check(fn->chunkname, fn->code, fn->code_len, &lim, msg, sizeof msg);
        const char *name = fn->chunkname + 1;
        size_t nl = strlen(name), k = strcspn(msg + 3, ":");
        if (ph < 0 && !strncmp(msg, "...", 3) && k <= nl && !memcmp(name + nl - k, msg + 3, k)) {
            err(x, at, "%s%s", name, msg + 3 + k); /* Lua shortens long chunk names from the front */
        } else if (ph < 0) {
            err(x, at, "%s", msg);
        } else {
            fn->phases = ph;
            if (t->nfunctions % 16 == 0) {
                gh_conf_function_t **nf = xalloc(x, (t->nfunctions + 16) * sizeof *nf);
                if (t->nfunctions)
                    memcpy(nf, t->functions, t->nfunctions * sizeof *nf);
                t->functions = nf;
            }
            fn->id = t->nfunctions;
            t->functions[t->nfunctions++] = fn;
            r->function = fn;
        }
    }
    path_pop(x, o);
}

static void parse_route(ctx_t *x, yaml_node_t *n, gh_conf_tenant_t *t, gh_conf_site_t *s,
                        uint32_t tenant_route_idx)
{
    gh_conf_t *c = x->c;
    gh_conf_route_t *r = &s->routes[s->nroutes];
    field_t f[] = {F("name"), F("match"), F("upstream"), F("respond"), F("limits"), F("timeouts"), F("protection"),
                   F("cache"), F("flag"), F("analytics"), F("slos"), F("function")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    f_bool(x, &f[9], &r->analytics);
    if (f[10].val) {
        size_t o = path_key(x, "slos");
        parse_slos(x, f[10].val, &r->slos, &r->nslos);
        path_pop(x, o);
    }
    r->site = s;
    r->tenant = t;
    if (f[7].val) {
        size_t o = path_key(x, "cache");
        parse_route_cache(x, f[7].val, r);
        path_pop(x, o);
    }
    if (f[8].val) {
        size_t o = path_key(x, "flag");
        parse_route_flag(x, f[8].val, r, t);
        path_pop(x, o);
    }
    if (!f_name(x, &f[0], &r->name)) {
        char nm[32];
        snprintf(nm, sizeof nm, "route%u", tenant_route_idx);
        r->name = xstrndup(x, nm, strlen(nm));
    }
    if (f[11].val) {
        size_t o = path_key(x, "function");
        parse_function(x, f[11].val, r, t);
        path_pop(x, o);
    }
    if (r->analytics) { /* its sketches outlive reloads: found by tenant and route name */
        char kb[600];
        int kl = snprintf(kb, sizeof kb, "%s%c%s", t->name, 0, r->name);
        r->analytics_key = gh_exp_hash(kb, (size_t)GH_MIN(kl, (int)sizeof kb - 1));
    }
    r->prot[0] = t->prot;
    r->prot[1] = s->prot;
    if (f[6].val) {
        char where[3 * 130];
        snprintf(where, sizeof where, "%s/%s/%s", t->name, s->name ? s->name : "", r->name);
        r->prot[2] = parse_protection(x, f[6].val, where);
    }
    for (int i = 0; i < 3; i++)
        if (r->prot[i] && r->prot[i]->bots.enabled)
            r->bots = &r->prot[i]->bots;
        else if (r->prot[i] && r->prot[i]->bots.window) /* declared, enabled: false */
            r->bots = NULL;
    if (f[1].val) {
        size_t o = path_key(x, "match");
        parse_match(x, f[1].val, r);
        path_pop(x, o);
    }
    const up_tmo_t *ut = NULL;
    if (f[2].val && f[3].val) {
        err(x, n, "has both upstream and respond: use exactly one");
    } else if (!f[2].val && !f[3].val) {
        err(x, n, "needs one of upstream or respond");
    }
    if (f[2].val) {
        char *name;
        size_t o = path_key(x, "upstream");
        if (get_str(x, f[2].val, &name, NULL, false, false)) {
            for (uint32_t i = 0; i < c->nupstreams; i++)
                if (strcmp(c->upstreams[i].name, name) == 0) {
                    r->upstream = &c->upstreams[i];
                    ut = &x->up_tmo[i];
                    break;
                }
            if (!r->upstream)
                err(x, f[2].val, "unknown upstream %s", q(x, name, strlen(name)));
        }
        path_pop(x, o);
    }
    if (f[3].val) {
        size_t o = path_key(x, "respond");
        parse_respond(x, f[3].val, r);
        path_pop(x, o);
    }
    r->max_body_size = c->limits.max_body_size;
    if (f[4].val) {
        size_t o = path_key(x, "limits");
        field_t g[] = {F("max_body_size")};
        if (fields(x, f[4].val, g, 1))
            f_size(x, &g[0], 0, UINT64_MAX, &r->max_body_size);
        path_pop(x, o);
    }
    gh_conf_timeouts_t own = {0};
    unsigned ownset = 0;
    if (f[5].val) {
        size_t o = path_key(x, "timeouts");
        parse_timeouts(x, f[5].val, &own, &ownset);
        path_pop(x, o);
    }
    merge_timeouts(&r->timeouts, &c->timeouts, ut, &own, ownset);

    /* route names are unique within the tenant */
    /* s is t->sites[t->nsites], counted once its routes are done */
    bool dup = false;
    for (uint32_t si = 0; si <= t->nsites && !dup; si++) {
        const gh_conf_site_t *os = &t->sites[si];
        for (uint32_t ri = 0; ri < os->nroutes && !dup; ri++)
            if (strcmp(os->routes[ri].name, r->name) == 0) {
                size_t o = path_key(x, "name");
                err(x, f[0].val ? f[0].val : n,
                    "route name \"%s\" is used twice in tenant \"%s\" (also in site \"%s\")",
                    r->name, t->name, os->name);
                path_pop(x, o);
                dup = true;
            }
    }
    s->nroutes++;
}

static void parse_site(ctx_t *x, yaml_node_t *n, gh_conf_tenant_t *t, uint32_t ti,
                       uint32_t *route_counter)
{
    gh_conf_site_t *s = &t->sites[t->nsites];
    field_t f[] = {F("name"),  F("hosts"),      F("routes"),    F("tls"),    F("https_redirect"),
                   F("hsts"), F("protection"), F("rules"),     F("redirects"), F("headers")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    s->tenant = t;
    if (f[3].val) {
        size_t o = path_key(x, "tls");
        field_t g[] = {F("cert"), F("key")};
        if (fields(x, f[3].val, g, GH_ARRAY_LEN(g)) &&
            !parse_cert_pair(x, f[3].val, &g[0], &g[1], &s->tls_cert, &s->tls_key) && !g[0].val && !g[1].val)
            err(x, f[3].val, "a site's tls needs cert and key");
        path_pop(x, o);
    }
    f_bool(x, &f[4], &s->https_redirect);
    if (f_str(x, &f[5], &s->hsts, NULL, false)) {
        bool bad = strncmp(s->hsts, "max-age=", 8) != 0;
        for (const char *p = s->hsts; *p; p++)
            bad |= (unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f;
        if (bad) {
            size_t o = path_key(x, "hsts");
            err(x, f[5].val, "hsts must be a Strict-Transport-Security value starting with max-age=, e.g. "
                             "\"max-age=31536000; includeSubDomains\"");
            path_pop(x, o);
        }
    }
    f_name(x, &f[0], &s->name);
    if (!f[1].val) {
        missing(x, n, "hosts");
    } else {
        size_t o = path_key(x, "hosts");
        yaml_node_t *hn = f[1].val;
        if (want_seq(x, hn, true)) {
            size_t cnt = seq_len(hn);
            s->hosts = xalloc(x, cnt * sizeof *s->hosts);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *v = node(x, hn->data.sequence.items.start[i]);
                size_t o2 = path_idx(x, i);
                if (!is_scalar(v)) {
                    err(x, v, "expected a host name, got %s", kind(v));
                } else {
                    char *buf = xalloc(x, sl(v) + 1);
                    size_t len = 0;
                    gh_conf_host_t *h = &s->hosts[s->nhosts];
                    const char *why = check_host(sv(v), sl(v), buf, &len, &h->wildcard, &h->any);
                    if (why) {
                        err(x, v, "bad host %s: %s", q(x, sv(v), sl(v)), why);
                    } else {
                        buf[len] = '\0';
                        h->name = buf;
                        h->len = len;
                        if (!s->name) {
                            /* default site name: the first host, lowercased */
                            s->name = buf;
                            if (h->wildcard) {
                                char *nm = xalloc(x, len + 2);
                                nm[0] = '*';
                                memcpy(nm + 1, buf, len + 1);
                                s->name = nm;
                            }
                        }
                        if (x->nhosts == x->caphosts) {
                            size_t cap = x->caphosts ? x->caphosts * 2 : 64;
                            hostrec_t *nh = talloc(x, cap * sizeof *nh);
                            if (x->nhosts)
                                memcpy(nh, x->hosts, x->nhosts * sizeof *nh);
                            x->hosts = nh;
                            x->caphosts = cap;
                        }
                        x->hosts[x->nhosts++] =
                            (hostrec_t){buf,  ti, t->nsites, (uint32_t)i,
                                        (uint32_t)v->start_mark.line + 1,
                                        (uint32_t)v->start_mark.column + 1, x->seq++, t->name, NULL};
                        s->nhosts++;
                    }
                }
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (!s->name)
        s->name = "(unnamed)";
    for (size_t i = x->nhosts; i > 0 && x->hosts[i - 1].site == NULL; i--)
        x->hosts[i - 1].site = s->name;
    /* explicit names only: defaulted ones collide only when hosts do (reported) */
    for (uint32_t i = 0; f[0].val && i < t->nsites; i++)
        if (strcmp(t->sites[i].name, s->name) == 0) {
            size_t o = path_key(x, "name");
            err(x, f[0].val, "site name \"%s\" is used twice in tenant \"%s\"",
                s->name, t->name);
            path_pop(x, o);
            break;
        }
    if (f[6].val) {
        char where[2 * 130];
        snprintf(where, sizeof where, "%s/%s", t->name, s->name);
        s->prot = parse_protection(x, f[6].val, where);
    }
    parse_site_rules(x, s, &f[7], &f[8], &f[9]);
    if (f[2].val) {
        size_t o = path_key(x, "routes");
        yaml_node_t *rn = f[2].val;
        if (want_seq(x, rn, false)) {
            size_t cnt = seq_len(rn);
            s->routes = xalloc(x, (cnt ? cnt : 1) * sizeof *s->routes);
            for (size_t i = 0; i < cnt; i++) {
                size_t o2 = path_idx(x, i);
                parse_route(x, node(x, rn->data.sequence.items.start[i]), t, s, (*route_counter)++);
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    t->nsites++;
}

/* A YAML node as JSON (flag definitions written inline): plain scalars typed as YAML 1.2's
 * core schema does (true/false, null/~, numbers), quoted ones strings. NULL after an error. */
static json_t *yaml_to_json(ctx_t *x, yaml_node_t *n, int depth)
{
    if (!n || depth > 64) {
        err(x, n, "nested too deeply (or empty)");
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE) {
        const char *v = sv(n);
        size_t l = sl(n);
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            if (seq_eq(v, l, "true"))
                return json_true();
            if (seq_eq(v, l, "false"))
                return json_false();
            if (!l || seq_eq(v, l, "null") || seq_eq(v, l, "~"))
                return json_null();
            char buf[64], *end;
            if (l < sizeof buf) {
                memcpy(buf, v, l);
                buf[l] = 0;
                long long i = strtoll(buf, &end, 10);
                if (*end == 0 && (buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
                    return json_integer(i);
                double d = strtod(buf, &end);
                if (*end == 0 && (buf[0] == '-' || buf[0] == '.' || (buf[0] >= '0' && buf[0] <= '9')))
                    return json_real(d);
            }
        }
        return json_stringn(v, l);
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; a && it < n->data.sequence.items.top; it++) {
            json_t *e = yaml_to_json(x, node(x, *it), depth + 1);
            if (!e || json_array_append_new(a, e) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    if (n->type == YAML_MAPPING_NODE) {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; o && p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node(x, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                err(x, k, "keys must be strings");
                json_decref(o);
                return NULL;
            }
            json_t *e = yaml_to_json(x, node(x, p->value), depth + 1);
            if (!e || json_object_setn_new(o, sv(k), sl(k), e) < 0) {
                json_decref(e);
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    err(x, n, "unsupported YAML node");
    return NULL;
}

/* tenant flags: {file: PATH | definition: {...flagd...}, api_keys: [...]} */
static void parse_tenant_flags(ctx_t *x, yaml_node_t *n, gh_conf_tenant_t *t)
{
    field_t f[] = {F("file"), F("definition"), F("api_keys"), F("rate_limit"), F("burst")};
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (f[3].val) { /* "1000/s": evaluation requests of the tenant, burst: beyond that at once */
        uint32_t quota = 0, period = 0, burst = 0;
        if (f_rate(x, &f[3], &quota, &period)) {
            burst = quota / period ? quota / period : 1; /* default: one second's worth */
            if (f[4].val)
                f_u32(x, &f[4], 0, 100000000, &burst);
            gh_gcra_t g;
            if (gh_gcra_init(&g, (double)quota / period, burst) == 0) {
                t->flags.limit_interval_ns = g.interval_ns;
                t->flags.limit_tolerance_ns = g.tolerance_ns;
            }
        }
    } else if (f[4].val) {
        err(x, f[4].val, "burst needs a rate_limit");
    }
    if (!!f[0].val == !!f[1].val) {
        err(x, n, "give one of file (a flagd definition, JSON) or definition (the same, inline)");
        return;
    }
    gh_flags_errors_t fe = {0};
    gh_flagset_t *set = NULL;
    yaml_node_t *at = f[0].val ? f[0].val : f[1].val;
    struct gh_conf_owned *own = owned(x, free_flagset);
    if (f[0].val) {
        size_t o = path_key(x, "file");
        char *file = NULL;
        if (get_str(x, f[0].val, &file, NULL, false, false)) {
            FILE *fp = fopen(file, "rb");
            struct stat st;
            if (!fp || fstat(fileno(fp), &st) < 0 || st.st_size > (64 << 20)) {
                err(x, f[0].val, "cannot read %s: %s", q(x, file, strlen(file)), fp ? "over 64 MiB" : strerror(errno));
            } else {
                char *text = malloc((size_t)st.st_size + 1);
                size_t got = text ? fread(text, 1, (size_t)st.st_size, fp) : 0;
                if (text && got == (size_t)st.st_size) {
                    gh_flags_load(file, text, got, &set, &fe);
                    t->flags.file = file;
                    t->flags.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                    t->flags.size = (int64_t)st.st_size;
                    x->c->nflag_files++;
                } else {
                    err(x, f[0].val, "cannot read %s", q(x, file, strlen(file)));
                }
                free(text);
            }
            if (fp)
                fclose(fp);
        }
        path_pop(x, o);
    } else {
        size_t o = path_key(x, "definition");
        json_t *doc = yaml_to_json(x, f[1].val, 0);
        if (doc) {
            gh_flags_load_json("definition", doc, &set, &fe);
            json_decref(doc);
        }
        path_pop(x, o);
    }
    size_t o = path_key(x, f[0].val ? "file" : "definition");
    for (uint32_t i = 0; i < fe.n; i++)
        err(x, at, "%s", fe.msgs[i]);
    path_pop(x, o);
    gh_flags_errors_free(&fe);
    t->flags.set = own->obj = set;
    if (f[2].val) {
        size_t o2 = path_key(x, "api_keys");
        if (want_seq(x, f[2].val, false)) {
            size_t cnt = seq_len(f[2].val);
            t->flags.api_keys = xalloc(x, (cnt ? cnt : 1) * sizeof *t->flags.api_keys);
            for (size_t i = 0; i < cnt; i++) {
                size_t o3 = path_idx(x, i);
                char *k = NULL;
                size_t kl = 0;
                if (get_str(x, node(x, f[2].val->data.sequence.items.start[i]), &k, &kl, false, false)) {
                    if (kl < 16)
                        err(x, node(x, f[2].val->data.sequence.items.start[i]), "an API key needs at least 16 characters");
                    else
                        t->flags.api_keys[t->flags.napi_keys++] = k;
                }
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
    }
}

/* An experiment metric's value source: {event, value} | {path} | {edge}. */
static void parse_xsource(ctx_t *x, yaml_node_t *ev, yaml_node_t *val, yaml_node_t *path, yaml_node_t *edge,
                          yaml_node_t *at, gh_conf_xsource_t *s)
{
    int given = !!ev + !!path + !!edge;
    if (given != 1) {
        err(x, at, "give one of event (an event definition's name), path (a path prefix) or edge (requests, "
                   "errors, latency_ms, bytes)");
        return;
    }
    if (ev) {
        size_t o = path_key(x, "event");
        size_t len = 0;
        if (get_str(x, ev, &s->event, &len, false, false)) {
            s->source = GH_XS_EVENT;
            s->event_h = gh_exp_hash(s->event, len);
        }
        path_pop(x, o);
        if (val) {
            o = path_key(x, "value");
            get_str(x, val, &s->field, NULL, false, false);
            path_pop(x, o);
        }
    } else if (val) {
        size_t o = path_key(x, "value");
        err(x, val, "value (a payload field) goes with event");
        path_pop(x, o);
    }
    if (path) {
        size_t o = path_key(x, "path");
        if (get_str(x, path, &s->path, &s->path_len, false, false)) {
            if (s->path[0] != '/' || s->path_len > 64)
                err(x, path, "expected a path prefix starting with / (at most 64 bytes), got %s", q(x, s->path, s->path_len));
            else
                s->source = GH_XS_PATH;
        }
        path_pop(x, o);
    }
    if (edge) {
        size_t o = path_key(x, "edge");
        if (!is_scalar(edge)) {
            err(x, edge, "expected requests, errors, latency_ms or bytes, got %s", kind(edge));
        } else {
            const char *v = sv(edge);
            size_t n = sl(edge);
            s->source = seq_eq(v, n, "requests") ? GH_XS_REQUESTS : seq_eq(v, n, "errors") ? GH_XS_ERRORS
                      : seq_eq(v, n, "latency_ms") ? GH_XS_LATENCY : seq_eq(v, n, "bytes") ? GH_XS_BYTES : 0;
            if (!s->source)
                err(x, edge, "expected requests, errors, latency_ms or bytes, got %s", q(x, v, n));
        }
        path_pop(x, o);
    }
}

static bool f_time(ctx_t *x, field_t *f, int64_t *out_ms)
{
    if (!f->val)
        return false;
    size_t o = path_key(x, f->name);
    bool ok = false;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = is_scalar(f->val) ? strptime(sv(f->val), "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (!end || *end)
        err(x, f->val, "expected a UTC time like 2026-11-01T00:00:00Z");
    else
        *out_ms = (int64_t)timegm(&tm) * 1000, ok = true;
    path_pop(x, o);
    return ok;
}

/* tenant experiments: [{id, flag, variants, weights, start, stop, alpha, n_star, metrics}] */
static void parse_experiments(ctx_t *x, yaml_node_t *n, gh_conf_tenant_t *t)
{
    if (!want_seq(x, n, false))
        return;
    size_t cnt = seq_len(n);
    t->experiments = xalloc(x, (cnt ? cnt : 1) * sizeof *t->experiments);
    for (size_t i = 0; i < cnt; i++) {
        size_t o = path_idx(x, i);
        yaml_node_t *en = node(x, n->data.sequence.items.start[i]);
        gh_conf_experiment_t *e = &t->experiments[t->nexperiments];
        memset(e, 0, sizeof *e);
        field_t f[] = {F("id"), F("flag"), F("variants"), F("weights"), F("start"), F("stop"), F("alpha"), F("n_star"),
                       F("metrics")};
        if (!fields(x, en, f, GH_ARRAY_LEN(f))) {
            path_pop(x, o);
            continue;
        }
        bool ok = true;
        e->alpha = 0.05;
        e->n_star = 5000;
        if (!f[0].val || !f[1].val || !f[2].val || !f[8].val) {
            missing(x, en, !f[0].val ? "id" : !f[1].val ? "flag" : !f[2].val ? "variants" : "metrics");
            path_pop(x, o);
            continue;
        }
        ok &= f_name(x, &f[0], &e->id);
        for (uint32_t j = 0; ok && j < t->nexperiments; j++)
            if (!strcmp(t->experiments[j].id, e->id)) {
                size_t o2 = path_key(x, "id");
                err(x, f[0].val, "experiment id \"%s\" is used twice in tenant \"%s\"", e->id, t->name);
                path_pop(x, o2);
                ok = false;
            }
        if (f_str(x, &f[1], &e->flag, NULL, false) && gh_flags_has_variant(t->flags.set, e->flag, "") < 0) {
            size_t o2 = path_key(x, "flag");
            err(x, f[1].val, "tenant \"%s\" has no flag %s", t->name, q(x, e->flag, strlen(e->flag)));
            path_pop(x, o2);
            ok = false;
        }
        size_t o2 = path_key(x, "variants");
        if (want_seq(x, f[2].val, true)) {
            size_t nv = seq_len(f[2].val);
            if (nv < 2 || nv > 16) {
                err(x, f[2].val, "an experiment compares 2..16 variants (control first), got %zu", nv);
                ok = false;
            }
            e->variants = xalloc(x, nv * sizeof *e->variants);
            for (size_t v = 0; v < nv && ok; v++) {
                size_t o3 = path_idx(x, v);
                yaml_node_t *vn = node(x, f[2].val->data.sequence.items.start[v]);
                char *name = NULL;
                if (get_str(x, vn, &name, NULL, false, false)) {
                    if (e->flag && gh_flags_has_variant(t->flags.set, e->flag, name) == 0) {
                        err(x, vn, "flag %s has no variant %s", q(x, e->flag, strlen(e->flag)), q(x, name, strlen(name)));
                        ok = false;
                    }
                    for (uint32_t w = 0; w < e->nvariants; w++)
                        if (!strcmp(e->variants[w], name)) {
                            err(x, vn, "variant %s is listed twice", q(x, name, strlen(name)));
                            ok = false;
                        }
                    e->variants[e->nvariants++] = name;
                } else {
                    ok = false;
                }
                path_pop(x, o3);
            }
        } else {
            ok = false;
        }
        path_pop(x, o2);
        if (ok) {
            e->weights = xalloc(x, e->nvariants * sizeof *e->weights);
            double sum = 0;
            if (f[3].val) {
                o2 = path_key(x, "weights");
                if (want_seq(x, f[3].val, true) && seq_len(f[3].val) == e->nvariants) {
                    for (uint32_t v = 0; v < e->nvariants; v++) {
                        yaml_node_t *wn = node(x, f[3].val->data.sequence.items.start[v]);
                        char *endp = NULL;
                        double w = is_scalar(wn) ? strtod(sv(wn), &endp) : -1;
                        if (!endp || *endp || !(w > 0) || w > 1e9) {
                            size_t o3 = path_idx(x, v);
                            err(x, wn, "expected a positive weight");
                            path_pop(x, o3);
                            ok = false;
                        }
                        e->weights[v] = w;
                        sum += w;
                    }
                } else if (f[3].val->type == YAML_SEQUENCE_NODE) {
                    err(x, f[3].val, "give one weight per variant (%u)", e->nvariants);
                    ok = false;
                }
                path_pop(x, o2);
            } else {
                for (uint32_t v = 0; v < e->nvariants; v++)
                    e->weights[v] = 1, sum += 1;
            }
            for (uint32_t v = 0; ok && v < e->nvariants; v++)
                e->weights[v] /= sum;
        }
        if (f[4].val)
            ok &= f_time(x, &f[4], &e->start_ms);
        if (f[5].val)
            ok &= f_time(x, &f[5], &e->stop_ms);
        if (e->start_ms && e->stop_ms && e->stop_ms <= e->start_ms) {
            err(x, f[5].val, "stop must be after start");
            ok = false;
        }
        if (f[6].val)
            ok &= f_num(x, &f[6], 0.0001, 0.5, &e->alpha);
        if (f[7].val)
            ok &= f_num(x, &f[7], 10, 1e9, &e->n_star);
        o2 = path_key(x, "metrics");
        if (want_seq(x, f[8].val, true) && seq_len(f[8].val) > GH_EXP_METRICS_MAX) {
            err(x, f[8].val, "an experiment has at most %u metrics, got %zu", GH_EXP_METRICS_MAX, seq_len(f[8].val));
            ok = false;
        } else if (want_seq(x, f[8].val, true)) {
            size_t nm = seq_len(f[8].val);
            e->metrics = xalloc(x, nm * sizeof *e->metrics);
            for (size_t m = 0; m < nm; m++) {
                size_t o3 = path_idx(x, m);
                yaml_node_t *mn = node(x, f[8].val->data.sequence.items.start[m]);
                gh_conf_xmetric_t *mt = &e->metrics[e->nmetrics];
                memset(mt, 0, sizeof *mt);
                field_t g[] = {F("name"), F("kind"), F("event"), F("value"), F("path"), F("edge"), F("denominator"),
                               F("direction"), F("guardrail"), F("cuped")};
                if (fields(x, mn, g, GH_ARRAY_LEN(g))) {
                    bool mok = true;
                    mt->direction = 1;
                    if (!g[0].val || !g[1].val) {
                        missing(x, mn, !g[0].val ? "name" : "kind");
                        mok = false;
                    } else {
                        mok &= f_name(x, &g[0], &mt->name);
                        for (uint32_t j = 0; mok && j < e->nmetrics; j++)
                            if (!strcmp(e->metrics[j].name, mt->name)) {
                                err(x, g[0].val, "metric name \"%s\" is used twice", mt->name);
                                mok = false;
                            }
                        size_t o4 = path_key(x, "kind");
                        const char *k = is_scalar(g[1].val) ? sv(g[1].val) : "";
                        mt->kind = !strcmp(k, "conversion") ? GH_XK_CONVERSION : !strcmp(k, "mean") ? GH_XK_MEAN
                                 : !strcmp(k, "ratio")      ? GH_XK_RATIO
                                                            : 0;
                        if (!mt->kind) {
                            err(x, g[1].val, "expected conversion, mean or ratio");
                            mok = false;
                        }
                        path_pop(x, o4);
                    }
                    parse_xsource(x, g[2].val, g[3].val, g[4].val, g[5].val, mn, &mt->num);
                    if (mt->kind == GH_XK_RATIO) {
                        if (!g[6].val) {
                            missing(x, mn, "denominator");
                            mok = false;
                        } else {
                            size_t o4 = path_key(x, "denominator");
                            field_t d[] = {F("event"), F("value"), F("path"), F("edge")};
                            if (fields(x, g[6].val, d, GH_ARRAY_LEN(d)))
                                parse_xsource(x, d[0].val, d[1].val, d[2].val, d[3].val, g[6].val, &mt->den);
                            path_pop(x, o4);
                        }
                    } else if (g[6].val) {
                        size_t o4 = path_key(x, "denominator");
                        err(x, g[6].val, "a denominator is for kind: ratio");
                        path_pop(x, o4);
                        mok = false;
                    }
                    if (g[7].val) {
                        size_t o4 = path_key(x, "direction");
                        const char *d = is_scalar(g[7].val) ? sv(g[7].val) : "";
                        if (!strcmp(d, "increase"))
                            mt->direction = 1;
                        else if (!strcmp(d, "decrease"))
                            mt->direction = -1;
                        else {
                            err(x, g[7].val, "expected increase or decrease");
                            mok = false;
                        }
                        path_pop(x, o4);
                    }
                    f_bool(x, &g[8], &mt->guardrail);
                    f_bool(x, &g[9], &mt->cuped);
                    if (mt->cuped && (mt->kind != GH_XK_MEAN || mt->num.source != GH_XS_EVENT)) {
                        size_t o4 = path_key(x, "cuped");
                        err(x, g[9].val, "cuped needs kind: mean on an event (its value before exposure is the covariate)");
                        path_pop(x, o4);
                        mok = false;
                    }
                    if (mok && mt->num.source)
                        e->nmetrics++;
                }
                path_pop(x, o3);
            }
        }
        path_pop(x, o2);
        if (ok && e->nmetrics) {
            t->nexperiments++;
            x->c->exp.used = 1;
        }
        path_pop(x, o);
    }
}

int gh_conf_flag_files_changed(const gh_conf_t *c)
{
    for (uint32_t i = 0; i < c->ntenants; i++) {
        const gh_conf_tenant_t *t = &c->tenants[i];
        struct stat st;
        if (!t->flags.file || stat(t->flags.file, &st) < 0)
            continue; /* gone for a moment (replaced): keep the loaded one */
        if ((int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != t->flags.mtime_ns ||
            st.st_size != t->flags.size)
            return 1;
    }
    return 0;
}

static void parse_tenants(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    if (!want_seq(x, n, false))
        return;
    size_t cnt = seq_len(n);
    c->tenants = xalloc(x, (cnt ? cnt : 1) * sizeof *c->tenants);
    for (size_t i = 0; i < cnt; i++) {
        yaml_node_t *tn = node(x, n->data.sequence.items.start[i]);
        gh_conf_tenant_t *t = &c->tenants[c->ntenants];
        size_t o = path_idx(x, i);
        if (tn && tn->type == YAML_MAPPING_NODE && tn->start_mark.line == OVERLAY_LINE - 1) {
            /* an API tenant: its errors name it, the index means nothing to the API's caller */
            for (yaml_node_pair_t *p = tn->data.mapping.pairs.start; p < tn->data.mapping.pairs.top; p++) {
                yaml_node_t *k = node(x, p->key), *v = node(x, p->value);
                if (is_scalar(k) && seq_eq(sv(k), sl(k), "name") && is_scalar(v) && sl(v) <= MAX_NAME) {
                    path_pop(x, o);
                    snprintf(x->path + x->plen, sizeof x->path - x->plen, "[%.*s]", (int)sl(v), sv(v));
                    x->plen = strlen(x->path);
                }
            }
        }
        field_t f[] = {F("name"), F("sites"), F("protection"), F("cache"), F("flags"), F("experiments"), F("slos")};
        if (fields(x, tn, f, GH_ARRAY_LEN(f))) {
            if (f[6].val) {
                size_t o2 = path_key(x, "slos");
                parse_slos(x, f[6].val, &t->slos, &t->nslos);
                path_pop(x, o2);
            }
            if (f[4].val) {
                size_t o2 = path_key(x, "flags");
                parse_tenant_flags(x, f[4].val, t);
                path_pop(x, o2);
            }
            if (f[5].val) {
                size_t o2 = path_key(x, "experiments");
                if (!f[0].val || !f_name(x, &f[0], &t->name))
                    t->name = "(unnamed)";
                parse_experiments(x, f[5].val, t);
                path_pop(x, o2);
                for (uint32_t j = 0; j < t->nexperiments; j++) /* what the workers send the experiments */
                    for (uint32_t m = 0; m < t->experiments[j].nmetrics; m++) {
                        const gh_conf_xmetric_t *mt = &t->experiments[j].metrics[m];
                        for (int den = 0; den < 2; den++)
                            if (gh_conf_xpart_edge(mt, den)) {
                                const gh_conf_xsource_t *src = den ? &mt->den : &mt->num;
                                t->xedges = 1;
                                if (src->source == GH_XS_PATH)
                                    t->xpath_max = GH_MAX(t->xpath_max, (uint32_t)src->path_len);
                            }
                    }
            }
            if (f[3].val) {
                size_t o2 = path_key(x, "cache");
                field_t g[] = {F("targeted_header")};
                if (fields(x, f[3].val, g, 1) && g[0].val) {
                    size_t o3 = path_key(x, "targeted_header");
                    char *h = NULL;
                    size_t hl = 0;
                    if (get_str(x, g[0].val, &h, &hl, false, false)) {
                        if (!is_token(h, hl))
                            err(x, g[0].val, "expected a header field name, got %s", q(x, h, hl));
                        else
                            t->cache_targeted = h;
                    }
                    path_pop(x, o3);
                }
                path_pop(x, o2);
            }
            if (!f[0].val)
                missing(x, tn, "name");
            if (f_name(x, &f[0], &t->name)) {
                for (uint32_t j = 0; j < c->ntenants; j++)
                    if (strcmp(c->tenants[j].name, t->name) == 0) {
                        size_t o2 = path_key(x, "name");
                        err(x, f[0].val, "tenant name \"%s\" is used twice (also tenants[%u])",
                            t->name, j);
                        path_pop(x, o2);
                        break;
                    }
            } else {
                t->name = "(unnamed)";
            }
            t->name_xh = gh_exp_hash(t->name, strlen(t->name));
            if (f[2].val)
                parse_tenant_protection(x, f[2].val, t);
            if (f[1].val) {
                size_t o2 = path_key(x, "sites");
                yaml_node_t *sn = f[1].val;
                if (want_seq(x, sn, false)) {
                    size_t ns = seq_len(sn);
                    uint32_t route_counter = 0;
                    t->sites = xalloc(x, (ns ? ns : 1) * sizeof *t->sites);
                    for (size_t j = 0; j < ns; j++) {
                        size_t o3 = path_idx(x, j);
                        parse_site(x, node(x, sn->data.sequence.items.start[j]), t,
                                   c->ntenants, &route_counter);
                        path_pop(x, o3);
                    }
                }
                path_pop(x, o2);
            }
            t->index = c->ntenants;
            c->ntenants++;
        }
        path_pop(x, o);
    }
}

static uint32_t online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (uint32_t)n;
}

static void set_defaults(gh_conf_t *c)
{
    c->workers = online_cpus();
    c->drain_timeout = 30000;
    c->limits = (gh_conf_limits_t){8192, 32768, 100, 100ull << 20};
    c->timeouts = (gh_conf_timeouts_t){10000, 60000, 60000, 75000, 5000, 60000, 60000, 0};
    c->access_log.enabled = 1;
    c->access_log.path = "-";
    c->access_log.keep = 5;
    c->via = 1;
    c->http2.max_concurrent_streams = 100;
    c->http2.initial_window_size = 65535;
    c->http2.max_header_list_size = 32768;
    c->http2.max_resets = 200;
    c->http2.max_control_frames = 1000;
    c->http2.max_continuations = 16;
    c->resolver.timeout = 2000;
    c->resolver.min_ttl = 1000;
    c->resolver.max_ttl = 300000;
    c->protect.max_keys = 1000000;
    c->protect.redis_sync = 50;
    c->protect.redis_fail_open = 1;
    c->cache.memory = 256ull << 20;
}

/* resolver: {nameservers: ["127.0.0.1:53", ...], timeout, min_ttl, max_ttl} (discovery: dns) */
static void parse_resolver(ctx_t *x, yaml_node_t *n)
{
    gh_conf_t *c = x->c;
    field_t f[] = {F("nameservers"), F("timeout"), F("min_ttl"), F("max_ttl")};
    x->resolver_node = n;
    if (!fields(x, n, f, GH_ARRAY_LEN(f)))
        return;
    if (f[0].val) {
        size_t o = path_key(x, "nameservers");
        if (want_seq(x, f[0].val, true)) {
            size_t cnt = seq_len(f[0].val), cap = cnt * (HOST_MAX + 10) + 1, used = 0;
            char *csv = xalloc(x, cap);
            for (size_t i = 0; i < cnt; i++) {
                yaml_node_t *v = node(x, f[0].val->data.sequence.items.start[i]);
                size_t o2 = path_idx(x, i);
                struct sockaddr_storage ss;
                socklen_t len;
                char *a = NULL;
                if (get_str(x, v, &a, NULL, false, false)) {
                    char host[HOST_MAX];
                    uint16_t port;
                    int bracket;
                    struct in6_addr tmp;
                    const char *why = split_hostport(a, host, &port, &bracket);
                    if (!why && inet_pton(AF_INET, host, &tmp) != 1 && inet_pton(AF_INET6, host, &tmp) != 1)
                        why = "a nameserver must be an IP address with a port, e.g. 127.0.0.1:53 or [::1]:53";
                    if (!why)
                        why = parse_addr(a, &ss, &len);
                    if (why)
                        err(x, v, "bad nameserver %s: %s", q(x, a, strlen(a)), why);
                    else
                        used += (size_t)snprintf(csv + used, cap - used, "%s%s", used ? "," : "", a);
                }
                path_pop(x, o2);
            }
            c->resolver.nameservers = csv;
        }
        path_pop(x, o);
    }
    f_dur(x, &f[1], false, &c->resolver.timeout);
    f_dur(x, &f[2], false, &c->resolver.min_ttl);
    f_dur(x, &f[3], false, &c->resolver.max_ttl);
    if (c->resolver.max_ttl < c->resolver.min_ttl) {
        size_t o = path_key(x, "max_ttl");
        err(x, f[3].val ? f[3].val : n, "max_ttl must not be below min_ttl");
        path_pop(x, o);
    }
}

static void parse_root(ctx_t *x, yaml_node_t *root)
{
    gh_conf_t *c = x->c;
    enum { WORKERS, PID, DRAIN, VIA, LIMITS, TIMEOUTS, TRUSTED, ALOG, ADMIN, DEMO, LISTENERS, UPSTREAMS, TENANTS,
           RESOLVER, HTTP2, PROTECTION, CACHE, OFREP, GRPC, ELOG, EXPS, TRACING, NODE, EVENTS, NF };
    field_t f[NF] = {F("workers"),   F("pid_file"),        F("drain_timeout"), F("via"),
                     F("limits"),    F("timeouts"),        F("trusted_proxies"), F("access_log"),
                     F("admin"),     F("demo_origin"),     F("listeners"),     F("upstreams"),
                     F("tenants"),   F("resolver"),        F("http2"),         F("protection"),
                     F("cache"),     F("ofrep"),           F("flagd_grpc"),    F("exposure_log"),
                     F("experiments"), F("tracing"),       F("node"),          F("events")};
    if (!root || root->type != YAML_MAPPING_NODE) {
        err(x, root, "the configuration must be a mapping, got %s", kind(root));
        return;
    }
    fields(x, root, f, NF);
    f_u32(x, &f[WORKERS], 1, 256, &c->workers);
    f_str(x, &f[PID], &c->pid_file, NULL, false);
    f_dur(x, &f[DRAIN], true, &c->drain_timeout);
    f_bool(x, &f[VIA], &c->via);
    size_t o;
    if (f[LIMITS].val) {
        o = path_key(x, "limits");
        parse_limits(x, f[LIMITS].val, &c->limits);
        path_pop(x, o);
    }
    if (f[TIMEOUTS].val) {
        o = path_key(x, "timeouts");
        parse_timeouts(x, f[TIMEOUTS].val, &c->timeouts, NULL);
        path_pop(x, o);
    }
    if (f[TRUSTED].val) {
        o = path_key(x, "trusted_proxies");
        parse_trusted(x, f[TRUSTED].val);
        path_pop(x, o);
    }
    if (f[ALOG].val) {
        o = path_key(x, "access_log");
        parse_access_log(x, f[ALOG].val);
        path_pop(x, o);
    }
    f_str(x, &f[ELOG], &c->exposure_log, NULL, false);
    if (f[TRACING].val)
        parse_tracing(x, f[TRACING].val);
    if (!f_name(x, &f[NODE], &c->node)) {
        char host[256] = "gatehouse";
        if (gethostname(host, sizeof host - 1) < 0 || !host[0])
            strcpy(host, "gatehouse");
        host[sizeof host - 1] = '\0';
        c->node = xstrndup(x, host, strlen(host));
    }
    if (f[EVENTS].val) {
        o = path_key(x, "events");
        parse_events(x, f[EVENTS].val);
        path_pop(x, o);
    }
    if (f[EXPS].val) { /* experiments: {store, audit_log} */
        o = path_key(x, "experiments");
        field_t g[] = {F("store"), F("audit_log")};
        if (fields(x, f[EXPS].val, g, GH_ARRAY_LEN(g))) {
            f_str(x, &g[0], &c->exp.store, NULL, false);
            f_str(x, &g[1], &c->exp.audit_log, NULL, false);
        }
        path_pop(x, o);
    }

    /* listeners: proxy ones first, then admin, then demo */
    yaml_node_t *ln = f[LISTENERS].val;
    size_t nl = (ln && ln->type == YAML_SEQUENCE_NODE ? seq_len(ln) : 0) + 4; /* + admin, demo, ofrep, flagd_grpc */
    c->listeners = xalloc(x, nl * sizeof *c->listeners);
    x->lnodes = talloc(x, nl * sizeof *x->lnodes);
    x->lpaths = talloc(x, nl * sizeof *x->lpaths);
    if (!ln) {
        if (!f[OFREP].val && !f[GRPC].val) /* a flags-only gateway (gatehouse flags) needs no proxy listener */
            missing(x, root, "listeners");
    } else {
        o = path_key(x, "listeners");
        if (want_seq(x, ln, false)) {
            if (seq_len(ln) == 0 && !f[OFREP].val && !f[GRPC].val)
                err(x, ln, "at least one proxy listener is required");
            for (size_t i = 0; i < seq_len(ln); i++) {
                size_t o2 = path_idx(x, i);
                parse_listener(x, node(x, ln->data.sequence.items.start[i]), GH_LISTEN_PROXY, i);
                path_pop(x, o2);
            }
        }
        path_pop(x, o);
    }
    if (f[ADMIN].val) {
        o = path_key(x, "admin");
        parse_listener(x, f[ADMIN].val, GH_LISTEN_ADMIN, 0);
        path_pop(x, o);
    }
    if (f[DEMO].val) {
        o = path_key(x, "demo_origin");
        parse_listener(x, f[DEMO].val, GH_LISTEN_DEMO, 0);
        path_pop(x, o);
    }
    if (f[OFREP].val) {
        o = path_key(x, "ofrep");
        parse_listener(x, f[OFREP].val, GH_LISTEN_OFREP, 0);
        path_pop(x, o);
    }
    c->flagd_grpc_keepalive = 15000;
    if (f[GRPC].val) {
        o = path_key(x, "flagd_grpc");
        parse_listener(x, f[GRPC].val, GH_LISTEN_GRPC, 0);
        path_pop(x, o);
    }
    check_listeners(x);

    if (f[HTTP2].val) {
        o = path_key(x, "http2");
        field_t g[] = {F("max_concurrent_streams"), F("initial_window_size"), F("max_header_list_size"),
                       F("max_resets"), F("max_control_frames"), F("max_continuations")};
        if (fields(x, f[HTTP2].val, g, GH_ARRAY_LEN(g))) {
            uint64_t v;
            f_u32(x, &g[0], 1, 10000, &c->http2.max_concurrent_streams);
            f_u32(x, &g[1], 1024, 0x7fffffff, &c->http2.initial_window_size);
            if (f_size(x, &g[2], 1024, 16u << 20, &v))
                c->http2.max_header_list_size = (uint32_t)v;
            f_u32(x, &g[3], 1, 1000000, &c->http2.max_resets);
            f_u32(x, &g[4], 1, 1000000, &c->http2.max_control_frames);
            f_u32(x, &g[5], 1, 1000, &c->http2.max_continuations);
        }
        path_pop(x, o);
    }
    if (f[RESOLVER].val) {
        o = path_key(x, "resolver");
        parse_resolver(x, f[RESOLVER].val);
        path_pop(x, o);
    }
    if (f[UPSTREAMS].val) {
        o = path_key(x, "upstreams");
        parse_upstreams(x, f[UPSTREAMS].val);
        path_pop(x, o);
    }
    if (f[PROTECTION].val)
        parse_protection_root(x, f[PROTECTION].val);
    if (f[CACHE].val) {
        o = path_key(x, "cache");
        field_t g[] = {F("memory"), F("max_object")};
        if (fields(x, f[CACHE].val, g, GH_ARRAY_LEN(g))) {
            f_size(x, &g[0], 1u << 20, 1ull << 40, &c->cache.memory);
            f_size(x, &g[1], 1, 1ull << 32, &c->cache.max_object);
        }
        path_pop(x, o);
    }
    if (!c->cache.max_object)
        c->cache.max_object = GH_MIN(16ull << 20, c->cache.memory / 8);
    if (f[TENANTS].val) {
        o = path_key(x, "tenants");
        parse_tenants(x, f[TENANTS].val);
        path_pop(x, o);
    }
    check_dup_hosts(x);
}

/* ---------------------------------------------------------------- entry points */

static int err_cmp(const void *a, const void *b)
{
    const cerr_t *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static ctx_t *ctx_new(const char *file)
{
    ctx_t *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->file = file;
    x->a = calloc(1, sizeof *x->a);
    x->tmp = calloc(1, sizeof *x->tmp);
    if (!x->a || !x->tmp) {
        free(x->a);
        free(x->tmp);
        free(x);
        return NULL;
    }
    return x;
}

/* Hands the errors over to errs (sorted by position) and frees the context; the
 * snapshot's arena too unless keep. */
static void ctx_end(ctx_t *x, gh_conf_errors_t *errs, bool keep)
{
    if (x->nerrs)
        qsort(x->errs, x->nerrs, sizeof *x->errs, err_cmp);
    size_t i = 0;
    if (errs && x->nerrs) {
        char **m = realloc(errs->msgs, (errs->n + x->nerrs) * sizeof *m);
        if (m) {
            errs->msgs = m;
            for (; i < x->nerrs; i++)
                errs->msgs[errs->n++] = x->errs[i].msg;
        }
    }
    for (; i < x->nerrs; i++)
        free(x->errs[i].msg);
    free(x->errs);
    if (!keep)
        arena_destroy(x->a);
    arena_destroy(x->tmp);
    free(x);
}

/* The hash policy's Maglev table, copied into the snapshot's arena. */
static int build_maglev(ctx_t *x, gh_conf_upstream_t *u)
{
    if (!u->nbackends)
        return 0;
    const char **names = talloc(x, u->nbackends * sizeof(*names));
    uint32_t *weights = talloc(x, u->nbackends * sizeof(*weights));
    for (uint32_t i = 0; i < u->nbackends; i++) {
        names[i] = u->backends[i].name;
        weights[i] = u->backends[i].weight;
    }
    uint32_t size = gh_maglev_size(u->nbackends);
    uint32_t *t = gh_maglev_build(names, weights, u->nbackends, size);
    if (!t)
        return GH_ENOMEM;
    u->maglev = xalloc(x, size * sizeof(*t));
    memcpy(u->maglev, t, size * sizeof(*t));
    u->maglev_size = size;
    free(t);
    return 0;
}

static void (*tls_hello)(SSL *, void *); /* gh_conf_set_tls_hello */

void gh_conf_set_tls_hello(void (*fn)(struct ssl_st *, void *)) { tls_hello = fn; }

static void free_tls(gh_conf_t *c)
{
    for (uint32_t i = 0; i < c->nlisteners; i++) {
        gh_tls_server_free(c->listeners[i].tls_server);
        c->listeners[i].tls_server = NULL;
    }
    for (uint32_t i = 0; i < c->nupstreams; i++) {
        gh_tls_client_free(c->upstreams[i].tls_client);
        c->upstreams[i].tls_client = NULL;
    }
}

static uint64_t tag_mix(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull;
}

/* Upstream TLS: the client of each pool, and the name each backend is verified as. */
static int build_upstream_tls(ctx_t *x)
{
    gh_conf_t *c = x->c;
    for (uint32_t i = 0; i < c->nupstreams; i++) {
        gh_conf_upstream_t *u = &c->upstreams[i];
        if (!u->tls.enabled)
            continue;
        static const char *const h2[] = {"h2"};
        gh_tls_client_conf_t cc = {.ca_file = u->tls.ca, .insecure = !u->tls.verify, .cert_file = u->tls.cert,
                                   .key_file = u->tls.key, .min_version = u->tls.min_version,
                                   .alpn = u->http2 ? h2 : NULL, .nalpn = u->http2 ? 1 : 0};
        char why[256] = "";
        if (!(u->tls_client = gh_tls_client_new(&cc, why, sizeof why))) {
            char path[300];
            snprintf(path, sizeof path, "upstreams.%s.tls", u->name);
            errat(x, 0, 0, path, "%s", why);
            continue;
        }
        uint64_t h = 0xcbf29ce484222325ull;
        h = tag_mix(h, u->tls.server_name);
        h = tag_mix(h, u->tls.ca);
        h = tag_mix(h, u->tls.verify ? "v" : "-");
        h = tag_mix(h, u->tls.cert);
        h = tag_mix(h, u->tls.key);
        h = tag_mix(h, u->tls.min_version == TLS1_3_VERSION ? "13" : "12");
        h = tag_mix(h, u->http2 ? "h2" : "h1");
        u->tls.tag = h | 1; /* never 0: that is plain TCP */
        for (uint32_t k = 0; k < u->nbackends; k++) {
            gh_conf_backend_t *b = &u->backends[k];
            if (u->tls.server_name) {
                b->tls_name = u->tls.server_name;
                continue;
            }
            char host[HOST_MAX];
            uint16_t port;
            int bracket;
            if (!split_hostport(b->dns_name ? b->dns_name : b->name, host, &port, &bracket))
                b->tls_name = xstrndup(x, host, strlen(host));
        }
    }
    return x->nerrs ? GH_ECONFIG : 0;
}

/* The TLS server of each TLS listener: the listener's certificate (the default when
 * set), then every site's, answering the site's host names by SNI. Without a
 * listener certificate the default is the certificate of the first catch-all ("*")
 * site, else the first one. */
static int build_tls(ctx_t *x)
{
    gh_conf_t *c = x->c;
    size_t ncerts = 1;
    for (uint32_t t = 0; t < c->ntenants; t++)
        ncerts += c->tenants[t].nsites;
    gh_tls_cert_conf_t *certs = talloc(x, ncerts * sizeof *certs);
    for (uint32_t i = 0; i < c->nlisteners; i++) {
        gh_conf_listener_t *l = &c->listeners[i];
        if (!l->tls.enabled)
            continue;
        size_t n = 0, def = SIZE_MAX;
        if (l->tls.cert) {
            certs[n++] = (gh_tls_cert_conf_t){l->tls.cert, l->tls.key, NULL, 0};
            def = 0;
        }
        for (uint32_t t = 0; t < c->ntenants; t++)
            for (uint32_t k = 0; k < c->tenants[t].nsites; k++) {
                gh_conf_site_t *s = &c->tenants[t].sites[k];
                if (!s->tls_cert)
                    continue;
                const char **names = talloc(x, (s->nhosts ? s->nhosts : 1) * sizeof *names);
                size_t nn = 0;
                for (uint32_t h = 0; h < s->nhosts; h++) {
                    if (s->hosts[h].any) {
                        if (def == SIZE_MAX)
                            def = n;
                        continue;
                    }
                    if (s->hosts[h].wildcard) { /* stored as ".example.com" */
                        char *w = talloc(x, s->hosts[h].len + 2);
                        w[0] = '*';
                        memcpy(w + 1, s->hosts[h].name, s->hosts[h].len + 1);
                        names[nn++] = w;
                    } else {
                        names[nn++] = s->hosts[h].name;
                    }
                }
                if (!nn) { /* a catch-all site only: its certificate's own names (never empty) */
                    certs[n++] = (gh_tls_cert_conf_t){s->tls_cert, s->tls_key, NULL, 0};
                    continue;
                }
                certs[n++] = (gh_tls_cert_conf_t){s->tls_cert, s->tls_key, names, nn};
            }
        if (!n) {
            char path[64];
            snprintf(path, sizeof path, "listeners.%s.tls", l->name);
            errat(x, 0, 0, path, "a TLS listener needs a certificate: set tls.cert and tls.key, or tls on a site");
            continue;
        }
        static const char *const both[] = {"h2", "http/1.1"}, *const h2[] = {"h2"}, *const h1[] = {"http/1.1"};
        const char *const *alpn = l->tls.alpn_h2 && l->tls.alpn_h1 ? both : l->tls.alpn_h2 ? h2 : h1;
        gh_tls_server_conf_t sc = {
            .certs = certs,
            .ncerts = n,
            .default_cert = def == SIZE_MAX ? 0 : def,
            .alpn = alpn,
            .nalpn = l->tls.alpn_h2 && l->tls.alpn_h1 ? 2 : 1,
            .min_version = l->tls.min_version,
            .ciphers = l->tls.ciphers,
            .ciphersuites = l->tls.ciphersuites,
            .no_tickets = !l->tls.session_tickets,
            .on_hello = tls_hello,
        };
        char why[256] = "";
        if (!(l->tls_server = gh_tls_server_new(&sc, why, sizeof why))) {
            char path[64];
            snprintf(path, sizeof path, "listeners.%s.tls", l->name);
            errat(x, 0, 0, path, "%s", why);
        }
    }
    return x->nerrs ? GH_ECONFIG : 0;
}

/* Builds the router: the last step of every load. */
static int compile(ctx_t *x, gh_conf_errors_t *errs)
{
    gh_conf_t *c = x->c;
    if (x->nerrs)
        return GH_ECONFIG;
    for (uint32_t i = 0; i < c->nupstreams; i++)
        if (c->upstreams[i].balance == GH_BALANCE_HASH && build_maglev(x, &c->upstreams[i]) < 0)
            return GH_ENOMEM;
    int rc = gh_router_build(c, errs);
    if (rc != 0) {
        gh_router_free(c);
        return rc;
    }
    if ((rc = build_tls(x)) != 0 || (rc = build_upstream_tls(x)) != 0) {
        free_tls(c);
        gh_router_free(c);
        return rc;
    }
    if ((rc = gh_protect_build(c, errs)) != 0) {
        gh_protect_free(c);
        free_tls(c);
        gh_router_free(c);
        return rc;
    }
    c->refs = 1;
    return 0;
}

/* 1-based line and column of byte offset off in src. */
static void offset_pos(const char *src, size_t len, size_t off, uint32_t *line, uint32_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (src[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void yaml_cleanup(ctx_t *x)
{
    if (x->have_doc2)
        yaml_document_delete(&x->ydoc2);
    if (x->have_doc)
        yaml_document_delete(&x->ydoc);
    if (x->have_parser)
        yaml_parser_delete(&x->parser);
    x->have_doc = x->have_doc2 = x->have_parser = 0;
    x->doc = NULL;
}

static void syntax_error(ctx_t *x)
{
    yaml_parser_t *p = &x->parser;
    uint32_t line, col;
    if (p->error == YAML_MEMORY_ERROR)
        longjmp(x->oom, 1);
    if (p->error == YAML_READER_ERROR) {
        offset_pos(x->src, x->srclen, p->problem_offset, &line, &col);
    } else {
        line = (uint32_t)p->problem_mark.line + 1;
        col = (uint32_t)p->problem_mark.column + 1;
    }
    if (p->context && (p->context_mark.line + 1 != line || p->context_mark.column + 1 != col))
        errat(x, line, col, NULL, "YAML syntax error: %s %s (line %u, column %u)",
              p->problem ? p->problem : "error", p->context, (unsigned)p->context_mark.line + 1,
              (unsigned)p->context_mark.column + 1);
    else if (p->context)
        errat(x, line, col, NULL, "YAML syntax error: %s %s", p->problem ? p->problem : "error",
              p->context);
    else
        errat(x, line, col, NULL, "YAML syntax error: %s", p->problem ? p->problem : "error");
}

/* ---------------------------------------------------------------- API overlay */

static bool hexval(char ch, uint8_t *v);

/* A JSON value as nodes of the document (strings quoted, so "true" stays a string; numbers,
 * booleans and null plain), marked as the API's. The node id, 0 on failure. */
static int overlay_node(yaml_document_t *d, json_t *j, int depth)
{
    int id = 0;
    char num[64];
    if (depth > 64)
        return 0;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        id = yaml_document_add_mapping(d, NULL, YAML_FLOW_MAPPING_STYLE);
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            int kid = yaml_document_add_scalar(d, NULL, (yaml_char_t *)k, (int)strlen(k), YAML_DOUBLE_QUOTED_SCALAR_STYLE);
            int vid = overlay_node(d, v, depth + 1);
            if (!id || !kid || !vid || !yaml_document_append_mapping_pair(d, id, kid, vid))
                return 0;
            yaml_document_get_node(d, kid)->start_mark.line = OVERLAY_LINE - 1;
        }
        break;
    }
    case JSON_ARRAY: {
        id = yaml_document_add_sequence(d, NULL, YAML_FLOW_SEQUENCE_STYLE);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            int vid = overlay_node(d, v, depth + 1);
            if (!id || !vid || !yaml_document_append_sequence_item(d, id, vid))
                return 0;
        }
        break;
    }
    case JSON_STRING:
        id = yaml_document_add_scalar(d, NULL, (yaml_char_t *)json_string_value(j), (int)json_string_length(j),
                                      YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        id = yaml_document_add_scalar(d, NULL, (yaml_char_t *)num, (int)strlen(num), YAML_PLAIN_SCALAR_STYLE);
        break;
    case JSON_REAL:
        snprintf(num, sizeof num, "%.17g", json_real_value(j));
        id = yaml_document_add_scalar(d, NULL, (yaml_char_t *)num, (int)strlen(num), YAML_PLAIN_SCALAR_STYLE);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
    case JSON_NULL: {
        const char *t = json_is_true(j) ? "true" : json_is_false(j) ? "false" : "null";
        id = yaml_document_add_scalar(d, NULL, (yaml_char_t *)t, (int)strlen(t), YAML_PLAIN_SCALAR_STYLE);
        break;
    }
    }
    if (id)
        yaml_document_get_node(d, id)->start_mark.line = OVERLAY_LINE - 1;
    return id;
}

/* Layer the overlay {"upstreams": {NAME: {...}}, "tenants": [{...}]} over the file's root
 * mapping: its upstreams join the root's upstreams map, its tenants the root's tenants list
 * (names that clash are then duplicate-key or duplicate-tenant errors). */
static void merge_overlay(ctx_t *x)
{
    json_error_t je;
    json_t *o = json_loadb(x->overlay, x->overlay_len, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        errat(x, OVERLAY_LINE, 0, NULL, "the stored API objects are not a JSON object: %s", o ? "wrong type" : je.text);
        json_decref(o);
        return;
    }
    yaml_document_t *d = &x->ydoc;
    yaml_node_t *root = yaml_document_get_root_node(d);
    if (!root || root->type != YAML_MAPPING_NODE) {
        json_decref(o);
        return; /* parse_root says what is wrong with the file */
    }
    /* the tenants' API keys that work on the flag listeners (hashes only) */
    json_t *ks = json_object_get(o, "keys");
    if (json_array_size(ks)) {
        x->c->keys = xalloc(x, json_array_size(ks) * sizeof *x->c->keys);
        size_t i;
        json_t *k;
        json_array_foreach(ks, i, k) {
            const char *t = json_string_value(json_object_get(k, "tenant"));
            const char *h = json_string_value(json_object_get(k, "hash"));
            gh_conf_key_t *kd = &x->c->keys[x->c->nkeys];
            bool ok = t && h && strlen(h) == 64;
            for (int b = 0; ok && b < 32; b++) {
                uint8_t hi = 0, lo = 0;
                ok = hexval(h[2 * b], &hi) && hexval(h[2 * b + 1], &lo);
                kd->hash[b] = (uint8_t)(hi << 4 | lo);
            }
            if (!ok) {
                errat(x, OVERLAY_LINE, 0, "keys", "a stored key record is malformed");
                continue;
            }
            kd->tenant = xstrndup(x, t, strlen(t));
            kd->scopes = (unsigned)json_integer_value(json_object_get(k, "scopes"));
            kd->expires = (int64_t)json_integer_value(json_object_get(k, "expires"));
            x->c->nkeys++;
        }
    }
    static const char *const keys[] = {"upstreams", "tenants"};
    for (int k = 0; k < 2; k++) {
        json_t *add = json_object_get(o, keys[k]);
        if (!add || (k == 0 ? json_object_size(add) : json_array_size(add)) == 0)
            continue;
        if (k == 0 ? !json_is_object(add) : !json_is_array(add)) {
            errat(x, OVERLAY_LINE, 0, keys[k], "the stored API objects have the wrong type");
            continue;
        }
        int target = 0;
        root = yaml_document_get_root_node(d);
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(d, p->key);
            if (kn && kn->type == YAML_SCALAR_NODE && seq_eq(sv(kn), sl(kn), keys[k]))
                target = p->value;
        }
        yaml_node_t *t = target ? yaml_document_get_node(d, target) : NULL;
        if (t && is_null(t))
            t = NULL, target = 0; /* "tenants:" with nothing: replaced below */
        if (!t) {
            int kid = yaml_document_add_scalar(d, NULL, (yaml_char_t *)keys[k], (int)strlen(keys[k]), YAML_PLAIN_SCALAR_STYLE);
            target = k == 0 ? yaml_document_add_mapping(d, NULL, YAML_BLOCK_MAPPING_STYLE)
                            : yaml_document_add_sequence(d, NULL, YAML_BLOCK_SEQUENCE_STYLE);
            if (!kid || !target || !yaml_document_append_mapping_pair(d, 1, kid, target))
                longjmp(x->oom, 1);
            yaml_document_get_node(d, kid)->start_mark.line = OVERLAY_LINE - 1;
            yaml_document_get_node(d, target)->start_mark.line = OVERLAY_LINE - 1;
            t = yaml_document_get_node(d, target);
        }
        if (t->type != (k == 0 ? YAML_MAPPING_NODE : YAML_SEQUENCE_NODE))
            continue; /* the file's own type error is reported by parse_root */
        if (k == 0) {
            const char *name;
            json_t *v;
            json_object_foreach(add, name, v) {
                int kid = yaml_document_add_scalar(d, NULL, (yaml_char_t *)name, (int)strlen(name),
                                                   YAML_DOUBLE_QUOTED_SCALAR_STYLE);
                int vid = overlay_node(d, v, 0);
                if (!kid || !vid || !yaml_document_append_mapping_pair(d, target, kid, vid))
                    longjmp(x->oom, 1);
                yaml_document_get_node(d, kid)->start_mark.line = OVERLAY_LINE - 1;
            }
        } else {
            size_t i;
            json_t *v;
            json_array_foreach(add, i, v) {
                int vid = overlay_node(d, v, 0);
                if (!vid || !yaml_document_append_sequence_item(d, target, vid))
                    longjmp(x->oom, 1);
            }
        }
    }
    json_decref(o);
}

/* x is not modified after setjmp, so it is valid after a longjmp. */
static uint64_t dns_gen_counter; /* every load looks DNS names up with a new generation */

static void free_owned(gh_conf_t *c)
{
    for (struct gh_conf_owned *o = c->owned; o; o = o->next)
        if (o->obj)
            o->free(o->obj);
    c->owned = NULL;
}

static int load(ctx_t *x, const char *yaml, size_t len, gh_conf_t **out, gh_conf_errors_t *errs)
{
    if (setjmp(x->oom)) {
        if (x->c)
            free_owned(x->c);
        yaml_cleanup(x);
        ctx_end(x, NULL, false);
        return GH_ENOMEM;
    }
    x->src = yaml;
    x->srclen = len;
    x->c = xalloc(x, sizeof *x->c);
    x->c->arena = x->a;
    x->c->path = xstrndup(x, x->file, strlen(x->file));
    x->c->source = xstrndup(x, yaml, len);
    x->c->source_len = len;
    if (x->overlay) {
        x->c->overlay = xstrndup(x, x->overlay, x->overlay_len);
        x->c->overlay_len = x->overlay_len;
    }
    x->c->dns_gen = __atomic_add_fetch(&dns_gen_counter, 1, __ATOMIC_RELAXED);
    set_defaults(x->c);

    if (!yaml_parser_initialize(&x->parser))
        longjmp(x->oom, 1);
    x->have_parser = 1;
    yaml_parser_set_input_string(&x->parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&x->parser, &x->ydoc)) {
        syntax_error(x);
    } else {
        x->have_doc = 1;
        x->doc = &x->ydoc;
        if (x->overlay && yaml_document_get_root_node(&x->ydoc))
            merge_overlay(x);
        yaml_node_t *root = yaml_document_get_root_node(&x->ydoc);
        if (!root) {
            errat(x, 1, 1, NULL, "the configuration is empty");
        } else {
            parse_root(x, root);
            /* a second document would be silently ignored: refuse it */
            if (yaml_parser_load(&x->parser, &x->ydoc2)) {
                x->have_doc2 = 1;
                yaml_node_t *r2 = yaml_document_get_root_node(&x->ydoc2);
                if (r2)
                    errat(x, (uint32_t)r2->start_mark.line + 1, (uint32_t)r2->start_mark.column + 1,
                          NULL, "only one YAML document is allowed");
            } else {
                syntax_error(x);
            }
        }
    }
    yaml_cleanup(x);

    int rc = compile(x, errs);
    if (rc == 0)
        *out = x->c;
    else
        free_owned(x->c); /* a refused configuration: its flag sets too (the arena goes below) */
    ctx_end(x, errs, rc == 0);
    return rc;
}

int gh_conf_load_string(const char *name, const char *yaml, size_t len, gh_conf_t **out,
                        gh_conf_errors_t *errs)
{
    *out = NULL;
    ctx_t *x = ctx_new(name ? name : "<string>");
    if (!x)
        return GH_ENOMEM;
    return load(x, yaml ? yaml : "", yaml ? len : 0, out, errs);
}

int gh_conf_load_layered(const char *name, const char *yaml, size_t len, const char *overlay, size_t overlay_len,
                         gh_conf_t **out, gh_conf_errors_t *errs)
{
    *out = NULL;
    ctx_t *x = ctx_new(name ? name : "<string>");
    if (!x)
        return GH_ENOMEM;
    x->overlay = overlay;
    x->overlay_len = overlay ? overlay_len : 0;
    return load(x, yaml ? yaml : "", yaml ? len : 0, out, errs);
}

int gh_conf_load_file(const char *path, gh_conf_t **out, gh_conf_errors_t *errs)
{
    return gh_conf_load_file_layered(path, NULL, 0, out, errs);
}

int gh_conf_load_file_layered(const char *path, const char *overlay, size_t overlay_len, gh_conf_t **out,
                              gh_conf_errors_t *errs)
{
    *out = NULL;
    const char *why = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        why = strerror(errno);
    } else {
        struct stat st;
        if (fstat(fileno(fp), &st) != 0)
            why = strerror(errno);
        else if (!S_ISREG(st.st_mode))
            why = "not a regular file";
        else if ((uint64_t)st.st_size > MAX_FILE_SIZE)
            why = "file too large";
        else if (!(buf = malloc((size_t)st.st_size + 1)))
            why = "out of memory";
        else {
            len = fread(buf, 1, (size_t)st.st_size, fp);
            if (ferror(fp))
                why = strerror(errno);
        }
        fclose(fp);
    }
    if (why) {
        free(buf);
        if (errs) {
            char *s, **m;
            if (asprintf(&s, "%s:0:0: (root): cannot read the file: %s", path, why) < 0)
                return GH_ENOMEM;
            if (!(m = realloc(errs->msgs, (errs->n + 1) * sizeof *m))) {
                free(s);
                return GH_ENOMEM;
            }
            errs->msgs = m;
            errs->msgs[errs->n++] = s;
        }
        return GH_ECONFIG;
    }
    int rc = gh_conf_load_layered(path, buf, len, overlay, overlay_len, out, errs);
    free(buf);
    return rc;
}

int gh_conf_quick(const char *from, const char *const *to, int nto, gh_conf_t **out,
                  gh_conf_errors_t *errs)
{
    *out = NULL;
    ctx_t *x = ctx_new("<proxy>");
    if (!x)
        return GH_ENOMEM;
    if (setjmp(x->oom)) {
        ctx_end(x, NULL, false);
        return GH_ENOMEM;
    }
    gh_conf_t *c = x->c = xalloc(x, sizeof *c);
    c->arena = x->a;
    c->path = "<proxy>";
    set_defaults(c);
    c->access_log.enabled = 0;

    c->listeners = xalloc(x, sizeof *c->listeners);
    gh_conf_listener_t *l = &c->listeners[0];
    l->name = "http";
    l->role = GH_LISTEN_PROXY;
    l->backlog = 4096;
    l->listen = xstrndup(x, from ? from : "", from ? strlen(from) : 0);
    const char *why = parse_addr(l->listen, &l->addr, &l->addrlen);
    if (why)
        errat(x, 0, 0, "--from", "bad address %s: %s", q(x, l->listen, strlen(l->listen)), why);
    else
        c->nlisteners = 1;

    gh_conf_upstream_t *u = c->upstreams = xalloc(x, sizeof *u);
    c->nupstreams = 1;
    u->name = "default";
    upstream_defaults(u);
    u->backends = xalloc(x, (nto > 0 ? (size_t)nto : 1) * sizeof *u->backends);
    if (nto <= 0)
        errat(x, 0, 0, "--to", "at least one backend address is required");
    for (int i = 0; i < nto; i++) {
        gh_conf_backend_t *b = &u->backends[u->nbackends];
        const char *s = to[i] ? to[i] : "";
        b->name = xstrndup(x, s, strlen(s));
        b->weight = 1;
        why = parse_addr(b->name, &b->addr, &b->addrlen);
        if (why)
            errat(x, 0, 0, "--to", "bad address %s: %s", q(x, s, strlen(s)), why);
        else
            u->nbackends++;
    }

    gh_conf_tenant_t *t = c->tenants = xalloc(x, sizeof *t);
    c->ntenants = 1;
    t->name = "default";
    gh_conf_site_t *s = t->sites = xalloc(x, sizeof *s);
    t->nsites = 1;
    s->name = "*";
    s->tenant = t;
    s->hosts = xalloc(x, sizeof *s->hosts);
    s->hosts[0] = (gh_conf_host_t){.name = "*", .len = 1, .any = 1};
    s->nhosts = 1;
    gh_conf_route_t *r = s->routes = xalloc(x, sizeof *r);
    s->nroutes = 1;
    r->name = "default";
    r->site = s;
    r->tenant = t;
    r->upstream = u;
    r->max_body_size = c->limits.max_body_size;
    r->timeouts = c->timeouts;

    int rc = compile(x, errs);
    if (rc == 0)
        *out = c;
    ctx_end(x, errs, rc == 0);
    return rc;
}

void gh_conf_errors_free(gh_conf_errors_t *errs)
{
    if (!errs)
        return;
    for (uint32_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

void gh_conf_ref(gh_conf_t *c)
{
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void gh_conf_unref(gh_conf_t *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    arena_t *a = c->arena; /* c itself lives in the arena */
    free_owned(c);
    gh_protect_free(c);
    free_tls(c);
    gh_router_free(c);
    arena_destroy(a);
}
