#!/usr/bin/env bash
# bench/tls.sh: TLS termination (HTTP/1.1, and HTTP/2 in the h2 test), gatehouse vs nginx vs HAProxy,
# in the same run.
#
#   bash bench/tls.sh            (~7 min on a quiet box, + at most NOISE_BUDGET s on a noisy one)
#   bash bench/tls.sh report RAW.tsv IDLE-RAW.tsv   (the tables again, from a run's raw files)
#
# All three terminate TLS 1.3 with the same ECDSA P-256 certificate (made at start in the temp dir)
# and the same suite, TLS_AES_128_GCM_SHA256, pinned on every server (X25519 is what all three
# negotiate with an OpenSSL client); session tickets on (each server's default). Origin nginx and
# the proxy under test pinned to core 0 (1 worker / nbthread 1 / worker_processes 1), the load
# generator to core 1; one proxy at a time. RUNS rounds; in each round, test by test, the systems
# back to back (a fresh proxy per measurement), their order rotating from round to round. Each
# measurement: 1 s warm-up, /proc/stat busy check, the run; proxy tree's utime+stime before/after:
#   small  keep-alive over TLS: wrk -t1 -c$CONNS -d${DURATION}s --latency https://.../small (100 B)
#   big    the same on /big (64 KiB)
#   new    connection per request, full handshake every time: bench/tlsconn rate ... new
#          ($HS_CONNS connections at a time; each: connect, handshake, GET with Connection: close,
#          response read until the server closes; a fresh session every time)
#   reuse  the same, resuming: the newest ticket received is offered on every new connection
#   single (not in the default TESTS) each ticket offered once, as browsers do (RFC 8446 C.4): the
#          share of handshakes resumed shows whether the server replaces the tickets it consumes
#   h2     HTTP/2 over TLS, many streams per connection: h2load -n N -c$H2_CONNS -m$H2_STREAMS -t1
#          https://.../small, N = the warm-up's rate x DURATION (the warm-up: -n $H2_WARMUP); ALPN h2
#          checked on every run; p50/p99 from h2load's --log-file. nginx gets `listen ... ssl http2` and
#          HAProxy `alpn h2,http/1.1` for this test only (a config of its own); gatehouse offers h2 by
#          default (the same config as the other tests). H2_BOUND=duration uses -D DURATION instead
#          (streams in flight are cut at the end)
# then, once per system: memory per idle TLS connection (bench/tlsconn idle: $IDLE_CONNS connections,
# each completes the handshake and one keep-alive GET /small, then stays idle; RSS/Pss delta).
#
# Environment: DURATION (6) RUNS (3) CONNS (50) HS_CONNS (50) H2_CONNS (4) H2_STREAMS (50) H2_BOUND (count)
# H2_WARMUP (30000) IDLE_CONNS (5000) SETTLE (1) SYSTEMS ("gatehouse nginx haproxy")
# TESTS ("small big new reuse h2"; also "single") IDLE (1: run the idle part)
# CIPHERSUITE (TLS_AES_128_GCM_SHA256) BUSY_MAX (30) BUSY_WAIT (20) OTHER_MAX (10)
# NOISY_RETRIES (1) NOISE_BUDGET (60) GATEHOUSE_BIN (./build/gatehouse) KEEP_TMP (keep temp dir).
# Quick check: DURATION=2 RUNS=1 IDLE_CONNS=1000 bash bench/tls.sh (~2 min).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

