/* hitload.c: HTTP/1.1 keep-alive load generator for large cached bodies (bench/cache.sh, part "hit").
 *
 *   hitload -c CONNS -d SECONDS -H HOST:PORT [-p PREFIX -n N] [PATH...]
 *           [-T TIMEOUT_S] [-r REQUESTS] [-C BUFSIZE] [-S] [-L]
 *
 * One thread, epoll (level-triggered), non-blocking sockets, CONNS keep-alive connections, one
 * request in flight per connection. Requests cycle over the paths (PREFIX0 .. PREFIX(N-1), then the
 * PATH arguments) with one counter shared by all connections, as bench/cache/hot.lua does in wrk:
 * "GET PATH HTTP/1.1\r\nHost: HOST:PORT\r\n\r\n" (the request wrk.format() builds).
 *
 * Why: wrk reads every response through its HTTP parser in 8 KiB read() calls, copying every body
 * byte to user space; at 256 KiB per response its core is the bottleneck before the servers are.
 * hitload reads the response head into a small per-connection buffer (at most 16 KiB; a longer head
 * is an error), takes the status and Content-Length from it, and drops the body in the kernel with
 * recv(fd, buf, remaining, MSG_TRUNC): on Linux TCP that frees the received bytes without copying
 * them and returns how many were dropped (checked at start-up on a loopback connection; if the
 * check fails hitload falls back to copying reads and says so). buf is a PROT_NONE mapping, so a
 * kernel that copied anyway would make recv fail (EFAULT, a read error) rather than copy quietly. The first read of a head asks for
 * the whole 16 KiB when the last response on that connection fitted in it (a small response then
 * takes one recv), else only a little more than that response's head (few body bytes copied).
 *
 * Counted, as wrk: completed responses, bytes read (heads and bodies, partial responses included),
 * "Non-2xx or 3xx responses" (here: every status other than 200), socket errors: connect (connect
 * failed), read (error or EOF while a response was due, malformed or over-long head, no
 * Content-Length, Transfer-Encoding such as chunked, bytes beyond the body), write (send failed),
 * timeout (a request without its complete response after TIMEOUT_S, 5 s by default: the connection is
 * closed and opened again). Every error closes the connection and opens a new one; so does
 * "Connection: close" in a response (not an error). After a failed connect a connection waits 10 ms
 * before it tries again.
 *
 * Latency: from the send() of a request to the recv() that completes its body, CLOCK_MONOTONIC, in a
 * log-linear histogram (exact below 256 ns, then 128 buckets per power of two: < 0.8 % wide; a
 * percentile is its bucket's midpoint, within 0.4 %). wrk 4.1 "corrects" its histogram for
 * coordinated omission (stats_correct: synthetic samples for latencies over twice the mean period of
 * a connection); hitload does not.
 *
 * The run ends SECONDS after the start (in-flight requests are abandoned, not counted, as in wrk), on
 * SIGINT/SIGTERM, or with -r once REQUESTS requests have been sent and answered (for byte-count tests).
 * Then it prints wrk's summary (same lines and units: bench/lib.sh parse_wrk_full reads it), the
 * latency distribution always (wrk --latency; -L is accepted and ignored), a 99.9% line, and a last
 * line "hitload: ..." with its own counters and CPU time (getrusage).
 *
 * -C BUFSIZE: read bodies by copying them into a BUFSIZE buffer instead of MSG_TRUNC (wrk reads 8192),
 * to measure what the copy costs. -S: epoll_wait with timeout 0 (spin, never sleep), to see whether
 * the client's sleeps and wake-ups change the server's figures.
 *
 * Build: cc -O2 -Wall -Wextra -o hitload hitload.c -lm */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384            /* response head buffer per connection */
#define HEAD_SLACK 256            /* first head read of a large response: last head length + this */
#define TRUNC_MAX (1u << 20)      /* at most this much per MSG_TRUNC recv */
#define SAMPLE_NS 100000000ull    /* req/s sample interval (wrk: RECORD_INTERVAL_MS 100) */
#define RETRY_NS 10000000ull      /* wait after a failed connect */
#define MAXEV 256

