// Package claimorder is the TesseraDynamicResources plugin: kube-scheduler's
// DynamicResources plugin, unchanged, made to allocate the GPUs the
// NVLinkTopology plugin of the same profile chooses.
//
// The upstream allocator takes the first solution it finds, walking each
// node's ResourceSlices in their listed order, and has no hook to say which
// devices. So this plugin gives it its own copy of the slices of Tessera's
// driver each scheduling cycle, and before it filters a node it lists that
// node's devices with NVLinkTopology's choice first: the first solution is
// then Tessera's, wherever the claim's own constraints allow it.
// TestUpstreamAllocatorTakesDevicesInSliceOrder (pkg/dra) pins that the
// allocator takes listed devices in order. After the claims are written, the
// pod's tessera.dev/gpu-ids is made to name exactly what they were
// allocated, and any difference from the choice is counted and reported.
package claimorder

import (
	"context"
	"fmt"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/plugins/nvlink"
	"tessera.dev/tessera/pkg/plugins/perprofile"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology/published"
)

// Name is the plugin's name in the registry and in profiles, which enable
// it in place of DynamicResources.
const Name = "TesseraDynamicResources"

const viewKey fwk.StateKey = Name + "/slices"

// GPUChooser is what the plugin asks of the profile's NVLinkTopology.
type GPUChooser interface {
	// ChosenGPUs are the NVML indexes of the GPUs it would reserve for the
	// pod on the node; false where it chooses none.
	ChosenGPUs(state fwk.CycleState, pod *v1.Pod, info fwk.NodeInfo) ([]int, bool)
	// TakeAllocation makes the allocated GPUs the pod's assignment and
	// returns what it had reserved, and whether that was the same.
	TakeAllocation(pod *v1.Pod, node string, allocated []published.Holding) (reserved []int, same bool)
}

var _ GPUChooser = &nvlink.NVLinkTopology{}

// Choosers links each profile's plugin to its NVLinkTopology.
type Choosers = perprofile.Links[GPUChooser]

// NewChoosers returns an empty set.
func NewChoosers() *Choosers { return perprofile.New[GPUChooser]() }

// Plugin is DynamicResources with Tessera's GPUs listed first.
type Plugin struct {
	*dynamicresources.DynamicResources
	handle   fwk.Handle
	choosers *Choosers
	slices   *cycleSlices
	// preFilter serialises PreFilter, which hands the slices it listed to
	// the cycle: DynamicResources lists them without saying for which pod.
	preFilter sync.Mutex
}

var (
	_ fwk.PreFilterPlugin = &Plugin{}
	_ fwk.FilterPlugin    = &Plugin{}
	_ fwk.PreBindPlugin   = &Plugin{}
)

// Factory returns the plugin's constructor. It takes DynamicResources' own
// arguments (DynamicResourcesArgs), with the same defaults. Every profile
// shares choosers and inFlight.
func Factory(choosers *Choosers, inFlight *InFlightClaims) func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) {
	return func(ctx context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		args, err := decodeArgs(obj)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", Name, err)
		}
		pl := &Plugin{handle: handle, choosers: choosers}
		inner := handle
		if m := handle.SharedDRAManager(); m != nil {
			pl.slices = &cycleSlices{upstream: m.ResourceSlices()}
			inner = withSlices{Handle: handle, dra: draManager{SharedDRAManager: m, slices: pl.slices, inFlight: inFlight}}
		}
		fts := plfeature.NewSchedulerFeaturesFromGates(featureGate())
		p, err := dynamicresources.New(ctx, args, inner, fts)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", Name, err)
		}
		pl.DynamicResources = p.(*dynamicresources.DynamicResources)
		registerMetrics(handle.ProfileName())
		return pl, nil
	}
}

// Name returns the plugin's name.
func (pl *Plugin) Name() string { return Name }

// PreFilter is DynamicResources' PreFilter; the slices it listed for the
// allocator become the cycle's, to reorder node by node.
func (pl *Plugin) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if pl.slices == nil {
		return pl.DynamicResources.PreFilter(ctx, state, pod, nodes)
	}
	pl.preFilter.Lock()
	defer pl.preFilter.Unlock()
	pl.slices.arm()
	result, status := pl.DynamicResources.PreFilter(ctx, state, pod, nodes)
	if v := pl.slices.take(); v != nil && status.IsSuccess() {
		state.Write(viewKey, v)
	}
	return result, status
}

