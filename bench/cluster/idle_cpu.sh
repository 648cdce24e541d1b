#!/usr/bin/env bash
# Idle CPU per node of the blog (8 local nodes), the agent apart from its
# services. Brings examples/blog up in a throw-away state directory, lets it
# settle, then samples utime+stime of every process of each node (found
# through HACTL_NODE_DIR in /proc/PID/environ) over WINDOW seconds, COUNT
# windows in a row, and destroys the cluster. Per node and window it prints
#   agent     the `hactl agent` process alone (gossip, raft, control loop and
#             its periodic converge runs)
#   services  the node's other processes (`hactl serve` web/lb/mail/repo)
#   total     both
#   runs      converge runs the agent finished inside the window (from its
#             hactl_agent_run_duration_seconds_count on :7480/metrics, read
#             just outside the window), so a window "between runs" is one
#             with runs=0 (interval 30 s + splay 5 s: use windows of 10-15 s
#             to get many of those)
# and at the end, per build, the median and range of the agent's share for
# the leader and the other nodes, over all windows and over run-free ones.
#
# IDLE_BINS="label=/path/to/hactl ..." measures prebuilt binaries instead of
# building this checkout (labels: letters, digits and _), one cluster after
# the other, ROUNDS times in alternation (paired comparison on a shared
# machine). IDLE_ENV_<label>
# holds extra environment (VAR=value ...) for that label's cluster (the
# local provider passes its environment on to the node processes).
# IDLE_SETTLE is how long to wait after apply before the first window
# (seconds, default 20).
# Usage: [IDLE_BINS=...] bench/cluster/idle_cpu.sh [WINDOW [COUNT [ROUNDS]]]
#        (default 30 1 1; needs go, python3)
set -euo pipefail
WINDOW=${1:-30}
COUNT=${2:-1}
ROUNDS=${3:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/hactl-bench-cpu.XXXXXX)
export NO_COLOR=1
BINS=${IDLE_BINS:-}
if [ -z "$BINS" ]; then
  (cd "$ROOT" && go build -o "$WORK/hactl" ./cmd/hactl)
  BINS="this=$WORK/hactl"
fi
cp -rL "$ROOT/examples/blog" "$WORK/blog"
CUR_BIN=
cleanup() {
  if [ -n "$CUR_BIN" ]; then "$CUR_BIN" destroy -auto-approve "$WORK/blog" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

sample() { # one window: prints "label node agent% services% total% runs leader?" lines
  python3 - "$HACTL_STATE_DIR" "$WINDOW" "$1" "$2" <<'EOF'
import os, sys, time, urllib.request, re
state, window, label, leader = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
tck = os.sysconf("SC_CLK_TCK")
prefix = state.rstrip("/") + "/"
def procs():
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        d = next((e[len(b"HACTL_NODE_DIR="):].decode() for e in env if e.startswith(b"HACTL_NODE_DIR=")), "")
        if not d.startswith(prefix) or "/nodes/" not in d:
            continue
        node = d.split("/nodes/")[1].split("/")[0]
        kind = "agent" if len(cmd) > 1 and cmd[1] == b"agent" else "services"
        f = stat[stat.rindex(")") + 2:].split()
        out[pid] = (node, kind, int(f[11]) + int(f[12]))
    return out
def addr(node):
    import json
    md = json.load(open(f"{state}/blog/nodes/{node}/meta-data.json"))
    return md["local-ipv4"]
def runs(nodes):
    out = {}
    for n in nodes:
        try:
            a = addr(n)
            body = urllib.request.urlopen(f"http://{a}:7480/metrics", timeout=2).read().decode()
            out[n] = sum(float(m) for m in re.findall(r'^hactl_agent_run_duration_seconds_count\{[^}]*\} (\S+)$', body, re.M))
        except Exception:
            out[n] = None
    return out
p0 = procs()
nodes = sorted({v[0] for v in p0.values()})
r0 = runs(nodes)
p0 = procs(); t0 = time.monotonic()
time.sleep(window)
p1 = procs(); t1 = time.monotonic()
r1 = runs(nodes)
acc = {}
for pid, (node, kind, t) in p1.items():
    base = p0[pid][2] if pid in p0 else 0  # a process started inside the window counts from 0
    acc.setdefault(node, {"agent": 0, "services": 0})[kind] += t - base
el = t1 - t0
for n in nodes:
    a = acc.get(n, {"agent": 0, "services": 0})
    ag, sv = a["agent"] / tck / el * 100, a["services"] / tck / el * 100
    nr = "?" if r0.get(n) is None or r1.get(n) is None else str(int(r1[n] - r0[n]))
    lead = "leader" if n.split(".")[0] == leader else "-"
    print(f"{label} {n} {ag:.3f} {sv:.3f} {ag+sv:.3f} {nr} {lead}")
EOF
}

RESULTS=$WORK/results
: > "$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
  for lb in $BINS; do
    label=${lb%%=*} bin=${lb#*=}
    export HACTL_STATE_DIR=$WORK/state-$label-$round
    CUR_BIN=$bin
    envvar=IDLE_ENV_$label
    # shellcheck disable=SC2086 # word splitting of VAR=value pairs is intended
    env ${!envvar:-} "$bin" apply -auto-approve "$WORK/blog" >/dev/null
    sleep "${IDLE_SETTLE:-20}"
    for i in $(seq 1 "$COUNT"); do
      LEADER=$("$bin" status -json "$WORK/blog" | python3 -c 'import json,sys; c=json.load(sys.stdin).get("control") or {}; print((c.get("leader") or "?").split("@")[0])')
      echo "== $label round $round window $i of $COUNT ($WINDOW s), load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%H:%M:%S) UTC"
      printf '%-12s %8s %9s %8s %5s\n' node agent% services% total% runs
      sample "$label" "$LEADER" | tee -a "$RESULTS" | awk '{printf "%-12s %8.2f %9.2f %8.2f %5s %s\n", $2, $3, $4, $5, $6, ($7=="leader" ? "<- leader" : "")}'
    done
    "$bin" destroy -auto-approve "$WORK/blog" >/dev/null 2>&1 || true
    CUR_BIN=
    rm -rf "$HACTL_STATE_DIR"
  done
done
echo "== summary: agent % of a core, median (min-max, windows)"
python3 - "$RESULTS" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def show(label, who, runfree):
    xs = [float(r[2]) for r in rows if r[0] == label and (r[6] == "leader") == (who == "leader") and (not runfree or r[5] == "0")]
    if not xs:
        return "n/a"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f}, n={len(xs)})"
for label in dict.fromkeys(r[0] for r in rows):
    for who in ("leader", "others"):
        print(f"{label:10s} {who:7s} all windows {show(label, who, False):28s} run-free windows {show(label, who, True)}")
EOF
