// The Prometheus text format (0.0.4), parsed, and what the dashboard computes from two scrapes.

// text -> Map(name -> [{labels: {k: v}, value: Number}])
export function parse(text) {
  const out = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line[0] === "#") continue;
    let i = 0;
    while (i < line.length && line[i] !== "{" && line[i] !== " " && line[i] !== "\t") i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === "{") {
      i++;
      for (;;) {
        while (line[i] === " " || line[i] === ",") i++;
        if (line[i] === "}" || i >= line.length) { i++; break; }
        const eq = line.indexOf("=", i);
        if (eq < 0) break;
        const k = line.slice(i, eq).trim();
        i = eq + 1;
        if (line[i] !== '"') break;
        i++;
        let v = "";
        while (i < line.length && line[i] !== '"') {
          if (line[i] === "\\" && i + 1 < line.length) {
            const c = line[i + 1];
            v += c === "n" ? "\n" : c;
            i += 2;
          } else {
            v += line[i++];
          }
        }
        i++; // the closing quote
        labels[k] = v;
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const value = parseValue(rest[0]);
    if (!name || value === undefined) continue;
    if (!out.has(name)) out.set(name, []);
    out.get(name).push({ labels, value });
  }
  return out;
}

function parseValue(s) {
  if (s === undefined || s === "") return undefined;
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  const v = Number(s);
  return Number.isNaN(v) ? undefined : v;
}

export function series(m, name) {
  return (m && m.get(name)) || [];
}

// Sum of a family's samples grouped by a function of the labels (null: skipped).
export function groupSum(m, name, keyOf) {
  const g = new Map();
  for (const s of series(m, name)) {
    const k = keyOf(s.labels);
    if (k === null || k === undefined) continue;
    g.set(k, (g.get(k) || 0) + s.value);
  }
  return g;
}

// Per-second rates between two grouped sums (a counter that went down restarted: its new value).
export function rates(prev, cur, seconds) {
  const r = new Map();
  if (!prev || !(seconds > 0)) return r;
  for (const [k, v] of cur) {
    const p = prev.get(k) || 0;
    r.set(k, (v >= p ? v - p : v) / seconds);
  }
  return r;
}

// Cumulative histogram buckets (Map le -> count, le as a number, Infinity last) -> the q-quantile,
// interpolated linearly within the bucket as PromQL's histogram_quantile does. null without data.
export function quantile(buckets, q) {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  if (!les.length) return null;
  const total = buckets.get(les[les.length - 1]);
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevLe = 0, prevCount = 0;
  for (const le of les) {
    const c = buckets.get(le);
    if (c >= rank) {
      if (le === Infinity) return prevLe; // beyond the last finite bound: its bound
      if (c === prevCount) return le;
      return prevLe + (le - prevLe) * (rank - prevCount) / (c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

// The bucket counts added between two scrapes, for the samples of `name` whose labels pass `keep`.
export function bucketDelta(prevM, curM, name, keep) {
  const sumBy = (m) => {
    const b = new Map();
    for (const s of series(m, name)) {
      if (!keep(s.labels)) continue;
      const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
      b.set(le, (b.get(le) || 0) + s.value);
    }
    return b;
  };
  const p = sumBy(prevM), c = sumBy(curM);
  const d = new Map();
  for (const [le, v] of c) d.set(le, Math.max(0, v - (p.get(le) || 0)));
  return d;
}
