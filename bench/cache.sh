#!/usr/bin/env bash
# bench/cache.sh: HTTP cache benchmark: gatehouse's cache beside Varnish and nginx proxy_cache, in one run,
# in front of the same origin, at the same worker count.
#
#   bash bench/cache.sh        both parts, ~7-8 min (+ at most NOISE_BUDGET s on a noisy box)
#
# Part "hit", cache-hit throughput: a small hot set (HOT URLs of SMALL_KB = 1 KiB, HOT of LARGE_KB =
# 256 KiB) is fetched once through a fresh proxy (the warm-up fills the cache), then per size a 1 s
# warm-up run of the client, a /proc/stat busy check and the measured run: CONNS (64) keep-alive
# connections for DURATION (10) s cycling over the hot URLs, by bench/hitload (CLIENT=hitload, the
# default: hitload -c64 -d10 -p /h/s/ -n 16) or by wrk (CLIENT=wrk: wrk -t1 -c64 -d10s --latency
# -s cache/hot.lua). The origin's request counter (stub_status) is read around the measured run: every
# request must be a hit, and the count of requests that reached the origin is printed (0 expected).
# RUNS rounds, the systems' order rotating from round to round, a fresh proxy per system and round.
# Reported: req/s median (min..max), p50/p99, proxy CPU µs/request, origin requests, ratios
# gatehouse/varnish and gatehouse/nginx. Per run also (log line, raw TSV): the client's CPU µs/request,
# each core's busy % as user+system (core0/1 busy) and with irq/softirq (with softirq: the loopback's
# TCP receive work runs as softirq on the sending core, charged to no process; near 100 % = saturated).
#
# Why hitload (bench/hitload.c, built into the temp dir at start): wrk copies every body byte to user
# space in 8 KiB read() calls and runs it through its HTTP parser; with 256 KiB bodies its core was
# 92-94 % busy in every run, so req/s measured wrk, not the caches (gatehouse used 0.79x Varnish's CPU
# per hit but showed 0.98x its req/s). hitload (one thread, epoll, same request bytes and the same
# cycling over the paths as hot.lua) reads only the response head and drops the body in the kernel
# (recv MSG_TRUNC, no copy), checking status and Content-Length; it prints wrk's summary format (same
# parser). Its latencies are not corrected for coordinated omission as wrk 4.1's are, and it counts
# any status but 200 as "Non-2xx" (wrk: >= 400). CLIENT=wrk gives the earlier figures. The zipf part
# always uses wrk (zipf.lua): it measures hit ratios, not throughput.
#
# Part "zipf", hit ratio under a memory cap: cache/zipf.py draws once, with a fixed seed, REQUESTS
# (200,000) paths over OBJECTS (20,000) objects of 4-64 KiB with Zipf popularity (exponent 0.9); each
# system, fresh and empty, with the same cap (64 MiB: gatehouse cache.memory, Varnish -s malloc, nginx
# proxy_cache_path max_size, its cache directory on tmpfs under /dev/shm) gets exactly that sequence
# (wrk -s cache/zipf.lua, ZIPF_CONNS connections, ended when the sequence is through). hit ratio =
# 1 - origin requests / client requests (origin: stub_status counter, cross-checked with its access
# log of /z/ requests, which also gives the byte hit ratio). Reference figures from the same sequence:
# an unbounded cache (compulsory misses only) and an exact LRU holding the cap in body bytes.
#
# Placement (as bench/proxy.sh, /work/shared/BENCHMARKING.md): origin nginx and the proxy under test on
# core 0, the client (hitload or wrk) and this script on core 1; one proxy at a time. Workers:
# gatehouse `workers: N`, nginx `worker_processes N`, Varnish `-p thread_pools=1` (its defaults
# otherwise: a thread per connection).
#
# Environment: DURATION (10) RUNS (3) CONNS (64) WORKERS (1; a list such as "1 2" runs each)
# CLIENT (hitload; wrk: the hit part's load generator, see above) SYSTEMS ("gatehouse varnish nginx")
# PARTS ("hit zipf") HOT (16) SMALL_KB (1) LARGE_KB (256)
# HIT_MEM (256m: cache size in the hit part) OBJECTS (20000) REQUESTS (200000) ZIPF_S (0.9)
# ZIPF_SEED (42) MIN_KB (4) MAX_KB (64) ZIPF_MEM (64m) ZIPF_CONNS (8) ZIPF_RUNS (1)
# ZIPF_MAX_TIME (180: seconds one system may take for the sequence) NGINX_CACHE_ROOT (/dev/shm)
# NGINX_KEYS_ZONE (16m) BUSY_MAX (30) BUSY_WAIT (20) OTHER_MAX (10) NOISY_RETRIES (1) NOISE_BUDGET (90)
# GATEHOUSE_BIN (./build/gatehouse) GATEHOUSE_ARGS ("run -c {conf}") KEEP_TMP (keep the temp dir)
# GH_CACHE_CONF (1; 0 leaves the cache sections out of gatehouse's config: plain proxying, to check
# the harness against a build without the cache).
# Quick check: DURATION=2 RUNS=1 REQUESTS=40000 bash bench/cache.sh (~2 min).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

