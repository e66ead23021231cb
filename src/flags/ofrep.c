/* ofrep.c: see ofrep.h. */
#include "flags/ofrep.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <time.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/buf.h"
#include "core/json.h"
#include "experiments/exp.h"
#include "flags/flags.h"
#include "protect/gcra.h"
#include "protect/shtab.h"

#define ARENA_SIZE (256u << 10)

/* A constant JSON body (its length counted by the compiler). */
#define RESPOND_LIT(r, status, lit, extra) gh_session_respond((r), (status), "application/json", (lit), sizeof(lit) - 1, (extra))

/* A growing output string. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} out_t;

/* Room for n more bytes and a NUL; 0, or -1 (o->oom set). */
static int reserve(out_t *o, size_t n)
{
    if (o->oom)
        return -1;
    if (o->n + n + 1 > o->cap) {
        size_t c = o->cap ? o->cap : 1024;
        while (c < o->n + n + 1)
            c *= 2;
        char *p = realloc(o->p, c);
        if (!p) {
            o->oom = 1;
            return -1;
        }
        o->p = p;
        o->cap = c;
    }
    return 0;
}

static void put(out_t *o, const char *s, size_t n)
{
    if (reserve(o, n) < 0)
        return;
    memcpy(o->p + o->n, s, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static int dump_cb(const char *buf, size_t size, void *data)
{
    put(data, buf, size);
    return 0;
}

static void put_json(out_t *o, const json_t *v)
{
    if (json_dump_callback(v, dump_cb, o, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
        o->oom = 1;
}

static void put_str(out_t *o, const char *s) /* a JSON string (flag keys, variants, messages) */
{
    size_t len = strlen(s);
    if (reserve(o, len * 6 + 2) < 0) /* room first: the escaper writes in place */
        return;
    /* UTF-8 kept when it is (keys from the definition); a key from the URL may be anything */
    json_t *probe = NULL;
    int utf8 = 1;
    for (size_t i = 0; i < len && utf8; i++)
        if ((unsigned char)s[i] >= 0x80)
            utf8 = (probe = json_string(s)) != NULL;
    json_decref(probe);
    o->n += gh_json_str(o->p + o->n, o->cap - o->n, gh_str(s, len), utf8);
    o->p[o->n] = 0;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int ct_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return 0;
    unsigned char d = 0;
    for (size_t i = 0; i < an; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* A control-plane key (gh_<id>_<secret>) with scope: its tenant, or NULL. */
static const gh_conf_tenant_t *store_key_tenant(const gh_conf_t *c, gh_str_t key, unsigned scope)
{
    if (!c->nkeys || key.n < 4 || memcmp(key.p, "gh_", 3))
        return NULL;
    uint8_t h[32];
    SHA256((const unsigned char *)key.p, key.n, h);
    time_t now = time(NULL);
    for (uint32_t i = 0; i < c->nkeys; i++) {
        const gh_conf_key_t *k = &c->keys[i];
        if (CRYPTO_memcmp(k->hash, h, 32) || !(k->scopes & scope) || (k->expires && k->expires <= now))
            continue;
        for (uint32_t t = 0; t < c->ntenants; t++)
            if (c->tenants[t].flags.set && !strcmp(c->tenants[t].name, k->tenant))
                return &c->tenants[t];
    }
    return NULL;
}

const gh_conf_tenant_t *gh_flags_tenant_of(const gh_conf_t *c, const gh_h1_request_t *m, unsigned scope)
{
    gh_str_t key = GH_STR_NULL;
    const gh_h1_header_t *h = gh_h1_find(m->headers, m->nheaders, GH_STR("x-api-key"));
    if (h) {
        key = h->value;
    } else if ((h = gh_h1_find(m->headers, m->nheaders, GH_STR("authorization"))) && h->value.n > 7 &&
               !strncasecmp(h->value.p, "Bearer ", 7)) {
        key = gh_str(h->value.p + 7, h->value.n - 7);
    }
    if (key.p) {
        const gh_conf_tenant_t *kt = store_key_tenant(c, key, scope);
        if (kt)
            return kt;
    }
    const gh_conf_tenant_t *open = NULL;
    int nopen = 0;
    for (uint32_t i = 0; i < c->ntenants; i++) {
        const gh_conf_tenant_t *t = &c->tenants[i];
        if (!t->flags.set)
            continue;
        if (!t->flags.napi_keys) {
            open = t;
            nopen++;
        }
        if (key.p)
            for (uint32_t k = 0; k < t->flags.napi_keys; k++)
                if (ct_eq(key.p, key.n, t->flags.api_keys[k], strlen(t->flags.api_keys[k])))
                    return t;
    }
    return !key.p && nopen == 1 ? open : NULL;
}

static void answer(gh_req_t *r, int status, out_t *o, const char *extra)
{
    if (o->oom) {
        RESPOND_LIT(r, 500, "{\"errorDetails\":\"out of memory\"}\n", NULL);
        return;
    }
    put(o, "\n", 1);
    gh_session_respond(r, status, "application/json", o->p, o->n, extra);
}

static void error_body(out_t *o, const char *key, const char *code, const char *details)
{
    puts_(o, "{");
    if (key) {
        puts_(o, "\"key\":");
        put_str(o, key);
        puts_(o, ",");
    }
    puts_(o, "\"errorCode\":\"");
    puts_(o, code);
    puts_(o, "\",\"errorDetails\":");
    put_str(o, details);
    puts_(o, "}");
}

/* One evaluation as OFREP writes it (success, or an error object). 1 when it is a success. */
static int put_result(out_t *o, const char *key, const gh_flag_result_t *res)
{
    if (res->error) {
        error_body(o, key, gh_flag_error_name(res->error), res->message[0] ? res->message : gh_flag_error_name(res->error));
        return 0;
    }
    puts_(o, "{\"key\":");
    put_str(o, key);
    puts_(o, ",\"reason\":\"");
    puts_(o, gh_flag_reason_name(res->reason));
    puts_(o, "\"");
    if (res->variant) {
        puts_(o, ",\"variant\":");
        put_str(o, res->variant);
    }
    if (res->value) {
        puts_(o, ",\"value\":");
        put_json(o, res->value);
    }
    puts_(o, ",\"metadata\":");
    if (res->metadata)
        put_json(o, res->metadata);
    else
        puts_(o, "{}");
    puts_(o, "}");
    return 1;
}

/* Per-tenant GCRA state (the TAT), by a hash of the tenant's name so that it outlives
 * configuration reloads: a fixed table, updated with compare-and-swap by every worker. */
#define LIMIT_SLOTS 4096
static struct {
    uint64_t key; /* 0: free */
    uint64_t tat;
} limit_tab[LIMIT_SLOTS];

int gh_flags_admit(const gh_conf_tenant_t *t, uint64_t *retry_after_s)
{
    if (!t->flags.limit_interval_ns)
        return 1;
    uint64_t key = gh_siphash24(0x6c696d6974ull, 0x666c616773ull, t->name, strlen(t->name)) | 1;
    uint32_t i = (uint32_t)key & (LIMIT_SLOTS - 1);
    for (uint32_t probe = 0; probe < 16; probe++, i = (i + 1) & (LIMIT_SLOTS - 1)) {
        uint64_t k = __atomic_load_n(&limit_tab[i].key, __ATOMIC_ACQUIRE), zero = 0;
        if (k != key && !(k == 0 && (__atomic_compare_exchange_n(&limit_tab[i].key, &zero, key, 0, __ATOMIC_ACQ_REL,
                                                                   __ATOMIC_ACQUIRE) ||
                                     zero == key)))
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        gh_gcra_t g = {.interval_ns = t->flags.limit_interval_ns, .tolerance_ns = t->flags.limit_tolerance_ns};
        for (;;) {
            uint64_t tat = __atomic_load_n(&limit_tab[i].tat, __ATOMIC_ACQUIRE), next = tat;
            gh_gcra_result_t res;
            gh_gcra_step(&next, &g, now, 1, 0, &res);
            if (!res.allowed) {
                *retry_after_s = (res.retry_after_ns + 999999999u) / 1000000000u;
                if (!*retry_after_s)
                    *retry_after_s = 1;
                return 0;
            }
            if (__atomic_compare_exchange_n(&limit_tab[i].tat, &tat, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return 1;
        }
    }
    return 1; /* the table is full around this key: fail open */
}

void gh_flags_exposure(uint32_t slot, const gh_conf_tenant_t *t, const char *key, const gh_flag_result_t *res,
                       const json_t *ctx)
{
    if (!res->variant || res->error || !gh_exp_running() || !gh_exp_flag_watched(t, key))
        return;
    const json_t *tk = json_object_get(ctx, "targetingKey");
    if (!json_is_string(tk) || !json_string_length(tk))
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    gh_exp_expose(slot, t, gh_exp_hash(key, strlen(key)), res->variant,
                  gh_exp_hash(json_string_value(tk), json_string_length(tk)),
                  (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* ---- POST /v1/events:publish (experiments' metric events), answered after the commit ---- */

static void publish_done(void *arg, int status, const char *body, size_t len)
{
    gh_session_answer_deferred((uint64_t)(uintptr_t)arg, status, status == 200 ? "application/json" : "application/problem+json",
                               body, len, NULL);
}

static void publish(gh_req_t *r, const gh_req_view_t *v, const gh_conf_tenant_t *t)
{
    char err[300], body[2400];
    int status = 0;
    /* the token first: the commit may answer before this returns */
    uint64_t token = gh_session_defer(r, 10000);
    if (gh_exp_publish(v->w->id, t, v->body, v->body_len, publish_done, (void *)(uintptr_t)token, &status, err,
                       sizeof err) == 0)
        return;
    char detail[1900];
    detail[gh_json_str(detail, sizeof detail - 1, gh_str(err, strlen(err)), 1)] = 0;
    int n = snprintf(body, sizeof body, "{\"type\":\"https://gatehouse.dev/problems/events-%s\",\"title\":\"%s\",\"status\":%d,\"detail\":%s}\n",
                     status == 413 ? "too-many" : status == 503 ? "disabled" : "invalid",
                     status == 413 ? "too many events" : status == 503 ? "experiments are not enabled" : "invalid events request",
                     status, detail);
    gh_session_answer_deferred(token, status, "application/problem+json", body, (size_t)GH_MIN(n, (int)sizeof body - 1), NULL);
}

int gh_flags_arena(gh_jl_arena_t *a)
{
    static gh_tlsbuf_t slot;
    char *mem = gh_tlsbuf(&slot, ARENA_SIZE);
    if (!mem)
        return -1;
    *a = (gh_jl_arena_t){mem, ARENA_SIZE, 0};
    return 0;
}

void gh_ofrep_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    const gh_conf_t *c = v->w->gen->conf;
    static const char base[] = "/ofrep/v1/evaluate/flags";
    size_t bl = sizeof base - 1;
    out_t o = {0};
    int events = gh_str_eq(m->path, GH_STR("/v1/events:publish"));
    if (!events && (m->path.n < bl || memcmp(m->path.p, base, bl) || (m->path.n > bl && m->path.p[bl] != '/'))) {
        RESPOND_LIT(r, 404, "{\"errorDetails\":\"not an OFREP path\"}\n", NULL);
        return;
    }
    if (m->method_id != GH_M_POST) {
        RESPOND_LIT(r, 405, "{\"errorDetails\":\"use POST\"}\n", "Allow: POST\r\n");
        return;
    }
    const gh_conf_tenant_t *t = gh_flags_tenant_of(c, m, events ? GH_SCOPE_EVENTS : GH_SCOPE_FLAGS);
    if (events && t) {
        publish(r, v, t);
        return;
    }
    if (!t) {
        RESPOND_LIT(r, 401, "{\"errorDetails\":\"missing or unknown API key\"}\n", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    uint64_t retry;
    if (!gh_flags_admit(t, &retry)) {
        char hdr[48];
        snprintf(hdr, sizeof hdr, "Retry-After: %llu\r\n", (unsigned long long)retry);
        RESPOND_LIT(r, 429, "{\"errorDetails\":\"rate limit exceeded\"}\n", hdr);
        return;
    }
    int bulk = m->path.n <= bl + 1;
    char key[512] = "";
    if (!bulk) {
        gh_str_t k = gh_str(m->path.p + bl + 1, m->path.n - bl - 1);
        if (k.n >= sizeof key) {
            error_body(&o, NULL, "FLAG_NOT_FOUND", "flag key too long");
            answer(r, 404, &o, NULL);
            free(o.p);
            return;
        }
        /* the key is percent-encoded in the path (SDKs use encodeURIComponent) */
        size_t n = 0;
        for (size_t i = 0; i < k.n; i++) {
            int hi = k.p[i] == '%' && i + 2 < k.n ? hexv(k.p[i + 1]) : -1;
            int lo = hi >= 0 ? hexv(k.p[i + 2]) : -1;
            if (hi >= 0 && lo >= 0) {
                key[n++] = (char)(hi * 16 + lo);
                i += 2;
            } else {
                key[n++] = k.p[i];
            }
        }
        key[n] = 0;
        if (memchr(key, 0, n)) { /* %00: no flag has it */
            error_body(&o, NULL, "FLAG_NOT_FOUND", "no flag key contains a NUL byte");
            answer(r, 404, &o, NULL);
            free(o.p);
            return;
        }
    }
    /* the context */
    json_t *doc = NULL;
    const json_t *ctx = NULL;
    if (v->body_len) {
        json_error_t je;
        doc = json_loadb(v->body, v->body_len, JSON_REJECT_DUPLICATES, &je);
        if (!doc) {
            char d[256];
            snprintf(d, sizeof d, "the body is not JSON: %.160s (line %d, column %d)", je.text, je.line, je.column);
            error_body(&o, bulk ? NULL : key, "PARSE_ERROR", d);
            answer(r, 400, &o, NULL);
            free(o.p);
            return;
        }
        ctx = json_object_get(doc, "context");
        if (!json_is_object(doc) || (ctx && !json_is_object(ctx) && !json_is_null(ctx))) {
            error_body(&o, bulk ? NULL : key, "INVALID_CONTEXT", "the context must be a JSON object");
            answer(r, 400, &o, NULL);
            json_decref(doc);
            free(o.p);
            return;
        }
        if (json_is_null(ctx))
            ctx = NULL;
    }
    gh_jl_arena_t arena;
    if (gh_flags_arena(&arena) < 0) {
        json_decref(doc);
        RESPOND_LIT(r, 500, "{\"errorDetails\":\"out of memory\"}\n", NULL);
        return;
    }
    int64_t now = GH_JL_NOW; /* the clock only for rules that read $flagd.timestamp */
    const gh_flagset_t *set = t->flags.set;
    gh_flag_result_t res;
    if (!bulk) {
        gh_flags_eval(set, gh_str(key, strlen(key)), ctx, GH_FT_ANY, now, &arena, &res);
        gh_flags_exposure(v->w->id, t, key, &res, ctx);
        int ok = put_result(&o, key, &res);
        answer(r, ok ? 200 : res.error == GH_FE_FLAG_NOT_FOUND ? 404 : 400, &o, NULL);
    } else {
        puts_(&o, "{\"flags\":[");
        int first = 1;
        for (uint32_t i = 0; i < gh_flags_count(set); i++) {
            const char *k = gh_flags_key(set, i);
            gh_flags_eval(set, gh_str(k, strlen(k)), ctx, GH_FT_ANY, now, &arena, &res);
            if (res.reason == GH_FR_DISABLED)
                continue; /* as flagd's bulk evaluation: disabled flags are left out */
            if (!first)
                puts_(&o, ",");
            first = 0;
            put_result(&o, k, &res);
        }
        puts_(&o, "]}");
        /* ETag: a hash of the answer; a client that has it gets 304 */
        char etag[40], hdr[64];
        uint64_t h = o.oom ? 0 : gh_siphash24(0x6f66726570ull, 0x65746167ull, o.p, o.n);
        snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)h);
        snprintf(hdr, sizeof hdr, "ETag: %s\r\n", etag);
        const gh_h1_header_t *inm = gh_h1_find(m->headers, m->nheaders, GH_STR("if-none-match"));
        if (!o.oom && inm && gh_h1_has_token(inm->value, gh_str(etag, strlen(etag))))
            gh_session_respond(r, 304, NULL, NULL, 0, hdr);
        else
            answer(r, 200, &o, hdr);
    }
    json_decref(doc);
    free(o.p);
}
