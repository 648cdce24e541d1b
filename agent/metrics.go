package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus collectors, on a registry of its own
// (several agents may live in one test process).
type metrics struct {
	reg          *prometheus.Registry
	runDuration  *prometheus.HistogramVec
	changed      prometheus.Counter
	failed       prometheus.Counter
	revision     *prometheus.GaugeVec
	pullFailures *prometheus.CounterVec
	refused      *prometheus.CounterVec
	healthy      prometheus.Gauge
}

func newMetrics(id Identity) *metrics {
	constLabels := prometheus.Labels{"node": id.Name}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		runDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hactl_agent_run_duration_seconds", Help: "Duration of converge runs (pull, verify, evaluate, converge).",
			Buckets:     []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
			ConstLabels: constLabels,
		}, []string{"result"}),
		changed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hactl_agent_resources_changed_total", Help: "Resources changed by converge runs.", ConstLabels: constLabels,
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hactl_agent_resources_failed_total", Help: "Resources that failed in converge runs.", ConstLabels: constLabels,
		}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hactl_agent_revision_info", Help: "The configuration revision in force (value 1).", ConstLabels: constLabels,
		}, []string{"revision"}),
		pullFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hactl_agent_pull_failures_total", Help: "Failed fetches, by remote.", ConstLabels: constLabels,
		}, []string{"remote"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hactl_agent_refused_commits_total", Help: "Commits refused, by reason (unsigned, untrusted, bad-signature, evaluate, converge).", ConstLabels: constLabels,
		}, []string{"reason"}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hactl_agent_healthy", Help: "1 when /healthz answers 200.", ConstLabels: constLabels,
		}),
	}
	m.reg.MustRegister(m.runDuration, m.changed, m.failed, m.revision, m.pullFailures, m.refused, m.healthy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setRevision(rev string) {
	m.revision.Reset()
	if rev != "" {
		m.revision.WithLabelValues(rev).Set(1)
	}
}
