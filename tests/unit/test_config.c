/* test_config.c: the YAML loader, validator and compiler (src/config/config.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/router.h"
#include "t.h"

#define LISTEN "listeners: [{listen: \"127.0.0.1:8080\"}]\n" /* line 1 of most cases */

static int load(const char *yaml, gh_conf_t **c, gh_conf_errors_t *e)
{
    return gh_conf_load_string("t.yaml", yaml, strlen(yaml), c, e);
}

static void dump(const gh_conf_errors_t *e)
{
    for (uint32_t i = 0; i < e->n; i++)
        fprintf(stderr, "    got: %s\n", e->msgs[i]);
}

/* The load fails with exactly one error, and it starts with want. */
static void expect_err(int line, const char *yaml, const char *want)
{
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    int rc = load(yaml, &c, &e);
    if (rc != GH_ECONFIG || c != NULL || e.n != 1 || strncmp(e.msgs[0], want, strlen(want)) != 0) {
        t_cur_fail++;
        fprintf(stderr, "%s:%d: rc %d, %u errors; want one error starting with\n    want: %s\n",
                __FILE__, line, rc, e.n, want);
        dump(&e);
    }
    gh_conf_errors_free(&e);
    if (c)
        gh_conf_unref(c);
}
#define EXPECT_ERR(yaml, want) expect_err(__LINE__, yaml, want)

static gh_conf_t *load_ok(int line, const char *yaml)
{
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    int rc = load(yaml, &c, &e);
    if (rc != 0 || !c || e.n) {
        t_cur_fail++;
        fprintf(stderr, "%s:%d: load failed (rc %d)\n", __FILE__, line, rc);
        dump(&e);
    }
    gh_conf_errors_free(&e);
    return c;
}
#define LOAD_OK(yaml) load_ok(__LINE__, yaml)

/* ---------------------------------------------------------------- errors */

static void test_err_unknown_key(void)
{
    EXPECT_ERR(LISTEN "wrkers: 2\n", "t.yaml:2:1: wrkers: unknown key \"wrkers\" (allowed here: workers,");
    EXPECT_ERR(LISTEN "upstreams:\n  u:\n    backends: [\"127.0.0.1:1\"]\n    timeout: 1s\n",
               "t.yaml:5:5: upstreams.u.timeout: unknown key \"timeout\"");
    /* only max_body_size can be set per route */
    EXPECT_ERR(LISTEN "tenants:\n"
                      "  - name: a\n"
                      "    sites:\n"
                      "      - hosts: [a.test]\n"
                      "        routes:\n"
                      "          - {respond: {}, limits: {max_headers: 5}}\n",
               "t.yaml:7:36: tenants[0].sites[0].routes[0].limits.max_headers: unknown key "
               "\"max_headers\" (allowed here: max_body_size)");
}

static void test_err_wrong_type(void)
{
    EXPECT_ERR(LISTEN "workers: [1]\n", "t.yaml:2:10: workers: expected an integer, got a sequence");
    EXPECT_ERR(LISTEN "workers: two\n", "t.yaml:2:10: workers: expected an integer, got \"two\"");
    EXPECT_ERR(LISTEN "tenants: {a: 1}\n", "t.yaml:2:10: tenants: expected a sequence, got a mapping");
    EXPECT_ERR(LISTEN "via: maybe\n", "t.yaml:2:6: via: expected a boolean (true or false), got \"maybe\"");
    EXPECT_ERR(LISTEN "pid_file:\n", "t.yaml:2:10: pid_file: expected a string, got null");
    EXPECT_ERR("- a\n- b\n", "t.yaml:1:1: (root): the configuration must be a mapping, got a sequence");
    EXPECT_ERR(LISTEN "access_log: /var/log/x\n",
               "t.yaml:2:13: access_log: expected a mapping or a boolean, got a scalar");
}

static void test_err_duration_size(void)
{
    EXPECT_ERR(LISTEN "drain_timeout: 10x\n", "t.yaml:2:16: drain_timeout: bad duration \"10x\"");
    EXPECT_ERR(LISTEN "timeouts:\n  client_body: 1.5s\n",
               "t.yaml:3:16: timeouts.client_body: bad duration \"1.5s\"");
    EXPECT_ERR(LISTEN "timeouts: {keepalive: 0}\n", "t.yaml:2:23: timeouts.keepalive: must not be 0");
    EXPECT_ERR(LISTEN "timeouts: {request: 5000000h}\n",
               "t.yaml:2:21: timeouts.request: duration \"5000000h\" is too large");
    EXPECT_ERR(LISTEN "limits: {max_body_size: 12q}\n",
               "t.yaml:2:25: limits.max_body_size: bad size \"12q\"");
    EXPECT_ERR(LISTEN "limits:\n  max_request_line: 100\n",
               "t.yaml:3:21: limits.max_request_line: size \"100\" is out of range 256..1048576 bytes");
    EXPECT_ERR(LISTEN "limits:\n  max_header_size: 2m\n",
               "t.yaml:3:20: limits.max_header_size: size \"2m\" is out of range 1024..1048576 bytes");
    EXPECT_ERR(LISTEN "limits: {max_headers: 1001}\n",
               "t.yaml:2:23: limits.max_headers: 1001 is out of range 1..1000");
    EXPECT_ERR(LISTEN "limits: {max_body_size: 99999999999999999999g}\n",
               "t.yaml:2:25: limits.max_body_size: bad size");
}

static void test_err_range(void)
{
    EXPECT_ERR(LISTEN "workers: 300\n", "t.yaml:2:10: workers: 300 is out of range 1..256");
    EXPECT_ERR(LISTEN "workers: 0\n", "t.yaml:2:10: workers: 0 is out of range 1..256");
    EXPECT_ERR("listeners: [{listen: \":80\", backlog: 0}]\n",
               "t.yaml:1:38: listeners[0].backlog: 0 is out of range 1..65535");
}

#define TENANT_U                                               \
    LISTEN "upstreams: {u: {backends: [\"127.0.0.1:9000\"]}}\n" \
           "tenants:\n"                                        \
           "  - name: a\n"                                     \
           "    sites:\n"                                      \
           "      - hosts: [a.test]\n"                         \
           "        routes:\n" /* routes from line 8 */

