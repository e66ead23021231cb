/* stats.c: the statistics of experiment results (see stats.h for the contract). Pure functions
 * over per-variant sufficient statistics; libm only. Called by the experiment aggregators; calls
 * nothing of ours.
 *
 * Numerics. The normal distribution is erfc (glibc: ~1 ulp); its quantile Acklam's rational
 * approximation refined by two Halley steps on the lower tail. Student's t is the regularized
 * incomplete beta I_x(df/2, 1/2) by its continued fraction (modified Lentz), evaluated on the side
 * where it converges fast (no 1 - x cancellation: both x and 1 - x are formed directly), with
 * ln B(df/2, 1/2) from an asymptotic difference of log-gammas for large df (lgamma(a + 1/2) -
 * lgamma(a) cancels badly when a is large); for df >= 1000 in the body, where the fraction needs
 * O(sqrt(df)) terms and loses digits, the Cornish-Fisher expansion of t in z (A&S 26.7.5), inverted
 * by Newton for the cdf. Its quantile is Newton on ln tail against ln t inside a bracket. Chi-square's
 * survival function is the regularized upper incomplete gamma Q(k/2, x/2) (series below a + 1,
 * continued fraction above). Against mpmath: <= 3e-14 relative for t over df 0.3 .. 1e12; against
 * scipy see tests/integration/test_stats_scipy.py. */
#include "experiments/stats.h"

#include <math.h>
#include <stddef.h>

#define EPS 1e-16
#define TINY 1e-300
#define MAX_ITER 100000
#define LN_SQRT_PI 0.57236494292470008707  /* ln(sqrt(pi)) */
#define LN_SQRT_2PI 0.91893853320467274178 /* ln(sqrt(2 pi)) */
#define SEQ_N_STAR_DEFAULT 5000.0

/* ---------------------------------------------------------------- distributions */

double gh_norm_cdf(double x)
{
    if (isnan(x))
        return NAN;
    return 0.5 * erfc(-x / M_SQRT2);
}

/* Acklam's approximation of the normal quantile (relative error 1.15e-9), for p <= 0.5. */
static double acklam_lower(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01,  -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

double gh_norm_ppf(double p)
{
    if (isnan(p) || p < 0 || p > 1)
        return NAN;
    if (p == 0)
        return -INFINITY;
    if (p == 1)
        return INFINITY;
    /* refine on the lower tail, where 0.5 erfc(-x / sqrt 2) keeps its relative accuracy; 1 - p is
     * exact for p > 0.5 (Sterbenz) */
    double q = p > 0.5 ? 1 - p : p;
    double x = acklam_lower(q);
    for (int i = 0; i < 2; i++) {
        double e = 0.5 * erfc(-x / M_SQRT2) - q;
        double u = e * exp(LN_SQRT_2PI + 0.5 * x * x); /* e / pdf(x) */
        x = x - u / (1 + x * u / 2);                   /* Halley */
    }
    return p > 0.5 ? -x : x;
}

/* lgamma(a + 1/2) - lgamma(a), without the cancellation of two large lgammas when a is large:
 * Stirling's series of each, with a ln(a + 1/2) - (a - 1/2) ln a = a log1p(1 / 2a) + ln(a) / 2. */
static double lgamma_half_diff(double a)
{
    if (a < 20)
        return lgamma(a + 0.5) - lgamma(a);
    double z = a + 0.5;
    double s1 = 1 / (12 * z) - 1 / (360 * z * z * z) + 1 / (1260 * pow(z, 5)) - 1 / (1680 * pow(z, 7));
    double s0 = 1 / (12 * a) - 1 / (360 * a * a * a) + 1 / (1260 * pow(a, 5)) - 1 / (1680 * pow(a, 7));
    return a * log1p(0.5 / a) + 0.5 * log(a) - 0.5 + (s1 - s0);
}

/* The continued fraction of the regularized incomplete beta (without its prefactor), by the
 * modified Lentz method; converges fast for x < (a + 1) / (a + b + 2). */
static double betacf(double a, double b, double x)
{
    double qab = a + b, qap = a + 1, qam = a - 1;
    double c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < TINY)
        d = TINY;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= MAX_ITER; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < TINY)
            d = TINY;
        c = 1 + aa / c;
        if (fabs(c) < TINY)
            c = TINY;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < TINY)
            d = TINY;
        c = 1 + aa / c;
        if (fabs(c) < TINY)
            c = TINY;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < EPS)
            break;
    }
    return h;
}

