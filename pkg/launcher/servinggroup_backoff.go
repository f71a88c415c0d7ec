package launcher

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// ConditionReplicaBackoff, on a ServingGroup, is true while a replica
// whose pod ended waits out its restart backoff; its message names the
// replica, why it restarted and when it is retried.
const ConditionReplicaBackoff = "ReplicaBackoff"

// Backoff is a serving replica's restart backoff: Base after the first
// failure, doubling with each further one up to Max; a replica that served
// for Reset starts again from Base.
type Backoff struct {
	Base, Max, Reset time.Duration
}

// DefaultBackoff is the kubelet's CrashLoopBackOff shape.
func DefaultBackoff() Backoff {
	return Backoff{Base: 10 * time.Second, Max: 5 * time.Minute, Reset: 10 * time.Minute}
}

// delay is the wait before the failures-th restart (failures >= 1).
func (b Backoff) delay(failures int32) time.Duration {
	d := b.Base
	for i := int32(1); i < failures && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// replicaStatus returns the status entry of replica index, or nil.
func replicaStatus(sg *tesserav1alpha1.ServingGroup, index int) *tesserav1alpha1.ServingReplicaStatus {
	for i := range sg.Status.ReplicaStatuses {
		if int(sg.Status.ReplicaStatuses[i].Index) == index {
			return &sg.Status.ReplicaStatuses[i]
		}
	}
	return nil
}

// recordFailure returns the replica's status after pod ended at now: one
// more restart, the failure count grown (or back at 1 if the replica ran
// for the reset time since its last retry), and the time of the retry,
// rounded up to the second the API keeps. A pod already counted (its UID
// recorded) changes nothing; counted reports whether it was new.
func (b Backoff) recordFailure(st tesserav1alpha1.ServingReplicaStatus, pod *corev1.Pod, now time.Time) (out tesserav1alpha1.ServingReplicaStatus, counted bool) {
	if st.LastFailedPod == string(pod.UID) {
		return st, false
	}
	if st.RetryAfter != nil && now.Sub(st.RetryAfter.Time) >= b.Reset {
		st.Failures = 0
	}
	st.Restarts++
	st.Failures++
	st.LastFailedPod = string(pod.UID)
	retry := now.Add(b.delay(st.Failures))
	if r := retry.Truncate(time.Second); !r.Equal(retry) {
		retry = r.Add(time.Second)
	}
	st.RetryAfter = &metav1.Time{Time: retry}
	why := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		why += ": " + pod.Status.Reason
	}
	st.Message = fmt.Sprintf("pod %s ended (%s)", pod.Name, why)
	return st, true
}

// waitBeforeStart is how long a replica must still wait before its pods
// are created: 0 when it may start now.
func waitBeforeStart(st *tesserav1alpha1.ServingReplicaStatus, now time.Time) time.Duration {
	if st == nil || st.RetryAfter == nil || !now.Before(st.RetryAfter.Time) {
		return 0
	}
	return st.RetryAfter.Sub(now)
}

// backoffCondition is the ReplicaBackoff condition for the replicas'
// statuses at now: the first replica still waiting, or false.
func backoffCondition(sg *tesserav1alpha1.ServingGroup, now time.Time) metav1.Condition {
	cond := metav1.Condition{Type: ConditionReplicaBackoff, Status: metav1.ConditionFalse, Reason: "NoBackoff", Message: "no replica is waiting to restart", ObservedGeneration: sg.Generation}
	for i := range sg.Status.ReplicaStatuses {
		st := &sg.Status.ReplicaStatuses[i]
		if st.Index >= sg.Spec.Replicas {
			continue
		}
		if wait := waitBeforeStart(st, now); wait > 0 {
			cond.Status, cond.Reason = metav1.ConditionTrue, "RestartBackoff"
			cond.Message = fmt.Sprintf("replica %d not serving: %s; restart %d, retrying at %s",
				st.Index, st.Message, st.Restarts, st.RetryAfter.UTC().Format(time.RFC3339))
			return cond
		}
	}
	return cond
}
