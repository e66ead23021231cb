#!/usr/bin/env bash
# bench/flags.sh: feature-flag benchmark (issue 7): gatehouse beside @openfeature/flagd-core, in one run.
#
#   bash bench/flags.sh        all four parts, ~6 min (+ at most NOISE_BUDGET s on a noisy box); after `make`
#
# Inputs (bench/flags/gen.js, seeded, the same for every engine): three flags in the flagd format,
# static-flag (boolean, no targeting), targeted-flag (an "if" over an "and" of 5 conditions: ==, in,
# starts_with, >=, sem_ver), split-flag (fractional 34/33/33 over 3 variants by flagKey+targetingKey);
# CONTEXTS (1000) evaluation contexts with 10 attributes, each condition holding for ~87% of them;
# and a definition of BIG_FLAGS (10,000) flags of the three kinds.
#
# Part "eval", in-process cost per evaluation: bench/flags/evalbench.c linked against
# build/libgatehouse.a (gh_flags_load once, then gh_flags_eval over the pre-parsed contexts, pass after
# pass, for EVAL_MS per flag and repetition) and bench/flags/flagdcore.js (FlagdCore.setConfigurations,
# then resolveBooleanEvaluation / resolveStringEvaluation over the same contexts, after WARMUP_MS per
# flag of warm-up), both pinned to core SERVER_CPU, EVAL_REPS repetitions per process, EVAL_ROUNDS
# processes per engine with the engines alternating. ns/eval median (min..max) over all repetitions, the
# ratio flagd-core / gatehouse (target >= 10). A repetition in which the process had less than SHARE_MIN
# (0.9) of the wall time as CPU time is left out of the medians when others are left (on this 2-vCPU VM,
# load on the other core slows a pinned loop 1.5-2x without any steal showing in /proc/stat; the CPU
# share catches it). A process with more than half of its repetitions such, or with other load on its
# core over OTHER_MAX, is repeated once. Cross-check: both engines' variant, reason and value for every
# flag and context; variant mismatches must be 0. flagd-core is installed with npm once into
# NPM_CACHE_DIR (bench/out/node_modules-cache) and reused.
#
# Part "ofrep", OFREP single-flag requests on one gatehouse worker (`workers: 1`, access log off, the
# three flags from a file, an API key): gatehouse on core SERVER_CPU, wrk on core CLIENT_CPU,
# wrk -t1 -cCONNS -dDURATION --latency -s flags/ofrep.lua (POST /ofrep/v1/evaluate/flags/KEY with
# X-API-Key, the CONTEXTS bodies in turn), 1 s warm-up and a busy check before each run, RUNS rounds
# with a fresh gatehouse per round and the flags' order rotating. req/s median (min..max), p50/p99,
# gatehouse CPU µs per request (its tree's utime+stime / requests) and what that makes per fully used
# core; ratios to flagd's published FLAGD_PUBLISHED (20,000) evaluations/s per core (target >= 5x).
# flagd itself is not installed (no Debian package): only its published figure is compared.
# FLOOR=1 (default) adds, in the same rounds and on the same core, nginx (worker_processes 1, access log
# off) answering the same POSTs with `return 200` and static-flag's 82-byte OFREP answer: what one HTTP
# request costs on this machine without any evaluation (a reference, not a hard floor).
# Before the runs, OFREP's variants for the first 50 contexts are checked against evalbench's.
#
# Part "grpc", flagd's gRPC evaluation service beside OFREP over HTTP/2, on one gatehouse worker
# (`workers: 1`, access log off, the three flags and the API key as above, `flagd_grpc: {listen}` and
# `ofrep: {listen, h2c: true}` on the same gatehouse): gatehouse on core SERVER_CPU, h2load on core
# CLIENT_CPU, h2load -D H2_DURATION -cH2_CONNS -mH2_STREAMS (one thread) per flag and protocol:
#   grpc       POST /flagd.evaluation.v2.Service/ResolveBoolean (static-flag) or ResolveString
#              (targeted-flag, split-flag), content-type application/grpc, te: trailers, metadata
#              x-api-key; the body a gRPC frame (0, 4-byte length, ResolveXRequest) built by
#              bench/flags/grpc_check.py with the python classes protoc generates from
#              proto/flagd/evaluation/v2/evaluation.proto into the temp dir;
#   ofrep-h2c  POST /ofrep/v1/evaluate/flags/KEY over h2c (prior knowledge), X-API-Key, JSON body.
# h2load sends one body for every request, so both protocols use one representative context: the first
# of the CONTEXTS contexts (for seed 7: targeted-flag stops at its 2nd condition and answers silver,
# split-flag answers c). Warm-up (1 s) and a busy check before each run, RUNS rounds with a fresh
# gatehouse per round, the six runs of a round in an order that rotates (the flags rotate; both
# protocols of a flag side by side, which one first alternates). Per flag and protocol: req/s median (min..max), mean time per request, gatehouse CPU µs
# per request (its tree's utime+stime / answers) and what that makes per fully used core, ratios to
# FLAGD_PUBLISHED. Every answer is checked from h2load's counters: all done requests succeeded with a
# 2xx status, and its DATA bytes = answers x the size of the answer probed with curl before the runs
# (a gRPC error is a trailers-only answer without DATA, so this catches grpc-status != 0 too).
# Before the runs, gRPC answers for the first 50 contexts and each flag are checked against
# evalbench's variants and values with python's grpcio (framing, trailers, grpc-status checked by it).
#
# Part "load", 10,000 flags: gh_flags_load time (median of LOAD_REPS) and the heap it keeps (mallinfo2)
# in evalbench (and per kind of flag: the static, targeting and fractional thirds loaded alone),
# FlagdCore.setConfigurations time and heap beside it; `gatehouse validate` wall time (median of 3) with
# the 3-flag file and with the 10,000-flag file; RSS/Pss of a running gatehouse (workers: 1) with each.
#
# Environment: DURATION (10) RUNS (3) CONNS (64) CONTEXTS (1000) BIG_FLAGS (10000) SEED (7) PARTS
# ("eval ofrep grpc load") H2_DURATION (5, or DURATION when shorter) H2_CONNS (8) H2_STREAMS (32) EVAL_ROUNDS (3) EVAL_REPS (5) EVAL_MS (300) WARMUP_MS (1000) LOAD_REPS (3)
# FLOOR (1) FLAGD_PUBLISHED (20000) FLAGD_CORE_VERSION (4: npm version range) NPM_CACHE_DIR
# (bench/out/node_modules-cache) NODE (/usr/bin/node) BUSY_MAX (30) BUSY_WAIT (20) OTHER_MAX (10)
# NOISY_RETRIES (1) NOISE_BUDGET (60) SHARE_MIN (0.9) GATEHOUSE_BIN (./build/gatehouse)
# GH_LIB (./build/libgatehouse.a) SERVER_CPU (0) CLIENT_CPU (1) KEEP_TMP.
# Quick check: DURATION=2 RUNS=1 EVAL_ROUNDS=1 EVAL_REPS=2 bash bench/flags.sh (~1.5 min).
# Outputs: the summary on stdout and in bench/out/flags-<stamp>.md; raw runs in bench/out/flags-*-raw-<stamp>.tsv
# (eval, ofrep, grpc).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

