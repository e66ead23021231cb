"""Request rules (src/rules): YAML rules and Netlify _redirects/_headers files, through the
real binary to a real origin: redirects, rewrites, header edits, direct responses, every
condition, first-match order, shadowed (non-forced) rules, reload and bad input."""

import json
import os
import re
import subprocess

import pytest

from conftest import BIN
from helpers import HEADER, metric_value
from rawhttp import one, request_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NETLIFY = os.path.join(REPO, "tests", "rules", "netlify")

CONFIG = HEADER + """
protection: {geoip: {database: "{mmdb}"}}
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  other: {backends: ["127.0.0.1:{other_port}"]}
tenants:
  - name: acme
    flags:
      definition:
        flags:
          checkout: {state: ENABLED, defaultVariant: "off", variants: {"on": true, "off": false},
                     targeting: {"if": [{"==": [{"var": "targetingKey"}, "u-on"]}, "on", "off"]}}
    sites:
      - hosts: ["example.com"]
        rules:
          - match: {path: /old/:year/*}
            redirect: {to: "/new/:year/:splat", status: 308}
          - match: {path: /moved}
            redirect: {to: "https://elsewhere.test/landing"}
          - match: {path: /temp, methods: [POST]}
            redirect: {to: /temp-post, status: 307}
          - match: {path: /temp}
            redirect: {to: /temp-get, status: 302}
          - match: {path: /app/*}
            rewrite: {to: /echo/spa/:splat}
          - match: {path: /svc/*}
            rewrite: {to: /echo/svc/:splat, upstream: other}
          - match: {path: /gone}
            respond: {status: 410, body: "gone for good\\n", content_type: text/plain, headers: {X-Why: moved-on}}
          - match: {path: /q, query: {id: ":id"}}
            redirect: {to: "/item/:id", status: 302}
          - match: {path: /hdr, headers: [{name: X-Beta, exact: "yes"}]}
            respond: {status: 200, body: "beta\\n"}
          - match: {path: /ck, cookies: {session: true}}
            respond: {status: 200, body: "has-session\\n"}
          - match: {path: /ck, cookies: {lang: fr}}
            respond: {status: 200, body: "french\\n"}
          - match: {path: /geo, countries: [DE]}
            respond: {status: 200, body: "de\\n"}
          - match: {path: /geo, client_ip: [127.0.31.0/24]}
            respond: {status: 200, body: "net31\\n"}
          - match: {path: /lang, languages: [fr]}
            redirect: {to: /fr/, status: 302}
          - match: {path: /first}
            respond: {status: 200, body: "first\\n"}
          - match: {path: /first}
            respond: {status: 200, body: "second\\n"}
          - match: {path: /shadow/*}
            redirect: {to: /echo/found/:splat, status: 302}
            force: false
          - match: {path: /spa/*}
            rewrite: {to: /echo/index.html}
            force: false
          - match: {path: /flagged, variant: {flag: checkout, in: ["on"]}}
            respond: {status: 200, body: "checkout-on\\n"}
          - request_headers: {set: {X-Edge: rules}, append: {X-Trail: a}, remove: [X-Secret]}
            response_headers: {set: {X-Frame-Options: DENY}, remove: [X-Powered-By]}
        routes:
          - name: web
            upstream: app
            flag: {key: checkout, unit: "header:X-User"}
      - hosts: ["bare.example.com"]
        rules:
          - match: {path: /here}
            redirect: {to: /there, status: 301}
        routes:
          - name: only
            match: {path: {exact: /only}}
            respond: {status: 200, body: "only\\n"}
"""


@pytest.fixture(scope="module")
def env(gatehouse_module, origin_module, tmp_path_factory):
    from conftest import OriginFactory
    d = tmp_path_factory.mktemp("rules")
    mmdb = d / "c.mmdb"
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "mmdb.py"), str(mmdb),
                        "127.0.30.0/24=DE", "127.0.31.0/24=US"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    f = OriginFactory()
    other = f("other")
    gh = gatehouse_module(CONFIG, origin_port=origin_module.port, other_port=other.port, mmdb=str(mmdb))
    yield gh, origin_module, other
    f.stop_all()


