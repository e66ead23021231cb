/* attack.c: the client side of bench/protect.sh: legitimate browsing clients alongside an HTTP
 * flood and/or a scraper, each from its own loopback source address, bounded in time.
 *
 *   attack --port P [options]       (attack --help lists them)
 *
 * Timeline: legitimate clients run for LEAD + DURATION seconds; the flood and the scraper start
 * at LEAD (so an adaptive defence can learn the normal rate first) and run for DURATION. The
 * legitimate figures printed are those of the requests started in [LEAD, LEAD + DURATION), the
 * same window in every scenario, so a baseline run and an attack run compare like for like.
 *
 * - legitimate: L clients, client i bound to LEGIT_BASE + i (127.1.0.1, 127.1.0.2, ...), one
 *   keep-alive connection each, Chrome-like headers (Accept, Accept-Language, Accept-Encoding,
 *   Sec-Fetch-*, sec-ch-ua, a Chrome User-Agent, a Cookie; Set-Cookie answers are kept in a small
 *   jar and sent back). A visit: GET /page/N, then 3-5 assets (/static/app.js, /static/site.css,
 *   /img/N.png) one after the other on the connection, then think time; visits are spaced so the
 *   total is LEGIT_RATE req/s. A failed page ends its visit (no assets). A request sent on a reused
 *   connection that the server had closed (EOF before any response byte) is sent again once on a
 *   new connection, as browsers do (counted as "retries", not as a failure). Latency: from the
 *   request's issue (connect when a new connection is needed, else the write) to the response's
 *   last byte. success = 2xx/3xx; 403/429/other 4xx/5xx, timeouts, resets and failed connects are
 *   failures. p50/p99 are over the successful requests. A page answered with gatehouse's proof-of-work
 *   challenge (403 + the page of src/protect/challenge.h) is solved as its script would (see "the
 *   challenge" below): the page then counts as served, its latency includes the detour. A challenged
 *   asset is not solved (a browser runs no script from an image): a failure.
 * - flood: A addresses (FLOOD_BASE + i, 127.2.0.1...), K keep-alive connections each, GET
 *   /?r=<random hex> with a Chrome User-Agent and Accept: the only headers; open loop at
 *   FLOOD_RATE req/s per address (each connection every K/FLOOD_RATE s; a connection still waiting
 *   for its answer sends when the answer comes, so an overloaded server turns it closed-loop; a
 *   backlog older than 1 s is dropped). Closed connections are reopened at the next send time.
 * - scraper: one address (SCRAPER_ADDR, 127.3.0.1), GET /page/1, /page/2, ... at SCRAPER_RATE req/s
 *   with a Chrome-on-Linux User-Agent, Accept and Accept-Encoding but no Accept-Language, no
 *   Sec-Fetch-*, no assets; keeps cookies; goes on after being refused. Reports when it first got
 *   a refusal (403/429/other non-2xx/3xx) counted from its start, and the share it was served.
 *
 * bench/protect.sh runs two of these on the client core: the browsers alone (--legit N) and the
 * attack alone (--legit 0 --flood/--scraper), so the browsers' latency is not that of a loop busy
 * with 20,000 flood responses a second.
 *
 * Output (stdout), one line per kind, key=value: "LEGIT ...", "FLOOD ...", "SCRAPER ...".
 * --timeline FILE writes one line per second (legit ok/fail/p99, flood sent/served/refused,
 * scraper served/refused). Sockets are closed with RST at the end (no TIME_WAIT left behind).
 *
 * Build: cc -O2 -o attack attack.c -lcrypto (SHA-256 for the challenge). Linux only (epoll,
 * IP_BIND_ADDRESS_NO_PORT). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define HBUF 16384 /* response head (and the bytes read with it) */
#define WBUF 2048
#define JAR_N 6
#define JAR_LEN 200
#define CAP_MAX 32768 /* a challenge page captured for the solver */
#define PATH_MAX_ 1024

enum { K_LEGIT, K_FLOOD, K_SCRAPER, K__N };

/* outcome classes */
enum { O_2XX, O_3XX, O_403, O_429, O_4XX, O_5XX, O_OTHER, O_TIMEOUT, O_RESET, O_CONNFAIL, O__N };
static const char *O_NAME[O__N] = {"s2xx", "s3xx", "s403", "s429", "s4xx", "s5xx", "sother",
                                   "timeout", "reset", "connfail"};

/* connection states */
enum { C_NONE, C_CONNECTING, C_WRITING, C_READING, C_IDLE };
/* body framing */
enum { B_NONE, B_LENGTH, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_CRLF, B_TRAILER, B_UNTIL_CLOSE };

typedef struct {
    int kind;
    int idx; /* within its kind */
    struct sockaddr_in src;
    int fd;
    int state;
    uint32_t served_on_conn; /* responses completed on this connection */
    int retried;             /* the current request was already sent again once */
    int got_bytes;           /* bytes of the current response received */
    char wbuf[WBUF];
    size_t wlen, woff;
    char hbuf[HBUF];
    size_t hlen;
    int head_done, status, close_after, body;
    long long remaining;
    int chunk_digits, chunk_skip, trailer_len;
    uint32_t gen;                                  /* of the connection: stale epoll events are ignored */
    long long t_first, t_issue, deadline, next_at; /* µs; next_at 0 = nothing scheduled */
    uint64_t rng;
    /* legit */
    int visit_pos, visit_assets, visit_page, visit_first; /* pos 0: the page; 1..assets: its assets */
    long long visit_start, visit_gap;
    /* legit: the challenge of a page. step 0: the page; 1: the verify URL sent; 2: the page again */
    int chal_step, capture;
    char *cap;
    size_t cap_len;
    char location[PATH_MAX_], override[PATH_MAX_];
    char jar[JAR_N][JAR_LEN];
    /* flood and scraper: open-loop schedule */
    long long interval, sched;
    /* scraper */
    int page;
} client_t;

typedef struct {
    long long t_start; /* µs since run start */
    int32_t lat_us;
    int8_t outcome;
} sample_t;

