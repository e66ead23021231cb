#!/bin/sh
# Install the Debian packages gatehouse needs to build, run and test, and only those
# that are missing (idempotent; a warm machine does nothing). Run as root.
set -eu
PKGS="build-essential pkg-config libyaml-dev libpcre2-dev libc-ares-dev libssl-dev openssl dnsmasq-base libnghttp2-dev nghttp2-client python3-h2 python3-grpcio
      curl python3 python3-pytest python3-requests
      nginx haproxy varnish wrk clang libclang-rt-14-dev
      libhiredis-dev redis-server libmaxminddb-dev mmdb-bin slowhttptest chromium libjansson-dev
      protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler python3-protobuf
      libsqlite3-dev sqlite3 python3-numpy python3-scipy python3-statsmodels python3-mpmath
      libpq-dev libluajit-5.1-dev postgresql python3-jsonschema python3-yaml
      libnats-dev nats-server zlib1g-dev clickhouse-server clickhouse-client iproute2"
missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done
# node and npm run the real OpenFeature clients of the tests (tests/js): any node that is there,
# else Debian's
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    for p in nodejs npm; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$st" = "installed" ] || missing="$missing $p"
    done
fi
[ -z "$missing" ] && exit 0
echo "make deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "make deps: run as root (or install:$missing)" >&2
    exit 1
fi
# Keep package scripts from starting the services we only use as test peers.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
rc=0
apt-get install -y -qq --no-install-recommends $missing || rc=$?
[ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
exit $rc
