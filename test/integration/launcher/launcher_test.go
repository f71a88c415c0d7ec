// Package launcher_test runs the launcher on the real stack: apiserver,
// Kueue, kwok, Tessera's scheduler in-process and the launcher's
// controllers (TrainingJob, ServingGroup, the topology-fit admission check).
package launcher_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/internal/launchercli"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Kueue: true, Scheduler: true}, &env))
}

// recheck is how often the tests' topology-fit check looks again.
const recheck = 500 * time.Millisecond

// A job whose quota is free but whose gang does not fit the free GPUs is
// held by the topology-fit check (no pods, a message that says why), and
// admitted and placed whole once a blocker leaves.
func TestTopologyFitHoldsGangUntilItFits(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-fit", "fit-a", "fit-b")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})

	// Two GPUs of fit-a go to a pod outside Kueue: quota stays free.
	blocker := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "diagnostics"},
		Spec: corev1.PodSpec{
			SchedulerName: launcher.SchedulerName,
			NodeName:      "fit-a",
			Containers: []corev1.Container{{Name: "dcgm", Image: "nvcr.io/nvidia/cloud-native/dcgm:4.1.1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{gpunodes.ResourceGPU: resource.MustParse("2")}, Limits: corev1.ResourceList{gpunodes.ResourceGPU: resource.MustParse("2")}}}},
		},
	}
	submit(t, blocker)

	job := trainingJob(ns, "pretrain", q, 2, 8)
	submit(t, job)
	waitJob(t, job, "to wait for the topology fit", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseQueued))
		return c != nil && strings.Contains(c.Message, "needs 2 × 8 GPUs (workers); 1 of 2 pods fit the free GPUs now")
	})
	wl := workloadOf(t, ns, launcher.WorkloadName(job.Name))
	if !apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadQuotaReserved) || apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadAdmitted) {
		t.Fatalf("workload conditions %+v: want quota reserved, not admitted", wl.Status.Conditions)
	}
	if pods := jobPods(t, ns, launcher.LabelTrainingJob, job.Name); len(pods) != 0 {
		t.Fatalf("held job has %d pods, want none", len(pods))
	}
	// The CLI explains the wait (polled: the launcher writes the job's
	// condition and events a moment after the check's message).
	wants := []string{"Phase:        Queued", "Check:      fit-", "1 of 2 pods fit the free GPUs now", "nvidia.com/gpu 16 reserved of 16 nominal", "Pods:         none"}
	var out bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("last launcher describe:\n%s", out.String())
		}
	}()
	framework.Eventually(t, framework.DefaultTimeout, "launcher describe to explain the wait", func(ctx context.Context) (bool, error) {
		out.Reset()
		if err := launchercli.Run(ctx, []string{"describe", "--kubeconfig", env.Cluster.KubeconfigPath, "-n", ns, job.Name}, &out); err != nil {
			return false, err
		}
		for _, want := range wants {
			if !strings.Contains(out.String(), want) {
				return false, nil
			}
		}
		return true, nil
	})

	if err := env.CR.Delete(t.Context(), blocker); err != nil {
		t.Fatal(err)
	}
	pods := runningGang(t, job, 2)
	nodes := []string{pods[0].Spec.NodeName, pods[1].Spec.NodeName}
	slices.Sort(nodes)
	if !slices.Equal(nodes, []string{"fit-a", "fit-b"}) {
		t.Errorf("gang on nodes %v, want fit-a and fit-b", nodes)
	}
	for _, p := range pods {
		if got := p.Annotations[tesserav1alpha1.AnnotationGPUIDs]; got != "0,1,2,3,4,5,6,7" {
			t.Errorf("pod %s GPUs %q, want all eight", p.Name, got)
		}
	}
}

