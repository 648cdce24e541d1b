#!/usr/bin/env bash
# Idle CPU of the raft leader's node against the other nodes of the blog
# (8 local nodes). Brings examples/blog up in a throw-away state directory,
# lets it settle, samples utime+stime of every process of each node (found
# through HACTL_NODE_DIR in /proc/PID/environ) over WINDOW seconds, prints
# each node's share of one core and the leader's, COUNT times in a row, and
# destroys the cluster. Each window includes the agents' own periodic runs
# (interval 30 s + splay), as an idle node does.
# Usage: bench/cluster/idle_cpu.sh [WINDOW [COUNT]]   (default 30 1; needs go, python3)
set -euo pipefail
WINDOW=${1:-30}
COUNT=${2:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/hactl-bench-cpu.XXXXXX)
BIN=$WORK/hactl
export HACTL_STATE_DIR=$WORK/state NO_COLOR=1
(cd "$ROOT" && go build -o "$BIN" ./cmd/hactl)
cp -rL "$ROOT/examples/blog" "$WORK/blog"
cleanup() { "$BIN" destroy -auto-approve "$WORK/blog" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" apply -auto-approve "$WORK/blog" >/dev/null
sleep 20
TCK=$(getconf CLK_TCK)
# node name -> summed ticks of its processes
ticks() {
  for p in /proc/[0-9]*; do
    d=$(tr '\0' '\n' 2>/dev/null < "$p/environ" | sed -n "s|^HACTL_NODE_DIR=$HACTL_STATE_DIR/.*/nodes/||p") || continue
    [ -n "$d" ] || continue
    t=$(awk '{print $14+$15}' "$p/stat" 2>/dev/null) || continue
    echo "$d $t"
  done | awk '{s[$1]+=$2} END {for (k in s) print k, s[k]}' | sort
}
LEADER=$("$BIN" status -json "$WORK/blog" | python3 -c 'import json,sys; c=json.load(sys.stdin).get("control") or {}; print((c.get("leader") or "?").split("@")[0])')
for i in $(seq 1 "$COUNT"); do
  echo "window $i of $COUNT ($WINDOW s), load: $(cut -d' ' -f1-3 /proc/loadavg)"
  ticks > "$WORK/t0"; sleep "$WINDOW"; ticks > "$WORK/t1"
  join "$WORK/t0" "$WORK/t1" | awk -v w="$WINDOW" -v h="$TCK" -v l="$LEADER" '
    { pct = ($3-$2)/h/w*100; printf "%-24s %6.2f%% of a core%s\n", $1, pct, (index($1, l) ? "   <- leader " l : "") }'
done
