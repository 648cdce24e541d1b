package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/internal/fsutil"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/spf13/cobra"
)

// fmtCheckExit is the exit status of `hactl fmt -check` when a file needs
// formatting (3, as terraform fmt -check); syntax errors exit 1.
const fmtCheckExit = 3

// fmtResult is the -json output of hactl fmt.
type fmtResult struct {
	Changed     []string              `json:"changed"`
	Diagnostics []lang.JSONDiagnostic `json:"diagnostics"`
}

type fmtOptions struct {
	check, diff, write, recursive bool
}

func newFmtCmd(g *globals) *cobra.Command {
	var o fmtOptions
	cmd := &cobra.Command{
		Use:   "fmt [PATH...]",
		Short: "Rewrite HCL files in the canonical format",
		Long: `Fmt rewrites *.hcl files in the canonical layout (hclwrite.Format). A PATH
is a file or a directory (its *.hcl files; with -recursive, also those of
subdirectories); the default is ".", and "-" formats stdin to stdout. It lists
the files it changed. -check changes nothing and exits 3 when a file needs
formatting; -diff prints a unified diff; -write=false leaves files alone.
Files with syntax errors are reported and exit 1.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			return runFmt(g, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.check, "check", false, "change nothing; exit 3 if any file needs formatting")
	f.BoolVar(&o.diff, "diff", false, "print a unified diff of the changes")
	f.BoolVar(&o.write, "write", true, "write the formatted result back to the files")
	f.BoolVar(&o.recursive, "recursive", false, "also format files in subdirectories")
	return cmd
}

func runFmt(g *globals, o fmtOptions, args []string) error {
	var diags hcl.Diagnostics
	res := fmtResult{Changed: []string{}}
	files := map[string][]byte{}
	for _, arg := range args {
		if arg == "-" {
			src, err := io.ReadAll(g.stdin)
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			out, d := fmtSource("<stdin>", src)
			files["<stdin>"] = src
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			if !bytes.Equal(src, out) {
				res.Changed = append(res.Changed, "<stdin>")
			}
			switch {
			case o.diff:
				if _, err := g.stdout.Write(unifiedDiff("<stdin>", src, out)); err != nil {
					return err
				}
			case !o.check && !g.jsonOut:
				if _, err := g.stdout.Write(out); err != nil {
					return err
				}
			}
			continue
		}
		paths, err := fmtCollect(arg, o.recursive)
		if err != nil {
			return err
		}
		for _, p := range paths {
			src, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			files[p] = src
			out, d := fmtSource(p, src)
			diags = append(diags, d...)
			if d.HasErrors() || bytes.Equal(src, out) {
				continue
			}
			res.Changed = append(res.Changed, p)
			if !g.jsonOut && !o.diff {
				fmt.Fprintln(g.stdout, p)
			}
			if o.diff {
				if _, err := g.stdout.Write(unifiedDiff(p, src, out)); err != nil {
					return err
				}
			}
			if o.write && !o.check {
				if err := writeFileAtomic(p, out); err != nil {
					return err
				}
			}
		}
	}
	res.Diagnostics = lang.DiagnosticsJSON(diags)
	if g.jsonOut {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if len(diags) > 0 {
		if err := lang.WriteDiagnostics(g.stderr, files, diags, useColor(g, g.stderr)); err != nil {
			return err
		}
	}
	switch {
	case diags.HasErrors():
		return silentExit(1)
	case o.check && len(res.Changed) > 0:
		return silentExit(fmtCheckExit)
	}
	return nil
}

// fmtSource checks the syntax of src and returns it formatted.
func fmtSource(name string, src []byte) ([]byte, hcl.Diagnostics) {
	_, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// fmtCollect expands a path argument into the files to format, sorted.
func fmtCollect(arg string, recursive bool) ([]string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, fmt.Errorf("fmt %s: %w", arg, err)
	}
	if !st.IsDir() {
		return []string{arg}, nil
	}
	var out []string
	err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != arg && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".hcl") && !strings.HasPrefix(d.Name(), ".") && d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fmt %s: %w", arg, err)
	}
	sort.Strings(out)
	return out, nil
}

// writeFileAtomic replaces path with b atomically, keeping the file's
// permissions.
func writeFileAtomic(path string, b []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fsutil.WriteFile(path, b, st.Mode().Perm()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// unifiedDiff renders the change from a to b as a unified diff with three
// lines of context, labelled old/NAME and new/NAME (the converge engine's
// diff, which dry runs also print).
func unifiedDiff(name string, a, b []byte) []byte {
	return []byte(converge.UnifiedDiff("old/"+name, "new/"+name, a, b))
}
