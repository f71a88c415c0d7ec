package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// Reserve records that a planned member holds its node.
func (g *Gang) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) *fwk.Status {
	// A member preempted at Permit and placed again holds its new node.
	g.shared.evictions.forget(pod.UID)
	if key, ok := gangOf(pod); ok {
		g.plans.markReserved(key, pod.UID)
	}
	return nil
}

// Unreserve runs when a member fails after Reserve: its Permit timed out or
// was rejected, or binding failed. The whole gang lets go: every member
// still waiting is rejected and the plan dropped, so nothing stays held for
// a gang that cannot complete. Members re-plan when they are retried.
func (g *Gang) Unreserve(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	key, ok := gangOf(pod)
	if !ok {
		return
	}
	p := g.plans.drop(key)
	if p == nil {
		return // already released by an earlier member
	}
	reason := "member_failed"
	if !g.clock.Now().Before(p.deadline) {
		reason = "timeout"
	}
	g.metrics.rejected.WithLabelValues(reason).Inc()
	msg := fmt.Sprintf("gang %s released: member %s did not complete (%s)", key, pod.Name, reason)
	released := g.rejectWaiting(key, msg)
	klog.FromContext(ctx).V(2).Info("Released gang", "gang", key, "member", klog.KObj(pod), "reason", reason, "waitingRejected", released)
	if pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name); err == nil {
		g.status.waiting(pg, "Released", msg)
	}
}

// rejectWaiting rejects every member of the gang waiting at Permit.
func (g *Gang) rejectWaiting(key gangKey, msg string) int {
	n := 0
	g.handle.IterateOverWaitingPods(func(wp fwk.WaitingPod) {
		if k, ok := gangOf(wp.GetPod()); ok && k == key {
			wp.Reject(Name, msg)
			n++
		}
	})
	return n
}

// Permit lets the gang's members through together: a member waits until
// minMember members are placed, then all waiting members are allowed.
func (g *Gang) Permit(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) (*fwk.Status, time.Duration) {
	key, ok := gangOf(pod)
	if !ok {
		return nil, 0
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("reading PodGroup %s: %w", key, err)), 0
	}
	m, err := g.members(key)
	if err != nil {
		return fwk.AsStatus(err), 0
	}
	// This pod is not waiting yet: count it as placed.
	placed := m.placed()
	if !containsPod(m.waiting, pod) && !containsPod(m.bound, pod) {
		placed++
	}
	if placed >= int(pg.Spec.MinMember) {
		g.handle.IterateOverWaitingPods(func(wp fwk.WaitingPod) {
			if k, ok := gangOf(wp.GetPod()); ok && k == key {
				wp.Allow(Name)
			}
		})
		return nil, 0
	}
	wait := g.timeout(pg)
	if p := g.plans.get(key); p != nil {
		wait = max(p.deadline.Sub(g.clock.Now()), time.Second)
	}
	return fwk.NewStatus(fwk.Wait, fmt.Sprintf("%d/%d members of gang %s placed", placed, pg.Spec.MinMember, key)), wait
}

// PostBind records a bound member; when the gang stands, it reports how long
// it took and forgets the plan.
func (g *Gang) PostBind(ctx context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	key, ok := gangOf(pod)
	if !ok {
		return
	}
	p, bound := g.plans.markBound(key, pod.UID)
	if p == nil {
		return
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if err != nil || bound < int(pg.Spec.MinMember) {
		return
	}
	g.plans.forget(key)
	took := g.clock.Since(p.quorumAt)
	g.metrics.timeToBound.Observe(took.Seconds())
	g.status.bound(pg, bound, took)
	klog.FromContext(ctx).V(2).Info("Gang bound", "gang", key, "members", bound, "sinceLastMemberCreated", took)
}

func containsPod(pods []*v1.Pod, pod *v1.Pod) bool {
	for _, p := range pods {
		if p.UID == pod.UID {
			return true
		}
	}
	return false
}
