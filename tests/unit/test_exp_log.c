/* test_exp_log.c: the experiments' durable log (src/experiments/evlog.c) and the pipeline's use
 * of it (src/experiments/exp.c): a torn tail is cut, a CRC mismatch before the tail is refused,
 * a restart replays to the same aggregates, eventIds stay duplicates across a restart (and a
 * torn tail), and a store of the previous version (SQLite rows) is migrated into the log.
 * Runs the real pipeline thread in-process with a store in a fresh temp directory. */
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "config/config.h"
#include "core/crc32c.h"
#include "experiments/evlog.h"
#include "experiments/exp.h"

static char dir[256];

static long long fsize(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static int frames_seen;
static int count_frame(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    frames_seen++;
    return !(n == 5 + (size_t)(frames_seen - 1) && p[0] == 'f');
}

static void write_frames(const char *path, int k)
{
    gh_evlog_t *l = NULL;
    char err[256];
    CHECK_INT(gh_evlog_open(&l, path, NULL, err, sizeof err), 0);
    for (int i = 0; l && i < k; i++) {
        uint8_t *p = gh_evlog_put(l, 5 + (size_t)i);
        memset(p, 'f', 5 + (size_t)i);
        CHECK_INT(gh_evlog_flush(l, i == k - 1), 0);
    }
    gh_evlog_close(l);
}

static void test_torn_tail_is_cut(void)
{
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/torn.evlog", dir);
    write_frames(path, 3);
    long long good = fsize(path);
    CHECK_INT(good, 8 + 3 * 8 + 5 + 6 + 7);
    /* a fourth frame cut in its payload, as by a crash in the middle of the append */
    int fd = open(path, O_WRONLY | O_APPEND);
    uint8_t torn[8 + 4] = {100, 0, 0, 0, 1, 2, 3, 4, 'x', 'y', 'z', 'w'};
    CHECK_INT(write(fd, torn, sizeof torn), (long)sizeof torn);
    close(fd);
    gh_evlog_t *l = NULL;
    gh_evlog_stat_t st;
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.torn_bytes, sizeof torn);
    CHECK_INT(st.frames, 3);
    CHECK_INT(fsize(path), good);
    frames_seen = 0;
    CHECK_INT(gh_evlog_replay(l, count_frame, NULL), 0);
    CHECK_INT(frames_seen, 3);
    gh_evlog_close(l);
    /* zeros after the last frame (the file system extended the file, the data never came) */
    fd = open(path, O_WRONLY | O_APPEND);
    static const uint8_t zeros[4096];
    CHECK_INT(write(fd, zeros, sizeof zeros), (long)sizeof zeros);
    close(fd);
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.torn_bytes, sizeof zeros);
    CHECK_INT(fsize(path), good);
    gh_evlog_close(l);
    /* a header cut short (5 bytes of 8) */
    fd = open(path, O_WRONLY | O_APPEND);
    CHECK_INT(write(fd, torn, 5), 5);
    close(fd);
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.torn_bytes, 5);
    CHECK_INT(fsize(path), good);
    gh_evlog_close(l);
}

static void test_crc_mismatch(void)
{
    char path[300], err[256] = "";
    snprintf(path, sizeof path, "%s/crc.evlog", dir);
    write_frames(path, 3);
    long long good = fsize(path);
    /* a flipped bit in the first frame's payload: acknowledged frames follow, so it is corruption */
    int fd = open(path, O_RDWR);
    uint8_t c;
    CHECK_INT(pread(fd, &c, 1, 8 + 8 + 2), 1);
    c ^= 0x10;
    CHECK_INT(pwrite(fd, &c, 1, 8 + 8 + 2), 1);
    gh_evlog_t *l = NULL;
    CHECK(gh_evlog_open(&l, path, NULL, err, sizeof err) < 0);
    CHECK(l == NULL);
    CHECK(strstr(err, "CRC") && strstr(err, "corrupt") && strstr(err, "offset 8 "));
    CHECK_INT(fsize(path), good); /* nothing cut */
    /* restored, then a flipped bit in the last frame: a torn tail (e.g. zeros after a power loss) */
    c ^= 0x10;
    CHECK_INT(pwrite(fd, &c, 1, 8 + 8 + 2), 1);
    CHECK_INT(pread(fd, &c, 1, good - 1), 1);
    c ^= 0x01;
    CHECK_INT(pwrite(fd, &c, 1, good - 1), 1);
    close(fd);
    gh_evlog_stat_t st;
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.frames, 2);
    CHECK_INT(st.torn_bytes, 8 + 7);
    gh_evlog_close(l);
    /* not a log at all */
    snprintf(path, sizeof path, "%s/junk.evlog", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_INT(write(fd, "SQLite format 3\0", 16), 16);
    close(fd);
    CHECK(gh_evlog_open(&l, path, NULL, err, sizeof err) < 0);
    CHECK(strstr(err, "magic") != NULL);
}

