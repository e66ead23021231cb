/* test_jsonlogic.c: unit tests of the JsonLogic compiler and evaluator (src/flags/jsonlogic.c):
 * every operator and its edge cases as @openfeature/flagd-core 4 (json-logic-engine 5.0.7,
 * compiled mode) computes them, flagd's custom operators (fractional bucketing at the hash
 * boundaries and over a million units, sem_ver truth table, starts_with/ends_with), the
 * error paths (unknown operator, arity, depth, $ref cycles, arena full) and MurmurHash3
 * test vectors. The .c is included to reach the bucket formula (frac_bucket). */
#include "flags/jsonlogic.c"

#include <math.h>
#include <stdlib.h>

#include "t.h"
#include "experiments/stats.h"

static char g_mem[1 << 20];
static char g_out[4096];

static void put(char **o, char *end, const gh_jv_t *v)
{
    char num[40];
    switch (v->t) {
    case GH_JV_NULL:
        *o += snprintf(*o, (size_t)(end - *o), "null");
        break;
    case GH_JV_BOOL:
        *o += snprintf(*o, (size_t)(end - *o), v->u.b ? "true" : "false");
        break;
    case GH_JV_NUM:
        js_num_fmt(v->u.n, num);
        *o += snprintf(*o, (size_t)(end - *o), "%s", num);
        break;
    case GH_JV_STR:
        *o += snprintf(*o, (size_t)(end - *o), "\"%.*s\"", (int)v->u.s.n, v->u.s.p);
        break;
    case GH_JV_ARR:
        *o += snprintf(*o, (size_t)(end - *o), "[");
        for (uint32_t i = 0; i < v->u.a.n; i++) {
            if (i)
                *o += snprintf(*o, (size_t)(end - *o), ",");
            put(o, end, &v->u.a.v[i]);
        }
        *o += snprintf(*o, (size_t)(end - *o), "]");
        break;
    default: {
        char *t = json_dumps(v->u.o, JSON_COMPACT | JSON_ENCODE_ANY);
        *o += snprintf(*o, (size_t)(end - *o), "%s", t ? t : "?");
        free(t);
    }
    }
}

/* Compile and evaluate; the result as compact JSON, or "compile error: ..." /
 * "eval error" so that tests read as tables. */
static const char *run_key(const char *rule, const char *ctx, const char *flag)
{
    json_error_t je;
    json_t *r = json_loads(rule, JSON_DECODE_ANY, &je), *c = ctx ? json_loads(ctx, 0, &je) : NULL;
    if (!r)
        return "bad test rule";
    char err[200], path[200];
    gh_jl_rule_t *p = gh_jl_compile(r, NULL, err, sizeof(err), path, sizeof(path));
    json_decref(r);
    if (!p) {
        snprintf(g_out, sizeof(g_out), "compile error");
        json_decref(c);
        return g_out;
    }
    gh_jl_arena_t a = {g_mem, sizeof(g_mem), 0};
    gh_jv_t out;
    int rc = gh_jl_eval(p, c, gh_str(flag, strlen(flag)), 1700000000, &a, &out);
    if (rc)
        snprintf(g_out, sizeof(g_out), "eval error");
    else {
        char *o = g_out;
        put(&o, g_out + sizeof(g_out), &out);
    }
    gh_jl_free(p);
    json_decref(c);
    return g_out;
}

static const char *run(const char *rule, const char *ctx) { return run_key(rule, ctx, "my-flag"); }

#define EXPECT(rule, ctx, want)                       \
    do {                                              \
        const char *got_ = run(rule, ctx);            \
        CHECK_STR(gh_str(got_, strlen(got_)), want); \
    } while (0)

static void test_murmur3(void)
{
    static const struct {
        const char *s;
        size_t n;
        uint32_t seed, want;
    } v[] = {
        {"", 0, 0, 0},
        {"", 0, 1, 0x514E28B7},
        {"", 0, 0xffffffff, 0x81F16F39},
        {"\0\0\0\0", 4, 0, 0x2362F9DE},
        {"aaaa", 4, 0x9747b28c, 0x5A97808A},
        {"hello", 5, 0, 0x248BFA47},
        {"Hello, world!", 13, 0x9747b28c, 0x24884CBA},
        {"The quick brown fox jumps over the lazy dog", 43, 0, 0x2E4FF723},
        {"abc", 3, 0, 0xB3DD93FA},
        {"test", 4, 0, 0xBA6BD213},
        {"a", 1, 0, 0x3C2569B2},
        {"ab", 2, 0, 0x9BBFD75F},
        {"abcd", 4, 0x12345678, 0x587A9BEE},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(v); i++)
        CHECK_INT(gh_murmur3_32(v[i].s, v[i].n, v[i].seed), v[i].want);
}

