#!/usr/bin/env bash
# bench/experiments.sh: experiments benchmark (issue 8): how fast the experiment pipeline ingests
# exposures and metric events, and what recording exposures costs on the proxy path. After `make`.
#
#   bash bench/experiments.sh        all parts, ~17 min on the 2-vCPU VM (RUNS=5: ~19 min; + at most NOISE_BUDGET s on a noisy box)
#
# Issue 8's targets: "events ingested per second on one core into the aggregators (at least 1 million
# per second with no per-event disk write on the hot path), and the added cost of exposure logging on
# the proxy path (under 3% of throughput)".
#
# Before anything is measured the script waits (polling every 20 s, at most WAIT_MAX s) until no
# bench/flags.sh runs (another benchmark on this 2-core box would disturb both), and it pauses again
# before any run if one started meanwhile (WAIT_MAX bounds all the waits together).
#
# Part "ingest", in-process: bench/experiments/ingest.c linked against build/libgatehouse.a (a copy)
# with the pkg-config libs of the Makefile's PKGS. It loads a configuration from a YAML string
# (gh_conf_load_string: one tenant, the flag new-home inline as a 50/50 fractional flag, one experiment
# with 3 metrics on the event purchase: conversion, mean of payload.amount, ratio sum(amount) /
# purchases), starts the pipeline (gh_exp_start(conf, 1, ...), one producer slot) with its store (the
# append-only log exp.db.evlog, and SQLite exp.db for edge snapshots) in a fresh directory, and runs
# three phases (details in ingest.c's header):
#   expose-new    EXPOSURES first exposures through gh_exp_expose (each a new unit: a 33-byte record
#                 in the log's pending frame, written at least every 200 ms, no fdatasync);
#   expose-again  the same units again (aggregation only);
#   events        EVENTS purchase events for exposed units, unique eventIds, in publishes of 1000
#                 through gh_exp_publish with a done callback, at most INFLIGHT publishes waiting for
#                 their commit at a time; rate = events whose publish was answered (in the log,
#                 fdatasync'ed, and aggregated) per second.
# Then a restart on the same store (gh_exp_start again: the log replayed) with its time and a check
# that the results equal those before the stop.
# exp.c does not tell a producer that its ring (32768 records) is full (the record is dropped and only
# counted internally), so ingest keeps at most WINDOW (8192) exposures outstanding by polling
# gh_exp_results' exposure_records_since_start; every run checks afterwards that nothing was lost and
# that units per variant and the three metrics' values equal what was sent.
# Store on disk (STORE_DISK, default this script's temp dir under /tmp: the VM's virtio disk) and on
# tmpfs (/dev/shm), to show what the disk costs. Two core layouts: "split": the pipeline thread pinned
# to core SERVER_CPU and the producer (body writing + gh_exp_publish's JSON parse, or gh_exp_expose) to
# core CLIENT_CPU; "shared": both on core SERVER_CPU (everything on one core). Figures: wall rate,
# pipeline thread CPU ns per record (pthread_getcpuclockid on the thread the done callback runs on),
# producer CPU ns per record inside gatehouse's calls (parse) and writing bodies (gen), and the
# "one-core rate" 1e9 / (pipeline ns + parse ns); write syscalls and bytes written to the storage
# layer per phase (/proc/self/io). INGEST_RUNS rounds of the 4 combinations (order rotating), a busy
# check before each run and the other load on both cores measured during it (repeated once if over
# OTHER_MAX). STRACE=1 (default, if strace exists) adds one smaller run (EXPOSURES/5, EVENTS/5, disk,
# split) under strace -f -c to count write/pwrite64/fsync/fdatasync calls (not used for rates).
#
# Part "proxy", exposure logging on the proxy path: gatehouse `workers: 1`, access log off, on core
# SERVER_CPU; an nginx origin (worker_processes 1, access log off, `return 200` of 100 bytes) and
# wrk -t1 -cCONNS -dDURATION --latency -s experiments/uid.lua (a `Cookie: uid=<random>` per request,
# drawn from a pool of POOL random uids per run; POOL=0: a new uid per request) both on core CLIENT_CPU.
# The whole part runs once per pool size in POOLS (default "100000 1000": most requests from units seen
# for the first time or rarely, then mostly returning units; the pipeline's work grows with new units
# (a log record each) and with the units active per 2 s SQLite snapshot of edge values, so the pool
# matters). One
# route, upstream the origin (keep-alive), `flag: {key: new-home, unit: "cookie:uid"}`:
#   A  the flag route, no experiment, no exposure_log (the flag is evaluated, the variant header set);
#   B  A + `experiments: {store}` and the tenant's experiment on new-home (the test suite's: 3 event
#      metrics, a /checkout path metric, an edge latency guardrail): an exposure and an edge
#      observation record per request to the pipeline thread (same process, same core);
#   C  B + `exposure_log: FILE` (one JSON line per request, written by the log writer thread).
# A fresh gatehouse (and store) per run; RUNS rounds, the configurations' order rotating (A B C, B C A,
# C A B); 1 s warm-up and a busy check before each run. Per run: req/s, p50/p99, gatehouse CPU µs per
# request (its threads' utime+stime / requests; split into the busiest thread, the worker, and the
# others: pipeline, log writer, admin), and after the run from the admin listener: route requests
# (gatehouse_requests_total), exposure records the pipeline applied once they stop changing (B, C:
# lost = route requests - records: the ring dropped them), units, exposure log lines (C) and
# gatehouse_access_log_dropped_total. Report, per pool: medians (min..max) over all runs (noisy ones
# counted and marked), the ratios B/A and C/A of req/s and of CPU µs/req within each round (a round's
# three runs are adjacent in time) and their medians, and the throughput loss that the CPU cost means
# once gatehouse's core is saturated (1 - cpu_A / cpu_B): with the origin and wrk on the other core,
# gatehouse's core is not saturated here, so req/s alone understates the cost.
#
# Part "pair", the same cost measured side by side: two gatehouses (workers 1, fresh stores), one
# with configuration P and one with Q, both on core SERVER_CPU at the same time, each loaded by its
# own wrk -t1 -c(CONNS/2) (uid.lua, the same pool) on core CLIENT_CPU with the origin, for
# PAIR_DURATION s after a 1 s warm-up; per process, its threads' CPU time from
# /proc/PID/task/*/schedstat (ns) over those seconds / its requests, and the ratio Q/P. Sequential
# runs on this shared VM see the machine change between runs (per-round CPU ratios of identical
# configurations spread over +-20 %); two processes measured over the same seconds share every such
# change, and the A:A control shows what is left (+-1 %). Configurations as above, plus X: A + an
# experiment whose metrics are events only (exposure records, no observations: exposure logging
# alone). PAIRS ("A:A A:X A:B") PAIR_RUNS (5) rounds per pool in POOLS; which process gets the first
# ports alternates. Report: per pair, the median CPU ratio (per round), the loss at saturation
# 1 - 1/ratio, the req/s ratio, and lost records (route requests - exposure records applied).
#
# Part "aa": bash bench/experiments/aa_sim.sh (the A/A simulation of the statistics, ~3 s), AA=0 skips.
#
# Environment: PARTS ("ingest proxy pair aa") PAIRS ("A:A A:X A:B") PAIR_RUNS (5) PAIR_DURATION (8) EXPOSURES (500000) EVENTS (1000000) INFLIGHT (4) WINDOW (8192)
# INGEST_RUNS (3) PROXY_CFGS ("A B C": the proxy configurations run, e.g. "B" alone for the pipeline's own CPU) STORE_DISK (temp dir) STRACE (1) DURATION (10) RUNS (3) CONNS (64) POOLS ("100000 1000")
# BUSY_MAX (30) BUSY_WAIT (20) OTHER_MAX (10) NOISY_RETRIES (1) NOISE_BUDGET (90) WAIT_MAX (1500)
# GATEHOUSE_BIN (./build/gatehouse) GH_LIB (./build/libgatehouse.a) SERVER_CPU (0) CLIENT_CPU (1)
# KEEP_TMP.
# Quick check: EXPOSURES=50000 EVENTS=50000 INGEST_RUNS=1 DURATION=2 RUNS=1 POOLS=1000 bash bench/experiments.sh (~1 min).
# Outputs: the summary on stdout and in bench/out/experiments-<stamp>.md; raw runs in
# bench/out/experiments-{ingest,proxy}-raw-<stamp>.tsv; the configuration C of the first pool (B + exposure_log;
# A is it without experiments, experiments: and exposure_log:) in bench/out/experiments-config-C-<stamp>.yaml.

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

