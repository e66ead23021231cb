/* flags.c: the flag model. Validates a flagd flag definition, compiles it into an immutable
 * flag set (flags in definition order, an open-addressing hash of their keys, targeting rules
 * compiled by jsonlogic.c, flag metadata merged over the set's at load time) and evaluates
 * flags as flagd does. Calls jsonlogic.h and jansson only; called by the OFREP/gRPC services
 * and the proxy's flag phase.
 *
 * Sources of the evaluation rules (see flags.h for the contract):
 *  - flagd Go core, core/pkg/evaluator/json.go (evaluateVariant, resolve[T]);
 *  - @openfeature/flagd-core 4.0.1 (FeatureFlag.evaluate, FlagdCore.resolve), the JS
 *    reference the cross-check uses;
 *  - flagd-testbed gherkin (evaluation.feature, disabled.feature, metadata.feature,
 *    errors.feature) and flagd-schemas json/flags.json. */
#include "flags/flags.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FLAGS 100000u       /* flags in one set */
#define MAX_NAME 256u           /* bytes of a flag key or a variant name */
#define MAX_VARIANTS 1024u      /* variants of one flag */
#define MAX_TEXT (64u << 20)    /* bytes of a definition */
#define MAX_ERRORS 100u         /* messages kept; the rest are counted in one last line */
#define SAFE_INT 9007199254740991LL /* 2^53-1: flagd-schemas rejects integer variants beyond */

enum { VT_NONE = 0, VT_BOOL, VT_STRING, VT_NUMBER, VT_OBJECT };

struct variant {
    const char *name; /* a key of the definition (NUL-terminated, owned by the document) */
    uint32_t len;
    const json_t *value;
};

struct flag {
    const char *key;
    uint32_t keylen;
    uint8_t disabled;
    uint8_t meta_owned; /* meta is a merged object this set owns */
    uint32_t nvar;
    struct variant *vars; /* in definition order */
    int32_t def;          /* index of the default variant, -1: the caller's default */
    gh_jl_rule_t *rule;   /* NULL: no targeting */
    const json_t *meta;   /* flag metadata over set metadata, NULL when both are empty */
    const json_t *src;    /* the flag's definition (in the document) */
};

struct gh_flagset {
    json_t *doc; /* owned; every json_t and name above points into it */
    struct flag *flags;
    uint32_t n;
    uint32_t *tab; /* open addressing: flag index + 1, 0 = empty */
    uint32_t mask;
    const json_t *meta; /* the set's metadata (non-empty) or NULL */
    const json_t *evaluators; /* "$evaluators" or NULL */
};

/* ---- error collection ---- */

typedef struct {
    const char *source;
    gh_flags_errors_t *e;
    uint32_t dropped;
    uint32_t count; /* problems found, kept or not */
} errs_t;