enum { ST_IDLE, ST_CONNECTING, ST_HEAD, ST_BODY };

typedef struct {
    int fd;
    int state;
    int close_after;        /* the response in progress says Connection: close */
    int status;
    uint32_t events;        /* epoll interest now */
    const char *req;        /* request being sent */
    size_t req_len, sent;
    size_t hlen;            /* bytes in head[] */
    size_t head_want;       /* size of the first head read */
    uint64_t body_len, body_left;
    uint64_t t_start;       /* ns: request sent (or connect started) */
    uint64_t retry_at;      /* ns: ST_IDLE after a failed connect: try again then */
    char head[HEAD_MAX];
} conn_t;

/* ---------------------------------------------------------------- options, state */

static int nconns = 64;
static double duration_s = 10;
static double timeout_s = 5;
static uint64_t max_requests;      /* -r: 0 = no limit */
static size_t copy_buf;            /* -C: 0 = MSG_TRUNC */
static int spin;                   /* -S: epoll_wait never sleeps */
static char *hostport;
static struct addrinfo *addr;

static char **reqs;                /* formatted requests */
static size_t *req_lens;
static size_t npaths;
static uint64_t next_path;

static int ep;
static conn_t *conns;
static char *scratch;              /* MSG_TRUNC: never written; -C: the copy buffer */
static size_t scratch_len;
static int use_trunc = 1;
static const char *trunc_note = "not checked";
static volatile sig_atomic_t stop_flag;
static int stopping;               /* no new requests (-r reached) */

/* counters */
static uint64_t complete, bytes_read, body_done, body_read, head_bytes, status_err, sent_reqs;
static uint64_t e_connect, e_read, e_write, e_timeout;
static uint64_t e_chunked, e_headlong, e_parse, e_eof, e_nolen, e_extra;
static uint64_t n_recv, n_recv_trunc, n_send, n_connects, n_close_hdr;
static uint64_t interval_reqs;
static int in_flight;

/* ---------------------------------------------------------------- time, histogram */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)

static uint64_t hist[NBUCKETS];
static uint64_t lat_n, lat_max, lat_min = UINT64_MAX;
static long double lat_sum, lat_sq;

static unsigned hidx(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);             /* >= SUB_BITS + 1 */
    return (e - SUB_BITS + 1) * SUB + (unsigned)((v >> (e - SUB_BITS)) & (SUB - 1));
}

/* midpoint of bucket i, in ns */
static long double hmid(unsigned i)
{
    if (i < 2 * SUB)
        return i;
    unsigned e = i / SUB + SUB_BITS - 1, sub = i % SUB;
    long double w = ldexpl(1.0L, (int)(e - SUB_BITS));
    return (SUB + sub) * w + w / 2;
}

static void hrecord(uint64_t v)
{
    hist[hidx(v)]++;
    lat_n++;
    lat_sum += v;
    lat_sq += (long double)v * v;
    if (v > lat_max)
        lat_max = v;
    if (v < lat_min)
        lat_min = v;
}

/* value at percentile p (rank rounded as wrk's stats_percentile), ns, clamped to [min, max] */
static long double hpercentile(double p)
{
    if (!lat_n)
        return 0;
    uint64_t rank = (uint64_t)llroundl((p / 100.0L) * lat_n + 0.5L), tot = 0;
    if (rank < 1)
        rank = 1;
    if (rank > lat_n)
        rank = lat_n;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        tot += hist[i];
        if (tot >= rank) {
            long double v = hmid(i);
            if (v > lat_max)
                v = lat_max;
            if (v < lat_min)
                v = lat_min;
            return v;
        }
    }
    return lat_max;
}

/* req/s samples (one per SAMPLE_NS) */
static double *rate;
static size_t nrate, caprate;

static void rate_add(double r)
{
    if (nrate == caprate) {
        caprate = caprate ? 2 * caprate : 1024;
        rate = realloc(rate, caprate * sizeof *rate);
        if (!rate) {
            perror("realloc");
            exit(2);
        }
    }
    rate[nrate++] = r;
}

