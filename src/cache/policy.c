/* policy.c: the RFC 9111 rules of a shared cache as pure functions (see policy.h).
 *
 * Cache-Control parsing, HTTP dates (civil-date arithmetic done here: no libc time,
 * locale or clock), delta-seconds, storability, freshness lifetime, age and the
 * serve/revalidate decision. Every function takes what it needs as arguments and
 * never allocates, so the cache, the unit test and the fuzz target call it alike.
 *
 * Choices where the RFCs leave room (all on the side of not serving stale or private
 * content):
 * - Whitespace around "=" in a directive is tolerated; anything else after an
 *   argument ("max-age=5 6", "max-age=5;x") makes the argument malformed.
 * - Restrictive directives (no-store, no-cache, private, must-revalidate,
 *   proxy-revalidate) count whatever follows them; permissive ones (public,
 *   must-understand, immutable ...) only without an argument. A malformed
 *   private=/no-cache= list is the unqualified directive.
 * - A request max-age (unless max-stale allows the age) or min-fresh refuses stale
 *   responses, stale-while-revalidate included (5.2.1.1, 5.2.1.3); an unreadable
 *   request max-age (GH_CC_INVALID) counts as max-age=0.
 * - Repeated directives: max-age/s-maxage with another value are GH_CC_INVALID
 *   (4.2.1); for the others the stricter value wins (smallest max-stale, swr, sie;
 *   largest min-fresh); a second, different private="..." list makes it
 *   unqualified private (one view cannot hold both lists).
 * - rfc850 two-digit years: the rule of RFC 9110 5.6.7 needs "now", which a pure
 *   function does not have; RFC850_NOW_YEAR stands for it.
 * - Dates before 1970 are 0 (they are in the past all the same; -1 is reserved for
 *   "not a date"); formatting clamps to [1970, 9999].
 * - Times given by the caller are not trusted: arithmetic saturates, a clock that
 *   went backwards gives no negative age. */
#include "cache/policy.h"

#include "http/h1.h"

/* The year standing for "now" in the two-digit year rule of rfc850 dates. */
#define RFC850_NOW_YEAR 2026
#define YEAR_9999_END 253402300799LL /* 9999-12-31T23:59:59Z */

/* ---- small helpers ---------------------------------------------------------------- */

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* ASCII case-insensitive name == lit (no locale: strncasecmp follows LC_CTYPE). */
static int name_is(gh_str_t name, const char *lit)
{
    size_t i = 0;
    for (; i < name.n && lit[i]; i++) {
        char c = name.p[i];
        if ((c >= 'A' && c <= 'Z' ? c | 0x20 : c) != lit[i])
            return 0;
    }
    return i == name.n && !lit[i];
}

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* delta-seconds from an argument (a quoted one may hold quoted-pairs): 1*DIGIT capped
 * at GH_DELTA_MAX, -1 when empty or not all digits. */
static int64_t delta_arg(gh_str_t v, int quoted)
{
    int64_t r = 0;
    size_t digits = 0;
    for (size_t i = 0; i < v.n; i++) {
        char c = v.p[i];
        if (quoted && c == '\\' && i + 1 < v.n)
            c = v.p[++i];
        if (c < '0' || c > '9')
            return -1;
        r = GH_MIN(r * 10 + (c - '0'), GH_DELTA_MAX);
        digits++;
    }
    return digits ? r : -1;
}

int64_t gh_delta_seconds(gh_str_t v) { return delta_arg(v, 0); }

/* ---- Cache-Control ---------------------------------------------------------------- */

void gh_cc_init(gh_cc_t *cc)
{
    cc->flags = 0;
    cc->max_age = cc->s_maxage = cc->max_stale = cc->min_fresh = GH_CC_UNSET;
    cc->swr = cc->sie = GH_CC_UNSET;
    cc->private_fields = GH_STR_NULL;
}

