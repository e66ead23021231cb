"""The control plane (admin REST API) against the real binary: every resource kind end to end
(each accepted write shows on the proxy listener), ETag / If-Match, Idempotency-Key, pagination,
malformed input, dry runs, versions and rollback, the audit log, API keys and tenant isolation,
persistence across a kill -9, zero failed proxy requests while the configuration changes, the
admin rate limit, refused stores at start, and SIGHUP reloads.

Most tests share one gatehouse (module scope: a SQLite store, an operator key in
GATEHOUSE_ADMIN_KEY, a demo origin, an OFREP listener) and each uses its own tenants, so they
compare version numbers relative to what they read first. Tests that restart, kill or limit
gatehouse start their own.
"""

import contextlib
import http.client
import http.server
import json
import os
import random
import re
import socketserver
import subprocess
import threading
import time
import types

import pytest

import helpers
from helpers import HEADER, closed_port, free_port, poll, port_accepts

OP_KEY = "op-cp-key-5e1f0a9c7b3d2e4f6a8b"
PROBLEM = "https://gatehouse.dev/problems/"
ETAG_RE = re.compile(r'^"[0-9a-f]{32}"$')
TENANT_KEY_RE = re.compile(r"^gh_[0-9a-f]{12}_[0-9a-f]{64}$")
OFREP_KEY = "ofrep-cp-key-0123456789abcdef"

BASE = HEADER.replace('admin: {listen: "127.0.0.1:{admin_port}"}',
                      'admin: {listen: "127.0.0.1:{admin_port}", store: "{store}", rate_limit: "{admin_rate}", '
                      'burst: {admin_burst}}')
