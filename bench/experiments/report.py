#!/usr/bin/env python3
"""bench/experiments/report.py: the markdown summary of bench/experiments.sh.

    report.py INGEST_TSV PROXY_TSV INFO_TSV OTHER_MAX [PAIR_TSV]

Medians (min..max) over the runs that did not fail, the runs taken with other load on a core counted
as noisy; the proxy's B/A and C/A ratios within each round (adjacent runs) and their medians; the
side-by-side pairs' CPU ratios. Prints the ingest table, the proxy tables, the pairs and the targets
of issue 8."""
import csv
import statistics
import sys


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def pick(rs):
    """All runs that did not fail, and a note of how many of them were not clean (NOISY or BUSY: other
    load on a core used; on this shared 2-vCPU VM a clean subset would compare different moments)."""
    use = [r for r in rs if "FAILED" not in r["status"]]
    noisy = sum(1 for r in use if r["status"] != "ok")
    return use, (" (%d noisy)" % noisy if noisy else "")


def med(rs, k):
    v = [num(r[k]) for r in rs if num(r[k]) == num(r[k])]
    return statistics.median(v) if v else float("nan")


def rng(rs, k, fmt="{:,.0f}"):
    v = [num(r[k]) for r in rs if num(r[k]) == num(r[k])]
    if not v:
        return "n/a"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt.format(m)
    return (fmt + " ({}..{})").format(m, fmt.format(min(v)), fmt.format(max(v)))


