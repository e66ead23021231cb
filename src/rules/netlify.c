/* netlify.c: readers of Netlify's `_redirects` and `_headers` files, into rules (rules.h).
 *
 * Both read line by line (LF or CRLF), '#' starting a comment line, blank lines skipped,
 * and report each problem with the file, line and column of the offending field, then go
 * on with the next line (at most 50 problems are reported; then reading stops). A line
 * with a problem adds no rule; the others are appended. Bounds that a typo or a hostile
 * file could push: a line over 8 KiB, more than 100,000 rules, a NUL byte anywhere.
 *
 * `_redirects`: FROM [name=value ...] TO [STATUS[!]] [Key=v1,v2 ...]. FROM is a path
 * pattern or an http(s):// URL (a domain-level rule: host + path). The query fields
 * ("id=:id" captures, "id=" any value, "id=5" that value) come before TO, which is the
 * first field starting with '/' or http(s)://. STATUS: 301 (default), 302, 303, 307, 308
 * redirect; 200 rewrites (proxies, to a URL); another 4xx/5xx rewrites and answers with
 * it. "!" forces. Conditions: Country (upper-cased), Language (lower-cased), Cookie (any
 * one of the names present); Role and Sign need Netlify's services and are refused.
 *
 * `_headers`: a path pattern (or URL) at the start of a line, then indented
 * "Name: value" lines: one header-only rule per block, each header a response
 * GH_HE_APPEND (the session joins a name that several edits or blocks give).
 *
 * Called by config.c (site rules files) and the fuzz target. Calls rules.c. */
#include "rules/rules.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_LINE 8192
#define MAX_RULES_PER_FILE 100000
#define MAX_ERRORS 50
#define MAX_FIELDS 64
#define MAX_BLOCK_HEADERS 256

typedef struct {
    gh_ruleset_t *rs;
    const char *file; /* owned by rs */
    gh_rules_err_fn err;
    void *arg;
    int nerr;
    bool stop;
    uint32_t nrules;
} px_t;

typedef struct {
    const char *p;
    size_t n;
    uint32_t col; /* 1-based */
} field_t;

static void perr(px_t *x, uint32_t line, uint32_t col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void perr(px_t *x, uint32_t line, uint32_t col, const char *fmt, ...)
{
    char msg[512];
    if (x->stop)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (x->err)
        x->err(x->arg, x->file, line, col, msg);
    if (++x->nerr >= MAX_ERRORS)
        x->stop = true;
}

/* Field text for a message: at most 100 bytes of it. */
#define FMT_F(f) (int)GH_MIN((f).n, 100), (f).p

static inline bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }
static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
static inline bool is_alpha(char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c; }
static inline char upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c & ~0x20) : c; }

static bool is_tchar(char c) { return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c)); }

static size_t split(const char *p, size_t n, field_t *f, size_t max, bool *more)
{
    size_t nf = 0;
    *more = false;
    for (size_t i = 0; i < n;) {
        while (i < n && is_ws(p[i]))
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && !is_ws(p[i]))
            i++;
        if (nf == max) {
            *more = true;
            break;
        }
        f[nf++] = (field_t){p + s, i - s, (uint32_t)s + 1};
    }
    return nf;
}

static bool starts(field_t f, const char *lit)
{
    size_t l = strlen(lit);
    return f.n >= l && strncasecmp(f.p, lit, l) == 0;
}

static size_t url_scheme(field_t f)
{
    return starts(f, "http://") ? 7 : starts(f, "https://") ? 8 : 0;
}

static bool is_target(field_t f) { return f.p[0] == '/' || url_scheme(f); }

static char *dup_f(px_t *x, const char *p, size_t n) { return gh_rules_strdup(x->rs, p, n); }

/* A rule's path field: a pattern, or an http(s):// URL giving the host (lower case, port
 * dropped) and the pattern (its path, "/" when it has none). false after an error. */
