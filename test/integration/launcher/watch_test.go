package launcher_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"tessera.dev/tessera/test/integration/framework"
)

// podEvent is one change of a pod as a watch saw it, in the apiserver's
// order.
type podEvent struct {
	typ watch.EventType
	pod corev1.Pod
}

// podRecorder keeps every event of a watch on a namespace's pods.
type podRecorder struct {
	mu     sync.Mutex
	events []podEvent
}

// recordPods watches the pods of ns from now until the test ends.
func recordPods(t *testing.T, ns string) *podRecorder {
	t.Helper()
	w, err := env.Client.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &podRecorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok {
				r.mu.Lock()
				r.events = append(r.events, podEvent{typ: ev.Type, pod: *p.DeepCopy()})
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return r
}

func (r *podRecorder) snapshot() []podEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// firstDeletions is, per pod UID, the pod as it was when its deletion
// began: the launcher's delete call, before kwok (which force-deletes)
// or anything else touched it again.
func (r *podRecorder) firstDeletions() map[types.UID]corev1.Pod {
	out := map[types.UID]corev1.Pod{}
	for _, ev := range r.snapshot() {
		if ev.pod.DeletionTimestamp == nil {
			continue
		}
		if _, seen := out[ev.pod.UID]; !seen {
			out[ev.pod.UID] = ev.pod
		}
	}
	return out
}

// lingerFinalizer keeps a deleted pod in the apiserver, terminating, as a
// kubelet does while containers stop within their grace period: kwok's
// delete stage removes pods at once, with grace 0, whatever their grace.
const lingerFinalizer = "test.tessera.dev/linger"

// linger adds lingerFinalizer to pods; the returned release removes it
// (also when the test ends).
func linger(t *testing.T, pods []corev1.Pod) (release func()) {
	t.Helper()
	set := func(ctx context.Context, add bool) {
		for _, p := range pods {
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, framework.DefaultTimeout, true, func(ctx context.Context) (bool, error) {
				cur, err := env.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
				if err != nil || cur.UID != p.UID {
					return !add, nil // gone: nothing to hold or release
				}
				cur.Finalizers = slices.DeleteFunc(cur.Finalizers, func(f string) bool { return f == lingerFinalizer })
				if add {
					cur.Finalizers = append(cur.Finalizers, lingerFinalizer)
				}
				_, err = env.Client.CoreV1().Pods(p.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
				return err == nil, nil
			})
			if err != nil {
				t.Errorf("setting finalizer %s on pod %s to %v: %v", lingerFinalizer, p.Name, add, err)
			}
		}
	}
	set(t.Context(), true)
	var once sync.Once
	release = func() { once.Do(func() { set(context.Background(), false) }) }
	t.Cleanup(release)
	return release
}
