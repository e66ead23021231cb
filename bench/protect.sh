#!/usr/bin/env bash
# bench/protect.sh: protection under attack, gatehouse vs nginx vs HAProxy, in the same run.
#
#   bash bench/protect.sh           (~7 min on a quiet box, + at most NOISE_BUDGET s on a noisy one)
#   bash bench/protect.sh quick     (~2 min: 6 s windows, smaller attacks; for development)
#   bash bench/protect.sh report RAW.tsv   (the tables again, from a run's raw file)
#
# Legitimate browsers (bench/attack.c: LEGIT clients from 127.1.0.x, LEGIT_RATE req/s in all, a page
# then 3-5 assets then think time; a gatehouse challenge on a page is solved as its script would) run
# alone for LEAD s, then beside one attack for DURATION s (browsers and attack in two processes):
#   baseline   nothing else
#   flood      FLOOD_ADDRS addresses (127.2.x.y) x FLOOD_CONNS keep-alive connections, GET /?r=<random>,
#              FLOOD_RATE req/s per address (open loop; closed loop once the proxy is slower)
#   dflood     (not in the default SCENARIOS) the same at DFLOOD_RATE req/s per address, under the
#              per-IP rate limit: the distributed flood a static per-IP limit does not see
#   slowloris  slowhttptest -H (heads that never end: a header line every SLOW_INTERVAL s),
#              SLOW_CONNS connections at SLOW_RATE/s from SLOW_ADDRS addresses (127.4.0.x, given to it
#              by the LD_PRELOAD shim bench/protect/srcbind.c since it cannot bind itself)
#   slowpost   slowhttptest -B (POST bodies of 8 KiB sent a few bytes per second), the same numbers
#   scraper    one address (127.3.0.1) GET /page/1, /page/2, ... at SCRAPER_RATE req/s with a browser
#              User-Agent but no Accept-Language / Sec-Fetch-* and no assets, for SCRAPER_DURATION s
# Systems, one at a time, a fresh proxy per scenario, the same port, proxy + origin nginx on core 0,
# harness on core 1: gatehouse (its protection config, bench/protect/gatehouse.yaml.in), nginx
# (limit_req / limit_conn / short timeouts) and HAProxy (stick table: http_req_rate(10s), conn_cur;
# timeout http-request; http-buffer-request) with the same per-IP figures: RATE req/s, burst BURST,
# PERIP_CONNS connections, HEADER_TIMEOUT s for a request head (bench/protect/*.in).
# Per scenario and system: legitimate success rate and p50/p99 (requests started in the attack window;
# p99 also as a ratio to the system's own baseline), the share of attack requests refused, the attack
# requests that reached the origin (its access log tags each request by who sent it), connections
# the slow attacks held (ss, server side, sampled every second), when the scraper was first refused,
# the CPU seconds of the proxy process tree (utime+stime from /proc, whole scenario), gatehouse's
# decision counters (/metrics).
#
# Environment: SYSTEMS ("gatehouse nginx haproxy") SCENARIOS ("baseline flood slowloris slowpost scraper")
# DURATION (15) LEAD (5) SCRAPER_DURATION (35) RUNS (1) LEGIT (100) LEGIT_RATE (200) FLOOD_ADDRS (200)
# FLOOD_RATE (100) DFLOOD_RATE (30) FLOOD_CONNS (2) SCRAPER_RATE (8) SLOW_CONNS (1000) SLOW_RATE (100)
# SLOW_ADDRS (4) SLOW_INTERVAL (5) RATE (50) BURST (100) PERIP_CONNS (20) HEADER_TIMEOUT (10)
# REQ_TIMEOUT (5: a legitimate request not answered by then fails) BUSY_MAX (30) BUSY_WAIT (20)
# OTHER_MAX (15) NOISY_RETRIES (0) NOISE_BUDGET (60) GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

