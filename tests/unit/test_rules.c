/* test_rules.c: request rules (src/rules/rules.c) and the Netlify readers (src/rules/netlify.c).
 *
 * Every example file under tests/rules/netlify is read from disk (the test runs from the repo
 * root) and its rules checked field by field; every file under tests/rules/netlify/invalid
 * says on its first lines which errors it gives ("# expect: LINE:COL: text", one line per
 * error, in order; "# rules: N" the rules its good lines still add). Then matching, the
 * index (against a one-rule-at-a-time oracle, and a candidate count over 10,000 rules),
 * expansion, validation and the readers' bounds; a micro-benchmark prints timings only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <time.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rules/rules.h"
#include "t.h"

#define DIR_OK "tests/rules/netlify"
#define DIR_BAD "tests/rules/netlify/invalid"

/* ---------------------------------------------------------------- helpers */

typedef struct {
    char file[256];
    uint32_t line, col;
    char msg[512];
} terr_t;

typedef struct {
    terr_t e[64];
    int n;  /* stored */
    int calls;
} terrs_t;

static void on_err(void *arg, const char *file, uint32_t line, uint32_t col, const char *msg)
{
    terrs_t *t = arg;
    t->calls++;
    if (t->n < (int)GH_ARRAY_LEN(t->e)) {
        terr_t *e = &t->e[t->n++];
        snprintf(e->file, sizeof e->file, "%s", file ? file : "(null)");
        e->line = line;
        e->col = col;
        snprintf(e->msg, sizeof e->msg, "%s", msg);
    }
}

static void print_errs(const terrs_t *t)
{
    for (int i = 0; i < t->n; i++)
        fprintf(stderr, "    %s:%u:%u: %s\n", t->e[i].file, t->e[i].line, t->e[i].col, t->e[i].msg);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    if (b)
        b[n] = 0; /* for sscanf over the expect lines (the readers get len) */
    *len = n;
    return b;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Parse one file (by its extension) into rs; parser errors into t. -1 when it cannot be read. */
static int load_into(gh_ruleset_t *rs, const char *path, terrs_t *t)
{
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return -1;
    int n = ends_with(path, ".headers") ? gh_rules_netlify_headers(rs, path, text, len, on_err, t)
                                        : gh_rules_netlify_redirects(rs, path, text, len, on_err, t);
    free(text);
    return n;
}

/* A valid example: parsed and compiled without a word. */
static gh_ruleset_t *load_ok(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", DIR_OK, name);
    gh_ruleset_t *rs = gh_rules_new();
    terrs_t t = {.n = 0};
    int n = load_into(rs, path, &t);
    if (n != 0) {
        t_cur_fail++;
        fprintf(stderr, "%s: %d errors reading it\n", path, n);
        print_errs(&t);
    }
    if (gh_rules_compile(rs, on_err, &t) != 0) {
        t_cur_fail++;
        fprintf(stderr, "%s: does not compile\n", path);
        print_errs(&t);
    }
    return rs;
}

static gh_ruleset_t *parse_text(const char *redirects, const char *headers, terrs_t *t)
{
    gh_ruleset_t *rs = gh_rules_new();
    if (redirects)
        gh_rules_netlify_redirects(rs, "_redirects", redirects, strlen(redirects), on_err, t);
    if (headers)
        gh_rules_netlify_headers(rs, "_headers", headers, strlen(headers), on_err, t);
    return rs;
}

/* Parse and compile text that must be fine. */
static gh_ruleset_t *rules_ok(const char *redirects, const char *headers)
{
    terrs_t t = {.n = 0};
    gh_ruleset_t *rs = parse_text(redirects, headers, &t);
    if (t.calls || gh_rules_compile(rs, on_err, &t)) {
        t_cur_fail++;
        fprintf(stderr, "unexpected errors:\n");
        print_errs(&t);
    }
    return rs;
}

static int streq_opt(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

#define RULE_IS(rs, i, line_, host_, from_, to_, action_, status_, force_) \
    rule_is(__LINE__, (rs), (i), (line_), (host_), (from_), (to_), (action_), (status_), (force_))

static void rule_is(int at, gh_ruleset_t *rs, uint32_t i, uint32_t line, const char *host, const char *from,
                    const char *to, int action, int status, int force)
{
    const gh_rule_t *r = gh_rules_at(rs, i);
    if (!r) {
        t_cur_fail++;
        fprintf(stderr, "test_rules.c:%d: no rule %u\n", at, i);
        return;
    }
    if (r->line != line || !streq_opt(r->host, host) || !streq_opt(r->from, from) || !streq_opt(r->to, to) ||
        r->action != action || (action != GH_RULE_NONE && r->status != status) || r->force != force) {
        t_cur_fail++;
        fprintf(stderr,
                "test_rules.c:%d: rule %u is line %u host %s from %s to %s action %d status %d force %d;"
                " want line %u host %s from %s to %s action %d status %d force %d\n",
                at, i, r->line, r->host ? r->host : "NULL", r->from ? r->from : "NULL", r->to ? r->to : "NULL",
                r->action, r->status, r->force, line, host ? host : "NULL", from ? from : "NULL",
                to ? to : "NULL", action, status, force);
    }
}

/* One header edit of rule i: a response GH_HE_APPEND (all that _headers makes). */
#define EDIT_IS(rs, i, k, name_, value_)                                                                   \
    do {                                                                                                   \
        const gh_rule_t *r_ = gh_rules_at((rs), (i));                                                      \
        CHECK(r_ && (k) < r_->nedits);                                                                     \
        if (r_ && (k) < r_->nedits) {                                                                      \
            const gh_rule_hedit_t *e_ = &r_->edits[k];                                                     \
            CHECK_INT(e_->op, GH_HE_APPEND);                                                               \
            CHECK_INT(e_->resp, 1);                                                                        \
            CHECK_STR(gh_str(e_->name, e_->name_len), name_);                                              \
            CHECK_STR(gh_str(e_->value, e_->value_len), value_);                                           \
        }                                                                                                  \
    } while (0)

#define S(s) gh_str((s), strlen(s))

/* A request to match. */
typedef struct {
    gh_rules_in_t in;
    gh_h1_header_t h[8];
    struct sockaddr_storage ss;
} req_t;

static void req_init(req_t *q, const char *target)
{
    memset(q, 0, sizeof *q);
    const char *qm = strchr(target, '?');
    q->in.path = qm ? gh_str(target, (size_t)(qm - target)) : S(target);
    q->in.query = qm ? S(qm + 1) : gh_str("", 0);
    q->in.host = GH_STR("example.com");
    q->in.method_id = GH_M_GET;
    q->in.headers = q->h;
}

static void req_header(req_t *q, const char *name, const char *value)
{
    q->h[q->in.nheaders++] = (gh_h1_header_t){S(name), S(value)};
}

static void req_peer(req_t *q, const char *addr)
{
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&q->ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &a->sin6_addr);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&q->ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &a->sin_addr);
    }
    q->in.peer = (const struct sockaddr *)&q->ss;
}

static int idx_of(gh_ruleset_t *rs, const gh_rule_t *r)
{
    return r ? (int)(r - gh_rules_at(rs, 0)) : -1;
}

/* The index of the action rule that matches target (-1: none). */
static int action_for(gh_ruleset_t *rs, req_t *q)
{
    gh_rules_out_t out;
    gh_rules_match(rs, &q->in, &out);
    return idx_of(rs, out.action);
}

static int action_of(gh_ruleset_t *rs, const char *target)
{
    req_t q;
    req_init(&q, target);
    return action_for(rs, &q);
}

/* Expand the action for target; "" with no action, "(overflow)" when it does not fit. */
static const char *expand_of(gh_ruleset_t *rs, req_t *q, char *buf, size_t cap)
{
    gh_rules_out_t out;
    if (!gh_rules_match(rs, &q->in, &out) || !out.action)
        return "";
    if (gh_rules_expand(&out, q->in.query, buf, cap) < 0)
        return "(overflow)";
    return buf;
}

#define CHECK_EXPAND(rs, target, want)                                                                   \
    do {                                                                                                 \
        req_t q_;                                                                                        \
        char b_[512];                                                                                    \
        req_init(&q_, target);                                                                           \
        const char *got_ = expand_of((rs), &q_, b_, sizeof b_);                                          \
        if (strcmp(got_, want) != 0) {                                                                   \
            t_cur_fail++;                                                                                \
            fprintf(stderr, "%s:%d: %s -> \"%s\", want \"%s\"\n", __FILE__, __LINE__, target, got_, want); \
        }                                                                                                \
    } while (0)

/* ---------------------------------------------------------------- the example files */

