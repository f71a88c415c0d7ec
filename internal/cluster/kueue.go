package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// kueueMetricsCertDir is where Kueue v0.19 reads its metrics serving pair
// when internal certificate management is off; the path is fixed in its main.
const kueueMetricsCertDir = "/etc/kueue/metrics/certs"

// kueueConfig runs Kueue outside a cluster: no leader election, no
// certificate rotation (there are no in-cluster webhooks to inject into),
// every listener on a free loopback port.
const kueueConfig = `apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health:
  healthProbeBindAddress: 127.0.0.1:%d
metrics:
  bindAddress: 127.0.0.1:%d
webhook:
  host: 127.0.0.1
  port: %d
  certDir: %s
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
manageJobsWithoutQueueName: false
integrations:
  frameworks:
  - batch/job
`

// startKueue starts Kueue and returns it with the address of its health probes.
func startKueue(ctx context.Context, binDir, workDir, kubeconfig string) (*process, string, error) {
	if err := ensureSelfSignedPair(kueueMetricsCertDir, "kueue-metrics"); err != nil {
		return nil, "", fmt.Errorf("kueue reads its metrics certificate from %s, which must be writable (run as root): %w", kueueMetricsCertDir, err)
	}
	webhookCertDir := filepath.Join(workDir, "kueue-webhook-certs")
	if err := writeSelfSignedPair(webhookCertDir, "kueue-webhook"); err != nil {
		return nil, "", fmt.Errorf("writing kueue webhook certificate: %w", err)
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, "", err
		}
		ports[i] = p
	}
	configPath := filepath.Join(workDir, "kueue-config.yaml")
	config := fmt.Sprintf(kueueConfig, ports[0], ports[1], ports[2], webhookCertDir)
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, "", fmt.Errorf("writing kueue config: %w", err)
	}
	p, err := startProcess(ctx, "kueue", workDir, filepath.Join(binDir, "kueue"),
		"--config="+configPath,
		"--kubeconfig="+kubeconfig,
		// The visibility API server needs certificates and an APIService.
		"--feature-gates=VisibilityOnDemand=false",
	)
	return p, fmt.Sprintf("127.0.0.1:%d", ports[0]), err
}
