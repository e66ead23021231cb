/* test_chsink.c: the ClickHouse sink (src/events/chsink.c), included to reach its statics.
 *
 * The pieces first (time parsing, the recent-id set, rows, the chunked decoder, URLs), with no
 * server. Then the sink against a real nats-server (-js) and a real clickhouse-server, each
 * started on free ephemeral loopback ports in a temp dir and killed by PID: records published
 * with a raw libnats jsCtx into a stream the test creates as stream.c would, rows read back over
 * ClickHouse's HTTP interface. Covered: 20,000 records of 3 kinds x 2 tenants, republished ids
 * (duplicates), ClickHouse killed and restarted while records arrive, the sink stopped and started
 * mid-stream, bad messages, and the SQL of docs/events.md (the CREATE statements must be the ones
 * the sink issues; the example queries are run and their answers checked against the generated
 * data). Skipped, with the reason printed, only when nats-server or clickhouse-server is missing.
 *
 * Run: make build/tests/test_chsink && build/tests/test_chsink */
#include "events/chsink.c"

#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "t.h"
#include "t_servers.h"

#define N1 20000 /* records of the first test */

/* ---------------------------------------------------------------- pieces */

static void test_parse_time(void)
{
    char buf[80];
    int64_t ms = parse_time("2026-11-23T17:26:33.123Z", 24);
    CHECK_INT(ms, 1795454793123ll);
    format_time(buf, sizeof buf, ms);
    CHECK(strcmp(buf, "2026-11-23T17:26:33.123Z") == 0);
    CHECK_INT(parse_time("2026-11-23T19:26:33.1+02:00", 27), 1795454793100ll);
    CHECK_INT(parse_time("2026-11-23 17:26:33Z", 20), 1795454793000ll);
    CHECK_INT(parse_time("2026-11-23T12:26:33.123456-0500", 31), 1795454793123ll);
    CHECK_INT(parse_time("2024-02-29T00:00:00Z", 20), 1709164800000ll);
    CHECK_INT(parse_time("2026-11-23T17:26:33.123", 23), -1); /* no zone */
    CHECK_INT(parse_time("2025-02-29T00:00:00Z", 20), -1);
    CHECK_INT(parse_time("2026-13-01T00:00:00Z", 20), -1);
    CHECK_INT(parse_time("1969-12-31T23:59:59Z", 20), -1);
    CHECK_INT(parse_time("2026-11-23T17:26:33.Z", 21), -1);
    CHECK_INT(parse_time("2026-11-23T17:26:33Zx", 21), -1);
    CHECK_INT(parse_time("yesterday, noon", 15), -1);
}

static void test_recent_set(void)
{
    recent_t r;
    CHECK(rs_init(&r, 6, 24) == 0); /* 64 slots, 24 ids: collisions and wrap-around */
    uint64_t ref[24];
    uint32_t rn = 0, rh = 0;
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t h = (x % 200) + 1; /* small range: re-adds of present ids too */
        h = id_hash("k", "t", 1, (const char *)&h, sizeof h);
        int present = 0;
        for (uint32_t k = 0; k < rn; k++)
            present |= ref[(rh + k) % 24] == h;
        if (rs_has(&r, h) != present)
            bad++;
        rs_add(&r, h);
        if (!present) {
            if (rn == 24)
                rh = (rh + 1) % 24, rn--;
            ref[(rh + rn) % 24] = h, rn++;
        }
        /* every id of the reference is found, and the set holds no more than it */
        for (uint32_t k = 0; k < rn; k++)
            if (!rs_has(&r, ref[(rh + k) % 24]))
                bad++;
        uint32_t used = 0;
        for (size_t s = 0; s < 64; s++)
            used += r.slot[s] != 0;
        if (used != rn)
            bad++;
    }
    CHECK_INT(bad, 0);
    rs_free(&r);
}

