package resources

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
)

func TestFile_CheckApply_Timeline(t *testing.T) {
	env := localEnv(t)
	host := filepath.Join(env.Root, "etc/app.conf")
	write(t, host, "old\n")
	r := mustBuild(t, env, `resource "file" "conf" {
  path    = "/etc/app.conf"
  content = "new\n"
  mode    = "0600"
}`)
	timeline(t, r, func() bool { return read(t, host) == "old\n" }, func() { write(t, host, "tampered\n") })
	if got := read(t, host); got != "new\n" {
		t.Errorf("content = %q", got)
	}
	fi, _ := os.Stat(host)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode())
	}
	// Mode drift alone is detected and fixed.
	os.Chmod(host, 0o644)
	step(t, r, false, false, "mode drift")
	step(t, r, true, false, "fix mode")
	if c := r.(*File).Change(); !strings.Contains(c, "mode 0644 -> 0600") {
		t.Errorf("change = %q", c)
	}
	// Both replaced versions are kept for rollback.
	dir, _ := BackupDir(env, "/etc/app.conf")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("backups = %v, %v; want 2", ents, err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, read(t, filepath.Join(dir, e.Name())))
	}
	if got[0] != "old\n" || got[1] != "tampered\n" {
		t.Errorf("backup contents = %q", got)
	}
}

func TestFile_Diff_DryRun(t *testing.T) {
	env := localEnv(t)
	host := filepath.Join(env.Root, "srv/index.html")
	write(t, host, "a\nb\nc\n")
	r := mustBuild(t, env, `resource "file" "i" {
  path    = "/srv/index.html"
  content = "a\nB\nc\n"
}`)
	step(t, r, false, false, "dry run")
	d, err := r.(converge.Differ).Diff()
	if err != nil {
		t.Fatal(err)
	}
	want := "--- a/srv/index.html\n+++ b/srv/index.html\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
	if d != want {
		t.Errorf("diff = %q, want %q", d, want)
	}
	if read(t, host) != "a\nb\nc\n" {
		t.Error("dry run changed the file")
	}
}

func TestFile_CheckApply_BackupHistoryBounded(t *testing.T) {
	env := localEnv(t)
	env.BackupKeep = 2
	host := filepath.Join(env.Root, "f")
	for i, c := range []string{"1", "2", "3", "4", "5"} {
		write(t, host, "v"+c)
		r := mustBuild(t, env, `resource "file" "f" {
  path    = "/f"
  content = "final"
}`)
		step(t, r, true, false, "apply "+c)
		_ = i
	}
	dir, _ := BackupDir(env, "/f")
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("%d backups kept, want 2", len(ents))
	}
	if got := read(t, filepath.Join(dir, ents[1].Name())); got != "v5" {
		t.Errorf("newest backup = %q, want v5", got)
	}
}

func TestFile_CheckApply_SourceAndAbsent(t *testing.T) {
	env := localEnv(t)
	env.ConfigDir = t.TempDir()
	write(t, filepath.Join(env.ConfigDir, "files/motd"), "welcome\n")
	r := mustBuild(t, env, `resource "file" "motd" {
  path   = "/etc/motd"
  source = "files/motd"
}`)
	host := filepath.Join(env.Root, "etc/motd")
	os.MkdirAll(filepath.Dir(host), 0o755)
	timeline(t, r, func() bool { return !exists(host) }, func() { os.Remove(host) })
	if read(t, host) != "welcome\n" {
		t.Error("source not copied")
	}
	gone := mustBuild(t, env, `resource "file" "motd" {
  path   = "/etc/motd"
  ensure = "absent"
}`)
	timeline(t, gone, func() bool { return exists(host) }, func() { write(t, host, "back") })
}

func TestFile_CheckApply_ReplacesSymlinkWithoutFollowing(t *testing.T) {
	env := localEnv(t)
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, "secret")
	link := filepath.Join(env.Root, "etc/link")
	os.MkdirAll(filepath.Dir(link), 0o755)
	os.Symlink(outside, link)
	r := mustBuild(t, env, `resource "file" "l" {
  path    = "/etc/link"
  content = "mine"
}`)
	step(t, r, true, false, "replace link")
	if read(t, outside) != "secret" {
		t.Fatal("wrote through a symlink to outside the root")
	}
	if fi, _ := os.Lstat(link); !fi.Mode().IsRegular() {
		t.Error("link not replaced by a file")
	}
}