# The command as given (knobs that were set in the environment first), for the report.
KNOBS="DURATION RUNS CONNS WORKERS CLIENT SYSTEMS PARTS HOT SMALL_KB LARGE_KB HIT_MEM OBJECTS REQUESTS ZIPF_S ZIPF_SEED
MIN_KB MAX_KB ZIPF_MEM ZIPF_CONNS ZIPF_RUNS ZIPF_MAX_TIME NGINX_CACHE_ROOT NGINX_KEYS_ZONE BUSY_MAX BUSY_WAIT
OTHER_MAX NOISY_RETRIES NOISE_BUDGET GATEHOUSE_BIN GATEHOUSE_ARGS GH_CACHE_CONF SERVER_CPU CLIENT_CPU"
CMDLINE=""
for k in $KNOBS; do [ -n "${!k+x}" ] && CMDLINE="$CMDLINE$k=$(printf '%q' "${!k}") "; done
CMDLINE="${CMDLINE}bash bench/cache.sh${*:+ $*}"

# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
CLIENT=${CLIENT:-hitload}
SYSTEMS=${SYSTEMS:-gatehouse varnish nginx}
PARTS=${PARTS:-hit zipf}
HOT=${HOT:-16}
SMALL_KB=${SMALL_KB:-1}
LARGE_KB=${LARGE_KB:-256}
HIT_MEM=${HIT_MEM:-256m}
OBJECTS=${OBJECTS:-20000}
REQUESTS=${REQUESTS:-200000}
ZIPF_S=${ZIPF_S:-0.9}
ZIPF_SEED=${ZIPF_SEED:-42}
MIN_KB=${MIN_KB:-4}
MAX_KB=${MAX_KB:-64}
ZIPF_MEM=${ZIPF_MEM:-64m}
ZIPF_CONNS=${ZIPF_CONNS:-8}
ZIPF_RUNS=${ZIPF_RUNS:-1}
ZIPF_MAX_TIME=${ZIPF_MAX_TIME:-180}
NGINX_CACHE_ROOT=${NGINX_CACHE_ROOT:-/dev/shm}
NGINX_KEYS_ZONE=${NGINX_KEYS_ZONE:-16m}
BUSY_MAX=${BUSY_MAX:-30}
BUSY_WAIT=${BUSY_WAIT:-20}
OTHER_MAX=${OTHER_MAX:-10}
NOISY_RETRIES=${NOISY_RETRIES:-1}
NOISE_BUDGET=${NOISE_BUDGET:-90}
GH_CACHE_CONF=${GH_CACHE_CONF:-1}
NOISE_SPENT=0
T_START=$(date +%s)

case $CLIENT in hitload | wrk) ;; *) die "CLIENT must be hitload or wrk (not '$CLIENT')" ;; esac
for t in nginx wrk curl taskset ss awk ps du /usr/bin/python3; do
    command -v "$t" >/dev/null || die "missing tool: $t"
done
[ "$CLIENT" = hitload ] && [[ " $PARTS " == *" hit "* ]] && { command -v cc >/dev/null || die "missing tool: cc (to build bench/hitload.c; or CLIENT=wrk)"; }
case " $SYSTEMS " in *" varnish "*)
    command -v varnishd >/dev/null || die "varnishd not found: apt-get install -y varnish (it is in scripts/deps.sh)" ;;
esac

# bytes MEM: 64m -> 67108864 (k/m/g suffixes, as all three systems read them).
bytes() {
    local v=${1,,}
    case $v in
    *k) echo $((${v%k} * 1024)) ;; *m) echo $((${v%m} * 1024 * 1024)) ;; *g) echo $((${v%g} * 1024 * 1024 * 1024)) ;;
    *) echo $((v)) ;;
    esac
}
ZIPF_MEM_B=$(bytes "$ZIPF_MEM")

bench_init
# nginx's cache directory lives on tmpfs (NGINX_CACHE_ROOT), not in the temp dir: remove it too.
NCD=$(mktemp -d "$NGINX_CACHE_ROOT/gh-cache-bench.XXXXXX") || die "cannot create a directory in $NGINX_CACHE_ROOT"
chmod 755 "$NCD"
cache_cleanup() {
    bench_cleanup
    [ -n "${NCD:-}" ] && [ -d "$NCD" ] && rm -rf "$NCD"
}
trap cache_cleanup EXIT

STAMP=$(date +%Y%m%d-%H%M%S)
OUTDIR=$HERE/out
mkdir -p "$OUTDIR"
HIT_TSV=$TMPD/hit.tsv
ZIPF_TSV=$TMPD/zipf.tsv
printf 'workers\tsystem\tsize\tround\trequests\trps\tp50_ms\tp99_ms\tproxy_us_req\torigin_reqs\terrors\tbusy_before\tcore0_busy\tcore1_busy\tother_cpu0\tother_cpu1\tattempts\tflag\tclient\tclient_us_req\tcore0_all\tcore1_all\n' >"$HIT_TSV"
printf 'workers\tsystem\tround\tclient_reqs\tcompleted\torigin_reqs\torigin_logged\torigin_bytes\terrors\tseconds\trps\tp99_ms\tproxy_us_req\tused_end\tused_avg\tused_peak\trss_kb\tbusy_before\tcore0_busy\tflag\tnotes\n' >"$ZIPF_TSV"

