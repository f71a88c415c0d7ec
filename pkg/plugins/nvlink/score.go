package nvlink

import (
	"context"
	"math"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/topology"
)

// Score weights: how fast the pod's own GPUs talk matters most; how well
// the GPUs left free stay connected breaks ties between equally good sets.
const (
	bandwidthWeight = 70
	leftoverWeight  = fwk.MaxScore - bandwidthWeight
	// permille is the raw leftover resolution.
	permille = 1000
)

// Score ranks the node by the best GPU set it offers the pod. The raw score
// packs two numbers, normalized across nodes in NormalizeScore: the set's
// bottleneck bandwidth in GB/s, and the leftover quality in permille. A node
// without a usable topology scores 0.
func (pl *NVLinkTopology) Score(_ context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.NodeInfo) (int64, *fwk.Status) {
	req, err := readState(state)
	if err != nil {
		return 0, fwk.AsStatus(err)
	}
	n, _ := pl.usable(info.Node().Name, req.now)
	if n == nil {
		return 0, nil
	}
	free, c, ok := n.bestSet(info, pl.reserved, req.request)
	if !ok {
		return 0, nil
	}
	return rawScore(c, n.gpus, free), nil
}

// rawScore encodes a choice: 1 + bottleneck GB/s × 1000 + leftover ‰.
func rawScore(c topology.Choice, n *nodeGPUs, free []int) int64 {
	return 1 + int64(math.Round(c.BottleneckGBps))*permille + leftoverPermille(c, n, free)
}

// leftoverPermille is the mean bandwidth between the GPUs a choice leaves
// free, against the node's fastest pair: 1000 when they all stay as well
// connected as the node allows (or at most one is left).
func leftoverPermille(c topology.Choice, n *nodeGPUs, free []int) int64 {
	left := len(free) - len(c.GPUs)
	if left <= 1 || n.fastestPairGBps <= 0 {
		return permille
	}
	pairs := float64(left*(left-1)) / 2
	q := c.LeftoverGBps / pairs / n.fastestPairGBps
	return int64(math.Round(min(q, 1) * permille))
}

// ScoreExtensions normalizes the raw scores.
func (pl *NVLinkTopology) ScoreExtensions() fwk.ScoreExtensions { return pl }

// NormalizeScore turns raw scores into [0, 100]: bandwidth against the
// fastest set any node offers (all equal for one-GPU pods), plus leftover.
func (pl *NVLinkTopology) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	var fastest int64
	for _, s := range scores {
		if s.Score > 0 {
			fastest = max(fastest, (s.Score-1)/permille)
		}
	}
	for i := range scores {
		raw := scores[i].Score
		if raw <= 0 {
			scores[i].Score = 0
			continue
		}
		bw, left := (raw-1)/permille, (raw-1)%permille
		bwScore := int64(bandwidthWeight)
		if fastest > 0 {
			bwScore = bandwidthWeight * bw / fastest
		}
		scores[i].Score = bwScore + leftoverWeight*left/permille
	}
	return nil
}
