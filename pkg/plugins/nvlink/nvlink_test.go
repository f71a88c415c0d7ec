package nvlink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/topology/published"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// shapeStatus is what a node agent on a fake server of shape publishes.
func shapeStatus(t *testing.T, shape string) *tesserav1alpha1.GPUNodeTopologyStatus {
	t.Helper()
	st, err := gpunodes.TopologyStatus("node", shape)
	if err != nil {
		t.Fatal(err)
	}
	return &st
}

func shapeGPUs(t *testing.T, shape string) *published.Node {
	t.Helper()
	n, err := published.Read(shapeStatus(t, shape), now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// gpuPod asks for k GPUs; ids, if set, is its tessera.dev/gpu-ids.
func gpuPod(name string, k int, ids string) *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{ResourceGPU: *resource.NewQuantity(int64(k), resource.DecimalSI)},
			Limits:   v1.ResourceList{ResourceGPU: *resource.NewQuantity(int64(k), resource.DecimalSI)},
		}}}},
	}
	if ids != "" {
		pod.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUIDs: ids}
	}
	return pod
}

func nodeInfo(name string, gpus int, labels map[string]string, pods ...*v1.Pod) fwk.NodeInfo {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			ResourceGPU:    *resource.NewQuantity(int64(gpus), resource.DecimalSI),
			v1.ResourceCPU: resource.MustParse("100"), v1.ResourcePods: resource.MustParse("110"),
		}},
	}
	for _, p := range pods {
		p.Spec.NodeName = name
	}
	info := framework.NewNodeInfo(pods...)
	info.SetNode(node)
	return info
}

func TestFromStatus(t *testing.T) {
	tests := []struct {
		shape   string
		islands int
		fastest float64
		healthy int
	}{
		{"dgx-h100", 1, 450, 8},
		{"dgx-h100-gpu-failed", 1, 450, 7},
		{"h100-nvl-pairs", 4, 300, 8},
		{"l40s-pcie", 8, 25, 8},
	}
	for _, tc := range tests {
		t.Run(tc.shape, func(t *testing.T) {
			n := shapeGPUs(t, tc.shape)
			if got := len(n.Topo.Islands()); got != tc.islands {
				t.Errorf("islands = %d, want %d", got, tc.islands)
			}
			if n.FastestPairGBps != tc.fastest {
				t.Errorf("fastest pair = %v GB/s, want %v", n.FastestPairGBps, tc.fastest)
			}
			healthy := 0
			for _, g := range n.Topo.GPUs {
				if g.Healthy {
					healthy++
				}
			}
			if healthy != tc.healthy {
				t.Errorf("healthy = %d, want %d", healthy, tc.healthy)
			}
		})
	}
	bad := shapeStatus(t, "dgx-h100")
	bad.Links[0].B = 42
	if _, err := published.Read(bad, now); err == nil || !strings.Contains(err.Error(), "names a GPU not listed") {
		t.Errorf("fromStatus of a link to GPU 42 = %v, want an error", err)
	}
	bad = shapeStatus(t, "dgx-h100")
	bad.Holders = []tesserav1alpha1.GPUHolder{{Index: 42, Namespace: "ns", Pod: "p"}}
	if _, err := published.Read(bad, now); err == nil {
		t.Error("fromStatus accepted a holder of GPU 42")
	}
	bad = shapeStatus(t, "dgx-h100")
	bad.Links[0].Type = "warp"
	if _, err := published.Read(bad, now); err == nil {
		t.Error("fromStatus accepted link type warp")
	}
}

