"""docs/openapi.yaml, the admin listener's OpenAPI 3.1 description, checked two ways:

1. statically: it parses, is OpenAPI 3.1, every $ref resolves, every schema is a valid JSON Schema
   (2020-12), and the problem types it lists are the ones the C code sends;
2. against the real server (SQLite store, operator key): every documented (path, method) is called
   at least once with a request that succeeds, and every answer (successes and the errors provoked
   on the way: 400, 401, 403, 404, 409, 412, 413, 415, 422, 429) has a status documented for that
   operation, the documented Content-Type, a body valid against the documented schema and the
   documented headers; methods a path does not document get the path's `x-undocumented-methods`
   answer (405 with Allow), and undocumented paths get 404 (never a 2xx).

The rule for paths the description does not list (stated in info.description): 404 problem+json
not-found, any method; a tenant key gets 403 outside the control plane.
"""

import json
import os
import re
from urllib.parse import quote

import pytest
import yaml
from jsonschema import Draft202012Validator, RefResolver

from helpers import REPO, request

SPEC_PATH = os.path.join(REPO, "docs", "openapi.yaml")
OPERATIONS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")
PROBED = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
PB = "https://gatehouse.dev/problems/"
JSON = "application/json"


@pytest.fixture(scope="module")
def spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def pointer(doc, ref):
    assert ref.startswith("#/"), "only local references are used: %s" % ref
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, "unresolved $ref %s (at %r)" % (ref, part)
        node = node[part]
    return node


