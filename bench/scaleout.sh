#!/usr/bin/env bash
# bench/scaleout.sh: what the shared engines of a multi-node deployment cost one node.
#
#   DURATION=6 RUNS=3 bash bench/scaleout.sh   (~1 min per part, plus up to NOISE_BUDGET s of waiting)
#   PARTS=global bash bench/scaleout.sh        (one part only)
#
# Run by hand (see docs/benchmarks.md, "Scale-out"). Sources bench/lib.sh; starts an origin nginx,
# gatehouse, and for each part the real server it needs (redis-server, nats-server with JetStream),
# each on its own ephemeral loopback port, and stops all of them by PID on exit (lib.sh's trap).
#
# Part "global": the same rate limit on the route (key [ip], 10,000,000/s: far above what wrk
# offers, so every request is admitted and what is measured is the bookkeeping), once with
# `scope: local` (no Redis configured: a single node) and once with `scope: global` through a real
# redis-server (sync_interval 50ms). Rounds interleaved (local, global, then global, local, ...)
# with lib.sh's overhead_measure: gatehouse (1 worker) and the origin pinned to core 0, wrk to core
# 1, 1 s warm-up, wrk -t1 -c$CONNS -d${DURATION}s /small, the proxy's CPU from /proc. Before the
# rounds the script checks that the global configuration really syncs with Redis
# (gatehouse_protection_redis_up 1, syncs counted, gh:rl:* keys in Redis); after them, that Redis
# received commands during the runs. Target: global costs < 10 % of throughput.
#
# Part "events": events.nats on (access records published to NATS JetStream through the local
# spool) against the same node with events off. Each measurement starts gatehouse, warms up 1 s,
# reads gatehouse_stream_published_total from /metrics, runs wrk, reads it again; records/s
# published = difference / DURATION. After the last round the stream's message count is read from
# nats-server's monitoring endpoint (/jsz) and compared with what gatehouse says it published.
# Skipped with a message while `gatehouse validate` refuses the events keys.
#
# Redis and NATS stand for servers on other machines: they are pinned to the client core (1), so
# their CPU is not charged to the proxy; gatehouse's own sync and publisher threads are (core 0).
#
# Environment: DURATION (8) RUNS (3) CONNS (64) PARTS ("global events") BUSY_MAX (25) BUSY_WAIT (20)
# NOISE_BUDGET (120) BASE_ACCESS_LOG (off, or file: the access log to a file in both configurations
# of part events; off by default since the stream has its own sink of access records)
# GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=${DURATION:-8}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
PARTS=${PARTS:-global events}
BASE_ACCESS_LOG=${BASE_ACCESS_LOG:-off}
PY=/usr/bin/python3
for t in wrk redis-server redis-cli nats-server curl taskset; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
bench_init
gatehouse_available || die "no gatehouse binary at $GATEHOUSE_BIN (make)"
pick_ports 10
OPORT=${PORTS[0]} LPORT=${PORTS[1]} GPORT=${PORTS[2]} RPORT=${PORTS[3]} ADM_L=${PORTS[4]} ADM_G=${PORTS[5]}
NPORT=${PORTS[6]} NMON=${PORTS[7]} EPORT=${PORTS[8]} ADM_E=${PORTS[9]}
gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"
log "gatehouse $GH_BIN_SHA ($GH_BIN_DATE); $RUNS rounds of ${DURATION}s, wrk -c$CONNS /small; parts: $PARTS"
versions | sed 's/^/  /' >&2

# Before each measurement: wait (up to BUSY_WAIT s, NOISE_BUDGET s in all) while the machine is more than
# BUSY_MAX % busy (both cores; lib.sh's calm_down), and log how busy it was. A row taken on a busy machine
# is kept, flagged in the log and in the paired report.
# shellcheck disable=SC2034  # NOISE_SPENT: lib.sh's calm_down counts in it
BUSY_MAX=${BUSY_MAX:-25} BUSY_WAIT=${BUSY_WAIT:-20} NOISE_BUDGET=${NOISE_BUDGET:-120} NOISE_SPENT=0
calm() {
    calm_down
    [ "$FLAG" = ok ] || log "machine still busy (${BUSY%% *}%) before $1 round $2: measuring anyway"
    printf '%s\t%s\t%s\n' "$1" "$2" "$FLAG" >>"$TMPD/busy.tsv"
}