static void add_err(errs_t *x, const char *scope, const char *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_err(errs_t *x, const char *scope, const char *ptr, const char *fmt, ...)
{
    x->count++;
    if (!x->e)
        return;
    if (x->e->n >= MAX_ERRORS) {
        x->dropped++;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[2048];
    int k = scope ? snprintf(line, sizeof line, "%s: %s: %s: %s", x->source, scope, ptr[0] ? ptr : "/", msg)
                  : snprintf(line, sizeof line, "%s: %s: %s", x->source, ptr[0] ? ptr : "/", msg);
    if (k < 0)
        return;
    char **m = realloc(x->e->msgs, (x->e->n + 1) * sizeof *m);
    if (!m)
        return;
    x->e->msgs = m;
    m[x->e->n] = strdup(line);
    if (m[x->e->n])
        x->e->n++;
}

static void finish_errs(errs_t *x)
{
    if (!x->dropped || !x->e)
        return;
    uint32_t d = x->dropped;
    x->dropped = 0;
    x->e->n--; /* make room: replace the last kept message with the summary after it */
    char *last = x->e->msgs[x->e->n];
    char line[256];
    snprintf(line, sizeof line, "%s: /: ... and %u more problems", x->source, d + 1);
    x->e->msgs[x->e->n] = strdup(line);
    if (x->e->msgs[x->e->n])
        x->e->n++;
    free(last);
}

void gh_flags_errors_free(gh_flags_errors_t *e)
{
    if (!e)
        return;
    for (uint32_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

/* A key as shown in messages: control bytes replaced, long keys cut. */
static void show_key(char *dst, size_t cap, const char *k, size_t n)
{
    size_t o = 0, lim = n > 64 ? 64 : n;
    for (size_t i = 0; i < lim && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)k[i];
        dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (n > lim)
        for (int i = 0; i < 3 && o + 1 < cap; i++)
            dst[o++] = '.';
    dst[o] = 0;
}

/* base + "/" + seg as an RFC 6901 pointer (~ and / escaped), shown as show_key does. */
static void ptr_join(char *dst, size_t cap, const char *base, const char *seg, size_t n)
{
    size_t o = strlen(base);
    if (o >= cap)
        o = cap - 1;
    memmove(dst, base, o);
    if (o + 1 < cap)
        dst[o++] = '/';
    size_t lim = n > 64 ? 64 : n;
    for (size_t i = 0; i < lim && o + 2 < cap; i++) {
        unsigned char c = (unsigned char)seg[i];
        if (c == '~' || c == '/') {
            dst[o++] = '~';
            dst[o++] = c == '~' ? '0' : '1';
        } else {
            dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
    }
    if (n > lim)
        for (int i = 0; i < 3 && o + 1 < cap; i++)
            dst[o++] = '.';
    dst[o] = 0;
}

/* dst = a + b + c, cut to cap. */
static void cat3(char *dst, size_t cap, const char *a, const char *b, const char *c)
{
    size_t o = 0;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        for (const char *q = parts[i]; *q && o + 1 < cap; q++)
            dst[o++] = *q;
    dst[o] = 0;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int vtype_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_TRUE:
    case JSON_FALSE: return VT_BOOL;
    case JSON_STRING: return VT_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return VT_NUMBER;
    case JSON_OBJECT: return VT_OBJECT;
    default: return VT_NONE;
    }
}

/* metadata: an object of string, number or boolean values (flagd-schemas #/definitions/metadata);
 * in the set's metadata, flagSetId and version are strings. */
static void check_metadata(errs_t *x, const char *scope, const char *ptr, const json_t *m, int is_set)
{
    if (!json_is_object(m)) {
        add_err(x, scope, ptr, "metadata must be an object, not %s", type_name(m));
        return;
    }
    const char *k;
    size_t klen;
    json_t *v;
    char p[1024];
    json_object_keylen_foreach((json_t *)m, k, klen, v)
    {
        ptr_join(p, sizeof p, ptr, k, klen);
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v))
            add_err(x, scope, p, "a metadata value must be a string, number or boolean, not %s", type_name(v));
        else if (is_set && !json_is_string(v) &&
                 ((klen == 9 && !memcmp(k, "flagSetId", 9)) || (klen == 7 && !memcmp(k, "version", 7))))
            add_err(x, scope, p, "must be a string");
    }
}

/* ---- loading ---- */

static uint64_t hash_key(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

void gh_flags_free(gh_flagset_t *s)
{
    if (!s)
        return;
    if (s->flags) {
        for (uint32_t i = 0; i < s->n; i++) {
            struct flag *f = &s->flags[i];
            gh_jl_free(f->rule);
            free(f->vars);
            if (f->meta_owned)
                json_decref((json_t *)f->meta);
        }
        free(s->flags);
    }
    free(s->tab);
    json_decref(s->doc);
    free(s);
}

/* Validate and compile one flag into f (zeroed). Problems go to x. */
static void load_flag(errs_t *x, const char *key, size_t keylen, const json_t *fj, const json_t *evaluators,
                      struct flag *f)
{
    char scope[128], sk[80], base[1024], p[1024];
    show_key(sk, sizeof sk, key, keylen);
    snprintf(scope, sizeof scope, "flags.%s", sk);
    ptr_join(base, sizeof base, "/flags", key, keylen);
    f->key = key;
    f->keylen = (uint32_t)keylen;
    f->def = -1;
    if (keylen == 0)
        add_err(x, scope, base, "a flag key must not be empty");
    else if (keylen > MAX_NAME)
        add_err(x, scope, base, "a flag key must not be longer than %u bytes", MAX_NAME);
    if (!json_is_object(fj)) {
        add_err(x, scope, base, "a flag must be an object, not %s", type_name(fj));
        return;
    }
    const json_t *state = NULL, *variants = NULL, *defv = NULL, *targeting = NULL, *meta = NULL;
    int has_def = 0;
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)fj, k, klen, v)
    {
        if (klen == 5 && !memcmp(k, "state", 5))
            state = v;
        else if (klen == 8 && !memcmp(k, "variants", 8))
            variants = v;
        else if (klen == 14 && !memcmp(k, "defaultVariant", 14))
            defv = v, has_def = 1;
        else if (klen == 9 && !memcmp(k, "targeting", 9))
            targeting = v;
        else if (klen == 8 && !memcmp(k, "metadata", 8))
            meta = v;
        else {
            /* flagd's schema allows other properties; rejecting them catches typos such
             * as "defaultvariant" that would silently change what the flag serves. */
            ptr_join(p, sizeof p, base, k, klen);
            add_err(x, scope, p, "unknown flag property (expected state, variants, defaultVariant, targeting, metadata)");
        }
    }
    if (!state) {
        add_err(x, scope, base, "\"state\" is required");
    } else if (json_is_string(state) && !strcmp(json_string_value(state), "ENABLED") && json_string_length(state) == 7) {
        f->disabled = 0;
    } else if (json_is_string(state) && !strcmp(json_string_value(state), "DISABLED") &&
               json_string_length(state) == 8) {
        f->disabled = 1;
    } else {
        cat3(p, sizeof p, base, "/state", "");
        add_err(x, scope, p, "state must be \"ENABLED\" or \"DISABLED\"");
    }

    /* variants: a non-empty object whose values are all booleans, all strings, all numbers
     * or all objects (flagd-schemas anyFlag: booleanFlag | numberFlag | stringFlag | objectFlag). */
    char vbase[1024];
    cat3(vbase, sizeof vbase, base, "/variants", "");
    if (!variants) {
        add_err(x, scope, base, "\"variants\" is required");
    } else if (!json_is_object(variants)) {
        add_err(x, scope, vbase, "variants must be an object, not %s", type_name(variants));
    } else if (json_object_size(variants) == 0) {
        add_err(x, scope, vbase, "a flag needs at least one variant");
    } else if (json_object_size(variants) > MAX_VARIANTS) {
        add_err(x, scope, vbase, "more than %u variants", MAX_VARIANTS);
    } else {
        size_t nv = json_object_size(variants);
        f->vars = calloc(nv, sizeof *f->vars);
        if (!f->vars) {
            add_err(x, scope, vbase, "out of memory");
            return;
        }
        int vt = VT_NONE;
        char first[80] = "";
        json_object_keylen_foreach((json_t *)variants, k, klen, v)
        {
            ptr_join(p, sizeof p, vbase, k, klen);
            int t = vtype_of(v);
            if (klen == 0)
                add_err(x, scope, p, "a variant name must not be empty");
            else if (klen > MAX_NAME)
                add_err(x, scope, p, "a variant name must not be longer than %u bytes", MAX_NAME);
            if (t == VT_NONE) {
                add_err(x, scope, p, "a variant value must be a boolean, string, number or object, not %s",
                        type_name(v));
            } else if (vt == VT_NONE) {
                vt = t;
                show_key(first, sizeof first, k, klen);
            } else if (t != vt) {
                add_err(x, scope, p, "all variants must have one type: \"%s\" is %s, this one is %s", first,
                        vt == VT_BOOL ? "a boolean" : vt == VT_STRING ? "a string"
                                                     : vt == VT_NUMBER ? "a number" : "an object",
                        type_name(v));
            }
            if (json_is_integer(v) && (json_integer_value(v) > SAFE_INT || json_integer_value(v) < -SAFE_INT))
                add_err(x, scope, p, "an integer variant must be within +-(2^53-1)");
            f->vars[f->nvar++] = (struct variant){k, (uint32_t)klen, v};
        }
    }

    /* defaultVariant: a variant's name, or null / absent for the caller's default
     * (flagd ADR "support-code-default": an absent defaultVariant equals null). */
    if (has_def && !json_is_null(defv)) {
        cat3(p, sizeof p, base, "/defaultVariant", "");
        if (!json_is_string(defv)) {
            add_err(x, scope, p, "defaultVariant must be a variant name or null, not %s", type_name(defv));
        } else if (f->vars) {
            const char *d = json_string_value(defv);
            size_t dl = json_string_length(defv);
            for (uint32_t i = 0; i < f->nvar; i++)
                if (f->vars[i].len == dl && !memcmp(f->vars[i].name, d, dl))
                    f->def = (int32_t)i;
            if (f->def < 0) {
                char sd[80];
                show_key(sd, sizeof sd, d, dl);
                add_err(x, scope, p, "\"%s\" is not one of the flag's variants", sd);
            }
        }
    }

    /* targeting: a JsonLogic rule (an object); {} and null mean none (flagd json.go treats
     * "{}" as no targeting; flagd-core skips a falsy or empty one). */
    if (targeting && !json_is_null(targeting)) {
        cat3(p, sizeof p, base, "/targeting", "");
        if (!json_is_object(targeting)) {
            add_err(x, scope, p, "targeting must be a JsonLogic object, not %s", type_name(targeting));
        } else if (json_object_size(targeting) > 0) {
            char err[256] = "", path[512] = "";
            f->rule = gh_jl_compile(targeting, evaluators, err, sizeof err, path, sizeof path);
            if (!f->rule) {
                char full[1024];
                cat3(full, sizeof full, p, (path[0] && path[0] != '/') ? "/" : "", path);
                add_err(x, scope, full, "%s", err[0] ? err : "invalid targeting rule");
            }
        }
    }
    if (meta) {
        cat3(p, sizeof p, base, "/metadata", "");
        check_metadata(x, scope, p, meta, 0);
    }
}

/* Flag metadata over set metadata (flagd-core parse(): {...set.metadata, ...flag.metadata};
 * flagd-testbed metadata.feature "Flag metadata overwrites flag set metadata"). */
static int merge_metadata(gh_flagset_t *s, struct flag *f, const json_t *fm)
{
    int fe = !fm || json_object_size(fm) == 0;
    if (fe) {
        f->meta = s->meta;
        return 0;
    }
    if (!s->meta) {
        f->meta = fm;
        return 0;
    }
    json_t *m = json_copy((json_t *)s->meta);
    if (!m || json_object_update(m, (json_t *)fm) != 0) {
        json_decref(m);
        return -1;
    }
    f->meta = m;
    f->meta_owned = 1;
    return 0;
}

/* Takes ownership of doc. */
static int load_owned(const char *source, json_t *doc, gh_flagset_t **out, gh_flags_errors_t *errs)
{
    errs_t x = {.source = source ? source : "flags", .e = errs};
    gh_flagset_t *s = NULL;
    *out = NULL;
    if (!json_is_object(doc)) {
        add_err(&x, NULL, "/", "a flag definition must be a JSON object, not %s", type_name(doc));
        goto fail;
    }
    const json_t *flags = NULL, *evaluators = NULL, *meta = NULL;
    const char *k;
    size_t klen;
    json_t *v;
    char p[1024];
    json_object_keylen_foreach(doc, k, klen, v)
    {
        ptr_join(p, sizeof p, "", k, klen);
        if (klen == 5 && !memcmp(k, "flags", 5))
            flags = v;
        else if (klen == 11 && !memcmp(k, "$evaluators", 11))
            evaluators = v;
        else if (klen == 8 && !memcmp(k, "metadata", 8))
            meta = v;
        else if (klen == 7 && !memcmp(k, "$schema", 7)) {
            if (!json_is_string(v))
                add_err(&x, NULL, p, "$schema must be a string");
        }
        /* Other top-level properties are ignored: flagd's schema allows them and flagd's own
         * sample (config/samples/example_flags.flagd.json) carries one ("demo"). */
    }
    if (meta)
        check_metadata(&x, NULL, "/metadata", meta, 1);
    if (evaluators && !json_is_object(evaluators)) {
        add_err(&x, NULL, "/$evaluators", "$evaluators must be an object, not %s", type_name(evaluators));
        evaluators = NULL;
    } else if (evaluators) {
        /* Compile each shared rule on its own so a broken one is reported once, at its
         * own path, even when no flag uses it. */
        json_object_keylen_foreach((json_t *)evaluators, k, klen, v)
        {
            char scope[128], sk[80];
            show_key(sk, sizeof sk, k, klen);
            snprintf(scope, sizeof scope, "$evaluators.%s", sk);
            ptr_join(p, sizeof p, "/$evaluators", k, klen);
            if (klen == 0) {
                add_err(&x, scope, p, "an evaluator name must not be empty");
            } else if (!json_is_object(v)) {
                add_err(&x, scope, p, "an evaluator must be a JsonLogic object, not %s", type_name(v));
            } else {
                char err[256] = "", path[512] = "";
                gh_jl_rule_t *r = gh_jl_compile(v, evaluators, err, sizeof err, path, sizeof path);
                if (!r) {
                    char full[1024];
                    cat3(full, sizeof full, p, (path[0] && path[0] != '/') ? "/" : "", path);
                    add_err(&x, scope, full, "%s", err[0] ? err : "invalid rule");
                }
                gh_jl_free(r);
            }
        }
    }
    if (!flags) {
        add_err(&x, NULL, "/", "\"flags\" is required");
        goto fail;
    }
    if (!json_is_object(flags)) {
        add_err(&x, NULL, "/flags", "flags must be an object (flag key -> flag), not %s", type_name(flags));
        goto fail;
    }
    size_t n = json_object_size(flags);
    if (n > MAX_FLAGS) {
        add_err(&x, NULL, "/flags", "%zu flags: at most %u in one definition", n, MAX_FLAGS);
        goto fail;
    }
    s = calloc(1, sizeof *s);
    if (!s || !(s->flags = calloc(n ? n : 1, sizeof *s->flags))) {
        add_err(&x, NULL, "/", "out of memory");
        goto fail;
    }
    s->doc = doc;
    doc = NULL;
    s->meta = (meta && json_is_object(meta) && json_object_size(meta)) ? meta : NULL;
    s->evaluators = evaluators;
    json_object_keylen_foreach((json_t *)flags, k, klen, v)
    {
        struct flag *f = &s->flags[s->n++];
        load_flag(&x, k, klen, v, evaluators, f);
        f->src = v;
        if (json_is_object(v) && merge_metadata(s, f, json_object_get(v, "metadata")) != 0)
            add_err(&x, NULL, "/", "out of memory");
    }
    if (x.count)
        goto fail;

    uint32_t cap = 16;
    while (cap < 2 * s->n)
        cap <<= 1;
    s->tab = calloc(cap, sizeof *s->tab);
    if (!s->tab) {
        add_err(&x, NULL, "/", "out of memory");
        goto fail;
    }
    s->mask = cap - 1;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t h = (uint32_t)hash_key(s->flags[i].key, s->flags[i].keylen) & s->mask;
        while (s->tab[h])
            h = (h + 1) & s->mask;
        s->tab[h] = i + 1;
    }
    *out = s;
    return 0;

fail:
    if (!x.count)
        add_err(&x, NULL, "/", "invalid definition");
    finish_errs(&x);
    gh_flags_free(s);
    json_decref(doc);
    return GH_ECONFIG;
}