KNOBS="DURATION RUNS CONNS CONTEXTS BIG_FLAGS SEED PARTS H2_DURATION H2_CONNS H2_STREAMS EVAL_ROUNDS EVAL_REPS EVAL_MS WARMUP_MS LOAD_REPS
FLOOR FLAGD_PUBLISHED FLAGD_CORE_VERSION NPM_CACHE_DIR NODE BUSY_MAX BUSY_WAIT OTHER_MAX NOISY_RETRIES NOISE_BUDGET SHARE_MIN
GATEHOUSE_BIN GH_LIB SERVER_CPU CLIENT_CPU"
CMDLINE=""
for k in $KNOBS; do [ -n "${!k+x}" ] && CMDLINE="$CMDLINE$k=$(printf '%q' "${!k}") "; done
CMDLINE="${CMDLINE}bash bench/flags.sh${*:+ $*}"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
CONTEXTS=${CONTEXTS:-1000}
BIG_FLAGS=${BIG_FLAGS:-10000}
SEED=${SEED:-7}
PARTS=${PARTS:-eval ofrep grpc load}
H2_DURATION=${H2_DURATION:-$((DURATION < 5 ? DURATION : 5))}
H2_CONNS=${H2_CONNS:-8}
H2_STREAMS=${H2_STREAMS:-32}
EVAL_ROUNDS=${EVAL_ROUNDS:-3}
EVAL_REPS=${EVAL_REPS:-5}
EVAL_MS=${EVAL_MS:-300}
WARMUP_MS=${WARMUP_MS:-1000}
LOAD_REPS=${LOAD_REPS:-3}
FLAGD_PUBLISHED=${FLAGD_PUBLISHED:-20000}
FLOOR=${FLOOR:-1}
FLAGD_CORE_VERSION=${FLAGD_CORE_VERSION:-4}
NPM_CACHE_DIR=${NPM_CACHE_DIR:-$HERE/out/node_modules-cache}
NODE=${NODE:-/usr/bin/node}
GH_LIB=${GH_LIB:-$GH_ROOT/build/libgatehouse.a}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-10}
SHARE_MIN=${SHARE_MIN:-0.9}
NOISY_RETRIES=${NOISY_RETRIES:-1}
NOISE_BUDGET=${NOISE_BUDGET:-60}
NOISE_SPENT=0
T_START=$(date +%s)
API_KEY=bench-flags-key-0123456789abcdef
SPEC=static-flag:bool,targeted-flag:string,split-flag:string
FLAG_KEYS=(static-flag targeted-flag split-flag)
PKGS="yaml-0.1 libpcre2-8 libcares openssl libnghttp2 hiredis libmaxminddb jansson libprotobuf-c sqlite3"

for t in wrk curl taskset ss awk ps cc pkg-config timeout sha256sum "$NODE" /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
if [ "$FLOOR" = 1 ] && ! command -v nginx >/dev/null; then
    log "nginx not found: no nginx reference row (FLOOR=0)"; FLOOR=0
fi
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

bench_init
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
EVAL_TSV=$TMPD/eval.tsv
OFREP_TSV=$TMPD/ofrep.tsv
H2_TSV=$TMPD/grpc.tsv
INFO=$TMPD/info.tsv   # key<TAB>value lines for the report (cross-check, load figures, notes)
printf 'round\tengine\tflag\trep\tns_eval\tevals\terrors\tcpu_share\tbusy_before\tcore_busy\tother_core\tattempts\tstatus\n' >"$EVAL_TSV"
printf 'round\tflag\trequests\trps\tp50_ms\tp99_ms\tgh_us_req\terrors\tbusy_before\tcore0_busy\tcore1_busy\tother_cpu0\tother_cpu1\tattempts\tstatus\n' >"$OFREP_TSV"
printf 'round\tproto\tflag\trequests\trps\tmean_ms\tgh_us_req\terrors\tanswer_bytes\texpected_bytes\tbusy_before\tserver_busy\tclient_busy\tother_server\tother_client\tattempts\tstatus\n' >"$H2_TSV"
: >"$INFO"
info() { printf '%s\t%s\n' "$1" "$2" >>"$INFO"; }

pick_ports 4
OFREP_PORT=${PORTS[0]}
HTTP_PORT=${PORTS[1]}   # the proxy listener gatehouse requires; unused here
NGINX_PORT=${PORTS[2]}  # the nginx `return 200` reference
GRPC_PORT=${PORTS[3]}   # flagd_grpc (part grpc)
log "temp dir $TMPD; ports: OFREP $OFREP_PORT (proxy listener $HTTP_PORT, unused), nginx reference $NGINX_PORT, flagd gRPC $GRPC_PORT; evaluations and gatehouse on core $SERVER_CPU, wrk, h2load and this script on core $CLIENT_CPU"

# ---------------------------------------------------------------- measurement helpers (as bench/cache.sh)

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

# ---------------------------------------------------------------- builds and inputs

IN=$TMPD/in
mkdir -p "$IN"
run_bg 60 "$TMPD/gen.out" "$NODE" "$HERE/flags/gen.js" "$IN" "$CONTEXTS" "$BIG_FLAGS" "$SEED" || { cat "$TMPD/gen.out.err" >&2; die "gen.js failed"; }
log "inputs: 3 flags, $CONTEXTS contexts, $BIG_FLAGS-flag definition ($(du -k "$IN/flags-big.json" | cut -f1) KiB); sha256 of contexts $(sha256sum "$IN/contexts.json" | cut -c1-12)"

