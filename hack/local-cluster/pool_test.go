package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
)

func TestIslandOf(t *testing.T) {
	pairs := &tesserav1alpha1.GPUNodeTopology{Status: tesserav1alpha1.GPUNodeTopologyStatus{Islands: []tesserav1alpha1.GPUIsland{
		{Kind: "NVLink", GPUs: []int32{0, 1}}, {Kind: "NVLink", GPUs: []int32{2, 3}}, {Kind: "None", GPUs: []int32{4}},
	}}}
	for ids, want := range map[string]string{
		"0,1": "NVLink island of 2",
		"1,2": "split over 2 islands",
		"4":   "no NVLink (PCIe)",
		"":    "-",
		"x":   "-",
	} {
		if got := islandOf(pairs, ids); got != want {
			t.Errorf("islandOf(%q) = %q, want %q", ids, got, want)
		}
	}
	if got := largestFreeIsland(pairs.Status.Islands, []int{1, 2, 3, 4}); got != 2 {
		t.Errorf("largestFreeIsland = %d, want 2", got)
	}
}

func reservedWorkload(cq, flavor string, gpus int64) kueue.Workload {
	return kueue.Workload{Status: kueue.WorkloadStatus{
		Conditions: []metav1.Condition{{Type: kueue.WorkloadQuotaReserved, Status: metav1.ConditionTrue}},
		Admission: &kueue.Admission{ClusterQueue: kueue.ClusterQueueReference(cq), PodSetAssignments: []kueue.PodSetAssignment{{
			Flavors:       map[corev1.ResourceName]kueue.ResourceFlavorReference{gpunodes.ResourceGPU: kueue.ResourceFlavorReference(flavor)},
			ResourceUsage: corev1.ResourceList{gpunodes.ResourceGPU: *resource.NewQuantity(gpus, resource.DecimalSI)},
		}}},
	}}
}

func clusterQueue(name string, nominal int64) kueue.ClusterQueue {
	return kueue.ClusterQueue{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: kueue.ClusterQueueSpec{ResourceGroups: []kueue.ResourceGroup{{
		Flavors: []kueue.FlavorQuotas{{Name: "h100", Resources: []kueue.ResourceQuota{{Name: gpunodes.ResourceGPU, NominalQuota: *resource.NewQuantity(nominal, resource.DecimalSI)}}}},
	}}}}
}

// Reservations come from the Workloads: peaks and borrowing per queue, and
// a violation once the queues together reserve more than their quotas.
func TestObserveQuota(t *testing.T) {
	s := newPoolSampler(nil)
	cqs := []kueue.ClusterQueue{clusterQueue("a", 16), clusterQueue("b", 16)}
	flavors := []kueue.ResourceFlavor{{ObjectMeta: metav1.ObjectMeta{Name: "h100"}, Spec: kueue.ResourceFlavorSpec{NodeLabels: map[string]string{gpunodes.LabelGPUProduct: "H100"}}}}
	s.observeQuota(cqs, flavors, []kueue.Workload{reservedWorkload("a", "h100", 24), reservedWorkload("b", "h100", 8)}, time.Now())
	if q := s.quota[queueFlavor{"a", "h100"}]; q.peakReserved != 24 || q.peakBorrowed != 8 || q.nominal != 16 {
		t.Errorf("queue a = %+v, want 24 reserved, 8 borrowed of 16", *q)
	}
	if s.productQuota["H100"] != 32 || len(s.violations) != 0 {
		t.Errorf("product quota %v, violations %v; want 32 and none", s.productQuota, s.violations)
	}
	s.observeQuota(cqs, flavors, []kueue.Workload{reservedWorkload("a", "h100", 24), reservedWorkload("b", "h100", 16)}, time.Now())
	if len(s.violations) != 1 {
		t.Errorf("violations %v, want one for 40 of 32", s.violations)
	}
}