static void test_rows(void)
{
    json_t *row;
    const char *tenant, *id;
    size_t tn, idn;
    json_t *o = json_loads("{\"time\":\"2026-11-23T18:26:33.5+01:00\",\"client\":\"1.2.3.4\",\"status\":200,"
                           "\"bytes_in\":1,\"bytes_out\":2,\"upstream\":null,\"upstream_time_ms\":null,"
                           "\"request_id\":\"r1\",\"total_time_ms\":1.5,\"extra\":[1]}",
                           0, NULL);
    CHECK(make_row(&tables[T_ACCESS], o, "shop", 4, 0, &row, &tenant, &tn, &id, &idn) == 0);
    char *s = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(s && strcmp(s, "{\"bytes_in\":1,\"bytes_out\":2,\"client\":\"1.2.3.4\",\"request_id\":\"r1\",\"status\":200,"
                         "\"tenant\":\"shop\",\"time\":\"2026-11-23T17:26:33.500Z\",\"total_time_ms\":1.5,"
                         "\"upstream\":null,\"upstream_time_ms\":null}") == 0);
    if (s && !strstr(s, "\"time\":\"2026-11-23T17:26:33.500Z\""))
        fprintf(stderr, "row: %s\n", s);
    CHECK(tn == 4 && idn == 2 && !memcmp(id, "r1", 2));
    free(s);
    json_decref(row);
    json_decref(o);
    static const char *bad[] = {
        "{\"request_id\":\"r\",\"status\":\"200\"}", "{\"request_id\":\"r\",\"status\":70000}",
        "{\"request_id\":\"r\",\"bytes_in\":-1}",    "{\"request_id\":\"r\",\"total_time_ms\":\"x\"}",
        "{\"request_id\":\"r\",\"time\":\"soon\"}",  "{\"request_id\":\"\"}",
        "{\"status\":200}",                          "{\"request_id\":\"r\",\"path\":{\"a\":1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o = json_loads(bad[i], 0, NULL);
        int rc = make_row(&tables[T_ACCESS], o, "shop", 4, 0, &row, &tenant, &tn, &id, &idn);
        if (rc == 0) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            json_decref(row);
        }
        CHECK(rc < 0);
        json_decref(o);
    }
    /* an event: a payload object is kept as its JSON text, a numeric unit as text, no time: the stream's */
    o = json_loads("{\"event_id\":\"e1\",\"tenant\":\"blog\",\"unit\":42,\"payload\":{\"a\":[1,2]},\"value\":null}", 0, NULL);
    CHECK(make_row(&tables[T_EVENT], o, "x", 1, 1795454793123ll, &row, &tenant, &tn, &id, &idn) == 0);
    s = json_dumps(row, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(s && strcmp(s, "{\"event_id\":\"e1\",\"payload\":\"{\\\"a\\\":[1,2]}\",\"tenant\":\"blog\","
                         "\"time\":\"2026-11-23T17:26:33.123Z\",\"unit\":\"42\",\"value\":null}") == 0);
    free(s);
    json_decref(row);
    json_decref(o);
}

static void test_dechunk_url(void)
{
    char b[] = "5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
    size_t n = 0;
    CHECK(dechunk(b, strlen(b), &n) == 1);
    CHECK(n == 6 && !memcmp(b, "hello!", 6));
    char c[] = "5\r\nhel";
    CHECK(dechunk(c, strlen(c), &n) == 0);
    endpoint_t e;
    CHECK(parse_url(&e, "http://127.0.0.1:8123") == 0 && !strcmp(e.host, "127.0.0.1") && !strcmp(e.port, "8123") &&
          !strcmp(e.path, "/"));
    CHECK(parse_url(&e, "http://[::1]/ch/") == 0 && !strcmp(e.host, "::1") && !strcmp(e.port, "8123") &&
          !strcmp(e.path, "/ch/"));
    CHECK(parse_url(&e, "https://x") < 0);
    CHECK(parse_url(&e, "http://x:80a") < 0);
    char err[128];
    gh_chsink_conf_t cf = {.nats_url = "nats://127.0.0.1:1", .url = "http://x", .database = "bad-name"};
    CHECK(gh_chsink_start(&cf, err, sizeof err) < 0 && strstr(err, "database"));
    char m[64];
    CHECK(gh_chsink_metrics(m, sizeof m) == 0); /* never started: no families */
}

/* ---------------------------------------------------------------- servers */

static char dir[64];
static int nport, hport, tport;
static pid_t npid = -1, cpid = -1;
static endpoint_t chep;
static natsConnection *pnc;
static jsCtx *pjs;

static pid_t spawn(char *const argv[])
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        char path[4096];
        snprintf(path, sizeof path, "%s:/usr/sbin:/usr/bin:/sbin:/bin", getenv("PATH") ? getenv("PATH") : "");
        setenv("PATH", path, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void kill_wait(pid_t *pid)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = -1;
}

static int nats_start(void)
{
    char port[16], sd[128];
    snprintf(port, sizeof port, "%d", nport);
    snprintf(sd, sizeof sd, "%s/js", dir);
    char *argv[] = {"nats-server", "-js", "-sd", sd, "-a", "127.0.0.1", "-p", port, NULL};
    npid = spawn(argv);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nport);
    for (int i = 0; i < 250; i++) {
        natsConnection *nc = NULL;
        if (natsConnection_ConnectTo(&nc, url) == NATS_OK) {
            natsConnection_Destroy(nc);
            return 0;
        }
        if (waitpid(npid, NULL, WNOHANG) == npid) {
            npid = -1;
            return -1;
        }
        t_sleep_ms(20);
    }
    return -1;
}

