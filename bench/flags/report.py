#!/usr/bin/python3
"""bench/flags/report.py: the markdown summary of bench/flags.sh.

    report.py EVAL.tsv OFREP.tsv INFO.tsv FLAGD_PUBLISHED BIG_FLAGS OTHER_MAX SHARE_MIN [GRPC.tsv]

Eval: per flag and engine, ns per evaluation median (min..max) over every repetition of the processes
kept, and flagd-core / gatehouse (ratio of the medians, and the range of the per-round ratios);
target >= 10. Processes flagged FAILED are dropped, NOISY ones (other load on the core during the process) when
clean ones are left; BUSY (the machine was busy before it) is only noted.
OFREP: per flag, req/s median (min..max), p50/p99 medians, gatehouse CPU µs per request (median) and
the rate that makes per fully used core, ratios to flagd's published rate per core; target >= 5.
gRPC (GRPC.tsv, part grpc): per flag, flagd gRPC and OFREP over h2c side by side (h2load): req/s median
(min..max), mean time per request, gatehouse CPU µs per request and per fully used core, ratios to
flagd's published rate, gRPC / OFREP-h2c; the answer probed before the runs and the 50-context check.
Load: gh_flags_load and FlagdCore.setConfigurations of BIG_FLAGS flags (time, heap kept), gatehouse
validate time and a running gatehouse's RSS with the 3-flag and the BIG_FLAGS-flag file.
"""
import statistics
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tsv import load, num  # noqa: E402
from collections import defaultdict

eval_tsv, ofrep_tsv, info_tsv, published, big_flags, other_max, share_min = sys.argv[1:8]
h2_tsv = sys.argv[8] if len(sys.argv) > 8 else None
share_min = float(share_min)
published = float(published)
big_flags = int(big_flags)
FLAGS = ["static-flag", "targeted-flag", "split-flag"]
LABEL = {"static-flag": "static (no targeting)", "targeted-flag": "targeting, 5 conditions", "split-flag": "fractional, 3 variants"}
DOUBT = ("BUSY", "NOISY", "PIDS_CHANGED", "ERR")


def keep(rows, doubt=DOUBT):
    ok = [r for r in rows if "FAILED" not in r["status"] and "DIED" not in r["status"]]
    calm = [r for r in ok if not any(d in r["status"] for d in doubt)]
    return calm or ok


def vals(rows, key):
    return [num(r[key]) for r in rows if num(r[key]) is not None]


def med(v):
    return statistics.median(v) if v else None


def fmt(v, f=",.0f"):
    return "n/a" if v is None else format(v, f)


def spread(v, f=",.0f"):
    return "pending" if not v else "%s (%s..%s)" % (format(med(v), f), format(min(v), f), format(max(v), f))


info = {}
for line in open(info_tsv):
    k, _, v = line.rstrip("\n").partition("\t")
    info[k] = v

# ---------------------------------------------------------------- eval
rows = load(eval_tsv)
print("## 1. In-process evaluation, ns per evaluation (lower is better)")
print()
if not rows:
    print("Not run (PARTS without eval, or no engine available): pending.")
    print()
print("| flag | gatehouse `gh_flags_eval` ns | flagd-core ns | flagd-core / gatehouse | per round | target >= 10x |")
print("|---|---|---|---|---|---|")
eng_rows = {}
for eng in ("gatehouse", "flagd-core"):
    all_r = [r for r in rows if r["engine"] == eng]
    # keep/drop per process (round), not per repetition
    rounds = defaultdict(list)
    for r in all_r:
        rounds[r["round"]].append(r)
    procs = [{"status": rs[0]["status"], "rows": rs} for rs in rounds.values()]
    kept = keep(procs, ("NOISY",))  # busy before a process is only noted: what counts is the load on its core meanwhile
    reps = [r for p in kept for r in p["rows"]]
    # per flag: repetitions with a CPU share under share_min are left out when others are left
    out = []
    for fl in FLAGS:
        fr = [r for r in reps if r["flag"] == fl]
        full = [r for r in fr if (num(r.get("cpu_share")) or 0) >= share_min]
        out += full or fr
        eng_rows[eng + "_lowshare"] = eng_rows.get(eng + "_lowshare", 0) + (len(fr) - len(full) if full else 0)
    eng_rows[eng] = out
    eng_rows[eng + "_dropped"] = len(procs) - len(kept)
    eng_rows[eng + "_procs"] = len(procs)
