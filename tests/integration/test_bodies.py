"""Bodies: chunked both ways, streaming, trailers, 1 GiB up/down with bounded
memory, and the size limits (414/431/413)."""

import hashlib
import socket
import threading
import time

import pytest

from helpers import HEADER, other_paths_seen, rss_bytes, session
from origin import header_values, pattern_block, pattern_sha256
from rawhttp import Closed, RawConn, one, request_bytes, try_response

GiB = 1 << 30
MiB = 1 << 20

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: big
            match: {path: {prefix: /upload}}
            upstream: app
            limits: {max_body_size: 2g}
          - name: all
            upstream: app
"""


@pytest.fixture(scope="module")
def gh(gatehouse_module, origin_module):
    return gatehouse_module(CONFIG, origin_port=origin_module.port)


@pytest.fixture
def o(origin_module):
    origin_module.reset()
    return origin_module


class RssSampler:
    """Samples VmRSS of pid every 20 ms in a thread."""

    def __init__(self, pid):
        self.pid = pid
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_ev.wait(0.02):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=5)
        return self.peak - self.baseline


def test_chunked_request_body_reaches_origin(gh, o):
    parts = [b"alpha-", b"", b"beta" * 1000, b"-gamma"]
    data = b"".join(parts)

    def gen():
        for p in parts:
            if p:
                yield p

    with session() as s:
        r = s.post(gh.url + "/echo/chunked", data=gen(), headers={"Host": "example.com"},
                   timeout=10)
    assert r.status_code == 200
    doc = r.json()
    assert doc["body_len"] == len(data)
    assert doc["body_sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["body"] == data.decode()


def test_chunked_request_with_extensions_and_trailer(gh, o):
    with RawConn(gh.port) as c:
        c.send(b"POST /echo/ext HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=val\r\nhello\r\n0\r\nX-Trail: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body"] == "hello"


def test_chunked_response_intact(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/chunked?n=50&size=1000"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"".join(((b"%d" % i) * 1000)[:1000] for i in range(50))


def test_chunked_response_is_streamed_progressively(gh, o):
    with RawConn(gh.port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(request_bytes("GET", "/chunked?n=3&size=10&delay_ms=1000"))
        head = c.read_head()
        assert b" 200 " in head.split(b"\r\n")[0]
        while not c.buf:
            c._more()
        t_first = time.monotonic() - t0
        while not c.buf.endswith(b"0\r\n\r\n"):
            c._more()
        t_end = time.monotonic() - t0
    assert t_end >= 2.5, "origin sends over 3 s, got everything after %.2fs" % t_end
    assert t_first < t_end - 2.0, "first chunk at %.2fs, end at %.2fs: not streamed" % (t_first, t_end)


def test_response_trailers_pass_through(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/chunked?n=2&size=5&trailer=X-Checksum:abc123",
                             headers=[("TE", "trailers")]))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"00000" + b"11111"
        assert ("X-Checksum", "abc123") in r.trailers, (r.headers, r.trailers)


def test_upload_1gib_bounded_memory(gh, o):
    blk = pattern_block()
    expected = pattern_sha256(GiB)
    sampler = RssSampler(gh.pid)
    try:
        with RawConn(gh.port, timeout=60) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % GiB)
            for _ in range(GiB // len(blk)):
                c.sock.sendall(blk)
            r = c.read_response()
    finally:
        growth = sampler.stop()
    assert r.status == 200, r
    doc = r.json()
    assert doc["len"] == GiB
    assert doc["sha256"] == expected
    assert growth < 64 * MiB, "RSS grew by %.1f MiB during a 1 GiB upload" % (growth / MiB)


def test_upload_chunked_256mib_bounded_memory(gh, o):
    blk = pattern_block()
    n = 256 * MiB
    expected = pattern_sha256(n)

    def gen():
        for _ in range(n // len(blk)):
            yield blk

    sampler = RssSampler(gh.pid)
    try:
        with session() as s:
            r = s.post(gh.url + "/upload?mode=chunked", data=gen(), headers={"Host": "example.com"},
                       timeout=60)
    finally:
        growth = sampler.stop()
    assert r.status_code == 200, r.text
    assert r.json()["len"] == n
    assert r.json()["sha256"] == expected
    assert growth < 64 * MiB, "RSS grew by %.1f MiB" % (growth / MiB)


def _download(port, target):
    with RawConn(port, timeout=60) as c:
        c.send(request_bytes("GET", target))
        head = c.read_head()
        h = hashlib.sha256()
        got = 0
        h.update(c.buf)
        got += len(c.buf)
        buf = bytearray(MiB)
        mv = memoryview(buf)
        n = int([ln.split(b":", 1)[1] for ln in head.split(b"\r\n")
                 if ln.lower().startswith(b"content-length:")][0])
        while got < n:
            k = c.sock.recv_into(mv, min(len(buf), n - got))
            if k == 0:
                break
            h.update(mv[:k])
            got += k
        return head, got, h.hexdigest()


def test_download_1gib_bounded_memory(gh, o):
    expected = pattern_sha256(GiB)
    sampler = RssSampler(gh.pid)
    try:
        head, got, digest = _download(gh.port, "/download?n=%d" % GiB)
    finally:
        growth = sampler.stop()
    assert b" 200 " in head.split(b"\r\n")[0]
    assert got == GiB
    assert digest == expected
    assert growth < 64 * MiB, "RSS grew by %.1f MiB during a 1 GiB download" % (growth / MiB)


def test_download_slow_reader_bounded_memory(gh, o):
    """A client that reads slowly must not make gatehouse buffer the origin's body."""
    n = 256 * MiB
    sampler = RssSampler(gh.pid)
    try:
        with RawConn(gh.port, timeout=30) as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            c.send(request_bytes("GET", "/download?n=%d" % n))
            c.read_head()
            # read slowly for a while: ~1.5 s
            got = len(c.buf)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                got += len(c.sock.recv(65536))
                time.sleep(0.01)
            # gatehouse must not have pulled the whole body into memory meanwhile
            mid_growth = sampler.peak - sampler.baseline
            while got < n:
                d = c.sock.recv(MiB)
                if not d:
                    break
                got += len(d)
    finally:
        growth = sampler.stop()
    assert got >= n
    assert mid_growth < 64 * MiB
    assert growth < 64 * MiB, "RSS grew by %.1f MiB" % (growth / MiB)


