"""`gatehouse ctl`, the admin API's command-line client, driven through the built binary against
a real gatehouse with a SQLite control-plane store and an operator key: apply from YAML/JSON,
get as table and JSON, routes answering on the proxy listener, 422 error paths, dry runs,
versions/diff/rollback, tenant keys, purges, the audit log, deletes, exit codes, and the key
never printed."""

import json
import os
import re
import subprocess

import pytest

from helpers import BIN, closed_port, poll, request, run_cli

OP_KEY = "op-key-7c1e5a9d3b2f4e6a8d0c"

CONFIG = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 2s
access_log: {enabled: false}
admin: {listen: "127.0.0.1:{admin_port}", store: "{store}", key_file: "{keyfile}", rate_limit: "2000/s", burst: 2000}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
demo_origin: {listen: "127.0.0.1:{demo_port}"}
cache: {memory: 16m, max_object: 1m}
tenants:
  - name: filet
    sites:
      - hosts: ["file.example"]
        routes:
          - {name: hi, respond: {status: 200, body: "file tenant\\n"}}
"""

TENANT_YAML = """
# a whole tenant: PUT /v1/tenants/acme
name: acme
upstreams:
  app: {backends: ["127.0.0.1:%(demo)d"]}
sites:
  - name: main
    hosts: ["acme.example"]
    routes:
      - name: hello
        match: {path: {exact: /hello}}
        respond: {status: 200, body: "hi from acme\\n", headers: {Content-Type: text/plain}}
      - name: api
        match: {path: {prefix: /api}}
        upstream: app
"""


@pytest.fixture(scope="module")
def gh(gatehouse_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("ctl")
    kf = d / "op.key"
    kf.write_text(OP_KEY + "\n")
    g = gatehouse_module(CONFIG, store=str(d / "gh.db"), keyfile=str(kf))
    g.keyfile = str(kf)
    g.dir_ = d
    yield g
    assert OP_KEY not in g.stdout_text() + g.stderr_text()


def ctl(gh, *args, key=OP_KEY, admin=None, input=None, timeout=30):
    """Run `gatehouse ctl ARGS` with the admin address and key in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_ADMIN")}
    env["GATEHOUSE_ADMIN"] = admin or "127.0.0.1:%d" % gh.admin_port
    if key:
        env["GATEHOUSE_ADMIN_KEY"] = key
    p = subprocess.run([BIN, "ctl"] + [str(a) for a in args], capture_output=True, text=True, env=env,
                       input=input, timeout=timeout)
    assert OP_KEY not in p.stdout + p.stderr, "the operator key was printed"
    if key and not key.startswith("gh_"):
        assert key not in p.stdout + p.stderr, "the key was printed"
    return p


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr)
    return p


def write(gh, name, text):
    path = gh.dir_ / name
    path.write_text(text)
    return str(path)


