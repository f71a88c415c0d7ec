package launcher

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDrainPlan(t *testing.T) {
	now := metav1.Now()
	pod := func(name, serving string, phase corev1.PodPhase, deleting bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}, Status: corev1.PodStatus{Phase: phase}}
		if serving != "" {
			p.Labels[LabelServing] = serving
		}
		if deleting {
			p.DeletionTimestamp = &now
		}
		return p
	}
	tests := []struct {
		name              string
		pods              []corev1.Pod
		relabel, deleteIt []string
	}{
		{"serving leader leaves the Service first; its worker goes now",
			[]corev1.Pod{pod("leader", "true", corev1.PodRunning, false), pod("worker", "", corev1.PodRunning, false)},
			[]string{"leader"}, []string{"worker"}},
		{"a drained leader is deleted",
			[]corev1.Pod{pod("leader", "false", corev1.PodRunning, false)}, nil, []string{"leader"}},
		{"an ended leader serves nothing: deleted at once",
			[]corev1.Pod{pod("leader", "true", corev1.PodFailed, false)}, nil, []string{"leader"}},
		{"a leader already terminating is left to finish",
			[]corev1.Pod{pod("leader", "true", corev1.PodRunning, true)}, nil, []string{"leader"}},
		{"nothing", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			relabel, del := drainPlan(tt.pods)
			if diff := cmp.Diff(tt.relabel, names(relabel)); diff != "" {
				t.Errorf("relabel (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.deleteIt, names(del)); diff != "" {
				t.Errorf("delete (-want +got):\n%s", diff)
			}
		})
	}
}

func names(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}
