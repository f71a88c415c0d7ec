package nvlink

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
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
	if ids, ok := published.AnnotatedGPUs(pod); ok {
		return ids, true
	}
	if a, ok := r.get(pod.UID); ok && a.node == node {
		return a.indexes, true
	}
	return nil, false
}

// useOf returns how the pods in info hold the node's GPUs (see
// published.Node.Use), with this scheduler's reservations standing in for
// annotations not yet written.
func useOf(n *published.Node, info fwk.NodeInfo, held *reservations) (used topology.Usage, fits bool) {
	pods := make([]*v1.Pod, 0, len(info.GetPods()))
	for _, pi := range info.GetPods() {
		pods = append(pods, pi.GetPod())
	}
	node := info.Node().Name
	return n.Use(pods, func(pod *v1.Pod) ([]int, bool) { return held.assignedGPUs(pod, node) })
}