# render_report RESULTS.tsv IDLE.tsv MARKDOWN_OUT CONNS HS_CONNS: the tables (stdout) and the markdown.
render_report() {
    /usr/bin/python3 - "$@" <<'PYEOF'
import csv, statistics, sys

res, idle_res, md_path, conns, hs_conns = sys.argv[1:6]
h2_conns = sys.argv[6] if len(sys.argv) > 6 else "4"
h2_streams = sys.argv[7] if len(sys.argv) > 7 else "50"
rows = list(csv.DictReader(open(res), delimiter="\t"))
irows = list(csv.DictReader(open(idle_res), delimiter="\t"))
ORDER = ["gatehouse", "nginx", "haproxy"]
HS = ("new", "reuse", "single")
TEST_LABEL = {
    "small": f"keep-alive, 100 B (wrk -c{conns})",
    "big": f"keep-alive, 64 KiB (wrk -c{conns})",
    "new": f"new connection + full handshake per request (-c{hs_conns})",
    "reuse": f"new connection + resumed handshake per request (-c{hs_conns})",
    "single": f"new connection per request, each ticket used once (-c{hs_conns})",
    "h2": f"HTTP/2, 100 B, {h2_conns} connections x {h2_streams} streams (h2load -c{h2_conns} -m{h2_streams})",
}

def f(v):
    try:
        x = float(v)
        return x if x == x else None
    except (TypeError, ValueError):
        return None

groups = {}
for r in rows:
    groups.setdefault((r["test"], r["system"]), []).append(r)
summ = {}
for key, rs in groups.items():
    ok = [r for r in rs if not any(x in r["flag"] for x in ("FAILED", "NOT_H2", "DIED"))]
    # BUSY alone (the machine was busy just before, the run itself was clean) is kept: what counts is
    # the other load measured during the run (NOISY) and a stable process tree.
    calm = [r for r in ok if not any(x in r["flag"] for x in ("NOISY", "PIDS_CHANGED"))]
    used = calm or ok
    if not used:
        continue
    med = lambda k: statistics.median([f(r[k]) for r in used if f(r[k]) is not None] or [float("nan")])
    rates = [f(r["rate"]) for r in used]
    cnt = sum(int(r["count"]) for r in used)
    res_n = sum(int(r["resumed"]) for r in used if r["resumed"] not in ("-", ""))
    tick = sum(int(r["tickets"]) for r in used if r["tickets"] not in ("-", ""))
    sf = [r["srv_full"] for r in used]
    sr = [r["srv_resumed"] for r in used]
    srv = "—"
    if all(x not in ("-", "") for x in sf + sr):
        srv = f"{sum(map(int, sf)):,} / {sum(map(int, sr)):,}"
    summ[key] = dict(
        rate=statistics.median(rates), lo=min(rates), hi=max(rates), p50=med("p50_ms"), p99=med("p99_ms"),
        pcpu=med("proxy_us"), ocpu=med("origin_us"), ccpu=med("client_us"), score=med("srv_core_pct"),
        ccore=med("cli_core_pct"), runs=len(used), total=len(rs), busy=not calm,
        errors=sum(int(r["errors"] or 0) for r in used), count=cnt,
        resumed=(f"{100 * res_n / cnt:.1f} %" if cnt and key[0] in HS else "—"),
        tickets=(f"{tick / cnt:.2f}" if cnt and key[0] in HS else "—"),
        srv=srv if key[0] in HS else "—",
        neg=sorted({r["negotiated"] for r in used if r["negotiated"] not in ("-", "")}),
        other=" ".join(f"{r['other_cpu0']}/{r['other_cpu1']}" for r in rs),
        busyb="/".join(r["busy_total"] for r in rs),
        retried=sum(int(r["attempts"] or 1) - 1 for r in rs),
    )

tests = [t for t in ["small", "big", "new", "reuse", "single", "h2"] if any(k[0] == t for k in summ)]
HDR = ["test", "system", "rate /s median (min..max)", "p50 ms", "p99 ms", "proxy CPU µs/op", "origin CPU µs/op",
       "client CPU µs/op", "core0 / core1 busy %", "resumed (client view)", "tickets per conn",
       "server count full / resumed", "runs kept", "other load % core0/core1"]
main = []
for t in tests:
    for s in ORDER:
        g = summ.get((t, s))
        if not g:
            continue
        note = []
        if g["runs"] < g["total"]: note.append(f"{g['total'] - g['runs']} dropped")
        if g["busy"]: note.append("noisy: all runs flagged NOISY")
        if g["retried"]: note.append(f"{g['retried']} noisy attempt(s) repeated")
        if g["errors"]: note.append(f"{g['errors']} errors")
        main.append([t, s, f"{g['rate']:,.0f} ({g['lo']:,.0f}..{g['hi']:,.0f})", f"{g['p50']:.3f}", f"{g['p99']:.3f}",
                     f"{g['pcpu']:.1f}", f"{g['ocpu']:.1f}", f"{g['ccpu']:.1f}", f"{g['score']:.0f} / {g['ccore']:.0f}",
                     g["resumed"], g["tickets"], g["srv"], f"{g['runs']}/{g['total']}" + (" " + "; ".join(note) if note else ""),
                     g["other"]])
RHDR = ["test", "gatehouse vs", "rate ratio (>1 better)", "p99 ratio (<1 better)", "CPU/op ratio (<1 better)",
        "per-round rate ratios", "per-round CPU/op ratios"]
def clean(r):
    return not any(x in r["flag"] for x in ("FAILED", "NOISY", "PIDS_CHANGED", "NOT_H2", "DIED"))
byround = {(r["test"], r["system"], r["round"]): r for r in rows}
ratios = []
for t in tests:
    gh = summ.get((t, "gatehouse"))
    for peer in ["nginx", "haproxy"]:
        p = summ.get((t, peer))
        if not p:
            continue
        if not gh:
            ratios.append([t, peer, "pending", "pending", "pending", "—", "—"]); continue
        pr, pc = [], []
        for rnd in sorted({r["round"] for r in rows}, key=int):
            a, b = byround.get((t, "gatehouse", rnd)), byround.get((t, peer, rnd))
            if a and b and clean(a) and clean(b) and f(b["rate"]) and f(b["proxy_us"]):
                pr.append(f(a["rate"]) / f(b["rate"])); pc.append(f(a["proxy_us"]) / f(b["proxy_us"]))
            else:
                pr.append(None); pc.append(None)
        fmt = lambda xs: " ".join("–" if x is None else f"{x:.2f}" for x in xs)
        ratios.append([t, peer, f"{gh['rate'] / p['rate']:.2f}", f"{gh['p99'] / p['p99']:.2f}" if p["p99"] else "n/a",
                       f"{gh['pcpu'] / p['pcpu']:.2f}" if p["pcpu"] else "n/a", fmt(pr), fmt(pc)])
# capacity: what one core could do for the proxy alone (1e6 / proxy µs per op)
CHDR = ["test", "system", "proxy CPU µs/op", "one-core capacity, proxy alone (/s)"]
cap = []
for t in ("new", "reuse"):
    for s in ORDER:
        g = summ.get((t, s))
        if g and g["pcpu"]:
            cap.append([t, s, f"{g['pcpu']:.1f}", f"{1e6 / g['pcpu']:,.0f}"])

IHDR = ["system", "conns held", "RSS before kB", "RSS with conns kB", "RSS after close kB", "bytes/idle TLS conn (RSS)",
        "bytes/idle TLS conn (Pss)", "notes"]
idle = []
per = {}
for r in irows:
    held = int(r["still_open"] or 0)
    b = (int(r["rss1_kb"]) - int(r["rss0_kb"])) * 1024 / held if held else float("nan")
    bp = (int(r["pss1_kb"]) - int(r["pss0_kb"])) * 1024 / held if held else float("nan")
    per[r["system"]] = b
    notes = []
    if int(r["failed"] or 0): notes.append(f"{r['failed']} failed")
    if int(r["bad_status"] or 0): notes.append(f"{r['bad_status']} non-200")
    if held < int(r["open"] or 0): notes.append(f"{int(r['open']) - held} closed by proxy before measurement end")
    if r["serves"] != "yes": notes.append("did not answer a new request while holding them")
    notes.append(f"setup {r['setup_ms']} ms, {r['negotiated']}")
    idle.append([r["system"], f"{held}/{r['conns']}", r["rss0_kb"], r["rss1_kb"], r["rss2_kb"], f"{b:,.0f}", f"{bp:,.0f}",
                 "; ".join(notes)])
iratios = []
for peer in ("nginx", "haproxy"):
    if peer in per:
        g = per.get("gatehouse")
        iratios.append(["idle TLS conn memory (RSS)", peer, "pending" if g is None else f"{g / per[peer]:.2f}"])

def md(h, rs):
    return "\n".join(["| " + " | ".join(h) + " |", "|" + "---|" * len(h)] + ["| " + " | ".join(x) + " |" for x in rs])
def text(h, rs):
    w = [max([len(h[i])] + [len(x[i]) for x in rs]) for i in range(len(h))]
    fm = lambda x: "  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip()
    return "\n".join([fm(h), fm(["-" * k for k in w])] + [fm(x) for x in rs])

legend = ("tests: " + "; ".join(f"{k} = {v}" for k, v in TEST_LABEL.items() if k in tests) +
          ". op = request (small, big, h2) or connection with its handshake and one request (new, reuse, single). "
          "p50/p99: wrk's (small, big), from connect to the end of the response (new, reuse, single), per stream from "
          "h2load's --log-file (h2; the protocol negotiated by ALPN is the last field of 'negotiated'). "
          "core0 / core1 busy % = CPU used by origin+proxy on the server core / by the client on its core during the run "
          "(core1 near 100 % means the client was the limit, and the rate is the client's; compare CPU/op then). "
          "server count = the server's own TLS counters (gatehouse /metrics, HAProxy ssl_sess / ssl_reused_sess; nginx has none).")
negs = sorted({n for g in summ.values() for n in g["neg"]})
print("== TLS termination: rate, latency, CPU per operation (medians over kept runs) ==")
print(text(HDR, main)); print()
print("negotiated (client view): " + ", ".join(negs)); print(legend); print()
print("== gatehouse relative to each peer (same run) ==")
print(text(RHDR, ratios + [[a, b, c, "—", "—", "—", "—"] for a, b, c in iratios])); print()
print("ratios: of the medians; per round: the same ratio within each round (a run flagged NOISY: –)."); print()
if cap:
    print("== handshake capacity of one core, proxy alone (derived: 1e6 / proxy CPU µs per connection) ==")
    print(text(CHDR, cap)); print()
if idle:
    print("== idle TLS connections: proxy memory (1 worker) ==")
    print(text(IHDR, idle)); print()
with open(md_path, "a") as fh:
    fh.write("## TLS termination: rate, latency, CPU per operation\n\n" + md(HDR, main) + "\n\n")
    fh.write("Negotiated (client view): " + ", ".join(negs) + ".\n" + legend + "\n\n")
    fh.write("## gatehouse relative to each peer (same run)\n\n" + md(RHDR, ratios + [[a, b, c, "—", "—", "—", "—"] for a, b, c in iratios]) + "\n\n"
             "Ratios of the medians; per round: the same ratio within each round (a run flagged NOISY: –).\n\n")
    if cap:
        fh.write("## Handshake capacity of one core, proxy alone (derived)\n\n" + md(CHDR, cap) + "\n\n")
    if idle:
        fh.write("## Idle TLS connections: proxy memory (1 worker)\n\n" + md(IHDR, idle) + "\n\n"
                 "Each connection: TLS 1.3 handshake, one keep-alive GET /small, then idle. bytes/idle conn = "
                 "(RSS with connections - RSS before) / connections still open; kernel socket memory not included.\n")
PYEOF
}

