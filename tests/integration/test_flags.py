"""Feature flags (issue 7): flagd definitions served over OFREP on the `ofrep` listener.

The flag sets come from a watched JSON file or inline YAML; the tenant is chosen by API key.
Results are checked against what flagd defines (reasons, variants, error codes and statuses)."""

import json
import os
import shutil
import subprocess
import time

from helpers import HEADER, REPO, fill, free_port, poll, port_accepts, request, run_cli

FLAGS = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "new-welcome": {
            "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", None]},
        },
        "color": {
            "state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "red",
            "targeting": {"fractional": [["red", 50], ["blue", 50]]},
            "metadata": {"owner": "design"},
        },
        "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low"},
        "old": {"state": "DISABLED", "variants": {"a": 1}, "defaultVariant": "a"},
        "shared": {"state": "ENABLED", "variants": {"yes": True, "no": False}, "defaultVariant": "no",
                   "targeting": {"if": [{"$ref": "is_staff"}, "yes", "no"]}},
    },
    "$evaluators": {"is_staff": {"in": ["@corp.example", {"var": "email"}]}},
    "metadata": {"team": "web"},
}

KEY_A = "acme-key-0123456789abcdef"
KEY_B = "beta-key-0123456789abcdef"


def config(flags_file, extra_tenant=""):
    return HEADER.replace("workers: {workers}", "workers: 1") + """
ofrep: {listen: "127.0.0.1:{ofrep_port}"}
tenants:
  - name: acme
    flags:
      file: "%s"
      api_keys: ["%s"]
    sites: []
%s""" % (flags_file, KEY_A, extra_tenant)


BETA_INLINE = """  - name: beta
    flags:
      api_keys: ["%s"]
      definition:
        flags:
          banner:
            state: ENABLED
            variants: {shown: true, hidden: false}
            defaultVariant: hidden
            targeting:
              if: [{"==": [{var: plan}, "pro"]}, shown, null]
    sites: []
""" % KEY_B


def start(gatehouse, tmp_path, doc=FLAGS, extra_tenant=BETA_INLINE):
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(doc))
    port = free_port()
    gh = gatehouse(config(str(f), extra_tenant), ofrep_port=port)
    gh.ofrep = "http://127.0.0.1:%d" % port
    wait_port(port)
    return gh, f


def wait_port(port):
    assert poll(lambda: port_accepts(port), timeout=5)


def ofrep(gh, key=None, context=None, api_key=KEY_A, bearer=False, body=None, headers=None):
    h = dict(headers or {})
    if api_key:
        if bearer:
            h["Authorization"] = "Bearer " + api_key
        else:
            h["X-API-Key"] = api_key
    url = gh.ofrep + "/ofrep/v1/evaluate/flags" + ("/" + key if key else "")
    if body is None:
        body = json.dumps({"context": context if context is not None else {}})
    return request("POST", url, data=body, headers=h)


def test_single_flag_reasons_variants_and_metadata(gatehouse, tmp_path):
    gh, _ = start(gatehouse, tmp_path)
    r = ofrep(gh, "new-welcome", {"email": "ann@example.com"})
    assert r.status_code == 200, r.text
    assert r.json() == {"key": "new-welcome", "reason": "TARGETING_MATCH", "variant": "on", "value": True,
                        "metadata": {"team": "web"}}
    r = ofrep(gh, "new-welcome", {"email": "ann@other.test"})
    assert r.json()["reason"] == "DEFAULT" and r.json()["value"] is False
    r = ofrep(gh, "limit")
    assert r.json()["reason"] == "STATIC" and r.json()["value"] == 10 and r.json()["variant"] == "low"
    doc = ofrep(gh, "color", {"targetingKey": "user-1"}).json()
    assert doc["variant"] in ("red", "blue") and doc["reason"] == "TARGETING_MATCH"
    assert doc["metadata"] == {"team": "web", "owner": "design"}  # the flag's over the set's
    # the same unit always lands in the same variant; units spread over both
    seen = {ofrep(gh, "color", {"targetingKey": "user-%d" % i}).json()["variant"] for i in range(40)}
    assert seen == {"red", "blue"}
    assert all(ofrep(gh, "color", {"targetingKey": "user-1"}).json()["variant"] == doc["variant"] for _ in range(5))
    assert ofrep(gh, "shared", {"email": "x@corp.example"}).json()["variant"] == "yes"  # $ref evaluator
    assert ofrep(gh, "shared", {"email": "x@else.example"}).json()["variant"] == "no"


