/* grpc_admin.c: see grpc_admin.h. */
#include "admin/grpc_admin.h"
#include "grpc/pb.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "gatehouse/admin/v1/admin.pb-c.h"

/* gRPC status codes */
enum { S_OK = 0, S_INVALID_ARGUMENT = 3, S_NOT_FOUND = 5, S_ALREADY_EXISTS = 6, S_PERMISSION_DENIED = 7,
       S_RESOURCE_EXHAUSTED = 8, S_FAILED_PRECONDITION = 9, S_ABORTED = 10, S_UNIMPLEMENTED = 12, S_INTERNAL = 13,
       S_UNAVAILABLE = 14, S_UNAUTHENTICATED = 16 };

#define MAX_NAME 128 /* names in the configuration (and REST path segments) */
#define SERVICE "/gatehouse.admin.v1.AdminService/"

/* ---- resources and methods ---- */

enum { K_TENANT, K_SITE, K_ROUTE, K_UPSTREAM, K_FLAG, K_EXPERIMENT, K_PROTECTION, K_CACHE, K_KEY, K_NONE };
static const struct {
    const char *seg;    /* the REST path segment */
    const char *id;     /* the item's key in its message and document (NULL: a singleton) */
    const char *field;  /* the resource's field in Create/Update requests */
    const char *plural; /* the list field of List*Response */
    const char *what;
} kinds[] = {
    [K_TENANT] = {"tenants", "name", "tenant", "tenants", "tenant"},
    [K_SITE] = {"sites", "name", "site", "sites", "site"},
    [K_ROUTE] = {"routes", "name", "route", "routes", "route"},
    [K_UPSTREAM] = {"upstreams", "name", "upstream", "upstreams", "upstream"},
    [K_FLAG] = {"flags", "key", "flag", "flags", "flag"},
    [K_EXPERIMENT] = {"experiments", "id", "experiment", "experiments", "experiment"},
    [K_PROTECTION] = {"protection", NULL, "protection", NULL, "protection"},
    [K_CACHE] = {"cache", NULL, "cache_policy", NULL, "cache policy"},
    [K_KEY] = {"keys", "id", "api_key", "api_keys", "key"},
    [K_NONE] = {NULL, NULL, NULL, NULL, NULL},
};

enum { OP_LIST, OP_GET, OP_CREATE, OP_UPDATE, OP_DELETE, OP_KEY_CREATE, OP_PURGE, OP_AUDIT, OP_VERSIONS, OP_VERSION,
       OP_DIFF, OP_ROLLBACK };
#define CRUD(S, P, K) \
    {"List" P, OP_LIST, K}, {"Get" S, OP_GET, K}, {"Create" S, OP_CREATE, K}, {"Update" S, OP_UPDATE, K}, {"Delete" S, OP_DELETE, K}
static const struct {
    const char *name;
    int op, kind;
} methods[] = {
    CRUD("Tenant", "Tenants", K_TENANT),
    CRUD("Site", "Sites", K_SITE),
    CRUD("Route", "Routes", K_ROUTE),
    CRUD("Upstream", "Upstreams", K_UPSTREAM),
    CRUD("Flag", "Flags", K_FLAG),
    CRUD("Experiment", "Experiments", K_EXPERIMENT),
    {"GetProtection", OP_GET, K_PROTECTION},
    {"UpdateProtection", OP_UPDATE, K_PROTECTION},
    {"DeleteProtection", OP_DELETE, K_PROTECTION},
    {"GetCachePolicy", OP_GET, K_CACHE},
    {"UpdateCachePolicy", OP_UPDATE, K_CACHE},
    {"DeleteCachePolicy", OP_DELETE, K_CACHE},
    {"ListApiKeys", OP_LIST, K_KEY},
    {"GetApiKey", OP_GET, K_KEY},
    {"CreateApiKey", OP_KEY_CREATE, K_KEY},
    {"DeleteApiKey", OP_DELETE, K_KEY},
    {"Purge", OP_PURGE, K_NONE},
    {"ListAudit", OP_AUDIT, K_NONE},
    {"ListVersions", OP_VERSIONS, K_NONE},
    {"GetVersion", OP_VERSION, K_NONE},
    {"DiffVersions", OP_DIFF, K_NONE},
    {"RollbackVersion", OP_ROLLBACK, K_NONE},
};
#define NMETHODS (int)(sizeof methods / sizeof *methods)

static const ProtobufCMethodDescriptor *method_desc(int m)
{
    return protobuf_c_service_descriptor_get_method_by_name(&gatehouse__admin__v1__admin_service__descriptor,
                                                            methods[m].name);
}

int gh_admin_grpc_method(const char *name, size_t n)
{
    for (int i = 0; i < NMETHODS; i++)
        if (strlen(methods[i].name) == n && !memcmp(methods[i].name, name, n))
            return method_desc(i) ? i : -1;
    return -1;
}

/* ---- a growing string ---- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sb_t;

static void sb_put(sb_t *s, const char *p, size_t n)
{
    if (s->oom)
        return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = (s->n + n + 1) * 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = 1;
            return;
        }
        s->p = q, s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_str(sb_t *s, const char *p) { sb_put(s, p, strlen(p)); }

/* percent-encoded but for unreserved bytes */
static void sb_enc(sb_t *s, const char *p)
{
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (isalnum(ch) || strchr("-._~", ch)) {
            sb_put(s, p, 1);
        } else {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", ch);
            sb_put(s, e, 3);
        }
    }
}