/* CRC-32C: the standard check value, the instruction and the table agree on every length and
 * alignment, and a CRC continues over parts. */
static void test_crc32c(void)
{
    CHECK_INT(gh_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_INT(gh_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    CHECK_INT(gh_crc32c(0, "", 0), 0);
    static const uint8_t zeros[32]; /* RFC 3720 B.4: 32 bytes of zeros */
    CHECK_INT(gh_crc32c(0, zeros, sizeof zeros), 0x8A9136AAu);
    uint8_t buf[600];
    uint32_t seed = 12345;
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)((seed = seed * 1103515245u + 12345u) >> 16);
    int bad = 0;
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; off + n <= sizeof buf; n += n < 40 ? 1 : 37) {
            uint32_t a = gh_crc32c(0, buf + off, n), b = gh_crc32c_sw(0, buf + off, n);
            size_t k = n / 3;
            uint32_t c = gh_crc32c(gh_crc32c(0, buf + off, k), buf + off + k, n - k);
            uint32_t d = gh_crc32c_sw(gh_crc32c_sw(0, buf + off, k), buf + off + k, n - k);
            bad += a != b || a != c || a != d;
        }
    CHECK_INT(bad, 0);
}

/* A new log is version 2: magic GHXLOG2 and each frame's CRC the CRC-32C of its length and payload. */
static void test_new_log_is_crc32c(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/v2.evlog", dir);
    write_frames(path, 1);
    uint8_t b[8 + 8 + 5];
    int fd = open(path, O_RDONLY);
    CHECK_INT(read(fd, b, sizeof b), (long)sizeof b);
    close(fd);
    CHECK(memcmp(b, "GHXLOG2\n", 8) == 0);
    uint32_t want = gh_crc32c_sw(gh_crc32c_sw(0, b + 8, 4), b + 16, 5), got;
    memcpy(&got, b + 12, 4);
    CHECK_INT(got, want);
}

/* A log of version 1 (zlib's CRC-32, as written before) is read, and appended to as version 1. */
static void test_version1_log(void)
{
    char path[300], err[256];
    snprintf(path, sizeof path, "%s/v1.evlog", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_INT(write(fd, "GHXLOG1\n", 8), 8);
    for (int i = 0; i < 2; i++) { /* frames 'fffff' and 'ffffff', as count_frame expects */
        uint8_t f[8 + 6];
        uint32_t n = 5 + (uint32_t)i;
        memcpy(f, &n, 4);
        memset(f + 8, 'f', n);
        uint32_t c = (uint32_t)crc32(crc32(0L, f, 4), f + 8, n);
        memcpy(f + 4, &c, 4);
        CHECK_INT(write(fd, f, 8 + n), (long)(8 + n));
    }
    close(fd);
    gh_evlog_t *l = NULL;
    gh_evlog_stat_t st;
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.frames, 2);
    CHECK_INT(st.torn_bytes, 0);
    uint8_t *p = l ? gh_evlog_put(l, 7) : NULL;
    if (p)
        memset(p, 'f', 7);
    CHECK_INT(l ? gh_evlog_flush(l, 1) : -1, 0);
    gh_evlog_close(l);
    l = NULL;
    CHECK_INT(gh_evlog_open(&l, path, &st, err, sizeof err), 0);
    CHECK_INT(st.frames, 3);
    frames_seen = 0;
    CHECK_INT(l ? gh_evlog_replay(l, count_frame, NULL) : -1, 0);
    CHECK_INT(frames_seen, 3);
    gh_evlog_close(l);
    char m[8];
    fd = open(path, O_RDONLY);
    CHECK_INT(read(fd, m, 8), 8);
    close(fd);
    CHECK(memcmp(m, "GHXLOG1\n", 8) == 0);
}

/* ---- the pipeline over the log ---- */

#include "exp_yaml.h" /* YAML: the configuration of these tests (the store in a directory: %s) */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int answered, last_status;
static char last_body[4096];