static void test_err_routes(void)
{
    EXPECT_ERR(TENANT_U "          - upstream: nope\n",
               "t.yaml:8:23: tenants[0].sites[0].routes[0].upstream: unknown upstream \"nope\"");
    EXPECT_ERR(TENANT_U "          - {upstream: u, respond: {status: 200}}\n",
               "t.yaml:8:13: tenants[0].sites[0].routes[0]: has both upstream and respond");
    EXPECT_ERR(TENANT_U "          - {name: x}\n",
               "t.yaml:8:13: tenants[0].sites[0].routes[0]: needs one of upstream or respond");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {path: {regex: \"a(\"}}}\n",
               "t.yaml:8:49: tenants[0].sites[0].routes[0].match.path.regex: bad regex \"a(\": "
               "missing closing parenthesis at offset 2");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {headers: [{name: X, regex: \"[\"}]}}\n",
               "t.yaml:8:62: tenants[0].sites[0].routes[0].match.headers[0].regex: bad regex \"[\"");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {headers: [{name: X, exact: a, present: true}]}}\n",
               "t.yaml:8:45: tenants[0].sites[0].routes[0].match.headers[0]: needs exactly one of "
               "exact, regex or present");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {path: {exact: /a, prefix: /b}}}\n",
               "t.yaml:8:41: tenants[0].sites[0].routes[0].match.path: needs exactly one of exact, "
               "prefix or regex");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {path: api}}\n",
               "t.yaml:8:41: tenants[0].sites[0].routes[0].match.path: a path must start with \"/\"");
    EXPECT_ERR(TENANT_U "          - {upstream: u, match: {methods: [get]}}\n",
               "t.yaml:8:45: tenants[0].sites[0].routes[0].match.methods[0]: method names are "
               "case-sensitive");
    EXPECT_ERR(TENANT_U "          - {respond: {status: 100}}\n",
               "t.yaml:8:32: tenants[0].sites[0].routes[0].respond.status: 100 is out of range 200..599");
    EXPECT_ERR(TENANT_U "          - {respond: {headers: {Content-Length: 3}}}\n",
               "t.yaml:8:34: tenants[0].sites[0].routes[0].respond.headers.Content-Length: is set by "
               "gatehouse");
    EXPECT_ERR(TENANT_U "          - {name: r, respond: {}}\n"
                        "      - hosts: [b.test]\n"
                        "        routes:\n"
                        "          - {name: r, upstream: u}\n",
               "t.yaml:11:20: tenants[0].sites[1].routes[0].name: route name \"r\" is used twice in "
               "tenant \"a\"");
    EXPECT_ERR(TENANT_U "          - {upstream: u, timeouts: {upstream_connect: 0}}\n",
               "t.yaml:8:56: tenants[0].sites[0].routes[0].timeouts.upstream_connect: must not be 0");
}

static void test_err_hosts(void)
{
    EXPECT_ERR(LISTEN "tenants:\n"
                      "  - name: a\n"
                      "    sites:\n"
                      "      - {name: one, hosts: [Example.com]}\n"
                      "  - name: b\n"
                      "    sites:\n"
                      "      - {name: two, hosts: [x.test, example.COM.]}\n",
               "t.yaml:8:37: tenants[1].sites[0].hosts[1]: duplicate host \"example.com\" in tenant "
               "\"b\" site \"two\": already in tenant \"a\" site \"one\" (tenants[0].sites[0].hosts[0] "
               "at line 5, column 29)");
    EXPECT_ERR(LISTEN "tenants:\n"
                      "  - name: a\n"
                      "    sites:\n"
                      "      - {hosts: [\"*.a.test\", \"*\"]}\n"
                      "      - {hosts: [\"*.A.test\"]}\n",
               "t.yaml:6:18: tenants[0].sites[1].hosts[0]: duplicate host \"*.a.test\"");
    EXPECT_ERR(LISTEN "tenants: [{name: a, sites: [{hosts: [a..b]}]}]\n",
               "t.yaml:2:38: tenants[0].sites[0].hosts[0]: bad host \"a..b\": empty label");
    EXPECT_ERR(LISTEN "tenants: [{name: a, sites: [{hosts: [\"a.test:80\"]}]}]\n",
               "t.yaml:2:38: tenants[0].sites[0].hosts[0]: bad host \"a.test:80\": a host must not "
               "include a port");
    EXPECT_ERR(LISTEN "tenants: [{name: a, sites: [{hosts: [\"x.*.test\"]}]}]\n",
               "t.yaml:2:38: tenants[0].sites[0].hosts[0]: bad host \"x.*.test\": a wildcard must be");
    EXPECT_ERR(LISTEN "tenants: [{name: a, sites: [{hosts: []}]}]\n",
               "t.yaml:2:37: tenants[0].sites[0].hosts: must not be empty");
    EXPECT_ERR(LISTEN "tenants: [{name: a}, {name: a}]\n",
               "t.yaml:2:29: tenants[1].name: tenant name \"a\" is used twice");
    EXPECT_ERR(LISTEN "tenants: [{sites: []}]\n", "t.yaml:2:11: tenants[0].name: required key is missing");
}

static void test_err_listeners(void)
{
    EXPECT_ERR(LISTEN "admin: {listen: \"127.0.0.1:8080\"}\n",
               "t.yaml:2:17: admin.listen: listen address \"127.0.0.1:8080\" conflicts with listener "
               "\"listener0\"");
    EXPECT_ERR("listeners:\n  - {listen: \":8080\"}\n  - {listen: \"127.0.0.1:8080\"}\n",
               "t.yaml:3:14: listeners[1].listen: listen address \"127.0.0.1:8080\" conflicts");
    EXPECT_ERR("listeners:\n  - {name: a, listen: \":1\"}\n  - {name: a, listen: \":2\"}\n",
               "t.yaml:3:23: listeners[1].listen: listener name \"a\" is used twice");
    EXPECT_ERR("listeners: [{listen: \"127.0.0.1\"}]\n",
               "t.yaml:1:22: listeners[0].listen: bad address \"127.0.0.1\": missing port");
    EXPECT_ERR("listeners: [{listen: \"::1:80\"}]\n",
               "t.yaml:1:22: listeners[0].listen: bad address \"::1:80\": IPv6 addresses need brackets");
    EXPECT_ERR("listeners: [{listen: \":0\"}]\n",
               "t.yaml:1:22: listeners[0].listen: bad address \":0\": port out of range");
    EXPECT_ERR("workers: 2\n", "t.yaml:1:1: listeners: required key is missing");
    EXPECT_ERR("listeners: []\n", "t.yaml:1:12: listeners: at least one proxy listener is required");
    EXPECT_ERR(LISTEN "demo_origin: {listen: \":9\", name: x}\n",
               "t.yaml:2:29: demo_origin.name: unknown key \"name\"");
}

