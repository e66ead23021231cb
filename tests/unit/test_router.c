/* test_router.c: site selection by Host and route selection (src/proxy/router.c). */
#include <pthread.h>
#include <stdlib.h>

#include "config/config.h"
#include "proxy/router.h"
#include "t.h"

static const char *yaml =
    "listeners: [{listen: \":8080\"}]\n"
    "upstreams: {u: {backends: [\"127.0.0.1:9000\"]}}\n"
    "tenants:\n"
    "  - name: a\n"
    "    sites:\n"
    "      - name: exact\n"
    "        hosts: [Example.com, \"[::1]\", 127.0.0.1]\n"
    "        routes:\n"
    "          - {name: hello, match: {path: {exact: /hello}}, respond: {}}\n"
    "          - {name: api-post, match: {path: /api, methods: [POST]}, upstream: u}\n"
    "          - {name: api-beta, match: {path: /api, headers: [{name: X-Env, exact: beta}]}, upstream: u}\n"
    "          - {name: ver, match: {path: {regex: \"^/v[0-9]+/\"}}, upstream: u}\n"
    "          - name: trace\n"
    "            match:\n"
    "              headers:\n"
    "                - {name: X-Trace, regex: \"^[0-9a-f]+$\"}\n"
    "                - {name: X-Debug, present: true}\n"
    "            upstream: u\n"
    "          - {name: purge, match: {methods: [PURGE]}, upstream: u}\n"
    "          - {name: caps, match: {path: {regex: \"^/(c)(a)(p)(s)(x)(y)(z)(1)(2)(3)(4)/\"}}, upstream: u}\n"
    "          - {name: api, match: {path: /api}, upstream: u}\n"
    "      - name: wild\n"
    "        hosts: [\"*.example.com\"]\n"
    "        routes: [{name: all, upstream: u}]\n"
    "      - name: deepwild\n"
    "        hosts: [\"*.api.example.com\"]\n"
    "      - name: www\n"
    "        hosts: [www.example.com]\n"
    "  - name: b\n"
    "    sites:\n"
    "      - name: any\n"
    "        hosts: [\"*\"]\n";

static gh_conf_t *conf;

static const char *site_of(const char *host)
{
    const gh_conf_site_t *s = gh_router_site(conf, gh_str(host, strlen(host)));
    return s ? s->name : "(none)";
}

#define CHECK_SITE(host, want)                                                                \
    do {                                                                                      \
        const char *got_ = site_of(host);                                                     \
        if (strcmp(got_, want) != 0) {                                                        \
            t_cur_fail++;                                                                     \
            fprintf(stderr, "%s:%d: host \"%s\" -> %s, want %s\n", __FILE__, __LINE__, host, \
                    got_, want);                                                              \
        }                                                                                     \
    } while (0)

static void test_site_precedence(void)
{
    CHECK_SITE("example.com", "exact");
    CHECK_SITE("www.example.com", "www");            /* exact beats wildcard */
    CHECK_SITE("foo.example.com", "wild");
    CHECK_SITE("a.b.example.com", "wild");
    CHECK_SITE("x.api.example.com", "deepwild");     /* longest wildcard wins */
    CHECK_SITE("y.x.api.example.com", "deepwild");
    CHECK_SITE("api.example.com", "wild");           /* *.api.example.com needs a label before */
    CHECK_SITE("notexample.com", "any");
    CHECK_SITE(".example.com", "any");               /* empty first label: no wildcard match */
    CHECK_SITE("other.test", "any");
    CHECK_SITE("", "any");
    CHECK_SITE("com", "any");
}