def table(text):
    """Rows of an aligned table as dicts; every cell starts exactly under its heading."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    heads = [(m.start(), m.group()) for m in re.finditer(r"\S+", lines[0])]
    rows = []
    for ln in lines[1:]:
        row = {}
        for i, (start, name) in enumerate(heads):
            end = heads[i + 1][0] if i + 1 < len(heads) else len(ln)
            assert len(ln) > start and ln[start] != " " and (start == 0 or ln[start - 1] == " "), (ln, name)
            row[name] = ln[start:end].strip()
        rows.append(row)
    return rows


def current_version(gh):
    return json.loads(ok(ctl(gh, "versions", "--limit", "1", "-o", "json")).stdout)[0]["id"]


def proxied(gh, path, host="acme.example"):
    return gh.get(path, host=host)


@pytest.fixture(scope="module")
def acme(gh):
    """The tenant acme, applied from YAML (created, then unchanged)."""
    f = write(gh, "acme.yaml", TENANT_YAML % {"demo": gh.values["demo_port"]})
    p = ok(ctl(gh, "apply", "-f", f))
    assert re.fullmatch(r"tenant acme created \(version \d+\)\n", p.stdout), p.stdout
    p = ok(ctl(gh, "apply", "-f", f))
    assert re.fullmatch(r"tenant acme unchanged \(version \d+\)\n", p.stdout), p.stdout
    return f


# ---------------------------------------------------------------- usage and exit codes

def test_help_and_usage_errors(gh):
    p = ok(ctl(gh, "--help"))
    assert p.stdout.startswith("usage: gatehouse ctl") and "exit codes" in p.stdout
    for cmd in ("get", "apply", "delete", "versions", "diff", "rollback", "keys", "purge", "audit"):
        p = ok(ctl(gh, cmd, "--help"))
        assert p.stdout.startswith("usage: gatehouse ctl " + cmd), (cmd, p.stdout)
    assert ok(ctl(gh, "help", "apply")).stdout.startswith("usage: gatehouse ctl apply")
    assert "ctl COMMAND" in run_cli("--help").stdout
    for args in ([], ["frobnicate"], ["get"], ["get", "tenants", "--bogus"], ["get", "routes", "--tenant", "acme"],
                 ["get", "sites"], ["get", "tenants", "-o", "yaml"], ["versions", "--limit", "0"],
                 ["diff", "x"], ["apply"], ["purge", "--tenant", "acme"], ["purge", "--tenant", "acme", "--all", "--tag", "t"],
                 ["keys", "create", "--tenant", "acme", "--name", "n"], ["get", "tenants", "--scopes", "read"],
                 ["delete", "route", "--tenant", "acme", "--site", "main"]):
        p = ctl(gh, *args)
        assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
        assert p.stderr.startswith("gatehouse ctl: ") and "usage:" in p.stderr and p.stdout == "", args


def test_unreachable_admin_exits_3(gh):
    p = ctl(gh, "get", "tenants", admin="127.0.0.1:%d" % closed_port())
    assert p.returncode == 3 and "cannot connect" in p.stderr, p.stderr
    p = ctl(gh, "versions", "--admin", "127.0.0.1:%d" % closed_port())
    assert p.returncode == 3
    p = ctl(gh, "get", "tenants", admin="no-port-here")
    assert p.returncode == 2 and "bad address" in p.stderr


def test_wrong_key_is_401_and_never_printed(gh):
    wrong = "wrong-key-5d8e2c7a1b9f3e60"
    p = ctl(gh, "get", "tenants", key=wrong)
    assert p.returncode == 1 and "401" in p.stderr and "unauthorized" in p.stderr, p.stderr
    assert wrong not in p.stdout + p.stderr
    # no key at all on a listener with an operator key: 401 too
    p = ctl(gh, "get", "tenants", key=None)
    assert p.returncode == 1 and "401" in p.stderr
    # --key-file and --key override the environment
    ok(ctl(gh, "get", "tenants", "--key-file", gh.keyfile, key=None))
    assert ctl(gh, "get", "tenants", "--key", wrong).returncode == 1
    p = ctl(gh, "get", "tenants", "--key", "secret\tvalue-42", key=None)
    assert p.returncode == 2 and "value-42" not in p.stderr and "control characters" in p.stderr


# ---------------------------------------------------------------- apply and get

def test_apply_tenant_then_get_table_and_json(gh, acme):
    rows = table(ok(ctl(gh, "get", "tenants")).stdout)
    by = {r["NAME"]: r for r in rows}
    assert by["acme"]["ORIGIN"] == "api" and by["acme"]["SITES"] == "1" and by["acme"]["ROUTES"] == "2"
    assert by["acme"]["UPSTREAMS"] == "1"
    assert by["filet"]["ORIGIN"] == "file"
    assert [r["NAME"] for r in rows] == sorted(r["NAME"] for r in rows)
    doc = json.loads(ok(ctl(gh, "get", "tenant", "acme", "-o", "json")).stdout)
    assert doc["name"] == "acme" and doc["upstreams"]["app"]["backends"] == ["127.0.0.1:%d" % gh.values["demo_port"]]
    assert [r["name"] for r in doc["sites"][0]["routes"]] == ["hello", "api"]
    assert doc["sites"][0]["routes"][0]["respond"]["status"] == 200  # YAML numbers typed as JSON numbers
    lst = json.loads(ok(ctl(gh, "get", "tenants", "-o", "json")).stdout)
    assert isinstance(lst, list) and {t["name"] for t in lst} >= {"acme", "filet"}
    one = table(ok(ctl(gh, "get", "tenant", "filet")).stdout)
    assert one == [{"NAME": "filet", "ORIGIN": "file", "SITES": "1", "ROUTES": "1", "UPSTREAMS": "0", "FLAGS": "0",
                    "EXPERIMENTS": "0"}]
    routes = table(ok(ctl(gh, "get", "routes", "--tenant", "acme", "--site", "main")).stdout)
    # routes list in the order they match (the document's), not by name
    assert routes == [{"NAME": "hello", "MATCH": "exact /hello", "ACTION": "respond 200"},
                      {"NAME": "api", "MATCH": "prefix /api", "ACTION": "upstream app"}]
    assert table(ok(ctl(gh, "get", "route", "hello", "--tenant", "acme", "--site", "main")).stdout) == routes[:1]
    assert table(ok(ctl(gh, "get", "sites", "--tenant", "acme")).stdout) == [
        {"NAME": "main", "HOSTS": "acme.example", "ROUTES": "2"}]
    assert table(ok(ctl(gh, "get", "upstreams", "--tenant", "acme")).stdout)[0]["BALANCE"] == "round_robin"
    # the proxy listener serves it
    r = proxied(gh, "/hello")
    assert r.status_code == 200 and r.text == "hi from acme\n"
    r = proxied(gh, "/api/x")
    assert r.status_code == 200 and "demo origin" in r.text
    # an unknown item: the API's 404, exit 1
    p = ctl(gh, "get", "tenant", "nope")
    assert p.returncode == 1 and "404" in p.stderr and "not-found" in p.stderr


def test_apply_changes_report_configured(gh, acme):
    text = (TENANT_YAML % {"demo": gh.values["demo_port"]}).replace("hi from acme", "hello again from acme")
    v0 = current_version(gh)
    p = ok(ctl(gh, "apply", "-f", write(gh, "acme2.yaml", text)))
    assert p.stdout == "tenant acme configured (version %d)\n" % (v0 + 1)
    assert poll(lambda: proxied(gh, "/hello").text == "hello again from acme\n", timeout=2)
    p = ok(ctl(gh, "apply", "-f", acme))  # back
    assert p.stdout == "tenant acme configured (version %d)\n" % (v0 + 2)


def test_apply_route_answers_on_proxy(gh, acme):
    doc = {"kind": "route", "tenant": "acme", "site": "main",
           "spec": {"name": "fresh", "match": {"path": {"exact": "/fresh"}},
                    "respond": {"status": 201, "body": "fresh\n"}}}
    f = write(gh, "route.json", json.dumps(doc))
    p = ok(ctl(gh, "apply", "-f", f))
    m = re.fullmatch(r"route acme/main/fresh created \(version (\d+)\)\n", p.stdout)
    assert m, p.stdout
    assert poll(lambda: proxied(gh, "/fresh").status_code == 201, timeout=1)
    assert proxied(gh, "/fresh").text == "fresh\n"
    p = ok(ctl(gh, "apply", "-f", f, "-o", "json"))
    assert json.loads(p.stdout) == [{"kind": "route", "tenant": "acme", "site": "main", "name": "fresh",
                                     "result": "unchanged", "version": m.group(1), "dry_run": False}]
    # the same from stdin, as YAML with --tenant/--site from the command line
    y = "kind: route\nspec:\n  name: fresh\n  match: {path: {exact: /fresh}}\n  respond: {status: 202, body: \"fresh\\n\"}\n"
    p = ok(ctl(gh, "apply", "-f", "-", "--tenant", "acme", "--site", "main", input=y))
    assert p.stdout.startswith("route acme/main/fresh configured")
    assert poll(lambda: proxied(gh, "/fresh").status_code == 202, timeout=1)
    # an item named with characters that need percent-encoding in the path
    odd = "odd%name+1?x#y"
    doc["spec"] = {"name": odd, "match": {"path": {"exact": "/odd"}}, "respond": {"status": 200, "body": "odd"}}
    ok(ctl(gh, "apply", "-f", write(gh, "odd.json", json.dumps(doc))))
    assert table(ok(ctl(gh, "get", "routes", odd, "--tenant", "acme", "--site", "main")).stdout)[0]["NAME"] == odd
    ok(ctl(gh, "delete", "route", odd, "--tenant", "acme", "--site", "main"))


def test_apply_invalid_route_exits_1_with_the_error_path(gh, acme):
    v0 = current_version(gh)
    bad = ("kind: route\ntenant: acme\nsite: main\nspec:\n  name: broken\n"
           "  match: {path: {exact: /broken}}\n  upstream: no-such-pool\n")
    f = write(gh, "bad.yaml", bad)
    p = ctl(gh, "apply", "-f", f)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "422" in p.stderr and "invalid-configuration" in p.stderr
    m = re.search(r"^  (tenants\[acme\]\.sites\[0\]\.routes\[\d+\]\.upstream): (.+)$", p.stderr, re.M)
    assert m and "no-such-pool" in m.group(2), p.stderr
    assert p.stdout == ""
    assert current_version(gh) == v0
    p = ctl(gh, "apply", "-f", f, "--dry-run")
    assert p.returncode == 1 and m.group(1) in p.stderr
    # documents that are not understood: usage errors, nothing sent
    for text, why in (("name: [unclosed\n", "bad.yaml:"), ("kind: gadget\nspec: {}\n", "unknown kind"),
                      ("sites: []\n", "neither a tenant"), ("a: 1\na: 2\n", "duplicate key"),
                      ("kind: route\ntenant: acme\nspec: {name: x}\n", "site"),
                      ("kind: site\ntenant: acme\nspec: {name: x}\nextra: 1\n", "unknown field")):
        p = ctl(gh, "apply", "-f", write(gh, "bad.yaml", text))
        assert p.returncode == 2 and why in p.stderr, (text, p.stderr)
    p = ctl(gh, "apply", "-f", str(gh.dir_ / "missing.yaml"))
    assert p.returncode == 2 and "No such file" in p.stderr
    assert current_version(gh) == v0


def test_dry_run_stores_nothing(gh, acme):
    v0 = current_version(gh)
    doc = {"kind": "route", "tenant": "acme", "site": "main",
           "spec": {"name": "dry", "match": {"path": {"exact": "/dry"}}, "respond": {"status": 200}}}
    p = ok(ctl(gh, "apply", "-f", write(gh, "dry.json", json.dumps(doc)), "--dry-run"))
    assert p.stdout == "route acme/main/dry would be created (dry run: valid; version %d stays current)\n" % v0
    assert current_version(gh) == v0
    p = ctl(gh, "get", "route", "dry", "--tenant", "acme", "--site", "main")
    assert p.returncode == 1 and "404" in p.stderr
    assert proxied(gh, "/dry").status_code == 404
    p = ok(ctl(gh, "delete", "route", "hello", "--tenant", "acme", "--site", "main", "--dry-run"))
    assert "would be deleted (dry run" in p.stdout
    assert current_version(gh) == v0 and proxied(gh, "/hello").status_code == 200


def test_item_kinds_from_one_multi_document_file(gh, acme):
    docs = """