static struct {
    const char *host, *host_header, *timeline;
    int port;
    double duration, lead, legit_rate, flood_rate, scraper_rate, timeout_s;
    int legit_n, flood_n, flood_conns, pages;
    struct in_addr legit_base, flood_base, scraper_addr;
} opt = {
    .host = "127.0.0.1", .host_header = "shop.example", .duration = 15, .lead = 5, .legit_rate = 200,
    .flood_rate = 100, .scraper_rate = 0, .timeout_s = 5, .legit_n = 20, .flood_n = 0, .flood_conns = 2,
    .pages = 100000,
};

static struct sockaddr_in dst;
static int ep;
static long long t0, t_end, t_attack, t_attack_end;
static volatile sig_atomic_t stop;

static client_t *clients;
static int nclients;

static sample_t *legit_samples;
static size_t nlegit, caplegit;
static int legit_retries;
static long long chal_seen, chal_passed, chal_failed, chal_solve_us;

static long long cnt[K__N][O__N];
static long long sent[K__N], connects[K__N], lagged[K__N];
static long long scraper_first_refusal = -1;
static int scraper_first_status;

/* timeline: per second */
typedef struct {
    int legit_ok, legit_fail, flood_sent, flood_ok, flood_refused, scr_ok, scr_refused;
    uint32_t *lat; /* legit successful latencies, µs */
    int nlat, caplat;
} second_t;
static second_t *tl;
static int ntl;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t rnd(client_t *c)
{
    /* xorshift64* */
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ULL;
}

static int rnd_int(client_t *c, int lo, int hi) { return lo + (int)(rnd(c) % (uint64_t)(hi - lo + 1)); }

static double rnd_unit(client_t *c) { return (double)(rnd(c) >> 11) / 9007199254740992.0; }

/* The next usable address after a (skips .0 and .255 in the last octet). */
static struct in_addr addr_add(struct in_addr base, int n)
{
    uint32_t a = ntohl(base.s_addr);
    for (int i = 0; i < n; i++) {
        a++;
        while ((a & 0xff) == 0 || (a & 0xff) == 255)
            a++;
    }
    struct in_addr r = {.s_addr = htonl(a)};
    return r;
}

static int outcome_of_status(int st)
{
    if (st >= 200 && st < 300)
        return O_2XX;
    if (st >= 300 && st < 400)
        return O_3XX;
    if (st == 403)
        return O_403;
    if (st == 429)
        return O_429;
    if (st >= 400 && st < 500)
        return O_4XX;
    if (st >= 500 && st < 600)
        return O_5XX;
    return O_OTHER;
}

static second_t *second_at(long long t_us)
{
    long long s = (t_us - t0) / 1000000;
    if (s < 0 || s >= ntl)
        return NULL;
    return &tl[s];
}

static void record(client_t *c, int outcome, int status)
{
    long long now = now_us();
    int ok = outcome == O_2XX || outcome == O_3XX;
    cnt[c->kind][outcome]++;
    second_t *s = second_at(now);
    if (c->kind == K_LEGIT) {
        if (nlegit == caplegit) {
            caplegit = caplegit ? caplegit * 2 : 8192;
            legit_samples = realloc(legit_samples, caplegit * sizeof *legit_samples);
            if (!legit_samples) {
                perror("attack: realloc");
                exit(1);
            }
        }
        long long lat = now - c->t_first;
        legit_samples[nlegit++] = (sample_t){.t_start = c->t_first - t0,
                                             .lat_us = (int32_t)(lat > INT32_MAX ? INT32_MAX : lat),
                                             .outcome = (int8_t)outcome};
        if (s) {
            if (ok) {
                s->legit_ok++;
                if (s->nlat == s->caplat) {
                    s->caplat = s->caplat ? s->caplat * 2 : 256;
                    s->lat = realloc(s->lat, (size_t)s->caplat * sizeof *s->lat);
                    if (!s->lat) {
                        perror("attack: realloc");
                        exit(1);
                    }
                }
                s->lat[s->nlat++] = (uint32_t)lat;
            } else {
                s->legit_fail++;
            }
        }
    } else if (c->kind == K_FLOOD) {
        if (s) {
            if (ok)
                s->flood_ok++;
            else
                s->flood_refused++;
        }
    } else {
        if (s) {
            if (ok)
                s->scr_ok++;
            else
                s->scr_refused++;
        }
        if (!ok && scraper_first_refusal < 0) {
            scraper_first_refusal = now - t_attack;
            scraper_first_status = status;
        }
    }
}

/* ---------------------------------------------------------------- requests */

static const char CHROME_UA[] =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
static const char FLOOD_UA[] =
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36";
static const char SCRAPER_UA[] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";

static size_t put_cookies(client_t *c, char *p, size_t room, int with_sid)
{
    size_t n = 0;
    int first = 1;
    char tmp[WBUF / 2];
    size_t t = 0;
    if (with_sid) {
        t += (size_t)snprintf(tmp + t, sizeof tmp - t, "sid=%08x%08x; theme=light", (unsigned)(c->idx * 2654435761u),
                              (unsigned)(c->idx + 0x5bd1e995u));
        first = 0;
    }
    for (int i = 0; i < JAR_N; i++) {
        if (!c->jar[i][0])
            continue;
        int w = snprintf(tmp + t, sizeof tmp - t, "%s%s", first ? "" : "; ", c->jar[i]);
        if (w < 0 || (size_t)w >= sizeof tmp - t)
            break;
        t += (size_t)w;
        first = 0;
    }
    if (t)
        n = (size_t)snprintf(p, room, "Cookie: %s\r\n", tmp);
    return n < room ? n : 0;
}

