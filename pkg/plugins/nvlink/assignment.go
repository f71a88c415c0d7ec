package nvlink

import (
	"cmp"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology"
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

// useOf returns how the pods in info hold the node's GPUs. What the kubelet
// reports a pod holding (through the node agent) comes first; then the
// pod's assignment. Pods whose GPUs are not known (members of a gang being
// planned, pods of other schedulers, malformed annotations) are counted as
// holding what the search would give them, in turn, so that capacity is
// never counted twice; fits is false when those pods do not fit at all.
func useOf(n *nodeGPUs, info fwk.NodeInfo, held *reservations) (used topology.Usage, fits bool) {
	used = topology.NewUsage(len(n.topo.GPUs))
	var unknown []podgpu.Request
	node := info.Node().Name
	for _, pi := range info.GetPods() {
		pod := pi.GetPod()
		r := podgpu.Held(pod)
		if r.GPUs == 0 {
			continue
		}
		if positions, seen := n.heldBy[types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}]; seen {
			used.Take(positions, r.Milli)
			continue
		}
		if ids, known := held.assignedGPUs(pod, node); known {
			used.Take(n.positions(ids), r.Milli)
			continue
		}
		unknown = append(unknown, r)
	}
	// Whole GPUs before shares, largest first, as a scheduler placing them
	// would have had most choice.
	slices.SortFunc(unknown, func(a, b podgpu.Request) int {
		return cmp.Or(cmp.Compare(b.GPUs, a.GPUs), cmp.Compare(b.Milli, a.Milli))
	})
	healthy := n.healthy("")
	for _, r := range unknown {
		if r.Shared() {
			p, ok := used.PickShare(healthy, r.Milli)
			if !ok {
				return used, false
			}
			used.Take([]int{p}, r.Milli)
			continue
		}
		c, ok := n.topo.BestSet(n.idle(used, ""), r.GPUs)
		if !ok {
			return used, false
		}
		used.Take(c.GPUs, topology.MilliGPU)
	}
	return used, true
}
