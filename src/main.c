/* main.c: the gatehouse command line: run, validate, proxy, reload, version.
 *
 * Thin by design: parse arguments, load the configuration, start the modules, then
 * wait for signals on the main thread (SIGHUP reloads, SIGTERM/SIGINT drain). */
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "events/chsink.h"
#include "events/stream.h"
#include "admin/cp.h"
#include "cache/cache.h"
#include "config/config.h"
#include "ctl/ctl.h"
#include "experiments/exp.h"
#include "experiments/report.h"
#include "flags/grpc.h"
#include "flags/ofrep.h"
#include "core/log.h"
#include "obs/accesslog.h"
#include "obs/trace.h"
#include "obs/metrics.h"
#include "obs/slo.h"
#include "proxy/demo.h"
#include "proxy/dns.h"
#include "proxy/health.h"
#include "protect/protect.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "tls/tls.h"

#define GH_VERSION "0.1.0"

static const char usage_main[] =
    "usage: gatehouse <command> [options]\n"
    "\n"
    "commands:\n"
    "  run -c FILE        run the gateway with a YAML configuration (foreground)\n"
    "  validate -c FILE   check a configuration; print every error as FILE:LINE:COL: key.path: message\n"
    "  proxy --from ADDR --to ADDR [--to ADDR ...]\n"
    "                     a one-line reverse proxy (round-robin over the --to backends)\n"
    "  flags --file FILE [--ofrep ADDR] [--grpc ADDR]\n"
    "                     serve a flagd flag definition over OFREP and flagd gRPC (a drop-in for flagd)\n"
    "  reload -c FILE     ask the running gateway (pid_file of FILE) to reload its configuration\n"
    "  experiments results ID --tenant T [-c FILE | --admin ADDR]\n"
    "                     print an experiment's results from a running gateway\n"
    "  ctl COMMAND ...    the admin API's command-line client (get, apply, delete, versions, keys, ...)\n"
    "  version            print the version\n"
    "\n"
    "'gatehouse <command> --help' describes a command.\n";

static const char usage_run[] =
    "usage: gatehouse run [-c FILE] [--log-level error|warn|info|debug]\n"
    "  Runs in the foreground. FILE defaults to gatehouse.yaml.\n"
    "  SIGHUP (or 'gatehouse reload -c FILE') reloads the configuration: a valid one is swapped in\n"
    "  atomically, an invalid one is rejected and the running one stays. SIGTERM or SIGINT stops\n"
    "  accepting and drains in-flight requests for up to drain_timeout.\n";

static const char usage_validate[] =
    "usage: gatehouse validate -c FILE\n"
    "  Exit 0 and print 'FILE: ok', or exit 1 and print each error as FILE:LINE:COL: key.path: message.\n";

static const char usage_proxy[] =
    "usage: gatehouse proxy --from ADDR --to ADDR [--to ADDR ...] [--workers N] [--access-log]\n"
    "  A reverse proxy from ADDR (e.g. :8080 or 127.0.0.1:8080) to one or more backends,\n"
    "  round-robin, with the defaults of the configuration file.\n";

static const char usage_flags[] =
    "usage: gatehouse flags --file FILE [--ofrep ADDR] [--grpc ADDR] [--workers N]\n"
    "  Serves the flagd definition FILE (JSON or YAML; watched and reloaded when it changes),\n"
    "  without credentials, over OFREP (POST /ofrep/v1/evaluate/flags[/KEY]) on --ofrep, default\n"
    "  127.0.0.1:8016, and flagd's gRPC evaluation service (flagd.evaluation.v1 and v2, h2c) on\n"
    "  --grpc, default 127.0.0.1:8013.\n";

static const char usage_reload[] =
    "usage: gatehouse reload -c FILE\n"
    "  Sends SIGHUP to the process whose pid is in FILE's pid_file.\n";

static void print_errors(const gh_conf_errors_t *e)
{
    for (uint32_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->msgs[i]);
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

/* -c FILE / --config FILE / --config=FILE; NULL if absent. */
static const char *config_arg(int argc, char **argv, const char *dflt)
{
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--config=", 9))
            return argv[i] + 9;
    }
    return dflt;
}

