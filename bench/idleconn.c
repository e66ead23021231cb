/* idleconn.c: opens N TCP connections to HOST:PORT and holds them idle (bench/idle_conns.sh).
 *
 *   idleconn HOST PORT N MODE PATH TIMEOUT_S
 *
 * MODE "req": each connection sends one keep-alive "GET PATH HTTP/1.1", reads the whole response
 * (Content-Length or chunked), then stays open and idle. MODE "silent": connect only, never send.
 * At most WINDOW connections are being set up at a time (the rest wait), so the server's accept
 * queue never overflows. When all are set up, prints "READY open=.. failed=.. bad_status=..
 * setup_ms=.." on stdout and holds the connections until SIGTERM/SIGINT (or TIMEOUT_S). Then prints
 * "STILL_OPEN n closed_by_peer=m" (checked with a non-blocking MSG_PEEK on each socket) and closes
 * everything with RST (SO_LINGER 0), so no TIME_WAIT is left behind on the loopback.
 *
 * Build: cc -O2 -o idleconn idleconn.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

typedef struct {
    int fd;
    int state; /* 0 unused, 1 connecting, 2 reading response, 3 idle (done), -1 failed */
    char *buf;
    size_t len;
} conn_t;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    return 1; /* no body framing: headers only (e.g. 204/304) */
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT N req|silent PATH TIMEOUT_S\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), n = atoi(argv[3]), req = strcmp(argv[4], "req") == 0;
    const char *path = argv[5];
    int timeout_s = atoi(argv[6]);

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)n + 16) {
        fprintf(stderr, "idleconn: RLIMIT_NOFILE %lu too low for %d sockets\n", (unsigned long)rl.rlim_cur, n);
        return 1;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "idleconn: bad IPv4 address %s\n", host);
        return 2;
    }
    char request[512];
    int reqlen = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: bench\r\nUser-Agent: idleconn\r\n\r\n", path);

    /* Block the signals we wait for; sigtimedwait collects them later. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);

    conn_t *c = calloc((size_t)n, sizeof *c);
    int ep = epoll_create1(0);
    int next = 0, inflight = 0, done = 0, failed = 0, bad = 0;
    long long t0 = now_ms(), deadline = t0 + (long long)timeout_s * 1000;
    struct epoll_event evs[256];

    while (done + failed < n) {
        while (inflight < WINDOW && next < n) {
            conn_t *k = &c[next];
            k->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
            if (k->fd < 0) {
                perror("idleconn: socket");
                return 1;
            }
            int one = 1;
            setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (connect(k->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                k->state = -1;
                failed++;
                close(k->fd);
                next++;
                continue;
            }
            k->state = 1;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)next};
            epoll_ctl(ep, EPOLL_CTL_ADD, k->fd, &ev);
            inflight++;
            next++;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "idleconn: setup timed out with %d in flight\n", inflight);
            for (int i = 0; i < next; i++)
                if (c[i].state == 1 || c[i].state == 2) {
                    c[i].state = -1;
                    failed++;
                    close(c[i].fd);
                }
            failed += n - next;
            break;
        }
        int m = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < m; e++) {
            conn_t *k = &c[evs[e].data.u32];
            int finished = 0, fail = 0;
            if (k->state == 1) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err || (evs[e].events & (EPOLLERR | EPOLLHUP))) {
                    fail = 1;
                } else if (!req) {
                    finished = 1;
                } else {
                    if (write(k->fd, request, (size_t)reqlen) != reqlen) {
                        fail = 1;
                    } else {
                        k->state = 2;
                        k->buf = malloc(RBUF);
                        k->len = 0;
                        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[e].data.u32};
                        epoll_ctl(ep, EPOLL_CTL_MOD, k->fd, &ev);
                    }
                }
            } else if (k->state == 2) {
                for (;;) {
                    if (k->len == RBUF) {
                        k->len = RBUF / 2; /* keep only the tail: enough to see a chunked end */
                        memmove(k->buf, k->buf + RBUF / 2, RBUF / 2);
                    }
                    ssize_t r = read(k->fd, k->buf + k->len, RBUF - k->len);
                    if (r > 0) {
                        k->len += (size_t)r;
                        continue;
                    }
                    if (r == 0 || (errno != EAGAIN && errno != EINTR))
                        fail = 1;
                    break;
                }
                int status = 0;
                if (!fail && response_complete(k->buf, k->len, &status)) {
                    finished = 1;
                    if (status != 200)
                        bad++;
                }
            }
            if (finished || fail) {
                epoll_ctl(ep, EPOLL_CTL_DEL, k->fd, NULL);
                free(k->buf);
                k->buf = NULL;
                inflight--;
                if (finished) {
                    k->state = 3;
                    done++;
                } else {
                    k->state = -1;
                    failed++;
                    close(k->fd);
                }
            }
        }
    }
    printf("READY open=%d failed=%d bad_status=%d setup_ms=%lld\n", done, failed, bad, now_ms() - t0);
    fflush(stdout);

    struct timespec hold = {.tv_sec = timeout_s};
    int sig = sigtimedwait(&ss, NULL, &hold);

    int still = 0, closed = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].state != 3)
            continue;
        char b;
        ssize_t r = recv(c[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            still++;
        else if (r > 0)
            still++; /* unexpected data, but the connection is open */
        else
            closed++;
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c[i].fd);
    }
    printf("STILL_OPEN %d closed_by_peer=%d%s\n", still, closed, sig < 0 ? " (hold timed out)" : "");
    fflush(stdout);
    return 0;
}