/* Builds the client's next request into wbuf. */
static void build_request(client_t *c)
{
    char *p = c->wbuf;
    size_t room = sizeof c->wbuf, n = 0;
#define ADD(...)                                                                                                      \
    do {                                                                                                              \
        int w_ = snprintf(p + n, room - n, __VA_ARGS__);                                                              \
        if (w_ > 0 && (size_t)w_ < room - n)                                                                          \
            n += (size_t)w_;                                                                                          \
    } while (0)
    if (c->kind == K_FLOOD) {
        ADD("GET /?r=%016llx HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n",
            (unsigned long long)rnd(c), opt.host_header, FLOOD_UA);
    } else if (c->kind == K_SCRAPER) {
        ADD("GET /page/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n",
            c->page, opt.host_header, SCRAPER_UA);
        n += put_cookies(c, p + n, room - n, 0);
        ADD("\r\n");
    } else {
        const char *path, *accept, *dest, *mode;
        char pbuf[64];
        int doc = c->visit_pos == 0; /* the page itself */
        if (doc) {
            snprintf(pbuf, sizeof pbuf, "/page/%d", c->visit_page);
            path = c->override[0] ? c->override : pbuf; /* the challenge's verify URL, then its redirect */
            accept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
                     "application/signed-exchange;v=b3;q=0.7";
            dest = "document";
            mode = "navigate";
        } else if (c->visit_pos == 1) {
            path = "/static/app.js";
            accept = "*/*";
            dest = "script";
            mode = "no-cors";
        } else if (c->visit_pos == 2) {
            path = "/static/site.css";
            accept = "text/css,*/*;q=0.1";
            dest = "style";
            mode = "no-cors";
        } else {
            snprintf(pbuf, sizeof pbuf, "/img/%d.png", rnd_int(c, 1, 40));
            path = pbuf;
            accept = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
            dest = "image";
            mode = "no-cors";
        }
        ADD("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n"
            "sec-ch-ua: \"Not_A Brand\";v=\"8\", \"Chromium\";v=\"120\", \"Google Chrome\";v=\"120\"\r\n"
            "sec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Windows\"\r\n",
            path, opt.host_header);
        if (doc)
            ADD("Upgrade-Insecure-Requests: 1\r\n");
        ADD("User-Agent: %s\r\nAccept: %s\r\nSec-Fetch-Site: %s\r\nSec-Fetch-Mode: %s\r\n", CHROME_UA, accept,
            doc && c->visit_first ? "none" : "same-origin", mode);
        if (doc)
            ADD("Sec-Fetch-User: ?1\r\n");
        ADD("Sec-Fetch-Dest: %s\r\n", dest);
        if (!(doc && c->visit_first))
            ADD("Referer: http://%s/page/%d\r\n", opt.host_header, c->visit_page);
        ADD("Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n");
        n += put_cookies(c, p + n, room - n, 1);
        ADD("\r\n");
    }
#undef ADD
    c->wlen = n;
    c->woff = 0;
}

static void jar_set(client_t *c, const char *v, size_t len)
{
    /* name=value up to ';' */
    size_t e = 0;
    while (e < len && v[e] != ';')
        e++;
    while (e > 0 && (v[e - 1] == ' ' || v[e - 1] == '\r'))
        e--;
    const char *eq = memchr(v, '=', e);
    if (!eq || e >= JAR_LEN || eq == v)
        return;
    size_t nl = (size_t)(eq - v);
    int slot = -1;
    for (int i = 0; i < JAR_N; i++) {
        if (c->jar[i][0] && strncmp(c->jar[i], v, nl) == 0 && c->jar[i][nl] == '=') {
            slot = i;
            break;
        }
        if (!c->jar[i][0] && slot < 0)
            slot = i;
    }
    if (slot < 0)
        slot = 0;
    memcpy(c->jar[slot], v, e);
    c->jar[slot][e] = 0;
}

/* ---------------------------------------------------------------- connections */

static void conn_close(client_t *c, int rst)
{
    if (c->fd >= 0) {
        if (rst) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd); /* also leaves the epoll set */
    }
    c->fd = -1;
    c->state = C_NONE;
    c->served_on_conn = 0;
}

static void schedule_next(client_t *c, long long now);

static void reset_parse(client_t *c)
{
    c->hlen = 0;
    c->head_done = 0;
    c->status = 0;
    c->close_after = 0;
    c->body = B_NONE;
    c->remaining = 0;
    c->chunk_digits = 0;
    c->chunk_skip = 0;
    c->trailer_len = 0;
    c->got_bytes = 0;
    c->capture = 0;
    c->cap_len = 0;
    c->location[0] = 0;
}

/* Writes what is left of wbuf. 0 done, 1 wait for EPOLLOUT, -1 error. */
static int do_write(client_t *c)
{
    while (c->woff < c->wlen) {
        ssize_t w = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (w > 0) {
            c->woff += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return 1;
        return -1;
    }
    return 0;
}

static int open_conn(client_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&c->src, sizeof c->src) < 0) {
        conn_close(c, 1);
        return -1;
    }
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)(c - clients) << 32 | c->gen};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_close(c, 1);
        return -1;
    }
    connects[c->kind]++;
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        conn_close(c, 1);
        return -1;
    }
    c->state = C_CONNECTING;
    c->served_on_conn = 0;
    return 0;
}

/* Sends the client's current request (wbuf), on its connection or a new one; again (the first
 * attempt's start kept) when retry. */
static void issue(client_t *c, long long now, int retry)
{
    c->t_issue = now;
    if (!retry)
        c->t_first = now;
    c->deadline = now + (long long)(opt.timeout_s * 1e6);
    c->next_at = 0;
    reset_parse(c);
    if (!retry) {
        sent[c->kind]++;
        second_t *s = second_at(now);
        if (s && c->kind == K_FLOOD)
            s->flood_sent++;
    }
    if (c->fd < 0) {
        if (open_conn(c) < 0) {
            record(c, O_CONNFAIL, 0);
            schedule_next(c, now_us());
        }
        return;
    }
    c->woff = 0;
    c->state = C_WRITING;
    int r = do_write(c);
    if (r < 0) {
        conn_close(c, 1);
        record(c, O_RESET, 0);
        schedule_next(c, now_us());
    } else if (r == 0) {
        c->state = C_READING;
    }
}

