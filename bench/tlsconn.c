/* tlsconn.c: TLS client for bench/tls.sh (handshake rate and idle TLS connections).
 *
 *   tlsconn probe HOST PORT PATH
 *   tlsconn rate  HOST PORT CONNS DURATION_S PATH new|reuse|single
 *   tlsconn idle  HOST PORT N PATH TIMEOUT_S
 *
 * Every connection: TCP connect, TLS handshake (TLS 1.3 only, the client offers OpenSSL's default
 * suites and groups, so what is negotiated is the server's choice; ALPN "http/1.1"; no SNI since the
 * target is an IP literal; no certificate verification: the CertificateVerify signature is still
 * checked, as TLS 1.3 requires), one "GET PATH HTTP/1.1", the whole response read (Content-Length).
 *
 * probe: one connection; prints "PROBE version=.. cipher=.. group=.. alpn=.. tickets=.. status=..".
 *
 * rate: CONNS connections at a time, each doing connection-per-request ("Connection: close", the
 *   response is read until the server closes, so the server side closes first and no TIME_WAIT is
 *   left on the client's ports), for DURATION_S seconds; connections in flight at the end are
 *   finished. "new": every connection is a fresh session (a full handshake: ECDHE + certificate +
 *   CertificateVerify), tickets the server sends are counted and thrown away. "reuse": the last
 *   ticket received is offered on every new connection (PSK with (EC)DHE; like s_time -reuse, a
 *   ticket may be offered many times). "single": every ticket received is offered once, the newest
 *   unused one first, and a connection with none left does a full handshake: a client that follows
 *   RFC 8446 C.4 (browsers use a TLS 1.3 ticket once), so the share resumed shows whether the
 *   server replaces the tickets it consumes.
 *   Prints "RATE conns=.. ok=.. resumed=.. errors=.. (connect/handshake/io/status) tickets=..
 *   elapsed_ms=.. rate=.. p50_ms=.. p99_ms=.. version=.. cipher=.. group=..": rate = ok / elapsed,
 *   resumed = handshakes the client saw resumed (SSL_session_reused), tickets = NewSessionTicket
 *   messages received, latency = connect start to end of response.
 *
 * idle: N connections (at most WINDOW being set up at a time), each completes the handshake and one
 *   keep-alive GET, then stays open and idle. Prints "READY open=.. failed=.. bad_status=..
 *   setup_ms=..", holds until SIGTERM/SIGINT (or TIMEOUT_S), prints "STILL_OPEN n closed_by_peer=m"
 *   (non-blocking MSG_PEEK on each socket) and closes everything with RST (SO_LINGER 0). The client
 *   keeps its own SSL objects with their buffers released (SSL_MODE_RELEASE_BUFFERS).
 *
 * Build: cc -O2 -o tlsconn tlsconn.c -lssl -lcrypto */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 100
#define RBUF 8192

enum { S_FREE, S_CONNECTING, S_HANDSHAKE, S_WRITE, S_READ, S_DRAIN, S_IDLE, S_FAILED };
enum { E_CONNECT, E_HANDSHAKE, E_IO, E_STATUS, E_N };

typedef struct {
    int fd, state, status;
    SSL *ssl;
    char *buf;
    size_t len;
    long long t0; /* µs */
    int tickets;
} conn_t;

