// crosscheck.js: evaluate generated (rule, context) cases with @openfeature/flagd-core's
// targeting (json-logic-engine 5 + flagd's custom operators, exactly as flagd-core wires
// them) and with gatehouse's src/flags/jsonlogic.c through tests/flags/jl_driver.c, and
// count mismatches. Usage (see README):
//   node tests/flags/crosscheck.js NODE_MODULES_DIR DRIVER [N] [SEED]
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { createRequire } = require('module');

const [nmDir, driver, nArg, seedArg] = process.argv.slice(2);
const N = +(nArg || 20000);
let seed = +(seedArg || 12345) >>> 0;

// flagd-core does not export its Targeting class: load its CommonJS bundle and return it.
const corePath = path.join(nmDir, '@openfeature/flagd-core/index.cjs.js');
const req = createRequire(corePath);
const src = fs.readFileSync(corePath, 'utf8');
const mod = { exports: {} };
const Targeting = new Function('require', 'exports', 'module', src + '\nreturn Targeting;')(req, mod.exports, mod);
const logger = { debug() {}, info() {}, warn() {}, error() {} };

function rnd() { // xorshift32
  seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
  return seed / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const chance = (p) => rnd() < p;

const KEYS = ['email', 'age', 'tier', 'version', 'country', 'tags', 'user.id', 'user.plan', 'score', 'beta', 'nums', 'targetingKey', 'missingKey', 'nul', '$flagd.flagKey', 'tags.0', 'nums.1', 'email.length'];
const STRS = ['', 'a', 'abc', 'gold', 'silver', 'alice@example.com', 'bob@corp.io', '1', '10', '2.5', ' 3 ', 'abc1', 'null', 'true', '1.2.3', 'v1.2.3', '2.0.0-beta.1', '1.2', 'x.y', '0x10', 'Infinity', '-1', 'é', 'DE', 'US'];
const VERS = ['1.2.3', 'v1.2.3', 'V2.0.0', '2.0.0-alpha', '2.0.0-alpha.1', '2.0.0-alpha.beta', '2.0.0-beta.2', '2.0.0-beta.11', '2.0.0-rc.1', '2.0.0', '2.0.0+build.5', '1.2', '1', '01.2.3', '1.2.3.4', 'v1', ' 1.2.3', '1.02.3', 'vv1.2.3', '10.20.30', '1.0.0-0A', 'abc', '', '1.2.x', '3.0', '1.2.3-01'];
const NUMS = [0, 1, -1, 2, 3, 10, 2.5, -0.5, 100, 1e21, 7, 42, 0.1, 1e-7, 123456789];

function genScalar() {
  const k = rnd();
  if (k < 0.35) return pick(STRS);
  if (k < 0.7) return pick(NUMS);
  if (k < 0.82) return chance(0.5);
  return null;
}
function genCtx() {
  const c = {};
  if (chance(0.85)) c.targetingKey = chance(0.9) ? 'user-' + Math.floor(rnd() * 100000) : pick(['', 0, 7, 'é-ü']);
  if (chance(0.7)) c.email = pick(['alice@example.com', 'bob@corp.io', 'carol@example.org', '', 'x']);
  if (chance(0.7)) c.age = chance(0.7) ? Math.floor(rnd() * 90) : pick(['30', 'abc', null, true, '']);
  if (chance(0.6)) c.tier = pick(['gold', 'silver', 'bronze', '', null]);
  if (chance(0.6)) c.version = pick(VERS);
  if (chance(0.5)) c.country = pick(['DE', 'US', 'FR', 'de']);
  if (chance(0.5)) c.tags = pick([[], ['a'], ['a', 'b'], ['beta', 'x'], [1, 2], ['gold']]);
  if (chance(0.5)) c.user = pick([{ id: 5, plan: 'pro' }, { id: '5' }, {}, { plan: null }]);
  if (chance(0.5)) c.score = pick(NUMS);
  if (chance(0.5)) c.beta = chance(0.5);
  if (chance(0.4)) c.nums = pick([[1, 2, 3], [], [5], [2.5, -1], [0, 0]]);
  if (chance(0.2)) c.nul = null;
  return c;
}

function v() { return { var: pick(KEYS) }; }
function vdef() { return { var: [pick(KEYS), genScalar()] }; }

function gen(d) {
  if (d <= 0 || chance(0.25)) return chance(0.5) ? genScalar() : (chance(0.8) ? v() : vdef());
  const op = pick(['==', '===', '!=', '!==', '<', '<=', '>', '>=', 'between', 'between2', '!', '!!', 'or', 'and',
    'if', 'max', 'min', '+', '-', '*', '/', '%', 'in', 'inarr', 'cat', 'substr', 'merge', 'map', 'filter', 'reduce',
    'all', 'none', 'some', 'missing', 'missing_some', 'fractional', 'fractional2', 'sem_ver', 'starts_with',
    'ends_with']);
  const g = () => gen(d - 1);
  switch (op) {
    case 'between': return { '<': [g(), g(), g()] };
    case 'between2': return { '<=': [pick(NUMS), v(), pick(NUMS)] };
    case '!': case '!!': return chance(0.5) ? { [op]: [g()] } : { [op]: g() };
    case 'or': case 'and': return { [op]: Array.from({ length: 1 + Math.floor(rnd() * 3) }, g) };
    case 'if': return { if: Array.from({ length: 1 + Math.floor(rnd() * 5) }, g) };
    case 'max': case 'min': return { [op]: Array.from({ length: Math.floor(rnd() * 3) + 1 }, () => chance(0.8) ? pick(NUMS) : g()) };
    case '+': case '*': case '-': case '/': case '%':
      return { [op]: Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => chance(0.5) ? pick(NUMS.filter((x) => x)) : (chance(0.7) ? v() : g())) };
    case 'in': return { in: [g(), pick(STRS.concat(['alice@example.com']))] };
    case 'inarr': return { in: [g(), chance(0.5) ? pick([['gold', 'silver'], [1, 2, '3'], [], ['DE', 'FR']]) : v()] };
    case 'cat': return { cat: Array.from({ length: 1 + Math.floor(rnd() * 3) }, g) };
    case 'substr': {
      const a = [chance(0.7) ? pick(STRS.concat(['abcdef', 'hello world'])) : v(), pick([0, 1, 2, -1, -3, 10, -10])];
      if (chance(0.6)) a.push(pick([0, 1, 2, -1, -2, 5, -10]));
      return { substr: a };
    }
    case 'merge': return { merge: Array.from({ length: Math.floor(rnd() * 3) }, () => chance(0.5) ? [genScalar()] : g()) };
    case 'map': return { map: [pick([{ var: 'nums' }, { var: 'tags' }, [1, 2, 3], { merge: [1, { var: 'age' }] }]), pick([{ '*': [{ var: '' }, 2] }, { var: '' }, { cat: [{ var: '' }, '!'] }, 1])] };
    case 'filter': return { filter: [pick([{ var: 'nums' }, { var: 'tags' }, [1, 2, 3, 4]]), pick([{ '>': [{ var: '' }, 1] }, { '==': [{ var: '' }, 'a'] }, true, { '%': [{ var: '' }, 2] }])] };
    case 'reduce': return { reduce: [pick([{ var: 'nums' }, [1, 2, 3], { var: 'tags' }, []]), pick([{ '+': [{ var: 'accumulator' }, { var: 'current' }] }, { cat: [{ var: 'accumulator' }, { var: 'current' }] }, { max: [{ var: 'accumulator' }, { var: 'current' }] }]), pick([0, '', 10, null])].slice(0, chance(0.8) ? 3 : 2) };
    case 'all': case 'none': case 'some': return { [op]: [pick([{ var: 'nums' }, { var: 'tags' }, [], [1, 2]]), pick([{ '>': [{ var: '' }, 0] }, { in: [{ var: '' }, ['a', 'b']] }, { '==': [{ var: '' }, 1] }])] };
    case 'missing': return { missing: Array.from({ length: Math.floor(rnd() * 3) }, () => pick(KEYS)) };
    case 'missing_some': return { missing_some: [Math.floor(rnd() * 3), Array.from({ length: Math.floor(rnd() * 3) }, () => pick(KEYS))] };
    case 'fractional': {
      const n = 1 + Math.floor(rnd() * 4);
      const b = Array.from({ length: n }, (_, i) => chance(0.85) ? ['v' + i, pick([0, 1, 10, 25, 50, 33, 100, 2147483647 >> n])] : ['v' + i]);
      return { fractional: b };
    }
    case 'fractional2': {
      const by = pick([{ var: 'email' }, { cat: [{ var: '$flagd.flagKey' }, { var: 'email' }] }, { var: 'targetingKey' }, 'static-key', { var: 'age' }]);
      return { fractional: [by, ['on', 50], ['off', 50]] };
    }
    case 'sem_ver': return { sem_ver: [chance(0.7) ? { var: 'version' } : pick(VERS), pick(['=', '!=', '<', '<=', '>', '>=', '^', '~']), pick(VERS)] };
    case 'starts_with': case 'ends_with': return { [op]: [chance(0.7) ? v() : genScalar(), pick(['a', 'al', '@example.com', '', 'io', 'g', 1])] };
    default: return { [op]: [g(), g()] };
  }
}

