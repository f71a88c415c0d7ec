package nodeagent

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// applicationXIDs are XIDs caused by the application, not the GPU (illegal
// memory access, GPU exception, watchdog, …): they never mark a GPU
// unhealthy. This is the list NVIDIA's device plugin skips.
var applicationXIDs = []uint64{13, 31, 43, 45, 68, 109}

// CriticalXID reports whether an XID means the GPU itself is faulty.
func CriticalXID(xid uint64) bool { return !slices.Contains(applicationXIDs, xid) }

type fault struct {
	reason string
	// kind says what clears the fault: NVML and Lost faults clear when NVML
	// stops reporting them, XID faults only when an admin clears them.
	kind tesserav1alpha1.GPUFaultKind
}

// faultTracker keeps each GPU's fault, keyed by UUID, across NVML reads and,
// restored from the published status, across restarts: a fault recovers
// only when NVML says it has cleared or an admin clears it.
type faultTracker struct {
	mu     sync.Mutex
	faults map[string]fault
}

func newFaultTracker() *faultTracker { return &faultTracker{faults: map[string]fault{}} }

// restore takes back the faults a previous run of the agent published. A
// fault without a kind (published by an agent that did not record kinds) is
// kept as sticky as an XID: a restart must never return a bad GPU to service.
func (f *faultTracker) restore(devices []tesserav1alpha1.GPUDevice) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range devices {
		if _, had := f.faults[d.UUID]; had || d.Healthy {
			continue // an XID seen since start-up is newer
		}
		kind := d.FaultKind
		if kind == "" {
			kind = tesserav1alpha1.GPUFaultXID
		}
		reason := d.Fault
		if reason == "" {
			reason = "fault published before the node agent restarted"
		}
		f.faults[d.UUID] = fault{reason: reason, kind: kind}
	}
}

// observe records the faults NVML reports now (lost holds the UUIDs of GPUs
// NVML no longer reports, put in t unhealthy), lifts NVML and Lost faults it
// no longer reports, and marks every faulty GPU of t unhealthy. It returns
// the GPUs whose fault state changed, for events.
func (f *faultTracker) observe(t *topology.Topology, lost map[string]bool) (raised, cleared []topology.GPU) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range t.GPUs {
		g := &t.GPUs[i]
		prev, had := f.faults[g.UUID]
		kind := tesserav1alpha1.GPUFaultNVML
		if lost[g.UUID] {
			kind = tesserav1alpha1.GPUFaultLost
		}
		switch {
		case !g.Healthy && (!had || prev.kind != tesserav1alpha1.GPUFaultXID && prev != (fault{g.UnhealthyReason, kind})):
			f.faults[g.UUID] = fault{reason: g.UnhealthyReason, kind: kind}
			if !had {
				raised = append(raised, *g)
			}
		case g.Healthy && had && prev.kind != tesserav1alpha1.GPUFaultXID:
			delete(f.faults, g.UUID)
			cleared = append(cleared, *g)
		case had:
			g.Healthy, g.UnhealthyReason = false, prev.reason
		}
	}
	return raised, cleared
}

// kind is the kind of the GPU's fault, "" for none.
func (f *faultTracker) kind(uuid string) tesserav1alpha1.GPUFaultKind {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults[uuid].kind
}

// recordXID marks the GPU faulty for a critical XID; it reports whether
// this is a new fault.
func (f *faultTracker) recordXID(uuid string, xid uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	prev, had := f.faults[uuid]
	if !had || prev.kind != tesserav1alpha1.GPUFaultXID {
		f.faults[uuid] = fault{reason: fmt.Sprintf("critical XID %d", xid), kind: tesserav1alpha1.GPUFaultXID}
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

// parseClearAnnotation lists the UUIDs of a clear-faults annotation.
func parseClearAnnotation(value string) []string {
	var uuids []string
	for _, u := range strings.Split(value, ",") {
		if u = strings.TrimSpace(u); u != "" {
			uuids = append(uuids, u)
		}
	}
	return uuids
}
