"""Admin listener (health, readiness, Prometheus metrics) and the JSON access log."""

import datetime
import re

import pytest

from helpers import HEADER, closed_port, metric_present, metric_value, parse_metrics, poll
from origin import header_values
from rawhttp import RawConn, one, request_bytes

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  dead: {backends: ["127.0.0.1:{dead_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: api
            match: {path: {prefix: /api}}
            upstream: app
          - name: slow
            match: {path: {prefix: /hang}}
            upstream: app
            timeouts: {upstream_response: 1s}
          - name: dead
            match: {path: {prefix: /dead}}
            upstream: dead
          - name: hello
            match: {path: {exact: /hello}}
            respond: {status: 200, body: "hi\\n", headers: {Content-Type: text/plain}}
"""

LOG_KEYS = {"time", "tenant", "route", "method", "path", "status", "bytes_in", "bytes_out",
            "upstream", "upstream_time_ms", "total_time_ms", "request_id"}


@pytest.fixture(scope="module")
def gh(gatehouse_module, origin_module):
    return gatehouse_module(CONFIG, origin_port=origin_module.port, dead_port=closed_port())


@pytest.fixture
def o(origin_module):
    origin_module.reset()
    return origin_module


def test_healthz(gh):
    r = gh.admin_get("/healthz")
    assert r.status_code == 200


def test_readyz(gh):
    r = gh.admin_get("/readyz")
    assert r.status_code == 200


def test_unknown_admin_path_404(gh):
    assert gh.admin_get("/nope").status_code == 404
    assert gh.admin_get("/metrics/extra").status_code == 404


def test_admin_not_on_proxy_listener(gh):
    # /metrics through the proxy port is just an unrouted request for example.com
    r = gh.get("/metrics")
    assert r.status_code == 404
    assert "gatehouse_requests_total" not in r.text


def test_metrics_content_type_and_format(gh):
    r = gh.admin_get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    samples = parse_metrics(r.text)
    assert samples, r.text[:500]
    assert "# TYPE gatehouse_requests_total counter" in r.text


def counter(gh, name, **labels):
    return metric_value(gh.metrics(), name, **labels)


def test_requests_total_counts(gh, o):
    before = counter(gh, "gatehouse_requests_total", tenant="acme", route="api", code="2xx")
    for i in range(7):
        assert gh.get("/api/count?i=%d" % i).status_code == 200
    want = before + 7
    got = poll(lambda: counter(gh, "gatehouse_requests_total", tenant="acme", route="api",
                               code="2xx") >= want, timeout=5)
    assert got
    assert counter(gh, "gatehouse_requests_total", tenant="acme", route="api", code="2xx") == want


def test_requests_total_other_codes(gh, o):
    before = counter(gh, "gatehouse_requests_total", tenant="acme", route="dead", code="5xx")
    one(gh.port, request_bytes("GET", "/dead/x"))
    assert poll(lambda: counter(gh, "gatehouse_requests_total", tenant="acme", route="dead",
                                code="5xx") == before + 1, timeout=5)


def test_duration_histogram(gh, o):
    gh.get("/hello")
    samples = poll(lambda: [s for s in gh.metrics()
                            if s[0] == "gatehouse_request_duration_seconds_bucket"], timeout=5)
    assert samples, "no gatehouse_request_duration_seconds_bucket samples"
    les = {s[1].get("le") for s in samples}
    assert "+Inf" in les
    all_samples = gh.metrics()
    assert metric_present(all_samples, "gatehouse_request_duration_seconds_count")
    assert metric_present(all_samples, "gatehouse_request_duration_seconds_sum")
    # buckets are cumulative within one series
    series = {}
    for n, ls, v in samples:
        key = tuple(sorted((k, x) for k, x in ls.items() if k != "le"))
        series.setdefault(key, []).append((float("inf") if ls["le"] == "+Inf" else float(ls["le"]), v))
    for key, pts in series.items():
        vals = [v for _, v in sorted(pts)]
        assert vals == sorted(vals), (key, pts)


def test_connections_active(gh, o):
    base = metric_value(gh.metrics(), "gatehouse_connections_active")
    conns = []
    try:
        for _ in range(5):
            c = RawConn(gh.port)
            c.send(request_bytes("GET", "/hello"))
            assert c.read_response().status == 200
            conns.append(c)
        assert poll(lambda: metric_value(gh.metrics(), "gatehouse_connections_active") >= base + 5,
                    timeout=5), gh.admin_get("/metrics").text[:2000]
    finally:
        for c in conns:
            c.close()
    assert poll(lambda: metric_value(gh.metrics(), "gatehouse_connections_active") <= base,
                timeout=5)


def test_upstream_connect_errors_metric(gh, o):
    before = counter(gh, "gatehouse_upstream_connect_errors_total", upstream="dead")
    r = one(gh.port, request_bytes("GET", "/dead/x"))
    assert r.status == 502
    assert poll(lambda: counter(gh, "gatehouse_upstream_connect_errors_total", upstream="dead")
                >= before + 1, timeout=5)


def test_upstream_timeouts_metric(gh, o):
    before = counter(gh, "gatehouse_upstream_timeouts_total", upstream="app")
    r = one(gh.port, request_bytes("GET", "/hang"), timeout=10)
    assert r.status == 504
    assert poll(lambda: counter(gh, "gatehouse_upstream_timeouts_total", upstream="app")
                >= before + 1, timeout=5)


def test_parser_rejections_metric(gh, o):
    before = counter(gh, "gatehouse_parser_rejections_total", reason="H1_CL_AND_TE")
    r = one(gh.port, b"POST /api/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert r.status == 400
    assert poll(lambda: counter(gh, "gatehouse_parser_rejections_total", reason="H1_CL_AND_TE")
                == before + 1, timeout=5)


# ---- access log ------------------------------------------------------------

def assert_recent_time(ln):
    """time is an ISO-8601 UTC timestamp within a few minutes of now."""
    t = ln.get("time")
    assert isinstance(t, str), ln
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)$", t)
    assert m, "time %r is not ISO 8601" % t
    when = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    if m.group(3) != "Z":
        return  # offset given; just the format is checked
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 300, "time %r is not now (%s)" % (t, now)


def _lines_with(gh, **kv):
    return [ln for ln in gh.log_lines() if all(ln.get(k) == v for k, v in kv.items())]


def test_access_log_line_for_proxied_request(gh, o):
    r = gh.request("POST", "/api/logged?x=1", data=b"0123456789")
    assert r.status_code == 200
    rid = header_values(r.json(), "X-Request-Id")[0]
    lines = poll(lambda: _lines_with(gh, request_id=rid), timeout=3)
    assert len(lines) == 1, "expected exactly one log line for request %s" % rid
    ln = lines[0]
    missing = LOG_KEYS - set(ln)
    assert not missing, "missing keys %s in %r" % (missing, ln)
    assert ln["tenant"] == "acme"
    assert ln["route"] == "api"
    assert ln["method"] == "POST"
    assert ln["path"].startswith("/api/logged")
    assert ln["status"] == 200
    assert ln["bytes_in"] >= 10
    assert ln["bytes_out"] >= len(r.content)
    assert ln["upstream"] == "app" or str(o.port) in str(ln["upstream"]), ln
    assert isinstance(ln["upstream_time_ms"], (int, float)) and ln["upstream_time_ms"] >= 0
    assert isinstance(ln["total_time_ms"], (int, float)) and ln["total_time_ms"] >= 0
    assert_recent_time(ln)


def test_access_log_one_line_per_request(gh, o):
    ids = []
    with RawConn(gh.port) as c:
        for i in range(5):
            c.send(request_bytes("GET", "/api/many?i=%d" % i))
            r = c.read_response()
            ids.append(header_values(r.json(), "X-Request-Id")[0])
    assert poll(lambda: all(_lines_with(gh, request_id=i) for i in ids), timeout=3)
    for i in ids:
        assert len(_lines_with(gh, request_id=i)) == 1


def test_access_log_complete_under_concurrency(gh, o):
    """20 clients x 50 requests: every request has its own line."""
    import threading
    errors = []

    def client(k):
        try:
            with RawConn(gh.port, timeout=15) as c:
                for i in range(50):
                    path = "/hello" if i % 2 else "/api/conc"
                    c.send(request_bytes("GET", path, headers=[("X-Request-Id", "conc-%d-%d" % (k, i))]))
                    assert c.read_response().status == 200
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:3]
    want = {"conc-%d-%d" % (k, i) for k in range(20) for i in range(50)}

    def logged():
        return [ln.get("request_id") for ln in gh.log_lines() if str(ln.get("request_id")).startswith("conc-")]
    poll(lambda: set(logged()) >= want, timeout=5)
    ids = logged()
    missing = want - set(ids)
    assert not missing, "%d of 1000 requests have no access-log line" % len(missing)
    assert len(ids) == len(want), "duplicate lines"


def test_access_log_respond_route_and_404(gh, o):
    rid = "log-test-respond-1"
    r = gh.get("/hello", headers={"X-Request-Id": rid})
    assert r.status_code == 200
    lines = poll(lambda: _lines_with(gh, request_id=rid), timeout=3)
    assert lines
    assert lines[0]["route"] == "hello"
    assert lines[0]["status"] == 200
    assert lines[0]["upstream"] in (None, "", "-")
    rid2 = "log-test-404-1"
    r = gh.get("/nothing-here", headers={"X-Request-Id": rid2})
    assert r.status_code == 404
    lines = poll(lambda: _lines_with(gh, request_id=rid2), timeout=3)
    assert lines and lines[0]["status"] == 404


def test_access_log_rejected_requests_have_valid_records(gh, o):
    """Requests refused by the parser need not be logged, but a line that is
    written for them must still carry the real time and the client address."""
    n0 = len(gh.log_lines())
    r = one(gh.port, b"POST /api/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert r.status == 400
    r = one(gh.port, request_bytes("GET", "/api/" + "a" * 9000))
    assert r.status == 414
    # a normal request afterwards: once its line is there, earlier ones are too
    rid = "after-rejections-1"
    assert gh.get("/hello", headers={"X-Request-Id": rid}).status_code == 200
    assert poll(lambda: _lines_with(gh, request_id=rid), timeout=3)
    for ln in gh.log_lines()[n0:]:
        assert_recent_time(ln)
        if "client" in ln:
            assert ln["client"] == "127.0.0.1", ln


def test_access_log_off(gatehouse, origin):
    cfg = CONFIG.replace('access_log: {enabled: true, path: "-"}', "access_log: off")
    g = gatehouse(cfg, origin_port=origin.port, dead_port=closed_port())
    for _ in range(3):
        assert g.get("/hello").status_code == 200
    assert g.get("/api/x").status_code == 200
    # flushing happens within ~1 s when enabled; give it that long to show up wrongly
    assert not poll(lambda: g.log_lines(), timeout=1.5)


def test_access_log_to_file(gatehouse, origin, tmp_path):
    path = tmp_path / "access.log"
    cfg = CONFIG.replace('access_log: {enabled: true, path: "-"}',
                         'access_log: {enabled: true, path: "%s"}' % path)
    g = gatehouse(cfg, origin_port=origin.port, dead_port=closed_port())
    assert g.get("/hello", headers={"X-Request-Id": "to-file-1"}).status_code == 200
    assert poll(lambda: path.exists() and any(ln.get("request_id") == "to-file-1"
                                              for ln in g.log_lines(str(path))), timeout=3)


def test_a_request_with_connection_close_is_answered_and_closed(gatehouse):
    """A direct answer (admin, OFREP, demo) to an HTTP/1.1 request with Connection: close
    ends the connection, so a client reading to EOF is not left waiting."""
    import socket
    gh = gatehouse(HEADER, workers=1)
    s = socket.create_connection(("127.0.0.1", gh.admin_port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and b"Connection: close" in data and data.endswith(b"ok\n")


def test_the_operator_key_guards_the_admin_api(gatehouse, tmp_path):
    """With an operator key (admin.key_file, or GATEHOUSE_ADMIN_KEY), every admin endpoint but
    the probes needs Authorization: Bearer KEY; the key never shows in logs or errors; without a
    key the admin listener must be on loopback."""
    import os
    import subprocess
    from helpers import BIN, request
    key = "op-key-5f0c1d9e8b7a6c4d3e2f"
    kf = tmp_path / "admin.key"
    kf.write_text(key + "\n")
    cfg = HEADER.replace('admin: {listen: "127.0.0.1:{admin_port}"}',
                         'admin: {listen: "127.0.0.1:{admin_port}", key_file: "%s"}' % kf)
    gh = gatehouse(cfg, workers=1)
    base = gh.admin_url
    assert request("GET", base + "/healthz").status_code == 200
    assert request("GET", base + "/readyz").status_code in (200, 503)  # a probe: never 401
    for path in ("/metrics", "/cache", "/upstreams", "/v1/experiments/x/results?tenant=t"):
        r = request("GET", base + path)
        assert r.status_code == 401, path
        assert r.headers["Content-Type"] == "application/problem+json" and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert request("GET", base + path, headers={"Authorization": "Bearer wrong-" + key}).status_code == 401
        assert request("GET", base + path, headers={"Authorization": "Bearer " + key[:-1]}).status_code == 401
    r = request("POST", base + "/cache/purge?tenant=x&all=1")
    assert r.status_code == 401
    r = request("GET", base + "/metrics", headers={"Authorization": "Bearer " + key})
    assert r.status_code == 200 and "gatehouse_" in r.text
    assert key not in gh.stdout_text() + gh.stderr_text()
    # no key and a public address: refused at load, naming the fix
    bad = tmp_path / "bad.yaml"
    bad.write_text('admin: {listen: "0.0.0.0:%d"}\nlisteners: [{listen: "127.0.0.1:%d"}]\n' % (gh.admin_port + 1, gh.port + 1))
    env = dict(os.environ)
    env.pop("GATEHOUSE_ADMIN_KEY", None)
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "admin.listen" in p.stderr and "needs an operator key" in p.stderr, p.stderr
    # the same with the key in the environment: accepted
    env["GATEHOUSE_ADMIN_KEY"] = key
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    env["GATEHOUSE_ADMIN_KEY"] = "short"
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "at least 16" in p.stderr and "short" not in p.stderr
