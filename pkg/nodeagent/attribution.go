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
	unknown := map[string]bool{}
	for _, c := range held {
		key := types.NamespacedName{Namespace: c.Namespace, Name: c.Pod}
		var indexes []int
		for _, id := range c.DeviceIDs {
			idx, ok := gpuIndex(t, id)
			if !ok {
				// Logged once while it lasts, not on every sync.
				report := key.String() + "/" + c.Container + "/" + id
				unknown[report] = true
				if !a.unknownIDs[report] {
					logger.Info("Container holds a GPU this node does not report", "pod", key, "container", c.Container, "deviceID", id)
				}
				continue
			}
			// Time-sliced replicas of one GPU count once.
			if !slices.Contains(indexes, idx) {
				indexes = append(indexes, idx)
			}
		}
		if len(indexes) == 0 {
			continue // nothing of this node's to compare
		}
		byPod[key] = append(byPod[key], indexes...)
		for _, idx := range indexes {
			for _, g := range t.GPUs {
				if g.Index == idx {
					samples = append(samples, containerSample{gpu: g, namespace: c.Namespace, pod: c.Pod, container: c.Container})
				}
			}
		}
	}
	a.unknownIDs = unknown

	seen := map[types.UID]bool{}
	uids := map[types.NamespacedName]types.UID{}
	defer func() {
		// Holders carry the pod's UID: a pod of the same name created
		// since (a controller's next attempt) is another pod.
		for i := range samples {
			samples[i].uid = uids[types.NamespacedName{Namespace: samples[i].namespace, Name: samples[i].pod}]
		}
	}()
	for key, indexes := range byPod {
		pod := &corev1.Pod{}
		if err := a.cfg.Client.Get(ctx, key, pod); err != nil {
			logger.V(2).Info("Pod holding GPUs not readable yet", "pod", key, "err", err)
			continue
		}
		if pod.Spec.NodeName == a.cfg.NodeName {
			uids[key] = pod.UID
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
		if a.reported[pod.UID] == (podProblem{reason, problem}) {
			continue
		}
		a.reported[pod.UID] = podProblem{reason, problem}
		a.cfg.Recorder.Event(pod, corev1.EventTypeWarning, reason, problem)
		if reason == "GPUAssignmentDrift" {
			a.metrics.drift.Inc()
		}
	}
	drifted := 0
	for uid, p := range a.reported {
		switch {
		case !seen[uid]:
			delete(a.reported, uid)
		case p.reason == "GPUAssignmentDrift":
			drifted++
		}
	}
	a.metrics.driftedPods.Set(float64(drifted))
	return samples
}

// podProblem is an assignment problem reported on a pod.
type podProblem struct{ reason, message string }