func TestFreeGPUs(t *testing.T) {
	held := newReservations()
	held.set("reserved", newAssignment("n", []int{6}, 1000))
	tests := []struct {
		name  string
		shape string
		pods  []*v1.Pod
		want  []int
		ok    bool
	}{
		{name: "empty", shape: "dgx-h100", want: []int{0, 1, 2, 3, 4, 5, 6, 7}, ok: true},
		{name: "annotated", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("a", 3, "0,1,2")}, want: []int{3, 4, 5, 6, 7}, ok: true},
		{name: "reserved before its annotation", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("reserved", 1, "")}, want: []int{0, 1, 2, 3, 4, 5, 7}, ok: true},
		{name: "unhealthy GPU never free", shape: "dgx-h100-gpu-failed", want: []int{0, 1, 2, 3, 4, 6, 7}, ok: true},
		// A pod with no known GPUs holds the set the search gives it: on
		// bridged pairs, a whole pair.
		{name: "unknown pod takes a pair", shape: "h100-nvl-pairs", pods: []*v1.Pod{gpuPod("u", 2, "")}, want: []int{2, 3, 4, 5, 6, 7}, ok: true},
		{name: "malformed annotation counts as unknown", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("m", 2, "x,y")}, want: []int{2, 3, 4, 5, 6, 7}, ok: true},
		// The scheduler's reservation beats an annotation the pod was
		// created with (copied from another pod).
		{name: "reservation beats a copied annotation", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("reserved", 1, "0")}, want: []int{0, 1, 2, 3, 4, 5, 7}, ok: true},
		// Bad annotations are never trusted: each pod is counted as the
		// search would place it, so no GPU is counted free twice.
		{name: "GPU listed twice", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("d", 2, "4,4")}, want: []int{2, 3, 4, 5, 6, 7}, ok: true},
		{name: "GPU the node does not have", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("x", 1, "9")}, want: []int{1, 2, 3, 4, 5, 6, 7}, ok: true},
		{name: "fewer GPUs than the pod uses", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("s", 2, "3")}, want: []int{2, 3, 4, 5, 6, 7}, ok: true},
		{name: "two pods claim one GPU", shape: "dgx-h100", pods: []*v1.Pod{gpuPod("a", 1, "0"), gpuPod("b", 1, "0")}, want: []int{2, 3, 4, 5, 6, 7}, ok: true},
		{name: "over-committed", shape: "l4-pcie", pods: []*v1.Pod{gpuPod("a", 3, "0,1,2"), gpuPod("u", 2, "")}, ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := shapeGPUs(t, tc.shape)
			got, ok := freeGPUs(n, nodeInfo("n", len(n.Topo.GPUs), nil, tc.pods...), held)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, n.Indexes(got)); ok && diff != "" {
				t.Errorf("free GPUs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFreeGPUsTrustsWhatTheKubeletReports(t *testing.T) {
	st := shapeStatus(t, "dgx-h100")
	// The device plugin gave pod a GPUs 4,5 where the scheduler chose 0,1.
	st.Holders = []tesserav1alpha1.GPUHolder{{Index: 4, Namespace: "ns", Pod: "a"}, {Index: 5, Namespace: "ns", Pod: "a"}}
	n, err := published.Read(st, now)
	if err != nil {
		t.Fatal(err)
	}
	// Pod b is not running yet: its annotation stands.
	info := nodeInfo("n", 8, nil, gpuPod("a", 2, "0,1"), gpuPod("b", 1, "7"))
	// The scheduler reserved 0,1 for a, and a is seen bound with them.
	held := newReservations()
	held.set("a", newAssignment("n", []int{0, 1}, 1000))
	free, ok := freeGPUs(n, info, held)
	if diff := cmp.Diff([]int{0, 1, 2, 3, 6}, n.Indexes(free)); !ok || diff != "" {
		t.Errorf("free GPUs (-want +got):\n%s", diff)
	}
}

// Controllers reuse pod names across attempts: a holder is its pod's by
// UID, never another pod's of the same name.
func TestHoldersAreMatchedByPodUID(t *testing.T) {
	st := shapeStatus(t, "dgx-h100")
	st.Holders = []tesserav1alpha1.GPUHolder{{Index: 4, Namespace: "ns", Pod: "worker-0", UID: "attempt-1"}}
	n, err := published.Read(st, now)
	if err != nil {
		t.Fatal(err)
	}
	// Attempt 2's pod of the same name holds GPU 6 by its annotation;
	// attempt 1's holder record is stale.
	next := gpuPod("worker-0", 1, "6")
	next.UID = "attempt-2"
	free, ok := freeGPUs(n, nodeInfo("n", 8, nil, next), newReservations())
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 7}, n.Indexes(free)); !ok || diff != "" {
		t.Errorf("free GPUs (-want +got):\n%s", diff)
	}
}

func TestBestSetLocality(t *testing.T) {
	n := shapeGPUs(t, "h100-nvl-pairs")
	free := n.Positions([]int{1, 2, 3, 5, 7})
	c, ok := n.BestSet(free, 2, false)
	if !ok || fmt.Sprint(n.Indexes(c.GPUs)) != "[2 3]" {
		t.Errorf("best 2 of 1,2,3,5,7 = %v, want the bridged pair [2 3]", n.Indexes(c.GPUs))
	}
	free = n.Positions([]int{1, 3, 5, 7})
	if _, ok := n.BestSet(free, 2, true); ok {
		t.Error("found a 2-GPU NVLink island among one GPU of each pair")
	}
	if c, ok := n.BestSet(free, 2, false); !ok || c.BottleneckGBps >= 300 {
		t.Errorf("without locality: %v, %v; want an unbridged pair", c, ok)
	}
	if got := n.LargestIslandFree(free); got != 1 {
		t.Errorf("largest island free = %d, want 1", got)
	}
}

