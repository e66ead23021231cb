// flagd_rpc.js: the unmodified @openfeature/flagd-provider (RPC mode, flagd.evaluation.v2) with
// @openfeature/server-sdk against gatehouse's flagd_grpc listener (no API key: the keyless tenant).
// Usage: node flagd_rpc.js SPEC_JSON
// SPEC_JSON: {"port": P,
//             "cases": [{"kind": "boolean"|"string"|"number"|"object", "key": K, "default": V, "context": {...}}],
//             "cached": K,                      // a STATIC flag evaluated twice by an lru-cached provider
//             "rewrite": {"path": F, "content": "..."},  // written once both providers are READY and evaluated
//             "after": [cases evaluated after the ConfigurationChanged events]}
// Prints one JSON line:
//   {"status": ..., "cases": [details], "cachedBefore": [details, details],
//    "changed": {"plain": [keys], "cached": [keys]}, "after": [details], "afterCached": [details]}
// or {"error": "..."} (exit 1).
'use strict';
const fs = require('fs');
const { OpenFeature, ProviderEvents } = require('@openfeature/server-sdk');
const { FlagdProvider } = require('@openfeature/flagd-provider');

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const method = { boolean: 'BooleanDetails', string: 'StringDetails', number: 'NumberDetails', object: 'ObjectDetails' };
const pick = (d) => ({
  value: d.value === undefined ? null : d.value,
  variant: d.variant ?? null,
  reason: d.reason ?? null,
  errorCode: d.errorCode ?? null,
  flagMetadata: d.flagMetadata ?? {},
});

const hardStop = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timed out (25 s)' }));
  process.exit(1);
}, 25000);

function changedOnce(client, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
      clearTimeout(timer);
      resolve((details && details.flagsChanged) || []);
    });
  });
}

async function evalAll(client, cases) {
  const out = [];
  for (const c of cases) out.push(pick(await client['get' + method[c.kind]](c.key, c.default, c.context || {})));
  return out;
}

async function main() {
  const common = { host: '127.0.0.1', port: spec.port, tls: false, deadlineMs: 3000, retryBackoffMs: 200,
                   retryBackoffMaxMs: 1000 };
  const plain = new FlagdProvider({ ...common, cache: 'disabled' });
  const cached = new FlagdProvider({ ...common, cache: 'lru' });
  await OpenFeature.setProviderAndWait(plain);
  await OpenFeature.setProviderAndWait('cached', cached);
  const client = OpenFeature.getClient();
  const cclient = OpenFeature.getClient('cached');
  const out = { status: client.providerStatus, cachedStatus: cclient.providerStatus };

  out.cases = await evalAll(client, spec.cases);
  // an lru-cached provider caches STATIC results until the stream says the flag changed
  const cachedCase = [{ kind: 'number', key: spec.cached, default: -1, context: {} }];
  out.cachedBefore = [(await evalAll(cclient, cachedCase))[0], (await evalAll(cclient, cachedCase))[0]];

  const waits = [changedOnce(client, 12000), changedOnce(cclient, 12000)];
  fs.writeFileSync(spec.rewrite.path, spec.rewrite.content);
  const [a, b] = await Promise.all(waits);
  out.changed = { plain: a && [...a].sort(), cached: b && [...b].sort() };
  out.after = await evalAll(client, spec.after);
  out.afterCached = await evalAll(cclient, cachedCase);
  out.statusAfter = client.providerStatus;

  clearTimeout(hardStop);
  console.log(JSON.stringify(out));
  // a clean shutdown (streams cancelled by the client), bounded so a stuck close cannot hang the test
  await Promise.race([OpenFeature.close(), new Promise((r) => setTimeout(r, 3000))]);
  process.exit(0);
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String((e && e.stack) || e) }));
  process.exit(1);
});
