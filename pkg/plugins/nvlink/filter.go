package nvlink

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
)

// PreFilter reads the pod's GPU request and locality; pods without GPUs
// skip the plugin. A malformed locality annotation makes the pod
// unschedulable with a message naming the annotation.
func (pl *NVLinkTopology) PreFilter(_ context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	req, err := podRequest(pod, pl.args.DefaultLocality, pl.claims)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
	}
	if req.gpus == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	state.Write(stateKey, &cycleState{request: *req, now: pl.clock.Now(), nodes: len(nodes)})
	return nil, nil
}

// PreFilterExtensions is nil: Filter reads the node's pods directly.
func (pl *NVLinkTopology) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter keeps nodes whose free healthy GPUs can serve the pod. A node
// without a fresh topology passes by count alone (NodeResourcesFit counts)
// unless the profile says otherwise, or the pod needs what only a topology
// shows (one NVLink island, a share of a GPU, a GPU model). Messages leave
// the node out, so that the scheduler can sum them up over nodes.
func (pl *NVLinkTopology) Filter(_ context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.NodeInfo) *fwk.Status {
	req, err := readState(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	n, _ := pl.usable(info.Node().Name, req.now)
	if n == nil {
		switch {
		case req.islandOnly:
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "no GPU topology published, so NVLink-island locality cannot be met")
		case req.shared():
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "no GPU topology published, so GPU shares cannot be accounted")
		case req.models != "":
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "no GPU topology published, so GPU models cannot be checked")
		case pl.args.MissingTopology == configv1alpha1.MissingTopologyUnschedulable:
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "no fresh GPU topology published")
		}
		req.remember(info, 0) // passed by count alone: Score ranks it 0
		return nil
	}
	if _, raw, found := n.bestSet(info, pl.holders(), req.request); found {
		req.remember(info, raw)
		return nil
	}
	why := n.whyNot(n.entry(info, pl.holders()), req.request)
	if listed, counted := len(n.gpus.Topo.GPUs), gpuAllocatable(info); counted >= 0 && listed != counted {
		why = fmt.Sprintf("%s (GPUNodeTopology lists %d GPUs, the node's %s allocatable is %d)", why, listed, podgpu.ResourceGPU, counted)
	}
	return fwk.NewStatus(fwk.Unschedulable, why)
}

// gpuAllocatable is the node's nvidia.com/gpu allocatable, -1 if it has none.
func gpuAllocatable(info fwk.NodeInfo) int {
	q, ok := info.Node().Status.Allocatable[podgpu.ResourceGPU]
	if !ok {
		return -1
	}
	return int(q.Value())
}

// whyNot says why the node cannot serve req.
func (st *nodeState) whyNot(e *cachedNode, req request) string {
	of := ""
	if req.models != "" {
		of = " of model " + req.models
	}
	switch {
	case !e.fits:
		return "too few free healthy GPUs"
	case req.shared():
		return fmt.Sprintf("no healthy GPU%s with %d free milli-GPUs", of, req.milli)
	case len(st.gpus.Idle(e.used, req.models)) < req.gpus:
		return "too few free healthy GPUs" + of
	default:
		return fmt.Sprintf("no NVLink island with %d free healthy GPUs%s", req.gpus, of)
	}
}
