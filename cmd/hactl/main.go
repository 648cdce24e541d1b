// Command hactl keeps a small cluster of machines highly available,
// declaratively. This package wires the other packages together and holds no
// logic of its own: each subcommand parses its flags, calls into a package,
// and renders the result (text for people, -json for programs).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// exitError carries a specific exit status (e.g. plan -detailed-exitcode 2).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// silentExit ends the command with a status and no further message (the
// command already rendered what went wrong, e.g. diagnostics).
func silentExit(code int) error { return &exitError{code: code} }

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := newRootCmdFor(g, args)
	root.SetArgs(normalizeArgs(root, args))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(g.stderr, "Error:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(g.stderr, "Error:", err)
	return 1
}

// hasSingleDashLong reports whether an argument before "--" looks like a
// single-dash long flag (-json), which normalizeArgs may rewrite.
func hasSingleDashLong(args []string) bool {
	for _, a := range args {
		if a == "--" {
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			return true
		}
	}
	return false
}

// normalizeArgs accepts Terraform-style single-dash long flags (-json,
// -auto-approve, -out=FILE) by turning them into --json etc. when the name is
// a long flag somewhere in the command tree. Short flags are left alone.
//
// The command tree's flags are only collected when some argument looks like
// one (LocalFlags merges flag sets: 0.3 ms of every start-up otherwise).
func normalizeArgs(root *cobra.Command, args []string) []string {
	if !hasSingleDashLong(args) {
		return args
	}
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflagFlag) { long[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflagFlag) { long[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name := a[1:]
			if j := strings.IndexByte(name, '='); j >= 0 {
				name = name[:j]
			}
			if len(name) > 1 && long[name] {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}
