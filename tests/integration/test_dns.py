"""DNS discovery: an upstream with `discovery: dns` follows a name's addresses as
they change, without a reload. The name server is a real dnsmasq on an ephemeral
loopback port, serving a hosts file the test rewrites (SIGHUP re-reads it)."""

import collections
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from helpers import HEADER, metric_value, poll, session
from origin import Origin

BASE = HEADER.replace("workers: {workers}", "workers: 2")
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


class Dnsmasq:
    def __init__(self, tmp_path):
        self.hosts = tmp_path / "hosts"
        self.hosts.write_text("")
        self.proc = None
        for _ in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
            s.close()
            self.proc = subprocess.Popen(
                [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                 "--pid-file=", "--bind-interfaces", "--listen-address=127.0.0.1", "--port=%d" % self.port,
                 "--addn-hosts=%s" % self.hosts, "--local=/test/", "--local-ttl=1", "--user=root", "--log-facility=-"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.2)
            if self.proc.poll() is None:
                return
        raise RuntimeError("dnsmasq did not start: %s" % self.proc.stderr.read())

    def set(self, entries):
        """entries: list of (address, name)."""
        self.hosts.write_text("".join("%s %s\n" % e for e in entries))
        self.proc.send_signal(signal.SIGHUP)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def dnsmasq(tmp_path):
    assert os.path.exists(DNSMASQ), "dnsmasq (Debian dnsmasq-base) is required"
    d = Dnsmasq(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def loopback_origins():
    """Three origins on 127.0.0.2..4, all on the same port (DNS gives addresses only)."""
    made = []
    for _ in range(20):
        first = Origin("a", host="127.0.0.2")
        try:
            made = [first, Origin("b", host="127.0.0.3", port=first.port),
                    Origin("c", host="127.0.0.4", port=first.port)]
            break
        except OSError:
            first.stop()
    assert made, "could not get one port on three loopback addresses"
    yield made
    for o in made:
        o.stop()


def config(dns_port, app_port, extra=""):
    return BASE + """
resolver: {nameservers: ["127.0.0.1:%d"], timeout: 500ms, min_ttl: 200ms, max_ttl: 1s}
upstreams:
  app: {discovery: dns, backends: ["svc.test:%d"]%s}
tenants:
  - name: acme
    sites: [{hosts: ["*"], routes: [{name: all, upstream: app}]}]
""" % (dns_port, app_port, extra)


def spread(gh, n=30):
    c = collections.Counter()
    with session() as s:
        for _ in range(n):
            r = s.get(gh.url + "/id", headers={"Host": "example.com"}, timeout=10)
            c[r.headers.get("X-Origin-Id") if r.status_code == 200 else r.status_code] += 1
    return c


def backends(gh):
    return sorted(b["address"] for b in gh.admin_get("/upstreams").json()["upstreams"][0]["backends"])


def test_dns_discovery_follows_changes_without_reload(gatehouse, dnsmasq, loopback_origins):
    port = loopback_origins[0].port
    dnsmasq.set([("127.0.0.2", "svc.test"), ("127.0.0.3", "svc.test")])
    gh = gatehouse(config(dnsmasq.port, port))
    assert backends(gh) == ["127.0.0.2:%d" % port, "127.0.0.3:%d" % port]
    b = gh.admin_get("/upstreams").json()["upstreams"][0]["backends"][0]
    assert b["dns_name"] == "svc.test:%d" % port, b
    c = spread(gh)
    assert set(c) == {"a", "b"}, c

    # scale up: a third address appears, followed within the TTL
    dnsmasq.set([("127.0.0.2", "svc.test"), ("127.0.0.3", "svc.test"), ("127.0.0.4", "svc.test")])
    assert poll(lambda: len(backends(gh)) == 3, timeout=8), backends(gh)
    assert poll(lambda: set(spread(gh)) == {"a", "b", "c"}, timeout=5)

    # scale down: traffic stops going to the removed address
    dnsmasq.set([("127.0.0.4", "svc.test")])
    assert poll(lambda: backends(gh) == ["127.0.0.4:%d" % port], timeout=8), backends(gh)
    c = spread(gh)
    assert c == {"c": 30}, c
    assert "upstream addresses updated from DNS" in gh.stderr_text()
    # the reload counter did not move: nothing was reloaded from the file
    m = gh.metrics()
    assert metric_value(m, "gatehouse_config_reloads_total", result="ok") == 0
    assert metric_value(m, "gatehouse_dns_changes_total") >= 2 and metric_value(m, "gatehouse_dns_names") == 1


def test_dns_name_without_address_then_appearing(gatehouse, dnsmasq, loopback_origins):
    port = loopback_origins[0].port
    gh = gatehouse(config(dnsmasq.port, port))
    assert backends(gh) == []
    r = gh.get("/id")
    assert r.status_code == 503, r.text  # no backend yet: a clear answer, not a hang
    assert "svc.test has no address now" in gh.stderr_text()
    dnsmasq.set([("127.0.0.3", "svc.test")])
    assert poll(lambda: backends(gh) == ["127.0.0.3:%d" % port], timeout=8), backends(gh)
    assert spread(gh, 10) == {"b": 10}


def test_dns_server_gone_keeps_last_known_addresses(gatehouse, dnsmasq, loopback_origins):
    port = loopback_origins[0].port
    dnsmasq.set([("127.0.0.2", "svc.test")])
    gh = gatehouse(config(dnsmasq.port, port))
    assert backends(gh) == ["127.0.0.2:%d" % port]
    dnsmasq.stop()
    time.sleep(2.5)  # several refreshes fail
    assert backends(gh) == ["127.0.0.2:%d" % port]
    assert spread(gh, 10) == {"a": 10}


def test_dns_config_errors(tmp_path):
    from conftest import BIN
    bad = tmp_path / "bad.yaml"
    bad.write_text('listeners: [{listen: "127.0.0.1:1"}]\n'
                   'resolver: {nameservers: ["ns.example:53", "127.0.0.1"], min_ttl: 10s, max_ttl: 1s}\n'
                   'upstreams:\n'
                   '  app: {discovery: consul, backends: ["svc.test:80"]}\n'
                   '  two: {backends: ["127.0.0.1:80"], dns_family: ipv4}\n'
                   '  three: {discovery: dns, dns_family: ipv5, backends: ["[::1:80"]}\n')
    p = subprocess.run([BIN, "validate", "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    e = p.stderr
    for want in ["bad.yaml:2:26: resolver.nameservers[0]: bad nameserver \"ns.example:53\": a nameserver must be an IP address",
                 "resolver.nameservers[1]: bad nameserver \"127.0.0.1\": missing port",
                 "resolver.max_ttl: max_ttl must not be below min_ttl",
                 "bad.yaml:4:20: upstreams.app.discovery: unknown discovery \"consul\" (static or dns)",
                 "upstreams.two.dns_family: dns_family needs discovery: dns",
                 "upstreams.three.dns_family: unknown dns_family \"ipv5\"",
                 "upstreams.three.backends[0]: bad address \"[::1:80\": missing ']'"]:
        assert want in e, (want, e)