static void file_basic(void)
{
    gh_ruleset_t *rs = load_ok("basic.redirects");
    CHECK_INT(gh_rules_count(rs), 1);
    RULE_IS(rs, 0, 2, NULL, "/old-page", "/new-page", GH_RULE_REDIRECT, 301, 0);
    CHECK_STR(S(gh_rules_at(rs, 0)->file), DIR_OK "/basic.redirects");
    CHECK_EXPAND(rs, "/old-page", "/new-page");
    CHECK_EXPAND(rs, "/old-page/?utm=1", "/new-page?utm=1");
    CHECK_INT(action_of(rs, "/old-page-2"), -1);
    gh_rules_free(rs);
}

static void file_statuses(void)
{
    gh_ruleset_t *rs = load_ok("statuses.redirects");
    CHECK_INT(gh_rules_count(rs), 5);
    RULE_IS(rs, 0, 2, NULL, "/moved-permanently", "/a", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 1, 3, NULL, "/found", "/b", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 2, 4, NULL, "/see-other", "/c", GH_RULE_REDIRECT, 303, 0);
    RULE_IS(rs, 3, 5, NULL, "/temporary", "/d", GH_RULE_REDIRECT, 307, 0);
    RULE_IS(rs, 4, 6, NULL, "/permanent", "/e", GH_RULE_REDIRECT, 308, 0);
    CHECK_INT(action_of(rs, "/temporary"), 3);
    gh_rules_free(rs);
}

static void file_rewrite(void)
{
    gh_ruleset_t *rs = load_ok("rewrite.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/app/*", "/index.html", GH_RULE_REWRITE, 200, 0);
    RULE_IS(rs, 1, 3, NULL, "/about", "/about-us.html", GH_RULE_REWRITE, 200, 0);
    CHECK_INT(action_of(rs, "/app"), 0);
    CHECK_INT(action_of(rs, "/app/"), 0);
    CHECK_INT(action_of(rs, "/app/x/y"), 0);
    CHECK_INT(action_of(rs, "/apple"), -1);
    CHECK_INT(action_of(rs, "/about/"), 1);
    gh_rules_free(rs);
}

static void file_status_rewrite(void)
{
    gh_ruleset_t *rs = load_ok("status_rewrite.redirects");
    CHECK_INT(gh_rules_count(rs), 4);
    RULE_IS(rs, 0, 2, NULL, "/ecommerce", "/store-closed", GH_RULE_REWRITE, 404, 0);
    RULE_IS(rs, 1, 3, NULL, "/gone", "/gone.html", GH_RULE_REWRITE, 410, 0);
    RULE_IS(rs, 2, 4, NULL, "/censored", "/legal.html", GH_RULE_REWRITE, 451, 0);
    RULE_IS(rs, 3, 5, NULL, "/maintenance", "/down.html", GH_RULE_REWRITE, 503, 0);
    gh_rules_free(rs);
}

static void file_force(void)
{
    gh_ruleset_t *rs = load_ok("force.redirects");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/app/*", "/app/index.html", GH_RULE_REWRITE, 200, 1);
    RULE_IS(rs, 1, 3, NULL, "/blog", "/news", GH_RULE_REDIRECT, 301, 1);
    RULE_IS(rs, 2, 4, NULL, "/shop", "/store", GH_RULE_REDIRECT, 302, 0);
    gh_rules_free(rs);
}

static void file_splat(void)
{
    gh_ruleset_t *rs = load_ok("splat.redirects");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/news/*", "/blog/:splat", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 1, 3, NULL, "/shop*", "/store/:splat", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 2, 4, NULL, "/*", "/index.html", GH_RULE_REWRITE, 200, 0);
    CHECK_EXPAND(rs, "/news/2024/05/hello", "/blog/2024/05/hello");
    CHECK_EXPAND(rs, "/news", "/blog/");
    CHECK_EXPAND(rs, "/news/", "/blog/");
    CHECK_EXPAND(rs, "/shopping/cart", "/store/ping/cart");
    CHECK_EXPAND(rs, "/shop", "/store/");
    CHECK_EXPAND(rs, "/anything/else?x=1", "/index.html?x=1");
    CHECK_INT(action_of(rs, "/newsletter"), 2);
    gh_rules_free(rs);
}

static void file_placeholders(void)
{
    gh_ruleset_t *rs = load_ok("placeholders.redirects");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/news/:year/:month/:date/:slug", "/blog/:year/:month/:date/:slug", GH_RULE_REDIRECT,
            301, 0);
    RULE_IS(rs, 1, 4, NULL, "/blog/:year/:month", "/blog-:year-:month.html", GH_RULE_REWRITE, 200, 0);
    RULE_IS(rs, 2, 5, NULL, "/people/:name/*", "/u/:name/:splat", GH_RULE_REDIRECT, 302, 0);
    CHECK_EXPAND(rs, "/news/2024/05/17/hello", "/blog/2024/05/17/hello");
    CHECK_EXPAND(rs, "/news/2024/05/17/hello/", "/blog/2024/05/17/hello");
    CHECK_INT(action_of(rs, "/news/2024/05/17"), -1);
    CHECK_INT(action_of(rs, "/news/2024/05/17/hello/x"), -1);
    CHECK_INT(action_of(rs, "/news/2024//17/hello"), -1); /* a placeholder takes a non-empty segment */
    CHECK_EXPAND(rs, "/blog/2023/11", "/blog-2023-11.html");
    CHECK_EXPAND(rs, "/people/ada/notes/1", "/u/ada/notes/1");
    CHECK_EXPAND(rs, "/people/ada", "/u/ada/");
    req_t q;
    req_init(&q, "/blog/2023/11");
    gh_rules_out_t out;
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(out.ncaps, 2);
    CHECK_STR(out.cap_name[0], "year");
    CHECK_STR(out.cap_value[0], "2023");
    CHECK_STR(out.cap_name[1], "month");
    CHECK_STR(out.cap_value[1], "11");
    gh_rules_free(rs);
}

static void file_query(void)
{
    gh_ruleset_t *rs = load_ok("query.redirects");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/store", "/blog/:id", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 1, 4, NULL, "/articles", "/posts/:tag/:id", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 2, 6, NULL, "/search", "/docs/gatehouse", GH_RULE_REDIRECT, 302, 0);
    const gh_rule_t *r = gh_rules_at(rs, 0);
    CHECK_INT(r->nquery, 1);
    CHECK_STR(S(r->query[0].name), "id");
    CHECK_STR(S(r->query[0].value), ":id");
    r = gh_rules_at(rs, 1);
    CHECK_INT(r->nquery, 2);
    CHECK_STR(S(r->query[0].name), "id");
    CHECK_STR(S(r->query[1].name), "tag");
    CHECK_STR(S(r->query[1].value), ":tag");
    r = gh_rules_at(rs, 2);
    CHECK_INT(r->nquery, 1);
    CHECK_STR(S(r->query[0].value), "gatehouse");
    /* the query was consumed by the conditions: not passed on */
    CHECK_EXPAND(rs, "/store?id=42", "/blog/42");
    CHECK_EXPAND(rs, "/store?x=1&id=42&y=2", "/blog/42");
    CHECK_INT(action_of(rs, "/store"), -1);
    CHECK_INT(action_of(rs, "/store?idx=42"), -1);
    CHECK_EXPAND(rs, "/articles?tag=c&id=7", "/posts/c/7");
    CHECK_INT(action_of(rs, "/articles?id=7"), -1);
    CHECK_EXPAND(rs, "/search?q=gatehouse", "/docs/gatehouse");
    CHECK_INT(action_of(rs, "/search?q=gate"), -1);
    CHECK_INT(action_of(rs, "/search?q=gatehouses"), -1);
    gh_rules_free(rs);
}

static void file_country(void)
{
    gh_ruleset_t *rs = load_ok("country.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/", "/anz", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 1, 3, NULL, "/store/*", "/ca/store/:splat", GH_RULE_REDIRECT, 302, 1);
    const gh_rule_t *r = gh_rules_at(rs, 0);
    CHECK_INT(r->ncountries, 2);
    CHECK_STR(S(r->countries[0]), "AU");
    CHECK_STR(S(r->countries[1]), "NZ");
    CHECK_INT(gh_rules_at(rs, 1)->ncountries, 1);
    CHECK_STR(S(gh_rules_at(rs, 1)->countries[0]), "CA");
    req_t q;
    req_init(&q, "/");
    CHECK_INT(action_for(rs, &q), -1); /* unknown country: no match */
    q.in.country = "NZ";
    CHECK_INT(action_for(rs, &q), 0);
    q.in.country = "US";
    CHECK_INT(action_for(rs, &q), -1);
    gh_rules_free(rs);
}

