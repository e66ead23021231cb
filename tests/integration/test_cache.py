"""The HTTP cache end to end, against the real binary and an origin each test controls
(cacheorigin.CacheOrigin): RFC 9111 (storing 3, freshness 4.2, Age 4.2.3/5.1, request
and response directives 5.2, Vary 4.1, validation 4.3, invalidation 4.4, HEAD/Range),
RFC 5861 (stale-while-revalidate, stale-if-error), RFC 9211 (Cache-Status), RFC 9213
(CDN-Cache-Control and a tenant's targeted field), and gatehouse's own contract
(cache key options, set_cookie, coalescing, purge API, memory cap, metrics, access log).

Each test starts its own gatehouse (one worker unless the test is about workers) and its
own origin, and uses its own paths. Times are kept short: responses that must be stale
are made stale on arrival with an origin Age larger than max-age (or max-age=0)
instead of sleeping."""

import json
import os
import socket
import threading
import time
import urllib.parse

import pytest

from cacheorigin import CacheOrigin, http_date
from helpers import HEADER, metric_value, poll, rss_bytes
from rawhttp import one, request_bytes

ROUTE_R = """          - name: r
            upstream: origin
            cache: %s
"""


def route(name, prefix, cache):
    return """          - name: %s
            match: {path: {prefix: %s}}
            upstream: origin
            cache: %s
""" % (name, prefix, cache)


def config(cache="{enabled: true}", extra_routes="", tenant_cache="", top="", workers=1):
    """Tenant acme (hosts a.example, a2.example): route `nocache` (/nocache/, no cache),
    the extra routes, then route `r` (everything else) with `cache`. Tenant beta
    (b.example): route `r` with the cache on."""
    return HEADER.replace("workers: {workers}", "workers: %d" % workers) + top + """
upstreams:
  origin: {backends: ["127.0.0.1:{origin_port}"], keepalive: 64}
tenants:
  - name: acme
""" + tenant_cache + """    sites:
      - hosts: ["a.example", "a2.example"]
        routes:
          - name: nocache
            match: {path: {prefix: /nocache/}}
            upstream: origin
""" + extra_routes + ROUTE_R % cache + """  - name: beta
    sites:
      - hosts: ["b.example"]
        routes:
          - name: r
            upstream: origin
            cache: {enabled: true}
"""


@pytest.fixture
def org():
    o = CacheOrigin()
    yield o
    o.stop()


def start(gatehouse, org, **kw):
    return gatehouse(config(**kw), origin_port=org.port)


def req(gh, method, path, headers=None, host="a.example", **kw):
    kw.setdefault("allow_redirects", False)
    return gh.request(method, path, host=host, headers=headers, **kw)


def get(gh, path, headers=None, host="a.example", **kw):
    return req(gh, "GET", path, headers, host, **kw)


def cs(r):
    """The gatehouse member of Cache-Status (RFC 9211) as a dict: {"hit": True,
    "ttl": -3, "fwd": "uri-miss", "stored": True, "fwd-status": 304, ...}."""
    v = r.headers.get("Cache-Status")
    assert v, "no Cache-Status in %s %r" % (r.status_code, dict(r.headers))
    for member in reversed(v.split(",")):
        parts = [p.strip() for p in member.split(";")]
        if parts[0] != "gatehouse":
            continue
        d = {}
        for p in parts[1:]:
            k, eq, val = p.partition("=")
            k = k.strip()
            if not eq:
                d[k] = True
                continue
            val = val.strip().strip('"')
            if k in ("ttl", "fwd-status"):
                val = int(val)
            d[k] = val
        return d
    raise AssertionError("no gatehouse member in Cache-Status: %r" % v)


def is_hit(r):
    return cs(r).get("hit") is True


def assert_hit(r, body=None):
    assert r.status_code in (200, 206, 304, 404, 500), r.status_code
    c = cs(r)
    assert c.get("hit") is True and "fwd" not in c, "expected a hit, Cache-Status %r" % r.headers.get("Cache-Status")
    if body is not None:
        assert r.content == (body.encode() if isinstance(body, str) else body), r.content[:200]
    return c


def assert_fwd(r, fwd, stored=None):
    c = cs(r)
    assert c.get("fwd") == fwd and "hit" not in c, "expected fwd=%s, Cache-Status %r" % (
        fwd, r.headers.get("Cache-Status"))
    if stored is not None:
        assert bool(c.get("stored")) == stored, "stored=%s expected, Cache-Status %r" % (
            stored, r.headers.get("Cache-Status"))
    return c


def age(r):
    v = r.headers.get("Age")
    assert v is not None and v.isdigit(), "Age %r" % v
    return int(v)


def stale_then(first, later):
    """An origin fn answering `first` headers to the first request, `later` after."""
    def fn(rq, n):
        return 200, (first if n == 1 else later), None
    return fn


# ============================================================ storing and freshness (3, 4.2)


def test_miss_then_fresh_hit(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/f", headers={"Cache-Control": "max-age=60", "ETag": '"e1"', "Content-Type": "text/plain"})
    r1 = get(gh, "/f")
    assert r1.status_code == 200 and r1.content == b"/f #1"
    assert_fwd(r1, "uri-miss", stored=True)
    r2 = get(gh, "/f")
    c = assert_hit(r2, "/f #1")
    assert 55 <= c["ttl"] <= 60, c
    assert 0 <= age(r2) <= 2
    assert r2.headers["ETag"] == '"e1"' and r2.headers["X-Seq"] == "1"
    assert r2.headers["Content-Type"] == "text/plain"
    assert org.count("/f") == 1


def test_freshness_precedence_s_maxage_max_age_expires(gatehouse, org):
    gh = start(gatehouse, org)
    now = time.time()
    cases = {
        # path: (headers, stored-and-fresh?)
        "/p/sm": ({"Cache-Control": "s-maxage=60, max-age=0"}, True),
        "/p/sm0": ({"Cache-Control": "s-maxage=0, max-age=60"}, False),
        "/p/ma": ({"Cache-Control": "max-age=60", "Expires": http_date(now - 3600)}, True),
        "/p/ma0": ({"Cache-Control": "max-age=0", "Expires": http_date(now + 3600)}, False),
        "/p/exp": ({"Expires": http_date(now + 60)}, True),
        "/p/exp-past": ({"Expires": http_date(now - 60)}, False),
        # invalid Expires = already expired, and a heuristic must not apply (explicit field present)
        "/p/exp-bad": ({"Expires": "0", "Last-Modified": http_date(now - 864000)}, False),
        "/p/exp-bad2": ({"Expires": "tomorrow", "Last-Modified": http_date(now - 864000)}, False),
        # an invalid max-age makes it stale even with a valid Expires (4.2.1)
        "/p/ma-bad": ({"Cache-Control": "max-age=abc", "Expires": http_date(now + 3600)}, False),
    }
    for path, (h, _) in cases.items():
        org.set(path, headers=h)
        assert get(gh, path).status_code == 200
    for path, (h, fresh) in cases.items():
        r = get(gh, path)
        if fresh:
            assert_hit(r, "%s #1" % path)
            assert org.count(path) == 1, path
        else:
            assert not is_hit(r), (path, r.headers.get("Cache-Status"))
            assert org.count(path) == 2, path
    # the obsolete date formats are accepted too (RFC 9110 5.6.7)
    t = time.gmtime(now + 3600)
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)
    asctime = time.strftime("%a %b ", t) + ("%2d" % t.tm_mday) + time.strftime(" %H:%M:%S %Y", t)
    for path, v in (("/p/rfc850", rfc850), ("/p/asctime", asctime)):
        org.set(path, headers={"Expires": v})
        get(gh, path)
        assert 3500 < assert_hit(get(gh, path))["ttl"] <= 3600, (path, v)
    # Expires - Date is the lifetime; an old Date is apparent age (4.2.3)
    org.set("/p/expdate", headers={"Date": http_date(now - 30), "Expires": http_date(now + 30)})
    get(gh, "/p/expdate")
    c = assert_hit(get(gh, "/p/expdate"))
    assert 25 <= c["ttl"] <= 31, c