int gh_flags_load(const char *source, const char *text, size_t len, gh_flagset_t **out, gh_flags_errors_t *errs)
{
    if (errs)
        *errs = (gh_flags_errors_t){0};
    *out = NULL;
    if (len > MAX_TEXT) {
        errs_t x = {.source = source ? source : "flags", .e = errs};
        add_err(&x, NULL, "/", "definition of %zu bytes: at most %u", len, MAX_TEXT);
        return GH_ECONFIG;
    }
    json_error_t je;
    /* Duplicate keys are rejected: a second "my-flag" would silently replace the first. */
    json_t *doc = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        errs_t x = {.source = source ? source : "flags", .e = errs};
        add_err(&x, NULL, "/", "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return GH_ECONFIG;
    }
    return load_owned(source, doc, out, errs);
}

int gh_flags_load_json(const char *source, const json_t *doc, gh_flagset_t **out, gh_flags_errors_t *errs)
{
    if (errs)
        *errs = (gh_flags_errors_t){0};
    *out = NULL;
    /* A private copy: the set must stay immutable whatever the caller does with doc. */
    json_t *copy = doc ? json_deep_copy(doc) : NULL;
    if (!copy) {
        errs_t x = {.source = source ? source : "flags", .e = errs};
        add_err(&x, NULL, "/", doc ? "out of memory" : "no definition");
        return GH_ECONFIG;
    }
    return load_owned(source, copy, out, errs);
}

