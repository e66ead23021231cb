/* jl_driver.c: the C side of the flagd-core cross-check (see README). Reads JSON lines
 * {"rule": R, "ctx": C, "flag": KEY, "now": T, "evaluators": E?} on stdin and writes one
 * JSON line per case: {"v": RESULT} or {"err": "compile"|"eval", "msg": ...}.
 * Build: cc -std=gnu11 -Isrc tests/flags/jl_driver.c src/flags/jsonlogic.c $(pkg-config
 * --cflags --libs jansson) -lm -o /tmp/jl_driver */
#include "flags/jsonlogic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void put_num(double d)
{
    if (!isfinite(d)) {
        fputs("null", stdout);
        return;
    }
    if (d == floor(d) && fabs(d) < 1e15)
        printf("%.0f", d);
    else
        printf("%.17g", d);
}

static void put_str(const char *p, size_t n)
{
    json_t *s = json_stringn_nocheck(p, n);
    char *t = json_dumps(s, JSON_ENCODE_ANY);
    fputs(t ? t : "null", stdout);
    free(t);
    json_decref(s);
}

static void put(const gh_jv_t *v)
{
    switch (v->t) {
    case GH_JV_NULL:
        fputs("null", stdout);
        break;
    case GH_JV_BOOL:
        fputs(v->u.b ? "true" : "false", stdout);
        break;
    case GH_JV_NUM:
        put_num(v->u.n);
        break;
    case GH_JV_STR:
        put_str(v->u.s.p, v->u.s.n);
        break;
    case GH_JV_ARR:
        putchar('[');
        for (uint32_t i = 0; i < v->u.a.n; i++) {
            if (i)
                putchar(',');
            put(&v->u.a.v[i]);
        }
        putchar(']');
        break;
    default: {
        char *t = json_dumps(v->u.o, JSON_ENCODE_ANY | JSON_COMPACT);
        fputs(t ? t : "null", stdout);
        free(t);
    }
    }
}

int main(void)
{
    static char line[1 << 20];
    static char mem[1 << 20];
    while (fgets(line, sizeof(line), stdin)) {
        json_error_t je;
        json_t *c = json_loads(line, JSON_DECODE_ANY, &je);
        if (!c) {
            printf("{\"err\":\"input\"}\n");
            continue;
        }
        const json_t *rule = json_object_get(c, "rule"), *ctx = json_object_get(c, "ctx");
        const char *flag = json_string_value(json_object_get(c, "flag"));
        int64_t now = json_integer_value(json_object_get(c, "now"));
        char err[256], path[256];
        gh_jl_rule_t *r = gh_jl_compile(rule, json_object_get(c, "evaluators"), err, sizeof(err), path, sizeof(path));
        if (!r) {
            printf("{\"err\":\"compile\",\"msg\":");
            put_str(err, strlen(err));
            printf(",\"path\":");
            put_str(path, strlen(path));
            printf("}\n");
            json_decref(c);
            continue;
        }
        gh_jl_arena_t a = {mem, sizeof(mem), 0};
        gh_jv_t out;
        int rc = gh_jl_eval(r, ctx, gh_str(flag ? flag : "", flag ? strlen(flag) : 0), now, &a, &out);
        if (rc)
            printf("{\"err\":\"eval\",\"msg\":\"%d\"}\n", rc);
        else {
            printf("{\"v\":");
            put(&out);
            printf("}\n");
        }
        gh_jl_free(r);
        json_decref(c);
    }
    return 0;
}
