/* rules.c: request rule sets: building, validation, the candidate index and matching.
 *
 * A set owns its rules (one growing array) and every string and array they point to
 * (an arena of chunks freed at once). gh_rules_compile checks each rule, then builds the
 * index: every rule goes into exactly one list of rule indexes, kept in ascending order:
 *  - EXACT:  patterns without placeholder or splat, keyed by the pattern with one
 *            trailing '/' dropped ("/a/" and "/a" share the key "/a");
 *  - PREFIX: patterns with a placeholder or a splat, keyed by their literal text up to
 *            the last '/' before the first placeholder or the splat ("/blog/:y/ *", no space, ->
 *            "/blog/"), a key that always ends with '/';
 *  - ALWAYS: no pattern, or a prefix of just "/" (those are candidates for every path).
 * Both keyed kinds live in one open-addressing hash table (FNV-1a 64, finalised, linear
 * probing, power-of-two size). A request looks up its path (one trailing '/' dropped)
 * as an EXACT key, each prefix of its path ending at a '/' (the hash is carried along
 * the path, so that costs one pass) and the path + "/" (for "/a/ *" = "/a") as PREFIX
 * keys, then merges the sorted lists found with the ALWAYS list, smallest index first,
 * and evaluates each candidate fully. Nothing allocates per request but the PCRE2 match
 * data, made once per thread (freed at thread exit).
 *
 * Called by config.c, netlify.c and session.c (see rules.h). Calls libc and PCRE2. */
#include "rules/rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define MAX_RULES 100000
#define MAX_ERRORS 50
#define MAX_PATTERN_SLASHES 64 /* bounds the prefix lookups per request */
#define CHUNK_SIZE 16384

__thread uint32_t gh_rules_candidates_last;

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk_t;

enum { K_EXACT = 1, K_PREFIX, K_ALWAYS };

/* What compile learnt about one rule's pattern. */
typedef struct {
    uint32_t blen;  /* pattern length without the final '*' */
    uint32_t klen;  /* index key length (a prefix of from) */
    uint8_t kind;   /* K_* */
    uint8_t splat;  /* ends with '*' */
    uint8_t ph;     /* has a ":name" segment */
    uint8_t root;   /* the pattern is exactly "/" */
} cinfo_t;

typedef struct {
    const char *key; /* NULL: empty slot */
    uint64_t h;
    uint32_t klen;
    uint32_t kind;
    uint32_t off, n; /* the slot's rule indexes: idx[off .. off+n) */
} slot_t;

struct gh_ruleset {
    gh_rule_t *rules;
    uint32_t n, cap;
    chunk_t *mem;
    /* the index (valid when compiled) */
    int compiled;
    cinfo_t *ci;
    slot_t *slots;
    uint32_t mask;
    uint32_t *idx;      /* every rule index once, grouped by slot, ascending within a group */
    uint32_t *always;   /* ALWAYS rules, ascending */
    uint32_t nalways;
    uint32_t max_depth; /* the most '/' in a PREFIX key */
};

/* ---------------------------------------------------------------- building */

gh_ruleset_t *gh_rules_new(void) { return calloc(1, sizeof(gh_ruleset_t)); }

static void index_free(gh_ruleset_t *rs)
{
    free(rs->ci);
    free(rs->slots);
    free(rs->idx);
    free(rs->always);
    rs->ci = NULL;
    rs->slots = NULL;
    rs->idx = rs->always = NULL;
    rs->nalways = rs->mask = rs->max_depth = 0;
    rs->compiled = 0;
}

gh_rule_t *gh_rules_add(gh_ruleset_t *rs)
{
    if (rs->n == rs->cap) {
        uint32_t cap = rs->cap ? rs->cap * 2 : 16;
        if (cap < rs->cap)
            return NULL;
        gh_rule_t *r = realloc(rs->rules, (size_t)cap * sizeof *r);
        if (!r)
            return NULL;
        rs->rules = r;
        rs->cap = cap;
    }
    rs->compiled = 0; /* the index no longer covers every rule */
    gh_rule_t *r = &rs->rules[rs->n++];
    memset(r, 0, sizeof *r);
    return r;
}

uint32_t gh_rules_count(const gh_ruleset_t *rs) { return rs ? rs->n : 0; }

gh_rule_t *gh_rules_at(gh_ruleset_t *rs, uint32_t i) { return i < rs->n ? &rs->rules[i] : NULL; }

