package gang

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	apipod "k8s.io/kubernetes/pkg/api/v1/pod"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// PostFilter is gang-aware preemption, used in place of DefaultPreemption
// and with its rules lifted to whole gangs: a pod with preemptionPolicy
// Never preempts nobody; nothing is evicted while the pod's whole gang can
// be placed without victims (counting pods already terminating as gone);
// victims are whole gangs or lone pods of lower priority, never pods a
// PodDisruptionBudget protects, lowest priority and smallest first, as few
// as the placement needs (none for a gang being torn down; when none help,
// the gang's nominations are withdrawn); the preemptor's members are nominated to the
// nodes the placement gives them, and the plan holds that room for them
// against other gangs; victims are marked DisruptionTarget and deleted
// gracefully (their own grace period), off the scheduling goroutine.
func (g *Gang) PostFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	if !*g.args.Preemption {
		return nil, fwk.NewStatus(fwk.Unschedulable, "preemption is disabled")
	}
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return nil, fwk.NewStatus(fwk.Unschedulable, "not eligible to preempt: preemptionPolicy is Never")
	}
	if _, err := state.Read(joiningKey); err == nil {
		// Refused at PreFilter until it joins its owners' gang: it
		// preempts as a member once it is one, never alone.
		return nil, fwk.NewStatus(fwk.Unschedulable, "joining its owners' gang first")
	}
	key, pg, m, need, status := g.preemptor(pod)
	if status != nil {
		return nil, status
	}
	if isGangKey(key) && g.plans.get(key) == nil && staleParts(m, pg.Spec.MinMember, g.timeout(pg), g.clock.Now()) != nil {
		// Its bound members are being evicted (PreFilter tore it down, as
		// it does only when no plan holds): room for the rest would be
		// room for nothing. A gang whose preempting plan still waits for
		// its victims is not torn down, whatever its timeout says.
		g.withdrawNominations(m.pending)
		return clearNomination(), fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gang %s is being torn down: it preempts once it is placed whole again", key))
	}
	fp := planFingerprint(g.handle, pg, m)
	if msg, tried := g.plans.failed(preemptionKey(key), fp); tried {
		g.withdrawNominations(m.pending)
		return clearNomination(), fwk.NewStatus(fwk.Unschedulable, msg)
	}
	nodes, err := g.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	isWaiting := func(uid types.UID) bool { return g.handle.GetWaitingPod(uid) != nil }
	now := g.clock.Now()
	evicted := func(uid types.UID) bool { return g.shared.evictions.pending(now, uid) }
	groups, leaving := victimGroups(nodes, isWaiting, evicted, corev1helpers.PodPriority(pod), key)
	var found *plan
	feasible := func(chosen []victimGroup) (bool, error) {
		p, _, err := g.plan(ctx, key, pg, m, need, append(flatten(chosen), leaving...))
		found = p
		return p != nil, err
	}
	// Zero evictions while a victim-free placement exists.
	if ok, err := feasible(nil); err != nil {
		return nil, fwk.AsStatus(err)
	} else if ok {
		msg := fmt.Sprintf("%s fits without evicting anyone; retrying", key)
		if len(leaving) == 0 {
			return nil, fwk.NewStatus(fwk.Unschedulable, msg)
		}
		msg = fmt.Sprintf("waiting for %d terminating pods to make room for %s", len(leaving), key)
		return g.keepNominated(klog.FromContext(ctx), key, found, pod), fwk.NewStatus(fwk.Unschedulable, msg)
	}
	candidates, protected := withinBudgets(groups, g.pdbs(), runningPods(nodes, leaving))
	chosen, trials, err := chooseVictims(candidates, feasible)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	logger := klog.FromContext(ctx)
	if chosen == nil {
		msg := "preemption cannot help: no lower-priority pods to evict"
		if len(candidates) > 0 {
			msg = fmt.Sprintf("preemption cannot help: evicting all %d lower-priority gangs and pods would not make room", len(candidates))
		}
		if len(protected) > 0 {
			msg += fmt.Sprintf(" (%d more are protected by PodDisruptionBudgets)", len(protected))
		}
		g.plans.recordFailure(preemptionKey(key), fp, msg)
		logger.V(3).Info("Gang preemption found no victims", "preemptor", key, "candidates", len(candidates), "simulations", trials)
		g.withdrawNominations(m.pending)
		return clearNomination(), fwk.NewStatus(fwk.Unschedulable, msg)
	}
	// The last simulation need not have been the chosen set's.
	if ok, err := feasible(chosen); err != nil || !ok {
		return nil, fwk.AsStatus(fmt.Errorf("preemption plan for %s did not hold: %v", key, err))
	}
	found.victims = sets.New[types.UID]()
	for _, v := range flatten(chosen) {
		found.victims.Insert(v.UID)
	}
	names := make([]string, len(chosen))
	for i, grp := range chosen {
		names[i] = grp.name
	}
	msg := fmt.Sprintf("preempting %s for %s; it is placed once they are gone", strings.Join(names, ", "), key)
	if isGangKey(key) {
		g.plans.set(key, found)
		g.status.now(pg, schedv1alpha1.PodGroupPending, "Preempting", msg)
	}
	g.nominate(logger, found, pod)
	g.evict(logger, pod, key, chosen)
	// The plan that justifies the evictions, for an audit of each one.
	logger.V(2).Info("Gang preemption", "preemptor", key, "victims", names, "pod", klog.KObj(pod),
		"plannedNodes", found.nodes, "candidates", len(candidates), "protectedByBudgets", len(protected), "simulations", trials)
	result := &fwk.PostFilterResult{NominatingInfo: &fwk.NominatingInfo{NominatedNodeName: found.nodes[pod.UID], NominatingMode: fwk.ModeOverride}}
	return result, fwk.NewStatus(fwk.Unschedulable, msg)
}