func testPlugin(t *testing.T, args string, shapes map[string]string) *NVLinkTopology {
	t.Helper()
	a, err := configv1alpha1.DecodeNVLinkTopologyArgs(unknown(args))
	if err != nil {
		t.Fatal(err)
	}
	pl := &NVLinkTopology{args: a, topologies: newTopologyStore(), reserved: newReservations(), clock: clocktesting.NewFakeClock(now)}
	for node, shape := range shapes {
		st := shapeStatus(t, shape)
		st.HeartbeatTime = &metav1.Time{Time: now.Add(-time.Minute)}
		pl.topologies.update(klogDiscard, &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node}, Status: *st})
	}
	return pl
}

func TestFilter(t *testing.T) {
	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100", "pairs": "h100-nvl-pairs"})
	stale := shapeStatus(t, "dgx-h100")
	stale.HeartbeatTime = &metav1.Time{Time: now.Add(-time.Hour)}
	pl.topologies.update(klogDiscard, &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: "stale"}, Status: *stale})
	strict := testPlugin(t, `{"missingTopology": "Unschedulable"}`, nil)

	islandPod := func(k int) *v1.Pod {
		p := gpuPod("p", k, "")
		p.Annotations = map[string]string{tesserav1alpha1.AnnotationGPULocality: "nvlink-island"}
		return p
	}
	tests := []struct {
		name string
		pl   *NVLinkTopology
		pod  *v1.Pod
		node fwk.NodeInfo
		want string // "" for success
	}{
		{name: "fits", pl: pl, pod: gpuPod("p", 4, ""), node: nodeInfo("dgx", 8, nil, gpuPod("a", 3, "0,1,2"))},
		{name: "too few", pl: pl, pod: gpuPod("p", 6, ""), node: nodeInfo("dgx", 8, nil, gpuPod("a", 3, "0,1,2")), want: "too few free healthy GPUs"},
		{name: "island met", pl: pl, pod: islandPod(2), node: nodeInfo("pairs", 8, nil, gpuPod("a", 1, "0"))},
		{name: "island not met", pl: pl, pod: islandPod(2), node: nodeInfo("pairs", 8, nil, gpuPod("a", 4, "0,2,4,6")), want: "no NVLink island with 2 free healthy GPUs"},
		{name: "no topology: count only", pl: pl, pod: gpuPod("p", 2, ""), node: nodeInfo("bare", 8, nil)},
		{name: "stale topology: count only", pl: pl, pod: gpuPod("p", 2, ""), node: nodeInfo("stale", 8, nil)},
		{name: "no topology: island cannot be checked", pl: pl, pod: islandPod(2), node: nodeInfo("bare", 8, nil), want: "no GPU topology published, so NVLink-island locality cannot be met"},
		{name: "no topology: admin says unschedulable", pl: strict, pod: gpuPod("p", 2, ""), node: nodeInfo("bare", 8, nil), want: "no fresh GPU topology published"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := framework.NewCycleState()
			if _, st := tc.pl.PreFilter(context.Background(), state, tc.pod, nil); !st.IsSuccess() {
				t.Fatalf("PreFilter: %v", st)
			}
			st := tc.pl.Filter(context.Background(), state, tc.pod, tc.node)
			if got := st.Message(); got != tc.want || st.IsSuccess() != (tc.want == "") {
				t.Errorf("Filter = %v, want %q", st, tc.want)
			}
		})
	}
}

func TestPreFilterRejectsMalformedLocality(t *testing.T) {
	pl := testPlugin(t, "", nil)
	pod := gpuPod("p", 2, "")
	pod.Annotations = map[string]string{tesserav1alpha1.AnnotationGPULocality: "same-rack"}
	_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), pod, nil)
	want := `annotation tessera.dev/gpu-locality: "same-rack" is not a GPU locality; want one of ["none" "nvlink-island"]`
	if st.Code() != fwk.UnschedulableAndUnresolvable || st.Message() != want {
		t.Errorf("PreFilter = %v, want UnschedulableAndUnresolvable %q", st, want)
	}
	if _, st := pl.PreFilter(context.Background(), framework.NewCycleState(), gpuPod("cpu", 0, ""), nil); !st.IsSkip() {
		t.Errorf("PreFilter of a pod without GPUs = %v, want Skip", st)
	}
}

