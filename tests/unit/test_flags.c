/* test_flags.c: unit tests of the flag model (src/flags/flags.c): loading flagd definitions
 * (flagd's own sample and flagd-schemas' examples), every validation error with its JSON
 * pointer, evaluation along every reason and error path as flagd and @openfeature/flagd-core
 * answer, $ref evaluators, metadata merging, and the load cost of 10,000 flags. */
#include <malloc.h>
#include <stdlib.h>
#include <time.h>

#include "flags/flags.h"
#include "t.h"

#define NOW 1700000000LL

static char arena_buf[64 * 1024];
static gh_jl_arena_t arena = {arena_buf, sizeof arena_buf, 0};
static gh_flags_errors_t errs;

static gh_flagset_t *load(const char *text)
{
    gh_flagset_t *s = NULL;
    gh_flags_errors_free(&errs);
    int rc = gh_flags_load("f.json", text, strlen(text), &s, &errs);
    if (rc != 0) {
        if (s || !errs.n)
            fprintf(stderr, "load: rc %d but set %p, %u errors\n", rc, (void *)s, errs.n);
        return NULL;
    }
    if (!s || errs.n)
        fprintf(stderr, "load: ok but %u errors\n", errs.n);
    return s;
}

static void dump_errs(void)
{
    for (uint32_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  %s\n", errs.msgs[i]);
}

/* Is there a message that starts with prefix and contains part? */
static int has_err(const char *prefix, const char *part)
{
    for (uint32_t i = 0; i < errs.n; i++)
        if (!strncmp(errs.msgs[i], prefix, strlen(prefix)) && (!part || strstr(errs.msgs[i], part)))
            return 1;
    dump_errs();
    fprintf(stderr, "  (wanted \"%s\" ... \"%s\")\n", prefix, part ? part : "");
    return 0;
}

static gh_flag_result_t ev(const gh_flagset_t *s, const char *key, const char *ctx, int type)
{
    gh_flag_result_t r;
    json_t *c = ctx ? json_loads(ctx, 0, NULL) : NULL;
    if (ctx && !c)
        fprintf(stderr, "bad test context %s\n", ctx);
    memset(&r, 0x5a, sizeof r);
    gh_flags_eval(s, gh_str(key, strlen(key)), c, type, NOW, &arena, &r);
    json_decref(c);
    return r;
}

static int var_is(const gh_flag_result_t *r, const char *name)
{
    if (!name)
        return r->variant == NULL;
    return r->variant && !strcmp(r->variant, name);
}

static int meta_str(const gh_flag_result_t *r, const char *k, const char *want)
{
    const json_t *v = r->metadata ? json_object_get(r->metadata, k) : NULL;
    return v && json_is_string(v) && !strcmp(json_string_value(v), want);
}

/* flagd's sample definition (open-feature/flagd config/samples/example_flags.flagd.json),
 * without the stray "demo" entry and its "rollout" rule (tested separately below). */
static const char *FLAGD_SAMPLE =
    "{\"$schema\":\"https://flagd.dev/schema/v0/flags.json\","
    "\"metadata\":{\"flagSetId\":\"example\",\"version\":\"v1\"},"
    "\"flags\":{"
    "\"myBoolFlag\":{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"on\","
    "  \"metadata\":{\"version\":\"v2\"}},"
    "\"myStringFlag\":{\"state\":\"ENABLED\",\"variants\":{\"key1\":\"val1\",\"key2\":\"val2\"},\"defaultVariant\":\"key1\"},"
    "\"myFloatFlag\":{\"state\":\"ENABLED\",\"variants\":{\"one\":1.23,\"two\":2.34},\"defaultVariant\":\"one\"},"
    "\"myIntFlag\":{\"state\":\"ENABLED\",\"variants\":{\"one\":1,\"two\":2},\"defaultVariant\":\"one\"},"
    "\"myObjectFlag\":{\"state\":\"ENABLED\",\"variants\":{\"object1\":{\"key\":\"val\"},\"object2\":{\"key\":true}},"
    "  \"defaultVariant\":\"object1\"},"
    "\"isColorYellow\":{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"off\","
    "  \"targeting\":{\"if\":[{\"==\":[{\"var\":[\"color\"]},\"yellow\"]},\"on\",\"off\"]}},"
    "\"fibAlgo\":{\"variants\":{\"recursive\":\"recursive\",\"memo\":\"memo\",\"loop\":\"loop\",\"binet\":\"binet\"},"
    "  \"defaultVariant\":\"recursive\",\"state\":\"ENABLED\","
    "  \"targeting\":{\"if\":[{\"$ref\":\"emailWithFaas\"},\"binet\",null]}},"
    "\"headerColor\":{\"variants\":{\"red\":\"#FF0000\",\"blue\":\"#0000FF\",\"green\":\"#00FF00\",\"yellow\":\"#FFFF00\"},"
    "  \"defaultVariant\":\"red\",\"state\":\"ENABLED\","
    "  \"targeting\":{\"if\":[{\"$ref\":\"emailWithFaas\"},{\"fractional\":[{\"var\":\"email\"},[\"red\",25],[\"blue\",25],"
    "  [\"green\",25],[\"yellow\",25]]},null]}},"
    "\"targetedFlag\":{\"variants\":{\"first\":\"AAA\",\"second\":\"BBB\",\"third\":\"CCC\"},\"defaultVariant\":\"first\","
    "  \"state\":\"ENABLED\",\"targeting\":{\"if\":[{\"in\":[\"@openfeature.dev\",{\"var\":\"email\"}]},\"second\",\"first\"]}}"
    "},"
    "\"$evaluators\":{\"emailWithFaas\":{\"in\":[\"@faas.com\",{\"var\":[\"email\"]}]}}}";

static void test_flagd_sample(void)
{
    gh_flagset_t *s = load(FLAGD_SAMPLE);
    CHECK(s != NULL);
    if (!s) {
        dump_errs();
        return;
    }
    CHECK_INT(gh_flags_count(s), 9);
    CHECK(!strcmp(gh_flags_key(s, 0), "myBoolFlag"));
    CHECK(!strcmp(gh_flags_key(s, 8), "targetedFlag"));
    CHECK(gh_flags_key(s, 9) == NULL);

    gh_flag_result_t r = ev(s, "myBoolFlag", NULL, GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_STATIC);
    CHECK_INT(r.error, GH_FE_NONE);
    CHECK(var_is(&r, "on"));
    CHECK(r.value && json_is_true(r.value));
    CHECK(meta_str(&r, "version", "v2"));        /* the flag's own overrides the set's */
    CHECK(meta_str(&r, "flagSetId", "example")); /* the set's shows through */

    r = ev(s, "myStringFlag", "{}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_STATIC);
    CHECK(var_is(&r, "key1") && !strcmp(json_string_value(r.value), "val1"));
    CHECK(meta_str(&r, "version", "v1"));

    r = ev(s, "myFloatFlag", NULL, GH_FT_FLOAT);
    CHECK(var_is(&r, "one") && json_number_value(r.value) == 1.23);
    r = ev(s, "myIntFlag", NULL, GH_FT_INT);
    CHECK(var_is(&r, "one") && json_integer_value(r.value) == 1);
    r = ev(s, "myObjectFlag", NULL, GH_FT_OBJECT);
    CHECK(var_is(&r, "object1") && json_is_object(r.value));

    r = ev(s, "isColorYellow", "{\"color\":\"yellow\"}", GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "on") && json_is_true(r.value));
    r = ev(s, "isColorYellow", "{\"color\":\"red\"}", GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "off") && json_is_false(r.value));

    /* $ref to a shared evaluator; the "else" branch is null: default variant, DEFAULT */
    r = ev(s, "fibAlgo", "{\"email\":\"x@faas.com\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "binet"));
    r = ev(s, "fibAlgo", "{\"email\":\"x@example.com\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK_INT(r.error, GH_FE_NONE);
    CHECK(var_is(&r, "recursive") && !strcmp(json_string_value(r.value), "recursive"));

    r = ev(s, "targetedFlag", "{\"email\":\"a@openfeature.dev\"}", GH_FT_STRING);
    CHECK(var_is(&r, "second"));
    r = ev(s, "headerColor", "{\"email\":\"a@other.com\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK(var_is(&r, "red"));
    gh_flags_free(s);
}

/* flagd-schemas json/test/positive examples: with metadata, null and absent defaultVariant. */
static void test_schema_examples(void)
{
    gh_flagset_t *s = load("{\"flags\":{\"f\":{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},"
                           "\"defaultVariant\":null}}}");
    CHECK(s != NULL);
    gh_flags_free(s);
    s = load("{\"flags\":{\"f\":{\"state\":\"ENABLED\",\"variants\":{\"small\":10,\"big\":1000}}}}");
    CHECK(s != NULL);
    gh_flags_free(s);
    s = load("{\"flags\":{\"f\":{\"state\":\"ENABLED\",\"variants\":{\"a\":9007199254740991,\"b\":-9007199254740991},"
             "\"defaultVariant\":\"a\"}}}");
    CHECK(s != NULL); /* with-safe-integer-boundary-variants */
    gh_flags_free(s);
    /* targeting {} is no targeting (STATIC); targeting null likewise (flagd-core). */
    s = load("{\"flags\":{\"e\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\"},\"defaultVariant\":\"a\",\"targeting\":{}},"
             "\"n\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\"},\"defaultVariant\":\"a\",\"targeting\":null}},"
             "\"x-vendor\":{\"anything\":1}}");
    CHECK(s != NULL);
    if (s) {
        gh_flag_result_t r = ev(s, "e", "{}", GH_FT_STRING);
        CHECK_INT(r.reason, GH_FR_STATIC);
        r = ev(s, "n", "{}", GH_FT_STRING);
        CHECK_INT(r.reason, GH_FR_STATIC);
        CHECK(r.metadata == NULL); /* no metadata anywhere */
    }
    gh_flags_free(s);
    /* the empty document of flags */
    s = load("{\"flags\":{}}");
    CHECK(s != NULL);
    CHECK_INT(gh_flags_count(s), 0);
    gh_flag_result_t r = ev(s, "x", NULL, GH_FT_ANY);
    CHECK_INT(r.error, GH_FE_FLAG_NOT_FOUND);
    gh_flags_free(s);
}

static void test_document_errors(void)
{
    CHECK(load("") == NULL);
    CHECK(has_err("f.json: /: invalid JSON", "line"));
    CHECK(load("{\"flags\":{}") == NULL);
    CHECK(has_err("f.json: /: invalid JSON at line 1", NULL));
    CHECK(load("[]") == NULL);
    CHECK(has_err("f.json: /: a flag definition must be a JSON object", "an array"));
    CHECK(load("{}") == NULL);
    CHECK(has_err("f.json: /: \"flags\" is required", NULL));
    CHECK(load("{\"flags\":[]}") == NULL);
    CHECK(has_err("f.json: /flags: flags must be an object", NULL));
    /* duplicate keys: the second definition of a flag would silently win */
    CHECK(load("{\"flags\":{\"a\":{\"state\":\"ENABLED\",\"variants\":{\"x\":1}},"
               "\"a\":{\"state\":\"ENABLED\",\"variants\":{\"x\":2}}}}") == NULL);
    CHECK(has_err("f.json: /: invalid JSON", "duplicate"));
    CHECK(load("{\"$schema\":1,\"flags\":{}}") == NULL);
    CHECK(has_err("f.json: /$schema: $schema must be a string", NULL));
    CHECK(load("{\"flags\":{},\"metadata\":[1]}") == NULL);
    CHECK(has_err("f.json: /metadata: metadata must be an object", NULL));
    CHECK(load("{\"flags\":{},\"metadata\":{\"flagSetId\":1,\"version\":true,\"ok\":2,\"bad\":null,\"o\":{}}}") == NULL);
    CHECK(has_err("f.json: /metadata/flagSetId: must be a string", NULL));
    CHECK(has_err("f.json: /metadata/version: must be a string", NULL));
    CHECK(has_err("f.json: /metadata/bad: a metadata value must be a string, number or boolean", "null"));
    CHECK(has_err("f.json: /metadata/o: a metadata value", "an object"));
    CHECK_INT(errs.n, 4);
    CHECK(load("{\"flags\":{},\"$evaluators\":[]}") == NULL);
    CHECK(has_err("f.json: /$evaluators: $evaluators must be an object", NULL));
    CHECK(load("{\"flags\":{},\"$evaluators\":{\"e\":\"x\",\"u\":{\"nope\":[1]}}}") == NULL);
    CHECK(has_err("f.json: $evaluators.e: /$evaluators/e: an evaluator must be a JsonLogic object", NULL));
    CHECK(has_err("f.json: $evaluators.u: /$evaluators/u", "nope"));
    /* over the size limit */
    gh_flagset_t *s = NULL;
    gh_flags_errors_free(&errs);
    CHECK(gh_flags_load("big.json", "{}", (size_t)65 << 20, &s, &errs) == GH_ECONFIG && !s);
    CHECK(has_err("big.json: /: definition of", "at most"));
    /* NULL doc through the JSON entry */
    gh_flags_errors_free(&errs);
    CHECK(gh_flags_load_json("j", NULL, &s, &errs) == GH_ECONFIG && !s);
    CHECK(has_err("j: /: no definition", NULL));
}

#define F1(body) "{\"flags\":{\"k\":" body "}}"

static void test_flag_errors(void)
{
    CHECK(load(F1("3")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k: a flag must be an object", "a number"));
    CHECK(load(F1("{\"variants\":{\"a\":1}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k: \"state\" is required", NULL));
    CHECK(load(F1("{\"state\":\"enabled\",\"variants\":{\"a\":1}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/state: state must be \"ENABLED\" or \"DISABLED\"", NULL));
    CHECK(load(F1("{\"state\":true,\"variants\":{\"a\":1}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/state:", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\"}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k: \"variants\" is required", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":[true]}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants: variants must be an object", "an array"));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants: a flag needs at least one variant", NULL));
    /* mixed types (flagd-schemas negative/mixed-variant-types) */
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":true,\"b\":\"x\",\"c\":1}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants/b: all variants must have one type", "\"a\" is a boolean"));
    CHECK(has_err("f.json: flags.k: /flags/k/variants/c: all variants must have one type", "a number"));
    /* integers and reals are one type: number */
    gh_flagset_t *s = load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1,\"b\":2.5}}"));
    CHECK(s != NULL);
    gh_flags_free(s);
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":null,\"b\":[1]}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants/a: a variant value must be", "null"));
    CHECK(has_err("f.json: flags.k: /flags/k/variants/b: a variant value must be", "an array"));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"\":1}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants/: a variant name must not be empty", NULL));
    /* flagd-schemas negative/number-variant-exceeds-safe-integer-range */
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"tooBig\":9007199254740992}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants/tooBig: an integer variant must be within", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"defaultVariant\":\"b\"}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/defaultVariant: \"b\" is not one of the flag's variants", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"defaultVariant\":1}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/defaultVariant: defaultVariant must be a variant name or null", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"targeting\":\"a\"}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/targeting: targeting must be a JsonLogic object", "a string"));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"targeting\":{\"if\":[{\"nosuchop\":[1]},\"a\",null]}}")) ==
          NULL);
    /* the rule compiler's path (relative to the rule) is appended to /flags/k/targeting */
    CHECK(has_err("f.json: flags.k: /flags/k/targeting", "nosuchop"));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"targeting\":{\"$ref\":\"missing\"}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/targeting", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"metadata\":{\"x\":[1]}}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/metadata/x: a metadata value must be", "an array"));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"metadata\":\"m\"}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/metadata: metadata must be an object", NULL));
    CHECK(load(F1("{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"defaultvariant\":\"a\"}")) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/defaultvariant: unknown flag property", NULL));
    /* pointer escaping (RFC 6901) of keys with / and ~ */
    CHECK(load("{\"flags\":{\"a/b~c\":{\"state\":\"ON\",\"variants\":{\"x\":1}}}}") == NULL);
    CHECK(has_err("f.json: flags.a/b~c: /flags/a~1b~0c/state:", NULL));
    /* empty and over-long keys */
    CHECK(load("{\"flags\":{\"\":{\"state\":\"ENABLED\",\"variants\":{\"x\":1}}}}") == NULL);
    CHECK(has_err("f.json: flags.: /flags/: a flag key must not be empty", NULL));
    char big[512];
    memset(big, 'k', 300);
    big[300] = 0;
    char doc[2048];
    snprintf(doc, sizeof doc, "{\"flags\":{\"%s\":{\"state\":\"ENABLED\",\"variants\":{\"%s\":1}}}}", big, big);
    CHECK(load(doc) == NULL);
    CHECK(has_err("f.json: flags.kkkk", "a flag key must not be longer than 256 bytes"));
    CHECK(has_err("f.json: flags.kkkk", "a variant name must not be longer than 256 bytes"));
    /* too many variants */
    size_t cap = 40000, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "{\"flags\":{\"k\":{\"state\":\"ENABLED\",\"variants\":{");
    for (int i = 0; i < 1025; i++)
        o += (size_t)snprintf(t + o, cap - o, "%s\"v%d\":%d", i ? "," : "", i, i);
    snprintf(t + o, cap - o, "}}}}");
    CHECK(load(t) == NULL);
    CHECK(has_err("f.json: flags.k: /flags/k/variants: more than 1024 variants", NULL));
    free(t);
}

