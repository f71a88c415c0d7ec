package launcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/queue"
)

// TrainingJob phases (also its condition types).
const (
	PhaseQueued     = tesserav1alpha1.TrainingJobPhase("Queued")
	PhaseAdmitted   = tesserav1alpha1.TrainingJobPhase("Admitted")
	PhaseRunning    = tesserav1alpha1.TrainingJobPhase("Running")
	PhaseRestarting = tesserav1alpha1.TrainingJobPhase("Restarting")
	PhaseSucceeded  = tesserav1alpha1.TrainingJobPhase("Succeeded")
	PhaseFailed     = tesserav1alpha1.TrainingJobPhase("Failed")
)

var trainingPhases = []string{"Queued", "Admitted", "Running", "Restarting", "Succeeded", "Failed"}

// TrainingJobReconciler runs TrainingJobs as Kueue Workloads and gangs.
type TrainingJobReconciler struct {
	Client   ctrlclient.Client
	Recorder events.EventRecorder
	Clock    clock.Clock
	Metrics  *Metrics
}

// SetupWithManager registers the controller.
func (r *TrainingJobReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("trainingjob").
		For(&tesserav1alpha1.TrainingJob{}).
		Owns(&kueue.Workload{}).
		Owns(&corev1.Pod{}).
		Complete(r)
}

// Reconcile moves one TrainingJob along: Queued until Kueue admits its
// Workload, then its gang created, Running, restarted whole on a member's
// failure, and Succeeded or Failed. A job one of whose objects' names is
// taken waits in its phase, with reason NameConflict.
func (r *TrainingJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var job tesserav1alpha1.TrainingJob
	if err := r.Client.Get(ctx, req.NamespacedName, &job); err != nil {
		return ctrl.Result{}, ctrlclient.IgnoreNotFound(err)
	}
	result, err := r.reconcile(ctx, &job)
	var conflict *NameConflictError
	if !errors.As(err, &conflict) {
		return result, err
	}
	return ctrl.Result{RequeueAfter: nameConflictRecheck}, r.blockOnConflict(ctx, &job, conflict)
}

// blockOnConflict keeps the job in its phase with reason NameConflict and
// the conflict's message; an event says so when the conflict starts.
func (r *TrainingJobReconciler) blockOnConflict(ctx context.Context, job *tesserav1alpha1.TrainingJob, conflict *NameConflictError) error {
	phase := job.Status.Phase
	if phase == "" {
		// setPhase's own event announces the first phase.
		return r.setPhase(ctx, job, PhaseQueued, reasonNameConflict, conflict.Error())
	}
	if c := apimeta.FindStatusCondition(job.Status.Conditions, string(phase)); c == nil || c.Reason != reasonNameConflict || c.Message != conflict.Error() {
		r.Recorder.Eventf(job, nil, corev1.EventTypeWarning, reasonNameConflict, reasonNameConflict, "%s", conflict.Error())
	}
	return r.setPhase(ctx, job, phase, reasonNameConflict, conflict.Error())
}

func (r *TrainingJobReconciler) reconcile(ctx context.Context, job *tesserav1alpha1.TrainingJob) (ctrl.Result, error) {
	pods, err := r.pods(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	if job.DeletionTimestamp != nil {
		return ctrl.Result{}, r.cleanup(ctx, job, pods)
	}
	if controllerutil.AddFinalizer(job, finalizer) {
		return ctrl.Result{}, r.Client.Update(ctx, job)
	}
	if job.Status.Phase == PhaseSucceeded || job.Status.Phase == PhaseFailed {
		return ctrl.Result{}, r.finish(ctx, job, pods)
	}
	wl, err := r.workload(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case evicted(wl):
		return ctrl.Result{}, r.evict(ctx, job, wl, pods)
	case !admitted(wl):
		if _, err := deletePods(ctx, r.Client, pods); err != nil {
			return ctrl.Result{}, err
		}
		if err := syncPodsReady(ctx, r.Client, wl, false, r.Clock); err != nil {
			return ctrl.Result{}, err
		}
		if msg := evictionMessage(wl); msg != "" {
			// Requeued after an eviction: say so until admitted again.
			return ctrl.Result{}, r.setPhase(ctx, job, PhaseQueued, "Evicted", "evicted by Kueue ("+msg+"); "+waitReason(wl))
		}
		return ctrl.Result{}, r.setPhase(ctx, job, PhaseQueued, "Waiting", waitReason(wl))
	default:
		return r.run(ctx, job, wl, pods)
	}
}

// workload returns the job's Workload, creating it if it is missing.
func (r *TrainingJobReconciler) workload(ctx context.Context, job *tesserav1alpha1.TrainingJob) (*kueue.Workload, error) {
	var wl kueue.Workload
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: job.Namespace, Name: WorkloadName(job.Name)}, &wl)
	if err == nil && !metav1.IsControlledBy(&wl, job) {
		return nil, nameConflict(r.Client, &wl)
	}
	if err == nil || !apierrors.IsNotFound(err) {
		return &wl, err
	}
	created, err := newWorkload(ctx, r.Client, job.Namespace, WorkloadName(job.Name), "TrainingJob", job.Name, job.Spec.QueueName, job.Spec.PriorityClassName, trainingPodSets(job))
	if err != nil {
		return nil, err
	}
	if err := create(ctx, r.Client, job, created); err != nil {
		return nil, err
	}
	r.Recorder.Eventf(job, nil, corev1.EventTypeNormal, "Queued", "Queued", "Created Kueue Workload %s in LocalQueue %s", created.Name, job.Spec.QueueName)
	return created, nil
}

