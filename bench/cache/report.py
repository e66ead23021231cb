#!/usr/bin/python3
"""bench/cache/report.py: the summary tables of bench/cache.sh (markdown).

    report.py HIT.tsv ZIPF.tsv ZIPF_REF.txt ZIPF_PATHS.txt SMALL_KB LARGE_KB

Hit part, per (workers, size, system): req/s median (min..max), p50/p99 (medians), proxy CPU µs per
request (median), the requests that reached the origin during the measured runs (all runs, they
should be 0), runs kept. Runs flagged FAILED or DIED are dropped; BUSY / NOISY / PIDS_CHANGED ones
only when clean runs are left. Then gatehouse's ratios to Varnish and nginx: req/s (> 1: gatehouse
faster), p99 and CPU/request (< 1: gatehouse better); "pending" when gatehouse has no figures.

Zipf part, per (workers, system), median over ZIPF_RUNS: hit ratio = 1 - origin requests / client
requests, byte hit ratio = 1 - origin body bytes / client body bytes (the client's from the paths it
was sent), the cache's own size at the end and its peak, RSS, then gatehouse's hit ratio against each
peer, and the reference figures of the sequence (unbounded cache, exact LRU of the cap).
"""
import statistics
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tsv import load, num  # noqa: E402

ORDER = ["gatehouse", "varnish", "nginx"]
PEERS = ["varnish", "nginx"]
DROP = ("FAILED", "DIED")
DOUBT = ("BUSY", "NOISY", "PIDS_CHANGED")




def med(rows, key):
    v = [num(r[key]) for r in rows if num(r[key]) is not None]
    return statistics.median(v) if v else None


def keep(rows):
    ok = [r for r in rows if not any(f in r["flag"] for f in DROP)]
    calm = [r for r in ok if not any(f in r["flag"] for f in DOUBT)]
    return calm or ok


