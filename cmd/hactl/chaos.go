package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/chaos"
	"github.com/hactl/hactl/cluster"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// chaosFlags are the options of chaos run and chaos schedule.
type chaosFlags struct {
	pf           planFlags
	stage        int
	rounds       int
	interval     time.Duration
	seed         uint64
	roles        []string
	blastRadius  int
	leashed      bool
	fault        string
	service      string
	pauseFor     time.Duration
	probes       []string
	markers      []string
	reportDir    string
	roundTimeout time.Duration
	poll         time.Duration
	probeEvery   time.Duration
	probeTimeout time.Duration
	baseline     time.Duration
}

func (f *chaosFlags) register(cmd *cobra.Command) {
	f.pf.register(cmd)
	fl := cmd.Flags()
	fl.IntVar(&f.stage, "stage", 1, "preset: 1 = one random node per round, 2 = all but one node at once, 3 = every node (needs the beachhead)")
	fl.IntVar(&f.rounds, "rounds", 1, "number of rounds")
	fl.DurationVar(&f.interval, "interval", 0, "pause between one round's recovery and the next round")
	fl.Uint64Var(&f.seed, "seed", 0, "seed of the victim draw (default: random, printed and stored in the report)")
	fl.StringSliceVar(&f.roles, "roles", nil, "roles that may be broken (comma-separated; default every role)")
	fl.IntVar(&f.blastRadius, "blast-radius", 0, "most nodes broken in one round (default: the stage's own)")
	fl.BoolVar(&f.leashed, "leashed", false, "only report which victims would have been chosen; break nothing")
	fl.StringVar(&f.fault, "fault", string(chaos.FaultDestroy), "fault: destroy, power-off, kill-agent, kill-service, pause-agent, pause-service, partition, packet-loss")
	fl.StringVar(&f.service, "service", "", "service for kill-service/pause-service (default every supervised service)")
	fl.DurationVar(&f.pauseFor, "pause-for", 10*time.Second, "how long pause faults keep the process stopped")
	fl.StringArrayVar(&f.probes, "probe", nil, "probe run during the whole run: http=URL, tcp=HOST:PORT, smtp=HOST:PORT[,RCPT], git=URL, git-push=URL[,TOKEN_FILE], cmd=COMMAND; a host written {role} fails over between the role's nodes (repeatable)")
	fl.StringArrayVar(&f.markers, "marker", nil, "data marker written before each fault and read back after recovery: smtp=ADDR,LIST_URL[,TOKEN_FILE[,RCPT]] or git=URL[,TOKEN_FILE]; hosts may be {role} (repeatable)")
	fl.StringVar(&f.reportDir, "report", "", "directory for report.json and report.html (default <state>/<cluster>/chaos/reports/<time>)")
	fl.DurationVar(&f.roundTimeout, "round-timeout", 10*time.Minute, "how long a round may take to recover before it counts as not recovered")
	fl.DurationVar(&f.poll, "poll", 500*time.Millisecond, "how often the cluster is observed")
	fl.DurationVar(&f.probeEvery, "probe-interval", time.Second, "how often each probe samples")
	fl.DurationVar(&f.probeTimeout, "probe-timeout", 5*time.Second, "time limit of one probe check, fail-over included")
	fl.DurationVar(&f.baseline, "baseline", 5*time.Second, "how long to probe and observe before the first fault")
}

func newChaosCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Break the cluster on purpose and report whether its objectives held",
		Long: `Chaos destroys, powers off, kills or pauses nodes chosen by a seeded random
draw, probes the services from outside throughout, writes data markers before
each fault and reads them back after recovery, and judges detection and
recovery time, availability and lost data against the objectives in the HCL
(rto, rpo, availability). It exits 1 when an objective is missed.`,
	}
	cmd.AddCommand(newChaosRunCmd(g), newChaosScheduleCmd(g), newChaosUnscheduleCmd(g), newChaosHistoryCmd(g), newChaosPauseCmd(g, true), newChaosPauseCmd(g, false))
	return cmd
}

