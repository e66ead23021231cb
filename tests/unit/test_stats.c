/* test_stats.c: unit tests of the experiment statistics (src/experiments/stats.c). Reference values
 * are scipy 1.10 / statsmodels 0.13 results on the same inputs, pasted with 16-17 digits, or exact
 * values from mpmath (50 digits) where scipy itself is approximate (t.ppf: CDFLIB stops at ~1e-9).
 * The delta method for ratio metrics is also checked by simulation: the coverage of its interval.
 * The full comparison on generated data is tests/integration/test_stats_scipy.py. */
#include <math.h>
#include <stdint.h>

#include "experiments/stats.h"
#include "t.h"

static int rel_close(double got, double want, double tol)
{
    double err = fabs(got - want) / fmax(fabs(want), 1e-300);
    if (err <= tol)
        return 1;
    fprintf(stderr, "  got %.17g, want %.17g (relative error %.3g > %.1g)\n", got, want, err, tol);
    return 0;
}
#define CLOSE(got, want, tol) CHECK(rel_close((got), (want), (tol)))

static void test_normal(void)
{
    CLOSE(gh_norm_cdf(1.96), 0.9750021048517795, 1e-15);
    CLOSE(gh_norm_cdf(-5), 2.866515718791933e-07, 1e-14);
    CLOSE(gh_norm_cdf(0), 0.5, 0);
    CLOSE(gh_norm_ppf(0.975), 1.959963984540054, 1e-15);
    CLOSE(gh_norm_ppf(0.7), 0.5244005127080407, 1e-15);
    CLOSE(gh_norm_ppf(1e-10), -6.361340902404056, 1e-15);
    CHECK(gh_norm_ppf(0.5) == 0);
    CHECK(gh_norm_ppf(0) == -INFINITY && gh_norm_ppf(1) == INFINITY && isnan(gh_norm_ppf(1.5)));
    /* round trip; the cdf's relative condition number at x is about x^2 */
    for (double p = 1e-300; p < 1; p = p < 1e-3 ? p * 1e7 : p + 0.0371) {
        double x = gh_norm_ppf(p);
        CLOSE(gh_norm_cdf(x), p, 2e-16 * (4 + x * x));
    }
}

static void test_student_t(void)
{
    CLOSE(gh_t_cdf(2.0, 3), 0.93033701572057841158, 1e-15);      /* mpmath; scipy ...785 */
    CLOSE(gh_t_cdf(-1.5, 7.3), 0.087781546401543062716, 1e-14);  /* fractional df */
    CLOSE(1 - gh_t_cdf(4.2, 2.5), 0.017482154362840669706, 1e-13);
    CHECK(gh_t_cdf(0, 4) == 0.5);
    /* quantiles: exact (mpmath) */
    CLOSE(gh_t_ppf(0.975, 10), 2.2281388519862742245, 1e-15);
    CLOSE(gh_t_ppf(0.975, 1), 12.706204736174693314, 1e-15);
    CLOSE(gh_t_ppf(0.95, 29.6), 1.6979917321388619496, 1e-15);
    CLOSE(gh_t_ppf(0.025, 15.238775914695115), -2.1285443955402548683, 1e-15);
    for (double df = 0.5; df < 1e7; df *= 3.7)
        for (double p = 1e-9; p < 1; p = p < 1e-2 ? p * 100 : p + 0.0913)
            CLOSE(gh_t_cdf(gh_t_ppf(p, df), df), p, 1e-12);
    /* df huge: t is the normal */
    CLOSE(gh_t_cdf(1.96, 1e300), gh_norm_cdf(1.96), 1e-15);
    /* ... but not yet at 1e9: off by phi(t) (t^3 + t) / (4 df), 1.3e-8 relative here (mpmath) */
    CLOSE(gh_t_cdf(-2.5, 1e9), 0.0062096654052012469723, 1e-14);
    CLOSE(gh_t_ppf(0.975, 1e12), 1.9599639845424261268, 1e-15);
    CHECK(isnan(gh_t_cdf(1, 0)) && isnan(gh_t_cdf(1, -2)));
    CHECK(gh_t_cdf(INFINITY, 3) == 1 && gh_t_cdf(-INFINITY, 3) == 0);
}