def get(gh, path, host="example.com", headers=(), method="GET", source=None, body=b""):
    return one(gh.port, request_bytes(method, path, host=host, headers=headers, body=body), method=method,
               source=source)


def echo(resp):
    assert resp.status == 200, resp
    return json.loads(resp.body)


def hdr(resp, name):
    return resp.header(name)


def test_redirect_with_placeholder_and_splat(env):
    gh, _, _ = env
    r = get(gh, "/old/2024/a/b.html?x=1")
    assert r.status == 308
    assert hdr(r, "location") == "/new/2024/a/b.html?x=1"  # the query is passed on


def test_redirect_statuses_and_absolute_target(env):
    gh, _, _ = env
    r = get(gh, "/moved")
    assert (r.status, hdr(r, "location")) == (301, "https://elsewhere.test/landing")
    assert get(gh, "/temp").status == 302 and hdr(get(gh, "/temp"), "location") == "/temp-get"
    r = get(gh, "/temp", method="POST", body=b"x", headers=[("Content-Type", "text/plain")])
    assert (r.status, hdr(r, "location")) == (307, "/temp-post")


def test_rewrite_changes_the_path_sent_upstream(env):
    gh, origin, _ = env
    e = echo(get(gh, "/app/settings/profile?tab=2"))
    assert e["path"] == "/echo/spa/settings/profile"
    assert e["query"] == "tab=2"
    assert any(p.startswith("/echo/spa/settings/profile") for p in origin.paths_seen())


def test_rewrite_to_another_upstream(env):
    gh, _, other = env
    r = get(gh, "/svc/v1/users")
    e = echo(r)
    assert e["path"] == "/echo/svc/v1/users"
    assert any(p.startswith("/echo/svc/v1/users") for p in other.paths_seen())


def test_direct_response(env):
    gh, _, _ = env
    r = get(gh, "/gone")
    assert r.status == 410
    assert r.body == b"gone for good\n"
    assert hdr(r, "content-type") == "text/plain"
    assert hdr(r, "x-why") == "moved-on"


def test_query_condition_and_capture(env):
    gh, _, _ = env
    r = get(gh, "/q?id=42&utm=x")
    assert (r.status, hdr(r, "location")) == (302, "/item/42")  # query consumed by the rule
    e = echo(get(gh, "/q"))  # no id: the rule does not match, the request is proxied
    assert e["path"] == "/q"


def test_header_and_cookie_conditions(env):
    gh, _, _ = env
    assert get(gh, "/hdr", headers=[("X-Beta", "yes")]).body == b"beta\n"
    assert get(gh, "/hdr", headers=[("X-Beta", "no")]).status == 200
    assert echo(get(gh, "/hdr", headers=[("X-Beta", "no")]))["path"] == "/hdr"
    assert get(gh, "/ck", headers=[("Cookie", "a=1; session=xyz")]).body == b"has-session\n"
    assert get(gh, "/ck", headers=[("Cookie", "lang=fr")]).body == b"french\n"
    assert echo(get(gh, "/ck", headers=[("Cookie", "lang=de")]))["path"] == "/ck"


def test_country_and_client_ip_conditions(env):
    gh, _, _ = env
    assert get(gh, "/geo", source="127.0.30.7").body == b"de\n"
    assert get(gh, "/geo", source="127.0.31.7").body == b"net31\n"
    assert echo(get(gh, "/geo", source="127.0.32.7"))["path"] == "/geo"


def test_language_condition(env):
    gh, _, _ = env
    r = get(gh, "/lang", headers=[("Accept-Language", "fr-CH, fr;q=0.9, en;q=0.8")])
    assert (r.status, hdr(r, "location")) == (302, "/fr/")
    assert echo(get(gh, "/lang", headers=[("Accept-Language", "en-US")]))["path"] == "/lang"


def test_first_match_wins(env):
    gh, _, _ = env
    assert get(gh, "/first").body == b"first\n"