func newChaosRunCmd(g *globals) *cobra.Command {
	var f chaosFlags
	cmd := &cobra.Command{
		Use:   "run [DIR]",
		Short: "Run chaos rounds now",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("seed") {
				f.seed = randomSeed()
			}
			w, err := f.pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			rep, dir, err := w.chaosRun(cmd.Context(), &f, "")
			if rep == nil {
				return err
			}
			if g.jsonOut {
				b, jerr := json.MarshalIndent(rep, "", "  ")
				if jerr != nil {
					return jerr
				}
				fmt.Fprintln(g.stdout, string(b))
			} else {
				renderChaos(g, rep, dir)
			}
			if err != nil {
				return err
			}
			if !rep.Pass {
				return silentExit(1)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func newChaosScheduleCmd(g *globals) *cobra.Command {
	var f chaosFlags
	var crontab, foreground bool
	cmd := &cobra.Command{
		Use:   `schedule "CRON" [DIR]`,
		Short: "Store a chaos schedule in the cluster log (the leader runs it), run it in the foreground, or print the crontab line",
		Long: `Schedule validates CRON (robfig/cron syntax: five fields such as "0 3 * * *",
or @daily, @every 6h) and stores it with the run's flags in the cluster log,
through the leader's agent API: whichever node leads runs chaos at each time
(never drawing itself as a victim), so the schedule survives the loss of any
node. Each run is recorded in the log (running, then its outcome; a run whose
leader died is recorded as interrupted by the next leader) and shown by
"hactl chaos history" from any node. "hactl chaos pause" stops all chaos at
once. A new schedule replaces the old one; "hactl chaos unschedule" removes it.

With --foreground the schedule runs in this process instead, until
interrupted, recording runs in <state>/<cluster>/chaos/history.json; with
--print-crontab it prints the equivalent crontab line. Each run draws a new
random seed unless --seed is given.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := args[0]
			if _, err := chaos.ParseSchedule(spec); err != nil {
				return err
			}
			if crontab {
				line, err := chaos.CrontabLine(spec, crontabCommand(cmd, args[1:]))
				if err != nil {
					return err
				}
				fmt.Fprintln(g.stdout, line)
				return nil
			}
			w, err := f.pf.workspace(g, dirArg(args[1:]))
			if err != nil {
				return err
			}
			fixedSeed := cmd.Flags().Changed("seed")
			if !foreground {
				o := f.scheduled(fixedSeed)
				if err := o.check(); err != nil {
					return err
				}
				opts, _ := json.Marshal(o)
				obs, err := w.observe(cmd.Context())
				if err != nil {
					return err
				}
				st, leader, err := chaosToLeader(cmd.Context(), obs, http.MethodPost, "/v1/chaos/schedule", agent.ChaosScheduleRequest{Spec: spec, Options: opts})
				if errors.Is(err, errNoChaosLeader) {
					return fmt.Errorf("chaos schedule: cluster %s: %w to store it; --foreground runs it in this process instead", w.cfg.Cluster.Name, err)
				}
				if err != nil {
					return fmt.Errorf("chaos schedule: %w", err)
				}
				if g.jsonOut {
					return printJSON(g, st)
				}
				fmt.Fprintf(g.stdout, "chaos schedule %q stored in the log of cluster %s; its leader (now %s) runs it\n", spec, w.cfg.Cluster.Name, leader)
				if st.Paused {
					fmt.Fprintf(g.stdout, "note: chaos is PAUSED (%s): runs are skipped until \"hactl chaos resume\"\n", st.PauseReason)
				}
				return nil
			}
			s := &chaos.Scheduler{Spec: spec, Dir: w.chaosDir(), Logger: g.logger,
				Chaos: func(ctx context.Context, at time.Time) (*chaos.Report, string, error) {
					rf := f
					if !fixedSeed {
						rf.seed = randomSeed()
					}
					rep, dir, err := w.chaosRun(ctx, &rf, spec)
					if rep != nil && !g.jsonOut {
						renderChaos(g, rep, dir)
					}
					return rep, dir, err
				}}
			fmt.Fprintf(g.stderr, "chaos: running %q for cluster %s in the foreground until interrupted\n", spec, w.cfg.Cluster.Name)
			return s.Run(cmd.Context())
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&crontab, "print-crontab", false, "print the equivalent crontab line and exit")
	cmd.Flags().BoolVar(&foreground, "foreground", false, "run the schedule in this process instead of storing it in the cluster log")
	return cmd
}

func newChaosUnscheduleCmd(g *globals) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "unschedule [DIR]",
		Short: "Remove the chaos schedule from the cluster log",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			obs, err := w.observe(cmd.Context())
			if err != nil {
				return err
			}
			if _, _, err := chaosToLeader(cmd.Context(), obs, http.MethodDelete, "/v1/chaos/schedule", nil); err != nil {
				return fmt.Errorf("chaos unschedule: cluster %s: %w", w.cfg.Cluster.Name, err)
			}
			fmt.Fprintf(g.stdout, "chaos schedule removed from the log of cluster %s\n", w.cfg.Cluster.Name)
			return nil
		},
	}
	pf.register(cmd)
	return cmd
}

func printJSON(g *globals, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, string(b))
	return nil
}

func newChaosHistoryCmd(g *globals) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "history [DIR]",
		Short: "Show the chaos runs recorded for the cluster (in its log and on this machine)",
		Long: `History shows the runs the cluster's leaders recorded in the log (scheduled
runs: running, done, skipped while paused, or interrupted when their leader
died), read from any node that answers, merged with the runs this machine
recorded in <state>/<cluster>/chaos/history.json (manual and foreground runs).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			h, err := w.chaosDir().History()
			if err != nil {
				return err
			}
			var cl *cluster.ChaosState
			from := ""
			if obs, err := w.observe(cmd.Context()); err == nil {
				cl, from = chaosFromCluster(cmd.Context(), obs)
			}
			if cl != nil {
				for _, r := range cl.Runs {
					h = append(h, chaos.HistoryEntry{Started: r.Started, Finished: r.Finished, Schedule: r.Schedule, Stage: r.Stage, Seed: r.Seed,
						Rounds: r.Rounds, Pass: r.Pass, Skipped: r.Skipped, Error: r.Error, Report: r.Report, State: r.State, Leader: r.Leader})
				}
				slices.SortStableFunc(h, func(a, b chaos.HistoryEntry) int { return a.Started.Compare(b.Started) })
			}
			if g.jsonOut {
				out := map[string]any{"runs": h}
				if cl != nil {
					out["cluster"] = map[string]any{"from": from, "schedule": cl.Schedule, "paused": cl.Paused, "pause_reason": cl.PauseReason}
				}
				return printJSON(g, out)
			}
			if p, why := w.chaosDir().Paused(); p {
				fmt.Fprintf(g.stdout, "chaos is PAUSED on this machine (%s)\n", why)
			}
			if cl != nil {
				if cl.Paused {
					fmt.Fprintf(g.stdout, "chaos is PAUSED in the cluster log since %s", cl.PausedAt.Local().Format(time.DateTime))
					if cl.PauseReason != "" {
						fmt.Fprintf(g.stdout, ": %s", cl.PauseReason)
					}
					fmt.Fprintln(g.stdout)
				}
				if cl.Schedule != nil {
					fmt.Fprintf(g.stdout, "schedule in the cluster log: %q (set %s)\n", cl.Schedule.Spec, cl.Schedule.Set.Local().Format(time.DateTime))
				}
			}
			if len(h) == 0 {
				fmt.Fprintln(g.stdout, "no chaos runs recorded")
				return nil
			}
			fmt.Fprintln(g.stdout)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STARTED\tSCHEDULE\tWHERE\tSTAGE\tSEED\tROUNDS\tRESULT\tREPORT")
			for _, e := range h {
				res := "pass"
				switch {
				case e.State == cluster.ChaosRunning:
					res = "running"
				case e.State == cluster.ChaosInterrupted:
					res = "INTERRUPTED: " + e.Error
				case e.Skipped != "":
					res = "skipped: " + e.Skipped
				case e.Error != "":
					res = "error: " + e.Error
				case !e.Pass:
					res = "FAIL"
				}
				where := "this machine"
				if e.Leader != "" {
					where = "leader " + e.Leader
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", e.Started.Local().Format(time.DateTime), cmpOrStr(e.Schedule, "manual"),
					where, e.Stage, e.Seed, e.Rounds, res, e.Report)
			}
			return tw.Flush()
		},
	}
	pf.register(cmd)
	return cmd
}

func newChaosPauseCmd(g *globals, pause bool) *cobra.Command {
	var pf planFlags
	var reason string
	use, short := "resume [DIR]", "Lift the chaos kill switch"
	if pause {
		use, short = "pause [DIR]", "Pause all chaos for the cluster at once (kill switch checked before every round)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			d := w.chaosDir()
			// This machine's switch (manual and foreground runs) first: it
			// cannot fail for want of a leader.
			if pause {
				if err := d.Pause(reason); err != nil {
					return err
				}
			} else if err := d.Resume(); err != nil {
				return err
			}
			// Then the cluster log's (runs its leader hosts).
			path, body := "/v1/chaos/resume", any(nil)
			if pause {
				path, body = "/v1/chaos/pause", agent.ChaosPauseRequest{Reason: reason}
			}
			var logErr error
			if obs, err := w.observe(cmd.Context()); err != nil {
				logErr = err
			} else if _, cs := controlStatus(cmd.Context(), obs); cs != nil {
				_, _, logErr = chaosToLeader(cmd.Context(), obs, http.MethodPost, path, body)
			}
			verb := "resumed"
			if pause {
				verb = "paused"
			}
			if logErr != nil {
				return fmt.Errorf("chaos %s on this machine, but not in the log of cluster %s: %w", verb, w.cfg.Cluster.Name, logErr)
			}
			if pause {
				fmt.Fprintf(g.stdout, "chaos paused for cluster %s: running rounds stop before the next one, scheduled runs are skipped\n", w.cfg.Cluster.Name)
			} else {
				fmt.Fprintf(g.stdout, "chaos resumed for cluster %s\n", w.cfg.Cluster.Name)
			}
			return nil
		},
	}
	pf.register(cmd)
	if pause {
		cmd.Flags().StringVar(&reason, "reason", "", "why chaos is paused (shown by history and in reports)")
	}
	return cmd
}