static void test_chi2(void)
{
    CLOSE(gh_chi2_sf(3.841458820694124, 1), 0.050000000000000057435, 1e-14); /* mpmath */
    CLOSE(gh_chi2_sf(10, 4), 0.04042768199451279, 1e-14);
    CLOSE(gh_chi2_sf(7, 2), 0.0301973834223185, 1e-14);
    CLOSE(gh_chi2_sf(25.3, 11), 0.008237813149777468, 1e-13);
    CHECK(gh_chi2_sf(0, 3) == 1 && gh_chi2_sf(-1, 3) == 1 && isnan(gh_chi2_sf(1, 0)));
}

/* textbook-sized samples; scipy.stats.ttest_ind(t, c, equal_var=False), statsmodels CompareMeans */
static const gh_moments_t WC = {8, 107.1, 1443.49}, WT = {10, 151.6, 2311.08};

static void test_welch(void)
{
    gh_effect_t e;
    CHECK_INT(gh_stats_welch(&WC, &WT, 0.05, &e), 0);
    CLOSE(e.control, 13.3875, 1e-15);
    CLOSE(e.treatment, 15.16, 1e-15);
    CLOSE(e.stat, 3.1556221196330383, 1e-12);
    CLOSE(e.p, 0.0064272790735967564, 1e-11);
    CLOSE(e.df, 15.238775914695115, 1e-12);
    /* the interval with the exact t quantile (mpmath); statsmodels' [0.576905344473515, 2.968094655526483]
     * carries scipy's t.ppf error of ~1e-11 */
    double q = 2.1285443955402548683;
    CLOSE(e.diff_lo, e.diff - q * e.diff_se, 1e-14);
    CLOSE(e.diff_lo, 0.576905344473515, 1e-9);
    CLOSE(e.diff_hi, 2.968094655526483, 1e-9);
    /* relative lift: delta method, normal interval */
    double vc = (1443.49 - 8 * 13.3875 * 13.3875) / 7, vt = (2311.08 - 10 * 15.16 * 15.16) / 9;
    double se = sqrt(vt / (10 * 13.3875 * 13.3875) + 15.16 * 15.16 * vc / (8 * pow(13.3875, 4)));
    CLOSE(e.rel, 15.16 / 13.3875 - 1, 1e-13);
    CLOSE(e.rel_se, se, 1e-12);
    CLOSE(e.rel_hi, e.rel + 1.959963984540054 * se, 1e-13);
    CHECK(isinf(e.df) == 0);
}

static void test_welch_edges(void)
{
    gh_effect_t e;
    gh_moments_t one = {1, 5, 25}, flat_c = {5, 10, 20}, flat_t = {5, 15, 45};
    /* n < 2 */
    CHECK_INT(gh_stats_welch(&one, &WT, 0.05, &e), -1);
    CHECK(e.control == 5 && isnan(e.p) && isnan(e.diff_lo));
    /* both variances 0: no test, the means are still there */
    CHECK_INT(gh_stats_welch(&flat_c, &flat_t, 0.05, &e), -1);
    CHECK(e.diff == 1 && e.diff_se == 0 && isnan(e.stat) && isnan(e.p));
    /* one variance 0: df is the other group's n - 1 (scipy: p 0.09172 for [2]*5 vs [0, 2, 1, 1]) */
    gh_moments_t t4 = {4, 4, 6};
    CHECK_INT(gh_stats_welch(&flat_c, &t4, 0.05, &e), 0);
    CLOSE(e.df, 3, 1e-14);
    /* control mean 0: relative lift undefined, the rest filled */
    gh_moments_t c0 = {4, 0, 4}, t0 = {4, 4, 8};
    CHECK_INT(gh_stats_welch(&c0, &t0, 0.05, &e), 0);
    CHECK(isnan(e.rel) && isnan(e.rel_se) && isnan(e.rel_lo) && !isnan(e.p) && e.diff == 1);
    /* bad alpha */
    CHECK_INT(gh_stats_welch(&WC, &WT, 0, &e), -1);
    CHECK_INT(gh_stats_welch(&WC, &WT, 1, &e), -1);
}

