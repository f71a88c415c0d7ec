package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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

// loopbackPorts are a controller's health probe and webhook ports, free on
// 127.0.0.1.
type loopbackPorts struct{ health, webhook int }

func freeLoopbackPorts() (loopbackPorts, error) {
	health, err := FreePort()
	if err != nil {
		return loopbackPorts{}, err
	}
	webhook, err := FreePort()
	return loopbackPorts{health: health, webhook: webhook}, err
}

func (l loopbackPorts) readyzURL() string { return fmt.Sprintf("http://127.0.0.1:%d/readyz", l.health) }

func (l loopbackPorts) webhookAddr() string { return fmt.Sprintf("127.0.0.1:%d", l.webhook) }

// selfSignedCABundle writes a self-signed pair into dir and returns its
// certificate, the caBundle of the webhooks served with it.
func selfSignedCABundle(dir, commonName string) ([]byte, error) {
	if err := writeSelfSignedPair(dir, commonName); err != nil {
		return nil, fmt.Errorf("writing the %s certificate: %w", commonName, err)
	}
	return os.ReadFile(filepath.Join(dir, "tls.crt"))
}

// registerWhenReady waits until p answers on its health probe, then
// registers file's webhooks on its webhook server (register).
func registerWhenReady(ctx context.Context, p *process, ports loopbackPorts, caBundle []byte, config *rest.Config, file, name string, edit func(*webhook) bool) error {
	if err := waitReady(ctx, p, ports.readyzURL(), 2*time.Minute); err != nil {
		return err
	}
	server := webhookServer{proc: p, addr: ports.webhookAddr(), caBundle: caBundle}
	if err := server.register(ctx, config, file, name, edit); err != nil {
		return fmt.Errorf("registering %s's webhooks: %w", name, err)
	}
	return nil
}

// webhookServer is a component's webhook server on loopback, serving the
// self-signed certificate caBundle.
type webhookServer struct {
	proc     *process
	addr     string
	caBundle []byte
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

// register creates the webhook configurations in file (as a release ships
// them, pointing at an in-cluster Service), named <name>-mutating and
// <name>-validating, each webhook pointed at its path on the server; edit
// adjusts each webhook's selectors and says whether to keep it. It waits
// until the server answers on every path it registers: a component may
// set up a webhook only once it sees the API it serves, and a registered
// path it does not serve yet fails every request it intercepts.
func (s webhookServer) register(ctx context.Context, config *rest.Config, file, name string, edit func(*webhook) bool) error {
	if err := waitServing(ctx, s.proc, s.addr, time.Minute); err != nil {
		return err
	}
	configs, err := readWebhooks(file, name+"-mutating", name+"-validating", "https://"+s.addr, s.caBundle, edit)
	if err != nil {
		return err
	}
	if err := s.waitPaths(ctx, configs.paths); err != nil {
		return err
	}
	return configs.create(ctx, config)
}

// webhookConfigs are webhook configurations ready to create, and the paths
// their webhooks call.
type webhookConfigs struct {
	objs  []runtime.Object
	paths []string
}

// readWebhooks reads the configurations in file, names them, points each
// webhook kept by edit at its path on baseURL trusting caBundle.
func readWebhooks(file, mutatingName, validatingName, baseURL string, caBundle []byte, edit func(*webhook) bool) (webhookConfigs, error) {
	scheme := runtime.NewScheme()
	if err := admissionv1.AddToScheme(scheme); err != nil {
		return webhookConfigs{}, err
	}
	objs, err := ReadManifestFile(serializer.NewCodecFactory(scheme).UniversalDeserializer(), file)
	if err != nil {
		return webhookConfigs{}, fmt.Errorf("%s: %w", file, err)
	}
	var out webhookConfigs
	point := func(cc *admissionv1.WebhookClientConfig) {
		out.paths = append(out.paths, pointAt(cc, baseURL, caBundle))
	}
	for _, obj := range objs {
		switch c := obj.(type) {
		case *admissionv1.MutatingWebhookConfiguration:
			c.ObjectMeta = metav1.ObjectMeta{Name: mutatingName}
			c.Webhooks = keepWebhooks(c.Webhooks, func(w *admissionv1.MutatingWebhook) (*webhook, *admissionv1.WebhookClientConfig) {
				return &webhook{rules: w.Rules, objectSelector: &w.ObjectSelector, namespaceSelector: &w.NamespaceSelector}, &w.ClientConfig
			}, edit, point)
		case *admissionv1.ValidatingWebhookConfiguration:
			c.ObjectMeta = metav1.ObjectMeta{Name: validatingName}
			c.Webhooks = keepWebhooks(c.Webhooks, func(w *admissionv1.ValidatingWebhook) (*webhook, *admissionv1.WebhookClientConfig) {
				return &webhook{rules: w.Rules, objectSelector: &w.ObjectSelector, namespaceSelector: &w.NamespaceSelector}, &w.ClientConfig
			}, edit, point)
		default:
			return webhookConfigs{}, fmt.Errorf("%s: unexpected %T", file, obj)
		}
		out.objs = append(out.objs, obj)
	}
	return out, nil
}

// keepWebhooks keeps the webhooks edit keeps (as edit left them), each
// pointed by point; parts exposes a webhook of either kind to both.
func keepWebhooks[W any](ws []W, parts func(*W) (*webhook, *admissionv1.WebhookClientConfig), edit func(*webhook) bool, point func(*admissionv1.WebhookClientConfig)) []W {
	kept := ws[:0]
	for i := range ws {
		w, cc := parts(&ws[i])
		if edit(w) {
			point(cc)
			kept = append(kept, ws[i])
		}
	}
	return kept
}

// create creates the configurations; existing ones are left as they are.
func (c webhookConfigs) create(ctx context.Context, config *rest.Config) error {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	for _, obj := range c.objs {
		switch c := obj.(type) {
		case *admissionv1.MutatingWebhookConfiguration:
			_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{})
		case *admissionv1.ValidatingWebhookConfiguration:
			_, err = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, c, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// waitPaths waits until the server answers on each path.
func (s webhookServer) waitPaths(ctx context.Context, paths []string) error {
	for _, path := range paths {
		if err := s.waitPath(ctx, path, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// waitPath waits until the server answers on path with anything but 404
// (an empty review is a bad request to a webhook it serves).
func (s webhookServer) waitPath(ctx context.Context, path string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // only whether the path is served is checked
	}}
	defer client.CloseIdleConnections()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := s.proc.exited(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+s.addr+path, strings.NewReader("{}"))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode != http.StatusNotFound, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to serve its webhook %s (log %s): %w", s.proc.name, path, s.proc.logPath, err)
	}
	return nil
}

// pointAt replaces the in-cluster Service a webhook names with its URL on
// the loopback server, keeping the path, which it returns.
func pointAt(cc *admissionv1.WebhookClientConfig, baseURL string, caBundle []byte) string {
	path := ""
	if cc.Service != nil && cc.Service.Path != nil {
		path = *cc.Service.Path
	}
	url := baseURL + path
	*cc = admissionv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
	return path
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
