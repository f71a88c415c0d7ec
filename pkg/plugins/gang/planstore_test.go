package gang

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

func testPlan(deadline time.Time, uids ...types.UID) *plan {
	p := &plan{nodes: map[types.UID]string{}, pods: map[types.UID]*v1.Pod{}, reserved: sets.New[types.UID](), bound: sets.New[types.UID](), deadline: deadline}
	for _, uid := range uids {
		p.nodes[uid] = "n"
		p.pods[uid] = testPod(string(uid), "", 0, nil)
	}
	return p
}

func TestPlanStoreHoldsNothingForGoneGangs(t *testing.T) {
	s := newPlanStore()
	live, expired, emptied := gangKey{"ns", "live"}, gangKey{"ns", "expired"}, gangKey{"ns", "emptied"}
	s.set(live, testPlan(t0.Add(time.Minute), "l0", "l1"))
	s.set(expired, testPlan(t0.Add(-time.Second), "e0"))
	s.set(emptied, testPlan(t0.Add(time.Minute), "d0"))
	s.markReserved(live, "l0")

	s.dropMember(emptied, "d0")
	if s.get(emptied) != nil {
		t.Error("a plan whose last member was deleted is still held")
	}
	held := s.heldAside(gangKey{"ns", "other"}, t0)
	if len(held) != 1 || held[0].UID != "l1" {
		t.Errorf("held aside %v, want only the live gang's unreserved member", held)
	}
	if s.get(expired) != nil {
		t.Error("a plan past its deadline with nothing reserved is still held")
	}

	s.recordFailure(live, 1, "no room")
	s.recordFailure(preemptionKey(live), 1, "no victims")
	s.forgetGang(live)
	if _, failed := s.failed(live, 1); failed || s.get(live) != nil {
		t.Error("a deleted gang's plan or failure is kept")
	}
	if _, failed := s.failed(preemptionKey(live), 1); failed {
		t.Error("a deleted gang's failed preemption is kept")
	}
}

func TestDropIfKeepsANewerPlan(t *testing.T) {
	s := newPlanStore()
	key := gangKey{"ns", "g"}
	old, newer := testPlan(t0, "a"), testPlan(t0, "a")
	s.set(key, newer)
	s.dropIf(key, old)
	if s.get(key) != newer {
		t.Error("dropIf dropped a plan made since")
	}
	s.dropIf(key, newer)
	if s.get(key) != nil {
		t.Error("dropIf kept the plan it was given")
	}
}
