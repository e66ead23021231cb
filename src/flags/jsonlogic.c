/* jsonlogic.c: the JsonLogic compiler and evaluator of flagd targeting rules.
 *
 * The reference is what @openfeature/flagd-core (npm, 4.x) computes: it runs rules on
 * json-logic-engine 5.0.7 in its compiled mode (engine.build), NOT on json-logic-js, and
 * registers flagd's four custom operators (fractional, sem_ver, starts_with, ends_with).
 * Where json-logic-engine throws (e.g. "abc" < 1, division by zero, max of a string),
 * flagd-core answers ERROR/GENERAL; we return GH_EINVAL. Rules json-logic-engine rejects
 * while building (unknown operator, a literal array in "+") are compile errors here.
 * Comments "(jle)" cite json-logic-engine's defaultMethods.js / legacy.js / downgrade.js,
 * "(fc)" flagd-core's targeting code (fractional.ts, sem-ver.ts, string-comp.ts).
 *
 * A compiled rule is an array of nodes (op, flags, a slice of child indexes, a literal);
 * literal sub-trees are folded into one gh_jv_t at compile time. Evaluation is recursive
 * (bounded by the rule's depth, itself bounded at compile time) and allocates only from
 * the caller's arena. The rule keeps a reference on the jansson values it points into. */
#include "flags/jsonlogic.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum {
    OP_LIT, OP_ARRAY, OP_VAR, OP_MISSING, OP_MISSING_SOME, OP_IF,
    OP_EQ, OP_SEQ, OP_NE, OP_SNE, OP_GT, OP_GE, OP_LT, OP_LE,
    OP_NOT, OP_NOTNOT, OP_OR, OP_AND, OP_MAX, OP_MIN,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_IN, OP_CAT, OP_SUBSTR, OP_MERGE,
    OP_MAP, OP_FILTER, OP_REDUCE, OP_ALL, OP_NONE, OP_SOME,
    OP_FRACTIONAL, OP_SEMVER, OP_STARTS, OP_ENDS,
};

static const struct {
    const char *name;
    uint8_t op;
} op_names[] = {
    {"var", OP_VAR}, {"missing", OP_MISSING}, {"missing_some", OP_MISSING_SOME}, {"if", OP_IF},
    {"?:", OP_IF}, {"==", OP_EQ}, {"===", OP_SEQ}, {"!=", OP_NE}, {"!==", OP_SNE}, {">", OP_GT},
    {">=", OP_GE}, {"<", OP_LT}, {"<=", OP_LE}, {"!", OP_NOT}, {"!!", OP_NOTNOT}, {"or", OP_OR},
    {"and", OP_AND}, {"max", OP_MAX}, {"min", OP_MIN}, {"+", OP_ADD}, {"-", OP_SUB}, {"*", OP_MUL},
    {"/", OP_DIV}, {"%", OP_MOD}, {"in", OP_IN}, {"cat", OP_CAT}, {"substr", OP_SUBSTR},
    {"merge", OP_MERGE}, {"map", OP_MAP}, {"filter", OP_FILTER}, {"reduce", OP_REDUCE},
    {"all", OP_ALL}, {"none", OP_NONE}, {"some", OP_SOME}, {"fractional", OP_FRACTIONAL},
    {"sem_ver", OP_SEMVER}, {"starts_with", OP_STARTS}, {"ends_with", OP_ENDS},
};

#define F_ARGS_ARRAY 1 /* the operator's argument was a JSON array (else a single value) */
#define F_VAR_STATIC 2 /* var with a literal key, pre-split into segments */
#define F_VAR_WHOLE 4  /* var "" / null: the whole data */
#define F_VAR_DEFAULT 8
#define F_DET0 16 /* json-logic-engine's isDeterministic(): constant, folded at compile */
#define F_DET1 32 /* the same inside an iterator's mapper (var reads the item) */
#define F_JSON_ARRAY 64 /* the node was a JSON array in the rule */
#define F_FOLDED 128     /* a literal computed at compile time (not written in the rule) */
#define F_THROWS 256     /* interpreter only: optimizing this node throws (see defer_pass) */

#define MAX_STR (1u << 24) /* longest string an operator builds */
#define MAX_CONV_DEPTH 128 /* nesting of context arrays converted to values */

typedef struct {
    uint8_t op;
    uint16_t flags;
    uint32_t nkids, kids; /* children: r->kids[kids .. kids+nkids) */
    uint32_t nseg, seg;   /* var: path segments r->segs[seg .. seg+nseg) */
    gh_jv_t lit;
} node_t;

typedef struct {
    uint32_t off, len; /* into r->pool */
} seg_t;

struct lit_block {
    struct lit_block *next;
    gh_jv_t v[];
};

struct gh_jl_rule {
    node_t *nodes;
    uint32_t nnodes, capnodes, root;
    uint32_t *kids;
    uint32_t nkids, capkids;
    seg_t *segs;
    uint32_t nsegs, capsegs;
    char *pool;
    size_t npool, cappool;
    struct lit_block *lits;
    json_t *rule_ref, *eval_ref;
};

/* ---------------------------------------------------------------- JS helpers */

static int is_ws(const unsigned char *p, size_t n, size_t *w)
{
    /* JS StrWhiteSpaceChar, ASCII plus NBSP, BOM, U+2028/9 as UTF-8 */
    if (p[0] == ' ' || (p[0] >= 9 && p[0] <= 13)) {
        *w = 1;
        return 1;
    }
    if (n >= 2 && p[0] == 0xC2 && p[1] == 0xA0) {
        *w = 2;
        return 1;
    }
    if (n >= 3 && ((p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) ||
                   (p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)))) {
        *w = 3;
        return 1;
    }
    return 0;
}

static gh_str_t js_trim(gh_str_t s)
{
    size_t w;
    while (s.n && is_ws((const unsigned char *)s.p, s.n, &w))
        s.p += w, s.n -= w;
    while (s.n) {
        const unsigned char *e = (const unsigned char *)s.p + s.n;
        if (e[-1] == ' ' || (e[-1] >= 9 && e[-1] <= 13))
            s.n--;
        else if (s.n >= 2 && e[-2] == 0xC2 && e[-1] == 0xA0)
            s.n -= 2;
        else if (s.n >= 3 && e[-3] >= 0xE0 && is_ws(e - 3, 3, &w) && w == 3)
            s.n -= 3;
        else
            break;
    }
    return s;
}

/* ECMAScript StringToNumber: "" -> 0, 0x/0o/0b, [+-]Infinity, decimal literals; else NaN. */
static double js_str_to_num(gh_str_t s)
{
    s = js_trim(s);
    if (s.n == 0)
        return 0;
    if (s.n > 2 && s.p[0] == '0' && strchr("xXoObB", s.p[1])) {
        int base = (s.p[1] | 32) == 'x' ? 16 : (s.p[1] | 32) == 'o' ? 8 : 2;
        double v = 0;
        for (size_t i = 2; i < s.n; i++) {
            int c = (unsigned char)s.p[i], d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if ((c | 32) >= 'a' && (c | 32) <= 'f')
                d = (c | 32) - 'a' + 10;
            else
                return NAN;
            if (d >= base)
                return NAN;
            v = v * base + d;
        }
        return v;
    }
    size_t i = 0;
    int neg = 0;
    if (s.p[0] == '+' || s.p[0] == '-')
        neg = s.p[0] == '-', i++;
    if (s.n - i == 8 && !memcmp(s.p + i, "Infinity", 8))
        return neg ? -INFINITY : INFINITY;
    size_t digits = 0, j = i;
    while (j < s.n && s.p[j] >= '0' && s.p[j] <= '9')
        j++, digits++;
    if (j < s.n && s.p[j] == '.') {
        j++;
        while (j < s.n && s.p[j] >= '0' && s.p[j] <= '9')
            j++, digits++;
    }
    if (!digits)
        return NAN;
    if (j < s.n && (s.p[j] | 32) == 'e') {
        j++;
        if (j < s.n && (s.p[j] == '+' || s.p[j] == '-'))
            j++;
        size_t e0 = j;
        while (j < s.n && s.p[j] >= '0' && s.p[j] <= '9')
            j++;
        if (j == e0)
            return NAN;
    }
    if (j != s.n || s.n > 4096)
        return NAN;
    char buf[4100];
    memcpy(buf, s.p, s.n);
    buf[s.n] = 0;
    return strtod(buf, NULL);
}

/* Number::toString(10): shortest round-trip digits, JS's exponent thresholds. */
static size_t js_num_fmt(double x, char *out /* >= 32 */)
{
    if (isnan(x))
        return (size_t)sprintf(out, "NaN");
    if (isinf(x))
        return (size_t)sprintf(out, x < 0 ? "-Infinity" : "Infinity");
    if (x == 0)
        return (size_t)sprintf(out, "0");
    char tmp[40], dig[20];
    int p, e = 0;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* tmp: [-]d.ddde[+-]xx */
    const char *t = tmp;
    size_t o = 0, k = 0;
    if (*t == '-')
        out[o++] = '-', t++;
    for (; *t && *t != 'e'; t++)
        if (*t != '.')
            dig[k++] = *t;
    e = atoi(t + 1);
    while (k > 1 && dig[k - 1] == '0')
        k--;
    int n = e + 1;
    if ((int)k <= n && n <= 21) {
        memcpy(out + o, dig, k), o += k;
        for (int i = (int)k; i < n; i++)
            out[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + o, dig, (size_t)n), o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, dig + n, k - (size_t)n), o += k - (size_t)n;
    } else if (-6 < n && n <= 0) {
        out[o++] = '0', out[o++] = '.';
        for (int i = 0; i < -n; i++)
            out[o++] = '0';
        memcpy(out + o, dig, k), o += k;
    } else {
        out[o++] = dig[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, dig + 1, k - 1), o += k - 1;
        }
        o += (size_t)sprintf(out + o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    out[o] = 0;
    return o;
}

/* UTF-16 length of UTF-8 bytes (JS string length). */
static size_t u16_len(gh_str_t s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if ((c & 0xC0) != 0x80)
            n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

/* Byte offset of UTF-16 index u (clamped to the end; inside an astral char: its start). */
static size_t u16_off(gh_str_t s, size_t u)
{
    size_t i = 0, k = 0;
    while (i < s.n && k < u) {
        unsigned char c = (unsigned char)s.p[i];
        size_t w = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        size_t units = c >= 0xF0 ? 2 : 1;
        if (k + units > u)
            break;
        k += units, i += w;
        while (i < s.n && ((unsigned char)s.p[i] & 0xC0) == 0x80 && w == 1)
            i++;
    }
    return GH_MIN(i, s.n);
}

/* ---------------------------------------------------------------- values */

int gh_jv_truthy(const gh_jv_t *v)
{
    switch (v->t) {
    case GH_JV_BOOL:
        return v->u.b != 0;
    case GH_JV_NUM:
        return v->u.n != 0 && !isnan(v->u.n);
    case GH_JV_STR:
        return v->u.s.n > 0;
    case GH_JV_ARR:
        return v->u.a.n > 0;
    case GH_JV_OBJ: /* (jle) truthy(): a plain object is truthy when it has keys */
        return v->u.o && json_object_size(v->u.o) > 0;
    default:
        return 0;
    }
}

static int js_falsy(const gh_jv_t *v) /* JS !v (objects, even empty, are truthy) */
{
    return v->t != GH_JV_ARR && v->t != GH_JV_OBJ && !gh_jv_truthy(v);
}

static gh_jv_t jv_null(void) { return (gh_jv_t){.t = GH_JV_NULL}; }
static gh_jv_t jv_bool(int b) { return (gh_jv_t){.t = GH_JV_BOOL, .u.b = !!b}; }
static gh_jv_t jv_num(double n) { return (gh_jv_t){.t = GH_JV_NUM, .u.n = n}; }
static gh_jv_t jv_str(const char *p, size_t n)
{
    gh_jv_t v = {.t = GH_JV_STR};
    v.u.s.p = p, v.u.s.n = (uint32_t)n;
    return v;
}

static void *arena_alloc(gh_jl_arena_t *a, size_t n)
{
    size_t at = (a->used + 7) & ~(size_t)7;
    if (at > a->cap || a->cap - at < n)
        return NULL;
    a->used = at + n;
    return a->base + at;
}

/* A jansson value as gh_jv_t; arrays are converted into the arena. */
static int from_json(const json_t *j, gh_jl_arena_t *a, int depth, gh_jv_t *out)
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        *out = jv_null();
        return 0;
    case JSON_TRUE:
        *out = jv_bool(1);
        return 0;
    case JSON_FALSE:
        *out = jv_bool(0);
        return 0;
    case JSON_INTEGER:
        *out = jv_num((double)json_integer_value(j));
        return 0;
    case JSON_REAL:
        *out = jv_num(json_real_value(j));
        return 0;
    case JSON_STRING: {
        size_t n = json_string_length(j);
        if (n > UINT32_MAX)
            return GH_ELIMIT;
        *out = jv_str(json_string_value(j), n);
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if (depth > MAX_CONV_DEPTH || n > UINT32_MAX / sizeof(gh_jv_t))
            return GH_ELIMIT;
        gh_jv_t *v = arena_alloc(a, (n ? n : 1) * sizeof(gh_jv_t)); /* distinct even when empty */
        if (!v)
            return GH_ELIMIT;
        for (size_t i = 0; i < n; i++) {
            int rc = from_json(json_array_get(j, i), a, depth + 1, &v[i]);
            if (rc)
                return rc;
        }
        out->t = GH_JV_ARR, out->u.a.v = v, out->u.a.n = (uint32_t)n;
        return 0;
    }
    default:
        out->t = GH_JV_OBJ, out->u.o = j;
        return 0;
    }
}

