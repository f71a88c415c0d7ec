package queue

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
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
// bound by PodSet in bound. flavorLabels are the node labels of each
// PodSet's flavors (FlavorNodeLabels).
func demands(wl *kueue.Workload, flavorLabels map[kueue.PodSetReference]map[string]string, bound map[string]int) []Demand {
	var out []Demand
	for _, ps := range wl.Spec.PodSets {
		count := ps.Count
		if wl.Status.Admission != nil {
			for _, a := range wl.Status.Admission.PodSetAssignments {
				if a.Name == ps.Name && a.Count != nil {
					count = *a.Count
				}
			}
		}
		labels := maps.Clone(flavorLabels[ps.Name])
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, ps.Template.Spec.NodeSelector)
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

// FlavorNodeLabels returns, for each PodSet, the node labels of the
// ResourceFlavors Kueue assigned it: its pods must land on such nodes. The launcher puts them in the pods node
// selectors; the topology-fit check places the gang on such nodes only.
func FlavorNodeLabels(ctx context.Context, c ctrlclient.Reader, wl *kueue.Workload) (map[kueue.PodSetReference]map[string]string, error) {
	out := map[kueue.PodSetReference]map[string]string{}
	if wl.Status.Admission == nil {
		return out, nil
	}
	for _, a := range wl.Status.Admission.PodSetAssignments {
		labels := map[string]string{}
		for _, flavor := range a.Flavors {
			var rf kueue.ResourceFlavor
			if err := c.Get(ctx, types.NamespacedName{Name: string(flavor)}, &rf); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("reading ResourceFlavor %s: %w", flavor, err)
			}
			for k, v := range rf.Spec.NodeLabels {
				labels[k] = v
			}
		}
		out[a.Name] = labels
	}
	return out, nil
}
