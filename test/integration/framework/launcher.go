package framework

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/pkg/launcher"
)

// StartLauncher runs the launcher's controllers (TrainingJob, ServingGroup,
// the topology-fit admission check) in this process until the test ends,
// re-checking pending fits every recheck. It returns the registry their
// metrics are in.
func (e *Env) StartLauncher(t testing.TB, recheck time.Duration) *prometheus.Registry {
	return e.StartLauncherAs(t, recheck, e.Cluster.Config)
}

// StartLauncherAs is StartLauncher with the controllers talking to the
// apiserver through config (say, as a ServiceAccount).
func (e *Env) StartLauncherAs(t testing.TB, recheck time.Duration, config *rest.Config) *prometheus.Registry {
	t.Helper()
	opts := launcher.DefaultOptions()
	opts.RecheckAfter = recheck
	return e.StartLauncherWith(t, opts, config)
}

// StartLauncherWith is StartLauncherAs with the launcher's options.
func (e *Env) StartLauncherWith(t testing.TB, opts launcher.Options, config *rest.Config) *prometheus.Registry {
	t.Helper()
	scheme, err := apischeme.New()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Each test starts its own controllers under the same names.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := launcher.Setup(mgr, reg, opts); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("launcher manager: %v", err)
		}
	})
	return reg
}