/* ---------------------------------------------------------------- compiler */

typedef struct {
    gh_jl_rule_t *r;
    const json_t *evaluators;
    const json_t *refstack[GH_JL_MAX_DEPTH + 1];
    int nref;
    char *err, *path;
    size_t errlen, pathlen, pathn;
    int failed;
    gh_jl_arena_t fold; /* the current block for folded constants (owned by r->lits) */
} cc_t;

static int fail(cc_t *c, const char *fmt, const char *arg)
{
    if (!c->failed) {
        c->failed = 1;
        if (c->errlen)
            snprintf(c->err, c->errlen, fmt, arg ? arg : "");
        if (c->pathlen)
            c->path[GH_MIN(c->pathn, c->pathlen - 1)] = 0;
    }
    return -1;
}

/* Append an RFC 6901 segment to the path; returns the previous length. */
static size_t path_push(cc_t *c, const char *seg, size_t n)
{
    size_t old = c->pathn;
    if (!c->pathlen)
        return old;
    char *p = c->path;
    size_t o = c->pathn;
    if (o + 1 < c->pathlen)
        p[o++] = '/';
    for (size_t i = 0; i < n && o + 2 < c->pathlen; i++) {
        if (seg[i] == '~')
            p[o++] = '~', p[o++] = '0';
        else if (seg[i] == '/')
            p[o++] = '~', p[o++] = '1';
        else
            p[o++] = seg[i];
    }
    c->pathn = o;
    return old;
}

static size_t path_push_idx(cc_t *c, size_t i)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%zu", i);
    return path_push(c, b, (size_t)n);
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    uint32_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q)
        return -1;
    *p = q, *cap = nc;
    return 0;
}

static int new_node(cc_t *c, uint8_t op)
{
    gh_jl_rule_t *r = c->r;
    if (r->nnodes >= GH_JL_MAX_NODES)
        return fail(c, "rule too large (more than %s nodes)", "100000");
    if (grow((void **)&r->nodes, &r->capnodes, r->nnodes + 1, sizeof(node_t)))
        return fail(c, "out of memory", NULL);
    node_t *n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof(*n));
    n->op = op;
    n->flags = F_DET0 | F_DET1; /* literals (and arrays until a kid says otherwise) */
    if (op != OP_LIT && op != OP_ARRAY)
        n->flags = 0;
    return (int)r->nnodes++;
}

static gh_jv_t *lit_alloc(cc_t *c, size_t n)
{
    /* at least one slot: two literal [] are two arrays for === (JS identity) */
    struct lit_block *b = malloc(sizeof(*b) + (n ? n : 1) * sizeof(gh_jv_t));
    if (!b)
        return NULL;
    b->next = c->r->lits, c->r->lits = b;
    return b->v;
}

static int compile_node(cc_t *c, const json_t *j, int depth);
static void det_flags(cc_t *c, int ni);
static int fold_pass(cc_t *c, uint32_t ni);
static int defer_pass(cc_t *c, uint32_t ni);

/* Compile the children of a node (already created) and record them contiguously. */
static int compile_kids(cc_t *c, int ni, const json_t *const *items, size_t n, int depth, int indexed)
{
    uint32_t tmp[64], *ids = n <= 64 ? tmp : malloc(n * sizeof(uint32_t));
    if (!ids)
        return fail(c, "out of memory", NULL);
    for (size_t i = 0; i < n; i++) {
        size_t old = indexed ? path_push_idx(c, i) : c->pathn;
        int k = compile_node(c, items[i], depth + 1);
        c->pathn = old;
        if (k < 0) {
            if (ids != tmp)
                free(ids);
            return -1;
        }
        ids[i] = (uint32_t)k;
    }
    gh_jl_rule_t *r = c->r;
    if (grow((void **)&r->kids, &r->capkids, r->nkids + (uint32_t)n, sizeof(uint32_t))) {
        if (ids != tmp)
            free(ids);
        return fail(c, "out of memory", NULL);
    }
    r->nodes[ni].kids = r->nkids;
    r->nodes[ni].nkids = (uint32_t)n;
    if (n)
        memcpy(r->kids + r->nkids, ids, n * sizeof(uint32_t));
    r->nkids += (uint32_t)n;
    if (ids != tmp)
        free(ids);
    return 0;
}

static const node_t *kid(const gh_jl_rule_t *r, const node_t *n, uint32_t i)
{
    return &r->nodes[r->kids[n->kids + i]];
}

/* Split a var path as json-logic-engine's splitPath: '.' separates, '\' escapes '.', '/'
 * and itself; "" is no segment at all (whole data) and is handled by the caller. */
static int split_path(cc_t *c, int ni, gh_str_t key)
{
    gh_jl_rule_t *r = c->r;
    uint32_t first = r->nsegs, nseg = 0, nchars = 0;
    size_t need = r->npool + key.n;
    if (need > r->cappool) {
        size_t nc = r->cappool ? r->cappool * 2 : 256;
        while (nc < need)
            nc *= 2;
        char *q = realloc(r->pool, nc);
        if (!q)
            return fail(c, "out of memory", NULL);
        r->pool = q, r->cappool = nc;
    }
    uint32_t start = (uint32_t)r->npool;
    for (size_t i = 0; i <= key.n; i++) {
        if (i == key.n || key.p[i] == '.') {
            /* (jle) splitPath: "." is [""], ".h" is ["", "h"]: push the last part only
             * when the number of parts differs from the number of characters */
            if (i == key.n && nseg + 1 - 1 == key.n && nseg == key.n)
                break;
            if (grow((void **)&r->segs, &r->capsegs, r->nsegs + 1, sizeof(seg_t)))
                return fail(c, "out of memory", NULL);
            r->segs[r->nsegs++] = (seg_t){start, (uint32_t)r->npool - start};
            nseg++;
            start = (uint32_t)r->npool;
            continue;
        }
        char ch = key.p[i];
        if (ch == '\\' && i + 1 < key.n && (key.p[i + 1] == '.' || key.p[i + 1] == '/' || key.p[i + 1] == '\\'))
            ch = key.p[++i];
        r->pool[r->npool++] = ch;
        nchars++;
    }
    (void)nchars;
    r->nodes[ni].seg = first;
    r->nodes[ni].nseg = nseg;
    r->nodes[ni].flags |= F_VAR_STATIC;
    return 0;
}

static int lookup_op(const char *k, size_t n)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(op_names); i++)
        if (strlen(op_names[i].name) == n && !memcmp(op_names[i].name, k, n))
            return op_names[i].op;
    return -1;
}

static int is_arith_bad_literal(const node_t *k, int divisor)
{
    if (k->op != OP_LIT)
        return 0;
    const gh_jv_t *v = &k->lit;
    if (v->t == GH_JV_ARR || v->t == GH_JV_OBJ)
        return 1;
    if (v->t == GH_JV_STR) {
        double d = js_str_to_num(gh_str(v->u.s.p, v->u.s.n));
        return isnan(d) || (divisor && d == 0);
    }
    return divisor && v->t == GH_JV_NUM && v->u.n == 0;
}

static const char *const semver_ops[] = {"=", "!=", "<", "<=", ">", ">=", "^", "~"};

/* Checks at compile time that json-logic-engine does while building, or that the header
 * promises (fixed arities, literal fractional weights, sem_ver operators). */
static int check_node(cc_t *c, int ni, const char *name)
{
    const gh_jl_rule_t *r = c->r;
    const node_t *n = &r->nodes[ni];
    int arr = n->flags & F_ARGS_ARRAY;
    uint32_t k = n->nkids;
    switch (n->op) {
    case OP_EQ: case OP_SEQ: case OP_NE: case OP_SNE:
    case OP_GT: case OP_GE: case OP_LT: case OP_LE:
        if (!arr || k < 2)
            return fail(c, "\"%s\" needs an array of at least 2 arguments", name);
        break;
    case OP_OR: case OP_AND: case OP_IF:
        if (!arr)
            return fail(c, "\"%s\" needs an array of arguments", name);
        break;
    case OP_MAP: case OP_FILTER: case OP_ALL: case OP_NONE: case OP_SOME:
        if (!arr || k != 2)
            return fail(c, "\"%s\" needs 2 arguments", name);
        break;
    case OP_REDUCE:
        if (!arr || k < 2 || k > 3)
            return fail(c, "\"%s\" needs 2 or 3 arguments", name);
        break;
    case OP_MISSING_SOME:
        if (!arr || k != 2)
            return fail(c, "\"%s\" needs 2 arguments", name);
        break;
    case OP_STARTS: case OP_ENDS:
        if (!arr || k != 2)
            return fail(c, "\"%s\" needs 2 arguments", name);
        break;
    case OP_SEMVER:
        if (!arr || k != 3)
            return fail(c, "\"%s\" needs 3 arguments", name);
        if (kid(r, n, 1)->op == OP_LIT) {
            const gh_jv_t *o = &kid(r, n, 1)->lit;
            int ok = 0;
            for (size_t i = 0; o->t == GH_JV_STR && i < GH_ARRAY_LEN(semver_ops); i++)
                ok |= strlen(semver_ops[i]) == o->u.s.n && !memcmp(semver_ops[i], o->u.s.p, o->u.s.n);
            if (!ok) {
                path_push_idx(c, 1); /* point at the operator */
                return fail(c, "sem_ver: unknown operator (one of = != < <= > >= ^ ~)", NULL);
            }
        }
        break;
    case OP_SUB: case OP_DIV:
        if (arr && k == 0)
            return fail(c, "\"%s\" needs at least 1 argument", name);
        /* fallthrough */
    case OP_ADD: case OP_MUL: case OP_MOD:
        if (n->op == OP_MOD && (!arr || k < 2))
            return fail(c, "\"%s\" needs at least 2 arguments", name);
        int foldable = 1;
        for (uint32_t i = 0; i < k; i++)
            foldable &= (kid(r, n, i)->flags & F_DET0) != 0;
        if (arr && !foldable) /* a constant node is folded, the interpreter decides */
            for (uint32_t i = 0; i < k; i++) /* (jle) numberCoercion throws at build */
                if (is_arith_bad_literal(kid(r, n, i), n->op == OP_DIV && (i > 0 || k == 1)))
                    return fail(c, "\"%s\": literal argument is not a number (or a zero divisor)", name);
        break;
    case OP_FRACTIONAL: {
        if (!arr || k < 1)
            return fail(c, "\"%s\" needs at least one bucket", name);
        double total = 0;
        for (uint32_t i = 0; i < k; i++) {
            const node_t *b = kid(r, n, i);
            gh_jv_t w;
            if (b->op == OP_LIT && b->lit.t == GH_JV_ARR && b->lit.u.a.n == 2)
                w = b->lit.u.a.v[1];
            else if (b->op == OP_ARRAY && b->nkids == 2 && kid(r, b, 1)->op == OP_LIT)
                w = kid(r, b, 1)->lit;
            else if ((b->op == OP_LIT && b->lit.t == GH_JV_ARR) || b->op == OP_ARRAY) {
                total += 1;
                continue;
            } else
                continue;
            if (w.t != GH_JV_NUM || w.u.n < 0 || w.u.n != floor(w.u.n) || w.u.n > 2147483647.0) {
                path_push_idx(c, i), path_push_idx(c, 1);
                return fail(c, "fractional: a weight must be an integer in [0, 2^31-1]", NULL);
            }
            total += w.u.n;
        }
        if (total > 2147483647.0)
            return fail(c, "fractional: the weights sum to more than 2^31-1", NULL);
        break;
    }
    default:
        break;
    }
    return 0;
}

