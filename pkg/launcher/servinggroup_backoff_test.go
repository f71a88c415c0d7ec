package launcher

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

func TestBackoffDelayDoublesUpToMax(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: time.Minute, Reset: 10 * time.Minute}
	var got []time.Duration
	for f := int32(1); f <= 6; f++ {
		got = append(got, b.delay(f))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute, time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
}

func TestRecordFailure(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: time.Minute, Reset: 10 * time.Minute}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	failed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "llama-0-leader", UID: "u2"}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Error"}}
	tests := []struct {
		name        string
		st          tesserav1alpha1.ServingReplicaStatus
		now         time.Time
		want        tesserav1alpha1.ServingReplicaStatus
		wantCounted bool
	}{
		{"first failure waits the base", tesserav1alpha1.ServingReplicaStatus{}, now,
			tesserav1alpha1.ServingReplicaStatus{Restarts: 1, Failures: 1, LastFailedPod: "u2", RetryAfter: at(10 * time.Second), Message: "pod llama-0-leader ended (Failed: Error)"}, true},
		{"third failure in a row waits four times the base", tesserav1alpha1.ServingReplicaStatus{Restarts: 2, Failures: 2, LastFailedPod: "u1", RetryAfter: at(-time.Minute)}, now,
			tesserav1alpha1.ServingReplicaStatus{Restarts: 3, Failures: 3, LastFailedPod: "u2", RetryAfter: at(40 * time.Second), Message: "pod llama-0-leader ended (Failed: Error)"}, true},
		{"capped", tesserav1alpha1.ServingReplicaStatus{Restarts: 9, Failures: 9, LastFailedPod: "u1", RetryAfter: at(-time.Minute)}, now,
			tesserav1alpha1.ServingReplicaStatus{Restarts: 10, Failures: 10, LastFailedPod: "u2", RetryAfter: at(time.Minute), Message: "pod llama-0-leader ended (Failed: Error)"}, true},
		{"ran for the reset time since its last retry: back to the base", tesserav1alpha1.ServingReplicaStatus{Restarts: 9, Failures: 9, LastFailedPod: "u1", RetryAfter: at(-11 * time.Minute)}, now,
			tesserav1alpha1.ServingReplicaStatus{Restarts: 10, Failures: 1, LastFailedPod: "u2", RetryAfter: at(10 * time.Second), Message: "pod llama-0-leader ended (Failed: Error)"}, true},
		{"the same pod counts once", tesserav1alpha1.ServingReplicaStatus{Restarts: 1, Failures: 1, LastFailedPod: "u2", RetryAfter: at(10 * time.Second)}, now.Add(time.Second),
			tesserav1alpha1.ServingReplicaStatus{Restarts: 1, Failures: 1, LastFailedPod: "u2", RetryAfter: at(10 * time.Second)}, false},
		{"retry rounded up to the second the API keeps", tesserav1alpha1.ServingReplicaStatus{}, now.Add(300 * time.Millisecond),
			tesserav1alpha1.ServingReplicaStatus{Restarts: 1, Failures: 1, LastFailedPod: "u2", RetryAfter: at(11 * time.Second), Message: "pod llama-0-leader ended (Failed: Error)"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, counted := b.recordFailure(tt.st, failed, tt.now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if counted != tt.wantCounted {
				t.Errorf("counted = %v, want %v", counted, tt.wantCounted)
			}
		})
	}
}

func TestWaitBeforeStartAndCondition(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sg := &tesserav1alpha1.ServingGroup{Spec: tesserav1alpha1.ServingGroupSpec{Replicas: 2}}
	sg.Status.ReplicaStatuses = []tesserav1alpha1.ServingReplicaStatus{
		{Index: 0, Restarts: 1, RetryAfter: &metav1.Time{Time: now.Add(-time.Second)}},
		{Index: 1, Restarts: 3, RetryAfter: &metav1.Time{Time: now.Add(40 * time.Second)}, Message: "pod llama-1-leader ended (Failed: Error)"},
		{Index: 2, Restarts: 5, RetryAfter: &metav1.Time{Time: now.Add(time.Minute)}}, // scaled away
	}
	if got := waitBeforeStart(&sg.Status.ReplicaStatuses[0], now); got != 0 {
		t.Errorf("replica 0 past its retry waits %v, want 0", got)
	}
	if got := waitBeforeStart(&sg.Status.ReplicaStatuses[1], now); got != 40*time.Second {
		t.Errorf("replica 1 waits %v, want 40s", got)
	}
	if got := waitBeforeStart(nil, now); got != 0 {
		t.Errorf("a replica never restarted waits %v", got)
	}
	want := metav1.Condition{Type: ConditionReplicaBackoff, Status: metav1.ConditionTrue, Reason: "RestartBackoff",
		Message: "replica 1 not serving: pod llama-1-leader ended (Failed: Error); restart 3, retrying at 2026-01-02T03:04:45Z"}
	if diff := cmp.Diff(want, backoffCondition(sg, now)); diff != "" {
		t.Errorf("condition (-want +got):\n%s", diff)
	}
	if got := backoffCondition(sg, now.Add(2*time.Minute)); got.Status != metav1.ConditionFalse {
		t.Errorf("condition after every retry: %+v, want false", got)
	}
}
