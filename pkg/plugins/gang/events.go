package gang

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// podGroupResource is how the scheduler names PodGroup events; it watches
// the resource dynamically for plugins that register it.
const podGroupResource fwk.EventResource = "podgroups.v1alpha1.scheduling.x-k8s.io"

// Owner events, for pods held until their owner is seen (or fixed).
const (
	jobResource        fwk.EventResource = "jobs.v1.batch"
	jobSetResource     fwk.EventResource = "jobsets.v1alpha2.jobset.x-k8s.io"
	lwsResource        fwk.EventResource = "leaderworkersets.v1.leaderworkerset.x-k8s.io"
	pyTorchJobResource fwk.EventResource = "pytorchjobs.v1.kubeflow.org"
)

// EventsToRegister lists the cluster changes that can make a waiting gang
// placeable: a member created (quorum), its PodGroup created or changed,
// resources freed by a pod leaving, nodes added or changed, a pod labelled
// into its owners' gang, and an owner created or changed (its pods may
// have arrived first, or its annotations been fixed). JobSets,
// LeaderWorkerSets and PyTorchJobs are watched only where their APIs are served: the
// scheduler waits for every watch it registers to sync.
func (g *Gang) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	events := []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add}, QueueingHintFn: sameGangAdded},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete}, QueueingHintFn: freedRoom},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAllocatable | fwk.UpdateNodeLabel | fwk.UpdateNodeTaint}},
		{Event: fwk.ClusterEvent{Resource: podGroupResource, ActionType: fwk.Add | fwk.Update}},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.UpdatePodLabel}, QueueingHintFn: labelledIntoGang},
		{Event: fwk.ClusterEvent{Resource: jobResource, ActionType: fwk.Add | fwk.Update}},
	}
	if g.shared.jobSetsServed {
		events = append(events, fwk.ClusterEventWithHint{Event: fwk.ClusterEvent{Resource: jobSetResource, ActionType: fwk.Add | fwk.Update}})
	}
	if g.shared.lwsServed {
		events = append(events, fwk.ClusterEventWithHint{Event: fwk.ClusterEvent{Resource: lwsResource, ActionType: fwk.Add | fwk.Update}})
	}
	if g.shared.pyTorchJobsServed {
		events = append(events, fwk.ClusterEventWithHint{Event: fwk.ClusterEvent{Resource: pyTorchJobResource, ActionType: fwk.Add | fwk.Update}})
	}
	return events, nil
}

// sameGangAdded requeues a gang's members when another member is created.
func sameGangAdded(_ klog.Logger, pod *v1.Pod, _, newObj any) (fwk.QueueingHint, error) {
	added, ok := newObj.(*v1.Pod)
	if !ok {
		return fwk.Queue, nil
	}
	if pod.Namespace == added.Namespace && pod.Labels[schedv1alpha1.PodGroupLabel] != "" &&
		pod.Labels[schedv1alpha1.PodGroupLabel] == added.Labels[schedv1alpha1.PodGroupLabel] {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// labelledIntoGang requeues a pod refused while it joined its owners' gang
// once its own label arrives, and a gang's members once a mate is labelled
// into it: the quorum their PreEnqueue waits for may be there now (an
// inferred gang's members join by label, not by being created).
func labelledIntoGang(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	updated, ok := newObj.(*v1.Pod)
	if !ok {
		return fwk.Queue, nil
	}
	gang := updated.Labels[schedv1alpha1.PodGroupLabel]
	switch {
	case gang == "":
		return fwk.QueueSkip, nil
	case updated.UID == pod.UID:
		return fwk.Queue, nil
	}
	if old, ok := oldObj.(*v1.Pod); ok && old.Labels[schedv1alpha1.PodGroupLabel] == gang {
		return fwk.QueueSkip, nil
	}
	if pod.Namespace == updated.Namespace && pod.Labels[schedv1alpha1.PodGroupLabel] == gang {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// freedRoom requeues a waiting pod when a deleted pod held room on a node
// (bound, or a gang member that may have been reserved at Permit); a lone
// pod deleted before it was placed frees nothing (without this hint every
// waiting gang would be planned again on any deletion anywhere).
func freedRoom(_ klog.Logger, _ *v1.Pod, oldObj, _ any) (fwk.QueueingHint, error) {
	deleted, ok := oldObj.(*v1.Pod)
	if !ok {
		return fwk.Queue, nil
	}
	if _, inGang := gangOf(deleted); deleted.Spec.NodeName == "" && !inGang {
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}
