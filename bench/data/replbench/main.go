// Command replbench times hactl's data replication between two endpoints
// on loopback, for bench/data/run.sh (not part of CI). It runs the
// receiving replica's Server and the sending side in one process, talking
// HTTPS with mutual TLS over a real 127.0.0.1 socket, with certificates
// from cluster.GenerateCA.
//
//	replbench push SRC DST       push SRC into an empty replica at DST
//	replbench pull SRC DST       bootstrap DST from a replica serving SRC
//	replbench backup SRC STORE   back SRC up to dir://STORE
//	replbench restore STORE DST  restore the newest backup at dir://STORE
//
// REPLBENCH_CPUPROFILE=FILE writes a CPU profile of the run to FILE.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/data"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: replbench push|pull|backup|restore A B")
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if p := os.Getenv("REPLBENCH_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "replbench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "replbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, "replbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	fmt.Printf("%s %.3fs\n", os.Args[1], time.Since(start).Seconds())
}

func run(op, a, b string) error {
	ctx := context.Background()
	switch op {
	case "backup":
		t, err := data.NewDirTarget(abs(b))
		if err != nil {
			return err
		}
		_, err = data.Backup(ctx, a, t)
		return err
	case "restore":
		t, err := data.NewDirTarget(abs(a))
		if err != nil {
			return err
		}
		_, err = data.Restore(ctx, t, data.RestoreOptions{Dir: b})
		return err
	}
	ca, err := cluster.GenerateCA("bench")
	if err != nil {
		return err
	}
	srvFiles, err := ca.Issue("replica-1")
	if err != nil {
		return err
	}
	cliFiles, err := ca.Issue("replica-2")
	if err != nil {
		return err
	}
	srvTLS, _, err := data.MutualTLS(srvFiles.CACert, srvFiles.Cert, srvFiles.Key)
	if err != nil {
		return err
	}
	_, cliTLS, err := data.MutualTLS(cliFiles.CACert, cliFiles.Cert, cliFiles.Key)
	if err != nil {
		return err
	}
	served := b // push: the receiver serves DST
	if op == "pull" {
		served = a // pull: the replica serves SRC
	}
	if err := os.MkdirAll(served, 0o750); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- data.NewServer(served, nil).Serve(sctx, ln, srvTLS) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	switch op {
	case "push":
		r := data.NewReplicator(data.ReplicatorOptions{Dir: a, TLS: cliTLS})
		defer r.Close()
		ps, err := r.Push(ctx, addr)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "sent %d files, %d bytes\n", ps.Sent+ps.Copied, ps.SentBytes)
		return nil
	case "pull":
		_, err := data.Pull(ctx, cliTLS, addr, b)
		return err
	}
	return fmt.Errorf("unknown op %q", op)
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
