#!/usr/bin/env bash
# Side-by-side failover benchmark: keepalived (VRRP) against hactl.
#
# keepalived: two network namespaces (hb-ka1, hb-ka2) and a client namespace
# (hb-kc) on one bridged segment (10.77.0.0/24); the VIP 10.77.0.100 lives on
# that segment and each keepalived node serves HTTP on :8000 (python3
# http.server) answering its own name. ka1 has the higher priority. Per
# repetition: wait until the client gets "ka1" from the VIP, SIGKILL ka1's
# keepalived processes and web server (a crashed machine), then measure
#   detection = kill -> ka2 has the VIP bound (it entered MASTER)
#   failover  = kill -> the client's HTTP GET to the VIP is answered by ka2
# then restart ka1 (it preempts the VIP back). Two settings: advert_int 1
# (the default) and 0.01 (VRRPv3 centiseconds, the fastest keepalived takes).
#
# hactl: bench/cluster/failover_test.go (three in-process nodes on loopback
# with DefaultConfig timings: lb-1, lb-2, witness; kill the VIP holder).
#
# Needs root, iproute2, keepalived (apt-get install -y keepalived), python3,
# curl. Usage: sudo [MODES='default fastest hactl'] bench/cluster/failover.sh [REPS]   (default 10)
set -euo pipefail
REPS=${1:-10}
VIP=10.77.0.100
WORK=$(mktemp -d /tmp/hactl-bench-ka.XXXXXX)
PIDS=()

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for f in "$WORK"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for ns in hb-ka1 hb-ka2 hb-kc; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9; ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

setup_net() {
  for ns in hb-ka1 hb-ka2 hb-kc; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip -n hb-kc link add br0 type bridge
  ip -n hb-kc link set br0 up
  local i=1
  for ns in hb-ka1 hb-ka2; do
    ip link add "hbv$i" netns "$ns" type veth peer name "hbp$i" netns hb-kc
    ip -n "$ns" link set "hbv$i" name eth0
    ip -n "$ns" addr add "10.77.0.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n hb-kc link set "hbp$i" master br0
    ip -n hb-kc link set "hbp$i" up
    i=$((i+1))
  done
  ip -n hb-kc addr add 10.77.0.50/24 dev br0
}

# start_node NAME PRIO ADVERT
start_node() {
  local name=$1 prio=$2 adv=$3 ns=hb-$1
  cat > "$WORK/$name.conf" <<CONF
global_defs {
  router_id $name
  vrrp_version 3
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 77
  priority $prio
  advert_int $adv
  virtual_ipaddress {
    $VIP/24
  }
}
CONF
  mkdir -p "$WORK/www-$name"; echo "$name" > "$WORK/www-$name/index.html"
  if [ ! -f "$WORK/$name-web.pid" ] || ! kill -0 "$(cat "$WORK/$name-web.pid")" 2>/dev/null; then
    setsid -f ip netns exec "$ns" sh -c 'echo $$ > "$1"; exec python3 -m http.server 8000 --bind 0.0.0.0 --directory "$2"' sh "$WORK/$name-web.pid" "$WORK/www-$name" >/dev/null 2>&1
  fi
  rm -f "$WORK/$name-ka.pid" "$WORK/$name-vrrp.pid"
  setsid -f ip netns exec "$ns" keepalived --dont-fork --vrrp --use-file "$WORK/$name.conf" \
    --pid "$WORK/$name-ka.pid" --vrrp_pid "$WORK/$name-vrrp.pid" --log-detail >"$WORK/$name.log" 2>&1
  local deadline=$(( $(now_ms) + 10000 ))
  until [ -s "$WORK/$name-vrrp.pid" ] && [ -s "$WORK/$name-ka.pid" ] && [ -s "$WORK/$name-web.pid" ]; do
    [ "$(now_ms)" -gt "$deadline" ] && { echo "$name did not start (see $WORK/$name.log)" >&2; exit 1; }
    sleep 0.02
  done
}

kill_node() {
  local name=$1
  # The VRRP child first: killing the parent first makes the child exit
  # gracefully and send a priority-0 advert, which is not a crash.
  for f in "$WORK/$name-vrrp.pid" "$WORK/$name-ka.pid" "$WORK/$name-web.pid"; do
    [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  # A dead machine's address is gone with it; keepalived killed with -9
  # leaves the VIP configured in the namespace, so remove it as a crash would.
  ip -n "hb-$name" addr del "$VIP/24" dev eth0 2>/dev/null || true
}

answer() { ip netns exec hb-kc curl -s --max-time 0.2 "http://$VIP:8000/" 2>/dev/null || true; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

run_keepalived() {
  local adv=$1 label=$2 det=() fo=()
  start_node ka1 150 "$adv"; start_node ka2 100 "$adv"
  for r in $(seq 1 "$REPS"); do
    local deadline=$(( $(now_ms) + 30000 ))
    until [ "$(answer)" = "ka1" ]; do
      [ "$(now_ms)" -gt "$deadline" ] && { echo "keepalived $label: ka1 never served the VIP" >&2; exit 1; }
      sleep 0.05
    done
    # Past the kernel's neighbour locktime (1 s): a gratuitous ARP right
    # after ka1's own would be ignored by the client.
    sleep 1.5
    local t0; t0=$(now_ms); kill_node ka1
    local d=0 f=0
    while [ "$d" = 0 ] || [ "$f" = 0 ]; do
      if [ "$d" = 0 ] && ip -n hb-ka2 -br addr show dev eth0 | grep -q "$VIP"; then d=$(( $(now_ms) - t0 )); fi
      if [ "$f" = 0 ] && [ "$(answer)" = "ka2" ]; then f=$(( $(now_ms) - t0 )); fi
      [ $(( $(now_ms) - t0 )) -gt 30000 ] && { echo "keepalived $label: no failover in 30 s" >&2; exit 1; }
    done
    echo "keepalived $label rep $r: detection ${d}ms failover ${f}ms"
    det+=("$d"); fo+=("$f")
    start_node ka1 150 "$adv"
  done
  kill_node ka1; kill_node ka2
  echo "RESULT keepalived $label reps=$REPS detection_median_ms=$(printf '%s\n' "${det[@]}" | median) vip_failover_median_ms=$(printf '%s\n' "${fo[@]}" | median)"
}

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 1; }
command -v keepalived >/dev/null || { echo "keepalived missing: apt-get install -y keepalived" >&2; exit 1; }
setup_net
# MODES picks what runs (default all three).
for m in ${MODES:-default fastest hactl}; do
  case $m in
  default) run_keepalived 1 "advert_int=1s(default)" ;;
  fastest) run_keepalived 0.01 "advert_int=10ms(fastest)" ;;
  hactl)
    (cd "$(dirname "$0")/../.." &&
      HACTL_BENCH=1 HACTL_BENCH_REPS="$REPS" go test -count=1 -run TestBench_Failover -v ./bench/cluster/ | grep -E '^RESULT|rep [0-9]+:') ;;
  esac
done
