package launcher

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
)

func TestPodsReadyFollowsKueuesStates(t *testing.T) {
	admittedWith := func(status metav1.ConditionStatus, reason string) *kueue.Workload {
		wl := &kueue.Workload{Status: kueue.WorkloadStatus{Admission: &kueue.Admission{}}}
		wl.Status.Conditions = []metav1.Condition{{Type: kueue.WorkloadAdmitted, Status: metav1.ConditionTrue}}
		if reason != "" {
			wl.Status.Conditions = append(wl.Status.Conditions, metav1.Condition{Type: kueue.WorkloadPodsReady, Status: status, Reason: reason})
		}
		return wl
	}
	notAdmitted := func(status metav1.ConditionStatus, reason string) *kueue.Workload {
		wl := admittedWith(status, reason)
		wl.Status.Admission = nil
		wl.Status.Conditions = wl.Status.Conditions[1:]
		return wl
	}
	tests := []struct {
		name       string
		wl         *kueue.Workload
		ready      bool
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"admitted, gang not yet ready: the start timeout runs", admittedWith("", ""), false, metav1.ConditionFalse, kueue.WorkloadWaitForStart},
		{"still starting", admittedWith(metav1.ConditionFalse, kueue.WorkloadWaitForStart), false, metav1.ConditionFalse, kueue.WorkloadWaitForStart},
		{"gang ready", admittedWith(metav1.ConditionFalse, kueue.WorkloadWaitForStart), true, metav1.ConditionTrue, kueue.WorkloadStarted},
		{"a ready gang lost a member: the recovery timeout runs", admittedWith(metav1.ConditionTrue, kueue.WorkloadStarted), false, metav1.ConditionFalse, kueue.WorkloadWaitForRecovery},
		{"still recovering", admittedWith(metav1.ConditionFalse, kueue.WorkloadWaitForRecovery), false, metav1.ConditionFalse, kueue.WorkloadWaitForRecovery},
		{"recovered", admittedWith(metav1.ConditionFalse, kueue.WorkloadWaitForRecovery), true, metav1.ConditionTrue, kueue.WorkloadRecovered},
		{"evicted while recovering: the next admission starts afresh", notAdmitted(metav1.ConditionFalse, kueue.WorkloadWaitForRecovery), false, metav1.ConditionFalse, kueue.WorkloadWaitForStart},
		{"preempted while ready: not ready while it waits", notAdmitted(metav1.ConditionTrue, kueue.WorkloadStarted), false, metav1.ConditionFalse, kueue.WorkloadWaitForStart},
		{"recovered and lost again", admittedWith(metav1.ConditionTrue, kueue.WorkloadRecovered), false, metav1.ConditionFalse, kueue.WorkloadWaitForRecovery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reason, _ := podsReady(tt.wl, tt.ready)
			if status != tt.wantStatus || reason != tt.wantReason {
				t.Errorf("podsReady = %s/%s, want %s/%s", status, reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestGangReadyCountsFinishedWorkers(t *testing.T) {
	pod := func(phase corev1.PodPhase, ready bool) corev1.Pod {
		p := corev1.Pod{Status: corev1.PodStatus{Phase: phase}}
		if ready {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		return p
	}
	running, starting := pod(corev1.PodRunning, true), pod(corev1.PodRunning, false)
	done, pending := pod(corev1.PodSucceeded, false), pod(corev1.PodPending, false)
	deleting := running
	deleting.DeletionTimestamp = &metav1.Time{}
	tests := []struct {
		name string
		pods []corev1.Pod
		want bool
	}{
		{"all running and ready", []corev1.Pod{running, running}, true},
		{"a worker finished first", []corev1.Pod{running, done}, true},
		{"one not ready yet", []corev1.Pod{running, starting}, false},
		{"one pending", []corev1.Pod{running, pending}, false},
		{"one missing", []corev1.Pod{running}, false},
		{"one being deleted", []corev1.Pod{running, deleting}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gangReady(tt.pods, 2); got != tt.want {
				t.Errorf("gangReady = %v, want %v", got, tt.want)
			}
		})
	}
}
