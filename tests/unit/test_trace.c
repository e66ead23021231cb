/* test_trace.c: src/obs/trace.c without threads or sockets: the strict traceparent parser,
 * the context (sampling, respect_parent, try span ids), and ring records turned into OTLP
 * JSON (checked with jansson, as a collector would read it) and into an OTLP protobuf
 * ExportTraceServiceRequest (unpacked with the protoc-c code, compared span by span with
 * the JSON of the same records). */
#include "obs/trace.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
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

/* The word-at-a-time hex: every byte value in every position of a word, and the byte-wise tail,
 * against printf's. */
static void test_hex(void)
{
    uint8_t b[7];
    char got[14], want[15];
    for (int v = 0; v < 256; v++)
        for (int pos = 0; pos < 7; pos++) {
            for (int i = 0; i < 7; i++)
                b[i] = (uint8_t)(i == pos ? v : 0x5a + 37 * i);
            gh_trace_hex(got, b, 7);
            for (int i = 0; i < 7; i++)
                snprintf(want + 2 * i, 3, "%02x", b[i]);
            CHECK(!memcmp(got, want, 14));
        }
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
    memset(rec, '7', sizeof rec); /* regression: digits after the record are no part of a port */
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
    CHECK(!strcmp(attr(t2, "server.port"), "8082")); /* the record's last bytes: '7's follow */
    CHECK(!strcmp(json_string_value(json_object_get(t2, "endTimeUnixNano")), "1700000000001000000"));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(t2, "status"), "code")), 2); /* a 502 */
    json_decref(spans);
    /* a truncated or corrupt record is refused, never read past */
    for (size_t cut = 0; cut < n; cut += 7)
        CHECK_INT(gh_trace_record_json(js, sizeof js, rec, cut, &ns), 0);
    /* too small an output: 0, not a cut document */
    CHECK_INT(gh_trace_record_json(js, 100, rec, n, &ns), 0);
}

typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;

/* a protobuf attribute list equals a JSON one: same keys in the same order, same values */
static int same_attrs(kv_t **kv, size_t n, json_t *ja)
{
    if (json_array_size(ja) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_array_get(ja, i), *val = json_object_get(j, "value");
        if (strcmp(kv[i]->key, json_string_value(json_object_get(j, "key"))))
            return 0;
        const Opentelemetry__Proto__Common__V1__AnyValue *v = kv[i]->value;
        if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE) {
            json_t *sv = json_object_get(val, "stringValue");
            if (!sv || strcmp(v->string_value, json_string_value(sv)))
                return 0;
        } else if (v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE) {
            char b[32];
            snprintf(b, sizeof b, "%" PRId64, v->int_value);
            json_t *iv = json_object_get(val, "intValue");
            if (!iv || strcmp(b, json_string_value(iv)))
                return 0;
        } else {
            return 0;
        }
    }
    return 1;
}

static int same_hex(ProtobufCBinaryData b, json_t *hex)
{
    char h[40] = "";
    if (b.len > 16)
        return 0;
    gh_trace_hex(h, b.data, b.len);
    h[2 * b.len] = 0;
    return hex ? !strcmp(h, json_string_value(hex)) : b.len == 0;
}

static int same_u64(uint64_t v, json_t *s)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return s && !strcmp(b, json_string_value(s));
}

