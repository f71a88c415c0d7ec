package fragmentation

import (
	"slices"
	"strings"
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
// generation (a topology published or gone stale, a GPU's health). Views
// are immutable once stored, but for deltas.
type nodeView struct {
	generation int64
	mixVersion int64
	node       frag.Node
	before     float64

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
}

func keyOf(t frag.Task) shapeKey {
	return shapeKey{cpu: t.CPUMilli, milli: t.GPUMilli, gpus: t.GPUs, models: strings.Join(t.Models, ",")}
}

// delta is the growth of the node's expected fragmentation if t (of shape
// key) is placed (see GPUFragmentation.Score); false if t does not fit.
func (v *nodeView) delta(key shapeKey, t frag.Task, mix []frag.Shape, m frag.Measure) (float64, bool) {
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
	if p, fits := v.node.PlaceTightest(t, nil, m); fits {
		d.value, d.fits = p.After.Expected(mix, m)-v.before, true
	}
	next := append(slices.Clip(known), d)
	v.deltas.Store(&next)
	return d.value, d.fits
}

func (pl *GPUFragmentation) view(info fwk.NodeInfo, m *mixSnapshot) *nodeView {
	name, generation := info.Node().Name, info.GetGeneration()
	if v, ok := pl.views.Load(name); ok {
		if v := v.(*nodeView); v.generation == generation && v.mixVersion == m.version {
			return v
		}
	}
	n := pl.measureNode(info)
	v := &nodeView{generation: generation, mixVersion: m.version, node: n, before: n.Expected(m.shapes, pl.measure)}
	pl.views.Store(name, v)
	return v
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
