/* fuzz_admin_grpc.c: libFuzzer target for the gRPC admin API's translation
 * (src/admin/grpc_admin.c), both ways. data[0] picks a method of AdminService; data[1]'s low
 * bit the direction:
 *  - 1: the rest is a request message -> gh_admin_grpc_decode. A success gives a REST request
 *    (a verb, a /v1/ target without spaces or control bytes, a JSON object body or none, an
 *    If-Match that is empty, "*" or a quoted tag) whose answer "{}" encodes; a failure says
 *    why, with a gRPC code, and leaves nothing allocated (ASan's leak check).
 *  - 0: data[2] picks a REST status, the rest is the answer's body -> gh_admin_grpc_encode of a
 *    made-up call. A success is one framed message that protobuf-c reads back as the method's
 *    response type; a failure a gRPC code and a message. */
#include "admin/grpc_admin.h"

#include <stdlib.h>

#include "gatehouse/admin/v1/admin.pb-c.h"

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static void check_answer(const ProtobufCMethodDescriptor *md, int rc, uint8_t *out, size_t n, const char *msg)
{
    if (rc == 0) {
        ASSERT(out && n >= 5 && out[0] == 0);
        size_t len = (size_t)out[1] << 24 | (size_t)out[2] << 16 | (size_t)out[3] << 8 | out[4];
        ASSERT(len == n - 5);
        ProtobufCMessage *m = protobuf_c_message_unpack(md->output, NULL, len, out + 5);
        ASSERT(m);
        protobuf_c_message_free_unpacked(m, NULL);
    } else {
        ASSERT(rc > 0 && rc <= 16 && !out && msg[0]);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const ProtobufCServiceDescriptor *sd = &gatehouse__admin__v1__admin_service__descriptor;
    const ProtobufCMethodDescriptor *md = &sd->methods[data[0] % sd->n_methods];
    int m = gh_admin_grpc_method(md->name, strlen(md->name));
    ASSERT(m >= 0); /* every method of the service is served */
    char err[600] = "", msg[1200], meta[1024];
    uint8_t *out = NULL;
    size_t n = 0;
    if (data[1] & 1) {
        gh_agrpc_call_t call;
        int rc = gh_admin_grpc_decode(m, data + 2, size - 2, &call, err, sizeof err);
        if (rc) {
            ASSERT(rc > 0 && rc <= 16 && err[0] && !call.target && !call.body && !call.ctx);
            return 0;
        }
        ASSERT(call.verb && call.target && !strncmp(call.target, "/v1/", 4));
        for (const char *p = call.target; *p; p++)
            ASSERT((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f);
        if (call.body) {
            json_t *b = json_loads(call.body, 0, NULL);
            ASSERT(json_is_object(b) && strlen(call.body) == call.len);
            json_decref(b);
        }
        size_t il = strlen(call.if_match);
        ASSERT(!il || !strcmp(call.if_match, "*") || (il >= 3 && call.if_match[0] == '"' && call.if_match[il - 1] == '"'));
        gh_cp_reply_t rep = {.status = 200, .ctype = (char *)"application/json", .headers = (char *)"", .body = (char *)"{}", .len = 2};
        rc = gh_admin_grpc_encode(&call, &rep, &out, &n, msg, sizeof msg, meta, sizeof meta);
        check_answer(md, rc, out, n, msg);
        gh_admin_grpc_call_free(&call);
        return 0;
    }
    static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 409, 412, 422, 429, 500, 503, 0};
    char *body = malloc(size - 3 + 1);
    if (!body)
        return 0;
    memcpy(body, data + 3, size - 3);
    body[size - 3] = 0;
    gh_agrpc_call_t call = {.method = m, .verb = "GET", .absent_404 = data[2] >> 7};
    call.ctx = json_pack("{s:s,s:s,s:s,s:{s:s}}", "t", "acme", "s", "main", "i", "x", "echo", "name", "x");
    gh_cp_reply_t rep = {.status = statuses[data[2] % (sizeof statuses / sizeof *statuses)],
                         .ctype = (char *)"application/json",
                         .headers = (char *)"ETag: \"0123456789abcdef0123456789abcdef\"\r\nGatehouse-Config-Version: 7\r\n"
                                            "Idempotent-Replayed: true\r\nGatehouse-Origin: file\r\n",
                         .body = body,
                         .len = size - 3};
    int rc = gh_admin_grpc_encode(&call, &rep, &out, &n, msg, sizeof msg, meta, sizeof meta);
    check_answer(md, rc, out, n, msg);
    json_decref(call.ctx);
    free(body);
    return 0;
}