/* All problems are collected (across flags), capped with a summary line. */
static void test_collect_all(void)
{
    CHECK(load("{\"flags\":{\"a\":{\"state\":\"X\",\"variants\":{\"x\":1}},\"b\":{\"state\":\"ENABLED\"},"
               "\"c\":{\"state\":\"ENABLED\",\"variants\":{\"x\":1}}},\"metadata\":{\"m\":null}}") == NULL);
    CHECK_INT(errs.n, 3);
    CHECK(has_err("f.json: flags.a: /flags/a/state", NULL));
    CHECK(has_err("f.json: flags.b: /flags/b: \"variants\" is required", NULL));
    CHECK(has_err("f.json: /metadata/m", NULL));

    size_t cap = 1 << 20, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "{\"flags\":{");
    for (int i = 0; i < 500; i++)
        o += (size_t)snprintf(t + o, cap - o, "%s\"f%d\":{\"state\":\"NO\",\"variants\":{\"x\":1}}", i ? "," : "", i);
    snprintf(t + o, cap - o, "}}");
    CHECK(load(t) == NULL);
    CHECK_INT(errs.n, 100);
    CHECK(errs.n && strstr(errs.msgs[errs.n - 1], "... and 401 more problems"));
    free(t);
}

static const char *EVAL_DOC =
    "{\"metadata\":{\"flagSetId\":\"set\",\"team\":\"edge\"},"
    "\"$evaluators\":{\"isBeta\":{\"==\":[{\"var\":\"tier\"},\"beta\"]}},"
    "\"flags\":{"
    "\"off\":{\"state\":\"DISABLED\",\"variants\":{\"a\":\"A\"},\"defaultVariant\":\"a\",\"metadata\":{\"team\":\"ops\"}},"
    "\"nodef\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\"},\"defaultVariant\":null},"
    "\"absent\":{\"state\":\"ENABLED\",\"variants\":{\"a\":1}},"
    "\"byvar\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\",\"b\":\"B\",\"true\":\"T\",\"false\":\"F\",\"1\":\"one\","
    "  \"1.5\":\"x\",\"1e+21\":\"big\",\"0.000001\":\"small\",\"1e-7\":\"tiny\",\"a,b\":\"AB\",\"[object Object]\":\"O\","
    "  \"-0.5\":\"neg\"},\"defaultVariant\":\"a\",\"targeting\":{\"var\":\"v\"}},"
    "\"byvar-nodef\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\"},\"targeting\":{\"var\":\"v\"}},"
    "\"beta\":{\"state\":\"ENABLED\",\"variants\":{\"on\":true,\"off\":false},\"defaultVariant\":\"off\","
    "  \"targeting\":{\"if\":[{\"$ref\":\"isBeta\"},\"on\",null]}},"
    "\"bools\":{\"state\":\"ENABLED\",\"variants\":{\"true\":true,\"false\":false},\"defaultVariant\":\"false\","
    "  \"targeting\":{\"==\":[{\"var\":\"tier\"},\"beta\"]}},"
    "\"int\":{\"state\":\"ENABLED\",\"variants\":{\"i\":3},\"defaultVariant\":\"i\"},"
    "\"float\":{\"state\":\"ENABLED\",\"variants\":{\"f\":0.5},\"defaultVariant\":\"f\"},"
    "\"obj\":{\"state\":\"ENABLED\",\"variants\":{\"o\":{\"k\":1}},\"defaultVariant\":\"o\"},"
    "\"heavy\":{\"state\":\"ENABLED\",\"variants\":{\"a\":\"A\"},\"defaultVariant\":\"a\","
    "  \"targeting\":{\"merge\":[[1,2,3,4,5,6,7,8,9,10],[11]]}}"
    "}}";

