/* rules.h: request rules: redirects, rewrites, header edits and direct responses,
 * declared per site in YAML or brought as Netlify `_redirects` / `_headers` files.
 *
 * A rule set is an ordered list of rules. Each rule has conditions (a path pattern,
 * methods, query parameters, headers, cookies, countries, languages, client address
 * ranges, the variant of a flag) and effects: header edits (request and/or response)
 * and at most one terminal action (redirect, rewrite, direct response).
 *
 * Semantics of one match (gh_rules_match), over the rules in their order:
 *  - every matching rule's header edits apply, in rule order (Netlify `_headers`:
 *    all matching blocks apply);
 *  - the first matching rule with a terminal action is THE action (first match wins);
 *    rules after it still contribute header edits only if they are header-only rules.
 *
 * Path patterns (Netlify syntax): literal segments, ":name" placeholder segments
 * (match one non-empty segment), and a final "*" splat (matches the rest, possibly
 * empty, captured as "splat"). "/a/ *" (no space) matches "/a", "/a/" and "/a/b/c". A pattern
 * without "*" matches the path with or without one trailing slash ("/a" = "/a/").
 * Matching is on the raw path (no percent-decoding), case-sensitive.
 *
 * The matcher (gh_rules_compile) indexes rules by the literal part of their pattern:
 * exact patterns in a hash table, patterns with placeholders or a splat by their
 * literal prefix up to the first placeholder or splat, at a segment boundary
 * (looked up once per "/" of the request path); rules with no literal prefix (or
 * no path condition) are always candidates. The cost per request grows with the
 * number of candidates, not with the number of rules.
 *
 * Called by config.c (building, compiling) and session.c (matching, expanding).
 * Calls libc, and PCRE2 for header regexes (compiled and owned by the caller). */
#ifndef GH_RULES_RULES_H
#define GH_RULES_RULES_H

#include <sys/socket.h>
#include <sys/types.h>

#include "config/config.h"
#include "http/h1.h"
#include "rules/edits.h"

enum {
    GH_RULE_NONE = 0, /* header edits only */
    GH_RULE_REDIRECT, /* status 301/302/303/307/308, Location = expanded to (+ query, see below) */
    GH_RULE_REWRITE,  /* the request goes on with path (and query) = expanded to; status 200, or the
                       * status to answer with (Netlify 404/410/...: the rewritten response keeps its
                       * body but gets this status) */
    GH_RULE_RESPOND,  /* a direct response: status, body, content type */
};

#define GH_RULE_MAX_CAPTURES 16 /* placeholders + query captures + splat per rule */

typedef struct {
    char *name;  /* query parameter name */
    char *value; /* ":x" captures the value as x; "" any value (present); else the exact value */
} gh_rule_query_t;

typedef struct {
    char *name;  /* cookie name */
    char *value; /* NULL: present; else the exact value */
} gh_rule_cookie_t;

typedef struct {
    uint8_t op, resp; /* GH_HE_*, 0 request / 1 response */
    char *name;
    size_t name_len;
    char *value; /* "" for GH_HE_REMOVE */
    size_t value_len;
} gh_rule_hedit_t;

typedef struct gh_rule {
    const char *file; /* where it was declared (owned by the set), for messages and the trace */
    uint32_t line;
    /* ---- conditions (all must hold; an absent condition holds) ---- */
    char *from;        /* path pattern, or NULL: any path */
    char *host;        /* Netlify domain-level rule ("https://blog.example.com/..." as FROM): the request's
                        * host (lower case, port dropped) must equal it; NULL: any host */
    uint32_t methods;  /* bit (1u << enum gh_h1_method); 0: any */
    gh_rule_query_t *query;
    uint32_t nquery;
    gh_conf_header_match_t *headers; /* exact, regex (PCRE2, compiled by the caller) or present */
    uint32_t nheaders;
    gh_rule_cookie_t *cookies;
    uint32_t ncookies;
    int cookies_any;   /* 0: every listed cookie must hold (YAML); 1: one is enough (Netlify
                        * "Cookie=a,b" matches when a or b is present) */
    char **countries;  /* ISO 3166 alpha-2, upper case; the client's country is one of them */
    uint32_t ncountries;
    char **languages;  /* language tags, lower case: "en" matches "en", "en-US"; "pt-br" matches "pt-BR" ... */
    uint32_t nlanguages; /* ... (not "pt") against the Accept-Language header's tags (any of them) */
    gh_cidr_t *cidrs;  /* the client address is in one of them */
    uint32_t ncidrs;
    char *flag;        /* the request's variant of this flag (gh_rules_in_t.variant) ... */
    char **variants;   /* ... is one of these */
    uint32_t nvariants;
    /* ---- effects ---- */
    int action;        /* GH_RULE_* */
    int status;        /* redirect: 301 (default) 302 303 307 308; rewrite: 200 or the answer's status;
                        * respond: the status */
    int force;         /* Netlify "!" (and YAML rules, always): applies even when the origin has the
                        * path; 0: a shadowed rule, applied only when the origin answers 404 */
    char *to;          /* redirect/rewrite target template: a path or absolute URL with ":name" and
                        * ":splat" placeholders; may carry "?query" (then the request's query is not
                        * passed on) */
    char *upstream_name; /* rewrite to a named pool (YAML), or NULL */
    const void *upstream; /* gh_conf_upstream_t resolved by config.c, or NULL: the route's */
    char *body;        /* respond: the body ("" none) */
    size_t body_len;
    char *ctype;       /* respond: Content-Type, or NULL */
    gh_rule_hedit_t *edits;
    uint32_t nedits;
} gh_rule_t;

