package gang

import (
	"cmp"
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/plugins/perprofile"
)

// NodeOrderer ranks nodes for a gang's plan. The planner tries the nodes in
// the order returned (after the nodes already holding gang members) and
// takes the first that passes the filters, so the order decides which
// racks and NVLink domains a gang lands in. OrderGangNodes gets the gang's
// pending members and the nodes as the plan sees them, and must return
// every position in nodes exactly once.
type NodeOrderer interface {
	OrderGangNodes(pods []*v1.Pod, nodes []fwk.NodeInfo) []int
}

// Orderers connects each profile's Gang plugin to the NodeOrderer another
// plugin of the same profile provides (the NVLinkTopology plugin).
type Orderers = perprofile.Links[NodeOrderer]

// NewOrderers returns an empty set.
func NewOrderers() *Orderers { return perprofile.New[NodeOrderer]() }

// fullestFirst is the order without an orderer: nodes with the least free
// extended resources (GPUs) first, packing the gang tightly.
func fullestFirst(nodes []fwk.NodeInfo) []int {
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	free := make([]int64, len(nodes))
	for i, n := range nodes {
		free[i] = freeScalar(n)
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(free[a], free[b]) })
	return order
}
