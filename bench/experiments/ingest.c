/* bench/experiments/ingest.c: gatehouse's experiment ingest in-process (src/experiments/exp.h from
 * build/libgatehouse.a), the C side of bench/experiments.sh's part "ingest".
 *
 *   ingest STORE_DIR EXPOSURES EVENTS PIPE_CPU PROD_CPU [INFLIGHT] [WINDOW]
 *
 * Loads a configuration from a YAML string (gh_conf_load_string): one tenant "shop" whose flags are
 * inline (flags: {definition: ...}: new-home, a 50/50 fractional flag over on/off), one experiment
 * home-test on new-home, variants [off, on], 3 metrics on the event "purchase": conversion, the mean
 * of payload.amount per unit, and the ratio sum(amount) / count(purchases) (no CUPED, no edge
 * metric); `experiments: {store: STORE_DIR/exp.db}` (the log: STORE_DIR/exp.db.evlog; SQLite keeps
 * only the edge-value snapshots), no audit log. Starts the pipeline with
 * gh_exp_start(conf, 1, ...) (one producer slot, 0) with this thread pinned to PIPE_CPU, so that the
 * pipeline thread it creates inherits that core; then moves this thread (the producer) to PROD_CPU.
 * PIPE_CPU = PROD_CPU: both share one core.
 *
 * Warm-up: one event published (for a unit never exposed: it counts as unattributed) so that the
 * done callback tells which thread is the pipeline's (pthread_self there; with no worker threads
 * gh_worker_post runs the callback right on the pipeline thread); its CPU clock is then read with
 * pthread_getcpuclockid.
 *
 * Phases, one line each (tab-separated, after a "#" header line):
 *   expose-new   EXPOSURES first exposures: units "u0".."uN-1" (hashes computed before the clock
 *                starts), variant from a bit of the unit's hash, gh_exp_expose(0, ...) as fast as
 *                the ring takes them. exp.c gives no way to see a full ring (a full ring drops the
 *                record silently), so the producer keeps at most WINDOW (default 8192, a quarter of the
 *                32768-record ring) records in flight: it polls gh_exp_results' exposure_records_
 *                since_start (records applied by the pipeline) and waits (50 us sleeps) until fewer
 *                than WINDOW are outstanding. The phase ends when all EXPOSURES are applied; each
 *                new unit is also one 33-byte record in the log's pending frame (written with
 *                one write(2) at least every 200 ms or 1 MiB, no fdatasync).
 *   expose-again the same EXPOSURES units exposed again (returning visitors): hash-table lookups
 *                only, nothing stored.
 *   events       EVENTS purchase events in publishes of 1000 through gh_exp_publish(0, ...): unit
 *                u<(k * 2654435761) mod EXPOSURES> (all exposed; distinct units while EVENTS <=
 *                EXPOSURES), eventId "e<k>" (unique), payload {"amount": 1 + k % 100, "context":
 *                {"targetingKey": unit}}, no eventTime (= now, after the exposures). At most
 *                INFLIGHT (default 4) publishes wait for their commit at a time (as an HTTP client
 *                with 4 requests in flight; the pipeline commits everything queued as one frame of
 *                the log: one write(2) and one fdatasync). The bodies are written by the producer;
 *                that CPU is counted apart (gen) from gh_exp_publish's (parse + per-event checks:
 *                parse).
 * Columns: phase, records, wall_s, rate (records/s by the wall clock, end to end: until the last one
 * is applied / its publish answered), pipe_cpu_s and pipe_ns (the pipeline thread's CPU time, and
 * per record), parse_ns (producer CPU per record in gh_exp_expose / gh_exp_publish), gen_ns (producer
 * CPU per record writing bodies; 0 for exposures), proc_cpu_s (the whole process: getrusage), other_
 * cpu_s (process - pipeline - producer: should be ~0, no other thread), one_core_rate (1e9 / (pipe_ns +
 * parse_ns): what one core doing both the producer's gatehouse work and the pipeline's would ingest),
 * syscw (write syscalls of the process in the phase, /proc/self/io), write_kb (bytes it sent to the
 * storage layer: 0 on tmpfs), lost (records not applied: dropped by a full ring, or events not
 * accepted).
 * Then "check" lines (units per variant, records, accepted events, metric values against what was
 * sent), "store" (the sizes of the SQLite file, its WAL and the log; stop_s: gh_exp_stop's time) and
 * "restart" (a second gh_exp_start on the same store: the log replayed, idempotency set and
 * aggregates rebuilt; its wall time, and whether the results equal those before the stop). Exit 1
 * when a check fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "experiments/exp.h"
#define EXP_YAML_HEAD_ONLY
#include "../../tests/unit/exp_yaml.h"

static const char *TENANT = "shop", *EXP = "home-test", *FLAG = "new-home";

static const char YAML[] = /* the store tests' experiment, without CUPED or edge metrics */
    EXP_YAML_HEAD
    "          - {name: revenue, kind: mean, event: purchase, value: amount}\n"
    "          - {name: aov, kind: ratio, event: purchase, value: amount, denominator: {event: purchase}}\n"
    "    sites: []\n";

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0)
        return -1;
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double proc_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void io_read(long long *syscw, long long *wbytes)
{
    *syscw = *wbytes = 0;
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "syscw:", 6))
            *syscw = atoll(line + 6);
        else if (!strncmp(line, "write_bytes:", 12))
            *wbytes = atoll(line + 12);
    }
    if (f)
        fclose(f);
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof s, &s);
    if (rc) {
        fprintf(stderr, "ingest: pinning to cpu %d: %s\n", cpu, strerror(rc));
        exit(2);
    }
}

