package chart_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	sigsyaml "sigs.k8s.io/yaml"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/test/integration/framework"
)

// metricName finds the metric names in a PromQL expression: Tessera's own,
// kube-scheduler's and Kueue's all carry one of these prefixes, and no
// label or function name Tessera's queries use does.
var metricName = regexp.MustCompile(`\b(?:tessera|scheduler|kueue)_[a-zA-Z0-9_]*`)

// jobLabel finds the job an alert rule selects (up{job="..."}).
var jobLabel = regexp.MustCompile(`job="([^"]+)"`)

// chartQueries is every PromQL expression of the chart's dashboard and
// alert rules, by where it comes from.
func chartQueries(t *testing.T) map[string]string {
	t.Helper()
	files := filepath.Join(env.RepoRoot, "charts", "tessera", "files")
	queries := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(files, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var board struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &board); err != nil {
		t.Fatal(err)
	}
	for _, p := range board.Panels {
		for i, target := range p.Targets {
			queries[fmt.Sprintf("dashboard panel %q query %d", p.Title, i)] = target.Expr
		}
	}
	raw, err = os.ReadFile(filepath.Join(files, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Expr string } `json:"rules"`
		} `json:"groups"`
	}
	if err := sigsyaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries["alert "+r.Alert] = r.Expr
		}
	}
	if len(queries) < 20 {
		t.Fatalf("found only %d queries in the dashboard and rules", len(queries))
	}
	return queries
}

// exported reports whether name is a family in families or a histogram's
// or summary's _bucket, _sum or _count series of one.
func exported(name string, families map[string]bool) bool {
	if families[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
			return true
		}
	}
	return false
}

// Every metric the dashboard and the alert rules name is served by a
// component of the running stack: the scheduler and the launcher as
// processes built from cmd/, Kueue's process, and a node agent (in this
// process: its fake NVML takes an injected XID) on its real registry. A
// renamed or dropped metric fails here with the panel or rule that names it.
// Each alert's job is a metrics Service the chart renders.
func TestDashboardAndAlertsNameExportedMetrics(t *testing.T) {
	ctx := t.Context()
	bin := buildBinaries(t, "scheduler", "launcher")
	token := metricsReaderToken(t)

	schedulerPort := freePort(t)
	if err := env.Cluster.StartSchedulerProcess(ctx, "obs-scheduler", filepath.Join(bin, "scheduler"),
		filepath.Join(env.RepoRoot, "manifests", "scheduler", "config.yaml"), fmt.Sprintf("--secure-port=%d", schedulerPort),
		// In a cluster these default to the pod's ServiceAccount: token
		// reviews and access reviews for /metrics under the chart's RBAC.
		"--authentication-kubeconfig="+env.Cluster.SchedulerKubeconfig, "--authorization-kubeconfig="+env.Cluster.SchedulerKubeconfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Cluster.StopProcess("obs-scheduler") })
	launcherPort := startLauncherProcess(t, filepath.Join(bin, "launcher"))
	agentURL, gpus := startNodeAgent(t, "obs-gpu")

	// Work that makes every event metric appear: a gang bound, a queued
	// TrainingJob admitted and placed, a critical XID.
	ns := env.Namespace(t)
	gang(t, ns, "pair", 2)
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 8})
	job := &tesserav1alpha1.TrainingJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "finetune"},
		Spec: tesserav1alpha1.TrainingJobSpec{
			QueueName: q, Image: "nvcr.io/nvidia/pytorch:25.01-py3", Command: []string{"torchrun", "train.py"},
			Nodes: tesserav1alpha1.NodeRange{Min: 1}, GPUsPerNode: 2, BackoffLimit: ptr.To[int32](1),
		},
	}
	if err := env.CR.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.CR.Delete(context.Background(), job) })
	gpus.InjectXID(3, 79)

	kueueURL, ok := env.Cluster.MetricsURL("kueue")
	if !ok {
		t.Fatal("the stack records no metrics address for Kueue")
	}
	endpoints := map[string]string{
		"scheduler":  fmt.Sprintf("https://127.0.0.1:%d/metrics", schedulerPort),
		"launcher":   fmt.Sprintf("http://127.0.0.1:%d/metrics", launcherPort),
		"node agent": agentURL,
		"kueue":      kueueURL,
	}
	queries := chartQueries(t)
	var missing []string
	framework.Eventually(t, 2*time.Minute, "every metric of the dashboard and rules to be served", func(context.Context) (bool, error) {
		families := map[string]bool{}
		for component, url := range endpoints {
			names, err := scrape(url, token)
			if err != nil {
				return false, fmt.Errorf("%s: %w", component, err)
			}
			for _, n := range names {
				families[n] = true
			}
		}
		missing = nil
		for where, expr := range queries {
			for _, name := range metricName.FindAllString(expr, -1) {
				if !exported(name, families) {
					missing = append(missing, fmt.Sprintf("%s (%s)", name, where))
				}
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			return false, fmt.Errorf("no component serves %s", strings.Join(missing, "; "))
		}
		return true, nil
	})

	services := map[string]bool{}
	for _, o := range render(t, "tessera-system", filepath.Join(env.RepoRoot, "charts", "tessera", "ci", "full-values.yaml")) {
		if o.GetKind() == "Service" {
			services[o.GetName()] = true
		}
	}
	for where, expr := range queries {
		for _, m := range jobLabel.FindAllStringSubmatch(expr, -1) {
			if !services[m[1]] {
				t.Errorf("%s selects job %q, but the chart renders no such Service (it renders %v)", where, m[1], services)
			}
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// buildBinaries builds ./cmd/<name> for each name into a temporary folder.
func buildBinaries(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + "/"}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = env.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}
	return dir
}

// metricsReaderToken is a bearer token of a ServiceAccount allowed to get
// /metrics, as a Prometheus scraper has.
func metricsReaderToken(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "tessera-system", Name: "metrics-reader"}}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tessera-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "tessera-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}},
	}
	for _, obj := range []ctrlclient.Object{sa, role, binding} {
		if err := env.CR.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.CR.Delete(context.Background(), obj) })
	}
	tr, err := env.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// startLauncherProcess runs the launcher binary as the chart's launcher