// A failed member restarts the whole gang; past the backoff limit the job
// fails and its Workload finishes, with no pod left running.
func TestMemberFailureRestartsWholeGang(t *testing.T) {
	ns := env.Namespace(t)
	reg := env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-restart", "restart-a", "restart-b")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})
	job := trainingJob(ns, "flaky", q, 2, 8)
	job.Spec.BackoffLimit = ptr.To[int32](1)
	submit(t, job)

	first := runningGang(t, job, 2)
	waitPodsReady(t, ns, launcher.WorkloadName(job.Name), kueue.WorkloadStarted)
	setPodPhase(t, &first[1], corev1.PodFailed, "Error")
	waitJob(t, job, "to restart once", func(j *tesserav1alpha1.TrainingJob) bool { return j.Status.Restarts == 1 })
	second := runningGang(t, job, 2)
	// Kueue's recovery timeout ran while the gang restarted; it stopped
	// once the new attempt was ready.
	waitPodsReady(t, ns, launcher.WorkloadName(job.Name), kueue.WorkloadRecovered)
	for _, p := range second {
		if p.Labels[launcher.LabelAttempt] != "1" {
			t.Errorf("pod %s of attempt %q, want 1", p.Name, p.Labels[launcher.LabelAttempt])
		}
		for _, old := range first {
			if p.UID == old.UID {
				t.Errorf("pod %s survived the restart: the gang must restart whole", p.Name)
			}
		}
	}
	if restarts := counter(t, reg, "tessera_launcher_gang_restarts_total", map[string]string{"kind": "TrainingJob", "reason": "member-failed"}); restarts != 1 {
		t.Errorf("restart counter = %v, want 1", restarts)
	}

	setPodPhase(t, &second[0], corev1.PodFailed, "Error")
	waitJob(t, job, "to fail past its backoff limit", inPhase(launcher.PhaseFailed))
	if c := apimeta.FindStatusCondition(job.Status.Conditions, string(launcher.PhaseFailed)); c == nil || !strings.Contains(c.Message, "backoff limit 1 reached") {
		t.Errorf("Failed condition %+v, want the backoff limit named", c)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the failed job's workload to finish and its pods to go", func(ctx context.Context) (bool, error) {
		wl := workloadOf(t, ns, launcher.WorkloadName(job.Name))
		return apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadFinished) && len(jobPods(t, ns, launcher.LabelTrainingJob, job.Name)) == 0, nil
	})
}

// waitPodsReady waits until the Workload's PodsReady is True with reason
// (what keeps Kueue's waitForPodsReady from evicting a running gang).
func waitPodsReady(t *testing.T, ns, name, reason string) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, "Workload "+name+" to have PodsReady True ("+reason+")", func(ctx context.Context) (bool, error) {
		c := apimeta.FindStatusCondition(workloadOf(t, ns, name).Status.Conditions, kueue.WorkloadPodsReady)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason, nil
	})
}

// A job succeeds when all its workers complete, and its quota returns.
func TestJobSucceedsWhenWorkersComplete(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-done", "done-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	job := trainingJob(ns, "lora", q, 1, 4)
	submit(t, job)
	pods := runningGang(t, job, 1)
	if env := envOf(pods[0]); env["NNODES"] != "1" || env["NODE_RANK"] != "0" || env["NPROC_PER_NODE"] != "4" || env["MASTER_ADDR"] != "lora-worker-0.lora."+ns+".svc" {
		t.Errorf("torchrun environment %v", env)
	}
	setPodPhase(t, &pods[0], corev1.PodSucceeded, "Completed")
	waitJob(t, job, "to succeed", inPhase(launcher.PhaseSucceeded))
	// The launcher writes the job's end before it finishes the Workload.
	framework.Eventually(t, framework.DefaultTimeout, "the succeeded job's Workload to finish", func(ctx context.Context) (bool, error) {
		wl := workloadOf(t, ns, launcher.WorkloadName(job.Name))
		return apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadFinished), nil
	})
}

// Kueue preempts a lower-priority job for a higher one: the victim's gang
// goes whole, and it waits again, saying it was evicted.
func TestPreemptionEvictsVictimGangWhole(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-preempt", "preempt-a", "preempt-b")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16, Preempt: true})
	priorityClass(t, "low-"+ns, 100)
	priorityClass(t, "high-"+ns, 1000)

	victim := trainingJob(ns, "sweep", q, 2, 8)
	victim.Spec.PriorityClassName = "low-" + ns
	submit(t, victim)
	runningGang(t, victim, 2)

	urgent := trainingJob(ns, "urgent", q, 2, 8)
	urgent.Spec.PriorityClassName = "high-" + ns
	submit(t, urgent)
	runningGang(t, urgent, 2)
	waitJob(t, victim, "to be requeued after eviction", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseQueued))
		return j.Status.Phase == launcher.PhaseQueued && c != nil && c.Reason == "Evicted"
	})
	if pods := jobPods(t, ns, launcher.LabelTrainingJob, victim.Name); len(pods) != 0 {
		t.Errorf("victim keeps %d pods after eviction, want none", len(pods))
	}
}

