package nvlink

import (
	"cmp"
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/podgpu"
)

// OrderGangNodes ranks nodes for a gang's plan. For each topology key,
// narrowest first (NVLink clique, rack, block), it looks for domains —
// nodes sharing the key's label value — whose free GPUs can hold every
// pending member, and puts the tightest such domain's nodes first. When no
// domain of any key holds the gang, it orders the domains of the broadest
// key by free GPUs, most first, so the gang spans as few as it can. Within a
// domain, and for the nodes after it, the fullest nodes come first, so the
// gang also uses as few nodes as it can.
func (pl *NVLinkTopology) OrderGangNodes(pods []*v1.Pod, nodes []fwk.NodeInfo) []int {
	free := make([]int, len(nodes))
	for i, n := range nodes {
		free[i] = freeGPUCount(n)
	}
	base := make([]int, len(nodes))
	for i := range base {
		base[i] = i
	}
	slices.SortStableFunc(base, func(a, b int) int { return cmp.Compare(free[a], free[b]) })

	var sizes []int
	for _, p := range pods {
		if k := podgpu.WholeGPUs(p); k > 0 {
			sizes = append(sizes, k)
		}
	}
	keys := pl.args.GangTopologyKeys
	if len(sizes) == 0 || len(keys) == 0 {
		return base
	}
	slices.SortFunc(sizes, func(a, b int) int { return b - a })

	broadest := ""
	for _, key := range keys {
		domains := groupByLabel(nodes, base, key)
		if len(domains) == 0 {
			continue
		}
		broadest = key
		best, bestFree := "", 0
		for _, name := range slices.Sorted(maps.Keys(domains)) {
			members := domains[name]
			total := sumOf(free, members)
			if (best == "" || total < bestFree) && holds(free, members, sizes) {
				best, bestFree = name, total
			}
		}
		if best != "" {
			return firstThenRest(base, domains[best])
		}
	}
	if broadest == "" {
		return base
	}
	domains := groupByLabel(nodes, base, broadest)
	names := slices.Sorted(maps.Keys(domains))
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Compare(sumOf(free, domains[b]), sumOf(free, domains[a]))
	})
	var first []int
	for _, name := range names {
		first = append(first, domains[name]...)
	}
	return firstThenRest(base, first)
}

// freeGPUCount is a node's unrequested nvidia.com/gpu.
func freeGPUCount(n fwk.NodeInfo) int {
	return int(n.GetAllocatable().GetScalarResources()[ResourceGPU] - n.GetRequested().GetScalarResources()[ResourceGPU])
}

// groupByLabel groups the positions in order by their node's value of key;
// nodes without the label belong to no domain.
func groupByLabel(nodes []fwk.NodeInfo, order []int, key string) map[string][]int {
	domains := map[string][]int{}
	for _, i := range order {
		if v, ok := nodes[i].Node().Labels[key]; ok && v != "" {
			domains[v] = append(domains[v], i)
		}
	}
	return domains
}

// holds reports whether GPU requests of sizes (largest first) fit into the
// free counts of members, each into the fullest node with room.
func holds(free, members, sizes []int) bool {
	room := make([]int, len(members))
	for i, m := range members {
		room[i] = free[m]
	}
	for _, k := range sizes {
		best := -1
		for i, r := range room {
			if r >= k && (best < 0 || r < room[best]) {
				best = i
			}
		}
		if best < 0 {
			return false
		}
		room[best] -= k
	}
	return true
}

func sumOf(free, members []int) int {
	total := 0
	for _, m := range members {
		total += free[m]
	}
	return total
}

// firstThenRest returns first, then the positions of base not in first.
func firstThenRest(base, first []int) []int {
	in := make(map[int]bool, len(first))
	for _, i := range first {
		in[i] = true
	}
	out := slices.Clone(first)
	for _, i := range base {
		if !in[i] {
			out = append(out, i)
		}
	}
	return out
}
