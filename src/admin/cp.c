/* cp.c: see cp.h. */
#include "admin/cp.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <yaml.h>

#include "admin/admin.h"
#include "admin/store.h"
#include "cache/cache.h"
#include "core/log.h"

#define PROBLEM_BASE "https://gatehouse.dev/problems/"
#define MAX_SEG 128          /* a path segment (names are at most 128 bytes in the configuration) */
#define MAX_SEGS 8
#define LIST_DEFAULT 50
#define LIST_MAX 500
#define IDEM_KEY_MAX 255
#define IDEM_KEEP_S (24 * 3600) /* an Idempotency-Key is remembered a day */
#define KEEP_VERSIONS 1000       /* versions kept for diff and rollback */
#define MAX_STATE (32u << 20)    /* the API's objects, as stored JSON */

static struct {
    pthread_mutex_t lock;
    gh_store_t *st;       /* requests' connection (admin thread, under the lock) */
    gh_store_t *watch_st; /* the watcher's connection */
    pthread_t watcher;
    int watching;
    volatile int stop;
    json_t *state;  /* {"tenants": {NAME: document}} of the version in force */
    int64_t version; /* the version in force (0: nothing stored yet) */
    int64_t store_down_ms; /* wall-clock ms since the store stopped answering; 0: it answers */
    char *overlay;  /* compose(state), NULL when there are no API tenants */
    size_t overlay_len;
    gh_conf_t *cur; /* the configuration in force (a reference) */
    int (*publish)(gh_conf_t *, const char *, int);
    json_t *keys;      /* API keys usable on the flag listeners: [{tenant, hash, scopes, expires}] */
    char keys_mark[200]; /* the store's api_keys table as last read (count, newest creation/revocation) */
    json_t *file_docs; /* file tenants as JSON documents, built from cur->source on demand */
    const gh_conf_t *file_docs_of;
} cp = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* One request's context. */
typedef struct {
    gh_req_t *r;          /* the HTTP request, or NULL: */
    gh_cp_reply_t *cap;   /* the answer is captured (gh_cp_call) */
    const gh_req_view_t *v;
    const gh_h1_request_t *m;
    const gh_cp_actor_t *a;
    char seg[MAX_SEGS][MAX_SEG + 1];
    int nseg;
    char actor[48];
    char idem[IDEM_KEY_MAX + 1]; /* Idempotency-Key, or "" */
    char req_hash[65];
    int dry_run;
    const char *revoke_keys_of; /* a tenant deleted: its keys are revoked in the same transaction */
} ctx_t;

/* Every answer goes out here: to the HTTP request, or into the capture of gh_cp_call. */
static void reply(ctx_t *x, int status, const char *ctype, const char *body, size_t len, const char *headers)
{
    if (x->r) {
        gh_session_respond(x->r, status, ctype, body, len, headers);
        return;
    }
    gh_cp_reply_t *c = x->cap;
    free(c->ctype);
    free(c->headers);
    free(c->body);
    c->status = status;
    c->ctype = ctype ? strdup(ctype) : NULL;
    c->headers = strdup(headers ? headers : "");
    c->body = malloc(len + 1);
    if (c->body) {
        memcpy(c->body, body, len);
        c->body[len] = 0;
    }
    c->len = c->body ? len : 0;
}

void gh_cp_lock(void) { pthread_mutex_lock(&cp.lock); }
void gh_cp_unlock(void) { pthread_mutex_unlock(&cp.lock); }
void gh_cp_set_publisher(int (*publish)(gh_conf_t *, const char *, int)) { cp.publish = publish; }

const char *gh_cp_overlay(size_t *len)
{
    *len = cp.overlay_len;
    return cp.overlay;
}

gh_conf_t *gh_cp_current(void)
{
    gh_cp_lock();
    gh_conf_t *c = cp.cur;
    gh_conf_ref(c);
    gh_cp_unlock();
    return c;
}

void gh_cp_adopt(gh_conf_t *c)
{
    gh_conf_ref(c);
    if (cp.cur)
        gh_conf_unref(cp.cur);
    cp.cur = c;
}

/* ---------------------------------------------------------------- helpers */

static void now_text(char *out, size_t cap, time_t delta)
{
    time_t t = time(NULL) + delta;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The same with milliseconds ("...:SS.mmmZ"), delta in ms: key expiry, compared as text. */
static void now_text_ms(char *out, size_t cap, int64_t delta_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + delta_ms;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03uZ", (unsigned)(ms % 1000) % 1000u);
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[32];
    SHA256(p, n, d);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

/* Canonical text of a JSON value (sorted keys, compact): what ETags and diffs compare. */
static char *canon(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* A PEM private key in a string (a site's inline tls.key): never shown by the API. */
static int private_pem(const json_t *j)
{
    const char *v = json_string_value(j);
    return v && strstr(v, "PRIVATE KEY-----") != NULL;
}

/* What the API shows of a stored document: private keys as "[redacted]" (new reference). */
static json_t *public_copy(const json_t *j)
{
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
            json_object_set_new(o, k, public_copy(v));
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
            json_array_append_new(a, public_copy(v));
        return a;
    }
    return private_pem(j) ? json_string("[redacted]") : json_deep_copy(j);
}

/* A document sent back after a GET carries "[redacted]" where a private key was: keep the
 * stored one there (arrays of named objects matched by name, others by index). */
static void restore_redacted(json_t *nw, const json_t *old)
{
    if (json_is_object(nw) && json_is_object(old)) {
        const char *k;
        json_t *v;
        json_object_foreach(nw, k, v) {
            json_t *o = json_object_get(old, k);
            if (json_is_string(v) && !strcmp(json_string_value(v), "[redacted]") && private_pem(o))
                json_object_set(nw, k, o);
            else
                restore_redacted(v, o);
        }
    } else if (json_is_array(nw) && json_is_array(old)) {
        size_t i;
        json_t *v;
        json_array_foreach(nw, i, v) {
            const char *name = json_is_object(v) ? json_string_value(json_object_get(v, "name")) : NULL;
            json_t *o = json_array_get(old, i);
            if (name) {
                size_t j;
                json_t *w;
                o = NULL;
                json_array_foreach(old, j, w) if (json_is_object(w) && json_string_value(json_object_get(w, "name")) &&
                                                  !strcmp(json_string_value(json_object_get(w, "name")), name)) o = w;
            }
            restore_redacted(v, o);
        }
    }
}

void gh_cp_etag(const json_t *j, char out[40])
{
    json_t *pub = public_copy(j);
    char *t = canon(pub), h[65];
    json_decref(pub);
    sha256_hex(t ? t : "", t ? strlen(t) : 0, h);
    free(t);
    snprintf(out, 40, "\"%.32s\"", h);
}

static void send_json(ctx_t *x, int status, json_t *j, const char *extra)
{
    char *t = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "Cache-Control: no-store\r\n%s", extra ? extra : "");
    if (!t) {
        reply(x, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    size_t n = strlen(t);
    t[n] = '\n'; /* json_dumps leaves room for its NUL: the newline takes its place */
    reply(x, status, "application/json", t, n + 1, hdr);
    free(t);
}

/* RFC 9457 problem+json with a stable type; extra (may be NULL) is merged in (consumed). */
static void problem_x(ctx_t *x, int status, const char *type, const char *title, const char *detail, json_t *extra,
                      const char *headers)
{
    char tbuf[128];
    snprintf(tbuf, sizeof tbuf, PROBLEM_BASE "%s", type);
    json_t *p = json_pack("{s:s,s:s,s:i,s:s}", "type", tbuf, "title", title, "status", status, "detail",
                          detail ? detail : "");
    if (extra) {
        json_object_update(p, extra);
        json_decref(extra);
    }
    char *t = json_dumps(p, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(p);
    char hdr[512];
    snprintf(hdr, sizeof hdr, "Cache-Control: no-store\r\n%s", headers ? headers : "");
    reply(x, status, "application/problem+json", t ? t : "{}", t ? strlen(t) : 2, hdr);
    free(t);
}

static void problem(ctx_t *x, int status, const char *type, const char *title, const char *detail)
{
    problem_x(x, status, type, title, detail, NULL, NULL);
}

/* 422 invalid-configuration found before compiling: one error at path, as the compiler's are. */
static void invalid(ctx_t *x, const char *path, const char *message)
{
    problem_x(x, 422, "invalid-configuration", "Unprocessable Content", message,
              json_pack("{s:[{s:s,s:s}]}", "errors", "path", path, "message", message), NULL);
}

static const gh_h1_header_t *header(const gh_h1_request_t *m, const char *name)
{
    return gh_h1_find(m->headers, m->nheaders, gh_str(name, strlen(name)));
}

/* Query parameter name: its decoded value in out; 1 found, 0 absent, -1 bad. */
static int qparam(const gh_h1_request_t *m, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = m->query.p, *end = m->query.p + m->query.n;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        gh_str_t kv = gh_str(p, (size_t)((amp ? amp : end) - p));
        p = amp ? amp + 1 : end;
        if (kv.n > nl && kv.p[nl] == '=' && !memcmp(kv.p, name, nl))
            return gh_h1_pct_decode(gh_str(kv.p + nl + 1, kv.n - nl - 1), out, cap, 1) < 0 ? -1 : 1;
        if (kv.n == nl && !memcmp(kv.p, name, nl)) {
            out[0] = 0;
            return 1;
        }
    }
    return 0;
}

/* A whole decimal number in s, or def when s is empty; -1 when it is not one (or < 0). */
static long long num_or(const char *s, long long def)
{
    if (!*s)
        return def;
    char *e = NULL;
    long long v = strtoll(s, &e, 10);
    return e && !*e && isdigit((unsigned char)*s) ? v : -1;
}

static int qbool(const gh_h1_request_t *m, const char *name)
{
    char v[16];
    return qparam(m, name, v, sizeof v) == 1 && (!v[0] || !strcmp(v, "true") || !strcmp(v, "1"));
}

/* Names in paths: visible ASCII without quotes, backslashes or slashes, 1..128 bytes. */
static int good_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_SEG)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\'' || ch == '\\' || ch == '/')
            return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- secrets and diffs */

static int secret_key(const char *k)
{
    static const char *const pats[] = {"key", "secret", "password", "token", "private", "credential"};
    char low[64];
    size_t n = 0;
    for (; k[n] && n + 1 < sizeof low; n++)
        low[n] = (char)tolower((unsigned char)k[n]);
    low[n] = 0;
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        if (strstr(low, pats[i]))
            return strcmp(low, "key") != 0 && strcmp(low, "keys") != 0; /* a cache key is no secret */
    return 0;
}

/* A copy with the values of secret-looking keys replaced. */
static json_t *redact(const json_t *j)
{
    if (json_is_object(j)) {
        json_t *o = json_object();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
            json_object_set_new(o, k, secret_key(k) ? json_string("[redacted]") : redact(v));
        return o;
    }
    if (json_is_array(j)) {
        json_t *a = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
            json_array_append_new(a, redact(v));
        return a;
    }
    return private_pem(j) ? json_string("[redacted]") : json_deep_copy(j);
}

/* The key an array element is known by: its "name" or "id" string. */
static const char *elem_key(const json_t *e)
{
    const char *k = json_string_value(json_object_get(e, "name"));
    return k ? k : json_string_value(json_object_get(e, "id"));
}

static void diff_add(json_t *out, const char *op, const char *path, const json_t *before, const json_t *after,
                     int secret)
{
    json_t *d = json_pack("{s:s,s:s}", "op", op, "path", path);
    if (before)
        json_object_set_new(d, "before", secret ? json_string("[redacted]") : redact(before));
    if (after)
        json_object_set_new(d, "after", secret ? json_string("[redacted]") : redact(after));
    json_array_append_new(out, d);
}

/* Differences from a to b as {op: add|remove|replace, path, before, after}; paths like
 * tenants.acme.sites[main].routes[api].upstream. Arrays of named objects are matched by name. */
static void diff(const json_t *a, const json_t *b, const char *path, int secret, json_t *out)
{
    if (json_equal((json_t *)a, (json_t *)b))
        return;
    char sub[1024];
    if (json_is_object(a) && json_is_object(b)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
            json_t *w = json_object_get(b, k);
            if (!w)
                diff_add(out, "remove", sub, v, NULL, secret || secret_key(k));
            else
                diff(v, w, sub, secret || secret_key(k), out);
        }
        json_object_foreach((json_t *)b, k, v) {
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
            if (!json_object_get(a, k))
                diff_add(out, "add", sub, NULL, v, secret || secret_key(k));
        }
        return;
    }
    if (json_is_array(a) && json_is_array(b)) {
        int named = 1;
        size_t i, j;
        json_t *v, *w;
        json_array_foreach(a, i, v) named &= elem_key(v) != NULL;
        json_array_foreach(b, i, v) named &= elem_key(v) != NULL;
        if (named) {
            json_array_foreach(a, i, v) {
                const char *k = elem_key(v);
                json_t *match = NULL;
                json_array_foreach(b, j, w) if (!strcmp(elem_key(w), k)) match = w;
                snprintf(sub, sizeof sub, "%s[%s]", path, k);
                if (!match)
                    diff_add(out, "remove", sub, v, NULL, secret);
                else
                    diff(v, match, sub, secret, out);
            }
            json_array_foreach(b, j, w) {
                const char *k = elem_key(w);
                int found = 0;
                json_array_foreach(a, i, v) found |= !strcmp(elem_key(v), k);
                snprintf(sub, sizeof sub, "%s[%s]", path, k);
                if (!found)
                    diff_add(out, "add", sub, NULL, w, secret);
            }
            return;
        }
    }
    diff_add(out, "replace", path, a, b, secret);
}

/* ---------------------------------------------------------------- composing the configuration */

/* In a tenant document, "upstream": NAME of one of its own pools becomes TENANT/NAME. */
static void rename_upstreams(json_t *j, const char *tenant, const json_t *pools)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            if (!strcmp(k, "upstream") && json_is_string(v) && json_object_get(pools, json_string_value(v))) {
                char full[2 * MAX_SEG + 2];
                snprintf(full, sizeof full, "%s/%s", tenant, json_string_value(v));
                json_object_set_new(j, k, json_string(full));
            } else {
                rename_upstreams(v, tenant, pools);
            }
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
            rename_upstreams(v, tenant, pools);
    }
}

