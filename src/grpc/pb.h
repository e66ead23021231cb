/* pb.h: what the gRPC services share (src/flags/grpc.c, flagd evaluation; src/admin/grpc_admin.c,
 * the admin API): a bump arena for the messages of one answer, google.protobuf.Struct/Value to and
 * from JSON, a varint reader for checking requests on the wire, the 5-byte message framing and
 * the grpc-status trailer lines.
 *
 * Called by those two. Calls protobuf-c (the generated struct.pb-c.h) and jansson. */
#ifndef GH_GRPC_PB_H
#define GH_GRPC_PB_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/struct.pb-c.h"

typedef struct gh_pb_block gh_pb_block_t;
typedef struct {
    gh_pb_block_t *head;
    int oom; /* an allocation failed */
} gh_pb_pool_t;

/* n zeroed bytes that live until gh_pb_pool_free, or NULL (and pl->oom). */
void *gh_pb_alloc(gh_pb_pool_t *pl, size_t n);
void gh_pb_pool_free(gh_pb_pool_t *pl);
/* A message of descriptor d, initialised, in the pool. */
ProtobufCMessage *gh_pb_new(gh_pb_pool_t *pl, const ProtobufCMessageDescriptor *d);

/* JSON -> Struct / Value, in the pool; strings point into the JSON (keep it alive). NULL on OOM;
 * a non-object o gives an empty Struct. */
Google__Protobuf__Struct *gh_pb_struct(gh_pb_pool_t *pl, const json_t *o);
Google__Protobuf__Value *gh_pb_value(gh_pb_pool_t *pl, const json_t *v);

/* Struct / Value -> JSON (new reference). A later duplicate key wins, as in protobuf maps.
 * NULL on a string that is not UTF-8, on OOM, and (GH_PB_STRICT) on NaN or infinity, which
 * otherwise become null; GH_PB_INTEGERS: whole numbers become JSON integers (a configuration
 * wants ports and counts as such). */
enum { GH_PB_STRICT = 1, GH_PB_INTEGERS = 2 };
json_t *gh_pb_struct_json(const Google__Protobuf__Struct *s, int flags);
json_t *gh_pb_value_json(const Google__Protobuf__Value *v, int flags);

/* A protobuf varint from *p (advanced), not past e: 0, or -1 when cut short or too long. */
int gh_pb_varint(const uint8_t **p, const uint8_t *e, uint64_t *v);

/* The next field of a message on the wire at *p (advanced past it), not past e: 1 with its
 * number and, for a length-delimited field, its bytes in *body and *len; 0 for a scalar field (skipped);
 * -1 when malformed (cut short, field number 0 or over 2^29-1, a group). */
int gh_pb_next(const uint8_t **p, const uint8_t *e, uint32_t *field, const uint8_t **body, size_t *len);

/* One message with its 5-byte gRPC prefix (malloc'd). -1: no memory. */
int gh_grpc_frame(const ProtobufCMessage *m, uint8_t **out, size_t *len);
/* "grpc-status: N\r\n" [+ "grpc-message: percent-encoded msg\r\n"] [+ meta lines]. */
void gh_grpc_status_lines(char *out, size_t cap, int code, const char *msg, const char *meta);

#endif
