#!/usr/bin/python3
"""mmdb.py: a minimal MaxMind DB (.mmdb, format 2.0) writer for tests. Stdlib only.

Builds GeoIP2-Country-like databases so the GeoIP code (src/protect/geoip.c) and the
integration tests run without a licensed download:

    /usr/bin/python3 tests/integration/mmdb.py OUT.mmdb 10.0.0.0/8=DE 2001:db8::/32=US \\
        198.51.100.0/24=registered:FR '192.0.2.0/24={"city": {"names": {"en": "X"}}}'

A value SPEC is "CC" (country.iso_code), "registered:CC" (registered_country.iso_code),
both joined by ",", "-" for an empty record, or a JSON object used as is. Options:
--record-size 24|28|32 (default 28), --ip-version 6|4 (default 6), --no-alias,
--type NAME (database_type, default GeoIP2-Country), --epoch SECONDS.

As an importable module: build(networks, ...) -> bytes, where networks maps CIDR text
to a record (dict/list/str/int/float/bool/bytes; wrap ints in U16/U32/U64/I32 to force a
type).

Layout (https://maxmind.github.io/MaxMind-DB/): a binary search tree of node_count
nodes, one tree level per address bit, each node two records of record_size bits
(24: 3+3 bytes; 28: 3 bytes, a shared byte whose high nibble extends the left record
and low nibble the right one, 3 bytes; 32: 4+4); a record value < node_count is a
node, == node_count "no data", > node_count points at data offset value - node_count
- 16. Then 16 zero bytes, the data section (typed fields: a control byte with the type
in the top 3 bits and a size in the low 5, extended types in a second byte), and the
metadata map after the marker b"\\xab\\xcd\\xefMaxMind.com". In an IPv6 database IPv4
networks live at ::a.b.c.d/(96+len), and like MaxMind's databases the subtree
::ffff:0:0/96 is an alias of that IPv4 subtree (--no-alias leaves it out). A more
specific network wins over a containing one whatever the argument order; of two equal
networks the later wins.
"""
import ipaddress
import json
import struct
import sys
import time

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


class U16(int):
    pass


class U32(int):
    pass


class U64(int):
    pass


class I32(int):
    pass


# type numbers of the format
T_POINTER, T_STRING, T_DOUBLE, T_BYTES, T_U16, T_U32, T_MAP = 1, 2, 3, 4, 5, 6, 7
T_I32, T_U64, T_U128, T_ARRAY, T_BOOL, T_FLOAT = 8, 9, 10, 11, 14, 15


def _control(t, size):
    """Control byte(s) for type t and payload size (count of pairs/items for maps/arrays)."""
    if t <= 7:
        first, ext = t << 5, b""
    else:
        first, ext = 0, bytes([t - 7])
    if size < 29:
        first |= size
        tail = b""
    elif size < 29 + 256:
        first |= 29
        tail = bytes([size - 29])
    elif size < 285 + 65536:
        first |= 30
        tail = (size - 285).to_bytes(2, "big")
    elif size < 65821 + (1 << 24):
        first |= 31
        tail = (size - 65821).to_bytes(3, "big")
    else:
        raise ValueError("field too large")
    return bytes([first]) + ext + tail


