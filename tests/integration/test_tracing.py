"""Distributed tracing end to end: W3C Trace Context in and out (traceparent/tracestate),
spans exported as OTLP/HTTP JSON to a real HTTP receiver this test runs (Python's
http.server on a loopback port, recording every POST body), and the origins recording the
traceparent they receive. One gatehouse (sample_ratio 1.0) serves most tests; the
sampling-off and receiver-down cases start their own."""

import http.server
import json
import re
import subprocess
import threading
import time

import pytest

from helpers import closed_port, free_port, metric_value, poll, run_cli, session
from origin import Origin

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class Receiver:
    """An OTLP/HTTP receiver: POST /v1/traces bodies, kept with their arrival time."""

    def __init__(self):
        rec = self
        self.posts = []  # (monotonic time, path, content-type, parsed body)
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with rec.lock:
                    rec.posts.append((time.monotonic(), self.path, self.headers.get("Content-Type"), doc))
                out = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def spans(self):
        out = []
        with self.lock:
            posts = list(self.posts)
        for _, _, _, doc in posts:
            for rs in (doc or {}).get("resourceSpans", []):
                res = {a["key"]: list(a["value"].values())[0] for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        sp = dict(sp)
                        sp["_resource"] = res
                        sp["_attrs"] = {a["key"]: list(a["value"].values())[0] for a in sp.get("attributes", [])}
                        out.append(sp)
        return out

    def trace(self, trace_id, want=1, timeout=4.0):
        """The spans of one trace once at least want of them arrived."""
        got = poll(lambda: [s for s in self.spans() if s["traceId"] == trace_id] if
                   len([s for s in self.spans() if s["traceId"] == trace_id]) >= want else None, timeout=timeout)
        return got or [s for s in self.spans() if s["traceId"] == trace_id]

    def by_request_id(self, rid, timeout=4.0):
        sp = poll(lambda: [s for s in self.spans() if s["_attrs"].get("gatehouse.request_id") == rid], timeout=timeout)
        assert sp, "no server span for request %s" % rid
        tid = sp[0]["traceId"]
        time.sleep(0.05)
        return sp[0], [s for s in self.spans() if s["traceId"] == tid and s["spanId"] != sp[0]["spanId"]]


CONFIG = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 2s
access_log: {enabled: false}
admin: {listen: "127.0.0.1:{admin_port}"}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}, {name: h2c, listen: "127.0.0.1:{h2c_port}", h2c: true}]
tracing: {endpoint: "http://127.0.0.1:{otlp_port}", sample_ratio: {ratio}, service_name: edge-test, batch: {batch}}
upstreams:
  app: {backends: ["127.0.0.1:{o1}"]}
  pair:
    backends: ["127.0.0.1:{o2}", "127.0.0.1:{o3}"]
    retries: {on: [503], backoff: {base: 0ms, max: 0ms}}
    outlier_detection: {consecutive_failures: 0}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: cached
            match: {path: {prefix: /cached/}}
            upstream: app
            cache: {enabled: true, default_ttl: 1m}
          - name: retry
            match: {path: {prefix: /retry/}}
            upstream: pair
          - name: denied
            match: {path: {prefix: /denied/}}
            upstream: app
            protection: {deny: [127.0.0.1]}
          - name: main
            upstream: app
