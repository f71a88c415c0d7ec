package nodeagent

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// attribute reads which containers hold which GPUs, reports pods whose
// containers hold other GPUs than the scheduler assigned (an event on the
// pod and a metric, once per distinct problem), and returns the container
// samples for /metrics. A failure to read is logged, never fatal.
func (a *Agent) attribute(ctx context.Context, t *topology.Topology) []containerSample {
	if a.cfg.PodResources == nil {
		return nil
	}
	logger := klog.FromContext(ctx)
	held, err := a.cfg.PodResources.ListGPUs(ctx)
	if err != nil {
		logger.Error(err, "GPU attribution skipped this sync")
		return nil
	}
	var samples []containerSample
	byPod := map[types.NamespacedName][]int{}
	for _, c := range held {
		key := types.NamespacedName{Namespace: c.Namespace, Name: c.Pod}
		for _, id := range c.DeviceIDs {
			idx, ok := gpuIndex(t, id)
			if !ok {
				logger.Info("Container holds a GPU this node does not report", "pod", key, "container", c.Container, "deviceID", id)
				continue
			}
			byPod[key] = append(byPod[key], idx)
			for _, g := range t.GPUs {
				if g.Index == idx {
					samples = append(samples, containerSample{gpu: g, namespace: c.Namespace, pod: c.Pod, container: c.Container})
				}
			}
		}
	}

	seen := map[types.UID]bool{}
	for key, indexes := range byPod {
		pod := &corev1.Pod{}
		if err := a.cfg.Client.Get(ctx, key, pod); err != nil {
			logger.V(2).Info("Pod holding GPUs not readable yet", "pod", key, "err", err)
			continue
		}
		seen[pod.UID] = true
		value, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]
		if !ok {
			continue // not placed by Tessera: nothing to compare with
		}
		slices.Sort(indexes)
		holds := tesserav1alpha1.FormatGPUIDs(slices.Compact(indexes))
		assigned, err := tesserav1alpha1.ParseGPUIDs(value)
		problem, reason := "", ""
		switch {
		case err != nil:
			problem, reason = fmt.Sprintf("cannot check the GPU assignment: %v", err), "InvalidGPUAssignment"
		case tesserav1alpha1.FormatGPUIDs(assigned) != holds:
			problem = fmt.Sprintf("scheduler assigned GPUs %s but the containers hold GPUs %s: the device plugin chose other devices",
				tesserav1alpha1.FormatGPUIDs(assigned), holds)
			reason = "GPUAssignmentDrift"
		}
		if problem == "" {
			delete(a.reported, pod.UID)
			continue
		}
		if a.reported[pod.UID] == problem {
			continue
		}
		a.reported[pod.UID] = problem
		a.cfg.Recorder.Event(pod, corev1.EventTypeWarning, reason, problem)
		if reason == "GPUAssignmentDrift" {
			a.metrics.drift.WithLabelValues(pod.Namespace, pod.Name).Inc()
		}
	}
	for uid := range a.reported {
		if !seen[uid] {
			delete(a.reported, uid)
		}
	}
	return samples
}