func (w *workspace) chaosDir() chaos.Dir { return chaos.Dir(filepath.Join(w.clusterDir(), "chaos")) }

// chaosPaused is the kill switch of a run in this process: this machine's
// switch file, else the cluster log's switch (read from any node).
func (w *workspace) chaosPaused(ctx context.Context) func() (bool, string) {
	return func() (bool, string) {
		if p, why := w.chaosDir().Paused(); p {
			return p, why
		}
		obs, err := w.observe(ctx)
		if err != nil {
			return false, ""
		}
		if cl, _ := chaosFromCluster(ctx, obs); cl != nil && cl.Paused {
			why := "paused in the cluster log at " + cl.PausedAt.UTC().Format(time.RFC3339)
			if cl.PauseReason != "" {
				why += ": " + cl.PauseReason
			}
			return true, why
		}
		return false, ""
	}
}

// chaosRun runs chaos once with f, writes the report files and records the
// run in the history. The report is nil only when nothing ran.
func (w *workspace) chaosRun(ctx context.Context, f *chaosFlags, schedule string) (*chaos.Report, string, error) {
	kind, err := chaos.ParseFaultKind(f.fault)
	if err != nil {
		return nil, "", err
	}
	var probes []chaos.Probe
	for _, s := range f.probes {
		p, err := chaos.ParseProbe(s)
		if err != nil {
			return nil, "", err
		}
		probes = append(probes, p)
	}
	var markers []chaos.Marker
	for _, s := range f.markers {
		m, err := chaos.ParseMarker(s)
		if err != nil {
			return nil, "", err
		}
		markers = append(markers, m)
	}
	spec := chaos.SpecFromConfig(w.cfg)
	for _, r := range spec.Roles {
		if len(f.roles) > 0 && !contains(f.roles, r.Name) {
			continue
		}
		if err := chaos.Supports(kind, r.ProviderType, w.provs[r.Provider]); err != nil {
			return nil, "", fmt.Errorf("role %s: %w", r.Name, err)
		}
	}
	for _, name := range f.roles {
		if _, ok := spec.Role(name); !ok {
			return nil, "", fmt.Errorf("--roles: role %q is not declared in cluster %s", name, spec.Cluster)
		}
	}
	types := map[string]string{}
	for name := range w.provs {
		types[name] = chaos.ProviderType(w.cfg, name)
	}
	d := w.chaosDir()
	r := &chaos.Runner{
		Spec:     spec,
		Cluster:  &chaos.ProviderCluster{Name: spec.Cluster, Providers: w.provs, ProviderTypes: types},
		Injector: &chaos.Injector{Providers: w.provs, Service: f.service},
		Probes:   probes, Markers: markers, Logger: w.g.logger, Paused: w.chaosPaused(ctx),
		Options: chaos.Options{Stage: f.stage, Rounds: f.rounds, Fault: kind, Seed: f.seed, Interval: f.interval,
			Roles: f.roles, BlastRadius: f.blastRadius, Leashed: f.leashed, PauseFor: f.pauseFor, Poll: f.poll,
			RoundTimeout: f.roundTimeout, ProbeInterval: f.probeEvery, ProbeTimeout: f.probeTimeout, Baseline: f.baseline},
	}
	fmt.Fprintf(w.g.stderr, "chaos: cluster %s, stage %d, %d round(s), fault %s, seed %d (replay with --seed %d)\n",
		spec.Cluster, f.stage, max(f.rounds, 1), kind, f.seed, f.seed)
	rep, runErr := r.Run(ctx)
	dir := f.reportDir
	if dir == "" {
		dir = filepath.Join(string(d), "reports", rep.Started.UTC().Format("20060102T150405.000Z"))
	}
	if _, _, err := rep.WriteFiles(dir); err != nil {
		runErr = errors.Join(runErr, err)
	}
	e := chaos.HistoryEntry{Started: rep.Started.UTC(), Finished: rep.Finished.UTC(), Schedule: schedule, Stage: rep.Stage,
		Seed: rep.Seed, Rounds: len(rep.Rounds), Pass: rep.Pass, Report: dir}
	switch {
	case rep.Refused != "":
		e.Skipped = "refused: " + rep.Refused
	case rep.Paused != "":
		e.Skipped = "kill switch: " + rep.Paused
	}
	if runErr != nil {
		e.Error, e.Pass = runErr.Error(), false
	}
	if err := d.Record(e); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return rep, dir, runErr
}

