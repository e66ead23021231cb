// gatehouse dashboard: polls the admin API (/metrics, /upstreams, /cache, /protection/top,
// /v1/analytics, /v1/experiments/{id}/results, /v1/slos, /v1/tenants) and draws what it finds.

import * as api from "./api.js";
import * as prom from "./prom.js";
import { History, TimeChart } from "./charts.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const POLL_S = Math.min(60, Math.max(1, Number(params.get("poll")) || 3)); // ?poll=SECONDS (1..60)
const CONFIG_EVERY_S = 30;
const NO_UPLOT = "uPlot was not embedded when gatehouse was built (npm could not install it): tables only.";
const SCRAPES_KEPT = 200;

const state = {
  running: false,
  timer: null,
  operator: null, // true: the operator key; false: a tenant key (no operator endpoints)
  tenants: [],
  configAt: 0,
  scrapes: [], // [{t, m}] the last SCRAPES_KEPT parsed /metrics
  hist: {},
  charts: {},
};

// ------------------------------------------------------------------ formatting and DOM helpers

function fmt(x, digits = 2) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "-∞";
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 1) return x.toFixed(digits);
  if (a === 0) return "0";
  return x.toPrecision(Math.max(1, digits));
}

const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : (100 * x).toFixed(1) + "%");

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

// A table from column specs [{h, n (numeric)}] and rows of cells (strings, numbers or Nodes).
function fillTable(table, cols, rows, empty = "nothing yet") {
  table.innerHTML = "";
  const tr = el("tr");
  for (const c of cols) tr.append(el("th", c.n ? { class: "n" } : {}, c.h));
  table.append(el("thead", {}, tr));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: String(cols.length), class: "muted" }, empty)));
  }
  for (const r of rows) {
    const row = el("tr");
    r.forEach((cell, i) => {
      const v = typeof cell === "number" ? fmt(cell) : cell;
      row.append(el("td", cols[i] && cols[i].n ? { class: "n" } : {}, v));
    });
    body.append(row);
  }
  table.append(body);
}

function tiles(container, items) {
  container.innerHTML = "";
  for (const [k, v, cls] of items) {
    container.append(el("div", { class: "tile" + (cls ? " " + cls : "") }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)));
  }
}

function badge(text, kind) {
  return el("span", { class: "badge " + kind }, text);
}

