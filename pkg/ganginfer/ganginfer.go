// Package ganginfer decides which gang a pod belongs to from the objects
// that own it, so that a team's Job, JobSet, LeaderWorkerSet or PyTorchJob
// runs all or nothing with only schedulerName set. It only decides: the Gang plugin
// writes the PodGroup and labels the pods (pkg/plugins/gang/infer.go).
// docs/frameworks/README.md gives the rules as one table.
package ganginfer

import (
	"errors"
	"fmt"
	"strconv"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
)

const (
	// GangAnnotation on an owner (Job, JobSet, LeaderWorkerSet, PyTorchJob) says
	// whether its pods form a gang: "true" or "false". Without it, each
	// kind's default applies (docs/frameworks/README.md).
	GangAnnotation = "tessera.dev/gang"
	// GangMinMemberAnnotation on an owner sets its gang's minMember, from
	// 1 to the gang's size.
	GangMinMemberAnnotation = "tessera.dev/gang-min-member"
	// InferredLabel on a PodGroup names the kind of owner it was inferred
	// from, so that one left behind by an owner deleted with orphan
	// propagation is taken over by the next owner of its name.
	InferredLabel = "tessera.dev/inferred-from"
)

// Gang is the PodGroup a pod's owners ask for.
type Gang struct {
	// Name of the PodGroup, in the pod's namespace.
	Name string
	// Owner is the PodGroup's controller, so that garbage collection
	// removes it with the workload; it never blocks the owner's deletion.
	Owner metav1.OwnerReference
	// MinMember is how many of its pods must be placed together.
	MinMember int32
}

var jobKind = batchv1.SchemeGroupVersion.WithKind("Job")

// ErrNotServed is what an Owners returns for a kind whose API the cluster
// does not serve: no gang is inferred from it.
var ErrNotServed = errors.New("API not served")

// Owners reads the objects that own pods, from a cache or from the API. A
// missing object is an apierrors NotFound.
type Owners interface {
	Job(namespace, name string) (*batchv1.Job, error)
	JobSet(namespace, name string) (*jobsetv1alpha2.JobSet, error)
	LeaderWorkerSet(namespace, name string) (*lwsv1.LeaderWorkerSet, error)
	PyTorchJob(namespace, name string) (*kubeflowv1.PyTorchJob, error)
}

// InvalidError is an owner asking for a gang in a way that cannot be
// honoured (a malformed annotation); Object is the owner, for an event.
type InvalidError struct {
	Object runtime.Object
	// GVK is Object's kind: objects from informers carry none, and an
	// event needs it to name its object.
	GVK  schema.GroupVersionKind
	Name string
	Err  error
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s %s: %v", e.GVK.Kind, e.Name, e.Err) }

// EventObject is Object with its kind set, for an event on it.
func (e *InvalidError) EventObject() runtime.Object {
	obj := e.Object.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(e.GVK)
	return obj
}

// Infer returns the gang pod's owners ask for; nil when they ask for none.
// A NotFound error means an owner named by pod is not in owners (yet).
func Infer(owners Owners, pod *v1.Pod) (*Gang, error) {
	ref := metav1.GetControllerOf(pod)
	switch {
	case ref == nil:
		return nil, nil
	case isKind(ref, jobKind):
		return inferFromJob(owners, pod.Namespace, ref)
	case isKind(ref, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}) && pod.Labels[lwsv1.SetNameLabelKey] != "":
		return inferFromLeaderWorkerSet(owners, pod)
	case isKind(ref, pyTorchJobKind):
		return inferFromPyTorchJob(owners, pod.Namespace, ref)
	}
	return nil, nil
}

func isKind(ref *metav1.OwnerReference, gvk schema.GroupVersionKind) bool {
	return ref.Kind == gvk.Kind && ref.APIVersion == gvk.GroupVersion().String()
}

// notFoundIfOther turns a cached object of the name but not the UID that
// ref names (an earlier one, or a later one) into a NotFound.
func notFoundIfOther(obj metav1.Object, ref *metav1.OwnerReference, resource string) error {
	if obj.GetUID() != ref.UID {
		return apierrors.NewNotFound(schema.GroupResource{Resource: resource}, ref.Name)
	}
	return nil
}

