package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/spf13/cobra"
)

// planFlags are shared by plan and apply.
type planFlags struct {
	vars []string
}

// workspace parses the -var flags and opens the configuration in dir.
func (f *planFlags) workspace(g *globals, dir string) (*workspace, error) {
	vm, err := validateParseVars(f.vars)
	if err != nil {
		return nil, err
	}
	return openWorkspace(g, dir, vm)
}

func (f *planFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.vars, "var", nil, "set an input variable, NAME=VALUE (repeatable)")
}

func newPlanCmd(g *globals) *cobra.Command {
	var pf planFlags
	var out string
	var detailed bool
	cmd := &cobra.Command{
		Use:   "plan [DIR]",
		Short: "Show what apply would change",
		Long: `Plan compares the configuration in DIR (default ".") with the machines the
providers hold and the health of their agents, and prints the ordered actions
apply would take, each with its reason, the failure tolerance of every role,
and warnings where the design is fragile. It changes nothing.

With -out FILE the plan is saved; "hactl apply FILE" executes exactly that plan,
and refuses if the configuration or the machines changed since.
With -detailed-exitcode it exits 0 when there is nothing to do, 2 when there
are changes, 1 on error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			obs, err := w.observe(cmd.Context())
			if err != nil {
				return err
			}
			in := w.planInput(obs)
			res := plan.Plan(in)
			if out != "" {
				if err := savePlan(out, w, in, res); err != nil {
					return err
				}
			}
			if err := renderPlan(g, res); err != nil {
				return err
			}
			if out != "" && !g.jsonOut {
				fmt.Fprintf(g.stdout, "\nSaved the plan to %s. To perform exactly these actions, run:\n  hactl apply %s\n", out, out)
			}
			if detailed && !res.Empty() {
				return silentExit(2)
			}
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "save the plan to FILE for a later apply")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 0 with no changes, 2 with changes, 1 on error")
	return cmd
}

func dirArg(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return "."
}

func renderPlan(g *globals, res plan.Result) error {
	if g.jsonOut {
		b, err := res.JSON()
		if err != nil {
			return err
		}
		_, err = g.stdout.Write(append(b, '\n'))
		return err
	}
	return plan.Render(g.stdout, res, g.color())
}

// savedPlanFile wraps the planner's saved form with the directory it was
// made from, so "apply FILE" can reopen the same configuration.
type savedPlanHeader struct {
	Dir string `json:"dir"`
}

func savePlan(path string, w *workspace, in plan.Input, res plan.Result) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	hdr, _ := json.Marshal(savedPlanHeader{Dir: w.dir})
	if _, err := fmt.Fprintf(f, "%s\n", hdr); err != nil {
		f.Close()
		return err
	}
	if err := plan.Save(f, res, plan.Fingerprint(in)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadPlanFile(path string) (string, plan.Saved, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", plan.Saved{}, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return "", plan.Saved{}, fmt.Errorf("%s is not a saved hactl plan", path)
	}
	var hdr savedPlanHeader
	if err := json.Unmarshal(line, &hdr); err != nil || hdr.Dir == "" {
		return "", plan.Saved{}, fmt.Errorf("%s is not a saved hactl plan", path)
	}
	s, err := plan.Load(br)
	if err != nil {
		return "", plan.Saved{}, fmt.Errorf("%s: %w", path, err)
	}
	return hdr.Dir, s, nil
}

func isPlanFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

func newApplyCmd(g *globals) *cobra.Command {
	var pf planFlags
	var auto bool
	var parallel int
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "apply [DIR | PLANFILE]",
		Short: "Make the machines match the configuration",
		Long: `Apply publishes the configuration in DIR (default ".") as a signed commit
to the cluster's configuration repository, plans, asks for confirmation
(unless -auto-approve), and executes the plan with bounded parallelism,
showing progress per node. It then waits until every node it created answers
its health check (-wait, 0 to skip).

Apply is idempotent: when it is interrupted at any point, running it again
finishes the job without duplicate or orphaned machines.

Given a file saved by "hactl plan -out", it executes that plan only if
neither the configuration nor the machines changed since.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir := dirArg(args)
			var saved *plan.Saved
			if len(args) == 1 && isPlanFile(args[0]) {
				d, s, err := loadPlanFile(args[0])
				if err != nil {
					return err
				}
				dir, saved = d, &s
				auto = true // the saved plan was the review
			}
			w, err := pf.workspace(g, dir)
			if err != nil {
				return err
			}
			return applyWorkspace(ctx, w, applyOptions{auto: auto, parallel: parallel, wait: wait, saved: saved})
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVar(&auto, "auto-approve", false, "skip the confirmation prompt")
	cmd.Flags().IntVar(&parallel, "parallelism", 4, "how many steps run at once")
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for new nodes to become healthy (0 = do not wait)")
	return cmd
}

type applyOptions struct {
	auto     bool
	parallel int
	wait     time.Duration
	saved    *plan.Saved
}

// applyWorkspace is the whole of apply: publish, plan, confirm, execute,
// wait for health. demo calls it too.
func applyWorkspace(ctx context.Context, w *workspace, o applyOptions) error {
	g := w.g
	sec, err := w.loadSecrets(true)
	if err != nil {
		return err
	}
	commit, err := w.publish(ctx, sec)
	if err != nil {
		return err
	}
	g.logger.Info("published configuration", "commit", commit, "repo", w.originRepo())
	obs, err := w.observe(ctx)
	if err != nil {
		return err
	}
	in := w.planInput(obs)
	res := plan.Plan(in)
	if o.saved != nil {
		if err := o.saved.Check(in); err != nil {
			return err
		}
		res = o.saved.Result
	}
	if err := renderPlan(g, res); err != nil {
		return err
	}
	if res.Empty() {
		if n := notifyRevision(obs); n != "" {
			g.logger.Info("told a node about the new revision; gossip tells the rest", "node", n, "commit", commit)
		}
		if !g.jsonOut {
			fmt.Fprintf(g.stdout, "\nConfiguration %s published to %s.\n", short(commit), w.originRepo())
		}
		return nil
	}
	if !o.auto {
		ok, err := confirm(g, "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(g.stdout, "\nApply cancelled.")
			return silentExit(1)
		}
	}
	start := time.Now()
	var mu sync.Mutex
	created := map[string]providers.MachineID{}
	// A live cluster's leader is the only executor: hand it the revision.
	// Execute here only when no leader with a reconciler answers.
	byLeader, leaderErr := applyThroughLeader(ctx, w, obs, commit, res)
	ex := &plan.Executor{
		Providers:   w.provs,
		Config:      w.cfg,
		Parallelism: o.parallel,
		UserData:    w.userData(sec, obs),
		Progress: func(ev plan.Event) {
			reportProgress(g, ev)
			if ev.Kind == plan.EventFinished && (ev.Step.Action == plan.ActionCreate || ev.Step.Action == plan.ActionReplace) {
				mu.Lock()
				created[ev.Step.Name] = ev.Machine
				mu.Unlock()
			}
		},
	}
	var execErr error
	switch {
	case leaderErr == nil:
		created = byLeader
	case errors.Is(leaderErr, errNoLeader):
		g.logger.Info("no leader with a reconciler answered: executing the plan here")
		execErr = ex.Execute(ctx, res.Steps)
	default:
		execErr = leaderErr
	}
	if execErr == nil && o.wait > 0 && len(created) > 0 {
		execErr = w.waitHealthy(ctx, created, o.wait)
	}
	c := res.Counts()
	if execErr != nil {
		return fmt.Errorf("apply did not finish after %s (run it again to finish the job): %w", time.Since(start).Round(time.Millisecond), execErr)
	}
	if !g.jsonOut {
		fmt.Fprintf(g.stdout, "\nApply complete! Resources: %d created, %d replaced, %d destroyed in %s.\n",
			c.Create, c.Replace, c.Destroy, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

func short(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func confirm(g *globals, prompt string) (bool, error) {
	fmt.Fprint(g.stdout, prompt)
	line, err := bufio.NewReader(g.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return strings.TrimSpace(line) == "yes", nil
}

// progressJSON is one line of apply -json progress.
type progressJSON struct {
	Type      string  `json:"type"`
	Event     string  `json:"event"`
	Step      int     `json:"step"`
	Action    string  `json:"action"`
	Node      string  `json:"node"`
	Machine   string  `json:"machine,omitempty"`
	ElapsedMS float64 `json:"elapsed_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
	Message   string  `json:"message,omitempty"`
}

func reportProgress(g *globals, ev plan.Event) {
	if g.jsonOut {
		p := progressJSON{Type: "progress", Event: string(ev.Kind), Step: ev.Step.ID, Action: string(ev.Step.Action),
			Node: ev.Step.Name, Machine: string(ev.Machine), ElapsedMS: float64(ev.Elapsed.Microseconds()) / 1000, Message: ev.Message}
		if ev.Err != nil {
			p.Error = ev.Err.Error()
		}
		b, _ := json.Marshal(p)
		fmt.Fprintln(g.stdout, string(b))
		return
	}
	name := ev.Step.Name
	if ev.Step.Action == plan.ActionMoveVIP {
		name = ev.Step.VIP
	}
	switch ev.Kind {
	case plan.EventStarted:
		fmt.Fprintf(g.stdout, "%s: %s...\n", name, ev.Step.Action)
	case plan.EventFinished:
		msg := ""
		if ev.Message != "" {
			msg = " (" + ev.Message + ")"
		}
		fmt.Fprintf(g.stdout, "%s: %s complete after %s%s\n", name, ev.Step.Action, ev.Elapsed.Round(time.Millisecond), msg)
	case plan.EventFailed:
		fmt.Fprintf(g.stdout, "%s: %s failed after %s: %v\n", name, ev.Step.Action, ev.Elapsed.Round(time.Millisecond), ev.Err)
	case plan.EventSkipped:
		fmt.Fprintf(g.stdout, "%s: %s skipped: %v\n", name, ev.Step.Action, ev.Err)
	}
}

// waitHealthy polls the agents of the created machines until each answers
// its health check, or the timeout passes.
func (w *workspace) waitHealthy(ctx context.Context, created map[string]providers.MachineID, timeout time.Duration) error {
	g := w.g
	deadline := time.Now().Add(timeout)
	start := time.Now()
	pending := map[string]bool{}
	for n := range created {
		pending[n] = true
	}
	if !g.jsonOut {
		fmt.Fprintf(g.stdout, "Waiting for %d node(s) to become healthy...\n", len(pending))
	}
	for len(pending) > 0 {
		obs, err := w.observe(ctx)
		if err != nil {
			return err
		}
		for _, o := range obs {
			if pending[o.Machine.Name] && o.Machine.ID == created[o.Machine.Name] && o.Health == plan.HealthPassing {
				delete(pending, o.Machine.Name)
				if !g.jsonOut {
					fmt.Fprintf(g.stdout, "%s: healthy after %s (%s)\n", o.Machine.Name, time.Since(start).Round(time.Millisecond), o.Machine.Address)
				}
			}
		}
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var names []string
			for n := range pending {
				names = append(names, n)
			}
			return fmt.Errorf("nodes not healthy after %s: %s (see their agent.log)", timeout, strings.Join(names, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}