pick_ports 5
OPORT=${PORTS[0]}
declare -A PORT_OF=([gatehouse]=${PORTS[1]} [varnish]=${PORTS[2]} [nginx]=${PORTS[3]})
APORT=${PORTS[4]}   # gatehouse's admin listener (GET /cache for the bytes it holds)

log "temp dir $TMPD; nginx cache dir $NCD (tmpfs); ports: origin $OPORT gatehouse ${PORT_OF[gatehouse]} (admin $APORT) varnish ${PORT_OF[varnish]} nginx ${PORT_OF[nginx]}"
log "pinning: origin and proxy on core $SERVER_CPU, the client ($CLIENT in the hit part, wrk in the zipf part) and this script on core $CLIENT_CPU; nofile limit $NOFILE"

# The hit part's client: bench/hitload.c, built here (as bench/idle_conns.sh builds idleconn.c).
HITLOAD=$TMPD/hitload
if [ "$CLIENT" = hitload ] && [[ " $PARTS " == *" hit "* ]]; then
    cc -O2 -Wall -Wextra -o "$HITLOAD" "$HERE/hitload.c" -lm || die "cannot build bench/hitload.c"
    HITLOAD_SHA=$(sha256sum "$HERE/hitload.c" | cut -c1-16)
fi

machine() {
    versions | grep -v '^haproxy:'
    [ "$CLIENT" = hitload ] && [ -n "${HITLOAD_SHA:-}" ] && echo "hitload: bench/hitload.c sha256 $HITLOAD_SHA (the hit part's client)"
    command -v varnishd >/dev/null && echo "varnish: $(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (//; s/ revision.*//')"
}
machine | sed 's/^/  /' >&2

# ---------------------------------------------------------------- origin