function setStatus(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

const OPERATOR_PANELS = ["overview", "traffic", "status-mix", "latency", "protection", "cache", "upstreams", "analytics",
                         "experiments"];

function showNotice(text) {
  const n = $("notice");
  n.hidden = !text;
  n.textContent = text || "";
}

function operatorOnly(container) {
  container.innerHTML = "";
  container.append(el("p", { class: "muted" }, "the operator key is needed for this"));
}

// ------------------------------------------------------------------ login

function showLogin(message) {
  stop();
  $("main").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
  setStatus("");
  const err = $("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("key").focus();
}

function loginMessage(e) {
  if (e.status === 401) return "That key was not accepted (401 Unauthorized): check it and try again.";
  if (e.status === 403) return "That key may not read its tenant (403 Forbidden: it lacks the read scope).";
  if (e.status === 429) return "Too many requests to the admin API (429): wait a moment and try again.";
  if (e.status === 0) return "The admin listener did not answer.";
  return `The admin API answered ${e.message}.`;
}

async function login(key) {
  const button = $("login-button");
  button.disabled = true;
  try {
    await api.get("/v1/tenants?limit=1", { key });
  } catch (e) {
    showLogin(loginMessage(e));
    return;
  } finally {
    button.disabled = false;
  }
  api.setKey(key);
  $("key").value = "";
  start();
}

// ------------------------------------------------------------------ polling

function stop() {
  state.running = false;
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  $("login-error").hidden = true;
  for (const id of OPERATOR_PANELS) $(id).hidden = false;
  showNotice(typeof window.uPlot === "function" ? "" : NO_UPLOT);
  state.running = true;
  state.operator = null;
  state.scrapes = [];
  state.configAt = 0;
  state.hist = {
    tenants: new History(SCRAPES_KEPT), routes: new History(SCRAPES_KEPT), status: new History(SCRAPES_KEPT),
    latency: new History(SCRAPES_KEPT), protection: new History(SCRAPES_KEPT), cache: new History(SCRAPES_KEPT),
  };
  const top8 = (h) => {
    const last = (n) => { const c = h.cols.get(n); for (let i = c.length - 1; i >= 0; i--) if (c[i] !== null) return c[i]; return 0; };
    const total = (n) => h.cols.get(n).reduce((a, b) => a + (b || 0), 0);
    return h.names().sort((a, b) => total(b) - total(a) || last(b) - last(a) || (a < b ? -1 : 1)).slice(0, 8).sort();
  };
  const sorted = (h) => h.names().sort();
  state.charts = {
    tenants: new TimeChart($("chart-tenants"), { unit: "/s", names: sorted }),
    routes: new TimeChart($("chart-routes"), { unit: "/s", names: top8 }),
    status: new TimeChart($("chart-status"), { unit: "/s", names: (h) => sorted(h).filter((n) => h.cols.get(n).some((v) => v > 0)) }),
    latency: new TimeChart($("chart-latency"), { unit: " ms", digits: 3, names: () => ["p50", "p90", "p99"] }),
    protection: new TimeChart($("chart-protection"), { unit: "/s", names: sorted }),
    cache: new TimeChart($("chart-cache"), { unit: "%", digits: 1, names: (h) => h.names().includes("hit ratio") ? ["hit ratio"] : [] }),
  };
  tick();
}

async function tick() {
  if (!state.running) return;
  const t0 = Date.now();
  try {
    await refresh();
    setStatus(`updated ${new Date().toLocaleTimeString()} · every ${POLL_S} s`);
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) {
      api.clearKey();
      showLogin("The key is no longer accepted (401 Unauthorized): log in again.");
      return;
    }
    setStatus("update failed: " + e.message, true);
    console.error(e);
  }
  if (state.running) state.timer = setTimeout(tick, Math.max(200, POLL_S * 1000 - (Date.now() - t0)));
}

// A request whose failure (other than 401) is shown in its panel rather than stopping the others.
async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    if (e instanceof api.ApiError && e.status === 401) throw e;
    return { ok: false, error: e };
  }
}

async function refresh() {
  const now = Date.now() / 1000;
  if (now - state.configAt >= CONFIG_EVERY_S) {
    state.tenants = await api.getAll("/v1/tenants");
    state.configAt = now;
    renderConfig();
  }
  const metrics = await settle(api.get("/metrics", { text: true }));
  if (!metrics.ok && metrics.error.status === 403) {
    // a tenant key: its configuration and SLOs; the rest is the operator's
    state.operator = false;
    const names = state.tenants.map((t) => t.name).join(", ");
    $("who").textContent = "tenant key: " + names;
    for (const id of OPERATOR_PANELS) $(id).hidden = true;
    showNotice(`Logged in with a key of ${names}: metrics, upstreams, cache, protection, analytics and experiment ` +
               "results need the operator key. Shown: the tenant's configuration and SLOs.");
    await refreshSlos();
    return;
  }
  if (!metrics.ok) throw metrics.error;
  state.operator = true;
  $("who").textContent = "operator";
  const m = prom.parse(metrics.value);
  state.scrapes.push({ t: now, m });
  if (state.scrapes.length > SCRAPES_KEPT) state.scrapes.shift();
  updateHistories();
  renderTraffic();
  const [ups, cache, top] = await Promise.all([settle(api.get("/upstreams")), settle(api.get("/cache")),
                                               settle(api.get("/protection/top"))]);
  renderProtection(top);
  renderCache(cache);
  renderUpstreams(ups);
  renderOverview(ups);
  await Promise.all([refreshAnalytics(), refreshExperiments(), refreshSlos()]);
}

// ------------------------------------------------------------------ metrics over time

const REQ = "gatehouse_requests_total";
const DUR = "gatehouse_request_duration_seconds_bucket";
const PROT = "gatehouse_protection_decisions_total";
const CACHE = "gatehouse_cache_requests_total";
const routeKey = (l) => `${l.tenant}/${l.route}`;
const protKey = (l) => (l.action === "allow" || l.action === "pass" ? null : `${l.reason} (${l.action})`);

function latencyKeep() {
  const sel = $("latency-route").value;
  return sel ? (l) => routeKey(l) === sel : () => true;
}