# render_report RAW.tsv MARKDOWN_OUT: the tables (stdout) and the markdown.
render_report() {
    /usr/bin/python3 - "$@" <<'PYEOF'
import csv, sys

raw, md_path = sys.argv[1:3]
rows = list(csv.DictReader(open(raw), delimiter="\t"))
ORDER = ["gatehouse", "nginx", "haproxy"]
SCEN = ["baseline", "flood", "dflood", "slowloris", "slowpost", "scraper"]

def f(v, d=None):
    try:
        x = float(v)
        return x if x == x else d
    except (TypeError, ValueError):
        return d

# one row per (scenario, system): the last clean round, else the last one
best = {}
for r in rows:
    k = (r["scenario"], r["system"])
    clean = not any(x in r["flag"] for x in ("FAILED", "NOISY", "DIED"))
    if k not in best or clean or not best[k][1]:
        best[k] = (r, clean)
base = {s: f(best[("baseline", s)][0]["legit_p99_ms"]) for s in ORDER if ("baseline", s) in best}

def attack_cols(r):
    sc = r["scenario"]
    if sc in ("flood", "dflood", "scraper"):
        refused = f"{f(r['attack_refused_pct'], 0):.1f}"
        det = f"{r['attack_requests']} sent ({f(r['attack_rate'], 0):,.0f}/s)"
        if sc == "scraper":
            fr = r["first_refusal_s"]
            det += ", first refused " + ("never" if fr in ("none", "", "-") else f"after {f(fr):.1f} s ({r['first_refusal_status']})")
    elif sc in ("slowloris", "slowpost"):
        refused = "—"
        det = (f"held >= 1 s: max {r['held_max']} (max {r['held_max_ip']} per address, mean {r['held_mean']}); "
               f"at an instant: max {r['now_max']} ({r['now_max_ip']} per address); "
               f"slowhttptest: {r['slow_opened']} opened, {r['slow_closed']} closed")
    else:
        return "—", "—", "—"
    return refused, r["origin_attack"], det

def chal(v):
    a, _, b = (v or "/").partition("/")
    return "—" if a in ("", "0") else f"{b} of {a}"

HDR = ["scenario", "system", "legit success %", "legit p50 ms", "legit p99 ms", "p99 / own baseline",
       "legit failures", "legit challenges solved", "attack refused %", "attack reqs at origin", "attack", "proxy CPU s", "core0 busy %", "flag"]
out = []
for sc in SCEN:
    for s in ORDER:
        if (sc, s) not in best:
            continue
        r = best[(sc, s)][0]
        p99 = f(r["legit_p99_ms"])
        ratio = "—" if sc == "baseline" or not base.get(s) or p99 is None else f"{p99 / base[s]:.2f}"
        ref, org, det = attack_cols(r)
        out.append([sc, s, f"{f(r['legit_success_pct'], 0):.2f}", f"{f(r['legit_p50_ms'], 0):.2f}",
                    f"{f(r['legit_p99_ms'], 0):.2f}", ratio, r["legit_failures"] or "none",
                    chal(r["legit_challenges"]), ref, org, det,
                    f"{f(r['proxy_cpu_s'], 0):.2f}", r["srv_core_pct"], r["flag"]])

# targets (set for gatehouse; shown for all three)
THDR = ["target", "system", "measured", "met"]
tg = []
perip = rows[0]["perip_conns"] if rows else "20"
for s in ORDER:
    r = best.get(("flood", s), (None,))[0]
    if r:
        ok = f(r["legit_success_pct"], 0) >= 99.0
        p99 = f(r["legit_p99_ms"]); b = base.get(s)
        ok2 = b is not None and p99 is not None and p99 <= 2 * b
        tg.append(["flood: legit success >= 99 %", s, f"{f(r['legit_success_pct'], 0):.2f} %", "yes" if ok else "NO"])
        tg.append(["flood: legit p99 <= 2 x own baseline", s,
                   f"{p99:.2f} ms vs {b:.2f} ms" if b and p99 is not None else "no baseline in this run",
                   ("yes" if ok2 else "NO") if b else "n/a"])
for s in ORDER:
    r = best.get(("slowloris", s), (None,))[0]
    if r:
        m = int(f(r["held_max_ip"], 0))
        tg.append([f"slowloris: held per address <= per-IP limit ({perip})", s, str(m), "yes" if m <= int(perip) else "NO"])
for s in ORDER:
    r = best.get(("scraper", s), (None,))[0]
    if r:
        fr = f(r["first_refusal_s"])
        tg.append(["scraper: refused (403/429/challenge) within 30 s", s, "never" if fr is None else f"after {fr:.1f} s",
                   "yes" if fr is not None and fr <= 30 else "NO"])

GHDR = ["scenario", "gatehouse decisions during the scenario (reason/action=count)"]
gd = [[r["scenario"], r["gh_decisions"]] for (sc, s), (r, _) in sorted(best.items(), key=lambda x: SCEN.index(x[0][0]))
      if s == "gatehouse" and r["gh_decisions"] not in ("", "-")]
OHDR = ["scenario", "system", "origin requests by sender", "legit served, whole run (client view)", "connections opened legit/attack"]
od = []
for sc in SCEN:
    for s in ORDER:
        if (sc, s) in best:
            r = best[(sc, s)][0]
            od.append([sc, s, r["origin_tags"], r["legit_ok_all"], r["connects"]])

def md(h, rs):
    return "\n".join(["| " + " | ".join(h) + " |", "|" + "---|" * len(h)] + ["| " + " | ".join(x) + " |" for x in rs])
def text(h, rs):
    w = [max([len(h[i])] + [len(x[i]) for x in rs]) for i in range(len(h))]
    fm = lambda x: "  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip()
    return "\n".join([fm(h), fm(["-" * k for k in w])] + [fm(x) for x in rs])

legend = ("legit = the browsing clients; success = 2xx/3xx; p50/p99 over their successful requests started in the "
          "attack window (timeouts, resets, 403/429/5xx count as failures). A legit page answered with gatehouse's "
          "proof-of-work challenge is solved as the page's script would (SHA-256, verify URL, pass cookie, back to the "
          "page): the request counts as served if the page then comes, its latency includes the detour; a refused "
          "asset is not solved (a browser runs no script from an image). attack refused % = attack requests not "
          "answered 2xx/3xx (refused, timed out, reset, connection refused) over all sent. attack reqs at origin = "
          "lines the origin logged for the attack's requests. held >= 1 s = the slow attack's connections established "
          "at the proxy (ss, server side, sampled every second) that were already there a second earlier; at an instant = "
          "in one sample (this also catches a connection a proxy has accepted and is closing). proxy CPU s = utime+stime of the proxy's process tree "
          "over the whole scenario (lead + window).")
print("== protection under attack: legitimate clients and attackers, per scenario and system ==")
print(text(HDR, out)); print(); print(legend); print()
if tg:
    print("== targets (gatehouse's; shown for all three) =="); print(text(THDR, tg)); print()
if gd:
    print("== gatehouse /metrics: gatehouse_protection_decisions_total deltas =="); print(text(GHDR, gd)); print()
print("== cross-checks: what the origin saw =="); print(text(OHDR, od)); print()
with open(md_path, "a") as fh:
    fh.write("## Protection under attack\n\n" + md(HDR, out) + "\n\n" + legend + "\n\n")
    if tg:
        fh.write("## Targets (gatehouse's; shown for all three)\n\n" + md(THDR, tg) + "\n\n")
    if gd:
        fh.write("## gatehouse decisions (from /metrics)\n\n" + md(GHDR, gd) + "\n\n")
    fh.write("## Cross-checks: what the origin saw\n\n" + md(OHDR, od) + "\n")
PYEOF
}