static void test_fractional_bucket_boundaries(void)
{
    /* bucket = (hash * total) >> 32 is always < total */
    CHECK_INT(frac_bucket(0, 100), 0);
    CHECK_INT(frac_bucket(1, 100), 0);
    CHECK_INT(frac_bucket(0x7fffffff, 100), 49);
    CHECK_INT(frac_bucket(0x80000000u, 100), 50);
    CHECK_INT(frac_bucket(0xffffffffu, 100), 99);
    CHECK_INT(frac_bucket(0xffffffffu, 2147483647), 2147483646);
    CHECK_INT(frac_bucket(0x80000000u, 2147483647), 1073741823);
    CHECK_INT(frac_bucket(1, 2147483647), 0);
    CHECK_INT(frac_bucket(0xffffffffu, 1), 0);
    CHECK_INT(frac_bucket(0xffffffffu, 0), 0);
    /* the bucketing string "" hashes to 0: the first variant with a weight wins */
    EXPECT("{\"fractional\":[\"\",[\"a\",0],[\"b\",1],[\"c\",1]]}", "{}", "\"b\"");
    /* values from flagd-core (cross-checked): flagKey + targetingKey */
    EXPECT("{\"fractional\":[[\"a\",50],[\"b\",50]]}", "{\"targetingKey\":\"user-1\"}", "\"a\"");
}

static void test_fractional(void)
{
    /* missing or falsy targetingKey without a bucketing string: null */
    EXPECT("{\"fractional\":[[\"a\",50],[\"b\",50]]}", "{}", "null");
    EXPECT("{\"fractional\":[[\"a\",50],[\"b\",50]]}", "{\"targetingKey\":\"\"}", "null");
    EXPECT("{\"fractional\":[[\"a\",50],[\"b\",50]]}", "{\"targetingKey\":0}", "null");
    /* the first argument evaluating to a non-string is a bucket: here [5] is not one */
    EXPECT("{\"fractional\":[{\"var\":\"n\"},[\"a\",50],[\"b\",50]]}", "{\"n\":5,\"targetingKey\":\"u\"}", "null");
    /* a string first argument is the bucketing string, equal to a computed one */
    char a[64];
    snprintf(a, sizeof(a), "%s", run("{\"fractional\":[\"my-flaguser-7\",[\"x\",1],[\"y\",1],[\"z\",1]]}", "{}"));
    EXPECT("{\"fractional\":[[\"x\",1],[\"y\",1],[\"z\",1]]}", "{\"targetingKey\":\"user-7\"}", a);
    /* weights default to 1; all zero: null; variants may be numbers, booleans, null */
    EXPECT("{\"fractional\":[\"k\",[\"only\"]]}", "{}", "\"only\"");
    EXPECT("{\"fractional\":[\"k\",[\"a\",0],[\"b\",0]]}", "{}", "null");
    EXPECT("{\"fractional\":[\"\",[7,1]]}", "{}", "7");
    EXPECT("{\"fractional\":[\"\",[true,1]]}", "{}", "true");
    /* computed weights: negative clamps to 0, non-integer gives null */
    EXPECT("{\"fractional\":[\"\",[\"a\",{\"-\":[0,5]}],[\"b\",1]]}", "{}", "\"b\"");
    EXPECT("{\"fractional\":[\"\",[\"a\",{\"var\":\"w\"}],[\"b\",1]]}", "{\"w\":1.5}", "null");
    EXPECT("{\"fractional\":[\"\",[\"a\",{\"var\":\"w\"}],[\"b\",1]]}", "{\"w\":\"1\"}", "null");
    /* literal weights are checked at compile time */
    EXPECT("{\"fractional\":[\"\",[\"a\",1.5]]}", "{}", "compile error");
    EXPECT("{\"fractional\":[\"\",[\"a\",-1]]}", "{}", "compile error");
    EXPECT("{\"fractional\":[\"\",[\"a\",2147483647],[\"b\",1]]}", "{}", "compile error");
    EXPECT("{\"fractional\":[\"\",[\"a\",2147483647]]}", "{}", "\"a\"");
    /* bad bucket entries at evaluation: null */
    EXPECT("{\"fractional\":[\"\",[\"a\",1,2]]}", "{}", "null");
    EXPECT("{\"fractional\":[\"\",\"a\"]}", "{}", "null");
    EXPECT("{\"fractional\":[\"\",[{\"var\":\"o\"},1]]}", "{\"o\":{\"x\":1}}", "null");
    /* $flagd.flagKey is part of the bucketing string */
    char b1[64];
    snprintf(b1, sizeof(b1), "%s", run_key("{\"fractional\":[[\"a\",1],[\"b\",1],[\"c\",1],[\"d\",1]]}", "{\"targetingKey\":\"u\"}", "f1"));
    int differs = 0;
    for (int i = 0; i < 8; i++) {
        char k[16];
        snprintf(k, sizeof(k), "f%d", i + 2);
        differs |= strcmp(run_key("{\"fractional\":[[\"a\",1],[\"b\",1],[\"c\",1],[\"d\",1]]}", "{\"targetingKey\":\"u\"}", k), b1) != 0;
    }
    CHECK(differs);
}

