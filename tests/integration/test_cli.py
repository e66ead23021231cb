"""The command line: version, help, validate, run with a bad config, quick mode,
and the built-in demo origin."""

import os
import re
import subprocess

import pytest

from helpers import HEADER, REPO, free_port, get, poll, request, run_cli

GOOD = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:9"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: hello
            match: {path: {exact: /hello}}
            respond: {status: 200, body: "hi\\n"}
          - name: all
            upstream: app
"""

# Line numbers matter below: keep this text as is.
BAD = """\
workers: 1
listeners: [{name: http, listen: "127.0.0.1:18080"}]
limits:
  max_body_size: 1m
  bogus_key: 7
upstreams:
  app: {backends: ["127.0.0.1:9"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: r1
            upstream: nope
          - name: r2
            match: {path: {regex: "("}}
            upstream: app
"""


def write(tmp_path, text, name="gh.yaml", **values):
    from helpers import fill
    p = tmp_path / name
    p.write_text(fill(text, values))
    return str(p)


def good_values(tmp_path):
    return {"workers": 1, "pid_file": str(tmp_path / "gh.pid"), "admin_port": free_port(),
            "proxy_port": free_port()}


def test_version():
    p = run_cli("version")
    assert p.returncode == 0, p.stderr
    assert re.fullmatch(r"gatehouse \d+\.\d+\.\d+\s*", p.stdout), p.stdout


@pytest.mark.parametrize("sub", ["run", "validate", "proxy", "version", "reload"])
def test_subcommand_help(sub):
    p = run_cli(sub, "--help")
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "usage" in (p.stdout + p.stderr).lower()
    assert sub in (p.stdout + p.stderr)


def test_unknown_subcommand():
    p = run_cli("frobnicate")
    assert p.returncode == 2
    assert "usage" in (p.stdout + p.stderr).lower()


def test_validate_ok(tmp_path):
    path = write(tmp_path, GOOD, **good_values(tmp_path))
    p = run_cli("validate", "-c", path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "%s: ok" % path


def test_validate_reports_line_and_column(tmp_path):
    path = write(tmp_path, BAD)
    p = run_cli("validate", "-c", path)
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    pat = re.compile(r"^%s:5:3: limits\.bogus_key: \S.*$" % re.escape(path))
    assert any(pat.match(ln) for ln in lines), p.stderr


def test_validate_reports_every_error(tmp_path):
    path = write(tmp_path, BAD)
    p = run_cli("validate", "-c", path)
    assert p.returncode == 1
    fmt = re.compile(r"^%s:(\d+):(\d+): (\S+): \S.*$" % re.escape(path))
    errs = [fmt.match(ln) for ln in p.stderr.splitlines()]
    errs = [m for m in errs if m]
    assert len(errs) >= 3, p.stderr
    lines_reported = {int(m.group(1)) for m in errs}
    assert 5 in lines_reported, p.stderr          # unknown key
    assert 14 in lines_reported, p.stderr         # unknown upstream "nope"
    assert 16 in lines_reported, p.stderr         # bad regex
    assert "nope" in p.stderr


def test_validate_missing_file(tmp_path):
    p = run_cli("validate", "-c", str(tmp_path / "does-not-exist.yaml"))
    assert p.returncode != 0
    assert "does-not-exist.yaml" in p.stderr


def test_run_bad_config_exits_nonzero(gatehouse, tmp_path):
    g = gatehouse(BAD, expect_fail=True)
    try:
        rc = g.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("gatehouse run with a bad config is still running")
    assert rc != 0
    err = g.stderr_text()
    assert ":5:3: limits.bogus_key:" in err, err


def test_quick_mode_round_robin(gatehouse, origin_factory):
    o1, o2 = origin_factory("q1"), origin_factory("q2")
    port = free_port()
    gatehouse.spawn(["proxy", "--from", "127.0.0.1:%d" % port, "--to", o1.addr, "--to", o2.addr],
                    port)
    seen = []
    for _ in range(10):
        r = get("http://127.0.0.1:%d/id" % port)
        assert r.status_code == 200
        seen.append(r.text)
    assert set(seen) == {"q1", "q2"}, seen
    assert abs(seen.count("q1") - seen.count("q2")) <= 2, seen


def test_quick_mode_forwards_request(gatehouse, origin):
    port = free_port()
    gatehouse.spawn(["proxy", "--from", "127.0.0.1:%d" % port, "--to", origin.addr], port)
    r = get("http://127.0.0.1:%d/echo/quick?a=b" % port, headers={"Host": "anything.test"})
    assert r.status_code == 200
    assert r.json()["target"] == "/echo/quick?a=b"


DEMO = HEADER + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: demo
    sites: [{hosts: ["*"], routes: [{name: all, upstream: demo}]}]
"""


def test_demo_origin_via_proxy(gatehouse):
    g = gatehouse(DEMO)
    r = g.get("/", host="localhost")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html" in r.text.lower()
    r = g.get("/echo?x=1", host="localhost", headers={"X-Demo": "yes"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["method"] == "GET"
    assert doc["path"] == "/echo"
    assert doc["query"] in ("x=1", "?x=1", {"x": "1"}, {"x": ["1"]}), doc
    hdrs = {k.lower(): v for k, v in doc["headers"].items()}
    assert hdrs.get("x-demo") == "yes"
    r = g.get("/anything/else", host="localhost")
    assert r.status_code == 200


def test_quickstart_example_validates():
    path = os.path.join(REPO, "examples", "quickstart.yaml")
    if not os.path.exists(path):
        pytest.skip("examples/quickstart.yaml not written yet")
    p = run_cli("validate", "-c", path)
    assert p.returncode == 0, p.stderr


def test_quickstart_example_runs(gatehouse):
    """examples/quickstart.yaml with its fixed ports swapped for free ones."""
    path = os.path.join(REPO, "examples", "quickstart.yaml")
    if not os.path.exists(path):
        pytest.skip("examples/quickstart.yaml not written yet")
    text = open(path).read()
    for fixed, ph in (("127.0.0.1:8080", "{proxy_port}"), ("127.0.0.1:9090", "{admin_port}"),
                      ("127.0.0.1:9100", "{demo_port}"), ("127.0.0.1:8016", "{ofrep_port}"),
                      ("127.0.0.1:8013", "{grpc_port}")):
        assert fixed in text, "quickstart no longer listens on %s; update this test" % fixed
        text = text.replace(fixed, "127.0.0.1:" + ph)
    # the experiments' store: relative to the working directory (the test's own); its
    # directory is made at start when missing
    assert '"build/quickstart-experiments.db"' in text
    ofrep, grpc_port = free_port(), free_port()
    g = gatehouse(text, ofrep_port=ofrep, grpc_port=grpc_port)
    assert os.path.exists(os.path.join(g.dir, "build", "quickstart-experiments.db"))
    r = g.get("/hello", host="localhost")
    assert r.status_code == 200
    assert r.text == "Hello from gatehouse!\n"
    r = g.get("/", host="localhost")
    assert r.status_code == 200
    assert "<html" in r.text.lower()
    assert g.admin_get("/metrics").status_code == 200
    # the flag split and the experiment
    r = g.get("/home", host="localhost", headers={"Cookie": "uid=me"})
    assert r.status_code == 200 and r.headers["X-Gatehouse-Variant"] in ("on", "off")
    r = request("POST", "http://127.0.0.1:%d/ofrep/v1/evaluate/flags/new-home" % ofrep,
                data='{"context":{"targetingKey":"me"}}')
    assert r.status_code == 200 and r.json()["variant"] == g.get("/home", host="localhost", headers={"Cookie": "uid=me"}).headers["X-Gatehouse-Variant"]
    assert poll(lambda: sum(g.admin_get("/v1/experiments/new-home/results?tenant=demo").json()["units"].values()) == 1)
    # the control plane's store (var/gatehouse.db, made at start): a tenant made through the API answers
    assert '"var/gatehouse.db"' in text
    assert os.path.exists(os.path.join(g.dir, "var", "gatehouse.db"))
    doc = {"name": "acme", "sites": [{"name": "main", "hosts": ["acme.test"],
                                      "routes": [{"name": "hi", "respond": {"status": 200, "body": "hi\n"}}]}]}
    r = request("POST", "http://127.0.0.1:%d/v1/tenants" % g.admin_port, json=doc)
    assert r.status_code == 201, r.text
    assert g.get("/", host="acme.test").text == "hi\n"


def test_reload_without_running_gatehouse_fails(tmp_path):
    vals = good_values(tmp_path)
    path = write(tmp_path, GOOD, **vals)
    p = run_cli("reload", "-c", path)  # no pid file: nothing to signal
    assert p.returncode != 0
    assert p.stderr.strip()


def _fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def test_handlers_get_the_whole_body(gatehouse):
    # a handler (here the demo origin, as admin ones will) runs once its whole body is in: a
    # large body sent slowly in pieces, and a chunked one, arrive whole; over 1 MiB is 413
    import socket
    import time
    g = gatehouse(DEMO)
    body = bytes((i * 7) & 0xFF for i in range(300000))
    s = socket.create_connection(("127.0.0.1", g.values["demo_port"]), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n\r\n" % len(body))
    for i in range(0, len(body), 60000):
        s.sendall(body[i:i + 60000])
        time.sleep(0.05)
    f = s.makefile("rb")
    assert f.readline().startswith(b"HTTP/1.1 200")
    clen = 0
    while True:
        ln = f.readline()
        if ln == b"\r\n":
            break
        if ln.lower().startswith(b"content-length:"):
            clen = int(ln.split(b":")[1])
    import json
    doc = json.loads(f.read(clen))
    assert doc["body_bytes"] == len(body) and doc["body_sum"] == _fnv1a(body), doc
    s.close()
    chunks = [b"hello ", b"chunked ", b"world"]
    r = get("http://127.0.0.1:%d/echo" % g.values["demo_port"], headers={"Host": "d"},
            data=iter(chunks))  # requests sends an iterator chunked
    doc = r.json()
    assert doc["body_bytes"] == len(b"".join(chunks)) and doc["body_sum"] == _fnv1a(b"".join(chunks)), doc
    r = get("http://127.0.0.1:%d/echo" % g.values["demo_port"], headers={"Host": "d"}, data=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413
