package nvlink

import (
	"context"
	"math"
	"slices"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// Score weights: how fast the pod's own GPUs talk matters most; how little
// of the node's free GPU connectivity the choice cuts off breaks ties, and
// sends pods that need no fast links (one GPU) where they cost the least.
const (
	bandwidthWeight = 85
	leftoverWeight  = fwk.MaxScore - bandwidthWeight
	// lossScale packs the two numbers into one raw score; a node's lost
	// bandwidth is capped below it (a 16-GPU NVSwitch node loses at most
	// 15 × 900 GB/s).
	lossScale = 100_000
)

// PreScore skips scoring for pods without GPUs (PreFilter skipped them).
func (pl *NVLinkTopology) PreScore(_ context.Context, state fwk.CycleState, _ *v1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	if _, err := readState(state); err != nil {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score ranks the node by the best GPU set it offers the pod. The raw score
// packs two numbers, normalized across nodes in NormalizeScore: the set's
// bottleneck bandwidth in GB/s, and the bandwidth it cuts off, in GB/s. A
// node without a usable topology scores 0. Filter's answer for the node in
// this cycle is reused.
func (pl *NVLinkTopology) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.NodeInfo) (int64, *fwk.Status) {
	req, err := readState(state)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	if raw, ok := req.filterAnswer(info); ok {
		return raw, nil
	}
	n, _ := pl.usable(info.Node().Name, req.now)
	if n == nil {
		return 0, nil
	}
	_, raw, ok := n.bestSet(info, pl.holders(), req.request)
	if !ok {
		return 0, nil
	}
	return raw, nil
}

// rawScore encodes a choice: 1 + bottleneck GB/s × lossScale + lost GB/s.
func rawScore(c topology.Choice, n *published.Node, free []int) int64 {
	return 1 + int64(math.Round(c.BottleneckGBps))*lossScale + min(lostGBps(c, n, free), lossScale-1)
}

// lostGBps is the bandwidth between the chosen GPUs and the GPUs that stay
// free: connectivity the next pods on the node can no longer use. Taking
// one GPU of an idle NVSwitch node cuts seven 450 GB/s links; taking a PCIe
// GPU, or the orphan of a broken NVLink pair, cuts little.
func lostGBps(c topology.Choice, n *published.Node, free []int) int64 {
	var lost float64
	for _, g := range c.GPUs {
		for _, h := range free {
			if !slices.Contains(c.GPUs, h) {
				lost += n.Topo.Bandwidth(g, h)
			}
		}
	}
	return int64(math.Round(lost))
}

// ScoreExtensions normalizes the raw scores.
func (pl *NVLinkTopology) ScoreExtensions() fwk.ScoreExtensions { return pl }

// NormalizeScore turns raw scores into [0, 100]: bandwidth against the
// fastest set any node offers (all equal for one-GPU pods), plus the lost
// bandwidth against the most any node loses (less lost scores more).
func (pl *NVLinkTopology) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	var fastest, mostLost int64
	for _, s := range scores {
		if s.Score > 0 {
			fastest = max(fastest, (s.Score-1)/lossScale)
			mostLost = max(mostLost, (s.Score-1)%lossScale)
		}
	}
	for i := range scores {
		raw := scores[i].Score
		if raw <= 0 {
			scores[i].Score = 0
			continue
		}
		bw, lost := (raw-1)/lossScale, (raw-1)%lossScale
		bwScore := int64(bandwidthWeight)
		if fastest > 0 {
			bwScore = bandwidthWeight * bw / fastest
		}
		lossScore := leftoverWeight
		if mostLost > 0 {
			lossScore = leftoverWeight * (mostLost - lost) / mostLost
		}
		scores[i].Score = bwScore + lossScore
	}
	return nil
}
