package chaos

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
)

// Roles is the address book of role targets: the addresses of each role's
// current nodes as of the runner's latest observation. Probe and marker
// targets may name a role instead of a host, written {role} (for example
// smtp={mail}:2525 or git=http://{repo}:8090/blog.git): such a target stands
// for one target per node of the role, tried in order until one answers, the
// way a mail client moves to the next MX. Healthy nodes come first, then the
// other running ones, each group by node name; a node being rebuilt appears
// as soon as the provider lists it.
//
// The runner owns the Roles of a run and updates it after every
// observation; probes read it from their own goroutines. Methods are safe
// for concurrent use.
type Roles struct {
	mu    sync.Mutex
	addrs map[string][]string
}

// Update replaces the address book with the snapshot's current nodes.
func (rs *Roles) Update(s Snapshot) {
	healthy, other := map[string][]string{}, map[string][]string{}
	for _, n := range s.Current() {
		if n.Address == "" {
			continue
		}
		if n.Healthy() {
			healthy[n.Role] = append(healthy[n.Role], n.Address)
		} else if n.State == "on" || n.State == "starting" {
			other[n.Role] = append(other[n.Role], n.Address)
		}
	}
	out := map[string][]string{}
	for role, as := range healthy {
		out[role] = as
	}
	for role, as := range other {
		out[role] = append(out[role], as...)
	}
	rs.mu.Lock()
	rs.addrs = out
	rs.mu.Unlock()
}

// Addrs returns a copy of the role's addresses, best first.
func (rs *Roles) Addrs(role string) []string {
	if rs == nil {
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.addrs[role])
}

// RoleAware is implemented by probes and markers whose targets may name
// roles; the runner hands them its address book before the first check.
type RoleAware interface {
	SetRoles(*Roles)
}

// roleRef is compiled on first use, not at package init (start-up).
var roleRef = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\{([a-z][a-z0-9_-]*)\}`) })

// roleOf returns the role a target names ("" when it names none) and an
// error when it names more than one.
func roleOf(target string) (string, error) {
	ms := roleRef().FindAllStringSubmatch(target, -1)
	role := ""
	for _, m := range ms {
		if role != "" && m[1] != role {
			return "", fmt.Errorf("target %q names two roles, %s and %s", target, role, m[1])
		}
		role = m[1]
	}
	return role, nil
}

// expand returns the concrete targets of a target template: itself when it
// names no role, else one per address of the role (an error when the role
// has no running node).
func expand(rs *Roles, target string) ([]string, error) {
	role, err := roleOf(target)
	if err != nil {
		return nil, err
	}
	if role == "" {
		return []string{target}, nil
	}
	if rs == nil {
		return nil, fmt.Errorf("target %q names role %s but no cluster view is attached", target, role)
	}
	as := rs.Addrs(role)
	if len(as) == 0 {
		return nil, fmt.Errorf("target %q: role %s has no running node", target, role)
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = roleRef().ReplaceAllLiteralString(target, a)
	}
	return out, nil
}

// failover calls try on each concrete target of template in order and
// returns nil at the first success. When every target failed it returns
// their errors joined; when at least one of them deferred (ErrDeferred: a
// server answered "try again later", so a real client keeps the message and
// retries) the joined error wraps ErrDeferred.
func failover(rs *Roles, template string, try func(target string) error) error {
	ts, err := expand(rs, template)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range ts {
		err := try(t)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...) // errors.Is(…, ErrDeferred) holds when one deferred
}

// ErrDeferred marks a temporary refusal that a real client retries later
// (an SMTP 4xx reply): the request was not lost, it was put off. Samples
// whose check failed with it count as deferred, not failed.
var ErrDeferred = errors.New("deferred")
