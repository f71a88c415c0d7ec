// Package apischeme is the one runtime.Scheme of every API type Tessera's
// binaries, tests and demo read and write. It is its own package so that
// the launcher does not link the test control plane (envtest).
package apischeme

import (
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kueuev1beta2 "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// New holds every API type Tessera's components, tests and demo use: core
// Kubernetes, Tessera's own, PodGroup and Kueue.
func New() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		tesserav1alpha1.AddToScheme,
		schedv1alpha1.AddToScheme,
		kueuev1beta2.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}
