// bench/flags/gen.js: the inputs of bench/flags.sh, deterministic (seeded PRNG), written to DIR:
//   node gen.js DIR CONTEXTS BIG_FLAGS SEED
//   DIR/flags.json     the three benchmark flags (flagd definition):
//                        static-flag    boolean, no targeting (reason STATIC)
//                        targeted-flag  string, "if" over an "and" of 5 conditions on context attributes
//                                       (==, in, starts_with, >=, sem_ver): gold when all hold, else silver
//                        split-flag     string, fractional over 3 variants (34/33/33), bucketed as flagd
//                                       does by default: flagKey + targetingKey
//   DIR/contexts.json  CONTEXTS evaluation contexts (JSON array): targetingKey and 9 other attributes;
//                      each of the 5 conditions holds for ~87% of them, so ~half match all 5 (the
//                      "and" then evaluates all 5) and the others stop at a varying condition
//   DIR/bodies.txt     the same contexts as OFREP request bodies, {"context": {...}}, one per line
//   DIR/flags-big.json BIG_FLAGS flags (f00000 ...), a third of each kind above with varying constants,
//                      weights and metadata, plus one shared $evaluators rule used by 1 flag in 10
//   DIR/flags-big-{static,targeting,fractional}.json  the same flags split by kind
'use strict';
const fs = require('fs');
const path = require('path');

const [dir, nctx = '1000', nbig = '10000', seedArg = '7'] = process.argv.slice(2);
if (!dir) {
    console.error('usage: node gen.js DIR CONTEXTS BIG_FLAGS SEED');
    process.exit(2);
}

// mulberry32: a small seeded PRNG, so every run (and both engines) sees the same inputs.
let seed = Number(seedArg) >>> 0;
function rnd() {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const P_HOLD = 0.87;

const IN_COUNTRIES = ['DE', 'FR', 'NL', 'SE', 'US'];
const OUT_COUNTRIES = ['BR', 'JP', 'IN', 'CA', 'ES'];

function targetingRule(plan, countries, prefix, seats, version) {
    return {
        if: [
            {
                and: [
                    { '==': [{ var: 'plan' }, plan] },
                    { in: [{ var: 'country' }, countries] },
                    { starts_with: [{ var: 'email' }, prefix] },
                    { '>=': [{ var: 'seats' }, seats] },
                    { sem_ver: [{ var: 'appVersion' }, '>=', version] },
                ],
            },
            'gold',
            'silver',
        ],
    };
}

const flags = {
    flags: {
        'static-flag': { state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'on' },
        'targeted-flag': {
            state: 'ENABLED',
            variants: { gold: 'gold', silver: 'silver', none: 'none' },
            defaultVariant: 'none',
            targeting: targetingRule('enterprise', IN_COUNTRIES, 'admin', 50, '2.3.0'),
        },
        'split-flag': {
            state: 'ENABLED',
            variants: { a: 'a', b: 'b', c: 'c' },
            defaultVariant: 'a',
            targeting: { fractional: [['a', 34], ['b', 33], ['c', 33]] },
        },
    },
};

function version(hold) {
    if (hold) {
        const v = `${int(2, 4)}.${int(3, 9)}.${int(0, 20)}`;
        const r = rnd();
        if (r < 0.05) return 'v' + v;                       // "v" prefix, as flagd allows
        if (r < 0.10) return v + '-beta.' + int(1, 5);      // pre-release of a later version
        return v;
    }
    return pick([`1.${int(0, 9)}.${int(0, 20)}`, `2.${int(0, 2)}.${int(0, 20)}`, '2.3.0-rc.1']);
}

const contexts = [];
for (let i = 0; i < Number(nctx); i++) {
    const h = () => rnd() < P_HOLD;
    contexts.push({
        targetingKey: `user-${i}-${Math.floor(rnd() * 0xffffffff).toString(16)}`,
        plan: h() ? 'enterprise' : pick(['free', 'pro', 'team']),
        country: h() ? pick(IN_COUNTRIES) : pick(OUT_COUNTRIES),
        email: h() ? `admin${i}@corp.example` : `user${i}@example.com`,
        seats: h() ? int(50, 500) : int(1, 49),
        appVersion: version(h()),
        region: pick(['eu-west', 'eu-central', 'us-east', 'ap-south']),
        beta: rnd() < 0.3,
        age: int(18, 80),
        userAgent: pick(['ios', 'android', 'web-chrome', 'web-firefox']),
    });
}

const big = { flags: {}, $evaluators: { isStaff: { ends_with: [{ var: 'email' }, '@corp.example'] } }, metadata: { flagSetId: 'bench-10k', version: '1' } };
for (let i = 0; i < Number(nbig); i++) {
    const key = 'f' + String(i).padStart(5, '0');
    const meta = { owner: `team-${i % 50}`, ticket: i };
    switch (i % 3) {
        case 0:
            big.flags[key] = { state: i % 97 === 0 ? 'DISABLED' : 'ENABLED', variants: { on: true, off: false }, defaultVariant: i % 2 ? 'on' : 'off', metadata: meta };
            break;
        case 1:
            big.flags[key] = {
                state: 'ENABLED',
                variants: { gold: 'gold', silver: 'silver', none: 'none' },
                defaultVariant: 'none',
                targeting: i % 10 === 1
                    ? { if: [{ $ref: 'isStaff' }, 'gold', 'silver'] }
                    : targetingRule(pick(['enterprise', 'pro', 'team']), IN_COUNTRIES.slice(0, int(1, 5)), pick(['admin', 'ops', 'dev']), int(1, 100), `${int(1, 3)}.${int(0, 9)}.0`),
                metadata: meta,
            };
            break;
        default: {
            const a = int(1, 60), b = int(1, 60), c = int(1, 60);
            big.flags[key] = {
                state: 'ENABLED',
                variants: { a: 'a', b: 'b', c: 'c' },
                defaultVariant: 'a',
                targeting: { fractional: [['a', a], ['b', b], ['c', c]] },
                metadata: meta,
            };
        }
    }
}

fs.writeFileSync(path.join(dir, 'flags.json'), JSON.stringify(flags, null, 1));
fs.writeFileSync(path.join(dir, 'contexts.json'), JSON.stringify(contexts));
fs.writeFileSync(path.join(dir, 'bodies.txt'), contexts.map((c) => JSON.stringify({ context: c })).join('\n') + '\n');
fs.writeFileSync(path.join(dir, 'flags-big.json'), JSON.stringify(big));
// the big set split by kind (static, targeting, fractional), for the memory per flag of each kind
['static', 'targeting', 'fractional'].forEach((kind, k) => {
    const sub = { flags: {}, $evaluators: big.$evaluators };
    Object.keys(big.flags).forEach((key, i) => { if (i % 3 === k) sub.flags[key] = big.flags[key]; });
    fs.writeFileSync(path.join(dir, `flags-big-${kind}.json`), JSON.stringify(sub));
});