static void test_fractional_distribution(void)
{
    json_t *rule = json_loads("{\"fractional\":[{\"var\":\"k\"},[\"a\",50],[\"b\",30],[\"c\",15],[\"d\",5]]}", 0, NULL);
    char err[100], path[100];
    gh_jl_rule_t *r = gh_jl_compile(rule, NULL, err, sizeof(err), path, sizeof(path));
    CHECK(r != NULL);
    json_t *ctx = json_object(), *k = json_string("");
    json_object_set(ctx, "k", k);
    const int N = 1000000;
    long cnt[4] = {0};
    char buf[32];
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof(buf), "unit-%d", i);
        json_string_setn(k, buf, (size_t)n);
        gh_jl_arena_t a = {g_mem, sizeof(g_mem), 0};
        gh_jv_t out;
        if (gh_jl_eval(r, ctx, GH_STR("f"), 0, &a, &out) || out.t != GH_JV_STR || out.u.s.n != 1)
            continue;
        cnt[out.u.s.p[0] - 'a']++;
    }
    const double w[4] = {0.50, 0.30, 0.15, 0.05};
    for (int i = 0; i < 4; i++) {
        double sd = sqrt(N * w[i] * (1 - w[i]));
        if (fabs(cnt[i] - N * w[i]) > 5 * sd)
            fprintf(stderr, "variant %c: %ld of %d (expected %.0f +- %.0f)\n", 'a' + i, cnt[i], N, N * w[i], 5 * sd);
        CHECK(fabs(cnt[i] - N * w[i]) <= 5 * sd);
    }
    CHECK_INT(cnt[0] + cnt[1] + cnt[2] + cnt[3], N);
    /* assignment uniformity (issue 8): Pearson's chi-square of the counts against the weights */
    double obs[4] = {(double)cnt[0], (double)cnt[1], (double)cnt[2], (double)cnt[3]}, chi2 = 0;
    double p = gh_stats_srm(obs, w, 4, &chi2);
    fprintf(stderr, "fractional over %d units: chi2 %.3f (3 dof), p %.4f\n", N, chi2, p);
    CHECK(p > 0.001);
    json_decref(k);
    json_decref(ctx);
    json_decref(rule);
    gh_jl_free(r);
}

static void test_sem_ver(void)
{
    /* expectations from @openfeature/flagd-core 4.0.1 (node-semver 7, v/V stripped once,
     * "N" and "N.M" coerced) */
    static const struct {
        const char *a, *op, *b;
        int want;
    } t[] = {
        {"1.2.3", "=", "1.2.3", 1}, {"v1.2.3", "=", "1.2.3", 1}, {"V1.2.3", "=", "1.2.3", 1},
        {"vv1.2.3", "=", "1.2.3", 1}, {"1.2", "=", "1.2.0", 1}, {"1", "=", "1.0.0", 1},
        {"1.2.3", "<", "1.2.4", 1}, {"1.2.3", ">", "1.2.4", 0}, {"1.10.0", ">", "1.9.0", 1},
        {"1.0.0-alpha", "<", "1.0.0", 1}, {"1.0.0-alpha", "<", "1.0.0-alpha.1", 1},
        {"1.0.0-alpha.1", "<", "1.0.0-alpha.beta", 1}, {"1.0.0-alpha.beta", "<", "1.0.0-beta", 1},
        {"1.0.0-beta", "<", "1.0.0-beta.2", 1}, {"1.0.0-beta.2", "<", "1.0.0-beta.11", 1},
        {"1.0.0-beta.11", "<", "1.0.0-rc.1", 1}, {"1.0.0-rc.1", "<", "1.0.0", 1},
        {"1.0.0+build.1", "=", "1.0.0+build.2", 1}, {"1.0.0+build.1", "!=", "1.0.0", 0},
        {"2.0.0", "^", "2.9.9", 1}, {"2.0.0", "^", "3.0.0", 0}, {"2.1.0", "~", "2.1.9", 1},
        {"2.1.0", "~", "2.2.0", 0}, {"1.2.3", ">=", "1.2.3", 1}, {"1.2.3", "<=", "1.2.2", 0},
        {"01.2.3", "=", "1.2.3", -1}, {"1.02.3", "=", "1.2.3", -1}, {"1.2.3.4", "=", "1.2.3", -1},
        {"abc", "=", "1.2.3", -1}, {"", "=", "1.2.3", -1}, {" 1.2.3", "=", "1.2.3", 1},
        {"1.2.3 ", "=", "1.2.3", 1}, {"1.2.x", "=", "1.2.0", -1}, {"v1", "=", "1.0.0", 1},
        {"1.2.3-01", "=", "1.2.3", -1}, {"1.0.0-0A", "<", "1.0.0", 1}, {"1.0.0-1", "<", "1.0.0-a", 1},
        {"1.2.3", "===", "1.2.3", -1}, {"1.2.3-", "=", "1.2.3", -1}, {"1.2.3+", "=", "1.2.3", -1},
        {"1.2.3-a..b", "=", "1.2.3", -1}, {"9007199254740991.0.0", ">", "1.0.0", 1},
        {"9007199254740992.0.0", ">", "1.0.0", -1}, {"=1.2.3", "=", "1.2.3", -1}, {"1.2.", "=", "1.2.0", -1},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(t); i++) {
        int got = gh_semver_cmp(gh_str(t[i].a, strlen(t[i].a)), gh_str(t[i].op, strlen(t[i].op)),
                                gh_str(t[i].b, strlen(t[i].b)));
        if (got != t[i].want)
            fprintf(stderr, "sem_ver %s %s %s: %d, expected %d\n", t[i].a, t[i].op, t[i].b, got, t[i].want);
        CHECK_INT(got, t[i].want);
    }
    /* through the operator: numbers are String()ed, unparsable gives null */
    EXPECT("{\"sem_ver\":[1.2,\"=\",\"1.2.0\"]}", "{}", "true");
    EXPECT("{\"sem_ver\":[2,\"=\",\"2.0.0\"]}", "{}", "true");
    EXPECT("{\"sem_ver\":[null,\"=\",\"1.0.0\"]}", "{}", "null");
    EXPECT("{\"sem_ver\":[{\"var\":\"v\"},\">=\",\"1.2.0\"]}", "{\"v\":\"v1.3.0\"}", "true");
    EXPECT("{\"sem_ver\":[\"1.0.0\",\"=~\",\"1.0.0\"]}", "{}", "compile error");
    EXPECT("{\"sem_ver\":[\"1.0.0\",{\"var\":\"op\"},\"1.0.0\"]}", "{\"op\":\"=~\"}", "null");
    EXPECT("{\"sem_ver\":[\"1.0.0\",\"=\"]}", "{}", "compile error");
}

