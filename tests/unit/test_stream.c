/* test_stream.c: the event stream's spool and JetStream publisher (src/events/stream.c).
 *
 * Every test starts a real nats-server with JetStream (-js, its own store directory) on a free
 * ephemeral loopback port, fork/exec'd and stopped (or kill -9'd) by PID, and reads the outcome
 * back from JetStream over a second, raw libnats connection: stream message counts, and every
 * message (subject, Nats-Msg-Id, payload) through a durable pull consumer. Skipped, with the
 * reason printed, only when nats-server is not installed. gh_stream is one instance per
 * process, so the tests run one after another, each with its own spool directory. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "events/stream.h"
#include "t.h"
#include "t_servers.h"

#define STREAM "GATEHOUSE"
#define PREFIX "gatehouse"
#define NODE "node1"

static int nport;            /* the NATS test server's port */
static pid_t npid = -1;      /* its pid, -1 when not running */
static char nstore[256];     /* its -sd store directory */
static char nlog[256];       /* its output */
static const char *nuser, *npass; /* --user/--pass when set */
static char tmproot[64];     /* everything of this run */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Poll cond every 10 ms for up to ms; its final value. */
#define WAIT_UNTIL(cond, ms)                                           \
    ({                                                                 \
        int64_t t_end_ = mono_ms() + (ms);                             \
        while (!(cond) && mono_ms() < t_end_)                          \
            sleep_ms(10);                                              \
        (cond) ? 1 : 0;                                                \
    })

static void url_of(char *out, size_t cap, int with_creds)
{
    if (with_creds && nuser)
        snprintf(out, cap, "nats://%s:%s@127.0.0.1:%d", nuser, npass, nport);
    else
        snprintf(out, cap, "nats://127.0.0.1:%d", nport);
}

/* A raw test connection and its JetStream context, or -1. */
static int raw_connect(natsConnection **nc, jsCtx **js)
{
    char url[256];
    url_of(url, sizeof url, 1);
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 500);
    if (s == NATS_OK)
        s = natsOptions_SetAllowReconnect(o, false);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK)
        return -1;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    if (natsConnection_JetStream(js, *nc, &jo) != NATS_OK) {
        natsConnection_Destroy(*nc);
        return -1;
    }
    return 0;
}

static void raw_close(natsConnection *nc, jsCtx *js)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* Start nats-server with JetStream on nport, store nstore; wait until JetStream answers. */
static int nats_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", nport);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        int log = open(nlog, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(null, 0);
        dup2(log, 1);
        dup2(log, 2);
        if (nuser)
            execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", nstore, "--user", nuser,
                   "--pass", npass, (char *)NULL);
        else
            execlp("nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", nstore, (char *)NULL);
        execl("/usr/sbin/nats-server", "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", nstore,
              (char *)NULL);
        _exit(127);
    }
    npid = pid;
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        natsConnection *nc;
        jsCtx *js;
        if (raw_connect(&nc, &js) == 0) {
            jsAccountInfo *ai = NULL;
            natsStatus s = js_GetAccountInfo(&ai, js, NULL, NULL);
            jsAccountInfo_Destroy(ai);
            raw_close(nc, js);
            if (s == NATS_OK)
                return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            npid = -1;
            return -1;
        }
        sleep_ms(20);
    }
    return -1;
}

static void nats_kill(int sig)
{
    if (npid <= 0)
        return;
    kill(npid, sig);
    waitpid(npid, NULL, 0);
    npid = -1;
}

/* A fresh server (new port, empty store) for one test; its spool directory in spool. */
static int fresh(const char *name, char *spool, size_t cap)
{
    nport = t_free_port();
    snprintf(nstore, sizeof nstore, "%s/%s-store", tmproot, name);
    snprintf(nlog, sizeof nlog, "%s/%s-nats.log", tmproot, name);
    snprintf(spool, cap, "%s/%s-spool/sub", tmproot, name); /* "sub": made with its parent */
    return nport > 0 ? 0 : -1;
}