/* ln(1 + r^2), also where r^2 overflows. */
static double log1p_sq(double r)
{
    r = fabs(r);
    return r > 1e150 ? 2 * log(r) : log1p(r * r);
}

/* Large df: the Cornish-Fisher expansion of the t quantile in the normal one (Abramowitz & Stegun
 * 26.7.5, four terms): t = z + g1/df + g2/df^2 + g3/df^3 + g4/df^4. Its error is O(z^11 / df^5):
 * below 1e-15 relative for df >= T_BIG_DF and t^2 <= df / 200 (checked against mpmath), where the
 * continued fraction needs O(sqrt(df)) terms and loses digits. *dtdz gets the derivative. */
#define T_BIG_DF 1e3
static double t_of_z(double z, double df, double *dtdz)
{
    double z2 = z * z, v = 1 / df;
    double g1 = (z2 + 1) * z / 4;
    double g2 = ((5 * z2 + 16) * z2 + 3) * z / 96;
    double g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384;
    double g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160;
    double d1 = (3 * z2 + 1) / 4;
    double d2 = ((25 * z2 + 48) * z2 + 3) / 96;
    double d3 = (((21 * z2 + 95) * z2 + 51) * z2 - 15) / 384;
    double d4 = ((((711 * z2 + 5432) * z2 + 7410) * z2 - 5760) * z2 - 945) / 92160;
    if (dtdz)
        *dtdz = 1 + v * (d1 + v * (d2 + v * (d3 + v * d4)));
    return z + v * (g1 + v * (g2 + v * (g3 + v * g4)));
}

/* Does the expansion hold for |t| (or |z|) at df? */
static int t_big(double t, double df)
{
    return df >= T_BIG_DF && t * t <= df / 200;
}

/* The upper tail P(T > t) of Student's t for t >= 0, and (via lower_out) P(T <= t), each computed
 * directly (no 1 - tail). With a = df/2, x = df / (df + t^2), y = 1 - x = t^2 / (df + t^2):
 * P(T > t) = I_x(a, 1/2) / 2 = (1 - I_y(1/2, a)) / 2. For large df: the z whose expansion is t
 * (Newton), and the normal tails of z. */
static double t_tail(double t, double df, double *lower_out)
{
    if (t_big(t, df)) {
        double z = t / (1 + (t * t + 1) / (4 * df));
        for (int i = 0; i < 20; i++) {
            double d, e = t_of_z(z, df, &d) - t;
            double step = e / d;
            z -= step;
            if (fabs(step) <= 1e-17 * fabs(z) + 1e-300)
                break;
        }
        if (lower_out)
            *lower_out = 0.5 * erfc(-z / M_SQRT2);
        return 0.5 * erfc(z / M_SQRT2);
    }
    double a = df / 2, r = t / sqrt(df);
    double l1p = log1p_sq(r);                  /* ln(1 + t^2/df) = -ln x */
    double lny = r == 0 ? -INFINITY : 2 * log(fabs(r)) - l1p; /* ln y */
    double lnb = LN_SQRT_PI - lgamma_half_diff(a);           /* ln B(a, 1/2) */
    double upper, lower;
    double y = exp(lny);
    if (y > 1.5 / (a + 2.5)) {
        /* I_x(a, 1/2) with its continued fraction: x < (a + 1) / (a + 2.5) */
        double x = exp(-l1p);
        double front = exp(-a * l1p + 0.5 * lny - lnb - log(a));
        double ix = front * betacf(a, 0.5, x);
        upper = 0.5 * ix;
        lower = 1 - upper;
    } else {
        /* I_y(1/2, a) */
        double front = exp(0.5 * lny - a * l1p - lnb - log(0.5));
        double iy = r == 0 ? 0 : front * betacf(0.5, a, y);
        upper = 0.5 - 0.5 * iy;
        lower = 0.5 + 0.5 * iy;
    }
    if (lower_out)
        *lower_out = lower;
    return upper;
}

