package gang

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// PreFilter sends a planned member to its planned node. The gang's first
// member to arrive without a plan makes one for every pending member; if
// none exists the pod is rejected with why, and its gang-mates are rejected
// at once too until the cluster changes.
func (g *Gang) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if _, err := state.Read(simulationKey); err == nil {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	key, ok := gangOf(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if p := g.plans.get(key); p != nil {
		if node, planned := p.nodes[pod.UID]; planned {
			return &fwk.PreFilterResult{NodeNames: sets.New(node)}, nil
		}
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if apierrors.IsNotFound(err) {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s not found", key))
	}
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	m, err := g.members(key)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	need := int(pg.Spec.MinMember) - m.placed()
	if need <= 0 {
		// The gang already stands; later members schedule like any pod.
		return nil, fwk.NewStatus(fwk.Skip)
	}
	fp := fingerprint(g.handle)
	if msg, failed := g.plans.failed(key, fp); failed {
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	p, msg, err := g.plan(ctx, key, pg, m, need, nil)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	if p == nil {
		g.plans.recordFailure(key, fp, msg)
		g.metrics.rejected.WithLabelValues("no_placement").Inc()
		g.status.waiting(pg, "NoPlacement", msg)
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	g.plans.set(key, p)
	g.status.planned(pg, len(p.nodes))
	klog.FromContext(ctx).V(2).Info("Planned gang placement", "gang", key, "members", len(p.nodes), "nodes", sets.List(sets.New(valuesOf(p.nodes)...)))
	node, planned := p.nodes[pod.UID]
	if !planned {
		return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gang %s is placed without this member", key))
	}
	return &fwk.PreFilterResult{NodeNames: sets.New(node)}, nil
}

// PreFilterExtensions is nil: the plugin keeps no per-node PreFilter state.
func (g *Gang) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// plan places the gang's pending members (without the pods in victims, for
// preemption) and returns the plan, or nil and why none exists.
func (g *Gang) plan(ctx context.Context, key gangKey, pg *schedv1alpha1.PodGroup, m members, need int, victims []*v1.Pod) (*plan, string, error) {
	orderer, _ := g.orderers.Get(g.handle)
	sim, err := newSimulator(g.handle, orderer)
	if err != nil {
		return nil, "", err
	}
	logger := klog.FromContext(ctx)
	for _, v := range victims {
		if err := sim.remove(logger, v); err != nil {
			return nil, "", err
		}
	}
	for _, held := range g.plans.heldAside(key) {
		// A node that left the cluster holds nothing.
		_ = sim.add(held, held.Spec.NodeName)
	}
	placed, err := sim.place(ctx, m.pending)
	if err != nil {
		return nil, "", err
	}
	if len(placed.nodes) < need {
		return nil, g.shortfall(key, pg, m, need, placed), nil
	}
	now := g.clock.Now()
	quorumAt := pg.CreationTimestamp.Time
	for _, p := range append(append(append([]*v1.Pod{}, m.bound...), m.waiting...), m.pending...) {
		if p.CreationTimestamp.After(quorumAt) {
			quorumAt = p.CreationTimestamp.Time
		}
	}
	return &plan{
		nodes: placed.nodes, pods: placed.pods, reserved: sets.New[types.UID](),
		bound: sets.New[types.UID](), boundBefore: len(m.bound),
		created: now, deadline: now.Add(g.timeout(pg)), quorumAt: quorumAt,
	}, "", nil
}

// shortfall explains a failed plan in the user's terms: how much the gang
// needs, and how much of it fits now.
func (g *Gang) shortfall(key gangKey, pg *schedv1alpha1.PodGroup, m members, need int, placed placement) string {
	gpus := func(pods []*v1.Pod) int64 {
		var n int64
		for _, p := range pods {
			n += scalarRequests(p)["nvidia.com/gpu"]
		}
		return n
	}
	var fitted []*v1.Pod
	for _, p := range m.pending {
		if _, ok := placed.nodes[p.UID]; ok {
			fitted = append(fitted, p)
		}
	}
	msg := fmt.Sprintf("gang %s needs %d more of its %d members placed", key, need, pg.Spec.MinMember)
	if total := gpus(m.pending[:min(need, len(m.pending))]); total > 0 {
		msg = fmt.Sprintf("gang %s needs %d more members with %d GPUs in total; only %s with %d GPUs fit now",
			key, need, total, plural(len(fitted), "member"), gpus(fitted))
	} else {
		msg += fmt.Sprintf("; only %d fit now", len(fitted))
	}
	if placed.unplaced != "" {
		msg += ": " + placed.unplaced
	}
	return msg
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func valuesOf[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
