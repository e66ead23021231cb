/* store.c: see store.h. */
#include "admin/store.h"
#include "core/path.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct gh_store {
    sqlite3 *db;   /* SQLite, or */
    PGconn *pg;    /* PostgreSQL */
    int listening; /* LISTEN sent on this connection */
    char err[512];
};

/* Numbered migrations: the statements of each, per dialect. Append only: a shipped
 * migration never changes (a database records the numbers it has applied). */
typedef struct {
    const char *sqlite[8], *pg[8];
} migration_t;

static const migration_t migrations[] = {
    {/* 1: versions, audit, API keys, idempotency */
     {"CREATE TABLE versions (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, actor TEXT NOT NULL,"
      " comment TEXT NOT NULL, parent INTEGER, state TEXT NOT NULL)",
      "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,"
      " source TEXT NOT NULL, action TEXT NOT NULL, tenant TEXT, resource TEXT NOT NULL, version INTEGER,"
      " diff TEXT NOT NULL)",
      "CREATE INDEX audit_tenant ON audit (tenant, id)",
      "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL,"
      " scopes TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL, expires_at TEXT,"
      " revoked_at TEXT)",
      "CREATE INDEX api_keys_tenant ON api_keys (tenant, id)",
      "CREATE TABLE idempotency (actor TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
      " status INTEGER NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,"
      " PRIMARY KEY (actor, key))"},
     {"CREATE TABLE versions (id BIGINT PRIMARY KEY, created_at TEXT NOT NULL, actor TEXT NOT NULL,"
      " comment TEXT NOT NULL, parent BIGINT, state TEXT NOT NULL)",
      "CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,"
      " source TEXT NOT NULL, action TEXT NOT NULL, tenant TEXT, resource TEXT NOT NULL, version BIGINT,"
      " diff TEXT NOT NULL)",
      "CREATE INDEX audit_tenant ON audit (tenant, id)",
      "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL,"
      " scopes TEXT NOT NULL, created_at TEXT NOT NULL, created_by TEXT NOT NULL, expires_at TEXT,"
      " revoked_at TEXT)",
      "CREATE INDEX api_keys_tenant ON api_keys (tenant, id)",
      "CREATE TABLE idempotency (actor TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
      " status INTEGER NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,"
      " PRIMARY KEY (actor, key))"}},
};
#define NMIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int gh_store_schema_version(void) { return NMIGRATIONS; }
const char *gh_store_kind(const gh_store_t *s) { return s->pg ? "postgresql" : "sqlite"; }
const char *gh_store_error(const gh_store_t *s) { return s->err; }

/* "? ... ?" -> "$1 ... $2" (our statements have no ? inside literals). A parameter only
 * tested for NULL ("? IS NULL") gives PostgreSQL nothing to infer its type from ("could not
 * determine data type of parameter"): it becomes "$n::text" (every parameter is text). */
static char *pg_sql(const char *sql)
{
    size_t n = strlen(sql), k = 0;
    char *out = malloc(n * 10 + 1);
    if (!out)
        return NULL;
    int i = 0;
    for (const char *p = sql; *p; p++) {
        if (*p == '?')
            k += (size_t)sprintf(out + k, "$%d%s", ++i, !strncasecmp(p + 1, " IS ", 4) ? "::text" : "");
        else
            out[k++] = *p;
    }
    out[k] = 0;
    return out;
}

static int exec_sqlite(gh_store_t *s, const char *sql, int np, const char *const *params, json_t **rows)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
        return -1;
    }
    for (int i = 0; i < np; i++)
        if (params[i] ? sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC) : sqlite3_bind_null(st, i + 1)) {
            snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
            sqlite3_finalize(st);
            return -1;
        }
    json_t *out = rows ? json_array() : NULL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!out)
            continue;
        json_t *row = json_object();
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const unsigned char *v = sqlite3_column_text(st, c);
            json_object_set_new(row, sqlite3_column_name(st, c),
                                v ? json_stringn((const char *)v, (size_t)sqlite3_column_bytes(st, c)) : json_null());
        }
        json_array_append_new(out, row);
    }
    int ret = 0;
    if (rc != SQLITE_DONE) {
        snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
        ret = (rc & 0xff) == SQLITE_CONSTRAINT ? GH_STORE_CONFLICT : -1;
        json_decref(out);
        out = NULL;
    }
    sqlite3_finalize(st);
    if (rows)
        *rows = out;
    return ret;
}

static int exec_pg(gh_store_t *s, const char *sql, int np, const char *const *params, json_t **rows)
{
    char *q = pg_sql(sql);
    if (!q) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -1;
    }
    PGresult *res = PQexecParams(s->pg, q, np, NULL, params, NULL, NULL, 0);
    free(q);
    ExecStatusType t = PQresultStatus(res);
    if (t != PGRES_COMMAND_OK && t != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        snprintf(s->err, sizeof s->err, "%s", PQerrorMessage(s->pg));
        s->err[strcspn(s->err, "\n")] = 0;
        int ret = state && !strcmp(state, "23505") ? GH_STORE_CONFLICT : -1;
        PQclear(res);
        if (PQstatus(s->pg) == CONNECTION_BAD) {
            PQreset(s->pg); /* the next statement gets a fresh connection */
            s->listening = 0;
        }
        if (rows)
            *rows = NULL;
        return ret;
    }
    if (rows) {
        json_t *out = json_array();
        int nr = PQntuples(res), nc = PQnfields(res);
        for (int r = 0; r < nr; r++) {
            json_t *row = json_object();
            for (int c = 0; c < nc; c++)
                json_object_set_new(row, PQfname(res, c),
                                    PQgetisnull(res, r, c) ? json_null()
                                                           : json_stringn(PQgetvalue(res, r, c), (size_t)PQgetlength(res, r, c)));
            json_array_append_new(out, row);
        }
        *rows = out;
    }
    PQclear(res);
    return 0;
}