/* Beyond this many degrees of freedom the t distribution is the normal one to double precision
 * in the body (the first correction term is phi(t) (t^3 + t) / (4 df)), and the continued fraction
 * would need O(sqrt(df)) terms. */
#define T_NORMAL_DF 1e15

double gh_t_cdf(double t, double df)
{
    if (isnan(t) || isnan(df) || df <= 0)
        return NAN;
    if (isinf(t))
        return t > 0 ? 1 : 0;
    if (df > T_NORMAL_DF)
        return gh_norm_cdf(t);
    double lower, upper = t_tail(fabs(t), df, &lower);
    return t >= 0 ? lower : upper;
}

/* P(T > t) for t >= 0, any df > 0. */
static double t_sf(double t, double df)
{
    if (isinf(t))
        return 0;
    return df > T_NORMAL_DF ? 0.5 * erfc(t / M_SQRT2) : t_tail(t, df, NULL);
}

/* The density of t at t, df < T_NORMAL_DF. */
static double t_pdf(double t, double df)
{
    double a = df / 2;
    double lnb = LN_SQRT_PI - lgamma_half_diff(a);
    return exp(-(a + 0.5) * log1p_sq(t / sqrt(df)) - 0.5 * log(df) - lnb);
}

double gh_t_ppf(double p, double df)
{
    if (isnan(p) || isnan(df) || df <= 0 || p < 0 || p > 1)
        return NAN;
    if (p == 0)
        return -INFINITY;
    if (p == 1)
        return INFINITY;
    if (p == 0.5)
        return 0;
    if (df > T_NORMAL_DF)
        return gh_norm_ppf(p);
    if (df >= T_BIG_DF) {
        double z = gh_norm_ppf(p), t = t_of_z(z, df, NULL);
        if (t_big(t, df))
            return t;
    }
    /* solve P(T > t) = q for t > 0 (q < 1/2), then the sign */
    double q = p > 0.5 ? 1 - p : p;
    double t;
    if (df == 1) {
        t = tan(M_PI * (0.5 - q));
    } else if (df == 2) {
        t = (1 - 2 * q) / sqrt(2 * q * (1 - q));
    } else {
        double z = -gh_norm_ppf(q);
        double z2 = z * z;
        /* Cornish-Fisher: the start only; Newton does the rest */
        t = z + (z2 * z + z) / (4 * df) + ((5 * z2 + 16) * z2 * z + 3 * z) / (96 * df * df);
        if (!(t > 0) || isinf(t))
            t = z > 0 ? z : 1;
    }
    /* bracket [lo, hi] with tail(lo) > q > tail(hi) */
    double lo = 0, hi = t;
    while (t_tail(hi, df, NULL) > q && hi < 1e300)
        hi *= 2;
    if (hi != t)
        lo = hi / 2;
    else {
        lo = t;
        while (lo > 1e-300 && t_tail(lo, df, NULL) < q)
            lo /= 2;
        if (lo <= 1e-300)
            lo = 0;
    }
    /* Newton on g(u) = ln tail(e^u) - ln q, g'(u) = -t pdf(t) / tail(t): nearly linear in both
     * tails (power law for small df, and close enough for the normal-like ones) */
    double lq = log(q);
    for (int i = 0; i < 200; i++) {
        double tail = t_tail(t, df, NULL);
        if (tail > q)
            lo = t;
        else if (tail < q)
            hi = t;
        else
            break;
        double g = log(tail) - lq;
        double dg = -t * t_pdf(t, df) / tail;
        double nt = t * exp(-g / dg);
        if (!(nt > lo && nt < hi) || isnan(nt))
            nt = lo > 0 ? sqrt(lo * hi) : 0.5 * (lo + hi);
        double step = fabs(nt - t);
        t = nt;
        if (step <= 4e-16 * t)
            break;
    }
    return p > 0.5 ? t : -t;
}