# paired_report BASE OTHER: OTHER / BASE within each round (the two measurements of a round are
# seconds apart, so they share most of the machine's noise), the median of those, and the same over
# the rounds where neither measurement started on a busy machine.
paired_report() {
    $PY - "$TMPD/res.tsv" "$TMPD/busy.tsv" "$1" "$2" <<'PY'
import statistics, sys
res, busy, base, other = sys.argv[1:5]
rows = {(r[0], r[1]): r for r in (l.rstrip("\n").split("\t") for l in open(res))}
flags = {(r[0], r[1]): r[2] for r in (l.rstrip("\n").split("\t") for l in open(busy))}
rounds = sorted({k[1] for k in rows}, key=int)
pairs = []
for rd in rounds:
    b, o = rows.get((base, rd)), rows.get((other, rd))
    if not b or not o:
        continue
    calm = flags.get((base, rd)) == "ok" and flags.get((other, rd)) == "ok"
    pairs.append((rd, float(o[2]) / float(b[2]), float(o[4]) / float(b[4]), calm))
print("per round %s / %s (rate, CPU per request): %s" % (other, base, "  ".join(
    "r%s %.3f %.3f%s" % (rd, a, c, "" if calm else " busy") for rd, a, c, calm in pairs)))
for label, sel in (("all rounds", pairs), ("calm rounds", [p for p in pairs if p[3]])):
    if sel:
        print("paired median over %s (%d): rate %.3f, CPU per request %.3f" % (
            label, len(sel), statistics.median(p[1] for p in sel), statistics.median(p[2] for p in sel)))
    else:
        print("paired median over %s: none" % label)
PY
}

# metric_sum URL NAME: the sum of every series of metric NAME in the Prometheus text at URL (0 if none).
metric_sum() {
    curl -s -m 2 "$1" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 } END { printf "%.0f\n", f ? s : 0 }'
}

# edit_conf FILE PYTHON-CODE: run PYTHON-CODE with `text` holding FILE's text; it writes text back.
edit_conf() {
    $PY - "$1" "$2" <<'PY'
import sys
path, code = sys.argv[1], sys.argv[2]
text = open(path).read()
env = {"text": text}
exec(code, env)
open(path, "w").write(env["text"])
PY
}

# ================================================================ part global: local vs global limit
part_global() {
    local loc glob rdir rpid before after up syncs keys
    rdir=$TMPD/redis
    mkdir -p "$rdir"
    taskset -c "$CLIENT_CPU" redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no \
        --dir "$rdir" --daemonize no --protected-mode no >"$rdir/redis.log" 2>&1 </dev/null &
    rpid=$!
    STARTED_PIDS+=("$rpid")
    for _ in $(seq 50); do redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
    redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG || die "redis-server did not start: $(tail -5 "$rdir/redis.log")"
    log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$RPORT (pid $rpid, core $CLIENT_CPU)"

    loc=$(gen_proxy_conf gatehouse 1 "$LPORT" "$OPORT" local)
    glob=$(gen_proxy_conf gatehouse 1 "$GPORT" "$OPORT" global)
    local lim='            protection:\n              rate_limits:\n                - {name: big, key: [ip], rate: 10000000/s, scope: %s}\n'
    edit_conf "$loc" "text = text.replace('access_log: off\n', 'access_log: off\nadmin: {listen: \"127.0.0.1:$ADM_L\"}\n', 1)
text = text.replace('            upstream: origin\n', '            upstream: origin\n' + '''$(printf "$lim" local)''', 1)"
    edit_conf "$glob" "text = text.replace('access_log: off\n', 'access_log: off\nadmin: {listen: \"127.0.0.1:$ADM_G\"}\nprotection:\n  redis: {address: \"127.0.0.1:$RPORT\", sync_interval: 50ms, on_failure: open}\n', 1)
text = text.replace('            upstream: origin\n', '            upstream: origin\n' + '''$(printf "$lim" global)''', 1)"
    for f in "$loc" "$glob"; do
        "$GH_BIN_COPY" validate -c "$f" >/dev/null 2>&1 || die "config $f is not valid: $("$GH_BIN_COPY" validate -c "$f" 2>&1)"
    done

    # The global configuration must really go through Redis, else the comparison means nothing.
    start_system gatehouse "$glob" "$GPORT" || die "gatehouse (global) did not start"
    for _ in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$GPORT/small"; done
    sleep 0.3
    up=$(metric_sum "http://127.0.0.1:$ADM_G/metrics" gatehouse_protection_redis_up)
    syncs=$(metric_sum "http://127.0.0.1:$ADM_G/metrics" gatehouse_protection_redis_syncs_total)
    keys=$(redis-cli -p "$RPORT" --scan --pattern 'gh:rl:*' | wc -l)
    stop_system "$SERVER_PID"
    log "global check: gatehouse_protection_redis_up $up, syncs $syncs, gh:rl:* keys in Redis $keys"
    [ "$up" = 1 ] && [ "$syncs" -gt 0 ] && [ "$keys" -gt 0 ] || die "the global limit does not sync with Redis"

    before=$(redis-cli -p "$RPORT" info stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }')
    for ((r = 1; r <= RUNS; r++)); do
        if ((r % 2)); then calm local "$r"; overhead_measure local "$loc" "$LPORT" "$r"; calm global "$r"; overhead_measure global "$glob" "$GPORT" "$r"
        else calm global "$r"; overhead_measure global "$glob" "$GPORT" "$r"; calm local "$r"; overhead_measure local "$loc" "$LPORT" "$r"; fi
    done
    after=$(redis-cli -p "$RPORT" info stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }')
    log "Redis processed $((after - before)) commands during the rounds ($RUNS x ${DURATION}s of global)"
    [ $((after - before)) -gt 0 ] || die "Redis saw no command during the global rounds"
    echo "== part global: scope local vs scope global (Redis), limit far above the load"
    overhead_report local global "global limit through Redis vs the same limit local; target rate >= 0.90"
    paired_report local global
    stop_system "$rpid"
    mv "$TMPD/res.tsv" "$TMPD/res-global.tsv"
    mv "$TMPD/busy.tsv" "$TMPD/busy-global.tsv"
}

