package gang

import (
	"context"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// victimGroup is what preemption may evict as one: a whole gang, or a pod
// outside any gang.
type victimGroup struct {
	name     string
	priority int32
	pods     []*v1.Pod
}

// PostFilter is gang-aware preemption, used in place of DefaultPreemption:
// when a pod or gang fits nowhere, it looks for lower-priority groups to
// evict, whole gangs only, so no victim gang is left partly running. It
// takes the lowest priority first and the smallest groups first, stops as
// soon as the preemptor's whole gang can be placed, and then gives back
// every victim the placement does not need.
func (g *Gang) PostFilter(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	if !*g.args.Preemption {
		return nil, fwk.NewStatus(fwk.Unschedulable, "preemption is disabled")
	}
	logger := klog.FromContext(ctx)
	key, isGang := gangOf(pod)
	var pg *schedv1alpha1.PodGroup
	m := members{pending: []*v1.Pod{pod}}
	need := 1
	if isGang {
		var err error
		if pg, err = g.pgLister.PodGroups(key.namespace).Get(key.name); err != nil {
			return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
		}
		if m, err = g.members(key); err != nil {
			return nil, fwk.AsStatus(err)
		}
		need = int(pg.Spec.MinMember) - m.placed()
	} else {
		key = gangKey{pod.Namespace, "pod:" + pod.Name}
		pg = &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}, Spec: schedv1alpha1.PodGroupSpec{MinMember: 1}}
	}
	if need <= 0 {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	fp := fingerprint(g.handle)
	if msg, tried := g.plans.failed(preemptionKey(key), fp); tried {
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	groups, leaving, err := g.victimGroups(corev1helpers.PodPriority(pod), key)
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	// Pods already terminating (earlier victims) count as gone: a gang-mate
	// that fails while they terminate must not pick more victims.
	feasible := func(chosen []victimGroup) (*plan, error) {
		p, _, err := g.plan(ctx, key, pg, m, need, append(flatten(chosen), leaving...))
		return p, err
	}
	if len(leaving) > 0 {
		if p, err := feasible(nil); err != nil {
			return nil, fwk.AsStatus(err)
		} else if p != nil {
			return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("waiting for %d terminating pods to make room for %s", len(leaving), key))
		}
	}
	var chosen []victimGroup
	found := false
	for _, grp := range groups {
		chosen = append(chosen, grp)
		p, err := feasible(chosen)
		if err != nil {
			return nil, fwk.AsStatus(err)
		}
		if found = p != nil; found {
			break
		}
	}
	if !found {
		msg := "preemption cannot help: no lower-priority pods to evict"
		if len(groups) > 0 {
			msg = fmt.Sprintf("preemption cannot help: evicting all %d lower-priority gangs and pods would not make room", len(groups))
		}
		g.plans.recordFailure(preemptionKey(key), fp, msg)
		return nil, fwk.NewStatus(fwk.Unschedulable, msg)
	}
	// Give back victims the placement does not need, last chosen first.
	for i := len(chosen) - 2; i >= 0; i-- {
		without := slices.Delete(slices.Clone(chosen), i, i+1)
		if q, err := feasible(without); err == nil && q != nil {
			chosen = without
		}
	}
	names := make([]string, len(chosen))
	for i, grp := range chosen {
		names[i] = grp.name
		for _, victim := range grp.pods {
			g.recorder.Eventf(victim, v1.EventTypeNormal, "Preempted",
				"evicted as part of %s to make room for %s (priority %d)", grp.name, key, corev1helpers.PodPriority(pod))
			err := g.handle.ClientSet().CoreV1().Pods(victim.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{})
			if err != nil {
				logger.Error(err, "Evicting preemption victim", "victim", klog.KObj(victim))
			}
		}
	}
	msg := fmt.Sprintf("preempting %s for %s; it is placed once they are gone", strings.Join(names, ", "), key)
	if isGang {
		g.status.waiting(pg, "Preempting", msg)
	}
	logger.V(2).Info("Gang preemption", "preemptor", key, "victims", names, "pod", klog.KObj(pod))
	return nil, fwk.NewStatus(fwk.Unschedulable, msg)
}

// preemptionKey keeps a gang's failed preemption apart from its failed plan.
func preemptionKey(k gangKey) gangKey { return gangKey{k.namespace, k.name + "/preemption"} }

// victimGroups lists the bound groups with lower priority than prio, lowest
// priority first, then smallest, excluding the preemptor's own gang; and the
// pods already terminating, whose room is on its way.
func (g *Gang) victimGroups(prio int32, self gangKey) ([]victimGroup, []*v1.Pod, error) {
	nodes, err := g.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil, nil, err
	}
	var leaving []*v1.Pod
	byGang := map[gangKey]*victimGroup{}
	seen := map[types.UID]bool{}
	var groups []*victimGroup
	for _, n := range nodes {
		for _, pi := range n.GetPods() {
			p := pi.GetPod()
			if seen[p.UID] || g.handle.GetWaitingPod(p.UID) != nil {
				continue
			}
			if p.DeletionTimestamp != nil {
				leaving = append(leaving, p)
				seen[p.UID] = true
				continue
			}
			seen[p.UID] = true
			key, ok := gangOf(p)
			if ok && key == self {
				continue
			}
			if !ok {
				groups = append(groups, &victimGroup{name: "pod " + p.Namespace + "/" + p.Name, priority: corev1helpers.PodPriority(p), pods: []*v1.Pod{p}})
				continue
			}
			grp := byGang[key]
			if grp == nil {
				grp = &victimGroup{name: "gang " + key.String(), priority: corev1helpers.PodPriority(p)}
				byGang[key] = grp
				groups = append(groups, grp)
			}
			grp.pods = append(grp.pods, p)
			grp.priority = max(grp.priority, corev1helpers.PodPriority(p))
		}
	}
	// A gang is evictable only as a whole: one member at or above the
	// preemptor's priority protects all of them.
	groups = slices.DeleteFunc(groups, func(grp *victimGroup) bool { return grp.priority >= prio })
	slices.SortStableFunc(groups, func(a, b *victimGroup) int {
		if a.priority != b.priority {
			return int(a.priority - b.priority)
		}
		if len(a.pods) != len(b.pods) {
			return len(a.pods) - len(b.pods)
		}
		return strings.Compare(a.name, b.name)
	})
	out := make([]victimGroup, len(groups))
	for i, grp := range groups {
		out[i] = *grp
	}
	return out, leaving, nil
}

func flatten(groups []victimGroup) []*v1.Pod {
	var pods []*v1.Pod
	for _, grp := range groups {
		pods = append(pods, grp.pods...)
	}
	return pods
}