/* The body of a query's answer (malloc'd), or NULL when it did not answer 200. */
static char *chq(const char *sql)
{
    char *full = NULL, ans[256];
    size_t n = 0;
    int st = http_post(&chep, NULL, sql, strlen(sql), ans, sizeof ans, &full, &n);
    if (st != 200) {
        if (st > 0)
            fprintf(stderr, "clickhouse %d: %s\n(%s)\n", st, ans, sql);
        free(full);
        return NULL;
    }
    return full;
}

static long long chn(const char *sql)
{
    char *a = chq(sql);
    long long v = a && *a ? atoll(a) : -1;
    free(a);
    return v;
}

static int ch_start(void)
{
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s/ch/config.xml", dir);
    char arg[200];
    snprintf(arg, sizeof arg, "--config-file=%s", cfg);
    char *argv[] = {"clickhouse-server", arg, NULL};
    cpid = spawn(argv);
    for (int i = 0; i < 600; i++) { /* up to 60 s */
        char *a = chq("SELECT 1");
        int ok = a && !strcmp(a, "1\n");
        free(a);
        if (ok)
            return 0;
        if (waitpid(cpid, NULL, WNOHANG) == cpid) {
            cpid = -1;
            return -1;
        }
        t_sleep_ms(100);
    }
    return -1;
}

static int ch_setup(void)
{
    char p[160];
    snprintf(p, sizeof p, "%s/ch", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/ch/config.xml", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fprintf(f,
            "<yandex><logger><level>warning</level><log>%s/ch/log</log><errorlog>%s/ch/err</errorlog>"
            "<console>0</console></logger>\n<http_port>%d</http_port><tcp_port>%d</tcp_port>"
            "<listen_host>127.0.0.1</listen_host>\n<path>%s/ch/data/</path><tmp_path>%s/ch/tmp/</tmp_path>"
            "<user_files_path>%s/ch/uf/</user_files_path>\n<users_config>users.xml</users_config>"
            "<default_profile>default</default_profile><default_database>default</default_database>\n"
            "<mark_cache_size>5368709</mark_cache_size><uncompressed_cache_size>8589934</uncompressed_cache_size>"
            "</yandex>\n",
            dir, dir, hport, tport, dir, dir, dir);
    fclose(f);
    snprintf(p, sizeof p, "%s/ch/users.xml", dir);
    if (!(f = fopen(p, "w")))
        return -1;
    fprintf(f, "<yandex><profiles><default></default></profiles><users><default><password></password>"
               "<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>"
               "</users><quotas><default></default></quotas></yandex>\n");
    fclose(f);
    snprintf(chep.host, sizeof chep.host, "127.0.0.1");
    snprintf(chep.port, sizeof chep.port, "%d", hport);
    snprintf(chep.path, sizeof chep.path, "/");
    return 0;
}

/* ---------------------------------------------------------------- records */

static int64_t base_ms; /* the first record's time: a whole minute, an hour ago */

typedef struct {
    /* what the first test's records must give */
    long long rows[T_N][2];             /* per table, per tenant (0 shop, 1 blog) */
    long long shop_5xx, shop_hits, shop_cacheable, shop_paths[7];
    int64_t first_exp[300];             /* shop, flag checkout: per unit, ms (0: none) */
    int first_var[300];                 /* 1 = "on" */
    int64_t last_purchase[400];         /* shop, purchase: per unit, ms (0: none) */
} expect_t;
static expect_t X;

static const char *const tenants[2] = {"shop", "blog"};

/* Record number i: its kind, tenant and id, its JSON in out. Record kinds cycle access, exposure,
 * event; tenants alternate every three. */
