package gang

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// members is a gang's pods as the scheduler sees them now.
type members struct {
	// bound pods have a node (bound, or binding after Permit allowed them).
	bound []*v1.Pod
	// waiting pods are reserved on a node: waiting at Permit for the rest,
	// or allowed and binding.
	waiting []*v1.Pod
	// pending pods still need a node, oldest first.
	pending []*v1.Pod
	// gated pods are held by scheduling gates: they cannot be scheduled,
	// so they do not count towards the gang's quorum.
	gated int
}

func (m members) placed() int { return len(m.bound) + len(m.waiting) }

// created is how many members exist that can be placed.
func (m members) created() int { return len(m.bound) + len(m.waiting) + len(m.pending) }

// gangIndex indexes the scheduler's pods by gang ("namespace/podgroup"), so
// that listing a gang's members costs its size, not the cluster's.
const gangIndex = "tessera.dev/gang"

func indexByGang(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	if key, ok := gangOf(pod); ok {
		return []string{key.String()}, nil
	}
	return nil, nil
}

// gangPods returns every pod labelled into the gang.
func gangPods(indexer cache.Indexer, key gangKey) ([]*v1.Pod, error) {
	objs, err := indexer.ByIndex(gangIndex, key.String())
	if err != nil {
		return nil, err
	}
	pods := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// members lists the live pods of gang: not terminating, not finished.
func (g *Gang) members(key gangKey) (members, error) {
	pods, err := gangPods(g.pods, key)
	if err != nil {
		return members{}, err
	}
	var m members
	for _, p := range pods {
		switch {
		case p.DeletionTimestamp != nil, p.Status.Phase == v1.PodFailed, p.Status.Phase == v1.PodSucceeded:
		case p.Spec.NodeName != "":
			m.bound = append(m.bound, p)
		case g.handle.GetWaitingPod(p.UID) != nil || g.plans.reserved(key, p.UID):
			m.waiting = append(m.waiting, p)
		case len(p.Spec.SchedulingGates) > 0:
			m.gated++
		default:
			m.pending = append(m.pending, p)
		}
	}
	slices.SortFunc(m.pending, func(a, b *v1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return m, nil
}
