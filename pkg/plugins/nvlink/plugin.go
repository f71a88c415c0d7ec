// Package nvlink is Tessera's NVLink-topology placement plugin: it chooses
// the node and the exact GPUs on it together, from the GPUNodeTopology each
// node agent publishes. Filter keeps nodes whose free healthy GPUs can serve
// the pod (inside one NVLink island when the pod or profile requires it),
// Score ranks nodes by the bandwidth of the best GPU set and by how well
// connected the GPUs left free stay, Reserve picks the exact GPUs, and
// Bind binds the pod with them recorded (annotation tessera.dev/gpu-ids). It also
// orders nodes for the Gang plugin's whole-gang plans so that multi-node
// gangs stay inside one NVLink domain or rack.
package nvlink

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/plugins/gang"
	"tessera.dev/tessera/pkg/plugins/perprofile"
)

// Name is the plugin's name in the registry and in profiles.
const Name = "NVLinkTopology"

// topologyResource is how the scheduler names GPUNodeTopology events; it
// watches the resource dynamically for plugins that register it.
const topologyResource fwk.EventResource = "gpunodetopologies.v1alpha1.tessera.dev"

// NVLinkTopology is the plugin.
type NVLinkTopology struct {
	handle     fwk.Handle
	args       *configv1alpha1.NVLinkTopologyArgs
	topologies *topologyStore
	reserved   *reservations
	// claims reads the pods' ResourceClaims; nil without DRA.
	claims claimReader
	clock  clock.Clock
	// pickers holds the profile's SharePicker, if another plugin offers one.
	pickers *SharePickers
}

// SharePickers links each profile's NVLinkTopology plugin to the
// SharePicker of the same profile (the GPUFragmentation plugin).
type SharePickers = perprofile.Links[SharePicker]

// NewSharePickers returns an empty set.
func NewSharePickers() *SharePickers { return perprofile.New[SharePicker]() }

var (
	_ fwk.PreFilterPlugin   = &NVLinkTopology{}
	_ fwk.FilterPlugin      = &NVLinkTopology{}
	_ fwk.PreScorePlugin    = &NVLinkTopology{}
	_ fwk.ScorePlugin       = &NVLinkTopology{}
	_ fwk.ReservePlugin     = &NVLinkTopology{}
	_ fwk.BindPlugin        = &NVLinkTopology{}
	_ fwk.SignPlugin        = &NVLinkTopology{}
	_ fwk.EnqueueExtensions = &NVLinkTopology{}
	_ gang.NodeOrderer      = &NVLinkTopology{}
)

// Ledger is what one scheduler process knows of its nodes' GPUs: the
// published topologies, with each node's cached answers, and the GPUs the
// process reserved. The framework builds one plugin per profile; all of
// them share one Ledger, so that a pod reserved by one profile (a gang
// member, for its whole wait at Permit) holds its GPUs for every other, and
// no two profiles hand out the same GPU.
type Ledger struct {
	once       sync.Once
	started    error
	topologies *topologyStore
	reserved   *reservations
}

// NewLedger returns the ledger of one scheduler process.
func NewLedger() *Ledger {
	return &Ledger{topologies: newTopologyStore(), reserved: newReservations()}
}

// start feeds the ledger's topologies and drops reservations of deleted
// pods, once for the process; later profiles get the first one's outcome.
func (l *Ledger) start(ctx context.Context, handle fwk.Handle, feed TopologyFeed) error {
	l.once.Do(func() {
		logger := klog.FromContext(ctx)
		upsert := func(t *tesserav1alpha1.GPUNodeTopology) { l.topologies.update(logger, t) }
		if err := feed(ctx, handle, upsert, l.topologies.delete); err != nil {
			l.started = err
			return
		}
		// A reservation stands until its pod is gone (see reservations).
		_, err := handle.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj any) {
				if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if pod, ok := obj.(*v1.Pod); ok {
					l.reserved.remove(pod.UID)
				}
			},
		})
		if err != nil {
			l.started = fmt.Errorf("watching pod deletions: %w", err)
		}
	})
	return l.started
}

