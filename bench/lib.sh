# bench/lib.sh: shared helpers for bench/proxy.sh and bench/idle_conns.sh (sourced, not run).
#
# Owns: the temp dir, the list of started PIDs and their cleanup (trap), free-port selection,
# config generation for the origin (nginx) and the three proxies (gatehouse, nginx, HAProxy),
# start/probe/stop of one server, and /proc readings (CPU ticks and RSS of a process tree,
# machine busy-ness from /proc/stat). Everything started here is stopped by PID on exit.

set -u -o pipefail

GH_ROOT=${GH_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-$GH_ROOT/build/gatehouse}
# How gatehouse is started; {conf} is replaced by the generated config path.
GATEHOUSE_ARGS=${GATEHOUSE_ARGS:-run -c {conf}}
CLK_TCK=$(getconf CLK_TCK)
SERVER_CPU=${SERVER_CPU:-0}   # origin + proxy under test
CLIENT_CPU=${CLIENT_CPU:-1}   # wrk / idle client / this script

BODY_SMALL=$(printf 'gatehouse-bench-%084d' 0)   # exactly 100 bytes
[ ${#BODY_SMALL} -eq 100 ] || { echo "internal: small body is ${#BODY_SMALL} bytes" >&2; exit 1; }

declare -a STARTED_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- temp dir, cleanup

bench_init() {
    TMPD=$(mktemp -d /tmp/gh-bench.XXXXXX) || die "mktemp failed"
    # nginx workers run as 'nobody' when started by root: they must read the static file.
    chmod 755 "$TMPD"
    trap bench_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
    # Keep this script (and what it starts without taskset, e.g. wrk's parent) off the server core.
    taskset -cp "$CLIENT_CPU" $$ >/dev/null 2>&1 || true
    raise_nofile
}

raise_nofile() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    NOFILE=$(ulimit -n)
}

# All descendants of PID (not PID itself). From ps, which copes with processes that vanish while
# it reads /proc (awk over /proc/*/stat does not: mawk aborts on the first file it cannot open).
descendants() {
    ps -e -o pid= -o ppid= 2>/dev/null | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            n = 1; q[1] = root; out = "";
            for (i = 1; i <= n; i++)
                for (p in parent) if (parent[p] == q[i]) { q[++n] = p; out = out p " " }
            print out
        }'
}

stop_pid() {   # stop_pid PID: TERM, wait up to 5 s, then KILL it and any descendants left
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; fi
    for i in $kids; do kill -KILL "$i" 2>/dev/null; done
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local p keep=()
    for p in "${STARTED_PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
    STARTED_PIDS=("${keep[@]+"${keep[@]}"}")
}

bench_cleanup() {
    local p
    for p in "${STARTED_PIDS[@]+"${STARTED_PIDS[@]}"}"; do stop_pid "$p"; done
    STARTED_PIDS=()
    if [ -n "${TMPD:-}" ] && [ -d "$TMPD" ]; then
        if [ -n "${KEEP_TMP:-}" ]; then log "kept temp dir $TMPD"; else rm -rf "$TMPD"; fi
    fi
}

# ---------------------------------------------------------------- ports

port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }

# pick_ports K: sets PORTS=(K consecutive free ports) below the ephemeral range.
pick_ports() {
    local k=$1 try base i ok
    for try in $(seq 50); do
        base=$((20000 + (RANDOM % 1200) * 10))
        ok=1
        for ((i = 0; i < k; i++)); do port_free $((base + i)) || { ok=0; break; }; done
        if [ $ok = 1 ]; then PORTS=(); for ((i = 0; i < k; i++)); do PORTS+=($((base + i))); done; return 0; fi
    done
    die "no free port range found"
}

# ---------------------------------------------------------------- /proc readings

