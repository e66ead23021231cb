/* demo.c: see demo.h. */
#include "proxy/demo.h"

#include "core/json.h"

#include <stdio.h>
#include <stdlib.h>

static const char page[] =
    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>gatehouse demo origin</title></head>\n"
    "<body><h1>gatehouse is running</h1>\n"
    "<p>This page comes from the built-in demo origin, through the gatehouse proxy.</p>\n"
    "<ul><li><a href=\"/echo\">/echo</a>: your request as the origin saw it (JSON)</li>\n"
    "<li><a href=\"/hello\">/hello</a>: a direct response from a route</li></ul>\n"
    "<p>Metrics: <code>curl http://127.0.0.1:9090/metrics</code></p>\n</body></html>\n";

/* Append s as a JSON string; returns the new length (bounded by cap). */
static size_t json_str(char *out, size_t n, size_t cap, gh_str_t s)
{
    return n < cap ? n + gh_json_str(out + n, cap - n, s, 0) : n;
}

/* A cheap checksum of the body, so that a client can check it arrived whole. */
static uint64_t body_sum(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

void gh_demo_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    if (gh_str_eq(m->path, GH_STR("/"))) {
        gh_session_respond(r, 200, "text/html; charset=utf-8", page, sizeof(page) - 1, NULL);
    } else if (gh_str_eq(m->path, GH_STR("/echo"))) {
        size_t cap = 65536, n = 0;
        char *out = malloc(cap);
        if (!out) {
            gh_session_respond(r, 503, "text/plain", "out of memory\n", 14, NULL);
            return;
        }
        n += (size_t)snprintf(out, cap, "{\"method\":");
        n = json_str(out, n, cap, m->method);
        n += (size_t)snprintf(out + n, cap - n, ",\"path\":");
        n = json_str(out, n, cap, m->path);
        n += (size_t)snprintf(out + n, cap - n, ",\"query\":");
        n = json_str(out, n, cap, m->query);
        n += (size_t)snprintf(out + n, cap - n, ",\"headers\":{");
        for (uint16_t i = 0; i < m->nheaders && n + 16 < cap; i++) {
            if (i)
                out[n++] = ',';
            n = json_str(out, n, cap, m->headers[i].name);
            out[n++] = ':';
            n = json_str(out, n, cap, m->headers[i].value);
        }
        n += (size_t)snprintf(out + n, cap - n, "},\"body_bytes\":%zu,\"body_sum\":%llu}\n", v->body_len,
                              (unsigned long long)body_sum(v->body, v->body_len));
        if (n > cap)
            n = cap;
        gh_session_respond(r, 200, "application/json", out, n, NULL);
        free(out);
    } else {
        char body[256];
        int n = snprintf(body, sizeof body, "gatehouse demo origin: %.*s\n", (int)GH_MIN(m->path.n, 200), m->path.p);
        gh_session_respond(r, 200, "text/plain; charset=utf-8", body, (size_t)n, NULL);
    }
}
