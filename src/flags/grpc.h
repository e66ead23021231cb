/* grpc.h: flagd's evaluation service over gRPC on the `flagd_grpc` listener, so that the
 * OpenFeature flagd providers (RPC mode) and any flagd gRPC client use gatehouse unchanged.
 *
 * Services flagd.evaluation.v1.Service and flagd.evaluation.v2.Service (proto/flagd/...):
 * ResolveBoolean/String/Int/Float/Object, ResolveAll, and the server-streaming EventStream.
 * Messages are protobuf (protobuf-c, generated from proto/ at build time); gRPC framing
 * (5-byte length prefix, status in trailers) over the project's HTTP/2 server (proxy/h2.c):
 * a unary call is a streamed answer of one message (session.h), a failed one a
 * trailers-only answer.
 *
 * Tenant: as OFREP (x-api-key or authorization: Bearer metadata; without, the one tenant
 * with open flags), else UNAUTHENTICATED. Results as flagd answers them:
 *  - success: value, reason, variant, metadata (the flag's over the set's);
 *  - errors as status: FLAG_NOT_FOUND NOT_FOUND(5); TYPE_MISMATCH, INVALID_CONTEXT,
 *    TARGETING_KEY_MISSING INVALID_ARGUMENT(3); PARSE_ERROR DATA_LOSS(15); GENERAL UNKNOWN(2);
 *    the message "CODE: details";
 *  - a disabled flag: v1 NOT_FOUND "FLAG_DISABLED" (as flagd's v1), v2 OK with reason
 *    DISABLED and no value (the caller's default); no default variant: DEFAULT, no value;
 *  - ResolveInt truncates a number toward zero (flagd's Go int64(float64));
 *  - ResolveAll: every enabled flag that evaluates without error, numbers as double_value.
 * EventStream: provider_ready at once; configuration_change with data {flags: {KEY:
 * {type: write|update|delete, source, flagKey}}} when the tenant's flags change (file
 * reloads, configuration reloads); keep_alive after flagd_grpc.keepalive of quiet (15 s);
 * status UNAVAILABLE when the server drains, so the provider reconnects.
 * Bad input: a request that is not one uncompressed message is INVALID_ARGUMENT (a
 * compressed one UNIMPLEMENTED); a context nested deeper than GH_GRPC_MAX_DEPTH or larger
 * than 1 MiB is INVALID_ARGUMENT; an unknown method UNIMPLEMENTED.
 *
 * Registered by main.c with gh_session_set_handler(GH_LISTEN_GRPC, ...). */
#ifndef GH_FLAGS_GRPC_H
#define GH_FLAGS_GRPC_H

#include <jansson.h>

#include "proxy/session.h"

#define GH_GRPC_MAX_DEPTH 32 /* Struct / ListValue nesting of a context */

void gh_grpc_handle(gh_req_t *r, const gh_req_view_t *v);

/* The context of a Resolve*Request / ResolveAllRequest message (protobuf bytes): 0 and a
 * JSON object in *ctx (NULL when absent; the caller's to free), or -1 with why in err (-2: a
 * flag key with a NUL byte, which no flag has).
 * Exposed for the fuzz target. key gets flag_key (NULL for ResolveAll). */
int gh_grpc_parse_request(const uint8_t *p, size_t n, int with_key, char **key, json_t **ctx, char *err, size_t errcap);

#endif