static void test_err_addresses(void)
{
    EXPECT_ERR(LISTEN "upstreams:\n  u:\n    backends: [\"127.0.0.1\"]\n",
               "t.yaml:4:16: upstreams.u.backends[0]: bad address \"127.0.0.1\": missing port");
    EXPECT_ERR(LISTEN "upstreams:\n  u:\n    backends: [{address: \"[::1:80\"}]\n",
               "t.yaml:4:26: upstreams.u.backends[0].address: bad address \"[::1:80\": missing ']'");
    EXPECT_ERR(LISTEN "upstreams:\n  u:\n    backends: [\"[zz]:80\"]\n",
               "t.yaml:4:16: upstreams.u.backends[0]: bad address \"[zz]:80\": bad IPv6 address");
    EXPECT_ERR(LISTEN "upstreams:\n  u: {keepalive: 1}\n",
               "t.yaml:3:6: upstreams.u.backends: required key is missing");
    EXPECT_ERR(LISTEN "trusted_proxies: [10.0.0.0/40]\n",
               "t.yaml:2:19: trusted_proxies[0]: prefix length > 32: \"10.0.0.0/40\"");
    EXPECT_ERR(LISTEN "trusted_proxies: [\"10.0.0.1/8\"]\n",
               "t.yaml:2:19: trusted_proxies[0]: host bits set beyond /8 (10.0.0.0/8?): \"10.0.0.1/8\"");
    EXPECT_ERR(LISTEN "trusted_proxies: [example.com]\n",
               "t.yaml:2:19: trusted_proxies[0]: unexpected character 'e': \"example.com\"");
    EXPECT_ERR(LISTEN "trusted_proxies: [\"::1/129\"]\n",
               "t.yaml:2:19: trusted_proxies[0]: prefix length > 128: \"::1/129\"");
}

static void test_err_duplicate_keys(void)
{
    EXPECT_ERR(LISTEN "workers: 2\nworkers: 3\n",
               "t.yaml:3:1: workers: duplicate key (first at line 2, column 1)");
    EXPECT_ERR(LISTEN "upstreams:\n  u: {backends: [\"127.0.0.1:1\"]}\n  u: {backends: [\"127.0.0.1:2\"]}\n",
               "t.yaml:4:3: upstreams.u: duplicate key (first at line 3, column 3)");
    EXPECT_ERR(LISTEN "limits: {max_headers: 5, max_headers: 6}\n",
               "t.yaml:2:26: limits.max_headers: duplicate key (first at line 2, column 10)");
}

static void test_err_yaml_syntax(void)
{
    EXPECT_ERR(LISTEN "workers: 2\n  bad: 3\n",
               "t.yaml:3:6: (root): YAML syntax error: mapping values are not allowed in this context");
    EXPECT_ERR(LISTEN "tenants:\n\t- x\n",
               "t.yaml:3:1: (root): YAML syntax error: found character that cannot start any token");
    EXPECT_ERR("listeners: [{listen: \":1\"}\n", "t.yaml:2:1: (root): YAML syntax error: did not find "
                                                 "expected ',' or ']'");
    EXPECT_ERR("", "t.yaml:1:1: (root): the configuration is empty");
    EXPECT_ERR(LISTEN "---\nworkers: 1\n", "t.yaml:3:1: (root): only one YAML document is allowed");
    EXPECT_ERR(LISTEN "x: [\xff]\n", "t.yaml:2:5: (root): YAML syntax error: invalid leading UTF-8 octet");
}

/* Many mistakes in one file: every one reported, in file order. */
static void test_err_many(void)
{
    const char *y = "workers: 0\n"                                         /* 1 */
                    "via: 3\n"                                             /* 2 */
                    "listeners: [{listen: \"1.2.3.4\"}]\n"                 /* 3 */
                    "upstreams:\n"                                         /* 4 */
                    "  u: {backends: [\"127.0.0.1:1\"], keepalive: -1}\n"  /* 5 */
                    "tenants:\n"                                           /* 6 */
                    "  - name: a\n"                                        /* 7 */
                    "    sites:\n"                                         /* 8 */
                    "      - hosts: [a.test, a.test]\n"                    /* 9 */
                    "        routes:\n"                                    /* 10 */
                    "          - {upstream: v}\n"                          /* 11 */
                    "          - {respond: {status: 99}, bogus: 1}\n";     /* 12 */
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(load(y, &c, &e), GH_ECONFIG);
    CHECK(c == NULL);
    static const char *const want[] = {
        "t.yaml:1:10: workers: 0 is out of range",
        "t.yaml:2:6: via: expected a boolean",
        "t.yaml:3:22: listeners[0].listen: bad address \"1.2.3.4\"",
        "t.yaml:5:45: upstreams.u.keepalive: expected an integer, got \"-1\"",
        "t.yaml:9:25: tenants[0].sites[0].hosts[1]: duplicate host \"a.test\"",
        "t.yaml:11:24: tenants[0].sites[0].routes[0].upstream: unknown upstream \"v\"",
        "t.yaml:12:37: tenants[0].sites[0].routes[1].bogus: unknown key \"bogus\"",
        "t.yaml:12:32: tenants[0].sites[0].routes[1].respond.status: 99 is out of range",
    };
    CHECK_INT(e.n, GH_ARRAY_LEN(want));
    /* sorted by position: 12:32 before 12:37 */
    static const int order[] = {0, 1, 2, 3, 4, 5, 7, 6};
    for (size_t i = 0; i < GH_ARRAY_LEN(want) && i < e.n; i++)
        if (strncmp(e.msgs[i], want[order[i]], strlen(want[order[i]])) != 0) {
            t_cur_fail++;
            fprintf(stderr, "error %zu: want %s\n", i, want[order[i]]);
            dump(&e);
            break;
        }
    gh_conf_errors_free(&e);
    CHECK(e.n == 0 && e.msgs == NULL);
}

/* Aliases are references: reusing one many times must not blow up the walk. */
static void test_err_alias_bomb(void)
{
    size_t cap = 64 * 1024, n = 0;
    char *y = malloc(cap);
    n += (size_t)snprintf(y + n, cap - n,
                          LISTEN "upstreams: {u: {backends: [\"127.0.0.1:1\"]}}\n"
                                 "tenants: [{name: t, sites: [{hosts: [a.test], routes: [\n"
                                 "  &r {upstream: u, match: {methods: &m [GET");
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(y + n, cap - n, ", GET");
    n += (size_t)snprintf(y + n, cap - n, "]}}");
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(y + n, cap - n, ", *r");
    snprintf(y + n, cap - n, "]}]}]\n");
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(load(y, &c, &e), GH_ECONFIG);
    CHECK_INT(e.n, 1);
    CHECK(e.n && strstr(e.msgs[0], ": configuration too large") != NULL);
    gh_conf_errors_free(&e);
    free(y);
}