func renderChaos(g *globals, rep *chaos.Report, dir string) {
	out := g.stdout
	fmt.Fprintf(out, "chaos %s: cluster %s, stage %d, seed %d\n", verdict(rep.Pass), rep.Cluster, rep.Stage, rep.Seed)
	if rep.Refused != "" {
		fmt.Fprintf(out, "  refused: %s\n", rep.Refused)
	}
	if rep.Paused != "" {
		fmt.Fprintf(out, "  stopped by the kill switch: %s\n", rep.Paused)
	}
	for _, l := range rep.LostAtEnd {
		fmt.Fprintf(out, "  LOST by a later round: %s\n", l)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ROUND\tFAULT\tVICTIMS\tDETECTED\tRECOVERED\tFAILED/REQUESTS\tDATA LOST")
	for _, rd := range rep.Rounds {
		var names []string
		for _, v := range rd.Victims {
			names = append(names, v.Name)
		}
		rec := secsStr(rd.RecoverySeconds)
		switch {
		case rd.Skipped != "":
			rec = rd.Skipped
		case !rd.Recovered:
			rec = "NOT RECOVERED"
		}
		reqs := fmt.Sprintf("%d/%d", rd.RequestsFailed, rd.Requests)
		if rd.RequestsDeferred > 0 {
			reqs += fmt.Sprintf(" (%d deferred)", rd.RequestsDeferred)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%d of %d\n", rd.N, rd.Fault, strings.Join(names, ","), secsStr(rd.DetectionSeconds),
			rec, reqs, rd.MarkersLost, rd.MarkersWritten)
	}
	tw.Flush()
	for _, r := range rep.Results {
		fmt.Fprintf(out, "  %-4s %s: %s (objective %s)\n", verdict(r.Pass), r.Name, r.Measured, r.Objective)
	}
	fmt.Fprintf(out, "report: %s\n", filepath.Join(dir, "report.html"))
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func secsStr(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fs", *p)
}

func cmpOrStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func randomSeed() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:]) >> 1 // fits an int64 for JSON readers
}

// crontabCommand rebuilds "hactl chaos run DIR <flags>" from the flags the
// user set on chaos schedule, with DIR made absolute.
func crontabCommand(cmd *cobra.Command, args []string) string {
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, "go-build") {
		exe = "hactl"
	}
	dir, _ := filepath.Abs(dirArg(args))
	parts := []string{shellQuote(exe), "chaos", "run", shellQuote(dir)}
	add := func(f *pflag.Flag) {
		if f.Name == "print-crontab" {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				parts = append(parts, "--"+f.Name+"="+shellQuote(v))
			}
			return
		}
		parts = append(parts, "--"+f.Name+"="+shellQuote(f.Value.String()))
	}
	cmd.Flags().Visit(add)
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@%+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