CONFIG = BASE + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
ofrep: {listen: "127.0.0.1:{ofrep_port}"}
experiments: {store: "{tmp}/experiments.db"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: filet
    sites: [{name: fsite, hosts: ["file.test"], routes: [{name: all, upstream: demo}]}]
"""

# every answer any API call in this file got (headers and body): the operator key must be in none
ANSWERS = []


# ---------------------------------------------------------------- helpers

@contextlib.contextmanager
def admin_key_env(key):
    old = os.environ.get("GATEHOUSE_ADMIN_KEY")
    os.environ["GATEHOUSE_ADMIN_KEY"] = key
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GATEHOUSE_ADMIN_KEY", None)
        else:
            os.environ["GATEHOUSE_ADMIN_KEY"] = old


def start_gh(factory, store, config=CONFIG, key=OP_KEY, rate="100000/s", burst=1000000, expect_fail=False,
             **values):
    """A gatehouse with a control-plane store at store and the operator key in its environment."""
    ofrep_port = values.pop("ofrep_port", None) or free_port()
    with admin_key_env(key):
        gh = factory(config, store=store, ofrep_port=ofrep_port, admin_rate=rate, admin_burst=burst,
                     expect_fail=expect_fail, **values)
    gh.ofrep_port = ofrep_port
    gh.ofrep = "http://127.0.0.1:%d" % ofrep_port
    if not expect_fail and "{ofrep_port}" in config:
        assert poll(lambda: port_accepts(ofrep_port), timeout=5)
    return gh


class Api:
    """The admin API with one caller's key (the operator's by default)."""

    _DEFAULT = object()

    def __init__(self, gh, key=OP_KEY):
        self.gh = gh
        self.base = gh.admin_url
        self.key = key
        self.s = helpers.session()

    def with_key(self, key):
        return Api(self.gh, key)

    def call(self, method, path, body=None, data=None, headers=None, ctype="application/json", key=_DEFAULT):
        h = {}
        k = self.key if key is Api._DEFAULT else key
        if k:
            h["Authorization"] = "Bearer " + k
        if body is not None:
            data = json.dumps(body)
        if data is not None and ctype:
            h["Content-Type"] = ctype
        h.update(headers or {})
        r = self.s.request(method, self.base + path, data=data, headers=h, timeout=15)
        ANSWERS.append("".join("%s: %s\n" % kv for kv in r.headers.items()) + r.text)
        return r

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def current(self):
        r = self.get("/v1/versions?limit=1")
        assert r.status_code == 200, r.text
        return r.json()["current"]


def ok(r, *codes):
    assert r.status_code in codes, "%s %s -> %d %s" % (r.request.method, r.request.url, r.status_code, r.text[:800])
    return r


def problem(r, status, kind=None):
    """r is an RFC 9457 problem of this status (and type kind): its document."""
    assert r.status_code == status, "%s %s -> %d (want %d) %s" % (r.request.method, r.request.url, r.status_code,
                                                                 status, r.text[:800])
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), (r.headers, r.text[:300])
    doc = r.json()
    assert str(doc.get("type", "")).startswith(PROBLEM), doc
    assert doc.get("status") == status, doc
    if kind:
        assert doc["type"] == PROBLEM + kind, doc
    return doc


def version_of(r):
    return int(r.headers["Gatehouse-Config-Version"])


def proxy(gh, host, path="/hello", **kw):
    kw.setdefault("timeout", 5)
    return helpers.request("GET", gh.url + path, headers={"Host": host}, **kw)


def shows(gh, host, path, status, body=None, timeout=1.0):
    """The proxy answers host+path with status (and body) within timeout seconds."""
    last = []

    def check():
        r = proxy(gh, host, path)
        last[:] = [r.status_code, r.text[:200]]
        return r.status_code == status and (body is None or r.text == body)
    assert poll(check, timeout=timeout, interval=0.02), "proxy %s%s: want %s %r, got %s" % (host, path, status, body,
                                                                                          last)


def hello_tenant(name, host, body, extra=None):
    doc = {"name": name, "sites": [{"name": "main", "hosts": [host], "routes": [
        {"name": "hello", "match": {"path": {"exact": "/hello"}},
         "respond": {"status": 200, "body": body, "headers": {"Content-Type": "text/plain"}}}]}]}
    doc.update(extra or {})
    return doc


def make_tenant(api, name, host, body="hi", extra=None):
    r = ok(api.post("/v1/tenants", hello_tenant(name, host, body, extra)), 201)
    return r


def ofrep_eval(gh, flag, key=OFREP_KEY, context=None):
    return helpers.request("POST", gh.ofrep + "/ofrep/v1/evaluate/flags/" + flag,
                           data=json.dumps({"context": context or {}}),
                           headers={"X-API-Key": key, "Content-Type": "application/json"})


def sqlite(db, sql):
    p = subprocess.run(["sqlite3", db, sql], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


class _CacheOrigin(http.server.BaseHTTPRequestHandler):
    """Answers every GET 200 with Cache-Control: max-age=60 and X-Target-CC: no-store, so a tenant
    whose cache.targeted_header is X-Target-CC does not store what others do."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        body = ("origin " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60")
        self.send_header("X-Target-CC", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


# ---------------------------------------------------------------- the shared gatehouse

@pytest.fixture(scope="module")
def cp(gatehouse_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("cp")
    origin = _Server(("127.0.0.1", 0), _CacheOrigin)
    t = threading.Thread(target=origin.serve_forever, daemon=True)
    t.start()
    gh = start_gh(gatehouse_module, str(d / "store" / "gatehouse.db"))
    ns = types.SimpleNamespace(gh=gh, api=Api(gh), demo=gh.values["demo_port"], origin_port=origin.server_address[1],
                               db=str(d / "store" / "gatehouse.db"))
    yield ns
    origin.shutdown()
    origin.server_close()


# ---------------------------------------------------------------- 1. CRUD of every kind

def test_tenant_crud_shows_on_the_proxy(cp):
    api, gh = cp.api, cp.gh
    v0 = api.current()
    r = make_tenant(api, "t-crud", "t-crud.test", "crud-1")
    assert r.headers["Location"] == "/v1/tenants/t-crud"
    assert ETAG_RE.match(r.headers["ETag"]), r.headers
    assert version_of(r) == v0 + 1
    assert r.json()["name"] == "t-crud"
    shows(gh, "t-crud.test", "/hello", 200, "crud-1")
    g = ok(api.get("/v1/tenants/t-crud"), 200)
    assert g.headers["ETag"] == r.headers["ETag"] and g.json() == hello_tenant("t-crud", "t-crud.test", "crud-1")
    assert "Gatehouse-Origin" not in g.headers
    h = ok(api.call("HEAD", "/v1/tenants/t-crud"), 200)
    assert h.headers["ETag"] == r.headers["ETag"] and h.content == b""
    lst = ok(api.get("/v1/tenants?prefix=t-crud"), 200).json()
    assert [t["name"] for t in lst["items"]] == ["t-crud"]
    problem(api.post("/v1/tenants", hello_tenant("t-crud", "t-crud2.test", "x")), 409, "already-exists")
    # replace
    r = ok(api.put("/v1/tenants/t-crud", hello_tenant("t-crud", "t-crud.test", "crud-2")), 200)
    assert version_of(r) == v0 + 2 and "Location" not in r.headers
    shows(gh, "t-crud.test", "/hello", 200, "crud-2")
    # merge patch: the sites array is replaced, a new host answers, the old one not
    doc = hello_tenant("t-crud", "t-crud-b.test", "crud-3")
    r = ok(api.patch("/v1/tenants/t-crud", {"sites": doc["sites"]}, ctype="application/merge-patch+json"), 200)
    assert version_of(r) == v0 + 3
    shows(gh, "t-crud-b.test", "/hello", 200, "crud-3")
    shows(gh, "t-crud.test", "/hello", 404)
    # delete
    r = ok(api.delete("/v1/tenants/t-crud"), 204)
    assert version_of(r) == v0 + 4 and r.content == b""
    shows(gh, "t-crud-b.test", "/hello", 404)
    problem(api.get("/v1/tenants/t-crud"), 404, "not-found")
    problem(api.delete("/v1/tenants/t-crud"), 404, "not-found")
    # PUT creates an absent tenant (operator)
    r = ok(api.put("/v1/tenants/t-crud", hello_tenant("t-crud", "t-crud.test", "crud-5")), 201)
    assert r.headers["Location"] == "/v1/tenants/t-crud" and version_of(r) == v0 + 5
    shows(gh, "t-crud.test", "/hello", 200, "crud-5")
    ok(api.delete("/v1/tenants/t-crud"), 204)
    shows(gh, "t-crud.test", "/hello", 404)


def test_site_crud_shows_on_the_proxy(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-site", "t-site.test", "main")
    site = {"name": "second", "hosts": ["second.t-site.test"],
            "routes": [{"name": "all", "respond": {"status": 200, "body": "second-1"}}]}
    r = ok(api.post("/v1/tenants/t-site/sites", site), 201)
    assert r.headers["Location"] == "/v1/tenants/t-site/sites/second" and ETAG_RE.match(r.headers["ETag"])
    shows(gh, "second.t-site.test", "/anything", 200, "second-1")
    g = ok(api.get("/v1/tenants/t-site/sites/second"), 200)
    assert g.json() == site and g.headers["ETag"] == r.headers["ETag"]
    assert [s["name"] for s in ok(api.get("/v1/tenants/t-site/sites"), 200).json()["items"]] == ["main", "second"]
    problem(api.post("/v1/tenants/t-site/sites", site), 409, "already-exists")
    site["routes"][0]["respond"]["body"] = "second-2"
    ok(api.put("/v1/tenants/t-site/sites/second", site), 200)
    shows(gh, "second.t-site.test", "/x", 200, "second-2")
    ok(api.patch("/v1/tenants/t-site/sites/second", {"hosts": ["third.t-site.test"]}), 200)
    shows(gh, "third.t-site.test", "/x", 200, "second-2")
    shows(gh, "second.t-site.test", "/x", 404)
    ok(api.delete("/v1/tenants/t-site/sites/second"), 204)
    shows(gh, "third.t-site.test", "/x", 404)
    shows(gh, "t-site.test", "/hello", 200, "main")
    problem(api.get("/v1/tenants/t-site/sites/second"), 404, "not-found")
    # PUT creates an absent site
    r = ok(api.put("/v1/tenants/t-site/sites/fourth", dict(site, name="fourth", hosts=["fourth.t-site.test"])), 201)
    assert r.headers["Location"] == "/v1/tenants/t-site/sites/fourth"
    shows(gh, "fourth.t-site.test", "/x", 200, "second-2")


def test_route_crud_and_order_show_on_the_proxy(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-route", "t-route.test", "hello")
    base = "/v1/tenants/t-route/sites/main/routes"
    r1 = {"name": "r1", "match": {"path": {"prefix": "/r"}}, "respond": {"status": 200, "body": "r1-a"}}
    r = ok(api.post(base, r1), 201)
    assert r.headers["Location"] == base + "/r1"
    shows(gh, "t-route.test", "/r/zero", 200, "r1-a")
    # inserted first: it matches before r1
    r0 = {"name": "r0", "match": {"path": {"prefix": "/r/zero"}}, "respond": {"status": 201, "body": "r0"}}
    ok(api.post(base + "?position=0", r0), 201)
    shows(gh, "t-route.test", "/r/zero", 201, "r0")
    shows(gh, "t-route.test", "/r/other", 200, "r1-a")
    site = ok(api.get("/v1/tenants/t-route/sites/main"), 200).json()
    assert [x["name"] for x in site["routes"]] == ["r0", "hello", "r1"]
    assert [x["name"] for x in ok(api.get(base), 200).json()["items"]] == ["r0", "hello", "r1"]  # in match order
    assert ok(api.get(base + "/r1"), 200).json() == r1
    r1["respond"] = {"status": 202, "body": "r1-b"}
    ok(api.put(base + "/r1", r1), 200)
    shows(gh, "t-route.test", "/r/x", 202, "r1-b")
    ok(api.patch(base + "/r1", {"respond": {"body": "r1-c"}}), 200)
    shows(gh, "t-route.test", "/r/x", 202, "r1-c")
    assert ok(api.get(base + "/r1"), 200).json()["respond"] == {"status": 202, "body": "r1-c"}
    ok(api.delete(base + "/r0"), 204)
    shows(gh, "t-route.test", "/r/zero", 202, "r1-c")
    ok(api.delete(base + "/r1"), 204)
    shows(gh, "t-route.test", "/r/x", 404)
    problem(api.get(base + "/r1"), 404, "not-found")
    problem(api.get("/v1/tenants/t-route/sites/nosite/routes"), 404, "not-found")


def test_upstream_crud_reaches_the_demo_origin(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-up", "t-up.test", "hello")
    pool = {"name": "origin", "backends": ["127.0.0.1:%d" % cp.demo]}
    r = ok(api.post("/v1/tenants/t-up/upstreams", pool), 201)
    assert r.headers["Location"] == "/v1/tenants/t-up/upstreams/origin"
    assert ok(api.get("/v1/tenants/t-up/upstreams/origin"), 200).json() == pool
    # the tenant document keeps pools in a map, without their name
    assert ok(api.get("/v1/tenants/t-up"), 200).json()["upstreams"] == {"origin": {"backends": pool["backends"]}}
    ok(api.post("/v1/tenants/t-up/sites/main/routes",
                {"name": "app", "match": {"path": {"prefix": "/echo"}}, "upstream": "origin"}), 201)

    def echoed():
        r = proxy(gh, "t-up.test", "/echo?cp=1")
        return r.status_code == 200 and r.headers.get("Content-Type", "").startswith("application/json") and \
            r.json().get("path") == "/echo"
    assert poll(echoed, timeout=1.0)
    ok(api.put("/v1/tenants/t-up/upstreams/origin", {"backends": ["127.0.0.1:%d" % closed_port()]}), 200)
    shows(gh, "t-up.test", "/echo/x", 502)
    ok(api.patch("/v1/tenants/t-up/upstreams/origin", {"backends": ["127.0.0.1:%d" % cp.demo]}), 200)
    assert poll(echoed, timeout=1.0)
    # a pool a route uses cannot go: 422 naming the route's upstream, nothing changed
    v = api.current()
    doc = problem(api.delete("/v1/tenants/t-up/upstreams/origin"), 422, "invalid-configuration")
    assert any("upstream" in e.get("path", "") for e in doc["errors"]), doc
    assert api.current() == v
    assert echoed()
    ok(api.delete("/v1/tenants/t-up/sites/main/routes/app"), 204)
    ok(api.delete("/v1/tenants/t-up/upstreams/origin"), 204)
    problem(api.get("/v1/tenants/t-up/upstreams/origin"), 404, "not-found")
    shows(gh, "t-up.test", "/echo/x", 404)
    # the operator may route an API tenant to one of the file's pools
    ok(api.post("/v1/tenants/t-up/sites/main/routes", {"name": "filepool", "upstream": "demo"}), 201)
    assert poll(echoed, timeout=1.0)


def test_flag_crud_shows_over_ofrep(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-flag", "t-flag.test", "hello",
                {"flags": {"api_keys": [OFREP_KEY], "definition": {"flags": {
                    "base": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}}}}})
    assert ofrep_eval(gh, "base").json()["value"] == 1
    flag = {"key": "beta", "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    r = ok(api.post("/v1/tenants/t-flag/flags", flag), 201)
    assert r.headers["Location"] == "/v1/tenants/t-flag/flags/beta"
    assert ok(api.get("/v1/tenants/t-flag/flags/beta"), 200).json() == flag

    def value_is(v):
        r = ofrep_eval(gh, "beta")
        return r.status_code == 200 and r.json().get("value") is v
    assert poll(lambda: value_is(False), timeout=1.0), ofrep_eval(gh, "beta").text
    ok(api.put("/v1/tenants/t-flag/flags/beta", dict(flag, defaultVariant="on")), 200)
    assert poll(lambda: value_is(True), timeout=1.0)
    ok(api.patch("/v1/tenants/t-flag/flags/beta", {"state": "DISABLED"}), 200)
    assert poll(lambda: ofrep_eval(gh, "beta").status_code == 404, timeout=1.0)
    ok(api.patch("/v1/tenants/t-flag/flags/beta", {"state": "ENABLED"}), 200)
    assert poll(lambda: value_is(True), timeout=1.0)
    # an invalid flag: 422 naming the place
    doc = problem(api.put("/v1/tenants/t-flag/flags/beta", dict(flag, defaultVariant="nope")), 422)
    assert doc["errors"] and all("path" in e for e in doc["errors"]), doc
    assert value_is(True)
    ok(api.delete("/v1/tenants/t-flag/flags/beta"), 204)
    assert poll(lambda: ofrep_eval(gh, "beta").status_code == 404, timeout=1.0)
    assert ofrep_eval(gh, "base").json()["value"] == 1
    keys = [f["key"] for f in ok(api.get("/v1/tenants/t-flag/flags"), 200).json()["items"]]
    assert keys == ["base"]


EXP_FLAGS = {"flags": {"api_keys": ["exp-ofrep-key-0123456789abcdef"], "definition": {"flags": {
    "home": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
             "targeting": {"fractional": [["on", 50], ["off", 50]]}}}}}}


def test_experiment_crud_shows_in_results(cp):
    api = cp.api
    make_tenant(api, "t-exp", "t-exp.test", "hello", EXP_FLAGS)
    exp = {"id": "e1", "flag": "home", "variants": ["off", "on"],
           "metrics": [{"name": "buy", "kind": "conversion", "path": "/buy"}]}
    results = "/v1/experiments/e1/results?tenant=t-exp"
    assert api.get(results).status_code == 404
    r = ok(api.post("/v1/tenants/t-exp/experiments", exp), 201)
    assert r.headers["Location"] == "/v1/tenants/t-exp/experiments/e1"
    assert poll(lambda: api.get(results).status_code == 200, timeout=1.0)
    res = api.get(results).json()
    assert [m["name"] for m in res["metrics"]] == ["buy"]
    exp["metrics"].append({"name": "visits", "kind": "conversion", "path": "/visit"})
    ok(api.put("/v1/tenants/t-exp/experiments/e1", exp), 200)
    assert poll(lambda: [m["name"] for m in api.get(results).json()["metrics"]] == ["buy", "visits"], timeout=1.0)
    ok(api.patch("/v1/tenants/t-exp/experiments/e1", {"alpha": 0.1}), 200)
    assert ok(api.get("/v1/tenants/t-exp/experiments/e1"), 200).json()["alpha"] == 0.1
    # an experiment on a flag the tenant lacks: 422 naming experiments[..].flag
    v = api.current()
    doc = problem(api.post("/v1/tenants/t-exp/experiments", dict(exp, id="e2", flag="nope")), 422,
                  "invalid-configuration")
    assert any(e.get("path", "").endswith(".flag") and "experiments" in e["path"] for e in doc["errors"]), doc
    assert api.current() == v
    ok(api.delete("/v1/tenants/t-exp/experiments/e1"), 204)
    assert poll(lambda: api.get(results).status_code == 404, timeout=1.0)


def test_protection_crud_shows_on_the_proxy(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-prot", "t-prot.test", "open")
    problem(api.get("/v1/tenants/t-prot/protection"), 404, "not-found")
    r = ok(api.put("/v1/tenants/t-prot/protection", {"deny": ["127.0.0.1/32"]}), 201)
    assert r.headers["Location"] == "/v1/tenants/t-prot/protection"
    shows(gh, "t-prot.test", "/hello", 403)
    assert ok(api.get("/v1/tenants/t-prot/protection"), 200).json() == {"deny": ["127.0.0.1/32"]}
    ok(api.patch("/v1/tenants/t-prot/protection",
                 {"deny": None, "rate_limits": [{"name": "tight", "rate": "1/m", "burst": 1}]}), 200)
    assert ok(api.get("/v1/tenants/t-prot/protection"), 200).json() == {
        "rate_limits": [{"name": "tight", "rate": "1/m", "burst": 1}]}
    codes = [proxy(gh, "t-prot.test").status_code for _ in range(4)]
    assert codes[0] == 200 and 429 in codes, codes
    ok(api.put("/v1/tenants/t-prot/protection", {"deny": ["10.9.9.9"]}), 200)
    shows(gh, "t-prot.test", "/hello", 200, "open")
    ok(api.delete("/v1/tenants/t-prot/protection"), 204)
    problem(api.get("/v1/tenants/t-prot/protection"), 404, "not-found")
    shows(gh, "t-prot.test", "/hello", 200, "open")
    doc = problem(api.put("/v1/tenants/t-prot/protection", {"deny": ["not-an-address"]}), 422)
    assert any("deny" in e.get("path", "") for e in doc["errors"]), doc


def test_cache_crud_shows_on_the_proxy(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-cache", "t-cache.test", "hello",
                {"upstreams": {"o": {"backends": ["127.0.0.1:%d" % cp.origin_port]}}})
    ok(api.post("/v1/tenants/t-cache/sites/main/routes",
                {"name": "c", "match": {"path": {"prefix": "/c/"}}, "upstream": "o", "cache": {"default_ttl": "60s"}}),
       201)

    def cached_on_second(path):
        first = proxy(gh, "t-cache.test", path)
        assert first.status_code == 200, first.text
        second = proxy(gh, "t-cache.test", path)
        return "hit" in second.headers.get("Cache-Status", "")
    assert cached_on_second("/c/1")
    # the tenant's targeted field now governs: X-Target-CC: no-store is not stored
    r = ok(api.put("/v1/tenants/t-cache/cache", {"targeted_header": "X-Target-CC"}), 201)
    assert r.headers["Location"] == "/v1/tenants/t-cache/cache"
    assert not cached_on_second("/c/2")
    ok(api.patch("/v1/tenants/t-cache/cache", {"targeted_header": "X-Other-CC"}), 200)
    assert ok(api.get("/v1/tenants/t-cache/cache"), 200).json() == {"targeted_header": "X-Other-CC"}
    assert cached_on_second("/c/3")
    ok(api.put("/v1/tenants/t-cache/cache", {"targeted_header": "X-Target-CC"}), 200)
    assert not cached_on_second("/c/4")
    ok(api.delete("/v1/tenants/t-cache/cache"), 204)
    problem(api.get("/v1/tenants/t-cache/cache"), 404, "not-found")
    assert cached_on_second("/c/5")
    # a purge through the tenant's endpoint empties what it stored
    r = ok(api.post("/v1/tenants/t-cache/purges", {"all": True}), 200)
    assert r.json()["soft"] is False
    assert "hit" not in proxy(gh, "t-cache.test", "/c/5").headers.get("Cache-Status", "")
    assert cached_on_second("/c/6")
    r = ok(api.post("/v1/tenants/t-cache/purges", {"prefixes": ["t-cache.test/c/6"], "soft": True}), 200)
    assert r.json() == {"purged": 1, "soft": True}
    assert "hit" not in proxy(gh, "t-cache.test", "/c/6").headers.get("Cache-Status", "")
    problem(api.post("/v1/tenants/t-cache/purges", {"tags": []}), 422, "invalid-purge")
    problem(api.put("/v1/tenants/t-cache/cache", {"targeted_header": ["X-A"]}), 422, "invalid-configuration")


def test_purge_all_counts_what_it_purged(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-purge", "t-purge.test", "hello",
                {"upstreams": {"o": {"backends": ["127.0.0.1:%d" % cp.origin_port]}}})
    ok(api.post("/v1/tenants/t-purge/sites/main/routes",
                {"name": "c", "match": {"path": {"prefix": "/c/"}}, "upstream": "o", "cache": {"default_ttl": "60s"}}),
       201)
    for i in range(3):
        proxy(gh, "t-purge.test", "/c/%d" % i)
        assert "hit" in proxy(gh, "t-purge.test", "/c/%d" % i).headers.get("Cache-Status", "")
    r = ok(api.post("/v1/tenants/t-purge/purges", {"all": True}), 200)
    assert r.json() == {"purged": 3, "soft": False}


def test_route_pages_follow_match_order_across_deletes(cp):
    api = cp.api
    make_tenant(api, "t-rpage", "t-rpage.test", "x")
    base = "/v1/tenants/t-rpage/sites/main/routes"
    for i in range(12):
        ok(api.post(base + "?position=0", {"name": "z%02d" % i, "match": {"path": {"exact": "/z/%d" % i}},
                                           "respond": {"status": 200, "body": "z%d" % i}}), 201)
    order = [x["name"] for x in ok(api.get(base + "?limit=500"), 200).json()["items"]]
    assert order == ["z%02d" % i for i in range(11, -1, -1)] + ["hello"]
    seen, cur, deleted = [], "", False
    for _ in range(10):
        doc = ok(api.get(base + "?limit=4" + cur), 200).json()
        seen += [x["name"] for x in doc["items"]]
        if not doc["next_cursor"]:
            break
        if not deleted:  # the last item of the page goes before the next page is asked for
            ok(api.delete(base + "/" + seen[-1]), 204)
            deleted = True
        cur = "&cursor=" + doc["next_cursor"]
    assert seen == order, seen


# ---------------------------------------------------------------- 2. ETag / If-Match

def test_etags_and_preconditions(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-etag", "t-etag.test", "v0")
    item = "/v1/tenants/t-etag/sites/main/routes/hello"
    g = ok(api.get(item), 200)
    e1, route = g.headers["ETag"], g.json()
    assert ETAG_RE.match(e1)
    assert ok(api.get(item), 200).headers["ETag"] == e1  # stable
    route["respond"]["body"] = "v1"
    r = ok(api.put(item, route, headers={"If-Match": e1}), 200)
    e2 = r.headers["ETag"]
    assert e2 != e1 and ok(api.get(item), 200).headers["ETag"] == e2
    shows(gh, "t-etag.test", "/hello", 200, "v1")
    # stale: 412 and nothing changes
    v = api.current()
    for method, body in (("PUT", dict(route, respond={"status": 200, "body": "stale"})),
                         ("PATCH", {"respond": {"body": "stale"}}), ("DELETE", None)):
        problem(api.call(method, item, body, headers={"If-Match": e1}), 412, "precondition-failed")
    problem(api.put(item, route, headers={"If-Match": 'W/' + e2}), 412)  # weak tags never match If-Match
    assert api.current() == v
    g = ok(api.get(item), 200)
    assert g.headers["ETag"] == e2 and g.json()["respond"]["body"] == "v1"
    shows(gh, "t-etag.test", "/hello", 200, "v1")
    # a list of tags, one current; "*" on an existing item
    ok(api.patch(item, {"respond": {"body": "v2"}}, headers={"If-Match": '"00000000000000000000000000000000", ' + e2}),
       200)
    e3 = ok(api.get(item), 200).headers["ETag"]
    ok(api.patch(item, {"respond": {"body": "v3"}}, headers={"If-Match": "*"}), 200)
    # "*" on an absent item: not created
    problem(api.put("/v1/tenants/t-etag/sites/main/routes/absent", {"respond": {"status": 200}},
                    headers={"If-Match": "*"}), 412)
    problem(api.get("/v1/tenants/t-etag/sites/main/routes/absent"), 404)
    # If-None-Match -> 304 (weak comparison), other tags -> 200
    e4 = ok(api.get(item), 200).headers["ETag"]
    assert e4 != e3
    r = api.get(item, headers={"If-None-Match": e4})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == e4
    assert api.get(item, headers={"If-None-Match": "W/" + e4}).status_code == 304
    assert api.get(item, headers={"If-None-Match": "*"}).status_code == 304
    assert api.get(item, headers={"If-None-Match": e1}).status_code == 200
    # the tenant and a singleton have ETags and preconditions too
    te = ok(api.get("/v1/tenants/t-etag"), 200).headers["ETag"]
    assert api.get("/v1/tenants/t-etag", headers={"If-None-Match": te}).status_code == 304
    problem(api.patch("/v1/tenants/t-etag", {"cache": {"targeted_header": "X-A"}}, headers={"If-Match": e1}), 412)
    ok(api.patch("/v1/tenants/t-etag", {"cache": {"targeted_header": "X-A"}}, headers={"If-Match": te}), 200)
    ce = ok(api.get("/v1/tenants/t-etag/cache"), 200).headers["ETag"]
    problem(api.put("/v1/tenants/t-etag/cache", {"targeted_header": "X-B"}, headers={"If-Match": te}), 412)
    problem(api.delete("/v1/tenants/t-etag/cache", headers={"If-Match": te}), 412)
    ok(api.delete("/v1/tenants/t-etag/cache", headers={"If-Match": ce}), 204)


def test_concurrent_writers_exactly_one_wins_per_round(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-race", "t-race.test", "start")
    item = "/v1/tenants/t-race/sites/main/routes/hello"
    n = 6
    for rnd in range(4):
        barrier = threading.Barrier(n)
        results = [None] * n

        def writer(i):
            a = Api(gh)
            g = a.get(item)
            body = g.json()
            body["respond"]["body"] = "round%d-writer%d" % (rnd, i)
            barrier.wait(timeout=10)
            r = a.put(item, body, headers={"If-Match": g.headers["ETag"]})
            results[i] = (r.status_code, body["respond"]["body"], r.headers.get("ETag"))
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        codes = sorted(x[0] for x in results)
        assert codes == [200] + [412] * (n - 1), results
        winner = next(x for x in results if x[0] == 200)
        g = ok(api.get(item), 200)
        assert g.json()["respond"]["body"] == winner[1] and g.headers["ETag"] == winner[2]
        shows(gh, "t-race.test", "/hello", 200, winner[1])


# ---------------------------------------------------------------- 3. Idempotency-Key

def test_idempotency_key_replays_and_refuses_reuse(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-idem", "t-idem.test", "hello")
    coll = "/v1/tenants/t-idem/sites/main/routes"
    body = {"name": "once", "match": {"path": {"exact": "/once"}}, "respond": {"status": 200, "body": "once"}}
    v0 = api.current()
    audit0 = len(ok(api.get("/v1/audit?tenant=t-idem&limit=500"), 200).json()["items"])
    h = {"Idempotency-Key": "idem-create-1"}
    r1 = ok(api.post(coll, body, headers=h), 201)
    assert "Idempotent-Replayed" not in r1.headers
    r2 = ok(api.post(coll, body, headers=h), 201)
    assert r2.headers.get("Idempotent-Replayed") == "true"
    assert r2.json() == r1.json()
    for k in ("ETag", "Location", "Gatehouse-Config-Version"):
        assert r2.headers[k] == r1.headers[k], k
    assert api.current() == v0 + 1
    assert [x["name"] for x in ok(api.get(coll), 200).json()["items"]] == ["hello", "once"]
    audit = ok(api.get("/v1/audit?tenant=t-idem&limit=500"), 200).json()["items"]
    assert len(audit) == audit0 + 1
    shows(gh, "t-idem.test", "/once", 200, "once")
    # the same key with another body, or another target: 422, nothing stored
    problem(api.post(coll, dict(body, respond={"status": 200, "body": "twice"}), headers=h), 422,
            "idempotency-key-reuse")
    problem(api.post(coll + "?position=0", body, headers=h), 422, "idempotency-key-reuse")
    problem(api.put(coll + "/once", body, headers=h), 422, "idempotency-key-reuse")
    assert api.current() == v0 + 1
    # a fresh key: the POST itself is refused (it exists)
    problem(api.post(coll, body, headers={"Idempotency-Key": "idem-create-2"}), 409, "already-exists")
    # DELETE replayed: the stored 204, not a 404
    hd = {"Idempotency-Key": "idem-delete-1"}
    d1 = ok(api.delete(coll + "/once", headers=hd), 204)
    d2 = ok(api.delete(coll + "/once", headers=hd), 204)
    assert d2.headers.get("Idempotent-Replayed") == "true" and d2.headers["Gatehouse-Config-Version"] == \
        d1.headers["Gatehouse-Config-Version"]
    assert api.current() == v0 + 2
    # a dry run is not recorded: the same key then does the real write
    hk = {"Idempotency-Key": "idem-dry-1"}
    ok(api.post(coll + "?dry_run=true", body, headers=hk), 200)
    ok(api.post(coll + "?dry_run=true", body, headers=hk), 200)
    # the key is per caller: a tenant key using the operator's key value is not replayed the operator's answer
    k = ok(api.post("/v1/tenants/t-idem/keys", {"name": "w", "scopes": ["read", "write"]}), 201).json()["key"]
    r = api.with_key(k).post(coll, dict(body, name="mine"), headers=h)
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers, r.text
    problem(api.post(coll, body, headers={"Idempotency-Key": "x" * 256}), 400)
    problem(api.post(coll, body, headers={"Idempotency-Key": ""}), 400)


# ---------------------------------------------------------------- 4. pagination

def test_pagination_walks_every_item_once_in_order(cp):
    api = cp.api
    make_tenant(api, "t-page", "t-page.test", "hello",
                {"flags": {"api_keys": ["page-ofrep-key-0123456789abcd"], "definition": {"flags": {}}}})
    names = ["f%03d" % i for i in range(120)] + ["g%02d" % i for i in range(5)]
    random.Random(4).shuffle(names)
    t0 = time.monotonic()
    for nm in names:
        ok(api.post("/v1/tenants/t-page/flags",
                    {"key": nm, "state": "ENABLED", "variants": {"a": nm}, "defaultVariant": "a"}), 201)
    write_s = time.monotonic() - t0
    seen, url, pages = [], "/v1/tenants/t-page/flags?limit=7", 0
    while url and pages < 40:
        r = ok(api.get(url), 200)
        doc = r.json()
        assert len(doc["items"]) <= 7
        seen += [f["key"] for f in doc["items"]]
        assert doc["items"][0]["variants"]["a"] == doc["items"][0]["key"]
        nc = doc["next_cursor"]
        if nc:
            assert re.match(r"^[0-9a-f]+$", nc) and 'rel="next"' in r.headers.get("Link", "")
            url = "/v1/tenants/t-page/flags?limit=7&cursor=" + nc
        else:
            assert "Link" not in r.headers
            url = None
        pages += 1
    assert seen == sorted(names), "walked %d items" % len(seen)
    assert pages == (len(names) + 6) // 7
    # following the Link header itself
    seen, url = [], "/v1/tenants/t-page/flags?limit=50"
    for _ in range(10):
        r = ok(api.get(url), 200)
        seen += [f["key"] for f in r.json()["items"]]
        m = re.match(r"<([^>]+)>", r.headers.get("Link", ""))
        if not m:
            break
        url = m.group(1)
    assert seen == sorted(names)
    # prefix
    doc = ok(api.get("/v1/tenants/t-page/flags?prefix=f01&limit=500"), 200).json()
    assert [f["key"] for f in doc["items"]] == ["f%03d" % i for i in range(10, 20)] and doc["next_cursor"] is None
    seen, cur = [], ""
    for _ in range(10):
        doc = ok(api.get("/v1/tenants/t-page/flags?prefix=g&limit=2" + cur), 200).json()
        seen += [f["key"] for f in doc["items"]]
        if not doc["next_cursor"]:
            break
        cur = "&cursor=" + doc["next_cursor"]
    assert seen == ["g%02d" % i for i in range(5)]
    assert ok(api.get("/v1/tenants/t-page/flags?prefix=zz"), 200).json() == {"items": [], "next_cursor": None}
    # default page size 50, max 500
    assert len(ok(api.get("/v1/tenants/t-page/flags"), 200).json()["items"]) == 50
    assert len(ok(api.get("/v1/tenants/t-page/flags?limit=500"), 200).json()["items"]) == 125
    for bad in ("limit=0", "limit=501", "limit=-1", "limit=abc", "limit=7x", "cursor=zz", "cursor=abc",
                "cursor=6", "cursor=" + "61" * 200):
        problem(api.get("/v1/tenants/t-page/flags?" + bad), 400, "bad-request")
    for bad in ("limit=0", "limit=501", "limit=7x", "cursor=x", "cursor=5x"):
        problem(api.get("/v1/audit?" + bad), 400, "bad-request")
        problem(api.get("/v1/versions?" + bad), 400, "bad-request")
    assert write_s < 60, "125 writes took %.1f s" % write_s


def test_pagination_link_keeps_the_prefix(cp):
    api = cp.api
    if api.get("/v1/tenants/t-page").status_code != 200:
        pytest.skip("needs test_pagination_walks_every_item_once_in_order")
    seen, url = [], "/v1/tenants/t-page/flags?prefix=f02&limit=3"
    for _ in range(10):
        r = ok(api.get(url), 200)
        seen += [f["key"] for f in r.json()["items"]]
        m = re.match(r"<([^>]+)>", r.headers.get("Link", ""))
        if not m:
            break
        url = m.group(1)
    assert seen == ["f%03d" % i for i in range(20, 30)]


# ---------------------------------------------------------------- 5. malformed input

def test_malformed_input_is_refused_with_problems_and_changes_nothing(cp):
    api = cp.api
    make_tenant(api, "t-bad", "t-bad.test", "fine")
    site = "/v1/tenants/t-bad/sites/main"
    route = site + "/routes/hello"

    def snapshot():
        g = ok(api.get("/v1/tenants/t-bad"), 200)
        return api.current(), g.headers["ETag"], g.text

    before = snapshot()
    cases = [
        # (method, path, raw body, content type, status, problem type, error path part)
        ("POST", "/v1/tenants/t-bad/sites", '{"name": "x", "hosts": [', "application/json", 400, "invalid-json", None),
        ("PUT", route, '{"name": "hello", "name": "hello"}', "application/json", 400, "invalid-json", None),
        ("PUT", route, "[1, 2]", "application/json", 400, "invalid-json", None),
        ("PUT", route, '"text"', "application/json", 400, "invalid-json", None),
        ("PUT", route, "", "application/json", 400, "invalid-json", None),
        ("PATCH", route, "null", "application/merge-patch+json", 400, "invalid-json", None),
        ("PUT", site, json.dumps({"name": "main", "hosts": 3}), "application/json", 422, "invalid-configuration",
         "hosts"),
        ("PUT", route, json.dumps({"name": "hello", "respond": {"status": "x"}}), "application/json", 422,
         "invalid-configuration", "status"),
        ("PATCH", route, json.dumps({"respond": {"status": 99}}), "application/json", 422, "invalid-configuration",
         "status"),
        ("PUT", route, json.dumps({"name": "hello", "respond": {"status": 200}, "bogus_key": 1}), "application/json",
         422, "invalid-configuration", "bogus_key"),
        ("POST", "/v1/tenants/t-bad/sites", json.dumps({"name": "s2", "hosts": ["s2.test"], "colour": "red"}),
         "application/json", 422, "invalid-configuration", "colour"),
        ("PATCH", "/v1/tenants/t-bad", json.dumps({"sitez": []}), "application/json", 422, "invalid-configuration",
         "sitez"),
        ("POST", "/v1/tenants/t-bad/sites/main/routes",
         json.dumps({"name": "both", "upstream": "demo", "respond": {"status": 200}}), "application/json", 422,
         "invalid-configuration", None),
        ("POST", "/v1/tenants/t-bad/sites", json.dumps({"name": "dup", "hosts": ["t-bad.test"]}), "application/json",
         422, "invalid-configuration", "hosts"),
        ("PUT", route, json.dumps({"name": "hello", "respond": {"status": 200}}), None, 415, "unsupported-media-type",
         None),
        ("PUT", route, json.dumps({"name": "hello", "respond": {"status": 200}}), "text/plain", 415,
         "unsupported-media-type", None),
        ("PUT", route, json.dumps({"name": "hello", "respond": {"status": 200}}), "application/merge-patch+json", 415,
         "unsupported-media-type", None),
        ("POST", "/v1/tenants", json.dumps({"name": "x"}), "application/x-www-form-urlencoded", 415,
         "unsupported-media-type", None),
        ("GET", "/v1/tenants/%ZZ", None, None, 404, "not-found", None),
        ("GET", "/v1/tenants/a%00b", None, None, 404, "not-found", None),
        ("GET", "/v1/tenants/" + "n" * 200, None, None, 404, "not-found", None),
        ("GET", "/v1/tenants/t-bad/sites/main/routes/hello/extra", None, None, 404, "not-found", None),
        ("GET", "/v1/tenants/t-bad/nothing", None, None, 404, "not-found", None),
        ("GET", "/v1/tenants//sites", None, None, 404, "not-found", None),
        ("PUT", "/v1/tenants/t-bad/sites/main/routes/bad%22name", json.dumps({"respond": {"status": 200}}),
         "application/json", 422, "invalid-configuration", None),
        ("PUT", "/v1/tenants/t-bad/sites/bad%20name", json.dumps({"hosts": ["b.test"]}), "application/json", 422,
         "invalid-configuration", None),
        ("PUT", route, json.dumps({"name": "other", "respond": {"status": 200}}), "application/json", 422,
         "invalid-configuration", None),
        ("POST", "/v1/tenants/t-bad/sites", json.dumps({"hosts": ["noname.test"]}), "application/json", 422,
         "invalid-configuration", None),
        ("POST", "/v1/tenants", json.dumps({"name": "bad/name"}), "application/json", 422, "invalid-configuration",
         None),
        ("POST", "/v1/tenants/t-bad/sites/main/routes?position=-1",
         json.dumps({"name": "p", "respond": {"status": 200}}), "application/json", 400, "bad-request", None),
        ("PUT", "/v1/tenants/t-bad/sites", json.dumps({"name": "x"}), "application/json", 405, "method-not-allowed",
         None),
        ("DELETE", "/v1/tenants", None, None, 405, "method-not-allowed", None),
    ]
    for method, path, raw, ctype, status, kind, epath in cases:
        r = api.call(method, path, data=raw.encode() if raw is not None else None, ctype=ctype)
        doc = problem(r, status, kind)
        if status == 405:
            assert r.headers.get("Allow"), r.headers
        if status == 422 and epath:
            assert any(epath in e.get("path", "") for e in doc.get("errors", [])), (method, path, doc)
        assert snapshot() == before, (method, path, raw)
    shows(cp.gh, "t-bad.test", "/hello", 200, "fine")


def test_every_422_names_the_key(cp):
    api = cp.api
    make_tenant(api, "t-422", "t-422.test", "x")
    w = api.with_key(ok(api.post("/v1/tenants/t-422/keys", {"name": "w", "scopes": ["read", "write"]}),
                        201).json()["key"])
    missing = []
    for caller, method, path, body, key in (
            (api, "POST", "/v1/tenants/t-422/sites", {"hosts": ["noname.test"]}, "name"),
            (api, "PUT", "/v1/tenants/t-422/sites/main/routes/hello", {"name": "other", "respond": {"status": 200}},
             "name"),
            (api, "POST", "/v1/tenants", {"name": "bad/name"}, "name"),
            (api, "PUT", "/v1/tenants/t-422/sites/bad%20name", {"hosts": ["b.test"]}, "name"),
            (w, "POST", "/v1/tenants/t-422/sites/main/routes", {"name": "f", "upstream": "demo"}, "upstream")):
        doc = problem(caller.call(method, path, body), 422, "invalid-configuration")
        if not any(key in e.get("path", "") for e in doc.get("errors", [])):
            missing.append((method, path, doc.get("detail")))
    assert not missing, missing


def test_oversize_body_is_413(cp):
    api = cp.api
    make_tenant(api, "t-big", "t-big.test", "small")
    v = api.current()
    big = json.dumps({"name": "hello", "respond": {"status": 200, "body": "x" * ((1 << 20) + 10)}})
    try:
        r = api.put("/v1/tenants/t-big/sites/main/routes/hello", data=big.encode())
    except Exception as e:  # noqa: BLE001 (a server may close while the body is still sent)
        pytest.fail("no answer to an oversize body: %r" % e)
    problem(r, 413)
    assert api.current() == v
    shows(cp.gh, "t-big.test", "/hello", 200, "small")
    # just under the limit is accepted
    body = json.dumps({"name": "hello", "respond": {"status": 200, "body": "y" * ((1 << 20) - 200)}})
    ok(api.put("/v1/tenants/t-big/sites/main/routes/hello", data=body.encode()), 200)


# ---------------------------------------------------------------- 6. dry runs

def test_dry_run_validates_without_storing(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-dry", "t-dry.test", "before")
    v = api.current()
    route = {"name": "new", "match": {"path": {"exact": "/new"}}, "respond": {"status": 200, "body": "new"}}
    r = ok(api.post("/v1/tenants/t-dry/sites/main/routes?dry_run=true", route), 200)
    assert r.json() == {"dry_run": True, "valid": True, "version": v, "errors": []}
    problem(api.get("/v1/tenants/t-dry/sites/main/routes/new"), 404)
    shows(gh, "t-dry.test", "/new", 404)
    doc = problem(api.post("/v1/tenants/t-dry/sites/main/routes?dry_run=true", dict(route, upstream="nowhere")),
                  422, "invalid-configuration")
    assert doc["errors"]
    doc = problem(api.put("/v1/tenants/t-dry/sites/main/routes/hello?dry_run=1",
                          {"respond": {"status": 200, "bogus": 1}}), 422, "invalid-configuration")
    assert any("bogus" in e.get("path", "") for e in doc["errors"]), doc
    ok(api.delete("/v1/tenants/t-dry?dry_run=true"), 200)
    ok(api.put("/v1/tenants/t-dry/protection?dry_run=true", {"deny": ["127.0.0.1"]}), 200)
    ok(api.post("/v1/tenants?dry_run=true", hello_tenant("t-dry2", "t-dry2.test", "x")), 200)
    assert api.current() == v
    shows(gh, "t-dry.test", "/hello", 200, "before")
    problem(api.get("/v1/tenants/t-dry2"), 404)
    problem(api.get("/v1/tenants/t-dry/protection"), 404)


# ---------------------------------------------------------------- 7. versions (own gatehouse: numbers from 1)

def test_versions_diff_and_rollback(gatehouse, tmp_path):
    gh = start_gh(gatehouse, str(tmp_path / "v.db"))
    api = Api(gh)
    doc = api.get("/v1/versions").json()
    assert doc == {"items": [], "next_cursor": None, "current": 0}
    assert version_of(make_tenant(api, "t-ver", "t-ver.test", "one")) == 1
    shows(gh, "t-ver.test", "/hello", 200, "one")
    r = ok(api.patch("/v1/tenants/t-ver/sites/main/routes/hello", {"respond": {"body": "two"}}), 200)
    assert version_of(r) == 2
    shows(gh, "t-ver.test", "/hello", 200, "two")
    ok(api.post("/v1/tenants/t-ver/sites/main/routes", {"name": "later", "match": {"path": {"exact": "/later"}},
                                                         "respond": {"status": 200, "body": "later"}}), 201)
    shows(gh, "t-ver.test", "/later", 200, "later")
    # a write that changes nothing makes no version
    r = ok(api.patch("/v1/tenants/t-ver/sites/main/routes/hello", {"respond": {"body": "two"}}), 200)
    assert version_of(r) == 3
    lst = ok(api.get("/v1/versions"), 200).json()
    assert lst["current"] == 3 and [v["id"] for v in lst["items"]] == [3, 2, 1]
    assert [v["parent"] for v in lst["items"]] == [2, 1, None]
    assert all(v["actor"] == "operator" and v["created_at"] and v["comment"] for v in lst["items"])
    one = ok(api.get("/v1/versions/1"), 200).json()
    assert one["id"] == 1 and one["state"]["tenants"]["t-ver"]["sites"][0]["routes"][0]["respond"]["body"] == "one"
    d = ok(api.get("/v1/versions/2/diff"), 200).json()
    assert d["from"] == 1 and d["to"] == 2
    assert d["changes"] == [{"op": "replace", "path": "tenants.t-ver.sites[main].routes[hello].respond.body",
                             "before": "one", "after": "two"}]
    d = ok(api.get("/v1/versions/3/diff?from=1"), 200).json()
    paths = {c["path"]: c for c in d["changes"]}
    assert paths["tenants.t-ver.sites[main].routes[later]"]["op"] == "add"
    assert paths["tenants.t-ver.sites[main].routes[hello].respond.body"]["after"] == "two"
    d = ok(api.get("/v1/versions/1/diff"), 200).json()  # from nothing
    assert d["from"] == 0 and d["changes"][0]["op"] == "add" and d["changes"][0]["path"] == "tenants.t-ver"
    # paging
    p1 = ok(api.get("/v1/versions?limit=2"), 200).json()
    assert [v["id"] for v in p1["items"]] == [3, 2] and p1["next_cursor"]
    p2 = ok(api.get("/v1/versions?limit=2&cursor=" + p1["next_cursor"]), 200).json()
    assert [v["id"] for v in p2["items"]] == [1] and p2["next_cursor"] is None
    # rollback to 1: the earlier behaviour, as a new version 4
    r = ok(api.post("/v1/versions/1/rollback"), 200)
    assert r.json() == {"rolled_back_to": 1} and version_of(r) == 4
    shows(gh, "t-ver.test", "/hello", 200, "one")
    shows(gh, "t-ver.test", "/later", 404)
    lst = ok(api.get("/v1/versions"), 200).json()
    assert lst["current"] == 4 and lst["items"][0]["id"] == 4 and lst["items"][0]["parent"] == 3
    assert ok(api.get("/v1/versions/4"), 200).json()["state"] == one["state"]
    audit = ok(api.get("/v1/audit?limit=1"), 200).json()["items"][0]
    assert audit["action"] == "rollback" and audit["version"] == 4
    # rollback to 3 brings "later" back
    ok(api.post("/v1/versions/3/rollback"), 200)
    shows(gh, "t-ver.test", "/later", 200, "later")
    shows(gh, "t-ver.test", "/hello", 200, "two")
    assert api.current() == 5
    problem(api.get("/v1/versions/99"), 404, "not-found")
    problem(api.get("/v1/versions/abc"), 404, "not-found")
    problem(api.get("/v1/versions/0"), 404, "not-found")
    problem(api.get("/v1/versions/2/diff?from=77"), 404, "not-found")
    problem(api.get("/v1/versions/2/diff?from=abc"), 400, "bad-request")
    problem(api.post("/v1/versions/99/rollback"), 404, "not-found")
    problem(api.post("/v1/versions"), 405, "method-not-allowed")
    problem(api.get("/v1/versions/1/rollback"), 405, "method-not-allowed")
    problem(api.get("/v1/versions/1/other"), 404, "not-found")
    assert api.current() == 5


# ---------------------------------------------------------------- 8. audit

def test_audit_records_every_write_with_redacted_secrets(cp):
    api = cp.api
    secret = "audit-ofrep-secret-0123456789abcdef"
    acts = []

    def did(r, action, resource):
        acts.append((action, resource, int(r.headers["Gatehouse-Config-Version"])))
        return r
    did(ok(api.post("/v1/tenants", hello_tenant("t-audit", "t-audit.test", "x", {
        "flags": {"api_keys": [secret], "definition": {"flags": {}}}})), 201), "create", "/v1/tenants/t-audit")
    route = hello_tenant("t-audit", "t-audit.test", "y")["sites"][0]["routes"][0]
    did(ok(api.put("/v1/tenants/t-audit/sites/main/routes/hello", route), 200),
        "replace", "/v1/tenants/t-audit/sites/main/routes/hello")
    did(ok(api.patch("/v1/tenants/t-audit", {"flags": {"api_keys": [secret + "-2"]}}), 200), "update",
        "/v1/tenants/t-audit")
    did(ok(api.put("/v1/tenants/t-audit/upstreams/p", {"backends": ["127.0.0.1:%d" % cp.demo]}), 201), "create",
        "/v1/tenants/t-audit/upstreams/p")
    did(ok(api.delete("/v1/tenants/t-audit/upstreams/p"), 204), "delete", "/v1/tenants/t-audit/upstreams/p")
    k = ok(api.post("/v1/tenants/t-audit/keys", {"name": "reader", "scopes": ["read"]}), 201).json()
    ok(api.delete("/v1/tenants/t-audit/keys/" + k["id"]), 204)
    ok(api.post("/v1/tenants/t-audit/purges", {"tags": ["t1"]}), 200)
    items = ok(api.get("/v1/audit?tenant=t-audit&limit=100"), 200).json()["items"]
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)  # newest first
    assert [i["action"] for i in items] == ["purge", "key.revoke", "key.create", "delete", "create", "update",
                                             "replace", "create"]
    writes = list(reversed(items))[:5]
    for rec, (action, resource, version) in zip(writes, acts):
        assert rec["action"] == action and rec["resource"] == resource and rec["version"] == version, rec
        assert rec["actor"] == "operator" and rec["source"] == "127.0.0.1" and rec["tenant"] == "t-audit"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", rec["at"]), rec
        assert rec["diff"] and all({"op", "path"} <= set(d) for d in rec["diff"]), rec
    assert items[1]["resource"] == "/v1/tenants/t-audit/keys/" + k["id"] and items[1]["version"] is None
    assert items[2]["diff"][0]["after"]["scopes"] in ('["read"]', ["read"])
    # the route change's diff names the field
    assert writes[1]["diff"] == [{"op": "replace", "path": "tenants.t-audit.sites[main].routes[hello].respond.body",
                                  "before": "x", "after": "y"}]
    # the API keys: redacted in the creation (inside "after") and in the update (before and after)
    assert writes[0]["diff"][0]["after"]["flags"]["api_keys"] == "[redacted]"
    upd = writes[2]["diff"]
    assert upd and all(d["path"].startswith("tenants.t-audit.flags.api_keys") for d in upd), upd
    assert all(d.get("before", "[redacted]") == "[redacted]" and d.get("after", "[redacted]") == "[redacted]"
               for d in upd), upd
    whole = json.dumps(ok(api.get("/v1/audit?limit=500"), 200).json())
    assert secret not in whole and k["key"] not in whole
    # versions show redacted states, diffs redact too
    v = writes[2]["version"]
    assert secret not in ok(api.get("/v1/versions/%d" % v), 200).text
    assert secret not in ok(api.get("/v1/versions/%d/diff" % v), 200).text
    assert ok(api.get("/v1/versions/%d" % v), 200).json()["state"]["tenants"]["t-audit"]["flags"]["api_keys"] == \
        "[redacted]"
    # paging the audit log
    p1 = ok(api.get("/v1/audit?tenant=t-audit&limit=3"), 200).json()
    p2 = ok(api.get("/v1/audit?tenant=t-audit&limit=3&cursor=" + p1["next_cursor"]), 200).json()
    assert [i["id"] for i in p1["items"] + p2["items"]] == [i["id"] for i in items[:6]]


def test_key_secrets_are_not_stored_in_clear(cp):
    api = cp.api
    make_tenant(api, "t-ksec", "t-ksec.test", "x")
    r = ok(api.post("/v1/tenants/t-ksec/keys", {"name": "k", "scopes": ["read"]},
                    headers={"Idempotency-Key": "key-secret-1"}), 201)
    token = r.json()["key"]
    assert TENANT_KEY_RE.match(token)
    ok(api.with_key(token).get("/v1/tenants/t-ksec"), 200)
    replay = ok(api.post("/v1/tenants/t-ksec/keys", {"name": "k", "scopes": ["read"]},
                         headers={"Idempotency-Key": "key-secret-1"}), 201)
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json()["id"] == r.json()["id"]
    assert token[16:] not in replay.text
    # nowhere in the store: keys are kept as SHA-256
    for table in ("idempotency", "api_keys", "audit", "versions"):
        assert token[16:] not in sqlite(cp.db, "SELECT * FROM %s" % table), table


# ---------------------------------------------------------------- 9. keys and tenant isolation

def _doc_a(demo):
    return {
        "name": "mx-a",
        "upstreams": {"amark-pool": {"backends": ["127.0.0.1:%d" % demo]}},
        "sites": [{"name": "main", "hosts": ["amark-host.test"], "routes": [
            {"name": "hello", "match": {"path": {"exact": "/hello"}},
             "respond": {"status": 200, "body": "AMARK-route-body"}, "analytics": True},
            {"name": "app", "match": {"path": {"prefix": "/echo"}}, "upstream": "amark-pool"}]}],
        "flags": {"api_keys": ["amark-ofrep-key-0123456789ab"], "definition": {"flags": {
            "amark-flag": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}}}},
        "experiments": [{"id": "amark-exp", "flag": "amark-flag", "variants": ["off", "on"],
                         "metrics": [{"name": "amark-metric", "kind": "conversion", "path": "/buy"}]}],
        "protection": {"deny": ["10.77.77.77"]},
        "cache": {"targeted_header": "X-Amark-CC"},
    }


A_MARKERS = ("AMARK", "amark", "10.77.77.77")


def test_keys_and_tenant_isolation_matrix(cp):
    api, gh = cp.api, cp.gh
    ok(api.post("/v1/tenants", _doc_a(cp.demo)), 201)
    make_tenant(api, "mx-b", "mx-b.test", "BMARK")
    shows(gh, "amark-host.test", "/hello", 200, "AMARK-route-body")

    def key(tenant, scopes, **kw):
        r = ok(api.post("/v1/tenants/%s/keys" % tenant, dict({"name": "-".join(scopes), "scopes": scopes}, **kw)), 201)
        doc = r.json()
        assert TENANT_KEY_RE.match(doc["key"]) and doc["scopes"] == scopes and doc["tenant"] == tenant
        assert r.headers["Location"] == "/v1/tenants/%s/keys/%s" % (tenant, doc["id"])
        return doc
    ka = {frozenset(s): key("mx-a", s)["key"] for s in (["read"], ["write"], ["read", "write"], ["admin"],
                                                          ["read", "write", "admin"])}
    full_a = ka[frozenset(["read", "write", "admin"])]
    full_b = key("mx-b", ["read", "write", "admin"])["key"]
    b = api.with_key(full_b)
    state = {}

    def a_state():
        g = ok(api.get("/v1/tenants/mx-a"), 200)
        return api.current(), g.headers["ETag"]

    route2 = {"name": "r2", "match": {"path": {"exact": "/r2"}}, "respond": {"status": 200, "body": "amark-r2"}}
    exp2 = {"id": "amark-e2", "flag": "amark-flag", "variants": ["off", "on"],
            "metrics": [{"name": "m", "kind": "conversion", "path": "/m"}]}
    flag2 = {"key": "amark-f2", "state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"}
    A = "/v1/tenants/mx-a"
    # (method, path, body, scope needed: read|write|admin|operator, status with A's proper key)
    ops = [
        ("GET", A, None, "read", 200), ("HEAD", A, None, "read", 200),
        ("PATCH", A, {"cache": {"targeted_header": "X-Amark-CC2"}}, "write", 200),
        ("PUT", A, "DOC", "write", 200),
        ("DELETE", A, None, "operator", None),
        ("GET", A + "/sites", None, "read", 200),
        ("POST", A + "/sites", {"name": "amark-s2", "hosts": ["amark-s2.test"]}, "write", 201),
        ("GET", A + "/sites/amark-s2", None, "read", 200),
        ("PUT", A + "/sites/amark-s2", {"hosts": ["amark-s3.test"]}, "write", 200),
        ("PATCH", A + "/sites/amark-s2", {"hosts": ["amark-s4.test"]}, "write", 200),
        ("DELETE", A + "/sites/amark-s2", None, "write", 204),
        ("GET", A + "/sites/main/routes", None, "read", 200),
        ("POST", A + "/sites/main/routes", route2, "write", 201),
        ("GET", A + "/sites/main/routes/r2", None, "read", 200),
        ("PUT", A + "/sites/main/routes/r2", dict(route2, respond={"status": 201, "body": "amark-r2b"}), "write", 200),
        ("PATCH", A + "/sites/main/routes/r2", {"respond": {"body": "amark-r2c"}}, "write", 200),
        ("DELETE", A + "/sites/main/routes/r2", None, "write", 204),
        ("GET", A + "/upstreams", None, "read", 200),
        ("POST", A + "/upstreams", {"name": "amark-p2", "backends": ["127.0.0.1:1"]}, "write", 201),
        ("GET", A + "/upstreams/amark-p2", None, "read", 200),
        ("PUT", A + "/upstreams/amark-p2", {"backends": ["127.0.0.1:2"]}, "write", 200),
        ("PATCH", A + "/upstreams/amark-p2", {"backends": ["127.0.0.1:3"]}, "write", 200),
        ("DELETE", A + "/upstreams/amark-p2", None, "write", 204),
        ("GET", A + "/flags", None, "read", 200),
        ("POST", A + "/flags", flag2, "write", 201),
        ("GET", A + "/flags/amark-f2", None, "read", 200),
        ("PUT", A + "/flags/amark-f2", dict(flag2, variants={"x": 2}), "write", 200),
        ("PATCH", A + "/flags/amark-f2", {"variants": {"y": 3}}, "write", 200),
        ("DELETE", A + "/flags/amark-f2", None, "write", 204),
        ("GET", A + "/experiments", None, "read", 200),
        ("POST", A + "/experiments", exp2, "write", 201),
        ("GET", A + "/experiments/amark-e2", None, "read", 200),
        ("PUT", A + "/experiments/amark-e2", dict(exp2, alpha=0.1), "write", 200),
        ("PATCH", A + "/experiments/amark-e2", {"alpha": 0.2}, "write", 200),
        ("DELETE", A + "/experiments/amark-e2", None, "write", 204),
        ("GET", A + "/protection", None, "read", 200),
        ("PUT", A + "/protection", {"deny": ["10.77.77.78"]}, "write", 200),
        ("PATCH", A + "/protection", {"allow": ["0.0.0.0/0"]}, "write", 200),
        ("DELETE", A + "/protection", None, "write", 204),
        ("PUT", A + "/protection", {"deny": ["10.77.77.77"]}, "write", 201),
        ("GET", A + "/cache", None, "read", 200),
        ("PUT", A + "/cache", {"targeted_header": "X-Amark-CC3"}, "write", 200),
        ("PATCH", A + "/cache", {"targeted_header": "X-Amark-CC4"}, "write", 200),
        ("DELETE", A + "/cache", None, "write", 204),
        ("PUT", A + "/cache", {"targeted_header": "X-Amark-CC"}, "write", 201),
        ("GET", A + "/keys", None, "admin", 200),
        ("POST", A + "/keys", {"name": "amark-k", "scopes": ["admin"]}, "admin", 201),
        ("GET", A + "/keys/{kid}", None, "admin", 200),
        ("DELETE", A + "/keys/{kid}", None, "admin", 204),
        ("POST", A + "/purges", {"all": True}, "write", 200),
        ("GET", "/v1/audit?tenant=mx-a", None, "read", 200),
    ]
    scope_sets = {"read": ["read"], "write": ["write"], "admin": ["admin"]}
    for method, path, body, need, want in ops:
        if body == "DOC":
            body = ok(api.get(A), 200).json()
            body["sites"][0]["routes"][0]["respond"]["body"] = "AMARK-route-body-2"
        path = path.format(**state)
        before = a_state()
        # B's full key: as if A did not exist, and nothing of A in the answer
        rb = b.call(method, path, body)
        problem(rb, 404, "not-found") if method != "HEAD" else None
        assert rb.status_code == 404, (method, path, rb.status_code)
        assert not any(m in rb.text or m in str(rb.headers) for m in A_MARKERS), (method, path, rb.text)
        # A's keys without the scope: 403
        for scopes, k in ka.items():
            needed = {need} if need != "operator" else {"operator"}
            if needed <= scopes:
                continue
            r = api.with_key(k).call(method, path, body)
            assert r.status_code == 403, (method, path, sorted(scopes), r.status_code, r.text)
            if method != "HEAD":
                problem(r, 403, "forbidden")
        assert a_state() == before, (method, path)
        # A's key with the scope (all of them for an operator-only operation: still 403)
        scopes = ["read", "write", "admin"] if need == "operator" else scope_sets[need]
        r = api.with_key(ka[frozenset(scopes)]).call(method, path, body)
        if want is None:
            problem(r, 403, "forbidden")
            continue
        assert r.status_code == want, (method, path, scopes, r.status_code, r.text)
        if path == A + "/keys" and method == "POST":
            state["kid"] = r.json()["id"]
    # the state after all that: A's route answers, the proper writes took effect
    shows(gh, "amark-host.test", "/hello", 200, "AMARK-route-body-2")
    # lists: B sees only B
    for path in ("/v1/tenants", "/v1/audit", "/v1/audit?limit=500"):
        r = ok(b.get(path), 200)
        assert not any(m in r.text for m in A_MARKERS), (path, r.text[:500])
        assert "mx-a" not in r.text and "filet" not in r.text, (path, r.text[:500])
    assert [t["name"] for t in ok(b.get("/v1/tenants"), 200).json()["items"]] == ["mx-b"]
    assert ok(b.get("/v1/tenants"), 200).json()["file_managed"] == []
    assert [t["name"] for t in ok(api.with_key(ka[frozenset(["read"])]).get("/v1/tenants"), 200).json()["items"]] == \
        ["mx-a"]
    problem(api.with_key(ka[frozenset(["write"])]).get("/v1/tenants"), 403, "forbidden")
    assert all(i["tenant"] == "mx-b" for i in ok(b.get("/v1/audit?limit=500"), 200).json()["items"])
    actors = {i["actor"] for i in ok(api.with_key(full_a).get("/v1/audit?limit=500"), 200).json()["items"]}
    assert "operator" in actors and any(a.startswith("key:") for a in actors)
    # operator-only endpoints: 403 for every tenant key
    v = api.current()
    operator_only = [("POST", "/v1/tenants", hello_tenant("mx-c", "mx-c.test", "c")),
                     ("PUT", "/v1/tenants/mx-c", hello_tenant("mx-c", "mx-c.test", "c")),
                     ("GET", "/v1/versions", None), ("GET", "/v1/versions/%d" % v, None),
                     ("GET", "/v1/versions/%d/diff" % v, None), ("POST", "/v1/versions/%d/rollback" % v, None),
                     ("GET", "/metrics", None), ("GET", "/upstreams", None), ("GET", "/cache", None),
                     ("GET", "/protection/top", None), ("GET", "/v1/analytics?tenant=mx-a&route=hello", None),
                     ("GET", "/v1/experiments/plan?metric=conversion&baseline=0.1&mde=0.02", None),
                     ("GET", "/v1/experiments/amark-exp/results?tenant=mx-a", None),
                     ("POST", "/upstreams/mx-a%2Famark-pool/drain?backend=127.0.0.1:" + str(cp.demo), None),
                     ("POST", "/cache/purge?tenant=mx-a&all=1", None)]
    for method, path, body in operator_only:
        for k in list(ka.values()) + [full_b]:
            r = api.with_key(k).call(method, path, body)
            # PUT of an absent tenant by a key: as absent (404); everything else: 403
            want = 404 if method == "PUT" else 403
            assert r.status_code == want, (method, path, r.status_code, r.text)
            assert r.headers.get("Content-Type", "").startswith("application/problem+json"), (path, r.headers)
            assert not any(m in r.text for m in A_MARKERS), (path, r.text)
        assert ok(api.call(method, path, body), 200, 201), path
    problem(api.get("/v1/tenants/mx-c"), 404)  # the operator's rollback to v took it away again
    ok(api.post("/upstreams/mx-a%2Famark-pool/undrain?backend=127.0.0.1:" + str(cp.demo)), 200)
    # a tenant key routes only to the tenant's own pools
    wa = api.with_key(ka[frozenset(["read", "write"])])
    problem(wa.post(A + "/sites/main/routes", {"name": "to-file", "upstream": "demo"}), 422, "invalid-configuration")
    ok(wa.post(A + "/sites/main/routes", {"name": "own", "match": {"path": {"prefix": "/own"}},
                                          "upstream": "amark-pool"}), 201)
    shows(gh, "amark-host.test", "/own", 200)
    # keys: a key cannot grant what it does not hold; revoked, expired and wrong keys are 401
    adm = api.with_key(ka[frozenset(["admin"])])
    problem(adm.post(A + "/keys", {"name": "more", "scopes": ["read"]}), 422, "invalid-key")
    problem(api.with_key(full_a).post(A + "/keys", {"name": "f", "scopes": ["flags:evaluate"]}), 422, "invalid-key")
    sub = ok(api.with_key(full_a).post(A + "/keys", {"name": "sub", "scopes": ["read"]}), 201).json()
    ok(api.with_key(sub["key"]).get(A), 200)
    problem(adm.post(A + "/keys", {"name": "x", "scopes": ["bogus"]}), 422, "invalid-key")
    problem(adm.post(A + "/keys", {"name": "x", "scopes": []}), 422, "invalid-key")
    problem(adm.post(A + "/keys", {"scopes": ["admin"]}), 422, "invalid-key")
    problem(adm.post(A + "/keys", {"name": "x", "scopes": ["admin"], "ttl_seconds": 0}), 422, "invalid-key")
    problem(adm.post(A + "/keys", {"name": "x", "scopes": ["admin"], "ttl_seconds": "60"}), 422, "invalid-key")
    lst = ok(adm.get(A + "/keys"), 200).json()["items"]
    assert sub["id"] in [k["id"] for k in lst] and all("key" not in k and "hash" not in k for k in lst)
    ok(api.with_key(full_a).delete(A + "/keys/" + sub["id"]), 204)
    r = api.with_key(sub["key"]).get(A)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    problem(r, 401, "unauthorized")
    assert ok(api.get(A + "/keys/" + sub["id"]), 200).json()["revoked_at"]
    problem(b.get(A + "/keys/" + sub["id"]), 404)
    good = ka[frozenset(["read"])]
    wrong = good[:-1] + ("0" if good[-1] != "0" else "1")
    for bad in (wrong, good[:20] + "f" * (len(good) - 20), "gh_000000000000_" + "0" * 64, good + "0",
                "not-a-key-at-all-0123456789"):
        problem(api.with_key(bad).get(A), 401, "unauthorized")
    problem(api.call("GET", A, headers={"Authorization": "Basic " + good}, key=None), 401)
    problem(api.call("GET", A, key=None), 401)
    exp = ok(api.post(A + "/keys", {"name": "short", "scopes": ["read"], "ttl_seconds": 1}), 201).json()
    assert exp["expires_at"]
    long_ttl = ok(api.post(A + "/keys", {"name": "long", "scopes": ["read"], "ttl_seconds": 3600}), 201).json()
    time.sleep(1.5)
    problem(api.with_key(exp["key"]).get(A), 401, "unauthorized")
    ok(api.with_key(long_ttl["key"]).get(A), 200)
    # the file tenant: readable, never writable through the API
    g = ok(api.get("/v1/tenants/filet"), 200)
    assert g.headers["Gatehouse-Origin"] == "file" and g.json()["name"] == "filet"
    assert "filet" in ok(api.get("/v1/tenants"), 200).json()["file_managed"]
    assert ok(api.get("/v1/tenants/filet/sites/fsite/routes/all"), 200).headers["Gatehouse-Origin"] == "file"
    v = api.current()
    for method, path, body in (("PUT", "/v1/tenants/filet", {"name": "filet", "sites": []}),
                               ("PATCH", "/v1/tenants/filet", {"cache": {"targeted_header": "X"}}),
                               ("DELETE", "/v1/tenants/filet", None),
                               ("POST", "/v1/tenants/filet/sites", {"name": "s", "hosts": ["s.filet.test"]}),
                               ("PUT", "/v1/tenants/filet/sites/fsite/routes/all", {"respond": {"status": 200}}),
                               ("DELETE", "/v1/tenants/filet/sites/fsite", None),
                               ("PUT", "/v1/tenants/filet/protection", {"deny": ["10.0.0.1"]}),
                               ("PUT", "/v1/tenants/filet/flags/x", {"state": "ENABLED"})):
        problem(api.call(method, path, body), 409, "file-managed")
    problem(api.post("/v1/tenants", {"name": "filet", "sites": []}), 409, "already-exists")
    fk = ok(api.post("/v1/tenants/filet/keys", {"name": "f", "scopes": ["read", "write"]}), 201).json()["key"]
    ok(api.with_key(fk).get("/v1/tenants/filet"), 200)
    problem(api.with_key(fk).patch("/v1/tenants/filet", {"cache": {"targeted_header": "X"}}), 409, "file-managed")
    problem(api.with_key(fk).get(A), 404)
    assert api.current() == v
    shows(gh, "file.test", "/", 200)


def test_older_endpoints_refuse_tenant_keys_with_the_forbidden_problem(cp):
    api = cp.api
    make_tenant(api, "t-old", "t-old.test", "x")
    k = api.with_key(ok(api.post("/v1/tenants/t-old/keys", {"name": "k", "scopes": ["read", "write", "admin"]}),
                        201).json()["key"])
    for method, path in (("GET", "/metrics"), ("GET", "/upstreams"), ("POST", "/cache/purge?tenant=t-old&all=1")):
        problem(k.call(method, path), 403, "forbidden")


def test_deleting_a_tenant_revokes_its_keys(cp):
    api = cp.api
    make_tenant(api, "t-del", "t-del.test", "x")
    k = ok(api.post("/v1/tenants/t-del/keys", {"name": "k", "scopes": ["read"]}), 201).json()
    ok(api.with_key(k["key"]).get("/v1/tenants/t-del"), 200)
    ok(api.delete("/v1/tenants/t-del"), 204)
    problem(api.with_key(k["key"]).get("/v1/tenants/t-del"), 401, "unauthorized")
    make_tenant(api, "t-del", "t-del.test", "y")  # the same name again: the old key stays dead
    problem(api.with_key(k["key"]).get("/v1/tenants/t-del"), 401, "unauthorized")


def test_tenant_keys_cannot_name_files_on_the_gateway(cp, tmp_path):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-files", "t-files.test", "x",
                {"flags": {"api_keys": ["files-ofrep-key-0123456789ab"], "definition": {"flags": {}}}})
    w = api.with_key(ok(api.post("/v1/tenants/t-files/keys", {"name": "w", "scopes": ["read", "write"]}),
                        201).json()["key"])
    v = api.current()
    problem(w.patch("/v1/tenants/t-files", {"flags": {"file": "/etc/passwd", "definition": None}}), 422,
            "invalid-configuration")
    problem(w.patch("/v1/tenants/t-files/sites/main", {"tls": {"cert": "/etc/ssl/x.pem", "key": "/etc/ssl/x.key"}}),
            422, "invalid-configuration")
    assert api.current() == v
    # the operator may: a flag file on the host
    f = tmp_path / "flags.json"
    f.write_text(json.dumps({"flags": {"from-file": {"state": "ENABLED", "variants": {"a": "file"},
                                                     "defaultVariant": "a"}}}))
    ok(api.patch("/v1/tenants/t-files", {"flags": {"file": str(f), "definition": None}}), 200)
    assert poll(lambda: ofrep_eval(gh, "from-file", key="files-ofrep-key-0123456789ab").status_code == 200,
                timeout=1.0)
    assert ofrep_eval(gh, "from-file", key="files-ofrep-key-0123456789ab").json()["value"] == "file"


def test_a_key_lives_at_least_its_ttl(cp):
    api = cp.api
    make_tenant(api, "t-ttl", "t-ttl.test", "x")
    for _ in range(5):
        while time.time() % 1 < 0.8:  # late in a second
            time.sleep(0.01)
        before = time.time()
        k = ok(api.post("/v1/tenants/t-ttl/keys", {"name": "short", "scopes": ["read"], "ttl_seconds": 1}),
               201).json()
        after = time.time()
        if int(before) != int(after):
            continue  # made across a second boundary: try again
        time.sleep(max(0.0, int(before) + 1.1 - time.time()))  # just past the boundary: at most ~0.3 s old
        age = time.time() - before
        r = api.with_key(k["key"]).get("/v1/tenants/t-ttl")
        assert r.status_code == 200, "a 1 s key refused %.2f s after it was made: %s" % (age, r.text)
        return
    pytest.skip("could not make a key within one second")


# ---------------------------------------------------------------- 11. no failed proxy request during changes

def test_zero_failed_proxy_requests_while_routes_change(cp):
    api, gh = cp.api, cp.gh
    make_tenant(api, "t-live", "t-live.test", "gen-0")
    ok(api.post("/v1/tenants/t-live/sites/main/routes",
                {"name": "other", "match": {"path": {"prefix": "/other"}}, "respond": {"status": 200, "body": "o"}}),
       201)
    stop = threading.Event()
    stats = {"n": 0, "bad": []}
    lock = threading.Lock()
    allowed = {"gen-%d" % i for i in range(21)}

    def load():
        conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5)
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn.request("GET", "/hello", headers={"Host": "t-live.test"})
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status != 200 or body not in allowed:
                    with lock:
                        stats["bad"].append((resp.status, body[:100]))
            except Exception as e:  # noqa: BLE001
                with lock:
                    stats["bad"].append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5)
            with lock:
                stats["n"] += 1
        conn.close()
    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    lags = []
    try:
        time.sleep(0.2)
        item = "/v1/tenants/t-live/sites/main/routes/hello"
        for i in range(1, 21):
            body = {"name": "hello", "match": {"path": {"exact": "/hello"}},
                    "respond": {"status": 200, "body": "gen-%d" % i, "headers": {"X-Gen": str(i % 2)}}}
            ok(api.put(item, body) if i % 2 else api.patch(item, {"respond": body["respond"]}), 200)
            t0 = time.monotonic()
            seen = poll(lambda: proxy(gh, "t-live.test", "/hello").text == "gen-%d" % i, timeout=1.0, interval=0.005)
            lags.append(time.monotonic() - t0)
            assert seen, "change %d not visible within 1 s" % i
            if i % 5 == 0:  # another route changes too
                ok(api.patch("/v1/tenants/t-live/sites/main/routes/other", {"respond": {"body": "o%d" % i}}), 200)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    print("zero-failure: %d proxied requests, change visible after max %.3f s, mean %.3f s"
          % (stats["n"], max(lags), sum(lags) / len(lags)))
    assert not stats["bad"], stats["bad"][:5]
    assert stats["n"] > 100, stats
    assert max(lags) < 1.0


# ---------------------------------------------------------------- 10. persistence and crash safety

def test_acknowledged_writes_survive_kill_9(gatehouse, tmp_path):
    db = str(tmp_path / "crash" / "gatehouse.db")
    gh = start_gh(gatehouse, db)
    api = Api(gh)
    make_tenant(api, "dur", "dur.test", "durable")
    make_tenant(api, "dur2", "dur2.test", "durable2")
    acked, errors = [], []
    stop = threading.Event()

    def writer():
        a = Api(gh)
        for i in range(10000):
            if stop.is_set():
                return
            name = "w%04d" % i
            try:
                r = a.post("/v1/tenants/dur/sites/main/routes",
                           {"name": name, "match": {"path": {"exact": "/w/%d" % i}},
                            "respond": {"status": 200, "body": name}})
            except Exception as e:  # noqa: BLE001 (the kill)
                errors.append(repr(e))
                return
            if 200 <= r.status_code < 300:
                acked.append((name, version_of(r)))
            else:
                errors.append((r.status_code, r.text))
                return
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert poll(lambda: len(acked) >= 25, timeout=20), (acked, errors)
    gh.kill()  # SIGKILL while the writer streams
    stop.set()
    t.join(timeout=20)
    assert acked, errors
    print("kill -9: %d writes acknowledged (versions %d..%d), the writer then saw %s"
          % (len(acked), acked[0][1], acked[-1][1], errors[:1]))
    assert [v for _, v in acked] == list(range(acked[0][1], acked[0][1] + len(acked)))  # one version each
    integrity = sqlite(db, "PRAGMA integrity_check")
    assert integrity == "ok", integrity
    gh2 = start_gh(gatehouse, db)
    api2 = Api(gh2)
    names = {x["name"] for x in ok(api2.get("/v1/tenants/dur/sites/main/routes?limit=500"), 200).json()["items"]}
    missing = [n for n, _ in acked if n not in names]
    assert not missing, "acknowledged but lost: %s" % missing
    # versions contiguous from 1, each the child of the one before
    ids, parents, cur = [], [], ""
    for _ in range(50):
        doc = ok(api2.get("/v1/versions?limit=500" + cur), 200).json()
        ids += [v["id"] for v in doc["items"]]
        parents += [v["parent"] for v in doc["items"]]
        if not doc["next_cursor"]:
            break
        cur = "&cursor=" + doc["next_cursor"]
    assert ids == list(range(len(ids), 0, -1)), ids[:10]
    assert parents == [i - 1 if i > 1 else None for i in ids]
    assert doc["current"] == ids[0] >= acked[-1][1]
    for name, _ in acked[:3] + acked[-3:]:
        shows(gh2, "dur.test", "/w/%d" % int(name[1:]), 200, name)
    shows(gh2, "dur2.test", "/hello", 200, "durable2")
    # and it goes on: the next write gets the next version
    r = ok(api2.post("/v1/tenants/dur/sites/main/routes", {"name": "after", "respond": {"status": 200}}), 201)
    assert version_of(r) == ids[0] + 1
    gh2.stop()
    assert sqlite(db, "PRAGMA integrity_check") == "ok"


# ---------------------------------------------------------------- 12. admin rate limit

def test_admin_rate_limit(gatehouse, tmp_path):
    gh = start_gh(gatehouse, str(tmp_path / "rl.db"), rate="5/s", burst=5)
    api = Api(gh)
    codes, limited = [], []
    for _ in range(30):
        r = api.get("/v1/tenants")
        codes.append(r.status_code)
        if r.status_code == 429:
            limited.append(r)
    assert codes[:5] == [200] * 5, codes
    assert len(limited) >= 5, codes
    for r in limited:
        problem(r, 429, "rate-limited")
        assert int(r.headers["Retry-After"]) >= 1
    assert helpers.request("GET", gh.admin_url + "/healthz").status_code == 200  # probes: never limited
    time.sleep(1.1)
    assert api.get("/v1/tenants").status_code == 200


# ---------------------------------------------------------------- 13. stores refused at start

def test_a_newer_schema_or_a_conflicting_version_is_refused_at_start(gatehouse, tmp_path):
    db = str(tmp_path / "s" / "gatehouse.db")
    gh = start_gh(gatehouse, db)
    api = Api(gh)
    make_tenant(api, "zeta", "zeta.test", "api-zeta")
    assert gh.stop() == 0
    dump = sqlite(db, "SELECT id, state FROM versions ORDER BY id") + sqlite(db, "SELECT * FROM audit ORDER BY id")
    # the file now defines a tenant named like an API tenant: refused, naming it, store untouched
    conflict = CONFIG + """  - name: zeta
    sites: [{hosts: ["zeta-file.test"], routes: [{name: r, respond: {status: 200}}]}]
"""
    bad = start_gh(gatehouse, db, config=conflict, expect_fail=True)
    assert bad.wait(15) != 0
    err = bad.stderr_text()
    assert "zeta" in err and "version 1" in err, err
    bad.kill()
    assert sqlite(db, "SELECT id, state FROM versions ORDER BY id") + sqlite(db, "SELECT * FROM audit ORDER BY id") \
        == dump
    assert sqlite(db, "PRAGMA integrity_check") == "ok"
    # a schema newer than the binary's: refused, naming the versions
    sqlite(db, "INSERT INTO schema_migrations VALUES (99, 'x')")
    bad = start_gh(gatehouse, db, expect_fail=True)
    assert bad.wait(15) != 0
    err = bad.stderr_text()
    assert "schema" in err and "99" in err, err
    bad.kill()
    assert OP_KEY not in err and OP_KEY not in bad.stdout_text()
    # put back: it starts, with the stored tenant
    sqlite(db, "DELETE FROM schema_migrations WHERE version = 99")
    gh = start_gh(gatehouse, db)
    shows(gh, "zeta.test", "/hello", 200, "api-zeta")


# ---------------------------------------------------------------- 14. SIGHUP keeps the API tenants

def test_sighup_reload_keeps_the_api_tenants(gatehouse, tmp_path):
    gh = start_gh(gatehouse, str(tmp_path / "hup.db"))
    api = Api(gh)
    make_tenant(api, "t-hup", "t-hup.test", "api-hup")
    v = api.current()
    gh.reload()
    time.sleep(0.5)
    shows(gh, "t-hup.test", "/hello", 200, "api-hup")
    shows(gh, "file.test", "/", 200)
    # a file that changes: the new file tenant and the API tenant both answer
    gh.write_config(CONFIG + """  - name: hupfile
    sites: [{hosts: ["hupfile.test"], routes: [{name: r, respond: {status: 200, body: "file-hup"}}]}]
""")
    gh.reload()
    shows(gh, "hupfile.test", "/", 200, "file-hup", timeout=5)
    shows(gh, "t-hup.test", "/hello", 200, "api-hup")
    assert "hupfile" in ok(api.get("/v1/tenants"), 200).json()["file_managed"]
    problem(api.patch("/v1/tenants/hupfile", {"sites": []}), 409, "file-managed")
    # writes go on after the reload, layered over the new file
    ok(api.patch("/v1/tenants/t-hup/sites/main/routes/hello", {"respond": {"body": "api-hup-2"}}), 200)
    shows(gh, "t-hup.test", "/hello", 200, "api-hup-2")
    shows(gh, "hupfile.test", "/", 200, "file-hup")
    assert api.current() == v + 1
    # a file that now conflicts with an API tenant is rejected; everything stays
    gh.write_config(CONFIG + """  - name: t-hup
    sites: [{hosts: ["other.test"], routes: [{name: r, respond: {status: 200}}]}]
""")
    gh.reload()
    time.sleep(0.5)
    assert gh.alive()
    shows(gh, "t-hup.test", "/hello", 200, "api-hup-2")
    assert "other.test" not in ok(api.get("/v1/tenants/t-hup"), 200).text


# ---------------------------------------------------------------- 8. the operator key never shows

def test_zz_the_operator_key_never_shows(cp):
    """Last in the file: every answer this module got, and the shared gatehouse's output."""
    assert ANSWERS
    leaks = [a[:200] for a in ANSWERS if OP_KEY in a]
    assert not leaks, leaks[:3]
    out = cp.gh.stdout_text() + cp.gh.stderr_text()
    assert OP_KEY not in out
    # a wrong key near the operator's is not echoed either
    r = Api(cp.gh, OP_KEY + "x").get("/v1/tenants")
    assert r.status_code == 401 and OP_KEY not in r.text
