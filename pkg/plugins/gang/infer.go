package gang

import (
	"context"
	"errors"
	"fmt"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/pkg/ganginfer"
)

// Gangs inferred from a pod's owners (pkg/ganginfer decides which), so
// that a team's Job, JobSet or LeaderWorkerSet runs all or nothing with
// only schedulerName set: a pod that names a Tessera profile, carries no
// pod-group label and whose owners ask for a gang is refused at PreFilter
// (in the leader's scheduling cycle, so a standby replica writes nothing)
// while the plugin creates or updates the gang's PodGroup (owned by the
// workload, so garbage collection removes it) and labels the pod into it;
// the label brings it back as a gang member like any.

// inference joins pods to their owners' gangs off the scheduling
// goroutine, one gang at a time.
type inference struct {
	// cached reads owners from the scheduler's informers.
	cached ganginfer.Owners
	// live reads them from the API, for a pod whose owner the informers
	// have not seen yet.
	live ganginfer.Owners

	mu sync.Mutex
	// joining holds, per gang (or per unseen owner), the pods waiting for
	// the goroutine that serves it.
	joining map[string]*joinBatch
}

type joinBatch struct {
	// gang is nil while the owner is unseen: it is read from the API.
	gang *ganginfer.Gang
	pods []*v1.Pod
}

func newInference(cached, live ganginfer.Owners) *inference {
	return &inference{cached: cached, live: live, joining: map[string]*joinBatch{}}
}

// joiningGang returns, for a pod outside any labelled gang, the status
// that refuses it while it joins its owners' gang (started here); nil when
// its owners make no gang of it (it is scheduled alone).
func (g *Gang) joiningGang(ctx context.Context, pod *v1.Pod) *fwk.Status {
	inf := g.shared.inference
	ref := metav1.GetControllerOf(pod)
	if inf == nil || ref == nil {
		return nil
	}
	gang, err := ganginfer.Infer(inf.cached, pod)
	var invalid *ganginfer.InvalidError
	switch {
	case apierrors.IsNotFound(err):
		inf.join(ctx, g, pod, "owner/"+string(ref.UID), nil)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("reading %s %s/%s, which controls it, and its owners to see whether they make a gang of it", ref.Kind, pod.Namespace, ref.Name))
	case errors.As(err, &invalid):
		g.recorder.Event(invalid.EventObject(), v1.EventTypeWarning, "InvalidGang", invalid.Error())
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, invalid.Error())
	case err != nil:
		return fwk.AsStatus(err)
	case gang == nil:
		return nil
	}
	// Keyed by owner too: two owners' default names can collide, and
	// ensurePodGroup must refuse the second, not label its pods in.
	inf.join(ctx, g, pod, pod.Namespace+"/"+gang.Name+"/"+string(gang.Owner.UID), gang)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("joining gang %s/%s of its %s %s (minMember %d)", pod.Namespace, gang.Name, gang.Owner.Kind, gang.Owner.Name, gang.MinMember))
}

// join queues pod to be joined to gang (nil: to whatever gang its owners,
// read from the API, ask for) by the goroutine serving key, started when
// none is.
func (inf *inference) join(ctx context.Context, g *Gang, pod *v1.Pod, key string, gang *ganginfer.Gang) {
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if b, running := inf.joining[key]; running {
		if gang != nil {
			b.gang = gang
		}
		b.pods = append(b.pods, pod)
		return
	}
	inf.joining[key] = &joinBatch{gang: gang, pods: []*v1.Pod{pod}}
	logger := klog.FromContext(ctx)
	go func() {
		for {
			gang, pods := inf.take(key)
			if len(pods) == 0 {
				return
			}
			for _, pod := range pods {
				if err := g.join(g.shared.ctx, pod, gang); err != nil {
					logger.Error(err, "Joining a pod to its owners' gang", "pod", klog.KObj(pod))
					g.recorder.Event(pod, v1.EventTypeWarning, "GangInference", err.Error())
				}
			}
		}
	}()
}

