/* test_trace.c: src/obs/trace.c without threads or sockets: the strict traceparent parser,
 * the context (sampling, respect_parent, try span ids), and a ring record turned into OTLP
 * JSON (checked with jansson, as a collector would read it). */
#include "obs/trace.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "t.h"

static const char *const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

static void test_parse_valid(void)
{
    uint8_t tid[16], pid[8], fl = 0xaa;
    CHECK_INT(gh_trace_parse(good, strlen(good), tid, pid, &fl), 0);
    CHECK_INT(tid[0], 0x4b);
    CHECK_INT(tid[15], 0x36);
    CHECK_INT(pid[0], 0x00);
    CHECK_INT(pid[7], 0xb7);
    CHECK_INT(fl, 1);
    const char *nf = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    CHECK_INT(gh_trace_parse(nf, strlen(nf), tid, pid, &fl), 0);
    CHECK_INT(fl, 0);
    const char *other = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff"; /* unknown flag bits: kept */
    CHECK_INT(gh_trace_parse(other, strlen(other), tid, pid, &fl), 0);
    CHECK_INT(fl, 0xff);
    char out[GH_TRACEPARENT_LEN];
    gh_trace_parse(good, strlen(good), tid, pid, &fl);
    gh_trace_format(out, tid, pid, 1);
    CHECK(!memcmp(out, good, GH_TRACEPARENT_LEN));
}

static void test_parse_invalid(void)
{
    static const char *const bad[] = {
        "",
        "00",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero ids */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* only 00 */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* length */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", /* dash misplaced */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01", /* not hex */
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t tid[16] = {7}, pid[8] = {7}, fl = 9;
        int rc = gh_trace_parse(bad[i], strlen(bad[i]), tid, pid, &fl);
        if (rc != GH_EINVAL)
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CHECK_INT(rc, GH_EINVAL);
        CHECK_INT(tid[0], 7); /* untouched on failure */
        CHECK_INT(fl, 9);
    }
    uint8_t tid[16], pid[8], fl;
    CHECK_INT(gh_trace_parse(NULL, 0, tid, pid, &fl), GH_EINVAL);
}

static uint64_t seq_state;
static uint64_t seq_rand(void *arg)
{
    (void)arg;
    seq_state = seq_state * 6364136223846793005ull + 1442695040888963407ull;
    return seq_state;
}
static uint64_t zero_rand(void *arg)
{
    static int n;
    (void)arg;
    return n++ < 3 ? 0 : 0x1234; /* all-zero ids are drawn again */
}

static void test_begin_sampling(void)
{
    gh_trace_ctx_t t;
    /* respect_parent: the caller's flag decides, whatever the ratio */
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, gh_str(good, strlen(good)), 0.0, 1, seq_rand, NULL, 1000, 5000000);
    CHECK(t.on && t.parent_ok && t.sampled);
    CHECK_INT(t.trace_id[0], 0x4b);
    CHECK_INT(t.parent_id[7], 0xb7);
    const char *unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, gh_str(unsampled, strlen(unsampled)), 1.0, 1, seq_rand, NULL, 1000, 5000000);
    CHECK(t.parent_ok && !t.sampled);
    /* respect_parent off: the ratio decides, the trace id is kept */
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, gh_str(unsampled, strlen(unsampled)), 1.0, 0, seq_rand, NULL, 1000, 5000000);
    CHECK(t.parent_ok && t.sampled);
    CHECK_INT(t.trace_id[0], 0x4b);
    /* no header or a bad one: a new trace, sampled by the ratio */
    int sampled = 0;
    for (int i = 0; i < 10000; i++) {
        memset(&t, 0, sizeof t);
        gh_trace_begin(&t, GH_STR("bogus"), 0.25, 1, seq_rand, NULL, 1000, 5000000);
        CHECK(!t.parent_ok);
        sampled += t.sampled;
    }
    CHECK(sampled > 2200 && sampled < 2800);
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, GH_STR_NULL, 0.0, 1, seq_rand, NULL, 1000, 5000000);
    CHECK(t.on && !t.sampled);
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, GH_STR_NULL, 1.0, 1, zero_rand, NULL, 1000, 5000000);
    uint8_t any = 0;
    for (int i = 0; i < 16; i++)
        any |= t.trace_id[i];
    CHECK(any);
    CHECK(t.sampled);
}

