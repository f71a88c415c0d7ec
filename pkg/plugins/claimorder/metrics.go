package claimorder

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	metricsOnce   sync.Once
	disagreements = metrics.NewCounterVec(&metrics.CounterOpts{
		Name:           "tessera_dra_allocation_disagreements_total",
		Help:           "Pods whose ResourceClaims were allocated other GPUs of driver gpu.tessera.dev than NVLinkTopology chose; their tessera.dev/gpu-ids records the allocation.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"profile"})
)

// registerMetrics registers the plugin's metrics once per process, however
// many profiles enable it.
func registerMetrics(profile string) {
	metricsOnce.Do(func() { legacyregistry.MustRegister(disagreements) })
	disagreements.WithLabelValues(profile).Add(0)
}
