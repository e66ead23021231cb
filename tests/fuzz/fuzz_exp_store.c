/* fuzz_exp_store.c: libFuzzer target for the experiments store as read back at start
 * (src/experiments/exp.c): whatever a frame of the log (exposures 'X', events, snapshots) or of
 * the edge-snapshot file ('V' and 'W' records) holds, as long as its CRC is right (a frame with a
 * wrong one never reaches the record parsers: evlog.c stops there, fuzzed by the unit tests'
 * corruption cases), a start replays it without crashing, reading out of bounds or leaking, and
 * the results can be read. Input: byte 0 picks the file (even: the log, odd: the edges), the rest
 * is the frame's payload, written through gh_evlog so its framing and CRC are valid.
 * Crashes, leaks and overreads are ASan's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "core/log.h"
#include "experiments/evlog.h"
#include "experiments/exp.h"

static char dir[64];
static gh_conf_t *conf;

#include "../unit/exp_yaml.h" /* YAML: the configuration the store's unit tests use */

static void remove_store(void)
{
    static const char *const names[] = {"exp.db", "exp.db.evlog", "exp.db.edges", "exp.db-journal", "exp.db.edges.tmp"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

/* At the fuzzer's exit: its store and directory go too. */
static void remove_dir(void)
{
    remove_store();
    rmdir(dir);
}

static int setup(void)
{
    snprintf(dir, sizeof dir, "/dev/shm/gh-fuzz-exp-%d", (int)getpid());
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -1;
    atexit(remove_dir);
    char yaml[sizeof YAML + 64];
    snprintf(yaml, sizeof yaml, YAML, dir);
    gh_conf_errors_t errs;
    memset(&errs, 0, sizeof errs);
    return gh_conf_load_string("fuzz.yaml", yaml, strlen(yaml), &conf, &errs) == 0 ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!conf && setup() < 0)
        __builtin_trap();
    if (size < 1)
        return 0;
    gh_log_level = GH_LOG_ERROR; /* (replay warnings are expected here) */
    remove_store();
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, data[0] & 1 ? "exp.db.edges" : "exp.db.evlog");
    gh_evlog_t *l = NULL;
    if (gh_evlog_open(&l, path, NULL, err, sizeof err) < 0)
        __builtin_trap();
    uint8_t *p = size > 1 ? gh_evlog_put(l, size - 1) : NULL;
    if (p)
        memcpy(p, data + 1, size - 1);
    if (gh_evlog_flush(l, 0) < 0)
        __builtin_trap();
    gh_evlog_close(l);
    if (gh_exp_start(conf, 1, err, sizeof err) == 0 && gh_exp_running()) {
        int st = 0;
        json_t *r = gh_exp_results("shop", "home-test", &st, err, sizeof err);
        if (!r)
            __builtin_trap(); /* a started store always answers for its experiment */
        json_decref(r);
        gh_exp_stop();
    }
    return 0;
}
