"""HTTP/1.1 framing on raw sockets: pipelining, HTTP/1.0, smuggling attempts,
Expect, HEAD/204/304, h2c and WebSocket upgrades."""

import base64
import hashlib

import pytest

from helpers import HEADER, other_paths_seen
from origin import header_names, header_values
from rawhttp import Closed, RawConn, one, request_bytes

CONFIG = HEADER.replace("workers: {workers}", "workers: 1") + """
timeouts: {client_header: 3s}
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: fixed
            match: {path: {exact: /fixed}}
            respond: {status: 200, body: "fixed\\n"}
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


# ---- pipelining and connection management ---------------------------------

def test_pipelined_requests_answered_in_order(gh, o):
    data = (request_bytes("GET", "/echo/one") +
            request_bytes("GET", "/fixed") +
            request_bytes("POST", "/echo/three", body=b"third body"))
    with RawConn(gh.port) as c:
        c.send(data)
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        assert (r1.status, r1.json()["path"]) == (200, "/echo/one")
        assert (r2.status, r2.body) == (200, b"fixed\n")
        assert (r3.status, r3.json()["path"], r3.json()["body"]) == (200, "/echo/three", "third body")
        # still open for more
        c.send(request_bytes("GET", "/fixed"))
        assert c.read_response().body == b"fixed\n"


def test_hundred_pipelined_requests(gh, o):
    data = b"".join(request_bytes("GET", "/echo/p?i=%d" % i) if i % 3 else
                    request_bytes("GET", "/fixed") for i in range(100))
    with RawConn(gh.port, timeout=15) as c:
        c.send(data)
        for i in range(100):
            r = c.read_response()
            assert r.status == 200
            if i % 3:
                assert r.json()["query"] == "i=%d" % i
            else:
                assert r.body == b"fixed\n"


def test_pipelined_after_slow_request_keeps_order(gh, o):
    data = (request_bytes("GET", "/slow?before_ms=300") +
            request_bytes("GET", "/echo/after"))
    with RawConn(gh.port) as c:
        c.send(data)
        r1 = c.read_response()
        r2 = c.read_response()
        assert r1.json()["path"] == "/slow"
        assert r2.json()["path"] == "/echo/after"


def test_http10_response_then_close(gh, o):
    with RawConn(gh.port) as c:
        c.send(b"GET /echo/ten HTTP/1.0\r\nHost: example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["path"] == "/echo/ten"
        assert c.wait_closed(3), "HTTP/1.0 connection without keep-alive was not closed"


def test_http10_keepalive(gh, o):
    with RawConn(gh.port) as c:
        c.send(b"GET /fixed HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"fixed\n"
        assert "keep-alive" in (r.header("Connection") or "").lower(), r.headers
        c.send(b"GET /echo/again HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.json()["path"] == "/echo/again"


def test_pipelined_request_after_close_not_processed(gh, o):
    data = (request_bytes("GET", "/echo/first", headers=[("Connection", "close")]) +
            request_bytes("GET", "/echo/second"))
    with RawConn(gh.port) as c:
        c.send(data)
        r = c.read_response()
        assert r.json()["path"] == "/echo/first"
        assert c.wait_closed(3)
        assert c.buf == b"", "a response after Connection: close: %r" % c.buf[:200]
    seen = other_paths_seen(gh, o, "afterclose")
    assert seen == ["/echo/first"], seen


def test_connection_close_honoured(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/echo/c", headers=[("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(3)


# ---- smuggling / strict parsing --------------------------------------------

def _b(s):
    return s.encode("latin-1")


INNER = "GET /echo/smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"

SMUGGLING = {
    "cl_and_te": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(INNER)) + INNER),
    "te_and_cl": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"),
    "duplicate_cl_equal": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
                             "Content-Length: 5\r\n\r\nhello"),
    "duplicate_cl_differ": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
                              "Content-Length: 6\r\n\r\nhello!"),
    "cl_list": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5, 5\r\n\r\nhello"),
    "cl_plus": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: +5\r\n\r\nhello"),
    "te_gzip_chunked": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                          "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "te_chunked_twice": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                           "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "te_space_before_colon": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                                "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + INNER),
    "te_in_http10": _b("POST /echo/s HTTP/1.0\r\nHost: example.com\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "obs_fold": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nX-Foo: a\r\n b\r\n\r\n"),
    "nul_in_value": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nX-Foo: a\x00b\r\n\r\n"),
    "bare_cr_in_value": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nX-Foo: a\rb\r\n\r\n"),
    "bare_lf_everywhere": _b("GET /echo/s HTTP/1.1\nHost: example.com\nX-A: b\n\n"),
    "bare_lf_one_line": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\nX-A: b\r\n\r\n"),
    "space_in_header_name": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nX Foo: a\r\n\r\n"),
    "invalid_chunk_size": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                             "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "chunk_size_overflow": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                              "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk_data_without_crlf": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"),
    "cl_negative": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: -5\r\n\r\nhello"),
    "cl_hex": _b("POST /echo/s HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0x5\r\n\r\nhello"),
    "request_line_double_space": _b("GET  /echo/s HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    "header_name_bad_char": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nX[Foo]: a\r\n\r\n"),
    "host_with_space": _b("GET /echo/s HTTP/1.1\r\nHost: exa mple.com\r\n\r\n"),
    "host_with_slash": _b("GET /echo/s HTTP/1.1\r\nHost: example.com/x\r\n\r\n"),
    "space_in_target": _b("GET /echo/a b HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    "missing_host_http11": _b("GET /echo/s HTTP/1.1\r\nX-A: b\r\n\r\n"),
    "duplicate_host": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nHost: example.com\r\n\r\n"),
    "duplicate_host_differ": _b("GET /echo/s HTTP/1.1\r\nHost: example.com\r\nHost: evil.test\r\n\r\n"),
}


def _assert_origin_saw_only_sentinel(gh, o, name):
    seen = other_paths_seen(gh, o, name)
    assert seen == [], "origin saw %r" % seen


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_rejected(gh, o, name):
    with RawConn(gh.port, timeout=8) as c:
        c.send(SMUGGLING[name])
        try:
            r = c.read_response()
        except Closed:
            pytest.fail("%s: connection closed without a 400 response" % name)
        assert r.status == 400, "%s: got %r" % (name, r)
        assert c.wait_closed(3), "%s: connection not closed after 400" % name
    _assert_origin_saw_only_sentinel(gh, o, name)


def test_transfer_coding_is_case_insensitive(gh, o):
    r = one(gh.port, b"POST /echo/tc HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: Chunked\r\n"
                     b"\r\n5\r\nhello\r\n0\r\n\r\n")
    assert r.status == 200, r
    assert r.json()["body"] == "hello"


def test_connect_refused_by_default(gh, o):
    with RawConn(gh.port) as c:
        c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        r = c.read_response(method="CONNECT")
        assert r.status in (400, 403, 405, 501), r
    _assert_origin_saw_only_sentinel(gh, o, "connect")


def test_h2c_upgrade_never_forwarded(gh, o):
    data = request_bytes("GET", "/echo/h2c", headers=[
        ("Connection", "Upgrade, HTTP2-Settings"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
    ])
    with RawConn(gh.port) as c:
        c.send(data)
        r = c.read_response()
        assert r.status == 200, r
        doc = r.json()
        names = header_names(doc)
        assert "upgrade" not in names, doc["headers"]
        assert "http2-settings" not in names, doc["headers"]
        for v in header_values(doc, "Connection"):
            assert "upgrade" not in v.lower()
        # the connection stays HTTP/1.1
        c.send(request_bytes("GET", "/fixed"))
        assert c.read_response().body == b"fixed\n"


def test_unknown_expect_417(gh, o):
    r = one(gh.port, request_bytes("POST", "/echo/e", headers=[("Expect", "something-else")],
                                   body=b"hello"))
    assert r.status == 417
    _assert_origin_saw_only_sentinel(gh, o, "expect417")


def test_expect_100_continue(gh, o):
    with RawConn(gh.port) as c:
        c.send(b"POST /echo/cont HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response(allow_interim=True)
        assert interim.status == 100, interim
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue")
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body"] == "hello world"
        assert r.json()["body_len"] == 11


def test_http2_version_505(gh, o):
    r = one(gh.port, b"GET /echo/v HTTP/2.0\r\nHost: example.com\r\n\r\n")
    assert r.status == 505
    _assert_origin_saw_only_sentinel(gh, o, "h2version")


# ---- bodiless responses ----------------------------------------------------

def test_head_has_no_body_and_keepalive_continues(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("HEAD", "/size?n=1000"))
        r = c.read_response(method="HEAD")
        assert r.status == 200
        assert r.header("Content-Length") in ("1000", None)
        c.send(request_bytes("GET", "/size?n=5"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"xxxxx")
        # HEAD of a chunked response
        c.send(request_bytes("HEAD", "/chunked?n=3"))
        r = c.read_response(method="HEAD")
        assert r.status == 200
        c.send(request_bytes("GET", "/fixed"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"fixed\n")
        assert c.buf == b"", "unexpected extra bytes %r" % c.buf


@pytest.mark.parametrize("target", ["/status?code=204", "/status?code=304",
                                    "/status?code=304&cl=10"])
def test_204_304_no_body(gh, o, target):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", target))
        r = c.read_response()
        assert r.status == int(target.split("code=")[1][:3])
        assert r.header("Transfer-Encoding") is None
        c.send(request_bytes("GET", "/size?n=3"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"xxx")
        assert c.buf == b""


# ---- WebSocket ---------------------------------------------------------------

def test_websocket_upgrade_echo(gh, o):
    key = base64.b64encode(b"0123456789abcdef").decode()
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/ws", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        assert r.status == 101, r
        assert (r.header("Upgrade") or "").lower() == "websocket"
        want = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        assert r.header("Sec-WebSocket-Accept") == want
        head = o.heads[-1]
        assert [v.lower() for v in header_values(head, "Upgrade")] == ["websocket"]
        # raw bytes both ways through the tunnel
        for payload in (b"\x81\x05hello", b"ping-2", bytes(range(256)) * 400):
            c.send(payload)
            got = c._exact(len(payload))
            assert got == payload


def test_websocket_refused_by_origin_stays_http(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/echo/not-ws", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "MDEyMzQ1Njc4OWFiY2RlZg=="), ("Sec-WebSocket-Version", "13")]))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["path"] == "/echo/not-ws"
        c.send(request_bytes("GET", "/fixed"))
        r = c.read_response()
        assert (r.status, r.body) == (200, b"fixed\n")


def test_websocket_client_close_reaches_origin(gh, o):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/ws", headers=[
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "MDEyMzQ1Njc4OWFiY2RlZg=="), ("Sec-WebSocket-Version", "13")]))
        assert c.read_response().status == 101
        c.send(b"x")
        assert c._exact(1) == b"x"
    assert o.wait_for(lambda s: ("/ws", 0) in s.disconnects, timeout=5), \
        "origin's websocket connection still open after the client closed"