/* The overlay gh_conf_load_layered takes, or NULL when state holds no tenant. */
static char *compose(const json_t *state, size_t *len)
{
    json_t *tenants = json_object_get(state, "tenants");
    if (!json_object_size(tenants) && !json_array_size(cp.keys)) {
        *len = 0;
        return NULL;
    }
    json_t *ov = json_pack("{s:o,s:o}", "upstreams", json_object(), "tenants", json_array());
    if (json_array_size(cp.keys))
        json_object_set(ov, "keys", cp.keys);
    json_t *ups = json_object_get(ov, "upstreams"), *list = json_object_get(ov, "tenants");
    const char *name;
    json_t *doc;
    json_object_foreach(tenants, name, doc) {
        json_t *t = json_deep_copy(doc);
        json_t *pools = json_object_get(t, "upstreams");
        if (json_is_object(pools)) {
            json_incref(pools);
            json_object_del(t, "upstreams");
            rename_upstreams(t, name, pools);
            const char *pn;
            json_t *pv;
            json_object_foreach(pools, pn, pv) {
                char full[2 * MAX_SEG + 2];
                snprintf(full, sizeof full, "%s/%s", name, pn);
                json_object_set(ups, full, pv);
            }
            json_decref(pools);
        }
        json_object_set_new(t, "name", json_string(name));
        json_array_append_new(list, t);
    }
    char *text = json_dumps(ov, JSON_COMPACT);
    json_decref(ov);
    *len = text ? strlen(text) : 0;
    return text;
}

/* Compile the file in force with state layered over it: the configuration, or NULL and
 * the errors (an array of {path, message}) in *errors. */
static gh_conf_t *build(const json_t *state, json_t **errors)
{
    size_t olen = 0;
    char *ov = compose(state, &olen);
    gh_conf_t *n = NULL;
    gh_conf_errors_t errs = {0};
    int rc = gh_conf_load_layered(cp.cur->path, cp.cur->source, cp.cur->source ? cp.cur->source_len : 0, ov, olen,
                                  &n, &errs);
    free(ov);
    if (rc == 0)
        return n;
    json_t *list = json_array();
    for (uint32_t i = 0; i < errs.n; i++) {
        /* "api: PATH: message" or "FILE:L:C: PATH: message" */
        const char *m = errs.msgs[i], *rest = m;
        if (!strncmp(m, "api: ", 5))
            rest = m + 5;
        const char *sep = strstr(rest, ": ");
        json_t *e = sep && rest != m ? json_pack("{s:s%,s:s}", "path", rest, (size_t)(sep - rest), "message", sep + 2)
                                     : json_pack("{s:s}", "message", m);
        json_array_append_new(list, e);
    }
    if (rc != GH_ECONFIG && !errs.n)
        json_array_append_new(list, json_pack("{s:s}", "message", "out of memory"));
    gh_conf_errors_free(&errs);
    *errors = list;
    return NULL;
}

/* Make state (consumed) the one in force: cp.state, the overlay, the configuration (n,
 * consumed; built here when NULL). 0, or -1 with the errors logged. */
static int adopt_state(json_t *state, int64_t version, gh_conf_t *n, const char *what)
{
    json_t *errors = NULL;
    if (!n && !(n = build(state, &errors))) {
        size_t i;
        json_t *e;
        json_array_foreach(errors, i, e)
            gh_log(GH_LOG_ERROR, "%s: version %lld does not apply: %s%s%s", what, (long long)version,
                   json_string_value(json_object_get(e, "path")) ? json_string_value(json_object_get(e, "path")) : "",
                   json_object_get(e, "path") ? ": " : "", json_string_value(json_object_get(e, "message")));
        json_decref(errors);
        json_decref(state);
        return -1;
    }
    if (cp.publish(n, what, 0) < 0) {
        json_decref(state);
        return -1;
    }
    json_decref(cp.state);
    cp.state = state;
    cp.version = version;
    free(cp.overlay);
    cp.overlay = compose(state, &cp.overlay_len);
    return 0;
}

/* The api_keys table's mark: changes when a key is created or revoked (on any node). */
static int keys_mark(gh_store_t *st, char *out, size_t cap)
{
    json_t *rows = NULL;
    if (gh_store_exec(st, "SELECT count(*) AS n, max(created_at) AS c, max(revoked_at) AS r FROM api_keys", 0, NULL, &rows) < 0)
        return -1;
    json_t *row = json_array_get(rows, 0);
    const char *n = json_string_value(json_object_get(row, "n")), *c = json_string_value(json_object_get(row, "c")),
               *r = json_string_value(json_object_get(row, "r"));
    snprintf(out, cap, "%s|%s|%s", n ? n : "0", c ? c : "", r ? r : "");
    json_decref(rows);
    return 0;
}

/* cp.keys from the store: the live keys that work on the flag listeners. */
static int load_keys(gh_store_t *st)
{
    json_t *rows = NULL;
    if (keys_mark(st, cp.keys_mark, sizeof cp.keys_mark) < 0 ||
        gh_store_exec(st, "SELECT tenant, hash, scopes, expires_at FROM api_keys WHERE revoked_at IS NULL", 0, NULL, &rows) < 0)
        return -1;
    json_t *keys = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        const char *sc = json_string_value(json_object_get(row, "scopes"));
        unsigned bits = (strstr(sc, "\"flags:evaluate\"") ? GH_SCOPE_FLAGS : 0) | (strstr(sc, "\"events:publish\"") ? GH_SCOPE_EVENTS : 0);
        if (!bits)
            continue;
        const char *exp = json_string_value(json_object_get(row, "expires_at"));
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        /* "...:SS.mmmZ": the flag listeners check whole seconds, rounded up */
        long long until = exp && strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm) ? (long long)timegm(&tm) + 1 : 0;
        json_array_append_new(keys, json_pack("{s:O,s:O,s:i,s:I}", "tenant", json_object_get(row, "tenant"), "hash",
                                              json_object_get(row, "hash"), "scopes", (int)bits, "expires", (json_int_t)until));
    }
    json_decref(rows);
    json_decref(cp.keys);
    cp.keys = keys;
    return 0;
}

/* Keys changed: build the configuration in force again with them (no new version). Under the lock. */
static void keys_changed(gh_store_t *st, const char *what)
{
    if (load_keys(st) < 0)
        return;
    json_t *state = json_incref(cp.state);
    if (adopt_state(state, cp.version, NULL, what) == 0)
        gh_log(GH_LOG_INFO, "%s: API keys for the flag listeners updated", what);
}

/* The newest version in the store: 0 and its number/state (state NULL: none), or -1. */
static int store_head(gh_store_t *st, int64_t *version, json_t **state)
{
    json_t *rows = NULL;
    *state = NULL;
    *version = 0;
    if (gh_store_exec(st, "SELECT id, state FROM versions ORDER BY id DESC LIMIT 1", 0, NULL, &rows) < 0)
        return -1;
    json_t *row = json_array_get(rows, 0);
    if (row) {
        *version = strtoll(json_string_value(json_object_get(row, "id")), NULL, 10);
        *state = json_loads(json_string_value(json_object_get(row, "state")), 0, NULL);
    }
    json_decref(rows);
    return row && !*state ? -1 : 0;
}

static int64_t store_max(gh_store_t *st)
{
    json_t *rows = NULL;
    if (gh_store_exec(st, "SELECT max(id) AS v FROM versions", 0, NULL, &rows) < 0)
        return -1;
    const char *v = json_string_value(json_object_get(json_array_get(rows, 0), "v"));
    int64_t n = v ? strtoll(v, NULL, 10) : 0;
    json_decref(rows);
    return n;
}

int gh_cp_store_state(int64_t *version, int64_t *since_ms)
{
    *version = __atomic_load_n(&cp.version, __ATOMIC_RELAXED);
    *since_ms = __atomic_load_n(&cp.store_down_ms, __ATOMIC_RELAXED);
    if (!cp.st)
        return -1;
    return *since_ms ? 0 : 1;
}

/* The store answered (ok) or not at a check: the state /readyz and the metrics show, and a
 * log line when it changes. */
static void store_seen(gh_store_t *st, int ok)
{
    int64_t was = __atomic_load_n(&cp.store_down_ms, __ATOMIC_RELAXED);
    if (ok && was) {
        __atomic_store_n(&cp.store_down_ms, 0, __ATOMIC_RELAXED);
        gh_log(GH_LOG_INFO, "configuration store reachable again");
    } else if (!ok && !was) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        __atomic_store_n(&cp.store_down_ms, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, __ATOMIC_RELAXED);
        gh_log(GH_LOG_WARN, "configuration store unreachable: serving configuration version %lld until it returns (%s)",
               (long long)cp.version, gh_store_error(st));
    }
}

/* Bring this node up to the store's newest version (another node wrote it). Under the lock. */
static void sync_head(gh_store_t *st, const char *what)
{
    char mark[sizeof cp.keys_mark];
    if (keys_mark(st, mark, sizeof mark) == 0 && strcmp(mark, cp.keys_mark))
        keys_changed(st, what);
    int64_t head = store_max(st);
    store_seen(st, head >= 0);
    if (head <= cp.version)
        return;
    json_t *state = NULL;
    int64_t v = 0;
    if (store_head(st, &v, &state) == 0 && state && v > cp.version && adopt_state(state, v, NULL, what) == 0)
        gh_log(GH_LOG_INFO, "%s: configuration version %lld applied", what, (long long)v);
}

static void *watch_main(void *arg)
{
    (void)arg;
    int slices = 0;
    while (!cp.stop) {
        /* a notice (PostgreSQL) is acted on at once; otherwise a look each second, in 100 ms
         * slices so that stopping never waits long */
        int got = gh_store_wait(cp.watch_st, 100);
        if (cp.stop)
            break;
        if (!got && ++slices < 10)
            continue;
        slices = 0;
        gh_cp_lock();
        sync_head(cp.watch_st, "store change");
        gh_cp_unlock();
    }
    return NULL;
}

int gh_cp_start(gh_conf_t *c, gh_conf_t **out)
{
    *out = c;
    gh_conf_ref(c);
    gh_cp_adopt(c);
    cp.state = json_pack("{s:o}", "tenants", json_object());
    if (!c->admin.store)
        return 0;
    char err[600];
    if (!(cp.st = gh_store_open(c->admin.store, err, sizeof err)) ||
        !(cp.watch_st = gh_store_open(c->admin.store, err, sizeof err))) {
        fprintf(stderr, "gatehouse: admin.store: %s\n", err);
        gh_conf_unref(c);
        return -1;
    }
    json_t *state = NULL;
    int64_t v = 0;
    if (load_keys(cp.st) < 0 || store_head(cp.st, &v, &state) < 0) {
        fprintf(stderr, "gatehouse: admin.store: cannot read the newest version: %s\n", gh_store_error(cp.st));
        gh_conf_unref(c);
        return -1;
    }
    if (!state && json_array_size(cp.keys))
        state = json_incref(cp.state); /* only keys: the file with them */
    if (state) {
        json_t *errors = NULL;
        gh_conf_t *n = build(state, &errors);
        if (!n) {
            size_t i;
            json_t *e;
            fprintf(stderr, "gatehouse: the stored configuration (version %lld) does not apply over %s:\n",
                    (long long)v, c->path);
            json_array_foreach(errors, i, e)
                fprintf(stderr, "  %s%s%s\n",
                        json_string_value(json_object_get(e, "path")) ? json_string_value(json_object_get(e, "path")) : "",
                        json_object_get(e, "path") ? ": " : "", json_string_value(json_object_get(e, "message")));
            json_decref(errors);
            json_decref(state);
            gh_conf_unref(c);
            return -1;
        }
        json_decref(cp.state);
        cp.state = state;
        cp.version = v;
        cp.overlay = compose(state, &cp.overlay_len);
        gh_conf_unref(c);
        *out = n;
        gh_cp_adopt(n);
    }
    if (pthread_create(&cp.watcher, NULL, watch_main, NULL) == 0)
        cp.watching = 1;
    return 0;
}

