package nvlink

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// assignment is the GPUs (NVML indexes) chosen for a pod on a node.
type assignment struct {
	node    string
	indexes []int
	// held is how much of each GPU: MilliGPU for whole GPUs.
	held []published.Holding
	// annotation is indexes as the binding writes them on the pod.
	annotation string
}

func newAssignment(node string, indexes []int, milli int64) assignment {
	return assignmentOf(node, published.Holdings(indexes, milli))
}

// assignmentOf is the assignment holding held (sorted by index).
func assignmentOf(node string, held []published.Holding) assignment {
	indexes := make([]int, len(held))
	for i, h := range held {
		indexes[i] = h.Index
	}
	return assignment{node: node, indexes: indexes, held: held, annotation: tesserav1alpha1.FormatGPUIDs(indexes)}
}

// reservations are the assignments this scheduler made, for every
// profile of the process (see Ledger). A reservation stands in for the
// pod's annotation from Reserve until the pod is seen bound (the binding
// writes the annotation), and beats whatever the pod carried before: a pod
// may be created with a copied tessera.dev/gpu-ids.
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

// reservedOn returns the GPUs this scheduler reserved for pod on node,
// while the pod is not yet seen bound with them: once its copy carries the
// binding's annotation, the pod's own records (its claims' allocation, what
// the kubelet reports it holding, then the annotation) take over, as for
// any bound pod.
func (r *reservations) reservedOn(pod *v1.Pod, node string) ([]published.Holding, bool) {
	a, ok := r.get(pod.UID)
	if !ok || a.node != node || pod.Annotations[tesserav1alpha1.AnnotationGPUIDs] == a.annotation {
		return nil, false
	}
	return a.held, true
}

// holders are where the plugin learns what pods hold beyond their own
// records: this scheduler's reservations, and the claims of Tessera's DRA
// driver (nil without DRA).
type holders struct {
	reserved *reservations
	claims   claimReader
}

// useOf returns how the pods in info hold the node's GPUs (see
// published.Node.Use): this scheduler's reservations first, then what the
// pods' claims are allocated; a pod whose claims are not allocated yet (a
// gang member being planned) counts as asking what its claims ask.
func useOf(n *published.Node, info fwk.NodeInfo, h holders) (used topology.Usage, fits bool) {
	pods := make([]*v1.Pod, 0, len(info.GetPods()))
	for _, pi := range info.GetPods() {
		pods = append(pods, pi.GetPod())
	}
	node := info.Node().Name
	seen := sets.New[types.UID]()
	known := func(pod *v1.Pod) ([]published.Holding, bool) {
		if held, ok := h.reserved.reservedOn(pod, node); ok {
			return held, true
		}
		if !hasClaims(pod) {
			return nil, false
		}
		return allocatedOn(podClaims(pod, h.claims), node, seen)
	}
	asks := func(pod *v1.Pod) podgpu.Request {
		r := podgpu.Held(pod)
		if withClaims, err := withClaimed(r, pod, h.claims); err == nil {
			return withClaims
		}
		return r // a claim this scheduler would refuse: what the pod holds outside claims
	}
	return n.Use(pods, known, asks)
}

// hasClaims reports whether the pod may hold GPUs through ResourceClaims.
func hasClaims(pod *v1.Pod) bool {
	return len(pod.Spec.ResourceClaims) > 0 || pod.Status.ExtendedResourceClaimStatus != nil
}
