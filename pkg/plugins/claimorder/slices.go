package claimorder

import (
	"slices"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/dra"
)

// withSlices is the framework handle DynamicResources gets: the profile's,
// with the ResourceSlices it lists replaced by the cycle's copy, and its
// claim tracker followed (see InFlightClaims).
type withSlices struct {
	fwk.Handle
	dra draManager
}

func (h withSlices) SharedDRAManager() fwk.SharedDRAManager { return h.dra }

type draManager struct {
	fwk.SharedDRAManager
	slices   *cycleSlices
	inFlight *InFlightClaims
}

func (m draManager) ResourceSlices() fwk.ResourceSliceLister { return m.slices }

func (m draManager) ResourceClaims() fwk.ResourceClaimTracker {
	return claimTracker{ResourceClaimTracker: m.SharedDRAManager.ResourceClaims(), inFlight: m.inFlight}
}

// cycleSlices lists the scheduler's ResourceSlices for DynamicResources.
// Armed by PreFilter, the next list copies each node's slices of Tessera's
// driver, so that the cycle can reorder their devices, and keeps the copy
// for PreFilter to hand to the cycle; other lists pass through.
type cycleSlices struct {
	upstream fwk.ResourceSliceLister
	mu       sync.Mutex
	armed    bool
	listed   *sliceView
}

func (c *cycleSlices) ListWithDeviceTaintRules() ([]*resourceapi.ResourceSlice, error) {
	all, err := c.upstream.ListWithDeviceTaintRules()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return all, nil
	}
	c.armed = false
	c.listed = newSliceView(all)
	return c.listed.all, nil
}

// arm makes the next list the cycle's.
func (c *cycleSlices) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.listed = true, nil
}

// take returns the view the armed list made, once, and disarms.
func (c *cycleSlices) take() *sliceView {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.listed
	c.armed, c.listed = false, nil
	return v
}

// sliceView is one cycle's ResourceSlices as the allocator sees them. The
// slices of Tessera's driver are shallow copies, one per node: the
// allocator reads a node's slices only when it allocates on that node, and
// the framework filters each node on one goroutine, so Filter reorders a
// node's copy just before the allocator reads it.
type sliceView struct {
	all []*resourceapi.ResourceSlice
	// byNode are the node's copies, with their devices as listed.
	byNode map[string][]nodeSlice
}

type nodeSlice struct {
	slice  *resourceapi.ResourceSlice
	listed []resourceapi.Device
}

// Clone shares the view: a clone of the cycle (preemption's dry runs)
// filters the same nodes, and each Filter orders a node afresh.
func (v *sliceView) Clone() fwk.StateData { return v }

func newSliceView(in []*resourceapi.ResourceSlice) *sliceView {
	v := &sliceView{all: make([]*resourceapi.ResourceSlice, len(in)), byNode: map[string][]nodeSlice{}}
	for i, s := range in {
		if !isTessera(s) {
			v.all[i] = s
			continue
		}
		c := *s
		v.all[i] = &c
		v.byNode[*s.Spec.NodeName] = append(v.byNode[*s.Spec.NodeName], nodeSlice{slice: &c, listed: s.Spec.Devices})
	}
	return v
}

// putFirst lists the devices of the GPUs with the given NVML indexes first
// in each of the node's slices, in that order, and the others after them
// as published; with none, as published.
func (v *sliceView) putFirst(node string, indexes []int) {
	for _, ns := range v.byNode[node] {
		ns.slice.Spec.Devices = firstOf(ns.listed, indexes)
	}
}

// firstOf returns devices with those of the given NVML indexes first.
func firstOf(devices []resourceapi.Device, indexes []int) []resourceapi.Device {
	rank := func(d resourceapi.Device) int {
		i, ok := dra.DeviceIndex(d.Name)
		if !ok {
			return len(indexes)
		}
		if r := slices.Index(indexes, i); r >= 0 {
			return r
		}
		return len(indexes)
	}
	out := slices.Clone(devices)
	slices.SortStableFunc(out, func(a, b resourceapi.Device) int { return rank(a) - rank(b) })
	return out
}

// isTessera reports whether a slice is one node's slice of Tessera's
// driver: the slices the plugin reorders. (A slice with shared counters is
// read by the allocator for every node: it is left as it is.)
func isTessera(s *resourceapi.ResourceSlice) bool {
	return s.Spec.Driver == dra.DriverName && s.Spec.NodeName != nil && *s.Spec.NodeName != "" && len(s.Spec.SharedCounters) == 0
}
