#!/usr/bin/env bash
# Agent start-up and idle cost on a local node (not run in CI).
#
#   bench/agent/run.sh [ROUNDS]      (HACTL_BIN=path uses a prebuilt binary)
#
# 1. Start-up: a fresh local node directory (meta-data.json + user-data made
#    by `hactl userdata`, empty root/) and a signed configuration whose web
#    role runs the built-in web service (`hactl serve web`). Time from
#    starting `hactl agent --node-dir DIR` to the web service answering
#    GET /healthz 200 on the node's address. ROUNDS rounds (default 5),
#    median and max.
# 2. Idle: leave the last agent running; after it has converged, sample
#    /proc/<pid>/stat (utime+stime) and VmRSS over 30 s, then over 60 s. With
#    the default interval (30 s + up to 5 s splay) a window holds zero to two
#    no-change runs; the script prints how many.
set -euo pipefail
ROUNDS=${1:-5}
cd "$(dirname "$0")/../.."
W=$(mktemp -d)
AGENT_PID=
cleanup() {
  if [ -n "$AGENT_PID" ]; then kill -TERM "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
if [ -n "${HACTL_BIN:-}" ]; then cp "$HACTL_BIN" "$W/hactl"; else go build -o "$W/hactl" ./cmd/hactl; fi
export XDG_CONFIG_HOME=$W/xdg
ADDR=127.77.0.11
mkdir -p "$W/cfg"
cat > "$W/cfg/main.hcl" <<HCL
cluster "bench" {}

role "web" {
  count = 1
  resource "directory" "www" {
    path = "/srv/www"
  }
  resource "file" "index" {
    path    = "/srv/www/index.html"
    content = "hello from \${node.name}\n"
  }
  resource "service" "web" {
    name       = "web"
    command    = ["hactl", "serve", "web", "--root", "\${node.dir}/srv/www", "--listen", "\${node.address}:8080"]
    depends_on = [file.index]
  }
}
HCL
"$W/hactl" publish "$W/cfg" --repo "$W/repo.git" >/dev/null 2>&1
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
times=()
for i in $(seq 1 "$ROUNDS"); do
  N=$W/node-$i
  mkdir -p "$N"
  "$W/hactl" userdata web --config "$W/cfg" --remote "$W/repo.git" > "$N/user-data"
  echo "{\"instance-id\":\"web-1.g$i\",\"local-hostname\":\"web-1\",\"local-ipv4\":\"$ADDR\",\"cluster\":\"bench\",\"role\":\"web\",\"slot\":1,\"generation\":$i}" > "$N/meta-data.json"
  t0=$(now_ms)
  "$W/hactl" agent --node-dir "$N" >"$N/agent.log" 2>&1 &
  AGENT_PID=$!
  until curl -fsS -o /dev/null "http://$ADDR:8080/healthz" 2>/dev/null; do
    if [ $(( $(now_ms) - t0 )) -gt 30000 ]; then echo "round $i: not healthy after 30 s"; cat "$N/agent.log"; exit 1; fi
    sleep 0.005
  done
  t1=$(now_ms)
  times+=($((t1 - t0)))
  echo "round $i: agent start -> web healthy in $((t1 - t0)) ms"
  if [ "$i" -lt "$ROUNDS" ]; then
    kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true; AGENT_PID=
    while curl -fsS -o /dev/null "http://$ADDR:8080/healthz" 2>/dev/null; do sleep 0.05; done
  fi
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
echo "start-up: median ${sorted[$(( ROUNDS / 2 ))]} ms, max ${sorted[$(( ROUNDS - 1 ))]} ms over $ROUNDS rounds"

# Idle cost of the last agent.
sleep 2
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$AGENT_PID/stat"; }
runs() { curl -fsS "http://$ADDR:7480/v1/status" | awk -F': ' '/"runs"/ {gsub(",","",$2); print $2}'; }
for window in 30 60; do
  r0=$(runs); c0=$(cpu); t0=$(now_ms)
  sleep "$window"
  c1=$(cpu); t1=$(now_ms); r1=$(runs)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
  awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v rss="$rss" -v runs="$((r1 - r0))" 'BEGIN {
    cpu = (c1 - c0) / tck; wall = (t1 - t0) / 1000
    printf "idle: RSS %.1f MB, CPU %.2f s over %.1f s = %.3f%% of one core (%d converge runs in the window)\n", rss / 1024, cpu, wall, 100 * cpu / wall, runs
  }'
done
