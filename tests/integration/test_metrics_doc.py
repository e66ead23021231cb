"""docs/metrics.md is the reference of /metrics (issue 10): a gatehouse that uses everything
(routes, cache, protection with global limits in Redis and flood mode, upstreams with health
checks, flags, experiments, analytics, SLOs) gets some traffic; its /metrics is parsed by a strict
parser of the text format 0.0.4 and every family must be documented with the same type and
labels, and every documented family must appear (or be marked "only when" in the doc)."""

import json
import math
import os
import re
import shutil
import subprocess

import pytest

from helpers import HEADER, REPO, free_port, poll, port_accepts, request, session

DOC = os.path.join(REPO, "docs", "metrics.md")
KEY = "doc-flags-key-0123456789abcdef"

CONFIG = HEADER.replace("workers: {workers}", "workers: 2") + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
ofrep: {listen: "127.0.0.1:{ofrep_port}"}
experiments: {store: "{tmp}/exp.db"}
cache: {memory: 16m}
protection:
  max_keys: 10000
  redis: {address: "127.0.0.1:{redis_port}", sync_interval: 50ms}
upstreams:
  app:
    backends: ["127.0.0.1:{demo_port}"]
    health_check: {path: /, interval: 200ms, timeout: 100ms}
tenants:
  - name: shop
    flags: {file: "{tmp}/flags.json", api_keys: ["%s"]}
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics: [{name: checkout, kind: conversion, path: /checkout}]
    protection:
      flood: {multiple: 4, min_rate: 50, per_ip: "10/s", hold: 2s}
    slos:
      - {name: availability, objective: availability, target: 0.999, window: 1h}
    sites:
      - hosts: ["*"]
        routes:
          - name: cached
            match: {path: {prefix: /c}}
            upstream: app
            cache: {enabled: true, default_ttl: 60}
          - name: limited
            match: {path: {prefix: /l}}
            upstream: app
            protection:
              rate_limits:
                - {name: per-ip, key: [ip], rate: 2/s, burst: 1}
                - {name: global, key: [tenant], rate: 1000/s, burst: 100, scope: global}
          - name: home
            upstream: app
            analytics: true
            flag: {key: new-home, unit: "cookie:uid"}
            slos:
              - {name: fast, objective: latency, target: 0.99, threshold: 250ms, window: 1h}
