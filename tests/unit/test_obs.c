/* Unit tests for src/obs: access-log record formatting and metrics rendering. */
#include <stdlib.h>

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
    static const uint64_t us[] = {0, 1, 9, 10, 999, 1000, 1001, 123456789, 18446744073709551615ull};
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

int main(void)
{
    RUN(test_accesslog_format);
    RUN(test_accesslog_bounded);
    RUN(test_metrics_render);
    return t_done("test_obs");
}