static int compile_node(cc_t *c, const json_t *j, int depth)
{
    if (depth > GH_JL_MAX_DEPTH)
        return fail(c, "rule nested too deep (more than %s levels)", "64");
    gh_jl_rule_t *r = c->r;
    if (json_is_array(j)) {
        size_t n = json_array_size(j);
        int ni = new_node(c, OP_ARRAY);
        if (ni < 0)
            return -1;
        r->nodes[ni].flags |= F_JSON_ARRAY;
        const json_t **items = n ? malloc(n * sizeof(*items)) : NULL;
        if (n && !items)
            return fail(c, "out of memory", NULL);
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(j, i);
        int rc = compile_kids(c, ni, items, n, depth, 1);
        free(items);
        if (rc)
            return -1;
        node_t *nd = &r->nodes[ni];
        int all_lit = 1;
        for (uint32_t i = 0; i < nd->nkids && all_lit; i++)
            all_lit = kid(r, nd, i)->op == OP_LIT;
        if (!all_lit) {
            uint8_t d = F_DET0 | F_DET1;
            for (uint32_t i = 0; i < nd->nkids; i++)
                d &= kid(r, nd, i)->flags;
            nd->flags |= d;
        }
        if (all_lit) { /* fold a literal array */
            gh_jv_t *v = lit_alloc(c, nd->nkids);
            if (!v)
                return fail(c, "out of memory", NULL);
            for (uint32_t i = 0; i < nd->nkids; i++)
                v[i] = kid(r, nd, i)->lit;
            nd->op = OP_LIT;
            nd->lit.t = GH_JV_ARR, nd->lit.u.a.v = v, nd->lit.u.a.n = nd->nkids;
        }
        return ni;
    }
    if (!json_is_object(j)) {
        int ni = new_node(c, OP_LIT);
        if (ni < 0)
            return -1;
        gh_jl_arena_t none = {0};
        if (from_json(j, &none, 0, &r->nodes[ni].lit))
            return fail(c, "literal too large", NULL);
        return ni;
    }
    size_t nkeys = json_object_size(j);
    if (nkeys == 0) { /* {} is data (jle run(): an object without keys is returned as is) */
        int ni = new_node(c, OP_LIT);
        if (ni >= 0)
            r->nodes[ni].lit = (gh_jv_t){.t = GH_JV_OBJ, .u.o = j};
        return ni;
    }
    void *it = json_object_iter((json_t *)j);
    const char *key = json_object_iter_key(it);
    size_t keylen = json_object_iter_key_len(it);
    const json_t *arg = json_object_iter_value(it);
    if (nkeys > 1)
        return fail(c, "an operator object must have exactly one key (got \"%s\" and more)", key);
    if (keylen == 4 && !memcmp(key, "$ref", 4)) {
        /* flagd substitutes {"$ref": NAME} by $evaluators[NAME] before parsing */
        if (!json_is_string(arg))
            return fail(c, "$ref must be a string", NULL);
        const json_t *body = c->evaluators ? json_object_getn(c->evaluators, json_string_value(arg),
                                                              json_string_length(arg))
                                           : NULL;
        if (!body)
            return fail(c, "$ref to an unknown evaluator \"%s\"", json_string_value(arg));
        for (int i = 0; i < c->nref; i++)
            if (c->refstack[i] == body)
                return fail(c, "cyclic $ref through evaluator \"%s\"", json_string_value(arg));
        if (c->nref >= GH_JL_MAX_DEPTH)
            return fail(c, "rule nested too deep (more than %s levels)", "64");
        c->refstack[c->nref++] = body;
        int ni = compile_node(c, body, depth + 1);
        c->nref--;
        return ni;
    }
    int op = lookup_op(key, keylen);
    if (op < 0) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)GH_MIN(keylen, 60), key);
        return fail(c, "unknown operator \"%s\"", name);
    }
    size_t old = path_push(c, key, keylen);
    int ni = new_node(c, (uint8_t)op);
    if (ni < 0)
        return -1;
    if (json_is_array(arg)) {
        size_t n = json_array_size(arg);
        r->nodes[ni].flags |= F_ARGS_ARRAY;
        const json_t **items = n ? malloc(n * sizeof(*items)) : NULL;
        if (n && !items)
            return fail(c, "out of memory", NULL);
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(arg, i);
        int rc = compile_kids(c, ni, items, n, depth, 1);
        free(items);
        if (rc)
            return -1;
    } else if (compile_kids(c, ni, &arg, 1, depth, 0))
        return -1;
    node_t *nd = &r->nodes[ni];
    if (op == OP_VAR) {
        /* a literal key is split now; (jle) var: undefined, null or "" is the whole data */
        const node_t *k0 = nd->nkids ? kid(r, nd, 0) : NULL;
        if (nd->nkids >= 2 && (nd->flags & F_ARGS_ARRAY))
            nd->flags |= F_VAR_DEFAULT;
        if (!k0 || (k0->op == OP_LIT && (k0->lit.t == GH_JV_NULL ||
                                         (k0->lit.t == GH_JV_STR && k0->lit.u.s.n == 0))))
            nd->flags |= F_VAR_WHOLE;
        else if (k0->op == OP_LIT && k0->lit.t == GH_JV_STR) {
            if (split_path(c, ni, gh_str(k0->lit.u.s.p, k0->lit.u.s.n)))
                return -1;
        } else if (k0->op == OP_LIT && k0->lit.t == GH_JV_NUM) {
            char b[32];
            size_t bn = js_num_fmt(k0->lit.u.n, b);
            if (split_path(c, ni, gh_str(b, bn)))
                return -1;
        }
    }
    if (check_node(c, ni, r->nodes[ni].op == OP_LIT ? "" : key))
        return -1;
    det_flags(c, ni);
    c->pathn = old;
    return ni;
}

gh_jl_rule_t *gh_jl_compile(const json_t *rule, const json_t *evaluators, char *err, size_t errlen, char *path,
                            size_t pathlen)
{
    if (errlen)
        err[0] = 0;
    if (pathlen)
        path[0] = 0;
    gh_jl_rule_t *r = calloc(1, sizeof(*r));
    if (!r) {
        if (errlen)
            snprintf(err, errlen, "out of memory");
        return NULL;
    }
    cc_t c = {.r = r, .evaluators = evaluators, .err = err, .errlen = errlen, .path = path, .pathlen = pathlen};
    if (!rule) {
        fail(&c, "no rule", NULL);
        gh_jl_free(r);
        return NULL;
    }
    int root = compile_node(&c, rule, 0);
    if (root >= 0 && fold_pass(&c, (uint32_t)root))
        root = -1;
    if (root < 0) {
        gh_jl_free(r);
        return NULL;
    }
    r->root = (uint32_t)root;
    r->rule_ref = json_incref((json_t *)rule);
    r->eval_ref = evaluators ? json_incref((json_t *)evaluators) : NULL;
    return r;
}

void gh_jl_free(gh_jl_rule_t *r)
{
    if (!r)
        return;
    while (r->lits) {
        struct lit_block *b = r->lits;
        r->lits = b->next;
        free(b);
    }
    free(r->nodes);
    free(r->kids);
    free(r->segs);
    free(r->pool);
    json_decref(r->rule_ref);
    json_decref(r->eval_ref);
    free(r);
}

/* ---------------------------------------------------------------- MurmurHash3 */

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

uint32_t gh_murmur3_32(const void *key, size_t len, uint32_t seed)
{
    const uint8_t *p = key;
    const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    uint32_t h = seed;
    size_t nblocks = len / 4;
    for (size_t i = 0; i < nblocks; i++) {
        uint32_t k = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                     (uint32_t)p[4 * i + 3] << 24; /* little-endian block, whatever the host */
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64;
    }
    const uint8_t *tail = p + nblocks * 4;
    uint32_t k = 0;
    switch (len & 3) {
    case 3:
        k ^= (uint32_t)tail[2] << 16; /* fallthrough */
    case 2:
        k ^= (uint32_t)tail[1] << 8; /* fallthrough */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

/* ---------------------------------------------------------------- sem_ver */

typedef struct {
    double maj, min, pat;
    gh_str_t pre; /* dot-separated identifiers, without the '-' */
} semver_t;

static int is_digits(gh_str_t s)
{
    if (!s.n)
        return 0;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] < '0' || s.p[i] > '9')
            return 0;
    return 1;
}

static int num_ident(gh_str_t s, double *v) /* 0|[1-9][0-9]*, <= MAX_SAFE_INTEGER */
{
    if (!is_digits(s) || (s.n > 1 && s.p[0] == '0') || s.n > 16)
        return 0;
    double d = 0;
    for (size_t i = 0; i < s.n; i++)
        d = d * 10 + (s.p[i] - '0');
    if (d > 9007199254740991.0)
        return 0;
    *v = d;
    return 1;
}

static int ident_ok(gh_str_t s, int pre)
{
    if (!s.n)
        return 0;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        if (!((ch >= '0' && ch <= '9') || ((ch | 32) >= 'a' && (ch | 32) <= 'z')) && ch != '-')
            return 0;
    }
    if (pre && is_digits(s) && s.n > 1 && s.p[0] == '0') /* numeric: no leading zero */
        return 0;
    return 1;
}

static int dot_idents(gh_str_t s, int pre)
{
    size_t st = 0;
    for (size_t i = 0; i <= s.n; i++)
        if (i == s.n || s.p[i] == '.') {
            if (!ident_ok(gh_str(s.p + st, i - st), pre))
                return 0;
            st = i + 1;
        }
    return 1;
}

/* (fc) normalizeVersion: strip one leading v/V, then node-semver's strict parse (which
 * trims whitespace, allows one more "v", and wants MAJOR.MINOR.PATCH[-pre][+build]);
 * failing that, a bare "N" or "N.M" (/^\d+(\.\d+)?$/) is coerced to N.M.0 (semver.coerce:
 * at most 16 digits per part, and the result must parse strictly: no leading zeros). */
static int semver_parse(gh_str_t s, semver_t *v)
{
    if (s.n && (s.p[0] == 'v' || s.p[0] == 'V'))
        s.p++, s.n--;
    gh_str_t raw = s;
    if (s.n > 256) /* node-semver MAX_LENGTH */
        return 0;
    s = js_trim(s);
    if (s.n && s.p[0] == 'v')
        s.p++, s.n--;
    memset(v, 0, sizeof(*v));
    const char *e = s.p + s.n, *q = s.p;
    double parts[3];
    int np = 0;
    while (np < 3) {
        const char *st = q;
        while (q < e && *q >= '0' && *q <= '9')
            q++;
        if (!num_ident(gh_str(st, (size_t)(q - st)), &parts[np]))
            goto coerce;
        np++;
        if (np < 3) {
            if (q >= e || *q != '.')
                goto coerce;
            q++;
        }
    }
    if (q < e && *q == '-') {
        const char *st = ++q;
        while (q < e && *q != '+')
            q++;
        v->pre = gh_str(st, (size_t)(q - st));
        if (!dot_idents(v->pre, 1))
            goto coerce;
    }
    if (q < e && *q == '+') {
        q++;
        if (!dot_idents(gh_str(q, (size_t)(e - q)), 0))
            goto coerce;
        q = e;
    }
    if (q != e)
        goto coerce;
    v->maj = parts[0], v->min = parts[1], v->pat = parts[2];
    return 1;
coerce:
    memset(v, 0, sizeof(*v));
    {
        /* /^\d+(\.\d+)?$/ on the untrimmed string */
        size_t i = 0, d1 = 0, d2 = 0;
        while (i < raw.n && raw.p[i] >= '0' && raw.p[i] <= '9')
            i++, d1++;
        size_t dot = i;
        if (i < raw.n && raw.p[i] == '.') {
            i++;
            while (i < raw.n && raw.p[i] >= '0' && raw.p[i] <= '9')
                i++, d2++;
            if (!d2)
                return 0;
        }
        if (!d1 || i != raw.n || d1 > 16 || d2 > 16)
            return 0;
        if (!num_ident(gh_str(raw.p, d1), &v->maj))
            return 0;
        if (d2 && !num_ident(gh_str(raw.p + dot + 1, d2), &v->min))
            return 0;
        return 1;
    }
}

static int cmp_d(double a, double b) { return a < b ? -1 : a > b; }

static int semver_compare(const semver_t *a, const semver_t *b)
{
    int c = cmp_d(a->maj, b->maj);
    if (!c)
        c = cmp_d(a->min, b->min);
    if (!c)
        c = cmp_d(a->pat, b->pat);
    if (c)
        return c;
    if (!a->pre.n || !b->pre.n)
        return a->pre.n ? -1 : b->pre.n ? 1 : 0; /* a pre-release is lower */
    size_t i = 0, j = 0;
    for (;;) {
        if (i >= a->pre.n && j >= b->pre.n)
            return 0;
        if (i >= a->pre.n)
            return -1;
        if (j >= b->pre.n)
            return 1;
        size_t ie = i, je = j;
        while (ie < a->pre.n && a->pre.p[ie] != '.')
            ie++;
        while (je < b->pre.n && b->pre.p[je] != '.')
            je++;
        gh_str_t x = gh_str(a->pre.p + i, ie - i), y = gh_str(b->pre.p + j, je - j);
        int xn = is_digits(x), yn = is_digits(y);
        if (xn && yn) {
            double dx = js_str_to_num(x), dy = js_str_to_num(y);
            c = cmp_d(dx, dy);
        } else if (xn != yn)
            c = xn ? -1 : 1;
        else {
            int m = memcmp(x.p, y.p, GH_MIN(x.n, y.n));
            c = m ? (m < 0 ? -1 : 1) : cmp_d((double)x.n, (double)y.n);
        }
        if (c)
            return c;
        i = ie + 1, j = je + 1;
        if (ie >= a->pre.n)
            i = a->pre.n + (ie < a->pre.n);
        if (je >= b->pre.n)
            j = b->pre.n + (je < b->pre.n);
    }
}

int gh_semver_cmp(gh_str_t a, gh_str_t op, gh_str_t b)
{
    semver_t x, y;
    if (!semver_parse(a, &x) || !semver_parse(b, &y))
        return -1;
    int c = semver_compare(&x, &y);
#define OPIS(lit) (op.n == sizeof(lit) - 1 && !memcmp(op.p, lit, op.n))
    if (OPIS("="))
        return c == 0;
    if (OPIS("!="))
        return c != 0;
    if (OPIS("<"))
        return c < 0;
    if (OPIS("<="))
        return c <= 0;
    if (OPIS(">"))
        return c > 0;
    if (OPIS(">="))
        return c >= 0;
    if (OPIS("^"))
        return x.maj == y.maj;
    if (OPIS("~"))
        return x.maj == y.maj && x.min == y.min;
#undef OPIS
    return -1;
}

/* ---------------------------------------------------------------- evaluator */

enum { SC_ROOT, SC_VALUE, SC_REDUCE };
typedef struct {
    int kind;
    int interp;       /* json-logic-engine's interpreter (folded constants, 1-2 argument if) */
    gh_jv_t *prev;    /* the compiled function's `prev` variable (see eval_compare) */
    gh_jv_t v;        /* SC_VALUE: the element; SC_ROOT: the context object (or null) */
    gh_jv_t acc, cur; /* SC_REDUCE */
} scope_t;

/* Arrays of the context converted during one evaluation, so that reading the same array
 * twice gives the same array (=== is identity in JS). */
typedef struct {
    const json_t *j[16];
    gh_jv_t v[16];
    unsigned n;
} conv_cache_t;

typedef struct {
    const gh_jl_rule_t *r;
    gh_jl_arena_t *a;
    gh_str_t flag_key;
    int64_t now;
    conv_cache_t *cache;
} ev_t;

static int ev(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out);

/* A string builder in the arena: grows the last allocation in place. */
typedef struct {
    gh_jl_arena_t *a;
    char *p;
    size_t n;
    int err;
} sb_t;

