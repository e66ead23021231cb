"""TLS termination: certificates by SNI, versions, resumption across a reload,
certificate reload without dropping connections, plain HTTP on a TLS port, HTTPS
redirect and HSTS per site, JA4 in the access log, large bodies both ways. Real
clients: curl, openssl s_client and Python ssl/requests."""

import hashlib
import http.client
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from helpers import HEADER, free_port, metric_value, poll, session

OPENSSL = "/usr/bin/openssl"


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=True, **kw)


def make_cert(d, name, cn, sans, ca="ca"):
    key, csr, crt, ext = (os.path.join(d, name + s) for s in (".key", ".csr", ".pem", ".ext"))
    run(OPENSSL, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    run(OPENSSL, "req", "-new", "-key", key, "-subj", "/CN=" + cn, "-out", csr)
    with open(ext, "w") as f:
        f.write("subjectAltName=" + ",".join(sans) + "\nbasicConstraints=CA:FALSE\n")
    run(OPENSSL, "x509", "-req", "-in", csr, "-CA", os.path.join(d, ca + ".pem"), "-CAkey",
        os.path.join(d, ca + ".key"), "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", crt)
    return crt, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"), "-days", "2",
        "-subj", "/CN=gatehouse test CA")
    certs = {
        "default": make_cert(d, "default", "default.test", ["DNS:default.test"]),
        "a": make_cert(d, "a", "a.test", ["DNS:a.test", "DNS:*.b.test"]),
        "c": make_cert(d, "c", "c.test", ["DNS:c.test"]),
        "c2": make_cert(d, "c2", "c.test renewed", ["DNS:c.test"]),
    }
    return {"dir": d, "ca": os.path.join(d, "ca.pem"), **certs}


def config(pki, extra_listener="", site_c_extra="", min_version=""):
    return HEADER.replace(
        'listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]',
        'listeners:\n'
        '  - {name: http, listen: "127.0.0.1:{proxy_port}"}\n'
        '  - name: https\n'
        '    listen: "127.0.0.1:{tls_port}"\n'
        '    tls: {cert: "%s", key: "%s"%s%s}\n' % (pki["default"][0], pki["default"][1], min_version,
                                                   extra_listener)) + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: [a.test, "*.b.test"]
        tls: {cert: "%s", key: "%s"}
        hsts: "max-age=31536000; includeSubDomains"
        https_redirect: true
        routes: [{upstream: app}]
      - hosts: [c.test]
        tls: {cert: "{c_cert}", key: "{c_key}"}%s
        routes: [{upstream: app}]
      - hosts: [default.test]
        routes: [{upstream: app}]