# ================================================================ part events: NATS JetStream publishing
# events_measure NAME CONF PORT ADMIN_PORT ROUND: like overhead_measure, plus the stream counters
# before/after from /metrics. A row into $TMPD/res.tsv (the columns overhead_report reads) and one
# into $TMPD/ev.tsv: name round published_delta appended_delta dropped_delta spool_bytes_after.
events_measure() {
    local name=$1 conf=$2 port=$3 aport=$4 round=$5 t0 t1 p0 p1 a0 a1 d0 d1 sp out=$TMPD/wrk-$1-$5.txt pid
    local murl="http://127.0.0.1:$aport/metrics"
    start_system gatehouse "$conf" "$port" || die "gatehouse ($name) did not start"
    pid=$SERVER_PID
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/small" >/dev/null 2>&1
    p0=$(metric_sum "$murl" gatehouse_stream_published_total)
    a0=$(metric_sum "$murl" gatehouse_stream_records_total)
    d0=$(metric_sum "$murl" gatehouse_stream_dropped_total)
    t0=$(tree_ticks "$pid"); t0=${t0%% *}
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/small" >"$out" 2>&1
    t1=$(tree_ticks "$pid"); t1=${t1%% *}
    p1=$(metric_sum "$murl" gatehouse_stream_published_total)
    a1=$(metric_sum "$murl" gatehouse_stream_records_total)
    d1=$(metric_sum "$murl" gatehouse_stream_dropped_total)
    sp=$(metric_sum "$murl" gatehouse_stream_spool_bytes)
    stop_system "$pid"
    overhead_row "$name" "$round" $((t1 - t0)) "$out"
    printf '%s\t%d\t%d\t%d\t%d\t%d\n' "$name" "$round" $((p1 - p0)) $((a1 - a0)) $((d1 - d0)) "$sp" >>"$TMPD/ev.tsv"
    tail -n 1 "$TMPD/res.tsv" | awk -F'\t' '{ printf "  %-5s round %d: %8s req/s  p99 %7s ms  proxy %6s us/req  non-2xx %s\n", $1, $2, $3, $4, $5, $6 }' >&2
    [ "$name" = off ] || tail -n 1 "$TMPD/ev.tsv" | awk -F'\t' -v d="$DURATION" '{ printf "        published %d (%.0f/s), appended %d, dropped %d, spool %d bytes after\n", $3, $3 / d, $4, $5, $6 }' >&2
}

