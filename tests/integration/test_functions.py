"""Edge functions (src/edge): LuaJIT code on routes, through the real binary: every API call,
both phases, direct answers, upstream choice, failures (errors, runaway loops, memory
exhaustion) that fail only their request and are counted, on_error: continue, isolation
between tenants, load-time errors with file and line, and reload."""

import json
import os
import re

import pytest

from helpers import HEADER, fill, metric_value, poll, run_cli
from rawhttp import one, request_bytes

API = r"""
function on_request(r)
  local p = r:path()
  if p == "/fn/respond" then
    return r:respond(201, "made at the edge\n", {["Content-Type"] = "text/plain", ["X-Made"] = "edge"})
  end
  if p == "/fn/redirect" then return r:redirect("/elsewhere", 307) end
  if p == "/fn/rewrite" then
    r:set_path("/echo/rewritten")
    r:set_query("a=1&b=2")
    r:set_method("PUT")
  end
  if p == "/fn/other" then
    assert(r:set_upstream("other"))
    assert(r:set_upstream("nonexistent") == false)
  end
  if p == "/fn/info" then
    local t = {
      method = r:method(), path = r:path(), query = r:query(), q = r:query_arg("q"),
      ua = r:header("user-agent"), cookie = r:cookie("sid"), tenant = r:tenant(), route = r:route(),
      ip = r:client_ip(), host = r:host(), country = r:country() or "none", ja4 = r:ja4() or "none",
      variant = r:variant("color") or "none", missing = r:header("x-missing") == nil,
    }
    local parts = {}
    for k, v in pairs(t) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    table.sort(parts)
    return r:respond(200, table.concat(parts, "\n") .. "\n")
  end
  r:set_header("X-From-Fn", "yes")
  r:add_header("X-Multi", "one")
  r:add_header("X-Multi", "two")
  r:remove_header("X-Drop")
  r.ctx.started = r:now()
  r.ctx.path = p
  r:set_response_header("X-Edge", "1")
  r:log("seen " .. p)
end

function on_response(r)
  r:set_response_header("X-Status-Seen", tostring(r:status()))
  r:set_response_header("X-Ctx-Path", r.ctx.path or "none")
  r:set_response_header("X-Origin-Type", r:response_header("content-type") or "none")
  r:remove_response_header("X-Remove-Me")
end
"""

FAIL = r"""
function on_request(r)
  local p = r:path()
  if p == "/loop" then while true do end end
  if p == "/mem" then local t, s = {}, string.rep("x", 65536) for i = 1, 1e9 do t[i] = s .. i end end
  if p == "/err" then error("boom at the edge") end
  if p == "/pcall" then while true do pcall(function() while true do end end) end end
  if p == "/badheader" then r:set_header("X-Bad", "a\r\nInjected: 1") end
  r:set_response_header("X-Alive", "1")
end
"""

ISO_A = "function on_request(r) secret = 'tenant-a' r:set_response_header('X-Seen', tostring(rawget(_G, 'secret'))) end\n"
ISO_B = "function on_request(r) r:set_response_header('X-Seen', tostring(secret)) end\n"

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  other: {backends: ["127.0.0.1:{other_port}"]}
tenants:
  - name: acme
    flags:
      definition:
        flags:
          color: {state: ENABLED, defaultVariant: blue, variants: {blue: blue, green: green}}
    sites:
      - hosts: ["example.com"]
        routes:
          - name: to-other
            match: {path: {exact: /never}}
            upstream: other
          - name: api
            upstream: app
            flag: {key: color, unit: "header:X-User"}
            function: {file: "{api}"}
  - name: tenant-a
    sites:
      - hosts: ["a.example.com"]
        routes: [{name: a, upstream: app, function: {code: "{iso_a}"}}]
  - name: tenant-b
    sites:
      - hosts: ["b.example.com"]
        routes: [{name: b, upstream: app, function: {code: "{iso_b}"}}]
"""


def yq(s):
    """Lua code as a YAML double-quoted scalar's content."""
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@pytest.fixture(scope="module")
def env(gatehouse_module, origin_module, tmp_path_factory):
    from conftest import OriginFactory
    d = tmp_path_factory.mktemp("fn")
    api = d / "api.lua"
    api.write_text(API)
    f = OriginFactory()
    other = f("other")
    gh = gatehouse_module(CONFIG, origin_port=origin_module.port, other_port=other.port, api=str(api),
                          iso_a=yq(ISO_A), iso_b=yq(ISO_B), workers=1)
    yield gh, origin_module, other
    f.stop_all()


