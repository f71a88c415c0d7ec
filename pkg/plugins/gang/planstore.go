package gang

import (
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// plan is a gang's placement: a node for each planned member.
type plan struct {
	nodes map[types.UID]string
	// pods are the planned members as they would run, for other gangs'
	// simulations to count until they are reserved (then the scheduler's
	// snapshot counts them).
	pods map[types.UID]*v1.Pod
	// reserved members hold their node in the scheduler's cache.
	reserved sets.Set[types.UID]
	// bound members have been bound since the plan was made; boundBefore
	// were bound already when it was made.
	bound       sets.Set[types.UID]
	boundBefore int
	created     time.Time
	deadline    time.Time
	// quorumAt is when the gang's last needed member was seen schedulable.
	quorumAt time.Time
	// victims are the pods a preempting plan evicts to make its room; the
	// plan holds until they are gone.
	victims sets.Set[types.UID]
}

// planStore holds the gangs' live plans and failed planning attempts.
type planStore struct {
	mu       sync.Mutex
	plans    map[gangKey]*plan
	failures map[gangKey]failure
}

// failure is a planning attempt that found no placement, remembered for the
// cluster state (snapshot fingerprint) it was made in.
type failure struct {
	fingerprint int64
	message     string
}

func newPlanStore() *planStore {
	return &planStore{plans: map[gangKey]*plan{}, failures: map[gangKey]failure{}}
}

func (s *planStore) get(key gangKey) *plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.plans[key]
}

func (s *planStore) set(key gangKey, p *plan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.plans[key] = p
	delete(s.failures, key)
}

func (s *planStore) drop(key gangKey) *plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.plans[key]
	delete(s.plans, key)
	return p
}

// dropIf drops the gang's plan if it is still p (not replaced meanwhile).
func (s *planStore) dropIf(key gangKey, p *plan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plans[key] == p {
		delete(s.plans, key)
	}
}

func (s *planStore) markReserved(key gangKey, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.plans[key]; p != nil {
		if _, planned := p.nodes[uid]; planned {
			p.reserved.Insert(uid)
		}
	}
}

// markBound records a bound member and returns the plan with the number of
// the gang's members bound in all.
func (s *planStore) markBound(key gangKey, uid types.UID) (*plan, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.plans[key]
	if p == nil {
		return nil, 0
	}
	p.bound.Insert(uid)
	return p, p.boundBefore + p.bound.Len()
}

func (s *planStore) reserved(key gangKey, uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.plans[key]
	return p != nil && p.reserved.Has(uid)
}

// heldAside returns the planned members of every other gang that are not
// reserved yet: capacity promised to them. A plan past its deadline with no
// member reserved promises nothing any more (its gang is not being placed)
// and is dropped.
func (s *planStore) heldAside(except gangKey, now time.Time) []*v1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pods []*v1.Pod
	for key, p := range s.plans {
		if key == except {
			continue
		}
		if p.reserved.Len() == 0 && !now.Before(p.deadline) {
			delete(s.plans, key)
			continue
		}
		for uid, pod := range p.pods {
			if !p.reserved.Has(uid) {
				pods = append(pods, pod)
			}
		}
	}
	return pods
}

func (s *planStore) failed(key gangKey, fingerprint int64) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.failures[key]
	return f.message, ok && f.fingerprint == fingerprint
}

func (s *planStore) recordFailure(key gangKey, fingerprint int64, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[key] = failure{fingerprint: fingerprint, message: message}
}

func (s *planStore) forget(key gangKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.plans, key)
	delete(s.failures, key)
}

// forgetGang drops everything kept for a gang that is gone: its plan, its
// failed plan and its failed preemption.
func (s *planStore) forgetGang(key gangKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.plans, key)
	delete(s.failures, key)
	delete(s.failures, preemptionKey(key))
}

// forgetFailure drops a remembered failure (of a lone pod's preemption,
// once the pod is gone).
func (s *planStore) forgetFailure(key gangKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.failures, key)
}

// dropMember takes a deleted member out of its gang's plan, so that no
// capacity stays held aside for it; a plan left with no member goes.
func (s *planStore) dropMember(key gangKey, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.plans[key]
	if p == nil {
		return
	}
	delete(p.nodes, uid)
	delete(p.pods, uid)
	p.reserved.Delete(uid)
	if len(p.nodes) == 0 {
		delete(s.plans, key)
	}
}
