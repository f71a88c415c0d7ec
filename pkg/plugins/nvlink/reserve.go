package nvlink

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology/published"
)

// Reserve picks the exact GPUs for the pod on its node, from the same
// search as Score, over the GPUs no other pod holds. On a node without a
// usable topology the device plugin picks, and the pod gets a warning event
// that says so.
func (pl *NVLinkTopology) Reserve(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	req, err := readState(state)
	if err != nil {
		return nil // PreFilter skipped: the pod asks for no GPUs.
	}
	st, why := pl.usable(nodeName, req.now)
	if st == nil {
		pl.handle.EventRecorder().Eventf(pod, nil, v1.EventTypeWarning, "GPUTopologyUnknown", "Scheduling",
			"Node %s: %s; its %d GPU(s) are chosen by the device plugin, by count only", nodeName, why, req.gpus)
		return nil
	}
	info, err := pl.handle.SnapshotSharedLister().NodeInfos().Get(nodeName)
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("reading node %s: %w", nodeName, err))
	}
	var ids []int
	var bottleneck float64
	if shown, ok := req.shown(nodeName, info, st); ok {
		ids = shown // what the DRA allocator was shown first, for this state
	} else if ids, bottleneck, ok = pl.choose(pod, info, st, req.request); !ok {
		return fwk.NewStatus(fwk.Unschedulable, "too few free healthy GPUs")
	}
	a := newAssignment(nodeName, ids, req.milli)
	if brought, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]; ok && brought != a.annotation {
		pl.handle.EventRecorder().Eventf(pod, nil, v1.EventTypeWarning, "GPUIDsReplaced", "Scheduling",
			"annotation %s=%q is the scheduler's to write: it is ignored and replaced by the GPUs chosen, %s", tesserav1alpha1.AnnotationGPUIDs, brought, a.annotation)
	}
	pl.reserved.set(pod.UID, a)
	klog.FromContext(ctx).V(3).Info("Reserved GPUs", "pod", klog.KObj(pod), "node", nodeName, "gpus", ids, "bottleneckGBps", bottleneck)
	return nil
}

// choose returns the NVML indexes of the GPUs for req on the node, sorted
// (a share: the SharePicker's GPU), and their bottleneck bandwidth; false
// if the node cannot serve req.
func (pl *NVLinkTopology) choose(pod *v1.Pod, info fwk.NodeInfo, st *nodeState, req request) ([]int, float64, bool) {
	c, _, ok := st.bestSet(info, pl.holders(), req)
	if !ok {
		return nil, 0, false
	}
	if req.shared() {
		c.GPUs = []int{pl.pickShare(pod, info, st, req, c.GPUs[0])}
	}
	return st.gpus.Indexes(c.GPUs), c.BottleneckGBps, true
}

// Unreserve forgets the pod's GPUs.
func (pl *NVLinkTopology) Unreserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	pl.reserved.remove(pod.UID)
}

// Bind binds the pod with its GPUs recorded in the same request: the
// apiserver copies a Binding's annotations onto the pod, so no pod is ever
// bound without its assignment, nor annotated without being bound, and no
// extra write is spent. Pods this plugin chose no GPUs for are left to the
// next binder (DefaultBinder).
func (pl *NVLinkTopology) Bind(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	a, ok := pl.reserved.get(pod.UID)
	if !ok || a.node != nodeName {
		return fwk.NewStatus(fwk.Skip)
	}
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			Annotations: map[string]string{tesserav1alpha1.AnnotationGPUIDs: a.annotation}},
		Target: v1.ObjectReference{Kind: "Node", Name: nodeName},
	}
	if cacher := pl.handle.APICacher(); cacher != nil {
		onFinish, err := cacher.BindPod(binding)
		if err != nil {
			return fwk.AsStatus(err)
		}
		return fwk.AsStatus(cacher.WaitOnFinish(ctx, onFinish))
	}
	if err := pl.handle.ClientSet().CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fwk.AsStatus(fmt.Errorf("binding with GPUs %s: %w", a.annotation, err))
	}
	return nil
}

// ChosenGPUs returns the NVML indexes of the GPUs Reserve would pick for the
// pod on the node now; false where the plugin picks none (the pod asks for
// no GPUs, or the node has no usable topology). TesseraDynamicResources
// shows them to the DRA allocator first, so the cycle remembers them for
// Reserve.
func (pl *NVLinkTopology) ChosenGPUs(state fwk.CycleState, pod *v1.Pod, info fwk.NodeInfo) ([]int, bool) {
	req, err := readState(state)
	if err != nil {
		return nil, false
	}
	node := info.Node().Name
	st, _ := pl.usable(node, req.now)
	if st == nil {
		return nil, false
	}
	epoch := st.epoch.Load()
	ids, _, ok := pl.choose(pod, info, st, req.request)
	if ok {
		req.chosen.Store(node, shownChoice{generation: info.GetGeneration(), epoch: epoch, ids: ids})
	} else {
		req.chosen.Delete(node)
	}
	return ids, ok
}

// TakeAllocation makes what the pod's claims were allocated on the node its
// assignment, which its binding records, so that tessera.dev/gpu-ids and
// the claims always agree. It returns the GPUs reserved before, and whether
// they were the same; a pod without a reservation is left alone.
func (pl *NVLinkTopology) TakeAllocation(pod *v1.Pod, node string, allocated []published.Holding) (reserved []int, same bool) {
	a, ok := pl.reserved.get(pod.UID)
	if !ok || a.node != node {
		return nil, true
	}
	if slices.Equal(a.held, allocated) {
		return a.indexes, true
	}
	next := assignmentOf(node, allocated)
	pl.reserved.set(pod.UID, next)
	// The node's cached use counted the old reservation, and no pod change
	// bumps its generation for this one. (GPUFragmentation's node views,
	// keyed by generation, keep the old use until the pod's bind bumps it:
	// a score, never an accounting.)
	if st := pl.topologies.get(node); st != nil {
		st.epoch.Add(1)
	}
	return a.indexes, slices.Equal(a.indexes, next.indexes)
}