// evict tears the gang down whole after Kueue evicted the Workload
// (preemption, or the cohort reclaiming borrowed quota), then releases the
// quota so that Kueue requeues the job.
func (r *TrainingJobReconciler) evict(ctx context.Context, job *tesserav1alpha1.TrainingJob, wl *kueue.Workload, pods []corev1.Pod) error {
	left, err := deletePods(ctx, r.Client, pods)
	if err != nil {
		return err
	}
	message := "evicted by Kueue (" + evictionMessage(wl) + ")"
	if left > 0 {
		return r.setPhase(ctx, job, PhaseQueued, "Evicted", fmt.Sprintf("%s; stopping the gang (%d pods left)", message, left))
	}
	if job.Status.Phase == PhaseRunning || job.Status.Phase == PhaseAdmitted {
		r.Metrics.restarted(kindTrainingJob, restartEvicted)
	}
	if err := releaseEvicted(ctx, r.Client, wl, r.Clock); err != nil {
		return fmt.Errorf("releasing evicted workload %s: %w", wl.Name, err)
	}
	return r.setPhase(ctx, job, PhaseQueued, "Evicted", message+"; requeued")
}

// run keeps an admitted job's gang: restarts it whole on a failure, ends
// the job when its workers complete, creates what is missing otherwise.
func (r *TrainingJobReconciler) run(ctx context.Context, job *tesserav1alpha1.TrainingJob, wl *kueue.Workload, pods []corev1.Pod) (ctrl.Result, error) {
	attempt := job.Status.Restarts
	var stale, current []corev1.Pod
	for _, p := range pods {
		if p.Labels[LabelAttempt] == strconv.Itoa(int(attempt)) {
			current = append(current, p)
		} else {
			stale = append(stale, p)
		}
	}
	if len(stale) > 0 {
		// The next attempt starts only once the last one's pods are gone
		// (their checkpoint grace spent, their GPUs free).
		left, err := deletePods(ctx, r.Client, stale)
		if err != nil {
			return ctrl.Result{}, err
		}
		if left > 0 {
			if err := syncPodsReady(ctx, r.Client, wl, false, r.Clock); err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{}, r.setPhase(ctx, job, PhaseRestarting, "StoppingGang",
				fmt.Sprintf("restart %d: waiting for %d pods of the last attempt to stop before attempt %d starts", attempt, left, attempt))
		}
	}
	workers := admittedCount(wl, RoleWorker, maxWorkers(job))
	var failed *corev1.Pod
	succeeded, running := 0, 0
	var active []corev1.Pod
	for i := range current {
		p := &current[i]
		if !podTerminal(p) {
			active = append(active, *p)
		}
		switch {
		case p.Status.Phase == corev1.PodFailed && failed == nil:
			failed = p
		case p.Status.Phase == corev1.PodSucceeded && p.Labels[LabelRole] == RoleWorker:
			succeeded++
		case p.Status.Phase == corev1.PodRunning:
			running++
		}
	}
	if failed != nil {
		return ctrl.Result{}, r.restart(ctx, job, current, failed)
	}
	if succeeded == int(workers) {
		return ctrl.Result{}, r.end(ctx, job, active, true, fmt.Sprintf("all %d workers completed", workers))
	}

	if job.Status.Phase == PhaseQueued || job.Status.Phase == "" {
		r.Metrics.admittedAfter(kindTrainingJob, r.Clock.Since(job.CreationTimestamp.Time))
	}
	flavors, err := queue.FlavorPlacements(ctx, r.Client, wl)
	if err != nil {
		return ctrl.Result{}, err
	}
	members := workers
	if job.Spec.Coordinator != nil {
		members++
	}
	if err := create(ctx, r.Client, job, headlessService(job)); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensurePodGroup(ctx, job, members); err != nil {
		return ctrl.Result{}, err
	}
	want := make([]*corev1.Pod, 0, members)
	for rank := range int(workers) {
		want = append(want, trainingPod(job, RoleWorker, rank, workers, attempt, flavors[RoleWorker]))
	}
	if job.Spec.Coordinator != nil {
		want = append(want, trainingPod(job, RoleCoordinator, -1, workers, attempt, flavors[RoleCoordinator]))
	}
	have := map[string]bool{}
	for _, p := range current {
		have[p.Name] = true
	}
	for _, p := range want {
		if !have[p.Name] {
			if err := create(ctx, r.Client, job, p); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if err := syncPodsReady(ctx, r.Client, wl, gangReady(current, len(want)), r.Clock); err != nil {
		return ctrl.Result{}, err
	}
	if running == len(want) {
		return ctrl.Result{}, r.setPhase(ctx, job, PhaseRunning, "GangRunning", fmt.Sprintf("%d pods running (attempt %d) in ClusterQueue %s", running, attempt, wl.Status.Admission.ClusterQueue))
	}
	return ctrl.Result{}, r.setPhase(ctx, job, PhaseAdmitted, "Admitted", fmt.Sprintf("admitted to ClusterQueue %s; %d of %d pods running (attempt %d)", wl.Status.Admission.ClusterQueue, running, len(want), attempt))
}

// gangReady reports whether all want pods of the attempt are running and
// ready, or have succeeded (what Kueue's PodsReady means: a worker that
// finished first does not make the gang unready).
func gangReady(current []corev1.Pod, want int) bool {
	ready := 0
	for i := range current {
		p := &current[i]
		if p.Status.Phase == corev1.PodSucceeded || (p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p)) {
			ready++
		}
	}
	return ready == want
}

// ensurePodGroup creates the gang's PodGroup, or sets its size to the
// admitted member count (an elastic job may be admitted at another size).
func (r *TrainingJobReconciler) ensurePodGroup(ctx context.Context, job *tesserav1alpha1.TrainingJob, members int32) error {
	var pg schedv1alpha1.PodGroup
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: job.Namespace, Name: job.Name}, &pg)
	if apierrors.IsNotFound(err) {
		return create(ctx, r.Client, job, podGroup(job.Name, job.Namespace, members))
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&pg, job) {
		return nameConflict(r.Client, &pg)
	}
	if pg.Spec.MinMember == members {
		return nil
	}
	pg.Spec.MinMember = members
	return r.Client.Update(ctx, &pg)
}