/* max-age and s-maxage: a bad argument or a second, different value is INVALID. */
static void set_freshness(gh_cc_t *cc, int64_t *slot, int64_t v)
{
    if (v < 0)
        cc->flags |= GH_CC_INVALID;
    else if (*slot == GH_CC_UNSET)
        *slot = v;
    else if (*slot != v)
        cc->flags |= GH_CC_INVALID;
}

/* Request and extension windows: a bad argument is ignored, repeats keep the smaller
 * (or, for min-fresh, the larger) value. */
static void set_window(int64_t *slot, int64_t v, int keep_max)
{
    if (v < 0)
        return;
    if (*slot == GH_CC_UNSET || (keep_max ? v > *slot : v < *slot))
        *slot = v;
}

/* One directive: name, whether an argument was given, the argument (quotes stripped),
 * whether it was quoted, and whether the directive was malformed. */
static void apply(gh_cc_t *cc, gh_str_t name, int has_arg, gh_str_t arg, int quoted, int bad)
{
#define IS(lit) name_is(name, lit)
    int plain = !has_arg && !bad; /* a directive defined without an argument, used so */
    int64_t d = (has_arg && !bad) ? delta_arg(arg, quoted) : -1;

    if (IS("max-age")) {
        set_freshness(cc, &cc->max_age, d);
    } else if (IS("s-maxage")) {
        set_freshness(cc, &cc->s_maxage, d);
    } else if (IS("max-stale")) {
        set_window(&cc->max_stale, has_arg || bad ? d : GH_DELTA_MAX, 0);
    } else if (IS("min-fresh")) {
        set_window(&cc->min_fresh, d, 1);
    } else if (IS("stale-while-revalidate")) {
        set_window(&cc->swr, d, 0);
    } else if (IS("stale-if-error")) {
        set_window(&cc->sie, d, 0);
    } else if (IS("no-store")) {
        cc->flags |= GH_CC_NO_STORE;
    } else if (IS("no-cache")) {
        cc->flags |= GH_CC_NO_CACHE;
        if (has_arg && !bad)
            cc->flags |= GH_CC_NO_CACHE_FIELDS;
    } else if (IS("private")) {
        if (!has_arg || bad) {
            cc->flags |= GH_CC_PRIVATE;
        } else if (!(cc->flags & GH_CC_PRIVATE_FIELDS)) {
            cc->flags |= GH_CC_PRIVATE_FIELDS;
            cc->private_fields = arg;
        } else if (!gh_str_eq(cc->private_fields, arg)) {
            cc->flags |= GH_CC_PRIVATE;
        }
    } else if (IS("must-revalidate")) {
        cc->flags |= GH_CC_MUST_REVALIDATE;
    } else if (IS("proxy-revalidate")) {
        cc->flags |= GH_CC_PROXY_REVALIDATE;
    } else if (plain) {
        if (IS("public"))
            cc->flags |= GH_CC_PUBLIC;
        else if (IS("must-understand"))
            cc->flags |= GH_CC_MUST_UNDERSTAND;
        else if (IS("only-if-cached"))
            cc->flags |= GH_CC_ONLY_IF_CACHED;
        else if (IS("no-transform"))
            cc->flags |= GH_CC_NO_TRANSFORM;
        else if (IS("immutable"))
            cc->flags |= GH_CC_IMMUTABLE;
    }
#undef IS
}

/* From i, the index of the next ',' outside a quoted string (or n). */
static size_t skip_element(const char *p, size_t n, size_t i)
{
    int q = 0;
    for (; i < n; i++) {
        if (q && p[i] == '\\')
            i++;
        else if (p[i] == '"')
            q = !q;
        else if (!q && p[i] == ',')
            break;
    }
    return GH_MIN(i, n);
}

