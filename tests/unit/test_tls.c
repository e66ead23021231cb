/* Unit tests for the TLS module (src/tls/tls.c): certificates made with the openssl
 * CLI in a mkdtemp directory, then in-process non-blocking handshakes between a
 * gh_tls_client_t and a gh_tls_server_t over socketpair(2), driven by a small poll
 * loop: SNI and wildcards, ALPN, TLS 1.2 and 1.3, ticket resumption across key
 * rotation and reload, verification failures, configuration errors, plain HTTP on the
 * TLS port, 1 MiB each way with partial writes, close_notify vs EOF, and the memory an
 * idle connection keeps. Last, real clients (openssl s_client, curl) against a loopback
 * listener. Every wait is bounded by a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "core/common.h"
#include "t.h"
#include "tls/tls.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static char dir[64];

static const char *path(const char *name)
{
    static char bufs[8][128];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Root CA; an intermediate; a.test (RSA, SAN a.test, *.b.test, IP 127.0.0.1, signed by
 * the root); c.test (ECDSA, CN only, signed by the intermediate, file = leaf +
 * intermediate); another root for "wrong CA"; a name-less certificate; broken files. */
static int make_certs(void)
{
    snprintf(dir, sizeof dir, "/tmp/gh-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "set -e; cd %s; O=/usr/bin/openssl; exec 2>log\n"
             "ec() { $O genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; }\n"
             "sign() { $O x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial "
             "-days 3 -sha256 -extfile $1.ext -out $3; }\n"
             "ec ca.key; $O req -x509 -new -key ca.key -subj '/CN=GH Test Root' -days 3 "
             "-out ca.pem\n"
             "ec ca2.key; $O req -x509 -new -key ca2.key -subj '/CN=GH Other Root' -days 3 "
             "-out ca2.pem\n"
             "ec int.key; $O req -new -key int.key -subj '/CN=GH Test Intermediate' -out "
             "int.csr\n"
             "printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,"
             "cRLSign\\n' > int.ext; sign int ca int.pem\n"
             "$O genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out a.key\n"
             "$O req -new -key a.key -subj '/CN=a.test' -out a.csr\n"
             "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n"
             "subjectAltName=DNS:a.test,DNS:*.b.test,IP:127.0.0.1\\n' > a.ext\n"
             "sign a ca a.pem\n"
             "ec c.key; $O req -new -key c.key -subj '/CN=c.test' -out c.csr\n"
             "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > c.ext\n"
             "sign c int c.leaf; cat c.leaf int.pem > c.pem\n"
             "$O req -new -key c.key -subj '/O=No Name' -out n.csr; cp c.ext n.ext\n"
             "sign n ca n.pem\n"
             "ec cl.key; $O req -new -key cl.key -subj '/CN=gatehouse-client' -out cl.csr\n"
             "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > cl.ext\n"
             "sign cl ca cl.pem\n"
             "printf 'not a pem file\\n' > garbage.pem\n"
             "$O pkey -in c.key -aes256 -passout pass:secret -out enc.key\n",
             dir);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "certificate generation failed (see %s/log)\n", dir);
    return rc == 0 ? 0 : -1;
}

/* ---- driving connections ------------------------------------------------------------ */

typedef struct {
    SSL *c, *s;
    int cfd, sfd;
    int crc, src; /* handshake results */
} pair_t;

static int mkpair(pair_t *p, gh_tls_client_t *cl, gh_tls_server_t *srv, const char *name,
                  const char *skey)
{
    int sv[2];
    memset(p, 0, sizeof *p);
    p->cfd = p->sfd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    p->cfd = sv[0];
    p->sfd = sv[1];
    p->c = gh_tls_client_ssl(cl, sv[0], name, skey);
    p->s = gh_tls_server_ssl(srv, sv[1]);
    return p->c && p->s ? 0 : -1;
}

static void pair_free(pair_t *p)
{
    if (p->c) {
        gh_tls_shutdown(p->c);
        SSL_free(p->c);
    }
    if (p->s) {
        gh_tls_shutdown(p->s);
        SSL_free(p->s);
    }
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->sfd >= 0)
        close(p->sfd);
    memset(p, 0, sizeof *p);
    p->cfd = p->sfd = -1;
}

static short events(SSL *ssl)
{
    return gh_tls_want(ssl) == GH_TLS_WANT_WRITE ? POLLOUT : POLLIN;
}

/* why the last handshake failed, per side (per thread: test_threads) */
static __thread char cerr[256], serr[256];

/* Runs both handshakes to completion or failure (5 s at most). When one side fails,
 * its write side is shut so that the other sees the end instead of waiting. Returns 1
 * when both completed. */
static int handshake(pair_t *p)
{
    uint64_t deadline = now_ms() + 5000;
    p->crc = p->src = GH_EAGAIN;
    cerr[0] = serr[0] = '\0';
    while (now_ms() < deadline) {
        if (p->crc == GH_EAGAIN && (p->crc = gh_tls_handshake(p->c)) < 0 && p->crc != GH_EAGAIN) {
            gh_tls_strerror(p->c, cerr, sizeof cerr);
            shutdown(p->cfd, SHUT_WR);
        }
        if (p->src == GH_EAGAIN && (p->src = gh_tls_handshake(p->s)) < 0 && p->src != GH_EAGAIN) {
            gh_tls_strerror(p->s, serr, sizeof serr);
            shutdown(p->sfd, SHUT_WR);
        }
        if (p->crc != GH_EAGAIN && p->src != GH_EAGAIN)
            break;
        struct pollfd fds[2];
        int n = 0;
        if (p->crc == GH_EAGAIN)
            fds[n++] = (struct pollfd){.fd = p->cfd, .events = events(p->c)};
        if (p->src == GH_EAGAIN)
            fds[n++] = (struct pollfd){.fd = p->sfd, .events = events(p->s)};
        poll(fds, (nfds_t)n, 100);
    }
    return p->crc == 0 && p->src == 0;
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (unsigned char)(x >> 16);
    }
    return b;
}

typedef struct {
    int eagain_w, short_w, moved;
} pump_stats_t;

/* Sends n bytes each way at once and checks they arrive intact (10 s at most). With
 * move, every write after a short count or GH_EAGAIN comes from a different copy of
 * the data (a buffer that moved, as after compaction). Returns 0 or -1. */
