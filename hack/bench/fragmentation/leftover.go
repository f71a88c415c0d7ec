package main

import (
	"fmt"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/openb"
	frag "tessera.dev/tessera/pkg/fragmentation"
)

// leftover follows each node's free GPUs from the bindings of a replay,
// to say where the capacity no pod took is at the end: in GPUs that
// shares use in part, or in idle GPUs.
type leftover struct {
	// free is each node's free milli-GPUs, by GPU.
	free map[string][]int64
}

func newLeftover(nodes []openb.Node) *leftover {
	l := &leftover{free: map[string][]int64{}}
	for _, n := range nodes {
		l.free[n.Name] = n.Empty().FreeGPUMilli
	}
	return l
}

// place takes what p holds on node: its GPUs are the ones the binding's
// tessera.dev/gpu-ids names (every policy binds through NVLinkTopology).
func (l *leftover) place(p openb.Pod, node string, gpuIDs string) error {
	free, ok := l.free[node]
	if !ok {
		return fmt.Errorf("pod %s bound to unknown node %s", p.Name, node)
	}
	ids, err := tesserav1alpha1.ParseGPUIDs(gpuIDs)
	if err != nil {
		return fmt.Errorf("pod %s: %w", p.Name, err)
	}
	if len(ids) != p.GPUs {
		return fmt.Errorf("pod %s asked for %d GPUs and got %v", p.Name, p.GPUs, ids)
	}
	for _, g := range ids {
		if g >= len(free) || free[g] < p.GPUMilli {
			return fmt.Errorf("pod %s got GPU %d of %s, which has not %d milli free", p.Name, g, node, p.GPUMilli)
		}
	}
	for _, g := range ids {
		free[g] -= p.GPUMilli
	}
	return nil
}

// split is the free capacity in partly used GPUs and in idle ones, in
// milli-GPUs.
func (l *leftover) split() (partial, idle int64) {
	for _, free := range l.free {
		for _, f := range free {
			switch {
			case f == frag.MilliGPU:
				idle += f
			case f > 0:
				partial += f
			}
		}
	}
	return partial, idle
}
