/* grpc.c: see grpc.h. */
#include "flags/grpc.h"
#include "grpc/pb.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "flagd/evaluation/v2/evaluation.pb-c.h"
#include "flags/flags.h"
#include "flags/ofrep.h"

/* gRPC status codes */
enum { S_OK = 0, S_UNKNOWN = 2, S_INVALID_ARGUMENT = 3, S_NOT_FOUND = 5, S_RESOURCE_EXHAUSTED = 8, S_UNIMPLEMENTED = 12, S_INTERNAL = 13,
       S_UNAVAILABLE = 14, S_DATA_LOSS = 15, S_UNAUTHENTICATED = 16 };

enum { M_BOOL = 0, M_STRING, M_FLOAT, M_INT, M_OBJECT, M_ALL, M_EVENTS, M_NONE };
static const struct {
    const char *name;
    int type;
} methods[] = {
    [M_BOOL] = {"ResolveBoolean", GH_FT_BOOL}, [M_STRING] = {"ResolveString", GH_FT_STRING},
    [M_FLOAT] = {"ResolveFloat", GH_FT_FLOAT}, [M_INT] = {"ResolveInt", GH_FT_INT},
    [M_OBJECT] = {"ResolveObject", GH_FT_OBJECT}, [M_ALL] = {"ResolveAll", GH_FT_ANY},
    [M_EVENTS] = {"EventStream", GH_FT_ANY},
};

#define PNEW(pl, T, init)                      \
    ({                                         \
        T *p_ = gh_pb_alloc((pl), sizeof(T));  \
        if (p_)                                \
            *p_ = (T)init;                     \
        p_;                                    \
    })

/* ---- the nesting of a request, checked on the wire before protobuf-c recurses into it ---- */

typedef struct {
    const uint8_t *p, *e;
} wire_t;

/* Walk the fields of one message; sub(field, body, depth) for length-delimited fields. */
typedef int (*sub_fn)(uint32_t field, wire_t body, int depth);

static int walk(wire_t w, int depth, sub_fn sub)
{
    while (w.p < w.e) {
        uint32_t field;
        const uint8_t *body = NULL;
        size_t len = 0;
        int k = gh_pb_next(&w.p, w.e, &field, &body, &len);
        if (k < 0 || (k && sub && sub(field, (wire_t){body, body + len}, depth) < 0))
            return -1;
    }
    return 0;
}

static int in_struct(uint32_t field, wire_t body, int depth);
static int in_value_list(uint32_t field, wire_t body, int depth);
static __thread int nul_seen; /* a context string or key held a NUL byte (refused: C strings would cut it) */

static int in_value(uint32_t field, wire_t body, int depth)
{
    if (field == 3 && memchr(body.p, 0, (size_t)(body.e - body.p))) /* string_value */
        return nul_seen = 1, -1;
    if (field == 5) /* struct_value */
        return depth >= GH_GRPC_MAX_DEPTH ? -1 : walk(body, depth + 1, in_struct);
    if (field == 6) /* list_value: repeated Value values = 1 */
        return depth >= GH_GRPC_MAX_DEPTH ? -1 : walk(body, depth + 1, in_value_list);
    return 0;
}
static int in_value_list(uint32_t field, wire_t body, int depth)
{
    return field == 1 ? walk(body, depth, in_value) : 0;
}
static int in_entry(uint32_t field, wire_t body, int depth)
{
    if (field == 1 && memchr(body.p, 0, (size_t)(body.e - body.p))) /* the key */
        return nul_seen = 1, -1;
    return field == 2 ? walk(body, depth, in_value) : 0;
}
static int in_struct(uint32_t field, wire_t body, int depth)
{
    return field == 1 ? walk(body, depth, in_entry) : 0;
}
static int in_request(uint32_t field, wire_t body, int depth)
{
    return field == 2 ? walk(body, 1, in_struct) : 0;
}
static int in_all_request(uint32_t field, wire_t body, int depth)
{
    return field == 1 ? walk(body, 1, in_struct) : 0;
}

/* The wire length of the last field 1 (flag_key) of a well-formed message, or -1 (walk()'s
 * callback; the message was walked once already, so it is well formed). */