def test_errors_and_statuses(gatehouse, tmp_path):
    gh, _ = start(gatehouse, tmp_path)
    r = ofrep(gh, "missing")
    assert r.status_code == 404 and r.json()["errorCode"] == "FLAG_NOT_FOUND" and r.json()["key"] == "missing"
    # a key that is not UTF-8 (from the URL) is answered in valid JSON, escaped, not dropped
    r = request("POST", gh.ofrep + "/ofrep/v1/evaluate/flags/k%FF%22x", data="{}", headers={"X-API-Key": KEY_A})
    assert r.status_code == 404 and json.loads(r.content)["key"] == "k\u00ff\"x", r.content
    assert ofrep(gh, "li%6Dit").json()["value"] == 10  # keys are percent-decoded
    assert ofrep(gh, "li%00mit").status_code == 404
    r = ofrep(gh, "old")  # disabled: flagd answers it as not found
    assert r.status_code == 404 and r.json()["errorCode"] == "FLAG_NOT_FOUND"
    r = ofrep(gh, "limit", body="{not json")
    assert r.status_code == 400 and r.json()["errorCode"] == "PARSE_ERROR"
    r = ofrep(gh, "limit", body=json.dumps({"context": [1, 2]}))
    assert r.status_code == 400 and r.json()["errorCode"] == "INVALID_CONTEXT"
    r = ofrep(gh, "limit", body="")  # no body: no context
    assert r.status_code == 200 and r.json()["value"] == 10
    r = request("GET", gh.ofrep + "/ofrep/v1/evaluate/flags/limit", headers={"X-API-Key": KEY_A})
    assert r.status_code == 405
    r = ofrep(gh, "limit", body=json.dumps({"context": {"deep": "x" * 200000}}))
    assert r.status_code == 200  # a large context is fine (bodies up to 1 MiB)
    r = ofrep(gh, "limit", body=json.dumps({"context": {"x": "y" * (1 << 20)}}))
    assert r.status_code == 413


def test_api_keys_choose_the_tenant(gatehouse, tmp_path):
    gh, _ = start(gatehouse, tmp_path)
    assert ofrep(gh, "limit", api_key=None).status_code == 401
    assert ofrep(gh, "limit", api_key="wrong-key-0123456789abcdef").status_code == 401
    assert ofrep(gh, "limit", bearer=True).status_code == 200
    # the other tenant's key sees the other tenant's flags only
    assert ofrep(gh, "limit", api_key=KEY_B).status_code == 404
    r = ofrep(gh, "banner", {"plan": "pro"}, api_key=KEY_B)
    assert r.status_code == 200 and r.json()["variant"] == "shown", r.text
    assert ofrep(gh, "banner", {"plan": "free"}, api_key=KEY_B).json()["value"] is False


def test_bulk_with_etag(gatehouse, tmp_path):
    gh, _ = start(gatehouse, tmp_path)
    r = ofrep(gh, context={"targetingKey": "u7", "email": "a@example.com"})
    assert r.status_code == 200
    flags = {f["key"]: f for f in r.json()["flags"]}
    assert set(flags) == {"new-welcome", "color", "limit", "shared"}  # disabled ones are left out
    assert flags["new-welcome"]["value"] is True and flags["limit"]["value"] == 10
    etag = r.headers["ETag"]
    r2 = ofrep(gh, context={"targetingKey": "u7", "email": "a@example.com"}, headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b""
    r3 = ofrep(gh, context={"targetingKey": "u7", "email": "a@other.test"}, headers={"If-None-Match": etag})
    assert r3.status_code == 200 and r3.headers["ETag"] != etag


def test_file_is_watched_and_a_bad_one_keeps_the_flags(gatehouse, tmp_path):
    gh, f = start(gatehouse, tmp_path)
    assert ofrep(gh, "limit").json()["value"] == 10
    doc = json.loads(json.dumps(FLAGS))
    doc["flags"]["limit"]["defaultVariant"] = "high"
    f.write_text(json.dumps(doc))
    assert poll(lambda: ofrep(gh, "limit").json().get("value") == 1000, timeout=8, interval=0.2)
    f.write_text('{"flags": {"limit": {"state": "ON"}}}')
    assert poll(lambda: "watched file update rejected" in gh.stdout_text() + gh.stderr_text(), timeout=8, interval=0.2)
    assert "flags.limit" in gh.stdout_text() + gh.stderr_text()
    assert ofrep(gh, "limit").json()["value"] == 1000  # the flags in force stay


def test_bad_definitions_are_config_errors_with_their_place(tmp_path):
    f = tmp_path / "flags.json"
    f.write_text(json.dumps({"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b",
                                              "targeting": {"nosuchop": [1]}}}}))
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(fill(config(str(f), ""), {"ofrep_port": free_port(), "admin_port": free_port(),
                                             "proxy_port": free_port(), "pid_file": str(tmp_path / "pid")}))
    r = run_cli("validate", "-c", str(cfg))
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "gh.yaml:" in out and "tenants[0].flags.file" in out, out
    assert "flags.x" in out and "defaultVariant" in out, out
    assert "nosuchop" in out, out


