package queue

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"

	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// Demand is one pod of a gang, as the fit search sees it.
type Demand struct {
	// Role names the pod's PodSet, for messages.
	Role string
	// GPUs are whole GPUs; 0 for a pod without GPUs.
	GPUs int
	// IslandOnly asks for all GPUs inside one NVLink island.
	IslandOnly bool
	// Models are the allowed GPU models, comma-joined; "" allows any.
	Models string
	// MilliCPU and MemoryBytes are the pod's requests.
	MilliCPU, MemoryBytes int64
	// NodeLabels must all be on the node (node selector and the
	// ResourceFlavor's node labels).
	NodeLabels map[string]string
	// Tolerations are the pod's and its ResourceFlavor's: a node with a
	// NoSchedule or NoExecute taint they do not tolerate takes no pod.
	Tolerations []corev1.Toleration
}

// Node is one schedulable node's free capacity, as the fit search sees it.
type Node struct {
	Name   string
	Labels map[string]string
	Taints []corev1.Taint
	// GPUs is the node's published topology, when the scheduler would
	// trust it and the pods on the node fit it; nil otherwise.
	GPUs *published.Node
	// Used is how the node's GPUs are held now.
	Used topology.Usage
	// CountOnly marks a node without a trusted topology that takes GPU
	// pods by count alone, as the scheduler does under missingTopology
	// CountOnly: whole GPUs of any model, with no NVLink-island locality.
	CountOnly bool
	// CountedGPUs, on a node without a trusted topology, is its free
	// nvidia.com/gpu by count: allocatable less the pods' requests.
	CountedGPUs int
	// FreeMilliCPU and FreeMemoryBytes are allocatable less the requests
	// of the pods on the node.
	FreeMilliCPU, FreeMemoryBytes int64
}

// Placement is where each demanded pod would go: node names, in the order
// of the demands given.
type Placement []string

// freeGPUs counts the node's GPUs free for whole-GPU pods: idle healthy
// ones, or those free by count on a count-only node.
func (n *Node) freeGPUs() int {
	switch {
	case n.GPUs != nil:
		return len(n.GPUs.Idle(n.Used, ""))
	case n.CountOnly:
		return n.CountedGPUs
	}
	return 0
}

// take places d on n if it fits, returning the GPU positions it takes
// (none on a count-only node).
func (n *Node) take(d Demand) ([]int, bool) {
	if d.MilliCPU > n.FreeMilliCPU || d.MemoryBytes > n.FreeMemoryBytes {
		return nil, false
	}
	if !allowed(n, d) {
		return nil, false
	}
	var gpus []int
	if d.GPUs > 0 {
		var ok bool
		if gpus, ok = n.takeGPUs(d); !ok {
			return nil, false
		}
	}
	n.FreeMilliCPU -= d.MilliCPU
	n.FreeMemoryBytes -= d.MemoryBytes
	return gpus, true
}

// takeGPUs takes d's GPUs from the node's topology, or by count on a
// count-only node. Only a topology shows NVLink islands and GPU models, so
// the scheduler places a pod that asks for either only on a node with one.
func (n *Node) takeGPUs(d Demand) ([]int, bool) {
	switch {
	case n.GPUs != nil:
		c, ok := n.GPUs.BestSet(n.GPUs.Idle(n.Used, d.Models), d.GPUs, d.IslandOnly)
		if !ok {
			return nil, false
		}
		n.Used.Take(c.GPUs, topology.MilliGPU)
		return c.GPUs, true
	case n.CountOnly && !d.IslandOnly && d.Models == "" && d.GPUs <= n.CountedGPUs:
		n.CountedGPUs -= d.GPUs
		return nil, true
	}
	return nil, false
}

// allowed reports whether the pod may go to the node at all: the node has
// its node labels, and it tolerates the node's scheduling taints.
func allowed(n *Node, d Demand) bool {
	for k, v := range d.NodeLabels {
		if n.Labels[k] != v {
			return false
		}
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), n.Taints, d.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false)
	return !untolerated
}