static int ready; /* some client has next_at <= now: scan at once */

static void set_next(client_t *c, long long at, long long now)
{
    c->next_at = at > 0 ? at : 1;
    if (at <= now)
        ready = 1;
}

/* Open-loop schedule of a flood connection or the scraper: the next slot, a backlog older than 1 s
 * dropped. */
static void next_slot(client_t *c, long long now)
{
    c->sched += c->interval;
    if (c->sched < now - 1000000) {
        lagged[c->kind] += (now - c->sched) / c->interval;
        c->sched = now;
    }
    set_next(c, c->sched, now);
}

static void new_visit(client_t *c, long long now)
{
    double per_client = opt.legit_rate / opt.legit_n; /* req/s */
    double mean_gap = 5.0 / per_client;               /* a visit is 1 page + 4 assets on average */
    long long start = c->visit_start + c->visit_gap;
    c->visit_start = start > now ? start : now;
    c->visit_gap = (long long)(mean_gap * (0.5 + rnd_unit(c)) * 1e6);
    c->visit_pos = 0;
    c->visit_assets = rnd_int(c, 3, 5);
    c->visit_page = rnd_int(c, 1, 50);
    c->visit_first = 0;
    set_next(c, c->visit_start, now);
}

/* Called once the current request has ended (served, refused or failed): plans the next one. */
static void schedule_next(client_t *c, long long now)
{
    int served = c->status >= 200 && c->status < 400;
    c->retried = 0;
    c->next_at = 0;
    c->chal_step = 0;
    c->override[0] = 0;
    if (c->kind == K_LEGIT) {
        if (c->visit_pos == 0 && !served) {
            new_visit(c, now); /* the page failed: no assets */
        } else if (++c->visit_pos <= c->visit_assets) {
            set_next(c, now, now);
        } else {
            new_visit(c, now);
        }
    } else {
        if (c->kind == K_SCRAPER)
            c->page++;
        next_slot(c, now);
    }
}

/* The current request failed with outcome (or is sent again once, see the top comment). */
static void fail_request(client_t *c, int outcome)
{
    int reused = c->served_on_conn > 0;
    conn_close(c, 1);
    if (c->kind == K_LEGIT && outcome == O_RESET && reused && !c->got_bytes && !c->retried) {
        c->retried = 1;
        legit_retries++;
        issue(c, now_us(), 1); /* the latency counts from the first attempt */
        return;
    }
    c->status = 0;
    record(c, outcome, 0);
    schedule_next(c, now_us());
}

/* ---------------------------------------------------------------- responses */

/* ---------------------------------------------------------------- the challenge (legit only)
 *
 * gatehouse's page (src/protect/challenge.h) carries `var T="<token>",D=<bits>,V="<verify path>",
 * R="<return_to>";` (strings escaped as \uXXXX); its script finds the smallest n with
 * SHA-256(T "." n) starting with D zero bits and navigates to V?t=T&n=n&r=R (encodeURIComponent);
 * the verify answer (303) sets the pass cookie and sends the browser back to R. A legitimate
 * client does the same, as a browser running the script would; the time it takes counts in the
 * request's latency. */

/* Reads the JavaScript string starting after its opening quote into out (UTF-8). The end, or NULL. */
static const char *js_string(const char *p, const char *end, char *out, size_t cap)
{
    size_t o = 0;
    while (p < end && *p != '"') {
        unsigned cp = (unsigned char)*p++;
        if (cp == '\\' && p < end) {
            char e = *p++;
            if (e == 'u' && end - p >= 4) {
                char hex[5] = {p[0], p[1], p[2], p[3], 0};
                cp = (unsigned)strtoul(hex, NULL, 16);
                p += 4;
            } else {
                cp = (unsigned char)e;
            }
        }
        char u[3];
        size_t ul = 0;
        if (cp < 0x80) {
            u[ul++] = (char)cp;
        } else if (cp < 0x800) {
            u[ul++] = (char)(0xc0 | (cp >> 6));
            u[ul++] = (char)(0x80 | (cp & 0x3f));
        } else {
            u[ul++] = (char)(0xe0 | (cp >> 12));
            u[ul++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            u[ul++] = (char)(0x80 | (cp & 0x3f));
        }
        if (o + ul >= cap)
            return NULL;
        memcpy(out + o, u, ul);
        o += ul;
    }
    if (p >= end)
        return NULL;
    out[o] = 0;
    return p + 1;
}

/* encodeURIComponent of s appended to out at *o. 0 ok, -1 no room. */
static int uri_component(const char *s, char *out, size_t *o, size_t cap)
{
    static const char hexd[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        int safe = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                   (ch && strchr("-_.!~*'()", ch));
        if (*o + 4 >= cap)
            return -1;
        if (safe) {
            out[(*o)++] = (char)ch;
        } else {
            out[(*o)++] = '%';
            out[(*o)++] = hexd[ch >> 4];
            out[(*o)++] = hexd[ch & 15];
        }
    }
    out[*o] = 0;
    return 0;
}

static int leading_zero_bits(const unsigned char *d)
{
    int bits = 0;
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        if (d[i] == 0) {
            bits += 8;
            continue;
        }
        for (unsigned m = 0x80; m && !(d[i] & m); m >>= 1)
            bits++;
        break;
    }
    return bits;
}