/* ---- the pipeline's answers (run on the pipeline thread) ---- */

static pthread_mutex_t dmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dcv = PTHREAD_COND_INITIALIZER;
static uint64_t done_batches, accepted, duplicates, failed_batches;
static pthread_t pipe_thread;
static atomic_int have_pipe;

static void on_done(void *arg, int status, const char *body, size_t len)
{
    (void)arg;
    long acc = 0, dup = 0;
    const char *p = memmem(body, len, "\"accepted\":", 11), *q = memmem(body, len, "\"duplicates\":", 13);
    if (p)
        acc = strtol(p + 11, NULL, 10);
    if (q)
        dup = strtol(q + 13, NULL, 10);
    if (!atomic_load(&have_pipe)) {
        pipe_thread = pthread_self();
        atomic_store(&have_pipe, 1);
    }
    pthread_mutex_lock(&dmu);
    done_batches++;
    accepted += (uint64_t)acc;
    duplicates += (uint64_t)dup;
    if (status != 200)
        failed_batches++;
    pthread_cond_signal(&dcv);
    pthread_mutex_unlock(&dmu);
}

static uint64_t done_now(void)
{
    pthread_mutex_lock(&dmu);
    uint64_t d = done_batches;
    pthread_mutex_unlock(&dmu);
    return d;
}

static void wait_done(uint64_t want)
{
    pthread_mutex_lock(&dmu);
    while (done_batches < want)
        pthread_cond_wait(&dcv, &dmu);
    pthread_mutex_unlock(&dmu);
}

/* ---- results ---- */

static json_t *results(void)
{
    int st = 0;
    char err[256];
    json_t *r = gh_exp_results(TENANT, EXP, &st, err, sizeof err);
    if (!r) {
        fprintf(stderr, "ingest: gh_exp_results: %d %s\n", st, err);
        exit(1);
    }
    return r;
}

static uint64_t applied_exposures(void)
{
    json_t *r = results();
    uint64_t n = (uint64_t)json_integer_value(json_object_get(r, "exposure_records_since_start"));
    json_decref(r);
    return n;
}

/* ---- phases ---- */

typedef struct {
    const char *name;
    uint64_t n;
    double t0, pipe0, prod0, proc0, gen_s, parse_s;
    long long w0, b0;
} phase_t;

static clockid_t pipe_clock;

static void phase_begin(phase_t *p, const char *name, uint64_t n)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->n = n;
    io_read(&p->w0, &p->b0);
    p->pipe0 = clock_s(pipe_clock);
    p->prod0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    p->proc0 = proc_cpu_s();
    p->t0 = mono_s();
}

/* parse_s: the producer's CPU inside gatehouse calls; for exposures it is all the producer's CPU
 * in the phase (polls and sleeps included), for events gen_s and parse_s are measured apart. */