def test_heuristic_only_for_default_cacheable_statuses(gatehouse, org):
    gh = start(gatehouse, org)
    lm = http_date(time.time() - 10000)  # 10% = 1000 s
    org.set("/h/200", headers={"Last-Modified": lm})
    org.set("/h/404", status=404, headers={"Last-Modified": lm})
    org.set("/h/410", status=410, headers={"Last-Modified": lm})
    org.set("/h/500", status=500, headers={"Last-Modified": lm})
    org.set("/h/302", status=302, headers={"Last-Modified": lm, "Location": "/x"})
    org.set("/h/500pub", status=500, headers={"Last-Modified": lm, "Cache-Control": "public"})
    org.set("/h/nolm", headers={})
    org.set("/h/500exp", status=500, headers={"Cache-Control": "max-age=60"})
    for p in ("/h/200", "/h/404", "/h/410", "/h/500", "/h/302", "/h/500pub", "/h/nolm", "/h/500exp"):
        get(gh, p)
    c = assert_hit(get(gh, "/h/200"), "/h/200 #1")
    assert 950 <= c["ttl"] <= 1000, c
    r = get(gh, "/h/404")
    assert r.status_code == 404
    assert 950 <= assert_hit(r)["ttl"] <= 1000
    assert get(gh, "/h/410").status_code == 410 and org.count("/h/410") == 1
    r = get(gh, "/h/500")
    assert r.status_code == 500 and not is_hit(r)
    assert org.count("/h/500") == 2, "a 500 is not heuristically cacheable"
    get(gh, "/h/302")
    assert org.count("/h/302") == 2, "a 302 is not heuristically cacheable"
    r = get(gh, "/h/500pub")
    assert r.status_code == 500 and org.count("/h/500pub") == 1, "public allows the heuristic (4.2.2)"
    get(gh, "/h/nolm")
    assert org.count("/h/nolm") == 2, "no explicit freshness and no Last-Modified: lifetime 0"
    r = get(gh, "/h/500exp")
    assert r.status_code == 500 and org.count("/h/500exp") == 1, "explicit freshness makes any final status storable"


def test_default_ttl_and_max_ttl(gatehouse, org):
    extra = route("dttl", "/dttl/", "{default_ttl: 2s}") + route("maxttl", "/maxttl/", "{max_ttl: 2s}")
    gh = start(gatehouse, org, extra_routes=extra)
    org.set("/dttl/a", headers={})
    org.set("/dttl/404", status=404, headers={})
    org.set("/dttl/500", status=500, headers={})
    org.set("/dttl/explicit", headers={"Cache-Control": "max-age=60"})
    org.set("/maxttl/a", headers={"Cache-Control": "max-age=60"})
    for p in ("/dttl/a", "/dttl/404", "/dttl/500", "/dttl/explicit", "/maxttl/a"):
        get(gh, p)
    assert 0 < assert_hit(get(gh, "/dttl/a"))["ttl"] <= 2
    assert get(gh, "/dttl/404").status_code == 404 and org.count("/dttl/404") == 1
    get(gh, "/dttl/500")
    assert org.count("/dttl/500") == 2, "default_ttl only where the RFC allows a heuristic"
    assert assert_hit(get(gh, "/dttl/explicit"))["ttl"] >= 55, "default_ttl must not override max-age"
    assert 0 < assert_hit(get(gh, "/maxttl/a"))["ttl"] <= 2, "max_ttl caps max-age=60"
    # both expire after about two seconds
    assert poll(lambda: not is_hit(get(gh, "/dttl/a")), timeout=4, interval=0.1)
    assert org.count("/dttl/a") == 2
    # /maxttl/a was stored a moment after /dttl/a: it may outlive it by that moment
    assert poll(lambda: not is_hit(get(gh, "/maxttl/a")), timeout=2, interval=0.1)
    assert org.count("/maxttl/a") == 2
    assert org.count("/dttl/explicit") == 1


def test_cache_control_parsing(gatehouse, org):
    """Directive names are case-insensitive, field lines combine, quoted arguments are
    accepted, unknown directives (with quoted commas) are ignored (RFC 9111 5.2)."""
    gh = start(gatehouse, org)
    cases = {
        "/cp/case": ([("Cache-Control", "Max-Age=60")], True),
        "/cp/quoted": ([("Cache-Control", 'max-age="60"')], True),
        "/cp/unknown": ([("Cache-Control", 'foo, bar="x, no-store", max-age=60, baz=1')], True),
        "/cp/lines-ns": ([("Cache-Control", "max-age=60"), ("Cache-Control", "no-store")], False),
        "/cp/lines-pv": ([("Cache-Control", "max-age=60"), ("Cache-Control", "private")], False),
        "/cp/lines-sm": ([("Cache-Control", "max-age=0"), ("Cache-Control", "s-maxage=60")], True),
    }
    for p, (h, _) in cases.items():
        org.set(p, headers=h)
        get(gh, p)
    for p, (_, stored) in cases.items():
        get(gh, p)
        assert org.count(p) == (1 if stored else 2), (p, org.count(p))


# ============================================================ Age (4.2.3, 5.1)