function latencyPoint(prev, cur) {
  const d = prom.bucketDelta(prev.m, cur.m, DUR, latencyKeep());
  const q = (x) => { const v = prom.quantile(d, x); return v === null ? null : v * 1000; };
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99) };
}

function updateHistories() {
  const s = state.scrapes;
  const cur = s[s.length - 1], prev = s[s.length - 2];
  if (!prev) return;
  const dt = cur.t - prev.t;
  const obj = (map) => Object.fromEntries(map);
  const rate = (name, keyOf) => prom.rates(prom.groupSum(prev.m, name, keyOf), prom.groupSum(cur.m, name, keyOf), dt);
  state.hist.tenants.push(cur.t, obj(rate(REQ, (l) => l.tenant)));
  state.hist.routes.push(cur.t, obj(rate(REQ, routeKey)));
  state.hist.status.push(cur.t, obj(rate(REQ, (l) => l.code)));
  state.hist.protection.push(cur.t, obj(rate(PROT, protKey)));
  state.hist.latency.push(cur.t, latencyPoint(prev, cur));
  const c = rate(CACHE, (l) => l.result);
  let hits = 0, all = 0;
  for (const [k, v] of c) { all += v; if (k === "hit" || k === "stale") hits += v; }
  // a gap while nothing was looked up; no chart at all without caching routes
  state.hist.cache.push(cur.t, all > 0 ? { "hit ratio": 100 * hits / all } : c.size ? { "hit ratio": null } : {});
  for (const name of ["tenants", "routes", "status", "protection", "latency", "cache"]) state.charts[name].update(state.hist[name]);
}

// The latency history again, from the scrapes kept, after the route choice changed.
function recomputeLatency() {
  const h = new History(SCRAPES_KEPT);
  for (let i = 1; i < state.scrapes.length; i++) h.push(state.scrapes[i].t, latencyPoint(state.scrapes[i - 1], state.scrapes[i]));
  state.hist.latency = h;
  state.charts.latency.update(h);
}

function currentAndRates() {
  const s = state.scrapes;
  const cur = s[s.length - 1], prev = s[s.length - 2];
  return { cur, prev, dt: prev ? cur.t - prev.t : 0 };
}

function renderTraffic() {
  const { cur, prev, dt } = currentAndRates();
  const byRouteCode = prom.groupSum(cur.m, REQ, (l) => routeKey(l) + "\u0000" + l.code);
  const totals = prom.groupSum(cur.m, REQ, routeKey);
  const r = prev ? prom.rates(prom.groupSum(prev.m, REQ, routeKey), totals, dt) : new Map();
  const routes = [...totals.keys()].sort();
  // the latency choices follow the routes seen
  const sel = $("latency-route");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const k of routes) if (!have.has(k)) sel.append(el("option", { value: k }, k));
  const rows = routes.map((k) => {
    const [tenant, route] = k.split(/\/(.*)/s);
    const code = (c) => byRouteCode.get(k + "\u0000" + c) || 0;
    const b = new Map();
    for (const s of prom.series(cur.m, DUR)) {
      if (routeKey(s.labels) !== k) continue;
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      b.set(le, (b.get(le) || 0) + s.value);
    }
    const q = (x) => { const v = prom.quantile(b, x); return v === null ? null : v * 1000; };
    return [tenant, route, prev ? r.get(k) || 0 : null, totals.get(k), code("2xx"), code("3xx"), code("4xx"), code("5xx"),
            q(0.5), q(0.99)];
  });
  fillTable($("routes-table"), [{ h: "tenant" }, { h: "route" }, { h: "req/s", n: 1 }, { h: "requests", n: 1 },
    { h: "2xx", n: 1 }, { h: "3xx", n: 1 }, { h: "4xx", n: 1 }, { h: "5xx", n: 1 }, { h: "p50 ms", n: 1 },
    { h: "p99 ms", n: 1 }], rows, "no requests yet");
  const byCode = prom.groupSum(cur.m, REQ, (l) => l.code);
  const cr = prev ? prom.rates(prom.groupSum(prev.m, REQ, (l) => l.code), byCode, dt) : new Map();
  const all = [...byCode.values()].reduce((a, b) => a + b, 0);
  fillTable($("status-table"), [{ h: "status" }, { h: "requests", n: 1 }, { h: "share", n: 1 }, { h: "now /s", n: 1 }],
            [...byCode.keys()].filter((c) => byCode.get(c) > 0).sort().map((c) => [c, byCode.get(c), pct(all ? byCode.get(c) / all : null), prev ? cr.get(c) || 0 : null]),
            "no requests yet");
}