static void test_record_protobuf(void)
{
    /* two records: a continued trace with a retried try (as test_record_json), then a new
     * root trace without tries or events */
    gh_trace_ctx_t t, t2;
    memset(&t, 0, sizeof t);
    memset(&t2, 0, sizeof t2);
    gh_trace_begin(&t, gh_str(good, strlen(good)), 1.0, 1, seq_rand, NULL, 1000, 1700000000000000000ull);
    t.tracestate = GH_STR("rojo=00f067aa0ba902b7");
    gh_trace_try_begin(&t, "127.0.0.1:8081", 0xa1a1a1a1a1a1a1a1ull, 1100);
    gh_trace_try_status(&t, 503);
    gh_trace_try_end(&t, GH_TT_RETRIED, 1200);
    gh_trace_try_begin(&t, "[::1]:8082", 0xb2b2b2b2b2b2b2b2ull, 1300);
    gh_trace_try_status(&t, 200);
    gh_trace_begin(&t2, GH_STR_NULL, 1.0, 1, seq_rand, NULL, 5000, 1700000000100000000ull);
    gh_trace_req_t q = {.ctx = &t, .start_us = 1000, .end_us = 2000, .status = 200, .method = GH_STR("POST"),
                        .path = GH_STR("/p\xc3\xa9"), .host = GH_STR("[2001:db8::1]:8443"), .tenant = GH_STR("acme"),
                        .route = GH_STR("r"), .client = GH_STR("10.1.2.3"), .proto = GH_STR("2"),
                        .upstream = GH_STR("grpc"), .request_id = GH_STR("rid-pb"), .cache = GH_STR("bypass"),
                        .prot_action = GH_STR("log"), .prot_reason = GH_STR("bot"), .prot_detail = GH_STR("ua")};
    gh_trace_req_t q2 = {.ctx = &t2, .start_us = 5000, .end_us = 5500, .status = 503, .method = GH_STR("GET"),
                         .path = GH_STR("/"), .host = GH_STR("example.com"), .client = GH_STR("::1"),
                         .proto = GH_STR("1.1")};
    char recs[16384], js[32768];
    size_t n1 = gh_trace_record_encode(recs, sizeof recs, &q);
    size_t n2 = gh_trace_record_encode(recs + n1, sizeof recs - n1, &q2);
    CHECK(n1 > 64 && n2 > 64);
    /* the JSON of both, as one array */
    int ns1 = 0, ns2 = 0;
    size_t at = 0;
    js[at++] = '[';
    at += gh_trace_record_json(js + at, sizeof js - at, recs, n1, &ns1);
    js[at++] = ',';
    at += gh_trace_record_json(js + at, sizeof js - at, recs + n1, n2, &ns2);
    js[at++] = ']';
    js[at] = 0;
    CHECK_INT(ns1, 3);
    CHECK_INT(ns2, 1);
    json_error_t err;
    json_t *jspans = json_loads(js, 0, &err);
    CHECK(jspans != NULL);
    size_t pl = 0;
    int ns = 0;
    uint8_t *pb = gh_trace_records_protobuf(recs, n1 + n2, "edge", "1.2.3", &pl, &ns);
    CHECK(pb != NULL && pl > 0);
    CHECK_INT(ns, 4);
    if (!jspans || !pb) {
        free(pb);
        json_decref(jspans);
        return;
    }
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, pl, pb);
    CHECK(req != NULL);
    CHECK(req && req->n_resource_spans == 1 && req->resource_spans[0]->n_scope_spans == 1);
    if (req && req->n_resource_spans == 1 && req->resource_spans[0]->n_scope_spans == 1) {
        const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
        CHECK(rs->resource && rs->resource->n_attributes == 2);
        CHECK(!strcmp(rs->resource->attributes[0]->key, "service.name"));
        CHECK(!strcmp(rs->resource->attributes[0]->value->string_value, "edge"));
        CHECK(!strcmp(rs->resource->attributes[1]->value->string_value, "1.2.3"));
        const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[0];
        CHECK(ss->scope && !strcmp(ss->scope->name, "gatehouse") && !strcmp(ss->scope->version, "1.2.3"));
        CHECK_INT(ss->n_spans, 4);
        for (size_t i = 0; i < ss->n_spans && i < json_array_size(jspans); i++) {
            const Opentelemetry__Proto__Trace__V1__Span *sp = ss->spans[i];
            json_t *j = json_array_get(jspans, i);
            CHECK(sp->trace_id.len == 16 && sp->span_id.len == 8);
            CHECK(same_hex(sp->trace_id, json_object_get(j, "traceId")));
            CHECK(same_hex(sp->span_id, json_object_get(j, "spanId")));
            CHECK(same_hex(sp->parent_span_id, json_object_get(j, "parentSpanId")));
            json_t *ts = json_object_get(j, "traceState");
            CHECK(ts ? !strcmp(sp->trace_state, json_string_value(ts)) : !sp->trace_state[0]);
            CHECK(!strcmp(sp->name, json_string_value(json_object_get(j, "name"))));
            CHECK_INT(sp->kind, json_integer_value(json_object_get(j, "kind")));
            CHECK_INT(sp->flags, json_integer_value(json_object_get(j, "flags")));
            CHECK(same_u64(sp->start_time_unix_nano, json_object_get(j, "startTimeUnixNano")));
            CHECK(same_u64(sp->end_time_unix_nano, json_object_get(j, "endTimeUnixNano")));
            CHECK(same_attrs(sp->attributes, sp->n_attributes, json_object_get(j, "attributes")));
            json_t *ev = json_object_get(j, "events");
            CHECK_INT(sp->n_events, json_array_size(ev));
            for (size_t e = 0; e < sp->n_events && e < json_array_size(ev); e++) {
                json_t *je = json_array_get(ev, e);
                CHECK(!strcmp(sp->events[e]->name, json_string_value(json_object_get(je, "name"))));
                CHECK(same_u64(sp->events[e]->time_unix_nano, json_object_get(je, "timeUnixNano")));
                CHECK(same_attrs(sp->events[e]->attributes, sp->events[e]->n_attributes,
                                 json_object_get(je, "attributes")));
            }
            json_t *st = json_object_get(j, "status");
            if (st) {
                CHECK(sp->status && (int)sp->status->code == json_integer_value(json_object_get(st, "code")));
                CHECK(sp->status && !strcmp(sp->status->message, json_string_value(json_object_get(st, "message"))));
            } else {
                CHECK(!sp->status);
            }
        }
        /* what the JSON and the protobuf agree on, checked against what was recorded */
        const Opentelemetry__Proto__Trace__V1__Span *srv = ss->spans[0], *t1 = ss->spans[1], *root = ss->spans[3];
        CHECK_INT(srv->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
        CHECK_INT(srv->flags, 0x301); /* sampled, with a remote parent */
        CHECK_INT(t1->flags, 0x101);  /* sampled, a local parent */
        CHECK_INT(root->flags, 0x101);
        CHECK(!memcmp(t1->parent_span_id.data, srv->span_id.data, 8));
        CHECK_INT(srv->start_time_unix_nano, 1700000000000000000ull);
        CHECK_INT(srv->n_events, 2);
        CHECK_INT(root->parent_span_id.len, 0);
        CHECK(root->status && root->status->code == OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
        CHECK_INT(ss->spans[2]->status == NULL, 1); /* a try that got a 200 */
    }
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req, NULL);
    free(pb);
    json_decref(jspans);
    /* a cut record is refused whole */
    for (size_t cut = 1; cut < n1 + n2; cut += 13) {
        uint8_t *bad = gh_trace_records_protobuf(recs, cut, "edge", "1", &pl, &ns);
        CHECK(bad == NULL || cut == n1);
        free(bad);
    }
}

int main(void)
{
    RUN(test_parse_valid);
    RUN(test_hex);
    RUN(test_parse_invalid);
    RUN(test_begin_sampling);
    RUN(test_tries);
    RUN(test_record_json);
    RUN(test_record_protobuf);
    return t_done("trace");
}
