package gang

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Defect 1: a member pinned to a node where it no longer fits re-plans the
// gang in the same cycle instead of failing Filter there.
func TestPreFilterRePlansWhenThePlannedNodeNoLongerFits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(h *harness, node string)
	}{
		{name: "another scheduler's pod took the room", spoil: func(h *harness, node string) {
			h.running(h.pod("intruder", "", 8, 0), node)
		}},
		{name: "the node was cordoned", spoil: func(h *harness, node string) { h.cordon(node) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.node("a")
			h.node("b")
			h.podGroup("g", 2)
			m0, m1 := h.pod("g-0", "g", 8, 0), h.pod("g-1", "g", 8, 0)
			h.planned(m0)
			planned := h.gang.plans.get(gangKey{"ns", "g"}).nodes[m1.UID]

			tc.spoil(h, planned)
			h.node("c")
			if got := h.planned(m1); got == planned {
				t.Errorf("g-1 still sent to %s, where it no longer fits", planned)
			}
		})
	}
}

// Defect 1: a plan whose members are all deleted holds nothing aside.
func TestPlanOfDeletedMembersHoldsNothing(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("g", 1)
	m := h.pod("g-0", "g", 8, 0)
	h.planned(m)
	h.gang.plans.dropMember(gangKey{"ns", "g"}, m.UID) // what the pod delete handler does
	if held := h.gang.plans.heldAside(gangKey{"ns", "other"}, h.clock.Now()); len(held) != 0 {
		t.Errorf("held aside %d pods of a gang with no members", len(held))
	}
}

// Defect 2: nothing is evicted while the preemptor fits without victims.
func TestPostFilterEvictsNothingWhenAVictimFreePlacementExists(t *testing.T) {
	h := newHarness(t)
	h.node("full")
	h.node("free")
	h.running(h.pod("low", "", 8, 0), "full")
	high := h.pod("high", "", 8, 1000)
	result, status := h.postFilter(high)
	if result != nil || status.Code() != fwk.Unschedulable || !strings.Contains(status.Message(), "without evicting") {
		t.Errorf("PostFilter = %v, %v; want no preemption", result, status)
	}
	if got := h.deleted(0); got.Len() != 0 {
		t.Errorf("evicted %v with a free node", got.UnsortedList())
	}
}

// Defect 2: PreemptionPolicy Never preempts nobody.
func TestPostFilterHonoursPreemptionPolicyNever(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.running(h.pod("low", "", 8, 0), "a")
	high := h.pod("high", "", 8, 1000)
	high.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
	if _, status := h.postFilter(high); !strings.Contains(status.Message(), "preemptionPolicy is Never") {
		t.Errorf("PostFilter = %v, want not eligible", status)
	}
	if got := h.deleted(0); got.Len() != 0 {
		t.Errorf("evicted %v for a pod that never preempts", got.UnsortedList())
	}
}

// Defect 2: victims are chosen around PodDisruptionBudgets, the preemptor
// is nominated to the victim's node, and the victim is evicted (after
// PostFilter returns).
func TestPostFilterNominatesAndSparesPDBProtectedPods(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	// Budget-protected pods sort first (lower priority) and would be the
	// cheapest victims.
	protected := h.running(h.pod("protected", "", 8, 0), "a")
	protected.Labels["app"] = "db"
	h.running(h.pod("other", "", 8, 10), "b")
	if err := h.pdbs.Add(&policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}); err != nil {
		t.Fatal(err)
	}
	result, status := h.postFilter(h.pod("high", "", 8, 1000))
	if status.Code() != fwk.Unschedulable || result == nil || result.NominatingInfo == nil || result.NominatedNodeName != "b" {
		t.Fatalf("PostFilter = %+v, %v; want nominated to b", result, status)
	}
	if got := h.deleted(1); !got.Equal(setOf("other")) {
		t.Errorf("evicted %v, want only other", got.UnsortedList())
	}
}