""" % (pki["a"][0], pki["a"][1], site_c_extra)


def start(gatehouse, origin, pki, **kw):
    port = free_port()
    gh = gatehouse(config(pki, **kw), tls_port=port, origin_port=origin.port, c_cert=pki["c"][0],
                   c_key=pki["c"][1])
    gh.tls_port = port
    return gh


def ctx(pki, **kw):
    c = ssl.create_default_context(cafile=pki["ca"])
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def peer_cn(pki, port, sni, **kw):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        c = ctx(pki, **kw)
        c.check_hostname = False
        with c.wrap_socket(s, server_hostname=sni) as t:
            cert = t.getpeercert()
            return dict(x[0] for x in cert["subject"])["commonName"], t.version(), t.selected_alpn_protocol()


def https_get(pki, port, host, path="/echo", **kw):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx(pki, check_hostname=False), timeout=10)
    c.request("GET", path, headers={"Host": host}, **kw)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_tls_termination_with_sni_certificates(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    p = gh.tls_port
    # curl verifies the chain and the name
    out = run("curl", "-sS", "--cacert", pki["ca"], "--resolve", "a.test:%d:127.0.0.1" % p,
              "https://a.test:%d/echo" % p, "-o", "/dev/null", "-w", "%{http_code} %{http_version}")
    assert out.stdout == "200 2", out  # ALPN picks h2
    out = run("curl", "-sS", "--http1.1", "--cacert", pki["ca"], "--resolve", "a.test:%d:127.0.0.1" % p,
              "https://a.test:%d/echo" % p, "-o", "/dev/null", "-w", "%{http_code} %{http_version}")
    assert out.stdout == "200 1.1", out
    assert peer_cn(pki, p, "a.test")[0] == "a.test"
    assert peer_cn(pki, p, "x.b.test")[0] == "a.test"        # wildcard, one label
    assert peer_cn(pki, p, "c.test")[0] == "c.test"
    assert peer_cn(pki, p, "C.TEST")[0] == "c.test"          # case-insensitive
    assert peer_cn(pki, p, "y.x.b.test")[0] == "default.test"  # two labels: no wildcard match
    assert peer_cn(pki, p, "unknown.test")[0] == "default.test"
    assert peer_cn(pki, p, None)[0] == "default.test"
    cn, ver, alpn = peer_cn(pki, p, "a.test")
    assert ver == "TLSv1.3" and alpn is None
    c = ctx(pki, check_hostname=False)
    c.set_alpn_protocols(["h2", "http/1.1"])
    with c.wrap_socket(socket.create_connection(("127.0.0.1", p), timeout=5), server_hostname="a.test") as t:
        assert t.selected_alpn_protocol() == "h2"  # preferred
    c.set_alpn_protocols(["http/1.1"])
    with c.wrap_socket(socket.create_connection(("127.0.0.1", p), timeout=5), server_hostname="a.test") as t:
        assert t.selected_alpn_protocol() == "http/1.1"
    # the origin learns the request came over TLS
    r, body = https_get(pki, p, "c.test")
    assert r.status == 200
    doc = __import__("json").loads(body)
    hdr = {k.lower(): v for k, v in doc["headers"]}
    assert hdr["x-forwarded-proto"] == "https" and "proto=https" in hdr["forwarded"], hdr
    m = gh.metrics()
    assert metric_value(m, "gatehouse_tls_handshakes_total") >= 8


def test_tls_versions(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    assert peer_cn(pki, gh.tls_port, "a.test", maximum_version=ssl.TLSVersion.TLSv1_2)[1] == "TLSv1.2"
    gh13 = start(gatehouse, origin, pki, min_version=', min_version: "1.3"')
    with pytest.raises(ssl.SSLError):
        peer_cn(pki, gh13.tls_port, "a.test", maximum_version=ssl.TLSVersion.TLSv1_2)
    assert peer_cn(pki, gh13.tls_port, "a.test")[1] == "TLSv1.3"
    # old, weak protocol versions are refused
    p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % gh.tls_port, "-tls1_1"],
                       input="", capture_output=True, text=True, timeout=10)
    assert "Cipher is (NONE)" in p.stdout or p.returncode != 0, p.stdout


def s_client_resume(port, sess, out_or_in):
    p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "a.test",
                        "-sess_" + out_or_in, sess, "-ign_eof"],
                       input="GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                       capture_output=True, text=True, timeout=10)
    return p.stdout


def test_session_resumption_survives_reload(gatehouse, origin, pki, tmp_path):
    gh = start(gatehouse, origin, pki)
    sess = str(tmp_path / "sess.pem")
    first = s_client_resume(gh.tls_port, sess, "out")
    assert "HTTP/1.1 200" in first and "New, TLSv1.3" in first, first
    again = s_client_resume(gh.tls_port, sess, "in")
    assert "Reused, TLSv1.3" in again, again
    gh.reload()
    assert poll(lambda: "configuration reloaded" in gh.stderr_text(), timeout=5)
    after = s_client_resume(gh.tls_port, sess, "in")
    assert "Reused, TLSv1.3" in after, after
    assert metric_value(gh.metrics(), "gatehouse_tls_resumed_total") >= 2


def test_certificate_reload_keeps_open_connections(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    p = gh.tls_port
    assert peer_cn(pki, p, "c.test")[0] == "c.test"
    conn = http.client.HTTPSConnection("127.0.0.1", p, context=ctx(pki, check_hostname=False), timeout=10)
    conn.request("GET", "/echo", headers={"Host": "c.test"})
    assert conn.getresponse().read() and True
    # renew c.test's certificate and reload
    gh.write_config(config(pki), c_cert=pki["c2"][0], c_key=pki["c2"][1])
    gh.reload()
    assert poll(lambda: peer_cn(pki, p, "c.test")[0] == "c.test renewed", timeout=5)
    # the connection opened before goes on
    conn.request("GET", "/echo", headers={"Host": "c.test"})
    r = conn.getresponse()
    assert r.status == 200 and r.read()
    conn.close()


def test_plain_http_to_tls_port(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    with socket.create_connection(("127.0.0.1", gh.tls_port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"plain HTTP was sent to an HTTPS port" in data
    assert metric_value(gh.metrics(), "gatehouse_tls_plain_http_total") == 1


def test_https_redirect_and_hsts(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    with session() as s:
        r = s.get(gh.url + "/some/path?q=1", headers={"Host": "a.test"}, allow_redirects=False, timeout=5)
        assert r.status_code == 308, r.text
        assert r.headers["Location"] == "https://a.test:%d/some/path?q=1" % gh.tls_port
        assert "Strict-Transport-Security" not in r.headers  # never over plain HTTP
        # a site without https_redirect is served over plain HTTP
        r = s.get(gh.url + "/echo", headers={"Host": "c.test"}, timeout=5)
        assert r.status_code == 200
    r, _ = https_get(pki, gh.tls_port, "a.test")
    assert r.status == 200 and r.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains"
    r, _ = https_get(pki, gh.tls_port, "c.test")
    assert r.getheader("Strict-Transport-Security") is None


def test_ja4_and_tls_version_in_access_log(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    https_get(pki, gh.tls_port, "a.test", path="/echo?ja4=1")
    assert poll(lambda: any("ja4=1" in (l.get("query") or "") for l in gh.log_lines()), timeout=5)
    rec = [l for l in gh.log_lines() if "ja4=1" in (l.get("query") or "")][0]
    assert rec["tls"] == "TLSv1.3", rec
    assert re.fullmatch(r"t13[di]\d{4}(h1|00)_[0-9a-f]{12}_[0-9a-f]{12}", rec["ja4"]), rec
    # a TLS 1.2-only client fingerprints differently
    c = ctx(pki, check_hostname=False, maximum_version=ssl.TLSVersion.TLSv1_2)
    conn = http.client.HTTPSConnection("127.0.0.1", gh.tls_port, context=c, timeout=10)
    conn.request("GET", "/echo?ja4=2", headers={"Host": "a.test"})
    conn.getresponse().read()
    conn.close()
    assert poll(lambda: any("ja4=2" in (l.get("query") or "") for l in gh.log_lines()), timeout=5)
    rec2 = [l for l in gh.log_lines() if "ja4=2" in (l.get("query") or "")][0]
    assert rec2["tls"] == "TLSv1.2" and rec2["ja4"].startswith("t12") and rec2["ja4"] != rec["ja4"], rec2
    # plain HTTP requests carry no TLS fields
    with session() as s:
        s.get(gh.url + "/echo?ja4=3", headers={"Host": "c.test"}, timeout=5)
    assert poll(lambda: any("ja4=3" in (l.get("query") or "") for l in gh.log_lines()), timeout=5)
    rec3 = [l for l in gh.log_lines() if "ja4=3" in (l.get("query") or "")][0]
    assert "tls" not in rec3 and "ja4" not in rec3, rec3


def test_large_bodies_both_ways_over_tls(gatehouse, origin, pki):
    from origin import pattern_sha256
    gh = start(gatehouse, origin, pki)
    n = 8 << 20
    r, body = https_get(pki, gh.tls_port, "c.test", path="/download?n=%d" % n)
    assert r.status == 200 and len(body) == n
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(n)
    data = os.urandom(5 << 20)
    c = http.client.HTTPSConnection("127.0.0.1", gh.tls_port, context=ctx(pki, check_hostname=False), timeout=20)
    c.request("POST", "/upload", body=data, headers={"Host": "c.test"})
    doc = __import__("json").loads(c.getresponse().read())
    c.close()
    assert doc["len"] == len(data) and doc["sha256"] == hashlib.sha256(data).hexdigest()


def test_stalled_handshake_is_closed(gatehouse, origin, pki):
    gh = start(gatehouse, origin, pki)
    gh.write_config(config(pki).replace("drain_timeout: 5s", "drain_timeout: 5s\ntimeouts: {client_header: 500ms}"),
                    c_cert=pki["c"][0], c_key=pki["c"][1])
    gh.reload()
    assert poll(lambda: "configuration reloaded" in gh.stderr_text(), timeout=5)
    before = metric_value(gh.metrics(), "gatehouse_tls_handshake_failures_total")
    with socket.create_connection(("127.0.0.1", gh.tls_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        t0 = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - t0 < 3
    assert metric_value(gh.metrics(), "gatehouse_tls_handshake_failures_total") == before + 1


def test_tls_config_errors(tmp_path, pki):
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners:\n'
                   '  - {listen: "127.0.0.1:1", tls: {cert: "%s/missing.pem", key: "%s"}}\n'
                   '  - {listen: "127.0.0.1:2", tls: {cert: "%s", key: "%s", min_version: "1.1"}}\n'
                   '  - {listen: "127.0.0.1:3", tls: {cert: "%s"}}\n'
                   'tenants:\n'
                   '  - name: t\n'
                   '    sites: [{hosts: [x.test], tls: {cert: "%s", key: "%s"}, hsts: "1 year"}]\n'
                   % (pki["dir"], pki["a"][1], pki["a"][0], pki["a"][1], pki["a"][0], pki["a"][0], pki["c"][1]))
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    e = p.stderr
    for want in ["bad.yaml:2:41: listeners[0].tls.cert: %s/missing.pem: No such file or directory" % pki["dir"],
                 "listeners[1].tls.min_version: min_version must be \"1.2\" or \"1.3\", got \"1.1\"",
                 "listeners[2].tls: cert and key go together: set both",
                 "sites[0].tls.cert: %s: key does not match certificate" % pki["c"][1],
                 "sites[0].hsts: hsts must be a Strict-Transport-Security value"]:
        assert want in e, (want, e)
    ok = tmp_path / "nocert.yaml"
    ok.write_text('listeners: [{name: s, listen: "127.0.0.1:1", tls: true}]\n')
    p = subprocess.run([BIN, "validate", "-c", str(ok)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "a TLS listener needs a certificate" in p.stderr, p.stderr


# ---- TLS to the backends ----------------------------------------------------------

@pytest.fixture
def tls_origin(pki, origin_factory):
    from origin import Origin
    crt, key = make_cert(pki["dir"], "backend", "backend.test", ["DNS:backend.test"])
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    seen = []
    sctx.sni_callback = lambda sock, name, c: seen.append(name)
    o = Origin("tlso", tls=sctx)
    origin_factory.origins.append(o)
    o.sni_seen = seen
    o.sctx = sctx
    return o


def upstream_tls_config(pki, tls, extra=""):
    return HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"], tls: %s%s}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{upstream: app}]}]
""" % (tls, extra)