void gh_cp_stop(void)
{
    cp.stop = 1;
    if (cp.watching)
        pthread_join(cp.watcher, NULL);
    cp.watching = 0;
    gh_store_close(cp.st);
    gh_store_close(cp.watch_st);
    cp.st = cp.watch_st = NULL;
    json_decref(cp.state);
    json_decref(cp.file_docs);
    json_decref(cp.keys);
    cp.state = cp.file_docs = cp.keys = NULL;
    free(cp.overlay);
    cp.overlay = NULL;
    if (cp.cur)
        gh_conf_unref(cp.cur);
    cp.cur = NULL;
}

/* ---------------------------------------------------------------- file tenants as JSON */

static json_t *yaml_json(yaml_document_t *d, yaml_node_t *n, int depth)
{
    if (!n || depth > 64)
        return json_null();
    if (n->type == YAML_MAPPING_NODE) {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            if (k && k->type == YAML_SCALAR_NODE)
                json_object_set_new(o, (const char *)k->data.scalar.value,
                                    yaml_json(d, yaml_document_get_node(d, p->value), depth + 1));
        }
        return o;
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++)
            json_array_append_new(a, yaml_json(d, yaml_document_get_node(d, *i), depth + 1));
        return a;
    }
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!strcmp(s, "true") || !strcmp(s, "false"))
            return json_boolean(s[0] == 't');
        if (!len || !strcmp(s, "null") || !strcmp(s, "~"))
            return json_null();
        char *e = NULL;
        long long v = strtoll(s, &e, 10);
        if (e && !*e && len < 19)
            return json_integer(v);
        double dv = strtod(s, &e);
        if (e && !*e && isdigit((unsigned char)s[len - 1]))
            return json_real(dv);
    }
    return json_stringn(s, len);
}

/* {NAME: document} of the tenants the file in force defines. */
static json_t *file_docs(void)
{
    if (cp.file_docs && cp.file_docs_of == cp.cur)
        return cp.file_docs;
    json_decref(cp.file_docs);
    cp.file_docs = json_object();
    cp.file_docs_of = cp.cur;
    if (!cp.cur->source)
        return cp.file_docs;
    yaml_parser_t p;
    yaml_document_t d;
    if (!yaml_parser_initialize(&p))
        return cp.file_docs;
    yaml_parser_set_input_string(&p, (const unsigned char *)cp.cur->source, cp.cur->source_len);
    if (yaml_parser_load(&p, &d)) {
        json_t *root = yaml_json(&d, yaml_document_get_root_node(&d), 0);
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(root, "tenants"), i, t)
            if (json_is_string(json_object_get(t, "name")))
                json_object_set(cp.file_docs, json_string_value(json_object_get(t, "name")), t);
        json_decref(root);
        yaml_document_delete(&d);
    }
    yaml_parser_delete(&p);
    return cp.file_docs;
}

/* ---------------------------------------------------------------- authentication and rate */

int gh_cp_auth(const gh_conf_t *c, const gh_h1_request_t *m, gh_cp_actor_t *a)
{
    memset(a, 0, sizeof *a);
    const gh_h1_header_t *h = header(m, "authorization");
    gh_str_t tok = GH_STR_NULL;
    if (h && h->value.n > 7 && !strncasecmp(h->value.p, "Bearer ", 7))
        tok = gh_str(h->value.p + 7, h->value.n - 7);
    else if (h)
        return 401;
    if (c->admin_key && tok.p) {
        size_t kl = strlen(c->admin_key);
        if (tok.n == kl && CRYPTO_memcmp(tok.p, c->admin_key, kl) == 0) {
            a->operator = 1;
            a->scopes = ~0u;
            return 0;
        }
    }
    if (!tok.p) {
        if (c->admin_key)
            return 401;
        a->operator = 1; /* no operator key: a loopback-only listener (checked at load) */
        a->scopes = ~0u;
        return 0;
    }
    /* a tenant key: gh_<12 hex id>_<64 hex secret> */
    if (tok.n != 3 + 12 + 1 + 64 || memcmp(tok.p, "gh_", 3) || tok.p[15] != '_')
        return 401;
    char id[13], hash[65], now[32];
    memcpy(id, tok.p + 3, 12);
    id[12] = 0;
    sha256_hex(tok.p, tok.n, hash);
    now_text_ms(now, sizeof now, 0);
    gh_cp_lock();
    json_t *rows = NULL;
    const char *p[] = {id};
    int rc = cp.st ? gh_store_exec(cp.st, "SELECT tenant, hash, scopes, expires_at, revoked_at FROM api_keys WHERE id = ?",
                                   1, p, &rows)
                   : -1;
    gh_cp_unlock();
    json_t *row = rc == 0 ? json_array_get(rows, 0) : NULL;
    int ok = 0;
    if (row) {
        const char *hh = json_string_value(json_object_get(row, "hash"));
        const char *exp = json_string_value(json_object_get(row, "expires_at"));
        ok = hh && strlen(hh) == 64 && CRYPTO_memcmp(hh, hash, 64) == 0 && json_is_null(json_object_get(row, "revoked_at")) &&
             (!exp || strcmp(exp, now) > 0);
        if (ok) {
            snprintf(a->tenant, sizeof a->tenant, "%s", json_string_value(json_object_get(row, "tenant")));
            snprintf(a->key_id, sizeof a->key_id, "%s", id);
            const char *sc = json_string_value(json_object_get(row, "scopes"));
            a->scopes = (strstr(sc, "\"read\"") ? GH_SCOPE_READ : 0) | (strstr(sc, "\"write\"") ? GH_SCOPE_WRITE : 0) |
                        (strstr(sc, "\"admin\"") ? GH_SCOPE_ADMIN : 0) |
                        (strstr(sc, "\"flags:evaluate\"") ? GH_SCOPE_FLAGS : 0) |
                        (strstr(sc, "\"events:publish\"") ? GH_SCOPE_EVENTS : 0);
        }
    }
    json_decref(rows);
    return ok ? 0 : 401;
}

/* GCRA per caller (operator, key id, or peer for the unauthenticated), a small table. */
#define RATE_SLOTS 256
static struct {
    uint64_t who;
    double tat; /* theoretical arrival time, seconds */
} rate_tab[RATE_SLOTS];

int gh_cp_rate(const gh_conf_t *c, const gh_cp_actor_t *a, const char *peer)
{
    const char *who = a->operator ? "operator" : a->key_id[0] ? a->key_id : peer ? peer : "-";
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = who; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    double T = (double)c->admin.rate_period / (double)(c->admin.rate_quota ? c->admin.rate_quota : 1);
    double tau = T * (double)(c->admin.burst ? c->admin.burst : 1);
    gh_cp_lock();
    unsigned slot = (unsigned)(h % RATE_SLOTS);
    if (rate_tab[slot].who != h) /* a new caller takes the slot (a collision only forgets a debt) */
        rate_tab[slot].who = h, rate_tab[slot].tat = now;
    double tat = rate_tab[slot].tat > now ? rate_tab[slot].tat : now;
    int wait = 0;
    if (tat + T - now > tau)
        wait = (int)(tat + T - now - tau) + 1;
    else
        rate_tab[slot].tat = tat + T;
    gh_cp_unlock();
    return wait;
}

/* ---------------------------------------------------------------- resources */

/* A collection inside a tenant document (or a site, for routes): an array of objects known
 * by key, or a map NAME -> object (its key shown in the representation as a field). */
typedef struct {
    const char *name;
    const char *field[3];
    int nfield, map;
    const char *key;
    const char *one; /* an item, in messages */
} coll_t;

static const coll_t C_SITES = {"sites", {"sites"}, 1, 0, "name", "site"};
static const coll_t C_ROUTES = {"routes", {"routes"}, 1, 0, "name", "route"};
static const coll_t C_UPSTREAMS = {"upstreams", {"upstreams"}, 1, 1, "name", "upstream"};
static const coll_t C_FLAGS = {"flags", {"flags", "definition", "flags"}, 3, 1, "key", "flag"};
static const coll_t C_EXPERIMENTS = {"experiments", {"experiments"}, 1, 0, "id", "experiment"};
static const coll_t *const tenant_colls[] = {&C_SITES, &C_UPSTREAMS, &C_FLAGS, &C_EXPERIMENTS};
static const char *const singletons[] = {"protection", "cache"};


static json_t *coll_container(json_t *parent, const coll_t *c, int create)
{
    json_t *o = parent;
    for (int i = 0; i < c->nfield && o; i++) {
        json_t *next = json_object_get(o, c->field[i]);
        int last = i == c->nfield - 1;
        if (!next && create) {
            next = last && !c->map ? json_array() : json_object();
            json_object_set_new(o, c->field[i], next);
        }
        if (next && !(last && !c->map ? json_is_array(next) : json_is_object(next)))
            return NULL; /* a wrong type in a stored document: treated as absent */
        o = next;
    }
    return o;
}

static json_t *item_find(json_t *cont, const coll_t *c, const char *id, size_t *idx)
{
    if (!cont)
        return NULL;
    if (c->map)
        return json_object_get(cont, id);
    size_t i;
    json_t *e;
    json_array_foreach(cont, i, e) {
        const char *k = json_string_value(json_object_get(e, c->key));
        if (k && !strcmp(k, id)) {
            if (idx)
                *idx = i;
            return e;
        }
    }
    return NULL;
}

/* The representation of a stored item (new reference). */
static json_t *item_view(const coll_t *c, const char *id, json_t *stored)
{
    if (!c->map)
        return json_incref(stored);
    json_t *v = json_is_object(stored) ? json_copy(stored) : json_object();
    json_object_set_new(v, c->key, json_string(id));
    return v;
}

/* Put body (a representation, borrowed) into the collection as id: in place when it is there,
 * else at position (-1: last; arrays only: routes match in order). */
static void item_put(json_t *cont, const coll_t *c, const char *id, json_t *body, long position)
{
    json_t *b = json_deep_copy(body);
    if (c->map) {
        json_object_del(b, c->key);
        json_object_set_new(cont, id, b);
        return;
    }
    json_object_set_new(b, c->key, json_string(id));
    size_t idx;
    if (item_find(cont, c, id, &idx))
        json_array_set_new(cont, idx, b);
    else if (position >= 0 && (size_t)position < json_array_size(cont))
        json_array_insert_new(cont, (size_t)position, b);
    else
        json_array_append_new(cont, b);
}

static void item_del(json_t *cont, const coll_t *c, const char *id)
{
    size_t idx;
    if (c->map)
        json_object_del(cont, id);
    else if (item_find(cont, c, id, &idx))
        json_array_remove(cont, idx);
}

/* RFC 7396 JSON merge patch of target (modified) by patch. */
static void merge_patch(json_t *target, json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v) {
        json_t *t = json_object_get(target, k);
        if (json_is_null(v))
            json_object_del(target, k);
        else if (json_is_object(v) && json_is_object(t))
            merge_patch(t, v);
        else if (json_is_object(v)) {
            json_t *n = json_object();
            merge_patch(n, v);
            json_object_set_new(target, k, n);
        } else
            json_object_set(target, k, v);
    }
}

/* If-Match: 1 when the precondition holds for a resource whose ETag is etag (NULL: absent). */
static int if_match_ok(const gh_h1_request_t *m, const char *etag)
{
    const gh_h1_header_t *h = header(m, "if-match");
    if (!h)
        return 1;
    gh_str_t v = h->value;
    if (v.n == 1 && v.p[0] == '*')
        return etag != NULL;
    if (!etag)
        return 0;
    size_t el = strlen(etag);
    for (size_t i = 0; i + el <= v.n; i++) /* a list of strong tags; W/ never matches */
        if (!memcmp(v.p + i, etag, el) && (i < 2 || memcmp(v.p + i - 2, "W/", 2)))
            return 1;
    return 0;
}

static int if_none_match_hit(const gh_h1_request_t *m, const char *etag)
{
    const gh_h1_header_t *h = header(m, "if-none-match");
    if (!h || !etag)
        return 0;
    if (h->value.n == 1 && h->value.p[0] == '*')
        return 1;
    size_t el = strlen(etag) - 2; /* weak comparison: the opaque part */
    for (size_t i = 0; i + el <= h->value.n; i++)
        if (!memcmp(h->value.p + i, etag + 1, el))
            return 1;
    return 0;
}