/* The regularized upper incomplete gamma Q(a, x). */
static double gamma_q(double a, double x)
{
    if (x <= 0)
        return 1;
    double lnfront = a * log(x) - x - lgamma(a);
    if (x < a + 1) {
        /* P by its series, Q = 1 - P */
        double ap = a, sum = 1 / a, del = sum;
        for (int n = 0; n < MAX_ITER; n++) {
            ap += 1;
            del *= x / ap;
            sum += del;
            if (fabs(del) < fabs(sum) * EPS)
                break;
        }
        return 1 - sum * exp(lnfront);
    }
    /* Q by its continued fraction (modified Lentz) */
    double b = x + 1 - a, c = 1 / TINY, d = 1 / b, h = d;
    for (int i = 1; i < MAX_ITER; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < TINY)
            d = TINY;
        c = b + an / c;
        if (fabs(c) < TINY)
            c = TINY;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < EPS)
            break;
    }
    return exp(lnfront) * h;
}

double gh_chi2_sf(double x, double k)
{
    if (isnan(x) || isnan(k) || k <= 0)
        return NAN;
    if (x <= 0)
        return 1;
    if (isinf(x))
        return 0;
    if (k == 1)
        return erfc(sqrt(x / 2));
    if (k == 2)
        return exp(-x / 2);
    return gamma_q(k / 2, x / 2);
}

/* ---------------------------------------------------------------- one comparison */

static void effect_nan(gh_effect_t *out)
{
    out->control = out->treatment = NAN;
    out->diff = out->diff_se = out->diff_lo = out->diff_hi = NAN;
    out->rel = out->rel_se = out->rel_lo = out->rel_hi = NAN;
    out->stat = out->df = out->p = NAN;
}

/* The relative lift mt / mc - 1 with the delta method's variance vt / mc^2 + mt^2 vc / mc^4, where
 * vc and vt are the variances of the two estimates (already divided by n); a normal interval. */
static void rel_lift(double mc, double vc, double mt, double vt, double alpha, gh_effect_t *out)
{
    if (mc == 0 || !isfinite(mc)) {
        out->rel = out->rel_se = out->rel_lo = out->rel_hi = NAN;
        return;
    }
    double mc2 = mc * mc;
    out->rel = mt / mc - 1;
    out->rel_se = sqrt(vt / mc2 + mt * mt * vc / (mc2 * mc2));
    double h = gh_norm_ppf(1 - alpha / 2) * out->rel_se;
    out->rel_lo = out->rel - h;
    out->rel_hi = out->rel + h;
}

/* Welch's test from the groups' means, sample variances (n - 1) and sizes (n >= 2 each). */
static int welch(double mc, double vc, double nc, double mt, double vt, double nt, double alpha,
                 gh_effect_t *out)
{
    out->control = mc;
    out->treatment = mt;
    out->diff = mt - mc;
    double ec = vc / nc, et = vt / nt; /* the squared standard errors of the means */
    out->diff_se = sqrt(ec + et);
    if (!(out->diff_se > 0) || !isfinite(out->diff_se)) {
        out->diff_lo = out->diff_hi = out->stat = out->df = out->p = NAN;
        out->rel = out->rel_se = out->rel_lo = out->rel_hi = NAN;
        return -1;
    }
    out->df = (ec + et) * (ec + et) / (ec * ec / (nc - 1) + et * et / (nt - 1));
    out->stat = out->diff / out->diff_se;
    out->p = 2 * t_sf(fabs(out->stat), out->df);
    double h = gh_t_ppf(1 - alpha / 2, out->df) * out->diff_se;
    out->diff_lo = out->diff - h;
    out->diff_hi = out->diff + h;
    rel_lift(mc, ec, mt, et, alpha, out);
    return 0;
}

