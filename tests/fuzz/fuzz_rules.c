/* fuzz_rules.c: libFuzzer target for the Netlify `_redirects` / `_headers` readers and the
 * rule matcher (src/rules/netlify.c, src/rules/rules.c).
 *
 * Input: up to the first 0xff byte goes to the `_redirects` reader, the rest to the
 * `_headers` reader (without a 0xff, all of it goes to both). The set is then compiled and
 * matched against a few fixed requests, and against paths made from the rules' own
 * patterns (so that rules do match), and the action's target expanded. Beyond "does not
 * crash or leak" it traps on broken invariants:
 *  - every error names the file, a line of the input (1-based) and a column within that
 *    line (or just past it), with a message; the readers return the errors they reported,
 *    at most 50;
 *  - what the readers appended always compiles (they check each rule before adding it);
 *  - a match gives an action with a terminal effect, edits from rules that have edits, at
 *    most GH_RULES_MAX_MATCHED of them, at most GH_RULE_MAX_CAPTURES captures;
 *  - an expansion either fails or fits, NUL-terminated, and holds no control character
 *    nor space (it becomes a Location header or a request path). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rules.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct {
    const char *text;
    size_t len;
    int calls;
} ectx_t;

/* The line (1-based) count and the length of line l of t. */
static size_t line_len(const char *t, size_t n, uint32_t l, uint32_t *nlines)
{
    uint32_t cur = 1;
    size_t start = 0, len = 0;
    int found = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || t[i] == '\n') {
            if (cur == l) {
                len = i - start;
                found = 1;
            }
            if (i < n) {
                cur++;
                start = i + 1;
            }
        }
    }
    *nlines = cur;
    return found ? len : 0;
}

static void on_err(void *arg, const char *file, uint32_t line, uint32_t col, const char *msg)
{
    ectx_t *e = arg;
    e->calls++;
    ASSERT(file && strcmp(file, "f") == 0);
    ASSERT(msg && msg[0]);
    uint32_t nlines;
    size_t len = line_len(e->text, e->len, line, &nlines);
    ASSERT(line >= 1 && line <= nlines);
    ASSERT(col >= 1 && col <= len + 1);
}

static void check_out(const gh_rules_out_t *o, gh_str_t query)
{
    ASSERT(o->nedits <= GH_RULES_MAX_MATCHED);
    ASSERT(o->ncaps <= GH_RULE_MAX_CAPTURES);
    for (uint32_t i = 0; i < o->nedits; i++)
        ASSERT(o->edits[i]->nedits > 0);
    if (!o->action)
        return;
    ASSERT(o->action->action != GH_RULE_NONE);
    char buf[4096], small[8];
    ssize_t n = gh_rules_expand(o, query, buf, sizeof buf);
    if (n >= 0) {
        ASSERT((size_t)n == strlen(buf));
        for (ssize_t i = 0; i < n; i++)
            ASSERT((unsigned char)buf[i] > 0x20 && buf[i] != 0x7f);
    }
    ssize_t m = gh_rules_expand(o, query, small, sizeof small);
    ASSERT(m < 0 || (m < (ssize_t)sizeof small && (size_t)m == strlen(small) && m == n));
}

static void match_one(const gh_ruleset_t *rs, const char *path, const char *query, const char *host)
{
    static const gh_h1_header_t hs[] = {
        {GH_STR("Accept-Language"), GH_STR("en-US,pt-BR;q=0.8, he")},
        {GH_STR("Cookie"), GH_STR("beta=1; session=x")},
        {GH_STR("User-Agent"), GH_STR("fuzz")},
    };
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = {.s_addr = htonl(0x0a000001)}};
    gh_rules_in_t in = {
        .path = gh_str(path, strlen(path)),
        .query = gh_str(query, strlen(query)),
        .host = gh_str(host, strlen(host)),
        .method_id = GH_M_GET,
        .headers = hs,
        .nheaders = 3,
        .peer = (const struct sockaddr *)&sin,
        .country = "US",
    };
    gh_rules_out_t out;
    int r = gh_rules_match(rs, &in, &out);
    ASSERT(r == (out.action || out.nedits));
    check_out(&out, in.query);
}

/* A path that a pattern matches: placeholders become "v", the splat "s/t". */
static void path_of(const char *pat, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; pat[i] && o + 4 < cap; i++) {
        if (pat[i] == ':' && i > 0 && pat[i - 1] == '/') {
            out[o++] = 'v';
            while (pat[i + 1] && pat[i + 1] != '/')
                i++;
        } else if (pat[i] == '*' && !pat[i + 1]) {
            memcpy(out + o, "s/t", 3);
            o += 3;
        } else {
            out[o++] = pat[i];
        }
    }
    out[o] = 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *t = (const char *)data;
    const char *sep = memchr(t, 0xff, size);
    const char *rt = t, *ht = t;
    size_t rn = size, hn = size;
    if (sep) {
        rn = (size_t)(sep - t);
        ht = sep + 1;
        hn = size - rn - 1;
    }
    gh_ruleset_t *rs = gh_rules_new();
    ASSERT(rs);
    ectx_t e1 = {rt, rn, 0}, e2 = {ht, hn, 0};
    int n1 = gh_rules_netlify_redirects(rs, "f", rt, rn, on_err, &e1);
    ASSERT(n1 == e1.calls && n1 <= 50);
    uint32_t after_redirects = gh_rules_count(rs);
    int n2 = gh_rules_netlify_headers(rs, "f", ht, hn, on_err, &e2);
    ASSERT(n2 == e2.calls && n2 <= 50);
    for (uint32_t i = 0; i < gh_rules_count(rs); i++) {
        const gh_rule_t *r = gh_rules_at(rs, i);
        ASSERT(r->from && r->from[0] == '/');
        ASSERT(i < after_redirects ? r->action != GH_RULE_NONE : (r->action == GH_RULE_NONE && r->nedits > 0));
    }
    int nc = gh_rules_compile(rs, NULL, NULL);
    ASSERT(nc == 0);

    static const char *paths[] = {"/", "//", "/a", "/a/", "/a/b/c", "/blog/2024/05/hello", "/news/",
                                  "/store", "/x:y/*", ""};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        match_one(rs, paths[i], "", "example.com");
        match_one(rs, paths[i], "id=1&tag=t", "Blog.Example.com");
    }
    for (uint32_t i = 0; i < gh_rules_count(rs) && i < 32; i++) {
        const gh_rule_t *r = gh_rules_at(rs, i);
        char p[512];
        path_of(r->from, p, sizeof p);
        match_one(rs, p, "id=7", r->host ? r->host : "example.com");
    }
    gh_rules_free(rs);
    return 0;
}
