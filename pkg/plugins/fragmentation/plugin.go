// Package fragmentation is Tessera's GPUFragmentation score plugin. It
// scores each node by how much placing the pod there grows the cluster's
// expected GPU fragmentation against the workload mix: the free GPU
// capacity the expected pods could not use (Fragmentation Gradient Descent,
// Weng et al., USENIX ATC'23; the measure is pkg/fragmentation). The node
// where fragmentation grows least (or shrinks most) scores highest. The mix
// is learned from the pods the scheduler sees, with decaying counts, or
// pinned in the plugin args.
//
// GPU use per GPU, shares included, comes from the NVLinkTopology plugin of
// the same profile, which owns GPU accounting and assignment; without it,
// or on a node without a published topology, a node's free GPUs are its
// unrequested nvidia.com/gpu, counted whole.
package fragmentation

import (
	"context"
	"fmt"
	"math"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	resourcehelper "k8s.io/component-helpers/resource"
	fwk "k8s.io/kube-scheduler/framework"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/plugins/perprofile"
	"tessera.dev/tessera/pkg/podgpu"
)

// Name is the plugin's name in the registry and in profiles.
const Name = "GPUFragmentation"

const stateKey fwk.StateKey = Name

// GPUAccountant is what the plugin reads GPU use from: for a node, the free
// milli-GPUs of each healthy GPU and the GPU model; false if unknown.
type GPUAccountant interface {
	FreeGPUMilli(info fwk.NodeInfo) (free []int64, model string, ok bool)
}

// Accountants links each profile's GPUFragmentation plugin to the
// GPUAccountant of the same profile (the NVLinkTopology plugin).
type Accountants = perprofile.Links[GPUAccountant]

// NewAccountants returns an empty set.
func NewAccountants() *Accountants { return perprofile.New[GPUAccountant]() }

// GPUFragmentation is the plugin.
type GPUFragmentation struct {
	handle      fwk.Handle
	accountants *Accountants
	mix         *mix
	measure     frag.Measure
	// views caches each node's fragmentation view (see nodeView).
	views viewCache
}

var (
	_ fwk.PreFilterPlugin = &GPUFragmentation{}
	_ fwk.PreScorePlugin  = &GPUFragmentation{}
	_ fwk.ScorePlugin     = &GPUFragmentation{}
	_ fwk.SignPlugin      = &GPUFragmentation{}
)

// Factory returns the plugin's constructor; accountants supply the GPU use,
// and offer is called with each profile's plugin (to choose the GPUs of
// shares for the NVLinkTopology plugin).
func Factory(accountants *Accountants, offer func(fwk.Handle, *GPUFragmentation)) func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) {
	return func(_ context.Context, obj runtime.Object, handle fwk.Handle) (fwk.Plugin, error) {
		args, err := configv1alpha1.DecodeGPUFragmentationArgs(obj)
		if err != nil {
			return nil, err
		}
		measures := map[configv1alpha1.FragmentationMeasure]frag.Measure{
			configv1alpha1.MeasureBoth: frag.MeasureBoth, configv1alpha1.MeasureCopies: frag.MeasureCopies, configv1alpha1.MeasureFGD: frag.MeasureFGD,
		}
		pl := &GPUFragmentation{handle: handle, accountants: accountants, mix: newMix(args), measure: measures[args.Measure]}
		if handle != nil && handle.SharedInformerFactory() != nil {
			// A deleted node's view would otherwise be kept for good.
			_, err := handle.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
				DeleteFunc: func(obj any) {
					if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
						obj = d.Obj
					}
					if n, ok := obj.(*v1.Node); ok {
						pl.views.delete(n.Name)
					}
				},
			})
			if err != nil {
				return nil, fmt.Errorf("plugin %s: watching node deletions: %w", Name, err)
			}
		}
		offer(handle, pl)
		serveMetrics(pl)
		return pl, nil
	}
}

// Name returns the plugin's name.
func (pl *GPUFragmentation) Name() string { return Name }

// SignPod lets the scheduler reuse one pod's scores for the next pod of the
// same signature: the plugin's score depends only on the node, the pod's
// shape and the mix. The mix's version is part of the signature, but
// kube-scheduler signs a pod when it is queued, so pods queued together
// (a burst) carry the version of that moment: a ranking scored against one
// mix can then serve the next pod after a refresh, for as long as batching
// keeps a ranking (half a second at most). Filter still runs on the node
// it hints, so this can only cost placement quality, never a double
// booking.
func (pl *GPUFragmentation) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	task, err := TaskOf(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
	}
	// Fragments are JSON-encoded: the value's fields must be exported.
	return []fwk.SignFragment{{Key: Name, Value: struct {
		CPUMilli, GPUMilli int64
		GPUs               int
		Models             []string
		MixVersion         int64
	}{task.CPUMilli, task.GPUMilli, task.GPUs, task.Models, pl.mix.current().version}}}, nil
}