def deref(doc, node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        node = pointer(doc, node["$ref"])
        seen += 1
        assert seen < 20, "a $ref loop"
    return node


def walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


# ----------------------------------------------------------------------------- static checks

def test_the_file_parses_and_is_openapi_3_1(spec):
    assert isinstance(spec, dict)
    assert str(spec["openapi"]).startswith("3.1."), spec["openapi"]
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec.get("jsonSchemaDialect", "https://json-schema.org/draft/2020-12/schema").startswith(
        "https://json-schema.org/draft/2020-12/")
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    op_ids = set()
    for path, item in spec["paths"].items():
        assert path.startswith("/"), path
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method in item:
            assert method in OPERATIONS or method in ("parameters", "summary", "description") or method.startswith("x-"), \
                (path, method)
        if "get" in item:
            assert "head" in item, "%s: the server answers HEAD wherever it answers GET" % path
        for method in (m for m in item if m in OPERATIONS):
            op = item[method]
            assert op["operationId"] not in op_ids, "duplicate operationId %s" % op["operationId"]
            op_ids.add(op["operationId"])
            assert op["responses"], (path, method)
            for code in op["responses"]:
                assert re.fullmatch(r"[1-5][0-9][0-9]", str(code)), (path, method, code)
            params = [deref(spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, "%s %s: path parameters %s, declared %s" % (method, path, names, declared)
            assert all(p["required"] for p in params if p["in"] == "path")
            for req in op.get("security", spec.get("security", [])):
                assert set(req) <= set(schemes), req
            scope = op.get("x-required-scope")
            if op.get("security", spec["security"]):
                assert scope in ("read", "write", "admin", "operator"), "%s %s: x-required-scope" % (method, path)
        assert "x-undocumented-methods" in item, path


def test_every_ref_resolves(spec):
    refs = 0
    for where, node in walk(spec):
        if isinstance(node, dict) and "$ref" in node:
            refs += 1
            assert isinstance(node["$ref"], str), where
            pointer(spec, node["$ref"])
    assert refs > 100


def _schemas(spec):
    """Every schema: components, and those inline in parameters, headers and media types."""
    for name, s in spec["components"]["schemas"].items():
        yield ("components", "schemas", name), s
    for where, node in walk(spec):
        if where[:2] == ("components", "schemas"):
            continue
        if isinstance(node, dict) and isinstance(node.get("schema"), dict) and \
                ("in" in node or where[-2:-1] in (("content",), ("headers",))):
            yield where + ("schema",), node["schema"]


def test_every_schema_is_a_valid_json_schema(spec):
    n = 0
    for where, s in _schemas(spec):
        Draft202012Validator.check_schema(s)
        n += 1
    assert n > 150, n
    # and every schema can be used: its $refs resolve inside the document
    resolver = RefResolver.from_schema(spec)
    for name in spec["components"]["schemas"]:
        v = Draft202012Validator({"$ref": "#/components/schemas/" + name}, resolver=resolver)
        list(v.iter_errors({}))  # resolves every $ref on the way without raising


def test_the_problem_types_are_the_codes(spec):
    """ProblemType lists every type the admin listener sends (src/admin/*.c, and the statuses'
    types of src/proxy/session.c's problem_type), and nothing else."""
    enum = set(spec["components"]["schemas"]["ProblemType"]["enum"])
    sent = set()
    for fn in ("admin/admin.c", "admin/cp.c", "admin/grpc_admin.c"):
        path = os.path.join(REPO, "src", fn)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read()
        sent |= {PB + t for t in re.findall(r'problem(?:_x)?\(x, \d+, "([a-z-]+)"', text)}
        sent |= {PB + t for t in re.findall(r'gatehouse\.dev/problems/([a-z-]+)', text)}
        assert "about:blank" not in text, fn
    with open(os.path.join(REPO, "src", "proxy", "session.c")) as f:
        text = f.read()
    body = re.search(r"static const char \*problem_type\(int status\)\n\{(.*?)\n\}", text, re.S).group(1)
    sent |= {PB + t for t in re.findall(r'return "([a-z-]+)";', body)}
    assert sent == enum, "in the code only: %s; in the file only: %s" % (sorted(sent - enum), sorted(enum - sent))


# ----------------------------------------------------------------------------- the server

OPERATOR_KEY = "openapi-operator-key-5e1f0c2d9a8b"

CONFIG = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 1s
access_log: off
admin: {listen: "127.0.0.1:{admin_port}", store: "{tmp}/cp.db", key_file: "{keyfile}", rate_limit: "100000/s", burst: 100000}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
demo_origin: {listen: "127.0.0.1:{demo_port}"}
cache: {memory: 8m}
upstreams:
  app: {backends: ["127.0.0.1:{demo_port}"]}
experiments: {store: "{tmp}/exp.db"}
tenants:
  - name: filet
    flags:
      definition:
        flags:
          new-home: {state: ENABLED, variants: {"on": true, "off": false}, defaultVariant: "off"}
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics: [{name: checkout, kind: conversion, path: /checkout}]
    sites:
      - name: fmain
        hosts: ["file.example"]
        routes:
          - name: stats
            respond: {status: 200, body: "file\\n"}
            analytics: true
"""

# a second gatehouse without a store and with a tiny admin rate: 409 no-store and 429
SMALL_CONFIG = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 1s
access_log: off
admin: {listen: "127.0.0.1:{admin_port}", key_file: "{keyfile}", rate_limit: "1/m", burst: 2}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
"""


class Api:
    """Calls the admin listener and checks every answer against the description."""

    def __init__(self, spec, base):
        self.spec = spec
        self.base = base
        self.resolver = RefResolver.from_schema(spec)
        self.seen = {}  # (template, METHOD) -> {status}

    def validate(self, schema, value, what):
        errors = sorted(Draft202012Validator(schema, resolver=self.resolver).iter_errors(value),
                        key=lambda e: list(e.absolute_path))
        assert not errors, "%s: %d schema errors, first: %s at %s\n%s" % (
            what, len(errors), errors[0].message[:300], list(errors[0].absolute_path),
            json.dumps(value, indent=1)[:1500])

    def op(self, template, method):
        item = self.spec["paths"][template]
        assert method.lower() in item, "%s %s is not documented" % (method, template)
        return item[method.lower()]

    def call(self, method, template, values=None, query=None, body=None, raw=None, ctype=None, key=OPERATOR_KEY,
             headers=None, expect=None, ptype=None):
        path = template
        for k, v in (values or {}).items():
            path = path.replace("{%s}" % k, quote(str(v), safe=""))
        assert "{" not in path, path
        h = {}
        if key:
            h["Authorization"] = "Bearer " + key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = ctype or JSON
        elif raw is not None:
            data = raw
            if ctype:
                h["Content-Type"] = ctype
        h.update(headers or {})
        r = request(method, self.base + path, params=query, headers=h, data=data)
        what = "%s %s -> %d" % (method, r.request.path_url, r.status_code)
        if expect is not None:
            assert r.status_code == expect, "%s (expected %d): %s" % (what, expect, r.text[:800])
        self.check(method, template, r, what, body)
        if ptype:
            assert r.headers["Content-Type"].startswith("application/problem+json"), what
            if method != "HEAD":
                assert r.json()["type"] == PB + ptype, (what, r.text[:400])
        return r

    def check(self, method, template, r, what, sent=None):
        op = self.op(template, method)
        code = str(r.status_code)
        assert code in op["responses"], "%s: status not documented (documented: %s): %s" % (
            what, sorted(op["responses"]), r.text[:500])
        resp = deref(self.spec, op["responses"][code])
        ctype = r.headers.get("Content-Type")
        base = ctype.split(";")[0].strip() if ctype else None
        content = resp.get("content")
        if method == "HEAD":
            assert r.content == b"", "%s: a body on HEAD" % what
            get = self.spec["paths"][template].get("get")
            gresp = deref(self.spec, get["responses"][code]) if get and code in get["responses"] else {}
            if gresp.get("content"):
                assert base in {k.split(";")[0] for k in gresp["content"]}, "%s: Content-Type %s" % (what, ctype)
        elif content:
            media = {k.split(";")[0]: v for k, v in content.items()}
            assert base in media, "%s: Content-Type %r, documented %s" % (what, ctype, sorted(media))
            if base.endswith("json"):
                try:
                    value = r.json()
                except ValueError:
                    raise AssertionError("%s: not JSON: %r" % (what, r.text[:300]))
            else:
                value = r.text
            self.validate(media[base]["schema"], value, what)
        else:
            assert r.content == b"", "%s: an undocumented body %r" % (what, r.text[:200])
        for name, hobj in resp.get("headers", {}).items():
            hobj = deref(self.spec, hobj)
            v = r.headers.get(name)
            if hobj.get("required"):
                assert v is not None, "%s: header %s missing" % (what, name)
            if v is not None:
                schema = deref(self.spec, hobj["schema"])
                if schema.get("type") == "integer":
                    assert re.fullmatch(r"[0-9]+", v), "%s: %s: %r" % (what, name, v)
                    v = int(v)
                self.validate(hobj["schema"], v, "%s: header %s" % (what, name))
        # the request bodies that succeed fit the documented request schema
        if sent is not None and r.status_code < 300 and "requestBody" in op:
            media = op["requestBody"]["content"]
            self.validate(next(iter(media.values()))["schema"], sent, "%s: request body" % what)
        self.seen.setdefault((template, method.upper()), set()).add(r.status_code)


@pytest.fixture(scope="module")
def gh(gatehouse_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("openapi-keys")
    kf = d / "operator.key"
    kf.write_text(OPERATOR_KEY + "\n")
    env_key = os.environ.pop("GATEHOUSE_ADMIN_KEY", None)  # the file's key must be the one in force
    try:
        g = gatehouse_module(CONFIG, keyfile=str(kf), workers=1)
    finally:
        if env_key is not None:
            os.environ["GATEHOUSE_ADMIN_KEY"] = env_key
    return g


T = "/v1/tenants"
TI = "/v1/tenants/{tenant}"
SITES = TI + "/sites"
SITE = SITES + "/{site}"
ROUTES = SITE + "/routes"
ROUTE = ROUTES + "/{route}"
UPS = TI + "/upstreams"
UP = UPS + "/{upstream}"
FLAGS = TI + "/flags"
FLAG = FLAGS + "/{flag}"
EXPS = TI + "/experiments"
EXP = EXPS + "/{experiment}"
PROT = TI + "/protection"
CACHE = TI + "/cache"
KEYS = TI + "/keys"
KEY = KEYS + "/{key_id}"
PURGES = TI + "/purges"


def metric_exp(id_, alpha=0.05):
    return {"id": id_, "flag": "banner", "variants": ["off", "on"], "alpha": alpha,
            "metrics": [{"name": "c", "kind": "conversion", "path": "/c"}]}


@pytest.fixture(scope="module")
def world(gh, spec):
    """API tenants acme (every kind of resource) and beta, and keys of acme."""
    api = Api(spec, gh.admin_url)
    demo = "127.0.0.1:%d" % gh.values["demo_port"]
    acme = {
        "name": "acme",
        "upstreams": {"pool": {"backends": [demo]}},
        "sites": [{"name": "main", "hosts": ["acme.example"],
                   "routes": [{"name": "hello", "match": {"path": {"exact": "/hello"}},
                               "respond": {"status": 200, "body": "hi\n"}},
                              {"name": "app", "match": {"path": {"prefix": "/app"}}, "upstream": "pool"}]}],
        "flags": {"definition": {"flags": {"banner": {"state": "ENABLED", "variants": {"on": True, "off": False},
                                                      "defaultVariant": "off"}}}},
        "experiments": [metric_exp("exp1")],
        "protection": {"deny": ["10.9.9.9/32"]},
        "cache": {"targeted_header": "Acme-Cache-Control"},
    }
    api.call("POST", T, body=acme, expect=201)
    api.call("POST", T, body={"name": "beta", "sites": [{"name": "b", "hosts": ["beta.example"]}]}, expect=201)
    keys = {}
    for name, scopes in (("full", ["read", "write", "admin"]), ("ro", ["read"]), ("adm", ["admin"])):
        r = api.call("POST", KEYS, {"tenant": "acme"}, body={"name": name, "scopes": scopes}, expect=201)
        keys[name] = r.json()["key"]
        keys[name + "_id"] = r.json()["id"]
    return {"api": api, "demo": demo, "keys": keys}


def etag(r):
    return r.headers["ETag"]


def crud(api, coll, item, values, key_field, new, put_body, put_new, patch):
    """Every operation of a collection and its items: list (GET, HEAD), create, get (GET, HEAD, 304),
    replace, create by PUT, merge-patch, dry runs, delete."""
    api.call("GET", coll, values, query={"limit": 50}, expect=200)
    api.call("HEAD", coll, values, expect=200)
    r = api.call("POST", coll, values, body=new, expect=201)
    name = new[key_field]
    assert r.headers["Location"].endswith("/" + name)
    iv = dict(values, **{item[item.rindex("{") + 1:-1]: name})
    r = api.call("GET", item, iv, expect=200)
    assert r.json()[key_field] == name
    api.call("HEAD", item, iv, expect=200)
    api.call("GET", item, iv, headers={"If-None-Match": etag(r)}, expect=304)
    api.call("HEAD", item, iv, headers={"If-None-Match": etag(r)}, expect=304)
    r = api.call("PUT", item, iv, body=put_body, headers={"If-Match": etag(r)}, expect=200)
    assert r.json()[key_field] == name and "Gatehouse-Config-Version" in r.headers
    r = api.call("PATCH", item, iv, body=patch, ctype="application/merge-patch+json", expect=200)
    api.call("PATCH", item, iv, query="dry_run=true", body=patch, expect=200)
    other = put_new[key_field]
    ov = dict(values, **{item[item.rindex("{") + 1:-1]: other})
    r = api.call("PUT", item, ov, body={k: v for k, v in put_new.items() if k != key_field}, expect=201)
    assert r.headers["Location"].endswith("/" + other)
    api.call("POST", coll, values, query="dry_run=true", body=dict(new, **{key_field: "dry-" + name}), expect=200)
    api.call("DELETE", item, ov, query="dry_run", expect=200)
    api.call("DELETE", item, ov, headers={"If-Match": "*"}, expect=204)
    api.call("DELETE", item, iv, expect=204)
    api.call("GET", item, iv, expect=404, ptype="not-found")


def singleton(api, path, values, put_body, patch):
    r = api.call("GET", path, values, expect=200)
    api.call("HEAD", path, values, expect=200)
    api.call("GET", path, values, headers={"If-None-Match": etag(r)}, expect=304)
    api.call("HEAD", path, values, headers={"If-None-Match": etag(r)}, expect=304)
    r = api.call("PUT", path, values, body=put_body, headers={"If-Match": etag(r)}, expect=200)
    api.call("PATCH", path, values, body=patch, expect=200)
    api.call("PATCH", path, values, query="dry_run=1", body=patch, ctype="application/merge-patch+json", expect=200)
    api.call("DELETE", path, values, query="dry_run=true", expect=200)
    api.call("DELETE", path, values, expect=204)
    api.call("GET", path, values, expect=404, ptype="not-found")
    api.call("PUT", path, values, body=put_body, expect=201)


def test_every_documented_operation_answers_as_documented(gh, world, spec):
    api, demo, keys = world["api"], world["demo"], world["keys"]
    A = {"tenant": "acme"}

    # ---- tenants
    r = api.call("GET", T, query={"limit": 1}, expect=200)
    page = r.json()
    assert len(page["items"]) == 1 and page["next_cursor"] and "filet" in page["file_managed"]
    assert 'rel="next"' in r.headers["Link"]
    names = [page["items"][0]["name"]]
    while page["next_cursor"]:
        page = api.call("GET", T, query={"limit": 1, "cursor": page["next_cursor"]}, expect=200).json()
        names += [t["name"] for t in page["items"]]
    assert names == sorted(names) and {"acme", "beta", "filet"} <= set(names)
    api.call("HEAD", T, expect=200)
    api.call("GET", T, query={"prefix": "ac"}, expect=200)
    api.call("POST", T, query="dry_run=true", body={"name": "t-dry"}, expect=200)
    r = api.call("POST", T, body={"name": "t-crud", "sites": []}, expect=201)
    r = api.call("GET", TI, {"tenant": "t-crud"}, expect=200)
    api.call("HEAD", TI, {"tenant": "t-crud"}, expect=200)
    api.call("GET", TI, {"tenant": "t-crud"}, headers={"If-None-Match": etag(r)}, expect=304)
    api.call("HEAD", TI, {"tenant": "t-crud"}, headers={"If-None-Match": etag(r)}, expect=304)
    r = api.call("GET", TI, {"tenant": "filet"}, expect=200)
    assert r.headers["Gatehouse-Origin"] == "file"
    F = {"tenant": "filet", "site": "fmain"}
    assert api.call("GET", SITE, F, expect=200).headers["Gatehouse-Origin"] == "file"
    assert [x["name"] for x in api.call("GET", ROUTES, F, expect=200).json()["items"]] == ["stats"]
    api.call("GET", ROUTE, dict(F, route="stats"), expect=200)
    api.call("GET", FLAG, {"tenant": "filet", "flag": "new-home"}, expect=200)
    api.call("GET", EXP, {"tenant": "filet", "experiment": "home-test"}, expect=200)
    api.call("POST", KEYS, {"tenant": "filet"}, body={"name": "file-reader", "scopes": ["read"]}, expect=201)
    r = api.call("PUT", TI, {"tenant": "t-put"}, body={"sites": []}, expect=201)
    r = api.call("PUT", TI, {"tenant": "t-put"}, body={"name": "t-put", "sites": [], "cache": {"targeted_header": "T-CC"}},
                 headers={"If-Match": etag(r)}, expect=200)
    v = int(r.headers["Gatehouse-Config-Version"])
    r = api.call("PUT", TI, {"tenant": "t-put"}, body={"name": "t-put", "sites": [], "cache": {"targeted_header": "T-CC"}},
                 expect=200)  # unchanged: no new version
    assert int(r.headers["Gatehouse-Config-Version"]) == v
    api.call("PATCH", TI, {"tenant": "t-put"}, body={"cache": None}, ctype="application/merge-patch+json", expect=200)
    api.call("PATCH", TI, {"tenant": "t-put"}, query="dry_run=true", body={"sites": []}, expect=200)
    api.call("PUT", TI, {"tenant": "t-put"}, query="dry_run=true", body={"sites": []}, expect=200)
    api.call("DELETE", TI, {"tenant": "t-put"}, query="dry_run=true", expect=200)
    api.call("DELETE", TI, {"tenant": "t-put"}, expect=204)
    api.call("DELETE", TI, {"tenant": "t-crud"}, headers={"If-Match": "*"}, expect=204)

    # ---- collections of acme
    crud(api, SITES, SITE, A, "name",
         {"name": "blog", "hosts": ["blog.acme.example"]},
         {"hosts": ["blog2.acme.example"]},
         {"name": "shop", "hosts": ["shop.acme.example"]},
         {"hosts": ["blog3.acme.example"]})
    api.call("POST", SITES, A, query={"position": 0}, body={"name": "first", "hosts": ["first.acme.example"]}, expect=201)
    assert [s["name"] for s in api.call("GET", TI, A, expect=200).json()["sites"]][0] == "first"
    api.call("DELETE", SITE, dict(A, site="first"), expect=204)
    M = dict(A, site="main")
    crud(api, ROUTES, ROUTE, M, "name",
         {"name": "r1", "match": {"path": {"prefix": "/r1"}}, "respond": {"status": 200, "body": "r1\n"}},
         {"match": {"path": {"prefix": "/r1"}}, "respond": {"status": 201}},
         {"name": "r2", "upstream": "pool", "match": {"path": {"prefix": "/r2"}}},
         {"respond": {"body": "patched\n"}})
    crud(api, UPS, UP, A, "name",
         {"name": "pool2", "backends": [demo]},
         {"backends": [{"address": demo, "weight": 2}]},
         {"name": "pool3", "backends": [demo]},
         {"balance": "least_request"})
    crud(api, FLAGS, FLAG, A, "key",
         {"key": "f2", "state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"},
         {"state": "DISABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a"},
         {"key": "f3", "state": "ENABLED", "variants": {"x": "y"}, "defaultVariant": "x"},
         {"defaultVariant": "b"})
    crud(api, EXPS, EXP, A, "id", metric_exp("exp2"), {k: v for k, v in metric_exp("exp2", 0.01).items() if k != "id"},
         metric_exp("exp3"), {"n_star": 1000})
    singleton(api, PROT, A, {"deny": ["10.9.9.8/32"]}, {"deny": ["10.9.9.7/32"]})
    singleton(api, CACHE, A, {"targeted_header": "X-Acme-CC"}, {"targeted_header": "X-Acme-CC2"})

    # ---- idempotency
    idem = {"Idempotency-Key": "openapi-1"}
    body = {"name": "idem", "hosts": ["idem.acme.example"]}
    r1 = api.call("POST", SITES, A, body=body, headers=idem, expect=201)
    r2 = api.call("POST", SITES, A, body=body, headers=idem, expect=201)
    assert r2.headers.get("Idempotent-Replayed") == "true" and r2.json() == r1.json()
    assert "Idempotent-Replayed" not in r1.headers
    api.call("POST", SITES, A, body=dict(body, hosts=["other.acme.example"]), headers=idem, expect=422,
             ptype="idempotency-key-reuse")
    api.call("DELETE", SITE, dict(A, site="idem"), expect=204)

    # ---- keys (the operator, and acme's admin key)
    r = api.call("GET", KEYS, A, query={"limit": 2}, expect=200)
    assert r.json()["next_cursor"] and "Link" in r.headers and "key" not in r.json()["items"][0]
    api.call("HEAD", KEYS, A, expect=200)
    r = api.call("POST", KEYS, A, body={"name": "tmp", "scopes": ["read"], "ttl_seconds": 3600}, expect=201,
                 key=keys["full"])
    kid = r.json()["id"]
    assert r.json()["created_by"] == "key:" + keys["full_id"]
    r = api.call("GET", KEY, dict(A, key_id=kid), expect=200)
    api.call("HEAD", KEY, dict(A, key_id=kid), expect=200)
    api.call("GET", KEY, dict(A, key_id=kid), headers={"If-None-Match": etag(r)}, expect=304)
    api.call("DELETE", KEY, dict(A, key_id=kid), expect=204)
    assert api.call("GET", KEY, dict(A, key_id=kid), expect=200).json()["revoked_at"]

    # ---- purges
    api.call("POST", PURGES, A, body={"tags": ["t1", "t2"], "soft": True}, expect=200)
    api.call("POST", PURGES, A, body={"all": True}, expect=200, key=keys["full"])
    api.call("POST", PURGES, {"tenant": "filet"}, body={"prefixes": ["file.example/x"]}, expect=200)

    # ---- a tenant key on its own tenant
    api.call("GET", T, key=keys["ro"], expect=200)
    api.call("GET", SITE, M, key=keys["ro"], expect=200)
    api.call("PATCH", ROUTE, dict(M, route="hello"), body={"respond": {"body": "hello\n"}}, key=keys["full"], expect=200)

    # ---- audit
    r = api.call("GET", "/v1/audit", query={"limit": 3}, expect=200)
    page = r.json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    assert page["items"][0]["id"] > page["items"][1]["id"]
    api.call("GET", "/v1/audit", query={"limit": 3, "cursor": page["next_cursor"]}, expect=200)
    api.call("HEAD", "/v1/audit", expect=200)
    r = api.call("GET", "/v1/audit", query={"tenant": "acme", "limit": 500}, key=keys["ro"], expect=200)
    actions = {i["action"] for i in r.json()["items"]}
    assert {"create", "replace", "update", "delete", "key.create", "key.revoke", "purge"} <= actions, actions

    # ---- versions
    r = api.call("GET", "/v1/versions", query={"limit": 2}, expect=200)
    vl = r.json()
    cur = vl["current"]
    assert cur >= 10 and vl["items"][0]["id"] == cur and vl["next_cursor"]
    ids = [i["id"] for i in vl["items"]]
    while vl["next_cursor"]:  # every version, down to the first (parent null)
        vl = api.call("GET", "/v1/versions", query={"cursor": vl["next_cursor"], "limit": 7}, expect=200).json()
        ids += [i["id"] for i in vl["items"]]
    assert ids == list(range(cur, 0, -1)) and vl["items"][-1]["parent"] is None
    api.call("HEAD", "/v1/versions", expect=200)
    r = api.call("GET", "/v1/versions/{version}", {"version": 1}, expect=200)
    assert "acme" in r.json()["state"]["tenants"]
    api.call("HEAD", "/v1/versions/{version}", {"version": cur}, expect=200)
    r = api.call("GET", "/v1/versions/{version}/diff", {"version": cur}, expect=200)
    assert r.json()["from"] == cur - 1 and r.json()["changes"]
    api.call("GET", "/v1/versions/{version}/diff", {"version": 2}, query={"from": 0}, expect=200)
    api.call("HEAD", "/v1/versions/{version}/diff", {"version": cur}, expect=200)
    RB = "/v1/versions/{version}/rollback"
    api.call("POST", RB, {"version": cur - 1}, query="dry_run=true", expect=200)
    r = api.call("POST", RB, {"version": cur - 1}, expect=200)
    assert r.json() == {"rolled_back_to": cur - 1} and int(r.headers["Gatehouse-Config-Version"]) == cur + 1
    r = api.call("POST", RB, {"version": cur}, expect=200)  # and back again
    assert int(r.headers["Gatehouse-Config-Version"]) == cur + 2
    assert api.call("GET", "/v1/versions/{version}/diff", {"version": cur + 2}, query={"from": cur},
                    expect=200).json()["changes"] == []

    # ---- the operator's older endpoints
    api.call("GET", "/healthz", key=None, expect=200)
    api.call("HEAD", "/healthz", key=None, expect=200)
    api.call("GET", "/readyz", key=None, expect=200)
    api.call("HEAD", "/readyz", key=None, expect=200)
    api.call("GET", "/metrics", expect=200)
    api.call("HEAD", "/metrics", expect=200)
    r = api.call("GET", "/upstreams", expect=200)
    assert {"app", "acme/pool"} <= {u["name"] for u in r.json()["upstreams"]}
    api.call("HEAD", "/upstreams", expect=200)
    api.call("POST", "/upstreams/{upstream}/drain", {"upstream": "app"}, query="backend=" + demo, expect=200)
    assert [b["drained"] for u in api.call("GET", "/upstreams").json()["upstreams"] if u["name"] == "app"
            for b in u["backends"]] == [True]
    api.call("POST", "/upstreams/{upstream}/undrain", {"upstream": "app"}, query="backend=" + demo, expect=200)
    api.call("GET", "/cache", expect=200)
    api.call("HEAD", "/cache", expect=200)
    api.call("POST", "/cache/purge", query="tenant=filet&all=1", expect=200)
    api.call("POST", "/cache/purge", query="tenant=acme&tag=a&tag=b&soft=1", expect=200)
    api.call("GET", "/protection/top", expect=200)
    api.call("HEAD", "/protection/top", expect=200)
    assert gh.get("/", host="file.example").status_code == 200  # something for the analytics
    q = {"tenant": "filet", "route": "stats", "window": "hour", "top": 5}
    r = api.call("GET", "/v1/analytics", query=q, expect=200)
    assert r.json()["route"] == "stats"
    api.call("HEAD", "/v1/analytics", query=q, expect=200)
    q = "metric=conversion&baseline=0.1&mde=0.02&daily_units=1000"
    api.call("GET", "/v1/experiments/plan", query=q, expect=200)
    api.call("GET", "/v1/experiments/plan", query="metric=mean&sd=3&mde=0.5&variants=3", expect=200)
    api.call("HEAD", "/v1/experiments/plan", query=q, expect=200)
    RES = "/v1/experiments/{experiment}/results"
    api.call("GET", RES, {"experiment": "home-test"}, query={"tenant": "filet"}, expect=200)
    api.call("HEAD", RES, {"experiment": "home-test"}, query={"tenant": "filet"}, expect=200)

    # ---- the dashboard's files (no key)
    for method in ("GET", "HEAD"):  # (not followed)
        r = request(method, api.base + "/dashboard", allow_redirects=False)
        assert r.status_code == 308 and r.headers["Location"] == "/dashboard/", (method, r.status_code)
        api.check(method, "/dashboard", r, method + " /dashboard")
    r = api.call("GET", "/dashboard/", key=None, expect=200)
    api.call("GET", "/dashboard/", key=None, headers={"If-None-Match": etag(r)}, expect=304)
    api.call("HEAD", "/dashboard/", key=None, expect=200)
    api.call("HEAD", "/dashboard/", key=None, headers={"If-None-Match": etag(r)}, expect=304)
    DF = "/dashboard/{file}"
    for f in ("index.html", "app.js", "style.css", "favicon.svg", "uPlot.iife.min.js"):
        r = api.call("GET", DF, {"file": f}, key=None, expect=200)
    api.call("GET", DF, {"file": "uPlot.iife.min.js"}, headers={"If-None-Match": etag(r)}, expect=304)
    api.call("HEAD", DF, {"file": "app.js"}, key=None, expect=200)
    api.call("HEAD", DF, {"file": "app.js"}, key=None, headers={"If-None-Match": "*"}, expect=304)
    api.call("GET", DF, {"file": "nope.js"}, key=None, expect=404, ptype="not-found")
    api.call("HEAD", DF, {"file": "nope.js"}, key=None, expect=404)
    api.call("GET", "/v1/slos", expect=200)  # docs/metrics.md, src/obs/slo.c
    api.call("HEAD", "/v1/slos", query={"tenant": "filet"}, expect=200)

    # ---- every documented operation was called, and succeeded at least once
    missing = []
    for path, item in spec["paths"].items():
        for m in (m for m in item if m in OPERATIONS):
            if not any(200 <= s < 400 for s in api.seen.get((path, m.upper()), ())):
                missing.append("%s %s" % (m.upper(), path))
    assert not missing, "never answered with success: %s" % missing


def test_documented_error_answers(gh, world, spec, gatehouse_module, tmp_path_factory):
    api, keys = world["api"], world["keys"]
    A = {"tenant": "acme"}
    M = dict(A, site="main")
    main_before = api.call("GET", SITE, M, expect=200).json()
    # 401: no key, a wrong key, a revoked key, not Bearer
    api.call("GET", T, key=None, expect=401, ptype="unauthorized")
    api.call("GET", T, key="wrong-" + OPERATOR_KEY, expect=401, ptype="unauthorized")
    api.call("GET", T, key=None, headers={"Authorization": "Basic eDp5"}, expect=401, ptype="unauthorized")
    api.call("GET", "/metrics", key=None, expect=401, ptype="unauthorized")
    api.call("POST", "/cache/purge", query="tenant=acme&all=1", key=None, expect=401, ptype="unauthorized")
    r = api.call("POST", KEYS, A, body={"name": "gone", "scopes": ["read"]}, expect=201)
    gone = r.json()
    api.call("DELETE", KEY, dict(A, key_id=gone["id"]), expect=204)
    api.call("GET", TI, A, key=gone["key"], expect=401, ptype="unauthorized")
    # 403: a missing scope, operator-only operations and endpoints
    api.call("POST", SITES, A, body={"name": "x", "hosts": ["x.acme.example"]}, key=keys["ro"], expect=403,
             ptype="forbidden")
    api.call("GET", KEYS, A, key=keys["ro"], expect=403, ptype="forbidden")
    api.call("GET", SITES, A, key=keys["adm"], expect=403, ptype="forbidden")
    api.call("POST", KEYS, A, body={"name": "esc", "scopes": ["write"]}, key=keys["adm"], expect=422, ptype="invalid-key")
    api.call("POST", T, body={"name": "new"}, key=keys["full"], expect=403, ptype="forbidden")
    api.call("DELETE", TI, A, key=keys["full"], expect=403, ptype="forbidden")
    api.call("GET", "/v1/versions", key=keys["full"], expect=403, ptype="forbidden")
    api.call("POST", "/v1/versions/{version}/rollback", {"version": 1}, key=keys["full"], expect=403, ptype="forbidden")
    api.call("GET", "/metrics", key=keys["full"], expect=403, ptype="forbidden")
    api.call("POST", "/cache/purge", query="tenant=acme&all=1", key=keys["full"], expect=403, ptype="forbidden")
    # 404: absent, and another tenant's (the same answer)
    api.call("GET", TI, {"tenant": "nope"}, expect=404, ptype="not-found")
    r = api.call("GET", TI, {"tenant": "beta"}, key=keys["full"], expect=404, ptype="not-found")
    assert "beta.example" not in r.text
    api.call("PUT", TI, {"tenant": "beta"}, body={"sites": []}, key=keys["full"], expect=404, ptype="not-found")
    api.call("PUT", TI, {"tenant": "mine"}, body={"sites": []}, key=keys["full"], expect=404, ptype="not-found")
    api.call("GET", SITE, dict(A, site="nope"), expect=404, ptype="not-found")
    api.call("GET", ROUTES, dict(A, site="nope"), expect=404, ptype="not-found")
    api.call("PATCH", UP, dict(A, upstream="nope"), body={}, expect=404, ptype="not-found")
    api.call("GET", PROT, {"tenant": "beta"}, expect=404, ptype="not-found")
    api.call("GET", KEY, dict(A, key_id="000000000000"), expect=404, ptype="not-found")
    api.call("GET", "/v1/audit", query={"tenant": "beta"}, key=keys["ro"], expect=404, ptype="not-found")
    api.call("GET", "/v1/versions/{version}", {"version": 999999}, expect=404, ptype="not-found")
    api.call("GET", "/v1/versions/{version}/diff", {"version": 2}, query={"from": 999999}, expect=404, ptype="not-found")
    api.call("POST", "/v1/versions/{version}/rollback", {"version": 999999}, expect=404, ptype="not-found")
    api.call("POST", PURGES, {"tenant": "nope"}, body={"all": True}, expect=404, ptype="not-found")
    api.call("GET", "/v1/analytics", query={"tenant": "filet", "route": "nope"}, expect=404, ptype="not-found")
    api.call("GET", "/v1/experiments/{experiment}/results", {"experiment": "nope"}, query={"tenant": "filet"},
             expect=404, ptype="not-found")
    api.call("POST", "/cache/purge", query="tenant=nope&all=1", expect=404, ptype="not-found")
    api.call("POST", "/upstreams/{upstream}/drain", {"upstream": "app"}, query="backend=10.1.1.1:1", expect=404)
    api.call("POST", "/upstreams/{upstream}/undrain", {"upstream": "nope"}, query="backend=10.1.1.1:1", expect=404)
    # 409
    api.call("POST", T, body={"name": "acme"}, expect=409, ptype="already-exists")
    api.call("POST", T, body={"name": "filet"}, expect=409, ptype="already-exists")
    api.call("POST", SITES, A, body={"name": "main", "hosts": ["m2.acme.example"]}, expect=409, ptype="already-exists")
    api.call("PUT", TI, {"tenant": "filet"}, body={"sites": []}, expect=409, ptype="file-managed")
    api.call("POST", SITES, {"tenant": "filet"}, body={"name": "s", "hosts": ["s.file.example"]}, expect=409,
             ptype="file-managed")
    api.call("DELETE", ROUTE, {"tenant": "filet", "site": "fmain", "route": "stats"}, expect=409, ptype="file-managed")
    # 412
    r = api.call("GET", SITE, M, expect=200)
    stale = '"%s"' % ("0" * 32)
    api.call("PUT", SITE, M, body=r.json(), headers={"If-Match": stale}, expect=412, ptype="precondition-failed")
    api.call("PATCH", TI, A, body={}, headers={"If-Match": stale}, expect=412, ptype="precondition-failed")
    api.call("DELETE", CACHE, A, headers={"If-Match": "W/" + etag(api.call("GET", CACHE, A))}, expect=412,
             ptype="precondition-failed")
    api.call("PUT", SITE, dict(A, site="absent"), body={"hosts": ["absent.acme.example"]}, headers={"If-Match": "*"},
             expect=412, ptype="precondition-failed")
    assert api.call("GET", SITE, M).json() == main_before
    # 415, 400
    api.call("POST", SITES, A, raw=b'{"name": "x", "hosts": ["x.acme.example"]}', ctype="text/plain", expect=415,
             ptype="unsupported-media-type")
    api.call("PUT", CACHE, A, raw=b'{}', expect=415, ptype="unsupported-media-type")
    api.call("POST", SITES, A, raw=b'{"name": ', ctype=JSON, expect=400, ptype="invalid-json")
    api.call("PATCH", SITE, M, raw=b'[1, 2]', ctype="application/merge-patch+json", expect=400, ptype="invalid-json")
    api.call("POST", PURGES, A, raw=b'{"all": true, "all": true}', ctype=JSON, expect=400, ptype="invalid-json")
    api.call("GET", T, query={"limit": 0}, expect=400, ptype="bad-request")
    api.call("GET", SITES, A, query={"cursor": "zz"}, expect=400, ptype="bad-request")
    api.call("GET", "/v1/audit", query={"cursor": "x"}, expect=400, ptype="bad-request")
    api.call("GET", "/v1/versions", query={"limit": 501}, expect=400, ptype="bad-request")
    api.call("POST", UPS, A, query={"position": 0}, body={"name": "p9", "backends": [world["demo"]]}, expect=400,
             ptype="bad-request")
    api.call("POST", SITES, A, query={"position": -1}, body={"name": "p9", "hosts": ["p9.acme.example"]}, expect=400,
             ptype="bad-request")
    api.call("DELETE", SITE, M, headers={"Idempotency-Key": "k" * 256}, expect=400, ptype="bad-request")
    api.call("POST", "/cache/purge", query="tenant=acme", expect=400, ptype="bad-request")
    api.call("POST", "/cache/purge", query="tenant=acme&tag=a&url=b", expect=400, ptype="bad-request")
    api.call("GET", "/v1/analytics", query={"tenant": "filet"}, expect=400, ptype="bad-request")
    api.call("GET", "/v1/experiments/plan", query="metric=conversion&baseline=2&mde=0.1", expect=400, ptype="bad-request")
    api.call("GET", "/v1/experiments/{experiment}/results", {"experiment": "home-test"}, expect=400, ptype="bad-request")
    api.call("POST", "/upstreams/{upstream}/drain", {"upstream": "app"}, expect=400)
    # 422
    r = api.call("POST", ROUTES, M, body={"name": "bad", "upstream": "missing"}, expect=422,
                 ptype="invalid-configuration")
    errs = r.json()["errors"]
    assert errs and any("upstream" in e.get("path", "") + e["message"] for e in errs), errs
    r = api.call("POST", ROUTES, M, query="dry_run=true", body={"name": "bad", "upstream": "missing"}, expect=422,
                 ptype="invalid-configuration")
    api.call("POST", ROUTES, M, body={"name": "file-pool", "upstream": "app"}, key=keys["full"], expect=422,
             ptype="invalid-configuration")  # a tenant key routes only to its tenant's pools
    api.call("PUT", SITE, M, body={"name": "other", "hosts": ["acme.example"]}, expect=422, ptype="invalid-configuration")
    api.call("POST", SITES, A, body={"hosts": ["x.acme.example"]}, expect=422, ptype="invalid-configuration")
    api.call("POST", T, body={"name": "a/b"}, expect=422, ptype="invalid-configuration")
    api.call("POST", KEYS, A, body={"name": "k", "scopes": ["root"]}, expect=422, ptype="invalid-key")
    api.call("POST", KEYS, A, body={"name": "k", "scopes": ["read"], "ttl_seconds": 0}, expect=422, ptype="invalid-key")
    api.call("POST", PURGES, A, body={"tags": ["a"], "all": True}, expect=422, ptype="invalid-purge")
    api.call("POST", PURGES, A, body={}, expect=422, ptype="invalid-purge")
    # 413 (payload-too-large, before authentication)
    api.call("POST", SITES, A, raw=b"x" * (1024 * 1024 + 1), ctype=JSON, expect=413)
    api.call("PUT", TI, A, raw=b"x" * (1024 * 1024 + 1), ctype=JSON, key=None, expect=413)
    # none of the refused writes changed acme's main site
    assert api.call("GET", SITE, M, expect=200).json() == main_before

    # 409 no-store and 429 rate-limited: a second gatehouse without a store, 2 requests a minute
    d = tmp_path_factory.mktemp("openapi-small")
    kf = d / "operator.key"
    kf.write_text(OPERATOR_KEY + "\n")
    env_key = os.environ.pop("GATEHOUSE_ADMIN_KEY", None)
    try:
        small = gatehouse_module(SMALL_CONFIG, keyfile=str(kf), workers=1)
    finally:
        if env_key is not None:
            os.environ["GATEHOUSE_ADMIN_KEY"] = env_key
    api2 = Api(spec, small.admin_url)
    api2.call("POST", T, body={"name": "x"}, expect=409, ptype="no-store")
    api2.call("GET", "/v1/versions", expect=409, ptype="no-store")
    r = api2.call("GET", T, expect=429, ptype="rate-limited")
    assert int(r.headers["Retry-After"]) >= 1
    api2.call("GET", "/metrics", expect=429, ptype="rate-limited")
    small.stop()


UNKNOWN_CP = ["/v1/tenants/acme/unknown", "/v1/tenants/x/unknown", "/v1/tenants/acme/sites/main/routes/hello/extra",
              "/v1/tenants/x/sites/y/routes/z/extra", "/v1/tenants/acme/keys/abc/def", "/v1/tenants/acme/purges/x",
              "/v1/tenants/acme/protection/x", "/v1/tenants/", "/v1/tenants//sites", "/v1/versions/1/other",
              "/v1/versions/abc", "/v1/versions/1/diff/x", "/v1/audit/x", "/v1/tenants/a%00b",
              "/v1/tenants/acme/flags/banner/x", "/v1/tenants/acme/upstreams/pool/extra/x/y/z/w"]
UNKNOWN_OTHER = ["/v1/nothing", "/admin", "/v2/tenants", "/", "/v1", "/v1/", "/v1/experiments", "/healthz/x",
                 "/metrics/extra", "/v1/experiments/plan/x", "/cache/x", "/v1/analytics/x", "/upstreams/app",
                 "/protection", "/tenants"]


def test_nothing_undocumented_is_served(gh, world, spec):
    api, keys = world["api"], world["keys"]
    values = {"tenant": "acme", "site": "main", "route": "hello", "flag": "banner", "key_id": keys["ro_id"],
              "version": 1, "file": "app.js"}
    checked = 0
    for template, item in spec["paths"].items():
        rule = item["x-undocumented-methods"]
        documented = {m.upper() for m in item if m in OPERATIONS}
        v = dict(values)
        v["upstream"] = "app" if template.startswith("/upstreams/") else "pool"
        v["experiment"] = "home-test" if template.startswith("/v1/experiments/") else "exp1"
        path = template
        for k, x in v.items():
            path = path.replace("{%s}" % k, quote(str(x), safe=""))
        if "except" not in rule:
            assert {m.strip() for m in rule["allow"].split(",")} == documented, \
                "%s: Allow %r but documented %s" % (template, rule["allow"], sorted(documented))
        response = deref(spec, rule["response"])
        for method in PROBED:
            if method in documented:
                continue
            key = None if template in ("/healthz", "/readyz") else OPERATOR_KEY
            h = {"Authorization": "Bearer " + key} if key else {}
            r = request(method, api.base + path, headers=h)
            want = rule.get("except", {}).get(method, rule["status"])
            what = "%s %s" % (method, path)
            assert r.status_code == want, "%s: %d, documented %d: %s" % (what, r.status_code, want, r.text[:300])
            checked += 1
            if want == 405:
                assert r.headers.get("Allow") == rule["allow"], "%s: Allow %r" % (what, r.headers.get("Allow"))
                media = {k.split(";")[0]: c for k, c in response["content"].items()}
                base = r.headers["Content-Type"].split(";")[0]
                assert base in media, (what, r.headers["Content-Type"])
                if method != "HEAD":
                    api.validate(media[base]["schema"], r.json() if base.endswith("json") else r.text, what)
    assert checked > 150, checked

    # paths the description does not have: never a success
    for path in UNKNOWN_CP + UNKNOWN_OTHER:
        cp = path.startswith(("/v1/tenants", "/v1/versions", "/v1/audit"))
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            r = request(method, api.base + path, headers={"Authorization": "Bearer " + OPERATOR_KEY})
            what = "%s %s -> %d" % (method, path, r.status_code)
            assert not 200 <= r.status_code < 300, what
            assert r.status_code == 404, what
            if method != "HEAD":
                assert r.headers["Content-Type"] == "application/problem+json", what
                api.validate({"$ref": "#/components/schemas/Problem"}, r.json(), what)
                assert r.json()["type"] == PB + "not-found", what
        # a tenant key: 404 under /v1/tenants and /v1/audit, 403 under /v1/versions and outside the control plane
        r = request("GET", api.base + path, headers={"Authorization": "Bearer " + keys["full"]})
        assert r.status_code == (404 if cp and not path.startswith("/v1/versions") else 403), (path, r.status_code)
    # a path written differently is not the documented one
    for path in ("/V1/tenants", "/v1/Tenants", "/v1/tenants/acme/Sites", "/HEALTHZ"):
        r = request("GET", api.base + path, headers={"Authorization": "Bearer " + OPERATOR_KEY})
        assert r.status_code == 404, (path, r.status_code)
