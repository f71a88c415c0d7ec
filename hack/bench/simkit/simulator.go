// Package simkit runs pods one at a time through one profile of the real
// scheduler framework in-process, as kube-scheduler's scheduling and
// binding cycles do, minus the queue and the apiserver. The fragmentation
// benchmark replays traces with it; bench-scale's --in-process mode
// measures each profile's CPU per pod with it.
package simkit

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
)

// Options say how the simulator looks for feasible nodes.
type Options struct {
	// Seed seeds the random tie-breaking of EveryNode and the sampling
	// of plugin metrics.
	Seed uint64
	// EveryNode filters every node, one after the other (the FGD paper's
	// protocol). Otherwise nodes are filtered as kube-scheduler filters
	// them: Parallelism at a time, from where the last pod's search
	// stopped, until the profile's percentageOfNodesToScore (adaptive when
	// unset) of them are feasible.
	EveryNode bool
	// Parallelism is the framework's parallelism (kube-scheduler's
	// default is 16); 0 means 1.
	Parallelism int
	// Batch places a pod on the previous pod's ranking where
	// OpportunisticBatching (on by default since Kubernetes 1.35) would:
	// the pods sign alike and the previous pod's node no longer fits.
	Batch bool
}

// Simulator places pods through one profile. The scheduler cache and its
// incremental snapshot, PreFilter, Filter, PreScore, Score and
// NormalizeScore with the profile's weights, the highest total (ties
// broken at random with EveryNode, as the FGD paper's protocol and
// kube-scheduler before 1.36 do, by kube-scheduler 1.36's heap otherwise),
// assume, Reserve, Permit,
// PreBind and the Bind plugins run as in kube-scheduler. Bindings go to a
// fake clientset, which hands them back; the bound pod, with the binding's
// annotations copied as the apiserver copies them, then confirms the
// assumed pod in the cache, as the pod informer would. A pod that fits
// nowhere is not retried, and no PostFilter (preemption) runs.
type Simulator struct {
	// Bindings are the bindings made, by pod UID.
	Bindings map[types.UID]*v1.Binding
	// Filtered counts the nodes filtered: those a search processed, as
	// kube-scheduler counts them to start the next search (not the
	// feasible nodes found past enough), and the hints (not batching's
	// check of the last pod's node). Scored counts the nodes scored.
	Filtered, Scored int64
	// Batched counts the pods placed on a batching hint.
	Batched int64

	fw       framework.Framework
	cache    internalcache.Cache
	snapshot *internalcache.Snapshot
	rng      *rand.Rand
	logger   klog.Logger
	o        Options
	// next is where the next pod's search for feasible nodes starts.
	next int
	// cycle counts the scheduling cycles, for batching.
	cycle int64
	// signatures are the pods' batching signatures, taken when queued.
	signatures map[types.UID]fwk.PodSignature
	// sampler decides the cycles that record plugin metrics.
	sampler *rand.Rand
}

// New returns a simulator of profile over nodes, its plugins from registry.
func New(ctx context.Context, registry frameworkruntime.Registry, profile *config.KubeSchedulerProfile, nodes []*v1.Node, o Options) (*Simulator, error) {
	s := &Simulator{
		cache:    internalcache.New(ctx, nil, false),
		snapshot: internalcache.NewEmptySnapshot(),
		Bindings: map[types.UID]*v1.Binding{},
		rng:      rand.New(rand.NewPCG(o.Seed, 0x5eed)),
		logger:   klog.FromContext(ctx),
		o:        o,
		// Its own source: the tie-breaking draws stay as they were.
		sampler:    rand.New(rand.NewPCG(o.Seed, 0x5a3b1e)),
		signatures: map[types.UID]fwk.PodSignature{},
	}
	client := fake.NewClientset()
	client.PrependReactor("create", "pods", func(action clienttesting.Action) (bool, runtime.Object, error) {
		create, ok := action.(clienttesting.CreateAction)
		if !ok || action.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := create.GetObject().(*v1.Binding)
		s.Bindings[b.UID] = b
		return true, b, nil
	})
	fw, err := frameworkruntime.NewFramework(ctx, registry, profile,
		frameworkruntime.WithClientSet(client),
		frameworkruntime.WithInformerFactory(informers.NewSharedInformerFactory(client, 0)),
		frameworkruntime.WithSnapshotSharedLister(s.snapshot),
		frameworkruntime.WithEventRecorder(&events.FakeRecorder{}),
		frameworkruntime.WithParallelism(max(o.Parallelism, 1)),
	)
	if err != nil {
		return nil, err
	}
	s.fw = fw
	for _, n := range nodes {
		s.cache.AddNode(s.logger, n)
	}
	return s, nil
}

