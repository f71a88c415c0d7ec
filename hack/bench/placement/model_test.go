package main

import (
	"math"
	"testing"
)

func TestCostModel(t *testing.T) {
	shapes, err := shapeTopologies([]string{"dgx-h100", "h100-nvl-pairs", "l40s-pcie"})
	if err != nil {
		t.Fatal(err)
	}
	dgx := func(name, rack string) *node {
		return &node{name: name, rack: rack, shape: "dgx-h100", topo: shapes["dgx-h100"], used: make([]bool, 8)}
	}
	pairs := &node{name: "p", rack: "r9", shape: "h100-nvl-pairs", topo: shapes["h100-nvl-pairs"], used: make([]bool, 8)}
	a, b, c := dgx("a", "r1"), dgx("b", "r1"), dgx("c", "r2")
	tests := []struct {
		name string
		p    []podPlacement
		want float64
	}{
		{"one GPU", []podPlacement{{a, []int{0}}}, math.Inf(1)},
		{"NVSwitch", []podPlacement{{a, []int{0, 1, 2, 3}}}, 450},
		{"bridged pair", []podPlacement{{pairs, []int{0, 1}}}, 300},
		{"two nodes, one rack", []podPlacement{{a, []int{0, 1, 2, 3, 4, 5, 6, 7}}, {b, []int{0, 1, 2, 3, 4, 5, 6, 7}}}, 50},
		{"two racks", []podPlacement{{a, []int{0, 1, 2, 3, 4, 5, 6, 7}}, {c, []int{0, 1, 2, 3, 4, 5, 6, 7}}}, 25},
	}
	for _, tc := range tests {
		if got := busBandwidth(tc.p); got != tc.want {
			t.Errorf("%s: bus bandwidth = %v GB/s, want %v", tc.name, got, tc.want)
		}
	}
	if got := busBandwidth([]podPlacement{{pairs, []int{0, 2}}}); got >= 300 {
		t.Errorf("unbridged pair: bus bandwidth = %v GB/s, want below the bridge's 300", got)
	}
	for gpus, want := range map[int]float64{1: math.Inf(1), 2: 450, 8: 450, 16: 50, 64: 50} {
		if got := idealBusBandwidth(gpus, shapes); got != want {
			t.Errorf("ideal bus bandwidth of %d GPUs = %v, want %v", gpus, got, want)
		}
	}
}

func TestFewestRacks(t *testing.T) {
	shapes, err := shapeTopologies([]string{"dgx-h100"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{}
	// Rack r1: three free nodes, r2: two free and one busy, r3: one free.
	for _, spec := range []struct {
		rack string
		busy bool
	}{{"r1", false}, {"r1", false}, {"r1", false}, {"r2", false}, {"r2", false}, {"r2", true}, {"r3", false}} {
		n := &node{rack: spec.rack, topo: shapes["dgx-h100"], used: make([]bool, 8)}
		if spec.busy {
			n.used[0] = true
		}
		b.nodes = append(b.nodes, n)
	}
	for members, want := range map[int]int{1: 1, 3: 1, 4: 2, 5: 2, 6: 3} {
		if got := b.fewestRacks(members, 8); got != want {
			t.Errorf("fewest racks for %d members = %d, want %d", members, got, want)
		}
	}
	if !b.fits(6, 8) || b.fits(7, 8) {
		t.Errorf("fits(6) = %v, fits(7) = %v; want true, false", b.fits(6, 8), b.fits(7, 8))
	}
}

func TestNCCLCostModel(t *testing.T) {
	shapes, err := shapeTopologies([]string{"dgx-h100", "h100-nvl-pairs", "l40s-pcie"})
	if err != nil {
		t.Fatal(err)
	}
	on := func(name, rack, shape string) *node {
		return &node{name: name, rack: rack, shape: shape, topo: shapes[shape], used: make([]bool, len(shapes[shape].GPUs))}
	}
	a, b, c := on("a", "r1", "dgx-h100"), on("b", "r1", "dgx-h100"), on("c", "r2", "dgx-h100")
	pairs, l40s := on("p", "r9", "h100-nvl-pairs"), on("l", "r8", "l40s-pcie")
	all := []int{0, 1, 2, 3, 4, 5, 6, 7}
	tests := []struct {
		name string
		p    []podPlacement
		want float64
	}{
		{"one GPU", []podPlacement{{a, []int{0}}}, math.Inf(1)},
		{"NVSwitch", []podPlacement{{a, []int{0, 1, 2, 3}}}, ncclNVSwitchGBps},
		{"bridged pair", []podPlacement{{pairs, []int{0, 1}}}, ncclNVLinkBridgeGBps},
		{"two whole nodes, one rack: NVSwitch bounds", []podPlacement{{a, all}, {b, all}}, ncclNVSwitchGBps},
		{"two whole nodes, two racks", []podPlacement{{a, all}, {c, all}}, 8 * ncclNICGBps / spineOversubscribe},
		{"two half nodes: four NICs each", []podPlacement{{a, []int{0, 1, 2, 3}}, {b, []int{0, 1, 2, 3}}}, 4 * ncclNICGBps},
		{"PCIe across sockets", []podPlacement{{l40s, all}}, ncclSysGBps},
	}
	for _, tc := range tests {
		if got := ncclBusBandwidth(tc.p); got != tc.want {
			t.Errorf("%s: bus bandwidth = %v GB/s, want %v", tc.name, got, tc.want)
		}
	}
	if got := ncclBusBandwidth([]podPlacement{{pairs, []int{0, 2}}}); got >= ncclNVLinkBridgeGBps {
		t.Errorf("unbridged pair: bus bandwidth = %v GB/s, want below the bridge's %v", got, ncclNVLinkBridgeGBps)
	}
	for gpus, want := range map[int]float64{1: math.Inf(1), 2: ncclNVSwitchGBps, 8: ncclNVSwitchGBps, 16: ncclNVSwitchGBps, 64: ncclNVSwitchGBps} {
		if got := idealNCCLBusBandwidth(gpus, shapes); got != want {
			t.Errorf("ideal bus bandwidth of %d GPUs = %v, want %v", gpus, got, want)
		}
	}
}