def get(gh, path, host="example.com", headers=(), method="GET"):
    return one(gh.port, request_bytes(method, path, host=host, headers=headers), method=method)


def test_request_and_response_phases(env):
    gh, origin, _ = env
    r = get(gh, "/echo/x", headers=[("X-Drop", "gone"), ("X-Remove-Me", "no")])
    assert r.status == 200
    e = json.loads(r.body)
    hs = [(n.lower(), v) for n, v in e["headers"]]
    assert ("x-from-fn", "yes") in hs
    assert ("x-multi", "one") in hs and ("x-multi", "two") in hs
    assert not any(n == "x-drop" for n, _ in hs)
    assert r.header("x-edge") == "1"
    assert r.header("x-status-seen") == "200"
    assert r.header("x-ctx-path") == "/echo/x"  # r.ctx carried from on_request to on_response
    assert r.header("x-origin-type") == "application/json"
    assert "seen /echo/x" in gh.stderr_text() + gh.stdout_text()


def test_respond_and_redirect(env):
    gh, _, _ = env
    r = get(gh, "/fn/respond")
    assert (r.status, r.body) == (201, b"made at the edge\n")
    assert r.header("x-made") == "edge" and r.header("content-type") == "text/plain"
    r = get(gh, "/fn/redirect")
    assert (r.status, r.header("location")) == (307, "/elsewhere")


def test_rewrite_method_path_query(env):
    gh, _, _ = env
    e = json.loads(get(gh, "/fn/rewrite?orig=1").body)
    assert (e["method"], e["path"], e["query"]) == ("PUT", "/echo/rewritten", "a=1&b=2")


def test_choose_upstream(env):
    gh, _, other = env
    r = get(gh, "/fn/other")
    assert r.status == 200
    assert "/fn/other" in other.paths_seen()


def test_read_api(env):
    gh, _, _ = env
    r = get(gh, "/fn/info?q=hello&z=1", headers=[("User-Agent", "probe/1"), ("Cookie", "a=b; sid=s-42"),
                                                 ("X-User", "u1")])
    assert r.status == 200, r
    kv = dict(line.split("=", 1) for line in r.body.decode().strip().split("\n"))
    assert kv["method"] == "GET" and kv["path"] == "/fn/info" and kv["query"] == "q=hello&z=1"
    assert kv["q"] == "hello" and kv["ua"] == "probe/1" and kv["cookie"] == "s-42"
    assert kv["tenant"] == "acme" and kv["route"] == "api" and kv["ip"] == "127.0.0.1"
    assert kv["host"] == "example.com" and kv["country"] == "none" and kv["ja4"] == "none"
    assert kv["variant"] == "blue" and kv["missing"] == "true"


def test_runaway_memory_and_errors(gatehouse, origin, tmp_path):
    fail = tmp_path / "fail.lua"
    fail.write_text(FAIL)
    cfg = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: strict
            upstream: app
            function: {file: "{fail}", max_instructions: 200000, max_memory: 4m}
      - hosts: ["lenient.example.com"]
        routes:
          - name: lenient
            upstream: app
            function: {file: "{fail}", on_error: continue, max_instructions: 200000}
