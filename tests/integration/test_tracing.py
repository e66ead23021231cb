"""Distributed tracing end to end: W3C Trace Context in and out (traceparent/tracestate),
spans exported as OTLP/HTTP to a real HTTP receiver this test runs (Python's http.server on a
loopback port, recording every POST body; over TLS with a self-signed certificate that the
openssl CLI makes for the https:// collector tests), and the origins recording the
traceparent they receive. One gatehouse (sample_ratio 1.0) serves most tests; the
sampling-off and receiver-down cases start their own.

tracing.protocol: http/protobuf bodies are decoded by an independent OTLP implementation:
tests/js/otlp_decode.mjs runs the protobufjs code generated from the official OTLP protos that
@opentelemetry/otlp-transformer ships (pinned to 0.215.0 in tests/js/package.json: later
releases replaced it with a serializer that cannot decode requests), and the spans are
compared one by one with the JSON export of a twin gatehouse serving the same requests.
HTTP/2 upstreams (`http2: true`) are python-h2 h2c backends this test runs, recording the
request headers of every stream."""

import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from helpers import closed_port, free_port, metric_value, poll, run_cli, session
from origin import Origin

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def otlp_decoder():
    """The directory of otlp_decode.mjs and its node_modules (tests/js, installed into
    build/js with the other test clients); skips when npm cannot install them."""
    from test_flags import js_clients
    try:
        d = js_clients()
    except AssertionError as e:  # no npm registry here
        pytest.skip("the npm test clients cannot be installed: %s" % str(e)[:200])
    assert os.path.isdir(os.path.join(d, "node_modules", "@opentelemetry", "otlp-transformer")), \
        "tests/js/package.json lacks @opentelemetry/otlp-transformer"
    return d


def decode_protobuf(body, js_dir):
    """An ExportTraceServiceRequest (protobuf bytes) as OTLP JSON, by otlp_decode.mjs."""
    r = subprocess.run(["node", "otlp_decode.mjs"], cwd=js_dir, input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, "otlp_decode.mjs could not decode a %d-byte body: %s" % (len(body), r.stderr[-2000:])
    return json.loads(r.stdout)


class Receiver:
    """An OTLP/HTTP receiver: POST /v1/traces bodies, kept with their arrival time. JSON
    bodies are parsed; protobuf ones (application/x-protobuf) are decoded by otlp_decode.mjs
    (js_dir). With tls=(cert, key) it speaks HTTPS and records the SNI names it is sent."""

    def __init__(self, tls=None, js_dir=None):
        rec = self
        self.posts = []  # (monotonic time, path, content-type, parsed body)
        self.raw = []  # the bodies as received
        self.sni = []
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ctype = self.headers.get("Content-Type") or ""
                out = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                if ctype.startswith("application/x-protobuf"):
                    doc = decode_protobuf(body, js_dir) if js_dir else None
                else:
                    try:
                        doc = json.loads(body)
                    except ValueError:
                        doc = None
                with rec.lock:
                    rec.raw.append(body)
                    rec.posts.append((time.monotonic(), self.path, ctype, doc))

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.srv.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            ctx.sni_callback = lambda sock, name, c: self.sni.append(name) and None
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
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
                 'tracing: {endpoint: "grpc://collector:4317", sample_ratio: 2, batch: 0, bogus: 1,'
                 ' protocol: grpc, ca_file: /nonexistent/ca.pem}\n')
    r = run_cli("validate", "-c", str(p))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "tracing.endpoint: only http:// and https:// collector endpoints are supported" in out, out
    assert "tracing.sample_ratio" in out and "tracing.batch" in out
    assert 'tracing.bogus: unknown key "bogus"' in out
    assert "tracing.protocol: expected http/json or http/protobuf" in out, out
    assert "tracing.ca_file: a CA file is for an https:// endpoint" in out, out
    p.write_text('listeners: [{name: http, listen: "127.0.0.1:1"}]\n'
                 'tracing: {endpoint: "https://collector:4318", ca_file: /nonexistent/ca.pem}\n')
    r = run_cli("validate", "-c", str(p))
    assert r.returncode != 0 and "tracing.ca_file: cannot read" in r.stdout + r.stderr, r.stdout + r.stderr
    p.write_text('listeners: [{name: http, listen: "127.0.0.1:1"}]\n'
                 'tracing: {endpoint: "https://collector:4318/otlp", protocol: http/protobuf}\n')
    r = run_cli("validate", "-c", str(p))
    assert r.returncode == 0, r.stdout + r.stderr


