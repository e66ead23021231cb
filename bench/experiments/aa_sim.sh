#!/usr/bin/env bash
# bench/experiments/aa_sim.sh: the A/A simulation of the experiment statistics (issue: "does peeking
# inflate false positives, and does sequential testing fix it?"), after `make`.
#
#   bash bench/experiments/aa_sim.sh                 10,000 experiments, ~3 s on the 2-vCPU VM
#   EXPERIMENTS=2000 SEED=7 bash bench/experiments/aa_sim.sh
#
# Builds bench/experiments/aa_sim.c against build/libgatehouse.a (a copy, as bench/flags.sh builds
# evalbench) and runs it: EXPERIMENTS A/A experiments (both arms the same: conversion Bernoulli P,
# revenue lognormal(0, 1)), PER_DAY units per arm per day for DAYS days, a look after every day with
# the fixed-horizon tests (gh_stats_prop, gh_stats_welch: p < ALPHA) and with the confidence sequence
# (gh_stats_seq_ci, tuned at N_STAR). Prints the false-positive rates under daily peeking and at the
# final look, with Wilson 95% intervals, the command and the machine; also writes
# bench/out/aa_sim-<stamp>.md.
#
# Environment: EXPERIMENTS (10000) DAYS (30) PER_DAY (200) P (0.1) ALPHA (0.05) N_STAR (5000) SEED (1)
# GH_LIB (build/libgatehouse.a).

set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
case "${1:-}" in -h | --help) sed -n '2,/^$/p' "$0"; exit 0 ;; esac

EXPERIMENTS=${EXPERIMENTS:-10000}
DAYS=${DAYS:-30}
PER_DAY=${PER_DAY:-200}
P=${P:-0.1}
ALPHA=${ALPHA:-0.05}
N_STAR=${N_STAR:-5000}
SEED=${SEED:-1}
GH_LIB=${GH_LIB:-$ROOT/build/libgatehouse.a}

[ -f "$GH_LIB" ] || { echo "aa_sim.sh: $GH_LIB not found: run make first" >&2; exit 1; }
TMPD=$(mktemp -d /tmp/gh-aa.XXXXXX) || exit 1
trap 'rm -rf "$TMPD"' EXIT
cp "$GH_LIB" "$TMPD/libgatehouse.a"
cc -std=gnu11 -D_GNU_SOURCE= -O2 -Wall -Wextra -Werror -Wshadow -I"$ROOT/src" -o "$TMPD/aa_sim" \
    "$HERE/aa_sim.c" "$TMPD/libgatehouse.a" -lm || { echo "aa_sim.sh: build failed" >&2; exit 1; }

CMD="EXPERIMENTS=$EXPERIMENTS DAYS=$DAYS PER_DAY=$PER_DAY P=$P ALPHA=$ALPHA N_STAR=$N_STAR SEED=$SEED bash bench/experiments/aa_sim.sh"
t0=$(date +%s.%N)
"$TMPD/aa_sim" --experiments "$EXPERIMENTS" --days "$DAYS" --per-day "$PER_DAY" --p "$P" --alpha "$ALPHA" \
    --n-star "$N_STAR" --seed "$SEED" >"$TMPD/out.md" || { echo "aa_sim.sh: aa_sim failed" >&2; exit 1; }
t1=$(date +%s.%N)

mkdir -p "$ROOT/bench/out"
MD=$ROOT/bench/out/aa_sim-$(date +%Y%m%d-%H%M%S).md
{
    echo "# gatehouse A/A simulation, $(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo
    echo '```'
    echo "command: $CMD"
    echo "machine: $(nproc --all) vCPU, $(grep -m1 'model name' /proc/cpuinfo | sed 's/^.*: //'), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), kernel $(uname -r)"
    echo "cc: $(cc --version | head -1); libgatehouse.a: sha256 $(sha256sum "$GH_LIB" | cut -c1-16), built $(date -r "$GH_LIB" '+%Y-%m-%d %H:%M')"
    echo "runtime: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f s", b - a }')"
    echo '```'
    echo
    cat "$TMPD/out.md"
} >"$MD"
cat "$MD"
echo
echo "markdown: $MD"
