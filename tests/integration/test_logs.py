"""Access log files: rotation by size (access_log.max_size, keep) and reopen on SIGUSR1 after an
outside tool moved the file (issue 10). Every line is accounted for: each request's id (chosen
by the test through X-Request-Id) is in exactly one of the files."""

import glob
import json
import os
import signal

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