if [ "${1:-}" = report ]; then
    [ $# -ge 2 ] || { echo "usage: $0 report protect-raw-STAMP.tsv" >&2; exit 2; }
    render_report "$2" /dev/null
    exit
fi

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

if [ "${1:-}" = quick ]; then
    : "${DURATION:=6}" "${LEAD:=2}" "${SCRAPER_DURATION:=12}" "${SLOW_CONNS:=300}" "${FLOOD_ADDRS:=100}"
fi
DURATION=${DURATION:-15}
LEAD=${LEAD:-5}
SCRAPER_DURATION=${SCRAPER_DURATION:-35}
RUNS=${RUNS:-1}
SYSTEMS=${SYSTEMS:-gatehouse nginx haproxy}
SCENARIOS=${SCENARIOS:-baseline flood slowloris slowpost scraper}
LEGIT=${LEGIT:-100}
LEGIT_RATE=${LEGIT_RATE:-200}
FLOOD_ADDRS=${FLOOD_ADDRS:-200}
FLOOD_RATE=${FLOOD_RATE:-100}
DFLOOD_RATE=${DFLOOD_RATE:-30}
FLOOD_CONNS=${FLOOD_CONNS:-2}
SCRAPER_RATE=${SCRAPER_RATE:-8}
SLOW_CONNS=${SLOW_CONNS:-1000}
SLOW_RATE=${SLOW_RATE:-100}
SLOW_ADDRS=${SLOW_ADDRS:-4}
SLOW_INTERVAL=${SLOW_INTERVAL:-5}
RATE=${RATE:-50}
BURST=${BURST:-100}
PERIP_CONNS=${PERIP_CONNS:-20}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10}
REQ_TIMEOUT=${REQ_TIMEOUT:-5}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-15}
NOISY_RETRIES=${NOISY_RETRIES:-0}
NOISE_BUDGET=${NOISE_BUDGET:-60}
NOISE_SPENT=0

for t in nginx haproxy slowhttptest curl taskset ss awk cc /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t$([ "$t" = slowhttptest ] && echo ' (Debian: apt-get install slowhttptest)')"
done
[ "$SLOW_CONNS" -le 1000 ] || die "SLOW_CONNS must be <= 1000 (slowhttptest uses select(): at most 1024 descriptors)"
[ "$SLOW_ADDRS" -ge 1 ] && [ "$SLOW_ADDRS" -le 60 ] || die "SLOW_ADDRS must be 1..60"

bench_init
T_START=$(date +%s)
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
RES=$TMPD/protect.tsv
TLALL=$TMPD/timeline.tsv
printf 'scenario\tsystem\tround\tattempts\tflag\tlegit_requests\tlegit_ok\tlegit_success_pct\tlegit_p50_ms\tlegit_p99_ms\tlegit_max_ms\tlegit_failures\tlegit_challenges\tlegit_ok_all\tattack_requests\tattack_refused_pct\tattack_rate\tfirst_refusal_s\tfirst_refusal_status\torigin_attack\torigin_tags\theld_max\theld_max_ip\theld_mean\tnow_max\tnow_max_ip\tslow_opened\tslow_closed\tproxy_cpu_s\torigin_cpu_s\tclient_cpu_s\tsrv_core_pct\tcli_core_pct\tbusy_total\tother_cpu0\tother_cpu1\tconnects\tperip_conns\tgh_decisions\n' >"$RES"

cc -O2 -Wall -o "$TMPD/attack" "$HERE/attack.c" -lcrypto || die "cannot build bench/attack.c (needs libssl-dev for SHA-256)"
cc -O2 -Wall -shared -fPIC -o "$TMPD/srcbind.so" "$HERE/protect/srcbind.c" -ldl || die "cannot build bench/protect/srcbind.c"
ATTACK=$TMPD/attack

