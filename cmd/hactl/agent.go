package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/converge/resources"
	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/lab"
	"github.com/hactl/hactl/providers/local"
	"github.com/spf13/cobra"
)

func newAgentCmd(g *globals) *cobra.Command {
	var (
		nodeDir, configPath, apiListen string
		once, dryRun                   bool
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: pull signed configuration and keep this node's role converged",
		Long: `The agent finds out which node it is, pulls the cluster's configuration from
git, refuses any commit whose signature it does not trust, converges its role,
and keeps it converged (every interval, and at once on POST /v1/notify).

On a machine the identity comes from the hostname (web-2 is role web, slot 2)
or cloud-init instance data, the configuration from /etc/hactl/agent.json.
With --node-dir (local nodes) it reads DIR/meta-data.json and DIR/user-data,
writes the user-data files under DIR/root, and runs with DIR/root as root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := agentLogger(cmd, g)
			if nodeDir == "" {
				nodeDir = os.Getenv("HACTL_NODE_DIR")
			}
			var (
				id  agent.Identity
				cfg agent.Config
				err error
			)
			if nodeDir != "" {
				id, cfg, err = agent.BootNodeDir(nodeDir)
				// Supervised services inherit it: a fence of the local node
				// finds every process of the node by this variable.
				if err == nil {
					os.Setenv("HACTL_NODE_DIR", filepath.Dir(id.Root))
				}
			} else {
				if cfg, err = agent.LoadConfig(configPath); err == nil {
					id, err = agent.DetectIdentity()
				}
			}
			if err != nil {
				return err
			}
			if id.Root != "/" {
				// Local node: `hactl` in role commands is this binary.
				bin, err := agent.LinkBinary(id.Root)
				if err != nil {
					return err
				}
				os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
			}
			reg := resources.Builtin()
			conv, err := agent.NewEngineConverger(reg, id.Root, log)
			if err != nil {
				return err
			}
			loader, err := nodeLoader(reg, cfg, id)
			if err != nil {
				conv.Close()
				return err
			}
			opts := agent.Options{Config: cfg, Identity: id, Converger: conv, Loader: loader, Logger: log, DryRun: dryRun}
			if apiListen != "" {
				ln, err := net.Listen("tcp", apiListen)
				if err != nil {
					conv.Close()
					return fmt.Errorf("local API: %w", err)
				}
				opts.Listener = ln
			}
			var ctl *control
			if !once {
				// The control plane: gossip, raft, VIPs, the reconciler.
				if ctl, err = newControl(cfg, id, log); err != nil {
					conv.Close()
					return err
				}
				if ctl != nil {
					ctl.wire(&opts)
				}
				// The role's data: restore on rebuild, replication server, backups.
				if opts.Data, err = agent.NewDataManager(cfg, id, log); err != nil && !errors.Is(err, agent.ErrNoControlPlane) {
					conv.Close()
					if ctl != nil {
						ctl.abort()
					}
					return err
				}
				if opts.Data != nil && ctl != nil {
					opts.Data.Record = ctl.node.Record
				}
			}
			a, err := agent.New(opts)
			if err != nil {
				conv.Close()
				if ctl != nil {
					ctl.abort()
				}
				return err
			}
			ctx := cmd.Context()
			if !once {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				go (&agent.Procs{Logger: log}).Run(ctx)
			}
			if ctl != nil {
				ctl.agent = a
				return ctl.run(ctx, a)
			}
			if once {
				// One cycle, then stop: services started by the supervisor
				// on a local node stop with the process.
				run := a.RunOnce(cmd.Context())
				if opts.Listener != nil {
					opts.Listener.Close()
				}
				if !dryRun {
					conv.Close()
				}
				if g.jsonOut {
					enc := json.NewEncoder(g.stdout)
					enc.SetIndent("", "  ")
					_ = enc.Encode(a.Status())
				} else {
					fmt.Fprintf(g.stdout, "revision %s: ok=%v %s\n", run.Revision, run.OK, run.Error)
				}
				if !run.OK {
					return silentExit(1)
				}
				return nil
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&nodeDir, "node-dir", "", "local node directory holding meta-data.json, user-data and root/ (default $HACTL_NODE_DIR)")
	f.StringVar(&configPath, "config", agent.ConfigPath, "agent configuration file (machines only)")
	f.StringVar(&apiListen, "api-listen", "", "listen address of the local API (default <node address>:<api_port>)")
	f.BoolVar(&once, "once", false, "run one pull-and-converge cycle and exit (status 1 when it failed)")
	f.BoolVar(&dryRun, "dry-run", false, "converge in noop mode: report what would change, change nothing")
	return cmd
}

// agentLogger logs at info unless a level was asked for: an agent's log is
// its record of what it did.
func agentLogger(cmd *cobra.Command, g *globals) *slog.Logger {
	if cmd.Flags().Changed("log-level") || os.Getenv("HACTL_LOG_LEVEL") != "" {
		return g.logger
	}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

// control is the node's control plane as the agent command wires it: the
// cluster node, the VIP forwarder and the providers the reconciler rebuilds
// through: the ones delivered in the providers secret (digitalocean), else
// on local and lab nodes the provider of the node directory.
type control struct {
	// bindVIP puts a VIP on (or takes it off) this node's network interface
	// before the forwarder binds it (lab nodes; nil elsewhere).
	bindVIP func(ctx context.Context, vip string, held bool) error

	node  *cluster.Node
	fwd   *agent.Forwarder
	lp    nodeDirProvider
	self  providers.MachineID // this node's machine on lp
	provs map[string]providers.Provider
	vips  *vipKeeper // keeps the provider's VIP holder in line with the log (non-local providers)
	agent *agent.Agent
	log   *slog.Logger
	chaos *agent.ChaosHost // runs the chaos schedule in the log while this node leads
}

// nodeDirProvider is the provider of a node that runs from a node directory:
// local, or lab (local nodes in network namespaces).
type nodeDirProvider interface {
	providers.Provider
	providers.VIPAssigner
}

// newControl builds the control plane of this node, or returns nil when the
// node was booted without its secrets (the agent then runs alone).
func newControl(cfg agent.Config, id agent.Identity, log *slog.Logger) (*control, error) {
	cc, err := agent.ClusterConfig(cfg, id)
	if errors.Is(err, agent.ErrNoControlPlane) {
		log.Warn("running without the control plane", "reason", err.Error())
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := &control{log: log}
	ports := map[string][]int{}
	for _, v := range cfg.VIPs {
		ports[v.Address] = v.Ports
	}
	c.fwd = agent.NewForwarder(id.Address, ports, log)
	cc.Logger = log
	cc.VIPChanged = c.vipChanged
	provs, clusterProv, err := nodeProviders(cfg, id, log)
	if err != nil {
		c.fwd.Close()
		return nil, err
	}
	if provs != nil {
		// Providers delivered in user-data (a droplet, emulated or not):
		// the reconciler lists, fences and rebuilds through them, and the
		// VIP holder moves the reserved IP to its machine.
		ud, err := nodeUserData(id)
		if err != nil {
			c.fwd.Close()
			return nil, err
		}
		c.provs = provs
		cc.Provider, cc.Providers = provs[clusterProv], provs
		cc.Discover = providerDiscover(provs[clusterProv], cfg.Cluster, cfg.Gossip.Port)
		cc.Planner = func(in plan.Input) []plan.Step { return plan.Plan(in).Steps }
		cc.Spec = c.spec
		cc.Execute = func(ctx context.Context, s plan.Step) error { return c.execute(ctx, s, ud) }
		c.vips = newVIPKeeper(provs[clusterProv], cfg.Cluster, id, log)
	} else if id.Root != "/" {
		// A local node: <state>/<cluster>/nodes/<machine>/root.
		nodeDir := filepath.Dir(id.Root)
		stateDir := filepath.Dir(filepath.Dir(filepath.Dir(nodeDir)))
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent %s: own binary: %w", id.Name, err)
		}
		command := func(dir string) []string { return []string{exe, "agent", "--node-dir", dir} }
		var lp nodeDirProvider
		if md, merr := local.ReadMetaData(nodeDir); merr == nil && md.Provider == lab.Type {
			// A lab node: its rebuilds get namespaces too, and its VIPs
			// are addresses on its own interface.
			lp, err = lab.New(lab.Config{StateDir: stateDir, Logger: log, Command: command})
			c.bindVIP = lab.BindVIP
		} else {
			lp, err = local.New(local.Config{StateDir: stateDir, Logger: log, Command: command})
		}
		if err != nil {
			return nil, err
		}
		ud, err := os.ReadFile(filepath.Join(nodeDir, local.UserDataFile))
		if err != nil {
			return nil, fmt.Errorf("agent %s: user-data for rebuilt nodes: %w", id.Name, err)
		}
		c.lp, c.self = lp, providers.MachineID(cfg.Cluster+"/"+filepath.Base(nodeDir))
		cc.Provider = lp
		cc.Discover = local.Discover(stateDir, cfg.Cluster, cfg.Gossip.Port)
		cc.Planner = func(in plan.Input) []plan.Step { return plan.Plan(in).Steps }
		cc.Spec = c.spec
		cc.Execute = func(ctx context.Context, s plan.Step) error { return c.execute(ctx, s, string(ud)) }
	}
	if c.node, err = cluster.New(cc); err != nil {
		c.fwd.Close()
		return nil, err
	}
	c.chaos = c.chaosHost(id)
	return c, nil
}

// wire connects the agent's options to the control plane: membership facts,
// /v1/cluster and /v1/events, and revision and health in gossip.
func (c *control) wire(o *agent.Options) {
	o.Members = agent.MembersOf(c.node.View(), o.Identity)
	o.Control = c.node
	o.OnRun = func(st agent.Status) {
		c.node.SetRevision(st.LastGood)
		if st.Healthy {
			c.node.SetHealth(plan.HealthPassing)
		} else {
			c.node.SetHealth(plan.HealthFailing)
		}
	}
}

// abort releases what newControl bound when the agent could not be built.
func (c *control) abort() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.node.Run(ctx)
	c.fwd.Close()
}

// run runs the agent, the cluster node and the membership follower until
// ctx is done, and returns after all of them stopped.
func (c *control) run(ctx context.Context, a *agent.Agent) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		c.chaos.Serve(ctx)
	}()
	if c.vips != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.vips.run(ctx, 5*time.Second)
		}()
	}
	go func() {
		defer wg.Done()
		if err := c.node.Run(ctx); err != nil {
			c.log.Error("control plane stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		a.FollowMembers(ctx, c.node.View(), 200*time.Millisecond)
	}()
	err := a.Run(ctx)
	cancel()
	wg.Wait()
	c.fwd.Close()
	return err
}

func (c *control) spec() *lang.Config {
	if c.agent == nil {
		return nil
	}
	return c.agent.Spec()
}

// vipChanged binds or releases a VIP (cluster.Config.VIPChanged) and, on
// local nodes, records the new holder with the provider (best effort: the
// cluster log, not the provider's record, decides who holds it). With a
// provider that moves VIPs itself (a DigitalOcean reserved IP), the holder
// asks it to move the VIP to this machine, in the background, and binds the
// address only when it is a loopback one (the emulator's reserved IPs).
func (c *control) vipChanged(vip string, held bool) error {
	if c.vips != nil {
		c.vips.set(vip, held)
		if !bindable(vip) {
			return nil
		}
	}
	if c.bindVIP != nil && held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.bindVIP(ctx, vip, true)
		cancel()
		if err != nil {
			return err
		}
	}
	if err := c.fwd.Set(vip, held); err != nil {
		return err
	}
	if c.bindVIP != nil && !held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := c.bindVIP(ctx, vip, false)
		cancel()
		if err != nil {
			return err
		}
	}
	if held && c.lp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.lp.AssignVIP(ctx, vip, c.self); err != nil {
			c.log.Warn("record vip holder with the provider", "vip", vip, "err", err)
		}
	}
	return nil
}

// execute carries out one reconciler step with the plan executor on the
// step's provider (delivered in user-data, or the local one); created
// machines boot from this node's own user-data (identity comes from the
// machine's name and tags, so one user-data fits every node).
func (c *control) execute(ctx context.Context, s plan.Step, userData string) error {
	spec := c.spec()
	if spec == nil {
		return errors.New("no configuration in force")
	}
	typ := s.Provider
	if pb, ok := spec.Providers[s.Provider]; ok {
		typ = pb.Type
	}
	p := c.provs[s.Provider]
	if p == nil && (typ == "local" || typ == "lab") && c.lp != nil {
		p = c.lp
	}
	if p == nil {
		return fmt.Errorf("step %s %s: provider %q (type %s) cannot be driven from this node", s.Action, s.Name, s.Provider, typ)
	}
	ex := &plan.Executor{
		Providers:   map[string]providers.Provider{s.Provider: p},
		Config:      spec,
		Parallelism: 1,
		UserData:    func(string, int, int) (string, error) { return userData, nil },
	}
	return ex.Execute(ctx, []plan.Step{s})
}