static void on_done(void *arg, int status, const char *body, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    last_status = status;
    snprintf(last_body, sizeof last_body, "%.*s", (int)len, body);
    answered++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

/* Publish body and wait for the answer: its parsed JSON (the caller's), or NULL. */
static json_t *publish(const gh_conf_tenant_t *t, const char *body)
{
    int st = 0;
    char err[256];
    pthread_mutex_lock(&mu);
    int want = answered + 1;
    pthread_mutex_unlock(&mu);
    if (gh_exp_publish(0, t, body, strlen(body), on_done, NULL, &st, err, sizeof err) < 0) {
        fprintf(stderr, "publish: %d %s\n", st, err);
        return NULL;
    }
    pthread_mutex_lock(&mu);
    while (answered < want)
        pthread_cond_wait(&cv, &mu);
    json_t *j = last_status == 200 ? json_loads(last_body, 0, NULL) : NULL;
    pthread_mutex_unlock(&mu);
    return j;
}

static json_t *results(void)
{
    int st = 0;
    char err[256];
    return gh_exp_results("shop", "home-test", &st, err, sizeof err);
}

static long long jint(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }

/* The configuration fmt (its store in dir: the one %s), loaded. */
static gh_conf_t *load_yaml(const char *fmt)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, fmt, dir);
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs;
    memset(&errs, 0, sizeof errs);
    if (gh_conf_load_string("t.yaml", yaml, strlen(yaml), &c, &errs) != 0) {
        for (uint32_t i = 0; i < errs.n; i++)
            fprintf(stderr, "config: %s\n", errs.msgs[i]);
        return NULL;
    }
    return c;
}

static gh_conf_t *load_conf(void) { return load_yaml(YAML); }

static int start(gh_conf_t *c)
{
    char err[512] = "";
    int rc = gh_exp_start(c, 1, err, sizeof err);
    if (rc < 0 || !gh_exp_running())
        fprintf(stderr, "gh_exp_start: %d %s\n", rc, err);
    return rc;
}

static void expose_units(const gh_conf_tenant_t *t, int from, int to)
{
    /* the variant's name from one buffer, rewritten per unit: the workers' memo of names' hashes
     * (keyed by address) must see the new bytes, not the address */
    static char variant[8];
    json_t *r0 = results();
    long long base = jint(r0, "exposure_records_since_start");
    json_decref(r0);
    for (int i = from; i < to; i++) {
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        uint64_t h = gh_exp_hash(u, (size_t)n);
        snprintf(variant, sizeof variant, "%s", (h >> 9) & 1 ? "on" : "off");
        gh_exp_expose(0, t, gh_exp_hash("new-home", 8), variant, h, 1000000 + (uint64_t)i);
    }
    for (int k = 0; k < 2000; k++) { /* applied by the pipeline (at most 2 s) */
        json_t *r = results();
        long long got = jint(r, "exposure_records_since_start");
        json_decref(r);
        if (got >= base + (to - from))
            return;
        usleep(1000);
    }
    CHECK(!"exposures applied");
}

/* events k0..k1: unit u(k % 40), amount k % 7 + 1, time after every exposure but a few before */
static char *events_body(int k0, int k1, int anonymous)
{
    size_t cap = 64 + (size_t)(k1 - k0) * 200;
    char *b = malloc(cap);
    size_t o = (size_t)snprintf(b, cap, "{\"events\": [");
    for (int k = k0; k < k1; k++) {
        char id[40] = "";
        if (!anonymous)
            snprintf(id, sizeof id, "\"eventId\":\"ev-%d\",", k);
        o += (size_t)snprintf(b + o, cap - o,
                              "%s{\"eventDefinition\":\"eventDefinitions/purchase\",%s\"eventTime\":\"%s\","
                              "\"payload\":{\"amount\":%d, \"context\":{\"targetingKey\":\"u%d\"}}}",
                              k > k0 ? "," : "", id, k % 10 == 3 ? "1970-01-01T00:00:00Z" : "2026-01-01T00:00:00Z",
                              k % 7 + 1, k % 40);
    }
    snprintf(b + o, cap - o, "]}");
    return b;
}

