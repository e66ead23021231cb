/* policy.h: the rules of RFC 9111 (HTTP caching) as pure functions, for a shared cache.
 *
 * Cache-Control parsing (RFC 9111 5.2, with RFC 5861 stale-while-revalidate and
 * stale-if-error and RFC 9213 targeted fields, which use the same directive syntax:
 * the caller parses the governing field), HTTP dates (RFC 9110 5.6.7), Age (RFC 9111
 * 5.1), whether a response may be stored (3), its freshness lifetime (4.2.1,
 * heuristics 4.2.2), its current age (4.2.3), and whether a stored response may be
 * served for a request, fresh or stale (4, 4.2.4, 5.2.1, RFC 5861).
 *
 * No allocation, no I/O, no clock: times are passed in (seconds since the epoch).
 * Called by the cache (cache.c, session.c), the unit test and the fuzz target. */
#ifndef GH_CACHE_POLICY_H
#define GH_CACHE_POLICY_H

#include "core/common.h"

#define GH_CC_UNSET (-1)
#define GH_DELTA_MAX 2147483648LL /* delta-seconds beyond 2^31 are 2^31 (RFC 9111 1.2.2) */

enum {
    GH_CC_NO_STORE = 1u << 0,
    GH_CC_NO_CACHE = 1u << 1, /* unqualified, or with field names (then also NO_CACHE_FIELDS) */
    GH_CC_PRIVATE = 1u << 2,  /* unqualified only; private="a, b" sets PRIVATE_FIELDS instead */
    GH_CC_PUBLIC = 1u << 3,
    GH_CC_MUST_REVALIDATE = 1u << 4,
    GH_CC_PROXY_REVALIDATE = 1u << 5,
    GH_CC_MUST_UNDERSTAND = 1u << 6,
    GH_CC_ONLY_IF_CACHED = 1u << 7,
    GH_CC_NO_TRANSFORM = 1u << 8,
    GH_CC_IMMUTABLE = 1u << 9,
    GH_CC_PRIVATE_FIELDS = 1u << 10,  /* private="..": the named fields are not stored */
    GH_CC_NO_CACHE_FIELDS = 1u << 11, /* no-cache="..": treated as unqualified no-cache too */
    GH_CC_INVALID = 1u << 12, /* a freshness directive had a bad or conflicting argument:
                               * the response is stale (4.2.1 "considered stale") */
};

/* Directives of one message. Delta-seconds values are >= 0, capped at GH_DELTA_MAX,
 * GH_CC_UNSET when absent. max_stale given without a value is GH_DELTA_MAX ("any"). */
typedef struct {
    uint32_t flags;
    int64_t max_age, s_maxage, max_stale, min_fresh;
    int64_t swr, sie; /* stale-while-revalidate, stale-if-error (RFC 5861) */
    gh_str_t private_fields; /* the quoted list of private="..." without the quotes */
} gh_cc_t;

void gh_cc_init(gh_cc_t *cc);
/* Add the directives of one field line (Cache-Control, Pragma is not parsed here, or a
 * targeted field such as CDN-Cache-Control). Directive names are case-insensitive;
 * arguments are token or quoted-string; unknown directives are ignored; a directive
 * whose argument is malformed (max-age=abc, max-age=-1, max-age="" ...) makes the
 * response stale for max-age/s-maxage (GH_CC_INVALID) and is otherwise ignored; a
 * repeated max-age or s-maxage with a different value is GH_CC_INVALID too (4.2.1).
 * Never fails: any bytes are accepted. */
void gh_cc_parse(gh_cc_t *cc, gh_str_t value);

/* An HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), and the obsolete
 * rfc850 ("Sunday, 06-Nov-94 08:49:37 GMT", two-digit years read as RFC 9110 5.6.7
 * says: more than 50 years ahead is the past century) and asctime ("Sun Nov  6
 * 08:49:37 1994") forms, exactly (case-sensitive names, the right weekday name
 * is not checked, single spaces, GMT only, valid ranges: day within its month incl.
 * leap years, hour < 24, minute < 60, second <= 60). Seconds since the epoch, or -1
 * when the value is not one of these. Leading/trailing whitespace is not allowed. */
int64_t gh_http_date(gh_str_t v);
/* Format t as IMF-fixdate into out (29 bytes + NUL). Returns 29. */
int gh_http_date_fmt(int64_t t, char out[30]);

/* Age (and any delta-seconds field): 1*DIGIT, capped at GH_DELTA_MAX; -1 when invalid
 * (empty, a sign, spaces inside, a list "1, 2"). */
int64_t gh_delta_seconds(gh_str_t v);

/* Status codes that are heuristically cacheable by default (RFC 9110 15.1):
 * 200 203 204 206 300 301 308 404 405 410 414 501. */
int gh_status_cacheable_default(int status);
/* Status codes this cache understands (must-understand): the final ones RFC 9110
 * defines (200-206, 300-308 but 305 and 306, 400-417, 421, 422, 426, 500-505). */
int gh_status_understood(int status);

