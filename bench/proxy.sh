#!/usr/bin/env bash
# bench/proxy.sh: side-by-side reverse-proxy benchmark (gatehouse, nginx, HAProxy) on one origin.
#
#   bash bench/proxy.sh          throughput/latency/CPU-per-request table (~6-7 min by default)
#   bash bench/proxy.sh idle     idle-connection memory (runs bench/idle_conns.sh)
#
# Method (see /work/shared/BENCHMARKING.md and bench/README.md): origin nginx and the proxy under
# test pinned to core 0, wrk pinned to core 1; one proxy running at a time; rounds interleave the
# systems (round 1: origin, gatehouse, nginx, haproxy; round 2: ...) so slow drift on a shared box
# hits every system alike; each measurement is a 1 s warm-up, a /proc/stat busy check, then
# wrk -t1 -c64 -d${DURATION}s --latency; the proxy tree's utime+stime is read before and after.
#
# Environment: DURATION (8) RUNS (3) CONNS (64) WORKERS ("1 2") SYSTEMS ("gatehouse nginx haproxy")
# SIZES ("small big") BUSY_MAX (30: % of both cores busy over 0.5 s before a run that makes it wait)
# BUSY_WAIT (20: seconds to wait for the machine to calm down; after that the run is flagged BUSY)
# OTHER_MAX (10: % of a core used by other processes during a run that makes it NOISY)
# NOISY_RETRIES (2: a NOISY run is repeated up to this many times; the last attempt is kept)
# NOISE_BUDGET (90: total seconds the whole benchmark may spend waiting for calm and repeating
# noisy runs; after that runs are only flagged, so the runtime stays bounded)
# GATEHOUSE_BIN (./build/gatehouse) GATEHOUSE_ARGS ("run -c {conf}") KEEP_TMP (keep temp dir).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "${1:-}" = idle ]; then shift; exec bash "$HERE/idle_conns.sh" "$@"; fi
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-8}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1 2}
SYSTEMS=${SYSTEMS:-gatehouse nginx haproxy}
SIZES=${SIZES:-small big}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-10}
NOISY_RETRIES=${NOISY_RETRIES:-2}
NOISE_BUDGET=${NOISE_BUDGET:-90}
NOISE_SPENT=0

for t in nginx haproxy wrk curl taskset ss awk /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done

bench_init
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
RES=$TMPD/results.tsv
printf 'workers\tsystem\tsize\tround\trequests\trps\tp50_ms\tp99_ms\tproxy_us_req\torigin_us_req\tbusy_total\tbusy_cpu0\tbusy_cpu1\tother_cpu0\tother_cpu1\tsteal\tattempts\tbusy_flag\terrors\n' >"$RES"

pick_ports 4
OPORT=${PORTS[0]}
declare -A PORT_OF=([origin]=${PORTS[0]} [gatehouse]=${PORTS[1]} [nginx]=${PORTS[2]} [haproxy]=${PORTS[3]})

log "temp dir $TMPD; ports: origin $OPORT gatehouse ${PORT_OF[gatehouse]} nginx ${PORT_OF[nginx]} haproxy ${PORT_OF[haproxy]}"
log "pinning: servers on core $SERVER_CPU, wrk on core $CLIENT_CPU; nofile limit $NOFILE"
versions | sed 's/^/  /' >&2

gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"
ORIGIN_PID=$SERVER_PID
[ "$(curl -s "http://127.0.0.1:$OPORT/big" | wc -c)" = 65536 ] || die "origin /big is not 64 KiB"

# gatehouse is optional: skip it (with a message) if it is missing or does not serve.
ACTIVE=()
for s in $SYSTEMS; do
    if [ "$s" = gatehouse ]; then
        if ! gatehouse_available; then
            log "SKIP gatehouse: $GATEHOUSE_BIN not found/executable (build it with make, or set GATEHOUSE_BIN)"
            continue
        fi
        conf=$(gen_proxy_conf gatehouse 1 "${PORT_OF[gatehouse]}" "$OPORT" bench)
        if ! start_system gatehouse "$conf" "${PORT_OF[gatehouse]}"; then
            log "SKIP gatehouse: it did not answer 200 on /small within 5 s (args: $GATEHOUSE_ARGS)"
            continue
        fi
        body=$(curl -s "http://127.0.0.1:${PORT_OF[gatehouse]}/small")
        big=$(curl -s "http://127.0.0.1:${PORT_OF[gatehouse]}/big" | wc -c)
        stop_system "$SERVER_PID"
        if [ "$body" != "$BODY_SMALL" ] || [ "$big" != 65536 ]; then
            log "SKIP gatehouse: wrong bodies through it (/small ${#body} B, /big $big B)"
            continue
        fi
    fi
    ACTIVE+=("$s")
done

# parse_wrk FILE: "requests rps p50_ms p99_ms errors"
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        /^ +50% / { p50 = ms($2) }
        /^ +99% / { p99 = ms($2) }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        END { printf "%s %s %.3f %.3f %d\n", req + 0, rps + 0, p50, p99, err }' "$1"
}

