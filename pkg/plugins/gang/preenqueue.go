package gang

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// PreEnqueue keeps a gang's members out of the scheduling queue until its
// PodGroup exists and at least minMember members do: nothing is tried, and
// nothing is held, for a gang that cannot complete yet.
func (g *Gang) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	key, ok := gangOf(pod)
	if !ok {
		return nil
	}
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if apierrors.IsNotFound(err) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("waiting for PodGroup %s to be created", key))
	}
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("reading PodGroup %s: %w", key, err))
	}
	m, err := g.members(key)
	if err != nil {
		return fwk.AsStatus(err)
	}
	if pg.Spec.MinMember < 1 {
		msg := fmt.Sprintf("PodGroup %s: spec.minMember must be at least 1 (got %d)", key, pg.Spec.MinMember)
		g.status.waiting(pg, "InvalidPodGroup", msg)
		g.recorder.Event(pod, v1.EventTypeWarning, "InvalidPodGroup", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	if created := m.created(); created < int(pg.Spec.MinMember) {
		// A gang that lost members (their node went, no controller made
		// them again) can hold bound members for good: tear it down after
		// its timeout, as PreFilter does for one that cannot be placed.
		if g.tearDownIfStale(klog.FromContext(ctx), key, pg, m) {
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("gang %s is partly bound past its timeout: its bound members are being evicted", key))
		}
		msg := fmt.Sprintf("%d/%d members of gang %s created", created, pg.Spec.MinMember, key)
		if m.gated > 0 {
			msg += fmt.Sprintf(" and schedulable (%d held by scheduling gates)", m.gated)
		}
		g.status.waiting(pg, "MembersMissing", msg)
		// The pod is held before any scheduling cycle, so no condition
		// says why; an event on it does (the recorder folds repeats).
		g.recorder.Event(pod, v1.EventTypeNormal, "GangIncomplete", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	return nil
}