/* What the cache learned from a response (filled by the caller from its head). */
typedef struct {
    int status;
    gh_cc_t cc;        /* Cache-Control, or the targeted field when one applies */
    int targeted;      /* cc comes from a targeted field (CDN-Cache-Control or the
                        * tenant's): Expires is then ignored (RFC 9213 2.2) */
    int64_t date;      /* Date, -1 when absent or invalid */
    int has_expires;   /* an Expires field is present ... */
    int64_t expires;   /* ... with this value, -1 when invalid (= already expired) */
    int64_t last_modified; /* -1 when absent or invalid */
    int64_t age;       /* Age, -1 when absent or invalid */
    int has_vary_star; /* Vary: * */
} gh_resp_facts_t;

/* What the cache learned from the request that fetched or asks for a response. */
typedef struct {
    int method_id;      /* enum gh_h1_method */
    gh_cc_t cc;         /* the request's Cache-Control */
    int pragma_no_cache; /* Pragma: no-cache and no Cache-Control field (5.4) */
    int authorization;  /* an Authorization field is present */
} gh_req_facts_t;

/* Whether this shared cache may store the response (RFC 9111 3 and 3.5):
 * GET only (HEAD and others are never stored here); a final status that is not 206
 * or 304 (this cache does not store partial content); no-store in the request or the
 * response (but must-understand with an understood status overrides the response's
 * no-store, and must-understand with a status not understood forbids storing);
 * no unqualified private; with Authorization only when the response has
 * must-revalidate, public or s-maxage; Vary: * is never stored; and the response has
 * explicit freshness (a valid or invalid Expires, max-age, s-maxage), or public, or a
 * status cacheable by default. Returns 1 or 0. */
int gh_cache_storable(const gh_req_facts_t *req, const gh_resp_facts_t *resp);

/* The freshness lifetime in seconds (RFC 9111 4.2.1, shared cache): s-maxage, else
 * max-age, else Expires - Date (Date absent: Expires - response_time; an invalid
 * Expires: 0), else, where a heuristic is allowed (public, or a status cacheable by
 * default; 4.2.2): the operator's default_ttl when > 0, else 10% of (Date, or
 * response_time) - Last-Modified when Last-Modified is valid and earlier, else 0.
 * GH_CC_INVALID gives 0. Never negative. max_ttl > 0 caps the result (operator's
 * policy). *heuristic (may be NULL) is set to 1 when the lifetime is heuristic or
 * default_ttl, 0 when explicit. */
int64_t gh_fresh_lifetime(const gh_resp_facts_t *resp, int64_t response_time, int64_t default_ttl,
                          int64_t max_ttl, int *heuristic);

/* The corrected initial age (RFC 9111 4.2.3) at the time the response was received:
 * apparent_age = max(0, response_time - date_value); response_delay = response_time -
 * request_time; corrected_age_value = age_value + response_delay; result =
 * max(apparent_age, corrected_age_value). age_value -1 counts as 0, date -1 as
 * apparent_age 0. */
int64_t gh_initial_age(const gh_resp_facts_t *resp, int64_t request_time, int64_t response_time);

/* How a stored response may be used for a request (4, 4.2.4, 5.2.1, RFC 5861). */
enum {
    GH_USE_FRESH = 0,   /* serve it as is */
    GH_USE_STALE_OK,    /* stale, but the request allows it (max-stale): serve it */
    GH_USE_STALE_SWR,   /* stale within stale-while-revalidate: serve it and revalidate
                         * in the background */
    GH_USE_REVALIDATE,  /* must be validated with the origin first (stale, no-cache in
                         * the request or the stored response, min-fresh unmet) */
};

/* The stored response's directives and times, as the cache keeps them. */
typedef struct {
    int64_t lifetime;   /* gh_fresh_lifetime at store time */
    int64_t initial_age; /* gh_initial_age at store time */
    int64_t response_time;
    gh_cc_t cc;          /* its Cache-Control (or targeted field) */
} gh_stored_facts_t;

/* The current age at time now (4.2.3): initial_age + (now - response_time). */
int64_t gh_current_age(const gh_stored_facts_t *s, int64_t now);

/* Decide: the request's no-cache (or Pragma: no-cache) and the stored no-cache
 * force REVALIDATE; fresh means lifetime > current_age and, with min-fresh, lifetime
 * - current_age >= min-fresh; request max-age=N: current_age > N is REVALIDATE
 * (unless max-stale allows it); a stale response: must-revalidate, proxy-revalidate
 * or s-maxage (shared cache) forbid serving it stale at all (REVALIDATE); otherwise
 * request max-stale (any, or >= staleness) gives STALE_OK; stale-while-revalidate
 * window (response swr >= staleness) gives STALE_SWR; else REVALIDATE. */
int gh_cache_usable(const gh_req_facts_t *req, const gh_stored_facts_t *s, int64_t now);

/* Whether a stale response may be served because the origin failed (RFC 5861
 * stale-if-error in the response or the request, 4.2.4: not with must-revalidate,
 * proxy-revalidate or s-maxage): 1 when staleness <= the larger window. */
int gh_cache_stale_if_error(const gh_req_facts_t *req, const gh_stored_facts_t *s, int64_t now);

#endif
