package gang

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

func TestStatusOfReachesEveryPhase(t *testing.T) {
	pod := func(phase v1.PodPhase) *v1.Pod { return &v1.Pod{Status: v1.PodStatus{Phase: phase}} }
	deleting := pod(v1.PodRunning)
	deleting.DeletionTimestamp = &metav1.Time{}
	pods := func(phases ...v1.PodPhase) []*v1.Pod {
		var out []*v1.Pod
		for _, p := range phases {
			out = append(out, pod(p))
		}
		return out
	}
	const (
		run  = v1.PodRunning
		pend = v1.PodPending
		ok   = v1.PodSucceeded
		fail = v1.PodFailed
	)
	for _, tc := range []struct {
		name       string
		pods       []*v1.Pod
		scheduling schedv1alpha1.PodGroupPhase
		known      bool
		want       schedv1alpha1.PodGroupPhase
		running    int32
	}{
		{name: "members missing", pods: pods(pend), want: schedv1alpha1.PodGroupPending},
		{name: "all there, not yet tried", pods: pods(pend, pend, pend), want: schedv1alpha1.PodGroupScheduling},
		{name: "scheduler found no placement", pods: pods(pend, pend, pend), scheduling: schedv1alpha1.PodGroupPending, known: true, want: schedv1alpha1.PodGroupPending},
		{name: "binding", pods: pods(pend, pend, run), scheduling: schedv1alpha1.PodGroupScheduling, known: true, want: schedv1alpha1.PodGroupScheduling, running: 1},
		{name: "running", pods: pods(run, run, run), scheduling: schedv1alpha1.PodGroupScheduling, known: true, want: schedv1alpha1.PodGroupRunning, running: 3},
		{name: "finishing counts as running", pods: pods(run, ok, run), want: schedv1alpha1.PodGroupRunning, running: 2},
		{name: "finished: terminal pods are counted", pods: pods(ok, ok, ok), want: schedv1alpha1.PodGroupFinished},
		{name: "failed", pods: pods(run, fail, ok), want: schedv1alpha1.PodGroupFailed, running: 1},
		{name: "a failure before the gang stood", pods: pods(fail, pend), want: schedv1alpha1.PodGroupPending},
		{name: "terminating pods do not run", pods: []*v1.Pod{deleting, pod(run), pod(run)}, want: schedv1alpha1.PodGroupPending, running: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := &schedv1alpha1.PodGroup{Spec: schedv1alpha1.PodGroupSpec{MinMember: 3}}
			got := statusOf(pg, tc.pods, tc.scheduling, tc.known)
			if got.Phase != tc.want || got.Running != tc.running {
				t.Errorf("phase %s, running %d; want %s, %d", got.Phase, got.Running, tc.want, tc.running)
			}
		})
	}
}

func TestStaleParts(t *testing.T) {
	scheduled := func(name string, at time.Time) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(at.Add(-time.Hour))},
			Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(at)}}}}
	}
	pending := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending"}}
	const timeout = time.Minute
	partial := members{bound: []*v1.Pod{scheduled("a", t0), scheduled("b", t0.Add(10*time.Second))}, pending: []*v1.Pod{pending}}
	for _, tc := range []struct {
		name string
		m    members
		now  time.Time
		want int
	}{
		{name: "partly bound within the timeout", m: partial, now: t0.Add(69 * time.Second), want: 0},
		{name: "partly bound past the timeout, from the newest bind", m: partial, now: t0.Add(70 * time.Second), want: 2},
		{name: "whole", m: members{bound: partial.bound, waiting: []*v1.Pod{pending}}, now: t0.Add(time.Hour), want: 0},
		{name: "nothing pending", m: members{bound: partial.bound[:1]}, now: t0.Add(time.Hour), want: 0},
		{name: "nothing bound", m: members{pending: []*v1.Pod{pending}}, now: t0.Add(time.Hour), want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := len(staleParts(tc.m, 3, timeout, tc.now)); got != tc.want {
				t.Errorf("%d members to evict, want %d", got, tc.want)
			}
		})
	}
}