static void sb_init(sb_t *b, gh_jl_arena_t *a)
{
    b->a = a, b->n = 0, b->err = 0;
    b->p = arena_alloc(a, 0);
    if (!b->p)
        b->err = GH_ELIMIT;
}

static void sb_put(sb_t *b, const char *p, size_t n)
{
    if (b->err)
        return;
    if (b->n + n > MAX_STR || b->a->cap - b->a->used < n) {
        b->err = GH_ELIMIT;
        return;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n, b->a->used += n;
}

/* JavaScript String(v) (Array.prototype.join for arrays: null elements are ""). */
static void sb_tostr(sb_t *b, const gh_jv_t *v, int depth)
{
    char num[40];
    switch (v->t) {
    case GH_JV_NULL:
        sb_put(b, "null", 4);
        break;
    case GH_JV_BOOL:
        sb_put(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
        break;
    case GH_JV_NUM:
        sb_put(b, num, js_num_fmt(v->u.n, num));
        break;
    case GH_JV_STR:
        sb_put(b, v->u.s.p, v->u.s.n);
        break;
    case GH_JV_ARR:
        if (depth > MAX_CONV_DEPTH) {
            b->err = GH_ELIMIT;
            return;
        }
        for (uint32_t i = 0; i < v->u.a.n; i++) {
            if (i)
                sb_put(b, ",", 1);
            if (v->u.a.v[i].t != GH_JV_NULL)
                sb_tostr(b, &v->u.a.v[i], depth + 1);
        }
        break;
    default:
        sb_put(b, "[object Object]", 15);
    }
}

static int to_str(const ev_t *e, const gh_jv_t *v, gh_str_t *out)
{
    if (v->t == GH_JV_STR) {
        *out = gh_str(v->u.s.p, v->u.s.n);
        return 0;
    }
    sb_t b;
    sb_init(&b, e->a);
    sb_tostr(&b, v, 0);
    if (b.err)
        return b.err;
    *out = gh_str(b.p, b.n);
    return 0;
}

/* JavaScript ToNumber of a primitive (callers reject objects first). */
static double to_num(const gh_jv_t *v)
{
    switch (v->t) {
    case GH_JV_NULL:
        return 0;
    case GH_JV_BOOL:
        return v->u.b;
    case GH_JV_NUM:
        return v->u.n;
    case GH_JV_STR:
        return js_str_to_num(gh_str(v->u.s.p, v->u.s.n));
    default:
        return NAN;
    }
}

static int is_obj(const gh_jv_t *v) { return v->t == GH_JV_ARR || v->t == GH_JV_OBJ; }

/* Canonical array index ("0", "12"; no sign, no leading zero). */
static int array_index(gh_str_t k, size_t *idx)
{
    if (!is_digits(k) || (k.n > 1 && k.p[0] == '0') || k.n > 10)
        return 0;
    size_t v = 0;
    for (size_t i = 0; i < k.n; i++)
        v = v * 10 + (size_t)(k.p[i] - '0');
    *idx = v;
    return 1;
}

/* JavaScript base[key] for JSON-like values: 1 found, 0 undefined, <0 error. Own
 * properties, "length" of strings and arrays, indexes; prototype members (toString,
 * __proto__, ...) are not modelled and read as undefined. */
static int get_prop(const ev_t *e, const gh_jv_t *base, gh_str_t k, gh_jv_t *out)
{
    size_t idx;
    switch (base->t) {
    case GH_JV_OBJ: {
        const json_t *j = json_object_getn(base->u.o, k.p, k.n);
        if (!j)
            return 0;
        conv_cache_t *cc = e->cache;
        if (cc && json_is_array(j))
            for (unsigned i = 0; i < GH_MIN(cc->n, 16u); i++)
                if (cc->j[i] == j) {
                    *out = cc->v[i];
                    return 1;
                }
        int rc = from_json(j, e->a, 0, out);
        if (!rc && cc && json_is_array(j)) {
            cc->j[cc->n % 16] = j, cc->v[cc->n % 16] = *out;
            cc->n++;
        }
        return rc ? rc : 1;
    }
    case GH_JV_ARR:
        if (k.n == 6 && !memcmp(k.p, "length", 6)) {
            *out = jv_num(base->u.a.n);
            return 1;
        }
        if (array_index(k, &idx) && idx < base->u.a.n) {
            *out = base->u.a.v[idx];
            return 1;
        }
        return 0;
    case GH_JV_STR: {
        gh_str_t s = gh_str(base->u.s.p, base->u.s.n);
        if (k.n == 6 && !memcmp(k.p, "length", 6)) {
            *out = jv_num((double)u16_len(s));
            return 1;
        }
        if (array_index(k, &idx) && idx < u16_len(s)) {
            size_t a = u16_off(s, idx), b = u16_off(s, idx + 1);
            if (b == a)
                b = GH_MIN(a + 4, s.n);
            *out = jv_str(s.p + a, b - a);
            return 1;
        }
        return 0;
    }
    default:
        return 0;
    }
}

/* First property access on the scope itself. */
static int scope_prop(const ev_t *e, const scope_t *s, gh_str_t k, int *at_flagd, gh_jv_t *out)
{
    *at_flagd = 0;
    if (s->kind == SC_REDUCE) {
        if (k.n == 11 && !memcmp(k.p, "accumulator", 11)) {
            *out = s->acc;
            return 1;
        }
        if (k.n == 7 && !memcmp(k.p, "current", 7)) {
            *out = s->cur;
            return 1;
        }
        return 0;
    }
    if (s->kind == SC_ROOT && k.n == 6 && !memcmp(k.p, "$flagd", 6)) {
        /* flagd-core: {...ctx, $flagd: {flagKey, timestamp}}; a context's own $flagd is
         * overwritten */
        *at_flagd = 1;
        return 1;
    }
    if (s->v.t == GH_JV_NULL && s->kind == SC_ROOT)
        return 0;
    return get_prop(e, &s->v, k, out);
}

static int flagd_prop(const ev_t *e, gh_str_t k, gh_jv_t *out)
{
    if (k.n == 7 && !memcmp(k.p, "flagKey", 7)) {
        *out = jv_str(e->flag_key.p, e->flag_key.n);
        return 1;
    }
    if (k.n == 9 && !memcmp(k.p, "timestamp", 9)) { /* GH_JL_NOW: the clock, read only here */
        *out = jv_num((double)(e->now == GH_JL_NOW ? (int64_t)time(NULL) : e->now));
        return 1;
    }
    return 0;
}

/* Walk a path (segments from the rule pool, or a split dynamic key) from the scope.
 * (jle) compiled var: context?.[a]?.[b] ?? default: undefined AND null give the default. */
static int walk(const ev_t *e, const scope_t *s, const gh_str_t *segs, uint32_t nseg, gh_jv_t *out)
{
    int at_flagd = 0, rc;
    gh_jv_t cur;
    rc = scope_prop(e, s, segs[0], &at_flagd, &cur);
    if (rc <= 0)
        return rc;
    uint32_t i = 1;
    if (at_flagd) {
        if (nseg == 1) { /* the $flagd object itself is not materialised */
            *out = jv_null();
            return 1;
        }
        rc = flagd_prop(e, segs[1], &cur);
        if (rc <= 0)
            return rc;
        i = 2;
    }
    for (; i < nseg; i++) {
        if (cur.t == GH_JV_NULL)
            return 0;
        rc = get_prop(e, &cur, segs[i], &cur);
        if (rc <= 0)
            return rc;
    }
    *out = cur;
    return 1;
}

static int whole(const scope_t *s, gh_jv_t *out)
{
    if (s->kind == SC_REDUCE) /* {accumulator, current} is not a JSON object we can point to */
        return GH_EINVAL;
    *out = s->v;
    return 0;
}

static int eval_var(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    const gh_jl_rule_t *r = e->r;
    int rc, found;
    gh_jv_t v = jv_null();
    if (n->flags & F_VAR_WHOLE) {
        rc = whole(s, &v);
        if (rc)
            return rc;
        found = 1;
    } else if (n->flags & F_VAR_STATIC) {
        gh_str_t segs[64], *sp = segs;
        if (n->nseg > 64) {
            sp = arena_alloc(e->a, n->nseg * sizeof(gh_str_t));
            if (!sp)
                return GH_ELIMIT;
        }
        for (uint32_t i = 0; i < n->nseg; i++)
            sp[i] = gh_str(r->pool + r->segs[n->seg + i].off, r->segs[n->seg + i].len);
        if (s->interp && !(n->flags & F_VAR_DEFAULT) && (n->nseg == 2 || n->nseg == 3)) {
            /* (jle optimizer) "a.b" / "a.b.c": data && data[a] && data[a][b]: a falsy step
             * is the result itself (0, "", false, null) */
            int at_flagd;
            uint32_t i = 1;
            found = scope_prop(e, s, sp[0], &at_flagd, &v);
            if (found > 0 && at_flagd)
                found = flagd_prop(e, sp[1], &v), i = 2;
            for (; found > 0 && i < n->nseg; i++) {
                if (js_falsy(&v))
                    break;
                found = get_prop(e, &v, sp[i], &v);
            }
            if (found < 0)
                return found;
            *out = found ? v : jv_null();
            return 0;
        }
        found = walk(e, s, sp, n->nseg, &v);
    } else {
        /* a computed key: evaluate, String() it and split at '.' */
        gh_jv_t k;
        rc = ev(e, kid(r, n, 0), s, depth + 1, &k);
        if (rc)
            return rc;
        gh_str_t ks;
        if (k.t == GH_JV_NULL || (k.t == GH_JV_STR && k.u.s.n == 0)) {
            rc = whole(s, &v);
            if (rc)
                return rc;
            found = 1;
        } else {
            rc = to_str(e, &k, &ks);
            if (rc)
                return rc;
            size_t cnt = 1;
            for (size_t i = 0; i < ks.n; i++)
                cnt += ks.p[i] == '.';
            gh_str_t *sp = arena_alloc(e->a, cnt * sizeof(gh_str_t));
            char *buf = arena_alloc(e->a, ks.n + 1);
            if (!sp || !buf)
                return GH_ELIMIT;
            size_t ns = 0, o = 0, st = 0;
            for (size_t i = 0; i <= ks.n; i++) {
                if (i == ks.n || ks.p[i] == '.') {
                    if (i == ks.n && ns == ks.n)
                        break;
                    sp[ns++] = gh_str(buf + st, o - st);
                    st = o;
                    continue;
                }
                char ch = ks.p[i];
                if (ch == '\\' && i + 1 < ks.n && (ks.p[i + 1] == '.' || ks.p[i + 1] == '/' || ks.p[i + 1] == '\\'))
                    ch = ks.p[++i];
                buf[o++] = ch;
            }
            found = ns ? walk(e, s, sp, (uint32_t)ns, &v) : 0;
        }
    }
    if (found < 0)
        return found;
    /* (jle) compiled static var: (prev = context?.[k] ?? default): null too gives the
     * default; the var method (computed keys, interpreter) only replaces undefined */
    int nul_default = (n->flags & F_VAR_STATIC) && !s->interp;
    if (!found || (v.t == GH_JV_NULL && nul_default)) {
        if (n->flags & F_VAR_DEFAULT) {
            if ((rc = ev(e, kid(r, n, 1), s, depth + 1, &v)))
                return rc;
        } else
            v = jv_null();
    }
    if (nul_default)
        *s->prev = v;
    *out = v;
    return 0;
}

/* The argument list of a non-lazy operator: each array argument evaluated; a single
 * argument evaluated and, when it yields an array, used as the list (jle coerceArray). */
static int eval_args(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *tmp, size_t ntmp,
                     gh_jv_t **args, uint32_t *nargs)
{
    const gh_jl_rule_t *r = e->r;
    if (!(n->flags & F_ARGS_ARRAY)) {
        int rc = ev(e, kid(r, n, 0), s, depth + 1, &tmp[0]);
        if (rc)
            return rc;
        if (tmp[0].t == GH_JV_ARR) {
            *args = (gh_jv_t *)tmp[0].u.a.v;
            *nargs = tmp[0].u.a.n;
        } else {
            *args = tmp;
            *nargs = 1;
        }
        return 0;
    }
    gh_jv_t *v = tmp;
    if (n->nkids > ntmp) {
        v = arena_alloc(e->a, n->nkids * sizeof(gh_jv_t));
        if (!v)
            return GH_ELIMIT;
    }
    for (uint32_t i = 0; i < n->nkids; i++) {
        int rc = ev(e, kid(r, n, i), s, depth + 1, &v[i]);
        if (rc)
            return rc;
    }
    *args = v;
    *nargs = n->nkids;
    return 0;
}

/* JS a == b on values compareCheck let through (primitives, or both string/null). */
static int js_loose_eq(const gh_jv_t *a, const gh_jv_t *b)
{
    if (a->t == GH_JV_NULL || b->t == GH_JV_NULL)
        return a->t == b->t;
    if (a->t == GH_JV_STR && b->t == GH_JV_STR)
        return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    if (is_obj(a) || is_obj(b)) {
        if (a->t != b->t)
            return 0; /* unreachable for loose ops: compareCheck throws first */
        return a->t == GH_JV_ARR ? (a->u.a.v == b->u.a.v && a->u.a.n == b->u.a.n) : a->u.o == b->u.o;
    }
    return to_num(a) == to_num(b);
}

static int js_strict_eq(const gh_jv_t *a, const gh_jv_t *b)
{
    if (a->t != b->t)
        return 0;
    switch (a->t) {
    case GH_JV_NULL:
        return 1;
    case GH_JV_BOOL:
        return a->u.b == b->u.b;
    case GH_JV_NUM:
        return a->u.n == b->u.n;
    case GH_JV_STR:
        return a->u.s.n == b->u.s.n && !memcmp(a->u.s.p, b->u.s.p, a->u.s.n);
    case GH_JV_ARR: /* identity: the same array of the context or rule */
        return a->u.a.v == b->u.a.v && a->u.a.n == b->u.a.n;
    default:
        return a->u.o == b->u.o;
    }
}

/* UTF-16 code-unit order of two UTF-8 strings (JS string <). */
static int js_strcmp(gh_str_t a, gh_str_t b)
{
    size_t i = 0;
    while (i < a.n && i < b.n && a.p[i] == b.p[i])
        i++;
    if (i == a.n || i == b.n)
        return cmp_d((double)a.n, (double)b.n);
    /* differing lead bytes: byte order equals code point order; astral (F0..) vs
     * U+E000..U+FFFF (EE/EF) is the one place UTF-16 order differs */
    unsigned ca = (unsigned char)a.p[i], cb = (unsigned char)b.p[i];
    while (i > 0 && (((unsigned char)a.p[i] & 0xC0) == 0x80))
        i--, ca = (unsigned char)a.p[i], cb = (unsigned char)b.p[i];
    int sa = ca >= 0xF0, sb = cb >= 0xF0;
    int ea = ca == 0xEE || ca == 0xEF, eb = cb == 0xEE || cb == 0xEF;
    if (sa && eb)
        return -1;
    if (sb && ea)
        return 1;
    return (unsigned char)a.p[i] < (unsigned char)b.p[i] ? -1 : 1;
}

static int js_rel(int op, const gh_jv_t *a, const gh_jv_t *b)
{
    if (a->t == GH_JV_STR && b->t == GH_JV_STR) {
        int c = js_strcmp(gh_str(a->u.s.p, a->u.s.n), gh_str(b->u.s.p, b->u.s.n));
        return op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
    }
    double x = to_num(a), y = to_num(b);
    return op == OP_LT ? x < y : op == OP_LE ? x <= y : op == OP_GT ? x > y : x >= y;
}

/* JS ToPrimitive of an array/object for == and <: its String() (join, "[object Object]"). */
static int to_prim(const ev_t *e, gh_jv_t *v)
{
    if (!is_obj(v))
        return 0;
    gh_str_t s;
    int rc = to_str(e, v, &s);
    if (rc)
        return rc;
    *v = jv_str(s.p, s.n);
    return 0;
}

static int cmp_op_prim(int op, const gh_jv_t *a, const gh_jv_t *b);

static int cmp_op(const ev_t *e, int op, const gh_jv_t *a0, const gh_jv_t *b0, int *res)
{
    gh_jv_t a = *a0, b = *b0;
    *res = 0;
    if (op != OP_SEQ && op != OP_SNE && is_obj(&a) != is_obj(&b)) {
        if (a.t == GH_JV_NULL || b.t == GH_JV_NULL) {
            if (op == OP_EQ || op == OP_NE) { /* null == object is false */
                *res = op == OP_NE;
                return 0;
            }
        }
        int rc = to_prim(e, &a);
        if (!rc)
            rc = to_prim(e, &b);
        if (rc)
            return rc;
    } else if ((op != OP_SEQ && op != OP_SNE && op != OP_EQ && op != OP_NE) && is_obj(&a)) {
        int rc = to_prim(e, &a);
        if (!rc)
            rc = to_prim(e, &b);
        if (rc)
            return rc;
    }
    *res = cmp_op_prim(op, &a, &b);
    return 0;
}

static int cmp_op_prim(int op, const gh_jv_t *a, const gh_jv_t *b)
{
    switch (op) {
    case OP_EQ:
        return js_loose_eq(a, b);
    case OP_NE:
        return !js_loose_eq(a, b);
    case OP_SEQ:
        return js_strict_eq(a, b);
    case OP_SNE:
        return !js_strict_eq(a, b);
    default:
        return js_rel(op, a, b);
    }
}

static int str_or_null(const gh_jv_t *v) { return v->t == GH_JV_STR || v->t == GH_JV_NULL; }

/* (jle) downgrade.js compareCheck(item, prev, strict): throws (GH_EINVAL) on objects and
 * non-numeric operands of loose comparisons, maps null against a falsy value. */
static int compare_check(const gh_jv_t *item, const gh_jv_t *prev, int strict, gh_jv_t *out)
{
    *out = *item;
    if (strict || (str_or_null(item) && str_or_null(prev)))
        return 0;
    if (is_obj(item) || (isnan(to_num(item)) && prev->t != GH_JV_NULL))
        return GH_EINVAL;
    if (is_obj(prev) || isnan(to_num(prev)))
        return GH_EINVAL;
    if (prev->t == GH_JV_NULL && !gh_jv_truthy(item))
        *out = jv_null();
    else if (item->t == GH_JV_NULL && !gh_jv_truthy(prev))
        *out = jv_num(0);
    return 0;
}

/* (jle) the interpreter's comparisonFunc: strings/nulls as they are, else numbers. */
static int interp_cmp(const ev_t *e, int op, const gh_jv_t *a, const gh_jv_t *b, int *res)
{
    if (op == OP_SEQ || op == OP_SNE || (str_or_null(a) && str_or_null(b)))
        return cmp_op(e, op, a, b, res);
    if (is_obj(a) || isnan(to_num(a)))
        return GH_EINVAL;
    if (is_obj(b) || (isnan(to_num(b)) && a->t != GH_JV_NULL))
        return GH_EINVAL;
    gh_jv_t x = jv_num(to_num(a)), y = jv_num(to_num(b));
    return cmp_op(e, op, &x, &y, res);
}

static int eval_compare(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    int strict = n->op == OP_SEQ || n->op == OP_SNE, res;
    gh_jv_t left, cur, item;
    int rc = ev(e, kid(e->r, n, 0), s, depth + 1, &left);
    if (rc)
        return rc;
    if (s->interp) {
        /* (jle optimizer) 2 or 3 arguments are all evaluated first, then
         * cmp(a, b) && cmp(b, c) on the raw values; more arguments run lazily */
        for (uint32_t i = 1; i < n->nkids; i++) {
            if ((rc = ev(e, kid(e->r, n, i), s, depth + 1, &item)))
                return rc;
            if ((rc = interp_cmp(e, n->op, &left, &item, &res)))
                return rc;
            if (!res) {
                *out = jv_bool(0);
                return 0;
            }
            left = item;
        }
        *out = jv_bool(1);
        return 0;
    }
    /* (jle) compiled, 2 arguments: (prev = a) OP compareCheck(b, prev); 3 and more:
     * ((prev = a) OP (prev = compareCheck(b, prev))) && prev OP (prev = compareCheck(c, prev)).
     * `prev` is one variable of the compiled function that var, or, and ... assign too:
     * when b is a var, compareCheck sees (b, b), not (b, a). We keep that register. */
    *s->prev = left;
    for (uint32_t i = 1; i < n->nkids; i++) {
        if ((rc = ev(e, kid(e->r, n, i), s, depth + 1, &item)))
            return rc;
        if ((rc = compare_check(&item, s->prev, strict, &cur)))
            return rc;
        if (n->nkids > 2)
            *s->prev = cur;
        if ((rc = cmp_op(e, n->op, &left, &cur, &res)))
            return rc;
        if (!res) {
            *out = jv_bool(0);
            return 0;
        }
        left = cur;
    }
    *out = jv_bool(1);
    return 0;
}

/* precoerceNumber(x): NaN and (truthy) objects throw. */
static int arith_operand(const gh_jv_t *v, double *d)
{
    if (is_obj(v))
        return GH_EINVAL;
    *d = to_num(v);
    return 0;
}

static int eval_arith(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    gh_jv_t tmp[8], *args;
    uint32_t na;
    int rc;
    if (!(n->flags & F_ARGS_ARRAY)) {
        /* (jle) compile of a single argument: a literal string/number/bool is +x (or -x);
         * an expression yielding an array is reduced over; anything else is +x */
        gh_jv_t v;
        rc = ev(e, kid(e->r, n, 0), s, depth + 1, &v);
        if (rc)
            return rc;
        if (!s->interp && (n->op == OP_ADD || n->op == OP_SUB || n->op == OP_DIV))
            *s->prev = v; /* Array.isArray(prev = x) ... */
        if (v.t != GH_JV_ARR) {
            double d;
            if (v.t == GH_JV_OBJ)
                return GH_EINVAL;
            d = to_num(&v);
            if (n->op == OP_SUB)
                d = -d;
            if (n->op == OP_ADD || n->op == OP_SUB) {
                if (isnan(d) && kid(e->r, n, 0)->op != OP_LIT)
                    return GH_EINVAL;
                *out = jv_num(d);
                return 0;
            }
            return GH_EINVAL; /* "*", "/", "%" of a non-array: reduce/assertSize throws */
        }
        args = (gh_jv_t *)v.u.a.v, na = v.u.a.n;
        double acc;
        switch (n->op) {
        case OP_ADD:
        case OP_MUL:
            acc = n->op == OP_ADD ? 0 : 1;
            for (uint32_t i = 0; i < na; i++) {
                double d;
                if (arith_operand(&args[i], &d) || isnan(d))
                    return GH_EINVAL;
                acc = n->op == OP_ADD ? acc + d : acc * d;
            }
            *out = jv_num(acc);
            return 0;
        case OP_SUB:
            if (na == 1) {
                double d;
                if (arith_operand(&args[0], &d) || isnan(d))
                    return GH_EINVAL;
                *out = jv_num(-d);
                return 0;
            }
            /* fallthrough */
        default:
            if (na < (n->op == OP_MOD ? 2u : 1u))
                return GH_EINVAL;
            if (n->op == OP_DIV && na == 1) {
                double d;
                if (arith_operand(&args[0], &d) || isnan(d) || d == 0)
                    return GH_EINVAL;
                *out = jv_num(1 / d);
                return 0;
            }
            if (arith_operand(&args[0], &acc) || isnan(acc))
                return GH_EINVAL;
            for (uint32_t i = 1; i < na; i++) {
                double d;
                if (arith_operand(&args[i], &d) || isnan(d))
                    return GH_EINVAL;
                if (n->op == OP_DIV && d == 0)
                    return GH_EINVAL;
                acc = n->op == OP_SUB ? acc - d : n->op == OP_DIV ? acc / d : fmod(acc, d);
            }
            if (isnan(acc) || (s->interp && n->op == OP_DIV && acc == INFINITY))
                return GH_EINVAL;
            *out = jv_num(acc);
            return 0;
        }
    }
    rc = eval_args(e, n, s, depth, tmp, GH_ARRAY_LEN(tmp), &args, &na);
    if (rc)
        return rc;
    double acc = 0, d;
    switch (n->op) {
    case OP_ADD:
    case OP_MUL:
        acc = n->op == OP_ADD ? 0 : 1;
        for (uint32_t i = 0; i < na; i++) {
            if (arith_operand(&args[i], &d))
                return GH_EINVAL;
            acc = n->op == OP_ADD ? acc + d : acc * d;
        }
        break;
    case OP_SUB:
        if (arith_operand(&args[0], &acc))
            return GH_EINVAL;
        if (na == 1)
            acc = -acc;
        for (uint32_t i = 1; i < na; i++) {
            if (arith_operand(&args[i], &d))
                return GH_EINVAL;
            acc -= d;
        }
        break;
    case OP_DIV: {
        uint32_t i = 0;
        if (na == 1)
            acc = 1;
        else {
            if (arith_operand(&args[0], &acc))
                return GH_EINVAL;
            i = 1;
        }
        for (; i < na; i++) { /* precoerceNumber(+b || NaN): a zero or NaN divisor throws */
            if (arith_operand(&args[i], &d) || d == 0 || isnan(d))
                return GH_EINVAL;
            acc /= d;
        }
        break;
    }
    default: /* OP_MOD */
        if (arith_operand(&args[0], &acc))
            return GH_EINVAL;
        for (uint32_t i = 1; i < na; i++) {
            if (arith_operand(&args[i], &d))
                return GH_EINVAL;
            acc = fmod(acc, d);
        }
    }
    if (isnan(acc)) /* the outer precoerceNumber */
        return GH_EINVAL;
    if (s->interp && n->op == OP_DIV && acc == INFINITY) /* the '/' method checks Infinity */
        return GH_EINVAL;
    *out = jv_num(acc);
    return 0;
}

/* JS String.prototype.substr(from, len) on UTF-16 units. */
static double to_int(double d)
{
    if (isnan(d))
        return 0;
    return trunc(d);
}

static int eval_substr(const ev_t *e, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    if (na < 1 || args[0].t != GH_JV_STR) /* (jle) string.substr on a non-string throws */
        return GH_EINVAL;
    gh_str_t s = gh_str(args[0].u.s.p, args[0].u.s.n);
    double size = (double)u16_len(s);
    double from = na > 1 ? (is_obj(&args[1]) && args[1].t == GH_JV_OBJ ? NAN : to_num(&args[1])) : 0;
    if (na > 1 && args[1].t == GH_JV_ARR) {
        gh_str_t t;
        int rc = to_str(e, &args[1], &t);
        if (rc)
            return rc;
        from = js_str_to_num(t);
    }
    from = to_int(from);
    if (from < 0)
        from = GH_MAX(size + from, 0);
    from = GH_MIN(from, size);
    double len;
    int has_end = na > 2;
    int end_neg = 0;
    double endv = 0;
    if (has_end) {
        /* (jle) substr: `end < 0` compares the raw value; then result.length + end */
        const gh_jv_t *en = &args[2];
        if (en->t == GH_JV_NUM || en->t == GH_JV_BOOL || en->t == GH_JV_NULL)
            endv = to_num(en), end_neg = endv < 0;
        else if (en->t == GH_JV_STR) {
            endv = to_num(en);
            end_neg = endv < 0;
            if (end_neg) { /* number + string concatenates: substr(0, "N-1") is "" */
                *out = jv_str(s.p, 0);
                return 0;
            }
        } else
            endv = NAN;
    }
    if (has_end && end_neg) {
        double rest = size - from;
        len = GH_MAX(rest + to_int(endv), 0);
    } else if (has_end && !(args[2].t == GH_JV_NULL && 0)) {
        len = to_int(endv);
        len = GH_MIN(GH_MAX(len, 0), size - from);
    } else
        len = size - from;
    size_t a = u16_off(s, (size_t)from), b = u16_off(s, (size_t)(from + len));
    *out = jv_str(s.p + a, b - a);
    return 0;
}

/* An array operand of the iterating operators: `value || []`, a non-array throws. */
static int iter_source(const gh_jv_t *v, const gh_jv_t **items, uint32_t *n)
{
    if (!gh_jv_truthy(v) && v->t != GH_JV_OBJ) {
        *items = NULL, *n = 0;
        return 0;
    }
    if (v->t != GH_JV_ARR)
        return GH_EINVAL;
    *items = v->u.a.v, *n = v->u.a.n;
    return 0;
}

/* (jle) assertAllowedDepth(x, 0): a reduce accumulator may not nest objects/arrays. */
static int depth0_ok(const gh_jv_t *v)
{
    if (v->t == GH_JV_ARR) {
        for (uint32_t i = 0; i < v->u.a.n; i++)
            if (is_obj(&v->u.a.v[i]))
                return 0;
    } else if (v->t == GH_JV_OBJ && v->u.o) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v->u.o, k, x) {
            (void)k;
            if (json_is_object(x) || json_is_array(x))
                return 0;
        }
    }
    return 1;
}