static int cmd_validate(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_validate, stdout);
        return 0;
    }
    const char *path = config_arg(argc, argv, NULL);
    if (!path) {
        fputs(usage_validate, stderr);
        return 2;
    }
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    if (gh_conf_load_file(path, &c, &errs) < 0) {
        print_errors(&errs);
        gh_conf_errors_free(&errs);
        return 1;
    }
    gh_conf_unref(c);
    printf("%s: ok\n", path);
    return 0;
}


static pthread_t main_thread;

#define TICKET_ROTATION_S (12 * 3600) /* a ticket key encrypts for 12 h, then decrypts for 36 h more */

/* From the DNS refresher's thread: a name's addresses changed. The main thread
 * rebuilds the configuration (SIGUSR1 wakes its sigwait). */
static void dns_changed(void *arg)
{
    (void)arg;
    pthread_kill(main_thread, SIGUSR1);
}

/* Start the DNS refresher once a configuration has a discovery: dns upstream. */
static int dns_follow(const gh_conf_t *c)
{
    static int started;
    if (!c->uses_dns || started)
        return 0;
    int rc = gh_dns_start(dns_changed, NULL);
    started = rc == 0;
    return rc;
}

/* Swap in a freshly loaded configuration n (consumes the caller's reference), or
 * refuse it; *cur follows the published one. what names the cause for the log;
 * rotate (an operator's reload) sends HTTP/2 connections a graceful GOAWAY. */
static gh_conf_t *g_cur; /* the configuration in force (a reference); changed under gh_cp_lock */

static int publish(gh_conf_t **cur, gh_conf_t *n, const char *what, int rotate)
{
    gh_conf_t *c = *cur;
    if (n->workers != c->workers)
        gh_log(GH_LOG_WARN, "%s: 'workers' changed from %u to %u; takes effect on restart", what, c->workers,
               n->workers);
    int same = n->nlisteners == c->nlisteners;
    for (uint32_t i = 0; same && i < n->nlisteners; i++)
        same = !strcmp(n->listeners[i].listen, c->listeners[i].listen) && n->listeners[i].role == c->listeners[i].role;
    if (!same)
        gh_log(GH_LOG_WARN, "%s: listener changes take effect on restart", what);
    if (n->protect.used && gh_protect_start(n) < 0) {
        gh_log(GH_LOG_ERROR, "%s rejected: protection could not start", what);
        gh_conf_unref(n);
        return -1;
    }
    if (gh_metrics_bind(n) < 0 || gh_health_bind(n) < 0 ||
        (n->cache.used && gh_cache_setup(n->cache.memory, n->cache.max_object) < 0)) {
        gh_log(GH_LOG_ERROR, "%s rejected: out of memory", what);
        gh_conf_unref(n);
        return -1;
    }
    if (n->exp.used && !gh_exp_running()) { /* the first experiments: the pipeline starts now */
        char err[512] = "";
        if (gh_exp_start(n, c->workers + 1, err, sizeof err) < 0)
            gh_log(GH_LOG_ERROR, "%s: experiments cannot start: %s", what, err);
    } else {
        gh_exp_config(n);
    }
    gh_workers_publish(n, rotate);
    gh_health_publish(n);
    if (n->uses_dns) {
        gh_dns_prune(n->dns_gen);
        if (dns_follow(n) < 0)
            gh_log(GH_LOG_ERROR, "%s: cannot start the DNS refresher: names are not followed", what);
    }
    *cur = n;
    gh_cp_adopt(n);
    gh_conf_unref(c);
    return 0;
}

/* The control plane's way in (admin API writes, other nodes' changes), under gh_cp_lock. */
static int publish_api(gh_conf_t *n, const char *what, int rotate)
{
    if (!g_cur) { /* stopping */
        gh_conf_unref(n);
        return -1;
    }
    return publish(&g_cur, n, what, rotate);
}

/* The main thread after start: reload on SIGHUP, rebuild on a DNS change (SIGUSR1),
 * drain on SIGTERM/SIGINT. Holds a reference to the configuration in force. */
#define LIST_POLL_S 2 /* seconds between looks at the ip_lists files */

static int serve(gh_conf_t *c, const char *path)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    gh_conf_ref(c);
    g_cur = c;
    gh_conf_t **curp = &g_cur;
