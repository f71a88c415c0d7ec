package nvlink

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/resourceclaim"
	fwk "k8s.io/kube-scheduler/framework"

	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// GPUs asked for and held through ResourceClaims of Tessera's DRA driver:
// the plugin chooses them like any other GPUs (the TesseraDynamicResources
// plugin makes the allocator take its choice) and counts what claims are
// allocated on each node, so that the two never hand out one GPU twice.

// claimReader reads a pod's ResourceClaims; in the scheduler it is the DRA
// claim tracker. It has the allocations written by PreBind; those still in
// flight before it are covered by this scheduler's reservations.
type claimReader interface {
	Get(namespace, name string) (*resourceapi.ResourceClaim, error)
}

// claimReaderOf is the scheduler's claim tracker, nil without DRA.
func claimReaderOf(handle fwk.Handle) claimReader {
	m := handle.SharedDRAManager()
	if m == nil {
		return nil
	}
	return m.ResourceClaims()
}

// podClaims returns the pod's claims that exist: its own, those made from
// its templates, and the one the scheduler made for its extended resources.
func podClaims(pod *v1.Pod, claims claimReader) []*resourceapi.ResourceClaim {
	if claims == nil {
		return nil
	}
	var names []string
	for i := range pod.Spec.ResourceClaims {
		if name, _, err := resourceclaim.Name(pod, &pod.Spec.ResourceClaims[i]); err == nil && name != nil {
			names = append(names, *name)
		}
	}
	if s := pod.Status.ExtendedResourceClaimStatus; s != nil && s.ResourceClaimName != "" {
		names = append(names, s.ResourceClaimName)
	}
	out := make([]*resourceapi.ResourceClaim, 0, len(names))
	for _, name := range names {
		if c, err := claims.Get(pod.Namespace, name); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// claimedGPUs is what the pod's unallocated claims ask of Tessera's GPUs:
// whole GPUs, or one share. Requests of other classes, and those the
// plugin cannot read as a count (allocationMode All, firstAvailable), are
// left to the allocator alone (docs/dra.md).
func claimedGPUs(claims []*resourceapi.ResourceClaim) (gpus int, shareMilli int64, err error) {
	shares := 0
	for _, c := range claims {
		if c.Status.Allocation != nil {
			continue // already held: counted on its node
		}
		for _, r := range c.Spec.Devices.Requests {
			e := r.Exactly
			if e == nil || e.DeviceClassName != dra.DeviceClassName || e.AllocationMode == resourceapi.DeviceAllocationModeAll {
				continue
			}
			count := max(int(e.Count), 1)
			milli := int64(topology.MilliGPU)
			if e.Capacity != nil {
				if q, ok := e.Capacity.Requests[dra.CapacityMilli]; ok {
					milli = q.Value()
				}
			}
			if milli >= topology.MilliGPU {
				gpus += count
				continue
			}
			if count > 1 {
				return 0, 0, fmt.Errorf("claim %s request %s: shares of %d GPUs: a share is of one GPU", c.Name, r.Name, count)
			}
			shares++
			shareMilli = milli
		}
	}
	if shares > 0 && (shares > 1 || gpus > 0) {
		return 0, 0, fmt.Errorf("claims %s: a share of one GPU comes with no other GPU", claimNames(claims))
	}
	return gpus, shareMilli, nil
}

func claimNames(claims []*resourceapi.ResourceClaim) string {
	names := make([]string, len(claims))
	for i, c := range claims {
		names[i] = c.Name
	}
	return strings.Join(names, ",")
}

// allocatedOn returns the parts of the node's Tessera GPUs that claims are
// allocated, skipping claims in seen (a claim shared by pods is counted
// once) and adding the others to it; false if none of the claims has any.
func allocatedOn(claims []*resourceapi.ResourceClaim, node string, seen sets.Set[types.UID]) ([]published.Holding, bool) {
	var held []published.Holding
	found := false
	for _, c := range claims {
		a := c.Status.Allocation
		if a == nil {
			continue
		}
		ours := false
		for _, r := range a.Devices.Results {
			if r.Driver != dra.DriverName || r.Pool != node {
				continue
			}
			ours = true
			index, ok := dra.DeviceIndex(r.Device)
			if !ok {
				continue
			}
			if !seen.Has(c.UID) {
				held = append(held, published.Holding{Index: index, Milli: consumedMilli(r)})
			}
		}
		if ours {
			found = true
			seen.Insert(c.UID)
		}
	}
	return held, found
}

// consumedMilli is the part of the GPU a result takes: the milli capacity
// it consumed, or all of it.
func consumedMilli(r resourceapi.DeviceRequestAllocationResult) int64 {
	if q, ok := r.ConsumedCapacity[dra.CapacityMilli]; ok {
		return min(q.Value(), topology.MilliGPU)
	}
	return topology.MilliGPU
}

// AllocatedGPUs returns what claims are allocated of the node's Tessera
// GPUs, one holding per GPU, by index; false if they hold none.
func AllocatedGPUs(claims []*resourceapi.ResourceClaim, node string) ([]published.Holding, bool) {
	held, ok := allocatedOn(claims, node, sets.New[types.UID]())
	if !ok {
		return nil, false
	}
	byIndex := map[int]int64{}
	for _, h := range held {
		byIndex[h.Index] = min(byIndex[h.Index]+h.Milli, topology.MilliGPU)
	}
	out := make([]published.Holding, 0, len(byIndex))
	for _, i := range slices.Sorted(maps.Keys(byIndex)) {
		out = append(out, published.Holding{Index: i, Milli: byIndex[i]})
	}
	return out, true
}