static int eval_iter(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    const gh_jl_rule_t *r = e->r;
    gh_jv_t src;
    int rc = ev(e, kid(r, n, 0), s, depth + 1, &src);
    if (rc)
        return rc;
    const gh_jv_t *items;
    uint32_t cnt;
    if (n->op == OP_ALL && !s->interp) /* Array.isArray(prev = sel) && ... */
        *s->prev = src;
    if (n->op == OP_ALL && s->interp && js_falsy(&src)) /* selector || [] first */
        src = (gh_jv_t){.t = GH_JV_ARR};
    if (n->op == OP_ALL && src.t == GH_JV_ARR && src.u.a.n == 0) {
        *out = jv_bool(0);
        return 0;
    }
    if ((rc = iter_source(&src, &items, &cnt)))
        return rc;
    const node_t *m = kid(r, n, 1);
    gh_jv_t prev = jv_null(); /* each call of a compiled mapper has its own `prev` */
    if (n->op == OP_REDUCE && s->interp && m->op >= OP_ADD && m->op <= OP_MUL && (m->op == OP_ADD || m->op == OP_MUL) &&
        m->nkids == 2 && (m->flags & F_ARGS_ARRAY)) {
        /* (jle optimizer) reduce with {"+"|"*": [{var accumulator}, {var current}]} (either
         * order) is rewritten to {"+": [{"+": list}, initial || 0]} ({"*": ..., initial ?? 1}) */
        int acc_f = 0, cur_f = 0;
        for (int i = 0; i < 2; i++) {
            const node_t *vk = kid(r, m, (uint32_t)i);
            if (vk->op == OP_VAR && (vk->flags & F_VAR_STATIC) && vk->nseg == 1) {
                gh_str_t sg = gh_str(r->pool + r->segs[vk->seg].off, r->segs[vk->seg].len);
                acc_f |= sg.n == 11 && !memcmp(sg.p, "accumulator", 11);
                cur_f |= sg.n == 7 && !memcmp(sg.p, "current", 7);
            }
        }
        if (acc_f && cur_f) {
            double acc = m->op == OP_ADD ? 0 : 1, d;
            for (uint32_t i = 0; i < cnt; i++) {
                if (arith_operand(&items[i], &d))
                    return GH_EINVAL;
                acc = m->op == OP_ADD ? acc + d : acc * d;
            }
            gh_jv_t init = m->op == OP_ADD ? jv_num(0) : jv_num(1);
            if (n->nkids == 3) {
                if ((rc = ev(e, kid(r, n, 2), s, depth + 1, &init)))
                    return rc;
                if (m->op == OP_ADD && !gh_jv_truthy(&init))
                    init = jv_num(0);
            }
            if (arith_operand(&init, &d))
                return GH_EINVAL;
            acc = m->op == OP_ADD ? acc + d : acc * d;
            if (isnan(acc))
                return GH_EINVAL;
            *out = jv_num(acc);
            return 0;
        }
    }
    if (n->op == OP_REDUCE) {
        gh_jv_t acc;
        uint32_t i = 0;
        if (n->nkids == 3) {
            if ((rc = ev(e, kid(r, n, 2), s, depth + 1, &acc)))
                return rc;
            if (!depth0_ok(&acc))
                return GH_EINVAL;
        } else {
            if (cnt == 0) /* [].reduce(f) without an initial value throws */
                return GH_EINVAL;
            acc = items[0], i = 1;
        }
        for (; i < cnt; i++) {
            prev = jv_null();
            scope_t rs = {.kind = SC_REDUCE, .interp = s->interp, .prev = &prev, .acc = acc, .cur = items[i]};
            if ((rc = ev(e, m, &rs, depth + 1, &acc)))
                return rc;
            if (!depth0_ok(&acc))
                return GH_EINVAL;
        }
        *out = acc;
        return 0;
    }
    gh_jv_t *res = NULL;
    uint32_t nres = 0;
    if (n->op == OP_MAP || n->op == OP_FILTER) {
        res = arena_alloc(e->a, (cnt ? cnt : 1) * sizeof(gh_jv_t));
        if (!res)
            return GH_ELIMIT;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        prev = jv_null();
        scope_t es = {.kind = SC_VALUE, .interp = s->interp, .prev = &prev, .v = items[i]};
        gh_jv_t v;
        if ((rc = ev(e, m, &es, depth + 1, &v)))
            return rc;
        int t = gh_jv_truthy(&v);
        switch (n->op) {
        case OP_MAP:
            res[nres++] = v;
            break;
        case OP_FILTER:
            if (t)
                res[nres++] = items[i];
            break;
        case OP_ALL:
            if (!t) {
                *out = jv_bool(0);
                return 0;
            }
            break;
        case OP_SOME:
        case OP_NONE:
            if (t) {
                *out = jv_bool(n->op == OP_SOME);
                return 0;
            }
            break;
        }
    }
    switch (n->op) {
    case OP_MAP:
    case OP_FILTER:
        out->t = GH_JV_ARR, out->u.a.v = res, out->u.a.n = nres;
        break;
    case OP_ALL:
        *out = jv_bool(1);
        break;
    default:
        *out = jv_bool(n->op == OP_NONE);
    }
    return 0;
}