// preemptor returns the gang a pod preempts for (a lone pod is a gang of
// one), its PodGroup, members and how many more members it needs placed; a
// non-nil status when it cannot preempt.
func (g *Gang) preemptor(pod *v1.Pod) (gangKey, *schedv1alpha1.PodGroup, members, int, *fwk.Status) {
	key, isGang := gangOf(pod)
	if !isGang {
		pg := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}, Spec: schedv1alpha1.PodGroupSpec{MinMember: 1}}
		return lonePodKey(pod), pg, members{pending: []*v1.Pod{pod}}, 1, nil
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if err != nil {
		return key, nil, members{}, 0, fwk.NewStatus(fwk.Unschedulable, err.Error())
	}
	m, err := g.members(key)
	if err != nil {
		return key, nil, members{}, 0, fwk.AsStatus(err)
	}
	need := int(pg.Spec.MinMember) - m.placed()
	if need <= 0 {
		return key, nil, members{}, 0, fwk.NewStatus(fwk.Unschedulable)
	}
	return key, pg, m, need, nil
}

// nominate records, in the scheduler's memory, each planned member of the
// preemptor's gang on its node, so that pods of lower or equal priority do
// not take the room its victims leave; the framework writes the nominated
// node of pod itself (from PostFilter's result) to the API.
func (g *Gang) nominate(logger klog.Logger, p *plan, pod *v1.Pod) {
	key, _ := gangOf(pod)
	for uid, member := range p.pods {
		// A member reserved already holds its room in the cache: nominated
		// too, it would count twice. (The scheduler itself skips members
		// bound since.)
		if uid == pod.UID || g.handle.GetWaitingPod(uid) != nil || g.plans.reserved(key, uid) {
			continue
		}
		info, err := framework.NewPodInfo(member)
		if err != nil {
			continue
		}
		g.handle.AddNominatedPod(logger, info, &fwk.NominatingInfo{NominatedNodeName: p.nodes[uid], NominatingMode: fwk.ModeOverride})
	}
}

// keepNominated renominates the gang's members to the nodes its plan (or,
// without one, the placement just found) gives them while the room they
// wait for is on its way. The scheduler drops a pod's nomination when its
// cycle fails with no nominating result, unless the pod's own status names
// a node, which a gang-mate's nomination (in memory only) never does: the
// room its victims left went to lower-priority pods a moment later.
func (g *Gang) keepNominated(logger klog.Logger, key gangKey, found *plan, pod *v1.Pod) *fwk.PostFilterResult {
	p := found
	if held := g.plans.get(key); held != nil {
		if _, ok := held.nodes[pod.UID]; ok {
			p = held
		}
	}
	node, ok := p.nodes[pod.UID]
	if !ok {
		return nil
	}
	g.nominate(logger, p, pod)
	return &fwk.PostFilterResult{NominatingInfo: &fwk.NominatingInfo{NominatedNodeName: node, NominatingMode: fwk.ModeOverride}}
}

