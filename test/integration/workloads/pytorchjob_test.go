package workloads_test

import (
	"context"
	"fmt"
	"testing"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueueconstants "sigs.k8s.io/kueue/pkg/controller/constants"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/test/integration/framework"
)

func pytorchReplica(replicas int32, gpus int64) *kubeflowv1.ReplicaSpec {
	tmpl := gpuTemplate("llama-ft", gpus)
	// Only the queue label: the training-operator names Tessera's profile.
	tmpl.Spec.SchedulerName = ""
	tmpl.Spec.Containers[0].Name = kubeflowv1.PyTorchJobDefaultContainerName
	tmpl.Spec.Containers[0].Command = []string{"torchrun", "train.py"}
	return &kubeflowv1.ReplicaSpec{Replicas: ptr.To(replicas), RestartPolicy: kubeflowv1.RestartPolicyOnFailure, Template: tmpl}
}

// The canonical PyTorchJob, 1 master and 4 workers of 8 GPUs, submitted
// with only a queue label: the training-operator (gang scheduler Tessera)
// writes its PodGroup; Kueue admits it as one Workload. With quota for
// three workers it waits whole (suspended, no pods); once the quota holds
// it, the topology-fit check passes and all 5 pods bind together in the one
// rack that can hold them, each pod's GPUs one NVLink island.
func TestCanonicalPyTorchJobThroughKueue(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	for i := range 5 {
		publishedNode(t, fmt.Sprintf("pt-a-%d", i), "rack-a")
	}
	for i := range 3 {
		publishedNode(t, fmt.Sprintf("pt-b-%d", i), "rack-b")
	}
	lq := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 32})
	job := &kubeflowv1.PyTorchJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "llama-ft", Labels: map[string]string{kueueconstants.QueueLabel: lq}},
		Spec: kubeflowv1.PyTorchJobSpec{PyTorchReplicaSpecs: map[kubeflowv1.ReplicaType]*kubeflowv1.ReplicaSpec{
			kubeflowv1.PyTorchJobReplicaTypeMaster: pytorchReplica(1, 8),
			kubeflowv1.PyTorchJobReplicaTypeWorker: pytorchReplica(4, 8),
		}},
	}
	if err := env.CR.Create(t.Context(), job); err != nil {
		t.Fatal(err)
	}
	if !ptr.Deref(job.Spec.RunPolicy.Suspend, false) {
		t.Fatalf("PyTorchJob not suspended at creation: Kueue's webhook did not run")
	}
	// 40 GPUs asked, 32 of quota: master and three workers' worth.
	pods := waitsWholeForQuota(t, ns, lq, "llama-ft", 40, 5)
	if racks := racksOf(t, pods); racks["rack-a"] != 5 {
		t.Errorf("pods in racks %v, want all 5 in rack-a, the only rack that holds the job", racks)
	}
	for _, p := range pods {
		if p.Spec.SchedulerName != cluster.GangSchedulerName || p.Labels[schedv1alpha1.PodGroupLabel] != "llama-ft" {
			t.Errorf("pod %s: scheduler %q, gang %q; want %s and the operator's PodGroup llama-ft", p.Name, p.Spec.SchedulerName, p.Labels[schedv1alpha1.PodGroupLabel], cluster.GangSchedulerName)
		}
		// A DGX H100's eight GPUs are one NVSwitch island: all of them.
		if ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs]); err != nil || len(ids) != 8 {
			t.Errorf("pod %s bound with GPUs %v (%v), want the 8 of its node's island", p.Name, ids, err)
		}
	}
	pg := &schedv1alpha1.PodGroup{}
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKey{Namespace: ns, Name: "llama-ft"}, pg); err != nil {
		t.Fatalf("the training-operator's PodGroup: %v", err)
	}
	if pg.Spec.MinMember != 5 || pg.Labels["tessera.dev/inferred-from"] != "" {
		t.Errorf("PodGroup minMember %d, labels %v; want the operator's, of 5, used as written", pg.Spec.MinMember, pg.Labels)
	}
	framework.Eventually(t, framework.DefaultTimeout, "the PyTorchJob Running", func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(job), job); err != nil {
			return false, err
		}
		for _, c := range job.Status.Conditions {
			if c.Type == kubeflowv1.JobRunning && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}