/* From a captured challenge page, the verify URL (path and query) into out. 0 ok, -1 not a page. */
static int solve_page(client_t *c, char *out, size_t cap)
{
    const char *b = c->cap, *end = c->cap + c->cap_len;
    const char *p = c->cap_len ? memmem(b, c->cap_len, "var T=\"", 7) : NULL;
    char tok[256], vpath[PATH_MAX_], ret[PATH_MAX_];
    if (!p || !(p = js_string(p + 7, end, tok, sizeof tok)))
        return -1;
    if (end - p < 3 || memcmp(p, ",D=", 3) != 0)
        return -1;
    int d = atoi(p + 3);
    p = memmem(p, (size_t)(end - p), ",V=\"", 4);
    if (d < 0 || d > 40 || !p || !(p = js_string(p + 4, end, vpath, sizeof vpath)))
        return -1;
    p = memmem(p, (size_t)(end - p), ",R=\"", 4);
    if (!p || !js_string(p + 4, end, ret, sizeof ret))
        return -1;
    unsigned char msg[512], md[SHA256_DIGEST_LENGTH];
    size_t tokl = strlen(tok);
    if (tokl + 24 > sizeof msg)
        return -1;
    memcpy(msg, tok, tokl);
    msg[tokl] = '.';
    unsigned long long n = 0;
    for (;; n++) {
        int k = snprintf((char *)msg + tokl + 1, sizeof msg - tokl - 1, "%llu", n);
        SHA256(msg, tokl + 1 + (size_t)k, md);
        if (leading_zero_bits(md) >= d)
            break;
        if (n > (1ULL << 34))
            return -1;
    }
    size_t o = 0;
    int w = snprintf(out, cap, "%s?t=", vpath);
    if (w < 0 || (size_t)w >= cap)
        return -1;
    o = (size_t)w;
    if (uri_component(tok, out, &o, cap) < 0)
        return -1;
    w = snprintf(out + o, cap - o, "&n=%llu&r=", n);
    if (w < 0 || (size_t)w >= cap - o)
        return -1;
    o += (size_t)w;
    return uri_component(ret, out, &o, cap);
}

/* After a legit page's response: 1 when the challenge goes on (its next request is issued). */
static int challenge_step(client_t *c)
{
    if (c->kind != K_LEGIT || c->visit_pos != 0)
        return 0;
    int st = c->status;
    if (c->chal_step == 0 && st == 403 && c->cap_len) {
        long long t = now_us();
        if (solve_page(c, c->override, sizeof c->override) < 0) {
            c->override[0] = 0;
            return 0; /* a 403 that is no challenge: a refusal */
        }
        chal_seen++;
        chal_solve_us += now_us() - t;
        c->chal_step = 1;
    } else if (c->chal_step == 1) {
        if (st < 300 || st >= 400 || !c->location[0]) {
            chal_failed++;
            return 0;
        }
        chal_passed++;
        memcpy(c->override, c->location, sizeof c->override);
        c->chal_step = 2;
    } else {
        return 0;
    }
    build_request(c);
    issue(c, now_us(), 1);
    return 1;
}

static void complete(client_t *c)
{
    int st = c->status;
    if (c->close_after || c->body == B_UNTIL_CLOSE) {
        conn_close(c, 1);
    } else {
        char b;
        ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            conn_close(c, 1); /* the FIN came with the response: its edge is gone, close now */
        } else {
            c->state = C_IDLE;
            c->served_on_conn++;
        }
    }
    if (challenge_step(c))
        return;
    record(c, outcome_of_status(st), st);
    schedule_next(c, now_us());
}

/* Parses the response head in hbuf[0..hl). 0 ok, -1 malformed. */
static int parse_head(client_t *c, size_t hl)
{
    const char *b = c->hbuf, *end = c->hbuf + hl;
    if (hl < 12 || memcmp(b, "HTTP/1.", 7) != 0)
        return -1;
    c->status = atoi(b + 9);
    int http10 = b[7] == '0', keepalive10 = 0, chunked = 0;
    long long cl = -1;
    const char *p = memmem(b, hl, "\r\n", 2);
    while (p && p + 2 < end) {
        p += 2;
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol || eol == p)
            break;
        size_t len = (size_t)(eol - p);
        const char *colon = memchr(p, ':', len);
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(eol - v);
            if (nl == 14 && strncasecmp(p, "content-length", 14) == 0)
                cl = strtoll(v, NULL, 10);
            else if (nl == 17 && strncasecmp(p, "transfer-encoding", 17) == 0 && memmem(v, vl, "chunked", 7))
                chunked = 1;
            else if (nl == 10 && strncasecmp(p, "connection", 10) == 0) {
                if (vl >= 5 && strncasecmp(v, "close", 5) == 0)
                    c->close_after = 1;
                if (vl >= 10 && strncasecmp(v, "keep-alive", 10) == 0)
                    keepalive10 = 1;
            } else if (nl == 10 && strncasecmp(p, "set-cookie", 10) == 0 && c->kind != K_FLOOD) {
                jar_set(c, v, vl);
            } else if (nl == 8 && strncasecmp(p, "location", 8) == 0 && c->kind == K_LEGIT) {
                /* keep the path of an absolute URL */
                const char *q = v, *qe = v + vl;
                const char *sch = memmem(v, vl, "://", 3);
                if (sch) {
                    q = memchr(sch + 3, '/', (size_t)(qe - sch - 3));
                    if (!q)
                        q = qe;
                }
                size_t ll = (size_t)(qe - q);
                if (ll > 0 && ll < sizeof c->location) {
                    memcpy(c->location, q, ll);
                    c->location[ll] = 0;
                }
            }
        }
        p = eol;
    }
    if (http10 && !keepalive10)
        c->close_after = 1;
    /* a browser runs the script of a challenge page it navigated to (not of a refused asset) */
    c->capture = c->kind == K_LEGIT && c->visit_pos == 0 && c->chal_step == 0 && c->status == 403;
    if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200))
        c->body = B_NONE;
    else if (chunked)
        c->body = B_CHUNK_SIZE;
    else if (cl >= 0) {
        c->body = cl > 0 ? B_LENGTH : B_NONE;
        c->remaining = cl;
    } else
        c->body = B_UNTIL_CLOSE;
    return 0;
}

/* Keeps body bytes of a response being captured (up to CAP_MAX). */
static void keep(client_t *c, const char *d, size_t n)
{
    if (!c->capture || !n)
        return;
    if (!c->cap) {
        c->cap = malloc(CAP_MAX);
        if (!c->cap) {
            c->capture = 0;
            return;
        }
    }
    if (n > CAP_MAX - c->cap_len)
        n = CAP_MAX - c->cap_len;
    memcpy(c->cap + c->cap_len, d, n);
    c->cap_len += n;
}

