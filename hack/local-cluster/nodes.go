package main

// labelPool marks the training pool's nodes; the launcher examples' Kueue
// flavors select it, so training jobs stay off the pod examples' nodes.
const labelPool = "tessera.dev/pool"

// demoNode is one simulated GPU server of the local cluster.
type demoNode struct {
	name, shape, rack string
	// pool is the node's labelPool value; empty for none.
	pool string
}

// demoNodes is a small mixed cluster: two racks of DGX, PCIe nodes beside them.
var demoNodes = []demoNode{
	{"h100-a0", "dgx-h100", "rack-a", ""},
	{"h100-a1", "dgx-h100", "rack-a", ""},
	{"a100-b0", "dgx-a100", "rack-b", ""},
	{"l40s-b1", "l40s-pcie", "rack-b", ""},
	{"l4-c0", "l4-pcie", "rack-c", ""},
}

// poolNodes join after the pod examples: the training pool whose racks are
// the launcher examples' Kueue flavors.
var poolNodes = []demoNode{
	{"h100-d0", "dgx-h100", "rack-d", "training"},
	{"h100-d1", "dgx-h100", "rack-d", "training"},
	{"h100-d2", "dgx-h100", "rack-d", "training"},
	{"h100-d3", "dgx-h100", "rack-d", "training"},
	{"h100-e0", "dgx-h100", "rack-e", "training"},
	{"h100-e1", "dgx-h100", "rack-e", "training"},
	{"l40s-e2", "l40s-pcie", "rack-e", "training"},
}