def test_tls_to_backend_verified_with_sni_and_pooled(gatehouse, pki, tls_origin):
    gh = gatehouse(upstream_tls_config(pki, '{server_name: backend.test, ca: "%s"}' % pki["ca"]),
                   origin_port=tls_origin.port)
    with session() as s:
        for i in range(10):
            r = s.get(gh.url + "/echo", headers={"Host": "x.test"}, timeout=10)
            assert r.status_code == 200, r.text
            time.sleep(0.02)  # let post-handshake tickets reach the idle pooled connection
    assert set(tls_origin.sni_seen) == {"backend.test"}, tls_origin.sni_seen
    # kept alive and reused: far fewer TLS connections than requests
    assert tls_origin.accepts <= 2, tls_origin.accepts
    # the host the backend sees is the client's, unchanged
    doc = r.json()
    assert dict((k.lower(), v) for k, v in doc["headers"])["host"] == "x.test"


def test_tls_to_backend_resumes_sessions(gatehouse, pki, tls_origin):
    gh = gatehouse(upstream_tls_config(pki, '{server_name: backend.test, ca: "%s"}' % pki["ca"]),
                   origin_port=tls_origin.port)
    with session() as s:
        for _ in range(4):  # close=1: the backend closes after each response, so each is a new connection
            r = s.get(gh.url + "/echo?close=1", headers={"Host": "x.test"}, timeout=10)
            assert r.status_code == 200
    assert tls_origin.accepts >= 4
    assert tls_origin.sctx.session_stats()["hits"] >= 2, tls_origin.sctx.session_stats()