static SSL_CTX *g_ctx;
static int g_reuse, g_ex_idx; /* g_reuse: 0 new, 1 reuse, 2 single */
static SSL_SESSION *g_sess; /* reuse mode: the last ticket received */
#define POOL 4096
static SSL_SESSION *g_pool[POOL]; /* single mode: tickets not used yet, newest last */
static int g_npool;
static long long g_tickets;
static char g_req[512];
static int g_reqlen;
static struct sockaddr_in g_sa;
static int g_ep;
static long long g_err[E_N];
static long long g_resumed, g_handshakes;
static void note_negotiated(SSL *ssl);

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Called for every NewSessionTicket (TLS 1.3). reuse: the newest one becomes the session offered
 * next (a copy, so that nothing done to the connection that received it affects it). Returns 0:
 * the reference passed in is not kept. A session resumed without a new ticket stays the one
 * offered, i.e. a ticket may be offered many times (as OpenSSL's s_time -reuse does). */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    conn_t *k = SSL_get_ex_data(ssl, g_ex_idx);
    if (k)
        k->tickets++;
    g_tickets++;
    if (!g_reuse || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy)
        return 0;
    if (g_reuse == 2) { /* single: keep every ticket (the oldest dropped when full) */
        if (g_npool == POOL) {
            SSL_SESSION_free(g_pool[0]);
            memmove(g_pool, g_pool + 1, (POOL - 1) * sizeof *g_pool);
            g_npool--;
        }
        g_pool[g_npool++] = copy;
        return 0;
    }
    if (g_sess)
        SSL_SESSION_free(g_sess);
    g_sess = copy;
    return 0;
}

