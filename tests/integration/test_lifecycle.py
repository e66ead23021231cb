"""Reload (SIGHUP and `gatehouse reload`), reload under load, graceful drain."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers import HEADER, poll, run_cli, session
from rawhttp import RawConn, request_bytes

CONFIG = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{origin_port}"]}
tenants:
  - name: acme
    sites:
      - hosts: ["example.com"]
        routes:
          - name: r
            match: {path: {exact: /r}}
            respond: {status: 200, body: "{body}\\n"}
          - name: all
            upstream: app
"""


def body_of(gh, path="/r"):
    try:
        r = gh.get(path, timeout=5)
    except Exception as e:  # noqa: BLE001
        return "ERR %r" % e
    return r.text if r.status_code == 200 else "HTTP %d" % r.status_code


def test_pid_file_written(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    pid_file = gh.values["pid_file"]
    assert poll(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(), timeout=5)
    assert int(open(pid_file).read().strip()) == gh.pid


def test_reload_good_config_changes_routing(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    assert body_of(gh) == "v1\n"
    gh.write_config(CONFIG, body="v2")
    gh.reload()
    assert poll(lambda: body_of(gh) == "v2\n", timeout=5), body_of(gh)
    assert gh.alive()
    assert gh.get("/echo/x").status_code == 200


def test_reload_adds_route(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    assert gh.get("/new").json()["path"] == "/new"  # proxied to the origin
    extra = CONFIG.replace("          - name: all\n",
                           "          - name: new\n"
                           "            match: {path: {exact: /new}}\n"
                           "            respond: {status: 200, body: \"new\\n\"}\n"
                           "          - name: all\n")
    gh.write_config(extra, body="v1")
    gh.reload()
    assert poll(lambda: body_of(gh, "/new") == "new\n", timeout=5)


def test_reload_bad_config_keeps_old(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    assert body_of(gh) == "v1\n"
    before = gh.stderr_text()
    gh.write_config(CONFIG.replace("tenants:", "bogus_key: 1\ntenants:"), body="v2")
    gh.reload()
    assert poll(lambda: len(gh.stderr_text()) > len(before), timeout=5), \
        "no error logged on stderr after reloading a bad config"
    err = gh.stderr_text()[len(before):]
    assert re.search(r":\d+:\d+: bogus_key: ", err), err
    assert gh.alive()
    for _ in range(10):
        assert body_of(gh) == "v1\n"
    # a later good reload still works
    gh.write_config(CONFIG, body="v3")
    gh.reload()
    assert poll(lambda: body_of(gh) == "v3\n", timeout=5)


def test_reload_syntax_error_keeps_old(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    before = gh.stderr_text()
    with open(gh.config_path, "w") as f:
        f.write("tenants: [unclosed\n  - : :\n")
    gh.reload()
    assert poll(lambda: len(gh.stderr_text()) > len(before), timeout=5)
    assert gh.alive()
    for _ in range(5):
        assert body_of(gh) == "v1\n"


def test_reload_cli_command(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="v1")
    pid_file = gh.values["pid_file"]
    assert poll(lambda: os.path.exists(pid_file), timeout=5)
    gh.write_config(CONFIG, body="cli")
    p = run_cli("reload", "-c", gh.config_path)
    assert p.returncode == 0, p.stderr
    assert poll(lambda: body_of(gh) == "cli\n", timeout=5)


def test_reload_under_load(gatehouse, origin):
    gh = gatehouse(CONFIG, origin_port=origin.port, body="A", workers=2)
    assert body_of(gh) == "A\n"
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "fail": []}

    def client(k):
        with session() as s:
            i = 0
            while not stop.is_set():
                i += 1
                path = "/r" if (k + i) % 2 else "/echo/load"
                try:
                    r = s.get(gh.url + path, headers={"Host": "example.com"}, timeout=10)
                    if path == "/r":
                        good = r.status_code == 200 and r.text in ("A\n", "B\n")
                    else:
                        good = r.status_code == 200 and r.json()["path"] == "/echo/load"
                    detail = (path, r.status_code, r.text[:80])
                except Exception as e:  # noqa: BLE001
                    good, detail = False, (path, repr(e))
                with lock:
                    if good:
                        stats["ok"] += 1
                    else:
                        stats["fail"].append(detail)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(20)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            time.sleep(0.7)
            body = "B" if i % 2 == 0 else "A"
            gh.write_config(CONFIG, body=body)
            gh.reload()
        time.sleep(0.7)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert not any(t.is_alive() for t in threads)
    assert gh.alive()
    assert stats["fail"] == [], "%d failures, first: %r" % (len(stats["fail"]), stats["fail"][:5])
    assert stats["ok"] > 200, stats["ok"]
    # the last config written ("B") wins
    assert poll(lambda: body_of(gh) == "B\n", timeout=5)


DRAIN = CONFIG.replace("drain_timeout: 5s", "drain_timeout: 10s")


def test_graceful_drain(gatehouse, origin):
    gh = gatehouse(DRAIN, origin_port=origin.port, body="v1")
    result = {}

    def slow():
        try:
            with RawConn(gh.port, timeout=15) as c:
                c.send(request_bytes("GET", "/slow?before_ms=2000"))
                result["r"] = c.read_response()
        except Exception as e:  # noqa: BLE001
            result["err"] = e

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    assert origin.wait_for(lambda s: "/slow" in s.paths_seen(), timeout=5)
    t_term = time.monotonic()
    gh.signal(signal.SIGTERM)

    def refused():
        try:
            s = socket.create_connection(("127.0.0.1", gh.port), timeout=1)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        s.close()
        return False

    assert poll(refused, timeout=2, interval=0.05), "new connections still accepted 2 s after SIGTERM"
    t.join(timeout=10)
    assert "err" not in result, result.get("err")
    assert result["r"].status == 200
    assert result["r"].json()["path"] == "/slow"
    try:
        rc = gh.wait(timeout=12)
    except subprocess.TimeoutExpired:
        pytest.fail("gatehouse still running 12 s after SIGTERM (drain_timeout 10s)")
    assert rc == 0, gh.stderr_text()
    assert time.monotonic() - t_term < 11


def test_sigterm_idle_exits_promptly(gatehouse, origin):
    gh = gatehouse(DRAIN, origin_port=origin.port, body="v1")
    with RawConn(gh.port) as c:  # an idle keep-alive connection must not hold the drain
        c.send(request_bytes("GET", "/r"))
        assert c.read_response().status == 200
        t0 = time.monotonic()
        gh.signal(signal.SIGTERM)
        try:
            rc = gh.wait(timeout=12)
        except subprocess.TimeoutExpired:
            pytest.fail("gatehouse did not exit within drain_timeout")
        assert rc == 0
        assert c.wait_closed(2)
    assert time.monotonic() - t0 < 11


SWITCH = HEADER + """
upstreams:
  app: {backends: ["127.0.0.1:{up_port}"]}
tenants:
  - name: acme
    sites: [{hosts: ["example.com"], routes: [{name: all, upstream: app}]}]
"""


def test_reload_switching_upstream_under_load(gatehouse, origin_factory):
    a, b = origin_factory("A"), origin_factory("B")
    gh = gatehouse(SWITCH, up_port=a.port, workers=2)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"ok": 0, "fail": []}

    def client():
        with session() as s:
            while not stop.is_set():
                try:
                    r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
                    good = r.status_code == 200 and r.text in ("A", "B")
                    detail = (r.status_code, r.text[:80])
                except Exception as e:  # noqa: BLE001
                    good, detail = False, repr(e)
                with lock:
                    if good:
                        stats["ok"] += 1
                    else:
                        stats["fail"].append(detail)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    try:
        for i in range(5):
            time.sleep(0.5)
            gh.write_config(SWITCH, up_port=(b if i % 2 == 0 else a).port)
            gh.reload()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert stats["fail"] == [], "%d failures, first: %r" % (len(stats["fail"]), stats["fail"][:5])
    assert stats["ok"] > 100
    # last config points at B: new requests go there
    assert poll(lambda: all(gh.get("/id").text == "B" for _ in range(4)), timeout=5)
    assert len(b.requests) > 0 and len(a.requests) > 0


def test_a_port_in_use_is_refused_at_start(gatehouse, origin):
    """SO_REUSEPORT must not let a second gatehouse (or anything) silently share a
    port another process listens on: the start fails with the reason."""
    first = gatehouse(CONFIG, origin_port=origin.port, body="one")
    second = gatehouse(CONFIG, expect_fail=True, origin_port=origin.port, body="two",
                       proxy_port=first.port)
    assert second.wait(10) != 0
    assert "Address already in use" in second.stderr_text(), second.stderr_text()
    assert body_of(first) == "one\n"
