package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type pflagFlag = pflag.Flag

// globals are the options every command shares, and the process's streams
// (tests replace them).
type globals struct {
	stdout, stderr io.Writer
	stdin          io.Reader

	jsonOut   bool
	logLevel  string
	logFormat string
	noColor   bool
	stateDir  string

	logger *slog.Logger
}

// newRootCmd builds the whole command tree.
func newRootCmd(g *globals) *cobra.Command {
	root := newRootOnly(g)
	for _, c := range commands {
		root.AddCommand(c.make(g))
	}
	return root
}

// newRootOnly builds the root command and its persistent flags, without
// subcommands.
func newRootOnly(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "hactl",
		Short: "Keep a small cluster of machines highly available, declaratively",
		Long: `hactl reads HCL files that describe node roles, replica counts, fencing,
health checks, data and objectives; "hactl plan" shows what would change and
"hactl apply" makes the world match. Agents on every node converge their role
from a signed git repository and rebuild lost nodes.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setup()
		},
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&g.jsonOut, "json", false, "print machine-readable JSON instead of text")
	pf.StringVar(&g.logLevel, "log-level", envOr("HACTL_LOG_LEVEL", "warn"), "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.BoolVar(&g.noColor, "no-color", false, "disable colour in output")
	pf.StringVar(&g.stateDir, "state-dir", "", "directory for local nodes (default $HACTL_STATE_DIR, else $XDG_STATE_HOME/hactl, else ~/.local/state/hactl)")
	return root
}

// commands are hactl's subcommands, each in its own file as newXCmd(g),
// by the name that invokes it.
var commands = []struct {
	name string
	make func(*globals) *cobra.Command
}{
	{"agent", newAgentCmd},
	{"userdata", newUserdataCmd},
	{"publish", newPublishCmd},
	{"validate", newValidateCmd},
	{"fmt", newFmtCmd},
	{"serve", newServeCmd},
	{"plan", newPlanCmd},
	{"converge", newConvergeCmd},
	{"apply", newApplyCmd},
	{"status", newStatusCmd},
	{"events", newEventsCmd},
	{"destroy", newDestroyCmd},
	{"demo", newDemoCmd},
	{"keygen", newKeygenCmd},
	{"emulate", newEmulateCmd},
	{"chaos", newChaosCmd},
	{"backup", newBackupCmd},
	{"restore", newRestoreCmd},
}

// newRootCmdFor is newRootCmd for one invocation: when args start with a
// subcommand's name, only that subcommand is built (building all of them
// took 0.3-0.6 ms of every start-up, most of it commands not run). The
// others matter only to what starts otherwise: help, completion, an
// unknown command's suggestions, and flags written -long (normalizeArgs
// looks for the name in every command), which get the whole tree.
func newRootCmdFor(g *globals, args []string) *cobra.Command {
	if len(args) == 0 || hasSingleDashLong(args) {
		return newRootCmd(g)
	}
	for _, c := range commands {
		if c.name == args[0] {
			root := newRootOnly(g)
			root.AddCommand(c.make(g))
			return root
		}
	}
	return newRootCmd(g)
}

func (g *globals) setup() error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	if g.logFormat == "json" {
		h = slog.NewJSONHandler(g.stderr, opts)
	} else {
		h = slog.NewTextHandler(g.stderr, opts)
	}
	g.logger = slog.New(h)
	slog.SetDefault(g.logger)
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