def test_tls_to_backend_refuses_a_wrong_name(gatehouse, pki, tls_origin):
    gh = gatehouse(upstream_tls_config(pki, '{server_name: other.test, ca: "%s"}' % pki["ca"],
                                       ", retries: {attempts: 1}"), origin_port=tls_origin.port)
    r = gh.get("/echo", host="x.test")
    assert r.status_code == 502, r.text
    assert poll(lambda: "TLS handshake with 127.0.0.1:%d (as other.test) failed: certificate verify failed"
                % tls_origin.port in gh.stderr_text(), timeout=5), gh.stderr_text()
    assert metric_value(gh.metrics(), "gatehouse_upstream_tls_failures_total", upstream="app") >= 1
    # no verification: connects (for test backends only)
    gh2 = gatehouse(upstream_tls_config(pki, "{server_name: other.test, verify: false}"),
                    origin_port=tls_origin.port)
    assert gh2.get("/echo", host="x.test").status_code == 200


def test_health_checks_over_tls(gatehouse, pki, tls_origin):
    gh = gatehouse(upstream_tls_config(pki, '{server_name: backend.test, ca: "%s"}' % pki["ca"],
                                       ", health_check: {path: /health, interval: 200ms, timeout: 150ms}"),
                   origin_port=tls_origin.port)
    b = lambda: gh.admin_get("/upstreams").json()["upstreams"][0]["backends"][0]
    assert poll(lambda: b()["checks"] >= 3, timeout=5), b()
    assert b()["state"] == "up" and b()["failed_checks"] == 0, b()
    tls_origin.health_status = 503
    assert poll(lambda: b()["state"] == "down", timeout=5), b()
    assert b()["last_error"] == "status 503", b()
    # a backend whose certificate does not verify fails its checks with the reason
    gh2 = gatehouse(upstream_tls_config(pki, '{server_name: wrong.test, ca: "%s"}' % pki["ca"],
                                        ", health_check: {path: /health, interval: 200ms, timeout: 150ms}"),
                    origin_port=tls_origin.port)
    b2 = lambda: gh2.admin_get("/upstreams").json()["upstreams"][0]["backends"][0]
    assert poll(lambda: b2()["state"] == "down", timeout=5), b2()
    assert b2()["last_error"].startswith("TLS: certificate verify failed"), b2()


