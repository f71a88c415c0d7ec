package queue

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
)

// Labels the launcher puts on every pod it creates for a Workload, so that
// the admission check can tell which of a gang's pods are already placed.
const (
	// LabelWorkload names the pod's Kueue Workload (same namespace).
	LabelWorkload = "tessera.dev/workload"
	// LabelPodSet names the pod's PodSet in that Workload.
	LabelPodSet = "tessera.dev/podset"
)

// demands lists one Demand per pod of the Workload, counts as admitted
// (partial admission may admit fewer than asked), less the pods already
// bound by PodSet in bound. flavorLabels returns a ResourceFlavor's node
// labels.
func demands(wl *kueue.Workload, flavorLabels func(kueue.ResourceFlavorReference) map[string]string, bound map[string]int) []Demand {
	var out []Demand
	for _, ps := range wl.Spec.PodSets {
		count := ps.Count
		labels := map[string]string{}
		if wl.Status.Admission != nil {
			for _, a := range wl.Status.Admission.PodSetAssignments {
				if a.Name != ps.Name {
					continue
				}
				if a.Count != nil {
					count = *a.Count
				}
				for _, f := range a.Flavors {
					for k, v := range flavorLabels(f) {
						labels[k] = v
					}
				}
			}
		}
		for k, v := range ps.Template.Spec.NodeSelector {
			labels[k] = v
		}
		d := podDemand(string(ps.Name), &ps.Template, labels)
		for range int(count) - bound[string(ps.Name)] {
			out = append(out, d)
		}
	}
	return out
}

func podDemand(role string, t *corev1.PodTemplateSpec, nodeLabels map[string]string) Demand {
	cpu, mem := requests(&t.Spec)
	pod := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	d := Demand{
		Role:        role,
		GPUs:        podgpu.WholeGPUs(pod),
		MilliCPU:    cpu,
		MemoryBytes: mem,
		NodeLabels:  nodeLabels,
		IslandOnly:  t.Annotations[tesserav1alpha1.AnnotationGPULocality] == string(configv1alpha1.GPULocalityNVLinkIsland),
	}
	if models, err := tesserav1alpha1.ParseGPUModels(t.Annotations[tesserav1alpha1.AnnotationGPUModels]); err == nil {
		d.Models = strings.Join(models, ",")
	}
	return d
}
