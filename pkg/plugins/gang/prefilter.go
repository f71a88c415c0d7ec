package gang

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// PreFilter sends a planned member to its planned node while the member
// still fits there; otherwise, and for the gang's first member to arrive
// without a plan, it plans every pending member. If no plan exists the pod
// is rejected with why, and its gang-mates are rejected at once too until
// the cluster changes; a gang partly bound past its timeout is torn down.
func (g *Gang) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	if _, err := state.Read(simulationKey); err == nil {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	key, ok := gangOf(pod)
	if !ok {
		// A pod whose owners ask for a gang waits until it is in it (infer.go).
		if st := g.joiningGang(ctx, pod); st != nil {
			state.Write(joiningKey, marker{})
			return nil, st
		}
		return nil, fwk.NewStatus(fwk.Skip)
	}
	old := g.plans.get(key)
	if old != nil {
		if node, planned := old.nodes[pod.UID]; planned {
			if g.planHolds(ctx, old, pod, node) {
				return &fwk.PreFilterResult{NodeNames: sets.New(node)}, nil
			}
			// What the plan relied on changed (its node went, was
			// cordoned or tainted, or another pod took the room): the
			// gang's pending members are placed again, now.
			klog.FromContext(ctx).V(2).Info("Gang plan no longer holds; re-planning", "gang", key, "member", klog.KObj(pod), "node", node)
			g.plans.dropIf(key, old)
		} else {
			old = nil
		}
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if apierrors.IsNotFound(err) {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s not found", key))
	}
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	if pg.Spec.MinMember < 1 {
		msg := fmt.Sprintf("PodGroup %s: spec.minMember must be at least 1 (got %d)", key, pg.Spec.MinMember)
		g.status.waiting(pg, "InvalidPodGroup", msg)
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
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
	fp := planFingerprint(g.handle, pg, m)
	if msg, failed := g.plans.failed(key, fp); failed {
		if st := g.tornDown(ctx, key, pg, m); st != nil {
			return nil, st
		}
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	p, msg, err := g.plan(ctx, key, pg, m, need, nil)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	if p == nil {
		if st := g.tornDown(ctx, key, pg, m); st != nil {
			return nil, st
		}
		g.plans.recordFailure(key, fp, msg)
		g.metrics.rejected.WithLabelValues("no_placement").Inc()
		g.status.waiting(pg, "NoPlacement", msg)
		// Members reserved for a plan that no longer holds would keep
		// their nodes until the timeout for a gang that cannot complete.
		if len(m.waiting) > 0 {
			g.rejectWaiting(key, fmt.Sprintf("gang %s released: its placement no longer holds and no other fits now", key))
		}
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	if old != nil && len(m.waiting) > 0 {
		// Members already waiting keep their deadline.
		p.deadline = old.deadline
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

// planHolds reports whether pod still fits on the node its gang's plan
// gave it, as the cluster is now: the node exists and the profile's
// PreFilter and Filter plugins pass it there. A preempting plan holds while
// any of its victims is still on a node (their room is on its way).
func (g *Gang) planHolds(ctx context.Context, p *plan, pod *v1.Pod, node string) bool {
	lister := g.handle.SnapshotSharedLister().NodeInfos()
	info, err := lister.Get(node)
	if err != nil || info.Node() == nil {
		return false
	}
	if p.victims.Len() > 0 {
		if nodes, err := lister.List(); err == nil && anyPodOf(nodes, p.victims) {
			return true
		}
	}
	runner := g.handle.(preFilterRunner)
	state := framework.NewCycleState()
	state.Write(simulationKey, marker{})
	result, status, _ := runner.RunPreFilterPlugins(ctx, state, pod)
	if !status.IsSuccess() || !result.AllNodes() && !result.NodeNames.Has(node) {
		return false
	}
	// As the scheduling cycle filters: with the pods nominated to the node.
	return g.handle.RunFilterPluginsWithNominatedPods(ctx, state, pod, info).IsSuccess()
}

func anyPodOf(nodes []fwk.NodeInfo, uids sets.Set[types.UID]) bool {
	for _, n := range nodes {
		for _, pi := range n.GetPods() {
			if uids.Has(pi.GetPod().UID) {
				return true
			}
		}
	}
	return false
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
	held := sets.New[types.UID]()
	for _, p := range g.plans.heldAside(key, g.clock.Now()) {
		// A node that left the cluster holds nothing.
		_ = sim.add(p, p.Spec.NodeName)
		held.Insert(p.UID)
	}
	if err := g.addNominated(sim, key, m.pending, held); err != nil {
		return nil, "", err
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
	for _, p := range slices.Concat(m.bound, m.waiting, m.pending) {
		if t := g.shared.schedulableSince(p); t.After(quorumAt) {
			quorumAt = t
		}
	}
	return &plan{
		nodes: placed.nodes, pods: placed.pods, reserved: sets.New[types.UID](),
		bound: sets.New[types.UID](), boundBefore: len(m.bound),
		created: now, deadline: now.Add(g.timeout(pg)), quorumAt: quorumAt,
	}, "", nil
}

// addNominated puts in the simulation the pods nominated to a node (the
// preemptors waiting for their victims to go) that the scheduling cycle's
// Filter counts against the gang's members: those of at least the lowest
// member's priority, outside the gang, not yet on a node and not already
// held aside by a plan. Without them a plan takes room a preemptor
// evicted pods for, and its members then fail Filter on their planned
// nodes while the plan keeps that room from everyone else.
func (g *Gang) addNominated(sim *simulator, key gangKey, pending []*v1.Pod, held sets.Set[types.UID]) error {
	if len(pending) == 0 {
		return nil
	}
	prio := corev1helpers.PodPriority(slices.MinFunc(pending, func(a, b *v1.Pod) int {
		return cmp.Compare(corev1helpers.PodPriority(a), corev1helpers.PodPriority(b))
	}))
	nodes, err := g.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		for _, pi := range g.handle.NominatedPodsForNode(n.Node().Name) {
			p := pi.GetPod()
			if own, isGang := gangOf(p); (isGang && own == key) || (!isGang && lonePodKey(p) == key) ||
				p.Spec.NodeName != "" || held.Has(p.UID) || corev1helpers.PodPriority(p) < prio {
				continue
			}
			nominated := p.DeepCopy()
			nominated.Spec.NodeName = n.Node().Name
			_ = sim.add(nominated, n.Node().Name)
		}
	}
	return nil
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
