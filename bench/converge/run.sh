#!/bin/sh
# Converge speed benchmark: hactl vs Puppet vs Ansible vs a minimal Go floor.
#
# Workload: 20 directories holding 200 files in total (10 per directory),
# each rendered from one template with three variables (name, port, dc),
# plus 10 symlinks. Three scenarios per tool, timed with hyperfine:
#   first  - empty target directory
#   noop   - everything already converged
#   drift  - 10 files changed from outside since the last run
# Everything happens under $WORK (default /tmp/hactl-bench-converge); nothing
# outside it is touched. Not run in CI: it installs Debian packages.
#
# Usage: bench/converge/run.sh [--no-install]   (from the repository root)
# Env: WORK, RUNS_FAST (default 20), RUNS_PUPPET (5), RUNS_ANSIBLE (2),
#      TOOLS (default "floor hactl puppet ansible")
# Puppet prints "Facter: Permission denied ... /proc/1/environ" in containers;
# that is noise from fact collection, not a failure.
set -eu

REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/tmp/hactl-bench-converge}
RUNS_FAST=${RUNS_FAST:-20}
RUNS_PUPPET=${RUNS_PUPPET:-5}
RUNS_ANSIBLE=${RUNS_ANSIBLE:-2}

if [ "${1:-}" != "--no-install" ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq puppet ansible hyperfine jq >/dev/null
fi
for t in puppet ansible-playbook hyperfine jq go; do
	command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$WORK/bin" "$WORK/tpl" "$WORK/hactl" "$WORK/puppet" "$WORK/ansible" "$WORK/results"
(cd "$REPO" && go build -o "$WORK/bin/hactl" ./cmd/hactl && go build -o "$WORK/bin/floor" ./bench/converge/floor)

# --- the template, in each tool's syntax -----------------------------------
cat > "$WORK/tpl/app.conf.tpl" <<'T'
# managed by the converge benchmark; do not edit
[service]
name = ${name}
port = ${port}
datacenter = ${dc}
listen = 0.0.0.0:${port}
log = /var/log/${name}.log
pidfile = /run/${name}.pid

[upstream]
server ${name}.${dc}.internal:${port}
backup ${name}.backup.${dc}.internal:${port}
T
sed -e 's/\${\([a-z]*\)}/<%= $\1 %>/g' "$WORK/tpl/app.conf.tpl" > "$WORK/tpl/app.conf.epp"
sed -e 's/\${\([a-z]*\)}/{{ \1 }}/g' "$WORK/tpl/app.conf.tpl" > "$WORK/tpl/app.conf.j2"

# --- hactl role file ----------------------------------------------------------
H="$WORK/hactl/bench.hcl"
: > "$H"
d=0
while [ $d -lt 20 ]; do
	printf 'resource "directory" "d%d" {\n  path = "/srv/d%d"\n}\n' $d $d >> "$H"
	f=0
	while [ $f -lt 10 ]; do
		printf 'resource "template" "f%d_%d" {\n  path   = "/srv/d%d/f%d.conf"\n  source = "%s"\n  vars   = { name = "svc-%d-%d", port = %d, dc = "dc1" }\n}\n' \
			$d $f $d $f "$WORK/tpl/app.conf.tpl" $d $f $((8000 + d * 10 + f)) >> "$H"
		f=$((f + 1))
	done
	d=$((d + 1))
done
l=0
while [ $l -lt 10 ]; do
	printf 'resource "symlink" "l%d" {\n  path   = "/srv/link%d"\n  target = "/srv/d%d/f0.conf"\n}\n' $l $l $l >> "$H"
	l=$((l + 1))
done

# --- puppet manifest ----------------------------------------------------------
P="$WORK/puppet/site.pp"
T_P="$WORK/target-puppet"
printf '$tpl = file("%s")\nfile { "%s": ensure => directory }\nfile { "%s/srv": ensure => directory }\n' "$WORK/tpl/app.conf.epp" "$T_P" "$T_P" > "$P"
d=0
while [ $d -lt 20 ]; do
	printf 'file { "%s/srv/d%d": ensure => directory }\n' "$T_P" $d >> "$P"
	f=0
	while [ $f -lt 10 ]; do
		printf 'file { "%s/srv/d%d/f%d.conf": ensure => file, content => inline_epp($tpl, { name => "svc-%d-%d", port => %d, dc => "dc1" }) }\n' \
			"$T_P" $d $f $d $f $((8000 + d * 10 + f)) >> "$P"
		f=$((f + 1))
	done
	d=$((d + 1))
done
l=0
while [ $l -lt 10 ]; do
	printf 'file { "%s/srv/link%d": ensure => link, target => "%s/srv/d%d/f0.conf" }\n' "$T_P" $l "$T_P" $l >> "$P"
	l=$((l + 1))
done
mkdir -p "$WORK/puppet/conf" "$WORK/puppet/var" "$WORK/puppet/code"
PUPPET="puppet apply --confdir $WORK/puppet/conf --vardir $WORK/puppet/var --codedir $WORK/puppet/code --logdir $WORK/puppet/var/log --rundir $WORK/puppet/var/run --color=false $P"

# --- ansible playbook ----------------------------------------------------------
A="$WORK/ansible/site.yml"
T_A="$WORK/target-ansible"
{
	echo '- hosts: localhost'
	echo '  connection: local'
	echo '  gather_facts: false'
	echo '  tasks:'
	echo '    - name: directories'
	echo '      file: { path: "{{ item }}", state: directory }'
	echo '      loop:'
	echo "        - $T_A/srv"
	d=0; while [ $d -lt 20 ]; do echo "        - $T_A/srv/d$d"; d=$((d + 1)); done
	echo '    - name: files'
	echo "      template: { src: $WORK/tpl/app.conf.j2, dest: \"{{ item.dest }}\" }"
	echo '      vars: { name: "{{ item.name }}", port: "{{ item.port }}", dc: dc1 }'
	echo '      loop:'
	d=0; while [ $d -lt 20 ]; do
		f=0; while [ $f -lt 10 ]; do
			echo "        - { dest: $T_A/srv/d$d/f$f.conf, name: svc-$d-$f, port: $((8000 + d * 10 + f)) }"
			f=$((f + 1)); done
		d=$((d + 1)); done
	echo '    - name: links'
	echo '      file: { path: "{{ item.path }}", src: "{{ item.src }}", state: link }'
	echo '      loop:'
	l=0; while [ $l -lt 10 ]; do echo "        - { path: $T_A/srv/link$l, src: $T_A/srv/d$l/f0.conf }"; l=$((l + 1)); done
} > "$A"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False ANSIBLE_RETRY_FILES_ENABLED=False
ANSIBLE="ansible-playbook -i localhost, $A"

# --- commands -----------------------------------------------------------------
T_H="$WORK/target-hactl"
T_F="$WORK/target-floor"
HACTL="$WORK/bin/hactl converge $H --node bench-1 --root $T_H"
FLOOR="$WORK/bin/floor $WORK/tpl/app.conf.tpl $T_F"

# drift TARGET: change the first file of 10 directories from outside.
cat > "$WORK/bin/drift" <<'D'
#!/bin/sh
i=0; while [ $i -lt 10 ]; do echo drift >> "$1/srv/d$i/f0.conf"; i=$((i + 1)); done
D
chmod +x "$WORK/bin/drift"

# same TARGET: the tree has the files the floor makes, with the same bytes.
same() {
	(cd "$T_F/srv" && find . -name '*.conf' -type f | sort | while read -r x; do
		cmp -s "$x" "$1/srv/$x" || echo "MISMATCH: $1/srv/$x differs from the floor's"
	done) | head -3
	[ "$(find "$1/srv" -type l | wc -l)" = 10 ] || echo "MISMATCH: $1/srv does not hold 10 symlinks"
}

bench() { # name runs prepare-cmd command
	hyperfine -N --style basic --runs "$2" --prepare "$3" --export-json "$WORK/results/$1.json" "$4" >/dev/null
	printf '%-16s median %9.4f s  (min %.4f, max %.4f, runs %s)\n' "$1" \
		"$(jq '.results[0].median' "$WORK/results/$1.json")" "$(jq '.results[0].min' "$WORK/results/$1.json")" \
		"$(jq '.results[0].max' "$WORK/results/$1.json")" "$2"
}
for tool in ${TOOLS:-floor hactl puppet ansible}; do
	case $tool in
	floor) cmd=$FLOOR; tgt=$T_F; runs=$RUNS_FAST ;;
	hactl) cmd=$HACTL; tgt=$T_H; runs=$RUNS_FAST ;;
	puppet) cmd=$PUPPET; tgt=$T_P; runs=$RUNS_PUPPET ;;
	ansible) cmd=$ANSIBLE; tgt=$T_A; runs=$RUNS_ANSIBLE ;;
	esac
	bench "$tool-first" "$runs" "rm -rf $tgt" "$cmd"
	[ $tool = floor ] || same "$tgt"
	bench "$tool-noop" "$runs" "true" "$cmd"
	bench "$tool-drift" "$runs" "$WORK/bin/drift $tgt" "$cmd"
	same "$tgt"
done

med() { jq '.results[0].median' "$WORK/results/$1.json"; }
ratio() { # a b: median(a)/median(b), or n/a when either was not run
	if [ -f "$WORK/results/$1.json" ] && [ -f "$WORK/results/$2.json" ]; then
		printf '%.2fx' "$(echo "$(med "$1") / $(med "$2")" | bc -l)"
	else
		printf 'n/a'
	fi
}
echo
echo "ratios (median / median):"
for s in first noop drift; do
	echo "$s: hactl/floor $(ratio hactl-$s floor-$s)  puppet/hactl $(ratio puppet-$s hactl-$s)  ansible/hactl $(ratio ansible-$s hactl-$s)"
done
