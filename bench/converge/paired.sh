#!/bin/sh
# Paired no-op timing: hactl converge (and hactl's bare start-up, --help)
# against the floor, alternating in
# short rounds so that load from other processes falls on both alike (a
# shared machine's load shifts within the minute run.sh takes per tool).
# Needs the tree run.sh left under $WORK (run run.sh first).
#
# Usage: bench/converge/paired.sh   Env: WORK (default /tmp/hactl-bench-converge),
#        ROUNDS (default 15), RUNS (per tool per round, default 5)
set -eu
WORK=${WORK:-/tmp/hactl-bench-converge}
ROUNDS=${ROUNDS:-15}
RUNS=${RUNS:-5}
H="$WORK/bin/hactl converge $WORK/hactl/bench.hcl --node bench-1 --root $WORK/target-hactl"
F="$WORK/bin/floor $WORK/tpl/app.conf.tpl $WORK/target-floor"
S="$WORK/bin/hactl --help" # start-up alone: every package's init, cobra, no work
out="$WORK/results/paired"
rm -rf "$out"
mkdir -p "$out"
$H >/dev/null && $F >/dev/null # converged, and hactl's compiled form cached
i=0
while [ $i -lt "$ROUNDS" ]; do
	hyperfine -N --style none --runs "$RUNS" --export-json "$out/$i.json" "$F" "$H" "$S" >/dev/null 2>&1
	i=$((i + 1))
done
med() { # command index -> median over all rounds, in seconds
	jq -s "[.[].results[$1].times[]] | sort | .[length/2|floor]" "$out"/*.json
}
f=$(med 0)
h=$(med 1)
s=$(med 2)
printf 'medians over %d runs each: floor-noop %.4f s, hactl-noop %.4f s, hactl --help %.4f s\n' $((ROUNDS * RUNS)) "$f" "$h" "$s"
printf 'hactl-noop/floor-noop %.2fx; hactl start-up alone/floor-noop %.2fx\n' "$(echo "$h / $f" | bc -l)" "$(echo "$s / $f" | bc -l)"
