package launcher

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// deletePods deletes pods at once (no grace: a gang torn down is torn down
// whole) and reports how many are still there, terminating.
func deletePods(ctx context.Context, c ctrlclient.Client, pods []corev1.Pod) (left int, err error) {
	for i := range pods {
		p := &pods[i]
		left++
		if p.DeletionTimestamp != nil {
			continue
		}
		if err := c.Delete(ctx, p, &ctrlclient.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			if apierrors.IsNotFound(err) {
				left--
				continue
			}
			return left, fmt.Errorf("deleting pod %s: %w", p.Name, err)
		}
	}
	return left, nil
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