def test_body_over_default_limit_413(gh, o):
    # global default max_body_size is 100m; this route does not raise it
    with RawConn(gh.port) as c:
        c.send(b"POST /echo/big HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n"
               % (200 * MiB))
        r = c.read_response()
        assert r.status == 413
    assert other_paths_seen(gh, o, "413default") == []


# ---- limits ----------------------------------------------------------------

LIMITS = HEADER.replace("workers: {workers}", "workers: 1") + """
limits: {max_request_line: 1k, max_header_size: 4k, max_headers: 20, max_body_size: 1m}
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: small
            match: {path: {prefix: /small}}
            upstream: app
            limits: {max_body_size: 100}
          - name: all
            upstream: app
"""


@pytest.fixture(scope="module")
def lim(gatehouse_module, origin_module):
    return gatehouse_module(LIMITS, origin_port=origin_module.port)


def test_request_line_too_long_414(lim, o):
    r = one(lim.port, request_bytes("GET", "/echo/" + "a" * 2000))
    assert r.status == 414
    assert other_paths_seen(lim, o, "414") == []


def test_request_line_within_limit(lim, o):
    r = one(lim.port, request_bytes("GET", "/echo/" + "a" * 900))
    assert r.status == 200


def test_header_section_too_large_431(lim, o):
    hdrs = [("X-Big-%d" % i, "v" * 500) for i in range(10)]
    r = one(lim.port, request_bytes("GET", "/echo/h", headers=hdrs))
    assert r.status == 431
    assert other_paths_seen(lim, o, "431a") == []


def test_too_many_headers_431(lim, o):
    hdrs = [("X-H%d" % i, "v") for i in range(30)]
    r = one(lim.port, request_bytes("GET", "/echo/h", headers=hdrs))
    assert r.status == 431
    assert other_paths_seen(lim, o, "431b") == []


def test_headers_within_limits(lim, o):
    hdrs = [("X-H%d" % i, "v" * 100) for i in range(15)]
    r = one(lim.port, request_bytes("GET", "/echo/h", headers=hdrs))
    assert r.status == 200


def test_body_over_route_limit_content_length_413(lim, o):
    r = one(lim.port, request_bytes("POST", "/small/x", body=b"b" * 101))
    assert r.status == 413
    assert other_paths_seen(lim, o, "413cl") == []


def test_expect_continue_over_limit_gets_413_not_100(lim, o):
    with RawConn(lim.port, timeout=5) as c:
        c.send(b"POST /small/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(allow_interim=True)
        assert r.status == 413, r
    assert other_paths_seen(lim, o, "413expect") == []


def test_body_at_route_limit_ok(lim, o):
    r = one(lim.port, request_bytes("POST", "/small/x", body=b"b" * 100))
    assert r.status == 200
    assert r.json()["body_len"] == 100


def test_body_over_global_limit_413(lim, o):
    with RawConn(lim.port) as c:
        c.send(b"POST /echo/g HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n"
               % (2 * MiB))
        r = c.read_response()
        assert r.status == 413
    assert other_paths_seen(lim, o, "413g") == []


def test_chunked_body_over_route_limit(lim, o):
    body = b"".join(b"32\r\n" + b"c" * 50 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    with RawConn(lim.port) as c:
        c.send(b"POST /small/chunked HTTP/1.1\r\nHost: example.com\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            c.send(body)
        except OSError:
            pass
        r = try_response(c)
        if r is not None:
            assert r.status == 413, r
    # the origin never got the whole 150-byte body (it may have seen the head
    # if gatehouse streams request bodies)
    other_paths_seen(lim, o, "413chunked")
    complete = [rq for rq in o.requests if rq["path"] == "/small/chunked"]
    assert complete == [], complete
    assert all(rq["body_len"] < 150 for rq in o.requests)