#define cur (*curp)
    /* TLS session-ticket keys rotate on a timer; the previous ones still decrypt */
    struct timespec rotate_at;
    clock_gettime(CLOCK_MONOTONIC, &rotate_at);
    rotate_at.tv_sec += TICKET_ROTATION_S;
    for (;;) {
        struct timespec now, left = {0, 0};
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < rotate_at.tv_sec)
            left.tv_sec = rotate_at.tv_sec - now.tv_sec;
        gh_cp_lock();
        int watched = cur->protect.nlists || cur->nflag_files;
        gh_cp_unlock();
        if (watched && left.tv_sec > LIST_POLL_S)
            left.tv_sec = LIST_POLL_S; /* ip_lists and flag definition files are watched */
        int sig = sigtimedwait(&set, NULL, &left);
        int werr = errno;
        gh_cp_lock();
        if (sig < 0 && werr == EAGAIN && watched && cur->source &&
            (gh_protect_lists_changed(cur) || gh_conf_flag_files_changed(cur))) {
            gh_conf_t *n = NULL;
            gh_conf_errors_t errs = {0};
            if (gh_conf_load_layered(cur->path, cur->source, cur->source_len, cur->overlay, cur->overlay_len, &n,
                                     &errs) < 0) {
                for (uint32_t i = 0; i < errs.n; i++)
                    gh_log(GH_LOG_ERROR, "watched file update rejected (the previous contents stay): %s", errs.msgs[i]);
                gh_conf_errors_free(&errs);
                /* do not retry every poll: the next change (or SIGHUP) tries again */
                for (uint32_t i = 0; i < cur->ntenants; i++) {
                    struct stat st;
                    gh_conf_tenant_t *t = &cur->tenants[i];
                    if (t->flags.file && stat(t->flags.file, &st) == 0) {
                        t->flags.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                        t->flags.size = (int64_t)st.st_size;
                    }
                }
                for (uint32_t i = 0; i < cur->protect.nlists; i++) {
                    struct stat st;
                    if (stat(cur->protect.lists[i].file, &st) == 0) {
                        cur->protect.lists[i].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                        cur->protect.lists[i].size = (int64_t)st.st_size;
                    }
                }
            } else if (publish(&cur, n, "watched file update", 0) == 0) {
                gh_log(GH_LOG_INFO, "watched files (ip lists, flag definitions) reloaded");
            }
        }
        gh_cp_unlock();
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (sig < 0) {
            if (werr == EAGAIN && now.tv_sec >= rotate_at.tv_sec) {
                if (gh_tls_ticket_rotate() < 0)
                    gh_log(GH_LOG_ERROR, "TLS session ticket key rotation failed");
                else
                    gh_log(GH_LOG_INFO, "TLS session ticket keys rotated");
                rotate_at.tv_sec += TICKET_ROTATION_S;
            }
            continue;
        }
        if (sig == SIGHUP) {
            if (!path) {
                gh_log(GH_LOG_WARN, "SIGHUP: quick mode has no file to reload");
                continue;
            }
            gh_conf_t *n = NULL;
            gh_conf_errors_t errs = {0};
            size_t olen = 0;
            gh_cp_lock(); /* the file with the API's objects in force layered over it */
            const char *ov = gh_cp_overlay(&olen);
            if (gh_conf_load_file_layered(path, ov, olen, &n, &errs) < 0) {
                gh_cp_unlock();
                for (uint32_t i = 0; i < errs.n; i++)
                    gh_log(GH_LOG_ERROR, "reload rejected: %s", errs.msgs[i]);
                gh_conf_errors_free(&errs);
                gh_metrics_reload(0);
                continue;
            }
            int ok = publish(&cur, n, "reload", 1) == 0;
            gh_cp_unlock();
            gh_metrics_reload(ok);
            if (ok)
                gh_log(GH_LOG_INFO, "configuration reloaded from %s", path);
        } else if (sig == SIGUSR1) {
            /* the log files reopened (an outside rotation moved them); and the same text as
             * the configuration in force looked up anew: only DNS answers differ (a reload
             * of the file is the operator's call) */
            gh_accesslog_reopen();
            gh_cp_lock();
            if (!cur->source || !cur->uses_dns) {
                gh_cp_unlock();
                continue;
            }
            gh_conf_t *n = NULL;
            gh_conf_errors_t errs = {0};
            if (gh_conf_load_layered(cur->path, cur->source, cur->source_len, cur->overlay, cur->overlay_len, &n,
                                     &errs) < 0) {
                gh_cp_unlock();
                for (uint32_t i = 0; i < errs.n; i++)
                    gh_log(GH_LOG_ERROR, "DNS update rejected: %s", errs.msgs[i]);
                gh_conf_errors_free(&errs);
                continue;
            }
            if (publish(&cur, n, "DNS update", 0) == 0)
                gh_log(GH_LOG_INFO, "upstream addresses updated from DNS");
            gh_cp_unlock();
        } else {
            gh_log(GH_LOG_INFO, "%s: draining (up to %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   cur->drain_timeout);
            gh_workers_drain(cur->drain_timeout);
            gh_log(GH_LOG_INFO, "stopped");
            gh_cp_lock();
            gh_conf_unref(cur);
            cur = NULL;
            gh_cp_unlock();
            return 0;
        }
    }
}

