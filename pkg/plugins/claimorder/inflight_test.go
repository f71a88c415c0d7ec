package claimorder

import (
	"context"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	"k8s.io/kubernetes/pkg/scheduler/util/assumecache"
	"k8s.io/utils/ptr"

	"tessera.dev/tessera/pkg/dra"
)

// shareClaim is a claim for a share of milli of a GPU, unallocated, as
// created from a template.
func shareClaim(name string) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{
		Namespace: "default", Name: name, UID: types.UID(name), ResourceVersion: "1"}}
}

// allocatedOnGPU0 is claim allocated milli of n1's gpu-0, as PreBind
// writes it.
func allocatedOnGPU0(claim *resourceapi.ResourceClaim, milli int64) *resourceapi.ResourceClaim {
	c := claim.DeepCopy()
	c.ResourceVersion = "2"
	c.Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
		Results: []resourceapi.DeviceRequestAllocationResult{{
			Request: "gpu", Driver: dra.DriverName, Pool: "n1", Device: "gpu-0",
			ShareID:          ptr.To(types.UID(claim.Name + "-share")),
			ConsumedCapacity: map[resourceapi.QualifiedName]resource.Quantity{dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)},
		}},
	}}
	return c
}

// upstreamTracker is kube-scheduler's own claim tracker, over an assume
// cache fed by hand, holding claim unallocated.
func upstreamTracker(t *testing.T, claim *resourceapi.ResourceClaim) (fwk.ResourceClaimTracker, *assumecache.AssumeCache) {
	t.Helper()
	claims := assumecache.NewAssumeCache(klog.Background(), nil, "resource claim", "", nil)
	assumecache.AddTestObject(claims, claim)
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	return dynamicresources.NewDRAManager(context.Background(), claims, nil, factory).ResourceClaims(), claims
}

// gpu0Milli is what state counts consumed of n1's gpu-0.
func gpu0Milli(t *testing.T, state *structured.AllocatedState) int64 {
	t.Helper()
	consumed, ok := state.AggregatedCapacity[structured.MakeDeviceID(dra.DriverName, "n1", "gpu-0")]
	if !ok {
		return 0
	}
	return consumed[dra.CapacityMilli].Value()
}

// inFlightAndAllocated puts the claim in flight with a share of 300 through
// tracker, then has it allocated in the cache, as PreBind does: the window
// in which upstream counts it twice.
func inFlightAndAllocated(t *testing.T, tracker fwk.ResourceClaimTracker, cache *assumecache.AssumeCache, claim *resourceapi.ResourceClaim) {
	t.Helper()
	allocated := allocatedOnGPU0(claim, 300)
	if err := tracker.SignalClaimPendingAllocation(claim.UID, allocated); err != nil {
		t.Fatal(err)
	}
	if err := cache.Assume(allocated); err != nil {
		t.Fatal(err)
	}
}

func gather(t *testing.T, tracker fwk.ResourceClaimTracker) *structured.AllocatedState {
	t.Helper()
	state, err := tracker.GatherAllocatedState()
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// If this fails, an upstream release stopped counting such a claim twice,
// and InFlightClaims may go.
func TestUpstreamCountsAClaimInFlightAndAllocatedTwice(t *testing.T) {
	claim := shareClaim("share")
	tracker, cache := upstreamTracker(t, claim)
	inFlightAndAllocated(t, tracker, cache, claim)
	if got := gpu0Milli(t, gather(t, tracker)); got != 600 {
		t.Errorf("upstream counts %d milli of gpu-0 taken by one claim of 300 in flight and allocated, want 600", got)
	}
	tracker.MaybeRemoveClaimPendingAllocation(claim.UID, true)
	if got := gpu0Milli(t, gather(t, tracker)); got != 300 {
		t.Errorf("upstream counts %d milli of gpu-0 once the claim is out of flight, want 300", got)
	}
}

// followed is upstream's tracker as DynamicResources gets it from the
// plugin; waits receives a value each time a gatherer starts to wait.
func followed(t *testing.T, claim *resourceapi.ResourceClaim) (tracker claimTracker, cache *assumecache.AssumeCache, waits chan struct{}) {
	t.Helper()
	upstream, cache := upstreamTracker(t, claim)
	inFlight := NewInFlightClaims()
	waits = make(chan struct{}, 10)
	inFlight.waiting = func() { waits <- struct{}{} }
	return claimTracker{ResourceClaimTracker: upstream, inFlight: inFlight}, cache, waits
}

func TestGatheringWaitsForAClaimCountedTwiceToLeaveFlight(t *testing.T) {
	claim := shareClaim("share")
	tracker, cache, waits := followed(t, claim)
	// Only the claim's leaving ends the wait (were it missed, the test
	// would hang until go test's timeout).
	tracker.inFlight.maxWait = time.Hour
	inFlightAndAllocated(t, tracker, cache, claim)
	type result struct {
		state *structured.AllocatedState
		err   error
	}
	gathered := make(chan result, 1)
	go func() {
		state, err := tracker.GatherAllocatedState()
		gathered <- result{state, err}
	}()
	select {
	case <-waits:
	case r := <-gathered:
		t.Fatalf("gathered the state (gpu-0 %d milli taken, err %v) without waiting for the claim counted twice", gpu0Milli(t, r.state), r.err)
	}
	tracker.MaybeRemoveClaimPendingAllocation(claim.UID, true) // PreBind's next step
	r := <-gathered
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := gpu0Milli(t, r.state); got != 300 {
		t.Errorf("gathered %d milli of gpu-0 taken by one claim of 300, want 300", got)
	}
}

func TestClaimInFlightNotYetAllocatedIsCountedWithoutWaiting(t *testing.T) {
	claim := shareClaim("share")
	tracker, _, waits := followed(t, claim)
	if err := tracker.SignalClaimPendingAllocation(claim.UID, allocatedOnGPU0(claim, 300)); err != nil {
		t.Fatal(err)
	}
	if got := gpu0Milli(t, gather(t, tracker)); got != 300 {
		t.Errorf("gathered %d milli of gpu-0 taken by one claim of 300 in flight, want 300", got)
	}
	if len(waits) != 0 {
		t.Error("the gatherer waited for a claim counted once")
	}
}

// A claim that stays counted twice (shared by a PodGroup whose other pods
// are still binding) is waited for once, then counted as upstream counts
// it: never fewer GPUs taken than upstream sees.
func TestClaimCountedTwiceTooLongIsWaitedForOnce(t *testing.T) {
	claim := shareClaim("share")
	tracker, cache, waits := followed(t, claim)
	tracker.inFlight.maxWait = time.Millisecond
	inFlightAndAllocated(t, tracker, cache, claim)
	for range 2 {
		if got := gpu0Milli(t, gather(t, tracker)); got != 600 {
			t.Errorf("gathered %d milli of gpu-0, want upstream's 600", got)
		}
	}
	if len(waits) != 1 {
		t.Errorf("the gatherers waited %d times for the claim, want once", len(waits))
	}
}