// Defect 2: a whole gang is the victim, and the preemptor's own gang plan
// holds its room until the victims are gone.
func TestPostFilterEvictsAWholeGangAndHoldsTheRoom(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	h.podGroup("low", 2)
	h.running(h.pod("low-0", "low", 8, 0), "a")
	h.running(h.pod("low-1", "low", 8, 0), "b")
	h.podGroup("high", 1)
	high := h.pod("high-0", "high", 8, 1000)
	if _, status := h.postFilter(high); !strings.Contains(status.Message(), "preempting gang ns/low") {
		t.Fatalf("PostFilter = %v", status)
	}
	if got := h.deleted(2); !got.Equal(setOf("low-0", "low-1")) {
		t.Errorf("evicted %v, want the whole low gang", got.UnsortedList())
	}
	p := h.gang.plans.get(gangKey{"ns", "high"})
	if p == nil || p.victims.Len() != 2 {
		t.Fatalf("preempting plan = %+v, want one with the two victims", p)
	}
	// The victims are still terminating: the member keeps its node.
	node := h.planned(high)
	if node != p.nodes[high.UID] {
		t.Errorf("member sent to %s, want its preempting plan's %s", node, p.nodes[high.UID])
	}
}

// A gang waiting at Permit holds GPUs it does not use yet: a preemptor
// of higher priority takes them by rejecting it there, and evicts no
// running pod while that makes room.
func TestPostFilterRejectsAWaitingGangBeforeEvictingARunningPod(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	// A lower priority than the waiting gang's: by priority alone it
	// would go first.
	h.running(h.pod("lone-low", "", 8, -5), "b")
	h.podGroup("w", 2)
	w0 := h.waiting(h.pod("w-0", "w", 8, 0), "a")
	high := h.pod("high", "", 8, 1000)
	result, status := h.postFilter(high)
	if msg := status.Message(); !strings.Contains(msg, "preempting gang ns/w for") || strings.Contains(msg, "lone-low") {
		t.Fatalf("PostFilter = %v, want the waiting gang preempted alone", status)
	}
	if result == nil || result.NominatedNodeName != "a" {
		t.Errorf("nominated %+v, want node a", result)
	}
	if st := h.fw.WaitOnPermit(h.ctx, w0); st.IsSuccess() || !strings.Contains(st.Message(), "preempted at Permit") {
		t.Errorf("waiting member's Permit = %v, want rejected as preempted", st)
	}
	if got := h.deleted(0); got.Len() != 0 {
		t.Errorf("deleted %v, want no pod deleted", got.UnsortedList())
	}
}

// A member of a gang chosen as waiting that was allowed a moment ago
// binds: it is not deleted, since the gang was chosen without its
// disruption budgets.
func TestEvictDeletesNoMemberOfAWaitingGangThatBinds(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("w", 2)
	w0 := h.waiting(h.pod("w-0", "w", 8, 0), "a")
	h.fw.GetWaitingPod(w0.UID).Allow(Name)
	h.gang.evict(klog.Background(), h.pod("high", "", 8, 1000), gangKey{"ns", "pod:high"},
		[]victimGroup{{name: "gang ns/w", pods: []*v1.Pod{w0}, waiting: true}})
	if h.gang.shared.evictions.pending(h.clock.Now(), w0.UID) {
		t.Error("the bound member is remembered as leaving: it was sent for deletion")
	}
}

// A victim chosen by one preemptor is not chosen again by the next before
// its deletion shows: the second waits for the room on its way instead of
// evicting more.
func TestPostFilterDoesNotChooseAVictimTwice(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	h.running(h.pod("low-a", "", 8, 0), "a")
	h.running(h.pod("low-b", "", 8, 0), "b")
	if _, status := h.postFilter(h.pod("high-1", "", 8, 1000)); !strings.Contains(status.Message(), "preempting pod ns/low-") {
		t.Fatalf("first PostFilter = %v", status)
	}
	first := h.deleted(1)
	// The harness's cache never sees the delete, as a scheduler's does not
	// for a moment.
	_, status := h.postFilter(h.pod("high-2", "", 8, 1000))
	if !strings.Contains(status.Message(), "waiting for 1 terminating pods") {
		t.Fatalf("second PostFilter = %v, want it to wait for the first victim's room", status)
	}
	if got := h.deleted(len(first)); !got.Equal(first) {
		t.Errorf("deleted %v, want only the first preemptor's victim %v", got.UnsortedList(), first.UnsortedList())
	}
}

