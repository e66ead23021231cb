/* fuzz_flags.c: libFuzzer target for the flag model (src/flags/flags.c).
 *
 * The input is a flag definition. Loading must never crash or leak, and it traps on
 * broken invariants:
 *  - 0 with a set and no messages, or GH_ECONFIG with no set and messages that all start
 *    with "f.json: "; the same document loaded through gh_flags_load_json (parsed with
 *    the same duplicate-key rule) gets the same answer;
 *  - a loaded set evaluates every flag (the first 64) for a few contexts and every type
 *    without crashing, and each result is consistent: reason and error in their enums;
 *    an error means reason ERROR, or DISABLED with FLAG_NOT_FOUND (flags.h); ERROR has
 *    an error code and a message, no value and no variant; STATIC and TARGETING_MATCH
 *    have a variant and a value of the asked type; DEFAULT has both or neither; DISABLED
 *    has none; a key that is no flag is FLAG_NOT_FOUND. */
#include <stdlib.h>
#include <string.h>

#include "flags/flags.h"

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static char arena_buf[4096];

static int type_ok(const json_t *v, int type)
{
    switch (type) {
    case GH_FT_BOOL: return json_is_boolean(v);
    case GH_FT_STRING: return json_is_string(v);
    case GH_FT_INT:
    case GH_FT_FLOAT: return json_is_number(v);
    case GH_FT_OBJECT: return json_is_object(v);
    default: return 1;
    }
}

static void check_result(const gh_flag_result_t *r, int type)
{
    ASSERT(r->reason >= GH_FR_STATIC && r->reason <= GH_FR_ERROR);
    ASSERT(r->error >= GH_FE_NONE && r->error <= GH_FE_GENERAL);
    ASSERT(memchr(r->message, 0, sizeof r->message) != NULL);
    if (r->error != GH_FE_NONE)
        ASSERT(r->reason == GH_FR_ERROR || (r->reason == GH_FR_DISABLED && r->error == GH_FE_FLAG_NOT_FOUND));
    switch (r->reason) {
    case GH_FR_ERROR:
        ASSERT(r->error != GH_FE_NONE && r->message[0]);
        ASSERT(!r->value && !r->variant);
        break;
    case GH_FR_STATIC:
    case GH_FR_TARGETING_MATCH:
    case GH_FR_SPLIT:
        ASSERT(r->value && r->variant && type_ok(r->value, type));
        break;
    case GH_FR_DEFAULT:
        ASSERT(!r->value == !r->variant);
        ASSERT(!r->value || type_ok(r->value, type));
        break;
    case GH_FR_DISABLED:
        ASSERT(!r->value && !r->variant);
        break;
    }
    if (r->metadata)
        ASSERT(json_is_object(r->metadata));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    gh_flagset_t *s = NULL;
    gh_flags_errors_t errs = {0};
    int rc = gh_flags_load("f.json", (const char *)data, size, &s, &errs);
    if (rc == 0) {
        ASSERT(s && errs.n == 0);
    } else {
        ASSERT(rc == GH_ECONFIG && !s && errs.n > 0);
        for (uint32_t i = 0; i < errs.n; i++)
            ASSERT(!strncmp(errs.msgs[i], "f.json: ", 8));
    }
    gh_flags_errors_free(&errs);

    json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (doc && size < 4096) {
        gh_flagset_t *s2 = NULL;
        int rc2 = gh_flags_load_json("f.json", doc, &s2, &errs);
        ASSERT(rc2 == rc && !s2 == !s);
        if (s2)
            ASSERT(gh_flags_count(s2) == gh_flags_count(s));
        gh_flags_free(s2);
        gh_flags_errors_free(&errs);
    }
    json_decref(doc);
    if (!s)
        return 0;

    json_t *ctxs[4];
    ctxs[0] = NULL;
    ctxs[1] = json_object();
    ctxs[2] = json_pack("{s:s, s:s, s:s, s:i, s:b, s:[s,i]}", "targetingKey", "user-1", "email", "a@faas.com", "color",
                        "yellow", "v", 1, "beta", 1, "list", "a", 2);
    ctxs[3] = json_string("not an object");
    gh_jl_arena_t arena = {arena_buf, sizeof arena_buf, 0};
    gh_flag_result_t r;
    uint32_t n = gh_flags_count(s);
    for (uint32_t i = 0; i < n && i < 64; i++) {
        const char *key = gh_flags_key(s, i);
        ASSERT(key);
        for (int c = 0; c < 4; c++)
            for (int t = GH_FT_ANY; t <= GH_FT_OBJECT; t++) {
                gh_flags_eval(s, gh_str(key, strlen(key)), ctxs[c], t, 1700000000, &arena, &r);
                check_result(&r, t);
                ASSERT(r.error != GH_FE_FLAG_NOT_FOUND || r.reason == GH_FR_DISABLED);
                if (c == 3 && r.reason != GH_FR_DISABLED)
                    ASSERT(r.error == GH_FE_INVALID_CONTEXT);
            }
    }
    static char nokey[300]; /* longer than any flag key can be */
    memset(nokey, 'x', sizeof nokey);
    gh_flags_eval(s, gh_str(nokey, sizeof nokey), NULL, GH_FT_ANY, 0, &arena, &r);
    check_result(&r, GH_FT_ANY);
    ASSERT(r.reason == GH_FR_ERROR && r.error == GH_FE_FLAG_NOT_FOUND);
    ASSERT(gh_flags_key(s, n) == NULL);
    for (int c = 0; c < 4; c++)
        json_decref(ctxs[c]);
    gh_flags_free(s);
    return 0;
}