# bash bench/tls.sh report RAW.tsv IDLE-RAW.tsv: print the tables again from a run's raw files.
if [ "${1:-}" = report ]; then
    [ $# -ge 3 ] || { echo "usage: $0 report tls-raw-STAMP.tsv tls-idle-raw-STAMP.tsv" >&2; exit 2; }
    render_report "$2" "$3" /dev/null "${CONNS:-50}" "${HS_CONNS:-50}" "${H2_CONNS:-4}" "${H2_STREAMS:-50}"
    exit
fi

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-6}
RUNS=${RUNS:-3}
CONNS=${CONNS:-50}
HS_CONNS=${HS_CONNS:-50}
H2_CONNS=${H2_CONNS:-4}
H2_STREAMS=${H2_STREAMS:-50}
H2_BOUND=${H2_BOUND:-count}
H2_WARMUP=${H2_WARMUP:-30000}
H2_N=$H2_WARMUP
IDLE_CONNS=${IDLE_CONNS:-5000}
SETTLE=${SETTLE:-1}
SYSTEMS=${SYSTEMS:-gatehouse nginx haproxy}
TESTS=${TESTS:-small big new reuse h2}
IDLE=${IDLE:-1}
CIPHERSUITE=${CIPHERSUITE:-TLS_AES_128_GCM_SHA256}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-10}
NOISY_RETRIES=${NOISY_RETRIES:-1}
NOISE_BUDGET=${NOISE_BUDGET:-60}
NOISE_SPENT=0