/* "?name=value" or "&name=value" */
static void sb_q(sb_t *s, const char *name, const char *value)
{
    sb_str(s, strchr(s->p ? s->p : "", '?') ? "&" : "?");
    sb_str(s, name);
    sb_str(s, "=");
    sb_enc(s, value);
}

/* ---- JSON <-> google.protobuf.Struct / Value ---- */

/* ---- the request on the wire: nesting and NUL bytes, before protobuf-c recurses into it ---- */

typedef struct {
    const uint8_t *p, *e;
} wire_t;

/* -1: malformed, too deep, or a string (a field of string type) holding a NUL byte */
static int check_wire(const ProtobufCMessageDescriptor *d, wire_t w, int depth)
{
    if (depth > GH_AGRPC_MAX_DEPTH)
        return -1;
    while (w.p < w.e) {
        uint32_t field;
        const uint8_t *p = NULL;
        size_t v = 0;
        int k = gh_pb_next(&w.p, w.e, &field, &p, &v);
        if (k < 0)
            return -1;
        if (!k)
            continue;
        const ProtobufCFieldDescriptor *f = d ? protobuf_c_message_descriptor_get_field(d, field) : NULL;
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE && check_wire(f->descriptor, (wire_t){p, p + v}, depth + 1) < 0)
            return -1;
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, v))
            return -1;
    }
    return 0;
}

/* ---- reading a request message by field name ---- */

static const ProtobufCFieldDescriptor *fld(const ProtobufCMessage *m, const char *name, int type)
{
    const ProtobufCFieldDescriptor *f = m ? protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name) : NULL;
    if (!f || f->type != (ProtobufCType)type)
        return NULL;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF && *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
        return NULL; /* another member (or none) of its oneof is set */
    return f;
}

static const char *get_str(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = fld(m, name, PROTOBUF_C_TYPE_STRING);
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
        return "";
    const char *s = *(char *const *)((const char *)m + f->offset);
    return s ? s : "";
}

static int get_bool(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = fld(m, name, PROTOBUF_C_TYPE_BOOL);
    return f && f->label != PROTOBUF_C_LABEL_REPEATED && *(const protobuf_c_boolean *)((const char *)m + f->offset);
}

/* int32 or int64; *present: the field is set (a oneof member) or has no presence */
static int64_t get_int(const ProtobufCMessage *m, const char *name, int *present)
{
    const ProtobufCFieldDescriptor *f = fld(m, name, PROTOBUF_C_TYPE_INT64);
    if (present)
        *present = 0;
    if (f && f->label != PROTOBUF_C_LABEL_REPEATED) {
        if (present)
            *present = 1;
        return *(const int64_t *)((const char *)m + f->offset);
    }
    f = fld(m, name, PROTOBUF_C_TYPE_INT32);
    if (f && f->label != PROTOBUF_C_LABEL_REPEATED) {
        if (present)
            *present = 1;
        return *(const int32_t *)((const char *)m + f->offset);
    }
    return 0;
}

static const ProtobufCMessage *get_msg(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f = fld(m, name, PROTOBUF_C_TYPE_MESSAGE);
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED)
        return NULL;
    return *(ProtobufCMessage *const *)((const char *)m + f->offset);
}

