"""The gRPC admin API (gatehouse.admin.v1.AdminService) on the admin listener, against the real
binary, with grpcio and Python stubs that protoc generates from proto/ at test time.

One gatehouse for the module (a SQLite control-plane store, an operator key in admin.key_file, a
demo origin, a file-defined tenant); each test works on its own tenants. Checked: every resource
kind end to end (objects made over gRPC answer on the proxy listener), ETags and If-Match,
allow_missing, merge and update_mask, idempotency keys, dry runs, validation errors as
INVALID_ARGUMENT with the path, paging, tenant keys (isolation, scopes), authentication,
versions (list, get, diff, rollback), the audit log, purges, REST <-> gRPC equivalence, and bad
input (unknown methods, malformed or deeply nested messages, oversized requests)."""

import importlib
import json
import os
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

import helpers
from helpers import HEADER, REPO, poll

OP_KEY = "op-grpc-admin-key-5e1f0a9c7b3d"
SERVICE = "/gatehouse.admin.v1.AdminService/"
C = grpc.StatusCode

CONFIG = HEADER.replace(
    'admin: {listen: "127.0.0.1:{admin_port}"}',
    'admin: {listen: "127.0.0.1:{admin_port}", store: "{tmp}/cp.db", key_file: "{key_file}", '
    'rate_limit: "100000/s", burst: 1000000}') + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