// labelsOf lists the node labels the gang's pods ask for: "a=b, c=d".
func labelsOf(demands []Demand) string {
	set := map[string]bool{}
	for _, d := range demands {
		for k, v := range d.NodeLabels {
			set[k+"="+v] = true
		}
	}
	return strings.Join(slices.Sorted(maps.Keys(set)), ", ")
}

// clone copies the node's mutable accounting.
func (n *Node) clone() *Node {
	c := *n
	c.Used = slices.Clone(n.Used)
	return &c
}

// Fitter places whole gangs on a snapshot of the cluster's free capacity.
type Fitter struct {
	nodes []*Node
	// rackKey is the node label that names a node's rack.
	rackKey string
}

// NewFitter returns a Fitter over nodes (which it will change as gangs are
// placed with Place).
func NewFitter(nodes []*Node, rackKey string) *Fitter {
	return &Fitter{nodes: nodes, rackKey: rackKey}
}

// Result is the outcome of placing one gang.
type Result struct {
	Placement Placement
	// Fits is true when every pod was placed.
	Fits bool
	// Message says where the gang fits, or why not: what it needs and the
	// most of it that fits now.
	Message string
}

// Place places the gang demands as a whole: inside one rack if any rack
// holds it (the tightest such rack, so that emptier racks stay whole), else
// across racks. Within the candidate nodes, pods go largest first, each to
// the node with the fewest free GPUs that takes it. When the gang fits, the
// Fitter's nodes keep the capacity it took, so that the next gang placed
// sees it taken; when it does not, nothing changes.
func (f *Fitter) Place(demands []Demand) Result {
	// Only nodes some pod may use count, so that the best rack named in a
	// message is one the gang could use.
	racks := map[string][]int{}
	var eligible []int
	for i, n := range f.nodes {
		if slices.ContainsFunc(demands, func(d Demand) bool { return allowed(n, d) }) {
			racks[n.Labels[f.rackKey]] = append(racks[n.Labels[f.rackKey]], i)
			eligible = append(eligible, i)
		}
	}
	if len(eligible) == 0 {
		return Result{Message: fmt.Sprintf("needs %s; no ready node has the labels %s and only taints the pods tolerate", need(demands), labelsOf(demands))}
	}
	names := slices.Sorted(maps.Keys(racks))
	// Tightest rack first: fewest free GPUs, then name.
	slices.SortStableFunc(names, func(a, b string) int {
		return cmp.Compare(f.freeGPUs(racks[a]), f.freeGPUs(racks[b]))
	})
	bestRack, bestPlaced := "", -1
	for _, rack := range names {
		placement, nodes, placed := f.try(racks[rack], demands)
		if placed == len(demands) {
			f.commit(nodes)
			return Result{Placement: placement, Fits: true, Message: "fits now, e.g. " + describe(demands, placement) + rackNote(rack, f.rackKey)}
		}
		if placed > bestPlaced {
			bestRack, bestPlaced = rack, placed
		}
	}
	placement, nodes, placed := f.try(eligible, demands)
	if placed == len(demands) {
		f.commit(nodes)
		return Result{Placement: placement, Fits: true, Message: "fits now across racks, e.g. " + describe(demands, placement)}
	}
	msg := fmt.Sprintf("needs %s; %d of %d pods fit the free GPUs now", need(demands), placed, len(demands))
	if bestRack != "" && len(racks) > 1 {
		msg += fmt.Sprintf(" (best %s %s: %d)", f.rackKey, bestRack, bestPlaced)
	}
	return Result{Message: msg + f.untrustedNote(eligible, demands)}
}