def test_flag_variant_condition(env):
    gh, _, _ = env
    assert get(gh, "/flagged", headers=[("X-User", "u-on")]).body == b"checkout-on\n"
    assert echo(get(gh, "/flagged", headers=[("X-User", "u-off")]))["path"] == "/flagged"


def test_header_edits_on_request_and_response(env):
    gh, _, _ = env
    r = get(gh, "/echo/h", headers=[("X-Secret", "s3cr3t"), ("X-Trail", "z")])
    e = echo(r)
    names = [(n.lower(), v) for n, v in e["headers"]]
    assert ("x-edge", "rules") in names
    assert ("x-secret", "s3cr3t") not in names and not any(n == "x-secret" for n, _ in names)
    assert ("x-trail", "z") in names and ("x-trail", "a") in names  # appended, the client's kept
    assert hdr(r, "x-frame-options") == "DENY"
    # header rules apply to direct answers too
    assert hdr(get(gh, "/gone"), "x-frame-options") == "DENY"


def test_shadowed_rule_applies_only_when_the_origin_has_no_such_path(env):
    gh, _, _ = env
    # the origin has these paths (it echoes): the non-forced rules stay in the shadow
    assert echo(get(gh, "/shadow/x"))["path"] == "/shadow/x"
    assert echo(get(gh, "/spa/dashboard"))["path"] == "/spa/dashboard"


SHADOW = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        redirects: {text: "/nf/old/*  /echo/new/:splat  301\\n/nf/spa/*  /echo/index.html  200\\n/nf/forced  /echo/forced  302!\\n"}
        routes: [{name: web, upstream: app}]
"""


def test_shadowing_netlify_semantics(gatehouse, origin):
    gh = gatehouse(SHADOW, origin_port=origin.port)
    # not forced: the origin is asked first; its 404 lets the rule apply
    r = get(gh, "/nf/old/page")
    assert (r.status, hdr(r, "location")) == (301, "/echo/new/page")
    r = get(gh, "/nf/spa/deep/link")
    e = echo(r)
    assert e["path"] == "/echo/index.html"
    assert "/nf/spa/deep/link" in origin.paths_seen()  # it was tried first
    # forced: applies without asking the origin
    before = len(origin.paths_seen())
    r = get(gh, "/nf/forced")
    assert (r.status, hdr(r, "location")) == (302, "/echo/forced")
    assert "/nf/forced" not in origin.paths_seen()[before:]
    samples = gh.metrics()
    assert metric_value(samples, "gatehouse_rules_applied_total", tenant="acme", route="web", action="redirect") >= 2
    assert metric_value(samples, "gatehouse_rules_applied_total", tenant="acme", route="web", action="rewrite") >= 1


def test_rules_without_a_route(env):
    gh, _, _ = env
    r = get(gh, "/here", host="bare.example.com")
    assert (r.status, hdr(r, "location")) == (301, "/there")
    assert get(gh, "/nothing", host="bare.example.com").status == 404
    assert get(gh, "/only", host="bare.example.com").body == b"only\n"


# ---------------------------------------------------------------- Netlify files

FILES = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
  api: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        redirects: {file: "{redirects}"}
        headers: {file: "{headers}"}
        routes: [{name: web, upstream: app}]
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_netlify_files_and_reload(gatehouse, origin, tmp_path):
    red = write(tmp_path, "_redirects", """# migration