/* ---------------------------------------------------------------- valid configs */

static const char *full_yaml =
    "workers: 3\n"
    "pid_file: /tmp/gh.pid\n"
    "drain_timeout: 2m\n"
    "via: false\n"
    "limits: {max_request_line: 4k, max_header_size: 16k, max_headers: 50, max_body_size: 1m}\n"
    "timeouts:\n"
    "  client_header: 500ms\n"
    "  client_body: 20\n"
    "  upstream_connect: 3s\n"
    "  upstream_response: 1h\n"
    "trusted_proxies: [127.0.0.1, \"10.0.0.0/8\", \"::1/128\", \"2001:db8::/32\"]\n"
    "access_log: {enabled: false, path: /var/log/gh.log}\n"
    "admin: {listen: \"127.0.0.1:9090\"}\n"
    "demo_origin: {listen: \"127.0.0.1:9100\"}\n"
    "listeners:\n"
    "  - {name: http, listen: \":8080\", backlog: 128}\n"
    "  - {name: v6, listen: \"[::1]:8081\"}\n"
    "upstreams:\n"
    "  app:\n"
    "    backends: [\"127.0.0.1:9000\", {address: \"[::1]:9001\", weight: 3}, \"localhost:9002\"]\n"
    "    keepalive: 16\n"
    "    keepalive_timeout: 30s\n"
    "    timeouts: {connect: 1s, idle: 7s}\n"
    "  other:\n"
    "    backends: [\"127.0.0.1:9100\"]\n"
    "tenants:\n"
    "  - name: acme\n"
    "    sites:\n"
    "      - name: main\n"
    "        hosts: [Example.COM, \"*.example.com\", \"*\"]\n"
    "        routes:\n"
    "          - name: api\n"
    "            match:\n"
    "              path: {prefix: /api}\n"
    "              methods: [GET, POST, PURGE]\n"
    "              headers:\n"
    "                - {name: X-Env, exact: beta}\n"
    "                - {name: X-Trace, regex: \"^[0-9a-f]+$\"}\n"
    "                - {name: X-Debug, present: true}\n"
    "            upstream: app\n"
    "            limits: {max_body_size: 1g}\n"
    "            timeouts: {upstream_response: 5s, request: 30s, client_body: 10s}\n"
    "          - name: hello\n"
    "            match: {path: {exact: /hello}}\n"
    "            respond: {status: 201, body: \"hi\\n\", headers: {Content-Type: text/plain, X-B: '2', X-A: \"1\"}}\n"
    "          - match: {path: /plain}\n"
    "            upstream: other\n"
    "          - {match: {path: {regex: \"^/v[0-9]+/\"}}, upstream: other}\n"
    "      - hosts: [\"*.Acme.test.\"]\n"
    "        routes: [{upstream: app}]\n"
    "  - name: beta\n"
    "    sites: [{name: b, hosts: [beta.test]}]\n";

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void test_full_config(void)
{
    gh_conf_t *c = LOAD_OK(full_yaml);
    if (!c)
        return;
    CHECK_INT(c->refs, 1);
    CHECK(strcmp(c->path, "t.yaml") == 0);
    CHECK_INT(c->workers, 3);
    CHECK(c->pid_file && strcmp(c->pid_file, "/tmp/gh.pid") == 0);
    CHECK_INT(c->drain_timeout, 120000);
    CHECK_INT(c->via, 0);
    CHECK_INT(c->limits.max_request_line, 4096);
    CHECK_INT(c->limits.max_header_size, 16384);
    CHECK_INT(c->limits.max_headers, 50);
    CHECK_INT(c->limits.max_body_size, 1 << 20);
    CHECK_INT(c->timeouts.client_header, 500);
    CHECK_INT(c->timeouts.client_body, 20000);
    CHECK_INT(c->timeouts.client_send, 60000);  /* default */
    CHECK_INT(c->timeouts.keepalive, 75000);    /* default */
    CHECK_INT(c->timeouts.upstream_connect, 3000);
    CHECK_INT(c->timeouts.upstream_response, 3600000);
    CHECK_INT(c->timeouts.upstream_idle, 60000);
    CHECK_INT(c->timeouts.request, 0);
    CHECK_INT(c->access_log.enabled, 0);
    CHECK(strcmp(c->access_log.path, "/var/log/gh.log") == 0);

    CHECK_INT(c->ntrusted_proxies, 4);
    CHECK_INT(c->trusted_proxies[0].family, AF_INET);
    CHECK_INT(c->trusted_proxies[0].prefix, 32);
    CHECK_INT(c->trusted_proxies[1].prefix, 8);
    CHECK_INT(c->trusted_proxies[2].family, AF_INET6);

    /* listeners: proxy ones in order, then admin, then demo */
    CHECK_INT(c->nlisteners, 4);
    if (c->nlisteners == 4) {
        gh_conf_listener_t *l = c->listeners;
        CHECK(strcmp(l[0].name, "http") == 0 && l[0].role == GH_LISTEN_PROXY);
        CHECK(strcmp(l[0].listen, ":8080") == 0);
        CHECK_INT(l[0].addr.ss_family, AF_INET);
        CHECK_INT(((struct sockaddr_in *)&l[0].addr)->sin_addr.s_addr, htonl(INADDR_ANY));
        CHECK_INT(port_of(&l[0].addr), 8080);
        CHECK_INT(l[0].addrlen, sizeof(struct sockaddr_in));
        CHECK_INT(l[0].backlog, 128);
        CHECK(strcmp(l[1].name, "v6") == 0 && l[1].addr.ss_family == AF_INET6);
        CHECK_INT(port_of(&l[1].addr), 8081);
        CHECK_INT(l[1].backlog, 4096);
        CHECK(strcmp(l[2].name, "admin") == 0 && l[2].role == GH_LISTEN_ADMIN);
        CHECK_INT(port_of(&l[2].addr), 9090);
        CHECK(strcmp(l[3].name, "demo") == 0 && l[3].role == GH_LISTEN_DEMO);
        CHECK_INT(port_of(&l[3].addr), 9100);
    }

    CHECK_INT(c->nupstreams, 2);
    gh_conf_upstream_t *app = &c->upstreams[0];
    CHECK(strcmp(app->name, "app") == 0 && app->index == 0);
    CHECK(strcmp(c->upstreams[1].name, "other") == 0 && c->upstreams[1].index == 1);
    CHECK_INT(app->nbackends, 3);
    CHECK_INT(app->keepalive, 16);
    CHECK_INT(app->keepalive_timeout, 30000);
    CHECK_INT(c->upstreams[1].keepalive, 128);
    if (app->nbackends == 3) {
        CHECK(strcmp(app->backends[0].name, "127.0.0.1:9000") == 0);
        CHECK_INT(app->backends[0].weight, 1);
        CHECK_INT(app->backends[1].addr.ss_family, AF_INET6);
        CHECK_INT(app->backends[1].weight, 3);
        CHECK_INT(port_of(&app->backends[1].addr), 9001);
        /* localhost resolves, preferring IPv4 */
        CHECK_INT(app->backends[2].addr.ss_family, AF_INET);
        CHECK_INT(port_of(&app->backends[2].addr), 9002);
    }

    CHECK_INT(c->ntenants, 2);
    gh_conf_tenant_t *t = &c->tenants[0];
    CHECK(strcmp(t->name, "acme") == 0);
    CHECK_INT(t->nsites, 2);
    gh_conf_site_t *s = &t->sites[0];
    CHECK(strcmp(s->name, "main") == 0 && s->tenant == t);
    CHECK_INT(s->nhosts, 3);
    CHECK(strcmp(s->hosts[0].name, "example.com") == 0 && !s->hosts[0].wildcard && !s->hosts[0].any);
    CHECK(strcmp(s->hosts[1].name, ".example.com") == 0 && s->hosts[1].wildcard);
    CHECK_INT(s->hosts[1].len, 12);
    CHECK(s->hosts[2].any);
    /* default site name: the first host; trailing dot dropped, lowercased */
    CHECK(strcmp(t->sites[1].name, "*.acme.test") == 0);
    CHECK(strcmp(t->sites[1].hosts[0].name, ".acme.test") == 0);
    CHECK(strcmp(t->sites[1].routes[0].name, "route4") == 0);

    CHECK_INT(s->nroutes, 4);
    gh_conf_route_t *api = &s->routes[0];
    CHECK(strcmp(api->name, "api") == 0 && api->site == s && api->tenant == t);
    CHECK_INT(api->path_kind, GH_MATCH_PREFIX);
    CHECK(strcmp(api->path, "/api") == 0 && api->path_len == 4);
    CHECK_INT(api->methods, (1u << GH_M_GET) | (1u << GH_M_POST) | (1u << GH_M_OTHER));
    CHECK_INT(api->nheaders, 3);
    CHECK_INT(api->headers[0].kind, GH_MATCH_EXACT);
    CHECK(strcmp(api->headers[0].name, "X-Env") == 0 && strcmp(api->headers[0].value, "beta") == 0);
    CHECK_INT(api->headers[1].kind, GH_MATCH_REGEX);
    CHECK(api->headers[1].re != NULL);
    CHECK_INT(api->headers[2].kind, GH_MATCH_PRESENT);
    CHECK(api->upstream == app);
    CHECK(!api->has_respond);
    CHECK_INT(api->max_body_size, 1ull << 30);
    /* merged: global, then the upstream's, then the route's */
    CHECK_INT(api->timeouts.client_header, 500);      /* global */
    CHECK_INT(api->timeouts.client_body, 10000);      /* route */
    CHECK_INT(api->timeouts.upstream_connect, 1000);  /* upstream */
    CHECK_INT(api->timeouts.upstream_idle, 7000);     /* upstream */
    CHECK_INT(api->timeouts.upstream_response, 5000); /* route over global */
    CHECK_INT(api->timeouts.request, 30000);          /* route */

    gh_conf_route_t *hello = &s->routes[1];
    CHECK_INT(hello->path_kind, GH_MATCH_EXACT);
    CHECK(hello->has_respond && hello->upstream == NULL);
    CHECK_INT(hello->respond.status, 201);
    CHECK_INT(hello->respond.body_len, 3);
    CHECK(memcmp(hello->respond.body, "hi\n", 3) == 0);
    CHECK_INT(hello->respond.nheaders, 3);
    if (hello->respond.nheaders == 3) { /* in the order written */
        CHECK(strcmp(hello->respond.headers[0].name, "Content-Type") == 0);
        CHECK(strcmp(hello->respond.headers[0].value, "text/plain") == 0);
        CHECK(strcmp(hello->respond.headers[1].name, "X-B") == 0);
        CHECK(strcmp(hello->respond.headers[2].name, "X-A") == 0);
    }
    CHECK_INT(hello->max_body_size, 1 << 20); /* global */
    CHECK_INT(hello->timeouts.upstream_connect, 3000);
    CHECK(strcmp(hello->name, "hello") == 0);

    gh_conf_route_t *plain = &s->routes[2];
    CHECK(strcmp(plain->name, "route2") == 0); /* default: position in the tenant */
    CHECK_INT(plain->path_kind, GH_MATCH_PREFIX);
    CHECK(strcmp(plain->path, "/plain") == 0);
    CHECK_INT(plain->timeouts.upstream_connect, 3000); /* "other" has no overrides */
    CHECK_INT(s->routes[3].path_kind, GH_MATCH_REGEX);
    CHECK(s->routes[3].path_re != NULL);

    CHECK(strcmp(c->tenants[1].sites[0].name, "b") == 0);
    CHECK_INT(c->tenants[1].sites[0].nroutes, 0);
    CHECK(c->router != NULL);
    gh_conf_unref(c);
}

