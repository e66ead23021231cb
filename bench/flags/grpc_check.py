#!/usr/bin/python3
"""bench/flags/grpc_check.py: request bodies for bench/flags.sh's grpc part, and its gRPC answer check.

    grpc_check.py bodies PBDIR CONTEXTS.json INDEX OUTDIR FLAG:TYPE...
        writes, for context INDEX of CONTEXTS.json: OUTDIR/grpc-FLAG.bin, the gRPC-framed (1 byte 0,
        4-byte big-endian length) flagd.evaluation.v2 Resolve{Boolean,String}Request of each FLAG
        (TYPE bool or string), and OUTDIR/ofrep.json, the same context as an OFREP body
        ({"context": {...}}). Prints one line per file: "name bytes".
    grpc_check.py check PBDIR PORT API_KEY CONTEXTS.json VARIANTS.tsv COUNT FLAG:TYPE...
        calls flagd.evaluation.v2.Service/Resolve{Boolean,String} on 127.0.0.1:PORT (h2c, metadata
        x-api-key) for each FLAG and the first COUNT contexts, with python's grpcio (an independent
        gRPC client: framing, trailers and grpc-status are checked by it) and compares each answer's
        variant and value with VARIANTS.tsv (evalbench's: flag, context index, variant, reason,
        value as JSON). Prints "calls variant_mismatches variant_absent value_mismatches not_ok" on
        stdout (variant_absent: answers without a variant where evalbench has one; they are not
        counted as mismatches), the first 3 differences and each flag's answer for context 0 on
        stderr.
    grpc_check.py decode PBDIR TYPE FILE
        prints "variant V, reason R, value X" of one answer saved by curl: a gRPC frame holding a
        Resolve{Boolean,String}Response (TYPE bool or string) or an OFREP JSON answer (TYPE json).

PBDIR holds the python classes protoc generated from proto/flagd/evaluation/v2/evaluation.proto
(protoc --python_out=PBDIR -I proto proto/flagd/evaluation/v2/evaluation.proto)."""
import json
import os
import struct
import sys

METHOD = {"bool": "ResolveBoolean", "string": "ResolveString"}


def classes(pbdir):
    sys.path.insert(0, pbdir)
    from flagd.evaluation.v2 import evaluation_pb2 as pb  # noqa: E402
    return pb


def request(pb, typ, flag, ctx):
    req = getattr(pb, METHOD[typ] + "Request")(flag_key=flag)
    req.context.update(ctx)  # google.protobuf.Struct from the JSON object (numbers become doubles)
    return req


def split_specs(specs):
    out = []
    for s in specs:
        flag, _, typ = s.partition(":")
        if typ not in METHOD:
            sys.exit("grpc_check.py: unknown type in %r (bool or string)" % s)
        out.append((flag, typ))
    return out


def bodies(pbdir, contexts_path, index, outdir, specs):
    pb = classes(pbdir)
    ctx = json.load(open(contexts_path))[int(index)]
    for flag, typ in split_specs(specs):
        msg = request(pb, typ, flag, ctx).SerializeToString()
        path = os.path.join(outdir, "grpc-%s.bin" % flag)
        with open(path, "wb") as f:
            f.write(struct.pack(">BI", 0, len(msg)) + msg)
        print("grpc-%s.bin %d" % (flag, 5 + len(msg)))
    data = json.dumps({"context": ctx}, separators=(",", ":"))
    with open(os.path.join(outdir, "ofrep.json"), "w") as f:
        f.write(data)
    print("ofrep.json %d" % len(data.encode()))


def check(pbdir, port, key, contexts_path, ref_path, count, specs):
    import grpc  # python3-grpcio
    pb = classes(pbdir)
    ref = {}
    for line in open(ref_path):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 5:
            ref[(f[0], int(f[1]))] = (f[2], f[4])
    contexts = json.load(open(contexts_path))[:int(count)]
    n = bad = absent = badval = not_ok = shown = 0
    with grpc.insecure_channel("127.0.0.1:%s" % port) as ch:
        for flag, typ in split_specs(specs):
            m = METHOD[typ]
            call = ch.unary_unary("/flagd.evaluation.v2.Service/" + m,
                                  request_serializer=lambda r: r.SerializeToString(),
                                  response_deserializer=getattr(pb, m + "Response").FromString)
            for i, ctx in enumerate(contexts):
                n += 1
                want, want_val = ref.get((flag, i), ("?", "?"))
                try:
                    r = call(request(pb, typ, flag, ctx), metadata=[("x-api-key", key)], timeout=5)
                except grpc.RpcError as e:
                    not_ok += 1
                    if shown < 3:
                        shown += 1
                        print("  gRPC %s context %d: %s %s" % (flag, i, e.code(), e.details()), file=sys.stderr)
                    continue
                variant = r.variant if r.HasField("variant") else None
                value = json.dumps(r.value, separators=(",", ":")) if r.HasField("value") else None
                got = "variant %s, reason %s, value %s" % (variant, r.reason, value)
                if i == 0:
                    print("  gRPC %s %s context 0: %s (evalbench: variant %s, value %s)" % (m, flag, got, want, want_val),
                          file=sys.stderr)
                if variant is None and want not in ("-", "?"):
                    absent += 1
                elif variant != want:
                    bad += 1
                if value != want_val:
                    badval += 1
                if (variant is not None and variant != want or value != want_val) and shown < 3:
                    shown += 1
                    print("  gRPC %s context %d: %s (want variant %s, value %s)" % (flag, i, got, want, want_val), file=sys.stderr)
    print(n, bad, absent, badval, not_ok)


def decode(pbdir, typ, path):
    data = open(path, "rb").read()
    if typ == "json":
        try:
            d = json.loads(data)
            print("variant %s, reason %s, value %s" % (d.get("variant", "(none)"), d.get("reason"), json.dumps(d.get("value"))))
        except ValueError:
            print("not JSON: %r" % data[:80])
        return
    if len(data) < 5:
        print("no gRPC message (%d bytes)" % len(data))
        return
    compressed, n = struct.unpack(">BI", data[:5])
    if compressed != 0 or n != len(data) - 5:
        print("unexpected gRPC frame: flag %d, length %d of %d bytes" % (compressed, n, len(data) - 5))
        return
    r = getattr(classes(pbdir), METHOD[typ] + "Response").FromString(data[5:])
    print("variant %s, reason %s, value %s" % (r.variant if r.HasField("variant") else "(none)", r.reason,
                                                json.dumps(r.value) if r.HasField("value") else "(none)"))


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 6 and a[0] == "bodies":
        bodies(a[1], a[2], a[3], a[4], a[5:])
    elif len(a) == 4 and a[0] == "decode":
        decode(a[1], a[2], a[3])
    elif len(a) >= 8 and a[0] == "check":
        check(a[1], a[2], a[3], a[4], a[5], a[6], a[7:])
    else:
        sys.exit(__doc__)