static bool parse_from(px_t *x, uint32_t line, field_t f, gh_rule_t *r)
{
    size_t sl = url_scheme(f);
    if (!sl) {
        if (f.p[0] != '/') {
            perr(x, line, f.col, "'%.*s' is neither a path (starting with '/') nor an http(s):// URL", FMT_F(f));
            return false;
        }
        r->from = dup_f(x, f.p, f.n);
    } else {
        size_t hs = sl, he = sl;
        while (he < f.n && f.p[he] != '/')
            he++;
        size_t hn = he - hs; /* host[:port], or [v6][:port] */
        const char *h = f.p + hs;
        if (hn && h[0] == '[') {
            const char *rb = memchr(h, ']', hn);
            hn = rb ? (size_t)(rb - h) + 1 : hn;
        } else {
            const char *colon = memchr(h, ':', hn);
            hn = colon ? (size_t)(colon - h) : hn;
        }
        if (hn == 0 || memchr(h, '@', he - hs)) {
            perr(x, line, f.col, "URL '%.*s' has no host (or has user information)", FMT_F(f));
            return false;
        }
        for (size_t i = 0; i < hn; i++) {
            if (!is_alpha(h[i]) && !is_digit(h[i]) && (!h[i] || !strchr("-._[]:", h[i]))) {
                perr(x, line, f.col + (uint32_t)(hs + i), "URL '%.*s': invalid host", FMT_F(f));
                return false;
            }
        }
        r->host = dup_f(x, h, hn);
        if (r->host)
            for (size_t i = 0; i < hn; i++)
                r->host[i] = lower(r->host[i]);
        r->from = he < f.n ? dup_f(x, f.p + he, f.n - he) : dup_f(x, "/", 1);
    }
    if (!r->from || (sl && !r->host)) {
        perr(x, line, f.col, "out of memory");
        return false;
    }
    /* the pattern alone, checked now for a message with its column */
    gh_rule_t only = {.from = r->from, .host = r->host};
    char buf[512];
    const char *m = gh_rules_check(&only, buf, sizeof buf);
    if (m) {
        perr(x, line, f.col, "%s", m);
        return false;
    }
    return true;
}

/* Append r (fully checked) to the set, within the per-file bound. */
static void append(px_t *x, uint32_t line, uint32_t col, const gh_rule_t *r)
{
    char buf[512];
    const char *m = gh_rules_check(r, buf, sizeof buf);
    if (m) {
        perr(x, line, col, "%s", m);
        return;
    }
    if (x->nrules >= MAX_RULES_PER_FILE) {
        perr(x, line, 1, "more than %d rules in one file", MAX_RULES_PER_FILE);
        x->stop = true;
        return;
    }
    gh_rule_t *d = gh_rules_add(x->rs);
    if (!d) {
        perr(x, line, 1, "out of memory");
        x->stop = true;
        return;
    }
    *d = *r;
    x->nrules++;
}

/* Start reading: the file's name into the set; false (one error) on a NUL byte. */
static bool begin(px_t *x, const char *file, const char *text, size_t len)
{
    const char *name = file ? file : "";
    x->file = gh_rules_strdup(x->rs, name, strlen(name));
    if (!x->file) {
        x->file = name;
        perr(x, 0, 0, "out of memory");
        return false;
    }
    const char *z = text ? memchr(text, 0, len) : NULL;
    if (z) {
        uint32_t line = 1;
        const char *ls = text;
        for (const char *p = text; p < z; p++)
            if (*p == '\n') {
                line++;
                ls = p + 1;
            }
        perr(x, line, (uint32_t)(z - ls) + 1, "NUL byte in the file (not a text file?)");
        return false;
    }
    return true;
}

/* Call fn for every line (without its LF or CRLF) that is not blank, a comment or too long.
 * A UTF-8 byte order mark that some editors write first is skipped. */
static void each_line(px_t *x, const char *text, size_t len, void (*fn)(px_t *, uint32_t, const char *, size_t, void *),
                      void *ctx)
{
    const char *p = text, *end = text + len;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        p += 3;
    for (uint32_t line = 1; p && p < end && !x->stop; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (n > MAX_LINE) {
            perr(x, line, MAX_LINE + 1, "line longer than %d bytes", MAX_LINE);
        } else {
            size_t i = 0;
            while (i < n && is_ws(p[i]))
                i++;
            if (i < n && p[i] != '#')
                fn(x, line, p, n, ctx);
        }
        p = nl ? nl + 1 : NULL;
    }
}

/* ---------------------------------------------------------------- _redirects */

