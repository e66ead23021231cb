#!/usr/bin/env bash
# bench/edge.sh: what the programmable edge costs on the proxy path (issue 11's benchmark).
#
#   bash bench/edge.sh      (~6 min)
#
# In one run, rounds interleaved, one worker each (the proxy and the origin nginx on core 0, wrk on
# core 1), GET /small through:
#   bare     gatehouse, plain proxy (bench/lib.sh's config)
#   fn       + a trivial edge function on the route (LuaJIT: r:set_response_header("X-Edge", "1"))
#   hdr      + one YAML rule setting that response header
#   redir20  + a 20-rule Netlify _redirects file (placeholders, splats, query and country conditions;
#            none matches /small: the pass-through cost every request pays)
#   rules10  + 10 exact/prefix rules on the site;  rules10k  + 10,000 (the matcher's scaling)
#   nginx / nginx_hdr        nginx, and with add_header X-Edge 1 always
#   haproxy / haproxy_hdr    HAProxy, and with http-response set-header X-Edge 1
# Prints each configuration's median rate, p99 and proxy CPU per request, and the ratios.
# Targets: fn / bare >= 0.95 (a trivial function costs under 5 %); rules10k / rules10 >= 0.90.
#
# Environment: DURATION (6) RUNS (3) CONNS (64) GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
DURATION=${DURATION:-6}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
command -v wrk >/dev/null || die "missing tool: wrk"
bench_init
gatehouse_available || die "no gatehouse binary at $GATEHOUSE_BIN (make)"
pick_ports 11
OPORT=${PORTS[0]}
gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"

declare -A CONF PORT SYS
add() { CONF[$1]=$2; PORT[$1]=$3; SYS[$1]=$4; }
i=1
for name in bare fn hdr redir20 rules10 rules10k; do
    add "$name" "$(gen_proxy_conf gatehouse 1 "${PORTS[$i]}" "$OPORT" "$name")" "${PORTS[$i]}" gatehouse
    i=$((i + 1))
done
/usr/bin/python3 - "$TMPD" "${CONF[fn]}" "${CONF[hdr]}" "${CONF[redir20]}" "${CONF[rules10]}" "${CONF[rules10k]}" <<'PY'
import sys
tmpd, fn, hdr, redir, r10, r10k = sys.argv[1:7]
def edit(path, site_extra="", route_extra=""):
    text = open(path).read()
    text = text.replace('      - hosts: ["*"]\n', '      - hosts: ["*"]\n' + site_extra, 1)
    text = text.replace("            upstream: origin\n", "            upstream: origin\n" + route_extra, 1)
    open(path, "w").write(text)
open(tmpd + "/edge.lua", "w").write('function on_request(r)\n  r:set_response_header("X-Edge", "1")\nend\n')
edit(fn, route_extra='            function: {file: "%s/edge.lua"}\n' % tmpd)
edit(hdr, site_extra="        rules: [{response_headers: {set: {X-Edge: \"1\"}}}]\n")
lines = []
for k in range(20):
    lines.append([
        "/old-%d/:year/:slug  /news-%d/:year/:slug  301" % (k, k),
        "/section-%d/*  /s%d/:splat  302" % (k, k),
        "/item-%d  id=:id  /items-%d/:id  301" % (k, k),
        "/landing-%d  /fr/landing-%d  302  Country=fr,be" % (k, k),
    ][k % 4])
open(tmpd + "/_redirects", "w").write("\n".join(lines) + "\n")
edit(redir, site_extra='        redirects: {file: "%s/_redirects"}\n' % tmpd)
def rules(n):
    out = ["        rules:\n"]
    for k in range(n):
        if k % 2:
            out.append("          - {match: {path: /r%d/page}, redirect: {to: /n%d/page}}\n" % (k, k))
        else:
            out.append("          - {match: {path: /p%d/*}, redirect: {to: /q%d/:splat}}\n" % (k, k))
    return "".join(out)
edit(r10, site_extra=rules(10))
edit(r10k, site_extra=rules(10000))
PY
for name in fn hdr redir20 rules10 rules10k; do
    "$GH_BIN_COPY" validate -c "${CONF[$name]}" >/dev/null || die "$name: $("$GH_BIN_COPY" validate -c "${CONF[$name]}" 2>&1 | head -5)"
done
add nginx "$(gen_proxy_conf nginx 1 "${PORTS[7]}" "$OPORT" bench)" "${PORTS[7]}" nginx
add nginx_hdr "$(gen_proxy_conf nginx 1 "${PORTS[8]}" "$OPORT" hdr)" "${PORTS[8]}" nginx
sed -i 's|            proxy_set_header Connection "";|            proxy_set_header Connection "";\n            add_header X-Edge 1 always;|' "${CONF[nginx_hdr]}"
add haproxy "$(gen_proxy_conf haproxy 1 "${PORTS[9]}" "$OPORT" bench)" "${PORTS[9]}" haproxy
add haproxy_hdr "$(gen_proxy_conf haproxy 1 "${PORTS[10]}" "$OPORT" hdr)" "${PORTS[10]}" haproxy
printf '    http-response set-header X-Edge 1\n' >>"${CONF[haproxy_hdr]}"

# each configuration does what it says: the header where one is set, none elsewhere
for name in fn hdr nginx_hdr haproxy_hdr bare nginx haproxy; do
    start_system "${SYS[$name]}" "${CONF[$name]}" "${PORT[$name]}" || die "$name did not start"
    got=$(curl -s -o /dev/null -D - "http://127.0.0.1:${PORT[$name]}/small" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-edge" { print $2 }')
    stop_system "$SERVER_PID"
    case $name in *hdr | fn) want=1 ;; *) want= ;; esac
    [ "$got" = "$want" ] || die "$name: X-Edge is '$got', expected '$want'"
done
# and the rules redirect what they name
start_system gatehouse "${CONF[rules10k]}" "${PORT[rules10k]}" || die "rules10k did not start"
loc=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:${PORT[rules10k]}/p9998/x/y")
stop_system "$SERVER_PID"
[ "$loc" = "301 http://127.0.0.1:${PORT[rules10k]}/q9998/x/y" ] || die "rules10k: /p9998/x/y answered '$loc'"

ORDER=(bare fn hdr redir20 rules10 rules10k nginx nginx_hdr haproxy haproxy_hdr)
log "gatehouse $GH_BIN_SHA ($GH_BIN_DATE); $RUNS rounds of ${DURATION}s, wrk -c$CONNS /small"
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then seq=("${ORDER[@]}"); else seq=(); for ((k = ${#ORDER[@]} - 1; k >= 0; k--)); do seq+=("${ORDER[$k]}"); done; fi
    for name in "${seq[@]}"; do
        OVERHEAD_SYS=${SYS[$name]} overhead_measure "$name" "${CONF[$name]}" "${PORT[$name]}" "$r"
    done
done
overhead_report bare fn "gatehouse: a trivial edge function (target rate >= 0.95)"
overhead_report bare hdr "gatehouse: one response-header rule"
overhead_report bare redir20 "gatehouse: a 20-rule _redirects file, none matching"
overhead_report rules10 rules10k "gatehouse: 10,000 rules against 10 (target rate >= 0.90)"
overhead_report nginx nginx_hdr "nginx: add_header"
overhead_report haproxy haproxy_hdr "HAProxy: http-response set-header"
overhead_report nginx_hdr hdr "gatehouse's header rule against nginx's add_header"
overhead_report haproxy_hdr hdr "gatehouse's header rule against HAProxy's set-header"