/* (jle) missing: each key (String()-ed, split at '.') that does not resolve; a falsy
 * value on the way (0, "", false, null) counts as missing, a final null does not. */
static int eval_missing(const ev_t *e, const scope_t *s, const gh_jv_t *keys, uint32_t nk, gh_jv_t *out,
                        uint32_t *nmiss)
{
    gh_jv_t *res = arena_alloc(e->a, (nk ? nk : 1) * sizeof(gh_jv_t));
    if (!res)
        return GH_ELIMIT;
    uint32_t nm = 0;
    for (uint32_t i = 0; i < nk; i++) {
        gh_str_t k;
        int rc = to_str(e, &keys[i], &k);
        if (rc)
            return rc;
        int found = 1;
        gh_jv_t cur;
        int at_flagd = 0;
        size_t st = 0, si = 0;
        char *buf = arena_alloc(e->a, k.n + 1);
        if (!buf)
            return GH_ELIMIT;
        size_t nparts_chars = 0;
        for (size_t j = 0; j <= k.n && found; j++) {
            if (j == k.n || k.p[j] == '.') {
                if (j == k.n && si == k.n && si > 0)
                    break;
                gh_str_t seg = gh_str(buf + st, nparts_chars - st);
                if (si == 0) {
                    if (s->kind == SC_ROOT && s->v.t == GH_JV_NULL &&
                        !(seg.n == 6 && !memcmp(seg.p, "$flagd", 6)))
                        found = 0;
                    else {
                        rc = scope_prop(e, s, seg, &at_flagd, &cur);
                        if (rc < 0)
                            return rc;
                        found = rc;
                    }
                } else if (at_flagd && si == 1) {
                    rc = flagd_prop(e, seg, &cur);
                    found = rc;
                } else if (!gh_jv_truthy(&cur) && cur.t != GH_JV_OBJ && cur.t != GH_JV_ARR)
                    found = 0;
                else {
                    rc = get_prop(e, &cur, seg, &cur);
                    if (rc < 0)
                        return rc;
                    found = rc;
                }
                si++;
                st = nparts_chars;
                continue;
            }
            char ch = k.p[j];
            if (ch == '\\' && j + 1 < k.n && (k.p[j + 1] == '.' || k.p[j + 1] == '/' || k.p[j + 1] == '\\'))
                ch = k.p[++j];
            buf[nparts_chars++] = ch;
        }
        if (!found)
            res[nm++] = keys[i];
    }
    out->t = GH_JV_ARR, out->u.a.v = res, out->u.a.n = nm;
    *nmiss = nm;
    return 0;
}

/* bucket = (uint64(hash) * total) >> 32, in [0, total) (fc: BigInt; Go: uint64): the
 * first variant whose cumulative weight exceeds it wins. */
static uint64_t frac_bucket(uint32_t hash, uint64_t total) { return ((uint64_t)hash * total) >> 32; }

/* flagd fractional (fc fractional.ts, Go fractional.go): see jsonlogic.h. */
static int eval_fractional(const ev_t *e, const scope_t *s, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    *out = jv_null();
    if (na < 1)
        return 0;
    if (s->kind != SC_ROOT) /* (fc) context.$flagd missing: inside map/reduce the data is the item */
        return 0;
    gh_str_t by;
    uint32_t first = 0;
    if (args[0].t == GH_JV_STR) {
        by = gh_str(args[0].u.s.p, args[0].u.s.n);
        first = 1;
    } else {
        /* (fc) `${flagKey}${targetingKey}`; a missing or falsy targetingKey gives null */
        gh_jv_t tk;
        int at;
        int rc = scope_prop(e, s, GH_STR("targetingKey"), &at, &tk);
        if (rc < 0)
            return rc;
        if (!rc || !gh_jv_truthy(&tk))
            return 0;
        gh_str_t ts;
        if ((rc = to_str(e, &tk, &ts)))
            return rc;
        char *p = arena_alloc(e->a, e->flag_key.n + ts.n);
        if (!p)
            return GH_ELIMIT;
        memcpy(p, e->flag_key.p, e->flag_key.n);
        memcpy(p + e->flag_key.n, ts.p, ts.n);
        by = gh_str(p, e->flag_key.n + ts.n);
    }
    double total = 0;
    for (uint32_t i = first; i < na; i++) {
        const gh_jv_t *b = &args[i];
        if (b->t != GH_JV_ARR || b->u.a.n == 0 || b->u.a.n > 2)
            return 0;
        if (is_obj(&b->u.a.v[0]))
            return 0;
        double w = 1;
        if (b->u.a.n == 2) {
            const gh_jv_t *wv = &b->u.a.v[1];
            if (wv->t != GH_JV_NUM || !isfinite(wv->u.n) || wv->u.n != floor(wv->u.n))
                return 0;
            w = GH_MAX(wv->u.n, 0); /* (fc) negative weights (rollout maths) clamp to 0 */
        }
        total += w;
    }
    if (total > 2147483647.0) /* (fc) MAX_WEIGHT = 2^31-1 */
        return 0;
    uint64_t bucket = frac_bucket(gh_murmur3_32(by.p, by.n, 0), (uint64_t)total);
    uint64_t sum = 0;
    for (uint32_t i = first; i < na; i++) {
        const gh_jv_t *b = &args[i];
        double w = b->u.a.n == 2 ? GH_MAX(b->u.a.v[1].u.n, 0) : 1;
        sum += (uint64_t)w;
        if (sum > bucket) {
            *out = b->u.a.v[0];
            return 0;
        }
    }
    return 0;
}

static int eval_str_cmp(const node_t *n, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    /* (fc) string-comp: exactly two strings, else null */
    if (na != 2 || args[0].t != GH_JV_STR || args[1].t != GH_JV_STR) {
        *out = jv_null();
        return 0;
    }
    uint32_t a = args[0].u.s.n, b = args[1].u.s.n;
    if (b > a) {
        *out = jv_bool(0);
        return 0;
    }
    const char *p = n->op == OP_STARTS ? args[0].u.s.p : args[0].u.s.p + (a - b);
    *out = jv_bool(!memcmp(p, args[1].u.s.p, b));
    return 0;
}

static int eval_in(const ev_t *e, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    gh_jv_t item = na > 0 ? args[0] : jv_null();
    int item_undef = na == 0;
    if (na < 2 || !gh_jv_truthy(&args[1])) {
        if (na >= 2 && args[1].t == GH_JV_OBJ) /* {}: falsy by truthy() but `{} || []` is {} */
            return GH_EINVAL;
        *out = jv_bool(0);
        return 0;
    }
    const gh_jv_t *hay = &args[1];
    if (hay->t == GH_JV_STR) {
        gh_str_t needle;
        if (item_undef)
            needle = GH_STR("undefined");
        else {
            int rc = to_str(e, &item, &needle);
            if (rc)
                return rc;
        }
        int found = needle.n == 0;
        for (size_t i = 0; !found && i + needle.n <= hay->u.s.n; i++)
            found = !memcmp(hay->u.s.p + i, needle.p, needle.n);
        *out = jv_bool(found);
        return 0;
    }
    if (hay->t == GH_JV_ARR) { /* Array.prototype.includes: SameValueZero */
        int found = 0;
        for (uint32_t i = 0; !found && i < hay->u.a.n; i++)
            found = !item_undef && js_strict_eq(&hay->u.a.v[i], &item);
        *out = jv_bool(found);
        return 0;
    }
    return GH_EINVAL; /* (5).includes / ({}).includes is not a function */
}

