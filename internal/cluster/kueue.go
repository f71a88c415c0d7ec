package cluster

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// kueueMetricsCertDir is where Kueue v0.19 reads its metrics serving pair
// when internal certificate management is off; the path is fixed in its main.
const kueueMetricsCertDir = "/etc/kueue/metrics/certs"

// kueueConfig runs Kueue outside a cluster: no leader election, no
// certificate rotation (the stack registers its webhooks by URL with its
// own certificate), every listener on a free loopback port.
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

// kueueConfigTail enables the integrations of the workload APIs the stack
// can run (batch/job, JobSet, LeaderWorkerSet, and with it Kueue's pod
// groups, PyTorchJob, TrainJob) and waitForPodsReady (see PodsReady).
const kueueConfigTail = `integrations:
  frameworks:
  - batch/job
  - jobset.x-k8s.io/jobset
  - leaderworkerset.x-k8s.io/leaderworkerset
  - kubeflow.org/pytorchjob
  - trainer.kubeflow.org/trainjob
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

// kueueWebhooksOn are the resources of the enabled integrations whose
// webhooks the stack registers, beside those of Kueue's own API; a webhook
// for an integration left off would fail every request it intercepts.
var kueueWebhooksOn = []struct{ group, resource string }{
	{"batch", "jobs"},
	{"jobset.x-k8s.io", "jobsets"},
	{"leaderworkerset.x-k8s.io", "leaderworkersets"},
	{"kubeflow.org", "pytorchjobs"},
	{"trainer.kubeflow.org", "trainjobs"},
	{"", "pods"},
}

// kueueSystemNamespaces are never subject to Kueue's job webhooks, as its
// release's kustomize patches have it.
var kueueSystemNamespaces = []string{"kube-system", "kueue-system"}

// startKueue starts Kueue, waits until it is ready and registers its
// webhooks, so that a workload submitted with a queue label is suspended
// (or gated) at creation as in a cluster.
func startKueue(ctx context.Context, binDir, workDir, kubeconfig string, config *rest.Config, podsReady PodsReady) (*process, error) {
	p, healthAddr, webhookAddr, err := runKueue(ctx, binDir, workDir, kubeconfig, podsReady)
	if err != nil {
		return p, err
	}
	if err := waitReady(ctx, p, "http://"+healthAddr+"/readyz", 2*time.Minute); err != nil {
		return p, err
	}
	caBundle, err := os.ReadFile(filepath.Join(workDir, "kueue-webhook-certs", "tls.crt"))
	if err != nil {
		return p, err
	}
	server := webhookServer{proc: p, addr: webhookAddr, caBundle: caBundle}
	err = server.register(ctx, config, filepath.Join(binDir, "kueue-webhooks.yaml"), "kueue", func(w *webhook) bool {
		if w.onGroup("kueue.x-k8s.io") {
			return true
		}
		for _, on := range kueueWebhooksOn {
			if w.on(on.group, on.resource) {
				*w.namespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
					Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: kueueSystemNamespaces}}}
				return true
			}
		}
		return false
	})
	if err != nil {
		return p, fmt.Errorf("registering Kueue's webhooks: %w", err)
	}
	return p, nil
}

// runKueue starts Kueue's process and returns it with the addresses of its
// health probes and webhook server.
func runKueue(ctx context.Context, binDir, workDir, kubeconfig string, podsReady PodsReady) (*process, string, string, error) {
	if err := ensureSelfSignedPair(kueueMetricsCertDir, "kueue-metrics"); err != nil {
		return nil, "", "", fmt.Errorf("kueue reads its metrics certificate from %s, which must be writable (run as root): %w", kueueMetricsCertDir, err)
	}
	webhookCertDir := filepath.Join(workDir, "kueue-webhook-certs")
	if err := writeSelfSignedPair(webhookCertDir, "kueue-webhook"); err != nil {
		return nil, "", "", fmt.Errorf("writing kueue webhook certificate: %w", err)
	}
	var ports [3]int
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, "", "", err
		}
		ports[i] = p
	}
	configPath := filepath.Join(workDir, "kueue-config.yaml")
	config := fmt.Sprintf(kueueConfig, ports[0], ports[1], ports[2], webhookCertDir) + podsReady.config()
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, "", "", fmt.Errorf("writing kueue config: %w", err)
	}
	p, err := startProcess(ctx, "kueue", workDir, filepath.Join(binDir, "kueue"),
		"--config="+configPath,
		"--kubeconfig="+kubeconfig,
		// The visibility API server needs certificates and an APIService.
		"--feature-gates=VisibilityOnDemand=false",
	)
	if p != nil {
		p.metricsURL = fmt.Sprintf("https://127.0.0.1:%d/metrics", ports[1])
	}
	return p, fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[2]), err
}