static void record(long i, int *kind, int *ten, char *id, size_t idcap, char *out, size_t cap, expect_t *x)
{
    int k = (int)(i % 3), tn = (int)((i / 3) % 2);
    long j = i / 3;
    int64_t ms = base_ms + i * 10;
    char tm[80];
    format_time(tm, sizeof tm, ms);
    *kind = k, *ten = tn;
    if (k == T_ACCESS) {
        int status = j % 10 == 0 ? 503 : 200, path = (int)(j % 7);
        const char *cache = j / 2 % 4 == 0 ? "hit" : j / 2 % 4 == 1 ? "miss" : NULL;
        int up = j % 5 != 0;
        snprintf(id, idcap, "r%ld", i);
        snprintf(out, cap,
                 "{\"time\":\"%s\",\"client\":\"10.0.%ld.%ld\",\"tenant\":\"%s\",\"route\":\"main\",\"method\":\"GET\","
                 "\"host\":\"%s.example\",\"path\":\"/p%d\",\"query\":\"a=%ld\",\"status\":%d,\"bytes_in\":%ld,"
                 "\"bytes_out\":%ld,\"upstream\":%s,\"upstream_time_ms\":%s,\"request_id\":\"%s\",\"proto\":\"HTTP/1.1\""
                 "%s%s%s%s,\"total_time_ms\":%ld.5}",
                 tm, j / 256 % 256, j % 256, tenants[tn], tenants[tn], path, j, status, j * 3, j * 7,
                 up ? "\"app\"" : "null", up ? "1.25" : "null", id,
                 j % 2 ? ",\"tls\":\"TLSv1.3\",\"ja4\":\"t13d1516h2_8daaf6152771_e5627efa2ab1\"" : "",
                 cache ? ",\"cache\":\"" : "", cache ? cache : "", cache ? "\"" : "", j % 100);
        if (x && tn == 0) {
            x->shop_5xx += status >= 500;
            x->shop_hits += cache && !strcmp(cache, "hit");
            x->shop_cacheable += cache != NULL;
            x->shop_paths[path]++;
        }
    } else if (k == T_EXPOSURE) {
        int unit = (int)(j % 300), on = unit / 2 % 2, checkout = j % 5 != 0;
        snprintf(id, idcap, "x%ld", i);
        snprintf(out, cap,
                 "{\"time\":\"%s\",\"tenant\":\"%s\",\"route\":\"main\",\"flag\":\"%s\",\"variant\":\"%s\","
                 "\"reason\":\"SPLIT\",\"unit\":\"u%d\",\"request_id\":\"%s\"}",
                 tm, tenants[tn], checkout ? "checkout" : "other", on ? "on" : "off", unit, id);
        if (x && tn == 0 && checkout && !x->first_exp[unit]) {
            x->first_exp[unit] = ms;
            x->first_var[unit] = on;
        }
    } else {
        int unit = (int)(j * 7 % 400), purchase = j % 3 == 0 && unit / 4 % 3 != 0;
        snprintf(id, idcap, "e%ld", i);
        char val[32];
        if (j % 4 == 0)
            snprintf(val, sizeof val, "null");
        else
            snprintf(val, sizeof val, "%ld", j);
        snprintf(out, cap,
                 "{\"time\":\"%s\",\"tenant\":\"%s\",\"event_id\":\"%s\",\"name\":\"%s\",\"unit\":\"u%d\",\"value\":%s,"
                 "\"payload\":\"{\\\"j\\\":%ld}\"}",
                 tm, tenants[tn], id, purchase ? "purchase" : "view", unit, val, j);
        if (x && tn == 0 && purchase && ms > x->last_purchase[unit])
            x->last_purchase[unit] = ms;
    }
    if (x)
        x->rows[k][tn]++;
}

static int pub_raw(const char *subj, const char *data, const char *msgid)
{
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subj, NULL, data, (int)strlen(data)) != NATS_OK)
        return -1;
    if (msgid)
        natsMsgHeader_Set(m, "Nats-Msg-Id", msgid);
    jsPubAck *pa = NULL;
    natsStatus s = js_PublishMsg(&pa, pjs, m, NULL, NULL);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s == NATS_OK ? 0 : -1;
}

static const char *kinds[T_N] = {"access", "exposure", "event"};

/* Publish records [from, to): 0 or the number that failed. */
static int publish(long from, long to, int with_id, expect_t *x)
{
    int fails = 0;
    for (long i = from; i < to; i++) {
        int k, tn;
        char id[32], json[2048], subj[64], mid[64];
        record(i, &k, &tn, id, sizeof id, json, sizeof json, x);
        snprintf(subj, sizeof subj, "ght.%s.%s", kinds[k], tenants[tn]);
        snprintf(mid, sizeof mid, "%s:%s:%s", kinds[k], tenants[tn], id);
        fails += pub_raw(subj, json, with_id ? mid : NULL) < 0;
    }
    return fails;
}

static const char *tables_sql[T_N] = {"access", "exposures", "events"};
static const char *idcols[T_N] = {"request_id", "request_id", "event_id"};

/* Rows of all tables (FINAL), or -1. */
static long long total_rows(void)
{
    long long sum = 0;
    for (int t = 0; t < T_N; t++) {
        char q[160];
        snprintf(q, sizeof q, "SELECT count() FROM gatehouse.%s FINAL", tables_sql[t]);
        long long n = chn(q);
        if (n < 0)
            return -1;
        sum += n;
    }
    return sum;
}

/* Wait up to secs for total_rows() == want; the last count. */
static long long wait_rows(long long want, int secs)
{
    long long n = -1;
    for (int i = 0; i < secs * 5; i++) {
        n = total_rows();
        if (n == want)
            break;
        t_sleep_ms(200);
    }
    return n;
}

/* Every table: count() FINAL and uniqExact(id) both equal the records published. */
static void check_exact(long long records)
{
    long long sum = 0, uniq = 0;
    for (int t = 0; t < T_N; t++) {
        char q[200];
        snprintf(q, sizeof q, "SELECT count() FROM gatehouse.%s FINAL", tables_sql[t]);
        sum += chn(q);
        snprintf(q, sizeof q, "SELECT uniqExact(tenant, %s) FROM gatehouse.%s", idcols[t], tables_sql[t]);
        uniq += chn(q);
    }
    CHECK_INT(sum, records);
    CHECK_INT(uniq, records);
}

