/* http.h: from HTTP messages to the cache: keys, facts, the stored head, conditionals,
 * ranges, Cache-Status. The request path (session.c) calls these around the store
 * (cache.h) and the rules (policy.h). No I/O; allocation only where noted. */
#ifndef GH_CACHE_HTTP_H
#define GH_CACHE_HTTP_H

#include "cache/cache.h"
#include "config/config.h"

#define GH_CACHE_KEY_MAX 8192

/* The primary key of a request on a route: tenant, scheme, host (lowercased, when the
 * route keys on it), path, the query as the route normalises it, the selected headers
 * and cookies. Returns its length, or -1 when it would exceed cap (not cached). */
int gh_cache_key(const gh_conf_route_t *rt, const gh_h1_request_t *m, int https, char *out, size_t cap);

/* The request's directives (Cache-Control, Pragma, Authorization). */
void gh_cache_req_facts(const gh_h1_header_t *h, size_t n, int method_id, gh_req_facts_t *out);

/* The response's facts: the governing directives are the tenant's targeted field when
 * present (targeted may be NULL), else CDN-Cache-Control, else Cache-Control.
 * *vary receives the normalised Vary names ("a,b", lowercased, deduplicated) written
 * into vbuf (cap bytes; -1 length when they do not fit: not storable). */
void gh_cache_resp_facts(const gh_h1_header_t *h, size_t n, int status, const char *targeted,
                         gh_resp_facts_t *out, char *vbuf, size_t vcap, int *vlen);

/* The header lines to store ("Name: value\r\n"...): hop-by-hop fields, those the
 * Connection field names, framing (Content-Length, Transfer-Encoding), Age, the
 * fields private="..." names, and Set-Cookie when strip_cookie are left out; a Date
 * is added when the origin sent none (now). Returns the length, or -1 over cap. */
int gh_cache_stored_head(const gh_h1_header_t *h, size_t n, const gh_cc_t *cc, int strip_cookie, int64_t now,
                         char *out, size_t cap);

/* The same for a 304's update of a stored object (RFC 9111 3.2): the stored lines,
 * with every field the 304 carries replaced by its value(s) (but framing fields). */
int gh_cache_updated_head(gh_str_t stored, const gh_h1_header_t *h, size_t n, char *out, size_t cap);

/* Surrogate keys from Cache-Tag / Surrogate-Key (comma or space separated), each
 * NUL-terminated into out, at most GH_CACHE_MAX_TAGS. Returns the length. */
int gh_cache_tags(const gh_h1_header_t *h, size_t n, char *out, size_t cap);

/* A client's conditional request against a stored response (RFC 9110 13.2.2):
 * If-None-Match (weak comparison) or, without it, If-Modified-Since against
 * Last-Modified. 1 when the answer is 304 Not Modified. */
int gh_cache_not_modified(const gh_h1_header_t *h, size_t n, const gh_cobj_t *o);

/* Range (RFC 9110 14.2) against a representation of len bytes: 0 when there is none or
 * it is ignored (several ranges, another unit, If-Range that does not match: the whole
 * 200); 1 with *off and *cnt set for one satisfiable range; -1 when unsatisfiable (416). */
int gh_cache_range(const gh_h1_header_t *h, size_t n, const gh_cobj_t *o, uint64_t len, uint64_t *off,
                   uint64_t *cnt);

#endif
