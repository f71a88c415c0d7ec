package churn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	apipod "k8s.io/kubernetes/pkg/api/v1/pod"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/test/integration/framework"
)

// The cluster of every seed: 32 nodes of four shapes in five racks.
var fleet = []struct {
	shape, rack string
	count       int
}{
	{"dgx-h100", "a", 6}, {"dgx-h100", "b", 6},
	{"h100-nvl-pairs", "c", 8},
	{"l40s-pcie", "d", 8},
	{"l4-pcie", "e", 4},
}

// Priority classes: the scheduler's preemption treats them by value; one
// never preempts.
var priorities = []schedulingv1.PriorityClass{
	{ObjectMeta: metav1.ObjectMeta{Name: "churn-low"}, Value: 100},
	{ObjectMeta: metav1.ObjectMeta{Name: "churn-mid"}, Value: 500},
	{ObjectMeta: metav1.ObjectMeta{Name: "churn-high"}, Value: 1000},
	{ObjectMeta: metav1.ObjectMeta{Name: "churn-high-never"}, Value: 1000, PreemptionPolicy: ptr.To(corev1.PreemptNever)},
}

// pdbApps are the labels of the lone pods a PodDisruptionBudget covers
// (minAvailable 1 each).
var pdbApps = []string{"svc-0", "svc-1", "svc-2"}

const gangTimeoutSeconds = 10

type node struct {
	name, shape, rack string
	present           bool
	cordoned, tainted bool
}

// world is one seed's run: what the driver created, and the checker.
type world struct {
	t     *testing.T
	ctx   context.Context
	rng   *rand.Rand
	seed  uint64
	ns    string
	nodes []*node
	// apps are the budget labels of the lone pods created.
	apps    map[string]string
	created int
	check   *checker
	// procName is the scheduler process's name in the cluster.
	procName string
	restarts int
}