// Factory returns the plugin's constructor. Every profile's plugin shares
// ledger. offer is called with each profile's plugin, to link it to other
// plugins of that profile (the Gang plugin's node order, GPUFragmentation's
// GPU accounting). pickers supply the profile's SharePicker, if any.
func Factory(ledger *Ledger, offer func(fwk.Handle, *NVLinkTopology), pickers *SharePickers) func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) {
	return FactoryWithFeed(WatchTopologies, ledger, offer, pickers)
}

// FactoryWithFeed is Factory with the topologies read from feed.
func FactoryWithFeed(feed TopologyFeed, ledger *Ledger, offer func(fwk.Handle, *NVLinkTopology), pickers *SharePickers) func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) {
	return func(ctx context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		pl, err := newPlugin(ctx, obj, handle, ledger, feed)
		if err != nil {
			return nil, err
		}
		pl.pickers = pickers
		offer(handle, pl)
		return pl, nil
	}
}

// newPlugin builds the plugin. Invalid args, or a feed that fails (a
// cluster without the GPUNodeTopology CRD), fail scheduler start-up.
func newPlugin(ctx context.Context, obj runtime.Object, handle fwk.Handle, ledger *Ledger, feed TopologyFeed) (*NVLinkTopology, error) {
	args, err := configv1alpha1.DecodeNVLinkTopologyArgs(obj)
	if err != nil {
		return nil, err
	}
	if err := ledger.start(ctx, handle, feed); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", Name, err)
	}
	return &NVLinkTopology{
		handle:     handle,
		args:       args,
		topologies: ledger.topologies,
		reserved:   ledger.reserved,
		claims:     claimReaderOf(handle),
		clock:      clock.RealClock{},
	}, nil
}

// holders are what the plugin knows pods hold beyond their own records.
func (pl *NVLinkTopology) holders() holders {
	return holders{reserved: pl.reserved, claims: pl.claims}
}

// Name returns the plugin's name.
func (pl *NVLinkTopology) Name() string { return Name }

// EventsToRegister lists the changes that can make a rejected pod fit:
// GPUs freed by a pod leaving, nodes added or resized, and topology
// published or changed (a GPU healthy again, a node's first report).
func (pl *NVLinkTopology) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable}},
		{Event: fwk.ClusterEvent{Resource: topologyResource, ActionType: fwk.Add | fwk.Update}},
	}, nil
}

// SignPod lets the scheduler reuse one pod's filter and score results for
// the next pod of the same signature: the plugin's results depend only on
// the node and on the pod's GPU count, share, models and locality.
func (pl *NVLinkTopology) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	if len(pod.Spec.ResourceClaims) > 0 {
		// As DynamicResources: what a claim asks is not in the pod.
		return nil, fwk.NewStatus(fwk.Unschedulable, "pods with resource claims are not signable")
	}
	req, err := podRequest(pod, pl.args.DefaultLocality, nil)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
	}
	// Fragments are JSON-encoded: the value's fields must be exported.
	return []fwk.SignFragment{{Key: Name, Value: struct {
		GPUs       int
		Milli      int64
		Models     string
		IslandOnly bool
	}{req.gpus, req.milli, req.models, req.islandOnly}}}, nil
}

// usable returns the node's state if its topology is published, readable
// and fresh at now, else nil and why not.
func (pl *NVLinkTopology) usable(node string, now time.Time) (*nodeState, string) {
	st := pl.topologies.get(node)
	switch {
	case st == nil:
		return nil, "no GPUNodeTopology published"
	case st.gpus == nil:
		return nil, st.unreadable
	}
	staleAfter := time.Duration(*pl.args.TopologyStaleAfterSeconds) * time.Second
	if !st.heartbeat.IsZero() && now.Sub(st.heartbeat) <= staleAfter {
		return st, ""
	}
	if why, stale := st.gpus.Stale(now, staleAfter); stale {
		return nil, why
	}
	return st, ""
}
