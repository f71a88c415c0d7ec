package nvlink

import (
	fwk "k8s.io/kube-scheduler/framework"
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
	e := st.entry(info, pl.reserved)
	if !e.fits {
		return nil, "", false
	}
	for _, p := range st.gpus.healthy("") {
		free = append(free, e.used.Free(p))
	}
	return free, st.gpus.topo.Model(), true
}