KNOBS="PARTS PAIRS PAIR_RUNS PAIR_DURATION EXPOSURES EVENTS INFLIGHT WINDOW INGEST_RUNS STORE_DISK STRACE DURATION RUNS CONNS POOLS BUSY_MAX BUSY_WAIT
OTHER_MAX NOISY_RETRIES NOISE_BUDGET WAIT_MAX GATEHOUSE_BIN GH_LIB SERVER_CPU CLIENT_CPU"
CMDLINE=""
for k in $KNOBS; do [ -n "${!k+x}" ] && CMDLINE="$CMDLINE$k=$(printf '%q' "${!k}") "; done
CMDLINE="${CMDLINE}bash bench/experiments.sh${*:+ $*}"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

PARTS=${PARTS:-ingest proxy pair aa}
PAIRS=${PAIRS:-A:A A:X A:B}
PAIR_RUNS=${PAIR_RUNS:-5}
PAIR_DURATION=${PAIR_DURATION:-8}
EXPOSURES=${EXPOSURES:-500000}
EVENTS=${EVENTS:-1000000}
INFLIGHT=${INFLIGHT:-4}
WINDOW=${WINDOW:-8192}
INGEST_RUNS=${INGEST_RUNS:-3}
STRACE=${STRACE:-1}
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
PROXY_CFGS=${PROXY_CFGS:-A B C}
CONNS=${CONNS:-64}
POOLS=${POOLS:-100000 1000}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-10}
NOISY_RETRIES=${NOISY_RETRIES:-1}
NOISE_BUDGET=${NOISE_BUDGET:-90}
WAIT_MAX=${WAIT_MAX:-1500}
GH_LIB=${GH_LIB:-$GH_ROOT/build/libgatehouse.a}
NOISE_SPENT=0
# the Makefile's PKGS (the library needs all of them)
PKGS=$(sed -n 's/^PKGS *:= *//p' "$GH_ROOT/Makefile")
[ -n "$PKGS" ] || PKGS="yaml-0.1 libpcre2-8 libcares openssl libnghttp2 hiredis libmaxminddb jansson libprotobuf-c sqlite3 libpq luajit libnats zlib"
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

for t in wrk curl taskset ss awk ps cc pkg-config timeout sha256sum nginx /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
[ "$STRACE" = 1 ] && ! command -v strace >/dev/null && { log "strace not found: no syscall counts (STRACE=0)"; STRACE=0; }

# ---------------------------------------------------------------- wait for bench/flags.sh