static void test_site_normalisation(void)
{
    CHECK_SITE("EXAMPLE.COM", "exact");
    CHECK_SITE("Example.Com:8080", "exact");
    CHECK_SITE("example.com.", "exact");
    CHECK_SITE("example.com.:443", "exact");
    CHECK_SITE("example.com..", "any"); /* only one trailing dot is dropped */
    CHECK_SITE("FOO.Example.COM.", "wild");
    CHECK_SITE("Foo.Api.Example.Com:1", "deepwild");
    CHECK_SITE("127.0.0.1", "exact");
    CHECK_SITE("127.0.0.1:8080", "exact");
    CHECK_SITE("[::1]", "exact");
    CHECK_SITE("[::1]:8080", "exact");
    CHECK_SITE("[::2]:8080", "any");
    CHECK_SITE("[::1", "any");
    /* a view, not a C string: bytes after n are ignored */
    const gh_conf_site_t *s = gh_router_site(conf, gh_str("example.comXYZ", 11));
    CHECK(s && strcmp(s->name, "exact") == 0);
    CHECK(gh_router_site(conf, GH_STR_NULL) != NULL); /* catch-all */
    CHECK(gh_router_site(NULL, GH_STR("example.com")) == NULL);
}

static void test_site_no_catchall(void)
{
    const char *y = "listeners: [{listen: \":8080\"}]\n"
                    "tenants: [{name: t, sites: [{name: s, hosts: [a.test, \"*.b.test\"]}]}]\n";
    gh_conf_t *c = NULL;
    gh_conf_errors_t e = {0};
    CHECK_INT(gh_conf_load_string("r.yaml", y, strlen(y), &c, &e), 0);
    if (!c)
        return;
    CHECK(gh_router_site(c, GH_STR("a.test")) == &c->tenants[0].sites[0]);
    CHECK(gh_router_site(c, GH_STR("x.b.test")) == &c->tenants[0].sites[0]);
    CHECK(gh_router_site(c, GH_STR("b.test")) == NULL);
    CHECK(gh_router_site(c, GH_STR("c.test")) == NULL);
    CHECK(gh_router_site(c, GH_STR("")) == NULL);
    gh_conf_unref(c);
}

/* A request filled by hand, as the HTTP/1 parser would. */
typedef struct {
    gh_h1_request_t req;
    gh_h1_header_t hdr[8];
} treq_t;

static const gh_h1_request_t *mk(treq_t *t, int method, const char *path, const char *const *hv)
{
    memset(t, 0, sizeof *t);
    t->req.method_id = method;
    t->req.path = gh_str(path, strlen(path));
    t->req.headers = t->hdr;
    for (int i = 0; hv && hv[i]; i += 2) {
        t->hdr[i / 2].name = gh_str(hv[i], strlen(hv[i]));
        t->hdr[i / 2].value = gh_str(hv[i + 1], strlen(hv[i + 1]));
        t->req.nheaders++;
    }
    return &t->req;
}

static const char *route_of(int method, const char *path, const char *const *hv)
{
    treq_t t;
    const gh_conf_site_t *s = gh_router_site(conf, GH_STR("example.com"));
    const gh_conf_route_t *r = gh_router_route(s, mk(&t, method, path, hv), NULL);
    return r ? r->name : "(none)";
}

#define CHECK_ROUTE(method, path, hv, want)                                                        \
    do {                                                                                           \
        const char *got_ = route_of(method, path, hv);                                             \
        if (strcmp(got_, want) != 0) {                                                             \
            t_cur_fail++;                                                                          \
            fprintf(stderr, "%s:%d: %s -> route %s, want %s\n", __FILE__, __LINE__, path, got_, \
                    want);                                                                         \
        }                                                                                          \
    } while (0)

#define H(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_route_paths(void)
{
    CHECK_ROUTE(GH_M_GET, "/hello", NULL, "hello");
    CHECK_ROUTE(GH_M_GET, "/hello/", NULL, "(none)"); /* exact */
    CHECK_ROUTE(GH_M_GET, "/Hello", NULL, "(none)");  /* paths are case-sensitive */
    CHECK_ROUTE(GH_M_GET, "/api", NULL, "api");
    CHECK_ROUTE(GH_M_GET, "/api/users", NULL, "api");
    CHECK_ROUTE(GH_M_GET, "/apiary", NULL, "api"); /* a prefix is a byte prefix */
    CHECK_ROUTE(GH_M_GET, "/ap", NULL, "(none)");
    CHECK_ROUTE(GH_M_GET, "/v2/things", NULL, "ver");
    CHECK_ROUTE(GH_M_GET, "/v/things", NULL, "(none)");
    CHECK_ROUTE(GH_M_GET, "/x/v2/", NULL, "(none)"); /* anchored regex on the path only */
    CHECK_ROUTE(GH_M_GET, "/capsxyz1234/", NULL, "caps"); /* many captures: match data sized for them */
    CHECK_ROUTE(GH_M_GET, "", NULL, "(none)");
}

