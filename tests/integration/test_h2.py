"""HTTP/2 on the client side: ALPN h2 on TLS listeners, prior-knowledge h2c listeners, requests
proxied to the HTTP/1.1 origin (routing by :authority, forwarding headers, bodies both ways under
flow control and backpressure, trailers, large headers, no hop-by-hop headers), RFC 9113 stream
errors, drain on SIGTERM, reloads that leave connections alone, and the protections against
HTTP/2 attacks (rapid reset, CONTINUATION flood, HPACK bomb, SETTINGS/PING/PRIORITY/WINDOW_UPDATE
floods, zero-window stall, too many concurrent streams).

Real clients: curl (--http2, --http2-prior-knowledge), h2load, python-h2 (h2client.py) and raw
frames (h2attacks.py).

Each attack test first probes its limit from both sides on single connections (half the limit is
tolerated and the connection still serves, twice the limit is cut), then floods: the attack runs in
a child process (h2attacks.py as a script, on fresh connections for about a second) while a
legitimate python-h2 client (LatencyProbe) requests /echo in a loop on its own connection. gatehouse
runs one worker there, so attacker and probe share one event loop. The probe's p99 is measured for
about a second first (baseline), then during the attack, and must stay
    p99 during <= max(2 x baseline p99, baseline p99 + 20 ms).
The 20 ms floor (60 ms for the ASan+UBSan build of `make asan`) is there because the box is shared and has two CPUs: a baseline p99 of 1-3 ms
doubles on scheduling noise alone, and single stalls of 20-70 ms show up now and then with no
attack at all. The attacker runs under `nice -n 10` (in real life it does not share our CPUs; it
still gets every idle cycle), and the attacks' origin (upstream `sink`, site attack.test) is a
Python origin in a child process, so that requests the attacks cause upstream do not take the
test process's GIL from the probe.
"""

import hashlib
import json
import os
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

import h2attacks
from h2attacks import (CANCEL, CONTINUATION, END_HEADERS, END_STREAM, ENHANCE_YOUR_CALM, HEADERS, PROTOCOL_ERROR,
                       REFUSED_STREAM, RST_STREAM, SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS,
                       RawH2, error_name, frame, headers_frame, request_block)
from h2client import H2Client, LatencyProbe, percentile, tls_context
from helpers import HEADER, free_port, metric_value, poll, port_accepts
from origin import header_values, pattern_sha256

HERE = os.path.dirname(os.path.abspath(__file__))
OPENSSL = "/usr/bin/openssl"
NO_ERROR = 0

LISTENERS = 'listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]'


# ---- fixtures and configuration ------------------------------------------------------

def _run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and one server certificate for h2.test, attack.test, example.com and 127.0.0.1."""
    d = str(tmp_path_factory.mktemp("h2pki"))
    p = lambda n: os.path.join(d, n)  # noqa: E731
    _run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=gatehouse h2 test CA")
    _run(OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p("srv.key"))
    _run(OPENSSL, "req", "-new", "-key", p("srv.key"), "-subj", "/CN=h2.test", "-out", p("srv.csr"))
    with open(p("srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:h2.test,DNS:attack.test,DNS:example.com,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\n")
    _run(OPENSSL, "x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
         "-CAcreateserial", "-days", "2", "-extfile", p("srv.ext"), "-out", p("srv.pem"))
    return {"ca": p("ca.pem"), "cert": p("srv.pem"), "key": p("srv.key")}


@pytest.fixture(scope="module")
def sink():
    """A test origin in a child process (the `sink` upstream, site attack.test); yields its port.
    It exits when its stdin closes; killed by pid if it does not."""
    code = "import sys, origin; o = origin.Origin('sink'); print(o.port, flush=True); sys.stdin.read(); o.stop()"
    p = subprocess.Popen([sys.executable, "-c", code], cwd=HERE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 10)
        assert ready, "the sink origin did not start within 10 s"
        port = int(p.stdout.readline())
        yield port
    finally:
        p.stdin.close()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


@pytest.fixture
def stalled_backend():
    """A backend that accepts connections and never reads from them (a tiny receive buffer), for
    request-body backpressure; yields its port."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.1)
    held = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                s, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            held.append(s)
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield ls.getsockname()[1]
    stop.set()
    t.join(timeout=2)
    for s in held + [ls]:
        s.close()


