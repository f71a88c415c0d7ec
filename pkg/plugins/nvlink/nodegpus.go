package nvlink

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// nodeGPUs is one node's published GPU topology, read back into the model
// the search runs on. Positions in topo.GPUs are not NVML indexes: index
// and position translate between them.
type nodeGPUs struct {
	topo     *topology.Topology
	position map[int]int
	// island numbers each GPU position's NVLink island.
	island []int
	// fastestPairGBps is the best bandwidth between any two GPUs of the
	// node, the yardstick for what a set leaves free.
	fastestPairGBps float64
	heartbeat       time.Time
	// heldBy are the GPU positions the kubelet reports each pod holding.
	heldBy map[types.NamespacedName][]int
}

// fromStatus builds a node's GPUs from its GPUNodeTopology status. A status
// that contradicts itself (a link to a GPU it does not list) is an error:
// the node is then treated as having no topology, never trusted half-read.
func fromStatus(st *tesserav1alpha1.GPUNodeTopologyStatus, heartbeat time.Time) (*nodeGPUs, error) {
	gpus := make([]topology.GPU, 0, len(st.Devices))
	position := make(map[int]int, len(st.Devices))
	for _, d := range st.Devices {
		if _, dup := position[int(d.Index)]; dup {
			return nil, fmt.Errorf("GPU index %d listed twice", d.Index)
		}
		position[int(d.Index)] = len(gpus)
		gpus = append(gpus, topology.GPU{
			Index:    int(d.Index),
			Identity: topology.Identity{UUID: d.UUID, Model: d.Model},
			Healthy:  d.Healthy,
		})
	}
	n := &nodeGPUs{topo: topology.New(gpus), position: position, heartbeat: heartbeat}
	for _, l := range st.Links {
		a, okA := position[int(l.A)]
		b, okB := position[int(l.B)]
		if !okA || !okB || a == b {
			return nil, fmt.Errorf("link %d-%d names a GPU not listed", l.A, l.B)
		}
		typ, err := topology.ParseLinkType(string(l.Type))
		if err != nil {
			return nil, fmt.Errorf("link %d-%d: %w", l.A, l.B, err)
		}
		gbps := float64(l.BandwidthGBps)
		n.topo.SetLinkBandwidth(a, b, topology.Link{Type: typ, NVLinks: int(l.NVLinks)}, gbps)
		n.fastestPairGBps = max(n.fastestPairGBps, gbps)
	}
	for _, h := range st.Holders {
		p, ok := position[int(h.Index)]
		if !ok {
			return nil, fmt.Errorf("holder %s/%s of GPU %d, which is not listed", h.Namespace, h.Pod, h.Index)
		}
		if n.heldBy == nil {
			n.heldBy = map[types.NamespacedName][]int{}
		}
		key := types.NamespacedName{Namespace: h.Namespace, Name: h.Pod}
		n.heldBy[key] = append(n.heldBy[key], p)
	}
	n.island = make([]int, len(gpus))
	for i, members := range n.topo.Islands() {
		for _, pos := range members {
			n.island[pos] = i
		}
	}
	return n, nil
}

// positions translates NVML indexes to positions, leaving out unknown ones.
func (n *nodeGPUs) positions(indexes []int) []int {
	out := make([]int, 0, len(indexes))
	for _, i := range indexes {
		if p, ok := n.position[i]; ok {
			out = append(out, p)
		}
	}
	return out
}

// indexes translates positions to NVML indexes.
func (n *nodeGPUs) indexes(positions []int) []int {
	out := make([]int, len(positions))
	for i, p := range positions {
		out[i] = n.topo.GPUs[p].Index
	}
	slices.Sort(out)
	return out
}

// largestIslandFree is the most free GPUs that share one NVLink island.
func (n *nodeGPUs) largestIslandFree(free []int) int {
	counts := make([]int, len(n.island)) // island numbers are below the GPU count
	best := 0
	for _, p := range free {
		counts[n.island[p]]++
		best = max(best, counts[n.island[p]])
	}
	return best
}

// bestSet picks k GPUs among free, inside one NVLink island when
// islandOnly; false if no such set exists. Among islands it takes the
// fastest set, then the island left with the fewest free GPUs (best fit,
// so larger islands stay whole for larger pods).
func (n *nodeGPUs) bestSet(free []int, k int, islandOnly bool) (topology.Choice, bool) {
	if !islandOnly {
		return n.topo.BestSet(free, k)
	}
	byIsland := map[int][]int{}
	for _, p := range free {
		byIsland[n.island[p]] = append(byIsland[n.island[p]], p)
	}
	var best topology.Choice
	bestLeft, found := 0, false
	for _, island := range slices.Sorted(maps.Keys(byIsland)) {
		members := byIsland[island]
		c, ok := n.topo.BestSet(members, k)
		if !ok {
			continue
		}
		left := len(members) - k
		if !found || c.BottleneckGBps > best.BottleneckGBps || c.BottleneckGBps == best.BottleneckGBps && left < bestLeft {
			best, bestLeft, found = c, left, true
		}
	}
	return best, found
}

// healthy returns the positions of the node's healthy GPUs of an allowed
// model (models comma-joined; "" allows any).
func (n *nodeGPUs) healthy(models string) []int {
	out := make([]int, 0, len(n.topo.GPUs))
	for p, g := range n.topo.GPUs {
		if g.Healthy && allowsModel(models, g.Model) {
			out = append(out, p)
		}
	}
	return out
}

// idle returns the healthy GPUs of an allowed model that no pod holds any
// part of: the GPUs that can be given whole.
func (n *nodeGPUs) idle(used topology.Usage, models string) []int {
	out := make([]int, 0, len(n.topo.GPUs))
	for p, g := range n.topo.GPUs {
		if g.Healthy && used.Idle(p) && allowsModel(models, g.Model) {
			out = append(out, p)
		}
	}
	return out
}

// allowsModel reports whether model is in the comma-joined list models; an
// empty list allows any model.
func allowsModel(models, model string) bool {
	if models == "" {
		return true
	}
	for rest := models; rest != ""; {
		var m string
		m, rest, _ = strings.Cut(rest, ",")
		if m == model {
			return true
		}
	}
	return false
}

// choose picks the GPUs for req given how the node's GPUs are held: for a
// share, the GPU of an allowed model that fits it most tightly (see
// Usage.PickShare); for whole GPUs, the best set of idle GPUs of an allowed
// model. False if the node cannot serve req.
func (n *nodeGPUs) choose(used topology.Usage, req request) (topology.Choice, bool) {
	if req.shared() {
		p, ok := used.PickShare(n.healthy(req.models), req.milli)
		if !ok {
			return topology.Choice{}, false
		}
		return topology.Choice{GPUs: []int{p}}, true
	}
	return n.bestSet(n.idle(used, req.models), req.gpus, req.islandOnly)
}