static void test_route_methods(void)
{
    CHECK_ROUTE(GH_M_POST, "/api/x", NULL, "api-post");
    CHECK_ROUTE(GH_M_PUT, "/api/x", NULL, "api");
    CHECK_ROUTE(GH_M_OTHER, "/anything", NULL, "purge"); /* unknown methods: the OTHER bit */
    CHECK_ROUTE(GH_M_GET, "/anything", NULL, "(none)");
    CHECK_ROUTE(GH_M_DELETE, "/anything", NULL, "(none)");
    CHECK_ROUTE(99, "/api", NULL, "api"); /* out-of-range ids never match a method list */
}

static void test_route_headers(void)
{
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Env", "beta"), "api-beta");
    CHECK_ROUTE(GH_M_GET, "/api", H("x-env", "beta"), "api-beta"); /* names: any case */
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Env", "Beta"), "api");      /* values: exact */
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Env", "beta2"), "api");
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Envy", "beta"), "api");
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Env", "alpha", "X-Env", "beta"), "api-beta"); /* any field */
    CHECK_ROUTE(GH_M_GET, "/o", H("X-Trace", "abc123", "X-DEBUG", ""), "trace");
    CHECK_ROUTE(GH_M_GET, "/o", H("X-Trace", "abc123"), "(none)");         /* all conditions */
    CHECK_ROUTE(GH_M_GET, "/o", H("X-Debug", "1"), "(none)");
    CHECK_ROUTE(GH_M_GET, "/o", H("X-Trace", "xyz", "X-Debug", "1"), "(none)");
    CHECK_ROUTE(GH_M_GET, "/o", H("X-Trace", "xyz", "x-trace", "ff", "X-Debug", "1"), "trace");
}

static void test_route_order(void)
{
    /* api-post, api-beta and api all match: the first declared wins */
    CHECK_ROUTE(GH_M_POST, "/api", H("X-Env", "beta"), "api-post");
    CHECK_ROUTE(GH_M_GET, "/api", H("X-Env", "beta"), "api-beta");
    /* "trace" comes before "purge" */
    CHECK_ROUTE(GH_M_OTHER, "/o", H("X-Trace", "1", "X-Debug", "1"), "trace");
    treq_t t;
    CHECK(gh_router_route(NULL, mk(&t, GH_M_GET, "/", NULL), NULL) == NULL);
    /* a site without routes */
    const gh_conf_site_t *www = gh_router_site(conf, GH_STR("www.example.com"));
    CHECK(www && gh_router_route(www, mk(&t, GH_M_GET, "/", NULL), NULL) == NULL);
    /* a route without match conditions takes everything */
    const gh_conf_site_t *wild = gh_router_site(conf, GH_STR("z.example.com"));
    const gh_conf_route_t *r = gh_router_route(wild, mk(&t, GH_M_OTHER, "", NULL), NULL);
    CHECK(r && strcmp(r->name, "all") == 0);
}

static void *thread_routes(void *arg)
{
    (void)arg;
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        ok &= strcmp(route_of(GH_M_GET, "/v9/x", NULL), "ver") == 0;
        ok &= strcmp(route_of(GH_M_GET, "/o", H("X-Trace", "ab", "X-Debug", "")), "trace") == 0;
    }
    return ok ? arg : NULL;
}

/* Each thread gets its own match data (freed at thread exit: LSan would see a leak). */
static void test_route_threads(void)
{
    pthread_t th[4];
    int tag = 1;
    for (int i = 0; i < 4; i++)
        CHECK_INT(pthread_create(&th[i], NULL, thread_routes, &tag), 0);
    for (int i = 0; i < 4; i++) {
        void *res = NULL;
        pthread_join(th[i], &res);
        CHECK(res == &tag);
    }
}

