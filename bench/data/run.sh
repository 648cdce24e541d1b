#!/usr/bin/env bash
# Benchmark hactl data replication against rsync over SSH (not part of CI).
#
#   bench/data/run.sh [WORKDIR]      (from the repository root)
#
# Needs rsync, openssh-server (sshd, run on a loopback port with a temporary
# config, never the system one) and hyperfine, installed with apt-get when
# missing. Data: 10,000 small files (1-8 KiB, random) and one 1 GiB file
# (random). Every run starts from an empty destination. RUNS (default 5)
# runs per case; the median, min and max of each command are printed at the
# end (hyperfine's JSON exports are kept in $WORKDIR/*.json).
#
#   BASELINE=FILE  also time another replbench binary (e.g. one built from
#                  main) on the same data
#   PAIRED=1       alternate the commands run by run (A B C A B C ...)
#                  instead of running each one RUNS times in a row, so that
#                  every command sees the same machine load; times are
#                  taken with date(1) and kept in $WORKDIR/{small,big}.tsv
#   SETS="small"   the data sets to time (default "small big"); the restore
#                  cases run only with big
#   FRESH=1        every run of the small files writes into a new destination directory, all
#                  removed after the case, so no run creates its files
#                  right after the previous run's 10,000 were deleted (on
#                  ext4 without a journal, inode allocation steps over the
#                  inodes deleted in the last minutes one by one)
set -euo pipefail
W=${1:-$(mktemp -d /tmp/hactl-databench.XXXXXX)}
RUNS=${RUNS:-5}
BASELINE=${BASELINE:-}
PAIRED=${PAIRED:-}
FRESH=${FRESH:-}
mkdir -p "$W"
W=$(cd "$W" && pwd)
missing=()
command -v rsync >/dev/null || missing+=(rsync)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
go build -o "$W/replbench" ./bench/data/replbench
if [ -n "$BASELINE" ]; then
	cp "$BASELINE" "$W/replbench-baseline"
fi

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

for set in ${SETS:-small big}; do
	# PREP runs before every timed run; DST is the destination of that
	# run. FRESH applies to the small files only (1 GiB per run adds up).
	echo 0 >"$W/run.n"
	if [ -n "$FRESH" ] && [ "$set" = small ]; then
		PREP="echo \$((\$(cat $W/run.n) + 1)) >$W/run.n"
		DST="$W/dst.\$(cat $W/run.n)"
	else
		PREP="rm -rf $W/dst"
		DST="$W/dst"
	fi
	names=("hactl push ($set)")
	cmds=("$W/replbench push $W/$set $DST")
	if [ -n "$BASELINE" ]; then
		names+=("baseline push ($set)")
		cmds+=("$W/replbench-baseline push $W/$set $DST")
	fi
	names+=("rsync -a over ssh ($set)" "rsync -a --fsync over ssh ($set)")
	cmds+=("rsync -a -e '$RSH' $W/$set/ 127.0.0.1:$DST/" "rsync -a --fsync -e '$RSH' $W/$set/ 127.0.0.1:$DST/")
	if [ -n "$PAIRED" ]; then
		: >"$W/$set.tsv"
		for _ in $(seq "$RUNS"); do
			for i in "${!cmds[@]}"; do
				sh -c "$PREP"
				t0=$(date +%s%N)
				if ! sh -c "${cmds[$i]}" >/dev/null 2>"$W/cmd.err"; then
					cat "$W/cmd.err" >&2
					exit 1
				fi
				t1=$(date +%s%N)
				printf '%s\t%s\n' "${names[$i]}" "$((t1 - t0))" >>"$W/$set.tsv"
			done
		done
	else
		args=()
		for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
		hyperfine --runs "$RUNS" --export-json "$W/$set.json" --prepare "$PREP" "${args[@]}"
	fi
	rm -rf "$W/dst" "$W"/dst.*
done

# Restore 1 GiB: from a live replica (full verified pull) and from a backup.
rm -f "$W/restore.json"
case " ${SETS:-small big} " in *" big "*)
	rm -rf "$W/store" && "$W/replbench" backup "$W/big" "$W/store" >/dev/null
	hyperfine --runs "$RUNS" --export-json "$W/restore.json" --prepare "rm -rf $W/dst" \
		-n "restore 1 GiB from replica" "$W/replbench pull $W/big $W/dst" \
		-n "restore 1 GiB from dir backup" "$W/replbench restore $W/store $W/dst"
	rm -rf "$W/dst"
	;;
esac

python3 - "$W" "$PAIRED" ${SETS:-small big} <<'PY'
import collections, json, os, statistics, sys
w, paired, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
def line(name, times):
    print(f"{name:45s} median {statistics.median(times):8.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})")
for f in sets:
    if paired:
        times = collections.OrderedDict()
        for l in open(f"{w}/{f}.tsv"):
            name, ns = l.rstrip("\n").split("\t")
            times.setdefault(name, []).append(int(ns) / 1e9)
        for name, ts in times.items():
            line(name, ts)
    else:
        for r in json.load(open(f"{w}/{f}.json"))["results"]:
            line(r["command"], r["times"])
if os.path.exists(f"{w}/restore.json"):
    for r in json.load(open(f"{w}/restore.json"))["results"]:
        line(r["command"], r["times"])
PY
