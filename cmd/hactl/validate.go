package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
)

// resourceSchemas validates resource bodies in `hactl validate`. It is nil
// until the converge engine exists; the lead sets it to the converge kind
// registry (which satisfies lang.Schemas, and lang.KindLister for better
// messages).
var resourceSchemas lang.Schemas

// validateResult is the -json output of hactl validate.
type validateResult struct {
	Valid        bool                  `json:"valid"`
	ErrorCount   int                   `json:"error_count"`
	WarningCount int                   `json:"warning_count"`
	Diagnostics  []lang.JSONDiagnostic `json:"diagnostics"`
}

func newValidateCmd(g *globals) *cobra.Command {
	var vars []string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a configuration directory for errors",
		Long: `Validate loads every *.hcl file in DIR (default ".") and reports every
problem at once, with the file, line and a snippet of the source. It exits 1
when there are errors; warnings alone do not fail. With -json it prints
{"valid", "error_count", "warning_count", "diagnostics"} to stdout.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			vm, err := validateParseVars(vars)
			if err != nil {
				return err
			}
			cfg, diags := lang.Load(dir, lang.LoadOptions{Variables: vm, Schemas: resourceSchemas})
			var files map[string][]byte
			if cfg != nil {
				files = cfg.Files
			}
			return renderValidate(g, files, diags)
		},
	}
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set an input variable, NAME=VALUE (repeatable)")
	return cmd
}

// validateParseVars turns NAME=VALUE flags into LoadOptions.Variables.
func validateParseVars(flags []string) (map[string]string, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(flags))
	for _, f := range flags {
		name, val, ok := strings.Cut(f, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("invalid -var %q: write NAME=VALUE", f)
		}
		m[strings.TrimSpace(name)] = val
	}
	return m, nil
}

func renderValidate(g *globals, files map[string][]byte, diags hcl.Diagnostics) error {
	res := validateResult{Diagnostics: lang.DiagnosticsJSON(diags)}
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			res.ErrorCount++
		} else {
			res.WarningCount++
		}
	}
	res.Valid = res.ErrorCount == 0
	if g.jsonOut {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		if len(diags) > 0 {
			if err := lang.WriteDiagnostics(g.stderr, files, diags, useColor(g, g.stderr)); err != nil {
				return err
			}
		}
		if res.Valid {
			msg := "Success! The configuration is valid."
			if res.WarningCount > 0 {
				msg = "Success! The configuration is valid, but there were some validation warnings as shown above."
			}
			fmt.Fprintln(g.stdout, msg)
		}
	}
	if !res.Valid {
		return silentExit(1)
	}
	return nil
}

// useColor reports whether w is a terminal and colour was not turned off.
func useColor(g *globals, w io.Writer) bool {
	if g.noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