static int pump(pair_t *p, size_t n, int move, pump_stats_t *st)
{
    unsigned char *cout[2] = {pattern(n, 1), pattern(n, 1)}, *sout = pattern(n, 2);
    unsigned char *cin = malloc(n ? n : 1), *sin = malloc(n ? n : 1);
    size_t cw = 0, sw = 0, cr = 0, sr = 0;
    int which = 0, fail = 0;
    uint64_t deadline = now_ms() + 10000;
    while ((cw < n || sw < n || cr < n || sr < n) && !fail && now_ms() < deadline) {
        int moved = 0;
        short cev = 0, sev = 0;
        ssize_t k;
        if (cw < n) {
            k = gh_tls_write(p->c, cout[which] + cw, n - cw);
            if (k > 0) {
                moved = 1;
                cw += (size_t)k;
                if (cw < n) {
                    st->short_w++;
                    if (move)
                        which ^= 1, st->moved++;
                }
            } else if (k == GH_EAGAIN) {
                st->eagain_w++;
                cev |= events(p->c);
            } else {
                fprintf(stderr, "client write: %s\n", gh_err_name((int)k));
                fail = 1;
            }
        }
        if (sw < n) {
            k = gh_tls_write(p->s, sout + sw, n - sw);
            if (k > 0) {
                moved = 1;
                sw += (size_t)k;
            } else if (k == GH_EAGAIN) {
                sev |= events(p->s);
            } else {
                fprintf(stderr, "server write: %s\n", gh_err_name((int)k));
                fail = 1;
            }
        }
        if (cr < n) {
            k = gh_tls_read(p->c, cin + cr, n - cr);
            if (k > 0) {
                moved = 1;
                cr += (size_t)k;
            } else if (k == GH_EAGAIN) {
                cev |= events(p->c);
            } else {
                fprintf(stderr, "client read: %zd\n", k);
                fail = 1;
            }
        }
        if (sr < n) {
            k = gh_tls_read(p->s, sin + sr, n - sr);
            if (k > 0) {
                moved = 1;
                sr += (size_t)k;
            } else if (k == GH_EAGAIN) {
                sev |= events(p->s);
            } else {
                fprintf(stderr, "server read: %zd\n", k);
                fail = 1;
            }
        }
        if (!moved && !fail) {
            struct pollfd fds[2] = {{.fd = p->cfd, .events = cev}, {.fd = p->sfd, .events = sev}};
            poll(fds, 2, 100);
        }
    }
    int ok = !fail && cw == n && sw == n && cr == n && sr == n && memcmp(sin, cout[0], n) == 0 &&
             memcmp(cin, sout, n) == 0;
    free(cout[0]);
    free(cout[1]);
    free(sout);
    free(cin);
    free(sin);
    return ok ? 0 : -1;
}

/* The CN of the certificate the client got. */
static const char *peer_cn(SSL *c)
{
    static __thread char cn[128];
    cn[0] = '\0';
    X509 *x = SSL_get0_peer_certificate(c);
    if (x)
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    return cn;
}

/* ---- fixtures ------------------------------------------------------------------------ */

static const char *const h2_h1[] = {"h2", "http/1.1"};

static gh_tls_cert_conf_t two_certs[2];

static gh_tls_server_conf_t server_conf(void)
{
    two_certs[0] = (gh_tls_cert_conf_t){.cert_file = path("a.pem"), .key_file = path("a.key")};
    two_certs[1] = (gh_tls_cert_conf_t){.cert_file = path("c.pem"), .key_file = path("c.key")};
    return (gh_tls_server_conf_t){.certs = two_certs, .ncerts = 2, .alpn = h2_h1, .nalpn = 2};
}

static gh_tls_server_t *new_server(const gh_tls_server_conf_t *sc)
{
    char err[256] = "";
    gh_tls_server_t *srv = gh_tls_server_new(sc, err, sizeof err);
    if (!srv)
        fprintf(stderr, "server: %s\n", err);
    return srv;
}

static gh_tls_client_t *new_client(const gh_tls_client_conf_t *cc)
{
    char err[256] = "";
    gh_tls_client_t *cl = gh_tls_client_new(cc, err, sizeof err);
    if (!cl)
        fprintf(stderr, "client: %s\n", err);
    return cl;
}

static gh_tls_client_conf_t client_conf(void)
{
    return (gh_tls_client_conf_t){.ca_file = path("ca.pem"), .alpn = h2_h1, .nalpn = 2};
}

/* One connection: handshake, then one byte each way (which also delivers TLS 1.3
 * tickets to the client), then close_notify both ways. Returns whether it worked and
 * the server-side certificate index / match / resumption in *idx, *match, *resumed. */
static int connect_once(gh_tls_client_t *cl, gh_tls_server_t *srv, const char *name,
                        const char *skey, int *idx, int *match, int *resumed, char *cn)
{
    pair_t p;
    int ok = mkpair(&p, cl, srv, name, skey) == 0 && handshake(&p);
    pump_stats_t st = {0};
    if (ok)
        ok = pump(&p, 1, 0, &st) == 0;
    if (idx)
        *idx = p.s ? gh_tls_server_name(p.s, match) : -1;
    if (resumed)
        *resumed = ok && gh_tls_resumed(p.c) && gh_tls_resumed(p.s);
    if (cn)
        strcpy(cn, ok ? peer_cn(p.c) : "");
    pair_free(&p);
    return ok;
}

/* ---- tests --------------------------------------------------------------------------- */

static int hello_calls;
static void *hello_app_data;
static int hello_idx;

static void on_hello(SSL *ssl, void *arg)
{
    hello_calls++;
    hello_app_data = SSL_get_app_data(ssl);
    hello_idx = gh_tls_server_name(ssl, NULL);
    const unsigned char *ciphers;
    CHECK(SSL_client_hello_get0_ciphers(ssl, &ciphers) > 0); /* what JA4 will read */
    CHECK(arg == (void *)&hello_calls);
}

