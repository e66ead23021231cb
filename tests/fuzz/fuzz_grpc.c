/* fuzz_grpc.c: libFuzzer target for the flagd gRPC request reader (src/flags/grpc.c):
 * protobuf bytes of a Resolve*Request / ResolveAllRequest -> flag key and JSON context.
 * The first byte chooses the message kind; the rest is the message. Invariants (trap when
 * broken): a success gives a key (Resolve*) and a context that is NULL or a JSON object
 * whose nesting stays within GH_GRPC_MAX_DEPTH; a failure leaves nothing allocated (ASan's
 * leak check) and says why. */
#include "flags/grpc.h"

#include <stdlib.h>

#define ASSERT(c)             \
    do {                      \
        if (!(c))             \
            __builtin_trap(); \
    } while (0)

static int depth(const json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int e = depth(x);
            d = e > d ? e : d;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            int e = depth(x);
            d = e > d ? e : d;
        }
        return d + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int with_key = data[0] & 1;
    char *key = NULL, err[160] = "";
    json_t *ctx = NULL;
    int rc = gh_grpc_parse_request(data + 1, size - 1, with_key, with_key ? &key : NULL, &ctx, err, sizeof err);
    if (rc == 0) {
        ASSERT(!with_key || key);
        ASSERT(!ctx || json_is_object(ctx));
        /* a Struct level is an object; a Value between adds none; lists add one each */
        ASSERT(!ctx || depth(ctx) <= 2 * GH_GRPC_MAX_DEPTH + 2);
        char *s = ctx ? json_dumps(ctx, JSON_COMPACT) : NULL;
        ASSERT(!ctx || s);
        free(s);
    } else {
        ASSERT((rc == -1 || rc == -2) && err[0] && !ctx && !key);
    }
    json_decref(ctx);
    free(key);
    return 0;
}