/* "301", "200!": action, status and force into r; false after an error. */
static bool parse_status(px_t *x, uint32_t line, field_t f, gh_rule_t *r)
{
    size_t n = f.n;
    if (n && f.p[n - 1] == '!') {
        r->force = 1;
        n--;
    }
    int st = 0;
    size_t i = 0;
    for (; i < n && i < 4 && is_digit(f.p[i]); i++)
        st = st * 10 + (f.p[i] - '0');
    if (n == 0 || i != n) {
        perr(x, line, f.col, "invalid status '%.*s' (a number, optionally followed by '!')", FMT_F(f));
        return false;
    }
    if (st == 200 || (st >= 400 && st <= 599)) {
        r->action = GH_RULE_REWRITE;
    } else if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
        r->action = GH_RULE_REDIRECT;
    } else {
        perr(x, line, f.col, "status %.*s is not supported: use 301, 302, 303, 307, 308 (redirect), 200 (rewrite) "
             "or a 4xx/5xx (rewrite answered with that status)", FMT_F(f));
        return false;
    }
    r->status = st;
    return true;
}

/* "name=value" query condition (value ":x" captures). */
static bool parse_query(px_t *x, uint32_t line, field_t f, gh_rule_query_t *q)
{
    const char *eq = memchr(f.p, '=', f.n);
    size_t nn = (size_t)(eq - f.p), vn = f.n - nn - 1;
    const char *v = eq + 1;
    if (nn == 0) {
        perr(x, line, f.col, "query parameter '%.*s' has no name", FMT_F(f));
        return false;
    }
    if (vn && v[0] == ':') {
        size_t k = 1;
        while (k < vn && (is_alpha(v[k]) || is_digit(v[k]) || v[k] == '_'))
            k++;
        if (k == 1 || k != vn) {
            perr(x, line, f.col + (uint32_t)nn + 1, "query capture '%.*s' must be ':' and a name of letters, digits "
                 "or '_'", (int)GH_MIN(vn, 100), v);
            return false;
        }
    }
    q->name = dup_f(x, f.p, nn);
    q->value = dup_f(x, v, vn);
    if (!q->name || !q->value) {
        perr(x, line, f.col, "out of memory");
        return false;
    }
    return true;
}

enum { C_COUNTRY = 1, C_LANGUAGE = 2, C_COOKIE = 4 };

/* "Key=v1,v2" condition into r; false after an error. */
static bool parse_cond(px_t *x, uint32_t line, field_t f, gh_rule_t *r, unsigned *seen)
{
    const char *eq = memchr(f.p, '=', f.n);
    if (!eq) {
        perr(x, line, f.col, "unexpected '%.*s': after the target come the status and Key=value conditions",
             FMT_F(f));
        return false;
    }
    gh_str_t key = gh_str(f.p, (size_t)(eq - f.p));
    const char *v = eq + 1, *vend = f.p + f.n;
    unsigned which;
    if (gh_str_caseeq_lit(key, "country")) {
        which = C_COUNTRY;
    } else if (gh_str_caseeq_lit(key, "language")) {
        which = C_LANGUAGE;
    } else if (gh_str_caseeq_lit(key, "cookie")) {
        which = C_COOKIE;
    } else if (gh_str_caseeq_lit(key, "role")) {
        perr(x, line, f.col, "Role conditions need Netlify's identity service; not supported");
        return false;
    } else if (gh_str_caseeq_lit(key, "sign")) {
        perr(x, line, f.col, "signed proxy redirects (Sign=) need Netlify's signing service; not supported");
        return false;
    } else {
        perr(x, line, f.col, "unknown condition '%.*s' (Country, Language or Cookie)", (int)GH_MIN(key.n, 100),
             key.p);
        return false;
    }
    if (*seen & which) {
        perr(x, line, f.col, "%.*s is given twice: list the values once, separated by ','", (int)key.n, key.p);
        return false;
    }
    *seen |= which;
    uint32_t cnt = 1;
    for (const char *p = v; p < vend; p++)
        cnt += *p == ',';
    char **vals = gh_rules_alloc(x->rs, cnt * sizeof *vals);
    gh_rule_cookie_t *cookies = which == C_COOKIE ? gh_rules_alloc(x->rs, cnt * sizeof *cookies) : NULL;
    if (!vals || (which == C_COOKIE && !cookies)) {
        perr(x, line, f.col, "out of memory");
        return false;
    }
    uint32_t i = 0;
    for (const char *p = v; i < cnt; i++) {
        const char *c = memchr(p, ',', (size_t)(vend - p));
        const char *e = c ? c : vend;
        size_t n = (size_t)(e - p);
        uint32_t col = f.col + (uint32_t)(p - f.p);
        bool ok = n > 0;
        for (size_t k = 0; ok && k < n; k++)
            ok = which == C_COUNTRY ? is_alpha(p[k]) : which == C_LANGUAGE ? (is_alpha(p[k]) || is_digit(p[k]) ||
                                                                            p[k] == '-') : is_tchar(p[k]);
        if (which == C_COUNTRY && n != 2)
            ok = false;
        if (!ok) {
            perr(x, line, col, "%.*s: '%.*s' is not %s", (int)key.n, key.p, (int)GH_MIN(n, 100), p,
                 which == C_COUNTRY ? "an ISO 3166 two-letter country code"
                 : which == C_LANGUAGE ? "a language tag (\"en\", \"pt-BR\")" : "a cookie name");
            return false;
        }
        if (!(vals[i] = dup_f(x, p, n))) {
            perr(x, line, col, "out of memory");
            return false;
        }
        for (size_t k = 0; k < n && which != C_COOKIE; k++)
            vals[i][k] = which == C_COUNTRY ? upper(vals[i][k]) : lower(vals[i][k]);
        p = e + 1;
    }
    if (which == C_COUNTRY) {
        r->countries = vals;
        r->ncountries = cnt;
    } else if (which == C_LANGUAGE) {
        r->languages = vals;
        r->nlanguages = cnt;
    } else {
        for (i = 0; i < cnt; i++)
            cookies[i].name = vals[i];
        r->cookies = cookies;
        r->ncookies = cnt;
        r->cookies_any = 1; /* Netlify: one of the listed cookies is enough */
    }
    return true;
}