for fl in FLAGS:
    g = [r for r in eng_rows["gatehouse"] if r["flag"] == fl]
    n = [r for r in eng_rows["flagd-core"] if r["flag"] == fl]
    gv, nv = vals(g, "ns_eval"), vals(n, "ns_eval")
    ratio = med(nv) / med(gv) if gv and nv else None
    per_round = []
    for rd in sorted({r["round"] for r in g} & {r["round"] for r in n}):
        a = med(vals([r for r in g if r["round"] == rd], "ns_eval"))
        b = med(vals([r for r in n if r["round"] == rd], "ns_eval"))
        if a and b:
            per_round.append(b / a)
    pr = "%.1f..%.1f" % (min(per_round), max(per_round)) if per_round else "n/a"
    verdict = "pending" if ratio is None else ("met" if ratio >= 10 else "**not met**")
    print("| %s: %s | %s | %s | %s | %s | %s |" % (fl, LABEL[fl], spread(gv, ",.1f"), spread(nv, ",.1f"),
                                                 "pending" if ratio is None else "%.1fx" % ratio, pr, verdict))
errs = sum(int(r["errors"]) for r in rows if r["errors"].isdigit())
print()
print("Medians over %d gatehouse and %d flagd-core repetitions kept, all flags together (%d and %d processes; processes dropped as noisy/failed: %d and %d; "
      "repetitions left out for a CPU share under %.2f: %d and %d); evaluations returning ERROR during the loops: %d."
      % (len(eng_rows["gatehouse"]), len(eng_rows["flagd-core"]), eng_rows["gatehouse_procs"], eng_rows["flagd-core_procs"],
         eng_rows["gatehouse_dropped"], eng_rows["flagd-core_dropped"], share_min, eng_rows.get("gatehouse_lowshare", 0),
         eng_rows.get("flagd-core_lowshare", 0), errs))
if "xcheck" in info:
    n, mv, mr, mx = info["xcheck"].split()
    print()
    print("**Cross-check** (same flags, same contexts, every flag x context through both engines): %s evaluations, "
          "**variant mismatches: %s** (must be 0), reason mismatches: %s, value mismatches: %s. Variants served: %s."
          % (n, mv, mr, mx, info.get("xcheck_dist", "")))
else:
    print()
    print("Cross-check: not run (one engine missing).")
oth = vals(rows, "other_core")
if oth:
    print()
    print("Noise: other processes used %s..%s %% of the evaluation core during the processes (threshold %s %%); "
          "machine busy before them: %s..%s %%." % (fmt(min(oth)), fmt(max(oth)), other_max,
                                                    fmt(min(vals(rows, "busy_before"))), fmt(max(vals(rows, "busy_before")))))

# ---------------------------------------------------------------- ofrep
rows = load(ofrep_tsv)
print()
print("## 2. OFREP single-flag requests, one gatehouse worker")
print()
if not rows:
    print("Not run (PARTS without ofrep, or gatehouse missing): pending.")
    print()