/* A repeated string field as a JSON array (NULL: not UTF-8, or no memory). */
static json_t *get_strs(const ProtobufCMessage *m, const char *name)
{
    json_t *a = json_array();
    const ProtobufCFieldDescriptor *f = fld(m, name, PROTOBUF_C_TYPE_STRING);
    if (!a || !f || f->label != PROTOBUF_C_LABEL_REPEATED)
        return a;
    size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
    char *const *v = *(char *const *const *)((const char *)m + f->offset);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_string(v[i] ? v[i] : "");
        if (!s || json_array_append_new(a, s) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static int utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* ---- decode: a request -> its REST request ---- */

typedef struct {
    const ProtobufCMessage *rq;
    gh_agrpc_call_t *call;
    char *err;
    size_t errcap;
} dec_t;

static int bad(dec_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(dec_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->err, d->errcap, fmt, ap);
    va_end(ap);
    return S_INVALID_ARGUMENT;
}

/* A name the request must carry: 0, or INVALID_ARGUMENT. */
static int need(dec_t *d, const char *what, const char *v)
{
    if (!*v)
        return bad(d, "%s is required", what);
    if (strlen(v) > MAX_NAME)
        return bad(d, "%s is longer than %d bytes", what, MAX_NAME);
    if (!utf8_ok(v))
        return bad(d, "%s is not UTF-8", what);
    return 0;
}

/* The REST path of a kind's collection (or singleton) of tenant t (site s for routes). */
static void coll_path(sb_t *s, int k, const char *t, const char *site)
{
    sb_str(s, "/v1/tenants");
    if (k == K_TENANT)
        return;
    sb_str(s, "/");
    sb_enc(s, t);
    if (k == K_ROUTE) {
        sb_str(s, "/sites/");
        sb_enc(s, site);
    }
    sb_str(s, "/");
    sb_str(s, kinds[k].seg);
}

static void item_path(sb_t *s, int k, const char *t, const char *site, const char *id)
{
    coll_path(s, k, t, site);
    if (k == K_TENANT) {
        sb_str(s, "/");
        sb_enc(s, t);
    } else if (kinds[k].id) {
        sb_str(s, "/");
        sb_enc(s, id);
    }
}

static void page_query(sb_t *s, const ProtobufCMessage *rq)
{
    int64_t size = get_int(rq, "page_size", NULL);
    if (size) { /* 0: the default; anything else as asked (REST refuses what is out of 1..500) */
        char n[24];
        snprintf(n, sizeof n, "%lld", (long long)size);
        sb_q(s, "limit", n);
    }
    if (*get_str(rq, "page_token"))
        sb_q(s, "cursor", get_str(rq, "page_token"));
    if (*get_str(rq, "prefix"))
        sb_q(s, "prefix", get_str(rq, "prefix"));
}

/* The identity of a resource in src (a request, or the resource message of Create/Update):
 * tenant, site (routes), id (items); checked as required by op. */
static int identity(dec_t *d, int k, const ProtobufCMessage *src, int with_id, const char **t, const char **site,
                    const char **id)
{
    *t = k == K_TENANT ? get_str(src, "name") : get_str(src, "tenant");
    *site = k == K_ROUTE ? get_str(src, "site") : "";
    *id = kinds[k].id && k != K_TENANT ? get_str(src, kinds[k].id) : "";
    int rc;
    if (k != K_TENANT || with_id)
        if ((rc = need(d, k == K_TENANT ? "name" : "tenant", *t)))
            return rc;
    if (k == K_ROUTE && (rc = need(d, "site", *site)))
        return rc;
    if (with_id && kinds[k].id && k != K_TENANT && (rc = need(d, kinds[k].id, *id)))
        return rc;
    return 0;
}

/* A JSON merge patch that sets the paths of mask (dot-separated) to their values in spec, or
 * removes them where spec has none. NULL after bad(). */
static json_t *mask_patch(dec_t *d, const json_t *spec, const json_t *mask)
{
    json_t *patch = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(mask, i, p) {
        const char *path = json_string_value(p);
        char seg[MAX_NAME + 1];
        const json_t *from = spec;
        json_t *into = patch;
        for (const char *s = path;;) {
            const char *dot = strchr(s, '.');
            size_t n = dot ? (size_t)(dot - s) : strlen(s);
            if (!n || n > MAX_NAME) {
                bad(d, "update_mask: \"%.200s\" is not a dot-separated path of names", path);
                json_decref(patch);
                return NULL;
            }
            memcpy(seg, s, n);
            seg[n] = 0;
            from = json_is_object(from) ? json_object_get(from, seg) : NULL;
            if (!dot) {
                json_object_set_new(into, seg, from ? json_deep_copy(from) : json_null());
                break;
            }
            json_t *next = json_object_get(into, seg);
            if (!json_is_object(next)) {
                next = json_object();
                json_object_set_new(into, seg, next);
            }
            into = next;
            s = dot + 1;
        }
    }
    return patch;
}

/* The spec of a Create/Update resource message as the REST document, with its key. */
static json_t *spec_doc(dec_t *d, int k, const ProtobufCMessage *res, const char *id, int *rc)
{
    const ProtobufCMessage *sp = get_msg(res, "spec");
    json_t *doc = sp ? gh_pb_struct_json((const Google__Protobuf__Struct *)sp, GH_PB_STRICT | GH_PB_INTEGERS) : json_object();
    if (!doc) {
        *rc = bad(d, "spec holds a number JSON cannot carry (NaN, infinity) or a string that is not UTF-8");
        return NULL;
    }
    const char *key = kinds[k].id;
    if (key && *id) {
        json_t *have = json_object_get(doc, key);
        if (have && (!json_is_string(have) || strcmp(json_string_value(have), id))) {
            json_decref(doc);
            *rc = bad(d, "spec.%s differs from %s", key, key);
            return NULL;
        }
    }
    return doc;
}

static int set_body(gh_agrpc_call_t *c, json_t *doc /* consumed */)
{
    c->body = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS); /* sorted: a retried call hashes the same */
    json_decref(doc);
    if (!c->body)
        return -1;
    c->len = strlen(c->body);
    return 0;
}

static int set_etag(dec_t *d, const char *etag)
{
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
        etag++, n -= 2;
    if (!n)
        return 0;
    if (n > 64 || memchr(etag, '"', n))
        return bad(d, "etag is the value Get answered (at most 64 characters, no quotes inside)");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)etag[i] < 0x21 || (unsigned char)etag[i] > 0x7e)
            return bad(d, "etag is the value Get answered (visible ASCII)");
    snprintf(d->call->if_match, sizeof d->call->if_match, "\"%.*s\"", (int)n, etag);
    return 0;
}

