package workloads_test

import (
	"context"
	"fmt"
	"testing"

	trainerv1alpha1 "github.com/kubeflow/trainer/v2/pkg/apis/trainer/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	kueueconstants "sigs.k8s.io/kueue/pkg/controller/constants"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

// tesseraTorchRuntime is a ClusterTrainingRuntime as a platform team would
// publish it for Tessera: Trainer's torch-distributed runtime with the
// trainer's pod template naming Tessera's scheduler.
func tesseraTorchRuntime(name string) *trainerv1alpha1.ClusterTrainingRuntime {
	tmpl := gpuTemplate("finetune", 0)
	tmpl.Spec.Containers[0].Name = "node"
	tmpl.Spec.Containers[0].Resources = corev1.ResourceRequirements{}
	return &trainerv1alpha1.ClusterTrainingRuntime{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"trainer.kubeflow.org/framework": "torch"}},
		Spec: trainerv1alpha1.TrainingRuntimeSpec{
			MLPolicy: &trainerv1alpha1.MLPolicy{NumNodes: ptr.To[int32](1), MLPolicySource: trainerv1alpha1.MLPolicySource{Torch: &trainerv1alpha1.TorchMLPolicySource{}}},
			Template: trainerv1alpha1.JobSetTemplateSpec{Spec: jobsetv1alpha2.JobSetSpec{ReplicatedJobs: []jobsetv1alpha2.ReplicatedJob{{
				Name: "node",
				Template: batchv1.JobTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
					Spec:       batchv1.JobSpec{Template: tmpl},
				},
			}}}},
		},
	}
}

// finetuneJob publishes a tesseraTorchRuntime for the test and returns a
// TrainJob "finetune" on it of nodes 8-GPU nodes, not yet created.
func finetuneJob(t *testing.T, ns string, nodes int32, labels map[string]string) *trainerv1alpha1.TrainJob {
	t.Helper()
	runtime := tesseraTorchRuntime("tessera-torch-" + ns)
	if err := env.CR.Create(t.Context(), runtime); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.CR.Delete(context.Background(), runtime) })
	gpus := *resource.NewQuantity(8, resource.DecimalSI)
	return &trainerv1alpha1.TrainJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "finetune", Labels: labels},
		Spec: trainerv1alpha1.TrainJobSpec{
			RuntimeRef: trainerv1alpha1.RuntimeRef{Name: runtime.Name, APIGroup: ptr.To(trainerv1alpha1.GroupVersion.Group), Kind: ptr.To("ClusterTrainingRuntime")},
			Trainer: &trainerv1alpha1.Trainer{
				NumNodes: ptr.To(nodes),
				ResourcesPerNode: &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{gpunodes.ResourceGPU: gpus},
					Limits:   corev1.ResourceList{gpunodes.ResourceGPU: gpus},
				},
			},
		},
	}
}

// A TrainJob (Kubeflow Trainer v2) on a runtime that names Tessera's
// scheduler: Trainer makes a JobSet of one Indexed Job of numNodes pods,
// and Tessera gangs the JobSet whole: refused while one node cannot fit,
// bound together once it can; deleting the TrainJob removes the JobSet,
// its pods and the inferred PodGroup.
func TestTrainJobIsGangScheduledWhole(t *testing.T) {
	ns := env.Namespace(t)
	env.GPUNode(t, "tj-h100-0", "dgx-h100", "rack-a")
	env.GPUNode(t, "tj-h100-1", "dgx-h100", "rack-a")
	tj := finetuneJob(t, ns, 3, nil)
	if err := env.CR.Create(t.Context(), tj); err != nil {
		t.Fatal(err)
	}
	// Three 8-GPU nodes' worth on two: none binds.
	refusedWhole(t, ns, "finetune", "finetune", 3)
	js := &jobsetv1alpha2.JobSet{}
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Namespace: ns, Name: "finetune"}, js); err != nil {
		t.Fatalf("Trainer's JobSet: %v", err)
	}
	inferredPodGroup(t, ns, "finetune", 3, js.UID)
	env.GPUNode(t, "tj-h100-2", "dgx-h100", "rack-a")
	boundPods(t, ns, "finetune", 3)
	deletedWithOwner(t, tj, "finetune", "finetune")
}

// A TrainJob submitted with a queue label is suspended at creation by
// Kueue's webhook and waits whole for quota (no JobSet pods); once the
// quota holds it, it is admitted and every node's pod binds together.
func TestTrainJobThroughKueueWaitsWhole(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	for i := range 2 {
		publishedNode(t, fmt.Sprintf("ktj-h100-%d", i), "rack-a")
	}
	lq := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	tj := finetuneJob(t, ns, 2, map[string]string{kueueconstants.QueueLabel: lq})
	if err := env.CR.Create(t.Context(), tj); err != nil {
		t.Fatal(err)
	}
	if !ptr.Deref(tj.Spec.Suspend, false) {
		t.Fatalf("TrainJob not suspended at creation: Kueue's webhook did not run")
	}
	waitsWholeForQuota(t, ns, lq, "finetune", 16, 2)
}