static void init_ctx(void)
{
    g_ctx = SSL_CTX_new(TLS_client_method());
    if (!g_ctx) {
        fprintf(stderr, "tlsconn: SSL_CTX_new failed\n");
        exit(1);
    }
    SSL_CTX_set_min_proto_version(g_ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(g_ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(g_ctx, SSL_MODE_RELEASE_BUFFERS);
    /* sessions go only where new_session_cb puts them: no internal client cache */
    SSL_CTX_set_session_cache_mode(g_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(g_ctx, new_session_cb);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(g_ctx, alpn, sizeof alpn - 1);
    g_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* 1 when buf holds a complete response, 0 when more is needed; *status set once headers are in. */
static int response_complete(const char *buf, size_t len, int *status)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t hlen = (size_t)(end - buf) + 4;
    if (len >= 12 && memcmp(buf, "HTTP/1.", 7) == 0)
        *status = atoi(buf + 9);
    long cl = -1;
    int chunked = 0;
    for (const char *p = buf; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            cl = strtol(p + 15, NULL, 10);
        if ((size_t)(eol - p) > 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0 &&
            memmem(p, (size_t)(eol - p), "chunked", 7))
            chunked = 1;
        p = eol + 2;
    }
    if (chunked)
        return len >= 5 && memcmp(buf + len - 5, "0\r\n\r\n", 5) == 0;
    if (cl >= 0)
        return len >= hlen + (size_t)cl;
    return 0; /* no framing: read to EOF */
}

static void watch(conn_t *k, uint32_t id, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u32 = id};
    epoll_ctl(g_ep, op, k->fd, &ev);
}

/* Starts a connection in slot id. 0 or -1 (counted as a connect error). */
static int conn_start(conn_t *k, uint32_t id)
{
    memset(k, 0, sizeof *k);
    k->t0 = now_us();
    k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (k->fd < 0) {
        perror("tlsconn: socket");
        exit(1);
    }
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(k->fd, (struct sockaddr *)&g_sa, sizeof g_sa) < 0 && errno != EINPROGRESS) {
        close(k->fd);
        k->fd = -1;
        k->state = S_FAILED;
        g_err[E_CONNECT]++;
        return -1;
    }
    k->state = S_CONNECTING;
    watch(k, id, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

/* Releases a slot's resources; rst: close with RST (SO_LINGER 0). */
static void conn_close(conn_t *k, int rst)
{
    if (k->ssl) {
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    free(k->buf);
    k->buf = NULL;
    if (k->fd >= 0) {
        if (rst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(k->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        epoll_ctl(g_ep, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
        k->fd = -1;
    }
}

static void fail(conn_t *k, int kind)
{
    g_err[kind]++;
    conn_close(k, 1);
    k->state = S_FAILED;
}

/* Waits for what OpenSSL asked for after a WANT_READ/WANT_WRITE. */
static void want(conn_t *k, uint32_t id, int sslerr)
{
    watch(k, id, sslerr == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
}

/* Drives slot id as far as it goes. Returns the state reached (S_IDLE when the response is in and
 * the connection is kept (keep-alive), S_FREE when it is done and closed, S_FAILED, or a
 * state still in progress). drain: connection-per-request, read until the server closes. */
static int conn_step(conn_t *k, uint32_t id, int drain)
{
    for (;;) {
        switch (k->state) {
        case S_CONNECTING: {
            int err = 0;
            socklen_t el = sizeof err;
            getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el);
            if (err == EINPROGRESS || err == EALREADY)
                return k->state;
            if (err) {
                fail(k, E_CONNECT);
                return k->state;
            }
            k->ssl = SSL_new(g_ctx);
            if (!k->ssl) {
                fprintf(stderr, "tlsconn: SSL_new failed\n");
                exit(1);
            }
            SSL_set_ex_data(k->ssl, g_ex_idx, k);
            SSL_set_fd(k->ssl, k->fd);
            if (g_reuse == 2 && g_npool > 0) { /* single: each ticket once, the newest first */
                SSL_SESSION *t = g_pool[--g_npool];
                SSL_set_session(k->ssl, t);
                SSL_SESSION_free(t);
            } else if (g_reuse == 1 && g_sess) {
                /* a copy: OpenSSL marks the session it resumes (in TLS 1.3, tickets are meant to be
                 * used once) not resumable, and we want to offer this ticket again if no newer one comes */
                SSL_SESSION *d = SSL_SESSION_dup(g_sess);
                if (d) {
                    SSL_set_session(k->ssl, d);
                    SSL_SESSION_free(d);
                }
            }
            k->state = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE: {
            int r = SSL_connect(k->ssl);
            if (r == 1) {
                g_handshakes++;
                if (SSL_session_reused(k->ssl))
                    g_resumed++;
                note_negotiated(k->ssl);
                k->state = S_WRITE;
                break;
            }
            int e = SSL_get_error(k->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want(k, id, e);
                return k->state;
            }
            ERR_clear_error();
            fail(k, E_HANDSHAKE);
            return k->state;
        }
        case S_WRITE: {
            int r = SSL_write(k->ssl, g_req, g_reqlen);
            if (r == g_reqlen) {
                k->state = S_READ;
                k->buf = malloc(RBUF);
                k->len = 0;
                break;
            }
            int e = SSL_get_error(k->ssl, r);
            if (r <= 0 && (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)) {
                want(k, id, e);
                return k->state;
            }
            ERR_clear_error();
            fail(k, E_IO);
            return k->state;
        }
        case S_READ:
        case S_DRAIN: {
            if (k->len == RBUF) { /* keep only the tail: the headers were parsed already or are lost */
                if (k->state == S_READ && !memmem(k->buf, k->len, "\r\n\r\n", 4)) {
                    fail(k, E_IO);
                    return k->state;
                }
                k->len = RBUF / 2;
                memmove(k->buf, k->buf + RBUF / 2, RBUF / 2);
            }
            size_t got;
            int r = SSL_read_ex(k->ssl, k->buf + k->len, RBUF - k->len, &got);
            if (r == 1) {
                if (k->state == S_READ) {
                    k->len += got;
                    if (response_complete(k->buf, k->len, &k->status)) {
                        if (k->status != 200) {
                            fail(k, E_STATUS);
                            return k->state;
                        }
                        if (!drain) {
                            free(k->buf);
                            k->buf = NULL;
                            epoll_ctl(g_ep, EPOLL_CTL_DEL, k->fd, NULL);
                            k->state = S_IDLE;
                            return k->state;
                        }
                        k->state = S_DRAIN;
                    }
                } else if (got) {
                    k->len = 0; /* bytes after the response: ignore */
                }
                break;
            }
            int e = SSL_get_error(k->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                want(k, id, e);
                return k->state;
            }
            ERR_clear_error();
            /* close_notify (ZERO_RETURN) or EOF without it (SYSCALL): fine once the response is in */
            if (k->state == S_DRAIN && (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)) {
                conn_close(k, 0);
                k->state = S_FREE;
                return k->state;
            }
            fail(k, E_IO);
            return k->state;
        }
        default:
            return k->state;
        }
    }
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static const char *group_name(SSL *ssl)
{
    int nid = SSL_get_negotiated_group(ssl);
    const char *n = nid ? OBJ_nid2sn(nid & ~TLSEXT_nid_unknown) : NULL;
    return n ? n : "?";
}

/* What the first completed connection negotiated (for the report). */
static char g_neg[256];
static void note_negotiated(SSL *ssl)
{
    if (g_neg[0] || !ssl)
        return;
    const unsigned char *a = NULL;
    unsigned al = 0;
    SSL_get0_alpn_selected(ssl, &a, &al);
    snprintf(g_neg, sizeof g_neg, "version=%s cipher=%s group=%s alpn=%.*s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), group_name(ssl), al ? (int)al : 1,
             al ? (const char *)a : "-");
}

static void setup(const char *host, int port, const char *path, int close_conn, int n)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
        fprintf(stderr, "tlsconn: RLIMIT_NOFILE %lu too low for %d sockets\n", (unsigned long)rl.rlim_cur, n);
        exit(1);
    }
    g_sa.sin_family = AF_INET;
    g_sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_sa.sin_addr) != 1) {
        fprintf(stderr, "tlsconn: bad IPv4 address %s\n", host);
        exit(2);
    }
    g_reqlen = snprintf(g_req, sizeof g_req, "GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: tlsconn\r\n%s\r\n", path,
                        close_conn ? "Connection: close\r\n" : "");
    signal(SIGPIPE, SIG_IGN);
    init_ctx();
    g_ep = epoll_create1(0);
}

static int do_rate(int conns, int duration_s)
{
    conn_t *c = calloc((size_t)conns, sizeof *c);
    size_t cap = 1 << 16, nlat = 0;
    long long *lat = malloc(cap * sizeof *lat);
    long long ok = 0, t0 = now_us(), stop = t0 + (long long)duration_s * 1000000,
              hard = stop + 5000000, last = t0;
    int active = 0;
    struct epoll_event evs[256];
    for (int i = 0; i < conns; i++)
        if (conn_start(&c[i], (uint32_t)i) == 0)
            active++;
    while (active > 0) {
        long long t = now_us();
        if (t > hard) {
            fprintf(stderr, "tlsconn: %d connections still in flight 5 s after the end: dropped\n", active);
            break;
        }
        int m = epoll_wait(g_ep, evs, 256, 100);
        for (int e = 0; e < m; e++) {
            uint32_t id = evs[e].data.u32;
            conn_t *k = &c[id];
            int st = conn_step(k, id, 1);
            if (st == S_FREE || st == S_FAILED) {
                active--;
                if (st == S_FREE) {
                    ok++;
                    long long now = now_us();
                    last = now;
                    if (nlat == cap)
                        lat = realloc(lat, (cap *= 2) * sizeof *lat);
                    lat[nlat++] = now - k->t0;
                }
                if (now_us() < stop && conn_start(k, id) == 0)
                    active++;
            }
        }
        /* a connect that failed at once leaves its slot idle: retry it while time remains */
        if (now_us() < stop)
            for (int i = 0; i < conns; i++)
                if (c[i].state == S_FAILED && conn_start(&c[i], (uint32_t)i) == 0)
                    active++;
    }
    qsort(lat, nlat, sizeof *lat, cmp_ll);
    double el = (double)(last - t0) / 1e6;
    printf("RATE conns=%d ok=%lld resumed=%lld errors=%lld (connect %lld handshake %lld io %lld status %lld) tickets=%lld "
           "elapsed_ms=%.0f rate=%.1f p50_ms=%.3f p99_ms=%.3f %s\n",
           conns, ok, g_resumed, g_err[0] + g_err[1] + g_err[2] + g_err[3], g_err[E_CONNECT], g_err[E_HANDSHAKE],
           g_err[E_IO], g_err[E_STATUS], g_tickets, el * 1000, el > 0 ? ok / el : 0.0,
           nlat ? lat[nlat / 2] / 1000.0 : 0.0, nlat ? lat[(size_t)(nlat * 0.99)] / 1000.0 : 0.0,
           g_neg[0] ? g_neg : "version=? cipher=? group=?");
    return ok > 0 ? 0 : 1;
}

static int do_idle(int n, int timeout_s)
{
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);

    conn_t *c = calloc((size_t)n, sizeof *c);
    int next = 0, inflight = 0, done = 0, failed = 0;
    long long t0 = now_us(), deadline = t0 + (long long)timeout_s * 1000000;
    struct epoll_event evs[256];
    while (done + failed < n) {
        while (inflight < WINDOW && next < n) {
            if (conn_start(&c[next], (uint32_t)next) == 0)
                inflight++;
            else
                failed++;
            next++;
        }
        if (now_us() > deadline) {
            fprintf(stderr, "tlsconn: setup timed out with %d in flight\n", inflight);
            for (int i = 0; i < next; i++)
                if (c[i].state != S_IDLE && c[i].state != S_FAILED) {
                    fail(&c[i], E_IO);
                    failed++;
                }
            failed += n - next;
            break;
        }
        int m = epoll_wait(g_ep, evs, 256, 100);
        for (int e = 0; e < m; e++) {
            uint32_t id = evs[e].data.u32;
            int st = conn_step(&c[id], id, 0);
            if (st == S_IDLE) {
                inflight--;
                done++;
            } else if (st == S_FAILED) {
                inflight--;
                failed++;
            }
        }
    }
    printf("READY open=%d failed=%d bad_status=%lld setup_ms=%lld resumed=%lld tickets=%lld %s\n", done, failed,
           g_err[E_STATUS], (now_us() - t0) / 1000, g_resumed, g_tickets, g_neg[0] ? g_neg : "");
    fflush(stdout);

    struct timespec hold = {.tv_sec = timeout_s};
    int sig = sigtimedwait(&ss, NULL, &hold);
    int still = 0, closed = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].state != S_IDLE)
            continue;
        char b;
        ssize_t r = recv(c[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            still++;
        else if (r > 0)
            still++; /* data (e.g. a late TLS record), but the connection is open */
        else
            closed++;
        conn_close(&c[i], 1);
    }
    printf("STILL_OPEN %d closed_by_peer=%d%s\n", still, closed, sig < 0 ? " (hold timed out)" : "");
    fflush(stdout);
    return 0;
}

static int do_probe(void)
{
    conn_t k;
    struct epoll_event ev;
    long long deadline = now_us() + 5000000;
    if (conn_start(&k, 0) != 0)
        return 1;
    int st = k.state;
    while (now_us() < deadline) {
        if (epoll_wait(g_ep, &ev, 1, 100) > 0)
            st = conn_step(&k, 0, 0);
        if (st == S_IDLE || st == S_FAILED)
            break;
    }
    printf("PROBE %s tickets=%lld status=%d resumed=%lld result=%s\n", g_neg[0] ? g_neg : "version=?", g_tickets,
           k.status, g_resumed, st == S_IDLE ? "ok" : "failed");
    return st == S_IDLE ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "probe") == 0 && argc == 5) {
        setup(argv[2], atoi(argv[3]), argv[4], 0, 1);
        return do_probe();
    }
    if (strcmp(mode, "rate") == 0 && argc == 8) {
        int conns = atoi(argv[4]);
        g_reuse = strcmp(argv[7], "reuse") == 0 ? 1 : strcmp(argv[7], "single") == 0 ? 2 : 0;
        if (!g_reuse && strcmp(argv[7], "new") != 0)
            goto usage;
        setup(argv[2], atoi(argv[3]), argv[6], 1, conns);
        return do_rate(conns, atoi(argv[5]));
    }
    if (strcmp(mode, "idle") == 0 && argc == 7) {
        int n = atoi(argv[4]);
        setup(argv[2], atoi(argv[3]), argv[5], 0, n);
        return do_idle(n, atoi(argv[6]));
    }
usage:
    fprintf(stderr, "usage: %s probe HOST PORT PATH\n"
                    "       %s rate HOST PORT CONNS DURATION_S PATH new|reuse|single\n"
                    "       %s idle HOST PORT N PATH TIMEOUT_S\n", argv[0], argv[0], argv[0]);
    return 2;
}
