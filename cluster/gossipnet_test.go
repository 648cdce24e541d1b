package cluster

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestGossipNet_PacketsStreamsShutdown(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	a, err := listenGossip(lo, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := listenGossip(lo, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if a.port() == 0 || a.port() == b.port() {
		t.Fatalf("ports %d and %d", a.port(), b.port())
	}
	ip, port, err := a.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(lo.AsSlice()) || port != a.port() {
		t.Fatalf("FinalAdvertiseAddr = %v %d %v, want %v %d", ip, port, err, lo, a.port())
	}
	aAddr := netip.AddrPortFrom(lo, uint16(a.port())).String()

	// Two datagrams of different sizes arrive as exact copies: the second
	// must not overwrite the first (one read buffer is reused).
	for _, msg := range [][]byte{bytes.Repeat([]byte("x"), 300), []byte("ping")} {
		if _, err := b.WriteToAddress(msg, memberlist.Address{Addr: aAddr, Name: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	var got []*memberlist.Packet
	for len(got) < 2 {
		select {
		case p := <-a.PacketCh():
			got = append(got, p)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 2 packets", len(got))
		}
	}
	if string(got[0].Buf) != string(bytes.Repeat([]byte("x"), 300)) || string(got[1].Buf) != "ping" {
		t.Fatalf("packets %q, %q", got[0].Buf, got[1].Buf)
	}
	if cap(got[1].Buf) >= gossipMaxPacket {
		t.Fatalf("packet buffer capacity %d: the read buffer was handed out", cap(got[1].Buf))
	}
	if want := netip.AddrPortFrom(lo, uint16(b.port())).String(); got[1].From.String() != want || got[1].Timestamp.IsZero() {
		t.Fatalf("from %v at %v, want %s", got[1].From, got[1].Timestamp, want)
	}
	if _, err := b.WriteTo([]byte("x"), "not an address"); err == nil {
		t.Fatal("write to a bad address succeeded")
	}

	// Streams: a dial from b is accepted by a.
	c, err := b.DialAddressTimeout(memberlist.Address{Addr: aAddr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-a.StreamCh():
		buf := make([]byte, 5)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("stream read %q %v", buf, err)
		}
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
	}

	// Shutdown returns even with a packet pending that nobody reads.
	if _, err := a.WriteTo([]byte("pending"), netip.AddrPortFrom(lo, uint16(b.port())).String()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- b.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown hangs on an unread packet")
	}
	if err := b.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}
