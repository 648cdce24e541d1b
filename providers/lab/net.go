package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Names of everything the lab creates carry the prefix "hl" and the cluster's
// tag (the hex of A and B of its 10.A.B.0/24, unique on the machine while
// the cluster exists), so stray ones can be found and removed:
//
//	hlh-<tag>       name of the host's network namespace (ip netns attach)
//	hlb-<tag>       the cluster's bridge, 10.A.B.1/24, in the host namespace
//	hln-<tag>-<C>   the network namespace of the node with address 10.A.B.C
//	hlv-<tag>-<C>   the host end of its veth pair (the node end is eth0)
//
// Interface names are at most 14 characters (the kernel allows 15).
const (
	// Prefix starts the name of every namespace and interface the lab makes.
	Prefix = "hl"
	// NodeIf is the name of a node's interface inside its namespace.
	NodeIf = "eth0"

	netnsDir = "/run/netns"
	// Tables the faults install in a node's namespace.
	cutTable  = "hactl_cut"
	lossTable = "hactl_loss"
)

// names are the lab's names and addresses for one node.
type names struct {
	tag, host, bridge, ns, veth string
	addr, gw                    netip.Addr
	prefix                      netip.Prefix
}

// namesOf derives a node's names from its address 10.A.B.C.
func namesOf(addr string) (names, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() || a.As4()[0] != firstOctet {
		return names{}, fmt.Errorf("lab: node address %q is not a 10.A.B.C lab address", addr)
	}
	o := a.As4()
	tag := fmt.Sprintf("%02x%02x", o[1], o[2])
	return names{
		tag:    tag,
		host:   Prefix + "h-" + tag,
		bridge: Prefix + "b-" + tag,
		ns:     fmt.Sprintf("%sn-%s-%d", Prefix, tag, o[3]),
		veth:   fmt.Sprintf("%sv-%s-%d", Prefix, tag, o[3]),
		addr:   a,
		gw:     netip.AddrFrom4([4]byte{o[0], o[1], o[2], 1}),
		prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{o[0], o[1], o[2], 0}), 24),
	}, nil
}

func lookPath(cmd string) (string, error) {
	if p, err := exec.LookPath(cmd); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if fi, err := os.Stat(d + "/" + cmd); err == nil && fi.Mode()&0o111 != 0 {
			return d + "/" + cmd, nil
		}
	}
	return "", fmt.Errorf("%s not found", cmd)
}

func nsenterPath() string {
	p, err := lookPath("nsenter")
	if err != nil {
		return "nsenter"
	}
	return p
}

// run runs a command with a time limit and returns its error with its
// output.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	path, err := lookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	path, err := lookPath(name)
	if err != nil {
		return "", err
	}
	b, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ensureBridge makes the cluster's bridge with 10.A.B.1/24 in the host