static void test_proportions(void)
{
    gh_effect_t e;
    /* statsmodels proportions_ztest([130, 100], [1000, 1000]); confint_proportions_2indep(wald, diff) */
    CHECK_INT(gh_stats_prop(1000, 100, 1000, 130, 0.05, &e), 0);
    CLOSE(e.stat, 2.102740605622114, 1e-13);
    CLOSE(e.p, 0.03548845046647471, 1e-12);
    CLOSE(e.diff_lo, 0.0020679344393763587, 1e-11);
    CLOSE(e.diff_hi, 0.057932065560623636, 1e-12);
    CHECK(isinf(e.df));
    CLOSE(e.rel, 0.3, 1e-14);
    /* p in {0, 1} */
    CHECK_INT(gh_stats_prop(400, 0, 400, 0, 0.05, &e), -1); /* nobody converted: no test */
    CHECK(e.diff == 0 && isnan(e.p));
    CHECK_INT(gh_stats_prop(400, 400, 400, 400, 0.05, &e), -1);
    CHECK_INT(gh_stats_prop(12, 0, 15, 3, 0.05, &e), 0); /* control 0: test yes, relative lift no */
    CHECK(isnan(e.rel) && e.p > 0 && e.p < 1);
    CHECK_INT(gh_stats_prop(10, 0, 10, 10, 0.05, &e), 0); /* 0 vs 1: unpooled se 0, interval a point */
    CHECK(e.diff_lo == 1 && e.diff_hi == 1 && e.p < 1e-4);
    CHECK_INT(gh_stats_prop(1, 0, 10, 3, 0.05, &e), -1);
    CHECK_INT(gh_stats_prop(10, 11, 10, 3, 0.05, &e), -1);
}

/* ---- ratio metrics */

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static double unif(void) /* splitmix64 -> [0, 1) */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static int poisson(double lam)
{
    double l = exp(-lam), p = unif();
    int k = 0;
    while (p > l) {
        p *= unif();
        k++;
    }
    return k;
}

/* n units: b = 1 + Poisson(2) sessions, a = revenue = sum over the sessions of Exp(mu): E[a]/E[b] = mu,
 * a and b strongly correlated (the covariance term matters). */
static void ratio_group(int n, double mu, gh_ratio_moments_t *m)
{
    *m = (gh_ratio_moments_t){0};
    for (int i = 0; i < n; i++) {
        double b = 1 + poisson(2), a = 0;
        for (int s = 0; s < (int)b; s++)
            a += -mu * log(1 - unif());
        m->n += 1;
        m->sa += a;
        m->sb += b;
        m->saa += a * a;
        m->sbb += b * b;
        m->sab += a * b;
    }
}

static void test_ratio_exact(void)
{
    /* t: a = [2, 3, 5, 1], b = [1, 2, 2, 1]; c: a = [4, 1, 3], b = [2, 1, 1]; the variances from the formula
     * with numpy's cov: t 0.10905349794238682, c 0.18750000000000006 */
    gh_ratio_moments_t t = {4, 11, 6, 39, 10, 19}, c = {3, 8, 4, 26, 6, 12};
    gh_effect_t e;
    CHECK_INT(gh_stats_ratio(&c, &t, 0.05, &e), 0);
    CLOSE(e.control, 2, 1e-15);
    CLOSE(e.treatment, 11.0 / 6, 1e-15);
    CLOSE(e.diff_se, 0.5445672575012079, 1e-14);
    CLOSE(e.rel_se, sqrt(0.10905349794238682 / 4 + (11.0 / 6) * (11.0 / 6) * 0.1875 / 16), 1e-14);
    gh_ratio_moments_t zero = {3, 1, 0, 1, 0, 0};
    CHECK_INT(gh_stats_ratio(&zero, &t, 0.05, &e), -1);
    CHECK_INT(gh_stats_ratio(&(gh_ratio_moments_t){1, 1, 1, 1, 1, 1}, &t, 0.05, &e), -1);
}

/* The delta method's interval covers the true difference and the true relative lift ~95% of the
 * time (4000 replicates of two groups of 400 units, mu 1.0 vs 1.1); leaving out the covariance term
 * (treating a and b as independent) over-covers badly: the formula is right, not self-consistent. */
