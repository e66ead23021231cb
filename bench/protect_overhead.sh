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

log "gatehouse $GH_BIN_SHA ($GH_BIN_DATE); $RUNS rounds of ${DURATION}s, wrk -c$CONNS /small"
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then overhead_measure bare "$bare" "$BPORT" "$r" "${HDRS[@]}"; overhead_measure full "$full" "$FPORT" "$r" "${HDRS[@]}"
    else overhead_measure full "$full" "$FPORT" "$r" "${HDRS[@]}"; overhead_measure bare "$bare" "$BPORT" "$r" "${HDRS[@]}"; fi
done
overhead_report bare full "all protections on, no attack"
