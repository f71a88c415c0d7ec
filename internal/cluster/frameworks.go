package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
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
	if err := writeSelfSignedPair(certDir, f.name+"-webhook"); err != nil {
		return nil, fmt.Errorf("writing %s webhook certificate: %w", f.name, err)
	}
	caBundle, err := os.ReadFile(filepath.Join(certDir, "tls.crt"))
	if err != nil {
		return nil, err
	}
	healthPort, err := freePort()
	if err != nil {
		return nil, err
	}
	webhookPort, err := freePort()
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(workDir, f.name+"-config.yaml")
	if err := os.WriteFile(configPath, fmt.Appendf(nil, frameworkConfig, f.configAPIVersion, healthPort, webhookPort, certDir), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s config: %w", f.name, err)
	}
	p, err := startProcess(ctx, f.name, workDir, filepath.Join(binDir, f.name),
		"--config="+configPath, "--kubeconfig="+kubeconfig)
	if err != nil {
		return nil, err
	}
	webhookAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))
	if err := waitReady(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort), 2*time.Minute); err != nil {
		return p, err
	}
	if err := waitServing(ctx, p, webhookAddr, time.Minute); err != nil {
		return p, err
	}
	if err := f.registerWebhooks(ctx, binDir, config, "https://"+webhookAddr, caBundle); err != nil {
		return p, fmt.Errorf("registering %s webhooks: %w", f.name, err)
	}
	return p, nil
}

// registerWebhooks creates the controller's webhook configurations, each
// named after the controller and pointed at its loopback server, its pod
// webhooks restricted to its own pods.
func (f frameworkController) registerWebhooks(ctx context.Context, binDir string, config *rest.Config, baseURL string, caBundle []byte) error {
	return registerWebhooks(ctx, config, filepath.Join(binDir, f.name+"-webhooks.yaml"), f.name, baseURL, caBundle,
		func(w *webhook) bool {
			if w.on("", "pods") {
				*w.objectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: f.podLabel, Operator: metav1.LabelSelectorOpExists}}}
			}
			return true
		})
}

// webhook is one webhook of a configuration, for registerWebhooks' edit.
type webhook struct {
	rules                             []admissionv1.RuleWithOperations
	objectSelector, namespaceSelector **metav1.LabelSelector
}

// onGroup reports whether the webhook intercepts any resource of group.
func (w *webhook) onGroup(group string) bool {
	return slices.ContainsFunc(w.rules, func(r admissionv1.RuleWithOperations) bool { return slices.Contains(r.APIGroups, group) })
}

// on reports whether the webhook intercepts resource of group.
func (w *webhook) on(group, resource string) bool {
	for _, r := range w.rules {
		if slices.Contains(r.APIGroups, group) && slices.ContainsFunc(r.Resources, func(res string) bool {
			return res == resource || strings.HasPrefix(res, resource+"/")
		}) {
			return true
		}
	}
	return false
}

// registerWebhooks creates the webhook configurations in file (as a
// release ships them, pointing at an in-cluster Service), named
// <name>-mutating and <name>-validating, each webhook pointed at its path
// on baseURL and trusting caBundle; edit adjusts each webhook's selectors
// and says whether to keep it.
func registerWebhooks(ctx context.Context, config *rest.Config, file, name, baseURL string, caBundle []byte, edit func(*webhook) bool) error {
	scheme := runtime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		return err
	}
	objs, err := ReadManifestFile(serializer.NewCodecFactory(scheme).UniversalDeserializer(), file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		switch c := obj.(type) {
		case *admissionv1.MutatingWebhookConfiguration:
			c.ObjectMeta = metav1.ObjectMeta{Name: name + "-mutating"}
			kept := c.Webhooks[:0]
			for _, w := range c.Webhooks {
				pointAt(&w.ClientConfig, baseURL, caBundle)
				if edit(&webhook{rules: w.Rules, objectSelector: &w.ObjectSelector, namespaceSelector: &w.NamespaceSelector}) {
					kept = append(kept, w)
				}
			}
			c.Webhooks = kept
			_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{})
		case *admissionv1.ValidatingWebhookConfiguration:
			c.ObjectMeta = metav1.ObjectMeta{Name: name + "-validating"}
			kept := c.Webhooks[:0]
			for _, w := range c.Webhooks {
				pointAt(&w.ClientConfig, baseURL, caBundle)
				if edit(&webhook{rules: w.Rules, objectSelector: &w.ObjectSelector, namespaceSelector: &w.NamespaceSelector}) {
					kept = append(kept, w)
				}
			}
			c.Webhooks = kept
			_, err = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{})
		default:
			return fmt.Errorf("%s: unexpected %T", file, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// pointAt replaces the in-cluster Service a webhook names with its URL on
// the loopback server, keeping the path.
func pointAt(cc *admissionv1.WebhookClientConfig, baseURL string, caBundle []byte) {
	path := ""
	if cc.Service != nil && cc.Service.Path != nil {
		path = *cc.Service.Path
	}
	url := baseURL + path
	*cc = admissionv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
}

// waitServing waits until addr completes a TLS handshake, failing early if
// p exits: a controller-runtime manager reports ready before its webhook
// server listens.
func waitServing(ctx context.Context, p *process, addr string, timeout time.Duration) error {
	dialer := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only reachability is checked
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s's webhook server at %s (log %s): %w", p.name, addr, p.logPath, err)
	}
	return nil
}