static void test_eval_paths(void)
{
    gh_flagset_t *s = load(EVAL_DOC);
    CHECK(s != NULL);
    if (!s) {
        dump_errs();
        return;
    }
    /* not found: ERROR/FLAG_NOT_FOUND, the caller's default, the set's metadata (flagd-core) */
    gh_flag_result_t r = ev(s, "nope", NULL, GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_ERROR);
    CHECK_INT(r.error, GH_FE_FLAG_NOT_FOUND);
    CHECK(r.value == NULL && r.variant == NULL);
    CHECK(meta_str(&r, "flagSetId", "set"));
    CHECK(strstr(r.message, "nope") != NULL);
    /* a NULL set finds nothing */
    gh_flags_eval(NULL, GH_STR("x"), NULL, GH_FT_ANY, NOW, &arena, &r);
    CHECK_INT(r.error, GH_FE_FLAG_NOT_FOUND);
    /* a key view that is not NUL-terminated */
    const char *view = "intXYZ";
    gh_flags_eval(s, gh_str(view, 3), NULL, GH_FT_INT, NOW, &arena, &r);
    CHECK_INT(r.reason, GH_FR_STATIC);
    CHECK(var_is(&r, "i"));

    /* disabled: reason DISABLED, caller's default, error FLAG_NOT_FOUND (flags.h) */
    r = ev(s, "off", NULL, GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_DISABLED);
    CHECK_INT(r.error, GH_FE_FLAG_NOT_FOUND);
    CHECK(r.value == NULL && r.variant == NULL);
    CHECK(meta_str(&r, "team", "ops"));
    CHECK(meta_str(&r, "flagSetId", "set"));

    /* defaultVariant null / absent: DEFAULT, no variant, caller's default */
    r = ev(s, "nodef", NULL, GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK_INT(r.error, GH_FE_NONE);
    CHECK(r.value == NULL && r.variant == NULL);
    r = ev(s, "absent", NULL, GH_FT_BOOL); /* no value: no type check either (flagd-core) */
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK_INT(r.error, GH_FE_NONE);

    /* targeting results */
    r = ev(s, "byvar", "{\"v\":\"b\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "b") && !strcmp(json_string_value(r.value), "B"));
    r = ev(s, "byvar", "{}", GH_FT_STRING); /* null: default variant, DEFAULT */
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK(var_is(&r, "a"));
    r = ev(s, "byvar", "{\"v\":null}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    r = ev(s, "byvar-nodef", "{}", GH_FT_STRING); /* null and no default: caller's default */
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK(r.variant == NULL && r.value == NULL);
    r = ev(s, "byvar-nodef", "{\"v\":\"a\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "a"));
    /* an unknown variant is an error, as flagd-core (GENERAL) and flagd (PARSE_ERROR) */
    r = ev(s, "byvar", "{\"v\":\"zzz\"}", GH_FT_STRING);
    CHECK_INT(r.reason, GH_FR_ERROR);
    CHECK_INT(r.error, GH_FE_GENERAL);
    CHECK(r.value == NULL && r.variant == NULL);
    CHECK(strstr(r.message, "zzz") != NULL);
    r = ev(s, "byvar", "{\"v\":\"\"}", GH_FT_STRING);
    CHECK_INT(r.error, GH_FE_GENERAL);
    /* non-strings name variants as JavaScript's String() does */
    static const struct {
        const char *ctx, *variant;
    } named[] = {
        {"{\"v\":true}", "true"},        {"{\"v\":false}", "false"},        {"{\"v\":1}", "1"},
        {"{\"v\":1.0}", "1"},            {"{\"v\":1.5}", "1.5"},            {"{\"v\":-0.5}", "-0.5"},
        {"{\"v\":1e21}", "1e+21"},       {"{\"v\":0.000001}", "0.000001"}, {"{\"v\":1e-7}", "1e-7"},
        {"{\"v\":[\"a\",\"b\"]}", "a,b"}, {"{\"v\":{\"x\":1}}", "[object Object]"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(named); i++) {
        r = ev(s, "byvar", named[i].ctx, GH_FT_STRING);
        if (!var_is(&r, named[i].variant))
            fprintf(stderr, "  %s -> %s (%s)\n", named[i].ctx, r.variant ? r.variant : "(none)", r.message);
        CHECK(var_is(&r, named[i].variant));
        CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    }
    r = ev(s, "byvar", "{\"v\":2}", GH_FT_STRING);
    CHECK_INT(r.error, GH_FE_GENERAL);

    /* $ref */
    r = ev(s, "beta", "{\"tier\":\"beta\"}", GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    CHECK(var_is(&r, "on"));
    r = ev(s, "beta", "{\"tier\":\"ga\"}", GH_FT_BOOL);
    CHECK_INT(r.reason, GH_FR_DEFAULT);
    CHECK(var_is(&r, "off"));
    /* a boolean result names the variant "true"/"false" */
    r = ev(s, "bools", "{\"tier\":\"beta\"}", GH_FT_BOOL);
    CHECK(var_is(&r, "true") && json_is_true(r.value));
    CHECK_INT(r.reason, GH_FR_TARGETING_MATCH);
    r = ev(s, "bools", "{\"tier\":\"x\"}", GH_FT_BOOL);
    CHECK(var_is(&r, "false") && json_is_false(r.value));

    /* types: JSON numbers serve both integer and float requests (flagd, flagd-core) */
    r = ev(s, "int", NULL, GH_FT_FLOAT);
    CHECK_INT(r.error, GH_FE_NONE);
    r = ev(s, "float", NULL, GH_FT_INT);
    CHECK_INT(r.error, GH_FE_NONE);
    CHECK(json_number_value(r.value) == 0.5);
    static const struct {
        const char *key;
        int type, ok;
    } types[] = {
        {"int", GH_FT_BOOL, 0},     {"int", GH_FT_STRING, 0},    {"int", GH_FT_OBJECT, 0}, {"int", GH_FT_ANY, 1},
        {"obj", GH_FT_OBJECT, 1},   {"obj", GH_FT_STRING, 0},    {"obj", GH_FT_INT, 0},    {"bools", GH_FT_STRING, 0},
        {"bools", GH_FT_INT, 0},    {"bools", GH_FT_FLOAT, 0},   {"byvar", GH_FT_BOOL, 0}, {"byvar", GH_FT_FLOAT, 0},
        {"byvar", GH_FT_STRING, 1}, {"bools", GH_FT_BOOL, 1},    {"obj", GH_FT_ANY, 1},    {"int", 99, 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(types); i++) {
        r = ev(s, types[i].key, "{\"tier\":\"x\"}", types[i].type);
        CHECK_INT(r.error, types[i].ok ? GH_FE_NONE : GH_FE_TYPE_MISMATCH);
        CHECK_INT(r.reason == GH_FR_ERROR, !types[i].ok);
        if (!types[i].ok)
            CHECK(r.value == NULL && r.variant == NULL && r.message[0]);
    }

    /* a context that is not an object */
    json_t *arr = json_array();
    gh_flags_eval(s, GH_STR("beta"), arr, GH_FT_BOOL, NOW, &arena, &r);
    CHECK_INT(r.reason, GH_FR_ERROR);
    CHECK_INT(r.error, GH_FE_INVALID_CONTEXT);
    json_decref(arr);

    /* a rule that cannot be evaluated (the arena is too small): ERROR/GENERAL */
    char small[8];
    gh_jl_arena_t tiny = {small, sizeof small, 0};
    gh_flags_eval(s, GH_STR("heavy"), NULL, GH_FT_STRING, NOW, &tiny, &r);
    CHECK_INT(r.reason, GH_FR_ERROR);
    CHECK_INT(r.error, GH_FE_GENERAL);
    CHECK(r.value == NULL);
    /* the arena is reset by each evaluation */
    arena.used = arena.cap;
    r = ev(s, "heavy", NULL, GH_FT_STRING);
    CHECK_INT(r.error, GH_FE_GENERAL); /* [1..10] is no variant */
    CHECK(strstr(r.message, "not found") != NULL);
    gh_flags_free(s);
}

static void test_metadata(void)
{
    gh_flagset_t *s = load("{\"metadata\":{\"flagSetId\":\"s\",\"version\":\"1\",\"n\":2,\"b\":false},"
                           "\"flags\":{"
                           "\"plain\":{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"defaultVariant\":\"a\"},"
                           "\"own\":{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"defaultVariant\":\"a\","
                           "  \"metadata\":{\"version\":\"2\",\"n\":3.5,\"extra\":true}}}}");
    CHECK(s != NULL);
    if (!s)
        return;
    gh_flag_result_t r = ev(s, "plain", NULL, GH_FT_ANY);
    CHECK(meta_str(&r, "version", "1"));
    CHECK_INT(json_object_size(r.metadata), 4);
    r = ev(s, "own", NULL, GH_FT_ANY);
    CHECK(meta_str(&r, "version", "2"));
    CHECK(meta_str(&r, "flagSetId", "s"));
    CHECK(json_number_value(json_object_get(r.metadata, "n")) == 3.5);
    CHECK(json_is_true(json_object_get(r.metadata, "extra")));
    CHECK(json_is_false(json_object_get(r.metadata, "b")));
    CHECK_INT(json_object_size(r.metadata), 5);
    r = ev(s, "own", NULL, GH_FT_STRING); /* errors carry metadata too (flagd-core) */
    CHECK_INT(r.error, GH_FE_TYPE_MISMATCH);
    CHECK(meta_str(&r, "version", "2"));
    gh_flags_free(s);

    /* only flag metadata */
    s = load("{\"flags\":{\"f\":{\"state\":\"ENABLED\",\"variants\":{\"a\":1},\"metadata\":{\"k\":\"v\"}}}}");
    CHECK(s != NULL);
    r = ev(s, "f", NULL, GH_FT_ANY);
    CHECK(meta_str(&r, "k", "v"));
    r = ev(s, "nope", NULL, GH_FT_ANY);
    CHECK(r.metadata == NULL);
    gh_flags_free(s);
}

/* gh_flags_load_json copies: the caller's document may change or go away. */
static void test_load_json(void)
{
    json_t *doc = json_loads(FLAGD_SAMPLE, 0, NULL);
    gh_flagset_t *s = NULL;
    gh_flags_errors_free(&errs);
    CHECK(gh_flags_load_json("y.yaml", doc, &s, &errs) == 0 && s);
    json_object_clear(doc);
    json_decref(doc);
    gh_flag_result_t r = ev(s, "myStringFlag", NULL, GH_FT_STRING);
    CHECK(var_is(&r, "key1") && !strcmp(json_string_value(r.value), "val1"));
    gh_flags_free(s);

    doc = json_pack("{s:{s:{s:s}}}", "flags", "k", "state", "ENABLED");
    gh_flags_errors_free(&errs);
    CHECK(gh_flags_load_json("y.yaml", doc, &s, &errs) == GH_ECONFIG && !s);
    CHECK(has_err("y.yaml: flags.k: /flags/k: \"variants\" is required", NULL));
    json_decref(doc);
}

/* Ten thousand flags: load time and memory, printed. */
static void test_scale(void)
{
    const int n = 10000;
    size_t cap = (size_t)n * 400, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "{\"metadata\":{\"flagSetId\":\"scale\"},\"flags\":{");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(t + o, cap - o,
                              "%s\"flag-%05d\":{\"state\":\"%s\",\"variants\":{\"on\":true,\"off\":false},"
                              "\"defaultVariant\":\"off\",\"targeting\":{\"if\":[{\"==\":[{\"var\":\"user\"},\"u%d\"]},"
                              "\"on\",null]}%s}",
                              i ? "," : "", i, i % 10 == 9 ? "DISABLED" : "ENABLED", i,
                              i % 3 == 0 ? ",\"metadata\":{\"owner\":\"team\"}" : "");
    snprintf(t + o, cap - o, "}}");
    struct mallinfo2 m0 = mallinfo2();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    gh_flagset_t *s = load(t);
    clock_gettime(CLOCK_MONOTONIC, &b);
    struct mallinfo2 m1 = mallinfo2();
    CHECK(s != NULL);
    if (!s) {
        dump_errs();
        free(t);
        return;
    }
    CHECK_INT(gh_flags_count(s), n);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("flags: %d flags (%zu bytes of JSON) loaded in %.1f ms, %.1f MiB heap (%.0f bytes/flag)\n", n, o, ms,
           (double)(m1.uordblks - m0.uordblks) / (1 << 20), (double)(m1.uordblks - m0.uordblks) / n);
    CHECK(ms < 5000);
    char key[32], ctx[64];
    int hits = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "flag-%05d", i);
        snprintf(ctx, sizeof ctx, "{\"user\":\"u%d\"}", i);
        gh_flag_result_t r = ev(s, key, ctx, GH_FT_BOOL);
        if (i % 10 == 9)
            hits += r.reason == GH_FR_DISABLED;
        else
            hits += r.reason == GH_FR_TARGETING_MATCH && var_is(&r, "on");
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    CHECK_INT(hits, n);
    ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("flags: %d evaluations (context parsing included) in %.1f ms\n", n, ms);
    gh_flags_free(s);
    free(t);
}

/* 100,001 flags are over the limit. */
static void test_flag_limit(void)
{
    const int n = 100001;
    size_t cap = (size_t)n * 64, o = 0;
    char *t = malloc(cap);
    o += (size_t)snprintf(t + o, cap - o, "{\"flags\":{");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(t + o, cap - o, "%s\"f%d\":{\"state\":\"ENABLED\",\"variants\":{\"a\":1}}", i ? "," : "", i);
    snprintf(t + o, cap - o, "}}");
    CHECK(load(t) == NULL);
    CHECK(has_err("f.json: /flags: 100001 flags: at most 100000", NULL));
    free(t);
}

static void test_names(void)
{
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_STATIC), "STATIC"));
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_TARGETING_MATCH), "TARGETING_MATCH"));
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_SPLIT), "SPLIT"));
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_DISABLED), "DISABLED"));
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_DEFAULT), "DEFAULT"));
    CHECK(!strcmp(gh_flag_reason_name(GH_FR_ERROR), "ERROR"));
    CHECK(!strcmp(gh_flag_reason_name(42), "UNKNOWN"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_NONE), ""));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_FLAG_NOT_FOUND), "FLAG_NOT_FOUND"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_PARSE_ERROR), "PARSE_ERROR"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_TYPE_MISMATCH), "TYPE_MISMATCH"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_TARGETING_KEY_MISSING), "TARGETING_KEY_MISSING"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_INVALID_CONTEXT), "INVALID_CONTEXT"));
    CHECK(!strcmp(gh_flag_error_name(GH_FE_GENERAL), "GENERAL"));
    CHECK(gh_flags_count(NULL) == 0 && gh_flags_key(NULL, 0) == NULL);
    gh_flags_free(NULL);
    gh_flags_errors_free(NULL);
}

int main(void)
{
    RUN(test_flagd_sample);
    RUN(test_schema_examples);
    RUN(test_document_errors);
    RUN(test_flag_errors);
    RUN(test_collect_all);
    RUN(test_eval_paths);
    RUN(test_metadata);
    RUN(test_load_json);
    RUN(test_scale);
    RUN(test_flag_limit);
    RUN(test_names);
    gh_flags_errors_free(&errs);
    return t_done("test_flags");
}
