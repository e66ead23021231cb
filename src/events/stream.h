/* stream.h: the event stream between nodes: records (access, exposures, metric events) to NATS
 * JetStream through a bounded spool on local disk, and cache purges from node to node.
 *
 * Every record is first appended to the spool (segment files in spool_dir, each record framed
 * with its length and a CRC32; write(2) under a mutex, so a crash of the process loses nothing
 * appended) and a publisher thread sends the spool to JetStream from a cursor, in batches of
 * asynchronous publishes, each message carrying Nats-Msg-Id = "<kind>:<tenant>:<id>" so that
 * JetStream drops resends within its duplicate window. Once every message of a batch is
 * acknowledged by JetStream the cursor moves past it (kept in spool_dir/cursor, replaced by
 * rename) and segments wholly behind it are deleted. When NATS is unreachable the records wait
 * in the spool, up to spool_max bytes; beyond that new records are refused and counted. A
 * restart resumes from the cursor: records after it are sent again (at least once; the consumer
 * removes duplicates by id).
 *
 * Subjects: "<prefix>.<kind>.<tenant>" for records (kind: access, exposure, event), and
 * "<prefix>.purge" for purges. The stream (stream_name, subjects "<prefix>.>", file storage,
 * duplicate window 2 min, max_age and max_bytes as configured) is created when missing; an
 * existing stream is used as it is. Tenant names are used as subject tokens
 * (gatehouse's tenant names are [A-Za-z0-9_-]; anything else is %XX-escaped).
 *
 * Purges: gh_stream_purge appends a purge record (kind GH_EV_PURGE, the JSON given, with this
 * node's name added as "node") like any other record; every node follows "<prefix>.purge" with
 * an ordered JetStream consumer (deliver new, so a node sees purges made after it started,
 * across reconnects) and calls on_purge for each purge whose "node" is not its own.
 *
 * Called by main.c (start/stop), accesslog.c's writer thread and the experiments pipeline
 * (records; never a request worker), admin.c and cp.c (purges). Calls libnats. */
#ifndef GH_EVENTS_STREAM_H
#define GH_EVENTS_STREAM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GH_EV_ACCESS = 0, GH_EV_EXPOSURE, GH_EV_EVENT, GH_EV_PURGE, GH_EV_NKINDS } gh_ev_kind_t;

/* "access", "exposure", "event", "purge" */
const char *gh_ev_kind_name(gh_ev_kind_t k);

typedef struct {
    const char *url;       /* "nats://127.0.0.1:4222", or several separated by commas */
    const char *stream;    /* JetStream stream name ("GATEHOUSE") */
    const char *prefix;    /* subject prefix ("gatehouse") */
    const char *spool_dir; /* spool directory, created when missing */
    uint64_t spool_max;    /* bytes of spool on disk at most (1 GiB) */
    const char *node;      /* this node's name */
    uint32_t kinds;        /* bit (1u << kind) for each kind published; purges always */
    uint64_t max_age_ms;   /* retention of a stream this node creates (0: none) */
    uint64_t max_bytes;    /* size bound of a stream this node creates, oldest dropped (0: none) */
    /* a purge made on another node: the JSON object given to gh_stream_purge there (with
     * "node"); called on the subscription's thread */
    void (*on_purge)(const char *json, size_t len);
} gh_stream_conf_t;

/* Open the spool (resuming from its cursor) and start the publisher and the purge follower.
 * NATS need not be reachable: the publisher connects (and reconnects) in the background.
 * 0, or -1 with why in err (the spool directory cannot be made or read). */
int gh_stream_start(const gh_stream_conf_t *c, char *err, size_t errcap);
/* Send what the spool holds for up to 2 s more, save the cursor and stop. */
void gh_stream_stop(void);
/* Whether records of kind are published (the stream is started and the kind is on). */
int gh_stream_on(gh_ev_kind_t kind);

/* Append a record: json is one JSON object (no newline), id unique per tenant and kind
 * (request id, event id). Thread-safe; blocks only on write(2). 0, or GH_ELIMIT when the
 * spool is full or the record too large (1 MiB), counted in dropped. */
int gh_stream_put(gh_ev_kind_t kind, const char *tenant, size_t tenant_len, const char *id, size_t id_len,
                  const char *json, size_t len);

/* The same for n records at once: framed into one buffer and appended with one write(2) (the
 * access log's writer hands over a round's records this way). All or nothing for the spool's
 * bound: 0, or GH_ELIMIT when some were refused (counted in dropped). */
typedef struct {
    gh_ev_kind_t kind;
    const char *tenant, *id, *json;
    size_t tenant_len, id_len, len;
} gh_stream_rec_t;
int gh_stream_put_many(const gh_stream_rec_t *recs, size_t n);

/* Tell the other nodes about a purge: json is an object such as
 * {"tenant":"t","kind":"tag","values":["a"],"soft":false}; "node" is added. 0 or GH_ELIMIT. */
int gh_stream_purge(const char *json, size_t len);

typedef struct {
    uint64_t appended[GH_EV_NKINDS]; /* records appended to the spool */
    uint64_t published;              /* acknowledged by JetStream */
    uint64_t dropped;                /* refused: spool full or record too large */
    uint64_t spool_bytes;            /* on disk now, not yet acknowledged */
    uint64_t purges_received;        /* purges from other nodes applied */
    uint64_t publish_errors;         /* batches that failed and were retried */
    int connected;                   /* to NATS now */
} gh_stream_stats_t;
void gh_stream_stats(gh_stream_stats_t *s);

/* Prometheus text of the above (gatehouse_stream_*), appended to out; returns bytes written. */
size_t gh_stream_metrics(char *out, size_t cap);

#endif
