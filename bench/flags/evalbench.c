/* bench/flags/evalbench.c: gatehouse's in-process flag evaluation (gh_flags_load + gh_flags_eval from
 * build/libgatehouse.a), the C side of bench/flags.sh; bench/flags/flagdcore.js is its node twin and
 * prints the same lines.
 *
 *   evalbench eval FLAGS.json CONTEXTS.json SPEC REPS MIN_MS
 *       SPEC: "key:type,key:type,..." (type bool|string|int|float|object|any). Loads FLAGS once; the
 *       contexts (a JSON array of objects) are parsed once into jansson objects beforehand. Then REPS
 *       repetitions; in each, every flag of SPEC in turn is evaluated over the contexts, pass after
 *       pass, until MIN_MS have elapsed (the clock is read once per pass). One line per (rep, flag):
 *         eval <key> <rep> <ns_per_eval> <evaluations> <errors> <cpu share>
 *       ns_per_eval is wall time / evaluations; cpu share = the process's CPU time / wall time over the
 *       repetition (below 1: it was not running all the time, e.g. preempted or the VM throttled). Each evaluation passes GH_JL_NOW (gatehouse reads the clock only for a rule that asks for $flagd.timestamp; flagd-core takes Date.now() in every evaluation)
 *       and gh_flags_eval with the flag key (hash lookup included) and a reused arena. Last line:
 *         cpu <user+sys seconds of the measured loops> <their wall seconds>
 *   evalbench variants FLAGS.json CONTEXTS.json SPEC
 *       one line per (flag, context): <key> <index> <variant|-> <reason> <value as compact JSON>
 *   evalbench load FILE REPS
 *       gh_flags_load of FILE (already read into memory) REPS times; prints
 *         load <ms median> <ms min> <ms max> <heap bytes held by one loaded set> <RSS kB delta> <flags>
 *       heap bytes: mallinfo2 (uordblks + hblkhd) with the set loaded minus before loading it. */
#include <jansson.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "flags/flags.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "%s: read failed\n", path); exit(1); }
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static gh_flagset_t *load(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    gh_flagset_t *s = NULL;
    gh_flags_errors_t errs = {0};
    if (gh_flags_load(path, text, len, &s, &errs) != 0) {
        for (uint32_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "%s: gh_flags_load failed\n", path);
        exit(1);
    }
    gh_flags_errors_free(&errs);
    free(text);
    return s;
}

typedef struct {
    char key[128];
    int type;
} spec_t;