GH_OK=0 EB_OK=0
if gatehouse_available; then GH_OK=1; else log "SKIP: $GATEHOUSE_BIN not found (run make): OFREP and validate/RSS figures are 'pending'"; fi
EB=$TMPD/evalbench
if [ -f "$GH_LIB" ]; then
    GH_LIB_SHA=$(sha256sum "$GH_LIB" | cut -c1-16)
    GH_LIB_DATE=$(date -r "$GH_LIB" '+%Y-%m-%d %H:%M')
    cp "$GH_LIB" "$TMPD/libgatehouse.a"
    # shellcheck disable=SC2046
    if cc -std=gnu11 -D_GNU_SOURCE= -O2 -g -pthread -I"$GH_ROOT/src" $(pkg-config --cflags $PKGS 2>/dev/null) -o "$EB" \
        "$HERE/flags/evalbench.c" "$TMPD/libgatehouse.a" $(pkg-config --libs $PKGS 2>/dev/null) -pthread -lm 2>"$TMPD/cc.err"; then
        EB_OK=1
    else
        log "evalbench did not build against $GH_LIB (the flags C API may not be finished): gatehouse's in-process figures are 'pending'"
        head -20 "$TMPD/cc.err" >&2
    fi
else
    log "SKIP: $GH_LIB not found (run make): gatehouse's in-process figures are 'pending'"
fi

# flagd-core from npm, installed once into a temp dir and moved into NPM_CACHE_DIR; reused when there.
FC_DIR=$NPM_CACHE_DIR/node_modules/@openfeature/flagd-core
FC_OK=0
if [ ! -f "$FC_DIR/package.json" ]; then
    log "installing @openfeature/flagd-core@$FLAGD_CORE_VERSION with npm (cached in $NPM_CACHE_DIR)"
    NPMD=$TMPD/npm
    mkdir -p "$NPMD"
    echo '{"name": "gatehouse-bench-flags", "private": true}' >"$NPMD/package.json"
    if run_bg 180 "$TMPD/npm.out" npm install --prefix "$NPMD" --no-audit --no-fund --no-package-lock \
        "@openfeature/flagd-core@$FLAGD_CORE_VERSION" "@openfeature/core@^1"; then
        mkdir -p "$(dirname "$NPM_CACHE_DIR")"
        rm -rf "$NPM_CACHE_DIR.tmp.$$"
        cp -r "$NPMD" "$NPM_CACHE_DIR.tmp.$$" && rm -rf "$NPM_CACHE_DIR" && mv "$NPM_CACHE_DIR.tmp.$$" "$NPM_CACHE_DIR"
    else
        tail -5 "$TMPD/npm.out.err" >&2
    fi
fi
if [ -f "$FC_DIR/package.json" ]; then
    FC_OK=1
    FC_VERSION=$("$NODE" -p "require('$FC_DIR/package.json').version")
    JLE_VERSION=$("$NODE" -p "require('$NPM_CACHE_DIR/node_modules/json-logic-engine/package.json').version" 2>/dev/null || echo '?')
    export FLAGD_CORE_DIR=$FC_DIR
else
    log "@openfeature/flagd-core is not available (npm install failed): its figures are missing"
fi
FLAGD_BIN=$(command -v flagd || true)

machine() {
    echo "nproc: $(nproc --all)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: //')"
    echo "kernel: $(uname -r)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}'); h2load: $(h2load --version 2>/dev/null | head -1 | awk '{print $NF}' || echo 'not installed')"
    echo "node: $("$NODE" --version); @openfeature/flagd-core ${FC_VERSION:-not installed} (json-logic-engine ${JLE_VERSION:-?}) from $NPM_CACHE_DIR"
    echo "cc: $(cc --version | head -1)"
    [ "$GH_OK" = 1 ] && echo "gatehouse: $GH_BIN_SRC, sha256 $GH_BIN_SHA, built $GH_BIN_DATE ($("$GH_BIN_COPY" version 2>/dev/null | head -1))"
    [ -n "${GH_LIB_SHA:-}" ] && echo "libgatehouse.a: $GH_LIB, sha256 $GH_LIB_SHA, built $GH_LIB_DATE (evalbench: cc -O2, $([ "$EB_OK" = 1 ] && echo built || echo 'did not build'))"
    if [ -n "$FLAGD_BIN" ]; then echo "flagd: $FLAGD_BIN (installed, but not run: only its published figure is compared)"
    else echo "flagd: not installed (no Debian package); compared with its published ${FLAGD_PUBLISHED} evaluations/s per core only"; fi
}
machine | sed 's/^/  /' >&2
info flagd "$([ -n "$FLAGD_BIN" ] && echo "installed at $FLAGD_BIN, not run" || echo "not installed (no Debian package)")"

# ---------------------------------------------------------------- part 1: in-process evaluation

# run_eval ENGINE ROUND: one process of ENGINE (gatehouse = evalbench, flagd-core = flagdcore.js) on
# core SERVER_CPU, EVAL_REPS repetitions; repeated once (within the noise budget) if other processes
# used more than OTHER_MAX % of that core meanwhile.
run_eval() {
    local eng=$1 round=$2 out=$TMPD/eval-$1-$2.txt attempt c0 c1 s0 s1 b0 o0 to=$((EVAL_REPS * 3 * EVAL_MS / 1000 + 3 * WARMUP_MS / 1000 + 60))
    local cmd BUSY_WAIT=4   # what counts here is the load on the evaluation core during the process (NOISY)
    if [ "$eng" = gatehouse ]; then cmd=("$EB" eval "$IN/flags.json" "$IN/contexts.json" "$SPEC" "$EVAL_REPS" "$EVAL_MS")
    else cmd=("$NODE" "$HERE/flags/flagdcore.js" eval "$IN/flags.json" "$IN/contexts.json" "$SPEC" "$EVAL_REPS" "$EVAL_MS" "$WARMUP_MS"); fi
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        calm_down
        c0=$(cpu_cores); s0=$(self_ticks)
        if ! run_bg "$to" "$out" taskset -c "$SERVER_CPU" "${cmd[@]}"; then
            log "$eng eval (round $round) failed:"; tail -5 "$out.err" >&2
            FLAG="$FLAG,FAILED"; break
        fi
        s1=$(self_ticks); c1=$(cpu_cores)
        read -r b0 _ <<<"$(core_busy "$c0" "$c1")"
        read -r o0 _ <<<"$(other_load "$c0" "$c1" $((s1 - s0)) 0)"
        # repetitions in which the process got less than SHARE_MIN of the wall time (preempted, or the VM
        # throttled: on this 2-vCPU VM, load on the other core slows a pinned loop without any steal shown)
        low=$(awk -F'\t' -v m="$SHARE_MIN" '$1 == "eval" && $7 < m { n++ } END { print n + 0 }' "$out")
        if [ "$o0" -gt "$OTHER_MAX" ] || [ $((2 * low)) -gt $((3 * EVAL_REPS)) ]; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + 8))
                log "$eng eval round $round: other processes used ${o0}% of core $SERVER_CPU (max $OTHER_MAX%), $low of $((3 * EVAL_REPS)) repetitions got < $SHARE_MIN of the wall time: repeating it"
                sleep 1; continue
            fi
        fi
        break
    done
    FLAG=${FLAG#ok,}
    read -r -a bb <<<"$BUSY"
    awk -F'\t' -v r="$round" -v e="$eng" -v bb="${bb[0]}" -v b0="${b0:-}" -v o0="${o0:-}" -v a="$attempt" -v fl="$FLAG" \
        '$1 == "eval" { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, e, $2, $3, $4, $5, $6, $7, bb, b0, o0, a, fl }' "$out" >>"$EVAL_TSV"
    log "  $eng round $round: $(awk -F'\t' '$1 == "eval" { s[$2] = s[$2] " " $4; if (m == "" || $7 < m) m = $7 } END { for (k in s) printf "%s:%s ns; ", k, s[k]; printf "lowest cpu share %s; ", m }' "$out")core $SERVER_CPU busy ${b0:-?}%, other ${o0:-?}% $([ "$FLAG" = ok ] || echo "[$FLAG]")"
}

