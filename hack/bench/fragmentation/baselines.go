package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"

	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/plugins/fragmentation"
	"tessera.dev/tessera/pkg/plugins/nvlink"
	"tessera.dev/tessera/pkg/podgpu"
)

// The baseline policies of the FGD paper, as score plugins of the real
// framework, written from the paper's descriptions. Each scores a node from
// what the NVLinkTopology plugin of the profile accounts (the same GPU
// view GPUFragmentation gets), higher is better, and normalizes its scores
// onto [0, 100] across nodes, so that the framework's highest total is the
// policy's choice.

// capacity is a node's allocatable CPU and GPU, in milli.
type capacity struct{ cpu, gpu int64 }

// scoreFunc scores node n (capacity c) for task t; higher is better.
type scoreFunc func(b *baseline, n frag.Node, c capacity, t frag.Task) float64

type baseline struct {
	name        string
	handle      fwk.Handle
	accountants *fragmentation.Accountants
	score       scoreFunc
	// mix is FGD's target workload.
	mix []frag.Shape
	// views caches each node's view, and for FGD its expected
	// fragmentation, by NodeInfo generation, as GPUFragmentation does.
	views map[string]*cachedView
	// mu guards the fields below; Score runs with parallelism 1, the lock
	// is for safety only.
	mu  sync.Mutex
	rng *rand.Rand
	// node is the node being scored.
	node *cachedView
}

var _ fwk.ScorePlugin = &baseline{}

const baselineStateKey fwk.StateKey = "baseline"

// baselineFactory registers a baseline under name; with pickers, it also
// chooses the GPU of each share in its profile (PickShareGPU).
func baselineFactory(name string, score scoreFunc, accountants *fragmentation.Accountants, pickers *nvlink.SharePickers, mix []frag.Shape, seed uint64) frameworkFactory {
	return func(_ context.Context, _ runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		b := &baseline{name: name, handle: handle, accountants: accountants, score: score, mix: mix,
			views: map[string]*cachedView{}, rng: rand.New(rand.NewPCG(seed, 0xba5e))}
		if pickers != nil {
			pickers.Set(handle, b)
		}
		return b, nil
	}
}

// PickShareGPU gives a share the GPU FGD's paper gives it: of the GPUs with
// room, the one whose placement leaves the node's expected fragmentation
// against the target workload lowest (ties: the GPU it fits most tightly,
// as for Tessera), the same choice fgdScore scores the node by.
func (b *baseline) PickShareGPU(pod *v1.Pod, info fwk.NodeInfo, freeMilli []int64, candidates []int) int {
	t, err := fragmentation.TaskOf(pod)
	if err != nil || len(candidates) == 0 {
		return -1
	}
	b.mu.Lock()
	v := b.view(info)
	b.mu.Unlock()
	n := frag.Node{FreeCPUMilli: v.node.FreeCPUMilli, FreeGPUMilli: freeMilli, Model: v.node.Model}
	return n.LeastFragmentingShare(t, candidates, b.mix, frag.MeasureFGD)
}

type cachedView struct {
	generation int64
	node       frag.Node
	// before is FGD's expected fragmentation of node; NaN until computed.
	before float64
	// deltas are FGD's scores by task shape.
	deltas map[taskKey]float64
}

type taskKey struct {
	cpu, milli int64
	gpus       int
	models     string
}

type frameworkFactory = func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error)

func (b *baseline) Name() string { return b.name }

type taskState struct{ task frag.Task }

func (s *taskState) Clone() fwk.StateData { return s }

func (b *baseline) PreScore(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	t, err := fragmentation.TaskOf(pod)
	if err != nil {
		return fwk.AsStatus(err)
	}
	state.Write(baselineStateKey, &taskState{task: t})
	return nil
}

