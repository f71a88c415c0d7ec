package gang

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

func testPod(name, gang string, prio int32, labels map[string]string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), Labels: map[string]string{}},
		Spec: v1.PodSpec{Priority: ptr.To(prio), NodeName: "n"}}
	for k, v := range labels {
		p.Labels[k] = v
	}
	if gang != "" {
		p.Labels[schedv1alpha1.PodGroupLabel] = gang
	}
	return p
}

func nodeWith(t *testing.T, name string, pods ...*v1.Pod) fwk.NodeInfo {
	t.Helper()
	n := framework.NewNodeInfo()
	n.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
	for _, p := range pods {
		pi, err := framework.NewPodInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		n.AddPodInfo(pi)
	}
	return n
}

func groupNames(groups []victimGroup) []string {
	out := []string{}
	for _, g := range groups {
		out = append(out, g.name)
	}
	return out
}

func TestVictimGroupsWholeGangsLowestPriorityFirst(t *testing.T) {
	leaving := testPod("leaving", "", 0, nil)
	leaving.DeletionTimestamp = &metav1.Time{}
	nodes := []fwk.NodeInfo{
		nodeWith(t, "a", testPod("g1-0", "g1", 10, nil), testPod("lone-low", "", math.MinInt32+1, nil), testPod("own-0", "own", 0, nil)),
		nodeWith(t, "b", testPod("g1-1", "g1", 10, nil), testPod("g2-0", "g2", 10, nil), testPod("g2-1", "g2", 500, nil), leaving,
			testPod("lone-10", "", 10, nil), testPod("high", "", math.MaxInt32, nil), testPod("chosen", "", 0, nil)),
		nodeWith(t, "c", testPod("w-0", "w", 50, nil), testPod("w-1", "w", 50, nil), testPod("half-0", "half", 0, nil), testPod("half-1", "half", 0, nil),
			testPod("whigh-0", "whigh", 100, nil)),
	}
	waiting := map[types.UID]bool{"w-0": true, "w-1": true, "half-0": true, "whigh-0": true}
	isWaiting := func(uid types.UID) bool { return waiting[uid] }
	// chosen was picked by an earlier preemption; its delete is on its way.
	chosen := func(uid types.UID) bool { return uid == "chosen" }
	groups, gone := victimGroups(nodes, isWaiting, chosen, 100, gangKey{"ns", "own"})
	// The gang waiting at Permit comes first: rejecting it stops nothing
	// running. half has a bound member: it is evicted as a running gang. g2
	// has a member at 500, whigh waits at the preemptor's priority: both
	// keep their room. The extreme priorities sort without overflow.
	want := []string{"gang ns/w", "pod ns/lone-low", "gang ns/half", "pod ns/lone-10", "gang ns/g1"}
	if diff := cmp.Diff(want, groupNames(groups)); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	for _, grp := range groups {
		if grp.waiting != (grp.name == "gang ns/w") {
			t.Errorf("%s waiting = %v", grp.name, grp.waiting)
		}
	}
	if len(groups[4].pods) != 2 {
		t.Errorf("gang g1 has %d pods, want both members", len(groups[4].pods))
	}
	if len(gone) != 2 || gone[0].Name != "leaving" || gone[1].Name != "chosen" {
		t.Errorf("leaving = %v, want the terminating pod and the one chosen already", gone)
	}
	// A preemptor at the top priority may preempt the lone pod at MinInt32+1
	// first: int(a-b) would overflow here.
	groups, _ = victimGroups(nodes, isWaiting, chosen, math.MaxInt32, gangKey{"ns", "own"})
	// (After the two gangs waiting at Permit, w and whigh.)
	if groups[2].name != "pod ns/lone-low" {
		t.Errorf("first running victim at MaxInt32 = %s, want the lowest priority pod", groups[2].name)
	}
}

func TestWithinBudgetsNeverViolatesAPDB(t *testing.T) {
	web := map[string]string{"app": "web"}
	groups := []victimGroup{
		{name: "pod ns/web-0", pods: []*v1.Pod{ready(testPod("web-0", "", 0, web))}},
		{name: "pod ns/web-1", pods: []*v1.Pod{ready(testPod("web-1", "", 0, web))}},
		{name: "gang ns/g", pods: []*v1.Pod{ready(testPod("g-0", "g", 0, web)), ready(testPod("g-1", "g", 0, web))}},
		{name: "pod ns/other", pods: []*v1.Pod{ready(testPod("other", "", 0, nil))}},
		{name: "pod ns/web-down", pods: []*v1.Pod{ready(testPod("web-down", "", 0, web))}},
		{name: "gang ns/web-waiting", pods: []*v1.Pod{testPod("ww-0", "ww", 0, web)}, waiting: true},
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: web}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 1, DesiredHealthy: 3, CurrentHealthy: 4,
			DisruptedPods: map[string]metav1.Time{"web-down": {}}},
	}
	otherNS := pdb.DeepCopy()
	otherNS.Namespace, otherNS.Status.DisruptionsAllowed = "elsewhere", 0
	nilSelector := pdb.DeepCopy()
	nilSelector.Spec.Selector, nilSelector.Status.DisruptionsAllowed = nil, 0

	kept, protected := withinBudgets(groups, []*policyv1.PodDisruptionBudget{pdb, otherNS, nilSelector}, flatten(groups))
	// One disruption allowed: web-0 uses it; web-1 and the gang (two web
	// pods) would go below the budget; web-down is already counted down; a
	// gang waiting at Permit is not running, and its rejection disrupts
	// nothing.
	if diff := cmp.Diff([]string{"pod ns/web-0", "pod ns/other", "pod ns/web-down", "gang ns/web-waiting"}, groupNames(kept)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"pod ns/web-1", "gang ns/g"}, protected); diff != "" {
		t.Errorf("protected (-want +got):\n%s", diff)
	}
}

