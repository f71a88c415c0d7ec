package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"

	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/plugins/fragmentation"
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
	// before caches each node's expected fragmentation by NodeInfo
	// generation, for FGD, as GPUFragmentation does.
	before map[string]cachedFrag
	// mu guards the fields below; Score runs with parallelism 1, the lock
	// is for safety only.
	mu  sync.Mutex
	rng *rand.Rand
	// node is the node being scored.
	node fwk.NodeInfo
}

var _ fwk.ScorePlugin = &baseline{}

const baselineStateKey fwk.StateKey = "baseline"

// baselineFactory registers a baseline under name.
func baselineFactory(name string, score scoreFunc, accountants *fragmentation.Accountants, mix []frag.Shape, seed uint64) frameworkFactory {
	return func(_ context.Context, _ runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		return &baseline{name: name, handle: handle, accountants: accountants, score: score, mix: mix,
			before: map[string]cachedFrag{}, rng: rand.New(rand.NewPCG(seed, 0xba5e))}, nil
	}
}

type cachedFrag struct {
	generation int64
	value      float64
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
	acct, _ := b.accountants.Get(b.handle)
	n := fragmentation.MeasureNode(acct, info)
	c := capacity{cpu: info.GetAllocatable().GetMilliCPU(), gpu: info.GetAllocatable().GetScalarResources()[podgpu.ResourceGPU] * frag.MilliGPU}
	b.mu.Lock()
	b.node = info
	score := b.score(b, n, c, data.(*taskState).task)
	b.mu.Unlock()
	return int64(math.Round(score * 1e6)), nil
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
	name, gen := b.node.Node().Name, b.node.GetGeneration()
	before, ok := b.before[name]
	if !ok || before.generation != gen {
		before = cachedFrag{generation: gen, value: n.Expected(b.mix, frag.MeasureFGD)}
		b.before[name] = before
	}
	p, ok := n.PlaceAfter(t, b.mix, frag.MeasureFGD, before.value)
	if !ok {
		return 0
	}
	return -p.Delta
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
