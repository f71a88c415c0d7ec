package nvlink

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// topologyStore holds every node's published GPU topology, parsed once per
// change so that Filter and Score read it without copying or decoding.
type topologyStore struct {
	mu    sync.RWMutex
	nodes map[string]*nodeGPUs
	// unreadable says why a node's GPUNodeTopology could not be used.
	unreadable map[string]string
}

func newTopologyStore() *topologyStore {
	return &topologyStore{nodes: map[string]*nodeGPUs{}, unreadable: map[string]string{}}
}

// get returns the node's GPUs, or nil and why there are none.
func (s *topologyStore) get(node string) (*nodeGPUs, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := s.nodes[node]; n != nil {
		return n, ""
	}
	if why, ok := s.unreadable[node]; ok {
		return nil, why
	}
	return nil, "no GPUNodeTopology published"
}

func (s *topologyStore) update(logger klog.Logger, obj *tesserav1alpha1.GPUNodeTopology) {
	var heartbeat time.Time
	if obj.Status.HeartbeatTime != nil {
		heartbeat = obj.Status.HeartbeatTime.Time
	}
	n, err := fromStatus(&obj.Status, heartbeat)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		logger.Error(err, "Ignoring unreadable GPUNodeTopology", "node", obj.Name)
		delete(s.nodes, obj.Name)
		s.unreadable[obj.Name] = fmt.Sprintf("GPUNodeTopology unreadable: %v", err)
		return
	}
	s.nodes[obj.Name] = n
	delete(s.unreadable, obj.Name)
}

func (s *topologyStore) delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodes, name)
	delete(s.unreadable, name)
}

// watchTopologies fills store from a watch of GPUNodeTopology objects until
// ctx ends. It fails when the CRD is not installed.
func watchTopologies(ctx context.Context, config *rest.Config, store *topologyStore) error {
	logger := klog.FromContext(ctx)
	scheme := runtime.NewScheme()
	if err := tesserav1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := cache.New(config, cache.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating GPUNodeTopology cache: %w", err)
	}
	informer, err := c.GetInformer(ctx, &tesserav1alpha1.GPUNodeTopology{})
	if err != nil {
		return fmt.Errorf("watching GPUNodeTopology (is manifests/crd/tessera.dev_gpunodetopologies.yaml installed?): %w", err)
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if t, ok := obj.(*tesserav1alpha1.GPUNodeTopology); ok {
				store.update(logger, t)
			}
		},
		UpdateFunc: func(_, obj any) {
			if t, ok := obj.(*tesserav1alpha1.GPUNodeTopology); ok {
				store.update(logger, t)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if t, ok := obj.(*tesserav1alpha1.GPUNodeTopology); ok {
				store.delete(t.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			logger.Error(err, "GPUNodeTopology cache stopped")
		}
	}()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(syncCtx) {
		return fmt.Errorf("GPUNodeTopology cache did not sync within a minute")
	}
	return nil
}
