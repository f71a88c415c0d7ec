package main

import "testing"

func TestBestFreeBusBandwidth(t *testing.T) {
	shapes, err := shapeTopologies([]string{"dgx-h100", "h100-nvl-pairs"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{}
	add := func(name, rack, shape string, busy ...int) {
		n := &node{name: name, rack: rack, shape: shape, topo: shapes[shape], used: make([]bool, 8)}
		for _, g := range busy {
			n.used[g] = true
		}
		b.nodes = append(b.nodes, n)
	}
	// r1: one idle DGX, one DGX with one GPU taken; r2: two idle NVL
	// servers; r3: one idle DGX.
	add("d1", "r1", "dgx-h100")
	add("d3", "r3", "dgx-h100")
	add("p1", "r2", "h100-nvl-pairs")
	add("p2", "r2", "h100-nvl-pairs")
	add("d2", "r1", "dgx-h100", 0)
	tests := []struct {
		name            string
		members, perPod int
		want            float64
	}{
		{"one node: the NVSwitch", 1, 8, 450},
		{"two whole nodes: two racks of DGX beat one rack of NVL servers", 2, 8, 25},
		{"three whole nodes: across racks, an NVL server's PCIe the bottleneck", 3, 8, 20},
		{"five whole nodes: too few (d2 has seven free)", 5, 8, 0},
		{"a bridged pair or DGX GPUs: the DGX", 1, 2, 450},
	}
	for _, tc := range tests {
		got, at := b.bestFreeBusBandwidth(tc.members, tc.perPod)
		if got != tc.want {
			t.Errorf("%s: best free bus bandwidth = %v GB/s, want %v", tc.name, got, tc.want)
		}
		if got > 0 && (len(at) != tc.members || busBandwidth(at) != got) {
			t.Errorf("%s: placement %s does not give %v GB/s", tc.name, describePlacement(at), got)
		}
	}
	// With d2 idle too, two members fit in r1 without the spine.
	b.nodes[4].used[0] = false
	if got, at := b.bestFreeBusBandwidth(2, 8); got != 50 {
		t.Errorf("two whole nodes with d2 idle: %v GB/s on %s, want 50 (d1 and d2 in r1)", got, describePlacement(at))
	}
}
