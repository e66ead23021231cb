#!/usr/bin/env bash
# bench/protect_overhead.sh: what traffic protection costs on the hot path when nobody attacks.
#
#   bash bench/protect_overhead.sh      (~2 min)
#
# Two gatehouse configurations on one origin, in the same run, rounds interleaved (bare, full,
# then full, bare, ...): "bare" is bench/lib.sh's plain proxy config; "full" adds every protection
# with bounds that a benchmark client never reaches: per-address connection cap and requests per
# connection, a tenant quota and concurrency cap, flood mode, bot scoring (challenge and block
# thresholds), deny and allow lists, and three rate limits (ip, ip_prefix + header, tenant) on the
# route; the requests carry a browser's headers. Origin nginx and gatehouse (1 worker) pinned to core 0, wrk to core 1; each measurement:
# 1 s warm-up, then wrk -t1 -c$CONNS -d${DURATION}s /small; the proxy's utime+stime before/after.
# Prints rate, p99 and CPU per request for each, and full / bare.
#
# Environment: DURATION (8) RUNS (3) CONNS (64) GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=${DURATION:-8}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || die "missing tool: wrk"
bench_init
gatehouse_available || die "no gatehouse binary at $GATEHOUSE_BIN (make)"
pick_ports 3
OPORT=${PORTS[0]} BPORT=${PORTS[1]} FPORT=${PORTS[2]}
gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"

bare=$(gen_proxy_conf gatehouse 1 "$BPORT" "$OPORT" bench)
full=$(gen_proxy_conf gatehouse 1 "$FPORT" "$OPORT" full)
printf '192.0.2.0/24\n' >"$TMPD/deny.txt"
sed -i 's/^    sites:$//' "$full"
python3_bin=/usr/bin/python3
$python3_bin - "$full" "$TMPD/deny.txt" <<'PY'
import sys
path, deny = sys.argv[1], sys.argv[2]
text = open(path).read()
head, tail = text.split("tenants:\n", 1)
head += """protection:
  connections: {per_ip: 100000, max_requests: 100000000}
  ip_lists: {blocked: {file: "%s"}}
""" % deny
tail = tail.replace("  - name: bench\n", """  - name: bench
    protection:
      quota: {per_minute: 1000000000}
      max_concurrent: 100000
      flood: {multiple: 1000, min_rate: 10000000, per_ip: "1000000/s"}
      bots: {challenge: 99, block: 100}
      deny: ["list:blocked", "198.51.100.0/24"]
    sites:
""", 1)
tail = tail.replace("            upstream: origin\n", """            upstream: origin
            protection:
              allow: ["127.0.0.0/8", "::1"]
              rate_limits:
                - {name: per-ip, key: [ip], rate: 10000000/s}
                - {name: per-net-key, key: [ip_prefix, "header:user-agent"], rate: 10000000/s}
                - {name: tenant, key: [tenant], rate: 100000000/s}
""", 1)
open(path, "w").write(head + "tenants:\n" + tail)
PY
"$GH_BIN_COPY" validate -c "$full" >/dev/null || die "the full-protection config is not valid: $("$GH_BIN_COPY" validate -c "$full" 2>&1)"

# browser-like requests (both configs): the bot score sees a fast client, not a library
HDRS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
      -H "Accept: text/html" -H "Accept-Language: en" -H "Accept-Encoding: gzip")

# measure NAME CONF PORT ROUND: one measurement into $TMPD/res.tsv
measure() {
    local name=$1 conf=$2 port=$3 round=$4 t0 t1 out=$TMPD/wrk-$1-$4.txt
    start_system gatehouse "$conf" "$port" || die "gatehouse ($name) did not start"
    local pid=$SERVER_PID
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "${HDRS[@]}" "http://127.0.0.1:$port/small" >/dev/null 2>&1
    t0=$(tree_ticks "$pid"); t0=${t0%% *}
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${HDRS[@]}" "http://127.0.0.1:$port/small" >"$out" 2>&1
    t1=$(tree_ticks "$pid"); t1=${t1%% *}
    stop_system "$pid"
    awk -v name="$name" -v round="$round" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 } if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v + 0 }
        /^ +99% / { p99 = ms($2) }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s\t%d\t%.0f\t%.3f\t%.2f\t%d\n", name, round, rps, p99, ticks / hz * 1e6 / (req ? req : 1), bad + 0 }' "$out" >>"$TMPD/res.tsv"
    tail -n 1 "$TMPD/res.tsv" | awk -F'\t' '{ printf "  %-5s round %d: %8s req/s  p99 %7s ms  proxy %6s us/req  non-2xx %s\n", $1, $2, $3, $4, $5, $6 }' >&2
}

log "gatehouse $GH_BIN_SHA ($GH_BIN_DATE); $RUNS rounds of ${DURATION}s, wrk -c$CONNS /small"
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then measure bare "$bare" "$BPORT" "$r"; measure full "$full" "$FPORT" "$r"
    else measure full "$full" "$FPORT" "$r"; measure bare "$bare" "$BPORT" "$r"; fi
done
$python3_bin - "$TMPD/res.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
med = {}
for name in ("bare", "full"):
    rs = [r for r in rows if r[0] == name]
    med[name] = [statistics.median(float(r[i]) for r in rs) for i in (2, 3, 4)] + [sum(int(r[5]) for r in rs)]
print("config  rate req/s  p99 ms  proxy CPU us/req  non-2xx")
for name in ("bare", "full"):
    m = med[name]
    print("%-6s  %10.0f  %6.3f  %16.2f  %d" % (name, m[0], m[1], m[2], m[3]))
b, f = med["bare"], med["full"]
print("full / bare: rate %.3f, p99 %.2f, CPU per request %.3f (all protections on, no attack)" % (f[0] / b[0], f[1] / b[1], f[2] / b[2]))
PY