# tree_ticks PID: "TICKS PIDLIST": CPU ticks of PID and all its descendants: utime+stime (all
# threads) plus cutime+cstime (children already reaped, e.g. an nginx worker that was respawned),
# and the comma-separated PIDs counted (to notice a tree that changed during a run).
tree_ticks() {
    local root=$1 p sum=0 line f pids=""
    for p in "$root" $(descendants "$root"); do
        line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        line=${line##*) }
        read -r -a f <<<"$line"
        # after "pid (comm) ": f[0] is field 3 (state); utime (14) = f[11], stime f[12], cutime f[13], cstime f[14]
        sum=$((sum + f[11] + f[12] + f[13] + f[14]))
        pids="$pids${pids:+,}$p"
    done
    echo "$sum $pids"
}

# tree_sum_kb ROOT FILE FIELD: sum of FIELD (kB) in /proc/PID/FILE over ROOT and its descendants.
tree_sum_kb() {
    local root=$1 file=$2 field=$3 p sum=0 v
    for p in "$root" $(descendants "$root"); do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/$file" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# Sum of VmRSS (kB) of PID and all its descendants.
tree_rss_kb() { tree_sum_kb "$1" status VmRSS; }

# Sum of Pss (kB) from smaps_rollup over the tree (shared pages split between processes).
tree_pss_kb() { tree_sum_kb "$1" smaps_rollup Pss; }

# busy_sample SECONDS: prints "total cpu0 cpu1" busy percentages over the interval.
busy_sample() {
    local a b
    a=$(grep '^cpu' /proc/stat)
    sleep "$1"
    b=$(grep '^cpu' /proc/stat)
    awk -v A="$a" -v B="$b" 'BEGIN {
        na = split(A, la, "\n"); split(B, lb, "\n");
        for (i = 1; i <= na; i++) {
            split(la[i], x, " "); split(lb[i], y, " ");
            tot = 0; idle = 0;
            for (j = 2; j <= 9; j++) tot += y[j] - x[j];      # user..steal
            idle = (y[5] - x[5]) + (y[6] - x[6]);              # idle + iowait
            out = out sprintf("%s%.0f", (i > 1 ? " " : ""), tot > 0 ? 100 * (tot - idle) / tot : 0)
        }
        print out }'
}

# self_ticks: utime+stime+cutime+cstime of this script: wrk (or the engines) and every helper it has
# run and reaped. All of it runs on the client core (bench_init moved the script there), so the
# difference over a run is the client core's own use; the rest is other load.
self_ticks() {
    local l f
    l=$(cat "/proc/$$/stat") || { echo 0; return; }
    l=${l##*) }
    read -r -a f <<<"$l"
    echo $((f[11] + f[12] + f[13] + f[14]))
}

# core_busy BEFORE AFTER: "core0% core1%" busy over the interval (from cpu_cores snapshots).
core_busy() {
    awk -v A="$1" -v B="$2" 'BEGIN { n = split(A, la, "\n"); split(B, lb, "\n");
        for (i = 1; i <= n; i++) { split(la[i], x, " "); split(lb[i], y, " ");
            t = y[4] - x[4]; out = out (i > 1 ? " " : "") sprintf("%.0f", t ? 100 * (y[2] - x[2]) / t : 0) }
        print out }'
}

# calm_down: busy check before a run: waits (up to BUSY_WAIT, within NOISE_BUDGET) while the machine
# (both cores together) is over BUSY_MAX % busy. Sets BUSY (the last sample: "total cpu0 cpu1"), FLAG
# (ok or BUSY) and WAITED (1 if it waited: the caller warms up again).
calm_down() {
    local waited=0
    FLAG=ok WAITED=0
    while :; do
        BUSY=$(busy_sample 0.5)
        [ "${BUSY%% *}" -le "$BUSY_MAX" ] && break
        if [ "$waited" -ge "$BUSY_WAIT" ] || [ "$NOISE_SPENT" -ge "$NOISE_BUDGET" ]; then FLAG=BUSY; break; fi
        [ "$waited" = 0 ] && log "machine busy (${BUSY%% *}% > $BUSY_MAX%: cpu0/cpu1 ${BUSY#* }); waiting up to ${BUSY_WAIT}s"
        sleep 2; waited=$((waited + 2)); NOISE_SPENT=$((NOISE_SPENT + 2)); WAITED=1
    done
}

# ---------------------------------------------------------------- configs

# origin_nginx_conf DIR PORT HTTP_EXTRA SERVER_BODY: the origin nginx's configuration (one worker,
# keep-alive without limit, sendfile, temp paths in DIR) into DIR/nginx.conf; HTTP_EXTRA goes into the
# http block, SERVER_BODY into the server block after its listen line.
origin_nginx_conf() {
    local d=$1 port=$2 extra=$3 body=$4
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log notice;
events { worker_connections $((NOFILE > 20000 ? 20000 : NOFILE)); }
http {
    access_log off;
$extra
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    server {
        listen 127.0.0.1:$port backlog=4096;
$body
    }
}
EOF
}

gen_origin_conf() {   # gen_origin_conf PORT
    local d=$TMPD/origin
    mkdir -p "$d/www"
    head -c 65536 /dev/urandom >"$d/www/big"
    chmod -R a+rX "$d"
    origin_nginx_conf "$d" "$1" "" "        location = /small { default_type text/plain; return 200 \"$BODY_SMALL\"; }
        location = /big { root $d/www; }"
}

# gen_proxy_conf SYSTEM WORKERS PORT ORIGIN_PORT MODE(bench|idle): prints config path.
gen_proxy_conf() {
    local sys=$1 n=$2 port=$3 oport=$4 mode=$5 d f wc maxconn
    d=$TMPD/$sys-$mode-$n
    mkdir -p "$d"
    chmod 755 "$d"
    if [ "$mode" = idle ]; then wc=$((NOFILE > 20000 ? 20000 : NOFILE)); maxconn=$wc; else wc=4096; maxconn=4096; fi
    case $sys in
    gatehouse)
        f=$d/gatehouse.yaml
        cat >"$f" <<EOF
workers: $n
access_log: off
listeners:
  - {name: http, listen: "127.0.0.1:$port"}
upstreams:
  origin:
    backends: ["127.0.0.1:$oport"]
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
worker_processes $n;
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
        server 127.0.0.1:$oport;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
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
    nbthread $n
    maxconn $maxconn
    pidfile $d/haproxy.pid$( [ "$NOFILE" -lt $((2 * maxconn + 100)) ] && printf '\n    # the fd hard limit (%s) is below 2*maxconn: run with it (idle conns need 1 fd each)\n    no strict-limits' "$NOFILE")

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
    bind 127.0.0.1:$port backlog 4096
    default_backend be

backend be
    server o 127.0.0.1:$oport
EOF
        ;;
    *) die "unknown system $sys" ;;
    esac
    echo "$f"
}

