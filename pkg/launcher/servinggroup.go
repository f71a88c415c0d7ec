package launcher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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

// ConditionAvailable, on a ServingGroup, is true when every replica is
// ready.
const ConditionAvailable = "Available"

// ServingGroupReconciler runs each ServingGroup replica as its own Kueue
// Workload and gang: a replica is admitted, placed, restarted and evicted
// whole, independently of the others.
type ServingGroupReconciler struct {
	Client   ctrlclient.Client
	Recorder events.EventRecorder
	Clock    clock.Clock
	Metrics  *Metrics
	// Backoff spaces a replica's restarts after its pods end.
	Backoff Backoff
}

// SetupWithManager registers the controller.
func (r *ServingGroupReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("servinggroup").
		For(&tesserav1alpha1.ServingGroup{}).
		Owns(&kueue.Workload{}).
		Owns(&corev1.Pod{}).
		Complete(r)
}

// replica is what exists of one replica.
type replica struct {
	index    int
	workload *kueue.Workload
	pods     []corev1.Pod
}

// ready reports whether the replica serves: admitted, every pod running
// and ready, nothing of it being deleted.
func (rep *replica) ready(want int32) bool {
	if rep.workload == nil || rep.workload.DeletionTimestamp != nil || !admitted(rep.workload) || int32(len(rep.pods)) != want {
		return false
	}
	for i := range rep.pods {
		p := &rep.pods[i]
		if p.DeletionTimestamp != nil || p.Labels[LabelServing] == "false" || p.Status.Phase != corev1.PodRunning || !podReady(p) {
			return false
		}
	}
	return true
}

// Reconcile brings the group's replicas to spec.replicas, rolls replicas
// of an older spec one at a time, and writes the scale status.
func (r *ServingGroupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sg tesserav1alpha1.ServingGroup
	if err := r.Client.Get(ctx, req.NamespacedName, &sg); err != nil {
		return ctrl.Result{}, ctrlclient.IgnoreNotFound(err)
	}
	replicas, err := r.replicas(ctx, &sg)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sg.DeletionTimestamp != nil {
		return ctrl.Result{}, r.cleanup(ctx, &sg, replicas)
	}
	if controllerutil.AddFinalizer(&sg, finalizer) {
		return ctrl.Result{}, r.Client.Update(ctx, &sg)
	}
	podsPerReplica, _ := replicaShape(&sg)
	result, err := r.converge(ctx, &sg, replicas, podsPerReplica)
	var conflict *NameConflictError
	if errors.As(err, &conflict) {
		if c := apimeta.FindStatusCondition(sg.Status.Conditions, ConditionAvailable); c == nil || !strings.HasSuffix(c.Message, conflict.Error()) {
			r.Recorder.Eventf(&sg, nil, corev1.EventTypeWarning, reasonNameConflict, reasonNameConflict, "%s", conflict.Error())
		}
		// A replica's backoff may end sooner than the recheck.
		if result.RequeueAfter == 0 || result.RequeueAfter > nameConflictRecheck {
			result.RequeueAfter = nameConflictRecheck
		}
		err = nil
	}
	if err != nil {
		return result, err
	}
	return result, r.writeStatus(ctx, &sg, replicas, podsPerReplica, conflict)
}