static int alpha_ok(double alpha)
{
    return alpha > 0 && alpha < 1;
}

int gh_stats_welch(const gh_moments_t *c, const gh_moments_t *t, double alpha, gh_effect_t *out)
{
    effect_nan(out);
    if (!c || !t || !alpha_ok(alpha))
        return -1;
    if (c->n > 0)
        out->control = c->sum / c->n;
    if (t->n > 0)
        out->treatment = t->sum / t->n;
    out->diff = out->treatment - out->control;
    if (!(c->n >= 2 && t->n >= 2))
        return -1;
    double mc = c->sum / c->n, mt = t->sum / t->n;
    /* sum of squares about the mean, clamped: rounding may leave it a hair below 0 */
    double vc = fmax(0, (c->sumsq - mc * c->sum) / (c->n - 1));
    double vt = fmax(0, (t->sumsq - mt * t->sum) / (t->n - 1));
    return welch(mc, vc, c->n, mt, vt, t->n, alpha, out);
}

int gh_stats_prop(double nc, double xc, double nt, double xt, double alpha, gh_effect_t *out)
{
    effect_nan(out);
    if (!alpha_ok(alpha) || !(nc >= 2 && nt >= 2) || !(xc >= 0 && xc <= nc && xt >= 0 && xt <= nt))
        return -1;
    double pc = xc / nc, pt = xt / nt;
    out->control = pc;
    out->treatment = pt;
    out->diff = pt - pc;
    double ec = pc * (1 - pc) / nc, et = pt * (1 - pt) / nt;
    out->diff_se = sqrt(ec + et);
    double z = gh_norm_ppf(1 - alpha / 2);
    out->diff_lo = out->diff - z * out->diff_se;
    out->diff_hi = out->diff + z * out->diff_se;
    rel_lift(pc, ec, pt, et, alpha, out);
    out->df = INFINITY;
    double pp = (xc + xt) / (nc + nt);
    double se0 = sqrt(pp * (1 - pp) * (1 / nc + 1 / nt));
    if (!(se0 > 0))
        return -1; /* nobody or everybody converted: no test */
    out->stat = out->diff / se0;
    out->p = erfc(fabs(out->stat) / M_SQRT2);
    return 0;
}

int gh_stats_ratio(const gh_ratio_moments_t *c, const gh_ratio_moments_t *t, double alpha, gh_effect_t *out)
{
    effect_nan(out);
    if (!c || !t || !alpha_ok(alpha) || !(c->n >= 2 && t->n >= 2))
        return -1;
    const gh_ratio_moments_t *g[2] = {c, t};
    double r[2], v[2]; /* the ratios and the delta method's variances */
    for (int i = 0; i < 2; i++) {
        double n = g[i]->n, ma = g[i]->sa / n, mb = g[i]->sb / n;
        if (mb == 0)
            return -1;
        double va = (g[i]->saa - ma * g[i]->sa) / (n - 1);
        double vb = (g[i]->sbb - mb * g[i]->sb) / (n - 1);
        double cab = (g[i]->sab - ma * g[i]->sb) / (n - 1);
        r[i] = ma / mb;
        v[i] = fmax(0, (va - 2 * r[i] * cab + r[i] * r[i] * vb) / (n * mb * mb));
    }
    out->control = r[0];
    out->treatment = r[1];
    out->diff = r[1] - r[0];
    out->diff_se = sqrt(v[0] + v[1]);
    out->df = INFINITY;
    if (!(out->diff_se > 0))
        return -1;
    double z = gh_norm_ppf(1 - alpha / 2);
    out->diff_lo = out->diff - z * out->diff_se;
    out->diff_hi = out->diff + z * out->diff_se;
    out->stat = out->diff / out->diff_se;
    out->p = erfc(fabs(out->stat) / M_SQRT2);
    rel_lift(r[0], v[0], r[1], v[1], alpha, out);
    return 0;
}