/* The request body as a JSON object, or NULL after answering 400/415. */
static json_t *body_object(ctx_t *x, int patch)
{
    const gh_h1_header_t *ct = header(x->m, "content-type");
    int ok = ct && ((ct->value.n >= 16 && !strncasecmp(ct->value.p, "application/json", 16)) ||
                    (patch && ct->value.n >= 28 && !strncasecmp(ct->value.p, "application/merge-patch+json", 28)));
    if (!ok) {
        problem(x, 415, "unsupported-media-type", "Unsupported Media Type",
                patch ? "send Content-Type: application/json or application/merge-patch+json"
                      : "send Content-Type: application/json");
        return NULL;
    }
    json_error_t je;
    json_t *b = json_loadb(x->v->body ? x->v->body : "", x->v->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!b) {
        char d[300];
        snprintf(d, sizeof d, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
        problem_x(x, 400, "invalid-json", "Bad Request", d, NULL, NULL);
        return NULL;
    }
    if (!json_is_object(b)) {
        json_decref(b);
        problem(x, 400, "invalid-json", "Bad Request", "the body must be a JSON object");
        return NULL;
    }
    return b;
}

/* If-Match against the representation cur (NULL: absent): 0 when it holds, else 1 after
 * answering 412. */
static int precondition_failed(ctx_t *x, const json_t *cur, const char *what)
{
    char et[40];
    if (cur)
        gh_cp_etag(cur, et);
    if (if_match_ok(x->m, cur ? et : NULL))
        return 0;
    char d[160];
    snprintf(d, sizeof d, "the %s changed since you read it (If-Match)", what);
    problem(x, 412, "precondition-failed", "Precondition Failed", d);
    return 1;
}

/* The document a PUT or PATCH makes of cur (NULL: absent): the body, or cur with the body merged
 * into it (RFC 7396); a "[redacted]" private key keeps cur's. NULL after answering 400/415. */
static json_t *new_doc(ctx_t *x, const json_t *cur)
{
    int patch = x->m->method_id == GH_M_PATCH;
    json_t *b = body_object(x, patch);
    if (!b)
        return NULL;
    json_t *nd = b;
    if (patch) { /* PATCH needs cur: absent is 404 before this */
        nd = json_deep_copy(cur);
        merge_patch(nd, b);
        json_decref(b);
    }
    if (cur)
        restore_redacted(nd, cur);
    return nd;
}

/* Extend path at (of size cap, now of length len) by a key or an element: ".key", or
 * "[name]" for an array element known by name/id, else "[i]". */
static size_t path_push(char *at, size_t cap, size_t len, const char *key, const json_t *elem, size_t i)
{
    const char *k = elem ? elem_key(elem) : NULL;
    int n = key ? snprintf(at + len, cap - len, "%s%s", len ? "." : "", key)
            : k  ? snprintf(at + len, cap - len, "[%s]", k)
                 : snprintf(at + len, cap - len, "[%zu]", i);
    return n > 0 && (size_t)n < cap - len ? len + (size_t)n : len;
}

/* The first "upstream" in a tenant document that is not one of its own pools (tenant keys may
 * route only to those): its value, with its path in at; NULL when there is none. */
static const char *foreign_upstream(const json_t *j, const json_t *pools, char *at, size_t cap, size_t len)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            size_t l2 = path_push(at, cap, len, k, NULL, 0);
            if (!strcmp(k, "upstream") && json_is_string(v) && !json_object_get(pools, json_string_value(v)))
                return json_string_value(v);
            const char *f = foreign_upstream(v, pools, at, cap, l2);
            if (f)
                return f;
            at[len] = 0;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            const char *f = foreign_upstream(v, pools, at, cap, path_push(at, cap, len, NULL, v, i));
            if (f)
                return f;
            at[len] = 0;
        }
    }
    return NULL;
}

/* A place in a tenant document that names a file on the gateway's host (flags.file, an ip
 * list's file, a tls cert/key/ca that is not inline PEM): only the operator may. Its key, with
 * its path in at; NULL when there is none. */
static const char *host_path(const json_t *j, int in_tls, char *at, size_t cap, size_t len)
{
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            size_t l2 = path_push(at, cap, len, k, NULL, 0);
            if (json_is_string(v) && (!strcmp(k, "file") || (in_tls && (!strcmp(k, "cert") || !strcmp(k, "key") ||
                                                                         !strcmp(k, "ca")))) &&
                strncmp(json_string_value(v), "-----BEGIN", 10))
                return k;
            const char *f = host_path(v, !strcmp(k, "tls"), at, cap, l2);
            if (f)
                return f;
            at[len] = 0;
        }
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            const char *f = host_path(v, 0, at, cap, path_push(at, cap, len, NULL, v, i));
            if (f)
                return f;
            at[len] = 0;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- writes */

/* An answer prepared before the commit (so that the idempotency record holds it). */
typedef struct {
    int status;
    char headers[600];
    json_t *body; /* NULL: no body (204) */
} answer_t;

static void send_answer(ctx_t *x, answer_t *ans, int64_t version)
{
    char hdr[800];
    snprintf(hdr, sizeof hdr, "%sGatehouse-Config-Version: %lld\r\n", ans->headers, (long long)version);
    if (ans->body) {
        json_t *pub = public_copy(ans->body);
        json_decref(ans->body);
        send_json(x, ans->status, pub, hdr);
    }
    else
        reply(x, ans->status, NULL, "", 0, hdr);
    ans->body = NULL;
}

static int idem_insert(ctx_t *x, const answer_t *ans, int64_t version)
{
    if (!x->idem[0])
        return 0;
    char st[8], at[32], hdr[800];
    snprintf(st, sizeof st, "%d", ans->status);
    snprintf(hdr, sizeof hdr, "%sGatehouse-Config-Version: %lld\r\n", ans->headers, (long long)version);
    now_text(at, sizeof at, 0);
    json_t *pub = ans->body ? public_copy(ans->body) : NULL;
    char *body = pub ? json_dumps(pub, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(pub);
    const char *p[] = {x->actor, x->idem, x->req_hash, st, hdr, body ? body : "", at};
    int rc = gh_store_exec(cp.st,
                           "INSERT INTO idempotency (actor, key, request_hash, status, headers, body, created_at)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)",
                           7, p, NULL);
    free(body);
    return rc;
}

static int audit_insert(ctx_t *x, const char *action, const char *tenant, const char *resource, int64_t version,
                        json_t *d /* borrowed */)
{
    char at[32], ver[24];
    now_text(at, sizeof at, 0);
    snprintf(ver, sizeof ver, "%lld", (long long)version);
    char *dt = json_dumps(d ? d : json_array(), JSON_COMPACT);
    const char *p[] = {at, x->actor, x->v->peer ? x->v->peer : "-", action, tenant, resource, version ? ver : NULL,
                       dt ? dt : "[]"};
    int rc = gh_store_exec(cp.st,
                           "INSERT INTO audit (at, actor, source, action, tenant, resource, version, diff)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           8, p, NULL);
    free(dt);
    return rc;
}

static int need_store(ctx_t *x)
{
    if (cp.st)
        return 1;
    problem(x, 409, "no-store", "Conflict",
            "this gateway has no control-plane store (admin.store): its configuration comes from the file only");
    return 0;
}

/* Validate work (consumed), then store it as a new version with its audit and idempotency
 * records, apply it, and send ans. */
static void write_change(ctx_t *x, json_t *work, const char *action, const char *tenant, const char *resource,
                         answer_t *ans)
{
    if (!x->a->operator && tenant) { /* a tenant key routes to its own pools only, names no host file */
        json_t *doc = json_object_get(json_object_get(work, "tenants"), tenant);
        char at[1024], d[300];
        size_t l0 = (size_t)snprintf(at, sizeof at, "tenants[%.128s]", tenant);
        const char *f = doc ? foreign_upstream(doc, json_object_get(doc, "upstreams"), at, sizeof at, l0) : NULL;
        if (f) {
            snprintf(d, sizeof d, "upstream \"%.128s\" is not one of the tenant's upstreams", f);
            invalid(x, at, d);
            goto out;
        }
        at[l0] = 0;
        const char *hp = doc ? host_path(doc, 0, at, sizeof at, l0) : NULL;
        if (hp) {
            snprintf(d, sizeof d, "\"%s\" names a file on the gateway: tenant keys give certificates and keys as "
                                  "inline PEM, and lists and flag definitions inline", hp);
            invalid(x, at, d);
            goto out;
        }
    }
    json_t *errors = NULL;
    gh_conf_t *n = build(work, &errors);
    if (!n) {
        problem_x(x, 422, "invalid-configuration", "Unprocessable Content",
                  "the change does not validate; nothing was changed", json_pack("{s:o}", "errors", errors), NULL);
        goto out;
    }
    if (x->dry_run) {
        gh_conf_unref(n);
        send_json(x, 200, json_pack("{s:b,s:b,s:I,s:o}", "dry_run", 1, "valid", 1, "version", (json_int_t)cp.version,
                                       "errors", json_array()),
                  NULL);
        goto out;
    }
    json_t *d = json_array();
    diff(cp.state, work, "", 0, d);
    if (!json_array_size(d)) { /* nothing changes: no new version */
        json_decref(d);
        gh_conf_unref(n);
        send_answer(x, ans, cp.version);
        goto out;
    }
    int64_t next = cp.version + 1;
    char vs[24], ps[24], at[32], comment[400];
    snprintf(vs, sizeof vs, "%lld", (long long)next);
    snprintf(ps, sizeof ps, "%lld", (long long)cp.version);
    now_text(at, sizeof at, 0);
    snprintf(comment, sizeof comment, "%s %s", action, resource);
    char *text = canon(work);
    if (!text || strlen(text) > MAX_STATE) {
        free(text);
        json_decref(d);
        gh_conf_unref(n);
        problem(x, 413, "configuration-too-large", "Content Too Large",
                "the API's objects would exceed 32 MiB in all; split tenants across gateways");
        goto out;
    }
    const char *p[] = {vs, at, x->actor, comment, cp.version ? ps : NULL, text};
    char old_v[24], old_at[32];
    snprintf(old_v, sizeof old_v, "%lld", (long long)(next - KEEP_VERSIONS));
    now_text(old_at, sizeof old_at, -IDEM_KEEP_S);
    const char *pv[] = {old_v}, *pi[] = {old_at};
    int rc = gh_store_begin(cp.st);
    if (rc == 0)
        rc = gh_store_exec(cp.st, "INSERT INTO versions (id, created_at, actor, comment, parent, state) VALUES (?, ?, ?, ?, ?, ?)",
                           6, p, NULL);
    if (rc == 0 && next > KEEP_VERSIONS) /* retention: the newest KEEP_VERSIONS versions */
        rc = gh_store_exec(cp.st, "DELETE FROM versions WHERE id <= ?", 1, pv, NULL);
    if (rc == 0)
        rc = gh_store_exec(cp.st, "DELETE FROM idempotency WHERE created_at < ?", 1, pi, NULL);
    if (rc == 0)
        rc = audit_insert(x, action, tenant, resource, next, d);
    if (rc == 0 && x->revoke_keys_of) {
        const char *pk[] = {at, x->revoke_keys_of};
        rc = gh_store_exec(cp.st, "UPDATE api_keys SET revoked_at = ? WHERE tenant = ? AND revoked_at IS NULL", 2, pk, NULL);
    }
    if (rc == 0)
        rc = idem_insert(x, ans, next);
    if (rc == 0)
        gh_store_notify(cp.st);
    if (rc == 0)
        rc = gh_store_commit(cp.st);
    free(text);
    json_decref(d);
    if (rc < 0) {
        gh_store_rollback(cp.st);
        gh_conf_unref(n);
        if (rc == GH_STORE_CONFLICT) {
            sync_head(cp.st, "store change");
            problem(x, 409, "concurrent-modification", "Conflict",
                    "another node changed the configuration at the same time: read it again and retry");
        } else {
            gh_log(GH_LOG_ERROR, "admin API: the store refused a change: %s", gh_store_error(cp.st));
            problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not record the change");
        }
        goto out;
    }
    if (adopt_state(work, next, n, "admin API") < 0) {
        work = NULL;
        problem(x, 500, "apply-failed", "Internal Server Error",
                "the change was stored but could not be applied here (see the log); it applies at the next start");
        goto out;
    }
    work = NULL; /* cp.state now */
    if (x->revoke_keys_of)
        keys_changed(cp.st, "tenant deleted");
    send_answer(x, ans, next);
out:
    json_decref(work);
    json_decref(ans->body);
    ans->body = NULL;
}

/* An Idempotency-Key seen before: replay (1), refuse a different request (1), or go on (0). */
static int idem_replay(ctx_t *x)
{
    if (!x->idem[0] || !cp.st)
        return 0;
    const char *p[] = {x->actor, x->idem};
    json_t *rows = NULL;
    if (gh_store_exec(cp.st, "SELECT request_hash, status, headers, body FROM idempotency WHERE actor = ? AND key = ?", 2,
                      p, &rows) < 0 ||
        !json_array_size(rows)) {
        json_decref(rows);
        return 0;
    }
    json_t *row = json_array_get(rows, 0);
    if (strcmp(json_string_value(json_object_get(row, "request_hash")), x->req_hash)) {
        json_decref(rows);
        problem(x, 422, "idempotency-key-reuse", "Unprocessable Content",
                "this Idempotency-Key was used for a different request");
        return 1;
    }
    char hdr[1000];
    snprintf(hdr, sizeof hdr, "%sIdempotent-Replayed: true\r\n", json_string_value(json_object_get(row, "headers")));
    const char *body = json_string_value(json_object_get(row, "body"));
    int status = atoi(json_string_value(json_object_get(row, "status")));
    reply(x, status, *body ? "application/json" : NULL, body, strlen(body), hdr);
    json_decref(rows);
    return 1;
}

/* ---------------------------------------------------------------- lists */

static int key_cmp(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "k")),
                  json_string_value(json_object_get(*(json_t *const *)b, "k")));
}

