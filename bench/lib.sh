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

# Sum of VmRSS (kB) of PID and all its descendants.
tree_rss_kb() {
    local root=$1 p sum=0 v
    for p in "$root" $(descendants "$root"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# Sum of Pss (kB) from smaps_rollup over the tree (shared pages split between processes).
tree_pss_kb() {
    local root=$1 p sum=0 v
    for p in "$root" $(descendants "$root"); do
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

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

# ---------------------------------------------------------------- configs

gen_origin_conf() {   # gen_origin_conf PORT
    local d=$TMPD/origin
    mkdir -p "$d/www"
    head -c 65536 /dev/urandom >"$d/www/big"
    chmod -R a+rX "$d"
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
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path $d/client_body;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location = /small { default_type text/plain; return 200 "$BODY_SMALL"; }
        location = /big { root $d/www; }
    }
}
EOF
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
