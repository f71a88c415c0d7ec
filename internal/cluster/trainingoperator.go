package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Kubeflow's training-operator v1, built from its own module
// (hack/frameworks/training-operator: it pins older Kubernetes modules),
// run with only the PyTorchJob scheme and with Tessera's scheduler as its
// gang scheduler, so that it writes each PyTorchJob's PodGroup itself (the
// scheduler-plugins API, which the Gang plugin serves) and names Tessera's
// profile in its pods.
const (
	trainingOperatorName = "training-operator"
	// GangSchedulerName is the profile the training-operator names in
	// the pods and PodGroups it makes: the stack's training profile.
	GangSchedulerName = "tessera-scheduler"
	// Fixed by its cert package: the namespace of its certificate Secret
	// (MY_POD_NAMESPACE), the Secret, the Service name the certificate
	// must be valid for, the CA's name, the webhook configuration whose
	// caBundle it keeps, and where it reads its serving pair.
	trainingOperatorNamespace = "kubeflow"
	trainingOperatorSecret    = "training-operator-webhook-cert"
	trainingOperatorService   = "training-operator"
	trainingOperatorCA        = "training-operator-ca"
	trainingOperatorWebhooks  = "validator.training-operator.kubeflow.org"
	trainingOperatorCertDir   = "/tmp/k8s-webhook-server/serving-certs"
)

// startTrainingOperator runs the training-operator against the stack. Its
// certificate rotator keeps a CA and serving pair in a Secret, reads the
// pair from a fixed folder (in a cluster, the Secret's volume) and will not
// start its webhooks until it has put its CA into their configuration, so
// the stack writes a pair it accepts into both, and registers the
// configuration, by URL on loopback, before it starts. One stack at a time
// can run it: the folder is fixed.
func startTrainingOperator(ctx context.Context, binDir, workDir, kubeconfig string, config *rest.Config) (*process, error) {
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trainingOperatorNamespace}}
	if _, err := CreateNamespace(ctx, client, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	pair, err := newCASignedPair(trainingOperatorCA, []string{trainingOperatorService + "." + trainingOperatorNamespace + ".svc"})
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: trainingOperatorNamespace, Name: trainingOperatorSecret},
		Data:       map[string][]byte{"ca.crt": pair.caCert, "ca.key": pair.caKey, "tls.crt": pair.cert, "tls.key": pair.key},
	}
	if _, err := client.CoreV1().Secrets(trainingOperatorNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the training-operator's certificate Secret: %w", err)
	}
	if err := os.MkdirAll(trainingOperatorCertDir, 0o755); err != nil {
		return nil, fmt.Errorf("the training-operator reads its certificate from %s, which must be writable: %w", trainingOperatorCertDir, err)
	}
	if err := os.WriteFile(filepath.Join(trainingOperatorCertDir, "tls.crt"), pair.cert, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(trainingOperatorCertDir, "tls.key"), pair.key, 0o600); err != nil {
		return nil, err
	}
	ports, err := freeLoopbackPorts()
	if err != nil {
		return nil, err
	}
	configs, err := readWebhooks(filepath.Join(binDir, trainingOperatorName+"-webhooks.yaml"), "", trainingOperatorWebhooks,
		"https://"+ports.webhookAddr(), pair.caCert, func(w *webhook) bool { return w.on("kubeflow.org", "pytorchjobs") })
	if err != nil {
		return nil, err
	}
	if err := configs.create(ctx, config); err != nil {
		return nil, fmt.Errorf("registering the training-operator's webhooks: %w", err)
	}
	p, err := startProcessWithEnv(ctx, trainingOperatorName, workDir, filepath.Join(binDir, trainingOperatorName),
		[]string{"MY_POD_NAMESPACE=" + trainingOperatorNamespace},
		"--kubeconfig="+kubeconfig,
		"--enable-scheme=pytorchjob",
		"--gang-scheduler-name="+GangSchedulerName,
		"--leader-elect=false",
		"--metrics-bind-address=0",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports.health),
		fmt.Sprintf("--webhook-server-port=%d", ports.webhook),
		// Pods of a job appear at once, as in a test's timeline.
		"--kube-api-qps=100", "--kube-api-burst=200",
	)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, ports.readyzURL(), 2*time.Minute); err != nil {
		return p, err
	}
	server := webhookServer{proc: p, addr: ports.webhookAddr(), caBundle: pair.caCert}
	return p, server.waitPaths(ctx, configs.paths)
}
