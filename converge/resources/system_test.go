package resources

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/converge/supervise"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (useradd/groupadd/apt-get)")
	}
}

func requireTool(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found", tool)
		}
	}
}

func sh(t *testing.T, dir string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPackage_CheckApply_Apt(t *testing.T) {
	requireTool(t, "dpkg-query", "apt-get", "apt-cache")
	if converge.DetectOSFamily() != "debian" {
		t.Skip("skipping: not a Debian-family system")
	}
	real := converge.Env{Root: "/", OSFamily: "debian"}
	// dpkg is always installed: nothing to do, in every mode.
	r := mustBuild(t, real, `resource "package" "dpkg" {
  name = "dpkg"
}`)
	step(t, r, false, true, "installed package")

	// Local nodes only check; they refuse to install.
	local := localEnv(t)
	local.OSFamily = "debian"
	r = mustBuild(t, local, `resource "package" "nope" {
  name = "hactl-no-such-package"
}`)
	if _, err := r.CheckApply(t.Context(), false); err == nil || !strings.Contains(err.Error(), "local nodes share the host's packages") {
		t.Fatalf("local install: err = %v", err)
	}
	ok, err := mustBuild(t, local, `resource "package" "dpkg" {
  name = "dpkg"
}`).CheckApply(t.Context(), true)
	if err != nil || !ok {
		t.Fatalf("local satisfied package: %v, %v", ok, err)
	}

	// A real install and removal, of GNU hello (a tiny package without
	// dependencies), when the machine is root and apt knows it.
	requireRoot(t)
	pol, _ := exec.Command("apt-cache", "policy", "hello").Output()
	if !strings.Contains(string(pol), "Candidate:") || strings.Contains(string(pol), "Candidate: (none)") {
		t.Skip("skipping install: apt has no candidate for package hello (run apt-get update)")
	}
	if v, _ := (apt{}).installed(t.Context(), "hello"); v != "" {
		t.Skip("skipping install: hello is already installed on this machine")
	}
	t.Cleanup(func() { exec.Command("apt-get", "remove", "-y", "-q", "hello").Run() })
	r = mustBuild(t, real, `resource "package" "hello" {
  name = "hello"
}`)
	// Installing and removing are slow (dpkg triggers), so the timeline
	// uses the absent resource as the outside breakage: two apt runs.
	step(t, r, false, false, "noop before install")
	if v, _ := (apt{}).installed(t.Context(), "hello"); v != "" {
		t.Fatal("noop mode installed the package")
	}
	step(t, r, true, false, "install")
	step(t, r, true, true, "installed (idempotent)")
	rm := mustBuild(t, real, `resource "package" "hello" {
  name   = "hello"
  ensure = "absent"
}`)
	step(t, rm, false, false, "noop remove")
	step(t, rm, true, false, "remove")
	step(t, r, false, false, "removal detected")
	step(t, rm, true, true, "removed")
}

func TestService_CheckApply_Supervisor(t *testing.T) {
	env := localEnv(t)
	sup, err := supervise.New(supervise.Config{Root: env.Root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	env.Supervisor = sup
	r := mustBuild(t, env, `resource "service" "web" {
  name    = "web"
  command = ["sleep", "600"]
  env     = { PORT = "8080" }
}`)
	timeline(t, r, func() bool { _, ok := sup.Status("web"); return !ok }, func() { sup.Stop("web") })
	st, ok := sup.Status("web")
	if !ok || !st.Running {
		t.Fatalf("status %+v", st)
	}
	stop := mustBuild(t, env, `resource "service" "web" {
  name   = "web"
  ensure = "stopped"
}`)
	timeline(t, stop, func() bool { _, ok := sup.Status("web"); return ok }, nil)
	if supervise.GroupAlive(st.PID) {
		t.Error("process group alive after stop")
	}
	if _, err := build(t, env, `resource "service" "x" {
  name = "x"
}`); err == nil {
		t.Error("supervised service without command accepted")
	}
}

// A changed config file restarts its service once; an unchanged one does not.
func TestService_Refresh_OnNotify(t *testing.T) {
	env := localEnv(t)
	sup, err := supervise.New(supervise.Config{Root: env.Root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	env.Supervisor = sup
	src := func(content string) string {
		return fmt.Sprintf(`
resource "file" "conf" {
  path    = "/etc/web.conf"
  content = %q
  notify  = [service.web]
}
resource "file" "other" {
  path    = "/etc/other.conf"
  content = %q
  notify  = [service.web]
}
resource "service" "web" {
  name    = "web"
  command = ["sh", "-c", "cat /proc/self/stat > /dev/null; exec sleep 600"]
  cwd     = "/etc"
}
`, content, content)
	}
	os.MkdirAll(filepath.Join(env.Root, "etc"), 0o755)
	rep := runEngine(t, env, src("v1"), false)
	if rep.Summary.Failed != 0 {
		t.Fatalf("%+v", rep.Resources)
	}
	st1, _ := sup.Status("web")
	if st1.Starts != 1 {
		t.Fatalf("starts after first run = %d (started service must not be restarted again)", st1.Starts)
	}
	rep = runEngine(t, env, src("v1"), false)
	if st, _ := sup.Status("web"); st.Starts != 1 || rep.Summary.Changed != 0 {
		t.Fatalf("idempotent run restarted: %+v %+v", st, rep.Resources)
	}
	rep = runEngine(t, env, src("v2"), false)
	st3, _ := sup.Status("web")
	if st3.Starts != 2 || st3.PID == st1.PID {
		t.Fatalf("after config change: %+v, want exactly one restart", st3)
	}
	if c := rep.Resource("service.web").Change; !strings.Contains(c, "refreshed (notified by file.conf, file.other)") {
		t.Errorf("change = %q", c)
	}
}

func TestService_CheckApply_Systemd(t *testing.T) {
	if !systemdRunning() {
		t.Skip("skipping: systemd is not PID 1 here (no /run/systemd/system); the supervisor back end is tested instead")
	}
	requireRoot(t)
	name := fmt.Sprintf("hactl-test-%d", rand.IntN(1e6))
	unit := "/run/systemd/system/" + name + ".service"
	write(t, unit, "[Service]\nExecStart=/bin/sleep 600\n[Install]\nWantedBy=multi-user.target\n")
	t.Cleanup(func() {
		exec.Command("systemctl", "stop", name).Run()
		os.Remove(unit)
		exec.Command("systemctl", "daemon-reload").Run()
	})
	sh(t, "/", "systemctl", "daemon-reload")
	r := mustBuild(t, converge.Env{Root: "/"}, fmt.Sprintf(`resource "service" "s" {
  name = %q
}`, name))
	timeline(t, r, nil, func() { sh(t, "/", "systemctl", "stop", name) })
}

func TestService_CheckApply_NoSystemdErrors(t *testing.T) {
	if systemdRunning() {
		t.Skip("skipping: systemd is running here")
	}
	r := mustBuild(t, converge.Env{Root: "/"}, `resource "service" "s" {
  name = "ssh"
}`)
	if _, err := r.CheckApply(t.Context(), false); err == nil || !strings.Contains(err.Error(), "systemd is not running") {
		t.Fatalf("err = %v", err)
	}
}

func TestUserGroup_CheckApply(t *testing.T) {
	requireRoot(t)
	requireTool(t, "useradd", "usermod", "userdel", "groupadd", "groupmod", "groupdel", "getent")
	n := rand.IntN(1e6)
	gname, uname := fmt.Sprintf("hactlg%d", n), fmt.Sprintf("hactlu%d", n)
	gid := 61000 + n%4000
	t.Cleanup(func() {
		exec.Command("userdel", uname).Run()
		exec.Command("groupdel", gname).Run()
	})
	env := converge.Env{Root: "/"}
	g := mustBuild(t, env, fmt.Sprintf(`resource "group" "g" {
  name = %q
  gid  = %d
}`, gname, gid))
	timeline(t, g, func() bool { return exec.Command("getent", "group", gname).Run() != nil },
		func() { sh(t, "/", "groupmod", "-g", fmt.Sprint(gid+1), gname) })
	if got := sh(t, "/", "getent", "group", gname); !strings.HasPrefix(got, fmt.Sprintf("%s:x:%d:", gname, gid)) {
		t.Errorf("group entry %q", got)
	}
	u := mustBuild(t, env, fmt.Sprintf(`resource "user" "u" {
  name   = %q
  group  = %q
  groups = [%q]
  shell  = "/bin/sh"
  home   = "/nonexistent"
}`, uname, gname, "users"))
	timeline(t, u, func() bool { return exec.Command("getent", "passwd", uname).Run() != nil },
		func() { sh(t, "/", "usermod", "-s", "/bin/bash", uname) })
	if got := sh(t, "/", "getent", "passwd", uname); !strings.HasSuffix(got, ":/nonexistent:/bin/sh") {
		t.Errorf("passwd entry %q", got)
	}
	if got := sh(t, "/", "id", "-Gn", uname); !strings.Contains(got, "users") {
		t.Errorf("groups %q", got)
	}
	del := mustBuild(t, env, fmt.Sprintf(`resource "user" "u" {
  name   = %q
  ensure = "absent"
}`, uname))
	timeline(t, del, nil, nil)
	delg := mustBuild(t, env, fmt.Sprintf(`resource "group" "g" {
  name   = %q
  ensure = "absent"
}`, gname))
	timeline(t, delg, nil, nil)
	// On a local node accounts are only checked.
	if _, err := mustBuild(t, localEnv(t), fmt.Sprintf(`resource "group" "g" {
  name = %q
}`, gname)).CheckApply(t.Context(), true); err == nil || !strings.Contains(err.Error(), "local nodes") {
		t.Errorf("local group: err = %v", err)
	}
}

func TestExec_CheckApply(t *testing.T) {
	env := localEnv(t)
	r := mustBuild(t, env, `resource "exec" "init" {
  command = ["sh", "-c", "echo $GREETING > done"]
  creates = "/done"
  env     = { GREETING = "hi" }
}`)
	host := filepath.Join(env.Root, "done")
	timeline(t, r, func() bool { return !exists(host) }, func() { os.Remove(host) })
	if read(t, host) != "hi\n" {
		t.Errorf("output %q", read(t, host))
	}
	marker := filepath.Join(env.Root, "ran")
	unless := mustBuild(t, env, `resource "exec" "u" {
  command = ["sh", "-c", "echo x >> ran"]
  unless  = ["test", "-e", "ran"]
}`)
	timeline(t, unless, func() bool { return !exists(marker) }, func() { os.Remove(marker) })
	onlyif := mustBuild(t, env, `resource "exec" "o" {
  command = ["rm", "ran"]
  onlyif  = ["test", "-e", "ran"]
}`)
	timeline(t, onlyif, func() bool { return exists(marker) }, func() { write(t, marker, "x") })

	failing := mustBuild(t, env, `resource "exec" "f" {
  command = ["sh", "-c", "echo boom >&2; exit 3"]
}`)
	if _, err := failing.CheckApply(t.Context(), true); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing command: err = %v", err)
	}
	slow := mustBuild(t, env, `resource "exec" "s" {
  command = ["sleep", "60"]
  timeout = "200ms"
}`)
	if _, err := slow.CheckApply(t.Context(), true); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("timeout: err = %v", err)
	}
}

func TestExec_RefreshOnly(t *testing.T) {
	env := localEnv(t)
	src := func(c string) string {
		return fmt.Sprintf(`
resource "file" "conf" {
  path    = "/conf"
  content = %q
}
resource "exec" "reload" {
  command     = ["sh", "-c", "echo reload >> reloads"]
  refreshonly = true
  subscribe   = [file.conf]
}
`, c)
	}
	count := func() int {
		b, _ := os.ReadFile(filepath.Join(env.Root, "reloads"))
		return strings.Count(string(b), "reload")
	}
	runEngine(t, env, src("a"), false)
	if count() != 1 {
		t.Fatalf("reloads after first run = %d", count())
	}
	runEngine(t, env, src("a"), false)
	runEngine(t, env, src("b"), true) // dry run: no reload
	if count() != 1 {
		t.Fatalf("reloads after no-op and dry runs = %d", count())
	}
	runEngine(t, env, src("b"), false)
	if count() != 2 {
		t.Fatalf("reloads after change = %d", count())
	}
}

func TestGit_CheckApply(t *testing.T) {
	requireTool(t, "git")
	src := t.TempDir()
	g := func(args ...string) string {
		return sh(t, src, append([]string{"git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	}
	g("init", "-q")
	write(t, filepath.Join(src, "README"), "one\n")
	g("add", ".")
	g("commit", "-q", "-m", "one")
	first := g("rev-parse", "HEAD")
	g("tag", "-a", "-m", "v1", "v1")
	write(t, filepath.Join(src, "README"), "two\n")
	g("commit", "-q", "-am", "two")
	second := g("rev-parse", "HEAD")

	env := localEnv(t)
	host := filepath.Join(env.Root, "srv/app")
	r := mustBuild(t, env, fmt.Sprintf(`resource "git" "app" {
  path   = "/srv/app"
  repo   = %q
  branch = "main"
}`, src))
	timeline(t, r, func() bool { return !exists(host) }, func() {
		sh(t, host, "git", "checkout", "-q", first)
	})
	if got := sh(t, host, "git", "rev-parse", "HEAD"); got != second {
		t.Errorf("HEAD = %s, want %s", got, second)
	}
	// The branch moves upstream: the next check notices.
	write(t, filepath.Join(src, "README"), "three\n")
	g("commit", "-q", "-am", "three")
	third := g("rev-parse", "HEAD")
	step(t, r, false, false, "upstream moved")
	step(t, r, true, false, "follow upstream")
	if got := read(t, filepath.Join(host, "README")); got != "three\n" || sh(t, host, "git", "rev-parse", "HEAD") != third {
		t.Errorf("not at the new commit: %q", got)
	}
	tag := mustBuild(t, env, fmt.Sprintf(`resource "git" "app" {
  path = "/srv/app"
  repo = %q
  tag  = "v1"
}`, src))
	step(t, tag, true, false, "to tag")
	step(t, tag, true, true, "at tag")
	if got := sh(t, host, "git", "rev-parse", "HEAD"); got != first {
		t.Errorf("tag checkout HEAD = %s, want %s", got, first)
	}
	pin := mustBuild(t, env, fmt.Sprintf(`resource "git" "app" {
  path   = "/srv/app"
  repo   = %q
  commit = %q
}`, src, second))
	step(t, pin, true, false, "to commit")
	step(t, pin, true, true, "at commit")
}
