package claimorder

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/featuregate"
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
