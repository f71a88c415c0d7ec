package topology_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tessera.dev/tessera/pkg/topology"
)

func allGPUs(n int) []int {
	free := make([]int, n)
	for i := range free {
		free[i] = i
	}
	return free
}

func without(free []int, busy ...int) []int {
	var out []int
	for _, g := range free {
		skip := false
		for _, b := range busy {
			skip = skip || g == b
		}
		if !skip {
			out = append(out, g)
		}
	}
	return out
}

func TestBestSet(t *testing.T) {
	tests := []struct {
		name           string
		shape          string
		free           []int
		k              int
		want           []int
		wantBottleneck float64
	}{
		{"whole DGX H100", "dgx-h100", allGPUs(8), 8, []int{0, 1, 2, 3, 4, 5, 6, 7}, 450},
		{"DGX H100 with 0,1,2 busy: any four, all NV18", "dgx-h100", without(allGPUs(8), 0, 1, 2), 4, []int{3, 4, 5, 6}, 450},
		{"NVL pair for two GPUs", "h100-nvl-pairs", allGPUs(8), 2, []int{0, 1}, 300},
		{"one GPU goes next to a busy one, keeping whole pairs free", "h100-nvl-pairs", without(allGPUs(8), 0), 1, []int{1}, 0},
		{"two GPUs avoid breaking a pair when a lone one is free", "h100-nvl-pairs", without(allGPUs(8), 0, 2), 2, []int{4, 5}, 300},
		{"four NVL GPUs stay on one socket", "h100-nvl-pairs", allGPUs(8), 4, []int{0, 1, 2, 3}, 30},
		{"L40S pair under one PCIe switch", "l40s-pcie", without(allGPUs(8), 1), 2, []int{2, 3}, 25},
		{"failed GPU is never chosen", "dgx-h100-gpu-failed", allGPUs(8), 7, []int{0, 1, 2, 3, 4, 6, 7}, 450},
		{"L4 pair on one socket", "l4-pcie", allGPUs(4), 2, []int{0, 1}, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topo := discoverShape(t, tc.shape).Topology
			got, ok := topo.BestSet(tc.free, tc.k)
			if !ok {
				t.Fatalf("BestSet(%v, %d) found nothing", tc.free, tc.k)
			}
			if diff := cmp.Diff(tc.want, got.GPUs); diff != "" {
				t.Errorf("GPUs (-want +got):\n%s", diff)
			}
			if got.BottleneckGBps != tc.wantBottleneck {
				t.Errorf("bottleneck = %v GB/s, want %v", got.BottleneckGBps, tc.wantBottleneck)
			}
		})
	}
}

func TestBestSetInfeasible(t *testing.T) {
	topo := discoverShape(t, "dgx-h100-gpu-failed").Topology
	for _, tc := range []struct {
		free []int
		k    int
	}{
		{allGPUs(8), 8},      // GPU 5 is failed: only 7 healthy
		{[]int{0, 1}, 3},     // not enough free
		{allGPUs(8), 0},      // nothing asked
		{[]int{0, 0, 0}, 2},  // duplicates do not count twice
		{[]int{-1, 9, 1}, 2}, // out-of-range positions are ignored
	} {
		if got, ok := topo.BestSet(tc.free, tc.k); ok {
			t.Errorf("BestSet(%v, %d) = %v, want none", tc.free, tc.k, got.GPUs)
		}
	}
}

// A 24-GPU node (three NVSwitch domains of 8, joined over PCIe) is past the
// exact search's limit; the greedy search still keeps 8 GPUs in one domain.
func TestBestSetGreedyOnLargeNodes(t *testing.T) {
	gpus := make([]topology.GPU, 24)
	for i := range gpus {
		gpus[i] = topology.GPU{Index: i, Identity: topology.Identity{Architecture: topology.ArchHopper}, Healthy: true}
	}
	topo := topology.New(gpus)
	for a := range gpus {
		for b := a + 1; b < len(gpus); b++ {
			if a/8 == b/8 {
				topo.SetLink(a, b, topology.Link{Type: topology.LinkNVSwitch, NVLinks: 18})
			}
		}
	}
	got, ok := topo.BestSet(without(allGPUs(24), 0, 9), 8)
	if !ok {
		t.Fatal("no set")
	}
	if diff := cmp.Diff([]int{16, 17, 18, 19, 20, 21, 22, 23}, got.GPUs); diff != "" {
		t.Errorf("GPUs (-want +got):\n%s", diff)
	}
	if got.BottleneckGBps != 450 {
		t.Errorf("bottleneck = %v, want 450 (one NVSwitch domain)", got.BottleneckGBps)
	}
}

func BenchmarkBestSet(b *testing.B) {
	for _, shape := range []string{"dgx-h100", "h100-nvl-pairs", "l40s-pcie"} {
		topo := discoverShape(b, shape).Topology
		for k := 1; k <= 8; k++ {
			b.Run(fmt.Sprintf("%s/k=%d", shape, k), func(b *testing.B) {
				free := allGPUs(8)
				for b.Loop() {
					if _, ok := topo.BestSet(free, k); !ok {
						b.Fatal("no set")
					}
				}
			})
		}
	}
}