static void test_sni(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *cl = new_client(&cc);
    cc.insecure = 1;
    gh_tls_client_t *any = new_client(&cc); /* for names the certificates do not cover */
    CHECK(srv && cl && any);
    if (!srv || !cl || !any)
        goto out;
    int idx, match;
    char cn[128];
    CHECK(connect_once(cl, srv, "a.test", NULL, &idx, &match, NULL, cn));
    CHECK_INT(idx, 0);
    CHECK_INT(match, GH_TLS_SNI_EXACT);
    CHECK(strcmp(cn, "a.test") == 0);

    CHECK(connect_once(cl, srv, "x.b.test", NULL, &idx, &match, NULL, cn));
    CHECK_INT(idx, 0);
    CHECK_INT(match, GH_TLS_SNI_WILDCARD);

    /* CN fallback, chain with an intermediate, verified against the root only */
    CHECK(connect_once(cl, srv, "c.test", NULL, &idx, &match, NULL, cn));
    CHECK_INT(idx, 1);
    CHECK_INT(match, GH_TLS_SNI_EXACT);
    CHECK(strcmp(cn, "c.test") == 0);

    CHECK(connect_once(cl, srv, "C.Test", NULL, &idx, &match, NULL, cn)); /* any case */
    CHECK_INT(idx, 1);
    CHECK(strcmp(cn, "c.test") == 0);

    /* a wildcard covers one label only; unknown names get the default */
    const char *unknown[] = {"y.x.b.test", "b.test", "unknown.test"};
    for (size_t i = 0; i < GH_ARRAY_LEN(unknown); i++) {
        CHECK(connect_once(any, srv, unknown[i], NULL, &idx, &match, NULL, cn));
        CHECK_INT(idx, 0);
        CHECK_INT(match, GH_TLS_SNI_DEFAULT);
        CHECK(strcmp(cn, "a.test") == 0);
    }
    CHECK(connect_once(any, srv, NULL, NULL, &idx, &match, NULL, cn)); /* no SNI */
    CHECK_INT(idx, 0);
    CHECK_INT(match, GH_TLS_SNI_NONE);

    /* gh_tls_sni() gives the name as sent */
    pair_t p;
    CHECK(mkpair(&p, cl, srv, "X.b.test", NULL) == 0 && handshake(&p));
    CHECK(gh_tls_sni(p.s) && strcmp(gh_tls_sni(p.s), "X.b.test") == 0);
    pair_free(&p);
    gh_tls_server_free(srv);

    /* explicit names replace the certificate's; another default */
    const char *cnames[] = {"c.test", "*.D.test"};
    sc.certs = two_certs;
    two_certs[1].names = cnames;
    two_certs[1].nnames = 2;
    sc.default_cert = 1;
    srv = new_server(&sc);
    CHECK(srv != NULL);
    if (srv) {
        CHECK(connect_once(any, srv, "q.d.test", NULL, &idx, &match, NULL, cn));
        CHECK_INT(idx, 1);
        CHECK_INT(match, GH_TLS_SNI_WILDCARD);
        CHECK(connect_once(any, srv, "nothing.test", NULL, &idx, &match, NULL, cn));
        CHECK_INT(idx, 1);
        CHECK_INT(match, GH_TLS_SNI_DEFAULT);
        CHECK(strcmp(cn, "c.test") == 0);
    }
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
    gh_tls_client_free(any);
}

static void test_on_hello(void)
{
    gh_tls_server_conf_t sc = server_conf();
    sc.on_hello = on_hello;
    sc.on_hello_arg = &hello_calls;
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *cl = new_client(&cc);
    CHECK(srv && cl);
    if (!srv || !cl)
        goto out;
    int token;
    for (int hrr = 0; hrr < 2; hrr++) {
        pair_t p;
        hello_calls = 0;
        hello_app_data = NULL;
        CHECK(mkpair(&p, cl, srv, "c.test", NULL) == 0);
        SSL_set_app_data(p.s, &token);
        /* A key share for a group the server lacks (P-521) forces a HelloRetryRequest
         * and a second ClientHello; the observer must still run once. */
        if (hrr)
            CHECK(SSL_set1_groups_list(p.c, "P-521:P-256") == 1);
        CHECK(handshake(&p));
        CHECK_INT(hello_calls, 1);
        CHECK(hello_app_data == &token);
        CHECK_INT(hello_idx, 1);
        pair_free(&p);
    }
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
}

static void test_alpn(void)
{
    static const char *const h1[] = {"http/1.1"}, *const h1_h2[] = {"http/1.1", "h2"},
                             *const odd[] = {"spdy/3", "x-custom"};
    struct {
        const char *const *srv;
        size_t nsrv;
        int strict;
        const char *const *cli;
        size_t ncli;
        int ok;
        const char *want;
    } cases[] = {
        {h2_h1, 2, 0, h2_h1, 2, 1, "h2"},
        {h2_h1, 2, 0, h1, 1, 1, "http/1.1"},         /* h1-only client */
        {h1_h2, 2, 0, h2_h1, 2, 1, "http/1.1"},      /* server preference wins */
        {h2_h1, 2, 0, NULL, 0, 1, NULL},             /* client sends no ALPN */
        {h2_h1, 2, 0, odd, 2, 1, NULL},              /* no overlap: go on without */
        {h2_h1, 2, 1, odd, 2, 0, NULL},              /* ...unless strict */
        {NULL, 0, 0, h2_h1, 2, 1, NULL},             /* server without ALPN */
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        gh_tls_server_conf_t sc = server_conf();
        sc.alpn = cases[i].srv;
        sc.nalpn = cases[i].nsrv;
        sc.alpn_strict = cases[i].strict;
        gh_tls_client_conf_t cc = client_conf();
        cc.alpn = cases[i].cli;
        cc.nalpn = cases[i].ncli;
        gh_tls_server_t *srv = new_server(&sc);
        gh_tls_client_t *cl = new_client(&cc);
        pair_t p;
        CHECK(srv && cl && mkpair(&p, cl, srv, "a.test", NULL) == 0);
        if (!srv || !cl) {
            gh_tls_server_free(srv);
            gh_tls_client_free(cl);
            continue;
        }
        int ok = handshake(&p);
        CHECK_INT(ok, cases[i].ok);
        if (ok) {
            const char *a = gh_tls_alpn(p.s), *b = gh_tls_alpn(p.c);
            if (cases[i].want) {
                CHECK(a && strcmp(a, cases[i].want) == 0);
                CHECK(b && strcmp(b, cases[i].want) == 0);
            } else {
                CHECK(a == NULL && b == NULL);
            }
        } else {
            CHECK(strstr(serr, "no application protocol") || strstr(cerr, "no application"));
        }
        pair_free(&p);
        gh_tls_server_free(srv);
        gh_tls_client_free(cl);
        if (t_cur_fail) {
            fprintf(stderr, "alpn case %zu\n", i);
            break;
        }
    }
}

