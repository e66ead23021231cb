// Time series kept in the page, and uPlot charts of them.

const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#bf8700", "#8250df", "#0a7f8f", "#e16f24", "#bf3989",
                 "#57606a", "#116329"];

// Columns of values over time: push({name: value}) each poll; a series that appears later has
// nulls before (gaps in the chart).
export class History {
  constructor(max = 200) {
    this.max = max;
    this.t = [];
    this.cols = new Map();
  }

  push(t, values) {
    this.t.push(t);
    const n = this.t.length;
    for (const [name, v] of Object.entries(values)) {
      if (!this.cols.has(name)) this.cols.set(name, new Array(n - 1).fill(null));
    }
    for (const [name, col] of this.cols) col.push(name in values ? values[name] : null);
    if (this.t.length > this.max) {
      this.t.shift();
      for (const col of this.cols.values()) col.shift();
    }
  }

  names() {
    return [...this.cols.keys()];
  }
}

const color = (i) => PALETTE[i % PALETTE.length];

// A chart of a History in a container: redrawn in place while its series stay the same, made anew
// when they change.
export class TimeChart {
  constructor(el, { unit = "", digits = 2, names = null } = {}) {
    this.el = el;
    this.unit = unit;
    this.digits = digits;
    this.pick = names; // (history) -> the series to show, in order
    this.plot = null;
    this.key = "";
    el.innerHTML = "";
    this.titleEl = document.createElement("div");
    this.titleEl.className = "ctitle";
    this.titleEl.textContent = el.dataset.title || "";
    this.body = document.createElement("div");
    el.append(this.titleEl, this.body);
  }

  width() {
    return Math.max(300, Math.floor(this.el.clientWidth || 600));
  }

  update(history) {
    if (typeof window.uPlot !== "function") {
      this.body.innerHTML = '<p class="empty">charts unavailable: uPlot was not embedded at build time</p>';
      return;
    }
    const names = this.pick ? this.pick(history) : history.names();
    if (!names.length || history.t.length < 1) {
      if (this.plot) { this.plot.destroy(); this.plot = null; this.key = ""; }
      this.body.innerHTML = '<p class="empty">no data yet</p>';
      return;
    }
    const data = [history.t.slice(), ...names.map((n) => history.cols.get(n).slice())];
    const key = names.join("\u0000");
    if (this.plot && key === this.key) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.body.innerHTML = "";
    const unit = this.unit, digits = this.digits;
    const fmt = (u, v) => (v === null || v === undefined ? "–" : v.toFixed(digits) + unit);
    this.key = key;
    this.plot = new window.uPlot({
      width: this.width(),
      height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{ stroke: "#8d96a0", grid: { stroke: "rgba(128,128,128,.15)" } },
             { stroke: "#8d96a0", grid: { stroke: "rgba(128,128,128,.15)" }, size: 60 }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: color(i), width: 2, value: fmt, spanGaps: false,
                                               points: { show: history.t.length < 3, size: 6 } }))],
    }, data, this.body);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: 220 });
  }
}