/* Consumes n body bytes. 1 when the response is complete, 0 more needed, -1 malformed. */
static int consume(client_t *c, const char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        switch (c->body) {
        case B_NONE:
            return 1;
        case B_UNTIL_CLOSE:
            keep(c, d + i, n - i);
            return 0;
        case B_LENGTH: {
            size_t k = (size_t)c->remaining < n - i ? (size_t)c->remaining : n - i;
            keep(c, d + i, k);
            c->remaining -= (long long)k;
            i += k;
            if (c->remaining == 0)
                return 1;
            break;
        }
        case B_CHUNK_SIZE: {
            char ch = d[i++];
            int v = (ch >= '0' && ch <= '9') ? ch - '0'
                    : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                    : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                               : -1;
            if (ch == '\n') {
                if (!c->chunk_digits)
                    return -1;
                c->body = c->remaining ? B_CHUNK_DATA : B_TRAILER;
                c->chunk_digits = 0;
                c->chunk_skip = 0;
                c->trailer_len = 0;
            } else if (c->chunk_skip) {
                /* chunk extension or CR: up to the LF */
            } else if (v >= 0) {
                if (++c->chunk_digits > 15)
                    return -1;
                c->remaining = c->remaining * 16 + v;
            } else if (c->chunk_digits) {
                c->chunk_skip = 1;
            } else {
                return -1;
            }
            break;
        }
        case B_CHUNK_DATA: {
            size_t k = (size_t)c->remaining < n - i ? (size_t)c->remaining : n - i;
            keep(c, d + i, k);
            c->remaining -= (long long)k;
            i += k;
            if (c->remaining == 0) {
                c->body = B_CHUNK_CRLF;
                c->chunk_digits = 0;
            }
            break;
        }
        case B_CHUNK_CRLF:
            if (d[i++] == '\n') {
                c->body = B_CHUNK_SIZE;
                c->remaining = 0;
                c->chunk_digits = 0;
            }
            break;
        case B_TRAILER:
            if (d[i] == '\n') {
                if (c->trailer_len == 0)
                    return 1;
                c->trailer_len = 0;
            } else if (d[i] != '\r') {
                c->trailer_len++;
            }
            i++;
            break;
        }
    }
    return c->body == B_NONE ? 1 : 0;
}

static char scratch[65536];

static void on_readable(client_t *c)
{
    for (;;) {
        char *dstp;
        size_t room;
        if (!c->head_done) {
            dstp = c->hbuf + c->hlen;
            room = HBUF - c->hlen;
            if (room == 0) {
                fail_request(c, O_RESET); /* a head over 16 KiB: give up on this connection */
                return;
            }
        } else {
            dstp = scratch;
            room = sizeof scratch;
        }
        ssize_t r = recv(c->fd, dstp, room, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            if (c->head_done && c->body == B_UNTIL_CLOSE)
                complete(c);
            else
                fail_request(c, O_RESET);
            return;
        }
        c->got_bytes = 1;
        if (!c->head_done) {
            size_t from = c->hlen > 3 ? c->hlen - 3 : 0;
            c->hlen += (size_t)r;
        rescan:;
            const char *e = memmem(c->hbuf + from, c->hlen - from, "\r\n\r\n", 4);
            if (!e)
                continue;
            size_t hl = (size_t)(e - c->hbuf) + 4;
            if (parse_head(c, hl) < 0) {
                fail_request(c, O_RESET);
                return;
            }
            if (c->status >= 100 && c->status < 200) { /* interim response: the real one follows */
                memmove(c->hbuf, c->hbuf + hl, c->hlen - hl);
                c->hlen -= hl;
                c->close_after = 0;
                from = 0;
                goto rescan;
            }
            c->head_done = 1;
            size_t rest = c->hlen - hl;
            int k = c->body == B_NONE ? 1 : consume(c, c->hbuf + hl, rest);
            if (k < 0) {
                fail_request(c, O_RESET);
                return;
            }
            if (k > 0) {
                complete(c);
                return;
            }
        } else {
            int k = consume(c, scratch, (size_t)r);
            if (k < 0) {
                fail_request(c, O_RESET);
                return;
            }
            if (k > 0) {
                complete(c);
                return;
            }
        }
    }
}

static void on_event(uint64_t data, uint32_t evs)
{
    client_t *c = &clients[data >> 32];
    if (c->fd < 0 || (uint32_t)data != c->gen)
        return; /* an event of a connection closed earlier in this batch */
    switch (c->state) {
    case C_CONNECTING: {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fail_request(c, O_CONNFAIL);
            return;
        }
        if (!(evs & EPOLLOUT))
            return;
        c->state = C_WRITING;
    }
        /* fall through */
    case C_WRITING: {
        int r = do_write(c);
        if (r < 0) {
            fail_request(c, O_RESET);
            return;
        }
        if (r > 0)
            return;
        c->state = C_READING;
        if (!(evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            return;
        on_readable(c);
        return;
    }
    case C_READING:
        if (evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            on_readable(c);
        return;
    case C_IDLE:
        if (evs & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            char b;
            ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN) || r > 0)
                conn_close(c, 1); /* closed by the server, or unsolicited bytes (e.g. a 408) */
        }
        return;
    }
}

/* ---------------------------------------------------------------- report */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* nearest-rank percentile of sorted v[0..n) */
static double pct_ms(const int32_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    if (i > n)
        i = n;
    return v[i - 1] / 1000.0;
}

static void print_counts(const long long *k)
{
    for (int o = 0; o < O__N; o++)
        printf(" %s=%lld", O_NAME[o], k[o]);
}

