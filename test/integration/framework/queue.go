package framework

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/queue"
)

// QueueSpec is one team's ClusterQueue.
type QueueSpec struct {
	GPUs   int64
	Cohort string
	// Preempt lets the queue preempt lower priorities inside it and
	// reclaim lent quota from its cohort.
	Preempt bool
	// Flavor is the spec of the queue's ResourceFlavor.
	Flavor kueue.ResourceFlavorSpec
}

// CreateQueue creates a ResourceFlavor (shared per test), the topology-fit
// AdmissionCheck, a ClusterQueue and a LocalQueue "team" in ns; it waits
// for the ClusterQueue to turn active (which needs the check Active).
func (e *Env) CreateQueue(t testing.TB, ns, name string, spec QueueSpec) string {
	t.Helper()
	ctx := t.Context()
	flavor := &kueue.ResourceFlavor{ObjectMeta: metav1.ObjectMeta{Name: "gpu-" + ns}, Spec: spec.Flavor}
	check := &kueue.AdmissionCheck{
		ObjectMeta: metav1.ObjectMeta{Name: "fit-" + ns},
		Spec:       kueue.AdmissionCheckSpec{ControllerName: queue.ControllerName},
	}
	cq := &kueue.ClusterQueue{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-" + ns},
		Spec: kueue.ClusterQueueSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
			CohortName:        kueue.CohortReference(spec.Cohort),
			ResourceGroups: []kueue.ResourceGroup{{
				CoveredResources: []corev1.ResourceName{gpunodes.ResourceGPU},
				Flavors: []kueue.FlavorQuotas{{
					Name:      kueue.ResourceFlavorReference(flavor.Name),
					Resources: []kueue.ResourceQuota{{Name: gpunodes.ResourceGPU, NominalQuota: *resource.NewQuantity(spec.GPUs, resource.DecimalSI)}},
				}},
			}},
			AdmissionChecksStrategy: &kueue.AdmissionChecksStrategy{AdmissionChecks: []kueue.AdmissionCheckStrategyRule{{Name: kueue.AdmissionCheckReference(check.Name)}}},
		},
	}
	if spec.Preempt {
		cq.Spec.Preemption = &kueue.ClusterQueuePreemption{
			WithinClusterQueue:  kueue.PreemptionPolicyLowerPriority,
			ReclaimWithinCohort: kueue.PreemptionPolicyAny,
		}
	}
	lq := &kueue.LocalQueue{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       kueue.LocalQueueSpec{ClusterQueue: kueue.ClusterQueueReference(cq.Name)},
	}
	for _, obj := range []ctrlclient.Object{flavor, check, cq, lq} {
		if err := e.CR.Create(ctx, obj); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = e.CR.Delete(context.Background(), obj) })
	}
	Eventually(t, DefaultTimeout, "ClusterQueue "+cq.Name+" to become active", func(ctx context.Context) (bool, error) {
		if err := e.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(cq), cq); err != nil {
			return false, err
		}
		return apimeta.IsStatusConditionTrue(cq.Status.Conditions, kueue.ClusterQueueActive), nil
	})
	return lq.Name
}