func inferFromJob(owners Owners, namespace string, ref *metav1.OwnerReference) (*Gang, error) {
	job, err := owners.Job(namespace, ref.Name)
	if err != nil {
		return nil, err
	}
	if err := notFoundIfOther(job, ref, "jobs"); err != nil {
		return nil, err
	}
	if jsRef := metav1.GetControllerOf(job); jsRef != nil && isKind(jsRef, jobSetKind) {
		g, err := inferFromJobSet(owners, job, jsRef)
		if !errors.Is(err, ErrNotServed) {
			return g, err
		}
	}
	minMember, gang, err := JobGang(job)
	if err != nil {
		return nil, &InvalidError{Object: job, GVK: jobKind, Name: namespace + "/" + job.Name, Err: err}
	}
	if !gang {
		return nil, nil
	}
	return &Gang{Name: job.Name, Owner: controllerRef(job, jobKind), MinMember: remainingMinMember(job, minMember)}, nil
}

// controllerRef makes owner the controller of a PodGroup, without blocking
// its deletion: deleting the workload does not wait for its PodGroup, and
// the scheduler needs no update permission on the owner's finalizers.
func controllerRef(owner metav1.Object, gvk schema.GroupVersionKind) metav1.OwnerReference {
	ref := metav1.NewControllerRef(owner, gvk)
	ref.BlockOwnerDeletion = ptr.To(false)
	return *ref
}

// asked reads GangAnnotation: set is false without it.
func asked(annotations map[string]string) (gang, set bool, err error) {
	v, set := annotations[GangAnnotation]
	switch {
	case !set:
		return false, false, nil
	case v == "true":
		return true, true, nil
	case v == "false":
		return false, true, nil
	}
	return false, true, fmt.Errorf("annotation %s: %q is neither \"true\" nor \"false\"", GangAnnotation, v)
}

// minMemberOf reads GangMinMemberAnnotation, def without it.
func minMemberOf(annotations map[string]string, size int32, def int32, what string) (int32, error) {
	v, set := annotations[GangMinMemberAnnotation]
	if !set {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || int32(n) > size {
		return 0, fmt.Errorf("annotation %s: %q is not a number from 1 to %s (%d)", GangMinMemberAnnotation, v, what, size)
	}
	return int32(n), nil
}

// JobGang returns the minMember of the gang job asks for; ok is false when
// its pods are not a gang, and err names the annotation that is wrong.
// Without annotations, an Indexed Job that runs every index at once
// (parallelism = completions, above 1) is a gang of its parallelism; more
// completions than parallelism is a work queue, whose later pods come one
// at a time as others finish.
func JobGang(job *batchv1.Job) (minMember int32, ok bool, err error) {
	parallelism := podsAtOnce(job.Spec)
	completions := ptr.Deref(job.Spec.Completions, ptr.Deref(job.Spec.Parallelism, 1))
	gang, set, err := asked(job.Annotations)
	if err != nil {
		return 0, false, err
	}
	if !set {
		indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
		gang = indexed && parallelism >= 2 && completions == parallelism
	}
	if !gang {
		return 0, false, nil
	}
	minMember, err = minMemberOf(job.Annotations, parallelism, parallelism, "the Job's parallelism")
	if err != nil {
		return 0, false, err
	}
	return minMember, true, nil
}

// podsAtOnce is how many pods a Job runs at once when nothing has finished.
func podsAtOnce(spec batchv1.JobSpec) int32 {
	parallelism := ptr.Deref(spec.Parallelism, 1)
	return min(parallelism, ptr.Deref(spec.Completions, parallelism))
}

// remainingMinMember is the gang's minMember for the pods the Job still
// runs: members that finished do not come back, so a Job whose failed
// index is retried after the others succeeded waits for no one.
func remainingMinMember(job *batchv1.Job, minMember int32) int32 {
	left := ptr.Deref(job.Spec.Completions, ptr.Deref(job.Spec.Parallelism, 1)) - job.Status.Succeeded
	return max(1, min(minMember, left))
}
