"""Raw-socket HTTP/1.1 client helpers for framing, pipelining and smuggling tests.

Every socket has a timeout; nothing here can block forever.
"""

import json
import socket
import time


class Response:
    def __init__(self, version, status, reason, headers, body, trailers, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.trailers = trailers
        self.raw_head = raw_head

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%r>" % (self.status, self.reason, self.headers, self.body[:200])


class Closed(Exception):
    """The peer closed (or reset) the connection before a complete response."""


class RawConn:
    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _more(self):
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            d = b""
        if not d:
            raise Closed("connection closed; buffered %r" % self.buf[:300])
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = self.buf[:i]
                self.buf = self.buf[i + 2:]
                return ln
            self._more()

    def _exact(self, n):
        while len(self.buf) < n:
            self._more()
        d = self.buf[:n]
        self.buf = self.buf[n:]
        return d

    def read_head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = self.buf[:i]
                self.buf = self.buf[i + 4:]
                return head
            self._more()

    def read_response(self, method="GET", allow_interim=False):
        """Read one response. 1xx interim responses are skipped unless allow_interim
        (101 is always returned)."""
        while True:
            head = self.read_head()
            lines = head.split(b"\r\n")
            parts = lines[0].decode("latin-1").split(" ", 2)
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for ln in lines[1:]:
                n, _, v = ln.decode("latin-1").partition(":")
                headers.append((n, v.strip(" \t")))
            if 100 <= status < 200 and status != 101 and not allow_interim:
                continue
            break
        r = Response(version, status, reason, headers, b"", [], head)
        if status < 200 or status in (204, 304) or method == "HEAD":
            return r
        te = ",".join(r.header_all("transfer-encoding")).lower()
        if "chunked" in te:
            body = []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while True:
                        tl = self._line()
                        if not tl:
                            break
                        n, _, v = tl.decode("latin-1").partition(":")
                        r.trailers.append((n, v.strip()))
                    break
                body.append(self._exact(size))
                if self._line() != b"":
                    raise ValueError("bad chunk terminator")
            r.body = b"".join(body)
        elif r.header("content-length") is not None:
            r.body = self._exact(int(r.header("content-length")))
        else:
            # until close
            while True:
                try:
                    self._more()
                except Closed:
                    break
            r.body, self.buf = self.buf, b""
        return r

    def wait_closed(self, timeout=5.0):
        """True if the peer closes (EOF or RST) within timeout; any bytes received
        meanwhile are appended to self.buf."""
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except (ConnectionResetError, BrokenPipeError):
                    return True
                if not d:
                    return True
                self.buf += d
        finally:
            self.sock.settimeout(old)


def request_bytes(method="GET", target="/", host="example.com", headers=(), body=b"",
                  version="HTTP/1.1"):
    h = "%s %s %s\r\n" % (method, target, version)
    if host is not None:
        h += "Host: %s\r\n" % host
    for n, v in headers:
        h += "%s: %s\r\n" % (n, v)
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        h += "Content-Length: %d\r\n" % len(body)
    return h.encode("latin-1") + b"\r\n" + body


def one(port, data, method="GET", timeout=10.0, source=None):
    """Send data on a fresh connection, read one response."""
    with RawConn(port, timeout=timeout, source=source) as c:
        c.send(data)
        return c.read_response(method=method)


def try_response(conn, method="GET"):
    """A response, or None when the connection closed first."""
    try:
        return conn.read_response(method=method)
    except Closed:
        return None
