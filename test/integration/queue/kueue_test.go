// Package queue_test checks GPU quota admission through a real Kueue.
package queue_test

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{Kueue: true}, &env))
}

// gpuQueue creates a ResourceFlavor, a ClusterQueue with the given GPU
// quota and a LocalQueue in ns pointing at it.
func gpuQueue(t *testing.T, ns string, gpus int64) kueue.LocalQueueName {
	t.Helper()
	ctx := t.Context()
	flavor := &kueue.ResourceFlavor{ObjectMeta: metav1.ObjectMeta{Name: "gpu-" + ns}}
	cq := &kueue.ClusterQueue{
		ObjectMeta: metav1.ObjectMeta{Name: "gpus-" + ns},
		Spec: kueue.ClusterQueueSpec{
			NamespaceSelector: &metav1.LabelSelector{},
			ResourceGroups: []kueue.ResourceGroup{{
				CoveredResources: []corev1.ResourceName{gpunodes.ResourceGPU},
				Flavors: []kueue.FlavorQuotas{{
					Name: kueue.ResourceFlavorReference(flavor.Name),
					Resources: []kueue.ResourceQuota{{
						Name:         gpunodes.ResourceGPU,
						NominalQuota: *resource.NewQuantity(gpus, resource.DecimalSI),
					}},
				}},
			}},
		},
	}
	lq := &kueue.LocalQueue{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
		Spec:       kueue.LocalQueueSpec{ClusterQueue: kueue.ClusterQueueReference(cq.Name)},
	}
	for _, obj := range []ctrlclient.Object{flavor, cq, lq} {
		if err := env.CR.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = env.CR.Delete(context.Background(), obj) })
	}
	framework.Eventually(t, framework.DefaultTimeout, "ClusterQueue to become active", func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(cq), cq); err != nil {
			return false, err
		}
		return apimeta.IsStatusConditionTrue(cq.Status.Conditions, kueue.ClusterQueueActive), nil
	})
	return kueue.LocalQueueName(lq.Name)
}

func gpuWorkload(ns, name string, queue kueue.LocalQueueName, pods int32, gpusPerPod int64) *kueue.Workload {
	gpu := *resource.NewQuantity(gpusPerPod, resource.DecimalSI)
	return &kueue.Workload{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: kueue.WorkloadSpec{
			QueueName: queue,
			PodSets: []kueue.PodSet{{
				Name:  "workers",
				Count: pods,
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{
						Name:      "train",
						Image:     "nvcr.io/nvidia/pytorch:25.01-py3",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{gpunodes.ResourceGPU: gpu}},
					}},
				}},
			}},
		},
	}
}

func condition(t *testing.T, wl *kueue.Workload, typ string) *metav1.Condition {
	t.Helper()
	if err := env.CR.Get(t.Context(), ctrlclient.ObjectKeyFromObject(wl), wl); err != nil {
		t.Fatal(err)
	}
	return apimeta.FindStatusCondition(wl.Status.Conditions, typ)
}

func waitAdmitted(t *testing.T, wl *kueue.Workload) {
	t.Helper()
	framework.Eventually(t, framework.DefaultTimeout, "workload "+wl.Name+" to be admitted", func(ctx context.Context) (bool, error) {
		if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(wl), wl); err != nil {
			return false, err
		}
		return apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadAdmitted), nil
	})
}

func TestGPUQuotaHoldsSecondWorkloadUntilFirstFinishes(t *testing.T) {
	ns := env.Namespace(t)
	queue := gpuQueue(t, ns, 16)

	first := gpuWorkload(ns, "sixteen-gpus", queue, 2, 8)
	if err := env.CR.Create(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	waitAdmitted(t, first)
	if got := first.Status.Admission.ClusterQueue; got != kueue.ClusterQueueReference("gpus-"+ns) {
		t.Errorf("first workload admitted to %q, want gpus-%s", got, ns)
	}

	second := gpuWorkload(ns, "eight-gpus", queue, 1, 8)
	if err := env.CR.Create(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	// Kueue says, on the workload, that it waits for GPU quota.
	framework.Eventually(t, framework.DefaultTimeout, "second workload to report it waits for quota", func(ctx context.Context) (bool, error) {
		c := condition(t, second, kueue.WorkloadQuotaReserved)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "nvidia.com/gpu"), nil
	})
	if c := condition(t, second, kueue.WorkloadAdmitted); c != nil && c.Status == metav1.ConditionTrue {
		t.Fatalf("second workload admitted while the first holds all 16 GPUs: %+v", c)
	}

	// The first finishes; Kueue frees its quota and admits the second.
	condition(t, first, kueue.WorkloadFinished)
	apimeta.SetStatusCondition(&first.Status.Conditions, metav1.Condition{
		Type:    kueue.WorkloadFinished,
		Status:  metav1.ConditionTrue,
		Reason:  kueue.WorkloadFinishedReasonSucceeded,
		Message: "training run completed",
	})
	if err := env.CR.Status().Update(t.Context(), first); err != nil {
		t.Fatalf("marking first workload finished: %v", err)
	}
	waitAdmitted(t, second)
}
