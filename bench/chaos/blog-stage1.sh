#!/bin/sh
# Stage 1 chaos on the reference blog, on the local provider: one random
# node destroyed per round (seed fixed), rebuilt by the raft leader's
# reconciler, with HTTP probed through the VIP, SMTP and git probed with
# fail-over between the role's nodes, and SMTP + git markers written before
# every fault and read back after it (and once more at the end).
#
#   sh bench/chaos/blog-stage1.sh [ROUNDS] [SEED]     (defaults 20, 7)
#
# Needs git; builds hactl into a temporary directory, uses its own state
# directory, and destroys the cluster at the end. Prints the report path and
# a summary (median and worst detection, recovery, failed requests per round).
set -eu
ROUNDS=${1:-20}
SEED=${2:-7}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/hactl-chaos-bench-XXXXXX)
export HACTL_STATE_DIR="$WORK/state"
HACTL="$WORK/hactl"
cleanup() { "$HACTL" destroy -auto-approve "$WORK/blog" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
(cd "$ROOT" && go build -o "$HACTL" ./cmd/hactl)
cp -rL "$ROOT/examples/blog" "$WORK/blog"
"$HACTL" apply -auto-approve "$WORK/blog" >/dev/null
# The control plane elects a leader and assigns the VIP within seconds.
VIP=""
for _ in $(seq 60); do
	VIP=$("$HACTL" status -json "$WORK/blog" | python3 -c 'import json,sys; c=json.load(sys.stdin).get("control") or {}; print(next((v for v,h in (c.get("vips") or {}).items() if h), ""))')
	[ -n "$VIP" ] && break
	sleep 1
done
[ -n "$VIP" ] || { echo "no VIP holder after 60s" >&2; exit 1; }
TOKEN="$HACTL_STATE_DIR/blog/secrets/cluster.token"
set +e
/usr/bin/time -f 'wall %es, max rss %MkB' "$HACTL" chaos run "$WORK/blog" --stage 1 --rounds "$ROUNDS" --seed "$SEED" \
	--round-timeout 2m --baseline 2s \
	--probe "http=http://$VIP:8000/" \
	--probe "smtp={mail}:2525,editor@blog.local" \
	--probe "git=http://{repo}:8090/blog.git" \
	--marker "smtp={mail}:2525,http://{mail}:8025/messages,$TOKEN,editor@blog.local" \
	--marker "git=http://{repo}:8090/blog.git,$TOKEN" \
	--report "$WORK/report"
rc=$?
set -e
python3 - "$WORK/report/report.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
rs = [x for x in r["rounds"] if x.get("fault_at")]
def col(k):
    return [x[k] for x in rs if x.get(k) is not None]
for name, k in (("detection s", "detection_seconds"), ("recovery s", "recovery_seconds"), ("failed requests", "requests_failed"), ("deferred requests", "requests_deferred")):
    v = col(k) if k != "requests_deferred" else [x.get(k, 0) for x in rs]
    if v:
        print(f"{name:18} median {statistics.median(v):7.2f}  worst {max(v):7.2f}  (n={len(v)})")
print("requests", sum(x["requests"] for x in rs), "availability", r["availability"], "pass", r["pass"])
PY
echo "report: $WORK/report/report.html"
exit $rc
