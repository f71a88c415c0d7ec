package fragmentation

import "slices"

// Placement is where a task would go on a node and what it would do to the
// node's expected fragmentation.
type Placement struct {
	// GPUs are the positions in FreeGPUMilli the task takes.
	GPUs []int
	// After is the node once the task is placed.
	After Node
	// Delta is the growth of the node's expected fragmentation (negative
	// when placing the task makes the node less fragmented).
	Delta float64
}

// Place finds the GPUs on the node for the task whose taking grows the
// node's expected fragmentation under m least (FGD's choice, with
// MeasureFGD): for a shared GPU it
// tries every GPU with room; for whole GPUs it takes fully free GPUs, which
// are interchangeable for this measure. False if the task does not fit.
func (n Node) Place(t Task, mix []Shape, m Measure) (Placement, bool) {
	return n.place(t, mix, m, n.Expected(mix, m), false)
}

// PlaceAfter is Place for a caller that knows the node's expected
// fragmentation against mix already (before).
func (n Node) PlaceAfter(t Task, mix []Shape, m Measure, before float64) (Placement, bool) {
	return n.place(t, mix, m, before, false)
}

// PlaceTightest is Place, except that a share goes to the GPU it fits most
// tightly, the GPU Tessera's scheduler assigns it (topology.Usage.PickShare),
// so that the measured growth is that of the real assignment.
func (n Node) PlaceTightest(t Task, mix []Shape, m Measure) (Placement, bool) {
	return n.place(t, mix, m, n.Expected(mix, m), true)
}

func (n Node) place(t Task, mix []Shape, m Measure, before float64, tightest bool) (Placement, bool) {
	if !n.Fits(t) {
		return Placement{}, false
	}
	take := func(gpus []int) Placement {
		after := Node{FreeCPUMilli: n.FreeCPUMilli - t.CPUMilli, FreeGPUMilli: slices.Clone(n.FreeGPUMilli), Model: n.Model}
		for _, g := range gpus {
			after.FreeGPUMilli[g] -= t.perGPU()
		}
		return Placement{GPUs: gpus, After: after, Delta: after.Expected(mix, m) - before}
	}
	switch {
	case t.GPUs == 0:
		return take(nil), true
	case t.sharesGPU() && tightest:
		best := -1
		for g, f := range n.FreeGPUMilli {
			if f >= t.GPUMilli && (best < 0 || f < n.FreeGPUMilli[best]) {
				best = g
			}
		}
		return take([]int{best}), true
	case t.sharesGPU():
		var best Placement
		found := false
		for g, f := range n.FreeGPUMilli {
			if f < t.GPUMilli {
				continue
			}
			p := take([]int{g})
			if !found || p.Delta < best.Delta {
				best, found = p, true
			}
		}
		return best, found
	default:
		var gpus []int
		for g, f := range n.FreeGPUMilli {
			if f == MilliGPU && len(gpus) < t.GPUs {
				gpus = append(gpus, g)
			}
		}
		return take(gpus), true
	}
}

// LeastFragmentingShare is the GPU among candidates whose taking of t (a
// share of one GPU) leaves the node least fragmented against mix under m
// (FGD's choice inside a node); on a tie, the GPU the share fits most
// tightly; -1 without candidates. n is the node before the share, its
// FreeGPUMilli indexed as candidates are.
func (n Node) LeastFragmentingShare(t Task, candidates []int, mix []Shape, m Measure) int {
	best, bestFrag := -1, 0.0
	for _, g := range candidates {
		after := Node{FreeCPUMilli: n.FreeCPUMilli - t.CPUMilli, FreeGPUMilli: slices.Clone(n.FreeGPUMilli), Model: n.Model}
		after.FreeGPUMilli[g] -= t.GPUMilli
		f := after.Expected(mix, m)
		if best < 0 || f < bestFrag || f == bestFrag && n.FreeGPUMilli[g] < n.FreeGPUMilli[best] {
			best, bestFrag = g, f
		}
	}
	return best
}