static void redirect_line(px_t *x, uint32_t line, const char *p, size_t n, void *ctx)
{
    field_t f[MAX_FIELDS];
    bool more;
    size_t nf = split(p, n, f, MAX_FIELDS, &more);
    if (more) {
        perr(x, line, f[MAX_FIELDS - 1].col, "more than %d fields on a line", MAX_FIELDS);
        return;
    }
    gh_rule_t r = {.file = x->file, .line = line, .action = GH_RULE_REDIRECT, .status = 301};
    if (!parse_from(x, line, f[0], &r))
        return;
    size_t i = 1, q0 = 1;
    while (i < nf && !is_target(f[i])) {
        if (!memchr(f[i].p, '=', f[i].n)) {
            perr(x, line, f[i].col, "expected the target (a path or an http(s):// URL), got '%.*s'", FMT_F(f[i]));
            return;
        }
        i++;
    }
    if (i == nf) {
        perr(x, line, (uint32_t)n + 1, "missing target (a path or an http(s):// URL) after '%.*s'",
             FMT_F(f[nf - 1]));
        return;
    }
    if (i > q0) {
        r.nquery = (uint32_t)(i - q0);
        r.query = gh_rules_alloc(x->rs, r.nquery * sizeof *r.query);
        if (!r.query) {
            perr(x, line, f[q0].col, "out of memory");
            return;
        }
        for (size_t k = q0; k < i; k++)
            if (!parse_query(x, line, f[k], &r.query[k - q0]))
                return;
    }
    field_t to = f[i++];
    if (!(r.to = dup_f(x, to.p, to.n))) {
        perr(x, line, to.col, "out of memory");
        return;
    }
    if (i < nf && !memchr(f[i].p, '=', f[i].n) && !parse_status(x, line, f[i++], &r))
        return;
    unsigned seen = 0;
    for (; i < nf; i++)
        if (!parse_cond(x, line, f[i], &r, &seen))
            return;
    append(x, line, to.col, &r);
}

int gh_rules_netlify_redirects(gh_ruleset_t *rs, const char *file, const char *text, size_t len,
                               gh_rules_err_fn err, void *arg)
{
    px_t x = {.rs = rs, .err = err, .arg = arg};
    if (begin(&x, file, text, len))
        each_line(&x, text, len, redirect_line, NULL);
    return x.nerr;
}

/* ---------------------------------------------------------------- _headers */

typedef struct {
    bool open;   /* a path line was read (well-formed): its header lines follow */
    bool bad;    /* the last path line had an error: skip its header lines quietly */
    gh_rule_t r;
    uint32_t col;
    gh_rule_hedit_t *e; /* the block's headers (grown with realloc, copied into rs at the end) */
    uint32_t n, cap;
} block_t;

