package lang

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var modelOpts = cmp.Options{
	cmpopts.IgnoreTypes(hcl.Range{}),
	cmpopts.IgnoreFields(ResourceDecl{}, "Body"),
	cmpopts.IgnoreFields(Config{}, "Files"),
	cmpopts.IgnoreUnexported(Config{}),
	cmp.Comparer(func(a, b cty.Value) bool { return a.RawEquals(b) }),
	cmpopts.EquateEmpty(),
}

func TestLoad_BlogModel(t *testing.T) {
	c, diags := loadTestFile(t, "testdata/valid/blog.hcl")
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	res := func(kind, name string, deps, notify, sub []ResourceAddr) *ResourceDecl {
		return &ResourceDecl{Addr: ResourceAddr{kind, name}, DependsOn: deps, Notify: notify, Subscribe: sub}
	}
	addr := func(kind, name string) []ResourceAddr { return []ResourceAddr{{kind, name}} }
	none := Fencing{Method: "provider", Settings: cty.EmptyObjectVal}
	want := &Config{
		Dir: "testdata/valid",
		Cluster: &Cluster{Name: "blog", Provider: "local", Voters: 3, Witness: "repo-1",
			Objectives: Objectives{RTO: time.Minute, RPO: 5 * time.Minute, Availability: 0.999}},
		Providers: map[string]*Provider{"local": {Name: "local", Type: "local", Config: cty.EmptyObjectVal}},
		Variables: map[string]cty.Value{
			"domain":          cty.StringVal("blog.example.org"),
			"admin_email":     cty.StringVal("admin@blog.example.org"),
			"backup_host_key": cty.StringVal("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcQNIuXHW6cy7O0OGP9H7rWOXbz4xQ+AcOfzqBzmeUx"),
		},
		Sensitive: map[string]bool{"backup_host_key": true},
		Locals: map[string]cty.Value{
			"web_port":  cty.NumberIntVal(8080),
			"lb_port":   cty.NumberIntVal(8443),
			"mail_root": cty.StringVal("/var/lib/hactl/mail"),
			"motd":      cty.StringVal("Welcome to blog.example.org"),
		},
		Roles: []*Role{
			{Name: "lb", Count: 2, Provider: "local", Fencing: none,
				Health: []HealthCheck{{Name: "tcp", Type: "tcp", Port: 8443, Interval: 10 * time.Second, Timeout: 5 * time.Second, Threshold: 3}},
				VIP:    &VIP{Address: "127.0.0.100", Port: 8443, Failback: "delayed", FailbackDelay: 2 * time.Minute},
				Resources: []*ResourceDecl{
					res("file", "backends", nil, nil, nil),
					res("service", "lb", nil, nil, addr("file", "backends")),
				}},
			{Name: "mail", Count: 2, Provider: "local", Fencing: none,
				Health: []HealthCheck{{Name: "smtp", Type: "smtp", Port: 2525, Interval: 10 * time.Second, Timeout: 5 * time.Second, Threshold: 3}},
				Data: []Data{{Name: "spool", Path: "/var/lib/hactl/mail", Mode: "sync", Backups: []Backup{{
					Name: "nightly", Target: "sftp://backup@127.0.0.1:2222/blog/mail", Schedule: "30 3 * * *",
					KeepLast: 7, KeepDaily: 30, HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcQNIuXHW6cy7O0OGP9H7rWOXbz4xQ+AcOfzqBzmeUx"}}}},
				Resources: []*ResourceDecl{
					res("directory", "spool", nil, nil, nil),
					res("exec", "aliases", addr("directory", "spool"), nil, nil),
					res("service", "smtp", []ResourceAddr{{"directory", "spool"}, {"exec", "aliases"}}, nil, nil),
				}},
			{Name: "repo", Count: 2, Provider: "local", Fencing: none, Source: filepath.Join("testdata", "valid", "roles", "repo.hcl"),
				Health: []HealthCheck{{Name: "git", Type: "tcp", Port: 9418, Interval: 10 * time.Second, Timeout: 5 * time.Second, Threshold: 3}},
				Data: []Data{{Name: "repos", Path: "/var/lib/hactl/git", Mode: "async", Interval: time.Minute, Backups: []Backup{{
					Name: "local", Target: "dir:///var/backups/hactl/git", Schedule: "@daily", KeepLast: 7}}}},
				Resources: []*ResourceDecl{
					res("directory", "repos", nil, nil, nil),
					res("service", "git", addr("directory", "repos"), nil, nil),
				}},
			{Name: "web", Count: 2, Provider: "local",
				Placement: Placement{Regions: []string{"local-a", "local-b"}, Spread: true},
				Fencing:   Fencing{Method: "provider", Delay: 5 * time.Second, Settings: cty.EmptyObjectVal},
				Health:    []HealthCheck{{Name: "http", Type: "http", Port: 8080, Path: "/healthz", Interval: 5 * time.Second, Timeout: 2 * time.Second, Threshold: 3}},
				Resources: []*ResourceDecl{
					res("directory", "docroot", nil, nil, nil),
					res("template", "index", addr("directory", "docroot"), nil, nil),
					res("file", "config", nil, addr("service", "web"), nil),
					res("service", "web", addr("template", "index"), nil, nil),
				}},
		},
	}
	if diff := cmp.Diff(want, c, modelOpts); diff != "" {
		t.Errorf("model (-want +got):\n%s", diff)
	}
	// The body is kept without depends_on/notify/subscribe.
	attrs, d := c.Role("web").Resources[1].Body.JustAttributes()
	if d.HasErrors() {
		t.Fatal(d.Error())
	}
	if attrs["depends_on"] != nil || attrs["source"] == nil {
		t.Errorf("resource body attributes: %v", attrs)
	}
}

func TestLoadFiles_SourceMerge(t *testing.T) {
	files := map[string][]byte{
		"c/main.hcl": []byte(`
cluster "c" {}
provider "other" { type = "lab" }
role "web" {
  source   = "roles/web.hcl"
  provider = "other"
  health "http" {
    type = "http"
    port = 9090
  }
  resource "file" "extra" {
    depends_on = [file.base]
  }
}
role "web2" {
  source = "roles/web.hcl"
}
`),
		"c/roles/web.hcl": []byte(`
role "web" {
  count = 3
  health "http" {
    type = "http"
    port = 80
  }
  health "tcp" {
    type = "tcp"
    port = 22
  }
  resource "file" "base" {}
}
`),
	}
	c, diags := loadMem(files, "c")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	web, web2 := c.Role("web"), c.Role("web2")
	type summary struct {
		Count    int
		Provider string
		Ports    []int
		Res      []string
	}
	sum := func(r *Role) summary {
		s := summary{Count: r.Count, Provider: r.Provider}
		for _, h := range r.Health {
			s.Ports = append(s.Ports, h.Port)
		}
		for _, d := range r.Resources {
			s.Res = append(s.Res, d.Addr.String())
		}
		return s
	}
	if diff := cmp.Diff(summary{3, "other", []int{9090, 22}, []string{"file.base", "file.extra"}}, sum(web)); diff != "" {
		t.Errorf("web (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(summary{3, "local", []int{80, 22}, []string{"file.base"}}, sum(web2)); diff != "" {
		t.Errorf("web2 (-want +got):\n%s", diff)
	}
}

// TestLoad_Examples loads every configuration under examples/ (when there
// is one) without diagnostics.
func TestLoad_Examples(t *testing.T) {
	dirs, _ := filepath.Glob("../examples/*")
	n := 0
	for _, dir := range dirs {
		if hcls, _ := filepath.Glob(filepath.Join(dir, "*.hcl")); len(hcls) == 0 {
			continue
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			// Values an operator must pass with -var (no default on purpose).
			vars := map[string]map[string]string{
				"digitalocean": {"reserved_ip": "203.0.113.10"},
			}[filepath.Base(dir)]
			c, diags := Load(dir, LoadOptions{Getenv: noEnv, Variables: vars})
			if diags.HasErrors() {
				var files map[string][]byte
				if c != nil {
					files = c.Files
				}
				t.Fatalf("%s", diagText(files, diags))
			}
		})
	}
	if n == 0 {
		t.Skip("no examples/ configurations yet")
	}
}
