"""Traffic analytics (issue 10): per-route sketches kept by every worker, merged by
GET /v1/analytics on the admin listener, checked against the exact answers of the traffic the
test generates (counts exactly, top-k within its reported error bounds, unique visitors within
3 standard errors)."""

import collections
import math
import random

from helpers import HEADER, request

CONFIG = HEADER.replace("workers: {workers}", "workers: 2") + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: shop
    sites:
      - hosts: ["*"]
        routes:
          - name: gone
            match: {path: {prefix: /gone}}
            respond: {status: 404, body: "gone\\n"}
            analytics: true
          - {name: quiet, match: {path: {prefix: /quiet}}, upstream: demo}
          - {name: home, upstream: demo, analytics: true}
"""


def analytics(gh, route, **kw):
    q = "&".join("%s=%s" % kv for kv in kw.items())
    return gh.admin_get("/v1/analytics?tenant=shop&route=%s%s" % (route, "&" + q if q else ""))


def test_route_analytics_match_the_traffic(gatehouse):
    gh = gatehouse(CONFIG)
    rnd = random.Random(5)
    paths, uas, refs = collections.Counter(), set(), collections.Counter()
    s = __import__("requests").Session()
    for i in range(4000):
        p = "/p%d" % min(int(rnd.paretovariate(1.1)), 200)
        ua = "agent-%d" % rnd.randrange(1500)
        ref = "https://r%d.example/" % rnd.randrange(4)
        r = s.get(gh.url + p, headers={"Host": "example.com", "User-Agent": ua, "Referer": ref})
        assert r.status_code == 200
        paths[p] += 1
        uas.add(ua)
        refs[ref] += 1
    for i in range(50):
        assert s.get(gh.url + "/gone/%d" % i, headers={"Host": "example.com"}).status_code == 404
        assert s.get(gh.url + "/quiet", headers={"Host": "example.com"}).status_code == 200
    r = analytics(gh, "home", window="minute", top=10)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["requests"] == 4000 and a["status"]["2xx"] == 4000
    # the top paths: the true top 5 reported, each true count within [count - error, count]
    got = {t["key"]: t for t in a["top"]["path"]}
    for p, n in paths.most_common(5):
        assert p in got and got[p]["count"] - got[p]["error"] <= n <= got[p]["count"], (p, n, got.get(p))
    assert {t["key"] for t in a["top"]["referrer"]} == set(refs)
    assert all(t["count"] == refs[t["key"]] for t in a["top"]["referrer"])
    # unique visitors (address + user agent; all from 127.0.0.1): within 3 standard errors
    est, se = a["visitors"]["estimate"], a["visitors"]["relative_standard_error"]
    assert abs(est - len(uas)) <= 3 * se * len(uas), (est, len(uas))
    lat = a["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] * (1 + lat["relative_accuracy"])
    assert a["bytes_out"] > 4000 * 100
    # the same for the hour and the day (nothing has expired yet)
    assert analytics(gh, "home", window="hour").json()["requests"] == 4000
    assert analytics(gh, "home", window="day").json()["requests"] == 4000
    # a route answered by gatehouse itself
    g = analytics(gh, "gone").json()
    assert g["requests"] == 50 and g["status"]["4xx"] == 50 and g["top"]["path"][0]["count"] == 1
    # bad requests and routes without analytics
    assert analytics(gh, "quiet").status_code == 404
    assert analytics(gh, "home", window="week").status_code == 400
    assert analytics(gh, "home", top="0").status_code == 400
    assert gh.admin_get("/v1/analytics?tenant=shop").status_code == 400


def test_analytics_survive_a_reload(gatehouse):
    gh = gatehouse(CONFIG)
    for i in range(30):
        assert gh.get("/x").status_code == 200
    gh.write_config(CONFIG.replace("{name: quiet,", "{name: quiet2,"))
    gh.reload()
    import time
    time.sleep(0.5)
    for i in range(20):
        assert gh.get("/y").status_code == 200
    assert analytics(gh, "home").json()["requests"] == 50


def test_top_countries_from_geoip(gatehouse, tmp_path):
    """With protection.geoip, the client's country is a top-k dimension too (clients from
    127.0.30.x are DE, 127.0.31.x US, others unknown and not counted)."""
    import os
    import subprocess
    from rawhttp import one, request_bytes
    here = os.path.dirname(os.path.abspath(__file__))
    mmdb = tmp_path / "c.mmdb"
    p = subprocess.run(["/usr/bin/python3", os.path.join(here, "mmdb.py"), str(mmdb),
                        "127.0.30.0/24=DE", "127.0.31.0/24=US"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    gh = gatehouse(CONFIG + 'protection: {geoip: {database: "%s"}}\n' % mmdb)
    sent = collections.Counter()
    for i in range(90):
        src = ("127.0.30.%d" % (1 + i % 7)) if i % 3 else ("127.0.31.%d" % (1 + i % 5))
        if i % 10 == 0:
            src = "127.0.29.1"  # no country
        r = one(gh.port, request_bytes("GET", "/c%d" % i, host="example.com"), source=src)
        assert r.status == 200
        cc = {"127.0.30": "DE", "127.0.31": "US"}.get(src.rsplit(".", 1)[0])
        if cc:
            sent[cc] += 1
    a = analytics(gh, "home", window="minute").json()
    got = {t["key"]: t["count"] for t in a["top"]["country"]}
    assert got == dict(sent), (got, sent)
    assert a["requests"] == 90
