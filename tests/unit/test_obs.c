/* Unit tests for src/obs: access-log record formatting (and the JSON string escaper it uses)
 * and metrics rendering. */
#include <stdlib.h>
#include <unistd.h>

#include "core/json.h"
#include "obs/accesslog.h"
#include "obs/metrics.h"
#include "t.h"

static void test_accesslog_format(void)
{
    gh_access_rec_t r = {
        .time_ms = 1700000000123ull,
        .client = GH_STR("127.0.0.1"),
        .tenant = GH_STR("acme"),
        .route = GH_STR("api"),
        .method = GH_STR("GET"),
        .host = GH_STR("example.com"),
        .path = GH_STR("/a\"b\\c\x01\xff"),
        .query = GH_STR("x=1"),
        .status = 200,
        .bytes_in = 10,
        .bytes_out = 2000,
        .upstream = GH_STR("127.0.0.1:9000"),
        .upstream_us = 1500,
        .total_us = 2500,
        .request_id = GH_STR("abc"),
    };
    char line[4096];
    size_t n = gh_accesslog_format(line, sizeof line, &r);
    line[n] = 0;
    CHECK(n > 0 && line[n - 1] == '\n');
    CHECK(strstr(line, "\"time\":\"2023-11-14T22:13:20.123Z\"") != NULL);
    CHECK(strstr(line, "\"path\":\"/a\\\"b\\\\c\\u0001\\u00ff\"") != NULL);
    CHECK(strstr(line, "\"status\":200,\"bytes_in\":10,\"bytes_out\":2000") != NULL);
    CHECK(strstr(line, "\"upstream\":\"127.0.0.1:9000\"") != NULL);
    CHECK(strstr(line, "\"upstream_time_ms\":1.500") != NULL);
    CHECK(strstr(line, "\"total_time_ms\":2.500}") != NULL);
    CHECK(strstr(line, "\"request_id\":\"abc\"") != NULL);

    r.upstream = GH_STR_NULL;
    r.upstream_us = -1;
    n = gh_accesslog_format(line, sizeof line, &r);
    line[n] = 0;
    CHECK(strstr(line, "\"upstream\":null,\"upstream_time_ms\":null") != NULL);

    /* the numbers are written without printf: the same text as printf's, at the edges too */
    static const uint64_t us[] = {0, 1, 9, 10, 99, 100, 999, 1000, 1001, 123456789,
                                  9999999999999999999ull, 10000000000000000000ull, 18446744073709551615ull};
    for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
        char want[64];
        r.total_us = us[i];
        r.bytes_out = us[i];
        r.time_ms = 1700000000000ull + i * 1001; /* other seconds and milliseconds */
        n = gh_accesslog_format(line, sizeof line, &r);
        line[n] = 0;
        snprintf(want, sizeof want, "\"total_time_ms\":%llu.%03llu}", (unsigned long long)(us[i] / 1000),
                 (unsigned long long)(us[i] % 1000));
        CHECK(strstr(line, want) != NULL);
        snprintf(want, sizeof want, "\"bytes_out\":%llu,", (unsigned long long)us[i]);
        CHECK(strstr(line, want) != NULL);
        unsigned ms = (unsigned)((1700000000000ull + i * 1001) % 1000);
        snprintf(want, sizeof want, ".%03uZ\"", ms);
        CHECK(strstr(line, want) != NULL);
    }
}

static void test_accesslog_bounded(void)
{
    /* a huge path is cut, and the line still ends as valid JSON */
    size_t big = 100000;
    char *p = malloc(big);
    memset(p, '"', big);
    gh_access_rec_t r = {.path = gh_str(p, big), .status = 200, .upstream_us = -1};
    char line[8192];
    size_t n = gh_accesslog_format(line, sizeof line, &r);
    CHECK(n < sizeof line);
    CHECK(n > 2 && line[n - 2] == '}' && line[n - 1] == '\n');
    free(p);
}

static void test_exposurelog_bounded(void)
{
    /* every field at its longest and all quotes (each escaped to two bytes): the line is cut inside
     * the writer's line bound and still ends as valid JSON; a plain one keeps every field */
    size_t big = 100000;
    char *p = malloc(big);
    memset(p, '"', big);
    gh_str_t q = gh_str(p, big);
    gh_exposure_rec_t e = {.time_ms = 1700000000000ull, .tenant = q, .route = q, .flag = q, .variant = q,
                           .reason = q, .unit = q, .request_id = q};
    char line[8192];
    size_t n = gh_exposurelog_format(line, sizeof line, &e);
    CHECK(n < sizeof line);
    CHECK(n > 2 && line[n - 2] == '}' && line[n - 1] == '\n');
    e = (gh_exposure_rec_t){.time_ms = 1700000000123ull, .tenant = GH_STR("shop"), .route = GH_STR("home"),
                            .flag = GH_STR("new-home"), .variant = GH_STR("on"), .reason = GH_STR("SPLIT"),
                            .unit = GH_STR("u\"1"), .request_id = GH_STR("r1")};
    n = gh_exposurelog_format(line, sizeof line, &e);
    line[n] = 0;
    CHECK_STR(gh_str(line, n), "{\"time\":\"2023-11-14T22:13:20.123Z\",\"tenant\":\"shop\",\"route\":\"home\","
                               "\"flag\":\"new-home\",\"variant\":\"on\",\"reason\":\"SPLIT\",\"unit\":\"u\\\"1\","
                               "\"request_id\":\"r1\"}\n");
    free(p);
}