static int same_results(json_t *a, json_t *b)
{
    const char *keys[] = {"units", "metrics", "unattributed_events", "srm"};
    for (size_t i = 0; i < 4; i++)
        if (!json_equal(json_object_get(a, keys[i]), json_object_get(b, keys[i]))) {
            char *x = json_dumps(json_object_get(a, keys[i]), JSON_COMPACT), *y = json_dumps(json_object_get(b, keys[i]), JSON_COMPACT);
            fprintf(stderr, "%s differs:\n  %s\n  %s\n", keys[i], x, y);
            free(x);
            free(y);
            return 0;
        }
    return 1;
}

static void test_replay_and_idempotency_across_restart(void)
{
    gh_conf_t *c = load_conf();
    CHECK(c != NULL);
    if (!c || start(c) < 0)
        return;
    const gh_conf_tenant_t *t = &c->tenants[0];
    expose_units(t, 0, 30); /* 10 of the 40 units never exposed: unattributed */
    long long want_on = 0;
    for (int i = 0; i < 30; i++) {
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        want_on += (gh_exp_hash(u, (size_t)n) >> 9) & 1;
    }
    json_t *r0 = results(), *units = json_object_get(r0, "units");
    CHECK_INT(json_integer_value(json_object_get(units, "on")), want_on); /* each unit under the variant it was served */
    CHECK_INT(json_integer_value(json_object_get(units, "off")), 30 - want_on);
    json_decref(r0);
    char *b1 = events_body(0, 200, 0), *b2 = events_body(200, 260, 1);
    json_t *a = publish(t, b1);
    CHECK(a && jint(a, "accepted") == 200 && jint(a, "duplicates") == 0);
    json_decref(a);
    a = publish(t, b2);
    CHECK(a && jint(a, "accepted") == 60);
    json_decref(a);
    a = publish(t, b1); /* a retried post */
    CHECK(a && jint(a, "accepted") == 0 && jint(a, "duplicates") == 200);
    json_decref(a);
    expose_units(t, 30, 35); /* after the events: their earlier events stay unattributed / covariates */
    for (int i = 0; i < 20; i++) { /* edge observations: requests of exposed units */
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        const char *path = i % 3 ? "/home" : "/checkout/cart";
        gh_exp_observe(0, t, gh_exp_hash(u, (size_t)n), path, strlen(path), 200, 1000 + 250 * (uint64_t)i, 100,
                       2000000 + (uint64_t)i);
    }
    expose_units(t, 35, 36); /* (the ring is in order: the observations are applied once this is) */
    json_t *before = results();
    json_t *lat = json_object_get(json_array_get(json_object_get(before, "metrics"), 4), "values");
    CHECK(json_real_value(json_object_get(lat, "on")) > 1.0 || json_real_value(json_object_get(lat, "off")) > 1.0);
    CHECK(jint(before, "unattributed_events") > 0);
    gh_exp_stop();

    char logpath[300];
    snprintf(logpath, sizeof logpath, "%s/exp.db.evlog", dir);
    long long size1 = fsize(logpath);
    CHECK(size1 > 8 + 260 * 51);
    CHECK(start(c) == 0);
    json_t *after = results();
    CHECK(same_results(before, after));
    json_decref(after);
    /* idempotency across the restart: named and anonymous events */
    a = publish(t, b1);
    CHECK(a && jint(a, "accepted") == 0 && jint(a, "duplicates") == 200);
    json_decref(a);
    a = publish(t, b2);
    CHECK(a && jint(a, "accepted") == 0 && jint(a, "duplicates") == 60);
    json_decref(a);
    gh_exp_stop();
    CHECK_INT(fsize(logpath), size1); /* duplicates write nothing */

    /* a torn append (the machine died in the middle of one): cut at start, nothing else lost */
    int fd = open(logpath, O_WRONLY | O_APPEND);
    uint8_t torn[20] = {200, 1, 0, 0, 9, 9, 9, 9, 'E'};
    CHECK_INT(write(fd, torn, sizeof torn), 20);
    close(fd);
    CHECK(start(c) == 0);
    CHECK_INT(fsize(logpath), size1);
    after = results();
    CHECK(same_results(before, after));
    json_decref(after);
    char *b3 = events_body(260, 300, 0);
    a = publish(t, b3);
    CHECK(a && jint(a, "accepted") == 40);
    json_decref(a);
    a = publish(t, b1);
    CHECK(a && jint(a, "duplicates") == 200);
    json_decref(a);
    after = results();
    gh_exp_stop();
    CHECK(fsize(logpath) > size1);

    /* the edge snapshots of an earlier build ('V': one unit and metric per record, 41 bytes) are
     * still read: one for u1's latency with other values than its last snapshot changes the
     * metric at the next start, and only it, and stays what it says across more restarts */
    char edgespath[300], kb[64], err[256];
    snprintf(edgespath, sizeof edgespath, "%s/exp.db.edges", dir);
    gh_evlog_t *l = NULL;
    CHECK_INT(gh_evlog_open(&l, edgespath, NULL, err, sizeof err), 0);
    if (l) {
        int kl = snprintf(kb, sizeof kb, "shop%chome-test", 0);
        uint64_t key_h = gh_exp_hash(kb, (size_t)kl), unit_h = gh_exp_hash("u1", 2), mh = gh_exp_hash("latency", 7);
        double num = 5000.0, den = 3.0; /* 5 s over 3 requests: far from what u1 had */
        uint8_t *r = gh_evlog_put(l, 41);
        CHECK(r != NULL);
        if (r) {
            r[0] = 'V';
            memcpy(r + 1, &key_h, 8);
            memcpy(r + 9, &unit_h, 8);
            memcpy(r + 17, &mh, 8);
            memcpy(r + 25, &num, 8);
            memcpy(r + 33, &den, 8);
        }
        CHECK_INT(gh_evlog_flush(l, 1), 0);
        gh_evlog_close(l);
    }
    CHECK(start(c) == 0);
    json_t *old = results();
    json_t *m_after = json_object_get(after, "metrics"), *m_old = json_object_get(old, "metrics");
    for (size_t i = 0; i < json_array_size(m_after); i++) /* latency is the 5th metric */
        CHECK(json_equal(json_array_get(m_after, i), json_array_get(m_old, i)) == (i != 4));
    CHECK(json_equal(json_object_get(after, "units"), json_object_get(old, "units")));
    gh_exp_stop();
    CHECK(start(c) == 0);
    json_t *again = results();
    CHECK(same_results(old, again));
    gh_exp_stop();
    json_decref(again);
    json_decref(old);
    json_decref(after);
    free(b1);
    free(b2);
    free(b3);
    json_decref(before);
    gh_conf_unref(c);
}