// Enqueue signs the pods for batching, as kube-scheduler's queue signs a
// pod when it is added: the signature is the pod's as it was queued.
func (s *Simulator) Enqueue(ctx context.Context, pods []*v1.Pod) {
	if !s.o.Batch {
		return
	}
	for _, p := range pods {
		s.signatures[p.UID] = s.fw.SignPod(ctx, p)
	}
}

// Schedule places one pod; "" if it fits nowhere.
func (s *Simulator) Schedule(ctx context.Context, pod *v1.Pod) (string, error) {
	// Every pod taken from the queue is a cycle, as kube-scheduler counts
	// them: one that fails ends a batch.
	s.cycle++
	if err := s.cache.UpdateSnapshot(s.logger, s.snapshot); err != nil {
		return "", err
	}
	state := framework.NewCycleState()
	if !s.o.EveryNode {
		// kube-scheduler records plugin metrics in one cycle in ten.
		state.SetRecordPluginMetrics(s.sampler.IntN(100) < 10)
	}
	pre, status, _ := s.fw.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() {
		return "", rejected(status)
	}
	all, err := s.snapshot.NodeInfos().List()
	if err != nil {
		return "", err
	}
	nodes := all
	if pre != nil && !pre.AllNodes() {
		nodes = nil
		for _, n := range all {
			if pre.NodeNames.Has(n.Node().Name) {
				nodes = append(nodes, n)
			}
		}
	}
	var signature fwk.PodSignature
	var hint string
	if s.o.Batch {
		var queued bool
		if signature, queued = s.signatures[pod.UID]; !queued {
			signature = s.fw.SignPod(ctx, pod)
		}
		hint = s.fw.GetNodeHint(ctx, pod, signature, state, s.cycle)
	}
	var feasible []fwk.NodeInfo
	rejectedHint := ""
	if hint != "" {
		var found bool
		if feasible, found, err = s.filterHint(ctx, state, pod, hint); err != nil {
			return "", err
		}
		if found && len(feasible) == 0 {
			rejectedHint = hint
		}
	}
	if len(feasible) == 0 {
		if s.o.EveryNode {
			feasible, err = s.filterEvery(ctx, state, pod, nodes)
		} else {
			feasible, err = s.filterLikeKubeScheduler(ctx, state, pod, nodes, len(all), rejectedHint)
		}
		if err != nil {
			return "", err
		}
	}
	var node string
	switch len(feasible) {
	case 0:
		return "", nil
	case 1:
		// kube-scheduler skips scoring with a single feasible node.
		node = feasible[0].Node().Name
		if s.o.Batch {
			s.fw.StoreScheduleResults(ctx, signature, hint, node, nil, s.cycle)
		}
	default:
		if st := s.fw.RunPreScorePlugins(ctx, state, pod, feasible); !st.IsSuccess() {
			return "", st.AsError()
		}
		scores, st := s.fw.RunScorePlugins(ctx, state, pod, feasible)
		if !st.IsSuccess() {
			return "", st.AsError()
		}
		s.Scored += int64(len(feasible))
		if s.o.EveryNode {
			node = s.selectHost(scores)
			break
		}
		ranking := rank(scores)
		node = ranking.Pop()
		if s.o.Batch {
			s.fw.StoreScheduleResults(ctx, signature, hint, node, ranking, s.cycle)
		}
	}
	if node == hint && hint != "" {
		s.Batched++
	}
	return node, s.bind(ctx, state, pod, node)
}