static void file_language(void)
{
    gh_ruleset_t *rs = load_ok("language.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/israel/*", "/israel/he/:splat", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 1, 3, NULL, "/", "/pt", GH_RULE_REDIRECT, 302, 0);
    const gh_rule_t *r = gh_rules_at(rs, 1);
    CHECK_INT(r->nlanguages, 2);
    CHECK_STR(S(r->languages[0]), "pt-br");
    CHECK_STR(S(r->languages[1]), "pt");
    CHECK_INT(gh_rules_at(rs, 0)->nlanguages, 1);
    CHECK_STR(S(gh_rules_at(rs, 0)->languages[0]), "he");
    req_t q;
    req_init(&q, "/israel/news");
    req_header(&q, "Accept-Language", "en-US,en;q=0.9, HE-il;q=0.8");
    CHECK_INT(action_for(rs, &q), 0);
    req_init(&q, "/israel/news");
    req_header(&q, "accept-language", "hebrew");
    CHECK_INT(action_for(rs, &q), -1); /* "he" is not a prefix of "hebrew" at a '-' */
    gh_rules_free(rs);
}

static void file_cookie(void)
{
    gh_ruleset_t *rs = load_ok("cookie.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/*", "/beta/:splat", GH_RULE_REWRITE, 200, 0);
    RULE_IS(rs, 1, 3, NULL, "/admin", "/admin/login", GH_RULE_REDIRECT, 302, 0);
    const gh_rule_t *r = gh_rules_at(rs, 0);
    CHECK_INT(r->ncookies, 2);
    CHECK_INT(r->cookies_any, 1);
    CHECK_STR(S(r->cookies[0].name), "beta");
    CHECK(r->cookies[0].value == NULL);
    CHECK_STR(S(r->cookies[1].name), "preview");
    CHECK(r->cookies[1].value == NULL);
    req_t q;
    req_init(&q, "/x");
    CHECK_INT(action_for(rs, &q), -1);
    req_header(&q, "Cookie", "a=1; preview=");
    CHECK_INT(action_for(rs, &q), 0); /* one of the two is enough */
    req_init(&q, "/admin");
    req_header(&q, "Cookie", "logged_out=1");
    CHECK_INT(action_for(rs, &q), 1); /* the earlier "/ *" rule needs beta or preview: not here */
    gh_rules_free(rs);
}

static void file_conditions(void)
{
    gh_ruleset_t *rs = load_ok("conditions.redirects");
    CHECK_INT(gh_rules_count(rs), 1);
    RULE_IS(rs, 0, 2, NULL, "/", "/es", GH_RULE_REDIRECT, 302, 0);
    CHECK_INT(gh_rules_at(rs, 0)->ncountries, 2);
    CHECK_INT(gh_rules_at(rs, 0)->nlanguages, 1);
    req_t q;
    req_init(&q, "/");
    q.in.country = "MX";
    CHECK_INT(action_for(rs, &q), -1);
    req_header(&q, "Accept-Language", "es-MX");
    CHECK_INT(action_for(rs, &q), 0);
    q.in.country = "AR";
    CHECK_INT(action_for(rs, &q), -1);
    gh_rules_free(rs);
}

static void file_domain(void)
{
    gh_ruleset_t *rs = load_ok("domain.redirects");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, "blog.example.com", "/*", "https://example.com/blog/:splat", GH_RULE_REDIRECT, 301, 1);
    RULE_IS(rs, 1, 3, "old.example.com", "/legacy", "/new", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 2, 4, "www.example.com", "/", "/home", GH_RULE_REDIRECT, 301, 0);
    req_t q;
    char b[256];
    req_init(&q, "/2024/hello?ref=x");
    CHECK_STR(S(expand_of(rs, &q, b, sizeof b)), ""); /* host example.com: no rule */
    q.in.host = GH_STR("Blog.Example.COM");
    CHECK_STR(S(expand_of(rs, &q, b, sizeof b)), "https://example.com/blog/2024/hello?ref=x");
    req_init(&q, "/legacy");
    q.in.host = GH_STR("old.example.com");
    CHECK_INT(action_for(rs, &q), 1);
    gh_rules_free(rs);
}

static void file_proxy(void)
{
    gh_ruleset_t *rs = load_ok("proxy.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/api/*", "https://api.example.com/v2/:splat", GH_RULE_REWRITE, 200, 0);
    RULE_IS(rs, 1, 3, NULL, "/search", "https://search.example.com:8443/?engine=1", GH_RULE_REWRITE, 200, 1);
    CHECK_EXPAND(rs, "/api/users/1?full=1", "https://api.example.com/v2/users/1?full=1");
    CHECK_EXPAND(rs, "/search?q=x", "https://search.example.com:8443/?engine=1"); /* has its own query */
    gh_rules_free(rs);
}

static void file_comments(void)
{
    gh_ruleset_t *rs = load_ok("comments.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 4, NULL, "/one", "/1", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 1, 7, NULL, "/two", "/2", GH_RULE_REDIRECT, 302, 0);
    gh_rules_free(rs);
}

static void file_crlf(void)
{
    gh_ruleset_t *rs = load_ok("crlf.redirects");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/crlf", "/windows", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 1, 4, NULL, "/splat/*", "/w/:splat", GH_RULE_REDIRECT, 301, 0);
    gh_rules_free(rs);
}

static void file_combined(void)
{
    gh_ruleset_t *rs = load_ok("combined.redirects");
    CHECK_INT(gh_rules_count(rs), 8);
    RULE_IS(rs, 0, 2, NULL, "/", "/en", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 1, 3, NULL, "/docs/v1/*", "/docs/v2/:splat", GH_RULE_REDIRECT, 301, 1);
    RULE_IS(rs, 2, 4, NULL, "/docs/:version/api", "/reference/:version", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 3, 5, NULL, "/go/:name", "https://go.example.com/:name", GH_RULE_REDIRECT, 307, 0);
    RULE_IS(rs, 4, 6, NULL, "/static/*", "/assets/:splat", GH_RULE_REWRITE, 200, 0);
    RULE_IS(rs, 5, 7, NULL, "/private/*", "/login", GH_RULE_REDIRECT, 302, 0);
    RULE_IS(rs, 6, 8, NULL, "/old-shop/*", "/shop/items/:id", GH_RULE_REDIRECT, 308, 0);
    RULE_IS(rs, 7, 9, NULL, "/*", "/404.html", GH_RULE_REWRITE, 404, 0);
    CHECK_INT(action_of(rs, "/"), 7); /* no Accept-Language: falls to the catch-all */
    CHECK_INT(action_of(rs, "/docs/v1/intro"), 1);
    CHECK_INT(action_of(rs, "/docs/v1/api"), 1); /* first match wins */
    CHECK_INT(action_of(rs, "/docs/v3/api"), 2);
    CHECK_EXPAND(rs, "/docs/v3/api/", "/reference/v3");
    CHECK_EXPAND(rs, "/go/home?x=1", "https://go.example.com/home?x=1");
    CHECK_INT(action_of(rs, "/private/a"), 7);
    CHECK_EXPAND(rs, "/old-shop/x?id=9", "/shop/items/9");
    CHECK_INT(action_of(rs, "/old-shop/x"), 7);
    req_t q;
    req_init(&q, "/private/a");
    req_header(&q, "Cookie", "session=abc");
    CHECK_INT(action_for(rs, &q), 5);
    gh_rules_free(rs);
}

static void file_blocks(void)
{
    gh_ruleset_t *rs = load_ok("blocks.headers");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/*", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 1, 5, NULL, "/templates/index.html", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 2, 7, NULL, "/assets/*", NULL, GH_RULE_NONE, 0, 0);
    CHECK_INT(gh_rules_at(rs, 0)->nedits, 2);
    EDIT_IS(rs, 0, 0, "X-Frame-Options", "DENY");
    EDIT_IS(rs, 0, 1, "X-XSS-Protection", "1; mode=block");
    CHECK_INT(gh_rules_at(rs, 1)->nedits, 1);
    EDIT_IS(rs, 1, 0, "X-Frame-Options", "SAMEORIGIN");
    CHECK_INT(gh_rules_at(rs, 2)->nedits, 1);
    EDIT_IS(rs, 2, 0, "Cache-Control", "public, max-age=31536000, immutable");
    req_t q;
    req_init(&q, "/assets/app.js");
    gh_rules_out_t out;
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK(out.action == NULL);
    CHECK_INT(out.nedits, 2);
    CHECK_INT(idx_of(rs, out.edits[0]), 0);
    CHECK_INT(idx_of(rs, out.edits[1]), 2);
    gh_rules_free(rs);
}

static void file_paths(void)
{
    gh_ruleset_t *rs = load_ok("paths.headers");
    CHECK_INT(gh_rules_count(rs), 3);
    RULE_IS(rs, 0, 2, NULL, "/blog/:slug", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 1, 4, NULL, "/docs/:version/*", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 2, 6, "static.example.com", "/*", NULL, GH_RULE_NONE, 0, 0);
    EDIT_IS(rs, 0, 0, "Link", "</blog.css>; rel=preload; as=style");
    EDIT_IS(rs, 1, 0, "X-Docs", "versioned");
    EDIT_IS(rs, 2, 0, "Access-Control-Allow-Origin", "*");
    gh_rules_out_t out;
    req_t q;
    req_init(&q, "/blog/hello/");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(out.nedits, 1);
    req_init(&q, "/blog/hello/more");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 0);
    req_init(&q, "/docs/v2");
    q.in.host = GH_STR("static.example.com");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(out.nedits, 2);
    gh_rules_free(rs);
}

static void file_repeated(void)
{
    gh_ruleset_t *rs = load_ok("repeated.headers");
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 2, NULL, "/*", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 1, 6, NULL, "/fonts/*", NULL, GH_RULE_NONE, 0, 0);
    CHECK_INT(gh_rules_at(rs, 0)->nedits, 3);
    EDIT_IS(rs, 0, 0, "Cache-Control", "max-age=0");
    EDIT_IS(rs, 0, 1, "Cache-Control", "no-cache");
    EDIT_IS(rs, 0, 2, "Link", "</style.css>; rel=preload");
    CHECK_INT(gh_rules_at(rs, 1)->nedits, 1);
    EDIT_IS(rs, 1, 0, "Cache-Control", "public");
    gh_rules_out_t out;
    req_t q;
    req_init(&q, "/fonts/a.woff2");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(out.nedits, 2); /* both blocks: the session joins the Cache-Control values */
    gh_rules_free(rs);
}

static void file_comments_headers(void)
{
    gh_ruleset_t *rs = load_ok("comments.headers");
    CHECK_INT(gh_rules_count(rs), 2); /* "/empty" has no headers: no rule */
    RULE_IS(rs, 0, 3, NULL, "/a", NULL, GH_RULE_NONE, 0, 0);
    RULE_IS(rs, 1, 10, NULL, "/b", NULL, GH_RULE_NONE, 0, 0);
    CHECK_INT(gh_rules_at(rs, 0)->nedits, 2);
    EDIT_IS(rs, 0, 0, "X-One", "1");
    EDIT_IS(rs, 0, 1, "X-Two", "2");
    CHECK_INT(gh_rules_at(rs, 1)->nedits, 1);
    EDIT_IS(rs, 1, 0, "X-Three", "");
    gh_rules_free(rs);
}

static const struct {
    const char *name;
    void (*fn)(void);
} examples[] = {
    {"basic.redirects", file_basic},
    {"statuses.redirects", file_statuses},
    {"rewrite.redirects", file_rewrite},
    {"status_rewrite.redirects", file_status_rewrite},
    {"force.redirects", file_force},
    {"splat.redirects", file_splat},
    {"placeholders.redirects", file_placeholders},
    {"query.redirects", file_query},
    {"country.redirects", file_country},
    {"language.redirects", file_language},
    {"cookie.redirects", file_cookie},
    {"conditions.redirects", file_conditions},
    {"domain.redirects", file_domain},
    {"proxy.redirects", file_proxy},
    {"comments.redirects", file_comments},
    {"crlf.redirects", file_crlf},
    {"combined.redirects", file_combined},
    {"blocks.headers", file_blocks},
    {"paths.headers", file_paths},
    {"repeated.headers", file_repeated},
    {"comments.headers", file_comments_headers},
};

/* Every file in the examples folder has its checks (a new file needs them), and they pass. */
static void test_example_files(void)
{
    DIR *d = opendir(DIR_OK);
    CHECK(d != NULL);
    if (!d)
        return;
    int seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "invalid") == 0)
            continue;
        size_t i = 0;
        while (i < GH_ARRAY_LEN(examples) && strcmp(examples[i].name, de->d_name) != 0)
            i++;
        if (i == GH_ARRAY_LEN(examples)) {
            t_cur_fail++;
            fprintf(stderr, "%s/%s has no checks in test_rules.c\n", DIR_OK, de->d_name);
            continue;
        }
        seen++;
        int before = t_cur_fail;
        examples[i].fn();
        if (t_cur_fail != before)
            fprintf(stderr, "  (in %s)\n", de->d_name);
    }
    closedir(d);
    CHECK_INT(seen, GH_ARRAY_LEN(examples));
}

