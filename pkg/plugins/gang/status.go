package gang

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
)

// statusReporter keeps PodGroup status true (phase, running, succeeded,
// failed counts) and explains waits with events on the PodGroup. Writes
// happen on a worker, off the scheduling path. Its events are core/v1 ones:
// the events.k8s.io recorder folds events that differ only in their message
// into one series and keeps the first message, and a wait's message changes
// as it progresses ("2/3 members created", then "3/3").
//
// One reporter serves the process; it writes only for gangs whose pods
// name one of the process's profiles, so that gangs of other schedulers
// (coscheduling, another Tessera) keep their own writer's status.
type statusReporter struct {
	shared  *Shared
	queue   workqueue.TypedRateLimitingInterface[gangKey]
	metrics *gangMetrics

	mu sync.Mutex
	// scheduling is the phase the scheduler last reached for each gang
	// (Pending, Scheduling); pod phases take over from Running on.
	scheduling map[gangKey]schedv1alpha1.PodGroupPhase
	startedAt  map[gangKey]time.Time
	// pendingNote is the newest explanation of a gang's state, emitted as an
	// event by the worker once it has held for noteDelay; lastNote dedupes,
	// so a lasting wait is reported once and a burst of member arrivals
	// ("1/128 created", "2/128", …) becomes one event.
	pendingNote map[gangKey]note
	lastNote    map[gangKey]string
	waitingSet  sets.Set[gangKey]
}

// newStatusReporter starts the process's reporter over podInformer, the
// gang pods including finished ones.
func newStatusReporter(ctx context.Context, shared *Shared, podInformer cache.SharedIndexInformer) *statusReporter {
	r := &statusReporter{
		shared:      shared,
		queue:       workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[gangKey]()),
		metrics:     shared.metrics,
		scheduling:  map[gangKey]schedv1alpha1.PodGroupPhase{},
		startedAt:   map[gangKey]time.Time{},
		pendingNote: map[gangKey]note{},
		lastNote:    map[gangKey]string{},
		waitingSet:  sets.New[gangKey](),
	}
	enqueue := func(obj any) {
		if pod, ok := unwrapDeleted(obj).(*v1.Pod); ok {
			if key, ok := gangOf(pod); ok {
				// Pods of a gang change together (bound, then running):
				// one status write after the burst, not one per pod.
				r.queue.AddAfter(key, statusDelay)
			}
		}
	}
	_, _ = podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	go r.run(ctx)
	return r
}

// noteDelay is how long an explanation must hold before it becomes an event,
// and statusDelay how long pod changes are gathered before a status write.
const (
	noteDelay   = time.Second
	statusDelay = 500 * time.Millisecond
)

type note struct {
	ref                    *v1.ObjectReference
	eventType, reason, msg string
}

func (r *statusReporter) note(pg *schedv1alpha1.PodGroup, eventType, reason, msg string) {
	key := gangKey{pg.Namespace, pg.Name}
	r.mu.Lock()
	r.pendingNote[key] = note{ref: podGroupRef(pg), eventType: eventType, reason: reason, msg: msg}
	r.mu.Unlock()
	r.queue.AddAfter(key, noteDelay)
}

// podGroupRef refers to a PodGroup in an event (the event scheme has no
// PodGroup type).
func podGroupRef(pg *schedv1alpha1.PodGroup) *v1.ObjectReference {
	return &v1.ObjectReference{
		APIVersion: schedv1alpha1.SchemeGroupVersion.String(), Kind: "PodGroup",
		Namespace: pg.Namespace, Name: pg.Name, UID: pg.UID,
	}
}

// emitNote records the gang's pending explanation unless it was the last one.
func (r *statusReporter) emitNote(key gangKey) {
	r.mu.Lock()
	n, ok := r.pendingNote[key]
	delete(r.pendingNote, key)
	repeated := ok && r.lastNote[key] == n.msg
	if ok {
		r.lastNote[key] = n.msg
	}
	r.mu.Unlock()
	if ok && !repeated {
		r.shared.recorder.Event(n.ref, n.eventType, n.reason, n.msg)
	}
}

// now records an event on the PodGroup at once, for what must not be folded
// into a later explanation (a teardown, a preemption), and sets its phase.
func (r *statusReporter) now(pg *schedv1alpha1.PodGroup, phase schedv1alpha1.PodGroupPhase, reason, msg string) {
	r.setPhase(gangKey{pg.Namespace, pg.Name}, phase, true)
	r.shared.recorder.Event(podGroupRef(pg), v1.EventTypeWarning, reason, msg)
}

// waiting reports a gang that cannot be placed yet, and why.
func (r *statusReporter) waiting(pg *schedv1alpha1.PodGroup, reason, msg string) {
	key := gangKey{pg.Namespace, pg.Name}
	r.setPhase(key, schedv1alpha1.PodGroupPending, true)
	r.note(pg, v1.EventTypeWarning, reason, msg)
}

