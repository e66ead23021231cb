"""Fixtures for the gatehouse integration suite: the real binary, real origins.

gatehouse(config_text, **values) writes config_text to a file, with {name}
placeholders filled from values and from ports allocated here (proxy_port,
admin_port, demo_port), plus pid_file and tmp; starts `gatehouse run -c FILE`
with stdout/stderr captured to files; waits until the listeners accept; and
returns a Gatehouse handle. Every process is stopped by pid in the finalizer.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from origin import Origin
import helpers
from helpers import BIN, fill, free_port, port_accepts


class Gatehouse:
    def __init__(self, workdir, config_text, values, wait_ports, extra_args=(), expect_fail=False,
                 argv=None):
        self.dir = workdir
        self.values = values
        self.config_path = os.path.join(workdir, "gatehouse.yaml")
        self.stdout_path = os.path.join(workdir, "stdout.log")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        if argv is None:
            self.write_config(config_text)
            argv = ["run", "-c", self.config_path] + list(extra_args)
        self.port = values.get("proxy_port")
        self.admin_port = values.get("admin_port")
        self.url = "http://127.0.0.1:%d" % self.port if self.port else None
        self.admin_url = "http://127.0.0.1:%d" % self.admin_port if self.admin_port else None
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([BIN] + list(argv),
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     cwd=workdir)
        self.pid = self.proc.pid
        if expect_fail:
            return
        deadline = time.monotonic() + 15
        for p in wait_ports:
            while not port_accepts(p):
                if self.proc.poll() is not None:
                    raise RuntimeError("gatehouse exited with %s before listening on %d; stderr:\n%s"
                                       % (self.proc.returncode, p, self.stderr_text()))
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("gatehouse not listening on %d after 15 s; stderr:\n%s"
                                       % (p, self.stderr_text()))
                time.sleep(0.02)

    # -- config --------------------------------------------------------------
    def write_config(self, text, **more):
        vals = dict(self.values)
        vals.update(more)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(fill(text, vals))
        os.replace(tmp, self.config_path)

    def reload(self):
        os.kill(self.pid, signal.SIGHUP)

    def get(self, path, host="example.com", headers=None, **kw):
        h = {"Host": host}
        h.update(headers or {})
        return helpers.request("GET", self.url + path, headers=h, **kw)

    def request(self, method, path, host="example.com", headers=None, **kw):
        h = {"Host": host}
        h.update(headers or {})
        return helpers.request(method, self.url + path, headers=h, **kw)

    def admin_get(self, path, **kw):
        return helpers.request("GET", self.admin_url + path, **kw)

    def metrics(self):
        r = self.admin_get("/metrics")
        assert r.status_code == 200, r.text
        return helpers.parse_metrics(r.text)

    # -- output --------------------------------------------------------------
    def stdout_text(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_text(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self, path=None):
        """Parsed JSON access-log lines (stdout unless path). Lines that are not
        JSON objects are skipped; a partial last line is ignored."""
        text = open(path or self.stdout_path, "rb").read().decode("utf-8", "replace")
        out = []
        for ln in text.split("\n")[:-1]:  # the last piece is "" or a partial line
            ln = ln.strip()
            if not ln.startswith("{"):
                continue
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
        return out

    # -- process -------------------------------------------------------------
    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout):
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=10):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_files()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self):
        for f in (self._out, self._err):
            try:
                f.close()
            except Exception:
                pass


class GatehouseFactory:
    def __init__(self, base_dir):
        self.base_dir = base_dir
        self.instances = []

    def __call__(self, config_text, wait_admin=True, extra_args=(), expect_fail=False, **values):
        n = len(self.instances)
        workdir = os.path.join(str(self.base_dir), "gh%d" % n)
        os.makedirs(workdir, exist_ok=True)
        vals = {
            "proxy_port": free_port(),
            "admin_port": free_port(),
            "demo_port": free_port(),
            "pid_file": os.path.join(workdir, "gatehouse.pid"),
            "tmp": workdir,
            "workers": 2,
        }
        vals.update(values)
        filled = fill(config_text, vals)
        wait = []
        if "{proxy_port}" in config_text:
            wait.append(vals["proxy_port"])
        if wait_admin and "{admin_port}" in config_text:
            wait.append(vals["admin_port"])
        if "{demo_port}" in config_text:
            wait.append(vals["demo_port"])
        if not filled:
            raise ValueError("empty config")
        g = Gatehouse(workdir, config_text, vals, wait, extra_args, expect_fail)
        self.instances.append(g)
        return g

    def spawn(self, argv, port, **values):
        """Run `gatehouse ARGV...` (e.g. quick mode) and wait for port to accept."""
        workdir = os.path.join(str(self.base_dir), "gh%d" % len(self.instances))
        os.makedirs(workdir, exist_ok=True)
        vals = {"proxy_port": port}
        vals.update(values)
        g = Gatehouse(workdir, None, vals, [port], argv=argv)
        self.instances.append(g)
        return g

    def stop_all(self):
        for g in self.instances:
            try:
                g.stop(timeout=10)
            except Exception:
                g.kill()


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not (os.path.isfile(BIN) and os.access(BIN, os.X_OK)):
        pytest.exit("gatehouse binary not found at %s (build it with make, or set GATEHOUSE_BIN)"
                    % BIN, returncode=1)


@pytest.fixture
def gatehouse(tmp_path):
    f = GatehouseFactory(tmp_path)
    yield f
    f.stop_all()


@pytest.fixture(scope="module")
def gatehouse_module(tmp_path_factory):
    f = GatehouseFactory(tmp_path_factory.mktemp("ghmod"))
    yield f
    f.stop_all()


class OriginFactory:
    def __init__(self):
        self.origins = []

    def __call__(self, ident=None):
        o = Origin(ident or "origin%d" % len(self.origins))
        self.origins.append(o)
        return o

    def stop_all(self):
        for o in self.origins:
            o.stop()


@pytest.fixture
def origin_factory():
    f = OriginFactory()
    yield f
    f.stop_all()


@pytest.fixture
def origin(origin_factory):
    return origin_factory("o1")


@pytest.fixture(scope="module")
def origin_module():
    f = OriginFactory()
    yield f("m1")
    f.stop_all()


