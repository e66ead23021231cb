"""Experiments (issue 8): exposures at the edge and over OFREP, metric events through
POST /v1/events:publish, per-variant statistics in GET /v1/experiments/{id}/results, kept in
SQLite across a kill -9.

Every expected number is computed here from what the test itself sent (each unit's variant is read
from the X-Gatehouse-Variant answer header), and the statistics are checked against scipy."""

import json
import math
import os
import random
import signal
import subprocess
import time

import pytest

from helpers import BIN, HEADER, free_port, poll, port_accepts, request

KEY = "shop-key-0123456789abcdef"

FLAGS = {"flags": {
    "new-home": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off",
                 "targeting": {"fractional": [["on", 50], ["off", 50]]}},
    "other": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"},
}}

CONFIG = HEADER.replace("workers: {workers}", "workers: 2") + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
ofrep: {listen: "127.0.0.1:{ofrep_port}"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
experiments: {store: "{store}", audit_log: "{audit}"}
tenants:
  - name: shop
    flags: {file: "{flags}", api_keys: ["%s"]}
    experiments:
      - id: home-test
        flag: new-home
        variants: ["off", "on"]
        metrics:
          - {name: purchase, kind: conversion, event: purchase}
          - {name: revenue, kind: mean, event: purchase, value: amount, cuped: true}
          - {name: aov, kind: ratio, event: purchase, value: amount, denominator: {event: purchase}}
          - {name: checkout, kind: conversion, path: /checkout}
          - {name: latency, kind: ratio, edge: latency_ms, denominator: {edge: requests}, direction: decrease, guardrail: true}
    sites:
      - hosts: ["*"]
        routes:
          - name: home
            upstream: demo
            flag: {key: new-home, unit: "cookie:uid"}
""" % KEY


def start(gatehouse, tmp_path, store=None):
    f = tmp_path / "flags.json"
    if not f.exists():
        f.write_text(json.dumps(FLAGS))
    port = free_port()
    gh = gatehouse(CONFIG, ofrep_port=port, flags=str(f), store=str(store or tmp_path / "exp.db"),
                   audit=str(tmp_path / "audit.jsonl"))
    gh.ofrep = "http://127.0.0.1:%d" % port
    assert poll(lambda: port_accepts(port), timeout=5)
    return gh


def publish(gh, events, key=KEY, raw=None):
    h = {"Content-Type": "application/json"}
    if key:
        h["X-API-Key"] = key
    return request("POST", gh.ofrep + "/v1/events:publish", data=raw if raw is not None else json.dumps({"events": events}),
                   headers=h)


def results(gh, exp="home-test", tenant="shop"):
    r = gh.admin_get("/v1/experiments/%s/results?tenant=%s" % (exp, tenant))
    assert r.status_code == 200, r.text
    return r.json()


def metric(res, name):
    return next(m for m in res["metrics"] if m["name"] == name)


def visit(gh, uid, path="/"):
    r = gh.get(path, headers={"Cookie": "uid=" + uid})
    assert r.status_code == 200
    return r.headers["X-Gatehouse-Variant"]


def test_exposures_events_and_statistics(gatehouse, tmp_path):
    scipy = pytest.importorskip("scipy.stats")
    gh = start(gatehouse, tmp_path)
    rnd = random.Random(8)
    variant = {}
    for i in range(300):
        u = "u%d" % i
        variant[u] = visit(gh, u)
        assert visit(gh, u) == variant[u]  # sticky: a second visit, same variant, counted once
    checkout = {u for u in variant if rnd.random() < 0.3}
    for u in checkout:
        visit(gh, u, "/checkout/cart")
    # purchases: several per unit for some units, an amount each
    events, amounts = [], {u: [] for u in variant}
    for u in variant:
        for _ in range(rnd.choice([0, 0, 0, 1, 2])):
            a = round(rnd.uniform(1, 100), 2)
            amounts[u].append(a)
            events.append({"eventDefinition": "eventDefinitions/purchase", "eventId": "ev%d" % len(events),
                           "payload": {"amount": a, "context": {"targetingKey": u}}})
    for k in range(0, len(events), 100):
        r = publish(gh, events[k:k + 100])
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": len(events[k:k + 100]), "duplicates": 0, "errors": []}
    res = results(gh)
    n = {v: sum(1 for u in variant if variant[u] == v) for v in ("off", "on")}
    assert res["units"] == n and sum(n.values()) == 300
    assert res["srm"]["p"] == pytest.approx(scipy.chisquare([n["off"], n["on"]]).pvalue, rel=1e-9)
    # conversion: units with a purchase, exactly, and the z-test as statsmodels computes it
    conv = {v: sum(1 for u in variant if variant[u] == v and amounts[u]) for v in ("off", "on")}
    m = metric(res, "purchase")
    assert m["values"]["off"] == pytest.approx(conv["off"] / n["off"], rel=1e-12)
    assert m["values"]["on"] == pytest.approx(conv["on"] / n["on"], rel=1e-12)
    from statsmodels.stats.proportion import proportions_ztest
    z, p = proportions_ztest([conv["on"], conv["off"]], [n["on"], n["off"]])
    c = m["comparisons"][0]
    assert c["stat"] == pytest.approx(z, rel=1e-9) and c["p"] == pytest.approx(p, rel=1e-9)
    # mean revenue per unit: Welch on the per-unit sums (units without purchases count 0)
    y = {v: [sum(amounts[u]) for u in variant if variant[u] == v] for v in ("off", "on")}
    m = metric(res, "revenue")
    assert m["values"]["on"] == pytest.approx(sum(y["on"]) / n["on"], rel=1e-12)
    t = scipy.ttest_ind(y["on"], y["off"], equal_var=False)
    c = m["comparisons"][0]
    assert c["diff"] == pytest.approx(sum(y["on"]) / n["on"] - sum(y["off"]) / n["off"], rel=1e-9)
    assert c["stat"] == pytest.approx(t.statistic, rel=1e-9) and c["p"] == pytest.approx(t.pvalue, rel=1e-9)
    assert c["cuped_theta"] == 0  # no purchases before exposure: nothing to adjust with
    lo, hi = c["seq_ci"]
    assert lo < c["diff"] < hi and (hi - lo) > (c["diff_ci"][1] - c["diff_ci"][0])  # always valid: wider
    # ratio: average order value, sum(amount) / count(purchases)
    m = metric(res, "aov")
    for v in ("off", "on"):
        tot = [a for u in variant if variant[u] == v for a in amounts[u]]
        assert m["values"][v] == pytest.approx(sum(tot) / len(tot), rel=1e-12)
    # edge metrics: a request to /checkout after exposure; latency per request is defined
    m = metric(res, "checkout")
    for v in ("off", "on"):
        assert m["values"][v] == pytest.approx(sum(1 for u in checkout if variant[u] == v) / n[v], rel=1e-12)
    assert metric(res, "latency")["guardrail"] is True
    assert all(math.isfinite(metric(res, "latency")["values"][v]) for v in ("off", "on"))
    # Holm and Bonferroni over the 5 comparisons
    # (an undefined comparison, e.g. a metric without variance, enters the corrections as p = 1)
    ps = [1.0 if mm["comparisons"][0]["p"] is None else mm["comparisons"][0]["p"] for mm in res["metrics"]]
    from statsmodels.stats.multitest import multipletests
    holm = multipletests(ps, method="holm")[1]
    assert [mm["comparisons"][0]["p_holm"] for mm in res["metrics"]] == pytest.approx(list(holm), rel=1e-9)
    assert res["decision"].startswith(("keep running", "may stop", "stop"))


def test_idempotent_events_and_bad_input(gatehouse, tmp_path):
    gh = start(gatehouse, tmp_path)
    assert visit(gh, "alice") in ("on", "off")
    ev = {"eventDefinition": "purchase", "eventId": "order-1", "payload": {"amount": 10, "targetingKey": "alice"}}
    assert publish(gh, [ev]).json()["accepted"] == 1
    r = publish(gh, [ev, ev])  # a retried post: counted once
    assert r.json() == {"accepted": 0, "duplicates": 2, "errors": []}
    # without an eventId, an identical retry is one event too
    anon = {"eventDefinition": "purchase", "eventTime": "2026-01-01T00:00:00Z",
            "payload": {"amount": 5, "targetingKey": "alice"}}
    assert publish(gh, [anon]).json()["accepted"] == 1
    assert publish(gh, [anon]).json()["duplicates"] == 1
    res = results(gh)
    v = [k for k, c in res["units"].items() if c == 1][0]
    # alice's revenue: 10 after exposure; the 2026-01-01 purchase was before it (a covariate)
    assert metric(res, "revenue")["values"][v] == 10
    # per-event problems are reported, the rest accepted
    bad = [{"payload": {}}, {"eventDefinition": "purchase", "payload": {"amount": 1}},
           {"eventDefinition": "purchase", "eventTime": "2999-01-01T00:00:00Z", "payload": {"targetingKey": "a"}},
           {"eventDefinition": "purchase", "eventTime": "yesterday", "payload": {"targetingKey": "a"}},
           {"eventDefinition": "purchase", "payload": "x"},
           {"eventDefinition": "purchase", "payload": {"targetingKey": "never-seen"}, "eventId": "n1"}]
    r = publish(gh, bad)
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and [e["index"] for e in body["errors"]] == [0, 1, 2, 3, 4]
    assert "future" in body["errors"][2]["reason"] and "RFC 3339" in body["errors"][3]["reason"]
    assert results(gh)["unattributed_events"] == 1  # the unit never exposed: counted apart
    # whole-request problems: problem+json
    r = publish(gh, None, raw="{not json")
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 400 and "not JSON" in r.json()["detail"]
    r = publish(gh, [ev] * 1001)
    assert r.status_code == 413 and r.json()["status"] == 413
    assert publish(gh, [ev], key=None).status_code == 401
    assert publish(gh, [ev], key="wrong-key-0123456789abcdef").status_code == 401
    r = gh.admin_get("/v1/experiments/nope/results?tenant=shop")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert gh.admin_get("/v1/experiments/home-test/results").status_code == 400
    # nothing above changed the aggregates
    assert metric(results(gh), "revenue")["values"][v] == 10


def test_ofrep_evaluations_expose_and_results_survive_kill_9(gatehouse, tmp_path):
    gh = start(gatehouse, tmp_path)
    seen = {}
    for i in range(40):
        u = "app-%d" % i
        r = request("POST", gh.ofrep + "/ofrep/v1/evaluate/flags/new-home",
                    data=json.dumps({"context": {"targetingKey": u}}), headers={"X-API-Key": KEY})
        assert r.status_code == 200
        seen[u] = r.json()["variant"]
    # a bulk evaluation is not an exposure (the application may not show the flag)
    request("POST", gh.ofrep + "/ofrep/v1/evaluate/flags", data=json.dumps({"context": {"targetingKey": "bulk"}}),
            headers={"X-API-Key": KEY})
    ev = [{"eventDefinition": "purchase", "eventId": "p-" + u, "payload": {"amount": 7, "targetingKey": u}}
          for u in list(seen)[:25]]
    assert publish(gh, ev).json()["accepted"] == 25
    before = results(gh)
    want = {v: sum(1 for u in seen if seen[u] == v) for v in ("off", "on")}
    assert poll(lambda: results(gh)["units"] == want), results(gh)["units"]
    before = results(gh)
    time.sleep(2.3)  # edge values are snapshotted every 2 s; acknowledged events at once
    gh.kill()
    gh2 = start(gatehouse, tmp_path)
    after = results(gh2)
    for k in ("units", "srm", "metrics", "unattributed_events"):
        assert after[k] == before[k], k
    # and go on counting: a retried event is still a duplicate after the restart
    assert publish(gh2, ev[:1]).json()["duplicates"] == 1
    # the audit log has every exposure and event
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["type"] == "exposure") == 40
    assert sum(1 for x in lines if x["type"] == "event") == 25


def test_experiment_config_errors_have_their_place(tmp_path):
    f = tmp_path / "flags.json"
    f.write_text(json.dumps(FLAGS))
    bad = [("flag: new-home", "flag: nope", 'has no flag "nope"'),
           ('variants: ["off", "on"]', 'variants: ["off", "maybe"]', 'has no variant "maybe"'),
           ("kind: conversion, event: purchase}", "kind: sometimes, event: purchase}", "expected conversion, mean or ratio"),
           ("denominator: {event: purchase}", "denominator: {event: purchase, edge: bytes}", "give one of event"),
           ("          - {name: purchase, kind: conversion, event: purchase}\n",
            "".join("          - {name: m%d, kind: conversion, event: purchase}\n" % i for i in range(65)),
            "an experiment has at most 64 metrics, got 69")]
    for old, new, msg in bad:
        text = CONFIG.replace(old, new, 1)
        for k, v in {"pid_file": tmp_path / "p", "admin_port": 1, "proxy_port": 2, "demo_port": 3, "ofrep_port": 4,
                     "flags": f, "store": tmp_path / "s.db", "audit": tmp_path / "a", "workers": 1}.items():
            text = text.replace("{%s}" % k, str(v))
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(text)
        p = subprocess.run([BIN, "validate", "-c", str(cfg)], capture_output=True, text=True)
        assert p.returncode == 1, (new, p.stdout)
        out = p.stdout + p.stderr
        assert msg in out and "tenants[0].experiments[0]" in out and str(cfg) + ":" in out, out


def test_planning_and_the_results_table(gatehouse, tmp_path):
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize
    gh = start(gatehouse, tmp_path)
    r = gh.admin_get("/v1/experiments/plan?metric=mean&sd=10&mde=1&alpha=0.05&power=0.8&daily_units=500")
    assert r.status_code == 200, r.text
    plan = r.json()
    want = NormalIndPower().solve_power(effect_size=0.1, alpha=0.05, power=0.8, ratio=1)
    assert plan["units_per_variant"] == math.ceil(want) and plan["units_total"] == 2 * math.ceil(want)
    assert plan["days"] == math.ceil(2 * math.ceil(want) / 500)
    r = gh.admin_get("/v1/experiments/plan?metric=conversion&baseline=0.1&mde=0.02")
    assert r.status_code == 200 and r.json()["units_per_variant"] > 3000 and r.json()["days"] is None
    r = gh.admin_get("/v1/experiments/plan?metric=conversion&baseline=1.5&mde=0.02")
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
    # the CLI's table, from the running gateway
    for i in range(20):
        visit(gh, "t%d" % i)
    p = subprocess.run([BIN, "experiments", "results", "home-test", "--tenant", "shop", "--admin",
                        "127.0.0.1:%d" % gh.admin_port], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "experiment home-test (tenant shop, flag new-home), control off" in p.stdout
    assert "sample ratio p=" in p.stdout and "decision:" in p.stdout
    for name in ("purchase", "revenue", "aov", "checkout", "latency"):
        assert any(ln.startswith(name) for ln in p.stdout.splitlines()), p.stdout
    p = subprocess.run([BIN, "experiments", "results", "nope", "--tenant", "shop", "--admin",
                        "127.0.0.1:%d" % gh.admin_port], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "404" in p.stderr and "no experiment nope" in p.stderr


def test_exactly_once_through_a_kill_in_the_middle_of_ingest(gatehouse, tmp_path):
    """A client posts 20,000 events in batches while gatehouse is killed (-9) mid-way; it then
    retries every batch it did not see acknowledged, and some it did (as a client that lost
    answers would). Every event counts once."""
    import threading
    gh = start(gatehouse, tmp_path)
    units = ["k%d" % i for i in range(50)]
    for u in units:
        visit(gh, u)
    events = [{"eventDefinition": "purchase", "eventId": "id-%d" % i,
               "payload": {"amount": i % 7 + 1, "targetingKey": units[i % 50]}} for i in range(20000)]
    batches = [events[k:k + 100] for k in range(0, 20000, 100)]
    acked = set()

    def post_all(g):
        for i, b in enumerate(batches):
            try:
                r = publish(g, b)
                if r.status_code == 200:
                    acked.add(i)
            except Exception:
                return

    t = threading.Thread(target=post_all, args=(gh,))
    t.start()
    assert poll(lambda: len(acked) >= 5, timeout=20)
    gh.kill()
    t.join(timeout=30)
    assert 5 <= len(acked) < len(batches)  # killed in the middle
    gh2 = start(gatehouse, tmp_path)
    for u in units:  # the same units, the same variants after the restart
        visit(gh2, u)
    dup = 0
    for b in batches:  # everything again
        r = publish(gh2, b)
        assert r.status_code == 200, r.text
        dup += r.json()["duplicates"]
    assert dup >= 100 * len(acked)  # at least what was acknowledged was kept
    res = results(gh2)
    assert sum(res["units"].values()) == 50
    total = sum(e["payload"]["amount"] for e in events)
    m = metric(res, "revenue")
    got = sum(m["values"][v] * res["units"][v] for v in res["units"])
    assert got == pytest.approx(total, rel=1e-12)
    assert metric(res, "purchase")["values"] == {v: 1.0 for v in res["units"]}


def test_variants_stay_across_reload_and_restart(gatehouse, tmp_path):
    gh = start(gatehouse, tmp_path)
    first = {u: visit(gh, u) for u in ("s%d" % i for i in range(60))}
    gh.write_config(CONFIG.replace("n_star", "n_star"), ofrep_port=int(gh.ofrep.rsplit(":", 1)[1]),
                    flags=str(tmp_path / "flags.json"), store=str(tmp_path / "exp.db"), audit=str(tmp_path / "audit.jsonl"))
    gh.reload()
    time.sleep(0.5)
    assert {u: visit(gh, u) for u in first} == first
    assert sum(results(gh)["units"].values()) == 60
    gh.stop()
    gh2 = start(gatehouse, tmp_path)
    assert {u: visit(gh2, u) for u in first} == first
    res = results(gh2)
    assert sum(res["units"].values()) == 60
    assert res["units"] == {v: sum(1 for u in first if first[u] == v) for v in ("off", "on")}
