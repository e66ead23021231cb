"""The control plane on a PostgreSQL store: migrations, and several gatehouse nodes sharing one
store (LISTEN/NOTIFY propagation, concurrent writers, restart, tenant keys).

A real PostgreSQL 15 is started for the module (pgserver.py); each test gets fresh databases.
Every node runs the same file but for its ports: its own demo origin, the file upstream
"demo" pointing at it, the shared store URL and the operator key file.
"""

import os
import random
import threading
import time

import pytest

import helpers
from helpers import port_accepts
from pgserver import pg_server  # noqa: F401  (fixture)

KEY = os.environ.get("GATEHOUSE_ADMIN_KEY") or "operator-key-for-pg-tests-0123456789"

NODE = """
workers: 2
pid_file: "{pid_file}"
drain_timeout: 2s
admin: {listen: "127.0.0.1:{admin_port}", store: "{store}", key_file: "{key_file}", rate_limit: "1000/s", burst: 2000}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
demo_origin: {listen: "127.0.0.1:{demo_port}"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
"""

PROPAGATION_LIMIT = 1.0  # seconds: a change on one node is served by the other within this
TIMINGS = {}             # name -> [seconds], printed at the end of the module (pytest -s)


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("pgkey") / "operator.key"
    p.write_text(KEY + "\n")
    return str(p)


