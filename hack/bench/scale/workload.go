package main

import (
	"fmt"
	"math/rand/v2"
)

// podShape is one pod of the burst.
type podShape struct {
	name string
	// gpus are whole GPUs (nvidia.com/gpu); 0 for a share.
	gpus int
	// milli is a share of one GPU (tessera.dev/gpu-milli); 0 for whole GPUs.
	milli int
	// gang is the pod's PodGroup, "" for none.
	gang string
}

// workload is the burst: the same pods, in the same order, for every
// profile.
type workload struct {
	pods []podShape
	// gangs are the PodGroups, by name, with their member counts.
	gangs map[string]int
}

// The mix, by pod: 10 % shares (250 or 500 milli), 45 % one GPU, 20 % two,
// 15 % four, 5 % eight, and 5 % members of 8-pod gangs of 8 GPUs each.
const (
	gangSize = 8
	gangGPUs = 8
)

var mix = []struct {
	share float64
	gpus  int // 0: a share; -1: a gang
}{
	{0.10, 0}, {0.45, 1}, {0.20, 2}, {0.15, 4}, {0.05, 8}, {0.05, -1},
}

// newWorkload draws pods pods from the mix with seed; a gang's members are
// created one after the other.
func newWorkload(pods int, seed uint64) *workload {
	rng := rand.New(rand.NewPCG(seed, seed^0x5ca1e))
	// A draw is one pod or one whole gang: a gang's weight per draw is its
	// share of pods over its size.
	weights, total := make([]float64, len(mix)), 0.0
	for i, m := range mix {
		weights[i] = m.share
		if m.gpus < 0 {
			weights[i] /= gangSize
		}
		total += weights[i]
	}
	w := &workload{gangs: map[string]int{}}
	for len(w.pods) < pods {
		x, kind := rng.Float64()*total, 1
		for i, m := range mix {
			if x < weights[i] {
				kind = m.gpus
				break
			}
			x -= weights[i]
		}
		i := len(w.pods)
		switch {
		case kind == 0:
			w.pods = append(w.pods, podShape{name: fmt.Sprintf("share-%05d", i), milli: 250 * (1 + rng.IntN(2))})
		case kind < 0 && pods-len(w.pods) >= gangSize:
			gang := fmt.Sprintf("gang-%05d", i)
			w.gangs[gang] = gangSize
			for m := range gangSize {
				w.pods = append(w.pods, podShape{name: fmt.Sprintf("%s-%d", gang, m), gpus: gangGPUs, gang: gang})
			}
		case kind > 0:
			w.pods = append(w.pods, podShape{name: fmt.Sprintf("gpu%d-%05d", kind, i), gpus: kind})
		}
	}
	return w
}

// gpus is how many GPUs the burst asks for, a share counting as one.
func (w *workload) gpus() int {
	n := 0
	for _, p := range w.pods {
		n += max(p.gpus, min(p.milli, 1))
	}
	return n
}

// describe summarizes the burst's shapes.
func (w *workload) describe() string {
	shares, gangMembers := 0, 0
	byGPUs := map[int]int{}
	for _, p := range w.pods {
		switch {
		case p.gang != "":
			gangMembers++
		case p.milli > 0:
			shares++
		default:
			byGPUs[p.gpus]++
		}
	}
	return fmt.Sprintf("%d shares, %d/%d/%d/%d pods of 1/2/4/8 GPUs, %d gangs of %d×%d GPUs; %d GPUs",
		shares, byGPUs[1], byGPUs[2], byGPUs[4], byGPUs[8], len(w.gangs), gangSize, gangGPUs, w.gpus())
}