static __thread int64_t key_len;
static int note_key(uint32_t field, wire_t body, int depth)
{
    if (field == 1)
        key_len = body.e - body.p;
    return 0;
}

static int64_t key_wire_len(const uint8_t *p, size_t n)
{
    key_len = -1;
    return walk((wire_t){p, p + n}, 0, note_key) < 0 ? -1 : key_len;
}

int gh_grpc_parse_request(const uint8_t *p, size_t n, int with_key, char **key, json_t **ctx, char *err, size_t errcap)
{
    *ctx = NULL;
    if (key)
        *key = NULL;
    nul_seen = 0;
    if (walk((wire_t){p, p + n}, 0, with_key ? in_request : in_all_request) < 0) {
        if (nul_seen)
            snprintf(err, errcap, "INVALID_CONTEXT: a context string holds a NUL byte");
        else
            snprintf(err, errcap, "the request is not a valid message (or its context nests deeper than %d)",
                     GH_GRPC_MAX_DEPTH);
        return -1;
    }
    /* every Resolve*Request is {string flag_key = 1; Struct context = 2;}: one descriptor reads them */
    Google__Protobuf__Struct *sctx = NULL;
    Flagd__Evaluation__V2__ResolveBooleanRequest *rq = NULL;
    Flagd__Evaluation__V2__ResolveAllRequest *ra = NULL;
    if (with_key) {
        rq = flagd__evaluation__v2__resolve_boolean_request__unpack(NULL, n, p);
        sctx = rq ? rq->context : NULL;
    } else {
        ra = flagd__evaluation__v2__resolve_all_request__unpack(NULL, n, p);
        sctx = ra ? ra->context : NULL;
    }
    int rc = 0;
    if (!rq && !ra) {
        snprintf(err, errcap, "the request is not a valid message");
        rc = -1;
    } else {
        if (sctx && !(*ctx = gh_pb_struct_json(sctx, 0))) {
            snprintf(err, errcap, "the context holds a string that is not UTF-8");
            rc = -1;
        }
        if (!rc && key && rq && rq->flag_key && (int64_t)strlen(rq->flag_key) != GH_MAX(key_wire_len(p, n), 0)) {
            snprintf(err, errcap, "FLAG_NOT_FOUND: no flag key contains a NUL byte");
            rc = -2;
        }
        if (!rc && key && rq && !(*key = strdup(rq->flag_key ? rq->flag_key : ""))) {
            snprintf(err, errcap, "out of memory");
            rc = -1;
        }
    }
    if (rc < 0) {
        json_decref(*ctx);
        *ctx = NULL;
    }
    if (rq)
        flagd__evaluation__v2__resolve_boolean_request__free_unpacked(rq, NULL);
    if (ra)
        flagd__evaluation__v2__resolve_all_request__free_unpacked(ra, NULL);
    return rc;
}

/* ---- answers ---- */