static int start_stream(const char *spool, uint64_t spool_max, void (*on_purge)(const char *, size_t))
{
    char url[256], err[256] = "";
    url_of(url, sizeof url, 1);
    gh_stream_conf_t c = {.url = url,
                          .stream = STREAM,
                          .prefix = PREFIX,
                          .spool_dir = spool,
                          .spool_max = spool_max,
                          .node = NODE,
                          .kinds = (1u << GH_EV_ACCESS) | (1u << GH_EV_EXPOSURE) | (1u << GH_EV_EVENT),
                          .on_purge = on_purge};
    int r = gh_stream_start(&c, err, sizeof err);
    if (r < 0)
        fprintf(stderr, "gh_stream_start: %s\n", err);
    return r;
}

static gh_stream_stats_t stats(void)
{
    gh_stream_stats_t s;
    gh_stream_stats(&s);
    return s;
}

/* ---- the records the tests put: record i has kind i % 3, tenant i % 2, id "r<i>" ---- */

static const char *const tenants[2] = {"acme", "beta.x"};
static const char *const tenant_tokens[2] = {"acme", "beta%2Ex"};

/* Record i's JSON, padded with pad bytes; its length. */
static size_t rec_json(char *out, size_t cap, int i, int pad)
{
    int n = snprintf(out, cap, "{\"i\":%d,\"pad\":\"", i);
    for (int k = 0; k < pad && (size_t)n + 4 < cap; k++)
        out[n++] = (char)('a' + (i + k) % 26);
    n += snprintf(out + n, cap - (size_t)n, "\"}");
    return (size_t)n;
}

static int put_rec(int i, int pad)
{
    char json[4096], id[32];
    size_t jl = rec_json(json, sizeof json, i, pad);
    int il = snprintf(id, sizeof id, "r%d", i);
    const char *t = tenants[i % 2];
    return gh_stream_put((gh_ev_kind_t)(i % 3), t, strlen(t), id, (size_t)il, json, jl);
}

/* Bytes record i takes in the spool. */
static uint64_t rec_bytes(int i, int pad)
{
    char json[4096], id[32];
    size_t jl = rec_json(json, sizeof json, i, pad);
    int il = snprintf(id, sizeof id, "r%d", i);
    return 8 + 5 + strlen(tenants[i % 2]) + (size_t)il + jl;
}

static uint64_t stream_msgs(void)
{
    natsConnection *nc;
    jsCtx *js;
    if (raw_connect(&nc, &js) < 0)
        return (uint64_t)-1;
    jsStreamInfo *si = NULL;
    uint64_t n = (uint64_t)-1;
    if (js_GetStreamInfo(&si, js, STREAM, NULL, NULL) == NATS_OK)
        n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    raw_close(nc, js);
    return n;
}

typedef struct {
    int n;         /* records 0..n-1 expected */
    int pad;       /* their padding */
    int *seen;     /* times each record was read back */
    long total;    /* messages read */
    long bad;      /* messages that do not match their record */
    long others;   /* messages that are not records (purges) */
} check_t;

/* Read every message of the stream back (durable pull consumer, acked) and check each record
 * message against the record its id names: subject, Nats-Msg-Id, payload. */