# ---------------------------------------------------------------- start / probe

# wait_http URL TIMEOUT_S: 0 once URL answers 200.
wait_http() {
    local url=$1 t=$2 i
    for ((i = 0; i < t * 10; i++)); do
        [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}

# start_server NAME LOGFILE CMD...: starts CMD on SERVER_CPU, sets SERVER_PID.
start_server() {
    local name=$1 logf=$2; shift 2
    taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 </dev/null &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
}

# gatehouse_available: 0 if $GATEHOUSE_BIN is executable. The first time, it is copied into the temp
# dir (so a rebuild by someone else during the run does not mix two builds) and its sha256 noted.
gatehouse_available() {
    if [ -z "${GH_BIN_COPY:-}" ]; then
        [ -x "$GATEHOUSE_BIN" ] || return 1
        GH_BIN_SRC=$GATEHOUSE_BIN
        GH_BIN_SHA=$(sha256sum "$GATEHOUSE_BIN" | cut -c1-16)
        GH_BIN_DATE=$(date -r "$GATEHOUSE_BIN" '+%Y-%m-%d %H:%M')
        GH_BIN_COPY=$TMPD/gatehouse-bin
        cp "$GATEHOUSE_BIN" "$GH_BIN_COPY" && chmod 755 "$GH_BIN_COPY" || return 1
    fi
    [ -x "$GH_BIN_COPY" ]
}

# tree_tasks PID: "P processes, T threads" of the tree (to check that N workers really started).
tree_tasks() {
    local p np=0 nt=0
    for p in "$1" $(descendants "$1"); do
        [ -d "/proc/$p/task" ] || continue
        np=$((np + 1)); nt=$((nt + $(ls "/proc/$p/task" | wc -l)))
    done
    echo "$np processes, $nt threads"
}

# start_system SYSTEM CONF PORT: starts it, probes /small; sets SERVER_PID; 1 if it did not come up.
start_system() {
    local sys=$1 conf=$2 port=$3 d logf args
    d=$(dirname "$conf")
    logf=$d/stdout.log
    case $sys in
    origin | nginx) start_server "$sys" "$logf" nginx -c "$conf" ;;
    haproxy) start_server "$sys" "$logf" haproxy -db -f "$conf" ;;
    gatehouse)
        args=${GATEHOUSE_ARGS//\{conf\}/$conf}
        # shellcheck disable=SC2086
        start_server "$sys" "$logf" "$GH_BIN_COPY" $args
        ;;
    esac
    if ! wait_http "http://127.0.0.1:$port/small" 5; then
        log "$sys did not answer 200 on 127.0.0.1:$port/small within 5 s; its output:"
        tail -n 20 "$logf" >&2
        [ -f "$d/error.log" ] && tail -n 20 "$d/error.log" >&2
        stop_pid "$SERVER_PID"; forget_pid "$SERVER_PID"
        return 1
    fi
    return 0
}