typedef struct gh_ruleset gh_ruleset_t;

/* ---- building (config load) ---- */
gh_ruleset_t *gh_rules_new(void);
/* Append a zeroed rule (owned by rs; pointer valid until the next gh_rules_add). */
gh_rule_t *gh_rules_add(gh_ruleset_t *rs);
uint32_t gh_rules_count(const gh_ruleset_t *rs);
gh_rule_t *gh_rules_at(gh_ruleset_t *rs, uint32_t i);
/* Memory owned by rs (freed with it): copies, NUL-terminated; NULL on OOM. */
char *gh_rules_strdup(gh_ruleset_t *rs, const char *p, size_t n);
void *gh_rules_alloc(gh_ruleset_t *rs, size_t n); /* zeroed */

/* A problem found while reading rules: file, line, column (1-based; 0 unknown), message. */
typedef void (*gh_rules_err_fn)(void *arg, const char *file, uint32_t line, uint32_t col, const char *msg);

/* Parse a Netlify `_redirects` file's text (file names it in messages) and append its rules.
 * Every line: FROM [QUERY_PARAMS...] TO [STATUS[!]] [CONDITIONS...], '#' comments, blank lines.
 * Conditions: Country=a,b  Language=a,b  Cookie=name1,name2 (present). Role= and Sign= are
 * refused (they need Netlify's identity service) with a clear message. Returns the number of
 * errors reported through err (0: all lines appended). */
int gh_rules_netlify_redirects(gh_ruleset_t *rs, const char *file, const char *text, size_t len,
                               gh_rules_err_fn err, void *arg);
/* Parse a Netlify `_headers` file: a path pattern line, then indented "Name: value" lines;
 * appended as header-only rules setting response headers (a name repeated within a block, or
 * across matching blocks, is sent once with the values joined by ", " - GH_HE_APPEND
 * merges are done by the session: see gh_rules_match). */
int gh_rules_netlify_headers(gh_ruleset_t *rs, const char *file, const char *text, size_t len,
                             gh_rules_err_fn err, void *arg);

/* Validate every rule (patterns, statuses, targets whose placeholders the pattern does not
 * capture, sizes) and build the index. Errors through err with the rule's file and line.
 * Returns the number of errors; rs is read-only after a successful compile. */
int gh_rules_compile(gh_ruleset_t *rs, gh_rules_err_fn err, void *arg);
/* The check gh_rules_compile makes of one rule, for readers that report at once (with a
 * column): NULL when valid, else the message, written into buf. */
const char *gh_rules_check(const gh_rule_t *r, char *buf, size_t cap);
void gh_rules_free(gh_ruleset_t *rs);

/* ---- matching (request path; no allocation) ---- */
typedef struct {
    gh_str_t path, query;       /* as received (path without '?') */
    gh_str_t host;              /* Host without port, as received (compared case-insensitively) */
    int method_id;              /* enum gh_h1_method */
    const gh_h1_header_t *headers;
    uint32_t nheaders;
    const struct sockaddr *peer; /* the client (after trusted proxies) */
    const char *country;        /* ISO alpha-2 upper case, or NULL: unknown (country rules do not match) */
    /* the request's variant of a flag, or NULL (variant rules do not match) */
    const char *(*variant)(void *arg, const char *flag);
    void *arg;
} gh_rules_in_t;

#define GH_RULES_MAX_MATCHED 64 /* header-edit rules applied per request, at most */

typedef struct {
    const gh_rule_t *action;    /* the first matching rule with a terminal action, or NULL */
    gh_str_t cap_name[GH_RULE_MAX_CAPTURES], cap_value[GH_RULE_MAX_CAPTURES]; /* action's captures */
    uint32_t ncaps;             /* (the splat is named "splat") */
    const gh_rule_t *edits[GH_RULES_MAX_MATCHED]; /* matching rules with header edits, in order
                                                   * (the action's own included at its place) */
    uint32_t nedits;
} gh_rules_out_t;

/* Match a request: 1 when something matched (out filled), 0 when nothing did (or when rs has
 * not been compiled successfully). */
int gh_rules_match(const gh_ruleset_t *rs, const gh_rules_in_t *in, gh_rules_out_t *out);

/* For tests: the candidates the calling thread's last gh_rules_match evaluated. */
extern __thread uint32_t gh_rules_candidates_last;

/* Expand the action's `to` with its captures into buf (NUL-terminated). When `to` has no '?'
 * and the request's query is not empty, "?query" is appended (Netlify passes the query on),
 * unless the rule has query conditions (then the query was consumed by the rule). Returns the
 * length, or -1 when it does not fit cap. */
ssize_t gh_rules_expand(const gh_rules_out_t *m, gh_str_t query, char *buf, size_t cap);

#endif
