package nvlink

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology"
)

// ResourceGPU is the NVIDIA device plugin's extended resource.
const ResourceGPU = podgpu.ResourceGPU

const stateKey fwk.StateKey = Name

// request is what a pod asks of one node's GPUs. It is comparable: it keys
// a node's cached search results.
type request struct {
	gpus int
	// milli is the share of each GPU: MilliGPU for whole GPUs.
	milli int64
	// models are the allowed GPU models, comma-joined; "" allows any.
	models     string
	islandOnly bool
}

func (r request) shared() bool { return r.gpus == 1 && r.milli < topology.MilliGPU }

// cycleState is the pod's request and the cycle's clock reading, both
// taken once at PreFilter, and the GPUs chosen for the pod on each node
// whose devices were shown to the DRA allocator in that order (see
// ChosenGPUs): Reserve takes the same GPUs, even if a SharePicker's learned
// mix has moved since.
type cycleState struct {
	request
	now    time.Time
	chosen sync.Map // node name -> shownChoice
	// filtered are Filter's answers by node name, for Score: a small map
	// of this cycle's nodes, still in the CPU's caches when Score runs,
	// where the topology store is a large one that is not. Made at the
	// first answer, so that cycles that filter no node (a gang's
	// simulations) make none.
	mu       sync.RWMutex
	filtered map[string]filterAnswer
	// nodes is how many nodes the cluster has, to size filtered.
	nodes int
}

// filteredHint bounds the room filtered is made with: the scheduler
// filters until it has a few hundred feasible nodes
// (percentageOfNodesToScore), and room for them up front spares Filter the
// map's growing.
const filteredHint = 1024

// filterAnswer is Filter's answer on a node in the state of a NodeInfo
// generation: the best GPU set's raw score, 0 if none or no topology. It
// does not follow the changes that bump no generation (a topology update, a
// reservation replaced by its claims' allocation) between Filter and Score
// of one cycle: Score ranks on what Filter saw, and Reserve looks again.
type filterAnswer struct {
	generation, raw int64
}

// remember records Filter's answer on the node.
func (c *cycleState) remember(info fwk.NodeInfo, raw int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.filtered == nil {
		c.filtered = make(map[string]filterAnswer, min(c.nodes, filteredHint))
	}
	c.filtered[info.Node().Name] = filterAnswer{generation: info.GetGeneration(), raw: raw}
}

// filterAnswer returns Filter's answer on the node, if Filter saw the node
// in the state info is in.
func (c *cycleState) filterAnswer(info fwk.NodeInfo) (int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.filtered[info.Node().Name]
	return a.raw, ok && a.generation == info.GetGeneration()
}

// shownChoice is the GPUs chosen on a node for the node's state of a
// NodeInfo generation and cache epoch.
type shownChoice struct {
	generation, epoch int64
	ids               []int
}

func (c *cycleState) Clone() fwk.StateData { return c }

// shown returns the GPUs chosen on the node for the state info and st are
// in now; false if none were, or for another state.
func (c *cycleState) shown(node string, info fwk.NodeInfo, st *nodeState) ([]int, bool) {
	v, ok := c.chosen.Load(node)
	if !ok {
		return nil, false
	}
	s := v.(shownChoice)
	return s.ids, s.generation == info.GetGeneration() && s.epoch == st.epoch.Load()
}

// podRequest reads the pod's GPUs, share, models and locality, from its
// resources and annotations and from what its claims (read from claims, if
// set) ask of Tessera's DRA driver; a malformed annotation, or a share
// that comes with other GPUs, is an error that names it.
func podRequest(pod *v1.Pod, defaultLocality configv1alpha1.GPULocality, claims claimReader) (*request, error) {
	r, err := podgpu.Read(pod)
	if err != nil {
		return nil, err
	}
	if r, err = withClaimed(r, pod, claims); err != nil {
		return nil, err
	}
	locality := defaultLocality
	if s, ok := pod.Annotations[tesserav1alpha1.AnnotationGPULocality]; ok {
		l, err := configv1alpha1.ParseGPULocality(s)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", tesserav1alpha1.AnnotationGPULocality, err)
		}
		locality = l
	}
	return &request{gpus: r.GPUs, milli: r.Milli, models: r.ModelsKey(),
		islandOnly: locality == configv1alpha1.GPULocalityNVLinkIsland}, nil
}

// withClaimed adds to r, what the pod asks outside claims, what its
// unallocated claims ask of Tessera's DRA driver; a share that comes with
// other GPUs is an error.
func withClaimed(r podgpu.Request, pod *v1.Pod, claims claimReader) (podgpu.Request, error) {
	if len(pod.Spec.ResourceClaims) == 0 {
		return r, nil
	}
	gpus, share, err := claimedGPUs(podClaims(pod, claims))
	switch {
	case err != nil:
		return r, err
	case share > 0 && r.GPUs > 0, gpus > 0 && r.Shared():
		return r, fmt.Errorf("a share of one GPU comes with no other GPU, but the pod asks for %d GPU(s) and its claims for more", r.GPUs)
	case share > 0:
		r.GPUs, r.Milli = 1, share
	default:
		r.GPUs += gpus
	}
	return r, nil
}

func readState(state fwk.CycleState) (*cycleState, error) {
	data, err := state.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %s state: %w", Name, err)
	}
	r, ok := data.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("%s state has type %T", Name, data)
	}
	return r, nil
}