// converge creates the group's Services, removes replicas past
// spec.replicas, rolls those of an older spec and keeps the others. A
// replica one of whose objects' names is taken waits (the first such
// conflict is returned) while the others go on.
func (r *ServingGroupReconciler) converge(ctx context.Context, sg *tesserav1alpha1.ServingGroup, replicas map[int]*replica, podsPerReplica int32) (ctrl.Result, error) {
	for _, svc := range servingServices(sg) {
		if err := create(ctx, r.Client, sg, svc); err != nil {
			return ctrl.Result{}, err
		}
	}
	hash := func(index int) string { return replicaHash(sg, index) }
	for index, rep := range replicas {
		if index >= int(sg.Spec.Replicas) {
			if err := r.remove(ctx, sg, rep); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if err := r.roll(ctx, sg, replicas, podsPerReplica, hash); err != nil {
		return ctrl.Result{}, err
	}
	var result ctrl.Result
	var conflict *NameConflictError
	for i := range int(sg.Spec.Replicas) {
		rep := replicas[i]
		if rep == nil {
			rep = &replica{index: i}
		} else if rep.workload != nil && rep.workload.Labels[labelSpecHash] != hash(i) {
			// roll replaces it, now or in its turn.
			continue
		}
		wait, err := r.sync(ctx, sg, rep, hash(i))
		var c *NameConflictError
		switch {
		case errors.As(err, &c):
			conflict = cmp.Or(conflict, c)
		case err != nil:
			return ctrl.Result{}, err
		}
		if wait > 0 && (result.RequeueAfter == 0 || wait < result.RequeueAfter) {
			result.RequeueAfter = wait
		}
	}
	if conflict != nil {
		return result, conflict
	}
	return result, nil
}

// sync keeps one wanted replica: its Workload, and once admitted its gang.
// A replica whose pod ended restarts whole after its backoff: wait is how
// long it still waits.
func (r *ServingGroupReconciler) sync(ctx context.Context, sg *tesserav1alpha1.ServingGroup, rep *replica, hash string) (wait time.Duration, err error) {
	if rep.workload == nil {
		wl, err := newWorkload(ctx, r.Client, sg.Namespace, ReplicaWorkloadName(sg.Name, rep.index), "ServingGroup", sg.Name,
			sg.Spec.QueueName, sg.Spec.PriorityClassName, servingPodSets(sg, rep.index))
		if err != nil {
			return 0, err
		}
		wl.Labels[labelSpecHash] = hash
		wl.Labels[LabelReplica] = strconv.Itoa(rep.index)
		return 0, create(ctx, r.Client, sg, wl)
	}
	wl := rep.workload
	switch {
	case evicted(wl):
		left, err := drainAndDeletePods(ctx, r.Client, rep.pods)
		if err != nil || left > 0 {
			return 0, err
		}
		r.Recorder.Eventf(sg, nil, corev1.EventTypeWarning, "Evicted", "Evicted", "Replica %d evicted by Kueue: %s", rep.index, evictionMessage(wl))
		r.Metrics.restarted(kindServingGroup, restartEvicted)
		return 0, releaseEvicted(ctx, r.Client, wl, r.Clock)
	case !admitted(wl):
		if _, err := drainAndDeletePods(ctx, r.Client, rep.pods); err != nil {
			return 0, err
		}
		return 0, syncPodsReady(ctx, r.Client, wl, false, r.Clock)
	}
	podsPerReplica, _ := replicaShape(sg)
	if err := syncPodsReady(ctx, r.Client, wl, rep.ready(podsPerReplica), r.Clock); err != nil {
		return 0, err
	}
	for i := range rep.pods {
		if p := &rep.pods[i]; podTerminal(p) {
			return 0, r.restartReplica(ctx, sg, rep, p)
		}
	}
	for i := range rep.pods {
		if rep.pods[i].DeletionTimestamp != nil {
			// A replica restarts whole: nothing new until its old pods are
			// gone (their GPUs free).
			return 0, nil
		}
	}
	st := replicaStatus(sg, rep.index)
	if wait := waitBeforeStart(st, r.Clock.Now()); wait > 0 && len(rep.pods) == 0 {
		return wait, nil
	}
	if len(rep.pods) == 0 {
		r.Metrics.admittedAfter(kindServingGroup, r.Clock.Since(wl.CreationTimestamp.Time))
	}
	flavors, err := queue.FlavorPlacements(ctx, r.Client, wl)
	if err != nil {
		return 0, err
	}
	if err := create(ctx, r.Client, sg, podGroup(replicaName(sg.Name, rep.index), sg.Namespace, podsPerReplica)); err != nil {
		return 0, err
	}
	have := map[string]bool{}
	for _, p := range rep.pods {
		have[p.Name] = true
	}
	want := []*corev1.Pod{servingPod(sg, rep.index, RoleLeader, 0, flavors[RoleLeader])}
	for k := range int(podsPerReplica) - 1 {
		want = append(want, servingPod(sg, rep.index, RoleServingWorker, k, flavors[RoleServingWorker]))
	}
	for _, p := range want {
		if !have[p.Name] {
			if err := create(ctx, r.Client, sg, p); err != nil {
				return 0, err
			}
		}
	}
	return 0, nil
}

// restartReplica restarts a replica whose pod ended: the restart is
// counted and its retry time written first (status is what later
// reconciles go by once the pod is gone), with an event; then the
// replica's pods are deleted.
func (r *ServingGroupReconciler) restartReplica(ctx context.Context, sg *tesserav1alpha1.ServingGroup, rep *replica, ended *corev1.Pod) error {
	var st tesserav1alpha1.ServingReplicaStatus
	if cur := replicaStatus(sg, rep.index); cur != nil {
		st = *cur
	}
	st.Index = int32(rep.index)
	next, counted := r.Backoff.recordFailure(st, ended, r.Clock.Now())
	if counted {
		setReplicaStatus(sg, next)
		if err := r.Client.Status().Update(ctx, sg); err != nil {
			return fmt.Errorf("recording the restart of replica %d of ServingGroup %s: %w", rep.index, sg.Name, err)
		}
		r.Recorder.Eventf(sg, nil, corev1.EventTypeWarning, "ReplicaBackoff", "ReplicaRestart",
			"Replica %d not serving: %s; restart %d, retrying at %s", rep.index, next.Message, next.Restarts, next.RetryAfter.UTC().Format(time.RFC3339))
		r.Metrics.restarted(kindServingGroup, restartMemberFailed)
		klog.FromContext(ctx).V(2).Info("Serving replica backs off", "servingGroup", klog.KObj(sg), "replica", rep.index, "restarts", next.Restarts, "retryAfter", next.RetryAfter.Time)
	}
	_, err := drainAndDeletePods(ctx, r.Client, rep.pods)
	return err
}

// setReplicaStatus puts st in the group's status, in index order.
func setReplicaStatus(sg *tesserav1alpha1.ServingGroup, st tesserav1alpha1.ServingReplicaStatus) {
	if cur := replicaStatus(sg, int(st.Index)); cur != nil {
		*cur = st
		return
	}
	sg.Status.ReplicaStatuses = append(sg.Status.ReplicaStatuses, st)
	slices.SortFunc(sg.Status.ReplicaStatuses, func(a, b tesserav1alpha1.ServingReplicaStatus) int { return int(a.Index - b.Index) })
}

// roll replaces the replicas of an older spec. One that is not serving
// (starting, failing, or being replaced already) goes at once; it is
// carried on until its Workload is gone. Serving ones go one at a time,
// lowest index first, and only while every replica serves: there is no
// surge, so a rolling update needs no quota beyond the group's.
func (r *ServingGroupReconciler) roll(ctx context.Context, sg *tesserav1alpha1.ServingGroup, replicas map[int]*replica, podsPerReplica int32, hash func(int) string) error {
	allReady := true
	var serving []int
	for i := range int(sg.Spec.Replicas) {
		rep := replicas[i]
		ready := rep != nil && rep.ready(podsPerReplica)
		allReady = allReady && ready
		if rep == nil || rep.workload == nil || rep.workload.Labels[labelSpecHash] == hash(i) {
			continue
		}
		if ready {
			serving = append(serving, i)
			continue
		}
		if err := r.remove(ctx, sg, rep); err != nil {
			return err
		}
	}
	if !allReady || len(serving) == 0 {
		return nil
	}
	index := slices.Min(serving)
	r.Recorder.Eventf(sg, nil, corev1.EventTypeNormal, "RollingUpdate", "RollingUpdate", "Replacing replica %d with the new spec", index)
	return r.remove(ctx, sg, replicas[index])
}

// remove deletes a replica: its pods first (out of the Service, then
// deleted gracefully), then its PodGroup and Workload (returning its
// quota).
func (r *ServingGroupReconciler) remove(ctx context.Context, sg *tesserav1alpha1.ServingGroup, rep *replica) error {
	left, err := drainAndDeletePods(ctx, r.Client, rep.pods)
	if err != nil || left > 0 {
		return err
	}
	if err := deleteOwned(ctx, r.Client, sg, &schedv1alpha1.PodGroup{ObjectMeta: objectMeta(sg.Namespace, replicaName(sg.Name, rep.index))}); err != nil {
		return err
	}
	if rep.workload != nil {
		return deleteOwned(ctx, r.Client, sg, rep.workload)
	}
	return nil
}

// replicas reads every replica that exists, by index: Workloads and pods.
func (r *ServingGroupReconciler) replicas(ctx context.Context, sg *tesserav1alpha1.ServingGroup) (map[int]*replica, error) {
	out := map[int]*replica{}
	get := func(value string) *replica {
		i, err := strconv.Atoi(value)
		if err != nil {
			return nil
		}
		if out[i] == nil {
			out[i] = &replica{index: i}
		}
		return out[i]
	}
	var wls kueue.WorkloadList
	if err := r.Client.List(ctx, &wls, ctrlclient.InNamespace(sg.Namespace), ctrlclient.MatchingLabels{LabelOwnerKind: "ServingGroup", LabelOwnerName: sg.Name}); err != nil {
		return nil, fmt.Errorf("listing workloads of ServingGroup %s: %w", sg.Name, err)
	}
	wls.Items = controlledBy(sg, wls.Items)
	for i := range wls.Items {
		if rep := get(wls.Items[i].Labels[LabelReplica]); rep != nil {
			rep.workload = &wls.Items[i]
		}
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, ctrlclient.InNamespace(sg.Namespace), ctrlclient.MatchingLabels{LabelServingGroup: sg.Name}); err != nil {
		return nil, fmt.Errorf("listing pods of ServingGroup %s: %w", sg.Name, err)
	}
	for _, p := range controlledBy(sg, pods.Items) {
		if rep := get(p.Labels[LabelReplica]); rep != nil {
			rep.pods = append(rep.pods, p)
		}
	}
	return out, nil
}

// writeStatus writes the scale subresource's status and Available.
func (r *ServingGroupReconciler) writeStatus(ctx context.Context, sg *tesserav1alpha1.ServingGroup, replicas map[int]*replica, podsPerReplica int32, conflict *NameConflictError) error {
	var created, ready int32
	var waiting string
	for i := range int(sg.Spec.Replicas) {
		rep := replicas[i]
		if rep == nil || rep.workload == nil {
			continue
		}
		created++
		if rep.ready(podsPerReplica) {
			ready++
		} else if waiting == "" && !admitted(rep.workload) {
			waiting = fmt.Sprintf("replica %d: %s", i, waitReason(rep.workload))
		}
	}
	status := sg.Status.DeepCopy()
	status.Replicas, status.ReadyReplicas = created, ready
	status.Selector = labels.Set{LabelServingGroup: sg.Name}.String()
	cond := metav1.Condition{Type: ConditionAvailable, Status: metav1.ConditionTrue, Reason: "AllReplicasReady",
		Message: fmt.Sprintf("%d of %d replicas ready", ready, sg.Spec.Replicas), ObservedGeneration: sg.Generation}
	if ready < sg.Spec.Replicas {
		cond.Status, cond.Reason = metav1.ConditionFalse, "ReplicasNotReady"
		if waiting != "" {
			cond.Message += "; " + waiting
		}
	}
	if conflict != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, reasonNameConflict
		cond.Message += "; " + conflict.Error()
	}
	apimeta.SetStatusCondition(&status.Conditions, cond)
	backoff := backoffCondition(sg, r.Clock.Now())
	if backoff.Status == metav1.ConditionTrue || apimeta.FindStatusCondition(status.Conditions, ConditionReplicaBackoff) != nil {
		apimeta.SetStatusCondition(&status.Conditions, backoff)
	}
	if equality.Semantic.DeepEqual(&sg.Status, status) {
		return nil
	}
	sg.Status = *status
	if err := r.Client.Status().Update(ctx, sg); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("updating status of ServingGroup %s: %w", sg.Name, err)
	}
	return nil
}

// cleanup deletes every replica, then the Services, then lets the group go.
func (r *ServingGroupReconciler) cleanup(ctx context.Context, sg *tesserav1alpha1.ServingGroup, replicas map[int]*replica) error {
	for _, rep := range replicas {
		if err := r.remove(ctx, sg, rep); err != nil {
			return err
		}
		if len(rep.pods) > 0 {
			return nil // back when the pods are gone
		}
	}
	for _, svc := range servingServices(sg) {
		if err := deleteOwned(ctx, r.Client, sg, svc); err != nil {
			return err
		}
	}
	if controllerutil.RemoveFinalizer(sg, finalizer) {
		return r.Client.Update(ctx, sg)
	}
	return nil
}