for t in nginx haproxy wrk curl taskset ss awk cc openssl /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
[[ " $TESTS " != *" h2 "* ]] || command -v h2load >/dev/null || die "missing tool: h2load (Debian: nghttp2-client), needed by the h2 test"

bench_init
[ "$NOFILE" -ge $((IDLE_CONNS + 100)) ] || die "open-file limit $NOFILE is too low for $IDLE_CONNS connections"
T_START=$(date +%s)
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
RES=$TMPD/tls.tsv
IDLE_RES=$TMPD/tls-idle.tsv
printf 'system\ttest\tround\tcount\trate\tp50_ms\tp99_ms\tproxy_us\torigin_us\tclient_us\tsrv_core_pct\tcli_core_pct\tbusy_total\tother_cpu0\tother_cpu1\tsteal\tattempts\tflag\terrors\tresumed\ttickets\tsrv_full\tsrv_resumed\tnegotiated\n' >"$RES"
printf 'system\tconns\topen\tfailed\tbad_status\tstill_open\tsetup_ms\trss0_kb\trss1_kb\trss2_kb\tpss0_kb\tpss1_kb\tserves\tnegotiated\n' >"$IDLE_RES"

cc -O2 -Wall -o "$TMPD/tlsconn" "$HERE/tlsconn.c" -lssl -lcrypto || die "cannot build bench/tlsconn.c (needs libssl-dev)"
TLSCONN=$TMPD/tlsconn

pick_ports 5
OPORT=${PORTS[0]}
ADMIN_PORT=${PORTS[4]}
declare -A PORT_OF=([gatehouse]=${PORTS[1]} [nginx]=${PORTS[2]} [haproxy]=${PORTS[3]})

# ---------------------------------------------------------------- certificate (ECDSA P-256)
CERTD=$TMPD/tls
mkdir -p "$CERTD"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$CERTD/key.pem" \
    -out "$CERTD/cert.pem" -days 2 -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    >"$CERTD/openssl.log" 2>&1 || { cat "$CERTD/openssl.log" >&2; die "cannot make the certificate"; }
cat "$CERTD/cert.pem" "$CERTD/key.pem" >"$CERTD/haproxy.pem"
chmod -R a+rX "$CERTD"   # nginx workers run as nobody under root; they read nothing here, the master does
# curl (the start probe, the body checks) verifies the server against this self-signed certificate.
export CURL_CA_BUNDLE=$CERTD/cert.pem

log "temp dir $TMPD; ports: origin $OPORT gatehouse ${PORT_OF[gatehouse]} nginx ${PORT_OF[nginx]} haproxy ${PORT_OF[haproxy]} gatehouse-admin $ADMIN_PORT"
log "pinning: servers on core $SERVER_CPU, clients on core $CLIENT_CPU; nofile limit $NOFILE; TLS 1.3 $CIPHERSUITE, ECDSA P-256"
versions | sed 's/^/  /' >&2
echo "  openssl: $(openssl version)" >&2

gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"
ORIGIN_PID=$SERVER_PID

# ---------------------------------------------------------------- proxy configs (TLS listener)

# gen_tls_conf SYSTEM PORT MODE(bench|h2|idle): prints the config path. The settings of lib.sh's
# gen_proxy_conf (1 worker, logging off, upstream keep-alive) plus the TLS listener. MODE h2 (the h2
# test only) is bench plus HTTP/2 on the TLS listener: nginx `listen ... ssl http2`, HAProxy
# `alpn h2,http/1.1`; gatehouse's listener offers h2 and http/1.1 by default, in every mode.
gen_tls_conf() {
    local sys=$1 port=$2 mode=$3 d f wc maxconn ngx_h2="" hap_alpn=http/1.1
    [ "$mode" = h2 ] && { ngx_h2=" http2"; hap_alpn=h2,http/1.1; }
    d=$TMPD/tls-$sys-$mode
    mkdir -p "$d"
    chmod 755 "$d"
    if [ "$mode" = idle ]; then wc=$((NOFILE > 20000 ? 20000 : NOFILE)); maxconn=$wc; else wc=4096; maxconn=4096; fi
    case $sys in
    gatehouse)
        f=$d/gatehouse.yaml
        cat >"$f" <<EOF
workers: 1
access_log: off
admin: {listen: "127.0.0.1:$ADMIN_PORT"}
listeners:
  - name: https
    listen: "127.0.0.1:$port"
    tls: {cert: "$CERTD/cert.pem", key: "$CERTD/key.pem", min_version: "1.3", ciphersuites: "$CIPHERSUITE"}
upstreams:
  origin:
    backends: ["127.0.0.1:$OPORT"]
    keepalive: 1024
tenants:
  - name: bench
    sites:
      - hosts: ["*"]
        routes:
          - name: all
            upstream: origin
EOF
        ;;
    nginx)
        f=$d/nginx.conf
        cat >"$f" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $wc; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    upstream o {
        server 127.0.0.1:$OPORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port ssl$ngx_h2 reuseport backlog=4096;
        ssl_certificate $CERTD/cert.pem;
        ssl_certificate_key $CERTD/key.pem;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites $CIPHERSUITE;
        ssl_session_tickets on;
        location / {
            proxy_pass http://o;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        ;;
    haproxy)
        f=$d/haproxy.cfg
        cat >"$f" <<EOF
global
    nbthread 1
    maxconn $maxconn
    pidfile $d/haproxy.pid
    stats socket $d/stats.sock mode 600 level user
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-bind-ciphersuites $CIPHERSUITE$( [ "$NOFILE" -lt $((2 * maxconn + 100)) ] && printf '\n    # the fd hard limit (%s) is below 2*maxconn: run with it (idle conns need 1 fd each)\n    no strict-limits' "$NOFILE")

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn $maxconn
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$port ssl crt $CERTD/haproxy.pem alpn $hap_alpn backlog 4096
    default_backend be

backend be
    server o 127.0.0.1:$OPORT
EOF
        ;;
    *) die "unknown system $sys" ;;
    esac
    echo "$f"
}

