// Command local-cluster runs Tessera on a local simulated GPU cluster: a real
// etcd, kube-apiserver, kube-controller-manager, Kueue, kwok, the
// LeaderWorkerSet controller and Kubeflow's training-operator on 127.0.0.1,
// Tessera's scheduler as a process, a handful of GPU nodes of mixed shapes,
// and the example workloads from examples/, the last of them on a node
// served through DRA. It prints where each workload landed, checks that
// against what each example expects, and shuts down (or, with --keep, stays up and
// prints the kubeconfig). Run it through `make demo`, which builds the binaries.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
)

const demoNamespace = "tessera-demo"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "local-cluster:", err)
		os.Exit(1)
	}
}

func run() error {
	repo := flag.String("repo", ".", "root of the Tessera checkout (holds bin/, manifests/)")
	examples := flag.String("examples", "examples", "folder of workload manifests to apply, relative to --repo")
	keep := flag.Bool("keep", false, "keep the cluster running after the placement table, until interrupted")
	timeout := flag.Duration("timeout", 2*time.Minute, "how long to wait for the workloads to settle")
	klog.InitFlags(nil)
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	workDir, err := os.MkdirTemp("", "tessera-local-cluster-")
	if err != nil {
		return err
	}
	progress("starting etcd, kube-apiserver, kube-controller-manager, kwok, the LWS controller, the training-operator and Kueue on 127.0.0.1 (logs in %s)", workDir)
	c, err := cluster.Start(ctx, cluster.Options{
		BinDir:            filepath.Join(*repo, "bin"),
		CRDDirs:           []string{filepath.Join(*repo, "manifests", "crd")},
		WorkDir:           workDir,
		Kueue:             true,
		ControllerManager: true,
		LeaderWorkerSet:   true,
		TrainingOperator:  true,
	})
	if err != nil {
		return err
	}
	failed := true
	defer func() {
		progress("stopping the cluster")
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "local-cluster: stopping:", err)
		}
		if failed {
			progress("component logs kept in %s", workDir)
		} else {
			_ = os.RemoveAll(workDir)
		}
	}()

	progress("starting tessera-scheduler")
	// The flags of manifests/scheduler/deployment.yaml.
	if err := c.StartSchedulerProcess(ctx, "tessera-scheduler", filepath.Join(*repo, "bin", "tessera-scheduler"),
		filepath.Join(*repo, "manifests", "scheduler", "config.yaml"), "--feature-gates=NominatedNodeNameForExpectation=false"); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	scheme, err := apischeme.New()
	if err == nil {
		err = errors.Join(kubeflowv1.AddToScheme(scheme), lwsv1.AddToScheme(scheme))
	}
	if err != nil {
		return err
	}
	cr, err := ctrlclient.New(c.Config, ctrlclient.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	if err := createNodes(ctx, client, demoNodes); err != nil {
		return err
	}
	if err := startNodeAgents(ctx, c, filepath.Join(*repo, "bin", "node-agent"), demoNodes); err != nil {
		return err
	}
	topologies, err := waitTopologies(ctx, c, cr, len(demoNodes), *timeout)
	if err != nil {
		return err
	}
	if err := printTopologies(os.Stdout, topologies); err != nil {
		return err
	}
	pods, err := applyExamples(ctx, client, cr, filepath.Join(*repo, *examples))
	if err != nil {
		return err
	}
	progress("waiting up to %s for %d workloads to be placed", *timeout, len(pods))
	placed, waitErr := waitSettled(ctx, c, client, pods, *timeout)
	if err := printPlacements(os.Stdout, client, placed); err != nil {
		return err
	}
	if waitErr != nil {
		return waitErr
	}
	if err := checkExpectations(placed); err != nil {
		return err
	}
	if err := runLauncherDemo(ctx, c, client, cr, *repo, *timeout); err != nil {
		return err
	}
	if err := runFrameworksDemo(ctx, c, client, cr, *repo, *timeout); err != nil {
		return err
	}
	if err := runDRADemo(ctx, c, client, cr, *repo, *timeout); err != nil {
		return err
	}
	failed = false
	if *keep {
		fmt.Printf("\nThe cluster stays up until you press Ctrl-C.\n  export KUBECONFIG=%s\n  kubectl get nodes,pods -A\n", c.KubeconfigPath)
		<-ctx.Done()
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func createNodes(ctx context.Context, client kubernetes.Interface, nodes []demoNode) error {
	for _, n := range nodes {
		shape, err := gpunodes.Lookup(n.shape)
		if err != nil {
			return err
		}
		node := shape.Node(n.name, n.rack)
		if n.pool != "" {
			node.Labels[labelPool] = n.pool
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.name, err)
		}
		progress("node %s: %s in %s", n.name, shape.Description, n.rack)
	}
	return nil
}

// startNodeAgents runs one node agent per node, each over fake NVML of its
// node's shape, publishing through the admin kubeconfig.
func startNodeAgents(ctx context.Context, c *cluster.Cluster, binary string, nodes []demoNode) error {
	for _, n := range nodes {
		if err := c.StartProcess(ctx, "node-agent-"+n.name, binary,
			"--nvml=fake:"+n.shape, "--node-name="+n.name, "--kubeconfig="+c.KubeconfigPath,
			"--metrics-bind-address=", "--interval=1s"); err != nil {
			return err
		}
	}
	progress("started %d node agents (fake NVML of each node's shape)", len(nodes))
	return nil
}

// joinNodes adds nodes, with a node agent each, and waits until all
// total nodes of the cluster have published their GPU topology.
func joinNodes(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, cr ctrlclient.Client, repo string, nodes []demoNode, total int, timeout time.Duration) error {
	if err := createNodes(ctx, client, nodes); err != nil {
		return err
	}
	if err := startNodeAgents(ctx, c, filepath.Join(repo, "bin", "node-agent"), nodes); err != nil {
		return err
	}
	_, err := waitTopologies(ctx, c, cr, total, timeout)
	return err
}

// waitTopologies waits until count nodes' GPUNodeTopology is published.
func waitTopologies(ctx context.Context, c *cluster.Cluster, cr ctrlclient.Client, count int, timeout time.Duration) ([]tesserav1alpha1.GPUNodeTopology, error) {
	var list tesserav1alpha1.GPUNodeTopologyList
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Healthy(); err != nil {
			return false, err
		}
		if err := cr.List(ctx, &list); err != nil {
			return false, nil
		}
		return len(list.Items) == count, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the node agents to publish GPU topology: %w", err)
	}
	return list.Items, nil
}