print("flagd is %s; the comparison is with its published %s evaluations/s per core." % (info.get("flagd", "not installed"), fmt(published)))
print()
print("| flag | req/s median (min..max) | p50 ms | p99 ms | server CPU µs/req | req/s per busy core (1e6 / CPU µs) | req/s / %s | target >= 5x | runs kept |" % fmt(published))
print("|---|---|---|---|---|---|---|---|---|")
floor = {}
for fl in FLAGS + ["nginx-floor"]:
    a = [r for r in rows if r["flag"] == fl]
    if not a and fl == "nginx-floor":
        continue
    k = keep(a)
    rps = vals(k, "rps")
    cpu = med(vals(k, "gh_us_req"))
    cap = 1e6 / cpu if cpu else None
    x = med(rps) / published if rps else None
    verdict = "pending" if x is None else ("met" if x >= 5 else "**not met**")
    errs = sum(int(r["errors"]) for r in k if r["errors"].lstrip("-").isdigit())
    if fl == "nginx-floor":
        floor = {"rps": med(rps), "cpu": cpu}
        verdict = "(reference, no evaluation)"
        fl = "nginx `return 200`, same requests and answer bytes"
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %d of %d%s |" % (
        fl, spread(rps), fmt(med(vals(k, "p50_ms")), ".3f"), fmt(med(vals(k, "p99_ms")), ".3f"), fmt(cpu, ".2f"),
        fmt(cap), "pending" if x is None else "%.1fx (per busy core %.1fx)" % (x, cap / published if cap else 0), verdict,
        len(k), len(a), ", %d errors" % errs if errs else ""))
if floor and floor["rps"]:
    g = [med(vals(keep([r for r in rows if r["flag"] == fl]), "rps")) for fl in FLAGS]
    gc = [med(vals(keep([r for r in rows if r["flag"] == fl]), "gh_us_req")) for fl in FLAGS]
    if all(g) and all(gc) and floor["cpu"]:
        print()
        print("Against the nginx reference (one HTTP request answered with fixed bytes, on the same core in the same rounds): "
              "gatehouse's OFREP req/s are %s of nginx's, its CPU per request %s of nginx's (static, targeting, fractional). "
              "nginx's own cost, %.1f µs per request (%s req/s per busy core, %.1fx flagd's published figure), is %s the %.1f µs per "
              "request that the 5x target (%s req/s on one core) leaves an OFREP server on this machine."
              % ("/".join("%.2f" % (v / floor["rps"]) for v in g), "/".join("%.2f" % (v / floor["cpu"]) for v in gc),
                 floor["cpu"], fmt(1e6 / floor["cpu"]), 1e6 / floor["cpu"] / published,
                 "above" if floor["cpu"] > 1e6 / (5 * published) else "below", 1e6 / (5 * published), fmt(5 * published)))
if rows:
    o0, o1, bb, c0 = vals(rows, "other_cpu0"), vals(rows, "other_cpu1"), vals(rows, "busy_before"), vals(rows, "core0_busy")
    flagged = [r for r in rows if r["status"] != "ok"]
    print()
    print("Server core busy during the runs: %s..%s %%; other processes: core 0 %s..%s %%, core 1 %s..%s %%; machine busy before runs %s..%s %%; "
          "runs flagged: %s." % (fmt(min(c0)), fmt(max(c0)), fmt(min(o0)), fmt(max(o0)), fmt(min(o1)), fmt(max(o1)), fmt(min(bb)), fmt(max(bb)),
                                 ", ".join("%s r%s %s" % (r["flag"], r["round"], r["status"]) for r in flagged) or "none"))
if "ofrep_check" in info:
    n, bad, nerr = info["ofrep_check"].split()
    print()
    print("OFREP answers checked before the runs: %s requests (3 flags x 50 contexts), %s variants differ from the in-process engine's, %s not 200." % (n, bad, nerr))

# ---------------------------------------------------------------- grpc
rows = load(h2_tsv) if h2_tsv else []
PROTO = {"grpc": "flagd gRPC v2", "ofrep-h2c": "OFREP, h2c"}
print()
print("## 3. flagd gRPC beside OFREP over HTTP/2, one gatehouse worker (h2load, one context)")
print()
if not rows:
    print("Not run (PARTS without grpc, or gatehouse, h2load or protoc missing): pending.")
    print()
print("| flag | protocol | req/s median (min..max) | mean ms/req | gatehouse CPU µs/req | req/s per busy core (1e6 / CPU µs) "
      "| req/s / %s (per busy core) | target >= 5x | answer bytes | runs kept |" % fmt(published))
