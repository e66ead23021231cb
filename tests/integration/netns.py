"""Network namespaces for the multi-node integration tests (test_multinode.py).

Topology() builds, with iproute2's `ip netns`, a private layer-2 network that never touches the
host's interfaces: a "switch" namespace holding a bridge, and one namespace per role, each joined
to the bridge by a veth pair whose bridge end lives in the switch namespace (so nothing is made
in the root namespace) and whose other end is "eth0" in the role's namespace:

    <tag>-sw   bridge br0 (no address)
    <tag>-svc  10.X.0.2    PostgreSQL, Redis, NATS, ClickHouse, the test origin
    <tag>-n1   10.X.0.11   gatehouse node 1 (n2: .12, n3: .13)
    <tag>-cl   10.X.0.20   the client

<tag> is "gh" + 4 random hex digits and X is random per run, so two runs never clash; names stay
well under IFNAMSIZ (15). Every namespace has lo up.

Processes: spawn(role, argv) runs `ip netns exec NS argv...` (ip execs the command: the Popen pid
is the command's pid) in a session of its own, output to a log file; Proc.kill()/stop() signal
that process group by its id. Python code runs in a namespace through executor(role): a thread
pool whose threads have entered the namespace with setns(2) (a network namespace is per thread,
so the test's main thread never moves); call(role, fn, ...) runs one callable there and returns
its result; thread(role, fn) starts a thread there. Sockets belong to the namespace of the thread
that made them, so a server object created by call("svc", ...) listens on the svc network.

close() (also on failure: the module fixture calls it in a finally) kills every process it
started, then any process still left in its namespaces (`ip netns pids`, by pid: forks of what it
started), shuts the pools down and deletes the namespaces (their veths go with them, the bridge
with the switch namespace).

Who calls it: test_multinode.py. What it calls: ip(8), setns(2) through ctypes.
"""

