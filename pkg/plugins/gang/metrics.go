package gang

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// gangMetrics are served on the scheduler's /metrics.
type gangMetrics struct {
	timeToBound *metrics.Histogram
	waiting     *metrics.Gauge
	rejected    *metrics.CounterVec
	preemptions *metrics.Counter
	torndown    *metrics.Counter
}

var (
	metricsOnce sync.Once
	allMetrics  *gangMetrics
)

// registerMetrics registers the plugin's metrics once per process, however
// many profiles enable the plugin.
func registerMetrics() *gangMetrics {
	metricsOnce.Do(func() {
		allMetrics = &gangMetrics{
			timeToBound: metrics.NewHistogram(&metrics.HistogramOpts{
				Name:           "tessera_gang_time_to_bound_seconds",
				Help:           "Time from a gang's last needed member being seen schedulable (created, or its scheduling gates lifted) to all minMember members bound.",
				Buckets:        metrics.ExponentialBuckets(0.01, 2, 16),
				StabilityLevel: metrics.ALPHA,
			}),
			waiting: metrics.NewGauge(&metrics.GaugeOpts{
				Name:           "tessera_gangs_waiting",
				Help:           "Gangs with members waiting to be placed: members missing, no placement, or released.",
				StabilityLevel: metrics.ALPHA,
			}),
			rejected: metrics.NewCounterVec(&metrics.CounterOpts{
				Name:           "tessera_gangs_rejected_total",
				Help:           "Gang placement attempts that failed, by reason: no_placement, timeout, member_failed.",
				StabilityLevel: metrics.ALPHA,
			}, []string{"reason"}),
		}
		allMetrics.preemptions = metrics.NewCounter(&metrics.CounterOpts{
			Name:           "tessera_gang_preemptions_total",
			Help:           "Preemptions by the Gang plugin: victim sets chosen and evicted, for gangs and lone pods.",
			StabilityLevel: metrics.ALPHA,
		})
		allMetrics.torndown = metrics.NewCounter(&metrics.CounterOpts{
			Name:           "tessera_gangs_torn_down_total",
			Help:           "Partly bound gangs whose bound members were evicted because the rest did not bind within the gang's timeout.",
			StabilityLevel: metrics.ALPHA,
		})
		legacyregistry.MustRegister(allMetrics.timeToBound, allMetrics.waiting, allMetrics.rejected, allMetrics.preemptions, allMetrics.torndown)
		// Every reason from the start: a rate over them is 0, not absent.
		for _, reason := range []string{"no_placement", "timeout", "member_failed"} {
			allMetrics.rejected.WithLabelValues(reason)
		}
	})
	return allMetrics
}
