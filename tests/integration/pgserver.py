"""A throwaway PostgreSQL 15 server for the control-plane tests.

PgServer() runs initdb (trust authentication) in a fresh temporary directory, listens on
127.0.0.1 at an ephemeral port (helpers.free_port) with its unix socket inside that
directory, fsync on, and starts it with `pg_ctl start -w`. When we run as root (PostgreSQL
refuses to), the server commands run through `runuser -u postgres --` (Debian's postgresql
package creates that user; "nobody" otherwise) and the directory is chowned to that user.
Client commands (psql, createdb) run as ourselves over TCP with the superuser "gatehouse".

Fixture: pg_server (module scope) yields a started PgServer, or skips the module when
PostgreSQL 15's initdb is not installed. server.new_database() gives a fresh database and its
URL "postgresql://gatehouse@127.0.0.1:PORT/DB"; server.sql(db, text) runs SQL with psql;
server.restart() cuts every connection (pg_ctl restart -m fast).
stop() is `pg_ctl stop -m fast` (then SIGKILL of the postmaster by its pid if that fails)
and removes the directory.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from helpers import free_port

PG_BIN = os.environ.get("GATEHOUSE_PG_BIN", "/usr/lib/postgresql/15/bin")
INITDB = os.path.join(PG_BIN, "initdb")
PG_CTL = os.path.join(PG_BIN, "pg_ctl")
PSQL = os.path.join(PG_BIN, "psql")
SUPERUSER = "gatehouse"


def available():
    return os.access(INITDB, os.X_OK) and os.access(PG_CTL, os.X_OK)


def _run_as_user():
    """The unprivileged account to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError("running as root and no postgres/nobody account to run PostgreSQL as")


class PgServer:
    def __init__(self):
        self.user = _run_as_user()
        self.dir = tempfile.mkdtemp(prefix="gh-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.started = False
        self._ndb = 0
        os.mkdir(self.sock)
        if self.user:
            for p in (self.dir, self.sock):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        try:
            self._server_cmd([INITDB, "-D", self.data, "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                              "--locale=C", "--no-sync"], timeout=60)
            with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
                f.write("\n# gatehouse tests\n"
                        "listen_addresses = '127.0.0.1'\n"
                        "port = %d\n"
                        "unix_socket_directories = '%s'\n"
                        "fsync = on\n"
                        "max_connections = 40\n"
                        "shared_buffers = 16MB\n"
                        "logging_collector = off\n" % (self.port, self.sock))
            self._server_cmd([PG_CTL, "start", "-w", "-t", "30", "-D", self.data, "-l", self.log], timeout=40)
            self.started = True
        except Exception:
            self.stop()
            raise

    def _server_cmd(self, argv, timeout):
        if self.user:
            argv = ["runuser", "-u", self.user.pw_name, "--"] + argv
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr,
                                                              self.log_text()))
        return p

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return "\n--- server log ---\n" + f.read()[-4000:]
        except OSError:
            return ""

    def url(self, db):
        return "postgresql://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, db)

    def sql(self, db, text, timeout=20):
        """Run SQL (psql, stop on the first error); the unaligned tuples-only output."""
        p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", SUPERUSER, "-d", db, "-c", text],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("psql %r: %s" % (text, p.stderr))
        return p.stdout

    def new_database(self, name=None):
        """Create an empty database; its URL."""
        if name is None:
            self._ndb += 1
            name = "gh%d" % self._ndb
        self.sql("postgres", "CREATE DATABASE %s" % name)
        return self.url(name)

    def restart(self):
        """pg_ctl restart -m fast: every client connection is cut; same port, same data."""
        self._server_cmd([PG_CTL, "restart", "-m", "fast", "-w", "-t", "30", "-D", self.data, "-l", self.log],
                         timeout=40)

    def crash(self):
        """kill -9 the postmaster (its backends go with it); the data stays for start()."""
        pid = self._postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            for _ in range(200):  # bounded: 10 s
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)

    def start(self):
        """Start again after crash() (recovery included)."""
        try:
            os.unlink(os.path.join(self.data, "postmaster.pid"))
        except OSError:
            pass
        self._server_cmd([PG_CTL, "start", "-w", "-t", "30", "-D", self.data, "-l", self.log], timeout=40)

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        if os.path.isdir(self.data) and os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self._server_cmd([PG_CTL, "stop", "-m", "fast", "-w", "-t", "20", "-D", self.data], timeout=30)
            except Exception:
                pid = self._postmaster_pid()
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    for _ in range(100):  # bounded: 5 s
                        try:
                            os.kill(pid, 0)
                        except ProcessLookupError:
                            break
                        time.sleep(0.05)
        self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_server():
    if not available():
        pytest.skip("PostgreSQL 15 is not installed (no %s): apt-get install postgresql-15" % INITDB)
    s = PgServer()
    try:
        yield s
    finally:
        s.stop()
