/* flags.h: feature flags in the flagd flag-definition format, evaluated as OpenFeature defines.
 *
 * A flag set is what one definition (a JSON file or text; the same structure in YAML is
 * converted by the caller) declares: "flags" (key -> {state, variants, defaultVariant,
 * targeting, metadata}), "$evaluators" (shared rules, used through {"$ref": NAME}) and the
 * set's "metadata". It is compiled once (gh_flags_load) into an immutable set that any
 * number of threads evaluate at once; a reload builds a new set and swaps it in.
 *
 * Evaluation (gh_flags_eval) follows flagd: a flag not in the set is FLAG_NOT_FOUND; a
 * DISABLED flag is reason DISABLED with the caller's default (error FLAG_NOT_FOUND, as
 * flagd answers for disabled flags over OFREP and gRPC); without targeting, the default
 * variant with reason STATIC; with targeting, the rule's result: a string naming a
 * variant (a boolean true/false names the variant "true"/"false") gives that variant with
 * reason TARGETING_MATCH (SPLIT when it came from fractional), null or a name that is no
 * variant gives the default variant with reason DEFAULT; a rule that fails to evaluate
 * is ERROR/GENERAL with the caller's default. defaultVariant null means the caller's default
 * (reason DEFAULT, no variant). The value's JSON type must match what the caller asked for
 * (boolean, string, integer, float, object, or any) or the result is ERROR/TYPE_MISMATCH. */
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
 * *out, or GH_ECONFIG with every problem found in errs (the whole set is rejected). */
int gh_flags_load(const char *source, const char *text, size_t len, gh_flagset_t **out, gh_flags_errors_t *errs);
/* The same from a parsed document (e.g. YAML converted to JSON by the caller). */
int gh_flags_load_json(const char *source, const json_t *doc, gh_flagset_t **out, gh_flags_errors_t *errs);
void gh_flags_free(gh_flagset_t *s);

/* Evaluate flag key for ctx (a JSON object or NULL) at time now (seconds), wanting type.
 * arena: scratch for the rule (see jsonlogic.h); reset by this call. */
void gh_flags_eval(const gh_flagset_t *s, gh_str_t key, const json_t *ctx, int type, int64_t now, gh_jl_arena_t *arena,
                   gh_flag_result_t *out);

/* The flags of a set, in definition order (for bulk evaluation). */
uint32_t gh_flags_count(const gh_flagset_t *s);
const char *gh_flags_key(const gh_flagset_t *s, uint32_t i);

const char *gh_flag_reason_name(int reason); /* "STATIC", ... */
const char *gh_flag_error_name(int error);   /* "FLAG_NOT_FOUND", ...; "" for none */

#endif
