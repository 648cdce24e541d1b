package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hactl/hactl/examples"
	"github.com/hactl/hactl/providers"
	"github.com/spf13/cobra"
)

func newDemoCmd(g *globals) *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bring up examples/blog on this machine and show how to look at it",
		Long: `Demo writes the embedded examples/blog configuration to the state
directory, applies it on the local provider (every node a process with its
own loopback address and directory; no root, no account), waits until every
node is healthy, and prints where the blog, mail and git services answer and
what to try next. Running it again converges the same cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := filepath.Join(g.localStateDir(), "demo", "blog")
			if err := writeExample(dir); err != nil {
				return err
			}
			w, err := openWorkspace(g, dir, nil)
			if err != nil {
				return err
			}
			if !g.jsonOut {
				fmt.Fprintf(g.stdout, "Applying %s (the blog example) on the local provider.\n\n", dir)
			}
			if err := applyWorkspace(cmd.Context(), w, applyOptions{auto: true, parallel: 4, wait: wait}); err != nil {
				return err
			}
			return w.printDemo(cmd, dir)
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 3*time.Minute, "how long to wait for the nodes to become healthy")
	return cmd
}

// writeExample replaces dir with the embedded blog example.
func writeExample(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	sub, err := fs.Sub(examples.FS, "blog")
	if err != nil {
		return err
	}
	return os.CopyFS(dir, sub)
}

type demoInfo struct {
	Config string            `json:"config"`
	State  string            `json:"state_dir"`
	VIP    []string          `json:"vip_urls"`
	Blog   []string          `json:"blog_urls"`
	SMTP   []string          `json:"smtp"`
	Git    []string          `json:"git"`
	Nodes  map[string]string `json:"nodes"`
}

func (w *workspace) printDemo(cmd *cobra.Command, dir string) error {
	g := w.g
	obs, err := w.observe(cmd.Context())
	if err != nil {
		return err
	}
	info := demoInfo{Config: dir, State: w.state, Nodes: map[string]string{}}
	for _, o := range obs {
		m := o.Machine
		if m.State != providers.PowerOn {
			continue
		}
		info.Nodes[m.Name] = m.Address
		switch m.Role {
		case "lb":
			info.Blog = append(info.Blog, "http://"+m.Address+":8000/")
		case "mail":
			info.SMTP = append(info.SMTP, m.Address+":2525")
		case "repo":
			info.Git = append(info.Git, "http://"+m.Address+":8090/blog.git")
		}
	}
	vips, err := w.agentVIPs()
	if err != nil {
		return err
	}
	for _, v := range vips {
		for _, p := range v.Ports {
			info.VIP = append(info.VIP, "http://"+netJoin(v.Address, p)+"/")
		}
	}
	for _, l := range [][]string{info.VIP, info.Blog, info.SMTP, info.Git} {
		sort.Strings(l)
	}
	if g.jsonOut {
		b, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(g.stdout, string(b))
		return err
	}
	out := g.stdout
	fmt.Fprintf(out, "\nThe blog cluster is up. Every node is a process on this machine;\nits files are under %s.\n\n", filepath.Join(w.state, w.cfg.Cluster.Name, "nodes"))
	fmt.Fprintf(out, "  Blog (through the VIP):             %s\n", strings.Join(info.VIP, "  "))
	fmt.Fprintf(out, "  Blog (through each load balancer):  %s\n", strings.Join(info.Blog, "  "))
	fmt.Fprintf(out, "  SMTP (mail for @blog.local):        %s\n", strings.Join(info.SMTP, "  "))
	fmt.Fprintf(out, "  Git (clone anonymously):            %s\n", strings.Join(info.Git, "  "))
	self := "hactl"
	fmt.Fprintf(out, `
Try next:
  curl %s
  %[2]s status %[3]s
  %[2]s events %[3]s
  kill -9 -$(cat %[4]s/web-1.g*/agent.pid)  # lose a node: the cluster fences and rebuilds it
  %[2]s status %[3]s                           # web-1 is back, generation 2
  %[2]s destroy -auto-approve %[3]s           # remove the cluster
`, first(append(info.VIP, info.Blog...)), self, dir, filepath.Join(w.state, w.cfg.Cluster.Name, "nodes"))
	return nil
}

func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}