static int eval_cat(const ev_t *e, const node_t *n, int interp, gh_jv_t *args, uint32_t na, gh_jv_t *out);
static int raw_unary(const ev_t *e, const node_t *n, const gh_jv_t *v, gh_jv_t *out);

static int eval_cat(const ev_t *e, const node_t *n, int interp, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    sb_t b;
    sb_init(&b, e->a);
    for (uint32_t i = 0; i < na; i++) {
        /* (jle) compiled cat of an array is '' + a + b: null is "null"; the method form
         * (a single non-literal argument) skips null */
        if (args[i].t == GH_JV_NULL && (!(n->flags & F_ARGS_ARRAY) || interp))
            continue;
        sb_tostr(&b, &args[i], 0);
    }
    if (b.err)
        return b.err;
    *out = jv_str(b.p, b.n);
    return 0;
}

static int eval_merge(const ev_t *e, gh_jv_t *args, uint32_t na, gh_jv_t *out)
{
    size_t total = 0;
    for (uint32_t i = 0; i < na; i++)
        total += args[i].t == GH_JV_ARR ? args[i].u.a.n : 1;
    if (total > UINT32_MAX / sizeof(gh_jv_t))
        return GH_ELIMIT;
    gh_jv_t *v = arena_alloc(e->a, (total ? total : 1) * sizeof(gh_jv_t));
    if (!v)
        return GH_ELIMIT;
    size_t k = 0;
    for (uint32_t i = 0; i < na; i++) {
        if (args[i].t == GH_JV_ARR) {
            if (args[i].u.a.n)
                memcpy(v + k, args[i].u.a.v, args[i].u.a.n * sizeof(gh_jv_t));
            k += args[i].u.a.n;
        } else
            v[k++] = args[i];
    }
    out->t = GH_JV_ARR, out->u.a.v = v, out->u.a.n = (uint32_t)k;
    return 0;
}

/* The methods of "+", "-", "!", "!!" and "cat" called on one value: what the interpreter
 * does for {"op": x} and {"op": [x]} (optimizeUnary), and compiled code for {"cat": x}. */
static int raw_unary(const ev_t *e, const node_t *n, const gh_jv_t *v, gh_jv_t *out)
{
    double d, acc;
    switch (n->op) {
    case OP_NOT:
    case OP_NOTNOT: {
        gh_jv_t x = *v;
        if (x.t == GH_JV_ARR)
            x = x.u.a.n ? x.u.a.v[0] : jv_null();
        *out = jv_bool(gh_jv_truthy(&x) == (n->op == OP_NOTNOT));
        return 0;
    }
    case OP_CAT:
        if (v->t == GH_JV_NULL) /* null.toString() throws */
            return GH_EINVAL;
        if (v->t != GH_JV_ARR) {
            gh_str_t t;
            int rc = to_str(e, v, &t);
            if (rc)
                return rc;
            *out = jv_str(t.p, t.n);
            return 0;
        }
        return eval_cat(e, n, 1, (gh_jv_t *)v->u.a.v, v->u.a.n, out);
    case OP_ADD:
    case OP_SUB:
        if (js_falsy(v)) {
            *out = jv_num(0);
            return 0;
        }
        if (v->t == GH_JV_OBJ)
            return GH_EINVAL;
        if (v->t != GH_JV_ARR) {
            d = to_num(v);
            if (isnan(d))
                return GH_EINVAL;
            *out = jv_num(n->op == OP_ADD ? d : -d);
            return 0;
        }
        if (n->op == OP_SUB) {
            if (v->u.a.n == 0 || is_obj(&v->u.a.v[0]))
                return GH_EINVAL;
            if (v->u.a.n == 1) { /* -data[0], unchecked */
                *out = jv_num(-to_num(&v->u.a.v[0]));
                return 0;
            }
        }
        acc = n->op == OP_ADD ? 0 : to_num(&v->u.a.v[0]);
        for (uint32_t i = n->op == OP_ADD ? 0 : 1; i < v->u.a.n; i++) {
            if (is_obj(&v->u.a.v[i]))
                return GH_EINVAL;
            d = to_num(&v->u.a.v[i]);
            acc = n->op == OP_ADD ? acc + d : acc - d;
        }
        if (isnan(acc))
            return GH_EINVAL;
        *out = jv_num(acc);
        return 0;
    default:
        return GH_EINVAL;
    }
}

/* JS a + b on JSON-like values. */
static int js_add(const ev_t *e, const gh_jv_t *a0, const gh_jv_t *b0, gh_jv_t *out)
{
    gh_jv_t a = *a0, b = *b0;
    int rc;
    if ((rc = to_prim(e, &a)) || (rc = to_prim(e, &b)))
        return rc;
    if (a.t == GH_JV_STR || b.t == GH_JV_STR) {
        sb_t sb;
        sb_init(&sb, e->a);
        sb_tostr(&sb, &a, 0);
        sb_tostr(&sb, &b, 0);
        if (sb.err)
            return sb.err;
        *out = jv_str(sb.p, sb.n);
        return 0;
    }
    *out = jv_num(to_num(&a) + to_num(&b));
    return 0;
}

static int js_truthy(const gh_jv_t *v) { return !js_falsy(v); }

/* engine.truthy(x): the value itself when falsy, a boolean for arrays/objects, x else. */
static gh_jv_t engine_truthy(const gh_jv_t *v)
{
    if (js_falsy(v))
        return *v;
    if (is_obj(v))
        return jv_bool(gh_jv_truthy(v));
    return *v;
}

/* missing with 1 or 2 literal keys without '.': json-logic-engine compiles a ternary. */
static int missing_fast(const gh_jl_rule_t *r, const node_t *k)
{
    for (uint32_t i = 0; i < k->nkids; i++) {
        const node_t *x = kid(r, k, i);
        if (x->op != OP_LIT || x->lit.t != GH_JV_STR || (x->flags & F_FOLDED) ||
            memchr(x->lit.u.s.p, '.', x->lit.u.s.n))
            return 0;
    }
    return 1;
}

/* Compiled cat is ('' + E0 + E1 ...). json-logic-engine does not parenthesize the code of
 * or/and ("t(prev = x1) ? prev : ... : prev") nor of all ("Array.isArray(prev = s) &&
 * prev.length === 0 ? false : ..."), so inside cat JavaScript's precedence regroups them:
 * the sum so far joins the first condition, the rest of the sum joins the last branch.
 * flagd-core computes exactly that, so we do too. */
static int eval_cat_compiled(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    const gh_jl_rule_t *r = e->r;
    gh_jv_t acc = jv_str("", 0), v, t;
    int rc;
    for (uint32_t j = 0; j < n->nkids; j++) {
        const node_t *k = kid(r, n, j);
        if ((k->op == OP_AND || k->op == OP_OR) && k->nkids > 0) {
            for (uint32_t i = 0; i < k->nkids; i++) {
                if ((rc = ev(e, kid(r, k, i), s, depth + 1, &v)))
                    return rc;
                *s->prev = v;
                t = k->op == OP_AND ? jv_bool(!gh_jv_truthy(&v)) : engine_truthy(&v);
                if (i == 0 && (rc = js_add(e, &acc, &t, &t)))
                    return rc;
                if (js_truthy(&t)) {
                    *out = v;
                    return 0;
                }
            }
            acc = v; /* ... : prev + E(j+1) + ... */
            continue;
        }
        if (k->op == OP_MISSING && (k->flags & F_ARGS_ARRAY) && (k->nkids == 1 || k->nkids == 2) &&
            missing_fast(r, k)) {
            /* (context || 0)[k1] === undefined ? ... : (context || 0)[k2] === undefined ? [k2] : [] */
            if (k->nkids == 2) {
                const gh_jv_t *k2 = &kid(r, k, 1)->lit;
                int at;
                rc = scope_prop(e, s, gh_str(k2->u.s.p, k2->u.s.n), &at, &v);
                if (rc < 0)
                    return rc;
                if (!rc) {
                    out->t = GH_JV_ARR, out->u.a.v = k2, out->u.a.n = 1;
                    return 0;
                }
            }
            acc = (gh_jv_t){.t = GH_JV_ARR};
            continue;
        }
        if (k->op == OP_MISSING_SOME && (k->flags & F_ARGS_ARRAY) && k->nkids == 2 &&
            (kid(r, k, 1)->flags & F_JSON_ARRAY)) {
            /* acc + L - (prev = missing).length < need ? prev : [] + rest */
            gh_jv_t need, opts, miss, sum;
            uint32_t nm;
            if ((rc = ev(e, kid(r, k, 1), s, depth + 1, &opts)))
                return rc;
            gh_jv_t len = jv_num(opts.u.a.n);
            if ((rc = js_add(e, &acc, &len, &sum)) || (rc = to_prim(e, &sum)))
                return rc;
            if ((rc = eval_missing(e, s, opts.u.a.v, opts.u.a.n, &miss, &nm)))
                return rc;
            *s->prev = miss;
            if ((rc = ev(e, kid(r, k, 0), s, depth + 1, &need)))
                return rc;
            gh_jv_t d = jv_num(to_num(&sum) - nm);
            int lt;
            if ((rc = cmp_op(e, OP_LT, &d, &need, &lt)))
                return rc;
            if (lt) {
                *out = miss;
                return 0;
            }
            acc = (gh_jv_t){.t = GH_JV_ARR};
            continue;
        }
        if (k->op == OP_ALL) {
            gh_jv_t src, isarr, cond;
            if ((rc = ev(e, kid(r, k, 0), s, depth + 1, &src)))
                return rc;
            *s->prev = src;
            isarr = jv_bool(src.t == GH_JV_ARR);
            if ((rc = js_add(e, &acc, &isarr, &cond)))
                return rc;
            if (js_truthy(&cond)) { /* && prev.length === 0 */
                if (src.t == GH_JV_NULL)
                    return GH_EINVAL; /* null.length */
                size_t len = src.t == GH_JV_ARR ? src.u.a.n : src.t == GH_JV_STR ? u16_len(gh_str(src.u.s.p, src.u.s.n)) : 1;
                if (len == 0) {
                    *out = jv_bool(0);
                    return 0;
                }
            }
            /* (prev || []).every(...) + rest */
            const gh_jv_t *items;
            uint32_t cnt;
            if ((rc = iter_source(&src, &items, &cnt)))
                return rc;
            int all = 1;
            for (uint32_t i = 0; i < cnt && all; i++) {
                gh_jv_t prev = jv_null();
                scope_t es = {.kind = SC_VALUE, .interp = 0, .prev = &prev, .v = items[i]};
                if ((rc = ev(e, kid(r, k, 1), &es, depth + 1, &v)))
                    return rc;
                all = gh_jv_truthy(&v);
            }
            acc = jv_bool(all);
            continue;
        }
        if ((rc = ev(e, k, s, depth + 1, &v)) || (rc = js_add(e, &acc, &v, &acc)))
            return rc;
    }
    *out = acc;
    return 0;
}

