/* chsink.h: the ClickHouse sink: a consumer of the event stream (stream.h) that loads access
 * records, exposures and metric events into ClickHouse tables over its HTTP interface.
 *
 * A durable JetStream pull consumer (name `consumer`, filter "<prefix>.>", explicit acks) is
 * shared by every node that runs the sink, so each message goes to one of them. Messages are
 * fetched in batches, grouped by kind (the subject's second token; purges are acknowledged and
 * skipped) and inserted with one `INSERT INTO <db>.<table> FORMAT JSONEachRow` per table per
 * batch; the batch is acknowledged only after ClickHouse answered 200, so a failed insert is
 * delivered again (at least once). Duplicates are removed twice: a bounded set of the ids seen
 * recently drops redeliveries before the insert, and the tables are ReplacingMergeTree ordered
 * by (tenant, id), so a row inserted twice collapses (queries use FINAL, or count distinct ids).
 * The database and tables are created when missing (schema in docs/events.md).
 *
 * Called by main.c. Calls libnats and ClickHouse over HTTP/1.1 (its own small blocking client
 * on the sink's thread). */
#ifndef GH_EVENTS_CHSINK_H
#define GH_EVENTS_CHSINK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *nats_url; /* as the stream's */
    const char *stream;   /* JetStream stream name */
    const char *prefix;   /* subject prefix */
    const char *consumer; /* durable consumer name ("gatehouse-clickhouse") */
    const char *url;      /* ClickHouse HTTP interface: "http://127.0.0.1:8123" */
    const char *database; /* "gatehouse" */
    const char *user, *password; /* X-ClickHouse-User / -Key, or NULL; the password never logged */
    uint32_t batch;       /* messages per fetch and insert, at most (10000) */
    uint32_t flush_ms;    /* longest wait for a batch to fill (1000) */
} gh_chsink_conf_t;

/* Start the sink's thread; it connects (and reconnects) in the background. 0, or -1 with err. */
int gh_chsink_start(const gh_chsink_conf_t *c, char *err, size_t errcap);
/* Insert what was fetched, acknowledge it and stop (within about 2 s). */
void gh_chsink_stop(void);

typedef struct {
    uint64_t fetched;    /* messages fetched from the stream */
    uint64_t inserted;   /* rows inserted into ClickHouse */
    uint64_t duplicates; /* messages dropped as already seen */
    uint64_t insert_errors; /* inserts that failed (their messages are delivered again) */
    uint64_t bad;        /* messages that were not a JSON object of a known kind (acknowledged, dropped) */
    int connected;       /* to NATS now */
} gh_chsink_stats_t;
void gh_chsink_stats(gh_chsink_stats_t *s);
/* Prometheus text (gatehouse_clickhouse_*), appended to out; returns bytes written. */
size_t gh_chsink_metrics(char *out, size_t cap);

#endif
