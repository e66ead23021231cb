"""A small threaded HTTP/1.1 test origin on raw sockets.

Runs inside the pytest process (one thread per connection) so that tests can read
its records directly: connections accepted, request heads seen, complete requests
with body length / sha256, and disconnects noticed while streaming.

Endpoints (by path; anything else answers like /echo):
  /echo...            200 JSON: id, method, target, path, query, version, headers
                      (list of [name, value] as received), body (text, if small),
                      body_len, body_sha256, chunked, trailers, conn, seq
  /size?n=N           N bytes ('x'), Content-Length framing (HEAD: CL, no body)
  /chunked?n=K&size=S&delay_ms=D&trailer=NAME:VALUE
                      K chunks of S bytes, D ms between chunks, optional trailer
  /slow?before_ms=N   sleep N ms before the response head, then echo
  /close              close the connection without any response
  /reset              RST the connection without any response
  /hang, .../hang     never respond (until the client goes away or stop())
  /status?code=C      respond with status C (204/304: no body; others short body);
                      extra: cl=N adds "Content-Length: N" to a 304
  /early              103 Early Hints, then 200
  /untilclose?n=N     N pattern bytes, no Content-Length, not chunked: ends by closing
  /bighdr?n=N         a response header N bytes long
  /hopresp            response carrying hop-by-hop headers that a proxy must drop
  /download?n=N[&chunked=1]  N bytes of pattern_block() repeated, generated on the fly
  /upload             reads the body without storing it; JSON {len, sha256}
  /slowdl?chunks=N&delay_ms=D&size=S  long slow chunked download; records the
                      disconnect (send failure) in .disconnects
  /ws                 101 Switching Protocols, then echoes raw bytes
  /id                 text body: the origin's id
  /health             status origin.health_status (default 200)
  /nf/...             404 (a path the origin does not have)
  /badresp?kind=K     a malformed or ambiguous response (K: garbage, cl_te, dup_cl,
                      bad_cl, bare_lf, no_status)
Any request may add close=1 (respond with Connection: close and close) or
idle_ms=N (close the connection if the next request does not start within N ms).
"""

import base64
import hashlib
import json
import ssl
import random
import socket
import struct
import threading
import time
import urllib.parse

BLOCK_SIZE = 1 << 20
_block = None


def pattern_block():
    """1 MiB of deterministic pseudo-random bytes; big bodies repeat it."""
    global _block
    if _block is None:
        _block = random.Random(1234).randbytes(BLOCK_SIZE)
    return _block


def pattern_sha256(n):
    """sha256 of the first n bytes of the repeated pattern."""
    return _pattern_digest(n)


_digest_cache = {}


def _pattern_digest(n):
    if n in _digest_cache:
        return _digest_cache[n]
    b = pattern_block()
    h = hashlib.sha256()
    left = n
    while left > 0:
        k = min(left, len(b))
        h.update(b if k == len(b) else b[:k])
        left -= k
    _digest_cache[n] = h.hexdigest()
    return _digest_cache[n]



def close_sockets(lsock, conns):
    """Stop a test server: close its listening socket, then shut and close every connection."""
    try:
        lsock.close()
    except OSError:
        pass
    for s in conns:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass

class BadRequest(Exception):
    pass


class _Conn:
    def __init__(self, origin, sock, cid):
        self.origin = origin
        self.sock = sock
        self.cid = cid
        self.buf = b""
        self.idle_timeout = None

    def recv_more(self):
        data = self.sock.recv(262144)
        if not data:
            raise EOFError
        self.buf += data

    def read_line(self, limit=65536):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = self.buf[:i]
                self.buf = self.buf[i + 2:]
                return line
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self.recv_more()

    def read_head(self):
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = self.buf[:i]
                self.buf = self.buf[i + 4:]
                return head
            if len(self.buf) > 1 << 20:
                raise BadRequest("head too large")
            self.recv_more()

    def read_exact_into(self, n, sink):
        """Read n body bytes, feeding them to sink(bytes)."""
        left = n
        if self.buf:
            take = self.buf[:left]
            self.buf = self.buf[len(take):]
            sink(take)
            left -= len(take)
        while left > 0:
            data = self.sock.recv(min(left, 1 << 20))
            if not data:
                raise EOFError
            sink(data)
            left -= len(data)

    def sendall(self, data):
        self.sock.sendall(data)


