#!/usr/bin/python3
"""pow_js_check.py: does the challenge page's JavaScript really work?

Runs the inline <script> of pages made by gh_chal_page (through the helper mode of the
unit-test binary: `test_bot --page D RETURN_TO`, fixed secret, peer 127.0.0.1) under
node, in a fresh vm context whose only globals are a stub `window` (location.replace
records the URL; crypto is node's WebCrypto or absent) and setTimeout, then checks:

  - with crypto.subtle (it checks the pure-JS SHA-256 once, then the JS search runs)
    and without it (what a browser has on plain http:// from a non-localhost origin),
    the script navigates exactly once, to V?t=<token>&n=<n>&r=<return_to>, with the
    smallest n (the one powsolve.py finds) and the return path intact, for an ordinary
    and a hostile return_to;
  - with the JS hash broken on purpose (one round constant changed), the crypto.subtle
    check catches it and the search on crypto.subtle.digest still finds the right n;
  - the answer verifies in C (`test_bot --verify TOKEN N` runs gh_chal_verify);
  - the fallback SHA-256 is right across block boundaries: the script's token is swapped
    for prefixes of 0 to 130 bytes, and each answer is checked with hashlib.

Prints what it checked and the solve times; exit 0 when all pass, 1 on a failure. When
node is not on PATH it prints why it skips and exits 0 (also when the unit-test binary
is missing: build it with `make unit`). BUILD selects the build directory (default
build).

    /usr/bin/python3 tests/integration/pow_js_check.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import powsolve  # noqa: E402

# Reads [{src, subtle}] as JSON on stdin, runs each script in its own context, one after
# the other, and prints [{url, ms, navigations} | {error}] as JSON.
NODE_DRIVER = r"""
const vm = require('vm');
const webcrypto = require('crypto').webcrypto;
const jobs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
function runOne(job) {
  return new Promise((resolve) => {
    const out = {navigations: 0};
    const t0 = process.hrtime.bigint();
    const location = {replace(u) {
      out.navigations++;
      if (out.navigations === 1) {
        out.url = String(u);
        out.ms = Number(process.hrtime.bigint() - t0) / 1e6;
        setTimeout(() => resolve(out), 20); /* a second navigation would show here */
      }
    }};
    const window = {location: location};
    if (job.subtle) window.crypto = {subtle: webcrypto.subtle};
    const ctx = vm.createContext({window: window, setTimeout: setTimeout});
    const timer = setTimeout(() => resolve({error: 'no navigation within 60 s'}), 60000);
    try {
      vm.runInContext(job.src, ctx, {timeout: 10000});
    } catch (e) {
      clearTimeout(timer);
      resolve({error: String(e)});
    }
  });
}
(async () => {
  const res = [];
  for (const j of jobs) res.push(await runOne(j));
  console.log(JSON.stringify(res));
  process.exit(0);
})();
"""

SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def build_dir():
    return os.path.join(REPO, os.environ.get("BUILD", "build"))


def test_bot():
    return os.path.join(build_dir(), "tests", "test_bot")


def make_page(difficulty, return_to):
    return subprocess.run([test_bot(), "--page", str(difficulty), return_to], check=True,
                          capture_output=True, timeout=30).stdout.decode("utf-8")


def c_verifies(token, n):
    return subprocess.run([test_bot(), "--verify", token, str(n)], capture_output=True,
                          timeout=30).returncode == 0


def extract_script(page):
    scripts = SCRIPT.findall(page)
    if len(scripts) != 1:
        raise ValueError("expected one <script>, found %d" % len(scripts))
    return scripts[0]


def run_node(jobs):
    p = subprocess.run(["node", "-e", NODE_DRIVER], input=json.dumps(jobs).encode(),
                       capture_output=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("node failed: %s" % p.stderr.decode(errors="replace")[-2000:])
    return json.loads(p.stdout)


def split_url(url):
    u = urlsplit(url)
    q = parse_qs(u.query, keep_blank_values=True)
    return u.path, q.get("t", [""])[0], q.get("n", [""])[0], q.get("r", [""])[0]


def main():
    node = shutil.which("node")
    if not node:
        print("pow_js_check: SKIP: node is not on PATH (the page's JavaScript is not run)")
        return 0
    if not os.access(test_bot(), os.X_OK):
        print("pow_js_check: SKIP: %s is missing (make unit)" % test_bot())
        return 0
    version = subprocess.run(["node", "--version"], capture_output=True).stdout.decode().strip()
    failures = []

    def check(cond, what):
        print("  %s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            failures.append(what)

    print("pow_js_check: node %s" % version)
    cases = [(16, "/shop/item?id=42&ref=a%2Fb"),
             (12, '/a"</script><script>alert(1)</script>\'&x=<y>'),
             (0, "/")]
    jobs, meta = [], []
    for difficulty, rt in cases:
        page = make_page(difficulty, rt)
        info = powsolve.parse(page)
        src = extract_script(page)
        want_n = powsolve.solve_token(info["token"], difficulty)
        for subtle in (True, False):
            jobs.append({"src": src, "subtle": subtle})
            meta.append((difficulty, rt, info, want_n, subtle))
    for res, (difficulty, rt, info, want_n, subtle) in zip(run_node(jobs), meta):
        path = "crypto.subtle present" if subtle else "no crypto.subtle"
        label = "difficulty %d, %s, return_to %r" % (difficulty, path, rt)
        if "error" in res:
            check(False, "%s: %s" % (label, res["error"]))
            continue
        vp, t, n, r = split_url(res["url"])
        check(res["navigations"] == 1, "%s: one navigation" % label)
        check(vp == info["verify_path"] and t == info["token"] and r == rt,
              "%s: URL carries verify path, token and return_to" % label)
        check(n == str(want_n), "%s: n=%s is the smallest (powsolve: %d), %.0f ms"
              % (label, n, want_n, res["ms"]))
        check(res["url"] == powsolve.verify_url(info, want_n), "%s: same URL as powsolve" % label)
        check(c_verifies(t, n), "%s: gh_chal_verify accepts it" % label)

    # a broken JS hash: crypto.subtle's check must catch it and search itself
    page = make_page(12, "/x")
    info = powsolve.parse(page)
    src = extract_script(page)
    broken = src.replace("0x428a2f98", "0x428a2f99")
    check(broken != src, "the round constant to break is in the script")
    res = run_node([{"src": broken, "subtle": True}])[0]
    want_n = powsolve.solve_token(info["token"], 12)
    check("error" not in res and split_url(res["url"])[2] == str(want_n),
          "broken JS hash, difficulty 12: crypto.subtle search finds n=%d (%s, %.0f ms)"
          % (want_n, res.get("error", "n=" + split_url(res.get("url", ""))[2]), res.get("ms", 0)))

    # the fallback's SHA-256 across block boundaries: other prefixes, 8 zero bits
    page = make_page(8, "/")
    src = extract_script(page)
    values = re.search(r'var T="[^"]*",D=\d+,', src)
    jobs, prefixes = [], []
    for length in list(range(0, 10)) + list(range(50, 70)) + list(range(110, 131)):
        prefix = "".join(chr(0x41 + (i * 7 + length) % 26) for i in range(length))
        prefixes.append(prefix)
        jobs.append({"src": src.replace(values.group(0), 'var T="%s",D=8,' % prefix),
                     "subtle": False})
    bad = []
    for prefix, res in zip(prefixes, run_node(jobs)):
        n = split_url(res.get("url", ""))[2]
        if "error" in res or n != str(powsolve.solve_token(prefix, 8)):
            bad.append((len(prefix), res))
    check(not bad, "pure-JS SHA-256 agrees with hashlib for prefixes of %d lengths (0..130)%s"
          % (len(prefixes), "" if not bad else ": %r" % bad[:3]))

    print("pow_js_check: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
