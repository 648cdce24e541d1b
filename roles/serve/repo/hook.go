package repo

// preReceive is the hook that gates every push. The server passes its
// settings through the CGI environment, which git hands on to hooks:
//
//	HACTL_PROTECT       space-separated refs that may not be deleted or rewound
//	HACTL_REPLICA       "1" when the push is itself a replication from a peer
//	HACTL_PEERS         space-separated base URLs of the peer repository servers
//	HACTL_REPO          the repository's path below the repositories directory
//	HACTL_MIN_ACKS      how many peers must accept the push
//	HACTL_PEER_AUTH     base64 of "hactl-replica:<token>" for the peers
//	HACTL_PUSH_TIMEOUT  seconds one peer push may take
//
// It runs while the pushed objects are in git's quarantine directory: git
// commands in the hook can read them (GIT_OBJECT_DIRECTORY points there), and
// they reach the main object store only when the hook exits 0.
const preReceive = `#!/bin/sh
# Installed by "hactl serve repo" (core.hooksPath). Rewritten at every start.
set -u
updates=$(cat)
is_zero() { case "$1" in *[!0]*) return 1 ;; *) return 0 ;; esac; }

fail=0
while read -r old new ref; do
	[ -n "$ref" ] || continue
	for p in ${HACTL_PROTECT:-}; do
		[ "$ref" = "$p" ] || continue
		if is_zero "$new"; then
			echo "hactl: refusing to delete protected ref $ref" >&2
			fail=1
		elif ! is_zero "$old" && ! git merge-base --is-ancestor "$old" "$new" 2>/dev/null; then
			echo "hactl: refusing non-fast-forward update of protected ref $ref" >&2
			fail=1
		fi
	done
done <<EOF
$updates
EOF
[ "$fail" -eq 0 ] || exit 1

# A push from a peer is the replication of a push that peer is gating.
[ "${HACTL_REPLICA:-}" = 1 ] && exit 0

set --
while read -r old new ref; do
	[ -n "$ref" ] || continue
	if is_zero "$new"; then
		set -- "$@" ":$ref"
	elif is_zero "$old" || git merge-base --is-ancestor "$old" "$new" 2>/dev/null; then
		# A fast-forward here is pushed as one: a peer whose ref moved
		# elsewhere refuses it instead of losing what it holds.
		set -- "$@" "$new:$ref"
	else
		# The client forced this update (allowed: the ref is not protected).
		set -- "$@" "+$new:$ref"
	fi
done <<EOF
$updates
EOF
[ "$#" -gt 0 ] || exit 0

run_timeout=""
command -v timeout >/dev/null 2>&1 && run_timeout="timeout ${HACTL_PUSH_TIMEOUT:-30}"
errfile=$(mktemp)
acks=0
for peer in ${HACTL_PEERS:-}; do
	if GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader \
		GIT_CONFIG_VALUE_0="Authorization: Basic ${HACTL_PEER_AUTH:-}" \
		GIT_TERMINAL_PROMPT=0 GIT_HTTP_LOW_SPEED_LIMIT=1 GIT_HTTP_LOW_SPEED_TIME="${HACTL_PUSH_TIMEOUT:-30}" \
		$run_timeout git push --quiet --atomic --no-verify "$peer/$HACTL_REPO" "$@" >/dev/null 2>"$errfile"; then
		acks=$((acks + 1))
		echo "hactl: replicated to $peer"
	else
		echo "hactl: replication to $peer failed: $(tail -n 3 "$errfile" | tr '\n' ' ')" >&2
	fi
done
rm -f "$errfile"
if [ "$acks" -lt "${HACTL_MIN_ACKS:-1}" ]; then
	echo "hactl: push refused: stored on $acks peer(s), ${HACTL_MIN_ACKS:-1} needed; nothing was changed, retry later" >&2
	exit 1
fi
exit 0
`
