package nvlink

import (
	"cmp"
	"maps"
	"math"
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/podgpu"
)

// OrderGangNodes ranks nodes for a gang's plan. For each topology key,
// narrowest first (NVLink clique, rack, block), it looks for domains —
// nodes sharing the key's label value — whose free GPUs can hold every
// pending member, and puts first the nodes of the one whose slowest node
// offers the largest member the fastest GPU set (a ring all-reduce over
// the gang runs at its slowest hop: a rack of NVLink-bridged pairs holds a
// gang of whole nodes as well as a rack of NVSwitch nodes, at a fraction
// of the bandwidth), and of those the tightest. When no
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
		best, bestFree, bestGBps := "", 0, 0.0
		for _, name := range slices.Sorted(maps.Keys(domains)) {
			members := domains[name]
			if !holds(free, members, sizes) {
				continue
			}
			total, gbps := sumOf(free, members), pl.slowestIdleSet(nodes, members, free, sizes[0])
			if best == "" || gbps > bestGBps || gbps == bestGBps && total < bestFree {
				best, bestFree, bestGBps = name, total, gbps
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

// slowestIdleSet is the lowest bottleneck bandwidth, over the domain's
// nodes with k GPUs free, of the best k GPUs of an idle node of its
// topology: what the domain can offer a member of k GPUs. A node without a
// usable topology offers 0 (unknown), as does any node for k = 1.
func (pl *NVLinkTopology) slowestIdleSet(nodes []fwk.NodeInfo, members, free []int, k int) float64 {
	slowest, now := math.Inf(1), pl.clock.Now()
	for _, m := range members {
		if free[m] < k {
			continue
		}
		gbps := 0.0
		if st, _ := pl.usable(nodes[m].Node().Name, now); st != nil {
			gbps = st.idleBest(k)
		}
		slowest = min(slowest, gbps)
	}
	if math.IsInf(slowest, 1) {
		return 0
	}
	return slowest
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
