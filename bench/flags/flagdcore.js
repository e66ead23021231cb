// bench/flags/flagdcore.js: @openfeature/flagd-core (FlagdCore, the evaluator of flagd's JS providers)
// in the same loops as bench/flags/evalbench.c, printing the same lines; the node side of bench/flags.sh.
//   FLAGD_CORE_DIR=.../node_modules/@openfeature/flagd-core node flagdcore.js eval FLAGS CONTEXTS SPEC REPS MIN_MS WARMUP_MS
//       FlagdCore.setConfigurations(FLAGS) once; the contexts are parsed once (plain objects). WARMUP_MS
//       per flag of the same loop first (the JIT compiles the hot paths), then REPS repetitions; in each,
//       every flag in turn over the contexts, pass after pass, until MIN_MS have elapsed. Evaluation is
//       FlagdCore.resolveBooleanEvaluation / resolveStringEvaluation / resolveNumberEvaluation /
//       resolveObjectEvaluation by the SPEC type (what flagd's in-process provider calls).
//         eval <key> <rep> <ns_per_eval> <evaluations> <errors> <cpu share: process CPU / wall (GC threads count)>
//         cpu <user+sys seconds of the measured loops> <their wall seconds>
//   ... variants FLAGS CONTEXTS SPEC    <key> <index> <variant|-> <reason> <value as compact JSON>
//   ... load FILE REPS                  load <ms median> <ms min> <ms max> <heap bytes> <RSS kB delta> <flags>
//       (setConfigurations on a fresh FlagdCore; heap: process.memoryUsage().heapUsed + external after
//       a forced GC with the set held, minus before; needs node --expose-gc, else approximate)
'use strict';
const fs = require('fs');
const { FlagdCore } = require(process.env.FLAGD_CORE_DIR || '@openfeature/flagd-core');

const [mode, a1, a2, a3, a4, a5, a6] = process.argv.slice(2);
const silent = { error() {}, warn() {}, info() {}, debug() {} };

function resolver(core, type) {
    switch (type) {
        case 'bool': return (k, c) => core.resolveBooleanEvaluation(k, false, c, silent);
        case 'string': return (k, c) => core.resolveStringEvaluation(k, '', c, silent);
        case 'int': case 'float': return (k, c) => core.resolveNumberEvaluation(k, 0, c, silent);
        case 'object': return (k, c) => core.resolveObjectEvaluation(k, {}, c, silent);
        default: return (k, c) => core.resolve('object', k, null, c, silent);
    }
}

function parseSpec(s) {
    return s.split(',').map((t) => { const [key, type = 'any'] = t.split(':'); return { key, type }; });
}

function median(a) {
    const s = [...a].sort((x, y) => x - y), n = s.length;
    return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function cpuSeconds() { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; }
const nowNs = () => process.hrtime.bigint();
const out = (line) => process.stdout.write(line + '\n');

if (mode === 'load') {
    const text = fs.readFileSync(a1, 'utf8');
    const reps = Math.max(1, Number(a2 || 3));
    const ms = [];
    let heap = 0, rss = 0, count = 0;
    const mem = () => { if (global.gc) { global.gc(); global.gc(); } const m = process.memoryUsage(); return [m.heapUsed + m.external, m.rss]; };
    for (let r = 0; r < reps; r++) {
        const [h0, r0] = mem();
        const core = new FlagdCore(undefined, silent);
        const t0 = nowNs();
        core.setConfigurations(text);
        ms.push(Number(nowNs() - t0) / 1e6);
        if (r === 0) { const [h1, r1] = mem(); heap = h1 - h0; rss = Math.round((r1 - r0) / 1024); }
        count = core.getFlags().size;
    }
    out(`load\t${median(ms).toFixed(2)}\t${Math.min(...ms).toFixed(2)}\t${Math.max(...ms).toFixed(2)}\t${heap}\t${rss}\t${count}`);
    process.exit(0);
}

if (mode !== 'eval' && mode !== 'variants') {
    console.error('usage: node flagdcore.js eval FLAGS CONTEXTS SPEC REPS MIN_MS WARMUP_MS | variants FLAGS CONTEXTS SPEC | load FILE REPS');
    process.exit(2);
}

const core = new FlagdCore(undefined, silent);
core.setConfigurations(fs.readFileSync(a1, 'utf8'));
const ctx = JSON.parse(fs.readFileSync(a2, 'utf8'));
const spec = parseSpec(a3);

if (mode === 'variants') {
    const lines = [];
    for (const { key, type } of spec) {
        const res = resolver(core, type);
        ctx.forEach((c, i) => {
            const r = res(key, c);
            lines.push(`${key}\t${i}\t${r.variant === undefined ? '-' : r.variant}\t${r.reason}\t${r.value === undefined ? 'null' : JSON.stringify(r.value)}`);
        });
    }
    out(lines.join('\n'));
    process.exit(0);
}

const reps = Number(a4 || 5), minNs = BigInt(Math.round(Number(a5 || 300) * 1e6)), warmNs = BigInt(Math.round(Number(a6 || 1000) * 1e6));
let sink = 0;

// One measured loop: the flag over the contexts, pass after pass, for at least `budget` ns.
function loop(key, res, budget) {
    let evals = 0, errors = 0, acc = 0;
    const c0 = cpuSeconds(), t0 = nowNs();
    let t1;
    do {
        for (let i = 0; i < ctx.length; i++) {
            const r = res(key, ctx[i]);
            acc += r.variant ? r.variant.length : 0;
            if (r.reason === 'ERROR') errors++;
        }
        evals += ctx.length;
        t1 = nowNs();
    } while (t1 - t0 < budget);
    sink += acc;
    const share = (cpuSeconds() - c0) / (Number(t1 - t0) / 1e9);
    return [Number(t1 - t0) / evals, evals, errors, share];
}

const fns = spec.map(({ key, type }) => [key, resolver(core, type)]);
for (const [key, res] of fns) loop(key, res, warmNs);
const c0 = cpuSeconds(), w0 = nowNs();
for (let r = 1; r <= reps; r++) {
    for (const [key, res] of fns) {
        const [ns, evals, errors, share] = loop(key, res, minNs);
        out(`eval\t${key}\t${r}\t${ns.toFixed(2)}\t${evals}\t${errors}\t${share.toFixed(3)}`);
    }
}
out(`cpu\t${(cpuSeconds() - c0).toFixed(3)}\t${(Number(nowNs() - w0) / 1e9).toFixed(3)}`);
if (sink === -1) out('');
