/* store.h: the control plane's store: configuration versions, the audit log, API keys and
 * idempotency records, in SQLite (WAL, a file path) or PostgreSQL (a postgres:// or
 * postgresql:// URL, libpq).
 *
 * One SQL layer for both: statements are written once with ? placeholders (numbered $n for
 * PostgreSQL), every parameter and every value read is text, and rows come back as jansson
 * objects keyed by column name. Numbered schema migrations are applied at open; a database
 * whose schema is newer than this binary's is refused. Not thread-safe: one owner (the
 * control plane, cp.c, under its lock).
 *
 * Called by cp.c. Calls SQLite, libpq, jansson. */
#ifndef GH_ADMIN_STORE_H
#define GH_ADMIN_STORE_H

#include <jansson.h>
#include <stdint.h>

typedef struct gh_store gh_store_t;

/* Open (creating a SQLite file and its parent directory when missing) and migrate.
 * NULL with a message in err on failure. */
gh_store_t *gh_store_open(const char *url, char *err, size_t errlen);
void gh_store_close(gh_store_t *s);
/* "sqlite" or "postgresql" */
const char *gh_store_kind(const gh_store_t *s);
/* The schema version this binary writes. */
int gh_store_schema_version(void);

/* Run one statement; params may hold NULLs (SQL NULL). rows (may be NULL) receives an
 * array of objects, one per row, values strings or null. 0, or -1 with the database's
 * message in gh_store_error(s); GH_STORE_CONFLICT when a unique key was violated. */
#define GH_STORE_CONFLICT (-2)
int gh_store_exec(gh_store_t *s, const char *sql, int nparams, const char *const *params, json_t **rows);
const char *gh_store_error(const gh_store_t *s);

/* Transactions (SQLite: BEGIN IMMEDIATE). */
int gh_store_begin(gh_store_t *s);
int gh_store_commit(gh_store_t *s);
void gh_store_rollback(gh_store_t *s);

/* PostgreSQL: tell the other nodes (inside the writing transaction: sent at commit). */
void gh_store_notify(gh_store_t *s);
/* Wait up to ms for a change notice from another node (PostgreSQL LISTEN); SQLite (or
 * no notice) just sleeps. 1 when a notice came, 0 otherwise. */
int gh_store_wait(gh_store_t *s, int ms);

#endif