"""
    gh = gatehouse(cfg, origin_port=origin.port, fail=str(fail), workers=1)
    for path in ("/loop", "/mem", "/err", "/pcall", "/badheader"):
        r = get(gh, path)
        assert r.status == 500, (path, r)
        # the worker is alive and the same state serves the next request
        ok = get(gh, "/echo/after")
        assert ok.status == 200 and ok.header("x-alive") == "1", path
    # on_error: continue: the request goes on unchanged (no X-Alive: the function's edits are undone)
    r = get(gh, "/err", host="lenient.example.com")
    assert r.status == 200 and r.header("x-alive") is None
    samples = gh.metrics()
    lim = metric_value(samples, "gatehouse_edge_function_calls_total", tenant="acme", route="strict", result="limit")
    err = metric_value(samples, "gatehouse_edge_function_calls_total", tenant="acme", route="strict", result="error")
    ok = metric_value(samples, "gatehouse_edge_function_calls_total", tenant="acme", route="strict", result="ok")
    assert lim == 3, samples  # loop, memory, pcall-wrapped loop
    assert err == 2  # error(), a header with CR LF
    assert ok == 5
    log = gh.stderr_text()
    assert "instruction limit" in log and "boom at the edge" in log, log
    assert "memory limit exceeded" in log, log


def test_tenants_are_isolated(env):
    gh, _, _ = env
    assert get(gh, "/x", host="a.example.com").header("x-seen") == "tenant-a"
    assert get(gh, "/x", host="b.example.com").header("x-seen") == "nil"


def write_cfg(tmp_path, code_file, extra=""):
    text = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:9"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes: [{name: r, upstream: app, function: {file: "%s"%s}}]
""" % (code_file, extra)
    cfg = tmp_path / "g.yaml"
    cfg.write_text(fill(text, {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p")}))
    return str(cfg)


@pytest.mark.parametrize("code,want", [
    ("function on_request(r)\n  local x = = 1\nend\n", r":2: .*unexpected symbol"),
    ("local x = 1\n", r"defines neither on_request nor on_response"),
    ("on_request = 5\n", r"on_request"),
    ("while true do end\n", r"instruction limit"),
    ("error('top level fails')\n", r":1: top level fails"),
])
def test_load_time_errors_name_the_file_and_line(tmp_path, code, want):
    f = tmp_path / "edge.lua"
    f.write_text(code)
    p = run_cli("validate", "-c", write_cfg(tmp_path, str(f)))
    assert p.returncode == 1, p.stdout
    assert re.search(r"g\.yaml:\d+:\d+: tenants\[0\]\.sites\[0\]\.routes\[0\]\.function\.file: ", p.stderr), p.stderr
    assert re.search(want, p.stderr), p.stderr
    if ":" in want[:3]:
        assert str(f) + ":" in p.stderr


def test_sandbox_has_no_io_or_os(tmp_path):
    f = tmp_path / "edge.lua"
    f.write_text("function on_request(r) end\nassert(io == nil and require == nil and os.execute == nil "
                 "and load == nil and debug == nil and jit == nil)\n")
    p = run_cli("validate", "-c", write_cfg(tmp_path, str(f)))
    assert p.returncode == 0, p.stderr


def test_reload_swaps_functions(gatehouse, origin, tmp_path):
    f = tmp_path / "v.lua"
    f.write_text("function on_request(r) r:set_response_header('X-Version', '1') end\n")
    cfg = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes: [{name: r, upstream: app, function: {file: "{code}"}}]
"""
    gh = gatehouse(cfg, origin_port=origin.port, code=str(f))
    assert get(gh, "/echo/1").header("x-version") == "1"
    f.write_text("function on_request(r) r:set_response_header('X-Version', '2') end\n")
    gh.reload()
    assert poll(lambda: get(gh, "/echo/2").header("x-version") == "2", timeout=5)
    # a broken file is refused at reload: the running version stays
    f.write_text("function on_request(r) r:set_response_header('X-Version', '3' end\n")
    gh.reload()
    assert poll(lambda: "edge.lua" in gh.stderr_text() or "v.lua" in gh.stderr_text(), timeout=5)
    assert get(gh, "/echo/3").header("x-version") == "2"


def test_cached_responses_pass_through_the_edge(gatehouse, origin, tmp_path):
    f = tmp_path / "c.lua"
    f.write_text("function on_response(r) r:set_response_header('X-Seen-Status', tostring(r:status())) "
                 "r:set_response_header('Content-Type', 'text/x-edge') end\n")
    cfg = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        rules: [{response_headers: {set: {X-Rule: "1"}}}]
        routes: [{name: r, upstream: app, cache: {default_ttl: 60s}, function: {file: "{code}"}}]
"""
    gh = gatehouse(cfg, origin_port=origin.port, code=str(f))
    first = get(gh, "/size?n=10")
    again = get(gh, "/size?n=10")
    assert "hit" in (again.header("cache-status") or ""), again.headers
    for r in (first, again):
        assert r.status == 200 and r.body == b"x" * 10
        assert r.header("x-seen-status") == "200" and r.header("x-rule") == "1"
        assert r.header_all("content-type") == ["text/x-edge"]  # set: the stored field is replaced


def test_missing_function_file_is_a_load_error(tmp_path):
    p = run_cli("validate", "-c", write_cfg(tmp_path, str(tmp_path / "nope.lua")))
    assert p.returncode == 1
    assert re.search(r"function\.file: cannot read .*nope\.lua.*No such file", p.stderr), p.stderr
