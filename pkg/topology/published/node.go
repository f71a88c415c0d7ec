// Package published reads a node's GPUNodeTopology (what its node agent
// published) back into the search model of pkg/topology, and counts how the
// pods on the node hold its GPUs. The NVLinkTopology scheduler plugin and
// the launcher's topology-fit admission check both read nodes through it,
// so that "admitted" and "placeable" are decided by one search.
package published

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology"
)

// Node is one node's published GPU topology. Positions in Topo.GPUs are
// not NVML indexes: Positions and Indexes translate between them.
type Node struct {
	Topo     *topology.Topology
	position map[int]int
	// island numbers each GPU position's NVLink island.
	island []int
	// FastestPairGBps is the best bandwidth between any two GPUs of the
	// node, the yardstick for what a set leaves free.
	FastestPairGBps float64
	Heartbeat       time.Time
	// heldByUID are the GPU positions the kubelet reports each pod holding;
	// heldByName those of holders written without a pod UID.
	heldByUID  map[types.UID][]int
	heldByName map[types.NamespacedName][]int
}

// Read builds a node's GPUs from its GPUNodeTopology status. A status that
// contradicts itself (a link to a GPU it does not list) is an error: the
// node is then treated as having no topology, never trusted half-read.
func Read(st *tesserav1alpha1.GPUNodeTopologyStatus, heartbeat time.Time) (*Node, error) {
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
	n := &Node{Topo: topology.New(gpus), position: position, Heartbeat: heartbeat}
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
		n.Topo.SetLinkBandwidth(a, b, topology.Link{Type: typ, NVLinks: int(l.NVLinks)}, gbps)
		n.FastestPairGBps = max(n.FastestPairGBps, gbps)
	}
	for _, h := range st.Holders {
		p, ok := position[int(h.Index)]
		if !ok {
			return nil, fmt.Errorf("holder %s/%s of GPU %d, which is not listed", h.Namespace, h.Pod, h.Index)
		}
		if h.UID != "" {
			if n.heldByUID == nil {
				n.heldByUID = map[types.UID][]int{}
			}
			n.heldByUID[h.UID] = append(n.heldByUID[h.UID], p)
			continue
		}
		if n.heldByName == nil {
			n.heldByName = map[types.NamespacedName][]int{}
		}
		key := types.NamespacedName{Namespace: h.Namespace, Name: h.Pod}
		n.heldByName[key] = append(n.heldByName[key], p)
	}
	n.island = make([]int, len(gpus))
	for i, members := range n.Topo.Islands() {
		for _, pos := range members {
			n.island[pos] = i
		}
	}
	return n, nil
}

// Stale reports whether the topology is too old to trust at now, and why:
// it has no heartbeat, or its heartbeat is older than staleAfter. The
// scheduler and the launcher's topology-fit check both apply it, so that
// they trust the same topologies.
func (n *Node) Stale(now time.Time, staleAfter time.Duration) (string, bool) {
	if n.Heartbeat.IsZero() {
		return "GPUNodeTopology has no heartbeat", true
	}
	if age := now.Sub(n.Heartbeat); age > staleAfter {
		return fmt.Sprintf("GPUNodeTopology heartbeat is %s old", age.Round(time.Second)), true
	}
	return "", false
}

// Positions translates NVML indexes to positions, leaving out unknown ones.
func (n *Node) Positions(indexes []int) []int {
	out := make([]int, 0, len(indexes))
	for _, i := range indexes {
		if p, ok := n.position[i]; ok {
			out = append(out, p)
		}
	}
	return out
}

// Indexes translates positions to NVML indexes, sorted.
func (n *Node) Indexes(positions []int) []int {
	out := make([]int, len(positions))
	for i, p := range positions {
		out[i] = n.Topo.GPUs[p].Index
	}
	slices.Sort(out)
	return out
}

// Island returns the NVLink island number of a GPU position.
func (n *Node) Island(p int) int { return n.island[p] }

// LargestIslandFree is the most free GPUs that share one NVLink island.
func (n *Node) LargestIslandFree(free []int) int {
	counts := make([]int, len(n.island)) // island numbers are below the GPU count
	best := 0
	for _, p := range free {
		counts[n.island[p]]++
		best = max(best, counts[n.island[p]])
	}
	return best
}

