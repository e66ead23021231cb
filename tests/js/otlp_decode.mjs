// otlp_decode.mjs: an independent decoder of OTLP/HTTP protobuf trace exports, for
// tests/integration/test_tracing.py. Reads one request body (an ExportTraceServiceRequest,
// as gatehouse POSTs it with tracing.protocol: http/protobuf) on stdin and prints it as OTLP
// JSON (ids in hex, 64-bit numbers as strings, as the OTLP JSON encoding has them).
// It calls the protobufjs code generated from the official OTLP protos that ships in
// @opentelemetry/otlp-transformer (tests/js/package.json), none of gatehouse's own protos.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root.js');
const Req = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const body = readFileSync(0);
const msg = Req.decode(body); // throws on malformed input: the test sees the failure
const obj = Req.toObject(msg, { longs: String, enums: Number, bytes: String, defaults: false });

const ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId']);
// bytes come out as base64: the OTLP JSON encoding writes trace and span ids in hex
function hexIds(v) {
  if (Array.isArray(v)) return v.map(hexIds);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v))
      out[k] = ID_KEYS.has(k) && typeof x === 'string' ? Buffer.from(x, 'base64').toString('hex') : hexIds(x);
    return out;
  }
  return v;
}
process.stdout.write(JSON.stringify(hexIds(obj)) + '\n');