stop_system() { stop_pid "$1"; forget_pid "$1"; }

versions() {
    echo "nproc: $(nproc --all)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: //')"
    echo "kernel: $(uname -r)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "haproxy: $(haproxy -v 2>/dev/null | head -1 | awk '{print $3}')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    if gatehouse_available; then
        echo "gatehouse: $GH_BIN_SRC, sha256 $GH_BIN_SHA, built $GH_BIN_DATE, tree at $(cd "$GH_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo 'no commit') ($("$GH_BIN_COPY" version 2>/dev/null | head -1))"
    fi
}

# ================================================================ additions for bench/upstreams.sh
# (upstream pools of several origins, backend kill under load). Nothing above is changed.

# cpu_cores: "cpuN user+nice+system steal total" for each core, from /proc/stat.
# other_load BEFORE AFTER SERVER_TICKS CLIENT_TICKS: "other_cpu0% other_cpu1% steal%": CPU time on the
# server core not used by the servers, on the client core not used by wrk, and hypervisor steal.
cpu_cores() { awk '/^cpu[0-9]/ { t = 0; for (i = 2; i <= 9; i++) t += $i; print $1, $2 + $3 + $4, $9, t }' /proc/stat; }
other_load() {
    awk -v A="$1" -v B="$2" -v srv="$3" -v wrk="$4" -v sc="cpu$SERVER_CPU" -v cc="cpu$CLIENT_CPU" 'BEGIN {
        n = split(A, la, "\n"); split(B, lb, "\n");
        for (i = 1; i <= n; i++) { split(la[i], x, " "); split(lb[i], y, " ");
            busy[x[1]] = y[2] - x[2]; steal += y[3] - x[3]; tot[x[1]] = y[4] - x[4]; all += y[4] - x[4] }
        o0 = tot[sc] ? 100 * (busy[sc] - srv) / tot[sc] : 0; o1 = tot[cc] ? 100 * (busy[cc] - wrk) / tot[cc] : 0;
        printf "%.0f %.0f %.1f\n", o0 < 0 ? 0 : o0, o1 < 0 ? 0 : o1, all ? 100 * steal / all : 0 }'
}

# tree_pids PID: PID and all its descendants (e.g. an nginx master and its workers), one line.
tree_pids() { echo "$1 $(descendants "$1")"; }

# pids_ticks PIDS...: sets PIDS_TICKS to the sum of utime+stime+cutime+cstime of the given processes,
# with bash builtins only (no fork: cheap enough to call right before a kill).
pids_ticks() {
    local p l f
    PIDS_TICKS=0
    for p in "$@"; do
        read -r l <"/proc/$p/stat" 2>/dev/null || continue
        l=${l##*) }
        read -r -a f <<<"$l"
        PIDS_TICKS=$((PIDS_TICKS + f[11] + f[12] + f[13] + f[14]))
    done
}

# kill_now PIDS...: SIGKILL all of them in one kill(1) builtin call, i.e. within microseconds (kill an
# nginx master and its workers together: a worker outlives its master when only the master dies).
# Reap the ones that are this shell's children with wait afterwards.
kill_now() { kill -KILL "$@" 2>/dev/null; }

# pids_alive PIDS...: prints those still alive (zombies waiting to be reaped count as dead).
pids_alive() {
    local p st out=""
    for p in "$@"; do
        st=$(ps -o stat= -p "$p" 2>/dev/null)
        [ -n "$st" ] && [[ $st != Z* ]] && out="$out${out:+ }$p"
    done
    echo "$out"
}

# gen_pool_origin_conf NAME PORT: an origin nginx that answers every path (/, /health, /p/N...)
# with 200 and the 100-byte body. Prints the config path ($TMPD/NAME/nginx.conf).
gen_pool_origin_conf() {
    local d=$TMPD/$1
    mkdir -p "$d"
    chmod 755 "$d"
    cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log notice;
events { worker_connections $((NOFILE > 20000 ? 20000 : NOFILE)); }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location / { default_type text/plain; return 200 "$BODY_SMALL"; }
    }
}
EOF
    echo "$d/nginx.conf"
}