static int set_idem(dec_t *d)
{
    const char *k = get_str(d->rq, "idempotency_key");
    size_t n = strlen(k);
    if (n > sizeof d->call->idem - 1)
        return bad(d, "idempotency_key is 1..255 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return bad(d, "idempotency_key holds a control character");
    memcpy(d->call->idem, k, n + 1);
    return 0;
}

static int decode(dec_t *d, int m, sb_t *t)
{
    gh_agrpc_call_t *c = d->call;
    const ProtobufCMessage *rq = d->rq;
    int k = methods[m].kind, op = methods[m].op, rc;
    const char *tn = "", *site = "", *id = "";
    char num[32];
    c->verb = "GET";
    switch (op) {
    case OP_LIST:
        if ((rc = identity(d, k, rq, 0, &tn, &site, &id)))
            return rc;
        coll_path(t, k, tn, site);
        page_query(t, rq);
        break;
    case OP_GET:
        if ((rc = identity(d, k, rq, 1, &tn, &site, &id)))
            return rc;
        item_path(t, k, tn, site, id);
        break;
    case OP_DELETE:
        if ((rc = identity(d, k, rq, 1, &tn, &site, &id)) || (rc = set_etag(d, get_str(rq, "etag"))) ||
            (rc = set_idem(d)))
            return rc;
        c->verb = "DELETE";
        item_path(t, k, tn, site, id);
        if (get_bool(rq, "dry_run"))
            sb_q(t, "dry_run", "true");
        break;
    case OP_CREATE:
    case OP_UPDATE: {
        const ProtobufCMessage *res = get_msg(rq, kinds[k].field);
        if (!res)
            return bad(d, "%s is required", kinds[k].field);
        if ((rc = identity(d, k, res, 0, &tn, &site, &id)))
            return rc;
        json_t *doc = spec_doc(d, k, res, k == K_TENANT ? tn : id, &rc);
        if (!doc)
            return rc;
        const char *key = kinds[k].id;
        if (key && !*(k == K_TENANT ? tn : id) && json_is_string(json_object_get(doc, key))) {
            /* the name only in the spec: taken from there */
            if (k == K_TENANT)
                tn = json_string_value(json_object_get(doc, key));
            else
                id = json_string_value(json_object_get(doc, key));
        }
        if ((key && (rc = need(d, key, k == K_TENANT ? tn : id))) || (rc = set_idem(d))) {
            json_decref(doc);
            return rc;
        }
        json_object_set_new(c->ctx, "t", json_string(tn));
        json_object_set_new(c->ctx, "s", json_string(site));
        json_object_set_new(c->ctx, "i", json_string(id));
        if (key && !json_object_get(doc, key)) /* (when there, it is the name already: tn or id may point at it) */
            json_object_set_new(doc, key, json_string(k == K_TENANT ? tn : id));
        json_object_set(c->ctx, "echo", doc);
        if (op == OP_CREATE) {
            c->verb = "POST";
            coll_path(t, k, tn, site);
            int have = 0;
            int64_t pos = get_int(rq, "position", &have);
            if (have) {
                snprintf(num, sizeof num, "%lld", (long long)pos);
                sb_q(t, "position", num);
            }
        } else {
            json_t *mask = get_strs(rq, "update_mask");
            int merge = get_bool(rq, "merge");
            if (!mask || (merge && json_array_size(mask))) {
                json_decref(mask);
                json_decref(doc);
                return mask ? bad(d, "give merge or update_mask, not both") : bad(d, "update_mask is not UTF-8");
            }
            if (json_array_size(mask)) {
                json_t *patch = mask_patch(d, doc, mask);
                json_decref(doc);
                if (!patch) {
                    json_decref(mask);
                    return S_INVALID_ARGUMENT;
                }
                doc = patch;
            }
            c->verb = merge || json_array_size(mask) ? "PATCH" : "PUT";
            json_decref(mask);
            if ((rc = set_etag(d, get_str(res, "etag")))) {
                json_decref(doc);
                return rc;
            }
            if (!c->if_match[0] && !get_bool(rq, "allow_missing")) {
                snprintf(c->if_match, sizeof c->if_match, "*"); /* it must exist */
                c->absent_404 = 1;
            }
            item_path(t, k, tn, site, id);
        }
        if (get_bool(rq, "dry_run"))
            sb_q(t, "dry_run", "true");
        if (set_body(c, doc) < 0)
            return S_INTERNAL;
        break;
    }
    case OP_KEY_CREATE: {
        if ((rc = identity(d, k, rq, 0, &tn, &site, &id)) || (rc = set_idem(d)))
            return rc;
        json_t *scopes = get_strs(rq, "scopes");
        if (!scopes)
            return bad(d, "scopes are not UTF-8");
        if (!utf8_ok(get_str(rq, "name"))) {
            json_decref(scopes);
            return bad(d, "name is not UTF-8");
        }
        json_t *doc = json_pack("{s:s,s:o}", "name", get_str(rq, "name"), "scopes", scopes);
        int64_t ttl = get_int(rq, "ttl_seconds", NULL);
        if (ttl)
            json_object_set_new(doc, "ttl_seconds", json_integer(ttl));
        c->verb = "POST";
        coll_path(t, k, tn, site);
        if (set_body(c, doc) < 0)
            return S_INTERNAL;
        break;
    }
    case OP_PURGE: {
        tn = get_str(rq, "tenant");
        if ((rc = need(d, "tenant", tn)))
            return rc;
        json_t *doc = json_object();
        static const char *const lists[] = {"tags", "urls", "prefixes"};
        for (int i = 0; i < 3; i++) {
            json_t *a = get_strs(rq, lists[i]);
            if (!a) {
                json_decref(doc);
                return bad(d, "%s are not UTF-8", lists[i]);
            }
            if (json_array_size(a))
                json_object_set_new(doc, lists[i], a);
            else
                json_decref(a);
        }
        if (get_bool(rq, "all"))
            json_object_set_new(doc, "all", json_true());
        if (get_bool(rq, "soft"))
            json_object_set_new(doc, "soft", json_true());
        c->verb = "POST";
        sb_str(t, "/v1/tenants/");
        sb_enc(t, tn);
        sb_str(t, "/purges");
        if (set_body(c, doc) < 0)
            return S_INTERNAL;
        break;
    }
    case OP_AUDIT:
        sb_str(t, "/v1/audit");
        if (*get_str(rq, "tenant")) {
            if ((rc = need(d, "tenant", get_str(rq, "tenant"))))
                return rc;
            sb_q(t, "tenant", get_str(rq, "tenant"));
        }
        page_query(t, rq);
        break;
    case OP_VERSIONS:
        sb_str(t, "/v1/versions");
        page_query(t, rq);
        break;
    case OP_VERSION:
    case OP_DIFF:
    case OP_ROLLBACK: {
        int64_t v = get_int(rq, "id", NULL);
        if (v < 1)
            return bad(d, "id is a version number (1 or more)");
        snprintf(num, sizeof num, "%lld", (long long)v);
        sb_str(t, "/v1/versions/");
        sb_str(t, num);
        if (op == OP_DIFF) {
            int have = 0;
            int64_t from = get_int(rq, "from_version", &have);
            sb_str(t, "/diff");
            if (have) {
                if (from < 0)
                    return bad(d, "from_version is a version number (0: the empty state)");
                snprintf(num, sizeof num, "%lld", (long long)from);
                sb_q(t, "from", num);
            }
        } else if (op == OP_ROLLBACK) {
            if ((rc = set_idem(d)))
                return rc;
            c->verb = "POST";
            sb_str(t, "/rollback");
            if (get_bool(rq, "dry_run"))
                sb_q(t, "dry_run", "true");
        }
        break;
    }
    }
    if (op != OP_CREATE && op != OP_UPDATE) {
        json_object_set_new(c->ctx, "t", json_string(tn));
        json_object_set_new(c->ctx, "s", json_string(site));
        json_object_set_new(c->ctx, "i", json_string(id));
    }
    return 0;
}

int gh_admin_grpc_decode(int m, const uint8_t *p, size_t n, gh_agrpc_call_t *call, char *err, size_t errcap)
{
    memset(call, 0, sizeof *call);
    call->method = m;
    const ProtobufCMethodDescriptor *md = m >= 0 && m < NMETHODS ? method_desc(m) : NULL;
    if (!md) {
        snprintf(err, errcap, "unknown method");
        return S_UNIMPLEMENTED;
    }
    if (check_wire(md->input, (wire_t){p, p + n}, 0) < 0) {
        snprintf(err, errcap, "the request is not a valid %s (malformed, nested deeper than %d, or a string with a NUL byte)",
                 md->input->name, GH_AGRPC_MAX_DEPTH);
        return S_INVALID_ARGUMENT;
    }
    ProtobufCMessage *rq = protobuf_c_message_unpack(md->input, NULL, n, p);
    if (!rq) {
        snprintf(err, errcap, "the request is not a valid %s", md->input->name);
        return S_INVALID_ARGUMENT;
    }
    sb_t t = {0};
    dec_t d = {rq, call, err, errcap};
    call->ctx = json_object();
    int rc = call->ctx ? decode(&d, m, &t) : S_INTERNAL;
    protobuf_c_message_free_unpacked(rq, NULL);
    if (!rc && (t.oom || !t.p)) {
        snprintf(err, errcap, "out of memory");
        rc = S_INTERNAL;
    }
    if (rc) {
        if (rc == S_INTERNAL && !err[0])
            snprintf(err, errcap, "out of memory");
        free(t.p);
        gh_admin_grpc_call_free(call);
        return rc;
    }
    call->target = t.p;
    return 0;
}

void gh_admin_grpc_call_free(gh_agrpc_call_t *call)
{
    free(call->target);
    free(call->body);
    json_decref(call->ctx);
    call->target = call->body = NULL;
    call->ctx = NULL;
}

/* ---- encode: a REST answer -> the response message ---- */

/* Fill message m from the JSON object j by field names: strings, integers, bools, doubles,
 * Struct, Value, nested messages, repeated strings and messages. Strings point into j. */
static void fill(gh_pb_pool_t *pl, ProtobufCMessage *m, const json_t *j)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        json_t *v = json_object_get(j, f->name);
        if (!v || json_is_null(v))
            continue;
        char *at = (char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(v) || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
                continue;
            size_t n = json_array_size(v), k = 0;
            void **arr = gh_pb_alloc(pl, (n ? n : 1) * sizeof *arr);
            if (!arr)
                return;
            for (size_t e = 0; e < n; e++) {
                json_t *x = json_array_get(v, e);
                if (f->type == PROTOBUF_C_TYPE_STRING && json_is_string(x)) {
                    arr[k++] = (char *)json_string_value(x);
                } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && json_is_object(x)) {
                    ProtobufCMessage *sub = gh_pb_new(pl, f->descriptor);
                    if (!sub)
                        return;
                    fill(pl, sub, x);
                    arr[k++] = sub;
                }
            }
            *(size_t *)((char *)m + f->quantifier_offset) = k;
            *(void ***)at = arr;
            continue;
        }
        int set = 1;
        switch (f->type) {
        case PROTOBUF_C_TYPE_STRING:
            if (json_is_string(v)) {
                *(char **)at = (char *)json_string_value(v);
            } else if (json_is_integer(v)) {
                char *s = gh_pb_alloc(pl, 24);
                if (s)
                    snprintf(s, 24, "%lld", (long long)json_integer_value(v));
                *(char **)at = s ? s : (char *)"";
            } else {
                set = 0;
            }
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_INT32: {
            double x = json_is_number(v) ? json_number_value(v) : json_is_string(v) ? strtod(json_string_value(v), NULL) : 0;
            int64_t iv = json_is_integer(v) ? (int64_t)json_integer_value(v)
                         : !isfinite(x) || fabs(x) >= 9.2e18 ? 0 : (int64_t)x;
            if (f->type == PROTOBUF_C_TYPE_INT64)
                *(int64_t *)at = iv;
            else
                *(int32_t *)at = iv > INT32_MAX ? INT32_MAX : iv < INT32_MIN ? INT32_MIN : (int32_t)iv;
            break;
        }
        case PROTOBUF_C_TYPE_BOOL:
            *(protobuf_c_boolean *)at = json_is_true(v);
            break;
        case PROTOBUF_C_TYPE_DOUBLE:
            *(double *)at = json_number_value(v);
            break;
        case PROTOBUF_C_TYPE_MESSAGE:
            if (f->descriptor == &google__protobuf__value__descriptor) {
                *(void **)at = gh_pb_value(pl, v);
            } else if (!json_is_object(v)) {
                set = 0;
            } else if (f->descriptor == &google__protobuf__struct__descriptor) {
                *(void **)at = gh_pb_struct(pl, v);
            } else {
                ProtobufCMessage *sub = gh_pb_new(pl, f->descriptor);
                if (sub)
                    fill(pl, sub, v);
                *(void **)at = sub;
            }
            break;
        default:
            set = 0;
            break;
        }
        if (set && f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)((char *)m + f->quantifier_offset) = f->id;
    }
}

