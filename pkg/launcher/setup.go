package launcher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"tessera.dev/tessera/pkg/queue"
)

// Options configure the launcher's controllers.
type Options struct {
	// RackKey is the node label that names a node's rack, for the
	// topology-fit check's one-rack preference.
	RackKey string
	// RecheckAfter is how often a pending topology-fit check is evaluated
	// again.
	RecheckAfter time.Duration
	// PlacementGrace is how long a gang that passed the check keeps its
	// place in later checks while its pods are being bound.
	PlacementGrace time.Duration
	// ReplicaBackoff spaces a serving replica's restarts after its pods end.
	ReplicaBackoff Backoff
}

// DefaultOptions are the launcher's defaults.
func DefaultOptions() Options {
	return Options{RackKey: "tessera.dev/rack", RecheckAfter: 5 * time.Second, PlacementGrace: 2 * time.Minute, ReplicaBackoff: DefaultBackoff()}
}

// Setup registers the TrainingJob and ServingGroup controllers and the
// topology-fit admission check with mgr, and their metrics with reg.
func Setup(mgr ctrl.Manager, reg prometheus.Registerer, opts Options) error {
	metrics := NewMetrics(reg)
	clk := clock.RealClock{}
	if err := (&TrainingJobReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tessera-launcher"), Clock: clk, Metrics: metrics,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&ServingGroupReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("tessera-launcher"), Clock: clk, Metrics: metrics,
		Backoff: opts.ReplicaBackoff,
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&queue.TopologyFit{
		Client: mgr.GetClient(), Clock: clk, RackKey: opts.RackKey, RecheckAfter: opts.RecheckAfter, PlacementGrace: opts.PlacementGrace,
		Metrics: queue.NewMetrics(reg),
	}).SetupWithManager(mgr)
}
