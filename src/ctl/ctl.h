/* ctl.h: `gatehouse ctl`, the command-line client of the admin API (see admin/cp.h).
 *
 * Commands map onto the API: get (lists follow next_cursor), apply -f FILE (YAML or JSON
 * documents PUT with If-Match), delete, versions / diff / rollback, keys list / create /
 * revoke, purge and audit. Output is an aligned table or the API's JSON (pages merged into
 * one array). Exit codes: 0 success, 1 the API refused (its problem printed to stderr, with
 * every error path of a 422), 2 usage error (or an unreadable input file), 3 cannot connect.
 * The key (--key, --key-file, GATEHOUSE_ADMIN_KEY) is sent as a Bearer token and never
 * printed; keys create prints the new tenant key, once.
 *
 * Called by main.c for `gatehouse ctl ...`. Calls jansson, libyaml and its own small blocking
 * HTTP/1.1 client (gh_ctl_http), which other command-line code may use too (main.c's
 * `experiments results` could replace its http_get with it). Nothing else of gatehouse but
 * core/common.h. Single-threaded command-line code: blocking sockets, not for the gateway's
 * worker threads. */
#ifndef GH_CTL_CTL_H
#define GH_CTL_CTL_H

#include <stddef.h>

#include "core/common.h"

/* Exit codes of gh_ctl_main. */
enum { GH_CTL_OK = 0, GH_CTL_API = 1, GH_CTL_USAGE = 2, GH_CTL_CONNECT = 3 };

/* An HTTP answer. */
typedef struct {
    int status;
    char *head;      /* the status line and header fields (NUL-terminated, malloc'd) */
    char *body;      /* the body, de-chunked (NUL-terminated, malloc'd; "" when none) */
    size_t body_len;
} gh_ctl_resp_t;

/* One request on a new connection to addr ("HOST:PORT", "[V6]:PORT", ":PORT" for 127.0.0.1;
 * an "http://" in front is accepted): method, target ("/v1/...", sent as is), extra header
 * fields (each ending in CRLF; NULL: none) and a body (NULL: none; POST, PUT and PATCH always
 * send a Content-Length). Connects within 5 s, then waits at most 30 s for each read; an answer
 * is at most 64 MiB. Returns 0 with *resp (free it with gh_ctl_resp_free), or: GH_EINVAL (bad
 * address), GH_EIO (cannot connect: no such host, refused, unreachable, connect timed out),
 * GH_ETIMEOUT, GH_ECLOSED (closed early or not HTTP), GH_ELIMIT, GH_ENOMEM after connecting;
 * err (if not NULL) then says why in words. */
int gh_ctl_http(const char *addr, const char *method, const char *target, const char *headers, const char *body,
                size_t body_len, gh_ctl_resp_t *resp, char *err, size_t errcap);
void gh_ctl_resp_free(gh_ctl_resp_t *r);
/* The first header field called name (case-insensitive), trimmed, copied into out (cut to
 * cap - 1 bytes): 1 when present, else 0 and out = "". */
int gh_ctl_resp_header(const gh_ctl_resp_t *r, const char *name, char *out, size_t cap);

/* `gatehouse ctl ARGS...`: argv[0] is "ctl". Returns the exit code (GH_CTL_*). */
int gh_ctl_main(int argc, char **argv);

#endif
