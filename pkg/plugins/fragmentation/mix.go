package fragmentation

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	frag "tessera.dev/tessera/pkg/fragmentation"
)

// refreshEvery is how many new pods the learned mix takes in between two
// snapshots. A snapshot makes every node's cached view stale, so it is not
// taken on every pod; at 64 pods a half-life of 2000 pods moves the
// weights by about 2 % between snapshots.
const refreshEvery = 64

// mixSnapshot is the mix nodes are measured against; immutable.
type mixSnapshot struct {
	version int64
	shapes  []frag.Shape
	// set is the shapes' tasks, and pos each shape's position in it.
	set *shapeSet
	pos []int
}

// shapeSet is the tasks of a mix in a fixed order. Snapshots whose shapes
// have the same tasks share one set, whatever their weights, so that a
// node's fragments per task (nodeView) outlive a refresh that only moved
// the weights.
type shapeSet struct {
	tasks []frag.Task
	index map[shapeKey]int
}

// snapshotOf is the snapshot of version of shapes, reusing prev's set when
// the tasks are the same.
func snapshotOf(version int64, shapes []frag.Shape, prev *shapeSet) *mixSnapshot {
	set := prev
	if set == nil || len(set.tasks) != len(shapes) || slices.ContainsFunc(shapes, func(s frag.Shape) bool {
		_, ok := set.index[keyOf(s.Task)]
		return !ok
	}) {
		set = &shapeSet{index: make(map[shapeKey]int, len(shapes))}
		for _, s := range shapes {
			set.index[keyOf(s.Task)] = len(set.tasks)
			set.tasks = append(set.tasks, s.Task)
		}
	}
	m := &mixSnapshot{version: version, shapes: shapes, set: set, pos: make([]int, len(shapes))}
	for i, s := range shapes {
		m.pos[i] = set.index[keyOf(s.Task)]
	}
	return m
}

// fragments are the node's unusable capacity for each task of the set
// under measure.
func (set *shapeSet) fragments(n frag.Node, measure frag.Measure) []int64 {
	out := make([]int64, len(set.tasks))
	for i, t := range set.tasks {
		out[i] = measure.Of(n, t)
	}
	return out
}

// expected is frag.Node.Expected from the node's fragments by task of the
// snapshot's set.
func (m *mixSnapshot) expected(fragments []int64) float64 {
	return frag.Mean(m.shapes, func(i int) int64 { return fragments[m.pos[i]] })
}

// mix is the workload mix: pinned from the args, or learned.
type mix struct {
	coverage  float64
	maxShapes int
	// exponent divides a k-GPU shape's weight by k^exponent.
	exponent float64

	mu       sync.Mutex
	learned  *frag.Mix // nil when pinned
	seen     recentUIDs
	observed int
	snapshot atomic.Pointer[mixSnapshot]
}

func newMix(args *configv1alpha1.GPUFragmentationArgs) *mix {
	m := &mix{coverage: float64(*args.CoveragePercent) / 100, maxShapes: int(*args.MaxShapes), exponent: float64(*args.GPUCountExponent),
		seen: newRecentUIDs(4096)}
	if len(args.Workload) == 0 {
		m.learned = frag.NewMix(int(*args.HalfLifePods))
		m.snapshot.Store(snapshotOf(0, nil, nil))
		return m
	}
	var shapes []frag.Shape
	for _, s := range args.Workload {
		milli := int64(s.GPUMilli)
		if milli == 0 {
			milli = frag.MilliGPU
		}
		shapes = append(shapes, frag.Shape{Task: frag.Task{CPUMilli: s.CPUMilli, GPUs: int(s.GPUs), GPUMilli: milli, Models: s.Models}, Weight: float64(s.Weight)})
	}
	m.snapshot.Store(snapshotOf(0, m.trim(shapes), nil))
	return m
}

// current returns the snapshot to score against.
func (m *mix) current() *mixSnapshot { return m.snapshot.Load() }

// observe counts a pod into a learned mix, once per pod however often it
// is retried, and takes a new snapshot every refreshEvery pods (and for
// each of the first ones, while the mix is still forming).
func (m *mix) observe(uid types.UID, t frag.Task) {
	if m.learned == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.seen.add(uid) {
		return
	}
	m.learned.Observe(t)
	m.observed++
	if m.observed <= refreshEvery || m.observed%refreshEvery == 0 {
		prev := m.snapshot.Load()
		m.snapshot.Store(snapshotOf(prev.version+1, m.trim(m.learned.Shapes()), prev.set))
	}
}

// trim weighs the shapes (a k-GPU shape's pod count divided by
// k^exponent), then keeps the heaviest until they cover the coverage share
// of the weight, at most maxShapes of them. It changes shapes.
func (m *mix) trim(shapes []frag.Shape) []frag.Shape {
	for i := range shapes {
		if k := shapes[i].GPUs; k > 1 {
			shapes[i].Weight /= math.Pow(float64(k), m.exponent)
		}
	}
	frag.SortHeaviestFirst(shapes)
	var total float64
	for _, s := range shapes {
		total += s.Weight
	}
	var kept float64
	for i, s := range shapes {
		if i == m.maxShapes || i > 0 && kept >= m.coverage*total {
			return shapes[:i]
		}
		kept += s.Weight
	}
	return shapes
}

// recentUIDs remembers the last n pods seen.
type recentUIDs struct {
	set  map[types.UID]struct{}
	ring []types.UID
	next int
}

func newRecentUIDs(n int) recentUIDs {
	return recentUIDs{set: make(map[types.UID]struct{}, n), ring: make([]types.UID, n)}
}

// add records uid; false if it was seen already.
func (r *recentUIDs) add(uid types.UID) bool {
	if _, ok := r.set[uid]; ok {
		return false
	}
	delete(r.set, r.ring[r.next])
	r.ring[r.next] = uid
	r.next = (r.next + 1) % len(r.ring)
	r.set[uid] = struct{}{}
	return true
}
