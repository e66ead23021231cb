"""gRPC through gatehouse: a real grpcio server behind an `http2: true` upstream
(cleartext and TLS with ALPN h2), a real grpcio client in front (h2c and TLS):
unary, server streaming, client streaming and bidirectional calls, status codes
and trailing metadata, large messages, many concurrent calls on one connection."""

import os
import subprocess
import threading
from concurrent import futures

import grpc
import pytest

from helpers import HEADER, free_port, metric_value

OPENSSL = "/usr/bin/openssl"


def _unary(req, ctx):
    ctx.set_trailing_metadata((("x-trailer", "t1"),))
    return b"echo:" + req


def _server_stream(req, ctx):
    n = int(req.decode() or "5")
    for i in range(n):
        yield b"part%d" % i


def _client_stream(it, ctx):
    return b"|".join(it)


def _bidi(it, ctx):
    for m in it:
        yield b"bidi:" + m


def _fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nothing here")


def _big(req, ctx):
    return os.urandom(int(req.decode()))


HANDLER = grpc.method_handlers_generic_handler("test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
    "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
    "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
    "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
    "Big": grpc.unary_unary_rpc_method_handler(_big),
})


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("grpcpki"))

    def run(*a):
        subprocess.run(list(a), check=True, capture_output=True, timeout=60)
    run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", d + "/ca.key", "-out", d + "/ca.pem", "-days", "2", "-subj", "/CN=grpc test CA")
    for name in ("edge", "backend"):
        run(OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "%s/%s.key" % (d, name))
        run(OPENSSL, "req", "-new", "-key", "%s/%s.key" % (d, name), "-subj", "/CN=%s.test" % name,
            "-out", "%s/%s.csr" % (d, name))
        with open("%s/%s.ext" % (d, name), "w") as f:
            f.write("subjectAltName=DNS:%s.test\n" % name)
        run(OPENSSL, "x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA", d + "/ca.pem", "-CAkey",
            d + "/ca.key", "-CAcreateserial", "-days", "2", "-extfile", "%s/%s.ext" % (d, name),
            "-out", "%s/%s.pem" % (d, name))
    return d


def grpc_server(tls_dir=None):
    srv = grpc.server(futures.ThreadPoolExecutor(16))
    srv.add_generic_rpc_handlers((HANDLER,))
    if tls_dir:
        creds = grpc.ssl_server_credentials(
            [(open(tls_dir + "/backend.key", "rb").read(), open(tls_dir + "/backend.pem", "rb").read())])
        port = srv.add_secure_port("127.0.0.1:0", creds)
    else:
        port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    return srv, port


@pytest.fixture
def backend():
    srv, port = grpc_server()
    yield port
    srv.stop(0)


def config(backend_port, pki=None, backend_tls=False):
    listeners = ('listeners:\n'
                 '  - {name: h2c, listen: "127.0.0.1:{proxy_port}", h2c: true}\n')
    if pki:
        listeners += ('  - {name: https, listen: "127.0.0.1:{tls_port}", tls: {cert: "%s/edge.pem", key: "%s/edge.key"}}\n'
                      % (pki, pki))
    tls = ', tls: {server_name: backend.test, ca: "%s/ca.pem"}' % pki if backend_tls else ""
    return HEADER.replace('listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]\n', listeners) + """
upstreams:
  grpc: {backends: ["127.0.0.1:%d"], http2: true%s}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{upstream: grpc}]}]
""" % (backend_port, tls)


def calls(ch):
    u = ch.unary_unary("/test.Echo/Unary")
    resp, call = u.with_call(b"hi", timeout=10)
    assert resp == b"echo:hi"
    assert ("x-trailer", "t1") in call.trailing_metadata()
    assert list(ch.unary_stream("/test.Echo/ServerStream")(b"20", timeout=10)) == [b"part%d" % i for i in range(20)]
    assert ch.stream_unary("/test.Echo/ClientStream")(iter([b"a", b"b", b"c"]), timeout=10) == b"a|b|c"
    assert list(ch.stream_stream("/test.Echo/Bidi")(iter([b"1", b"2", b"3"]), timeout=10)) == \
        [b"bidi:1", b"bidi:2", b"bidi:3"]
    with pytest.raises(grpc.RpcError) as e:
        ch.unary_unary("/test.Echo/Fail")(b"", timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details() == "nothing here"
    big = ch.unary_unary("/test.Echo/Big")(b"3000000", timeout=20)  # beyond every flow-control window
    assert len(big) == 3000000


def test_grpc_over_h2c(gatehouse, backend):
    gh = gatehouse(config(backend))
    with grpc.insecure_channel("127.0.0.1:%d" % gh.port) as ch:
        calls(ch)
    m = gh.metrics()
    assert metric_value(m, "gatehouse_h2_streams_total") >= 6
    recs = [r for r in gh.log_lines() if r.get("path", "").startswith("/test.Echo/")]
    assert recs and all(r["proto"] == "HTTP/2" for r in recs), recs[:2]


def test_grpc_over_tls_both_sides(gatehouse, pki):
    srv, bport = grpc_server(pki)
    try:
        tls_port = free_port()
        gh = gatehouse(config(bport, pki, backend_tls=True), tls_port=tls_port)
        creds = grpc.ssl_channel_credentials(root_certificates=open(pki + "/ca.pem", "rb").read())
        opts = (("grpc.ssl_target_name_override", "edge.test"),)
        with grpc.secure_channel("127.0.0.1:%d" % tls_port, creds, options=opts) as ch:
            calls(ch)
        rec = [r for r in gh.log_lines() if r.get("path") == "/test.Echo/Unary"][0]
        assert rec["tls"] == "TLSv1.3" and rec["proto"] == "HTTP/2", rec
    finally:
        srv.stop(0)


def test_many_concurrent_calls_share_connections(gatehouse, backend):
    gh = gatehouse(config(backend))
    errors = []
    with grpc.insecure_channel("127.0.0.1:%d" % gh.port) as ch:
        u = ch.unary_unary("/test.Echo/Unary")

        def worker(k):
            try:
                for i in range(20):
                    assert u(b"%d-%d" % (k, i), timeout=10) == b"echo:%d-%d" % (k, i)
            except Exception as e:  # collected and asserted below
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    assert not errors, errors[:3]
    # 200 calls, a handful of HTTP/2 connections to the backend at most (one per worker)
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % backend],
                         capture_output=True, text=True).stdout
    assert len(out.strip().splitlines()) <= 2, out


def test_backend_down_is_unavailable(gatehouse):
    port = free_port()  # nothing listens there
    gh = gatehouse(config(port))
    with grpc.insecure_channel("127.0.0.1:%d" % gh.port) as ch:
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Echo/Unary")(b"x", timeout=10)
    # 502 from the gateway: grpc maps it to UNAVAILABLE
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
