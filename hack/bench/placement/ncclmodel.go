package main

import (
	"math"
	"math/bits"

	"tessera.dev/tessera/pkg/topology"
)

// The second all-reduce cost model, independent of the bandwidth table the
// NVLinkTopology plugin maximises (model.go): each kind of path a ring can
// cross gets the bus bandwidth that public nccl-tests all_reduce_perf runs
// measured over it, in GB/s. Only the link's kind, as nvidia-smi topo -m
// names it, is read from the node's topology; its NVLink lane count and
// the plugin's PCIe discounts are not.
const (
	// H100 SXM GPUs through NVSwitch, NCCL_ALGO=RING: "NCCL can get an
	// effective NVLink bandwidth of 370GB/s" (NVIDIA's S. Jeaugey,
	// https://github.com/NVIDIA/nccl-tests/issues/212, 2024-05-06). The ring
	// figure, not NVLink SHARP's 480: a ring is what spans nodes too.
	ncclNVSwitchGBps = 370.0
	// Two H100 PCIe GPUs joined by NVLink bridges: 115-116 GB/s at 1-4 GiB
	// (https://github.com/NVIDIA/nccl/issues/1161, 2024-01-27).
	ncclNVLinkBridgeGBps = 116.0
	// PCIe under one CPU socket: 35 GB/s on 4 GPUs, 28 on 8 (RTX 5090,
	// PCIe Gen5; https://github.com/NVIDIA/nccl/issues/1639, 2025-03-14).
	// Gen5 figures: generous to Gen4 GPUs such as the L40S.
	ncclPCIeGBps = 35.0
	// PCIe across CPU sockets: about 20 GB/s (A100 PCIe, "SYS" pairs;
	// https://github.com/NVIDIA/nccl-tests/issues/178, 2023-11-17).
	ncclSysGBps = 20.0
	// Between nodes, per 400 Gb/s NDR NIC: "For NDR @ 400Gbps you should
	// see 46-48GB/s per NIC" (NVIDIA's D. Addison,
	// https://github.com/NVIDIA/nccl-tests/issues/290, 2025-03-03). NCCL
	// spreads a ring's channels over the NICs of the GPUs a node gives the
	// job, so its bus bandwidth between nodes adds up over them: 2 HGX H100
	// nodes, 16 GPU-NIC pairs, reach 470 GB/s
	// (https://github.com/NVIDIA/nccl-tests/issues/309); 4 nodes reach about
	// 45 GB/s with 4 GPUs a node and 90 with 8
	// (https://github.com/NVIDIA/nccl/issues/1168, 2024-02-05).
	ncclNICGBps = 47.0
)

// ncclLinkGBps is the measured bus bandwidth of a ring hop over link l.
func ncclLinkGBps(l topology.Link) float64 {
	switch l.Type {
	case topology.LinkSelf:
		return math.Inf(1)
	case topology.LinkNVSwitch:
		return ncclNVSwitchGBps
	case topology.LinkNVLink:
		return ncclNVLinkBridgeGBps
	case topology.LinkSys:
		return ncclSysGBps
	default:
		return ncclPCIeGBps
	}
}

// ncclNodeGBps is the bus bandwidth of a ring over gpus of one node: its
// slowest pair's kind of path.
func ncclNodeGBps(t *topology.Topology, gpus []int) float64 {
	bw := math.Inf(1)
	for i, a := range gpus {
		for _, b := range gpus[i+1:] {
			bw = min(bw, ncclLinkGBps(t.Link(a, b)))
		}
	}
	return bw
}

// ncclNICGBpsOf is what one GPU of a node of shape adds to the node's
// bandwidth to other nodes: PCIe inference servers share one NIC between
// two GPUs (the assumption model.go makes too).
func ncclNICGBpsOf(shape string) float64 {
	return ncclNICGBps * nicGBps(shape) / nicGBpsPerGPU
}

// ncclBusBandwidth is busBandwidth under the measured figures; +Inf for a
// single GPU. Between nodes, each node's share is the NICs of the job's
// GPUs on it; across racks it is halved, as in model.go: no public
// measurement gives a spine's oversubscription.
func ncclBusBandwidth(p []podPlacement) float64 {
	bw := math.Inf(1)
	gpusOn := map[*node]int{}
	racks := map[string]bool{}
	for _, pp := range p {
		gpusOn[pp.node] += len(pp.gpus)
		racks[pp.node.rack] = true
		bw = min(bw, ncclNodeGBps(pp.node.topo, pp.gpus))
	}
	if len(gpusOn) > 1 {
		for n, gpus := range gpusOn {
			inter := float64(gpus) * ncclNICGBpsOf(n.shape)
			if len(racks) > 1 {
				inter /= spineOversubscribe
			}
			bw = min(bw, inter)
		}
	}
	return bw
}

// idealNCCLBusBandwidth is the best ncclBusBandwidth a job of gpus GPUs can
// get on an empty cluster of these shapes, found by trying every set of
// GPUs of a node (so that it owes nothing to the plugin's search).
func idealNCCLBusBandwidth(gpus int, shapes map[string]*topology.Topology) float64 {
	if gpus <= 1 {
		return math.Inf(1)
	}
	best := 0.0
	for name, t := range shapes {
		n := len(t.GPUs)
		k := min(gpus, n)
		for mask := uint(1); mask < 1<<n; mask++ {
			if bits.OnesCount(mask) != k {
				continue
			}
			var set []int
			for g := range n {
				if mask&(1<<g) != 0 {
					set = append(set, g)
				}
			}
			bw := ncclNodeGBps(t, set)
			if gpus > n {
				// Whole nodes of the shape in one rack.
				bw = min(bw, float64(n)*ncclNICGBpsOf(name))
			}
			best = max(best, bw)
		}
	}
	return best
}