// Two teams share a cohort: one borrows the other's idle GPUs, the lender
// reclaims them and the borrower's gang goes whole; the pods never hold
// more GPUs than the cohort has.
func TestCohortBorrowingIsReclaimed(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-cohort", "cohort-a", "cohort-b")
	cohort := "ml-" + ns
	research := env.CreateQueue(t, ns, "research", framework.QueueSpec{GPUs: 8, Cohort: cohort, Preempt: true})
	product := env.CreateQueue(t, ns, "product", framework.QueueSpec{GPUs: 8, Cohort: cohort, Preempt: true})

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	over := make(chan int64, 1)
	go func() {
		for ctx.Err() == nil {
			if held, err := gpusHeld(ctx, ns); err == nil && held > 16 {
				over <- held
				return
			}
		}
	}()

	borrower := trainingJob(ns, "research-big", research, 2, 8)
	submit(t, borrower)
	runningGang(t, borrower, 2)
	var cq kueue.ClusterQueue
	if err := env.CR.Get(t.Context(), types.NamespacedName{Name: "research-" + ns}, &cq); err != nil {
		t.Fatal(err)
	}

	lender := trainingJob(ns, "product-serve", product, 1, 8)
	submit(t, lender)
	runningGang(t, lender, 1)
	waitJob(t, borrower, "to be evicted when its borrowed GPUs are reclaimed", func(j *tesserav1alpha1.TrainingJob) bool {
		return j.Status.Phase == launcher.PhaseQueued
	})
	if pods := jobPods(t, ns, launcher.LabelTrainingJob, borrower.Name); len(pods) != 0 {
		t.Errorf("borrower keeps %d pods after reclaim, want none", len(pods))
	}
	waitJob(t, borrower, "to wait for quota", func(j *tesserav1alpha1.TrainingJob) bool {
		c := apimeta.FindStatusCondition(j.Status.Conditions, string(launcher.PhaseQueued))
		return c != nil && strings.Contains(c.Message, "waiting for quota")
	})
	stop()
	select {
	case held := <-over:
		t.Errorf("pods held %d GPUs at once; the cohort has 16", held)
	default:
	}
}

// A ServingGroup scales 1 → 3 → 2 (the last through the scale
// subresource); each TP=2 replica lands on one NVLink pair even while a
// taken GPU leaves an unpaired one free.
func TestServingGroupScalesOnNVLinkPairs(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "h100-nvl-pairs", "rack-serve", "serve-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	// GPU 0 of the first pair is taken: three pairs stay whole.
	taken := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "notebook", Annotations: map[string]string{tesserav1alpha1.AnnotationGPUIDs: "0"}},
		Spec: corev1.PodSpec{NodeName: "serve-a", Containers: []corev1.Container{{Name: "jupyter", Image: "jupyter/base-notebook",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{gpunodes.ResourceGPU: resource.MustParse("1")}, Limits: corev1.ResourceList{gpunodes.ResourceGPU: resource.MustParse("1")}}}}},
	}
	submit(t, taken)

	sg := servingGroup(ns, "llama", q, 1)
	submit(t, sg)
	waitReplicas(t, sg, 1)
	waitPodsReady(t, ns, launcher.ReplicaWorkloadName(sg.Name, 0), kueue.WorkloadStarted)
	sg.Spec.Replicas = 3
	if err := env.CR.Update(t.Context(), sg); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, sg, 3)
	checkPairs(t, ns, sg.Name, 3)

	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sg.Name}, Spec: autoscalingv1.ScaleSpec{Replicas: 2}}
	if err := env.CR.SubResource("scale").Update(t.Context(), sg, ctrlclient.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scaling through the scale subresource: %v", err)
	}
	waitReplicas(t, sg, 2)
	checkPairs(t, ns, sg.Name, 2)
}

func waitReplicas(t *testing.T, sg *tesserav1alpha1.ServingGroup, n int32) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, "ServingGroup to have ready replicas", func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(sg), sg); err != nil {
			return false, err
		}
		return sg.Status.Replicas == n && sg.Status.ReadyReplicas == n &&
			len(jobPods(t, sg.Namespace, launcher.LabelServingGroup, sg.Name)) == int(n), nil
	})
}