def config(pki, http2=None, extra=""):
    listeners = ('listeners:\n'
                 '  - {name: http, listen: "127.0.0.1:{proxy_port}"}\n'
                 '  - name: https\n'
                 '    listen: "127.0.0.1:{tls_port}"\n'
                 '    tls: {cert: "%s", key: "%s"}\n'
                 '  - name: h2c\n'
                 '    listen: "127.0.0.1:{h2c_port}"\n'
                 '    h2c: true\n' % (pki["cert"], pki["key"]))
    text = HEADER.replace(LISTENERS, listeners)
    if http2:
        text += "http2: {%s}\n" % ", ".join("%s: %s" % kv for kv in http2.items())
    return text + extra + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  sink: {backends: ["127.0.0.1:{sink_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: [attack.test]
        routes: [{name: sink, upstream: sink}]
      - hosts: ["*"]
        routes: [{name: app, upstream: app}]
"""


def start(gatehouse, origin, pki, sink_port, http2=None, extra="", **values):
    """gatehouse with the three listeners; `origin` behind every site but attack.test, which goes to
    the backend at sink_port."""
    tls_port, h2c_port = free_port(), free_port()
    gh = gatehouse(config(pki, http2, extra), tls_port=tls_port, h2c_port=h2c_port, origin_port=origin.port,
                   sink_port=sink_port, **values)
    gh.tls_port, gh.h2c_port, gh.pki = tls_port, h2c_port, pki
    assert poll(lambda: port_accepts(tls_port) and port_accepts(h2c_port), timeout=5), \
        "the https and h2c listeners do not accept; stderr:\n" + gh.stderr_text()
    return gh


def h2c(gh, **kw):
    kw.setdefault("timeout", 10)
    return H2Client(gh.h2c_port, **kw)


def h2tls(gh, **kw):
    kw.setdefault("timeout", 10)
    kw.setdefault("authority", "h2.test")
    return H2Client(gh.tls_port, tls=tls_context(gh.pki["ca"]), server_name="h2.test", **kw)


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args), capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


def headers_of(doc):
    return {k.lower(): v for k, v in doc["headers"]}


def assert_serving(gh):
    """gatehouse still answers over h2c, h2 over TLS and HTTP/1.1."""
    assert gh.alive(), gh.stderr_text()
    with h2c(gh) as c:
        st = c.get("/echo/after")
        assert st.status == 200 and st.json()["path"] == "/echo/after", st
    with h2tls(gh) as c:
        assert c.get("/echo/after-tls").status == 200
    assert gh.get("/echo/after-h1").status_code == 200


# ---- 1. curl: h2 over TLS, h2c, HTTP/1.1 on both ---------------------------------------

def test_curl_h2_over_tls_and_prior_knowledge_and_http1_on_both(gatehouse, origin, pki, sink, tmp_path):
    gh = start(gatehouse, origin, pki, sink)
    tp, cp = gh.tls_port, gh.h2c_port
    body = str(tmp_path / "body")
    resolve = ["--resolve", "h2.test:%d:127.0.0.1" % tp, "--resolve", "h2.test:%d:127.0.0.1" % cp]
    fmt = ["-o", body, "-w", "%{http_code} %{http_version}"]

    def doc():
        with open(body) as f:
            return json.load(f)

    # h2 over TLS, negotiated by ALPN
    out = curl("--http2", "--cacert", pki["ca"], *resolve, *fmt, "https://h2.test:%d/echo?via=h2-tls" % tp)
    assert out == "200 2", out
    d = doc()
    h = headers_of(d)
    assert d["version"] == "HTTP/1.1" and d["path"] == "/echo", d   # proxied to the HTTP/1.1 origin
    assert h["host"] == "h2.test:%d" % tp, h                       # :authority becomes Host
    assert h["x-forwarded-proto"] == "https" and "proto=https" in h["forwarded"], h
    # cleartext HTTP/2 with prior knowledge
    out = curl("--http2-prior-knowledge", *resolve, *fmt, "http://h2.test:%d/echo?via=h2c" % cp)
    assert out == "200 2", out
    h = headers_of(doc())
    assert h["host"] == "h2.test:%d" % cp and h["x-forwarded-proto"] == "http", h
    # HTTP/1.1 still works on both listeners
    out = curl("--http1.1", "--cacert", pki["ca"], *resolve, *fmt, "https://h2.test:%d/echo?via=h1-tls" % tp)
    assert out == "200 1.1", out
    out = curl("--http1.1", *resolve, *fmt, "http://h2.test:%d/echo?via=h1-h2c" % cp)
    assert out == "200 1.1", out
    # no Upgrade: h2c: a client asking for it is served over HTTP/1.1
    out = curl("--http2", *resolve, *fmt, "http://h2.test:%d/echo?via=upgrade" % cp)
    assert out == "200 1.1", out
    # and the plain HTTP/1.1 listener is untouched
    assert gh.get("/echo?via=h1-plain").status_code == 200
    # ALPN offers h2 and http/1.1, preferring h2
    for offer, want in ((["http/1.1", "h2"], "h2"), (["http/1.1"], "http/1.1"), (["h2"], "h2")):
        c = ssl.create_default_context(cafile=pki["ca"])
        c.set_alpn_protocols(offer)
        with c.wrap_socket(socket.create_connection(("127.0.0.1", tp), timeout=5), server_hostname="h2.test") as t:
            assert t.selected_alpn_protocol() == want, (offer, t.selected_alpn_protocol())
    # the access log tells the protocols apart
    want = {"via=h2-tls": "HTTP/2", "via=h2c": "HTTP/2", "via=h1-tls": "HTTP/1.1", "via=h1-h2c": "HTTP/1.1",
            "via=upgrade": "HTTP/1.1", "via=h1-plain": "HTTP/1.1"}

    def logged():
        return {l.get("query"): l for l in gh.log_lines() if l.get("query") in want}
    assert poll(lambda: len(logged()) == len(want), timeout=5), gh.log_lines()[-8:]
    for q, rec in logged().items():
        assert rec.get("proto") == want[q], (q, rec)
        assert rec["status"] == 200 and rec["path"] == "/echo", rec
    assert metric_value(gh.metrics(), "gatehouse_h2_streams_total") >= 2


# ---- 2. h2load -------------------------------------------------------------------------

def h2load(url):
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "50", "-N", "10", url],
                       capture_output=True, text=True, timeout=90)
    out = p.stdout
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    assert p.returncode == 0 and req and codes and proto, out + p.stderr
    return SimpleNamespace(total=int(req.group(1)), done=int(req.group(3)), succeeded=int(req.group(4)),
                           failed=int(req.group(5)), errored=int(req.group(6)), timeout=int(req.group(7)),
                           ok2xx=int(codes.group(1)), proto=proto.group(1), out=out)


def test_h2load_h2c_and_tls(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    for url, proto in (("http://127.0.0.1:%d/echo" % gh.h2c_port, "h2c"),
                       ("https://127.0.0.1:%d/echo" % gh.tls_port, "h2")):
        r = h2load(url)
        assert r.proto == proto, r.out
        assert (r.total, r.done, r.succeeded, r.ok2xx) == (2000, 2000, 2000, 2000), r.out
        assert (r.failed, r.errored, r.timeout) == (0, 0, 0), r.out
    assert metric_value(gh.metrics(), "gatehouse_h2_streams_total") >= 4000


# ---- 3. python-h2: multiplexing, bodies, trailers, headers, stream errors ----------------

def test_h2_100_concurrent_streams_on_one_connection(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    with h2tls(gh) as c:
        assert c.alpn == "h2"
        c.ping()  # the server's SETTINGS are in: the client now keeps within its stream limit
        assert c.remote_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == 100, c.remote_settings  # the default
        t0 = time.monotonic()
        sids = [c.request("GET", "/slow?before_ms=200&i=%d" % i) for i in range(100)]
        sts = c.wait_all(sids, timeout=20)
        elapsed = time.monotonic() - t0
    for i, st in enumerate(sts):
        assert st.status == 200 and st.ended, st
        assert st.json()["query"] == "before_ms=200&i=%d" % i  # each answer on its own stream
    # one after the other this would take 100 x 0.2 s = 20 s
    assert elapsed < 5, "100 concurrent 200 ms streams took %.1f s" % elapsed
    assert len([p for p in origin.paths_seen() if p == "/slow"]) == 100


def test_h2_large_bodies_both_ways(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    up = os.urandom(5 << 20)
    n = 8 << 20
    with h2tls(gh, timeout=30) as c:
        # 5 MiB is 80 times the initial 64 KiB window: it only gets through if gatehouse keeps
        # opening the window as the origin reads
        st = c.post("/upload", up)
        assert st.status == 200, st
        assert st.json()["len"] == len(up) and st.json()["sha256"] == hashlib.sha256(up).hexdigest()
        # a body without content-length (streamed as it comes)
        st = c.post("/upload", up[:1 << 20], content_length=False)
        assert st.status == 200, st
        assert st.json()["len"] == 1 << 20 and st.json()["sha256"] == hashlib.sha256(up[:1 << 20]).hexdigest()
        # 8 MiB down, the client handing back window as it reads
        st = c.get("/download?n=%d" % n)
        assert st.status == 200 and len(st.body) == n, st
        assert st.sha256() == pattern_sha256(n)
        assert st.header("content-length") == str(n)
    with h2c(gh, timeout=30) as c:
        st = c.get("/download?n=%d&chunked=1" % n)  # chunked upstream, DATA frames downstream
        assert st.status == 200 and len(st.body) == n and st.sha256() == pattern_sha256(n), st
        assert "transfer-encoding" not in st.header_names()


def test_h2_flow_control_backpressure_both_ways(gatehouse, origin, pki, stalled_backend):
    # the `sink` upstream (site attack.test) is a backend that never reads
    gh = start(gatehouse, origin, pki, stalled_backend, http2={"initial_window_size": 262144})
    body = b"u" * (16 << 20)
    with h2c(gh, authority="attack.test", timeout=1.0) as c:
        c.ping()
        assert c.remote_settings.get(SETTINGS_INITIAL_WINDOW_SIZE) == 262144, c.remote_settings
        sid = c.request("POST", "/upload", headers=[("content-length", str(len(body)))], end_stream=False)
        sent = c.send_body(sid, body, until_blocked=True)  # returns once the window stayed shut 1 s
    # gatehouse opens the window only as the upstream takes the body: what it accepted is its window
    # plus what the kernel buffers between it and the stalled backend (a few MiB), not all 16 MiB
    assert 262144 <= sent < 8 << 20, sent
    # the other way: a client that never opens its window gets one window of DATA, and gatehouse
    # stops reading the origin: when the client goes away the origin has sent a fraction of 64 MiB
    n = 64 << 20
    c = RawH2(gh.h2c_port)
    try:
        assert c.wait_handshake()
        c.send(headers_frame(1, request_block("GET", "/download?n=%d" % n, "example.com")))
        c.wait(lambda: False, 1.0)
        assert c.status(1) == 200 and c.data.get(1) == 65535, c.result()  # exactly our window
    finally:
        c.close()
    assert origin.wait_for(lambda s: s.disconnects, timeout=5), "the origin never noticed the client leave"
    path, origin_sent = origin.disconnects[0]
    assert path == "/download" and origin_sent <= 16 << 20, origin.disconnects


def test_h2_trailers_and_no_hop_by_hop_headers(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    with h2c(gh, validate_inbound=False) as c:
        st = c.get("/chunked?n=3&size=10&trailer=x-checksum:abc")
        assert st.status == 200 and bytes(st.body) == b"0" * 10 + b"1" * 10 + b"2" * 10, st
        # trailers arrive as a trailing HEADERS frame (with END_STREAM), not in the head
        assert st.trailers == [("x-checksum", "abc")], st
        assert "x-checksum" not in st.header_names()
        assert "transfer-encoding" not in st.header_names()
        # hop-by-hop headers of the origin's response never reach an h2 client
        st = c.get("/hopresp")
        assert st.status == 200 and bytes(st.body) == b"hop\n", st
        names = st.header_names()
        for hop in ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "x-hop-resp"):
            assert hop not in names, (hop, st.headers)
        assert st.header("x-keep") == "yes"
    # the same over TLS with a validating client (it would refuse connection-specific headers)
    with h2tls(gh) as c:
        st = c.get("/chunked?n=2&size=5&trailer=x-checksum:def")
        assert st.trailers == [("x-checksum", "def")] and bytes(st.body) == b"0000011111", st
        assert c.get("/hopresp").status == 200


def test_h2_large_headers(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    big = "v" * 16384
    # without Huffman coding the block is over 16 KiB: HEADERS + CONTINUATION
    with h2c(gh, huffman=False) as c:
        st = c.get("/echo/bighdr", headers=[("x-big", big)])
        assert st.status == 200, st
        assert header_values(st.json(), "x-big") == [big]
        # a large response header comes back whole
        st = c.get("/bighdr?n=16000")
        assert st.status == 200 and st.header("x-big") == "h" * 16000, st.headers[:3]
        # over the header limits (32k): the stream is refused, the connection lives on
        st = c.get("/echo/too-big", headers=[("x-big", "w" * 40000)])
        assert st.reset is not None or st.status == 431, st
        assert c.get("/echo/next").status == 200
    assert "/echo/too-big" not in origin.paths_seen()
    # a header block legitimately split over a few CONTINUATION frames (written by hand)
    c = RawH2(gh.h2c_port)
    try:
        assert c.wait_handshake()
        block = request_block("GET", "/echo/cont", "example.com",
                              extra=[("x-part-%d" % i, "p" * 100) for i in range(6)])
        c.send(continuation_frames(1, block, 3))
        assert c.wait(lambda: 1 in c.ended or 1 in c.rst, 5), c.result()
        assert c.status(1) == 200 and not c.goaways, c.result()
    finally:
        c.close()
    doc = [h for h in origin.heads if h["path"] == "/echo/cont"][0]
    assert all(header_values(doc, "x-part-%d" % i) == ["p" * 100] for i in range(6)), doc["headers"]


def test_h2_request_head_limits_apply(gatehouse, origin, pki, sink):
    # limits.max_header_size applies to HTTP/2 requests too, under http2.max_header_list_size
    gh = start(gatehouse, origin, pki, sink, extra="limits: {max_header_size: 8k}\n")
    with h2c(gh) as c:
        assert c.get("/echo/fits", headers=[("x-h", "f" * 6000)]).status == 200
        st = c.get("/echo/over", headers=[("x-h", "o" * 12000)])
        assert st.reset is not None or st.status == 431, st
        assert not c.goaways and c.get("/echo/then").status == 200
    assert "/echo/over" not in origin.paths_seen()


def test_h2_connection_specific_request_headers_are_stream_errors(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    bad = [("connection", "keep-alive"), ("keep-alive", "timeout=5"), ("proxy-connection", "keep-alive"),
           ("transfer-encoding", "chunked"), ("upgrade", "websocket"), ("te", "gzip")]
    with h2c(gh, validate=False) as c:
        for i, (name, value) in enumerate(bad):
            st = c.get("/echo/bad-%d" % i, headers=[(name, value)])
            assert st.reset == PROTOCOL_ERROR, (name, st)
            # a stream error: the connection goes on
            assert not c.goaways and not c.closed, (name, c.goaways)
            assert c.get("/echo/good-%d" % i).status == 200
        # "te: trailers" is the one allowed TE
        st = c.get("/echo/te", headers=[("te", "trailers")])
        assert st.status == 200, st
    assert not [p for p in origin.paths_seen() if p.startswith("/echo/bad-")]
    # routing is by :authority, like Host
    with h2c(gh, authority="attack.test") as c:
        assert bytes(c.get("/id").body) == b"sink"
    with h2c(gh, authority="h2.test") as c:
        assert bytes(c.get("/id").body) == b"o1"


# ---- 4. drain ----------------------------------------------------------------------------

def test_h2_drain_on_sigterm(gatehouse, origin, pki, sink):
    gh = start(gatehouse, origin, pki, sink)
    busy = h2tls(gh, timeout=15)
    idle = h2c(gh, timeout=15)
    try:
        assert busy.get("/echo/first").status == 200  # stream 1
        assert idle.get("/echo/idle").status == 200
        sid = busy.request("GET", "/slow?before_ms=1500")  # stream 3, in flight
        assert sid == 3
        assert origin.wait_for(lambda s: "/slow" in s.paths_seen(), timeout=5)
        t_term = time.monotonic()
        gh.signal(signal.SIGTERM)
        # the idle connection is told and closed at once, long before the slow stream is done
        assert idle.wait_goaway(3) is not None and idle.goaways[-1][0] == NO_ERROR, idle.goaways
        assert idle.wait_closed(3)
        assert idle.t_closed - t_term < 1.0, idle.t_closed - t_term
        # the busy one is told, and its stream in flight still completes
        assert busy.wait_goaway(3) is not None, "no GOAWAY on the busy connection within 3 s of SIGTERM"
        st = busy.response(sid, timeout=10)
        assert st.status == 200 and st.ended and st.json()["path"] == "/slow", st
        assert all(code == NO_ERROR for code, _, _ in busy.goaways), busy.goaways
        # the final GOAWAY names the last stream gatehouse will process: the in-flight one
        assert busy.goaways[-1][1] == sid, busy.goaways
        assert busy.wait_closed(3), "connection still open after its last stream finished"
    finally:
        busy.close()
        idle.close()
    rc = gh.wait(timeout=10)
    assert rc == 0, gh.stderr_text()


def test_h2_reload_rotates_connections_gracefully(gatehouse, origin, pki, sink):
    # an operator's reload sends open HTTP/2 connections a graceful GOAWAY (NO_ERROR):
    # the stream in flight finishes on the old connection, new requests go to new
    # connections, which meet the new configuration (and certificates)
    gh = start(gatehouse, origin, pki, sink)
    with h2tls(gh) as t, h2c(gh) as c:
        assert t.get("/echo/1").status == 200 and c.get("/echo/1").status == 200
        slow = t.request("GET", "/slow?before_ms=800")
        gh.reload()
        assert poll(lambda: "configuration reloaded" in gh.stderr_text(), timeout=5), gh.stderr_text()
        assert t.wait_goaway(5) and c.wait_goaway(5), (t.goaways, c.goaways)
        assert all(g[0] == 0 for g in t.goaways + c.goaways), (t.goaways, c.goaways)  # NO_ERROR
        assert t.response(slow, timeout=10).status == 200
        assert t.wait_closed(5) and c.wait_closed(5)
    with h2tls(gh) as t2:
        assert t2.get("/echo/3").status == 200
    # a reload is not a drain: the process goes on serving
    assert gh.alive()


# ---- 5. attacks ------------------------------------------------------------------------

BASELINE_S = 1.0
ATTACK_S = 1.0


def run_attack(gh, name, seconds=ATTACK_S, max_connections=2000, tls=False, timeout=60, **params):
    """Run h2attacks.repeat() in a child process; returns its JSON."""
    params["tls"] = tls
    port = gh.tls_port if tls else gh.h2c_port
    argv = ["nice", "-n", "10", sys.executable, os.path.join(HERE, "h2attacks.py"), name, "--port", str(port),
            "--seconds", str(seconds), "--max-connections", str(max_connections), "--params", json.dumps(params)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout)
    errors = [r["error"] for r in res["runs"] if "error" in r]
    assert not errors, errors[:3]
    return res


def _measure(gh, name, **kw):
    probe = LatencyProbe(lambda: H2Client(gh.h2c_port, timeout=5), "/echo")
    probe.start()
    try:
        assert probe.wait_samples(30, timeout=10), "the probe got no answers: %r" % probe.samples[-3:]
        before = gh.metrics()
        t0 = time.monotonic()
        time.sleep(BASELINE_S)
        t1 = time.monotonic()
        res = run_attack(gh, name, **kw)
    finally:
        probe.stop()
    return SimpleNamespace(runs=res["runs"], base=probe.window(t0, t1),
                           during=probe.window(res["t_start"], res["t_end"]),
                           before=before, after=gh.metrics())


def under_attack(gh, name, **kw):
    """Probe latency for BASELINE_S, then during attack `name`; return runs, samples and
    metrics. A p99 over the bound is measured once more (fresh baseline and attack) before
    it counts: on this shared 2-core box a single host stall can exceed it with no attack
    at all; a real regression misses it twice."""
    m = _measure(gh, name, **kw)
    if _p99_within(m) is False:
        m = _measure(gh, name, **kw)
    return m


def _p99_bound(m):
    b99 = percentile([s[1] for s in m.base], 99)
    # an ASan+UBSan build (make asan) runs several times slower: its stalls are longer
    floor = 0.060 if os.environ.get("GATEHOUSE_SANITIZED") else 0.020
    return b99, percentile([s[1] for s in m.during], 99), max(2 * b99, b99 + floor)


def _p99_within(m):
    if not m.base or len(m.during) < 10:
        return None
    b99, d99, limit = _p99_bound(m)
    return d99 <= limit


def delta(m, name, **labels):
    return metric_value(m.after, name, **labels) - metric_value(m.before, name, **labels)


def assert_latency_unharmed(m):
    assert m.base and all(ok for _, _, ok, _ in m.base), [s for s in m.base if not s[2]][:3]
    failed = [s for s in m.during if not s[2]]
    assert not failed, "the legitimate client failed during the attack: %r" % failed[:3]
    assert len(m.during) >= 10, "only %d probe requests during the attack" % len(m.during)
    b99, d99, limit = _p99_bound(m)
    assert d99 <= limit, "p99 %.1f ms during the attack (n=%d) > %.1f ms (baseline p99 %.1f ms, n=%d)" % (
        1000 * d99, len(m.during), 1000 * limit, 1000 * b99, len(m.base))


def assert_stopped(m, codes, bound, kind):
    """Every attacking connection got GOAWAY with one of `codes` (or was closed) and was closed,
    within `bound` seconds of its first attack frame; the protection counter counted at least once
    per connection; gatehouse counted its GOAWAYs. (How many frames the attacker wrote before it
    read the GOAWAY says nothing: a descheduled server lets it push a megabyte into the socket.)"""
    assert m.runs
    for r in m.runs:
        g = r["goaway"]
        assert g is not None or r["closed"], "the server neither sent GOAWAY nor closed: %r" % r
        if g is not None:
            assert g["code"] in codes, "GOAWAY %s, want one of %s: %r" % (
                g["name"], [error_name(c) for c in codes], r)
        assert r["closed"], "GOAWAY for an error but the connection stayed open: %r" % r
        assert r["t_reaction"] <= bound, "reaction after %.2f s > %.1f s: %r" % (r["t_reaction"], bound, r)
    assert delta(m, "gatehouse_h2_protections_total", kind=kind) >= len(m.runs), (kind, len(m.runs))
    goaways = sum(1 for r in m.runs if r["goaway"] is not None)
    assert delta(m, "gatehouse_h2_goaways_total") >= goaways


ATTACK_HTTP2 = {"max_concurrent_streams": 10, "max_resets": 50, "max_control_frames": 100,
                "max_continuations": 16, "max_header_list_size": "32k"}
# client_send for the zero-window stall; a request head limit above max_header_list_size so that
# the HTTP/2 limit is the one a header list between the two meets
ATTACK_EXTRA = "timeouts: {client_send: 1s}\nlimits: {max_header_size: 64k}\n"


def start_attacked(gatehouse, origin, pki, sink):
    # one worker: the attacker and the probe share its event loop
    return start(gatehouse, origin, pki, sink, http2=ATTACK_HTTP2, extra=ATTACK_EXTRA, workers=1)


def below_limit_then_get(gh, frames, sid):
    """A client that stays under a limit is not punished: after `frames` on a fresh connection, a GET
    on stream sid is answered 200 and the connection lives on."""
    c = RawH2(gh.h2c_port)
    try:
        assert c.wait_handshake(), c.result()
        c.send(frames + headers_frame(sid, request_block("GET", "/echo/below", "example.com")))
        assert c.wait(lambda: sid in c.ended or sid in c.rst, 5), c.result()
        assert c.status(sid) == 200 and not c.goaways and not c.closed, c.result()
    finally:
        c.close()


def assert_one_stopped(r, codes, bound=2.0):
    """One attack connection (run in-process) was cut with one of `codes` within bound seconds."""
    assert r["goaway"] is not None or r["closed"], "not stopped: %r" % r
    if r["goaway"] is not None:
        assert r["goaway"]["code"] in codes, r
    assert r["t_reaction"] is not None and r["t_reaction"] <= bound, r


def continuation_frames(sid, block, n):
    """HEADERS (END_STREAM) + n CONTINUATION frames carrying `block`, the last with END_HEADERS."""
    size = max(1, -(-len(block) // (n + 1)))
    parts = [block[i * size:(i + 1) * size] for i in range(n + 1)]  # empty ones at the end if short
    assert b"".join(parts) == block
    return (frame(HEADERS, END_STREAM, sid, parts[0]) +
            b"".join(frame(CONTINUATION, 0, sid, p) for p in parts[1:-1]) +
            frame(CONTINUATION, END_HEADERS, sid, parts[-1]))


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_attack_rapid_reset(gatehouse, origin, pki, sink, tls):
    gh = start_attacked(gatehouse, origin, pki, sink)
    limit = ATTACK_HTTP2["max_resets"]
    # the limit itself: half of it is a client that cancels a lot, twice of it is cut
    n = limit // 2
    block = request_block("GET", "/echo/cancelled", "example.com")
    cancel = struct.pack(">I", CANCEL)
    pairs = b"".join(headers_frame(1 + 2 * i, block) + frame(RST_STREAM, 0, 1 + 2 * i, cancel) for i in range(n))
    below_limit_then_get(gh, pairs, 2 * n + 1)
    assert_one_stopped(h2attacks.rapid_reset(gh.h2c_port, path="/echo/rr", authority="attack.test",
                                             max_streams=2 * limit, batch=2 * limit), {ENHANCE_YOUR_CALM})
    # the flood, with a legitimate client measuring
    m = under_attack(gh, "rapid_reset", tls=tls, path="/echo/rr", authority="attack.test", max_streams=20000)
    assert_stopped(m, {ENHANCE_YOUR_CALM}, bound=2.0, kind="rapid_reset")
    for r in m.runs:
        # the attacker writes far more than the server reads before it sees the GOAWAY; the GOAWAY's
        # last stream id tells how far the server went: about max_resets streams, not thousands
        if r["goaway"] is not None:
            assert r["goaway"]["last_stream_id"] <= 2 * (2 * limit) + 1, r
    assert_latency_unharmed(m)
    assert_serving(gh)


@pytest.mark.parametrize("empty", [False, True], ids=["headers", "empty"])
def test_attack_continuation_flood(gatehouse, origin, pki, sink, empty):
    gh = start_attacked(gatehouse, origin, pki, sink)
    limit = ATTACK_HTTP2["max_continuations"]
    codes = {PROTOCOL_ERROR, ENHANCE_YOUR_CALM}
    # a header block in limit/2 CONTINUATION frames is fine; 2 x limit without an end is cut
    block = request_block("GET", "/echo/below", "example.com",
                          extra=[("x-part-%d" % i, "p" * 50) for i in range(8)])
    c = RawH2(gh.h2c_port)
    try:
        assert c.wait_handshake()
        c.send(continuation_frames(1, block, limit // 2))
        assert c.wait(lambda: 1 in c.ended or 1 in c.rst, 5), c.result()
        assert c.status(1) == 200 and not c.goaways, c.result()
    finally:
        c.close()
    assert_one_stopped(h2attacks.continuation_flood(gh.h2c_port, path="/echo/cont-flood", empty=empty,
                                                    max_frames=2 * limit, batch=2 * limit), codes)
    m = under_attack(gh, "continuation_flood", path="/echo/cont-flood", empty=empty, max_frames=20000)
    assert_stopped(m, codes, bound=2.0, kind="continuation")
    assert "/echo/cont-flood" not in origin.paths_seen()
    assert_latency_unharmed(m)
    assert_serving(gh)


def test_attack_hpack_bomb(gatehouse, origin, pki, sink):
    gh = start_attacked(gatehouse, origin, pki, sink)
    # the limit itself (max_header_list_size 32k, under limits.max_header_size 64k here): one 4000-byte
    # value referenced to make 6 fields (~24k decoded) passes, 10 fields (~40k) is refused
    r = h2attacks.hpack_bomb(gh.h2c_port, path="/echo/fits", bombs=1, refs=5, name="x-fits", follow_up=None)
    assert r["outcomes"][0]["status"] == 200, r
    assert len(header_values([h for h in origin.heads if h["path"] == "/echo/fits"][0], "x-fits")) == 6
    r = h2attacks.hpack_bomb(gh.h2c_port, path="/echo/over", bombs=1, refs=9, name="x-over")
    o = r["outcomes"][0]
    assert o["rst"] is not None or o["status"] == 431 or r["goaway"] is not None or r["closed"], r
    assert "/echo/over" not in origin.paths_seen()
    if r["follow_up"]:  # the connection lives on, its HPACK state intact
        assert r["follow_up"]["status"] == 200, r
    # bombs of ~50 MB each, with a legitimate client measuring
    m = under_attack(gh, "hpack_bomb", path="/echo/bomb", bombs=20)
    for r in m.runs:
        assert r["decoded_bytes_per_bomb"] > 1000 * 32768  # each block decodes to ~50 MB
        assert r["outcomes"], r
        cut = r["goaway"] is not None or r["closed"]
        for o in r["outcomes"]:
            # the stream is reset (or refused with 431) -- or the whole connection is cut
            assert o["rst"] is not None or o["status"] == 431 or cut, r
            assert o["status"] != 200, r
        if r["goaway"] is not None:
            assert r["goaway"]["code"] in (PROTOCOL_ERROR, ENHANCE_YOUR_CALM, h2attacks.COMPRESSION_ERROR), r
        if not cut:
            # the HPACK state survived the reset streams: a normal request on the connection works
            assert r["follow_up"] and r["follow_up"]["status"] == 200, r
    assert not any(header_values(h, "x-bomb") for h in origin.heads), "a bomb reached the origin"
    assert delta(m, "gatehouse_h2_protections_total", kind="header_list") >= len(m.runs)
    assert_latency_unharmed(m)
    assert_serving(gh)


@pytest.mark.parametrize("attack", ["settings_flood", "ping_flood", "priority_flood", "window_update_flood"])
def test_attack_control_frame_flood(gatehouse, origin, pki, sink, attack):
    gh = start_attacked(gatehouse, origin, pki, sink)
    limit = ATTACK_HTTP2["max_control_frames"]
    # the limit itself: limit/2 frames of the kind are tolerated, 2 x limit are cut
    n = limit // 2
    below_limit_then_get(gh, b"".join(h2attacks.flood_frame(attack, i) for i in range(n)), 2 * n + 1)
    assert_one_stopped(h2attacks.ATTACKS[attack](gh.h2c_port, max_frames=2 * limit, batch=2 * limit),
                       {ENHANCE_YOUR_CALM})
    # the flood, with a legitimate client measuring
    m = under_attack(gh, attack, max_frames=50000)
    assert_stopped(m, {ENHANCE_YOUR_CALM}, bound=2.0, kind=attack)
    # the frames a server answers show where it drew the line (plus the ACK of our first SETTINGS)
    for r in m.runs:
        assert r["ping_acks"] <= limit + 1 and r["settings_acks"] <= limit + 2, r
    assert_latency_unharmed(m)
    assert_serving(gh)


def test_attack_zero_window_stall(gatehouse, origin, pki, sink):
    gh = start_attacked(gatehouse, origin, pki, sink)  # timeouts.client_send: 1s
    m = under_attack(gh, "zero_window", max_connections=3, path="/download?n=%d" % (8 << 20),
                     authority="attack.test", max_seconds=6.0)
    for r in m.runs:
        assert r["closed"], "a connection with a zero window was kept past client_send: %r" % r
        assert 0.5 <= r["t_closed"] <= 3.5, r  # client_send is 1 s
        assert r["body_bytes"] == 0, "DATA sent into a zero window: %r" % r
    assert delta(m, "gatehouse_h2_protections_total", kind="zero_window") >= len(m.runs)
    assert_latency_unharmed(m)
    assert_serving(gh)


def test_attack_too_many_concurrent_streams(gatehouse, origin, pki, sink):
    gh = start_attacked(gatehouse, origin, pki, sink)  # max_concurrent_streams: 10
    m = under_attack(gh, "too_many_streams", max_connections=5, streams=30, path="/slow?before_ms=300",
                     authority="attack.test")
    for r in m.runs:
        sids = [1 + 2 * i for i in range(30)]
        assert r["max_concurrent_streams"] == 10, r
        # the first 10 are served, the 20 beyond the limit are refused with REFUSED_STREAM
        assert r["completed"] == sids[:10], r
        assert r["refused"] == sids[10:], r
        assert all(code == REFUSED_STREAM for _, code in r["rst"]), r["rst"]
        assert r["goaway"] is None, r  # refusing streams is not a connection error
    assert delta(m, "gatehouse_h2_protections_total", kind="refused_stream") >= len(m.runs)
    assert_latency_unharmed(m)
    assert_serving(gh)


def test_client_dropping_connections_with_streams_in_flight(gatehouse, origin, pki, sink):
    """A client that goes away with streams in flight (a closed tab, a cancelled call,
    h2load -D) must not hurt the worker: it once ran a freed connection's task."""
    import subprocess as sp
    gh = start(gatehouse, origin, pki, sink)
    for _ in range(6):
        p = sp.run(["h2load", "-D", "1", "-c", "4", "-m", "50", "-t", "1",
                    "http://127.0.0.1:%d/slow?before_ms=50" % gh.h2c_port],
                   capture_output=True, text=True, timeout=30)
        assert "requests:" in p.stdout, p.stdout + p.stderr
        assert gh.alive(), gh.stderr_text()
    for _ in range(20):  # by hand: open streams, then close the socket at once
        with h2c(gh) as c:
            for _ in range(30):
                c.request("GET", "/slow?before_ms=300")
            c.pump(0.05)
    assert poll(lambda: gh.alive(), timeout=2)
    with h2c(gh) as c:
        assert c.get("/echo/after").status == 200
    assert gh.alive()