# ---------------------------------------------------------------- real OpenFeature clients

JS_DIR = os.path.join(REPO, "tests", "js")


def js_clients():
    """The npm packages of tests/js/package.json, installed once into build/js."""
    dest = os.path.join(REPO, "build", "js")
    os.makedirs(dest, exist_ok=True)
    want = open(os.path.join(JS_DIR, "package.json")).read()
    pj = os.path.join(dest, "package.json")
    if not (os.path.exists(pj) and open(pj).read() == want and os.path.isdir(os.path.join(dest, "node_modules"))):
        with open(pj, "w") as f:
            f.write(want)
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, "npm install failed:\n" + r.stdout + r.stderr
    for f in os.listdir(JS_DIR):
        if f.endswith(".mjs"):
            shutil.copy(os.path.join(JS_DIR, f), dest)
    return dest


def test_openfeature_sdks_over_ofrep(gatehouse, tmp_path):
    # @openfeature/server-sdk with @openfeature/ofrep-provider (single evaluations) and
    # @openfeature/web-sdk with @openfeature/ofrep-web-provider (bulk, cached per context),
    # unmodified, get what the protocol answers
    gh, _ = start(gatehouse, tmp_path)
    cases = [
        {"kind": "boolean", "key": "new-welcome", "default": False, "context": {"targetingKey": "u1", "email": "a@example.com"}},
        {"kind": "boolean", "key": "new-welcome", "default": True, "context": {"targetingKey": "u1", "email": "a@other.test"}},
        {"kind": "string", "key": "color", "default": "x", "context": {"targetingKey": "user-1"}},
        {"kind": "number", "key": "limit", "default": 0, "context": {"targetingKey": "u2"}},
        {"kind": "boolean", "key": "shared", "default": False, "context": {"targetingKey": "u3", "email": "b@corp.example"}},
        {"kind": "boolean", "key": "missing", "default": True, "context": {"targetingKey": "u2"}},
        {"kind": "string", "key": "limit", "default": "d", "context": {"targetingKey": "u2"}},
    ]
    cf = tmp_path / "cases.json"
    cf.write_text(json.dumps(cases))
    d = js_clients()
    r = subprocess.run(["node", "ofrep_clients.mjs", gh.ofrep, KEY_A, str(cf)], cwd=d, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    color = ofrep(gh, "color", {"targetingKey": "user-1"}).json()["variant"]
    want = [
        {"value": True, "variant": "on", "reason": "TARGETING_MATCH", "errorCode": None},
        {"value": False, "variant": "off", "reason": "DEFAULT", "errorCode": None},
        {"value": {"red": "#f00", "blue": "#00f"}[color], "variant": color, "reason": "TARGETING_MATCH", "errorCode": None},
        {"value": 10, "variant": "low", "reason": "STATIC", "errorCode": None},
        {"value": True, "variant": "yes", "reason": "TARGETING_MATCH", "errorCode": None},
        {"value": True, "variant": None, "reason": "ERROR", "errorCode": "FLAG_NOT_FOUND"},
        {"value": "d", "variant": None, "reason": "ERROR", "errorCode": "TYPE_MISMATCH"},
    ]
    for side in ("server", "web"):
        assert got[side] == want, (side, got[side])


def test_standalone_flags_mode_replaces_flagd(gatehouse, tmp_path):
    # `gatehouse flags --file F --ofrep ADDR`: no proxy, no credentials, the file watched
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(FLAGS))
    port = free_port()
    gh = gatehouse.spawn(["flags", "--file", str(f), "--ofrep", "127.0.0.1:%d" % port], port)
    gh.ofrep = "http://127.0.0.1:%d" % port
    r = ofrep(gh, "new-welcome", {"email": "z@example.com"}, api_key=None)
    assert r.status_code == 200 and r.json()["value"] is True, r.text
    doc = json.loads(json.dumps(FLAGS))
    doc["flags"]["limit"]["defaultVariant"] = "high"
    f.write_text(json.dumps(doc))
    assert poll(lambda: ofrep(gh, "limit", api_key=None).json().get("value") == 1000, timeout=8, interval=0.2)
    r = run_cli("flags", "--file", str(tmp_path / "nope.json"))
    assert r.returncode == 1 and "cannot read" in r.stderr and "nope.json" in r.stderr