// applyExamples creates every object in the examples folder in the demo
// namespace and returns the pods among them.
func applyExamples(ctx context.Context, client kubernetes.Interface, cr ctrlclient.Client, dir string) ([]*corev1.Pod, error) {
	if _, err := cluster.CreateNamespace(ctx, client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace}}); err != nil {
		return nil, err
	}
	objs, err := cluster.ReadManifests(cr.Scheme(), dir)
	if err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	for _, obj := range objs {
		namespaced, err := cr.IsObjectNamespaced(obj)
		if err != nil {
			return nil, err
		}
		if namespaced && obj.GetNamespace() == "" {
			obj.SetNamespace(demoNamespace)
		}
		if err := cr.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, pod)
		}
	}
	progress("applied %d objects from %s", len(objs), dir)
	return pods, nil
}

// waitSettled waits until every pod is Running or the scheduler has marked
// it unschedulable, and returns the pods as last seen.
func waitSettled(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, pods []*corev1.Pod, timeout time.Duration) ([]*corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	for {
		if err := c.Healthy(); err != nil {
			return pods, err
		}
		settled := true
		for i, p := range pods {
			latest, err := client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return pods, err
			}
			pods[i] = latest
			if outcome(latest) == "" {
				settled = false
			}
		}
		if settled {
			return pods, nil
		}
		if time.Now().After(deadline) {
			return pods, fmt.Errorf("workloads not settled after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return pods, ctx.Err()
		case <-ticker.C:
		}
	}
}

// outcome is "running", "pending" (unschedulable, with a reason) or "" while undecided.
func outcome(p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodRunning {
		return "running"
	}
	if c := podScheduledCondition(p); c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
		return "pending"
	}
	return ""
}

func podScheduledCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

const expectAnnotation = "tessera.dev/demo-expect"

func checkExpectations(pods []*corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		want := p.Annotations[expectAnnotation]
		if want == "" {
			want = "running"
		}
		got := outcome(p)
		if got != want {
			errs = append(errs, fmt.Errorf("pod %s is %q, its example expects %q", p.Name, got, want))
		}
		// Every node runs an agent, so the scheduler chose each GPU pod's GPUs.
		if ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs]); got == "running" && requestedGPUs(p) > 0 &&
			(err != nil || int64(len(ids)) != requestedGPUs(p)) {
			errs = append(errs, fmt.Errorf("pod %s runs with GPUs %q recorded, want %d", p.Name, p.Annotations[tesserav1alpha1.AnnotationGPUIDs], requestedGPUs(p)))
		}
	}
	return errors.Join(errs...)
}
