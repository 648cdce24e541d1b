package lang

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

func noEnv(string) string { return "" }

// loadTestFile loads one file of a testdata directory as the whole
// configuration; role sources and templates come from the same directory.
func loadTestFile(t *testing.T, path string) (*Config, hcl.Diagnostics) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return LoadFiles(map[string][]byte{path: b}, LoadOptions{Dir: filepath.Dir(path), Getenv: noEnv})
}

func TestLoad_Valid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, diags := loadTestFile(t, f)
			if len(diags) > 0 {
				var buf bytes.Buffer
				WriteDiagnostics(&buf, c.Files, diags, false)
				t.Fatalf("unexpected diagnostics:\n%s", buf.String())
			}
		})
	}
}

var markerRe = regexp.MustCompile(`#\s*(ERROR|WARNING):\s*(.+?)\s*$`)

// markers reads "# ERROR: summary" and "# WARNING: summary" comments, keyed
// by "file:line".
func markers(files map[string][]byte) (errs, warns map[string]string) {
	errs, warns = map[string]string{}, map[string]string{}
	for name, b := range files {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for line := 1; sc.Scan(); line++ {
			m := markerRe.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			key := fmt.Sprintf("%s:%d", name, line)
			if m[1] == "ERROR" {
				errs[key] = m[2]
			} else {
				warns[key] = m[2]
			}
		}
	}
	return errs, warns
}

// byLine keys diagnostics by "file:line" of their subject; several on one
// line are joined with " + " in sorted order.
func byLine(diags hcl.Diagnostics, sev hcl.DiagnosticSeverity) map[string]string {
	all := map[string][]string{}
	for _, d := range diags {
		if d.Severity != sev {
			continue
		}
		key := "<no range>"
		if d.Subject != nil {
			key = fmt.Sprintf("%s:%d", d.Subject.Filename, d.Subject.Start.Line)
		}
		all[key] = append(all[key], d.Summary)
	}
	out := map[string]string{}
	for k, v := range all {
		sort.Strings(v)
		out[k] = strings.Join(v, " + ")
	}
	return out
}

func TestLoad_Errors(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no error test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, diags := loadTestFile(t, f)
			wantErrs, wantWarns := markers(c.Files)
			if diff := cmp.Diff(wantErrs, byLine(diags, hcl.DiagError)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantWarns, byLine(diags, hcl.DiagWarning)); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			for _, d := range diags {
				if d.Summary == "" || d.Detail == "" {
					t.Errorf("diagnostic without summary or detail: %#v", d)
				}
			}
		})
	}
}

func diagText(files map[string][]byte, diags hcl.Diagnostics) string {
	var buf bytes.Buffer
	WriteDiagnostics(&buf, files, diags, false)
	return buf.String()
}