# Origin nginx: /h/s/N and /h/l/N (any N) are the SMALL_KB / LARGE_KB hot files, /z/ID/SIZEk the file of
# SIZE KiB, all with Cache-Control: max-age=3600 (and nginx's ETag / Last-Modified); /health answers
# 200; /status is stub_status (its request counter tells how many requests the proxies sent). Access
# logging is off except for /z/ (the hit-ratio part), one line per request with the body bytes sent.
gen_cache_origin_conf() {
    local d=$TMPD/origin k
    mkdir -p "$d/www/z"
    head -c $((SMALL_KB * 1024)) /dev/urandom >"$d/www/hot-small"
    head -c $((LARGE_KB * 1024)) /dev/urandom >"$d/www/hot-large"
    for ((k = MIN_KB; k <= MAX_KB; k++)); do head -c $((k * 1024)) /dev/urandom >"$d/www/z/${k}k"; done
    : >"$d/zipf.log"
    chmod -R a+rX "$d"
    chmod a+w "$d/zipf.log"
    origin_nginx_conf "$d" "$OPORT" "    log_format zbytes '\$body_bytes_sent';" \
        "        root $d/www;
        add_header Cache-Control \"max-age=3600\" always;
        location = /health { default_type text/plain; return 200 \"ok\\n\"; }
        location = /status { stub_status; }
        location ~ ^/h/s/[0-9]+\$ { try_files /hot-small =404; }
        location ~ ^/h/l/[0-9]+\$ { try_files /hot-large =404; }
        location ~ ^/z/[0-9]+/([0-9]+k)\$ { access_log $d/zipf.log zbytes; try_files /z/\$1 =404; }"
}

# origin_count: the origin's request counter (stub_status "requests"; this read itself counts as one).
origin_count() { curl -s -m 2 "http://127.0.0.1:$OPORT/status" | awk 'NR == 3 { print $3 }'; }

gen_cache_origin_conf
start_server origin "$TMPD/origin/stdout.log" nginx -c "$TMPD/origin/nginx.conf"
ORIGIN_PID=$SERVER_PID
wait_http "http://127.0.0.1:$OPORT/health" 5 || { tail "$TMPD/origin/error.log" >&2; die "origin nginx did not start"; }
[ "$(curl -s "http://127.0.0.1:$OPORT/h/l/3" | wc -c)" = $((LARGE_KB * 1024)) ] || die "origin /h/l/3 is not $LARGE_KB KiB"
[ "$(curl -s "http://127.0.0.1:$OPORT/z/7/${MAX_KB}k" | wc -c)" = $((MAX_KB * 1024)) ] || die "origin /z/7/${MAX_KB}k is not $MAX_KB KiB"
a=$(origin_count); b=$(origin_count)
[ "$((b - a))" = 1 ] || die "origin stub_status counter does not behave as expected ($a then $b)"
: >"$TMPD/origin/zipf.log"

# ---------------------------------------------------------------- the three caches

# gen_gh_conf DIR PORT MEM N: gatehouse with its cache (one store of MEM, caching on for the route).
gen_gh_conf() {
    local d=$1 port=$2 mem=$3 n=$4
    {
        echo "workers: $n"
        echo "access_log: off"
        [ "$GH_CACHE_CONF" = 1 ] && echo "cache: {memory: $mem}"
        echo "admin: {listen: \"127.0.0.1:$APORT\"}"
        echo "listeners:"
        echo "  - {name: http, listen: \"127.0.0.1:$port\"}"
        echo "upstreams:"
        echo "  origin:"
        echo "    backends: [\"127.0.0.1:$OPORT\"]"
        echo "    keepalive: 1024"
        echo "tenants:"
        echo "  - name: bench"
        echo "    sites:"
        echo "      - hosts: [\"*\"]"
        echo "        routes:"
        echo "          - name: all"
        echo "            upstream: origin"
        [ "$GH_CACHE_CONF" = 1 ] && echo "            cache: {enabled: true}"
    } >"$d/gatehouse.yaml"
    echo "$d/gatehouse.yaml"
}

# gen_nginx_conf DIR PORT MEM N CACHEDIR: nginx proxy_cache (proxy settings of bench/proxy.sh, plus the
# cache: max_size MEM on tmpfs, keys in a NGINX_KEYS_ZONE shared zone, proxy_cache_lock so concurrent
# misses of one URL make one origin request as in Varnish and gatehouse, sendfile on as in Debian's
# default nginx.conf: a hit is a file on tmpfs).
gen_nginx_conf() {
    local d=$1 port=$2 mem=$3 n=$4 cdir=$5
    cat >"$d/nginx.conf" <<EOF
worker_processes $n;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    proxy_cache_path $cdir levels=1:2 keys_zone=c:$NGINX_KEYS_ZONE max_size=$mem inactive=1d use_temp_path=off;
    upstream o {
        server 127.0.0.1:$OPORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            proxy_pass http://o;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
        }
    }
}
EOF
    echo "$d/nginx.conf"
}

# start_cache SYSTEM N MEM TAG: a fresh, empty cache in front of the origin, on core SERVER_CPU; sets
# SERVER_PID and SYS_DIR (config, logs; Varnish's work dir; nginx's cache dir is $NCD/TAG);
# probes /health (which reaches the origin once). 1 if it did not come up.
start_cache() {
    local sys=$1 n=$2 mem=$3 tag=$4 port=${PORT_OF[$1]} d conf args i
    d=$TMPD/$sys-$tag
    rm -rf "$d"; mkdir -p "$d"; chmod 755 "$d"
    SYS_DIR=$d
    case $sys in
    gatehouse)
        conf=$(gen_gh_conf "$d" "$port" "$mem" "$n")
        args=${GATEHOUSE_ARGS//\{conf\}/$conf}
        # shellcheck disable=SC2086
        start_server gatehouse "$d/stdout.log" "$GH_BIN_COPY" $args
        ;;
    varnish)
        start_server varnish "$d/stdout.log" varnishd -F -j none -T none -n "$d/vwork" \
            -a "127.0.0.1:$port" -b "127.0.0.1:$OPORT" -s "malloc,$mem" -p thread_pools=1
        ;;
    nginx)
        rm -rf "${NCD:?}/$tag"
        conf=$(gen_nginx_conf "$d" "$port" "$mem" "$n" "$NCD/$tag")
        start_server nginx "$d/stdout.log" nginx -c "$conf"
        ;;
    esac
    if ! wait_http "http://127.0.0.1:$port/health" 10; then
        log "$sys did not answer 200 on 127.0.0.1:$port/health within 10 s; its output:"
        tail -n 20 "$d/stdout.log" >&2
        [ -f "$d/error.log" ] && tail -n 20 "$d/error.log" >&2
        stop_system "$SERVER_PID"
        return 1
    fi
    return 0
}

# used_bytes SYSTEM TAG: bytes the cache holds by its own account (gatehouse: admin GET /cache "used";
# Varnish: SMA.s0.g_bytes of the malloc store; nginx: disk usage of its cache dir on tmpfs, what
# max_size is compared with). "" if unknown.
used_bytes() {
    case $1 in
    gatehouse) curl -s -m 1 "http://127.0.0.1:$APORT/cache" 2>/dev/null | grep -o '"used": *[0-9]*' | grep -o '[0-9]*$' ;;
    varnish) varnishstat -n "$SYS_DIR/vwork" -1 -f SMA.s0.g_bytes 2>/dev/null | awk '{ print $2 }' ;;
    nginx) du -s -B1 "$NCD/$2" 2>/dev/null | cut -f1 ;;
    esac
}

# cache_notes SYSTEM TAG: the system's own counters after a run, one short line.
cache_notes() {
    case $1 in
    gatehouse)
        curl -s -m 1 "http://127.0.0.1:$APORT/metrics" 2>/dev/null |
            awk '/^gatehouse_cache_(requests_total|objects|evictions_total)/ {
                    k = $1; sub(/^gatehouse_cache_/, "", k)
                    if (k ~ /result="/) { sub(/.*result="/, "", k); sub(/".*/, "", k) } else sub(/\{.*/, "", k)
                    if (k in v) v[k] += $2; else { v[k] = $2; o[++n] = k } }
                 END { for (i = 1; i <= n; i++) s = s (i > 1 ? " " : "") o[i] "=" v[o[i]]; print (n ? s : "no cache metrics") }' ;;
    varnish)
        varnishstat -n "$SYS_DIR/vwork" -1 -f MAIN.cache_hit -f MAIN.cache_miss -f MAIN.cache_hitpass -f MAIN.n_object \
            -f MAIN.n_lru_nuked -f MAIN.busy_sleep -f SMA.s0.c_fail -f SMA.Transient.g_bytes 2>/dev/null |
            awk '{ k = $1; sub(/^(MAIN|SMA)\./, "", k); s = s (s ? " " : "") k "=" $2 } END { print s }' ;;
    nginx) echo "files=$(find "$NCD/$2" -type f 2>/dev/null | wc -l)" ;;
    esac
}