/blog/:year/:slug   /posts/:year-:slug.html   301!
/store  id=:id  /echo/product/:id  200!
/docs/*   /echo/documentation/:splat  200!
/fr/*     /echo/fr/:splat   302!  Country=fr
/old      /echo/new
""")
    heads = write(tmp_path, "_headers", """/*
  X-Frame-Options: DENY
  X-Content-Type-Options: nosniff
/docs/*
  Cache-Control: public, max-age=60
""")
    gh = gatehouse(FILES, origin_port=origin.port, redirects=red, headers=heads)
    r = get(gh, "/blog/2023/hello")
    assert (r.status, hdr(r, "location")) == (301, "/posts/2023-hello.html")
    assert echo(get(gh, "/store?id=77"))["path"] == "/echo/product/77"
    r = get(gh, "/docs/a/b")
    assert echo(r)["path"] == "/echo/documentation/a/b"
    assert hdr(r, "x-frame-options") == "DENY" and hdr(r, "x-content-type-options") == "nosniff"
    assert hdr(r, "cache-control") == "public, max-age=60"
    # no GeoIP database: a Country condition never matches
    assert echo(get(gh, "/fr/x"))["path"] == "/fr/x"
    # /old is not forced and the origin has /old (echo): shadowed
    assert echo(get(gh, "/old"))["path"] == "/old"
    # reload with a changed file: the new rules apply, atomically with the rest
    write(tmp_path, "_redirects", "/blog/*  /echo/archive/:splat  200!\n")
    gh.reload()
    from helpers import poll
    assert poll(lambda: get(gh, "/blog/2023/hello").status == 200, timeout=5)
    assert echo(get(gh, "/blog/2023/hello"))["path"] == "/echo/archive/2023/hello"


def test_netlify_proxy_to_absolute_url_needs_a_declared_pool(tmp_path, origin):
    red = write(tmp_path, "_redirects", "/api/*  http://127.0.0.1:%d/echo/api/:splat  200!\n" % origin.port)
    bad = write(tmp_path, "_bad", "/api/*  https://api.unknown.test/:splat  200!\n")
    heads = write(tmp_path, "_headers", "")
    from helpers import fill, run_cli
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(fill(FILES, {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p"),
                                "origin_port": origin.port, "redirects": red, "headers": heads}))
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    cfg.write_text(fill(FILES, {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p"),
                                "origin_port": origin.port, "redirects": bad, "headers": heads}))
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 1
    assert "_bad:1:" in p.stderr and "no upstream has the backend api.unknown.test:443" in p.stderr, p.stderr


def test_netlify_absolute_proxy_serves(gatehouse, origin, tmp_path):
    red = write(tmp_path, "_redirects", "/api/*  http://127.0.0.1:%d/echo/api/:splat  200!\n" % origin.port)
    heads = write(tmp_path, "_headers", "/api/*\n  X-Api: 1\n")
    gh = gatehouse(FILES, origin_port=origin.port, redirects=red, headers=heads)
    r = get(gh, "/api/v2/things?x=1")
    e = echo(r)
    assert e["path"] == "/echo/api/v2/things" and e["query"] == "x=1"
    host = [v for n, v in e["headers"] if n.lower() == "host"]
    assert host == ["127.0.0.1:%d" % origin.port]
    assert hdr(r, "x-api") == "1"


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(NETLIFY, "invalid")))
                         if os.path.isdir(os.path.join(NETLIFY, "invalid")) else [])
def test_invalid_netlify_files_are_refused_with_file_and_line(tmp_path, name):
    src = os.path.join(NETLIFY, "invalid", name)
    first = open(src).readline()
    m = re.match(r"#\s*expect:\s*(\d+:\d+):\s*(.*\S)", first)
    assert m, "%s: first line must be '# expect: LINE:COL: text'" % name
    heads = write(tmp_path, "_headers", "")
    kind = "headers" if "headers" in name else "redirects"
    from helpers import fill, run_cli
    cfg = tmp_path / "g.yaml"
    vals = {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p"), "origin_port": 9,
            "redirects": src if kind == "redirects" else heads, "headers": src if kind == "headers" else heads}
    cfg.write_text(fill(FILES, vals))
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 1, p.stdout
    assert "%s:%s:" % (src, m.group(1)) in p.stderr and m.group(2) in p.stderr, p.stderr


def test_yaml_rule_errors_have_line_and_column(tmp_path):
    from helpers import fill, run_cli
    text = HEADER + """
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        rules:
          - match: {path: old}
            redirect: {to: /new, status: 200}
          - match: {path: /x/:a}
            redirect: {to: /y/:b}
          - response_headers: {set: {Content-Length: "5"}}
          - match: {path: /z}
        routes: [{name: r, respond: {status: 200}}]
"""
    cfg = tmp_path / "g.yaml"
    cfg.write_text(fill(text, {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p")}))
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 1
    err = p.stderr
    assert re.search(r"g\.yaml:\d+:\d+: tenants\[0\]\.sites\[0\]\.rules\[0\]\.match\.path: .*start with", err), err
    assert re.search(r"rules\[0\]\.redirect\.status: .*301", err), err
    assert "set by gatehouse" in err or "managed" in err, err
    assert re.search(r"rules\[3\]: a rule needs an effect", err), err


# ---------------------------------------------------------------- through the admin API

API_CONFIG = HEADER.replace('admin: {listen: "127.0.0.1:{admin_port}"}',
                            'admin: {listen: "127.0.0.1:{admin_port}", store: "{tmp}/cp.db"}') + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants: []
"""


def test_rules_and_functions_through_the_admin_api(gatehouse, origin, monkeypatch):
    import helpers
    monkeypatch.setenv("GATEHOUSE_ADMIN_KEY", "op-rules-key-0123456789abcdef")
    gh = gatehouse(API_CONFIG, origin_port=origin.port)
    op = {"Authorization": "Bearer op-rules-key-0123456789abcdef"}
    doc = {"name": "shop", "upstreams": {"web": {"backends": ["127.0.0.1:%d" % origin.port]}},
           "sites": [{"name": "s", "hosts": ["shop.test"],
                      "rules": [{"match": {"path": "/a/:x"}, "redirect": {"to": "/b/:x", "status": 302}}],
                      "redirects": {"text": "/old/*  /echo/new/:splat  200!\n"},
                      "headers": {"text": "/*\n  X-Shop: yes\n"},
                      "routes": [{"name": "all", "upstream": "web",
                                  "function": {"code": "function on_request(r) r:set_header('X-Fn', 'on') end"}}]}]}
    r = helpers.request("POST", gh.admin_url + "/v1/tenants", json=doc, headers=op)
    assert r.status_code == 201, r.text
    got = get(gh, "/a/1", host="shop.test")
    assert (got.status, hdr(got, "location"), hdr(got, "x-shop")) == (302, "/b/1", "yes")
    e = echo(get(gh, "/old/z", host="shop.test"))
    assert e["path"] == "/echo/new/z"
    assert ("x-fn", "on") in [(n.lower(), v) for n, v in e["headers"]]
    # a rule error is a 422 with the path of the bad field; nothing changes
    bad = json.loads(json.dumps(doc))
    bad["sites"][0]["redirects"] = {"text": "/x  /y  299\n"}
    r = helpers.request("PUT", gh.admin_url + "/v1/tenants/shop", json=bad, headers=op)
    assert r.status_code == 422, r.text
    assert "status 299" in r.text and "redirects" in r.text
    assert get(gh, "/a/1", host="shop.test").status == 302
    # a tenant key may not name a file on the gateway
    r = helpers.request("POST", gh.admin_url + "/v1/tenants/shop/keys", json={"name": "k", "scopes": ["read", "write"]},
                        headers=op)
    assert r.status_code == 201, r.text
    tk = {"Authorization": "Bearer " + r.json()["key"]}
    bad = json.loads(json.dumps(doc))
    bad["sites"][0]["redirects"] = {"file": "/etc/passwd"}
    r = helpers.request("PUT", gh.admin_url + "/v1/tenants/shop", json=bad, headers=tk)
    assert r.status_code == 422 and "names a file" in r.text, r.text


def test_missing_files_are_load_errors(tmp_path):
    from helpers import fill, run_cli
    gone = str(tmp_path / "no-such-file")
    cfg = tmp_path / "g.yaml"
    cfg.write_text(fill(FILES, {"proxy_port": 1, "admin_port": 2, "workers": 1, "pid_file": str(tmp_path / "p"),
                                "origin_port": 9, "redirects": gone, "headers": gone}))
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 1
    assert re.search(r"sites\[0\]\.redirects\.file: cannot read .*no-such-file.*No such file", p.stderr), p.stderr
    assert re.search(r"sites\[0\]\.headers\.file: cannot read", p.stderr), p.stderr
