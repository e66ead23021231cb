/* fuzz_traceparent.c: libFuzzer target for the W3C traceparent parser and the span record
 * path of src/obs/trace.c.
 *
 * Input: the traceparent value up to the first NUL; after it, NUL-separated fields used as
 * the path, host, tracestate and a backend name of a span record. Beyond "does not crash":
 *  - an accepted value is exactly 55 bytes, lowercase hex, version 00, ids not all zero,
 *    and formats back to itself (the flags byte to 00/01 as sent on);
 *  - a refused value leaves the outputs untouched;
 *  - a context begun from it keeps the trace id only when the parser accepts it;
 *  - any record encoded from the fields turns into JSON that jansson reads as an array
 *    of exactly 1 + tries spans, and every truncation of the record is refused. */
#include "obs/trace.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                       \
    do {                                \
        if (!(c))                       \
            __builtin_trap();           \
    } while (0)

static uint64_t rs = 1;
static uint64_t rnd(void *arg)
{
    (void)arg;
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return rs;
}

static gh_str_t field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *s = *p;
    if (s >= end)
        return GH_STR_NULL;
    const uint8_t *z = memchr(s, 0, (size_t)(end - s));
    if (!z)
        z = end;
    *p = z < end ? z + 1 : end;
    return gh_str((const char *)s, (size_t)(z - s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    gh_str_t tp = field(&p, end);
    uint8_t tid[16], pid[8], fl = 0x5a;
    memset(tid, 0xee, sizeof tid);
    memset(pid, 0xee, sizeof pid);
    int rc = gh_trace_parse(tp.p, tp.n, tid, pid, &fl);
    if (rc == 0) {
        ASSERT(tp.n == GH_TRACEPARENT_LEN && tp.p[0] == '0' && tp.p[1] == '0');
        for (size_t i = 0; i < tp.n; i++)
            ASSERT(tp.p[i] == '-' ? (i == 2 || i == 35 || i == 52)
                                  : ((tp.p[i] >= '0' && tp.p[i] <= '9') || (tp.p[i] >= 'a' && tp.p[i] <= 'f')));
        uint8_t z = 0;
        for (int i = 0; i < 16; i++)
            z |= tid[i];
        ASSERT(z);
        z = 0;
        for (int i = 0; i < 8; i++)
            z |= pid[i];
        ASSERT(z);
        char out[GH_TRACEPARENT_LEN];
        gh_trace_format(out, tid, pid, fl & 1);
        ASSERT(!memcmp(out, tp.p, 53));
        ASSERT(out[53] == '0' && out[54] == ((fl & 1) ? '1' : '0'));
    } else {
        ASSERT(rc == GH_EINVAL);
        ASSERT(fl == 0x5a && tid[0] == 0xee && pid[7] == 0xee);
    }

    gh_trace_ctx_t t;
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, tp, 0.5, 1, rnd, NULL, 1000, 1700000000000000000ull);
    ASSERT(t.on && t.parent_ok == (rc == 0));
    if (rc == 0)
        ASSERT(!memcmp(t.trace_id, tid, 16) && t.sampled == (fl & 1));

    gh_str_t path = field(&p, end), host = field(&p, end), ts = field(&p, end), be = field(&p, end);
    char backend[300];
    size_t bn = be.n < sizeof backend - 1 ? be.n : sizeof backend - 1;
    memcpy(backend, be.p ? be.p : "", bn);
    backend[bn] = 0;
    int ntries = size % 11; /* more than GH_TRACE_MAX_TRIES sometimes */
    for (int i = 0; i < ntries; i++) {
        gh_trace_try_begin(&t, backend, rnd(NULL), 1100 + (uint64_t)i);
        gh_trace_try_status(&t, 200 + i);
        if (i & 1)
            gh_trace_try_end(&t, (i % (GH_TT__COUNT - 1)) + 1, 1150 + (uint64_t)i);
    }
    t.tracestate = ts;
    gh_trace_req_t q = {.ctx = &t, .start_us = 1000, .end_us = 3000, .status = (int)(size % 600),
                        .method = GH_STR("GET"), .path = path, .host = host, .client = host,
                        .proto = GH_STR("1.1"), .upstream = be, .cache = ts, .prot_reason = path,
                        .prot_action = ts, .prot_detail = be, .request_id = path};
    static char rec[8192], js[65536], doc[65600];
    size_t n = gh_trace_record_encode(rec, sizeof rec, &q);
    ASSERT(n > 0 && n <= sizeof rec);
    int ns = 0;
    size_t m = gh_trace_record_json(js, sizeof js, rec, n, &ns);
    ASSERT(m > 0);
    int want = 1 + (ntries < GH_TRACE_MAX_TRIES ? ntries : GH_TRACE_MAX_TRIES);
    ASSERT(ns == want);
    doc[0] = '[';
    memcpy(doc + 1, js, m);
    doc[m + 1] = ']';
    json_error_t err;
    json_t *arr = json_loadb(doc, m + 2, 0, &err);
    ASSERT(arr && json_is_array(arr) && (int)json_array_size(arr) == want);
    json_decref(arr);
    for (size_t cut = 0; cut < n; cut += 1 + n / 16)
        ASSERT(gh_trace_record_json(js, sizeof js, rec, cut, &ns) == 0);
    return 0;
}