# wait_https URL TIMEOUT_S: 0 once URL answers 200 over HTTP/1.1 (gatehouse also offers h2 in ALPN,
# nginx and HAProxy too in their h2-test config; wrk and tlsconn speak HTTP/1.1 only).
wait_https() {
    local url=$1 t=$2 i
    for ((i = 0; i < t * 10; i++)); do
        [ "$(curl --http1.1 -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# start_tls SYSTEM CONF PORT: starts it on the server core and waits for 200 on https://.../small.
start_tls() {
    local sys=$1 conf=$2 port=$3 d logf
    d=$(dirname "$conf")
    logf=$d/stdout.log
    case $sys in
    nginx) start_server "$sys" "$logf" nginx -c "$conf" ;;
    haproxy) start_server "$sys" "$logf" haproxy -db -f "$conf" ;;
    gatehouse) start_server "$sys" "$logf" "$GH_BIN_COPY" run -c "$conf" ;;
    esac
    if ! wait_https "https://127.0.0.1:$port/small" 5; then
        log "$sys did not answer 200 on https://127.0.0.1:$port/small within 5 s; its output:"
        tail -n 20 "$logf" >&2
        [ -f "$d/error.log" ] && tail -n 20 "$d/error.log" >&2
        stop_system "$SERVER_PID"
        return 1
    fi
}

# srv_counters SYSTEM DIR: "full resumed" TLS handshakes as the server counts them (gatehouse's
# /metrics, HAProxy's frontend ssl_sess / ssl_reused_sess); "- -" for nginx (no such counter).
srv_counters() {
    case $1 in
    gatehouse)
        curl -s -m 2 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
            /^gatehouse_tls_handshakes_total / { h = $2 } /^gatehouse_tls_resumed_total / { r = $2 }
            END { if (h == "") print "- -"; else printf "%d %d\n", h - r, r }' ;;
    haproxy)
        /usr/bin/python3 - "$2/stats.sock" <<'EOF' 2>/dev/null || echo "- -"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1]); s.sendall(b"show stat typed\n")
d = b""
while True:
    b = s.recv(65536)
    if not b: break
    d += b
v = {}
for line in d.decode().splitlines():
    if line.startswith("F.") and ".ssl_" in line:
        k = line.split(":")[0].split(".")[4]; v[k] = int(line.rsplit(":", 1)[1])
print(v.get("ssl_sess", "-"), v.get("ssl_reused_sess", "-"))
EOF
        ;;
    *) echo "- -" ;;
    esac
}

# run_client OUT CMD...: CMD on the client core; its CPU ticks (cutime+cstime of the wrapper once
# CMD has been reaped) go to $CLIENT_TICKS.
CLIENT_TICKS=$TMPD/client.ticks
run_client() {
    local out=$1; shift
    taskset -c "$CLIENT_CPU" bash -c '"$@"; rc=$?; read -r l </proc/$$/stat; l=${l##*) }; set -- $l;
        echo $((${14} + ${15})) >"'"$CLIENT_TICKS"'"; exit $rc' client "$@" >"$out" 2>&1 &
    local w=$!
    STARTED_PIDS+=("$w")
    wait "$w"
    forget_pid "$w"
}

# client_cmd TEST PORT DURATION: the load command for TEST.
client_cmd() {
    local test=$1 port=$2 d=$3
    case $test in
    small | big) echo wrk -t1 -c"$CONNS" -d"${d}s" --latency "https://127.0.0.1:$port/$test" ;;
    new | reuse | single) echo "$TLSCONN" rate 127.0.0.1 "$port" "$HS_CONNS" "$d" /small "$test" ;;
    # H2_BOUND=count (default): -n H2_N requests, H2_N sized by h2_size from the warm-up's rate so that the
    # run lasts about DURATION s; the clients close once every stream has ended. H2_BOUND=duration: -D,
    # which closes the connections with the streams still in flight when the time is up (those are not
    # counted). --log-file: one line per request (start µs, status, µs to the end of the response).
    h2)
        local bound="-n $H2_N"
        [ "$H2_BOUND" = duration ] && bound="-D $d"
        echo h2load $bound -c"$H2_CONNS" -m"$H2_STREAMS" -t1 --tls13-ciphers="$CIPHERSUITE" \
            --log-file="$TMPD/h2load.log" "https://127.0.0.1:$port/small" ;;
    esac
}

# h2_size: H2_N for the measured h2 run: the warm-up's rate (h2load's req/s) x DURATION, in thousands.
h2_size() {
    local r
    r=$(awk '/^finished in / { print int($4) }' "$TMPD/warmup.txt" 2>/dev/null)
    H2_N=$(((${r:-0} > 0 ? r : 10000) * DURATION / 1000 * 1000))
    [ "$H2_N" -ge 1000 ] || H2_N=1000
}