// Room a preemptor was nominated to (its victims leaving) is not planned
// for a gang of lower priority: its members would fail Filter there while
// the plan kept the room from the preemptor.
func TestPlanLeavesTheRoomOfHigherPriorityNominatedPods(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	h.running(h.pod("busy", "", 8, 0), "b")
	h.nominate(h.pod("preemptor", "", 8, 1000), "a")
	h.podGroup("low", 1)
	low := h.pod("low-0", "low", 8, 0)
	if result, status := h.preFilter(low); status.IsSuccess() {
		t.Fatalf("PreFilter = %v, %v; want no plan while the preemptor holds node a", result, status)
	}
	// A gang above the preemptor's priority may take it, as Filter lets it.
	h.podGroup("top", 1)
	if node := h.planned(h.pod("top-0", "top", 8, 2000)); node != "a" {
		t.Errorf("top gang planned on %s, want a", node)
	}
}

// A preemptor that preemption cannot help any more gives up the node it
// was nominated to, as with DefaultPreemption: a nomination left behind
// would hold that room against every lower-priority pod and plan.
func TestPostFilterWithdrawsANominationItCannotUse(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.running(h.pod("top", "", 8, 5000), "a")
	h.podGroup("g", 2)
	g0, g1 := h.pod("g-0", "g", 8, 1000), h.pod("g-1", "g", 8, 1000)
	h.nominate(g1, "a")
	result, status := h.postFilter(g0)
	if status.IsSuccess() || result == nil || result.NominatingInfo == nil ||
		result.NominatingMode != fwk.ModeOverride || result.NominatedNodeName != "" {
		t.Fatalf("PostFilter = %+v, %v; want the pod's nomination cleared", result, status)
	}
	if left := h.nominated.NominatedPodsForNode("a"); len(left) != 0 {
		t.Errorf("%d pods still nominated to a, want the gang's withdrawn", len(left))
	}
}

// Defect 5: a gang partly bound past its timeout has its bound members
// evicted.
func TestPartlyBoundGangIsTornDownAfterItsTimeout(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("g", 2)
	h.running(h.pod("g-0", "g", 8, 0), "a")
	pending := h.pod("g-1", "g", 8, 0) // fits nowhere: a is full
	if _, status := h.preFilter(pending); status.IsSuccess() {
		t.Fatal("g-1 planned on a full cluster")
	}
	if got := h.deleted(0); got.Len() != 0 {
		t.Fatalf("evicted %v within the timeout", got.UnsortedList())
	}
	h.clock.Step(61 * time.Second)
	_, status := h.preFilter(pending)
	if !strings.Contains(status.Message(), "partly bound") {
		t.Errorf("PreFilter = %v, want the teardown", status)
	}
	if got := h.deleted(1); !got.Equal(setOf("g-0")) {
		t.Errorf("evicted %v, want the bound member g-0", got.UnsortedList())
	}
}

// partlyBoundBesideLow is node a with gang g (minMember 2) half bound,
// g-0 running beside a lower-priority pod low that holds the room g-1,
// pending, needs.
func partlyBoundBesideLow(t *testing.T) (h *harness, low, pending *v1.Pod) {
	h = newHarness(t)
	h.node("a")
	h.podGroup("g", 2)
	h.running(h.pod("g-0", "g", 4, 8), "a")
	low = h.running(h.pod("low", "", 4, 0), "a")
	return h, low, h.pod("g-1", "g", 4, 8)
}

// A gang partly bound past its timeout is being torn down: it evicts no
// one for its pending members (their gang-mates are on their way out),
// and gives up its nominations. Within the timeout it may preempt to
// complete.
func TestTornDownGangDoesNotPreempt(t *testing.T) {
	h, _, pending := partlyBoundBesideLow(t)
	h.nominate(pending, "a")
	h.clock.Step(61 * time.Second)
	result, status := h.postFilter(pending)
	if status.IsSuccess() || !strings.Contains(status.Message(), "being torn down") {
		t.Errorf("PostFilter = %v, want no preemption for a gang being torn down", status)
	}
	if result == nil || result.NominatingInfo == nil || result.NominatingMode != fwk.ModeOverride || result.NominatedNodeName != "" {
		t.Errorf("PostFilter result = %+v, want the pod's nomination cleared", result)
	}
	if left := h.nominated.NominatedPodsForNode("a"); len(left) != 0 {
		t.Errorf("%d pods still nominated to a, want the gang's withdrawn", len(left))
	}
	if got := h.deleted(0); got.Len() != 0 {
		t.Errorf("evicted %v for a gang being torn down", got.UnsortedList())
	}
}

