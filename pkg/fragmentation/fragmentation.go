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

// Measure is a way of counting what of a node's free GPU capacity a task
// cannot use.
type Measure int

const (
	// MeasureFGD is FGD's fragment (Node.Fragment): whether one copy of
	// the task fits.
	MeasureFGD Measure = iota
	// MeasureCopies is Node.Unusable: how much capacity the copies of the
	// task that fit leave over.
	MeasureCopies
	// MeasureBoth is the mean of the two: FGD's fragment keeps whole GPUs
	// and nodes for the shapes that need them, the copies measure adds the
	// capacity that CPU and share sizes strand.
	MeasureBoth
)

// Of is the node's unusable capacity for the task under the measure.
func (m Measure) Of(n Node, t Task) int64 {
	switch m {
	case MeasureCopies:
		return n.Unusable(t)
	case MeasureBoth:
		return (n.Fragment(t) + n.Unusable(t)) / 2
	}
	return n.Fragment(t)
}

// Expected is the node's fragmentation against the mix under the measure:
// the weighted mean over its shapes, in milli-GPUs. Weights need not sum
// to 1.
func (n Node) Expected(mix []Shape, m Measure) float64 {
	return Mean(mix, func(i int) int64 { return m.Of(n, mix[i].Task) })
}

// Mean is the mix-weighted mean of of(i), the unusable capacity for the
// mix's i-th shape: Expected's sum, for callers that keep each shape's
// value (the GPUFragmentation plugin's per-node cache), so that theirs is
// the same number to the last bit. Weights need not sum to 1.
func Mean(mix []Shape, of func(i int) int64) float64 {
	var sum, weights float64
	for i, s := range mix {
		sum += s.Weight * float64(of(i))
		weights += s.Weight
	}
	if weights == 0 {
		return 0
	}
	return sum / weights
}

// Unusable is the node's free GPU capacity, in milli-GPUs, that copies of
// the task could not fill: the free capacity left once as many copies as
// the node's CPU and GPUs allow are placed. It extends Fragment, which
// asks only whether one copy fits, to how many do: a node with GPUs free but
// CPU for one more copy, or a GPU with 600 free for shares of 400, strands
// capacity Fragment does not see.
func (n Node) Unusable(t Task) int64 {
	var free, copies int64
	need := t.perGPU()
	whole := 0
	for _, f := range n.FreeGPUMilli {
		free += f
		if t.sharesGPU() {
			copies += f / need
		} else if f == MilliGPU {
			whole++
		}
	}
	switch {
	case t.CPUMilli > n.FreeCPUMilli:
		return free
	case t.GPUs == 0:
		return 0
	case !t.modelAllowed(n.Model):
		return free
	}
	if !t.sharesGPU() {
		copies = int64(whole / t.GPUs)
	}
	if t.CPUMilli > 0 {
		copies = min(copies, n.FreeCPUMilli/t.CPUMilli)
	}
	return free - copies*int64(t.GPUs)*need
}
