package gang

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedutil "k8s.io/kubernetes/pkg/scheduler/util"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// A gang is partly bound when some members run but fewer than minMember
// are placed while others wait: a bind that failed after some members bound,
// a scheduler restart in the middle of a gang's binding burst, or a member
// lost and re-created. Its bound members hold GPUs for a job that cannot
// start. Within the gang's timeout it is either completed (its pending
// members planned around the bound ones) or its bound members are evicted,
// gracefully, so that the gang can be placed whole again.

// sweepInterval is how often partly bound gangs are looked for.
const sweepInterval = 5 * time.Second

// partlyBoundSince returns when the gang became partly bound (the newest
// bound member's PodScheduled time, which survives scheduler restarts), or
// false when it is not partly bound.
func partlyBoundSince(m members, minMember int32) (time.Time, bool) {
	if len(m.bound) == 0 || len(m.pending) == 0 || m.placed() >= int(minMember) {
		return time.Time{}, false
	}
	var since time.Time
	for _, p := range m.bound {
		t := p.CreationTimestamp.Time
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionTrue {
				t = c.LastTransitionTime.Time
			}
		}
		if t.After(since) {
			since = t
		}
	}
	return since, true
}

// staleParts returns the bound members to evict when the gang has been
// partly bound for longer than timeout at now; nil otherwise.
func staleParts(m members, minMember int32, timeout time.Duration, now time.Time) []*v1.Pod {
	since, partial := partlyBoundSince(m, minMember)
	if !partial || now.Sub(since) < timeout {
		return nil
	}
	return m.bound
}

// tearDownIfStale evicts the bound members of a gang that has been partly
// bound past its timeout and reports whether it did.
func (g *Gang) tearDownIfStale(logger klog.Logger, key gangKey, pg *schedv1alpha1.PodGroup, m members) bool {
	victims := staleParts(m, pg.Spec.MinMember, g.timeout(pg), g.clock.Now())
	if victims == nil {
		return false
	}
	msg := fmt.Sprintf("gang %s has had %d of its %d members bound for longer than its %s timeout while the rest cannot be placed; evicting the bound members so that it is placed whole",
		key, len(victims), pg.Spec.MinMember, g.timeout(pg))
	g.status.waiting(pg, "PartlyBound", msg)
	for _, p := range victims {
		g.recorder.Event(p, v1.EventTypeWarning, "GangTornDown", msg)
	}
	g.metrics.torndown.Inc()
	logger.Info("Tearing down partly bound gang", "gang", key, "bound", len(victims), "minMember", pg.Spec.MinMember)
	ctx, client := g.shared.ctx, g.handle.ClientSet()
	go func() {
		for _, p := range victims {
			if err := schedutil.DeletePod(ctx, client, p); err != nil && !apierrors.IsNotFound(err) {
				logger.Error(err, "Evicting member of partly bound gang", "pod", klog.KObj(p))
			}
		}
	}()
	return true
}

// tornDown tears the gang down if it has been partly bound past its timeout
// and returns the pod's status saying so; nil if it has not.
func (g *Gang) tornDown(ctx context.Context, key gangKey, pg *schedv1alpha1.PodGroup, m members) *fwk.Status {
	if !g.tearDownIfStale(klog.FromContext(ctx), key, pg, m) {
		return nil
	}
	return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("gang %s is partly bound past its timeout: its bound members are being evicted", key))
}

// sweepPartlyBound wakes, every interval, the pending members of each gang
// partly bound past its timeout, so that a member's scheduling cycle (on
// the leading scheduler only) tears the gang down even when no cluster
// event would retry it.
func (s *Shared) sweepPartlyBound(ctx context.Context, g *Gang, interval time.Duration) {
	logger := klog.FromContext(ctx)
	ticker := s.clock.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C():
		}
		for _, k := range s.allPods.ListIndexFuncValues(gangIndex) {
			ns, name, _ := cutKey(k)
			key := gangKey{ns, name}
			pg, err := s.pgLister.PodGroups(ns).Get(name)
			if err != nil {
				continue
			}
			m, err := g.members(key)
			if err != nil || staleParts(m, pg.Spec.MinMember, g.timeout(pg), s.clock.Now()) == nil {
				continue
			}
			pods := map[string]*v1.Pod{}
			for _, p := range m.pending {
				pods[p.Namespace+"/"+p.Name] = p
			}
			g.handle.Activate(logger, pods)
		}
	}
}