static int ev(const ev_t *e, const node_t *n, const scope_t *s, int depth, gh_jv_t *out)
{
    const gh_jl_rule_t *r = e->r;
    if (depth > GH_JL_MAX_DEPTH * 2 + 8)
        return GH_ELIMIT;
    if (s->interp && (n->flags & F_THROWS))
        return GH_EINVAL;
    if (n->op == OP_CAT && (n->flags & F_ARGS_ARRAY) && !s->interp)
        return eval_cat_compiled(e, n, s, depth, out);
    if (n->op == OP_ADD || n->op == OP_SUB || n->op == OP_NOT || n->op == OP_NOTNOT || n->op == OP_CAT) {
        int single = !(n->flags & F_ARGS_ARRAY);
        int unwrap = s->interp && !single && n->nkids == 1 && !(kid(r, n, 0)->flags & F_JSON_ARRAY);
        if ((single && (s->interp || n->op == OP_CAT)) || unwrap) {
            gh_jv_t v;
            int rc = ev(e, kid(r, n, 0), s, depth + 1, &v);
            return rc ? rc : raw_unary(e, n, &v, out);
        }
    }
    gh_jv_t tmp[8], *args = NULL, v;
    uint32_t na = 0;
    int rc;
    switch (n->op) {
    case OP_LIT:
        *out = n->lit;
        return 0;
    case OP_ARRAY: {
        gh_jv_t *a = arena_alloc(e->a, (n->nkids ? n->nkids : 1) * sizeof(gh_jv_t));
        if (!a)
            return GH_ELIMIT;
        for (uint32_t i = 0; i < n->nkids; i++)
            if ((rc = ev(e, kid(r, n, i), s, depth + 1, &a[i])))
                return rc;
        out->t = GH_JV_ARR, out->u.a.v = a, out->u.a.n = n->nkids;
        return 0;
    }
    case OP_VAR:
        return eval_var(e, n, s, depth, out);
    case OP_IF: {
        /* (jle) if: [c1, t1, c2, t2, ..., else]; one argument is its value; none is null.
         * With fewer than 3 arguments it is not compiled: the method runs its arguments in
         * the interpreter */
        uint32_t k = n->nkids, i = 0;
        scope_t is;
        if (k < 3 && !s->interp) {
            is = *s;
            is.interp = 1;
            s = &is;
        }

        if (k == 0) {
            *out = jv_null();
            return 0;
        }
        if (k == 1)
            return ev(e, kid(r, n, 0), s, depth + 1, out);
        for (; i + 1 < k; i += 2) {
            if ((rc = ev(e, kid(r, n, i), s, depth + 1, &v)))
                return rc;
            if (gh_jv_truthy(&v))
                return ev(e, kid(r, n, i + 1), s, depth + 1, out);
        }
        if (i < k)
            return ev(e, kid(r, n, i), s, depth + 1, out);
        *out = jv_null();
        return 0;
    }
    case OP_EQ: case OP_SEQ: case OP_NE: case OP_SNE:
    case OP_GT: case OP_GE: case OP_LT: case OP_LE:
        return eval_compare(e, n, s, depth, out);
    case OP_NOT:
    case OP_NOTNOT: {
        /* (jle) compiled: an array argument negates its first element (none: undefined) */
        if ((n->flags & F_ARGS_ARRAY) && n->nkids == 0)
            v = jv_null();
        else if ((rc = ev(e, kid(r, n, 0), s, depth + 1, &v)))
            return rc;
        if (s->interp && v.t == GH_JV_ARR && !(n->flags & F_ARGS_ARRAY))
            v = v.u.a.n ? v.u.a.v[0] : jv_null(); /* (jle) '!' method: value[0] of an array */
        int t = gh_jv_truthy(&v);
        *out = jv_bool(n->op == OP_NOT ? !t : t);
        return 0;
    }
    case OP_OR:
    case OP_AND: {
        if (n->nkids == 0) {
            *out = jv_null();
            return 0;
        }
        for (uint32_t i = 0; i < n->nkids; i++) {
            if ((rc = ev(e, kid(r, n, i), s, depth + 1, &v)))
                return rc;
            if (!s->interp) /* engine.truthy(prev = x) ? prev : ... */
                *s->prev = v;
            if (gh_jv_truthy(&v) == (n->op == OP_OR))
                break;
        }
        *out = v;
        return 0;
    }
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
        return eval_arith(e, n, s, depth, out);
    case OP_MAP: case OP_FILTER: case OP_REDUCE: case OP_ALL: case OP_NONE: case OP_SOME:
        return eval_iter(e, n, s, depth, out);
    case OP_MISSING_SOME: {
        gh_jv_t need, opts;
        if ((rc = ev(e, kid(r, n, 0), s, depth + 1, &need)) || (rc = ev(e, kid(r, n, 1), s, depth + 1, &opts)))
            return rc;
        if (opts.t != GH_JV_ARR) /* options.length of a non-array */
            return GH_EINVAL;
        uint32_t nm;
        if ((rc = eval_missing(e, s, opts.u.a.v, opts.u.a.n, out, &nm)))
            return rc;
        if (!s->interp) /* ... - (prev = missing).length < ... */
            *s->prev = *out;
        /* options.length - missing.length < needCount ? missing : [] */
        if (is_obj(&need) && need.t == GH_JV_OBJ)
            return 0;
        gh_jv_t diff = jv_num((double)(opts.u.a.n - nm));
        if (!js_rel(OP_LT, &diff, &need))
            out->u.a.n = 0;
        return 0;
    }
    default:
        break;
    }
    if (n->op == OP_IN && (n->flags & F_ARGS_ARRAY) && !s->interp) {
        /* (jle) compiled: (b || []).includes(a): b is evaluated first; more args ignored */
        gh_jv_t ab[2] = {jv_null(), jv_null()};
        if (n->nkids > 1 && (rc = ev(e, kid(r, n, 1), s, depth + 1, &ab[1])))
            return rc;
        if (n->nkids > 0 && (rc = ev(e, kid(r, n, 0), s, depth + 1, &ab[0])))
            return rc;
        return eval_in(e, ab, n->nkids ? 2 : 0, out);
    }
    /* eager operators */
    if ((rc = eval_args(e, n, s, depth, tmp, GH_ARRAY_LEN(tmp), &args, &na)))
        return rc;
    switch (n->op) {
    case OP_MISSING: {
        uint32_t nm;
        return eval_missing(e, s, args, na, out, &nm);
    }
    case OP_MAX:
    case OP_MIN: {
        /* (jle) max/min: numbers only, at least one */
        if (na == 0 || args[0].t != GH_JV_NUM)
            return GH_EINVAL;
        double m = args[0].u.n;
        for (uint32_t i = 1; i < na; i++) {
            if (args[i].t != GH_JV_NUM)
                return GH_EINVAL;
            if (n->op == OP_MAX ? args[i].u.n > m : args[i].u.n < m)
                m = args[i].u.n;
        }
        *out = jv_num(m);
        return 0;
    }
    case OP_IN:
        return eval_in(e, args, na, out);
    case OP_CAT:
        return eval_cat(e, n, s->interp, args, na, out);
    case OP_SUBSTR:
        return eval_substr(e, args, na, out);
    case OP_MERGE:
        return eval_merge(e, args, na, out);
    case OP_FRACTIONAL:
        return eval_fractional(e, s, args, na, out);
    case OP_SEMVER: {
        /* (fc) sem-ver: String() both versions and the operator; unparsable: null */
        gh_str_t a, o, b;
        *out = jv_null();
        if (na != 3)
            return 0;
        if ((rc = to_str(e, &args[0], &a)) || (rc = to_str(e, &args[1], &o)) || (rc = to_str(e, &args[2], &b)))
            return rc;
        int c = gh_semver_cmp(a, o, b);
        if (c >= 0)
            *out = jv_bool(c);
        return 0;
    }
    case OP_STARTS:
    case OP_ENDS:
        return eval_str_cmp(n, args, na, out);
    default:
        return GH_EINVAL;
    }
}

/* (jle compiler) a deterministic operator (no var outside an iterator, no missing, no
 * custom operator) is run by the interpreter while building, its value inlined; when that
 * run throws, building fails (flagd-core: PARSE_ERROR). We do the same at compile time. */
static void det_flags(cc_t *c, int ni)
{
    gh_jl_rule_t *r = c->r;
    node_t *n = &r->nodes[ni];
    if (n->op == OP_LIT || n->op == OP_ARRAY)
        return;
    uint8_t d = 0;
    switch (n->op) {
    case OP_VAR:
        d = F_DET1;
        break;
    case OP_MISSING:
        d = (n->flags & F_ARGS_ARRAY) && n->nkids == 0 ? F_DET0 | F_DET1 : 0;
        break;
    case OP_MISSING_SOME: case OP_FRACTIONAL: case OP_SEMVER: case OP_STARTS: case OP_ENDS:
        d = 0;
        break;
    case OP_MAP: case OP_FILTER: case OP_REDUCE: case OP_ALL: case OP_NONE: case OP_SOME:
        /* selector as the parent sees it, mapper as inside an iterator (reduce's initial
         * value is not looked at) */
        d = (kid(r, n, 0)->flags & (F_DET0 | F_DET1)) & ((kid(r, n, 1)->flags & F_DET1) ? 0xff : 0);
        break;
    default:
        d = F_DET0 | F_DET1;
        for (uint32_t i = 0; i < n->nkids; i++)
            d &= kid(r, n, i)->flags;
    }
    n->flags |= d;
}

static int fold_node(cc_t *c, uint32_t ni);
static int is_lazy(const node_t *n);

/* Under a 1- or 2-argument `if` json-logic-engine runs the interpreter at evaluation time,
 * which "optimizes" each argument when it reaches it: constant nodes are computed then,
 * down to the lazy operators (or, and, if, iterators, comparisons of 4+ arguments), whose
 * arguments are optimized when they in turn are reached. A constant that fails makes the
 * node reached throw (F_THROWS) even if its own value would not be needed (3-argument if,
 * 2-3 argument comparisons). Returns 1 when ni throws, 0 when not, -1 on a hard error. */
static int defer_pass(cc_t *c, uint32_t ni)
{
    gh_jl_rule_t *r = c->r;
    node_t *n = &r->nodes[ni];
    int t = 0;
    if (n->op == OP_LIT)
        return 0;
    if (n->op != OP_ARRAY && (n->flags & F_DET0)) {
        int rc = fold_node(c, ni);
        if (rc == GH_EINVAL) {
            r->nodes[ni].flags |= F_THROWS;
            return 1;
        }
        return rc ? -1 : 0;
    }
    int lazy = is_lazy(n);
    for (uint32_t i = 0; i < n->nkids; i++) {
        int kt = defer_pass(c, r->kids[r->nodes[ni].kids + i]);
        if (kt < 0)
            return -1;
        if (!lazy)
            t |= kt;
    }
    if (t)
        r->nodes[ni].flags |= F_THROWS;
    return t;
}

/* Top-down, as json-logic-engine builds: the outermost constant node is run as a whole
 * (so `or`, `and`, `if` keep their laziness); the arguments of a 1- or 2-argument `if`
 * are not built at all (the method runs them later). */
static const char *op_name(int op)
{
    for (size_t i = 0; i < GH_ARRAY_LEN(op_names); i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "";
}

/* fold_pass on the i-th child, with the error path following the rule. */
static int fold_kid(cc_t *c, const node_t *n, uint32_t i)
{
    size_t old = c->pathn;
    if (n->op != OP_ARRAY)
        path_push(c, op_name(n->op), strlen(op_name(n->op)));
    if (n->flags & F_ARGS_ARRAY || n->op == OP_ARRAY)
        path_push_idx(c, i);
    int rc = fold_pass(c, c->r->kids[n->kids + i]);
    c->pathn = old;
    return rc;
}

static int fold_pass(cc_t *c, uint32_t ni)
{
    gh_jl_rule_t *r = c->r;
    node_t *n = &r->nodes[ni];
    if (n->op == OP_LIT)
        return 0;
    if (n->op != OP_ARRAY && !(n->flags & F_DET0)) {
        if (n->op == OP_IF && n->nkids < 3) {
            for (uint32_t i = 0; i < n->nkids; i++)
                if (defer_pass(c, r->kids[n->kids + i]) < 0)
                    return -1;
            return 0;
        }
        for (uint32_t i = 0; i < n->nkids; i++)
            if (fold_kid(c, &r->nodes[ni], i))
                return -1;
        return 0;
    }
    if (n->op == OP_ARRAY) {
        for (uint32_t i = 0; i < n->nkids; i++)
            if (fold_kid(c, &r->nodes[ni], i))
                return -1;
        return 0;
    }
    int rc = fold_node(c, ni);
    if (rc)
        return fail(c, rc == GH_ELIMIT ? "constant expression too large" : "constant expression fails to evaluate (type error)", NULL);
    return 0;
}

static int is_lazy(const node_t *n)
{
    int cmp = n->op >= OP_EQ && n->op <= OP_LE;
    return n->op == OP_OR || n->op == OP_AND || (n->op >= OP_MAP && n->op <= OP_SOME) ||
           (n->op == OP_IF && n->nkids != 3) || (cmp && n->nkids >= 4);
}

/* Run a constant node with the interpreter now and make it a literal. As the optimizer
 * does, the arguments of a non-lazy node are optimized (constants computed) first, so a
 * failing argument fails the node even when its value would not be used. */
static int fold_node(cc_t *c, uint32_t ni)
{
    gh_jl_rule_t *r = c->r;
    node_t *n = &r->nodes[ni];
    int lazy = is_lazy(n), t = 0;
    for (uint32_t i = 0; i < n->nkids; i++) {
        const node_t *k = kid(r, n, i);
        if (k->op == OP_LIT || (k->op != OP_ARRAY && !(k->flags & F_DET0)))
            continue;
        int kt = defer_pass(c, r->kids[n->kids + i]);
        n = &r->nodes[ni];
        if (kt < 0)
            return GH_ENOMEM;
        if (!lazy)
            t |= kt;
    }
    if (t)
        return GH_EINVAL;
    for (size_t cap = 1 << 14;;) {
        gh_jv_t prev = jv_null(), out;
        scope_t s = {.kind = SC_ROOT, .interp = 1, .prev = &prev};
        ev_t e = {.r = r, .a = &c->fold, .flag_key = GH_STR("")};
        size_t mark = c->fold.used;
        int rc = c->fold.base ? ev(&e, n, &s, 0, &out) : GH_ELIMIT;
        if (rc == GH_ELIMIT && cap <= ((size_t)1 << 26)) {
            c->fold.used = mark;
            cap = GH_MAX(cap, c->fold.cap) * 4;
            struct lit_block *b = malloc(sizeof(*b) + cap);
            if (!b)
                return GH_ENOMEM;
            b->next = r->lits, r->lits = b;
            c->fold = (gh_jl_arena_t){(char *)b->v, cap, 0};
            continue;
        }
        if (rc)
            return rc;
        n = &r->nodes[ni];
        n->op = OP_LIT, n->lit = out, n->nkids = 0, n->flags = F_DET0 | F_DET1 | F_FOLDED;
        return 0;
    }
}

int gh_jl_eval(const gh_jl_rule_t *r, const json_t *ctx, gh_str_t flag_key, int64_t now, gh_jl_arena_t *a,
               gh_jv_t *out)
{
    conv_cache_t cache;
    cache.n = 0;
    ev_t e = {.r = r, .a = a, .flag_key = flag_key, .now = now, .cache = &cache};
    gh_jv_t prev = jv_null();
    scope_t s = {.kind = SC_ROOT, .prev = &prev};
    if (ctx && json_is_object(ctx))
        s.v = (gh_jv_t){.t = GH_JV_OBJ, .u.o = ctx};
    *out = jv_null();
    gh_jv_t v;
    int rc = ev(&e, &r->nodes[r->root], &s, 0, &v);
    if (rc)
        return rc;
    *out = v;
    return 0;
}
