/* test_h1.c: unit tests of the strict HTTP/1.1 parser (src/http/h1.c): valid
 * requests and responses of many shapes, every prefix of them (GH_EAGAIN), each
 * rejection with its code and status (the request-smuggling classics included),
 * and the chunked decoder split at every byte. */
#include "http/h1.h"
#include "t.h"

#include <stdlib.h>

#define NH 100
static gh_h1_header_t hdrs[NH];
static const gh_h1_limits_t lim = {8192, 65536, 100};

static int preq_n(const char *s, size_t n, gh_h1_request_t *r, int *st)
{
    return gh_h1_parse_request(s, n, &lim, r, hdrs, NH, st);
}

static int presp_n(const char *s, size_t n, int method, gh_h1_response_t *r)
{
    return gh_h1_parse_response(s, n, &lim, method, r, hdrs, NH);
}

#define PREQ(lit, r, st) preq_n((lit), sizeof(lit) - 1, (r), (st))
#define PRESP(lit, m, r) presp_n((lit), sizeof(lit) - 1, (m), (r))

/* Every proper prefix of a complete head answers GH_EAGAIN. */
static int prefixes_again(const char *s, size_t n, int response)
{
    gh_h1_request_t r;
    gh_h1_response_t rs;
    int st;
    for (size_t k = 0; k < n; k++) {
        int rc = response ? presp_n(s, k, GH_M_GET, &rs) : preq_n(s, k, &r, &st);
        if (rc != GH_EAGAIN) {
            fprintf(stderr, "prefix %zu of %zu: %s\n", k, n, gh_err_name(rc));
            return 0;
        }
    }
    return 1;
}

/* A rejection: the code, the status, and every prefix answers EAGAIN or the same code. */
static int reject_req(const char *s, size_t n, int err, int status, int line)
{
    gh_h1_request_t r;
    int st = 0, ok = 1;
    int rc = preq_n(s, n, &r, &st);
    if (rc != err || st != status) {
        fprintf(stderr, "test_h1.c:%d: got %s/%d, expected %s/%d for \"%.*s\"\n", line,
                gh_err_name(rc), st, gh_err_name(err), status, (int)n, s);
        ok = 0;
    }
    for (size_t k = 0; k < n && ok; k++) {
        int rk = preq_n(s, k, &r, &st);
        if (rk != GH_EAGAIN && rk != err) {
            fprintf(stderr, "test_h1.c:%d: prefix %zu gives %s\n", line, k, gh_err_name(rk));
            ok = 0;
        }
    }
    return ok;
}

#define REJ(lit, err, status) CHECK(reject_req((lit), sizeof(lit) - 1, (err), (status), __LINE__))

static int reject_resp(const char *s, size_t n, int method, int err, int line)
{
    gh_h1_response_t r;
    int rc = presp_n(s, n, method, &r);
    if (rc != err) {
        fprintf(stderr, "test_h1.c:%d: got %s, expected %s for \"%.*s\"\n", line,
                gh_err_name(rc), gh_err_name(err), (int)n, s);
        return 0;
    }
    return 1;
}

#define REJ_RESP(lit, m, err) CHECK(reject_resp((lit), sizeof(lit) - 1, (m), (err), __LINE__))

static const char browser_req[] =
    "GET /search/results?q=gatehouse&page=2 HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 Firefox/124.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=abc123; theme=dark\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "X-Spaces:  \t padded value \t \r\n"
    "\r\n";

