/* jsonlogic.h: JsonLogic rules, compiled once and evaluated many times, in flagd's dialect.
 *
 * A rule (a jansson json_t, as written in a flagd flag definition's `targeting`) is compiled
 * into an immutable program: operators resolved to codes, literal arguments pre-converted,
 * `var` paths split, `$ref`s to the definition's `$evaluators` inlined. Evaluation walks the
 * program against a context (a json_t object: the evaluation context of OpenFeature) and
 * allocates nothing but from the caller's arena, which is reset between evaluations. A
 * compiled program may be evaluated by any number of threads at once.
 *
 * Operators: var (dotted paths, array indexes "a.0.b", a default as second argument, "" =
 * the whole data), missing, missing_some, if (and its chained form), ==, ===, !=, !==, !,
 * !!, or, and, >, >=, <, <= (and their 3-argument "between" forms), max, min, +, -, *, /,
 * %, in (substring and array membership), cat, substr (negative start/length), merge, map,
 * filter, reduce (current/accumulator), all, none, some; flagd's custom operators
 * fractional, sem_ver (=, !=, <, <=, >, >=, ^, ~), starts_with, ends_with. The context is
 * extended, as flagd does, with "$flagd": {"flagKey": KEY, "timestamp": UNIX_SECONDS}
 * (readable through var; a context's own "$flagd" is overridden).
 *
 * Reference semantics: what @openfeature/flagd-core (npm, 4.x, flagd's JS core used by the
 * in-process SDK providers) computes. It does NOT use json-logic-js: it runs rules on
 * json-logic-engine 5.0.7 in compiled mode, whose rules differ from jsonlogic.com's:
 * loose comparisons throw (an evaluation error here) on non-numeric strings against
 * numbers and on arrays/objects, null against a falsy value compares equal, max/min accept
 * numbers only, division by zero throws, an empty object is falsy, `var` with a default
 * also replaces null, compiled `cat` writes null as "null" while constant sub-expressions
 * are computed at compile time by the engine's interpreter (where cat skips null), and a
 * 1-2 argument `if` runs its branches in that interpreter. jsonlogic.c reproduces those
 * rules, including the engine's visible code-generation quirks (the shared `prev` variable
 * of comparisons, unparenthesized or/and/all/missing inside cat); tests/flags/ cross-checks
 * it against flagd-core on generated cases. Deliberate differences: fractional hashes the
 * UTF-8 bytes of the bucketing string (as Go flagd; flagd-core hashes UTF-16 code units,
 * which only differs for non-ASCII strings); a fixed-arity or literal-argument error is a
 * compile error even inside a branch flagd-core would never run; {"var": ""} at the root
 * yields the caller's context without the injected $flagd.
 *
 * Truthiness (gh_jv_truthy, json-logic-engine's truthy()): false, null, 0, NaN, "", [] and
 * {} are false. Numbers are doubles; strings are UTF-8 but indexed as JavaScript does (UTF-16
 * code units) by substr and "length".
 *
 * fractional (flagd): ["fractional", BUCKET_BY?, [VARIANT, WEIGHT]...]: the bucketing
 * string is the first argument when it evaluates to a string, otherwise flagKey
 * concatenated with the context's targetingKey (missing or falsy targetingKey: the rule
 * yields null; a non-string targetingKey is String()ed); hash = MurmurHash3_x86_32(bucketing
 * string, seed 0); weights are integers (a variant without a weight weighs 1; a computed
 * negative weight counts 0, a computed non-integer makes the rule yield null), their sum
 * at most 2^31-1 (else null); bucket = ((uint64)hash * total) >> 32; the first variant
 * whose cumulative weight exceeds bucket wins (none, e.g. all weights 0: null). Variants
 * may be strings, numbers, booleans or null. This gives the variant flagd (and its SDKs)
 * give for ASCII bucketing strings, which is what targeting keys are in practice.
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
 * and size limits and unresolved or cyclic $ref are errors, and so is a constant
 * sub-expression that fails (json-logic-engine computes those while building: flagd-core
 * answers PARSE_ERROR). The rule keeps a reference on `rule` and `evaluators`. */
gh_jl_rule_t *gh_jl_compile(const json_t *rule, const json_t *evaluators, char *err, size_t errlen, char *path,
                            size_t pathlen);
void gh_jl_free(gh_jl_rule_t *r);

/* now: the time of the evaluation ($flagd.timestamp) in seconds, or GH_JL_NOW to read the
 * clock only if the rule asks for it (most do not: no clock read per evaluation). */
#define GH_JL_NOW INT64_MIN

/* Evaluate r against ctx (a JSON object, may be NULL = {}) for flag flag_key at time now
 * (seconds, or GH_JL_NOW). 0 and *out, or GH_ELIMIT (arena full), GH_EINVAL (a type error the rule
 * cannot go on from, e.g. a non-array for map). Never allocates; never reads out of the
 * rule, the context or the arena. */
int gh_jl_eval(const gh_jl_rule_t *r, const json_t *ctx, gh_str_t flag_key, int64_t now, gh_jl_arena_t *a,
               gh_jv_t *out);

/* JavaScript truthiness of a value. */
int gh_jv_truthy(const gh_jv_t *v);

/* MurmurHash3_x86_32 (Austin Appleby's reference algorithm). */
uint32_t gh_murmur3_32(const void *key, size_t len, uint32_t seed);

/* flagd's sem_ver comparison of two version strings, as flagd-core: one leading "v"/"V" is
 * stripped, then node-semver's strict parse (surrounding whitespace trimmed, one more "v"
 * allowed, no leading zeros, pre-release and build metadata as semver 2.0.0, parts at most
 * 2^53-1); failing that a bare "N" or "N.M" is N.0.0 / N.M.0. op: one of "=", "!=", "<",
 * "<=", ">", ">=", "^" (same major), "~" (same major and minor). 1 true, 0 false, -1 when a
 * version or the operator does not parse (the sem_ver operator then yields null). */
int gh_semver_cmp(gh_str_t a, gh_str_t op, gh_str_t b);

#endif
