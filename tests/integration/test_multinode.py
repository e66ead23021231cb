"""Several gatehouse nodes on a private network (scale-out): one configuration store, one global
rate limit, purges and events that cross nodes, and nodes, NATS and PostgreSQL killed under load.

The module builds its own network with netns.Topology (network namespaces joined by veth pairs to
a bridge in a namespace of its own; nothing touches the host's interfaces):

    svc 10.X.0.2   PostgreSQL 15 (:5432), Redis (:6379), NATS JetStream (:4222),
                   ClickHouse (:8123), the test origin (origin.py, :8000)
    n1..n3         one gatehouse node each, 10.X.0.11..13: proxy :8080, admin :9090, OFREP :8081
    cl 10.X.0.20   every client request of the tests

Every server is started here, as a process in its namespace (PostgreSQL as the postgres user), and
killed by pid when the module ends, also on failure. The nodes share the PostgreSQL store (tenants
and routes come through the admin API), Redis (global limits) and NATS (the event stream and
purges); n1 alone runs the ClickHouse sink (the durable consumer), so a node that is killed never
holds fetched-but-unacknowledged messages that would only come back after JetStream's ack wait.

Skipped only when the namespaces cannot be built (not root, no `ip netns`); a missing server
binary is a failure. Measured numbers are printed (pytest -s).

Who calls it: pytest. What it calls: netns.py, pgserver.py (its PostgreSQL paths), origin.py,
rawhttp.py, helpers.py, the gatehouse binary, postgres, redis-server, nats-server,
clickhouse-server.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import helpers
import netns
import pgserver
from helpers import BIN, metric_value, parse_metrics
from origin import Origin
from rawhttp import Closed, RawConn, request_bytes

KEY = "operator-key-for-multinode-0123456789"
EV_KEY = "ev-publish-key-0123456789abcdef"
REDIS_PASS = "mn-redis-pass-0123"  # also keeps Redis out of protected mode on a non-loopback address
NODES = ("n1", "n2", "n3")
PROXY, ADMIN, OFREP = 8080, 9090, 8081
ORIGIN_PORT = 8000
PROPAGATION_LIMIT = 1.0  # s: a change, or a purge, made on one node is served by all within this

NODE = """# gatehouse node {node} of the multi-node test
workers: 1
{node_key}pid_file: "{dir}/{node}.pid"
drain_timeout: 1s
admin: {{listen: "{addr}:{admin}", store: "postgresql://gatehouse@{svc}:5432/gh", key_file: "{key_file}", rate_limit: "1000/s", burst: 2000}}
listeners: [{{name: http, listen: "{addr}:{proxy}"}}]
ofrep: {{listen: "{addr}:{ofrep}"}}
access_log: {{enabled: false}}
protection:
  redis: {{address: "{svc}:6379", password: "{redis_pass}", sync_interval: 50ms}}
{events}experiments: {{store: "{dir}/exp-{node}.db"}}
"""

EVENTS = """events:
  nats:
    url: "nats://{svc}:4222"
    stream: GATEHOUSE
    subject_prefix: gatehouse
    spool_dir: "{dir}/spool-{node}"
    publish: [access, exposure, event]
{clickhouse}"""

CLICKHOUSE = """  clickhouse:
    url: "http://{svc}:8123"
    database: gatehouse