static void test_ratio_coverage(void)
{
    int reps = 4000, cover = 0, cover_rel = 0, cover_naive = 0;
    for (int r = 0; r < reps; r++) {
        gh_ratio_moments_t c, t;
        ratio_group(400, 1.0, &c);
        ratio_group(400, 1.1, &t);
        gh_effect_t e;
        if (gh_stats_ratio(&c, &t, 0.05, &e) != 0)
            continue;
        cover += e.diff_lo <= 0.1 && 0.1 <= e.diff_hi;
        cover_rel += e.rel_lo <= 0.1 && 0.1 <= e.rel_hi;
        /* without the covariance term */
        double v = 0;
        const gh_ratio_moments_t *g[2] = {&c, &t};
        for (int i = 0; i < 2; i++) {
            double n = g[i]->n, ma = g[i]->sa / n, mb = g[i]->sb / n, R = ma / mb;
            double va = (g[i]->saa - n * ma * ma) / (n - 1), vb = (g[i]->sbb - n * mb * mb) / (n - 1);
            v += (va + R * R * vb) / (n * mb * mb);
        }
        double h = 1.959963984540054 * sqrt(v);
        cover_naive += e.diff - h <= 0.1 && 0.1 <= e.diff + h;
    }
    double sigma = sqrt(0.95 * 0.05 / reps); /* 0.0034 */
    fprintf(stderr, "  ratio coverage: delta %.4f, relative %.4f, without covariance %.4f\n", (double)cover / reps,
            (double)cover_rel / reps, (double)cover_naive / reps);
    CHECK(fabs((double)cover / reps - 0.95) < 4 * sigma);
    CHECK(fabs((double)cover_rel / reps - 0.95) < 4 * sigma);
    CHECK((double)cover_naive / reps > 0.99);
}

static void test_cuped(void)
{
    /* xc = 1..6, yc = [2.1, 2.9, 4.2, 4.8, 6.1, 7.2]; xt = 1.5..5.5, yt = [3.0, 3.9, 5.1, 5.8, 7.1];
     * statsmodels OLS(y, [1, x]) slope 1.0163636363636361; scipy ttest_ind on y - theta (x - mean x) */
    gh_cuped_moments_t c = {6, 27.3, 142.55, 21.0, 91.0, 113.4}, t = {5, 24.9, 134.27, 17.5, 71.25, 97.25};
    gh_effect_t e;
    double theta;
    CHECK_INT(gh_stats_cuped(&c, &t, 0.05, &e, &theta), 0);
    CLOSE(theta, 1.0163636363636361, 1e-13);
    CLOSE(e.stat, 4.918019816848937, 1e-11);
    CLOSE(e.p, 0.0008269837400728526, 1e-10);
    /* var(x) = 0: plain Welch */
    gh_cuped_moments_t c0 = {3, 6, 14, 3, 3, 6}, t0 = {3, 9, 29, 3, 3, 9};
    gh_moments_t wc = {3, 6, 14}, wt = {3, 9, 29};
    gh_effect_t w;
    CHECK_INT(gh_stats_cuped(&c0, &t0, 0.05, &e, &theta), 0);
    CHECK_INT(gh_stats_welch(&wc, &wt, 0.05, &w), 0);
    CHECK(theta == 0 && e.p == w.p && e.diff_lo == w.diff_lo);
    CHECK_INT(gh_stats_cuped(&c0, &t0, 0.05, &e, NULL), 0);
}

static void test_sequential(void)
{
    double lo, hi, p;
    /* GrowthBook's formula (gbstats) evaluated with numpy: diff 0.01, se 0.004, n 20000, n_star 5000 */
    double rho = sqrt((-2 * log(0.05) + log(-2 * log(0.05) + 1)) / 5000);
    double n = 20000, nr = n * rho * rho + 1, s2 = 0.004 * 0.004 * n;
    double hw = sqrt(s2) * sqrt(2 * nr * log(sqrt(nr) / 0.05) / (n * rho * n * rho));
    CHECK_INT(gh_stats_seq_ci(0.01, 0.004, n, 5000, 0.05, &lo, &hi, &p), 0);
    CLOSE(hi - 0.01, hw, 1e-13);
    CLOSE(lo, 0.01 - hw, 1e-13);
    CHECK(hw > 1.959963984540054 * 0.004); /* wider than the fixed-horizon interval */
    /* the p-value is the alpha at which the sequence touches 0 (rho held): bisection on alpha */
    double a0 = 1e-12, a1 = 0.999;
    for (int i = 0; i < 200; i++) {
        /* halfwidth(alpha') with rho fixed against |diff| */
        double am = sqrt(a0 * a1), h2 = sqrt(s2) * sqrt(2 * nr * log(sqrt(nr) / am) / (n * rho * n * rho));
        if (h2 > 0.01)
            a0 = am;
        else
            a1 = am;
    }
    CLOSE(p, a0, 1e-10);
    /* p <= alpha exactly when the interval excludes 0 */
    for (double d = 0; d < 0.03; d += 0.0007) {
        CHECK_INT(gh_stats_seq_ci(d, 0.004, n, 5000, 0.05, &lo, &hi, &p), 0);
        CHECK((p <= 0.05) == (lo > 0 || hi < 0));
    }
    /* small evidence: p clamps to 1 */
    CHECK_INT(gh_stats_seq_ci(0.001, 0.01, 100, 5000, 0.05, &lo, &hi, &p), 0);
    CHECK(p == 1);
    /* n_star <= 0: the default 5000 */
    double lo2, hi2;
    CHECK_INT(gh_stats_seq_ci(0.01, 0.004, n, 0, 0.05, &lo2, &hi2, NULL), 0);
    CHECK_INT(gh_stats_seq_ci(0.01, 0.004, n, 5000, 0.05, &lo, &hi, NULL), 0);
    CHECK(lo2 == lo && hi2 == hi);
    CHECK_INT(gh_stats_seq_ci(0.01, 0, n, 5000, 0.05, &lo, &hi, &p), -1);
    CHECK(isnan(lo) && isnan(p));
}