static gh_chsink_conf_t sink_conf(void)
{
    static char nurl[64], curl[64];
    snprintf(nurl, sizeof nurl, "nats://127.0.0.1:%d", nport);
    snprintf(curl, sizeof curl, "http://127.0.0.1:%d", hport);
    return (gh_chsink_conf_t){.nats_url = nurl, .stream = "GHT", .prefix = "ght", .consumer = "gh-ch-test",
                              .url = curl, .database = "gatehouse", .batch = 5000, .flush_ms = 200};
}

static void sink_start(void)
{
    gh_chsink_conf_t c = sink_conf();
    char err[256] = "";
    int rc = gh_chsink_start(&c, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "gh_chsink_start: %s\n", err);
    CHECK(rc == 0);
}

/* ---------------------------------------------------------------- with servers */

static long published; /* records [0, published) are out */

/* 1. 20,000 records, 3 kinds x 2 tenants: every row, with the right values. */
static void test_load(void)
{
    memset(&X, 0, sizeof X);
    CHECK_INT(publish(0, N1, 1, &X), 0);
    published = N1;
    CHECK_INT(wait_rows(N1, 90), N1);
    for (int t = 0; t < T_N; t++)
        for (int tn = 0; tn < 2; tn++) {
            char q[200];
            snprintf(q, sizeof q, "SELECT count() FROM gatehouse.%s FINAL WHERE tenant = '%s'", tables_sql[t],
                     tenants[tn]);
            CHECK_INT(chn(q), X.rows[t][tn]);
        }
    /* spot checks: one row per table, every column compared */
    char *a = chq("SELECT * FROM gatehouse.access WHERE request_id = 'r30' FORMAT JSONEachRow");
    int k, tn;
    char id[32], json[2048];
    record(30, &k, &tn, id, sizeof id, json, sizeof json, NULL);
    json_t *got = a ? json_loads(a, 0, NULL) : NULL, *want = json_loads(json, 0, NULL);
    /* ClickHouse writes absent strings as "" and UInt64 as JSON numbers here */
    json_object_set_new(want, "cache", json_string("miss")); /* j = 10 */
    json_object_set_new(want, "flag", json_string(""));
    json_object_set_new(want, "variant", json_string(""));
    json_object_set_new(want, "protect_reason", json_string(""));
    json_object_set_new(want, "protect_action", json_string(""));
    json_object_set_new(want, "protect_detail", json_string(""));
    json_object_set_new(want, "tls", json_string(""));
    json_object_set_new(want, "ja4", json_string(""));
    /* 64-bit integers come back quoted (output_format_json_quote_64bit_integers) */
    json_object_set_new(want, "bytes_in", json_string("30"));
    json_object_set_new(want, "bytes_out", json_string("70"));
    if (!got || !json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS) : NULL, *w = json_dumps(want, JSON_SORT_KEYS);
        fprintf(stderr, "r30: got %s\n want %s\n", g ? g : a ? a : "(none)", w);
        free(g), free(w);
        CHECK(0);
    }
    json_decref(got), json_decref(want), free(a);
    a = chq("SELECT time, ts, upstream, upstream_time_ms, tls FROM gatehouse.access WHERE request_id = 'r3' "
            "FORMAT TabSeparated");
    char tm[80], ts[80], line[256];
    format_time(tm, sizeof tm, base_ms + 30);
    time_t sec = (time_t)((base_ms + 30) / 1000);
    struct tm g;
    gmtime_r(&sec, &g);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &g);
    snprintf(line, sizeof line, "%s\t%s\tapp\t1.25\tTLSv1.3\n", tm, ts);
    CHECK(a && !strcmp(a, line));
    if (a && strcmp(a, line))
        fprintf(stderr, "r3: %s want %s", a, line);
    free(a);
    a = chq("SELECT time, tenant, route, flag, variant, reason, unit, request_id FROM gatehouse.exposures "
            "WHERE request_id = 'x4' FORMAT TabSeparated");
    format_time(tm, sizeof tm, base_ms + 40);
    snprintf(line, sizeof line, "%s\tblog\tmain\tcheckout\toff\tSPLIT\tu1\tx4\n", tm);
    CHECK(a && !strcmp(a, line));
    free(a);
    a = chq("SELECT tenant, event_id, name, unit, value, payload FROM gatehouse.events WHERE event_id IN ('e2', 'e5') "
            "ORDER BY event_id FORMAT TabSeparated");
    CHECK(a && !strcmp(a, "shop\te2\tview\tu0\t\\N\t{\"j\":0}\nblog\te5\tview\tu7\t1\t{\"j\":1}\n"));
    if (a && strcmp(a, "shop\te2\tview\tu0\t\\N\t{\"j\":0}\nblog\te5\tview\tu7\t1\t{\"j\":1}\n"))
        fprintf(stderr, "events: %s", a);
    free(a);
    gh_chsink_stats_t s;
    gh_chsink_stats(&s);
    CHECK(s.connected == 1);
    CHECK_INT(s.inserted, N1);
    CHECK_INT(s.bad, 0);
    printf("load: %d records, fetched %llu, inserted %llu\n", N1, (unsigned long long)s.fetched,
           (unsigned long long)s.inserted);
}

