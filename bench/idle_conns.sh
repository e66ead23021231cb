#!/usr/bin/env bash
# bench/idle_conns.sh: memory held per idle client connection, gatehouse vs nginx vs HAProxy.
#
#   bash bench/idle_conns.sh        (or: bash bench/proxy.sh idle)
#
# For each proxy (1 worker, pinned to core 0 with the origin) and each variant:
#   req     every connection completes one keep-alive GET /small, then stays open and idle
#   silent  every connection is established but never sends a byte
# the proxy is started fresh, answers a few requests, and its RSS (sum of VmRSS over the process
# tree; Pss too) is read; bench/idleconn (C, built here into the temp dir, pinned to core 1) opens
# IDLE_CONNS connections and holds them; after SETTLE s the RSS is read again, the client closes
# everything (RST), and RSS is read once more. Bytes per idle connection =
# (RSS with connections - RSS before) / connections still open at that moment.
# Kernel socket buffers are not in RSS: this is the proxy's own user-space memory per connection.
#
# Environment: IDLE_CONNS (10000) SYSTEMS ("gatehouse nginx haproxy") VARIANTS ("req silent")
# SETTLE (1) GATEHOUSE_BIN GATEHOUSE_ARGS KEEP_TMP.

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

IDLE_CONNS=${IDLE_CONNS:-10000}
SYSTEMS=${SYSTEMS:-gatehouse nginx haproxy}
VARIANTS=${VARIANTS:-req silent}
SETTLE=${SETTLE:-1}

for t in nginx haproxy curl taskset ss awk cc /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done

bench_init
[ "$NOFILE" -ge $((IDLE_CONNS + 100)) ] || die "open-file limit $NOFILE is too low for $IDLE_CONNS connections"
STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
RES=$TMPD/idle.tsv
printf 'system\tvariant\tconns\topen\tfailed\tbad_status\tstill_open\tsetup_ms\trss0_kb\trss1_kb\trss2_kb\tpss0_kb\tpss1_kb\tserves\n' >"$RES"

cc -O2 -Wall -o "$TMPD/idleconn" "$HERE/idleconn.c" || die "cannot build bench/idleconn.c"

pick_ports 4
OPORT=${PORTS[0]}
declare -A PORT_OF=([gatehouse]=${PORTS[1]} [nginx]=${PORTS[2]} [haproxy]=${PORTS[3]})
log "temp dir $TMPD; origin port $OPORT; $IDLE_CONNS connections per variant; nofile limit $NOFILE"
versions | sed 's/^/  /' >&2

gen_origin_conf "$OPORT"
start_system origin "$TMPD/origin/nginx.conf" "$OPORT" || die "origin nginx did not start"

for sys in $SYSTEMS; do
    if [ "$sys" = gatehouse ] && ! gatehouse_available; then
        log "SKIP gatehouse: $GATEHOUSE_BIN not found/executable"
        continue
    fi
    for variant in $VARIANTS; do
        port=${PORT_OF[$sys]}
        conf=$(gen_proxy_conf "$sys" 1 "$port" "$OPORT" idle)
        if ! start_system "$sys" "$conf" "$port"; then
            log "SKIP $sys/$variant: it did not start"
            continue
        fi
        pid=$SERVER_PID
        log "$sys/$variant up: $(tree_tasks "$pid")"
        for i in 1 2 3 4 5; do curl -s -o /dev/null "http://127.0.0.1:$port/small"; done
        sleep 0.5
        rss0=$(tree_rss_kb "$pid"); pss0=$(tree_pss_kb "$pid")
        out=$TMPD/idle-$sys-$variant.out
        taskset -c "$CLIENT_CPU" "$TMPD/idleconn" 127.0.0.1 "$port" "$IDLE_CONNS" "$variant" /small 60 >"$out" 2>"$out.err" &
        cpid=$!
        STARTED_PIDS+=("$cpid")
        for ((i = 0; i < 600; i++)); do grep -qs '^READY' "$out" && break; kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
        sleep "$SETTLE"
        rss1=$(tree_rss_kb "$pid"); pss1=$(tree_pss_kb "$pid")
        serves=no
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/small")" = 200 ] && serves=yes
        kill -TERM "$cpid" 2>/dev/null
        wait "$cpid" 2>/dev/null
        forget_pid "$cpid"
        sleep 1
        rss2=$(tree_rss_kb "$pid")
        stop_system "$pid"
        ready=$(grep '^READY' "$out" || echo "READY open=0 failed=$IDLE_CONNS bad_status=0 setup_ms=0")
        still=$(awk '/^STILL_OPEN/ {print $2}' "$out")
        open=$(sed 's/.*open=\([0-9]*\).*/\1/' <<<"$ready")
        failed=$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$ready")
        bad=$(sed 's/.*bad_status=\([0-9]*\).*/\1/' <<<"$ready")
        setup=$(sed 's/.*setup_ms=\([0-9]*\).*/\1/' <<<"$ready")
        [ -s "$out.err" ] && sed "s/^/  $sys\/$variant client: /" "$out.err" >&2
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$variant" "$IDLE_CONNS" \
            "$open" "$failed" "$bad" "${still:-0}" "$setup" "$rss0" "$rss1" "$rss2" "$pss0" "$pss1" "$serves" >>"$RES"
        log "$sys/$variant: open $open failed $failed bad-status $bad still-open ${still:-?} (setup ${setup} ms); RSS ${rss0} -> ${rss1} -> ${rss2} kB (before / with conns / after close); serves with conns held: $serves"
    done
