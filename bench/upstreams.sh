#!/usr/bin/env bash
# bench/upstreams.sh: upstream-resilience benchmark: gatehouse's balancing policies, and one backend
# killed under load in gatehouse, HAProxy and nginx side by side.
#
#   bash bench/upstreams.sh      both parts, ~5-6 min (+ at most NOISE_BUDGET s on a noisy box)
#
# Part 1, policy overhead (gatehouse only, 1 worker): three origin nginx (every path answers 200 with
# a 100-byte body) and gatehouse pinned to core 0, wrk on core 1. For each balance policy
# (round_robin, least_request, peak_ewma, hash with hash_key: path) a fresh gatehouse, 1 s warm-up,
# busy check, then wrk -t1 -c64 -d8s --latency -s paths.lua (the same Lua script for every policy:
# it cycles GET /p/0 .. /p/999); 3 rounds, policies interleaved within each round. Reported:
# req/s median (min..max), p50/p99, gatehouse CPU µs/request, the share of origin CPU each origin
# got (shows the policy spreads load), and each policy's req/s and CPU/request ratio to round_robin.
#
# Part 2, kill one backend under load: for each proxy in turn (gatehouse round_robin + health_check,
# HAProxy roundrobin + httpchk/redispatch/retries, nginx + proxy_next_upstream/max_fails) three origins
# are started fresh, then the proxy; 1 s warm-up; wrk -t1 -c64 -d10s --latency -s kill.lua (counts
# non-2xx responses); 3 s into the run the second origin's master and worker get SIGKILL together.
# Reported per proxy, median over 3 repetitions (everything restarted each time): requests,
# failed = non-2xx + socket errors (connect/read/write/timeout), success rate, p99.
#
# Environment: RUNS (3, part 1 runs per policy) DURATION (8, part 1 run length) REPS (3, part 2
# repetitions) KILL_DURATION (10) KILL_AT (3: seconds into the run) CONNS (64) PATHS (1000)
# POLICIES ("round_robin least_request peak_ewma hash:path") PROXIES ("gatehouse haproxy nginx")
# PARTS ("1 2") BUSY_MAX (30) BUSY_WAIT (10) OTHER_MAX (10) NOISY_RETRIES (1) NOISE_BUDGET (60)
# GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP (keep the temp dir: configs, logs, wrk outputs).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
REPS=${REPS:-3}
KILL_DURATION=${KILL_DURATION:-10}
KILL_AT=${KILL_AT:-3}
CONNS=${CONNS:-64}
PATHS=${PATHS:-1000}
POLICIES=${POLICIES:-round_robin least_request peak_ewma hash:path}
PROXIES=${PROXIES:-gatehouse haproxy nginx}
PARTS=${PARTS:-1 2}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-10}
OTHER_MAX=${OTHER_MAX:-10}
NOISY_RETRIES=${NOISY_RETRIES:-1}
NOISE_BUDGET=${NOISE_BUDGET:-60}
NOISE_SPENT=0
T_START=$(date +%s)

for t in nginx haproxy wrk curl taskset ss awk ps /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
[[ $KILL_AT -lt $KILL_DURATION ]] || die "KILL_AT ($KILL_AT) must be below KILL_DURATION ($KILL_DURATION)"

bench_init
gatehouse_available || die "gatehouse binary $GATEHOUSE_BIN not found (run make -C $GH_ROOT)"
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
RES1=$TMPD/policies.tsv
RES2=$TMPD/kill.tsv
printf 'policy\tround\trequests\trps\tp50_ms\tp99_ms\tgh_us_req\torigin_us_req\tshare1\tshare2\tshare3\tbusy_total\tother_cpu0\tother_cpu1\tsteal\tattempts\tflag\terrors\n' >"$RES1"
printf 'proxy\trep\trequests\trps\tp50_ms\tp99_ms\tnon2xx_lua\tstatus_wrk\tconnect\tread\twrite\ttimeout\tfailed\tsuccess_pct\tproxy_us_req\tkill_at_s\tkilled_pids\tbusy_total\tother_cpu0\tother_cpu1\tflag\tcodes\tproxy_notes\n' >"$RES2"

