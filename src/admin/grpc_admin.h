/* grpc_admin.h: the admin API over gRPC, gatehouse.admin.v1.AdminService
 * (proto/gatehouse/admin/v1/admin.proto), on the admin listener beside the REST API.
 *
 * A call is translated into the REST request that does the same (method, /v1/... target,
 * JSON body, If-Match, Idempotency-Key) and carried out by the control plane itself
 * (gh_cp_call, cp.h), so both APIs share resources, validation, versions, the audit log,
 * idempotency records and access rules; the REST answer is translated back into the typed
 * response message, or into a gRPC status (REST status -> gRPC code, the problem's detail
 * and, for 422, every "path: message" in grpc-message; the problem type in trailing metadata
 * gatehouse-problem-type). A write's configuration version goes in the message
 * (config_version) and in trailing metadata gatehouse-config-version; a replayed idempotent
 * call carries gatehouse-idempotent-replayed: true.
 *
 * Framing as the flagd service (flags/grpc.c): one uncompressed message per call (5-byte
 * prefix), a unary answer, status in trailers (trailers-only when the call fails). The
 * request is at most GH_HANDLER_BODY_MAX (1 MiB, as REST bodies; the listener refuses more).
 * Bad input: not exactly one message, a malformed message, a message nested deeper than
 * GH_AGRPC_MAX_DEPTH, a string with a NUL byte or not UTF-8, a non-finite number in a spec:
 * INVALID_ARGUMENT; a compressed message or an unknown method: UNIMPLEMENTED.
 * Authentication: metadata authorization: Bearer <key> (gh_cp_auth_token); the admin API's
 * rate limit applies (RESOURCE_EXHAUSTED).
 *
 * Threads: the admin thread (gh_admin_handle dispatches here). */
#ifndef GH_ADMIN_GRPC_ADMIN_H
#define GH_ADMIN_GRPC_ADMIN_H

#include <jansson.h>

#include "admin/cp.h"
#include "proxy/session.h"

/* Message nesting accepted in a request (a spec's JSON object or list costs about three
 * levels: Struct, map entry, Value). */
#define GH_AGRPC_MAX_DEPTH 128

/* Whether a request on the admin listener is a gRPC call (content-type application/grpc...). */
int gh_admin_grpc_is(const gh_h1_request_t *m);
void gh_admin_grpc_handle(gh_req_t *r, const gh_req_view_t *v);

/* ---- exposed for the fuzz target (tests/fuzz/fuzz_admin_grpc.c) ---- */

/* A call decoded into its REST request. */
typedef struct {
    int method;        /* index into the method table */
    const char *verb;  /* "GET", "POST", ... */
    char *target;      /* "/v1/tenants/acme/sites?limit=10" (malloc'd) */
    char *body;        /* JSON text or NULL (malloc'd) */
    size_t len;
    char if_match[72]; /* "" or "\"<etag>\"" or "*" */
    char idem[256];    /* "" or the idempotency key */
    int absent_404;    /* an Update without etag nor allow_missing: 412 means the resource is absent */
    json_t *ctx;       /* what the answer needs of the request: {"t","s","i"} and "echo" (the spec sent) */
} gh_agrpc_call_t;

/* The method of name (e.g. "CreateTenant"), or -1. */
int gh_admin_grpc_method(const char *name, size_t n);
/* Decode the request message p[0..n) of method m: 0 and *call (gh_admin_grpc_call_free it),
 * or a gRPC status code with why in err (nothing left to free). */
int gh_admin_grpc_decode(int m, const uint8_t *p, size_t n, gh_agrpc_call_t *call, char *err, size_t errcap);
void gh_admin_grpc_call_free(gh_agrpc_call_t *call);
/* Translate the REST answer of call: 0 with the framed response message in *out (malloc'd,
 * *outlen bytes), or a gRPC status code with the message in msg. meta receives trailing
 * metadata lines ("name: value\r\n"...) either way. */
int gh_admin_grpc_encode(const gh_agrpc_call_t *call, const gh_cp_reply_t *rep, uint8_t **out, size_t *outlen, char *msg,
                         size_t msgcap, char *meta, size_t metacap);

#endif
