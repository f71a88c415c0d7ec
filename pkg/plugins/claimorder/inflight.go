package claimorder

import (
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/structured"
	fwk "k8s.io/kube-scheduler/framework"
)

// The scheduler's claim tracker (kube-scheduler 1.36) counts a claim's
// consumed capacity twice while the claim is both allocated in its cache and
// still in flight: GatherAllocatedState adds the in-flight claims'
// capacity to the cache's without asking whether a claim is in both. That
// is so from the moment DynamicResources' PreBind has the allocation in the
// cache (its own write assumed, or the informer's copy of it) until it
// drops the claim from in flight, a moment later. Every Tessera GPU allows
// multiple allocations, so it is counted by capacity: a share's GPU then
// looks fuller than it is, and the allocator takes another GPU than
// Tessera chose, or finds the node full.
// TestUpstreamCountsAClaimInFlightAndAllocatedTwice pins the upstream
// behaviour.
//
// So DynamicResources gathers the allocated state only while no claim that
// this scheduler's TesseraDynamicResources plugins put in flight is in that
// window: the gatherer waits for it to close. It never changes the state
// it gathers, so it can only be as conservative as upstream, never less.
// A claim that stays in the window longer than maxDoubleCount is waited
// for once, then taken as upstream counts it: at worst a share fewer free.
// (PreBind drops a claim from flight once its allocation is assumed; one
// whose assume failed and that a PodGroup shares stays until its last pod
// is done.) Claims for extended resources are not followed: they are in
// flight under a stand-in name and UID, and hold whole GPUs, which a second
// count leaves as full as one. NodeResourcesFit's scoring gathers the state
// through its own handle, as upstream counts it.

// maxDoubleCount is how long a gatherer waits for one claim to leave the
// window. Upstream's PreBind closes it within microseconds of opening it,
// unless the binding goroutine is starved of CPU.
const maxDoubleCount = 100 * time.Millisecond

// InFlightClaims are the claims this scheduler's TesseraDynamicResources
// plugins have put in flight and not seen leave it. Every profile shares
// one, as they share the scheduler's claim tracker.
type InFlightClaims struct {
	mu     sync.Mutex
	claims map[types.UID]*inFlightClaim
	// left is closed when a claim leaves, then replaced.
	left    chan struct{}
	maxWait time.Duration
	// waiting, if set, is called whenever a gatherer starts to wait.
	waiting func()
}

type inFlightClaim struct {
	name types.NamespacedName
	// countedTwice is when the claim was first seen in the window.
	countedTwice time.Time
}

// NewInFlightClaims returns an empty set.
func NewInFlightClaims() *InFlightClaims {
	return &InFlightClaims{claims: map[types.UID]*inFlightClaim{}, left: make(chan struct{}), maxWait: maxDoubleCount}
}

// add follows the claim, anew if it was followed: a claim put in flight
// again (by another pod sharing it, or after it left and before settle
// saw that) may be counted twice again.
func (f *InFlightClaims) add(uid types.UID, claim *resourceapi.ResourceClaim) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims[uid] = &inFlightClaim{name: types.NamespacedName{Namespace: claim.Namespace, Name: claim.Name}}
}

// settle forgets the claim if the tracker has it in flight no more.
func (f *InFlightClaims) settle(uid types.UID, tracker fwk.ResourceClaimTracker) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.claims[uid]; ok && tracker.GetPendingAllocation(uid) == nil {
		f.forgetLocked(uid)
	}
}

func (f *InFlightClaims) forgetLocked(uid types.UID) {
	delete(f.claims, uid)
	close(f.left)
	f.left = make(chan struct{})
}

// countedTwice reports whether the tracker now counts a claim in flight
// twice, how long until the first such claim is waited for no more, and a
// channel closed when a claim leaves. Claims that left through another
// path (a profile without this plugin) are forgotten.
func (f *InFlightClaims) countedTwice(tracker fwk.ResourceClaimTracker, now time.Time) (left <-chan struct{}, wait time.Duration, twice bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for uid, c := range f.claims {
		if tracker.GetPendingAllocation(uid) == nil {
			f.forgetLocked(uid)
			continue
		}
		cached, err := tracker.Get(c.name.Namespace, c.name.Name)
		// A claim for extended resources: see above.
		if err != nil || cached.UID != uid || cached.Status.Allocation == nil {
			continue
		}
		if c.countedTwice.IsZero() {
			c.countedTwice = now
		}
		if remaining := f.maxWait - now.Sub(c.countedTwice); remaining > 0 && (!twice || remaining < wait) {
			wait, twice = remaining, true
		}
	}
	return f.left, wait, twice
}

// claimTracker is the scheduler's claim tracker as DynamicResources gets
// it: claims it puts in flight are followed, and the allocated state is
// gathered when none of them is counted twice.
type claimTracker struct {
	fwk.ResourceClaimTracker
	inFlight *InFlightClaims
}

func (t claimTracker) SignalClaimPendingAllocation(uid types.UID, allocated *resourceapi.ResourceClaim) error {
	if err := t.ResourceClaimTracker.SignalClaimPendingAllocation(uid, allocated); err != nil {
		return err
	}
	t.inFlight.add(uid, allocated)
	return nil
}

func (t claimTracker) MaybeRemoveClaimPendingAllocation(uid types.UID, forceRemove bool) bool {
	deleted := t.ResourceClaimTracker.MaybeRemoveClaimPendingAllocation(uid, forceRemove)
	t.inFlight.settle(uid, t.ResourceClaimTracker)
	return deleted
}

// GatherAllocatedState is the tracker's, gathered when no claim in flight
// is counted twice (checked before and after, as a claim can enter the
// window during the gathering).
func (t claimTracker) GatherAllocatedState() (*structured.AllocatedState, error) {
	for {
		left, wait, twice := t.inFlight.countedTwice(t.ResourceClaimTracker, time.Now())
		if !twice {
			state, err := t.ResourceClaimTracker.GatherAllocatedState()
			if err != nil {
				return state, err
			}
			if left, wait, twice = t.inFlight.countedTwice(t.ResourceClaimTracker, time.Now()); !twice {
				return state, nil
			}
		}
		if f := t.inFlight.waiting; f != nil {
			f()
		}
		select {
		case <-left:
		case <-time.After(wait):
		}
	}
}