/* Answer a list: entries is an array of {"k": key, "v": item} (consumed); sorted by key, or
 * in their order when ordered (routes match in order); filtered by ?prefix=, paged by ?limit=
 * and ?cursor= (hex of the last key of the previous page; ordered: of "INDEX:KEY", so that a
 * page still follows on when that item was deleted meanwhile). */
static void send_list(ctx_t *x, json_t *entries, json_t *extra, int ordered)
{
    char prefix[MAX_SEG + 1] = "", cur[2 * (MAX_SEG + 24) + 1] = "", lim[16] = "", after[MAX_SEG + 25] = "";
    if (qparam(x->m, "prefix", prefix, sizeof prefix) < 0 || qparam(x->m, "cursor", cur, sizeof cur) < 0 ||
        qparam(x->m, "limit", lim, sizeof lim) < 0) {
        json_decref(entries);
        json_decref(extra);
        problem(x, 400, "bad-request", "Bad Request", "prefix, cursor or limit is badly encoded or too long");
        return;
    }
    long limit = LIST_DEFAULT;
    if (lim[0]) {
        char *e = NULL;
        limit = strtol(lim, &e, 10);
        if (!e || *e || limit < 1 || limit > LIST_MAX) {
            json_decref(entries);
            json_decref(extra);
            problem(x, 400, "bad-request", "Bad Request", "limit is 1..500");
            return;
        }
    }
    size_t cl = strlen(cur);
    if (cl % 2 || cl / 2 > MAX_SEG + 24) {
        json_decref(entries);
        json_decref(extra);
        problem(x, 400, "bad-request", "Bad Request", "bad cursor");
        return;
    }
    for (size_t i = 0; i < cl / 2; i++) {
        unsigned v;
        if (sscanf(cur + 2 * i, "%2x", &v) != 1 || !isxdigit((unsigned char)cur[2 * i + 1])) {
            json_decref(entries);
            json_decref(extra);
            problem(x, 400, "bad-request", "Bad Request", "bad cursor");
            return;
        }
        after[i] = (char)v;
    }
    after[cl / 2] = 0;
    size_t n = json_array_size(entries);
    json_t **vec = malloc((n ? n : 1) * sizeof *vec);
    for (size_t i = 0; i < n; i++)
        vec[i] = json_array_get(entries, i);
    size_t start = 0;
    if (!ordered) {
        qsort(vec, n, sizeof *vec, key_cmp);
    } else if (after[0]) {
        char *colon = strchr(after, ':'), *e = NULL;
        long long idx = colon ? strtoll(after, &e, 10) : -1;
        if (!colon || e != colon || idx < 0) {
            free(vec);
            json_decref(entries);
            json_decref(extra);
            problem(x, 400, "bad-request", "Bad Request", "bad cursor");
            return;
        }
        start = (size_t)idx; /* the item there was deleted: the next one moved into its place */
        for (size_t i = 0; i < n; i++)
            if (!strcmp(json_string_value(json_object_get(vec[i], "k")), colon + 1))
                start = i + 1;
        after[0] = 0;
    }
    json_t *items = json_array();
    const char *last = NULL;
    size_t last_i = 0;
    int more = 0;
    size_t pl = strlen(prefix);
    for (size_t i = start; i < n; i++) {
        const char *k = json_string_value(json_object_get(vec[i], "k"));
        if (strncmp(k, prefix, pl) || (after[0] && strcmp(k, after) <= 0))
            continue;
        if ((long)json_array_size(items) == limit) {
            more = 1;
            break;
        }
        json_array_append(items, json_object_get(vec[i], "v"));
        last = k, last_i = i;
    }
    char next[2 * (MAX_SEG + 24) + 1] = "", link[900] = "";
    if (more && last) {
        char raw[MAX_SEG + 25];
        if (ordered)
            snprintf(raw, sizeof raw, "%zu:%s", last_i, last);
        else
            snprintf(raw, sizeof raw, "%s", last);
        for (size_t i = 0; raw[i]; i++)
            sprintf(next + 2 * i, "%02x", (unsigned char)raw[i]);
        char ep[3 * MAX_SEG + 1] = "";
        for (size_t i = 0, k = 0; i < pl; i++) /* the prefix, percent-encoded but for unreserved bytes */
            k += (size_t)sprintf(ep + k, isalnum((unsigned char)prefix[i]) || strchr("-._~", prefix[i]) ? "%c" : "%%%02X",
                                 (unsigned char)prefix[i]);
        snprintf(link, sizeof link, "Link: <%.*s?limit=%ld&cursor=%s%s%s>; rel=\"next\"\r\n", (int)GH_MIN(x->m->path.n, 300),
                 x->m->path.p, limit, next, pl ? "&prefix=" : "", ep);
    }
    json_t *out = json_pack("{s:o,s:o}", "items", items, "next_cursor", more ? json_string(next) : json_null());
    if (extra) {
        json_object_update(out, extra);
        json_decref(extra);
    }
    free(vec);
    json_decref(entries);
    send_json(x, 200, out, link[0] ? link : NULL);
}

static json_t *entry(const char *k, json_t *v /* consumed */)
{
    json_t *pub = public_copy(v);
    json_decref(v);
    return json_pack("{s:s,s:o}", "k", k, "v", pub);
}

/* ---------------------------------------------------------------- tenants and their resources */

static void not_found(ctx_t *x, const char *what)
{
    char d[200];
    snprintf(d, sizeof d, "no such %s", what);
    problem(x, 404, "not-found", "Not Found", d);
}

static void method_not_allowed(ctx_t *x, const char *allow)
{
    char h[128];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    problem_x(x, 405, "method-not-allowed", "Method Not Allowed", "see the Allow header", NULL, h);
}

static int forbidden(ctx_t *x, unsigned scope)
{
    if (x->a->operator || (x->a->scopes & scope))
        return 0;
    const char *name = scope == GH_SCOPE_READ ? "read" : scope == GH_SCOPE_WRITE ? "write" : "admin";
    char d[160];
    snprintf(d, sizeof d, "this key lacks the %s scope", name);
    problem(x, 403, "forbidden", "Forbidden", d);
    return 1;
}

/* The tenant document of name: from the state (API) or the file (*file = 1); NULL when none
 * (or when the caller's key belongs to another tenant: the same answer). */
static json_t *tenant_doc(ctx_t *x, json_t *state, const char *name, int *file)
{
    *file = 0;
    if (!x->a->operator && strcmp(x->a->tenant, name))
        return NULL;
    json_t *d = json_object_get(json_object_get(state, "tenants"), name);
    if (d)
        return d;
    d = json_object_get(file_docs(), name);
    *file = d != NULL;
    return d;
}

static int file_managed(ctx_t *x, const char *tenant)
{
    char d[300];
    snprintf(d, sizeof d, "tenant %.128s is defined in the configuration file; change it there and reload", tenant);
    problem(x, 409, "file-managed", "Conflict", d);
    return 1;
}

static void etag_headers(answer_t *ans, const json_t *view, const char *location)
{
    char et[40];
    gh_cp_etag(view, et);
    size_t n = (size_t)snprintf(ans->headers, sizeof ans->headers, "ETag: %s\r\n", et);
    if (location && n < sizeof ans->headers)
        snprintf(ans->headers + n, sizeof ans->headers - n, "Location: %.400s\r\n", location);
}

static void send_item(ctx_t *x, json_t *stored_view /* consumed */, int file)
{
    json_t *view = public_copy(stored_view);
    json_decref(stored_view);
    char et[40], hdr[200];
    gh_cp_etag(view, et);
    if (if_none_match_hit(x->m, et)) {
        json_decref(view);
        snprintf(hdr, sizeof hdr, "ETag: %s\r\nCache-Control: no-store\r\n", et);
        reply(x, 304, NULL, "", 0, hdr);
        return;
    }
    snprintf(hdr, sizeof hdr, "ETag: %s\r\n%s", et, file ? "Gatehouse-Origin: file\r\n" : "");
    send_json(x, 200, view, hdr);
}

/* /v1/tenants and /v1/tenants/{t} */
static void tenants_request(ctx_t *x)
{
    int meth = x->m->method_id;
    json_t *tenants = json_object_get(cp.state, "tenants");
    if (x->nseg == 1) {
        if (meth == GH_M_GET || meth == GH_M_HEAD) {
            if (forbidden(x, GH_SCOPE_READ))
                return;
            json_t *entries = json_array(), *files = json_array();
            const char *k;
            json_t *v;
            json_object_foreach(tenants, k, v) if (x->a->operator || !strcmp(k, x->a->tenant))
                json_array_append_new(entries, entry(k, json_incref(v)));
            json_object_foreach(file_docs(), k, v) if (x->a->operator || !strcmp(k, x->a->tenant)) {
                json_array_append_new(entries, entry(k, json_incref(v)));
                json_array_append_new(files, json_string(k));
            }
            send_list(x, entries, json_pack("{s:o}", "file_managed", files), 0);
            return;
        }
        if (meth != GH_M_POST)
            return method_not_allowed(x, "GET, HEAD, POST");
        if (!x->a->operator) {
            problem(x, 403, "forbidden", "Forbidden", "only the operator creates tenants");
            return;
        }
        if (!need_store(x))
            return;
        json_t *b = body_object(x, 0);
        if (!b)
            return;
        const char *name = json_string_value(json_object_get(b, "name"));
        if (!name || !good_name(name)) {
            json_decref(b);
            invalid(x, "tenants[].name",
                    "a tenant needs a name: visible ASCII, no quotes, backslashes or slashes, at most 128 bytes");
            return;
        }
        if (json_object_get(tenants, name) || json_object_get(file_docs(), name)) {
            json_decref(b);
            problem(x, 409, "already-exists", "Conflict", "a tenant of that name exists");
            return;
        }
        json_t *work = json_deep_copy(cp.state);
        json_object_set(json_object_get(work, "tenants"), name, b);
        char loc[300];
        snprintf(loc, sizeof loc, "/v1/tenants/%s", name);
        answer_t ans = {.status = 201, .body = b};
        etag_headers(&ans, b, loc);
        write_change(x, work, "create", name, loc, &ans);
        return;
    }
    const char *name = x->seg[1];
    int file = 0;
    json_t *doc = tenant_doc(x, cp.state, name, &file);
    char res[300];
    snprintf(res, sizeof res, "/v1/tenants/%s", name);
    if (meth == GH_M_GET || meth == GH_M_HEAD) {
        if (!doc)
            return not_found(x, "tenant");
        if (forbidden(x, GH_SCOPE_READ))
            return;
        return send_item(x, json_incref(doc), file);
    }
    if (meth != GH_M_PUT && meth != GH_M_PATCH && meth != GH_M_DELETE)
        return method_not_allowed(x, "GET, HEAD, PUT, PATCH, DELETE");
    if (!doc && (meth != GH_M_PUT || !x->a->operator))
        return not_found(x, "tenant");
    if (forbidden(x, GH_SCOPE_WRITE) || (file && file_managed(x, name)) || !need_store(x))
        return;
    if (precondition_failed(x, doc, "tenant"))
        return;
    json_t *work = json_deep_copy(cp.state);
    json_t *wt = json_object_get(work, "tenants");
    if (meth == GH_M_DELETE) {
        if (!x->a->operator) {
            json_decref(work);
            problem(x, 403, "forbidden", "Forbidden", "only the operator deletes tenants");
            return;
        }
        json_object_del(wt, name);
        answer_t ans = {.status = 204};
        x->revoke_keys_of = name;
        write_change(x, work, "delete", name, res, &ans);
        return;
    }
    json_t *nd = new_doc(x, doc);
    if (!nd) {
        json_decref(work);
        return;
    }
    const char *bn = json_string_value(json_object_get(nd, "name"));
    if (json_object_get(nd, "name") && (!bn || strcmp(bn, name))) {
        json_decref(nd);
        json_decref(work);
        char at[200];
        snprintf(at, sizeof at, "tenants[%.128s].name", name);
        invalid(x, at, "the body's name differs from the URL's");
        return;
    }
    json_object_set_new(nd, "name", json_string(name));
    json_object_set(wt, name, nd);
    answer_t ans = {.status = doc ? 200 : 201, .body = nd};
    etag_headers(&ans, nd, doc ? NULL : res);
    write_change(x, work, doc ? (meth == GH_M_PATCH ? "update" : "replace") : "create", name, res, &ans);
}