/* A failed call: a trailers-only answer. */
static void fail(gh_req_t *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(gh_req_t *r, int code, const char *fmt, ...)
{
    char msg[512], lines[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gh_grpc_status_lines(lines, sizeof lines, code, msg, NULL);
    gh_session_respond(r, 200, "application/grpc", NULL, 0, lines);
}


static void ok_unary(gh_req_t *r, const ProtobufCMessage *m)
{
    uint8_t *b;
    size_t n;
    if (gh_grpc_frame(m, &b, &n) < 0) {
        fail(r, S_INTERNAL, "out of memory");
        return;
    }
    if (gh_session_stream_start(r, "application/grpc", NULL, NULL, NULL, 0) < 0) {
        free(b);
        fail(r, S_UNAVAILABLE, "the server is shutting down");
        return;
    }
    int rc = gh_session_stream_send(r, b, n);
    free(b);
    char lines[64];
    gh_grpc_status_lines(lines, sizeof lines, rc < 0 ? S_INTERNAL : S_OK, rc < 0 ? "out of memory" : NULL, NULL);
    gh_session_stream_end(r, lines);
}

static int status_of(int error)
{
    switch (error) {
    case GH_FE_FLAG_NOT_FOUND:
        return S_NOT_FOUND;
    case GH_FE_TYPE_MISMATCH:
    case GH_FE_INVALID_CONTEXT:
    case GH_FE_TARGETING_KEY_MISSING:
        return S_INVALID_ARGUMENT;
    case GH_FE_PARSE_ERROR:
        return S_DATA_LOSS;
    default:
        return S_UNKNOWN;
    }
}

static void resolve_one(gh_req_t *r, uint32_t slot, int method, int v2, const gh_conf_tenant_t *t, const char *key,
                        const json_t *ctx)
{
    gh_jl_arena_t arena;
    if (gh_flags_arena(&arena) < 0) {
        fail(r, S_INTERNAL, "out of memory");
        return;
    }
    gh_flag_result_t res;
    gh_flags_eval(t->flags.set, gh_str(key, strlen(key)), ctx, methods[method].type, GH_JL_NOW, &arena, &res);
    gh_flags_exposure(slot, t, key, &res, ctx);
    if (res.reason == GH_FR_DISABLED) { /* v2: a success with the caller's default; v1: flagd's old answer */
        if (!v2) {
            fail(r, S_NOT_FOUND, "FLAG_DISABLED: flag '%s' is disabled", key);
            return;
        }
        res.error = GH_FE_NONE;
        res.value = NULL;
        res.variant = NULL;
    }
    if (res.error) {
        fail(r, status_of(res.error), "%s: %s", gh_flag_error_name(res.error),
             res.message[0] ? res.message : gh_flag_error_name(res.error));
        return;
    }
    gh_pb_pool_t pl = {0};
    char *reason = (char *)gh_flag_reason_name(res.reason), *variant = (char *)res.variant;
    Google__Protobuf__Struct *meta = res.metadata ? gh_pb_struct(&pl, res.metadata) : NULL;
    const json_t *jv = res.value;
    /* the five responses differ in the value's type (and so in layout): each filled as itself */
#define FILL(msg, T, VALUE)                                                       \
    do {                                                                          \
        (msg).reason = reason;                                                    \
        (msg).metadata = meta;                                                    \
        if (variant) {                                                            \
            (msg)._variant_case = FLAGD__EVALUATION__V2__RESOLVE_##T##_RESPONSE___VARIANT_VARIANT; \
            (msg).variant = variant;                                              \
        }                                                                         \
        if (jv) {                                                                 \
            (msg)._value_case = FLAGD__EVALUATION__V2__RESOLVE_##T##_RESPONSE___VALUE_VALUE; \
            (msg).value = (VALUE);                                                \
        }                                                                         \
    } while (0)
    union {
        ProtobufCMessage base;
        Flagd__Evaluation__V2__ResolveBooleanResponse b;
        Flagd__Evaluation__V2__ResolveStringResponse s;
        Flagd__Evaluation__V2__ResolveFloatResponse f;
        Flagd__Evaluation__V2__ResolveIntResponse i;
        Flagd__Evaluation__V2__ResolveObjectResponse o;
    } u;
    switch (method) {
    case M_BOOL:
        u.b = (Flagd__Evaluation__V2__ResolveBooleanResponse)FLAGD__EVALUATION__V2__RESOLVE_BOOLEAN_RESPONSE__INIT;
        FILL(u.b, BOOLEAN, json_is_true(jv));
        break;
    case M_STRING:
        u.s = (Flagd__Evaluation__V2__ResolveStringResponse)FLAGD__EVALUATION__V2__RESOLVE_STRING_RESPONSE__INIT;
        FILL(u.s, STRING, (char *)json_string_value(jv));
        break;
    case M_FLOAT:
        u.f = (Flagd__Evaluation__V2__ResolveFloatResponse)FLAGD__EVALUATION__V2__RESOLVE_FLOAT_RESPONSE__INIT;
        FILL(u.f, FLOAT, json_number_value(jv));
        break;
    case M_INT: {
        /* an integer as is; a real toward zero, as Go's int64(float64), saturated */
        double d = json_number_value(jv);
        int64_t iv = json_is_integer(jv) ? (int64_t)json_integer_value(jv)
                     : d >= 9.2233720368547758e18  ? INT64_MAX
                     : d <= -9.2233720368547758e18 ? INT64_MIN
                                                   : (int64_t)d;
        u.i = (Flagd__Evaluation__V2__ResolveIntResponse)FLAGD__EVALUATION__V2__RESOLVE_INT_RESPONSE__INIT;
        FILL(u.i, INT, iv);
        break;
    }
    default:
        u.o = (Flagd__Evaluation__V2__ResolveObjectResponse)FLAGD__EVALUATION__V2__RESOLVE_OBJECT_RESPONSE__INIT;
        FILL(u.o, OBJECT, gh_pb_struct(&pl, jv));
        break;
    }
#undef FILL
    if (pl.oom)
        fail(r, S_INTERNAL, "out of memory");
    else
        ok_unary(r, &u.base);
    gh_pb_pool_free(&pl);
}

static void resolve_all(gh_req_t *r, const gh_conf_tenant_t *t, const json_t *ctx)
{
    gh_jl_arena_t arena;
    if (gh_flags_arena(&arena) < 0) {
        fail(r, S_INTERNAL, "out of memory");
        return;
    }
    const gh_flagset_t *set = t->flags.set;
    uint32_t n = gh_flags_count(set);
    gh_pb_pool_t pl = {0};
    Flagd__Evaluation__V2__ResolveAllResponse resp = FLAGD__EVALUATION__V2__RESOLVE_ALL_RESPONSE__INIT;
    resp.flags = gh_pb_alloc(&pl, (n ? n : 1) * sizeof *resp.flags);
    for (uint32_t i = 0; resp.flags && i < n; i++) {
        const char *k = gh_flags_key(set, i);
        gh_flag_result_t res;
        gh_flags_eval(set, gh_str(k, strlen(k)), ctx, GH_FT_ANY, GH_JL_NOW, &arena, &res);
        if (res.error || res.reason == GH_FR_DISABLED)
            continue; /* as flagd: what cannot be evaluated is left out */
        Flagd__Evaluation__V2__AnyFlag *f = PNEW(&pl, Flagd__Evaluation__V2__AnyFlag, FLAGD__EVALUATION__V2__ANY_FLAG__INIT);
        Flagd__Evaluation__V2__ResolveAllResponse__FlagsEntry *e = PNEW(
            &pl, Flagd__Evaluation__V2__ResolveAllResponse__FlagsEntry,
            FLAGD__EVALUATION__V2__RESOLVE_ALL_RESPONSE__FLAGS_ENTRY__INIT);
        if (!f || !e)
            break;
        f->reason = (char *)gh_flag_reason_name(res.reason);
        if (res.variant) {
            f->_variant_case = FLAGD__EVALUATION__V2__ANY_FLAG___VARIANT_VARIANT;
            f->variant = (char *)res.variant;
        }
        f->metadata = res.metadata ? gh_pb_struct(&pl, res.metadata) : NULL;
        const json_t *v = res.value;
        if (json_is_boolean(v)) {
            f->value_case = FLAGD__EVALUATION__V2__ANY_FLAG__VALUE_BOOL_VALUE;
            f->bool_value = json_is_true(v);
        } else if (json_is_string(v)) {
            f->value_case = FLAGD__EVALUATION__V2__ANY_FLAG__VALUE_STRING_VALUE;
            f->string_value = (char *)json_string_value(v);
        } else if (json_is_number(v)) {
            f->value_case = FLAGD__EVALUATION__V2__ANY_FLAG__VALUE_DOUBLE_VALUE;
            f->double_value = json_number_value(v);
        } else if (json_is_object(v)) {
            f->value_case = FLAGD__EVALUATION__V2__ANY_FLAG__VALUE_OBJECT_VALUE;
            f->object_value = gh_pb_struct(&pl, v);
        }
        e->key = (char *)k;
        e->value = f;
        resp.flags[resp.n_flags++] = e;
    }
    if (pl.oom || !resp.flags)
        fail(r, S_INTERNAL, "out of memory");
    else
        ok_unary(r, &resp.base);
    gh_pb_pool_free(&pl);
}

/* ---- EventStream ---- */

typedef struct {
    char tenant[128];
} watch_t;

static const gh_conf_tenant_t *tenant_named(const gh_conf_t *c, const char *name)
{
    for (uint32_t i = 0; i < c->ntenants; i++)
        if (!strcmp(c->tenants[i].name, name))
            return &c->tenants[i];
    return NULL;
}

/* Send one EventStreamResponse {type, data}. -1: the stream is over. */
static int send_event(gh_req_t *r, const char *type, const json_t *data)
{
    gh_pb_pool_t pl = {0};
    Flagd__Evaluation__V2__EventStreamResponse ev = FLAGD__EVALUATION__V2__EVENT_STREAM_RESPONSE__INIT;
    ev.type = (char *)type;
    ev.data = data ? gh_pb_struct(&pl, data) : NULL;
    uint8_t *b = NULL;
    size_t n = 0;
    int rc = pl.oom || gh_grpc_frame(&ev.base, &b, &n) < 0 ? -1 : gh_session_stream_send(r, b, n);
    free(b);
    gh_pb_pool_free(&pl);
    return rc;
}

static void changes_add(json_t *flags, const char *key, const char *type, const char *source)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", type, "source", source, "flagKey", key);
    if (o)
        json_object_set_new(flags, key, o);
}

/* The tenant's flags as a change event describes them: {flags: {KEY: {...}}}, or NULL when
 * nothing changed for it. */
static json_t *changes(const gh_conf_tenant_t *old, const gh_conf_tenant_t *now)
{
    const gh_flagset_t *a = old ? old->flags.set : NULL, *b = now ? now->flags.set : NULL;
    if (a == b)
        return NULL;
    const char *source = now && now->flags.file ? now->flags.file : old && old->flags.file ? old->flags.file : "inline";
    json_t *flags = json_object();
    if (!flags)
        return NULL;
    static const char *names[] = {[GH_FLAG_UPDATED] = "update", [GH_FLAG_ADDED] = "write", [GH_FLAG_DELETED] = "delete"};
    for (uint32_t i = 0; i < gh_flags_count(b); i++) {
        const char *k = gh_flags_key(b, i);
        int ch = gh_flags_changed(a, b, k);
        if (ch != GH_FLAG_SAME)
            changes_add(flags, k, names[ch], source);
    }
    for (uint32_t i = 0; i < gh_flags_count(a); i++) {
        const char *k = gh_flags_key(a, i);
        if (gh_flags_changed(a, b, k) == GH_FLAG_DELETED)
            changes_add(flags, k, names[GH_FLAG_DELETED], source);
    }
    if (!json_object_size(flags)) {
        json_decref(flags);
        return NULL;
    }
    return json_pack("{s:o}", "flags", flags);
}

static void on_stream(gh_req_t *r, int event)
{
    watch_t *wt = gh_session_stream_ctx(r);
    char lines[256];
    switch (event) {
    case GH_STREAM_TICK:
        if (send_event(r, "keep_alive", NULL) < 0)
            goto unavailable;
        return;
    case GH_STREAM_CONF: {
        const gh_conf_t *before = gh_session_stream_conf(r);
        gh_session_stream_regen(r);
        const gh_conf_t *after = gh_session_stream_conf(r);
        const gh_conf_tenant_t *now = tenant_named(after, wt->tenant);
        if (!now || !now->flags.set) {
            gh_grpc_status_lines(lines, sizeof lines, S_UNAVAILABLE, "the tenant's flags were removed", NULL);
            gh_session_stream_end(r, lines);
            return;
        }
        json_t *data = changes(tenant_named(before, wt->tenant), now);
        int rc = data ? send_event(r, "configuration_change", data) : 0;
        json_decref(data);
        if (rc < 0)
            goto unavailable;
        return;
    }
    case GH_STREAM_DRAIN:
    default:
        gh_grpc_status_lines(lines, sizeof lines, S_UNAVAILABLE, "the server is shutting down", NULL);
        gh_session_stream_end(r, lines);
        return;
    }
unavailable: /* the client is too far behind (or no memory): it reconnects and starts over */
    gh_grpc_status_lines(lines, sizeof lines, S_UNAVAILABLE, "the event stream fell behind", NULL);
    gh_session_stream_end(r, lines);
}

static void event_stream(gh_req_t *r, const gh_conf_t *c, const gh_conf_tenant_t *t)
{
    watch_t *wt = calloc(1, sizeof *wt);
    if (!wt) {
        fail(r, S_INTERNAL, "out of memory");
        return;
    }
    snprintf(wt->tenant, sizeof wt->tenant, "%s", t->name);
    if (gh_session_stream_start(r, "application/grpc", NULL, on_stream, wt, c->flagd_grpc_keepalive) < 0) {
        free(wt);
        fail(r, S_UNAVAILABLE, "the server is shutting down");
        return;
    }
    if (send_event(r, "provider_ready", NULL) < 0) {
        char lines[128];
        gh_grpc_status_lines(lines, sizeof lines, S_INTERNAL, "out of memory", NULL);
        gh_session_stream_end(r, lines);
    }
}

/* ---- the handler ---- */

void gh_grpc_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    const gh_conf_t *c = v->w->gen->conf;
    const gh_h1_header_t *ct = gh_h1_find(m->headers, m->nheaders, GH_STR("content-type"));
    if (m->method_id != GH_M_POST || !ct || ct->value.n < 16 || strncasecmp(ct->value.p, "application/grpc", 16)) {
        /* not gRPC at all: HTTP's answer (the gRPC spec's 415 for a wrong content type) */
        gh_session_respond(r, m->method_id != GH_M_POST ? 405 : 415, "text/plain; charset=utf-8",
                           "a gRPC service: POST application/grpc\n", 38, m->method_id != GH_M_POST ? "Allow: POST\r\n" : NULL);
        return;
    }
    /* /flagd.evaluation.v1.Service/Method or .v2. */
    static const char pre[] = "/flagd.evaluation.v";
    int v2 = 0, method = M_NONE;
    gh_str_t path = m->path;
    if (path.n > sizeof pre + 9 && !memcmp(path.p, pre, sizeof pre - 1) &&
        (path.p[sizeof pre - 1] == '1' || path.p[sizeof pre - 1] == '2') &&
        !memcmp(path.p + sizeof pre, ".Service/", 9)) {
        v2 = path.p[sizeof pre - 1] == '2';
        gh_str_t name = gh_str(path.p + sizeof pre + 9, path.n - sizeof pre - 9);
        for (int i = 0; i < M_NONE; i++)
            if (gh_str_eq(name, gh_str(methods[i].name, strlen(methods[i].name))))
                method = i;
    }
    if (method == M_NONE) {
        fail(r, S_UNIMPLEMENTED, "unknown method %.*s", (int)GH_MIN(path.n, 200), path.p);
        return;
    }
    /* one uncompressed message */
    const uint8_t *b = (const uint8_t *)v->body;
    if (v->body_len < 5) {
        fail(r, S_INVALID_ARGUMENT, "the request holds no message");
        return;
    }
    if (b[0] & 1) {
        fail(r, S_UNIMPLEMENTED, "compressed messages are not supported (send grpc-encoding identity)");
        return;
    }
    size_t len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    if (b[0] != 0 || len != v->body_len - 5) {
        fail(r, S_INVALID_ARGUMENT, "the request is not exactly one gRPC message");
        return;
    }
    const gh_conf_tenant_t *t = gh_flags_tenant_of(c, m, GH_SCOPE_FLAGS);
    if (!t) {
        fail(r, S_UNAUTHENTICATED, "missing or unknown API key (x-api-key or authorization: Bearer)");
        return;
    }
    uint64_t retry;
    if (method != M_EVENTS && !gh_flags_admit(t, &retry)) {
        fail(r, S_RESOURCE_EXHAUSTED, "rate limit exceeded: retry in %llu s", (unsigned long long)retry);
        return;
    }
    if (method == M_EVENTS) {
        event_stream(r, c, t);
        return;
    }
    char err[160], *key = NULL;
    json_t *ctx = NULL;
    int prc = gh_grpc_parse_request(b + 5, len, method != M_ALL, method != M_ALL ? &key : NULL, &ctx, err, sizeof err);
    if (prc < 0) {
        fail(r, prc == -2 ? S_NOT_FOUND : S_INVALID_ARGUMENT, "%s", err);
        return;
    }
    if (method == M_ALL)
        resolve_all(r, t, ctx);
    else
        resolve_one(r, v->w->id, method, v2, t, key, ctx);
    json_decref(ctx);
    free(key);
}