/* ---------------------------------------------------------------- wrk's units (src/units.c) */

typedef struct {
    int scale;
    const char *base;
    const char *units[6];
} units_t;

static const units_t time_us = {1000, "us", {"ms", "s", NULL}};
static const units_t time_s = {60, "s", {"m", "h", NULL}};
static const units_t binary = {1024, "", {"K", "M", "G", "T", "P", NULL}};
static const units_t metric = {1000, "", {"k", "M", "G", "T", "P", NULL}};

static void fmt_units(char *out, size_t sz, long double n, const units_t *m, int p)
{
    long double amt = n, scale = m->scale * 0.85;
    const char *unit = m->base;
    for (int i = 0; m->units[i + 1] && amt >= scale; i++) {
        amt /= m->scale;
        unit = m->units[i];
    }
    snprintf(out, sz, "%.*Lf%s", p, amt, unit);
}

static void fmt_time_us(char *out, size_t sz, long double us)
{
    if (us >= 1000000.0L)
        fmt_units(out, sz, us / 1000000.0L, &time_s, 2);
    else
        fmt_units(out, sz, us, &time_us, 2);
}

static void fmt_metric(char *out, size_t sz, long double n) { fmt_units(out, sz, n, &metric, 2); }
static void fmt_binary(char *out, size_t sz, long double n) { fmt_units(out, sz, n, &binary, 2); }

/* wrk's print_units: right-aligned in WIDTH, unit letters hang into the 2-column pad */
static void print_units(const char *msg, int width)
{
    int len = (int)strlen(msg), pad = 2;
    if (len > 0 && isalpha((unsigned char)msg[len - 1]))
        pad--;
    if (len > 1 && isalpha((unsigned char)msg[len - 2]))
        pad--;
    width -= pad;
    printf("%*.*s%.*s", width, width, msg, pad, "  ");
}

/* ---------------------------------------------------------------- MSG_TRUNC check */

/* On a loopback TCP connection: send 3000 known bytes, drop 1000 with MSG_TRUNC into a guard-filled
 * buffer, read the other 2000 normally. Good when MSG_TRUNC returned 1000 (in one or more calls),
 * left the buffer untouched, and the next bytes read are bytes 1000..2999. */
static int check_trunc(void)
{
    int ls = -1, a = -1, b = -1, ok = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    char out[3000], guard[4096], in[2000];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (char)(i * 7 + i / 251);
    memset(guard, 0x5a, sizeof guard);
    if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(ls, 1) < 0 || getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
        goto done;
    if ((a = socket(AF_INET, SOCK_STREAM, 0)) < 0 || connect(a, (struct sockaddr *)&sa, sizeof sa) < 0)
        goto done;
    if ((b = accept(ls, NULL, NULL)) < 0)
        goto done;
    if (send(b, out, sizeof out, 0) != (ssize_t)sizeof out)
        goto done;
    size_t dropped = 0, got = 0;
    uint64_t t0 = now_ns();
    while (dropped < 1000 && now_ns() - t0 < 1000000000ull) {
        struct pollfd pf = {.fd = a, .events = POLLIN};
        poll(&pf, 1, 100);
        ssize_t n = recv(a, guard, 1000 - dropped, MSG_TRUNC | MSG_DONTWAIT);
        if (n > 0)
            dropped += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            goto done;
    }
    if (dropped != 1000)
        goto done;
    for (size_t i = 0; i < sizeof guard; i++)
        if (guard[i] != 0x5a)
            goto done;
    while (got < sizeof in && now_ns() - t0 < 1000000000ull) {
        ssize_t n = recv(a, in + got, sizeof in - got, 0);
        if (n <= 0)
            goto done;
        got += (size_t)n;
    }
    ok = got == sizeof in && memcmp(in, out + 1000, sizeof in) == 0;
done:
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    if (ls >= 0)
        close(ls);
    return ok;
}

/* ---------------------------------------------------------------- connections */

