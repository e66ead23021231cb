"""Access log files: rotation by size (access_log.max_size, keep) and reopen on SIGUSR1 after an
outside tool moved the file (issue 10). Every line is accounted for: each request's id (chosen
by the test through X-Request-Id) is in exactly one of the files."""

import glob
import json
import os
import re
import signal
import socket

from helpers import HEADER, poll, request

CONFIG = HEADER.replace("workers: {workers}", "workers: 2").replace(
    'access_log: {enabled: true, path: "-"}', 'access_log: {path: "{log}"%s}') + """
demo_origin: {listen: "127.0.0.1:{demo_port}"}
upstreams:
  demo: {backends: ["127.0.0.1:{demo_port}"]}
tenants:
  - name: t
    sites:
      - hosts: ["*"]
        routes: [{name: r, upstream: demo}]
"""


def ids_in(path):
    out = []
    with open(path) as f:
        for line in f:
            out.append(json.loads(line)["request_id"])
    return out


def send(gh, rid):
    assert request("GET", gh.url + "/", headers={"X-Request-Id": rid}).status_code == 200


def test_rotation_by_size_keeps_every_line(gatehouse, tmp_path):
    log = str(tmp_path / "access.log")
    gh = gatehouse(CONFIG % ", max_size: 4k, keep: 3", log=log)
    rids = ["rot%029d" % i for i in range(120)]  # ~400 bytes a line: about 10 lines a file
    for rid in rids:
        send(gh, rid)
    assert poll(lambda: os.path.exists(log + ".3"), timeout=5)
    assert not os.path.exists(log + ".4")  # keep: 3
    gh.stop()
    files = sorted(glob.glob(log + "*"))
    assert files == [log, log + ".1", log + ".2", log + ".3"], files
    kept = []
    for f in files:
        ids = ids_in(f)
        kept += ids
        # rotated after the writer's round (20 ms of lines) that passed the limit
        assert os.path.getsize(f) < 4096 + 16384, (f, os.path.getsize(f))
    # the kept files hold the newest requests, each once, nothing torn
    assert len(kept) == len(set(kept))
    assert set(kept) <= set(rids) and rids[-1] in kept
    # path.1 is newer than path.2 (compared on average: two workers may swap neighbours)
    def mean_index(f):
        ids = ids_in(f)
        return sum(rids.index(i) for i in ids) / len(ids)
    assert mean_index(log + ".1") > mean_index(log + ".2") > mean_index(log + ".3")


def test_sigusr1_reopens_after_an_outside_move(gatehouse, tmp_path):
    log = str(tmp_path / "access.log")
    gh = gatehouse(CONFIG % "", log=log)
    for i in range(20):
        send(gh, "before%026d" % i)
    assert poll(lambda: os.path.exists(log) and len(ids_in(log)) == 20, timeout=5)
    os.rename(log, log + ".old")  # what logrotate does
    gh.proc.send_signal(signal.SIGUSR1)
    assert poll(lambda: os.path.exists(log), timeout=5), "the file was not reopened"
    for i in range(20):
        send(gh, "after%027d" % i)
    assert poll(lambda: len(ids_in(log)) == 20, timeout=5)
    assert all(i.startswith("after") for i in ids_in(log))
    assert sorted(ids_in(log + ".old")) == ["before%026d" % i for i in range(20)]  # two workers: two rings
    assert gh.alive()


SYSLOG_RE = re.compile(r"^<(\d+)>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\d+) - - (\{.*\})$")


def syslog_lines(sock, n, timeout=5):
    sock.settimeout(timeout)
    out = []
    while len(out) < n:
        out.append(sock.recv(65536).decode())
    return out


def test_access_log_to_syslog_over_udp_and_a_unix_socket(gatehouse, tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    gh = gatehouse(CONFIG.replace('access_log: {path: "{log}"%s}',
                                  'access_log: {syslog: {address: "127.0.0.1:%d", facility: local3, tag: edge-a}}'
                                  % udp.getsockname()[1]))
    for i in range(10):
        send(gh, "sys%029d" % i)
    got = syslog_lines(udp, 10)
    seen = []
    for m in got:
        mt = SYSLOG_RE.match(m)
        assert mt, m
        assert int(mt.group(1)) == 19 * 8 + 6  # local3, informational
        assert mt.group(4) == "edge-a" and int(mt.group(5)) == gh.pid
        rec = json.loads(mt.group(6))
        assert rec["status"] == 200 and rec["route"] == "r"
        seen.append(rec["request_id"])
    assert sorted(seen) == ["sys%029d" % i for i in range(10)]
    gh.stop()
    udp.close()
    # a local datagram socket, as /dev/log
    path = str(tmp_path / "log.sock")
    ux = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ux.bind(path)
    gh = gatehouse(CONFIG.replace('access_log: {path: "{log}"%s}', 'access_log: {syslog: {address: "%s"}}' % path))
    for i in range(5):
        send(gh, "ux%030d" % i)
    got = syslog_lines(ux, 5)
    assert all(SYSLOG_RE.match(m) and m.startswith("<134>1 ") for m in got), got  # local0 by default
    assert sorted(json.loads(SYSLOG_RE.match(m).group(6))["request_id"] for m in got) == ["ux%030d" % i for i in range(5)]
    ux.close()


def test_syslog_settings_errors(tmp_path):
    import subprocess
    from helpers import BIN
    for text, msg in [('{syslog: {address: "nohost"}}', "expected a socket path"),
                      ('{syslog: {facility: local9}}', "expected a syslog facility"),
                      ('{path: "/tmp/x", syslog: {}}', "give path (a file) or syslog, not both")]:
        f = tmp_path / "c.yaml"
        f.write_text('listeners: [{name: http, listen: "127.0.0.1:1"}]\naccess_log: %s\n' % text)
        p = subprocess.run([BIN, "validate", "-c", str(f)], capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and msg in p.stdout + p.stderr and "%s:2:" % f in p.stdout + p.stderr, p.stdout + p.stderr


def test_syslog_socket_missing_at_start(tmp_path):
    """A syslog address that nothing listens on: the start fails at once, naming the address and
    why, and nothing is left listening."""
    import subprocess
    from helpers import BIN
    missing = tmp_path / "no-such.sock"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    listen = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    f = tmp_path / "c.yaml"
    f.write_text('listeners: [{name: http, listen: "%s"}]\n'
                 'access_log: {syslog: {address: "%s"}}\n' % (listen, missing))
    p = subprocess.run([BIN, "run", "-c", str(f)], capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "access log %s: No such file or directory" % missing in out, out
    # a path that exists but is no socket: refused the same way
    plain = tmp_path / "plain"
    plain.write_text("")
    f.write_text('listeners: [{name: http, listen: "%s"}]\naccess_log: {syslog: {address: "%s"}}\n' % (listen, plain))
    p = subprocess.run([BIN, "run", "-c", str(f)], capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "access log %s: Connection refused" % plain in out, out
