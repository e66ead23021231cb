/* demo.h: the built-in demo origin, so `make run` serves something with nothing else
 * installed: GET / is a small HTML page, /echo returns the request as JSON, any
 * other path a line of text. Runs on the workers, on the demo_origin listener. */
#ifndef GH_PROXY_DEMO_H
#define GH_PROXY_DEMO_H

#include "proxy/session.h"

void gh_demo_handle(gh_req_t *r, const gh_req_view_t *v);

#endif
