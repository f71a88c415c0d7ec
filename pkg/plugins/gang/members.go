package gang

import (
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
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
}

func (m members) placed() int  { return len(m.bound) + len(m.waiting) }
func (m members) created() int { return len(m.bound) + len(m.waiting) + len(m.pending) }

// members lists the live pods of gang: not terminating, not finished.
func (g *Gang) members(key gangKey) (members, error) {
	sel := labels.SelectorFromSet(labels.Set{schedv1alpha1.PodGroupLabel: key.name})
	pods, err := g.podLister.Pods(key.namespace).List(sel)
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
