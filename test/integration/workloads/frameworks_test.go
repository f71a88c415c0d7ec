package workloads_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

// refusedWhole waits until want pods of app exist, each labelled into gang
// and refused (PodScheduled False), failing if any binds meanwhile.
func refusedWhole(t *testing.T, ns, app, gang string, want int) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("%d pods of %s in gang %s, refused whole", want, app, gang), func(ctx context.Context) (bool, error) {
		pods := podsOf(t, ns, app)
		refused := 0
		for _, p := range pods {
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s bound to %s while its gang cannot fit", p.Name, p.Spec.NodeName)
			}
			if p.Labels[schedv1alpha1.PodGroupLabel] != gang {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
					refused++
				}
			}
		}
		return len(pods) == want && refused == want, nil
	})
}

// boundPods waits until want pods of app are bound and returns them.
func boundPods(t *testing.T, ns, app string, want int) []corev1.Pod {
	t.Helper()
	var bound []corev1.Pod
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("%d pods of %s bound", want, app), func(ctx context.Context) (bool, error) {
		bound = bound[:0]
		pods := podsOf(t, ns, app)
		for _, p := range pods {
			if p.Spec.NodeName != "" {
				bound = append(bound, p)
			}
		}
		if len(bound) == want {
			return true, nil
		}
		// Not an error: shown if the wait times out.
		return false, fmt.Errorf("pods: %s", podStates(pods))
	})
	return bound
}

// podStates says where each pod stands: its node or why it waits.
func podStates(pods []corev1.Pod) string {
	var states []string
	for _, p := range pods {
		state := p.Spec.NodeName
		if state == "" {
			state = fmt.Sprintf("unbound, gang %q, gates %v", p.Labels[schedv1alpha1.PodGroupLabel], p.Spec.SchedulingGates)
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled {
					state += fmt.Sprintf(", %s: %s", c.Reason, c.Message)
				}
			}
		}
		states = append(states, p.Name+" ("+state+")")
	}
	if len(states) == 0 {
		return "none"
	}
	return strings.Join(states, "; ")
}

// inferredPodGroup reads the PodGroup Tessera inferred and checks its
// minMember and controller.
func inferredPodGroup(t *testing.T, ns, name string, minMember int32, owner types.UID) {
	t.Helper()
	pg := &schedv1alpha1.PodGroup{}
	if err := env.CR.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: name}, pg); err != nil {
		t.Fatalf("the inferred PodGroup %s: %v", name, err)
	}
	if c := metav1.GetControllerOf(pg); pg.Spec.MinMember != minMember || c == nil || c.UID != owner {
		t.Errorf("PodGroup %s: minMember %d, controller %+v; want %d, the workload (%s)", name, pg.Spec.MinMember, c, minMember, owner)
	}
}

// deletedWithOwner deletes obj in the foreground and waits until the named
// PodGroups and the pods of app are gone (garbage collection).
func deletedWithOwner(t *testing.T, obj ctrlclient.Object, app string, podGroups ...string) {
	t.Helper()
	if err := env.CR.Delete(t.Context(), obj, ctrlclient.PropagationPolicy(metav1.DeletePropagationForeground)); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the workload's pods and PodGroups garbage collected", func(ctx context.Context) (bool, error) {
		for _, name := range podGroups {
			err := env.CR.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}, &schedv1alpha1.PodGroup{})
			if err == nil {
				return false, nil
			}
			if !apierrors.IsNotFound(err) {
				return false, err
			}
		}
		return len(podsOf(t, obj.GetNamespace(), app)) == 0, nil
	})
}

// A JobSet of two replicated jobs (a driver and two workers), with only
// schedulerName set, is one gang of all its pods: the JobSet controller
// makes the Jobs, the Job controller the pods, Tessera infers the gang from
// the JobSet (not from each Indexed Job), and while one pod cannot fit none
// binds.
func TestJobSetIsGangScheduledWhole(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "js-h100-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "js-h100-1", "dgx-h100", "rack-a")
	replicated := func(name string, replicas int32, gpus int64) jobsetv1alpha2.ReplicatedJob {
		return jobsetv1alpha2.ReplicatedJob{Name: name, Replicas: replicas, Template: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](1), Completions: ptr.To[int32](1), Template: gpuTemplate("pretrain", gpus)},
		}}
	}
	js := &jobsetv1alpha2.JobSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pretrain"},
		Spec: jobsetv1alpha2.JobSetSpec{ReplicatedJobs: []jobsetv1alpha2.ReplicatedJob{
			replicated("driver", 1, 4), replicated("workers", 2, 8),
		}},
	}
	if err := env.CR.Create(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	// 4 + 8 + 8 GPUs on two 8-GPU nodes: the workers would fit, the set does not.
	refusedWhole(t, ns, "pretrain", "pretrain", 3)
	inferredPodGroup(t, ns, "pretrain", 3, js.UID)

	env.GPUNode(t, "js-h100-2", "dgx-h100", "rack-a")
	boundPods(t, ns, "pretrain", 3)
	deletedWithOwner(t, js, "pretrain", "pretrain")
}

