package fragmentation

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// node has 8 CPUs free and four G2 GPUs: one free, one half used, one 80 %
// used, one full.
var node = Node{FreeCPUMilli: 8000, FreeGPUMilli: []int64{1000, 500, 200, 0}, Model: "G2"}

var (
	share300  = Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 300}
	oneGPU    = Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 1000}
	twoGPUs   = Task{CPUMilli: 1000, GPUs: 2, GPUMilli: 1000}
	cpuSmall  = Task{CPUMilli: 2000}
	cpuTooBig = Task{CPUMilli: 9000}
)

func TestFragment(t *testing.T) {
	tests := []struct {
		name string
		node Node
		task Task
		want int64
	}{
		// Fits on GPU 0 or 1; GPUs 2 (200 free) and 3 are too small for it.
		{"shared GPU task", node, share300, 200},
		// Fits on GPU 0; the partly used GPUs 1 and 2 are fragments.
		{"whole GPU task", node, oneGPU, 700},
		// Only one GPU is whole: the task does not fit, all 1700 is fragment.
		{"two whole GPUs", node, twoGPUs, 1700},
		{"CPU-only task that fits", node, cpuSmall, 0},
		{"CPU-only task that does not fit", node, cpuTooBig, 1700},
		{"GPU model not allowed", node, Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 300, Models: []string{"T4"}}, 1700},
		{"GPU model allowed", node, Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 300, Models: []string{"T4", "G2"}}, 200},
		{"too little CPU for a GPU task", Node{FreeCPUMilli: 500, FreeGPUMilli: []int64{1000, 1000}}, oneGPU, 2000},
		{"CPU-only node", Node{FreeCPUMilli: 8000}, oneGPU, 0},
	}
	for _, tc := range tests {
		if got := tc.node.Fragment(tc.task); got != tc.want {
			t.Errorf("%s: fragment = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestExpected(t *testing.T) {
	mix := []Shape{{Task: share300, Weight: 1}, {Task: oneGPU, Weight: 1}}
	if got := node.Expected(mix, MeasureFGD); got != 450 {
		t.Errorf("expected fragmentation = %v, want (200+700)/2 = 450", got)
	}
	if got := node.Expected(nil, MeasureFGD); got != 0 {
		t.Errorf("expected fragmentation of an empty mix = %v, want 0", got)
	}
}

func TestPlace(t *testing.T) {
	mix := []Shape{{Task: share300, Weight: 1}, {Task: oneGPU, Weight: 1}}
	// On GPU 0 the last whole GPU breaks: 800 after (200 + 1400), +350.
	// On GPU 1: 1000,200,200,0 → share300 400, oneGPU 400: 400, -50.
	// On GPU 0 would be what a first-fit or packing policy might pick.
	p, ok := node.Place(share300, mix, MeasureFGD)
	if !ok {
		t.Fatal("share300 does not fit")
	}
	if diff := cmp.Diff([]int{1}, p.GPUs); diff != "" || math.Abs(p.Delta-(-50)) > 1e-9 {
		t.Errorf("placement = GPUs %v, delta %v; want GPU 1, delta -50 (%s)", p.GPUs, p.Delta, diff)
	}
	if diff := cmp.Diff(Node{FreeCPUMilli: 7000, FreeGPUMilli: []int64{1000, 200, 200, 0}, Model: "G2"}, p.After); diff != "" {
		t.Errorf("node after (-want +got):\n%s", diff)
	}
	if node.FreeGPUMilli[1] != 500 {
		t.Error("Place changed the node it was given")
	}
	// A whole GPU: after 0,500,200,0 → share300 200, oneGPU 700: 450, +0.
	p, ok = node.Place(oneGPU, mix, MeasureFGD)
	if !ok || !cmp.Equal(p.GPUs, []int{0}) || p.Delta != 0 {
		t.Errorf("oneGPU placement = %v, %v, %v; want GPU 0, delta 0", ok, p.GPUs, p.Delta)
	}
	if _, ok := node.Place(twoGPUs, mix, MeasureFGD); ok {
		t.Error("twoGPUs placed on a node with one whole GPU")
	}
	p, ok = node.Place(cpuSmall, mix, MeasureFGD)
	if !ok || p.GPUs != nil || p.After.FreeCPUMilli != 6000 || p.Delta != 0 {
		t.Errorf("CPU-only placement = %v, %+v", ok, p)
	}
}

func TestMixDecays(t *testing.T) {
	m := NewMix(2)
	m.Observe(oneGPU)
	m.Observe(oneGPU)
	m.Observe(share300)
	got := m.Shapes()
	// oneGPU: 1·0.5 + 1·√0.5 ≈ 1.207 (each observation decays the rest by
	// 2^(-1/2)); share300: 1.
	if len(got) != 2 || got[0].GPUMilli != 1000 || math.Abs(got[0].Weight-(0.5+math.Sqrt(0.5))) > 1e-9 || got[1].Weight != 1 {
		t.Errorf("mix = %+v", got)
	}
}

func TestUnusable(t *testing.T) {
	cpuBound := Node{FreeCPUMilli: 2500, FreeGPUMilli: []int64{1000, 1000, 1000, 1000}, Model: "G2"}
	tests := []struct {
		name string
		node Node
		task Task
		want int64
	}{
		// Four copies of 300 fit (three on GPU 0, one on GPU 1): 1200 of
		// the 1700 free is usable.
		{"shared GPU task", node, share300, 500},
		// One copy on the one whole GPU; the partly used GPUs are left.
		{"whole GPU task", node, oneGPU, 700},
		{"two whole GPUs", node, twoGPUs, 1700},
		{"CPU-only task that fits", node, cpuSmall, 0},
		{"CPU-only task that does not fit", node, cpuTooBig, 1700},
		{"GPU model not allowed", node, Task{CPUMilli: 1000, GPUs: 1, GPUMilli: 300, Models: []string{"T4"}}, 1700},
		// Four whole GPUs free, CPU for two copies: FGD's fragment is 0,
		// but two GPUs are stranded.
		{"CPU strands GPUs", cpuBound, oneGPU, 2000},
		{"a task without CPU", cpuBound, Task{GPUs: 1, GPUMilli: 300}, 400},
	}
	for _, tc := range tests {
		if got := tc.node.Unusable(tc.task); got != tc.want {
			t.Errorf("%s: unusable = %d, want %d", tc.name, got, tc.want)
		}
		if got, want := MeasureCopies.Of(tc.node, tc.task), tc.node.Unusable(tc.task); got != want {
			t.Errorf("%s: MeasureCopies = %d, want Unusable's %d", tc.name, got, want)
		}
		if got, want := MeasureBoth.Of(tc.node, tc.task), (tc.node.Fragment(tc.task)+tc.node.Unusable(tc.task))/2; got != want {
			t.Errorf("%s: MeasureBoth = %d, want the mean %d", tc.name, got, want)
		}
	}
	if got := cpuBound.Fragment(oneGPU); got != 0 {
		t.Errorf("FGD fragment of the CPU-bound node = %d, want 0", got)
	}
	mix := []Shape{{Task: share300, Weight: 1}, {Task: oneGPU, Weight: 3}}
	if got := node.Expected(mix, MeasureCopies); got != (500+3*700)/4.0 {
		t.Errorf("expected copies measure = %v, want 650", got)
	}
}

func TestPlaceTightest(t *testing.T) {
	n := Node{FreeCPUMilli: 8000, FreeGPUMilli: []int64{1000, 400, 350, 100}}
	p, ok := n.PlaceTightest(share300, nil, MeasureFGD)
	if !ok || !cmp.Equal(p.GPUs, []int{2}) || p.After.FreeGPUMilli[2] != 50 || p.After.FreeCPUMilli != 7000 {
		t.Errorf("tightest placement of 300 = %v, %+v; want GPU 2 left with 50", ok, p)
	}
	if _, ok := n.PlaceTightest(Task{GPUs: 1, GPUMilli: 999}, nil, MeasureFGD); !ok {
		t.Error("a share of 999 does not fit an idle GPU")
	}
}