// A budget's status lags the pods: a victim evicted a moment ago, gone from
// the scheduler's cache, may still count as healthy there. Two preemptions
// in a row never take more than the budget allows together, and a pod that
// is not Ready makes no room in it.
func TestWithinBudgetsCountsThePodsNotAStaleStatus(t *testing.T) {
	web := map[string]string{"app": "web"}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: web}},
		// Written while web-0 and web-1 ran; web-0 has been evicted since.
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 1, CurrentHealthy: 2, DesiredHealthy: 1},
	}
	web1 := ready(testPod("web-1", "", 0, web))
	groups := []victimGroup{{name: "pod ns/web-1", pods: []*v1.Pod{web1}}}
	budgets := []*policyv1.PodDisruptionBudget{pdb}
	if kept, protected := withinBudgets(groups, budgets, []*v1.Pod{web1}); len(kept) != 0 || len(protected) != 1 {
		t.Errorf("kept %v, protected %v; want web-1 protected, web-0's eviction having used the budget", groupNames(kept), protected)
	}
	starting := testPod("web-2", "", 0, web)
	if kept, _ := withinBudgets(groups, budgets, []*v1.Pod{web1, starting}); len(kept) != 0 {
		t.Errorf("kept %v; want none, web-2 not Ready", groupNames(kept))
	}
	if kept, _ := withinBudgets(groups, budgets, []*v1.Pod{web1, ready(starting)}); len(kept) != 1 {
		t.Errorf("kept %v; want web-1, web-2 Ready in its place", groupNames(kept))
	}
	// A status older than the budget's spec allows nothing.
	pdb.Generation, pdb.Status.ObservedGeneration = 2, 1
	if kept, _ := withinBudgets(groups, budgets, []*v1.Pod{web1, ready(starting)}); len(kept) != 0 {
		t.Errorf("kept %v; want none, the status not yet of the budget's spec", groupNames(kept))
	}
	pdb.Status.ObservedGeneration = 2
	// The pods never loosen a budget its status holds at zero.
	pdb.Status.DisruptionsAllowed = 0
	if kept, _ := withinBudgets(groups, budgets, []*v1.Pod{web1, ready(starting)}); len(kept) != 0 {
		t.Errorf("kept %v; want none, the status allowing no disruption", groupNames(kept))
	}
}

func ready(p *v1.Pod) *v1.Pod {
	p = p.DeepCopy()
	p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue})
	return p
}

func TestChooseVictims(t *testing.T) {
	candidates := make([]victimGroup, 20)
	for i := range candidates {
		candidates[i] = victimGroup{name: string(rune('a' + i))}
	}
	// needs(names) is feasible when the chosen set holds all of names.
	needs := func(names ...string) func([]victimGroup) (bool, error) {
		return func(chosen []victimGroup) (bool, error) {
			have := map[string]bool{}
			for _, c := range chosen {
				have[c.name] = true
			}
			for _, n := range names {
				if !have[n] {
					return false, nil
				}
			}
			return true, nil
		}
	}
	for _, tc := range []struct {
		name    string
		need    []string
		want    []string
		maxCost int
	}{
		{name: "first alone", need: []string{"a"}, want: []string{"a"}, maxCost: 1 + 5},
		{name: "one deep in the list", need: []string{"m"}, want: []string{"m"}, maxCost: 1 + 5 + maxGiveBackTrials},
		{name: "two, earlier ones given back", need: []string{"c", "h"}, want: []string{"c", "h"}, maxCost: 1 + 5 + maxGiveBackTrials},
		{name: "none can help", need: []string{"zz"}, want: nil, maxCost: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chosen, trials, err := chooseVictims(candidates, needs(tc.need...))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if chosen != nil {
				got = groupNames(chosen)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("victims (-want +got):\n%s", diff)
			}
			if trials > tc.maxCost {
				t.Errorf("%d simulations, want at most %d", trials, tc.maxCost)
			}
		})
	}
	// Many victims needed: past the budget the rest are kept, so the set
	// still makes room and the cost stays bounded.
	many := []string{"b", "d", "f", "h", "j", "l", "n", "p", "r", "t"}
	chosen, trials, err := chooseVictims(candidates, needs(many...))
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := needs(many...)(chosen); !ok {
		t.Errorf("victims %v do not make room", groupNames(chosen))
	}
	if limit := 1 + 5 + maxGiveBackTrials; trials > limit {
		t.Errorf("%d simulations, want at most %d", trials, limit)
	}
	if chosen, trials, _ := chooseVictims(nil, needs()); chosen != nil || trials != 0 {
		t.Errorf("no candidates: chose %v in %d simulations", chosen, trials)
	}
}