func TestFile_New_RefusesEscape(t *testing.T) {
	env := localEnv(t)
	_, err := build(t, env, `resource "file" "x" {
  path    = "/../../etc/passwd"
  content = "x"
}`)
	if !errors.Is(err, converge.ErrEscape) {
		t.Fatalf("err = %v, want ErrEscape", err)
	}
}

func TestDirectory_CheckApply_Timeline(t *testing.T) {
	env := localEnv(t)
	host := filepath.Join(env.Root, "srv/www")
	os.MkdirAll(filepath.Dir(host), 0o755)
	r := mustBuild(t, env, `resource "directory" "www" {
  path = "/srv/www"
  mode = "0750"
}`)
	timeline(t, r, func() bool { return !exists(host) }, func() { os.Chmod(host, 0o777) })
	if fi, _ := os.Stat(host); fi.Mode().Perm() != 0o750 {
		t.Errorf("mode = %v", fi.Mode())
	}
}

func TestDirectory_Purge(t *testing.T) {
	env := localEnv(t)
	write(t, filepath.Join(env.Root, "conf.d/stray.conf"), "x")
	write(t, filepath.Join(env.Root, "conf.d/sub/deep"), "x")
	src := `
resource "file" "keep" {
  path    = "/conf.d/keep.conf"
  content = "keep"
}
resource "directory" "confd" {
  path  = "/conf.d"
  purge = true
}
`
	rep := runEngine(t, env, src, false)
	if rep.Summary.Failed != 0 {
		t.Fatalf("report: %+v", rep.Resources)
	}
	ents, _ := os.ReadDir(filepath.Join(env.Root, "conf.d"))
	if len(ents) != 1 || ents[0].Name() != "keep.conf" {
		t.Errorf("entries after purge = %v", ents)
	}
	if rep := runEngine(t, env, src, false); rep.Summary.Changed != 0 {
		t.Errorf("second run changed: %+v", rep.Resources)
	}
}

func TestSymlink_CheckApply_Timeline(t *testing.T) {
	env := localEnv(t)
	host := filepath.Join(env.Root, "etc/current")
	os.MkdirAll(filepath.Dir(host), 0o755)
	r := mustBuild(t, env, `resource "symlink" "cur" {
  path   = "/etc/current"
  target = "/opt/app/v2"
}`)
	want := filepath.Join(env.Root, "opt/app/v2") // absolute targets move under the root
	timeline(t, r, func() bool { return !exists(host) }, func() {
		os.Remove(host)
		os.Symlink("/opt/app/v1", host)
	})
	if got, _ := os.Readlink(host); got != want {
		t.Errorf("target = %q, want %q", got, want)
	}
	_, err := build(t, env, `resource "symlink" "bad" {
  path   = "/etc/bad"
  target = "../../../../etc/shadow"
}`)
	if !errors.Is(err, converge.ErrEscape) {
		t.Errorf("relative escaping target: err = %v", err)
	}
}

func TestTemplate_CheckApply_Timeline(t *testing.T) {
	env := localEnv(t)
	env.ConfigDir = t.TempDir()
	env.EvalContext = nodeEvalContext()
	write(t, filepath.Join(env.ConfigDir, "upstream.tpl"), `# ${node.name} (${greeting})
%{ for m in cluster.members.web ~}
server ${m.name} ${m.address}:8080;
%{ endfor ~}
`)
	host := filepath.Join(env.Root, "etc/lb.conf")
	os.MkdirAll(filepath.Dir(host), 0o755)
	r := mustBuild(t, env, `resource "template" "lb" {
  path   = "/etc/lb.conf"
  source = "upstream.tpl"
  vars   = { greeting = "hi" }
}`)
	timeline(t, r, func() bool { return !exists(host) }, func() { write(t, host, "x") })
	want := "# web-1 (hi)\nserver web-1 127.0.10.1:8080;\nserver web-2 127.0.10.2:8080;\n"
	if got := read(t, host); got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	inline := mustBuild(t, env, `resource "template" "name" {
  path    = "/etc/hostname"
  content = "${node.name}\n"
}`)
	step(t, inline, true, false, "inline")
	if got := read(t, filepath.Join(env.Root, "etc/hostname")); got != "web-1\n" {
		t.Errorf("inline content %q", got)
	}
}