/* 2. The same ids again, as new messages (no Nats-Msg-Id, so JetStream keeps them). */
static void test_duplicates(void)
{
    gh_chsink_stats_t s0, s;
    gh_chsink_stats(&s0);
    CHECK_INT(publish(0, N1, 0, NULL), 0);
    for (int i = 0; i < 300; i++) {
        gh_chsink_stats(&s);
        if (s.duplicates - s0.duplicates >= N1)
            break;
        t_sleep_ms(100);
    }
    CHECK_INT(s.duplicates - s0.duplicates, N1);
    CHECK_INT(s.inserted - s0.inserted, 0);
    check_exact(N1);
    CHECK_INT(chn("SELECT count() FROM gatehouse.access"), X.rows[T_ACCESS][0] + X.rows[T_ACCESS][1]);
}

/* 3. ClickHouse killed while records arrive, then started again: nothing lost. */
static void test_clickhouse_down(void)
{
    gh_chsink_stats_t s0, s;
    gh_chsink_stats(&s0);
    kill_wait(&cpid);
    CHECK_INT(publish(published, published + 3000, 1, NULL), 0);
    published += 3000;
    for (int i = 0; i < 100; i++) {
        gh_chsink_stats(&s);
        if (s.insert_errors > s0.insert_errors)
            break;
        t_sleep_ms(100);
    }
    CHECK(s.insert_errors > s0.insert_errors);
    CHECK(s.inserted == s0.inserted);
    CHECK_INT(publish(published, published + 3000, 1, NULL), 0); /* more while it is down */
    published += 3000;
    CHECK(ch_start() == 0);
    CHECK_INT(wait_rows(published, 90), published);
    check_exact(published);
    gh_chsink_stats(&s);
    printf("clickhouse down: insert errors %llu\n", (unsigned long long)(s.insert_errors - s0.insert_errors));
}

static void *publisher(void *arg)
{
    long *n = arg;
    for (long i = 0; i < 6; i++) {
        if (publish(published + i * 1000, published + (i + 1) * 1000, 1, NULL))
            (*n)++;
        t_sleep_ms(100);
    }
    return NULL;
}

/* 4. The sink stopped and started while records arrive: nothing lost, nothing doubled. */
static void test_restart(void)
{
    long fails = 0;
    pthread_t th;
    pthread_create(&th, NULL, publisher, &fails);
    t_sleep_ms(250);
    gh_chsink_stop();
    t_sleep_ms(300);
    sink_start();
    t_sleep_ms(150);
    gh_chsink_stop(); /* twice */
    sink_start();
    pthread_join(th, NULL);
    CHECK_INT(fails, 0);
    published += 6000;
    CHECK_INT(wait_rows(published, 90), published);
    check_exact(published);
}

/* 5. Bad messages are counted, acknowledged and dropped; the records after them go in. */
static void test_bad(void)
{
    gh_chsink_stats_t s0, s;
    gh_chsink_stats(&s0);
    CHECK(pub_raw("ght.access.shop", "not json", NULL) == 0);
    CHECK(pub_raw("ght.access.shop", "[1,2]", NULL) == 0);
    CHECK(pub_raw("ght.weird.shop", "{\"request_id\":\"w1\"}", NULL) == 0);
    CHECK(pub_raw("ght.access.shop", "{\"request_id\":\"w2\",\"status\":\"ok\"}", NULL) == 0);
    CHECK(pub_raw("ght.event.shop", "{\"event_id\":\"w3\",\"time\":\"2026-11-23T17:26:33\"}", NULL) == 0); /* no zone */
    CHECK(pub_raw("ght.purge", "{\"tenant\":\"shop\",\"kind\":\"tag\",\"values\":[\"a\"],\"node\":\"n2\"}", NULL) == 0);
    CHECK_INT(publish(published, published + 300, 1, NULL), 0);
    published += 300;
    CHECK_INT(wait_rows(published, 60), published);
    for (int i = 0; i < 50; i++) {
        gh_chsink_stats(&s);
        if (s.bad - s0.bad >= 5)
            break;
        t_sleep_ms(100);
    }
    CHECK_INT(s.bad - s0.bad, 5);
    CHECK_INT(chn("SELECT count() FROM gatehouse.access WHERE request_id LIKE 'w%'"), 0);
    char m[4096];
    size_t n = gh_chsink_metrics(m, sizeof m);
    CHECK(n > 0 && n == strlen(m));
    char want[128];
    snprintf(want, sizeof want, "\ngatehouse_clickhouse_bad_total %llu\n", (unsigned long long)s.bad);
    CHECK(strstr(m, want) != NULL);
    CHECK(strstr(m, "\ngatehouse_clickhouse_connected 1\n") != NULL);
    CHECK(strstr(m, "# TYPE gatehouse_clickhouse_inserted_total counter\n") != NULL);
}

