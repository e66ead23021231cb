#!/usr/bin/python3
"""bench/cache/zipf.py: the deterministic request sequence of bench/cache.sh's hit-ratio part.

    zipf.py OUT OBJECTS REQUESTS EXPONENT SEED MIN_KB MAX_KB CAP_BYTES

OBJECTS distinct objects, object i has a body of MIN_KB..MAX_KB KiB (uniform in whole KiB, drawn from
the seeded generator) and the path /z/<i>/<size>k (the origin maps the size suffix to a file of that
size). Popularity is Zipf: the object of popularity rank r (1 = most popular) is requested with
probability proportional to 1 / r^EXPONENT; ranks are assigned to object ids by a seeded shuffle.
REQUESTS paths are drawn (inverse CDF on random.Random(SEED).random(), which is the same on every
Python 3) and written to OUT, one per line: every system gets exactly this sequence.

Prints (key=value, one per line) reference figures for the same sequence, body bytes only:
  distinct, distinct_bytes       objects / bytes the sequence touches
  compulsory_hit                 hit ratio of an unbounded cache (only first requests miss)
  lru_hit, lru_byte_hit          an exact LRU holding at most CAP_BYTES of bodies (no per-object
                                 overhead), starting empty: what a plain LRU of that size would get
"""
import bisect
import collections
import random
import sys


def main():
    out, objects, requests, s, seed, min_kb, max_kb, cap = sys.argv[1:9]
    objects, requests, seed, min_kb, max_kb, cap = int(objects), int(requests), int(seed), int(min_kb), int(max_kb), int(cap)
    s = float(s)
    rng = random.Random(seed)
    size_kb = [rng.randint(min_kb, max_kb) for _ in range(objects)]
    ids = list(range(objects))
    rng.shuffle(ids)                       # ids[rank-1] = object id of that popularity rank
    cum, tot = [], 0.0
    for r in range(1, objects + 1):
        tot += 1.0 / r ** s
        cum.append(tot)
    seq = []
    for _ in range(requests):
        rank = bisect.bisect_left(cum, rng.random() * tot)
        seq.append(ids[min(rank, objects - 1)])
    with open(out, "w") as f:
        for i in seq:
            f.write(f"/z/{i}/{size_kb[i]}k\n")

    # Reference figures on this exact sequence.
    seen = set()
    lru = collections.OrderedDict()
    used = hits = hit_bytes = all_bytes = 0
    for i in seq:
        b = size_kb[i] * 1024
        all_bytes += b
        seen.add(i)
        if i in lru:
            hits += 1
            hit_bytes += b
            lru.move_to_end(i)
            continue
        if b > cap:
            continue
        lru[i] = b
        used += b
        while used > cap:
            _, ob = lru.popitem(last=False)
            used -= ob
    print(f"distinct={len(seen)}")
    print(f"distinct_bytes={sum(size_kb[i] * 1024 for i in seen)}")
    print(f"request_bytes={all_bytes}")
    print(f"compulsory_hit={1 - len(seen) / requests:.4f}")
    print(f"lru_hit={hits / requests:.4f}")
    print(f"lru_byte_hit={hit_bytes / all_bytes:.4f}")
    print(f"top1_share={cum[0] / tot:.4f}")


if __name__ == "__main__":
    main()
