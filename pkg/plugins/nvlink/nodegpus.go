package nvlink

import (
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// choose picks the GPUs for req on node n given how its GPUs are held: for
// a share, the GPU of an allowed model that fits it most tightly (see
// Usage.PickShare); for whole GPUs, the best set of idle GPUs of an allowed
// model. False if the node cannot serve req.
func choose(n *published.Node, used topology.Usage, req request) (topology.Choice, bool) {
	if req.shared() {
		p, ok := used.PickShare(n.Healthy(req.models), req.milli)
		if !ok {
			return topology.Choice{}, false
		}
		return topology.Choice{GPUs: []int{p}}, true
	}
	return n.BestSet(n.Idle(used, req.models), req.gpus, req.islandOnly)
}