// Fixed cases: edge cases of the operators flagd users rely on.
const fixed = [
  [{ fractional: [['a', 50], ['b', 50]] }, { targetingKey: 'user-1' }],
  [{ fractional: [['a', 50], ['b', 50]] }, {}],
  [{ fractional: [['a', 50], ['b', 50]] }, { targetingKey: '' }],
  [{ fractional: [{ var: 'email' }, ['a'], ['b'], ['c']] }, { email: 'x@y.z' }],
  [{ fractional: [['a', 0], ['b', 0]] }, { targetingKey: 'u' }],
  [{ fractional: [[null, 1], [1, 1], [true, 1]] }, { targetingKey: 'u9' }],
  [{ sem_ver: ['1.2.3', '^', '1.9.0'] }, {}],
  [{ sem_ver: [1.2, '=', '1.2.0'] }, {}],
  [{ '<': [1, { var: 'age' }, 10] }, { age: 5 }],
  [{ '==': [null, 0] }, {}], [{ '==': [0, null] }, {}], [{ '==': ['', null] }, {}],
  [{ '<': ['a', 'b'] }, {}], [{ '<': ['10', '9'] }, {}], [{ '<': ['10', 9] }, {}],
  [{ substr: ['hello', -3, -1] }, {}], [{ substr: ['hello', 1, 2] }, {}],
  [{ cat: ['a', null, 1.5] }, {}], [{ cat: { var: 'tags' } }, { tags: ['a', null, 'b'] }],
  [{ in: ['b', 'abc'] }, {}], [{ in: ['', ''] }, {}], [{ in: [1, [1, 2]] }, {}],
  [{ var: ['x', 5] }, { x: null }], [{ var: 'a.b.0' }, { a: { b: [7] } }], [{ var: '' }, 1],
  [{ '!': [[]] }, {}], [{ '!!': [{}] }, {}], [{ '!!': { var: 'tags' } }, { tags: [] }],
  [{ reduce: [[1, 2, 3], { '+': [{ var: 'accumulator' }, { var: 'current' }] }, 0] }, {}],
  [{ '/': [1, 0] }, {}], [{ '%': [5, 0] }, {}], [{ max: ['1', 2] }, {}], [{ '+': ['1', '2'] }, {}],
  [{ starts_with: [{ var: 'email' }, 'al'] }, { email: 'alice' }], [{ ends_with: [null, 'x'] }, {}],
  [{ var: '$flagd.flagKey' }, {}],
];