static void test_versions(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *c13 = new_client(&cc);
    cc.max_version = TLS1_2_VERSION;
    gh_tls_client_t *c12 = new_client(&cc);
    sc.min_version = TLS1_3_VERSION;
    sc.ciphersuites = "TLS_CHACHA20_POLY1305_SHA256";
    gh_tls_server_t *s13 = new_server(&sc);
    CHECK(srv && c13 && c12 && s13);
    if (!srv || !c13 || !c12 || !s13)
        goto out;
    pair_t p;
    const char *names[] = {"a.test", "c.test"}; /* RSA and ECDSA certificates */
    for (int i = 0; i < 2; i++) {
        CHECK(mkpair(&p, c13, srv, names[i], NULL) == 0 && handshake(&p));
        CHECK(strcmp(gh_tls_version(p.s), "TLSv1.3") == 0);
        CHECK(strcmp(gh_tls_version(p.c), "TLSv1.3") == 0);
        pair_free(&p);

        CHECK(mkpair(&p, c12, srv, names[i], NULL) == 0 && handshake(&p));
        CHECK(strcmp(gh_tls_version(p.s), "TLSv1.2") == 0);
        const char *ciph = gh_tls_cipher(p.s);
        /* the default 1.2 list: ECDHE with an AEAD only */
        CHECK(strncmp(ciph, "ECDHE-", 6) == 0 && (strstr(ciph, "GCM") || strstr(ciph, "CHACHA")));
        CHECK(strstr(ciph, i ? "ECDSA" : "RSA") != NULL);
        CHECK(strcmp(gh_tls_alpn(p.c) ? gh_tls_alpn(p.c) : "", "h2") == 0);
        pair_free(&p);
    }
    /* TLS 1.3 only server: a 1.2 client fails cleanly on both sides */
    CHECK(mkpair(&p, c12, s13, "a.test", NULL) == 0);
    CHECK(!handshake(&p));
    CHECK_INT(p.crc, GH_EIO);
    CHECK_INT(p.src, GH_EIO);
    CHECK(strstr(serr, "unsupported protocol") != NULL);
    pair_free(&p);
    CHECK(mkpair(&p, c13, s13, "a.test", NULL) == 0 && handshake(&p));
    CHECK(strcmp(gh_tls_cipher(p.c), "TLS_CHACHA20_POLY1305_SHA256") == 0);
    pair_free(&p);
out:
    gh_tls_server_free(srv);
    gh_tls_server_free(s13);
    gh_tls_client_free(c13);
    gh_tls_client_free(c12);
}

static void test_resumption(void)
{
    for (int v = 0; v < 2; v++) {
        gh_tls_server_conf_t sc = server_conf();
        gh_tls_server_t *srv = new_server(&sc);
        gh_tls_client_conf_t cc = client_conf();
        cc.max_version = v ? TLS1_3_VERSION : TLS1_2_VERSION;
        gh_tls_client_t *cl = new_client(&cc);
        CHECK(srv && cl);
        if (!srv || !cl) {
            gh_tls_server_free(srv);
            gh_tls_client_free(cl);
            return;
        }
        int res = -1;
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 0); /* first: full handshake */
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);
        /* another backend key, or the same key with another name: not offered */
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.2:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 0);
        CHECK(connect_once(cl, srv, "x.b.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 0);
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);

        /* after one rotation the old key still decrypts (and a new ticket is issued) */
        CHECK_INT(gh_tls_ticket_rotate(), 0);
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);

        /* a reload: new server object, same process-wide keys; a connection begun on
         * the old one still completes after the old one is freed */
        pair_t p;
        CHECK(mkpair(&p, cl, srv, "c.test", NULL) == 0);
        gh_tls_server_free(srv);
        srv = new_server(&sc);
        CHECK(srv != NULL);
        CHECK(handshake(&p));
        CHECK_INT(gh_tls_server_name(p.s, NULL), 1);
        CHECK(gh_tls_alpn(p.s) && strcmp(gh_tls_alpn(p.s), "h2") == 0);
        pair_free(&p);
        if (!srv) {
            gh_tls_client_free(cl);
            return;
        }
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);

        /* a key rotated out of the ring no longer decrypts: full handshake, new ticket */
        for (int i = 0; i < GH_TLS_TICKET_KEYS; i++)
            CHECK_INT(gh_tls_ticket_rotate(), 0);
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 0);
        CHECK(connect_once(cl, srv, "a.test", "10.0.0.1:443", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);

        /* a ticket is bound to its certificate's names: an a.test session offered by
         * hand to c.test is not resumed */
        CHECK(mkpair(&p, cl, srv, "a.test", NULL) == 0 && handshake(&p));
        pump_stats_t st = {0};
        CHECK(pump(&p, 1, 0, &st) == 0);
        SSL_SESSION *sess = SSL_get1_session(p.c);
        pair_free(&p);
        gh_tls_client_conf_t ic = cc;
        ic.insecure = 1; /* its cache stays empty: every session key below is new */
        gh_tls_client_t *raw = new_client(&ic);
        CHECK(raw && sess);
        if (raw && sess) {
            CHECK(mkpair(&p, raw, srv, "c.test", "by-hand-1") == 0);
            CHECK(SSL_set_session(p.c, sess) == 1);
            CHECK(handshake(&p));
            CHECK_INT(gh_tls_resumed(p.s), 0);
            CHECK_INT(gh_tls_server_name(p.s, NULL), 1);
            pair_free(&p);
            /* ...while the same session to a.test is */
            CHECK(mkpair(&p, raw, srv, "a.test", "by-hand-2") == 0);
            CHECK(SSL_set_session(p.c, sess) == 1);
            CHECK(handshake(&p));
            CHECK_INT(gh_tls_resumed(p.s), 1);
            pair_free(&p);
        }
        SSL_SESSION_free(sess);
        gh_tls_client_free(raw);

        /* no tickets on the server, or no cache on the client: never resumed */
        sc.no_tickets = 1;
        gh_tls_server_t *nt = new_server(&sc);
        CHECK(nt != NULL);
        if (nt) {
            CHECK(connect_once(cl, nt, "c.test", "nt", NULL, NULL, &res, NULL));
            CHECK(connect_once(cl, nt, "c.test", "nt", NULL, NULL, &res, NULL));
            CHECK_INT(res, 0);
        }
        gh_tls_server_free(nt);
        cc.session_cache = -1;
        gh_tls_client_t *nc = new_client(&cc);
        CHECK(nc != NULL);
        if (nc) {
            CHECK(connect_once(nc, srv, "a.test", NULL, NULL, NULL, &res, NULL));
            CHECK(connect_once(nc, srv, "a.test", NULL, NULL, NULL, &res, NULL));
            CHECK_INT(res, 0);
        }
        gh_tls_client_free(nc);
        gh_tls_server_free(srv);
        gh_tls_client_free(cl);
        if (t_cur_fail) {
            fprintf(stderr, "resumption with TLS 1.%d\n", v ? 3 : 2);
            break;
        }
    }
}

