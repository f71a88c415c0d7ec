package cluster

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
`

// kueueConfigTail enables the batch/job integration (for plain Jobs in
// tests) and waitForPodsReady (see PodsReady).
const kueueConfigTail = `integrations:
  frameworks:
  - batch/job
waitForPodsReady:
  timeout: %s
  recoveryTimeout: %s
  requeuingStrategy:
    timestamp: Eviction
    backoffBaseSeconds: %d
    backoffMaxSeconds: %d
%s`

// PodsReady is Kueue's waitForPodsReady as this cluster runs it. The
// launcher keeps each Workload's PodsReady condition; Kueue evicts an
// admitted Workload whose gang is not ready within Timeout (or not ready
// again within Timeout after it was), returning its quota, and requeues it
// after a backoff of BackoffBase doubling up to BackoffMax.
type PodsReady struct {
	Timeout                 time.Duration
	BackoffBase, BackoffMax time.Duration
	// BackoffLimit, when set, deactivates a Workload requeued that many
	// times.
	BackoffLimit *int32
}

// DefaultPodsReady is Kueue v0.19's own default timeout and backoff (it
// runs waitForPodsReady even when its Configuration leaves it out).
var DefaultPodsReady = PodsReady{Timeout: 30 * time.Minute, BackoffBase: time.Minute, BackoffMax: time.Hour}

func (p PodsReady) withDefaults() PodsReady {
	p.Timeout = cmp.Or(p.Timeout, DefaultPodsReady.Timeout)
	p.BackoffBase = cmp.Or(p.BackoffBase, DefaultPodsReady.BackoffBase)
	p.BackoffMax = cmp.Or(p.BackoffMax, DefaultPodsReady.BackoffMax)
	return p
}

func (p PodsReady) config() string {
	limit := ""
	if p.BackoffLimit != nil {
		limit = fmt.Sprintf("    backoffLimitCount: %d\n", *p.BackoffLimit)
	}
	return fmt.Sprintf(kueueConfigTail, p.Timeout, p.Timeout, int(p.BackoffBase.Seconds()), int(p.BackoffMax.Seconds()), limit)
}

// startKueue starts Kueue and returns it with the address of its health probes.
func startKueue(ctx context.Context, binDir, workDir, kubeconfig string, podsReady PodsReady) (*process, string, error) {
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
	config := fmt.Sprintf(kueueConfig, ports[0], ports[1], ports[2], webhookCertDir) + podsReady.config()
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