# gen_pool_proxy_conf SYSTEM DIRNAME PORT BALANCE HEALTH(0|1) ORIGIN_PORT...: a 1-worker proxy in front
# of a pool of origins. BALANCE is gatehouse's (round_robin, least_request, peak_ewma, hash:KEY);
# nginx and HAProxy always use their round-robin. HEALTH=1 adds the failure-scenario settings:
#   gatehouse: health_check {path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
#   HAProxy:   option httpchk GET /health, default-server inter 1s fall 2 rise 2, timeout check 500ms,
#              option redispatch, retries 3, retry-on all-retryable-errors
#   nginx:     proxy_next_upstream error timeout http_502 http_503; max_fails=1 fail_timeout=10s
# With GH_ADMIN_PORT set, gatehouse also gets an admin listener there (for /metrics after a run).
# Prints the config path.
gen_pool_proxy_conf() {
    local sys=$1 name=$2 port=$3 bal=$4 hc=$5 d f p i backends="" key=""
    shift 5
    d=$TMPD/$name
    mkdir -p "$d"
    chmod 755 "$d"
    case $sys in
    gatehouse)
        f=$d/gatehouse.yaml
        for p in "$@"; do backends="$backends${backends:+, }\"127.0.0.1:$p\""; done
        case $bal in hash:*) key=${bal#hash:}; bal=hash ;; esac
        {
            echo "workers: 1"
            echo "access_log: off"
            [ -n "${GH_ADMIN_PORT:-}" ] && echo "admin: {listen: \"127.0.0.1:$GH_ADMIN_PORT\"}"
            echo "listeners:"
            echo "  - {name: http, listen: \"127.0.0.1:$port\"}"
            echo "upstreams:"
            echo "  o:"
            echo "    backends: [$backends]"
            echo "    keepalive: 1024"
            echo "    balance: $bal"
            [ -n "$key" ] && echo "    hash_key: $key"
            [ "$hc" = 1 ] && echo "    health_check: {path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 2}"
            echo "tenants:"
            echo "  - name: bench"
            echo "    sites:"
            echo "      - hosts: [\"*\"]"
            echo "        routes:"
            echo "          - name: all"
            echo "            upstream: o"
        } >"$f"
        ;;
    nginx)
        f=$d/nginx.conf
        for p in "$@"; do
            backends="$backends        server 127.0.0.1:$p$([ "$hc" = 1 ] && echo ' max_fails=1 fail_timeout=10s');
"
        done
        cat >"$f" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
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
$backends        keepalive 1024;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            proxy_pass http://o;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$([ "$hc" = 1 ] && printf '\n            proxy_next_upstream error timeout http_502 http_503;')
        }
    }
}
EOF
        ;;
    haproxy)
        f=$d/haproxy.cfg
        i=0
        for p in "$@"; do
            i=$((i + 1))
            backends="$backends    server s$i 127.0.0.1:$p$([ "$hc" = 1 ] && echo ' check')
"
        done
        cat >"$f" <<EOF
global
    nbthread 1
    maxconn 4096
    pidfile $d/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn 4096
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-request 300s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$port backlog 4096
    default_backend be

backend be
    balance roundrobin
$([ "$hc" = 1 ] && printf '%s\n' '    option httpchk GET /health' '    default-server inter 1s fall 2 rise 2' '    timeout check 500ms' \
    '    option redispatch' '    retries 3' '    retry-on all-retryable-errors')
$backends
EOF
        ;;
    *) die "unknown system $sys" ;;
    esac
    echo "$f"
}

# parse_wrk_full FILE: "requests rps p50_ms p99_ms connect read write timeout status lua_non2xx lua_responses"
# from wrk's summary (--latency) and, if present, the "LUA non2xx=N responses=M" line that
# bench/upstreams.sh's Lua script prints (-1 when absent).
parse_wrk_full() {
    awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        BEGIN { ln = -1; lr = -1 }
        /^ +50% / { p50 = ms($2) }
        /^ +99% / { p99 = ms($2) }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Socket errors:/ { gsub(/,/, ""); c = $4; r = $6; w = $8; t = $10 }
        /Non-2xx or 3xx responses:/ { st = $NF }
        /^LUA non2xx=/ { split($2, a, "="); ln = a[2]; split($3, b, "="); lr = b[2] }
        END { printf "%d %s %.3f %.3f %d %d %d %d %d %d %d\n", req, rps + 0, p50, p99, c, r, w, t, st, ln, lr }' "$1"
}