static int parse_spec(const char *arg, spec_t *out, int max)
{
    int n = 0;
    char *dup = strdup(arg), *save = NULL;
    for (char *tok = strtok_r(dup, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        const char *t = colon ? colon + 1 : "any";
        if (colon) *colon = 0;
        snprintf(out[n].key, sizeof out[n].key, "%s", tok);
        out[n].type = !strcmp(t, "bool") ? GH_FT_BOOL : !strcmp(t, "string") ? GH_FT_STRING : !strcmp(t, "int") ? GH_FT_INT
                    : !strcmp(t, "float") ? GH_FT_FLOAT : !strcmp(t, "object") ? GH_FT_OBJECT : GH_FT_ANY;
        n++;
    }
    free(dup);
    return n;
}

static json_t **load_contexts(const char *path, size_t *n)
{
    json_error_t je;
    json_t *arr = json_load_file(path, 0, &je);
    if (!arr || !json_is_array(arr)) { fprintf(stderr, "%s: %s\n", path, arr ? "not an array" : je.text); exit(1); }
    *n = json_array_size(arr);
    json_t **ctx = malloc(*n * sizeof *ctx);
    for (size_t i = 0; i < *n; i++) ctx[i] = json_incref(json_array_get(arr, i));
    json_decref(arr);
    return ctx;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * 4;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

volatile uintptr_t sink;

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "load")) {
        size_t len;
        char *text = read_file(argv[2], &len);
        int reps = atoi(argv[3]);
        if (reps < 1) reps = 1;
        double *ms = calloc((size_t)reps, sizeof *ms);
        size_t heap = 0;
        long rss = 0;
        uint32_t count = 0;
        for (int r = 0; r < reps; r++) {
            malloc_trim(0);
            size_t h0 = heap_bytes();
            long r0 = rss_kb();
            gh_flagset_t *s = NULL;
            gh_flags_errors_t errs = {0};
            double t0 = now_s();
            int rc = gh_flags_load(argv[2], text, len, &s, &errs);
            ms[r] = (now_s() - t0) * 1e3;
            if (rc != 0) {
                for (uint32_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.msgs[i]);
                fprintf(stderr, "%s: gh_flags_load failed\n", argv[2]);
                return 1;
            }
            gh_flags_errors_free(&errs);
            if (r == 0) { heap = heap_bytes() - h0; rss = rss_kb() - r0; }
            count = gh_flags_count(s);
            gh_flags_free(s);
        }
        double lo = ms[0], hi = ms[0];
        for (int r = 0; r < reps; r++) { if (ms[r] < lo) lo = ms[r]; if (ms[r] > hi) hi = ms[r]; }
        qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
        double med = reps % 2 ? ms[reps / 2] : (ms[reps / 2 - 1] + ms[reps / 2]) / 2;
        printf("load\t%.2f\t%.2f\t%.2f\t%zu\t%ld\t%u\n", med, lo, hi, heap, rss, count);
        return 0;
    }
    if (argc < 5 || (strcmp(argv[1], "eval") && strcmp(argv[1], "variants"))) {
        fprintf(stderr, "usage: evalbench eval FLAGS CONTEXTS SPEC REPS MIN_MS | variants FLAGS CONTEXTS SPEC | load FILE REPS\n");
        return 2;
    }
    gh_flagset_t *set = load(argv[2]);
    size_t nctx;
    json_t **ctx = load_contexts(argv[3], &nctx);
    spec_t spec[16];
    int nspec = parse_spec(argv[4], spec, 16);
    static char arena_buf[1 << 16];
    gh_jl_arena_t arena = {arena_buf, sizeof arena_buf, 0};
    gh_flag_result_t res;

    if (!strcmp(argv[1], "variants")) {
        for (int f = 0; f < nspec; f++) {
            gh_str_t key = gh_str(spec[f].key, strlen(spec[f].key));
            for (size_t i = 0; i < nctx; i++) {
                gh_flags_eval(set, key, ctx[i], spec[f].type, GH_JL_NOW, &arena, &res);
                char *v = res.value ? json_dumps(res.value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                printf("%s\t%zu\t%s\t%s\t%s\n", spec[f].key, i, res.variant ? res.variant : "-", gh_flag_reason_name(res.reason),
                       v ? v : "null");
                free(v);
            }
        }
        return 0;
    }

    int reps = argc > 5 ? atoi(argv[5]) : 5;
    double min_s = (argc > 6 ? atof(argv[6]) : 300) / 1e3;
    struct rusage ru0, ru;
    getrusage(RUSAGE_SELF, &ru0);
    double w0 = now_s();
    for (int r = 1; r <= reps; r++) {
        for (int f = 0; f < nspec; f++) {
            gh_str_t key = gh_str(spec[f].key, strlen(spec[f].key));
            int type = spec[f].type;
            uint64_t evals = 0, errors = 0;
            uintptr_t acc = 0;
            double c0 = cpu_s(), t0 = now_s(), t1;
            do {
                for (size_t i = 0; i < nctx; i++) {
                    gh_flags_eval(set, key, ctx[i], type, GH_JL_NOW, &arena, &res);
                    acc += (uintptr_t)res.variant;
                    errors += res.reason == GH_FR_ERROR;
                }
                evals += nctx;
                t1 = now_s();
            } while (t1 - t0 < min_s);
            sink += acc;
            double share = (cpu_s() - c0) / (t1 - t0);
            printf("eval\t%s\t%d\t%.2f\t%llu\t%llu\t%.3f\n", spec[f].key, r, (t1 - t0) * 1e9 / (double)evals, (unsigned long long)evals,
                   (unsigned long long)errors, share);
            fflush(stdout);
        }
    }
    getrusage(RUSAGE_SELF, &ru);
#define TV(t) ((t).tv_sec + (t).tv_usec / 1e6)
    printf("cpu\t%.3f\t%.3f\n", TV(ru.ru_utime) + TV(ru.ru_stime) - TV(ru0.ru_utime) - TV(ru0.ru_stime), now_s() - w0);
    return 0;
}
