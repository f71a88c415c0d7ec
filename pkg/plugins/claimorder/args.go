package claimorder

import (
	"encoding/json"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	configv1 "k8s.io/kube-scheduler/config/v1"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
)

// decodeArgs reads the plugin's arguments as DynamicResourcesArgs, with
// kube-scheduler's defaults: the scheduler defaults the arguments of its
// own plugins only.
func decodeArgs(obj runtime.Object) (*config.DynamicResourcesArgs, error) {
	versioned := &configv1.DynamicResourcesArgs{}
	if u, ok := obj.(*runtime.Unknown); ok && len(u.Raw) > 0 {
		if err := json.Unmarshal(u.Raw, versioned); err != nil {
			return nil, fmt.Errorf("decoding args (DynamicResourcesArgs): %w", err)
		}
	} else if obj != nil && !ok {
		return nil, fmt.Errorf("args of type %T, want DynamicResourcesArgs", obj)
	}
	scheme.Scheme.Default(versioned)
	args := &config.DynamicResourcesArgs{}
	if err := scheme.Scheme.Convert(versioned, args, nil); err != nil {
		return nil, fmt.Errorf("converting args: %w", err)
	}
	return args, nil
}

// featureGate is the scheduler's feature gates, as the in-tree plugins get
// them.
func featureGate() featuregate.FeatureGate { return utilfeature.DefaultFeatureGate }

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
