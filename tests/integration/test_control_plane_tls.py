"""Certificates through the admin API: a site's certificate and key given inline as PEM serve
TLS by SNI; the private key is never shown again (GET, lists, versions, audit, answers) and a
document sent back with "[redacted]" keeps it; tenant keys may not name files on the host."""

import json
import os
import socket
import ssl
import subprocess

import pytest

from helpers import free_port, poll, request
from test_tls import make_cert, run, OPENSSL

OPERATOR = "operator-key-for-tls-tests-0123456789"

CONFIG = """
workers: 1
pid_file: "{pid_file}"
admin: {listen: "127.0.0.1:{admin_port}", store: "{tmp}/var/gh.db"}
listeners:
  - {name: http, listen: "127.0.0.1:{proxy_port}"}
  - name: https
    listen: "127.0.0.1:{tls_port}"
    tls: {cert: "{default_cert}", key: "{default_key}"}
tenants:
  - name: filet
    sites: [{name: s, hosts: [default.test], routes: [{name: r, respond: {status: 200, body: "default\\n"}}]}]
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.pem"), "-days", "2",
        "-subj", "/CN=gatehouse test CA")
    return {"dir": d, "ca": os.path.join(d, "ca.pem"),
            "default": make_cert(d, "default", "default.test", ["DNS:default.test"]),
            "api": make_cert(d, "api", "api.test", ["DNS:api.test"])}


def admin(g, method, path, key=OPERATOR, **kw):
    h = kw.pop("headers", {})
    h["Authorization"] = "Bearer " + key
    if "json" in kw:
        h["Content-Type"] = "application/json"
    return request(method, g.admin_url + path, headers=h, **kw)


def served_cn(port, name, ca):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=name) as t:
            return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]


@pytest.fixture
def gh(gatehouse, pki, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", OPERATOR)
    port = free_port()
    g = gatehouse(CONFIG, tls_port=port, default_cert=pki["default"][0], default_key=pki["default"][1])
    g.tls_port = port
    return g


def test_inline_certificate_served_and_key_never_shown(gh, pki):
    cert = open(pki["api"][0]).read()
    key = open(pki["api"][1]).read()
    assert "PRIVATE KEY-----" in key
    marker = key.splitlines()[1][:40]  # a line of the key's base64
    doc = {"name": "acme", "sites": [{"name": "main", "hosts": ["api.test"], "tls": {"cert": cert, "key": key},
                                      "routes": [{"name": "r", "respond": {"status": 200, "body": "api\n"}}]}]}
    r = admin(gh, "POST", "/v1/tenants", json=doc)
    assert r.status_code == 201, r.text
    assert marker not in r.text and r.json()["sites"][0]["tls"]["key"] == "[redacted]"
    # the new certificate is served by SNI; the file's stays the default
    assert poll(lambda: served_cn(gh.tls_port, "api.test", pki["ca"]) == "api.test")
    assert served_cn(gh.tls_port, "default.test", pki["ca"]) == "default.test"

    # every way of reading it back hides the key
    for path in ("/v1/tenants", "/v1/tenants/acme", "/v1/tenants/acme/sites", "/v1/tenants/acme/sites/main",
                 "/v1/versions/1", "/v1/audit", "/v1/versions/1/diff"):
        r = admin(gh, "GET", path)
        assert r.status_code == 200, (path, r.text)
        assert marker not in r.text, path
        assert "PRIVATE KEY" not in r.text, path
    site = admin(gh, "GET", "/v1/tenants/acme/sites/main")
    assert site.json()["tls"]["key"] == "[redacted]"
    assert site.json()["tls"]["cert"] == cert  # the certificate is public

    # GET, change, PUT back with If-Match: "[redacted]" keeps the stored key
    body = site.json()
    body["routes"][0]["respond"]["body"] = "api v2\n"
    r = admin(gh, "PUT", "/v1/tenants/acme/sites/main", json=body, headers={"If-Match": site.headers["ETag"]})
    assert r.status_code == 200, r.text
    assert poll(lambda: served_cn(gh.tls_port, "api.test", pki["ca"]) == "api.test")
    out = subprocess.run(["curl", "-sS", "--cacert", pki["ca"], "--resolve", "api.test:%d:127.0.0.1" % gh.tls_port,
                          "https://api.test:%d/" % gh.tls_port], capture_output=True, text=True, timeout=10)
    assert out.stdout == "api v2\n", out.stderr
    # the store holds the key (it serves after a restart), the logs never
    gh.stop()
    logs = open(gh.stdout_path).read() + open(gh.stderr_path).read()
    assert marker not in logs and OPERATOR not in logs


def test_bad_inline_key_is_refused_without_echo(gh, pki):
    cert = open(pki["api"][0]).read()
    other = open(pki["default"][1]).read()  # a key that does not match the certificate
    marker = other.splitlines()[1][:40]
    doc = {"name": "acme", "sites": [{"name": "main", "hosts": ["api.test"], "tls": {"cert": cert, "key": other},
                                      "routes": [{"name": "r", "respond": {"status": 200}}]}]}
    r = admin(gh, "POST", "/v1/tenants", json=doc)
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert marker not in r.text and "PRIVATE KEY" not in r.text
    assert "inline key" in r.text
    assert admin(gh, "GET", "/v1/tenants/acme").status_code == 404


def test_tenant_keys_cannot_name_host_files(gh, pki):
    r = admin(gh, "POST", "/v1/tenants", json={"name": "acme", "sites": []})
    assert r.status_code == 201
    k = admin(gh, "POST", "/v1/tenants/acme/keys", json={"name": "w", "scopes": ["read", "write"]}).json()["key"]
    site = {"name": "main", "hosts": ["api.test"], "tls": {"cert": pki["api"][0], "key": pki["api"][1]},
            "routes": [{"name": "r", "respond": {"status": 200}}]}
    r = admin(gh, "POST", "/v1/tenants/acme/sites", key=k, json=site)
    assert r.status_code == 422 and "names a file on the gateway" in r.json()["detail"], r.text
    r = admin(gh, "PUT", "/v1/tenants/acme", key=k, json={"name": "acme", "flags": {"file": "/etc/passwd"}})
    assert r.status_code == 422 and "names a file" in r.json()["detail"], r.text
    # the same with inline PEM is fine for the tenant's key; the operator may use paths
    site["tls"] = {"cert": open(pki["api"][0]).read(), "key": open(pki["api"][1]).read()}
    assert admin(gh, "POST", "/v1/tenants/acme/sites", key=k, json=site).status_code == 201
    site2 = dict(site, name="second", hosts=["two.test"], tls={"cert": pki["api"][0], "key": pki["api"][1]},
                 routes=[{"name": "r2", "respond": {"status": 200}}])
    r = admin(gh, "POST", "/v1/tenants/acme/sites", json=site2)
    assert r.status_code == 201, r.text
