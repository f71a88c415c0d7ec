// Package fragmentation measures how much of a node's free GPU capacity a
// workload cannot use, after the definitions of Fragmentation Gradient
// Descent (Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing
// Workloads with Fragmentation Gradient Descent", USENIX ATC 2023), in
// Tessera's own code.
//
// GPU capacity is counted in milli-GPUs: a whole GPU is 1000. A task asks
// either for a share of one GPU (1 to 999 milli), for whole GPUs, or for no
// GPU; and for CPU, and maybe for one of a set of GPU models.
//
// For one task shape, the fragment of a node is the free GPU capacity the
// task cannot use there: all of it if the task does not fit on the node at
// all (too little CPU, too few usable GPUs, a GPU model it may not use);
// otherwise the free capacity of the GPUs too small for it (a GPU with less
// free than its share, or a partly used GPU for a whole-GPU task). A node's
// expected fragmentation against a workload mix is the mix-weighted sum of
// its fragments. FGD places a task where that expectation grows least.
package fragmentation

import (
	"slices"

	"tessera.dev/tessera/pkg/topology"
)

// MilliGPU is one whole GPU.
const MilliGPU = topology.MilliGPU

// Node is what a node has free.
type Node struct {
	// FreeCPUMilli is the CPU not requested by pods on the node.
	FreeCPUMilli int64
	// FreeGPUMilli is each GPU's free capacity, 0 to 1000.
	FreeGPUMilli []int64
	// Model is the node's GPU model ("" for a CPU-only node).
	Model string
}

// Task is a pod's shape.
type Task struct {
	CPUMilli int64
	// GPUs is the number of GPUs; with GPUMilli < 1000 it is 1 and the task
	// shares one GPU.
	GPUs int
	// GPUMilli is the share of each GPU: 1000 for whole GPUs, less for a
	// shared GPU. Ignored when GPUs is 0.
	GPUMilli int64
	// Models are the GPU models the task may use; empty means any.
	Models []string
}

// sharesGPU reports whether the task asks for part of one GPU.
func (t Task) sharesGPU() bool { return t.GPUs == 1 && t.GPUMilli > 0 && t.GPUMilli < MilliGPU }

// perGPU is how much of each of its GPUs the task needs.
func (t Task) perGPU() int64 {
	if t.sharesGPU() {
		return t.GPUMilli
	}
	return MilliGPU
}

// modelAllowed reports whether the task may use the node's GPUs.
func (t Task) modelAllowed(model string) bool {
	return len(t.Models) == 0 || slices.Contains(t.Models, model)
}

// FreeGPU is the node's free GPU capacity in milli-GPUs.
func (n Node) FreeGPU() int64 {
	var total int64
	for _, f := range n.FreeGPUMilli {
		total += f
	}
	return total
}

// Fits reports whether the task can be placed on the node.
func (n Node) Fits(t Task) bool {
	if t.CPUMilli > n.FreeCPUMilli {
		return false
	}
	if t.GPUs == 0 {
		return true
	}
	if !t.modelAllowed(n.Model) {
		return false
	}
	need := t.perGPU()
	usable := 0
	for _, f := range n.FreeGPUMilli {
		if f >= need {
			usable++
		}
	}
	return usable >= t.GPUs
}

// Fragment is the node's free GPU capacity, in milli-GPUs, that the task
// cannot use. (One pass over the GPUs: the measure runs for every shape of
// the mix on every node the scheduler scores.)
func (n Node) Fragment(t Task) int64 {
	var free, small int64
	usable := 0
	need := t.perGPU()
	for _, f := range n.FreeGPUMilli {
		free += f
		if f >= need {
			usable++
		} else {
			small += f
		}
	}
	switch {
	case t.CPUMilli > n.FreeCPUMilli:
		return free
	case t.GPUs == 0:
		// A CPU-only task that fits leaves the GPUs to others.
		return 0
	case !t.modelAllowed(n.Model) || usable < t.GPUs:
		return free
	}
	return small
}

// Shape is a task shape with its weight in a workload mix.
type Shape struct {
	Task
	Weight float64
}

// Expected is the node's fragmentation against the mix: the weighted mean
// of its fragments, in milli-GPUs. Weights need not sum to 1.
func (n Node) Expected(mix []Shape) float64 {
	var sum, weights float64
	for _, s := range mix {
		sum += s.Weight * float64(n.Fragment(s.Task))
		weights += s.Weight
	}
	if weights == 0 {
		return 0
	}
	return sum / weights
}

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
// node's expected fragmentation least (FGD's choice): for a shared GPU it
// tries every GPU with room; for whole GPUs it takes fully free GPUs, which
// are interchangeable for this measure. False if the task does not fit.
func (n Node) Place(t Task, mix []Shape) (Placement, bool) {
	return n.place(t, mix, n.Expected(mix), false)
}

// PlaceAfter is Place for a caller that knows the node's expected
// fragmentation against mix already (before).
func (n Node) PlaceAfter(t Task, mix []Shape, before float64) (Placement, bool) {
	return n.place(t, mix, before, false)
}

// PlaceTightest is Place, except that a share goes to the GPU it fits most
// tightly, the GPU Tessera's scheduler assigns it (topology.Usage.PickShare),
// so that the measured growth is that of the real assignment.
func (n Node) PlaceTightest(t Task, mix []Shape) (Placement, bool) {
	return n.place(t, mix, n.Expected(mix), true)
}

func (n Node) place(t Task, mix []Shape, before float64, tightest bool) (Placement, bool) {
	if !n.Fits(t) {
		return Placement{}, false
	}
	take := func(gpus []int) Placement {
		after := Node{FreeCPUMilli: n.FreeCPUMilli - t.CPUMilli, FreeGPUMilli: slices.Clone(n.FreeGPUMilli), Model: n.Model}
		for _, g := range gpus {
			after.FreeGPUMilli[g] -= t.perGPU()
		}
		return Placement{GPUs: gpus, After: after, Delta: after.Expected(mix) - before}
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
