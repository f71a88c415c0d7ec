package fragmentation

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	frag "tessera.dev/tessera/pkg/fragmentation"
)

func pod(name string, cpu string, gpus int64, milli string) *v1.Pod {
	requests := v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}
	if gpus > 0 {
		requests["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: requests}}}},
	}
	if milli != "" {
		p.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUMilli: milli}
	}
	return p
}

func node(name string, cpu string, gpus int64, pods ...*v1.Pod) fwk.NodeInfo {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse(cpu), "nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI),
		v1.ResourcePods: resource.MustParse("110"),
	}}}
	for _, p := range pods {
		p.Spec.NodeName = name
	}
	info := framework.NewNodeInfo(pods...)
	info.SetNode(n)
	return info
}

// accountant reports fixed per-GPU free milli by node.
type accountant map[string][]int64

func (a accountant) FreeGPUMilli(info fwk.NodeInfo) ([]int64, string, bool) {
	free, ok := a[info.Node().Name]
	return free, "G2", ok
}

func newPlugin(t testing.TB, args string, acct GPUAccountant) *GPUFragmentation {
	t.Helper()
	accountants := NewAccountants()
	var handle fwk.Handle // one profile: the nil handle keys it
	accountants.Set(handle, acct)
	var obj runtime.Object
	if args != "" {
		obj = &runtime.Unknown{Raw: []byte(args), ContentType: runtime.ContentTypeJSON}
	}
	pl, err := Factory(accountants, func(fwk.Handle, *GPUFragmentation) {})(context.Background(), obj, handle)
	if err != nil {
		t.Fatal(err)
	}
	return pl.(*GPUFragmentation)
}

// scores runs the plugin's cycle for p over nodes and returns the
// normalized scores by node.
func scores(t *testing.T, pl *GPUFragmentation, p *v1.Pod, nodes ...fwk.NodeInfo) map[string]int64 {
	t.Helper()
	state := framework.NewCycleState()
	if _, st := pl.PreFilter(context.Background(), state, p, nodes); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.PreScore(context.Background(), state, p, nodes); !st.IsSuccess() {
		t.Fatal(st)
	}
	var list fwk.NodeScoreList
	for _, n := range nodes {
		s, st := pl.Score(context.Background(), state, p, n)
		if !st.IsSuccess() {
			t.Fatal(st)
		}
		list = append(list, fwk.NodeScore{Name: n.Node().Name, Score: s})
	}
	if st := pl.NormalizeScore(context.Background(), state, p, list); !st.IsSuccess() {
		t.Fatal(st)
	}
	out := map[string]int64{}
	for _, s := range list {
		out[s.Name] = s.Score
	}
	return out
}

func TestScoreKeepsWholeNodesForTheMix(t *testing.T) {
	// The workload is 8-GPU jobs and shares of 500. A 1-GPU pod on the idle
	// node would strand it for the 8-GPU jobs; on the node with a GPU left
	// it strands nothing.
	pl := newPlugin(t, `{"workload": [{"cpuMilli": 8000, "gpus": 8, "weight": 1}, {"cpuMilli": 1000, "gpus": 1, "gpuMilli": 500, "weight": 1}]}`, nil)
	got := scores(t, pl, pod("p", "1", 1, ""),
		node("idle", "96", 8),
		node("one-left", "96", 8, pod("busy", "10", 7, "")))
	if got["one-left"] != fwk.MaxScore || got["idle"] != 0 {
		t.Errorf("scores = %v, want one-left 100, idle 0", got)
	}
}

// A node the pod does not fit by the plugin's reckoning ranks below every
// node where it fits, however much fragmentation those grow.
func TestScoreRanksANodeThePodDoesNotFitLast(t *testing.T) {
	pl := newPlugin(t, `{"workload": [{"cpuMilli": 8000, "gpus": 8, "weight": 1}]}`, nil)
	got := scores(t, pl, pod("p", "1", 2, ""),
		node("idle", "96", 8),
		node("one-left", "96", 8, pod("busy", "10", 7, "")),
		node("two-left", "96", 8, pod("busy6", "10", 6, "")))
	if got["one-left"] != 0 || got["two-left"] != fwk.MaxScore {
		t.Errorf("scores = %v, want one-left (does not fit) 0, two-left 100", got)
	}
	if got["idle"] <= got["one-left"] {
		t.Errorf("scores = %v: a node the pod fits ranks no higher than one it does not", got)
	}
}

