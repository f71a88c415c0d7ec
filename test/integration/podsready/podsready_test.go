// Package podsready_test runs Kueue's waitForPodsReady against the
// launcher's Workloads with a short timeout and no scheduler, so that an
// admitted gang is never placed: its quota must come back, the job must be
// requeued with backoff and say why, and it must be deactivated past the
// requeue limit.
package podsready_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Kueue: true, PodsReady: cluster.PodsReady{
		Timeout: 5 * time.Second, BackoffBase: time.Second, BackoffMax: 2 * time.Second, BackoffLimit: ptr.To[int32](2),
	}}, &env))
}

func TestAdmittedGangThatIsNeverPlacedGivesItsQuotaBack(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, 500*time.Millisecond)
	for _, n := range []string{"ready-a", "ready-b"} {
		env.GPUNode(t, n, "dgx-h100", "rack-ready")
		env.PublishTopology(t, n, "dgx-h100")
	}
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})
	job := &tesserav1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stuck"},
		Spec: tesserav1alpha1.TrainingJobSpec{
			QueueName: q, Image: "nvcr.io/nvidia/pytorch:25.01-py3", Command: []string{"torchrun", "train.py"},
			Nodes: tesserav1alpha1.NodeRange{Min: 2}, GPUsPerNode: 8,
		},
	}
	if err := env.CR.Create(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.CR.Delete(context.Background(), job) })

	// Admitted, its pods created and Pending (no scheduler runs): the
	// launcher says the gang is not ready.
	wl := &kueue.Workload{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: launcher.WorkloadName(job.Name)}}
	waitWorkload(t, wl, "to be admitted with PodsReady False (WaitForStart)", func(wl *kueue.Workload) bool {
		c := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadPodsReady)
		return workload.IsAdmitted(wl) && c != nil && c.Status == metav1.ConditionFalse && c.Reason == kueue.WorkloadWaitForStart
	})

	// Past the timeout Kueue evicts it; the launcher stops the gang and
	// gives the quota back; Kueue requeues it after a backoff.
	waitWorkload(t, wl, "to be requeued after a PodsReady timeout, without quota", func(wl *kueue.Workload) bool {
		ev := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadEvicted)
		return wl.Status.RequeueState != nil && ptr.Deref(wl.Status.RequeueState.Count, 0) >= 1 &&
			ev != nil && ev.Reason == kueue.WorkloadEvictedByPodsReadyTimeout && !workload.HasQuotaReservation(wl)
	})
	waitJob(t, job, "to say it was evicted for a PodsReady timeout", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseQueued))
		return j.Status.Phase == launcher.PhaseQueued && c != nil && c.Reason == "Evicted" && strings.Contains(c.Message, kueue.WorkloadEvictedByPodsReadyTimeout)
	})

	// Past the requeue limit Kueue deactivates it: no quota, no pods, and
	// the job says how to queue it again.
	waitWorkload(t, wl, "to be deactivated past the requeue limit", func(wl *kueue.Workload) bool {
		return !workload.IsActive(wl) && !workload.HasQuotaReservation(wl)
	})
	waitJob(t, job, "to say it is deactivated", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseQueued))
		return c != nil && strings.Contains(c.Message, "deactivated by Kueue")
	})
	framework.Eventually(t, framework.DefaultTimeout, "the deactivated job's pods to be gone", func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		err := env.CR.List(ctx, &pods, ctrlclient.InNamespace(ns), ctrlclient.MatchingLabels{launcher.LabelTrainingJob: job.Name})
		return err == nil && len(pods.Items) == 0, err
	})
}

func waitWorkload(t *testing.T, wl *kueue.Workload, what string, cond func(*kueue.Workload) bool) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("Workload %s: active %v, requeueState %+v, conditions %+v", wl.Name, ptr.Deref(wl.Spec.Active, true), wl.Status.RequeueState, wl.Status.Conditions)
		}
	}()
	framework.Eventually(t, framework.DefaultTimeout, "Workload "+wl.Name+" "+what, func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(wl), wl); err != nil {
			return false, ctrlclient.IgnoreNotFound(err)
		}
		return cond(wl), nil
	})
}

func waitJob(t *testing.T, job *tesserav1alpha1.TrainingJob, what string, cond func(*tesserav1alpha1.TrainingJob) bool) {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("TrainingJob %s: phase %s, conditions %+v", job.Name, job.Status.Phase, job.Status.Conditions)
		}
	}()
	framework.Eventually(t, framework.DefaultTimeout, "TrainingJob "+job.Name+" "+what, func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(job), job); err != nil {
			return false, err
		}
		return cond(job), nil
	})
}