/* Locate the parent object of a collection request in state: the tenant document or, for
 * routes, the site. NULL after answering 404. */
static json_t *locate_parent(ctx_t *x, json_t *state, const coll_t *c, int *file)
{
    json_t *doc = tenant_doc(x, state, x->seg[1], file);
    if (!doc) {
        not_found(x, "tenant");
        return NULL;
    }
    if (c != &C_ROUTES)
        return doc;
    json_t *site = item_find(coll_container(doc, &C_SITES, 0), &C_SITES, x->seg[3], NULL);
    if (!site)
        not_found(x, "site");
    return site;
}

/* A tenant's collection (sites, upstreams, flags, experiments, routes of a site): list, create,
 * and per item get, replace, patch, delete. id NULL: the collection. */
static void coll_request(ctx_t *x, const coll_t *c, const char *id)
{
    int meth = x->m->method_id, file = 0;
    json_t *parent = locate_parent(x, cp.state, c, &file);
    if (!parent)
        return;
    json_t *cont = coll_container(parent, c, 0);
    char res[700];
    int rl = snprintf(res, sizeof res, "/v1/tenants/%s/%s%s%s%s/%s", x->seg[1], c == &C_ROUTES ? "sites/" : "",
                      c == &C_ROUTES ? x->seg[3] : "", c == &C_ROUTES ? "/" : "", c->name, id ? id : "");
    if (!id && rl > 0)
        res[rl - 1] = 0; /* no trailing slash */
    if (!id) {
        if (meth == GH_M_GET || meth == GH_M_HEAD) {
            if (forbidden(x, GH_SCOPE_READ))
                return;
            json_t *entries = json_array();
            if (c->map) {
                const char *k;
                json_t *v;
                json_object_foreach(cont, k, v) json_array_append_new(entries, entry(k, item_view(c, k, v)));
            } else {
                size_t i;
                json_t *v;
                json_array_foreach(cont, i, v) {
                    const char *k = json_string_value(json_object_get(v, c->key));
                    if (k)
                        json_array_append_new(entries, entry(k, json_incref(v)));
                }
            }
            return send_list(x, entries, NULL, !c->map);
        }
        if (meth != GH_M_POST)
            return method_not_allowed(x, "GET, HEAD, POST");
        if (forbidden(x, GH_SCOPE_WRITE) || (file && file_managed(x, x->seg[1])) || !need_store(x))
            return;
        json_t *b = body_object(x, 0);
        if (!b)
            return;
        const char *nid = json_string_value(json_object_get(b, c->key));
        if (!nid || !good_name(nid)) {
            char d[200];
            snprintf(d, sizeof d, "the body needs \"%s\": visible ASCII, no quotes, backslashes or slashes, at most 128 bytes",
                     c->key);
            json_decref(b);
            char at[300];
            snprintf(at, sizeof at, "tenants[%.128s].%s[].%s", x->seg[1], c->name, c->key);
            invalid(x, at, d);
            return;
        }
        if (item_find(cont, c, nid, NULL)) {
            json_decref(b);
            problem(x, 409, "already-exists", "Conflict", "an item of that name exists: PUT replaces it");
            return;
        }
        char pos[24] = "";
        long position = -1;
        if (qparam(x->m, "position", pos, sizeof pos) < 0 || (pos[0] && (c->map || (position = strtol(pos, NULL, 10)) < 0))) {
            json_decref(b);
            problem(x, 400, "bad-request", "Bad Request", "position is a 0-based index into an ordered collection");
            return;
        }
        json_t *work = json_deep_copy(cp.state);
        int f2;
        json_t *wp = locate_parent(x, work, c, &f2);
        item_put(coll_container(wp, c, 1), c, nid, b, position);
        char loc[900];
        snprintf(loc, sizeof loc, "%s/%s", res, nid);
        answer_t ans = {.status = 201, .body = b};
        etag_headers(&ans, b, loc);
        write_change(x, work, "create", x->seg[1], loc, &ans);
        return;
    }
    json_t *stored = item_find(cont, c, id, NULL);
    if (meth == GH_M_GET || meth == GH_M_HEAD) {
        if (!stored)
            return not_found(x, c->one);
        if (forbidden(x, GH_SCOPE_READ))
            return;
        return send_item(x, item_view(c, id, stored), file);
    }
    if (meth != GH_M_PUT && meth != GH_M_PATCH && meth != GH_M_DELETE)
        return method_not_allowed(x, "GET, HEAD, PUT, PATCH, DELETE");
    if (!stored && meth != GH_M_PUT)
        return not_found(x, c->one);
    if (forbidden(x, GH_SCOPE_WRITE) || (file && file_managed(x, x->seg[1])) || !need_store(x))
        return;
    if (!good_name(id)) {
        char at[300];
        snprintf(at, sizeof at, "tenants[%.128s].%s[].%s", x->seg[1], c->name, c->key);
        invalid(x, at, "bad name in the URL: visible ASCII, no quotes, backslashes or slashes, at most 128 bytes");
        return;
    }
    json_t *view = stored ? item_view(c, id, stored) : NULL;
    if (precondition_failed(x, view, c->one)) {
        json_decref(view);
        return;
    }
    json_t *work = json_deep_copy(cp.state);
    int f2;
    json_t *wc = coll_container(locate_parent(x, work, c, &f2), c, 1);
    if (meth == GH_M_DELETE) {
        json_decref(view);
        item_del(wc, c, id);
        answer_t ans = {.status = 204};
        write_change(x, work, "delete", x->seg[1], res, &ans);
        return;
    }
    json_t *nv = new_doc(x, view);
    json_decref(view);
    if (!nv) {
        json_decref(work);
        return;
    }
    const char *bid = json_string_value(json_object_get(nv, c->key));
    if (json_object_get(nv, c->key) && (!bid || strcmp(bid, id))) {
        json_decref(nv);
        json_decref(work);
        char d[200];
        char at[300];
        snprintf(d, sizeof d, "the body's \"%s\" differs from the URL's", c->key);
        snprintf(at, sizeof at, "tenants[%.128s].%s[%.128s].%s", x->seg[1], c->name, id, c->key);
        invalid(x, at, d);
        return;
    }
    json_object_set_new(nv, c->key, json_string(id));
    item_put(wc, c, id, nv, -1);
    answer_t ans = {.status = stored ? 200 : 201, .body = nv};
    etag_headers(&ans, nv, stored ? NULL : res);
    write_change(x, work, stored ? (meth == GH_M_PATCH ? "update" : "replace") : "create", x->seg[1], res, &ans);
}

/* /v1/tenants/{t}/protection and /cache: one object per tenant. */
static void single_request(ctx_t *x, const char *field)
{
    int meth = x->m->method_id, file = 0;
    json_t *doc = tenant_doc(x, cp.state, x->seg[1], &file);
    if (!doc)
        return not_found(x, "tenant");
    json_t *cur = json_object_get(doc, field);
    char res[300];
    snprintf(res, sizeof res, "/v1/tenants/%s/%s", x->seg[1], field);
    if (meth == GH_M_GET || meth == GH_M_HEAD) {
        if (!cur)
            return not_found(x, field);
        if (forbidden(x, GH_SCOPE_READ))
            return;
        return send_item(x, json_incref(cur), file);
    }
    if (meth != GH_M_PUT && meth != GH_M_PATCH && meth != GH_M_DELETE)
        return method_not_allowed(x, "GET, HEAD, PUT, PATCH, DELETE");
    if (!cur && meth != GH_M_PUT)
        return not_found(x, field);
    if (forbidden(x, GH_SCOPE_WRITE) || (file && file_managed(x, x->seg[1])) || !need_store(x))
        return;
    if (precondition_failed(x, cur, field))
        return;
    json_t *work = json_deep_copy(cp.state);
    json_t *wd = json_object_get(json_object_get(work, "tenants"), x->seg[1]);
    if (meth == GH_M_DELETE) {
        json_object_del(wd, field);
        answer_t ans = {.status = 204};
        write_change(x, work, "delete", x->seg[1], res, &ans);
        return;
    }
    json_t *nv = new_doc(x, cur);
    if (!nv) {
        json_decref(work);
        return;
    }
    json_object_set(wd, field, nv);
    answer_t ans = {.status = cur ? 200 : 201, .body = nv};
    etag_headers(&ans, nv, cur ? NULL : res);
    write_change(x, work, cur ? (meth == GH_M_PATCH ? "update" : "replace") : "create", x->seg[1], res, &ans);
}

/* ---------------------------------------------------------------- API keys */

static const char *const scope_names[] = {"read", "write", "admin", "flags:evaluate", "events:publish"};

static json_t *key_view(json_t *row)
{
    json_t *v = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(row, "id"), "tenant",
                          json_object_get(row, "tenant"), "name", json_object_get(row, "name"), "created_at",
                          json_object_get(row, "created_at"), "created_by", json_object_get(row, "created_by"),
                          "expires_at", json_object_get(row, "expires_at"), "revoked_at", json_object_get(row, "revoked_at"));
    json_t *sc = json_loads(json_string_value(json_object_get(row, "scopes")), 0, NULL);
    json_object_set_new(v, "scopes", sc ? sc : json_array());
    return v;
}