static void test_string_comp(void)
{
    EXPECT("{\"starts_with\":[{\"var\":\"e\"},\"al\"]}", "{\"e\":\"alice\"}", "true");
    EXPECT("{\"starts_with\":[{\"var\":\"e\"},\"bo\"]}", "{\"e\":\"alice\"}", "false");
    EXPECT("{\"ends_with\":[{\"var\":\"e\"},\"@example.com\"]}", "{\"e\":\"a@example.com\"}", "true");
    EXPECT("{\"ends_with\":[{\"var\":\"e\"},\"toolong-toolong\"]}", "{\"e\":\"a\"}", "false");
    EXPECT("{\"ends_with\":[{\"var\":\"e\"},\"\"]}", "{\"e\":\"a\"}", "true");
    /* non-strings: null (flagd-core), not false */
    EXPECT("{\"starts_with\":[{\"var\":\"missing\"},\"a\"]}", "{}", "null");
    EXPECT("{\"ends_with\":[null,\"x\"]}", "{}", "null");
    EXPECT("{\"starts_with\":[false,\"f\"]}", "{}", "null");
    EXPECT("{\"starts_with\":[\"1\",1]}", "{}", "null");
    EXPECT("{\"starts_with\":[\"a\"]}", "{}", "compile error");
}

static void test_var(void)
{
    EXPECT("{\"var\":\"a\"}", "{\"a\":1}", "1");
    EXPECT("{\"var\":\"a.b.0\"}", "{\"a\":{\"b\":[7]}}", "7");
    EXPECT("{\"var\":\"a.1\"}", "{\"a\":[1,2]}", "2");
    EXPECT("{\"var\":\"a.5\"}", "{\"a\":[1,2]}", "null");
    EXPECT("{\"var\":[\"x\",5]}", "{}", "5");
    EXPECT("{\"var\":[\"x\",5]}", "{\"x\":null}", "5"); /* compiled: ?? default */
    EXPECT("{\"var\":[\"x\",5]}", "{\"x\":0}", "0");
    EXPECT("{\"var\":\"\"}", "{\"a\":1}", "{\"a\":1}");
    EXPECT("{\"var\":null}", "{\"a\":1}", "{\"a\":1}");
    EXPECT("{\"var\":\"s.length\"}", "{\"s\":\"héllo\"}", "5");
    EXPECT("{\"var\":\"a.length\"}", "{\"a\":[1,2,3]}", "3");
    EXPECT("{\"var\":\"a\\\\.b\"}", "{\"a.b\":9}", "9");
    EXPECT("{\"var\":1}", "{\"1\":\"one\"}", "\"one\"");
    EXPECT("{\"var\":{\"cat\":[\"a\",\"b\"]}}", "{\"ab\":3}", "3");
    EXPECT("{\"var\":\"$flagd.flagKey\"}", "{}", "\"my-flag\"");
    EXPECT("{\"var\":\"$flagd.timestamp\"}", "{}", "1700000000");
    EXPECT("{\"var\":\"$flagd.flagKey\"}", "{\"$flagd\":{\"flagKey\":\"spoofed\"}}", "\"my-flag\"");
    EXPECT("{\"var\":\"a\"}", NULL, "null");
}

static void test_missing(void)
{
    EXPECT("{\"missing\":[\"a\",\"b\"]}", "{\"a\":1}", "[\"b\"]");
    EXPECT("{\"missing\":[\"a\",\"b\"]}", "{\"a\":null,\"b\":0}", "[]");
    EXPECT("{\"missing\":[\"a.b\"]}", "{\"a\":{\"b\":1}}", "[]");
    EXPECT("{\"missing\":[\"a.b\"]}", "{\"a\":0}", "[\"a.b\"]");
    EXPECT("{\"missing\":[]}", "{}", "[]");
    EXPECT("{\"missing\":{\"merge\":[\"x\",\"y\"]}}", "{\"x\":1}", "[\"y\"]");
    EXPECT("{\"missing_some\":[1,[\"a\",\"b\"]]}", "{\"a\":1}", "[]");
    EXPECT("{\"missing_some\":[2,[\"a\",\"b\",\"c\"]]}", "{\"a\":1}", "[\"b\",\"c\"]");
    EXPECT("{\"missing_some\":[0,[]]}", "{}", "[]");
    EXPECT("{\"missing_some\":[1]}", "{}", "compile error");
}