/* Records of every size through the real writer: the worker's copies (records that do not fit
 * before the ring's end skip to its start), the writer's batch formatting and the file. Every
 * record comes out once, in order, as gh_accesslog_format writes it alone. */
static char paths[3000], quote[300];

/* Record i of the test (id: its request id's buffer) */
static gh_access_rec_t writer_rec(uint32_t i, char id[32])
{
    int idn = snprintf(id, 32, "req-%u", i);
    gh_access_rec_t r = {.time_ms = 1700000000000ull + i, .client = GH_STR("192.0.2.1"), .tenant = GH_STR("t"),
                         .route = GH_STR("r"), .method = GH_STR("GET"), .host = GH_STR("h"),
                         .path = gh_str(paths, (i * 37) % sizeof paths), /* 0..2999 bytes: cut at 2048 */
                         .query = gh_str(quote, i % 7 == 0 ? i % sizeof quote : 0),
                         .request_id = gh_str(id, (size_t)idn), .proto = GH_STR("HTTP/1.1"),
                         .status = 200 + (int)(i % 5), .bytes_in = i, .bytes_out = 2 * i,
                         .upstream_us = i % 3 ? (int64_t)i : -1, .total_us = 3 * i};
    if (i % 11 == 0)
        r.protect_reason = GH_STR("rate_limit"), r.protect_action = GH_STR("deny"), r.protect_detail = GH_STR("d");
    return r;
}

static void test_accesslog_records_through_the_writer(void)
{
    char path[] = "/tmp/gh-test-accesslog-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT(gh_accesslog_start(path, 2, 0, 1), 0);
    enum { N = 12000 };
    memset(paths, 'p', sizeof paths);
    memset(quote, '"', sizeof quote);
    size_t want_bytes = 0;
    uint32_t dropped_retries = 0;
    for (uint32_t i = 0; i < N; i++) {
        char id[32];
        gh_access_rec_t r = writer_rec(i, id);
        char line[8192];
        want_bytes += gh_accesslog_format(line, sizeof line, &r);
        while (gh_accesslog_log(i % 2, &r) != 0) { /* a full ring: the writer catches up */
            dropped_retries++;
            usleep(1000);
        }
    }
    gh_accesslog_stop(); /* drains everything */
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char got[8192];
    uint32_t next[2] = {0, 1}, lines = 0, bad = 0;
    size_t bytes = 0;
    while (fgets(got, sizeof got, f)) {
        lines++;
        bytes += strlen(got);
        unsigned i;
        const char *q = strstr(got, "\"request_id\":\"req-");
        if (!q || sscanf(q, "\"request_id\":\"req-%u", &i) != 1 || i >= N || i != next[i % 2]) {
            bad++;
            continue;
        }
        next[i % 2] += 2; /* per producer, in order */
        char id[32];
        gh_access_rec_t r = writer_rec(i, id);
        char want[8192];
        size_t wn = gh_accesslog_format(want, sizeof want, &r);
        if (wn != strlen(got) || memcmp(want, got, wn) != 0)
            bad++;
    }
    fclose(f);
    unlink(path);
    CHECK_INT(lines, N);
    CHECK_INT(bad, 0);
    CHECK_INT(bytes, want_bytes);
    CHECK(next[0] == N && next[1] == N + 1);
    fprintf(stderr, "  (%u waits for a full ring)\n", dropped_retries);
}

