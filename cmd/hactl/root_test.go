package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestCommands_Names: every entry of commands is invoked by its name.
func TestCommands_Names(t *testing.T) {
	for _, c := range commands {
		if got := c.make(&globals{}).Name(); got != c.name {
			t.Errorf("commands entry %q makes command %q", c.name, got)
		}
	}
	if n := len(newRootCmd(&globals{}).Commands()); n != len(commands) {
		t.Errorf("root has %d commands, want %d", n, len(commands))
	}
}

// execTree runs root with args and returns what it printed and its error.
func execTree(root *cobra.Command, args []string) string {
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(normalizeArgs(root, args))
	err := root.Execute()
	if err != nil {
		out.WriteString("\nerror: " + err.Error())
	}
	return out.String()
}

// TestNewRootCmdFor_SameAsWholeTree: a tree with only the invoked command
// behaves like the whole one for help, usage errors and flag errors of
// every command and subcommand (none of these runs a command).
func TestNewRootCmdFor_SameAsWholeTree(t *testing.T) {
	var cases [][]string
	var walk func(path []string, c *cobra.Command)
	walk = func(path []string, c *cobra.Command) {
		for _, tail := range [][]string{{"--help"}, {"-h"}, {"--no-such-flag"}, {"-no-such-flag"}, {"--json", "--help"}, {"-json", "--help"}} {
			cases = append(cases, append(append([]string{}, path...), tail...))
		}
		for _, sub := range c.Commands() {
			walk(append(append([]string{}, path...), sub.Name()), sub)
		}
	}
	for _, c := range newRootCmd(&globals{}).Commands() {
		walk([]string{c.Name()}, c)
	}
	cases = append(cases, []string{"converge"}, []string{"converge", "a", "b"}, []string{"no-such-command"},
		[]string{"conver"}, []string{"help", "converge"}, []string{"--help"}, []string{"completion", "bash"},
		[]string{"__complete", "conv"}, []string{"__complete", "converge", "--"},
		[]string{"converge", "-detailed-exitcode"}, []string{"status", "-auto-approve=true"}) // long flags of other commands
	partial := 0
	for _, args := range cases {
		full := execTree(newRootCmd(&globals{}), args)
		root := newRootCmdFor(&globals{}, args)
		if len(root.Commands()) < len(commands) {
			partial++
		}
		if got := execTree(root, args); got != full {
			t.Errorf("hactl %s:\n--- whole tree:\n%s\n--- invoked command only:\n%s", strings.Join(args, " "), full, got)
		}
	}
	if partial < len(commands) {
		t.Errorf("only %d of %d cases built a partial tree", partial, len(cases))
	}
}