# parse_out TEST FILE: "count rate p50 p99 errors resumed tickets negotiated"
parse_out() {
    case $1 in
    small | big)
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
            END { printf "%d %s %.3f %.3f %d - - -\n", req, rps + 0, p50, p99, err }' "$2" ;;
    new | reuse | single)
        awk '/^RATE / {
                for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                printf "%d %s %s %s %d %d %d %s/%s/%s\n", v["ok"], v["rate"], v["p50_ms"], v["p99_ms"], v["errors"],
                    v["resumed"], v["tickets"], v["version"], v["cipher"], v["group"]; f = 1 }
             END { if (!f) print "0 0 0 0 0 0 0 -" }' "$2" ;;
    h2)
        # count = 2xx responses; errors = failed + errored + timeout + non-2xx; negotiated ends with the
        # ALPN protocol ("Application protocol: h2"). p50/p99 (nearest rank) from the per-request log.
        local pct
        pct=$(awk -F'\t' '$2 == 200 { print $3 }' "$TMPD/h2load.log" 2>/dev/null | sort -n | awk '
            { v[NR] = $1 } END { if (!NR) { print "0 0"; exit }
                i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
                printf "%.3f %.3f %d\n", v[i50] / 1000, v[i99] / 1000, NR }')
        awk -v pct="$pct" '
            /^finished in / { rps = $4 }
            /^requests: / { gsub(/,/, ""); err += $10 + $12 + $14 }
            /^status codes: / { gsub(/,/, ""); ok = $3; err += $5 + $7 + $9 }
            /^TLS Protocol: / { ver = $3 } /^Cipher: / { cip = $2 } /^Server Temp Key: / { grp = $4 }
            /^Application protocol: / { proto = $3 }
            END { split(pct, p, " ");
                printf "%d %s %s %s %d - - %s/%s/%s/%s\n", ok, rps + 0, p[1] + 0, p[2] + 0, err,
                    ver ? ver : "?", cip ? cip : "?", grp ? grp : "?", proto ? proto : "none" }' "$2" ;;
    esac
}

# run_one SYSTEM TEST ROUND PORT PID DIR
run_one() {
    local sys=$1 test=$2 round=$3 port=$4 pid=$5 dir=$6
    local out=$TMPD/out-$sys-$test-$round.txt
    local busy flag waited tp0 tp1 pp0 pp1 to0 to1 po0 po1 c0 c1 ct srv o0 o1 steal attempt
    local t0 t1 sc0 sc1 count rate p50 p99 err res tick neg pus ous cus spct cpct
    # shellcheck disable=SC2046
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        flag=ok waited=0
        H2_N=$H2_WARMUP
        run_client "$TMPD/warmup.txt" $(client_cmd "$test" "$port" 1)
        while :; do
            busy=$(busy_sample 0.5)
            [ "${busy%% *}" -le "$BUSY_MAX" ] && break
            if [ "$waited" -ge "$BUSY_WAIT" ] || [ "$NOISE_SPENT" -ge "$NOISE_BUDGET" ]; then flag=BUSY; break; fi
            [ "$waited" = 0 ] && log "machine busy (${busy%% *}% > $BUSY_MAX%: cpu0/cpu1 ${busy#* }) before $sys/$test; waiting up to ${BUSY_WAIT}s"
            sleep 2; waited=$((waited + 2)); NOISE_SPENT=$((NOISE_SPENT + 2))
        done
        [ "$waited" -gt 0 ] && [ "$flag" = ok ] && run_client "$TMPD/warmup.txt" $(client_cmd "$test" "$port" 1)
        [ "$test" = h2 ] && h2_size
        sc0=$(srv_counters "$sys" "$dir")
        read -r tp0 pp0 <<<"$(tree_ticks "$pid")"; read -r to0 po0 <<<"$(tree_ticks "$ORIGIN_PID")"
        rm -f "$TMPD/h2load.log"   # h2load appends to its --log-file: keep only this run's requests
        c0=$(cpu_cores); t0=$(date +%s%N)
        run_client "$out" $(client_cmd "$test" "$port" "$DURATION")
        t1=$(date +%s%N); c1=$(cpu_cores)
        read -r tp1 pp1 <<<"$(tree_ticks "$pid")"; read -r to1 po1 <<<"$(tree_ticks "$ORIGIN_PID")"
        sc1=$(srv_counters "$sys" "$dir")
        ct=$(cat "$CLIENT_TICKS" 2>/dev/null || echo 0)
        if ! kill -0 "$pid" 2>/dev/null; then
            flag="$flag,DIED" o0=0 o1=0 steal=0
            log "$sys (pid $pid) DIED during $test run $round: $(tail -n 1 "$dir/stdout.log" 2>/dev/null); last kernel segfault line (may be older): $(dmesg 2>/dev/null | grep -E 'segfault|general protection' | tail -n 1)"
            break
        fi
        srv=$((tp1 - tp0 + to1 - to0))
        read -r o0 o1 steal <<<"$(other_load "$c0" "$c1" "$srv" "$ct")"
        if [ "$pp0" != "$pp1" ] || [ "$po0" != "$po1" ]; then
            flag="$flag,PIDS_CHANGED"
            log "process tree changed during the run ($sys: $pp0 -> $pp1; origin: $po0 -> $po1): CPU figures may be off"
        fi
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            flag="$flag,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $sys/$test run $round (> $OTHER_MAX%): repeating it"
                sleep 2
                continue
            fi
        fi
        break
    done
    read -r count rate p50 p99 err res tick neg <<<"$(parse_out "$test" "$out")"
    local sf sr a0 b0 a1 b1
    read -r a0 b0 <<<"$sc0"; read -r a1 b1 <<<"$sc1"
    if [ "$a0" != - ] && [ "$a1" != - ]; then sf=$((a1 - a0)); sr=$((b1 - b0)); else sf=-; sr=-; fi
    if [ "${count:-0}" -gt 0 ]; then
        read -r pus ous cus spct cpct <<<"$(awk -v tp=$((tp1 - tp0)) -v to=$((to1 - to0)) -v tc="$ct" -v k="$CLK_TCK" \
            -v n="$count" -v ns=$((t1 - t0)) 'BEGIN { el = ns / 1e9;
            printf "%.1f %.1f %.1f %.0f %.0f\n", tp * 1e6 / k / n, to * 1e6 / k / n, tc * 1e6 / k / n,
                100 * (tp + to) / k / el, 100 * tc / k / el }')"
    else
        pus=nan; ous=nan; cus=nan; spct=0; cpct=0; flag="$flag,FAILED"
        log "no responses from $sys ($test):"; tail -n 5 "$out" >&2
    fi
    [ "${err:-0}" -gt 0 ] && flag="$flag,ERR"
    if [ "$test" = h2 ] && [[ $neg != */h2 ]]; then
        flag="$flag,NOT_H2"
        log "WARNING: $sys/h2 run $round did not negotiate h2 (negotiated: $neg): left out of the medians"
    fi
    flag=${flag#ok,}
    read -r -a b <<<"$busy"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$sys" "$test" "$round" "$count" "$rate" "$p50" "$p99" "$pus" "$ous" "$cus" "$spct" "$cpct" \
        "${b[0]}" "$o0" "$o1" "$steal" "$attempt" "$flag" "$err" "$res" "$tick" "$sf" "$sr" "$neg" >>"$RES"
    local extra=""
    case $test in
    new | reuse | single) extra="  resumed $res/$count tickets $tick server full/resumed $sf/$sr" ;;
    h2) extra="  negotiated $neg" ;;
    esac
    printf '  %-9s %-5s run %s: %8.0f /s  p50 %7.3f ms  p99 %7.3f ms  proxy %6s us  origin %5s us  client %6s us  core0 %3s%% core1 %3s%%  busy-before %s%%  other %s/%s%% %s%s\n' \
        "$sys" "$test" "$round" "$rate" "$p50" "$p99" "$pus" "$ous" "$cus" "$spct" "$cpct" "${b[0]}" "$o0" "$o1" \
        "$([ "$flag" = ok ] || echo "[$flag] ")" "$extra" >&2
}

