#!/usr/bin/env bash
# Benchmark hactl data replication against rsync over SSH (not part of CI).
#
#   bench/data/run.sh [WORKDIR]      (from the repository root)
#
# Needs rsync, openssh-server (sshd, run on a loopback port with a temporary
# config, never the system one) and hyperfine. Data: 10,000 small files
# (1-8 KiB, random) and one 1 GiB file (random). Every run starts from an
# empty destination. RUNS (default 5) runs per case; hyperfine prints the
# median in its JSON exports ($WORKDIR/*.json), summarised at the end.
set -euo pipefail
W=${1:-$(mktemp -d /tmp/hactl-databench.XXXXXX)}
RUNS=${RUNS:-5}
mkdir -p "$W"
W=$(cd "$W" && pwd)
go build -o "$W/replbench" ./bench/data/replbench

if [ ! -d "$W/small" ]; then
	python3 - "$W/small" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(7)
for i in range(10000):
    d = os.path.join(root, "d%02d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(rnd.randint(1024, 8192)))
PY
fi
if [ ! -f "$W/big/file" ]; then
	mkdir -p "$W/big"
	dd if=/dev/urandom of="$W/big/file" bs=1M count=1024 status=none
fi

# A private sshd on a loopback port.
ssh-keygen -q -t ed25519 -N '' -f "$W/hostkey" <<<y >/dev/null 2>&1 || true
ssh-keygen -q -t ed25519 -N '' -f "$W/userkey" <<<y >/dev/null 2>&1 || true
cp "$W/userkey.pub" "$W/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/hostkey
AuthorizedKeysFile $W/authorized_keys
PidFile $W/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
CFG
[ -d /run/sshd ] || mkdir -p /run/sshd
/usr/sbin/sshd -f "$W/sshd_config" -D -e 2>"$W/sshd.log" &
SSHD=$!
trap 'kill $SSHD 2>/dev/null || true' EXIT
RSH="ssh -p $PORT -i $W/userkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
for _ in $(seq 50); do $RSH 127.0.0.1 true 2>/dev/null && break; sleep 0.1; done

for set in small big; do
	hyperfine --runs "$RUNS" --export-json "$W/$set.json" --prepare "rm -rf $W/dst" \
		-n "hactl push ($set)" "$W/replbench push $W/$set $W/dst" \
		-n "rsync -a over ssh ($set)" "rsync -a -e '$RSH' $W/$set/ 127.0.0.1:$W/dst/" \
		-n "rsync -a --fsync over ssh ($set)" "rsync -a --fsync -e '$RSH' $W/$set/ 127.0.0.1:$W/dst/"
done

# Restore 1 GiB: from a live replica (full verified pull) and from a backup.
rm -rf "$W/store" && "$W/replbench" backup "$W/big" "$W/store" >/dev/null
hyperfine --runs "$RUNS" --export-json "$W/restore.json" --prepare "rm -rf $W/dst" \
	-n "restore 1 GiB from replica" "$W/replbench pull $W/big $W/dst" \
	-n "restore 1 GiB from dir backup" "$W/replbench restore $W/store $W/dst"
rm -rf "$W/dst"

python3 - "$W" <<'PY'
import json, sys
for f in ("small", "big", "restore"):
    for r in json.load(open(f"{sys.argv[1]}/{f}.json"))["results"]:
        print(f"{r['command']:45s} median {r['median']:8.3f} s  (min {r['min']:.3f}, max {r['max']:.3f}, n={len(r['times'])})")
PY