# ---------------------------------------------------------------- measurement helpers

# client_hot DURATION PORT PREFIX OUT [ARGS...]: the CLIENT on the client core over the hot set
# PREFIX0..PREFIX(HOT-1), its summary (wrk's format either way) into OUT. ARGS are wrk's (--latency);
# hitload always prints the latency distribution.
client_hot() {
    local d=$1 port=$2 prefix=$3 out=$4; shift 4
    if [ "$CLIENT" = hitload ]; then
        taskset -c "$CLIENT_CPU" "$HITLOAD" -c "$CONNS" -d "$d" -H "127.0.0.1:$port" -p "$prefix" -n "$HOT" \
            >"$out" 2>&1 </dev/null &
    else
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${d}s" "$@" -s "$HERE/cache/hot.lua" \
            "http://127.0.0.1:$port" -- "$prefix" "$HOT" >"$out" 2>&1 </dev/null &
    fi
    local w=$!
    STARTED_PIDS+=("$w")
    wait "$w"
    forget_pid "$w"
}

# warm SYSTEM PORT SHOW: fetch every hot URL once (fills the cache), then once more checking status and
# size; with SHOW=1 logs the cache headers of the second answer of /h/s/0.
warm() {
    local sys=$1 port=$2 show=$3 p k want got bad=0
    for p in s l; do
        for ((k = 0; k < HOT; k++)); do curl -s -o /dev/null "http://127.0.0.1:$port/h/$p/$k"; done
    done
    for p in s l; do
        want=$((SMALL_KB * 1024)); [ $p = l ] && want=$((LARGE_KB * 1024))
        for ((k = 0; k < HOT; k++)); do
            got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/h/$p/$k")
            [ "$got" = "200 $want" ] || { bad=$((bad + 1)); [ $bad = 1 ] && log "$sys: /h/$p/$k answered '$got' (want '200 $want')"; }
        done
    done
    [ "$bad" -gt 0 ] && log "$sys: $bad hot URLs answered wrongly after the warm-up"
    if [ "$show" = 1 ]; then
        local h
        h=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/h/s/0" |
            grep -iE '^(cache-status|age|x-varnish|x-cache|via):' | tr -d '\r' | paste -sd '|' - | sed 's/|/ | /g')
        log "$sys, 2nd fetch of /h/s/0: ${h:-(no cache headers)}"
    fi
}

# core_all_busy BEFORE AFTER: "server% client%": the two cores' busy share counting everything but
# idle and iowait, from two snapshots of the cpuN lines of /proc/stat. core_busy (lib.sh) counts
# user+nice+system only; the loopback's TCP receive work runs as softirq on the sending core (for the
# responses: the server core), is charged to no process, and is left out there. A core is saturated
# when this figure is near 100 %.
core_all_busy() {
    awk -v A="$1" -v B="$2" -v sc="cpu$SERVER_CPU" -v cc="cpu$CLIENT_CPU" 'BEGIN {
        n = split(A, la, "\n"); split(B, lb, "\n");
        for (i = 1; i <= n; i++) { split(la[i], x, " "); split(lb[i], y, " "); t = 0
            for (j = 2; j <= 9; j++) t += y[j] - x[j]
            idle = (y[5] - x[5]) + (y[6] - x[6]); b[x[1]] = t > 0 ? 100 * (t - idle) / t : 0 }
        printf "%.0f %.0f\n", b[sc], b[cc] }'
}

