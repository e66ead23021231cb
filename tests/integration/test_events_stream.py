"""The event stream (issue 12, src/events): access records, exposures and metric events through
NATS JetStream (with the disk spool) into ClickHouse (the sink), and purges from node to node.

Real nats-server and clickhouse-server are started by the module on loopback ports; gatehouse
nodes are the real binary. Every expected count is what the test itself sent (request ids are
chosen by the test through X-Request-Id, event ids through eventId)."""

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from engines import ClickHouse, Nats
from helpers import BIN, HEADER, free_port, metric_value, parse_metrics, poll, port_accepts, request

KEY = "shop-key-0123456789abcdef"
FLAGS = {"flags": {
    "new-home": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                 "targeting": {"fractional": [["on", 50], ["off", 50]]}},
}}


class TagOrigin:
    """An origin whose answers are cacheable for 300 s with a Cache-Tag; its body carries a
    version the test bumps, so a node serving the old body still has the object cached."""

    def __init__(self):
        self.version = 1
        me = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = ("v%d %s\n" % (me.version, self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Cache-Control", "public, max-age=300")
                self.send_header("Cache-Tag", "t1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


NODE = HEADER.replace("workers: {workers}", "workers: 2") + """
node: "{node}"
ofrep: {listen: "127.0.0.1:{ofrep_port}"}
experiments: {store: "{tmp}/exp.db"}
cache: {memory: 8m}
events:
  nats:
    url: "{nats}"
    spool_dir: "{tmp}/spool"
{clickhouse}upstreams:
  origin: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: shop
    flags: {file: "{flags}", api_keys: ["%s"]}
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics: [{name: purchase, kind: conversion, event: purchase}]
    sites:
      - hosts: ["*"]
        routes:
          - name: guarded
            match: {path: {prefix: /guarded}}
            upstream: origin
            protection: {deny: ["127.0.0.0/8"]}
          - name: cached
            match: {path: {prefix: /c/}}
            upstream: origin
            cache: {enabled: true}
          - name: home
            upstream: origin
            flag: {key: new-home, unit: "cookie:uid", exposure: true}
""" % KEY


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    nats = Nats(d)
    ch = ClickHouse(d)
    yield nats, ch
    nats.stop()
    ch.stop()


@pytest.fixture
def tag_origin():
    o = TagOrigin()
    yield o
    o.stop()


def node(gatehouse, tmp_path, nats, origin, name="n1", ch=None, db=None):
    flags = tmp_path / "flags.json"
    if not flags.exists():
        flags.write_text(json.dumps(FLAGS))
    chs = ""
    if ch:
        chs = '  clickhouse: {url: "%s", database: %s, batch: 2000, flush_interval: 200ms}\n' % (ch.url, db)
    port = free_port()
    gh = gatehouse(NODE, node=name, nats=nats.url, clickhouse=chs, origin_port=origin.port, flags=str(flags),
                   ofrep_port=port)
    gh.ofrep = "http://127.0.0.1:%d" % port
    assert poll(lambda: port_accepts(port), timeout=5)
    return gh


def publish(gh, events):
    return request("POST", gh.ofrep + "/v1/events:publish", data=json.dumps({"events": events}),
                   headers={"Content-Type": "application/json", "X-API-Key": KEY})


def metrics(gh):
    return parse_metrics(gh.admin_get("/metrics").text)


def test_records_reach_clickhouse_once(gatehouse, tmp_path, engines, tag_origin):
    nats, ch = engines
    db = "t_" + uuid.uuid4().hex[:8]
    gh = node(gatehouse, tmp_path, nats, tag_origin, ch=ch, db=db)
    rids = ["rq%032d" % i for i in range(300)]
    units = {}
    for i, rid in enumerate(rids):
        r = request("GET", gh.url + "/home/%d" % i, headers={"Host": "shop.example", "X-Request-Id": rid,
                                                           "Cookie": "uid=u%d" % (i % 100)})
        assert r.status_code == 200
        units["u%d" % (i % 100)] = r.headers.get("X-Gatehouse-Variant")
    for i in range(5):  # security decisions: requests protection refused
        r = request("GET", gh.url + "/guarded", headers={"Host": "shop.example", "X-Request-Id": "sec%029d" % i})
        assert r.status_code == 403
    evs = [{"eventDefinition": "purchase", "eventId": "ev-%d" % i, "payload": {"targetingKey": "u%d" % i}}
           for i in range(40)]
    assert publish(gh, evs).json()["accepted"] == 40
    assert publish(gh, evs).json()["duplicates"] == 40  # a retried post: once in SQLite, once on the stream

    def rows(table, col, like):
        try:
            return ch.scalar("SELECT uniqExact(%s) FROM %s.%s WHERE %s LIKE '%s'" % (col, db, table, col, like))
        except RuntimeError:
            return -1

    assert poll(lambda: rows("access", "request_id", "rq%") == 300, timeout=20), rows("access", "request_id", "rq%")
    assert poll(lambda: rows("exposures", "request_id", "rq%") == 300, timeout=20)
    assert poll(lambda: rows("events", "event_id", "ev-%") == 40, timeout=20)
    # each once: nothing doubled on the way (FINAL collapses what a redelivery would add)
    assert ch.scalar("SELECT count() FROM %s.access FINAL WHERE request_id LIKE 'rq%%'" % db) == 300
    assert ch.scalar("SELECT count() FROM %s.events FINAL WHERE event_id LIKE 'ev-%%'" % db) == 40
    # the columns carry the record: one access row read back field by field
    row = json.loads(ch.query("SELECT tenant, route, method, path, status FROM %s.access FINAL "
                              "WHERE request_id = '%s' FORMAT JSONEachRow" % (db, rids[7])))
    assert row == {"tenant": "shop", "route": "home", "method": "GET", "path": "/home/7", "status": 200}
    # the exposures give back each unit's variant as the edge served it
    got = ch.query("SELECT unit, any(variant) FROM %s.exposures FINAL WHERE request_id LIKE 'rq%%' "
                   "GROUP BY unit FORMAT TSV" % db)
    seen = dict(line.split("\t") for line in got.strip().splitlines())
    assert seen == units, (seen, units)
    # the security view: the refused requests, with their decision
    assert poll(lambda: rows("access", "request_id", "sec%") == 5, timeout=20)
    got = ch.query("SELECT request_id, route, status, protect_reason, protect_action FROM %s.security "
                   "WHERE request_id LIKE 'sec%%' ORDER BY request_id FORMAT TSV" % db).strip().splitlines()
    assert got == ["sec%029d\tguarded\t403\tdeny\tblock" % i for i in range(5)], got
    assert ch.scalar("SELECT count() FROM %s.security WHERE request_id LIKE 'rq%%'" % db) == 0
    # the stream gatehouse created: its subjects, duplicate window and default retention
    cfg = nats.stream_config("GATEHOUSE")
    assert cfg["subjects"] == ["gatehouse.>"] and cfg["storage"] == "file"
    assert cfg["duplicate_window"] == 120 * 10**9 and cfg["max_age"] == 7 * 86400 * 10**9, cfg
    m = metrics(gh)
    assert metric_value(m, "gatehouse_stream_records_total", kind="event") == 40
    assert metric_value(m, "gatehouse_stream_records_total", kind="access") >= 300
    assert metric_value(m, "gatehouse_stream_connected") == 1
    assert metric_value(m, "gatehouse_clickhouse_connected") == 1
    assert metric_value(m, "gatehouse_clickhouse_inserted_total") >= 640


def test_a_node_killed_while_nats_is_down_loses_nothing_acknowledged(gatehouse, tmp_path, engines, tag_origin):
    """NATS down: records wait in the spool; kill -9 the node; NATS back, the node restarted on
    the same spool: every acknowledged event and every answered request arrives, once."""
    nats, ch = engines
    db = "t_" + uuid.uuid4().hex[:8]
    gh = node(gatehouse, tmp_path, nats, tag_origin, ch=ch, db=db)
    assert poll(lambda: metric_value(metrics(gh), "gatehouse_clickhouse_connected") == 1, timeout=10)
    nats.kill9()
    try:
        for i in range(200):
            assert request("GET", gh.url + "/home/x", headers={"Host": "shop.example", "X-Request-Id": "kd%030d" % i,
                                                               "Cookie": "uid=k%d" % i}).status_code == 200
        evs = [{"eventDefinition": "purchase", "eventId": "kev-%d" % i, "payload": {"targetingKey": "k%d" % i}}
               for i in range(100)]
        assert publish(gh, evs).json()["accepted"] == 100
        assert poll(lambda: metric_value(metrics(gh), "gatehouse_stream_spool_bytes") > 0, timeout=5)
        assert metric_value(metrics(gh), "gatehouse_stream_connected") == 0
        time.sleep(0.3)  # the access log's writer hands records to the spool every 20 ms
        gh.proc.send_signal(signal.SIGKILL)
        gh.proc.wait()
    finally:
        nats.start()
    # the same node again: same config file, same working directory (so the same spool)
    p = subprocess.Popen([BIN, "run", "-c", gh.config_path], cwd=gh.dir, stdin=subprocess.DEVNULL,
                         stdout=open(os.path.join(gh.dir, "stdout2.log"), "wb"),
                         stderr=open(os.path.join(gh.dir, "stderr2.log"), "wb"))
    try:
        assert poll(lambda: port_accepts(gh.admin_port), timeout=10)

        def count(table, col, like):
            try:
                return ch.scalar("SELECT uniqExact(%s) FROM %s.%s WHERE %s LIKE '%s'" % (col, db, table, col, like))
            except RuntimeError:
                return -1
        assert poll(lambda: count("events", "event_id", "kev-%") == 100, timeout=30), count("events", "event_id", "kev-%")
        assert poll(lambda: count("access", "request_id", "kd%") == 200, timeout=30), count("access", "request_id", "kd%")
        assert ch.scalar("SELECT count() FROM %s.events FINAL WHERE event_id LIKE 'kev-%%'" % db) == 100
        assert ch.scalar("SELECT count() FROM %s.access FINAL WHERE request_id LIKE 'kd%%'" % db) == 200
        assert poll(lambda: metric_value(parse_metrics(request("GET", "http://127.0.0.1:%d/metrics" % gh.admin_port).text),
                                         "gatehouse_stream_spool_bytes") == 0, timeout=10)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_a_purge_reaches_the_other_node(gatehouse, tmp_path, engines, tag_origin):
    nats, _ = engines
    a = node(gatehouse, tmp_path, nats, tag_origin, name="a")
    b = node(gatehouse, tmp_path, nats, tag_origin, name="b")
    for gh in (a, b):
        assert poll(lambda: metric_value(metrics(gh), "gatehouse_stream_connected") == 1, timeout=10)

    def body(gh):
        return request("GET", gh.url + "/c/page", headers={"Host": "shop.example"}).text

    assert body(a) == "v1 /c/page\n" and body(b) == "v1 /c/page\n"
    tag_origin.version = 2
    assert body(a) == "v1 /c/page\n" and body(b) == "v1 /c/page\n"  # both cached
    t0 = time.monotonic()
    r = request("POST", a.admin_url + "/cache/purge?tenant=shop&tag=t1")
    assert r.status_code == 200 and r.json()["purged"] == 1
    assert body(a) == "v2 /c/page\n"
    assert poll(lambda: body(b) == "v2 /c/page\n", timeout=1.0, interval=0.01), "the purge did not reach b in 1 s"
    took = time.monotonic() - t0
    print("\npurge a -> b served fresh after %.0f ms" % (took * 1e3))
    assert metric_value(metrics(b), "gatehouse_stream_purges_received_total") == 1
    assert metric_value(metrics(a), "gatehouse_stream_purges_received_total") == 0  # its own is not re-applied
    assert "purge from node a" in b.stdout_text() + b.stderr_text()


def test_secrets_from_files(tmp_path):
    """protection.secret_file, protection.redis.password_file and events.clickhouse.password_file:
    the first line of the file; errors name the file, never the secret."""
    good = tmp_path / "secret.hex"
    good.write_text("ab" * 32 + "\n")
    bad = tmp_path / "bad.hex"
    bad.write_text("not-hex-at-all-but-secret-words\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    base = 'listeners: [{name: http, listen: "127.0.0.1:1"}]\n'
    cases = [
        ('protection: {secret_file: "%s"}\n' % good, None),
        ('protection: {secret_file: "%s"}\n' % bad, "hex digits (32 to 64 random bytes"),
        ('protection: {secret_file: "%s", secret: "%s"}\n' % (good, "ab" * 32), "give secret or secret_file"),
        ('protection: {secret_file: "%s"}\n' % (tmp_path / "missing"), "cannot read"),
        ('protection: {redis: {address: "127.0.0.1:6379", password_file: "%s"}}\n' % empty, "the first line is empty"),
        ('events: {nats: {url: "nats://127.0.0.1:4222"}, clickhouse: {url: "http://127.0.0.1:8123", password_file: "%s"}}\n'
         % good, None),
    ]
    for text, msg in cases:
        f = tmp_path / "c.yaml"
        f.write_text(base + text)
        p = subprocess.run([BIN, "validate", "-c", str(f)], capture_output=True, text=True, timeout=10)
        out = p.stdout + p.stderr
        if msg is None:
            assert p.returncode == 0, (text, out)
        else:
            assert p.returncode != 0 and msg in out and "%s:2:" % f in out, (text, out)
            assert "not-hex-at-all" not in out  # the file's contents are never shown


def test_event_settings_errors_have_their_place(tmp_path):
    cases = [
        ("events:\n  clickhouse: {url: \"http://127.0.0.1:1\"}\n",
         "events.clickhouse", "events.nats is needed too"),
        ("events:\n  nats: {url: \"http://127.0.0.1:4222\"}\n", "events.nats.url", "expected nats://host:port"),
        ("events:\n  nats: {url: \"nats://127.0.0.1:4222\", publish: [access, bogus]}\n",
         "events.nats.publish[1]", "expected access, exposure or event"),
        ("events:\n  nats: {url: \"nats://127.0.0.1:4222\", spool_max: 12q}\n", "events.nats.spool_max", "bad size"),
        ("events:\n  nats: {spool_dir: /tmp}\n", "events.nats", "url"),
        ("events:\n  nats: {url: \"nats://a:1\", stream: \"a.b\"}\n", "events.nats.stream", "use letters"),
    ]
    for text, path, msg in cases:
        f = tmp_path / "c.yaml"
        f.write_text("listeners: [{name: http, listen: \"127.0.0.1:1\"}]\n" + text)
        p = subprocess.run([BIN, "validate", "-c", str(f)], capture_output=True, text=True, timeout=10)
        assert p.returncode != 0, text
        out = p.stdout + p.stderr
        assert "%s:" % f in out and path in out and msg in out, (text, out)
        # file:line:col points into the events block (line 2 or later)
        line = out.split("%s:" % f, 1)[1].split(":")[0]
        assert int(line) >= 2, out