def test_upstream_tls_config_errors(tmp_path, pki):
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'upstreams:\n'
                   '  a: {backends: ["127.0.0.1:2"], tls: {ca: "%s/nope.pem"}}\n'
                   '  b: {backends: ["127.0.0.1:2"], tls: {server_name: "bad name!", cert: "%s"}}\n'
                   '  c: {backends: ["127.0.0.1:2"], tls: {min_version: "1.0"}}\n' % (pki["dir"], pki["a"][0]))
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    e = p.stderr
    for want in ["bad.yaml:3:39: upstreams.a.tls: %s/nope.pem" % pki["dir"],
                 "upstreams.b.tls.server_name: server_name must be a host name or an IP address",
                 "upstreams.b.tls: cert and key go together: set both",
                 "upstreams.c.tls.min_version: min_version must be \"1.2\" or \"1.3\", got \"1.0\""]:
        assert want in e, (want, e)


def test_cipher_and_alpn_config_errors_and_alpn_choice(gatehouse, origin, tmp_path, pki):
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners:\n'
                   '  - {listen: "127.0.0.1:1", tls: {cert: "%s", key: "%s", ciphers: "NOPE", alpn: [h2, h3]}}\n'
                   '  - {listen: "127.0.0.1:2", tls: {cert: "%s", key: "%s", ciphersuites: "TLS_FOO"}}\n'
                   % (pki["a"][0], pki["a"][1], pki["a"][0], pki["a"][1]))
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    for want in ['listeners[0].tls.ciphers: ciphers "NOPE": no usable cipher',
                 'listeners[0].tls.alpn[1]: unknown ALPN protocol "h3" (h2 or http/1.1)',
                 'bad.yaml:3:', 'listeners[1].tls.ciphersuites: ciphersuites "TLS_FOO": no usable suite']:
        assert want in p.stderr, (want, p.stderr)
    # alpn: [http/1.1] turns HTTP/2 off on a listener
    gh = start(gatehouse, origin, pki, extra_listener=", alpn: [http/1.1]")
    c = ctx(pki, check_hostname=False)
    c.set_alpn_protocols(["h2", "http/1.1"])
    with c.wrap_socket(socket.create_connection(("127.0.0.1", gh.tls_port), timeout=5), server_hostname="a.test") as t:
        assert t.selected_alpn_protocol() == "http/1.1"


