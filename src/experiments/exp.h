/* exp.h: experiments: exposures and metric events in, per-variant sufficient statistics kept
 * by one pipeline thread, persisted to an append-only log (evlog.h), and results computed with
 * stats.h.
 *
 * Data in:
 *  - exposures: a route's flag evaluated for a unit (session.c), and OFREP / gRPC evaluations
 *    with a targetingKey (flags/), for a flag that some experiment of the tenant names;
 *  - edge observations: each later request of an exposed unit on a flag route (its path, status,
 *    latency, bytes), for metrics with `path:` or `edge:`;
 *  - events: POST /v1/events:publish (on the OFREP listener), answered only once the events are
 *    in the log and fdatasync'ed (group commit by the pipeline thread), idempotent by eventId.
 * Workers never block: exposures and observations go into a per-worker single-producer ring (a
 * full ring drops the record and counts it); a publish hands its batch over and the request
 * waits, without holding its worker, for the commit (gh_session_defer).
 *
 * The pipeline thread owns all state: per experiment a table of units (variant, first exposure,
 * per metric the unit's value, denominator and pre-exposure covariate) and per variant and
 * metric the sums of those (units, sums, sums of squares, cross-products), updated by deltas so
 * that each unit counts once however many records it sends. Events of units not (yet) exposed
 * are kept per unit for CUPED covariates and counted as unattributed; an exposed unit's event
 * counts for the metric when its time is at or after the exposure, else as covariate.
 *
 * Persistence: first exposures and every accepted event are records of an append-only log
 * (STORE.evlog: frames with length and CRC32; one write(2) per group commit, fdatasync before a
 * publish is answered; first exposures alone are written every 200 ms without fdatasync).
 * Idempotency: an in-memory set of the 128-bit SipHash of (tenant, eventId), rebuilt at start
 * by replaying the log, which gives the same aggregates as before the stop (replay follows the
 * order the pipeline applied the records in). Per-unit edge values are snapshotted every 2 s into
 * a second log (STORE.edges, compacted when it holds 4 times what is live: up to 2 s of edge
 * observations are lost by a kill -9). A store of the previous version (units and events in
 * SQLite) is migrated into the log at first start.
 * Publish bodies are parsed by a purpose-built parser (no JSON tree) that accepts exactly what
 * jansson accepts. Every record may also go to a JSON-lines audit log.
 *
 * Called by main.c (start/stop/config), session.c (exposures, observations, publish), the flags
 * services (exposures) and admin.c (results). */
#ifndef GH_EXPERIMENTS_EXP_H
#define GH_EXPERIMENTS_EXP_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"

/* The hash of names and units in records (SipHash under a fixed key: stable across restarts,
 * since it is persisted). */
uint64_t gh_exp_hash(const char *p, size_t n);

/* Open the store, replay it, start the pipeline thread for nslots producers (workers + admin).
 * 0 or a negative errno / GH_E* with why in err. Does nothing when no tenant has experiments
 * and the store file does not exist. */
int gh_exp_start(const gh_conf_t *c, uint32_t nslots, char *err, size_t errcap);
/* Hand a new configuration to the pipeline (experiments added, changed or removed; state of
 * an experiment whose id and variants stay is kept). Takes its own reference. */
void gh_exp_config(gh_conf_t *c);
/* Flush and stop. */
void gh_exp_stop(void);
int gh_exp_running(void);

/* Whether flag key of tenant t is under some experiment (cheap; read per evaluation). */
int gh_exp_flag_watched(const gh_conf_tenant_t *t, const char *flag);

/* From a worker (slot = its id): unit unit_h was served variant of the flag whose key hashes
 * (gh_exp_hash) to flag_h at time_ms. */
void gh_exp_expose(uint32_t slot, const gh_conf_tenant_t *t, uint64_t flag_h, const char *variant, uint64_t unit_h,
                   uint64_t time_ms);
/* From a worker: a request of exposed unit unit_h on tenant t finished. */
void gh_exp_observe(uint32_t slot, const gh_conf_tenant_t *t, uint64_t unit_h, const char *path, size_t path_len,
                    int status, uint64_t latency_us, uint64_t bytes, uint64_t time_ms);

/* Events: parse a publish body for tenant t. On success the batch is queued and *batch is
 * returned for gh_exp_publish_wait; done(arg, answer_json, status) is then called on worker
 * slot's thread (through gh_worker_post) once the batch is committed, with the answer body.
 * Errors of the whole request (not JSON, too many events...) give -1 with status and a problem
 * detail in err. Per-event problems are reported in the answer, the rest accepted. */
typedef void (*gh_exp_done_fn)(void *arg, int status, const char *body, size_t len);
int gh_exp_publish(uint32_t slot, const gh_conf_tenant_t *t, const char *body, size_t len, gh_exp_done_fn done,
                   void *arg, int *status, char *err, size_t errcap);

/* For the fuzz target: parse a publish body as gh_exp_publish does (no store needed), check
 * what the rest relies on (names, units, ids non-empty and bounded, payloads JSON objects, times
 * not in the future, error indexes ascending). 0 with the counts, -status for a refused request,
 * -1000 when an invariant is broken. */
int gh_exp_parse_check(const char *body, size_t len, int64_t now_ms, uint32_t *nev, uint32_t *nerr, char *err,
                       size_t errcap);

/* The results of experiment id of tenant as JSON (the caller's), or NULL with status (404...)
 * and err. */
json_t *gh_exp_results(const char *tenant, const char *id, int *status, char *err, size_t errcap);

#endif
