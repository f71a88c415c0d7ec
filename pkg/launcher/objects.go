package launcher

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// create creates obj owned (as controller) by owner; one that exists
// already is left as it is.
func create(ctx context.Context, c ctrlclient.Client, owner ctrlclient.Object, obj ctrlclient.Object) error {
	if err := controllerutil.SetControllerReference(owner, obj, c.Scheme()); err != nil {
		return err
	}
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// deletePods deletes pods gracefully, each with its own
// terminationGracePeriodSeconds (a training worker checkpoints, a vLLM
// server finishes its requests), and reports how many are still there,
// terminating. Callers create what replaces them only once left is 0: the
// GPUs a pod holds are free only once it is gone.
func deletePods(ctx context.Context, c ctrlclient.Client, pods []corev1.Pod) (left int, err error) {
	for i := range pods {
		p := &pods[i]
		left++
		if p.DeletionTimestamp != nil {
			continue
		}
		if err := c.Delete(ctx, p, ctrlclient.Preconditions{UID: &p.UID}); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
				// Gone, or another pod of the name: the cache catches up.
				left--
				continue
			}
			return left, fmt.Errorf("deleting pod %s: %w", p.Name, err)
		}
		klog.FromContext(ctx).V(2).Info("Deleting pod gracefully", "pod", klog.KObj(p), "gracePeriodSeconds", ptr.Deref(p.Spec.TerminationGracePeriodSeconds, 30))
	}
	return left, nil
}

// drainAndDeletePods takes serving pods out of the group's API Service
// before deleting them: a pod still labelled serving is relabelled first
// and deleted on a later pass, once the cache shows it relabelled (the
// Service's endpoints follow the same label). Others are deleted at once,
// gracefully. It reports how many pods are still there.
func drainAndDeletePods(ctx context.Context, c ctrlclient.Client, pods []corev1.Pod) (left int, err error) {
	relabel, drained := drainPlan(pods)
	for i := range relabel {
		p := &relabel[i]
		patch := ctrlclient.MergeFrom(p.DeepCopy())
		p.Labels[LabelServing] = "false"
		if err := c.Patch(ctx, p, patch); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return left, fmt.Errorf("taking pod %s out of its Service: %w", p.Name, err)
		}
		klog.FromContext(ctx).V(2).Info("Took pod out of its Service before deleting it", "pod", klog.KObj(p))
		left++
	}
	n, err := deletePods(ctx, c, drained)
	return left + n, err
}

// drainPlan splits pods into those to take out of the Service first (still
// labelled serving, running) and those to delete now.
func drainPlan(pods []corev1.Pod) (relabel, del []corev1.Pod) {
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Labels[LabelServing] == "true" && !podTerminal(&p) {
			relabel = append(relabel, p)
		} else {
			del = append(del, p)
		}
	}
	return relabel, del
}

// deleteIgnoringMissing deletes obj if it exists.
func deleteIgnoringMissing(ctx context.Context, c ctrlclient.Client, obj ctrlclient.Object) error {
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// setCondition sets the condition of type typ to true with reason and
// message, and every other of types to false, so that exactly one of a
// phase's conditions is true. It reports whether anything changed.
func setCondition(conds *[]metav1.Condition, generation int64, typ string, types []string, reason, message string) bool {
	changed := false
	for _, t := range types {
		c := metav1.Condition{Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: generation}
		if t != typ {
			existing := apimeta.FindStatusCondition(*conds, t)
			if existing == nil {
				continue
			}
			c.Status, c.Reason, c.Message = metav1.ConditionFalse, existing.Reason, existing.Message
		}
		if apimeta.SetStatusCondition(conds, c) {
			changed = true
		}
	}
	return changed
}

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}
