/* stats.h: the statistics of experiment results, from per-variant sufficient statistics.
 *
 * Pure functions (no allocation, no I/O, thread-safe). Every test is two-sided; alpha is the
 * significance level (0.05 for 95% intervals). Inputs are the sums the aggregators keep per
 * variant; a variant's "units" are the experiment's units exposed to it (each counted once).
 * Functions that compute an effect return 0, or -1 when it is not defined (fewer than 2 units in a
 * group, zero variance where a division needs it, a control mean of 0 for a relative effect: then
 * the relative fields are NaN but the absolute ones are filled and 0 is returned).
 *
 * References: Welch (1947) for the unequal-variance t-test and its degrees of freedom; the
 * two-proportion z-test with unpooled standard errors for intervals and the pooled one for the
 * p-value (as statsmodels' proportions_ztest); the delta method for ratio metrics (Deng et al.,
 * "Applying the Delta Method in Metric Analytics", 2018) and for relative lift; CUPED (Deng et al.
 * 2013) with a pooled theta; asymptotic confidence sequences (Howard et al. 2021, as GrowthBook's
 * sequential testing) for always-valid intervals; Holm (1979) and Bonferroni adjustments. */
#ifndef GH_EXPERIMENTS_STATS_H
#define GH_EXPERIMENTS_STATS_H

#include <stdint.h>

/* ---- distributions ---- */
double gh_norm_cdf(double x);
double gh_norm_ppf(double p);            /* inverse of gh_norm_cdf, p in (0,1) */
double gh_t_cdf(double t, double df);    /* Student's t, df > 0 (may be fractional: Welch) */
double gh_t_ppf(double p, double df);
double gh_chi2_sf(double x, double k);   /* survival function (upper tail) of chi-square, k dof */

/* ---- one comparison: treatment against control ---- */
typedef struct {
    double control, treatment; /* the groups' metric values (means, proportions or ratios) */
    double diff, diff_se;      /* treatment - control and its standard error */
    double diff_lo, diff_hi;   /* its (1 - alpha) confidence interval */
    double rel, rel_se;        /* relative lift treatment / control - 1 (delta method) */
    double rel_lo, rel_hi;
    double stat;               /* t or z */
    double df;                 /* degrees of freedom (Welch); INFINITY for z tests */
    double p;                  /* two-sided p-value */
} gh_effect_t;

/* A mean metric: per unit value y (e.g. the sum of an event's value for that unit). */
typedef struct {
    double n, sum, sumsq;
} gh_moments_t;
/* Welch's t-test on the means. */
int gh_stats_welch(const gh_moments_t *c, const gh_moments_t *t, double alpha, gh_effect_t *out);

/* A conversion metric: n units, x of which converted. z-test of two proportions: the p-value with
 * the pooled proportion, the intervals with unpooled standard errors (diff_se is the unpooled one,
 * stat the pooled z, df INFINITY). -1 also when nobody or everybody converted (pooled se 0: the
 * proportions and the interval are filled, stat and p are NaN). */
int gh_stats_prop(double nc, double xc, double nt, double xt, double alpha, gh_effect_t *out);

/* A ratio metric sum(a) / sum(b) over units (e.g. revenue per session), per unit a and b: the
 * delta method's variance of the ratio of means R = mean(a) / mean(b),
 * var(R) = (var(a) - 2 R cov(a, b) + R^2 var(b)) / (n mean(b)^2), and a z test (df INFINITY) on
 * the difference of the groups' R. -1 when a group's mean(b) is 0. */
typedef struct {
    double n, sa, sb, saa, sbb, sab;
} gh_ratio_moments_t;
int gh_stats_ratio(const gh_ratio_moments_t *c, const gh_ratio_moments_t *t, double alpha, gh_effect_t *out);

/* CUPED: y with a pre-exposure covariate x per unit; theta = pooled cov(x, y) / var(x) over both
 * groups; the adjusted means y - theta (x - mean_x(pooled)) compared with Welch. theta_out may be
 * NULL. With var(x) = 0 it is the plain Welch test (theta 0). */
typedef struct {
    double n, sy, syy, sx, sxx, sxy;
} gh_cuped_moments_t;
int gh_stats_cuped(const gh_cuped_moments_t *c, const gh_cuped_moments_t *t, double alpha, gh_effect_t *out,
                   double *theta_out);

/* ---- sequential testing (always valid under continuous monitoring) ---- */
/* The asymptotic confidence sequence around an effect estimate (diff with standard error se)
 * when n units have been observed in all, tuned to be tightest at n_star units (GrowthBook's
 * default 5000): the interval [lo, hi] is valid at every n at once, so it may be looked at any
 * time. Also returns (via p_out, may be NULL) the always-valid p-value: the smallest alpha at
 * which the sequence excludes 0 (with the mixing parameter rho held at its value for the given
 * alpha, as GrowthBook does: then p <= alpha exactly when [lo, hi] excludes 0). n_star <= 0 means
 * 5000. -1 (NaN outputs) when se <= 0, n < 1 or alpha is not in (0, 1). */
int gh_stats_seq_ci(double diff, double se, double n, double n_star, double alpha, double *lo, double *hi,
                    double *p_out);

/* ---- sample-ratio mismatch ---- */
/* Pearson's chi-square of observed unit counts against expected weights (k groups, weights
 * need not sum to 1). Returns the p-value; *chi2 (may be NULL) gets the statistic. NaN when
 * there are no units (or a negative count or weight); 1 for a single group (scipy: NaN). */
double gh_stats_srm(const double *observed, const double *weights, int k, double *chi2);

/* ---- multiple comparisons ---- */
/* Adjusted p-values (each at most 1, monotone as Holm's step-down requires), in input order, as
 * statsmodels' multipletests. adj may not alias p. Holm is O(n^2) without scratch memory. */
void gh_stats_bonferroni(const double *p, int n, double *adj);
void gh_stats_holm(const double *p, int n, double *adj);

/* ---- planning ---- */
/* Units needed per group (not rounded: take the ceiling) to detect an absolute difference mde in a
 * mean with standard deviation sd with a two-sided test at alpha and the given power, the normal
 * approximation ignoring the far tail: n = 2 sd^2 (z_{1-alpha/2} + z_power)^2 / mde^2. For a
 * proportion from baseline p0 (p1 = p0 + mde, pbar = (p0 + p1) / 2), statsmodels'
 * samplesize_proportions_2indep_onetail: the pooled variance under the null, the unpooled one under
 * the alternative, n = (z_{1-alpha/2} sqrt(2 pbar (1 - pbar)) + z_power sqrt(p0 (1 - p0) +
 * p1 (1 - p1)))^2 / mde^2. NaN for mde 0, p0 or p1 outside (0, 1), alpha or power outside (0, 1). */
double gh_stats_sample_size_mean(double sd, double mde, double alpha, double power);
double gh_stats_sample_size_prop(double p0, double mde, double alpha, double power);

#endif