static void phase_end(phase_t *p, uint64_t lost, int prod_all_is_parse)
{
    double t1 = mono_s(), pipe1 = clock_s(pipe_clock), prod1 = clock_s(CLOCK_THREAD_CPUTIME_ID), proc1 = proc_cpu_s();
    long long w1, b1;
    io_read(&w1, &b1);
    double wall = t1 - p->t0, pipe = pipe1 - p->pipe0, prod = prod1 - p->prod0, proc = proc1 - p->proc0;
    if (prod_all_is_parse)
        p->parse_s = prod;
    double n = p->n ? (double)p->n : 1;
    double pipe_ns = pipe * 1e9 / n, parse_ns = p->parse_s * 1e9 / n, gen_ns = p->gen_s * 1e9 / n;
    printf("%s\t%llu\t%.3f\t%.0f\t%.3f\t%.0f\t%.0f\t%.0f\t%.3f\t%.3f\t%.0f\t%lld\t%lld\t%llu\n", p->name,
           (unsigned long long)p->n, wall, p->n / wall, pipe, pipe_ns, parse_ns, gen_ns, proc, proc - pipe - prod,
           1e9 / (pipe_ns + parse_ns), w1 - p->w0, (b1 - p->b0) / 1024, (unsigned long long)lost);
    fflush(stdout);
}

static uint64_t *hashes;
static const char *VAR_ON = "on", *VAR_OFF = "off";