/* A store of the previous version: units and events in SQLite; the first start moves them into
 * the log, with the aggregates the old replay gave. */
/* Tables that grow far past their first size (the values past 2 MiB move by mremap): a unit's edge
 * values from before the growth are still there after it, in the sums, in a second observation and
 * in the snapshot a restart reads. */
static void observe_units(const gh_conf_tenant_t *t, int from, int to, uint64_t latency_us)
{
    for (int i = from; i < to; i++) {
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        gh_exp_observe(0, t, gh_exp_hash(u, (size_t)n), "/home", 5, 200, latency_us, 100, 3000000);
    }
}

static double latency_of(json_t *r, const char *variant)
{
    json_t *m = json_array_get(json_object_get(r, "metrics"), 4);
    return json_real_value(json_object_get(json_object_get(m, "values"), variant));
}

/* A test's store in its own subdirectory of dir (dir is set to it; sub_leave restores it and
 * removes the subdirectory). */
static char dir_saved[sizeof dir];

static gh_conf_t *sub_enter(const char *name, const char *fmt)
{
    memcpy(dir_saved, dir, sizeof dir);
    CHECK(strlen(dir) + 1 + strlen(name) < sizeof dir);
    strcat(dir, "/");
    strcat(dir, name);
    CHECK_INT(mkdir(dir, 0700), 0);
    gh_conf_t *c = load_yaml(fmt);
    CHECK(c != NULL);
    if (!c)
        memcpy(dir, dir_saved, sizeof dir);
    return c;
}

static void sub_leave(gh_conf_t *c)
{
    char cmd[400];
    gh_conf_unref(c);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
    memcpy(dir, dir_saved, sizeof dir);
}