void gh_cc_parse(gh_cc_t *cc, gh_str_t value)
{
    const char *p = value.p;
    size_t n = p ? value.n : 0, i = 0;
    while (i < n) {
        while (i < n && (is_ows(p[i]) || p[i] == ','))
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && is_tchar((unsigned char)p[i]))
            i++;
        gh_str_t name = gh_str(p + s, i - s), arg = GH_STR_NULL;
        int has_arg = 0, quoted = 0, bad = 0;
        if (!name.n) { /* not a directive: skip the element */
            i = skip_element(p, n, i);
            continue;
        }
        while (i < n && is_ows(p[i]))
            i++;
        if (i < n && p[i] == '=') {
            has_arg = 1;
            i++;
            while (i < n && is_ows(p[i]))
                i++;
            if (i < n && p[i] == '"') {
                quoted = 1;
                s = ++i;
                while (i < n && p[i] != '"')
                    i += (p[i] == '\\') ? 2 : 1;
                if (i >= n) { /* unterminated */
                    bad = 1;
                    i = n;
                } else {
                    arg = gh_str(p + s, i - s);
                    i++;
                }
            } else {
                s = i;
                while (i < n && is_tchar((unsigned char)p[i]))
                    i++;
                arg = gh_str(p + s, i - s);
                bad = arg.n == 0;
            }
        }
        while (i < n && is_ows(p[i]))
            i++;
        if (i < n && p[i] != ',') { /* junk after the directive */
            bad = 1;
            i = skip_element(p, n, i);
        }
        apply(cc, name, has_arg, arg, quoted, bad);
    }
}

/* ---- HTTP dates ------------------------------------------------------------------- */

static const char MONTHS[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
static const char *const WDAYS[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                     "Thursday", "Friday", "Saturday"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* n ASCII digits at p, or -1. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* "Jan".."Dec" at p: 1..12, or 0. */
static int month(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (!memcmp(p, MONTHS + 3 * i, 3))
            return i + 1;
    return 0;
}

/* A weekday name of exactly n bytes at p: the first three letters (short) or all. */
static int wday_ok(const char *p, size_t n, int full)
{
    for (int i = 0; i < 7; i++) {
        size_t l = full ? strlen(WDAYS[i]) : 3;
        if (n == l && !memcmp(p, WDAYS[i], l))
            return 1;
    }
    return 0;
}

/* Checks the fields and converts; -1 when out of range. Years before 1970 give 0. */
static int64_t mktime_utc(int64_t y, int mon, int day, const char *hms)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int h = digits(hms, 2), mi = digits(hms + 3, 2), s = digits(hms + 6, 2);
    if (y < 0 || !mon || day < 1 || hms[2] != ':' || hms[5] != ':' || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || s < 0 || s > 60)
        return -1;
    if (day > mdays[mon - 1] + (mon == 2 && leap(y)))
        return -1;
    int64_t t = days_from_civil(y, mon, day) * 86400 + h * 3600 + mi * 60 + s;
    return t < 0 ? 0 : t;
}

int64_t gh_http_date(gh_str_t v)
{
    const char *p = v.p;
    size_t n = p ? v.n : 0;
    if (n == 29 && p[3] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        if (!wday_ok(p, 3, 0) || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
            memcmp(p + 25, " GMT", 4))
            return -1;
        return mktime_utc(digits(p + 12, 4), month(p + 8), digits(p + 5, 2), p + 17);
    }
    if (n == 24 && p[3] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        if (!wday_ok(p, 3, 0) || p[7] != ' ' || p[10] != ' ' || p[19] != ' ')
            return -1;
        int day = p[8] == ' ' ? digits(p + 9, 1) : digits(p + 8, 2);
        return mktime_utc(digits(p + 20, 4), month(p + 4), day, p + 11);
    }
    const char *c = n ? memchr(p, ',', n) : NULL; /* rfc850: Sunday, 06-Nov-94 08:49:37 GMT */
    if (!c || n != (size_t)(c - p) + 24 || !wday_ok(p, (size_t)(c - p), 1))
        return -1;
    const char *d = c + 2;
    if (c[1] != ' ' || d[2] != '-' || d[6] != '-' || d[9] != ' ' || memcmp(d + 18, " GMT", 4))
        return -1;
    int yy = digits(d + 7, 2);
    if (yy < 0)
        return -1;
    int64_t y = 2000 + yy; /* more than 50 years ahead: the past century (RFC 9110 5.6.7) */
    if (y > RFC850_NOW_YEAR + 50)
        y -= 100;
    return mktime_utc(y, month(d + 3), digits(d, 2), d + 10);
}

int gh_http_date_fmt(int64_t t, char out[30])
{
    t = GH_MAX(0, GH_MIN(t, YEAR_9999_END));
    int64_t days = t / 86400, sec = t % 86400, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    const char *w = WDAYS[(days + 4) % 7]; /* 1970-01-01 was a Thursday */
    out[0] = w[0], out[1] = w[1], out[2] = w[2], out[3] = ',', out[4] = ' ';
    out[5] = (char)('0' + d / 10), out[6] = (char)('0' + d % 10), out[7] = ' ';
    memcpy(out + 8, MONTHS + 3 * (m - 1), 3);
    out[11] = ' ';
    for (int i = 15, yv = (int)y; i >= 12; i--, yv /= 10)
        out[i] = (char)('0' + yv % 10);
    int hms[3] = {(int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60)};
    for (int i = 0; i < 3; i++) {
        out[16 + 3 * i] = i ? ':' : ' ';
        out[17 + 3 * i] = (char)('0' + hms[i] / 10);
        out[18 + 3 * i] = (char)('0' + hms[i] % 10);
    }
    memcpy(out + 25, " GMT", 5); /* with the NUL */
    return 29;
}

/* ---- status codes ----------------------------------------------------------------- */

int gh_status_cacheable_default(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    default:
        return 0;
    }
}