/* Check one invalid file against its "# expect:" and "# rules:" lines. */
static void check_invalid(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", DIR_BAD, name);
    size_t len;
    char *text = slurp(path, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    struct {
        uint32_t line, col;
        char frag[256];
    } want[16];
    int nwant = 0, nrules = -1;
    for (const char *p = text; p < text + len && *p == '#';) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        unsigned l, c;
        int off;
        if (nwant < 16 && sscanf(p, "# expect: %u:%u: %n", &l, &c, &off) == 2 && (size_t)off < n) {
            want[nwant].line = l;
            want[nwant].col = c;
            snprintf(want[nwant].frag, sizeof want[nwant].frag, "%.*s", (int)(n - (size_t)off), p + off);
            nwant++;
        } else if (sscanf(p, "# rules: %d", &nrules) != 1 && strncmp(p, "# expect:", 9) == 0) {
            t_cur_fail++;
            fprintf(stderr, "%s: bad expect line\n", path);
        }
        p = nl ? nl + 1 : text + len;
    }
    free(text);
    if (nwant == 0) {
        t_cur_fail++;
        fprintf(stderr, "%s: no '# expect: LINE:COL: text' on its first line\n", path);
        return;
    }
    gh_ruleset_t *rs = gh_rules_new();
    terrs_t t = {.n = 0};
    int n = load_into(rs, path, &t);
    if (n == 0)
        n = gh_rules_compile(rs, on_err, &t);
    int bad = n != nwant || t.n != nwant;
    for (int i = 0; !bad && i < nwant; i++)
        bad = t.e[i].line != want[i].line || t.e[i].col != want[i].col || !strstr(t.e[i].msg, want[i].frag) ||
              strcmp(t.e[i].file, path) != 0;
    if (nrules >= 0 && (int)gh_rules_count(rs) != nrules) {
        t_cur_fail++;
        fprintf(stderr, "%s: %u rules, want %d\n", path, gh_rules_count(rs), nrules);
    }
    if (bad) {
        t_cur_fail++;
        fprintf(stderr, "%s: %d errors, want:\n", path, n);
        for (int i = 0; i < nwant; i++)
            fprintf(stderr, "    %u:%u: ...%s...\n", want[i].line, want[i].col, want[i].frag);
        fprintf(stderr, "  got:\n");
        print_errs(&t);
    }
    gh_rules_free(rs);
}

static void test_invalid_files(void)
{
    DIR *d = opendir(DIR_BAD);
    CHECK(d != NULL);
    if (!d)
        return;
    int seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        seen++;
        check_invalid(de->d_name);
    }
    closedir(d);
    CHECK(seen >= 20);
}

/* ---------------------------------------------------------------- matching */

static void test_trailing_slash_and_root(void)
{
    gh_ruleset_t *rs = rules_ok("/a /x1\n/b/ /x2\n/ /x3\n/c/:id /x4\n/d/:id/ /x5\n", NULL);
    CHECK_INT(action_of(rs, "/a"), 0);
    CHECK_INT(action_of(rs, "/a/"), 0);
    CHECK_INT(action_of(rs, "/a//"), -1);
    CHECK_INT(action_of(rs, "/b"), 1);
    CHECK_INT(action_of(rs, "/b/"), 1);
    CHECK_INT(action_of(rs, "/"), 2);
    CHECK_INT(action_of(rs, "//"), -1); /* the root pattern takes "/" only */
    CHECK_INT(action_of(rs, "/c/1"), 3);
    CHECK_INT(action_of(rs, "/c/1/"), 3);
    CHECK_INT(action_of(rs, "/c/"), -1);
    CHECK_INT(action_of(rs, "/d/1"), 4);
    CHECK_INT(action_of(rs, "/d/1/"), 4);
    CHECK_INT(action_of(rs, "/A"), -1); /* case-sensitive */
    CHECK_INT(action_of(rs, "/a%2F"), -1); /* raw, not decoded */
    gh_rules_free(rs);
}

static void test_splats(void)
{
    gh_ruleset_t *rs = rules_ok("/a/* /x/:splat\n/b* /y/:splat\n/* /z/:splat 302\n", NULL);
    CHECK_EXPAND(rs, "/a", "/x/");
    CHECK_EXPAND(rs, "/a/", "/x/");
    CHECK_EXPAND(rs, "/a/b/c", "/x/b/c");
    CHECK_EXPAND(rs, "/a/b/c/", "/x/b/c/");
    CHECK_EXPAND(rs, "/ab", "/z/ab");
    CHECK_EXPAND(rs, "/b", "/y/");
    CHECK_EXPAND(rs, "/bcd/e", "/y/cd/e");
    CHECK_EXPAND(rs, "/", "/z/");
    gh_rules_free(rs);
}

