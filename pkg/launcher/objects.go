package launcher

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// create creates obj owned (as controller) by owner. If an object of the
// name exists already, it is used only if owner controls it and, for a
// gang's pod, it is of the same attempt: the launcher never adopts what
// it did not make for this owner (another job's PodGroup or pod, a user's
// Service), and never takes a pod of the last attempt for one of this.
func create(ctx context.Context, c ctrlclient.Client, owner ctrlclient.Object, obj ctrlclient.Object) error {
	if err := controllerutil.SetControllerReference(owner, obj, c.Scheme()); err != nil {
		return err
	}
	err := c.Create(ctx, obj)
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s: %w", describe(c, obj), err)
	}
	existing, ok := obj.DeepCopyObject().(ctrlclient.Object)
	if !ok {
		return fmt.Errorf("copying %s", describe(c, obj))
	}
	if err := c.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), existing); err != nil {
		// Not yet in the cache, or gone again: retried.
		return fmt.Errorf("reading the existing %s: %w", describe(c, obj), err)
	}
	if !metav1.IsControlledBy(existing, owner) {
		return nameConflict(c, existing)
	}
	if want, ok := obj.GetLabels()[LabelAttempt]; ok && existing.GetLabels()[LabelAttempt] != want {
		return fmt.Errorf("%s of attempt %s still exists, not yet replaced by attempt %s", describe(c, obj), existing.GetLabels()[LabelAttempt], want)
	}
	return nil
}

// NameConflictError is an object the launcher would create that exists
// and is not the owner's. The owner waits, with a condition naming the
// object, until it is renamed or the object goes.
type NameConflictError struct {
	// Object is the kind, namespace and name of the existing object.
	Object string
	// Controller is its controller ("ServingGroup llama"), or "no
	// controller".
	Controller string
}

// nameConflict is the NameConflictError for existing, an object the owner
// does not control.
func nameConflict(c ctrlclient.Client, existing ctrlclient.Object) *NameConflictError {
	return &NameConflictError{Object: describe(c, existing), Controller: controllerOf(existing)}
}

func (e *NameConflictError) Error() string {
	return fmt.Sprintf("%s exists and is not this object's (%s): rename this object, or delete that one", e.Object, e.Controller)
}

// reasonNameConflict is the condition reason and event of an owner
// blocked by a NameConflictError.
const reasonNameConflict = "NameConflict"

// nameConflictRecheck is how often an owner blocked by a NameConflictError
// looks again: the conflicting object is not watched.
const nameConflictRecheck = 30 * time.Second

// controllerOf names obj's controller, for a NameConflictError.
func controllerOf(obj metav1.Object) string {
	if ref := metav1.GetControllerOfNoCopy(obj); ref != nil {
		return ref.Kind + " " + ref.Name
	}
	return "no controller"
}

// describe names obj as "Kind namespace/name".
func describe(c ctrlclient.Client, obj ctrlclient.Object) string {
	kind := fmt.Sprintf("%T", obj)
	if gvk, err := apiutil.GVKForObject(obj, c.Scheme()); err == nil {
		kind = gvk.Kind
	}
	return fmt.Sprintf("%s %s/%s", kind, obj.GetNamespace(), obj.GetName())
}

// controlledBy keeps the objects owner controls: a pod or Workload that
// only carries the owner's labels is not the launcher's to delete.
func controlledBy[T any, PT interface {
	*T
	metav1.Object
}](owner metav1.Object, items []T) []T {
	return slices.DeleteFunc(items, func(item T) bool { return !metav1.IsControlledBy(PT(&item), owner) })
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

// deleteOwned deletes the object of obj's kind and name if owner controls
// it; one that is missing, or not owner's (a name conflict), is left.
func deleteOwned(ctx context.Context, c ctrlclient.Client, owner metav1.Object, obj ctrlclient.Object) error {
	if err := c.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), obj); err != nil {
		return ctrlclient.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, owner) {
		return nil
	}
	uid := obj.GetUID()
	if err := c.Delete(ctx, obj, ctrlclient.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting %s: %w", describe(c, obj), err)
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
