/* report.c: an experiment's results (the JSON of gh_exp_results) as a table for a terminal
 * (`gatehouse experiments results`). */
#include "experiments/report.h"

#include <math.h>
#include <string.h>

static double jnum(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

static void fmt(char *b, size_t cap, double v, int pct)
{
    if (!isfinite(v))
        snprintf(b, cap, "-");
    else if (pct)
        snprintf(b, cap, "%+.2f%%", v * 100);
    else if (fabs(v) >= 1e5 || (v != 0 && fabs(v) < 1e-3))
        snprintf(b, cap, "%.3g", v);
    else
        snprintf(b, cap, "%.4f", v);
}

static void interval(char *b, size_t cap, const json_t *a, int pct)
{
    char lo[32], hi[32];
    fmt(lo, sizeof lo, jnum(json_array_get(a, 0)), pct);
    fmt(hi, sizeof hi, jnum(json_array_get(a, 1)), pct);
    snprintf(b, cap, "[%s, %s]", lo, hi);
}

int gh_exp_print_results(FILE *out, const json_t *r)
{
    const char *ctl = json_string_value(json_object_get(r, "control"));
    if (!ctl)
        return -1;
    fprintf(out, "experiment %s (tenant %s, flag %s), control %s\n", json_string_value(json_object_get(r, "experiment")),
            json_string_value(json_object_get(r, "tenant")), json_string_value(json_object_get(r, "flag")), ctl);
    fprintf(out, "units:");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(r, "units"), k, v)
        fprintf(out, " %s %lld", k, (long long)json_integer_value(v));
    const json_t *srm = json_object_get(r, "srm");
    fprintf(out, "   sample ratio p=%.4g%s\n", jnum(json_object_get(srm, "p")),
            json_is_true(json_object_get(srm, "warning")) ? "  WARNING: sample-ratio mismatch, results are suspect" : " (ok)");
    fprintf(out, "%-14s %-10s %-10s %11s %11s %-25s %9s %8s %8s %-25s %s\n", "metric", "kind", "variant", "value", "diff",
            "95% CI", "lift", "p", "p(holm)", "always-valid CI", "verdict");
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)json_object_get(r, "metrics"), i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        char kind[24];
        snprintf(kind, sizeof kind, "%s%s", json_string_value(json_object_get(m, "kind")),
                 json_is_true(json_object_get(m, "guardrail")) ? "*" : "");
        const json_t *vals = json_object_get(m, "values");
        char val[32];
        fmt(val, sizeof val, jnum(json_object_get(vals, ctl)), 0);
        fprintf(out, "%-14.14s %-10s %-10.10s %11s\n", name, kind, ctl, val);
        size_t j;
        json_t *c;
        json_array_foreach((json_t *)json_object_get(m, "comparisons"), j, c)
        {
            const char *t = json_string_value(json_object_get(c, "treatment"));
            char diff[32], ci[80], rel[32], p[32], ph[32], seq[80];
            fmt(val, sizeof val, jnum(json_object_get(vals, t)), 0);
            fmt(diff, sizeof diff, jnum(json_object_get(c, "diff")), 0);
            interval(ci, sizeof ci, json_object_get(c, "diff_ci"), 0);
            fmt(rel, sizeof rel, jnum(json_object_get(c, "rel")), 1);
            double pv = jnum(json_object_get(c, "p")), phv = jnum(json_object_get(c, "p_holm"));
            snprintf(p, sizeof p, isfinite(pv) ? "%.4f" : "-", pv);
            snprintf(ph, sizeof ph, isfinite(phv) ? "%.4f" : "-", phv);
            interval(seq, sizeof seq, json_object_get(c, "seq_ci"), 0);
            fprintf(out, "%-14s %-10s %-10.10s %11s %11s %-25s %9s %8s %8s %-25s %s\n", "", "", t, val, diff, ci, rel, p, ph,
                    seq, json_string_value(json_object_get(c, "verdict")));
        }
    }
    fprintf(out, "(* guardrail)  decision: %s\n", json_string_value(json_object_get(r, "decision")));
    return 0;
}