pick_ports 3
OPORT=${PORTS[0]}
PORT=${PORTS[1]}         # every proxy listens here, one at a time
ADMIN_PORT=${PORTS[2]}   # gatehouse's admin listener (/metrics)
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')   # 64 hex digits
SLOW_SRC=""
for ((i = 1; i <= SLOW_ADDRS; i++)); do SLOW_SRC="$SLOW_SRC${SLOW_SRC:+ }127.4.0.$i"; done

log "temp dir $TMPD; ports: origin $OPORT proxy $PORT gatehouse-admin $ADMIN_PORT; servers on core $SERVER_CPU, harness on core $CLIENT_CPU"
versions | sed 's/^/  /' >&2
echo "  slowhttptest: $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)" >&2

# render_tpl TEMPLATE OUT: fills in the @NAME@ placeholders.
render_tpl() {
    local t
    t=$(<"$1")
    t=${t//@DIR@/$(dirname "$2")}
    t=${t//@NOFILE@/$NOFILE}
    t=${t//@PORT@/$PORT}
    t=${t//@ORIGIN_PORT@/$OPORT}
    t=${t//@ADMIN_PORT@/$ADMIN_PORT}
    t=${t//@SECRET@/$SECRET}
    t=${t//@RATE@/$RATE}
    t=${t//@BURST@/$BURST}
    t=${t//@HAP_RATE10@/$((RATE * 10 + BURST))}
    t=${t//@PERIP_CONNS@/$PERIP_CONNS}
    t=${t//@HEADER_TIMEOUT@/$HEADER_TIMEOUT}
    t=${t//@BODY@/$BODY_SMALL}
    printf '%s\n' "$t" >"$2"
}

# conf_for SYSTEM SCENARIO: a fresh config in its own directory; prints the path.
conf_for() {
    local d=$TMPD/$1-$2 f k
    mkdir -p "$d"
    chmod 755 "$d"
    case $1 in
    gatehouse)
        f=$d/gatehouse.yaml
        render_tpl "$HERE/protect/gatehouse.yaml.in" "$f"
        ;;
    nginx) f=$d/nginx.conf; render_tpl "$HERE/protect/nginx.conf.in" "$f" ;;
    haproxy) f=$d/haproxy.cfg; render_tpl "$HERE/protect/haproxy.cfg.in" "$f" ;;
    esac
    echo "$f"
}

BROWSER_HDRS=(-A "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" -H "Accept-Language: en-US,en;q=0.9"
    -H "Accept-Encoding: gzip, deflate, br" -H "Sec-Fetch-Site: none" -H "Sec-Fetch-Mode: navigate" -H "Sec-Fetch-Dest: document")

# start_proxy SYSTEM CONF: starts it on the server core; 0 once it answers 200 on / (a browser-like
# curl: a protection may well challenge curl's own User-Agent); sets SERVER_PID.
start_proxy() {
    local sys=$1 conf=$2 d logf code i
    d=$(dirname "$conf")
    logf=$d/stdout.log
    case $sys in
    nginx) start_server "$sys" "$logf" nginx -c "$conf" ;;
    haproxy) start_server "$sys" "$logf" haproxy -db -f "$conf" ;;
    gatehouse) start_server "$sys" "$logf" "$GH_BIN_COPY" run -c "$conf" ;;
    esac
    for ((i = 0; i < 50; i++)); do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "${BROWSER_HDRS[@]}" "http://127.0.0.1:$PORT/" 2>/dev/null)
        [ "$code" = 200 ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$sys did not answer 200 on http://127.0.0.1:$PORT/ within 5 s (last status: ${code:-none}); its output:"
    tail -n 20 "$logf" >&2
    [ -f "$d/error.log" ] && tail -n 5 "$d/error.log" >&2
    if [ "$sys" = gatehouse ]; then
        log "gatehouse validate -c $conf says:"
        "$GH_BIN_COPY" validate -c "$conf" 2>&1 | head -n 20 >&2
    fi
    stop_system "$SERVER_PID"
    return 1
}

# gh_decisions: gatehouse_protection_decisions_total lines of gatehouse's /metrics ("labels value").
gh_decisions() {
    curl -s -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null | awk '/^gatehouse_protection_decisions_total[{ ]/ { print $1, $2 }'
}

# decisions_delta BEFORE AFTER: "reason/action=N, ..." for the counters that moved.
decisions_delta() {
    awk -v A="$1" -v B="$2" 'BEGIN {
        n = split(A, la, "\n"); for (i = 1; i <= n; i++) { split(la[i], x, " "); if (x[1] != "") a[x[1]] = x[2] }
        n = split(B, lb, "\n"); out = "";
        for (i = 1; i <= n; i++) {
            split(lb[i], y, " "); if (y[1] == "") continue
            d = y[2] - a[y[1]]; if (d <= 0) continue
            r = y[1]; rs = ""; ac = ""
            if (match(r, /reason="[^"]*"/)) rs = substr(r, RSTART + 8, RLENGTH - 9)
            if (match(r, /action="[^"]*"/)) ac = substr(r, RSTART + 8, RLENGTH - 9)
            out = out (out == "" ? "" : ", ") rs "/" ac "=" d
        }
        print out == "" ? "none" : out }'
}

# held_sample PREV CUR: the slow attack's connections (from 127.4.x.x) established at the proxy,
# server side, now (their peers written to CUR) and also in the previous sample (PREV, a second
# earlier): "NOW NOW_MAX_PER_ADDRESS HELD HELD_MAX_PER_ADDRESS". HELD counts the connections the proxy
# kept at least a second; NOW also catches one a proxy has accepted and is about to close (a
# per-IP cap that closes at accept shows cap + 1 there now and then).
held_sample() {
    ss -Htn state established "( sport = :$PORT )" 2>/dev/null |
        awk '{ for (i = 1; i <= NF; i++) if (index($i, "127.4.") == 1) print $i }' >"$2"
    awk 'NR == FNR { prev[$1] = 1; next }
        { split($1, a, ":"); n[a[1]]++; t++; if ($1 in prev) { h[a[1]]++; ht++ } }
        END { m = 0; for (k in n) if (n[k] > m) m = n[k]; hm = 0; for (k in h) if (h[k] > hm) hm = h[k]
              printf "%d %d %d %d\n", t, m, ht, hm }' "$1" "$2"
}

# bg_client OUT TICKS CMD...: CMD on the client core in the background; once it has been reaped,
# its CPU ticks (the wrapper's cutime+cstime) go to TICKS. Sets BG_PID.
bg_client() {
    local out=$1 ticks=$2; shift 2
    taskset -c "$CLIENT_CPU" bash -c '"$@"; rc=$?; read -r l </proc/$$/stat; l=${l##*) }; set -- $l;
        echo $((${14} + ${15})) >"'"$ticks"'"; exit $rc' client "$@" >"$out" 2>&1 </dev/null &
    BG_PID=$!
    STARTED_PIDS+=("$BG_PID")
}

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -n 1; }

# run_one SYSTEM SCENARIO ROUND PID DIR
run_one() {
    local sys=$1 sc=$2 round=$3 pid=$4 dir=$5
    local out=$TMPD/legit-$sys-$sc-$round.txt tlf=$TMPD/timeline-$sys-$sc-$round.tsv
    local aout=$TMPD/attack-$sys-$sc-$round.txt
    local dur=$DURATION args=() aargs=() busy flag waited attempt tp0 tp1 pp0 pp1 to0 to1 c0 c1 ct st slow_pid
    local o0 o1 steal off g0="" g1="" now nowx held hmx hm hmi hsum hn nm nmi t_end slow_csv slow_ticks=0 i
    RUN_PID=$pid
    [ "$sc" = scraper ] && dur=$SCRAPER_DURATION
    # two attack.c processes on the client core: the browsers alone in one (so their latency is not
    # that of a client loop busy with 20,000 flood responses a second), the flood or scraper in the other
    args=(--port "$PORT" --duration "$dur" --lead "$LEAD" --legit "$LEGIT" --legit-rate "$LEGIT_RATE"
        --timeout "$REQ_TIMEOUT" --timeline "$tlf")
    aargs=(--port "$PORT" --duration "$dur" --lead "$LEAD" --legit 0 --timeout "$REQ_TIMEOUT" --timeline "$tlf.attack")
    case $sc in
    flood) aargs+=(--flood "$FLOOD_ADDRS" --flood-rate "$FLOOD_RATE" --flood-conns "$FLOOD_CONNS") ;;
    dflood) aargs+=(--flood "$FLOOD_ADDRS" --flood-rate "$DFLOOD_RATE" --flood-conns "$FLOOD_CONNS") ;;
    scraper) aargs+=(--scraper "$SCRAPER_RATE") ;;
    *) aargs=() ;;
    esac
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        flag=ok waited=0
        while :; do
            busy=$(busy_sample 0.5)
            [ "${busy%% *}" -le "$BUSY_MAX" ] && break
            if [ "$waited" -ge "$BUSY_WAIT" ] || [ "$NOISE_SPENT" -ge "$NOISE_BUDGET" ]; then flag=BUSY; break; fi
            [ "$waited" = 0 ] && log "machine busy (${busy%% *}% > $BUSY_MAX%: cpu0/cpu1 ${busy#* }) before $sys/$sc; waiting up to ${BUSY_WAIT}s"
            sleep 2; waited=$((waited + 2)); NOISE_SPENT=$((NOISE_SPENT + 2))
        done
        off=$(stat -c %s "$TMPD/origin/access.log" 2>/dev/null || echo 0)
        [ "$sys" = gatehouse ] && g0=$(gh_decisions)
        read -r tp0 pp0 <<<"$(tree_ticks "$pid")"; read -r to0 _ <<<"$(tree_ticks "$ORIGIN_PID")"
        c0=$(cpu_cores)
        rm -f "$TMPD/legit.ticks" "$TMPD/attack.ticks" "$tlf.attack" "$aout"
        bg_client "$out" "$TMPD/legit.ticks" "$ATTACK" "${args[@]}"
        local apid=$BG_PID xpid=""
        if [ ${#aargs[@]} -gt 0 ]; then
            bg_client "$aout" "$TMPD/attack.ticks" "$ATTACK" "${aargs[@]}"
            xpid=$BG_PID
        fi
        slow_pid="" slow_csv="" hm=0 hmi=0 hsum=0 hn=0 nm=0 nmi=0
        if [ "$sc" = slowloris ] || [ "$sc" = slowpost ]; then
            sleep "$LEAD"
            slow_csv=$TMPD/slow-$sys-$sc-$round
            local mode=(-H -i "$SLOW_INTERVAL" -x 24)
            [ "$sc" = slowpost ] && mode=(-B -i 1 -x 10 -s 8192)
            rm -f "$TMPD/slow.ticks"
            # niced: when a proxy closes its sockets, slowhttptest spins on them (up to half a core here);
            # the browsers on the same core must not pay for it
            bg_client "$slow_csv.out" "$TMPD/slow.ticks" nice -n 10 env GH_SRCBIND="$SLOW_SRC" LD_PRELOAD="$TMPD/srcbind.so" \
                slowhttptest "${mode[@]}" -c "$SLOW_CONNS" -r "$SLOW_RATE" -l $((dur + 30)) -p 3 \
                -u "http://127.0.0.1:$PORT/" -g -o "$slow_csv"
            slow_pid=$BG_PID
            t_end=$(($(date +%s) + dur))
            rm -f "$TMPD/held.prev"
            while kill -0 "$apid" 2>/dev/null && [ "$(date +%s)" -lt $((t_end + 5)) ]; do
                : >>"$TMPD/held.prev"
                read -r now nowx held hmx <<<"$(held_sample "$TMPD/held.prev" "$TMPD/held.cur")"
                mv "$TMPD/held.cur" "$TMPD/held.prev"
                [ "$held" -gt "$hm" ] && hm=$held
                [ "$hmx" -gt "$hmi" ] && hmi=$hmx
                [ "$now" -gt "$nm" ] && nm=$now
                [ "$nowx" -gt "$nmi" ] && nmi=$nowx
                hsum=$((hsum + held)); hn=$((hn + 1))
                sleep 1
            done
        fi
        wait "$apid"
        forget_pid "$apid"
        if [ -n "$xpid" ]; then wait "$xpid"; forget_pid "$xpid"; fi
        c1=$(cpu_cores)
        read -r tp1 pp1 <<<"$(tree_ticks "$pid")"; read -r to1 _ <<<"$(tree_ticks "$ORIGIN_PID")"
        if [ -n "$slow_pid" ]; then
            # stop slowhttptest (the wrapper's child) so that the wrapper, left alone, notes its CPU time
            # shellcheck disable=SC2046
            kill -TERM $(descendants "$slow_pid") 2>/dev/null
            for ((i = 0; i < 50; i++)); do kill -0 "$slow_pid" 2>/dev/null || break; sleep 0.1; done
            stop_system "$slow_pid"
            slow_ticks=$(cat "$TMPD/slow.ticks" 2>/dev/null || echo 0)
        fi
        ct=$(($(cat "$TMPD/legit.ticks" 2>/dev/null || echo 0) + $(cat "$TMPD/attack.ticks" 2>/dev/null || echo 0) + slow_ticks))
        if ! kill -0 "$pid" 2>/dev/null; then
            flag="$flag,DIED" o0=0 o1=0 steal=0
            log "$sys (pid $pid) DIED during $sc: $(tail -n 1 "$dir/stdout.log" 2>/dev/null)"
            break
        fi
        [ "$pp0" != "$pp1" ] && flag="$flag,PIDS_CHANGED"
        read -r o0 o1 steal <<<"$(other_load "$c0" "$c1" $((tp1 - tp0 + to1 - to0)) "$ct")"
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            flag="$flag,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + dur + LEAD + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $sys/$sc (> $OTHER_MAX%): repeating it"
                # a fresh proxy for the repeat (its limiter state remembers the first attempt)
                stop_system "$pid"
                start_proxy "$sys" "$CONF_OF_RUN" || { RUN_PID=""; return 0; }
                pid=$SERVER_PID
                RUN_PID=$pid
                sleep 1.2
                continue
            fi
        fi
        break
    done
    [ "$sys" = gatehouse ] && g1=$(gh_decisions)
    sleep 1.2   # the origin flushes its access log buffer every second
    local tags origin_attack legit line flood scr
    tags=$(tail -c +$((off + 1)) "$TMPD/origin/access.log" 2>/dev/null | sort | uniq -c | awk '{ printf "%s%s=%s", (NR > 1 ? "," : ""), $2, $1 }')
    case $sc in
    flood | dflood) origin_attack=$(sed -n 's/.*flood=\([0-9]*\).*/\1/p' <<<"$tags") ;;
    scraper) origin_attack=$(sed -n 's/.*scraper=\([0-9]*\).*/\1/p' <<<"$tags") ;;
    slowloris | slowpost)
        # the slow requests that reached the origin (POSTs; a slowloris head never completes), and
        # slowhttptest's own availability probes (complete GETs from the same addresses)
        origin_attack="$(sed -n 's/.*slowpost=\([0-9]*\).*/\1/p' <<<"$tags" | grep . || echo 0) (+$(sed -n 's/.*probe=\([0-9]*\).*/\1/p' <<<"$tags" | grep . || echo 0) probes)" ;;
    *) origin_attack="-" ;;
    esac
    legit=$(grep '^LEGIT ' "$out")
    line=$(grep -sE '^(FLOOD|SCRAPER) ' "$aout" | head -n 1)
    if [ -z "$legit" ]; then
        flag="$flag,FAILED"
        log "no report from attack.c ($sys/$sc):"; tail -n 5 "$out" >&2
    fi
    local fails="" o
    for o in s403 s429 s4xx s5xx sother timeout reset connfail; do
        local v
        v=$(kv "$o" " $legit")
        [ -n "$v" ] && [ "$v" != 0 ] && fails="$fails${fails:+ }${o#s}:$v"
    done
    local slow_opened=- slow_closed=- held_mean=-
    if [ -n "$slow_csv" ]; then
        # slowhttptest's CSV: Seconds,Closed,Pending,Connected,Service Available (cumulative closed)
        read -r slow_opened slow_closed <<<"$(awk -F, 'NR > 1 && $1 ~ /^[0-9]+$/ { c = $2; t = $2 + $3 + $4 } END { printf "%d %d\n", t, c }' "$slow_csv.csv" 2>/dev/null || echo "- -")"
        held_mean=$([ "$hn" -gt 0 ] && echo $((hsum / hn)) || echo 0)
    else
        hm=- hmi=- nm=- nmi=-
    fi
    read -r -a b <<<"$busy"
    local el=$((LEAD + dur)) spct cpct
    spct=$(awk -v t=$((tp1 - tp0 + to1 - to0)) -v k="$CLK_TCK" -v e="$el" 'BEGIN { printf "%.0f", 100 * t / k / e }')
    cpct=$(awk -v t="$ct" -v k="$CLK_TCK" -v e="$el" 'BEGIN { printf "%.0f", 100 * t / k / e }')
    flag=${flag#ok,}
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$sc" "$sys" "$round" "$attempt" "$flag" "$(kv requests " $legit")" "$(kv ok " $legit")" \
        "$(kv success_pct " $legit")" "$(kv p50_ms " $legit")" "$(kv p99_ms " $legit")" "$(kv max_ms " $legit")" \
        "$fails" "$(kv challenges " $legit")/$(kv passed " $legit")" "$(kv all_ok " $legit")" "$(kv requests " $line")" "$(kv refused_pct " $line")" "$(kv rate " $line")" \
        "$(kv first_refusal_s " $line")" "$(kv first_refusal_status " $line")" "${origin_attack:-0}" "$tags" \
        "$hm" "$hmi" "$held_mean" "$nm" "$nmi" "$slow_opened" "$slow_closed" \
        "$(awk -v t=$((tp1 - tp0)) -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')" \
        "$(awk -v t=$((to1 - to0)) -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')" \
        "$(awk -v t="$ct" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')" "$spct" "$cpct" "${b[0]}" "$o0" "$o1" \
        "$(kv connects " $legit")/$(kv connects " $line" | grep . || echo -)" "$PERIP_CONNS" \
        "$([ "$sys" = gatehouse ] && decisions_delta "$g0" "$g1" || echo -)" >>"$RES"
    local extra=""
    case $sc in
    flood | dflood) extra="flood sent $(kv requests " $line") ($(kv rate " $line")/s) refused $(kv refused_pct " $line")% origin $origin_attack" ;;
    scraper) extra="scraper sent $(kv requests " $line") served $(kv served_pct " $line")% first refusal $(kv first_refusal_s " $line") s ($(kv first_refusal_status " $line"))" ;;
    slowloris | slowpost) extra="held >=1s max $hm (max $hmi per address, mean $held_mean; at an instant max $nm, $nmi per address) slowhttptest opened $slow_opened closed $slow_closed origin $origin_attack" ;;
    esac
    printf '  %-9s %-9s legit %s/%s ok (%s%%) p50 %s ms p99 %s ms  %s  proxy CPU %s s  core0 %s%% core1 %s%% other %s/%s%% %s\n' \
        "$sys" "$sc" "$(kv ok " $legit")" "$(kv requests " $legit")" "$(kv success_pct " $legit")" "$(kv p50_ms " $legit")" \
        "$(kv p99_ms " $legit")" "$extra" "$(awk -v t=$((tp1 - tp0)) -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')" \
        "$spct" "$cpct" "$o0" "$o1" "$([ "$flag" = ok ] || echo "[$flag]")" >&2
    [ -n "$fails" ] && log "  $sys/$sc legit failures: $fails"
    # one timeline file per run: system, scenario, round, then attack.c's per-second columns
    # (the legit columns from the browsers' process, the attack columns from the other one)
    [ -s "$TLALL" ] || printf 'system\tscenario\tround\t%s\n' "$(head -n 1 "$tlf" 2>/dev/null)" >"$TLALL"
    awk -F'\t' -v OFS='\t' -v pre="$sys\t$sc\t$round" 'NR == FNR { if (FNR > 1) a[$1] = $6 OFS $7 OFS $8 OFS $9 OFS $10; next }
        FNR > 1 { print pre, $1, $2, $3, $4, $5, ($1 in a ? a[$1] : "0\t0\t0\t0\t0") }' \
        "$([ -s "$tlf.attack" ] && echo "$tlf.attack" || echo /dev/null)" "$tlf" >>"$TLALL"
}