func TestScoreSeesCPUStrandedGPUs(t *testing.T) {
	// Both nodes have 4 free GPUs; "cpu-poor" has CPU for two more 1-GPU
	// pods of the mix. The copies measure sees that taking its CPU strands
	// GPUs and sends a CPU-heavy pod to the CPU-rich node; FGD's measure
	// sees no difference.
	workload := `"workload": [{"cpuMilli": 8000, "gpus": 1, "weight": 1}]`
	p := pod("p", "8", 0, "")
	nodes := func() []fwk.NodeInfo {
		return []fwk.NodeInfo{node("cpu-poor", "24", 4), node("cpu-rich", "96", 4)}
	}
	got := scores(t, newPlugin(t, "{"+workload+"}", nil), p, nodes()...)
	if got["cpu-rich"] <= got["cpu-poor"] {
		t.Errorf("copies measure: scores = %v, want cpu-rich above cpu-poor", got)
	}
	got = scores(t, newPlugin(t, `{"measure": "FGD", `+workload+"}", nil), p, nodes()...)
	if got["cpu-rich"] != got["cpu-poor"] {
		t.Errorf("FGD measure: scores = %v, want a tie", got)
	}
}

func TestScoreReadsSharesFromTheAccountant(t *testing.T) {
	// GPU use per GPU comes from the accountant: a share of 400 fits
	// "half-used" (600 free) exactly as the mix's shares of 400 would
	// have; on "idle" it breaks a whole GPU the whole-GPU pods need.
	acct := accountant{"half-used": {600, 1000}, "idle": {1000, 1000}}
	pl := newPlugin(t, `{"workload": [{"cpuMilli": 1000, "gpus": 1, "weight": 1}, {"cpuMilli": 1000, "gpus": 1, "gpuMilli": 400, "weight": 1}]}`, acct)
	got := scores(t, pl, pod("p", "1", 0, "400"), node("half-used", "32", 2), node("idle", "32", 2))
	if got["half-used"] <= got["idle"] {
		t.Errorf("scores = %v, want half-used above idle", got)
	}
}

func TestLearnedMixCountsEachPodOnce(t *testing.T) {
	pl := newPlugin(t, "", nil)
	p := pod("p", "1", 1, "")
	for range 3 { // a pod retried three times
		if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), p, nil); !st.IsSuccess() {
			t.Fatal(st)
		}
	}
	if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), pod("q", "2", 0, "300"), nil); !st.IsSuccess() {
		t.Fatal(st)
	}
	shapes := pl.mix.current().shapes
	if len(shapes) != 2 || shapes[0].Weight != 1 || shapes[1].Weight > 1 {
		t.Fatalf("learned mix = %+v, want two shapes of weight about 1", shapes)
	}
	want := frag.Task{CPUMilli: 2000, GPUs: 1, GPUMilli: 300}
	if s := shapes[0]; s.CPUMilli != want.CPUMilli || s.GPUs != want.GPUs || s.GPUMilli != want.GPUMilli {
		t.Errorf("heaviest shape = %+v, want the latest pod's %+v", s.Task, want)
	}
}

func TestPickShareGPU(t *testing.T) {
	// Shares of 600 are the workload: a share of 500 that fills GPU 1 (500
	// free) leaves GPUs 0 and 2 room for one each; on GPU 0 or 2 it would
	// leave room for one only.
	pl := newPlugin(t, `{"workload": [{"cpuMilli": 100, "gpus": 1, "gpuMilli": 600, "weight": 1}]}`, nil)
	got := pl.PickShareGPU(pod("p", "100m", 0, "500"), node("n", "32", 3), []int64{1000, 500, 700}, []int{0, 1, 2})
	if got != 1 {
		t.Errorf("picked GPU %d, want 1", got)
	}
}

func TestArgsErrorsNameTheField(t *testing.T) {
	accountants := NewAccountants()
	_, err := Factory(accountants, func(fwk.Handle, *GPUFragmentation) {})(context.Background(),
		&runtime.Unknown{Raw: []byte(`{"measure": "Best"}`), ContentType: runtime.ContentTypeJSON}, nil)
	if err == nil || !strings.Contains(err.Error(), `args.measure: Unsupported value: "Best"`) {
		t.Errorf("err = %v, want one naming args.measure", err)
	}
}

// A k-GPU shape weighs its pod count over k^gpuCountExponent; 0 keeps FGD's
// weighting by pod count.
func TestShapeWeightsDivideByGPUCount(t *testing.T) {
	workload := `"workload": [{"cpuMilli": 1, "gpus": 8, "weight": 64}, {"cpuMilli": 1, "gpus": 2, "weight": 4}, {"cpuMilli": 1, "gpus": 1, "weight": 1}]`
	for _, tc := range []struct {
		args string
		want map[int]float64
	}{
		{`{` + workload + `}`, map[int]float64{8: 1, 2: 1, 1: 1}},
		{`{"gpuCountExponent": 0, ` + workload + `}`, map[int]float64{8: 64, 2: 4, 1: 1}},
	} {
		got := map[int]float64{}
		for _, s := range newPlugin(t, tc.args, nil).mix.current().shapes {
			got[s.GPUs] = s.Weight
		}
		for gpus, w := range tc.want {
			if got[gpus] != w {
				t.Errorf("args %s: %d-GPU shape weighs %v, want %v", tc.args, gpus, got[gpus], w)
			}
		}
	}
}
