package gang

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// Gangs inferred from a pod's owner, so that a team's Job runs all or
// nothing with only schedulerName set: a pod that names a Tessera profile,
// carries no pod-group label and is controlled by a Job that asks for a
// gang is held at PreEnqueue while the plugin creates the Job's PodGroup
// (named after the Job, owned by it, so garbage collection removes it)
// and labels the pod into it; from then on it is a gang member like any.

const (
	// GangAnnotation on a Job says whether its pods form a gang: "true" or
	// "false"; without it, an Indexed Job with parallelism above 1 does.
	GangAnnotation = "tessera.dev/gang"
	// GangMinMemberAnnotation on a Job sets its gang's minMember (1 to its
	// parallelism); without it, minMember is the Job's parallelism
	// (at most its completions).
	GangMinMemberAnnotation = "tessera.dev/gang-min-member"
)

// jobGang returns the minMember of the gang job asks for; ok is false when
// its pods are not a gang, and err names the annotation that is wrong.
func jobGang(job *batchv1.Job) (minMember int32, ok bool, err error) {
	parallelism := ptr.Deref(job.Spec.Parallelism, 1)
	if c := job.Spec.Completions; c != nil && *c < parallelism {
		parallelism = *c
	}
	switch v, set := job.Annotations[GangAnnotation]; {
	case !set:
		indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
		if !indexed || parallelism < 2 {
			return 0, false, nil
		}
	case v == "false":
		return 0, false, nil
	case v != "true":
		return 0, false, fmt.Errorf("annotation %s: %q is neither \"true\" nor \"false\"", GangAnnotation, v)
	}
	minMember = parallelism
	if v, set := job.Annotations[GangMinMemberAnnotation]; set {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 || int32(n) > parallelism {
			return 0, false, fmt.Errorf("annotation %s: %q is not a number from 1 to the Job's parallelism (%d)", GangMinMemberAnnotation, v, parallelism)
		}
		minMember = int32(n)
	}
	return minMember, minMember > 0, nil
}

// controllingJob returns the Job that controls pod, if one does.
func controllingJob(pod *v1.Pod) (*metav1.OwnerReference, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return nil, false
	}
	return ref, true
}

// inference creates inferred gangs' PodGroups and labels their pods, off
// the scheduling queue's goroutine; once per pod at a time.
type inference struct {
	jobs     batchlisters.JobLister
	inFlight sync.Mutex
	pods     sets.Set[types.UID]
}

func newInference(jobs batchlisters.JobLister) *inference {
	return &inference{jobs: jobs, pods: sets.New[types.UID]()}
}

// inferGang decides, for a pod outside any labelled gang, whether its Job
// makes it a gang member: nil when it does not (it is scheduled alone);
// otherwise the status that holds it until its label arrives.
func (g *Gang) inferGang(ctx context.Context, pod *v1.Pod) *fwk.Status {
	ref, ok := controllingJob(pod)
	if !ok || g.shared.inference == nil {
		return nil
	}
	job, err := g.shared.inference.jobs.Jobs(pod.Namespace).Get(ref.Name)
	if apierrors.IsNotFound(err) || err == nil && job.UID != ref.UID {
		// Its Job is not in the scheduler's cache yet; the Job's arrival
		// brings the pod back (EventsToRegister).
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("waiting for Job %s/%s, which controls it, to decide whether it is a gang", pod.Namespace, ref.Name))
	}
	if err != nil {
		return fwk.AsStatus(err)
	}
	minMember, gang, err := jobGang(job)
	if err != nil {
		msg := fmt.Sprintf("Job %s/%s: %v", job.Namespace, job.Name, err)
		g.recorder.Event(job, v1.EventTypeWarning, "InvalidGang", msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	if !gang {
		return nil
	}
	g.shared.inference.join(ctx, g, pod, job, minMember)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("joining gang %s/%s of its Job (minMember %d)", job.Namespace, job.Name, minMember))
}

// join creates the Job's PodGroup if it is missing and labels the pod into
// it, on a goroutine; the pod's update brings it back to PreEnqueue. A
// PodGroup of the Job's name that the Job does not own is not taken over.
func (inf *inference) join(ctx context.Context, g *Gang, pod *v1.Pod, job *batchv1.Job, minMember int32) {
	inf.inFlight.Lock()
	if inf.pods.Has(pod.UID) {
		inf.inFlight.Unlock()
		return
	}
	inf.pods.Insert(pod.UID)
	inf.inFlight.Unlock()
	logger := klog.FromContext(ctx)
	go func() {
		defer func() {
			inf.inFlight.Lock()
			inf.pods.Delete(pod.UID)
			inf.inFlight.Unlock()
		}()
		if err := g.ensureJobPodGroup(g.shared.ctx, job, minMember); err != nil {
			logger.Error(err, "Inferring a gang", "job", klog.KObj(job), "pod", klog.KObj(pod))
			g.recorder.Event(pod, v1.EventTypeWarning, "GangInference", err.Error())
			return
		}
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, schedv1alpha1.PodGroupLabel, job.Name)
		if _, err := g.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(g.shared.ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			logger.Error(err, "Labelling a pod into its Job's gang", "pod", klog.KObj(pod))
		}
	}()
}

// ensureJobPodGroup creates job's PodGroup, owned by the Job.
func (g *Gang) ensureJobPodGroup(ctx context.Context, job *batchv1.Job, minMember int32) error {
	pg := &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name, OwnerReferences: []metav1.OwnerReference{
			*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job")),
		}},
		Spec: schedv1alpha1.PodGroupSpec{MinMember: minMember},
	}
	_, err := g.shared.pgClient.SchedulingV1alpha1().PodGroups(job.Namespace).Create(ctx, pg, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing, err := g.shared.pgClient.SchedulingV1alpha1().PodGroups(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if owner := metav1.GetControllerOf(existing); owner == nil || owner.UID != job.UID {
		return fmt.Errorf("PodGroup %s/%s exists and is not Job %s's: rename the Job, or label its pod template with %s yourself", job.Namespace, job.Name, job.Name, schedv1alpha1.PodGroupLabel)
	}
	return nil
}