print("|---|---|---|---|---|---|---|---|---|---|")
for fl in FLAGS:
    for proto in PROTO:
        a = [r for r in rows if r["flag"] == fl and r["proto"] == proto]
        k = keep(a)
        rps = vals(k, "rps")
        cpu = med(vals(k, "gh_us_req"))
        cap = 1e6 / cpu if cpu else None
        x = med(rps) / published if rps else None
        verdict = "pending" if x is None else ("met" if x >= 5 else "**not met**")
        errs = sum(int(r["errors"]) for r in k if r["errors"].lstrip("-").isdigit())
        bad = [r for r in k if "BADSIZE" in r["status"]]
        ans = sorted({"%g" % num(r["answer_bytes"]) for r in k if num(r["answer_bytes"]) is not None})
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d of %d%s |" % (
            fl, PROTO[proto], spread(rps), fmt(med(vals(k, "mean_ms")), ".3f"), fmt(cpu, ".2f"), fmt(cap),
            "pending" if x is None else "%.1fx (%.1fx)" % (x, cap / published if cap else 0), verdict,
            "/".join(ans) or "n/a", len(k), len(a),
            (", %d errors" % errs if errs else "") + (", %d runs with other answer sizes" % len(bad) if bad else "")))
# gRPC / OFREP-h2c per round (the two runs of a flag are side by side in a round): from the rounds where
# both runs were kept as calm, else from every round with both (marked)
ratio_parts = []
for fl in FLAGS:
    by_round = defaultdict(dict)
    for r in rows:
        if r["flag"] == fl and "FAILED" not in r["status"] and "DIED" not in r["status"]:
            by_round[r["round"]][r["proto"]] = r
    both = [d for d in by_round.values() if "grpc" in d and "ofrep-h2c" in d]
    calm = [d for d in both if not any(x in d[p]["status"] for p in PROTO for x in DOUBT)]
    use = calm or both
    rr = [num(d["grpc"]["rps"]) / num(d["ofrep-h2c"]["rps"]) for d in use if num(d["ofrep-h2c"]["rps"])]
    cr = [num(d["grpc"]["gh_us_req"]) / num(d["ofrep-h2c"]["gh_us_req"]) for d in use
          if num(d["grpc"]["gh_us_req"]) and num(d["ofrep-h2c"]["gh_us_req"])]
    if rr and cr:
        ratio_parts.append("%s: req/s %s, CPU per request %s (%d %s round%s)" % (
            fl, spread(rr, ".2f"), spread(cr, ".2f"), len(use), "calm" if calm else "**noisy**", "" if len(use) == 1 else "s"))
if ratio_parts:
    print()
    print("gRPC / OFREP-h2c, per round (the two runs of a flag side by side, same gatehouse, same context), median (min..max): %s."
          % "; ".join(ratio_parts))
if rows:
    sb, cb = vals(rows, "server_busy"), vals(rows, "client_busy")
    o0, o1, bb = vals(rows, "other_server"), vals(rows, "other_client"), vals(rows, "busy_before")
    done = sum(int(r["requests"]) for r in rows if r["requests"].isdigit())
    errs = sum(int(r["errors"]) for r in rows if r["errors"].lstrip("-").isdigit())
    flagged = [r for r in rows if r["status"] != "ok"]
    print()
    print("Answers: %s in all runs, %d not done/succeeded/2xx; runs whose DATA bytes were not answers x the probed answer's size: %d. "
          "Core busy during the runs: gatehouse's %s..%s %%, h2load's %s..%s %% (the one near 100 %% limits req/s; CPU per request "
          "does not depend on it); other processes: gatehouse's core %s..%s %%, h2load's %s..%s %%; machine busy before runs %s..%s %%; "
          "runs flagged: %s."
          % (format(done, ","), errs, len([r for r in rows if "BADSIZE" in r["status"]]), fmt(min(sb)), fmt(max(sb)), fmt(min(cb)), fmt(max(cb)),
             fmt(min(o0)), fmt(max(o0)), fmt(min(o1)), fmt(max(o1)), fmt(min(bb)), fmt(max(bb)),
             ", ".join("%s %s r%s %s" % (r["proto"], r["flag"], r["round"], r["status"]) for r in flagged) or "none"))
