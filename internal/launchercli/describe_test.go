package launchercli

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
)

const gpu corev1.ResourceName = "nvidia.com/gpu"

func admittedWorkload(cq string, gpus int64, conditions ...metav1.Condition) kueue.Workload {
	return kueue.Workload{Status: kueue.WorkloadStatus{
		Conditions: append(conditions, metav1.Condition{Type: kueue.WorkloadQuotaReserved, Status: metav1.ConditionTrue}),
		Admission: &kueue.Admission{
			ClusterQueue: kueue.ClusterQueueReference(cq),
			PodSetAssignments: []kueue.PodSetAssignment{{
				Name:          "workers",
				Flavors:       map[corev1.ResourceName]kueue.ResourceFlavorReference{gpu: "h100"},
				ResourceUsage: corev1.ResourceList{gpu: *resource.NewQuantity(gpus, resource.DecimalSI)},
			}},
		},
	}}
}

// The line sums the queue's own admitted, unfinished Workloads and names
// what is over nominal as borrowed.
func TestQuotaLineSumsAdmittedWorkloads(t *testing.T) {
	cq := &kueue.ClusterQueue{
		ObjectMeta: metav1.ObjectMeta{Name: "product"},
		Spec: kueue.ClusterQueueSpec{ResourceGroups: []kueue.ResourceGroup{{
			CoveredResources: []corev1.ResourceName{gpu},
			Flavors:          []kueue.FlavorQuotas{{Name: "h100", Resources: []kueue.ResourceQuota{{Name: gpu, NominalQuota: resource.MustParse("16")}}}},
		}}},
	}
	workloads := []kueue.Workload{
		admittedWorkload("product", 16),
		admittedWorkload("product", 8),
		admittedWorkload("product", 8, metav1.Condition{Type: kueue.WorkloadFinished, Status: metav1.ConditionTrue}),
		admittedWorkload("research", 32),
		{}, // pending: no admission
	}
	want := "nvidia.com/gpu 24 reserved of 16 nominal (flavor h100), 8 borrowed from the cohort"
	if got := quotaLine(cq, workloads); got != want {
		t.Errorf("quotaLine = %q, want %q", got, want)
	}
	want = "nvidia.com/gpu 0 reserved of 16 nominal (flavor h100)"
	if got := quotaLine(cq, nil); got != want {
		t.Errorf("quotaLine with no workloads = %q, want %q", got, want)
	}
}