# ---- HTTP/2 upstreams, protobuf export, https collectors -----------------------------------


class H2Backend:
    """An h2c (prior knowledge) backend on python-h2: records the header fields of every
    request (lowercase name -> list of values) and answers each with self.status."""

    def __init__(self, status=200):
        self.status = status
        self.requests = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        heads = {}
        try:
            c.sendall(conn.data_to_send())
            while True:
                data = c.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        hd = {}
                        for n, v in ev.headers:
                            n = n.decode() if isinstance(n, bytes) else n
                            v = v.decode() if isinstance(v, bytes) else v
                            hd.setdefault(n.lower(), []).append(v)
                        heads[ev.stream_id] = hd
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in heads:
                        self._answer(conn, ev.stream_id, heads.pop(ev.stream_id))
                c.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            c.close()

    def _answer(self, conn, sid, hd):
        with self.lock:
            self.requests.append(hd)
        body = b"h2 backend %d\n" % self.port
        conn.send_headers(sid, [(":status", str(self.status)), ("content-length", str(len(body)))])
        conn.send_data(sid, body, end_stream=True)

    def seen(self, path, timeout=5):
        """The header fields of the last request for path."""
        def find():
            with self.lock:
                got = [h for h in self.requests if h.get(":path") == [path]]
            return got[-1] if got else None
        h = poll(find, timeout=timeout)
        assert h, "h2 backend %d did not see %s" % (self.port, path)
        return h

    def stop(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


CONFIG_X = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 2s
access_log: {enabled: false}
admin: {listen: "127.0.0.1:{admin_port}"}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
tracing: {tracing}
upstreams:
  app: {backends: ["127.0.0.1:{o1}"]}
  pair:
    backends: ["127.0.0.1:{o2}", "127.0.0.1:{o3}"]
    retries: {on: [503], backoff: {base: 0ms, max: 0ms}}
    outlier_detection: {consecutive_failures: 0}
  h2one: {backends: ["127.0.0.1:{h1}"], http2: true}
  h2pair:
    backends: ["127.0.0.1:{h2}", "127.0.0.1:{h3}"]
    http2: true
    retries: {on: [503], backoff: {base: 0ms, max: 0ms}}
    outlier_detection: {consecutive_failures: 0}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - {name: cached, match: {path: {prefix: /cached/}}, upstream: app, cache: {enabled: true, default_ttl: 1m}}
          - {name: retry, match: {path: {prefix: /retry/}}, upstream: pair}
          - {name: denied, match: {path: {prefix: /denied/}}, upstream: app, protection: {deny: [127.0.0.1]}}
          - {name: h2up, match: {path: {prefix: /h2up/}}, upstream: h2one}
          - {name: h2retry, match: {path: {prefix: /h2retry/}}, upstream: h2pair}
          - {name: main, upstream: app}
"""


def tracing_conf(endpoint, protocol="http/json", ca_file=None, batch=64):
    t = '{endpoint: "%s", protocol: %s, sample_ratio: 1.0, service_name: edge-test, batch: %d' % (
        endpoint, protocol, batch)
    if ca_file:
        t += ', ca_file: "%s"' % ca_file
    return t + "}"


@pytest.fixture(scope="module")
def twins(gatehouse_module):
    """Two gatehouses before the same origins and h2 backends, exporting the same traffic:
    one as OTLP JSON, one as OTLP protobuf (decoded by otlp_decode.mjs)."""
    js = otlp_decoder()
    origins = [Origin("x%d" % i) for i in range(3)]
    origins[1].force_status = 503
    h2s = [H2Backend(200), H2Backend(503), H2Backend(200)]
    rj, rp = Receiver(), Receiver(js_dir=js)
    ports = dict(o1=origins[0].port, o2=origins[1].port, o3=origins[2].port, h1=h2s[0].port, h2=h2s[1].port,
                 h3=h2s[2].port)
    gj = gatehouse_module(CONFIG_X, tracing=tracing_conf("http://127.0.0.1:%d" % rj.port), **ports)
    gp = gatehouse_module(CONFIG_X, tracing=tracing_conf("http://127.0.0.1:%d/" % rp.port, "http/protobuf"),
                          **ports)
    yield gj, rj, gp, rp, origins, h2s
    gj.stop()
    gp.stop()
    for x in origins + h2s + [rj, rp]:
        x.stop()


def caller_tp(i):
    """A caller's traceparent, one trace per request number."""
    return "%032x" % (0x5eed0000000000000000000000000000 + i), "%016x" % (0xca11e40000000000 + i)


# the same requests to both twins: path, expected status (with the caller's traceparent)
TWIN_TRAFFIC = [("/plain/a?x=1", 200), ("/cached/pb", 200), ("/cached/pb", 200), ("/denied/pb", 403),
                ("/status?code=500", 500), ("/retry/pb-0", 200), ("/retry/pb-1", 200), ("/h2up/pb", 200),
                ("/h2retry/pb-0", 200), ("/h2retry/pb-1", 200)]


def send_twin_traffic(gh, tag):
    for i, (path, status) in enumerate(TWIN_TRAFFIC):
        tid, pid = caller_tp(i)
        r = get(gh, path, {"traceparent": "00-%s-%s-01" % (tid, pid), "tracestate": "gh=t%d" % i,
                           "X-Request-Id": "tw-%d" % i})
        assert r.status_code == status, (tag, path, r.status_code)


def comparable(sp):
    """What two gatehouses serving the same request agree on: all but span ids and times (a
    try's parent is its server span, checked apart)."""
    return {"traceId": sp["traceId"], "parentSpanId": sp.get("parentSpanId", "") if sp["kind"] == 2 else "-",
            "name": sp["name"],
            "kind": sp["kind"], "flags": sp.get("flags"), "traceState": sp.get("traceState", ""),
            "attributes": sp.get("attributes", []),
            "events": [(e["name"], e.get("attributes", [])) for e in sp.get("events", [])],
            "status": (sp.get("status", {}).get("code", 0), sp.get("status", {}).get("message", ""))}


def test_protobuf_export_matches_json_span_by_span(twins):
    gj, rj, gp, rp, origins, h2s = twins
    t0 = time.time()
    send_twin_traffic(gj, "json")
    send_twin_traffic(gp, "protobuf")
    t1 = time.time()
    n = len(TWIN_TRAFFIC)
    for i in range(n):
        sj, oj = rj.by_request_id("tw-%d" % i)
        sp, op = rp.by_request_id("tw-%d" % i)
        tid, pid = caller_tp(i)
        for server, others in ((sj, oj), (sp, op)):
            # ids: the caller's trace and parent; every try a child of the server span
            assert server["traceId"] == tid and server["parentSpanId"] == pid
            assert server["traceState"] == "gh=t%d" % i
            assert all(o["parentSpanId"] == server["spanId"] and o["traceId"] == tid for o in others)
            assert len({o["spanId"] for o in others} | {server["spanId"]}) == 1 + len(others)
            # times: Unix ns within the test's run, each try inside its request
            s0, s1 = int(server["startTimeUnixNano"]), int(server["endTimeUnixNano"])
            assert t0 - 1 <= s0 / 1e9 <= s1 / 1e9 <= t1 + 1
            for o in others:
                assert s0 <= int(o["startTimeUnixNano"]) <= int(o["endTimeUnixNano"]) <= s1
        # span by span: the JSON twin's spans and the protobuf twin's say the same
        assert comparable(sp) == comparable(sj), (TWIN_TRAFFIC[i], comparable(sp), comparable(sj))
        key = lambda s: int(s["_attrs"]["gatehouse.try"])
        cp, cj = [comparable(s) for s in sorted(op, key=key)], [comparable(s) for s in sorted(oj, key=key)]
        assert cp == cj, "%s\nprotobuf: %s\njson:     %s" % (TWIN_TRAFFIC[i], json.dumps(cp), json.dumps(cj))
    # and they carry what was asked: a hit with no try, a protection event, a 5xx error
    hit, others = rp.by_request_id("tw-2")
    assert hit["_attrs"]["gatehouse.cache.result"] == "hit" and others == []
    assert [e["name"] for e in hit["events"]] == ["cache.lookup"]
    denied, _ = rp.by_request_id("tw-3")
    assert [e["name"] for e in denied["events"]] == ["protection.decision"]
    err, _ = rp.by_request_id("tw-4")
    assert err["status"]["code"] == 2 and int(err["_attrs"]["http.response.status_code"]) == 500
    assert int(hit["flags"]) == 0x301  # sampled, remote parent (OTLP SpanFlags)
    with rp.lock:
        posts = list(rp.posts)
    assert posts and all(p[1] == "/v1/traces" and p[2] == "application/x-protobuf" for p in posts)
    assert all(p[3] is not None for p in posts)
    m = gp.metrics()
    assert metric_value(m, "gatehouse_trace_spans_exported_total") >= 2 * n - 1
    assert metric_value(m, "gatehouse_trace_exports_total", result="ok") >= 1


def test_h2_upstream_gets_the_try_span_as_parent(twins):
    gj, rj, gp, rp, origins, h2s = twins
    for gh, rcv, tag in ((gj, rj, "j"), (gp, rp, "p")):
        tid, pid = "0af7651916cd43dd8448eb211c8031%s0" % tag.replace("j", "a").replace("p", "b"), "b7ad6b7169203331"
        path = "/h2up/tp-%s" % tag
        r = get(gh, path, {"traceparent": "00-%s-%s-01" % (tid, pid), "tracestate": "congo=t61rcWkgMzE",
                           "X-Request-Id": "h2-%s" % tag})
        assert r.status_code == 200 and r.text == "h2 backend %d\n" % h2s[0].port
        hd = h2s[0].seen(path)
        assert len(hd["traceparent"]) == 1, hd
        m = TP.match(hd["traceparent"][0])
        assert m and m.group(1) == tid and m.group(3) == "01", hd
        assert hd["tracestate"] == ["congo=t61rcWkgMzE"]  # the caller's, passed on
        server, others = rcv.by_request_id("h2-%s" % tag)
        assert server["traceId"] == tid and server["parentSpanId"] == pid
        tries = [s for s in others if s["kind"] == 3]
        assert len(tries) == 1 and tries[0]["spanId"] == m.group(2) != pid  # the backend's parent: the try span
        a = tries[0]["_attrs"]
        assert a["gatehouse.upstream"] == "h2one" and int(a["server.port"]) == h2s[0].port
        assert a["gatehouse.try.outcome"] == "ok" and int(a["http.response.status_code"]) == 200
    # a new trace (no caller traceparent) is propagated to the h2 backend too
    r = get(gp, "/h2up/new", {"X-Request-Id": "h2-new"})
    assert r.status_code == 200
    m = TP.match(h2s[0].seen("/h2up/new")["traceparent"][0])
    server, others = rp.by_request_id("h2-new")
    assert m.group(1) == server["traceId"] and [s["spanId"] for s in others] == [m.group(2)]
    assert "tracestate" not in h2s[0].seen("/h2up/new")


def test_h2_upstream_retry_gets_another_parent(twins):
    gj, rj, gp, rp, origins, h2s = twins
    found = 0
    for i in range(2):  # round robin over h2s[1] (always 503, retried) and h2s[2]: one starts on the 503
        path = "/h2retry/r-%d" % i
        assert get(gp, path, {"X-Request-Id": "h2r-%d" % i}).status_code == 200
        server, others = rp.by_request_id("h2r-%d" % i)
        tries = sorted([s for s in others if s["kind"] == 3], key=lambda s: int(s["_attrs"]["gatehouse.try"]))
        if len(tries) != 2:
            continue
        found += 1
        a0, a1 = tries[0]["_attrs"], tries[1]["_attrs"]
        assert a0["gatehouse.try.outcome"] == "retried_status" and int(a0["http.response.status_code"]) == 503
        assert int(a0["server.port"]) == h2s[1].port and int(a1["server.port"]) == h2s[2].port
        assert a1["gatehouse.try.outcome"] == "ok" and tries[0]["status"]["code"] == 2
        p1 = TP.match(h2s[1].seen(path)["traceparent"][0])
        p2 = TP.match(h2s[2].seen(path)["traceparent"][0])
        assert p1.group(1) == p2.group(1) == server["traceId"]
        assert (p1.group(2), p2.group(2)) == (tries[0]["spanId"], tries[1]["spanId"])
        assert p1.group(2) != p2.group(2)
    assert found >= 1


OPENSSL = "/usr/bin/openssl"


def self_signed(d, name):
    """A self-signed certificate for localhost and 127.0.0.1 (the openssl CLI): (cert, key)."""
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=otlp %s" % name,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_collector_with_ca_file(gatehouse, tmp_path):
    cert, key = self_signed(str(tmp_path), "collector")
    rcv = Receiver(tls=(cert, key))
    o = Origin("tls0")
    try:
        gh = gatehouse(CONFIG_X, tracing=tracing_conf("https://localhost:%d" % rcv.port, ca_file=cert, batch=4),
                       o1=o.port, o2=closed_port(), o3=closed_port(), h1=closed_port(), h2=closed_port(),
                       h3=closed_port())
        for i in range(3):
            assert get(gh, "/tls/%d" % i, {"X-Request-Id": "tls-%d" % i}).status_code == 200
        for i in range(3):
            server, others = rcv.by_request_id("tls-%d" % i)
            _, parent, _, _ = seen_traceparent(o, "/tls/%d" % i)
            assert [s["spanId"] for s in others] == [parent]
        assert "localhost" in rcv.sni  # SNI names the collector
        m = gh.metrics()
        assert metric_value(m, "gatehouse_trace_exports_total", result="ok") >= 1
        assert metric_value(m, "gatehouse_trace_exports_total", result="error") == 0
        assert metric_value(m, "gatehouse_trace_spans_exported_total") >= 6
    finally:
        o.stop()
        rcv.stop()


def test_https_collector_unknown_ca_is_an_export_error(gatehouse, tmp_path):
    cert, key = self_signed(str(tmp_path), "collector")
    other, _ = self_signed(str(tmp_path), "other")  # a CA that did not sign the collector's certificate
    rcv = Receiver(tls=(cert, key))
    o = Origin("tls1")
    try:
        for ca in (None, other):
            gh = gatehouse(CONFIG_X, tracing=tracing_conf("https://localhost:%d" % rcv.port, ca_file=ca, batch=2),
                           o1=o.port, o2=closed_port(), o3=closed_port(), h1=closed_port(), h2=closed_port(),
                           h3=closed_port())
            t0 = time.monotonic()
            with session() as s:
                for i in range(10):
                    r = s.get(gh.url + "/untrusted/%d" % i, headers={"Host": "example.com"}, timeout=5)
                    assert r.status_code == 200
            assert time.monotonic() - t0 < 5  # the exporter's handshakes never hold requests up
            ok = poll(lambda: metric_value(gh.metrics(), "gatehouse_trace_exports_total", result="error") >= 1,
                      timeout=8)
            assert ok, gh.stderr_text()
            m = gh.metrics()
            assert metric_value(m, "gatehouse_trace_spans_exported_total") == 0
            assert metric_value(m, "gatehouse_trace_spans_dropped_total", reason="export_failed") >= 2
            assert get(gh, "/untrusted/after").status_code == 200
            gh.stop()
            warn = [ln for ln in gh.stderr_text().splitlines() if "tracing: export to https://localhost" in ln]
            assert len(warn) == 1 and "TLS handshake" in warn[0] and "certificate" in warn[0], warn
        with rcv.lock:
            assert rcv.posts == []  # nothing was sent to an unverified collector
    finally:
        o.stop()
        rcv.stop()