static void test_if_logic(void)
{
    EXPECT("{\"if\":[true,\"y\",\"n\"]}", "{}", "\"y\"");
    EXPECT("{\"if\":[[],\"y\",\"n\"]}", "{}", "\"n\"");
    EXPECT("{\"if\":[{},\"y\",\"n\"]}", "{}", "\"n\""); /* engine.truthy({}) is false */
    EXPECT("{\"if\":[\"0\",\"y\",\"n\"]}", "{}", "\"y\"");
    EXPECT("{\"if\":[false,1,false,2,3]}", "{}", "3");
    EXPECT("{\"if\":[false,1,true,2,3]}", "{}", "2");
    EXPECT("{\"if\":[false,1,true]}", "{}", "true");
    EXPECT("{\"if\":[false,1]}", "{}", "null");
    EXPECT("{\"if\":[5]}", "{}", "5");
    EXPECT("{\"if\":[]}", "{}", "null");
    EXPECT("{\"?:\":[1,2,3]}", "{}", "2");
    EXPECT("{\"or\":[0,\"\",\"x\",1]}", "{}", "\"x\"");
    EXPECT("{\"or\":[0,false]}", "{}", "false");
    EXPECT("{\"and\":[1,\"a\",0,2]}", "{}", "0");
    EXPECT("{\"and\":[1,\"a\"]}", "{}", "\"a\"");
    EXPECT("{\"and\":[]}", "{}", "null");
    EXPECT("{\"or\":{\"var\":\"x\"}}", "{}", "compile error");
    EXPECT("{\"!\":[[]]}", "{}", "true");
    EXPECT("{\"!\":[\"\"]}", "{}", "true");
    EXPECT("{\"!\":{\"var\":\"a\"}}", "{\"a\":[0]}", "false");
    EXPECT("{\"!!\":[\"0\"]}", "{}", "true");
    EXPECT("{\"!!\":[{\"var\":\"a\"}]}", "{\"a\":[]}", "false");
}

static void test_comparisons(void)
{
    EXPECT("{\"==\":[1,\"1\"]}", "{}", "true");
    EXPECT("{\"===\":[1,\"1\"]}", "{}", "false");
    EXPECT("{\"!=\":[1,\"1\"]}", "{}", "false");
    EXPECT("{\"!==\":[1,\"1\"]}", "{}", "true");
    EXPECT("{\"==\":[null,0]}", "{}", "true"); /* compareCheck: null against a falsy value */
    EXPECT("{\"==\":[0,null]}", "{}", "true");
    EXPECT("{\"==\":[\"\",null]}", "{}", "false");
    EXPECT("{\"==\":[true,1]}", "{}", "true");
    EXPECT("{\"==\":[{\"var\":\"a\"},1]}", "{\"a\":\"x\"}", "eval error"); /* NaN throws */
    EXPECT("{\"==\":[\"x\",{\"var\":\"a\"}]}", "{\"a\":\"x\"}", "true");
    EXPECT("{\"<\":[1,{\"var\":\"a\"}]}", "{\"a\":\"x\"}", "false"); /* compareCheck(a, a) */
    EXPECT("{\"<\":[\"a\",\"b\"]}", "{}", "true");
    EXPECT("{\"<\":[\"10\",\"9\"]}", "{}", "true");
    EXPECT("{\"<\":[\"10\",9]}", "{}", "false");
    EXPECT("{\">\":[2,1]}", "{}", "true");
    EXPECT("{\">=\":[1,1]}", "{}", "true");
    EXPECT("{\"<=\":[2,1]}", "{}", "false");
    EXPECT("{\"<\":[1,{\"var\":\"x\"},10]}", "{\"x\":5}", "true");
    EXPECT("{\"<\":[1,{\"var\":\"x\"},10]}", "{\"x\":10}", "false");
    EXPECT("{\"<=\":[1,{\"var\":\"x\"},10]}", "{\"x\":10}", "true");
    EXPECT("{\"<=\":[1,{\"var\":\"x\"},10]}", "{\"x\":0}", "false");
    EXPECT("{\">=\":[{\"var\":\"l\"},null]}", "{\"l\":[]}", "eval error");
    EXPECT("{\"===\":[{\"var\":\"l\"},{\"var\":\"l\"}]}", "{\"l\":[1]}", "true"); /* same array */
    EXPECT("{\"===\":[[],[]]}", "{}", "false");
    EXPECT("{\"==\":[1]}", "{}", "compile error");
    EXPECT("{\"<\":5}", "{}", "compile error");
}

