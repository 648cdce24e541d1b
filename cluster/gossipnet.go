package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipNet is the memberlist transport: UDP for probes and gossip, TCP on
// the same port for push/pull and fallback probes. It differs from
// memberlist's NetTransport in what an idle node pays per packet: it reads
// every datagram into one reused 64 KiB buffer and hands memberlist an
// exact-size copy (NetTransport allocates a fresh 64 KiB buffer per packet,
// which on an idle cluster is most of the gossip's garbage and GC work), and
// it parses numeric destination addresses without the resolver.
type gossipNet struct {
	udp     *net.UDPConn
	tcp     *net.TCPListener
	packets chan *memberlist.Packet
	streams chan net.Conn
	log     *slog.Logger
	closed  atomic.Bool
	stop    chan struct{} // closed by Shutdown: unblocks a reader nobody reads from
	once    sync.Once
	wg      sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*gossipNet)(nil)

const (
	gossipMaxPacket = 65536   // largest UDP datagram
	gossipRecvBuf   = 2 << 20 // socket receive buffer asked for (halved until the kernel accepts)
)

// listenGossip binds TCP and UDP on ip:port; port 0 picks a port free for
// both.
func listenGossip(ip netip.Addr, port int, log *slog.Logger) (*gossipNet, error) {
	var lastErr error
	for try := 0; try < 10; try++ {
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			return nil, fmt.Errorf("gossip listen tcp %s: %w", netip.AddrPortFrom(ip, uint16(port)), err)
		}
		p := tcp.Addr().(*net.TCPAddr).AddrPort().Port()
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, p)))
		if err != nil {
			tcp.Close()
			lastErr = fmt.Errorf("gossip listen udp %s: %w", netip.AddrPortFrom(ip, p), err)
			if port != 0 {
				return nil, lastErr
			}
			continue // the kernel's free TCP port is taken for UDP: pick another
		}
		for size := gossipRecvBuf; size >= 64<<10; size /= 2 {
			if udp.SetReadBuffer(size) == nil {
				break
			}
		}
		g := &gossipNet{udp: udp, tcp: tcp, log: log,
			packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), stop: make(chan struct{})}
		g.wg.Add(2)
		go g.readPackets()
		go g.accept()
		return g, nil
	}
	return nil, lastErr
}

// port is the bound port (TCP and UDP).
func (g *gossipNet) port() int { return int(g.tcp.Addr().(*net.TCPAddr).AddrPort().Port()) }

func (g *gossipNet) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		a := g.tcp.Addr().(*net.TCPAddr)
		return a.IP, a.Port, nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, 0, fmt.Errorf("gossip advertise address %q: %w", ip, err)
	}
	return net.IP(a.Unmap().AsSlice()), port, nil
}

func (g *gossipNet) WriteTo(b []byte, addr string) (time.Time, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = g.udp.WriteToUDPAddrPort(b, ap)
	return time.Now(), err
}

func (g *gossipNet) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return g.WriteTo(b, a.Addr)
}

func (g *gossipNet) PacketCh() <-chan *memberlist.Packet { return g.packets }

func (g *gossipNet) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

func (g *gossipNet) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return g.DialTimeout(a.Addr, timeout)
}

func (g *gossipNet) StreamCh() <-chan net.Conn { return g.streams }

// Shutdown closes both sockets and waits for the reader and the acceptor.
// memberlist calls it once; a second call is harmless.
func (g *gossipNet) Shutdown() error {
	var err error
	g.once.Do(func() {
		g.closed.Store(true)
		close(g.stop)
		err = errors.Join(g.tcp.Close(), g.udp.Close())
	})
	g.wg.Wait()
	return err
}

// readPackets hands every datagram to memberlist as an exact-size copy of
// the one read buffer. Until memberlist is created nobody reads the
// channel, so the reader blocks there and the kernel queues (or drops)
// what comes in meanwhile, as with NetTransport; Shutdown unblocks it.
func (g *gossipNet) readPackets() {
	defer g.wg.Done()
	buf := make([]byte, gossipMaxPacket)
	for {
		n, from, err := g.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if g.closed.Load() {
				return
			}
			g.log.Error("gossip: read udp", "err", err)
			time.Sleep(10 * time.Millisecond) // an error that repeats must not spin
			continue
		}
		if n < 1 {
			continue // memberlist needs at least the message type
		}
		p := &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: net.UDPAddrFromAddrPort(from), Timestamp: ts}
		select {
		case g.packets <- p:
		case <-g.stop:
			return
		}
	}
}

func (g *gossipNet) accept() {
	defer g.wg.Done()
	delay := time.Duration(0)
	for {
		c, err := g.tcp.AcceptTCP()
		if err != nil {
			if g.closed.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			g.log.Error("gossip: accept tcp", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		select {
		case g.streams <- c:
		case <-g.stop:
			c.Close()
			return
		}
	}
}