// restart deletes the whole gang after a member failed; past the backoff
// limit, the job fails instead. The status is written first: it is what
// later reconciles go by once the failed pod is gone (the pods of an older
// attempt are deleted by run, those of an ended job by finish).
func (r *TrainingJobReconciler) restart(ctx context.Context, job *tesserav1alpha1.TrainingJob, pods []corev1.Pod, failed *corev1.Pod) error {
	why := fmt.Sprintf("pod %s failed", failed.Name)
	if failed.Status.Reason != "" || failed.Status.Message != "" {
		why += fmt.Sprintf(" (%s: %s)", failed.Status.Reason, failed.Status.Message)
	}
	limit := int32(3)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	if job.Status.Restarts >= limit {
		return r.end(ctx, job, pods, false, fmt.Sprintf("%s; backoff limit %d reached", why, limit))
	}
	job.Status.Restarts++
	if err := r.setPhase(ctx, job, PhaseRestarting, "MemberFailed", fmt.Sprintf("%s; restarting the whole gang (restart %d of %d)", why, job.Status.Restarts, limit)); err != nil {
		return err
	}
	r.Metrics.restarted(kindTrainingJob, restartMemberFailed)
	_, err := deletePods(ctx, r.Client, pods)
	return err
}

// end records that the job ended, then finishes it.
func (r *TrainingJobReconciler) end(ctx context.Context, job *tesserav1alpha1.TrainingJob, pods []corev1.Pod, succeeded bool, message string) error {
	phase, reason := PhaseSucceeded, "Completed"
	if !succeeded {
		phase, reason = PhaseFailed, "BackoffLimitExceeded"
	}
	if err := r.setPhase(ctx, job, phase, reason, message); err != nil {
		return err
	}
	r.Metrics.jobFinished(succeeded)
	return r.finish(ctx, job, pods)
}