#undef cur

static int start(gh_conf_t *file_conf, const char *path)
{
    gh_conf_t *c = NULL;
    if (gh_cp_start(file_conf, &c) < 0) /* the API's stored objects layered over the file */
        return 1;
    gh_conf_unref(file_conf);
    gh_cp_set_publisher(publish_api);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits it: signals reach sigwait */
    main_thread = pthread_self();

    if (gh_metrics_init(c->workers + 1) < 0 || gh_metrics_bind(c) < 0 || gh_health_bind(c) < 0) {
        gh_log(GH_LOG_ERROR, "out of memory");
        return 1;
    }
    gh_session_set_handler(GH_LISTEN_ADMIN, gh_admin_handle);
    gh_session_set_handler(GH_LISTEN_DEMO, gh_demo_handle);
    gh_session_set_handler(GH_LISTEN_OFREP, gh_ofrep_handle);
    gh_session_set_handler(GH_LISTEN_GRPC, gh_grpc_handle);
    if (c->access_log.enabled) {
        int rc = c->access_log.syslog
                     ? gh_accesslog_start_syslog(c->access_log.syslog, c->workers + 1, c->access_log.facility,
                                                 c->access_log.tag)
                     : gh_accesslog_start(c->access_log.path, c->workers + 1, c->access_log.max_size,
                                          c->access_log.keep);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "access log %s: %s", c->access_log.syslog ? c->access_log.syslog : c->access_log.path,
                   gh_err_msg(rc));
            return 1;
        }
    }
    if (c->tracing.enabled) {
        gh_trace_set_export(c->tracing.protocol, c->tracing.ca_file);
        int rc = gh_trace_start(c->tracing.endpoint, c->tracing.service_name, GH_VERSION, c->tracing.batch,
                                c->workers + 1);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "tracing %s: %s", c->tracing.endpoint, gh_err_msg(rc));
            return 1;
        }
    }
    if (c->exposure_log) {
        int rc = gh_exposurelog_start(c->exposure_log, c->workers + 1);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "exposure log %s: %s", c->exposure_log, gh_err_msg(rc));
            return 1;
        }
    }
    if (c->events.nats.url) { /* the event stream, before the producers that feed it */
        char err[512] = "";
        gh_stream_conf_t sc = {.url = c->events.nats.url, .stream = c->events.nats.stream,
                               .prefix = c->events.nats.prefix, .spool_dir = c->events.nats.spool_dir,
                               .spool_max = c->events.nats.spool_max, .node = c->node,
                               .kinds = c->events.nats.kinds, .max_age_ms = c->events.nats.max_age,
                               .max_bytes = c->events.nats.max_bytes, .on_purge = gh_admin_purge_remote};
        if (gh_stream_start(&sc, err, sizeof err) < 0) {
            gh_log(GH_LOG_ERROR, "events.nats: %s", err);
            return 1;
        }
        int rc = gh_accesslog_stream_start(c->workers + 1);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "events.nats: %s", gh_err_msg(rc));
            return 1;
        }
    }
    if (c->events.clickhouse.url) {
        char err[512] = "";
        gh_chsink_conf_t hc = {.nats_url = c->events.nats.url, .stream = c->events.nats.stream,
                               .prefix = c->events.nats.prefix, .consumer = c->events.clickhouse.consumer,
                               .url = c->events.clickhouse.url, .database = c->events.clickhouse.database,
                               .user = c->events.clickhouse.user, .password = c->events.clickhouse.password,
                               .batch = c->events.clickhouse.batch, .flush_ms = c->events.clickhouse.flush_ms};
        if (gh_chsink_start(&hc, err, sizeof err) < 0) {
            gh_log(GH_LOG_ERROR, "events.clickhouse: %s", err);
            return 1;
        }
    }
    {
        char err[512] = "";
        int rc = gh_exp_start(c, c->workers + 1, err, sizeof err);
        if (rc < 0) {
            gh_log(GH_LOG_ERROR, "experiments: %s", err[0] ? err : gh_err_msg(rc));
            return 1;
        }
    }
    gh_cache_set_waker(gh_worker_cache_poke);
    if (c->cache.used && gh_cache_setup(c->cache.memory, c->cache.max_object) < 0) {
        gh_log(GH_LOG_ERROR, "cache: out of memory");
        return 1;
    }
    /* protection's state tables (~110 MB at the default max_keys, committed at once) only
     * when something uses them; a reload that turns protection on starts them then */
    if ((c->protect.used && gh_protect_start(c) < 0) || gh_workers_start(c) < 0 || gh_health_start(c) < 0 || dns_follow(c) < 0 ||
        gh_slo_start() < 0) {
        gh_log(GH_LOG_ERROR, "could not start");
        return 1;
    }
    if (c->pid_file) {
        FILE *f = fopen(c->pid_file, "w");
        if (!f) {
            gh_log(GH_LOG_ERROR, "pid_file %s: %s", c->pid_file, strerror(errno));
        } else {
            fprintf(f, "%ld\n", (long)getpid());
            fclose(f);
        }
    }
    for (uint32_t i = 0; i < c->nlisteners; i++)
        gh_log(GH_LOG_INFO, "listening on %s (%s)", c->listeners[i].listen,
               c->listeners[i].role == GH_LISTEN_ADMIN  ? "admin"
               : c->listeners[i].role == GH_LISTEN_DEMO ? "demo origin"
                                                        : c->listeners[i].name);
    gh_log(GH_LOG_INFO, "gatehouse %s started with %u worker%s", GH_VERSION, c->workers,
           c->workers == 1 ? "" : "s");
    int rc = serve(c, path);
    gh_cp_stop(); /* no more admin writes or store changes from here */
    gh_exp_stop(); /* after the drain: the last publishes are committed and answered */
    gh_dns_stop();
    gh_health_stop();
    gh_slo_stop();
    gh_accesslog_stop(); /* its last round hands the stream what the workers left */
    gh_trace_stop();
    gh_chsink_stop();
    gh_stream_stop();
    if (c->pid_file)
        unlink(c->pid_file);
    /* c stays referenced: the listeners of the first configuration are used until exit */
    return rc;
}