static void test_tries(void)
{
    gh_trace_ctx_t t;
    memset(&t, 0, sizeof t);
    gh_trace_begin(&t, GH_STR_NULL, 1.0, 1, seq_rand, NULL, 1000, 5000000);
    const uint8_t *a = gh_trace_try_begin(&t, "10.0.0.1:80", 0x1111111111111111ull, 1100);
    CHECK_INT(a[0], 0x11);
    gh_trace_try_status(&t, 503);
    gh_trace_try_end(&t, GH_TT_RETRIED, 1200);
    gh_trace_try_end(&t, GH_TT_TIMEOUT, 1300); /* already closed: no change */
    const uint8_t *b = gh_trace_try_begin(&t, "10.0.0.2:80", 0, 1250); /* a zero id is never sent */
    CHECK(b[0] != 0 || b[1] != 0);
    gh_trace_try_status(&t, 200);
    CHECK_INT(t.ntries, 2);
    CHECK_INT(t.tries[0].outcome, GH_TT_RETRIED);
    CHECK_INT(t.tries[0].end_us, 1200);
    CHECK_INT(t.tries[0].status, 503);
    CHECK_INT(t.tries[1].outcome, GH_TT_OPEN);
    CHECK_INT(t.tries[1].num, 2);
    for (int i = 0; i < 20; i++) /* more than recorded: ids still given, nothing overflows */
        CHECK(gh_trace_try_begin(&t, "x:1", 42 + (uint64_t)i, 1300) != NULL);
    CHECK_INT(t.ntries, 22);
    gh_trace_try_end(&t, GH_TT_RESET, 1400); /* the current one is unrecorded: ignored */
}

static const char *attr(json_t *span, const char *key)
{
    json_t *a = json_object_get(span, "attributes");
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!strcmp(json_string_value(json_object_get(v, "key")), key)) {
            json_t *val = json_object_get(v, "value");
            json_t *s = json_object_get(val, "stringValue");
            return s ? json_string_value(s) : json_string_value(json_object_get(val, "intValue"));
        }
    }
    return NULL;
}

