// Package chart_test checks what charts/tessera renders against a real
// apiserver: every object, with the default and with the non-default values,
// is accepted by a server-side dry-run apply (schema, CRDs, admission), and
// the KubeSchedulerConfiguration rendered from non-default values starts the
// real scheduler, which then places a GPU pod under the chart's RBAC.
package chart_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	sigsyaml "sigs.k8s.io/yaml"

	"tessera.dev/tessera/pkg/plugins"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	// Kueue for its CRDs (AdmissionCheck, queues) and webhooks.
	os.Exit(framework.Main(m, framework.Options{Kueue: true}, &env))
}

// render runs helm template on the chart in namespace with the values files.
func render(t *testing.T, namespace string, valuesFiles ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "tessera", filepath.Join(env.RepoRoot, "charts", "tessera"), "--namespace", namespace, "--include-crds"}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(filepath.Join(env.RepoRoot, "bin", "helm"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v: %s", args, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := decoder.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding helm's output: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// ensureNamespaces creates, for real, the namespaces the rendered objects
// live in: a dry run of a Namespace creates nothing for the rest to go in.
func ensureNamespaces(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		ns := o.GetNamespace()
		if o.GetKind() == "Namespace" {
			ns = o.GetName()
		}
		if ns == "" {
			continue
		}
		_, err := env.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// dryRunApply applies every object server-side with dryRun=All and reports
// each one refused.
func dryRunApply(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	kinds := map[string]int{}
	for _, o := range objs {
		err := env.CR.Apply(t.Context(), ctrlclient.ApplyConfigurationFromUnstructured(o),
			ctrlclient.DryRunAll, ctrlclient.FieldOwner("tessera-chart-check"), ctrlclient.ForceOwnership)
		if err != nil {
			t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
			continue
		}
		kinds[o.GetKind()]++
	}
	t.Logf("accepted by the apiserver (dry run): %v", kinds)
}

func installMonitoringCRDs(t *testing.T) {
	t.Helper()
	_, err := envtest.InstallCRDs(env.Cluster.Config, envtest.CRDInstallOptions{
		Paths:              []string{filepath.Join(env.RepoRoot, "bin", "prometheus-operator-crds")},
		ErrorIfPathMissing: true,
	})
	if err != nil {
		t.Fatalf("installing the ServiceMonitor and PrometheusRule CRDs (make control-plane copies them): %v", err)
	}
}

func TestChartIsAcceptedByTheAPIServer(t *testing.T) {
	installMonitoringCRDs(t)
	for _, tc := range []struct {
		name, namespace string
		values          []string
		// Kinds the values must render, so that a template silently
		// rendering nothing fails here.
		want []string
	}{
		{"default values", "tessera-system", nil,
			[]string{"CustomResourceDefinition", "Deployment", "DaemonSet", "ConfigMap", "ValidatingAdmissionPolicy", "AdmissionCheck", "ClusterRole"}},
		{"ci/full-values.yaml", "gpu-system", []string{filepath.Join(env.RepoRoot, "charts", "tessera", "ci", "full-values.yaml")},
			[]string{"Namespace", "ResourceFlavor", "ClusterQueue", "LocalQueue", "Service", "ServiceMonitor", "PrometheusRule", "DeviceClass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.namespace, tc.values...)
			rendered := map[string]bool{}
			for _, o := range objs {
				rendered[o.GetKind()] = true
			}
			for _, k := range tc.want {
				if !rendered[k] {
					t.Errorf("the chart rendered no %s", k)
				}
			}
			ensureNamespaces(t, objs)
			dryRunApply(t, objs)
		})
	}
}

// The scheduler config that non-default values render (other weights,
// plugin args, lease name, no serving profile) starts the real scheduler,
// which binds a GPU pod through it.
func TestRenderedSchedulerConfigSchedules(t *testing.T) {
	objs := render(t, "gpu-system", filepath.Join(env.RepoRoot, "charts", "tessera", "ci", "full-values.yaml"))
	var config string
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == "tessera-scheduler-config" {
			config, _, _ = unstructured.NestedString(o.Object, "data", "config.yaml")
		}
	}
	if config == "" {
		t.Fatal("the chart rendered no tessera-scheduler-config ConfigMap with config.yaml")
	}
	var parsed struct {
		LeaderElection struct{ ResourceNamespace, ResourceName string } `json:"leaderElection"`
	}
	if err := sigsyaml.Unmarshal([]byte(config), &parsed); err != nil {
		t.Fatal(err)
	}
	if parsed.LeaderElection.ResourceNamespace != "gpu-system" || parsed.LeaderElection.ResourceName != "gpu-scheduler" {
		t.Errorf("leader election lease %s/%s, want gpu-system/gpu-scheduler (the release namespace, the values' name)",
			parsed.LeaderElection.ResourceNamespace, parsed.LeaderElection.ResourceName)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	stop, err := env.Cluster.StartScheduler(context.Background(), path, plugins.SchedulerOptions()...)
	if err != nil {
		t.Fatalf("the rendered config does not start the scheduler: %v", err)
	}
	t.Cleanup(stop)

	// missingTopology: Unschedulable in these values: the node needs its
	// GPUNodeTopology for the pod to fit.
	env.GPUNode(t, "chart-gpu", "dgx-h100", "rack-chart")
	env.PublishTopology(t, "chart-gpu", "dgx-h100")
	ns := env.Namespace(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "two-gpus"},
		Spec: corev1.PodSpec{
			SchedulerName: "tessera-scheduler",
			Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "c", Image: "busybox",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("2")}},
			}},
		},
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bound := env.WaitForPod(t, ns, pod.Name, "to bind", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	if ids := bound.Annotations["tessera.dev/gpu-ids"]; ids == "" {
		t.Errorf("pod bound to %s without tessera.dev/gpu-ids", bound.Spec.NodeName)
	} else {
		t.Logf("the rendered config bound %s to %s with GPUs %s", pod.Name, bound.Spec.NodeName, ids)
	}
}

// Bad values are refused by values.schema.json before anything renders,
// with the path of the value at fault.
func TestInvalidValuesAreRefusedNamingTheField(t *testing.T) {
	for set, want := range map[string]string{
		"scheduler.replicas=two":         "/scheduler/replicas",
		"launcher.missingTopology=Never": "/launcher/missingTopology",
		"nodeAgent.interval=soon":        "/nodeAgent/interval",
		"schedular.replicas=2":           "'schedular' not allowed",
		"queues.cohort=":                 "/queues/cohort",
	} {
		cmd := exec.Command(filepath.Join(env.RepoRoot, "bin", "helm"), "template", "tessera",
			filepath.Join(env.RepoRoot, "charts", "tessera"), "--set", set)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("--set %s rendered; want it refused", set)
			continue
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("--set %s: helm said %q, want it to name %s", set, out, want)
		}
	}
}
