#!/usr/bin/env bash
# bench/obs_overhead.sh: what full observability costs on the proxy path (issue 10's benchmark).
#
#   bash bench/obs_overhead.sh      (~2 min)
#
# Two gatehouse configurations on one origin, in the same run, rounds interleaved (bare, obs, then
# obs, bare, ...): "bare" is bench/lib.sh's plain proxy config with the access log off and nothing
# else (the Prometheus counters are always kept: they cannot be turned off); "obs" adds everything
# issue 10 names: the JSON-lines access log written to a file, tracing with 1 % sampling exported
# over OTLP/HTTP to a collector (the origin nginx answers POST /v1/traces with 200), streaming
# analytics sketches on the route, and an availability SLO on it; /metrics is scraped every second
# during the obs runs. Origin nginx and gatehouse (1 worker) pinned to core 0, wrk to core 1; each
# measurement: 1 s warm-up, then wrk -t1 -c$CONNS -d${DURATION}s /small; the proxy's utime+stime
# before/after. Prints rate, p99 and CPU per request for each, and obs / bare.
# Target: obs costs at most 5 % of throughput (rate >= 0.95).
#
# Environment: DURATION (8) RUNS (3) CONNS (64) SAMPLE (0.01) PARTS ("accesslog tracing analytics slo
# scrape": a subset measures those alone) GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=${DURATION:-8}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
SAMPLE=${SAMPLE:-0.01}
PARTS=${PARTS:-accesslog tracing analytics slo scrape}
command -v wrk >/dev/null || die "missing tool: wrk"
bench_init
gatehouse_available || die "no gatehouse binary at $GATEHOUSE_BIN (make)"
pick_ports 4
OPORT=${PORTS[0]} BPORT=${PORTS[1]} FPORT=${PORTS[2]} APORT=${PORTS[3]}
gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"

bare=$(gen_proxy_conf gatehouse 1 "$BPORT" "$OPORT" bench)
obs=$(gen_proxy_conf gatehouse 1 "$FPORT" "$OPORT" obs)
/usr/bin/python3 - "$obs" "$TMPD/access.log" "$OPORT" "$APORT" "$SAMPLE" "$PARTS" <<'PY'
import sys
path, log, oport, aport, sample, parts = sys.argv[1:7]
parts = parts.split()
text = open(path).read()
top = 'admin: {listen: "127.0.0.1:%s"}\n' % aport
if "accesslog" in parts:
    top += 'access_log: {enabled: true, path: "%s"}\n' % log
if "tracing" in parts:
    top += 'tracing: {endpoint: "http://127.0.0.1:%s", sample_ratio: %s}\n' % (oport, sample)
text = text.replace("access_log: off\n", top if "accesslog" in parts else "access_log: off\n" + top, 1)
route = "            upstream: origin\n"
if "analytics" in parts:
    route += "            analytics: true\n"
if "slo" in parts:
    route += "            slos:\n              - {name: avail, objective: availability, target: 0.999, window: 1h}\n"
text = text.replace("            upstream: origin\n", route, 1)
open(path, "w").write(text)
PY
"$GH_BIN_COPY" validate -c "$obs" >/dev/null || die "the observability config is not valid: $("$GH_BIN_COPY" validate -c "$obs" 2>&1)"

# scrape /metrics (and the analytics) every second while obs runs, as a Prometheus server would:
# one process, one kept-alive connection (a curl per scrape cost ~24 ms of CPU each to start, on
# wrk's core: that, not gatehouse, was most of what "scrape" measured before)
scraper() {
    exec /usr/bin/python3 -c '
import http.client, sys, time
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
while True:
    time.sleep(1)
    for path in ("/metrics", "/v1/analytics?tenant=bench&route=all&window=minute"):
        try:
            c.request("GET", path)
            c.getresponse().read()
        except Exception:
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
' "$APORT"
}
obs_measure() {
    local sp=
    if [[ " $PARTS " == *" scrape "* ]]; then
        taskset -c "$CLIENT_CPU" bash -c "$(declare -f scraper); APORT=$APORT; scraper" &
        sp=$!
    fi
    overhead_measure obs "$obs" "$FPORT" "$1"
    if [ -n "$sp" ]; then
        kill "$sp" 2>/dev/null
        wait "$sp" 2>/dev/null
    fi
}

log "gatehouse $GH_BIN_SHA ($GH_BIN_DATE); $RUNS rounds of ${DURATION}s, wrk -c$CONNS /small; obs: $PARTS (tracing sample $SAMPLE)"
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then overhead_measure bare "$bare" "$BPORT" "$r"; obs_measure "$r"
    else obs_measure "$r"; overhead_measure bare "$bare" "$BPORT" "$r"; fi
done
log "access log: $(wc -l <"$TMPD/access.log" 2>/dev/null || echo 0) lines"
overhead_report bare obs "$PARTS; target rate >= 0.95"