experiments: {store: "{tmp}/experiments.db"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: filed
    sites: [{name: fsite, hosts: ["filed.test"], routes: [{name: all, upstream: demo}]}]
"""


# ---------------------------------------------------------------- stubs, server, client

@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("admin_pb"))
    r = subprocess.run(["protoc", "--python_out=" + out, "-I", "proto", "proto/gatehouse/admin/v1/admin.proto"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, out)
    importlib.invalidate_caches()
    return importlib.import_module("gatehouse.admin.v1.admin_pb2")


@pytest.fixture(scope="module")
def gh(gatehouse_module, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "operator.key"
    key_file.write_text(OP_KEY + "\n")
    return gatehouse_module(CONFIG, key_file=str(key_file))


class Admin:
    """A grpcio client of AdminService with one key (None: no metadata)."""

    def __init__(self, pb, port, key=OP_KEY, metadata=None):
        self.pb = pb
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.enable_http_proxy", 0)])
        self.md = tuple(metadata) if metadata is not None else ((("authorization", "Bearer " + key),) if key else ())
        self.trailers = {}
        self.service = pb.DESCRIPTOR.services_by_name["AdminService"]

    def __getattr__(self, name):
        m = self.service.methods_by_name.get(name)
        if m is None:
            raise AttributeError(name)
        req_cls = getattr(self.pb, m.input_type.name)
        resp_cls = getattr(self.pb, m.output_type.name)
        fn = self.channel.unary_unary(SERVICE + name, request_serializer=req_cls.SerializeToString,
                                      response_deserializer=resp_cls.FromString)

        def call(req=None, **fields):
            if req is None:
                req = req_cls(**fields)
            resp, c = fn.with_call(req, metadata=self.md, timeout=10)
            self.trailers = dict(c.trailing_metadata() or ())
            return resp
        return call


def client(pb, gh, key=OP_KEY, metadata=None):
    a = Admin(pb, gh.admin_port, key, metadata)
    a.port = gh.admin_port
    return a


@pytest.fixture(scope="module")
def adm(pb, gh):
    return client(pb, gh)


def st(d):
    return json_format.ParseDict(d, struct_pb2.Struct())


def plain(s):
    """A Struct as a dict, whole numbers as int (Struct numbers are doubles)."""
    def fix(v):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return fix(json_format.MessageToDict(s))


def fails(code, fn, *a, **kw):
    """fn(...) fails with this gRPC status: (details, trailing metadata dict)."""
    with pytest.raises(grpc.RpcError) as e:
        fn(*a, **kw)
    assert e.value.code() == code, "%s: %s" % (e.value.code(), e.value.details())
    return e.value.details() or "", dict(e.value.trailing_metadata() or ())


def rest(gh, method, path, body=None, key=OP_KEY, headers=None):
    h = {"Authorization": "Bearer " + key}
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    return helpers.request(method, gh.admin_url + path, data=json.dumps(body) if body is not None else None,
                           headers=h)


def current(adm):
    return adm.ListVersions(page_size=1).current


def make_tenant(adm, pb, name, host):
    """A tenant with an upstream to the demo origin and a site for host."""
    adm.CreateTenant(tenant=pb.Tenant(name=name, spec=st({"sites": []})))
    adm.CreateUpstream(upstream=pb.Upstream(tenant=name, name="app",
                                            spec=st({"backends": ["127.0.0.1:%d" % adm.demo_port]})))
    adm.CreateSite(site=pb.Site(tenant=name, name="main", spec=st({"hosts": [host]})))


@pytest.fixture(autouse=True)
def _demo_port(adm, gh):
    adm.demo_port = gh.values["demo_port"]


# ---------------------------------------------------------------- resources end to end

def test_every_resource_kind_end_to_end_and_on_the_proxy(adm, pb, gh):
    v0 = current(adm)
    t = adm.CreateTenant(tenant=pb.Tenant(name="g-e2e", spec=st({"sites": []})))
    assert t.name == "g-e2e" and len(t.etag) == 32 and t.config_version == v0 + 1 and not t.file_managed
    assert adm.trailers["gatehouse-config-version"] == str(v0 + 1)
    u = adm.CreateUpstream(upstream=pb.Upstream(tenant="g-e2e", name="app",
                                                spec=st({"backends": ["127.0.0.1:%d" % adm.demo_port]})))
    assert (u.tenant, u.name) == ("g-e2e", "app") and plain(u.spec)["name"] == "app"
    s = adm.CreateSite(site=pb.Site(tenant="g-e2e", name="main", spec=st({"hosts": ["e2e.test"]})))
    assert s.config_version == v0 + 3
    r = adm.CreateRoute(route=pb.Route(tenant="g-e2e", site="main", name="hello", spec=st(
        {"match": {"path": {"prefix": "/hello"}}, "respond": {"status": 200, "body": "hi over grpc\n"}})))
    assert (r.tenant, r.site, r.name) == ("g-e2e", "main", "hello")
    adm.CreateRoute(route=pb.Route(tenant="g-e2e", site="main", name="origin",
                                   spec=st({"match": {"path": {"prefix": "/"}}, "upstream": "app"})))
    f = adm.CreateFlag(flag=pb.Flag(tenant="g-e2e", key="beta", spec=st(
        {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"})))
    assert f.key == "beta" and plain(f.spec)["defaultVariant"] == "off"
    e = adm.CreateExperiment(experiment=pb.Experiment(tenant="g-e2e", id="exp1", spec=st(
        {"flag": "beta", "variants": ["off", "on"], "metrics": [{"name": "c", "kind": "conversion", "path": "/c"}]})))
    assert e.id == "exp1"
    c = adm.UpdateCachePolicy(cache_policy=pb.CachePolicy(tenant="g-e2e", spec=st({"targeted_header": "X-CC"})),
                              allow_missing=True)
    assert c.tenant == "g-e2e" and plain(c.spec) == {"targeted_header": "X-CC"}
    p = adm.UpdateProtection(protection=pb.Protection(tenant="g-e2e", spec=st({"deny": ["10.9.9.9/32"]})),
                             allow_missing=True)
    assert plain(p.spec) == {"deny": ["10.9.9.9/32"]}

    # the routes answer on the proxy listener (the configuration was swapped into the workers)
    resp = poll(lambda: (lambda x: x if x.status_code == 200 else None)(gh.get("/hello", host="e2e.test")), timeout=2)
    assert resp and resp.text == "hi over grpc\n"
    resp = gh.get("/anything", host="e2e.test")
    assert resp.status_code == 200, resp.text  # the demo origin, through the tenant's own pool

    # and every object reads back, with its etag
    assert adm.GetRoute(tenant="g-e2e", site="main", name="hello").etag == r.etag
    assert adm.GetFlag(tenant="g-e2e", key="beta").etag == f.etag
    assert adm.GetExperiment(tenant="g-e2e", id="exp1").etag == e.etag
    assert adm.GetCachePolicy(tenant="g-e2e").etag == c.etag
    assert adm.GetProtection(tenant="g-e2e").etag == p.etag
    spec = plain(adm.GetTenant(name="g-e2e").spec)
    assert [x["name"] for x in spec["sites"][0]["routes"]] == ["hello", "origin"]
    assert set(spec["upstreams"]) == {"app"} and "beta" in spec["flags"]["definition"]["flags"]

    # deletes: the route stops answering
    d = adm.DeleteRoute(tenant="g-e2e", site="main", name="hello")
    assert d.config_version > 0
    assert poll(lambda: gh.get("/hello", host="e2e.test").text != "hi over grpc\n", timeout=2)
    fails(C.NOT_FOUND, adm.GetRoute, tenant="g-e2e", site="main", name="hello")
    adm.DeleteProtection(tenant="g-e2e")
    fails(C.NOT_FOUND, adm.GetProtection, tenant="g-e2e")
    adm.DeleteExperiment(tenant="g-e2e", id="exp1")
    adm.DeleteFlag(tenant="g-e2e", key="beta")
    fails(C.NOT_FOUND, adm.GetFlag, tenant="g-e2e", key="beta")
    adm.DeleteTenant(name="g-e2e")
    fails(C.NOT_FOUND, adm.GetTenant, name="g-e2e")
    assert poll(lambda: gh.get("/anything", host="e2e.test").status_code == 404, timeout=2)


def test_route_position_and_already_exists(adm, pb, gh):
    make_tenant(adm, pb, "g-pos", "pos.test")
    for name, path in (("a", "/a"), ("c", "/c")):
        adm.CreateRoute(route=pb.Route(tenant="g-pos", site="main", name=name,
                                       spec=st({"match": {"path": {"prefix": path}}, "upstream": "app"})))
    adm.CreateRoute(route=pb.Route(tenant="g-pos", site="main", name="b",
                                   spec=st({"match": {"path": {"prefix": "/b"}}, "upstream": "app"})), position=1)
    adm.CreateRoute(route=pb.Route(tenant="g-pos", site="main", name="first",
                                   spec=st({"match": {"path": {"prefix": "/f"}}, "upstream": "app"})), position=0)
    spec = plain(adm.GetSite(tenant="g-pos", name="main").spec)
    assert [r["name"] for r in spec["routes"]] == ["first", "a", "b", "c"]
    msg, md = fails(C.ALREADY_EXISTS, adm.CreateRoute, route=pb.Route(
        tenant="g-pos", site="main", name="a", spec=st({"match": {"path": {"prefix": "/a"}}, "upstream": "app"})))
    assert md["gatehouse-problem-type"] == "already-exists"
    fails(C.ALREADY_EXISTS, adm.CreateTenant, tenant=pb.Tenant(name="g-pos", spec=st({"sites": []})))
    # the name may come from the spec alone; a spec naming another is refused
    adm.CreateSite(site=pb.Site(tenant="g-pos", spec=st({"name": "other", "hosts": ["pos2.test"]})))
    assert adm.GetSite(tenant="g-pos", name="other").name == "other"
    u = adm.UpdateSite(site=pb.Site(tenant="g-pos", spec=st({"name": "other", "hosts": ["pos4.test"]})))
    assert u.name == "other" and plain(u.spec)["hosts"] == ["pos4.test"]
    adm.UpdateTenant(tenant=pb.Tenant(spec=st({"name": "g-pos", "cache": {"targeted_header": "X-T"}})), merge=True)
    assert plain(adm.GetTenant(name="g-pos").spec)["cache"] == {"targeted_header": "X-T"}
    msg, _ = fails(C.INVALID_ARGUMENT, adm.CreateSite, site=pb.Site(tenant="g-pos", name="x",
                                                                   spec=st({"name": "y", "hosts": ["pos3.test"]})))
    assert "differs" in msg
    msg, _ = fails(C.INVALID_ARGUMENT, adm.CreateSite, site=pb.Site(tenant="g-pos", spec=st({"hosts": ["p.test"]})))
    assert "name is required" in msg
    fails(C.INVALID_ARGUMENT, adm.GetSite, tenant="", name="main")
    fails(C.INVALID_ARGUMENT, adm.GetSite, tenant="x" * 129, name="main")


# ---------------------------------------------------------------- etags, updates, idempotency, dry runs

def test_etags_and_conditional_updates(adm, pb, gh):
    make_tenant(adm, pb, "g-etag", "etag.test")
    s = adm.GetSite(tenant="g-etag", name="main")
    assert len(s.etag) == 32 and not s.file_managed
    # the same ETag as REST's, and as the list's
    r = rest(gh, "GET", "/v1/tenants/g-etag/sites/main")
    assert r.headers["ETag"] == '"%s"' % s.etag
    assert [x.etag for x in adm.ListSites(tenant="g-etag").sites] == [s.etag]

    v = current(adm)
    s2 = adm.UpdateSite(site=pb.Site(tenant="g-etag", name="main", etag=s.etag,
                                     spec=st({"hosts": ["etag.test", "www.etag.test"]})))
    assert s2.etag != s.etag and s2.config_version == v + 1
    assert plain(s2.spec) == {"name": "main", "hosts": ["etag.test", "www.etag.test"]}
    # a stale etag: FAILED_PRECONDITION, nothing changes
    msg, md = fails(C.FAILED_PRECONDITION, adm.UpdateSite,
                    site=pb.Site(tenant="g-etag", name="main", etag=s.etag, spec=st({"hosts": ["etag.test"]})))
    assert md["gatehouse-problem-type"] == "precondition-failed"
    fails(C.FAILED_PRECONDITION, adm.DeleteSite, tenant="g-etag", name="main", etag=s.etag)
    assert adm.GetSite(tenant="g-etag", name="main").etag == s2.etag and current(adm) == v + 1
    # quoted etags (as REST shows them) are accepted too
    adm.UpdateSite(site=pb.Site(tenant="g-etag", name="main", etag='"%s"' % s2.etag, spec=st({"hosts": ["etag.test"]})))

    # Update of an absent item: NOT_FOUND, unless allow_missing
    fails(C.NOT_FOUND, adm.UpdateSite, site=pb.Site(tenant="g-etag", name="new", spec=st({"hosts": ["n.etag.test"]})))
    n = adm.UpdateSite(site=pb.Site(tenant="g-etag", name="new", spec=st({"hosts": ["n.etag.test"]})),
                       allow_missing=True)
    assert n.name == "new" and len(n.etag) == 32

    # merge (JSON merge patch) and update_mask
    adm.UpdateSite(site=pb.Site(tenant="g-etag", name="new", spec=st({"hsts": "max-age=60"})), merge=True)
    assert plain(adm.GetSite(tenant="g-etag", name="new").spec) == {
        "name": "new", "hosts": ["n.etag.test"], "hsts": "max-age=60"}
    adm.UpdateSite(site=pb.Site(tenant="g-etag", name="new", spec=st({"hosts": ["m.etag.test"], "hsts": "x"})),
                   update_mask=["hosts"])
    assert plain(adm.GetSite(tenant="g-etag", name="new").spec) == {
        "name": "new", "hosts": ["m.etag.test"], "hsts": "max-age=60"}
    adm.UpdateSite(site=pb.Site(tenant="g-etag", name="new", spec=st({})), update_mask=["hsts"])  # absent: removed
    assert plain(adm.GetSite(tenant="g-etag", name="new").spec) == {"name": "new", "hosts": ["m.etag.test"]}
    fails(C.INVALID_ARGUMENT, adm.UpdateSite, site=pb.Site(tenant="g-etag", name="new", spec=st({})),
          update_mask=["a..b"])
    fails(C.INVALID_ARGUMENT, adm.UpdateSite, site=pb.Site(tenant="g-etag", name="new", spec=st({})),
          update_mask=["hosts"], merge=True)

    # a write that changes nothing makes no version
    v = current(adm)
    same = adm.UpdateSite(site=pb.Site(tenant="g-etag", name="new", spec=st({"hosts": ["m.etag.test"]})))
    assert same.config_version == v and current(adm) == v


def test_idempotency_keys(adm, pb, gh):
    make_tenant(adm, pb, "g-idem", "idem.test")
    req = pb.CreateSiteRequest(site=pb.Site(tenant="g-idem", name="s1", spec=st({"hosts": ["s1.idem.test"]})),
                               idempotency_key="create-s1-once")
    first = adm.CreateSite(req)
    assert "gatehouse-idempotent-replayed" not in adm.trailers
    v = current(adm)
    again = adm.CreateSite(req)  # a replay: the first answer, nothing new
    assert adm.trailers.get("gatehouse-idempotent-replayed") == "true"
    assert again == first and current(adm) == v
    # the same key with another request
    other = pb.CreateSiteRequest(site=pb.Site(tenant="g-idem", name="s2", spec=st({"hosts": ["s2.idem.test"]})),
                                 idempotency_key="create-s1-once")
    msg, md = fails(C.INVALID_ARGUMENT, adm.CreateSite, other)
    assert md["gatehouse-problem-type"] == "idempotency-key-reuse"
    # without the key a second create is ALREADY_EXISTS
    fails(C.ALREADY_EXISTS, adm.CreateSite, pb.CreateSiteRequest(site=req.site))
    fails(C.INVALID_ARGUMENT, adm.CreateSite, pb.CreateSiteRequest(site=req.site, idempotency_key="k" * 256))
    # deletes replay too
    d1 = adm.DeleteSite(tenant="g-idem", name="s1", idempotency_key="del-s1")
    d2 = adm.DeleteSite(tenant="g-idem", name="s1", idempotency_key="del-s1")
    assert d1 == d2 and adm.trailers.get("gatehouse-idempotent-replayed") == "true"


def test_dry_run_stores_nothing(adm, pb, gh):
    make_tenant(adm, pb, "g-dry", "dry.test")
    v = current(adm)
    r = adm.CreateRoute(route=pb.Route(tenant="g-dry", site="main", name="x", spec=st(
        {"match": {"path": {"prefix": "/x"}}, "upstream": "app"})), dry_run=True)
    assert r.config_version == v and r.name == "x" and adm.trailers["gatehouse-dry-run"] == "true"
    fails(C.NOT_FOUND, adm.GetRoute, tenant="g-dry", site="main", name="x")
    d = adm.DeleteSite(tenant="g-dry", name="main", dry_run=True)
    assert d.dry_run and d.config_version == v
    adm.GetSite(tenant="g-dry", name="main")
    # an invalid change is refused by a dry run as by a write
    fails(C.INVALID_ARGUMENT, adm.CreateRoute, route=pb.Route(tenant="g-dry", site="main", name="y", spec=st(
        {"match": {"path": {"prefix": "/y"}}, "upstream": "nope"})), dry_run=True)
    assert current(adm) == v


def test_invalid_spec_names_the_path(adm, pb, gh):
    make_tenant(adm, pb, "g-bad", "bad.test")
    v = current(adm)
    msg, md = fails(C.INVALID_ARGUMENT, adm.CreateRoute, route=pb.Route(tenant="g-bad", site="main", name="r", spec=st(
        {"match": {"path": {"prefix": "/r"}}, "upstream": "no-such-pool"})))
    assert md["gatehouse-problem-type"] == "invalid-configuration"
    assert "tenants[g-bad].sites[0].routes[0].upstream" in msg, msg
    msg, _ = fails(C.INVALID_ARGUMENT, adm.UpdateSite, site=pb.Site(tenant="g-bad", name="main",
                                                                   spec=st({"hosts": ["bad.test"], "bogus": 1})))
    assert "tenants[g-bad].sites[0]" in msg, msg
    fails(C.INVALID_ARGUMENT, adm.UpdateCachePolicy, cache_policy=pb.CachePolicy(
        tenant="g-bad", spec=st({"no_such_key": 7})), allow_missing=True)
    # NaN cannot be JSON
    fails(C.INVALID_ARGUMENT, adm.UpdateSite,
          site=pb.Site(tenant="g-bad", name="main", spec=st({"hosts": ["bad.test"], "x": float("nan")})))
    assert current(adm) == v


def test_list_paging_and_prefix(adm, pb, gh):
    make_tenant(adm, pb, "g-page", "page.test")
    names = ["f%02d" % i for i in range(7)] + ["other"]
    for n in names:
        adm.CreateFlag(flag=pb.Flag(tenant="g-page", key=n, spec=st(
            {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"})))
    seen, token, pages = [], "", 0
    while True:
        page = adm.ListFlags(tenant="g-page", page_size=3, page_token=token)
        pages += 1
        assert len(page.flags) <= 3
        seen += [f.key for f in page.flags]
        assert all(f.tenant == "g-page" and len(f.etag) == 32 for f in page.flags)
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(names) and pages == 3
    assert [f.key for f in adm.ListFlags(tenant="g-page", prefix="f0", page_size=500).flags] == names[:7]
    assert len(adm.ListFlags(tenant="g-page", prefix="zz").flags) == 0
    fails(C.INVALID_ARGUMENT, adm.ListFlags, tenant="g-page", page_size=501)
    fails(C.INVALID_ARGUMENT, adm.ListFlags, tenant="g-page", page_token="xyz")
    fails(C.NOT_FOUND, adm.ListFlags, tenant="g-no-such")
    # tenants: the file's are listed as file-managed
    ts = adm.ListTenants(page_size=500)
    assert "filed" in ts.file_managed and "g-page" in [t.name for t in ts.tenants]
    assert [t.file_managed for t in ts.tenants if t.name == "filed"] == [True]


# ---------------------------------------------------------------- access

def test_authentication(adm, pb, gh):
    for md in ((), (("authorization", "Bearer wrong-key-0123456789"),), (("authorization", "Basic abc"),),
               (("authorization", "Bearer gh_000000000000_" + "0" * 64),)):
        a = client(pb, gh, metadata=md)
        msg, trailers = fails(C.UNAUTHENTICATED, a.ListTenants)
        assert "Bearer" in msg and trailers["gatehouse-problem-type"] == "unauthorized"
    # the REST API still answers over HTTP/1.1 on the same listener, and the probes need no key
    assert rest(gh, "GET", "/v1/tenants").status_code == 200
    assert helpers.request("GET", gh.admin_url + "/healthz").status_code == 200


def test_tenant_keys_isolation_and_scopes(adm, pb, gh):
    make_tenant(adm, pb, "g-ka", "ka.test")
    make_tenant(adm, pb, "g-kb", "kb.test")
    made = adm.CreateApiKey(tenant="g-ka", name="ci", scopes=["read", "write", "admin"])
    assert made.secret.startswith("gh_") and made.api_key.id in made.secret
    assert made.api_key.tenant == "g-ka" and list(made.api_key.scopes) == ["read", "write", "admin"]
    listed = adm.ListApiKeys(tenant="g-ka").api_keys
    assert [k.id for k in listed] == [made.api_key.id] and listed[0].name == "ci"
    assert adm.GetApiKey(tenant="g-ka", id=made.api_key.id).created_by == "operator"

    ka = client(pb, gh, made.secret)
    assert [t.name for t in ka.ListTenants().tenants] == ["g-ka"]
    ka.CreateSite(site=pb.Site(tenant="g-ka", name="k2", spec=st({"hosts": ["k2.ka.test"]})))
    # another tenant is absent for this key
    fails(C.NOT_FOUND, ka.GetTenant, name="g-kb")
    fails(C.NOT_FOUND, ka.GetSite, tenant="g-kb", name="main")
    fails(C.NOT_FOUND, ka.CreateSite, site=pb.Site(tenant="g-kb", name="x", spec=st({"hosts": ["x.kb.test"]})))
    # operator-only operations
    _, md = fails(C.PERMISSION_DENIED, ka.CreateTenant, tenant=pb.Tenant(name="g-kc", spec=st({"sites": []})))
    assert md["gatehouse-problem-type"] == "forbidden"
    fails(C.PERMISSION_DENIED, ka.DeleteTenant, name="g-ka")
    fails(C.PERMISSION_DENIED, ka.ListVersions)
    # a tenant key routes only to its own pools
    msg, _ = fails(C.INVALID_ARGUMENT, ka.CreateRoute, route=pb.Route(
        tenant="g-ka", site="main", name="r", spec=st({"match": {"path": {"prefix": "/"}}, "upstream": "demo"})))
    assert "demo" in msg
    # a read-only key made by that key: no writes, no keys; it cannot grant what it lacks
    ro = ka.CreateApiKey(tenant="g-ka", name="ro", scopes=["read"], ttl_seconds=3600)
    assert ro.api_key.expires_at and ro.api_key.created_by == "key:" + made.api_key.id
    r = client(pb, gh, ro.secret)
    assert r.GetSite(tenant="g-ka", name="main").name == "main"
    msg, _ = fails(C.PERMISSION_DENIED, r.CreateSite, site=pb.Site(tenant="g-ka", name="y", spec=st({"hosts": ["y.ka.test"]})))
    assert "write" in msg
    fails(C.PERMISSION_DENIED, r.ListApiKeys, tenant="g-ka")
    fails(C.INVALID_ARGUMENT, ka.CreateApiKey, tenant="g-ka", name="x", scopes=["nope"])
    # revoking: the key stops working
    adm.DeleteApiKey(tenant="g-ka", id=ro.api_key.id)
    assert adm.GetApiKey(tenant="g-ka", id=ro.api_key.id).revoked_at
    fails(C.UNAUTHENTICATED, r.GetSite, tenant="g-ka", name="main")
    # the audit log of a tenant key is its tenant's
    recs = ka.ListAudit(page_size=500).records
    assert recs and {x.tenant for x in recs} == {"g-ka"}
    fails(C.NOT_FOUND, ka.ListAudit, tenant="g-kb")


def test_file_managed_tenant_is_read_only(adm, pb, gh):
    t = adm.GetTenant(name="filed")
    assert t.file_managed and plain(t.spec)["sites"][0]["name"] == "fsite"
    _, md = fails(C.FAILED_PRECONDITION, adm.UpdateTenant, tenant=pb.Tenant(name="filed", spec=st({"sites": []})))
    assert md["gatehouse-problem-type"] == "file-managed"
    fails(C.FAILED_PRECONDITION, adm.CreateSite, site=pb.Site(tenant="filed", name="x", spec=st({"hosts": ["x.f.test"]})))
    assert adm.GetSite(tenant="filed", name="fsite").file_managed


# ---------------------------------------------------------------- versions, audit, purge

def test_versions_diff_and_rollback(adm, pb, gh):
    make_tenant(adm, pb, "g-ver", "ver.test")
    adm.CreateRoute(route=pb.Route(tenant="g-ver", site="main", name="hi", spec=st(
        {"match": {"path": {"prefix": "/"}}, "respond": {"status": 200, "body": "v-one\n"}})))
    before = current(adm)
    assert poll(lambda: gh.get("/", host="ver.test").text == "v-one\n", timeout=2)
    adm.UpdateRoute(route=pb.Route(tenant="g-ver", site="main", name="hi", spec=st(
        {"match": {"path": {"prefix": "/"}}, "respond": {"status": 200, "body": "v-two\n"}})))
    after = current(adm)
    assert after == before + 1
    assert poll(lambda: gh.get("/", host="ver.test").text == "v-two\n", timeout=2)

    vs = adm.ListVersions(page_size=2)
    assert vs.current == after and [v.id for v in vs.versions] == [after, after - 1] and vs.next_page_token
    assert vs.versions[0].actor == "operator" and vs.versions[0].parent == after - 1
    assert [v.id for v in adm.ListVersions(page_size=2, page_token=vs.next_page_token).versions] == [after - 2, after - 3]
    got = adm.GetVersion(id=after)
    assert plain(got.state)["tenants"]["g-ver"]["sites"][0]["routes"][0]["respond"]["body"] == "v-two\n"
    diff = adm.DiffVersions(id=after)
    assert (diff.from_version, diff.to_version) == (after - 1, after)
    ch = [c for c in diff.changes if c.path.endswith("body")]
    assert len(ch) == 1 and ch[0].op == "replace"
    assert ch[0].before.string_value == "v-one\n" and ch[0].after.string_value == "v-two\n"
    full = adm.DiffVersions(id=after, from_version=0)  # from the empty state
    assert full.from_version == 0 and any(c.op == "add" for c in full.changes)
    fails(C.NOT_FOUND, adm.GetVersion, id=after + 1000)
    fails(C.INVALID_ARGUMENT, adm.GetVersion, id=0)

    rb = adm.RollbackVersion(id=before)
    assert rb.rolled_back_to == before and rb.config_version == after + 1
    assert poll(lambda: gh.get("/", host="ver.test").text == "v-one\n", timeout=2)
    assert current(adm) == after + 1
    dry = adm.RollbackVersion(id=after, dry_run=True)
    assert dry.dry_run and current(adm) == after + 1


def test_audit_log(adm, pb, gh):
    make_tenant(adm, pb, "g-aud", "aud.test")
    adm.UpdateSite(site=pb.Site(tenant="g-aud", name="main", spec=st({"hosts": ["aud.test"], "hsts": "max-age=5"})))
    recs = adm.ListAudit(tenant="g-aud", page_size=500).records
    assert [r.action for r in recs] == ["replace", "create", "create", "create"]
    top = recs[0]
    assert top.actor == "operator" and top.source == "127.0.0.1" and top.resource == "/v1/tenants/g-aud/sites/main"
    assert top.version == current(adm) or top.version > 0
    assert any(c.path.endswith("hsts") and c.op == "add" and c.after.string_value == "max-age=5" for c in top.diff)
    page = adm.ListAudit(tenant="g-aud", page_size=2)
    assert len(page.records) == 2 and page.next_page_token
    rest_ = adm.ListAudit(tenant="g-aud", page_size=2, page_token=page.next_page_token)
    assert [r.id for r in list(page.records) + list(rest_.records)] == [r.id for r in recs]


def test_purge(adm, pb, gh):
    make_tenant(adm, pb, "g-purge", "purge.test")
    p = adm.Purge(tenant="g-purge", all=True)
    assert p.purged >= 0 and not p.soft
    p = adm.Purge(tenant="g-purge", tags=["a", "b"], soft=True)
    assert p.soft
    fails(C.INVALID_ARGUMENT, adm.Purge, tenant="g-purge")
    fails(C.INVALID_ARGUMENT, adm.Purge, tenant="g-purge", tags=["a"], all=True)
    assert adm.ListAudit(tenant="g-purge", page_size=1).records[0].action == "purge"


# ---------------------------------------------------------------- REST <-> gRPC

def test_rest_and_grpc_see_the_same_objects(adm, pb, gh):
    make_tenant(adm, pb, "g-both", "both.test")
    # made over REST, read over gRPC
    r = rest(gh, "POST", "/v1/tenants/g-both/flags",
             {"key": "rest-flag", "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "b"})
    assert r.status_code == 201, r.text
    f = adm.GetFlag(tenant="g-both", key="rest-flag")
    assert f.etag == r.headers["ETag"].strip('"') and plain(f.spec)["defaultVariant"] == "b"
    # made over gRPC, read and changed over REST (with the gRPC etag as If-Match)
    g = adm.CreateFlag(flag=pb.Flag(tenant="g-both", key="grpc-flag", spec=st(
        {"state": "ENABLED", "variants": {"x": "1"}, "defaultVariant": "x"})))
    r = rest(gh, "GET", "/v1/tenants/g-both/flags/grpc-flag")
    assert r.status_code == 200 and r.json()["defaultVariant"] == "x" and r.headers["ETag"] == '"%s"' % g.etag
    r = rest(gh, "PATCH", "/v1/tenants/g-both/flags/grpc-flag", {"state": "DISABLED"},
             headers={"If-Match": '"%s"' % g.etag})
    assert r.status_code == 200, r.text
    assert plain(adm.GetFlag(tenant="g-both", key="grpc-flag").spec)["state"] == "DISABLED"
    fails(C.FAILED_PRECONDITION, adm.UpdateFlag, flag=pb.Flag(tenant="g-both", key="grpc-flag", etag=g.etag,
                                                             spec=st({"state": "ENABLED"})))
    # the same lists, the same versions, the same audit log
    assert sorted(x["key"] for x in rest(gh, "GET", "/v1/tenants/g-both/flags").json()["items"]) == \
        [x.key for x in adm.ListFlags(tenant="g-both").flags]
    assert rest(gh, "GET", "/v1/versions?limit=1").json()["current"] == current(adm)
    assert rest(gh, "GET", "/v1/audit?tenant=g-both&limit=1").json()["items"][0]["id"] == \
        adm.ListAudit(tenant="g-both", page_size=1).records[0].id


def test_concurrent_calls_on_one_channel(adm, pb, gh):
    # many streams at once on one HTTP/2 connection: each answered, each with its own result
    import concurrent.futures
    make_tenant(adm, pb, "g-conc", "conc.test")

    def work(i):
        if i % 4 == 0:
            return adm.CreateFlag(flag=pb.Flag(tenant="g-conc", key="k%03d" % i, spec=st(
                {"state": "ENABLED", "variants": {"a": i}, "defaultVariant": "a"}))).key
        return adm.GetSite(tenant="g-conc", name="main").name
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(work, range(64)))
    assert got == ["k%03d" % i if i % 4 == 0 else "main" for i in range(64)]
    assert len(adm.ListFlags(tenant="g-conc", page_size=500).flags) == 16


# ---------------------------------------------------------------- bad input

def raw(gh, method, payload, md=(("authorization", "Bearer " + OP_KEY),)):
    ch = grpc.insecure_channel("127.0.0.1:%d" % gh.admin_port, options=[("grpc.enable_http_proxy", 0)])
    fn = ch.unary_unary(SERVICE + method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        return fn(payload, metadata=md, timeout=10)
    finally:
        ch.close()


def test_unknown_methods_and_every_method_is_served(adm, pb, gh):
    msg, _ = fails(C.UNIMPLEMENTED, raw, gh, "NoSuchMethod", b"")
    assert "NoSuchMethod" in msg
    ch = grpc.insecure_channel("127.0.0.1:%d" % gh.admin_port, options=[("grpc.enable_http_proxy", 0)])
    fn = ch.unary_unary("/gatehouse.admin.v2.AdminService/ListTenants", request_serializer=lambda b: b,
                        response_deserializer=lambda b: b)
    fails(C.UNIMPLEMENTED, fn, b"", metadata=(("authorization", "Bearer " + OP_KEY),), timeout=10)
    ch.close()
    # every method of the service answers something else than UNIMPLEMENTED, even to an empty request
    for name in adm.service.methods_by_name:
        try:
            raw(gh, name, b"")
        except grpc.RpcError as e:
            assert e.code() != C.UNIMPLEMENTED, name


def test_malformed_messages_are_refused(adm, pb, gh):
    bad = [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0b", b"\x00\x01", b"\x0a\x04a\x00bc"]
    for payload in bad:
        fails(C.INVALID_ARGUMENT, raw, gh, "GetTenant", payload)
    # nesting deeper than the limit (a Struct in a Value in a Struct ...)
    spec = {}
    cur = spec
    for _ in range(60):
        cur["k"] = {}
        cur = cur["k"]
    req = pb.CreateTenantRequest(tenant=pb.Tenant(name="g-deep", spec=st(spec)))
    msg, _ = fails(C.INVALID_ARGUMENT, raw, gh, "CreateTenant", req.SerializeToString())
    assert "nested" in msg
    # a NUL byte in a name, a string that is not UTF-8
    fails(C.INVALID_ARGUMENT, raw, gh, "GetTenant", b"\x0a\x03a\x00b")
    fails(C.INVALID_ARGUMENT, raw, gh, "GetTenant", b"\x0a\x02\xc3\x28")
    # over 1 MiB: refused (by the listener: HTTP 413, which grpcio calls UNKNOWN; or by the service:
    # RESOURCE_EXHAUSTED), and the server goes on
    for n in (1 << 20, (1 << 20) + 5000, 3 << 20):
        big = pb.CreateTenantRequest(tenant=pb.Tenant(name="g-big", spec=st({"x": "y" * n})))
        with pytest.raises(grpc.RpcError) as e:
            adm.CreateTenant(big)
        assert e.value.code() in (C.RESOURCE_EXHAUSTED, C.UNKNOWN), (n, e.value.code(), e.value.details())
    fails(C.NOT_FOUND, adm.GetTenant, name="g-big")
    assert adm.ListTenants(page_size=1).tenants is not None
    assert gh.alive()


def test_admin_h2c_can_be_turned_off(pb, gatehouse, tmp_path):
    # admin.h2c: false: HTTP/1.1 only (the REST API), no gRPC
    key_file = tmp_path / "op.key"
    key_file.write_text(OP_KEY + "\n")
    cfg = CONFIG.replace('burst: 1000000}', 'burst: 1000000, h2c: false}')
    g = gatehouse(cfg, key_file=str(key_file))
    assert rest(g, "GET", "/v1/tenants").status_code == 200
    a = client(pb, g)
    with pytest.raises(grpc.RpcError) as e:
        a.ListTenants()
    assert e.value.code() in (C.UNAVAILABLE, C.INTERNAL, C.UNKNOWN)
    g2 = gatehouse(cfg.replace("h2c: false", "h2c: 7"), key_file=str(key_file), expect_fail=True)
    assert g2.wait(10) != 0 and "h2c" in g2.stderr_text()