# ---------------------------------------------------------------- origin, systems

mkdir -p "$TMPD/origin"
chmod 755 "$TMPD/origin"
render_tpl "$HERE/protect/origin.conf.in" "$TMPD/origin/nginx.conf"
start_server origin "$TMPD/origin/stdout.log" nginx -c "$TMPD/origin/nginx.conf"
ORIGIN_PID=$SERVER_PID
wait_http "http://127.0.0.1:$OPORT/small" 5 || { tail -n 5 "$TMPD/origin/stdout.log" "$TMPD/origin/error.log" >&2; die "origin nginx did not start"; }

ACTIVE=()
for s in $SYSTEMS; do
    if [ "$s" = gatehouse ] && ! gatehouse_available; then
        log "SKIP gatehouse: $GATEHOUSE_BIN not found/executable (build it with make, or set GATEHOUSE_BIN)"
        continue
    fi
    conf=$(conf_for "$s" probe)
    if ! start_proxy "$s" "$conf"; then
        log "SKIP $s: it did not start with its protection config"
        continue
    fi
    body=$(curl -s "${BROWSER_HDRS[@]}" "http://127.0.0.1:$PORT/page/1")
    stop_system "$SERVER_PID"
    [ "$body" = "$BODY_SMALL" ] || { log "SKIP $s: wrong body through it (${#body} B)"; continue; }
    ACTIVE+=("$s")
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no system to measure"