static void test_metrics_render(void)
{
    CHECK_INT(gh_metrics_init(2), 0);
    gh_conf_route_t route = {.name = "api"};
    gh_conf_site_t site = {.routes = &route, .nroutes = 1};
    gh_conf_tenant_t tenant = {.name = "acme", .sites = &site, .nsites = 1};
    gh_conf_upstream_t up = {.name = "app"};
    gh_conf_t c = {.tenants = &tenant, .ntenants = 1, .upstreams = &up, .nupstreams = 1};
    CHECK_INT(gh_metrics_bind(&c), 0);
    CHECK(route.stats != NULL && up.stats != NULL);
    gh_metrics_request(route.stats, 0, 200, 1500, 1, 2);
    gh_metrics_request(route.stats, 1, 503, 20000000, 1, 2);
    gh_metrics_request(route.stats, 1, 204, 100, 1, 2);
    gh_upstream_stats_t *us = up.stats;
    GH_COUNT(us->slot[1].connect_errors, 3);
    GH_COUNT(gh_metrics_thread(0)->parser_rejections[gh_err_index(GH_EH1_CL_AND_TE)], 1);
    size_t len = 0;
    char *text = gh_metrics_render(&len);
    CHECK(text != NULL && len == strlen(text));
    CHECK(strstr(text, "gatehouse_requests_total{tenant=\"acme\",route=\"api\",code=\"2xx\"} 2\n") != NULL);
    CHECK(strstr(text, "gatehouse_requests_total{tenant=\"acme\",route=\"api\",code=\"5xx\"} 1\n") != NULL);
    /* cumulative buckets: 100us and 1.5ms under 2.5ms, the 20 s one only in +Inf */
    CHECK(strstr(text, "le=\"0.001\"} 1\n") != NULL);
    CHECK(strstr(text, "le=\"0.0025\"} 2\n") != NULL);
    CHECK(strstr(text, "le=\"10\"} 2\n") != NULL);
    CHECK(strstr(text, "le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(text, "gatehouse_request_duration_seconds_count{tenant=\"acme\",route=\"api\"} 3\n") != NULL);
    CHECK(strstr(text, "gatehouse_upstream_connect_errors_total{upstream=\"app\"} 3\n") != NULL);
    CHECK(strstr(text, "gatehouse_parser_rejections_total{reason=\"H1_CL_AND_TE\"} 1\n") != NULL);
    free(text);
    /* a second bind with the same names keeps the same series */
    void *before = route.stats;
    route.stats = NULL;
    gh_metrics_bind(&c);
    CHECK(route.stats == before);
}

/* The escaper one byte at a time, as the specification in json.h reads: the word-at-a-time
 * gh_json_str must write exactly this for every input, capacity and mode. */
static size_t ref_json_str(char *out, size_t cap, gh_str_t s, int utf8)
{
    static const char hex[] = "0123456789abcdef";
    if (cap < 2)
        return 0;
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        size_t need = c == '"' || c == '\\' ? 2 : c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8) ? 6 : 1;
        if (n + need + 1 > cap)
            break;
        if (need == 2) {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (need == 6) {
            n += (size_t)sprintf(out + n, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    return n;
}

static void test_json_str_matches_reference(void)
{
    /* bytes drawn mostly from the plain ones, with every special kind mixed in at every
     * offset of a word, and capacities that cut inside and at the edges of escapes */
    static const unsigned char special[] = {'"', '\\', 0, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, 'a', '~', '!', '#', '[', ']'};
    unsigned seed = 12345;
    char in[80], got[600], want[600];
    int mismatches = 0;
    for (int iter = 0; iter < 200000 && mismatches < 5; iter++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 8) % sizeof in;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = seed >> 16;
            in[i] = (char)(r % 8 == 0 ? special[(r >> 3) % sizeof special] : 'A' + (r >> 3) % 26);
        }
        seed = seed * 1103515245u + 12345u;
        size_t cap = iter % 3 ? sizeof got : (seed >> 8) % (len * 6 + 4);
        int utf8 = iter & 1;
        memset(got, 'x', sizeof got);
        memset(want, 'x', sizeof want);
        size_t a = gh_json_str(got, cap, gh_str(in, len), utf8), b = ref_json_str(want, cap, gh_str(in, len), utf8);
        /* the same result, and nothing written at or past cap (before it is scratch) */
        if (a != b || memcmp(got, want, a) != 0 || memcmp(got + cap, want + cap, sizeof got - cap) != 0) {
            mismatches++;
            fprintf(stderr, "len %zu cap %zu utf8 %d: %zu vs %zu bytes\n", len, cap, utf8, a, b);
        }
    }
    CHECK_INT(mismatches, 0);
    char out[64];
    size_t n = gh_json_str(out, sizeof out, GH_STR("plain ascii, sixteen+ \"q\" \x01\x7f\xc3\xa9"), 0);
    CHECK_STR(gh_str(out, n), "\"plain ascii, sixteen+ \\\"q\\\" \\u0001\\u007f\\u00c3\\u00a9\"");
}

int main(void)
{
    RUN(test_json_str_matches_reference);
    RUN(test_accesslog_format);
    RUN(test_accesslog_bounded);
    RUN(test_exposurelog_bounded);
    RUN(test_accesslog_records_through_the_writer);
    RUN(test_metrics_render);
    return t_done("test_obs");
}