static void set_events(conn_t *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) {
        perror("epoll_ctl MOD");
        exit(2);
    }
    c->events = ev;
}

static void conn_close(conn_t *c)
{
    if (c->state == ST_HEAD || c->state == ST_BODY)
        in_flight--;
    if (c->fd >= 0)
        close(c->fd);   /* also leaves the epoll set */
    c->fd = -1;
    c->state = ST_IDLE;
}

static void send_request(conn_t *c);

static void conn_open(conn_t *c)
{
    c->retry_at = 0;
    int fd = socket(addr->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->t_start = now_ns();
    c->head_want = HEAD_MAX;
    n_connects++;
    int r = connect(fd, addr->ai_addr, addr->ai_addrlen);
    if (r < 0 && errno != EINPROGRESS) {
        e_connect++;
        close(fd);
        c->fd = -1;
        c->state = ST_IDLE;
        c->retry_at = c->t_start + RETRY_NS;
        return;
    }
    struct epoll_event e = {.events = r == 0 ? EPOLLIN : EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
        perror("epoll_ctl ADD");
        exit(2);
    }
    c->events = e.events;
    c->state = ST_CONNECTING;
    if (r == 0)
        send_request(c);
}

/* close and open again (after an error, or Connection: close) */
static void conn_reopen(conn_t *c)
{
    conn_close(c);
    if (!stop_flag && !stopping)
        conn_open(c);
}

static void send_more(conn_t *c)
{
    while (c->sent < c->req_len) {
        ssize_t n = send(c->fd, c->req + c->sent, c->req_len - c->sent, MSG_NOSIGNAL);
        n_send++;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            e_write++;
            conn_reopen(c);
            return;
        }
        c->sent += (size_t)n;
    }
    set_events(c, EPOLLIN);
}

static void send_request(conn_t *c)
{
    if (stop_flag || stopping || (max_requests && sent_reqs >= max_requests)) {
        stopping = stopping || (max_requests && sent_reqs >= max_requests);
        conn_close(c);
        return;
    }
    size_t k = (size_t)(next_path++ % npaths);
    c->req = reqs[k];
    c->req_len = req_lens[k];
    c->sent = 0;
    c->hlen = 0;
    c->close_after = 0;
    c->status = 0;
    c->state = ST_HEAD;
    in_flight++;
    sent_reqs++;
    c->t_start = now_ns();
    send_more(c);
}

/* a header's value matches TOKEN as one of its comma-separated elements (case-insensitive) */
static int has_token(const char *v, const char *end, const char *token)
{
    size_t tl = strlen(token);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return 1;
    }
    return 0;
}

/* parse head[0..hend) (hend: just after the blank line). 0 ok (status, body_len, close_after set),
 * -1 malformed, -2 Transfer-Encoding, -3 no Content-Length */
static int parse_head(conn_t *c, size_t hend)
{
    const char *p = c->head, *end = c->head + hend - 2;   /* end: the final CRLF */
    if (hend < 16 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
        !isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) || !isdigit((unsigned char)p[11]) ||
        (p[12] != ' ' && p[12] != '\r'))
        return -1;
    int http10 = p[7] == '0', keepalive10 = 0;
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    int64_t clen = -1;
    const char *l = memchr(p, '\n', (size_t)(end - p));
    if (!l)
        return -1;
    l++;
    while (l < end) {
        const char *eol = memchr(l, '\n', (size_t)(end + 1 - l));
        if (!eol || eol == l || eol[-1] != '\r')
            return -1;
        const char *le = eol - 1;                  /* at the CR */
        const char *colon = memchr(l, ':', (size_t)(le - l));
        if (!colon || colon == l)
            return -1;
        size_t nl = (size_t)(colon - l);
        const char *v = colon + 1, *ve = le;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (nl == 14 && strncasecmp(l, "content-length", 14) == 0) {
            if (v == ve)
                return -1;
            int64_t n = 0;
            for (const char *q = v; q < ve; q++) {
                if (!isdigit((unsigned char)*q) || n > (INT64_MAX - 9) / 10)
                    return -1;
                n = n * 10 + (*q - '0');
            }
            if (clen >= 0 && clen != n)
                return -1;
            clen = n;
        } else if (nl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0) {
            return -2;
        } else if (nl == 10 && strncasecmp(l, "connection", 10) == 0) {
            if (has_token(v, ve, "close"))
                c->close_after = 1;
            if (has_token(v, ve, "keep-alive"))
                keepalive10 = 1;
        }
        l = eol + 1;
    }
    if (http10 && !keepalive10)
        c->close_after = 1;
    if (c->status < 200)
        return -1;   /* no 1xx expected: the requests carry no Expect */
    if (c->status == 204 || c->status == 304)
        clen = 0;
    if (clen < 0)
        return -3;
    c->body_len = (uint64_t)clen;
    return 0;
}