func TestScorePrefersFastSetsAndCutsLittle(t *testing.T) {
	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100", "dgx-busy": "dgx-h100", "pairs-broken": "h100-nvl-pairs", "pairs-whole": "h100-nvl-pairs", "pcie": "l40s-pcie"})
	score := func(pod *v1.Pod, nodes ...fwk.NodeInfo) map[string]int64 {
		state := framework.NewCycleState()
		if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
			t.Fatal(st)
		}
		var list fwk.NodeScoreList
		for _, n := range nodes {
			s, st := pl.Score(context.Background(), state, pod, n)
			if !st.IsSuccess() {
				t.Fatal(st)
			}
			list = append(list, fwk.NodeScore{Name: n.Node().Name, Score: s})
		}
		if st := pl.NormalizeScore(context.Background(), state, pod, list); !st.IsSuccess() {
			t.Fatal(st)
		}
		out := map[string]int64{}
		for _, s := range list {
			out[s.Name] = s.Score
		}
		return out
	}
	// Two GPUs: NVSwitch beats an NVLink bridge beats PCIe; a node without
	// a topology comes last.
	got := score(gpuPod("p", 2, ""), nodeInfo("dgx", 8, nil), nodeInfo("pairs-whole", 8, nil), nodeInfo("pcie", 8, nil), nodeInfo("bare", 8, nil))
	if got["dgx"] <= got["pairs-whole"] || got["pairs-whole"] <= got["pcie"] || got["pcie"] <= got["bare"] || got["bare"] != 0 {
		t.Errorf("2-GPU scores = %v, want dgx > pairs-whole > pcie > bare = 0", got)
	}
	// One GPU: the node where it completes a broken pair beats the node
	// where it breaks one.
	got = score(gpuPod("p", 1, ""), nodeInfo("pairs-broken", 8, nil, gpuPod("a", 1, "0")), nodeInfo("pairs-whole", 8, nil))
	if got["pairs-broken"] <= got["pairs-whole"] {
		t.Errorf("1-GPU scores = %v, want pairs-broken above pairs-whole", got)
	}
	// One GPU needs no fast link: it goes where taking it cuts the least
	// bandwidth off the free GPUs, a PCIe server before an idle NVSwitch
	// node, and a partly used NVSwitch node before an idle one.
	got = score(gpuPod("p", 1, ""), nodeInfo("dgx", 8, nil), nodeInfo("pcie", 8, nil))
	if got["pcie"] <= got["dgx"] {
		t.Errorf("1-GPU scores = %v, want pcie above an idle dgx", got)
	}
	got = score(gpuPod("p", 1, ""), nodeInfo("dgx", 8, nil), nodeInfo("dgx-busy", 8, nil, gpuPod("a", 4, "0,1,2,3")))
	if got["dgx-busy"] <= got["dgx"] {
		t.Errorf("1-GPU scores = %v, want the partly used dgx above the idle one", got)
	}
	for name, s := range got {
		if s < 0 || s > fwk.MaxScore {
			t.Errorf("score of %s = %d, out of [0, %d]", name, s, fwk.MaxScore)
		}
	}
}