done

cp "$RES" "$OUTDIR/idle-raw-$STAMP.tsv"
MD=$OUTDIR/idle-$STAMP.md
{
    echo "# gatehouse idle-connection memory, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    versions
    echo "method: 1 worker each, pinned to core $SERVER_CPU with the origin; client on core $CLIENT_CPU; $IDLE_CONNS connections per variant; RSS = sum of VmRSS over the proxy's processes"
    echo '```'
    echo
} >"$MD"
/usr/bin/python3 - "$RES" "$MD" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
per = {}
lines = []
hdr = ["system", "variant", "conns held", "RSS before kB", "RSS with conns kB", "RSS after close kB",
       "bytes/idle conn (RSS)", "bytes/idle conn (Pss)", "notes"]
for r in rows:
    held = int(r["still_open"] or 0)
    d = int(r["rss1_kb"]) - int(r["rss0_kb"])
    dp = int(r["pss1_kb"]) - int(r["pss0_kb"])
    b = d * 1024 / held if held else float("nan")
    bp = dp * 1024 / held if held else float("nan")
    per[(r["system"], r["variant"])] = b
    notes = []
    if int(r["failed"]): notes.append(f"{r['failed']} failed to connect")
    if int(r["bad_status"]): notes.append(f"{r['bad_status']} non-200")
    if held < int(r["open"]): notes.append(f"{int(r['open']) - held} closed by proxy before measurement end")
    if r["serves"] != "yes": notes.append("did not answer a new request while holding them")
    notes.append(f"setup {r['setup_ms']} ms")
    lines.append([r["system"], r["variant"], f"{held}/{r['conns']}", r["rss0_kb"], r["rss1_kb"], r["rss2_kb"],
                  f"{b:,.0f}", f"{bp:,.0f}", "; ".join(notes)])
ratios = []
for v in sorted({k[1] for k in per}, key=lambda x: ["req", "silent"].index(x) if x in ("req", "silent") else 9):
    g = per.get(("gatehouse", v))
    for peer in ("nginx", "haproxy"):
        p = per.get((peer, v))
        if p is None: continue
        ratios.append([v, peer, "pending" if g is None else (f"{g / p:.2f}" if p > 0 else "n/a")])

def md(h, rs):
    return "\n".join(["| " + " | ".join(h) + " |", "|" + "---|" * len(h)] + ["| " + " | ".join(x) + " |" for x in rs])
def text(h, rs):
    w = [max([len(h[i])] + [len(x[i]) for x in rs]) for i in range(len(h))]
    f = lambda x: "  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip()
    return "\n".join([f(h), f(["-" * k for k in w])] + [f(x) for x in rs])
rh = ["variant", "gatehouse vs", "bytes/idle conn ratio (<1 = gatehouse leaner)"]
print("== Idle client connections: proxy memory (1 worker) ==")
print(text(hdr, lines)); print()
print("== gatehouse relative to each peer ==")
print(text(rh, ratios))
with open(sys.argv[2], "a") as f:
    f.write("## Idle client connections: proxy memory (1 worker)\n\n" + md(hdr, lines) + "\n\n")
    f.write("req = one keep-alive GET /small completed, then idle; silent = connected, never sent a byte.\n")
    f.write("bytes/idle conn = (RSS with connections - RSS before) / connections still open; kernel socket memory is not included.\n\n")
    f.write("### gatehouse relative to each peer\n\n" + md(rh, ratios) + "\n")
EOF
echo
echo "markdown: $MD"
echo "raw: $OUTDIR/idle-raw-$STAMP.tsv"