# The pattern's [f] keeps pgrep from matching a shell whose own command line holds this text.
flags_bench_running() { pgrep -f 'bench/[f]lags\.sh' 2>/dev/null | grep -vx "$$" | grep -q .; }
T_WAIT0=$(date +%s)
if flags_bench_running; then
    log "bench/flags.sh is running: waiting for it to finish (poll every 20 s, at most ${WAIT_MAX}s)"
    while flags_bench_running; do
        if [ $(($(date +%s) - T_WAIT0)) -ge "$WAIT_MAX" ]; then die "bench/flags.sh still runs after ${WAIT_MAX}s: not measuring beside it"; fi
        sleep 20
    done
    log "bench/flags.sh finished after $(($(date +%s) - T_WAIT0))s of waiting"
fi
WAITED_FOR_FLAGS=$(($(date +%s) - T_WAIT0))
# flags_pause: before each measured run, wait again if a bench/flags.sh started meanwhile (within the
# same WAIT_MAX in total); the waits are added to WAITED_FOR_FLAGS and logged.
flags_pause() {
    local t0
    flags_bench_running || return 0
    t0=$(date +%s)
    log "bench/flags.sh started meanwhile: pausing until it ends"
    while flags_bench_running && [ "$WAITED_FOR_FLAGS" -lt "$WAIT_MAX" ]; do
        sleep 20; WAITED_FOR_FLAGS=$((WAITED_FOR_FLAGS + 20))
    done
    flags_bench_running && die "bench/flags.sh still runs after ${WAIT_MAX}s of waiting in all: stopping"
    log "bench/flags.sh ended after $(($(date +%s) - t0))s"
}

bench_init
T_START=$(date +%s)
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
STORE_DISK=${STORE_DISK:-$TMPD}
ING_TSV=$TMPD/ingest.tsv
PRX_TSV=$TMPD/proxy.tsv
INFO=$TMPD/info.tsv
printf 'run\tstore\tlayout\tphase\trecords\twall_s\trate\tpipe_cpu_s\tpipe_ns\tparse_ns\tgen_ns\tproc_cpu_s\tother_cpu_s\tone_core_rate\tsyscw\twrite_kb\tlost\tbusy_before\tcore0_busy\tcore1_busy\tother_cpu0\tother_cpu1\tattempts\tstatus\n' >"$ING_TSV"
printf 'pool\tround\tconfig\trequests\trps\tp50_ms\tp99_ms\tgh_us_req\tworker_us_req\tother_threads_us_req\terrors\troute_requests\texposure_records\tunits\tlog_lines\tlog_dropped\tbusy_before\tcore0_busy\tcore1_busy\tother_cpu0\tother_cpu1\tattempts\tstatus\n' >"$PRX_TSV"
: >"$INFO"
info() { printf '%s\t%s\n' "$1" "$2" >>"$INFO"; }
SHM_DIRS=()
cleanup_shm() { local d; for d in "${SHM_DIRS[@]+"${SHM_DIRS[@]}"}"; do rm -rf "$d"; done; }
trap 'cleanup_shm; bench_cleanup' EXIT

# run_bg TIMEOUT OUT CMD...: CMD in the background (its PID in STARTED_PIDS, so the trap stops it), waited for.
run_bg() {
    local to=$1 out=$2 p rc; shift 2
    timeout -k 2 "$to" "$@" >"$out" 2>"$out.err" </dev/null &
    p=$!
    STARTED_PIDS+=("$p")
    wait "$p"; rc=$?
    forget_pid "$p"
    return $rc
}

GH_OK=0 ING_OK=0
gatehouse_available && GH_OK=1 || log "SKIP: $GATEHOUSE_BIN not found (run make): part proxy is 'pending'"
ING=$TMPD/ingest
if [ -f "$GH_LIB" ]; then
    GH_LIB_SHA=$(sha256sum "$GH_LIB" | cut -c1-16)
    GH_LIB_DATE=$(date -r "$GH_LIB" '+%Y-%m-%d %H:%M')
    cp "$GH_LIB" "$TMPD/libgatehouse.a"
    # shellcheck disable=SC2046
    if cc -std=gnu11 -D_GNU_SOURCE= -O2 -g -Wall -Wextra -pthread -I"$GH_ROOT/src" $(pkg-config --cflags $PKGS 2>/dev/null) -o "$ING" \
        "$HERE/experiments/ingest.c" "$TMPD/libgatehouse.a" $(pkg-config --libs $PKGS 2>/dev/null) -pthread -lm 2>"$TMPD/cc.err"; then
        ING_OK=1
    else
        log "ingest did not build against $GH_LIB:"; head -20 "$TMPD/cc.err" >&2
    fi
else
    log "SKIP: $GH_LIB not found (run make): part ingest is 'pending'"
fi

machine() {
    echo "nproc: $(nproc --all); $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); kernel $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: //')"
    echo "disk for the store: $(df -P "$STORE_DISK" | awk 'NR == 2 { print $1 }') ($(stat -f -c %T "$STORE_DISK")) at $STORE_DISK; tmpfs: /dev/shm"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'); nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'); sqlite3 lib: $(pkg-config --modversion sqlite3)"
    echo "cc: $(cc --version | head -1)"
    [ "$GH_OK" = 1 ] && echo "gatehouse: $GH_BIN_SRC, sha256 $GH_BIN_SHA, built $GH_BIN_DATE ($("$GH_BIN_COPY" version 2>/dev/null | head -1))"
    [ -n "${GH_LIB_SHA:-}" ] && echo "libgatehouse.a: $GH_LIB, sha256 $GH_LIB_SHA, built $GH_LIB_DATE (ingest: cc -O2, $([ "$ING_OK" = 1 ] && echo built || echo 'did not build'))"
    echo "waited ${WAITED_FOR_FLAGS}s for bench/flags.sh before starting"
}
machine | sed 's/^/  /' >&2

