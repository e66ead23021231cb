// Drives the dashboard in Debian's headless Chromium (playwright-core, no browser download) for
// tests/integration/test_dashboard.py: a wrong key, then the operator key; waits for the charts and
// panels, saves screenshots, and prints one JSON report (tables, canvas pixel counts, texts) on
// stdout for the Python side to check.
//
//   node dashboard.mjs ADMIN_URL OPERATOR_KEY OUT_DIR [POLL_SECONDS [TENANT_KEY]]

import { chromium } from "playwright-core";

const [base, key, outDir, poll = "1", tenantKey] = process.argv.slice(2);
if (!base || !key || !outDir) {
  console.error("usage: node dashboard.mjs ADMIN_URL OPERATOR_KEY OUT_DIR [POLL_SECONDS]");
  process.exit(2);
}
const url = `${base}/dashboard/?poll=${poll}`;
const report = { console: [], requests: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server"],
  timeout: 20000,
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on("console", (m) => report.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => report.console.push(`pageerror: ${e.message}`));
  page.on("request", (r) => report.requests.push({ url: r.url(), auth: r.headers()["authorization"] || null }));

  // a wrong key: the login form stays, with the error
  await page.goto(url);
  await page.fill("#key", "not-the-key");
  await page.click("#login-button");
  await page.waitForSelector("#login-error:not([hidden])");
  report.loginError = await page.textContent("#login-error");
  report.mainHiddenAfterWrongKey = await page.isHidden("#main");
  report.storedAfterWrongKey = await page.evaluate(() => sessionStorage.length);
  await page.screenshot({ path: `${outDir}/login-error.png` });

  // the operator key
  await page.fill("#key", key);
  await page.click("#login-button");
  await page.waitForSelector("#main:not([hidden])");
  // charts with a few points each (rates need two scrapes), the experiment, analytics and SLO panels
  await page.waitForFunction(() => {
    const charts = ["chart-tenants", "chart-routes", "chart-status", "chart-latency", "chart-protection", "chart-cache"];
    return charts.every((id) => document.querySelector(`#${id} canvas`)) &&
      document.querySelectorAll("#routes-table tbody tr").length > 1 &&
      document.querySelector("#experiments-body table") && document.querySelector("#top-path") &&
      document.querySelector("#slos-body").textContent.length > 0 &&
      document.querySelector("#upstreams-table tbody td");
  }, null, { timeout: 20000, polling: 200 });
  // let three more polls draw lines
  await page.waitForTimeout(3500 * Number(poll));

  report.storage = await page.evaluate(() => Object.keys(sessionStorage));
  report.url = page.url();
  report.data = await page.evaluate(() => {
    const tables = {};
    for (const t of document.querySelectorAll("table[id]")) {
      tables[t.id] = [...t.querySelectorAll("tr")].map((tr) => [...tr.children].map((c) => c.textContent.trim()));
    }
    // each chart canvas: distinct colours, and pixels in the series' colours (charts.js: the first five)
    const PALETTE = [[0x1f, 0x6f, 0xeb], [0xd1, 0x24, 0x2f], [0x1a, 0x7f, 0x37], [0xbf, 0x87, 0x00], [0x82, 0x50, 0xdf]];
    const canvases = {};
    for (const c of document.querySelectorAll(".chart")) {
      const cv = c.querySelector("canvas");
      if (!cv) { canvases[c.id] = null; continue; }
      const ctx = cv.getContext("2d");
      const d = ctx.getImageData(0, 0, cv.width, cv.height).data;
      const colours = new Set();
      let series = 0, painted = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] === 0) continue;
        painted++;
        colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        if (PALETTE.some(([r, g, b]) => Math.abs(d[i] - r) < 30 && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30)) series++;
      }
      canvases[c.id] = { width: cv.width, height: cv.height, colours: colours.size, painted, series,
                         legend: [...c.querySelectorAll(".u-legend .u-label")].map((x) => x.textContent) };
    }
    return {
      tables, canvases,
      who: document.getElementById("who").textContent,
      status: document.getElementById("status").textContent,
      tiles: document.getElementById("tiles").textContent,
      experiments: document.getElementById("experiments-body").textContent,
      slos: document.getElementById("slos-body").textContent,
      analytics: document.getElementById("analytics-summary").textContent,
      notice: document.getElementById("notice").hidden ? "" : document.getElementById("notice").textContent,
      text: document.body.innerText,
    };
  });
  await page.screenshot({ path: `${outDir}/dashboard.png`, fullPage: true });
  await page.locator("#chart-tenants").screenshot({ path: `${outDir}/chart-tenants.png` });
  await page.locator("#chart-latency").screenshot({ path: `${outDir}/chart-latency.png` });
  await page.locator("#experiments").screenshot({ path: `${outDir}/experiments.png` });

  // logging out forgets the key
  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  report.storageAfterLogout = await page.evaluate(() => sessionStorage.length);

  // a tenant key: its tenant's configuration; the operator's panels say they need the operator key
  if (tenantKey) {
    await page.fill("#key", tenantKey);
    await page.click("#login-button");
    await page.waitForFunction(() => document.getElementById("who").textContent.startsWith("tenant key"));
    await page.waitForSelector("#config-table tbody td");
    report.tenant = await page.evaluate(() => ({
      who: document.getElementById("who").textContent,
      config: [...document.querySelectorAll("#config-table tbody tr")].map((tr) => tr.children[0].textContent),
      notice: document.getElementById("notice").textContent,
      hidden: [...document.querySelectorAll("main > section")].filter((x) => x.hidden).map((x) => x.id),
      slos: document.getElementById("slos-body").textContent,
    }));
    await page.screenshot({ path: `${outDir}/tenant.png` });
  }
} catch (e) {
  // what the page showed, for the test's message
  report.error = String(e && e.message || e);
  try {
    const page = browser.contexts()[0].pages()[0];
    report.failureText = await page.evaluate(() => document.body.innerText);
    await page.screenshot({ path: `${outDir}/failure.png`, fullPage: true });
  } catch (e2) { /* the browser is gone */ }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exitCode = report.error ? 1 : 0;
