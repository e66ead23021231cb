/* stats_driver.c: src/experiments/stats.c on the command line, for tests/integration/test_stats_scipy.py,
 * which compares every function with scipy/statsmodels. One JSON command per line on stdin, one JSON
 * result per line on stdout (numbers with 17 significant digits; NaN as null, infinities as the
 * strings "inf" and "-inf"). Commands ({"op": ..., arguments}):
 *   norm_cdf {x}  norm_ppf {p}  t_cdf {x, df}  t_ppf {p, df}  chi2_sf {x, k}      -> {"v"}
 *   welch {c: [n, sum, sumsq], t: [...], alpha}                                  -> effect
 *   prop {nc, xc, nt, xt, alpha}                                                 -> effect
 *   ratio {c: [n, sa, sb, saa, sbb, sab], t: [...], alpha}                       -> effect
 *   cuped {c: [n, sy, syy, sx, sxx, sxy], t: [...], alpha}                       -> effect + theta
 *   seq {diff, se, n, n_star, alpha}                                             -> {rc, lo, hi, p}
 *   srm {observed: [...], weights: [...]}                                        -> {p, chi2}
 *   holm / bonferroni {p: [...]}                                                 -> {adj: [...]}
 *   ss_mean {sd, mde, alpha, power}  ss_prop {p0, mde, alpha, power}             -> {"v"}
 * An effect is {rc, control, treatment, diff, diff_se, diff_lo, diff_hi, rel, rel_se, rel_lo,
 * rel_hi, stat, df, p}. Built by `make test` into build/tests-bin/stats_driver. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/stats.h"

static json_t *num(double x)
{
    if (isnan(x))
        return json_null();
    if (isinf(x))
        return json_string(x > 0 ? "inf" : "-inf");
    return json_real(x);
}

static double arg(json_t *cmd, const char *key)
{
    json_t *v = json_object_get(cmd, key);
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return !strcmp(s, "inf") ? INFINITY : !strcmp(s, "-inf") ? -INFINITY : NAN;
    }
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}

/* up to max numbers of the array cmd[key] into out; returns how many */
static int arr(json_t *cmd, const char *key, double *out, int max)
{
    json_t *a = json_object_get(cmd, key);
    int n = 0;
    for (size_t i = 0; i < json_array_size(a) && n < max; i++)
        out[n++] = json_number_value(json_array_get(a, i));
    return n;
}

static json_t *effect(int rc, const gh_effect_t *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "rc", json_integer(rc));
    json_object_set_new(o, "control", num(e->control));
    json_object_set_new(o, "treatment", num(e->treatment));
    json_object_set_new(o, "diff", num(e->diff));
    json_object_set_new(o, "diff_se", num(e->diff_se));
    json_object_set_new(o, "diff_lo", num(e->diff_lo));
    json_object_set_new(o, "diff_hi", num(e->diff_hi));
    json_object_set_new(o, "rel", num(e->rel));
    json_object_set_new(o, "rel_se", num(e->rel_se));
    json_object_set_new(o, "rel_lo", num(e->rel_lo));
    json_object_set_new(o, "rel_hi", num(e->rel_hi));
    json_object_set_new(o, "stat", num(e->stat));
    json_object_set_new(o, "df", num(e->df));
    json_object_set_new(o, "p", num(e->p));
    return o;
}

static json_t *value(double v)
{
    json_t *o = json_object();
    json_object_set_new(o, "v", num(v));
    return o;
}

#define MAXV 4096

