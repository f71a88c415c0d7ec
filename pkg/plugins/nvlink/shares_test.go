package nvlink

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// sharePod asks for milli of one GPU; ids, if set, is its assignment.
func sharePod(name string, milli int, ids string) *v1.Pod {
	pod := gpuPod(name, 0, ids)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[tesserav1alpha1.AnnotationGPUMilli] = strconv.Itoa(milli)
	return pod
}

func withModels(pod *v1.Pod, models string) *v1.Pod {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[tesserav1alpha1.AnnotationGPUModels] = models
	return pod
}

func TestUseOfCountsSharesAndWholeGPUsTogether(t *testing.T) {
	n := shapeGPUs(t, "dgx-h100")
	held := newReservations()
	held.set("reserved-share", newAssignment("n", []int{3}, 250))
	info := nodeInfo("n", 8, nil,
		sharePod("a", 600, "0"), sharePod("b", 300, "0"), // GPU 0: 900 held
		gpuPod("whole", 1, "1"),             // GPU 1: whole
		sharePod("reserved-share", 250, ""), // GPU 3: by reservation
		sharePod("unknown", 700, ""),        // no record: the tightest GPU with room, GPU 2
	)
	used, fits := useOf(n, info, holders{reserved: held})
	if !fits {
		t.Fatal("pods do not fit")
	}
	want := topology.Usage{900, 1000, 0, 950, 0, 0, 0, 0}
	if diff := cmp.Diff(want, used); diff != "" {
		t.Errorf("usage by position (-want +got):\n%s", diff)
	}
	// Whole GPUs come only from GPUs nobody holds any part of.
	free, _ := freeGPUs(n, info, held)
	if diff := cmp.Diff([]int{2, 4, 5, 6, 7}, n.Indexes(free)); diff != "" {
		t.Errorf("free whole GPUs (-want +got):\n%s", diff)
	}
}

func TestChooseShare(t *testing.T) {
	n := shapeGPUs(t, "dgx-h100")
	used := topology.Usage{600, 1000, 900, 0, 0, 0, 0, 0}
	tests := []struct {
		milli int64
		want  int
		ok    bool
	}{
		{milli: 400, want: 0, ok: true},  // fits GPU 0's 400 exactly
		{milli: 100, want: 2, ok: true},  // GPU 2's 100 is the tightest fit
		{milli: 500, want: 3, ok: true},  // only idle GPUs have room; the first
		{milli: 999, want: 3, ok: true},  // likewise
		{milli: 1000, want: 3, ok: true}, // a whole GPU is not a share: the best idle set
	}
	for _, tc := range tests {
		req := request{gpus: 1, milli: tc.milli}
		c, ok := choose(n, used, req)
		if ok != tc.ok || ok && c.GPUs[0] != tc.want {
			t.Errorf("share of %d: GPUs %v, %v; want [%d], %v", tc.milli, c.GPUs, ok, tc.want, tc.ok)
		}
	}
	full := topology.Usage{600, 1000, 900, 700, 800, 900, 950, 999}
	if c, ok := choose(n, full, request{gpus: 1, milli: 500}); ok {
		t.Errorf("share of 500 with no GPU that has 500 free: got GPUs %v", c.GPUs)
	}
}