# ---------------------------------------------------------------- which systems take part

ACTIVE=()
for s in $SYSTEMS; do
    if [ "$s" = gatehouse ] && ! gatehouse_available; then
        log "SKIP gatehouse: $GATEHOUSE_BIN not found/executable (build it with make, or set GATEHOUSE_BIN)"
        continue
    fi
    conf=$(gen_tls_conf "$s" "${PORT_OF[$s]}" bench)
    if ! start_tls "$s" "$conf" "${PORT_OF[$s]}"; then
        log "SKIP $s: it did not serve over TLS"
        continue
    fi
    body=$(curl --http1.1 -s "https://127.0.0.1:${PORT_OF[$s]}/small")
    big=$(curl --http1.1 -s "https://127.0.0.1:${PORT_OF[$s]}/big" | wc -c)
    probe=$("$TLSCONN" probe 127.0.0.1 "${PORT_OF[$s]}" /small 2>&1)
    stop_system "$SERVER_PID"
    if [ "$body" != "$BODY_SMALL" ] || [ "$big" != 65536 ]; then
        log "SKIP $s: wrong bodies through it (/small ${#body} B, /big $big B)"
        continue
    fi
    log "$s: ${probe#PROBE }"
    case $probe in
    *"version=TLSv1.3 cipher=$CIPHERSUITE group=X25519"*) ;;
    *) log "WARNING: $s did not negotiate TLSv1.3/$CIPHERSUITE/X25519: the comparison is not like for like" ;;
    esac
    if [[ " $TESTS " == *" h2 "* ]]; then
        # the h2 test's config: does curl get HTTP/2 and the right body? (every h2 run checks ALPN again)
        conf=$(gen_tls_conf "$s" "${PORT_OF[$s]}" h2)
        if start_tls "$s" "$conf" "${PORT_OF[$s]}"; then
            h2v=$(curl --http2 -s -o "$TMPD/h2probe.body" -w '%{http_version}' "https://127.0.0.1:${PORT_OF[$s]}/small")
            stop_system "$SERVER_PID"
            if [ "$h2v" = 2 ] && [ "$(cat "$TMPD/h2probe.body")" = "$BODY_SMALL" ]; then
                log "$s (h2 config): curl got HTTP/2 and the 100 B body"
            else
                log "WARNING: $s (h2 config): curl got HTTP/$h2v, body $(wc -c <"$TMPD/h2probe.body") B (each h2 run checks h2load's ALPN: NOT_H2)"
            fi
        else
            log "WARNING: $s did not start with its h2 config"
        fi
    fi
    ACTIVE+=("$s")
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no system to measure"
[[ " ${ACTIVE[*]} " == *" gatehouse "* ]] || log "gatehouse is not measured in this run: its rows/ratios will read 'pending'"

ntests=$(wc -w <<<"$TESTS")
log "systems: ${ACTIVE[*]}; tests: $TESTS; $RUNS rounds of ${DURATION}s runs (+1 s warm-up, fresh proxy each); ~$(((RUNS * ${#ACTIVE[@]} * ntests * (DURATION + 4) + ${#ACTIVE[@]} * (5 + IDLE_CONNS / 1000) * IDLE) / 60 + 1)) min"

