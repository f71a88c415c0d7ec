package launcher_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
	"tessera.dev/tessera/test/integration/framework"
)

// A serving replica whose pod keeps ending is restarted after an
// exponential, capped backoff, never at once: each new pod is created no
// earlier than the retry time the status announced; the restart count, a
// ReplicaBackoff condition and an event say why it is not serving and when
// it retries.
func TestServingReplicaRestartBacksOff(t *testing.T) {
	ns := env.Namespace(t)
	opts := launcher.DefaultOptions()
	opts.RecheckAfter = recheck
	opts.ReplicaBackoff = launcher.Backoff{Base: time.Second, Max: 2 * time.Second, Reset: time.Hour}
	env.StartLauncherWith(t, opts, env.Cluster.Config)
	gpuNodes(t, "h100-nvl-pairs", "rack-backoff", "backoff-a")
	q := env.CreateQueue(t, ns, "team", framework.QueueSpec{GPUs: 2})
	sg := servingGroup(ns, "crashy", q, 1)
	submit(t, sg)
	waitReplicas(t, sg, 1)

	wantDelay := []time.Duration{time.Second, 2 * time.Second, 2 * time.Second}
	for i, delay := range wantDelay {
		restart := int32(i + 1)
		pods := jobPods(t, ns, launcher.LabelServingGroup, sg.Name)
		if len(pods) != 1 {
			t.Fatalf("restart %d: %d pods, want 1", restart, len(pods))
		}
		setPodPhase(t, &pods[0], corev1.PodFailed, "Error")
		var st tesserav1alpha1.ServingReplicaStatus
		framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("restart %d in status", restart), func(ctx context.Context) (bool, error) {
			if err := env.CR.Get(ctx, ctrlclient.ObjectKeyFromObject(sg), sg); err != nil {
				return false, err
			}
			for _, s := range sg.Status.ReplicaStatuses {
				if s.Index == 0 && s.Restarts == restart {
					st = s
					return true, nil
				}
			}
			return false, nil
		})
		if st.RetryAfter == nil || !strings.Contains(st.Message, pods[0].Name+" ended (Failed: Error)") {
			t.Fatalf("restart %d: status %+v, want the ended pod and a retry time", restart, st)
		}
		// The retry is the backoff after the failure (seconds: the API's precision).
		if gap := st.RetryAfter.Sub(pods[0].CreationTimestamp.Time); gap < delay {
			t.Errorf("restart %d: retry %v only %v after the pod's creation, want at least %v", restart, st.RetryAfter.Time, gap, delay)
		}
		if c := apimeta.FindStatusCondition(sg.Status.Conditions, launcher.ConditionReplicaBackoff); c != nil && c.Status == "True" &&
			!strings.Contains(c.Message, fmt.Sprintf("replica 0 not serving: pod %s ended (Failed: Error); restart %d, retrying at", pods[0].Name, restart)) {
			t.Errorf("restart %d: ReplicaBackoff condition %+v", restart, c)
		}
		var next corev1.Pod
		framework.Eventually(t, framework.DefaultTimeout, fmt.Sprintf("replica 0 to come back after restart %d", restart), func(ctx context.Context) (bool, error) {
			for _, p := range jobPods(t, ns, launcher.LabelServingGroup, sg.Name) {
				if p.UID != pods[0].UID {
					next = p
					return true, nil
				}
			}
			return false, nil
		})
		if next.CreationTimestamp.Before(st.RetryAfter) {
			t.Errorf("restart %d: new pod created at %v, before the announced retry %v", restart, next.CreationTimestamp.Time, st.RetryAfter.Time)
		}
		waitReplicas(t, sg, 1)
	}
	framework.Eventually(t, framework.DefaultTimeout, "a ReplicaBackoff event per restart", func(ctx context.Context) (bool, error) {
		var events eventsv1.EventList
		if err := env.CR.List(ctx, &events, ctrlclient.InNamespace(ns)); err != nil {
			return false, err
		}
		n := 0
		for _, e := range events.Items {
			if e.Reason == "ReplicaBackoff" && e.Regarding.Name == sg.Name && strings.Contains(e.Note, "retrying at") {
				n++
			}
		}
		return n == len(wantDelay), nil
	})
}