answers = [(k[len("h2_answer_"):], v) for k, v in info.items() if k.startswith("h2_answer_")]
if answers:
    print()
    print("Answers probed with curl before the runs (context 0; size of the DATA, then the decoded answer):")
    print()
    for k, v in answers:
        proto, _, fl = k.partition(":")
        size, _, desc = v.partition(" ")
        print("- %s, %s: %s bytes: %s" % (PROTO.get(proto, proto), fl, size, desc))
if "h2_bodies" in info:
    print()
    print("Request bodies (bytes): %s." % info["h2_bodies"])
if "grpc_check" in info:
    n, bad, absent, badval, notok, ref = (info["grpc_check"].split() + ["?"] * 6)[:6]
    print()
    print("gRPC answers checked before the runs with python's grpcio (%s calls: 3 flags x 50 contexts, against %s): "
          "**%s variants differ**, %s answers without the variant that the in-process engine (and flagd) gives%s, "
          "%s values differ, %s not OK." % (n, "evalbench" if ref == "var-gh" else "flagd-core", bad,
                                            "**%s**" % absent if absent not in ("0", "?") else absent,
                                            " (must be 0: the answer is incomplete)" if absent not in ("0", "?") else "", badval, notok))

# ---------------------------------------------------------------- load
print()
print("## 4. Loading %s flags" % format(big_flags, ","))
print()
print("| what | time ms median (min..max) | memory | per flag |")
print("|---|---|---|---|")


def load_row(name, key):
    if key not in info:
        print("| %s | pending | | |" % name)
        return
    ms, lo, hi, heap, rss, n = info[key].split("\t")
    n = int(n) or 1
    print("| %s (%s flags) | %s (%s..%s) | heap kept %.1f MiB (RSS +%.1f MiB) | %s B |" % (
        name, n, ms, lo, hi, int(heap) / 2**20, int(rss) / 1024, format(int(heap) // n, ",")))


load_row("gatehouse `gh_flags_load` (evalbench, mallinfo2)", "load_gh")
kinds = [(k, info.get("load_gh_" + k)) for k in ("static", "targeting", "fractional")]
if all(v for _, v in kinds):
    parts = []
    for k, v in kinds:
        ms, _, _, heap, _, n = v.split("\t")
        parts.append("%s %s B (%s ms)" % (k, format(int(heap) // max(int(n), 1), ","), ms))
    print("| gatehouse, each third loaded alone (%s flags each) | | heap per flag: | %s |" % (kinds[0][1].split("\t")[5], "; ".join(parts)))
load_row("flagd-core `FlagdCore.setConfigurations` (node heapUsed+external after GC)", "load_fc")
vs, vb = info.get("validate_small"), info.get("validate_big")
if vs and vb:
    s, b = float(vs.split()[0]), float(vb.split()[0])
    print("| `gatehouse validate`: 3-flag file / %s-flag file | %s / %s (difference %.1f) | | |" % (format(big_flags, ","), vs.split()[0], vb.split()[0], b - s))
rs, rb = info.get("rss_small"), info.get("rss_big")
if rs and rb:
    s_rss, s_pss = map(int, rs.split())
    b_rss, b_pss = map(int, rb.split())
    print("| running gatehouse (workers 1): RSS with the 3-flag file (~ without flags) / with %s | | %.1f / %.1f MiB (+%.1f MiB; Pss +%.1f MiB) | %s B |" % (
        format(big_flags, ","), s_rss / 1024, b_rss / 1024, (b_rss - s_rss) / 1024, (b_pss - s_pss) / 1024,
        format((b_rss - s_rss) * 1024 // big_flags, ",")))