// clearNomination is the PostFilter result that clears the preemptor's
// nominated node, as DefaultPreemption returns when preemption cannot help:
// a nomination left from an earlier preemption would hold room for it that
// it will not take, against every pod of lower or equal priority.
func clearNomination() *fwk.PostFilterResult {
	return &fwk.PostFilterResult{NominatingInfo: &fwk.NominatingInfo{NominatedNodeName: "", NominatingMode: fwk.ModeOverride}}
}

// withdrawNominations drops the nominations of a gang's pending members
// once preemption cannot help it: nominate made them in the scheduler's
// memory only, so nothing else clears them before the members are placed,
// and they would hold their nodes against lower-priority pods and every
// other gang's plan.
func (g *Gang) withdrawNominations(pods []*v1.Pod) {
	for _, p := range pods {
		g.handle.DeleteNominatedPodIfExists(p)
	}
}

// evict rejects the victims waiting at Permit (their gang lets go of its
// reservation and is retried, as kube-scheduler's preemption rejects
// waiting victims), and deletes the others on a goroutine of its own, each
// gracefully after marking it DisruptionTarget as kube-scheduler's
// preemption does.
func (g *Gang) evict(logger klog.Logger, preemptor *v1.Pod, key gangKey, victims []victimGroup) {
	ctx := g.shared.ctx
	client := g.handle.ClientSet()
	var running []*v1.Pod
	var uids []types.UID
	for _, grp := range victims {
		for _, victim := range grp.pods {
			// Preempt, not Reject: the member goes back to the active
			// queue, not the unschedulable pool.
			if wp := g.handle.GetWaitingPod(victim.UID); wp != nil &&
				wp.Preempt(Name, fmt.Sprintf("preempted at Permit as part of %s to make room for %s", grp.name, key)) {
				uids = append(uids, victim.UID)
				continue
			}
			if grp.waiting {
				// Allowed a moment ago, it binds: a gang chosen as waiting
				// was chosen without its budgets, so it is not deleted.
				// Its room does not come; the preemptor tries again.
				continue
			}
			uids = append(uids, victim.UID)
			running = append(running, victim)
			g.recorder.Eventf(victim, v1.EventTypeNormal, "Preempted",
				"evicted as part of %s to make room for %s (priority %d)", grp.name, key, corev1helpers.PodPriority(preemptor))
		}
	}
	g.shared.evictions.add(g.clock.Now(), uids...)
	g.metrics.preemptions.Inc()
	go func() {
		for _, victim := range running {
			status := victim.Status.DeepCopy()
			if apipod.UpdatePodCondition(status, &v1.PodCondition{
				Type:    v1.DisruptionTarget,
				Status:  v1.ConditionTrue,
				Reason:  v1.PodReasonPreemptionByScheduler,
				Message: fmt.Sprintf("%s: preempting to make room for %s", preemptor.Spec.SchedulerName, key),
			}) {
				if err := schedutil.PatchPodStatus(ctx, client, victim.Name, victim.Namespace, &victim.Status, status); err != nil && !apierrors.IsNotFound(err) {
					logger.Error(err, "Marking preemption victim", "victim", klog.KObj(victim))
				}
			}
			if err := schedutil.DeletePod(ctx, client, victim); err != nil && !apierrors.IsNotFound(err) {
				// Not leaving after all: a later preemption may choose it again.
				g.shared.evictions.forget(victim.UID)
				logger.Error(err, "Evicting preemption victim", "victim", klog.KObj(victim))
			}
		}
	}()
}

// pdbs lists the cluster's PodDisruptionBudgets; none when they cannot be
// read (then preemption treats no pod as protected, as kube-scheduler does).
func (g *Gang) pdbs() []*policyv1.PodDisruptionBudget {
	list, err := g.pdbLister.List(labels.Everything())
	if err != nil {
		return nil
	}
	return list
}

// lonePodKey names a pod outside any gang among the gangs' keys.
func lonePodKey(pod *v1.Pod) gangKey { return gangKey{pod.Namespace, "pod:" + pod.Name} }

func isGangKey(k gangKey) bool { return !strings.HasPrefix(k.name, "pod:") }

// preemptionKey keeps a gang's failed preemption apart from its failed plan.
func preemptionKey(k gangKey) gangKey { return gangKey{k.namespace, k.name + "/preemption"} }