static void report(double window_s)
{
    long long lo = (long long)(opt.lead * 1e6), hi = lo + (long long)(opt.duration * 1e6);
    long long k[O__N] = {0};
    int32_t *lat = malloc((nlegit + 1) * sizeof *lat);
    size_t nl = 0, total = 0;
    for (size_t i = 0; i < nlegit; i++) {
        const sample_t *s = &legit_samples[i];
        if (s->t_start < lo || s->t_start >= hi)
            continue;
        total++;
        k[s->outcome]++;
        if (s->outcome == O_2XX || s->outcome == O_3XX)
            lat[nl++] = s->lat_us;
    }
    qsort(lat, nl, sizeof *lat, cmp_i32);
    printf("LEGIT clients=%d window_s=%.3f requests=%zu ok=%zu success_pct=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f rate=%.1f retries=%d connects=%lld all_ok=%lld challenges=%lld passed=%lld "
           "chal_failed=%lld solve_ms=%.1f",
           opt.legit_n, window_s, total, nl, total ? 100.0 * (double)nl / (double)total : 0, pct_ms(lat, nl, 0.5),
           pct_ms(lat, nl, 0.9), pct_ms(lat, nl, 0.99), nl ? lat[nl - 1] / 1000.0 : 0,
           window_s > 0 ? (double)total / window_s : 0,
           legit_retries, connects[K_LEGIT], cnt[K_LEGIT][O_2XX] + cnt[K_LEGIT][O_3XX], chal_seen, chal_passed,
           chal_failed, chal_solve_us / 1000.0);
    print_counts(k);
    printf("\n");
    free(lat);
    for (int kind = K_FLOOD; kind <= K_SCRAPER; kind++) {
        if ((kind == K_FLOOD && !opt.flood_n) || (kind == K_SCRAPER && opt.scraper_rate <= 0))
            continue;
        long long att = 0;
        for (int o = 0; o < O__N; o++)
            att += cnt[kind][o];
        long long ok = cnt[kind][O_2XX] + cnt[kind][O_3XX];
        double aw = (double)(t_attack_end - t_attack) / 1e6;
        if (kind == K_FLOOD)
            printf("FLOOD addrs=%d conns=%d target_rps=%.0f", opt.flood_n, opt.flood_n * opt.flood_conns,
                   opt.flood_rate * opt.flood_n);
        else
            printf("SCRAPER target_rps=%.2f", opt.scraper_rate);
        printf(" requests=%lld served=%lld refused=%lld served_pct=%.3f refused_pct=%.3f rate=%.1f served_rate=%.1f "
               "lagged=%lld connects=%lld",
               att, ok, att - ok, att ? 100.0 * (double)ok / (double)att : 0,
               att ? 100.0 * (double)(att - ok) / (double)att : 0,
               aw > 0 ? (double)att / aw : 0, aw > 0 ? (double)ok / aw : 0, lagged[kind], connects[kind]);
        if (kind == K_SCRAPER) {
            if (scraper_first_refusal >= 0)
                printf(" first_refusal_s=%.3f first_refusal_status=%d", scraper_first_refusal / 1e6,
                       scraper_first_status);
            else
                printf(" first_refusal_s=none first_refusal_status=none");
        }
        print_counts(cnt[kind]);
        printf("\n");
    }
    fflush(stdout);
    if (opt.timeline) {
        FILE *f = fopen(opt.timeline, "w");
        if (!f) {
            perror(opt.timeline);
            return;
        }
        fprintf(f, "second\tphase\tlegit_ok\tlegit_fail\tlegit_p99_ms\tflood_sent\tflood_served\tflood_refused\t"
                   "scraper_served\tscraper_refused\n");
        for (int i = 0; i < ntl; i++) {
            second_t *s = &tl[i];
            qsort(s->lat, (size_t)s->nlat, sizeof *s->lat, cmp_u32);
            double p99 = 0;
            if (s->nlat) {
                size_t j = (size_t)(0.99 * s->nlat + 0.999999);
                p99 = s->lat[(j ? j : 1) - 1] / 1000.0;
            }
            fprintf(f, "%d\t%s\t%d\t%d\t%.3f\t%d\t%d\t%d\t%d\t%d\n", i, i < (int)opt.lead ? "lead" : "attack",
                    s->legit_ok,
                    s->legit_fail, p99, s->flood_sent, s->flood_ok, s->flood_refused, s->scr_ok, s->scr_refused);
        }
        fclose(f);
    }
}

/* ---------------------------------------------------------------- main */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(FILE *f, const char *me)
{
    fprintf(f,
            "usage: %s --port P [options]\n"
            "  --host ADDR          proxy address (127.0.0.1)\n"
            "  --host-header NAME   Host header (shop.example)\n"
            "  --duration S         attack window (15); --lead S legit-only time before it (5)\n"
            "  --legit N            legitimate clients (20); --legit-rate R their total req/s (200)\n"
            "  --legit-base ADDR    first legit source address (127.1.0.1)\n"
            "  --flood N            flood addresses (0: no flood); --flood-rate R req/s per address (100)\n"
            "  --flood-conns K      keep-alive connections per flood address (2); --flood-base ADDR (127.2.0.1)\n"
            "  --scraper R          scraper req/s (0: none); --scraper-addr ADDR (127.3.0.1)\n"
            "  --timeout S          per-request timeout (5)\n"
            "  --timeline FILE      per-second figures (TSV)\n",
            me);
}

