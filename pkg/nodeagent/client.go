package nodeagent

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// Scheme knows the types the agent reads and writes.
func Scheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := tesserav1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// cacheOptions scopes every watch of the agent to its own node.
func cacheOptions(scheme *runtime.Scheme, nodeName string) cache.Options {
	ownNode := cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", nodeName)}
	return cache.Options{
		Scheme: scheme,
		ByObject: map[ctrlclient.Object]cache.ByObject{
			&corev1.Node{}:                     ownNode,
			&tesserav1alpha1.GPUNodeTopology{}: ownNode,
			&corev1.Pod{}:                      {Field: fields.OneTermEqualSelector("spec.nodeName", nodeName)},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// NewClient returns a client whose reads come from watches of this node's
// Node, GPUNodeTopology and pods only: three watches per node, instead of
// GETs on every sync. Pods are watched as the kubelet watches them, by
// spec.nodeName, so the agent's memory does not grow with the cluster's pod
// count; a pod bound elsewhere reads as not found. Managed fields are dropped
// from the cache: the agent never reads them. It runs until ctx ends.
func NewClient(ctx context.Context, config *rest.Config, nodeName string) (ctrlclient.Client, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	c, err := cache.New(config, cacheOptions(scheme, nodeName))
	if err != nil {
		return nil, fmt.Errorf("creating cache: %w", err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("cache did not sync")
	}
	return ctrlclient.New(config, ctrlclient.Options{Scheme: scheme, Cache: &ctrlclient.CacheOptions{Reader: c}})
}
