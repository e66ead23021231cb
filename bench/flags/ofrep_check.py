#!/usr/bin/python3
"""bench/flags/ofrep_check.py: OFREP answers against the in-process engine's, before bench/flags.sh's runs.

    ofrep_check.py PORT API_KEY BODIES.txt VARIANTS.tsv COUNT FLAG...

POSTs each FLAG for the first COUNT bodies (one keep-alive connection) and compares the answer's
variant with VARIANTS.tsv (lines: flag, context index, variant, reason, value). Prints
"requests mismatches non200" on stdout and the first 3 differences on stderr."""
import http.client
import json
import sys

port, key, bodies_path, ref_path, count = sys.argv[1:6]
flags = sys.argv[6:]
count = int(count)
ref = {}
for line in open(ref_path):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 3:
        ref[(f[0], int(f[1]))] = f[2]
bodies = [b for b in open(bodies_path).read().split("\n") if b][:count]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
n = bad = non200 = 0
for flag in flags:
    for i, body in enumerate(bodies):
        conn.request("POST", "/ofrep/v1/evaluate/flags/" + flag, body=body,
                     headers={"X-API-Key": key, "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        n += 1
        if r.status != 200:
            non200 += 1
        try:
            variant = json.loads(data).get("variant", "-")
        except ValueError:
            variant = "?"
        want = ref.get((flag, i), "?")
        if variant != want:
            bad += 1
            if bad <= 3:
                print("  OFREP %s context %d: %d %s (want variant %s)" % (flag, i, r.status, data[:200].decode("utf-8", "replace"), want),
                      file=sys.stderr)
print(n, bad, non200)