function evalRef(rule, ctx, flag) {
  let t;
  try { t = new Targeting(rule, logger); } catch (e) { return { err: 'compile' }; }
  try { return { v: t.evaluate(flag, ctx) }; } catch (e) { return { err: 'eval' }; }
}

const cases = fixed.map(([rule, ctx]) => ({ rule, ctx, flag: 'my-flag' }));
while (cases.length < N) cases.push({ rule: gen(1 + Math.floor(rnd() * 3)), ctx: genCtx(), flag: pick(['my-flag', 'new-checkout', 'f']) });

const now = Math.floor(Date.now() / 1000);
const input = cases.map((c) => JSON.stringify({ ...c, now })).join('\n') + '\n';
const out = execFileSync(driver, [], { input, maxBuffer: 1 << 28 }).toString().trim().split('\n').map((l) => JSON.parse(l));

// JSON.stringify maps undefined/NaN/Infinity to null as a JSON client of flagd sees them.
const norm = (x) => JSON.parse(JSON.stringify({ v: x === undefined ? null : x })).v;
// Known, explained differences (see README): each mismatch is put in one of these.
const known = {
  utf16Hash: 'fractional over a non-ASCII bucketing string: flagd-core hashes UTF-16 code units (imurmurhash), gatehouse and Go flagd hash UTF-8 bytes',
  wholeContext: '{"var": ""} at the root: flagd-core returns the context with its injected $flagd object, gatehouse the caller\'s context object',
  strictArity: 'a fixed-arity or literal-argument error inside a 1-2 argument "if" branch: gatehouse rejects the rule at compile time, flagd-core only fails if the branch runs',
};
function classify(c, r, m) {
  const txt = JSON.stringify(c);
  if (/[^\x00-\x7f]/.test(txt) && txt.includes('fractional')) return 'utf16Hash';
  if (JSON.stringify(c.rule).includes('{"var":""}') && !r.err && !m.err) return 'wholeContext';
  if (m.err === 'compile' && !r.err && txt.includes('"if"')) return 'strictArity';
  return 'unexplained';
}
let mism = 0, errBoth = 0, cErrJsEval = 0, same = 0;
const cats = {};
const shown = [];
cases.forEach((c, i) => {
  const r = evalRef(c.rule, c.ctx, c.flag);
  const m = out[i];
  let ok;
  if (r.err || m.err) {
    ok = !!(r.err && m.err);
    if (ok) { errBoth++; if (r.err !== m.err) cErrJsEval++; }
  } else ok = JSON.stringify(norm(r.v)) === JSON.stringify(m.v === undefined ? null : m.v);
  if (ok) { same++; return; }
  mism++;
  const cat = classify(c, r, m);
  cats[cat] = (cats[cat] || 0) + 1;
  if (cat === 'unexplained' && shown.length < 25) shown.push({ rule: c.rule, ctx: c.ctx, ref: r.err ? r : { v: norm(r.v) }, c: m });
});
for (const s of shown) console.log(JSON.stringify(s));
for (const [k, n] of Object.entries(cats)) console.log(`  ${n} x ${k}${known[k] ? ': ' + known[k] : ''}`);
console.log(`cases ${cases.length}, agree ${same} (both error ${errBoth}, of which compile-vs-eval ${cErrJsEval}), mismatches ${mism}, unexplained ${cats.unexplained || 0}`);
process.exit(cats.unexplained ? 1 : 0);