/* The value of header name in "Name: value\r\n" lines (into out), or NULL. */
static const char *header(const char *lines, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = lines; p && *p;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = (size_t)(p + len - v);
            snprintf(out, cap, "%.*s", (int)GH_MIN(vl, cap - 1), v);
            return out;
        }
        p = e ? e + 2 : NULL;
    }
    return NULL;
}

/* The REST ETag of a representation, without its quotes. */
static void etag_of(const json_t *j, char out[33])
{
    char q[40];
    gh_cp_etag(j, q);
    snprintf(out, 33, "%.32s", q + 1);
}

/* The JSON of a resource message: identity from the request (or the item), spec, etag. */
static json_t *resource_json(const gh_agrpc_call_t *c, int k, json_t *item, const char *etag, int file, json_int_t version)
{
    if (k == K_KEY)
        return json_incref(item);
    json_t *o = json_object();
    const char *tn = json_string_value(json_object_get(c->ctx, "t"));
    const char *key = kinds[k].id;
    const char *id = key && json_is_string(json_object_get(item, key)) ? json_string_value(json_object_get(item, key))
                                                                         : json_string_value(json_object_get(c->ctx, "i"));
    if (k == K_TENANT) {
        json_object_set_new(o, "name", json_string(id && *id ? id : tn ? tn : ""));
    } else {
        json_object_set_new(o, "tenant", json_string(tn ? tn : ""));
        if (k == K_ROUTE)
            json_object_set(o, "site", json_object_get(c->ctx, "s"));
        if (key)
            json_object_set_new(o, key, json_string(id ? id : ""));
    }
    json_object_set(o, "spec", item);
    char et[33];
    if (!etag && json_is_object(item)) {
        etag_of(item, et);
        etag = et;
    }
    if (etag)
        json_object_set_new(o, "etag", json_string(etag));
    json_object_set_new(o, "file_managed", json_boolean(file));
    if (version)
        json_object_set_new(o, "config_version", json_integer(version));
    return o;
}