# Rounds; within a round, test by test, every system back to back (a fresh proxy for each test), in an
# order that rotates from round to round: the three measurements of one test lie within ~30 s of
# each other, so the machine's drift (large on this shared box) hits them alike.
declare -A UP_LOGGED=()
for ((r = 1; r <= RUNS; r++)); do
    order=()
    for ((i = 0; i < ${#ACTIVE[@]}; i++)); do order+=("${ACTIVE[$(((i + r - 1) % ${#ACTIVE[@]}))]}"); done
    for test in $TESTS; do
        for sys in "${order[@]}"; do
            conf=$(gen_tls_conf "$sys" "${PORT_OF[$sys]}" "$([ "$test" = h2 ] && echo h2 || echo bench)")
            if ! start_tls "$sys" "$conf" "${PORT_OF[$sys]}"; then
                log "$sys did not start; no figures for $test in round $r"
                continue
            fi
            pid=$SERVER_PID
            [ -z "${UP_LOGGED[$sys]:-}" ] && { log "$sys up: $(tree_tasks "$pid")"; UP_LOGGED[$sys]=1; }
            run_one "$sys" "$test" "$r" "${PORT_OF[$sys]}" "$pid" "$(dirname "$conf")"
            d=$(dirname "$conf")
            if [ -f "$d/error.log" ] && grep -q "buffered to a temporary file" "$d/error.log"; then
                log "note: nginx buffered upstream responses to temp files ($(grep -c 'buffered to a temporary file' "$d/error.log") times so far)"
            fi
            stop_system "$pid"
        done
    done
done

# ---------------------------------------------------------------- idle TLS connections

if [ "$IDLE" = 1 ]; then
    for sys in "${ACTIVE[@]}"; do
        port=${PORT_OF[$sys]}
        conf=$(gen_tls_conf "$sys" "$port" idle)
        if ! start_tls "$sys" "$conf" "$port"; then
            log "SKIP $sys/idle: it did not start"
            continue
        fi
        pid=$SERVER_PID
        for i in 1 2 3 4 5; do curl --http1.1 -s -o /dev/null "https://127.0.0.1:$port/small"; done
        sleep 0.5
        rss0=$(tree_rss_kb "$pid"); pss0=$(tree_pss_kb "$pid")
        out=$TMPD/idle-$sys.out
        taskset -c "$CLIENT_CPU" "$TLSCONN" idle 127.0.0.1 "$port" "$IDLE_CONNS" /small 60 >"$out" 2>"$out.err" &
        cpid=$!
        STARTED_PIDS+=("$cpid")
        for ((i = 0; i < 600; i++)); do grep -qs '^READY' "$out" && break; kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
        sleep "$SETTLE"
        rss1=$(tree_rss_kb "$pid"); pss1=$(tree_pss_kb "$pid")
        serves=no
        [ "$(curl --http1.1 -s -o /dev/null -m 2 -w '%{http_code}' "https://127.0.0.1:$port/small")" = 200 ] && serves=yes
        kill -TERM "$cpid" 2>/dev/null
        wait "$cpid" 2>/dev/null
        forget_pid "$cpid"
        sleep 1
        rss2=$(tree_rss_kb "$pid")
        stop_system "$pid"
        ready=$(grep '^READY' "$out" || echo "READY open=0 failed=$IDLE_CONNS bad_status=0 setup_ms=0")
        still=$(awk '/^STILL_OPEN/ {print $2}' "$out")
        kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$ready"; }
        neg="$(kv version)/$(kv cipher)/$(kv group)"
        [ -s "$out.err" ] && sed "s/^/  $sys\/idle client: /" "$out.err" >&2
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$IDLE_CONNS" "$(kv open)" "$(kv failed)" \
            "$(kv bad_status)" "${still:-0}" "$(kv setup_ms)" "$rss0" "$rss1" "$rss2" "$pss0" "$pss1" "$serves" "$neg" >>"$IDLE_RES"
        log "$sys/idle: open $(kv open) failed $(kv failed) still-open ${still:-?} (setup $(kv setup_ms) ms, $neg); RSS ${rss0} -> ${rss1} -> ${rss2} kB (before / with conns / after close); Pss ${pss0} -> ${pss1} kB; serves with conns held: $serves"
    done
fi

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget on waits and repeats; total $(($(date +%s) - T_START)) s"

# ---------------------------------------------------------------- report

cp "$RES" "$OUTDIR/tls-raw-$STAMP.tsv"
cp "$IDLE_RES" "$OUTDIR/tls-idle-raw-$STAMP.tsv"
MD=$OUTDIR/tls-$STAMP.md
{
    echo "# gatehouse TLS termination benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    versions
    echo "openssl: $(openssl version)"
    echo "method: TLS 1.3, $CIPHERSUITE, ECDSA P-256 certificate, X25519; servers pinned to core $SERVER_CPU, clients to core $CLIENT_CPU; 1 worker each"
    echo "keep-alive: wrk -t1 -c$CONNS -d${DURATION}s --latency; handshakes: tlsconn rate, $HS_CONNS connections, ${DURATION}s; h2: h2load -D $DURATION -c$H2_CONNS -m$H2_STREAMS -t1 (nginx listen ssl http2, HAProxy alpn h2,http/1.1 in that test only); median of $RUNS runs, rounds interleaved; idle: $IDLE_CONNS connections"
    echo "tests: $TESTS"
    echo '```'
    echo
} >"$MD"
render_report "$RES" "$IDLE_RES" "$MD" "$CONNS" "$HS_CONNS" "$H2_CONNS" "$H2_STREAMS"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/tls-raw-$STAMP.tsv, $OUTDIR/tls-idle-raw-$STAMP.tsv"
