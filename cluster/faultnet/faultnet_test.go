package faultnet

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// plainStream is a raft.StreamLayer over plain TCP for this test.
type plainStream struct{ net.Listener }

func (s plainStream) Dial(a raft.ServerAddress, d time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(a), d)
}

func TestNet_Partition_StreamsAndPackets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	n := New(1)
	n.Register("b", ln.Addr().String())
	s := n.Stream("a", plainStream{ln})
	c, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}

	n.Partition([]string{"a"}, []string{"b"})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection across a new partition still readable")
	}
	if _, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second); err == nil {
		t.Fatal("dial across a partition succeeded")
	}

	// Gossip packets: a UDP transport pair on loopback.
	ta, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ta.Shutdown() })
	tb, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Shutdown() })
	bAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tb.GetAutoBindPort()))
	n.Register("b", bAddr)
	wa := n.Transport("a", ta)
	if _, err := wa.WriteToAddress([]byte("dropped"), memberlist.Address{Addr: bAddr, Name: "b"}); err != nil {
		t.Fatal(err)
	}
	n.Heal()
	if _, err := wa.WriteToAddress([]byte("delivered"), memberlist.Address{Addr: bAddr, Name: "b"}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-tb.PacketCh():
		if string(p.Buf) != "delivered" {
			t.Fatalf("first packet = %q; the partitioned one was not dropped", p.Buf)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("packet after heal not delivered")
	}
	if _, err := s.Dial(raft.ServerAddress(ln.Addr().String()), time.Second); err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
}
