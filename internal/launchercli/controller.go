package launchercli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/pkg/launcher"
)

func runController(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	opts := launcher.DefaultOptions()
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig to use outside a cluster; in-cluster config otherwise")
	metricsAddr := fs.String("metrics-bind-address", ":8080", "address serving /metrics; 0 disables")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address serving /healthz and /readyz; 0 disables")
	leaderElect := fs.Bool("leader-elect", false, "elect one active controller among replicas")
	fs.StringVar(&opts.RackKey, "rack-label", opts.RackKey, "node label naming a node's rack (the topology-fit check prefers one rack per gang)")
	fs.DurationVar(&opts.RecheckAfter, "recheck-interval", opts.RecheckAfter, "how often a gang held by the topology-fit check is evaluated again")
	fs.DurationVar(&opts.PlacementGrace, "placement-grace", opts.PlacementGrace, "how long an admitted gang keeps its place in later fit checks while its pods are bound")
	fs.DurationVar(&opts.TopologyStaleAfter, "topology-stale-after", opts.TopologyStaleAfter, "heartbeat age after which the topology-fit check no longer trusts a node's GPUNodeTopology; must match the scheduler profile's NVLinkTopology topologyStaleAfterSeconds")
	missing := fs.String("missing-topology", string(opts.MissingTopology), "what the topology-fit check does with a node without a fresh GPUNodeTopology: CountOnly (takes GPU pods by nvidia.com/gpu count, unless they need an NVLink island or a GPU model) or Unschedulable (takes no GPU pods); must match the scheduler profile's NVLinkTopology missingTopology")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts.MissingTopology = configv1alpha1.MissingTopologyPolicy(*missing)
	if err := validateTopologyTrust(opts); err != nil {
		return err
	}
	ctrl.SetLogger(klog.NewKlogr())
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	scheme, err := apischeme.New()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "tessera-launcher",
		LeaderElectionNamespace: "kube-system",
	})
	if err != nil {
		return err
	}
	if err := launcher.Setup(mgr, metrics.Registry, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// validateTopologyTrust checks the topology-fit check's trust flags within
// what the scheduler accepts of its NVLinkTopology args, so that the two
// can be set alike.
func validateTopologyTrust(opts launcher.Options) error {
	if !slices.Contains(configv1alpha1.MissingTopologyPolicies, opts.MissingTopology) {
		return fmt.Errorf("--missing-topology=%q: want one of %q", opts.MissingTopology, configv1alpha1.MissingTopologyPolicies)
	}
	if s := opts.TopologyStaleAfter; s < time.Minute || s > 24*time.Hour {
		return fmt.Errorf("--topology-stale-after=%s: must be between 1m and 24h, as the scheduler's topologyStaleAfterSeconds", s)
	}
	return nil
}