static void test_arithmetic(void)
{
    EXPECT("{\"+\":[1,\"2\",true]}", "{}", "4");
    EXPECT("{\"+\":[]}", "{}", "0");
    EXPECT("{\"+\":\"3.5\"}", "{}", "3.5");
    EXPECT("{\"+\":[\"abc\"]}", "{}", "compile error");
    EXPECT("{\"+\":[{\"var\":\"s\"},1]}", "{\"s\":\"abc\"}", "eval error");
    EXPECT("{\"+\":[{\"var\":\"a\"},1]}", "{\"a\":[1]}", "eval error");
    EXPECT("{\"-\":[10,4,1]}", "{}", "5");
    EXPECT("{\"-\":[3]}", "{}", "-3");
    EXPECT("{\"-\":[]}", "{}", "compile error");
    EXPECT("{\"*\":[2,3,4]}", "{}", "24");
    EXPECT("{\"*\":[]}", "{}", "1");
    EXPECT("{\"/\":[1,4]}", "{}", "0.25");
    EXPECT("{\"/\":[4]}", "{}", "0.25");
    EXPECT("{\"/\":[1,0]}", "{}", "compile error");
    EXPECT("{\"/\":[1,{\"var\":\"z\"}]}", "{\"z\":0}", "eval error");
    EXPECT("{\"%\":[7,3]}", "{}", "1");
    EXPECT("{\"%\":[-7,3]}", "{}", "-1");
    EXPECT("{\"%\":[7,{\"var\":\"z\"}]}", "{\"z\":0}", "eval error");
    EXPECT("{\"%\":[7]}", "{}", "compile error");
    EXPECT("{\"max\":[1,3,2]}", "{}", "3");
    EXPECT("{\"min\":[1,3,-2]}", "{}", "-2");
    EXPECT("{\"max\":[]}", "{}", "compile error");
    EXPECT("{\"max\":[\"1\",2]}", "{}", "compile error");
    EXPECT("{\"max\":[{\"var\":\"a\"},2]}", "{\"a\":\"1\"}", "eval error");
    EXPECT("{\"+\":[0.1,0.2]}", "{}", "0.30000000000000004");
    EXPECT("{\"*\":[1e21,1]}", "{}", "1e+21");
}

static void test_strings_arrays(void)
{
    EXPECT("{\"in\":[\"b\",\"abc\"]}", "{}", "true");
    EXPECT("{\"in\":[\"\",\"abc\"]}", "{}", "true");
    EXPECT("{\"in\":[\"x\",\"\"]}", "{}", "false");
    EXPECT("{\"in\":[1,\"a1\"]}", "{}", "true");
    EXPECT("{\"in\":[1,[1,2]]}", "{}", "true");
    EXPECT("{\"in\":[\"1\",[1,2]]}", "{}", "false");
    EXPECT("{\"in\":[\"a\",{\"var\":\"missing\"}]}", "{}", "false");
    EXPECT("{\"in\":[\"a\",{\"var\":\"n\"}]}", "{\"n\":5}", "eval error"); /* (5).includes */
    EXPECT("{\"in\":[\"a\",5]}", "{}", "compile error"); /* constant: thrown while building */
    EXPECT("{\"cat\":[\"a\",1,true]}", "{}", "\"a1true\"");
    EXPECT("{\"cat\":[\"a\",null,1.5]}", "{}", "\"a1.5\""); /* constant: the interpreter skips null */
    EXPECT("{\"cat\":[{\"var\":\"a\"},null]}", "{}", "\"nullnull\""); /* compiled: '' + null */
    EXPECT("{\"cat\":{\"var\":\"l\"}}", "{\"l\":[\"a\",null,\"b\"]}", "\"ab\"");
    EXPECT("{\"cat\":[{\"var\":\"l\"}]}", "{\"l\":[1,[2,3]]}", "\"1,2,3\"");
    EXPECT("{\"substr\":[\"hello\",1]}", "{}", "\"ello\"");
    EXPECT("{\"substr\":[\"hello\",1,2]}", "{}", "\"el\"");
    EXPECT("{\"substr\":[\"hello\",-3]}", "{}", "\"llo\"");
    EXPECT("{\"substr\":[\"hello\",-3,-1]}", "{}", "\"ll\"");
    EXPECT("{\"substr\":[\"hello\",0,-10]}", "{}", "\"\"");
    EXPECT("{\"substr\":[\"hello\",10]}", "{}", "\"\"");
    EXPECT("{\"substr\":[\"héllo\",1,1]}", "{}", "\"é\"");
    EXPECT("{\"substr\":[5,1]}", "{}", "compile error");
    EXPECT("{\"merge\":[1,[2,3],[[4]]]}", "{}", "[1,2,3,[4]]");
    EXPECT("{\"merge\":[]}", "{}", "[]");
    EXPECT("{\"map\":[{\"var\":\"l\"},{\"*\":[{\"var\":\"\"},2]}]}", "{\"l\":[1,2]}", "[2,4]");
    EXPECT("{\"map\":[{\"var\":\"missing\"},{\"var\":\"\"}]}", "{}", "[]");
    EXPECT("{\"map\":[{\"var\":\"s\"},{\"var\":\"\"}]}", "{\"s\":\"ab\"}", "eval error");
    EXPECT("{\"filter\":[{\"var\":\"l\"},{\">\":[{\"var\":\"\"},1]}]}", "{\"l\":[1,2,3]}", "[2,3]");
    EXPECT("{\"reduce\":[{\"var\":\"l\"},{\"+\":[{\"var\":\"accumulator\"},{\"var\":\"current\"}]},0]}", "{\"l\":[1,2,3]}", "6");
    EXPECT("{\"reduce\":[{\"var\":\"l\"},{\"+\":[{\"var\":\"accumulator\"},{\"var\":\"current\"}]}]}", "{\"l\":[]}", "eval error");
    EXPECT("{\"reduce\":[[],{\"+\":[{\"var\":\"accumulator\"},{\"var\":\"current\"}]}]}", "{}", "0"); /* optimizer idiom */
    EXPECT("{\"reduce\":[{\"var\":\"l\"},{\"cat\":[{\"var\":\"accumulator\"},{\"var\":\"current\"}]},\"\"]}", "{\"l\":[\"a\",\"b\"]}", "\"ab\"");
    EXPECT("{\"all\":[{\"var\":\"l\"},{\">\":[{\"var\":\"\"},0]}]}", "{\"l\":[1,2]}", "true");
    EXPECT("{\"all\":[{\"var\":\"l\"},{\">\":[{\"var\":\"\"},0]}]}", "{\"l\":[]}", "false");
    EXPECT("{\"some\":[{\"var\":\"l\"},{\">\":[{\"var\":\"\"},1]}]}", "{\"l\":[1,2]}", "true");
    EXPECT("{\"none\":[{\"var\":\"l\"},{\">\":[{\"var\":\"\"},1]}]}", "{\"l\":[1,2]}", "false");
    EXPECT("{\"none\":[[],{\">\":[{\"var\":\"\"},1]}]}", "{}", "true");
    EXPECT("{\"map\":[[1]]}", "{}", "compile error");
}