def f(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def ratio(a, b, fmt=".2f"):
    return "pending" if a is None else ("n/a" if not b else format(a / b, fmt))


def mib(v):
    x = num(v)
    return "n/a" if x is None or v == "" else f"{x / 1048576:.1f}"


def hit_part(rows, small_kb, large_kb):
    if not rows:
        return
    label = {"small": f"{small_kb} KiB", "large": f"{large_kb} KiB"}
    print("## Cache-hit throughput (hot set, every request a hit)\n")
    print("| N | body | system | req/s median (min..max) | p50 ms | p99 ms | proxy CPU µs/req | origin requests during runs | runs kept | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((int(r["workers"]), r["size"], r["system"]), []).append(r)
    summ = {}
    for n in sorted({k[0] for k in groups}):
        for size in ("small", "large"):
            for sys_ in ORDER:
                rs = groups.get((n, size, sys_))
                if not rs:
                    if sys_ == "gatehouse":
                        print(f"| {n} | {label[size]} | gatehouse | pending | | | | | 0 | not measured |")
                    continue
                used = keep(rs)
                rps = [num(r["rps"]) for r in used if num(r["rps"]) is not None]
                s = {"rps": statistics.median(rps) if rps else None, "p50": med(used, "p50_ms"),
                     "p99": med(used, "p99_ms"), "cpu": med(used, "proxy_us_req")}
                summ[(n, size, sys_)] = s
                orq = [int(r["origin_reqs"]) for r in rs]
                flags = sorted({x for r in rs for x in r["flag"].split(",") if x != "ok"})
                span = f"{min(rps):,.0f}..{max(rps):,.0f}" if rps else ""
                print(f"| {n} | {label[size]} | {sys_} | {f(s['rps'], ',.0f')} ({span}) | {f(s['p50'], '.3f')} | "
                      f"{f(s['p99'], '.3f')} | {f(s['cpu'], '.1f')} | {sum(orq)} ({'/'.join(map(str, orq))}) | "
                      f"{len(used)}/{len(rs)} | {' '.join(flags) or '-'} |")
    print()
    print("Ratios gatehouse / peer (req/s > 1: gatehouse faster; p99 and CPU/req < 1: gatehouse better):\n")
    print("| N | body | peer | req/s | p99 | CPU/req |")
    print("|---|---|---|---|---|---|")
    for n in sorted({k[0] for k in groups}):
        for size in ("small", "large"):
            g = summ.get((n, size, "gatehouse"), {})
            for p in PEERS:
                q = summ.get((n, size, p))
                if not q:
                    continue
                print(f"| {n} | {label[size]} | {p} | {ratio(g.get('rps'), q['rps'])} | "
                      f"{ratio(g.get('p99'), q['p99'])} | {ratio(g.get('cpu'), q['cpu'])} |")
    print()


def lru_hit(paths, cap):
    """Hit ratio of an exact LRU of `cap` body bytes over the sequence (as zipf.py's reference)."""
    import collections
    lru, used, hits = collections.OrderedDict(), 0, 0
    for p, b in paths:
        if p in lru:
            hits += 1
            lru.move_to_end(p)
            continue
        if b > cap:
            continue
        lru[p] = b
        used += b
        while used > cap:
            used -= lru.popitem(last=False)[1]
    return hits / len(paths) if paths else None


def zipf_part(rows, ref, sizes_prefix, paths):
    if not rows:
        return
    print("## Hit ratio, Zipf workload, same memory cap\n")
    print("| N | system | client requests | origin requests (logged) | hit ratio | byte hit ratio | errors | s | req/s | cache MiB avg / peak / end | LRU at that avg | RSS MiB | flags | own counters |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((int(r["workers"]), r["system"]), []).append(r)
    hr, over = {}, {}
    for n in sorted({k[0] for k in groups}):
        for sys_ in ORDER:
            rs = groups.get((n, sys_))
            if not rs:
                if sys_ == "gatehouse":
                    print(f"| {n} | gatehouse | pending | | | | | | | | | | not measured | |")
                continue
            hits, bhits = [], []
            for r in keep(rs):
                c, o = int(r["client_reqs"] or 0), int(r["origin_reqs"] or 0)
                if c:
                    hits.append(1 - o / c)
                    cb = sizes_prefix(c)
                    if cb:
                        bhits.append(1 - int(r["origin_bytes"] or 0) / cb)
            h = statistics.median(hits) if hits else None
            b = statistics.median(bhits) if bhits else None
            hr[(n, sys_)] = (h, b)
            if any("OVER_CAP" in r["flag"] for r in rs):
                over[(n, sys_)] = max(num(r["used_avg"]) or 0 for r in rs)
            for r in rs:
                print(f"| {n} | {sys_} | {int(r['client_reqs'] or 0):,} | {int(r['origin_reqs'] or 0):,} ({int(r['origin_logged'] or 0):,}) | "
                      f"{f(h, '.4f')} | {f(b, '.4f')} | {r['errors']} | {r['seconds']} | {f(num(r['rps']), ',.0f')} | "
                      f"{mib(r['used_avg'])} / {mib(r['used_peak'])} / {mib(r['used_end'])} | "
                      f"{f(lru_hit(paths, num(r['used_avg'])) if num(r['used_avg']) else None, '.4f')} | {f(num(r['rss_kb']) / 1024 if num(r['rss_kb']) else None, '.1f')} | "
                      f"{r['flag'] if r['flag'] != 'ok' else '-'} | {r['notes']} |")
    print()
    if ref:
        print(f"Reference, same sequence (body bytes only): unbounded cache (compulsory misses only) {ref.get('compulsory_hit', '?')}; "
              f"exact LRU holding the cap in body bytes: hit {ref.get('lru_hit', '?')}, byte hit {ref.get('lru_byte_hit', '?')}; "
              f"{ref.get('distinct', '?')} distinct objects, {int(ref.get('distinct_bytes', 0)) / 1048576:.0f} MiB.\n")
    print("gatehouse vs peer (hit ratio: gatehouse / peer, and the difference in points):\n")
    print("| N | peer | hit ratio gatehouse / peer | difference | byte hit ratio gatehouse / peer |")
    print("|---|---|---|---|---|")
    for n in sorted({k[0] for k in groups}):
        g = hr.get((n, "gatehouse"), (None, None))
        for p in PEERS:
            q = hr.get((n, p))
            if not q:
                continue
            diff = "pending" if g[0] is None or q[0] is None else f"{100 * (g[0] - q[0]):+.1f} pt"
            note = f" (held {over[(n, p)] / 1048576:.0f} MiB on average: over the cap)" if (n, p) in over else ""
            print(f"| {n} | {p}{note} | {ratio(g[0], q[0], '.3f')} | {diff} | {ratio(g[1], q[1], '.3f')} |")
    print()
    if over:
        print("OVER_CAP: the cache held more than 110 % of the cap at some point (sampled every second; nginx's cache manager\n"
              "checks max_size at most every 10 s and then deletes files until under it), so its hit ratio was\n"
              "obtained with more memory than the others.\n")


def main():
    hit_tsv, zipf_tsv, ref_file, paths_file, small_kb, large_kb = sys.argv[1:7]
    hit_part(load(hit_tsv), small_kb, large_kb)
    ref = {}
    try:
        for line in open(ref_file):
            if "=" in line:
                k, v = line.strip().split("=", 1)
                ref[k] = v
    except FileNotFoundError:
        pass
    paths = []
    try:
        for line in open(paths_file):
            p = line.rstrip("\n")
            paths.append((p, int(p.rsplit("/", 1)[1].rstrip("k")) * 1024))
    except FileNotFoundError:
        pass
    sizes = [b for _, b in paths]
    cum = [0]
    for s in sizes:
        cum.append(cum[-1] + s)

    def sizes_prefix(c):
        # body bytes of the first c requests (wrk wraps to the top of the file past the end)
        if not sizes:
            return 0
        full, part = divmod(c, len(sizes))
        return full * cum[-1] + cum[part]

    zipf_part(load(zipf_tsv), ref, sizes_prefix, paths)


if __name__ == "__main__":
    main()