func TestEngine_ImplicitDirectoryEdge(t *testing.T) {
	env := localEnv(t)
	// The file is declared first but needs its directory.
	src := `
resource "file" "page" {
  path    = "/srv/site/index.html"
  content = "hi"
}
resource "directory" "site" {
  path = "/srv/site"
}
resource "directory" "srv" {
  path = "/srv"
}
`
	rep := runEngine(t, env, src, false)
	if rep.Summary.Changed != 3 || rep.Summary.Failed != 0 {
		t.Fatalf("report %+v", rep.Resources)
	}
	// A failing directory skips only what is inside it.
	env2 := localEnv(t)
	write(t, filepath.Join(env2.Root, "srv"), "a file, not a dir")
	src2 := src + `
resource "file" "other" {
  path    = "/other"
  content = "x"
}
`
	rep = runEngine(t, env2, src2, false)
	got := map[string]converge.Status{}
	for _, rr := range rep.Resources {
		got[rr.Addr] = rr.Status
	}
	want := map[string]converge.Status{"directory.srv": "failed", "directory.site": "skipped", "file.page": "skipped", "file.other": "changed"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %s, want %s (%+v)", k, got[k], v, rep.Resources)
		}
	}
}

func runEngine(t *testing.T, env converge.Env, src string, dry bool) *converge.Report {
	t.Helper()
	decls, diags := converge.ParseResources("test.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	rep, err := converge.NewEngine(Builtin(), env).Run(t.Context(), decls, env.EvalContext, converge.Options{DryRun: dry})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Through the engine, file writes are staged and committed in one batch:
// after each run the files hold the new content, the replaced content is in
// the bounded backup history, and no temporary file is left; a second run
// changes nothing.
func TestFile_Engine_StagedDriftKeepsBackups(t *testing.T) {
	env := localEnv(t)
	env.BackupKeep = 2
	var src strings.Builder
	for i := range 3 {
		fmt.Fprintf(&src, "resource \"file\" \"f%d\" {\n  path    = \"/etc/f%d\"\n  content = \"want %d\"\n  mode    = \"0640\"\n}\n", i, i, i)
	}
	if rep := runEngine(t, env, src.String(), false); rep.Summary.Changed != 3 || rep.Failed() {
		t.Fatalf("first run: %+v", rep.Summary)
	}
	for round := range 3 {
		for i := range 3 {
			write(t, filepath.Join(env.Root, "etc", fmt.Sprintf("f%d", i)), fmt.Sprintf("drift %d.%d", round, i))
		}
		if rep := runEngine(t, env, src.String(), false); rep.Summary.Changed != 3 || rep.Failed() {
			t.Fatalf("drift run %d: %+v", round, rep.Resources)
		}
	}
	for i := range 3 {
		p := filepath.Join(env.Root, "etc", fmt.Sprintf("f%d", i))
		if got := read(t, p); got != fmt.Sprintf("want %d", i) {
			t.Errorf("f%d = %q", i, got)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("f%d mode = %v, %v; want 0640", i, fi.Mode(), err)
		}
		dir, _ := BackupDir(env, fmt.Sprintf("/etc/f%d", i))
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 2 {
			t.Fatalf("f%d backups = %v, %v; want the 2 newest", i, ents, err)
		}
		if got := read(t, filepath.Join(dir, ents[1].Name())); got != fmt.Sprintf("drift 2.%d", i) {
			t.Errorf("f%d newest backup = %q, want the last drift", i, got)
		}
	}
	filepath.WalkDir(env.Root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".hactl-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
	if rep := runEngine(t, env, src.String(), false); rep.Summary.Unchanged != 3 {
		t.Errorf("second run after converging: %+v, want all unchanged", rep.Summary)
	}
}