static int set_log_level(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            gh_log_level = i;
            return 0;
        }
    fprintf(stderr, "gatehouse: unknown log level '%s'\n", s);
    return -1;
}

static int cmd_run(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_run, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--log-level") && i + 1 < argc && set_log_level(argv[i + 1]) < 0)
            return 2;
    const char *path = config_arg(argc, argv, "gatehouse.yaml");
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    gh_conf_set_tls_hello(gh_session_tls_hello);
    if (gh_conf_load_file(path, &c, &errs) < 0) {
        print_errors(&errs);
        gh_conf_errors_free(&errs);
        return 1;
    }
    return start(c, path);
}

static int cmd_proxy(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_proxy, stdout);
        return 0;
    }
    const char *from = NULL;
    const char **to = calloc((size_t)argc, sizeof(*to));
    int nto = 0, workers = 0, access_log = 0;
    if (!to)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--from") && i + 1 < argc)
            from = argv[++i];
        else if (!strcmp(argv[i], "--to") && i + 1 < argc)
            to[nto++] = argv[++i];
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--access-log"))
            access_log = 1;
        else {
            fprintf(stderr, "gatehouse proxy: unexpected argument '%s'\n%s", argv[i], usage_proxy);
            free(to);
            return 2;
        }
    }
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    int rc = (!from || !nto) ? 2 : gh_conf_quick(from, to, nto, &c, &errs) < 0 ? 1 : 0;
    free(to);
    if (rc == 2)
        fputs(usage_proxy, stderr);
    if (rc == 1) {
        print_errors(&errs);
        gh_conf_errors_free(&errs);
    }
    if (rc)
        return rc;
    if (workers > 0 && workers <= 256)
        c->workers = (uint32_t)workers;
    if (access_log) {
        c->access_log.enabled = 1;
        c->access_log.path = "-";
    }
    return start(c, NULL);
}