func lwsTemplate(app string, gpus int64) corev1.PodTemplateSpec {
	tmpl := gpuTemplate(app, gpus)
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyAlways
	tmpl.Spec.Containers[0].Image = "vllm/vllm-openai:v0.8.5"
	tmpl.Spec.Containers[0].Args = []string{"--tensor-parallel-size=8", "--pipeline-parallel-size=2"}
	return tmpl
}

// scaleTo scales obj through its scale subresource, as an HPA or KEDA does.
func scaleTo(t *testing.T, obj ctrlclient.Object, replicas int32) {
	t.Helper()
	scale := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Namespace: obj.GetNamespace(), Name: obj.GetName()}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	if err := env.CR.SubResource("scale").Update(t.Context(), obj, ctrlclient.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scaling %s to %d: %v", obj.GetName(), replicas, err)
	}
}

// vllmGroups is a LeaderWorkerSet of one TP=16 vLLM group: a leader and a
// worker of 8 GPUs each, its pods labelled app=name.
func vllmGroups(ns, name string, labels map[string]string) *lwsv1.LeaderWorkerSet {
	return &lwsv1.LeaderWorkerSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: lwsv1.LeaderWorkerSetSpec{
			Replicas: ptr.To[int32](1),
			// The Go type sends every field (YAML would leave it to the
			// CRD's default).
			StartupPolicy: lwsv1.LeaderCreatedStartupPolicy,
			LeaderWorkerTemplate: lwsv1.LeaderWorkerTemplate{
				Size:           ptr.To[int32](2),
				WorkerTemplate: lwsTemplate(name, 8),
			},
		},
	}
}

// inGroup returns the pods of LWS group index.
func inGroup(pods []corev1.Pod, index string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Labels[lwsv1.GroupIndexLabelKey] == index {
			out = append(out, p)
		}
	}
	return out
}

// racksOf returns the racks the pods are bound in.
func racksOf(t *testing.T, pods []corev1.Pod) map[string]int {
	t.Helper()
	racks := map[string]int{}
	for _, p := range pods {
		n, err := env.Client.CoreV1().Nodes().Get(t.Context(), p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		racks[n.Labels[gpunodes.LabelRack]]++
	}
	return racks
}

// A LeaderWorkerSet running a TP=16 vLLM group (size 2: a leader and a
// worker of 8 GPUs each) is one gang per group: the LWS controller and its
// pod webhook make the leader and worker StatefulSets, Tessera infers the
// group's gang from the LWS, and places it whole in the one rack that can
// hold it. Scaling the LWS through its scale subresource, as an HPA would,
// adds a group that waits whole until there is room for all of it.
func TestLeaderWorkerSetGroupsArePlacedWhole(t *testing.T) {
	ns := env.Namespace(t)
	for _, n := range []struct{ name, rack string }{{"lws-a-0", "rack-a"}, {"lws-b-0", "rack-b"}, {"lws-b-1", "rack-b"}} {
		publishedNode(t, n.name, n.rack)
	}
	lws := vllmGroups(ns, "vllm", nil)
	if err := env.CR.Create(t.Context(), lws); err != nil {
		t.Fatal(err)
	}
	group0 := boundPods(t, ns, "vllm", 2)
	if racks := racksOf(t, group0); racks["rack-b"] != 2 {
		t.Errorf("group 0 in racks %v, want both pods in rack-b, the only rack that holds it", racks)
	}
	for _, p := range group0 {
		if p.Labels[schedv1alpha1.PodGroupLabel] != "vllm-0" {
			t.Errorf("pod %s in gang %q, want vllm-0", p.Name, p.Labels[schedv1alpha1.PodGroupLabel])
		}
	}
	inferredPodGroup(t, ns, "vllm-0", 2, lws.UID)

	// Scale to 2 groups with room for half of one: the new group waits whole.
	scaleTo(t, lws, 2)
	framework.Eventually(t, framework.DefaultTimeout, "group 1's pods in gang vllm-1, refused whole", func(ctx context.Context) (bool, error) {
		refused := 0
		for _, p := range podsOf(t, ns, "vllm") {
			if p.Labels[lwsv1.GroupIndexLabelKey] != "1" {
				continue
			}
			if p.Spec.NodeName != "" {
				t.Fatalf("pod %s of group 1 bound to %s while the group cannot fit", p.Name, p.Spec.NodeName)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && p.Labels[schedv1alpha1.PodGroupLabel] == "vllm-1" {
					refused++
				}
			}
		}
		return refused == 2, nil
	})
	publishedNode(t, "lws-a-1", "rack-a")
	all := boundPods(t, ns, "vllm", 4)
	group1 := inGroup(all, "1")
	if racks := racksOf(t, group1); racks["rack-a"] != 2 {
		t.Errorf("group 1 in racks %v, want both pods in rack-a", racks)
	}
	inferredPodGroup(t, ns, "vllm-1", 2, lws.UID)
	deletedWithOwner(t, lws, "vllm", "vllm-0", "vllm-1")
}