// Filter lists the node's devices of Tessera's driver with NVLinkTopology's
// choice for the pod first, then lets DynamicResources allocate.
func (pl *Plugin) Filter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, info fwk.NodeInfo) *fwk.Status {
	if data, err := state.Read(viewKey); err == nil {
		var ids []int // none chosen: the devices as published
		if chooser, ok := pl.choosers.Get(pl.handle); ok {
			ids, _ = chooser.ChosenGPUs(state, pod, info)
		}
		data.(*sliceView).putFirst(info.Node().Name, ids)
	}
	return pl.DynamicResources.Filter(ctx, state, pod, info)
}

// PreBind is DynamicResources' PreBind, which writes the claims'
// allocations; then the GPUs of Tessera's driver they name on the node
// become the pod's assignment, which its binding records as
// tessera.dev/gpu-ids. Where that is not what NVLinkTopology chose, the
// pod gets a warning event and
// tessera_dra_allocation_disagreements_total counts it.
func (pl *Plugin) PreBind(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	if status := pl.DynamicResources.PreBind(ctx, state, pod, nodeName); !status.IsSuccess() {
		return status
	}
	chooser, ok := pl.choosers.Get(pl.handle)
	if !ok || pl.slices == nil || !pl.mayClaimGPUs(pod, nodeName) {
		return nil
	}
	claims, err := pl.reservedFor(ctx, pod)
	if err != nil {
		return fwk.AsStatus(err)
	}
	allocated, ok := nvlink.AllocatedGPUs(claims, nodeName)
	if !ok {
		return nil
	}
	if chosen, same := chooser.TakeAllocation(pod, nodeName, allocated); !same {
		ids := make([]int, len(allocated))
		for i, h := range allocated {
			ids[i] = h.Index
		}
		disagreements.WithLabelValues(pl.handle.ProfileName()).Inc()
		pl.handle.EventRecorder().Eventf(pod, nil, v1.EventTypeWarning, "GPUAllocationDiffers", "Scheduling",
			"node %s: the claims were allocated GPUs %s, not the %s Tessera chose (a claim's selectors or constraints ruled them out); %s records the allocation",
			nodeName, tesserav1alpha1.FormatGPUIDs(ids), tesserav1alpha1.FormatGPUIDs(chosen), tesserav1alpha1.AnnotationGPUIDs)
		klog.FromContext(ctx).V(2).Info("Claims allocated other GPUs than chosen", "pod", klog.KObj(pod), "node", nodeName, "allocated", ids, "chosen", chosen)
	}
	return nil
}

// mayClaimGPUs reports whether the pod can hold GPUs through claims on the
// node: it has claims, or asks for nvidia.com/gpu on a node that does not
// advertise it (DynamicResources then made it a claim).
func (pl *Plugin) mayClaimGPUs(pod *v1.Pod, node string) bool {
	if len(pod.Spec.ResourceClaims) > 0 {
		return true
	}
	if podgpu.WholeGPUs(pod) == 0 {
		return false
	}
	// PreBind runs beside the next scheduling cycle, which owns the
	// snapshot: the node comes from the informer.
	n, err := pl.handle.SharedInformerFactory().Core().V1().Nodes().Lister().Get(node)
	if err != nil {
		return true
	}
	q, ok := n.Status.Allocatable[podgpu.ResourceGPU]
	return !ok || q.IsZero()
}

// reservedFor returns the claims reserved for the pod, as the scheduler's
// claim tracker has them: DynamicResources' PreBind has just written them,
// including the claim it made for the pod's extended resources, whose name
// the pod does not show yet. Where the tracker has none (its copy could not
// be updated), they are read from the apiserver.
func (pl *Plugin) reservedFor(ctx context.Context, pod *v1.Pod) ([]*resourceapi.ResourceClaim, error) {
	all, err := pl.handle.SharedDRAManager().ResourceClaims().List()
	if err != nil {
		return nil, fmt.Errorf("listing resource claims: %w", err)
	}
	if out := reservedForPod(all, pod); len(out) > 0 {
		return out, nil
	}
	list, err := pl.handle.ClientSet().ResourceV1().ResourceClaims(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the resource claims of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	claims := make([]*resourceapi.ResourceClaim, len(list.Items))
	for i := range list.Items {
		claims[i] = &list.Items[i]
	}
	return reservedForPod(claims, pod), nil
}

// reservedForPod are the claims of the pod's namespace reserved for it.
func reservedForPod(claims []*resourceapi.ResourceClaim, pod *v1.Pod) []*resourceapi.ResourceClaim {
	var out []*resourceapi.ResourceClaim
	for _, c := range claims {
		if c.Namespace == pod.Namespace && slices.ContainsFunc(c.Status.ReservedFor, func(r resourceapi.ResourceClaimConsumerReference) bool {
			return r.UID == pod.UID
		}) {
			out = append(out, c)
		}
	}
	return out
}