static void test_tables_grow(void)
{
    gh_conf_t *c = sub_enter("grow", YAML);
    if (!c)
        return;
    const gh_conf_tenant_t *t = &c->tenants[0];
    CHECK(start(c) == 0);
    expose_units(t, 0, 100);
    observe_units(t, 0, 100, 1000);
    for (int k = 100; k < 60000; k += 8000) /* (in parts: the ring holds 16384 records) */
        expose_units(t, k, GH_MIN(k + 8000, 60000));
    observe_units(t, 0, 100, 3000);
    expose_units(t, 60000, 60001); /* (the observations are applied once this is) */
    json_t *before = results();
    CHECK_INT(json_integer_value(json_object_get(json_object_get(before, "units"), "on")) +
                  json_integer_value(json_object_get(json_object_get(before, "units"), "off")),
              60001);
    CHECK(fabs(latency_of(before, "on") - 2.0) < 1e-12 && fabs(latency_of(before, "off") - 2.0) < 1e-12);
    gh_exp_stop();
    CHECK(start(c) == 0);
    json_t *after = results();
    CHECK(same_results(before, after));
    CHECK(fabs(latency_of(after, "on") - 2.0) < 1e-12);
    json_decref(before);
    json_decref(after);
    gh_exp_stop();
    sub_leave(c);
}

/* An observation keeps as much of the path as the tenant's longest prefix (here 40 bytes: the
 * record's 24 and a continuation record): a path that differs from the prefix only after byte 24
 * does not count, one that has the whole prefix does, one shorter than it does not. */
static void test_long_path_prefix(void)
{
    gh_conf_t *c = sub_enter("paths", YAML);
    if (!c)
        return;
    const gh_conf_tenant_t *t = &c->tenants[0];
    CHECK_INT(t->xedges, 1);
    CHECK_INT(t->xpath_max, 40);
    CHECK(start(c) == 0);
    expose_units(t, 0, 40);
    static const char *const paths[] = {"/checkout/step-two/confirm-the-order-now?x=1", /* counts */
                                        "/checkout/step-two/confirm-the-order-NOW",     /* differs at byte 37 */
                                        "/checkout/step-two/confirm",                   /* a prefix of it */
                                        "/checkout/step-two/confirm-the-order-now"};    /* exactly: counts */
    int want[2] = {0, 0};
    for (int i = 0; i < 40; i++) {
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        uint64_t h = gh_exp_hash(u, (size_t)n);
        const char *p = paths[i % 4];
        gh_exp_observe(0, t, h, p, strlen(p), 200, 1000, 100, 3000000);
        want[(h >> 9) & 1] += i % 4 == 0 || i % 4 == 3;
    }
    expose_units(t, 40, 41);
    json_t *r = results();
    json_t *m = json_array_get(json_object_get(r, "metrics"), 5);
    CHECK(strcmp(json_string_value(json_object_get(m, "name")) ? json_string_value(json_object_get(m, "name")) : "", "deep") == 0);
    json_t *v = json_object_get(m, "values"), *units = json_object_get(r, "units");
    /* a conversion's value: the share of the variant's units that converted */
    CHECK(fabs(json_real_value(json_object_get(v, "on")) * (double)json_integer_value(json_object_get(units, "on")) - want[1]) < 1e-9);
    CHECK(fabs(json_real_value(json_object_get(v, "off")) * (double)json_integer_value(json_object_get(units, "off")) - want[0]) < 1e-9);
    CHECK(want[0] + want[1] == 20);
    CHECK_INT(jint(r, "observation_records_since_start"), 40);
    json_decref(r);
    gh_exp_stop();
    sub_leave(c);
}

/* A tenant whose experiments have no edge metric sends no observations (a request costs one
 * exposure record); its path is not kept either. */
static void test_no_edge_metric_no_observation(void)
{
    gh_conf_t *c = sub_enter("events-only", EXP_YAML_HEAD "    sites: []\n");
    if (!c)
        return;
    const gh_conf_tenant_t *t = &c->tenants[0];
    CHECK_INT(t->xedges, 0);
    CHECK_INT(t->xpath_max, 0);
    CHECK(start(c) == 0);
    expose_units(t, 0, 10);
    for (int i = 0; i < 10; i++) { /* dropped before the ring: the records applied stay 10 */
        char u[32];
        int n = snprintf(u, sizeof u, "u%d", i);
        gh_exp_observe(0, t, gh_exp_hash(u, (size_t)n), "/checkout", 9, 200, 1000, 100, 3000000);
    }
    expose_units(t, 10, 11);
    json_t *r = results();
    CHECK_INT(jint(r, "exposure_records_since_start"), 11);
    CHECK_INT(jint(r, "observation_records_since_start"), 0);
    CHECK_INT(jint(r, "records_dropped"), 0);
    json_decref(r);
    gh_exp_stop();
    sub_leave(c);
}

