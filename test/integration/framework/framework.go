// Package framework runs Tessera's integration tests against a real local
// control plane (internal/cluster): one per test package, started from
// TestMain, with the scheduler in-process and Tessera's plugins registered.
// Component logs are kept, and their tails printed, when a test fails.
package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	trainerv1alpha1 "github.com/kubeflow/trainer/v2/pkg/apis/trainer/v1alpha1"
	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"

	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/plugins"
)

// Options says which parts of the stack a test package needs.
type Options struct {
	// Kueue starts Kueue as a process and installs its CRDs.
	Kueue bool
	// Scheduler runs Tessera's scheduler in-process with the default profile
	// from manifests/scheduler/config.yaml, as the ServiceAccount of
	// manifests/scheduler/rbac.yaml.
	Scheduler bool
	// PodsReady is Kueue's waitForPodsReady; zero fields take Kueue's
	// defaults.
	PodsReady cluster.PodsReady
	// ControllerManager runs kube-controller-manager: Jobs, ReplicaSets,
	// Deployments and StatefulSets make pods, owned objects are garbage
	// collected.
	ControllerManager bool
	// JobSet and LeaderWorkerSet run those frameworks' controllers (with
	// their webhooks) and install their CRDs; their workloads need
	// ControllerManager.
	JobSet, LeaderWorkerSet bool
	// TrainingOperator runs Kubeflow's training-operator for PyTorchJobs
	// (it writes their PodGroups) and installs its CRD.
	TrainingOperator bool
	// Trainer runs Kubeflow Trainer v2 for TrainJobs (needs JobSet) and
	// installs its CRDs.
	Trainer bool
}

// Env is a running stack and clients for it.
type Env struct {
	Cluster *cluster.Cluster
	// Client is a typed client-go clientset.
	Client kubernetes.Interface
	// CR is a controller-runtime client that knows Tessera's, PodGroup's,
	// Kueue's, JobSet's and LeaderWorkerSet's types.
	CR ctrlclient.Client
	// RepoRoot is the root of the Tessera checkout.
	RepoRoot string
}

// Main starts the stack, runs the package's tests and stops the stack. Use
// it from TestMain: os.Exit(framework.Main(m, opts, &env)).
func Main(m *testing.M, opts Options, env **Env) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	workDir, err := os.MkdirTemp("", "tessera-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	e, stop, err := start(ctx, root, workDir, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the integration stack: %v\n", err)
		printLogTails(workDir)
		return 1
	}
	*env = e
	code := m.Run()
	if err := e.Cluster.Healthy(); err != nil {
		fmt.Fprintf(os.Stderr, "a component died during the tests: %v\n", err)
		code = 1
	}
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the integration stack: %v\n", err)
	}
	if code != 0 {
		printLogTails(workDir)
		fmt.Fprintf(os.Stderr, "component logs kept in %s\n", workDir)
	} else {
		_ = os.RemoveAll(workDir)
	}
	return code
}

func start(ctx context.Context, root, workDir string, opts Options) (*Env, func() error, error) {
	c, err := cluster.Start(ctx, cluster.Options{
		BinDir:    filepath.Join(root, "bin"),
		CRDDirs:   []string{filepath.Join(root, "manifests", "crd")},
		WorkDir:   workDir,
		Kueue:     opts.Kueue,
		PodsReady: opts.PodsReady,
		// Named, so that it cannot be left out by accident.
		ControllerManager: opts.ControllerManager,
		JobSet:            opts.JobSet,
		LeaderWorkerSet:   opts.LeaderWorkerSet,
		TrainingOperator:  opts.TrainingOperator,
		Trainer:           opts.Trainer,
	})
	if err != nil {
		return nil, nil, err
	}
	stopScheduler := func() {}
	stop := func() error {
		stopScheduler()
		return c.Stop()
	}
	// Tests poll often; the default 5 QPS would throttle their waits.
	config := rest.CopyConfig(c.Config)
	config.QPS, config.Burst = 200, 400
	scheme, err := apischeme.New()
	if err == nil {
		err = errors.Join(jobsetv1alpha2.AddToScheme(scheme), lwsv1.AddToScheme(scheme), kubeflowv1.AddToScheme(scheme), trainerv1alpha1.AddToScheme(scheme))
	}
	if err != nil {
		return nil, nil, errors.Join(err, stop())
	}
	cr, err := ctrlclient.New(config, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, errors.Join(err, stop())
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, nil, errors.Join(err, stop())
	}
	// Every scheduler a test starts runs under the chart's RBAC, as its
	// ServiceAccount: a permission the chart lacks fails the tests that
	// need it.
	if err := schedulerUnderChartRBAC(ctx, c, cr, root); err != nil {
		return nil, nil, errors.Join(err, stop())
	}
	if opts.Scheduler {
		s, err := c.StartScheduler(ctx, filepath.Join(root, "manifests", "scheduler", "config.yaml"), plugins.SchedulerOptions()...)
		if err != nil {
			return nil, nil, errors.Join(err, stop())
		}
		stopScheduler = s
	}
	return &Env{Cluster: c, Client: client, CR: cr, RepoRoot: root}, stop, nil
}

// SchedulerServiceAccount is the user the chart's scheduler runs as.
const SchedulerServiceAccount = "system:serviceaccount:tessera-system:tessera-scheduler"

func schedulerUnderChartRBAC(ctx context.Context, c *cluster.Cluster, cr ctrlclient.Client, root string) error {
	manifests := filepath.Join(root, "manifests")
	if err := cluster.CreateFromFiles(ctx, cr, filepath.Join(manifests, "namespace.yaml"), filepath.Join(manifests, "scheduler", "rbac.yaml")); err != nil {
		return fmt.Errorf("the scheduler's RBAC: %w", err)
	}
	kubeconfig, err := c.ImpersonatingKubeconfig("tessera-scheduler", SchedulerServiceAccount)
	if err != nil {
		return err
	}
	c.SchedulerKubeconfig = kubeconfig
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// printLogTails prints the last lines of each component log to stderr.
func printLogTails(workDir string) {
	logs, _ := filepath.Glob(filepath.Join(workDir, "*.log"))
	for _, path := range logs {
		lines, err := tail(path, 30)
		if err != nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "----- last lines of %s -----\n", path)
		for _, l := range lines {
			fmt.Fprintln(os.Stderr, l)
		}
	}
}

func tail(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, sc.Err()
}