static void test_first_match_and_edits(void)
{
    gh_ruleset_t *rs = rules_ok("/a /first 302\n/a /second 301\n",
                                "/*\n  X-All: 1\n/a\n  X-A: 1\n");
    /* a rule with both an action and edits, built by hand as YAML would: inserted first */
    gh_rules_out_t out;
    req_t q;
    req_init(&q, "/a");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(idx_of(rs, out.action), 0);
    CHECK_INT(out.nedits, 2);
    CHECK_INT(idx_of(rs, out.edits[0]), 2);
    CHECK_INT(idx_of(rs, out.edits[1]), 3);
    req_init(&q, "/b");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK(out.action == NULL);
    CHECK_INT(out.nedits, 1);
    gh_rules_free(rs);

    /* rules after the action add edits only when they are header-only rules */
    rs = gh_rules_new();
    static gh_rule_hedit_t e1 = {GH_HE_SET, 1, "X-1", 3, "1", 1}, e2 = {GH_HE_SET, 0, "X-2", 3, "2", 1},
                           e3 = {GH_HE_REMOVE, 1, "Server", 6, "", 0};
    gh_rule_t *r = gh_rules_add(rs);
    r->from = "/p/*";
    r->action = GH_RULE_NONE;
    r->edits = &e1;
    r->nedits = 1;
    r = gh_rules_add(rs);
    r->from = "/p/:x";
    r->action = GH_RULE_REWRITE;
    r->status = 200;
    r->to = "/q/:x";
    r->edits = &e2;
    r->nedits = 1;
    r = gh_rules_add(rs);
    r->from = "/p/*";
    r->action = GH_RULE_RESPOND;
    r->status = 418;
    r->edits = &e3;
    r->nedits = 1;
    r = gh_rules_add(rs);
    r->action = GH_RULE_NONE;
    r->edits = &e3;
    r->nedits = 1;
    terrs_t t = {.n = 0};
    CHECK_INT(gh_rules_compile(rs, on_err, &t), 0);
    print_errs(&t);
    req_init(&q, "/p/1");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(idx_of(rs, out.action), 1);
    CHECK_INT(out.nedits, 3); /* 0, the action's own 1, 3 (not 2: it has an action) */
    CHECK_INT(idx_of(rs, out.edits[0]), 0);
    CHECK_INT(idx_of(rs, out.edits[1]), 1);
    CHECK_INT(idx_of(rs, out.edits[2]), 3);
    CHECK_EXPAND(rs, "/p/1", "/q/1");
    req_init(&q, "/p/1/2");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(idx_of(rs, out.action), 2);
    CHECK_INT(out.nedits, 3);
    gh_rules_free(rs);
}

static void test_matched_cap(void)
{
    /* more matching header rules than GH_RULES_MAX_MATCHED: the first ones are kept, and the
     * action after them is still found */
    char *h = malloc(100 * 32), *p = h;
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "/*\n  X-%d: v\n", i);
    gh_ruleset_t *rs = rules_ok("/z /action 302\n", h);
    free(h);
    gh_rules_out_t out;
    req_t q;
    req_init(&q, "/z");
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    CHECK_INT(idx_of(rs, out.action), 0);
    CHECK_INT(out.nedits, GH_RULES_MAX_MATCHED);
    CHECK_INT(idx_of(rs, out.edits[0]), 1);
    CHECK_INT(idx_of(rs, out.edits[GH_RULES_MAX_MATCHED - 1]), GH_RULES_MAX_MATCHED);
    gh_rules_free(rs);
}

static const char *variant_fn(void *arg, const char *flag)
{
    return strcmp(flag, "checkout") == 0 ? arg : NULL;
}

static void test_conditions(void)
{
    gh_ruleset_t *rs = gh_rules_new();
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR) "^Mozilla/5\\.0 .*Firefox", PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    CHECK(re != NULL);
    static gh_conf_header_match_t hm[4];
    hm[0] = (gh_conf_header_match_t){"X-Env", 5, GH_MATCH_EXACT, "beta", 4, NULL};
    hm[1] = (gh_conf_header_match_t){"user-agent", 10, GH_MATCH_REGEX, NULL, 0, (gh_regex_t *)re};
    hm[2] = (gh_conf_header_match_t){"X-Debug", 7, GH_MATCH_PRESENT, NULL, 0, NULL};
    hm[3] = (gh_conf_header_match_t){"X-Ver", 5, GH_MATCH_PREFIX, "v2", 2, NULL};
    static gh_rule_cookie_t ck[2] = {{"a", NULL}, {"b", "yes"}};
    static gh_cidr_t cidr[3];
    cidr[0] = (gh_cidr_t){.family = AF_INET, .prefix = 8};
    inet_pton(AF_INET, "10.0.0.0", cidr[0].addr);
    cidr[1] = (gh_cidr_t){.family = AF_INET6, .prefix = 32};
    inet_pton(AF_INET6, "2001:db8::", cidr[1].addr);
    cidr[2] = (gh_cidr_t){.family = AF_INET6, .prefix = 120};
    inet_pton(AF_INET6, "::ffff:192.168.1.0", cidr[2].addr);
    static char *variants[] = {"treatment", "b"};
    const char *names[] = {"method", "exact", "regex", "present", "prefix", "cookies", "cidr", "flag"};
    for (int i = 0; i < 8; i++) {
        gh_rule_t *r = gh_rules_add(rs);
        r->from = gh_rules_strdup(rs, "/c/*", 4);
        r->action = GH_RULE_RESPOND;
        r->status = 200;
        r->body = gh_rules_strdup(rs, names[i], strlen(names[i]));
        r->body_len = strlen(names[i]);
        switch (i) {
        case 0: r->methods = 1u << GH_M_POST | 1u << GH_M_PUT; break;
        case 1: r->headers = &hm[0]; r->nheaders = 1; break;
        case 2: r->headers = &hm[1]; r->nheaders = 1; break;
        case 3: r->headers = &hm[2]; r->nheaders = 1; break;
        case 4: r->headers = &hm[3]; r->nheaders = 1; break;
        case 5: r->cookies = ck; r->ncookies = 2; r->cookies_any = 0; break;
        case 6: r->cidrs = cidr; r->ncidrs = 3; break;
        case 7: r->flag = "checkout"; r->variants = variants; r->nvariants = 2; break;
        }
    }
    terrs_t t = {.n = 0};
    CHECK_INT(gh_rules_compile(rs, on_err, &t), 0);
    print_errs(&t);
    req_t q;
    req_init(&q, "/c/x");
    CHECK_INT(action_for(rs, &q), -1);
    q.in.method_id = GH_M_PUT;
    CHECK_INT(action_for(rs, &q), 0);
    req_init(&q, "/c/x");
    req_header(&q, "x-env", "beta");
    CHECK_INT(action_for(rs, &q), 1);
    req_init(&q, "/c/x");
    req_header(&q, "X-Env", "Beta"); /* values are exact */
    CHECK_INT(action_for(rs, &q), -1);
    req_init(&q, "/c/x");
    req_header(&q, "User-Agent", "Mozilla/5.0 (X11) Gecko Firefox/120");
    CHECK_INT(action_for(rs, &q), 2);
    req_init(&q, "/c/x");
    req_header(&q, "User-Agent", "curl/8");
    CHECK_INT(action_for(rs, &q), -1);
    req_init(&q, "/c/x");
    req_header(&q, "X-Debug", "");
    CHECK_INT(action_for(rs, &q), 3);
    req_init(&q, "/c/x");
    req_header(&q, "X-Ver", "v2.1");
    CHECK_INT(action_for(rs, &q), 4);
    req_init(&q, "/c/x");
    req_header(&q, "Cookie", "a=1");
    CHECK_INT(action_for(rs, &q), -1); /* YAML cookies: all must hold */
    req_header(&q, "Cookie", "b=no");
    CHECK_INT(action_for(rs, &q), -1);
    req_init(&q, "/c/x");
    req_header(&q, "Cookie", "a=; b=yes");
    CHECK_INT(action_for(rs, &q), 5);
    const char *in_range[] = {"10.1.2.3", "2001:db8:1::1", "::ffff:10.9.9.9", "192.168.1.77", "::ffff:192.168.1.1"};
    const char *out_range[] = {"11.0.0.1", "2001:db9::1", "::ffff:11.0.0.1", "192.168.2.1", "::1"};
    for (size_t i = 0; i < GH_ARRAY_LEN(in_range); i++) {
        req_init(&q, "/c/x");
        req_peer(&q, in_range[i]);
        if (action_for(rs, &q) != 6) {
            t_cur_fail++;
            fprintf(stderr, "%s should be in the ranges\n", in_range[i]);
        }
        req_init(&q, "/c/x");
        req_peer(&q, out_range[i]);
        if (action_for(rs, &q) != -1) {
            t_cur_fail++;
            fprintf(stderr, "%s should not be in the ranges\n", out_range[i]);
        }
    }
    req_init(&q, "/c/x");
    q.in.variant = variant_fn;
    q.in.arg = "b";
    CHECK_INT(action_for(rs, &q), 7);
    q.in.arg = "control";
    CHECK_INT(action_for(rs, &q), -1);
    q.in.variant = NULL;
    CHECK_INT(action_for(rs, &q), -1);
    gh_rules_free(rs);
    pcre2_code_free(re);
}

