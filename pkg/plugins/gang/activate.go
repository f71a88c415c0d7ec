package gang

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// watchArrivals wakes a gang's waiting members when what they wait for
// arrives: their PodGroup, or the member that completes the quorum. The
// scheduler reports a new unscheduled pod to other pods' queueing hints only
// with its GangScheduling feature gate (the upstream Workload API), so the
// plugin does it for PodGroup gangs itself.
// Each profile's plugin wakes its own profile's pods.
func (g *Gang) watchArrivals(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	_, err := g.handle.SharedInformerFactory().Core().V1().Pods().Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			pod, ok := obj.(*v1.Pod)
			_, inGang := gangOf(pod)
			return ok && inGang && pod.Spec.NodeName == "" && pod.Spec.SchedulerName == g.handle.ProfileName()
		},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				key, _ := gangOf(obj.(*v1.Pod))
				g.activate(logger, key)
			},
			// A member whose scheduling gates are lifted completes the quorum
			// as much as a new one.
			UpdateFunc: func(oldObj, newObj any) {
				oldPod, ok := oldObj.(*v1.Pod)
				pod := newObj.(*v1.Pod)
				if ok && len(oldPod.Spec.SchedulingGates) > 0 && len(pod.Spec.SchedulingGates) == 0 {
					key, _ := gangOf(pod)
					g.activate(logger, key)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	_, err = g.shared.pgInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		if pg, ok := obj.(*schedv1alpha1.PodGroup); ok {
			g.activate(logger, gangKey{pg.Namespace, pg.Name})
		}
	}})
	return err
}

// activate moves the gang's pending members back to the active queue once
// its PodGroup exists and enough members do.
func (g *Gang) activate(logger klog.Logger, key gangKey) {
	pg, err := g.pgLister.PodGroups(key.namespace).Get(key.name)
	if err != nil {
		return
	}
	m, err := g.members(key)
	if err != nil || m.created() < int(pg.Spec.MinMember) {
		return
	}
	pods := make(map[string]*v1.Pod, len(m.pending))
	for _, p := range m.pending {
		if p.Spec.SchedulerName == g.handle.ProfileName() {
			pods[p.Namespace+"/"+p.Name] = p
		}
	}
	g.handle.Activate(logger, pods)
}