""" % KEY

FLAGS = {"flags": {"new-home": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                                "targeting": {"fractional": [["on", 50], ["off", 50]]}}}}


# ---------------------------------------------------------------- a strict parser of text format 0.0.4

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class FormatError(AssertionError):
    pass


def parse_value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise FormatError("%s: bad value %r" % (where, s))
    return float(s)


def parse_labels(s, where):
    """{name: value} from the text between braces; escapes \\\\, \\" and \\n only."""
    out, i = {}, 0
    while i < len(s):
        m = re.compile(LNAME + "=\"").match(s, i)
        if not m:
            raise FormatError("%s: bad label at %r" % (where, s[i:]))
        name = m.group(0)[:-2]
        i = m.end()
        val = []
        while True:
            if i >= len(s):
                raise FormatError("%s: unterminated label value" % where)
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise FormatError("%s: bad escape \\%s" % (where, nxt))
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise FormatError("%s: newline in a label value" % where)
            else:
                val.append(c)
                i += 1
        if name in out:
            raise FormatError("%s: label %s twice" % (where, name))
        out[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise FormatError("%s: expected ',' at %r" % (where, s[i:]))
            i += 1
    return out


def parse_exposition(text):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}; raises FormatError."""
    fams, order, cur = {}, [], None
    seen_series = set()
    if text and not text.endswith("\n"):
        raise FormatError("the text must end with a newline")
    for no, ln in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (no, ln[:120])
        if ln == "":
            continue
        if ln.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (" + NAME + r") (.*)", ln)
            if not m:
                if re.match(r"#\s*(HELP|TYPE)\b", ln):
                    raise FormatError("%s: malformed %s line" % (where, ln.split()[1]))
                continue  # a comment
            kind, name, rest = m.groups()
            f = fams.get(name)
            if f and f["closed"]:
                raise FormatError("%s: family %s is not one group" % (where, name))
            if not f:
                f = fams[name] = {"type": None, "help": None, "samples": [], "closed": False}
                order.append(name)
            if cur and cur != name:
                fams[cur]["closed"] = True
            cur = name
            if kind == "TYPE":
                if f["type"] is not None:
                    raise FormatError("%s: a second TYPE for %s" % (where, name))
                if f["samples"]:
                    raise FormatError("%s: TYPE after samples of %s" % (where, name))
                if rest not in TYPES:
                    raise FormatError("%s: unknown type %r" % (where, rest))
                f["type"] = rest
            else:
                if f["help"] is not None:
                    raise FormatError("%s: a second HELP for %s" % (where, name))
                f["help"] = rest
            continue
        m = re.fullmatch(r"(" + NAME + r")(?:\{(.*)\})? (\S+)(?: (-?\d+))?", ln)
        if not m:
            raise FormatError("%s: not a sample line" % where)
        name, lab, val, _ts = m.groups()
        labels = parse_labels(lab or "", where)
        value = parse_value(val, where)
        fam = None
        for cand in (name, re.sub(r"_(bucket|sum|count)$", "", name)):
            if cand in fams and fams[cand]["type"] is not None:
                fam = cand
                break
        if fam is None:
            raise FormatError("%s: a sample without a TYPE line for its family" % where)
        f = fams[fam]
        t = f["type"]
        if fam != name and not (t == "histogram" and name in (fam + "_bucket", fam + "_sum", fam + "_count")) \
                and not (t == "summary" and name in (fam + "_sum", fam + "_count")):
            raise FormatError("%s: %s does not belong to the %s family %s" % (where, name, t, fam))
        if f["closed"] or (cur and cur != fam):
            raise FormatError("%s: family %s is not one group" % (where, fam))
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise FormatError("%s: duplicate series" % where)
        seen_series.add(key)
        f["samples"].append((name, labels, value))
    for name, f in fams.items():
        if f["type"] is None:
            raise FormatError("family %s has no TYPE line" % name)
        if f["type"] == "counter":
            if not name.endswith("_total"):
                raise FormatError("counter %s does not end in _total" % name)
            for s in f["samples"]:
                if not s[2] >= 0:
                    raise FormatError("counter %s is negative or NaN: %r" % (name, s))
        if f["type"] == "histogram":
            check_histogram(name, f["samples"])
    return fams


def check_histogram(name, samples):
    groups = {}
    for n, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if n == name + "_bucket":
            if "le" not in labels:
                raise FormatError("%s: a bucket without le" % name)
            g["buckets"].append((parse_value(labels["le"], name), v))
        elif n == name + "_sum":
            g["sum"] = v
        elif n == name + "_count":
            g["count"] = v
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise FormatError("%s%s: the last bucket must be le=\"+Inf\"" % (name, rest))
        for (le0, c0), (le1, c1) in zip(b, b[1:]):
            if not le1 > le0:
                raise FormatError("%s%s: le not increasing" % (name, rest))
            if c1 < c0:
                raise FormatError("%s%s: buckets not cumulative" % (name, rest))
        if g["count"] is None or g["sum"] is None:
            raise FormatError("%s%s: _sum or _count missing" % (name, rest))
        if g["count"] != b[-1][1]:
            raise FormatError("%s%s: +Inf bucket %s != _count %s" % (name, rest, b[-1][1], g["count"]))


def family_labels(name, f):
    """The label names of a family's samples (le left out of histograms); one set per family."""
    sets = set()
    for _, labels, _ in f["samples"]:
        sets.add(tuple(sorted(k for k in labels if not (f["type"] == "histogram" and k == "le"))))
    if len(sets) > 1:
        raise FormatError("%s: samples with different label names: %s" % (name, sorted(sets)))
    return set(sets.pop()) if sets else None


# ---------------------------------------------------------------- the document

def parse_doc(path=DOC):
    """{family: {"type", "labels": set, "only_when": bool}} from '### `name`' entries, each
    followed by a line 'type: T · unit: U · labels: `a`, `b` | none [· only when: ...]'."""
    out, lines = {}, open(path, encoding="utf-8").read().split("\n")
    for i, ln in enumerate(lines):
        m = re.fullmatch(r"### `(gatehouse_[a-z0-9_]+)`", ln.strip())
        if not m:
            continue
        name = m.group(1)
        meta = lines[i + 1].strip() if i + 1 < len(lines) else ""
        parts = {}
        for p in meta.split(" · "):
            k, _, v = p.partition(":")
            parts[k.strip()] = v.strip()
        assert "type" in parts and "labels" in parts and "unit" in parts, \
            "docs/metrics.md: %s: the line after the heading needs type, unit and labels: %r" % (name, meta)
        labels = set() if parts["labels"] == "none" else set(re.findall(r"`([a-z_]+)`", parts["labels"]))
        assert name not in out, "docs/metrics.md documents %s twice" % name
        out[name] = {"type": parts["type"], "labels": labels, "only_when": "only when" in parts}
    return out


