package launcher_test

import (
	"testing"

	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// A GPU node whose agent has not published a topology takes gangs by GPU
// count, in the topology-fit check as in the scheduler
// (missingTopology: CountOnly), instead of holding them Pending forever.
func TestNodeWithoutTopologyTakesAGangByCount(t *testing.T) {
	ns := env.Namespace(t)
	env.StartLauncher(t, recheck)
	env.GPUNode(t, "count-a", "dgx-h100", "rack-count")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	job := trainingJob(ns, "by-count", q, 1, 8)
	submit(t, job)
	// Without a topology the scheduler names no GPU IDs: the device
	// plugin picks them.
	waitJob(t, job, "to run on the node without a topology", inPhase(launcher.PhaseRunning))
	if pods := jobPods(t, ns, launcher.LabelTrainingJob, job.Name); len(pods) != 1 || pods[0].Spec.NodeName != "count-a" {
		t.Errorf("pods %v, want one on count-a", pods)
	}
}