static int read_back(check_t *c)
{
    static int durables;
    natsConnection *nc;
    jsCtx *js;
    if (raw_connect(&nc, &js) < 0)
        return -1;
    char durable[32];
    snprintf(durable, sizeof durable, "check%d", ++durables);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = -1;
    natsSubscription *sub = NULL;
    jsErrCode je = 0;
    if (js_PullSubscribe(&sub, js, PREFIX ".>", durable, NULL, &so, &je) != NATS_OK) {
        fprintf(stderr, "js_PullSubscribe: %s (%d)\n", nats_GetLastError(NULL), (int)je);
        raw_close(nc, js);
        return -1;
    }
    c->seen = calloc((size_t)c->n, sizeof *c->seen);
    for (;;) {
        natsMsgList l;
        if (natsSubscription_Fetch(&l, sub, 1000, 500, &je) != NATS_OK)
            break;
        for (int k = 0; k < l.Count; k++) {
            natsMsg *m = l.Msgs[k];
            c->total++;
            const char *subj = natsMsg_GetSubject(m), *mid = NULL;
            natsMsgHeader_Get(m, "Nats-Msg-Id", &mid);
            if (strcmp(subj, PREFIX ".purge") == 0) {
                c->others++;
                natsMsg_Ack(m, NULL);
                continue;
            }
            int i = -1;
            const char *r = mid ? strstr(mid, ":r") : NULL;
            if (r && strchr(r + 2, ':') == NULL) /* the id is the last field */
                i = atoi(r + 2);
            char want[8192];
            int ok = i >= 0 && i < c->n;
            if (ok) {
                snprintf(want, sizeof want, PREFIX ".%s.%s", gh_ev_kind_name((gh_ev_kind_t)(i % 3)), tenant_tokens[i % 2]);
                ok = strcmp(subj, want) == 0;
            }
            if (ok) {
                snprintf(want, sizeof want, "%s:%s:r%d", gh_ev_kind_name((gh_ev_kind_t)(i % 3)), tenants[i % 2], i);
                ok = strcmp(mid, want) == 0;
            }
            if (ok) {
                size_t jl = rec_json(want, sizeof want, i, c->pad);
                ok = (size_t)natsMsg_GetDataLength(m) == jl && memcmp(natsMsg_GetData(m), want, jl) == 0;
            }
            if (ok)
                c->seen[i]++;
            else if (c->bad++ < 5)
                fprintf(stderr, "unexpected message: subject %s id %s data %.*s\n", subj, mid ? mid : "(none)",
                        natsMsg_GetDataLength(m) > 80 ? 80 : natsMsg_GetDataLength(m), natsMsg_GetData(m));
            natsMsg_Ack(m, NULL);
        }
        natsMsgList_Destroy(&l);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    raw_close(nc, js);
    return 0;
}

static int distinct(const check_t *c)
{
    int d = 0;
    for (int i = 0; i < c->n; i++)
        d += c->seen[i] > 0;
    return d;
}

static int count_segments(const char *spool)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '^seg-'", spool);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- without a server ---- */

static void test_lifecycle(void)
{
    gh_stream_stop(); /* never started: nothing to do */
    CHECK(!gh_stream_on(GH_EV_ACCESS));
    CHECK(!gh_stream_on(GH_EV_PURGE));
    CHECK_INT(gh_stream_put(GH_EV_ACCESS, "t", 1, "a", 1, "{}", 2), GH_ELIMIT);
    CHECK_INT(gh_stream_purge("{\"tenant\":\"t\"}", 14), GH_ELIMIT);
    CHECK(strcmp(gh_ev_kind_name(GH_EV_EXPOSURE), "exposure") == 0);
    CHECK(strcmp(gh_ev_kind_name(GH_EV_PURGE), "purge") == 0);

    char err[256] = "";
    gh_stream_conf_t c = {.url = "nats://127.0.0.1:1", .stream = STREAM, .prefix = PREFIX,
                          .spool_dir = "/dev/null/spool", .node = NODE, .kinds = 1};
    CHECK_INT(gh_stream_start(&c, err, sizeof err), -1);
    CHECK(strstr(err, "/dev/null/spool") != NULL);
    gh_stream_stop(); /* after a failed start: nothing to do */
    CHECK(!gh_stream_on(GH_EV_ACCESS));
}

/* ---- with a server ---- */

/* 10,000 records of 3 kinds and 2 tenants: all in the stream, right subjects, ids and
 * payloads; the spool emptied; the metrics. */
static void test_all_arrive(void)
{
    char spool[256];
    CHECK(fresh("t1", spool, sizeof spool) == 0);
    CHECK(nats_start() == 0);
    CHECK(start_stream(spool, 0, NULL) == 0);
    CHECK(gh_stream_on(GH_EV_ACCESS) && gh_stream_on(GH_EV_EVENT) && gh_stream_on(GH_EV_PURGE));
    const int N = 10000;
    int refused = 0;
    for (int i = 0; i < N; i++)
        refused += put_rec(i, 20) != 0;
    CHECK_INT(refused, 0);
    CHECK(WAIT_UNTIL(stats().published == (uint64_t)N, 20000));
    gh_stream_stats_t st = stats();
    CHECK_INT(st.published, N);
    CHECK_INT(st.appended[GH_EV_ACCESS], 3334);
    CHECK_INT(st.appended[GH_EV_EXPOSURE], 3333);
    CHECK_INT(st.appended[GH_EV_EVENT], 3333);
    CHECK_INT(st.spool_bytes, 0);
    CHECK_INT(st.dropped, 0);
    CHECK_INT(st.connected, 1);

    char metrics[4096];
    size_t ml = gh_stream_metrics(metrics, sizeof metrics);
    CHECK(ml > 0 && ml == strlen(metrics));
    CHECK(strstr(metrics, "# TYPE gatehouse_stream_records_total counter\n") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_records_total{kind=\"access\"} 3334\n") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_published_total 10000\n") != NULL);
    CHECK(strstr(metrics, "# TYPE gatehouse_stream_spool_bytes gauge\ngatehouse_stream_spool_bytes 0\n") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_connected 1\n") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_dropped_total 0\n") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_publish_errors_total") != NULL);
    CHECK(strstr(metrics, "gatehouse_stream_purges_received_total 0\n") != NULL);
    CHECK_INT(gh_stream_metrics(metrics, 100), 0); /* too small: nothing, not half */

    check_t c = {.n = N, .pad = 20};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.total, N);
    CHECK_INT(c.bad, 0);
    CHECK_INT(distinct(&c), N);
    CHECK_INT(stream_msgs(), N);
    free(c.seen);

    /* the cursor is at the end of the one segment */
    char path[512], line[64] = "";
    snprintf(path, sizeof path, "%s/cursor", spool);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/seg-%016d", spool, 0);
    char want[64];
    snprintf(want, sizeof want, "0 %lld\n", file_size(path));
    CHECK(strcmp(line, want) == 0);
    CHECK_INT(count_segments(spool), 1);
    gh_stream_stop();
    CHECK(!gh_stream_on(GH_EV_ACCESS));
    nats_kill(SIGTERM);
}

/* NATS down at start (and with credentials, which the log must not show): records wait in the
 * spool; once nats-server starts they all arrive. */
static void test_nats_down_at_start(void)
{
    char spool[256], logpath[512];
    CHECK(fresh("t2", spool, sizeof spool) == 0);
    nuser = "gh";
    npass = "s3cret-pw";
    snprintf(logpath, sizeof logpath, "%s/t2-gatehouse.log", tmproot);
    fflush(stderr);
    int saved = dup(2), lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(lfd, 2);
    close(lfd);

    int started = start_stream(spool, 0, NULL);
    const int N = 1000;
    int refused = 0;
    for (int i = 0; i < N; i++)
        refused += put_rec(i, 10) != 0;
    sleep_ms(500);
    gh_stream_stats_t before = stats();
    int nats_ok = nats_start();
    int arrived = WAIT_UNTIL(stats().published == (uint64_t)N, 15000);
    gh_stream_stats_t after = stats();
    gh_stream_stop();

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK_INT(started, 0);
    CHECK_INT(refused, 0);
    CHECK_INT(before.connected, 0);
    CHECK_INT(before.published, 0);
    CHECK(before.spool_bytes > 0);
    uint64_t want = 0;
    for (int i = 0; i < N; i++)
        want += rec_bytes(i, 10);
    CHECK_INT(before.spool_bytes, want);
    CHECK_INT(nats_ok, 0);
    CHECK(arrived);
    CHECK_INT(after.spool_bytes, 0);

    char log[16384] = "";
    FILE *f = fopen(logpath, "r");
    size_t ln = f ? fread(log, 1, sizeof log - 1, f) : 0;
    log[ln] = 0;
    if (f)
        fclose(f);
    printf("test_stream: the log of a start with NATS down:\n%s", log);
    CHECK(strstr(log, "not reachable") != NULL);
    CHECK(strstr(log, "connected to NATS nats://***@127.0.0.1:") != NULL);
    CHECK(strstr(log, "stream GATEHOUSE created") != NULL);
    CHECK(strstr(log, npass) == NULL);

    check_t c = {.n = N, .pad = 10};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.total, N);
    CHECK_INT(c.bad, 0);
    CHECK_INT(distinct(&c), N);
    free(c.seen);
    nats_kill(SIGTERM);
    nuser = npass = NULL;
}