# run_hit SYSTEM N SIZE ROUND PID: one measured run on the hot set of SIZE (small|large).
run_hit() {
    local sys=$1 n=$2 size=$3 round=$4 pid=$5 port=${PORT_OF[$1]} prefix=/h/s/
    [ "$size" = large ] && prefix=/h/l/
    local out=$TMPD/$CLIENT-hit-$sys-$n-$size-$round.txt
    local attempt tp0 tp1 to0 to1 pp0 pp1 po0 po1 r0 r1 c0 c1 a0 a1 s0 s1 o0 o1 b0 b1 x0 x1 orq
    local req rps p50 p99 ec er ew et st pus cus err
    for ((attempt = 1; attempt <= 1 + NOISY_RETRIES; attempt++)); do
        client_hot 1 "$port" "$prefix" "$TMPD/warmup.txt"
        calm_down
        [ "$WAITED" = 1 ] && client_hot 1 "$port" "$prefix" "$TMPD/warmup.txt"
        read -r tp0 pp0 <<<"$(tree_ticks "$pid")"; read -r to0 po0 <<<"$(tree_ticks "$ORIGIN_PID")"
        r0=$(origin_count); c0=$(cpu_cores); a0=$(grep '^cpu[0-9]' /proc/stat); s0=$(self_ticks)
        client_hot "$DURATION" "$port" "$prefix" "$out" --latency
        s1=$(self_ticks); a1=$(grep '^cpu[0-9]' /proc/stat); c1=$(cpu_cores); r1=$(origin_count)
        read -r tp1 pp1 <<<"$(tree_ticks "$pid")"; read -r to1 po1 <<<"$(tree_ticks "$ORIGIN_PID")"
        orq=$((r1 - r0 - 1))
        read -r o0 o1 _ <<<"$(other_load "$c0" "$c1" $((tp1 - tp0 + to1 - to0)) $((s1 - s0)))"
        read -r b0 b1 <<<"$(core_busy "$c0" "$c1")"
        read -r x0 x1 <<<"$(core_all_busy "$a0" "$a1")"
        [ "$pp0" != "$pp1" ] || [ "$po0" != "$po1" ] && FLAG="$FLAG,PIDS_CHANGED"
        kill -0 "$pid" 2>/dev/null || FLAG="$FLAG,DIED"
        if [ "$o0" -gt "$OTHER_MAX" ] || [ "$o1" -gt "$OTHER_MAX" ]; then
            FLAG="$FLAG,NOISY"
            if [ "$attempt" -le "$NOISY_RETRIES" ] && [ "$NOISE_SPENT" -lt "$NOISE_BUDGET" ] && [[ $FLAG != *DIED* ]]; then
                NOISE_SPENT=$((NOISE_SPENT + DURATION + 3))
                log "other processes used ${o0}% of core $SERVER_CPU / ${o1}% of core $CLIENT_CPU during $sys/$size run $round (> $OTHER_MAX%): repeating it"
                sleep 2
                continue
            fi
        fi
        break
    done
    read -r req rps p50 p99 ec er ew et st _ <<<"$(parse_wrk_full "$out")"
    err=$((ec + er + ew + et + st))
    if [ "${req:-0}" -gt 0 ]; then
        pus=$(awk -v t=$((tp1 - tp0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
        # the client's CPU per request: this script's reaped children over the measured run (the client only)
        cus=$(awk -v t=$((s1 - s0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", t * 1e6 / k / r }')
    else
        pus=nan; cus=nan; FLAG="$FLAG,FAILED"; log "$CLIENT got no responses from $sys:"; cat "$out" >&2
    fi
    [ "$err" -gt 0 ] && FLAG="$FLAG,ERR"
    [ "$orq" -gt 0 ] && FLAG="$FLAG,MISSES"
    FLAG=${FLAG#ok,}
    read -r -a bb <<<"$BUSY"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$sys" "$size" "$round" \
        "$req" "$rps" "$p50" "$p99" "$pus" "$orq" "$err" "${bb[0]}" "$b0" "$b1" "$o0" "$o1" "$attempt" "$FLAG" "$CLIENT" "$cus" "$x0" "$x1" >>"$HIT_TSV"
    printf '  N=%s %-9s %-5s run %s: %8.0f req/s  p50 %7.3f ms  p99 %7.3f ms  proxy %6s us/req  %s %6s us/req  origin requests %s  core0/1 busy %s/%s%% (with softirq %s/%s%%)  other %s/%s%% %s\n' \
        "$n" "$sys" "$size" "$round" "$rps" "$p50" "$p99" "$pus" "$CLIENT" "$cus" "$orq" "$b0" "$b1" "$x0" "$x1" "$o0" "$o1" \
        "$([ "$FLAG" = ok ] || echo "[$FLAG]")" >&2
}

# run_zipf SYSTEM N ROUND PID TAG: the whole Zipf sequence once through a fresh cache.
run_zipf() {
    local sys=$1 n=$2 round=$3 pid=$4 tag=$5 port=${PORT_OF[$1]}
    local out=$TMPD/wrk-zipf-$sys-$n-$round.txt marker=$TMPD/zipf-done-$sys-$n-$round samples=$TMPD/used-$sys-$n-$round
    local tp0 tp1 r0 r1 c0 c1 b0 b1 t0 t1 w sp lg ob req rps p50 p99 ec er ew et st err used avg peak rss notes pus orq secs sent
    rm -f "$marker"; : >"$samples"
    calm_down
    : >"$TMPD/origin/zipf.log"
    read -r tp0 _ <<<"$(tree_ticks "$pid")"
    r0=$(origin_count); c0=$(cpu_cores); t0=$(date +%s.%N)
    # Sampler of the bytes the cache holds (1 per second, on the client core): average and peak show
    # whether the cap held during the run (nginx enforces max_size from its cache manager process,
    # which looks at the size at most every 10 s, and then deletes files until it is under it).
    (while :; do used_bytes "$sys" "$tag" >>"$samples"; sleep 1; done) &
    sp=$!; STARTED_PIDS+=("$sp")
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$ZIPF_CONNS" -d"${ZIPF_MAX_TIME}s" --latency -s "$HERE/cache/zipf.lua" \
        "http://127.0.0.1:$port" -- "$PATHS_FILE" "$marker" >"$out" 2>&1 </dev/null &
    w=$!; STARTED_PIDS+=("$w")
    while kill -0 "$w" 2>/dev/null && [ ! -e "$marker" ]; do sleep 0.1; done
    kill -INT "$w" 2>/dev/null
    wait "$w"; forget_pid "$w"
    t1=$(date +%s.%N)
    sleep 0.5   # let fetches still in flight for requests wrk abandoned at its stop reach the origin's counters
    c1=$(cpu_cores); r1=$(origin_count)
    read -r tp1 _ <<<"$(tree_ticks "$pid")"
    stop_pid "$sp"; forget_pid "$sp"
    used=$(used_bytes "$sys" "$tag")
    read -r avg peak <<<"$(awk '$1 ~ /^[0-9]+$/ { n++; s += $1; if ($1 + 0 > m) m = $1 + 0 }
        END { if (n) printf "%.0f %.0f\n", s / n, m; else print "- -" }' "$samples")"
    [ "$avg" = - ] && avg="" && peak=""
    rss=$(tree_rss_kb "$pid")
    notes=$(cache_notes "$sys" "$tag")
    kill -0 "$pid" 2>/dev/null || FLAG="$FLAG,DIED"
    [ -e "$marker" ] || FLAG="$FLAG,INCOMPLETE"
    [ -n "$peak" ] && [ "$peak" -gt $((ZIPF_MEM_B + ZIPF_MEM_B / 10)) ] && FLAG="$FLAG,OVER_CAP"
    orq=$((r1 - r0 - 1))
    read -r lg ob <<<"$(awk '{ n++; b += $1 } END { printf "%d %.0f\n", n, b }' "$TMPD/origin/zipf.log")"
    read -r b0 b1 <<<"$(core_busy "$c0" "$c1")"
    read -r req rps p50 p99 ec er ew et st _ <<<"$(parse_wrk_full "$out")"
    sent=$(sed -n 's/^ZIPF sent=\([0-9]*\).*/\1/p' "$out"); sent=${sent:-$req}
    err=$((ec + er + ew + et + st))
    [ "$err" -gt 0 ] && FLAG="$FLAG,ERR"
    FLAG=${FLAG#ok,}
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    pus=$(awk -v t=$((tp1 - tp0)) -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.2f", r ? t * 1e6 / k / r : 0 }')
    read -r -a bb <<<"$BUSY"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$sys" "$round" \
        "$sent" "$req" "$orq" "$lg" "$ob" "$err" "$secs" "$rps" "$p99" "$pus" "${used:-}" "$avg" "$peak" "$rss" "${bb[0]}" "$b0" "$FLAG" "$notes" >>"$ZIPF_TSV"
    log "  N=$n $sys zipf: $sent requests sent ($req completed) in ${secs}s, $orq reached the origin ($lg logged, $ob body bytes): hit ratio $(awk -v o="$orq" -v r="$sent" 'BEGIN { printf "%.4f", r ? 1 - o / r : 0 }'); errors $err; cache holds ${used:-?} B (avg ${avg:-?}, peak ${peak:-?}), RSS ${rss} kB; $notes $([ "$FLAG" = ok ] || echo "[$FLAG]")"
}

# ---------------------------------------------------------------- systems

ACTIVE=()
for s in $SYSTEMS; do
    case $s in
    gatehouse)
        if ! gatehouse_available; then
            log "SKIP gatehouse: $GATEHOUSE_BIN not found/executable (build it with make, or set GATEHOUSE_BIN): its rows are 'pending'"
            continue
        fi ;;
    varnish | nginx) ;;
    *) die "unknown system $s (gatehouse, varnish, nginx)" ;;
    esac
    ACTIVE+=("$s")
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no system to measure"
[ "$GH_CACHE_CONF" = 1 ] || log "GH_CACHE_CONF=0: gatehouse runs WITHOUT its cache sections (plain proxying): its figures are not cache figures"

# hit_client_desc: the hit part's client command, for the log and the report.
hit_client_desc() {
    if [ "$CLIENT" = hitload ]; then echo "hitload -c$CONNS -d$DURATION (body dropped with MSG_TRUNC)"
    else echo "wrk -t1 -c$CONNS -d${DURATION}s --latency -s cache/hot.lua"; fi
}

# order ROUND: ACTIVE rotated by ROUND-1 (every system is first, middle and last in turn).
order() {
    local r=$1 i
    ORDER=()
    for ((i = 0; i < ${#ACTIVE[@]}; i++)); do ORDER+=("${ACTIVE[$(((i + r - 1) % ${#ACTIVE[@]}))]}"); done
}

nw=$(wc -w <<<"$WORKERS")
est=0
[[ " $PARTS " == *" hit "* ]] && est=$((est + RUNS * nw * ${#ACTIVE[@]} * (2 * (DURATION + 3) + 4)))
[[ " $PARTS " == *" zipf "* ]] && est=$((est + ZIPF_RUNS * nw * ${#ACTIVE[@]} * (REQUESTS / 6000 + 5)))
log "systems: ${ACTIVE[*]}; workers: $WORKERS; parts: $PARTS; ~$((est / 60 + 1)) min"

# ---------------------------------------------------------------- part 1: cache-hit throughput

if [[ " $PARTS " == *" hit "* ]]; then
    log "part hit: $HOT hot URLs of $SMALL_KB KiB and $HOT of $LARGE_KB KiB; cache size $HIT_MEM; $RUNS rounds of $(hit_client_desc)"
    for n in $WORKERS; do
        for ((r = 1; r <= RUNS; r++)); do
            order "$r"
            for sys in "${ORDER[@]}"; do
                if ! start_cache "$sys" "$n" "$HIT_MEM" "hit-$n-$r"; then
                    log "$sys N=$n did not start; no figures for it in round $r"
                    continue
                fi
                pid=$SERVER_PID
                [ "$r" = 1 ] && log "$sys N=$n up: $(tree_tasks "$pid")"
                warm "$sys" "${PORT_OF[$sys]}" "$([ "$r" = 1 ] && echo 1 || echo 0)"
                for size in small large; do run_hit "$sys" "$n" "$size" "$r" "$pid"; done
                stop_system "$pid"
            done
        done
    done
fi

# ---------------------------------------------------------------- part 2: hit ratio, Zipf, memory cap

PATHS_FILE=$TMPD/zipf-paths.txt
REF_FILE=$TMPD/zipf-ref.txt
: >"$REF_FILE"
if [[ " $PARTS " == *" zipf "* ]]; then
    /usr/bin/python3 "$HERE/cache/zipf.py" "$PATHS_FILE" "$OBJECTS" "$REQUESTS" "$ZIPF_S" "$ZIPF_SEED" \
        "$MIN_KB" "$MAX_KB" "$ZIPF_MEM_B" >"$REF_FILE" || die "zipf.py failed"
    log "part zipf: $REQUESTS requests over $OBJECTS objects of $MIN_KB-$MAX_KB KiB, Zipf s=$ZIPF_S, seed $ZIPF_SEED (sequence sha256 $(sha256sum "$PATHS_FILE" | cut -c1-16)); cap $ZIPF_MEM; $ZIPF_CONNS connections"
    log "  reference: $(paste -sd ' ' "$REF_FILE")"
    for n in $WORKERS; do
        for ((r = 1; r <= ZIPF_RUNS; r++)); do
            order "$r"
            for sys in "${ORDER[@]}"; do
                if ! start_cache "$sys" "$n" "$ZIPF_MEM" "zipf-$n-$r"; then
                    log "$sys N=$n did not start; no hit ratio for it in round $r"
                    continue
                fi
                run_zipf "$sys" "$n" "$r" "$SERVER_PID" "zipf-$n-$r"
                stop_system "$SERVER_PID"
                rm -rf "${NCD:?}/zipf-$n-$r"
            done
        done
    done
fi

# ---------------------------------------------------------------- report

log "spent ${NOISE_SPENT}s of the ${NOISE_BUDGET}s noise budget on waits and repeats; total $(($(date +%s) - T_START))s"
cp "$HIT_TSV" "$OUTDIR/cache-hit-raw-$STAMP.tsv"
cp "$ZIPF_TSV" "$OUTDIR/cache-zipf-raw-$STAMP.tsv"
MD=$OUTDIR/cache-$STAMP.md
{
    echo "# gatehouse cache benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    echo "command: $CMDLINE"
    machine
    echo "method: origin nginx and the cache under test pinned to core $SERVER_CPU, the client ($CLIENT in the hit part, wrk in the zipf part) to core $CLIENT_CPU; one cache at a time, fresh for every run"
    echo "hit part: $HOT hot URLs per size, warmed, then $(hit_client_desc) (after a 1 s warm-up); median of $RUNS rounds, system order rotating; cache size $HIT_MEM"
    echo "zipf part: $REQUESTS requests, $OBJECTS objects of $MIN_KB-$MAX_KB KiB, Zipf s=$ZIPF_S seed $ZIPF_SEED, cap $ZIPF_MEM each (nginx: max_size on tmpfs $NGINX_CACHE_ROOT, keys_zone $NGINX_KEYS_ZONE), wrk -c$ZIPF_CONNS"
    echo "gatehouse: workers N, cache.memory; varnish: -s malloc,MEM -p thread_pools=1 (defaults otherwise), built-in VCL; nginx: worker_processes N, proxy_cache_path max_size=MEM, proxy_cache_lock on, sendfile on"
    [ "$GH_CACHE_CONF" = 1 ] || echo "NOTE: GH_CACHE_CONF=0: gatehouse ran without its cache sections (plain proxy)"
    echo '```'
    echo
    /usr/bin/python3 "$HERE/cache/report.py" "$HIT_TSV" "$ZIPF_TSV" "$REF_FILE" "$PATHS_FILE" "$SMALL_KB" "$LARGE_KB"
} >"$MD"
echo
cat "$MD"
echo
echo "markdown: $MD"
echo "raw runs: $OUTDIR/cache-hit-raw-$STAMP.tsv $OUTDIR/cache-zipf-raw-$STAMP.tsv"
