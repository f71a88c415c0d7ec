package launcher_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

func priorityClass(t *testing.T, name string, value int32) {
	t.Helper()
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	if err := env.CR.Create(t.Context(), pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.CR.Delete(context.Background(), pc) })
}

// gpuNodes creates DGX H100 nodes in rack with their published topology.
func gpuNodes(t *testing.T, shape, rack string, names ...string) {
	t.Helper()
	for _, n := range names {
		env.GPUNode(t, n, shape, rack)
		env.PublishTopology(t, n, shape)
	}
}

func trainingJob(ns, name, queueName string, nodes, gpus int32) *tesserav1alpha1.TrainingJob {
	return &tesserav1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: tesserav1alpha1.TrainingJobSpec{
			QueueName:    queueName,
			Image:        "nvcr.io/nvidia/pytorch:25.01-py3",
			Command:      []string{"torchrun", "train.py"},
			Nodes:        tesserav1alpha1.NodeRange{Min: nodes},
			GPUsPerNode:  gpus,
			BackoffLimit: ptr.To[int32](3),
		},
	}
}

// servingGroup is a TP=2 Llama 8B group of replicas in queueName.
func servingGroup(ns, name, queueName string, replicas int32) *tesserav1alpha1.ServingGroup {
	return &tesserav1alpha1.ServingGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       tesserav1alpha1.ServingGroupSpec{QueueName: queueName, Model: "meta-llama/Llama-3.1-8B-Instruct", TensorParallelSize: 2, Replicas: replicas},
	}
}

// submit creates obj; when the test ends, it deletes it and waits until
// it is gone (the launcher, started before, cleans up after it).
func submit(t *testing.T, obj ctrlclient.Object) {
	t.Helper()
	if err := env.CR.Create(t.Context(), obj); err != nil {
		t.Fatalf("submitting %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := env.CR.Delete(ctx, obj); ctrlclient.IgnoreNotFound(err) != nil {
			t.Errorf("deleting %s: %v", obj.GetName(), err)
			return
		}
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, framework.DefaultTimeout, true, func(ctx context.Context) (bool, error) {
			err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), obj)
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Errorf("%s still there after deletion: %v", obj.GetName(), err)
		}
	})
}

// waitJob waits until the job satisfies cond and returns it.
func waitJob(t *testing.T, job *tesserav1alpha1.TrainingJob, what string, cond func(*tesserav1alpha1.TrainingJob) bool) *tesserav1alpha1.TrainingJob {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("TrainingJob %s: phase %s, restarts %d, conditions %+v", job.Name, job.Status.Phase, job.Status.Restarts, job.Status.Conditions)
		}
	}()
	framework.Eventually(t, framework.DefaultTimeout, "TrainingJob "+job.Name+" "+what, func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(job), job); err != nil {
			return false, err
		}
		return cond(job), nil
	})
	return job
}

func inPhase(phase tesserav1alpha1.TrainingJobPhase) func(*tesserav1alpha1.TrainingJob) bool {
	return func(j *tesserav1alpha1.TrainingJob) bool { return j.Status.Phase == phase }
}

// jobPods lists a job's pods that have not ended.
func jobPods(t *testing.T, ns, label, name string) []corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := env.CR.List(t.Context(), &pods, ctrlclient.InNamespace(ns), ctrlclient.MatchingLabels{label: name}); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(pods.Items, func(p corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
}

// runningGang waits until the job runs with n pods, each bound with GPU IDs.
func runningGang(t *testing.T, job *tesserav1alpha1.TrainingJob, n int) []corev1.Pod {
	t.Helper()
	waitJob(t, job, "to run", inPhase(launcher.PhaseRunning))
	pods := jobPods(t, job.Namespace, launcher.LabelTrainingJob, job.Name)
	if len(pods) != n {
		t.Fatalf("job %s runs %d pods, want %d", job.Name, len(pods), n)
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Annotations[tesserav1alpha1.AnnotationGPUIDs] == "" {
			t.Fatalf("pod %s running without node or GPU IDs: node %q, ids %q", p.Name, p.Spec.NodeName, p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
		}
	}
	return pods
}

// setPodPhase plays the kubelet: the pod's container ended with phase.
func setPodPhase(t *testing.T, pod *corev1.Pod, phase corev1.PodPhase, reason string) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("pod %s to be marked %s", pod.Name, phase), func(ctx context.Context) (bool, error) {
		var p corev1.Pod
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(pod), &p); err != nil {
			return false, err
		}
		p.Status.Phase, p.Status.Reason, p.Status.Message = phase, reason, "exit code 1"
		return true, env.CR.Status().Update(ctx, &p)
	})
}

func workloadOf(t *testing.T, ns, name string) *kueue.Workload {
	t.Helper()
	var wl kueue.Workload
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Namespace: ns, Name: name}, &wl); err != nil {
		t.Fatal(err)
	}
	return &wl
}

// gpusHeld sums the GPUs of the pods that hold them now (bound, not ended).
func gpusHeld(ctx context.Context, namespaces ...string) (int64, error) {
	var total int64
	for _, ns := range namespaces {
		var pods corev1.PodList
		if err := env.CR.List(ctx, &pods, ctrlclient.InNamespace(ns)); err != nil {
			return 0, err
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			for _, c := range p.Spec.Containers {
				q := c.Resources.Requests[gpunodes.ResourceGPU]
				total += q.Value()
			}
		}
	}
	return total, nil
}