typedef struct {
    int from, n, per_ms, pad;
    int refused;
} putter_t;

/* Puts records from..from+n-1, n / 100 of them every per_ms. */
static void *putter(void *arg)
{
    putter_t *p = arg;
    int chunk = p->n / 100;
    for (int i = 0; i < p->n; i++) {
        p->refused += put_rec(p->from + i, p->pad) != 0;
        if (chunk && (i + 1) % chunk == 0)
            sleep_ms(p->per_ms);
    }
    return NULL;
}

/* kill -9 of nats-server (twice) while 50,000 records are put: afterwards the stream holds
 * every record; distinct ids exact; duplicates reported. */
static void test_kill9_mid_stream(void)
{
    char spool[256];
    CHECK(fresh("t3", spool, sizeof spool) == 0);
    CHECK(nats_start() == 0);
    CHECK(start_stream(spool, 0, NULL) == 0);
    const int N = 50000;
    /* faster than this server acknowledges, so that a batch is in flight at each kill */
    putter_t p = {.from = 0, .n = N, .per_ms = 5, .pad = 40};
    pthread_t t;
    pthread_create(&t, NULL, putter, &p);
    sleep_ms(300);
    uint64_t at_kill1 = stats().published;
    nats_kill(SIGKILL);
    sleep_ms(400);
    CHECK(nats_start() == 0);
    sleep_ms(600);
    uint64_t at_kill2 = stats().published;
    nats_kill(SIGKILL);
    sleep_ms(200);
    CHECK(nats_start() == 0);
    pthread_join(t, NULL);
    CHECK_INT(p.refused, 0);
    int done = WAIT_UNTIL(stats().published >= (uint64_t)N && stats().spool_bytes == 0, 45000);
    gh_stream_stats_t st = stats();
    printf("test_stream: kill -9 at %llu and %llu of %d acknowledged; %llu batches failed and were resent\n",
           (unsigned long long)at_kill1, (unsigned long long)at_kill2, N, (unsigned long long)st.publish_errors);
    CHECK(done);
    CHECK(at_kill1 < (uint64_t)N); /* the kills landed mid-stream */
    CHECK(st.publish_errors >= 1);
    CHECK_INT(st.spool_bytes, 0);

    check_t c = {.n = N, .pad = 40};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.bad, 0);
    CHECK_INT(distinct(&c), N);
    printf("test_stream: after two kill -9: %ld messages, %d distinct records, %ld duplicates got through\n", c.total,
           distinct(&c), c.total - distinct(&c));
    CHECK_INT(c.total, N); /* the duplicate window held across the restarts */
    free(c.seen);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

