"""Upstreams that survive failure: balancing policies, passive ejection, retries
on another backend and the retry budget, with several real origins."""

import collections
import threading
import time

import pytest

from helpers import HEADER, metric_value, poll, session

BASE = HEADER.replace("workers: {workers}", "workers: 1")


def config(n, balance="round_robin", extra=""):
    backends = ", ".join('"127.0.0.1:{p%d}"' % i for i in range(n))
    return BASE + """
upstreams:
  app: {backends: [%s], balance: %s%s}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{name: all, upstream: app}]}]
""" % (backends, balance, extra)


def start(gatehouse, origins, balance="round_robin", extra=""):
    ports = {"p%d" % i: o.port for i, o in enumerate(origins)}
    return gatehouse(config(len(origins), balance, extra), **ports)


def hits(gh, n, path="/id", headers=None):
    c = collections.Counter()
    with session() as s:
        for _ in range(n):
            r = s.get(gh.url + path, headers=dict({"Host": "example.com"}, **(headers or {})), timeout=10)
            assert r.status_code == 200, r.text
            c[r.headers["X-Origin-Id"]] += 1
    return c


def test_unknown_policy_is_a_config_error(gatehouse, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'upstreams:\n  app: {backends: ["127.0.0.1:2"], balance: fastest}\n')
    import subprocess
    from conftest import BIN
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "bad.yaml:3:45: upstreams.app.balance: unknown balance policy" in p.stderr, p.stderr
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'upstreams:\n  app: {backends: ["127.0.0.1:2"], hash_key: path}\n')
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "hash_key needs balance: hash" in p.stderr, p.stderr


def test_weighted_round_robin_shares(gatehouse, origin_factory):
    os_ = [origin_factory("a"), origin_factory("b")]
    cfg = config(2).replace('"127.0.0.1:{p0}"', '{address: "127.0.0.1:{p0}", weight: 3}')
    gh = gatehouse(cfg, p0=os_[0].port, p1=os_[1].port)
    c = hits(gh, 40)
    assert c == {"a": 30, "b": 10}, c


def test_kill_one_backend_under_load(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(3)]
    gh = start(gatehouse, origins)
    stop = threading.Event()
    results = collections.Counter()
    after_kill = collections.Counter()
    killed = threading.Event()
    lock = threading.Lock()

    def client():
        with session() as s:
            while not stop.is_set():
                try:
                    r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=5)
                    ok, who = r.status_code == 200, r.headers.get("X-Origin-Id")
                except Exception:
                    ok, who = False, None
                with lock:
                    results[ok] += 1
                    if killed.is_set() and ok:
                        after_kill[who] += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    origins[1].stop()
    killed.set()
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join(10)
    total = results[True] + results[False]
    assert total > 300, results
    assert results[True] / total >= 0.999, results
    # after the kill the survivors carry the load (a request in flight at the kill may finish on o1)
    assert after_kill["o0"] > 50 and after_kill["o2"] > 50, after_kill
    assert after_kill["o1"] <= 6, after_kill
    assert metric_value(gh.metrics(), "gatehouse_upstream_ejections_total", upstream="app") >= 1


def test_peak_ewma_moves_traffic_off_a_slow_backend(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(3)]
    origins[2].delay_ms = 40
    gh = start(gatehouse, origins, "peak_ewma")
    c = hits(gh, 150)
    # round-robin would give the slow one 50; peak EWMA samples it, then avoids it
    assert c["o2"] <= 15, c
    assert c["o0"] + c["o1"] >= 135, c


