package queue

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
// bound by PodSet in bound. flavors are what each PodSet's flavors ask of
// its pods (FlavorPlacements).
func demands(wl *kueue.Workload, flavors map[kueue.PodSetReference]FlavorPlacement, bound map[string]int) []Demand {
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
		flavor := flavors[ps.Name]
		labels := maps.Clone(flavor.NodeLabels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, ps.Template.Spec.NodeSelector)
		d := podDemand(string(ps.Name), &ps.Template, labels)
		d.Tolerations = append(slices.Clone(ps.Template.Spec.Tolerations), flavor.Tolerations...)
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

// FlavorPlacement is what a PodSet's flavors ask of its pods' nodes.
type FlavorPlacement struct {
	// NodeLabels the nodes must have (the flavors' nodeLabels).
	NodeLabels map[string]string
	// Tolerations the pods get (the flavors' tolerations), for the taints
	// of the flavor's nodes.
	Tolerations []corev1.Toleration
}

// FlavorPlacements returns, for each PodSet of an admitted (or
// quota-reserved) Workload, what its assigned ResourceFlavors ask of its
// pods: node labels and tolerations, as Kueue's job integrations apply
// them. A flavor that no longer exists adds nothing.
func FlavorPlacements(ctx context.Context, c ctrlclient.Reader, wl *kueue.Workload) (map[kueue.PodSetReference]FlavorPlacement, error) {
	out := map[kueue.PodSetReference]FlavorPlacement{}
	if wl.Status.Admission == nil {
		return out, nil
	}
	for _, a := range wl.Status.Admission.PodSetAssignments {
		p := FlavorPlacement{NodeLabels: map[string]string{}}
		for _, flavor := range a.Flavors {
			var rf kueue.ResourceFlavor
			if err := c.Get(ctx, types.NamespacedName{Name: string(flavor)}, &rf); err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return nil, fmt.Errorf("reading ResourceFlavor %s: %w", flavor, err)
			}
			maps.Copy(p.NodeLabels, rf.Spec.NodeLabels)
			for _, t := range rf.Spec.Tolerations {
				if !slices.ContainsFunc(p.Tolerations, func(have corev1.Toleration) bool { return have.MatchToleration(&t) }) {
					p.Tolerations = append(p.Tolerations, t)
				}
			}
		}
		out[a.Name] = p
	}
	return out, nil
}