/* REST status (and problem type) -> gRPC status */
static int code_of(int status, const char *type)
{
    switch (status) {
    case 400:
    case 415:
    case 422:
        return S_INVALID_ARGUMENT;
    case 413:
        return S_RESOURCE_EXHAUSTED;
    case 401:
        return S_UNAUTHENTICATED;
    case 403:
        return S_PERMISSION_DENIED;
    case 404:
        return S_NOT_FOUND;
    case 405:
        return S_UNIMPLEMENTED;
    case 409:
        return !strcmp(type, "already-exists") ? S_ALREADY_EXISTS
               : !strcmp(type, "concurrent-modification") ? S_ABORTED
                                                          : S_FAILED_PRECONDITION;
    case 412:
        return S_FAILED_PRECONDITION;
    case 429:
        return S_RESOURCE_EXHAUSTED;
    case 503:
        return S_UNAVAILABLE;
    default:
        return S_INTERNAL;
    }
}

static void meta_add(char *meta, size_t cap, const char *name, const char *value)
{
    size_t n = strlen(meta);
    if (n < cap)
        snprintf(meta + n, cap - n, "%s: %s\r\n", name, value);
}

static int failure(const gh_agrpc_call_t *c, const gh_cp_reply_t *rep, json_t *b, char *msg, size_t cap, char *meta,
                   size_t metacap)
{
    const char *type = json_string_value(json_object_get(b, "type"));
    const char *slash = type ? strrchr(type, '/') : NULL;
    type = slash ? slash + 1 : type ? type : "";
    const char *detail = json_string_value(json_object_get(b, "detail"));
    int code = code_of(rep->status, type);
    if (rep->status == 412 && c->absent_404) { /* If-Match: * of an Update that may not create */
        int k = methods[c->method].kind;
        snprintf(msg, cap, "no such %s (allow_missing creates it)", kinds[k].what);
        meta_add(meta, metacap, "gatehouse-problem-type", "not-found");
        return S_NOT_FOUND;
    }
    if (*type)
        meta_add(meta, metacap, "gatehouse-problem-type", type);
    size_t n = (size_t)snprintf(msg, cap, "%s", detail && *detail ? detail : rep->status ? "the request failed" : "out of memory");
    json_t *errs = json_object_get(b, "errors");
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e) {
        if (n + 8 >= cap)
            break;
        n += (size_t)snprintf(msg + n, cap - n, "%s%s: %s", i ? "; " : ": ", json_string_value(json_object_get(e, "path")) ?: "",
                              json_string_value(json_object_get(e, "message")) ?: "");
    }
    return rep->status ? code : S_INTERNAL;
}