// namespace. The host namespace gets a name first (hlh-<tag>, attached from
// this process, which runs on the host when it creates a cluster's first
// node), so a node that rebuilds another reaches the bridge through it.
func ensureBridge(n names) error {
	ctx := context.Background()
	if !exists(nsPath(n.host)) {
		if err := run(ctx, "", "ip", "netns", "attach", n.host, fmt.Sprint(os.Getpid())); err != nil && !exists(nsPath(n.host)) {
			return err
		}
	}
	if run(ctx, "", "ip", "-n", n.host, "link", "show", n.bridge) != nil {
		if err := run(ctx, "", "ip", "-n", n.host, "link", "add", n.bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	if err := run(ctx, "", "ip", "-n", n.host, "addr", "replace", n.gw.String()+"/24", "dev", n.bridge); err != nil {
		return err
	}
	return run(ctx, "", "ip", "-n", n.host, "link", "set", n.bridge, "up")
}

// ensureNode makes the node's namespace, its veth pair on the bridge and its
// address. Idempotent.
func ensureNode(n names) error {
	ctx := context.Background()
	if !exists(nsPath(n.ns)) {
		if err := run(ctx, "", "ip", "netns", "add", n.ns); err != nil {
			return err
		}
	}
	if run(ctx, "", "ip", "-n", n.ns, "link", "show", NodeIf) != nil {
		// A host end left by a half-made node would block the name.
		_ = run(ctx, "", "ip", "-n", n.host, "link", "del", n.veth)
		if err := run(ctx, "", "ip", "-n", n.host, "link", "add", n.veth, "type", "veth", "peer", "name", NodeIf, "netns", n.ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"-n", n.host, "link", "set", n.veth, "master", n.bridge, "up"},
		{"-n", n.ns, "addr", "replace", n.addr.String() + "/24", "dev", NodeIf},
		{"-n", n.ns, "link", "set", NodeIf, "up"},
		{"-n", n.ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "", "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// removeNode deletes the node's namespace (its end of the veth pair, and so
// the pair, goes with it) and the host end if it is left. Missing ones are
// not an error.
func removeNode(n names) error {
	ctx := context.Background()
	var errs []error
	if exists(nsPath(n.ns)) {
		if err := run(ctx, "", "ip", "netns", "del", n.ns); err != nil && exists(nsPath(n.ns)) {
			errs = append(errs, err)
		}
	}
	// The kernel removes the host end with the namespace, asynchronously.
	if exists(nsPath(n.host)) && run(ctx, "", "ip", "-n", n.host, "link", "show", n.veth) == nil {
		if err := run(ctx, "", "ip", "-n", n.host, "link", "del", n.veth); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeBridge deletes the cluster's bridge and the host namespace's name,
// unless a node's veth is on the bridge again.
func removeBridge(n names) error {
	ctx := context.Background()
	if !exists(nsPath(n.host)) {
		return nil
	}
	if run(ctx, "", "ip", "-n", n.host, "link", "show", n.bridge) == nil {
		// A node created meanwhile (another process) has its veth on the
		// bridge and its namespace: keep the bridge. A veth whose namespace
		// is deleted is on its way out (the kernel removes it
		// asynchronously).
		ports, err := output(ctx, "ip", "-n", n.host, "-o", "link", "show", "master", n.bridge)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(ports, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			port, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if ns, ok := strings.CutPrefix(port, Prefix+"v-"); !ok || exists(nsPath(Prefix+"n-"+ns)) {
				return nil
			}
		}
		if err := run(ctx, "", "ip", "-n", n.host, "link", "del", n.bridge); err != nil {
			return err
		}
	}
	if err := run(ctx, "", "ip", "netns", "del", n.host); err != nil && exists(nsPath(n.host)) {
		return err
	}
	return nil
}

// pairTaken reports whether 10.a.b.0/24 overlaps a route of this namespace
// (a network the host already reaches) or a lab bridge of that tag exists.
func pairTaken(a, b int) bool {
	want := netip.PrefixFrom(netip.AddrFrom4([4]byte{firstOctet, byte(a), byte(b), 0}), 24)
	out, err := output(context.Background(), "ip", "-4", "-o", "route", "show", "table", "all")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "default" {
			continue
		}
		s := f[0]
		if (s == "local" || s == "broadcast" || s == "unicast" || s == "blackhole") && len(f) > 1 {
			s = f[1]
		}
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		if p, err := netip.ParsePrefix(s); err == nil && p.Overlaps(want) {
			return true
		}
	}
	n, _ := namesOf(want.Addr().Next().String())
	return exists("/sys/class/net/" + n.bridge)
}

// nft runs an nft script inside the node's namespace.
func nft(ctx context.Context, n names, script string) error {
	if !exists(nsPath(n.ns)) {
		return fmt.Errorf("network namespace %s is gone (node fenced or destroyed?)", n.ns)
	}
	return run(ctx, script, "nsenter", "--net="+nsPath(n.ns), "--", "nft", "-f", "-")
}

// table returns a script that replaces table name with chains input and
// output holding rule (loopback traffic is always accepted).
func table(name, inRule, outRule string) string {
	return fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain input {
		type filter hook input priority -10; policy accept;
		iifname "lo" accept
		%[2]s
	}
	chain output {
		type filter hook output priority -10; policy accept;
		oifname "lo" accept
		%[3]s
	}
}
`, name, inRule, outRule)
}

func setPartition(ctx context.Context, n names, addrs []string) error {
	set := "{ " + strings.Join(addrs, ", ") + " }"
	return nft(ctx, n, table(cutTable, "ip saddr "+set+" drop", "ip daddr "+set+" drop"))
}

func setLoss(ctx context.Context, n names, percent int) error {
	if percent == 0 {
		return nft(ctx, n, dropTable(lossTable))
	}
	rule := fmt.Sprintf("numgen random mod 100 < %d drop", percent)
	if percent == 100 {
		rule = "drop"
	}
	return nft(ctx, n, table(lossTable, rule, rule))
}

func dropTable(name string) string {
	return fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", name)
}

func heal(ctx context.Context, n names) error {
	return nft(ctx, n, dropTable(cutTable)+dropTable(lossTable))
}

// hasAddr reports whether the namespace's interface has address a.
func hasAddr(ctx context.Context, ns string, a netip.Addr) (bool, error) {
	out, err := output(ctx, "ip", "-n", ns, "-o", "addr", "show", "dev", NodeIf)
	if err != nil {
		if !exists(nsPath(ns)) {
			return false, nil
		}
		return false, err
	}
	return strings.Contains(out, " "+a.String()+"/"), nil
}

// BindVIP adds (held) or removes vip as a /32 on this process's own
// namespace interface (eth0): the lab node agent calls it when the control
// plane gives it the VIP or takes it away. After adding, it announces the
// address with gratuitous ARP in the background (arping -U), so the host and
// the other nodes move their neighbour entry to this node at once. Adding
// an address present, or removing one absent, does nothing.
func BindVIP(ctx context.Context, vip string, held bool) error {
	a, err := netip.ParseAddr(vip)
	if err != nil || !a.Is4() {
		return fmt.Errorf("lab: vip %q is not an IPv4 address", vip)
	}
	if !held {
		err := run(ctx, "", "ip", "addr", "del", a.String()+"/32", "dev", NodeIf)
		if err != nil && (strings.Contains(err.Error(), "Address not found") || strings.Contains(err.Error(), "Cannot assign requested address")) {
			return nil
		}
		return err
	}
	if err := run(ctx, "", "ip", "addr", "replace", a.String()+"/32", "dev", NodeIf); err != nil {
		return err
	}
	go func() {
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = run(actx, "", "arping", "-q", "-U", "-c", "3", "-I", NodeIf, a.String())
	}()
	return nil
}

// Strays lists the network namespaces under /run/netns whose names carry the
// lab prefix: what a crashed test or destroy left behind.
func Strays() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), Prefix+"n-") || strings.HasPrefix(e.Name(), Prefix+"h-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
