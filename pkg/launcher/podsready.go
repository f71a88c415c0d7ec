package launcher

import (
	"context"
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"
)

// podsReadyManager names the field manager of the PodsReady condition.
const podsReadyManager = "tessera-launcher"

// podsReady is the PodsReady condition the launcher keeps on an admitted
// Workload, as Kueue's job integrations keep it: Kueue's
// waitForPodsReady evicts a Workload whose gang is not ready in time
// (reason WaitForStart, counted from admission) or not ready again in
// time after it was (WaitForRecovery, counted from when it stopped being
// ready), gives its quota back and requeues it with backoff.
func podsReady(wl *kueue.Workload, ready bool) (status metav1.ConditionStatus, reason, message string) {
	cur := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadPodsReady)
	switch {
	case !workload.IsAdmitted(wl):
		// Not admitted (yet, or again after an eviction): the next
		// admission starts the start timeout afresh, whatever the gang was
		// before. Kueue never resets the condition itself.
		return metav1.ConditionFalse, kueue.WorkloadWaitForStart, "Not all pods are ready or succeeded"
	case ready && cur != nil && (cur.Reason == kueue.WorkloadWaitForRecovery || cur.Reason == kueue.WorkloadRecovered):
		return metav1.ConditionTrue, kueue.WorkloadRecovered, "All pods reached readiness and the workload is running"
	case ready:
		return metav1.ConditionTrue, kueue.WorkloadStarted, "All pods reached readiness and the workload is running"
	case cur != nil && (cur.Status == metav1.ConditionTrue || cur.Reason == kueue.WorkloadWaitForRecovery):
		return metav1.ConditionFalse, kueue.WorkloadWaitForRecovery, "At least one pod has failed, waiting for recovery"
	default:
		return metav1.ConditionFalse, kueue.WorkloadWaitForStart, "Not all pods are ready or succeeded"
	}
}

// syncPodsReady writes the Workload's PodsReady condition if it changed.
func syncPodsReady(ctx context.Context, c ctrlclient.Client, wl *kueue.Workload, ready bool, clk clock.Clock) error {
	status, reason, message := podsReady(wl, ready)
	if cur := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadPodsReady); cur != nil && cur.Status == status && cur.Reason == reason {
		return nil
	}
	if err := workload.SetConditionAndUpdate(ctx, c, wl, kueue.WorkloadPodsReady, status, reason, message, podsReadyManager, clk); err != nil {
		return fmt.Errorf("setting PodsReady of workload %s: %w", wl.Name, err)
	}
	return nil
}
