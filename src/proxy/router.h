/* router.h: picks the tenant's site by Host and the route by path, method, headers and TLS client fingerprint (JA4).
 *
 * Sites are indexed when a snapshot is compiled (gh_router_build, called by the
 * config compiler): exact host names in a hash table, wildcard suffixes
 * ("*.example.com") tried longest first, then the catch-all "*". Within a site,
 * routes are tried in declaration order; the first whose path, method and header
 * conditions all hold wins. Matching allocates nothing.
 *
 * Called by the connection code for every request. Calls PCRE2 (JIT) for regexes. */
#ifndef GH_PROXY_ROUTER_H
#define GH_PROXY_ROUTER_H

#include "config/config.h"
#include "http/h1.h"

/* Build c->router from c->tenants. 0, or GH_ECONFIG with a message in errs
 * (duplicate host across sites, for instance). */
int gh_router_build(gh_conf_t *c, gh_conf_errors_t *errs);
void gh_router_free(gh_conf_t *c);

/* The site serving host (any case, optional ":port", optional trailing dot), or NULL. */
const gh_conf_site_t *gh_router_site(const gh_conf_t *c, gh_str_t host);

/* The first route of site matching req, or NULL. */
const gh_conf_route_t *gh_router_route(const gh_conf_site_t *site, const gh_h1_request_t *req, const char *ja4);

#endif