static void test_query_conditions(void)
{
    gh_ruleset_t *rs = rules_ok("/q flag= /present 302\n/q a=:a b=:b /two/:a/:b 302\n/q a=1 /one 302\n", NULL);
    CHECK_EXPAND(rs, "/q?flag", "/present");
    CHECK_EXPAND(rs, "/q?x=1&flag=", "/present");
    CHECK_EXPAND(rs, "/q?b=2&a=1", "/two/1/2");
    CHECK_EXPAND(rs, "/q?b=&a=1", "/two/1/");
    CHECK_EXPAND(rs, "/q?a=1&a=2", "/one"); /* the first occurrence counts */
    CHECK_EXPAND(rs, "/q?a=2&a=1", "");
    CHECK_EXPAND(rs, "/q?aa=1", "");
    gh_rules_free(rs);
}

static void test_languages(void)
{
    gh_ruleset_t *rs = rules_ok("/l /en 302 Language=en\n/l /ptbr 302 Language=pt-BR\n", NULL);
    const struct {
        const char *al;
        int want;
    } cases[] = {
        {"en", 0},           {"EN-gb", 0},      {"fr, en-US;q=0.5", 0}, {"pt-BR", 1},  {"pt-br;q=1", 1},
        {"pt", -1},          {"pt-PT", -1},     {"eng", -1},            {"", -1},      {" ,, ;q=1", -1},
        {"de ; q=0.1 , en", 0}, {"*", -1},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        req_t q;
        req_init(&q, "/l");
        req_header(&q, "Accept-Language", cases[i].al);
        int got = action_for(rs, &q);
        if (got != cases[i].want) {
            t_cur_fail++;
            fprintf(stderr, "Accept-Language \"%s\" -> %d, want %d\n", cases[i].al, got, cases[i].want);
        }
    }
    req_t q;
    req_init(&q, "/l");
    req_header(&q, "Accept-Language", "fr");
    req_header(&q, "Accept-Language", "en"); /* a second field counts too */
    CHECK_INT(action_for(rs, &q), 0);
    gh_rules_free(rs);
}

/* ---------------------------------------------------------------- expanding */

static void test_expand(void)
{
    gh_ruleset_t *rs = rules_ok(
        "/a/:x https://example.com:8443/b/:x 302\n"  /* "https:" and the port stay */
        "/b/:x /c?:x=1&y=:x 302\n"                   /* the target has a query: no passing */
        "/d/* /e/:splat#frag 302\n"                  /* the query goes before the fragment */
        "/f /g:1 302\n",                             /* ":1" is no placeholder */
        NULL);
    CHECK_EXPAND(rs, "/a/1?q=2", "https://example.com:8443/b/1?q=2");
    CHECK_EXPAND(rs, "/b/1?q=2", "/c?1=1&y=1");
    CHECK_EXPAND(rs, "/d/x/y?q=2", "/e/x/y?q=2#frag");
    CHECK_EXPAND(rs, "/d/x", "/e/x#frag");
    CHECK_EXPAND(rs, "/f", "/g:1");
    gh_rules_free(rs);

    terrs_t t = {.n = 0};
    rs = parse_text("/c/:x /d/:xy 302\n", NULL, &t);
    CHECK_INT(t.n, 1);
    CHECK(t.n && strstr(t.e[0].msg, "target uses :xy"));
    gh_rules_free(rs);

    /* a rule without pattern: placeholders are left as written */
    rs = gh_rules_new();
    gh_rule_t *r = gh_rules_add(rs);
    r->action = GH_RULE_REDIRECT;
    r->status = 302;
    r->to = "/x/:unknown";
    CHECK_INT(gh_rules_compile(rs, NULL, NULL), 0);
    CHECK_EXPAND(rs, "/anything", "/x/:unknown");
    /* the size bound: exactly fitting, and one byte short */
    req_t q;
    req_init(&q, "/p?abc");
    gh_rules_out_t out;
    CHECK_INT(gh_rules_match(rs, &q.in, &out), 1);
    char buf[32];
    CHECK_INT(gh_rules_expand(&out, q.in.query, buf, 16), 15);
    CHECK(strcmp(buf, "/x/:unknown?abc") == 0);
    CHECK_INT(gh_rules_expand(&out, q.in.query, buf, 15), -1);
    CHECK_INT(gh_rules_expand(&out, q.in.query, buf, 0), -1);
    gh_rules_free(rs);
}

/* ---------------------------------------------------------------- validation */

typedef void (*mk_fn)(gh_ruleset_t *, gh_rule_t *);

static void mk_redirect_200(gh_ruleset_t *rs, gh_rule_t *r) { r->status = 200; }
static void mk_empty(gh_ruleset_t *rs, gh_rule_t *r) { r->from = ""; }
static void mk_rel(gh_ruleset_t *rs, gh_rule_t *r) { r->to = "elsewhere"; }
static void mk_rewrite_302(gh_ruleset_t *rs, gh_rule_t *r) { r->action = GH_RULE_REWRITE; r->status = 302; }
static void mk_respond_600(gh_ruleset_t *rs, gh_rule_t *r) { r->action = GH_RULE_RESPOND; r->status = 600; }
static void mk_space(gh_ruleset_t *rs, gh_rule_t *r) { r->to = "/a b"; }
static void mk_nohost(gh_ruleset_t *rs, gh_rule_t *r) { r->to = "https:///x"; }
static void mk_placeholder(gh_ruleset_t *rs, gh_rule_t *r) { r->to = "/x/:nope"; }
static void mk_splat_name(gh_ruleset_t *rs, gh_rule_t *r) { r->from = "/:splat/*"; }
static void mk_star(gh_ruleset_t *rs, gh_rule_t *r) { r->from = "/:a*"; }
static void mk_deep(gh_ruleset_t *rs, gh_rule_t *r)
{
    char *p = gh_rules_alloc(rs, 200);
    for (int i = 0; i < 65; i++)
        memcpy(p + 2 * i, "/a", 2);
    r->from = p;
}
static void mk_caps(gh_ruleset_t *rs, gh_rule_t *r)
{
    r->from = "/:a/:b/:c/:d/:e/:f/:g/:h/:i/:j/:k/:l/:m/:n/:o/:p/*";
}
static void mk_edit_name(gh_ruleset_t *rs, gh_rule_t *r)
{
    static gh_rule_hedit_t e = {GH_HE_SET, 1, "X Bad", 5, "v", 1};
    r->edits = &e;
    r->nedits = 1;
}
static void mk_edit_value(gh_ruleset_t *rs, gh_rule_t *r)
{
    static gh_rule_hedit_t e = {GH_HE_APPEND, 0, "X-Ok", 4, "a\r\nInjected: 1", 14};
    r->edits = &e;
    r->nedits = 1;
}
static void mk_flag(gh_ruleset_t *rs, gh_rule_t *r) { r->flag = "f"; }
static void mk_query_dup(gh_ruleset_t *rs, gh_rule_t *r)
{
    static gh_rule_query_t qv = {"id", ":id"};
    r->from = "/x/:id";
    r->query = &qv;
    r->nquery = 1;
}

