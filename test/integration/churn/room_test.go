package churn

import (
	"maps"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// room is what a schedulable node has free for the suite's pods: each
// healthy GPU's free milli-GPUs (by NVML index) and its NVLink islands.
type room struct {
	free    map[int]int64
	islands [][]int
}

// roomOf is the free GPUs of every node a pod of the suite may use (present,
// not cordoned, not tainted for maintenance, with a published topology),
// counting every pod that holds a node except those ignore says.
func roomOf(st clusterState, ignore func(*corev1.Pod) bool) map[string]*room {
	out := map[string]*room{}
	for name, n := range st.nodes {
		topo, ok := st.topologies[name]
		if !ok || n.Spec.Unschedulable || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == maintenanceTaint }) {
			continue
		}
		r := &room{free: map[int]int64{}}
		for _, d := range topo.Status.Devices {
			if d.Healthy {
				r.free[int(d.Index)] = 1000
			}
		}
		for _, is := range topo.Status.Islands {
			var island []int
			for _, g := range is.GPUs {
				island = append(island, int(g))
			}
			r.islands = append(r.islands, island)
		}
		out[name] = r
	}
	for i := range st.pods {
		p := &st.pods[i]
		r, ok := out[p.Spec.NodeName]
		if !ok || !holdsNode(p) || ignore(p) {
			continue
		}
		ids, milli, err := holds(p)
		if err != nil {
			continue
		}
		for _, id := range ids {
			r.free[id] -= milli
		}
	}
	return out
}

// leastOf is, node by node, the room both a and b had: what was free
// throughout.
func leastOf(a, b map[string]*room) map[string]*room {
	out := map[string]*room{}
	for name, ra := range a {
		rb, ok := b[name]
		if !ok {
			continue
		}
		r := &room{free: map[int]int64{}, islands: ra.islands}
		for id, f := range ra.free {
			if g, ok := rb.free[id]; ok {
				r.free[id] = min(f, g)
			}
		}
		out[name] = r
	}
	return out
}

// member is what one pod of a preemptor asks: whole GPUs, or a share.
type member struct {
	gpus       int
	milli      int64
	islandOnly bool
}

func memberOf(p *corev1.Pod) member {
	m := member{islandOnly: p.Spec.SchedulerName == "tessera-serving"}
	if s, ok := p.Annotations[tesserav1alpha1.AnnotationGPUMilli]; ok {
		milli, err := tesserav1alpha1.ParseGPUMilli(s)
		if err == nil {
			return member{gpus: 1, milli: milli}
		}
	}
	q := p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"]
	m.gpus, m.milli = int(q.Value()), 1000
	return m
}

// fitsWithoutVictims reports whether members fit the free room, first fit
// by size: whole GPUs on idle GPUs (inside one NVLink island when the pod
// needs it), shares on a GPU with room, and the nodes it found for them
// (for the violation's message). A yes is a placement that needed no
// eviction; a no proves nothing (a search could do better).
func fitsWithoutVictims(members []member, free map[string]*room) (bool, []string) {
	sort.SliceStable(members, func(i, j int) bool {
		return members[i].gpus*int(members[i].milli) > members[j].gpus*int(members[j].milli)
	})
	names := make([]string, 0, len(free))
	for name := range free {
		names = append(names, name)
	}
	slices.Sort(names)
	var placed []string
	for _, m := range members {
		i := slices.IndexFunc(names, func(name string) bool { return take(free[name], m) })
		if i < 0 {
			return false, nil
		}
		placed = append(placed, names[i])
	}
	return true, placed
}

// take places m on r if it fits, taking what it holds.
func take(r *room, m member) bool {
	if m.milli < 1000 {
		for _, id := range slices.Sorted(maps.Keys(r.free)) {
			if r.free[id] >= m.milli {
				r.free[id] -= m.milli
				return true
			}
		}
		return false
	}
	groups := [][]int{slices.Sorted(maps.Keys(r.free))}
	if m.islandOnly {
		groups = r.islands
	}
	for _, g := range groups {
		var idle []int
		for _, id := range g {
			if f, ok := r.free[id]; ok && f == 1000 {
				idle = append(idle, id)
			}
		}
		if len(idle) >= m.gpus {
			for _, id := range idle[:m.gpus] {
				r.free[id] = 0
			}
			return true
		}
	}
	return false
}
