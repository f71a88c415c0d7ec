package nvlink

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology/published"
)

// topologyStore holds every node's published GPU topology, parsed once per
// change so that Filter and Score read it without copying or decoding,
// with the node's cached answers beside it. Reads (every node, twice a
// cycle) far outnumber writes (a heartbeat per node every few minutes), so
// writers copy the map and readers look it up without locking.
type topologyStore struct {
	mu    sync.Mutex // serializes writers
	nodes atomic.Pointer[map[string]*nodeState]
}

// nodeState is one node's topology as last read, or why it is unusable.
// A new topology makes a new nodeState, which drops the cached answers.
type nodeState struct {
	gpus *published.Node
	// heartbeat is gpus.Heartbeat, kept here so that the freshness check
	// of every Filter and Score reads no more than this struct.
	heartbeat time.Time
	// unreadable says why the node's GPUNodeTopology could not be used.
	unreadable string
	cache      atomic.Pointer[cachedNode]
	// epoch counts the changes to what the node's pods hold that bump no
	// NodeInfo generation (a reservation replaced by its claims'
	// allocation); a cached entry of another epoch is stale.
	epoch atomic.Int64
	// idle is, by GPU count k, the bottleneck bandwidth of the best k
	// healthy GPUs of the node when idle; computed once, on first use.
	idle atomic.Pointer[[]float64]
}

// idleBest is the bottleneck bandwidth of the best k healthy GPUs of the
// node when idle, 0 if it has fewer (or k < 2: one GPU has no link).
func (st *nodeState) idleBest(k int) float64 {
	idle := st.idle.Load()
	if idle == nil {
		healthy := st.gpus.Healthy("")
		best := make([]float64, len(healthy)+1)
		for n := 2; n <= len(healthy); n++ {
			if c, ok := st.gpus.Topo.BestSet(healthy, n); ok {
				best[n] = c.BottleneckGBps
			}
		}
		st.idle.Store(&best)
		idle = &best
	}
	if k < 0 || k >= len(*idle) {
		return 0
	}
	return (*idle)[k]
}

func newTopologyStore() *topologyStore {
	s := &topologyStore{}
	s.nodes.Store(&map[string]*nodeState{})
	return s
}

// get returns the node's state, or nil if it published no topology.
func (s *topologyStore) get(node string) *nodeState { return (*s.nodes.Load())[node] }

// set replaces the node's state, or removes it when st is nil.
func (s *topologyStore) set(node string, st *nodeState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := maps.Clone(*s.nodes.Load())
	if st == nil {
		delete(next, node)
	} else {
		next[node] = st
	}
	s.nodes.Store(&next)
}

func (s *topologyStore) update(logger klog.Logger, obj *tesserav1alpha1.GPUNodeTopology) {
	var heartbeat time.Time
	if obj.Status.HeartbeatTime != nil {
		heartbeat = obj.Status.HeartbeatTime.Time
	}
	n, err := published.Read(&obj.Status, heartbeat)
	if err != nil {
		logger.Error(err, "Ignoring unreadable GPUNodeTopology", "node", obj.Name)
		s.set(obj.Name, &nodeState{unreadable: fmt.Sprintf("GPUNodeTopology unreadable: %v", err)})
		return
	}
	s.set(obj.Name, &nodeState{gpus: n, heartbeat: n.Heartbeat})
}

func (s *topologyStore) delete(name string) { s.set(name, nil) }

// TopologyFeed delivers GPUNodeTopology objects to the plugin until ctx
// ends: upsert for each object added or changed, remove for each deleted.
// It returns once the objects that exist now are delivered, or with an
// error that fails plugin start-up.
type TopologyFeed func(ctx context.Context, handle fwk.Handle, upsert func(*tesserav1alpha1.GPUNodeTopology), remove func(name string)) error

// WatchTopologies is the feed a scheduler uses: a watch of the apiserver
// the handle talks to. It fails when the CRD is not installed.
func WatchTopologies(ctx context.Context, handle fwk.Handle, upsert func(*tesserav1alpha1.GPUNodeTopology), remove func(string)) error {
	logger := klog.FromContext(ctx)
	scheme := runtime.NewScheme()
	if err := tesserav1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := cache.New(handle.KubeConfig(), cache.Options{Scheme: scheme})
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
				upsert(t)
			}
		},
		UpdateFunc: func(_, obj any) {
			if t, ok := obj.(*tesserav1alpha1.GPUNodeTopology); ok {
				upsert(t)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if t, ok := obj.(*tesserav1alpha1.GPUNodeTopology); ok {
				remove(t.Name)
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

// StaticTopologies is a feed of a fixed set of objects, for simulations
// that run the plugin in-process without an apiserver (the fragmentation
// benchmark).
func StaticTopologies(objs []*tesserav1alpha1.GPUNodeTopology) TopologyFeed {
	return func(_ context.Context, _ fwk.Handle, upsert func(*tesserav1alpha1.GPUNodeTopology), _ func(string)) error {
		for _, o := range objs {
			upsert(o)
		}
		return nil
	}
}