class Origin:
    def __init__(self, ident="origin", host="127.0.0.1", port=0, tls=None):
        """tls: an ssl.SSLContext (server side) to speak HTTPS; records its handshakes."""
        self.id = ident
        self.tls = tls
        self.host = host
        self.lock = threading.RLock()  # wait_for predicates call locked accessors
        self.stopping = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(1024)
        self.port = self.lsock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.conns = set()
        self.delay_ms = 0             # added before every response (a slow backend)
        self.health_status = 200      # what /health answers
        self.force_status = 0         # when set, every request (but /health) gets this status
        self.reset()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    # ---- records -----------------------------------------------------------
    def reset(self):
        with self.lock:
            self.accepts = 0          # TCP connections accepted
            self.closed = 0           # connections that ended
            self.heads = []           # every request head parsed: dicts
            self.requests = []        # complete requests (body fully read)
            self.disconnects = []     # (path, bytes_sent) noticed while streaming/hanging

    def paths_seen(self):
        with self.lock:
            return [h["path"] for h in self.heads]

    def wait_for(self, pred, timeout=5.0, interval=0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(interval)
        with self.lock:
            return pred(self)

    # ---- server ------------------------------------------------------------
    def stop(self):
        self.stopping.set()
        with self.lock:
            conns = list(self.conns)
        close_sockets(self.lsock, conns)
        self.thread.join(timeout=5)

    def _accept_loop(self):
        self.lsock.settimeout(0.2)
        cid = 0
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            cid += 1
            with self.lock:
                self.accepts += 1
                self.conns.add(s)
            t = threading.Thread(target=self._serve, args=(s, cid), daemon=True)
            t.start()

    def _serve(self, sock, cid):
        sock.settimeout(60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            raw = sock
            try:
                sock = self.tls.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                with self.lock:
                    self.closed += 1
                    self.conns.discard(raw)
                raw.close()
                return
            with self.lock:
                self.conns.discard(raw)
                self.conns.add(sock)
        c = _Conn(self, sock, cid)
        seq = 0
        try:
            while not self.stopping.is_set():
                try:
                    keep = self._one(c, seq)
                except (EOFError, ConnectionError, socket.timeout, OSError, BadRequest):
                    break
                seq += 1
                if not keep:
                    break
        finally:
            with self.lock:
                self.closed += 1
                self.conns.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _one(self, c, seq):
        if c.idle_timeout:
            c.sock.settimeout(c.idle_timeout)
        head = c.read_head()
        c.sock.settimeout(60)
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ", 2)
        except ValueError:
            raise BadRequest("bad request line")
        headers = []
        for ln in lines[1:]:
            name, _, value = ln.decode("latin-1").partition(":")
            headers.append([name, value.strip(" \t")])
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000.0)
        u = urllib.parse.urlsplit(target)
        path = u.path or target
        q = dict(urllib.parse.parse_qsl(u.query))
        hmap = {}
        for n, v in headers:
            hmap.setdefault(n.lower(), []).append(v)
        rec = {
            "id": self.id, "method": method, "target": target, "path": path,
            "query": u.query, "version": version, "headers": headers,
            "conn": c.cid, "seq": seq, "time": time.monotonic(),
        }
        with self.lock:
            self.heads.append(rec)

        # 100-continue: answer like a real server before reading the body
        if any(v.lower() == "100-continue" for v in hmap.get("expect", [])):
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        if path == "/close":
            return False
        if path == "/reset":
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False

        # body
        h = hashlib.sha256()
        body_parts = []
        total = [0]
        keep_small = path != "/upload"

        def sink(data):
            total[0] += len(data)
            h.update(data)
            if keep_small and total[0] <= (1 << 20):
                body_parts.append(data)

        te = ",".join(hmap.get("transfer-encoding", [])).lower()
        chunked = "chunked" in te
        trailers = []
        if chunked:
            while True:
                line = c.read_line()
                size_s = line.split(b";", 1)[0].strip()
                size = int(size_s, 16)
                if size == 0:
                    while True:
                        tl = c.read_line()
                        if not tl:
                            break
                        n, _, v = tl.decode("latin-1").partition(":")
                        trailers.append([n, v.strip()])
                    break
                c.read_exact_into(size, sink)
                if c.read_line() != b"":
                    raise BadRequest("bad chunk end")
        elif "content-length" in hmap:
            c.read_exact_into(int(hmap["content-length"][0]), sink)

        body = b"".join(body_parts) if total[0] <= (1 << 20) else None
        rec.update({
            "body_len": total[0], "body_sha256": h.hexdigest(), "chunked": chunked,
            "trailers": trailers,
            "body": body.decode("latin-1") if body is not None else None,
        })
        with self.lock:
            self.requests.append(rec)

        is_head = method == "HEAD"
        client_close = any("close" in v.lower() for v in hmap.get("connection", []))
        client_close = client_close or q.get("close") == "1"
        if "idle_ms" in q:
            c.idle_timeout = int(q["idle_ms"]) / 1000.0
        conn_hdr = b"Connection: close\r\n" if client_close else b""
        base = b"X-Origin-Id: " + self.id.encode() + b"\r\n" + conn_hdr

        def simple(status, body, ctype=b"text/plain", extra=b""):
            hdr = (b"HTTP/1.1 " + status + b"\r\n" + base + b"Content-Type: " + ctype +
                   b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n")
            c.sendall(hdr if is_head else hdr + body)
            return not client_close

        if self.force_status and path != "/health":  # a failing backend
            return simple(b"%d X" % self.force_status, b"forced %d from %s\n" % (self.force_status, self.id.encode()))
        if path == "/id":
            return simple(b"200 OK", self.id.encode())
        if path == "/health":  # answers with self.health_status: a backend failing its checks
            st = self.health_status
            return simple(b"%d %s" % (st, b"OK" if st < 400 else b"Unhealthy"), b"health\n")
        if path.startswith("/nf/"):  # a path the origin does not have (shadowed rules apply on it)
            return simple(b"404 Not Found", b"origin: not found\n")
        if path == "/size":
            n = int(q.get("n", "0"))
            return simple(b"200 OK", b"x" * n)
        if path == "/status":
            code = int(q.get("code", "200"))
            if code in (204, 304):
                extra = b""
                if code == 304:
                    extra = b"ETag: \"v1\"\r\n"
                    if "cl" in q:
                        extra += b"Content-Length: " + q["cl"].encode() + b"\r\n"
                c.sendall(b"HTTP/1.1 %d X\r\n" % code + base + extra + b"\r\n")
                return not client_close
            return simple(b"%d X" % code, b"status %d\n" % code)
        if path == "/badresp":
            kind = q.get("kind", "garbage")
            c.sendall({
                "garbage": b"this is not http\r\n\r\n",
                "no_status": b"HTTP/1.1 \r\nContent-Length: 0\r\n\r\n",
                "cl_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "dup_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
                "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
            }[kind])
            return False
        if path == "/early":
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            return simple(b"200 OK", b"after early hints\n")
        if path == "/untilclose":
            n = int(q.get("n", "1000"))
            c.sendall(b"HTTP/1.1 200 OK\r\n" + base + b"Content-Type: application/octet-stream\r\n"
                      b"Connection: close\r\n\r\n")
            blk = pattern_block()
            left = n
            while left > 0:
                k = min(left, len(blk))
                c.sendall(blk[:k])
                left -= k
            return False
        if path == "/bighdr":
            n = int(q.get("n", "8000"))
            return simple(b"200 OK", b"big header\n", extra=b"X-Big: " + b"h" * n + b"\r\n")
        if path == "/hopresp":
            body = b"hop\n"
            c.sendall(b"HTTP/1.1 200 OK\r\n" + base +
                      b"Connection: X-Hop-Resp, Keep-Alive\r\n"
                      b"X-Hop-Resp: secret\r\n"
                      b"Keep-Alive: timeout=5, max=100\r\n"
                      b"Proxy-Connection: keep-alive\r\n"
                      b"Upgrade: foo/1\r\n"
                      b"X-Keep: yes\r\n"
                      b"Content-Length: 4\r\n\r\n" + (b"" if is_head else body))
            return not client_close
        if path == "/chunked":
            n = int(q.get("n", "3"))
            size = int(q.get("size", "16"))
            delay = int(q.get("delay_ms", "0")) / 1000.0
            trailer = q.get("trailer")
            c.sendall(b"HTTP/1.1 200 OK\r\n" + base + b"Content-Type: text/plain\r\n" +
                      (b"Trailer: " + trailer.split(":")[0].encode() + b"\r\n" if trailer else b"") +
                      b"Transfer-Encoding: chunked\r\n\r\n")
            if is_head:
                return not client_close
            for i in range(n):
                if i and delay:
                    time.sleep(delay)
                data = (b"%d" % i) * size
                data = data[:size]
                c.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            if delay:
                time.sleep(delay)
            end = b"0\r\n"
            if trailer:
                end += trailer.encode() + b"\r\n"
            c.sendall(end + b"\r\n")
            return not client_close
        if path == "/slow":
            time.sleep(int(q.get("before_ms", "1000")) / 1000.0)
            # fall through to echo
        if path == "/hang" or path.endswith("/hang"):
            # never answer; notice the peer going away
            c.sock.settimeout(0.1)
            deadline = time.monotonic() + 120
            while not self.stopping.is_set() and time.monotonic() < deadline:
                try:
                    d = c.sock.recv(4096)
                    if not d:
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            with self.lock:
                self.disconnects.append(("/hang", 0))
            return False
        if path == "/download":
            n = int(q.get("n", "0"))
            blk = pattern_block()
            if q.get("chunked") == "1":
                c.sendall(b"HTTP/1.1 200 OK\r\n" + base +
                          b"Content-Type: application/octet-stream\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\n" + base +
                          b"Content-Type: application/octet-stream\r\nContent-Length: " +
                          str(n).encode() + b"\r\n\r\n")
            if is_head:
                return not client_close
            left = n
            mv = memoryview(blk)
            try:
                while left > 0:
                    k = min(left, len(blk))
                    if q.get("chunked") == "1":
                        c.sendall(b"%x\r\n" % k)
                        c.sendall(mv[:k])
                        c.sendall(b"\r\n")
                    else:
                        c.sendall(mv[:k])
                    left -= k
            except OSError:
                with self.lock:
                    self.disconnects.append(("/download", n - left))
                return False
            if q.get("chunked") == "1":
                c.sendall(b"0\r\n\r\n")
            return not client_close
        if path == "/upload":
            return simple(b"200 OK", json.dumps({"len": total[0], "sha256": h.hexdigest(),
                                                  "chunked": chunked}).encode(),
                          b"application/json")
        if path == "/slowdl":
            chunks = int(q.get("chunks", "300"))
            delay = int(q.get("delay_ms", "100")) / 1000.0
            size = int(q.get("size", "1024"))
            c.sendall(b"HTTP/1.1 200 OK\r\n" + base + b"Content-Type: application/octet-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            sent = 0
            try:
                for i in range(chunks):
                    if self.stopping.is_set():
                        return False
                    c.sendall(b"%x\r\n" % size + b"s" * size + b"\r\n")
                    sent += size
                    time.sleep(delay)
                c.sendall(b"0\r\n\r\n")
            except OSError:
                with self.lock:
                    self.disconnects.append(("/slowdl", sent))
                return False
            return not client_close
        if path == "/ws":
            key = hmap.get("sec-websocket-key", [""])[0]
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            if c.buf:
                c.sendall(c.buf)
                c.buf = b""
            while not self.stopping.is_set():
                try:
                    d = c.sock.recv(65536)
                except OSError:
                    break
                if not d:
                    break
                c.sendall(d)
            with self.lock:
                self.disconnects.append(("/ws", 0))
            return False

        # echo (default)
        doc = dict(rec)
        doc.pop("time", None)
        out = json.dumps(doc).encode()
        return simple(b"200 OK", out, b"application/json")


def header_values(doc, name):
    """All values of header `name` (case-insensitive) in an echo document."""
    return [v for n, v in doc["headers"] if n.lower() == name.lower()]


def header_names(doc):
    return [n.lower() for n, _ in doc["headers"]]
