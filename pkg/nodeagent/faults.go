package nodeagent

import (
	"fmt"
	"slices"
	"sync"

	"tessera.dev/tessera/pkg/topology"
)

// applicationXIDs are XIDs caused by the application, not the GPU (illegal
// memory access, GPU exception, watchdog, …): they never mark a GPU
// unhealthy. This is the list NVIDIA's device plugin skips.
var applicationXIDs = []uint64{13, 31, 43, 45, 68, 109}

// CriticalXID reports whether an XID means the GPU itself is faulty.
func CriticalXID(xid uint64) bool { return !slices.Contains(applicationXIDs, xid) }

type faultSource int

const (
	// faultNVML is a fault NVML reports on every read (an uncorrectable ECC
	// count, unreadable health); it clears when NVML stops reporting it.
	faultNVML faultSource = iota
	// faultXID is an XID event: NVML never says it cleared, so it lasts
	// until an admin clears it.
	faultXID
)

type fault struct {
	reason string
	source faultSource
}

// faultTracker keeps each GPU's fault, keyed by UUID, across NVML reads:
// a fault recovers only when NVML says it has cleared or an admin clears it.
type faultTracker struct {
	mu     sync.Mutex
	faults map[string]fault
}

func newFaultTracker() *faultTracker { return &faultTracker{faults: map[string]fault{}} }

// observe records the faults NVML reports now, lifts NVML faults it no
// longer reports, and marks every faulty GPU of t unhealthy. It returns the
// GPUs whose fault state changed, for events.
func (f *faultTracker) observe(t *topology.Topology) (raised, cleared []topology.GPU) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range t.GPUs {
		g := &t.GPUs[i]
		prev, had := f.faults[g.UUID]
		switch {
		case !g.Healthy && (!had || prev.source == faultNVML && prev.reason != g.UnhealthyReason):
			f.faults[g.UUID] = fault{reason: g.UnhealthyReason, source: faultNVML}
			if !had {
				raised = append(raised, *g)
			}
		case g.Healthy && had && prev.source == faultNVML:
			delete(f.faults, g.UUID)
			cleared = append(cleared, *g)
		case had:
			g.Healthy, g.UnhealthyReason = false, prev.reason
		}
	}
	return raised, cleared
}

// recordXID marks the GPU faulty for a critical XID; it reports whether
// this is a new fault.
func (f *faultTracker) recordXID(uuid string, xid uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, had := f.faults[uuid]
	if !had || f.faults[uuid].source == faultNVML {
		f.faults[uuid] = fault{reason: fmt.Sprintf("critical XID %d", xid), source: faultXID}
	}
	return !had
}

// clear lifts the faults of the listed UUIDs, or of every GPU for "all",
// and returns the UUIDs cleared.
func (f *faultTracker) clear(uuids []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cleared []string
	for uuid := range f.faults {
		if slices.Contains(uuids, "all") || slices.Contains(uuids, uuid) {
			delete(f.faults, uuid)
			cleared = append(cleared, uuid)
		}
	}
	slices.Sort(cleared)
	return cleared
}