function renderOverview(ups) {
  const { cur, prev, dt } = currentAndRates();
  const m = cur.m;
  const total = [...prom.groupSum(m, REQ, () => "all").values()][0] || 0;
  const rate = prev ? ([...prom.rates(prom.groupSum(prev.m, REQ, () => "all"), prom.groupSum(m, REQ, () => "all"), dt).values()][0] || 0) : null;
  const byCode = prom.groupSum(m, REQ, (l) => l.code);
  const b = new Map();
  for (const s of prom.series(m, DUR)) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    b.set(le, (b.get(le) || 0) + s.value);
  }
  const q = (x) => { const v = prom.quantile(b, x); return v === null ? "–" : fmt(v * 1000, 3) + " ms"; };
  const cache = prom.groupSum(m, CACHE, (l) => l.result);
  let hits = 0, lookups = 0;
  for (const [k, v] of cache) { lookups += v; if (k === "hit" || k === "stale") hits += v; }
  const refused = [...prom.groupSum(m, PROT, protKey).values()].reduce((a, v) => a + v, 0);
  const flood = prom.series(m, "gatehouse_protection_flood_mode").filter((s) => s.value > 0).length;
  let up = 0, down = 0;
  if (ups.ok) for (const u of ups.value.upstreams || []) for (const be of u.backends || []) (be.state === "down" ? down++ : up++);
  const err = total ? (byCode.get("5xx") || 0) / total : null;
  tiles($("tiles"), [
    ["requests/s", rate === null ? "–" : fmt(rate)],
    ["requests since start", fmt(total)],
    ["5xx share", pct(err), err > 0.01 ? "bad" : ""],
    ["p50 latency", q(0.5)],
    ["p99 latency", q(0.99)],
    ["cache hit ratio", lookups ? pct(hits / lookups) : "–"],
    ["blocked or challenged", fmt(refused)],
    ["tenants in flood mode", String(flood), flood ? "bad" : ""],
    ["backends up / down", ups.ok ? `${up} / ${down}` : "–", down ? "bad" : ""],
  ]);
}

function renderProtection(top) {
  const { cur } = currentAndRates();
  const flood = prom.series(cur.m, "gatehouse_protection_flood_mode");
  const rateOf = new Map(prom.series(cur.m, "gatehouse_protection_tenant_rate").map((s) => [s.labels.tenant, s.value]));
  const base = new Map(prom.series(cur.m, "gatehouse_protection_tenant_baseline_rate").map((s) => [s.labels.tenant, s.value]));
  const decisions = prom.groupSum(cur.m, PROT, (l) => `${l.tenant}\u0000${l.reason}\u0000${l.action}`);
  fillTable($("flood-table"), [{ h: "tenant" }, { h: "flood mode" }, { h: "rate", n: 1 }, { h: "baseline", n: 1 }],
            flood.map((s) => [s.labels.tenant, s.value > 0 ? badge("on", "bad") : badge("off", "good"),
                              rateOf.has(s.labels.tenant) ? rateOf.get(s.labels.tenant) : null,
                              base.has(s.labels.tenant) ? base.get(s.labels.tenant) : null]),
            "no tenant has flood protection (protection.flood)");
  const rows = top.ok ? (top.value.top_blocked || []).map((x) => [x.key, x.count]) : [];
  fillTable($("top-blocked"), [{ h: "client (tenant/reason key)" }, { h: "refused", n: 1 }], rows,
            top.ok ? "nobody refused" : "unavailable: " + top.error.message);
  const t = $("top-blocked");
  const cap = el("caption", {}, "decisions since start");
  const extra = el("table", { class: "data", id: "decisions-table" });
  fillTable(extra, [{ h: "tenant" }, { h: "reason" }, { h: "action" }, { h: "count", n: 1 }],
            [...decisions.entries()].filter(([, v]) => v > 0).sort().map(([k, v]) => [...k.split("\u0000"), v]), "none");
  extra.prepend(cap);
  const old = $("decisions-table");
  if (old) old.replaceWith(extra); else t.after(extra);
}