# ---------------------------------------------------------------- tests

def test_parser_rejects_what_it_should():
    ok = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
          "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 2.5\nh_count 3\n")
    fams = parse_exposition(ok)
    assert fams["a_total"]["samples"] == [("a_total", {"x": "1"}, 2.0)] and fams["h"]["type"] == "histogram"
    bad = [
        "a_total 1\n",                                                   # no TYPE
        "# TYPE a counter\na 1\n",                                       # counter without _total
        "# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n",  # two TYPEs
        "# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\na_total{x=\"2\"} 1\n",  # not one group
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  # not cumulative
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  # +Inf != count
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
        "# TYPE g gauge\ng{x=\"a\\t\"} 1\n",                             # bad escape
        "# TYPE g gauge\ng{x=\"a\"} 1\ng{x=\"a\"} 2\n",                  # duplicate series
        "# TYPE g gauge\ng 1",                                           # no final newline
        "# TYPE g gauge\ng one\n",                                       # bad value
    ]
    for text in bad:
        with pytest.raises(FormatError):
            parse_exposition(text)


def start_redis(tmp_path):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed (make deps installs it)")
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert poll(lambda: port_accepts(port), timeout=10)
    return p, port


def test_every_family_is_documented(gatehouse, tmp_path):
    (tmp_path / "flags.json").write_text(json.dumps(FLAGS))
    redis, redis_port = start_redis(tmp_path)
    try:
        ofrep_port = free_port()
        gh = gatehouse(CONFIG, tmp=str(tmp_path), redis_port=redis_port, ofrep_port=ofrep_port)
        s = session()
        for i in range(20):  # a cached route (miss then hits), a rate-limited one, the flagged home
            s.get(gh.url + "/c/page", headers={"Host": "example.com"})
            s.get(gh.url + "/l/x", headers={"Host": "example.com"})
            s.get(gh.url + "/home?i=%d" % i, headers={"Host": "example.com"})
        assert request("GET", gh.url + "/x", headers={"Host": "nosuch.example"}).status_code in (200, 404)
        # a parser rejection (bad request line)
        import socket
        with socket.create_connection(("127.0.0.1", gh.port), timeout=5) as c:
            c.sendall(b"GET / HTTP/9.9\r\n\r\n")
            c.recv(1024)
        assert poll(lambda: "gatehouse_protection_redis_syncs_total" in gh.admin_get("/metrics").text, timeout=5)
        text = gh.admin_get("/metrics")
        assert text.status_code == 200
        assert text.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        fams = parse_exposition(text.text)
    finally:
        redis.terminate()
        redis.wait(10)

    doc = parse_doc()
    problems = []
    for name, f in sorted(fams.items()):
        d = doc.get(name)
        if not d:
            problems.append("%s (%s) is not documented in docs/metrics.md" % (name, f["type"]))
            continue
        if d["type"] != f["type"]:
            problems.append("%s: type %s, documented %s" % (name, f["type"], d["type"]))
        labels = family_labels(name, f)
        if labels is not None and labels != d["labels"]:
            problems.append("%s: labels %s, documented %s" % (name, sorted(labels), sorted(d["labels"])))
        if not f["help"]:
            problems.append("%s has no HELP" % name)
    for name, d in sorted(doc.items()):
        if name not in fams and not d["only_when"]:
            problems.append("%s is documented but not exposed (mark it 'only when ...')" % name)
    assert not problems, "\n".join(problems)
    # the traffic shows where it should
    series = {(n, tuple(sorted(l.items()))): v for f in fams.values() for n, l, v in f["samples"]}
    assert series[("gatehouse_cache_requests_total", (("result", "hit"), ("route", "cached"), ("tenant", "shop")))] > 0
    assert any(n == "gatehouse_protection_decisions_total" and v > 0 for (n, _), v in series.items())
    assert any(n == "gatehouse_slo_burn_rate" for (n, _), v in series.items())
    assert any(n == "gatehouse_parser_rejections_total" and v >= 1 for (n, _), v in series.items())
