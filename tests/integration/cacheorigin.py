"""A small threaded HTTP/1.1 origin for the cache tests, controlled by each test.

Each path (the request target without its query) answers what the test set with
CacheOrigin.set(path, ...): a status, headers, a body, optionally a delay before the
response, a connection close instead of a response, or a function computing the
answer from the request. The origin counts requests per path and keeps every request
(method, target, headers, body) so that tests can assert what reached it: exactly one
request, If-None-Match sent, no HEAD forwarded ...

Every response carries X-Seq: N (N = the number of requests for that path so far,
this one included) unless the test sets X-Seq itself, and Date: now unless the test
sets Date (a header value of None suppresses a header). A body of None is
b"<path> #<N>", so a test can tell which origin response a client was served.

A Transfer-Encoding: chunked header set by the test makes the body go out in chunks
(no Content-Length). conditional=True makes the origin answer 304 (with the configured headers, without
Content-Length/Content-Type and body) when the request's If-None-Match names the
configured ETag (weak comparison) or its If-Modified-Since is not before the
configured Last-Modified.

Runs in the pytest process, loopback, ephemeral port; stop() closes everything.
"""

import email.utils
import socket
import threading
import time
import urllib.parse

from origin import close_sockets


def http_date(t=None):
    return email.utils.formatdate(time.time() if t is None else t, usegmt=True)


class Req:
    def __init__(self, method, target, version, headers, body, conn_id):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # list of (name, value) as received
        self.body = body
        self.conn_id = conn_id
        self.time = time.monotonic()
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = u.query

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return "<Req %s %s %r>" % (self.method, self.target, self.headers)


class Spec:
    def __init__(self, status=200, headers=None, body=None, delay=0.0, fn=None, close=False,
                 conditional=False):
        self.status = status
        self.headers = _norm_headers(headers)
        self.body = body
        self.delay = delay
        self.fn = fn
        self.close = close
        self.conditional = conditional


def _norm_headers(h):
    if h is None:
        return []
    if isinstance(h, dict):
        return list(h.items())
    return list(h)


def _hget(headers, name):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None


def _etag_list(v):
    return [t.strip().removeprefix("W/") for t in v.split(",") if t.strip()]


