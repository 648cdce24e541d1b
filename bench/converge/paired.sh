#!/bin/sh
# Paired timing of hactl converge against the floor (and, optionally,
# another hactl binary), alternating in short rounds so that load from other
# processes falls on all alike (a shared machine's load shifts within the
# minute run.sh takes per tool).
# Needs the tree run.sh left under $WORK (run run.sh first).
#
# Usage: bench/converge/paired.sh
# Env:   WORK   (default /tmp/hactl-bench-converge)
#        MODE   noop (default): everything converged; also times `hactl --help`
#               first: empty target before every run
#               drift: 10 files changed from outside before every run
#        OTHER  path of a second hactl binary (e.g. one built from main) timed
#               alongside $WORK/bin/hactl on its own target
#        ROUNDS (default 15), RUNS (per command per round, default 5)
set -eu
WORK=${WORK:-/tmp/hactl-bench-converge}
MODE=${MODE:-noop}
ROUNDS=${ROUNDS:-15}
RUNS=${RUNS:-5}
OTHER=${OTHER:-}
T_F=$WORK/target-floor
T_H=$WORK/target-hactl
T_O=$WORK/target-other
F="$WORK/bin/floor $WORK/tpl/app.conf.tpl $T_F"
H="$WORK/bin/hactl converge $WORK/hactl/bench.hcl --node bench-1 --root $T_H"
O="$OTHER converge $WORK/hactl/bench.hcl --node bench-1 --root $T_O"
S="$WORK/bin/hactl --help" # start-up alone: every package's init, cobra, no work
out="$WORK/results/paired-$MODE"
rm -rf "$out"
mkdir -p "$out"
$H >/dev/null && $F >/dev/null # converged, and hactl's compiled form cached
[ -z "$OTHER" ] || $O >/dev/null

prep() { # target -> the --prepare command of MODE
	case $MODE in
	noop) echo true ;;
	first) echo "rm -rf $1" ;;
	drift) echo "$WORK/bin/drift $1" ;;
	*) echo "unknown MODE $MODE" >&2; exit 2 ;;
	esac
}
# Commands and their --prepare, in order; names for the summary.
set -- --prepare "$(prep "$T_F")" "$F" --prepare "$(prep "$T_H")" "$H"
names="floor hactl"
if [ -n "$OTHER" ]; then
	set -- "$@" --prepare "$(prep "$T_O")" "$O"
	names="$names other"
fi
if [ "$MODE" = noop ]; then
	set -- "$@" --prepare true "$S"
	names="$names hactl--help"
fi
i=0
while [ $i -lt "$ROUNDS" ]; do
	hyperfine -N --style none --runs "$RUNS" --export-json "$out/$i.json" "$@" >/dev/null 2>&1
	i=$((i + 1))
done
stat() { # command index -> "median min max" over all rounds, in seconds
	jq -r -s "[.[].results[$1].times[]] | sort | \"\(.[length/2|floor]) \(.[0]) \(.[-1])\"" "$out"/*.json
}
echo "MODE=$MODE, $((ROUNDS * RUNS)) runs each, load $(cut -d' ' -f1-3 /proc/loadavg)"
fm=$(stat 0 | cut -d' ' -f1)
k=0
for n in $names; do
	set -- $(stat $k)
	printf '%-12s median %.4f s  (min %.4f, max %.4f)  %.2fx floor\n' "$n" "$1" "$2" "$3" "$(echo "$1 / $fm" | bc -l)"
	k=$((k + 1))
done