def _uint(t, v, maxbytes):
    if v < 0 or v >= 1 << (8 * maxbytes):
        raise ValueError("%d does not fit type %d" % (v, t))
    b = v.to_bytes((v.bit_length() + 7) // 8, "big")
    return _control(t, len(b)) + b


def encode(v):
    """The bytes of one data field (no pointers: every value is written out)."""
    if isinstance(v, bool):
        return _control(T_BOOL, 1 if v else 0)
    if isinstance(v, U16):
        return _uint(T_U16, int(v), 2)
    if isinstance(v, U32):
        return _uint(T_U32, int(v), 4)
    if isinstance(v, U64):
        return _uint(T_U64, int(v), 8)
    if isinstance(v, I32):
        return _control(T_I32, 4) + struct.pack(">i", int(v))
    if isinstance(v, int):
        if v < 0:
            return encode(I32(v))
        if v < 1 << 32:
            return _uint(T_U32, v, 4)
        if v < 1 << 64:
            return _uint(T_U64, v, 8)
        return _uint(T_U128, v, 16)
    if isinstance(v, float):
        return _control(T_DOUBLE, 8) + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return _control(T_STRING, len(b)) + b
    if isinstance(v, (bytes, bytearray)):
        return _control(T_BYTES, len(v)) + bytes(v)
    if isinstance(v, dict):
        out = bytearray(_control(T_MAP, len(v)))
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError("map keys must be strings")
            out += encode(k) + encode(x)
        return bytes(out)
    if isinstance(v, (list, tuple)):
        out = bytearray(_control(T_ARRAY, len(v)))
        for x in v:
            out += encode(x)
        return bytes(out)
    raise TypeError("cannot encode %r" % (v,))


class _Node:
    __slots__ = ("kids",)

    def __init__(self, left=None, right=None):
        self.kids = [left, right]


class _Data:
    __slots__ = ("offset",)

    def __init__(self, offset):
        self.offset = offset


def _key(value):
    return json.dumps(value, sort_keys=True, default=repr) + repr(type(value))


def _insert(root, bits, plen, nbits, rec):
    """Sets the records under network bits/plen (bits: nbits-wide int) to rec, pushing
    down whatever a shorter network left on the path."""
    if plen == 0:
        root.kids = [rec, rec]
        return
    node = root
    for depth in range(plen):
        b = (bits >> (nbits - 1 - depth)) & 1
        if depth == plen - 1:
            node.kids[b] = rec
            return
        k = node.kids[b]
        if not isinstance(k, _Node):
            k = _Node(k, k)
            node.kids[b] = k
        node = k


def _walk(root, bits, plen, nbits, create):
    """The node reached after plen bits of bits, or None when the path ends early."""
    node = root
    for depth in range(plen):
        b = (bits >> (nbits - 1 - depth)) & 1
        k = node.kids[b]
        if not isinstance(k, _Node):
            if not create:
                return None
            k = _Node(k, k)
            node.kids[b] = k
        node = k
    return node


def build(networks, record_size=28, ip_version=6, alias_ipv4=True,
          database_type="GeoIP2-Country", languages=("en",), description=None, epoch=None):
    """The bytes of a database mapping each CIDR text of networks to its record."""
    if record_size not in (24, 28, 32):
        raise ValueError("record size must be 24, 28 or 32")
    if ip_version not in (4, 6):
        raise ValueError("ip_version must be 4 or 6")
    nbits = 128 if ip_version == 6 else 32

    data = bytearray()
    offsets = {}
    nets = []
    for order, (cidr, value) in enumerate(networks.items()):
        net = ipaddress.ip_network(cidr, strict=True)
        if net.version == 4:
            bits, plen = int(net.network_address), net.prefixlen
            if ip_version == 6:
                plen += 96  # ::a.b.c.d
        else:
            if ip_version == 4:
                raise ValueError("%s: IPv6 network in an IPv4 database" % cidr)
            bits, plen = int(net.network_address), net.prefixlen
        k = _key(value)
        if k not in offsets:
            offsets[k] = len(data)
            data += encode(value)
        nets.append((plen, order, bits, _Data(offsets[k])))

    root = _Node()
    for plen, _order, bits, rec in sorted(nets, key=lambda x: (x[0], x[1])):
        _insert(root, bits, plen, nbits, rec)

    if ip_version == 6 and alias_ipv4:
        v4root = _walk(root, 0, 96, 128, create=False)
        if v4root is not None:
            mapped = 0xFFFF << 32
            parent = _walk(root, mapped, 95, 128, create=True)
            parent.kids[1] = v4root  # bit 95 of ::ffff:0:0 is 1

    # number the nodes breadth-first; the alias makes it a DAG, so by identity
    ids, order, i = {id(root): 0}, [root], 0
    while i < len(order):
        for k in order[i].kids:
            if isinstance(k, _Node) and id(k) not in ids:
                ids[id(k)] = len(order)
                order.append(k)
        i += 1
    node_count = len(order)

    def value(rec):
        if rec is None:
            return node_count
        if isinstance(rec, _Node):
            return ids[id(rec)]
        return node_count + 16 + rec.offset

    limit = 1 << record_size
    if node_count + 16 + len(data) >= limit:
        raise ValueError("database too large for %d-bit records" % record_size)

    tree = bytearray()
    for n in order:
        left, right = value(n.kids[0]), value(n.kids[1])
        if record_size == 24:
            tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
        elif record_size == 28:
            tree += (left & 0xFFFFFF).to_bytes(3, "big")
            tree.append(((left >> 24) << 4) | (right >> 24))
            tree += (right & 0xFFFFFF).to_bytes(3, "big")
        else:
            tree += left.to_bytes(4, "big") + right.to_bytes(4, "big")

    meta = {
        "binary_format_major_version": U16(2),
        "binary_format_minor_version": U16(0),
        "build_epoch": U64(int(time.time()) if epoch is None else epoch),
        "database_type": database_type,
        "description": description or {"en": "gatehouse test database (tests/integration/mmdb.py)"},
        "ip_version": U16(ip_version),
        "languages": list(languages),
        "node_count": U32(node_count),
        "record_size": U16(record_size),
    }
    return bytes(tree) + bytes(16) + bytes(data) + METADATA_MARKER + encode(meta)


def write(path, networks, **kw):
    blob = build(networks, **kw)
    with open(path, "wb") as f:
        f.write(blob)
    return len(blob)


def parse_spec(spec):
    """The record a command-line SPEC stands for (see the module doc)."""
    if spec.startswith("{"):
        return json.loads(spec)
    if spec == "-":
        return {}
    rec = {}
    for part in spec.split(","):
        if part.startswith("registered:"):
            rec["registered_country"] = {"iso_code": part[len("registered:"):]}
        else:
            rec["country"] = {"iso_code": part}
    return rec


def main(argv):
    opts = {}
    args = []
    it = iter(argv[1:])
    for a in it:
        if a == "--record-size":
            opts["record_size"] = int(next(it))
        elif a == "--ip-version":
            opts["ip_version"] = int(next(it))
        elif a == "--no-alias":
            opts["alias_ipv4"] = False
        elif a == "--type":
            opts["database_type"] = next(it)
        elif a == "--epoch":
            opts["epoch"] = int(next(it))
        elif a.startswith("--"):
            raise SystemExit("mmdb.py: unknown option " + a)
        else:
            args.append(a)
    if not args:
        raise SystemExit("usage: mmdb.py OUT.mmdb [options] CIDR=SPEC ...")
    networks = {}
    for a in args[1:]:
        cidr, sep, spec = a.partition("=")
        if not sep:
            raise SystemExit("mmdb.py: %r is not CIDR=SPEC" % a)
        networks[cidr] = parse_spec(spec)
    try:
        n = write(args[0], networks, **opts)
    except (ValueError, TypeError) as e:
        raise SystemExit("mmdb.py: %s" % e)
    print("%s: %d bytes, %d networks" % (args[0], n, len(networks)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