func (s *Simulator) filterEvery(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) ([]fwk.NodeInfo, error) {
	var feasible []fwk.NodeInfo
	for _, n := range nodes {
		st := s.fw.RunFilterPlugins(ctx, state, pod, n)
		switch {
		case st.IsSuccess():
			feasible = append(feasible, n)
		case !st.IsRejected():
			return nil, st.AsError()
		}
	}
	s.Filtered += int64(len(nodes))
	return feasible, nil
}

// filterLikeKubeScheduler is kube-scheduler's findNodesThatPassFilters:
// filters in parallel from where the last search stopped, and stops once
// enough nodes are feasible. As there, the next search starts after the
// nodes this one processed, and rejectedHint (the batching hint Filter
// rejected, "" if none) if the search did not process it too, over all
// nodes of the snapshot. No pod is nominated, so RunFilterPlugins is
// RunFilterPluginsWithNominatedPods.
func (s *Simulator) filterLikeKubeScheduler(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo, all int, rejectedHint string) ([]fwk.NodeInfo, error) {
	if len(nodes) == 0 {
		return nil, nil
	}
	want := NumFeasibleNodesToFind(s.fw.PercentageOfNodesToScore(), len(nodes))
	feasible := make([]fwk.NodeInfo, want)
	var found, rejected atomic.Int32
	var failed atomic.Pointer[fwk.Status]
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.fw.Parallelizer().Until(ctx, len(nodes), func(i int) {
		n := nodes[(s.next+i)%len(nodes)]
		st := s.fw.RunFilterPlugins(ctx, state, pod, n)
		switch {
		case st.IsSuccess():
			if k := found.Add(1); k > int32(want) {
				cancel(errors.New("enough feasible nodes"))
				found.Add(-1)
			} else {
				feasible[k-1] = n
			}
		case st.IsRejected():
			rejected.Add(1)
		default:
			failed.CompareAndSwap(nil, st)
			cancel(errors.New("a Filter failed"))
		}
	}, "Filter")
	if st := failed.Load(); st != nil {
		return nil, st.AsError()
	}
	processed := int(found.Load() + rejected.Load())
	s.Filtered += int64(processed)
	if rejectedHint != "" && !processedBy(nodes, s.next, processed, rejectedHint) {
		processed++
	}
	s.next = (s.next + processed) % all
	return feasible[:found.Load()], nil
}

// processedBy reports whether node is among the processed nodes a search
// from start went through (kube-scheduler counts a node's status once).
func processedBy(nodes []fwk.NodeInfo, start, processed int, node string) bool {
	for i := range processed {
		if nodes[(start+i)%len(nodes)].Node().Name == node {
			return true
		}
	}
	return false
}

// NumFeasibleNodesToFind is kube-scheduler's: percentage of all nodes (at
// least 100), the percentage adaptive when 0 or unset (50 % less 1 % per
// 125 nodes, at least 5 %).
func NumFeasibleNodesToFind(percentage *int32, all int) int {
	const minNodes, minPercentage = 100, 5
	if all < minNodes {
		return all
	}
	p := 0
	if percentage != nil {
		p = int(*percentage)
	}
	if p == 0 {
		p = max(50-all/125, minPercentage)
	}
	return max(all*p/100, minNodes)
}

// filterHint filters the batching hint alone, as kube-scheduler filters a
// nominated node first; found is false if the hint is no node.
func (s *Simulator) filterHint(ctx context.Context, state fwk.CycleState, pod *v1.Pod, hint string) (feasible []fwk.NodeInfo, found bool, err error) {
	n, err := s.snapshot.NodeInfos().Get(hint)
	if err != nil {
		return nil, false, nil
	}
	s.Filtered++
	st := s.fw.RunFilterPlugins(ctx, state, pod, n)
	switch {
	case st.IsSuccess():
		return []fwk.NodeInfo{n}, true, nil
	case st.IsRejected():
		return nil, true, nil
	}
	return nil, true, st.AsError()
}

