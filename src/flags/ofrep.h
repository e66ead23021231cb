/* ofrep.h: the OpenFeature Remote Evaluation Protocol (OFREP) on the `ofrep` listener.
 *
 * POST /ofrep/v1/evaluate/flags/{key}  one flag: 200 {key, value, reason, variant, metadata};
 *                                      400 {key, errorCode, errorDetails} for an evaluation error
 *                                      (PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT,
 *                                      TYPE_MISMATCH, GENERAL); 404 for FLAG_NOT_FOUND (and a disabled
 *                                      flag, as flagd answers).
 * POST /v1/events:publish             experiments' metric events (exp.h), same credentials.
 * POST /ofrep/v1/evaluate/flags        every flag of the tenant: 200 {flags: [...], metadata} with an
 *                                      ETag; If-None-Match with it is answered 304.
 * The body is {"context": {...}} (absent or empty: no context). A body that is not JSON is 400
 * PARSE_ERROR, a context that is not an object 400 INVALID_CONTEXT.
 * The tenant is the one whose flags.api_keys holds the key sent as `X-API-Key` or
 * `Authorization: Bearer KEY` (compared in constant time); without a key, the one tenant whose
 * flags have no api_keys, if there is exactly one; else 401.
 *
 * Registered by main.c with gh_session_set_handler(GH_LISTEN_OFREP, ...). */
#ifndef GH_FLAGS_OFREP_H
#define GH_FLAGS_OFREP_H

#include "proxy/session.h"

void gh_ofrep_handle(gh_req_t *r, const gh_req_view_t *v);

/* Shared with the flagd gRPC service (grpc.c): */
/* The tenant a request's credentials map to (as above; or a control-plane API key holding
 * scope, GH_SCOPE_FLAGS or GH_SCOPE_EVENTS), or NULL. */
const gh_conf_tenant_t *gh_flags_tenant_of(const gh_conf_t *c, const gh_h1_request_t *m, unsigned scope);
/* The tenant's flags.rate_limit: 1 when one more evaluation request may go, else 0 with
 * the seconds until one may in *retry_after_s (OFREP 429 Retry-After, gRPC RESOURCE_EXHAUSTED). */
int gh_flags_admit(const gh_conf_tenant_t *t, uint64_t *retry_after_s);
/* An evaluation with a targetingKey of a flag under an experiment: its exposure (exp.h). */
#include "flags/flags.h"
void gh_flags_exposure(uint32_t slot, const gh_conf_tenant_t *t, const char *key, const gh_flag_result_t *res,
                       const json_t *ctx);
/* The calling thread's scratch arena for rule evaluation (allocated once). -1: no memory. */
#include "flags/jsonlogic.h"
int gh_flags_arena(gh_jl_arena_t *a);

#endif