int gh_store_exec(gh_store_t *s, const char *sql, int np, const char *const *params, json_t **rows)
{
    return s->pg ? exec_pg(s, sql, np, params, rows) : exec_sqlite(s, sql, np, params, rows);
}

int gh_store_begin(gh_store_t *s) { return gh_store_exec(s, s->pg ? "BEGIN" : "BEGIN IMMEDIATE", 0, NULL, NULL); }
int gh_store_commit(gh_store_t *s) { return gh_store_exec(s, "COMMIT", 0, NULL, NULL); }
void gh_store_rollback(gh_store_t *s)
{
    char keep[sizeof s->err];
    memcpy(keep, s->err, sizeof keep); /* the error that made us roll back is the one to report */
    gh_store_exec(s, "ROLLBACK", 0, NULL, NULL);
    memcpy(s->err, keep, sizeof keep);
}

void gh_store_notify(gh_store_t *s)
{
    if (s->pg)
        gh_store_exec(s, "NOTIFY gatehouse_config", 0, NULL, NULL);
}

int gh_store_wait(gh_store_t *s, int ms)
{
    if (!s->pg) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        return 0;
    }
    if (!s->listening) {
        if (gh_store_exec(s, "LISTEN gatehouse_config", 0, NULL, NULL) < 0) {
            struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
            nanosleep(&ts, NULL);
            return 0;
        }
        s->listening = 1;
    }
    /* a notice that came during one of our statements is already queued by libpq: the
     * socket will not show it again, so look before sleeping */
    int got = 0;
    for (PGnotify *n; (n = PQnotifies(s->pg));) {
        got = 1;
        PQfreemem(n);
    }
    if (got)
        return 1;
    struct pollfd pfd = {.fd = PQsocket(s->pg), .events = POLLIN};
    if (pfd.fd >= 0 && poll(&pfd, 1, ms) > 0) {
        if (!PQconsumeInput(s->pg)) {
            PQreset(s->pg);
            s->listening = 0;
            return 1; /* we may have missed a notice: the caller looks */
        }
    }
    for (PGnotify *n; (n = PQnotifies(s->pg));) {
        got = 1;
        PQfreemem(n);
    }
    return got;
}

static int migrate(gh_store_t *s)
{
    if (gh_store_begin(s) < 0)
        return -1;
    /* Two nodes starting at once against one PostgreSQL: one migrates, the other waits. The
     * lock comes first: two concurrent CREATE TABLE IF NOT EXISTS of one table can both pass
     * the existence check, and the second then fails on PostgreSQL's catalog unique index. */
    if (s->pg && gh_store_exec(s, "SELECT pg_advisory_xact_lock(7201901)", 0, NULL, NULL) < 0)
        goto fail;
    if (gh_store_exec(s, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                         " applied_at TEXT NOT NULL)", 0, NULL, NULL) < 0)
        goto fail;
    json_t *rows = NULL;
    if (gh_store_exec(s, "SELECT max(version) AS v FROM schema_migrations", 0, NULL, &rows) < 0)
        goto fail;
    json_t *v = json_object_get(json_array_get(rows, 0), "v");
    int have = json_is_string(v) ? atoi(json_string_value(v)) : 0;
    json_decref(rows);
    if (have > NMIGRATIONS) {
        snprintf(s->err, sizeof s->err,
                 "the store's schema is version %d, newer than this binary's %d: use a newer gatehouse", have,
                 NMIGRATIONS);
        goto fail;
    }
    for (int m = have; m < NMIGRATIONS; m++) {
        const char *const *stmts = s->pg ? migrations[m].pg : migrations[m].sqlite;
        for (int i = 0; i < 8 && stmts[i]; i++)
            if (gh_store_exec(s, stmts[i], 0, NULL, NULL) < 0)
                goto fail;
        char num[16], at[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(num, sizeof num, "%d", m + 1);
        const char *p[] = {num, at};
        if (gh_store_exec(s, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", 2, p, NULL) < 0)
            goto fail;
    }
    return gh_store_commit(s);
fail:
    gh_store_rollback(s);
    return -1;
}

gh_store_t *gh_store_open(const char *url, char *err, size_t errlen)
{
    gh_store_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13)) {
        s->pg = PQconnectdb(url);
        if (PQstatus(s->pg) != CONNECTION_OK) {
            /* libpq's message may quote the URL's host but never its password */
            snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(s->pg));
            err[strcspn(err, "\n")] = 0;
            gh_store_close(s);
            return NULL;
        }
        gh_store_exec(s, "SET client_min_messages TO warning", 0, NULL, NULL);
    } else {
        const char *path = !strncmp(url, "sqlite:", 7) ? url + 7 : url;
        gh_mkdir_parents(path);
        if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
            gh_store_close(s);
            return NULL;
        }
        sqlite3_busy_timeout(s->db, 5000);
        /* WAL; FULL: an acknowledged change survives a power loss, not only a crash */
        if (gh_store_exec(s, "PRAGMA journal_mode=WAL", 0, NULL, NULL) < 0 ||
            gh_store_exec(s, "PRAGMA synchronous=FULL", 0, NULL, NULL) < 0) {
            snprintf(err, errlen, "%s: %s", path, s->err);
            gh_store_close(s);
            return NULL;
        }
    }
    if (migrate(s) < 0) {
        snprintf(err, errlen, "%s", s->err);
        gh_store_close(s);
        return NULL;
    }
    return s;
}

void gh_store_close(gh_store_t *s)
{
    if (!s)
        return;
    if (s->db)
        sqlite3_close(s->db);
    if (s->pg)
        PQfinish(s->pg);
    free(s);
}