static void test_session_cache_bound(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    cc.session_cache = 2; /* two backends remembered; the oldest goes first */
    gh_tls_client_t *cl = new_client(&cc);
    CHECK(srv && cl);
    if (srv && cl) {
        int res;
        CHECK(connect_once(cl, srv, "a.test", "k1", NULL, NULL, &res, NULL));
        CHECK(connect_once(cl, srv, "a.test", "k2", NULL, NULL, &res, NULL));
        CHECK(connect_once(cl, srv, "a.test", "k3", NULL, NULL, &res, NULL));
        CHECK(connect_once(cl, srv, "a.test", "k1", NULL, NULL, &res, NULL));
        CHECK_INT(res, 0); /* evicted */
        CHECK(connect_once(cl, srv, "a.test", "k3", NULL, NULL, &res, NULL));
        CHECK_INT(res, 1);
    }
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
}

static void test_verify_failures(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *cl = new_client(&cc);
    cc.ca_file = path("ca2.pem");
    gh_tls_client_t *wrong_ca = new_client(&cc);
    CHECK(srv && cl && wrong_ca);
    if (!srv || !cl || !wrong_ca)
        goto out;
    pair_t p;
    CHECK(mkpair(&p, wrong_ca, srv, "a.test", NULL) == 0);
    CHECK(!handshake(&p));
    CHECK_INT(p.crc, GH_EIO);
    CHECK(strstr(cerr, "certificate verify failed: unable to get local issuer certificate"));
    CHECK(p.src < 0 && p.src != GH_EAGAIN);
    CHECK(strstr(serr, "unknown ca") != NULL); /* the client's alert, seen by the server */
    pair_free(&p);

    CHECK(mkpair(&p, cl, srv, "wrong.test", NULL) == 0);
    CHECK(!handshake(&p));
    CHECK(strstr(cerr, "certificate verify failed: hostname mismatch") != NULL);
    pair_free(&p);

    /* IP literals: verified against the IP SAN, and no SNI is sent */
    int match = -1;
    CHECK(mkpair(&p, cl, srv, "127.0.0.1", NULL) == 0 && handshake(&p));
    CHECK_INT(gh_tls_server_name(p.s, &match), 0);
    CHECK_INT(match, GH_TLS_SNI_NONE);
    CHECK(gh_tls_sni(p.s) == NULL);
    pair_free(&p);
    const char *bad_ips[] = {"127.0.0.2", "[::1]", "::1"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad_ips); i++) {
        CHECK(mkpair(&p, cl, srv, bad_ips[i], NULL) == 0);
        CHECK(!handshake(&p));
        CHECK(strstr(cerr, "certificate verify failed: IP address mismatch") != NULL);
        CHECK_INT(gh_tls_server_name(p.s, &match), 0);
        CHECK_INT(match, GH_TLS_SNI_NONE);
        pair_free(&p);
    }
    /* name NULL with verification: chain only */
    CHECK(mkpair(&p, cl, srv, NULL, NULL) == 0 && handshake(&p));
    pair_free(&p);
    /* a name we cannot use */
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(gh_tls_client_ssl(cl, p.cfd, longname, NULL) == NULL);
    CHECK(gh_tls_client_ssl(cl, p.cfd, "", NULL) == NULL);
    /* system store (no CA file): our private root is not in it */
    gh_tls_client_conf_t sys = {.system_ca = 1};
    gh_tls_client_t *scl = new_client(&sys);
    CHECK(scl != NULL);
    if (scl) {
        CHECK(mkpair(&p, scl, srv, "a.test", NULL) == 0);
        CHECK(!handshake(&p));
        CHECK(strstr(cerr, "unable to get local issuer certificate") != NULL);
        pair_free(&p);
    }
    gh_tls_client_free(scl);
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
    gh_tls_client_free(wrong_ca);
}

typedef struct {
    gh_tls_client_t *cl;
    gh_tls_server_t *srv;
    char key[16];
    int ok, resumed;
} thr_t;

static atomic_int threads_done;

static void *thr_main(void *arg)
{
    thr_t *t = arg;
    for (int i = 0; i < 30; i++) {
        int res = 0;
        t->ok += connect_once(t->cl, t->srv, i % 2 ? "a.test" : "c.test", t->key, NULL, NULL,
                              &res, NULL);
        t->resumed += res;
    }
    atomic_fetch_add(&threads_done, 1);
    return NULL;
}

/* Worker threads handshake (and share one client's session cache) while the main
 * thread rotates the ticket keys under them. */
static void test_threads(void)
{
    enum { NT = 4 };
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *cl = new_client(&cc);
    CHECK(srv && cl);
    if (!srv || !cl)
        goto out;
    thr_t t[NT];
    pthread_t tid[NT];
    atomic_store(&threads_done, 0);
    for (int i = 0; i < NT; i++) {
        t[i] = (thr_t){.cl = cl, .srv = srv};
        snprintf(t[i].key, sizeof t[i].key, "backend%d", i % 2);
        CHECK(pthread_create(&tid[i], NULL, thr_main, &t[i]) == 0);
    }
    int rotations = 0;
    uint64_t deadline = now_ms() + 30000;
    while (atomic_load(&threads_done) < NT && now_ms() < deadline) {
        CHECK_INT(gh_tls_ticket_rotate(), 0);
        rotations++;
        struct timespec ts = {0, 2 * 1000 * 1000}; /* pacing, not waiting for time */
        nanosleep(&ts, NULL);
    }
    int ok = 0, resumed = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(tid[i], NULL);
        ok += t[i].ok;
        resumed += t[i].resumed;
    }
    CHECK_INT(ok, NT * 30); /* how many resume depends on the pace: not checked */
    printf("  %d threads: %d handshakes (%d resumed) during %d key rotations\n", NT, ok, resumed,
           rotations);
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
}

