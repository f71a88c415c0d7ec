// Package cluster starts a real, local Kubernetes control plane for
// Tessera's integration tests and demo: etcd and kube-apiserver (through
// controller-runtime's envtest), kwok for simulated GPU nodes and pod
// lifecycle, and optionally kube-controller-manager, Kueue and the JobSet,
// LeaderWorkerSet, Kubeflow training-operator and Trainer controllers. Every component listens on 127.0.0.1 and
// is built from the modules pinned in go.mod by hack/build-control-plane.sh.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Options says what to start and where its pieces are.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kwok,
	// kueue and kueue-crds/, and each framework controller with its CRDs
	// and webhooks.
	BinDir string
	// CRDDirs are installed before anything else starts.
	CRDDirs []string
	// WorkDir receives the kubeconfig, component configs and one log per component.
	WorkDir string
	// Kueue starts Kueue and installs its CRDs.
	Kueue bool
	// ControllerManager starts kube-controller-manager with the workload
	// controllers (Job, ReplicaSet, Deployment, StatefulSet), garbage
	// collection and namespace deletion.
	ControllerManager bool
	// JobSet starts the JobSet controller (sigs.k8s.io/jobset), its
	// webhooks registered, and installs its CRD. Its Jobs need
	// ControllerManager.
	JobSet bool
	// LeaderWorkerSet starts the LeaderWorkerSet controller
	// (sigs.k8s.io/lws), its webhooks registered, and installs its CRDs.
	// Its StatefulSets need ControllerManager.
	LeaderWorkerSet bool
	// TrainingOperator starts Kubeflow's training-operator v1 for
	// PyTorchJobs, gang-scheduled by GangSchedulerName (it writes their
	// PodGroups), its webhooks registered, and installs the PyTorchJob CRD.
	// One stack at a time on a machine (its certificate folder is fixed).
	TrainingOperator bool
	// Trainer starts Kubeflow Trainer v2's controller manager (TrainJob,
	// which runs as a JobSet: it needs JobSet), its webhooks registered, and
	// installs its CRDs.
	Trainer bool
	// PodsReady is Kueue's waitForPodsReady: how long an admitted
	// Workload may take to become ready before it is evicted, and its
	// requeue backoff. Zero fields take DefaultPodsReady's.
	PodsReady PodsReady
}

// Cluster is a running local control plane.
type Cluster struct {
	// Config is an admin client config for the apiserver.
	Config *rest.Config
	// KubeconfigPath is the same admin access as a kubeconfig file.
	KubeconfigPath string
	// SchedulerKubeconfig, when set, is the kubeconfig the schedulers
	// started from here use instead of the admin's (ImpersonatingKubeconfig:
	// the scheduler under its ServiceAccount's RBAC).
	SchedulerKubeconfig string
	// WorkDir holds the components' logs.
	WorkDir string

	env   *envtest.Environment
	procs []*process
}