kind: upstream
tenant: acme
spec: {name: pool2, backends: ["127.0.0.1:%(demo)d"], balance: least_request}
---
kind: site
tenant: acme
spec:
  name: second
  hosts: ["second.acme.example"]
  routes:
    - {name: s1, match: {path: /}, respond: {status: 200, body: "second site\\n"}}
---
kind: flag
tenant: acme
spec:
  key: banner
  state: ENABLED
  variants: {"on": true, "off": false}
  defaultVariant: "off"
---
kind: experiment
tenant: acme
spec:
  id: banner-test
  flag: banner
  variants: ["off", "on"]
  metrics:
    - {name: checkout, kind: conversion, path: /checkout}
---
kind: protection
tenant: acme
spec:
  rate_limits: [{name: perip, rate: 1000/s}]
---
kind: cache
tenant: acme
spec: {targeted_header: Acme-Cache-Control}
""" % {"demo": gh.values["demo_port"]}
    f = write(gh, "items.yaml", docs)
    v0 = current_version(gh)
    lines = ok(ctl(gh, "apply", "-f", f)).stdout.splitlines()
    assert lines == ["upstream acme/pool2 created (version %d)" % (v0 + 1),
                     "site acme/second created (version %d)" % (v0 + 2),
                     "flag acme/banner created (version %d)" % (v0 + 3),
                     "experiment acme/banner-test created (version %d)" % (v0 + 4),
                     "protection acme created (version %d)" % (v0 + 5),
                     "cache acme created (version %d)" % (v0 + 6)], lines
    assert all(r["result"] == "unchanged" for r in json.loads(ok(ctl(gh, "apply", "-f", f, "-o", "json")).stdout))
    assert poll(lambda: proxied(gh, "/", host="second.acme.example").text == "second site\n", timeout=1)
    assert table(ok(ctl(gh, "get", "upstream", "pool2", "--tenant", "acme")).stdout)[0]["BALANCE"] == "least_request"
    assert table(ok(ctl(gh, "get", "flags", "--tenant", "acme")).stdout) == [
        {"KEY": "banner", "STATE": "ENABLED", "DEFAULT": "off", "VARIANTS": "on,off"}]
    assert table(ok(ctl(gh, "get", "experiments", "--tenant", "acme")).stdout) == [
        {"ID": "banner-test", "FLAG": "banner", "VARIANTS": "off,on", "METRICS": "checkout"}]
    assert json.loads(ok(ctl(gh, "get", "flag", "banner", "--tenant", "acme", "-o", "json")).stdout)["key"] == "banner"
    assert table(ok(ctl(gh, "get", "protection", "--tenant", "acme")).stdout) == [
        {"FIELD": "rate_limits", "VALUE": '[{"name":"perip","rate":"1000/s"}]'}]
    assert json.loads(ok(ctl(gh, "get", "cache", "--tenant", "acme", "-o", "json")).stdout) == {
        "targeted_header": "Acme-Cache-Control"}
    # and away again, each kind
    for args in (["protection"], ["cache"], ["experiment", "banner-test"], ["flag", "banner"], ["site", "second"],
                 ["upstream", "pool2"]):
        p = ok(ctl(gh, "delete", *args, "--tenant", "acme"))
        assert re.fullmatch(r"%s acme(/%s)? deleted \(version \d+\)\n" % (args[0], args[-1]), p.stdout), p.stdout
    assert poll(lambda: proxied(gh, "/", host="second.acme.example").status_code == 404, timeout=1)
    p = ctl(gh, "get", "protection", "--tenant", "acme")
    assert p.returncode == 1 and "404" in p.stderr


def test_file_managed_tenant_is_refused(gh):
    p = ctl(gh, "apply", "-f", write(gh, "filet.yaml", "name: filet\nsites: []\n"))
    assert p.returncode == 1 and "409" in p.stderr and "file-managed" in p.stderr, p.stderr


def test_lists_follow_next_cursor(gh, acme):
    for i in range(7):
        ok(ctl(gh, "keys", "create", "--tenant", "acme", "--name", "page%d" % i, "--scopes", "read"))
    whole = json.loads(ok(ctl(gh, "keys", "list", "--tenant", "acme", "-o", "json")).stdout)
    paged = json.loads(ok(ctl(gh, "keys", "list", "--tenant", "acme", "-o", "json", "--page-size", "2")).stdout)
    assert len(whole) >= 7 and paged == whole
    assert [k["id"] for k in whole] == sorted(k["id"] for k in whole)
    three = json.loads(ok(ctl(gh, "keys", "list", "--tenant", "acme", "-o", "json", "--page-size", "2",
                              "--limit", "3")).stdout)
    assert three == whole[:3]
    a1 = json.loads(ok(ctl(gh, "audit", "-o", "json", "--page-size", "3", "--limit", "10")).stdout)
    a2 = json.loads(ok(ctl(gh, "audit", "-o", "json", "--limit", "10")).stdout)
    assert a1 == a2 and len(a1) == 10 and [e["id"] for e in a1] == sorted((e["id"] for e in a1), reverse=True)
    v1 = json.loads(ok(ctl(gh, "versions", "-o", "json", "--page-size", "2")).stdout)
    v2 = json.loads(ok(ctl(gh, "versions", "-o", "json")).stdout)
    assert v1 == v2 and [v["id"] for v in v1] == list(range(len(v1), 0, -1))


# ---------------------------------------------------------------- versions, diff, rollback

def test_versions_diff_rollback(gh, acme):
    v0 = current_version(gh)
    doc = {"kind": "route", "tenant": "acme", "site": "main",
           "spec": {"name": "temp", "match": {"path": {"exact": "/temp"}}, "respond": {"status": 200, "body": "temp\n"}}}
    ok(ctl(gh, "apply", "-f", write(gh, "temp.json", json.dumps(doc))))
    v1 = v0 + 1
    assert poll(lambda: proxied(gh, "/temp").status_code == 200, timeout=1)
    rows = table(ok(ctl(gh, "versions")).stdout)
    assert rows[0]["VERSION"] == "%d *" % v1 and rows[0]["ACTOR"] == "operator"
    assert rows[0]["COMMENT"] == "create /v1/tenants/acme/sites/main/routes/temp"
    assert len(table(ok(ctl(gh, "versions", "--limit", "1")).stdout)) == 1
    p = ok(ctl(gh, "diff", v1))
    assert p.stdout.splitlines()[0] == "version %d -> %d: 1 change" % (v0, v1)
    assert p.stdout.splitlines()[1].startswith("+ tenants.acme.sites[main].routes[temp]: {")
    d = json.loads(ok(ctl(gh, "diff", v1, "--from", v0, "-o", "json")).stdout)
    assert d["from"] == v0 and d["to"] == v1 and d["changes"][0]["op"] == "add"
    p = ok(ctl(gh, "rollback", v0, "--dry-run"))
    assert "valid (dry run" in p.stdout and current_version(gh) == v1
    p = ok(ctl(gh, "rollback", v0))
    assert p.stdout == "rolled back to version %d's configuration: version %d (was %d)\n" % (v0, v1 + 1, v1)
    assert poll(lambda: proxied(gh, "/temp").status_code == 404, timeout=1)
    p = ok(ctl(gh, "diff", v1 + 1))
    assert "- tenants.acme.sites[main].routes[temp]: " in p.stdout
    p = ctl(gh, "diff", 999999)
    assert p.returncode == 1 and "404" in p.stderr
    p = ctl(gh, "rollback", 999999)
    assert p.returncode == 1 and "404" in p.stderr


# ---------------------------------------------------------------- keys

def test_keys_create_list_revoke(gh, acme):
    p = ok(ctl(gh, "keys", "create", "--tenant", "acme", "--name", "ci", "--scopes", "read,write", "--ttl", "3600"))
    keys = re.findall(r"gh_[0-9a-f]{12}_[0-9a-f]{64}", p.stdout)
    assert len(keys) == 1, p.stdout
    secret = keys[0]
    kid = secret[3:15]
    row = table(p.stdout.split("\n\n")[0])[0]
    assert row["ID"] == kid and row["NAME"] == "ci" and row["SCOPES"] == "read,write" and row["EXPIRES"] != "-"
    # the new key works against the API (and through ctl), limited to its tenant
    url = gh.admin_url + "/v1/tenants/acme"
    assert request("GET", url, headers={"Authorization": "Bearer " + secret}).status_code == 200
    rows = table(ok(ctl(gh, "get", "tenants", key=secret)).stdout)
    assert [r["NAME"] for r in rows] == ["acme"]
    p = ctl(gh, "versions", key=secret)
    assert p.returncode == 1 and "403" in p.stderr and secret not in p.stdout + p.stderr
    # listing never shows a secret
    p = ok(ctl(gh, "keys", "list", "--tenant", "acme"))
    assert secret not in p.stdout and not re.search(r"gh_[0-9a-f]{12}_", p.stdout)
    listed = {r["ID"]: r for r in table(p.stdout)}
    assert listed[kid]["REVOKED"] == "-"
    assert "key" not in json.loads(ok(ctl(gh, "keys", "list", "--tenant", "acme", "-o", "json")).stdout)[0]
    p = ok(ctl(gh, "keys", "revoke", "--tenant", "acme", kid))
    assert p.stdout == "key %s revoked\n" % kid
    assert request("GET", url, headers={"Authorization": "Bearer " + secret}).status_code == 401
    p = ctl(gh, "get", "tenants", key=secret)
    assert p.returncode == 1 and "401" in p.stderr and secret not in p.stdout + p.stderr
    assert table(ok(ctl(gh, "keys", "list", "--tenant", "acme")).stdout) and \
        {r["ID"]: r for r in table(ok(ctl(gh, "keys", "list", "--tenant", "acme")).stdout)}[kid]["REVOKED"] != "-"
    # json output of create: the API's answer, with the key once
    j = json.loads(ok(ctl(gh, "keys", "create", "--tenant", "acme", "--name", "j", "--scopes", "read", "-o", "json")).stdout)
    assert re.fullmatch(r"gh_[0-9a-f]{12}_[0-9a-f]{64}", j["key"]) and j["scopes"] == ["read"]
    p = ctl(gh, "keys", "create", "--tenant", "acme", "--name", "x", "--scopes", "root")
    assert p.returncode == 1 and "422" in p.stderr and "invalid-key" in p.stderr
    p = ctl(gh, "keys", "revoke", "--tenant", "acme", "000000000000")
    assert p.returncode == 1 and "404" in p.stderr


# ---------------------------------------------------------------- purge, audit, delete

def test_purge(gh, acme):
    doc = {"kind": "route", "tenant": "acme", "site": "main",
           "spec": {"name": "cached", "match": {"path": {"prefix": "/cached"}}, "upstream": "app",
                    "cache": {"default_ttl": "60s"}}}
    ok(ctl(gh, "apply", "-f", write(gh, "cached.json", json.dumps(doc))))
    assert poll(lambda: proxied(gh, "/cached/a").status_code == 200, timeout=1)
    assert poll(lambda: "hit" in proxied(gh, "/cached/a").headers.get("Cache-Status", ""), timeout=2)
    p = ok(ctl(gh, "purge", "--tenant", "acme", "--url", "http://acme.example/nothing-here"))
    assert p.stdout == "purged 0 objects\n"
    p = ok(ctl(gh, "purge", "--tenant", "acme", "--all", "--soft", "-o", "json"))
    assert json.loads(p.stdout) == {"purged": 1, "soft": True}
    p = ok(ctl(gh, "purge", "--tenant", "acme", "--all"))
    assert re.fullmatch(r"purged \d+ objects?\n", p.stdout)
    p = ok(ctl(gh, "purge", "--tenant", "acme", "--tag", "a", "--tag", "b"))
    assert p.stdout == "purged 0 objects\n"
    p = ctl(gh, "purge", "--tenant", "nope", "--all")
    assert p.returncode == 1 and "404" in p.stderr
    audit = json.loads(ok(ctl(gh, "audit", "--tenant", "acme", "--limit", "1", "-o", "json")).stdout)
    assert audit[0]["action"] == "purge" and audit[0]["diff"][0]["after"] == {"tags": ["a", "b"], "soft": False}
    ok(ctl(gh, "delete", "route", "cached", "--tenant", "acme", "--site", "main"))


def test_audit(gh, acme):
    rows = table(ok(ctl(gh, "audit", "--tenant", "acme", "--limit", "5")).stdout)
    assert len(rows) == 5 and all(r["TENANT"] == "acme" and r["ACTOR"] == "operator" for r in rows)
    assert rows[0]["SOURCE"] == "127.0.0.1" and int(rows[0]["ID"]) > int(rows[-1]["ID"])
    everything = json.loads(ok(ctl(gh, "audit", "-o", "json")).stdout)
    first = everything[-1]
    assert first["action"] == "create" and first["resource"] == "/v1/tenants/acme" and first["version"] == 1
    assert {"id", "at", "actor", "source", "action", "tenant", "resource", "version", "diff"} <= set(first)
    p = ok(ctl(gh, "audit", "--tenant", "nobody-here"))
    assert table(p.stdout) == []


def test_delete(gh, acme):
    f = write(gh, "gone.yaml", "name: gone\nsites:\n  - name: g\n    hosts: [gone.example]\n    routes:\n"
                               "      - {name: r, respond: {status: 200, body: gone}}\n")
    ok(ctl(gh, "apply", "-f", f))
    assert poll(lambda: proxied(gh, "/", host="gone.example").status_code == 200, timeout=1)
    v0 = current_version(gh)
    p = ok(ctl(gh, "delete", "route", "r", "--tenant", "gone", "--site", "g"))
    assert p.stdout == "route gone/g/r deleted (version %d)\n" % (v0 + 1)
    assert poll(lambda: proxied(gh, "/", host="gone.example").status_code == 404, timeout=1)
    p = ctl(gh, "delete", "route", "r", "--tenant", "gone", "--site", "g")
    assert p.returncode == 1 and "404" in p.stderr
    p = ok(ctl(gh, "delete", "tenant", "gone", "-o", "json"))
    assert json.loads(p.stdout) == {"kind": "tenant", "result": "deleted", "version": str(v0 + 2), "dry_run": False}
    assert [r for r in table(ok(ctl(gh, "get", "tenants")).stdout) if r["NAME"] == "gone"] == []
    p = ctl(gh, "delete", "tenant", "filet")
    assert p.returncode == 1 and "409" in p.stderr


# ---------------------------------------------------------------- the HTTP client against a scripted server

class _Scripted:
    """A loopback HTTP server answering from a list of raw responses, one per connection,
    recording each request (head and body)."""

    def __init__(self, answers):
        import socket
        import threading
        self.answers = list(answers)
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        import socket
        while not self.stop and self.answers:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            with c:
                c.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += c.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: *(\d+)", head)
                while m and len(body) < int(m.group(1)):
                    body += c.recv(65536)
                self.requests.append((head.decode(), body))
                c.sendall(self.answers.pop(0))

    def close(self):
        self.stop = True
        self.t.join(timeout=5)
        self.sock.close()


def test_client_framing_chunked_close_delimited_and_429(gh):
    page1 = json.dumps({"items": [{"name": "a", "sites": []}], "next_cursor": "61"}).encode()
    page2 = json.dumps({"items": [{"name": "b", "sites": []}], "next_cursor": None}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(page1[i:i + 7]), page1[i:i + 7]) for i in range(0, len(page1), 7))
    s = _Scripted([
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked +
        b"0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + page2,
        b"HTTP/1.1 422 Unprocessable Content\r\nContent-Type: application/problem+json\r\nContent-Length: 200\r\n\r\n"
        + json.dumps({"type": "https://gatehouse.dev/problems/invalid-key", "title": "Unprocessable Content",
                      "status": 422, "detail": "nope", "errors": [{"path": "a.b", "message": "bad \x1b[31m"}]}
                     ).encode().ljust(200),
    ])
    try:
        p = ok(ctl(gh, "get", "tenants", "-o", "json", admin="http://127.0.0.1:%d/" % s.port))
        assert [t["name"] for t in json.loads(p.stdout)] == ["a", "b"]
        p = ctl(gh, "keys", "create", "--tenant", "t", "--name", "n", "--scopes", "read", admin="127.0.0.1:%d" % s.port)
        assert p.returncode == 1 and "422" in p.stderr and "  a.b: bad ?[31m" in p.stderr, p.stderr  # no raw escapes
    finally:
        s.close()
    heads = [h + "\r\n" for h, _ in s.requests]
    assert len(heads) == 4
    assert heads[0].startswith("GET /v1/tenants?limit=500 HTTP/1.1\r\n") and heads[1] == heads[0]  # the 429 retried
    assert heads[2].startswith("GET /v1/tenants?limit=500&cursor=61 HTTP/1.1\r\n")
    assert "\r\nHost: 127.0.0.1:%d\r\n" % s.port in heads[0] and "\r\nAuthorization: Bearer %s\r\n" % OP_KEY in heads[0]
    assert heads[3].startswith("POST /v1/tenants/t/keys HTTP/1.1\r\n") and "Content-Type: application/json" in heads[3]
    assert json.loads(s.requests[3][1]) == {"name": "n", "scopes": ["read"]}


def test_apply_sends_if_match_and_reports_412(gh):
    doc = {"name": "acme", "sites": []}
    body = json.dumps(doc).encode()
    s = _Scripted([
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: "0123abcd"\r\nContent-Length: %d\r\n\r\n%s'
        % (len(body), body),
        b"HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/problem+json\r\nContent-Length: 112\r\n\r\n"
        + json.dumps({"type": "https://gatehouse.dev/problems/precondition-failed", "title": "Precondition Failed",
                      "status": 412}).encode().ljust(112),
    ])
    try:
        p = ctl(gh, "apply", "-f", write(gh, "race.json", json.dumps(doc)), admin="127.0.0.1:%d" % s.port)
    finally:
        s.close()
    assert p.returncode == 1 and "412" in p.stderr and "changed since it was read" in p.stderr, p.stderr
    (get, _), (put, put_body) = s.requests
    assert get.startswith("GET /v1/tenants/acme HTTP/1.1\r\n")
    assert put.startswith("PUT /v1/tenants/acme HTTP/1.1\r\n") and '\r\nIf-Match: "0123abcd"' in put
    assert json.loads(put_body) == doc
