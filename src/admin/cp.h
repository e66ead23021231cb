/* cp.h: the control plane: the admin API's resources (tenants and what they hold, API keys,
 * the audit log, configuration versions), kept in the store (store.h) and layered over the
 * configuration file.
 *
 * Model. The configuration in force is the YAML file with the API's objects layered over it
 * (gh_conf_load_layered). A tenant is defined either in the file or through the API: file
 * tenants are readable through the API and refused for writes (409, file-managed); API
 * tenants live in the store as JSON documents with the file's tenant schema plus their own
 * `upstreams` (named TENANT/NAME in the configuration, so a tenant only routes to its own
 * pools unless the operator points it at one of the file's). Every accepted change is
 * validated by compiling the whole configuration, written as a new numbered version (the full
 * set of API objects) with its audit record and idempotency record in one transaction, then
 * swapped into every worker (the same path as a reload). Versions can be listed, diffed and
 * rolled back (a rollback is a new version). Other nodes sharing a PostgreSQL store learn of a
 * change by LISTEN/NOTIFY (a SQLite store shared by processes on one host: polled each second)
 * and apply it.
 *
 * Access. The operator key (GATEHOUSE_ADMIN_KEY / admin.key_file) may do everything. Tenant API
 * keys (gh_<id>_<secret>, stored as SHA-256, shown once) carry scopes: read, write, admin (keys),
 * flags:evaluate, events:publish; they see only their tenant (others are 404), and a missing
 * scope is 403. Without an operator key the listener is loopback-only and callers without a
 * key act as the operator.
 *
 * Threads: requests come on the admin thread; the watcher thread follows other nodes; main.c
 * reloads the file. All of them change the configuration under gh_cp_lock. */
#ifndef GH_ADMIN_CP_H
#define GH_ADMIN_CP_H

#include <jansson.h>

#include "config/config.h"
#include "proxy/session.h"

/* Start: open the store named by c->admin.store (none: the API is read-only for
 * configuration), and layer its newest version over the file c was loaded from. 0 with *out
 * (a new reference: the configuration to start with; c itself when there is nothing stored),
 * or -1 with the reason printed to stderr. */
int gh_cp_start(gh_conf_t *c, gh_conf_t **out);
/* main.c's swap of a configuration into the workers (consumes n; 0 when it took effect). */
void gh_cp_set_publisher(int (*publish)(gh_conf_t *n, const char *what, int rotate));
/* The configuration in force changed (main.c's publish calls it, under the lock). */
void gh_cp_adopt(gh_conf_t *c);
/* The configuration store's state: -1 when there is none, 1 when it answered at its last
 * check (each second, or at a change notice), 0 when it did not (down since *since_ms, wall
 * clock); *version is the stored version in force (0 without a store). */
int gh_cp_store_state(int64_t *version, int64_t *since_ms);
/* The configuration in force (a new reference). */
gh_conf_t *gh_cp_current(void);
void gh_cp_stop(void);

void gh_cp_lock(void);
void gh_cp_unlock(void);
/* The API objects in force as overlay JSON (valid under the lock), NULL when none. */
const char *gh_cp_overlay(size_t *len);

/* Who is calling (gh_cp_auth). */
typedef struct {
    int operator;     /* the operator key (or no key on a loopback listener) */
    char tenant[129]; /* a tenant key's tenant */
    char key_id[32];  /* a tenant key's id */
    unsigned scopes;
} gh_cp_actor_t;

/* Authenticate a request on the admin listener: 0 and *a, or 401. */
int gh_cp_auth(const gh_conf_t *c, const gh_h1_request_t *m, gh_cp_actor_t *a);
/* Requests under /v1/tenants, /v1/versions, /v1/audit: 1 when answered. */
int gh_cp_handle(gh_req_t *r, const gh_req_view_t *v, const gh_cp_actor_t *a);
/* gh_cp_auth for a bare token (token NULL: none sent), as the gRPC admin service gets it. */
int gh_cp_auth_token(const gh_conf_t *c, const char *token, size_t n, gh_cp_actor_t *a);

/* The same resources without HTTP/1 (the gRPC admin service). method "GET", "POST", "PUT",
 * "PATCH", "DELETE"; target "/v1/tenants/acme/sites?limit=10"; body JSON or NULL; if_match
 * and idem_key may be NULL; peer is recorded in the audit log. out receives the answer
 * (status, content type, extra header lines, body); free it with gh_cp_reply_free. */
typedef struct {
    int status;
    char *ctype;
    char *headers; /* "Name: value\r\n"... (ETag, Location, Gatehouse-Config-Version ...) */
    char *body;    /* NUL-terminated */
    size_t len;
} gh_cp_reply_t;
void gh_cp_call(const gh_cp_actor_t *a, const char *peer, const char *method, const char *target, const char *body,
                size_t len, const char *if_match, const char *idem_key, gh_cp_reply_t *out);
void gh_cp_reply_free(gh_cp_reply_t *r);

/* The strong ETag the API gives a representation: "\"" + 32 hex of SHA-256 of its canonical
 * JSON (sorted keys, compact, private keys redacted as shown) + "\"". */
void gh_cp_etag(const json_t *j, char out[40]);

/* The admin API's own rate limit per caller: 0, or the seconds to wait. */
int gh_cp_rate(const gh_conf_t *c, const gh_cp_actor_t *a, const char *peer);

#endif
