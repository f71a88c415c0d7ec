package launcher_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// An admitted gang gets its ResourceFlavor's node labels and tolerations:
// the flavor is a tainted node, and the job's pods run there.
func TestFlavorLabelsAndTolerationsReachThePods(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "dgx-h100", "rack-taint", "taint-a", "taint-b")
	patch := []byte(`{"spec":{"taints":[{"key":"tessera.dev/pool","value":"reserved","effect":"NoSchedule"}]}}`)
	if _, err := env.Client.CoreV1().Nodes().Patch(t.Context(), "taint-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	toleration := corev1.Toleration{Key: "tessera.dev/pool", Operator: corev1.TolerationOpEqual, Value: "reserved", Effect: corev1.TaintEffectNoSchedule}
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8, Flavor: kueue.ResourceFlavorSpec{
		NodeLabels:  map[string]string{corev1.LabelHostname: "taint-a"},
		Tolerations: []corev1.Toleration{toleration},
	}})
	job := trainingJob(ns, "reserved", q, 1, 8)
	submit(t, job)
	pods := runningGang(t, job, 1)
	p := pods[0]
	if p.Spec.NodeName != "taint-a" || p.Spec.NodeSelector[corev1.LabelHostname] != "taint-a" {
		t.Errorf("pod on %s with node selector %v, want taint-a from the flavor", p.Spec.NodeName, p.Spec.NodeSelector)
	}
	found := false
	for _, tol := range p.Spec.Tolerations {
		found = found || tol.MatchToleration(&toleration)
	}
	if !found {
		t.Errorf("pod tolerations %v lack the flavor's %v", p.Spec.Tolerations, toleration)
	}
	waitJob(t, job, "to run", inPhase(launcher.PhaseRunning))
}
