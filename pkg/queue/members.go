package queue

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	kueueconstants "sigs.k8s.io/kueue/pkg/constants"
	kueuepod "sigs.k8s.io/kueue/pkg/util/pod"
)

// ownerDepth bounds the walk from a pod up to its Workload's owner: a
// TrainJob's pods are three controllers down (TrainJob, JobSet, Job).
const ownerDepth = 3

// throughKinds are the controllers the walk reads on its way up: only the
// ones between a pod and a Workload's owner, so that the cache watches
// nothing else (and the launcher's role grants these alone).
var throughKinds = map[schema.GroupVersionKind]bool{
	{Group: "batch", Version: "v1", Kind: "Job"}:                    true,
	{Group: "jobset.x-k8s.io", Version: "v1alpha2", Kind: "JobSet"}: true,
}

// boundPods counts the Workload's pods already bound to a node, by PodSet:
// the snapshot counts those on their nodes, so the check must not place
// them again. A pod is the Workload's when the launcher labelled it so
// (LabelWorkload), when it is in the Kueue pod group the Workload is (an
// LWS group, plain pods), or when the Workload's owner (a JobSet, a Job, a
// PyTorchJob) controls it, directly or through its controllers.
func (r *TopologyFit) boundPods(ctx context.Context, wl *kueue.Workload) (map[string]int, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, ctrlclient.InNamespace(wl.Namespace)); err != nil {
		return nil, fmt.Errorf("listing pods of workload %s: %w", wl.Name, err)
	}
	owner := metav1.GetControllerOf(wl)
	bound := map[string]int{}
	for i := range pods.Items {
		p := &pods.Items[i]
		// A succeeded pod needs no room again; a failed one's replacement
		// does.
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.Labels[LabelWorkload] == wl.Name {
			bound[p.Labels[LabelPodSet]]++
			continue
		}
		if _, ours := p.Labels[LabelWorkload]; ours {
			continue
		}
		member := kueuepod.GetPodGroupName(p) == wl.Name
		if !member && owner != nil {
			var err error
			if member, err = r.controlledBy(ctx, p, owner.UID); err != nil {
				return nil, err
			}
		}
		if member {
			bound[kueuePodSet(wl, p)]++
		}
	}
	return bound, nil
}

// kueuePodSet is the PodSet of a pod Kueue admitted: the label Kueue puts
// on it, or the Workload's only PodSet.
func kueuePodSet(wl *kueue.Workload, p *corev1.Pod) string {
	if ps, ok := p.Labels[kueueconstants.PodSetLabel]; ok {
		return ps
	}
	if len(wl.Spec.PodSets) == 1 {
		return string(wl.Spec.PodSets[0].Name)
	}
	return ""
}

// controlledBy reports whether the object with UID owner controls obj,
// directly or through up to ownerDepth controllers of throughKinds, each
// read as metadata from the cache.
func (r *TopologyFit) controlledBy(ctx context.Context, obj metav1.Object, owner types.UID) (bool, error) {
	for range ownerDepth {
		ref := metav1.GetControllerOf(obj)
		if ref == nil {
			return false, nil
		}
		if ref.UID == owner {
			return true, nil
		}
		gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
		if !throughKinds[gvk] {
			return false, nil
		}
		parent := &metav1.PartialObjectMetadata{}
		parent.SetGroupVersionKind(gvk)
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: ref.Name}, parent)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading %s %s/%s, which controls %s: %w", ref.Kind, obj.GetNamespace(), ref.Name, obj.GetName(), err)
		}
		if parent.UID != ref.UID {
			return false, nil
		}
		obj = parent
	}
	return false, nil
}
