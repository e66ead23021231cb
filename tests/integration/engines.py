"""Real NATS (JetStream) and ClickHouse servers for the event-stream tests, started on free
loopback ports in a temporary directory and stopped by PID. Debian's nats-server and
clickhouse-server (make deps installs them)."""

import os
import shutil
import signal
import subprocess
import time
import urllib.parse

import pytest

from helpers import free_port, port_accepts, session


class _Server:
    """A server process started by the test: stopped by PID."""
    proc = None
    stop_timeout = 5

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


class Nats(_Server):
    def __init__(self, workdir, host="127.0.0.1", port=None):
        exe = shutil.which("nats-server")
        if not exe:
            pytest.skip("nats-server is not installed (make deps installs it)")
        self.exe = exe
        self.dir = os.path.join(str(workdir), "nats")
        os.makedirs(self.dir, exist_ok=True)
        self.host = host
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.url = "nats://%s:%d" % (host, self.port)
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "log"), "ab")
        self.proc = subprocess.Popen([self.exe, "-js", "-a", self.host, "-p", str(self.port), "-sd", self.dir,
                                      "-m", str(self.monitor_port)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while not port_accepts(self.port, self.host):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.02)

    def stream_config(self, name):
        """A JetStream stream's configuration, from the monitoring endpoint (/jsz)."""
        with session() as s:
            j = s.get("http://%s:%d/jsz?streams=true&config=true" % (self.host, self.monitor_port), timeout=5).json()
        for acc in j.get("account_details", []):
            for st in acc.get("stream_detail", []):
                if st["name"] == name:
                    return st["config"]
        return None



CH_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/log</log><errorlog>{dir}/err</errorlog><console>0</console></logger>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <listen_host>{host}</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/uf/</user_files_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <uncompressed_cache_size>8589934</uncompressed_cache_size>
</yandex>
"""

CH_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"""


class ClickHouse(_Server):
    stop_timeout = 10

    def __init__(self, workdir, host="127.0.0.1"):
        exe = shutil.which("clickhouse-server") or (os.path.exists("/usr/sbin/clickhouse-server") and "/usr/sbin/clickhouse-server")
        if not exe:
            pytest.skip("clickhouse-server is not installed (make deps installs it)")
        self.exe = exe
        self.dir = os.path.join(str(workdir), "clickhouse")
        os.makedirs(self.dir, exist_ok=True)
        self.host = host
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.url = "http://%s:%d" % (host, self.http_port)
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CH_CONFIG.format(dir=self.dir, http=self.http_port, tcp=self.tcp_port, host=host))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(CH_USERS)
        self.proc = None
        self.start()

    def start(self):
        out = open(os.path.join(self.dir, "out"), "ab")
        self.proc = subprocess.Popen([self.exe, "--config-file=" + os.path.join(self.dir, "config.xml")],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.dir)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.query("SELECT 1").strip() == "1":
                    return
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("clickhouse-server did not start")
            time.sleep(0.1)

    def query(self, sql):
        with session() as s:
            r = s.post(self.url + "/", data=sql.encode(), timeout=10)
        if r.status_code != 200:
            raise RuntimeError("ClickHouse: %s: %s" % (r.status_code, r.text[:300]))
        return r.text

    def scalar(self, sql):
        return int(self.query(sql).strip() or 0)

