#!/usr/bin/python3
"""ja4_ref.py: the Python reference for the JA4 TLS client fingerprint (FoxIO JA4, the
BSD-licensed part of JA4+), written from the specification independently of src/tls/ja4.c.

It produced every expected value in tests/unit/test_ja4.c and every ClientHello in
tests/unit/data/ja4_*.bin, and keeps them reproducible:

  ja4_ref.py FILE...        JA4 and JA4_r (the unhashed form) of raw ClientHellos
  ja4_ref.py capture DIR    capture real ClientHellos on loopback from openssl s_client, curl
                            and Python ssl (all OpenSSL 3.0 on Debian 12 here)
  ja4_ref.py synth DIR      write the synthetic hellos (GREASE, ALPN edge cases, FoxIO's
                            published field lists, record fragmentation, ...)
  ja4_ref.py table DIR      print the C table of {file, JA4} for test_ja4.c

The rules (technical_details/JA4.md with its ALPN update, FoxIO PR #277, and GREASE
removed from signature_algorithms too, FoxIO issues #60 and #305):
  a = proto ('t') + version + ('d' SNI present | 'i') + ciphers (2 digits, max 99)
      + extensions (2 digits, max 99) + ALPN first/last character
      version: highest non-GREASE supported_versions value if that extension is present
      (legacy_version when it holds only GREASE), else legacy_version;
      0x0304 13, 0x0303 12, 0x0302 11, 0x0301 10, 0x0300 s3, 0x0002 s2, other 00.
      ALPN: first protocol's first and last byte when both are ASCII alphanumeric,
      else the first and last hex digit of that protocol; 00 without ALPN.
  b = sha256("c1,c2,...")[:12] over the non-GREASE ciphers as 4 lowercase hex digits,
      sorted; 000000000000 if none.
  c = sha256("e1,e2,..._s1,s2,...")[:12]: non-GREASE extension types without SNI (0000)
      and ALPN (0010), sorted; then the non-GREASE signature_algorithms in wire order,
      the "_" only when there are some; 000000000000 when the string is empty.
GREASE: 0x0a0a, 0x1a1a, ..., 0xfafa. Malformed hellos (as the C parser defines them:
duplicate extension, bad lengths in the fields JA4 reads) raise ValueError; incomplete
input raises Truncated.
"""
import hashlib
import os
import random
import socket
import struct
import subprocess
import sys
import threading

GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))
VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2"}
MAX_HELLO = 131396  # largest ClientHello body the fields allow (OpenSSL's limit too)


class Truncated(Exception):
    pass


def handshake_message(data):
    """The ClientHello handshake message (header included) from a TLS record stream
    (first byte 0x16, possibly fragmented over several records) or a bare message (0x01)."""
    if not data:
        raise Truncated()
    if data[0] == 0x01:
        stream = data
    elif data[0] == 0x16:
        stream = b""
        pos = 0
        while not (len(stream) >= 4 and len(stream) >= 4 + int.from_bytes(stream[1:4], "big")):
            head = data[pos:pos + 5]
            if not head:
                raise Truncated()
            if head[0] != 0x16:
                raise ValueError("non-handshake record before the ClientHello ends")
            if len(head) > 1 and head[1] != 0x03:
                raise ValueError("record version major is not 3")
            if len(head) < 5:
                raise Truncated()
            flen = int.from_bytes(head[3:5], "big")
            if flen == 0 or flen > 16384:
                raise ValueError("bad record length")
            frag = data[pos + 5:pos + 5 + flen]
            stream += frag
            if stream and stream[0] != 0x01:
                raise ValueError("not a ClientHello")
            if len(stream) >= 4 and int.from_bytes(stream[1:4], "big") > MAX_HELLO:
                raise ValueError("ClientHello too large")
            if len(frag) < flen:  # the last record so far is partial: enough if the message is
                break
            pos += 5 + flen
    else:
        raise ValueError("neither a handshake record nor a ClientHello")
    if len(stream) < 4:
        raise Truncated()
    n = int.from_bytes(stream[1:4], "big")
    if n > MAX_HELLO:
        raise ValueError("ClientHello too large")
    if len(stream) < 4 + n:
        raise Truncated()
    return stream[:4 + n]


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        if self.i + n > len(self.b):
            raise ValueError("field runs past its container")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return int.from_bytes(self.take(2), "big")

    def left(self):
        return len(self.b) - self.i