# run_wrk DURATION URL OUT [--latency]: wrk on the client core; its CPU ticks go to OUT.ticks
# (read from the wrapper shell's cutime+cstime once wrk has been reaped).
run_wrk() {
    local d=$1 url=$2 out=$3; shift 3
    taskset -c "$CLIENT_CPU" bash -c 'wrk "$@"; rc=$?; read -r l </proc/$$/stat; l=${l##*) }; set -- $l;
        echo $((${14} + ${15})) >"$WRK_TICKS"; exit $rc' wrk -t1 -c"$CONNS" -d"${d}s" "$@" "$url" >"$out" 2>&1 &
    local w=$!
    STARTED_PIDS+=("$w")
    wait "$w"
    forget_pid "$w"
}

# run_one SYSTEM WORKERS SIZE ROUND PORT PID
run_one() {
    local sys=$1 n=$2 size=$3 round=$4 port=$5 pid=$6
    local url=http://127.0.0.1:$port/$size out=$TMPD/wrk-$sys-$n-$size-$round.txt
    local busy flag waited tp0 to0 tp1 to1 pp0 pp1 po0 po1 req rps p50 p99 err pus ous
    local c0 c1 srv wt other o0 o1 steal attempt
    export WRK_TICKS=$TMPD/wrk.ticks
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        flag=ok waited=0
        run_wrk 1 "$url" "$TMPD/warmup.txt"
        while :; do
            busy=$(busy_sample 0.5)
            [ "${busy%% *}" -le "$BUSY_MAX" ] && break
            if [ "$waited" -ge "$BUSY_WAIT" ] || [ "$NOISE_SPENT" -ge "$NOISE_BUDGET" ]; then flag=BUSY; break; fi
            [ "$waited" = 0 ] && log "machine busy (${busy%% *}% > $BUSY_MAX%: cpu0/cpu1 ${busy#* }) before $sys/$size/N=$n; waiting up to ${BUSY_WAIT}s"
            sleep 2; waited=$((waited + 2)); NOISE_SPENT=$((NOISE_SPENT + 2))
        done
        [ "$waited" -gt 0 ] && [ "$flag" = ok ] && run_wrk 1 "$url" "$TMPD/warmup.txt"
        read -r tp0 pp0 <<<"$(tree_ticks "$pid")"; read -r to0 po0 <<<"$(tree_ticks "$ORIGIN_PID")"
        c0=$(cpu_cores)
        run_wrk "$DURATION" "$url" "$out" --latency
        c1=$(cpu_cores)
        read -r tp1 pp1 <<<"$(tree_ticks "$pid")"; read -r to1 po1 <<<"$(tree_ticks "$ORIGIN_PID")"
        wt=$(cat "$WRK_TICKS" 2>/dev/null || echo 0)
        srv=$((tp1 - tp0)); [ "$pid" != "$ORIGIN_PID" ] && srv=$((srv + to1 - to0))
        read -r o0 o1 steal <<<"$(other_load "$c0" "$c1" "$srv" "$wt")"
        if [ "$pp0" != "$pp1" ] || [ "$po0" != "$po1" ]; then
            flag="$flag,PIDS_CHANGED"
            log "process tree changed during the run ($sys: $pp0 -> $pp1; origin: $po0 -> $po1): CPU figures may be off"
            grep -hE 'signal [0-9]+ .*received|exited' "$TMPD"/origin/error.log "$TMPD"/nginx-bench-*/error.log 2>/dev/null | tail -n 5 >&2
        fi
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            flag="$flag,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $sys/$size/N=$n run $round (> $OTHER_MAX%): repeating it"
                sleep 2
                continue
            fi
        fi
        break
    done
    read -r req rps p50 p99 err <<<"$(parse_wrk "$out")"
    if [ "${req:-0}" -gt 0 ]; then
        pus=$(awk -v t=$((tp1 - tp0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
        ous=$(awk -v t=$((to1 - to0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
    else
        pus=nan; ous=nan; flag="$flag,FAILED"
        log "wrk got no responses from $sys:"; cat "$out" >&2
    fi
    [ "$err" -gt 0 ] && flag="$flag,ERR"
    flag=${flag#ok,}
    read -r -a b <<<"$busy"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$n" "$sys" "$size" "$round" "$req" "$rps" "$p50" "$p99" "$pus" "$ous" \
        "${b[0]}" "${b[1]:-}" "${b[2]:-}" "$o0" "$o1" "$steal" "$attempt" "$flag" "$err" >>"$RES"
    printf '  N=%s %-9s %-5s run %s: %7.0f req/s  p50 %6.3f ms  p99 %7.3f ms  proxy %6s us/req  origin %6s us/req  busy-before %s%% (cpu0 %s%% cpu1 %s%%)  other-during cpu0 %s%% cpu1 %s%% steal %s%% %s\n' \
        "$n" "$sys" "$size" "$round" "$rps" "$p50" "$p99" "$pus" "$ous" "${b[0]}" "${b[1]:-?}" "${b[2]:-?}" \
        "$o0" "$o1" "$steal" "$([ "$flag" = ok ] || echo "[$flag]")" >&2
}

nruns=$((RUNS * ${#ACTIVE[@]} * $(wc -w <<<"$SIZES") * $(wc -w <<<"$WORKERS") + RUNS * $(wc -w <<<"$SIZES")))
log "systems: origin(alone) ${ACTIVE[*]}; workers: $WORKERS; sizes: $SIZES; $RUNS runs of ${DURATION}s each (+1 s warm-up); ~$((nruns * (DURATION + 2) / 60 + 1)) min"

first_n=${WORKERS%% *}
for n in $WORKERS; do
    if [ "$n" -gt 1 ]; then
        log "N=$n: all $n workers share core $SERVER_CPU with the origin (wrk keeps core $CLIENT_CPU): on a 2-core box these figures are about contention and per-worker overhead, not scaling"
    fi
    for ((r = 1; r <= RUNS; r++)); do
        if [ "$n" = "$first_n" ]; then
            for size in $SIZES; do run_one origin 1 "$size" "$r" "$OPORT" "$ORIGIN_PID"; done
        fi
        for sys in "${ACTIVE[@]}"; do
            conf=$(gen_proxy_conf "$sys" "$n" "${PORT_OF[$sys]}" "$OPORT" bench)
            if ! start_system "$sys" "$conf" "${PORT_OF[$sys]}"; then
                log "$sys N=$n did not start; no figures for this round"
                continue
            fi
            pid=$SERVER_PID
            [ "$r" = 1 ] && log "$sys N=$n up: $(tree_tasks "$pid")"
            for size in $SIZES; do run_one "$sys" "$n" "$size" "$r" "${PORT_OF[$sys]}" "$pid"; done
            # nginx notes when it spools a proxied body to disk; report it (it costs nginx CPU).
            d=$(dirname "$conf")
            if [ -f "$d/error.log" ] && grep -q "buffered to a temporary file" "$d/error.log"; then
                log "note: nginx buffered upstream responses to temp files in this run ($(grep -c 'buffered to a temporary file' "$d/error.log") times)"
            fi
            stop_system "$pid"
        done
    done
done

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget on waits and repeats"
cp "$RES" "$OUTDIR/raw-$STAMP.tsv"
MD=$OUTDIR/results-$STAMP.md
{
    echo "# gatehouse proxy benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    versions
    echo "method: servers pinned to core $SERVER_CPU, wrk to core $CLIENT_CPU; wrk -t1 -c$CONNS -d${DURATION}s --latency after a 1 s warm-up; median of $RUNS runs, rounds interleaved"
    echo '```'
    echo
} >"$MD"
/usr/bin/python3 "$HERE/report.py" "$RES" --md >>"$MD"
echo
/usr/bin/python3 "$HERE/report.py" "$RES"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/raw-$STAMP.tsv"
