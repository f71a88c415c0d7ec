package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
)

// Kubeflow Trainer v2's controller manager (TrainJob over JobSet), built
// from its own module (hack/frameworks/trainer).
const trainerName = "trainer-controller-manager"

// trainerConfig runs it outside a cluster: no leader election, no
// certificate management (the stack serves its webhooks with its own pair,
// registered by URL), no metrics listener, and without the TrainJob status
// server, which reads its certificate from a fixed folder and reports
// progress from inside training pods, which kwok does not run.
const trainerConfig = `apiVersion: config.trainer.kubeflow.org/v1alpha1
kind: Configuration
health:
  healthProbeBindAddress: 127.0.0.1:%d
  readinessEndpointName: readyz
  livenessEndpointName: healthz
metrics:
  bindAddress: "0"
webhook:
  port: %d
  host: 127.0.0.1
leaderElection:
  leaderElect: false
certManagement:
  enable: false
featureGates:
  TrainJobStatus: false
`

// startTrainer runs Trainer's controller manager and registers its
// webhooks. Its webhook server reads its pair from
// $TMPDIR/k8s-webhook-server/serving-certs (controller-runtime's default),
// so TMPDIR points into the work folder.
func startTrainer(ctx context.Context, binDir, workDir, kubeconfig string, config *rest.Config) (*process, error) {
	tmp := filepath.Join(workDir, trainerName+"-tmp")
	caBundle, err := selfSignedCABundle(filepath.Join(tmp, "k8s-webhook-server", "serving-certs"), trainerName+"-webhook")
	if err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts()
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(workDir, trainerName+"-config.yaml")
	if err := os.WriteFile(configPath, fmt.Appendf(nil, trainerConfig, ports.health, ports.webhook), 0o644); err != nil {
		return nil, fmt.Errorf("writing Trainer's config: %w", err)
	}
	p, err := startProcessWithEnv(ctx, trainerName, workDir, filepath.Join(binDir, trainerName),
		[]string{"TMPDIR=" + tmp}, "--config="+configPath, "--kubeconfig="+kubeconfig)
	if err != nil {
		return nil, err
	}
	return p, registerWhenReady(ctx, p, ports, caBundle, config, filepath.Join(binDir, trainerName+"-webhooks.yaml"), trainerName, func(*webhook) bool { return true })
}