/* Flags only: a configuration with the OFREP listener and one tenant whose flags are FILE. */
static int cmd_flags(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_flags, stdout);
        return 0;
    }
    const char *file = NULL, *ofrep = "127.0.0.1:8016", *grpc = "127.0.0.1:8013";
    int workers = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--file") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--ofrep") && i + 1 < argc)
            ofrep = argv[++i];
        else if (!strcmp(argv[i], "--grpc") && i + 1 < argc)
            grpc = argv[++i];
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            workers = atoi(argv[++i]);
        else {
            fprintf(stderr, "gatehouse flags: unexpected argument '%s'\n%s", argv[i], usage_flags);
            return 2;
        }
    }
    if (!file || strpbrk(file, "\"\\\n") || strpbrk(ofrep, "\"\\\n") || strpbrk(grpc, "\"\\\n")) {
        fputs(usage_flags, stderr);
        return 2;
    }
    char yaml[8192];
    int n = snprintf(yaml, sizeof yaml,
                     "access_log: {enabled: false}\n"
                     "ofrep: {listen: \"%s\"}\n"
                     "flagd_grpc: {listen: \"%s\"}\n"
                     "tenants:\n  - name: flags\n    flags: {file: \"%s\"}\n    sites: []\n",
                     ofrep, grpc, file);
    if (n < 0 || (size_t)n >= sizeof yaml) {
        fputs(usage_flags, stderr);
        return 2;
    }
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    if (gh_conf_load_string("gatehouse flags", yaml, (size_t)n, &c, &errs) < 0) {
        print_errors(&errs);
        gh_conf_errors_free(&errs);
        return 1;
    }
    if (workers > 0 && workers <= 256)
        c->workers = (uint32_t)workers;
    return start(c, NULL);
}