static void test_srm(void)
{
    double chi2;
    /* scipy.stats.chisquare */
    CLOSE(gh_stats_srm((double[]){5000, 5100}, (double[]){1, 1}, 2, &chi2), 0.3197181768128675, 1e-13);
    CLOSE(chi2, 0.9900990099009901, 1e-14);
    CLOSE(gh_stats_srm((double[]){1000, 2100, 950}, (double[]){0.25, 0.5, 0.25}, 3, &chi2), 0.03353848383147017,
          1e-13);
    CLOSE(chi2, 6.790123456790123, 1e-14);
    /* one group: nothing can mismatch (scipy answers NaN: 0 degrees of freedom) */
    CHECK(gh_stats_srm((double[]){10}, (double[]){1}, 1, &chi2) == 1 && chi2 == 0);
    CHECK(isnan(gh_stats_srm((double[]){0, 0}, (double[]){1, 1}, 2, &chi2)));
    CHECK(gh_stats_srm((double[]){10, 5}, (double[]){1, 0}, 2, &chi2) == 0 && isinf(chi2));
    CHECK(isnan(gh_stats_srm((double[]){10, 5}, (double[]){1, -1}, 2, NULL)));
}

static void test_multiple(void)
{
    double p[] = {0.01, 0.04, 0.03, 0.005}, adj[4];
    /* statsmodels multipletests(method='holm') */
    gh_stats_holm(p, 4, adj);
    CLOSE(adj[0], 0.03, 1e-15);
    CLOSE(adj[1], 0.06, 1e-15);
    CLOSE(adj[2], 0.06, 1e-15);
    CLOSE(adj[3], 0.02, 1e-15);
    gh_stats_bonferroni(p, 4, adj);
    CLOSE(adj[0], 0.04, 1e-15);
    CHECK(adj[1] == 0.16 && adj[3] == 0.02);
    double q[] = {0.3, 0.9, 0.5}, qa[3];
    gh_stats_holm(q, 3, qa);
    CLOSE(qa[0], 0.9, 1e-15);
    CHECK(qa[1] == 1 && qa[2] == 1);
    double tie[] = {0.02, 0.02, 0.02}, ta[3];
    gh_stats_holm(tie, 3, ta);
    CHECK(ta[0] == 0.06 && ta[1] == 0.06 && ta[2] == 0.06);
    gh_stats_holm(p, 0, adj);
}

static void test_sample_size(void)
{
    /* statsmodels normal_sample_size_one_tail(0.1, 0.8, 0.025, std_null=sqrt 2, std_alternative=sqrt 2) */
    CLOSE(gh_stats_sample_size_mean(1, 0.1, 0.05, 0.8), 1569.7759468698182, 1e-13);
    /* statsmodels samplesize_proportions_2indep_onetail(0.01, 0.1, 0.8) */
    CLOSE(gh_stats_sample_size_prop(0.1, 0.01, 0.05, 0.8), 14750.790469044945, 1e-13);
    CHECK(isnan(gh_stats_sample_size_prop(0.95, 0.1, 0.05, 0.8)));
    CHECK(isnan(gh_stats_sample_size_mean(1, 0, 0.05, 0.8)));
    CHECK(isnan(gh_stats_sample_size_mean(1, 0.1, 0.05, 1)));
}

int main(void)
{
    RUN(test_normal);
    RUN(test_student_t);
    RUN(test_chi2);
    RUN(test_welch);
    RUN(test_welch_edges);
    RUN(test_proportions);
    RUN(test_ratio_exact);
    RUN(test_ratio_coverage);
    RUN(test_cuped);
    RUN(test_sequential);
    RUN(test_srm);
    RUN(test_multiple);
    RUN(test_sample_size);
    return t_done("test_stats");
}