static void test_get(void)
{
    gh_h1_request_t r;
    int st = 0;
    int rc = PREQ(browser_req, &r, &st);
    CHECK_INT(rc, sizeof(browser_req) - 1);
    CHECK_INT(r.head_len, sizeof(browser_req) - 1);
    CHECK_STR(r.method, "GET");
    CHECK_INT(r.method_id, GH_M_GET);
    CHECK_STR(r.target, "/search/results?q=gatehouse&page=2");
    CHECK_STR(r.path, "/search/results");
    CHECK_STR(r.query, "q=gatehouse&page=2");
    CHECK_INT(r.minor, 1);
    CHECK_INT(r.nheaders, 10);
    CHECK(r.headers == hdrs);
    CHECK_STR(r.headers[0].name, "Host");
    CHECK_STR(r.headers[0].value, "www.example.com");
    CHECK_STR(r.headers[5].value, "keep-alive");
    CHECK_STR(r.headers[9].name, "X-Spaces");
    CHECK_STR(r.headers[9].value, "padded value");
    CHECK_STR(r.host, "www.example.com");
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK_INT(r.keep_alive, 1);
    CHECK_INT(r.expect_continue, 0);
    CHECK_INT(r.upgrade_websocket, 0);
    CHECK_INT(r.upgrade_other, 0);
    CHECK_INT(r.has_te_trailers, 0);
    CHECK(prefixes_again(browser_req, sizeof(browser_req) - 1, 0));

    const gh_h1_header_t *h = gh_h1_find(r.headers, r.nheaders, GH_STR("cookie"));
    CHECK(h != NULL && h == &r.headers[6]);
    CHECK(gh_h1_find(r.headers, r.nheaders, GH_STR("Cookie2")) == NULL);

    /* no query, empty query, minimal request */
    CHECK_INT(PREQ("GET /a/b HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st), 30);
    CHECK_STR(r.path, "/a/b");
    CHECK_STR(r.query, "");
    CHECK(PREQ("GET /?\r HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) == GH_EH1_BARE_CR);
    CHECK(PREQ("GET /? HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.path, "/");
    CHECK_STR(r.query, "");
    CHECK(PREQ("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.path, "/a");
    CHECK_STR(r.query, "b?c");
}

static void test_methods(void)
{
    static const struct {
        const char *m;
        int id;
    } ms[] = {{"GET", GH_M_GET},         {"HEAD", GH_M_HEAD},       {"POST", GH_M_POST},
              {"PUT", GH_M_PUT},         {"DELETE", GH_M_DELETE},   {"OPTIONS", GH_M_OPTIONS},
              {"TRACE", GH_M_TRACE},     {"PATCH", GH_M_PATCH},     {"get", GH_M_OTHER},
              {"PURGE", GH_M_OTHER},     {"M-SEARCH", GH_M_OTHER},  {"Get", GH_M_OTHER},
              {"POSTS", GH_M_OTHER},     {"!#$%&'*+-.^_`|~", GH_M_OTHER}};
    char buf[128];
    for (size_t i = 0; i < GH_ARRAY_LEN(ms); i++) {
        gh_h1_request_t r;
        int st, n = snprintf(buf, sizeof buf, "%s /x HTTP/1.1\r\nHost: h\r\n\r\n", ms[i].m);
        CHECK_INT(preq_n(buf, (size_t)n, &r, &st), n);
        CHECK_INT(r.method_id, ms[i].id);
        CHECK(r.method.n == strlen(ms[i].m) && r.method.p == buf);
    }
}

static void test_post_cl(void)
{
    static const char s[] = "POST /api HTTP/1.1\r\nHost: api.example.com:8443\r\n"
                            "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
                            "{\"a\":\"hello\"}";
    gh_h1_request_t r;
    int st;
    int rc = PREQ(s, &r, &st);
    CHECK_INT(rc, sizeof(s) - 1 - 13);
    CHECK_INT(r.body, GH_H1_BODY_LENGTH);
    CHECK_INT(r.content_length, 13);
    CHECK_STR(r.host, "api.example.com:8443");
    CHECK(prefixes_again(s, (size_t)rc, 0));

    CHECK(PREQ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.body, GH_H1_BODY_LENGTH);
    CHECK_INT(r.content_length, 0);
    CHECK(PREQ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.content_length, 7);
    CHECK(PREQ("POST / HTTP/1.1\r\nHost: h\r\ncontent-LENGTH:\t4611686018427387904 \r\n\r\n",
               &r, &st) > 0);
    CHECK_INT(r.content_length, 4611686018427387904ull);
}

static void test_chunked_request(void)
{
    static const char s[] = "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                            "TE: trailers\r\n\r\n"
                            "5\r\nhello\r\n0\r\n\r\n";
    gh_h1_request_t r;
    int st;
    int rc = PREQ(s, &r, &st);
    CHECK(rc > 0);
    CHECK_INT(r.body, GH_H1_BODY_CHUNKED);
    CHECK_INT(r.has_te_trailers, 1);
    gh_h1_chunked_t c = {0};
    gh_str_t d;
    long k = gh_h1_chunked_step(&c, s + rc, sizeof(s) - 1 - (size_t)rc, &d);
    CHECK_INT(k, 8);
    CHECK_STR(d, "hello");
    k = gh_h1_chunked_step(&c, s + rc + 8, sizeof(s) - 1 - (size_t)rc - 8, &d);
    CHECK_INT(k, 7);
    CHECK_INT(d.n, 0);
    CHECK_INT(c.done, 1);
    CHECK_INT(c.total, 5);

    CHECK(PREQ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  ChUnKeD \t\r\n\r\n", &r, &st) >
          0);
    CHECK_INT(r.body, GH_H1_BODY_CHUNKED);
}

static void test_pipelined(void)
{
    static const char s[] = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
                            "GET /two HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
                            "GET /thr";
    gh_h1_request_t r;
    int st;
    int rc = PREQ(s, &r, &st);
    CHECK_INT(rc, 30);
    CHECK_STR(r.path, "/one");
    CHECK_INT(r.keep_alive, 1);
    int rc2 = preq_n(s + rc, sizeof(s) - 1 - (size_t)rc, &r, &st);
    CHECK_INT(rc2, 49);
    CHECK_STR(r.path, "/two");
    CHECK_STR(r.host, "b");
    CHECK_INT(r.keep_alive, 0);
    CHECK_INT(preq_n(s + rc + rc2, 8, &r, &st), GH_EAGAIN);
}

static void test_target_forms(void)
{
    gh_h1_request_t r;
    int st;
    CHECK(PREQ("GET http://Example.COM:8080/p/q?x=1 HTTP/1.1\r\nHost: ignored\r\n\r\n", &r, &st) >
          0);
    CHECK_STR(r.host, "Example.COM:8080");
    CHECK_STR(r.path, "/p/q");
    CHECK_STR(r.query, "x=1");
    CHECK_STR(r.target, "http://Example.COM:8080/p/q?x=1");

    CHECK(PREQ("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.host, "h");
    CHECK_STR(r.path, "/");
    CHECK_STR(r.query, "");
    CHECK(PREQ("GET http://h?a HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.path, "/");
    CHECK_STR(r.query, "a");
    CHECK(PREQ("GET http://[::1]:80/ HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.host, "[::1]:80");

    CHECK(PREQ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.method_id, GH_M_OPTIONS);
    CHECK_STR(r.target, "*");
    CHECK_STR(r.path, "*");

    CHECK(PREQ("CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n", &r, &st) >
          0);
    CHECK_INT(r.method_id, GH_M_CONNECT);
    CHECK_STR(r.host, "db.internal:5432");
    CHECK_STR(r.path, "");
    CHECK(PREQ("CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n", &r, &st) > 0);
    CHECK_STR(r.host, "[2001:db8::1]:443");

    /* every visible ASCII byte but '#' is a target byte */
    char buf[256];
    int n = 0;
    n += snprintf(buf, sizeof buf, "GET /");
    for (int c = 0x21; c <= 0x7e; c++)
        if (c != '#' && c != '?')
            buf[n++] = (char)c;
    n += snprintf(buf + n, sizeof buf - (size_t)n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK_INT(preq_n(buf, (size_t)n, &r, &st), n);
    CHECK_INT(r.target.n, 0x7e - 0x21 - 1 + 1);
}

static void test_http10(void)
{
    gh_h1_request_t r;
    int st;
    CHECK(PREQ("GET / HTTP/1.0\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.minor, 0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(r.host.p == NULL && r.host.n == 0);
    CHECK(PREQ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.keep_alive, 1);
    CHECK_STR(r.host, "h");
    CHECK(PREQ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PREQ("GET / HTTP/1.0\r\nHost:\r\n\r\n", &r, &st) > 0); /* empty Host: 1.0 only */
    CHECK(PREQ("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", &r, &st) >
          0);
    CHECK_INT(r.expect_continue, 0); /* RFC 9110 §10.1.1: ignored in 1.0 */
}

static void test_leading_crlf(void)
{
    static const char s[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    gh_h1_request_t r;
    int st;
    CHECK_INT(PREQ(s, &r, &st), sizeof(s) - 1);
    CHECK_STR(r.method, "GET");
    CHECK(prefixes_again(s, sizeof(s) - 1, 0));
    REJ("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_BARE_LF, 400);
    REJ("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_BARE_CR, 400);
}

static void test_connection_fields(void)
{
    gh_h1_request_t r;
    int st;
    CHECK(PREQ("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
               "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n",
               &r, &st) > 0);
    CHECK_INT(r.upgrade_websocket, 1);
    CHECK_INT(r.upgrade_other, 0);
    CHECK_INT(r.keep_alive, 1);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
               &r, &st) > 0);
    CHECK_INT(r.upgrade_websocket, 0);
    CHECK_INT(r.upgrade_other, 1);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
               &r, &st) > 0);
    CHECK_INT(r.upgrade_websocket, 0);
    CHECK_INT(r.upgrade_other, 1);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.upgrade_websocket, 0); /* no Connection: upgrade */
    CHECK_INT(r.upgrade_other, 1);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nConnection: x\r\nConnection: CLOSE\r\n\r\n", &r, &st) >
          0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PREQ("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
               &r, &st) > 0);
    CHECK_INT(r.expect_continue, 1);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nTE: gzip, trailers;q=1\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.has_te_trailers, 0); /* list elements match whole */
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: h\r\nte: deflate , Trailers\r\n\r\n", &r, &st) > 0);
    CHECK_INT(r.has_te_trailers, 1);

    /* regression: 256 Upgrade fields must not count back to "no Upgrade" */
    static char many[8192];
    static gh_h1_header_t big[300];
    int n = snprintf(many, sizeof many, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 256; i++)
        n += snprintf(many + n, sizeof many - (size_t)n, "Upgrade: h2c\r\n");
    n += snprintf(many + n, sizeof many - (size_t)n, "\r\n");
    gh_h1_limits_t l = {8192, 8192, 300};
    CHECK_INT(gh_h1_parse_request(many, (size_t)n, &l, &r, big, 300, &st), n);
    CHECK_INT(r.upgrade_other, 1);
}

static void test_values(void)
{
    gh_h1_request_t r;
    int st;
    static const char s[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Ws: \t \r\n"
                            "X-Obs: caf\xc3\xa9 \xff\r\nX-Tab: a\tb\r\n\r\n";
    CHECK_INT(PREQ(s, &r, &st), sizeof(s) - 1);
    CHECK_INT(r.nheaders, 5);
    CHECK_STR(r.headers[1].value, "");
    CHECK_STR(r.headers[2].value, "");
    CHECK_STR(r.headers[3].value, "caf\xc3\xa9 \xff");
    CHECK_STR(r.headers[4].value, "a\tb");
    CHECK(prefixes_again(s, sizeof(s) - 1, 0));
    /* hosts that are fine */
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: [::ffff:10.0.0.1]:8080\r\n\r\n", &r, &st) > 0);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", &r, &st) > 0);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example:65535\r\n\r\n", &r, &st) > 0);
    CHECK(PREQ("GET / HTTP/1.1\r\nHost: a%2Db.c\r\n\r\n", &r, &st) > 0);
}

static void test_has_token(void)
{
    CHECK(gh_h1_has_token(GH_STR("close"), GH_STR("close")));
    CHECK(gh_h1_has_token(GH_STR("Keep-Alive, Upgrade"), GH_STR("upgrade")));
    CHECK(gh_h1_has_token(GH_STR(" a ,\tb\t, c "), GH_STR("b")));
    CHECK(gh_h1_has_token(GH_STR(",,x,,"), GH_STR("x")));
    CHECK(!gh_h1_has_token(GH_STR("closed"), GH_STR("close")));
    CHECK(!gh_h1_has_token(GH_STR("xclose"), GH_STR("close")));
    CHECK(!gh_h1_has_token(GH_STR(""), GH_STR("close")));
    CHECK(!gh_h1_has_token(GH_STR("a b"), GH_STR("a")));
    CHECK(!gh_h1_has_token(GH_STR("trailers;q=1"), GH_STR("trailers")));
    CHECK(gh_h1_find(NULL, 0, GH_STR("x")) == NULL);
}

static void test_limits(void)
{
    gh_h1_request_t r;
    int st = 0;
    static const char line[] = "GET /0123456789 HTTP/1.1\r\nHost: h\r\n\r\n"; /* line: 26 bytes */
    gh_h1_limits_t l = {26, 4096, 10};
    CHECK(gh_h1_parse_request(line, sizeof(line) - 1, &l, &r, hdrs, NH, &st) > 0);
    l.max_line = 25;
    CHECK_INT(gh_h1_parse_request(line, sizeof(line) - 1, &l, &r, hdrs, NH, &st),
              GH_EH1_LINE_TOO_LONG);
    CHECK_INT(st, 414);
    /* early: no CRLF within max_line bytes is enough to refuse */
    CHECK_INT(gh_h1_parse_request(line, 26, &l, &r, hdrs, NH, &st), GH_EH1_LINE_TOO_LONG);
    CHECK_INT(gh_h1_parse_request(line, 25, &l, &r, hdrs, NH, &st), GH_EAGAIN);
    static char big[70000];
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', sizeof big - 5);
    l = lim;
    st = 0;
    CHECK_INT(gh_h1_parse_request(big, 8192, &l, &r, hdrs, NH, &st), GH_EAGAIN);
    CHECK_INT(gh_h1_parse_request(big, 8193, &l, &r, hdrs, NH, &st), GH_EH1_LINE_TOO_LONG);
    CHECK_INT(st, 414);

    /* head size: exactly max_head is fine, one byte more is 431 as soon as it arrives */
    l = (gh_h1_limits_t){100, (uint32_t)sizeof(line) - 1, 10};
    CHECK_INT(gh_h1_parse_request(line, sizeof(line) - 1, &l, &r, hdrs, NH, &st), sizeof(line) - 1);
    l.max_head--;
    CHECK_INT(gh_h1_parse_request(line, sizeof(line) - 1, &l, &r, hdrs, NH, &st),
              GH_EH1_HEAD_TOO_LARGE);
    CHECK_INT(st, 431);
    CHECK_INT(gh_h1_parse_request(line, sizeof(line) - 2, &l, &r, hdrs, NH, &st), GH_EAGAIN);
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    memset(big + n, 'v', sizeof big - (size_t)n);
    l = lim;
    CHECK_INT(gh_h1_parse_request(big, 65536, &l, &r, hdrs, NH, &st), GH_EAGAIN);
    CHECK_INT(gh_h1_parse_request(big, 65537, &l, &r, hdrs, NH, &st), GH_EH1_HEAD_TOO_LARGE);
    CHECK_INT(gh_h1_parse_request(big, 30000, &l, &r, hdrs, NH, &st), GH_EAGAIN);
    l.max_head = 10000;
    CHECK_INT(gh_h1_parse_request(big, 30000, &l, &r, hdrs, NH, &st), GH_EH1_HEAD_TOO_LARGE);
    CHECK_INT(st, 431);
    /* a complete head within max_head followed by more bytes (pipelining) is fine */
    l = (gh_h1_limits_t){100, (uint32_t)sizeof(line) - 1, 10};
    memcpy(big, line, sizeof(line) - 1);
    CHECK_INT(gh_h1_parse_request(big, 1000, &l, &r, hdrs, NH, &st), sizeof(line) - 1);

    /* field count: the limits' and the caller's, whichever is smaller */
    static const char three[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    l = (gh_h1_limits_t){100, 1000, 3};
    CHECK(gh_h1_parse_request(three, sizeof(three) - 1, &l, &r, hdrs, NH, &st) > 0);
    l.max_headers = 2;
    CHECK_INT(gh_h1_parse_request(three, sizeof(three) - 1, &l, &r, hdrs, NH, &st),
              GH_EH1_TOO_MANY_HEADERS);
    CHECK_INT(st, 431);
    l.max_headers = 3;
    CHECK_INT(gh_h1_parse_request(three, sizeof(three) - 1, &l, &r, hdrs, 2, &st),
              GH_EH1_TOO_MANY_HEADERS);
    /* NULL limits: built-in defaults */
    CHECK(gh_h1_parse_request(three, sizeof(three) - 1, NULL, &r, hdrs, NH, &st) > 0);
}

/* The rejections, one code each; every prefix answers EAGAIN or the same code. */
static void test_reject_line(void)
{
    REJ(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("G\xc3\x89T / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("GET\r\n\r\n", GH_EH1_METHOD, 400);
    REJ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET * HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("CONNECT h:99999 HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET example.com:80 HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_TARGET, 400);
    REJ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET / http/1.1\r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET / HTTP/1.10\r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET / HTTP/1\r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET / HTTP/a.b\r\nHost: h\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET /\r\n\r\n", GH_EH1_VERSION, 400);
    REJ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", GH_EH1_VERSION_UNSUPPORTED, 505);
    REJ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", GH_EH1_VERSION_UNSUPPORTED, 505);
    REJ("GET / HTTP/0.9\r\nHost: h\r\n\r\n", GH_EH1_VERSION_UNSUPPORTED, 505);
    REJ("GET / HTTP/1.1\nHost: h\n\n", GH_EH1_BARE_LF, 400);
    REJ("GET /\n", GH_EH1_BARE_LF, 400);
    REJ("GET / HTTP/1.1\rHost: h\r\n\r\n", GH_EH1_BARE_CR, 400);
    REJ("GET /\r HTTP/1.1\r\n", GH_EH1_BARE_CR, 400);
}

static void test_reject_fields(void)
{
    REJ("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", GH_EH1_BARE_LF, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\n\n", GH_EH1_BARE_LF, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX\n: y\r\n\r\n", GH_EH1_BARE_LF, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", GH_EH1_BARE_CR, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n\r\n", GH_EH1_BARE_CR, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\n@X: y\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX@: y\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX Y: z\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX\0Y: z\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: z\r\n\r\n", GH_EH1_HEADER_NAME, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
        GH_EH1_SPACE_BEFORE_COLON, 400);
    REJ("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", GH_EH1_SPACE_BEFORE_COLON, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n Content-Length: 6\r\n\r\n",
        GH_EH1_OBS_FOLD, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", GH_EH1_OBS_FOLD, 400);
    REJ("GET / HTTP/1.1\r\n Host: h\r\n\r\n", GH_EH1_OBS_FOLD, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", GH_EH1_HEADER_VALUE, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", GH_EH1_HEADER_VALUE, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n", GH_EH1_HEADER_VALUE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n",
        GH_EH1_HEADER_VALUE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0c\r\n\r\n",
        GH_EH1_HEADER_VALUE, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nX: aaaaaaaaaaaaaaaaaaaaaaa\x1b" "aaaaaaaaa\r\n\r\n",
        GH_EH1_HEADER_VALUE, 400);
}

static void test_reject_framing(void)
{
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        GH_EH1_CL_AND_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        GH_EH1_CL_AND_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        GH_EH1_DUP_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
        GH_EH1_DUP_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  5 5\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1e3\r\n\r\n", GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
        GH_EH1_BAD_CL, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387905\r\n\r\n", GH_EH1_BAD_CL,
        400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", GH_EH1_BAD_TE, 501);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", GH_EH1_BAD_TE, 501);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", GH_EH1_BAD_TE, 501);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        GH_EH1_BAD_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", GH_EH1_BAD_TE,
        400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", GH_EH1_BAD_TE,
        400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", GH_EH1_BAD_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", GH_EH1_BAD_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", GH_EH1_BAD_TE, 400);
    REJ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
        "\r\n",
        GH_EH1_BAD_TE, 400);
    REJ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", GH_EH1_BAD_TE, 400);
}

static void test_reject_host_expect(void)
{
    REJ("GET / HTTP/1.1\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nX: y\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost:\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: user@h\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: @\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h:\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h:8o\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h:65536\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h:80:80\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET http://h/ HTTP/1.1\r\n\r\n", GH_EH1_HOST, 400);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", GH_EH1_EXPECT, 417);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", GH_EH1_EXPECT, 417);
    REJ("GET / HTTP/1.1\r\nHost: h\r\nExpect:\r\n\r\n", GH_EH1_EXPECT, 417);
}

static void test_response(void)
{
    gh_h1_response_t r;
    static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n"
                            "\r\nhello";
    int rc = PRESP(s, GH_M_GET, &r);
    CHECK_INT(rc, sizeof(s) - 1 - 5);
    CHECK_INT(r.minor, 1);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.reason, "OK");
    CHECK_INT(r.nheaders, 2);
    CHECK_INT(r.body, GH_H1_BODY_LENGTH);
    CHECK_INT(r.content_length, 5);
    CHECK_INT(r.keep_alive, 1);
    CHECK_INT(r.upgrade, 0);
    CHECK(prefixes_again(s, (size_t)rc, 1));

    CHECK(PRESP("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_STR(r.reason, "");
    CHECK(PRESP("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_INT(r.status, 404);
    CHECK_STR(r.reason, "");
    CHECK(PRESP("HTTP/1.1 500 Internal\tServer \xc3\xa9rror\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_STR(r.reason, "Internal\tServer \xc3\xa9rror");
    CHECK_INT(r.body, GH_H1_BODY_UNTIL_CLOSE);
    CHECK_INT(r.keep_alive, 0);

    CHECK(PRESP("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", GH_M_HEAD, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK_INT(r.keep_alive, 1);
    CHECK(PRESP("HTTP/1.1 204 No Content\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK_INT(r.keep_alive, 1);
    CHECK(PRESP("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK(PRESP("HTTP/1.1 100 Continue\r\n\r\n", GH_M_POST, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK_INT(r.status, 100);
    CHECK(PRESP("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                GH_M_GET, &r) > 0);
    CHECK_INT(r.upgrade, 1);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK(PRESP("HTTP/1.1 200 Connection established\r\n\r\n", GH_M_CONNECT, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_NONE);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PRESP("HTTP/1.1 407 Auth\r\nContent-Length: 0\r\n\r\n", GH_M_CONNECT, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_LENGTH);
    CHECK(PRESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_INT(r.body, GH_H1_BODY_CHUNKED);
    CHECK_INT(r.keep_alive, 1);
    CHECK(PRESP("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", GH_M_GET,
                &r) > 0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PRESP("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", GH_M_GET, &r) > 0);
    CHECK_INT(r.minor, 0);
    CHECK_INT(r.keep_alive, 0);
    CHECK(PRESP("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", GH_M_GET,
                &r) > 0);
    CHECK_INT(r.keep_alive, 1);
    CHECK(PRESP("HTTP/1.1 999 Whatever\r\nContent-Length: 1\r\n\r\n", GH_M_GET, &r) > 0);
    /* no Host needed, Expect not interpreted */
    CHECK(PRESP("HTTP/1.1 200 OK\r\nExpect: x\r\nContent-Length: 1\r\n\r\n", GH_M_GET, &r) > 0);
}

static void test_response_reject(void)
{
    REJ_RESP("HTTP/1.1 20 OK\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1 099 X\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1 2000 OK\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1  200 OK\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1 200 OK\x01\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1 2x0 OK\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1 101 Switching\r\n\r\n", GH_M_GET, GH_EH1_STATUS);
    REJ_RESP("HTTP/1.1\r\n\r\n", GH_M_GET, GH_EH1_VERSION);
    REJ_RESP("HTTP/2 200 OK\r\n\r\n", GH_M_GET, GH_EH1_VERSION);
    REJ_RESP("\r\nHTTP/1.1 200 OK\r\n\r\n", GH_M_GET, GH_EH1_VERSION);
    REJ_RESP("HTTP/2.0 200 OK\r\n\r\n", GH_M_GET, GH_EH1_VERSION_UNSUPPORTED);
    REJ_RESP("HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", GH_M_GET, GH_EH1_BARE_LF);
    REJ_RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\n", GH_M_GET, GH_EH1_BARE_LF);
    REJ_RESP("HTTP/1.1 200 OK\rX: y\r\n\r\n", GH_M_GET, GH_EH1_BARE_CR);
    REJ_RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", GH_M_GET,
             GH_EH1_DUP_CL);
    REJ_RESP("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
             GH_M_GET, GH_EH1_CL_AND_TE);
    REJ_RESP("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", GH_M_GET,
             GH_EH1_BAD_TE);
    REJ_RESP("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GH_M_GET, GH_EH1_BAD_TE);
    REJ_RESP("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", GH_M_HEAD, GH_EH1_BAD_CL);
    REJ_RESP("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", GH_M_GET, GH_EH1_SPACE_BEFORE_COLON);
    REJ_RESP("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", GH_M_GET, GH_EH1_OBS_FOLD);
    REJ_RESP("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", GH_M_GET, GH_EH1_HEADER_VALUE);

    gh_h1_response_t r;
    gh_h1_limits_t l = {16, 1000, 10};
    CHECK_INT(gh_h1_parse_response("HTTP/1.1 200 OK, fine\r\n\r\n", 25, &l, GH_M_GET, &r, hdrs, NH),
              GH_EH1_LINE_TOO_LONG);
    l = (gh_h1_limits_t){100, 30, 10};
    CHECK_INT(gh_h1_parse_response("HTTP/1.1 200 OK\r\nX-Long: 0123456789\r\n\r\n", 39, &l, GH_M_GET,
                                   &r, hdrs, NH),
              GH_EH1_HEAD_TOO_LARGE);
    l = (gh_h1_limits_t){100, 1000, 1};
    CHECK_INT(gh_h1_parse_response("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31, &l, GH_M_GET, &r,
                                   hdrs, NH),
              GH_EH1_TOO_MANY_HEADERS);
}

/* ---- chunked ---- */

typedef struct {
    int rc;          /* 0, or the error */
    int done;
    size_t consumed; /* through done, or everything */
    uint64_t total;
    char data[4096];
    size_t ndata;
} dechunk_t;

/* Feed s[0..n) to a fresh decoder in pieces of at most piece bytes (0: all at
 * once), or split once at split (if piece < 0: split = -piece). */
static dechunk_t dechunk(const char *s, size_t n, long piece)
{
    dechunk_t o;
    memset(&o, 0, sizeof o);
    gh_h1_chunked_t c = {0};
    size_t off = 0;
    while (off < n && !c.done) {
        size_t lim_n = n - off;
        if (piece > 0 && lim_n > (size_t)piece)
            lim_n = (size_t)piece;
        if (piece < 0 && off < (size_t)-piece)
            lim_n = (size_t)-piece - off;
        gh_str_t d;
        long k = gh_h1_chunked_step(&c, s + off, lim_n, &d);
        if (k < 0) {
            o.rc = (int)k;
            break;
        }
        if (d.n) {
            if (d.p < s + off || d.p + d.n > s + off + (size_t)k || o.ndata + d.n > sizeof o.data) {
                o.rc = 1; /* a view outside what was consumed */
                break;
            }
            memcpy(o.data + o.ndata, d.p, d.n);
            o.ndata += d.n;
        }
        if (k == 0 && !c.done) {
            o.rc = 2; /* no progress */
            break;
        }
        off += (size_t)k;
    }
    o.done = c.done;
    o.consumed = off;
    o.total = c.total;
    return o;
}

static int same(const dechunk_t *a, const dechunk_t *b)
{
    return a->rc == b->rc && a->done == b->done && a->total == b->total && a->ndata == b->ndata &&
           !memcmp(a->data, b->data, a->ndata) && (a->rc || a->consumed == b->consumed);
}

/* Decode whole, byte by byte, and split in two at every position: all agree. */
static int chunk_all_splits(const char *s, size_t n, const dechunk_t *whole)
{
    dechunk_t b = dechunk(s, n, 1);
    if (!same(whole, &b))
        return 0;
    for (size_t k = 1; k < n; k++) {
        dechunk_t sp = dechunk(s, n, -(long)k);
        if (!same(whole, &sp)) {
            fprintf(stderr, "split at %zu differs\n", k);
            return 0;
        }
    }
    for (long p = 2; p < 9; p++) {
        dechunk_t sp = dechunk(s, n, p);
        if (!same(whole, &sp))
            return 0;
    }
    return 1;
}

static int chunk_ok(const char *s, size_t n, const char *data, size_t body_len, int line)
{
    dechunk_t w = dechunk(s, n, 0);
    if (w.rc || !w.done || w.consumed != body_len || w.ndata != strlen(data) ||
        memcmp(w.data, data, w.ndata) || w.total != w.ndata) {
        fprintf(stderr, "test_h1.c:%d: chunked rc %d done %d consumed %zu data \"%.*s\"\n", line,
                w.rc, w.done, w.consumed, (int)w.ndata, w.data);
        return 0;
    }
    return chunk_all_splits(s, n, &w);
}

static int chunk_bad(const char *s, size_t n, int line)
{
    dechunk_t w = dechunk(s, n, 0);
    if (w.rc != GH_EH1_CHUNK) {
        fprintf(stderr, "test_h1.c:%d: chunked rc %d (expected H1_CHUNK)\n", line, w.rc);
        return 0;
    }
    return chunk_all_splits(s, n, &w);
}

#define CHUNK_OK(lit, data) CHECK(chunk_ok((lit), sizeof(lit) - 1, (data), sizeof(lit) - 1, __LINE__))
#define CHUNK_BAD(lit) CHECK(chunk_bad((lit), sizeof(lit) - 1, __LINE__))

static void test_chunked_valid(void)
{
    CHUNK_OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    CHUNK_OK("0\r\n\r\n", "");
    CHUNK_OK("000\r\n\r\n", "");
    CHUNK_OK("3\r\nabc\r\na\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n",
             "abc01234567890123456789");
    CHUNK_OK("1;name\r\nx\r\n1;a=b;c=\"quoted; \\\"str\\\"\"\r\ny\r\n0;last\r\n\r\n", "xy");
    CHUNK_OK("2 ; a = b ;c\t=\t\"v\"\r\nhi\r\n0\r\n\r\n", "hi");
    CHUNK_OK("4\r\nwiki\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\nX-Obs: \xff v\r\n\r\n", "wiki");
    CHUNK_OK("5\r\n\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r\n\r"); /* data is opaque */

    /* data bytes and framing are split exactly; bytes after the body are left */
    static const char s[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    gh_h1_chunked_t c = {0};
    gh_str_t d;
    CHECK_INT(gh_h1_chunked_step(&c, s, sizeof(s) - 1, &d), 6);
    CHECK(d.p == s + 3 && d.n == 3);
    CHECK_INT(gh_h1_chunked_step(&c, s + 6, sizeof(s) - 7, &d), 7);
    CHECK_INT(c.done, 1);
    CHECK_INT(d.n, 0);
    CHECK_INT(gh_h1_chunked_step(&c, s + 13, sizeof(s) - 14, &d), 0);
    CHECK_INT(gh_h1_chunked_step(&c, s, 0, &d), 0);

    /* the largest chunk size accepted: 2^60 - 1 */
    gh_h1_chunked_t big = {0};
    CHECK_INT(gh_h1_chunked_step(&big, "fffffffffffffff\r\nab", 19, &d), 19);
    CHECK_INT(d.n, 2);
    CHECK_INT(big.remaining, (1ull << 60) - 3);
}

static void test_chunked_invalid(void)
{
    CHUNK_BAD("g\r\n");
    CHUNK_BAD("\r\n");
    CHUNK_BAD("-5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("0x5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD(" 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 \r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("1000000000000000\r\n");
    CHUNK_BAD("10000000000000005\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhelloX\r\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello\n0\r\n\r\n");
    CHUNK_BAD("5\r\nhello0\r\n\r\n");
    CHUNK_BAD("5\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5\rhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"x\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a\x01\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=b\rc\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=b\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5;a=b \r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("5 5\r\nhello\r\n0\r\n\r\n");
    CHUNK_BAD("0\r\nX: a\r\n continued\r\n\r\n");
    CHUNK_BAD("0\r\n: a\r\n\r\n");
    CHUNK_BAD("0\r\nX : a\r\n\r\n");
    CHUNK_BAD("0\r\nX: a\0\r\n\r\n");
    CHUNK_BAD("0\r\nX: a\n\r\n");
    CHUNK_BAD("0\r\nX: a\r\n\n");
    CHUNK_BAD("0\r\n\n");
    CHUNK_BAD("0\r\n\r\r");

    /* trailer section over GH_H1_TRAILER_MAX */
    static char tr[GH_H1_TRAILER_MAX + 64];
    size_t n = 0;
    memcpy(tr, "0\r\n", 3);
    n = 3;
    while (n < GH_H1_TRAILER_MAX + 10) {
        memcpy(tr + n, "X-Pad: 0123456789abcdef\r\n", 25);
        n += 25;
    }
    memcpy(tr + n, "\r\n", 2);
    n += 2;
    dechunk_t w = dechunk(tr, n, 0);
    CHECK_INT(w.rc, GH_EH1_CHUNK);
    /* and just under it is fine */
    n = 3;
    while (n + 25 + 2 - 3 <= GH_H1_TRAILER_MAX) {
        memcpy(tr + n, "X-Pad: 0123456789abcdef\r\n", 25);
        n += 25;
    }
    memcpy(tr + n, "\r\n", 2);
    n += 2;
    w = dechunk(tr, n, 0);
    CHECK_INT(w.rc, 0);
    CHECK_INT(w.done, 1);

    /* chunk line over GH_H1_CHUNK_LINE_MAX (long extension) */
    static char ln[GH_H1_CHUNK_LINE_MAX + 16];
    memset(ln, 'a', sizeof ln);
    memcpy(ln, "1;", 2);
    w = dechunk(ln, sizeof ln, 0);
    CHECK_INT(w.rc, GH_EH1_CHUNK);

    /* errors stick */
    gh_h1_chunked_t c = {0};
    gh_str_t d;
    CHECK_INT(gh_h1_chunked_step(&c, "z", 1, &d), GH_EH1_CHUNK);
    CHECK_INT(gh_h1_chunked_step(&c, "0\r\n\r\n", 5, &d), GH_EH1_CHUNK);
}

static void test_cookie(void)
{
    gh_h1_header_t h[3] = {
        {GH_STR("Accept"), GH_STR("*/*")},
        {GH_STR("cookie"), GH_STR("a=1; sid=abc;theme=\"dark\"; empty=")},
        {GH_STR("Cookie"), GH_STR("later=2")},
    };
    CHECK_STR(gh_h1_cookie(h, 3, GH_STR("sid")), "abc");
    CHECK_STR(gh_h1_cookie(h, 3, GH_STR("a")), "1");
    CHECK_STR(gh_h1_cookie(h, 3, GH_STR("theme")), "dark"); /* DQUOTEs removed */
    CHECK_STR(gh_h1_cookie(h, 3, GH_STR("later")), "2");    /* a second Cookie field */
    gh_str_t e = gh_h1_cookie(h, 3, GH_STR("empty"));
    CHECK(e.p != NULL && e.n == 0); /* present, empty */
    CHECK(gh_h1_cookie(h, 3, GH_STR("SID")).p == NULL); /* names are case-sensitive */
    CHECK(gh_h1_cookie(h, 3, GH_STR("si")).p == NULL);
    CHECK(gh_h1_cookie(h, 1, GH_STR("sid")).p == NULL);
}

int main(void)
{
    RUN(test_get);
    RUN(test_methods);
    RUN(test_post_cl);
    RUN(test_chunked_request);
    RUN(test_pipelined);
    RUN(test_target_forms);
    RUN(test_http10);
    RUN(test_leading_crlf);
    RUN(test_connection_fields);
    RUN(test_values);
    RUN(test_has_token);
    RUN(test_limits);
    RUN(test_reject_line);
    RUN(test_reject_fields);
    RUN(test_reject_framing);
    RUN(test_reject_host_expect);
    RUN(test_response);
    RUN(test_response_reject);
    RUN(test_chunked_valid);
    RUN(test_chunked_invalid);
    RUN(test_cookie);
    return t_done("test_h1");
}