/* /v1/tenants/{t}/keys[/{id}] */
static void keys_request(ctx_t *x)
{
    int meth = x->m->method_id, file = 0;
    const char *tenant = x->seg[1];
    if (!tenant_doc(x, cp.state, tenant, &file))
        return not_found(x, "tenant");
    if (forbidden(x, GH_SCOPE_ADMIN) || !need_store(x))
        return;
    if (x->nseg == 3) {
        if (meth == GH_M_GET || meth == GH_M_HEAD) {
            const char *p[] = {tenant};
            json_t *rows = NULL;
            if (gh_store_exec(cp.st, "SELECT * FROM api_keys WHERE tenant = ?", 1, p, &rows) < 0) {
                problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not be read");
                return;
            }
            json_t *entries = json_array();
            size_t i;
            json_t *row;
            json_array_foreach(rows, i, row)
                json_array_append_new(entries, entry(json_string_value(json_object_get(row, "id")), key_view(row)));
            json_decref(rows);
            return send_list(x, entries, NULL, 0);
        }
        if (meth != GH_M_POST)
            return method_not_allowed(x, "GET, HEAD, POST");
        json_t *b = body_object(x, 0);
        if (!b)
            return;
        const char *name = json_string_value(json_object_get(b, "name"));
        json_t *scopes = json_object_get(b, "scopes"), *ttl = json_object_get(b, "ttl_seconds");
        const char *why = !name || !*name || strlen(name) > MAX_SEG ? "a key needs a name (at most 128 bytes)"
                          : !json_is_array(scopes) || !json_array_size(scopes) ? "a key needs scopes: a list of read, write, admin, flags:evaluate, events:publish"
                          : ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 1 || json_integer_value(ttl) > 10LL * 365 * 86400)
                              ? "ttl_seconds is 1..315360000"
                              : NULL;
        size_t i;
        json_t *sv;
        unsigned want = 0;
        json_array_foreach(scopes, i, sv) {
            int known = 0;
            for (unsigned k = 0; k < 5; k++)
                if (json_is_string(sv) && !strcmp(json_string_value(sv), scope_names[k]))
                    known = 1, want |= 1u << k;
            if (!known && !why)
                why = "unknown scope: use read, write, admin, flags:evaluate, events:publish";
        }
        if (!why && !x->a->operator && (want & ~x->a->scopes))
            why = "a key cannot grant scopes it does not hold";
        if (why) {
            json_decref(b);
            problem(x, 422, "invalid-key", "Unprocessable Content", why);
            return;
        }
        if (x->dry_run) {
            json_decref(b);
            send_json(x, 200, json_pack("{s:b,s:b,s:I,s:o}", "dry_run", 1, "valid", 1, "version", (json_int_t)cp.version,
                                        "errors", json_array()),
                      NULL);
            return;
        }
        unsigned char rnd[38];
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            json_decref(b);
            problem(x, 503, "no-entropy", "Service Unavailable", "no random bytes");
            return;
        }
        char id[13], token[3 + 12 + 1 + 64 + 1], hash[65], at[32], exp[32], sc[128];
        for (int k = 0; k < 6; k++)
            sprintf(id + 2 * k, "%02x", rnd[k]);
        int tl = snprintf(token, sizeof token, "gh_%s_", id);
        for (int k = 0; k < 32; k++)
            tl += sprintf(token + tl, "%02x", rnd[6 + k]);
        sha256_hex(token, (size_t)tl, hash);
        now_text(at, sizeof at, 0);
        if (ttl) /* to the millisecond */
            now_text_ms(exp, sizeof exp, (int64_t)json_integer_value(ttl) * 1000);
        size_t sl = (size_t)snprintf(sc, sizeof sc, "[");
        for (unsigned k = 0; k < 5; k++)
            if (want & (1u << k))
                sl += (size_t)snprintf(sc + sl, sizeof sc - sl, "%s\"%s\"", sl > 1 ? "," : "", scope_names[k]);
        snprintf(sc + sl, sizeof sc - sl, "]");
        const char *p[] = {id, tenant, name, hash, sc, at, x->actor, ttl ? exp : NULL};
        json_t *row = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:n}", "id", id, "tenant", tenant, "name", name, "scopes", sc,
                                "created_at", at, "created_by", x->actor, "expires_at", ttl ? json_string(exp) : json_null(),
                                "revoked_at");
        answer_t ans = {.status = 201, .body = key_view(row)};
        json_decref(row);
        json_object_set_new(ans.body, "key", json_string(token)); /* shown this once */
        snprintf(ans.headers, sizeof ans.headers, "Location: /v1/tenants/%s/keys/%s\r\n", tenant, id);
        char res[300];
        snprintf(res, sizeof res, "/v1/tenants/%s/keys/%s", tenant, id);
        json_t *d = json_pack("[{s:s,s:s,s:{s:s,s:s,s:o}}]", "op", "add", "path", "key", "after", "id", id, "name", name,
                              "scopes", json_loads(sc, 0, NULL));
        int rc = gh_store_begin(cp.st);
        if (rc == 0)
            rc = gh_store_exec(cp.st,
                               "INSERT INTO api_keys (id, tenant, name, hash, scopes, created_at, created_by, expires_at)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               8, p, NULL);
        if (rc == 0)
            rc = audit_insert(x, "key.create", tenant, res, 0, d);
        if (rc == 0) { /* a replay answers the same, but the secret is not kept anywhere */
            answer_t kept = ans;
            kept.body = json_copy(ans.body);
            json_object_set_new(kept.body, "key", json_string("[shown once, not kept]"));
            rc = idem_insert(x, &kept, cp.version);
            json_decref(kept.body);
        }
        if (rc == 0)
            gh_store_notify(cp.st);
        if (rc == 0)
            rc = gh_store_commit(cp.st);
        json_decref(d);
        json_decref(b);
        if (rc < 0) {
            gh_store_rollback(cp.st);
            json_decref(ans.body);
            problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not record the key");
            return;
        }
        keys_changed(cp.st, "API key created");
        send_answer(x, &ans, cp.version);
        return;
    }
    const char *id = x->seg[3];
    const char *p[] = {id, tenant};
    json_t *rows = NULL;
    if (gh_store_exec(cp.st, "SELECT * FROM api_keys WHERE id = ? AND tenant = ?", 2, p, &rows) < 0) {
        problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not be read");
        return;
    }
    json_t *row = json_array_get(rows, 0);
    if (!row) {
        json_decref(rows);
        return not_found(x, "key");
    }
    if (meth == GH_M_GET || meth == GH_M_HEAD) {
        send_item(x, key_view(row), 0);
        json_decref(rows);
        return;
    }
    json_decref(rows);
    if (meth != GH_M_DELETE)
        return method_not_allowed(x, "GET, HEAD, DELETE");
    if (x->dry_run) {
        send_json(x, 200, json_pack("{s:b,s:b,s:I,s:o}", "dry_run", 1, "valid", 1, "version", (json_int_t)cp.version,
                                    "errors", json_array()),
                  NULL);
        return;
    }
    char at[32], res[300];
    now_text(at, sizeof at, 0);
    snprintf(res, sizeof res, "/v1/tenants/%s/keys/%s", tenant, id);
    const char *q[] = {at, id, tenant};
    json_t *d = json_pack("[{s:s,s:s}]", "op", "remove", "path", "key");
    answer_t ans = {.status = 204};
    int rc = gh_store_begin(cp.st);
    if (rc == 0)
        rc = gh_store_exec(cp.st, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant = ? AND revoked_at IS NULL",
                           3, q, NULL);
    if (rc == 0)
        rc = audit_insert(x, "key.revoke", tenant, res, 0, d);
    if (rc == 0)
        rc = idem_insert(x, &ans, cp.version);
    if (rc == 0)
        gh_store_notify(cp.st);
    if (rc == 0)
        rc = gh_store_commit(cp.st);
    json_decref(d);
    if (rc < 0) {
        gh_store_rollback(cp.st);
        problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not record the revocation");
        return;
    }
    keys_changed(cp.st, "API key revoked");
    send_answer(x, &ans, cp.version);
}

/* POST /v1/tenants/{t}/purges {"tags"|"urls"|"prefixes": [...] | "all": true, "soft": bool} */
static void purge_request(ctx_t *x)
{
    int file = 0;
    const char *tenant = x->seg[1];
    if (!tenant_doc(x, cp.state, tenant, &file))
        return not_found(x, "tenant");
    if (x->m->method_id != GH_M_POST)
        return method_not_allowed(x, "POST");
    if (forbidden(x, GH_SCOPE_WRITE))
        return;
    json_t *b = body_object(x, 0);
    if (!b)
        return;
    static const char *const kinds[] = {"tags", "urls", "prefixes"};
    static const int kv[] = {GH_PURGE_TAG, GH_PURGE_URL, GH_PURGE_PREFIX};
    int kind = -1, nk = 0;
    json_t *vals = NULL;
    for (int k = 0; k < 3; k++)
        if (json_object_get(b, kinds[k]))
            kind = kv[k], vals = json_object_get(b, kinds[k]), nk++;
    if (json_is_true(json_object_get(b, "all")))
        kind = GH_PURGE_ALL, nk++;
    json_t *soft = json_object_get(b, "soft");
    size_t i;
    json_t *v;
    int bad = nk != 1 || (soft && !json_is_boolean(soft)) ||
              (kind != GH_PURGE_ALL && (!json_is_array(vals) || !json_array_size(vals) || json_array_size(vals) > 64));
    if (!bad)
        json_array_foreach(vals, i, v) bad |= !json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 1024;
    if (bad) {
        json_decref(b);
        problem(x, 422, "invalid-purge", "Unprocessable Content",
                "give one of tags, urls, prefixes (1-64 strings of at most 1024 bytes) or all: true; soft is a boolean");
        return;
    }
    if (x->dry_run) {
        json_decref(b);
        send_json(x, 200, json_pack("{s:b,s:b,s:I,s:o}", "dry_run", 1, "valid", 1, "version", (json_int_t)cp.version,
                                    "errors", json_array()),
                  NULL);
        return;
    }
    uint64_t n = 0;
    gh_str_t tn = gh_str(tenant, strlen(tenant));
    if (kind == GH_PURGE_ALL) {
        int64_t got = gh_admin_purge(cp.cur, tn, kind, "", json_is_true(soft));
        n = got > 0 ? (uint64_t)got : 0;
    } else {
        json_array_foreach(vals, i, v) {
            int64_t got = gh_admin_purge(cp.cur, tn, kind, json_string_value(v), json_is_true(soft));
            n += got > 0 ? (uint64_t)got : 0;
        }
    }
    {
        const char *vp[64];
        int nv = 0;
        if (kind != GH_PURGE_ALL)
            json_array_foreach(vals, i, v) vp[nv++] = json_string_value(v);
        gh_admin_purge_share(tenant, kind, vp, nv, json_is_true(soft));
    }
    char res[300];
    snprintf(res, sizeof res, "/v1/tenants/%s/purges", tenant);
    if (cp.st) {
        json_t *d = json_pack("[{s:s,s:s,s:O}]", "op", "add", "path", "purge", "after", b);
        audit_insert(x, "purge", tenant, res, 0, d);
        json_decref(d);
    }
    json_decref(b);
    send_json(x, 200, json_pack("{s:I,s:b}", "purged", (json_int_t)n, "soft", json_is_true(soft)), NULL);
}

/* ---------------------------------------------------------------- audit and versions */

/* GET /v1/audit?tenant=&limit=&cursor= (newest first; cursor: the last id seen) */
static void audit_request(ctx_t *x)
{
    if (x->m->method_id != GH_M_GET && x->m->method_id != GH_M_HEAD)
        return method_not_allowed(x, "GET, HEAD");
    if (forbidden(x, GH_SCOPE_READ) || !need_store(x))
        return;
    char tenant[MAX_SEG + 1] = "", cur[24] = "", lim[16] = "";
    if (qparam(x->m, "tenant", tenant, sizeof tenant) < 0 || qparam(x->m, "cursor", cur, sizeof cur) < 0 ||
        qparam(x->m, "limit", lim, sizeof lim) < 0) {
        problem(x, 400, "bad-request", "Bad Request", "tenant, cursor or limit is badly encoded or too long");
        return;
    }
    if (!x->a->operator) {
        if (tenant[0] && strcmp(tenant, x->a->tenant))
            return not_found(x, "tenant");
        snprintf(tenant, sizeof tenant, "%s", x->a->tenant);
    }
    long limit = (long)num_or(lim, LIST_DEFAULT);
    long long after = num_or(cur, 0);
    if (limit < 1 || limit > LIST_MAX || (cur[0] && after < 1)) {
        problem(x, 400, "bad-request", "Bad Request", "limit is 1..500; cursor is a number from next_cursor");
        return;
    }
    char ls[24], as[24];
    snprintf(ls, sizeof ls, "%ld", limit + 1);
    snprintf(as, sizeof as, "%lld", after ? after : (long long)INT64_MAX);
    const char *p[] = {tenant[0] ? tenant : NULL, tenant[0] ? tenant : NULL, as, ls};
    json_t *rows = NULL;
    if (gh_store_exec(cp.st,
                      "SELECT id, at, actor, source, action, tenant, resource, version, diff FROM audit"
                      " WHERE (? IS NULL OR tenant = ?) AND id < ? ORDER BY id DESC LIMIT ?",
                      4, p, &rows) < 0) {
        problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not be read");
        return;
    }
    json_t *items = json_array();
    size_t i;
    json_t *row;
    const char *last = NULL;
    json_array_foreach(rows, i, row) {
        if ((long)i == limit)
            break;
        json_t *d = json_loads(json_string_value(json_object_get(row, "diff")), 0, NULL);
        json_object_set_new(row, "diff", d ? d : json_array());
        json_object_set_new(row, "id", json_integer(strtoll(json_string_value(json_object_get(row, "id")), NULL, 10)));
        const char *ver = json_string_value(json_object_get(row, "version"));
        json_object_set_new(row, "version", ver ? json_integer(strtoll(ver, NULL, 10)) : json_null());
        json_array_append(items, row);
        last = json_string_value(json_object_get(row, "at")) ? "" : NULL;
    }
    (void)last;
    json_t *next = json_null();
    if ((long)json_array_size(rows) > limit) {
        char nc[24];
        snprintf(nc, sizeof nc, "%lld", (long long)json_integer_value(json_object_get(json_array_get(items, (size_t)limit - 1), "id")));
        next = json_string(nc);
    }
    json_decref(rows);
    send_json(x, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next), NULL);
}

static json_t *version_row(int64_t id, int with_state)
{
    char vs[24];
    snprintf(vs, sizeof vs, "%lld", (long long)id);
    const char *p[] = {vs};
    json_t *rows = NULL;
    if (gh_store_exec(cp.st, "SELECT id, created_at, actor, comment, parent, state FROM versions WHERE id = ?", 1, p, &rows) < 0)
        return NULL;
    json_t *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    if (!row)
        return NULL;
    json_t *st = json_loads(json_string_value(json_object_get(row, "state")), 0, NULL);
    if (with_state)
        json_object_set_new(row, "state", st ? st : json_object());
    else {
        json_object_del(row, "state");
        json_decref(st);
    }
    json_object_set_new(row, "id", json_integer(id));
    const char *par = json_string_value(json_object_get(row, "parent"));
    json_object_set_new(row, "parent", par ? json_integer(strtoll(par, NULL, 10)) : json_null());
    return row;
}

