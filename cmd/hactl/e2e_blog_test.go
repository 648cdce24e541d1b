package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/agent"
)

// TestE2E_Blog_ReferenceCluster is issue #6's promise on one cluster: it
// comes up from hactl apply, serves the blog through the VIP and refuses a
// path outside the web root, accepts a mail over SMTP (250) and returns it
// through the mail HTTP endpoint of both mail nodes, accepts a git push to
// one repo node and serves it back from the other, and hactl userdata gives
// what apply gives (secrets, voters, VIP).
func TestE2E_Blog_ReferenceCluster(t *testing.T) {
	e := newE2E(t, "blog")

	// Before apply there are no secrets: userdata says so and how to fix it.
	_, errOut, code := e.runErr("userdata", "web", e.config)
	if code == 0 || !strings.Contains(errOut, "no secrets yet") || !strings.Contains(errOut, "hactl apply") {
		t.Errorf("userdata before apply: exit %d, stderr %q; want a failure naming hactl apply", code, errOut)
	}

	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, rep := e.controlReady()
	wantNodes(t, rep, blogCounts)
	token := e.clusterToken()

	t.Run("blog through the VIP", func(t *testing.T) {
		addr := net.JoinHostPort(vip, "8000")
		waitFor(t, 30*time.Second, "blog through the VIP "+addr, func() (bool, string) { return getBlog(addr) })
		// A second page and the stylesheet come through too.
		for _, p := range []string{"/first-post.html", "/style.css"} {
			code, _, err := httpGet("http://"+addr+p, "")
			if err != nil || code != http.StatusOK {
				t.Errorf("GET %s through the VIP: %d, %v", p, code, err)
			}
		}
	})

	t.Run("path outside the web root refused", func(t *testing.T) {
		web1, _ := nodeOf(rep, "web-1")
		for _, addr := range []string{net.JoinHostPort(vip, "8000"), net.JoinHostPort(web1.Address, "8080")} {
			for _, p := range []string{"/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc/passwd"} {
				code, body, err := rawGet(addr, p)
				if err != nil {
					t.Errorf("GET %s on %s: %v", p, addr, err)
					continue
				}
				if code != http.StatusBadRequest && code != http.StatusNotFound {
					t.Errorf("GET %s on %s: status %d, want 400 or 404", p, addr, code)
				}
				if strings.Contains(body, "root:") {
					t.Errorf("GET %s on %s served /etc/passwd", p, addr)
				}
			}
		}
	})

	t.Run("mail stored on both mail nodes", func(t *testing.T) {
		mail1, _ := nodeOf(rep, "mail-1")
		mail2, _ := nodeOf(rep, "mail-2")
		subject := fmt.Sprintf("e2e %d", time.Now().UnixNano())
		msg := "From: reader@example.com\r\nTo: editor@blog.local\r\nSubject: " + subject + "\r\n\r\nA comment on the first post.\r\n"
		// net/smtp's data writer returns nil on Close only for a 250 to the
		// end of DATA; the mail node answers 250 only once its peer (known
		// from membership) stored the message too, so retry until then.
		waitFor(t, 60*time.Second, "SMTP 250 from mail-1", func() (bool, string) {
			if err := smtp.SendMail(net.JoinHostPort(mail1.Address, "2525"), nil, "reader@example.com", []string{"editor@blog.local"}, []byte(msg)); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		var copies []string
		for _, n := range []statusNode{mail1, mail2} {
			base := "http://" + net.JoinHostPort(n.Address, "8025")
			if code, _, err := httpGet(base+"/messages", ""); err != nil || code != http.StatusUnauthorized {
				t.Errorf("%s /messages without the token: %d, %v; want 401", n.Name, code, err)
			}
			code, body, err := httpGet(base+"/messages", token)
			if err != nil || code != http.StatusOK {
				t.Fatalf("%s /messages: %d, %v", n.Name, code, err)
			}
			var list struct{ Messages []struct{ ID string } }
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatalf("%s /messages: %v: %s", n.Name, err, body)
			}
			found := ""
			for _, m := range list.Messages {
				code, body, err := httpGet(base+"/messages/"+m.ID, token)
				if err == nil && code == http.StatusOK && strings.Contains(body, "Subject: "+subject) {
					found = body
				}
			}
			if found == "" {
				t.Fatalf("%s does not hold the message %q (%d messages)", n.Name, subject, len(list.Messages))
			}
			copies = append(copies, found)
		}
		if copies[0] != copies[1] {
			t.Errorf("the two mail nodes hold different bytes:\n%s\n---\n%s", copies[0], copies[1])
		}
	})

	t.Run("git push to repo-1, clone from repo-2", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("git is not installed")
		}
		repo1, _ := nodeOf(rep, "repo-1")
		repo2, _ := nodeOf(rep, "repo-2")
		g := newGitEnv(t)
		work := filepath.Join(g.home, "work")
		g.run("", "clone", "http://"+net.JoinHostPort(repo1.Address, "8090")+"/blog.git", work)
		content := fmt.Sprintf("second post %d\n", time.Now().UnixNano())
		if err := os.WriteFile(filepath.Join(work, "second-post.md"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		g.run(work, "add", "second-post.md")
		g.run(work, "commit", "-q", "-m", "Second post")
		head := strings.TrimSpace(g.run(work, "rev-parse", "HEAD"))
		push := "http://editor:" + token + "@" + net.JoinHostPort(repo1.Address, "8090") + "/blog.git"
		// A push succeeds only once repo-2 (from membership) has it too.
		waitFor(t, 60*time.Second, "git push to repo-1", func() (bool, string) {
			out, err := g.try(work, "push", push, "HEAD:main")
			if err != nil {
				return false, strings.ReplaceAll(out, token, "TOKEN")
			}
			return true, ""
		})
		clone := filepath.Join(g.home, "clone")
		g.run("", "clone", "-b", "main", "http://"+net.JoinHostPort(repo2.Address, "8090")+"/blog.git", clone)
		if got := strings.TrimSpace(g.run(clone, "rev-parse", "HEAD")); got != head {
			t.Errorf("repo-2 serves %s, want the pushed %s", got, head)
		}
		if b, err := os.ReadFile(filepath.Join(clone, "second-post.md")); err != nil || string(b) != content {
			t.Errorf("second-post.md from repo-2: %q, %v", b, err)
		}
		// A push without the token is refused.
		if out, err := g.try(work, "push", "http://"+net.JoinHostPort(repo1.Address, "8090")+"/blog.git", "HEAD:refs/heads/anonymous"); err == nil {
			t.Errorf("a push without the token succeeded:\n%s", out)
		}
	})

	t.Run("userdata is what apply gives", func(t *testing.T) {
		out, errOut, code := e.runErr("userdata", "web", e.config)
		if code != 0 {
			t.Fatalf("userdata web: exit %d: %s", code, errOut)
		}
		if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, "secrets") {
			t.Errorf("userdata printed no warning about secrets: %q", errOut)
		}
		cfg, err := agent.ParseUserData([]byte(out))
		if err != nil {
			t.Fatalf("userdata output: %v", err)
		}
		if strings.TrimSpace(cfg.Secrets[agent.SecretClusterToken]) != token {
			t.Errorf("userdata does not deliver the cluster token")
		}
		if cfg.Secrets[agent.SecretCACert] == "" || cfg.Secrets[agent.SecretCAKey] == "" || len(cfg.Gossip.Keys) == 0 {
			t.Errorf("userdata lacks the CA or the gossip key: %d secrets, %d gossip keys", len(cfg.Secrets), len(cfg.Gossip.Keys))
		}
		if len(cfg.Raft.Voters) != 3 {
			t.Errorf("userdata voters = %v, want 3", cfg.Raft.Voters)
		}
		if !slices.ContainsFunc(cfg.VIPs, func(v agent.VIPConfig) bool { return v.Address == vip }) {
			t.Errorf("userdata VIPs = %+v, want %s", cfg.VIPs, vip)
		}
		if len(cfg.Gossip.Join) != len(rep.Nodes) {
			t.Errorf("userdata joins %v, want the %d running nodes", cfg.Gossip.Join, len(rep.Nodes))
		}
		// The same as the user-data of a node apply created, but for the
		// join list (apply created the first nodes before any existed).
		b, err := os.ReadFile(filepath.Join(e.state, "blog", "nodes", "web-1.g1", "user-data"))
		if err != nil {
			t.Fatal(err)
		}
		applied, err := agent.ParseUserData(b)
		if err != nil {
			t.Fatal(err)
		}
		applied.Gossip.Join = cfg.Gossip.Join
		if ja, jc := mustJSON(t, applied), mustJSON(t, cfg); ja != jc {
			t.Errorf("userdata differs from apply's user-data of web-1:\napply:    %s\nuserdata: %s", redact(ja, token), redact(jc, token))
		}

		// Overrides replace their part and keep the rest.
		out, errOut, code = e.runErr("userdata", "web", e.config, "--remote", "https://git.example.com/blog.git", "--join", "10.0.0.5")
		if code != 0 {
			t.Fatalf("userdata with overrides: exit %d: %s", code, errOut)
		}
		over, err := agent.ParseUserData([]byte(out))
		if err != nil {
			t.Fatalf("userdata with overrides: %v", err)
		}
		if !slices.Equal(over.Remotes, []string{"https://git.example.com/blog.git"}) || !slices.Equal(over.Gossip.Join, []string{"10.0.0.5"}) {
			t.Errorf("overrides not applied: remotes %v, join %v", over.Remotes, over.Gossip.Join)
		}
		if strings.TrimSpace(over.Secrets[agent.SecretClusterToken]) != token || len(over.Raft.Voters) != 3 || len(over.VIPs) != len(cfg.VIPs) {
			t.Errorf("overrides lost the rest: %d secrets, voters %v, %d VIPs", len(over.Secrets), over.Raft.Voters, len(over.VIPs))
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func redact(s, secret string) string { return strings.ReplaceAll(s, secret, "TOKEN") }

// runErr runs hactl to completion and returns its stdout, stderr and exit
// code (-1 when it could not run). It does not fail the test, so subtests
// may call it.
func (e *e2e) runErr(args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hactlBin, args...)
	cmd.Env = e.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		return out.String(), errb.String() + err.Error(), -1
	}
	return out.String(), errb.String(), 0
}

// clusterToken reads the token apply generated for the cluster: the
// bearer token of the mail endpoint and the password of git pushes.
func (e *e2e) clusterToken() string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.state, "blog", "secrets", agent.SecretClusterToken))
	if err != nil {
		e.t.Fatalf("cluster token: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		e.t.Fatal("cluster token is empty")
	}
	return tok
}

// httpGet fetches url, with a bearer token when token is set.
func httpGet(url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// rawGet sends "GET path" as written, over a plain connection: Go's HTTP
// client would clean a literal "..".
func rawGet(addr, path string) (int, string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// gitEnv runs git with a private HOME and no system configuration, never
// prompting for credentials.
type gitEnv struct {
	t    *testing.T
	home string
}

func newGitEnv(t *testing.T) *gitEnv {
	return &gitEnv{t: t, home: t.TempDir()}
}

func (g *gitEnv) try(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+g.home, "XDG_CONFIG_HOME="+g.home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=true", "SSH_ASKPASS=true",
		"GIT_AUTHOR_NAME=Reader", "GIT_AUTHOR_EMAIL=reader@example.com",
		"GIT_COMMITTER_NAME=Reader", "GIT_COMMITTER_EMAIL=reader@example.com")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gitEnv) run(dir string, args ...string) string {
	g.t.Helper()
	out, err := g.try(dir, args...)
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", args[0], err, out)
	}
	return out
}