@pytest.fixture(scope="module", autouse=True)
def _report_timings():
    yield
    for name, ts in TIMINGS.items():
        if ts:
            s = sorted(ts)
            print("\n[pg timings] %s: n=%d min=%.1f ms median=%.1f ms max=%.1f ms"
                  % (name, len(s), s[0] * 1e3, s[len(s) // 2] * 1e3, s[-1] * 1e3))


class Admin:
    """The admin API of one node, as the operator (or with a tenant key)."""

    def __init__(self, node, token=KEY):
        self.node = node
        self.token = token

    def call(self, method, path, body=None, headers=None, ok=None):
        h = {"Authorization": "Bearer " + self.token}
        if body is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        r = helpers.request(method, self.node.admin_url + path, json=body, headers=h, timeout=15)
        if ok is not None:
            assert r.status_code in ok, (method, path, r.status_code, r.text)
        return r

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def versions(self):
        r = self.get("/v1/versions?limit=500", ok=(200,))
        return r.json()


def start_node(gatehouse, store, key_file, wait=True):
    """A node on store. wait=False: started but not waited for (see wait_listening)."""
    return gatehouse(NODE, expect_fail=not wait, store=store, key_file=key_file)


def wait_listening(g, timeout=15):
    deadline = time.monotonic() + timeout
    for p in (g.port, g.admin_port):
        while not port_accepts(p):
            assert g.alive(), "node exited (%s): %s" % (g.proc.returncode, g.stderr_text())
            assert time.monotonic() < deadline, "node not listening: " + g.stderr_text()
            time.sleep(0.02)


def proxy_get(g, host, path):
    return helpers.request("GET", g.url + path, headers={"Host": host}, timeout=5)


def wait_served(g, host, path, pred, limit=PROPAGATION_LIMIT, grace=3.0, name=None):
    """Poll g's proxy listener until pred(response); the seconds it took. Polls up to
    limit+grace (to report a slow propagation precisely) and asserts < limit."""
    t0 = time.monotonic()
    last = None
    while True:
        try:
            last = proxy_get(g, host, path)
            if pred(last):
                break
        except OSError as e:  # requests' ConnectionError is an OSError
            last = e
        if time.monotonic() - t0 > limit + grace:
            pytest.fail("%s%s not served as expected after %.1f s; last: %s %s"
                        % (host, path, limit + grace, getattr(last, "status_code", last), getattr(last, "text", "")[:300]))
        time.sleep(0.005)
    took = time.monotonic() - t0
    if name:
        TIMINGS.setdefault(name, []).append(took)
    assert took < limit, "%s%s took %.3f s to propagate (limit %.1f s)" % (host, path, took, limit)
    return took


def body_is(text):
    return lambda r: r.status_code == 200 and r.text == text


def respond_route(name, prefix, body):
    return {"name": name, "match": {"path": {"prefix": prefix}},
            "respond": {"status": 200, "body": body, "headers": {"Content-Type": "text/plain"}}}


def tenant_doc(name, host, routes, upstreams=None):
    d = {"name": name, "sites": [{"name": "www", "hosts": [host], "routes": routes}]}
    if upstreams:
        d["upstreams"] = upstreams
    return d


def tables(pg, db):
    out = pg.sql(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    return set(out.split())


# ---------------------------------------------------------------- migrations

def test_migrations_create_the_schema(pg_server, gatehouse, key_file):
    url = pg_server.new_database("mig_fresh")
    a = start_node(gatehouse, url, key_file)
    assert {"schema_migrations", "versions", "audit", "api_keys", "idempotency"} <= tables(pg_server, "mig_fresh")
    applied = [int(v) for v in pg_server.sql("mig_fresh", "SELECT version FROM schema_migrations ORDER BY version").split()]
    assert applied and applied == list(range(1, len(applied) + 1)), applied
    # the node works against it
    Admin(a).call("POST", "/v1/tenants", tenant_doc("m1", "m1.test", [respond_route("r", "/", "m1")]), ok=(201,))
    assert pg_server.sql("mig_fresh", "SELECT count(*) FROM versions").strip() == "1"
    # a second start against the migrated database changes nothing and works
    b = start_node(gatehouse, url, key_file)
    wait_served(b, "m1.test", "/", body_is("m1"))
    after = [int(v) for v in pg_server.sql("mig_fresh", "SELECT version FROM schema_migrations ORDER BY version").split()]
    assert after == applied


def test_nodes_starting_at_once_against_a_fresh_database(pg_server, gatehouse, key_file):
    """Two (then three) nodes started at the same moment against an empty database: one
    migrates, the others wait; none fails. Several rounds, each on a new database."""
    for rnd, n in enumerate((2, 2, 3)):
        db = "mig_race%d" % rnd
        url = pg_server.new_database(db)
        nodes = [start_node(gatehouse, url, key_file, wait=False) for _ in range(n)]
        for g in nodes:
            wait_listening(g)
        for g in nodes:
            assert g.alive(), g.stderr_text()
            assert Admin(g).get("/v1/versions").status_code == 200, g.stderr_text()
        applied = pg_server.sql(db, "SELECT version FROM schema_migrations ORDER BY version").split()
        assert applied == [str(i) for i in range(1, len(applied) + 1)], applied
        for g in nodes:
            assert g.stop() == 0, g.stderr_text()


def test_a_newer_schema_is_refused(pg_server, gatehouse, key_file):
    url = pg_server.new_database("mig_newer")
    a = start_node(gatehouse, url, key_file)
    Admin(a).call("POST", "/v1/tenants", tenant_doc("n1", "n1.test", [respond_route("r", "/", "n1")]), ok=(201,))
    assert a.stop() == 0
    pg_server.sql("mig_newer", "INSERT INTO schema_migrations (version, applied_at) VALUES (99, '2030-01-01T00:00:00Z')")
    b = start_node(gatehouse, url, key_file, wait=False)
    try:
        rc = b.wait(timeout=15)
    except Exception:
        pytest.fail("a node started on a schema newer than its own: " + b.stderr_text())
    err = b.stderr_text()
    assert rc != 0, err
    assert "99" in err and "newer" in err, err
    assert not port_accepts(b.port)
    # nothing was touched
    assert pg_server.sql("mig_newer", "SELECT max(version) FROM schema_migrations").strip() == "99"
    assert pg_server.sql("mig_newer", "SELECT count(*) FROM versions").strip() == "1"


# ---------------------------------------------------------------- two nodes, one store

@pytest.fixture(scope="module")
def pair(pg_server, gatehouse_module, key_file):
    url = pg_server.new_database("pair")
    a = start_node(gatehouse_module, url, key_file)
    b = start_node(gatehouse_module, url, key_file)
    return a, b


def test_a_change_on_a_is_served_by_b(pair, origin):
    a, b = pair
    A = Admin(a)
    host = "prop.test"
    doc = tenant_doc("prop", host,
                     [respond_route("hello", "/hello", "hello v1"),
                      {"name": "own", "match": {"path": {"prefix": "/own"}}, "upstream": "shared"},
                      {"name": "demo", "match": {"path": {"prefix": "/echo"}}, "upstream": "demo"}],
                     upstreams={"shared": {"backends": [origin.addr]}})
    # create the tenant on A
    A.call("POST", "/v1/tenants", doc, ok=(201,))
    wait_served(b, host, "/hello", body_is("hello v1"), name="create tenant")
    # its own upstream (a shared origin) and the file's upstream (each node's demo origin)
    r = proxy_get(b, host, "/own/x?via=b")
    assert r.status_code == 200 and r.json()["target"] == "/own/x?via=b", r.text[:300]
    r = proxy_get(b, host, "/echo?via=b")
    assert r.status_code == 200 and r.json()["path"] == "/echo", r.text[:300]

    for i in range(5):
        # add a route
        name = "added%d" % i
        A.call("POST", "/v1/tenants/prop/sites/www/routes?position=0",
               respond_route(name, "/" + name, "added %d" % i), ok=(201,))
        wait_served(b, host, "/" + name, body_is("added %d" % i), name="create route")
        # update it
        A.call("PUT", "/v1/tenants/prop/sites/www/routes/" + name,
               respond_route(name, "/" + name, "updated %d" % i), ok=(200,))
        wait_served(b, host, "/" + name, body_is("updated %d" % i), name="update route")
        A.call("PATCH", "/v1/tenants/prop/sites/www/routes/" + name,
               {"respond": {"body": "patched %d" % i}}, ok=(200,))
        wait_served(b, host, "/" + name, body_is("patched %d" % i), name="update route")
        # delete it
        A.call("DELETE", "/v1/tenants/prop/sites/www/routes/" + name, ok=(204,))
        wait_served(b, host, "/" + name, lambda r: r.status_code == 404, name="delete route")

    # delete the tenant
    A.call("DELETE", "/v1/tenants/prop", ok=(204,))
    wait_served(b, host, "/hello", lambda r: r.status_code == 404, name="delete tenant")
    # and the other way round: B writes, A serves
    Admin(b).call("POST", "/v1/tenants", tenant_doc("prop2", "prop2.test", [respond_route("r", "/", "from b")]),
                  ok=(201,))
    wait_served(a, "prop2.test", "/", body_is("from b"), name="create tenant (B to A)")


def test_b_shows_a_versions_and_audit(pair):
    a, b = pair
    A, B = Admin(a), Admin(b)
    A.call("PUT", "/v1/tenants/hist", tenant_doc("hist", "hist.test", [respond_route("r", "/", "h1")]), ok=(201,))
    A.call("PATCH", "/v1/tenants/hist/sites/www/routes/r", {"respond": {"body": "h2"}}, ok=(200,))
    va, vb = A.versions(), B.versions()
    assert vb["current"] == va["current"] and va["current"] >= 2, (va, vb)
    assert vb["items"] == va["items"]
    newest = va["items"][0]
    assert newest["id"] == va["current"] and newest["parent"] == va["current"] - 1
    # a version and a diff read on B
    rb = B.get("/v1/versions/%d" % va["current"], ok=(200,)).json()
    ra = A.get("/v1/versions/%d" % va["current"], ok=(200,)).json()
    assert rb == ra
    assert rb["state"]["tenants"]["hist"]["sites"][0]["routes"][0]["respond"]["body"] == "h2"
    d = B.get("/v1/versions/%d/diff" % va["current"], ok=(200,)).json()
    assert any(c["after"] == "h2" and c["before"] == "h1" for c in d["changes"]), d

    au_a = A.get("/v1/audit?tenant=hist", ok=(200,)).json()["items"]
    au_b = B.get("/v1/audit?tenant=hist", ok=(200,)).json()["items"]
    assert au_b == au_a
    assert [x["action"] for x in au_b] == ["update", "create"], au_b
    assert all(x["actor"] == "operator" and x["tenant"] == "hist" for x in au_b)
    assert au_b[0]["version"] == va["current"] and au_b[1]["version"] == va["current"] - 1
    # the whole audit (no tenant filter) matches too, page by page
    pa = A.get("/v1/audit?limit=3", ok=(200,)).json()
    pb = B.get("/v1/audit?limit=3", ok=(200,)).json()
    assert pa == pb and len(pa["items"]) == 3 and pa["next_cursor"]
    pb2 = B.get("/v1/audit?limit=3&cursor=" + pb["next_cursor"], ok=(200,)).json()
    assert pb2["items"] and pb2["items"][0]["id"] < pb["items"][-1]["id"]

    # a rollback done on B is served by A
    r = B.call("POST", "/v1/versions/%d/rollback" % (va["current"] - 1), ok=(200,))
    wait_served(a, "hist.test", "/", body_is("h1"), name="rollback (B to A)")
    assert int(r.headers["Gatehouse-Config-Version"]) == A.versions()["current"]


def test_concurrent_writers_on_both_nodes(pair):
    a, b = pair
    A, B = Admin(a), Admin(b)
    host = "busy.test"
    A.call("POST", "/v1/tenants", tenant_doc("busy", host, [respond_route("base", "/base", "base")]), ok=(201,))
    wait_served(b, host, "/base", body_is("base"))
    n = 20
    results = {}   # route name -> final status
    conflicts = {"A": 0, "B": 0}
    errors = []
    start = threading.Barrier(2)

    def writer(tag, adm):
        rng = random.Random(tag)
        try:
            start.wait(timeout=10)
            for i in range(n):
                name = "%s%02d" % (tag.lower(), i)
                route = respond_route(name, "/" + name, "route " + name)
                for attempt in range(60):  # bounded retries
                    r = adm.call("POST", "/v1/tenants/busy/sites/www/routes", route)
                    if r.status_code == 409 and r.json().get("type", "").endswith("/concurrent-modification"):
                        conflicts[tag] += 1
                        time.sleep(rng.uniform(0, 0.01))
                        continue
                    break
                results[name] = (r.status_code, r.text[:300])
        except Exception as e:  # reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=writer, args=("A", A)), threading.Thread(target=writer, args=("B", B))]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    took = time.monotonic() - t0
    assert not any(t.is_alive() for t in ts), "writers still running after 60 s"
    assert not errors, errors
    TIMINGS.setdefault("40 concurrent route creates (2 nodes)", []).append(took)
    print("\n[pg] concurrent writers: %.2f s, concurrent-modification retries: %s" % (took, conflicts))
    bad = {k: v for k, v in results.items() if v[0] != 201}
    assert len(results) == 2 * n and not bad, bad

    # both nodes end on the same version, and every acknowledged route is there on both
    deadline = time.monotonic() + 3
    while True:
        va, vb = A.versions()["current"], B.versions()["current"]
        if va == vb or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert va == vb, (va, vb)
    names_a = [x["name"] for x in A.get("/v1/tenants/busy/sites/www/routes?limit=500", ok=(200,)).json()["items"]]
    names_b = [x["name"] for x in B.get("/v1/tenants/busy/sites/www/routes?limit=500", ok=(200,)).json()["items"]]
    assert sorted(names_a) == sorted(names_b) == sorted(list(results) + ["base"])
    # the versions are a chain: one per write, each the child of the previous
    items = A.versions()["items"]
    ids = [x["id"] for x in items]
    assert ids == list(range(va, va - len(ids), -1))
    assert all(x["parent"] == x["id"] - 1 for x in items if x["id"] > 1)
    for g in (a, b):
        for name in results:
            r = proxy_get(g, host, "/" + name)
            assert r.status_code == 200 and r.text == "route " + name, (g.port, name, r.status_code, r.text[:200])


def test_tenant_keys_created_on_a_work_on_b(pair):
    a, b = pair
    A, B = Admin(a), Admin(b)
    A.call("POST", "/v1/tenants", tenant_doc("keyed", "keyed.test", [respond_route("r", "/", "k1")]), ok=(201,))
    A.call("POST", "/v1/tenants", tenant_doc("other", "other.test", [respond_route("r", "/", "o1")]), ok=(201,))
    r = A.call("POST", "/v1/tenants/keyed/keys", {"name": "ci", "scopes": ["read", "write"]}, ok=(201,))
    tok, kid = r.json()["key"], r.json()["id"]
    KB = Admin(b, token=tok)
    doc = KB.get("/v1/tenants/keyed", ok=(200,)).json()
    assert doc["sites"][0]["routes"][0]["respond"]["body"] == "k1"
    assert KB.get("/v1/tenants/other").status_code == 404
    assert KB.get("/v1/versions").status_code == 403
    # a write with the key through B, served by A and recorded as the key's
    KB.call("PATCH", "/v1/tenants/keyed/sites/www/routes/r", {"respond": {"body": "k2"}}, ok=(200,))
    wait_served(a, "keyed.test", "/", body_is("k2"), name="update route (B to A)")
    au = A.get("/v1/audit?tenant=keyed&limit=1", ok=(200,)).json()["items"][0]
    assert au["actor"] == "key:" + kid and au["action"] == "update", au
    # the key list on B shows it without its secret
    keys = B.get("/v1/tenants/keyed/keys", ok=(200,)).json()["items"]
    assert [k["id"] for k in keys] == [kid] and "key" not in keys[0] and "hash" not in keys[0]
    # revoked on B: refused on A and B at once
    B.call("DELETE", "/v1/tenants/keyed/keys/" + kid, ok=(204,))
    assert Admin(a, token=tok).get("/v1/tenants/keyed").status_code == 401
    assert KB.get("/v1/tenants/keyed").status_code == 401


def test_a_restarted_node_comes_back_with_the_stored_configuration(pg_server, gatehouse, key_file):
    url = pg_server.new_database("restart")
    a = start_node(gatehouse, url, key_file)
    b = start_node(gatehouse, url, key_file)
    A = Admin(a)
    A.call("POST", "/v1/tenants", tenant_doc("rs", "rs.test", [respond_route("r", "/", "one")]), ok=(201,))
    wait_served(b, "rs.test", "/", body_is("one"))
    assert b.stop() == 0, b.stderr_text()
    # changes while B is down
    A.call("PATCH", "/v1/tenants/rs/sites/www/routes/r", {"respond": {"body": "two"}}, ok=(200,))
    A.call("POST", "/v1/tenants/rs/sites/www/routes?position=0", respond_route("x", "/x", "ex"), ok=(201,))
    current = A.versions()["current"]
    # B again (same file, new ports): serves the stored configuration from the start,
    # before any admin request
    b2 = start_node(gatehouse, url, key_file)
    r = proxy_get(b2, "rs.test", "/")
    assert r.status_code == 200 and r.text == "two", (r.status_code, r.text)
    r = proxy_get(b2, "rs.test", "/x")
    assert r.status_code == 200 and r.text == "ex", (r.status_code, r.text)
    assert Admin(b2).versions()["current"] == current
    # and A too, restarted with nothing else running
    assert a.stop() == 0 and b2.stop() == 0
    a2 = start_node(gatehouse, url, key_file)
    assert proxy_get(a2, "rs.test", "/").text == "two"
    assert Admin(a2).versions()["current"] == current
    assert Admin(a2).get("/v1/tenants/rs", ok=(200,)).json()["sites"][0]["routes"][0]["name"] == "x"


def test_an_idempotency_key_is_shared_by_the_nodes(pair):
    a, b = pair
    A, B = Admin(a), Admin(b)
    doc = tenant_doc("idem", "idem.test", [respond_route("r", "/", "i1")])
    before = A.versions()["current"]
    r1 = A.call("POST", "/v1/tenants", doc, headers={"Idempotency-Key": "pg-idem-1"}, ok=(201,))
    r2 = B.call("POST", "/v1/tenants", doc, headers={"Idempotency-Key": "pg-idem-1"}, ok=(201,))
    assert r2.headers.get("Idempotent-Replayed") == "true", dict(r2.headers)
    assert r2.json() == r1.json()
    assert r2.headers["Gatehouse-Config-Version"] == r1.headers["Gatehouse-Config-Version"]
    assert B.versions()["current"] == before + 1
    doc["sites"][0]["routes"][0]["respond"]["body"] = "i2"
    r3 = B.call("POST", "/v1/tenants", doc, headers={"Idempotency-Key": "pg-idem-1"})
    assert r3.status_code == 422 and r3.json()["type"].endswith("/idempotency-key-reuse"), r3.text
    assert A.versions()["current"] == before + 1


def node_metrics(g):
    return helpers.parse_metrics(Admin(g).get("/metrics").text)


def test_a_node_keeps_serving_while_the_store_is_down(pg_server, pair):
    """PostgreSQL killed: both nodes keep serving the last good configuration; /readyz stays 200
    and says the store is unreachable and which version is served; the metric says 0. Back: 1,
    and the next change reaches the other node again."""
    a, b = pair
    A = Admin(a)
    A.call("POST", "/v1/tenants", tenant_doc("down", "down.test", [respond_route("r", "/", "kept")]), ok=(201,))
    wait_served(b, "down.test", "/", body_is("kept"))
    version = A.versions()["current"]
    for g in (a, b):
        assert helpers.request("GET", g.admin_url + "/readyz").text == "ready\n"
        assert helpers.metric_value(node_metrics(g), "gatehouse_config_store_up") == 1
    pg_server.crash()
    try:
        for g in (a, b):
            assert helpers.poll(lambda: helpers.metric_value(node_metrics(g), "gatehouse_config_store_up") == 0, timeout=5)
            r = helpers.request("GET", g.admin_url + "/readyz")
            assert r.status_code == 200 and "store unreachable since" in r.text, r.text
            assert "serving configuration version %d" % version in r.text, r.text
            assert helpers.metric_value(node_metrics(g), "gatehouse_config_version") == version
            assert proxy_get(g, "down.test", "/").text == "kept"
        r = A.call("PATCH", "/v1/tenants/down/sites/www/routes/r", {"respond": {"body": "x"}})
        assert r.status_code == 503, r.text
        assert "configuration store unreachable" in a.stderr_text() + a.stdout_text()
    finally:
        pg_server.start()
    for g in (a, b):
        assert helpers.poll(lambda: helpers.metric_value(node_metrics(g), "gatehouse_config_store_up") == 1, timeout=10)
        assert helpers.request("GET", g.admin_url + "/readyz").text == "ready\n"
    for attempt in range(50):
        r = A.call("PATCH", "/v1/tenants/down/sites/www/routes/r", {"respond": {"body": "back"}})
        if r.status_code == 200:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    wait_served(b, "down.test", "/", body_is("back"), limit=3.0, name="first change after the store came back")


def test_the_nodes_survive_a_postgresql_restart(pg_server, pair):
    """Last in the module: restarts the module's PostgreSQL under the running pair."""
    a, b = pair
    A = Admin(a)
    A.call("POST", "/v1/tenants", tenant_doc("pgr", "pgr.test", [respond_route("r", "/", "before")]), ok=(201,))
    wait_served(b, "pgr.test", "/", body_is("before"))
    pg_server.restart()
    # the first write after the restart may find its connection cut (503); the next works
    for attempt in range(20):
        r = A.call("PATCH", "/v1/tenants/pgr/sites/www/routes/r", {"respond": {"body": "after"}})
        if r.status_code == 200:
            break
        assert r.status_code == 503 and r.json()["type"].endswith("/store-unavailable"), r.text
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    print("\n[pg] writes refused after the PostgreSQL restart before one succeeded: %d" % attempt)
    # B reconnects (its watcher polls each second while it re-listens)
    wait_served(b, "pgr.test", "/", body_is("after"), limit=3.0, name="first change after a PostgreSQL restart")
    # and then changes propagate as fast as before
    time.sleep(1.5)
    for i in range(3):
        A.call("PATCH", "/v1/tenants/pgr/sites/www/routes/r", {"respond": {"body": "again %d" % i}}, ok=(200,))
        wait_served(b, "pgr.test", "/", body_is("again %d" % i), name="change after a PostgreSQL restart")
    assert Admin(b).versions()["current"] == A.versions()["current"]
    assert a.alive() and b.alive()