"""


@pytest.fixture(scope="module")
def env(gatehouse_module):
    rcv = Receiver()
    origins = [Origin("o%d" % i) for i in range(3)]
    origins[1].force_status = 503
    gh = gatehouse_module(CONFIG, otlp_port=rcv.port, ratio="1.0", batch=64, h2c_port=free_port(),
                          o1=origins[0].port, o2=origins[1].port, o3=origins[2].port)
    yield gh, rcv, origins
    gh.stop()
    for o in origins:
        o.stop()
    rcv.stop()


def seen_traceparent(origin, path):
    assert origin.wait_for(lambda s: any(h["path"] == path for h in s.heads), timeout=5), \
        "origin did not see %s" % path
    with origin.lock:
        heads = [h for h in origin.heads if h["path"] == path]
    h = heads[-1]
    tps = [v for n, v in h["headers"] if n.lower() == "traceparent"]
    assert len(tps) == 1, h["headers"]
    m = TP.match(tps[0])
    assert m, tps[0]
    states = [v for n, v in h["headers"] if n.lower() == "tracestate"]
    return m.group(1), m.group(2), m.group(3), states


def get(gh, path, headers=None):
    h = {"Host": "example.com"}
    h.update(headers or {})
    with session() as s:
        return s.get(gh.url + path, headers=h, timeout=10)


def test_new_trace_server_span_and_try_child(env):
    gh, rcv, origins = env
    r = get(gh, "/new/a?x=1", {"X-Request-Id": "tr-new-1"})
    assert r.status_code == 200
    tid, parent, flags, _ = seen_traceparent(origins[0], "/new/a")
    assert flags == "01"
    server, others = rcv.by_request_id("tr-new-1")
    assert server["traceId"] == tid
    assert server["name"] == "HTTP GET" and server["kind"] == 2
    assert "parentSpanId" not in server
    a = server["_attrs"]
    assert a["http.request.method"] == "GET" and a["url.path"] == "/new/a"
    assert a["http.response.status_code"] in ("200", 200)
    assert a["server.address"] == "example.com"
    assert a["gatehouse.tenant"] == "acme" and a["gatehouse.route"] == "main"
    assert a["client.address"] == "127.0.0.1" and a["network.protocol.version"] == "1.1"
    assert server.get("status", {}).get("code", 0) != 2
    assert int(server["endTimeUnixNano"]) >= int(server["startTimeUnixNano"]) > 1.6e18
    assert abs(int(server["startTimeUnixNano"]) / 1e9 - time.time()) < 30
    assert server["_resource"]["service.name"] == "edge-test"
    assert "service.version" in server["_resource"]
    tries = [s for s in others if s["kind"] == 3]
    assert len(tries) == 1, others
    t = tries[0]
    assert t["parentSpanId"] == server["spanId"]
    assert t["spanId"] == parent  # the backend saw the try span as its parent
    ta = t["_attrs"]
    assert ta["gatehouse.upstream"] == "app" and ta["gatehouse.try"] in ("1", 1)
    assert ta["gatehouse.try.outcome"] == "ok"
    assert ta["server.address"] == "127.0.0.1" and int(ta["server.port"]) == origins[0].port
    assert int(server["startTimeUnixNano"]) <= int(t["startTimeUnixNano"]) <= int(t["endTimeUnixNano"]) \
        <= int(server["endTimeUnixNano"])
    # the export itself: OTLP/HTTP JSON
    with rcv.lock:
        post = rcv.posts[-1]
    assert post[1] == "/v1/traces" and post[2].startswith("application/json")


def test_valid_traceparent_keeps_trace_and_parent(env):
    gh, rcv, origins = env
    tid, pid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = get(gh, "/keep/a", {"traceparent": "00-%s-%s-01" % (tid, pid), "tracestate": "congo=t61rcWkgMzE,rojo=1",
                             "X-Request-Id": "tr-keep-1"})
    assert r.status_code == 200
    seen_tid, seen_parent, flags, states = seen_traceparent(origins[0], "/keep/a")
    assert seen_tid == tid and flags == "01" and seen_parent != pid
    assert states == ["congo=t61rcWkgMzE,rojo=1"]  # passed through unchanged
    server, others = rcv.by_request_id("tr-keep-1")
    assert server["traceId"] == tid and server["parentSpanId"] == pid
    assert server.get("traceState") == "congo=t61rcWkgMzE,rojo=1"
    assert [s["spanId"] for s in others] == [seen_parent]


@pytest.mark.parametrize("bad", [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # not version 00
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # too long for 00
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  # bad flags
    "garbage",
])
def test_malformed_traceparent_starts_a_new_trace(env, bad):
    gh, rcv, origins = env
    path = "/bad/%d" % (abs(hash(bad)) % 10**9)
    r = get(gh, path, {"traceparent": bad, "tracestate": "rojo=1", "X-Request-Id": "tr-bad-%s" % path[5:]})
    assert r.status_code == 200
    tid, _, flags, states = seen_traceparent(origins[0], path)
    assert tid not in bad.lower() and flags == "01"  # sampled by the ratio (1.0)
    assert states == []  # tracestate goes with a valid traceparent only
    server, _ = rcv.by_request_id("tr-bad-%s" % path[5:])
    assert server["traceId"] == tid and "parentSpanId" not in server


def test_http2_client(env):
    gh, rcv, origins = env
    tid, pid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                          "-H", "traceparent: 00-%s-%s-01" % (tid, pid), "-H", "X-Request-Id: tr-h2",
                          "-H", "Host: example.com", "http://127.0.0.1:%d/h2/a" % gh.values["h2c_port"]],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout == "200", out
    seen_tid, seen_parent, flags, _ = seen_traceparent(origins[0], "/h2/a")
    assert seen_tid == tid and flags == "01"
    server, others = rcv.by_request_id("tr-h2")
    assert server["traceId"] == tid and server["parentSpanId"] == pid
    assert server["_attrs"]["network.protocol.version"] == "2"
    assert [s["spanId"] for s in others] == [seen_parent]


def test_retry_gives_two_try_spans(env):
    gh, rcv, origins = env
    # round robin over o1 (always 503, retried) and o2: one of two requests starts on o1
    for i in range(2):
        assert get(gh, "/retry/%d" % i, {"X-Request-Id": "tr-retry-%d" % i}).status_code == 200
    found = False
    for i in range(2):
        server, others = rcv.by_request_id("tr-retry-%d" % i)
        tries = sorted([s for s in others if s["kind"] == 3], key=lambda s: int(s["_attrs"]["gatehouse.try"]))
        if len(tries) == 2:
            found = True
            a0, a1 = tries[0]["_attrs"], tries[1]["_attrs"]
            assert a0["gatehouse.try.outcome"] == "retried_status" and int(a0["http.response.status_code"]) == 503
            assert tries[0]["status"]["code"] == 2
            assert a1["gatehouse.try.outcome"] == "ok" and int(a1["server.port"]) == origins[2].port
            assert int(a0["server.port"]) == origins[1].port
            assert tries[0]["spanId"] != tries[1]["spanId"]
            # the backend of each try saw its own span as the parent
            _, p1, _, _ = seen_traceparent(origins[1], "/retry/%d" % i)
            _, p2, _, _ = seen_traceparent(origins[2], "/retry/%d" % i)
            assert (p1, p2) == (tries[0]["spanId"], tries[1]["spanId"])
    assert found


def test_5xx_sets_error_status(env):
    gh, rcv, origins = env
    assert get(gh, "/status?code=500", {"X-Request-Id": "tr-500"}).status_code == 500
    server, others = rcv.by_request_id("tr-500")
    assert server["status"]["code"] == 2
    assert int(server["_attrs"]["http.response.status_code"]) == 500
    assert get(gh, "/status?code=404", {"X-Request-Id": "tr-404"}).status_code == 404
    server, _ = rcv.by_request_id("tr-404")
    assert server.get("status", {}).get("code", 0) != 2  # a 4xx is the client's, not an error of ours


def test_cache_result_on_the_server_span(env):
    gh, rcv, origins = env
    assert get(gh, "/cached/size?n=10", {"X-Request-Id": "tr-c1"}).status_code == 200
    assert get(gh, "/cached/size?n=10", {"X-Request-Id": "tr-c2"}).status_code == 200
    s1, o1 = rcv.by_request_id("tr-c1")
    s2, o2 = rcv.by_request_id("tr-c2")
    assert s1["_attrs"]["gatehouse.cache.result"] == "miss" and len(o1) == 1
    assert s2["_attrs"]["gatehouse.cache.result"] == "hit" and o2 == []  # no upstream try on a hit
    ev = [e for e in s2.get("events", []) if e["name"] == "cache.lookup"]
    assert ev and ev[0]["attributes"][0]["value"]["stringValue"] == "hit"


def test_protection_decision_on_the_server_span(env):
    gh, rcv, origins = env
    assert get(gh, "/denied/x", {"X-Request-Id": "tr-deny"}).status_code == 403
    server, others = rcv.by_request_id("tr-deny")
    a = server["_attrs"]
    assert a["gatehouse.route"] == "denied" and int(a["http.response.status_code"]) == 403
    assert a["gatehouse.protect.reason"] and a["gatehouse.protect.decision"]
    ev = [e for e in server.get("events", []) if e["name"] == "protection.decision"]
    assert len(ev) == 1, server
    assert others == []  # never reached a backend


def test_spans_arrive_batched_and_counted(env):
    gh, rcv, origins = env
    time.sleep(1.2)  # whatever was pending went out
    with rcv.lock:
        before = len(rcv.posts)
    t0 = time.monotonic()
    for i in range(10):
        assert get(gh, "/batch/%d" % i, {"X-Request-Id": "tr-batch-%d" % i}).status_code == 200
    sent = time.monotonic()
    for i in range(10):
        rcv.by_request_id("tr-batch-%d" % i, timeout=3)
    with rcv.lock:
        new = rcv.posts[before:]
    assert new and new[-1][0] - sent < 2.0, new[-1][0] - sent
    assert len(new) <= 3, len(new)  # 20 spans in at most a few POSTs, not one each
    assert new[0][0] - t0 < 2.5
    m = gh.metrics()
    assert metric_value(m, "gatehouse_trace_spans_exported_total") >= 20
    assert metric_value(m, "gatehouse_trace_spans_dropped_total") == 0
    assert metric_value(m, "gatehouse_trace_exports_total", result="ok") >= 1


def test_not_sampled_still_propagates(gatehouse):
    rcv = Receiver()
    o = Origin("s0")
    try:
        gh = gatehouse(CONFIG, otlp_port=rcv.port, ratio="0", batch=8, h2c_port=free_port(), o1=o.port, o2=closed_port(),
                       o3=closed_port())
        assert get(gh, "/unsampled").status_code == 200
        tid, parent, flags, _ = seen_traceparent(o, "/unsampled")
        assert flags == "00" and tid != "0" * 32
        # a caller's sampled flag is respected (respect_parent: true by default)
        t2 = "0af7651916cd43dd8448eb211c80319c"
        assert get(gh, "/parent-sampled", {"traceparent": "00-%s-b7ad6b7169203331-01" % t2}).status_code == 200
        assert seen_traceparent(o, "/parent-sampled")[2] == "01"
        assert rcv.trace(t2, want=2, timeout=3)
        time.sleep(1.3)
        assert [s for s in rcv.spans() if s["traceId"] == tid] == []  # nothing exported for the unsampled one
    finally:
        o.stop()
        rcv.stop()


def test_receiver_down_does_not_hurt_proxying(gatehouse):
    o = Origin("d0")
    try:
        gh = gatehouse(CONFIG, otlp_port=closed_port(), ratio="1.0", batch=4, h2c_port=free_port(), o1=o.port, o2=closed_port(),
                       o3=closed_port())
        t0 = time.monotonic()
        with session() as s:
            for i in range(20):
                r = s.get(gh.url + "/down/%d" % i, headers={"Host": "example.com"}, timeout=5)
                assert r.status_code == 200
        assert time.monotonic() - t0 < 5
        ok = poll(lambda: metric_value(gh.metrics(), "gatehouse_trace_exports_total", result="error") >= 1,
                  timeout=8)
        assert ok
        m = gh.metrics()
        assert metric_value(m, "gatehouse_trace_spans_dropped_total", reason="export_failed") >= 4
        assert metric_value(m, "gatehouse_trace_spans_exported_total") == 0
        assert get(gh, "/down/after").status_code == 200
    finally:
        o.stop()


def test_config_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text('listeners: [{name: http, listen: "127.0.0.1:1"}]\n'
                 'tracing: {endpoint: "https://collector:4318", sample_ratio: 2, batch: 0, bogus: 1}\n')
    r = run_cli("validate", "-c", str(p))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "tracing.endpoint: only http:// collector endpoints are supported" in out, out
    assert "tracing.sample_ratio" in out and "tracing.batch" in out
    assert 'tracing.bogus: unknown key "bogus"' in out
