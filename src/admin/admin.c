/* admin.c: see admin.h. */
#include "admin/admin.h"

#include <stdlib.h>

void gh_admin_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    if (m->method_id != GH_M_GET && m->method_id != GH_M_HEAD) {
        gh_session_respond(r, 405, "text/plain", "method not allowed\n", 19, "Allow: GET, HEAD\r\n");
        return;
    }
    if (gh_str_eq(m->path, GH_STR("/healthz"))) {
        gh_session_respond(r, 200, "text/plain", "ok\n", 3, "Cache-Control: no-store\r\n");
    } else if (gh_str_eq(m->path, GH_STR("/readyz"))) {
        if (gh_workers_draining())
            gh_session_respond(r, 503, "text/plain", "draining\n", 9, "Cache-Control: no-store\r\n");
        else
            gh_session_respond(r, 200, "text/plain", "ready\n", 6, "Cache-Control: no-store\r\n");
    } else if (gh_str_eq(m->path, GH_STR("/metrics"))) {
        size_t len = 0;
        char *text = gh_metrics_render(&len);
        if (!text) {
            gh_session_respond(r, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        gh_session_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, "Cache-Control: no-store\r\n");
        free(text);
    } else {
        gh_session_respond(r, 404, "text/plain", "not found\n", 10, NULL);
    }
}
