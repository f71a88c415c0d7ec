package gang

import (
	"cmp"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
	apipod "k8s.io/kubernetes/pkg/api/v1/pod"
)

// victimGroup is what preemption may evict as one: a whole gang, or a pod
// outside any gang.
type victimGroup struct {
	name     string
	priority int32
	pods     []*v1.Pod
	// waiting is a gang all of whose members in the snapshot wait at
	// Permit: preempting it rejects them there (its reservation is
	// released, nothing running is stopped).
	waiting bool
}

// victimGroups lists the groups with lower priority than prio, excluding
// the preemptor's own gang: gangs waiting at Permit first (their room is
// reserved, not used: taking it stops nothing), then lowest priority
// first, then smallest, then by name; and the pods leaving, whose room is
// on its way: terminating, or chosen as victims already (evicted says
// which). A gang waiting at Permit with a priority at or above prio keeps
// its room, as a bound one would.
func victimGroups(nodes []fwk.NodeInfo, isWaiting, evicted func(types.UID) bool, prio int32, self gangKey) (groups []victimGroup, leaving []*v1.Pod) {
	byGang := map[gangKey]int{}
	seen := map[types.UID]bool{}
	for _, n := range nodes {
		for _, pi := range n.GetPods() {
			p := pi.GetPod()
			if seen[p.UID] {
				continue
			}
			seen[p.UID] = true
			if p.DeletionTimestamp != nil || evicted(p.UID) {
				leaving = append(leaving, p)
				continue
			}
			key, ok := gangOf(p)
			if ok && key == self {
				continue
			}
			if !ok {
				groups = append(groups, victimGroup{name: "pod " + p.Namespace + "/" + p.Name, priority: corev1helpers.PodPriority(p), pods: []*v1.Pod{p}})
				continue
			}
			i, known := byGang[key]
			if !known {
				i = len(groups)
				byGang[key] = i
				groups = append(groups, victimGroup{name: "gang " + key.String(), priority: corev1helpers.PodPriority(p), waiting: true})
			}
			groups[i].pods = append(groups[i].pods, p)
			groups[i].priority = max(groups[i].priority, corev1helpers.PodPriority(p))
			groups[i].waiting = groups[i].waiting && isWaiting(p.UID)
		}
	}
	// A gang is evictable only as a whole: one member at or above the
	// preemptor's priority protects all of them.
	groups = slices.DeleteFunc(groups, func(grp victimGroup) bool { return grp.priority >= prio })
	slices.SortStableFunc(groups, func(a, b victimGroup) int {
		return cmp.Or(compareWaitingFirst(a.waiting, b.waiting), cmp.Compare(a.priority, b.priority), cmp.Compare(len(a.pods), len(b.pods)), strings.Compare(a.name, b.name))
	})
	return groups, leaving
}

// runningPods lists the snapshot's pods once each, less those leaving.
func runningPods(nodes []fwk.NodeInfo, leaving []*v1.Pod) []*v1.Pod {
	gone := map[types.UID]bool{}
	for _, p := range leaving {
		gone[p.UID] = true
	}
	var running []*v1.Pod
	for _, n := range nodes {
		for _, pi := range n.GetPods() {
			if p := pi.GetPod(); !gone[p.UID] {
				gone[p.UID] = true
				running = append(running, p)
			}
		}
	}
	return running
}

func compareWaitingFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// withinBudgets keeps, in order, the groups whose eviction no
// PodDisruptionBudget forbids, counting the disruptions the groups kept
// before them use up; a group that would take a budget below zero is left
// out whole. kube-scheduler's DefaultPreemption evicts such pods as a last
// resort; Tessera never does, so a preemption never violates a PDB (the
// budget says how many of its pods may be down, and a gang's eviction is
// as voluntary as a drain). It returns the kept groups and the names of
// those a budget protects.
//
// running are the snapshot's pods that are not leaving. A budget's status
// lags: a victim chosen a moment ago, or one already gone from the cache,
// may not show in it yet. So a budget allows no more than its healthy
// pods among running, less its desiredHealthy, as the disruption
// controller will count once it catches up: never looser than the status,
// and no stricter once the status is current.
func withinBudgets(groups []victimGroup, pdbs []*policyv1.PodDisruptionBudget, running []*v1.Pod) (kept []victimGroup, protected []string) {
	type budget struct {
		namespace string
		selector  labels.Selector
		allowed   int32
		// disrupted are pods the budget already counts as down.
		disrupted map[string]metav1.Time
	}
	var budgets []*budget
	for _, pdb := range pdbs {
		// policy/v1: a nil selector matches no pod, an empty one every pod
		// of the namespace.
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			continue
		}
		b := &budget{namespace: pdb.Namespace, selector: sel, disrupted: pdb.Status.DisruptedPods}
		var healthy int32
		for _, p := range running {
			if _, down := b.disrupted[p.Name]; !down && p.Namespace == b.namespace && b.selector.Matches(labels.Set(p.Labels)) && apipod.IsPodReady(p) {
				healthy++
			}
		}
		b.allowed = max(0, min(pdb.Status.DisruptionsAllowed, healthy-pdb.Status.DesiredHealthy))
		if pdb.Status.ObservedGeneration < pdb.Generation {
			// Its spec changed since the status was written: as the
			// eviction API, allow nothing until the status catches up.
			b.allowed = 0
		}
		budgets = append(budgets, b)
	}
	for _, grp := range groups {
		if grp.waiting {
			// Pods not yet bound are not running: rejecting them at
			// Permit disrupts nothing a budget counts.
			kept = append(kept, grp)
			continue
		}
		use := make([]int32, len(budgets))
		ok := true
		for i, b := range budgets {
			for _, p := range grp.pods {
				if p.Namespace != b.namespace || !b.selector.Matches(labels.Set(p.Labels)) {
					continue
				}
				if _, down := b.disrupted[p.Name]; down {
					continue
				}
				use[i]++
			}
			if use[i] > b.allowed {
				ok = false
			}
		}
		if !ok {
			protected = append(protected, grp.name)
			continue
		}
		for i, b := range budgets {
			b.allowed -= use[i]
		}
		kept = append(kept, grp)
	}
	return kept, protected
}

// maxGiveBackTrials bounds the simulations spent handing back victims the
// placement turns out not to need.
const maxGiveBackTrials = 16

// chooseVictims returns few leading candidates (sorted cheapest to evict
// first) whose eviction makes room: the shortest feasible prefix, by binary
// search (more victims never make less room), then without the victims of
// that prefix the placement does not need, found by halving, within
// maxGiveBackTrials simulations (past that, the rest are kept: a larger
// set that works rather than a search without end). feasible simulates the
// preemptor's placement without the given victims. The cost is
// O(log n + k log n) simulations for k victims needed, bounded; nil when
// evicting every candidate would not make room.
func chooseVictims(candidates []victimGroup, feasible func([]victimGroup) (bool, error)) ([]victimGroup, int, error) {
	trials := 0
	try := func(groups []victimGroup) (bool, error) {
		trials++
		return feasible(groups)
	}
	if len(candidates) == 0 {
		return nil, trials, nil
	}
	if ok, err := try(candidates); err != nil || !ok {
		return nil, trials, err
	}
	lo, hi := 1, len(candidates) // the shortest feasible prefix is in [lo, hi]
	for lo < hi {
		mid := (lo + hi) / 2
		ok, err := try(candidates[:mid])
		if err != nil {
			return nil, trials, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	// The prefix's last victim is needed (the shorter prefix failed).
	last := candidates[hi-1]
	budget := trials + maxGiveBackTrials
	// needed returns the part of optional the placement needs when keep is
	// evicted too.
	var needed func(keep, optional []victimGroup) ([]victimGroup, error)
	needed = func(keep, optional []victimGroup) ([]victimGroup, error) {
		if len(optional) == 0 {
			return nil, nil
		}
		if trials >= budget {
			return optional, nil
		}
		ok, err := try(keep)
		if err != nil || ok {
			return nil, err
		}
		if len(optional) == 1 {
			return optional, nil
		}
		left, right := optional[:len(optional)/2], optional[len(optional)/2:]
		r, err := needed(slices.Concat(keep, left), right)
		if err != nil {
			return nil, err
		}
		l, err := needed(slices.Concat(keep, r), left)
		if err != nil {
			return nil, err
		}
		return slices.Concat(l, r), nil
	}
	rest, err := needed([]victimGroup{last}, candidates[:hi-1])
	if err != nil {
		return nil, trials, err
	}
	return append(rest, last), trials, nil
}

func flatten(groups []victimGroup) []*v1.Pod {
	var pods []*v1.Pod
	for _, grp := range groups {
		pods = append(pods, grp.pods...)
	}
	return pods
}
