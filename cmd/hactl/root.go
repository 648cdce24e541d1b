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

func newRootCmd(g *globals) *cobra.Command {
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

	root.AddCommand(
		// Each subcommand lives in its own file as newXCmd(g).
		newAgentCmd(g),
		newUserdataCmd(g),
		newPublishCmd(g),
		newValidateCmd(g),
		newFmtCmd(g),
		newServeCmd(g),
		newPlanCmd(g),
		newConvergeCmd(g),
		newApplyCmd(g),
		newStatusCmd(g),
		newEventsCmd(g),
		newDestroyCmd(g),
		newDemoCmd(g),
		newKeygenCmd(g),
		newEmulateCmd(g),
		newChaosCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
	)
	return root
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