// take hands key's waiting pods to its goroutine; none left ends it.
func (inf *inference) take(key string) (*ganginfer.Gang, []*v1.Pod) {
	inf.mu.Lock()
	defer inf.mu.Unlock()
	b := inf.joining[key]
	if len(b.pods) == 0 {
		delete(inf.joining, key)
		return nil, nil
	}
	pods := b.pods
	b.pods = nil
	return b.gang, pods
}

func (g *Gang) join(ctx context.Context, pod *v1.Pod, gang *ganginfer.Gang) error {
	if gang == nil {
		var err error
		var invalid *ganginfer.InvalidError
		gang, err = ganginfer.Infer(g.shared.inference.live, pod)
		switch {
		case err != nil && !errors.As(err, &invalid):
			// NotFound: the owner is gone (the pod goes with it).
			return fmt.Errorf("reading the owners of pod %s/%s: %w", pod.Namespace, pod.Name, err)
		case err != nil || gang == nil:
			// Decided (and reported) from the cache on its next try.
			g.handle.Activate(klog.FromContext(ctx), map[string]*v1.Pod{pod.Namespace + "/" + pod.Name: pod})
			return nil
		}
	}
	if err := g.ensurePodGroup(ctx, pod.Namespace, gang); err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, schedv1alpha1.PodGroupLabel, gang.Name)
	_, err := g.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// ensurePodGroup makes gang's PodGroup, controlled by its owner, or brings
// the one its owner controls to its minMember. One left by an earlier
// owner of the same kind and name (inferred, its controller gone) is taken
// over; any other PodGroup of that name is left alone.
func (g *Gang) ensurePodGroup(ctx context.Context, namespace string, gang *ganginfer.Gang) error {
	client := g.shared.pgClient.SchedulingV1alpha1().PodGroups(namespace)
	existing, err := g.pgLister.PodGroups(namespace).Get(gang.Name)
	if apierrors.IsNotFound(err) {
		pg := &schedv1alpha1.PodGroup{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: gang.Name,
				Labels: map[string]string{ganginfer.InferredLabel: gang.Owner.Kind}, OwnerReferences: []metav1.OwnerReference{gang.Owner}},
			Spec: schedv1alpha1.PodGroupSpec{MinMember: gang.MinMember},
		}
		_, err = client.Create(ctx, pg, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		// Made a moment ago (for a gang-mate) and not in the informer yet.
		existing, err = client.Get(ctx, gang.Name, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	err = g.updatePodGroup(ctx, existing, gang)
	if apierrors.IsConflict(err) {
		// Changed since the informer saw it (another member's join, its
		// status): decide again on what the API holds now.
		if existing, err = client.Get(ctx, gang.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		return g.updatePodGroup(ctx, existing, gang)
	}
	return err
}

// updatePodGroup brings existing to gang's minMember and owner, unless it
// is another's.
func (g *Gang) updatePodGroup(ctx context.Context, existing *schedv1alpha1.PodGroup, gang *ganginfer.Gang) error {
	owner := gang.Owner
	controller := metav1.GetControllerOf(existing)
	ours := controller != nil && controller.UID == owner.UID
	if !ours && existing.Labels[ganginfer.InferredLabel] != owner.Kind {
		return fmt.Errorf("PodGroup %s/%s exists and is not %s %s's: rename the %s, or give its pods the label %s yourself", existing.Namespace, gang.Name, owner.Kind, owner.Name, owner.Kind, schedv1alpha1.PodGroupLabel)
	}
	if ours && existing.Spec.MinMember == gang.MinMember {
		return nil
	}
	// Names are unique per kind: one of this name with another UID is gone.
	if !ours && controller != nil && (controller.Kind != owner.Kind || controller.Name != owner.Name) {
		return fmt.Errorf("PodGroup %s/%s belongs to %s %s", existing.Namespace, gang.Name, controller.Kind, controller.Name)
	}
	pg := existing.DeepCopy()
	pg.Spec.MinMember = gang.MinMember
	pg.OwnerReferences = []metav1.OwnerReference{owner}
	_, err := g.shared.pgClient.SchedulingV1alpha1().PodGroups(existing.Namespace).Update(ctx, pg, metav1.UpdateOptions{})
	return err
}