int gh_status_understood(int status)
{
    return (status >= 200 && status <= 206) ||
           (status >= 300 && status <= 308 && status != 305 && status != 306) ||
           (status >= 400 && status <= 417) || status == 421 || status == 422 ||
           status == 426 || (status >= 500 && status <= 505);
}

/* ---- storing and freshness -------------------------------------------------------- */

int gh_cache_storable(const gh_req_facts_t *req, const gh_resp_facts_t *resp)
{
    const gh_cc_t *cc = &resp->cc;
    if (req->method_id != GH_M_GET)
        return 0;
    if (resp->status < 200 || resp->status > 599 || resp->status == 206 || resp->status == 304)
        return 0;
    if (req->cc.flags & GH_CC_NO_STORE)
        return 0;
    if (cc->flags & GH_CC_MUST_UNDERSTAND) { /* 5.2.2.3: overrides no-store when understood */
        if (!gh_status_understood(resp->status))
            return 0;
    } else if (cc->flags & GH_CC_NO_STORE) {
        return 0;
    }
    if ((cc->flags & GH_CC_PRIVATE) || resp->has_vary_star)
        return 0;
    if (req->authorization &&
        !(cc->flags & (GH_CC_MUST_REVALIDATE | GH_CC_PUBLIC)) && cc->s_maxage < 0)
        return 0;
    return resp->has_expires || cc->max_age >= 0 || cc->s_maxage >= 0 ||
           (cc->flags & (GH_CC_INVALID | GH_CC_PUBLIC)) ||
           gh_status_cacheable_default(resp->status);
}

int64_t gh_fresh_lifetime(const gh_resp_facts_t *resp, int64_t response_time, int64_t default_ttl,
                          int64_t max_ttl, int *heuristic)
{
    const gh_cc_t *cc = &resp->cc;
    int64_t base = resp->date >= 0 ? resp->date : response_time, lt = 0;
    int h = 0;
    if (cc->flags & GH_CC_INVALID)
        lt = 0;
    else if (cc->s_maxage >= 0)
        lt = cc->s_maxage;
    else if (cc->max_age >= 0)
        lt = cc->max_age;
    else if (resp->has_expires && !resp->targeted)
        lt = resp->expires < 0 ? 0 : sat_sub(resp->expires, base);
    else if ((cc->flags & GH_CC_PUBLIC) || gh_status_cacheable_default(resp->status)) {
        h = 1;
        if (default_ttl > 0)
            lt = default_ttl;
        else if (resp->last_modified >= 0 && resp->last_modified < base)
            lt = sat_sub(base, resp->last_modified) / 10;
    }
    if (heuristic)
        *heuristic = h;
    lt = GH_MAX(lt, 0);
    return max_ttl > 0 ? GH_MIN(lt, max_ttl) : lt;
}