/* SIGHUP to the pid in pid_file (of the configuration at path). */
static int signal_pid_file(const char *pid_file, const char *path)
{
    if (!pid_file) {
        fprintf(stderr, "gatehouse reload: %s sets no pid_file\n", path);
        return 1;
    }
    FILE *f = fopen(pid_file, "r");
    long pid = 0;
    if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "gatehouse reload: cannot read a pid from %s\n", pid_file);
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGHUP) < 0) {
        fprintf(stderr, "gatehouse reload: pid %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("sent SIGHUP to %ld\n", pid);
    return 0;
}

static const char usage_experiments[] =
    "usage: gatehouse experiments results ID --tenant T [-c FILE | --admin ADDR] [--json]\n"
    "  Asks the running gateway's admin listener (the one of FILE, or ADDR, default 127.0.0.1:9090)\n"
    "  for GET /v1/experiments/ID/results?tenant=T and prints it as a table (or the JSON).\n";

static int cmd_experiments(int argc, char **argv)
{
    if (wants_help(argc, argv) || argc < 3 || strcmp(argv[1], "results")) {
        fputs(usage_experiments, argc < 3 ? stderr : stdout);
        return wants_help(argc, argv) ? 0 : 2;
    }
    const char *id = argv[2], *tenant = NULL, *admin = NULL, *path = NULL;
    int as_json = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--tenant") && i + 1 < argc)
            tenant = argv[++i];
        else if (!strcmp(argv[i], "--admin") && i + 1 < argc)
            admin = argv[++i];
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            path = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else {
            fprintf(stderr, "gatehouse experiments: unexpected argument '%s'\n%s", argv[i], usage_experiments);
            return 2;
        }
    }
    if (!tenant) {
        fputs(usage_experiments, stderr);
        return 2;
    }
    gh_conf_t *c = NULL;
    char addr[300] = "127.0.0.1:9090";
    if (admin) {
        snprintf(addr, sizeof addr, "%s", admin);
    } else if (path) {
        gh_conf_errors_t errs = {0};
        if (gh_conf_load_file(path, &c, &errs) < 0) {
            print_errors(&errs);
            gh_conf_errors_free(&errs);
            return 1;
        }
        for (uint32_t i = 0; i < c->nlisteners; i++)
            if (c->listeners[i].role == GH_LISTEN_ADMIN)
                snprintf(addr, sizeof addr, "%s", c->listeners[i].listen);
        gh_conf_unref(c);
    }
    char url[1100], eid[512], et[512];
    size_t a = 0, b = 0;
    for (const char *p = id; *p && a + 4 < sizeof eid; p++) /* percent-encode all but unreserved */
        a += (size_t)snprintf(eid + a, sizeof eid - a, isalnum((unsigned char)*p) || strchr("-._~", *p) ? "%c" : "%%%02X", (unsigned char)*p);
    for (const char *p = tenant; *p && b + 4 < sizeof et; p++)
        b += (size_t)snprintf(et + b, sizeof et - b, isalnum((unsigned char)*p) || strchr("-._~", *p) ? "%c" : "%%%02X", (unsigned char)*p);
    eid[a] = et[b] = 0;
    snprintf(url, sizeof url, "/v1/experiments/%s/results?tenant=%s", eid, et);
    gh_ctl_resp_t resp = {0};
    char herr[256];
    const char *key = getenv("GATEHOUSE_ADMIN_KEY");
    char auth[600] = "";
    if (key && *key && strlen(key) < 500)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
    int hrc = gh_ctl_http(addr, "GET", url, auth, NULL, 0, &resp, herr, sizeof herr);
    explicit_bzero(auth, sizeof auth);
    int status = resp.status;
    char *body = hrc == 0 ? resp.body : NULL;
    resp.body = NULL;
    gh_ctl_resp_free(&resp);
    if (!body) {
        fprintf(stderr, "gatehouse experiments: cannot reach the admin listener at %s\n", addr);
        return 1;
    }
    json_t *doc = json_loads(body, 0, NULL);
    int rc = 0;
    if (status != 200 || !doc) {
        fprintf(stderr, "gatehouse experiments: %d: %s\n", status,
                doc && json_is_string(json_object_get(doc, "detail")) ? json_string_value(json_object_get(doc, "detail")) : body);
        rc = 1;
    } else if (as_json) {
        fputs(body, stdout);
    } else if (gh_exp_print_results(stdout, doc) < 0) {
        fprintf(stderr, "gatehouse experiments: unexpected answer\n");
        rc = 1;
    }
    json_decref(doc);
    free(body);
    return rc;
}

static int cmd_reload(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(usage_reload, stdout);
        return 0;
    }
    const char *path = config_arg(argc, argv, NULL);
    if (!path) {
        fputs(usage_reload, stderr);
        return 2;
    }
    gh_conf_t *c = NULL;
    gh_conf_errors_t errs = {0};
    if (gh_conf_load_file(path, &c, &errs) < 0) {
        print_errors(&errs);
        gh_conf_errors_free(&errs);
        return 1;
    }
    int rc = signal_pid_file(c->pid_file, path);
    gh_conf_unref(c);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "validate"))
        return cmd_validate(argc - 1, argv + 1);
    if (!strcmp(cmd, "proxy"))
        return cmd_proxy(argc - 1, argv + 1);
    if (!strcmp(cmd, "reload"))
        return cmd_reload(argc - 1, argv + 1);
    if (!strcmp(cmd, "flags"))
        return cmd_flags(argc - 1, argv + 1);
    if (!strcmp(cmd, "experiments"))
        return cmd_experiments(argc - 1, argv + 1);
    if (!strcmp(cmd, "ctl"))
        return gh_ctl_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "version") && wants_help(argc - 1, argv + 1)) {
        fputs("usage: gatehouse version\n  Prints the version.\n", stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("gatehouse %s\n", GH_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_main, stdout);
        return 0;
    }
    fprintf(stderr, "gatehouse: unknown command '%s'\n%s", cmd, usage_main);
    return 2;
}
