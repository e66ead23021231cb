"""A small HTTP/2 client on python-h2 for the integration suite, and a latency probe.

H2Client speaks HTTP/2 over a TLS socket (ALPN h2, which it checks) or over a
cleartext one (prior knowledge, as on an `h2c: true` listener). It sends requests
with bodies under the peer's flow control, reads responses, trailers, resets and
GOAWAYs, hands window back as it reads (acknowledge_received_data), and times
each stream. One thread per client; every socket operation has a deadline, so
nothing here blocks forever.

LatencyProbe runs sequential requests on its own connection in a thread and keeps
(time sent, latency, ok) samples, for "how does a legitimate client fare while
something else happens" measurements; percentile() reduces them.

Note on GOAWAY: python-h2 4.1 moves the whole connection to CLOSED when it
receives a GOAWAY and then refuses the frames of streams still in flight
(python-hyper/h2#1181), although RFC 9113 section 6.8 lets streams up to the last
stream id complete. _Connection keeps the connection open instead and only
reports the GOAWAY; H2Client refuses to open new streams after one.
"""

import hashlib
import json
import socket
import ssl
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes


def error_name(code):
    try:
        return ErrorCodes(code).name
    except ValueError:
        return "0x%x" % code


class _Connection(h2.connection.H2Connection):
    """H2Connection that lets in-flight streams finish after a GOAWAY (see the module doc)."""

    def _receive_goaway_frame(self, frame):
        ev = h2.events.ConnectionTerminated()
        try:
            ev.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            ev.error_code = frame.error_code
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        return [], [ev]


class H2Error(Exception):
    pass


class Stream:
    """One request/response exchange as the client saw it."""

    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = []        # [(name, value)] of the final response head, pseudo-headers included
        self.informational = []  # heads of 1xx responses
        self.body = bytearray()
        self.trailers = None     # [(name, value)] when the response ended with a trailer block
        self.ended = False       # END_STREAM received
        self.reset = None        # RST_STREAM error code (int) from the peer
        self.data_frames = 0
        self.t_start = time.monotonic()
        self.t_headers = None
        self.t_end = None

    @property
    def done(self):
        return self.ended or self.reset is not None

    @property
    def latency(self):
        return None if self.t_end is None else self.t_end - self.t_start

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return default

    def header_names(self):
        return [n for n, _ in self.headers]

    def json(self):
        return json.loads(bytes(self.body))

    def sha256(self):
        return hashlib.sha256(self.body).hexdigest()

    def __repr__(self):
        return "<Stream %d status=%s reset=%s ended=%s headers=%r body=%r trailers=%r>" % (
            self.id, self.status, None if self.reset is None else error_name(self.reset), self.ended,
            self.headers[:12], bytes(self.body[:200]), self.trailers)


