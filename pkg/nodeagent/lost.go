package nodeagent

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// roster remembers every GPU the agent has known on its node, from the
// published status at start-up and every NVML read since, so that a GPU NVML
// loses (its handle fails, or the device count drops) is reported unhealthy
// instead of silently left out. An admin forgets a lost GPU by clearing its
// fault.
type roster struct {
	mu    sync.Mutex
	known map[string]topology.GPU
}

func newRoster() *roster { return &roster{known: map[string]topology.GPU{}} }

// restore learns the GPUs a previous run of the agent published.
func (r *roster) restore(devices []tesserav1alpha1.GPUDevice) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range devices {
		r.known[d.UUID] = topology.GPU{Index: int(d.Index), Identity: topology.Identity{
			UUID: d.UUID, Model: d.Model, MemoryMiB: d.MemoryMiB, PCIBusID: d.PCIBusID, NUMANode: int(d.NUMANode), MIGEnabled: d.MIGEnabled,
			Minor: minorOf(d),
		}}
	}
}

// minorOf is the published device minor, -1 where none was published.
func minorOf(d tesserav1alpha1.GPUDevice) int {
	if d.MinorNumber == nil {
		return -1
	}
	return int(*d.MinorNumber)
}

// forget drops the listed GPUs (or all for "all"); those NVML still reports
// are learnt again at the next read.
func (r *roster) forget(uuids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for uuid := range r.known {
		if slices.Contains(uuids, "all") || slices.Contains(uuids, uuid) {
			delete(r.known, uuid)
		}
	}
}

// complete learns the GPUs of t and returns t with every known GPU that NVML
// did not report added, unhealthy: at its last index, or, where another GPU
// now has that index (the GPUs after a vanished one move down), at the first
// index above all others. It also returns the lost GPUs' UUIDs, and the
// indexes below count (NVML's device count) that neither NVML nor the roster
// can name: GPUs whose handle failed before the agent ever read them.
func (r *roster) complete(t *topology.Topology, count int) (*topology.Topology, map[string]bool, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	present := map[string]bool{}
	taken := map[int]bool{}
	top := -1
	for _, g := range t.GPUs {
		present[g.UUID], taken[g.Index] = true, true
		top = max(top, g.Index)
		r.known[g.UUID] = topology.GPU{Index: g.Index, Identity: g.Identity}
	}
	var lost []topology.GPU
	for _, g := range r.known {
		if !present[g.UUID] {
			lost = append(lost, g)
		}
	}
	slices.SortFunc(lost, func(a, b topology.GPU) int { return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.UUID, b.UUID)) })
	for _, g := range lost {
		top = max(top, g.Index)
	}
	lostUUIDs := map[string]bool{}
	all := slices.Clone(t.GPUs)
	for _, g := range lost {
		if taken[g.Index] {
			top++
			g.Index = top
		}
		taken[g.Index], lostUUIDs[g.UUID] = true, true
		r.known[g.UUID] = g
		g.Healthy = false
		g.UnhealthyReason = "lost: NVML no longer reports this GPU"
		g.ActiveNVLinks, g.UncorrectableECC = 0, 0
		all = append(all, g)
	}
	var unreadable []int
	for i := range count {
		if !taken[i] {
			unreadable = append(unreadable, i)
		}
	}
	if len(lost) == 0 {
		return t, lostUUIDs, unreadable
	}
	slices.SortFunc(all, func(a, b topology.GPU) int { return cmp.Compare(a.Index, b.Index) })
	out := topology.New(all)
	position := make(map[string]int, len(all))
	for pos, g := range all {
		position[g.UUID] = pos
	}
	// Links between the GPUs NVML reported stay as read; a lost GPU's are
	// unknown (SYS), which no placement uses since it is unhealthy.
	for a := range t.GPUs {
		for b := a + 1; b < len(t.GPUs); b++ {
			out.SetLinkBandwidth(position[t.GPUs[a].UUID], position[t.GPUs[b].UUID], t.Link(a, b), t.Bandwidth(a, b))
		}
	}
	return out, lostUUIDs, unreadable
}

// unreadableFaults names the GPUs NVML counts but cannot read, for the Node
// condition.
func unreadableFaults(indexes []int) []string {
	out := make([]string, 0, len(indexes))
	for _, i := range indexes {
		out = append(out, fmt.Sprintf("GPU %d: unreadable by NVML and never identified", i))
	}
	return out
}