if has_part eval; then
    ENGINES=()
    [ "$EB_OK" = 1 ] && ENGINES+=(gatehouse)
    [ "$FC_OK" = 1 ] && ENGINES+=(flagd-core)
    log "part eval: ${ENGINES[*]:-nothing}; $EVAL_ROUNDS rounds x $EVAL_REPS repetitions x ${EVAL_MS} ms per flag (flagd-core: ${WARMUP_MS} ms warm-up per flag), pinned to core $SERVER_CPU"
    # Cross-check first: every flag x context through both engines.
    if [ "$EB_OK" = 1 ] && [ "$FC_OK" = 1 ]; then
        run_bg 60 "$TMPD/var-gh.tsv" "$EB" variants "$IN/flags.json" "$IN/contexts.json" "$SPEC" || log "evalbench variants failed"
        run_bg 60 "$TMPD/var-fc.tsv" "$NODE" "$HERE/flags/flagdcore.js" variants "$IN/flags.json" "$IN/contexts.json" "$SPEC" || log "flagdcore.js variants failed"
        read -r XN XV XR XVAL <<<"$(awk -F'\t' 'NR == FNR { v[$1 " " $2] = $3; r[$1 " " $2] = $4; x[$1 " " $2] = $5; next }
            { k = $1 " " $2; n++; if (!(k in v) || v[k] != $3) mv++; if (r[k] != $4) mr++; if (x[k] != $5) mx++ }
            END { printf "%d %d %d %d\n", n, mv, mr, mx }' "$TMPD/var-fc.tsv" "$TMPD/var-gh.tsv")"
        awk -F'\t' 'NR == FNR { a[$1 " " $2] = $3 " " $4 " " $5; next } { k = $1 " " $2; if (a[k] != $3 " " $4 " " $5) print k ": gatehouse " $3 " " $4 " " $5 ", flagd-core " a[k] }' \
            "$TMPD/var-fc.tsv" "$TMPD/var-gh.tsv" | head -10 >"$TMPD/mismatches.txt"
        info xcheck "$XN $XV $XR $XVAL"
        info xcheck_dist "$(awk -F'\t' '{ c[$1 "=" $3]++ } END { for (k in c) printf "%s%s:%d", (n++ ? " " : ""), k, c[k] }' "$TMPD/var-gh.tsv" | tr ' ' '\n' | sort | paste -sd ' ')"
        log "cross-check: $XN evaluations (3 flags x $CONTEXTS contexts): variant mismatches $XV, reason mismatches $XR, value mismatches $XVAL (must be 0)"
        [ -s "$TMPD/mismatches.txt" ] && sed 's/^/    /' "$TMPD/mismatches.txt" >&2
    fi
    for ((r = 1; r <= EVAL_ROUNDS; r++)); do
        if [ $((r % 2)) = 1 ]; then order=("${ENGINES[@]}"); else order=(); for ((i = ${#ENGINES[@]} - 1; i >= 0; i--)); do order+=("${ENGINES[$i]}"); done; fi
        for eng in "${order[@]}"; do run_eval "$eng" "$r"; done
    done
fi

# ---------------------------------------------------------------- gatehouse with OFREP

# gen_gh_conf FILE DEFINITION [h2]: workers 1, access log off, the OFREP listener, one tenant with the
# flags file and the API key (and the proxy listener gatehouse requires, with no site). With h2: OFREP
# also accepts h2c (prior knowledge) and the flagd gRPC listener is added (part grpc).
gen_gh_conf() {
    cat >"$1" <<EOF
workers: 1
access_log: off
listeners: [{name: http, listen: "127.0.0.1:$HTTP_PORT"}]
ofrep: {listen: "127.0.0.1:$OFREP_PORT"$([ "${3:-}" = h2 ] && echo ', h2c: true')}$([ "${3:-}" = h2 ] && printf '\nflagd_grpc: {listen: "127.0.0.1:%s"}' "$GRPC_PORT")
tenants:
  - name: bench
    flags:
      file: "$2"
      api_keys: ["$API_KEY"]
    sites: []
EOF
}

# ofrep_post FLAG BODY: "STATUS BODY" of one OFREP request.
ofrep_post() {
    curl -s -m 2 -w ' %{http_code}' -X POST -H "X-API-Key: $API_KEY" -H 'Content-Type: application/json' \
        --data-binary "$2" "http://127.0.0.1:$OFREP_PORT/ofrep/v1/evaluate/flags/$1" 2>/dev/null
}

# ofrep_body_static: what gatehouse answers for static-flag (the nginx reference returns the same bytes).
ofrep_body_static() { printf '%s' '{"key":"static-flag","reason":"STATIC","variant":"on","value":true,"metadata":{}}'; }

# start_gh CONF TAG: gatehouse on core SERVER_CPU; waits (10 s) until OFREP answers 200 for PROBE_FLAG.
start_gh() {
    local conf=$1 tag=$2 i st
    start_server gatehouse "$TMPD/gh-$tag.log" "$GH_BIN_COPY" run -c "$conf"
    for ((i = 0; i < 100; i++)); do
        st=$(ofrep_post "${PROBE_FLAG:-static-flag}" '{"context":{"targetingKey":"probe"}}')
        [ "${st##* }" = 200 ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "gatehouse ($tag) did not answer OFREP 200 within 10 s: ${st:-nothing}; its output:"
    tail -n 20 "$TMPD/gh-$tag.log" >&2
    stop_system "$SERVER_PID"
    return 1
}

# wrk_ofrep DURATION PORT FLAG OUT [ARGS...]
wrk_ofrep() {
    local d=$1 port=$2 flag=$3 out=$4; shift 4
    run_bg $((d + 15)) "$out" taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${d}s" "$@" -s "$HERE/flags/ofrep.lua" \
        "http://127.0.0.1:$port" -- "$flag" "$API_KEY" "$IN/bodies.txt"
    cat "$out.err" >>"$out"
}

# run_ofrep NAME ROUND PID PORT: warm-up, busy check, one measured wrk run (repeated once if noisy) of
# flag NAME on gatehouse (PID) at PORT; NAME nginx-floor: the same requests (static-flag's) to nginx.
run_ofrep() {
    local name=$1 round=$2 pid=$3 port=$4 flag=$1 out=$TMPD/wrk-$1-$2.txt attempt t0 t1 p0 p1 c0 c1 s0 s1 o0 o1 b0 b1
    local req rps p50 p99 ec er ew et st err pus
    [ "$name" = nginx-floor ] && flag=static-flag
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        wrk_ofrep 1 "$port" "$flag" "$TMPD/warmup.txt"
        calm_down
        [ "$WAITED" = 1 ] && wrk_ofrep 1 "$port" "$flag" "$TMPD/warmup.txt"
        read -r t0 p0 <<<"$(tree_ticks "$pid")"
        c0=$(cpu_cores); s0=$(self_ticks)
        wrk_ofrep "$DURATION" "$port" "$flag" "$out" --latency
        s1=$(self_ticks); c1=$(cpu_cores)
        read -r t1 p1 <<<"$(tree_ticks "$pid")"
        read -r o0 o1 _ <<<"$(other_load "$c0" "$c1" $((t1 - t0)) $((s1 - s0)))"
        read -r b0 b1 <<<"$(core_busy "$c0" "$c1")"
        [ "$p0" != "$p1" ] && FLAG="$FLAG,PIDS_CHANGED"
        kill -0 "$pid" 2>/dev/null || FLAG="$FLAG,DIED"
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ] && [[ $FLAG != *DIED* ]]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $name run $round (> $OTHER_MAX%): repeating it"
                sleep 1; continue
            fi
        fi
        break
    done
    read -r req rps p50 p99 ec er ew et st _ <<<"$(parse_wrk_full "$out")"
    err=$((ec + er + ew + et + st))
    if [ "${req:-0}" -gt 0 ]; then
        pus=$(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
    else
        pus=nan; FLAG="$FLAG,FAILED"; log "wrk got no responses for $name:"; cat "$out" >&2
    fi
    [ "$err" -gt 0 ] && FLAG="$FLAG,ERR"
    FLAG=${FLAG#ok,}
    read -r -a bb <<<"$BUSY"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$req" "$rps" "$p50" "$p99" "$pus" "$err" \
        "${bb[0]}" "$b0" "$b1" "$o0" "$o1" "$attempt" "$FLAG" >>"$OFREP_TSV"
    printf '[%s]   %-13s run %s: %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  server %5s us/req  errors %s  core0/1 busy %s/%s%%  other %s/%s%% %s\n' \
        "$(date +%H:%M:%S)" "$name" "$round" "$rps" "$p50" "$p99" "$pus" "$err" "$b0" "$b1" "$o0" "$o1" "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

# ---------------------------------------------------------------- part 2: OFREP throughput

if has_part ofrep && [ "$GH_OK" = 1 ]; then
    CONF=$TMPD/gh-small.yaml
    gen_gh_conf "$CONF" "$IN/flags.json"
    if [ "$FLOOR" = 1 ]; then
        # the reference: nginx answering every POST with static-flag's 82-byte OFREP answer, no evaluation
        mkdir -p "$TMPD/nginx"
        origin_nginx_conf "$TMPD/nginx" "$NGINX_PORT" "" \
            "        location / { default_type application/json; return 200 '$(ofrep_body_static)'; }"
    fi
    log "part ofrep: gatehouse workers 1 on core $SERVER_CPU; $RUNS rounds of wrk -t1 -c$CONNS -d${DURATION}s --latency per flag (POST with X-API-Key, $CONTEXTS contexts in turn)"
    for ((r = 1; r <= RUNS; r++)); do
        start_gh "$CONF" "ofrep-$r" || { log "no OFREP figures for round $r"; continue; }
        pid=$SERVER_PID
        if [ "$r" = 1 ]; then
            log "gatehouse up: $(tree_tasks "$pid")"
            # OFREP answers = evalbench's (or flagd-core's) variants, for the first 50 contexts.
            ref=$TMPD/var-gh.tsv; [ -s "$ref" ] || ref=$TMPD/var-fc.tsv
            if [ -s "$ref" ]; then
                read -r n bad nerr <<<"$(timeout 60 /usr/bin/python3 "$HERE/flags/ofrep_check.py" "$OFREP_PORT" "$API_KEY" \
                    "$IN/bodies.txt" "$ref" 50 "${FLAG_KEYS[@]}")"
                info ofrep_check "${n:-0} ${bad:-?} ${nerr:-?}"
                log "OFREP check: ${n:-0} requests (3 flags x 50 contexts): ${bad:-?} variants differ from the in-process engine's, ${nerr:-?} not 200"
            fi
        fi
        # nginx beside it (idle while gatehouse is measured, and the other way round)
        npid=""
        if [ "$FLOOR" = 1 ]; then
            start_server nginx "$TMPD/nginx/stdout.log" nginx -c "$TMPD/nginx/nginx.conf"
            npid=$SERVER_PID
            if [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' -X POST -d '{}' "http://127.0.0.1:$NGINX_PORT/ofrep/v1/evaluate/flags/x")" != 200 ]; then
                sleep 0.5
                [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' -X POST -d '{}' "http://127.0.0.1:$NGINX_PORT/ofrep/v1/evaluate/flags/x")" = 200 ] ||
                    { log "nginx reference did not answer 200; skipped"; tail -5 "$TMPD/nginx/error.log" >&2; stop_system "$npid"; npid=""; }
            fi
        fi
        # the order rotates from round to round
        names=("${FLAG_KEYS[@]}"); [ -n "$npid" ] && names+=(nginx-floor)
        for ((k = 0; k < ${#names[@]}; k++)); do
            nm=${names[$(((k + r - 1) % ${#names[@]}))]}
            if [ "$nm" = nginx-floor ]; then run_ofrep "$nm" "$r" "$npid" "$NGINX_PORT"
            else run_ofrep "$nm" "$r" "$pid" "$OFREP_PORT"; fi
        done
        stop_system "$pid"
        [ -n "$npid" ] && stop_system "$npid"
    done
elif has_part ofrep; then
    log "part ofrep: gatehouse not available: pending"
fi

# ---------------------------------------------------------------- part 3: flagd gRPC beside OFREP over HTTP/2

H2_BODIES=$TMPD/h2
declare -A H2_EXPECT=()   # PROTO:FLAG -> bytes of one answer's DATA (curl probe before the runs); -1: the probe failed
read -r -a SPECS <<<"${SPEC//,/ }"

# h2_target PROTO FLAG: sets H2_URL, H2_BODY, H2_TYPE (bool/string) and H2_HDRS (h2load/curl -H arguments).
h2_target() {
    local proto=$1 flag=$2 method=ResolveString
    H2_TYPE=string
    case ",$SPEC," in *",$flag:bool,"*) H2_TYPE=bool method=ResolveBoolean ;; esac
    if [ "$proto" = grpc ]; then
        H2_URL=http://127.0.0.1:$GRPC_PORT/flagd.evaluation.v2.Service/$method
        H2_BODY=$H2_BODIES/grpc-$flag.bin
        H2_HDRS=(-H 'content-type: application/grpc' -H 'te: trailers' -H "x-api-key: $API_KEY")
    else
        H2_URL=http://127.0.0.1:$OFREP_PORT/ofrep/v1/evaluate/flags/$flag
        H2_BODY=$H2_BODIES/ofrep.json
        H2_HDRS=(-H 'content-type: application/json' -H "x-api-key: $API_KEY")
    fi
}

# h2_probe PROTO FLAG: one request with curl (h2c prior knowledge); the answer's size is what every answer
# of the runs must have (H2_EXPECT), and its decoded content goes into the report.
h2_probe() {
    local proto=$1 flag=$2 f st desc typ=json
    h2_target "$proto" "$flag"
    f=$H2_BODIES/answer-$proto-$flag
    st=$(curl -s -m 2 --http2-prior-knowledge -o "$f" -D "$f.hdr" "${H2_HDRS[@]}" --data-binary @"$H2_BODY" -w '%{http_code}' "$H2_URL" 2>/dev/null)
    [ "$proto" = grpc ] && typ=$H2_TYPE
    desc=$(/usr/bin/python3 "$HERE/flags/grpc_check.py" decode "$TMPD/pb" "$typ" "$f" 2>&1 | head -1)
    if [ "$st" = 200 ] && { [ "$proto" != grpc ] || grep -qiE $'^grpc-status: 0\r?$' "$f.hdr"; }; then
        H2_EXPECT[$proto:$flag]=$(stat -c %s "$f")
    else
        H2_EXPECT[$proto:$flag]=-1
        desc="HTTP $st $(grep -i '^grpc-' "$f.hdr" 2>/dev/null | tr -d '\r' | paste -sd ' ') $desc"
    fi
    info "h2_answer_$proto:$flag" "${H2_EXPECT[$proto:$flag]} $desc"
    log "  $proto $flag, context 0: ${H2_EXPECT[$proto:$flag]} bytes: $desc"
}

# h2load_run DURATION OUT: h2load on core CLIENT_CPU against the current target (h2_target).
h2load_run() {
    local d=$1 out=$2
    run_bg $((d + 15)) "$out" taskset -c "$CLIENT_CPU" h2load -D "$d" -c "$H2_CONNS" -m "$H2_STREAMS" -d "$H2_BODY" "${H2_HDRS[@]}" "$H2_URL"
    cat "$out.err" >>"$out"
}

# parse_h2load FILE: "done succeeded 2xx failed errored timeout rps data_bytes mean_ms" from h2load's summary.
parse_h2load() {
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        /^finished in / { rps = $4 }
        /^requests: / { done = $6; ok = $8; failed = $10; errored = $12; tmo = $14 }
        /^status codes: / { s2 = $3 }
        /^traffic: / { d = $0; sub(/ data.*$/, "", d); sub(/^.*\(/, "", d); sub(/\).*$/, "", d); data = d }
        /^time for request:/ { mean = ms($6) }
        END { printf "%d %d %d %d %d %d %s %.0f %.3f\n", done, ok, s2, failed, errored, tmo, rps + 0, data, mean }' "$1"
}

# run_h2 PROTO FLAG ROUND PID: warm-up, busy check, one measured h2load run (repeated once if noisy).
run_h2() {
    local proto=$1 flag=$2 round=$3 pid=$4 out=$TMPD/h2load-$1-$2-$3.txt attempt t0 t1 p0 p1 c0 c1 s0 s1 o0 o1 b
    local done ok s2 failed errored tmo rps data mean err pus per exp
    h2_target "$proto" "$flag"
    exp=${H2_EXPECT[$proto:$flag]:-0}
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        h2load_run 1 "$TMPD/h2-warmup.txt"
        calm_down
        [ "$WAITED" = 1 ] && h2load_run 1 "$TMPD/h2-warmup.txt"
        read -r t0 p0 <<<"$(tree_ticks "$pid")"
        c0=$(cpu_cores); s0=$(self_ticks)
        h2load_run "$H2_DURATION" "$out"
        s1=$(self_ticks); c1=$(cpu_cores)
        read -r t1 p1 <<<"$(tree_ticks "$pid")"
        read -r o0 o1 _ <<<"$(other_load "$c0" "$c1" $((t1 - t0)) $((s1 - s0)))"
        read -r -a b <<<"$(core_busy "$c0" "$c1")"
        [ "$p0" != "$p1" ] && FLAG="$FLAG,PIDS_CHANGED"
        kill -0 "$pid" 2>/dev/null || FLAG="$FLAG,DIED"
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ] && [[ $FLAG != *DIED* ]]; then
                NOISE_SPENT=$((NOISE_SPENT + H2_DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $proto $flag run $round (> $OTHER_MAX%): repeating it"
                sleep 1; continue
            fi
        fi
        break
    done
    read -r done ok s2 failed errored tmo rps data mean <<<"$(parse_h2load "$out")"
    # every done request must have succeeded with a 2xx status and carried the probed answer's bytes
    err=$((failed + errored + tmo + done - ok + done - s2))
    if [ "${done:-0}" -gt 0 ]; then
        pus=$(awk -v t=$((t1 - t0)) -v k="$CLK_TCK" -v r="$done" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
        per=$(awk -v d="$data" -v r="$done" 'BEGIN { printf "%.2f", d / r }')
        [ "$data" != $((done * exp)) ] && FLAG="$FLAG,BADSIZE"
    else
        pus=nan per=nan; FLAG="$FLAG,FAILED"; log "h2load got no answers for $proto $flag:"; tail -12 "$out" >&2
    fi
    [ "$err" -gt 0 ] && FLAG="$FLAG,ERR"
    FLAG=${FLAG#ok,}
    read -r -a bb <<<"$BUSY"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$proto" "$flag" "$done" "$rps" "$mean" "$pus" "$err" "$per" "$exp" \
        "${bb[0]}" "${b[$SERVER_CPU]}" "${b[$CLIENT_CPU]}" "$o0" "$o1" "$attempt" "$FLAG" >>"$H2_TSV"
    printf '[%s]   %-9s %-13s run %s: %8.0f req/s  mean %6.3f ms  server %5s us/req  errors %s  %s B/answer  gatehouse/h2load core busy %s/%s%%  other %s/%s%% %s\n' \
        "$(date +%H:%M:%S)" "$proto" "$flag" "$round" "$rps" "$mean" "$pus" "$err" "$per" "${b[$SERVER_CPU]}" "${b[$CLIENT_CPU]}" "$o0" "$o1" \
        "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

if has_part grpc && [ "$GH_OK" = 1 ] && command -v h2load >/dev/null && command -v protoc >/dev/null; then
    mkdir -p "$H2_BODIES" "$TMPD/pb"
    if ! protoc --python_out="$TMPD/pb" -I "$GH_ROOT/proto" "$GH_ROOT/proto/flagd/evaluation/v2/evaluation.proto" >"$TMPD/protoc.out" 2>&1 ||
        ! /usr/bin/python3 "$HERE/flags/grpc_check.py" bodies "$TMPD/pb" "$IN/contexts.json" 0 "$H2_BODIES" "${SPECS[@]}" >"$TMPD/bodies.out" 2>&1; then
        log "part grpc: protoc or the request bodies failed: pending"; cat "$TMPD/protoc.out" "$TMPD/bodies.out" >&2
    else
        CONF=$TMPD/gh-h2.yaml
        gen_gh_conf "$CONF" "$IN/flags.json" h2
        info h2_bodies "$(paste -sd ' ' "$TMPD/bodies.out")"
        log "part grpc: gatehouse workers 1 on core $SERVER_CPU; $RUNS rounds of h2load -D ${H2_DURATION}s -c$H2_CONNS -m$H2_STREAMS per flag, flagd gRPC (v2) and OFREP over h2c, the first context's body (bytes: $(paste -sd ' ' "$TMPD/bodies.out"))"
        PROBED=0
        for ((r = 1; r <= RUNS; r++)); do
            start_gh "$CONF" "grpc-$r" || { log "no gRPC figures for round $r"; continue; }
            pid=$SERVER_PID
            if [ "$PROBED" = 0 ]; then
                PROBED=1
                log "gatehouse up: $(tree_tasks "$pid")"
                for fl in "${FLAG_KEYS[@]}"; do h2_probe grpc "$fl"; h2_probe ofrep-h2c "$fl"; done
                # gRPC answers = evalbench's (or flagd-core's) variants and values, for the first 50 contexts.
                ref=$TMPD/var-gh.tsv; [ -s "$ref" ] || ref=$TMPD/var-fc.tsv
                if [ ! -s "$ref" ] && [ "$EB_OK" = 1 ]; then
                    run_bg 60 "$TMPD/var-gh.tsv" "$EB" variants "$IN/flags.json" "$IN/contexts.json" "$SPEC" || log "evalbench variants failed"
                    ref=$TMPD/var-gh.tsv
                fi
                if [ ! -s "$ref" ]; then
                    log "gRPC check: no in-process variants to compare with (evalbench and flagd-core missing)"
                elif ! /usr/bin/python3 -c 'import grpc' 2>/dev/null; then
                    log "gRPC check: python3 grpcio not installed; only the probes above were checked"
                else
                    read -r n bad absent badval notok <<<"$(timeout 60 /usr/bin/python3 "$HERE/flags/grpc_check.py" check "$TMPD/pb" "$GRPC_PORT" \
                        "$API_KEY" "$IN/contexts.json" "$ref" 50 "${SPECS[@]}" 2>"$TMPD/grpc_check.err")"
                    grep -v ' context 0: ' "$TMPD/grpc_check.err" >&2
                    info grpc_check "${n:-0} ${bad:-?} ${absent:-?} ${badval:-?} ${notok:-?} $(basename "$ref" .tsv)"
                    log "gRPC check: ${n:-0} calls (3 flags x 50 contexts): ${bad:-?} variants differ from the in-process engine's, ${absent:-?} answers without a variant, ${badval:-?} values differ, ${notok:-?} not OK"
                fi
            fi
            # flags rotate from round to round, both protocols of a flag side by side (which one first alternates)
            for ((k = 0; k < ${#FLAG_KEYS[@]}; k++)); do
                fl=${FLAG_KEYS[$(((k + r - 1) % ${#FLAG_KEYS[@]}))]}
                if [ $((r % 2)) = 1 ]; then protos=(grpc ofrep-h2c); else protos=(ofrep-h2c grpc); fi
                for proto in "${protos[@]}"; do run_h2 "$proto" "$fl" "$r" "$pid"; done
            done
            stop_system "$pid"
        done
    fi
elif has_part grpc; then
    log "part grpc: gatehouse, h2load or protoc not available: pending"
fi

# ---------------------------------------------------------------- part 4: load time and memory of 10,000 flags

if has_part load; then
    log "part load: $BIG_FLAGS flags"
    if [ "$EB_OK" = 1 ]; then
        run_bg 120 "$TMPD/load-gh.txt" taskset -c "$SERVER_CPU" "$EB" load "$IN/flags-big.json" "$LOAD_REPS" &&
            info load_gh "$(grep '^load' "$TMPD/load-gh.txt" | cut -f2-)" || { log "evalbench load failed"; cat "$TMPD/load-gh.txt.err" >&2; }
        for kind in static targeting fractional; do
            run_bg 60 "$TMPD/load-gh-$kind.txt" taskset -c "$SERVER_CPU" "$EB" load "$IN/flags-big-$kind.json" 1 &&
                info "load_gh_$kind" "$(grep '^load' "$TMPD/load-gh-$kind.txt" | cut -f2-)"
        done
        log "  gh_flags_load: $(cut -f2- "$TMPD/load-gh.txt" 2>/dev/null) (ms median/min/max, heap bytes, RSS kB, flags)"
    fi
    if [ "$FC_OK" = 1 ]; then
        run_bg 180 "$TMPD/load-fc.txt" taskset -c "$SERVER_CPU" "$NODE" --expose-gc "$HERE/flags/flagdcore.js" load "$IN/flags-big.json" "$LOAD_REPS" &&
            info load_fc "$(grep '^load' "$TMPD/load-fc.txt" | cut -f2-)" || { log "flagdcore.js load failed"; cat "$TMPD/load-fc.txt.err" >&2; }
        log "  FlagdCore.setConfigurations: $(cut -f2- "$TMPD/load-fc.txt" 2>/dev/null)"
    fi
    if [ "$GH_OK" = 1 ]; then
        gen_gh_conf "$TMPD/gh-small.yaml" "$IN/flags.json"
        gen_gh_conf "$TMPD/gh-big.yaml" "$IN/flags-big.json"
        for which in small big; do
            ts=()
            for i in 1 2 3; do
                t0=$(date +%s%N)
                if ! run_bg 60 "$TMPD/validate-$which.txt" taskset -c "$SERVER_CPU" "$GH_BIN_COPY" validate -c "$TMPD/gh-$which.yaml"; then
                    log "gatehouse validate ($which) failed:"; cat "$TMPD/validate-$which.txt" "$TMPD/validate-$which.txt.err" | head -5 >&2; ts=(); break
                fi
                ts+=($((($(date +%s%N) - t0) / 1000)))
            done
            [ ${#ts[@]} -gt 0 ] && info "validate_$which" "$(printf '%s\n' "${ts[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f %.1f %.1f", a[int((NR + 1) / 2)] / 1000, a[1] / 1000, a[NR] / 1000 }')"
        done
        log "  gatehouse validate ms (median min max): 3 flags $(awk -F'\t' '$1 == "validate_small" { print $2 }' "$INFO"); $BIG_FLAGS flags $(awk -F'\t' '$1 == "validate_big" { print $2 }' "$INFO")"
        for which in small big; do
            PROBE_FLAG=static-flag; [ "$which" = big ] && PROBE_FLAG=f00003
            if start_gh "$TMPD/gh-$which.yaml" "rss-$which"; then
                pid=$SERVER_PID
                # a few evaluations of each kind, then let it settle
                for f in "$PROBE_FLAG" "$([ "$which" = big ] && echo f00004 || echo targeted-flag)" "$([ "$which" = big ] && echo f00005 || echo split-flag)"; do
                    ofrep_post "$f" "$(head -1 "$IN/bodies.txt")" >/dev/null
                done
                sleep 1
                info "rss_$which" "$(tree_rss_kb "$pid") $(tree_pss_kb "$pid")"
                log "  running gatehouse with the $which file: RSS $(tree_rss_kb "$pid") kB, Pss $(tree_pss_kb "$pid") kB ($(tree_tasks "$pid"))"
                stop_system "$pid"
            fi
        done
        PROBE_FLAG=static-flag
    fi
fi

# ---------------------------------------------------------------- report

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget on waits and repeats; total $(($(date +%s) - T_START))s"
cp "$EVAL_TSV" "$OUTDIR/flags-eval-raw-$STAMP.tsv"
cp "$OFREP_TSV" "$OUTDIR/flags-ofrep-raw-$STAMP.tsv"
cp "$H2_TSV" "$OUTDIR/flags-grpc-raw-$STAMP.tsv"
MD=$OUTDIR/flags-$STAMP.md
{
    echo "# gatehouse feature-flag benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    echo "command: $CMDLINE"
    machine
    echo "inputs: bench/flags/gen.js seed $SEED: static-flag (boolean, no targeting), targeted-flag (if/and of ==, in, starts_with, >=, sem_ver), split-flag (fractional 34/33/33 by flagKey+targetingKey); $CONTEXTS contexts of 10 attributes; $BIG_FLAGS-flag definition for the load part"
    echo "eval: evalbench (gh_flags_eval, contexts pre-parsed with jansson, now = GH_JL_NOW: the clock is read only by rules using \$flagd.timestamp) and FlagdCore.resolve{Boolean,String}Evaluation (contexts pre-parsed, ${WARMUP_MS} ms warm-up per flag), each pinned to core $SERVER_CPU; $EVAL_ROUNDS processes per engine alternating, $EVAL_REPS repetitions of >= ${EVAL_MS} ms per flag each"
    echo "ofrep: gatehouse workers 1 (and, FLOOR=$FLOOR, nginx worker_processes 1 'return 200' with the same answer bytes) on core $SERVER_CPU, wrk -t1 -c$CONNS -d${DURATION}s --latency on core $CLIENT_CPU, POST /ofrep/v1/evaluate/flags/KEY with X-API-Key and the $CONTEXTS contexts in turn; $RUNS rounds, fresh gatehouse per round, 1 s warm-up + busy check per run"
    echo "grpc: gatehouse workers 1 (flagd_grpc and ofrep with h2c) on core $SERVER_CPU, h2load -D ${H2_DURATION}s -c$H2_CONNS -m$H2_STREAMS (1 thread) on core $CLIENT_CPU; flagd.evaluation.v2.Service/ResolveBoolean|ResolveString with x-api-key, and POST /ofrep/v1/evaluate/flags/KEY over h2c, the first context as the body of every request; $RUNS rounds, fresh gatehouse per round, 1 s warm-up + busy check per run"
    echo '```'
    echo
    /usr/bin/python3 "$HERE/flags/report.py" "$EVAL_TSV" "$OFREP_TSV" "$INFO" "$FLAGD_PUBLISHED" "$BIG_FLAGS" "$OTHER_MAX" "$SHARE_MIN" "$H2_TSV"
    if [ -s "$TMPD/mismatches.txt" ]; then
        echo
        echo "First mismatches (flag, context index):"
        echo '```'
        cat "$TMPD/mismatches.txt"
        echo '```'
    fi
} >"$MD"
echo
cat "$MD"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/flags-eval-raw-$STAMP.tsv $OUTDIR/flags-ofrep-raw-$STAMP.tsv $OUTDIR/flags-grpc-raw-$STAMP.tsv"