// BestSet picks k GPUs among free, inside one NVLink island when
// islandOnly; false if no such set exists. Among islands it takes the
// fastest set, then the island left with the fewest free GPUs (best fit,
// so larger islands stay whole for larger pods).
func (n *Node) BestSet(free []int, k int, islandOnly bool) (topology.Choice, bool) {
	if !islandOnly {
		return n.Topo.BestSet(free, k)
	}
	byIsland := map[int][]int{}
	for _, p := range free {
		byIsland[n.island[p]] = append(byIsland[n.island[p]], p)
	}
	var best topology.Choice
	bestLeft, found := 0, false
	for _, island := range slices.Sorted(maps.Keys(byIsland)) {
		members := byIsland[island]
		c, ok := n.Topo.BestSet(members, k)
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

// Healthy returns the positions of the node's healthy GPUs of an allowed
// model (models comma-joined; "" allows any).
func (n *Node) Healthy(models string) []int {
	out := make([]int, 0, len(n.Topo.GPUs))
	for p, g := range n.Topo.GPUs {
		if g.Healthy && AllowsModel(models, g.Model) {
			out = append(out, p)
		}
	}
	return out
}

// Idle returns the healthy GPUs of an allowed model that no pod holds any
// part of: the GPUs that can be given whole.
func (n *Node) Idle(used topology.Usage, models string) []int {
	out := make([]int, 0, len(n.Topo.GPUs))
	for p, g := range n.Topo.GPUs {
		if g.Healthy && used.Idle(p) && AllowsModel(models, g.Model) {
			out = append(out, p)
		}
	}
	return out
}

// AllowsModel reports whether model is in the comma-joined list models; an
// empty list allows any model.
func AllowsModel(models, model string) bool {
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

// Holding is part of one GPU that a pod is known to hold.
type Holding struct {
	// Index is the GPU's NVML index.
	Index int
	// Milli is how much of it: MilliGPU for the whole GPU.
	Milli int64
}

// Holdings is the same part of each of the GPUs indexes.
func Holdings(indexes []int, milli int64) []Holding {
	out := make([]Holding, len(indexes))
	for i, idx := range indexes {
		out[i] = Holding{Index: idx, Milli: milli}
	}
	return out
}

// Use returns how pods (those on this node) hold its GPUs. A pod's GPUs
// come from the first of these that has a record for it:
//  1. known: what a scheduler knows the pod holds: its own choice for a pod
//     it has not yet seen bound, or the devices a ResourceClaim of the pod
//     is allocated (it always wins: a pod may be created carrying a copied
//     annotation);
//  2. what the kubelet reports the pod holding (through the node agent),
//     matched by pod UID, since controllers reuse pod names across attempts;
//  3. the pod's tessera.dev/gpu-ids annotation.
//
// A holder's or an annotation's set is trusted only if it is consistent:
// exactly the GPUs the pod uses, all listed on the node, none already full.
// Pods without a trusted record (members of a gang being planned, pods of
// other schedulers, malformed or conflicting annotations) are counted as
// holding what the search would give them for what they ask (asks; most
// callers pass podgpu.Held), in turn, so that capacity is never counted
// twice; fits is false when those pods do not fit at all.
func (n *Node) Use(pods []*v1.Pod, known func(*v1.Pod) ([]Holding, bool), asks func(*v1.Pod) podgpu.Request) (used topology.Usage, fits bool) {
	used = topology.NewUsage(len(n.Topo.GPUs))
	type claim struct {
		req       podgpu.Request
		positions []int
	}
	var recorded, unknown []claim
	for _, pod := range pods {
		if held, ok := known(pod); ok {
			for _, h := range held {
				used.Take(n.Positions([]int{h.Index}), h.Milli)
			}
			continue
		}
		r := asks(pod)
		if r.GPUs == 0 {
			continue
		}
		if positions, ok := n.held(pod); ok {
			recorded = append(recorded, claim{r, positions})
			continue
		}
		if ids, ok := AnnotatedGPUs(pod); ok {
			recorded = append(recorded, claim{r, n.knownPositions(ids)})
			continue
		}
		unknown = append(unknown, claim{req: r})
	}
	for _, c := range recorded {
		if consistent(used, c.req, c.positions) {
			used.Take(c.positions, c.req.Milli)
		} else {
			unknown = append(unknown, claim{req: c.req})
		}
	}
	// Whole GPUs before shares, largest first, as a scheduler placing them
	// would have had most choice.
	slices.SortFunc(unknown, func(a, b claim) int {
		return cmp.Or(cmp.Compare(b.req.GPUs, a.req.GPUs), cmp.Compare(b.req.Milli, a.req.Milli))
	})
	healthy := n.Healthy("")
	for _, c := range unknown {
		if c.req.Shared() {
			p, ok := used.PickShare(healthy, c.req.Milli)
			if !ok {
				return used, false
			}
			used.Take([]int{p}, c.req.Milli)
			continue
		}
		choice, ok := n.Topo.BestSet(n.Idle(used, ""), c.req.GPUs)
		if !ok {
			return used, false
		}
		used.Take(choice.GPUs, topology.MilliGPU)
	}
	return used, true
}

// held returns the GPU positions the kubelet reports the pod holding. A
// holder the agent wrote without a UID (an agent older than the field) is
// matched by namespace and name.
func (n *Node) held(pod *v1.Pod) ([]int, bool) {
	if p, ok := n.heldByUID[pod.UID]; ok {
		return p, true
	}
	p, ok := n.heldByName[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}]
	return p, ok
}

// knownPositions translates NVML indexes to positions; an index the node
// does not list becomes -1, which no set is consistent with.
func (n *Node) knownPositions(indexes []int) []int {
	out := make([]int, len(indexes))
	for i, idx := range indexes {
		p, ok := n.position[idx]
		if !ok {
			p = -1
		}
		out[i] = p
	}
	return out
}

// consistent reports whether a pod asking req can hold exactly the GPU
// positions given how used the GPUs are: as many distinct positions as the
// pod uses, each a GPU of the node, each with room for the pod's part of it.
func consistent(used topology.Usage, req podgpu.Request, positions []int) bool {
	if len(positions) != req.GPUs {
		return false
	}
	for i, p := range positions {
		if p < 0 || p >= len(used) || slices.Contains(positions[:i], p) || used.Free(p) < req.Milli {
			return false
		}
	}
	return true
}

// AnnotatedGPUs returns the GPUs a pod's tessera.dev/gpu-ids names; false
// when it has none or it is malformed.
func AnnotatedGPUs(pod *v1.Pod) ([]int, bool) {
	value, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]
	if !ok {
		return nil, false
	}
	ids, err := tesserav1alpha1.ParseGPUIDs(value)
	return ids, err == nil
}

// AnnotatedHoldings is what a GPU pod's tessera.dev/gpu-ids says it holds,
// for Use by callers that take the annotation as a record as it stands (the
// admission check).
func AnnotatedHoldings(pod *v1.Pod) ([]Holding, bool) {
	r := podgpu.Held(pod)
	ids, ok := AnnotatedGPUs(pod)
	if r.GPUs == 0 || !ok {
		return nil, false
	}
	return Holdings(ids, r.Milli), true
}
