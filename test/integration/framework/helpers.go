package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/plugins"
)

// DefaultTimeout bounds every wait in the integration tests.
const DefaultTimeout = 60 * time.Second

// Eventually polls cond until it returns true, failing the test with what
// was awaited and the last error seen if it does not within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %v for %s: %v (last error: %v)", timeout, what, err, last)
	}
}

// Namespace creates a namespace for one test and deletes it afterwards.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.TrimRight(name, "-") + "-"}}
	ns, err := cluster.CreateNamespace(t.Context(), e.Client, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No namespace controller runs here: delete the pods themselves, so
		// they stop counting on nodes a later test may create again.
		_ = e.Client.CoreV1().Pods(ns.Name).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = e.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// GPUNode creates a simulated node of the named shape, waits until kwok has
// made it Ready, and deletes it when the test ends.
func (e *Env) GPUNode(t testing.TB, name, shapeName, rack string) *corev1.Node {
	t.Helper()
	return e.GPUNodeWith(t, name, shapeName, rack, func(*corev1.Node) {})
}

// GPUNodeWith is GPUNode with the node changed by edit before it is
// created (a node whose GPUs no device plugin advertises, for DRA).
func (e *Env) GPUNodeWith(t testing.TB, name, shapeName, rack string, edit func(*corev1.Node)) *corev1.Node {
	t.Helper()
	shape, err := gpunodes.Lookup(shapeName)
	if err != nil {
		t.Fatal(err)
	}
	obj := shape.Node(name, rack)
	edit(obj)
	node, err := e.Client.CoreV1().Nodes().Create(t.Context(), obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := e.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting node %s: %v", name, err)
		}
	})
	Eventually(t, DefaultTimeout, fmt.Sprintf("node %s to turn Ready", name), func(ctx context.Context) (bool, error) {
		n, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	return node
}

// WaitForPod waits until the pod satisfies cond and returns it.
func (e *Env) WaitForPod(t testing.TB, namespace, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	Eventually(t, DefaultTimeout, fmt.Sprintf("pod %s/%s %s", namespace, name, what), func(ctx context.Context) (bool, error) {
		p, err := e.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return cond(p), nil
	})
	return pod
}

// StartScheduler runs Tessera's scheduler in this process with the shipped
// profiles (manifests/scheduler/config.yaml), for one test: until the
// returned stop, or the test's end.
func (e *Env) StartScheduler(t testing.TB) (stop func()) {
	t.Helper()
	config := filepath.Join(e.RepoRoot, "manifests", "scheduler", "config.yaml")
	stop, err := e.Cluster.StartScheduler(context.Background(), config, plugins.SchedulerOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return stop
}

// StartSchedulerWithConfig is StartScheduler with the shipped config text
// changed by edit first; it returns the start-up error instead of failing,
// for tests of bad configuration.
func (e *Env) StartSchedulerWithConfig(t testing.TB, edit func(string) string) (stop func(), err error) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.RepoRoot, "manifests", "scheduler", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(edit(string(raw))), 0o644); err != nil {
		t.Fatal(err)
	}
	return e.Cluster.StartScheduler(context.Background(), path, plugins.SchedulerOptions()...)
}

// RenderChart renders the chart's templates (paths under charts/tessera,
// e.g. templates/node-agent/rbac.yaml) into the release namespace
// tessera-system with the given --set values, as bin/helm does, and
// returns the file holding them, for cluster.CreateFromFiles.
func (e *Env) RenderChart(t testing.TB, templates []string, sets ...string) string {
	t.Helper()
	args := []string{"template", "tessera", filepath.Join(e.RepoRoot, "charts", "tessera"), "--namespace", "tessera-system"}
	for _, tpl := range templates {
		args = append(args, "--show-only", tpl)
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := exec.Command(filepath.Join(e.RepoRoot, "bin", "helm"), args...).Output()
	if err != nil {
		t.Fatalf("helm %v: %v", args, err)
	}
	path := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