static void test_js_numbers(void)
{
    char b[40];
    static const struct {
        double d;
        const char *s;
    } t[] = {{0, "0"}, {-0.0, "0"}, {1, "1"}, {-1.5, "-1.5"}, {1e21, "1e+21"}, {1e20, "100000000000000000000"},
             {1e-7, "1e-7"}, {1e-6, "0.000001"}, {123456789.125, "123456789.125"}, {0.1, "0.1"},
             {1.7976931348623157e308, "1.7976931348623157e+308"}, {5e-324, "5e-324"}};
    for (size_t i = 0; i < GH_ARRAY_LEN(t); i++) {
        js_num_fmt(t[i].d, b);
        CHECK_STR(gh_str(b, strlen(b)), t[i].s);
    }
    CHECK(js_str_to_num(GH_STR(" 12 ")) == 12);
    CHECK(js_str_to_num(GH_STR("0x1A")) == 26);
    CHECK(js_str_to_num(GH_STR("")) == 0);
    CHECK(isnan(js_str_to_num(GH_STR("1a"))));
    CHECK(isnan(js_str_to_num(GH_STR("inf"))));
    CHECK(isinf(js_str_to_num(GH_STR("-Infinity"))));
    CHECK(js_str_to_num(GH_STR(".5e1")) == 5);
}

