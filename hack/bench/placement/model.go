package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"

	"tessera.dev/tessera/pkg/topology"
)

// The all-reduce cost model. A ring all-reduce of S bytes over n GPUs moves
// 2(n-1)/n·S through every hop of the ring, so its time is bounded by the
// slowest hop: the job's bus bandwidth is the minimum over the links its
// ring crosses, and its slowdown against the ideal placement is
// idealBusBW / busBW. The figures, per direction:
//   - between GPUs of one node: the pair bandwidth the node agent publishes
//     (pkg/topology/bandwidth.go: 25 GB/s per NVLink 3/4 lane, so 450 GB/s
//     through an H100's 18 NVSwitch lanes, 300 GB/s over an H100 NVL
//     bridge; PCIe Gen4/Gen5 x16 at about 80 % of raw, discounted for each
//     bridge or socket crossed);
//   - between nodes: 50 GB/s per GPU where each GPU has its own 400 Gb/s
//     NDR InfiniBand NIC (DGX H100: 8 ConnectX-7; H100 NVL servers as
//     built for training), 25 GB/s per GPU on PCIe inference servers (one
//     400 Gb/s NIC per two GPUs, an assumption); NCCL's all_reduce_perf
//     reaches close to line rate on such rails;
//   - between racks: halved, for a 2:1 oversubscribed spine (an assumption
//     typical of GPU clusters that are not fully non-blocking).
const (
	nicGBpsPerGPU      = 50.0
	pcieNICGBpsPerGPU  = 25.0
	spineOversubscribe = 2.0
)

// nicGBps is what one GPU of a node of shape can send to other nodes.
func nicGBps(shape string) float64 {
	switch shape {
	case "dgx-h100", "h100-nvl-pairs":
		return nicGBpsPerGPU
	default:
		return pcieNICGBpsPerGPU
	}
}

// busBandwidth estimates the ring all-reduce bus bandwidth of a placement
// in GB/s; +Inf for a single GPU (no all-reduce).
func busBandwidth(p []podPlacement) float64 {
	bw := math.Inf(1)
	nodes, racks := map[string]bool{}, map[string]bool{}
	for _, pp := range p {
		nodes[pp.node.name] = true
		racks[pp.node.rack] = true
		if len(pp.gpus) > 1 {
			c := pp.node.topo.Bottleneck(pp.gpus)
			bw = min(bw, c)
		}
	}
	if len(nodes) > 1 {
		for _, pp := range p {
			inter := nicGBps(pp.node.shape)
			if len(racks) > 1 {
				inter /= spineOversubscribe
			}
			bw = min(bw, inter)
		}
	}
	return bw
}

// idealBusBandwidth is the bus bandwidth of the best placement of a job of
// gpus GPUs on an empty cluster of these shapes.
func idealBusBandwidth(gpus int, shapes map[string]*topology.Topology) float64 {
	if gpus <= 1 {
		return math.Inf(1)
	}
	best := 0.0
	for name, t := range shapes {
		if gpus <= len(t.GPUs) {
			all := make([]int, len(t.GPUs))
			for i := range all {
				all[i] = i
			}
			c, _ := t.BestSet(all, gpus)
			best = max(best, c.BottleneckGBps)
			continue
		}
		// A multi-node job in one rack of this shape: its nodes' best
		// full sets, joined by the NICs.
		all := make([]int, len(t.GPUs))
		for i := range all {
			all[i] = i
		}
		c, _ := t.BestSet(all, len(t.GPUs))
		best = max(best, min(c.BottleneckGBps, nicGBps(name)))
	}
	return best
}

// jobMix draws job sizes (GPUs) from a trace's num_gpu column.
type jobMix struct{ sizes []int }

// readMix reads an ITP/ElasticFlow trace (job_id,submission_time,duration,
// num_gpu), keeping jobs of 1 to maxGPUs GPUs.
func readMix(path string, maxGPUs int) (*jobMix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	col := slices.Index(header, "num_gpu")
	if col < 0 {
		return nil, fmt.Errorf("%s: no num_gpu column in %v", path, header)
	}
	m := &jobMix{}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		n, err := strconv.Atoi(rec[col])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: num_gpu %q: %w", path, line, rec[col], err)
		}
		if n >= 1 && n <= maxGPUs {
			m.sizes = append(m.sizes, n)
		}
	}
	if len(m.sizes) == 0 {
		return nil, fmt.Errorf("%s: no jobs of 1 to %d GPUs", path, maxGPUs)
	}
	return m, nil
}

func (m *jobMix) draw(rng *rand.Rand) int { return m.sizes[rng.IntN(len(m.sizes))] }