// Start brings up the control plane. On error everything already started is
// stopped again.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	logger := klog.FromContext(ctx)
	if err := checkBinaries(opts); err != nil {
		return nil, err
	}
	apiserverLog, err := os.Create(filepath.Join(opts.WorkDir, "kube-apiserver.log"))
	if err != nil {
		return nil, err
	}
	etcdLog, err := os.Create(filepath.Join(opts.WorkDir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	crdDirs := append([]string(nil), opts.CRDDirs...)
	if opts.Kueue {
		crdDirs = append(crdDirs, filepath.Join(opts.BinDir, "kueue-crds"))
	}
	for _, f := range opts.frameworks() {
		crdDirs = append(crdDirs, f.crdDir(opts.BinDir))
	}
	if opts.TrainingOperator {
		crdDirs = append(crdDirs, filepath.Join(opts.BinDir, trainingOperatorName+"-crds"))
	}
	if opts.Trainer {
		crdDirs = append(crdDirs, filepath.Join(opts.BinDir, trainerName+"-crds"))
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: opts.BinDir,
		CRDDirectoryPaths:     crdDirs,
		ErrorIfCRDPathMissing: true,
	}
	// FreePort picks the ports, not envtest's own picker, whose
	// reservations FreePort's (in this or another test package) do not see.
	var ports [3]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	etcdURL := func(port int) *url.URL {
		return &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	}
	env.ControlPlane.Etcd = &envtest.Etcd{Out: etcdLog, Err: etcdLog, URL: etcdURL(ports[0])}
	env.ControlPlane.Etcd.Configure().Set("listen-peer-urls", etcdURL(ports[1]).String())
	env.ControlPlane.APIServer = &envtest.APIServer{Out: apiserverLog, Err: apiserverLog}
	env.ControlPlane.APIServer.Address = "127.0.0.1"
	env.ControlPlane.APIServer.Port = strconv.Itoa(ports[2])
	// No node lifecycle controller runs here to lift the not-ready taint
	// that this admission plugin puts on new nodes.
	env.ControlPlane.APIServer.Configure().Set("disable-admission-plugins", "TaintNodesByCondition")

	logger.Info("Starting etcd and kube-apiserver", "binDir", opts.BinDir)
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("starting etcd and kube-apiserver (logs in %s): %w", opts.WorkDir, err)
	}
	c = &Cluster{WorkDir: opts.WorkDir, env: env}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()

	admin, err := env.AddUser(envtest.User{Name: "tessera-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return c, fmt.Errorf("creating admin user: %w", err)
	}
	c.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return c, fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	c.KubeconfigPath = filepath.Join(opts.WorkDir, "kubeconfig")
	if err := os.WriteFile(c.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return c, err
	}

	logger.Info("Starting kwok")
	kwok, err := startKwok(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath)
	if err != nil {
		return c, err
	}
	c.procs = append(c.procs, kwok)

	if opts.ControllerManager {
		logger.Info("Starting kube-controller-manager", "controllers", controllers)
		kcm, err := startControllerManager(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath)
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, kcm)
	}

	for _, f := range opts.frameworks() {
		logger.Info("Starting framework controller", "name", f.name)
		if err := c.adopt(f.start(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath, c.Config)); err != nil {
			return c, err
		}
	}

	if opts.TrainingOperator {
		logger.Info("Starting the training-operator")
		if err := c.adopt(startTrainingOperator(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath, c.Config)); err != nil {
			return c, err
		}
	}

	if opts.Trainer {
		logger.Info("Starting Kubeflow Trainer")
		if err := c.adopt(startTrainer(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath, c.Config)); err != nil {
			return c, err
		}
	}

	if opts.Kueue {
		logger.Info("Starting Kueue")
		if err := c.adopt(startKueue(ctx, opts.BinDir, opts.WorkDir, c.KubeconfigPath, c.Config, opts.PodsReady.withDefaults())); err != nil {
			return c, err
		}
	}
	return c, nil
}

// adopt keeps a component's process, started even when it then failed
// (so that Stop stops it), and returns the error.
func (c *Cluster) adopt(p *process, err error) error {
	if p != nil {
		c.procs = append(c.procs, p)
	}
	return err
}

// MetricsURL is where the component process started under name serves its
// metrics, if the stack set its metrics address (Kueue: HTTPS, a bearer
// token allowed to get /metrics).
func (c *Cluster) MetricsURL(name string) (string, bool) {
	for _, p := range c.procs {
		if p.name == name && p.metricsURL != "" {
			return p.metricsURL, true
		}
	}
	return "", false
}

// Healthy reports an error if a component process has exited.
func (c *Cluster) Healthy() error {
	var errs []error
	for _, p := range c.procs {
		errs = append(errs, p.exited())
	}
	return errors.Join(errs...)
}

// LogFiles lists every component log, for a failed test to point at.
func (c *Cluster) LogFiles() []string {
	files, _ := filepath.Glob(filepath.Join(c.WorkDir, "*.log"))
	return files
}

// Stop stops every component, newest first.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		errs = append(errs, c.procs[i].stop(10*time.Second))
	}
	c.procs = nil
	if c.env != nil {
		errs = append(errs, c.env.Stop())
		c.env = nil
	}
	return errors.Join(errs...)
}

func checkBinaries(opts Options) error {
	need := []string{"etcd", "kube-apiserver", "kwok"}
	if opts.Kueue {
		need = append(need, "kueue", "kueue-crds", "kueue-webhooks.yaml")
	}
	if opts.ControllerManager {
		need = append(need, "kube-controller-manager")
	}
	for _, f := range opts.frameworks() {
		need = append(need, f.name, f.name+"-crds", f.name+"-webhooks.yaml")
	}
	if opts.TrainingOperator {
		need = append(need, trainingOperatorName, trainingOperatorName+"-crds", trainingOperatorName+"-webhooks.yaml")
	}
	if opts.Trainer {
		need = append(need, trainerName, trainerName+"-crds", trainerName+"-webhooks.yaml")
	}
	var missing []string
	for _, name := range need {
		if _, err := os.Stat(filepath.Join(opts.BinDir, name)); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %v in %s: run hack/build-control-plane.sh (or make control-plane)", missing, opts.BinDir)
	}
	return nil
}

// frameworks are the framework controllers opts asks for.
func (opts Options) frameworks() []frameworkController {
	var fs []frameworkController
	if opts.JobSet {
		fs = append(fs, jobSetController)
	}
	if opts.LeaderWorkerSet {
		fs = append(fs, lwsController)
	}
	return fs
}

// waitReady polls url until it answers 200, failing early if p exits.
func waitReady(ctx context.Context, p *process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to be ready at %s (log %s): %w", p.name, url, p.logPath, err)
	}
	return nil
}