int gh_admin_grpc_encode(const gh_agrpc_call_t *c, const gh_cp_reply_t *rep, uint8_t **out, size_t *outlen, char *msg,
                         size_t msgcap, char *meta, size_t metacap)
{
    *out = NULL;
    *outlen = 0;
    msg[0] = 0;
    meta[0] = 0;
    int op = methods[c->method].op, k = methods[c->method].kind;
    json_t *b = rep->body && rep->len ? json_loadb(rep->body, rep->len, 0, NULL) : NULL;
    char hv[128];
    json_int_t version = 0;
    if (header(rep->headers, "gatehouse-config-version", hv, sizeof hv)) {
        version = strtoll(hv, NULL, 10);
        meta_add(meta, metacap, "gatehouse-config-version", hv);
    }
    if (header(rep->headers, "idempotent-replayed", hv, sizeof hv))
        meta_add(meta, metacap, "gatehouse-idempotent-replayed", hv);
    if (rep->status < 200 || rep->status > 299) {
        int rc = failure(c, rep, b, msg, msgcap, meta, metacap);
        json_decref(b);
        return rc;
    }
    if (!json_is_object(b) && rep->status != 204) {
        json_decref(b);
        snprintf(msg, msgcap, "the answer was not understood");
        return S_INTERNAL;
    }
    int dry = json_is_true(json_object_get(b, "dry_run"));
    if (dry) {
        version = json_integer_value(json_object_get(b, "version"));
        snprintf(hv, sizeof hv, "%lld", (long long)version);
        meta_add(meta, metacap, "gatehouse-config-version", hv);
        meta_add(meta, metacap, "gatehouse-dry-run", "true");
    }
    json_t *j = NULL;
    switch (op) {
    case OP_GET:
    case OP_CREATE:
    case OP_UPDATE:
        if (dry) {
            j = resource_json(c, k, json_object_get(c->ctx, "echo"), "", 0, version);
        } else {
            char et[sizeof hv] = "";
            if (header(rep->headers, "etag", hv, sizeof hv)) { /* without its quotes */
                size_t n = strlen(hv);
                if (n >= 2 && hv[0] == '"' && hv[n - 1] == '"')
                    snprintf(et, sizeof et, "%.*s", (int)(n - 2), hv + 1);
                else
                    snprintf(et, sizeof et, "%s", hv);
            }
            j = resource_json(c, k, b, et[0] ? et : NULL, header(rep->headers, "gatehouse-origin", hv, sizeof hv) != NULL,
                              version);
        }
        break;
    case OP_LIST: {
        json_t *items = json_array(), *files = json_object_get(b, "file_managed");
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(b, "items"), i, it) {
            int file = 0;
            size_t x;
            json_t *fm;
            json_array_foreach(files, x, fm) file |= json_equal(fm, json_object_get(it, "name"));
            json_array_append_new(items, resource_json(c, k, it, NULL, file, 0));
        }
        j = json_pack("{s:o,s:O?}", kinds[k].plural, items, "next_page_token", json_object_get(b, "next_cursor"));
        if (files)
            json_object_set(j, "file_managed", files);
        break;
    }
    case OP_DELETE:
        j = json_pack("{s:I,s:b}", "config_version", version, "dry_run", dry);
        break;
    case OP_KEY_CREATE:
        j = json_pack("{s:O,s:O?}", "api_key", b, "secret", json_object_get(b, "key"));
        break;
    case OP_AUDIT:
    case OP_VERSIONS:
        j = json_pack("{s:O?,s:O?,s:O?}", op == OP_AUDIT ? "records" : "versions", json_object_get(b, "items"),
                      "next_page_token", json_object_get(b, "next_cursor"), "current", json_object_get(b, "current"));
        break;
    case OP_DIFF:
        j = json_pack("{s:O?,s:O?,s:O?}", "from_version", json_object_get(b, "from"), "to_version", json_object_get(b, "to"),
                      "changes", json_object_get(b, "changes"));
        break;
    case OP_ROLLBACK:
        j = json_pack("{s:O?,s:I,s:b}", "rolled_back_to", json_object_get(b, "rolled_back_to"), "config_version", version,
                      "dry_run", dry);
        break;
    default: /* PURGE, VERSION: the answer's fields are the message's */
        j = json_incref(b);
        break;
    }
    int rc = S_OK;
    gh_pb_pool_t pl = {0};
    const ProtobufCMethodDescriptor *md = method_desc(c->method);
    ProtobufCMessage *resp = j ? gh_pb_new(&pl, md->output) : NULL;
    if (resp)
        fill(&pl, resp, j);
    if (!resp || pl.oom) {
        snprintf(msg, msgcap, j ? "out of memory" : "the answer was not understood");
        rc = S_INTERNAL;
    } else if (gh_grpc_frame(resp, out, outlen) < 0) {
        snprintf(msg, msgcap, "out of memory");
        rc = S_INTERNAL;
    }
    gh_pb_pool_free(&pl);
    json_decref(j);
    json_decref(b);
    return rc;
}