uint32_t gh_flags_count(const gh_flagset_t *s) { return s ? s->n : 0; }

const char *gh_flags_key(const gh_flagset_t *s, uint32_t i) { return (s && i < s->n) ? s->flags[i].key : NULL; }

static const struct flag *find(const gh_flagset_t *s, gh_str_t key)
{
    if (!s || !s->n || (key.n && !key.p))
        return NULL;
    uint32_t h = (uint32_t)hash_key(key.p, key.n) & s->mask;
    for (uint32_t idx; (idx = s->tab[h]) != 0; h = (h + 1) & s->mask) {
        const struct flag *f = &s->flags[idx - 1];
        if (f->keylen == key.n && (key.n == 0 || !memcmp(f->key, key.p, key.n)))
            return f;
    }
    return NULL;
}

int gh_flags_changed(const gh_flagset_t *a, const gh_flagset_t *b, const char *key)
{
    gh_str_t k = gh_str(key, strlen(key));
    const struct flag *fa = find(a, k), *fb = find(b, k);
    if (!fa || !fb)
        return fa ? GH_FLAG_DELETED : fb ? GH_FLAG_ADDED : GH_FLAG_SAME;
    if (!json_equal((json_t *)fa->src, (json_t *)fb->src))
        return GH_FLAG_UPDATED;
    /* what the flag draws from the set: its metadata, and the shared rules of a targeting */
    if (!(a->meta == b->meta || (a->meta && b->meta && json_equal((json_t *)a->meta, (json_t *)b->meta))))
        return GH_FLAG_UPDATED;
    if (fb->rule && !(a->evaluators == b->evaluators ||
                      (a->evaluators && b->evaluators && json_equal((json_t *)a->evaluators, (json_t *)b->evaluators))))
        return GH_FLAG_UPDATED;
    return GH_FLAG_SAME;
}

