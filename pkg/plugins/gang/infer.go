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
// gang is refused at PreFilter (in the leader's scheduling cycle, so a
// standby replica writes nothing) while the plugin creates or updates the
// Job's PodGroup (named after the Job, owned by it, so garbage collection
// removes it) and labels the pod into it; the label brings it back as a
// gang member like any.

const (
	// GangAnnotation on a Job says whether its pods form a gang: "true" or
	// "false"; without it, an Indexed Job that runs every index at once
	// (parallelism = completions, above 1) does.
	GangAnnotation = "tessera.dev/gang"
	// GangMinMemberAnnotation on a Job sets its gang's minMember (1 to its
	// parallelism); without it, minMember is the Job's parallelism
	// (at most its completions).
	GangMinMemberAnnotation = "tessera.dev/gang-min-member"
	// inferredLabel marks a PodGroup the plugin made for a Job, so that
	// one left behind by a Job deleted with orphan propagation (its owner
	// reference stripped) is taken over by the next Job of its name.
	inferredLabel = "tessera.dev/inferred-from"
)

// jobGang returns the minMember of the gang job asks for; ok is false when
// its pods are not a gang, and err names the annotation that is wrong.
func jobGang(job *batchv1.Job) (minMember int32, ok bool, err error) {
	parallelism := ptr.Deref(job.Spec.Parallelism, 1)
	completions := ptr.Deref(job.Spec.Completions, parallelism)
	parallelism = min(parallelism, completions)
	switch v, set := job.Annotations[GangAnnotation]; {
	case !set:
		indexed := ptr.Deref(job.Spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
		// More completions than parallelism is a work queue: its later
		// pods come one at a time as others finish.
		if !indexed || parallelism < 2 || completions != parallelism {
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
	return minMember, true, nil
}

// remainingMinMember is the gang's minMember for the pods the Job still
// runs: members that finished do not come back, so a Job whose failed
// index is retried after the others succeeded waits for no one.
func remainingMinMember(job *batchv1.Job, minMember int32) int32 {
	left := ptr.Deref(job.Spec.Completions, ptr.Deref(job.Spec.Parallelism, 1)) - job.Status.Succeeded
	return max(1, min(minMember, left))
}

// controllingJob returns the Job that controls pod, if one does.
func controllingJob(pod *v1.Pod) (*metav1.OwnerReference, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return nil, false
	}
	return ref, true
}

// inference joins pods to their Jobs' gangs off the scheduling goroutine,
// one Job at a time.
type inference struct {
	jobs     batchlisters.JobLister
	mu       sync.Mutex
	inFlight sets.Set[types.UID]
}

func newInference(jobs batchlisters.JobLister) *inference {
	return &inference{jobs: jobs, inFlight: sets.New[types.UID]()}
}

// joiningGang returns, for a pod outside any labelled gang, the status
// that refuses it while it joins its Job's gang (started here); nil when
// its Job makes no gang of it (it is scheduled alone).
func (g *Gang) joiningGang(ctx context.Context, pod *v1.Pod) *fwk.Status {
	ref, ok := controllingJob(pod)
	if !ok || g.shared.inference == nil {
		return nil
	}
	job, err := g.shared.inference.jobs.Jobs(pod.Namespace).Get(ref.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return fwk.AsStatus(err)
	}
	if err != nil || job.UID != ref.UID {
		// Not in the scheduler's cache yet: read it from the API.
		g.shared.inference.join(ctx, g, pod, ref, nil)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("reading Job %s/%s, which controls it, to see whether it is a gang", pod.Namespace, ref.Name))
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
	g.shared.inference.join(ctx, g, pod, ref, job)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("joining gang %s/%s of its Job (minMember %d)", job.Namespace, job.Name, remainingMinMember(job, minMember)))
}

// join, on a goroutine and once per Job at a time, brings the Job's
// PodGroup up to date and labels the pod into it (the label's update brings
// the pod back); job is nil when it must be read from the API first, and
// then a pod it makes no gang of is sent back to the queue.
func (inf *inference) join(ctx context.Context, g *Gang, pod *v1.Pod, ref *metav1.OwnerReference, job *batchv1.Job) {
	inf.mu.Lock()
	if inf.inFlight.Has(ref.UID) {
		inf.mu.Unlock()
		return
	}
	inf.inFlight.Insert(ref.UID)
	inf.mu.Unlock()
	logger := klog.FromContext(ctx)
	go func() {
		defer func() {
			inf.mu.Lock()
			inf.inFlight.Delete(ref.UID)
			inf.mu.Unlock()
		}()
		if err := g.join(g.shared.ctx, pod, ref, job); err != nil {
			logger.Error(err, "Joining a pod to its Job's gang", "pod", klog.KObj(pod), "job", ref.Name)
			g.recorder.Event(pod, v1.EventTypeWarning, "GangInference", err.Error())
		}
	}()
}

func (g *Gang) join(ctx context.Context, pod *v1.Pod, ref *metav1.OwnerReference, job *batchv1.Job) error {
	if job == nil {
		var err error
		if job, err = g.handle.ClientSet().BatchV1().Jobs(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("reading Job %s/%s: %w", pod.Namespace, ref.Name, err)
		}
	}
	minMember, gang, err := jobGang(job)
	if err != nil || !gang || job.UID != ref.UID {
		// Decided from the cache on its next try.
		g.handle.Activate(klog.FromContext(ctx), map[string]*v1.Pod{pod.Namespace + "/" + pod.Name: pod})
		return nil
	}
	if err := g.ensureJobPodGroup(ctx, job, remainingMinMember(job, minMember)); err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, schedv1alpha1.PodGroupLabel, job.Name)
	_, err = g.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// ensureJobPodGroup makes job's PodGroup, owned by the Job, with
// minMember, or brings the one it owns to minMember. One left by an
// earlier Job of the same name (inferred, its controller gone) is taken
// over; any other PodGroup of that name is left alone.
func (g *Gang) ensureJobPodGroup(ctx context.Context, job *batchv1.Job, minMember int32) error {
	owner := metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))
	// Deleting the Job does not wait for its PodGroup, and the scheduler
	// needs no update on jobs/finalizers.
	owner.BlockOwnerDeletion = ptr.To(false)
	client := g.shared.pgClient.SchedulingV1alpha1().PodGroups(job.Namespace)
	existing, err := g.pgLister.PodGroups(job.Namespace).Get(job.Name)
	if apierrors.IsNotFound(err) {
		pg := &schedv1alpha1.PodGroup{
			ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name,
				Labels: map[string]string{inferredLabel: "Job"}, OwnerReferences: []metav1.OwnerReference{*owner}},
			Spec: schedv1alpha1.PodGroupSpec{MinMember: minMember},
		}
		_, err = client.Create(ctx, pg, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	controller := metav1.GetControllerOf(existing)
	ours := controller != nil && controller.UID == job.UID
	if !ours && existing.Labels[inferredLabel] != "Job" {
		return fmt.Errorf("PodGroup %s/%s exists and is not Job %s's: rename the Job, or give its pods the label %s yourself", job.Namespace, job.Name, job.Name, schedv1alpha1.PodGroupLabel)
	}
	if ours && existing.Spec.MinMember == minMember {
		return nil
	}
	// Job names are unique: one of this name with another UID is gone.
	if !ours && controller != nil && (controller.Kind != "Job" || controller.Name != job.Name) {
		return fmt.Errorf("PodGroup %s/%s belongs to %s %s", job.Namespace, job.Name, controller.Kind, controller.Name)
	}
	pg := existing.DeepCopy()
	pg.Spec.MinMember = minMember
	pg.OwnerReferences = []metav1.OwnerReference{*owner}
	_, err = client.Update(ctx, pg, metav1.UpdateOptions{})
	return err
}