/* Stop with NATS unreachable, garbage appended to the last segment (a torn write), start
 * again: the torn tail is truncated, the spooled records are sent, nothing else. */
static void test_restart_torn_tail(void)
{
    char spool[256], seg[512];
    CHECK(fresh("t4", spool, sizeof spool) == 0);
    CHECK(nats_start() == 0);
    CHECK(start_stream(spool, 0, NULL) == 0);
    int refused = 0;
    for (int i = 0; i < 300; i++)
        refused += put_rec(i, 5) != 0;
    CHECK(WAIT_UNTIL(stats().published == 300, 10000));
    nats_kill(SIGKILL);
    for (int i = 300; i < 500; i++)
        refused += put_rec(i, 5) != 0;
    CHECK_INT(refused, 0);
    sleep_ms(300);
    uint64_t spooled = stats().spool_bytes;
    uint64_t want = 0;
    for (int i = 300; i < 500; i++)
        want += rec_bytes(i, 5);
    CHECK_INT(spooled, want);
    int64_t t0 = mono_ms();
    gh_stream_stop();
    int64_t took = mono_ms() - t0;
    CHECK(took >= 1500 && took < 5000); /* it tried for its 2 s, then gave up */

    /* a torn record: a plausible header, then less than it announces */
    snprintf(seg, sizeof seg, "%s/seg-%016d", spool, 0);
    long long size0 = file_size(seg);
    CHECK(size0 > 0);
    int fd = open(seg, O_WRONLY | O_APPEND);
    unsigned char junk[28] = {100, 0, 0, 0, 1, 2, 3, 4, 0, 4, 0, 'a', 'c', 'm', 'e'};
    CHECK(fd >= 0 && write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    if (fd >= 0)
        close(fd);
    CHECK_INT(file_size(seg), size0 + (long long)sizeof junk);

    CHECK(start_stream(spool, 0, NULL) == 0);
    CHECK_INT(file_size(seg), size0); /* truncated */
    CHECK_INT(stats().spool_bytes, want);
    CHECK(nats_start() == 0);
    CHECK(WAIT_UNTIL(stats().published >= 200, 15000));
    sleep_ms(300);
    gh_stream_stats_t st = stats();
    CHECK_INT(st.published, 200); /* resumed at the cursor: the first 300 were not sent again */
    CHECK_INT(st.spool_bytes, 0);

    check_t c = {.n = 500, .pad = 5};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.bad, 0);
    CHECK_INT(c.total, 500);
    CHECK_INT(distinct(&c), 500);
    free(c.seen);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

/* spool_max with NATS down: puts beyond it are refused and counted; the accepted ones arrive. */
static void test_spool_max(void)
{
    char spool[256];
    CHECK(fresh("t5", spool, sizeof spool) == 0);
    uint64_t max = 0;
    for (int i = 0; i < 100; i++)
        max += rec_bytes(i, 30);
    CHECK(start_stream(spool, max + rec_bytes(100, 30) / 2, NULL) == 0);
    int accepted = 0, limited = 0;
    for (int i = 0; i < 150; i++) {
        int r = put_rec(i, 30);
        accepted += r == 0 && i < 100;
        limited += r == GH_ELIMIT && i >= 100;
    }
    CHECK_INT(accepted, 100);
    CHECK_INT(limited, 50);
    /* too large, whatever the room */
    size_t big = (1u << 20) + 1;
    char *json = malloc(big);
    memset(json, ' ', big);
    json[0] = '{';
    json[big - 1] = '}';
    CHECK_INT(gh_stream_put(GH_EV_EVENT, "acme", 4, "big", 3, json, big), GH_ELIMIT);
    free(json);
    gh_stream_stats_t st = stats();
    CHECK_INT(st.dropped, 51);
    CHECK_INT(st.spool_bytes, max);
    CHECK(nats_start() == 0);
    CHECK(WAIT_UNTIL(stats().published == 100, 15000));
    CHECK_INT(stats().spool_bytes, 0);
    /* room again */
    CHECK_INT(put_rec(100, 30), 0);
    CHECK(WAIT_UNTIL(stats().published == 101, 5000));

    check_t c = {.n = 150, .pad = 30};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.bad, 0);
    CHECK_INT(c.total, 101);
    CHECK_INT(distinct(&c), 101);
    for (int i = 0; i < 101; i++)
        CHECK_INT(c.seen[i], 1);
    free(c.seen);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

/* gh_stream_put_many: records framed into one append arrive like single puts (same ids,
 * subjects, bodies); over spool_max a whole call is refused and counted. */
static void test_put_many(void)
{
    char spool[256];
    CHECK(fresh("t8", spool, sizeof spool) == 0);
    enum { N = 3000, PER = 500 };
    static char json[N][256], id[N][32];
    static gh_stream_rec_t recs[N];
    uint64_t bytes = 0;
    for (int i = 0; i < N; i++) {
        size_t jl = rec_json(json[i], sizeof json[i], i, 25);
        int il = snprintf(id[i], sizeof id[i], "r%d", i);
        const char *t = tenants[i % 2];
        recs[i] = (gh_stream_rec_t){.kind = (gh_ev_kind_t)(i % 3), .tenant = t, .tenant_len = strlen(t),
                                    .id = id[i], .id_len = (size_t)il, .json = json[i], .len = jl};
        bytes += rec_bytes(i, 25);
    }
    /* NATS down: the spool takes exactly N records, then a whole call is refused */
    CHECK(start_stream(spool, bytes + 10, NULL) == 0);
    for (int i = 0; i < N; i += PER)
        CHECK_INT(gh_stream_put_many(recs + i, PER), 0);
    gh_stream_stats_t st = stats();
    CHECK_INT(st.spool_bytes, bytes);
    CHECK_INT(st.appended[GH_EV_ACCESS] + st.appended[GH_EV_EXPOSURE] + st.appended[GH_EV_EVENT], N);
    CHECK_INT(gh_stream_put_many(recs, 2), GH_ELIMIT);
    CHECK_INT(stats().dropped, 2);
    CHECK(nats_start() == 0);
    CHECK(WAIT_UNTIL(stats().published == (uint64_t)N, 20000));
    check_t c = {.n = N, .pad = 25};
    CHECK(read_back(&c) == 0);
    CHECK_INT(c.bad, 0);
    CHECK_INT(c.total, N);
    CHECK_INT(distinct(&c), N);
    free(c.seen);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

static char purge_got[8][512];
static int purge_n;

static void on_purge(const char *json, size_t len)
{
    int k = __atomic_load_n(&purge_n, __ATOMIC_SEQ_CST);
    if (k < 8)
        snprintf(purge_got[k], sizeof purge_got[k], "%.*s", (int)len, json);
    __atomic_add_fetch(&purge_n, 1, __ATOMIC_SEQ_CST);
}

static int purges_seen(void) { return __atomic_load_n(&purge_n, __ATOMIC_SEQ_CST); }

/* A purge from another node (a raw connection) is handed to on_purge within 1 s, and still
 * after a kill -9 of nats-server; our own purge reaches the stream but not on_purge; purges
 * made before the follower started are not applied. */
static void test_purge(void)
{
    char spool[256];
    CHECK(fresh("t6", spool, sizeof spool) == 0);
    CHECK(nats_start() == 0);
    natsConnection *nc;
    jsCtx *js;
    CHECK(raw_connect(&nc, &js) == 0);
    /* the stream, and an old purge in it, before this node starts */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {PREFIX ".>"};
    sc.Name = STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 120000000000ll;
    CHECK(js_AddStream(NULL, js, &sc, NULL, NULL) == NATS_OK);
    const char *old = "{\"tenant\":\"t\",\"kind\":\"tag\",\"values\":[\"old\"],\"node\":\"node2\"}";
    CHECK(js_Publish(NULL, js, PREFIX ".purge", old, (int)strlen(old), NULL, NULL) == NATS_OK);

    CHECK(start_stream(spool, 0, on_purge) == 0);
    CHECK_INT(put_rec(0, 0), 0);
    CHECK(WAIT_UNTIL(stats().published == 1, 5000)); /* the follower is made before the first batch */

    const char *p1 = "{\"tenant\":\"t\",\"kind\":\"tag\",\"values\":[\"a\"],\"soft\":false,\"node\":\"node2\"}";
    CHECK(js_Publish(NULL, js, PREFIX ".purge", p1, (int)strlen(p1), NULL, NULL) == NATS_OK);
    CHECK(WAIT_UNTIL(purges_seen() >= 1, 1000));
    CHECK_INT(purges_seen(), 1);
    CHECK(strcmp(purge_got[0], p1) == 0);

    /* our own */
    const char *mine = "{\"tenant\":\"t\",\"kind\":\"tag\",\"values\":[\"b\"],\"soft\":true}";
    CHECK_INT(gh_stream_purge(mine, strlen(mine)), 0);
    CHECK_INT(gh_stream_purge("[1]", 3), GH_EINVAL);
    CHECK(WAIT_UNTIL(stats().published == 2, 5000));
    natsMsg *last = NULL;
    CHECK(js_GetLastMsg(&last, js, STREAM, PREFIX ".purge", NULL, NULL) == NATS_OK);
    if (last) {
        const char *d = natsMsg_GetData(last), *mid = NULL;
        CHECK(strstr(d, "\"node\":\"" NODE "\"") != NULL);
        CHECK(strstr(d, "\"values\":[\"b\"]") != NULL);
        CHECK(natsMsgHeader_Get(last, "Nats-Msg-Id", &mid) == NATS_OK);
        CHECK(mid && strncmp(mid, "purge:t:" NODE "-1-", 15) == 0);
        natsMsg_Destroy(last);
    }
    sleep_ms(500);
    CHECK_INT(purges_seen(), 1);

    /* across a kill -9 of the server: the ordered consumer is made again; no replays */
    raw_close(nc, js);
    nats_kill(SIGKILL);
    sleep_ms(200);
    CHECK(nats_start() == 0);
    CHECK(WAIT_UNTIL(stats().connected == 1, 5000));
    CHECK(raw_connect(&nc, &js) == 0);
    const char *p2 = "{\"tenant\":\"u\",\"kind\":\"prefix\",\"values\":[\"/x\"],\"node\":\"node3\"}";
    /* the consumer comes back after the reconnect (or at the latest after missed heartbeats) */
    int64_t t0 = mono_ms();
    CHECK(js_Publish(NULL, js, PREFIX ".purge", p2, (int)strlen(p2), NULL, NULL) == NATS_OK);
    int got = WAIT_UNTIL(purges_seen() >= 2, 15000);
    printf("test_stream: a purge after the server's kill -9 arrived after %lld ms\n", (long long)(mono_ms() - t0));
    CHECK(got);
    sleep_ms(300);
    CHECK_INT(purges_seen(), 2);
    CHECK(strcmp(purge_got[1], p2) == 0);
    CHECK_INT(stats().purges_received, 2);
    raw_close(nc, js);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

/* Throughput: 200,000 records put and fully acknowledged; the first segment (64 MiB) is
 * deleted once the cursor passed it. */
static void test_throughput(void)
{
    char spool[256];
    CHECK(fresh("t7", spool, sizeof spool) == 0);
    CHECK(nats_start() == 0);
    CHECK(start_stream(spool, 0, NULL) == 0);
    CHECK(WAIT_UNTIL(stats().connected == 1, 5000));
    const int N = 200000, PAD = 350;
    int64_t t0 = mono_ms();
    int refused = 0;
    for (int i = 0; i < N; i++)
        refused += put_rec(i, PAD) != 0;
    int64_t t1 = mono_ms();
    int done = WAIT_UNTIL(stats().published == (uint64_t)N, 60000);
    int64_t t2 = mono_ms();
    CHECK_INT(refused, 0);
    CHECK(done);
    double secs = (double)(t2 - t0) / 1000.0;
    printf("test_stream: %d records of %llu bytes: put in %lld ms (%.0f/s), all acknowledged after %lld ms: %.0f "
           "records/s\n",
           N, (unsigned long long)rec_bytes(0, PAD), (long long)(t1 - t0),
           (double)N * 1000.0 / (double)(t1 - t0 > 0 ? t1 - t0 : 1), (long long)(t2 - t0), (double)N / secs);
    CHECK_INT(stream_msgs(), N);
    CHECK_INT(stats().spool_bytes, 0);
    char seg0[512];
    snprintf(seg0, sizeof seg0, "%s/seg-%016d", spool, 0);
    CHECK(access(seg0, F_OK) != 0);  /* rotated past and deleted */
    CHECK_INT(count_segments(spool), 1);
    gh_stream_stop();
    nats_kill(SIGTERM);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_lifecycle);
    if (!t_have("nats-server")) {
        printf("test_stream: SKIP the NATS tests: nats-server is not installed (apt-get install nats-server)\n");
        return t_done("test_stream");
    }
    if (!getenv("PATH") || !strstr(getenv("PATH"), "sbin"))
        setenv("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", 1);
    snprintf(tmproot, sizeof tmproot, "/tmp/gh-test-stream-XXXXXX");
    if (!mkdtemp(tmproot)) {
        fprintf(stderr, "test_stream: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_all_arrive);
    RUN(test_nats_down_at_start);
    RUN(test_kill9_mid_stream);
    RUN(test_restart_torn_tail);
    RUN(test_spool_max);
    RUN(test_put_many);
    RUN(test_purge);
    RUN(test_throughput);
    nats_kill(SIGKILL);
    gh_stream_stop();
    if (t_fail)
        printf("test_stream: kept %s for inspection\n", tmproot);
    else
        t_rm_rf(tmproot);
    return t_done("test_stream");
}