def test_age_generated_and_growing(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/age", headers={"Cache-Control": "max-age=60"})
    get(gh, "/age")
    r = get(gh, "/age")
    assert_hit(r)
    assert age(r) <= 1
    r = poll(lambda: (lambda x: x if age(x) >= 1 else None)(get(gh, "/age")), timeout=3, interval=0.1)
    assert r, "Age did not grow"
    c = assert_hit(r)
    assert 59 <= c["ttl"] + age(r) <= 60, (c, age(r))
    assert org.count("/age") == 1


def test_origin_age_and_date_accounted(gatehouse, org):
    gh = start(gatehouse, org)
    now = time.time()
    org.set("/oa", headers={"Cache-Control": "max-age=60", "Age": "30"})
    org.set("/oa-stale", headers={"Cache-Control": "max-age=10", "Age": "20"})
    org.set("/od", headers={"Cache-Control": "max-age=60", "Date": http_date(now - 40)})
    org.set("/oa-bad", headers={"Cache-Control": "max-age=60", "Age": "30x"})
    r = get(gh, "/oa")
    assert r.headers.get("Age") == "30", "a forwarded response carries the origin's Age"
    r = get(gh, "/oa")
    c = assert_hit(r)
    assert 30 <= age(r) <= 32 and 28 <= c["ttl"] <= 30, (age(r), c)
    get(gh, "/oa-stale")
    r = get(gh, "/oa-stale")
    assert not is_hit(r) and org.count("/oa-stale") == 2, "Age 20 > max-age 10: stale on arrival"
    get(gh, "/od")
    r = get(gh, "/od")
    c = assert_hit(r)
    assert 40 <= age(r) <= 42 and 18 <= c["ttl"] <= 20, (age(r), c)
    get(gh, "/oa-bad")
    r = get(gh, "/oa-bad")
    c = assert_hit(r)
    assert age(r) <= 2 and c["ttl"] >= 58, "an invalid Age is ignored (%s, %s)" % (age(r), c)


# ============================================================ request directives (5.2.1, 5.4)


def test_request_no_cache_and_pragma(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/rq", headers={"Cache-Control": "max-age=60"})
    get(gh, "/rq")
    assert_hit(get(gh, "/rq"))
    r = get(gh, "/rq", {"Cache-Control": "no-cache"})
    assert_fwd(r, "request")
    assert org.count("/rq") == 2 and r.content == b"/rq #2"
    assert_hit(get(gh, "/rq"), "/rq #2")
    r = get(gh, "/rq", {"Pragma": "no-cache"})
    assert_fwd(r, "request")
    assert org.count("/rq") == 3
    # Pragma is ignored when the request has Cache-Control (5.4)
    assert_hit(get(gh, "/rq", {"Pragma": "no-cache", "Cache-Control": "max-age=100"}))
    assert org.count("/rq") == 3


def test_request_no_store(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/rns", headers={"Cache-Control": "max-age=60"})
    r = get(gh, "/rns", {"Cache-Control": "no-store"})
    assert r.status_code == 200 and not cs(r).get("stored")
    r = get(gh, "/rns")
    assert_fwd(r, "uri-miss", stored=True)
    assert org.count("/rns") == 2
    assert_hit(get(gh, "/rns"))


def test_request_max_age_and_min_fresh(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/rma", headers={"Cache-Control": "max-age=100", "Age": "10"})
    get(gh, "/rma")
    assert_hit(get(gh, "/rma", {"Cache-Control": "max-age=60"}))
    r = get(gh, "/rma", {"Cache-Control": "max-age=5"})
    assert_fwd(r, "request")
    assert org.count("/rma") == 2
    org.set("/rmf", headers={"Cache-Control": "max-age=60"})
    get(gh, "/rmf")
    assert_hit(get(gh, "/rmf", {"Cache-Control": "min-fresh=30"}))
    r = get(gh, "/rmf", {"Cache-Control": "min-fresh=120"})
    assert not is_hit(r) and org.count("/rmf") == 2


def test_request_max_stale(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/rms", headers={"Cache-Control": "max-age=10", "Age": "15"})  # 5 s stale on arrival
    get(gh, "/rms")
    r = get(gh, "/rms", {"Cache-Control": "max-stale=60"})
    c = assert_hit(r, "/rms #1")
    assert -8 <= c["ttl"] < 0, c
    assert age(r) >= 15
    assert_hit(get(gh, "/rms", {"Cache-Control": "max-stale"}), "/rms #1")
    assert org.count("/rms") == 1
    r = get(gh, "/rms", {"Cache-Control": "max-stale=1"})
    assert not is_hit(r) and org.count("/rms") == 2
    r = get(gh, "/rms")
    assert_fwd(r, "stale")
    assert org.count("/rms") == 3


def test_only_if_cached(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/oic", headers={"Cache-Control": "max-age=60"})
    r = get(gh, "/oic", {"Cache-Control": "only-if-cached"})
    assert r.status_code == 504
    c = cs(r)
    assert c.get("fwd") == "miss" and c.get("detail") == "only-if-cached", c
    assert org.count("/oic") == 0
    get(gh, "/oic")
    r = get(gh, "/oic", {"Cache-Control": "only-if-cached"})
    assert r.status_code == 200
    assert_hit(r, "/oic #1")
    # a stale stored response does not satisfy only-if-cached without max-stale
    org.set("/oics", headers={"Cache-Control": "max-age=10", "Age": "15"})
    get(gh, "/oics")
    assert get(gh, "/oics", {"Cache-Control": "only-if-cached"}).status_code == 504
    r = get(gh, "/oics", {"Cache-Control": "only-if-cached, max-stale=60"})
    assert r.status_code == 200 and r.content == b"/oics #1"
    assert org.count("/oics") == 1


# ============================================================ response directives (5.2.2)


def test_response_no_store_and_private_not_stored(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/ns", headers={"Cache-Control": "no-store, max-age=60"})
    org.set("/pv", headers={"Cache-Control": "private, max-age=60"})
    org.set("/ctl", headers={"Cache-Control": "max-age=60"})
    for p in ("/ns", "/pv", "/ctl"):
        for _ in range(2):
            r = get(gh, p)
            assert r.status_code == 200
    assert org.count("/ns") == 2 and org.count("/pv") == 2
    assert org.count("/ctl") == 1
    r = get(gh, "/ns")
    assert_fwd(r, "uri-miss", stored=False)


def test_response_no_cache_revalidated_each_time(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/rnc", headers={"Cache-Control": "no-cache, max-age=60", "ETag": '"n1"'}, conditional=True)
    get(gh, "/rnc")
    for i in (2, 3):
        r = get(gh, "/rnc")
        assert r.status_code == 200 and r.content == b"/rnc #1", r.content
        assert org.count("/rnc") == i
        assert org.last("/rnc").header("If-None-Match") == '"n1"', org.last("/rnc")


def test_private_named_field_stripped(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/pf", headers={"Cache-Control": 'private="Set-X", max-age=60', "Set-X": "secret", "X-Keep": "1"})
    get(gh, "/pf")
    r = get(gh, "/pf")
    assert_hit(r, "/pf #1")
    assert "Set-X" not in r.headers and r.headers.get("X-Keep") == "1"


def test_authorization_needs_public_must_revalidate_or_s_maxage(gatehouse, org):
    gh = start(gatehouse, org)
    auth = {"Authorization": "Bearer t0ken"}
    cases = {"/au/plain": ("max-age=60", False), "/au/public": ("public, max-age=60", True),
             "/au/smax": ("s-maxage=60", True), "/au/mr": ("must-revalidate, max-age=60", True)}
    for p, (ccv, _) in cases.items():
        org.set(p, headers={"Cache-Control": ccv})
        get(gh, p, auth)
    for p, (_, stored) in cases.items():
        r = get(gh, p, auth)
        assert r.status_code == 200
        assert org.count(p) == (1 if stored else 2), (p, org.count(p))


def test_must_revalidate_forbids_stale(gatehouse, org):
    """must-revalidate / proxy-revalidate / s-maxage: never served stale, neither for
    max-stale nor for stale-if-error (5.2.2.2, 5.2.2.8, 5.2.2.10; RFC 5861 4)."""
    gh = start(gatehouse, org)
    paths = {"/mr": "max-age=1, must-revalidate, stale-if-error=60",
             "/prv": "max-age=1, proxy-revalidate, stale-if-error=60",
             "/smx": "s-maxage=1, stale-if-error=60",
             "/ctl": "max-age=1, stale-if-error=60"}
    for p, v in paths.items():
        org.set(p, headers={"Cache-Control": v, "Age": "5"})
        get(gh, p)
    r = get(gh, "/mr", {"Cache-Control": "max-stale=100"})
    assert not is_hit(r) and org.count("/mr") == 2, "max-stale must not serve a must-revalidate response stale"
    for p in paths:
        org.set(p, status=500, body="boom")
    for p in ("/mr", "/prv", "/smx"):
        r = get(gh, p)
        assert r.status_code != 200 and b"#" not in r.content, (p, r.status_code, r.content)
    r = get(gh, "/ctl")
    assert r.status_code == 200 and r.content == b"/ctl #1", "control: stale-if-error serves stale"
    c = cs(r)
    assert c.get("detail") == "stale-if-error" and c.get("fwd") == "stale" and c.get("fwd-status") == 500, c


def test_must_understand(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/mu200", headers={"Cache-Control": "must-understand, no-store, max-age=60"})
    org.set("/mu226", status=226, headers={"Cache-Control": "must-understand, no-store, max-age=60"})
    org.set("/ns", headers={"Cache-Control": "no-store, max-age=60"})
    for p in ("/mu200", "/mu226", "/ns"):
        get(gh, p)
        get(gh, p)
    assert org.count("/mu200") == 1, "must-understand + understood status overrides no-store"
    assert org.count("/mu226") == 2, "must-understand + status not understood: not stored"
    assert org.count("/ns") == 2


# ============================================================ Vary (4.1)


def test_vary_separate_variants(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, \
            "lang=%s #%d" % (rq.header("Accept-Language"), n)
    org.set("/v", fn=fn)
    r = get(gh, "/v", {"Accept-Language": "en"})
    assert_fwd(r, "uri-miss", stored=True)
    r = get(gh, "/v", {"Accept-Language": "fr"})
    assert r.content == b"lang=fr #2"
    assert_fwd(r, "vary-miss", stored=True)
    assert_hit(get(gh, "/v", {"Accept-Language": "en"}), "lang=en #1")
    assert_hit(get(gh, "/v", {"Accept-Language": "fr"}), "lang=fr #2")
    assert org.count("/v") == 2
    r = get(gh, "/v")  # no Accept-Language: a third variant
    assert not is_hit(r) and org.count("/v") == 3


def test_vary_star_never_stored(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/vs", headers={"Cache-Control": "max-age=60", "Vary": "*"})
    for _ in range(3):
        r = get(gh, "/vs")
        assert not is_hit(r) and not cs(r).get("stored")
    assert org.count("/vs") == 3


def test_vary_value_normalisation(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/vn", headers={"Cache-Control": "max-age=60", "Vary": "ACCEPT-ENCODING"})
    get(gh, "/vn", {"Accept-Encoding": "gzip,  br"})
    assert_hit(get(gh, "/vn", {"Accept-Encoding": "gzip, br"}), "/vn #1")
    assert_hit(get(gh, "/vn", {"Accept-Encoding": "gzip,br"}), "/vn #1")
    assert_hit(get(gh, "/vn", {"Accept-Encoding": "gzip ,br"}), "/vn #1")
    assert org.count("/vn") == 1
    r = get(gh, "/vn", {"Accept-Encoding": "br"})
    assert_fwd(r, "vary-miss")
    assert org.count("/vn") == 2


# ============================================================ validation (4.3)


def test_revalidation_with_etag(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/re", headers={"Cache-Control": "max-age=0", "ETag": '"v1"'}, conditional=True)
    get(gh, "/re")
    assert org.last("/re").header("If-None-Match") is None
    r = get(gh, "/re")
    assert org.count("/re") == 2
    assert org.last("/re").header("If-None-Match") == '"v1"'
    assert r.status_code == 200 and r.content == b"/re #1"
    c = cs(r)
    assert c.get("fwd") == "stale" and c.get("fwd-status") == 304, c


def test_revalidation_with_last_modified(gatehouse, org):
    gh = start(gatehouse, org)
    lm = http_date(time.time() - 3600)
    org.set("/rl", headers={"Cache-Control": "max-age=0", "Last-Modified": lm}, conditional=True)
    get(gh, "/rl")
    r = get(gh, "/rl")
    assert org.count("/rl") == 2
    assert org.last("/rl").header("If-Modified-Since") == lm
    assert r.status_code == 200 and r.content == b"/rl #1"


def test_304_updates_stored_headers(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        if n == 1:
            return 200, {"Cache-Control": "max-age=0", "ETag": '"u1"', "X-Meta": "one"}, "payload"
        if rq.header("If-None-Match") != '"u1"':
            return 200, {"X-Meta": "no If-None-Match"}, "unconditional"
        return 304, {"Cache-Control": "max-age=60", "ETag": '"u1"', "X-Meta": "two"}, b""
    org.set("/ru", fn=fn)
    get(gh, "/ru")
    r = get(gh, "/ru")
    assert r.status_code == 200 and r.content == b"payload"
    assert r.headers["X-Meta"] == "two" and r.headers["Content-Length"] == "7"
    c = cs(r)
    assert c.get("fwd") == "stale" and c.get("fwd-status") == 304, c
    r = get(gh, "/ru")
    c = assert_hit(r, "payload")
    assert c["ttl"] >= 55 and r.headers["X-Meta"] == "two" and r.headers["X-Seq"] == "2"
    assert org.count("/ru") == 2


def test_client_conditional_answered_from_cache(gatehouse, org):
    gh = start(gatehouse, org)
    lm = http_date(time.time() - 3600)
    org.set("/cc", headers={"Cache-Control": "max-age=60", "ETag": '"c1"', "Last-Modified": lm})
    get(gh, "/cc")
    r = get(gh, "/cc", {"If-None-Match": '"c1"'})
    assert r.status_code == 304 and r.content == b"" and r.headers.get("ETag") == '"c1"'
    assert_hit(r)
    assert get(gh, "/cc", {"If-None-Match": 'W/"c1"'}).status_code == 304, "If-None-Match compares weakly"
    r = get(gh, "/cc", {"If-None-Match": '"other"'})
    assert r.status_code == 200 and r.content == b"/cc #1"
    assert get(gh, "/cc", {"If-Modified-Since": http_date()}).status_code == 304
    assert get(gh, "/cc", {"If-Modified-Since": http_date(time.time() - 7200)}).status_code == 200
    assert org.count("/cc") == 1


def test_revalidation_304_passed_to_conditional_client(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/cr", headers={"Cache-Control": "max-age=0", "ETag": '"k1"'}, conditional=True)
    get(gh, "/cr")
    r = get(gh, "/cr", {"If-None-Match": '"k1"'})
    assert r.status_code == 304 and org.count("/cr") == 2
    r = get(gh, "/cr")
    assert r.status_code == 200 and r.content == b"/cr #1" and org.count("/cr") == 3


def test_revalidation_replaced_by_new_response(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        if n == 1:
            return 200, {"Cache-Control": "max-age=0", "ETag": '"a"'}, "old"
        return 200, {"Cache-Control": "max-age=60", "ETag": '"b"'}, "new"
    org.set("/rn", fn=fn)
    get(gh, "/rn")
    r = get(gh, "/rn")
    assert r.content == b"new" and org.last("/rn").header("If-None-Match") == '"a"'
    c = cs(r)
    assert c.get("fwd") == "stale" and c.get("fwd-status") == 200 and c.get("stored"), c
    assert_hit(get(gh, "/rn"), "new")
    assert org.count("/rn") == 2


def test_client_conditional_on_a_miss_does_not_store_the_304(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/cm", headers={"Cache-Control": "max-age=60", "ETag": '"x"'}, conditional=True)
    r = get(gh, "/cm", {"If-None-Match": '"x"'})
    assert r.status_code == 304 and r.content == b""
    r = get(gh, "/cm")
    assert r.status_code == 200 and r.content.startswith(b"/cm #"), (r.status_code, r.content)
    r = get(gh, "/cm")
    assert r.status_code == 200 and r.content.startswith(b"/cm #")


def test_chunked_and_large_responses_stored_intact(gatehouse, org):
    gh = start(gatehouse, org)
    import random
    big = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
    org.set("/chunked", headers={"Cache-Control": "max-age=60", "Transfer-Encoding": "chunked"},
            body=b"abc" * 1000)
    org.set("/large", headers={"Cache-Control": "max-age=60"}, body=big)
    r = get(gh, "/chunked")
    assert r.content == b"abc" * 1000
    r = get(gh, "/chunked")
    assert_hit(r, b"abc" * 1000)
    assert r.headers.get("Content-Length") in (None, "3000")
    assert get(gh, "/large").content == big
    r = get(gh, "/large")
    assert_hit(r)
    assert r.content == big and r.headers["Content-Length"] == str(len(big))
    r = get(gh, "/large", {"Range": "bytes=2000000-2000099"})
    assert r.status_code == 206 and r.content == big[2000000:2000100]
    assert org.count("/chunked") == 1 and org.count("/large") == 1


# ============================================================ invalidation (4.4)


def test_unsafe_methods_invalidate_target(gatehouse, org):
    gh = start(gatehouse, org)
    for m in ("POST", "PUT", "DELETE", "PATCH"):
        p = "/inv-" + m
        org.set(p, headers={"Cache-Control": "max-age=60"})
        get(gh, p)
        assert_hit(get(gh, p))
        r = req(gh, m, p, data=b"x")
        assert r.status_code == 200
        assert_fwd(r, "bypass")
        r = get(gh, p)
        assert not is_hit(r), (m, r.headers.get("Cache-Status"))
        assert org.count(p, "GET") == 2, m


def test_location_and_content_location_invalidated(gatehouse, org):
    gh = start(gatehouse, org)
    for p in ("/loc-t", "/cl-t", "/keep"):
        org.set(p, headers={"Cache-Control": "max-age=60"})
        get(gh, p)
    org.set("/other", headers={"Cache-Control": "max-age=60"})
    get(gh, "/other", host="a2.example")
    get(gh, "/other", host="a.example")
    org.set("/form", status=201, headers={"Location": "/loc-t", "Content-Location": "http://a.example/cl-t"})
    org.set("/form2", status=303, headers={"Location": "http://a2.example/other"})
    assert req(gh, "POST", "/form", data=b"a=1").status_code == 201
    assert req(gh, "POST", "/form2", data=b"a=1").status_code == 303
    assert not is_hit(get(gh, "/loc-t")) and org.count("/loc-t") == 2
    assert not is_hit(get(gh, "/cl-t")) and org.count("/cl-t") == 2
    assert_hit(get(gh, "/keep"))
    # a Location naming another host must not invalidate it (4.4), nor the same path here
    assert_hit(get(gh, "/other", host="a2.example"))
    assert_hit(get(gh, "/other", host="a.example"))
    assert org.count("/other") == 2


# ============================================================ HEAD, Range


def test_head_served_from_stored_get(gatehouse, org):
    gh = start(gatehouse, org)
    body = b"h" * 1000
    org.set("/hd", headers={"Cache-Control": "max-age=60", "ETag": '"h1"', "Content-Type": "text/plain"}, body=body)
    g = get(gh, "/hd")
    r = req(gh, "HEAD", "/hd")
    assert r.status_code == 200 and r.content == b""
    assert_hit(r)
    for h in ("Content-Length", "ETag", "Content-Type", "X-Seq"):
        assert r.headers.get(h) == g.headers.get(h), h
    assert r.headers["Content-Length"] == "1000"
    assert org.count("/hd") == 1 and org.count("/hd", "HEAD") == 0


def test_head_miss_does_not_store_an_empty_get(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/hm", headers={"Cache-Control": "max-age=60"}, body=b"m" * 500)
    r = req(gh, "HEAD", "/hm")
    assert r.status_code == 200 and r.content == b""
    for _ in range(2):
        r = get(gh, "/hm")
        assert r.status_code == 200 and r.content == b"m" * 500, r.content[:50]
        assert r.headers["Content-Length"] == "500"


def test_partial_response_from_origin_not_stored_as_full(gatehouse, org):
    gh = start(gatehouse, org)
    body = b"0123456789" * 10

    def fn(rq, n):
        rng = rq.header("Range")
        if rng == "bytes=0-3":
            return 206, {"Cache-Control": "max-age=60", "Content-Range": "bytes 0-3/100"}, body[:4]
        return 200, {"Cache-Control": "max-age=60"}, body
    org.set("/pr", fn=fn)
    r = get(gh, "/pr", {"Range": "bytes=0-3"})
    # a cache may fetch the whole representation and may ignore Range (RFC 9110 14.2)
    assert (r.status_code, r.content) in ((206, b"0123"), (200, body)), (r.status_code, r.content)
    for _ in range(2):
        r = get(gh, "/pr")
        assert r.status_code == 200 and r.content == body, (r.status_code, r.content[:40])


def test_range_served_from_stored_response(gatehouse, org):
    gh = start(gatehouse, org)
    body = bytes(65 + i % 26 for i in range(1000))
    org.set("/rg", headers={"Cache-Control": "max-age=60", "ETag": '"rg1"'}, body=body)
    get(gh, "/rg")
    cases = [("bytes=10-19", 10, 19), ("bytes=990-", 990, 999), ("bytes=-5", 995, 999), ("bytes=0-5000", 0, 999)]
    for rng, a, b in cases:
        r = get(gh, "/rg", {"Range": rng})
        assert r.status_code == 206, (rng, r.status_code)
        assert r.headers["Content-Range"] == "bytes %d-%d/1000" % (a, b), rng
        assert r.content == body[a:b + 1], rng
        assert r.headers["Content-Length"] == str(b - a + 1)
    r = get(gh, "/rg", {"Range": "bytes=10-19", "If-Range": '"rg1"'})
    assert r.status_code == 206 and r.content == body[10:20], "If-Range matches the stored ETag"
    r = get(gh, "/rg", {"Range": "bytes=10-19", "If-Range": '"old"'})
    assert r.status_code == 200 and r.content == body, "If-Range does not match: the whole representation"
    r = get(gh, "/rg", {"Range": "bytes=2000-3000"})
    assert r.status_code == 416 and r.headers.get("Content-Range") == "bytes */1000"
    r = get(gh, "/rg", {"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == body
    assert org.count("/rg") == 1


# ============================================================ hop-by-hop (3.1)


def test_hop_by_hop_and_connection_listed_fields_not_stored(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/hop", headers={"Cache-Control": "max-age=60", "Connection": "X-Hop-A, keep-alive",
                             "X-Hop-A": "1", "Keep-Alive": "timeout=30", "X-Normal": "1"})
    r = get(gh, "/hop")
    assert "X-Hop-A" not in r.headers
    r = get(gh, "/hop")
    assert_hit(r)
    assert "X-Hop-A" not in r.headers, r.headers
    assert r.headers.get("Keep-Alive") != "timeout=30", r.headers
    assert r.headers.get("X-Normal") == "1"


# ============================================================ RFC 5861


def test_stale_while_revalidate(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        if n == 1:
            return 200, {"Cache-Control": "max-age=1, stale-while-revalidate=30", "Age": "3"}, None
        time.sleep(0.5)
        return 200, {"Cache-Control": "max-age=60"}, None
    org.set("/swr", fn=fn)
    get(gh, "/swr")
    t0 = time.monotonic()
    r = get(gh, "/swr")
    took = time.monotonic() - t0
    assert r.content == b"/swr #1" and took < 0.4, (r.content, took)
    c = assert_hit(r)
    assert c["ttl"] < 0 and c.get("detail") == "stale-while-revalidate", c
    assert org.wait_count("/swr", 2, timeout=3), "no background revalidation reached the origin"
    time.sleep(0.8)  # the refresh (0.5 s at the origin) completes
    r = get(gh, "/swr")
    c = assert_hit(r, "/swr #2")
    assert c["ttl"] > 50
    assert org.count("/swr") == 2
    # beyond the window: revalidated before answering
    org.set("/swr-out", fn=stale_then({"Cache-Control": "max-age=1, stale-while-revalidate=1", "Age": "10"},
                                      {"Cache-Control": "max-age=60"}))
    get(gh, "/swr-out")
    r = get(gh, "/swr-out")
    assert r.content == b"/swr-out #2" and not is_hit(r)


def test_stale_while_revalidate_background_304_refreshes(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        if n == 1:
            return 200, {"Cache-Control": "max-age=1, stale-while-revalidate=30", "Age": "3", "ETag": '"w"'}, None
        if rq.header("If-None-Match") == '"w"':
            return 304, {"Cache-Control": "max-age=60", "ETag": '"w"'}, b""
        return 200, {"Cache-Control": "max-age=60", "ETag": '"w"'}, "unconditional"
    org.set("/swr304", fn=fn)
    get(gh, "/swr304")
    r = get(gh, "/swr304")
    assert r.content == b"/swr304 #1" and assert_hit(r)["ttl"] < 0
    assert org.wait_count("/swr304", 2, timeout=3)
    assert org.last("/swr304").header("If-None-Match") == '"w"', "the background refresh is conditional"
    time.sleep(0.3)
    r = get(gh, "/swr304")
    c = assert_hit(r, "/swr304 #1")
    assert c["ttl"] > 50, c
    assert org.count("/swr304") == 2


def test_stale_if_error(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/sie", headers={"Cache-Control": "max-age=1, stale-if-error=60", "Age": "5"})
    org.set("/sie-out", headers={"Cache-Control": "max-age=1, stale-if-error=2", "Age": "10"})
    org.set("/sie-req", headers={"Cache-Control": "max-age=1", "Age": "5"})
    for p in ("/sie", "/sie-out", "/sie-req"):
        get(gh, p)
        org.set(p, status=500, body="boom")
    r = get(gh, "/sie")
    assert r.status_code == 200 and r.content == b"/sie #1"
    c = cs(r)
    assert c.get("fwd") == "stale" and c.get("fwd-status") == 500 and c.get("detail") == "stale-if-error", c
    assert org.count("/sie") == 2
    r = get(gh, "/sie-out")
    assert r.status_code == 500 and r.content == b"boom", "outside the stale-if-error window"
    r = get(gh, "/sie-req", {"Cache-Control": "stale-if-error=60"})
    assert r.status_code == 200 and r.content == b"/sie-req #1", "stale-if-error in the request (RFC 5861 4)"
    r = get(gh, "/sie-req")
    assert r.status_code == 500
    # origin closes without answering, then is down
    org.set("/sie", close=True)
    r = get(gh, "/sie")
    assert r.status_code == 200 and r.content == b"/sie #1"
    assert cs(r).get("detail") == "stale-if-error"
    org.stop()
    r = get(gh, "/sie")
    assert r.status_code == 200 and r.content == b"/sie #1"
    c = cs(r)
    assert c.get("detail") == "stale-if-error" and c.get("fwd-status", 0) >= 500, c


# ============================================================ RFC 9213


def test_cdn_cache_control_and_targeted_header(gatehouse, org):
    gh = start(gatehouse, org, tenant_cache="    cache: {targeted_header: Acme-Cache-Control}\n")
    cases = [
        ("a.example", "/t1", {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=60"}, True),
        ("a.example", "/t2", {"Cache-Control": "max-age=60", "CDN-Cache-Control": "no-store"}, False),
        ("a.example", "/t3", {"Cache-Control": "no-store", "CDN-Cache-Control": "no-store",
                              "Acme-Cache-Control": "max-age=60"}, True),
        ("a.example", "/t4", {"Cache-Control": "max-age=60", "CDN-Cache-Control": "max-age=60",
                              "Acme-Cache-Control": "no-store"}, False),
        # tenant beta has no targeted header: Acme-Cache-Control means nothing there
        ("b.example", "/t5", {"Cache-Control": "max-age=60", "CDN-Cache-Control": "max-age=60",
                              "Acme-Cache-Control": "no-store"}, True),
    ]
    for host, p, h, _ in cases:
        org.set(p, headers=h)
        get(gh, p, host=host)
    for host, p, h, stored in cases:
        r = get(gh, p, host=host)
        assert org.count(p) == (1 if stored else 2), (p, org.count(p))
        for k, v in h.items():
            assert r.headers.get(k) == v, "%s: %s passed on unchanged" % (p, k)
    org.set("/t6", headers={"Cache-Control": "max-age=5", "CDN-Cache-Control": "max-age=600"})
    get(gh, "/t6")
    assert assert_hit(get(gh, "/t6"))["ttl"] > 590


# ============================================================ Cache-Status (RFC 9211)


def test_cache_status_values(gatehouse, org):
    extra = route("off", "/off/", "{enabled: false}")
    gh = start(gatehouse, org, extra_routes=extra)
    org.set("/cs", headers={"Cache-Control": "max-age=60"})
    org.set("/nocache/x", headers={"Cache-Control": "max-age=60"})
    org.set("/off/x", headers={"Cache-Control": "max-age=60"})
    org.set("/cs-ns", headers={"Cache-Control": "no-store"})
    assert_fwd(get(gh, "/cs"), "uri-miss", stored=True)
    assert_hit(get(gh, "/cs"))
    assert_fwd(req(gh, "POST", "/cs-post", data=b"x"), "bypass")
    assert_fwd(get(gh, "/cs-ns"), "uri-miss", stored=False)
    for _ in range(2):
        r = get(gh, "/nocache/x")
        assert "Cache-Status" not in r.headers
    assert org.count("/nocache/x") == 2
    for _ in range(2):
        get(gh, "/off/x")
    assert org.count("/off/x") == 2, "enabled: false stores nothing"


# ============================================================ cache key options


KEY_ROUTES = (route("qdrop", "/qd/", "{key: {query_drop: [utm_*]}}")
              + route("qasis", "/qa/", "{key: {query: as_is}}")
              + route("qign", "/qi/", "{key: {query: ignore}}")
              + route("qkeep", "/qk/", "{key: {query_keep: [id]}}")
              + route("hk", "/hk/", "{key: {headers: [X-Device], cookies: [lang]}}")
              + route("nohost", "/nh/", "{key: {host: false}}"))


def test_key_query_sorted_by_default_and_stable(gatehouse, org):
    gh = start(gatehouse, org, extra_routes=KEY_ROUTES)
    org.set("/k", headers={"Cache-Control": "max-age=60"})
    get(gh, "/k?b=2&a=1")
    assert_hit(get(gh, "/k?a=1&b=2"), "/k #1")
    assert not is_hit(get(gh, "/k?a=1&b=3"))
    # stable sort: the order of a repeated parameter matters
    get(gh, "/k?a=2&a=1")
    assert not is_hit(get(gh, "/k?a=1&a=2"))
    assert org.count("/k") == 4


def test_key_query_drop_as_is_ignore_keep(gatehouse, org):
    gh = start(gatehouse, org, extra_routes=KEY_ROUTES)
    for p in ("/qd/x", "/qa/x", "/qi/x", "/qk/x"):
        org.set(p, headers={"Cache-Control": "max-age=60"})
    get(gh, "/qd/x?a=1")
    assert_hit(get(gh, "/qd/x?utm_source=n&a=1&utm_medium=m"))
    assert not is_hit(get(gh, "/qd/x?a=1&utmx=1")), "utm_* is the prefix utm_"
    assert org.count("/qd/x") == 2
    get(gh, "/qa/x?b=2&a=1")
    assert not is_hit(get(gh, "/qa/x?a=1&b=2"))
    assert_hit(get(gh, "/qa/x?b=2&a=1"))
    assert org.count("/qa/x") == 2
    get(gh, "/qi/x?a=1")
    assert_hit(get(gh, "/qi/x?a=2"))
    assert_hit(get(gh, "/qi/x"))
    assert org.count("/qi/x") == 1
    get(gh, "/qk/x?id=1&x=2")
    assert_hit(get(gh, "/qk/x?x=3&id=1"))
    assert not is_hit(get(gh, "/qk/x?id=2&x=2"))
    assert org.count("/qk/x") == 2


def test_key_headers_cookies_host(gatehouse, org):
    gh = start(gatehouse, org, extra_routes=KEY_ROUTES)
    for p in ("/hk/x", "/nh/x", "/hostk"):
        org.set(p, headers={"Cache-Control": "max-age=60"})
    get(gh, "/hk/x", {"X-Device": "mobile", "Cookie": "lang=en; sid=1"})
    assert_hit(get(gh, "/hk/x", {"X-Device": "mobile", "Cookie": "sid=2; lang=en"}))
    assert not is_hit(get(gh, "/hk/x", {"X-Device": "desktop", "Cookie": "lang=en"}))
    assert not is_hit(get(gh, "/hk/x", {"X-Device": "mobile", "Cookie": "lang=fr"}))
    assert org.count("/hk/x") == 3
    get(gh, "/nh/x", host="a.example")
    assert_hit(get(gh, "/nh/x", host="a2.example"))
    get(gh, "/hostk", host="a.example")
    assert not is_hit(get(gh, "/hostk", host="a2.example"))
    assert_hit(get(gh, "/hostk", host="A.Example")), "host names are case-insensitive"
    assert org.count("/nh/x") == 1 and org.count("/hostk") == 2


# ============================================================ Set-Cookie


def test_set_cookie_bypass_by_default(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/sc", headers={"Cache-Control": "max-age=60", "Set-Cookie": "s=1"})
    for _ in range(2):
        r = get(gh, "/sc")
        assert r.headers.get("Set-Cookie") == "s=1" and not cs(r).get("stored")
    assert org.count("/sc") == 2


def test_set_cookie_strip(gatehouse, org):
    gh = start(gatehouse, org, extra_routes=route("strip", "/strip/", "{set_cookie: strip}"))
    org.set("/strip/x", headers={"Cache-Control": "max-age=60", "Set-Cookie": "s=1", "X-Other": "y"})
    r = get(gh, "/strip/x")
    assert r.headers.get("Set-Cookie") == "s=1", "the client that caused the fetch gets its cookie"
    r = get(gh, "/strip/x")
    assert_hit(r, "/strip/x #1")
    assert "Set-Cookie" not in r.headers and r.headers.get("X-Other") == "y"
    assert org.count("/strip/x") == 1


# ============================================================ coalescing


def concurrent_gets(gh, path, n, headers=None):
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        try:
            barrier.wait(10)
            out[i] = get(gh, path, headers, timeout=20)
        except Exception as e:  # noqa: BLE001
            out[i] = e
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out, time.monotonic() - t0


def test_coalescing_100_concurrent_misses(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/co", headers={"Cache-Control": "max-age=60"}, delay=1.0)
    out, took = concurrent_gets(gh, "/co", 100)
    errs = [r for r in out if not hasattr(r, "status_code")]
    assert not errs, errs[:3]
    assert all(r.status_code == 200 and r.content == b"/co #1" for r in out)
    assert org.count("/co") == 1, "100 concurrent misses must make exactly one origin request"
    statuses = [cs(r) for r in out]
    assert sum(1 for c in statuses if c.get("fwd") == "uri-miss") == 1, statuses[:5]
    collapsed = sum(1 for c in statuses if c.get("hit") and c.get("collapsed") and isinstance(c.get("ttl"), int))
    assert collapsed >= 50, "only %d responses say collapsed" % collapsed
    assert took < 5, took


def test_coalescing_respects_vary(gatehouse, org):
    """Waiters coalesced on a key whose response varies must get their own variant."""
    gh = start(gatehouse, org)

    def fn(rq, n):
        time.sleep(0.5)
        return 200, {"Cache-Control": "max-age=60", "Vary": "Accept-Language"}, \
            "lang=%s" % rq.header("Accept-Language")
    org.set("/cv", fn=fn)
    barrier = threading.Barrier(20)
    out = {}

    def one(i):
        lang = "en" if i % 2 else "fr"
        barrier.wait(10)
        out[i] = (lang, get(gh, "/cv", {"Accept-Language": lang}, timeout=20))
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 20
    for lang, r in out.values():
        assert r.status_code == 200 and r.content == ("lang=%s" % lang).encode(), (lang, r.content)
    assert 2 <= org.count("/cv") <= 11, org.count("/cv")


def test_stale_while_revalidate_one_background_refresh(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        if n == 1:
            return 200, {"Cache-Control": "max-age=1, stale-while-revalidate=30", "Age": "3"}, None
        time.sleep(0.5)
        return 200, {"Cache-Control": "max-age=60"}, None
    org.set("/herd", fn=fn)
    get(gh, "/herd")
    out, took = concurrent_gets(gh, "/herd", 20)
    assert all(hasattr(r, "status_code") and r.content == b"/herd #1" for r in out), out[:3]
    assert took < 0.45, "stale responses waited for the refresh (%.2f s)" % took
    time.sleep(0.8)
    assert org.count("/herd") == 2, "20 stale hits started %d background refreshes" % (org.count("/herd") - 1)


def test_coalescing_survives_the_leader_client_leaving(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/ld", headers={"Cache-Control": "max-age=60"}, delay=1.0)
    s = socket.create_connection(("127.0.0.1", gh.port))
    s.sendall(b"GET /ld HTTP/1.1\r\nHost: a.example\r\n\r\n")
    time.sleep(0.2)
    s.close()  # the client whose miss leads the fetch goes away
    out, took = concurrent_gets(gh, "/ld", 5)
    assert all(hasattr(r, "status_code") and r.status_code == 200 for r in out), out
    assert took < 4, "waiters were held until lock_timeout (%.1f s)" % took


def test_coalescing_across_two_workers(gatehouse, org):
    gh = start(gatehouse, org, workers=2)
    org.set("/co2", headers={"Cache-Control": "max-age=60"}, delay=0.8)
    out, _ = concurrent_gets(gh, "/co2", 40)
    assert all(hasattr(r, "status_code") and r.status_code == 200 and r.content == b"/co2 #1" for r in out), out[:3]
    assert org.count("/co2") == 1


def test_coalescing_releases_waiters_when_not_storable(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/cons", headers={"Cache-Control": "no-store"}, delay=0.6)
    out, took = concurrent_gets(gh, "/cons", 10)
    assert all(hasattr(r, "status_code") and r.status_code == 200 for r in out), out[:3]
    assert org.count("/cons") == 10
    assert took < 3.5, "waiters were not released in parallel (%.1f s)" % took


def test_coalescing_lock_timeout(gatehouse, org):
    gh = start(gatehouse, org, extra_routes=route("lk", "/lk/", "{lock_timeout: 300ms}"))
    org.set("/lk/x", headers={"Cache-Control": "max-age=60"}, delay=1.5)
    out, took = concurrent_gets(gh, "/lk/x", 5)
    assert all(hasattr(r, "status_code") and r.status_code == 200 for r in out), out[:3]
    assert org.count("/lk/x") == 5, "waiters fetch on their own after lock_timeout"
    assert took < 3.2, took
    # the waiters did wait (about 300 ms) before fetching: they were coalesced first
    times = sorted(rq.time for rq in org.requests("/lk/x"))
    assert all(t - times[0] >= 0.2 for t in times[1:]), [round(t - times[0], 3) for t in times]


# ============================================================ purge


def purge(gh, query):
    """POST /cache/purge?query, sent as is (a requests client would re-encode a bad %-escape)."""
    return one(gh.admin_port, request_bytes("POST", "/cache/purge?" + query, host="127.0.0.1",
                                            headers=[("Content-Length", "0")]), method="POST")


def purged(gh, query):
    r = purge(gh, query)
    assert r.status == 200, (query, r.status, r.body)
    assert (r.header("Content-Type") or "").startswith("application/json")
    return r.json()


def q(url):
    return urllib.parse.quote(url, safe="")


def test_purge_by_tag(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/p1", headers={"Cache-Control": "max-age=60", "Cache-Tag": "red,blue"})
    org.set("/p2", headers={"Cache-Control": "max-age=60", "Surrogate-Key": "blue green"})
    org.set("/p3", headers={"Cache-Control": "max-age=60", "Cache-Tag": "green"})
    org.set("/p4", headers={"Cache-Control": "max-age=60", "Cache-Tag": "reddish"})
    for p in ("/p1", "/p2", "/p3", "/p4"):
        get(gh, p)
    res = purged(gh, "tenant=acme&tag=red")
    assert res["purged"] == 1 and res["soft"] is False, res
    assert_fwd(get(gh, "/p1"), "uri-miss")
    for p in ("/p2", "/p3", "/p4"):
        assert_hit(get(gh, p))
    assert purged(gh, "tenant=acme&tag=blue&tag=green")["purged"] == 3  # p1 (refetched), p2, p3
    for p in ("/p1", "/p2", "/p3"):
        assert not is_hit(get(gh, p)), p
    assert_hit(get(gh, "/p4"))
    assert metric_value(gh.metrics(), "gatehouse_cache_purged_total") >= 4


def test_purge_by_url_and_prefix(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        return 200, {"Cache-Control": "max-age=60", "Vary": "X-V"}, None
    org.set("/u", fn=fn)
    org.set("/pre/*", headers={"Cache-Control": "max-age=60"})
    org.set("/prx", headers={"Cache-Control": "max-age=60"})
    get(gh, "/u?q=1", {"X-V": "1"})
    get(gh, "/u?q=1", {"X-V": "2"})
    get(gh, "/u?q=2", {"X-V": "1"})
    for p in ("/pre/a", "/pre/b/c", "/prx"):
        get(gh, p)
    get(gh, "/pre/a", host="a2.example")
    assert purged(gh, "tenant=acme&url=" + q("http://a.example/u?q=1"))["purged"] >= 1
    assert not is_hit(get(gh, "/u?q=1", {"X-V": "1"}))
    assert not is_hit(get(gh, "/u?q=1", {"X-V": "2"})), "every variant of the URL"
    assert_hit(get(gh, "/u?q=2", {"X-V": "1"}))
    assert purged(gh, "tenant=acme&prefix=" + q("http://a.example/pre/"))["purged"] == 2
    assert not is_hit(get(gh, "/pre/a")) and not is_hit(get(gh, "/pre/b/c"))
    assert_hit(get(gh, "/prx"))
    assert_hit(get(gh, "/pre/a", host="a2.example"))


def test_purged_url_is_not_served_under_an_equivalent_key(gatehouse, org):
    """With sorted queries and query_drop, URLs that differ in parameter order or in
    dropped parameters share one stored object: purging one of those URLs must not
    leave the object to be served for it."""
    gh = start(gatehouse, org, extra_routes=KEY_ROUTES)
    org.set("/eq", headers={"Cache-Control": "max-age=60"})
    org.set("/qd/eq", headers={"Cache-Control": "max-age=60"})
    get(gh, "/eq?b=2&a=1")
    assert_hit(get(gh, "/eq?a=1&b=2"))
    purged(gh, "tenant=acme&url=" + q("http://a.example/eq?a=1&b=2"))
    r = get(gh, "/eq?a=1&b=2")
    assert not is_hit(r) and org.count("/eq") == 2, r.headers.get("Cache-Status")
    get(gh, "/qd/eq?a=1&utm_source=mail")
    assert_hit(get(gh, "/qd/eq?a=1"))
    purged(gh, "tenant=acme&url=" + q("http://a.example/qd/eq?a=1"))
    r = get(gh, "/qd/eq?a=1")
    assert not is_hit(r) and org.count("/qd/eq") == 2, r.headers.get("Cache-Status")


def test_purge_tenant_all_and_errors(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/t", headers={"Cache-Control": "max-age=60"})
    get(gh, "/t")
    get(gh, "/t", host="a2.example")
    get(gh, "/t", host="b.example")
    info = gh.admin_get("/cache").json()
    assert info["objects"] == 3 and 0 < info["used"] <= info["memory"], info
    assert purged(gh, "tenant=acme&all=1")["purged"] == 2
    assert not is_hit(get(gh, "/t")) and not is_hit(get(gh, "/t", host="a2.example"))
    assert_hit(get(gh, "/t", host="b.example"))
    for bad in ("tag=x", "tenant=acme", "tenant=acme&url=%zz"):
        r = purge(gh, bad)
        assert r.status == 400, (bad, r.status, r.body)
        assert (r.header("Content-Type") or "").startswith("application/problem+json"), bad
        assert json.loads(r.body)["status"] == 400
    r = purge(gh, "tenant=nosuch&all=1")
    assert r.status == 404 and json.loads(r.body)["status"] == 404, (r.status, r.body)


def test_soft_purge_then_hard_purge(gatehouse, org):
    gh = start(gatehouse, org)

    def fn(rq, n):
        time.sleep(0.3 if n > 1 else 0)
        return 200, {"Cache-Control": "max-age=60, stale-while-revalidate=30", "Cache-Tag": "s"}, None
    org.set("/sp", fn=fn)
    get(gh, "/sp")
    res = purged(gh, "tenant=acme&tag=s&soft=1")
    assert res["purged"] == 1 and res["soft"] is True, res
    t0 = time.monotonic()
    r = get(gh, "/sp")
    assert time.monotonic() - t0 < 0.25 and r.content == b"/sp #1", "soft purge: stale served at once"
    c = assert_hit(r)
    assert c.get("detail") == "stale-while-revalidate", c
    assert org.wait_count("/sp", 2, timeout=3)
    time.sleep(0.5)
    assert_hit(get(gh, "/sp"), "/sp #2")
    assert purged(gh, "tenant=acme&tag=s")["purged"] == 1
    r = get(gh, "/sp")
    assert_fwd(r, "uri-miss")
    assert r.content == b"/sp #3" and org.count("/sp") == 3


def test_soft_purged_object_still_serves_stale_if_error(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/spe", headers={"Cache-Control": "max-age=60, stale-if-error=60", "Cache-Tag": "e"})
    get(gh, "/spe")
    assert purged(gh, "tenant=acme&tag=e&soft=1")["purged"] == 1
    org.set("/spe", status=503, body="down")
    r = get(gh, "/spe")
    assert r.status_code == 200 and r.content == b"/spe #1"
    assert cs(r).get("detail") == "stale-if-error"
    assert org.count("/spe") == 2, "a soft-purged object is revalidated"


def test_purge_reaches_every_worker(gatehouse, org):
    gh = start(gatehouse, org, workers=2)
    org.set("/w", headers={"Cache-Control": "max-age=60"})
    # every request on its own connection: SO_REUSEPORT spreads them over both workers
    bodies = [get(gh, "/w").content for _ in range(30)]
    assert set(bodies) == {b"/w #1"} and org.count("/w") == 1
    assert purged(gh, "tenant=acme&url=" + q("http://a.example/w"))["purged"] == 1
    bodies = [get(gh, "/w").content for _ in range(30)]
    assert b"/w #1" not in bodies, "a worker still served the purged object"
    assert set(bodies) == {b"/w #2"} and org.count("/w") == 2


# ============================================================ memory


def test_memory_cap_under_many_large_objects(gatehouse, org):
    gh = start(gatehouse, org, top="cache: {memory: 8m}\n")
    big = b"z" * (256 * 1024)
    org.set("/big/*", headers={"Cache-Control": "max-age=600"}, body=big)
    org.set("/huge", headers={"Cache-Control": "max-age=600"}, body=b"y" * (1536 * 1024))
    get(gh, "/big/warm")
    rss0 = rss_bytes(gh.pid)
    for i in range(200):
        r = get(gh, "/big/%d" % i)
        assert r.status_code == 200 and len(r.content) == len(big)
    assert_hit(get(gh, "/big/199"))
    m = gh.metrics()
    cap = 8 * 1024 * 1024
    assert metric_value(m, "gatehouse_cache_memory_limit_bytes") == cap
    used = metric_value(m, "gatehouse_cache_bytes")
    assert 0 < used <= cap, used
    assert 1 <= metric_value(m, "gatehouse_cache_objects") <= 32
    assert metric_value(m, "gatehouse_cache_evictions_total") >= 150
    info = gh.admin_get("/cache").json()
    assert info["memory"] == cap and info["used"] <= cap, info
    grew = rss_bytes(gh.pid) - rss0
    if not os.environ.get("GATEHOUSE_SANITIZED"):  # ASan keeps freed memory in quarantine (256 MiB)
        assert grew < 40 * 1024 * 1024, "RSS grew by %d MiB" % (grew >> 20)
    # default max_object = min(16m, memory/8) = 1 MiB: a 1.5 MiB body is not stored
    get(gh, "/huge")
    get(gh, "/huge")
    assert org.count("/huge") == 2


def test_full_cache_still_admits_new_objects(gatehouse, org):
    """When the store is full of objects that were reused, a newly fetched object must
    still be kept for its next request: S3-FIFO gives it a probation period in the small
    queue (10% of the capacity) and evicts from the main queue meanwhile."""
    gh = start(gatehouse, org, top="cache: {memory: 8m}\n")
    org.set("/f/*", headers={"Cache-Control": "max-age=600"}, body=b"f" * (256 * 1024))
    for i in range(40):  # fill: each requested twice (hit once)
        get(gh, "/f/old%d" % i)
        get(gh, "/f/old%d" % i)
    lost = []
    for i in range(10):
        get(gh, "/f/new%d" % i)
        if not is_hit(get(gh, "/f/new%d" % i)):
            lost.append(i)
    assert not lost, "new objects evicted before their second request: %s of 10 (%s)" % (
        len(lost), gh.admin_get("/cache").text.strip())


def test_eviction_is_scan_resistant(gatehouse, org):
    """S3-FIFO: objects reused before a one-pass scan (8 x 256 KiB, a quarter of the
    cap) stay while 200 one-hit objects go through the small queue."""
    gh = start(gatehouse, org, top="cache: {memory: 8m}\n")
    org.set("/s/*", headers={"Cache-Control": "max-age=600"}, body=b"s" * (256 * 1024))
    for h in range(8):
        for _ in range(4):
            get(gh, "/s/hot%d" % h)
    for i in range(200):
        get(gh, "/s/scan%d" % i)
    lost = [h for h in range(8) if not is_hit(get(gh, "/s/hot%d" % h))]
    assert not lost, "a one-pass scan evicted hot objects %s (%s)" % (lost, gh.admin_get("/cache").text.strip())


# ============================================================ metrics, access log


def test_metrics_and_access_log(gatehouse, org):
    gh = start(gatehouse, org)
    org.set("/m", headers={"Cache-Control": "max-age=60"})
    org.set("/mp", headers={"Cache-Control": "max-age=60"})
    org.set("/moic", headers={"Cache-Control": "max-age=60"})
    org.set("/ms", headers={"Cache-Control": "max-age=1", "Age": "5", "ETag": '"m"'}, conditional=True)
    steps = [("GET", "/m", {}, "miss"), ("GET", "/m", {}, "hit"), ("POST", "/mp", {}, "bypass"),
             ("GET", "/moic", {"Cache-Control": "only-if-cached"}, "error"),
             ("GET", "/ms", {}, "miss"), ("GET", "/ms", {"Cache-Control": "max-stale=60"}, "stale"),
             ("GET", "/ms", {}, "revalidated")]
    for i, (m, p, h, _) in enumerate(steps):
        req(gh, m, p, dict(h, **{"X-Request-Id": "cache-log-%d" % i}))
    mx = gh.metrics()
    want = {"hit": 1, "miss": 2, "bypass": 1, "error": 1, "stale": 1, "revalidated": 1}
    got = {k: metric_value(mx, "gatehouse_cache_requests_total", tenant="acme", route="r", result=k)
           for k in want}
    assert got == want, got
    assert metric_value(mx, "gatehouse_cache_objects") == 2
    assert metric_value(mx, "gatehouse_cache_bytes") > 0
    assert metric_value(mx, "gatehouse_cache_memory_limit_bytes") == 256 * 1024 * 1024

    def lines():
        return {ln.get("request_id"): ln for ln in gh.log_lines()
                if str(ln.get("request_id", "")).startswith("cache-log-")}
    assert poll(lambda: len(lines()) == len(steps), timeout=3), lines()
    got = lines()
    for i, (_, p, _, word) in enumerate(steps):
        assert got["cache-log-%d" % i].get("cache") == word, (p, got["cache-log-%d" % i])


def test_bad_cache_configuration_is_refused_with_its_place(tmp_path):
    # each mistake in the cache keys is an error with file:line:col and the key path
    from helpers import fill, free_port, run_cli
    bad = {
        "set_cookie: sometimes": "cache.set_cookie: expected bypass",
        "key: {query_keep: [a], query_drop: [b]}": "cache.key.query_drop: use query_keep or query_drop",
        "key: {query: shuffled}": "cache.key.query: expected sorted, as_is or ignore",
        "key: {headers: [\"bad name\"]}": "cache.key.headers[0]: expected a name",
        "default_ttl: soon": "cache.default_ttl: bad duration",
    }
    for frag, want in bad.items():
        cfg = tmp_path / "gh.yaml"
        cfg.write_text(fill("""listeners: [{name: http, listen: "127.0.0.1:{p}"}]
upstreams: {o: {backends: ["127.0.0.1:9"]}}
tenants:
  - name: t
    sites:
      - hosts: ["*"]
        routes:
          - name: r
            upstream: o
            cache: {%s}
""" % frag, {"p": free_port()}))
        r = run_cli("validate", "-c", str(cfg))
        assert r.returncode == 1 and "gh.yaml:10:" in r.stderr and want in r.stderr, (frag, r.stderr)
    cfg.write_text("listeners: [{name: http, listen: \"127.0.0.1:1\"}]\ncache: {memory: 100k}\n")
    r = run_cli("validate", "-c", str(cfg))
    assert r.returncode == 1 and "cache.memory" in r.stderr and "out of range" in r.stderr, r.stderr