/* ---- the handler ---- */


static void fail(gh_req_t *r, int code, const char *meta, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(gh_req_t *r, int code, const char *meta, const char *fmt, ...)
{
    char msg[1200], lines[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gh_grpc_status_lines(lines, sizeof lines, code, msg, meta);
    gh_session_respond(r, 200, "application/grpc", NULL, 0, lines);
}

int gh_admin_grpc_is(const gh_h1_request_t *m)
{
    const gh_h1_header_t *ct = gh_h1_find(m->headers, m->nheaders, GH_STR("content-type"));
    return ct && ct->value.n >= 16 && !strncasecmp(ct->value.p, "application/grpc", 16);
}

void gh_admin_grpc_handle(gh_req_t *r, const gh_req_view_t *v)
{
    const gh_h1_request_t *m = v->msg;
    const gh_conf_t *conf = v->w->gen->conf;
    if (m->method_id != GH_M_POST) {
        gh_session_respond(r, 405, "text/plain; charset=utf-8", "a gRPC service: POST application/grpc\n", 38,
                           "Allow: POST\r\n");
        return;
    }
    gh_str_t path = m->path;
    size_t pl = sizeof SERVICE - 1;
    int method = path.n > pl && !memcmp(path.p, SERVICE, pl) ? gh_admin_grpc_method(path.p + pl, path.n - pl) : -1;
    if (method < 0) {
        fail(r, S_UNIMPLEMENTED, NULL, "unknown method %.*s", (int)GH_MIN(path.n, 200), path.p);
        return;
    }
    const uint8_t *b = (const uint8_t *)v->body;
    if (v->body_len > GH_HANDLER_BODY_MAX) { /* as REST bodies (the listener should refuse it first) */
        fail(r, S_RESOURCE_EXHAUSTED, NULL, "the request is larger than %u bytes", GH_HANDLER_BODY_MAX);
        return;
    }
    if (v->body_len < 5) {
        fail(r, S_INVALID_ARGUMENT, NULL, "the request holds no message");
        return;
    }
    if (b[0] & 1) {
        fail(r, S_UNIMPLEMENTED, NULL, "compressed messages are not supported (send grpc-encoding identity)");
        return;
    }
    size_t len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    if (b[0] != 0 || len != v->body_len - 5) {
        fail(r, S_INVALID_ARGUMENT, NULL, "the request is not exactly one gRPC message");
        return;
    }
    /* authorization: Bearer <operator key or API key> */
    const gh_h1_header_t *au = gh_h1_find(m->headers, m->nheaders, GH_STR("authorization"));
    gh_cp_actor_t a;
    int denied = au && !(au->value.n > 7 && !strncasecmp(au->value.p, "Bearer ", 7));
    if (denied || gh_cp_auth_token(conf, au ? au->value.p + 7 : NULL, au ? au->value.n - 7 : 0, &a) != 0) {
        fail(r, S_UNAUTHENTICATED, "gatehouse-problem-type: unauthorized\r\n",
             "send metadata authorization: Bearer <operator key or API key>");
        return;
    }
    int wait = gh_cp_rate(conf, &a, v->peer);
    if (wait > 0) {
        char meta[96];
        snprintf(meta, sizeof meta, "gatehouse-problem-type: rate-limited\r\nretry-after: %d\r\n", wait);
        fail(r, S_RESOURCE_EXHAUSTED, meta, "the admin API's rate limit (admin.rate_limit): retry in %d s", wait);
        return;
    }
    gh_agrpc_call_t call;
    char err[600] = "";
    int rc = gh_admin_grpc_decode(method, b + 5, len, &call, err, sizeof err);
    if (rc) {
        fail(r, rc, NULL, "%s", err);
        return;
    }
    gh_cp_reply_t rep;
    gh_cp_call(&a, v->peer, call.verb, call.target, call.body, call.len, call.if_match, call.idem, &rep);
    uint8_t *out = NULL;
    size_t outlen = 0;
    char msg[1200], meta[1024];
    rc = gh_admin_grpc_encode(&call, &rep, &out, &outlen, msg, sizeof msg, meta, sizeof meta);
    gh_cp_reply_free(&rep);
    gh_admin_grpc_call_free(&call);
    if (rc) {
        fail(r, rc, meta, "%s", msg);
        return;
    }
    if (gh_session_stream_start(r, "application/grpc", NULL, NULL, NULL, 0) < 0) {
        free(out);
        fail(r, S_UNAVAILABLE, NULL, "the server is shutting down");
        return;
    }
    int sent = gh_session_stream_send(r, out, outlen);
    free(out);
    char lines[1200];
    gh_grpc_status_lines(lines, sizeof lines, sent < 0 ? S_INTERNAL : S_OK, sent < 0 ? "out of memory" : NULL, meta);
    gh_session_stream_end(r, lines);
}