static void block_end(px_t *x, block_t *b)
{
    if (b->open && b->n) {
        b->r.edits = gh_rules_alloc(x->rs, b->n * sizeof *b->r.edits);
        if (!b->r.edits) {
            perr(x, b->r.line, b->col, "out of memory");
        } else {
            memcpy(b->r.edits, b->e, b->n * sizeof *b->e);
            b->r.nedits = b->n;
            append(x, b->r.line, b->col, &b->r);
        }
    }
    b->open = false;
    b->n = 0;
}

static void header_field(px_t *x, uint32_t line, const char *p, size_t n, block_t *b)
{
    size_t i = 0;
    while (i < n && is_ws(p[i]))
        i++;
    uint32_t col = (uint32_t)i + 1;
    if (!b->open) {
        if (!b->bad)
            perr(x, line, col, "indented header line before any path (a path starts at the beginning of a line)");
        return;
    }
    const char *colon = memchr(p + i, ':', n - i);
    if (!colon) {
        perr(x, line, col, "expected 'Name: value', found no ':'");
        return;
    }
    size_t ne = (size_t)(colon - p);
    while (ne > i && is_ws(p[ne - 1]))
        ne--;
    if (ne == i) {
        perr(x, line, col, "missing header name before ':'");
        return;
    }
    for (size_t k = i; k < ne; k++) {
        if (!is_tchar(p[k])) {
            perr(x, line, (uint32_t)k + 1, "'%.*s' is not a valid header name", (int)GH_MIN(ne - i, 100), p + i);
            return;
        }
    }
    size_t vs = (size_t)(colon - p) + 1, ve = n;
    while (vs < ve && is_ws(p[vs]))
        vs++;
    while (ve > vs && is_ws(p[ve - 1]))
        ve--;
    for (size_t k = vs; k < ve; k++) {
        unsigned char c = (unsigned char)p[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            perr(x, line, (uint32_t)k + 1, "header %.*s: control character in the value", (int)(ne - i), p + i);
            return;
        }
    }
    if (b->n >= MAX_BLOCK_HEADERS) {
        perr(x, line, col, "more than %d headers for one path", MAX_BLOCK_HEADERS);
        return;
    }
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 8;
        gh_rule_hedit_t *ne2 = realloc(b->e, cap * sizeof *ne2);
        if (!ne2) {
            perr(x, line, col, "out of memory");
            return;
        }
        b->e = ne2;
        b->cap = cap;
    }
    gh_rule_hedit_t *e = &b->e[b->n];
    *e = (gh_rule_hedit_t){.op = GH_HE_APPEND, .resp = 1, .name_len = ne - i, .value_len = ve - vs};
    e->name = dup_f(x, p + i, ne - i);
    e->value = dup_f(x, p + vs, ve - vs);
    if (!e->name || !e->value) {
        perr(x, line, col, "out of memory");
        return;
    }
    b->n++;
}

static void headers_line(px_t *x, uint32_t line, const char *p, size_t n, void *ctx)
{
    block_t *b = ctx;
    if (is_ws(p[0])) {
        header_field(x, line, p, n, b);
        return;
    }
    block_end(x, b);
    field_t f[2];
    bool more;
    size_t nf = split(p, n, f, 2, &more);
    b->bad = true;
    b->r = (gh_rule_t){.file = x->file, .line = line, .action = GH_RULE_NONE};
    if (!parse_from(x, line, f[0], &b->r))
        return;
    if (nf > 1) {
        perr(x, line, f[1].col, "unexpected '%.*s' after the path (headers go on the indented lines below)",
             FMT_F(f[1]));
        return;
    }
    b->bad = false;
    b->open = true;
    b->col = f[0].col;
}

int gh_rules_netlify_headers(gh_ruleset_t *rs, const char *file, const char *text, size_t len,
                             gh_rules_err_fn err, void *arg)
{
    px_t x = {.rs = rs, .err = err, .arg = arg};
    block_t b = {.open = false};
    if (begin(&x, file, text, len)) {
        each_line(&x, text, len, headers_line, &b);
        if (!x.stop)
            block_end(&x, &b);
    }
    free(b.e);
    return x.nerr;
}
