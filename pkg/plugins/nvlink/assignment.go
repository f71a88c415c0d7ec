package nvlink

import (
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// assignment is the GPUs (NVML indexes) chosen for a pod on a node.
type assignment struct {
	node    string
	indexes []int
}

// reservations are the assignments this scheduler made. A pod's own
// annotation is the record once it is written; the reservation covers the
// time before, while the scheduler's cache holds the pod as it was when
// reserved. Entries live until the pod is deleted or unreserved, since the
// cache may hold that copy until the bound pod is seen.
type reservations struct {
	mu    sync.RWMutex
	byPod map[types.UID]assignment
}

func newReservations() *reservations {
	return &reservations{byPod: map[types.UID]assignment{}}
}

func (r *reservations) get(uid types.UID) (assignment, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.byPod[uid]
	return a, ok
}

func (r *reservations) set(uid types.UID, a assignment) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byPod[uid] = a
}

func (r *reservations) remove(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byPod, uid)
}

// assignedGPUs returns the GPUs a pod on node holds, from its annotation or
// this scheduler's reservation; false when neither says.
func (r *reservations) assignedGPUs(pod *v1.Pod, node string) ([]int, bool) {
	if value, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]; ok {
		if ids, err := tesserav1alpha1.ParseGPUIDs(value); err == nil {
			return ids, true
		}
	}
	if a, ok := r.get(pod.UID); ok && a.node == node {
		return a.indexes, true
	}
	return nil, false
}

// freeGPUs returns the positions of the node's healthy GPUs that no pod in
// info holds. What the kubelet reports a pod holding (through the node
// agent) comes first; then the pod's assignment. Pods whose GPUs are not known (members of a gang being
// planned, pods of other schedulers, malformed annotations) are counted as
// holding the set the search would give them, in turn, so that capacity is
// never counted twice; ok is false when those pods do not fit at all.
func freeGPUs(n *nodeGPUs, info fwk.NodeInfo, held *reservations) (free []int, ok bool) {
	taken := make([]bool, len(n.topo.GPUs))
	var unknown []int
	node := info.Node().Name
	for _, pi := range info.GetPods() {
		pod := pi.GetPod()
		k := gpuRequest(pod)
		if k == 0 {
			continue
		}
		if positions, seen := n.heldBy[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}]; seen {
			for _, p := range positions {
				taken[p] = true
			}
			continue
		}
		if ids, known := held.assignedGPUs(pod, node); known {
			for _, p := range n.positions(ids) {
				taken[p] = true
			}
			continue
		}
		unknown = append(unknown, k)
	}
	for p, g := range n.topo.GPUs {
		if g.Healthy && !taken[p] {
			free = append(free, p)
		}
	}
	// Largest first, as a scheduler placing them would have had most choice.
	slices.SortFunc(unknown, func(a, b int) int { return b - a })
	for _, k := range unknown {
		c, fits := n.topo.BestSet(free, k)
		if !fits {
			return nil, false
		}
		free = slices.DeleteFunc(free, func(p int) bool { return slices.Contains(c.GPUs, p) })
	}
	return free, true
}