"""

CH_CONFIG = """<yandex><logger><level>warning</level><log>{d}/log</log><errorlog>{d}/err</errorlog><console>0</console></logger>
<http_port>8123</http_port><tcp_port>9000</tcp_port><listen_host>{addr}</listen_host>
<path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/uf/</user_files_path>
<users_config>users.xml</users_config><default_profile>default</default_profile>
<default_database>default</default_database><mark_cache_size>5368709</mark_cache_size>
<uncompressed_cache_size>8589934</uncompressed_cache_size></yandex>
"""
CH_USERS = """<yandex><profiles><default></default></profiles><users><default><password></password>
<networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas></yandex>
"""


# ---------------------------------------------------------------- the servers in svc

class Postgres:
    """PostgreSQL 15 in the svc namespace on ADDR:5432, trust authentication on the private
    network, run as the postgres user (pgserver.py's way: initdb, then the postmaster itself,
    so that its pid is ours to kill -9)."""

    def __init__(self, topo):
        self.topo = topo
        self.addr = topo.addr("svc")
        self.user = pgserver._run_as_user()
        self.dir = tempfile.mkdtemp(prefix="gh-mnpg-")  # not under pytest's 0700 tmp: postgres reads it
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        os.mkdir(self.sock)
        if self.user:
            for p in (self.dir, self.sock):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        self.proc = None
        try:
            argv = [pgserver.INITDB, "-D", self.data, "-A", "trust", "-U", pgserver.SUPERUSER, "-E", "UTF8",
                    "--locale=C", "--no-sync"]
            if self.user:
                argv = ["runuser", "-u", self.user.pw_name, "--"] + argv
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=self.dir)
            if p.returncode:
                raise RuntimeError("initdb: %s%s" % (p.stdout, p.stderr))
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write("\nlisten_addresses = '%s'\nport = 5432\nunix_socket_directories = '%s'\n"
                        "max_connections = 40\nshared_buffers = 16MB\nlogging_collector = off\n" % (self.addr, self.sock))
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write("host all all 10.%d.0.0/24 trust\n" % topo.x)
            self.start()
            self.sql("postgres", "CREATE DATABASE gh")
        except Exception:
            if self.proc is not None:
                self.proc.kill()
            self.cleanup()
            raise

    def start(self):
        self.proc = self.topo.spawn("svc", [os.path.join(pgserver.PG_BIN, "postgres"), "-D", self.data],
                                    name="postgres", user=self.user.pw_name if self.user else None)
        self.topo.wait_accepts("svc", self.addr, 5432, timeout=30, proc=self.proc)
        # accepting is not yet ready (recovery after a kill -9): wait for a query
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sql("postgres", "SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill9(self):
        """kill -9 the postmaster and its backends (one process group)."""
        self.proc.kill()

    def sql(self, db, text):
        p = self.topo.run("svc", [pgserver.PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.addr,
                                  "-p", "5432", "-U", pgserver.SUPERUSER, "-d", db, "-c", text], check=False)
        if p.returncode:
            raise RuntimeError("psql %r: %s" % (text, p.stderr))
        return p.stdout

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class ClickHouse:
    def __init__(self, topo, workdir):
        self.topo = topo
        self.addr = topo.addr("svc")
        self.url = "http://%s:8123/" % self.addr
        d = os.path.join(workdir, "clickhouse")
        for sub in ("data", "tmp", "uf"):
            os.makedirs(os.path.join(d, sub))
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(CH_CONFIG.format(d=d, addr=self.addr))
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write(CH_USERS)
        self.proc = topo.spawn("svc", ["clickhouse-server", "--config-file=" + os.path.join(d, "config.xml")],
                               name="clickhouse", cwd=d)
        topo.wait_accepts("svc", self.addr, 8123, timeout=30, proc=self.proc)

    def query(self, q):
        r = self.topo.call("cl", helpers.request, "POST", self.url, data=q.encode(), timeout=20)
        if r.status_code != 200:
            raise RuntimeError("clickhouse %r: %d %s" % (q, r.status_code, r.text[:500]))
        return r.text


# ---------------------------------------------------------------- the nodes

class Node:
    def __init__(self, cluster, name, events, clickhouse):
        self.c = cluster
        self.name = name
        self.addr = cluster.topo.addr(name)
        self.url = "http://%s:%d" % (self.addr, PROXY)
        self.admin_url = "http://%s:%d" % (self.addr, ADMIN)
        self.ofrep_url = "http://%s:%d" % (self.addr, OFREP)
        self.config = os.path.join(cluster.dir, "%s.yaml" % name)
        v = {"node": name, "dir": cluster.dir, "addr": self.addr, "svc": cluster.svc, "key_file": cluster.key_file,
             "admin": ADMIN, "proxy": PROXY, "ofrep": OFREP,
             "redis_pass": REDIS_PASS}
        ev = ""
        if events:
            ev = EVENTS.format(clickhouse=CLICKHOUSE.format(**v) if clickhouse else "", **v)
        text = NODE.format(node_key=("node: %s\n" % name) if events else "", events=ev, **v)
        with open(self.config, "w") as f:
            f.write(text)
        self.proc = None

    def start(self):
        self.proc = self.c.topo.spawn(self.name, [BIN, "run", "-c", self.config], name="gatehouse-" + self.name)
        for port in (PROXY, ADMIN, OFREP):
            self.c.topo.wait_accepts("cl", self.addr, port, timeout=20, proc=self.proc)

    def kill9(self):
        self.proc.kill()

    def log(self):
        return self.proc.log_text() if self.proc else ""


class Cluster:
    def __init__(self, topo, workdir):
        self.topo = topo
        self.dir = workdir
        self.svc = topo.addr("svc")
        self.key_file = os.path.join(workdir, "operator.key")
        with open(self.key_file, "w") as f:
            f.write(KEY + "\n")
        self.events = events_supported(workdir)
        self.nodes = {}
        self.pg = self.redis = self.nats = self.ch = self.origin = None

    def start_nats(self):
        self.nats = self.topo.spawn("svc", ["nats-server", "-js", "-a", self.svc, "-p", "4222",
                                            "-sd", os.path.join(self.dir, "nats")], name="nats")
        self.topo.wait_accepts("svc", self.svc, 4222, timeout=20, proc=self.nats)

    # ---- client side (every call runs in the cl namespace) ----
    def get(self, node, host, path, headers=None, timeout=5):
        h = {"Host": host}
        h.update(headers or {})
        return self.topo.call("cl", helpers.request, "GET", node.url + path, headers=h, timeout=timeout)

    def admin(self, node, method, path, body=None, ok=None, timeout=15):
        h = {"Authorization": "Bearer " + KEY}
        if body is not None:
            h["Content-Type"] = "application/json"
        r = self.topo.call("cl", helpers.request, method, node.admin_url + path, json=body, headers=h,
                           timeout=timeout)
        if ok is not None:
            assert r.status_code in ok, (node.name, method, path, r.status_code, r.text[:500])
        return r

    def metrics(self, node):
        r = self.admin(node, "GET", "/metrics", ok=(200,))
        return parse_metrics(r.text)

    def readyz(self, node):
        return self.topo.call("cl", helpers.request, "GET", node.admin_url + "/readyz", timeout=5)

    def wait_all_serve(self, host, path, pred, t0, limit=PROPAGATION_LIMIT, grace=3.0, nodes=None):
        """Poll every node at once from the client namespace until pred(response); the seconds
        from t0 each took (node name -> s). Fails when one does not within limit + grace."""
        nodes = nodes or [self.nodes[n] for n in NODES]

        def one(node):
            last = None
            while True:
                try:
                    last = helpers.request("GET", node.url + path, headers={"Host": host}, timeout=2)
                    if pred(last):
                        return time.monotonic() - t0, None
                except OSError as e:
                    last = e
                if time.monotonic() - t0 > limit + grace:
                    return None, "%s: %s%s not served as expected after %.1f s; last: %s %s" % (
                        node.name, host, path, limit + grace, getattr(last, "status_code", last),
                        (getattr(last, "text", "") or "")[:300])
                time.sleep(0.005)

        ex = self.topo.executor("cl")
        futs = {n.name: ex.submit(one, n) for n in nodes}
        out = {}
        for name, f in futs.items():
            took, err = f.result(timeout=limit + grace + 30)
            if err:
                pytest.fail(err)
            out[name] = took
        return out


def events_supported(workdir):
    """Whether this build accepts the `node:` and `events:` keys (`gatehouse validate`)."""
    p = os.path.join(workdir, "probe.yaml")
    with open(p, "w") as f:
        f.write('node: probe\nlisteners: [{listen: "127.0.0.1:1"}]\nevents:\n  nats:\n'
                '    url: "nats://127.0.0.1:4222"\n    stream: GATEHOUSE\n    subject_prefix: gatehouse\n'
                '    spool_dir: "%s/spool-probe"\n    publish: [access, exposure, event]\n' % workdir)
    r = subprocess.run([BIN, "validate", "-c", p], capture_output=True, text=True, timeout=20)
    return r.returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    why = netns.available()
    if why:
        pytest.skip("multi-node test: " + why)
    if not pgserver.available():
        pytest.fail("PostgreSQL 15 is not installed (no %s)" % pgserver.INITDB)
    for exe in ("redis-server", "nats-server", "clickhouse-server"):  # installed by make deps: missing is a failure
        if not shutil.which(exe):
            pytest.fail("%s is not installed" % exe)
    workdir = str(tmp_path_factory.mktemp("multinode"))
    failed_before = request.session.testsfailed
    topo = netns.Topology(workdir)
    c = None
    try:
        c = Cluster(topo, workdir)
        print("\n[multinode] namespaces %s-*, network 10.%d.0.0/24, events: %s"
              % (topo.tag, topo.x, "on" if c.events else "not accepted by this build (scenarios 3-4 fail)"))
        t0 = time.monotonic()
        c.pg = Postgres(topo)
        c.redis = topo.spawn("svc", ["redis-server", "--port", "6379", "--bind", c.svc, "--save", "",
                                     "--appendonly", "no", "--requirepass", REDIS_PASS, "--dir", workdir], name="redis")
        topo.wait_accepts("svc", c.svc, 6379, proc=c.redis)
        c.start_nats()
        c.ch = ClickHouse(topo, workdir)
        c.origin = topo.call("svc", Origin, "v1", host=c.svc, port=ORIGIN_PORT)
        for name in NODES:
            c.nodes[name] = Node(c, name, c.events, clickhouse=(name == "n1"))
        for name in NODES:  # one after the other: the first migrates the empty database
            c.nodes[name].start()
        print("[multinode] servers and 3 nodes up in %.1f s" % (time.monotonic() - t0))
        yield c
    finally:
        if c is not None:
            if c.origin is not None:
                c.origin.stop()
            if request.session.testsfailed != failed_before:  # the nodes' own words, for the report
                for n in c.nodes.values():
                    if n.proc is not None:
                        print("\n[multinode] %s (exit status %s), log tail:\n%s"
                              % (n.name, n.proc.popen.poll(), n.proc.log_text(3000)))
        topo.close()
        if c is not None and c.pg is not None:
            c.pg.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- documents

def respond_route(name, prefix, body):
    return {"name": name, "match": {"path": {"prefix": prefix}},
            "respond": {"status": 200, "body": body, "headers": {"Content-Type": "text/plain"}}}


def tenant_doc(name, host, routes, **more):
    d = {"name": name, "sites": [{"name": "www", "hosts": [host], "routes": routes}]}
    d.update(more)
    return d


def body_is(text):
    return lambda r: r.status_code == 200 and r.text == text


# ---------------------------------------------------------------- 1. configuration

def test_config_change_reaches_all_nodes(cluster):
    c = cluster
    n1 = c.nodes["n1"]
    host = "prop.test"
    took_all = []
    for i in range(3):
        body = "prop v%d" % i
        r = c.admin(n1, "PUT", "/v1/tenants/prop", tenant_doc("prop", host, [respond_route("r", "/", body)]),
                    ok=(200, 201))
        t0 = time.monotonic()  # from the PUT's answer
        took = c.wait_all_serve(host, "/", body_is(body), t0)
        print("[multinode] config change %d (version %s) served by n1/n2/n3 after %s ms"
              % (i, r.headers.get("Gatehouse-Config-Version"),
                 "/".join("%.0f" % (took[n] * 1e3) for n in NODES)))
        took_all.append(max(took.values()))
        for n in NODES:
            assert took[n] < PROPAGATION_LIMIT, "%s served change %d after %.3f s (limit %.1f s)" % (
                n, i, took[n], PROPAGATION_LIMIT)
    # the versions agree on every node
    cur = {n: c.admin(c.nodes[n], "GET", "/v1/versions?limit=1", ok=(200,)).json()["current"] for n in NODES}
    assert len(set(cur.values())) == 1, cur


# ---------------------------------------------------------------- 2. global limit

def drive(c, node, host, path, rate, stop_at, out, conns=4, headers=()):
    """From the client namespace: `conns` keep-alive connections to node, together `rate`
    requests per second, paced (a late sender does not burst to catch up), until stop_at.
    Appends (time, status) to out."""
    per = rate / conns
    lock = threading.Lock()

    def conn_loop(k):
        netns.enter(c.topo.ns("cl"))
        conn = None
        nxt = time.monotonic() + k / rate
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            if nxt > now:
                time.sleep(nxt - now)
            nxt = max(nxt + 1.0 / per, time.monotonic() - 0.05)
            try:
                if conn is None:
                    conn = RawConn(PROXY, host=node.addr, timeout=5)
                conn.send(request_bytes("GET", path, host=host, headers=headers))
                r = conn.read_response()
                st = r.status
                if (r.header("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, Closed):
                st = 0
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                out.append((time.monotonic(), st))
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=conn_loop, args=(k,), daemon=True) for k in range(conns)]
    for t in ts:
        t.start()
    return ts


def test_global_limit_across_three_nodes(cluster):
    c = cluster
    N = 300
    host = "glim.test"
    route = respond_route("g", "/", "ok")
    route["protection"] = {"rate_limits": [{"name": "g", "key": ["tenant"], "rate": "%d/s" % N, "burst": 30,
                                            "scope": "global"}]}
    c.admin(c.nodes["n1"], "PUT", "/v1/tenants/glim", tenant_doc("glim", host, [route]), ok=(200, 201))
    c.wait_all_serve(host, "/", lambda r: r.status_code in (200, 429), time.monotonic(), limit=5)
    time.sleep(1.5)  # let the probes' window pass
    per_node = 400
    dur = 6.0
    t0 = time.monotonic() + 0.2
    stop_at = t0 + dur
    outs = {n: [] for n in NODES}
    threads = []
    for n in NODES:
        threads += drive(c, c.nodes[n], host, "/", per_node, stop_at, outs[n])
    for t in threads:
        t.join(timeout=dur + 20)
    assert not any(t.is_alive() for t in threads)
    # per second and node: admitted (200) and refused (429)
    secs = int(dur)
    table = {n: [[0, 0, 0] for _ in range(secs + 1)] for n in NODES}
    for n in NODES:
        for t, st in outs[n]:
            s = int(t - t0)
            if 0 <= s <= secs:
                table[n][s][0 if st == 200 else 1 if st == 429 else 2] += 1
    print("[multinode] global limit %d/s, offered %d/s on each of 3 nodes; per second (200/429/other):" % (N, per_node))
    for s in range(secs):
        print("  s%d  " % s + "  ".join("%s %4d/%4d/%d" % (n, *table[n][s]) for n in NODES)
              + "   admitted %d" % sum(table[n][s][0] for n in NODES))
    lo, hi = t0 + 1.0, stop_at  # the first second (a new key's first window on each node) is ignored
    admitted = sum(1 for n in NODES for t, st in outs[n] if lo <= t < hi and st == 200)
    sent = sum(1 for n in NODES for t, st in outs[n] if lo <= t < hi)
    other = sum(1 for n in NODES for t, st in outs[n] if st not in (200, 429))
    rate = admitted / (hi - lo)
    print("[multinode] admitted %.1f/s of %.1f/s sent (limit %d/s); other answers: %d" % (rate, sent / (hi - lo), N, other))
    up = {n: metric_value(c.metrics(c.nodes[n]), "gatehouse_protection_redis_up") for n in NODES}
    assert all(v == 1 for v in up.values()), "gatehouse_protection_redis_up: %s" % up
    assert other == 0, "answers other than 200/429: %d" % other
    assert sent / (hi - lo) >= 2 * N, "the driver did not offer well over the limit (%.0f/s)" % (sent / (hi - lo))
    for n in NODES:  # every node admitted some and refused some
        assert any(st == 200 for _, st in outs[n]) and any(st == 429 for _, st in outs[n]), n
    assert abs(rate - N) <= 0.1 * N, "admitted %.1f/s across three nodes, limit %d/s (10%%: %.0f..%.0f)" % (
        rate, N, 0.9 * N, 1.1 * N)


# ---------------------------------------------------------------- 3. purge

def need_events(c):
    if not c.events:
        pytest.fail("this build does not accept the `node:` / `events:` keys (gatehouse validate), so purges "
                    "and events cannot cross nodes")


def test_purge_reaches_all_nodes(cluster):
    c = cluster
    need_events(c)
    host = "cache.test"
    doc = tenant_doc("cache", host, [{"name": "id", "match": {"path": {"prefix": "/id"}}, "upstream": "o",
                                      "cache": {"default_ttl": "60s"}}],
                     upstreams={"o": {"backends": ["%s:%d" % (c.svc, ORIGIN_PORT)]}})
    c.origin.id = "v1"
    c.admin(c.nodes["n1"], "PUT", "/v1/tenants/cache", doc, ok=(200, 201))
    c.wait_all_serve(host, "/id", body_is("v1"), time.monotonic(), limit=5)
    # each node has stored it: the next answer is a hit
    for n in NODES:
        def hit(r):
            return r.status_code == 200 and r.text == "v1" and "hit" in (r.headers.get("Cache-Status") or "")
        c.wait_all_serve(host, "/id", hit, time.monotonic(), limit=3, nodes=[c.nodes[n]])
    c.origin.id = "v2"
    time.sleep(0.2)
    for n in NODES:  # still the stored answer: the purge is what changes it
        r = c.get(c.nodes[n], host, "/id")
        assert r.text == "v1" and "hit" in r.headers.get("Cache-Status", ""), (n, r.text, dict(r.headers))
    r = c.admin(c.nodes["n1"], "POST", "/cache/purge?tenant=cache&url=http://%s/id" % host, ok=(200,))
    t0 = time.monotonic()
    assert r.json()["purged"] >= 1, r.text
    took = c.wait_all_serve(host, "/id", body_is("v2"), t0)
    print("[multinode] purge on n1 served as the new answer by n1/n2/n3 after %s ms"
          % "/".join("%.0f" % (took[n] * 1e3) for n in NODES))
    for n in NODES:
        assert took[n] < PROPAGATION_LIMIT, "%s served the purged answer %.3f s after the purge" % (n, took[n])


# ---------------------------------------------------------------- 4. events under kills

EV_FLAGS = {"flags": {"checkout": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                   "defaultVariant": "off", "targeting": {"fractional": [["on", 50], ["off", 50]]}}}}


def test_events_survive_node_and_nats_kills(cluster):
    c = cluster
    need_events(c)
    host = "ev.test"
    doc = tenant_doc("ev", host, [{"name": "echo", "match": {"path": {"prefix": "/echo"}}, "upstream": "o"}],
                     upstreams={"o": {"backends": ["%s:%d" % (c.svc, ORIGIN_PORT)]}},
                     flags={"definition": EV_FLAGS, "api_keys": [EV_KEY]},
                     experiments=[{"id": "co", "flag": "checkout", "variants": ["off", "on"],
                                   "metrics": [{"name": "purchase", "kind": "conversion", "event": "purchase"}]}])
    c.admin(c.nodes["n1"], "PUT", "/v1/tenants/ev", doc, ok=(200, 201))
    run = uuid.uuid4().hex[:8]
    acked = set()            # event ids answered 200
    served = {n: set() for n in NODES}   # request ids answered by each node
    lock = threading.Lock()
    seq = [0]

    def publish(node, eid):
        body = json.dumps({"events": [{"eventDefinition": "purchase", "eventId": eid,
                                       "payload": {"targetingKey": "u-" + eid, "amount": 1}}]})
        return helpers.request("POST", node.ofrep_url + "/v1/events:publish", data=body, timeout=5,
                               headers={"Content-Type": "application/json", "X-API-Key": EV_KEY})

    # every node takes events before the load starts (the pipeline starts with the first experiment)
    for n in NODES:
        def ready(node=c.nodes[n]):
            deadline = time.monotonic() + 10
            while True:
                seq[0] += 1
                eid = "ev-%s-w%d" % (run, seq[0])
                try:
                    r = publish(node, eid)
                    if r.status_code == 200:
                        acked.add(eid)
                        return None
                    last = "%d %s" % (r.status_code, r.text[:300])
                except OSError as e:
                    last = repr(e)
                if time.monotonic() > deadline:
                    return last
                time.sleep(0.05)
        err = c.topo.call("cl", ready)
        assert err is None, "%s does not take events: %s" % (n, err)

    stop = threading.Event()
    counts = {"ev_sent": 0, "ev_err": 0, "req_sent": 0, "req_err": 0}
    refused = {}             # (node, status or error) -> events not acknowledged

    def event_loop(k):
        i = 0
        while not stop.is_set():
            node = c.nodes[NODES[i % 3]]
            eid = "ev-%s-%d-%d" % (run, k, i)
            i += 1
            try:
                r = publish(node, eid)
                why = r.status_code
            except OSError as e:
                why = type(e).__name__
            with lock:
                counts["ev_sent"] += 1
                if why == 200:
                    acked.add(eid)
                else:
                    counts["ev_err"] += 1
                    refused[(node.name, why)] = refused.get((node.name, why), 0) + 1
            time.sleep(0.01)

    def request_loop(k):
        i = 0
        conns = {}
        while not stop.is_set():
            n = NODES[i % 3]
            rid = "mn-%s-%d-%d" % (run, k, i)
            i += 1
            ok = False
            try:
                conn = conns.get(n) or RawConn(PROXY, host=c.nodes[n].addr, timeout=5)
                conns[n] = conn
                conn.send(request_bytes("GET", "/echo/" + rid, host=host, headers=[("X-Request-Id", rid)]))
                ok = conn.read_response().status == 200
            except (OSError, Closed):
                if n in conns:
                    conns.pop(n).close()
            with lock:
                counts["req_sent"] += 1
                if ok:
                    served[n].add(rid)
                else:
                    counts["req_err"] += 1
            time.sleep(0.005)
        for conn in conns.values():
            conn.close()

    ts = [c.topo.thread("cl", event_loop, k) for k in range(2)] + [c.topo.thread("cl", request_loop, k) for k in range(2)]
    t0 = time.monotonic()
    try:
        time.sleep(2.0)
        c.nodes["n2"].kill9()
        killed_n2 = time.monotonic() - t0
        time.sleep(0.5)
        c.nodes["n2"].start()
        back_n2 = time.monotonic() - t0
        time.sleep(2.0)
        c.nats.kill()
        killed_nats = time.monotonic() - t0
        time.sleep(1.0)
        c.start_nats()
        back_nats = time.monotonic() - t0
        while time.monotonic() - t0 < 10.0:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=15)
    print("[multinode] load %.1f s: n2 killed at %.1f s, back at %.1f s; NATS killed at %.1f s, back at %.1f s"
          % (time.monotonic() - t0, killed_n2, back_n2, killed_nats, back_nats))
    print("[multinode] events: %d sent, %d acknowledged, %d refused/failed; requests: %d sent, %d failed"
          % (counts["ev_sent"], len(acked), counts["ev_err"], counts["req_sent"], counts["req_err"]))
    print("[multinode] events not acknowledged, by node and answer: %s" % dict(sorted(refused.items(), key=str)))
    assert len(acked) > 100, counts

    # every acknowledged event reaches ClickHouse, once
    def ch_ids(q):
        return set(c.ch.query(q).split())

    deadline = time.monotonic() + 30
    missing = None
    while True:
        try:
            have = ch_ids("SELECT event_id FROM gatehouse.events FINAL WHERE tenant = 'ev' AND event_id LIKE 'ev-%s-%%'"
                          " FORMAT TabSeparated" % run)
            missing = acked - have
        except RuntimeError as e:
            missing, have = acked, set()
            err = str(e)
        else:
            err = None
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, "%d of %d acknowledged events not in ClickHouse after 30 s (e.g. %s)%s" % (
        len(missing), len(acked), sorted(missing)[:5], ("; " + err) if err else "")
    cnt, uniq = c.ch.query("SELECT count(), uniqExact(event_id) FROM gatehouse.events FINAL WHERE tenant = 'ev' AND "
                           "event_id LIKE 'ev-%s-%%' FORMAT TabSeparated" % run).split()
    print("[multinode] ClickHouse events: %s rows FINAL, %s distinct ids, %d acknowledged" % (cnt, uniq, len(acked)))
    assert int(cnt) == int(uniq), (cnt, uniq)
    assert int(uniq) >= len(acked)
    # n1, the only sink, is never killed: its set of recent ids drops every redelivery and resend
    # before the insert, so even without FINAL each event is one row
    raw = int(c.ch.query("SELECT count() FROM gatehouse.events WHERE tenant = 'ev' AND event_id LIKE 'ev-%s-%%'"
                         % run).strip())
    m1 = c.metrics(c.nodes["n1"])
    print("[multinode] rows without FINAL %d; n1 sink: fetched %d, inserted %d, duplicates dropped %d, insert errors %d"
          % (raw, metric_value(m1, "gatehouse_clickhouse_fetched_total"), metric_value(m1, "gatehouse_clickhouse_inserted_total"),
             metric_value(m1, "gatehouse_clickhouse_duplicates_total"),
             metric_value(m1, "gatehouse_clickhouse_insert_errors_total")))
    for n in NODES:
        m = c.metrics(c.nodes[n])
        print("[multinode] %s stream: published %d, publish errors %d, dropped %d, spool %d bytes" % (
            n, metric_value(m, "gatehouse_stream_published_total"), metric_value(m, "gatehouse_stream_publish_errors_total"),
            metric_value(m, "gatehouse_stream_dropped_total"), metric_value(m, "gatehouse_stream_spool_bytes")))
    assert raw == int(uniq), "%d rows for %s distinct event ids: duplicates reached ClickHouse" % (raw, uniq)

    # access records of the requests answered by the nodes never killed (n1, n3) are all there;
    # n2's may lose what its access-log ring held when it was killed, so they are only counted
    deadline = time.monotonic() + 15
    while True:
        have = ch_ids("SELECT request_id FROM gatehouse.access FINAL WHERE tenant = 'ev' AND request_id LIKE "
                      "'mn-%s-%%' FORMAT TabSeparated" % run)
        missing = (served["n1"] | served["n3"]) - have
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("[multinode] access records: n1 %d, n3 %d answered, %d missing; n2 %d answered, %d recorded"
          % (len(served["n1"]), len(served["n3"]), len(missing), len(served["n2"]), len(served["n2"] & have)))
    assert served["n1"] and served["n3"]
    assert not missing, "%d access records of n1/n3 missing (e.g. %s)" % (len(missing), sorted(missing)[:5])
    cnt, uniq = c.ch.query("SELECT count(), uniqExact(request_id) FROM gatehouse.access FINAL WHERE tenant = 'ev' "
                           "AND request_id LIKE 'mn-%s-%%' FORMAT TabSeparated" % run).split()
    assert int(cnt) == int(uniq), (cnt, uniq)


# ---------------------------------------------------------------- 5. the store goes away

def store_up(c, node):
    return metric_value(c.metrics(node), "gatehouse_config_store_up")


def test_node_keeps_serving_without_the_database(cluster):
    """Last in the module: kills the module's PostgreSQL."""
    c = cluster
    n1 = c.nodes["n1"]
    host = "keep.test"
    c.admin(n1, "PUT", "/v1/tenants/keep", tenant_doc("keep", host, [respond_route("r", "/", "kept")]), ok=(200, 201))
    c.wait_all_serve(host, "/", body_is("kept"), time.monotonic())
    for n in NODES:
        assert store_up(c, c.nodes[n]) == 1, n
    c.pg.kill9()
    t0 = time.monotonic()

    def unready(node):
        r = c.readyz(node)
        return r.status_code == 200 and "store unreachable" in r.text and store_up(c, node) == 0

    for n in NODES:
        got = helpers.poll(lambda: unready(c.nodes[n]), timeout=10, interval=0.1)
        r = c.readyz(c.nodes[n])
        assert got, "%s after PostgreSQL died: /readyz %d %r, gatehouse_config_store_up %s" % (
            n, r.status_code, r.text, store_up(c, c.nodes[n]))
    print("[multinode] every node reported the store unreachable %.1f s after the kill" % (time.monotonic() - t0))
    # the last configuration keeps serving, for a while
    for _ in range(3):
        for n in NODES:
            r = c.get(c.nodes[n], host, "/")
            assert r.status_code == 200 and r.text == "kept", (n, r.status_code, r.text)
        time.sleep(0.5)
    # a write without a store is refused, not lost
    r = c.admin(n1, "PATCH", "/v1/tenants/keep/sites/www/routes/r", {"respond": {"body": "nope"}})
    assert r.status_code == 503, (r.status_code, r.text)

    c.pg.start()
    t1 = time.monotonic()
    for attempt in range(100):  # bounded: 10 s
        r = c.admin(n1, "PATCH", "/v1/tenants/keep/sites/www/routes/r", {"respond": {"body": "back"}})
        if r.status_code == 200:
            break
        assert r.status_code == 503, (r.status_code, r.text)
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    took = c.wait_all_serve(host, "/", body_is("back"), time.monotonic(), limit=3.0)
    print("[multinode] first write %.1f s after PostgreSQL came back; served by n1/n2/n3 after %s ms"
          % (time.monotonic() - t1, "/".join("%.0f" % (took[n] * 1e3) for n in NODES)))
    for n in NODES:
        ok = helpers.poll(lambda: store_up(c, c.nodes[n]) == 1, timeout=5, interval=0.1)
        assert ok, "%s: gatehouse_config_store_up stays %s after PostgreSQL returned" % (n, store_up(c, c.nodes[n]))
        r = c.readyz(c.nodes[n])
        assert r.status_code == 200 and "unreachable" not in r.text, (n, r.text)
    # and a change propagates as fast as before
    c.admin(n1, "PATCH", "/v1/tenants/keep/sites/www/routes/r", {"respond": {"body": "again"}}, ok=(200,))
    took = c.wait_all_serve(host, "/", body_is("again"), time.monotonic())
    for n in NODES:
        assert took[n] < PROPAGATION_LIMIT, (n, took[n])