static int parse_addr(const char *s, struct in_addr *a)
{
    if (inet_pton(AF_INET, s, a) != 1) {
        fprintf(stderr, "attack: bad IPv4 address %s\n", s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    inet_pton(AF_INET, "127.1.0.1", &opt.legit_base);
    inet_pton(AF_INET, "127.2.0.1", &opt.flood_base);
    inet_pton(AF_INET, "127.3.0.1", &opt.scraper_addr);
    static const struct option lo[] = {
        {"port", 1, 0, 'p'},        {"host", 1, 0, 'H'},       {"host-header", 1, 0, 'N'}, {"duration", 1, 0, 'd'},
        {"lead", 1, 0, 'w'},        {"legit", 1, 0, 'l'},      {"legit-rate", 1, 0, 'L'},  {"legit-base", 1, 0, 'a'},
        {"flood", 1, 0, 'f'},       {"flood-rate", 1, 0, 'F'}, {"flood-conns", 1, 0, 'k'}, {"flood-base", 1, 0, 'b'},
        {"scraper", 1, 0, 's'},     {"scraper-addr", 1, 0, 'c'}, {"timeout", 1, 0, 't'},   {"timeline", 1, 0, 'T'},
        {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "p:d:w:h", lo, NULL)) != -1) {
        switch (ch) {
        case 'p': opt.port = atoi(optarg); break;
        case 'H': opt.host = optarg; break;
        case 'N': opt.host_header = optarg; break;
        case 'd': opt.duration = atof(optarg); break;
        case 'w': opt.lead = atof(optarg); break;
        case 'l': opt.legit_n = atoi(optarg); break;
        case 'L': opt.legit_rate = atof(optarg); break;
        case 'a': if (parse_addr(optarg, &opt.legit_base)) return 2; break;
        case 'f': opt.flood_n = atoi(optarg); break;
        case 'F': opt.flood_rate = atof(optarg); break;
        case 'k': opt.flood_conns = atoi(optarg); break;
        case 'b': if (parse_addr(optarg, &opt.flood_base)) return 2; break;
        case 's': opt.scraper_rate = atof(optarg); break;
        case 'c': if (parse_addr(optarg, &opt.scraper_addr)) return 2; break;
        case 't': opt.timeout_s = atof(optarg); break;
        case 'T': opt.timeline = optarg; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default: usage(stderr, argv[0]); return 2;
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.duration <= 0 || opt.lead < 0 || opt.legit_n < 0 ||
        (opt.legit_n > 0 && opt.legit_rate <= 0) || opt.flood_n < 0 || opt.flood_conns < 1 ||
        (opt.flood_n > 0 && opt.flood_rate <= 0) || opt.timeout_s <= 0) {
        usage(stderr, argv[0]);
        return 2;
    }
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)opt.port);
    if (parse_addr(opt.host, &dst.sin_addr))
        return 2;

    nclients = opt.legit_n + opt.flood_n * opt.flood_conns + (opt.scraper_rate > 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nclients + 16) {
        fprintf(stderr, "attack: RLIMIT_NOFILE %lu too low for %d sockets\n", (unsigned long)rl.rlim_cur, nclients);
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    ep = epoll_create1(EPOLL_CLOEXEC);
    clients = calloc((size_t)nclients, sizeof *clients);
    ntl = (int)(opt.lead + opt.duration + 0.999);
    tl = calloc((size_t)ntl, sizeof *tl);
    if (ep < 0 || !clients || !tl) {
        perror("attack: setup");
        return 1;
    }
    t0 = now_us();
    t_attack = t0 + (long long)(opt.lead * 1e6);
    t_attack_end = t_end = t_attack + (long long)(opt.duration * 1e6);
    uint64_t seed = (uint64_t)t0 ^ ((uint64_t)getpid() << 32);
    int n = 0;
    for (int i = 0; i < opt.legit_n; i++, n++) {
        client_t *c = &clients[n];
        c->kind = K_LEGIT;
        c->idx = i;
        c->src = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = addr_add(opt.legit_base, i)};
        c->rng = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(n + 1);
        double mean_gap = 5.0 / (opt.legit_rate / opt.legit_n);
        c->visit_start = t0 + (long long)(mean_gap * rnd_unit(c) * 1e6);
        c->visit_gap = (long long)(mean_gap * (0.5 + rnd_unit(c)) * 1e6);
        c->visit_pos = 0;
        c->visit_assets = rnd_int(c, 3, 5);
        c->visit_page = rnd_int(c, 1, 50);
        c->visit_first = 1;
        c->next_at = c->visit_start;
    }
    for (int a = 0; a < opt.flood_n; a++) {
        struct in_addr ad = addr_add(opt.flood_base, a);
        for (int j = 0; j < opt.flood_conns; j++, n++) {
            client_t *c = &clients[n];
            c->kind = K_FLOOD;
            c->idx = n;
            c->src = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = ad};
            c->rng = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(n + 1);
            c->interval = (long long)(opt.flood_conns / opt.flood_rate * 1e6);
            if (c->interval < 1)
                c->interval = 1;
            c->sched = t_attack + (long long)(rnd_unit(c) * (double)c->interval);
            c->next_at = c->sched;
        }
    }
    if (opt.scraper_rate > 0) {
        client_t *c = &clients[n++];
        c->kind = K_SCRAPER;
        c->src = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = opt.scraper_addr};
        c->rng = seed + 77;
        c->interval = (long long)(1e6 / opt.scraper_rate);
        c->sched = t_attack;
        c->next_at = c->sched;
        c->page = 1;
    }
    for (int i = 0; i < nclients; i++) {
        clients[i].fd = -1;
        clients[i].state = C_NONE;
    }

    struct epoll_event evs[512];
    long long last_scan = 0;
    for (;;) {
        long long now = now_us();
        if (stop || now >= t_end)
            break;
        if (ready || now - last_scan >= 1000) {
            ready = 0;
            last_scan = now;
            for (int i = 0; i < nclients; i++) {
                client_t *c = &clients[i];
                if (c->state == C_CONNECTING || c->state == C_WRITING || c->state == C_READING) {
                    if (now >= c->deadline)
                        fail_request(c, O_TIMEOUT);
                    continue;
                }
                if (!c->next_at || c->next_at > now)
                    continue;
                if (c->kind != K_LEGIT && now >= t_attack_end) {
                    c->next_at = 0;
                    continue;
                }
                build_request(c);
                issue(c, now, 0);
            }
        }
        int m = epoll_wait(ep, evs, 512, ready ? 0 : 1);
        for (int e = 0; e < m; e++)
            on_event(evs[e].data.u64, evs[e].events);
    }
    for (int i = 0; i < nclients; i++)
        conn_close(&clients[i], 1);
    report((double)(t_attack_end - t_attack) / 1e6);
    return 0;
}
