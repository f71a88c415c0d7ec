package launcher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The kind and reason labels of the launcher's metrics.
const (
	kindTrainingJob     = "TrainingJob"
	kindServingGroup    = "ServingGroup"
	restartEvicted      = "evicted"
	restartMemberFailed = "member-failed"
)

// Metrics are the launcher's Prometheus metrics.
type Metrics struct {
	admissionWait *prometheus.HistogramVec
	restarts      *prometheus.CounterVec
	finished      *prometheus.CounterVec
}

// NewMetrics registers the launcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissionWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tessera_launcher_admission_wait_seconds",
			Help:    "Time from a TrainingJob's or serving replica's creation to its admission by Kueue (quota and topology fit).",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 14),
		}, []string{"kind"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_launcher_gang_restarts_total",
			Help: "Whole-gang restarts, by kind and reason (member-failed, evicted).",
		}, []string{"kind", "reason"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_launcher_trainingjobs_finished_total",
			Help: "TrainingJobs that ended, by result (succeeded, failed).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.admissionWait, m.restarts, m.finished)
	// Every series from the start, so that rates and alerts over them are
	// 0, not absent, until the first restart or finished job.
	for _, kind := range []string{kindTrainingJob, kindServingGroup} {
		m.admissionWait.WithLabelValues(kind)
		for _, reason := range []string{restartEvicted, restartMemberFailed} {
			m.restarts.WithLabelValues(kind, reason)
		}
	}
	for _, result := range []string{"succeeded", "failed"} {
		m.finished.WithLabelValues(result)
	}
	return m
}

func (m *Metrics) admittedAfter(kind string, wait time.Duration) {
	if m != nil {
		m.admissionWait.WithLabelValues(kind).Observe(wait.Seconds())
	}
}

func (m *Metrics) restarted(kind, reason string) {
	if m != nil {
		m.restarts.WithLabelValues(kind, reason).Inc()
	}
}

func (m *Metrics) jobFinished(succeeded bool) {
	if m == nil {
		return
	}
	result := "failed"
	if succeeded {
		result = "succeeded"
	}
	m.finished.WithLabelValues(result).Inc()
}