static void test_errors(void)
{
    char err[200], path[200];
    json_t *r = json_loads("{\"and\":[true,{\"if\":[{\"frobnicate\":[1]},1,2]}]}", 0, NULL);
    CHECK(gh_jl_compile(r, NULL, err, sizeof(err), path, sizeof(path)) == NULL);
    CHECK(strstr(err, "unknown operator") != NULL);
    CHECK_STR(gh_str(path, strlen(path)), "/and/1/if/0");
    json_decref(r);

    r = json_loads("{\"a\":1,\"b\":2}", 0, NULL);
    CHECK(gh_jl_compile(r, NULL, err, sizeof(err), path, sizeof(path)) == NULL);
    json_decref(r);

    /* depth: 64 nested operators compile, 66 do not */
    char buf[4096];
    for (int depth = 60; depth <= 70; depth += 10) {
        size_t o = 0;
        for (int i = 0; i < depth; i++)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "{\"!\":[");
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "true");
        for (int i = 0; i < depth; i++)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "]}");
        r = json_loads(buf, 0, NULL);
        gh_jl_rule_t *p = gh_jl_compile(r, NULL, err, sizeof(err), path, sizeof(path));
        CHECK((p != NULL) == (depth == 60));
        if (!p)
            CHECK(strstr(err, "deep") != NULL);
        gh_jl_free(p);
        json_decref(r);
    }

    /* $ref: resolved, unknown, cyclic */
    json_t *ev = json_loads("{\"isAdmin\":{\"in\":[{\"var\":\"email\"},[\"a@x\"]]},"
                            "\"loopA\":{\"$ref\":\"loopB\"},\"loopB\":{\"or\":[{\"$ref\":\"loopA\"}]}}",
                            0, NULL);
    r = json_loads("{\"if\":[{\"$ref\":\"isAdmin\"},\"on\",\"off\"]}", 0, NULL);
    gh_jl_rule_t *p = gh_jl_compile(r, ev, err, sizeof(err), path, sizeof(path));
    CHECK(p != NULL);
    json_decref(r);
    if (p) {
        json_t *c = json_loads("{\"email\":\"a@x\"}", 0, NULL);
        gh_jl_arena_t a = {g_mem, sizeof(g_mem), 0};
        gh_jv_t out;
        CHECK_INT(gh_jl_eval(p, c, GH_STR("f"), 0, &a, &out), 0);
        CHECK(out.t == GH_JV_STR && out.u.s.n == 2);
        json_decref(c);
        gh_jl_free(p);
    }
    r = json_loads("{\"$ref\":\"nope\"}", 0, NULL);
    CHECK(gh_jl_compile(r, ev, err, sizeof(err), path, sizeof(path)) == NULL);
    CHECK(strstr(err, "unknown evaluator") != NULL);
    json_decref(r);
    r = json_loads("{\"and\":[{\"$ref\":\"loopA\"}]}", 0, NULL);
    CHECK(gh_jl_compile(r, ev, err, sizeof(err), path, sizeof(path)) == NULL);
    CHECK(strstr(err, "cyclic") != NULL);
    json_decref(r);
    json_decref(ev);

    /* arena full: GH_ELIMIT, never a partial result */
    r = json_loads("{\"map\":[{\"var\":\"l\"},{\"cat\":[{\"var\":\"\"},\"-suffix\"]}]}", 0, NULL);
    p = gh_jl_compile(r, NULL, err, sizeof(err), path, sizeof(path));
    json_decref(r);
    json_t *c = json_loads("{\"l\":[\"aaaaaaaa\",\"bbbbbbbb\",\"cccccccc\",\"dddddddd\"]}", 0, NULL);
    char small[64];
    gh_jl_arena_t a = {small, sizeof(small), 0};
    gh_jv_t out;
    CHECK_INT(gh_jl_eval(p, c, GH_STR("f"), 0, &a, &out), GH_ELIMIT);
    CHECK(a.used <= a.cap);
    a = (gh_jl_arena_t){g_mem, sizeof(g_mem), 0};
    CHECK_INT(gh_jl_eval(p, c, GH_STR("f"), 0, &a, &out), 0);
    CHECK_INT(out.t, GH_JV_ARR);
    json_decref(c);
    gh_jl_free(p);

    /* a literal is a constant rule; a constant that throws is a compile error */
    EXPECT("\"on\"", "{}", "\"on\"");
    EXPECT("{\"/\":[1,{\"-\":[1,1]}]}", "{}", "compile error");
    CHECK_INT(gh_jv_truthy(&(gh_jv_t){.t = GH_JV_NUM, .u.n = NAN}), 0);
}

/* json-logic-engine's compiled-code quirks that flagd-core exhibits, kept on purpose. */
static void test_engine_quirks(void)
{
    /* cat around and/or: JS precedence regroups ('' + a + t(prev = x) ? prev : ...) */
    EXPECT("{\"cat\":[{\"var\":\"a\"},{\"and\":[{\"var\":\"b\"},{\"var\":\"c\"}]},\"!\"]}", "{\"a\":\"x\",\"b\":\"y\",\"c\":\"z\"}", "\"y\"");
    EXPECT("{\"cat\":[{\"missing\":[\"nums\"]}]}", "{}", "[]"); /* '' + x === undefined ? .. : [] */
    /* a 1-2 argument if runs in the interpreter: "a.b" stops at a falsy step */
    EXPECT("{\"if\":[true,{\"var\":\"e.length\"}]}", "{\"e\":\"\"}", "\"\"");
    EXPECT("{\"if\":[true,{\"var\":\"e.length\"},0]}", "{\"e\":\"\"}", "0");
}

/* GH_JL_NOW: the clock is read for $flagd.timestamp, and only then */
static void test_lazy_clock(void)
{
    char err[128], path[128], mem[4096];
    json_t *rule = json_loads("{\"-\": [{\"var\": \"$flagd.timestamp\"}, 0]}", 0, NULL);
    gh_jl_rule_t *r = gh_jl_compile(rule, NULL, err, sizeof err, path, sizeof path);
    CHECK(r != NULL);
    if (r) {
        gh_jl_arena_t a = {mem, sizeof mem, 0};
        gh_jv_t out;
        int64_t t0 = (int64_t)time(NULL);
        CHECK_INT(gh_jl_eval(r, NULL, GH_STR("f"), GH_JL_NOW, &a, &out), 0);
        CHECK(out.t == GH_JV_NUM && out.u.n >= (double)t0 && out.u.n <= (double)t0 + 2);
        a.used = 0;
        CHECK_INT(gh_jl_eval(r, NULL, GH_STR("f"), 1234, &a, &out), 0);
        CHECK(out.t == GH_JV_NUM && out.u.n == 1234.0);
        gh_jl_free(r);
    }
    json_decref(rule);
}

int main(void)
{
    RUN(test_lazy_clock);
    RUN(test_murmur3);
    RUN(test_fractional_bucket_boundaries);
    RUN(test_fractional);
    RUN(test_fractional_distribution);
    RUN(test_sem_ver);
    RUN(test_string_comp);
    RUN(test_var);
    RUN(test_missing);
    RUN(test_if_logic);
    RUN(test_comparisons);
    RUN(test_arithmetic);
    RUN(test_strings_arrays);
    RUN(test_js_numbers);
    RUN(test_errors);
    RUN(test_engine_quirks);
    return t_done("test_jsonlogic");
}
