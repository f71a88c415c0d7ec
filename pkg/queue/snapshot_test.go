package queue

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	testingclock "k8s.io/utils/clock/testing"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/podgpu"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// readyNode is a Ready dgx-h100 node (8 GPUs allocatable).
func readyNode(t *testing.T, name string) *corev1.Node {
	t.Helper()
	shape, err := gpunodes.Lookup("dgx-h100")
	if err != nil {
		t.Fatal(err)
	}
	n := shape.Node(name, "a")
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	return n
}

// publishedTopology is the node's GPUNodeTopology, created a minute ago
// and beating age ago; a zero age leaves it without a heartbeat.
func publishedTopology(t *testing.T, node string, age time.Duration) *tesserav1alpha1.GPUNodeTopology {
	t.Helper()
	status, err := gpunodes.TopologyStatus(node, "dgx-h100")
	if err != nil {
		t.Fatal(err)
	}
	if age != 0 {
		status.HeartbeatTime = &metav1.Time{Time: testNow.Add(-age)}
	}
	meta := metav1.ObjectMeta{Name: node, CreationTimestamp: metav1.NewTime(testNow.Add(-time.Minute))}
	return &tesserav1alpha1.GPUNodeTopology{ObjectMeta: meta, Status: status}
}

// gpuPod is a pod bound to node asking for gpus nvidia.com/gpu, in phase.
func gpuPod(name, node string, gpus int64, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name:      "main",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{podgpu.ResourceGPU: *resource.NewQuantity(gpus, resource.DecimalSI)}},
		}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

// gpuView is what the fit search sees of a node's GPUs.
type gpuView struct {
	Trusted     bool
	CountOnly   bool
	CountedGPUs int
}

func TestSnapshotTrustsTopologyAsTheScheduler(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := tesserav1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		topology   func(t *testing.T) *tesserav1alpha1.GPUNodeTopology
		pods       []*corev1.Pod
		staleAfter time.Duration
		missing    configv1alpha1.MissingTopologyPolicy
		want       gpuView
	}{
		{
			name:     "a fresh topology is used",
			topology: func(t *testing.T) *tesserav1alpha1.GPUNodeTopology { return publishedTopology(t, "n", 14*time.Minute) },
			want:     gpuView{Trusted: true},
		},
		{
			name:     "a stale topology is ignored and the node counted",
			topology: func(t *testing.T) *tesserav1alpha1.GPUNodeTopology { return publishedTopology(t, "n", 16*time.Minute) },
			want:     gpuView{CountOnly: true, CountedGPUs: 8},
		},
		{
			name:       "staleness follows StaleAfter",
			topology:   func(t *testing.T) *tesserav1alpha1.GPUNodeTopology { return publishedTopology(t, "n", 16*time.Minute) },
			staleAfter: time.Hour,
			want:       gpuView{Trusted: true},
		},
		{
			name:     "a topology without a heartbeat is ignored",
			topology: func(t *testing.T) *tesserav1alpha1.GPUNodeTopology { return publishedTopology(t, "n", 0) },
			want:     gpuView{CountOnly: true, CountedGPUs: 8},
		},
		{
			name: "an unreadable topology is ignored",
			topology: func(t *testing.T) *tesserav1alpha1.GPUNodeTopology {
				topo := publishedTopology(t, "n", time.Minute)
				topo.Status.Devices = append(topo.Status.Devices, topo.Status.Devices[0])
				return topo
			},
			want: gpuView{CountOnly: true, CountedGPUs: 8},
		},
		{
			name: "a node without a topology is counted less its pods' GPUs",
			pods: []*corev1.Pod{
				gpuPod("a", "n", 3, corev1.PodRunning),
				gpuPod("b", "n", 1, corev1.PodPending),
				gpuPod("elsewhere", "m", 2, corev1.PodRunning),
			},
			want: gpuView{CountOnly: true, CountedGPUs: 4},
		},
		{
			name: "terminal pods hold no GPUs",
			pods: []*corev1.Pod{
				gpuPod("done", "n", 4, corev1.PodSucceeded),
				gpuPod("failed", "n", 2, corev1.PodFailed),
				gpuPod("running", "n", 1, corev1.PodRunning),
			},
			want: gpuView{CountOnly: true, CountedGPUs: 7},
		},
		{
			name:    "missingTopology Unschedulable takes no GPU pods by count",
			missing: configv1alpha1.MissingTopologyUnschedulable,
			want:    gpuView{CountedGPUs: 8},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := []ctrlclient.Object{readyNode(t, "n")}
			if tc.topology != nil {
				objs = append(objs, tc.topology(t))
			}
			for _, p := range tc.pods {
				objs = append(objs, p)
			}
			r := &TopologyFit{
				Client:          fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build(),
				Clock:           testingclock.NewFakeClock(testNow),
				StaleAfter:      tc.staleAfter,
				MissingTopology: tc.missing,
			}
			nodes, err := r.snapshot(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(nodes) != 1 {
				t.Fatalf("snapshot has %d nodes, want 1", len(nodes))
			}
			n := nodes[0]
			got := gpuView{Trusted: n.GPUs != nil, CountOnly: n.CountOnly, CountedGPUs: n.CountedGPUs}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("node's GPUs (-want +got):\n%s", diff)
			}
		})
	}
}
