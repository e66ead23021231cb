/* pb.c: see pb.h. */
#include "grpc/pb.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gh_pb_block {
    struct gh_pb_block *next;
    size_t used, cap;
    max_align_t mem[];
};

#define BLOCK 16384

void *gh_pb_alloc(gh_pb_pool_t *pl, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    gh_pb_block_t *b = pl->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK ? n : BLOCK;
        if (!(b = malloc(sizeof *b + cap))) {
            pl->oom = 1;
            return NULL;
        }
        b->next = pl->head;
        b->used = 0;
        b->cap = cap;
        pl->head = b;
    }
    void *p = (char *)b->mem + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void gh_pb_pool_free(gh_pb_pool_t *pl)
{
    for (gh_pb_block_t *b = pl->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    pl->head = NULL;
}

ProtobufCMessage *gh_pb_new(gh_pb_pool_t *pl, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = gh_pb_alloc(pl, d->sizeof_message);
    if (m)
        protobuf_c_message_init(d, m);
    return m;
}

Google__Protobuf__Value *gh_pb_value(gh_pb_pool_t *pl, const json_t *v)
{
    Google__Protobuf__Value *pv = (Google__Protobuf__Value *)gh_pb_new(pl, &google__protobuf__value__descriptor);
    if (!pv)
        return NULL;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        if (!(pv->struct_value = gh_pb_struct(pl, v)))
            return NULL;
        break;
    case JSON_ARRAY: {
        Google__Protobuf__ListValue *l =
            (Google__Protobuf__ListValue *)gh_pb_new(pl, &google__protobuf__list_value__descriptor);
        size_t n = json_array_size(v);
        if (!l || !(l->values = gh_pb_alloc(pl, (n ? n : 1) * sizeof *l->values)))
            return NULL;
        for (size_t i = 0; i < n; i++)
            if (!(l->values[l->n_values++] = gh_pb_value(pl, json_array_get(v, i))))
                return NULL;
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        pv->list_value = l;
        break;
    }
    case JSON_STRING:
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        pv->string_value = (char *)json_string_value(v);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        pv->number_value = json_number_value(v);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        pv->bool_value = json_is_true(v);
        break;
    default:
        pv->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        pv->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    }
    return pv;
}

Google__Protobuf__Struct *gh_pb_struct(gh_pb_pool_t *pl, const json_t *o)
{
    Google__Protobuf__Struct *s = (Google__Protobuf__Struct *)gh_pb_new(pl, &google__protobuf__struct__descriptor);
    if (!s || !json_is_object(o))
        return s;
    size_t n = json_object_size(o);
    if (!(s->fields = gh_pb_alloc(pl, (n ? n : 1) * sizeof *s->fields)))
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        Google__Protobuf__Struct__FieldsEntry *e = (Google__Protobuf__Struct__FieldsEntry *)gh_pb_new(
            pl, &google__protobuf__struct__fields_entry__descriptor);
        if (!e)
            return NULL;
        e->key = (char *)k;
        if (!(e->value = gh_pb_value(pl, v)))
            return NULL;
        s->fields[s->n_fields++] = e;
    }
    return s;
}

json_t *gh_pb_value_json(const Google__Protobuf__Value *v, int flags)
{
    if (!v)
        return json_null();
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        if (!isfinite(v->number_value)) /* JSON has no NaN or infinity (nor has protobuf's JSON mapping) */
            return flags & GH_PB_STRICT ? NULL : json_null();
        if ((flags & GH_PB_INTEGERS) && v->number_value == trunc(v->number_value) &&
            fabs(v->number_value) < 9007199254740992.0)
            return json_integer((json_int_t)v->number_value);
        return json_real(v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return json_string(v->string_value); /* NULL when not UTF-8 */
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return gh_pb_struct_json(v->struct_value, flags);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
        json_t *a = json_array();
        for (size_t i = 0; a && v->list_value && i < v->list_value->n_values; i++) {
            json_t *e = gh_pb_value_json(v->list_value->values[i], flags);
            if (!e || json_array_append_new(a, e) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default: /* null, or no kind */
        return json_null();
    }
}

json_t *gh_pb_struct_json(const Google__Protobuf__Struct *s, int flags)
{
    json_t *o = json_object();
    for (size_t i = 0; o && s && i < s->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = s->fields[i];
        json_t *v = gh_pb_value_json(e->value, flags);
        if (!v || json_object_set_new(o, e->key ? e->key : "", v) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

int gh_pb_varint(const uint8_t **p, const uint8_t *e, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= e)
            return -1;
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

int gh_pb_next(const uint8_t **p, const uint8_t *e, uint32_t *field, const uint8_t **body, size_t *len)
{
    uint64_t tag, v;
    if (gh_pb_varint(p, e, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return -1;
    *field = (uint32_t)(tag >> 3);
    switch (tag & 7) {
    case 0:
        return gh_pb_varint(p, e, &v) < 0 ? -1 : 0;
    case 1:
        if (e - *p < 8)
            return -1;
        *p += 8;
        return 0;
    case 5:
        if (e - *p < 4)
            return -1;
        *p += 4;
        return 0;
    case 2:
        if (gh_pb_varint(p, e, &v) < 0 || v > (uint64_t)(e - *p))
            return -1;
        *body = *p;
        *len = (size_t)v;
        *p += v;
        return 1;
    default: /* groups: in no message here */
        return -1;
    }
}

int gh_grpc_frame(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(n + 5);
    if (!b)
        return -1;
    b[0] = 0;
    b[1] = (uint8_t)(n >> 24);
    b[2] = (uint8_t)(n >> 16);
    b[3] = (uint8_t)(n >> 8);
    b[4] = (uint8_t)n;
    protobuf_c_message_pack(m, b + 5);
    *out = b;
    *len = n + 5;
    return 0;
}

void gh_grpc_status_lines(char *out, size_t cap, int code, const char *msg, const char *meta)
{
    size_t n = (size_t)snprintf(out, cap, "grpc-status: %d\r\n", code);
    if (msg && *msg && n + 32 < cap) {
        n += (size_t)snprintf(out + n, cap - n, "grpc-message: ");
        for (const unsigned char *p = (const unsigned char *)msg; *p && n + 8 < cap; p++) {
            if (*p >= 0x20 && *p <= 0x7e && *p != '%')
                out[n++] = (char)*p;
            else
                n += (size_t)snprintf(out + n, cap - n, "%%%02X", *p);
        }
        n += (size_t)snprintf(out + n, cap - n, "\r\n");
    }
    if (meta && n < cap)
        snprintf(out + n, cap - n, "%s", meta);
}