# ---------------------------------------------------------------- split routing at the edge

SPLIT_FLAGS = {
    "flags": {
        "new-home": {
            "state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["vip-1", "vip-2"]]}, "on",
                                 {"fractional": [["on", 50], ["off", 50]]}]},
        },
    },
}


def split_config(flags_file, exposure_log="/dev/null"):
    return HEADER.replace("workers: {workers}", "workers: 2") + """
exposure_log: "%s"
upstreams:
  stable: {backends: ["127.0.0.1:{o1}"]}
  next: {backends: ["127.0.0.1:{o2}"]}
tenants:
  - name: shop
    flags: {file: "%s"}
    sites:
      - hosts: ["*"]
        routes:
          - name: home
            upstream: stable
            flag:
              key: new-home
              unit: cookie:uid
              variants:
                "on":
                  upstream: next
                  path_prefix: /v2
                  request_headers: {X-Exp: new-home}
                  response_headers: {X-Served-By: next}
""" % (exposure_log, flags_file)


def test_a_flag_splits_web_traffic(gatehouse, origin_factory, tmp_path):
    o1, o2 = origin_factory("stable"), origin_factory("next")
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(SPLIT_FLAGS))
    elog = tmp_path / "exposures.jsonl"
    gh = gatehouse(split_config(str(f), str(elog)), o1=o1.port, o2=o2.port)
    # a listed unit gets "on": the next pool, the path under /v2, the variant's headers both ways
    r = gh.get("/page?x=1", headers={"Cookie": "uid=vip-1"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "next" and doc["target"] == "/v2/page?x=1", doc
    seen = {k.lower(): v for k, v in doc["headers"]}
    assert seen["x-gatehouse-variant"] == "on" and seen["x-exp"] == "new-home"
    assert r.headers["X-Gatehouse-Variant"] == "on" and r.headers["X-Served-By"] == "next"
    assert "Set-Cookie" not in r.headers  # the unit came with the request
    # another unit: "off" by the 50/50 split, or "on"; always the same for the same unit
    variants = {}
    for i in range(40):
        got = {gh.get("/p", headers={"Cookie": "uid=user-%d" % i}).headers["X-Gatehouse-Variant"] for _ in range(2)}
        assert len(got) == 1, got
        variants[i] = got.pop()
    assert set(variants.values()) == {"on", "off"}
    off = next(i for i, v in variants.items() if v == "off")
    doc = gh.get("/p", headers={"Cookie": "uid=user-%d" % off}).json()
    assert doc["id"] == "stable" and doc["target"] == "/p"
    # no unit: one is made and set as a cookie, and the user keeps their variant with it
    r = gh.get("/p")
    ck = r.headers["Set-Cookie"]
    assert ck.startswith("uid=") and "Max-Age=31536000" in ck and "Path=/" in ck, ck
    uid = ck.split(";")[0].split("=", 1)[1]
    assert len(uid) == 32
    v = r.headers["X-Gatehouse-Variant"]
    assert all(gh.get("/p", headers={"Cookie": "uid=" + uid}).headers["X-Gatehouse-Variant"] == v for _ in range(3))
    # exposures in the access log
    assert poll(lambda: any(ln.get("flag") == "new-home" and ln.get("variant") == "on" and ln.get("path") == "/page"
                            for ln in gh.log_lines()))
    # ... and in the exposure log: one line per request served a variant (1 + 80 + 1 + 1 + 3), with its unit
    def exposures():
        return [json.loads(ln) for ln in elog.read_text().splitlines()] if elog.exists() else []
    assert poll(lambda: len(exposures()) == 86), len(exposures())
    ex = exposures()
    assert all(e["tenant"] == "shop" and e["route"] == "home" and e["flag"] == "new-home" for e in ex)
    vip = [e for e in ex if e["unit"] == "vip-1"]  # (lines of two workers: not in request order)
    assert len(vip) == 1 and vip[0]["variant"] == "on" and vip[0]["reason"] == "TARGETING_MATCH"
    assert vip[0]["time"].endswith("Z") and len(vip[0]["request_id"]) > 0
    per_unit = {}
    for e in ex:
        per_unit.setdefault(e["unit"], set()).add(e["variant"])
    assert all(len(v) == 1 for v in per_unit.values())  # a unit stays in its variant
    assert per_unit[uid] == {v} and per_unit["user-%d" % off] == {"off"}


def test_route_flag_must_exist(tmp_path):
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(SPLIT_FLAGS))
    cfg = tmp_path / "gh.yaml"
    cfg.write_text(fill(split_config(str(f)).replace("key: new-home", "key: old-home"),
                        {"o1": 1, "o2": 2, "admin_port": free_port(), "proxy_port": free_port(),
                         "pid_file": str(tmp_path / "pid")}))
    r = run_cli("validate", "-c", str(cfg))
    assert r.returncode == 1 and 'has no flag "old-home"' in r.stderr and "routes[0].flag.key" in r.stderr, r.stderr


def test_jsonlogic_matches_flagd_core_on_generated_cases(tmp_path):
    # the engine against @openfeature/flagd-core (npm) on 10,000 generated (rule, context) cases:
    # every difference must be one of the explained ones (tests/flags/README.md)
    d = js_clients()
    drv = os.path.join(d, "jl_driver")
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "jansson"], capture_output=True, text=True).stdout.split()
    r = subprocess.run(["cc", "-std=gnu11", "-O2", "-I" + os.path.join(REPO, "src"),
                        os.path.join(REPO, "tests/flags/jl_driver.c"), os.path.join(REPO, "src/flags/jsonlogic.c")]
                       + pc + ["-lm", "-o", drv], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["node", os.path.join(REPO, "tests/flags/crosscheck.js"), os.path.join(d, "node_modules"), drv,
                        "10000", "7"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("cases 10") and "unexplained 0" in last, last


def test_ofrep_over_h2c(gatehouse, tmp_path):
    # the OFREP listener speaks HTTP/2 too (h2c: true): many evaluations on one connection
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(FLAGS))
    port = free_port()
    text = config(str(f), "").replace('ofrep: {listen: "127.0.0.1:{ofrep_port}"}',
                                      'ofrep: {listen: "127.0.0.1:{ofrep_port}", h2c: true}')
    gatehouse(text, ofrep_port=port)
    wait_port(port)
    body = json.dumps({"context": {"email": "h2@example.com"}})
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w", "\\n%{http_version} %{http_code}",
                        "-H", "X-API-Key: " + KEY_A, "-d", body,
                        "http://127.0.0.1:%d/ofrep/v1/evaluate/flags/new-welcome" % port],
                       capture_output=True, text=True, timeout=10)
    out, status = r.stdout.rsplit("\n", 1)
    assert status == "2 200", (status, out, r.stderr)
    assert json.loads(out)["variant"] == "on"


def test_ofrep_rate_limit_answers_429_with_retry_after(gatehouse, tmp_path):
    limited = """  - name: beta
    flags:
      api_keys: ["%s"]
      rate_limit: "2/s"
      burst: 3
      definition:
        flags:
          banner: {state: ENABLED, variants: {shown: true}, defaultVariant: shown}
    sites: []
""" % KEY_B
    gh, _ = start(gatehouse, tmp_path, extra_tenant=limited)
    codes = [ofrep(gh, "banner", api_key=KEY_B).status_code for _ in range(6)]
    # a new tenant takes burst + 1 at once, then one per 500 ms
    assert codes[:4] == [200] * 4 and 429 in codes[4:], codes
    r = ofrep(gh, "banner", api_key=KEY_B)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json()["errorDetails"] == "rate limit exceeded"
    # the other tenant has no limit: not affected
    assert all(ofrep(gh, "limit").status_code == 200 for _ in range(10))
    time.sleep(1.1)
    assert ofrep(gh, "banner", api_key=KEY_B).status_code == 200
