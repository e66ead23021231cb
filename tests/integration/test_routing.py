"""Routing: tenant/site by Host, route by path/method/headers, direct responses."""

import json

import pytest

from helpers import HEADER
from rawhttp import one, request_bytes

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com", "*.example.com"]
        routes:
          - name: exact
            match: {path: {exact: /exact}}
            respond: {status: 200, body: "exact\\n", headers: {Content-Type: text/plain}}
          - name: api
            match: {path: {prefix: /api}, methods: [GET, POST], headers: [{name: X-Env, exact: beta}]}
            respond: {status: 200, body: "api-beta\\n"}
          - name: api-any
            match: {path: {prefix: /api}}
            respond: {status: 200, body: "api-any\\n"}
          - name: re
            match: {path: {regex: "^/items/[0-9]+$"}}
            respond: {status: 201, body: "item\\n", headers: {Content-Type: text/plain, X-Route: re}}
          - name: proxied
            match: {path: {prefix: /up/}}
            upstream: app
  - name: beta
    sites:
      - hosts: ["noroute.test"]
        routes:
          - name: only
            match: {path: {exact: /only}}
            respond: {status: 200, body: "only\\n"}
      - hosts: ["exact.example.com"]
        routes:
          - name: more-specific
            respond: {status: 200, body: "exact-host-site\\n"}
"""

CATCHALL = HEADER + """
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes: [{name: a, respond: {status: 200, body: "acme\\n"}}]
  - name: other
    sites: [{hosts: ["*"], routes: [{name: all, respond: {status: 200, body: "catchall\\n"}}]}]
"""


@pytest.fixture(scope="module")
def gh(gatehouse_module, origin_module):
    return gatehouse_module(CONFIG, origin_port=origin_module.port)


def body(gh, path, host="example.com", method="GET", headers=None):
    r = gh.request(method, path, host=host, headers=headers)
    return r.status_code, r.text


def test_exact_host_exact_path(gh):
    assert body(gh, "/exact") == (200, "exact\n")


def test_exact_path_ignores_query(gh):
    assert body(gh, "/exact?a=1&b=2") == (200, "exact\n")


@pytest.mark.parametrize("path", ["/exact/", "/exactx", "/Exact", "/"])
def test_exact_path_does_not_match_others(gh, path):
    status, _ = body(gh, path)
    assert status == 404


def test_wildcard_host(gh):
    assert body(gh, "/exact", host="www.example.com") == (200, "exact\n")
    assert body(gh, "/exact", host="a.b.example.com") == (200, "exact\n")


def test_exact_host_beats_wildcard(gh):
    assert body(gh, "/exact", host="exact.example.com") == (200, "exact-host-site\n")


def test_wildcard_does_not_match_lookalike(gh):
    status, _ = body(gh, "/exact", host="notexample.com")
    assert status == 404
    status, _ = body(gh, "/exact", host="example.com.evil")
    assert status == 404


@pytest.mark.parametrize("host", ["EXAMPLE.COM", "example.com:8080", "Example.Com:80",
                                  "WWW.Example.com:1234"])
def test_host_case_and_port(gh, host):
    assert body(gh, "/exact", host=host) == (200, "exact\n")


def test_prefix_with_method_and_header(gh):
    assert body(gh, "/api/v1/x", headers={"X-Env": "beta"}) == (200, "api-beta\n")
    assert body(gh, "/api", method="POST", headers={"X-Env": "beta"}) == (200, "api-beta\n")


def test_header_name_case_insensitive(gh):
    r = one(gh.port, request_bytes("GET", "/api/v1", headers=[("x-eNV", "beta")]))
    assert (r.status, r.body) == (200, b"api-beta\n")


def test_header_value_mismatch_falls_through(gh):
    assert body(gh, "/api/v1", headers={"X-Env": "alpha"}) == (200, "api-any\n")
    assert body(gh, "/api/v1") == (200, "api-any\n")


def test_method_mismatch_falls_through(gh):
    assert body(gh, "/api/v1", method="DELETE", headers={"X-Env": "beta"}) == (200, "api-any\n")
    assert body(gh, "/api/v1", method="PUT", headers={"X-Env": "beta"}) == (200, "api-any\n")


def test_regex_path(gh):
    r = gh.get("/items/42")
    assert r.status_code == 201
    assert r.text == "item\n"
    assert r.headers["X-Route"] == "re"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.headers["Content-Length"] == "5"


def test_regex_path_without_query(gh):
    assert body(gh, "/items/7?x=/items/abc") == (201, "item\n")
    status, _ = body(gh, "/items/abc?x=1")
    assert status == 404
    status, _ = body(gh, "/items/42/more")
    assert status == 404


def test_no_site_for_host_is_404(gh):
    status, _ = body(gh, "/exact", host="unknown.test")
    assert status == 404


def test_site_without_matching_route_is_404(gh):
    assert body(gh, "/only", host="noroute.test") == (200, "only\n")
    status, _ = body(gh, "/other", host="noroute.test")
    assert status == 404


def test_route_to_upstream(gh, origin_module):
    r = gh.get("/up/thing?q=1")
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "m1"
    assert doc["target"] == "/up/thing?q=1"


def test_respond_head(gh):
    r = one(gh.port, request_bytes("HEAD", "/exact"), method="HEAD")
    assert r.status == 200
    assert r.body == b""


def test_catch_all_host(gatehouse):
    gh = gatehouse(CATCHALL)
    assert body(gh, "/", host="anything.test") == (200, "catchall\n")
    assert body(gh, "/x", host="10.0.0.1:99") == (200, "catchall\n")
    assert body(gh, "/", host="example.com") == (200, "acme\n")
    assert body(gh, "/", host="EXAMPLE.com:1") == (200, "acme\n")
