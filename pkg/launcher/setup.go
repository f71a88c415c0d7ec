package launcher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
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
	// TopologyStaleAfter and MissingTopology are which GPUNodeTopologies
	// the topology-fit check trusts and what it does with nodes without
	// one; they must match the scheduler profile's NVLinkTopology args.
	TopologyStaleAfter time.Duration
	MissingTopology    configv1alpha1.MissingTopologyPolicy
	// ReplicaBackoff spaces a serving replica's restarts after its pods end.
	ReplicaBackoff Backoff
}

// DefaultOptions are the launcher's defaults.
func DefaultOptions() Options {
	return Options{
		RackKey: "tessera.dev/rack", RecheckAfter: 5 * time.Second, PlacementGrace: 2 * time.Minute,
		TopologyStaleAfter: configv1alpha1.DefaultTopologyStaleAfterSeconds * time.Second, MissingTopology: configv1alpha1.MissingTopologyCountOnly,
		ReplicaBackoff: DefaultBackoff(),
	}
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
		StaleAfter: opts.TopologyStaleAfter, MissingTopology: opts.MissingTopology,
		Metrics: queue.NewMetrics(reg),
	}).SetupWithManager(mgr)
}
