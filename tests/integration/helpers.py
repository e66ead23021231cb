"""Shared helpers for the integration suite (imported by conftest and the tests)."""

import os
import re
import socket
import subprocess
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("GATEHOUSE_BIN") or os.path.join(REPO, "build", "gatehouse")


def session():
    """A requests session that ignores proxy environment variables."""
    s = requests.Session()
    s.trust_env = False
    return s


def request(method, url, **kw):
    """One request on a fresh connection (no pooling across tests)."""
    kw.setdefault("timeout", 10)
    with session() as s:
        return s.request(method, url, **kw)


def get(url, **kw):
    return request("GET", url, **kw)


HEADER = """
workers: {workers}
pid_file: "{pid_file}"
drain_timeout: 5s
trusted_proxies: [127.0.0.2/32]
access_log: {enabled: true, path: "-"}
admin: {listen: "127.0.0.1:{admin_port}"}
listeners: [{name: http, listen: "127.0.0.1:{proxy_port}"}]
"""


def other_paths_seen(gh, origin, name):
    """Send a sentinel request through gatehouse, wait until the origin has it, and
    return every other path the origin saw (since its last reset). With one worker
    anything sent earlier reaches the origin before the sentinel does."""
    from rawhttp import one, request_bytes
    sentinel = "/echo/sentinel-" + name
    r = one(gh.port, request_bytes("GET", sentinel))
    assert r.status == 200, r
    assert origin.wait_for(lambda s: sentinel in s.paths_seen(), timeout=5)
    # a short grace for anything arriving out of order on another connection
    origin.wait_for(lambda s: len(s.heads) > 1, timeout=0.3)
    return [p for p in origin.paths_seen() if p != sentinel]


_given_ports = set()


def free_port():
    """A free loopback port, never one this process handed out before: the kernel may give the
    same ephemeral port to two binds that each close at once, and a test asking for several
    ports (proxy, admin, OFREP...) must get distinct ones."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise RuntimeError("no fresh free port")


def closed_port():
    """A loopback port with nothing listening (connect is refused)."""
    return free_port()


def port_accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def poll(pred, timeout=5.0, interval=0.02):
    """Call pred until it returns a truthy value or the deadline passes; return the
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def fill(text, values):
    """Replace {name} where name is in values; leave YAML flow mappings alone."""
    def sub(m):
        k = m.group(1)
        return str(values[k]) if k in values else m.group(0)
    return _PLACEHOLDER.sub(sub, text)


def run_cli(*args, timeout=10, **kw):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True,
                          timeout=timeout, **kw)


# ---- Prometheus text -------------------------------------------------------

_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_metrics(text):
    """[(name, {labels}, float)] for every sample line."""
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        m = _METRIC_LINE.match(ln)
        if not m:
            continue
        labels = {}
        if m.group(3):
            for lm in _LABEL.finditer(m.group(3)):
                labels[lm.group(1)] = lm.group(2)
        try:
            val = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, val))
    return out


def metric_value(samples, name, **labels):
    """Sum of the samples of name whose labels include the given ones (0 if none)."""
    total = 0.0
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == str(val) for k, val in labels.items()):
            total += v
    return total


def metric_present(samples, name, **labels):
    return any(n == name and all(ls.get(k) == str(val) for k, val in labels.items())
               for n, ls, v in samples)
