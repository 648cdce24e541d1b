package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/spf13/cobra"
)

func newDestroyCmd(g *globals) *cobra.Command {
	var pf planFlags
	var auto, purge bool
	var parallel int
	cmd := &cobra.Command{
		Use:   "destroy [DIR]",
		Short: "Destroy every machine of the cluster",
		Long: `Destroy removes every machine the providers hold for the cluster named in
DIR (default "."), disks included, after confirmation (unless -auto-approve).
It is idempotent: machines already gone are not an error. The cluster's keys
and configuration repository are kept for the next apply; -purge removes them
too.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			return w.destroyAll(cmd.Context(), auto, purge, parallel)
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVar(&auto, "auto-approve", false, "skip the confirmation prompt")
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the cluster's keys and configuration repository")
	cmd.Flags().IntVar(&parallel, "parallelism", 8, "how many machines are destroyed at once")
	return cmd
}

func (w *workspace) destroyAll(ctx context.Context, auto, purge bool, parallel int) error {
	g := w.g
	obs, err := w.observe(ctx)
	if err != nil {
		return err
	}
	// Every machine that can be fenced is fenced first, all at once, and
	// only then destroyed: the cluster's own reconciler would otherwise
	// rebuild the first destroyed slots while the rest are still running.
	var steps, destroys []plan.Step
	var fences []int
	for _, o := range obs {
		if _, ok := w.provs[o.Provider].(providers.Fencer); !ok || o.Machine.State != providers.PowerOn {
			continue
		}
		id := len(steps)
		fences = append(fences, id)
		steps = append(steps, plan.Step{ID: id, Action: plan.ActionFence, Provider: o.Provider, Role: o.Machine.Role,
			Slot: o.Machine.Slot, Generation: o.Machine.Generation, Name: o.Machine.Name, Machine: o.Machine.ID,
			Fencing: plan.FenceProvider, Reason: "cluster destroyed: stop it before its peers can rebuild anything"})
	}
	for _, o := range obs {
		destroys = append(destroys, plan.Step{ID: len(steps) + len(destroys), Action: plan.ActionDestroy, After: fences, Provider: o.Provider, Role: o.Machine.Role,
			Slot: o.Machine.Slot, Generation: o.Machine.Generation, Name: o.Machine.Name, Machine: o.Machine.ID,
			Reason: "cluster destroyed"})
	}
	steps = append(steps, destroys...)
	res := plan.Result{Steps: steps}
	if err := renderPlan(g, res); err != nil {
		return err
	}
	if len(steps) > 0 && !auto {
		ok, err := confirm(g, "\nDo you really want to destroy every machine of cluster "+w.cfg.Cluster.Name+"?\n  Only 'yes' will be accepted to confirm.\n\n  Enter a value: ")
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintln(g.stdout, "\nDestroy cancelled.")
			return silentExit(1)
		}
	}
	start := time.Now()
	ex := &plan.Executor{Providers: w.provs, Config: w.cfg, Parallelism: parallel, Progress: func(ev plan.Event) { reportProgress(g, ev) }}
	if err := ex.Execute(ctx, steps); err != nil {
		return fmt.Errorf("destroy did not finish (run it again): %w", err)
	}
	if purge {
		var errs []error
		for _, p := range []string{w.originRepo(), w.clusterDir() + "/secrets"} {
			errs = append(errs, os.RemoveAll(p))
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	if g.jsonOut {
		b, _ := json.Marshal(map[string]any{"type": "summary", "destroyed": len(destroys), "purged": purge})
		fmt.Fprintln(g.stdout, string(b))
		return nil
	}
	fmt.Fprintf(g.stdout, "\nDestroy complete! %d machine(s) destroyed in %s.\n", len(destroys), time.Since(start).Round(time.Millisecond))
	return nil
}