# Ports: 3 origins, then one per proxy.
pick_ports 7
OP=("${PORTS[0]}" "${PORTS[1]}" "${PORTS[2]}")
declare -A PPORT=([gatehouse]=${PORTS[3]} [haproxy]=${PORTS[4]} [nginx]=${PORTS[5]})
ADMIN_PORT=${PORTS[6]}   # gatehouse's admin listener in part 2 (its /metrics is read after each run)

# ---------------------------------------------------------------- wrk Lua scripts

# paths.lua: PATHS pre-formatted requests GET /p/0 .. /p/(PATHS-1), sent in turn (hash: path spreads).
cat >"$TMPD/paths.lua" <<EOF
local n = $PATHS
local reqs = {}
local i = 0
function init(args)
    for k = 0, n - 1 do reqs[k + 1] = wrk.format("GET", "/p/" .. k) end
end
function request()
    i = i % n + 1
    return reqs[i]
end
EOF
# kill.lua: counts responses and non-2xx responses (per status code) over all threads.
cat >"$TMPD/kill.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non2xx = 0; responses = 0; codes = {} end
function response(status, headers, body)
    responses = responses + 1
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
        codes[status] = (codes[status] or 0) + 1
    end
end
function done(summary, latency, requests)
    local n, r, all = 0, 0, {}
    for _, t in ipairs(threads) do
        n = n + t:get("non2xx"); r = r + t:get("responses")
        for c, k in pairs(t:get("codes")) do all[c] = (all[c] or 0) + k end
    end
    local s = ""
    for c, k in pairs(all) do s = s .. (s == "" and "" or ",") .. c .. ":" .. k end
    io.write(string.format("LUA non2xx=%d responses=%d codes=%s\n", n, r, s == "" and "-" or s))
end
EOF

# ---------------------------------------------------------------- helpers

# run_wrk_bg DURATION URL OUT ARGS...: wrk on the client core in the background; sets WRK_PID.
run_wrk_bg() {
    local d=$1 url=$2 out=$3; shift 3
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${d}s" "$@" "$url" >"$out" 2>&1 </dev/null &
    WRK_PID=$!
    STARTED_PIDS+=("$WRK_PID")
}
wait_wrk() { wait "$WRK_PID"; forget_pid "$WRK_PID"; }
run_wrk() { run_wrk_bg "$@"; wait_wrk; }

# calm_down_warm URL LUA: calm_down (lib.sh), with BUSY the total %, and a warm-up again if it waited.
calm_down_warm() {
    calm_down
    BUSY=${BUSY%% *}
    if [ "$WAITED" = 1 ] && [ "$FLAG" = ok ]; then run_wrk 1 "$1" "$TMPD/warmup.txt" -s "$2"; fi
}

us_per_req() { awk -v t="$1" -v k="$CLK_TCK" -v r="$2" 'BEGIN { if (r > 0) printf "%.2f", t * 1e6 / k / r; else print "nan" }'; }

# start_origins TAG: three fresh origins on OP[0..2]; sets ORIGIN_PIDS.
start_origins() {
    local i conf
    ORIGIN_PIDS=()
    for i in 0 1 2; do
        port_free "${OP[$i]}" || sleep 0.5
        conf=$(gen_pool_origin_conf "origin-$1-$((i + 1))" "${OP[$i]}")
        start_system origin "$conf" "${OP[$i]}" || die "origin $((i + 1)) (port ${OP[$i]}) did not start"
        ORIGIN_PIDS+=("$SERVER_PID")
    done
}
stop_origins() { local p; for p in "${ORIGIN_PIDS[@]}"; do stop_system "$p"; done; ORIGIN_PIDS=(); }

# start_proxy SYSTEM DIRNAME BALANCE HEALTH: sets PROXY_PID and PROXY_CONF; checks the body through it.
start_proxy() {
    local sys=$1 port=${PPORT[$1]} body
    PROXY_CONF=$(gen_pool_proxy_conf "$sys" "$2" "$port" "$3" "$4" "${OP[@]}")
    start_system "$sys" "$PROXY_CONF" "$port" || die "$sys ($3) did not start; config $PROXY_CONF"
    PROXY_PID=$SERVER_PID
    body=$(curl -s -m 2 "http://127.0.0.1:$port/p/1")
    [ "$body" = "$BODY_SMALL" ] || die "$sys: wrong body through it (${#body} B)"
}