static void test_defaults(void)
{
    gh_conf_t *c = LOAD_OK(LISTEN);
    if (!c)
        return;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_INT(c->workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    CHECK(c->pid_file == NULL);
    CHECK_INT(c->drain_timeout, 30000);
    CHECK_INT(c->via, 1);
    CHECK_INT(c->limits.max_request_line, 8192);
    CHECK_INT(c->limits.max_header_size, 32768);
    CHECK_INT(c->limits.max_headers, 100);
    CHECK_INT(c->limits.max_body_size, 100 << 20);
    CHECK_INT(c->timeouts.client_header, 10000);
    CHECK_INT(c->timeouts.client_body, 60000);
    CHECK_INT(c->timeouts.client_send, 60000);
    CHECK_INT(c->timeouts.keepalive, 75000);
    CHECK_INT(c->timeouts.upstream_connect, 5000);
    CHECK_INT(c->timeouts.upstream_response, 60000);
    CHECK_INT(c->timeouts.upstream_idle, 60000);
    CHECK_INT(c->timeouts.request, 0);
    CHECK_INT(c->access_log.enabled, 1);
    CHECK(strcmp(c->access_log.path, "-") == 0);
    CHECK_INT(c->ntrusted_proxies, 0);
    CHECK_INT(c->nlisteners, 1);
    CHECK(strcmp(c->listeners[0].name, "listener0") == 0);
    CHECK_INT(c->ntenants, 0);
    CHECK_INT(c->nupstreams, 0);
    gh_conf_unref(c);

    c = LOAD_OK(LISTEN "access_log: off\n");
    if (c) {
        CHECK_INT(c->access_log.enabled, 0);
        gh_conf_unref(c);
    }
    c = LOAD_OK(LISTEN "limits: {max_body_size: 0}\ntimeouts: {request: 1}\n");
    if (c) {
        CHECK_INT(c->limits.max_body_size, 0);
        CHECK_INT(c->timeouts.request, 1000);
        gh_conf_unref(c);
    }
}


/* upstream policies, health checks, circuit breakers */
#define UP "upstreams:\n  u:\n    backends: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n"

static void test_upstream_resilience(void)
{
    EXPECT_ERR(LISTEN UP "    balance: fastest\n",
               "t.yaml:5:14: upstreams.u.balance: unknown balance policy \"fastest\"");
    EXPECT_ERR(LISTEN UP "    hash_key: path\n", "t.yaml:5:15: upstreams.u.hash_key: hash_key needs balance: hash");
    EXPECT_ERR(LISTEN UP "    balance: hash\n    hash_key: body\n",
               "t.yaml:6:15: upstreams.u.hash_key: hash_key must be client_ip, path, header:NAME or cookie:NAME");
    EXPECT_ERR(LISTEN UP "    balance: hash\n    hash_key: \"header:\"\n",
               "t.yaml:6:15: upstreams.u.hash_key: hash_key must be");
    EXPECT_ERR(LISTEN UP "    health_check: {interval: 1s, timeout: 1s}\n",
               "t.yaml:5:43: upstreams.u.health_check.timeout: timeout must be shorter than interval");
    EXPECT_ERR(LISTEN UP "    health_check: {expect_status: \"600\"}\n",
               "t.yaml:5:35: upstreams.u.health_check.expect_status: expect_status must be a status or a range");
    EXPECT_ERR(LISTEN UP "    health_check: {path: health}\n",
               "t.yaml:5:26: upstreams.u.health_check.path: path must start with /");
    EXPECT_ERR(LISTEN UP "    health_check: {rise: 0}\n",
               "t.yaml:5:26: upstreams.u.health_check.rise: 0 is out of range 1..100");
    EXPECT_ERR(LISTEN UP "    circuit_breaker: {max_requests: -1}\n",
               "t.yaml:5:37: upstreams.u.circuit_breaker.max_requests:");
    EXPECT_ERR(LISTEN UP "    circuit_breaker: {max_conns: 1}\n",
               "t.yaml:5:23: upstreams.u.circuit_breaker.max_conns: unknown key");

    gh_conf_t *c = LOAD_OK(LISTEN UP "    balance: hash\n    hash_key: \"cookie:sid\"\n"
                                     "    health_check: {path: /hc, interval: 2s, timeout: 500ms, rise: 3, fall: 4,"
                                     " expect_status: \"200-204\"}\n"
                                     "    circuit_breaker: {max_connections: 10, max_pending: 2, max_requests: 50}\n");
    if (c) {
        gh_conf_upstream_t *u = &c->upstreams[0];
        CHECK_INT(u->balance, GH_BALANCE_HASH);
        CHECK_INT(u->hash_source, GH_HASH_COOKIE);
        CHECK(u->hash_name_len == 3 && !memcmp(u->hash_name, "sid", 3));
        CHECK(u->maglev != NULL && u->maglev_size >= 200);
        for (uint32_t i = 0; u->maglev && i < u->maglev_size; i++)
            if (u->maglev[i] > 1) {
                CHECK(u->maglev[i] <= 1);
                break;
            }
        CHECK_INT(u->health.enabled, 1);
        CHECK(!strcmp(u->health.path, "/hc"));
        CHECK_INT(u->health.interval, 2000);
        CHECK_INT(u->health.timeout, 500);
        CHECK_INT(u->health.rise, 3);
        CHECK_INT(u->health.fall, 4);
        CHECK_INT(u->health.status_min, 200);
        CHECK_INT(u->health.status_max, 204);
        CHECK_INT(u->breaker.max_connections, 10);
        CHECK_INT(u->breaker.max_pending, 2);
        CHECK_INT(u->breaker.max_requests, 50);
        gh_conf_unref(c);
    }
    c = LOAD_OK(LISTEN UP);
    if (c) {
        CHECK_INT(c->upstreams[0].balance, GH_BALANCE_ROUND_ROBIN);
        CHECK_INT(c->upstreams[0].health.enabled, 0);
        CHECK(c->upstreams[0].maglev == NULL);
        gh_conf_unref(c);
    }
}

static void test_examples(void)
{
    /* the shipped examples validate (paths relative to the repository root) */
    static const char *const files[] = {"examples/full.yaml", "examples/quickstart.yaml"};
    char prefix[512] = "";
    const char *me = __FILE__, *end = strstr(me, "tests/unit/");
    if (end && (size_t)(end - me) < sizeof prefix)
        memcpy(prefix, me, (size_t)(end - me)), prefix[end - me] = '\0';
    for (size_t i = 0; i < GH_ARRAY_LEN(files); i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s%s", prefix, files[i]);
        gh_conf_t *c = NULL;
        gh_conf_errors_t e = {0};
        int rc = gh_conf_load_file(path, &c, &e);
        if (rc != 0) {
            t_cur_fail++;
            fprintf(stderr, "%s: rc %d\n", path, rc);
            dump(&e);
        }
        gh_conf_errors_free(&e);
        if (c) {
            if (i == 1) { /* quickstart: proxy, admin, demo, OFREP and flagd gRPC listeners; flags, one experiment */
                CHECK_INT(c->nlisteners, 5);
                CHECK_INT(c->access_log.enabled, 1);
                CHECK_INT(c->ntenants, 1);
                CHECK(c->tenants[0].flags.set != NULL);
                CHECK_INT(c->tenants[0].nexperiments, 1);
                CHECK(c->exp.used);
            }
            gh_conf_unref(c);
        }
    }
}

static void test_load_file(void)
{
    char path[] = "/tmp/gh_test_configXXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char *y = LISTEN "workers: nope\n";
    CHECK(write(fd, y, strlen(y)) == (ssize_t)strlen(y));
    close(fd);
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(gh_conf_load_file(path, &c, &e), GH_ECONFIG);
    CHECK_INT(e.n, 1);
    char want[256];
    snprintf(want, sizeof want, "%s:2:10: workers: expected an integer", path);
    CHECK(e.n && strncmp(e.msgs[0], want, strlen(want)) == 0);
    gh_conf_errors_free(&e);
    unlink(path);

    CHECK_INT(gh_conf_load_file("/nonexistent/gh.yaml", &c, &e), GH_ECONFIG);
    CHECK(c == NULL);
    CHECK(e.n == 1 && strncmp(e.msgs[0], "/nonexistent/gh.yaml:0:0: (root): cannot read", 45) == 0);
    gh_conf_errors_free(&e);
}

static void test_quick(void)
{
    const char *to[] = {"127.0.0.1:9000", "[::1]:9001"};
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(gh_conf_quick(":8080", to, 2, &c, &e), 0);
    CHECK_INT(e.n, 0);
    if (!c)
        return;
    CHECK(strcmp(c->path, "<proxy>") == 0);
    CHECK_INT(c->refs, 1);
    CHECK_INT(c->nlisteners, 1);
    CHECK(strcmp(c->listeners[0].name, "http") == 0);
    CHECK_INT(c->listeners[0].role, GH_LISTEN_PROXY);
    CHECK_INT(port_of(&c->listeners[0].addr), 8080);
    CHECK_INT(c->access_log.enabled, 0);
    CHECK_INT(c->limits.max_body_size, 100 << 20);
    CHECK_INT(c->nupstreams, 1);
    CHECK(strcmp(c->upstreams[0].name, "default") == 0);
    CHECK_INT(c->upstreams[0].nbackends, 2);
    CHECK_INT(c->upstreams[0].backends[1].addr.ss_family, AF_INET6);
    CHECK_INT(c->ntenants, 1);
    CHECK(strcmp(c->tenants[0].name, "default") == 0);
    gh_conf_site_t *s = &c->tenants[0].sites[0];
    CHECK(s->nhosts == 1 && s->hosts[0].any);
    CHECK(s->nroutes == 1 && strcmp(s->routes[0].name, "default") == 0);
    CHECK(s->routes[0].upstream == &c->upstreams[0]);
    CHECK_INT(s->routes[0].path_kind, 0);
    CHECK_INT(s->routes[0].timeouts.upstream_connect, 5000);
    CHECK(gh_router_site(c, GH_STR("anything.test")) == s);
    gh_conf_unref(c);

    const char *bad[] = {"127.0.0.1:9000", "nope", "1.2.3.4:0"};
    CHECK_INT(gh_conf_quick(":8080", bad, 3, &c, &e), GH_ECONFIG);
    CHECK(c == NULL);
    CHECK_INT(e.n, 2);
    if (e.n == 2) {
        CHECK(strcmp(e.msgs[0], "<proxy>:0:0: --to: bad address \"nope\": missing port (use host:port)") == 0);
        CHECK(strncmp(e.msgs[1], "<proxy>:0:0: --to: bad address \"1.2.3.4:0\": port out of range", 58) == 0);
    }
    gh_conf_errors_free(&e);

    CHECK_INT(gh_conf_quick("8080", to, 1, &c, &e), GH_ECONFIG);
    CHECK(e.n == 1 && strncmp(e.msgs[0], "<proxy>:0:0: --from: bad address \"8080\"", 39) == 0);
    gh_conf_errors_free(&e);
    CHECK_INT(gh_conf_quick(":8080", to, 0, &c, &e), GH_ECONFIG);
    CHECK(e.n == 1 && strncmp(e.msgs[0], "<proxy>:0:0: --to: at least one", 31) == 0);
    gh_conf_errors_free(&e);
}

static void test_parse_addr(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    CHECK_INT(gh_conf_parse_addr(":8080", &ss, &len), 0);
    CHECK_INT(ss.ss_family, AF_INET);
    CHECK_INT(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    CHECK_INT(port_of(&ss), 8080);
    CHECK_INT(gh_conf_parse_addr("10.1.2.3:1", &ss, &len), 0);
    CHECK_INT(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(0x0a010203));
    CHECK_INT(len, sizeof(struct sockaddr_in));
    CHECK_INT(gh_conf_parse_addr("[::1]:80", &ss, &len), 0);
    CHECK_INT(ss.ss_family, AF_INET6);
    CHECK(IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr));
    CHECK_INT(len, sizeof(struct sockaddr_in6));
    CHECK_INT(port_of(&ss), 80);
    CHECK_INT(gh_conf_parse_addr("[::]:443", &ss, &len), 0);
    CHECK_INT(gh_conf_parse_addr("localhost:65535", &ss, &len), 0);
    CHECK_INT(ss.ss_family, AF_INET);
    CHECK_INT(port_of(&ss), 65535);
    CHECK_INT(gh_conf_parse_addr("127.0.0.1", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("127.0.0.1:", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("127.0.0.1:65536", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("127.0.0.1:8x", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("::1:80", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("[127.0.0.1]:80", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("[::1]80", &ss, &len), GH_EINVAL);
    CHECK_INT(gh_conf_parse_addr("", &ss, &len), GH_EINVAL);
}

static void sin4(struct sockaddr_in *a, const char *s)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    inet_pton(AF_INET, s, &a->sin_addr);
}

static void sin6(struct sockaddr_in6 *a, const char *s)
{
    memset(a, 0, sizeof *a);
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, s, &a->sin6_addr);
}

static void test_trusted(void)
{
    gh_conf_t *c = LOAD_OK(LISTEN "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8, 172.16.0.0/12, "
                                  "\"2001:db8::/33\", \"::1\"]\n");
    if (!c)
        return;
    struct sockaddr_in a;
    struct sockaddr_in6 b;
    sin4(&a, "127.0.0.1");
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&a));
    sin4(&a, "127.0.0.2");
    CHECK(!gh_conf_is_trusted(c, (struct sockaddr *)&a));
    sin4(&a, "10.255.1.1");
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&a));
    sin4(&a, "172.31.255.255");
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&a));
    sin4(&a, "172.32.0.0");
    CHECK(!gh_conf_is_trusted(c, (struct sockaddr *)&a));
    sin6(&b, "::ffff:10.1.2.3"); /* v4-mapped counts as v4 */
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&b));
    sin6(&b, "::ffff:11.1.2.3");
    CHECK(!gh_conf_is_trusted(c, (struct sockaddr *)&b));
    sin6(&b, "::1");
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&b));
    sin6(&b, "2001:db8:7fff::1");
    CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&b));
    sin6(&b, "2001:db8:8000::1");
    CHECK(!gh_conf_is_trusted(c, (struct sockaddr *)&b));
    CHECK(!gh_conf_is_trusted(c, NULL));
    gh_conf_unref(c);

    c = LOAD_OK(LISTEN "trusted_proxies: [0.0.0.0/0]\n");
    if (c) {
        sin4(&a, "203.0.113.9");
        CHECK(gh_conf_is_trusted(c, (struct sockaddr *)&a));
        sin6(&b, "2001:db8::1");
        CHECK(!gh_conf_is_trusted(c, (struct sockaddr *)&b));
        gh_conf_unref(c);
    }
}