function renderCache(cache) {
  const { cur } = currentAndRates();
  const by = prom.groupSum(cur.m, CACHE, (l) => l.result);
  let hits = 0, all = 0;
  for (const [k, v] of by) { all += v; if (k === "hit" || k === "stale") hits += v; }
  const rows = [["hit ratio since start", all ? pct(hits / all) : "–"]];
  for (const k of [...by.keys()].sort()) rows.push([k, by.get(k)]);
  if (cache.ok) for (const [k, v] of Object.entries(cache.value)) rows.push([k, typeof v === "object" ? JSON.stringify(v) : v]);
  fillTable($("cache-table"), [{ h: "cache" }, { h: "value", n: 1 }], rows);
}

function renderUpstreams(ups) {
  if (!ups.ok) { $("upstreams-table").innerHTML = ""; $("upstreams-table").append(el("caption", {}, "unavailable: " + ups.error.message)); return; }
  const rows = [];
  for (const u of ups.value.upstreams || []) {
    for (const b of u.backends || []) {
      const st = b.state === "down" ? badge("down", "bad") : b.state === "up" ? badge("up", "good") : badge(b.state, "warn");
      rows.push([u.name, u.balance, b.address, st, b.drained ? badge("drained", "warn") : "no", b.ejected_by_workers,
                 b.active_requests, b.requests, b.failures, b.latency_ewma_ms, b.last_error || ""]);
    }
  }
  fillTable($("upstreams-table"), [{ h: "pool" }, { h: "balance" }, { h: "backend" }, { h: "health" }, { h: "drained" },
    { h: "ejected by workers", n: 1 }, { h: "active", n: 1 }, { h: "requests", n: 1 }, { h: "failures", n: 1 },
    { h: "latency ms (EWMA)", n: 1 }, { h: "last error" }], rows, "no upstreams");
}

// ------------------------------------------------------------------ configuration, analytics, experiments, SLOs

function routesOf(t) {
  const out = [];
  for (const s of t.sites || []) for (const r of s.routes || []) out.push({ site: s, route: r });
  return out;
}

function renderConfig() {
  const rows = [];
  for (const t of state.tenants) {
    for (const { site, route } of routesOf(t)) {
      const what = route.upstream ? "upstream " + route.upstream : route.respond ? "respond " + (route.respond.status || 200)
        : route.redirect ? "redirect" : "";
      rows.push([t.name, site.name, (site.hosts || []).join(" "), route.name || "", what,
                 route.analytics ? "yes" : "", route.cache ? "yes" : "", route.flag ? route.flag.key || "" : ""]);
    }
    if (!routesOf(t).length) rows.push([t.name, "", "", "", "", "", "", ""]);
  }
  fillTable($("config-table"), [{ h: "tenant" }, { h: "site" }, { h: "hosts" }, { h: "route" }, { h: "to" },
    { h: "analytics" }, { h: "cache" }, { h: "flag" }], rows, "no tenants");
  const sel = $("analytics-route");
  const want = [];
  for (const t of state.tenants) for (const { route } of routesOf(t)) if (route.analytics && route.name) want.push(`${t.name}/${route.name}`);
  const keep = sel.value;
  sel.innerHTML = "";
  for (const k of want) sel.append(el("option", { value: k }, k));
  if (want.includes(keep)) sel.value = keep;
}