int gh_stats_cuped(const gh_cuped_moments_t *c, const gh_cuped_moments_t *t, double alpha, gh_effect_t *out,
                   double *theta_out)
{
    effect_nan(out);
    if (theta_out)
        *theta_out = NAN;
    if (!c || !t || !alpha_ok(alpha) || !(c->n >= 2 && t->n >= 2))
        return -1;
    /* theta over the pooled units (as OLS of y on [1, x] over both groups) */
    double n = c->n + t->n, sx = c->sx + t->sx, sy = c->sy + t->sy;
    double mx = sx / n;
    double sxx = c->sxx + t->sxx - mx * sx;
    double sxy = c->sxy + t->sxy - mx * sy;
    double theta = sxx > 0 ? sxy / sxx : 0;
    if (theta_out)
        *theta_out = theta;
    /* the adjusted y - theta (x - mx) per group: mean, and variance var(y) - 2 theta cov + theta^2 var(x) */
    const gh_cuped_moments_t *g[2] = {c, t};
    double m[2], v[2];
    for (int i = 0; i < 2; i++) {
        double gn = g[i]->n, gmx = g[i]->sx / gn, gmy = g[i]->sy / gn;
        double vy = (g[i]->syy - gmy * g[i]->sy) / (gn - 1);
        double vx = (g[i]->sxx - gmx * g[i]->sx) / (gn - 1);
        double cxy = (g[i]->sxy - gmx * g[i]->sy) / (gn - 1);
        m[i] = gmy - theta * (gmx - mx);
        v[i] = fmax(0, vy - 2 * theta * cxy + theta * theta * vx);
    }
    return welch(m[0], v[0], c->n, m[1], v[1], t->n, alpha, out);
}

/* ---------------------------------------------------------------- sequential testing */

/* GrowthBook's asymptotic confidence sequence (gbstats, packages/stats/gbstats/frequentist/tests.py:
 * sequential_rho, sequential_interval_halfwidth, SequentialTwoSidedTTest.p_value; from Waudby-Smith,
 * Ramdas et al., "Time-uniform central limit theory and asymptotic confidence sequences",
 * arXiv:2103.06476v7, eqs. 9, 155 and 161, the asymptotic CS of Howard et al. 2021 style):
 *   rho^2     = (-2 ln alpha + ln(-2 ln alpha + 1)) / n_star          (eq. 161, tightest at n_star)
 *   s2        = se^2 n                                                 (per-unit variance)
 *   halfwidth = sqrt(s2) sqrt(2 (n rho^2 + 1) ln(sqrt(n rho^2 + 1) / alpha) / (n rho)^2)   (eq. 9)
 *   p         = min(1, sqrt(n rho^2 + 1) exp(-rho^2 n diff^2 / se^2 / (2 (n rho^2 + 1))))  (eq. 155)
 * With rho held at its value for the nominal alpha, p is exactly the alpha' at which
 * halfwidth(alpha') = |diff| (solve eq. 9 for alpha'): the smallest alpha at which the sequence
 * excludes 0, so p <= alpha exactly when [lo, hi] excludes 0. */
int gh_stats_seq_ci(double diff, double se, double n, double n_star, double alpha, double *lo, double *hi,
                    double *p_out)
{
    *lo = *hi = NAN;
    if (p_out)
        *p_out = NAN;
    if (!(n_star > 0))
        n_star = SEQ_N_STAR_DEFAULT;
    if (!alpha_ok(alpha) || !(n >= 1) || !(se > 0) || !isfinite(se) || !isfinite(diff))
        return -1;
    double la = log(alpha);
    double rho2 = (-2 * la + log(-2 * la + 1)) / n_star;
    double nr1 = n * rho2 + 1;
    double s2 = se * se * n;
    double h = sqrt(s2) * sqrt(2 * nr1 * (0.5 * log(nr1) - la) / (n * n * rho2));
    *lo = diff - h;
    *hi = diff + h;
    if (p_out) {
        double z2 = diff * diff / (se * se); /* = n diff^2 / s2 */
        double lne = rho2 * n * z2 / (2 * nr1) - 0.5 * log(nr1); /* ln of the e-value */
        *p_out = lne <= 0 ? 1 : exp(-lne);
    }
    return 0;
}