# overhead_row NAME ROUND TICKS WRK_OUTPUT: one row "name round req/s p99_ms cpu_us_per_req non2xx"
# into $TMPD/res.tsv from wrk's --latency output and the proxy's CPU ticks around it.
overhead_row() {
    local name=$1 round=$2 ticks=$3 out=$4
    awk -v name="$name" -v round="$round" -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" '
        function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 } if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 } if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 } return v + 0 }
        /^ +99% / { p99 = ms($2) }
        / requests in / { req = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s\t%d\t%.0f\t%.3f\t%.2f\t%d\n", name, round, rps, p99, ticks / hz * 1e6 / (req ? req : 1), bad + 0 }' "$out" >>"$TMPD/res.tsv"
}

# Overhead of a feature on the hot path (bench/protect_overhead.sh, bench/obs_overhead.sh): gatehouse
# (1 worker) on core 0 with the origin, wrk on core 1.
# overhead_measure NAME CONF PORT ROUND [wrk args...]: start gatehouse with CONF, 1 s warm-up, then
# wrk -t1 -c$CONNS -d${DURATION}s --latency /small; the proxy's CPU around it. A row into $TMPD/res.tsv.
overhead_measure() {
    local name=$1 conf=$2 port=$3 round=$4 t0 t1 out=$TMPD/wrk-$1-$4.txt
    shift 4
    start_system "${OVERHEAD_SYS:-gatehouse}" "$conf" "$port" || die "${OVERHEAD_SYS:-gatehouse} ($name) did not start"
    local pid=$SERVER_PID
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "$@" "http://127.0.0.1:$port/small" >/dev/null 2>&1
    t0=$(tree_ticks "$pid"); t0=${t0%% *}
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$@" "http://127.0.0.1:$port/small" >"$out" 2>&1
    t1=$(tree_ticks "$pid"); t1=${t1%% *}
    stop_system "$pid"
    overhead_row "$name" "$round" $((t1 - t0)) "$out"
    tail -n 1 "$TMPD/res.tsv" | awk -F'\t' '{ printf "  %-5s round %d: %8s req/s  p99 %7s ms  proxy %6s us/req  non-2xx %s\n", $1, $2, $3, $4, $5, $6 }' >&2
}

# overhead_report BASE OTHER WHAT: medians per configuration and OTHER / BASE.
overhead_report() {
    /usr/bin/python3 - "$TMPD/res.tsv" "$1" "$2" "$3" <<'PY'
import statistics, sys
path, base, other, what = sys.argv[1:5]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
med = {}
for name in (base, other):
    rs = [r for r in rows if r[0] == name]
    med[name] = [statistics.median(float(r[i]) for r in rs) for i in (2, 3, 4)] + [sum(int(r[5]) for r in rs)]
    med[name].append((min(float(r[2]) for r in rs), max(float(r[2]) for r in rs)))
print("config  rate req/s (min..max)    p99 ms  proxy CPU us/req  non-2xx")
for name in (base, other):
    m = med[name]
    print("%-6s  %10.0f (%.0f..%.0f)  %6.3f  %16.2f  %d" % (name, m[0], m[4][0], m[4][1], m[1], m[2], m[3]))
b, f = med[base], med[other]
print("%s / %s: rate %.3f, p99 %.2f, CPU per request %.3f (%s)" % (other, base, f[0] / b[0], f[1] / b[1], f[2] / b[2], what))
# the same ratios within each round (the two runs minutes apart at most), then their median: a VM
# slowed from outside for a while moves both runs of a round, not one configuration's median
by = {}
for r in rows:
    by.setdefault(r[1], {})[r[0]] = r
pairs = [(float(v[other][2]) / float(v[base][2]), float(v[other][4]) / float(v[base][4]))
         for v in by.values() if base in v and other in v and float(v[base][2]) > 0 and float(v[base][4]) > 0]
if pairs:
    print("  per round: rate %s; median %.3f; CPU per request median %.3f" % (
        " ".join("%.3f" % p[0] for p in pairs), statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs)))
PY
}
