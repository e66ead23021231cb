/* jsonlogic.h: JsonLogic rules, compiled once and evaluated many times, in flagd's dialect.
 *
 * A rule (a jansson json_t, as written in a flagd flag definition's `targeting`) is compiled
 * into an immutable program: operators resolved to codes, literal arguments pre-converted,
 * `var` paths split, `$ref`s to the definition's `$evaluators` inlined. Evaluation walks the
 * program against a context (a json_t object: the evaluation context of OpenFeature) and
 * allocates nothing but from the caller's arena, which is reset between evaluations. A
 * compiled program may be evaluated by any number of threads at once.
 *
 * Operators (jsonlogic.com semantics, as json-logic-js, which flagd's JS core uses; flagd's
 * Go core agrees on everything listed): var (dotted paths, array indexes "a.0.b", a default
 * as second argument, "" = the whole data), missing, missing_some, if (and its chained
 * form), ==, ===, !=, !==, !, !!, or, and, >, >=, <, <= (the 3-argument "between" forms of
 * < and <=), max, min, +, -, *, /, %, in (substring and array membership), cat, substr
 * (negative start/length), merge, map, filter, reduce (current/accumulator), all, none,
 * some; flagd's custom operators fractional, sem_ver (=, !=, <, <=, >, >=, ^, ~),
 * starts_with, ends_with. The context is extended, as flagd does, with
 * "$flagd": {"flagKey": KEY, "timestamp": UNIX_SECONDS} (readable through var).
 *
 * Truthiness and comparisons follow JavaScript as json-logic-js does (loose == with its
 * number/string/boolean/null coercions, [] and "" and 0 falsy...). Numbers are doubles.
 *
 * fractional (flagd): ["fractional", BUCKET_BY?, [VARIANT, WEIGHT]...]: the bucketing
 * string is the first argument when it evaluates to a string, otherwise flagKey
 * concatenated with the context's targetingKey (missing targetingKey: the rule yields null);
 * hash = MurmurHash3_x86_32(bucketing string, seed 0); weights are integers (a variant
 * without a weight weighs 1), their sum at most 2^31-1; bucket = ((uint64)hash *
 * total) >> 32; the first variant whose cumulative weight exceeds bucket wins. This must
 * give the variant flagd (and its SDKs) give.
 *
 * Limits (bad input is an error, never a crash): rule depth (GH_JL_MAX_DEPTH), rule size
 * (nodes), arena size at evaluation, string lengths. */
#ifndef GH_FLAGS_JSONLOGIC_H
#define GH_FLAGS_JSONLOGIC_H

#include <jansson.h>

#include "core/common.h"

#define GH_JL_MAX_DEPTH 64      /* nesting of operators in a rule */
#define GH_JL_MAX_NODES 100000  /* operators and literals in one compiled rule */

typedef struct gh_jl_rule gh_jl_rule_t;

/* A value during evaluation. Strings, arrays and objects point into the rule, the context
 * or the arena: valid until the arena is reset. */
enum { GH_JV_NULL = 0, GH_JV_BOOL, GH_JV_NUM, GH_JV_STR, GH_JV_ARR, GH_JV_OBJ };
typedef struct gh_jv {
    uint8_t t;
    union {
        int b;
        double n;
        struct {
            const char *p;
            uint32_t n;
        } s;
        struct {
            const struct gh_jv *v;
            uint32_t n;
        } a;
        const json_t *o; /* an object of the context (or of the rule) */
    } u;
} gh_jv_t;

/* The evaluation arena: a caller-owned buffer; gh_jl_eval fails with GH_ELIMIT when full. */
typedef struct {
    char *base;
    size_t cap, used;
} gh_jl_arena_t;

/* Compile rule (any JSON value: a literal is a constant rule). evaluators: the object of
 * the definition's "$evaluators" (or NULL), whose entries {"$ref": "name"} refer to.
 * NULL on error, with a message in err and the JSON path of the offending node (RFC 6901
 * pointer relative to the rule, e.g. "/if/0/in/1") in path. Unknown operators, wrong
 * arity where it is fixed, bad literal arguments (a fractional weight that is not a
 * non-negative integer, weights over 2^31-1, a sem_ver operator not in the list), depth
 * and size limits and unresolved or cyclic $ref are errors. */
gh_jl_rule_t *gh_jl_compile(const json_t *rule, const json_t *evaluators, char *err, size_t errlen, char *path,
                            size_t pathlen);
void gh_jl_free(gh_jl_rule_t *r);

/* Evaluate r against ctx (a JSON object, may be NULL = {}) for flag flag_key at time now
 * (seconds). 0 and *out, or GH_ELIMIT (arena full), GH_EINVAL (a type error the rule
 * cannot go on from, e.g. a non-array for map). Never allocates; never reads out of the
 * rule, the context or the arena. */
int gh_jl_eval(const gh_jl_rule_t *r, const json_t *ctx, gh_str_t flag_key, int64_t now, gh_jl_arena_t *a,
               gh_jv_t *out);

/* JavaScript truthiness of a value. */
int gh_jv_truthy(const gh_jv_t *v);

/* MurmurHash3_x86_32 (Austin Appleby's reference algorithm). */
uint32_t gh_murmur3_32(const void *key, size_t len, uint32_t seed);

/* flagd's sem_ver comparison of two version strings ("v" prefix allowed, pre-release and
 * build metadata as semver 2.0.0; "1.2" is 1.2.0). op: one of "=", "!=", "<", "<=", ">",
 * ">=", "^" (same major), "~" (same major and minor). 1 true, 0 false, -1 when a version
 * or the operator does not parse (the sem_ver operator then yields null, as flagd's). */
int gh_semver_cmp(gh_str_t a, gh_str_t op, gh_str_t b);

#endif