// ServiceAccount and returns its metrics port.
func startLauncherProcess(t *testing.T, binary string) int {
	t.Helper()
	if err := cluster.CreateFromFiles(t.Context(), env.CR, filepath.Join(env.RepoRoot, "manifests", "launcher", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := env.Cluster.ImpersonatingKubeconfig("obs-launcher", "system:serviceaccount:tessera-system:tessera-launcher")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	if err := env.Cluster.StartProcess(context.Background(), "obs-launcher", binary, "controller",
		"--kubeconfig="+kubeconfig, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port),
		"--health-probe-bind-address=0", "--recheck-interval=1s"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Cluster.StopProcess("obs-launcher") })
	return port
}

// startNodeAgent makes a GPU node and runs its agent, as the chart's node
// agent ServiceAccount, with its metrics served over HTTP.
func startNodeAgent(t *testing.T, node string) (string, *nvmlfake.Server) {
	t.Helper()
	if err := cluster.CreateFromFiles(t.Context(), env.CR, filepath.Join(env.RepoRoot, "manifests", "node-agent", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	env.GPUNode(t, node, "dgx-h100", "rack-obs")
	kubeconfig, err := env.Cluster.ImpersonatingKubeconfig("obs-node-agent", "system:serviceaccount:tessera-system:tessera-node-agent")
	if err != nil {
		t.Fatal(err)
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	registry := prometheus.NewRegistry()
	recordEvents := framework.RecordAgentEvents(t, config, node)
	gpus := framework.RunNodeAgent(t, config, node, "dgx-h100", func(c *nodeagent.Config) {
		recordEvents(c)
		c.Registry = registry
	})
	srv := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics", gpus
}

// gang submits a PodGroup of n one-GPU pods for tessera-scheduler and waits
// until all are bound.
func gang(t *testing.T, ns, name string, n int32) {
	t.Helper()
	ctx := t.Context()
	pg := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: schedv1alpha1.PodGroupSpec{MinMember: n}}
	if err := env.CR.Create(ctx, pg); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i), Labels: map[string]string{schedv1alpha1.PodGroupLabel: name}},
			Spec: corev1.PodSpec{
				SchedulerName: "tessera-scheduler",
				Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{{Name: "c", Image: "busybox",
					Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}}},
			},
		}
		if err := env.CR.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		env.WaitForPod(t, ns, fmt.Sprintf("%s-%d", name, i), "to bind", func(p *corev1.Pod) bool { return p.Spec.NodeName != "" })
	}
}

// scrape returns the metric family names served at url.
func scrape(url, token string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(url, "https:") {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The components' serving certificates are self-signed.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback, self-signed
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}