static void test_record_json(void)
{
    gh_trace_ctx_t t;
    memset(&t, 0, sizeof t);
    /* wall clock 1.7e18 ns at monotonic 1000 us */
    gh_trace_begin(&t, gh_str(good, strlen(good)), 1.0, 1, seq_rand, NULL, 1000, 1700000000000000000ull);
    t.tracestate = GH_STR("rojo=00f067aa0ba902b7");
    gh_trace_try_begin(&t, "127.0.0.1:8081", 0xa1a1a1a1a1a1a1a1ull, 1100);
    gh_trace_try_status(&t, 503);
    gh_trace_try_end(&t, GH_TT_RETRIED, 1200);
    gh_trace_try_begin(&t, "[::1]:8082", 0xb2b2b2b2b2b2b2b2ull, 1300);
    gh_trace_try_status(&t, 502);
    gh_trace_req_t q = {.ctx = &t,
                        .start_us = 1000,
                        .end_us = 2000,
                        .status = 502,
                        .method = GH_STR("GET"),
                        .path = GH_STR("/a\"b"),
                        .host = GH_STR("example.com:8080"),
                        .tenant = GH_STR("acme"),
                        .route = GH_STR("r"),
                        .client = GH_STR("10.1.2.3"),
                        .proto = GH_STR("1.1"),
                        .upstream = GH_STR("app"),
                        .request_id = GH_STR("rid-1"),
                        .cache = GH_STR("miss"),
                        .prot_action = GH_STR("log"),
                        .prot_reason = GH_STR("rate")};
    char rec[8192], js[16384];
    size_t n = gh_trace_record_encode(rec, sizeof rec, &q);
    CHECK(n > 64);
    int ns = 0;
    size_t m = gh_trace_record_json(js, sizeof js, rec, n, &ns);
    CHECK(m > 0);
    CHECK_INT(ns, 3);
    char doc[20000];
    snprintf(doc, sizeof doc, "[%.*s]", (int)m, js);
    json_error_t err;
    json_t *spans = json_loads(doc, 0, &err);
    CHECK(spans != NULL);
    if (!spans) {
        fprintf(stderr, "%s\n%s\n", err.text, doc);
        return;
    }
    CHECK_INT(json_array_size(spans), 3);
    json_t *srv = json_array_get(spans, 0), *t1 = json_array_get(spans, 1), *t2 = json_array_get(spans, 2);
    CHECK(!strcmp(json_string_value(json_object_get(srv, "traceId")), "4bf92f3577b34da6a3ce929d0e0e4736"));
    CHECK(!strcmp(json_string_value(json_object_get(srv, "parentSpanId")), "00f067aa0ba902b7"));
    CHECK(!strcmp(json_string_value(json_object_get(srv, "traceState")), "rojo=00f067aa0ba902b7"));
    CHECK(!strcmp(json_string_value(json_object_get(srv, "name")), "HTTP GET"));
    CHECK_INT(json_integer_value(json_object_get(srv, "kind")), 2);
    CHECK(!strcmp(json_string_value(json_object_get(srv, "startTimeUnixNano")), "1700000000000000000"));
    CHECK(!strcmp(json_string_value(json_object_get(srv, "endTimeUnixNano")), "1700000000001000000"));
    CHECK(!strcmp(attr(srv, "url.path"), "/a\"b"));
    CHECK(!strcmp(attr(srv, "server.address"), "example.com"));
    CHECK(!strcmp(attr(srv, "server.port"), "8080"));
    CHECK(!strcmp(attr(srv, "http.response.status_code"), "502"));
    CHECK(!strcmp(attr(srv, "gatehouse.cache.result"), "miss"));
    CHECK(!strcmp(attr(srv, "gatehouse.protect.decision"), "log"));
    CHECK(!strcmp(attr(srv, "gatehouse.request_id"), "rid-1"));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(srv, "status"), "code")), 2);
    CHECK_INT(json_array_size(json_object_get(srv, "events")), 2);
    CHECK(!strcmp(json_string_value(json_object_get(t1, "spanId")), "a1a1a1a1a1a1a1a1"));
    CHECK(!strcmp(json_string_value(json_object_get(t1, "parentSpanId")),
                  json_string_value(json_object_get(srv, "spanId"))));
    CHECK_INT(json_integer_value(json_object_get(t1, "kind")), 3);
    CHECK(!strcmp(attr(t1, "gatehouse.try.outcome"), "retried_status"));
    CHECK(!strcmp(attr(t1, "server.port"), "8081"));
    CHECK(!strcmp(json_string_value(json_object_get(t1, "endTimeUnixNano")), "1700000000000200000"));
    CHECK(!strcmp(attr(t2, "gatehouse.try"), "2"));
    CHECK(!strcmp(attr(t2, "gatehouse.try.outcome"), "ok")); /* closed by the request's end */
    CHECK(!strcmp(attr(t2, "server.address"), "::1"));
    CHECK(!strcmp(json_string_value(json_object_get(t2, "endTimeUnixNano")), "1700000000001000000"));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(t2, "status"), "code")), 2); /* a 502 */
    json_decref(spans);
    /* a truncated or corrupt record is refused, never read past */
    for (size_t cut = 0; cut < n; cut += 7)
        CHECK_INT(gh_trace_record_json(js, sizeof js, rec, cut, &ns), 0);
    /* too small an output: 0, not a cut document */
    CHECK_INT(gh_trace_record_json(js, 100, rec, n, &ns), 0);
}

int main(void)
{
    RUN(test_parse_valid);
    RUN(test_parse_invalid);
    RUN(test_begin_sampling);
    RUN(test_tries);
    RUN(test_record_json);
    return t_done("trace");
}
