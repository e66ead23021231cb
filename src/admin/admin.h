/* admin.h: the admin listener's handler: /metrics, /healthz, /readyz.
 * Runs on the admin thread (src/proxy/worker.c); registered by main.c. The admin
 * API proper (tenants, routes, flags ...) will grow here. */
#ifndef GH_ADMIN_ADMIN_H
#define GH_ADMIN_ADMIN_H

#include "proxy/session.h"

void gh_admin_handle(gh_req_t *r, const gh_req_view_t *v);

#endif
