package launcher_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// A nodeSelector change, which the old spec hash left out, rolls every
// replica: all pods end on the new selector.
func TestServingGroupNodeSelectorChangeRolls(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	gpuNodes(t, "h100-nvl-pairs", "rack-sel", "sel-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 4})
	sg := servingGroup(ns, "llama", q, 2)
	submit(t, sg)
	waitReplicas(t, sg, 2)

	sg.Spec.NodeSelector = map[string]string{gpunodes.LabelRack: "rack-sel"}
	if err := env.CR.Update(t.Context(), sg); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, framework.DefaultTimeout, "every replica to run with the new node selector", func(ctx context.Context) (bool, error) {
		pods := jobPods(t, ns, launcher.LabelServingGroup, sg.Name)
		updated := 0
		for _, p := range pods {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Spec.NodeSelector[gpunodes.LabelRack] == "rack-sel" {
				updated++
			}
		}
		return updated == 2 && len(pods) == 2, nil
	})
	waitReplicas(t, sg, 2)
}
