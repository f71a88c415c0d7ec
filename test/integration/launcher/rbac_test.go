package launcher_test

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// The launcher runs as the ServiceAccount of manifests/launcher/rbac.yaml:
// a training job succeeds and a serving replica becomes ready, the
// admission check answering for both. A permission the manifest lacks
// stops a controller's cache or a write, and the job never gets there.
func TestLauncherRunsUnderManifestRBAC(t *testing.T) {
	if err := cluster.CreateFromFiles(t.Context(), env.CR, filepath.Join(env.RepoRoot, "manifests", "launcher", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	asLauncher := rest.CopyConfig(env.Cluster.Config)
	asLauncher.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:tessera-system:tessera-launcher"}
	ns := env.Namespace(t)
	env.StartLauncherAs(t, recheck, asLauncher)
	gpuNodes(t, "dgx-h100", "rack-rbac", "rbac-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	priorityClass(t, "rbac-high", 100)

	job := trainingJob(ns, "lora", q, 1, 4)
	job.Spec.PriorityClassName = "rbac-high"
	submit(t, job)
	pods := runningGang(t, job, 1)
	setPodPhase(t, &pods[0], corev1.PodSucceeded, "Completed")
	waitJob(t, job, "to succeed", inPhase(launcher.PhaseSucceeded))

	sg := servingGroup(ns, "llama", q, 1)
	submit(t, sg)
	waitReplicas(t, sg, 1)
}