int64_t gh_initial_age(const gh_resp_facts_t *resp, int64_t request_time, int64_t response_time)
{
    int64_t apparent = resp->date >= 0 ? GH_MAX(0, sat_sub(response_time, resp->date)) : 0;
    int64_t delay = sat_sub(response_time, request_time);
    int64_t corrected = sat_add(GH_MAX(resp->age, 0), delay);
    return GH_MAX(apparent, corrected);
}

int64_t gh_current_age(const gh_stored_facts_t *s, int64_t now)
{
    int64_t resident = GH_MAX(0, sat_sub(now, s->response_time));
    return sat_add(GH_MAX(s->initial_age, 0), resident);
}

/* must-revalidate, proxy-revalidate and (shared cache) s-maxage forbid serving stale. */
static int no_stale(const gh_cc_t *cc)
{
    return (cc->flags & (GH_CC_MUST_REVALIDATE | GH_CC_PROXY_REVALIDATE)) || cc->s_maxage >= 0;
}

int gh_cache_usable(const gh_req_facts_t *req, const gh_stored_facts_t *s, int64_t now)
{
    const gh_cc_t *rq = &req->cc;
    if ((rq->flags & GH_CC_NO_CACHE) || req->pragma_no_cache || (s->cc.flags & GH_CC_NO_CACHE))
        return GH_USE_REVALIDATE;
    int64_t age = gh_current_age(s, now), lt = GH_MAX(s->lifetime, 0);
    /* The request's max-age; an unreadable one asks for a response of age 0. */
    int64_t max_age = (rq->flags & GH_CC_INVALID) ? 0 : rq->max_age;
    /* How stale the request must accept: past the lifetime, and past its max-age. */
    int64_t need = sat_sub(age, lt);
    if (max_age >= 0)
        need = GH_MAX(need, sat_sub(age, max_age));
    int stale_ok = rq->max_stale >= 0 && rq->max_stale >= need;

    if (lt > age) { /* fresh by the origin's word */
        if (rq->min_fresh >= 0 && lt - age < rq->min_fresh)
            return GH_USE_REVALIDATE;
        if (max_age < 0 || age <= max_age)
            return GH_USE_FRESH;
        return stale_ok ? GH_USE_STALE_OK : GH_USE_REVALIDATE; /* too old for the client */
    }
    /* Stale. A client asking for min-fresh wants a fresh response whatever max-stale says. */
    if (no_stale(&s->cc) || rq->min_fresh >= 0)
        return GH_USE_REVALIDATE;
    if (stale_ok)
        return GH_USE_STALE_OK;
    /* Without max-stale, a request max-age says the client does not want stale (5.2.1.1). */
    if (max_age < 0 && s->cc.swr >= 0 && s->cc.swr >= sat_sub(age, lt))
        return GH_USE_STALE_SWR;
    return GH_USE_REVALIDATE;
}

int gh_cache_stale_if_error(const gh_req_facts_t *req, const gh_stored_facts_t *s, int64_t now)
{
    if (no_stale(&s->cc))
        return 0;
    int64_t window = GH_MAX(req->cc.sie, s->cc.sie);
    if (window < 0)
        return 0;
    int64_t staleness = GH_MAX(0, sat_sub(gh_current_age(s, now), GH_MAX(s->lifetime, 0)));
    return staleness <= window;
}