func (b *baseline) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.NodeInfo) (int64, *fwk.Status) {
	data, err := state.Read(baselineStateKey)
	if err != nil {
		return 0, fwk.AsStatus(fmt.Errorf("reading %s state: %w", b.name, err))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.view(info)
	c := capacity{cpu: info.GetAllocatable().GetMilliCPU(), gpu: info.GetAllocatable().GetScalarResources()[podgpu.ResourceGPU] * frag.MilliGPU}
	b.node = v
	return int64(math.Round(b.score(b, v.node, c, data.(*taskState).task) * 1e6)), nil
}

// view returns the node as the measure sees it, cached.
func (b *baseline) view(info fwk.NodeInfo) *cachedView {
	name := info.Node().Name
	if v, ok := b.views[name]; ok && v.generation == info.GetGeneration() {
		return v
	}
	acct, _ := b.accountants.Get(b.handle)
	v := &cachedView{generation: info.GetGeneration(), node: fragmentation.MeasureNode(acct, info), before: math.NaN(), deltas: map[taskKey]float64{}}
	b.views[name] = v
	return v
}

func (b *baseline) ScoreExtensions() fwk.ScoreExtensions { return b }

// NormalizeScore maps the raw scores linearly onto [0, 100].
func (b *baseline) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi == lo {
			scores[i].Score = fwk.MaxScore
		} else {
			scores[i].Score = (scores[i].Score - lo) * fwk.MaxScore / (hi - lo)
		}
	}
	return nil
}

// gpuDemand is the task's GPU request in milli-GPUs.
func gpuDemand(t frag.Task) int64 { return int64(t.GPUs) * t.GPUMilli }

// randomScore: any feasible node, uniformly.
func randomScore(b *baseline, _ frag.Node, _ capacity, _ frag.Task) float64 {
	return b.rng.Float64()
}

// dotProdScore (Tetris): the alignment of the task's demand with the
// node's free resources, each normalized by the node's capacity.
func dotProdScore(_ *baseline, n frag.Node, c capacity, t frag.Task) float64 {
	s := ratio(t.CPUMilli, c.cpu) * ratio(n.FreeCPUMilli, c.cpu)
	return s + ratio(gpuDemand(t), c.gpu)*ratio(n.FreeGPU(), c.gpu)
}

// gpuPackingScore: a GPU already partly used first (for a share), then an
// idle GPU on a node already in use, then an idle node.
func gpuPackingScore(_ *baseline, n frag.Node, _ capacity, t frag.Task) float64 {
	nodeInUse := false
	for _, f := range n.FreeGPUMilli {
		if f < frag.MilliGPU {
			nodeInUse = true
			if t.GPUs == 1 && t.GPUMilli < frag.MilliGPU && f > 0 && f >= t.GPUMilli {
				return 3
			}
		}
	}
	if nodeInUse {
		return 2
	}
	return 1
}

// bestFitScore: the node left with the least free CPU and GPU, each as a
// share of the node's capacity.
func bestFitScore(_ *baseline, n frag.Node, c capacity, t frag.Task) float64 {
	return -(ratio(n.FreeCPUMilli-t.CPUMilli, c.cpu) + ratio(n.FreeGPU()-gpuDemand(t), c.gpu))
}

// fgdScore: FGD as published, the node whose expected fragmentation
// against the target workload grows least, with the GPU inside the node
// chosen the same way.
func fgdScore(b *baseline, n frag.Node, _ capacity, t frag.Task) float64 {
	key := taskKey{cpu: t.CPUMilli, milli: t.GPUMilli, gpus: t.GPUs, models: strings.Join(t.Models, ",")}
	if d, ok := b.node.deltas[key]; ok {
		return d
	}
	if math.IsNaN(b.node.before) {
		b.node.before = n.Expected(b.mix, frag.MeasureFGD)
	}
	var score float64
	if p, ok := n.PlaceAfter(t, b.mix, frag.MeasureFGD, b.node.before); ok {
		score = -p.Delta
	}
	b.node.deltas[key] = score
	return score
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