int gh_flags_has_variant(const gh_flagset_t *s, const char *key, const char *variant)
{
    const struct flag *f = find(s, gh_str(key, strlen(key)));
    if (!f)
        return -1;
    for (uint32_t i = 0; i < f->nvar; i++)
        if (f->vars[i].len == strlen(variant) && !memcmp(f->vars[i].name, variant, f->vars[i].len))
            return 1;
    return 0;
}

/* ---- evaluation ---- */

/* ECMAScript Number::toString(10) of d into b (cap >= 32). */
static size_t js_number(double d, char *b)
{
    if (d != d)
        return (size_t)sprintf(b, "NaN");
    if (isinf(d))
        return (size_t)sprintf(b, d < 0 ? "-Infinity" : "Infinity");
    if (d == 0)
        return (size_t)sprintf(b, "0");
    size_t o = 0;
    if (d < 0) {
        b[o++] = '-';
        d = -d;
    }
    /* shortest digits that read back as d */
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, d);
        if (strtod(e, NULL) == d)
            break;
    }
    char dig[20];
    int k = 0;
    const char *q = e;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            dig[k++] = *q;
    int ex = atoi(q + 1);
    while (k > 1 && dig[k - 1] == '0')
        k--;
    int n = ex + 1;
    if (k <= n && n <= 21) {
        memcpy(b + o, dig, (size_t)k), o += (size_t)k;
        for (int i = 0; i < n - k; i++)
            b[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(b + o, dig, (size_t)n), o += (size_t)n;
        b[o++] = '.';
        memcpy(b + o, dig + n, (size_t)(k - n)), o += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        b[o++] = '0', b[o++] = '.';
        for (int i = 0; i < -n; i++)
            b[o++] = '0';
        memcpy(b + o, dig, (size_t)k), o += (size_t)k;
    } else {
        b[o++] = dig[0];
        if (k > 1) {
            b[o++] = '.';
            memcpy(b + o, dig + 1, (size_t)(k - 1)), o += (size_t)(k - 1);
        }
        o += (size_t)sprintf(b + o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    b[o] = 0;
    return o;
}

static int put(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (*len + n > cap)
        return -1;
    memcpy(buf + *len, p, n);
    *len += n;
    return 0;
}

/* The variant name a targeting result stands for: JavaScript's String(value), as
 * flagd-core does (targetingResolution.toString()): true -> "true", 1 -> "1", arrays
 * joined with "," (null elements empty), objects "[object Object]". -1 when longer than
 * cap (no variant can be named so). */
static int jv_name(const gh_jv_t *v, char *buf, size_t cap, size_t *len, int depth)
{
    char nb[40];
    switch (v->t) {
    case GH_JV_NULL: return depth ? 0 : put(buf, cap, len, "null", 4);
    case GH_JV_BOOL: return v->u.b ? put(buf, cap, len, "true", 4) : put(buf, cap, len, "false", 5);
    case GH_JV_NUM: return put(buf, cap, len, nb, js_number(v->u.n, nb));
    case GH_JV_STR: return put(buf, cap, len, v->u.s.p, v->u.s.n);
    case GH_JV_OBJ: return put(buf, cap, len, "[object Object]", 15);
    case GH_JV_ARR:
        if (depth > 8)
            return -1;
        for (uint32_t i = 0; i < v->u.a.n; i++) {
            if (i && put(buf, cap, len, ",", 1) != 0)
                return -1;
            if (jv_name(&v->u.a.v[i], buf, cap, len, depth + 1) != 0)
                return -1;
        }
        return 0;
    default: return -1;
    }
}

static int type_ok(const json_t *v, int type)
{
    switch (type) {
    case GH_FT_ANY: return 1;
    case GH_FT_BOOL: return json_is_boolean(v);
    case GH_FT_STRING: return json_is_string(v);
    /* JSON has one number type: flagd's Go core resolves both int and float through
     * float64 (ResolveIntValue truncates), flagd-core checks typeof === 'number'. */
    case GH_FT_INT:
    case GH_FT_FLOAT: return json_is_number(v);
    case GH_FT_OBJECT: return json_is_object(v);
    default: return 0;
    }
}

static const char *want_name(int type)
{
    switch (type) {
    case GH_FT_BOOL: return "boolean";
    case GH_FT_STRING: return "string";
    case GH_FT_INT: return "integer";
    case GH_FT_FLOAT: return "float";
    case GH_FT_OBJECT: return "object";
    default: return "any";
    }
}

static void fail(gh_flag_result_t *out, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(gh_flag_result_t *out, int error, const char *fmt, ...)
{
    out->reason = GH_FR_ERROR;
    out->error = error;
    out->variant = NULL;
    out->value = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof out->message, fmt, ap);
    va_end(ap);
}

void gh_flags_eval(const gh_flagset_t *s, gh_str_t key, const json_t *ctx, int type, int64_t now, gh_jl_arena_t *arena,
                   gh_flag_result_t *out)
{
    out->reason = GH_FR_STATIC;
    out->error = GH_FE_NONE;
    out->variant = NULL;
    out->value = NULL;
    out->metadata = NULL;
    out->message[0] = 0;
    char sk[80];

    const struct flag *f = find(s, key);
    if (!f) {
        /* flagd-core: ERROR/FLAG_NOT_FOUND with the flag set's metadata. */
        out->metadata = s ? s->meta : NULL;
        show_key(sk, sizeof sk, key.p ? key.p : "", key.p ? key.n : 0);
        fail(out, GH_FE_FLAG_NOT_FOUND, "flag '%s' not found", sk);
        return;
    }
    out->metadata = f->meta;
    if (f->disabled) {
        /* flagd-core and flagd-testbed disabled.feature: reason DISABLED, the caller's
         * default. The error code carries what flagd's servers answer today (Go
         * evaluator FLAG_DISABLED, mapped to FLAG_NOT_FOUND / HTTP 404 by OFREP and to
         * NotFound by gRPC); protocol layers choose whether to surface it. */
        out->reason = GH_FR_DISABLED;
        out->error = GH_FE_FLAG_NOT_FOUND;
        show_key(sk, sizeof sk, f->key, f->keylen);
        snprintf(out->message, sizeof out->message, "flag '%s' is disabled", sk);
        return;
    }
    if (ctx && !json_is_object(ctx)) {
        fail(out, GH_FE_INVALID_CONTEXT, "the evaluation context must be an object");
        return;
    }
    int32_t vi = f->def;
    int reason = GH_FR_STATIC;
    if (f->rule) {
        gh_jv_t r;
        if (arena)
            arena->used = 0;
        gh_jl_arena_t none = {0};
        int rc = gh_jl_eval(f->rule, ctx, gh_str(f->key, f->keylen), now, arena ? arena : &none, &r);
        if (rc != 0) {
            /* flagd-core FeatureFlag.evaluate: a throwing rule is ERROR/GENERAL. */
            show_key(sk, sizeof sk, f->key, f->keylen);
            fail(out, GH_FE_GENERAL, "error evaluating targeting rule for flag '%s': %s", sk,
                 rc == GH_ELIMIT ? "evaluation arena full" : gh_err_msg(rc));
            return;
        }
        if (r.t == GH_JV_NULL) {
            /* null: the default variant, reason DEFAULT (flagd json.go, flagd-core). */
            reason = GH_FR_DEFAULT;
        } else {
            char nb[MAX_NAME + 1];
            size_t nl = 0;
            int ok = jv_name(&r, nb, MAX_NAME, &nl, 0) == 0;
            vi = -1;
            for (uint32_t i = 0; ok && i < f->nvar; i++)
                if (f->vars[i].len == nl && !memcmp(f->vars[i].name, nb, nl)) {
                    vi = (int32_t)i;
                    break;
                }
            if (vi < 0) {
                /* flagd-core: ERROR/GENERAL "Variant 'x' not found"; flagd's Go core
                 * answers ERROR/PARSE_ERROR for the same case. */
                char sv[80];
                show_key(sv, sizeof sv, nb, ok ? nl : 0);
                show_key(sk, sizeof sk, f->key, f->keylen);
                fail(out, GH_FE_GENERAL, "variant '%s%s' not found in flag '%s'", sv, ok ? "" : "...", sk);
                return;
            }
            reason = GH_FR_TARGETING_MATCH;
        }
    }
    if (vi < 0) {
        /* defaultVariant null: the caller's default, reason DEFAULT, no variant (flagd ADR
         * support-code-default; flagd-core; testbed evaluation.feature @no-default). */
        out->reason = GH_FR_DEFAULT;
        return;
    }
    const struct variant *var = &f->vars[vi];
    if (!type_ok(var->value, type)) {
        show_key(sk, sizeof sk, f->key, f->keylen);
        fail(out, GH_FE_TYPE_MISMATCH, "flag '%s' is %s, not %s", sk, type_name(var->value), want_name(type));
        return;
    }
    out->reason = reason;
    out->variant = var->name;
    out->value = var->value;
}

const char *gh_flag_reason_name(int reason)
{
    static const char *const names[] = {"STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "DEFAULT", "ERROR"};
    return (reason >= 0 && reason < (int)GH_ARRAY_LEN(names)) ? names[reason] : "UNKNOWN";
}

const char *gh_flag_error_name(int error)
{
    static const char *const names[] = {"",
                                        "FLAG_NOT_FOUND",
                                        "PARSE_ERROR",
                                        "TYPE_MISMATCH",
                                        "TARGETING_KEY_MISSING",
                                        "INVALID_CONTEXT",
                                        "GENERAL"};
    return (error >= 0 && error < (int)GH_ARRAY_LEN(names)) ? names[error] : "GENERAL";
}