/* Whitespace runs as one space, ends trimmed. */
static void squeeze(char *s)
{
    char *o = s;
    int sp = 0;
    for (char *p = s; *p; p++) {
        if (isspace((unsigned char)*p)) {
            sp = o != s;
        } else {
            if (sp)
                *o++ = ' ';
            sp = 0;
            *o++ = *p;
        }
    }
    *o = 0;
}

/* 6. docs/events.md: its CREATE statements are the sink's, its queries give the right answers. */
static void test_docs(void)
{
    FILE *f = fopen("docs/events.md", "r");
    if (!f)
        f = fopen("../docs/events.md", "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char doc[65536];
    size_t dn = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[dn] = 0;
    char *blocks[16];
    int nb = 0;
    for (char *p = doc; nb < 16 && (p = strstr(p, "```sql\n"));) {
        p += 7;
        char *e = strstr(p, "```");
        if (!e)
            break;
        *e = 0;
        blocks[nb++] = p;
        p = e + 3;
    }
    /* the DDL: the database, then the three tables, as the sink sends them */
    int ddl = 0;
    for (int b = 0; b < nb; b++) {
        if (strncmp(blocks[b], "CREATE", 6))
            continue;
        char mine[4096];
        if (ddl == 0)
            snprintf(mine, sizeof mine, DDL_DATABASE, "gatehouse");
        else if (ddl <= T_N)
            snprintf(mine, sizeof mine, tables[ddl - 1].ddl, "gatehouse");
        else if (ddl == T_N + 1)
            snprintf(mine, sizeof mine, ddl_security, "gatehouse", "gatehouse");
        else
            mine[0] = 0;
        char theirs[4096];
        snprintf(theirs, sizeof theirs, "%s", blocks[b]);
        squeeze(theirs), squeeze(mine);
        if (strcmp(theirs, mine))
            fprintf(stderr, "docs DDL %d differs:\n%s\n%s\n", ddl, theirs, mine);
        CHECK(!strcmp(theirs, mine));
        ddl++;
    }
    CHECK_INT(ddl, 2 + T_N); /* the database, the tables, the security view */
    /* the queries, in the order of the page, over the first test's records (and those since, of
     * other ids: the expectations below are recomputed over every record published) */
    expect_t all;
    memset(&all, 0, sizeof all);
    for (long i = 0; i < published; i++) {
        int k, tn;
        char id[32], json[2048];
        record(i, &k, &tn, id, sizeof id, json, sizeof json, &all);
    }
    int q = 0;
    for (int b = 0; b < nb; b++) {
        if (!strncmp(blocks[b], "CREATE", 6))
            continue;
        char *a = chq(blocks[b]);
        CHECK(a != NULL);
        if (!a)
            continue;
        char want[4096];
        size_t w = 0;
        want[0] = 0;
        switch (q) {
        case 0: { /* per tenant per minute: the sums over minutes are the tenants' requests and 5xx */
            long long req[2] = {0}, n5[2] = {0}, lines = 0;
            for (char *l = a; *l;) {
                char t[32];
                long long r;
                double er;
                if (sscanf(l, "%31s %*s %*s %lld %lf", t, &r, &er) == 3) {
                    int ti = !strcmp(t, "blog");
                    req[ti] += r, n5[ti] += (long long)(er * r + 0.5), lines++;
                }
                l = strchr(l, '\n');
                l = l ? l + 1 : a + strlen(a);
            }
            CHECK_INT(req[0], all.rows[T_ACCESS][0]);
            CHECK_INT(req[1], all.rows[T_ACCESS][1]);
            CHECK_INT(n5[0], all.shop_5xx);
            CHECK(lines >= 4); /* the records span several minutes */
            break;
        }
        case 1: /* top paths of shop */
            for (int r = 0; r < 7; r++) {
                int best = -1;
                for (int p = 0; p < 7; p++)
                    if (all.shop_paths[p] >= 0 && (best < 0 || all.shop_paths[p] > all.shop_paths[best]))
                        best = p;
                w += (size_t)snprintf(want + w, sizeof want - w, "/p%d\t%lld\n", best, all.shop_paths[best]);
                all.shop_paths[best] = -1;
            }
            CHECK(!strcmp(a, want));
            break;
        case 2: { /* p99: total_time_ms is j % 100 + 0.5, uniform over 0.5 .. 99.5 */
            char t[2][32];
            double p[2];
            long long n[2];
            CHECK(sscanf(a, "%31s %lf %lld %31s %lf %lld", t[0], &p[0], &n[0], t[1], &p[1], &n[1]) == 6);
            CHECK(!strcmp(t[0], "blog") && !strcmp(t[1], "shop"));
            CHECK(p[0] >= 97.5 && p[0] <= 99.5 && p[1] >= 97.5 && p[1] <= 99.5);
            CHECK_INT(n[1], all.rows[T_ACCESS][0]);
            break;
        }
        case 3: { /* cache hit ratio */
            char t[32];
            long long hits, cacheable;
            const char *shop = strstr(a, "shop\t");
            CHECK(shop && sscanf(shop, "%31s %lld %lld", t, &hits, &cacheable) == 3);
            CHECK_INT(hits, all.shop_hits);
            CHECK_INT(cacheable, all.shop_cacheable);
            break;
        }
        case 4: { /* the experiment */
            long long units[2] = {0}, conv[2] = {0};
            for (int u = 0; u < 300; u++)
                if (all.first_exp[u]) {
                    units[all.first_var[u]]++;
                    conv[all.first_var[u]] += all.last_purchase[u] >= all.first_exp[u];
                }
            for (int v = 0; v < 2; v++) {
                char r[32];
                double c = (double)conv[v] / (double)units[v];
                snprintf(r, sizeof r, "%.4f", c);
                /* ClickHouse's round() prints without trailing zeros */
                for (char *e = r + strlen(r) - 1; *e == '0'; e--)
                    *e = 0;
                if (r[strlen(r) - 1] == '.')
                    r[strlen(r) - 1] = 0;
                w += (size_t)snprintf(want + w, sizeof want - w, "%s\t%lld\t%lld\t%s\n", v ? "on" : "off", units[v],
                                      conv[v], r);
            }
            CHECK(units[0] > 0 && conv[0] > 0 && conv[0] < units[0]); /* a test that can fail */
            CHECK(!strcmp(a, want));
            break;
        }
        }
        if (q == 1 || q == 4)
            if (strcmp(a, want))
                fprintf(stderr, "docs query %d:\n%s\nwant:\n%s\n", q, a, want);
        printf("docs query %d:\n%s", q, q == 0 ? "(per minute rows)\n" : a);
        free(a);
        q++;
    }
    CHECK_INT(q, 5);
}

static int up; /* the servers run and the stream exists */

static void test_servers(void)
{
    snprintf(dir, sizeof dir, "/tmp/gh-chsink-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    nport = t_free_port(), hport = t_free_port(), tport = t_free_port();
    CHECK(nats_start() == 0);
    CHECK(ch_setup() == 0 && ch_start() == 0);
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", nport);
    int ok = npid > 0 && cpid > 0 && natsConnection_ConnectTo(&pnc, url) == NATS_OK &&
             natsConnection_JetStream(&pjs, pnc, NULL) == NATS_OK;
    if (ok) { /* the stream, as stream.c makes it */
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        const char *subjects[] = {"ght.>"};
        sc.Name = "GHT";
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Duplicates = 120ll * 1000000000ll;
        jsStreamInfo *si = NULL;
        ok = js_AddStream(&si, pjs, &sc, NULL, NULL) == NATS_OK;
        jsStreamInfo_Destroy(si);
    }
    CHECK(ok);
    up = ok;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(test_parse_time);
    RUN(test_recent_set);
    RUN(test_rows);
    RUN(test_dechunk_url);
    if (!t_have("nats-server") || !t_have("clickhouse-server")) {
        printf("test_chsink: SKIP the server tests: %s is not installed\n",
               t_have("nats-server") ? "clickhouse-server" : "nats-server");
        return t_done("test_chsink");
    }
    RUN(test_servers);
    if (up) {
        base_ms = ((int64_t)now_ms(CLOCK_REALTIME) / 60000 - 60) * 60000;
        sink_start();
        RUN(test_load);
        RUN(test_duplicates);
        RUN(test_clickhouse_down);
        RUN(test_restart);
        RUN(test_bad);
        RUN(test_docs);
        gh_chsink_stop();
    }
    if (pjs)
        jsCtx_Destroy(pjs);
    if (pnc)
        natsConnection_Destroy(pnc);
    kill_wait(&cpid);
    kill_wait(&npid);
    if (dir[0] && strcmp(dir, "/tmp/gh-chsink-XXXXXX"))
        nftw(dir, t_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return t_done("test_chsink");
}