def parse_hello(msg):
    """legacy_version, [ciphers], [(ext type, body)] of a ClientHello message."""
    r = Reader(msg[4:])
    legacy = r.u16()
    r.take(32)
    sid = r.u8()
    if sid > 32:
        raise ValueError("session id longer than 32")
    r.take(sid)
    clen = r.u16()
    if clen < 2 or clen % 2:
        raise ValueError("bad cipher_suites length")
    cs = r.take(clen)
    ciphers = [int.from_bytes(cs[i:i + 2], "big") for i in range(0, clen, 2)]
    comp = r.u8()
    if comp < 1:
        raise ValueError("no compression method")
    r.take(comp)
    exts = []
    if r.left():
        elen = r.u16()
        if elen != r.left():
            raise ValueError("extensions length does not match the message")
        while r.left():
            t = r.u16()
            body = r.take(r.u16())
            exts.append((t, body))
    types = [t for t, _ in exts if t not in GREASE]
    if len(set(types)) != len(types):
        raise ValueError("duplicate extension")
    return legacy, ciphers, exts


def u16_list(body, width):
    """A <..> vector of 16-bit values with a `width`-byte length prefix, exactly filling body."""
    r = Reader(body)
    n = r.u8() if width == 1 else r.u16()
    if n != r.left() or n < 2 or n % 2:
        raise ValueError("bad 16-bit list")
    return [r.u16() for _ in range(n // 2)]


def alpn_protocols(body):
    r = Reader(body)
    n = r.u16()
    if n != r.left() or n < 2:
        raise ValueError("bad ALPN list")
    out = []
    while r.left():
        ln = r.u8()
        if ln == 0:
            raise ValueError("empty ALPN protocol")
        out.append(r.take(ln))
    return out


def alnum(c):
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def hash12(s):
    return hashlib.sha256(s.encode()).hexdigest()[:12] if s else "000000000000"


def ja4(data, proto="t"):
    """(JA4, JA4_r) of a raw ClientHello (record stream or bare handshake message)."""
    legacy, ciphers, exts = parse_hello(handshake_message(data))
    body = {}
    for t, b in exts:
        body.setdefault(t, b)
    types = [t for t, _ in exts if t not in GREASE]

    version = legacy
    if 0x002B in body:
        vs = [v for v in u16_list(body[0x002B], 1) if v not in GREASE]
        if vs:
            version = max(vs)
    alpn = "00"
    if 0x0010 in body:
        first = alpn_protocols(body[0x0010])[0]
        if alnum(first[0]) and alnum(first[-1]):
            alpn = chr(first[0]) + chr(first[-1])
        else:
            h = first.hex()
            alpn = h[0] + h[-1]
    sigs = []
    if 0x000D in body:
        sigs = [v for v in u16_list(body[0x000D], 2) if v not in GREASE]

    cs = [c for c in ciphers if c not in GREASE]
    a = "%s%s%s%02d%02d%s" % (proto, VERSIONS.get(version, "00"), "d" if 0 in types else "i",
                              min(len(cs), 99), min(len(types), 99), alpn)
    b_raw = ",".join("%04x" % c for c in sorted(cs))
    c_raw = ",".join("%04x" % t for t in sorted(t for t in types if t not in (0x0000, 0x0010)))
    if sigs:
        c_raw += "_" + ",".join("%04x" % s for s in sigs)
    return "%s_%s_%s" % (a, hash12(b_raw), hash12(c_raw)), "%s_%s_%s" % (a, b_raw, c_raw)


# ---- capture: real clients against a loopback listener that keeps the first flight ----

def capture_one(argv_for_port, timeout=10):
    """Run a client (argv_for_port(port) -> argv, or a Python callable) against a loopback
    listener and return the raw bytes of its ClientHello record(s)."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(timeout)
    port = ls.getsockname()[1]
    got = {}

    def serve():
        c, _ = ls.accept()
        c.settimeout(timeout)
        buf = b""
        while True:
            try:
                handshake_message(buf)
                break
            except Truncated:
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
        got["raw"] = buf
        c.close()

    th = threading.Thread(target=serve)
    th.start()
    client = argv_for_port(port)
    if callable(client):
        try:
            client()
        except OSError:
            pass  # the listener hangs up after the ClientHello
    else:
        subprocess.run(client, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout)
    th.join()
    ls.close()
    raw = got["raw"]
    # keep exactly the record(s) that carry the ClientHello
    if raw[:1] == b"\x16":
        msg_len = len(handshake_message(raw))
        pos = have = 0
        while have < msg_len:
            flen = int.from_bytes(raw[pos + 3:pos + 5], "big")
            have += flen
            pos += 5 + flen
        raw = raw[:pos]
    return raw


def py_client(port, alpn=None, sni="gatehouse.test", maxver=None, ciphers=None):
    import ssl

    def run():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(alpn)
        if maxver:
            ctx.maximum_version = maxver
        if ciphers:
            ctx.set_ciphers(ciphers)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            ctx.wrap_socket(s, server_hostname=sni).close()
    return run


def capture(outdir):
    import ssl
    osc = ["openssl", "s_client", "-connect"]
    res = "--resolve"
    clients = {
        # openssl s_client (OpenSSL 3.0)
        "openssl_default": lambda p: osc + ["127.0.0.1:%d" % p, "-servername", "gatehouse.test"],
        "openssl_alpn": lambda p: osc + ["127.0.0.1:%d" % p, "-servername", "gatehouse.test",
                                         "-alpn", "h2,http/1.1"],
        "openssl_nosni": lambda p: osc + ["127.0.0.1:%d" % p, "-noservername"],
        "openssl_tls12": lambda p: osc + ["127.0.0.1:%d" % p, "-tls1_2", "-servername",
                                          "gatehouse.test", "-alpn", "http/1.1"],
        "openssl_tls11": lambda p: osc + ["127.0.0.1:%d" % p, "-tls1_1", "-cipher",
                                          "DEFAULT@SECLEVEL=0", "-servername", "gatehouse.test"],
        # curl 7.88 (OpenSSL 3.0, nghttp2)
        "curl_h2": lambda p: ["curl", "-sk", "--http2", res, "gatehouse.test:%d:127.0.0.1" % p,
                              "https://gatehouse.test:%d/" % p],
        "curl_ip_h11": lambda p: ["curl", "-sk", "--http1.1", "https://127.0.0.1:%d/" % p],
        "curl_tls12": lambda p: ["curl", "-sk", "--tlsv1.2", "--tls-max", "1.2", res,
                                 "gatehouse.test:%d:127.0.0.1" % p, "https://gatehouse.test:%d/" % p],
        # Python ssl (OpenSSL 3.0)
        "python_h11": lambda p: py_client(p, alpn=["http/1.1"]),
        "python_tls12": lambda p: py_client(p, maxver=ssl.TLSVersion.TLSv1_2,
                                            ciphers="ECDHE+AESGCM:ECDHE+CHACHA20"),
    }
    os.makedirs(outdir, exist_ok=True)
    for name, argv in clients.items():
        raw = capture_one(argv)
        path = os.path.join(outdir, "ja4_%s.bin" % name)
        with open(path, "wb") as f:
            f.write(raw)
        print("%-40s %s" % (path, ja4(raw)[0]))


# ---- synth: hellos built field by field ----

def ext(t, body=b""):
    return struct.pack(">HH", t, len(body)) + body


def sni(name):
    n = name.encode()
    entry = b"\x00" + struct.pack(">H", len(n)) + n
    return ext(0x0000, struct.pack(">H", len(entry)) + entry)


def alpn(*protos):
    lst = b"".join(bytes([len(p)]) + p for p in protos)
    return ext(0x0010, struct.pack(">H", len(lst)) + lst)


def versions(*vs):
    return ext(0x002B, bytes([2 * len(vs)]) + b"".join(struct.pack(">H", v) for v in vs))


def sigalgs(*ss):
    return ext(0x000D, struct.pack(">H", 2 * len(ss)) + b"".join(struct.pack(">H", s) for s in ss))


def u16s(vals, width=2):
    b = b"".join(struct.pack(">H", v) for v in vals)
    return (bytes([len(b)]) if width == 1 else struct.pack(">H", len(b))) + b


def client_hello(ciphers, exts, legacy=0x0303, with_ext_block=True, rnd=None):
    rnd = rnd if rnd is not None else bytes(range(32))
    body = struct.pack(">H", legacy) + rnd + b"\x20" + bytes(range(0x40, 0x60))
    body += u16s(ciphers) + b"\x01\x00"
    if with_ext_block:
        e = b"".join(exts)
        body += struct.pack(">H", len(e)) + e
    return b"\x01" + len(body).to_bytes(3, "big") + body


def records(msg, sizes=None, version=0x0301):
    """msg as TLS records; sizes: fragment sizes (the last one repeats)."""
    out = b""
    i = 0
    k = 0
    while i < len(msg):
        n = len(msg) - i if not sizes else sizes[min(k, len(sizes) - 1)]
        frag = msg[i:i + n]
        out += b"\x16" + struct.pack(">HH", version, len(frag)) + frag
        i += len(frag)
        k += 1
    return out


def body_for(t):
    """Plausible bodies for the extension types of the FoxIO vectors (JA4 reads none of them)."""
    return {
        0x000A: u16s([0x1A1A, 0x001D, 0x0017, 0x0018]),           # supported_groups
        0x000B: b"\x01\x00",                                     # ec_point_formats
        0x0005: b"\x01\x00\x00\x00\x00",                         # status_request
        0x0012: b"",                                             # SCT
        0x0017: b"",                                             # extended_master_secret
        0x0023: b"",                                             # session_ticket
        0x002D: b"\x01\x01",                                     # psk_key_exchange_modes
        0x0033: struct.pack(">HHH", 36, 0x001D, 32) + bytes(32),  # key_share x25519
        0xFF01: b"\x00",                                         # renegotiation_info
        0x001B: b"\x02\x00\x02",                                 # compress_certificate
        0x4469: b"\x00\x03\x02h2",                               # ALPS (old)
        0x44CD: b"\x00\x03\x02h2",                               # ALPS (new)
        0x0015: bytes(20),                                       # padding
        0xFE0D: b"\x00\x00\x01\x00\x01\x42\x00\x20" + bytes(32) + b"\x00\x10" + bytes(16),
    }.get(t, b"")


def chrome_like(cipher_list, ext_order, sigs, grease=(0x3A3A, 0x9A9A, 0xDADA), name="example.com",
                protos=(b"h2", b"http/1.1"), sv=(0x0304, 0x0303)):
    """A Chrome-shaped hello: GREASE first among ciphers and extensions (and another GREASE
    extension last), GREASE in supported_versions, the given order otherwise."""
    g_cipher, g_ext1, g_ext2 = grease
    exts = [ext(g_ext1)]
    for t in ext_order:
        if t == 0x0000:
            exts.append(sni(name))
        elif t == 0x0010:
            exts.append(alpn(*protos))
        elif t == 0x002B:
            exts.append(versions(g_cipher, *sv))
        elif t == 0x000D:
            exts.append(sigalgs(*sigs))
        else:
            exts.append(ext(t, body_for(t)))
    exts.append(ext(g_ext2, b"\x00"))
    return client_hello([g_cipher] + list(cipher_list), exts)


# FoxIO's published field lists (rust/ja4/src/tls.rs unit test; pcap/sigalg-grease.pcapng)
FOXIO_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013,
                 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
FOXIO_EXTS_2023 = [0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023,
                   0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]
FOXIO_SIGS_2023 = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
FOXIO_EXTS_152 = [0xFE0D, 0x0010, 0x0017, 0x0033, 0x44CD, 0xFF01, 0x000A, 0x000D, 0x0023, 0x002B,
                  0x000B, 0xCA34, 0x002D, 0x0000, 0x0005, 0x001B, 0x0012]
FOXIO_SIGS_152 = [0x0904, 0x0905, 0x0906] + FOXIO_SIGS_2023

BASIC_EXTS = lambda: [sni("example.com"), versions(0x0304, 0x0303), sigalgs(0x0403, 0x0804),
                      ext(0x000A, u16s([0x001D])), ext(0x0033, body_for(0x0033))]


def synth_vectors():
    """name -> raw bytes (records unless the name says bare)."""
    v = {}
    # FoxIO published: t13d1516h2_8daaf6152771_e5627efa2ab1 (tls.rs unit test)
    v["foxio_2023"] = records(chrome_like(FOXIO_CIPHERS, FOXIO_EXTS_2023, FOXIO_SIGS_2023))
    # FoxIO published: t13d1517h2_8daaf6152771_cb7bf5808d99 (Chrome 152, GREASE in sigalgs)
    v["foxio_chrome152"] = records(chrome_like(
        FOXIO_CIPHERS, FOXIO_EXTS_152, [0x6A6A] + FOXIO_SIGS_152,
        name="optimizationguide-pa.googleapis.com"))
    # the same hello with other GREASE values drawn: the fingerprint must not move
    v["foxio_chrome152_regrease"] = records(chrome_like(
        FOXIO_CIPHERS, FOXIO_EXTS_152, [0xFAFA] + FOXIO_SIGS_152, grease=(0x0A0A, 0xEAEA, 0x2A2A),
        name="optimizationguide-pa.googleapis.com"))
    # ... bare (no record header), and split over records, down to 1-byte fragments
    msg = chrome_like(FOXIO_CIPHERS, FOXIO_EXTS_152, [0x6A6A] + FOXIO_SIGS_152,
                      name="optimizationguide-pa.googleapis.com")
    v["foxio_chrome152_bare"] = msg
    v["foxio_chrome152_frag"] = records(msg, sizes=[1, 3, 100, 7])
    v["foxio_chrome152_frag1"] = records(msg, sizes=[1])
    # ALPN edge cases (JA4.md "ALPN Extension Value": hex when an end byte is not alphanumeric)
    for name, first in (("alpn_hex_ab", b"\xab"), ("alpn_hex_ad", b"\xab\xcd"),
                        ("alpn_hex_3b", b"0\xab"), ("alpn_hex_3d", b"01\xab\xcd"),
                        ("alpn_alnum_01", b"0\xab\xcd1"), ("alpn_single_h", b"h"),
                        ("alpn_dash", b"-h2")):
        v[name] = records(client_hello([0x1301, 0x1302], BASIC_EXTS() + [alpn(first, b"h2")]))
    # only GREASE ciphers: b is 000000000000, count 00
    v["grease_ciphers_only"] = records(client_hello([0x0A0A, 0xFAFA], BASIC_EXTS()))
    # GREASE everywhere JA4 looks, including sigalgs and supported_versions
    v["grease_everywhere"] = records(client_hello(
        [0x2A2A, 0x1301, 0x4A4A, 0xC02B],
        [ext(0x5A5A), sni("g.test"), versions(0x7A7A, 0x0304, 0x8A8A), alpn(b"h2"),
         sigalgs(0x9A9A, 0x0403, 0xAAAA, 0x0804), ext(0xBABA, b"\x00"),
         ext(0x0033, body_for(0x0033))]))
    # sigalgs that are all GREASE: no "_" in c
    v["sigalgs_all_grease"] = records(client_hello(
        [0x1301], [sni("g.test"), versions(0x0304), sigalgs(0x0A0A, 0x1A1A)]))
    # supported_versions holding only GREASE: legacy_version decides
    v["versions_all_grease"] = records(client_hello(
        [0xC02F], [sni("g.test"), versions(0x0A0A)], legacy=0x0303))
    # unknown highest version (a draft code point): 00
    v["version_draft"] = records(client_hello([0x1301], [versions(0x7F1C, 0x0303)]))
    # no extension block at all (TLS 1.0 era): 'i', 00 extensions, c 000000000000
    v["no_extensions_tls10"] = records(client_hello([0x002F, 0x0035, 0x000A], [], legacy=0x0301,
                                                    with_ext_block=False))
    # an empty extension block
    v["empty_extensions"] = records(client_hello([0x002F], [], legacy=0x0302))
    # SNI and ALPN only: both counted, c empty -> 000000000000
    v["sni_alpn_only"] = records(client_hello([0x1301], [sni("a.test"), alpn(b"http/1.1")]))
    # SSL 3.0 and "SSL 2" legacy versions in TLS framing
    v["legacy_ssl3"] = records(client_hello([0x000A, 0x0005], [], legacy=0x0300, with_ext_block=False))
    v["legacy_ssl2"] = records(client_hello([0x000A], [], legacy=0x0002, with_ext_block=False))
    # 120 ciphers and 110 extensions: both counts cap at 99, hashes cover all
    many_c = [0x0100 + i for i in range(120)]
    many_e = [sni("m.test")] + [ext(0x1000 + i) for i in range(109)]
    v["many_ciphers_exts"] = records(client_hello(many_c, many_e))
    # 5000 ciphers (shuffled) and 600 extensions over 4 KiB records: every heap path in C
    big_c = [0x0100 + i for i in range(5000)]
    random.Random(4).shuffle(big_c)
    big_e = [sigalgs(0x0403, 0x0503)] + [ext(0x2000 + 7 * i) for i in range(599)]
    v["huge_lists"] = records(client_hello(big_c, big_e), sizes=[4096])
    # SCSVs are ciphers like any other; duplicate ciphers are kept
    v["scsv_and_dup_ciphers"] = records(client_hello([0x00FF, 0x5600, 0xC02B, 0xC02B], [sni("d.test")]))
    # a hello followed by more bytes in the buffer (e.g. early data): ignored
    v["trailing_bytes"] = records(client_hello([0x1301], BASIC_EXTS())) + b"\x17\x03\x03\x00\x01\x00"
    return v


def synth(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, raw in synth_vectors().items():
        path = os.path.join(outdir, "ja4_%s.bin" % name)
        with open(path, "wb") as f:
            f.write(raw)
        print("%-44s %s" % (path, ja4(raw)[0]))


def table(d):
    for fn in sorted(os.listdir(d)):
        if fn.startswith("ja4_") and fn.endswith(".bin"):
            with open(os.path.join(d, fn), "rb") as f:
                h, r = ja4(f.read())
            print('    {"%s", "%s"},' % (fn, h))


def random_hello(rng):
    """A random well-formed hello (for differential testing against the C code)."""
    pool_c = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0x009C, 0x002F, 0x00FF] + sorted(GREASE)
    ciphers = [rng.choice(pool_c) for _ in range(rng.randint(1, 40))]
    types = rng.sample([0x0005, 0x000A, 0x000B, 0x0017, 0x0023, 0x0033, 0x001B, 0x4469, 0xFF01,
                        0x0015, 0x0000, 0x0010, 0x002B, 0x000D] + sorted(GREASE), rng.randint(0, 16))
    exts = []
    for t in types:
        if t == 0x0000:
            exts.append(sni("r.test"))
        elif t == 0x0010:
            protos = [bytes(rng.randrange(256) if rng.random() < 0.3 else rng.choice(b"abh2/.")
                            for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 3))]
            exts.append(alpn(*protos))
        elif t == 0x002B:
            exts.append(versions(*[rng.choice([0x0304, 0x0303, 0x0302, 0x7F1C, 0x0A0A, 0x0300])
                                   for _ in range(rng.randint(1, 4))]))
        elif t == 0x000D:
            exts.append(sigalgs(*[rng.choice([0x0403, 0x0804, 0x0401, 0x0A0A, 0x0904])
                                  for _ in range(rng.randint(1, 8))]))
        else:
            exts.append(ext(t, bytes(rng.randint(0, 3))))
    legacy = rng.choice([0x0303, 0x0301, 0x0302, 0x0300, 0x0002, 0x0305])
    msg = client_hello(ciphers, exts, legacy=legacy, with_ext_block=bool(types) or rng.random() < 0.5)
    if rng.random() < 0.2:
        return msg
    return records(msg, sizes=[rng.randint(1, 64)] if rng.random() < 0.3 else None)


def main(argv):
    if len(argv) >= 2 and argv[0] == "capture":
        capture(argv[1])
    elif len(argv) >= 2 and argv[0] == "synth":
        synth(argv[1])
    elif len(argv) >= 2 and argv[0] == "table":
        table(argv[1])
    elif len(argv) >= 3 and argv[0] == "random":  # random DIR N: differential-test inputs
        rng = random.Random(int(os.environ.get("SEED", "1")))
        os.makedirs(argv[1], exist_ok=True)
        for i in range(int(argv[2])):
            raw = random_hello(rng)
            with open(os.path.join(argv[1], "%05d.bin" % i), "wb") as f:
                f.write(raw)
            print("%05d.bin %s" % (i, ja4(raw)[0]))
    elif argv:
        for fn in argv:
            with open(fn, "rb") as f:
                h, r = ja4(f.read())
            print("%s\n  JA4   %s\n  JA4_r %s" % (fn, h, r))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
