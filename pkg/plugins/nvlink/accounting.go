package nvlink

import (
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
)

// FreeGPUMilli returns how much of each healthy GPU on the node is free, in
// milli-GPUs, and the node's GPU model, by the same accounting Filter and
// Reserve use; false when the node has no usable topology (or pods whose
// GPUs are not known do not fit on it). The GPUFragmentation plugin scores
// nodes from it.
func (pl *NVLinkTopology) FreeGPUMilli(info fwk.NodeInfo) (free []int64, model string, ok bool) {
	st, _ := pl.usable(info.Node().Name, pl.clock.Now())
	if st == nil {
		return nil, "", false
	}
	e := st.entry(info, pl.holders())
	return st.freeGPUMilli(e.used, e.fits)
}

// FreeGPUMilliUncached is FreeGPUMilli for a NodeInfo built outside a
// scheduling cycle (the GPU metrics, at each scrape): it leaves the node's
// cached entry, which the cycles reuse, alone.
func (pl *NVLinkTopology) FreeGPUMilliUncached(info fwk.NodeInfo) (free []int64, model string, ok bool) {
	st, _ := pl.usable(info.Node().Name, pl.clock.Now())
	if st == nil {
		return nil, "", false
	}
	return st.freeGPUMilli(useOf(st.gpus, info, pl.holders()))
}

// freeGPUMilli is what is free of each healthy GPU under used.
func (st *nodeState) freeGPUMilli(used topology.Usage, fits bool) (free []int64, model string, ok bool) {
	if !fits {
		return nil, "", false
	}
	for _, p := range st.gpus.Healthy("") {
		free = append(free, used.Free(p))
	}
	return free, st.gpus.Topo.Model(), true
}

// SharePicker chooses the GPU for a share of one GPU on a node: given each
// GPU's free milli-GPUs (by position; unhealthy GPUs have none) and the
// positions with room for the pod's share, it returns one of candidates.
// The GPUFragmentation plugin offers one, choosing by the workload mix;
// without it the share goes to the GPU it fits most tightly.
type SharePicker interface {
	PickShareGPU(pod *v1.Pod, info fwk.NodeInfo, freeMilli []int64, candidates []int) int
}

// pickShare returns the GPU position for the pod's share on the node:
// the profile's SharePicker's choice among the GPUs with room, or
// tightest, the search's choice.
func (pl *NVLinkTopology) pickShare(pod *v1.Pod, info fwk.NodeInfo, st *nodeState, req request, tightest int) int {
	picker, ok := pl.pickers.Get(pl.handle)
	if !ok || picker == nil {
		return tightest
	}
	e := st.entry(info, pl.holders())
	free := make([]int64, len(st.gpus.Topo.GPUs))
	for p, g := range st.gpus.Topo.GPUs {
		if g.Healthy {
			free[p] = e.used.Free(p)
		}
	}
	var candidates []int
	for _, p := range st.gpus.Healthy(req.models) {
		if free[p] >= req.milli {
			candidates = append(candidates, p)
		}
	}
	if p := picker.PickShareGPU(pod, info, free, candidates); slices.Contains(candidates, p) {
		return p
	}
	return tightest
}