async function refreshAnalytics() {
  const sel = $("analytics-route").value;
  const tops = $("analytics-tops"), sum = $("analytics-summary");
  if (!sel) { tops.innerHTML = '<p class="muted">no route has <code>analytics: true</code></p>'; sum.innerHTML = ""; return; }
  const [tenant, route] = sel.split(/\/(.*)/s);
  const q = `tenant=${encodeURIComponent(tenant)}&route=${encodeURIComponent(route)}&window=${$("analytics-window").value}&top=10`;
  const r = await settle(api.get("/v1/analytics?" + q));
  if (!r.ok) { tops.innerHTML = ""; tops.append(el("p", { class: "error" }, "analytics: " + r.error.message)); return; }
  const a = r.value;
  const st = a.status || {};
  const lat = a.latency_ms || {};
  tiles(sum, [
    ["requests", fmt(a.requests)],
    ["visitors (estimate)", a.visitors ? `${fmt(a.visitors.estimate, 1)} ± ${pct(a.visitors.relative_standard_error)}` : "–"],
    ["p50 ms", fmt(lat.p50, 3)], ["p99 ms", fmt(lat.p99, 3)],
    ["4xx", fmt(st["4xx"] || 0)], ["5xx", fmt(st["5xx"] || 0)],
    ["bytes in / out", `${fmt(a.bytes_in)} / ${fmt(a.bytes_out)}`],
  ]);
  tops.innerHTML = "";
  const names = { path: "top paths", referrer: "top referrers", user_agent: "top user agents", client_ip: "top visitors (client IP)", country: "top countries" };
  for (const [k, list] of Object.entries(a.top || {})) {
    const t = el("table", { class: "data", id: "top-" + k });
    fillTable(t, [{ h: names[k] || k }, { h: "requests", n: 1 }, { h: "±", n: 1 }], list.map((x) => [x.key, x.count, x.error || 0]), "none");
    tops.append(el("div", {}, t));
  }
}

// The effect and its intervals on a line with 0 in the middle: the always-valid interval light,
// the 95% one dark, the estimate a tick.
function ciBar(ci95, seq, pt, scale) {
  const box = el("div", { class: "ci", title: `95% [${fmt(ci95[0], 3)}, ${fmt(ci95[1], 3)}], always valid [${fmt(seq[0], 3)}, ${fmt(seq[1], 3)}]` });
  if (!(scale > 0)) return box;
  const x = (v) => `${(50 + 50 * Math.max(-1, Math.min(1, v / scale))).toFixed(2)}%`;
  const zero = el("div", { class: "zero" });
  zero.style.left = "50%";
  box.append(zero);
  for (const [[lo, hi], cls] of [[seq, "bar seq"], [ci95, "bar"]]) {
    if (lo === null || hi === null || lo === undefined) continue;
    const bar = el("div", { class: cls });
    bar.style.left = x(lo);
    bar.style.width = `calc(${x(hi)} - ${x(lo)})`;
    box.append(bar);
  }
  if (pt !== null && pt !== undefined) { const p = el("div", { class: "pt" }); p.style.left = x(pt); box.append(p); }
  return box;
}

async function refreshExperiments() {
  const body = $("experiments-body");
  const exps = [];
  for (const t of state.tenants) for (const e of t.experiments || []) exps.push({ tenant: t.name, id: e.id, flag: e.flag });
  if (!exps.length) { body.innerHTML = '<p class="muted">no experiments configured</p>'; return; }
  const results = await Promise.all(exps.map((e) => settle(api.get(
    `/v1/experiments/${encodeURIComponent(e.id)}/results?tenant=${encodeURIComponent(e.tenant)}`))));
  body.innerHTML = "";
  exps.forEach((e, i) => {
    const box = el("div", { class: "exp", id: `exp-${e.tenant}-${e.id}` });
    box.append(el("h3", {}, `${e.tenant} / ${e.id}`, el("span", { class: "muted" }, ` (flag ${e.flag})`)));
    const r = results[i];
    if (!r.ok) { box.append(el("p", { class: "error" }, "results: " + r.error.message)); body.append(box); return; }
    const x = r.value;
    const srm = x.srm || {};
    const line = el("p");
    line.append(srm.warning ? badge(`SRM warning: p = ${fmt(srm.p, 3)}`, "bad") : badge(`no SRM (p = ${fmt(srm.p, 3)})`, "good"), " ");
    line.append("units: " + Object.entries(x.units || {}).map(([v, n]) => `${v} ${n}`).join(", ") + " · ");
    line.append(el("strong", {}, x.decision || ""));
    box.append(line);
    const rows = [];
    for (const mt of x.metrics || []) {
      for (const c of mt.comparisons || []) {
        const ci95 = c.diff_ci || [null, null], seq = c.seq_ci || [null, null];
        const scale = Math.max(...[...ci95, ...seq, c.diff].map((v) => Math.abs(v || 0)));
        const verdict = c.verdict === "inconclusive" ? badge(c.verdict, "warn")
          : /worse|harm|fail/.test(c.verdict || "") ? badge(c.verdict, "bad") : badge(c.verdict || "–", "good");
        rows.push([mt.name + (mt.guardrail ? " (guardrail)" : ""), mt.kind, `${c.treatment} vs ${x.control}`,
                   (mt.values || {})[x.control], (mt.values || {})[c.treatment], c.diff,
                   ci95[0] !== null ? `[${fmt(ci95[0], 3)}, ${fmt(ci95[1], 3)}]` : "–",
                   seq[0] !== null ? `[${fmt(seq[0], 3)}, ${fmt(seq[1], 3)}]` : "–",
                   ciBar(ci95, seq, c.diff, scale), c.p, verdict]);
      }
    }
    const t = el("table", { class: "data" });
    fillTable(t, [{ h: "metric" }, { h: "kind" }, { h: "comparison" }, { h: "control", n: 1 }, { h: "treatment", n: 1 },
      { h: "effect", n: 1 }, { h: "95% CI", n: 1 }, { h: "always-valid CI", n: 1 }, { h: "interval (0 in the middle)" },
      { h: "p", n: 1 }, { h: "verdict" }], rows, "no metrics");
    box.append(t);
    body.append(box);
  });
}