# ---------------------------------------------------------------- part 1: policy overhead

part1_one() {   # part1_one POLICY ROUND
    local pol=$1 r=$2 url out attempt c0 c1 g0 g1 o0s o1s wt0 wt1 srv oth0 oth1 steal i tot
    local req rps p50 p99 c rd w to st ln lr gus ous sh
    url=http://127.0.0.1:${PPORT[gatehouse]}/
    out=$TMPD/p1-${pol/:/-}-$r.txt
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        start_proxy gatehouse "gh-p1-${pol/:/-}-$r-$attempt" "$pol" 0
        run_wrk 1 "$url" "$TMPD/warmup.txt" -s "$TMPD/paths.lua"
        calm_down_warm "$url" "$TMPD/paths.lua"
        read -r g0 _ <<<"$(tree_ticks "$PROXY_PID")"
        o0s=(); for i in 0 1 2; do read -r tot _ <<<"$(tree_ticks "${ORIGIN_PIDS[$i]}")"; o0s+=("$tot"); done
        wt0=$(self_ticks); c0=$(cpu_cores)
        run_wrk "$DURATION" "$url" "$out" --latency -s "$TMPD/paths.lua"
        c1=$(cpu_cores); wt1=$(self_ticks)
        read -r g1 _ <<<"$(tree_ticks "$PROXY_PID")"
        o1s=(); for i in 0 1 2; do read -r tot _ <<<"$(tree_ticks "${ORIGIN_PIDS[$i]}")"; o1s+=("$tot"); done
        stop_system "$PROXY_PID"
        tot=$(((o1s[0] - o0s[0]) + (o1s[1] - o0s[1]) + (o1s[2] - o0s[2])))
        srv=$((g1 - g0 + tot))
        read -r oth0 oth1 steal <<<"$(other_load "$c0" "$c1" "$srv" "$((wt1 - wt0))")"
        if [ "$oth0" -gt "$OTHER_MAX" ] || [ "$oth1" -gt "$OTHER_MAX" ]; then
            FLAG="${FLAG#ok},NOISY"; FLAG=${FLAG#,}
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${oth0}% of core $SERVER_CPU / ${oth1}% of core $CLIENT_CPU during $pol run $r: repeating it"
                continue
            fi
        fi
        break
    done
    read -r req rps p50 p99 c rd w to st ln lr <<<"$(parse_wrk_full "$out")"
    gus=$(us_per_req $((g1 - g0)) "$req")
    ous=$(us_per_req "$tot" "$req")
    sh=()
    for i in 0 1 2; do sh+=("$(awk -v a=$((o1s[i] - o0s[i])) -v t="$tot" 'BEGIN { printf "%.0f", (t > 0 ? 100 * a / t : 0) }')"); done
    [ "$req" -gt 0 ] || { FLAG="$FLAG,FAILED"; log "wrk got no responses through gatehouse ($pol):"; cat "$out" >&2; }
    [ $((c + rd + w + to + st)) -gt 0 ] && FLAG="$FLAG,ERR"
    FLAG=${FLAG#ok,}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pol" "$r" "$req" "$rps" "$p50" "$p99" \
        "$gus" "$ous" "${sh[0]}" "${sh[1]}" "${sh[2]}" "$BUSY" "$oth0" "$oth1" "$steal" "$attempt" "$FLAG" $((c + rd + w + to + st)) >>"$RES1"
    printf '  %-15s run %s: %7.0f req/s  p50 %6.3f ms  p99 %7.3f ms  gatehouse %6s us/req  origins %6s us/req  origin CPU share %s/%s/%s %%  busy-before %s%%  other-during cpu0 %s%% cpu1 %s%% %s\n' \
        "$pol" "$r" "$rps" "$p50" "$p99" "$gus" "$ous" "${sh[0]}" "${sh[1]}" "${sh[2]}" "$BUSY" "$oth0" "$oth1" \
        "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

# ---------------------------------------------------------------- part 2: kill one backend

# proxy_notes SYSTEM: what the proxy logged about the dead backend (one short line).
proxy_notes() {
    local d n
    d=$(dirname "$PROXY_CONF")
    case $1 in
    gatehouse)
        curl -s -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
            /^gatehouse_upstream_(retries|retry_budget_exhausted|ejections|connect_errors|failures)_total\{upstream="o"\}/ {
                n = $1; sub(/\{.*/, "", n); sub(/^gatehouse_upstream_/, "", n); sub(/_total$/, "", n); v[n] = $2 }
            END { printf "retries %d, budget-refused %d, connect errors %d, failures %d, ejections %d",
                  v["retries"], v["retry_budget_exhausted"], v["connect_errors"], v["failures"], v["ejections"] }'
        echo "; log: $(grep -c ' ejected ' "$d/stdout.log") ejected, $(grep -c ' is DOWN' "$d/stdout.log") DOWN"
        ;;
    haproxy) n=$(grep -c 'is DOWN' "$d/stdout.log" 2>/dev/null); echo "'is DOWN' lines: ${n:-0}" ;;
    nginx) n=$(grep -cE 'failed|prematurely|reset' "$d/error.log" 2>/dev/null); echo "error.log upstream errors: ${n:-0}" ;;
    esac
}

part2_one() {   # part2_one PROXY REP
    local sys=$1 r=$2 url out t0 tk victim killed left p0 p1 c0 c1 oth0 oth1 steal srv o0 o1 tot i wt0 wt1
    local req rps p50 p99 c rd w to st ln lr codes nonok failed succ pus notes
    url=http://127.0.0.1:${PPORT[$sys]}/
    out=$TMPD/p2-$sys-$r.txt
    start_origins "p2-$sys-$r"
    GH_ADMIN_PORT=$ADMIN_PORT start_proxy "$sys" "$sys-p2-$r" round_robin 1
    run_wrk 1 "$url" "$TMPD/warmup.txt"
    calm_down_warm "$url" "$TMPD/kill.lua"
    read -r p0 _ <<<"$(tree_ticks "$PROXY_PID")"
    o0=0; for i in 0 1 2; do read -r tot _ <<<"$(tree_ticks "${ORIGIN_PIDS[$i]}")"; o0=$((o0 + tot)); done
    victim=$(tree_pids "${ORIGIN_PIDS[1]}")   # origin 2: nginx master + worker, listed before the run
    wt0=$(self_ticks); c0=$(cpu_cores)
    t0=$(date +%s.%N)
    run_wrk_bg "$KILL_DURATION" "$url" "$out" --latency -s "$TMPD/kill.lua"
    sleep "$(awk -v a="$KILL_AT" -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { s = a - (now - t0); print (s > 0 ? s : 0) }')"
    # shellcheck disable=SC2086
    pids_ticks $victim   # the victim's CPU up to the kill still counts as server CPU on core 0
    disown "${ORIGIN_PIDS[1]}" 2>/dev/null   # no "Killed" job notice from bash; it still reaps it
    # shellcheck disable=SC2086
    kill_now $victim
    tk=$(awk -v t0="$t0" -v now="$(date +%s.%N)" 'BEGIN { printf "%.2f", now - t0 }')
    o0=$((o0 - PIDS_TICKS))
    killed=$victim
    sleep 0.1
    # shellcheck disable=SC2086
    left=$(pids_alive $victim)
    [ -z "$left" ] || log "WARNING: still alive after SIGKILL: $left"
    [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:${OP[1]}/" 2>/dev/null)" = 000 ] ||
        log "WARNING: origin 2 (port ${OP[1]}) still answers after the kill"
    wait_wrk
    c1=$(cpu_cores); wt1=$(self_ticks)
    forget_pid "${ORIGIN_PIDS[1]}"
    read -r p1 _ <<<"$(tree_ticks "$PROXY_PID")"
    o1=0; for i in 0 2; do read -r tot _ <<<"$(tree_ticks "${ORIGIN_PIDS[$i]}")"; o1=$((o1 + tot)); done
    notes=$(proxy_notes "$sys")
    stop_system "$PROXY_PID"
    ORIGIN_PIDS=("${ORIGIN_PIDS[0]}" "${ORIGIN_PIDS[2]}")
    stop_origins
    srv=$((p1 - p0 + o1 - o0))
    read -r oth0 oth1 steal <<<"$(other_load "$c0" "$c1" "$srv" "$((wt1 - wt0))")"
    [ "$oth0" -gt "$OTHER_MAX" ] || [ "$oth1" -gt "$OTHER_MAX" ] && { FLAG="${FLAG#ok},NOISY"; FLAG=${FLAG#,}; }
    read -r req rps p50 p99 c rd w to st ln lr <<<"$(parse_wrk_full "$out")"
    codes=$(awk '/^LUA non2xx=/ { sub(/^codes=/, "", $4); print $4 }' "$out")
    [ "$ln" -ge 0 ] || { log "WARNING: the Lua counter line is missing from wrk's output; using wrk's status count"; }
    nonok=$((ln >= 0 ? ln : st))
    failed=$((nonok + c + rd + w + to))
    succ=$(awk -v req="$req" -v bad="$nonok" -v se=$((c + rd + w + to)) 'BEGIN { a = req + se; printf "%.3f", (a > 0 ? 100 * (req - bad) / a : 0) }')
    [ "$req" -gt 0 ] || { FLAG="$FLAG,FAILED"; cat "$out" >&2; }
    pus=$(us_per_req $((p1 - p0)) "$req")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$r" "$req" "$rps" "$p50" "$p99" \
        "$nonok" "$st" "$c" "$rd" "$w" "$to" "$failed" "$succ" "$pus" "$tk" "$(wc -w <<<"$killed")" "$BUSY" "$oth0" "$oth1" "$FLAG" "${codes:--}" "$notes" >>"$RES2"
    printf '  %-9s rep %s: %7d requests  failed %5d (non-2xx %d [%s], connect %d read %d write %d timeout %d)  success %s%%  p99 %7.3f ms  proxy %s us/req  killed %s pids at %ss  %s  busy-before %s%%  other-during cpu0 %s%% cpu1 %s%% %s\n' \
        "$sys" "$r" "$req" "$failed" "$nonok" "${codes:--}" "$c" "$rd" "$w" "$to" "$succ" "$p99" "$pus" "$(wc -w <<<"$killed")" "$tk" "$notes" \
        "$BUSY" "$oth0" "$oth1" "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

# ---------------------------------------------------------------- run

log "temp dir $TMPD; ports: origins ${OP[*]}, gatehouse ${PPORT[gatehouse]} haproxy ${PPORT[haproxy]} nginx ${PPORT[nginx]}"
log "pinning: origins + proxy on core $SERVER_CPU, wrk on core $CLIENT_CPU; gatehouse binary copied to the temp dir"
versions | sed 's/^/  /' >&2
np=$(wc -w <<<"$POLICIES"); nx=$(wc -w <<<"$PROXIES")
est=0
[[ " $PARTS " = *" 1 "* ]] && est=$((est + RUNS * np * (DURATION + 3)))
[[ " $PARTS " = *" 2 "* ]] && est=$((est + REPS * nx * (KILL_DURATION + 5)))
log "parts: $PARTS; policies: $POLICIES; proxies: $PROXIES; ~$((est / 60 + 1)) min"

if [[ " $PARTS " = *" 1 "* ]]; then
    log "part 1: policy overhead, gatehouse 1 worker, 3 origins, $RUNS x ${DURATION}s per policy, wrk -s paths.lua ($PATHS paths)"
    start_origins p1
    for ((r = 1; r <= RUNS; r++)); do
        for pol in $POLICIES; do part1_one "$pol" "$r"; done
    done
    stop_origins
fi

if [[ " $PARTS " = *" 2 "* ]]; then
    log "part 2: kill origin 2 (SIGKILL, master + worker) ${KILL_AT}s into a ${KILL_DURATION}s run; $REPS repetitions per proxy, everything restarted each time"
    for ((r = 1; r <= REPS; r++)); do
        for sys in $PROXIES; do part2_one "$sys" "$r"; done
    done
fi

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget; total $(($(date +%s) - T_START)) s"

# ---------------------------------------------------------------- report

cat >"$TMPD/report.py" <<'PYEOF'
import csv, os, statistics, sys

res1, res2, md = sys.argv[1], sys.argv[2], "--md" in sys.argv

def load(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))

def num(v):
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None

def med(rows, k):
    xs = [num(r[k]) for r in rows if num(r[k]) is not None]
    return statistics.median(xs) if xs else float("nan")

def kept(rows):
    ok = [r for r in rows if "FAILED" not in r["flag"]]
    calm = [r for r in ok if not any(f in r["flag"] for f in ("BUSY", "NOISY"))]
    return calm or ok

def table(title, hdr, rows):
    if md:
        print(f"#### {title}\n")
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print()
    else:
        print(f"== {title} ==")
        w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
        print("  ".join("-" * w[i] for i in range(len(hdr))))
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
        print()

rows1, rows2 = load(res1), load(res2)
if rows1:
    order = list(dict.fromkeys(r["policy"] for r in rows1))
    summ, out = {}, []
    for p in order:
        rs = [r for r in rows1 if r["policy"] == p]
        used = kept(rs)
        rps = [num(r["rps"]) for r in used]
        summ[p] = dict(rps=statistics.median(rps), cpu=med(used, "gh_us_req"), rounds={r["round"]: r for r in used})
        shares = "/".join(f"{med(used, k):.0f}" for k in ("share1", "share2", "share3"))
        note = []
        if len(used) < len(rs): note.append(f"{len(rs) - len(used)} dropped")
        if not any(r in used for r in rs if not any(f in r["flag"] for f in ("BUSY", "NOISY"))): note.append("all noisy")
        rep = sum(int(r["attempts"]) - 1 for r in rs)
        if rep: note.append(f"{rep} noisy attempt(s) repeated")
        err = sum(int(r["errors"]) for r in used)
        if err: note.append(f"{err} wrk errors")
        label = "hash (hash_key: path)" if p == "hash:path" else p
        out.append([label, f"{statistics.median(rps):,.0f} ({min(rps):,.0f}..{max(rps):,.0f})",
                    f"{med(used, 'p50_ms'):.3f}", f"{med(used, 'p99_ms'):.3f}", f"{med(used, 'gh_us_req'):.1f}",
                    f"{med(used, 'origin_us_req'):.1f}", shares, f"{len(used)}/{len(rs)}" + (" " + "; ".join(note) if note else ""),
                    "/".join(r["busy_total"] for r in rs), " ".join(f"{r['other_cpu0']}/{r['other_cpu1']}" for r in rs)])
    table("Part 1: balancing policy overhead (gatehouse, 1 worker, 3 origins, 100 B)",
          ["policy", "req/s median (min..max)", "p50 ms", "p99 ms", "gatehouse CPU µs/req", "origins CPU µs/req",
           "origin CPU share % (1/2/3)", "runs kept", "busy % before runs", "other load % core0/core1"], out)
    # The origins do the same work whatever the policy: their CPU per request is a yardstick of the
    # machine's speed. When it moves by more than 10 % during part 1 (hypervisor contention shows up
    # neither as other load nor as steal here), a 3 % comparison is not possible in that run.
    ous = [num(r["origin_us_req"]) for p in order for r in kept([x for x in rows1 if x["policy"] == p])
           if num(r["origin_us_req"])]
    drift = max(ous) / min(ous) if ous else 1.0
    base = summ.get("round_robin")
    if base:
        rat = []
        for p in order:
            if p == "round_robin": continue
            s = summ[p]
            per = [num(s["rounds"][k]["rps"]) / num(base["rounds"][k]["rps"])
                   for k in sorted(s["rounds"]) if k in base["rounds"]]
            r = s["rps"] / base["rps"]
            c = s["cpu"] / base["cpu"] if base["cpu"] else float("nan")
            ok = ("inconclusive (speed drift)" if drift > 1.10 else "yes" if r >= 0.97 else "no")
            label = "hash (hash_key: path)" if p == "hash:path" else p
            rat.append([label, f"{r:.3f}", " ".join(f"{x:.3f}" for x in per) or "—", f"{c:.3f}",
                        f"{100 * (1 - r):+.1f} %".replace("+-", "-"), ok])
        table("Part 1: each policy relative to round_robin (same run)",
              ["policy", "req/s ratio (medians)", "req/s ratio per round", "CPU/req ratio (<1 cheaper)",
               "throughput overhead", "overhead < 3 %"], rat)
        print(f"machine speed yardstick: origin CPU per request ranged {min(ous):.1f}..{max(ous):.1f} µs over part 1 "
              f"({100 * (drift - 1):.0f} %)" + ("; over 10 %: the machine's speed changed during part 1, so the "
              "req/s and CPU ratios are not reliable to 3 % in this run: run it again" if drift > 1.10 else "") + "\n")

if rows2:
    order = list(dict.fromkeys(r["proxy"] for r in rows2))
    out, fail = [], {}
    for p in order:
        rs = [r for r in rows2 if r["proxy"] == p]
        used = [r for r in rs if "FAILED" not in r["flag"]] or rs
        fail[p] = med(used, "failed")
        per = "; ".join(f"{r['failed']} ({r['non2xx_lua']}+{int(r['connect'])+int(r['read'])+int(r['write'])+int(r['timeout'])})"
                        for r in rs)
        codes = ",".join(sorted({c for r in rs for c in r["codes"].split(",") if c != "-"})) or "—"
        flags = [r["flag"] for r in rs if r["flag"] != "ok"]
        out.append([p, f"{med(used, 'requests'):,.0f}", f"{med(used, 'failed'):,.0f}", per,
                    f"{med(used, 'success_pct'):.3f} %", f"{med(used, 'p99_ms'):.3f}", f"{med(used, 'p50_ms'):.3f}",
                    f"{med(used, 'proxy_us_req'):.1f}", f"{len(used)}" + (f" ({', '.join(flags)})" if flags else ""),
                    " ".join(f"{r['other_cpu0']}/{r['other_cpu1']}" for r in rs)])
    table(f"Part 2: one of three origins killed (SIGKILL) {os.environ.get('KILL_AT', '3')} s into a "
          f"{os.environ.get('KILL_DURATION', '10')} s run, medians over repetitions",
          ["proxy", "requests", "failed", "failed per rep (non-2xx + socket errors)", "success rate",
           "p99 ms", "p50 ms", "proxy CPU µs/req", "reps", "other load % core0/core1"], out)
    det = []
    for r in rows2:
        det.append([r["proxy"], r["rep"], f"{int(r['requests']):,}", r["failed"], r["non2xx_lua"], r["codes"],
                    f"{r['connect']}/{r['read']}/{r['write']}/{r['timeout']}", r["success_pct"] + " %", r["p99_ms"],
                    r["kill_at_s"], r["killed_pids"], r["proxy_notes"], r["flag"]])
    table("Part 2: every repetition",
          ["proxy", "rep", "requests", "failed", "non-2xx", "codes", "connect/read/write/timeout", "success",
           "p99 ms", "killed at s", "pids killed", "proxy's log", "flag"], det)
    if "gatehouse" in fail and "haproxy" in fail:
        g, h = fail["gatehouse"], fail["haproxy"]
        print(("" if md else "== ") + f"kill-one target (gatehouse failed requests <= HAProxy's, medians): "
              f"{g:,.0f} vs {h:,.0f}: {'met' if g <= h else 'NOT met'}" + ("" if md else " ==") + "\n")
PYEOF

cp "$RES1" "$OUTDIR/upstreams-policies-raw-$STAMP.tsv"
cp "$RES2" "$OUTDIR/upstreams-kill-raw-$STAMP.tsv"
MD=$OUTDIR/upstreams-$STAMP.md
{
    echo "# gatehouse upstream-resilience benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    versions
    echo "command: bash bench/upstreams.sh (RUNS=$RUNS DURATION=$DURATION REPS=$REPS KILL_DURATION=$KILL_DURATION KILL_AT=$KILL_AT CONNS=$CONNS PATHS=$PATHS)"
    echo "method: 3 origins + proxy pinned to core $SERVER_CPU, wrk to core $CLIENT_CPU; part 1: wrk -t1 -c$CONNS -d${DURATION}s --latency -s paths.lua after 1 s warm-up, $RUNS rounds interleaved; part 2: wrk -t1 -c$CONNS -d${KILL_DURATION}s --latency -s kill.lua, origin 2 SIGKILLed at ${KILL_AT}s, $REPS reps"
    echo '```'
    echo
} >"$MD"
export KILL_AT KILL_DURATION
/usr/bin/python3 "$TMPD/report.py" "$RES1" "$RES2" --md >>"$MD"
echo
/usr/bin/python3 "$TMPD/report.py" "$RES1" "$RES2"
echo "markdown: $MD"
echo "raw runs: $OUTDIR/upstreams-policies-raw-$STAMP.tsv $OUTDIR/upstreams-kill-raw-$STAMP.tsv"
