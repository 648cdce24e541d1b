// Package faultnet wraps the control plane's real transports (memberlist's
// gossip transport and raft's stream layer) so that a test or a chaos run can
// partition nodes and drop packets while the traffic still goes over real
// sockets. It owns no sockets itself and does not decide what to break: the
// caller does, through Net.
//
// Faults are applied on the sending side: a blocked pair drops gossip packets
// and refuses stream dials in both directions, and a partition closes the
// raft connections that already cross it.
package faultnet

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// RetransmitDelay is what a lost TCP segment costs under SetLoss: Linux's
// minimum retransmission timeout.
const RetransmitDelay = 200 * time.Millisecond

// ErrPartitioned is returned for dials and writes across a partition.
var ErrPartitioned = errors.New("faultnet: partitioned")

// Net is the shared fault state of a set of nodes. The zero value is not
// usable; call New. All methods are safe for concurrent use.
type Net struct {
	mu      sync.Mutex
	addrs   map[string]string // "host:port" → node name
	blocked map[[2]string]bool
	loss    float64
	rnd     *rand.Rand
	conns   map[*conn]struct{}
}

// New returns a healed network. seed makes packet loss reproducible.
func New(seed uint64) *Net {
	return &Net{addrs: map[string]string{}, blocked: map[[2]string]bool{}, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), conns: map[*conn]struct{}{}}
}

// Register tells the net which node listens on addr (gossip or raft).
func (n *Net) Register(node string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		n.addrs[a] = node
	}
}

// Partition cuts every pair of nodes that are in different groups. Nodes not
// named in any group are unaffected.
func (n *Net) Partition(groups ...[]string) {
	n.mu.Lock()
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.blocked[[2]string{a, b}] = true
				}
			}
		}
	}
	var cut []*conn
	for c := range n.conns {
		if n.blocked[[2]string{c.from, c.to}] {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.Conn.Close()
	}
}

// Heal removes every partition.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.blocked)
}

// SetLoss drops this fraction (0..1) of gossip packets between all nodes.
// Raft runs over TCP, where a lost segment is retransmitted rather than lost:
// the same fraction of raft writes is held back for RetransmitDelay first.
func (n *Net) SetLoss(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
}

// cut reports whether traffic from → the node at addr is dropped.
func (n *Net) cut(from, addr string, packet bool) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	to, ok := n.addrs[addr]
	if ok && n.blocked[[2]string{from, to}] {
		return true
	}
	return packet && n.loss > 0 && n.rnd.Float64() < n.loss
}

// Transport wraps node's gossip transport.
func (n *Net) Transport(node string, t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return &transport{NodeAwareTransport: t, net: n, node: node}
}

type transport struct {
	memberlist.NodeAwareTransport
	net  *Net
	node string
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.net.cut(t.node, addr, true) {
		return time.Now(), nil // dropped silently, like a lost datagram
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.net.cut(t.node, a.Addr, true) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.net.cut(t.node, addr, false) {
		return nil, ErrPartitioned
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.net.cut(t.node, a.Addr, false) {
		return nil, ErrPartitioned
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// Stream wraps node's raft stream layer.
func (n *Net) Stream(node string, s raft.StreamLayer) raft.StreamLayer {
	return &stream{StreamLayer: s, net: n, node: node}
}

type stream struct {
	raft.StreamLayer
	net  *Net
	node string
}

func (s *stream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.net.cut(s.node, string(addr), false) {
		return nil, ErrPartitioned
	}
	c, err := s.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	s.net.mu.Lock()
	to := s.net.addrs[string(addr)]
	w := &conn{Conn: c, net: s.net, from: s.node, to: to}
	s.net.conns[w] = struct{}{}
	s.net.mu.Unlock()
	return w, nil
}

// conn is a dialed raft connection; a partition closes it, and it refuses
// writes across a partition.
type conn struct {
	net.Conn
	net      *Net
	from, to string
}

func (c *conn) Write(b []byte) (int, error) {
	c.net.mu.Lock()
	blocked := c.net.blocked[[2]string{c.from, c.to}]
	c.net.mu.Unlock()
	if blocked {
		c.Conn.Close()
		return 0, ErrPartitioned
	}
	if c.net.cut(c.from, "", true) {
		time.Sleep(RetransmitDelay)
	}
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	c.net.mu.Lock()
	delete(c.net.conns, c)
	c.net.mu.Unlock()
	return c.Conn.Close()
}