// checkPairs checks that each of the group's n pods holds one whole NVLink
// pair of h100-nvl-pairs (GPUs 2k and 2k+1).
func checkPairs(t *testing.T, ns, group string, n int) {
	t.Helper()
	pods := jobPods(t, ns, launcher.LabelServingGroup, group)
	if len(pods) != n {
		t.Fatalf("%d serving pods, want %d", len(pods), n)
	}
	seen := map[string]bool{}
	for _, p := range pods {
		ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
		if err != nil || len(ids) != 2 || ids[0]%2 != 0 || ids[1] != ids[0]+1 {
			t.Errorf("pod %s holds GPUs %v (%v), want one NVLink pair", p.Name, ids, err)
		}
		key := p.Annotations[tesserav1alpha1.AnnotationGPUIDs]
		if seen[key] {
			t.Errorf("GPUs %s held twice", key)
		}
		seen[key] = true
	}
}

func envOf(p corev1.Pod) map[string]string {
	out := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		out[e.Name] = e.Value
	}
	return out
}

// counter reads the series of counter name that has labels (others aside).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			matched := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					matched++
				}
			}
			if matched == len(labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A new spec replaces a ServingGroup's replicas one at a time: the quota
// (two replicas' GPUs, nothing to surge into) never stops the update, no
// poll sees both replicas down, and every pod ends on the new spec.
func TestServingGroupRollingUpdateOneReplicaAtATime(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "h100-nvl-pairs", "rack-roll", "roll-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 4})
	rec := recordPods(t, ns)
	sg := servingGroup(ns, "llama", q, 2)
	submit(t, sg)
	waitReplicas(t, sg, 2)

	const image = "vllm/vllm-openai:v0.11.1" // the default is v0.11.0
	sg.Spec.Image = image
	if err := env.CR.Update(t.Context(), sg); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "every replica to run the new image", func(ctx context.Context) (bool, error) {
		pods := jobPods(t, ns, launcher.LabelServingGroup, sg.Name)
		serving, updated := 0, 0
		for _, p := range pods {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				serving++
				if p.Spec.Containers[0].Image == image {
					updated++
				}
			}
		}
		if serving < 1 {
			t.Fatalf("no replica serving during the update: %d pods", len(pods))
		}
		return serving == 2 && updated == 2 && len(pods) == 2, nil
	})
	checkPairs(t, ns, sg.Name, 2)
	checkDrainedBeforeDeleted(t, rec, 2)
	// One event per replica replaced; a reconcile on a cache that has not
	// yet seen the deletion may say it twice, so the replicas named count.
	framework.Eventually(t, framework.DefaultTimeout, "a RollingUpdate event for each replica", func(ctx context.Context) (bool, error) {
		var events eventsv1.EventList
		if err := env.CR.List(ctx, &events, ctrlclient.InNamespace(ns)); err != nil {
			return false, err
		}
		named := map[string]bool{}
		for _, e := range events.Items {
			if e.Reason == "RollingUpdate" && e.Regarding.Name == sg.Name {
				named[e.Note] = true
			}
		}
		return len(named) == 2 && named["Replacing replica 0 with the new spec"] && named["Replacing replica 1 with the new spec"], nil
	})
}

// checkDrainedBeforeDeleted checks that at least n serving leaders were
// deleted, each gracefully and only after it left the API Service (its
// serving label "false": the Service selects "true").
func checkDrainedBeforeDeleted(t *testing.T, rec *podRecorder, n int) {
	t.Helper()
	leaders := 0
	for _, p := range rec.firstDeletions() {
		if p.Labels[launcher.LabelRole] != launcher.RoleLeader {
			continue
		}
		leaders++
		if p.Labels[launcher.LabelServing] != "false" {
			t.Errorf("leader %s deleted while labelled %s=%q: still in the Service", p.Name, launcher.LabelServing, p.Labels[launcher.LabelServing])
		}
		if got := ptr.Deref(p.DeletionGracePeriodSeconds, -1); got != 30 {
			t.Errorf("leader %s deleted with grace %d s, want its own 30", p.Name, got)
		}
	}
	if leaders < n {
		t.Errorf("%d leaders deleted, want at least %d", leaders, n)
	}
}