static void test_validation(void)
{
    const struct {
        mk_fn fn;
        const char *frag;
    } cases[] = {
        {mk_redirect_200, "redirect status 200"},
        {mk_empty, "empty path pattern"},
        {mk_rel, "must be a path"},
        {mk_rewrite_302, "rewrite status 302"},
        {mk_respond_600, "response status 600"},
        {mk_space, "space"},
        {mk_nohost, "no host"},
        {mk_placeholder, "target uses :nope, which the pattern does not capture"},
        {mk_splat_name, ":splat is used twice"},
        {mk_star, "'*' must follow"},
        {mk_deep, "more than 64 segments"},
        {mk_caps, "more than 16 placeholders"},
        {mk_edit_name, "'X Bad' is not a valid header name"},
        {mk_edit_value, "control character"},
        {mk_flag, "without variants"},
        {mk_query_dup, ":id is used twice"},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        gh_ruleset_t *rs = gh_rules_new();
        gh_rule_t *ok = gh_rules_add(rs);
        ok->from = "/fine";
        ok->action = GH_RULE_REDIRECT;
        ok->status = 301;
        ok->to = "/fine2";
        gh_rule_t *r = gh_rules_add(rs);
        r->file = "site.yaml";
        r->line = 40 + (uint32_t)i;
        r->from = "/x";
        r->action = GH_RULE_REDIRECT;
        r->status = 301;
        r->to = "/y";
        cases[i].fn(rs, r);
        terrs_t t = {.n = 0};
        int n = gh_rules_compile(rs, on_err, &t);
        if (n != 1 || t.n != 1 || t.e[0].line != 40 + i || strcmp(t.e[0].file, "site.yaml") != 0 ||
            !strstr(t.e[0].msg, cases[i].frag)) {
            t_cur_fail++;
            fprintf(stderr, "validation case %zu (%s): %d errors\n", i, cases[i].frag, n);
            print_errs(&t);
        }
        /* a set that did not compile matches nothing */
        CHECK_INT(action_of(rs, "/fine"), -1);
        gh_rules_free(rs);
    }

    /* the same rules, fixed, compile; the fine rule then matches */
    gh_ruleset_t *rs = gh_rules_new();
    gh_rule_t *r = gh_rules_add(rs);
    r->from = "/fine";
    r->action = GH_RULE_REDIRECT;
    r->status = 301;
    r->to = "/fine2";
    CHECK_INT(gh_rules_compile(rs, NULL, NULL), 0);
    CHECK_INT(action_of(rs, "/fine"), 0);
    /* adding a rule un-compiles the set until the next compile */
    r = gh_rules_add(rs);
    r->from = "/other";
    r->action = GH_RULE_REDIRECT;
    r->status = 301;
    r->to = "/o";
    CHECK_INT(action_of(rs, "/fine"), -1);
    CHECK_INT(gh_rules_compile(rs, NULL, NULL), 0);
    CHECK_INT(action_of(rs, "/other"), 1);
    gh_rules_free(rs);

    /* at most 100,000 rules */
    rs = gh_rules_new();
    for (int i = 0; i <= 100000; i++) {
        r = gh_rules_add(rs);
        r->from = "/x";
        r->action = GH_RULE_REDIRECT;
        r->status = 301;
        r->to = "/y";
    }
    terrs_t t = {.n = 0};
    CHECK_INT(gh_rules_compile(rs, on_err, &t), 1);
    CHECK(t.n == 1 && strstr(t.e[0].msg, "at most 100000"));
    gh_rules_free(rs);

    /* many bad rules: 50 reported, then compile stops */
    rs = gh_rules_new();
    for (int i = 0; i < 80; i++) {
        r = gh_rules_add(rs);
        r->from = "nope";
    }
    t = (terrs_t){.n = 0};
    CHECK_INT(gh_rules_compile(rs, on_err, &t), 50);
    CHECK_INT(t.calls, 50);
    gh_rules_free(rs);
}

/* ---------------------------------------------------------------- the readers' bounds */

static void test_reader_bounds(void)
{
    /* more than 100,000 rules in one file */
    size_t cap = 100001 * 24, n = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 100001; i++)
        n += (size_t)sprintf(text + n, "/r%d /t\n", i);
    gh_ruleset_t *rs = gh_rules_new();
    terrs_t t = {.n = 0};
    CHECK_INT(gh_rules_netlify_redirects(rs, "_redirects", text, n, on_err, &t), 1);
    CHECK_INT(gh_rules_count(rs), 100000);
    CHECK(t.n == 1 && t.e[0].line == 100001 && strstr(t.e[0].msg, "more than 100000 rules"));
    CHECK_INT(gh_rules_compile(rs, NULL, NULL), 0);
    CHECK_INT(action_of(rs, "/r99999"), 99999);
    gh_rules_free(rs);
    free(text);

    /* 50 errors, then reading stops */
    text = malloc(80 * 16);
    n = 0;
    for (int i = 0; i < 80; i++)
        n += (size_t)sprintf(text + n, "/e%d /t 999\n", i);
    rs = gh_rules_new();
    t = (terrs_t){.n = 0};
    CHECK_INT(gh_rules_netlify_redirects(rs, "_redirects", text, n, on_err, &t), 50);
    CHECK_INT(t.calls, 50);
    CHECK_INT(t.e[49].line, 50);
    gh_rules_free(rs);
    free(text);

    /* a NUL byte: one error, no rules (in both formats); an empty file: no rules, no error */
    rs = gh_rules_new();
    t = (terrs_t){.n = 0};
    CHECK_INT(gh_rules_netlify_headers(rs, "_headers", "/a\n  X: 1\n\0", 11, on_err, &t), 1);
    CHECK(t.n == 1 && t.e[0].line == 3 && t.e[0].col == 1);
    CHECK_INT(gh_rules_netlify_redirects(rs, "_redirects", "", 0, on_err, &t), 0);
    CHECK_INT(gh_rules_netlify_headers(rs, "_headers", NULL, 0, on_err, &t), 0);
    CHECK_INT(gh_rules_count(rs), 0);
    /* a last line without LF, and a NULL err callback */
    CHECK_INT(gh_rules_netlify_redirects(rs, NULL, "/a /b\n/c /d 3", 13, NULL, NULL), 1);
    CHECK_INT(gh_rules_count(rs), 1);
    gh_rules_free(rs);

    /* a UTF-8 byte order mark; a bad host in a domain-level rule */
    rs = gh_rules_new();
    t = (terrs_t){.n = 0};
    const char *bom = "\xef\xbb\xbf/a /b\nhttps://a%20b/x /y\nhttps://Ok.Test:80/x /y\n";
    CHECK_INT(gh_rules_netlify_redirects(rs, "_redirects", bom, strlen(bom), on_err, &t), 1);
    CHECK(t.n == 1 && t.e[0].line == 2 && t.e[0].col == 10 && strstr(t.e[0].msg, "invalid host"));
    CHECK_INT(gh_rules_count(rs), 2);
    RULE_IS(rs, 0, 1, NULL, "/a", "/b", GH_RULE_REDIRECT, 301, 0);
    RULE_IS(rs, 1, 3, "ok.test", "/x", "/y", GH_RULE_REDIRECT, 301, 0);
    gh_rules_free(rs);

    /* too many fields; a status with a '!' alone; a condition given twice */
    rs = gh_rules_new();
    t = (terrs_t){.n = 0};
    char many[1024];
    n = (size_t)sprintf(many, "/m");
    for (int i = 0; i < 70; i++)
        n += (size_t)sprintf(many + n, " a%d=1", i);
    sprintf(many + n, " /t\n/x /y !\n/z /w 302 Country=us Country=ca\n/l /k 302 Language=en_US\n");
    CHECK_INT(gh_rules_netlify_redirects(rs, "_redirects", many, strlen(many), on_err, &t), 4);
    CHECK(t.n == 4 && strstr(t.e[0].msg, "more than 64 fields"));
    CHECK(t.n == 4 && strstr(t.e[1].msg, "invalid status '!'"));
    CHECK(t.n == 4 && strstr(t.e[2].msg, "given twice") && t.e[2].col == 22);
    CHECK(t.n == 4 && strstr(t.e[3].msg, "'en_US' is not a language tag"));
    gh_rules_free(rs);
}

/* ---------------------------------------------------------------- the index */

/* The reference for path patterns, written apart from rules.c: split both on '/' and compare
 * segment lists. pat and path start with '/'. */
static int ref_split(const char *s, const char **seg, size_t *len, int max)
{
    int n = 0;
    for (const char *p = s + 1;; n++) {
        const char *e = strchr(p, '/');
        if (n == max)
            return -1;
        seg[n] = p;
        len[n] = e ? (size_t)(e - p) : strlen(p);
        if (!e)
            return n + 1;
        p = e + 1;
    }
}

static int ref_seg(const char *ps, size_t pl, const char *s, size_t sl)
{
    if (pl && ps[0] == ':')
        return sl > 0;
    return pl == sl && memcmp(ps, s, pl) == 0;
}

static int ref_match(const char *pat, const char *path)
{
    char pb[256], sb[256];
    const char *ps[64], *ss[64];
    size_t pl[64], sl[64];
    size_t n = strlen(pat), m = strlen(path);
    if (strcmp(pat, "/") == 0)
        return strcmp(path, "/") == 0;
    if (pat[n - 1] != '*') { /* one trailing '/' is optional on both sides */
        snprintf(pb, sizeof pb, "%.*s", (int)(n > 1 && pat[n - 1] == '/' ? n - 1 : n), pat);
        snprintf(sb, sizeof sb, "%.*s", (int)(m > 1 && path[m - 1] == '/' ? m - 1 : m), path);
        int np = ref_split(pb, ps, pl, 64), ns = ref_split(sb, ss, sl, 64);
        if (np != ns)
            return 0;
        for (int i = 0; i < np; i++)
            if (!ref_seg(ps[i], pl[i], ss[i], sl[i]))
                return 0;
        return 1;
    }
    snprintf(pb, sizeof pb, "%.*s", (int)(n - 1), pat); /* without the '*' */
    int np = ref_split(pb, ps, pl, 64), ns = ref_split(path, ss, sl, 64);
    /* "/a/ *": the segments before the last (empty) one, then anything; "/a/b*": the segments
     * before "b", then a path segment starting with "b" */
    int full = np - 1;
    if (ns < full + (pl[np - 1] ? 1 : 0))
        return 0;
    for (int i = 0; i < full; i++)
        if (!ref_seg(ps[i], pl[i], ss[i], sl[i]))
            return 0;
    if (pl[np - 1] == 0)
        return 1;
    return sl[full] >= pl[np - 1] && memcmp(ss[full], ps[np - 1], pl[np - 1]) == 0;
}

