package fragmentation

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	fwk "k8s.io/kube-scheduler/framework"

	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/podgpu"
)

// nodeView is a node as the measure sees it, with its expected
// fragmentation before the pod, for one NodeInfo generation and one mix.
// A node's view changes only when a pod lands on or leaves it, or when the
// mix is refreshed, so every other node's view is reused from cycle to
// cycle. A refreshed mix measures the node again too: the measurement reads
// the NVLinkTopology plugin's accounting, which moves without a NodeInfo
// generation (a topology published or gone stale, a GPU's health). When
// the node measures as before and the mix has the same tasks, only the
// weights moved: its fragments per task stand and are weighed again,
// instead of being measured and placed again. Views are immutable once
// stored, but for deltas.
type nodeView struct {
	generation int64
	// mix is the mix the view is for.
	mix  *mixSnapshot
	node frag.Node
	// fragments are the node's unusable capacity by task of mix.set.
	fragments []int64
	before    float64

	// deltas are the growths computed on this view, by task shape: pods
	// of the few most common shapes arrive again and again before the node
	// or the mix changes. The slice is replaced, never changed, so that
	// Score reads it without a lock; of two racing writers one entry may
	// be lost, and is computed again.
	deltas atomic.Pointer[[]shapeDelta]
}

type shapeKey struct {
	cpu, milli int64
	gpus       int
	models     string
}

type shapeDelta struct {
	key   shapeKey
	value float64
	fits  bool
	// after are the node's fragments by task of the view's mix.set once
	// the shape is placed.
	after []int64
}

func keyOf(t frag.Task) shapeKey {
	return shapeKey{cpu: t.CPUMilli, milli: t.GPUMilli, gpus: t.GPUs, models: strings.Join(t.Models, ",")}
}

// delta is the growth of the node's expected fragmentation against the
// view's mix if t (of shape key) is placed (see GPUFragmentation.Score);
// false if t does not fit.
func (v *nodeView) delta(key shapeKey, t frag.Task, measure frag.Measure) (float64, bool) {
	var known []shapeDelta
	if p := v.deltas.Load(); p != nil {
		known = *p
	}
	for i := range known {
		if d := &known[i]; d.key == key {
			return d.value, d.fits
		}
	}
	d := shapeDelta{key: key}
	if p, fits := v.node.PlaceTightest(t, nil, measure); fits {
		d.after = v.mix.set.fragments(p.After, measure)
		d.value, d.fits = v.mix.expected(d.after)-v.before, true
	}
	next := append(slices.Clip(known), d)
	v.deltas.Store(&next)
	return d.value, d.fits
}

func (pl *GPUFragmentation) view(info fwk.NodeInfo, m *mixSnapshot) *nodeView {
	name, generation := info.Node().Name, info.GetGeneration()
	var old *nodeView
	if old = pl.views.load(name); old != nil && old.generation == generation && old.mix.version == m.version {
		return old
	}
	n := pl.measureNode(info)
	v := &nodeView{generation: generation, mix: m, node: n}
	if old != nil && old.mix.set == m.set && sameNode(old.node, n) {
		v.fragments, v.before = old.fragments, m.expected(old.fragments)
		v.deltas.Store(reweighed(old, m, v.before))
	} else {
		v.fragments = m.set.fragments(n, pl.measure)
		v.before = m.expected(v.fragments)
	}
	pl.views.store(name, v)
	return v
}

// viewCache holds the nodes' views by name. Every Score reads it, in
// parallel, and a node's view is written only when it is measured again: a
// map behind a read-write lock is read faster than a sync.Map of 5,000
// nodes (2026-12-02, bench-scale --in-process).
type viewCache struct {
	mu    sync.RWMutex
	views map[string]*nodeView
}

func (c *viewCache) load(name string) *nodeView {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.views[name]
}

func (c *viewCache) store(name string, v *nodeView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.views == nil {
		c.views = map[string]*nodeView{}
	}
	c.views[name] = v
}

func (c *viewCache) delete(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.views, name)
}

// reweighed are old's deltas against m, whose tasks are old's: the same
// fragments, weighed again.
func reweighed(old *nodeView, m *mixSnapshot, before float64) *[]shapeDelta {
	p := old.deltas.Load()
	if p == nil {
		return nil
	}
	out := make([]shapeDelta, len(*p))
	for i, d := range *p {
		out[i] = d
		if d.fits {
			out[i].value = m.expected(d.after) - before
		}
	}
	return &out
}

// sameNode reports whether a and b have the same free CPU, GPUs and model.
func sameNode(a, b frag.Node) bool {
	return a.FreeCPUMilli == b.FreeCPUMilli && a.Model == b.Model && slices.Equal(a.FreeGPUMilli, b.FreeGPUMilli)
}

func (pl *GPUFragmentation) measureNode(info fwk.NodeInfo) frag.Node {
	acct, _ := pl.accountants.Get(pl.handle)
	return MeasureNode(acct, info)
}

// MeasureNode reads a node's free CPU and GPUs for the measure: per GPU
// from acct where it knows the node, else the node's unrequested
// nvidia.com/gpu as whole GPUs of an unknown model. acct may be nil.
func MeasureNode(acct GPUAccountant, info fwk.NodeInfo) frag.Node {
	n := frag.Node{FreeCPUMilli: info.GetAllocatable().GetMilliCPU() - info.GetRequested().GetMilliCPU()}
	if acct != nil {
		if free, model, known := acct.FreeGPUMilli(info); known {
			n.FreeGPUMilli, n.Model = free, model
			return n
		}
	}
	whole := info.GetAllocatable().GetScalarResources()[podgpu.ResourceGPU] - info.GetRequested().GetScalarResources()[podgpu.ResourceGPU]
	for range max(whole, 0) {
		n.FreeGPUMilli = append(n.FreeGPUMilli, frag.MilliGPU)
	}
	return n
}