nsc=$(wc -w <<<"$SCENARIOS")
extra=0
[[ " $SCENARIOS " == *" scraper "* ]] && extra=$((SCRAPER_DURATION - DURATION))
est=$((RUNS * ${#ACTIVE[@]} * (nsc * (LEAD + DURATION + 4) + extra)))
log "systems: ${ACTIVE[*]}; scenarios: $SCENARIOS; ${LEAD}s lead + ${DURATION}s window (scraper ${SCRAPER_DURATION}s); ~$((est / 60 + 1)) min"
log "legit: $LEGIT clients, $LEGIT_RATE req/s; flood: $FLOOD_ADDRS addresses x $FLOOD_CONNS conns, $FLOOD_RATE req/s each (dflood $DFLOOD_RATE); scraper $SCRAPER_RATE req/s; slow: $SLOW_CONNS conns at $SLOW_RATE/s from $SLOW_ADDRS addresses; per-IP limits: $RATE r/s burst $BURST, $PERIP_CONNS conns, head timeout ${HEADER_TIMEOUT}s"

# Scenario by scenario, the systems back to back (each on a fresh proxy), their order rotating.
k=0
for ((r = 1; r <= RUNS; r++)); do
    for sc in $SCENARIOS; do
        order=()
        for ((i = 0; i < ${#ACTIVE[@]}; i++)); do order+=("${ACTIVE[$(((i + k) % ${#ACTIVE[@]}))]}"); done
        k=$((k + 1))
        for sys in "${order[@]}"; do
            conf=$(conf_for "$sys" "$sc-$r")
            CONF_OF_RUN=$conf
            if ! start_proxy "$sys" "$conf"; then
                log "$sys did not start; no figures for $sc in round $r"
                continue
            fi
            run_one "$sys" "$sc" "$r" "$SERVER_PID" "$(dirname "$conf")"
            [ -n "$RUN_PID" ] && stop_system "$RUN_PID"
        done
    done
done
log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget; total $(($(date +%s) - T_START)) s"

# ---------------------------------------------------------------- report

cp "$RES" "$OUTDIR/protect-raw-$STAMP.tsv"
cp "$TLALL" "$OUTDIR/protect-timeline-$STAMP.tsv" 2>/dev/null
MD=$OUTDIR/protect-$STAMP.md
{
    echo "# gatehouse protection benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    versions
    echo "slowhttptest: $(slowhttptest -h 2>&1 | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)"
    echo "method: proxy + origin nginx on core $SERVER_CPU, harness (bench/attack.c, slowhttptest) on core $CLIENT_CPU; 1 worker each; a fresh proxy per scenario"
    echo "legit: $LEGIT clients (127.1.0.x), $LEGIT_RATE req/s; ${LEAD}s alone, then ${DURATION}s with the attack (scraper: ${SCRAPER_DURATION}s)"
    echo "flood: $FLOOD_ADDRS addresses (127.2.x.y) x $FLOOD_CONNS conns, $FLOOD_RATE req/s each (dflood: $DFLOOD_RATE); scraper: 127.3.0.1, $SCRAPER_RATE req/s"
    echo "slowloris/slowpost: slowhttptest -c $SLOW_CONNS -r $SLOW_RATE from $SLOW_ADDRS addresses (127.4.0.x), -H -i $SLOW_INTERVAL / -B -i 1 -x 10 -s 8192"
    echo "per-IP limits, all three: $RATE req/s burst $BURST (HAProxy: > $((RATE * 10 + BURST)) requests in 10 s), $PERIP_CONNS connections, ${HEADER_TIMEOUT}s for a request head"
    echo "scenarios: $SCENARIOS; rounds: $RUNS"
    echo '```'
    echo
} >"$MD"
render_report "$RES" "$MD"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/protect-raw-$STAMP.tsv; per-second timelines: $OUTDIR/protect-timeline-$STAMP.tsv"