// untrustedNote says when nodes with GPUs free by count took none of the
// gang's GPU pods for want of a fresh topology, so that a gang held by
// policy is not taken for one short of GPUs.
func (f *Fitter) untrustedNote(eligible []int, demands []Demand) string {
	count, countOnly := 0, false
	for _, i := range eligible {
		if n := f.nodes[i]; n.GPUs == nil && n.CountedGPUs > 0 {
			count, countOnly = count+1, n.CountOnly
		}
	}
	needsTopology := func(d Demand) bool { return d.GPUs > 0 && (d.IslandOnly || d.Models != "") }
	switch {
	case count == 0 || !slices.ContainsFunc(demands, func(d Demand) bool { return d.GPUs > 0 }):
		return ""
	case !countOnly:
		return fmt.Sprintf("; %d node(s) with free GPUs have no fresh GPU topology, and missingTopology Unschedulable keeps GPU pods off them", count)
	case slices.ContainsFunc(demands, needsTopology):
		return fmt.Sprintf("; %d node(s) with free GPUs have no fresh GPU topology, so they take no pod that needs an NVLink island or a GPU model", count)
	}
	return ""
}

func (f *Fitter) freeGPUs(members []int) int {
	total := 0
	for _, i := range members {
		total += f.nodes[i].freeGPUs()
	}
	return total
}

// try places demands on copies of the member nodes; it returns the
// placement, the changed copies by node index, and how many pods it placed.
func (f *Fitter) try(members []int, demands []Demand) (Placement, map[int]*Node, int) {
	order := make([]int, len(demands))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(demands[b].GPUs, demands[a].GPUs), cmp.Compare(demands[b].MilliCPU, demands[a].MilliCPU))
	})
	copies := map[int]*Node{}
	node := func(i int) *Node {
		if c, ok := copies[i]; ok {
			return c
		}
		copies[i] = f.nodes[i].clone()
		return copies[i]
	}
	placement := make(Placement, len(demands))
	placed := 0
	for _, d := range order {
		candidates := slices.Clone(members)
		slices.SortStableFunc(candidates, func(a, b int) int {
			return cmp.Or(cmp.Compare(node(a).freeGPUs(), node(b).freeGPUs()), cmp.Compare(node(a).Name, node(b).Name))
		})
		for _, i := range candidates {
			if _, ok := node(i).take(demands[d]); ok {
				placement[d] = node(i).Name
				placed++
				break
			}
		}
	}
	return placement, copies, placed
}

func (f *Fitter) commit(changed map[int]*Node) {
	for i, n := range changed {
		f.nodes[i] = n
	}
}

// need says what a gang asks for, by role: "2 × 8 GPUs (workers) + 1 pod (coordinator)".
func need(demands []Demand) string {
	type key struct {
		role string
		gpus int
	}
	counts := map[key]int{}
	var keys []key
	for _, d := range demands {
		k := key{d.Role, d.GPUs}
		if counts[k] == 0 {
			keys = append(keys, k)
		}
		counts[k]++
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if k.gpus == 0 {
			parts = append(parts, fmt.Sprintf("%d pod(s) without GPUs (%s)", counts[k], k.role))
			continue
		}
		island := ""
		if slices.ContainsFunc(demands, func(d Demand) bool { return d.Role == k.role && d.IslandOnly }) {
			island = " in one NVLink island"
		}
		parts = append(parts, fmt.Sprintf("%d × %d GPUs%s (%s)", counts[k], k.gpus, island, k.role))
	}
	return strings.Join(parts, " + ")
}

// describe says where each role's pods would go: "workers on a, b".
func describe(demands []Demand, p Placement) string {
	var roles []string
	byRole := map[string][]string{}
	for i, d := range demands {
		if _, ok := byRole[d.Role]; !ok {
			roles = append(roles, d.Role)
		}
		byRole[d.Role] = append(byRole[d.Role], p[i])
	}
	parts := make([]string, 0, len(roles))
	for _, r := range roles {
		parts = append(parts, r+" on "+strings.Join(byRole[r], ", "))
	}
	return strings.Join(parts, "; ")
}

func rackNote(rack, key string) string {
	if rack == "" {
		return ""
	}
	return fmt.Sprintf(" (%s %s)", key, rack)
}
