#!/usr/bin/python3
"""bench/report.py: turns bench/proxy.sh's per-run TSV into the summary tables.

    report.py RESULTS.tsv          plain-text tables (for the terminal)
    report.py RESULTS.tsv --md     the same as a markdown fragment

Per (workers, body, system): median req/s with min..max, median p50 and p99 latency, median proxy
CPU µs/request and origin CPU µs/request over the runs kept. Runs flagged FAILED are dropped; runs
flagged BUSY (machine busy before the run), NOISY (other processes took more than OTHER_MAX % of a
core during the run, after the retries) or PIDS_CHANGED (a server process was replaced during
the run, so its CPU reading is unreliable) are dropped unless no other run is left. Then gatehouse's
ratios to each peer: req/s (>1 = gatehouse faster), p99 and CPU/request (<1 = gatehouse better).
"""
import statistics
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tsv import load, num as fnum  # noqa: E402

SYSTEM_ORDER = ["origin", "gatehouse", "nginx", "haproxy"]
SIZE_LABEL = {"small": "100 B", "big": "64 KiB"}




def summarize(rows):
    groups = {}
    for r in rows:
        groups.setdefault((int(r["workers"]), r["size"], r["system"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if "FAILED" not in r["busy_flag"]]
        calm = [r for r in ok if not any(f in r["busy_flag"] for f in ("BUSY", "NOISY", "PIDS_CHANGED"))]
        used = calm or ok
        if not used:
            continue
        med = lambda k: statistics.median([fnum(r[k]) for r in used if fnum(r[k]) is not None] or [float("nan")])
        rps = [fnum(r["rps"]) for r in used]
        out[key] = {
            "rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50": med("p50_ms"), "p99": med("p99_ms"),
            "pcpu": med("proxy_us_req"), "ocpu": med("origin_us_req"),
            "runs": len(used), "total": len(rs),
            "busy": not calm,
            "errors": sum(int(r["errors"] or 0) for r in used),
            "busy_before": [r["busy_total"] for r in rs],
            "other": [f"{r.get('other_cpu0', '?')}/{r.get('other_cpu1', '?')}" for r in rs],
            "retried": sum(int(r.get("attempts") or 1) - 1 for r in rs),
        }
    return out


def order(keys):
    ws = sorted({k[0] for k in keys})
    sizes = [s for s in ["small", "big"] if any(k[1] == s for k in keys)]
    sizes += sorted({k[1] for k in keys} - set(sizes))
    return ws, sizes


def tables(summary):
    ws, sizes = order(summary.keys())
    main = []
    for w in ws:
        for s in sizes:
            for sysname in SYSTEM_ORDER:
                g = summary.get((w, s, sysname))
                if not g:
                    continue
                is_origin = sysname == "origin"
                note = []
                if g["runs"] < g["total"]:
                    note.append(f"{g['total'] - g['runs']} run(s) dropped")
                if g["busy"]:
                    note.append("noisy: all runs flagged")
                if g["retried"]:
                    note.append(f"{g['retried']} noisy attempt(s) repeated")
                if g["errors"]:
                    note.append(f"{g['errors']} wrk errors")
                main.append([
                    str(w) if not is_origin else "1 (origin)",
                    SIZE_LABEL.get(s, s),
                    "origin alone" if is_origin else sysname,
                    f"{g['rps']:,.0f} ({g['rps_min']:,.0f}..{g['rps_max']:,.0f})",
                    f"{g['p50']:.3f}", f"{g['p99']:.3f}",
                    f"{g['pcpu']:.1f}" + (" (origin)" if is_origin else ""),
                    "—" if is_origin else f"{g['ocpu']:.1f}",
                    f"{g['runs']}/{g['total']}" + (" " + "; ".join(note) if note else ""),
                    "/".join(g["busy_before"]),
                    " ".join(g["other"]),
                ])
    ratios = []
    for w in ws:
        for s in sizes:
            gh = summary.get((w, s, "gatehouse"))
            for peer in ["nginx", "haproxy", "origin"]:
                p = summary.get((w, s, peer)) or (summary.get((1, s, peer)) if peer == "origin" else None)
                if not p:
                    continue
                label = "origin alone" if peer == "origin" else peer
                if not gh:
                    ratios.append([str(w), SIZE_LABEL.get(s, s), label, "pending", "pending", "pending"])
                    continue
                # vs the bare origin only the throughput share means something (p99 of a 70k req/s
                # origin is dominated by scheduler hiccups; its CPU is not a proxy's CPU).
                cpu = "—" if peer == "origin" else f"{gh['pcpu'] / p['pcpu']:.2f}" if p["pcpu"] else "n/a"
                p99 = "—" if peer == "origin" else f"{gh['p99'] / p['p99']:.2f}" if p["p99"] else "n/a"
                ratios.append([str(w), SIZE_LABEL.get(s, s), label, f"{gh['rps'] / p['rps']:.2f}", p99, cpu])
    return main, ratios


MAIN_HDR = ["workers", "body", "system", "req/s median (min..max)", "p50 ms", "p99 ms",
            "proxy CPU µs/req", "origin CPU µs/req", "runs kept", "busy % before runs",
            "other load % core0/core1 during runs"]
RATIO_HDR = ["workers", "body", "gatehouse vs", "req/s ratio (>1 better)", "p99 ratio (<1 better)",
             "CPU/req ratio (<1 better)"]


def md(hdr, rows):
    out = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def text(hdr, rows):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    fmt = lambda r: "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    return "\n".join([fmt(hdr), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    summary = summarize(load(sys.argv[1]))
    main_rows, ratio_rows = tables(summary)
    render = md if "--md" in sys.argv[2:] else text
    nworkers = sorted({k[0] for k in summary})
    has_gh = any(k[2] == "gatehouse" for k in summary)
    if render is md:
        print("## Throughput, latency, CPU per request\n")
        print(md(MAIN_HDR, main_rows))
        print("\n## gatehouse relative to each peer (same run)\n")
        print(md(RATIO_HDR, ratio_rows))
    else:
        print("== Throughput, latency, CPU per request (medians over kept runs) ==")
        print(text(MAIN_HDR, main_rows))
        print()
        print("== gatehouse relative to each peer (same run) ==")
        print(text(RATIO_HDR, ratio_rows))
    print()
    if not has_gh:
        print("gatehouse: pending (binary missing or not serving during this run).")
    if any(w > 1 for w in nworkers):
        print("N=2: all workers share core 0 with the origin while wrk has core 1; on a 2-core box the "
              "N=2 rows measure contention and per-worker overhead, not multi-core scaling.")


if __name__ == "__main__":
    main()
