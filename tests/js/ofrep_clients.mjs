// ofrep_clients.mjs: OpenFeature SDKs (server and web) with the OFREP providers, unmodified, against
// gatehouse's OFREP listener. Usage: node ofrep_clients.mjs BASE_URL API_KEY CASES_JSON
// CASES_JSON: [{"kind": "boolean"|"string"|"number"|"object", "key": K, "default": V, "context": {...}}, ...]
// Prints one JSON line: {"server": [details...], "web": [details...]} (web: the bulk cache, evaluated per case context).
import { OpenFeature as Server } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature as Web } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
import { readFileSync } from 'node:fs';

const [baseUrl, apiKey, casesFile] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));
const headers = [['X-API-Key', apiKey]];
const pick = (d) => ({ value: d.value, variant: d.variant ?? null, reason: d.reason, errorCode: d.errorCode ?? null });
const method = { boolean: 'BooleanDetails', string: 'StringDetails', number: 'NumberDetails', object: 'ObjectDetails' };

await Server.setProviderAndWait(new OFREPProvider({ baseUrl, headers }));
const server = Server.getClient();
const out = { server: [], web: [] };
for (const c of cases)
  out.server.push(pick(await server['get' + method[c.kind]](c.key, c.default, c.context)));

// the web SDK: a static context, flags fetched in bulk (with ETag) when the context is set
const web = Web.getClient();
const provider = new OFREPWebProvider({ baseUrl, headers, pollInterval: 0 });
let first = true;
for (const c of cases) {
  if (first) {
    await Web.setContext(c.context);
    await Web.setProviderAndWait(provider);
    first = false;
  } else {
    await Web.setContext(c.context);
  }
  out.web.push(pick(web['get' + method[c.kind]](c.key, c.default)));
}
await Server.close();
await Web.close();
console.log(JSON.stringify(out));