static void *unref_thread(void *arg)
{
    gh_conf_unref(arg);
    return NULL;
}

static void test_refcount_threads(void)
{
    gh_conf_t *c = LOAD_OK(full_yaml);
    if (!c)
        return;
    enum { N = 8 };
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        gh_conf_ref(c);
    CHECK_INT(c->refs, N + 1);
    for (int i = 0; i < N; i++)
        CHECK_INT(pthread_create(&th[i], NULL, unref_thread, c), 0);
    gh_conf_unref(c); /* one of the N+1 drops frees it; ASan checks the rest */
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
}

/* gh_conf_load_layered: the control plane's objects over the file. */
static void test_layered(void)
{
    static const char file[] = LISTEN "upstreams: {app: {backends: [\"127.0.0.1:9000\"]}}\n"
                               "tenants:\n  - name: filet\n    sites: [{name: s, hosts: [file.test], routes: [{name: r, upstream: app}]}]\n";
    /* an API tenant with its own pool (named t/web), a route to it and one to the file's pool */
    static const char ov[] = "{\"upstreams\": {\"acme/web\": {\"backends\": [\"127.0.0.1:9001\"]}},"
                             " \"tenants\": [{\"name\": \"acme\", \"sites\": [{\"name\": \"m\", \"hosts\": [\"acme.test\"],"
                             " \"routes\": [{\"name\": \"a\", \"match\": {\"path\": \"/a\"}, \"upstream\": \"acme/web\"},"
                             " {\"name\": \"b\", \"upstream\": \"app\"}]}]}],"
                             " \"keys\": [{\"tenant\": \"acme\", \"hash\": \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\","
                             " \"scopes\": 8, \"expires\": 0}]}";
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(gh_conf_load_layered("t.yaml", file, strlen(file), ov, strlen(ov), &c, &e), 0);
    dump(&e);
    if (!c)
        return;
    CHECK_INT(c->ntenants, 2);
    CHECK_INT(c->nupstreams, 2);
    CHECK(!strcmp(c->upstreams[1].name, "acme/web"));
    CHECK(!strcmp(c->tenants[1].name, "acme"));
    CHECK(gh_router_site(c, GH_STR("acme.test")) != NULL);
    CHECK(gh_router_site(c, GH_STR("file.test")) != NULL);
    CHECK_INT(c->nkeys, 1);
    CHECK(c->nkeys == 1 && c->keys[0].hash[1] == 0x11 && c->keys[0].scopes == 8 && !strcmp(c->keys[0].tenant, "acme"));
    CHECK(c->overlay && c->overlay_len == strlen(ov));
    gh_conf_unref(c);

    /* errors in API objects name the tenant and say "api:"; file errors keep FILE:LINE:COL */
    static const char bad[] = "{\"tenants\": [{\"name\": \"acme\", \"sites\": [{\"name\": \"m\", \"hosts\": [\"acme.test\"],"
                              " \"routes\": [{\"name\": \"a\", \"upstream\": \"nope\"}]}]}]}";
    c = NULL;
    CHECK_INT(gh_conf_load_layered("t.yaml", file, strlen(file), bad, strlen(bad), &c, &e), GH_ECONFIG);
    CHECK(c == NULL);
    CHECK(e.n == 1 && !strncmp(e.msgs[0], "api: tenants[acme].sites[0].routes[0].upstream: unknown upstream", 64));
    gh_conf_errors_free(&e);

    /* a tenant in both places, a pool in both places: refused */
    static const char clash[] = "{\"upstreams\": {\"app\": {\"backends\": [\"127.0.0.1:9002\"]}},"
                                " \"tenants\": [{\"name\": \"filet\"}]}";
    CHECK_INT(gh_conf_load_layered("t.yaml", file, strlen(file), clash, strlen(clash), &c, &e), GH_ECONFIG);
    CHECK(e.n >= 2);
    gh_conf_errors_free(&e);

    /* the overlay must be a JSON object; strings stay strings ("true" is no boolean) */
    CHECK_INT(gh_conf_load_layered("t.yaml", file, strlen(file), "[1]", 3, &c, &e), GH_ECONFIG);
    CHECK(e.n == 1 && !strncmp(e.msgs[0], "api: (root): the stored API objects are not a JSON object", 50));
    gh_conf_errors_free(&e);
    static const char str[] = "{\"tenants\": [{\"name\": \"acme\", \"sites\": [{\"name\": \"m\", \"hosts\": \"acme.test\"}]}]}";
    CHECK_INT(gh_conf_load_layered("t.yaml", file, strlen(file), str, strlen(str), &c, &e), GH_ECONFIG);
    CHECK(e.n == 1 && strstr(e.msgs[0], "api: tenants[acme].sites[0].hosts"));
    gh_conf_errors_free(&e);
    /* no tenants key in the file: the overlay adds one */
    static const char bare[] = LISTEN;
    CHECK_INT(gh_conf_load_layered("t.yaml", bare, strlen(bare), ov + 0, strlen(ov), &c, &e), GH_ECONFIG); /* app unknown */
    gh_conf_errors_free(&e);
    static const char ov2[] = "{\"tenants\": [{\"name\": \"acme\", \"sites\": [{\"name\": \"m\", \"hosts\": [\"*\"],"
                              " \"routes\": [{\"name\": \"r\", \"respond\": {\"status\": 204}}]}]}]}";
    CHECK_INT(gh_conf_load_layered("t.yaml", bare, strlen(bare), ov2, strlen(ov2), &c, &e), 0);
    dump(&e);
    if (c) {
        CHECK_INT(c->ntenants, 1);
        gh_conf_unref(c);
    }
}

int main(void)
{
    RUN(test_err_unknown_key);
    RUN(test_err_wrong_type);
    RUN(test_err_duration_size);
    RUN(test_err_range);
    RUN(test_err_routes);
    RUN(test_err_hosts);
    RUN(test_err_listeners);
    RUN(test_err_addresses);
    RUN(test_err_duplicate_keys);
    RUN(test_err_yaml_syntax);
    RUN(test_err_many);
    RUN(test_err_alias_bomb);
    RUN(test_full_config);
    RUN(test_defaults);
    RUN(test_upstream_resilience);
    RUN(test_examples);
    RUN(test_load_file);
    RUN(test_quick);
    RUN(test_parse_addr);
    RUN(test_trusted);
    RUN(test_refcount_threads);
    RUN(test_layered);
    return t_done("test_config");
}
