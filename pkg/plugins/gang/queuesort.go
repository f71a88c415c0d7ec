package gang

import (
	"time"

	v1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
)

// Less orders the scheduling queue: higher priority first, then the older
// gang (a PodGroup's creation time; a lone pod's queue time), then by gang
// name so that a gang's members stay together, then the older pod. One
// deterministic order for all gangs is what keeps competing gangs from
// starving each other.
func (g *Gang) Less(a, b fwk.QueuedPodInfo) bool {
	pa, pb := a.GetPodInfo().GetPod(), b.GetPodInfo().GetPod()
	if prioA, prioB := corev1helpers.PodPriority(pa), corev1helpers.PodPriority(pb); prioA != prioB {
		return prioA > prioB
	}
	ta, ka := g.groupTime(pa, a.GetTimestamp())
	tb, kb := g.groupTime(pb, b.GetTimestamp())
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if ka != kb {
		return ka < kb
	}
	return a.GetTimestamp().Before(b.GetTimestamp())
}

// groupTime is when the pod's gang was created, and a key naming the gang;
// a pod outside any gang is its own group.
func (g *Gang) groupTime(pod *v1.Pod, queued time.Time) (time.Time, string) {
	key, ok := gangOf(pod)
	if !ok {
		return queued, pod.Namespace + "/" + pod.Name
	}
	if pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name); err == nil {
		return pg.CreationTimestamp.Time, key.String()
	}
	return pod.CreationTimestamp.Time, key.String()
}