// cycleState is the pod's task, its shape's key in the nodes' views, and
// the mix it is scored against.
type cycleState struct {
	task frag.Task
	key  shapeKey
	mix  *mixSnapshot
}

func (c *cycleState) Clone() fwk.StateData { return c }

// PreFilter counts the pod into the learned mix: every pod the scheduler
// tries, once, whether or not it fits anywhere, since the mix is the
// workload that arrives. A malformed GPU annotation is left to the
// NVLinkTopology plugin, which rejects the pod with a message naming it.
func (pl *GPUFragmentation) PreFilter(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if task, err := TaskOf(pod); err == nil {
		pl.mix.observe(pod.UID, task)
	}
	return nil, nil
}

// PreFilterExtensions is nil: the plugin filters nothing.
func (pl *GPUFragmentation) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// PreScore reads the pod's task and the current mix.
func (pl *GPUFragmentation) PreScore(_ context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	task, err := TaskOf(pod)
	if err != nil {
		return fwk.NewStatus(fwk.Skip)
	}
	state.Write(stateKey, &cycleState{task: task, key: keyOf(task), mix: pl.mix.current()})
	return nil
}

// Score is the growth of the node's expected fragmentation if the pod goes
// there, negated and in thousandths of a milli-GPU; NormalizeScore maps it
// onto [0, 100].
func (pl *GPUFragmentation) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.NodeInfo) (int64, *fwk.Status) {
	data, err := state.Read(stateKey)
	if err != nil {
		return 0, fwk.AsStatus(fmt.Errorf("reading %s state: %w", Name, err))
	}
	cs := data.(*cycleState)
	delta, fits := pl.view(info, cs.mix).delta(cs.key, cs.task, pl.measure)
	if !fits {
		// Filters passed the node on what they know; by this plugin's
		// reckoning the pod does not fit, so it ranks the node last.
		return doesNotFit, nil
	}
	return -int64(math.Round(delta * 1000)), nil
}

// doesNotFit is the raw score of a node the pod does not fit by this
// plugin's reckoning: below any growth, and left out of normalization (a
// raw 0 would outrank every node where the pod fits with some growth).
const doesNotFit = math.MinInt64

// ScoreExtensions normalizes the raw scores.
func (pl *GPUFragmentation) ScoreExtensions() fwk.ScoreExtensions { return pl }

// NormalizeScore maps the raw scores linearly onto [0, 100]: the node where
// fragmentation grows least gets 100, the one where it grows most 0 (1 if
// some node gets 0 for not fitting the pod at all).
func (pl *GPUFragmentation) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	lo, hi, seen := int64(0), int64(0), false
	// floor keeps nodes the pod fits above those it does not, when there
	// are such.
	floor := int64(0)
	for _, s := range scores {
		if s.Score == doesNotFit {
			floor = 1
			continue
		}
		if !seen {
			lo, hi, seen = s.Score, s.Score, true
		}
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		switch {
		case scores[i].Score == doesNotFit:
			scores[i].Score = 0
		case hi == lo:
			scores[i].Score = fwk.MaxScore
		default:
			scores[i].Score = floor + (scores[i].Score-lo)*(fwk.MaxScore-floor)/(hi-lo)
		}
	}
	return nil
}

// TaskOf is the pod's shape for the measure.
func TaskOf(pod *v1.Pod) (frag.Task, error) {
	r, err := podgpu.Read(pod)
	if err != nil {
		return frag.Task{}, err
	}
	cpu := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})[v1.ResourceCPU]
	return frag.Task{CPUMilli: cpu.MilliValue(), GPUs: r.GPUs, GPUMilli: r.Milli, Models: r.Models}, nil
}

// PickShareGPU chooses the GPU for a share among candidates: the one whose
// taking grows the node's expected fragmentation least (FGD's choice
// inside a node); on a tie, the one the share fits most tightly.
func (pl *GPUFragmentation) PickShareGPU(pod *v1.Pod, info fwk.NodeInfo, freeMilli []int64, candidates []int) int {
	task, err := TaskOf(pod)
	if err != nil || len(candidates) == 0 {
		return -1
	}
	m := pl.mix.current()
	// The node's free CPU and model as scored (the view is cached for this
	// NodeInfo generation); its GPUs by position as the picker's caller
	// counts them.
	v := pl.view(info, m)
	n := frag.Node{FreeCPUMilli: v.node.FreeCPUMilli, FreeGPUMilli: freeMilli, Model: v.node.Model}
	return n.LeastFragmentingShare(task, candidates, m.shapes, pl.measure)
}