import concurrent.futures
import ctypes
import os
import random
import shutil
import signal
import subprocess
import threading
import time

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def available():
    """None when namespaces can be built here, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add, veth pairs)"
    if not shutil.which("ip"):
        return "iproute2's ip is not installed"
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        return "ip netns is unavailable: " + (p.stderr or p.stdout).strip()
    if not hasattr(_libc, "setns"):
        return "libc has no setns(2)"
    return None


def enter(ns):
    """Move the calling thread (never the main thread) into network namespace ns."""
    if threading.current_thread() is threading.main_thread():
        raise RuntimeError("netns.enter on the main thread")
    fd = os.open("/run/netns/" + ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (ns, os.strerror(e)))
    finally:
        os.close(fd)


def _ip(*args, check=True):
    p = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), p.stderr.strip()))
    return p


class Proc:
    """A process started in a namespace, in its own session (process group id == pid)."""

    def __init__(self, name, ns, argv, log, popen):
        self.name = name
        self.ns = ns
        self.argv = argv
        self.log = log
        self.popen = popen
        self.pid = popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        """Signal the process group (the command and anything it forked)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        """kill -9, and reap."""
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, timeout=10):
        """SIGTERM, wait up to timeout, then SIGKILL. The exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def log_text(self, tail=4000):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""


class Topology:
    ROLES = ("svc", "n1", "n2", "n3", "cl")
    HOST = {"svc": 2, "n1": 11, "n2": 12, "n3": 13, "cl": 20}

    def __init__(self, workdir, roles=ROLES):
        self.dir = str(workdir)
        self.tag = "gh%04x" % random.randrange(0x10000)
        self.x = random.randrange(64, 250)
        self.roles = list(roles)
        self.procs = []
        self.pools = {}
        self.made = []            # namespaces created, in order
        self._lock = threading.Lock()
        try:
            self._build()
        except Exception:
            self.close()
            raise

    # ---- names and addresses -------------------------------------------------
    def ns(self, role):
        return "%s-%s" % (self.tag, role)

    def addr(self, role):
        return "10.%d.0.%d" % (self.x, self.HOST[role])

    def _build(self):
        sw = self.ns("sw")
        _ip("netns", "add", sw)
        self.made.append(sw)
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for role in self.roles:
            ns = self.ns(role)
            _ip("netns", "add", ns)
            self.made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            port = "p-" + role
            _ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", sw, "link", "set", port, "master", "br0")
            _ip("-n", sw, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", self.addr(role) + "/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    # ---- Python in a namespace -----------------------------------------------
    def executor(self, role, workers=8):
        """A thread pool whose threads live in role's namespace."""
        with self._lock:
            ex = self.pools.get(role)
            if ex is None:
                ex = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ns-" + role,
                                                           initializer=enter, initargs=(self.ns(role),))
                self.pools[role] = ex
            return ex

    def call(self, role, fn, *args, timeout=60, **kw):
        """Run fn(*args, **kw) on a thread in role's namespace; its result (or its exception)."""
        return self.executor(role).submit(fn, *args, **kw).result(timeout=timeout)

    def thread(self, role, fn, *args, **kw):
        """Start (and return) a daemon thread that enters role's namespace and runs fn."""
        ns = self.ns(role)

        def run():
            enter(ns)
            fn(*args, **kw)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    # ---- processes -------------------------------------------------------------
    def spawn(self, role, argv, name=None, user=None, cwd=None, env=None):
        """Start argv in role's namespace (as user, through setpriv, which execs: the pid stays
        the command's). Output goes to <dir>/<name>.log."""
        name = name or os.path.basename(argv[0])
        log = os.path.join(self.dir, "%s-%d.log" % (name, len(self.procs)))
        cmd = ["ip", "netns", "exec", self.ns(role)]
        if user:
            cmd += ["setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups"]
        cmd += list(argv)
        with open(log, "wb") as out:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     cwd=cwd or self.dir, env=env, start_new_session=True)
        p = Proc(name, self.ns(role), cmd, log, popen)
        self.procs.append(p)
        return p

    def run(self, role, argv, timeout=30, check=True, input=None):
        """Run a command to completion in role's namespace; the CompletedProcess (text)."""
        p = subprocess.run(["ip", "netns", "exec", self.ns(role)] + list(argv), capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError("in %s: %s -> %d\n%s%s" % (role, " ".join(argv), p.returncode, p.stdout, p.stderr))
        return p

    def accepts(self, role, host, port, timeout=0.5):
        """Whether a TCP connection to host:port succeeds from role's namespace."""
        import socket

        def probe():
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    return True
            except OSError:
                return False
        return self.call(role, probe)

    def wait_accepts(self, role, host, port, timeout=20, proc=None):
        deadline = time.monotonic() + timeout
        while not self.accepts(role, host, port):
            if proc is not None and not proc.alive():
                raise RuntimeError("%s exited (%s) before listening on %s:%d:\n%s"
                                   % (proc.name, proc.popen.returncode, host, port, proc.log_text()))
            if time.monotonic() > deadline:
                raise RuntimeError("nothing listening on %s:%d after %d s%s"
                                   % (host, port, timeout, (":\n" + proc.log_text()) if proc else ""))
            time.sleep(0.05)

    # ---- teardown ----------------------------------------------------------------
    def _ns_pids(self, ns):
        p = _ip("netns", "pids", ns, check=False)
        return [int(x) for x in p.stdout.split() if x.isdigit()]

    def close(self):
        for p in reversed(self.procs):
            try:
                p.kill()
            except Exception:
                pass
        self.procs = []
        for ns in self.made:
            for pid in self._ns_pids(ns):  # forks of what was started (daemonised children)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for ex in self.pools.values():
            ex.shutdown(wait=False, cancel_futures=True)
        self.pools = {}
        for ns in reversed(self.made):
            for _ in range(50):  # bounded: a namespace still held by a dying process
                if _ip("netns", "del", ns, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        self.made = []