// ranking is the scored nodes as kube-scheduler 1.36 ranks them: a heap,
// best total first, ties by Randomizer, which only extenders set (so,
// here, by the heap's order). Its choice is the first node popped, and
// batching keeps the rest (framework.SortedScoredNodes).
type ranking struct{ nodes nodeHeap }

func rank(scores []fwk.NodePluginScores) *ranking {
	r := &ranking{nodes: scores}
	heap.Init(&r.nodes)
	return r
}

// Pop takes the best node off the ranking.
func (r *ranking) Pop() string { return heap.Pop(&r.nodes).(fwk.NodePluginScores).Name }

// Len is how many nodes are left on the ranking.
func (r *ranking) Len() int { return r.nodes.Len() }

// nodeHeap is kube-scheduler's nodeScoreHeap.
type nodeHeap []fwk.NodePluginScores

func (h nodeHeap) Len() int { return len(h) }
func (h nodeHeap) Less(i, j int) bool {
	return h[i].TotalScore > h[j].TotalScore || h[i].TotalScore == h[j].TotalScore && h[i].Randomizer > h[j].Randomizer
}
func (h nodeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push is heap.Interface's; a ranking only shrinks.
func (h *nodeHeap) Push(x any) { *h = append(*h, x.(fwk.NodePluginScores)) }

func (h *nodeHeap) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}

// selectHost takes the highest total score, ties broken uniformly at random
// (the FGD paper's protocol, and kube-scheduler's before 1.36).
func (s *Simulator) selectHost(scores []fwk.NodePluginScores) string {
	best, ties := scores[0], 1
	for _, sc := range scores[1:] {
		switch {
		case sc.TotalScore > best.TotalScore:
			best, ties = sc, 1
		case sc.TotalScore == best.TotalScore:
			ties++
			if s.rng.IntN(ties) == 0 {
				best = sc
			}
		}
	}
	return best.Name
}

// bind runs the scheduling cycle's tail and the binding cycle for the pod
// on node, and confirms the bound pod in the cache.
func (s *Simulator) bind(ctx context.Context, state fwk.CycleState, pod *v1.Pod, node string) error {
	assumed := pod.DeepCopy()
	assumed.Spec.NodeName = node
	if err := s.cache.AssumePod(s.logger, assumed); err != nil {
		return err
	}
	fail := func(st *fwk.Status, stage string) error {
		s.fw.RunReservePluginsUnreserve(ctx, state, assumed, node)
		if err := s.cache.ForgetPod(s.logger, assumed); err != nil {
			return err
		}
		return fmt.Errorf("%s of pod %s on %s: %w", stage, pod.Name, node, st.AsError())
	}
	if st := s.fw.RunReservePluginsReserve(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "reserve")
	}
	if _, st := s.fw.RunPermitPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "permit")
	}
	if st := s.fw.RunPreBindPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "pre-bind")
	}
	if st := s.fw.RunBindPlugins(ctx, state, assumed, node); !st.IsSuccess() {
		return fail(st, "bind")
	}
	b, ok := s.Bindings[pod.UID]
	if !ok {
		return fmt.Errorf("pod %s: no binding reached the client", pod.Name)
	}
	bound := assumed.DeepCopy()
	for k, v := range b.Annotations {
		if bound.Annotations == nil {
			bound.Annotations = map[string]string{}
		}
		bound.Annotations[k] = v
	}
	return s.cache.AddPod(s.logger, bound)
}

// rejected turns a PreFilter rejection into "no node" and anything else
// into an error.
func rejected(st *fwk.Status) error {
	if st.IsRejected() {
		return nil
	}
	return st.AsError()
}