// A partly bound gang whose preempting plan still waits for its victims
// (a long grace period) keeps its plan and nominations past its timeout:
// PreFilter does not tear down a gang whose plan holds, so PostFilter must
// not give up its room either.
func TestGangWaitingForItsVictimsIsNotTreatedAsTornDown(t *testing.T) {
	h, low, pending := partlyBoundBesideLow(t)
	if _, status := h.postFilter(pending); !strings.Contains(status.Message(), "preempting pod ns/low") {
		t.Fatalf("PostFilter = %v, want low preempted", status)
	}
	h.nominate(pending, "a")
	// low is deleted gracefully and takes its time to leave.
	h.terminating(low)
	h.clock.Step(61 * time.Second)
	_, status := h.postFilter(pending)
	if !strings.Contains(status.Message(), "waiting for 1 terminating pods") {
		t.Errorf("PostFilter = %v, want the gang still waiting for its victim", status)
	}
	if left := h.nominated.NominatedPodsForNode("a"); len(left) != 1 {
		t.Errorf("%d pods nominated to a, want the waiting member's nomination kept", len(left))
	}
}

// While a preempting gang waits for its victims, each member's failed
// cycle renominates it to its planned node (the scheduler drops a
// nomination a failed cycle does not renew, and a gang-mate's is in memory
// only), and its mates with it: the room the victims leave stays the
// gang's against lower-priority pods.
func TestWaitingGangKeepsItsNominations(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	low := h.running(h.pod("low", "", 8, 0), "a")
	h.podGroup("g", 2)
	g0, g1 := h.pod("g-0", "g", 4, 8), h.pod("g-1", "g", 4, 8)
	if _, status := h.postFilter(g0); !strings.Contains(status.Message(), "preempting pod ns/low") {
		t.Fatalf("PostFilter = %v, want low preempted", status)
	}
	h.terminating(low)
	// Each member's failed cycle dropped its nomination.
	h.nominated.DeleteNominatedPodIfExists(g0)
	h.nominated.DeleteNominatedPodIfExists(g1)
	result, status := h.postFilter(g1)
	if !strings.Contains(status.Message(), "waiting for 1 terminating pods") {
		t.Fatalf("PostFilter = %v, want the gang waiting for its victim", status)
	}
	if result == nil || result.NominatingInfo == nil || result.NominatingMode != fwk.ModeOverride || result.NominatedNodeName != "a" {
		t.Errorf("PostFilter result = %+v, want g-1 renominated to a", result)
	}
	if got := h.nominated.NominatedPodsForNode("a"); len(got) != 1 || got[0].GetPod().UID != g0.UID {
		t.Errorf("nominated to a: %d pods, want its mate g-0", len(got))
	}
}

func TestPartlyBoundGangPreemptsToCompleteWithinItsTimeout(t *testing.T) {
	h, _, pending := partlyBoundBesideLow(t)
	if _, status := h.postFilter(pending); !strings.Contains(status.Message(), "preempting pod ns/low") {
		t.Errorf("PostFilter = %v, want low preempted to complete the gang", status)
	}
	if got := h.deleted(1); !got.Equal(setOf("low")) {
		t.Errorf("evicted %v, want low", got.UnsortedList())
	}
}

// Defect 7: minMember below 1 is rejected naming the field.
func TestPreFilterRejectsMinMemberZero(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("zero", 0)
	_, status := h.preFilter(h.pod("zero-0", "zero", 1, 0))
	if status.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(status.Message(), "spec.minMember must be at least 1") {
		t.Errorf("PreFilter = %v", status)
	}
}

// Defect 7: a member held by a scheduling gate does not complete the
// quorum, so its gang-mates are not placed to wait for it.
func TestGatedMemberDoesNotCountTowardsTheQuorum(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("g", 2)
	first := h.pod("g-0", "g", 1, 0)
	gated := h.pod("g-1", "g", 1, 0)
	gated.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/wait"}}
	status := h.gang.PreEnqueue(h.ctx, first)
	if status.IsSuccess() || !strings.Contains(status.Message(), "1 held by scheduling gates") {
		t.Errorf("PreEnqueue = %v, want the gang held for its gated member", status)
	}
}