// planned reports that the gang's placement was found.
func (r *statusReporter) planned(pg *schedv1alpha1.PodGroup, members int) {
	key := gangKey{pg.Namespace, pg.Name}
	r.mu.Lock()
	r.startedAt[key] = r.shared.clock.Now()
	r.mu.Unlock()
	r.setPhase(key, schedv1alpha1.PodGroupScheduling, true)
	r.note(pg, v1.EventTypeNormal, "Planned", fmt.Sprintf("placement found for %d members; binding them together", members))
}

// bound reports that the gang's members are all bound.
func (r *statusReporter) bound(pg *schedv1alpha1.PodGroup, members int, took time.Duration) {
	key := gangKey{pg.Namespace, pg.Name}
	// Running (from the pods' phases) follows; until then it is still Scheduling.
	r.setPhase(key, schedv1alpha1.PodGroupScheduling, false)
	r.note(pg, v1.EventTypeNormal, "Scheduled", fmt.Sprintf("all %d members bound, %s after the last one was created", members, took.Round(time.Millisecond)))
}

func (r *statusReporter) setPhase(key gangKey, phase schedv1alpha1.PodGroupPhase, waiting bool) {
	r.mu.Lock()
	r.scheduling[key] = phase
	if waiting {
		r.waitingSet.Insert(key)
	} else {
		r.waitingSet.Delete(key)
	}
	r.metrics.waiting.Set(float64(r.waitingSet.Len()))
	r.mu.Unlock()
	r.queue.Add(key)
}

func (r *statusReporter) run(ctx context.Context) {
	for {
		key, quit := r.queue.Get()
		if quit {
			return
		}
		r.emitNote(key)
		if err := r.sync(ctx, key); err != nil {
			klog.FromContext(ctx).V(2).Info("PodGroup status update failed; retrying", "gang", key, "err", err)
			r.queue.AddRateLimited(key)
		} else {
			r.queue.Forget(key)
		}
		r.queue.Done(key)
	}
}

// sync writes the gang's status from its pods and the scheduler's progress.
func (r *statusReporter) sync(ctx context.Context, key gangKey) error {
	pg, err := r.shared.pgLister.PodGroups(key.namespace).Get(key.name)
	if apierrors.IsNotFound(err) {
		r.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	pods, err := gangPods(r.shared.allPods, key)
	if err != nil {
		return err
	}
	if !r.shared.serves(pods) {
		return nil
	}
	r.mu.Lock()
	phase, known := r.scheduling[key]
	started := r.startedAt[key]
	r.mu.Unlock()
	status := statusOf(pg, pods, phase, known)
	if !started.IsZero() && status.ScheduleStartTime.IsZero() {
		status.ScheduleStartTime = metav1.NewTime(started)
	}
	if status == pg.Status {
		return nil
	}
	updated := pg.DeepCopy()
	updated.Status = status
	_, err = r.shared.pgClient.SchedulingV1alpha1().PodGroups(key.namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

// forget drops what the reporter kept of a deleted PodGroup.
func (r *statusReporter) forget(key gangKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.scheduling, key)
	delete(r.startedAt, key)
	delete(r.lastNote, key)
	delete(r.pendingNote, key)
	r.waitingSet.Delete(key)
	r.metrics.waiting.Set(float64(r.waitingSet.Len()))
}

// statusOf is a PodGroup's status given its pods (finished ones included)
// and the phase the scheduler last reached for it (scheduling, when known),
// with scheduler-plugins' PodGroup semantics: Finished once minMember
// members succeeded; Failed once a member failed and failed, running and
// succeeded members reach minMember; Running once running and succeeded
// members do; before that the scheduler's phase (Pending while members are
// missing or nothing fits, Scheduling while a placement is being bound).
// Unlike scheduler-plugins, Finished and Failed are not kept when their
// pods are gone: a controller that deletes a failed gang and creates it
// again under the same PodGroup sees it scheduled again.
func statusOf(pg *schedv1alpha1.PodGroup, pods []*v1.Pod, scheduling schedv1alpha1.PodGroupPhase, known bool) schedv1alpha1.PodGroupStatus {
	status := *pg.Status.DeepCopy()
	status.Running, status.Succeeded, status.Failed = 0, 0, 0
	live := int32(0)
	for _, p := range pods {
		switch {
		case p.Status.Phase == v1.PodSucceeded:
			status.Succeeded++
		case p.Status.Phase == v1.PodFailed:
			status.Failed++
		case p.DeletionTimestamp != nil:
		case p.Status.Phase == v1.PodRunning:
			status.Running++
			live++
		default:
			live++
		}
	}
	min := pg.Spec.MinMember
	switch {
	case status.Succeeded >= min && min > 0:
		status.Phase = schedv1alpha1.PodGroupFinished
	case status.Failed > 0 && status.Failed+status.Running+status.Succeeded >= min:
		status.Phase = schedv1alpha1.PodGroupFailed
	case status.Running+status.Succeeded >= min && min > 0:
		status.Phase = schedv1alpha1.PodGroupRunning
	case known:
		status.Phase = scheduling
	case live+status.Succeeded < min:
		status.Phase = schedv1alpha1.PodGroupPending
	default:
		status.Phase = schedv1alpha1.PodGroupScheduling
	}
	return status
}