# ---------------------------------------------------------------- part 1: in-process ingest

# run_ingest RUN STORE(disk|shm) LAYOUT(split|shared): one ingest process; its phase lines into ING_TSV.
run_ingest() {
    local run=$1 store=$2 layout=$3 out=$TMPD/ingest-$1-$2-$3.txt attempt dir c0 c1 s0 s1 b0 b1 o0 o1 ours0
    local pcpu=$SERVER_CPU qcpu=$CLIENT_CPU to=$((EXPOSURES / 10000 + EVENTS / 5000 + 120)) ok=1
    [ "$layout" = shared ] && qcpu=$SERVER_CPU
    FLAG=ok
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        if [ "$store" = shm ]; then dir=$(mktemp -d /dev/shm/gh-exp-bench.XXXXXX); SHM_DIRS+=("$dir")
        else dir=$(mktemp -d "$STORE_DISK/gh-exp-store.XXXXXX"); fi
        flags_pause
        calm_down
        c0=$(cpu_cores); s0=$(self_ticks)
        run_bg "$to" "$out" "$ING" "$dir" "$EXPOSURES" "$EVENTS" "$pcpu" "$qcpu" "$INFLIGHT" "$WINDOW" || ok=0
        s1=$(self_ticks); c1=$(cpu_cores)
        rm -rf "$dir"
        if [ "$ok" = 0 ] || ! grep -q '^result	ok' "$out"; then
            log "ingest run $run ($store, $layout) failed:"; grep -E '^(check|result)' "$out" | grep -v 'expected	[^	]*$' >&2
            tail -5 "$out.err" >&2; grep '^result' "$out" >&2
            FLAG="$FLAG,FAILED"
            break
        fi
        # ticks of our own work on core SERVER_CPU: the pipeline thread (split) or the whole process (shared)
        if [ "$layout" = split ]; then
            ours0=$(awk -F'\t' -v k="$CLK_TCK" '$1 !~ /^#/ && NF > 10 { s += $5 } END { printf "%.0f", s * k }' "$out")
        else
            ours0=$((s1 - s0))
        fi
        read -r o0 o1 _ <<<"$(other_load "$c0" "$c1" "$ours0" $((s1 - s0 - ours0)))"
        read -r b0 b1 <<<"$(core_busy "$c0" "$c1")"
        if [ "$o0" -gt "$OTHER_MAX" ] || { [ "$layout" = split ] && [ "$o1" -gt "$OTHER_MAX" ]; }; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + 10))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during ingest run $run ($store, $layout): repeating it"
                FLAG=ok; sleep 1; continue
            fi
        fi
        break
    done
    FLAG=${FLAG#ok,}
    read -r -a bb <<<"$BUSY"
    awk -F'\t' -v r="$run" -v st="$store" -v ly="$layout" -v bb="${bb[0]}" -v b0="${b0:-}" -v b1="${b1:-}" -v o0="${o0:-}" -v o1="${o1:-}" -v a="$attempt" -v fl="$FLAG" \
        '$1 ~ /^(expose-new|expose-again|events)$/ { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
            r, st, ly, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, bb, b0, b1, o0, o1, a, fl }' "$out" >>"$ING_TSV"
    log "  ingest run $run $store $layout: $(awk -F'\t' '$1 ~ /^(expose-new|expose-again|events)$/ { printf "%s %.0f/s (pipeline %s ns, parse %s ns); ", $1, $4, $6, $7 }' "$out")cores busy ${b0:-?}/${b1:-?}%, other ${o0:-?}/${o1:-?}% $([ "$FLAG" = ok ] || echo "[$FLAG]")"
}