async function refreshSlos() {
  const body = $("slos-body");
  const r = await settle(api.get("/v1/slos"));
  body.innerHTML = "";
  if (!r.ok) {
    if (r.error.status === 404) body.append(el("p", { class: "muted", id: "slos-none" }, "no SLOs configured"));
    else if (r.error.status === 403) operatorOnly(body);
    else body.append(el("p", { class: "error" }, "SLOs: " + r.error.message));
    return;
  }
  const v = r.value;
  const list = Array.isArray(v) ? v : v.slos || v.items || [];
  if (!list.length) { body.append(el("p", { class: "muted", id: "slos-none" }, "no SLOs configured")); return; }
  const num = (x) => (typeof x === "number" ? x : null);
  const rows = list.map((s) => {
    const burn = s.burn_rates || s.burn_rate || s.burn || {};
    const alerts = s.alerts || s.alert || {};
    const alertCell = el("span");
    for (const [sev, on] of Object.entries(typeof alerts === "object" ? alerts : {})) {
      alertCell.append(badge(`${sev}${on ? " firing" : ""}`, on ? "bad" : "good"), " ");
    }
    const good = s.good !== undefined ? s.good : s.counts && s.counts.good;
    const total = s.total !== undefined ? s.total : s.counts && s.counts.total;
    const budget = num(s.error_budget_remaining !== undefined ? s.error_budget_remaining : s.budget_remaining);
    const objective = (s.objective || "") + (s.threshold_ms !== undefined ? ` < ${fmt(s.threshold_effective_ms ?? s.threshold_ms)} ms` : "");
    return [s.tenant || "", s.route || "(every route)", s.name || s.slo || "", objective, s.target,
            good !== undefined ? `${fmt(good)} / ${fmt(total)}` : "–",
            budget === null ? "–" : el("span", { class: budget < 0 ? "error" : "" }, pct(budget)),
            typeof burn === "object" ? Object.entries(burn).map(([w, b]) => `${w}: ${fmt(b)}`).join(" · ") : String(burn),
            alertCell];
  });
  const t = el("table", { class: "data", id: "slos-table" });
  fillTable(t, [{ h: "tenant" }, { h: "route" }, { h: "SLO" }, { h: "objective" }, { h: "target", n: 1 },
    { h: "good / total" }, { h: "budget left", n: 1 }, { h: "burn rates" }, { h: "alerts" }], rows);
  body.append(t);
}

// ------------------------------------------------------------------ wiring

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  login($("key").value.trim());
});
$("logout").addEventListener("click", () => {
  api.clearKey();
  showLogin("");
});
$("latency-route").addEventListener("change", recomputeLatency);
$("analytics-route").addEventListener("change", () => settle(refreshAnalytics()));
$("analytics-window").addEventListener("change", () => settle(refreshAnalytics()));
window.addEventListener("resize", () => { for (const c of Object.values(state.charts)) c.resize(); });

if (api.getKey() !== null) start();
else showLogin("");