REASONS = {200: "OK", 203: "Non-Authoritative Information", 204: "No Content", 206: "Partial Content",
           226: "IM Used", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 410: "Gone", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class CacheOrigin:
    def __init__(self, ident="cache-origin"):
        self.id = ident
        self.lock = threading.RLock()
        self.specs = {}
        self.reqs = []
        self.counts = {}
        self.conns = 0
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(512)
        self.port = self.lsock.getsockname()[1]
        self.socks = set()
        self.t = threading.Thread(target=self._accept_loop, daemon=True)
        self.t.start()

    # -- control ---------------------------------------------------------------
    def set(self, path, status=200, headers=None, body=None, delay=0.0, fn=None, close=False,
            conditional=False):
        """What `path` answers from now on ("/p/*": every path starting with /p/ that has
        no spec of its own). fn(req, n) -> (status, headers, body) overrides
        status/headers/body (body None: the default body)."""
        if isinstance(body, str):
            body = body.encode()
        with self.lock:
            self.specs[path] = Spec(status, headers, body, delay, fn, close, conditional)

    def _spec_for(self, path):
        """The spec set for path, else the one of the longest "prefix*" key matching it."""
        spec = self.specs.get(path)
        if spec is not None:
            return spec
        best = None
        for k, v in self.specs.items():
            if k.endswith("*") and path.startswith(k[:-1]) and (best is None or len(k) > len(best[0])):
                best = (k, v)
        return best[1] if best else Spec()

    def count(self, path=None, method=None):
        """Requests received for path (without query; None: all), optionally of one method."""
        with self.lock:
            return sum(1 for r in self.reqs
                       if (path is None or r.path == path) and (method is None or r.method == method))

    def requests(self, path=None):
        with self.lock:
            return [r for r in self.reqs if path is None or r.path == path]

    def last(self, path):
        rs = self.requests(path)
        return rs[-1] if rs else None

    def wait_count(self, path, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path) >= n:
                return True
            time.sleep(0.01)
        return self.count(path) >= n

    def stop(self):
        self.stopping.set()
        with self.lock:
            socks = list(self.socks)
        close_sockets(self.lsock, socks)

    # -- server ----------------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s, cid), daemon=True).start()

    def _serve(self, s, cid):
        s.settimeout(30)
        buf = [b""]

        def more():
            d = s.recv(262144)
            if not d:
                raise EOFError
            buf[0] += d

        def line():
            while True:
                i = buf[0].find(b"\r\n")
                if i >= 0:
                    ln = buf[0][:i]
                    buf[0] = buf[0][i + 2:]
                    return ln
                more()

        def exact(n):
            while len(buf[0]) < n:
                more()
            d = buf[0][:n]
            buf[0] = buf[0][n:]
            return d

        try:
            while not self.stopping.is_set():
                while True:
                    i = buf[0].find(b"\r\n\r\n")
                    if i >= 0:
                        break
                    more()
                head = buf[0][:i].decode("latin-1")
                buf[0] = buf[0][i + 4:]
                lines = head.split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = []
                for ln in lines[1:]:
                    n, _, v = ln.partition(":")
                    headers.append((n.strip(), v.strip()))
                te = (_hget(headers, "Transfer-Encoding") or "").lower()
                body = b""
                if "chunked" in te:
                    while True:
                        size = int(line().split(b";")[0].strip(), 16)
                        if size == 0:
                            while line():
                                pass
                            break
                        body += exact(size)
                        exact(2)
                else:
                    cl = _hget(headers, "Content-Length")
                    if cl:
                        body = exact(int(cl))
                req = Req(method, target, version, headers, body, cid)
                with self.lock:
                    self.reqs.append(req)
                    self.counts[req.path] = self.counts.get(req.path, 0) + 1
                    n = sum(1 for r in self.reqs if r.path == req.path)
                    spec = self._spec_for(req.path)
                if not self._respond(s, req, n, spec):
                    return
                conn_hdr = (req.header("Connection") or "").lower()
                if "close" in conn_hdr:
                    return
        except (EOFError, OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _respond(self, s, req, n, spec):
        if spec.delay:
            deadline = time.monotonic() + spec.delay
            while time.monotonic() < deadline and not self.stopping.is_set():
                time.sleep(0.01)
        if spec.close:
            return False
        status, headers, body = spec.status, list(spec.headers), spec.body
        if spec.fn is not None:
            out = spec.fn(req, n)
            status, headers, body = out[0], _norm_headers(out[1]), out[2]
            if isinstance(body, str):
                body = body.encode()
        if body is None:
            body = ("%s #%d" % (req.path, n)).encode()
        if spec.conditional and status == 200:
            etag = _hget(headers, "ETag")
            lm = _hget(headers, "Last-Modified")
            inm = req.header("If-None-Match")
            ims = req.header("If-Modified-Since")
            hit = False
            if inm is not None and etag is not None:
                hit = inm.strip() == "*" or etag.removeprefix("W/") in _etag_list(inm)
            elif ims is not None and lm is not None:
                try:
                    hit = (email.utils.parsedate_to_datetime(lm) <= email.utils.parsedate_to_datetime(ims))
                except (TypeError, ValueError):
                    hit = False
            if hit:
                status = 304
                headers = [(k, v) for k, v in headers
                           if k.lower() not in ("content-length", "content-type")]
        out = []
        names = {k.lower() for k, v in headers}
        if "date" not in names:
            out.append(("Date", http_date()))
        if "x-seq" not in names:
            out.append(("X-Seq", str(n)))
        out += [(k, v) for k, v in headers if v is not None]
        no_body = status in (204, 304) or 100 <= status < 200
        chunked = "chunked" in (_hget(out, "Transfer-Encoding") or "").lower()
        if not no_body and not chunked and "content-length" not in names:
            out.append(("Content-Length", str(len(body))))
        head = "HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Status"))
        head += "".join("%s: %s\r\n" % (k, v) for k, v in out) + "\r\n"
        data = head.encode("latin-1")
        if not no_body and req.method != "HEAD":
            if chunked:  # three chunks (a Transfer-Encoding: chunked header set by the test)
                step = max(1, (len(body) + 2) // 3)
                for i in range(0, len(body), step):
                    part = body[i:i + step]
                    data += b"%x\r\n" % len(part) + part + b"\r\n"
                data += b"0\r\n\r\n"
            else:
                data += body
        s.sendall(data)
        return True
