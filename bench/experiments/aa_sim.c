/* aa_sim.c: A/A simulation of src/experiments/stats.c under daily peeking (the check that
 * sequential testing keeps its false-positive rate while the naive fixed-horizon test does not).
 *
 * Each simulated experiment has two arms drawn from the same distributions: a conversion metric
 * (Bernoulli p) and a mean metric (revenue per unit, lognormal(mu 0, sigma 1)). Every day PER_DAY
 * new units arrive in each arm; after each day the experiment is "looked at": the fixed-horizon
 * tests (gh_stats_prop for conversion, gh_stats_welch for revenue) reject when p < alpha, and the
 * asymptotic confidence sequence (gh_stats_seq_ci on the same diff and standard error, n = units in
 * both arms, n_star) rejects when it excludes 0. An experiment is a false positive under peeking when
 * any look rejects, and at the final look when the last one does. Seeded (xoshiro256**, one stream
 * per experiment), so a run is reproducible and independent of the machine.
 *
 *   aa_sim [--experiments 10000] [--days 30] [--per-day 200] [--p 0.1] [--alpha 0.05]
 *          [--n-star 5000] [--seed 1] [--json]
 *
 * Prints a markdown table (rates with Wilson 95% intervals), or with --json the counts. Built by
 * bench/experiments/aa_sim.sh against build/libgatehouse.a; the pytest compiles it with stats.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/stats.h"

/* ---- xoshiro256** (Blackman & Vigna), seeded by splitmix64 */
typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

static double rng_unif(rng_t *r) /* [0, 1) */
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* standard normal, Marsaglia's polar method (one of the pair is kept) */
static double rng_normal(rng_t *r, int *has, double *spare)
{
    if (*has) {
        *has = 0;
        return *spare;
    }
    double u, v, s;
    do {
        u = 2 * rng_unif(r) - 1;
        v = 2 * rng_unif(r) - 1;
        s = u * u + v * v;
    } while (s >= 1 || s == 0);
    double f = sqrt(-2 * log(s) / s);
    *spare = v * f;
    *has = 1;
    return u * f;
}

enum { CONV, REV, NMETRIC };
static const char *metric_name[NMETRIC] = {"conversion", "revenue"};

typedef struct {
    long naive_any, naive_final, seq_any, seq_final, looks_undefined;
} counts_t;

static void wilson(long k, long n, double *lo, double *hi)
{
    double z = 1.959963984540054, p = (double)k / n, d = 1 + z * z / n;
    double c = (p + z * z / (2.0 * n)) / d, h = z * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / d;
    *lo = c - h;
    *hi = c + h;
}

int main(int argc, char **argv)
{
    long n_exp = 10000, days = 30, per_day = 200;
    double p = 0.1, alpha = 0.05, n_star = 5000;
    uint64_t seed = 1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "aa_sim: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--experiments"))
            n_exp = atol(v);
        else if (!strcmp(a, "--days"))
            days = atol(v);
        else if (!strcmp(a, "--per-day"))
            per_day = atol(v);
        else if (!strcmp(a, "--p"))
            p = atof(v);
        else if (!strcmp(a, "--alpha"))
            alpha = atof(v);
        else if (!strcmp(a, "--n-star"))
            n_star = atof(v);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "aa_sim: unknown option %s\n", a);
            return 2;
        }
    }
    if (n_exp < 1 || days < 1 || per_day < 2 || !(alpha > 0 && alpha < 1)) {
        fprintf(stderr, "aa_sim: bad parameters\n");
        return 2;
    }
    counts_t cnt[NMETRIC] = {{0}};
    for (long e = 0; e < n_exp; e++) {
        rng_t r;
        rng_seed(&r, seed * 0x100000001b3ULL + (uint64_t)e);
        int has = 0;
        double spare = 0;
        double conv[2] = {0, 0};
        gh_moments_t rev[2] = {{0}};
        int rej_naive[NMETRIC] = {0}, rej_seq[NMETRIC] = {0};
        for (long d = 1; d <= days; d++) {
            for (int arm = 0; arm < 2; arm++)
                for (long u = 0; u < per_day; u++) {
                    conv[arm] += rng_unif(&r) < p;
                    double y = exp(rng_normal(&r, &has, &spare));
                    rev[arm].n += 1;
                    rev[arm].sum += y;
                    rev[arm].sumsq += y * y;
                }
            double n_arm = (double)(d * per_day);
            gh_effect_t ef[NMETRIC];
            int rc[NMETRIC];
            rc[CONV] = gh_stats_prop(n_arm, conv[0], n_arm, conv[1], alpha, &ef[CONV]);
            rc[REV] = gh_stats_welch(&rev[0], &rev[1], alpha, &ef[REV]);
            for (int m = 0; m < NMETRIC; m++) {
                int naive = 0, seq = 0;
                if (rc[m] == 0) {
                    double lo, hi;
                    naive = ef[m].p < alpha;
                    if (gh_stats_seq_ci(ef[m].diff, ef[m].diff_se, 2 * n_arm, n_star, alpha, &lo, &hi, NULL) == 0)
                        seq = lo > 0 || hi < 0;
                } else {
                    cnt[m].looks_undefined++;
                }
                rej_naive[m] |= naive;
                rej_seq[m] |= seq;
                if (d == days) {
                    cnt[m].naive_final += naive;
                    cnt[m].seq_final += seq;
                }
            }
        }
        for (int m = 0; m < NMETRIC; m++) {
            cnt[m].naive_any += rej_naive[m];
            cnt[m].seq_any += rej_seq[m];
        }
    }
    if (json) {
        printf("{\"experiments\": %ld, \"days\": %ld, \"per_day\": %ld, \"p\": %g, \"alpha\": %g, \"n_star\": %g, "
               "\"seed\": %llu, \"metrics\": {",
               n_exp, days, per_day, p, alpha, n_star, (unsigned long long)seed);
        for (int m = 0; m < NMETRIC; m++)
            printf("%s\"%s\": {\"naive_any\": %ld, \"naive_final\": %ld, \"seq_any\": %ld, \"seq_final\": %ld, "
                   "\"looks_undefined\": %ld}",
                   m ? ", " : "", metric_name[m], cnt[m].naive_any, cnt[m].naive_final, cnt[m].seq_any,
                   cnt[m].seq_final, cnt[m].looks_undefined);
        printf("}}\n");
        return 0;
    }
    printf("A/A: %ld experiments x %ld daily looks, %ld units/day/arm, alpha %g, conversion p %g, revenue "
           "lognormal(0, 1), confidence sequence n_star %g, seed %llu\n\n",
           n_exp, days, per_day, alpha, p, n_star, (unsigned long long)seed);
    printf("| metric | test | false positives, any daily look | false positives, final look only |\n");
    printf("|---|---|---|---|\n");
    for (int m = 0; m < NMETRIC; m++) {
        long v[2][2] = {{cnt[m].naive_any, cnt[m].naive_final}, {cnt[m].seq_any, cnt[m].seq_final}};
        for (int t = 0; t < 2; t++) {
            printf("| %s | %s |", metric_name[m], t ? "sequential (confidence sequence)" : "naive fixed-horizon");
            for (int k = 0; k < 2; k++) {
                double lo, hi;
                wilson(v[t][k], n_exp, &lo, &hi);
                printf(" %.2f%% (%ld/%ld; 95%% CI %.2f-%.2f%%) |", 100.0 * v[t][k] / n_exp, v[t][k], n_exp,
                       100 * lo, 100 * hi);
            }
            printf("\n");
        }
    }
    return 0;
}