func TestFilterSharesAndModels(t *testing.T) {
	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100"})
	busy := func() fwk.NodeInfo {
		return nodeInfo("dgx", 8, nil, gpuPod("a", 4, "0,1,2,3"), sharePod("s1", 700, "4"), sharePod("s2", 700, "5"),
			sharePod("s3", 700, "6"), sharePod("s4", 700, "7"))
	}
	model := shapeGPUs(t, "dgx-h100").Topo.GPUs[0].Model
	tests := []struct {
		name string
		pod  *v1.Pod
		node fwk.NodeInfo
		want string
	}{
		{name: "share fits", pod: sharePod("p", 300, ""), node: busy()},
		{name: "share never over-commits", pod: sharePod("p", 301, ""), node: busy(), want: "no healthy GPU with 301 free milli-GPUs"},
		{name: "no whole GPU left", pod: gpuPod("p", 1, ""), node: busy(), want: "too few free healthy GPUs"},
		{name: "model allowed", pod: withModels(gpuPod("p", 2, ""), "A100,"+model), node: nodeInfo("dgx", 8, nil)},
		{name: "model not allowed", pod: withModels(gpuPod("p", 2, ""), "A100"), node: nodeInfo("dgx", 8, nil), want: "too few free healthy GPUs of model A100"},
		{name: "share of a model not allowed", pod: withModels(sharePod("p", 300, ""), "T4"), node: nodeInfo("dgx", 8, nil), want: "no healthy GPU of model T4 with 300 free milli-GPUs"},
		{name: "share without topology", pod: sharePod("p", 300, ""), node: nodeInfo("bare", 8, nil), want: "no GPU topology published, so GPU shares cannot be accounted"},
		{name: "model without topology", pod: withModels(gpuPod("p", 1, ""), "T4"), node: nodeInfo("bare", 8, nil), want: "no GPU topology published, so GPU models cannot be checked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := framework.NewCycleState()
			if _, st := pl.PreFilter(context.Background(), state, tc.pod, nil); !st.IsSuccess() {
				t.Fatalf("PreFilter: %v", st)
			}
			st := pl.Filter(context.Background(), state, tc.pod, tc.node)
			if got := st.Message(); got != tc.want || st.IsSuccess() != (tc.want == "") {
				t.Errorf("Filter = %v, want %q", st, tc.want)
			}
		})
	}
	_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), sharePod("p", 1000, ""), nil)
	if st.Code() != fwk.UnschedulableAndUnresolvable || st.Message() != `tessera.dev/gpu-milli="1000": want a share of one GPU from 1 to 999 milli-GPUs (a whole GPU is nvidia.com/gpu: 1)` {
		t.Errorf("PreFilter of a 1000-milli share = %v", st)
	}
}

// lastPicker always picks the last candidate.
type lastPicker struct{ candidates []int }

func (p *lastPicker) PickShareGPU(_ *v1.Pod, _ fwk.NodeInfo, _ []int64, candidates []int) int {
	p.candidates = candidates
	return candidates[len(candidates)-1]
}

func TestReserveShare(t *testing.T) {
	running := sharePod("running", 600, "0")
	running.Spec.NodeName = "dgx"
	node := nodeInfo("dgx", 8, nil).Node()
	reserve := func(t *testing.T, pl *NVLinkTopology, picker SharePicker, pod *v1.Pod, others ...*v1.Pod) []int {
		t.Helper()
		handle, err := frameworkruntime.NewFramework(context.Background(), nil, nil,
			frameworkruntime.WithSnapshotSharedLister(internalcache.NewSnapshot(append([]*v1.Pod{running}, others...), []*v1.Node{node})))
		if err != nil {
			t.Fatal(err)
		}
		pl.handle = handle
		if picker != nil {
			pl.pickers = NewSharePickers()
			pl.pickers.Set(handle, picker)
		}
		state := framework.NewCycleState()
		if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
			t.Fatal(st)
		}
		if st := pl.Reserve(context.Background(), state, pod, "dgx"); !st.IsSuccess() {
			t.Fatalf("Reserve: %v", st)
		}
		a, _ := pl.reserved.get(pod.UID)
		return a.indexes
	}

	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100"})
	if got := reserve(t, pl, nil, sharePod("p", 400, "")); !cmp.Equal(got, []int{0}) {
		t.Errorf("share of 400 next to a share of 600 got GPUs %v, want [0] (the tightest fit)", got)
	}
	// The reserved but unbound pod holds GPU 0 now: the next share goes on.
	reserved := sharePod("p", 400, "")
	reserved.Spec.NodeName = "dgx"
	if got := reserve(t, pl, nil, sharePod("q", 400, ""), reserved); !cmp.Equal(got, []int{1}) {
		t.Errorf("second share of 400 got GPUs %v, want [1]", got)
	}

	pl = testPlugin(t, "", map[string]string{"dgx": "dgx-h100"})
	picker := &lastPicker{}
	if got := reserve(t, pl, picker, sharePod("p", 500, "")); !cmp.Equal(got, []int{7}) {
		t.Errorf("with a picker: GPUs %v, want [7]", got)
	}
	if diff := cmp.Diff([]int{1, 2, 3, 4, 5, 6, 7}, picker.candidates); diff != "" {
		t.Errorf("candidates offered to the picker (-want +got):\n%s", diff)
	}
}
