package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Identity is who this node is. Name is "<role>-<slot>", the hostname and
// the member name; Generation tells a rebuilt slot from the node it replaced.
type Identity struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	Slot       int    `json:"slot"`
	Generation int    `json:"generation"`
	// Address is the node's primary address: local-ipv4 on local nodes, the
	// default-route interface's address on machines.
	Address string `json:"address"`
	// Root is the node's filesystem root: "/" on machines,
	// <node-dir>/root on local nodes.
	Root string `json:"root"`
	// Cluster and InstanceID are known when the provider's meta-data says so.
	Cluster    string `json:"cluster,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
}

// ParseNodeName splits "<role>-<slot>" at its last dash: "web-2" is
// ("web", 2), "db-replica-3" is ("db-replica", 3). The slot is a positive
// decimal integer without leading zeros; a domain suffix ("web-2.example")
// is ignored.
func ParseNodeName(name string) (role string, slot int, err error) {
	host, _, _ := strings.Cut(name, ".")
	i := strings.LastIndexByte(host, '-')
	if i <= 0 || i == len(host)-1 {
		return "", 0, fmt.Errorf("node name %q is not <role>-<slot>", name)
	}
	role, num := host[:i], host[i+1:]
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || num[0] == '0' || strings.HasPrefix(num, "+") {
		return "", 0, fmt.Errorf("node name %q: slot %q is not a positive number", name, num)
	}
	for _, r := range role {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", 0, fmt.Errorf("node name %q: role %q may hold only a-z, 0-9, - and _", name, role)
		}
	}
	return role, n, nil
}

// NodeMeta is the local provider's meta-data.json, shaped like cloud-init
// NoCloud meta-data.
type NodeMeta struct {
	InstanceID    string `json:"instance-id"`
	LocalHostname string `json:"local-hostname"`
	LocalIPv4     string `json:"local-ipv4"`
	Cluster       string `json:"cluster"`
	Role          string `json:"role"`
	Slot          int    `json:"slot"`
	Generation    int    `json:"generation"`
}

// readNodeMeta reads DIR/meta-data.json and derives the identity of a local
// node whose root is DIR/root.
func readNodeMeta(dir string) (Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta-data.json"))
	if err != nil {
		return Identity{}, fmt.Errorf("node dir %s: %w", dir, err)
	}
	var m NodeMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return Identity{}, fmt.Errorf("node dir %s: meta-data.json: %w", dir, err)
	}
	id := Identity{
		Name: m.LocalHostname, Role: m.Role, Slot: m.Slot, Generation: m.Generation,
		Address: m.LocalIPv4, Cluster: m.Cluster, InstanceID: m.InstanceID,
		Root: filepath.Join(dir, "root"),
	}
	if id.Role == "" || id.Slot == 0 {
		role, slot, err := ParseNodeName(id.Name)
		if err != nil {
			return Identity{}, fmt.Errorf("node dir %s: meta-data.json has no role/slot: %w", dir, err)
		}
		id.Role, id.Slot = role, slot
	}
	if id.Name == "" {
		id.Name = fmt.Sprintf("%s-%d", id.Role, id.Slot)
	}
	if net.ParseIP(id.Address) == nil {
		return Identity{}, fmt.Errorf("node dir %s: meta-data.json local-ipv4 %q is not an IP address", dir, id.Address)
	}
	return id, nil
}

// instanceDataPath is cloud-init's instance data on a machine.
const instanceDataPath = "/run/cloud-init/instance-data.json"

// DetectIdentity finds the identity of a real machine: the name from
// cloud-init instance data (v1.local_hostname) when present, else the
// hostname; the generation from a "hactl-gen:N" (or "hactl-gen=N") tag in the
// instance data, else 0; the address of the default-route interface.
func DetectIdentity() (Identity, error) {
	id := Identity{Root: "/"}
	if b, err := os.ReadFile(instanceDataPath); err == nil {
		var doc map[string]any
		if json.Unmarshal(b, &doc) == nil {
			if v1, ok := doc["v1"].(map[string]any); ok {
				id.Name, _ = v1["local_hostname"].(string)
				id.InstanceID, _ = v1["instance_id"].(string)
			}
			id.Generation = findGenTag(doc)
		}
	}
	if id.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return Identity{}, fmt.Errorf("hostname: %w", err)
		}
		id.Name = h
	}
	id.Name, _, _ = strings.Cut(id.Name, ".")
	role, slot, err := ParseNodeName(id.Name)
	if err != nil {
		return Identity{}, fmt.Errorf("identity from hostname: %w", err)
	}
	id.Role, id.Slot = role, slot
	addr, err := defaultRouteAddr()
	if err != nil {
		return Identity{}, fmt.Errorf("node address: %w", err)
	}
	id.Address = addr
	return id, nil
}

// findGenTag looks for a string "hactl-gen:N" anywhere in a JSON document.
func findGenTag(v any) int {
	switch t := v.(type) {
	case string:
		for _, sep := range []string{":", "="} {
			if rest, ok := strings.CutPrefix(t, "hactl-gen"+sep); ok {
				if n, err := strconv.Atoi(rest); err == nil {
					return n
				}
			}
		}
	case []any:
		for _, e := range t {
			if n := findGenTag(e); n != 0 {
				return n
			}
		}
	case map[string]any:
		for _, e := range t {
			if n := findGenTag(e); n != 0 {
				return n
			}
		}
	}
	return 0
}

// defaultRouteAddr returns the first IPv4 address of the interface that holds
// the default route (/proc/net/route), falling back to the source address
// the kernel would pick for a public destination (no packet is sent).
func defaultRouteAddr() (string, error) {
	if ifname, err := defaultRouteInterface("/proc/net/route"); err == nil {
		if ifc, err := net.InterfaceByName(ifname); err == nil {
			if addrs, err := ifc.Addrs(); err == nil {
				for _, a := range addrs {
					if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
						return ipn.IP.String(), nil
					}
				}
			}
		}
	}
	c, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		return "", fmt.Errorf("no default route: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

func defaultRouteInterface(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 2 && fs[1] == "00000000" && fs[0] != "Iface" {
			return fs[0], nil
		}
	}
	return "", errors.New("no default route in " + path)
}

// Facts-related helper: osFamily reads /etc/os-release of the machine.
func osFamily() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "unknown"
	}
	var id, like string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			id = v
		case "ID_LIKE":
			like = v
		}
	}
	all := " " + id + " " + like + " "
	switch {
	case strings.Contains(all, " debian ") || strings.Contains(all, " ubuntu "):
		return "debian"
	case strings.Contains(all, " rhel ") || strings.Contains(all, " fedora ") || strings.Contains(all, " centos "):
		return "redhat"
	}
	return "unknown"
}
