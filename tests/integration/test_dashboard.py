"""The web dashboard (web/dashboard, embedded in the binary, served at /dashboard/ on the admin
listener): its files over HTTP, then the page itself in Debian's headless Chromium driven by
playwright-core (tests/js/dashboard.mjs) against real traffic: a wrong key, the operator key,
charts that are drawn, the numbers gatehouse counted, screenshots that are not blank."""

import http.client
import json
import os
import struct
import subprocess
import threading
import time
import zlib

import pytest

from helpers import poll, request

KEY = "dashboard-operator-key-7c41e0b2"

CONFIG = """
workers: 1
pid_file: "{pid_file}"
drain_timeout: 1s
access_log: off
admin: {listen: "127.0.0.1:{admin_port}", key_file: "{tmp}/operator.key", store: "{tmp}/cp.db",
        rate_limit: "1000/s", burst: 1000}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
demo_origin: {listen: "127.0.0.1:{demo_port}"}
cache: {memory: 8m}
experiments: {store: "{tmp}/exp.db"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: shop
    flags:
      definition:
        flags:
          new-home: {state: ENABLED, variants: {"on": true, "off": false}, defaultVariant: "off",
                     targeting: {fractional: [["on", 50], ["off", 50]]}}
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics: [{name: checkout, kind: conversion, path: /home/checkout}]
    protection:
      deny: ["127.0.0.3/32"]
    sites:
      - name: main
        hosts: ["shop.example"]
        routes:
          - {name: home, match: {path: {prefix: /home}}, upstream: demo, flag: {key: new-home, unit: "cookie:uid"}}
          - {name: static, match: {path: {prefix: /static/}}, upstream: demo, cache: {default_ttl: 60s}}
          - {name: boom, match: {path: {prefix: /boom}}, respond: {status: 500, body: "boom\\n"},
             slos: [{name: boom-up, objective: availability, target: 0.999, window: 1h}]}
          - {name: missing, match: {path: {prefix: /missing}}, respond: {status: 404, body: "no\\n"}}
          - {name: pages, upstream: demo, analytics: true}
  - name: blog
    sites:
      - name: b
        hosts: ["blog.example"]
        routes:
          - {name: hello, respond: {status: 200, body: "hi\\n"}}
"""


