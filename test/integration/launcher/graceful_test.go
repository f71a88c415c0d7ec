package launcher_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// A restarted gang's pods are deleted with the job's checkpoint grace
// period, not forced, and the next attempt's pods are created only once
// every pod of the last attempt is gone (its GPUs free). kwok removes a
// deleted pod at once whatever its grace, so a finalizer plays the kubelet
// that is still stopping the containers.
func TestGangRestartWaitsForGracefulStop(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-grace", "grace-a", "grace-b")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})
	rec := recordPods(t, ns)
	job := trainingJob(ns, "ckpt", q, 2, 8)
	job.Spec.CheckpointGracePeriodSeconds = ptr.To[int64](45)
	submit(t, job)

	first := runningGang(t, job, 2)
	for _, p := range first {
		if got := ptr.Deref(p.Spec.TerminationGracePeriodSeconds, -1); got != 45 {
			t.Errorf("pod %s terminationGracePeriodSeconds %d, want the job's checkpoint grace 45", p.Name, got)
		}
	}
	release := linger(t, first)
	setPodPhase(t, &first[1], corev1.PodFailed, "Error")
	waitJob(t, job, "to wait for the last attempt's pods to stop", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseRestarting))
		return j.Status.Phase == launcher.PhaseRestarting && c != nil && c.Reason == "StoppingGang"
	})
	// The member still running was deleted with its grace period (the
	// failed one has ended: the apiserver deletes ended pods with grace 0).
	survivor, ok := rec.firstDeletions()[first[0].UID]
	if !ok {
		t.Fatalf("pod %s not deleted on the restart", first[0].Name)
	}
	if got := ptr.Deref(survivor.DeletionGracePeriodSeconds, -1); got != 45 {
		t.Errorf("pod %s deleted with grace %d s, want 45", survivor.Name, got)
	}
	release()
	runningGang(t, job, 2)

	// In the watch's order, no pod of attempt 1 was created before the
	// last pod of attempt 0 was gone.
	lastGone, firstNew := -1, -1
	for i, ev := range rec.snapshot() {
		switch {
		case ev.typ == watch.Deleted && ev.pod.Labels[launcher.LabelAttempt] == "0":
			lastGone = i
		case ev.typ == watch.Added && ev.pod.Labels[launcher.LabelAttempt] == "1" && firstNew < 0:
			firstNew = i
		}
	}
	if lastGone < 0 || firstNew < lastGone {
		t.Errorf("attempt 1's first pod created at event %d, attempt 0's last pod gone at event %d: the new gang must wait for the old one", firstNew, lastGone)
	}
}
