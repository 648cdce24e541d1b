package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

// Forwarder serves the VIPs this node holds: for each held VIP it listens on
// VIP:port for every port of the VIP and forwards each TCP connection to the
// same port on the node's own address, where the role's service listens. On
// local nodes the VIP is a loopback address, so binding it is the whole of
// "holding" it; on machines where the provider routes the VIP to the node
// (a reserved IP) the forwarder is not needed.
//
// Set is called by the control plane (cluster.Config.VIPChanged) from one
// goroutine; Close may be called from any. Releasing a VIP closes its
// listeners and every connection accepted through it, so a node that lost a
// VIP stops answering on it at once.
type Forwarder struct {
	target string // host to forward to
	ports  map[string][]int
	log    *slog.Logger
	dial   time.Duration

	mu     sync.Mutex
	held   map[string]*vipServer
	closed bool
}

type vipServer struct {
	lns   []net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewForwarder forwards to host (the node's address); ports lists the ports
// of each VIP address.
func NewForwarder(host string, ports map[string][]int, log *slog.Logger) *Forwarder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{target: host, ports: ports, log: log, dial: 5 * time.Second, held: map[string]*vipServer{}}
}

// Set binds (held) or releases the VIP. Binding a VIP already bound, or
// releasing one not bound, does nothing. A bind that fails on any port binds
// nothing and returns the error.
func (f *Forwarder) Set(vip string, held bool) error {
	if !held {
		f.mu.Lock()
		s := f.held[vip]
		delete(f.held, vip)
		f.mu.Unlock()
		if s != nil {
			s.stop()
			f.log.Info("vip released", "vip", vip)
		}
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("forwarder closed")
	}
	if f.held[vip] != nil {
		return nil
	}
	ports := f.ports[vip]
	if len(ports) == 0 {
		return fmt.Errorf("vip %s: no ports to forward", vip)
	}
	s := &vipServer{conns: map[net.Conn]struct{}{}}
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(vip, strconv.Itoa(p)))
		if err != nil {
			s.stop()
			return fmt.Errorf("bind vip %s: %w", vip, err)
		}
		s.lns = append(s.lns, ln)
	}
	for i, ln := range s.lns {
		to := net.JoinHostPort(f.target, strconv.Itoa(ports[i]))
		s.wg.Add(1)
		go func() { defer s.wg.Done(); f.serve(s, ln, to) }()
	}
	f.held[vip] = s
	f.log.Info("vip bound", "vip", vip, "ports", ports, "to", f.target)
	return nil
}

// Held lists the VIPs bound now.
func (f *Forwarder) Held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.held))
	for v := range f.held {
		out = append(out, v)
	}
	return out
}

// Close releases every VIP and waits for the forwarding goroutines.
func (f *Forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	held := f.held
	f.held = map[string]*vipServer{}
	f.mu.Unlock()
	for _, s := range held {
		s.stop()
	}
}

func (f *Forwarder) serve(s *vipServer, ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by stop
		}
		if !s.track(c, true) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			defer c.Close()
			up, err := net.DialTimeout("tcp", to, f.dial)
			if err != nil {
				f.log.Warn("vip forward", "to", to, "err", err)
				return
			}
			if !s.track(up, true) {
				up.Close()
				return
			}
			defer s.track(up, false)
			defer up.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(up, c)
				if tc, ok := up.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				close(done)
			}()
			_, _ = io.Copy(c, up)
			// The service is done with this connection: end it both ways.
			c.Close()
			up.Close()
			<-done
		}()
	}
}

// track adds (or removes) a connection; it refuses to add once stopped.
func (s *vipServer) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *vipServer) stop() {
	for _, ln := range s.lns {
		ln.Close()
	}
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	s.wg.Wait()
}