/* /v1/versions, /v1/versions/{n}, /v1/versions/{n}/diff?from=m, POST /v1/versions/{n}/rollback */
static void versions_request(ctx_t *x)
{
    int meth = x->m->method_id;
    if (!x->a->operator) {
        problem(x, 403, "forbidden", "Forbidden", "configuration versions hold every tenant: operator only");
        return;
    }
    if (!need_store(x))
        return;
    if (x->nseg == 1) {
        if (meth != GH_M_GET && meth != GH_M_HEAD)
            return method_not_allowed(x, "GET, HEAD");
        char cur[24] = "", lim[16] = "";
        if (qparam(x->m, "cursor", cur, sizeof cur) < 0 || qparam(x->m, "limit", lim, sizeof lim) < 0) {
            problem(x, 400, "bad-request", "Bad Request", "cursor or limit is badly encoded");
            return;
        }
        long limit = (long)num_or(lim, LIST_DEFAULT);
        long long after = num_or(cur, 0);
        if (limit < 1 || limit > LIST_MAX || (cur[0] && after < 1)) {
            problem(x, 400, "bad-request", "Bad Request", "limit is 1..500; cursor is a number from next_cursor");
            return;
        }
        char ls[24], as[24];
        snprintf(ls, sizeof ls, "%ld", limit + 1);
        snprintf(as, sizeof as, "%lld", after ? after : (long long)INT64_MAX);
        const char *p[] = {as, ls};
        json_t *rows = NULL;
        if (gh_store_exec(cp.st, "SELECT id, created_at, actor, comment, parent FROM versions WHERE id < ? ORDER BY id DESC LIMIT ?",
                          2, p, &rows) < 0) {
            problem(x, 503, "store-unavailable", "Service Unavailable", "the store could not be read");
            return;
        }
        json_t *items = json_array();
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            if ((long)i == limit)
                break;
            json_object_set_new(row, "id", json_integer(strtoll(json_string_value(json_object_get(row, "id")), NULL, 10)));
            const char *par = json_string_value(json_object_get(row, "parent"));
            json_object_set_new(row, "parent", par ? json_integer(strtoll(par, NULL, 10)) : json_null());
            json_array_append(items, row);
        }
        json_t *next = json_null();
        if ((long)json_array_size(rows) > limit) {
            char nc[24];
            snprintf(nc, sizeof nc, "%lld",
                     (long long)json_integer_value(json_object_get(json_array_get(items, (size_t)limit - 1), "id")));
            next = json_string(nc);
        }
        json_decref(rows);
        send_json(x, 200, json_pack("{s:o,s:o,s:I}", "items", items, "next_cursor", next, "current", (json_int_t)cp.version),
                  NULL);
        return;
    }
    char *e = NULL;
    long long id = strtoll(x->seg[1], &e, 10);
    if (!e || *e || id < 1)
        return not_found(x, "version");
    if (x->nseg == 2) {
        if (meth != GH_M_GET && meth != GH_M_HEAD)
            return method_not_allowed(x, "GET, HEAD");
        json_t *row = version_row(id, 1);
        if (!row)
            return not_found(x, "version");
        json_t *st = json_object_get(row, "state");
        json_object_set_new(row, "state", redact(st));
        send_json(x, 200, row, NULL);
        return;
    }
    if (x->nseg == 3 && !strcmp(x->seg[2], "diff")) {
        if (meth != GH_M_GET && meth != GH_M_HEAD)
            return method_not_allowed(x, "GET, HEAD");
        char from[24] = "";
        if (qparam(x->m, "from", from, sizeof from) < 0) {
            problem(x, 400, "bad-request", "Bad Request", "from is badly encoded");
            return;
        }
        long long f = num_or(from, id - 1);
        if (f < 0) {
            problem(x, 400, "bad-request", "Bad Request", "from is a version number (0: the empty state)");
            return;
        }
        json_t *b = version_row(id, 1), *a = f > 0 ? version_row(f, 1) : json_pack("{s:{s:{}}}", "state", "tenants");
        if (!b || !a) {
            json_decref(a);
            json_decref(b);
            return not_found(x, "version");
        }
        json_t *d = json_array();
        diff(json_object_get(a, "state"), json_object_get(b, "state"), "", 0, d);
        json_decref(a);
        json_decref(b);
        send_json(x, 200, json_pack("{s:I,s:I,s:o}", "from", (json_int_t)f, "to", (json_int_t)id, "changes", d), NULL);
        return;
    }
    if (x->nseg == 3 && !strcmp(x->seg[2], "rollback")) {
        if (meth != GH_M_POST)
            return method_not_allowed(x, "POST");
        json_t *row = version_row(id, 1);
        if (!row)
            return not_found(x, "version");
        json_t *work = json_incref(json_object_get(row, "state"));
        json_decref(row);
        char res[64];
        snprintf(res, sizeof res, "/v1/versions/%lld", id);
        answer_t ans = {.status = 200, .body = json_pack("{s:I}", "rolled_back_to", (json_int_t)id)};
        write_change(x, work, "rollback", NULL, res, &ans);
        return;
    }
    not_found(x, "resource");
}

/* ---------------------------------------------------------------- dispatch */

/* Answer x's request (x->m, x->v, x->a set): 0 when it is not the control plane's. */
static int dispatch(ctx_t *x)
{
    const gh_h1_request_t *m = x->m;
    const gh_req_view_t *v = x->v;
    const gh_cp_actor_t *a = x->a;
    gh_str_t path = m->path;
    if (path.n < 4 || memcmp(path.p, "/v1/", 4))
        return 0;
    const char *p = path.p + 4, *end = path.p + path.n;
    int bad = 0, done = 0;
    while (x->nseg < MAX_SEGS) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        gh_str_t s = gh_str(p, (size_t)((slash ? slash : end) - p));
        int l = gh_h1_pct_decode(s, x->seg[x->nseg], MAX_SEG + 1, 0);
        if (l <= 0 || strlen(x->seg[x->nseg]) != (size_t)l) { /* bad escape, too long, empty, or a NUL */
            bad = 1;
            break;
        }
        x->nseg++;
        if (!slash) {
            done = 1;
            break;
        }
        p = slash + 1;
    }
    const char *top = x->nseg > 0 ? x->seg[0] : "";
    if (strcmp(top, "tenants") && strcmp(top, "versions") && strcmp(top, "audit"))
        return 0;
    if (bad || !done) {
        not_found(x, "resource");
        return 1;
    }
    if (a->operator)
        snprintf(x->actor, sizeof x->actor, "operator");
    else
        snprintf(x->actor, sizeof x->actor, "key:%s", a->key_id);
    x->dry_run = qbool(m, "dry_run");
    const gh_h1_header_t *ik = header(m, "idempotency-key");
    int meth = m->method_id;
    int writing = meth == GH_M_POST || meth == GH_M_PUT || meth == GH_M_PATCH || meth == GH_M_DELETE;
    if (ik && writing) {
        if (ik->value.n == 0 || ik->value.n > IDEM_KEY_MAX) {
            problem(x, 400, "bad-request", "Bad Request", "Idempotency-Key is 1..255 bytes");
            return 1;
        }
        memcpy(x->idem, ik->value.p, ik->value.n);
        x->idem[ik->value.n] = 0;
        unsigned char d[32];
        unsigned dl = 0;
        EVP_MD_CTX *h = EVP_MD_CTX_new();
        if (!h || !EVP_DigestInit_ex(h, EVP_sha256(), NULL) || !EVP_DigestUpdate(h, m->method.p, m->method.n) ||
            !EVP_DigestUpdate(h, " ", 1) || !EVP_DigestUpdate(h, m->target.p, m->target.n) ||
            !EVP_DigestUpdate(h, "\n", 1) || (v->body_len && !EVP_DigestUpdate(h, v->body, v->body_len)) ||
            !EVP_DigestFinal_ex(h, d, &dl)) {
            EVP_MD_CTX_free(h);
            problem(x, 503, "no-digest", "Service Unavailable", "cannot hash the request");
            return 1;
        }
        EVP_MD_CTX_free(h);
        for (int i = 0; i < 32; i++)
            sprintf(x->req_hash + 2 * i, "%02x", d[i]);
    }
    gh_cp_lock();
    if (cp.st)
        sync_head(cp.st, "store change"); /* another node may have written */
    if (!(writing && idem_replay(x))) {
        if (!strcmp(top, "versions"))
            versions_request(x);
        else if (!strcmp(top, "audit"))
            x->nseg == 1 ? audit_request(x) : not_found(x, "resource");
        else if (x->nseg <= 2)
            tenants_request(x);
        else {
            const char *sub = x->seg[2];
            const coll_t *c = NULL;
            for (size_t i = 0; i < sizeof tenant_colls / sizeof *tenant_colls; i++)
                if (!strcmp(sub, tenant_colls[i]->name))
                    c = tenant_colls[i];
            int single = !strcmp(sub, singletons[0]) || !strcmp(sub, singletons[1]);
            if (c == &C_SITES && x->nseg >= 5 && !strcmp(x->seg[4], "routes") && x->nseg <= 6)
                coll_request(x, &C_ROUTES, x->nseg == 6 ? x->seg[5] : NULL);
            else if (c && x->nseg <= 4)
                coll_request(x, c, x->nseg == 4 ? x->seg[3] : NULL);
            else if (single && x->nseg == 3)
                single_request(x, sub);
            else if (!strcmp(sub, "keys") && x->nseg <= 4)
                keys_request(x);
            else if (!strcmp(sub, "purges") && x->nseg == 3)
                purge_request(x);
            else
                not_found(x, "resource");
        }
    }
    gh_cp_unlock();
    return 1;
}

int gh_cp_handle(gh_req_t *r, const gh_req_view_t *v, const gh_cp_actor_t *a)
{
    ctx_t *x = calloc(1, sizeof *x);
    if (!x) {
        gh_session_respond(r, 503, "text/plain", "out of memory\n", 14, NULL);
        return 1;
    }
    x->r = r, x->v = v, x->m = v->msg, x->a = a;
    int rc = dispatch(x);
    free(x);
    return rc;
}

void gh_cp_call(const gh_cp_actor_t *a, const char *peer, const char *method, const char *target, const char *body,
                size_t len, const char *if_match, const char *idem_key, gh_cp_reply_t *out)
{
    static const char *const names[] = {[GH_M_GET] = "GET", [GH_M_HEAD] = "HEAD", [GH_M_POST] = "POST",
                                        [GH_M_PUT] = "PUT", [GH_M_DELETE] = "DELETE", [GH_M_PATCH] = "PATCH"};
    memset(out, 0, sizeof *out);
    ctx_t *x = calloc(1, sizeof *x);
    if (!x) {
        out->status = 503;
        return;
    }
    gh_h1_request_t m;
    gh_h1_header_t h[3];
    memset(&m, 0, sizeof m);
    m.method = gh_str(method, strlen(method));
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (names[i] && !strcmp(names[i], method))
            m.method_id = i;
    m.target = gh_str(target, strlen(target));
    const char *qm = strchr(target, '?');
    m.path = gh_str(target, qm ? (size_t)(qm - target) : strlen(target));
    m.query = qm ? gh_str(qm + 1, strlen(qm + 1)) : GH_STR("");
    m.minor = 1;
    m.headers = h;
    int patch = m.method_id == GH_M_PATCH;
    h[m.nheaders++] = (gh_h1_header_t){GH_STR("content-type"),
                                       patch ? GH_STR("application/merge-patch+json") : GH_STR("application/json")};
    if (if_match && *if_match)
        h[m.nheaders++] = (gh_h1_header_t){GH_STR("if-match"), gh_str(if_match, strlen(if_match))};
    if (idem_key && *idem_key)
        h[m.nheaders++] = (gh_h1_header_t){GH_STR("idempotency-key"), gh_str(idem_key, strlen(idem_key))};
    gh_req_view_t v = {.msg = &m, .peer = peer, .body = body, .body_len = body ? len : 0};
    x->cap = out, x->v = &v, x->m = &m, x->a = a;
    if (!dispatch(x))
        problem(x, 404, "not-found", "Not Found", "no such resource");
    free(x);
}

void gh_cp_reply_free(gh_cp_reply_t *r)
{
    free(r->ctype);
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int gh_cp_auth_token(const gh_conf_t *c, const char *token, size_t n, gh_cp_actor_t *a)
{
    char hv[200];
    gh_h1_header_t h = {GH_STR("authorization"), GH_STR("")};
    gh_h1_request_t m;
    memset(&m, 0, sizeof m);
    if (token) {
        if (n > sizeof hv - 8)
            return 401;
        int l = snprintf(hv, sizeof hv, "Bearer %.*s", (int)n, token);
        h.value = gh_str(hv, (size_t)l);
        m.headers = &h;
        m.nheaders = 1;
    }
    return gh_cp_auth(c, &m, a);
}
