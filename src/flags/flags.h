/* flags.h: feature flags in the flagd flag-definition format, evaluated as OpenFeature defines.
 *
 * A flag set is what one definition (a JSON file or text; the same structure in YAML is
 * converted by the caller) declares: "flags" (key -> {state, variants, defaultVariant,
 * targeting, metadata}), "$evaluators" (shared rules, used through {"$ref": NAME}) and the
 * set's "metadata". It is compiled once (gh_flags_load) into an immutable set that any
 * number of threads evaluate at once; a reload builds a new set and swaps it in.
 *
 * Evaluation (gh_flags_eval) follows flagd (its Go core, core/pkg/evaluator/json.go, and
 * @openfeature/flagd-core 4.x, FeatureFlag.evaluate / FlagdCore.resolve; where they differ,
 * flagd-core, which the cross-check compares against):
 *  - a flag not in the set: ERROR/FLAG_NOT_FOUND, with the set's metadata;
 *  - a DISABLED flag: reason DISABLED with the caller's default and no variant, as flagd-core
 *    and flagd-testbed disabled.feature answer; error is FLAG_NOT_FOUND because flagd's
 *    servers still answer FLAG_DISABLED, which OFREP turns into 404 FLAG_NOT_FOUND and gRPC
 *    into NotFound (protocol layers decide whether to surface it, in-process callers should
 *    treat DISABLED as success);
 *  - no targeting (absent, null or {}): the default variant with reason STATIC;
 *  - targeting: null gives the default variant with reason DEFAULT; any other result names
 *    a variant by JavaScript's String() of it ("true"/"false" for booleans, 1 -> "1",
 *    arrays joined with ","): that variant with reason TARGETING_MATCH (flagd never answers
 *    SPLIT, fractional included, so neither does this; GH_FR_SPLIT is for callers); a name
 *    that is no variant is ERROR/GENERAL (flagd-core; flagd's Go core says PARSE_ERROR),
 *    not a fallback to the default; a rule that fails to evaluate (including a full arena)
 *    is ERROR/GENERAL;
 *  - defaultVariant null or absent (flagd ADR support-code-default) where the default is
 *    due: reason DEFAULT with the caller's default, no variant, no type check;
 *  - the value's JSON type must match what the caller asked for (boolean, string, integer,
 *    float, object, or any) or the result is ERROR/TYPE_MISMATCH; JSON numbers satisfy both
 *    integer and float (flagd resolves both through float64; converting is the caller's);
 *  - a context that is not an object (nor NULL) is ERROR/INVALID_CONTEXT.
 * Every result but FLAG_NOT_FOUND carries the flag's metadata merged over the set's (flag
 * keys win, as flagd-core and flagd-testbed metadata.feature). Evaluation allocates nothing
 * and takes no lock; lookup is one hash probe sequence. */
#ifndef GH_FLAGS_FLAGS_H
#define GH_FLAGS_FLAGS_H

#include <jansson.h>

#include "flags/jsonlogic.h"

typedef struct gh_flagset gh_flagset_t;

enum gh_flag_reason { GH_FR_STATIC = 0, GH_FR_TARGETING_MATCH, GH_FR_SPLIT, GH_FR_DISABLED, GH_FR_DEFAULT, GH_FR_ERROR };
enum gh_flag_error {
    GH_FE_NONE = 0,
    GH_FE_FLAG_NOT_FOUND,
    GH_FE_PARSE_ERROR,
    GH_FE_TYPE_MISMATCH,
    GH_FE_TARGETING_KEY_MISSING,
    GH_FE_INVALID_CONTEXT,
    GH_FE_GENERAL,
};
enum gh_flag_type { GH_FT_ANY = 0, GH_FT_BOOL, GH_FT_STRING, GH_FT_INT, GH_FT_FLOAT, GH_FT_OBJECT };

typedef struct {
    int reason;            /* enum gh_flag_reason */
    int error;             /* enum gh_flag_error */
    const char *variant;   /* NULL: none (caller's default) */
    const json_t *value;   /* the variant's value (owned by the set), NULL with the caller's default */
    const json_t *metadata; /* the flag's metadata merged over the set's (owned by the set), or NULL */
    char message[160];     /* for errors: what went wrong */
} gh_flag_result_t;

/* Errors of a load: each "SOURCE: flags.KEY: /json/path: message". */
typedef struct {
    char **msgs;
    uint32_t n;
} gh_flags_errors_t;
void gh_flags_errors_free(gh_flags_errors_t *e);

/* Compile a definition (JSON text). source names it in messages (a file name). 0 and
 * *out, or GH_ECONFIG with every problem found in errs (the whole set is rejected; at most
 * 100 messages, the last one counting the rest). errs is overwritten: free it first.
 * Checked: "flags" (an object, at most 100,000 flags, keys 1..256 bytes); per flag "state"
 * ENABLED|DISABLED (required), "variants" (required, 1..1024 non-empty names, values all
 * booleans, all strings, all numbers (integers within +-(2^53-1)) or all objects),
 * "defaultVariant" (a variant name, null or absent), "targeting" (a JsonLogic object,
 * compiled), "metadata" (string/number/boolean values), no other property (a typo such as
 * "defaultvariant" would silently change what is served); "$evaluators" (objects, each
 * compiled once on its own); "metadata" (flagSetId and version strings); "$schema" a
 * string; other top-level properties are ignored, as flagd does. Duplicate keys and texts
 * over 64 MiB are rejected. */
int gh_flags_load(const char *source, const char *text, size_t len, gh_flagset_t **out, gh_flags_errors_t *errs);
/* The same from a parsed document (e.g. YAML converted to JSON by the caller); the set
 * keeps a deep copy, so doc stays the caller's. */
int gh_flags_load_json(const char *source, const json_t *doc, gh_flagset_t **out, gh_flags_errors_t *errs);
void gh_flags_free(gh_flagset_t *s);

/* Evaluate flag key for ctx (a JSON object or NULL) at time now (seconds, or GH_JL_NOW: the
 * clock is read only if a rule asks for $flagd.timestamp), wanting type.
 * arena: scratch for the rule (see jsonlogic.h); reset by this call. */
void gh_flags_eval(const gh_flagset_t *s, gh_str_t key, const json_t *ctx, int type, int64_t now, gh_jl_arena_t *arena,
                   gh_flag_result_t *out);

/* The flags of a set, in definition order (for bulk evaluation). */
uint32_t gh_flags_count(const gh_flagset_t *s);
const char *gh_flags_key(const gh_flagset_t *s, uint32_t i);

/* How flag key differs between set a (before) and b (after), for change events: SAME,
 * UPDATED (its definition, the set's metadata, or for a targeted flag the set's $evaluators),
 * ADDED (only in b) or DELETED (only in a). Either set may be NULL (no flags). */
enum { GH_FLAG_SAME = 0, GH_FLAG_UPDATED, GH_FLAG_ADDED, GH_FLAG_DELETED };
int gh_flags_changed(const gh_flagset_t *a, const gh_flagset_t *b, const char *key);

/* 1 when flag key has variant, 0 when it has not, -1 when there is no such flag. */
int gh_flags_has_variant(const gh_flagset_t *s, const char *key, const char *variant);

const char *gh_flag_reason_name(int reason); /* "STATIC", ... */
const char *gh_flag_error_name(int error);   /* "FLAG_NOT_FOUND", ...; "" for none */

#endif