if has_part ingest && [ "$ING_OK" = 1 ]; then
    log "part ingest: $INGEST_RUNS rounds x {disk, shm} x {split, shared}; $EXPOSURES exposures (new, then again), $EVENTS events in publishes of 1000 ($INFLIGHT in flight)"
    COMBOS=("disk split" "shm split" "disk shared" "shm shared")
    for ((r = 1; r <= INGEST_RUNS; r++)); do
        for ((k = 0; k < ${#COMBOS[@]}; k++)); do
            read -r st ly <<<"${COMBOS[$(((k + r - 1) % ${#COMBOS[@]}))]}"
            run_ingest "$r" "$st" "$ly"
        done
    done
    # the checks of the last run, for the report
    last=$(ls -t "$TMPD"/ingest-*-*-*.txt 2>/dev/null | head -1)
    [ -n "$last" ] && grep -E '^(check|store|restart|result)' "$last" | sed 's/^/    /' >"$TMPD/ingest-checks.txt"
    info ingest_checks_of "$(basename "$last")"
    if [ "$STRACE" = 1 ]; then
        dir=$(mktemp -d "$STORE_DISK/gh-exp-store.XXXXXX")
        SE=$((EXPOSURES / 5)) SV=$((EVENTS / 5))
        if run_bg 300 "$TMPD/strace-run.txt" strace -f -c -o "$TMPD/strace.txt" -e trace=write,pwrite64,fsync,fdatasync,pread64,read \
            "$ING" "$dir" "$SE" "$SV" "$SERVER_CPU" "$CLIENT_CPU" "$INFLIGHT" "$WINDOW"; then
            info strace "$SE exposures (x2: new, again) and $SV events, disk, split: $(awk '$NF ~ /^(write|pwrite64|fsync|fdatasync|pread64|read)$/ { printf "%s%s %s", (n++ ? ", " : ""), $NF, $4 }' "$TMPD/strace.txt")"
            log "  under strace: $(tail -1 "$INFO" | cut -f2-)"
        else
            log "strace run failed"; tail -3 "$TMPD/strace-run.txt.err" >&2
        fi
        rm -rf "$dir"
    fi
elif has_part ingest; then
    log "part ingest: ingest not built: pending"
fi

# ---------------------------------------------------------------- part 2: exposure logging on the proxy path

pick_ports 5
PORT=${PORTS[0]} OPORT=${PORTS[1]} APORT=${PORTS[2]} PORT2=${PORTS[3]} APORT2=${PORTS[4]}

FLAGDEF='        flags:
          new-home:
            state: ENABLED
            variants: {"on": true, "off": false}
            defaultVariant: "off"
            targeting: {fractional: [["on", 50], ["off", 50]]}'

# gen_gh_conf CONFIG(A|X|B|C) DIR: gatehouse's configuration for that run into DIR/gatehouse.yaml
# (listening on $PORT, admin on $APORT).
gen_gh_conf() {
    local cfg=$1 d=$2
    {
        echo "workers: 1"
        echo "access_log: off"
        echo "admin: {listen: \"127.0.0.1:$APORT\"}"
        echo "listeners: [{name: http, listen: \"127.0.0.1:$PORT\"}]"
        [ "$cfg" != A ] && echo "experiments: {store: \"$d/exp.db\"}"
        [ "$cfg" = C ] && echo "exposure_log: \"$d/exposures.jsonl\""
        echo "upstreams:"
        echo "  origin: {backends: [\"127.0.0.1:$OPORT\"], keepalive: 1024}"
        echo "tenants:"
        echo "  - name: shop"
        echo "    flags:"
        echo "      definition:"
        echo "$FLAGDEF"
        if [ "$cfg" != A ]; then
            cat <<'EOF'
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics:
          - {name: purchase, kind: conversion, event: purchase}
          - {name: revenue, kind: mean, event: purchase, value: amount, cuped: true}
          - {name: aov, kind: ratio, event: purchase, value: amount, denominator: {event: purchase}}
EOF
            [ "$cfg" != X ] && cat <<'EOF'
          - {name: checkout, kind: conversion, path: /checkout}
          - {name: latency, kind: ratio, edge: latency_ms, denominator: {edge: requests}, direction: decrease, guardrail: true}
EOF
        fi
        echo "    sites:"
        echo "      - hosts: [\"*\"]"
        echo "        routes:"
        echo "          - name: home"
        echo "            upstream: origin"
        echo "            flag: {key: new-home, unit: \"cookie:uid\"}"
    } >"$d/gatehouse.yaml"
}

# thread_ticks PID: "TID TICKS" per thread of PID (utime+stime).
thread_ticks() {
    local f l a
    for f in /proc/"$1"/task/*/stat; do
        read -r l <"$f" 2>/dev/null || continue
        a=${l%% *}; l=${l##*) }
        read -r -a x <<<"$l"
        echo "$a $((x[11] + x[12]))"
    done
}

# wrk_start CONNECTIONS DURATION PORT OUT [ARGS...]: wrk with uid.lua (pool POOL, its own uids) on
# core CLIENT_CPU in the background, its output in OUT; its PID in WRK_PID (stopped by the trap).
wrk_start() {
    local c=$1 d=$2 port=$3 out=$4; shift 4
    timeout -k 2 $((d + 20)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$c" -d"${d}s" "$@" -s "$HERE/experiments/uid.lua" \
        "http://127.0.0.1:$port/" -- "$POOL" "$RANDOM" >"$out" 2>&1 </dev/null &
    WRK_PID=$!
    STARTED_PIDS+=("$WRK_PID")
}

wrk_uid() {   # wrk_uid DURATION OUT [ARGS...]: one load of CONNS connections on PORT, waited for
    local d=$1 out=$2; shift 2
    wrk_start "$CONNS" "$d" "$PORT" "$out" "$@"
    wait "$WRK_PID"
    forget_pid "$WRK_PID"
}

# admin_figures CONFIG DIR: "route_requests exposure_records units log_lines log_dropped" after a run.
admin_figures() {
    local cfg=$1 d=$2 m rr recs=- units=- lines=- dropped
    m=$(curl -s -m 3 "http://127.0.0.1:$APORT/metrics")
    rr=$(awk '/^gatehouse_requests_total\{.*route="home"/ { s += $NF } END { print s + 0 }' <<<"$m")
    dropped=$(awk '/^gatehouse_access_log_dropped_total/ { s += $NF } END { print s + 0 }' <<<"$m")
    if [ "$cfg" != A ]; then
        # until two reads 0.3 s apart agree (the pipeline has applied what its ring held), at most ~3 s
        local prev="" _
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            read -r recs units <<<"$(curl -s -m 3 "http://127.0.0.1:$APORT/v1/experiments/home-test/results?tenant=shop" |
                /usr/bin/python3 -c 'import json,sys
try:
    d = json.load(sys.stdin); print(d["exposure_records_since_start"], sum(d["units"].values()))
except Exception:
    print("? ?")')"
            [ "$recs $units" = "$prev" ] && break
            prev="$recs $units"; sleep 0.3
        done
    fi
    [ "$cfg" = C ] && lines=$(wc -l <"$d/exposures.jsonl" 2>/dev/null || echo '?')
    echo "$rr $recs $units $lines $dropped"
}

# run_proxy ROUND CONFIG: a fresh gatehouse with CONFIG, warm-up, busy check, one measured wrk run
# (repeated once if noisy), the admin figures; one line into PRX_TSV.
run_proxy() {
    local round=$1 cfg=$2 d=$TMPD/gh-$POOL-$1-$2 out=$TMPD/wrk-$POOL-$1-$2.txt pid attempt t0 t1 c0 c1 s0 s1 g0 g1 o0 o1 b0 b1 tt0 tt1
    local req rps p50 p99 ec er ew et st err pus wus rus figs
    FLAG=ok
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        rm -rf "$d"; mkdir -p "$d"
        gen_gh_conf "$cfg" "$d"
        start_server gatehouse "$d/stdout.log" "$GH_BIN_COPY" run -c "$d/gatehouse.yaml"
        pid=$SERVER_PID
        if ! wait_http "http://127.0.0.1:$PORT/" 10; then
            log "gatehouse ($cfg, round $round) did not answer 200 within 10 s:"; tail -n 20 "$d/stdout.log" >&2
            stop_system "$pid"; FLAG="$FLAG,FAILED"; break
        fi
        if [ "$round" = 1 ] && [ "$attempt" = 1 ] && [ "$POOL" = "${POOLS%% *}" ]; then
            info "probe_$cfg" "$(curl -s -o /dev/null -D - -H 'Cookie: uid=probe0123456789' "http://127.0.0.1:$PORT/" | tr -d '\r' |
                grep -iE '^(HTTP/|x-gatehouse-variant|set-cookie)' | paste -sd ' ')"
            log "  $cfg probe: $(awk -F'\t' -v k="probe_$cfg" '$1 == k { print $2 }' "$INFO"); $(tree_tasks "$pid")"
        fi
        flags_pause
        wrk_uid 1 "$TMPD/warmup.txt"
        calm_down
        [ "$WAITED" = 1 ] && wrk_uid 1 "$TMPD/warmup.txt"
        tt0=$(thread_ticks "$pid")
        read -r g0 _ <<<"$(tree_ticks "$pid")"
        read -r t0 _ <<<"$(tree_ticks "$OPID")"
        c0=$(cpu_cores); s0=$(self_ticks)
        wrk_uid "$DURATION" "$out" --latency
        s1=$(self_ticks); c1=$(cpu_cores)
        read -r t1 _ <<<"$(tree_ticks "$OPID")"
        read -r g1 _ <<<"$(tree_ticks "$pid")"
        tt1=$(thread_ticks "$pid")
        read -r o0 o1 _ <<<"$(other_load "$c0" "$c1" $((g1 - g0)) $((s1 - s0 + t1 - t0)))"
        read -r b0 b1 <<<"$(core_busy "$c0" "$c1")"
        kill -0 "$pid" 2>/dev/null || FLAG="$FLAG,DIED"
        sleep 0.5 # the pipeline and the log writer catch up
        figs=$(admin_figures "$cfg" "$d")
        stop_system "$pid"
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ] && [[ $FLAG != *DIED* ]]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $cfg run $round (> $OTHER_MAX%): repeating it"
                FLAG=ok; sleep 1; continue
            fi
        fi
        break
    done
    if [[ $FLAG == *FAILED* ]]; then
        printf '%s\t%s\t%s\t0\t0\tnan\tnan\tnan\tnan\tnan\t0\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\tFAILED\n' "$POOL" "$round" "$cfg" "$attempt" >>"$PRX_TSV"
        return
    fi
    read -r req rps p50 p99 ec er ew et st _ <<<"$(parse_wrk_full "$out")"
    err=$((ec + er + ew + et + st))
    if [ "${req:-0}" -gt 0 ]; then
        read -r pus wus rus <<<"$(awk -v A="$tt0" -v B="$tt1" -v g=$((g1 - g0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN {
            n = split(A, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], x, " "); before[x[1]] = x[2] }
            n = split(B, b, "\n"); for (i = 1; i <= n; i++) { split(b[i], x, " "); d = x[2] - before[x[1]]; tot += d; if (d > mx) mx = d }
            printf "%.2f %.2f %.2f\n", g * 1e6 / k / r, mx * 1e6 / k / r, (tot - mx) * 1e6 / k / r }')"
    else
        pus=nan wus=nan rus=nan; FLAG="$FLAG,FAILED"; log "wrk got no responses for $cfg:"; cat "$out" >&2
    fi
    [ "$err" -gt 0 ] && FLAG="$FLAG,ERR"
    FLAG=${FLAG#ok,}
    read -r rr recs units lines dropped <<<"$figs"
    read -r -a bb <<<"$BUSY"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$POOL" "$round" "$cfg" "$req" "$rps" "$p50" "$p99" "$pus" "$wus" "$rus" "$err" \
        "$rr" "$recs" "$units" "$lines" "$dropped" "${bb[0]}" "$b0" "$b1" "$o0" "$o1" "$attempt" "$FLAG" >>"$PRX_TSV"
    printf '[%s]   pool %s %s run %s: %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  gatehouse %5s us/req (worker %s, other threads %s)  errors %s  route requests %s, exposure records %s, units %s, log lines %s, log dropped %s  core0/1 busy %s/%s%%  other %s/%s%% %s\n' \
        "$(date +%H:%M:%S)" "$POOL" "$cfg" "$round" "$rps" "$p50" "$p99" "$pus" "$wus" "$rus" "$err" "$rr" "$recs" "$units" "$lines" "$dropped" "$b0" "$b1" "$o0" "$o1" \
        "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

if has_part proxy && [ "$GH_OK" = 1 ]; then
    mkdir -p "$TMPD/origin"
    origin_nginx_conf "$TMPD/origin" "$OPORT" "" "        location / { default_type text/plain; return 200 \"$BODY_SMALL\"; }"
    SERVER_CPU=$CLIENT_CPU start_server origin "$TMPD/origin/stdout.log" nginx -c "$TMPD/origin/nginx.conf"
    OPID=$SERVER_PID
    if ! wait_http "http://127.0.0.1:$OPORT/" 5; then
        log "the nginx origin did not come up:"; tail -5 "$TMPD/origin/error.log" >&2
    else
        read -ra CFGS <<<"$PROXY_CFGS"
        NC=${#CFGS[@]}
        for POOL in $POOLS; do
            log "part proxy: gatehouse workers 1 on core $SERVER_CPU; nginx origin and wrk -t1 -c$CONNS -d${DURATION}s (uid pool $POOL) on core $CLIENT_CPU; $RUNS rounds of ${CFGS[*]} (rotating)"
            for ((r = 1; r <= RUNS; r++)); do
                for ((k = 0; k < NC; k++)); do run_proxy "$r" "${CFGS[$(((k + r - 1) % NC))]}"; done
            done
        done
        cp "$TMPD/gh-${POOLS%% *}-1-C/gatehouse.yaml" "$OUTDIR/experiments-config-C-$STAMP.yaml" 2>/dev/null
    fi
    stop_system "$OPID"
elif has_part proxy; then
    log "part proxy: no gatehouse binary: pending"
fi

# ---------------------------------------------------------------- part 2b: side by side

# sched_ns PID: nanoseconds on a CPU of all PID's threads (/proc/PID/task/*/schedstat, field 1).
sched_ns() {
    local f a t=0
    for f in /proc/"$1"/task/*/schedstat; do read -r a _ <"$f" 2>/dev/null && t=$((t + a)); done
    echo "$t"
}

# run_pair ROUND P Q: gatehouses with configurations P and Q started together on core SERVER_CPU,
# each loaded by its own wrk (-c CONNS/2, the same uid pool, its own uids) on core CLIENT_CPU at the
# same time for PAIR_DURATION; CPU ns of each process's threads (schedstat) over the run / its
# requests. The two share every disturbance of the machine (frequency, a neighbour's cache use, the
# load generator's core), so their ratio is steady where sequential runs' ratios are not. Which one
# gets the first ports alternates by round. One line into PAIR_TSV.
run_pair() {
    local round=$1 p=$2 q=$3 dp dq pp pq port_p aport_p port_q aport_q n0p n0q n1p n1q wp wq reqp reqq rpsp rpsq figs rr recs st=ok
    dp=$TMPD/pair-$POOL-$round-$p-1; dq=$TMPD/pair-$POOL-$round-$q-2
    if [ $((round % 2)) = 1 ]; then port_p=$PORT aport_p=$APORT port_q=$PORT2 aport_q=$APORT2
    else port_p=$PORT2 aport_p=$APORT2 port_q=$PORT aport_q=$APORT; fi
    rm -rf "$dp" "$dq"; mkdir -p "$dp" "$dq"
    PORT=$port_p APORT=$aport_p gen_gh_conf "$p" "$dp"
    PORT=$port_q APORT=$aport_q gen_gh_conf "$q" "$dq"
    start_server gatehouse "$dp/stdout.log" "$GH_BIN_COPY" run -c "$dp/gatehouse.yaml"; pp=$SERVER_PID
    start_server gatehouse "$dq/stdout.log" "$GH_BIN_COPY" run -c "$dq/gatehouse.yaml"; pq=$SERVER_PID
    if ! wait_http "http://127.0.0.1:$port_p/" 10 || ! wait_http "http://127.0.0.1:$port_q/" 10; then
        log "pair $p:$q round $round: a gatehouse did not answer"; tail -n 5 "$dp/stdout.log" "$dq/stdout.log" >&2
        stop_system "$pp"; stop_system "$pq"
        printf '%s\t%s\t%s\t%s\t0\t0\tnan\tnan\tnan\tnan\tnan\tnan\t-\t-\tFAILED\n' "$POOL" "$round" "$p" "$q" >>"$PAIR_TSV"
        return
    fi
    flags_pause
    wrk_start $((CONNS / 2)) 1 "$port_p" "$TMPD/pwarm1.txt"; wp=$WRK_PID
    wrk_start $((CONNS / 2)) 1 "$port_q" "$TMPD/pwarm2.txt"; wq=$WRK_PID
    wait "$wp" "$wq"; forget_pid "$wp"; forget_pid "$wq"
    sleep 0.3
    n0p=$(sched_ns "$pp"); n0q=$(sched_ns "$pq")
    wrk_start $((CONNS / 2)) "$PAIR_DURATION" "$port_p" "$dp/wrk.txt"; wp=$WRK_PID
    wrk_start $((CONNS / 2)) "$PAIR_DURATION" "$port_q" "$dq/wrk.txt"; wq=$WRK_PID
    wait "$wp" "$wq"; forget_pid "$wp"; forget_pid "$wq"
    sleep 0.5 # the pipelines drain their rings (their work counts)
    n1p=$(sched_ns "$pp"); n1q=$(sched_ns "$pq")
    figs=$(PORT=$port_q APORT=$aport_q admin_figures "$q" "$dq")
    { kill -0 "$pp" && kill -0 "$pq"; } 2>/dev/null || st=DIED
    stop_system "$pp"; stop_system "$pq"
    read -r reqp rpsp _ <<<"$(parse_wrk_full "$dp/wrk.txt")"
    read -r reqq rpsq _ <<<"$(parse_wrk_full "$dq/wrk.txt")"
    { [ "${reqp:-0}" -gt 0 ] && [ "${reqq:-0}" -gt 0 ]; } || st=FAILED
    read -r rr recs _ <<<"$figs"
    awk -v pool="$POOL" -v r="$round" -v p="$p" -v q="$q" -v np=$((n1p - n0p)) -v nq=$((n1q - n0q)) -v a="${reqp:-0}" -v b="${reqq:-0}" \
        -v ra="${rpsp:-0}" -v rb="${rpsq:-0}" -v rr="$rr" -v recs="$recs" -v st="$st" 'BEGIN {
        up = a ? np / a / 1000 : 0; uq = b ? nq / b / 1000 : 0
        printf "%s\t%s\t%s\t%s\t%d\t%d\t%.3f\t%.3f\t%.4f\t%.0f\t%.0f\t%.4f\t%s\t%s\t%s\n", pool, r, p, q, a, b, up, uq,
            up ? uq / up : 0, ra, rb, ra ? rb / ra : 0, rr, recs, st }' >>"$PAIR_TSV"
    log "  pool $POOL pair $p:$q round $round: $(tail -1 "$PAIR_TSV" | awk -F'\t' '{ printf "%s %.2f us/req (%s req), %s %.2f us/req (%s req): CPU ratio %.4f; route requests %s, exposure records %s", $3, $7, $5, $4, $8, $6, $9, $13, $14 }') [$st]"
}

PAIR_TSV=$TMPD/pair.tsv
printf 'pool\tround\tfirst\tsecond\treq1\treq2\tus_req1\tus_req2\tcpu_ratio\trps1\trps2\trps_ratio\troute_requests2\texposure_records2\tstatus\n' >"$PAIR_TSV"
if has_part pair && [ "$GH_OK" = 1 ]; then
    mkdir -p "$TMPD/origin"
    origin_nginx_conf "$TMPD/origin" "$OPORT" "" "        location / { default_type text/plain; return 200 \"$BODY_SMALL\"; }"
    SERVER_CPU=$CLIENT_CPU start_server origin "$TMPD/origin/stdout.log" nginx -c "$TMPD/origin/nginx.conf"
    OPID=$SERVER_PID
    if wait_http "http://127.0.0.1:$OPORT/" 5; then
        for POOL in $POOLS; do
            log "part pair: two gatehouses (workers 1) side by side on core $SERVER_CPU, each with its wrk -t1 -c$((CONNS / 2)) -d${PAIR_DURATION}s (uid pool $POOL) on core $CLIENT_CPU with the origin; pairs $PAIRS, $PAIR_RUNS rounds"
            for ((r = 1; r <= PAIR_RUNS; r++)); do
                for pr in $PAIRS; do run_pair "$r" "${pr%%:*}" "${pr##*:}"; done
            done
        done
    else
        log "the nginx origin did not come up:"; tail -5 "$TMPD/origin/error.log" >&2
    fi
    stop_system "$OPID"
fi

# ---------------------------------------------------------------- part 3: the A/A simulation

AA_MD=""
if has_part aa; then
    log "part aa: bash bench/experiments/aa_sim.sh"
    if run_bg 300 "$TMPD/aa.txt" bash "$HERE/experiments/aa_sim.sh"; then
        AA_MD=$(ls -t "$OUTDIR"/aa_sim-*.md 2>/dev/null | head -1)
    else
        log "aa_sim.sh failed:"; tail -5 "$TMPD/aa.txt.err" >&2
    fi
fi

# ---------------------------------------------------------------- report

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget on waits and repeats; total $(($(date +%s) - T_START))s"
cp "$ING_TSV" "$OUTDIR/experiments-ingest-raw-$STAMP.tsv"
cp "$PRX_TSV" "$OUTDIR/experiments-proxy-raw-$STAMP.tsv"
cp "$PAIR_TSV" "$OUTDIR/experiments-pair-raw-$STAMP.tsv"
MD=$OUTDIR/experiments-$STAMP.md
{
    echo "# gatehouse experiments benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    echo "command: $CMDLINE"
    machine
    echo "ingest: bench/experiments/ingest.c, $EXPOSURES exposures (new units, then the same again), $EVENTS purchase events in publishes of 1000 ($INFLIGHT in flight), window $WINDOW exposures; $INGEST_RUNS rounds x {disk, shm} x {split: pipeline core $SERVER_CPU + producer core $CLIENT_CPU, shared: both core $SERVER_CPU}"
    echo "proxy: gatehouse workers 1 on core $SERVER_CPU; nginx origin + wrk -t1 -c$CONNS -d${DURATION}s --latency -s bench/experiments/uid.lua (uid pools: $POOLS) on core $CLIENT_CPU; $RUNS rounds of A/B/C rotating, fresh gatehouse per run, 1 s warm-up + busy check"
    echo '```'
    echo
    /usr/bin/python3 "$HERE/experiments/report.py" "$ING_TSV" "$PRX_TSV" "$INFO" "$OTHER_MAX" "$PAIR_TSV"
    if [ -s "$TMPD/ingest-checks.txt" ]; then
        echo
        echo "Checks of the last ingest run (values against what was sent):"
        echo '```'
        cat "$TMPD/ingest-checks.txt"
        echo '```'
    fi
    if [ -n "$AA_MD" ]; then
        echo
        echo "## A/A simulation ($(basename "$AA_MD"))"
        echo
        sed '1,2d' "$AA_MD"
    fi
} >"$MD"
echo
cat "$MD"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/experiments-ingest-raw-$STAMP.tsv $OUTDIR/experiments-proxy-raw-$STAMP.tsv $OUTDIR/experiments-pair-raw-$STAMP.tsv"
