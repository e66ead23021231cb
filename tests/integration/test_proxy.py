"""Proxying: what reaches the origin, forwarding headers, upstream keep-alive,
load balancing, many parallel clients."""

import hashlib
import re
import threading
import time

import pytest

from helpers import HEADER, session
from origin import header_names, header_values, pattern_sha256
from rawhttp import RawConn, one, request_bytes

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"], keepalive: 128}
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


@pytest.fixture
def gh(gatehouse, origin):
    return gatehouse(CONFIG, origin_port=origin.port)


def echo(gh, data, source=None):
    r = one(gh.port, data, source=source)
    assert r.status == 200, r
    return r.json()


def test_request_line_headers_body_reach_origin(gh, origin):
    r = gh.request("POST", "/echo/some/path?q=1&b=two", data=b"hello body",
                   headers={"X-Custom": "v1", "Content-Type": "text/x-test"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["method"] == "POST"
    assert doc["target"] == "/echo/some/path?q=1&b=two"
    assert doc["version"] == "HTTP/1.1"
    assert header_values(doc, "X-Custom") == ["v1"]
    assert header_values(doc, "Content-Type") == ["text/x-test"]
    assert header_values(doc, "Host") == ["example.com"]
    assert doc["body"] == "hello body"
    assert doc["body_len"] == 10
    assert header_values(doc, "Content-Length") == ["10"] or doc["chunked"]


def test_repeated_headers_and_unknown_method_forwarded(gh, origin):
    data = request_bytes("PURGE", "/echo/m", headers=[("X-Multi", "a"), ("X-Multi", "b")])
    doc = echo(gh, data)
    assert doc["method"] == "PURGE"
    assert header_values(doc, "X-Multi") in (["a", "b"], ["a, b"])


def test_hop_by_hop_request_headers_removed(gh, origin):
    data = request_bytes("GET", "/echo/hop", headers=[
        ("Connection", "keep-alive, X-Secret"),
        ("X-Secret", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "deflate"),
        ("X-Normal", "stays"),
    ])
    doc = echo(gh, data)
    names = header_names(doc)
    for h in ("x-secret", "keep-alive", "proxy-connection"):
        assert h not in names, doc["headers"]
    for v in header_values(doc, "Connection"):
        assert "x-secret" not in v.lower()
    assert all(v.lower() == "trailers" for v in header_values(doc, "TE")), doc["headers"]
    assert header_values(doc, "X-Normal") == ["stays"]


def test_non_websocket_upgrade_not_forwarded(gh, origin):
    data = request_bytes("GET", "/echo/up", headers=[("Connection", "Upgrade"),
                                                     ("Upgrade", "foo/1")])
    r = one(gh.port, data)
    assert r.status == 200, r
    doc = r.json()
    assert "upgrade" not in header_names(doc), doc["headers"]


def test_chunked_request_reframed_single_framing(gh, origin):
    data = (b"POST /echo/te HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    doc = echo(gh, data)
    assert doc["body"] == "hello world"
    cl = header_values(doc, "Content-Length")
    te = header_values(doc, "Transfer-Encoding")
    assert (cl == ["11"] and te == []) or (te == ["chunked"] and cl == []), doc["headers"]


def test_hop_by_hop_response_headers_removed(gh, origin):
    with RawConn(gh.port) as c:
        c.send(request_bytes("GET", "/hopresp"))
        r = c.read_response()
        assert r.status == 200
        assert r.body == b"hop\n"
        names = [n.lower() for n, _ in r.headers]
        for h in ("x-hop-resp", "proxy-connection", "upgrade"):
            assert h not in names, r.headers
        assert r.header("Keep-Alive") != "timeout=5, max=100", r.headers
        for v in r.header_all("Connection"):
            assert "x-hop-resp" not in v.lower(), r.headers
        assert r.header("X-Keep") == "yes"
        # and the connection is still usable
        c.send(request_bytes("GET", "/fixed"))
        assert c.read_response().body == b"fixed\n"


def test_xff_added(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/xff"))
    assert header_values(doc, "X-Forwarded-For") == ["127.0.0.1"]


def test_xff_replaced_from_untrusted_peer(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/xff", headers=[("X-Forwarded-For", "9.9.9.9")]))
    assert header_values(doc, "X-Forwarded-For") == ["127.0.0.1"]


def test_xff_appended_from_trusted_peer(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/xff", headers=[("X-Forwarded-For", "1.2.3.4")]),
               source="127.0.0.2")
    assert header_values(doc, "X-Forwarded-For") == ["1.2.3.4, 127.0.0.2"]


def test_xff_trusted_peer_multiple_headers_and_none(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/xff", headers=[("X-Forwarded-For", "1.2.3.4"),
                                                              ("X-Forwarded-For", "5.6.7.8")]),
               source="127.0.0.2")
    assert header_values(doc, "X-Forwarded-For") == ["1.2.3.4, 5.6.7.8, 127.0.0.2"]
    doc = echo(gh, request_bytes("GET", "/echo/xff"), source="127.0.0.2")
    assert header_values(doc, "X-Forwarded-For") == ["127.0.0.2"]


def test_forwarding_headers_from_untrusted_peer_replaced(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/fwd", headers=[
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test"),
        ("Forwarded", "for=6.6.6.6;proto=https")]))
    assert header_values(doc, "X-Forwarded-Proto") == ["http"]
    assert header_values(doc, "X-Forwarded-Host") == ["example.com"]
    fwd = header_values(doc, "Forwarded")
    assert len(fwd) == 1 and "6.6.6.6" not in fwd[0], fwd


def test_absolute_form_target(gh, origin):
    doc = echo(gh, b"GET http://example.com/echo/abs?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert doc["target"] == "/echo/abs?x=1"


def test_forwarding_headers(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/fwd"))
    assert header_values(doc, "X-Forwarded-Proto") == ["http"]
    assert header_values(doc, "X-Forwarded-Host") == ["example.com"]
    assert header_values(doc, "Via") == ["1.1 gatehouse"]
    fwd = header_values(doc, "Forwarded")
    assert len(fwd) == 1, doc["headers"]
    params = {}
    for part in fwd[0].split(";"):
        k, _, v = part.strip().partition("=")
        params[k.lower()] = v.strip('"')
    assert params.get("for") == "127.0.0.1", fwd
    assert params.get("proto") == "http", fwd
    assert params.get("host") == "example.com", fwd


def test_forwarded_host_keeps_port(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/fwd", host="example.com:8080"))
    assert header_values(doc, "X-Forwarded-Host") == ["example.com:8080"]
    assert header_values(doc, "Host") == ["example.com:8080"]


def test_request_id_generated(gh, origin):
    ids = set()
    for _ in range(3):
        doc = echo(gh, request_bytes("GET", "/echo/rid"))
        rid = header_values(doc, "X-Request-Id")
        assert len(rid) == 1, doc["headers"]
        assert re.fullmatch(r"[0-9a-fA-F]{32}", rid[0]), rid
        ids.add(rid[0])
    assert len(ids) == 3


def test_request_id_propagated(gh, origin):
    doc = echo(gh, request_bytes("GET", "/echo/rid",
                                 headers=[("X-Request-Id", "req-0123456789abcdef")]))
    assert header_values(doc, "X-Request-Id") == ["req-0123456789abcdef"]


@pytest.mark.parametrize("bad", ["has space", "x" * 300, "semi;colon", "quote\"d"])
def test_invalid_request_id_replaced(gh, origin, bad):
    doc = echo(gh, request_bytes("GET", "/echo/rid", headers=[("X-Request-Id", bad)]))
    rid = header_values(doc, "X-Request-Id")
    assert len(rid) == 1 and re.fullmatch(r"[0-9a-fA-F]{32}", rid[0]), rid


def test_early_hints_then_final_response(gh, origin):
    with RawConn(gh.port, timeout=5) as c:
        for i in range(10):
            c.send(request_bytes("GET", "/early"))
            r = c.read_response()  # 1xx interim responses, if forwarded, are skipped
            assert (r.status, r.body) == (200, b"after early hints\n"), "request %d: %r" % (i, r)
        c.send(request_bytes("GET", "/fixed"))
        assert c.read_response().body == b"fixed\n"
        assert c.buf == b"", "extra bytes after the responses: %r" % c.buf[:100]


@pytest.mark.parametrize("n", [1000, 3 * 1000 * 1000 + 7])
def test_response_delimited_by_close(gh, origin, n):
    """The origin ends its body by closing (no Content-Length, not chunked): the
    client must get the whole body and a response it can see the end of (chunked
    re-framing, or the connection closed after it)."""
    for i in range(8):
        with RawConn(gh.port, timeout=5) as c:
            c.send(request_bytes("GET", "/untilclose?n=%d" % n))
            try:
                r = c.read_response()
            except OSError as e:
                pytest.fail("request %d: no end of response within 5 s (%r); got %d body bytes"
                            % (i, e, len(c.buf)))
            assert r.status == 200
            assert len(r.body) == n
            assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)


def test_large_response_header(gh, origin):
    r = gh.get("/bighdr?n=8000")
    assert r.status_code == 200
    assert r.headers["X-Big"] == "h" * 8000


def test_request_sent_byte_by_byte(gh, origin):
    data = request_bytes("POST", "/echo/bytewise?a=1", headers=[("X-One", "1")], body=b"xyz")
    with RawConn(gh.port) as c:
        for i in range(len(data)):
            c.send(data[i:i + 1])
            if i % 10 == 0:
                time.sleep(0.002)
        r = c.read_response()
    assert r.status == 200
    doc = r.json()
    assert doc["target"] == "/echo/bytewise?a=1"
    assert doc["body"] == "xyz"
    assert header_values(doc, "X-One") == ["1"]


def test_many_tiny_chunks(gh, origin):
    body = b"".join(b"1\r\n" + bytes([65 + i % 26]) + b"\r\n" for i in range(10000)) + b"0\r\n\r\n"
    want = bytes(65 + i % 26 for i in range(10000))
    with RawConn(gh.port, timeout=20) as c:
        c.send(b"POST /echo/tiny HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
               + body)
        r = c.read_response()
    assert r.status == 200
    doc = r.json()
    assert doc["body_len"] == 10000
    assert doc["body"] == want.decode()


# ---- upstream keep-alive ---------------------------------------------------

KA_CONFIG = CONFIG.replace("workers: {workers}", "workers: 1")


def test_upstream_keepalive_one_client_connection(gatehouse, origin):
    gh = gatehouse(KA_CONFIG, origin_port=origin.port)
    with RawConn(gh.port) as c:
        for i in range(50):
            c.send(request_bytes("GET", "/echo/ka?i=%d" % i))
            r = c.read_response()
            assert r.status == 200
            assert r.json()["query"] == "i=%d" % i
    assert len(origin.requests) == 50
    assert origin.accepts <= 2, "50 requests used %d upstream connections" % origin.accepts


def test_upstream_keepalive_many_client_connections(gatehouse, origin):
    gh = gatehouse(KA_CONFIG, origin_port=origin.port)
    for i in range(50):
        with RawConn(gh.port) as c:
            c.send(request_bytes("GET", "/echo/ka?i=%d" % i, headers=[("Connection", "close")]))
            r = c.read_response()
            assert r.status == 200
            assert c.wait_closed(5)
    assert len(origin.requests) == 50
    assert origin.accepts <= 5, "50 requests used %d upstream connections" % origin.accepts


def test_origin_closing_after_each_response(gatehouse, origin):
    gh = gatehouse(KA_CONFIG, origin_port=origin.port)
    with RawConn(gh.port) as c:
        for i in range(10):
            c.send(request_bytes("GET", "/echo/oc?close=1&i=%d" % i))
            r = c.read_response()
            assert r.status == 200, r
            assert r.json()["query"] == "close=1&i=%d" % i
    assert origin.accepts == 10


def test_pooled_connection_closed_by_origin_is_not_reused(gatehouse, origin):
    """The origin closes idle keep-alive connections after 100 ms; a request made
    after that must get a fresh upstream connection, not a 502."""
    gh = gatehouse(KA_CONFIG, origin_port=origin.port)
    with RawConn(gh.port) as c:
        for i in range(5):
            c.send(request_bytes("GET", "/echo/idle?idle_ms=100&i=%d" % i))
            r = c.read_response()
            assert r.status == 200, "request %d: %r" % (i, r)
            assert origin.wait_for(lambda s: s.closed >= i + 1, timeout=5)
            time.sleep(0.2)  # the upstream connection sits closed in the pool meanwhile
    assert origin.accepts == 5


def test_round_robin_two_backends(gatehouse, origin_factory):
    o1, o2 = origin_factory("b1"), origin_factory("b2")
    cfg = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{p1}", {address: "127.0.0.1:{p2}", weight: 1}]}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{name: all, upstream: app}]}]
"""
    gh = gatehouse(cfg, p1=o1.port, p2=o2.port)
    seen = []
    for _ in range(10):
        r = gh.get("/id")
        assert r.status_code == 200
        seen.append(r.text)
    assert seen.count("b1") >= 3 and seen.count("b2") >= 3, seen


# ---- many parallel clients -------------------------------------------------

def test_parallel_clients(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port)
    nconn, nreq = 200, 20
    barrier = threading.Barrier(nconn, timeout=30)
    errors = []
    ok = [0]
    lock = threading.Lock()

    def client(k):
        try:
            with RawConn(gh.port, timeout=30) as c:
                barrier.wait()
                for i in range(nreq):
                    if i % 2:
                        c.send(request_bytes("GET", "/fixed"))
                        r = c.read_response()
                        good = r.status == 200 and r.body == b"fixed\n"
                    else:
                        c.send(request_bytes("GET", "/echo/p?k=%d&i=%d" % (k, i)))
                        r = c.read_response()
                        good = r.status == 200 and r.json()["query"] == "k=%d&i=%d" % (k, i)
                    if not good:
                        raise AssertionError("bad response %r" % r)
                    with lock:
                        ok[0] += 1
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            with lock:
                errors.append("%d: %r" % (k, e))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "clients still running"
    assert not errors, errors[:5]
    assert ok[0] == nconn * nreq


def test_requests_session_keepalive(gh, origin):
    with session() as s:
        for i in range(20):
            r = s.get(gh.url + "/echo/s?i=%d" % i, headers={"Host": "example.com"}, timeout=10)
            assert r.status_code == 200
            assert r.json()["query"] == "i=%d" % i