class H2Client:
    """An HTTP/2 client connection.

    tls: an ssl.SSLContext (ALPN is set to h2 on it) or None for cleartext prior
    knowledge. validate=False lets requests carry what RFC 9113 forbids (connection
    headers...); validate_inbound=False accepts whatever the server sends so a test
    can inspect it. settings: local SETTINGS sent after the preface ({h2.settings.SettingCodes: value}).
    huffman=False sends header values as raw literals (bigger header blocks, e.g. to
    make one spill into CONTINUATION frames). connection_window: bytes added to the
    connection's receive window at the start.
    """

    def __init__(self, port, host="127.0.0.1", tls=None, server_name=None, authority="example.com",
                 timeout=10.0, validate=True, validate_inbound=True, settings=None, huffman=True,
                 connection_window=None):
        self.timeout = timeout
        self.authority = authority
        self.scheme = "https" if tls is not None else "http"
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alpn = None
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_name)
            except BaseException:
                sock.close()
                raise
            self.alpn = sock.selected_alpn_protocol()
            if self.alpn != "h2":
                sock.close()
                raise H2Error("ALPN selected %r, not h2" % (self.alpn,))
        self.sock = sock
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=validate,
                                        normalize_outbound_headers=validate,
                                        validate_inbound_headers=validate_inbound)
        self.conn = _Connection(config=cfg)
        if not huffman:
            enc = self.conn.encoder.encode
            self.conn.encoder.encode = lambda headers, huffman=True: enc(headers, huffman=False)
        self.streams = {}
        self.goaways = []          # [(error code, last stream id, debug data)] in arrival order
        self.closed = False        # the peer closed (or reset) the TCP connection
        self.t_closed = None
        self.protocol_error = None  # an h2 exception raised on what the peer sent
        self.remote_settings = {}
        self.ping_acks = 0
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self._flush()

    # ---- plumbing --------------------------------------------------------
    def _flush(self):
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                # the peer closed or reset: what it sent before (a GOAWAY, the end of a
                # response) may still wait in the receive queue
                self._drain_after_error()

    def _drain_after_error(self):
        self.sock.settimeout(0.0)
        events = []
        while True:
            try:
                data = self.sock.recv(262144)
            except (OSError, ssl.SSLError):  # would block, or the reset itself
                break
            if not data:
                break
            try:
                events += self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                self.protocol_error = e
                break
        self._mark_closed()
        for ev in events:
            self._handle(ev)

    def _mark_closed(self):
        if not self.closed:
            self.closed = True
            self.t_closed = time.monotonic()

    def pump(self, timeout):
        """Wait up to timeout for bytes, feed them to h2 and handle the events.
        False once the connection is closed."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        except (OSError, ssl.SSLError):
            self._mark_closed()
            return False
        if not data:
            self._mark_closed()
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            # what the peer sent is not valid HTTP/2: remember it, stop reading
            self.protocol_error = e
            self._flush()
            self._mark_closed()
            return False
        for ev in events:
            self._handle(ev)
        self._flush()
        return True

    def _handle(self, ev):
        now = time.monotonic()
        st = self.streams.get(getattr(ev, "stream_id", None))
        if st is None and isinstance(ev, (h2.events.ResponseReceived, h2.events.InformationalResponseReceived,
                                          h2.events.TrailersReceived, h2.events.StreamEnded)):
            return  # not a stream of ours (cannot happen with a sane peer)
        if isinstance(ev, h2.events.ResponseReceived):
            st.headers = list(ev.headers)
            st.status = int(dict(ev.headers)[":status"])
            st.t_headers = now
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            st.informational.append(list(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            if st is not None:
                st.body += ev.data
                st.data_frames += 1
            if ev.flow_controlled_length:
                # hand the window back as soon as we have read the bytes
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            st.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            st.ended = True
            st.t_end = now
        elif isinstance(ev, h2.events.StreamReset):
            if st is not None and not st.ended:
                st.reset = int(ev.error_code)
                st.t_end = now
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaways.append((int(ev.error_code), ev.last_stream_id, ev.additional_data))
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for code, ch in ev.changed_settings.items():
                self.remote_settings[int(code)] = ch.new_value
        elif isinstance(ev, h2.events.PingAckReceived):
            self.ping_acks += 1

    # ---- requests --------------------------------------------------------
    def request(self, method, path, headers=(), body=None, authority=None, content_length=True,
                end_stream=True):
        """Open a stream: send the head and (under flow control) the body. Returns the stream id.
        With end_stream=False and no body, the stream stays open for send_body()."""
        if self.goaways:
            raise H2Error("not opening a stream after GOAWAY %r" % (self.goaways,))
        if self.closed:
            raise H2Error("connection closed")
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", self.scheme),
                (":authority", authority or self.authority), (":path", path)]
        if body is not None and content_length:
            hdrs.append(("content-length", str(len(body))))
        hdrs += list(headers)
        st = Stream(sid)
        self.streams[sid] = st
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and body is None)
        self._flush()
        if body is not None:
            self.send_body(sid, body, end_stream=end_stream)
        return sid

    def send_body(self, sid, data, end_stream=True, timeout=None, until_blocked=False):
        """Send data on stream sid as fast as the peer's windows allow (reading WINDOW_UPDATEs
        while a window is shut); returns the bytes sent. A window shut for `timeout` raises
        H2Error, or with until_blocked=True ends the call (the stream stays open)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        st = self.streams[sid]
        mv = memoryview(data)
        off = 0
        pending = 0
        while off < len(mv):
            if st.done or self.closed:
                return off
            try:
                window = self.conn.local_flow_control_window(sid)
            except h2.exceptions.StreamClosedError:
                return off
            if window <= 0:
                self._flush()
                pending = 0
                if time.monotonic() > deadline:
                    if until_blocked:
                        return off
                    raise H2Error("stream %d: send window stayed shut (%d of %d bytes sent)"
                                  % (sid, off, len(mv)))
                self.pump(0.05)
                continue
            n = min(window, self.conn.max_outbound_frame_size, len(mv) - off)
            self.conn.send_data(sid, mv[off:off + n].tobytes())
            off += n
            deadline = time.monotonic() + (timeout or self.timeout)
            pending += n
            if pending >= 262144:
                self._flush()
                pending = 0
        if end_stream and not st.done:
            self.conn.end_stream(sid)
        self._flush()
        return off

    def response(self, sid, timeout=None):
        """Wait until stream sid ends or is reset; raise H2Error on timeout or a closed connection."""
        deadline = time.monotonic() + (timeout or self.timeout)
        st = self.streams[sid]
        while not st.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise H2Error("stream %d not done after %.1f s: %r" % (sid, timeout or self.timeout, st))
            if not self.pump(min(left, 0.5)):
                if st.done:
                    break
                raise H2Error("connection closed before stream %d was done: %r goaways=%r error=%r"
                              % (sid, st, self.goaways, self.protocol_error))
        return st

    def wait_all(self, sids, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        return [self.response(s, max(0.001, deadline - time.monotonic())) for s in sids]

    def get(self, path, timeout=None, **kw):
        return self.response(self.request("GET", path, **kw), timeout)

    def post(self, path, body, timeout=None, **kw):
        return self.response(self.request("POST", path, body=body, **kw), timeout)

    def reset(self, sid, code=ErrorCodes.CANCEL):
        self.conn.reset_stream(sid, code)
        self._flush()

    def ping(self, timeout=None):
        """Round trip of one PING; returns seconds."""
        want = self.ping_acks + 1
        t0 = time.monotonic()
        self.conn.ping(b"gh-ping!")
        self._flush()
        deadline = t0 + (timeout or self.timeout)
        while self.ping_acks < want:
            if time.monotonic() > deadline or not self.pump(0.2):
                raise H2Error("no PING ACK")
        return time.monotonic() - t0

    def wait_goaway(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.goaways and time.monotonic() < deadline:
            if not self.pump(0.1):
                break
        return self.goaways[-1] if self.goaways else None

    def wait_closed(self, timeout):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.pump(0.1)
        return self.closed

    def close(self):
        if not self.closed:
            try:
                self.conn.close_connection()
                self._flush()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        try:
            self.sock.close()
        except OSError:
            pass
        self._mark_closed()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def tls_context(cafile=None):
    """A client context that trusts cafile (or verifies nothing when None), ALPN h2."""
    if cafile:
        c = ssl.create_default_context(cafile=cafile)
        c.check_hostname = False
    else:
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_NONE
    c.set_alpn_protocols(["h2"])
    return c


# ---- latency -------------------------------------------------------------

def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    v = sorted(values)
    if not v:
        raise ValueError("no samples")
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


class LatencyProbe(threading.Thread):
    """Sequential GET path on one connection made by connect(), in a thread, until stop().
    samples: [(t_sent, latency_s, ok, detail)]; a failed request costs the connection
    (a new one is made) and is kept as a sample with ok False."""

    def __init__(self, connect, path="/echo", timeout=5.0):
        super().__init__(daemon=True)
        self.connect = connect
        self.path = path
        self.timeout = timeout
        self.samples = []
        self.lock = threading.Lock()
        self._stop_ev = threading.Event()

    def run(self):
        client = None
        while not self._stop_ev.is_set():
            t0 = time.monotonic()
            if client is not None and (client.goaways or client.closed):
                # the server retired the connection between two requests (e.g. nginx after
                # keepalive_requests): a real client reconnects, that is not a failure
                client.close()
                client = None
            try:
                if client is None:
                    client = self.connect()
                    t0 = time.monotonic()  # connection setup is not request latency
                st = client.get(self.path, timeout=self.timeout)
                ok = st.status == 200 and st.ended
                detail = None if ok else repr(st)
            except Exception as e:  # noqa: BLE001 - every failure is a sample
                ok, detail = False, repr(e)
                if client is not None:
                    client.close()
                client = None
            with self.lock:
                self.samples.append((t0, time.monotonic() - t0, ok, detail))
        if client is not None:
            client.close()

    def stop(self):
        self._stop_ev.set()
        self.join(timeout=self.timeout + 5)

    def count(self):
        with self.lock:
            return len(self.samples)

    def wait_samples(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.count() >= n

    def window(self, t0, t1):
        """Samples whose request was sent in [t0, t1]."""
        with self.lock:
            return [s for s in self.samples if t0 <= s[0] <= t1]