def main():
    ing, prx, info_path, other_max = rows(sys.argv[1]), rows(sys.argv[2]), sys.argv[3], sys.argv[4]
    pair = rows(sys.argv[5]) if len(sys.argv) > 5 else []
    info = {}
    with open(info_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("\t")
            info[k] = v

    # ---------------------------------------------------------------- ingest
    print("## In-process ingest (bench/experiments/ingest.c)")
    print()
    if not ing:
        print("pending: no ingest runs (ingest did not build or the part was not run)")
    else:
        print("rate: records per second by the wall clock, until the last one was applied (exposures) or its publish "
              "answered after the commit (events). pipeline: the pipeline thread's CPU per record. parse: the producer's "
              "CPU per record inside gh_exp_expose / gh_exp_publish (JSON parse and checks). gen: the producer writing "
              "the bodies (not gatehouse's work). one-core rate: 1e9 / (pipeline + parse): everything gatehouse does "
              "for a record on one core. writes: write syscalls and KiB sent to the storage layer per 1000 records "
              "(/proc/self/io; tmpfs shows 0 KiB). Medians (min..max) over the runs.")
        print()
        print("| phase | store | layout | runs | rate /s | pipeline ns | parse ns | gen ns | one-core rate /s | writes per 1000 | KiB per 1000 | lost |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for phase in ("expose-new", "expose-again", "events"):
            for store in ("disk", "shm"):
                for layout in ("split", "shared"):
                    rs = [r for r in ing if r["phase"] == phase and r["store"] == store and r["layout"] == layout]
                    if not rs:
                        continue
                    use, mark = pick(rs)
                    if not use:
                        print("| %s | %s | %s | 0 of %d | failed | | | | | | | |" % (phase, store, layout, len(rs)))
                        continue
                    n = med(use, "records") or 1
                    print("| %s | %s | %s | %d of %d%s | %s | %s | %s | %s | %s | %.0f | %.0f | %d |" % (
                        phase, store, layout, len(use), len(rs), mark, rng(use, "rate"), rng(use, "pipe_ns"),
                        rng(use, "parse_ns"), rng(use, "gen_ns"), rng(use, "one_core_rate"),
                        med(use, "syscw") * 1000 / n, med(use, "write_kb") * 1000 / n,
                        sum(int(num(r["lost"])) for r in use if num(r["lost"]) == num(r["lost"]))))
        print()
        if "strace" in info:
            print("Syscalls under `strace -f -c` (calls), one smaller run: " + info["strace"])
            print()
        noisy = [r for r in ing if r["status"] != "ok"]
        if noisy:
            print("Runs not clean (other load over %s%% on a core used, or failed): %s" % (other_max, ", ".join(
                sorted({"%s %s %s: %s" % (r["run"], r["store"], r["layout"], r["status"]) for r in noisy}))))
            print()

    # ---------------------------------------------------------------- proxy
    print("## Exposure logging on the proxy path")
    print()
    pools, ratios = [], {}
    for r in prx:
        if r["pool"] not in pools:
            pools.append(r["pool"])
    if not prx:
        print("pending: no proxy runs (no gatehouse binary or the part was not run)")
    else:
        print("A: flag route, no experiment; B: + experiment (exposure + edge observation per request to the pipeline "
              "thread); C: B + exposure_log file. gatehouse µs/req: all its threads' CPU / requests; worker: the busiest "
              "thread; other threads: the rest (pipeline, log writer, admin). lost: route requests - exposure records "
              "the pipeline applied (a full ring drops records silently). Totals over the runs used; route requests "
              "include the warm-ups.")
        print()
    for pool in pools:
        pr = [r for r in prx if r["pool"] == pool]
        print("### uid pool %s (%s)" % (pool, "a new uid per request" if pool == "0" else "each request draws one of %s random uids" % pool))
        print()
        print("| config | runs | req/s | p50 ms | p99 ms | gatehouse µs/req | worker µs/req | other threads µs/req | errors | route requests | exposure records | lost | units | log lines | log dropped |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        meds = {}
        for cfg in ("A", "B", "C"):
            rs = [r for r in pr if r["config"] == cfg]
            if not rs:
                continue
            use, mark = pick(rs)
            if not use:
                print("| %s | 0 of %d | failed |" % (cfg, len(rs)) + " |" * 12)
                continue
            meds[cfg] = {k: med(use, k) for k in ("rps", "gh_us_req", "worker_us_req", "other_threads_us_req")}

            def tot(k):
                v = [num(r[k]) for r in use]
                return "-" if any(x != x for x in v) else "{:,.0f}".format(sum(v))
            lost = "-"
            if cfg != "A":
                v = [num(r["route_requests"]) - num(r["exposure_records"]) for r in use]
                if not any(x != x for x in v):
                    lost = "{:,.0f}".format(sum(v))
            print("| %s | %d of %d%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                cfg, len(use), len(rs), mark, rng(use, "rps"), rng(use, "p50_ms", "{:.3f}"), rng(use, "p99_ms", "{:.3f}"),
                rng(use, "gh_us_req", "{:.2f}"), rng(use, "worker_us_req", "{:.2f}"),
                rng(use, "other_threads_us_req", "{:.2f}"), tot("errors"), tot("route_requests"),
                tot("exposure_records"), lost, tot("units"), tot("log_lines"), tot("log_dropped")))
        print()
        if "A" in meds:
            print("Within each round (A, B, C adjacent in time): req/s ratio, CPU µs/req ratio, and the throughput "
                  "loss the CPU cost means once gatehouse's core is saturated, 1 - cpu_A / cpu_X; medians over the rounds.")
            print()
            print("| vs A | req/s ratio, median (per round) | CPU µs/req ratio, median (per round) | loss at saturation, median (per round) |")
            print("|---|---|---|---|")
            for cfg in ("B", "C"):
                if cfg not in meds:
                    continue
                rr, cr, lr = [], [], []
                for rd in sorted({r["round"] for r in pr}, key=int):
                    ra = [r for r in pr if r["round"] == rd and r["config"] == "A" and "FAILED" not in r["status"]]
                    rb = [r for r in pr if r["round"] == rd and r["config"] == cfg and "FAILED" not in r["status"]]
                    if ra and rb and num(ra[0]["rps"]) > 0 and num(rb[0]["gh_us_req"]) > 0:
                        rr.append(num(rb[0]["rps"]) / num(ra[0]["rps"]))
                        cr.append(num(rb[0]["gh_us_req"]) / num(ra[0]["gh_us_req"]))
                        lr.append(100 * (1 - num(ra[0]["gh_us_req"]) / num(rb[0]["gh_us_req"])))
                if not rr:
                    continue
                ratios[(pool, cfg)] = (statistics.median(rr), statistics.median(lr), min(cr), max(cr))
                print("| %s/A | %.3f (%s) | %.3f (%s) | %.1f%% (%s) |" % (
                    cfg, statistics.median(rr), " ".join("%.3f" % x for x in rr), statistics.median(cr),
                    " ".join("%.3f" % x for x in cr), statistics.median(lr), " ".join("%.1f" % x for x in lr)))
            print()
        noisy = [r for r in pr if r["status"] != "ok"]
        if noisy:
            print("Runs not clean (other load over %s%% on a core, or failed): %s" % (
                other_max, ", ".join("%s %s: %s" % (r["round"], r["config"], r["status"]) for r in noisy)))
            print()
    for k in ("probe_A", "probe_B", "probe_C"):
        if k in info:
            print("- %s: `%s`" % (k, info[k]))
    if prx:
        print()

    # ---------------------------------------------------------------- side by side
    pair_ratio = {}
    if pair:
        print("## Side by side: two gatehouses on one core at the same time")
        print()
        print("X: the flag route with an experiment whose metrics are events only (an exposure record per request: "
              "exposure logging alone); B: its experiment also has edge metrics (a path and latency: an observation "
              "record per request too). A:A is the control: two identical gatehouses, whose ratio shows what the "
              "method can resolve. CPU: each process's threads' CPU time (schedstat) / its requests, both measured "
              "over the same seconds. Loss at saturation: 1 - 1 / (CPU ratio).")
        print()
        print("| pool | pair | rounds | first µs/req | second µs/req | CPU ratio second/first, median (per round) | "
              "loss at saturation | req/s ratio, median | lost records |")
        print("|---|---|---|---|---|---|---|---|---|")
        keys = []
        for r in pair:
            k = (r["pool"], r["first"], r["second"])
            if k not in keys:
                keys.append(k)
        for k in keys:
            use = [r for r in pair if (r["pool"], r["first"], r["second"]) == k and r["status"] == "ok"]
            if not use:
                print("| %s | %s:%s | 0 | | | failed | | | |" % (k[0], k[1], k[2]))
                continue
            ratios = [num(r["cpu_ratio"]) for r in use]
            m = statistics.median(ratios)
            lost = [int(num(r["route_requests2"]) - num(r["exposure_records2"])) for r in use
                    if k[2] != "A" and num(r["exposure_records2"]) == num(r["exposure_records2"])]
            pair_ratio[k] = (m, min(ratios), max(ratios), len(use))
            print("| %s | %s:%s | %d | %s | %s | **%.3f** (%s) | %.1f%% | %.3f | %s |" % (
                k[0], k[1], k[2], len(use), rng(use, "us_req1", "{:.2f}"), rng(use, "us_req2", "{:.2f}"), m,
                " ".join("%.3f" % v for v in ratios), 100 * (1 - 1 / m), med(use, "rps_ratio"),
                ",".join(str(v) for v in lost) if lost else "-"))
        print()

    # ---------------------------------------------------------------- targets
    print("## Against issue 8's targets")
    print()
    ev = [r for r in ing if r["phase"] == "events"]
    if ev:
        best = {}
        for store in ("disk", "shm"):
            for layout in ("split", "shared"):
                use, _ = pick([r for r in ev if r["store"] == store and r["layout"] == layout])
                if use:
                    best[(store, layout)] = (med(use, "rate"), med(use, "one_core_rate"), med(use, "pipe_ns"),
                                             med(use, "parse_ns"), med(use, "syscw") * 1000 / (med(use, "records") or 1))
        for (store, layout), (rate, one, pn, qn, w) in sorted(best.items()):
            print("- events, store on %s, %s: %s events/s by the wall clock; one core doing all of gatehouse's work: "
                  "%s/s (pipeline %.0f ns + parse %.0f ns per event); %.1f write syscalls per 1000 events: target 1,000,000/s %s" % (
                      store, layout, "{:,.0f}".format(rate), "{:,.0f}".format(one), pn, qn, w,
                      "met" if one >= 1e6 else "NOT met (%.1fx short)" % (1e6 / one if one else float("inf"))))
    for pool in pools:
        for cfg in ("B", "C"):
            if (pool, cfg) in ratios:
                rr, loss, cmin, cmax = ratios[(pool, cfg)]
                # a verdict only when the rounds agree: CPU ratios spread over more than 6 points, or
                # straddling the 3% line, leave it open
                if cmax - cmin > 0.06 and not (cmin > 1.03):
                    verdict = "not resolved by this run (per-round CPU ratios %.3f..%.3f)" % (cmin, cmax)
                else:
                    verdict = "met" if loss < 3 and rr > 0.97 else "NOT met"
                print("- proxy, uid pool %s, %s vs A: req/s %+.1f%% (median of the rounds' ratios); from CPU per request, "
                      "%.1f%% fewer requests once gatehouse's core is saturated: target under 3%% %s" % (
                          pool, cfg, 100 * (rr - 1), loss, verdict))
    for (pool, first, second), (m, lo, hi, n) in pair_ratio.items():
        if first != "A" or second == "A":
            continue
        ctl = pair_ratio.get((pool, "A", "A"))
        loss = 100 * (1 - 1 / m)
        # a verdict when the control shows the method resolves a point and the rounds agree
        if ctl and abs(ctl[0] - 1) > 0.01:
            verdict = "not resolved (the A:A control's median is %.3f)" % ctl[0]
        elif hi - lo > 0.04:
            verdict = "not resolved (per-round CPU ratios %.3f..%.3f)" % (lo, hi)
        else:
            verdict = "met" if loss < 3 else "NOT met"
        print("- side by side, uid pool %s, %s vs A (%s): CPU per request x%.3f (%d rounds, %.3f..%.3f%s), %.1f%% fewer "
              "requests once gatehouse's core is saturated: target under 3%% %s" % (
                  pool, second, "exposure logging alone" if second == "X" else
                  "exposures and edge observations" if second == "B" else "exposures, observations and the exposure log",
                  m, n, lo, hi, "; A:A control x%.3f" % ctl[0] if ctl else "", loss, verdict))
    print()


main()