/* ---------------------------------------------------------------- sample-ratio mismatch */

double gh_stats_srm(const double *observed, const double *weights, int k, double *chi2)
{
    if (chi2)
        *chi2 = NAN;
    if (!observed || !weights || k < 1)
        return NAN;
    double total = 0, wsum = 0;
    for (int i = 0; i < k; i++) {
        if (!(observed[i] >= 0) || !(weights[i] >= 0))
            return NAN;
        total += observed[i];
        wsum += weights[i];
    }
    if (!(total > 0) || !(wsum > 0))
        return NAN;
    double x = 0;
    for (int i = 0; i < k; i++) {
        double e = weights[i] / wsum * total;
        double d = observed[i] - e;
        if (e == 0)
            x += observed[i] > 0 ? INFINITY : 0; /* units where none were expected */
        else
            x += d * d / e;
    }
    if (chi2)
        *chi2 = x;
    if (k == 1)
        return 1; /* one group cannot mismatch (scipy: chi2.sf(0, 0) is NaN) */
    return gh_chi2_sf(x, k - 1);
}

/* ---------------------------------------------------------------- multiple comparisons */

void gh_stats_bonferroni(const double *p, int n, double *adj)
{
    for (int i = 0; i < n; i++)
        adj[i] = fmin(1, p[i] * n);
}

/* Does p[i] come before p[j] in the ascending order (ties by index, as statsmodels' stable sort)? */
static int before(const double *p, int i, int j)
{
    return p[i] < p[j] || (p[i] == p[j] && i < j);
}

/* Holm: with p sorted ascending, adj_(j) = max over i <= j of min(1, (n - i) p_(i)) (0-based).
 * Without scratch memory (the header promises no allocation): O(n^2), fine for the tens to
 * thousands of comparisons of an experiment. First adj[i] = min(1, (n - rank_i) p_i); then, from
 * the largest p down, adj[i] = the maximum over the p-values up to it, which are still unprocessed. */
void gh_stats_holm(const double *p, int n, double *adj)
{
    for (int i = 0; i < n; i++) {
        int rank = 0;
        for (int j = 0; j < n; j++)
            rank += before(p, j, i);
        adj[i] = fmin(1, (n - rank) * p[i]);
    }
    int last = -1; /* the element processed before: the next is the largest before it */
    for (int k = 0; k < n; k++) {
        int cur = -1;
        for (int j = 0; j < n; j++)
            if ((last < 0 || before(p, j, last)) && (cur < 0 || before(p, cur, j)))
                cur = j;
        double m = adj[cur];
        for (int j = 0; j < n; j++)
            if (before(p, j, cur) && adj[j] > m)
                m = adj[j];
        adj[cur] = m;
        last = cur;
    }
}

/* ---------------------------------------------------------------- planning */

double gh_stats_sample_size_mean(double sd, double mde, double alpha, double power)
{
    if (!(sd > 0) || mde == 0 || !isfinite(mde) || !alpha_ok(alpha) || !(power > 0 && power < 1))
        return NAN;
    double z = gh_norm_ppf(1 - alpha / 2) + gh_norm_ppf(power);
    return 2 * sd * sd * z * z / (mde * mde);
}

double gh_stats_sample_size_prop(double p0, double mde, double alpha, double power)
{
    double p1 = p0 + mde;
    if (!(p0 > 0 && p0 < 1) || !(p1 > 0 && p1 < 1) || mde == 0 || !alpha_ok(alpha) || !(power > 0 && power < 1))
        return NAN;
    double pbar = (p0 + p1) / 2;
    double s0 = sqrt(2 * pbar * (1 - pbar)), s1 = sqrt(p0 * (1 - p0) + p1 * (1 - p1));
    double a = gh_norm_ppf(1 - alpha / 2) * s0 + gh_norm_ppf(power) * s1;
    return a * a / (mde * mde);
}
