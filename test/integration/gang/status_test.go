package gang_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/test/integration/framework"
)

// phaseIs waits until the PodGroup's status, read back from the apiserver,
// has the phase.
func phaseIs(t *testing.T, ns, name string, want schedv1alpha1.PodGroupPhase) *schedv1alpha1.PodGroup {
	t.Helper()
	pg := &schedv1alpha1.PodGroup{}
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("PodGroup %s to be %s", name, want), func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pg); err != nil {
			return false, err
		}
		return pg.Status.Phase == want, nil
	})
	return pg
}

// endPod sets a running pod's phase, as its kubelet would when it ends.
func endPod(t *testing.T, ns, name string, phase corev1.PodPhase) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, "pod "+name+" to end", func(ctx context.Context) (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		p.Status.Phase = phase
		_, err = env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err == nil, err
	})
}

// Defect 6: PodGroup status reaches the apiserver (JSON, not protobuf),
// through every phase a gang's life takes, finished pods counted.
func TestPodGroupStatusReachesEveryPhase(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "phase-0", "dgx-h100", "rack-a")

	podGroup(t, ns, "done", 2, 30)
	member(t, ns, "done-0", "done", 1, "")
	phaseIs(t, ns, "done", schedv1alpha1.PodGroupPending)
	member(t, ns, "done-1", "done", 1, "")
	pg := phaseIs(t, ns, "done", schedv1alpha1.PodGroupRunning)
	if pg.Status.Running != 2 || pg.Status.ScheduleStartTime.IsZero() {
		t.Errorf("running gang status = %+v, want 2 running and a schedule start time", pg.Status)
	}
	endPod(t, ns, "done-0", corev1.PodSucceeded)
	endPod(t, ns, "done-1", corev1.PodSucceeded)
	if pg := phaseIs(t, ns, "done", schedv1alpha1.PodGroupFinished); pg.Status.Succeeded != 2 {
		t.Errorf("finished gang status = %+v, want 2 succeeded", pg.Status)
	}

	podGroup(t, ns, "broken", 2, 30)
	member(t, ns, "broken-0", "broken", 1, "")
	member(t, ns, "broken-1", "broken", 1, "")
	phaseIs(t, ns, "broken", schedv1alpha1.PodGroupRunning)
	endPod(t, ns, "broken-1", corev1.PodFailed)
	if pg := phaseIs(t, ns, "broken", schedv1alpha1.PodGroupFailed); pg.Status.Failed != 1 || pg.Status.Running != 1 {
		t.Errorf("failed gang status = %+v, want 1 failed, 1 running", pg.Status)
	}
}

// Defect 6: a PodGroup whose pods another scheduler serves keeps its own
// writer's status.
func TestPodGroupOfAnotherSchedulerIsLeftAlone(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "theirs-0", "dgx-h100", "rack-a")
	podGroup(t, ns, "theirs", 1, 30)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs-0", Labels: map[string]string{schedv1alpha1.PodGroupLabel: "theirs"}},
		Spec:       corev1.PodSpec{SchedulerName: "scheduler-plugins-scheduler", Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A gang of ours created after it is written: once it is, the other
	// would have been too (one worker, in order).
	podGroup(t, ns, "ours", 1, 30)
	member(t, ns, "ours-0", "ours", 0, "")
	phaseIs(t, ns, "ours", schedv1alpha1.PodGroupRunning)
	pg := &schedv1alpha1.PodGroup{}
	if err := env.CR.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "theirs"}, pg); err != nil {
		t.Fatal(err)
	}
	if pg.Status.Phase != "" {
		t.Errorf("status of another scheduler's PodGroup written: %+v", pg.Status)
	}
}

// Defect 7: a PodGroup with minMember 0 (dropped on the wire, so the CRD's
// minimum never applies) is reported naming the field, and nothing binds.
func TestMinMemberZeroIsReported(t *testing.T) {
	env.StartScheduler(t)
	ns := env.Namespace(t)
	env.GPUNode(t, "zero-0", "dgx-h100", "rack-a")
	podGroup(t, ns, "zero", 0, 30)
	member(t, ns, "zero-0", "zero", 1, "")
	eventOn(t, ns, "zero", "spec.minMember must be at least 1")
	eventOn(t, ns, "zero-0", "spec.minMember must be at least 1")
	if n, _, _ := bound(t.Context(), ns, "zero"); n != 0 {
		t.Errorf("%d members of an invalid gang bound", n)
	}
}