static void expect_server_error(gh_tls_server_conf_t *sc, const char *want)
{
    char err[256] = "";
    gh_tls_server_t *srv = gh_tls_server_new(sc, err, sizeof err);
    CHECK(srv == NULL);
    gh_tls_server_free(srv);
    if (!strstr(err, want)) {
        t_cur_fail++;
        fprintf(stderr, "server error \"%s\", expected \"%s\"\n", err, want);
    }
    CHECK(ERR_peek_error() == 0); /* nothing left behind in the thread's queue */
}

static void expect_client_error(gh_tls_client_conf_t *cc, const char *want)
{
    char err[256] = "";
    gh_tls_client_t *cl = gh_tls_client_new(cc, err, sizeof err);
    CHECK(cl == NULL);
    gh_tls_client_free(cl);
    if (!strstr(err, want)) {
        t_cur_fail++;
        fprintf(stderr, "client error \"%s\", expected \"%s\"\n", err, want);
    }
}

static void test_bad_config(void)
{
    char want[256];
    gh_tls_cert_conf_t c1[1];
    gh_tls_server_conf_t sc = {.certs = c1, .ncerts = 1};

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("missing.pem"), .key_file = path("a.key")};
    snprintf(want, sizeof want, "%s: No such file or directory", path("missing.pem"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("a.pem"), .key_file = path("missing.key")};
    snprintf(want, sizeof want, "%s: No such file or directory", path("missing.key"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("a.pem"), .key_file = path("c.key")};
    snprintf(want, sizeof want, "%s: key does not match certificate %s", path("c.key"),
             path("a.pem"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("garbage.pem"), .key_file = path("a.key")};
    snprintf(want, sizeof want, "%s: no certificate found", path("garbage.pem"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("a.pem"), .key_file = path("garbage.pem")};
    snprintf(want, sizeof want, "%s: no usable private key", path("garbage.pem"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("c.pem"), .key_file = path("enc.key")};
    snprintf(want, sizeof want, "%s: no usable private key (encrypted keys are not supported)",
             path("enc.key"));
    expect_server_error(&sc, want);

    c1[0] = (gh_tls_cert_conf_t){.cert_file = path("a.pem"), .key_file = path("a.key")};
    sc.ciphers = "NOPE-NOTHING";
    expect_server_error(&sc, "ciphers \"NOPE-NOTHING\": no usable cipher");
    sc.ciphers = NULL;
    sc.ciphersuites = "TLS_NOPE";
    expect_server_error(&sc, "ciphersuites \"TLS_NOPE\": no usable suite");
    sc.ciphersuites = NULL;
    sc.min_version = TLS1_1_VERSION;
    expect_server_error(&sc, "min/max version");
    sc.min_version = TLS1_3_VERSION;
    sc.max_version = TLS1_2_VERSION;
    expect_server_error(&sc, "min/max version");
    sc.min_version = sc.max_version = 0;
    sc.default_cert = 1;
    expect_server_error(&sc, "default certificate 1 out of range");
    sc.default_cert = 0;
    const char *const empty[] = {""};
    sc.alpn = empty;
    sc.nalpn = 1;
    expect_server_error(&sc, "alpn: protocol name must be 1 to 255 bytes");
    sc.alpn = NULL;
    sc.nalpn = 0;
    const char *const badname[] = {"a*.test"};
    c1[0].names = badname;
    c1[0].nnames = 1;
    snprintf(want, sizeof want, "%s: server name \"a*.test\" is not a host name", path("a.pem"));
    expect_server_error(&sc, want);
    c1[0].nnames = 0;
    sc.ncerts = 0;
    expect_server_error(&sc, "no certificate configured");

    /* a certificate without names is fine as the default, not otherwise */
    gh_tls_cert_conf_t c2[2] = {
        {.cert_file = path("a.pem"), .key_file = path("a.key")},
        {.cert_file = path("n.pem"), .key_file = path("c.key")},
    };
    sc = (gh_tls_server_conf_t){.certs = c2, .ncerts = 2};
    snprintf(want, sizeof want, "%s: no server names in the certificate", path("n.pem"));
    expect_server_error(&sc, want);
    sc.default_cert = 1;
    char err[256] = "";
    gh_tls_server_t *srv = gh_tls_server_new(&sc, err, sizeof err);
    CHECK(srv != NULL);
    gh_tls_server_free(srv);

    gh_tls_client_conf_t cc = {.ca_file = path("missing-ca.pem")};
    snprintf(want, sizeof want, "%s: No such file or directory", path("missing-ca.pem"));
    expect_client_error(&cc, want);
    cc.ca_file = path("garbage.pem");
    snprintf(want, sizeof want, "%s: no CA certificate loaded", path("garbage.pem"));
    expect_client_error(&cc, want);
    cc.ca_file = path("ca.pem");
    cc.cert_file = path("cl.pem");
    cc.key_file = path("a.key");
    snprintf(want, sizeof want, "%s: key does not match certificate %s", path("a.key"),
             path("cl.pem"));
    expect_client_error(&cc, want);
    cc.cert_file = NULL;
    expect_client_error(&cc, "client key without a certificate");
}

static void test_plain_http(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    CHECK(srv != NULL);
    if (!srv)
        return;
    static const char req[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    struct {
        const char *bytes;
        size_t n;
        int plain;
    } cases[] = {
        {req, sizeof req - 1, 1},
        {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24, 1}, /* h2 prior knowledge */
        {"P", 1, 1},                                  /* too early to tell more */
        {"\x00\x01\x02\x03", 4, 0},                  /* neither TLS nor HTTP */
        {"get / HTTP/1.1\r\n", 16, 0},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(cases); i++) {
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
        SSL *s = gh_tls_server_ssl(srv, sv[1]);
        CHECK(s != NULL);
        /* nothing yet: wait for reading */
        CHECK_INT(gh_tls_handshake(s), GH_EAGAIN);
        CHECK_INT(gh_tls_want(s), GH_TLS_WANT_READ);
        CHECK(write(sv[0], cases[i].bytes, cases[i].n) == (ssize_t)cases[i].n);
        CHECK_INT(gh_tls_handshake(s), GH_EINVAL);
        CHECK_INT(gh_tls_plain_http(s), cases[i].plain);
        CHECK_INT(gh_tls_shutdown(s), 0); /* says nothing in TLS to a clear-text client */
        char got[64];
        ssize_t k = read(sv[1], got, sizeof got); /* nothing was consumed */
        CHECK(k == (ssize_t)cases[i].n && memcmp(got, cases[i].bytes, cases[i].n) == 0);
        k = read(sv[0], got, sizeof got); /* and nothing was sent */
        CHECK(k < 0 && errno == EAGAIN);
        SSL_free(s);
        close(sv[0]);
        close(sv[1]);
    }
    /* EOF before any byte */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    SSL *s = gh_tls_server_ssl(srv, sv[1]);
    close(sv[0]);
    CHECK_INT(gh_tls_handshake(s), GH_ECLOSED);
    SSL_free(s);
    close(sv[1]);
    gh_tls_server_free(srv);
}

static void test_large_transfer(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *c13 = new_client(&cc);
    cc.max_version = TLS1_2_VERSION;
    gh_tls_client_t *c12 = new_client(&cc);
    CHECK(srv && c13 && c12);
    for (int v = 0; srv && c13 && c12 && v < 2; v++) {
        pair_t p;
        CHECK(mkpair(&p, v ? c13 : c12, srv, "c.test", NULL) == 0);
        /* small socket buffers: many short writes and EAGAINs */
        int sz = 8192;
        setsockopt(p.cfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        setsockopt(p.sfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        CHECK(handshake(&p));
        pump_stats_t st = {0};
        CHECK(pump(&p, 1 << 20, 1, &st) == 0);
        CHECK(st.eagain_w > 0);
        CHECK(st.short_w > 0);
        CHECK(st.moved > 0);
        printf("  1 MiB each way over TLS 1.%d: %d short writes, %d EAGAIN on write\n",
               v ? 3 : 2, st.short_w, st.eagain_w);
        pair_free(&p);
    }
    gh_tls_server_free(srv);
    gh_tls_client_free(c13);
    gh_tls_client_free(c12);
}

static void test_close(void)
{
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    gh_tls_client_t *cl = new_client(&cc);
    CHECK(srv && cl);
    if (!srv || !cl)
        goto out;
    pair_t p;
    char b[16];
    /* close_notify: 0 */
    CHECK(mkpair(&p, cl, srv, "a.test", NULL) == 0 && handshake(&p));
    CHECK_INT(gh_tls_write(p.s, "bye", 3), 3);
    CHECK_INT(gh_tls_shutdown(p.s), 0);
    CHECK_INT(gh_tls_read(p.c, b, sizeof b), 3);
    CHECK_INT(gh_tls_read(p.c, b, sizeof b), 0);
    pair_free(&p);
    /* EOF without close_notify: GH_ECLOSED, and data before it is still delivered */
    CHECK(mkpair(&p, cl, srv, "a.test", NULL) == 0 && handshake(&p));
    CHECK_INT(gh_tls_write(p.s, "cut", 3), 3);
    shutdown(p.sfd, SHUT_WR);
    CHECK_INT(gh_tls_read(p.c, b, sizeof b), 3);
    CHECK_INT(gh_tls_read(p.c, b, sizeof b), GH_ECLOSED);
    gh_tls_strerror(p.c, b, sizeof b); /* drain */
    CHECK_INT(gh_tls_shutdown(p.c), 0); /* after a fatal error: silently nothing */
    pair_free(&p);
    /* nothing to read yet */
    CHECK(mkpair(&p, cl, srv, "a.test", NULL) == 0 && handshake(&p));
    CHECK_INT(gh_tls_read(p.s, b, sizeof b), GH_EAGAIN);
    CHECK_INT(gh_tls_want(p.s), GH_TLS_WANT_READ);
    pair_free(&p);
    /* a corrupted record: GH_EIO with OpenSSL's reason */
    CHECK(mkpair(&p, cl, srv, "a.test", NULL) == 0 && handshake(&p));
    CHECK_INT(gh_tls_write(p.c, "x", 1), 1);
    unsigned char rec[64];
    ssize_t k = read(p.sfd, rec, sizeof rec); /* steal the record, flip a bit, put it back */
    CHECK(k > 5);
    if (k > 5) {
        rec[k - 1] ^= 1;
        CHECK(write(p.cfd, rec, (size_t)k) == k);
        CHECK_INT(gh_tls_read(p.s, b, sizeof b), GH_EIO);
        char why[200];
        gh_tls_strerror(p.s, why, sizeof why);
        CHECK(strstr(why, "bad record mac") || strstr(why, "decryption failed"));
    }
    pair_free(&p);
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
}

/* Bytes of heap an idle TLS connection keeps after its handshake and a little
 * traffic (glibc's count of allocated bytes, so the numbers are the library's own). */
static void test_idle_memory(void)
{
    enum { N = 200 };
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    gh_tls_client_conf_t cc = client_conf();
    cc.session_cache = -1;
    gh_tls_client_t *cl = new_client(&cc);
    cc.max_version = TLS1_2_VERSION;
    gh_tls_client_t *c12 = new_client(&cc);
    static pair_t ps[N];
    CHECK(srv && cl && c12);
    if (!srv || !cl || !c12)
        goto out;
    if (UNDER_ASAN) {
        printf("  idle memory per connection: not measured under ASan\n");
        goto out;
    }
    /* warm up: first handshakes fetch algorithms and fill OpenSSL's caches */
    for (int i = 0; i < 4; i++)
        CHECK(connect_once(cl, srv, "c.test", NULL, NULL, NULL, NULL, NULL));
    for (int mode = 0; mode < 3; mode++) {
        gh_tls_client_t *c = mode == 2 ? c12 : cl;
        size_t before = mallinfo2().uordblks;
        int ok = 1;
        for (int i = 0; i < N && ok; i++) {
            ok = mkpair(&ps[i], c, srv, "c.test", NULL) == 0;
            if (ok && mode == 1) {
                SSL_clear_mode(ps[i].s, SSL_MODE_RELEASE_BUFFERS);
                SSL_clear_mode(ps[i].c, SSL_MODE_RELEASE_BUFFERS);
            }
            pump_stats_t st = {0};
            ok = ok && handshake(&ps[i]) && pump(&ps[i], 100, 0, &st) == 0;
        }
        CHECK(ok);
        size_t both = mallinfo2().uordblks;
        for (int i = 0; i < N; i++) { /* drop the client sides, keep the server sides */
            SSL_free(ps[i].c);
            ps[i].c = NULL;
        }
        size_t server = mallinfo2().uordblks;
        printf("  idle TLS 1.%d connection (%s): server side %zu bytes, client side %zu bytes\n",
               mode == 2 ? 2 : 3, mode == 1 ? "without RELEASE_BUFFERS" : "RELEASE_BUFFERS",
               (server - before) / N, (both - server) / N);
        for (int i = 0; i < N; i++)
            pair_free(&ps[i]);
        if (mode == 0)
            CHECK((server - before) / N < 16384); /* no 16 KiB buffer held */
    }
out:
    gh_tls_server_free(srv);
    gh_tls_client_free(cl);
    gh_tls_client_free(c12);
}

/* ---- real clients ----------------------------------------------------------------------- */

/* Serves one connection on lfd: TLS handshake, read a request head, answer, close. */
static int serve_one(gh_tls_server_t *srv, int lfd, pid_t child, char *alpn, size_t alpnlen)
{
    uint64_t deadline = now_ms() + 10000;
    int fd = -1;
    while (fd < 0 && now_ms() < deadline) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        poll(&pf, 1, 100);
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && waitpid(child, NULL, WNOHANG) == child)
            return -1; /* the client gave up */
    }
    if (fd < 0)
        return -1;
    SSL *s = gh_tls_server_ssl(srv, fd);
    int rc = GH_EAGAIN;
    while (rc == GH_EAGAIN && now_ms() < deadline) {
        rc = gh_tls_handshake(s);
        struct pollfd pf = {.fd = fd, .events = events(s)};
        if (rc == GH_EAGAIN)
            poll(&pf, 1, 100);
    }
    const char *a = rc == 0 ? gh_tls_alpn(s) : NULL;
    snprintf(alpn, alpnlen, "%s", a ? a : "");
    char req[2048];
    size_t got = 0;
    while (rc == 0 && now_ms() < deadline && !memmem(req, got, "\r\n\r\n", 4)) {
        ssize_t k = gh_tls_read(s, req + got, sizeof req - got);
        if (k > 0) {
            got += (size_t)k;
        } else if (k == GH_EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = events(s)};
            poll(&pf, 1, 100);
        } else {
            break; /* s_client sends no request: it closes */
        }
    }
    if (got) {
        static const char resp[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
        size_t off = 0;
        while (off < sizeof resp - 1 && now_ms() < deadline) {
            ssize_t k = gh_tls_write(s, resp + off, sizeof resp - 1 - off);
            if (k > 0)
                off += (size_t)k;
            else if (k != GH_EAGAIN)
                break;
            else {
                struct pollfd pf = {.fd = fd, .events = events(s)};
                poll(&pf, 1, 100);
            }
        }
    }
    gh_tls_shutdown(s);
    SSL_free(s);
    close(fd);
    return rc;
}

/* Runs argv with stdout+stderr to outfile, serving its one connection. Returns the
 * exit status, or -1 (killed after the deadline). */
static int run_client(gh_tls_server_t *srv, int lfd, char *const argv[], const char *outfile,
                      char *alpn, size_t alpnlen, int *hs)
{
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(o, 1);
        dup2(o, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    *hs = serve_one(srv, lfd, pid, alpn, alpnlen);
    uint64_t deadline = now_ms() + 10000;
    int status;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int file_has(const char *file, const char *needle)
{
    char buf[16384];
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int found = strstr(buf, needle) != NULL;
    if (!found)
        fprintf(stderr, "%s lacks \"%s\":\n%s\n", file, needle, buf);
    return found;
}

static void test_real_clients(void)
{
    if (access("/usr/bin/openssl", X_OK) != 0) {
        printf("  real clients: skipped (no openssl CLI)\n");
        return;
    }
    gh_tls_server_conf_t sc = server_conf();
    gh_tls_server_t *srv = new_server(&sc);
    static const char *const h1[] = {"http/1.1"};
    sc.alpn = h1;
    sc.nalpn = 1;
    gh_tls_server_t *srv_h1 = new_server(&sc);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    CHECK(srv && srv_h1 && lfd >= 0);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 8) == 0 &&
          getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    if (t_cur_fail)
        goto out;
    char port[16], connect_to[64], out[128], alpn[32];
    snprintf(port, sizeof port, "%u", ntohs(sa.sin_port));
    snprintf(connect_to, sizeof connect_to, "127.0.0.1:%s", port);
    snprintf(out, sizeof out, "%s", path("client.out"));
    int hs = -1;

    char *sclient[] = {"/usr/bin/openssl", "s_client", "-connect", connect_to, "-servername",
                       "x.b.test", "-CAfile", (char *)path("ca.pem"), "-verify_return_error",
                       "-alpn", "h2,http/1.1", "-verify_hostname", "x.b.test", NULL};
    int rc = run_client(srv, lfd, sclient, out, alpn, sizeof alpn, &hs);
    CHECK_INT(rc, 0);
    CHECK_INT(hs, 0);
    CHECK(strcmp(alpn, "h2") == 0);
    CHECK(file_has(out, "Verify return code: 0 (ok)"));
    CHECK(file_has(out, "ALPN protocol: h2"));
    CHECK(file_has(out, "subject=CN = a.test"));

    if (access("/usr/bin/curl", X_OK) == 0) {
        char resolve[64], url[64];
        snprintf(resolve, sizeof resolve, "c.test:%s:127.0.0.1", port);
        snprintf(url, sizeof url, "https://c.test:%s/", port);
        char *curl[] = {"/usr/bin/curl", "-sS", "--max-time", "5", "--cacert",
                        (char *)path("ca.pem"), "--resolve", resolve, url, NULL};
        rc = run_client(srv_h1, lfd, curl, out, alpn, sizeof alpn, &hs);
        CHECK_INT(rc, 0);
        CHECK_INT(hs, 0);
        CHECK(strcmp(alpn, "http/1.1") == 0);
        CHECK(file_has(out, "ok"));
    } else {
        printf("  curl: skipped (not installed)\n");
    }
out:
    if (lfd >= 0)
        close(lfd);
    gh_tls_server_free(srv);
    gh_tls_server_free(srv_h1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (make_certs() < 0) {
        printf("tls: 0 passed, 1 failed\n");
        return 1;
    }
    RUN(test_sni);
    RUN(test_on_hello);
    RUN(test_alpn);
    RUN(test_versions);
    RUN(test_resumption);
    RUN(test_session_cache_bound);
    RUN(test_threads);
    RUN(test_verify_failures);
    RUN(test_bad_config);
    RUN(test_plain_http);
    RUN(test_large_transfer);
    RUN(test_close);
    RUN(test_idle_memory);
    RUN(test_real_clients);
    gh_tls_cleanup();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (t_fail == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return t_done("tls");
}