/* gh_router_build on a snapshot made by hand: duplicates are refused. */
static void test_build_duplicates(void)
{
    gh_conf_tenant_t t = {.name = "t"};
    gh_conf_host_t h1[] = {{.name = "a.test", .len = 6}, {.name = ".b.test", .len = 7, .wildcard = 1}};
    gh_conf_host_t h2[] = {{.name = "b.test", .len = 6}, {.name = "a.test", .len = 6}};
    gh_conf_site_t sites[] = {{.name = "one", .tenant = &t, .hosts = h1, .nhosts = 2},
                              {.name = "two", .tenant = &t, .hosts = h2, .nhosts = 2}};
    t.sites = sites;
    t.nsites = 2;
    gh_conf_t c = {.path = "hand.yaml", .tenants = &t, .ntenants = 1};
    gh_conf_errors_t e = {0};
    CHECK_INT(gh_router_build(&c, &e), GH_ECONFIG);
    CHECK(c.router == NULL);
    CHECK_INT(e.n, 1);
    if (e.n)
        CHECK(strcmp(e.msgs[0], "hand.yaml:0:0: tenants[0].sites[1].hosts[1]: duplicate host "
                                "\"a.test\": also in tenant \"t\" site \"one\" "
                                "(tenants[0].sites[0].hosts[0])") == 0);
    gh_conf_errors_free(&e);

    /* "b.test" and "*.b.test" are different keys */
    h2[1] = (gh_conf_host_t){.name = "*", .len = 1, .any = 1};
    CHECK_INT(gh_router_build(&c, &e), 0);
    CHECK_INT(e.n, 0);
    CHECK(gh_router_site(&c, GH_STR("b.test")) == &sites[1]);
    CHECK(gh_router_site(&c, GH_STR("x.b.test")) == &sites[0]);
    CHECK(gh_router_site(&c, GH_STR("zzz")) == &sites[1]);
    gh_router_free(&c);
    CHECK(c.router == NULL);
    gh_router_free(&c); /* idempotent */
}

/* Many hosts: the table grows and every one is found. */
static void test_build_many(void)
{
    enum { N = 2000 };
    static char names[N][24];
    static gh_conf_host_t hosts[N];
    gh_conf_tenant_t t = {.name = "t"};
    gh_conf_site_t sites[2] = {{.name = "even", .tenant = &t}, {.name = "odd", .tenant = &t}};
    gh_conf_host_t *ev = calloc(N, sizeof *ev), *od = calloc(N, sizeof *od);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "host%d.test", i);
        hosts[i] = (gh_conf_host_t){.name = names[i], .len = strlen(names[i])};
        if (i % 2)
            od[sites[1].nhosts++] = hosts[i];
        else
            ev[sites[0].nhosts++] = hosts[i];
    }
    sites[0].hosts = ev;
    sites[1].hosts = od;
    t.sites = sites;
    t.nsites = 2;
    gh_conf_t c = {.path = "many", .tenants = &t, .ntenants = 1};
    CHECK_INT(gh_router_build(&c, NULL), 0);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        char up[32];
        size_t n = strlen(names[i]);
        for (size_t j = 0; j <= n; j++)
            up[j] = (char)(names[i][j] >= 'a' && names[i][j] <= 'z' ? names[i][j] - 32 : names[i][j]);
        const gh_conf_site_t *s = gh_router_site(&c, gh_str(up, n));
        bad += s != &sites[i % 2];
    }
    CHECK_INT(bad, 0);
    CHECK(gh_router_site(&c, GH_STR("host2000.test")) == NULL);
    gh_router_free(&c);
    free(ev);
    free(od);
}

int main(void)
{
    gh_conf_errors_t e = {0};
    if (gh_conf_load_string("router.yaml", yaml, strlen(yaml), &conf, &e) != 0) {
        for (uint32_t i = 0; i < e.n; i++)
            fprintf(stderr, "%s\n", e.msgs[i]);
        gh_conf_errors_free(&e);
        return 1;
    }
    RUN(test_site_precedence);
    RUN(test_site_normalisation);
    RUN(test_site_no_catchall);
    RUN(test_route_paths);
    RUN(test_route_methods);
    RUN(test_route_headers);
    RUN(test_route_order);
    RUN(test_route_threads);
    RUN(test_build_duplicates);
    RUN(test_build_many);
    gh_conf_unref(conf);
    return t_done("test_router");
}
