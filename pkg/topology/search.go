package topology

import (
	"math"
	"slices"
)

// Choice is a set of GPUs picked for a request, with the two scores that
// ranked it.
type Choice struct {
	// GPUs are positions in Topology.GPUs, ascending.
	GPUs []int
	// BottleneckGBps is the slowest link between any two chosen GPUs: what
	// bounds a ring all-reduce among them. 0 for a single GPU.
	BottleneckGBps float64
	// LeftoverGBps scores what the choice leaves free: the summed bandwidth
	// between every pair of GPUs still free afterwards. Higher means the
	// remaining GPUs stay well connected for the next request of any size.
	LeftoverGBps float64
}

// better reports whether c ranks above o: faster bottleneck first, then a
// better leftover, then lower GPU indexes so that equal choices are stable.
func (c Choice) better(o Choice) bool {
	if c.BottleneckGBps != o.BottleneckGBps {
		return c.BottleneckGBps > o.BottleneckGBps
	}
	if c.LeftoverGBps != o.LeftoverGBps {
		return c.LeftoverGBps > o.LeftoverGBps
	}
	return slices.Compare(c.GPUs, o.GPUs) < 0
}

// exactSearchLimit bounds the number of subsets the exact search tries;
// C(16,8) = 12870, so every node of up to 16 GPUs is searched exactly.
const exactSearchLimit = 13000

// BestSet returns the best k GPUs among free (positions in GPUs; unhealthy
// ones are skipped), and false if fewer than k healthy GPUs are free. The
// search is exhaustive while C(free, k) ≤ 13,000 (every node of up to 16
// GPUs) and greedy above that.
func (t *Topology) BestSet(free []int, k int) (Choice, bool) {
	healthy := make([]int, 0, len(free))
	for _, g := range free {
		if g >= 0 && g < len(t.GPUs) && t.GPUs[g].Healthy && !slices.Contains(healthy, g) {
			healthy = append(healthy, g)
		}
	}
	slices.Sort(healthy)
	if k <= 0 || k > len(healthy) {
		return Choice{}, false
	}
	if binomial(len(healthy), k) <= exactSearchLimit {
		return t.exactBest(healthy, k), true
	}
	return t.greedyBest(healthy, k), true
}

func (t *Topology) exactBest(free []int, k int) Choice {
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	set := make([]int, k)
	var best Choice
	found := false
	for {
		for i, j := range idx {
			set[i] = free[j]
		}
		c := t.score(set, free)
		c.GPUs = set
		if !found || c.better(best) {
			c.GPUs = slices.Clone(set)
			best, found = c, true
		}
		// Next combination of k indexes out of len(free), in lexicographic order.
		i := k - 1
		for i >= 0 && idx[i] == len(free)-k+i {
			i--
		}
		if i < 0 {
			return best
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}

// greedyBest grows a set from every starting GPU, each time adding the GPU
// that keeps the bottleneck highest, and keeps the best set found.
func (t *Topology) greedyBest(free []int, k int) Choice {
	var best Choice
	found := false
	for _, start := range free {
		set := []int{start}
		for len(set) < k {
			next, nextBW := -1, -1.0
			for _, g := range free {
				if slices.Contains(set, g) {
					continue
				}
				bw := math.Inf(1)
				for _, s := range set {
					bw = min(bw, t.bandwidth[s][g])
				}
				if bw > nextBW {
					next, nextBW = g, bw
				}
			}
			set = append(set, next)
		}
		slices.Sort(set)
		c := t.score(set, free)
		c.GPUs = set
		if !found || c.better(best) {
			best, found = c, true
		}
	}
	return best
}

// score computes the bottleneck of set and the leftover of free minus set.
// It leaves Choice.GPUs unset.
func (t *Topology) score(set, free []int) Choice {
	c := Choice{BottleneckGBps: t.Bottleneck(set)}
	inSet := make([]bool, len(t.GPUs))
	for _, g := range set {
		inSet[g] = true
	}
	for i, a := range free {
		if inSet[a] {
			continue
		}
		for _, b := range free[i+1:] {
			if !inSet[b] {
				c.LeftoverGBps += t.bandwidth[a][b]
			}
		}
	}
	return c
}

// Bottleneck is the slowest link between any two GPUs of set (positions
// in GPUs), which bounds a ring all-reduce among them; 0 for fewer than two.
func (t *Topology) Bottleneck(set []int) float64 {
	if len(set) < 2 {
		return 0
	}
	bw := math.Inf(1)
	for i, a := range set {
		for _, b := range set[i+1:] {
			bw = min(bw, t.bandwidth[a][b])
		}
	}
	return bw
}

func binomial(n, k int) int {
	if k < 0 || k > n {
		return 0
	}
	k = min(k, n-k)
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
		if r > math.MaxInt32 {
			return math.MaxInt32
		}
	}
	return r
}
