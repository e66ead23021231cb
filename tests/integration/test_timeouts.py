"""Upstream failures and timeouts, slow and aborting clients."""

import socket
import time

import pytest

from helpers import HEADER, closed_port
from rawhttp import Closed, RawConn, one, request_bytes

CONFIG = HEADER + """
timeouts: {client_header: 1s, client_body: 1s, client_send: 1s, keepalive: 2s}
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  dead: {backends: ["127.0.0.1:{dead_port}"]}
  slowup: {backends: ["127.0.0.1:{origin_port}"], timeouts: {response: 1s}}
  black: {backends: ["127.0.0.1:{black_port}"], timeouts: {connect: 1s}}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: dead
            match: {path: {prefix: /dead}}
            upstream: dead
          - name: hang
            match: {path: {prefix: /hang}}
            upstream: app
            timeouts: {upstream_response: 1s}
          - name: hang-upstream-timeout
            match: {path: {prefix: /uphang}}
            upstream: slowup
          - name: black
            match: {path: {prefix: /black}}
            upstream: black
          - name: stall
            match: {path: {prefix: /chunked}}
            upstream: app
            timeouts: {upstream_idle: 1s}
          - name: all
            upstream: app
"""


@pytest.fixture(scope="module")
def blackhole():
    """A listener whose accept queue is full and never drained: connects to it
    hang (the SYN is dropped), like a host that does not answer."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    # prove the queue is full: one more connect must not complete quickly
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(("127.0.0.1", port))
        full = False
    except socket.timeout:
        full = True
    finally:
        probe.close()
    yield port if full else None
    for s in fillers + [lsock]:
        s.close()


@pytest.fixture(scope="module")
def gh(gatehouse_module, origin_module, blackhole):
    return gatehouse_module(CONFIG, origin_port=origin_module.port, dead_port=closed_port(),
                            black_port=blackhole or closed_port())


@pytest.fixture
def o(origin_module):
    origin_module.reset()
    return origin_module


def timed(port, data):
    t0 = time.monotonic()
    r = one(port, data, timeout=15)
    return r, time.monotonic() - t0


def test_connect_refused_502(gh, o):
    r, dt = timed(gh.port, request_bytes("GET", "/dead/x"))
    assert r.status == 502
    assert 0 < len(r.body) < 4096, r.body
    assert dt < 3, "502 took %.2fs" % dt


def test_upstream_response_timeout_504(gh, o):
    r, dt = timed(gh.port, request_bytes("GET", "/hang"))
    assert r.status == 504
    assert 0.8 <= dt <= 4.0, "504 after %.2fs (route timeout 1s)" % dt
    # gatehouse gave up on the upstream connection: the origin notices
    assert o.wait_for(lambda s: ("/hang", 0) in s.disconnects, timeout=5)


def test_origin_closes_without_response_502(gh, o):
    r, dt = timed(gh.port, request_bytes("GET", "/close"))
    assert r.status == 502
    assert dt < 3


def test_origin_resets_connection_502(gh, o):
    r, dt = timed(gh.port, request_bytes("GET", "/reset"))
    assert r.status == 502
    assert dt < 3


def test_gateway_still_fine_after_failures(gh, o):
    for p in ("/dead/1", "/close", "/reset"):
        one(gh.port, request_bytes("GET", p), timeout=15)
    r = one(gh.port, request_bytes("GET", "/echo/ok"))
    assert r.status == 200


def test_keepalive_client_after_502(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/dead/1"))
        r = c.read_response()
        assert r.status == 502
        try:
            c.send(request_bytes("GET", "/echo/next"))
            r = c.read_response()
            assert r.status == 200
        except (Closed, OSError):
            pass  # closing after an error response is acceptable


def test_slow_client_header_timeout(gh, o):
    with RawConn(gh.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET /echo/slow HTTP/1.1\r\nHost: exam")
        closed = c.wait_closed(6)
        dt = time.monotonic() - t0
    assert closed, "connection with half a header still open after 6 s (client_header: 1s)"
    assert dt >= 0.8, "closed after %.2fs, before the 1s client_header timeout" % dt
    if c.buf:
        assert c.buf.startswith(b"HTTP/1.1 408"), c.buf[:100]
    assert o.paths_seen() == []


def test_slowloris_trickle_still_times_out(gh, o):
    """Sending a byte every 200 ms must not extend the header deadline."""
    with RawConn(gh.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"GET /echo/slow HTTP/1.1\r\nHost: example.com\r\n")
        closed = False
        while time.monotonic() - t0 < 6:
            try:
                c.send(b"X")
            except OSError:
                closed = True
                break
            if c.wait_closed(0.2):
                closed = True
                break
        dt = time.monotonic() - t0
    assert closed, "trickling client kept the connection for 6 s"
    assert dt < 4, "closed after %.2fs" % dt


def test_client_abort_mid_download_closes_upstream(gh, o):
    with RawConn(gh.port, timeout=10) as c:
        c.send(request_bytes("GET", "/slowdl?chunks=300&delay_ms=50&size=1024"))
        head = c.read_head()
        assert b" 200 " in head.split(b"\r\n")[0]
        while len(c.buf) < 2048:
            c._more()
    # client is gone; origin must see its connection closed soon after
    assert o.wait_for(lambda s: any(d[0] == "/slowdl" for d in s.disconnects), timeout=5), \
        "origin kept streaming to gatehouse after the client went away"


def test_upstream_level_response_timeout_504(gh, o):
    """timeouts.response on the upstream (1s) applies to routes using it."""
    r, dt = timed(gh.port, request_bytes("GET", "/uphang/hang"))
    assert r.status == 504
    assert 0.8 <= dt <= 4.0, "504 after %.2fs (upstream response timeout 1s)" % dt
    r = one(gh.port, request_bytes("GET", "/uphang/fine"))
    assert r.status == 200


def test_upstream_idle_timeout_mid_body(gh, o):
    """Origin sends the head and a first chunk, then stalls 3 s: with
    upstream_idle 1s the client gets a truncated response (connection closed)."""
    with RawConn(gh.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(request_bytes("GET", "/chunked?n=3&size=10&delay_ms=3000"))
        head = c.read_head()
        assert b" 200 " in head.split(b"\r\n")[0]
        closed = c.wait_closed(6)
        dt = time.monotonic() - t0
    assert closed, "response still open after 6 s"
    assert not c.buf.endswith(b"0\r\n\r\n"), "complete body despite the stall: %r" % c.buf
    assert 0.8 <= dt < 2.9, "closed after %.2fs (upstream_idle 1s, origin stalls 3s)" % dt


def test_client_body_timeout(gh, o):
    with RawConn(gh.port, timeout=10) as c:
        c.send(b"POST /echo/body HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100\r\n\r\n"
               b"0123456789")
        t0 = time.monotonic()
        closed = c.wait_closed(6)
        dt = time.monotonic() - t0
    assert closed, "stalled request body kept the connection open for 6 s (client_body: 1s)"
    assert 0.8 <= dt < 4, "closed after %.2fs" % dt
    if c.buf:
        assert c.buf.startswith(b"HTTP/1.1 408"), c.buf[:100]
    assert not any(rq["path"] == "/echo/body" for rq in o.requests)


def test_keepalive_idle_timeout(gh, o):
    with RawConn(gh.port, timeout=10) as c:
        c.send(request_bytes("GET", "/echo/ka"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        closed = c.wait_closed(6)
        dt = time.monotonic() - t0
    assert closed, "idle keep-alive connection open after 6 s (keepalive: 2s)"
    assert 1.5 <= dt < 4.5, "closed after %.2fs" % dt
    assert c.buf == b"", c.buf[:100]


@pytest.mark.parametrize("kind", ["garbage", "no_status", "cl_te", "dup_cl", "bad_cl", "bare_lf"])
def test_invalid_upstream_response_502(gh, o, kind):
    r, dt = timed(gh.port, request_bytes("GET", "/badresp?kind=" + kind))
    assert r.status == 502, r
    assert dt < 3
    r = one(gh.port, request_bytes("GET", "/echo/after-bad"))
    assert r.status == 200


def test_upstream_connect_timeout(gh, o, blackhole):
    if blackhole is None:
        pytest.skip("could not make a non-answering listener on this kernel")
    r, dt = timed(gh.port, request_bytes("GET", "/black/x"))
    assert r.status in (502, 504), r
    assert 0.8 <= dt <= 4.0, "answered after %.2fs (connect timeout 1s)" % dt


def test_client_send_timeout_non_reading_client(gh, o):
    """A client that stops reading a big response is cut off after client_send
    (1s), and the upstream connection is closed too."""
    n = 256 << 20
    with RawConn(gh.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(request_bytes("GET", "/download?n=%d" % n))
        c.read_head()
        # stop reading: gatehouse must give up on us
        assert o.wait_for(lambda s: any(d[0] == "/download" for d in s.disconnects), timeout=6), \
            "origin still streaming 6 s after the client stopped reading (client_send: 1s)"
        got = len(c.buf)
        closed = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                d = c.sock.recv(1 << 20)
            except (ConnectionResetError, socket.timeout):
                closed = True
                break
            if not d:
                closed = True
                break
            got += len(d)
    assert closed
    assert got < n