part_events() {
    local probe off ev ndir npid js_msgs pub_total
    # Does this build take the events keys yet?
    probe=$(gen_proxy_conf gatehouse 1 "$EPORT" "$OPORT" probe)
    edit_conf "$probe" "text = text.replace('access_log: off\n', 'access_log: off\nevents:\n  nats: {url: \"nats://127.0.0.1:$NPORT\", stream: GATEHOUSE, subject_prefix: gatehouse, spool_dir: \"$TMPD/spool-probe\", spool_max: 1g, publish: [access]}\n', 1)"
    if ! "$GH_BIN_COPY" validate -c "$probe" >/dev/null 2>&1; then
        log "part events skipped: this build does not accept events.nats yet: $("$GH_BIN_COPY" validate -c "$probe" 2>&1 | head -2)"
        echo "== part events: skipped (build $GH_BIN_SHA does not accept events.nats)"
        return 0
    fi

    ndir=$TMPD/nats
    mkdir -p "$ndir"
    taskset -c "$CLIENT_CPU" nats-server -a 127.0.0.1 -p "$NPORT" -m "$NMON" -js -sd "$ndir" >"$ndir/nats.log" 2>&1 </dev/null &
    npid=$!
    STARTED_PIDS+=("$npid")
    wait_http "http://127.0.0.1:$NMON/healthz" 5 || die "nats-server did not start: $(tail -5 "$ndir/nats.log")"
    log "nats-server $(nats-server --version 2>&1 | awk '{print $NF}') with JetStream on 127.0.0.1:$NPORT (pid $npid, core $CLIENT_CPU)"

    local alog="access_log: off"   # no newline: $(...) would drop it; the edit adds one
    [ "$BASE_ACCESS_LOG" = file ] && alog="access_log: {enabled: true, path: \"$TMPD/access-%s.log\"}"
    off=$(gen_proxy_conf gatehouse 1 "$EPORT" "$OPORT" evoff)
    ev=$(gen_proxy_conf gatehouse 1 "$EPORT" "$OPORT" evon)
    edit_conf "$off" "text = text.replace('access_log: off\n', '''$(printf "$alog" off)''' + '\nadmin: {listen: \"127.0.0.1:$ADM_E\"}\n', 1)"
    edit_conf "$ev" "text = text.replace('access_log: off\n', '''$(printf "$alog" on)''' + '\nadmin: {listen: \"127.0.0.1:$ADM_E\"}\nnode: bench1\nevents:\n  nats:\n    url: \"nats://127.0.0.1:$NPORT\"\n    stream: GATEHOUSE\n    subject_prefix: gatehouse\n    spool_dir: \"$TMPD/spool\"\n    spool_max: 1g\n    publish: [access]\n', 1)"
    for f in "$off" "$ev"; do
        "$GH_BIN_COPY" validate -c "$f" >/dev/null 2>&1 || die "config $f is not valid: $("$GH_BIN_COPY" validate -c "$f" 2>&1)"
    done

    : >"$TMPD/ev.tsv"
    for ((r = 1; r <= RUNS; r++)); do
        if ((r % 2)); then calm off "$r"; events_measure off "$off" "$EPORT" "$ADM_E" "$r"; calm on "$r"; events_measure on "$ev" "$EPORT" "$ADM_E" "$r"
        else calm on "$r"; events_measure on "$ev" "$EPORT" "$ADM_E" "$r"; calm off "$r"; events_measure off "$off" "$EPORT" "$ADM_E" "$r"; fi
    done

    # What JetStream holds: every published record must be there (duplicates removed by Msg-Id).
    js_msgs=$(curl -s -m 2 "http://127.0.0.1:$NMON/jsz" | $PY -c 'import json,sys; print(json.load(sys.stdin).get("messages", -1))')
    pub_total=$(awk -F'\t' '$1 == "on" { s += $3 } END { print s + 0 }' "$TMPD/ev.tsv")
    log "JetStream holds $js_msgs messages; gatehouse reported $pub_total published during the measured windows (plus warm-ups and the drain at stop)"
    echo "== part events: events.nats on (access records to JetStream through the spool) vs off (access log: $BASE_ACCESS_LOG in both)"
    overhead_report off on "events.nats publishing access records vs events off"
    paired_report off on
    $PY - "$TMPD/ev.tsv" "$DURATION" "$js_msgs" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.startswith("on\t")]
d = float(sys.argv[2])
pub = [int(r[2]) / d for r in rows]
app = [int(r[3]) / d for r in rows]
print("records published per second (median of %d, min..max): %.0f (%.0f..%.0f); appended to the spool %.0f/s; dropped %d; spool left after a run (bytes): %s"
      % (len(rows), statistics.median(pub), min(pub), max(pub), statistics.median(app), sum(int(r[4]) for r in rows), ",".join(r[5] for r in rows)))
print("JetStream stream messages at the end: %s" % sys.argv[3])
PY
    stop_system "$npid"
    mv "$TMPD/res.tsv" "$TMPD/res-events.tsv"
    mv "$TMPD/busy.tsv" "$TMPD/busy-events.tsv"
}

for part in $PARTS; do
    case $part in
    global) part_global ;;
    events) part_events ;;
    *) die "unknown part $part (global, events)" ;;
    esac
done