// Defect 5: a gang that lost a member for good (its node went, nothing made
// it again) is held at PreEnqueue; its bound members are evicted there once
// the timeout has passed.
func TestGangMissingMembersIsTornDownAtPreEnqueue(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.podGroup("g", 3)
	h.running(h.pod("g-0", "g", 1, 0), "a")
	pending := h.pod("g-1", "g", 1, 0)
	if status := h.gang.PreEnqueue(h.ctx, pending); !strings.Contains(status.Message(), "2/3 members") {
		t.Fatalf("PreEnqueue = %v, want the gang held for its missing member", status)
	}
	h.clock.Step(61 * time.Second)
	if status := h.gang.PreEnqueue(h.ctx, pending); !strings.Contains(status.Message(), "partly bound") {
		t.Errorf("PreEnqueue = %v, want the teardown", status)
	}
	if got := h.deleted(1); !got.Equal(setOf("g-0")) {
		t.Errorf("evicted %v, want the bound member g-0", got.UnsortedList())
	}
}

// A failed plan stands only while the gang is as it was: a member joining
// (an inferred gang's pods are labelled in one at a time) calls for a new
// plan at once, though no node changed. Before, the first member's failure
// ("needs 2 more members; only 1 fits") was served to both for as long as
// the nodes stayed as they were.
func TestFailedPlanIsRetriedWhenAMemberJoins(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	h.node("b")
	h.podGroup("g", 2)
	first := h.pod("g-0", "g", 8, 0)
	if _, status := h.preFilter(first); status.IsSuccess() || !strings.Contains(status.Message(), "needs 2 more members") {
		t.Fatalf("PreFilter with one of two members = %v, want the plan refused", status)
	}
	h.pod("g-1", "g", 8, 0)
	h.planned(first)
}

// A member labelled into its gang requeues its mates: the quorum their
// PreEnqueue waits for may be there now.
func TestLabelledIntoGangRequeuesMates(t *testing.T) {
	pod := func(name, gang string) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), Labels: map[string]string{}}}
		if gang != "" {
			p.Labels[schedv1alpha1.PodGroupLabel] = gang
		}
		return p
	}
	waiting := pod("g-0", "g")
	for _, tc := range []struct {
		name     string
		old, new *v1.Pod
		want     fwk.QueueingHint
	}{
		{"the pod itself labelled", pod("self", ""), pod("self", "x"), fwk.Queue},
		{"a mate labelled in", pod("g-1", ""), pod("g-1", "g"), fwk.Queue},
		{"a mate's other label changed", pod("g-1", "g"), pod("g-1", "g"), fwk.QueueSkip},
		{"another gang's pod labelled", pod("h-0", ""), pod("h-0", "h"), fwk.QueueSkip},
		{"a label removed", pod("g-1", "g"), pod("g-1", ""), fwk.QueueSkip},
	} {
		target := waiting
		if tc.name == "the pod itself labelled" {
			target = pod("self", "")
		}
		if got, err := labelledIntoGang(klog.Background(), target, tc.old, tc.new); err != nil || got != tc.want {
			t.Errorf("%s: hint %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// The failure cache's fingerprint does not depend on the order the
// informer lists a gang's members in.
func TestPlanFingerprintIgnoresMemberOrder(t *testing.T) {
	h := newHarness(t)
	h.node("a")
	pg := &schedv1alpha1.PodGroup{Spec: schedv1alpha1.PodGroupSpec{MinMember: 3}}
	a, b, c := h.pod("a", "g", 1, 0), h.pod("b", "g", 1, 0), h.pod("c", "g", 1, 0)
	one := planFingerprint(h.gang.handle, pg, members{bound: []*v1.Pod{a, b}, pending: []*v1.Pod{c}})
	if other := planFingerprint(h.gang.handle, pg, members{bound: []*v1.Pod{b, a}, pending: []*v1.Pod{c}}); other != one {
		t.Errorf("fingerprint changed with the bound members' order")
	}
	if moved := planFingerprint(h.gang.handle, pg, members{bound: []*v1.Pod{a}, pending: []*v1.Pod{b, c}}); moved == one {
		t.Errorf("fingerprint unchanged when a member moved from bound to pending")
	}
}