func runSeed(t *testing.T, seed uint64, steps int) summary {
	ctx := t.Context()
	w := &world{t: t, ctx: ctx, rng: rand.New(rand.NewPCG(seed, 0xc4a7)), seed: seed, ns: env.Namespace(t),
		apps: map[string]string{}, procName: fmt.Sprintf("churn-scheduler-%d", seed)}
	for _, pc := range priorities {
		if err := env.CR.Create(ctx, pc.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, f := range fleet {
		for i := range f.count {
			n := &node{name: fmt.Sprintf("s%d-%s%s-%d", seed, f.rack, strings.Split(f.shape, "-")[0], i), shape: f.shape, rack: "rack-" + f.rack, present: true}
			env.GPUNode(t, n.name, n.shape, n.rack)
			env.PublishTopology(t, n.name, n.shape)
			w.nodes = append(w.nodes, n)
		}
	}
	for _, app := range pdbApps {
		pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: app},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
		if _, err := env.Client.PolicyV1().PodDisruptionBudgets(w.ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.check = newChecker(w)
	w.startScheduler()
	t.Cleanup(func() { _ = env.Cluster.StopProcess(w.procName) })

	actions := []struct {
		weight int
		do     func()
	}{
		{22, w.createGang},
		{22, w.createLonePod},
		{12, w.burst},
		{10, w.deletePod},
		{4, w.deleteNode},
		{4, w.restoreNode},
		{7, w.toggleCordon},
		{5, w.toggleTaint},
		{6, w.killScheduler},
	}
	sum := 0
	for _, a := range actions {
		sum += a.weight
	}
	for step := range steps {
		w.check.beforeStep()
		pick := w.rng.IntN(sum)
		for _, a := range actions {
			if pick < a.weight {
				a.do()
				break
			}
			pick -= a.weight
		}
		w.settle()
		w.check.afterStep(step)
	}
	// A gang left partly bound must be resolved within its timeout: wait
	// it out once more and look again.
	w.check.finalWait()
	return w.check.summary
}

func (w *world) startScheduler() {
	w.t.Helper()
	config := filepath.Join(env.RepoRoot, "manifests", "scheduler", "config.yaml")
	if err := env.Cluster.StartSchedulerProcess(w.ctx, w.procName, scheduler, config, "--v=2"); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) name(prefix string) string {
	w.created++
	return fmt.Sprintf("%s-%d", prefix, w.created)
}

func (w *world) priority() string {
	return priorities[w.rng.IntN(len(priorities))].Name
}

func (w *world) profile() string {
	if w.rng.IntN(5) == 0 {
		return "tessera-serving"
	}
	return "tessera-scheduler"
}

// pod builds a pod asking gpus whole GPUs, or milli of one GPU when milli > 0.
func (w *world) pod(name, schedulerName, priority string, gpus int64, milli int64) *corev1.Pod {
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name, Labels: map[string]string{}, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			SchedulerName:     schedulerName,
			PriorityClassName: priority,
			// kwok ends pods at once; the grace period is what a real
			// kubelet would wait for.
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Tolerations:                   []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			Containers:                    []corev1.Container{{Name: "main", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	if milli > 0 {
		p.Annotations[tesserav1alpha1.AnnotationGPUMilli] = fmt.Sprint(milli)
	} else {
		requests[gpunodes.ResourceGPU] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: requests, Limits: requests}
	return p
}

func (w *world) create(p *corev1.Pod) {
	w.t.Helper()
	if _, err := env.Client.CoreV1().Pods(w.ns).Create(w.ctx, p, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating pod %s: %v", p.Name, err)
	}
}

func (w *world) createGang() {
	name, minMember := w.name("gang"), int32(2+w.rng.IntN(4))
	gpus := []int64{2, 4, 8, 8}[w.rng.IntN(4)]
	profile, prio := w.profile(), w.priority()
	pg := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: name},
		Spec: schedv1alpha1.PodGroupSpec{MinMember: minMember, ScheduleTimeoutSeconds: ptr.To[int32](gangTimeoutSeconds)}}
	if err := env.CR.Create(w.ctx, pg); err != nil {
		w.t.Fatal(err)
	}
	for i := range minMember {
		p := w.pod(fmt.Sprintf("%s-%d", name, i), profile, prio, gpus, 0)
		p.Labels[schedv1alpha1.PodGroupLabel] = name
		w.create(p)
	}
	w.check.logf("create gang %s: %d x %d GPUs, %s, %s", name, minMember, gpus, profile, prio)
}

func (w *world) createLonePod() {
	p := w.pod(w.name("pod"), w.profile(), w.priority(), []int64{1, 2, 4, 8}[w.rng.IntN(4)], 0)
	if w.rng.IntN(3) == 0 {
		p = w.pod(p.Name, p.Spec.SchedulerName, p.Spec.PriorityClassName, 0, []int64{250, 500}[w.rng.IntN(2)])
	}
	if w.rng.IntN(3) == 0 {
		p.Labels["app"] = pdbApps[w.rng.IntN(len(pdbApps))]
	}
	w.create(p)
	w.apps[p.Name] = p.Labels["app"]
	w.check.logf("create pod %s (%s, %s, app %q)", p.Name, p.Spec.SchedulerName, p.Spec.PriorityClassName, p.Labels["app"])
}

// burst creates gangs and lone pods of both profiles at once, so that they
// interleave in the scheduler's queue: plans made while other pods take
// room, reservations of one profile while the other schedules.
func (w *world) burst() {
	w.check.logf("burst:")
	for range 2 + w.rng.IntN(2) {
		w.createGang()
	}
	for range 3 + w.rng.IntN(4) {
		w.createLonePod()
	}
}

// deletePod deletes a random pod; a gang member is replaced by a new pod of
// the same gang, as a job controller replaces a lost worker, so that the
// gang must be completed around its bound members or torn down.
func (w *world) deletePod() {
	pods, err := env.Client.CoreV1().Pods(w.ns).List(w.ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) == 0 {
		return
	}
	p := pods.Items[w.rng.IntN(len(pods.Items))]
	err = env.Client.CoreV1().Pods(w.ns).Delete(w.ctx, p.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		w.t.Fatal(err)
	}
	gang, inGang := p.Labels[schedv1alpha1.PodGroupLabel]
	if !inGang || p.DeletionTimestamp != nil {
		w.check.logf("delete pod %s", p.Name)
		return
	}
	gpus := p.Spec.Containers[0].Resources.Requests[gpunodes.ResourceGPU]
	replacement := w.pod(w.name(gang+"-r"), p.Spec.SchedulerName, p.Spec.PriorityClassName, gpus.Value(), 0)
	replacement.Labels[schedv1alpha1.PodGroupLabel] = gang
	w.create(replacement)
	w.check.logf("delete gang member %s, replaced by %s", p.Name, replacement.Name)
}

func (w *world) pickNode(present bool) *node {
	var candidates []*node
	for _, n := range w.nodes {
		if n.present == present {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	return candidates[w.rng.IntN(len(candidates))]
}

// deleteNode removes a node and, as the pod garbage collector does for pods
// of a node that is gone, its pods.
func (w *world) deleteNode() {
	n := w.pickNode(true)
	if n == nil {
		return
	}
	if err := env.Client.CoreV1().Nodes().Delete(w.ctx, n.name, metav1.DeleteOptions{}); err != nil {
		w.t.Fatal(err)
	}
	pods, err := env.Client.CoreV1().Pods(w.ns).List(w.ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.name})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, p := range pods.Items {
		_ = env.Client.CoreV1().Pods(w.ns).Delete(w.ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	n.present, n.cordoned, n.tainted = false, false, false
	w.check.logf("delete node %s and its %d pods", n.name, len(pods.Items))
}

func (w *world) restoreNode() {
	n := w.pickNode(false)
	if n == nil {
		return
	}
	shape, err := gpunodes.Lookup(n.shape)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().Nodes().Create(w.ctx, shape.Node(n.name, n.rack), metav1.CreateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	n.present = true
	w.check.logf("restore node %s", n.name)
}

func (w *world) updateNode(n *node, change func(*corev1.Node)) {
	err := wait.PollUntilContextTimeout(w.ctx, 100*time.Millisecond, framework.DefaultTimeout, true, func(ctx context.Context) (bool, error) {
		obj, err := env.Client.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		change(obj)
		_, err = env.Client.CoreV1().Nodes().Update(ctx, obj, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if err != nil {
		w.t.Fatalf("updating node %s: %v", n.name, err)
	}
}

func (w *world) toggleCordon() {
	n := w.pickNode(true)
	if n == nil {
		return
	}
	n.cordoned = !n.cordoned
	w.updateNode(n, func(obj *corev1.Node) { obj.Spec.Unschedulable = n.cordoned })
	w.check.logf("cordon node %s: %v", n.name, n.cordoned)
}

const maintenanceTaint = "tessera.dev/churn-maintenance"

func (w *world) toggleTaint() {
	n := w.pickNode(true)
	if n == nil {
		return
	}
	n.tainted = !n.tainted
	w.updateNode(n, func(obj *corev1.Node) {
		var kept []corev1.Taint
		for _, taint := range obj.Spec.Taints {
			if taint.Key != maintenanceTaint {
				kept = append(kept, taint)
			}
		}
		if n.tainted {
			kept = append(kept, corev1.Taint{Key: maintenanceTaint, Effect: corev1.TaintEffectNoSchedule})
		}
		obj.Spec.Taints = kept
	})
	w.check.logf("taint node %s: %v", n.name, n.tainted)
}

// killScheduler kills the scheduler with SIGKILL, as a crash or an OOM
// kill would, and starts a new one. Half the time it first sends a burst
// and kills the scheduler as soon as the burst's first pod is bound, in
// the middle of binding gangs, which can leave gangs partly bound.
func (w *world) killScheduler() {
	midBurst := w.rng.IntN(2) == 0
	if midBurst {
		before := w.created
		w.burst()
		_ = wait.PollUntilContextTimeout(w.ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			pods, err := env.Client.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for _, p := range pods.Items {
				if p.Spec.NodeName != "" && createdAfter(p.Name, before) {
					return true, nil
				}
			}
			return false, nil
		})
	}
	if err := env.Cluster.KillProcess(w.procName); err != nil {
		w.t.Fatal(err)
	}
	w.restarts++
	w.startScheduler()
	w.check.logf("kill -9 and restart the scheduler (restart %d, mid-burst %v)", w.restarts, midBurst)
}

// createdAfter reports whether a pod name made by world.name (or a gang
// member of such a gang) carries a sequence number above n.
func createdAfter(name string, n int) bool {
	var prefix string
	var seq int
	for _, part := range strings.Split(name, "-") {
		if _, err := fmt.Sscanf(part, "%d", &seq); err == nil && prefix != "" {
			return seq > n
		}
		prefix = part
	}
	return false
}

// settle waits until the namespace's pods stop changing (no change for a
// second, or 20 s at most), then updates the budgets' status as the
// disruption controller would.
func (w *world) settle() {
	last, stable := "", 0
	_ = wait.PollUntilContextTimeout(w.ctx, 250*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := env.Client.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		var b strings.Builder
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "%s/%s/%s/%v;", p.Name, p.Spec.NodeName, p.Status.Phase, p.DeletionTimestamp != nil)
		}
		if b.String() == last {
			stable++
		} else {
			last, stable = b.String(), 0
		}
		return stable >= 4, nil
	})
	w.updateBudgets()
}

// updateBudgets plays the disruption controller (kube-controller-manager
// does not run here), once a step, so a budget's status lags its pods as a
// busy controller's does: each budget's disruptionsAllowed is its healthy
// (Ready, not terminating) pods less minAvailable.
func (w *world) updateBudgets() {
	pods, err := env.Client.CoreV1().Pods(w.ns).List(w.ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, app := range pdbApps {
		pdb, err := env.Client.PolicyV1().PodDisruptionBudgets(w.ns).Get(w.ctx, app, metav1.GetOptions{})
		if err != nil {
			continue
		}
		var healthy, expected int32
		for _, p := range pods.Items {
			if p.Labels["app"] != app || p.DeletionTimestamp != nil {
				continue
			}
			expected++
			if apipod.IsPodReady(&p) {
				healthy++
			}
		}
		pdb.Status = policyv1.PodDisruptionBudgetStatus{
			ObservedGeneration: pdb.Generation, CurrentHealthy: healthy, DesiredHealthy: 1, ExpectedPods: expected,
			DisruptionsAllowed: max(healthy-1, 0),
		}
		if _, err := env.Client.PolicyV1().PodDisruptionBudgets(w.ns).UpdateStatus(w.ctx, pdb, metav1.UpdateOptions{}); err == nil {
			w.check.budgets[app] = pdb.Status.DisruptionsAllowed
		}
	}
}