void *gh_rules_alloc(gh_ruleset_t *rs, size_t n)
{
    const size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    chunk_t *c = rs->mem;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_SIZE / 4 ? n : CHUNK_SIZE;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        if (rs->mem && n > CHUNK_SIZE / 4) { /* a big one: keep filling the current chunk */
            c->next = rs->mem->next;
            rs->mem->next = c;
        } else {
            c->next = rs->mem;
            rs->mem = c;
        }
    }
    char *p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *gh_rules_strdup(gh_ruleset_t *rs, const char *p, size_t n)
{
    char *d = gh_rules_alloc(rs, n + 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

void gh_rules_free(gh_ruleset_t *rs)
{
    if (!rs)
        return;
    index_free(rs);
    for (chunk_t *c = rs->mem, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(rs->rules);
    free(rs);
}

/* ---------------------------------------------------------------- checking */

static inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline bool is_alnum(unsigned char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
static inline bool is_name_char(unsigned char c) { return is_alnum(c) || c == '_'; }

static bool is_tchar(unsigned char c)
{
    return is_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
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

/* A field value: no CR, LF, NUL (nor other controls but HTAB). */
static bool is_field_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Visible bytes only (patterns, targets, host names): no space, no control. */
static bool is_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static const char *fail(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *fail(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return buf;
}

/* Length of an absolute http(s) URL's "scheme://", or 0. */
static size_t scheme_len(const char *s)
{
    if (strncasecmp(s, "http://", 7) == 0)
        return 7;
    if (strncasecmp(s, "https://", 8) == 0)
        return 8;
    return 0;
}

/* Where a target's placeholders may start: past "scheme://authority" of an absolute URL
 * (a ':' there is a port or userinfo, never a placeholder). */
static size_t target_body(const char *to)
{
    size_t i = scheme_len(to);
    if (i)
        while (to[i] && to[i] != '/' && to[i] != '?' && to[i] != '#')
            i++;
    return i;
}

typedef struct {
    gh_str_t name[GH_RULE_MAX_CAPTURES + 1];
    uint32_t n;
} names_t;

static bool names_has(const names_t *ns, const char *p, size_t n)
{
    for (uint32_t i = 0; i < ns->n; i++)
        if (gh_str_eq(ns->name[i], gh_str(p, n)))
            return true;
    return false;
}

/* Add a capture name; a message when it repeats or there are too many. */
static const char *names_add(names_t *ns, const char *p, size_t n, char *buf, size_t cap)
{
    if (names_has(ns, p, n))
        return fail(buf, cap, "placeholder :%.*s is used twice", (int)n, p);
    if (ns->n >= GH_RULE_MAX_CAPTURES)
        return fail(buf, cap, "more than %d placeholders (splat and query captures included)",
                    GH_RULE_MAX_CAPTURES);
    ns->name[ns->n++] = gh_str(p, n);
    return NULL;
}

/* Check a path pattern and learn its shape (ci) and capture names. */
static const char *check_pattern(const char *pat, cinfo_t *ci, names_t *ns, char *buf, size_t cap)
{
    size_t n = strlen(pat);
    memset(ci, 0, sizeof *ci);
    if (n == 0)
        return fail(buf, cap, "empty path pattern");
    if (pat[0] != '/')
        return fail(buf, cap, "path pattern '%s' must start with '/'", pat);
    if (!is_visible(pat, n))
        return fail(buf, cap, "path pattern '%s' contains a space or a control character", pat);
    if (n > UINT32_MAX / 2)
        return fail(buf, cap, "path pattern too long");
    if (memchr(pat, '?', n))
        return fail(buf, cap, "path pattern '%s' contains '?' (query parameters are separate conditions)", pat);
    size_t blen = n;
    if (pat[n - 1] == '*') {
        ci->splat = 1;
        blen = n - 1;
    }
    const char *star = memchr(pat, '*', blen);
    if (star)
        return fail(buf, cap, "path pattern '%s': '*' is only allowed at the end", pat);
    uint32_t slashes = 0;
    size_t first_ph = blen;
    for (size_t i = 0; i < blen;) {
        /* pat[i] == '/' here: a segment starts at i + 1 */
        slashes++;
        size_t s = i + 1, e = s;
        while (e < blen && pat[e] != '/')
            e++;
        if (s < blen && pat[s] == ':') {
            size_t k = s + 1;
            while (k < e && is_name_char((unsigned char)pat[k]))
                k++;
            if (k == s + 1 || k != e)
                return fail(buf, cap, "path pattern '%s': a placeholder is ':' and a name of letters, digits "
                            "or '_' making a whole segment ('%.*s')", pat, (int)(e - s), pat + s);
            if (ci->splat && e == blen)
                return fail(buf, cap, "path pattern '%s': '*' must follow a '/' or literal text, not a "
                            "placeholder", pat);
            const char *m = names_add(ns, pat + s + 1, e - s - 1, buf, cap);
            if (m)
                return m;
            ci->ph = 1;
            if (first_ph == blen)
                first_ph = s;
        }
        i = e;
    }
    if (slashes > MAX_PATTERN_SLASHES)
        return fail(buf, cap, "path pattern has more than %d segments", MAX_PATTERN_SLASHES);
    if (ci->splat) {
        const char *m = names_add(ns, "splat", 5, buf, cap);
        if (m)
            return m;
    }
    ci->blen = (uint32_t)blen;
    ci->root = (n == 1);
    if (!ci->ph && !ci->splat) {
        ci->kind = K_EXACT;
        ci->klen = (uint32_t)(n > 1 && pat[n - 1] == '/' ? n - 1 : n);
    } else {
        size_t k = first_ph; /* the literal text before the first placeholder, or all of it */
        while (k > 0 && pat[k - 1] != '/')
            k--;
        ci->kind = k <= 1 ? K_ALWAYS : K_PREFIX;
        ci->klen = (uint32_t)k;
    }
    return NULL;
}

static const char *check_target(const gh_rule_t *r, const names_t *ns, char *buf, size_t cap)
{
    const char *to = r->to;
    size_t n = strlen(to);
    if (n == 0)
        return fail(buf, cap, "empty target");
    if (!is_visible(to, n))
        return fail(buf, cap, "target '%s' contains a space or a control character", to);
    size_t sl = scheme_len(to);
    if (to[0] != '/' && !sl)
        return fail(buf, cap, "target '%s' must be a path (\"/...\") or an http(s):// URL", to);
    if (sl && (to[sl] == 0 || to[sl] == '/' || to[sl] == '?' || to[sl] == '#'))
        return fail(buf, cap, "target URL '%s' has no host", to);
    if (!r->from)
        return NULL; /* no pattern: placeholders are whatever is left unexpanded */
    for (size_t i = target_body(to); i < n; i++) {
        if (to[i] != ':')
            continue;
        size_t k = i + 1;
        while (k < n && is_name_char((unsigned char)to[k]))
            k++;
        if (k > i + 1 && !is_digit((unsigned char)to[i + 1]) && !names_has(ns, to + i + 1, k - i - 1))
            return fail(buf, cap, "target uses :%.*s, which the pattern does not capture", (int)(k - i - 1),
                        to + i + 1);
        i = k - 1;
    }
    return NULL;
}

static const char *check_effects(const gh_rule_t *r, const names_t *ns, char *buf, size_t cap)
{
    switch (r->action) {
    case GH_RULE_NONE:
        break;
    case GH_RULE_REDIRECT:
        if (r->status != 301 && r->status != 302 && r->status != 303 && r->status != 307 && r->status != 308)
            return fail(buf, cap, "redirect status %d: use 301, 302, 303, 307 or 308", r->status);
        if (!r->to)
            return fail(buf, cap, "redirect without a target");
        return check_target(r, ns, buf, cap);
    case GH_RULE_REWRITE:
        if (r->status != 200 && (r->status < 400 || r->status > 599))
            return fail(buf, cap, "rewrite status %d: use 200, or a 4xx/5xx to answer with", r->status);
        if (!r->to)
            return r->upstream_name ? NULL : fail(buf, cap, "rewrite without a target");
        return check_target(r, ns, buf, cap);
    case GH_RULE_RESPOND:
        if (r->status < 200 || r->status > 599)
            return fail(buf, cap, "response status %d: use 200..599", r->status);
        if (r->body_len && !r->body)
            return fail(buf, cap, "response body missing");
        if (r->ctype && !is_field_value(r->ctype, strlen(r->ctype)))
            return fail(buf, cap, "content type contains a control character");
        break;
    default:
        return fail(buf, cap, "unknown action %d", r->action);
    }
    return NULL;
}

static const char *check_edits(const gh_rule_t *r, char *buf, size_t cap)
{
    if (r->nedits && !r->edits)
        return fail(buf, cap, "header edits missing");
    for (uint32_t i = 0; i < r->nedits; i++) {
        const gh_rule_hedit_t *e = &r->edits[i];
        if (e->op != GH_HE_SET && e->op != GH_HE_APPEND && e->op != GH_HE_REMOVE)
            return fail(buf, cap, "header edit %u: unknown operation", i + 1);
        if (e->resp > 1)
            return fail(buf, cap, "header edit %u: neither request nor response", i + 1);
        if (!e->name || !is_token(e->name, e->name_len))
            return fail(buf, cap, "header edit %u: '%.*s' is not a valid header name", i + 1,
                        e->name ? (int)GH_MIN(e->name_len, 200) : 0, e->name ? e->name : "");
        if (e->value_len && !e->value)
            return fail(buf, cap, "header edit %u: value missing", i + 1);
        if (e->value && !is_field_value(e->value, e->value_len))
            return fail(buf, cap, "header %.*s: the value contains CR, LF, NUL or another control character",
                        (int)GH_MIN(e->name_len, 200), e->name);
    }
    return NULL;
}

static const char *check_conditions(const gh_rule_t *r, names_t *ns, char *buf, size_t cap)
{
    if (r->host && (!r->host[0] || !is_visible(r->host, strlen(r->host))))
        return fail(buf, cap, "invalid host '%s'", r->host);
    for (uint32_t i = 0; i < r->nquery; i++) {
        const gh_rule_query_t *q = &r->query[i];
        if (!q->name || !q->name[0])
            return fail(buf, cap, "query parameter %u has no name", i + 1);
        if (!q->value)
            return fail(buf, cap, "query parameter %s has no value", q->name);
        if (q->value[0] == ':') {
            size_t k = 1;
            while (is_name_char((unsigned char)q->value[k]))
                k++;
            if (k == 1 || q->value[k])
                return fail(buf, cap, "query parameter %s: a capture is ':' and a name of letters, digits or '_'",
                            q->name);
            const char *m = names_add(ns, q->value + 1, k - 1, buf, cap);
            if (m)
                return m;
        }
    }
    for (uint32_t i = 0; i < r->nheaders; i++) {
        const gh_conf_header_match_t *h = &r->headers[i];
        if (!h->name || !is_token(h->name, h->name_len))
            return fail(buf, cap, "header condition %u: not a valid header name", i + 1);
        if (h->kind == GH_MATCH_REGEX && !h->re)
            return fail(buf, cap, "header condition %.*s: regex not compiled", (int)h->name_len, h->name);
        if (h->kind != GH_MATCH_REGEX && h->kind != GH_MATCH_EXACT && h->kind != GH_MATCH_PREFIX &&
            h->kind != GH_MATCH_PRESENT)
            return fail(buf, cap, "header condition %.*s: unknown kind", (int)h->name_len, h->name);
        if ((h->kind == GH_MATCH_EXACT || h->kind == GH_MATCH_PREFIX) && h->value_len && !h->value)
            return fail(buf, cap, "header condition %.*s: value missing", (int)h->name_len, h->name);
    }
    for (uint32_t i = 0; i < r->ncookies; i++)
        if (!r->cookies[i].name || !r->cookies[i].name[0])
            return fail(buf, cap, "cookie condition %u has no name", i + 1);
    for (uint32_t i = 0; i < r->ncountries; i++)
        if (!r->countries[i] || !r->countries[i][0])
            return fail(buf, cap, "empty country");
    for (uint32_t i = 0; i < r->nlanguages; i++)
        if (!r->languages[i] || !r->languages[i][0])
            return fail(buf, cap, "empty language");
    for (uint32_t i = 0; i < r->ncidrs; i++) {
        const gh_cidr_t *c = &r->cidrs[i];
        if (!((c->family == AF_INET && c->prefix <= 32) || (c->family == AF_INET6 && c->prefix <= 128)))
            return fail(buf, cap, "address range %u is invalid", i + 1);
    }
    if (r->flag && !r->nvariants)
        return fail(buf, cap, "flag condition %s without variants", r->flag);
    if (!r->flag && r->nvariants)
        return fail(buf, cap, "variants without a flag");
    for (uint32_t i = 0; i < r->nvariants; i++)
        if (!r->variants[i])
            return fail(buf, cap, "flag condition %s: variant %u missing", r->flag, i + 1);
    return NULL;
}

static const char *check_rule(const gh_rule_t *r, cinfo_t *ci, char *buf, size_t cap)
{
    names_t ns = {.n = 0};
    memset(ci, 0, sizeof *ci);
    ci->kind = K_ALWAYS;
    if (r->from) {
        const char *m = check_pattern(r->from, ci, &ns, buf, cap);
        if (m)
            return m;
    }
    const char *m = check_conditions(r, &ns, buf, cap);
    if (!m)
        m = check_effects(r, &ns, buf, cap);
    if (!m)
        m = check_edits(r, buf, cap);
    return m;
}

const char *gh_rules_check(const gh_rule_t *r, char *buf, size_t cap)
{
    cinfo_t ci;
    return check_rule(r, &ci, buf, cap);
}

/* ---------------------------------------------------------------- the index */

static inline uint64_t fnv_step(uint64_t h, unsigned char c) { return (h ^ c) * 0x100000001b3ull; }
#define FNV_INIT 0xcbf29ce484222325ull

static uint64_t fnv(const char *p, size_t n)
{
    uint64_t h = FNV_INIT;
    for (size_t i = 0; i < n; i++)
        h = fnv_step(h, (unsigned char)p[i]);
    return h;
}

/* Mix the FNV state so that its low bits pick a slot well. */
static inline uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static const slot_t *lookup(const gh_ruleset_t *rs, uint64_t h, const char *key, size_t klen, uint32_t kind)
{
    for (uint64_t i = fmix(h ^ kind) & rs->mask;; i = (i + 1) & rs->mask) {
        const slot_t *s = &rs->slots[i];
        if (!s->key)
            return NULL;
        if (s->h == h && s->kind == kind && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

/* lookup() of the key s[0..n) + "/", which is nowhere in memory as one piece. */
static const slot_t *lookup_slash(const gh_ruleset_t *rs, uint64_t h, const char *s, size_t n)
{
    for (uint64_t i = fmix(h ^ K_PREFIX) & rs->mask;; i = (i + 1) & rs->mask) {
        const slot_t *sl = &rs->slots[i];
        if (!sl->key)
            return NULL;
        if (sl->h == h && sl->kind == K_PREFIX && sl->klen == n + 1 && memcmp(sl->key, s, n) == 0 &&
            sl->key[n] == '/')
            return sl;
    }
}

static slot_t *slot_for(gh_ruleset_t *rs, const char *key, uint32_t klen, uint32_t kind)
{
    uint64_t h = fnv(key, klen);
    for (uint64_t i = fmix(h ^ kind) & rs->mask;; i = (i + 1) & rs->mask) {
        slot_t *s = &rs->slots[i];
        if (!s->key) {
            *s = (slot_t){.key = key, .h = h, .klen = klen, .kind = kind};
            return s;
        }
        if (s->h == h && s->kind == kind && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

static int build_index(gh_ruleset_t *rs)
{
    uint32_t size = 16;
    while (size < 2u * rs->n + 2)
        size *= 2;
    rs->slots = calloc(size, sizeof *rs->slots);
    rs->idx = malloc(((size_t)rs->n + 1) * sizeof *rs->idx);
    rs->always = malloc(((size_t)rs->n + 1) * sizeof *rs->always);
    if (!rs->slots || !rs->idx || !rs->always)
        return GH_ENOMEM;
    rs->mask = size - 1;
    /* count per slot, give each slot its range of idx, then fill in rule order */
    for (uint32_t i = 0; i < rs->n; i++) {
        const cinfo_t *c = &rs->ci[i];
        if (c->kind != K_ALWAYS) {
            slot_for(rs, rs->rules[i].from, c->klen, c->kind)->n++;
            if (c->kind == K_PREFIX) {
                uint32_t d = 0;
                for (uint32_t k = 0; k < c->klen; k++)
                    d += rs->rules[i].from[k] == '/';
                rs->max_depth = GH_MAX(rs->max_depth, d);
            }
        }
    }
    uint32_t off = 0;
    for (uint32_t i = 0; i < size; i++) {
        if (rs->slots[i].key) {
            rs->slots[i].off = off;
            off += rs->slots[i].n;
            rs->slots[i].n = 0;
        }
    }
    for (uint32_t i = 0; i < rs->n; i++) {
        const cinfo_t *c = &rs->ci[i];
        if (c->kind == K_ALWAYS) {
            rs->always[rs->nalways++] = i;
        } else {
            slot_t *s = slot_for(rs, rs->rules[i].from, c->klen, c->kind);
            rs->idx[s->off + s->n++] = i;
        }
    }
    return 0;
}

static uint32_t report(gh_rules_err_fn err, void *arg, const gh_rule_t *r, uint32_t nerr, const char *msg)
{
    if (err)
        err(arg, r && r->file ? r->file : "", r ? r->line : 0, 0, msg);
    return nerr + 1;
}

int gh_rules_compile(gh_ruleset_t *rs, gh_rules_err_fn err, void *arg)
{
    char buf[512];
    uint32_t nerr = 0;
    index_free(rs);
    if (rs->n > MAX_RULES) {
        snprintf(buf, sizeof buf, "%u rules: at most %d per set", rs->n, MAX_RULES);
        return (int)report(err, arg, NULL, nerr, buf);
    }
    rs->ci = calloc(rs->n + 1, sizeof *rs->ci);
    if (!rs->ci)
        return (int)report(err, arg, NULL, nerr, "out of memory");
    for (uint32_t i = 0; i < rs->n && nerr < MAX_ERRORS; i++) {
        const char *m = check_rule(&rs->rules[i], &rs->ci[i], buf, sizeof buf);
        if (m)
            nerr = report(err, arg, &rs->rules[i], nerr, m);
    }
    if (nerr) {
        index_free(rs);
        return (int)nerr;
    }
    if (build_index(rs) < 0) {
        index_free(rs);
        return (int)report(err, arg, NULL, nerr, "out of memory");
    }
    rs->compiled = 1;
    return 0;
}

/* ---------------------------------------------------------------- matching */

typedef struct {
    gh_str_t name[GH_RULE_MAX_CAPTURES], value[GH_RULE_MAX_CAPTURES];
    uint32_t n;
} caps_t;

static inline void cap_add(caps_t *c, const char *name, size_t nlen, const char *v, size_t vlen)
{
    if (c->n < GH_RULE_MAX_CAPTURES) { /* bounded by compile */
        c->name[c->n] = gh_str(name, nlen);
        c->value[c->n] = gh_str(v, vlen);
        c->n++;
    }
}

/* Walk pattern p[0..pn) along path s[0..sn). full: the path must end with the pattern;
 * otherwise *rest is where the pattern's end left the path. */
static bool walk(const char *p, size_t pn, const char *s, size_t sn, bool full, size_t *rest, caps_t *c)
{
    size_t i = 0, j = 0;
    while (i < pn) {
        if (p[i] == ':' && i > 0 && p[i - 1] == '/') { /* a placeholder segment (checked by compile) */
            size_t k = i + 1, e = j;
            while (k < pn && p[k] != '/')
                k++;
            while (e < sn && s[e] != '/')
                e++;
            if (e == j)
                return false;
            cap_add(c, p + i + 1, k - i - 1, s + j, e - j);
            i = k;
            j = e;
        } else {
            if (j >= sn || p[i] != s[j])
                return false;
            i++;
            j++;
        }
    }
    if (full)
        return j == sn;
    *rest = j;
    return true;
}

static inline size_t strip1(const char *s, size_t n) { return n > 1 && s[n - 1] == '/' ? n - 1 : n; }

static bool path_ok(const gh_rule_t *r, const cinfo_t *ci, gh_str_t path, caps_t *c)
{
    const char *p = r->from, *s = path.p ? path.p : "";
    if (ci->root)
        return path.n == 1 && s[0] == '/';
    if (!ci->splat) {
        size_t pn = strip1(p, ci->blen), sn = strip1(s, path.n);
        if (!ci->ph)
            return pn == sn && memcmp(p, s, pn) == 0;
        return walk(p, pn, s, sn, true, NULL, c);
    }
    uint32_t n0 = c->n;
    size_t rest;
    if (walk(p, ci->blen, s, path.n, false, &rest, c)) {
        cap_add(c, "splat", 5, s + rest, path.n - rest);
        return true;
    }
    c->n = n0;
    /* "/a/ *" also matches "/a" */
    if (ci->blen > 1 && p[ci->blen - 1] == '/' && walk(p, ci->blen - 1, s, path.n, true, NULL, c)) {
        cap_add(c, "splat", 5, s + path.n, 0);
        return true;
    }
    c->n = n0;
    return false;
}

/* The first parameter called name in a raw query ("a=1&b"), its value in *v (empty when it has none). */
static bool query_find(gh_str_t q, const char *name, gh_str_t *v)
{
    size_t nl = strlen(name);
    const char *p = q.p, *end = q.p + q.n;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        const char *ke = eq ? eq : e;
        if ((size_t)(ke - p) == nl && memcmp(p, name, nl) == 0) {
            *v = eq ? gh_str(eq + 1, (size_t)(e - eq - 1)) : gh_str(e, 0);
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static bool query_ok(const gh_rule_t *r, const gh_rules_in_t *in, caps_t *c)
{
    for (uint32_t i = 0; i < r->nquery; i++) {
        const gh_rule_query_t *q = &r->query[i];
        gh_str_t v;
        if (!query_find(in->query, q->name, &v))
            return false;
        if (q->value[0] == ':')
            cap_add(c, q->value + 1, strlen(q->value + 1), v.p, v.n);
        else if (q->value[0] && !gh_str_eq(v, gh_str(q->value, strlen(q->value))))
            return false;
    }
    return true;
}

/* PCRE2 match data: one per thread, made on first use, freed at thread exit. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static pcre2_match_context *mctx;
static __thread pcre2_match_data *tl_md;

static void md_free(void *md) { pcre2_match_data_free(md); }

static void md_init(void)
{
    (void)pthread_key_create(&md_key, md_free);
    mctx = pcre2_match_context_create(NULL);
    if (mctx) { /* bounds a pathological pattern; the limit counts as no match */
        pcre2_set_match_limit(mctx, 1000000);
        pcre2_set_depth_limit(mctx, 10000);
    }
}

static bool re_match(const gh_regex_t *re, gh_str_t v)
{
    if (GH_UNLIKELY(!tl_md)) {
        pthread_once(&md_once, md_init);
        tl_md = pcre2_match_data_create(1, NULL); /* match or not: no captures wanted */
        if (!tl_md)
            return false;
        (void)pthread_setspecific(md_key, tl_md);
    }
    return pcre2_match((const pcre2_code *)re, (PCRE2_SPTR)(v.p ? v.p : ""), v.n, 0, 0, tl_md, mctx) >= 0;
}

static bool header_ok(const gh_conf_header_match_t *m, const gh_rules_in_t *in)
{
    for (uint32_t i = 0; i < in->nheaders; i++) {
        const gh_h1_header_t *h = &in->headers[i];
        if (!gh_str_caseeq(h->name, gh_str(m->name, m->name_len)))
            continue;
        switch (m->kind) {
        case GH_MATCH_PRESENT:
            return true;
        case GH_MATCH_EXACT:
            if (gh_str_eq(h->value, gh_str(m->value, m->value_len)))
                return true;
            break;
        case GH_MATCH_PREFIX:
            if (h->value.n >= m->value_len && (m->value_len == 0 || memcmp(h->value.p, m->value, m->value_len) == 0))
                return true;
            break;
        case GH_MATCH_REGEX:
            if (re_match(m->re, h->value))
                return true;
            break;
        }
    }
    return false;
}

static bool cookie_ok(const gh_rule_cookie_t *k, const gh_rules_in_t *in)
{
    gh_str_t v = gh_h1_cookie(in->headers, in->nheaders, gh_str(k->name, strlen(k->name)));
    if (!v.p)
        return false;
    return !k->value || gh_str_eq(v, gh_str(k->value, strlen(k->value)));
}

static bool cookies_ok(const gh_rule_t *r, const gh_rules_in_t *in)
{
    for (uint32_t i = 0; i < r->ncookies; i++) {
        bool ok = cookie_ok(&r->cookies[i], in);
        if (r->cookies_any && ok)
            return true;
        if (!r->cookies_any && !ok)
            return false;
    }
    return !r->cookies_any;
}

static bool country_ok(const gh_rule_t *r, const char *country)
{
    if (!country)
        return false;
    for (uint32_t i = 0; i < r->ncountries; i++)
        if (strcmp(r->countries[i], country) == 0)
            return true;
    return false;
}

static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

/* One Accept-Language tag against the rule's languages: "en" takes "en" and "en-US". */
static bool tag_ok(const gh_rule_t *r, const char *t, size_t n)
{
    for (uint32_t i = 0; i < r->nlanguages; i++) {
        size_t ln = strlen(r->languages[i]);
        if (n >= ln && strncasecmp(t, r->languages[i], ln) == 0 && (n == ln || t[ln] == '-'))
            return true;
    }
    return false;
}

static bool language_ok(const gh_rule_t *r, const gh_rules_in_t *in)
{
    for (uint32_t i = 0; i < in->nheaders; i++) {
        const gh_h1_header_t *h = &in->headers[i];
        if (!gh_str_caseeq_lit(h->name, "accept-language"))
            continue;
        const char *p = h->value.p, *end = h->value.p + h->value.n;
        while (p && p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            const char *semi = memchr(p, ';', (size_t)(e - p));
            const char *te = semi ? semi : e;
            while (p < te && is_ows(*p))
                p++;
            while (te > p && is_ows(te[-1]))
                te--;
            if (te > p && tag_ok(r, p, (size_t)(te - p)))
                return true;
            p = comma ? comma + 1 : NULL;
        }
    }
    return false;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rem = bits % 8;
    if (full && memcmp(a, b, full) != 0)
        return false;
    if (!rem)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rem));
    return (a[full] & mask) == (b[full] & mask);
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool cidr_ok(const gh_rule_t *r, const struct sockaddr *sa)
{
    const uint8_t *a4 = NULL, *a6 = NULL;
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        a4 = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a6 = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (memcmp(a6, v4mapped, 12) == 0) {
            a4 = a6 + 12;
            a6 = NULL;
        }
    } else {
        return false;
    }
    for (uint32_t i = 0; i < r->ncidrs; i++) {
        const gh_cidr_t *c = &r->cidrs[i];
        if (c->family == AF_INET && a4 && prefix_eq(c->addr, a4, c->prefix))
            return true;
        if (c->family == AF_INET6) {
            if (a6 && prefix_eq(c->addr, a6, c->prefix))
                return true;
            /* a v4-mapped range ("::ffff:10.0.0.0/104") holds the IPv4 clients it maps */
            if (a4 && c->prefix >= 96 && memcmp(c->addr, v4mapped, 12) == 0 &&
                prefix_eq(c->addr + 12, a4, c->prefix - 96u))
                return true;
        }
    }
    return false;
}

static bool variant_ok(const gh_rule_t *r, const gh_rules_in_t *in)
{
    if (!in->variant)
        return false;
    const char *v = in->variant(in->arg, r->flag);
    if (!v)
        return false;
    for (uint32_t i = 0; i < r->nvariants; i++)
        if (strcmp(r->variants[i], v) == 0)
            return true;
    return false;
}

/* Every condition of rule r against the request; captures into c. */
static bool rule_ok(const gh_rule_t *r, const cinfo_t *ci, const gh_rules_in_t *in, caps_t *c)
{
    if (r->host && !gh_str_caseeq(in->host, gh_str(r->host, strlen(r->host))))
        return false;
    if (r->methods && (in->method_id < 0 || in->method_id > 31 || !(r->methods & (1u << in->method_id))))
        return false;
    if (r->from && !path_ok(r, ci, in->path, c))
        return false;
    if (r->nquery && !query_ok(r, in, c))
        return false;
    for (uint32_t i = 0; i < r->nheaders; i++)
        if (!header_ok(&r->headers[i], in))
            return false;
    if (r->ncookies && !cookies_ok(r, in))
        return false;
    if (r->ncountries && !country_ok(r, in->country))
        return false;
    if (r->nlanguages && !language_ok(r, in))
        return false;
    if (r->ncidrs && !cidr_ok(r, in->peer))
        return false;
    if (r->flag && !variant_ok(r, in))
        return false;
    return true;
}

#define MAX_LISTS (MAX_PATTERN_SLASHES + 4)

typedef struct {
    const uint32_t *p[MAX_LISTS], *end[MAX_LISTS];
    uint32_t n;
} lists_t;

static inline void lists_add(lists_t *l, const gh_ruleset_t *rs, const slot_t *s)
{
    if (s && s->n && l->n < MAX_LISTS) {
        l->p[l->n] = rs->idx + s->off;
        l->end[l->n] = rs->idx + s->off + s->n;
        l->n++;
    }
}

/* The candidate lists for a path: its exact key, its prefixes ending at a '/' (but "/", which
 * is in the always list), itself + "/", and the always list. */
static void candidates(const gh_ruleset_t *rs, gh_str_t path, lists_t *l)
{
    const char *s = path.p ? path.p : "";
    size_t n = path.n;
    l->n = 0;
    size_t en = strip1(s, n);
    lists_add(l, rs, lookup(rs, fnv(s, en), s, en, K_EXACT));
    if (rs->max_depth >= 2) {
        uint64_t h = FNV_INIT;
        uint32_t depth = 0;
        size_t j = 0;
        for (; j < n; j++) {
            h = fnv_step(h, (unsigned char)s[j]);
            if (s[j] == '/') {
                if (++depth > rs->max_depth)
                    break;
                if (depth >= 2)
                    lists_add(l, rs, lookup(rs, h, s, j + 1, K_PREFIX));
            }
        }
        /* path + "/": the key of "/a/ *" for the path "/a" */
        if (j == n && depth + 1 <= rs->max_depth && depth + 1 >= 2)
            lists_add(l, rs, lookup_slash(rs, fnv_step(h, '/'), s, n));
    }
    if (rs->nalways && l->n < MAX_LISTS) {
        l->p[l->n] = rs->always;
        l->end[l->n] = rs->always + rs->nalways;
        l->n++;
    }
}

int gh_rules_match(const gh_ruleset_t *rs, const gh_rules_in_t *in, gh_rules_out_t *out)
{
    out->action = NULL;
    out->ncaps = 0;
    out->nedits = 0;
    gh_rules_candidates_last = 0;
    if (!rs || !rs->compiled || !rs->n)
        return 0;
    lists_t l;
    candidates(rs, in->path, &l);
    for (;;) {
        /* the smallest head of the sorted lists (few lists: a linear pick) */
        uint32_t best = UINT32_MAX, bl = 0;
        for (uint32_t k = 0; k < l.n; k++)
            if (l.p[k] < l.end[k] && *l.p[k] < best) {
                best = *l.p[k];
                bl = k;
            }
        if (best == UINT32_MAX)
            break;
        l.p[bl]++;
        const gh_rule_t *r = &rs->rules[best];
        if (out->action && r->action != GH_RULE_NONE)
            continue; /* only header-only rules after the action */
        if (r->action == GH_RULE_NONE && !r->nedits)
            continue;
        gh_rules_candidates_last++;
        caps_t c;
        c.n = 0;
        if (!rule_ok(r, &rs->ci[best], in, &c))
            continue;
        if (r->nedits && out->nedits < GH_RULES_MAX_MATCHED)
            out->edits[out->nedits++] = r;
        if (r->action != GH_RULE_NONE) {
            out->action = r;
            out->ncaps = c.n;
            memcpy(out->cap_name, c.name, c.n * sizeof c.name[0]);
            memcpy(out->cap_value, c.value, c.n * sizeof c.value[0]);
        }
        if (out->action && out->nedits == GH_RULES_MAX_MATCHED)
            break;
    }
    return out->action || out->nedits;
}

/* ---------------------------------------------------------------- expanding */

ssize_t gh_rules_expand(const gh_rules_out_t *m, gh_str_t query, char *buf, size_t cap)
{
    const gh_rule_t *r = m->action;
    if (!r || !cap)
        return -1;
    const char *to = r->to ? r->to : "";
    size_t n = strlen(to), o = 0, body = target_body(to);
    bool pass_query = r->to && !strchr(to, '?') && !r->nquery && query.n > 0;
    const char *hash = pass_query ? strchr(to + body, '#') : NULL;
#define PUT(src, len)                                \
    do {                                             \
        size_t l_ = (len);                           \
        if (l_ >= cap - o)                           \
            return -1;                               \
        if (l_)                                      \
            memcpy(buf + o, (src), l_);              \
        o += l_;                                     \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        if (hash && to + i == hash) { /* the query goes before a fragment */
            PUT("?", 1);
            PUT(query.p, query.n);
            pass_query = false;
        }
        if (to[i] == ':' && i >= body) {
            size_t k = i + 1;
            while (k < n && is_name_char((unsigned char)to[k]))
                k++;
            uint32_t c = 0;
            while (k > i + 1 && c < m->ncaps && !gh_str_eq(m->cap_name[c], gh_str(to + i + 1, k - i - 1)))
                c++;
            if (k > i + 1 && c < m->ncaps) {
                PUT(m->cap_value[c].p, m->cap_value[c].n);
                i = k - 1;
                continue;
            }
        }
        PUT(to + i, 1);
    }
    if (pass_query) {
        PUT("?", 1);
        PUT(query.p, query.n);
    }
#undef PUT
    buf[o] = 0;
    return (ssize_t)o;
}
