package launcher

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"
	"sigs.k8s.io/kueue/pkg/workload/finish"
	"sigs.k8s.io/kueue/pkg/workload/patching"
)

// newWorkload returns the Kueue Workload for a job or replica: one PodSet
// per role, in the LocalQueue queue, with the PriorityClass's priority.
func newWorkload(ctx context.Context, c ctrlclient.Reader, namespace, name, ownerKind, ownerName, queue, priorityClass string, podSets []kueue.PodSet) (*kueue.Workload, error) {
	wl := &kueue.Workload{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: namespace,
			Labels:    map[string]string{LabelOwnerKind: ownerKind, LabelOwnerName: ownerName},
		},
		Spec: kueue.WorkloadSpec{QueueName: kueue.LocalQueueName(queue), PodSets: podSets},
	}
	if priorityClass != "" {
		var pc schedulingv1.PriorityClass
		if err := c.Get(ctx, types.NamespacedName{Name: priorityClass}, &pc); err != nil {
			return nil, fmt.Errorf("reading PriorityClass %q: %w", priorityClass, err)
		}
		wl.Spec.PriorityClassRef = &kueue.PriorityClassRef{Group: schedulingv1.GroupName, Kind: "PriorityClass", Name: priorityClass}
		wl.Spec.Priority = &pc.Value
	}
	return wl, nil
}

// admitted reports whether Kueue admitted the Workload (quota reserved and
// every admission check Ready) and has not evicted it since.
func admitted(wl *kueue.Workload) bool {
	return workload.IsAdmitted(wl) && !evicted(wl)
}

// evicted reports whether Kueue evicted the Workload (preemption, reclaim
// within the cohort, a check's retry) and the launcher has not yet released
// its quota reservation.
func evicted(wl *kueue.Workload) bool {
	return apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadEvicted) && workload.HasQuotaReservation(wl)
}

// waitReason says why a Workload is not admitted: Kueue's own message for a
// quota wait, or the message of a pending admission check.
func waitReason(wl *kueue.Workload) string {
	if wl == nil {
		return "creating the Kueue Workload"
	}
	if workload.HasQuotaReservation(wl) {
		for _, check := range wl.Status.AdmissionChecks {
			if check.State != kueue.CheckStateReady {
				if check.Message == "" {
					check.Message = "being evaluated"
				}
				return fmt.Sprintf("quota reserved in ClusterQueue %s; admission check %s: %s", wl.Status.Admission.ClusterQueue, check.Name, check.Message)
			}
		}
		return "quota reserved in ClusterQueue " + string(wl.Status.Admission.ClusterQueue)
	}
	if !workload.IsActive(wl) {
		return "deactivated by Kueue; set the Workload's spec.active to true to queue it again"
	}
	if rs := wl.Status.RequeueState; rs != nil && rs.RequeueAt != nil {
		return fmt.Sprintf("requeued %d times; back in LocalQueue %s at %s", ptr.Deref(rs.Count, 0), wl.Spec.QueueName, rs.RequeueAt.UTC().Format(time.RFC3339))
	}
	if c := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadQuotaReserved); c != nil && c.Message != "" {
		return "waiting for quota: " + c.Message
	}
	return "waiting for quota in LocalQueue " + string(wl.Spec.QueueName)
}

// releaseEvicted does what Kueue's job integrations do once an evicted
// job's pods are gone: it clears the Workload's quota reservation, so that
// Kueue requeues it.
func releaseEvicted(ctx context.Context, c ctrlclient.Client, wl *kueue.Workload, clk clock.Clock) error {
	ev := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadEvicted)
	if ev == nil {
		return nil
	}
	return patching.PatchAdmissionStatus(ctx, c, wl, clk, func(wl *kueue.Workload) (bool, error) {
		requeued := ev.Reason == kueue.WorkloadEvictedByPreemption || ev.Reason == kueue.WorkloadEvictedDueToNodeFailures
		updated := workload.SetRequeuedCondition(wl, ev.Reason, ev.Message, requeued)
		if workload.UnsetQuotaReservationWithCondition(wl, kueue.WorkloadQuotaReservedReasonPendingEvaluation, ev.Message, clk.Now()) {
			updated = true
		}
		return updated, nil
	})
}

// finishWorkload marks the Workload finished, returning its quota.
func finishWorkload(ctx context.Context, c ctrlclient.Client, wl *kueue.Workload, succeeded bool, message string, clk clock.Clock) error {
	reason := kueue.WorkloadFinishedReasonSucceeded
	if !succeeded {
		reason = kueue.WorkloadFinishedReasonFailed
	}
	return finish.Finish(ctx, c, wl, reason, message, clk)
}

// admittedCount is how many pods of a PodSet Kueue admitted (fewer than
// asked under partial admission).
func admittedCount(wl *kueue.Workload, ps kueue.PodSetReference, asked int32) int32 {
	if wl.Status.Admission != nil {
		for _, a := range wl.Status.Admission.PodSetAssignments {
			if a.Name == ps && a.Count != nil {
				return *a.Count
			}
		}
	}
	return asked
}

// podTerminal reports whether a pod has ended.
func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// podReady reports whether a pod's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