// finish makes an ended job's state true: its pods that still run are
// deleted and its Workload is finished, returning the quota. It is
// repeated until it holds.
func (r *TrainingJobReconciler) finish(ctx context.Context, job *tesserav1alpha1.TrainingJob, pods []corev1.Pod) error {
	active := slices.DeleteFunc(slices.Clone(pods), func(p corev1.Pod) bool { return podTerminal(&p) })
	if _, err := deletePods(ctx, r.Client, active); err != nil {
		return err
	}
	var wl kueue.Workload
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: job.Namespace, Name: WorkloadName(job.Name)}, &wl); err != nil {
		return ctrlclient.IgnoreNotFound(err)
	}
	message := ""
	if c := apimeta.FindStatusCondition(job.Status.Conditions, string(job.Status.Phase)); c != nil {
		message = c.Message
	}
	if err := finishWorkload(ctx, r.Client, &wl, job.Status.Phase == PhaseSucceeded, message, r.Clock); err != nil {
		return fmt.Errorf("finishing workload %s: %w", wl.Name, err)
	}
	return nil
}

// setPhase writes the phase and its condition; an event marks each change
// of phase.
func (r *TrainingJobReconciler) setPhase(ctx context.Context, job *tesserav1alpha1.TrainingJob, phase tesserav1alpha1.TrainingJobPhase, reason, message string) error {
	before := job.Status.Phase
	changed := setCondition(&job.Status.Conditions, job.Generation, string(phase), trainingPhases, reason, message)
	if !changed && before == phase {
		return nil
	}
	job.Status.Phase = phase
	if err := r.Client.Status().Update(ctx, job); err != nil {
		return fmt.Errorf("updating status of TrainingJob %s: %w", job.Name, err)
	}
	if before != phase {
		eventType := corev1.EventTypeNormal
		if phase == PhaseFailed || phase == PhaseRestarting || reason == "Evicted" || reason == reasonNameConflict {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(job, nil, eventType, reason, reason, "%s", message)
		klog.FromContext(ctx).V(2).Info("TrainingJob phase", "job", klog.KObj(job), "phase", phase, "message", message)
	}
	return nil
}

func (r *TrainingJobReconciler) pods(ctx context.Context, job *tesserav1alpha1.TrainingJob) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.Client.List(ctx, &list, ctrlclient.InNamespace(job.Namespace), ctrlclient.MatchingLabels{LabelTrainingJob: job.Name}); err != nil {
		return nil, fmt.Errorf("listing pods of TrainingJob %s: %w", job.Name, err)
	}
	return controlledBy(job, list.Items), nil
}

// cleanup deletes everything the job made, pods first, then lets it go.
func (r *TrainingJobReconciler) cleanup(ctx context.Context, job *tesserav1alpha1.TrainingJob, pods []corev1.Pod) error {
	left, err := deletePods(ctx, r.Client, pods)
	if err != nil || left > 0 {
		return err
	}
	for _, obj := range []ctrlclient.Object{
		&schedv1alpha1.PodGroup{ObjectMeta: objectMeta(job.Namespace, job.Name)},
		&corev1.Service{ObjectMeta: objectMeta(job.Namespace, job.Name)},
		&kueue.Workload{ObjectMeta: objectMeta(job.Namespace, WorkloadName(job.Name))},
	} {
		if err := deleteOwned(ctx, r.Client, job, obj); err != nil {
			return err
		}
	}
	if controllerutil.RemoveFinalizer(job, finalizer) {
		return r.Client.Update(ctx, job)
	}
	return nil
}

// evictionMessage says why Kueue evicted the Workload; "" if it is not
// evicted (Kueue clears the condition when it admits the Workload again).
func evictionMessage(wl *kueue.Workload) string {
	if c := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadEvicted); c != nil && c.Status == metav1.ConditionTrue {
		return c.Reason + ": " + c.Message
	}
	return ""
}