def test_least_request_avoids_a_backend_holding_requests(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[1].delay_ms = 300
    gh = start(gatehouse, origins, "least_request")
    c = collections.Counter()
    lock = threading.Lock()

    def client():
        with session() as s:
            for _ in range(10):
                r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
                assert r.status_code == 200
                with lock:
                    c[r.headers["X-Origin-Id"]] += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(c.values()) == 80, c
    # the slow one keeps requests in flight longer, so it is picked less
    assert c["o1"] < c["o0"] / 2, c


def test_hash_is_sticky_and_remaps_about_one_nth(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(4)]
    gh = start(gatehouse, origins, "hash", ", hash_key: header:X-User")
    users = ["user-%d" % i for i in range(200)]

    def owners():
        out = {}
        with session() as s:
            for u in users:
                r = s.get(gh.url + "/id", headers={"Host": "example.com", "X-User": u}, timeout=10)
                assert r.status_code == 200
                out[u] = r.headers["X-Origin-Id"]
        return out

    first = owners()
    assert owners() == first  # sticky
    assert len(set(first.values())) == 4
    # drop o3 from the pool by reload: only its users move
    gh.write_config(config(3, "hash", ", hash_key: header:X-User"))
    gh.reload()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if "o3" not in hits(gh, 8, headers={"X-User": [u for u in users if first[u] == "o3"][0]}):
            break
        time.sleep(0.1)
    second = owners()
    moved = [u for u in users if first[u] != second[u]]
    on_o3 = [u for u in users if first[u] == "o3"]
    assert "o3" not in second.values()
    assert set(on_o3) <= set(moved)
    # Maglev keeps the others mostly in place: at most a few percent extra churn
    assert len(moved) - len(on_o3) <= 0.1 * len(users), (len(moved), len(on_o3))


def test_retry_budget_caps_amplification(gatehouse, origin_factory):
    """Every backend resets every request. Each request may be tried on up to 3
    backends, but the retry budget (0.2 of a token per request, 10 tokens at start
    and 10 per second, one per retry) keeps it near 1.2-1.4 attempts per request, not 3."""
    origins = [origin_factory("o%d" % i) for i in range(3)]
    gh = start(gatehouse, origins)
    before = sum(len(o.heads) for o in origins)
    nthreads, per = 30, 4
    n = nthreads * per
    statuses = collections.Counter()
    lock = threading.Lock()
    go = threading.Barrier(nthreads)

    def client():
        with session() as s:
            go.wait(10)
            for _ in range(per):
                r = s.get(gh.url + "/reset", headers={"Host": "example.com"}, timeout=10)
                with lock:
                    statuses[r.status_code] += 1

    threads = [threading.Thread(target=client) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == {502: n}, statuses
    attempts = sum(len(o.heads) for o in origins) - before
    assert n < attempts <= n * 1.7, attempts
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_retries_total", upstream="app") >= 1
    assert metric_value(m, "gatehouse_upstream_retry_budget_exhausted_total", upstream="app") >= 1


def test_active_health_checks_follow_rise_and_fall(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    hc = ", health_check: {path: /health, interval: 200ms, timeout: 100ms, rise: 2, fall: 2}"
    gh = start(gatehouse, origins, extra=hc)

    def state():
        ups = gh.admin_get("/upstreams").json()["upstreams"][0]
        return {b["address"]: b["state"] for b in ups["backends"]}

    addr1 = "127.0.0.1:%d" % origins[1].port
    assert poll(lambda: state()[addr1] == "up" and
                gh.admin_get("/upstreams").json()["upstreams"][0]["backends"][1]["checks"] >= 2, timeout=5)
    origins[1].health_status = 503
    assert poll(lambda: state()[addr1] == "down", timeout=5), state()
    # traffic avoids the down backend
    c = hits(gh, 20)
    assert c == {"o0": 20}, c
    assert "backend %s is DOWN" % addr1 in gh.stderr_text()
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_backend_up", upstream="app", backend=addr1) == 0
    assert metric_value(m, "gatehouse_upstream_backend_up", upstream="app",
                        backend="127.0.0.1:%d" % origins[0].port) == 1
    assert metric_value(m, "gatehouse_upstream_health_checks_total", backend=addr1, result="failed") >= 2
    # flapping back: up after `rise` good checks, traffic returns
    origins[1].health_status = 200
    assert poll(lambda: state()[addr1] == "up", timeout=5), state()
    assert hits(gh, 20)["o1"] == 10
    assert "backend %s is UP" % addr1 in gh.stderr_text()


def test_health_check_config_errors(tmp_path):
    import subprocess
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'upstreams:\n  app:\n    backends: ["127.0.0.1:2"]\n'
                   '    health_check: {path: /h, interval: 1s, timeout: 2s, expect_status: "2xx"}\n')
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "upstreams.app.health_check.expect_status: expect_status must be a status or a range" in p.stderr, p.stderr
    assert "upstreams.app.health_check.timeout: timeout must be shorter than interval" in p.stderr, p.stderr


def test_circuit_breaker_overflow_is_a_fast_503(gatehouse, origin_factory):
    o = origin_factory("o0")
    cfg = config(1, extra=", circuit_breaker: {max_requests: 3, max_connections: 3}").replace(
        "routes: [{name: all, upstream: app}]",
        "routes: [{name: all, upstream: app, timeouts: {upstream_response: 2s}}]")
    gh = gatehouse(cfg, p0=o.port)
    results = []
    lock = threading.Lock()

    def client():
        t0 = time.monotonic()
        r = gh.get("/hang", timeout=10)
        with lock:
            results.append((r.status_code, time.monotonic() - t0))

    threads = [threading.Thread(target=client) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    codes = collections.Counter(c for c, _ in results)
    assert codes == {504: 3, 503: 7}, results
    assert all(dt < 1.0 for c, dt in results if c == 503), results
    assert o.accepts <= 3, o.accepts  # no pile of connections behind the breaker
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_breaker_overflows_total", upstream="app") == 7


def test_drain_a_backend_from_the_admin_listener(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[1].delay_ms = 500
    gh = start(gatehouse, origins)
    addr1 = "127.0.0.1:%d" % origins[1].port
    # a request in flight on o1 while it is drained still finishes
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=hits(gh, 2)))  # round-robin: one of two goes to o1
    t.start()
    time.sleep(0.2)
    r = helpers_post(gh, "/upstreams/app/drain?backend=" + addr1)
    assert r.status_code == 200, r.text
    t.join(10)
    assert slow["r"] == {"o0": 1, "o1": 1}, slow
    origins[1].delay_ms = 0
    assert hits(gh, 10) == {"o0": 10}
    ups = gh.admin_get("/upstreams").json()["upstreams"][0]["backends"]
    assert [b["drained"] for b in ups] == [False, True]
    assert helpers_post(gh, "/upstreams/app/undrain?backend=" + addr1).status_code == 200
    assert hits(gh, 10) == {"o0": 5, "o1": 5}
    assert helpers_post(gh, "/upstreams/nope/drain?backend=" + addr1).status_code == 404
    assert helpers_post(gh, "/upstreams/app/drain").status_code == 400


def helpers_post(gh, path):
    import helpers
    return helpers.request("POST", gh.admin_url + path)


def test_slow_start_ramps_a_recovered_backend(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[1].health_status = 503
    extra = (", slow_start: 3s, health_check: {path: /health, interval: 100ms, timeout: 50ms, rise: 1, fall: 1}")
    gh = start(gatehouse, origins, extra=extra)
    addr1 = "127.0.0.1:%d" % origins[1].port

    def state():
        return gh.admin_get("/upstreams").json()["upstreams"][0]["backends"][1]["state"]

    assert poll(lambda: state() == "down", timeout=5)
    origins[1].health_status = 200
    assert poll(lambda: state() == "up", timeout=5)
    seen_up = time.monotonic()
    early = hits(gh, 40)
    # the ramp: weight max(10%, t / 3 s) of its full one. The bound follows how long these 40
    # requests took (on a loaded box they can reach well into the ramp; a CI run took o1 16 of 40),
    # from when the backend came up (a health interval at most before it was seen up): about 12
    # when they take half a second, and below the 20 of no slow start while they take under 1.5 s
    since = time.monotonic() - seen_up + 0.25
    w = min(1.0, max(0.1, since / 3.0))
    assert early["o1"] <= 40 * w / (1 + w) + 6, (early, since)
    time.sleep(3.2)
    late = hits(gh, 40)
    assert 16 <= late["o1"] <= 24, late
    assert "backend %s is UP" % addr1 in gh.stderr_text()


def _latencies(gh, n=1200, threads=4):
    lat = []
    lock = threading.Lock()

    def client():
        with session() as s:
            for _ in range(n // threads):
                t0 = time.monotonic()
                r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
                dt = time.monotonic() - t0
                assert r.status_code == 200
                with lock:
                    lat.append(dt)

    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    lat.sort()
    return lat


def test_peak_ewma_tail_beats_round_robin_with_a_slow_backend(gatehouse, origin_factory):
    """Same origins, same run: one of three backends adds 50 ms. Round-robin sends it a
    third of the requests; peak EWMA stops sending it traffic after a few samples, so
    the tail is that of the fast backends. The tail is judged by the share of requests
    that took the slow path: on a shared machine a percentile of 1200 requests is at
    the mercy of scheduling hiccups (bench/upstreams.sh measures p99 under load)."""
    origins = [origin_factory("o%d" % i) for i in range(3)]
    origins[2].delay_ms = 50  # well above the fast origins' spikes on a loaded machine (20 ms was not)
    rr = start(gatehouse, origins, "round_robin")
    ew = start(gatehouse, origins, "peak_ewma")
    lat_rr = _latencies(rr)
    before = len(origins[2].heads)
    lat_ew = _latencies(ew)
    slow_hits = len(origins[2].heads) - before
    slow_rr = sum(1 for x in lat_rr if x >= 0.049) / len(lat_rr)
    slow_ew = sum(1 for x in lat_ew if x >= 0.049) / len(lat_ew)
    assert slow_rr > 0.25, slow_rr
    # a latency spike on a fast backend (this test's origins are Python threads) raises
    # its EWMA at once and lets the slow one win a few picks: a few percent, not a third
    assert slow_hits <= 0.08 * len(lat_ew), slow_hits
    assert slow_ew < slow_rr / 3, (slow_ew, slow_rr, slow_hits)


def test_retry_on_configured_status_goes_to_another_backend(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[0].force_status = 503
    gh = start(gatehouse, origins, extra=", retries: {on: [connect_failure, 503], backoff: {base: 0ms, max: 0ms}},"
                                          " outlier_detection: {consecutive_failures: 0}")
    with session() as s:
        for _ in range(10):
            r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
            assert r.status_code == 200 and r.headers["X-Origin-Id"] == "o1", (r.status_code, r.text)
        # POST is not idempotent: its 503 reaches the client (round-robin sends every other one to o0)
        codes = collections.Counter(s.post(gh.url + "/echo", data=b"", headers={"Host": "example.com"},
                                           timeout=10).status_code for _ in range(4))
        assert codes == {503: 2, 200: 2}, codes
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_retries_total", upstream="app") >= 5
    a0 = "127.0.0.1:%d" % origins[0].port
    assert metric_value(m, "gatehouse_upstream_backend_failures_total", upstream="app", backend=a0) >= 5
    # with 503 not in the list, the 503 is passed through
    gh2 = start(gatehouse, origins, extra=", outlier_detection: {consecutive_failures: 0}")
    codes = collections.Counter()
    with session() as s:
        for _ in range(4):
            codes[s.get(gh2.url + "/id", headers={"Host": "example.com"}, timeout=10).status_code] += 1
    assert codes == {503: 2, 200: 2}, codes


def test_non_idempotent_retries_when_configured(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[0].force_status = 502
    gh = start(gatehouse, origins, extra=", retries: {on: [502], non_idempotent: true},"
                                          " outlier_detection: {consecutive_failures: 0}")
    with session() as s:
        for _ in range(4):
            r = s.post(gh.url + "/echo", headers={"Host": "example.com"}, timeout=10)
            assert r.status_code == 200, r.text


def test_per_try_timeout_retries_a_hung_backend_elsewhere(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[0].delay_ms = 3000
    gh = start(gatehouse, origins, extra=", retries: {on: [timeout], per_try_timeout: 200ms},"
                                          " outlier_detection: {consecutive_failures: 0}")
    with session() as s:
        for _ in range(4):
            t0 = time.monotonic()
            r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
            took = time.monotonic() - t0
            assert r.status_code == 200 and r.headers["X-Origin-Id"] == "o1", r.text
            assert took < 1.5, took
    assert metric_value(gh.metrics(), "gatehouse_upstream_timeouts_total", upstream="app") >= 2
    # without the timeout condition, a per-try timeout is a 504
    gh2 = start(gatehouse, origins, extra=", retries: {per_try_timeout: 200ms}, outlier_detection: {consecutive_failures: 0}")
    codes = collections.Counter()
    with session() as s:
        for _ in range(2):
            codes[s.get(gh2.url + "/id", headers={"Host": "example.com"}, timeout=10).status_code] += 1
    assert codes == {504: 1, 200: 1}, codes


def test_retry_backoff_waits_with_jitter(gatehouse, origin_factory):
    """A dead first backend: each retry waits a random time in [0, 300 ms]; with a
    zero backoff it does not wait at all."""
    o = origin_factory("o1")
    dead = origin_factory("dead")
    dead.stop()

    def timings(backoff):
        cfg = BASE + """
upstreams:
  app:
    backends: ["127.0.0.1:%d", "127.0.0.1:%d"]
    retries: {backoff: %s}
    outlier_detection: {consecutive_failures: 0}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{name: all, upstream: app}]}]
""" % (dead.port, o.port, backoff)
        gh = gatehouse(cfg)
        out = []
        with session() as s:
            for _ in range(16):
                t0 = time.monotonic()
                r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
                out.append(time.monotonic() - t0)
                assert r.status_code == 200, r.text
        gh.stop()
        return out

    slow = timings("{base: 300ms, max: 300ms}")
    fast = timings("{base: 0ms, max: 0ms}")
    # half the requests went to the dead backend first and waited; uniform [0, 0.3 s]
    # has mean 0.15 s: the sum over 8 retried requests is far above the no-backoff run
    assert sum(slow) - sum(fast) > 0.3, (slow, fast)
    assert max(slow) < 0.3 + 0.5, slow


def test_outlier_detection_is_configurable_and_ejection_ends(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(3)]
    origins[0].force_status = 502
    gh = start(gatehouse, origins, extra=", retries: {attempts: 1}, outlier_detection: "
                                          "{consecutive_failures: 2, base_ejection: 1500ms, max_ejection: 3s}")
    a0 = "127.0.0.1:%d" % origins[0].port
    codes = collections.Counter()
    with session() as s:
        for _ in range(12):
            codes[s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10).status_code] += 1
    assert codes[502] == 2, codes  # two failures in a row, then ejected
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_backend_ejected", upstream="app", backend=a0) == 1
    assert metric_value(m, "gatehouse_upstream_backend_ejections_total", upstream="app", backend=a0) == 1
    b = [x for x in gh.admin_get("/upstreams").json()["upstreams"][0]["backends"] if x["address"] == a0][0]
    assert b["ejected_by_workers"] == 1 and b["ejections"] == 1 and b["failures"] == 2, b
    assert "ejected for 1500 ms after 2 failures in a row" in gh.stderr_text()
    # the ejection ends; the backend is tried again
    origins[0].force_status = 0
    assert poll(lambda: metric_value(gh.metrics(), "gatehouse_upstream_backend_ejected", backend=a0) == 0,
                timeout=5)
    assert hits(gh, 30)["o0"] >= 5


def test_per_backend_metrics_show_requests_active_and_latency(gatehouse, origin_factory):
    origins = [origin_factory("o%d" % i) for i in range(2)]
    origins[1].delay_ms = 400
    gh = start(gatehouse, origins)
    a0, a1 = ("127.0.0.1:%d" % o.port for o in origins)
    done = threading.Event()

    def slow_calls():
        with session() as s:
            for _ in range(3):
                s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
        done.set()

    ts = [threading.Thread(target=slow_calls) for _ in range(4)]
    for t in ts:
        t.start()
    assert poll(lambda: metric_value(gh.metrics(), "gatehouse_upstream_backend_active_requests",
                                     backend=a1) >= 1, timeout=5)
    for t in ts:
        t.join(20)
    m = gh.metrics()
    assert metric_value(m, "gatehouse_upstream_backend_active_requests", upstream="app") == 0
    r0 = metric_value(m, "gatehouse_upstream_backend_requests_total", upstream="app", backend=a0)
    r1 = metric_value(m, "gatehouse_upstream_backend_requests_total", upstream="app", backend=a1)
    assert r0 + r1 == 12, (r0, r1)
    l0 = metric_value(m, "gatehouse_upstream_backend_latency_ewma_seconds", backend=a0)
    l1 = metric_value(m, "gatehouse_upstream_backend_latency_ewma_seconds", backend=a1)
    assert 0.3 < l1 < 2 and l0 < 0.2, (l0, l1)
    b = gh.admin_get("/upstreams").json()["upstreams"][0]["backends"]
    assert b[1]["latency_ewma_ms"] > 300 and b[1]["requests"] == r1, b


def test_retry_and_outlier_config_errors(tmp_path):
    import subprocess
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'upstreams:\n  app:\n    backends: [{address: "127.0.0.1:2", weight: -1}]\n'
                   '    retries:\n      attempts: 0\n      on: [connect_failure, 5xx, 200]\n'
                   '      backoff: {base: 1s, max: 10ms}\n      budget: {ratio: 1.5}\n'
                   '      per_try_timeout: soon\n'
                   '    outlier_detection: {consecutive_failures: -2, base_ejection: 0, max_ejected_percent: 101}\n')
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    e = p.stderr
    for want in ["bad.yaml:4:49: upstreams.app.backends[0].weight: expected an integer, got \"-1\"",
                 "bad.yaml:6:17: upstreams.app.retries.attempts: 0 is out of range 1..10",
                 "bad.yaml:7:29: upstreams.app.retries.on[1]: unknown retry condition \"5xx\"",
                 "upstreams.app.retries.on[2]: unknown retry condition \"200\"",
                 "upstreams.app.retries.backoff.max: max must not be below base",
                 "upstreams.app.retries.budget.ratio: \"1.5\" is out of range 0..1",
                 "upstreams.app.retries.per_try_timeout: bad duration \"soon\"",
                 "upstreams.app.outlier_detection.consecutive_failures: expected an integer, got \"-2\"",
                 "upstreams.app.outlier_detection.base_ejection: must not be 0",
                 "upstreams.app.outlier_detection.max_ejected_percent: 101 is out of range 0..100"]:
        assert want in e, (want, e)