/* Random rule sets checked against the reference: the full set must give the first matching
 * action and, in order, the matching header rules (before the action: all; after it:
 * header-only ones). */
static void test_index_oracle(void)
{
    static const char *segs[] = {"a", "b", "c", "ab"};
    static const char *psegs[] = {"a", "b", "c", "ab", "", "a/b", "x"};
    int stats[2] = {0, 0};
    srand(7);
    for (int round = 0; round < 20; round++) {
        int nr = 60;
        gh_ruleset_t *all = gh_rules_new();
        terrs_t t = {.n = 0};
        for (int i = 0; i < nr; i++) {
            char pat[128], line[256];
            int n = 0, depth = rand() % 16 ? 1 + rand() % 3 : 0, ph = 0, last_ph = 0;
            for (int d = 0; d < depth; d++) {
                last_ph = rand() % 4 == 0;
                if (last_ph)
                    n += sprintf(pat + n, "/:p%d", ph++);
                else
                    n += sprintf(pat + n, "/%s", segs[rand() % 4]);
            }
            switch (rand() % 5) {
            case 0: n += sprintf(pat + n, "/*"); break;
            case 1: n += sprintf(pat + n, depth && !last_ph ? "*" : "/*"); break;
            case 2: n += sprintf(pat + n, "/"); break;
            default: if (!depth) n += sprintf(pat + n, "/"); break;
            }
            const char *host = rand() % 8 == 0 ? "https://h.test" : "";
            if (rand() % 3 == 0) {
                sprintf(line, "%s%s\n  X-R: %d\n", host, pat, i);
                gh_rules_netlify_headers(all, "_headers", line, strlen(line), on_err, &t);
            } else {
                sprintf(line, "%s%s /t/%d 302\n", host, pat, i);
                gh_rules_netlify_redirects(all, "_redirects", line, strlen(line), on_err, &t);
            }
        }
        CHECK_INT(t.n, 0);
        print_errs(&t);
        CHECK_INT(gh_rules_compile(all, NULL, NULL), 0);
        CHECK_INT(gh_rules_count(all), nr);
        for (int k = 0; k < 300; k++) {
            char path[128];
            int n = 0, depth = rand() % 5;
            for (int d = 0; d < depth; d++)
                n += sprintf(path + n, "/%s", psegs[rand() % 7]);
            if (!depth || rand() % 4 == 0)
                n += sprintf(path + n, "/");
            req_t q;
            req_init(&q, path);
            int other_host = rand() % 3 == 0;
            if (other_host)
                q.in.host = GH_STR("H.test");
            int want_action = -1, want_edits[64], nwant = 0;
            for (int i = 0; i < nr; i++) {
                const gh_rule_t *r = gh_rules_at(all, (uint32_t)i);
                if ((r->host && !other_host) || !ref_match(r->from, path))
                    continue;
                if (r->action != GH_RULE_NONE && want_action >= 0)
                    continue;
                if (r->nedits)
                    want_edits[nwant++] = i;
                if (r->action != GH_RULE_NONE)
                    want_action = i;
            }
            stats[want_action >= 0]++;
            gh_rules_out_t out;
            gh_rules_match(all, &q.in, &out);
            int bad = idx_of(all, out.action) != want_action || (int)out.nedits != nwant;
            for (int e = 0; !bad && e < nwant; e++)
                bad = idx_of(all, out.edits[e]) != want_edits[e];
            if (bad) {
                t_cur_fail++;
                fprintf(stderr, "oracle: %s host %.*s: action %d %s (want %d), %u edits (want %d)\n", path,
                        (int)q.in.host.n, q.in.host.p, idx_of(all, out.action),
                        out.action ? out.action->from : "", want_action, out.nedits, nwant);
            }
        }
        gh_rules_free(all);
    }
    CHECK(stats[0] > 300 && stats[1] > 300); /* both outcomes well covered */
}

/* n exact rules, n prefix rules (splats and placeholders), and 3 always-candidates. */
static gh_ruleset_t *big_set(int n)
{
    size_t cap = (size_t)n * 3 * 48 + 256, len = 0;
    char *text = malloc(cap);
    len += (size_t)sprintf(text + len, "/:lang/special /sp/:lang 302\n");
    for (int i = 0; i < n; i++) {
        len += (size_t)sprintf(text + len, "/page/%d /new/%d 301\n", i, i);
        if (i % 2)
            len += (size_t)sprintf(text + len, "/section/%d/* /s/%d/:splat 302\n", i, i);
        else
            len += (size_t)sprintf(text + len, "/blog/%d/:slug /b/%d/:slug 302\n", i, i);
    }
    len += (size_t)sprintf(text + len, "/* /index.html 200\n");
    gh_ruleset_t *rs = gh_rules_new();
    terrs_t t = {.n = 0};
    gh_rules_netlify_redirects(rs, "_redirects", text, len, on_err, &t);
    const char *h = "/*\n  X-Frame-Options: DENY\n";
    gh_rules_netlify_headers(rs, "_headers", h, strlen(h), on_err, &t);
    CHECK_INT(t.n, 0);
    CHECK_INT(gh_rules_compile(rs, on_err, &t), 0);
    free(text);
    return rs;
}

static void test_index_candidates(void)
{
    gh_ruleset_t *rs = big_set(5000); /* 10,000 exact and prefix rules */
    CHECK_INT(gh_rules_count(rs), 10003);
    CHECK_INT(action_of(rs, "/page/4321"), 1 + 2 * 4321);
    CHECK(gh_rules_candidates_last <= 4);
    CHECK_INT(action_of(rs, "/section/4321/a/b/c"), 2 + 2 * 4321);
    CHECK(gh_rules_candidates_last <= 4);
    CHECK_INT(action_of(rs, "/section/4321"), 2 + 2 * 4321);
    CHECK_INT(action_of(rs, "/blog/1234/x/"), 2 + 2 * 1234);
    CHECK(gh_rules_candidates_last <= 4);
    CHECK_INT(action_of(rs, "/fr/special"), 0);
    CHECK(gh_rules_candidates_last <= 4);
    CHECK_INT(action_of(rs, "/nothing/here"), 10001);
    CHECK(gh_rules_candidates_last <= 4);
    /* a deep path: one lookup per '/', never past the deepest prefix key */
    char deep[4096];
    int n = 0;
    for (int i = 0; i < 1000; i++)
        n += sprintf(deep + n, "/s");
    CHECK_INT(action_of(rs, deep), 10001);
    CHECK(gh_rules_candidates_last <= 4);
    gh_rules_free(rs);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Prints ns per match with 10 and with 10,000 rules; asserts nothing about time. */
static void bench_match(void)
{
    static const char *paths[] = {"/page/3", "/section/3/a/b", "/blog/4/hello", "/fr/special", "/x/y/z", "/"};
    int sizes[] = {5, 5000};
    double ns[2];
    for (int s = 0; s < 2; s++) {
        gh_ruleset_t *rs = big_set(sizes[s]);
        req_t q[GH_ARRAY_LEN(paths)];
        for (size_t i = 0; i < GH_ARRAY_LEN(paths); i++)
            req_init(&q[i], paths[i]);
        gh_rules_out_t out;
        const int iters = 200000;
        unsigned sink = 0;
        double t0 = now_ns();
        for (int it = 0; it < iters; it++)
            sink += (unsigned)gh_rules_match(rs, &q[it % GH_ARRAY_LEN(paths)].in, &out);
        ns[s] = (now_ns() - t0) / iters;
        CHECK_INT(sink, iters);
        printf("bench: gh_rules_match over %u rules: %.0f ns/match\n", gh_rules_count(rs), ns[s]);
        gh_rules_free(rs);
    }
    printf("bench: 10,000 rules / 10 rules: %.2fx\n", ns[1] / ns[0]);
}

int main(void)
{
    RUN(test_example_files);
    RUN(test_invalid_files);
    RUN(test_trailing_slash_and_root);
    RUN(test_splats);
    RUN(test_first_match_and_edits);
    RUN(test_matched_cap);
    RUN(test_conditions);
    RUN(test_query_conditions);
    RUN(test_languages);
    RUN(test_expand);
    RUN(test_validation);
    RUN(test_reader_bounds);
    RUN(test_index_oracle);
    RUN(test_index_candidates);
    RUN(bench_match);
    return t_done("test_rules");
}