static void response_done(conn_t *c)
{
    uint64_t t = now_ns();
    hrecord(t - c->t_start);
    complete++;
    interval_reqs++;
    body_done += c->body_len;
    if (c->status != 200)
        status_err++;
    in_flight--;
    c->state = ST_CONNECTING;   /* between requests: neither idle nor in flight */
    /* next head read: the whole buffer if this response fitted in it, else a little more than its head */
    size_t total = c->hlen + (size_t)(c->body_len > HEAD_MAX ? HEAD_MAX : c->body_len);
    size_t hl = c->hlen;   /* set by the caller to the head length */
    c->head_want = total <= HEAD_MAX ? HEAD_MAX : (hl + HEAD_SLACK < HEAD_MAX ? hl + HEAD_SLACK : HEAD_MAX);
    if (c->close_after) {
        n_close_hdr++;
        conn_reopen(c);
        return;
    }
    send_request(c);
}

static void read_error(conn_t *c, uint64_t *why)
{
    (*why)++;
    e_read++;
    conn_reopen(c);
}

static void on_readable(conn_t *c)
{
    for (;;) {
        if (c->state == ST_HEAD) {
            if (c->hlen >= HEAD_MAX) {
                read_error(c, &e_headlong);
                return;
            }
            size_t want = c->head_want > c->hlen ? c->head_want : HEAD_MAX;
            size_t ask = want - c->hlen;
            ssize_t n = recv(c->fd, c->head + c->hlen, ask, 0);
            n_recv++;
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                read_error(c, &e_eof);
                return;
            }
            if (n == 0) {
                read_error(c, &e_eof);
                return;
            }
            bytes_read += (uint64_t)n;
            size_t from = c->hlen > 3 ? c->hlen - 3 : 0;
            c->hlen += (size_t)n;
            char *e = memmem(c->head + from, c->hlen - from, "\r\n\r\n", 4);
            if (!e) {
                if ((size_t)n < ask)
                    return;   /* drained: wait for more */
                continue;
            }
            size_t hend = (size_t)(e - c->head) + 4;
            int r = parse_head(c, hend);
            if (r == -2) {
                read_error(c, &e_chunked);
                return;
            }
            if (r == -3) {
                read_error(c, &e_nolen);
                return;
            }
            if (r < 0) {
                read_error(c, &e_parse);
                return;
            }
            head_bytes += hend;
            uint64_t extra = c->hlen - hend;
            if (extra > c->body_len) {
                read_error(c, &e_extra);
                return;
            }
            body_read += extra;
            c->body_left = c->body_len - extra;
            c->hlen = hend;
            if (c->body_left == 0) {
                response_done(c);
                return;
            }
            c->state = ST_BODY;
            if ((size_t)n < ask)
                return;
        } else if (c->state == ST_BODY) {
            size_t ask;
            ssize_t n;
            if (use_trunc) {
                ask = c->body_left > TRUNC_MAX ? TRUNC_MAX : (size_t)c->body_left;
                n = recv(c->fd, scratch, ask, MSG_TRUNC);
                n_recv_trunc++;
            } else {
                ask = c->body_left > scratch_len ? scratch_len : (size_t)c->body_left;
                n = recv(c->fd, scratch, ask, 0);
                n_recv++;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    return;
                read_error(c, &e_eof);
                return;
            }
            if (n == 0 || (uint64_t)n > c->body_left) {
                read_error(c, &e_eof);
                return;
            }
            bytes_read += (uint64_t)n;
            body_read += (uint64_t)n;
            c->body_left -= (uint64_t)n;
            if (c->body_left == 0) {
                response_done(c);
                return;
            }
            if ((size_t)n < ask)
                return;
        } else {
            return;
        }
    }
}

