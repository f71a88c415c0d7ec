package main

import (
	"cmp"
	"slices"
)

// bestFreeBusBandwidth is the link-table bus bandwidth of the best
// placement the free GPUs offered a job of members pods of perPod GPUs
// (each member on a node of its own) when it arrived: what any scheduler
// could have reached then, on as many racks as that takes. Slowdown
// against the empty cluster's ideal mixes the scheduler's choices with the
// cluster's state; slowdown against this is the scheduler's alone. 0 if
// the job does not fit. It returns that placement too.
func (b *bench) bestFreeBusBandwidth(members, perPod int) (float64, []podPlacement) {
	// Every node's best free set for one member, fastest first.
	var sets []podPlacement
	for _, n := range b.nodes {
		if c, ok := n.topo.BestSet(n.free(), perPod); ok {
			sets = append(sets, podPlacement{node: n, gpus: c.GPUs})
		}
	}
	if len(sets) < members {
		return 0, nil
	}
	one := func(p podPlacement) float64 { return busBandwidth([]podPlacement{p}) }
	slices.SortStableFunc(sets, func(x, y podPlacement) int { return cmp.Compare(one(y), one(x)) })
	// On several racks the slowest member and the spine bound the ring, so
	// the fastest members anywhere are best; in one rack, the rack's
	// fastest members.
	best, at := busBandwidth(sets[:members]), sets[:members]
	byRack := map[string][]podPlacement{}
	for _, p := range sets {
		byRack[p.node.rack] = append(byRack[p.node.rack], p)
	}
	for _, rack := range byRack {
		if len(rack) < members {
			continue
		}
		if bw := busBandwidth(rack[:members]); bw > best {
			best, at = bw, rack[:members]
		}
	}
	return best, at
}
