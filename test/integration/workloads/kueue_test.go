package workloads_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	kueueconstants "sigs.k8s.io/kueue/pkg/controller/constants"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"

	"tessera.dev/tessera/test/integration/framework"
)

// recheck is how often the topology-fit check looks again.
const recheck = 500 * time.Millisecond

// setQuota sets the GPU quota of the ClusterQueue behind LocalQueue lq.
func setQuota(t *testing.T, ns, lq string, gpus int64) {
	t.Helper()
	local := &kueue.LocalQueue{}
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Namespace: ns, Name: lq}, local); err != nil {
		t.Fatal(err)
	}
	// Kueue writes the ClusterQueue too (finalizers, status).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cq := &kueue.ClusterQueue{}
		if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Name: string(local.Spec.ClusterQueue)}, cq); err != nil {
			return err
		}
		cq.Spec.ResourceGroups[0].Flavors[0].Resources[0].NominalQuota = *resource.NewQuantity(gpus, resource.DecimalSI)
		return env.CR.Update(t.Context(), cq)
	})
	if err != nil {
		t.Fatalf("setting the quota: %v", err)
	}
}

// workloadsOf returns the namespace's Kueue Workloads.
func workloadsOf(t *testing.T, ns string) []kueue.Workload {
	t.Helper()
	list := &kueue.WorkloadList{}
	if err := env.CR.List(t.Context(), list, ctrlclient.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// publishedNode creates a DGX H100 node in rack with its GPU topology
// published, as its node agent would.
func publishedNode(t *testing.T, name, rack string) {
	t.Helper()
	env.GPUNode(t, name, "dgx-h100", rack)
	env.PublishTopology(t, name, "dgx-h100")
}

// waitsWholeForQuota checks that the namespace's one Workload waits
// unadmitted with none of app's pods, then raises the quota to gpus and
// returns app's pods once it is admitted and they are all bound.
func waitsWholeForQuota(t *testing.T, ns, lq, app string, gpus int64, pods int) []corev1.Pod {
	t.Helper()
	waitAdmitted(t, ns, 1, 0)
	if got := podsOf(t, ns, app); len(got) != 0 {
		t.Fatalf("%d pods of %s exist while it waits for quota", len(got), app)
	}
	setQuota(t, ns, lq, gpus)
	waitAdmitted(t, ns, 1, 1)
	return boundPods(t, ns, app, pods)
}

// waitAdmitted waits until the namespace has want Workloads, admitted of
// them admitted.
func waitAdmitted(t *testing.T, ns string, want, admitted int) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("%d Workloads, %d admitted", want, admitted), func(ctx context.Context) (bool, error) {
		wls := workloadsOf(t, ns)
		n := 0
		var state []string
		for _, wl := range wls {
			if apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadAdmitted) {
				n++
			}
			state = append(state, workloadState(&wl))
		}
		if len(wls) == want && n == admitted {
			return true, nil
		}
		// Not an error: shown if the wait times out.
		return false, fmt.Errorf("workloads: %s", strings.Join(state, "; "))
	})
}

// workloadState says where a Workload stands: its conditions and checks.
func workloadState(wl *kueue.Workload) string {
	var parts []string
	for _, c := range wl.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Message))
	}
	for _, c := range wl.Status.AdmissionChecks {
		parts = append(parts, fmt.Sprintf("check %s=%s (%s)", c.Name, c.State, c.Message))
	}
	return wl.Name + ": " + strings.Join(parts, ", ")
}

// A JobSet submitted with only schedulerName and a queue label goes
// through Kueue as one Workload (Kueue's webhook suspends it at creation)
// and the topology-fit check: with quota for half of it, it waits whole
// (suspended, no pods); once quota allows, it is admitted, unsuspended and
// every pod bound together.
func TestJobSetThroughKueueWaitsWhole(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	for i := range 2 {
		publishedNode(t, fmt.Sprintf("kjs-h100-%d", i), "rack-a")
	}
	lq := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	js := &jobsetv1alpha2.JobSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ft", Labels: map[string]string{kueueconstants.QueueLabel: lq}},
		Spec: jobsetv1alpha2.JobSetSpec{ReplicatedJobs: []jobsetv1alpha2.ReplicatedJob{{
			Name: "workers", Replicas: 2, Template: batchv1.JobTemplateSpec{
				Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](1), Completions: ptr.To[int32](1), Template: gpuTemplate("ft", 8)},
			},
		}}},
	}
	if err := env.CR.Create(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKeyFromObject(js), js); err != nil {
		t.Fatal(err)
	}
	if !ptr.Deref(js.Spec.Suspend, false) {
		t.Fatalf("JobSet not suspended at creation: Kueue's webhook did not run")
	}
	waitsWholeForQuota(t, ns, lq, "ft", 16, 2)
}

// An LWS submitted with a queue label is one Workload per group (Kueue
// gates the group's pods until it is admitted): scaling it to a second
// group beyond the quota adds a Workload that waits, its pods gated and
// none bound; with quota and a free rack, the group is admitted and placed
// whole.
func TestLeaderWorkerSetScaledThroughKueue(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	for _, n := range []struct{ name, rack string }{{"klws-a-0", "rack-a"}, {"klws-a-1", "rack-a"}} {
		publishedNode(t, n.name, n.rack)
	}
	lq := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 16})
	lws := vllmGroups(ns, "serve", map[string]string{kueueconstants.QueueLabel: lq})
	if err := env.CR.Create(t.Context(), lws); err != nil {
		t.Fatal(err)
	}
	waitAdmitted(t, ns, 1, 1)
	boundPods(t, ns, "serve", 2)

	scaleTo(t, lws, 2)
	waitAdmitted(t, ns, 2, 1)
	framework.Eventually(t, framework.DefaultTimeout, "group 1's two pods gated by Kueue", func(ctx context.Context) (bool, error) {
		gated := 0
		for _, p := range podsOf(t, ns, "serve") {
			if p.Labels[lwsv1.GroupIndexLabelKey] != "1" {
				continue
			}
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s of group 1 bound beyond the quota", p.Name)
			}
			if len(p.Spec.SchedulingGates) > 0 {
				gated++
			}
		}
		return gated == 2, nil
	})
	for i := range 2 {
		publishedNode(t, fmt.Sprintf("klws-b-%d", i), "rack-b")
	}
	setQuota(t, ns, lq, 32)
	waitAdmitted(t, ns, 2, 2)
	all := boundPods(t, ns, "serve", 4)
	group1 := inGroup(all, "1")
	if racks := racksOf(t, group1); racks["rack-b"] != 2 {
		t.Errorf("group 1 in racks %v, want both pods in rack-b", racks)
	}
}
