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
	// Every node's best free set for one member, with its bandwidth inside
	// the node.
	type option struct {
		placement podPlacement
		inside    float64
	}
	var options []option
	for _, n := range b.nodes {
		if c, ok := n.topo.BestSet(n.free(), perPod); ok {
			p := podPlacement{node: n, gpus: c.GPUs}
			options = append(options, option{p, busBandwidth([]podPlacement{p})})
		}
	}
	if len(options) < members {
		return 0, nil
	}
	// fastest is the members options that rank first by key: a member's
	// own bound on the ring, so that the ring's minimum is the largest.
	fastest := func(options []option, key func(option) float64) []podPlacement {
		sorted := slices.Clone(options)
		slices.SortStableFunc(sorted, func(x, y option) int { return cmp.Compare(key(y), key(x)) })
		out := make([]podPlacement, members)
		for i := range out {
			out[i] = sorted[i].placement
		}
		return out
	}
	if members == 1 {
		at := fastest(options, func(o option) float64 { return o.inside })
		return busBandwidth(at), at
	}
	// Across racks each member is bound by its node and its NICs behind
	// the spine; in one rack, by its node and its NICs.
	at := fastest(options, func(o option) float64 {
		return min(o.inside, nicGBps(o.placement.node.shape)/spineOversubscribe)
	})
	best := busBandwidth(at)
	byRack := map[string][]option{}
	for _, o := range options {
		byRack[o.placement.node.rack] = append(byRack[o.placement.node.rack], o)
	}
	for _, rack := range byRack {
		if len(rack) < members {
			continue
		}
		in := fastest(rack, func(o option) float64 { return min(o.inside, nicGBps(o.placement.node.shape)) })
		if bw := busBandwidth(in); bw > best {
			best, at = bw, in
		}
	}
	return best, at
}