func TestOrderGangNodes(t *testing.T) {
	pl := testPlugin(t, "", nil)
	// Racks a, b, c of four 8-GPU nodes: a is full, b has two nodes free,
	// c all four. Node names say rack and index.
	var nodes []fwk.NodeInfo
	for _, rack := range []string{"a", "b", "c"} {
		for i := range 4 {
			var pods []*v1.Pod
			if rack == "a" || rack == "b" && i < 2 {
				pods = append(pods, gpuPod(fmt.Sprintf("%s%d-busy", rack, i), 8, "0,1,2,3,4,5,6,7"))
			}
			n := nodeInfo(fmt.Sprintf("%s%d", rack, i), 8, map[string]string{"tessera.dev/rack": rack}, pods...)
			nodes = append(nodes, n)
		}
	}
	gang := func(members, gpus int) []*v1.Pod {
		var pods []*v1.Pod
		for i := range members {
			pods = append(pods, gpuPod(fmt.Sprintf("m%d", i), gpus, ""))
		}
		return pods
	}
	names := func(order []int) string {
		var s []string
		for _, i := range order {
			s = append(s, nodes[i].Node().Name)
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		name string
		pods []*v1.Pod
		want string
	}{
		// Fits in b (tightest) and c: b first.
		{name: "tightest rack that holds it", pods: gang(2, 8), want: "b0 b1 b2 b3 a0 a1 a2 a3 c0 c1 c2 c3"},
		{name: "only c holds it", pods: gang(3, 8), want: "c0 c1 c2 c3 a0 a1 a2 a3 b0 b1 b2 b3"},
		// No rack holds 6 nodes: the racks with the most free GPUs first.
		{name: "fewest racks", pods: gang(6, 8), want: "c0 c1 c2 c3 b0 b1 b2 b3 a0 a1 a2 a3"},
		{name: "no GPUs: fullest first", pods: gang(2, 0), want: "a0 a1 a2 a3 b0 b1 b2 b3 c0 c1 c2 c3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := names(pl.OrderGangNodes(tc.pods, nodes)); got != tc.want {
				t.Errorf("order = %s\nwant    %s", got, tc.want)
			}
		})
	}
	// A multi-node NVLink clique that holds the gang wins over racks.
	nodes[9].Node().Labels["nvidia.com/gpu.clique"] = "x.1"
	nodes[10].Node().Labels["nvidia.com/gpu.clique"] = "x.1"
	if got := names(pl.OrderGangNodes(gang(2, 8), nodes)); !strings.HasPrefix(got, "c1 c2 ") {
		t.Errorf("with clique c1+c2: order = %s, want c1 c2 first", got)
	}
}

func TestCachedAnswersFollowNodeChanges(t *testing.T) {
	pl := testPlugin(t, "", map[string]string{"dgx": "dgx-h100"})
	info := nodeInfo("dgx", 8, nil)
	pod := gpuPod("p", 8, "")
	state := framework.NewCycleState()
	if _, st := pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
		t.Fatal(st)
	}
	if st := pl.Filter(context.Background(), state, pod, info); !st.IsSuccess() {
		t.Fatalf("Filter on an empty DGX = %v", st)
	}
	if s, _ := pl.Score(context.Background(), state, pod, info); s == 0 {
		t.Fatal("Score on an empty DGX = 0")
	}
	busy := gpuPod("busy", 1, "5")
	busy.Spec.NodeName = "dgx"
	podInfo, err := framework.NewPodInfo(busy)
	if err != nil {
		t.Fatal(err)
	}
	info.AddPodInfo(podInfo)
	if st := pl.Filter(context.Background(), state, pod, info); st.IsSuccess() {
		t.Error("Filter still passes an 8-GPU pod after a GPU was taken")
	}
	if s, _ := pl.Score(context.Background(), state, pod, info); s != 0 {
		t.Errorf("Score = %d after a GPU was taken, want 0 (no set)", s)
	}
}

func TestOrderGangNodesPrefersFastDomains(t *testing.T) {
	// Rack p: two idle H100 NVL servers (bridged pairs), 16 GPUs; rack d:
	// three idle DGX H100, 24 GPUs. Both hold two members of 8 GPUs; p is
	// tighter, d's nodes ring all eight GPUs over NVSwitch.
	shapes := map[string]string{"p0": "h100-nvl-pairs", "p1": "h100-nvl-pairs", "d0": "dgx-h100", "d1": "dgx-h100", "d2": "dgx-h100"}
	pl := testPlugin(t, "", shapes)
	var nodes []fwk.NodeInfo
	for _, name := range []string{"p0", "p1", "d0", "d1", "d2"} {
		nodes = append(nodes, nodeInfo(name, 8, map[string]string{"tessera.dev/rack": name[:1]}))
	}
	first := func(members, gpus int) string {
		var pods []*v1.Pod
		for i := range members {
			pods = append(pods, gpuPod(fmt.Sprintf("m%d", i), gpus, ""))
		}
		return nodes[pl.OrderGangNodes(pods, nodes)[0]].Node().Name[:1]
	}
	if got := first(2, 8); got != "d" {
		t.Errorf("gang of 2×8 GPUs starts in rack %s, want d (NVSwitch)", got)
	}
	// One GPU per member needs no link: the tightest rack.
	if got := first(2, 1); got != "p" {
		t.Errorf("gang of 2×1 GPU starts in rack %s, want p (tightest)", got)
	}
}