static void on_event(conn_t *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
            err = errno;
        if (err || (ev & (EPOLLERR | EPOLLHUP))) {
            e_connect++;
            conn_close(c);
            c->retry_at = now_ns() + RETRY_NS;
            return;
        }
        send_request(c);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == ST_HEAD && c->sent < c->req_len) {
        send_more(c);
        if (c->fd < 0)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(c);
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: hitload -c CONNS -d SECONDS -H HOST:PORT [-p PREFIX -n N] [PATH...]\n"
                    "               [-T TIMEOUT_S] [-r REQUESTS] [-C BUFSIZE] [-S] [-L]\n");
    exit(1);
}

static double parse_secs(const char *s)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || v <= 0)
        usage();
    if (*e == 's' && !e[1])
        return v;
    if (*e == 'm' && !e[1])
        return v * 60;
    if (*e)
        usage();
    return v;
}

static void add_path(const char *path)
{
    reqs = realloc(reqs, (npaths + 1) * sizeof *reqs);
    req_lens = realloc(req_lens, (npaths + 1) * sizeof *req_lens);
    if (!reqs || !req_lens) {
        perror("realloc");
        exit(2);
    }
    int n = asprintf(&reqs[npaths], "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, hostport);
    if (n < 0) {
        perror("asprintf");
        exit(2);
    }
    req_lens[npaths++] = (size_t)n;
}

static void stats_line(const char *name, long double mean, long double sd, long double max, double within,
                       void (*fmt)(char *, size_t, long double))
{
    char b[64];
    printf("    %-10s", name);
    fmt(b, sizeof b, mean);
    print_units(b, 8);
    fmt(b, sizeof b, sd);
    print_units(b, 10);
    fmt(b, sizeof b, max);
    print_units(b, 9);
    printf("%8.2f%%\n", within);
}

int main(int argc, char **argv)
{
    const char *prefix = NULL;
    long count = -1;
    int o;
    while ((o = getopt(argc, argv, "c:d:H:p:n:T:r:C:LS")) != -1) {
        switch (o) {
        case 'c': nconns = atoi(optarg); break;
        case 'd': duration_s = parse_secs(optarg); break;
        case 'H': hostport = optarg; break;
        case 'p': prefix = optarg; break;
        case 'n': count = atol(optarg); break;
        case 'T': timeout_s = parse_secs(optarg); break;
        case 'r': max_requests = strtoull(optarg, NULL, 10); break;
        case 'C': copy_buf = (size_t)atol(optarg); if (!copy_buf) usage(); break;
        case 'L': break;
        case 'S': spin = 1; break;
        default: usage();
        }
    }
    if (!hostport || nconns < 1 || (prefix && count < 1) || (!prefix && count >= 0))
        usage();
    if (prefix)
        for (long k = 0; k < count; k++) {
            char p[4096];
            snprintf(p, sizeof p, "%s%ld", prefix, k);
            add_path(p);
        }
    for (int i = optind; i < argc; i++)
        add_path(argv[i]);
    if (!npaths)
        usage();

    /* HOST:PORT or [V6]:PORT */
    char host[256], *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof host)
        usage();
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') {
        h[strlen(h) - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    int gr = getaddrinfo(h, colon + 1, &hints, &addr);
    if (gr) {
        fprintf(stderr, "hitload: %s: %s\n", hostport, gai_strerror(gr));
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (copy_buf) {
        use_trunc = 0;
        trunc_note = "off (-C)";
        scratch_len = copy_buf;
    } else if (check_trunc()) {
        trunc_note = "ok";
        scratch_len = 0;   /* MSG_TRUNC target: an inaccessible mapping (see below) */
    } else {
        use_trunc = 0;
        trunc_note = "FAILED the start-up check: copying reads of 65536 instead";
        scratch_len = 65536;
        fprintf(stderr, "hitload: recv(MSG_TRUNC) does not drop TCP bytes as expected here; copying bodies\n");
    }
    /* With MSG_TRUNC the body buffer is a PROT_NONE mapping of TRUNC_MAX bytes: if the kernel ever
     * copied into it, recv would fail with EFAULT (counted as a read error) instead of copying. */
    if (use_trunc) {
        scratch = mmap(NULL, TRUNC_MAX, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (scratch == MAP_FAILED)
            scratch = NULL;
    } else
        scratch = malloc(scratch_len);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!scratch || !conns) {
        perror("malloc");
        return 2;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 2;
    }

    char dbuf[32];
    if (duration_s == floor(duration_s))
        fmt_units(dbuf, sizeof dbuf, duration_s, &time_s, 0);
    else
        snprintf(dbuf, sizeof dbuf, "%gs", duration_s);
    printf("Running %s test @ http://%s (%zu paths)\n", dbuf, hostport, npaths);
    printf("  1 threads and %d connections\n", nconns);
    fflush(stdout);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t start = now_ns(), deadline = start + (uint64_t)(duration_s * 1e9);
    uint64_t tmo = (uint64_t)(timeout_s * 1e9), next_sample = start + SAMPLE_NS, last_sample = start;
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conn_open(&conns[i]);
    }

    struct epoll_event evs[MAXEV];
    uint64_t now = now_ns();
    while (!stop_flag && now < deadline) {
        if (stopping && in_flight == 0)
            break;
        uint64_t wait = deadline - now;
        if (next_sample > now && next_sample - now < wait)
            wait = next_sample - now;
        if (wait > RETRY_NS)
            wait = RETRY_NS;
        int n = epoll_wait(ep, evs, MAXEV, spin ? 0 : (int)((wait + 999999) / 1000000));
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 2;
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        now = now_ns();
        if (now >= next_sample) {
            rate_add((double)interval_reqs * 1e9 / (double)(now - last_sample));
            interval_reqs = 0;
            last_sample = now;
            next_sample = now + SAMPLE_NS;
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if ((c->state == ST_HEAD || c->state == ST_BODY || c->state == ST_CONNECTING) && c->fd >= 0 &&
                    now - c->t_start > tmo) {
                    e_timeout++;
                    conn_reopen(c);
                }
            }
        }
        if (!stopping && !stop_flag)
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == ST_IDLE && conns[i].fd < 0 && conns[i].retry_at && now >= conns[i].retry_at)
                    conn_open(&conns[i]);
    }
    uint64_t end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    int abandoned = in_flight;
    uint64_t partial = 0;
    for (int i = 0; i < nconns; i++) {
        if (conns[i].state == ST_BODY)
            partial += conns[i].body_len - conns[i].body_left;
        if (conns[i].fd >= 0) {
            /* abandon: RST rather than FIN so nothing lingers in TIME_WAIT on the loopback */
            struct linger lg = {1, 0};
            setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(conns[i].fd);
        }
    }
    if (interval_reqs && end > last_sample + SAMPLE_NS / 2)
        rate_add((double)interval_reqs * 1e9 / (double)(end - last_sample));

    long double runtime_s = (end - start) / 1e9L;
    long double rps = complete / runtime_s, bps = bytes_read / runtime_s;

    /* Thread Stats */
    printf("  Thread Stats%6s%11s%8s%12s\n", "Avg", "Stdev", "Max", "+/- Stdev");
    long double mean = lat_n ? lat_sum / lat_n : 0, var = lat_n > 1 ? (lat_sq - lat_sum * mean) / (lat_n - 1) : 0;
    long double sd = var > 0 ? sqrtl(var) : 0;
    uint64_t within = 0;
    for (unsigned i = 0; i < NBUCKETS; i++)
        if (hist[i]) {
            long double m = hmid(i);
            if (m >= mean - sd && m <= mean + sd)
                within += hist[i];
        }
    stats_line("Latency", mean / 1000, sd / 1000, lat_max / 1000.0L, lat_n ? 100.0 * within / lat_n : 0, fmt_time_us);
    long double rm = 0, rsd = 0, rmax = 0;
    uint64_t rwithin = 0;
    for (size_t i = 0; i < nrate; i++) {
        rm += rate[i];
        if (rate[i] > rmax)
            rmax = rate[i];
    }
    if (nrate)
        rm /= nrate;
    for (size_t i = 0; i < nrate; i++)
        rsd += (rate[i] - rm) * (rate[i] - rm);
    rsd = nrate > 1 ? sqrtl(rsd / (nrate - 1)) : 0;
    for (size_t i = 0; i < nrate; i++)
        if (rate[i] >= rm - rsd && rate[i] <= rm + rsd)
            rwithin++;
    stats_line("Req/Sec", rm, rsd, rmax, nrate ? 100.0 * rwithin / nrate : 0, fmt_metric);

    /* --latency distribution (always) */
    printf("  Latency Distribution\n");
    static const double pct[] = {50, 75, 90, 99};
    char b[64];
    for (size_t i = 0; i < sizeof pct / sizeof pct[0]; i++) {
        printf("%7.0f%%", pct[i]);
        fmt_time_us(b, sizeof b, hpercentile(pct[i]) / 1000);
        print_units(b, 10);
        printf("\n");
    }
    printf("%7.1f%%", 99.9);
    fmt_time_us(b, sizeof b, hpercentile(99.9) / 1000);
    print_units(b, 10);
    printf("\n");

    char rt[32], rb[32];
    fmt_time_us(rt, sizeof rt, (end - start) / 1000.0L);
    fmt_binary(rb, sizeof rb, bytes_read);
    printf("  %llu requests in %s, %sB read\n", (unsigned long long)complete, rt, rb);
    if (e_connect || e_read || e_write || e_timeout)
        printf("  Socket errors: connect %llu, read %llu, write %llu, timeout %llu\n", (unsigned long long)e_connect,
               (unsigned long long)e_read, (unsigned long long)e_write, (unsigned long long)e_timeout);
    if (status_err)
        printf("  Non-2xx or 3xx responses: %llu\n", (unsigned long long)status_err);
    printf("Requests/sec: %9.2Lf\n", rps);
    fmt_binary(b, sizeof b, bps);
    printf("Transfer/sec: %10sB\n", b);

    double cu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    double cs = (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    printf("hitload: msg_trunc=%s responses=%llu body_bytes_completed=%llu body_bytes_read=%llu "
           "partial_body_bytes=%llu head_bytes=%llu abandoned=%d sent=%llu connects=%llu conn_close_hdr=%llu "
           "recv=%llu recv_trunc=%llu send=%llu read_errors(eof=%llu parse=%llu head_too_long=%llu "
           "transfer_encoding=%llu no_length=%llu extra=%llu) p99.9_ms=%.3Lf cpu_user_s=%.3f cpu_sys_s=%.3f "
           "cpu_pct=%.1f us_per_resp=%.2f\n",
           trunc_note, (unsigned long long)complete, (unsigned long long)body_done, (unsigned long long)body_read,
           (unsigned long long)partial, (unsigned long long)head_bytes, abandoned, (unsigned long long)sent_reqs,
           (unsigned long long)n_connects, (unsigned long long)n_close_hdr, (unsigned long long)n_recv,
           (unsigned long long)n_recv_trunc, (unsigned long long)n_send, (unsigned long long)e_eof,
           (unsigned long long)e_parse, (unsigned long long)e_headlong, (unsigned long long)e_chunked,
           (unsigned long long)e_nolen, (unsigned long long)e_extra, hpercentile(99.9) / 1e6L, cu, cs,
           100.0 * (cu + cs) / (double)runtime_s, complete ? (cu + cs) * 1e6 / complete : 0.0);
    return 0;
}
