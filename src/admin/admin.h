/* admin.h: the admin listener's handler: /metrics, /healthz, /readyz.
 * Runs on the admin thread (src/proxy/worker.c); registered by main.c. The admin
 * API proper (tenants, routes, flags ...) will grow here. */
#ifndef GH_ADMIN_ADMIN_H
#define GH_ADMIN_ADMIN_H

#include "proxy/session.h"

void gh_admin_handle(gh_req_t *r, const gh_req_view_t *v);
/* Purge a tenant's cached objects: kind GH_PURGE_* (cache.h), value a tag, a URL or URL
 * prefix ("http://host/path?q" or "host/path?q"), or unused for all. The count, -1 when the
 * URL is too long. */
int64_t gh_admin_purge(const gh_conf_t *c, gh_str_t tenant, int kind, const char *value, int soft);
/* A purge made through this node's API, told to the other nodes through the event stream
 * (nothing when the stream is off): {"tenant","kind":"tag|url|prefix|all","values":[..],"soft"}. */
void gh_admin_purge_share(const char *tenant, int kind, const char *const *values, int nvalues, int soft);
/* A purge from another node (the stream's on_purge): applied to this node's cache under the
 * configuration in force. */
void gh_admin_purge_remote(const char *json, size_t len);

#endif