static void test_migrates_a_sqlite_store(void)
{
    char sub[200], db[400], yaml_dir[256];
    snprintf(sub, sizeof sub, "%.150s/old", dir);
    mkdir(sub, 0755);
    snprintf(db, sizeof db, "%s/exp.db", sub);
    sqlite3 *s = NULL;
    CHECK_INT(sqlite3_open(db, &s), SQLITE_OK);
    const char *schema =
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES('schema_version','1');"
        "CREATE TABLE units(tenant TEXT NOT NULL, experiment TEXT NOT NULL, unit_h INTEGER NOT NULL,"
        " variant TEXT NOT NULL, first_ms INTEGER NOT NULL, PRIMARY KEY(tenant, experiment, unit_h)) WITHOUT ROWID;"
        "CREATE TABLE events(id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, event_id TEXT NOT NULL,"
        " name TEXT NOT NULL, unit TEXT NOT NULL, time_ms INTEGER NOT NULL, payload TEXT NOT NULL,"
        " UNIQUE(tenant, event_id));";
    CHECK_INT(sqlite3_exec(s, schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(s, "INSERT INTO units VALUES('shop','home-test',?,?,1000)", -1, &st, NULL);
    for (int i = 0; i < 4; i++) {
        char u[16]; /* (room for any int: -O1 builds check) */
        snprintf(u, sizeof u, "m%d", i);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)gh_exp_hash(u, strlen(u)));
        sqlite3_bind_text(st, 2, i % 2 ? "on" : "off", -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    CHECK_INT(sqlite3_exec(s,
                           "INSERT INTO events(tenant,event_id,name,unit,time_ms,payload) VALUES"
                           "('shop','o1','purchase','m0',2000,'{\"amount\":10}'),"
                           "('shop','o2','purchase','m1',2000,'{\"amount\":4}'),"
                           "('shop','o3','purchase','m1',2000,'{\"amount\":6}')",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(s);
    snprintf(yaml_dir, sizeof yaml_dir, "%s", dir);
    snprintf(dir, sizeof dir, "%s", sub);
    gh_conf_t *c = load_conf();
    snprintf(dir, sizeof dir, "%s", yaml_dir);
    if (!c || start(c) < 0) {
        CHECK(!"started");
        return;
    }
    json_t *r = results();
    json_t *units = json_object_get(r, "units");
    CHECK_INT(jint(units, "off"), 2);
    CHECK_INT(jint(units, "on"), 2);
    json_t *m = json_array_get(json_object_get(r, "metrics"), 1); /* revenue: mean per unit */
    CHECK(json_real_value(json_object_get(json_object_get(m, "values"), "off")) == 5.0);
    CHECK(json_real_value(json_object_get(json_object_get(m, "values"), "on")) == 5.0);
    json_decref(r);
    const gh_conf_tenant_t *t = &c->tenants[0];
    json_t *a = publish(t, "{\"events\":[{\"eventDefinition\":\"purchase\",\"eventId\":\"o2\",\"payload\":{\"amount\":4,"
                           "\"targetingKey\":\"m1\"}}]}");
    CHECK(a && jint(a, "duplicates") == 1);
    json_decref(a);
    gh_exp_stop();
    char logpath[500];
    snprintf(logpath, sizeof logpath, "%s.evlog", db);
    CHECK(fsize(logpath) > 8);
    /* the rows left SQLite; a second start reads the log alone */
    CHECK_INT(sqlite3_open(db, &s), SQLITE_OK);
    sqlite3_prepare_v2(s, "SELECT (SELECT count(*) FROM units) + (SELECT count(*) FROM events)", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(s);
    CHECK(start(c) == 0);
    r = results();
    CHECK_INT(jint(json_object_get(r, "units"), "off"), 2);
    m = json_array_get(json_object_get(r, "metrics"), 1);
    CHECK(json_real_value(json_object_get(json_object_get(m, "values"), "on")) == 5.0);
    json_decref(r);
    gh_exp_stop();
    gh_conf_unref(c);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/gh-test-exp-log.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_torn_tail_is_cut);
    RUN(test_crc_mismatch);
    RUN(test_crc32c);
    RUN(test_new_log_is_crc32c);
    RUN(test_version1_log);
    RUN(test_replay_and_idempotency_across_restart);
    RUN(test_migrates_a_sqlite_store);
    RUN(test_tables_grow);
    RUN(test_long_path_prefix);
    RUN(test_no_edge_metric_no_observation);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return t_done("test_exp_log");
}