static uint64_t expose_all(const gh_conf_tenant_t *t, uint64_t n, uint64_t window, uint64_t base)
{
    uint64_t applied = base, sent = 0, ms = wall_ms(), flag_h = gh_exp_hash(FLAG, strlen(FLAG));
    for (uint64_t i = 0; i < n; i++) {
        if (sent + base - applied >= window) {
            applied = applied_exposures();
            while (sent + base - applied >= window) {
                usleep(50);
                applied = applied_exposures();
            }
            ms = wall_ms();
        }
        gh_exp_expose(0, t, flag_h, (hashes[i] >> 17) & 1 ? VAR_ON : VAR_OFF, hashes[i], ms);
        sent++;
    }
    /* until all are applied (or no progress for 2 s: records were lost) */
    double last = mono_s();
    uint64_t prev = applied;
    while ((applied = applied_exposures()) < base + n) {
        if (applied != prev) {
            prev = applied;
            last = mono_s();
        } else if (mono_s() - last > 2) {
            break;
        }
        usleep(200);
    }
    return base + n - applied;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: ingest STORE_DIR EXPOSURES EVENTS PIPE_CPU PROD_CPU [INFLIGHT] [WINDOW]\n");
        return 2;
    }
    const char *dir = argv[1];
    uint64_t nexp = strtoull(argv[2], NULL, 10), nev = strtoull(argv[3], NULL, 10);
    int pipe_cpu = atoi(argv[4]), prod_cpu = atoi(argv[5]);
    uint64_t inflight = argc > 6 ? strtoull(argv[6], NULL, 10) : 4, window = argc > 7 ? strtoull(argv[7], NULL, 10) : 8192;
    const uint64_t BATCH = 1000;
    if (!nexp || !inflight || !window || window > 16384) {
        fprintf(stderr, "ingest: EXPOSURES, INFLIGHT must be > 0, WINDOW 1..16384\n");
        return 2;
    }

    char *yaml = NULL;
    if (asprintf(&yaml, YAML, dir) < 0)
        return 1;
    gh_conf_t *conf = NULL;
    gh_conf_errors_t errs = {0};
    if (gh_conf_load_string("ingest.yaml", yaml, strlen(yaml), &conf, &errs) != 0) {
        for (uint32_t i = 0; i < errs.n; i++)
            fprintf(stderr, "ingest: config: %s\n", errs.msgs[i]);
        return 1;
    }
    const gh_conf_tenant_t *t = &conf->tenants[0];

    pin(pipe_cpu); /* the pipeline thread inherits this */
    char err[512] = "";
    int rc = gh_exp_start(conf, 1, err, sizeof err);
    if (rc < 0 || !gh_exp_running()) {
        fprintf(stderr, "ingest: gh_exp_start: %d %s\n", rc, err);
        return 1;
    }
    pin(prod_cpu);

    /* warm-up: one event, to learn the pipeline thread */
    int st = 0;
    const char *w = "{\"events\":[{\"eventDefinition\":\"purchase\",\"eventId\":\"warm\",\"payload\":{\"amount\":1,"
                    "\"context\":{\"targetingKey\":\"never-exposed\"}}}]}";
    if (gh_exp_publish(0, t, w, strlen(w), on_done, NULL, &st, err, sizeof err) < 0) {
        fprintf(stderr, "ingest: warm-up publish: %d %s\n", st, err);
        return 1;
    }
    wait_done(1);
    if (pthread_getcpuclockid(pipe_thread, &pipe_clock) != 0) {
        fprintf(stderr, "ingest: no CPU clock for the pipeline thread\n");
        return 1;
    }
    {
        cpu_set_t s;
        CPU_ZERO(&s);
        pthread_getaffinity_np(pipe_thread, sizeof s, &s);
        fprintf(stderr, "ingest: pipeline thread on cpu %d (affinity count %d), producer on cpu %d; store %s/exp.db\n",
                pipe_cpu, CPU_COUNT(&s), prod_cpu, dir);
    }

    hashes = malloc(nexp * sizeof *hashes);
    if (!hashes)
        return 1;
    uint64_t non = 0;
    for (uint64_t i = 0; i < nexp; i++) {
        char u[32];
        int l = snprintf(u, sizeof u, "u%llu", (unsigned long long)i);
        hashes[i] = gh_exp_hash(u, (size_t)l);
        non += (hashes[i] >> 17) & 1;
    }

    printf("#phase\trecords\twall_s\trate\tpipe_cpu_s\tpipe_ns\tparse_ns\tgen_ns\tproc_cpu_s\tother_cpu_s\tone_core_rate\tsyscw\twrite_kb\tlost\n");
    phase_t p;
    phase_begin(&p, "expose-new", nexp);
    uint64_t lost1 = expose_all(t, nexp, window, 0);
    phase_end(&p, lost1, 1);

    phase_begin(&p, "expose-again", nexp);
    uint64_t lost2 = expose_all(t, nexp, window, nexp - lost1);
    phase_end(&p, lost2, 1);

    /* events */
    size_t cap = BATCH * 160 + 64;
    char *body = malloc(cap);
    double sum_amount[2] = {0, 0}, cnt[2] = {0, 0};
    uint64_t nb = (nev + BATCH - 1) / BATCH, sentb = 0, evsent = 0;
    uint64_t base_done = done_now();
    phase_begin(&p, "events", nev);
    for (uint64_t b = 0; b < nb; b++) {
        double g0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        size_t o = (size_t)snprintf(body, cap, "{\"events\":[");
        uint64_t k0 = b * BATCH, k1 = k0 + BATCH < nev ? k0 + BATCH : nev;
        for (uint64_t k = k0; k < k1; k++) {
            uint64_t ui = (k * 2654435761ull) % nexp;
            unsigned amount = 1 + (unsigned)(k % 100);
            o += (size_t)snprintf(body + o, cap - o,
                                  "%s{\"eventDefinition\":\"purchase\",\"eventId\":\"e%llu\",\"payload\":{\"amount\":%u,"
                                  "\"context\":{\"targetingKey\":\"u%llu\"}}}",
                                  k > k0 ? "," : "", (unsigned long long)k, amount, (unsigned long long)ui);
            int v = (hashes[ui] >> 17) & 1;
            sum_amount[v] += amount;
            cnt[v] += 1;
        }
        o += (size_t)snprintf(body + o, cap - o, "]}");
        double g1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        p.gen_s += g1 - g0;
        /* at most INFLIGHT publishes waiting for their commit */
        if (sentb >= inflight)
            wait_done(base_done + sentb - inflight + 1);
        double q0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (gh_exp_publish(0, t, body, o, on_done, NULL, &st, err, sizeof err) < 0) {
            fprintf(stderr, "ingest: publish %llu: %d %s\n", (unsigned long long)b, st, err);
            return 1;
        }
        p.parse_s += clock_s(CLOCK_THREAD_CPUTIME_ID) - q0;
        sentb++;
        evsent += k1 - k0;
    }
    wait_done(base_done + sentb);
    uint64_t acc_before_warm = accepted; /* includes the warm-up event */
    phase_end(&p, evsent + 1 - acc_before_warm, 0);

    /* checks: against what was sent */
    json_t *r = results();
    json_t *units = json_object_get(r, "units");
    uint64_t uoff = (uint64_t)json_integer_value(json_object_get(units, "off")),
             uon = (uint64_t)json_integer_value(json_object_get(units, "on"));
    uint64_t recs = (uint64_t)json_integer_value(json_object_get(r, "exposure_records_since_start"));
    uint64_t unattr = (uint64_t)json_integer_value(json_object_get(r, "unattributed_events"));
    int ok = 1;
    printf("check\tunits off/on\t%llu/%llu\texpected\t%llu/%llu\n", (unsigned long long)uoff, (unsigned long long)uon,
           (unsigned long long)(nexp - non), (unsigned long long)non);
    ok &= uoff == nexp - non && uon == non;
    printf("check\texposure records\t%llu\texpected\t%llu\n", (unsigned long long)recs, (unsigned long long)(2 * nexp));
    ok &= recs == 2 * nexp;
    printf("check\tevents accepted/duplicates/failed batches\t%llu/%llu/%llu\texpected\t%llu/0/0\n",
           (unsigned long long)accepted, (unsigned long long)duplicates, (unsigned long long)failed_batches,
           (unsigned long long)(nev + 1));
    ok &= accepted == nev + 1 && !duplicates && !failed_batches;
    printf("check\tunattributed events\t%llu\texpected\t1\n", (unsigned long long)unattr);
    ok &= unattr == 1;
    json_t *ms = json_object_get(r, "metrics");
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *m = json_array_get(ms, i), *vals = json_object_get(m, "values");
        const char *name = json_string_value(json_object_get(m, "name"));
        for (int v = 0; v < 2; v++) {
            const char *vn = v ? "on" : "off";
            double got = json_number_value(json_object_get(vals, vn)), nu = v ? (double)non : (double)(nexp - non), want;
            if (!strcmp(name, "purchase")) /* distinct units while EVENTS <= EXPOSURES (2654435761 is odd, and prime) */
                want = nev <= nexp ? cnt[v] / nu : got;
            else if (!strcmp(name, "revenue"))
                want = sum_amount[v] / nu;
            else
                want = sum_amount[v] / cnt[v];
            int good = fabs(got - want) <= 1e-9 * (fabs(want) + 1);
            ok &= good;
            printf("check\t%s %s\t%.9g\texpected\t%.9g%s\n", name, vn, got, want, good ? "" : "\tMISMATCH");
        }
    }
    json_decref(r);

    json_t *before = results();
    double s0 = mono_s();
    gh_exp_stop();
    double s1 = mono_s();
    struct stat sb;
    char path[1024];
    long long db = 0, wal = 0;
    snprintf(path, sizeof path, "%s/exp.db", dir);
    if (stat(path, &sb) == 0)
        db = sb.st_size;
    snprintf(path, sizeof path, "%s/exp.db-wal", dir);
    if (stat(path, &sb) == 0)
        wal = sb.st_size;
    long long lg = 0;
    snprintf(path, sizeof path, "%s/exp.db.evlog", dir);
    if (stat(path, &sb) == 0)
        lg = sb.st_size;
    printf("store\tdb_kb\t%lld\twal_kb\t%lld\tlog_kb\t%lld\tstop_s\t%.3f\n", db / 1024, wal / 1024, lg / 1024, s1 - s0);
    /* restart: the log replayed */
    double r0 = mono_s();
    rc = gh_exp_start(conf, 1, err, sizeof err);
    double r1 = mono_s();
    if (rc < 0 || !gh_exp_running()) {
        fprintf(stderr, "ingest: restart: %d %s\n", rc, err);
        ok = 0;
    } else {
        json_t *after = results();
        int same = json_equal(json_object_get(before, "units"), json_object_get(after, "units")) &&
                   json_equal(json_object_get(before, "metrics"), json_object_get(after, "metrics"));
        printf("restart\treplay_s\t%.3f\tper_million_events_s\t%.3f\tsame_results\t%s\n", r1 - r0,
               (r1 - r0) * 1e6 / (double)(nev + 1), same ? "yes" : "NO");
        ok &= same;
        json_decref(after);
        gh_exp_stop();
    }
    json_decref(before);
    printf("result\t%s\n", ok ? "ok" : "CHECK FAILED");
    gh_conf_unref(conf);
    free(hashes);
    free(body);
    free(yaml);
    return ok ? 0 : 1;
}