static json_t *run(json_t *cmd)
{
    const char *op = json_string_value(json_object_get(cmd, "op"));
    double alpha = arg(cmd, "alpha");
    double c[6] = {0}, t[6] = {0};
    gh_effect_t e;
    if (!op)
        return NULL;
    if (!strcmp(op, "norm_cdf"))
        return value(gh_norm_cdf(arg(cmd, "x")));
    if (!strcmp(op, "norm_ppf"))
        return value(gh_norm_ppf(arg(cmd, "p")));
    if (!strcmp(op, "t_cdf"))
        return value(gh_t_cdf(arg(cmd, "x"), arg(cmd, "df")));
    if (!strcmp(op, "t_ppf"))
        return value(gh_t_ppf(arg(cmd, "p"), arg(cmd, "df")));
    if (!strcmp(op, "chi2_sf"))
        return value(gh_chi2_sf(arg(cmd, "x"), arg(cmd, "k")));
    if (!strcmp(op, "ss_mean"))
        return value(gh_stats_sample_size_mean(arg(cmd, "sd"), arg(cmd, "mde"), alpha, arg(cmd, "power")));
    if (!strcmp(op, "ss_prop"))
        return value(gh_stats_sample_size_prop(arg(cmd, "p0"), arg(cmd, "mde"), alpha, arg(cmd, "power")));
    if (!strcmp(op, "welch")) {
        arr(cmd, "c", c, 3);
        arr(cmd, "t", t, 3);
        gh_moments_t mc = {c[0], c[1], c[2]}, mt = {t[0], t[1], t[2]};
        int rc = gh_stats_welch(&mc, &mt, alpha, &e);
        return effect(rc, &e);
    }
    if (!strcmp(op, "prop")) {
        int rc = gh_stats_prop(arg(cmd, "nc"), arg(cmd, "xc"), arg(cmd, "nt"), arg(cmd, "xt"), alpha, &e);
        return effect(rc, &e);
    }
    if (!strcmp(op, "ratio")) {
        arr(cmd, "c", c, 6);
        arr(cmd, "t", t, 6);
        gh_ratio_moments_t rc_ = {c[0], c[1], c[2], c[3], c[4], c[5]}, rt = {t[0], t[1], t[2], t[3], t[4], t[5]};
        int rc = gh_stats_ratio(&rc_, &rt, alpha, &e);
        return effect(rc, &e);
    }
    if (!strcmp(op, "cuped")) {
        arr(cmd, "c", c, 6);
        arr(cmd, "t", t, 6);
        gh_cuped_moments_t cc = {c[0], c[1], c[2], c[3], c[4], c[5]}, ct = {t[0], t[1], t[2], t[3], t[4], t[5]};
        double theta;
        int rc = gh_stats_cuped(&cc, &ct, alpha, &e, &theta);
        json_t *o = effect(rc, &e);
        json_object_set_new(o, "theta", num(theta));
        return o;
    }
    if (!strcmp(op, "seq")) {
        double lo, hi, p;
        int rc = gh_stats_seq_ci(arg(cmd, "diff"), arg(cmd, "se"), arg(cmd, "n"), arg(cmd, "n_star"), alpha, &lo,
                                 &hi, &p);
        json_t *o = json_object();
        json_object_set_new(o, "rc", json_integer(rc));
        json_object_set_new(o, "lo", num(lo));
        json_object_set_new(o, "hi", num(hi));
        json_object_set_new(o, "p", num(p));
        return o;
    }
    if (!strcmp(op, "srm")) {
        static double obs[MAXV], w[MAXV];
        int k = arr(cmd, "observed", obs, MAXV);
        arr(cmd, "weights", w, MAXV);
        double chi2;
        double p = gh_stats_srm(obs, w, k, &chi2);
        json_t *o = json_object();
        json_object_set_new(o, "p", num(p));
        json_object_set_new(o, "chi2", num(chi2));
        return o;
    }
    if (!strcmp(op, "holm") || !strcmp(op, "bonferroni")) {
        static double p[MAXV], adj[MAXV];
        int n = arr(cmd, "p", p, MAXV);
        if (op[0] == 'h')
            gh_stats_holm(p, n, adj);
        else
            gh_stats_bonferroni(p, n, adj);
        json_t *a = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(a, num(adj[i]));
        json_t *o = json_object();
        json_object_set_new(o, "adj", a);
        return o;
    }
    return NULL;
}

int main(void)
{
    static char line[1 << 20];
    while (fgets(line, sizeof line, stdin)) {
        json_error_t err;
        json_t *cmd = json_loads(line, 0, &err);
        json_t *res = cmd ? run(cmd) : NULL;
        if (!res) {
            res = json_object();
            json_object_set_new(res, "error", json_string(cmd ? "unknown op" : err.text));
        }
        char *s = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(17));
        puts(s);
        free(s);
        json_decref(res);
        json_decref(cmd);
    }
    return 0;
}