@pytest.fixture(scope="module")
def gh(gatehouse_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("dashboard")
    (d / "operator.key").write_text(KEY + "\n")
    env_key = os.environ.pop("GATEHOUSE_ADMIN_KEY", None)  # the file's key must be the one in force
    try:
        g = gatehouse_module(CONFIG.replace("{tmp}", str(d)), workers=1)
    finally:
        if env_key is not None:
            os.environ["GATEHOUSE_ADMIN_KEY"] = env_key
    return g


def get_from(gh, path, host, source="127.0.0.1", headers=None):
    """A GET through the proxy from a chosen loopback source address (127.0.0.3 is denied)."""
    c = http.client.HTTPConnection("127.0.0.1", gh.port, timeout=5, source_address=(source, 0))
    try:
        c.request("GET", path, headers=dict({"Host": host}, **(headers or {})))
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_dashboard_files(gh):
    base = gh.admin_url
    # no key needed for the page and its files
    r = request("GET", base + "/dashboard", allow_redirects=False)
    assert r.status_code == 308 and r.headers["Location"] == "/dashboard/"
    r = request("GET", base + "/dashboard/")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert 'src="app.js"' in r.text and "uPlot.iife.min.js" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from the internet
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.text == request("GET", base + "/dashboard/index.html").text
    types = {"app.js": "text/javascript; charset=utf-8", "prom.js": "text/javascript; charset=utf-8",
             "style.css": "text/css; charset=utf-8", "uPlot.iife.min.js": "text/javascript; charset=utf-8",
             "uPlot.min.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
    for name, ctype in types.items():
        r = request("GET", base + "/dashboard/" + name)
        assert r.status_code == 200, (name, r.status_code)
        assert r.headers["Content-Type"] == ctype, name
        assert int(r.headers["Content-Length"]) == len(r.content) > 100, name
        et = r.headers["ETag"]
        assert et.startswith('"') and et.endswith('"'), et
        r2 = request("GET", base + "/dashboard/" + name, headers={"If-None-Match": et})
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["ETag"] == et, name
        r3 = request("GET", base + "/dashboard/" + name, headers={"If-None-Match": '"other"'})
        assert r3.status_code == 200 and r3.content == r.content
        h = request("HEAD", base + "/dashboard/" + name)
        assert h.status_code == 200 and h.content == b"" and h.headers["Content-Length"] == r.headers["Content-Length"]
    assert b"uPlot" in request("GET", base + "/dashboard/uPlot.iife.min.js").content
    # what is not there, and the wrong methods
    for path in ("/dashboard/nope.js", "/dashboard/../metrics", "/dashboard/x/app.js", "/dashboardx"):
        r = request("GET", base + path)
        assert r.status_code in (400, 401, 404), (path, r.status_code)
        assert r.status_code != 200
    r = request("GET", base + "/dashboard/nope.js")
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")
    r = request("POST", base + "/dashboard/app.js", data=b"x")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = request("DELETE", base + "/dashboard/")
    assert r.status_code == 405
    # the data still needs the key
    assert request("GET", base + "/metrics").status_code == 401
    assert request("GET", base + "/metrics", headers={"Authorization": "Bearer " + KEY}).status_code == 200


# ----------------------------------------------------------------------------- in the browser

def png_pixels(path):
    """(width, height, set of distinct RGB colours) of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours = set()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                line[i] = (line[i] + ((line[i - bpp] if i >= bpp else 0) + prev[i]) // 2) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 2 == 0:  # every other row is plenty to tell a drawing from a blank
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
        prev = line
    return w, h, colours


def histogram_quantile(q, buckets):
    """PromQL's histogram_quantile over cumulative [(le, count)], le ascending with +Inf last."""
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c) if c > prev_c else le
        prev_le, prev_c = le, c
    return prev_le


def test_dashboard_in_chromium(gh, tmp_path):
    from test_flags import js_clients
    js = js_clients()  # tests/js/package.json (playwright-core among them) in build/js, the .mjs copied
    assert os.path.exists("/usr/bin/chromium"), "chromium (Debian) is missing: make deps"
    shop, blog = "shop.example", "blog.example"
    # traffic: the experiment's units (a third convert), pages with referrers, 4xx, 5xx, blocked, cached
    for i in range(60):
        assert get_from(gh, "/home/x", shop, headers={"Cookie": "uid=u%d" % i}) == 200
        if i % 3 == 0:
            get_from(gh, "/home/checkout", shop, headers={"Cookie": "uid=u%d" % i})
    page_counts = {"/p1": 40, "/p2": 20, "/p3": 12, "/p4": 8}
    n = 0
    for path, count in page_counts.items():
        for _ in range(count):
            n += 1
            assert get_from(gh, path, shop, headers={"Referer": "http://ref%d.example/" % (n % 3)}) == 200
    for _ in range(15):
        assert get_from(gh, "/missing", shop) == 404
    for _ in range(25):
        assert get_from(gh, "/boom", shop) == 500
    for _ in range(20):
        assert get_from(gh, "/static/a.css", shop) == 200
        assert get_from(gh, "/static/b", shop, source="127.0.0.3") == 403
    for _ in range(30):
        assert get_from(gh, "/", blog) == 200
    auth = {"Authorization": "Bearer " + KEY}
    res = request("GET", gh.admin_url + "/v1/experiments/home-test/results?tenant=shop", headers=auth).json()
    units = res["units"]
    assert sum(units.values()) == 60, units
    slos = request("GET", gh.admin_url + "/v1/slos", headers=auth).status_code
    r = request("POST", gh.admin_url + "/v1/tenants/blog/keys", headers=auth, json={"name": "dash", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    blog_key = r.json()["key"]

    # while the browser looks: steady traffic on routes the numbers below do not count
    stop = threading.Event()

    def background():
        while not stop.is_set():
            try:
                get_from(gh, "/", blog)
                get_from(gh, "/static/a.css", shop)
                get_from(gh, "/boom", shop)
                get_from(gh, "/static/c", shop, source="127.0.0.3")
            except OSError:
                pass
            stop.wait(0.05)

    t = threading.Thread(target=background, daemon=True)
    t.start()
    out = tmp_path / "shots"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    started = time.monotonic()
    try:
        p = subprocess.run(["node", os.path.join(js, "dashboard.mjs"), gh.admin_url, KEY, str(out), "1", blog_key],
                           cwd=js, env=env, capture_output=True, text=True, timeout=90)
    finally:
        stop.set()
        t.join(5)
    took = time.monotonic() - started
    assert p.stdout.strip(), "dashboard.mjs printed nothing:\n" + p.stderr[-3000:]
    rep = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and not rep.get("error"), "%s\n%s\n--- page:\n%s" % (
        rep.get("error"), "\n".join(rep.get("console", [])[-20:]), rep.get("failureText", "")[:4000])
    print("browser session took %.1f s" % took)

    # the wrong key: an error, no dashboard, nothing stored
    assert "not accepted" in rep["loginError"] and "401" in rep["loginError"], rep["loginError"]
    assert rep["mainHiddenAfterWrongKey"] and rep["storedAfterWrongKey"] == 0
    # the key: in sessionStorage and the Authorization header, never in a URL; gone after logging out
    assert rep["storage"] == ["gatehouse.dashboard.key"] and rep["storageAfterLogout"] == 0
    assert KEY not in rep["url"]
    data_requests = [r for r in rep["requests"] if "/dashboard/" not in r["url"]]
    assert len(data_requests) > 20
    assert all(KEY not in r["url"] for r in rep["requests"])
    keys = {"Bearer " + k for k in ("not-the-key", KEY, blog_key)}
    assert all(r["auth"] in keys for r in data_requests), [r for r in data_requests if r["auth"] not in keys][:3]
    assert not [c for c in rep["console"] if c.startswith("pageerror")], rep["console"]

    d = rep["data"]
    assert d["who"] == "operator" and d["notice"] == ""
    # every chart is drawn: axes, grid and lines in the series' colours
    for chart, c in d["canvases"].items():
        assert c is not None, "%s: no canvas" % chart
        assert c["colours"] > 5 and c["painted"] > 2000, (chart, c)
        assert c["series"] > 20, "%s: no line drawn: %s" % (chart, c)
    assert {"blog", "shop"} <= set(d["canvases"]["chart-tenants"]["legend"])
    assert "blog/hello" in d["canvases"]["chart-routes"]["legend"]
    assert {"p50", "p90", "p99"} <= set(d["canvases"]["chart-latency"]["legend"])
    assert "deny (block)" in d["canvases"]["chart-protection"]["legend"]

    # the numbers gatehouse counted, as the tables show them
    tables = d["tables"]
    head = tables["routes-table"][0]
    rows = {(r[0], r[1]): dict(zip(head, r)) for r in tables["routes-table"][1:]}
    assert rows[("shop", "pages")]["requests"] == "80" and rows[("shop", "pages")]["2xx"] == "80", rows[("shop", "pages")]
    assert rows[("shop", "missing")]["4xx"] == "15"
    assert rows[("shop", "home")]["requests"] == str(60 + 20)
    assert int(rows[("shop", "boom")]["5xx"]) >= 25 and int(rows[("blog", "hello")]["2xx"]) >= 30
    assert float(rows[("blog", "hello")]["p99 ms"]) > 0
    # the page's percentiles are PromQL's histogram_quantile over the route's buckets
    text = request("GET", gh.admin_url + "/metrics", headers=auth).text
    buckets = []
    for line in text.splitlines():
        if line.startswith('gatehouse_request_duration_seconds_bucket{tenant="shop",route="pages",'):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    for q, col in ((0.5, "p50 ms"), (0.99, "p99 ms")):
        want = histogram_quantile(q, sorted(buckets)) * 1000
        got = float(rows[("shop", "pages")][col])
        assert abs(got - want) <= 0.01 * want + 0.005, (col, got, want, buckets)
    status = {r[0]: r for r in tables["status-table"][1:]}
    assert {"2xx", "4xx", "5xx"} <= set(status), status
    top_path = tables["top-path"][1]
    assert top_path[:2] == ["/p1", "40"], tables["top-path"]
    assert [r[0] for r in tables["top-path"][1:5]] == ["/p1", "/p2", "/p3", "/p4"]
    assert {r[0] for r in tables["top-referrer"][1:]} == {"http://ref%d.example/" % i for i in range(3)}
    assert ["shop", "deny", "block"] == tables["decisions-table"][1][:3] and int(tables["decisions-table"][1][3]) >= 20
    assert any(r[0].startswith("shop/deny 127.0.0.3") for r in tables["top-blocked"][1:]), tables["top-blocked"]
    assert any(r[0] == "demo" and "127.0.0.1:%d" % gh.values["demo_port"] == r[2] for r in tables["upstreams-table"][1:])
    cache = dict((r[0], r[1]) for r in tables["cache-table"][1:])
    assert cache["enabled"] == "true" and int(cache["hit"]) >= 19
    # the experiment: its id, the units per variant, the metric with an interval
    assert "shop / home-test" in d["experiments"]
    assert "units: off %d, on %d" % (units["off"], units["on"]) in d["experiments"], d["experiments"]
    assert "checkout" in d["experiments"] and ("SRM" in d["experiments"])
    if slos == 404:  # (without src/obs/slo.c)
        assert d["slos"] == "no SLOs configured"
    else:
        row = [r for r in tables["slos-table"][1:] if r[2] == "boom-up"]
        assert row and row[0][:4] == ["shop", "boom", "boom-up", "availability"], tables["slos-table"]
    assert "shop" in d["text"] and "pages" in d["text"] and "5xx" in d["text"]

    # a tenant key: its tenant only, and no operator data
    t = rep["tenant"]
    assert t["who"] == "tenant key: blog" and t["config"] == ["blog"], t
    assert "need the operator key" in t["notice"] and "SLO" in t["slos"], t
    assert {"overview", "traffic", "latency", "experiments", "analytics", "upstreams"} <= set(t["hidden"]), t
    assert "config" not in t["hidden"] and "slos" not in t["hidden"], t

    # screenshots: there, of some size, and not blank
    sizes = {f: os.path.getsize(out / f) for f in os.listdir(out)}
    assert sizes["dashboard.png"] > 100_000 and sizes["login-error.png"] > 5_000, sizes
    for f in ("chart-tenants.png", "chart-latency.png", "login-error.png"):
        w, h, colours = png_pixels(out / f)
        assert w > 200 and h > 100 and len(colours) > 20, (f, w, h, len(colours))
    assert took < 60, took