def test_routes_match_tls_fingerprints(gatehouse, origin, pki):
    """A route can match the client's JA4: here TLS 1.2-only clients are sent to a
    direct response, everyone else to the origin."""
    port = free_port()
    cfg = config(pki).replace(
        "      - hosts: [c.test]\n        tls: {cert: \"{c_cert}\", key: \"{c_key}\"}\n        routes: [{upstream: app}]",
        "      - hosts: [c.test]\n        tls: {cert: \"{c_cert}\", key: \"{c_key}\"}\n"
        "        routes:\n"
        "          - {match: {tls_fingerprints: [\"t12*\"]}, respond: {status: 403, body: \"old client\\n\"}}\n"
        "          - {upstream: app}")
    gh = gatehouse(cfg, tls_port=port, origin_port=origin.port, c_cert=pki["c"][0], c_key=pki["c"][1])
    gh.tls_port = port
    r, body = https_get(pki, port, "c.test")
    assert r.status == 200, body
    c12 = ctx(pki, check_hostname=False, maximum_version=ssl.TLSVersion.TLSv1_2)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=c12, timeout=10)
    conn.request("GET", "/echo", headers={"Host": "c.test"})
    r = conn.getresponse()
    assert r.status == 403 and r.read() == b"old client\n"
    conn.close()
    # over plain HTTP there is no fingerprint: the route does not match
    with session() as s:
        assert s.get(gh.url + "/echo", headers={"Host": "c.test"}, timeout=5).status_code == 200
    # a bad fingerprint is a configuration error with its place
    from conftest import BIN
    bad = os.path.join(gh.dir, "bad.yaml")
    open(bad, "w").write(cfg.replace('"t12*"', '"not-a-ja4"').replace("{tls_port}", "1").replace(
        "{origin_port}", "2").replace("{c_cert}", pki["c"][0]).replace("{c_key}", pki["c"][1]).replace(
        "{proxy_port}", "3").replace("{admin_port}", "4").replace("{workers}", "1").replace(
        "{pid_file}", "/tmp/x.pid"))
    p = subprocess.run([BIN, "validate", "-c", bad], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "match.tls_fingerprints[0]: expected a JA4 fingerprint" in p.stderr, p.stderr
