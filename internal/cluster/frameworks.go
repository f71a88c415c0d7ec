package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// frameworkController is a workload framework's controller that the stack
// can run (JobSet, LeaderWorkerSet): a controller-runtime manager built from
// its module by hack/build-control-plane.sh into bin/<name>, with its CRDs
// in bin/<name>-crds/ and its webhook configurations, as its release
// renders them before kustomize, in bin/<name>-webhooks.yaml.
type frameworkController struct {
	name string
	// configAPIVersion is the apiVersion of its Configuration file.
	configAPIVersion string
	// podLabel is the label its own pods carry: its release's kustomize
	// patches restrict its pod webhooks to pods with it, and so does the
	// stack (a pod webhook that failed closed on every pod would stop
	// the cluster with the controller).
	podLabel string
}

var (
	jobSetController = frameworkController{
		name:             "jobset-controller",
		configAPIVersion: "config.jobset.x-k8s.io/v1alpha1",
		podLabel:         "jobset.sigs.k8s.io/jobset-name",
	}
	lwsController = frameworkController{
		name:             "lws-controller",
		configAPIVersion: "config.lws.x-k8s.io/v1alpha1",
		podLabel:         "leaderworkerset.sigs.k8s.io/name",
	}
)

// frameworkConfig runs the controller outside a cluster: no leader
// election, no certificate rotation (the stack registers its webhooks by
// URL with its own certificate), no metrics listener, every other listener
// on a free loopback port.
const frameworkConfig = `apiVersion: %s
kind: Configuration
health:
  healthProbeBindAddress: 127.0.0.1:%d
metrics:
  bindAddress: "0"
webhook:
  host: 127.0.0.1
  port: %d
  certDir: %s
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: false
`

func (f frameworkController) crdDir(binDir string) string {
	return filepath.Join(binDir, f.name+"-crds")
}

// start runs the controller, waits until it is ready and its webhook
// server answers, and registers its webhooks.
func (f frameworkController) start(ctx context.Context, binDir, workDir, kubeconfig string, config *rest.Config) (*process, error) {
	certDir := filepath.Join(workDir, f.name+"-webhook-certs")
	caBundle, err := selfSignedCABundle(certDir, f.name+"-webhook")
	if err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts()
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(workDir, f.name+"-config.yaml")
	if err := os.WriteFile(configPath, fmt.Appendf(nil, frameworkConfig, f.configAPIVersion, ports.health, ports.webhook, certDir), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s config: %w", f.name, err)
	}
	p, err := startProcess(ctx, f.name, workDir, filepath.Join(binDir, f.name),
		"--config="+configPath, "--kubeconfig="+kubeconfig)
	if err != nil {
		return nil, err
	}
	return p, registerWhenReady(ctx, p, ports, caBundle, config, filepath.Join(binDir, f.name+"-webhooks.yaml"), f.name, f.restrictPodWebhooks)
}

// restrictPodWebhooks keeps every webhook, its pod webhooks restricted to
// the controller's own pods.
func (f frameworkController) restrictPodWebhooks(w *webhook) bool {
	if w.on("", "pods") {
		*w.objectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: f.podLabel, Operator: metav1.LabelSelectorOpExists}}}
	}
	return true
}
