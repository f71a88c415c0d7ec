package nodeagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// poll waits, with a deadline, until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (h *harness) xidCondition(t *testing.T) corev1.NodeCondition {
	t.Helper()
	node := &corev1.Node{}
	if err := h.client.Get(context.Background(), types.NamespacedName{Name: "gpu-1"}, node); err != nil {
		t.Fatal(err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == tesserav1alpha1.NodeConditionXIDWatch {
			return c
		}
	}
	t.Fatalf("node has no %s condition", tesserav1alpha1.NodeConditionXIDWatch)
	return corev1.NodeCondition{}
}

func TestXIDWatchIsRetriedWithBackoff(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.agent.cfg.XIDRetryMax = 4 * time.Second
	h.sync(t)
	node := &corev1.Node{}
	if err := h.client.Get(context.Background(), types.NamespacedName{Name: "gpu-1"}, node); err != nil {
		t.Fatal(err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == tesserav1alpha1.NodeConditionXIDWatch {
			t.Errorf("XID watch condition %+v before the watch ran (as with --once), want none", c)
		}
	}
	failures := func() float64 { return testutil.ToFloat64(h.agent.metrics.xidWatchFailures) }
	up := func() float64 { return testutil.ToFloat64(h.agent.metrics.xidWatchUp) }

	h.gpus.BreakXIDEvents(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.agent.watchXIDs(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// Each failure waits twice as long as the one before, up to the limit:
	// 1s, 2s, 4s, 4s.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		poll(t, "the watcher to wait before retrying", h.clock.HasWaiters)
		if got := failures(); got != float64(i+1) {
			t.Fatalf("failures = %v before retry %d, want %d", got, i+1, i+1)
		}
		if up() != 0 {
			t.Fatal("xid watch reported up while failing")
		}
		h.clock.Step(wait - time.Millisecond)
		if !h.clock.HasWaiters() || failures() != float64(i+1) {
			t.Fatalf("retried before the %s backoff ran out", wait)
		}
		h.clock.Step(time.Millisecond)
		if i < 3 {
			poll(t, "the next attempt", func() bool { return failures() == float64(i+2) })
		}
	}
	h.sync(t)
	c := h.xidCondition(t)
	if c.Status != corev1.ConditionFalse || c.Reason != "XIDWatchFailed" || !strings.Contains(c.Message, "ECC counters only") {
		t.Errorf("XID watch condition while failing = %+v, want False XIDWatchFailed", c)
	}
	if ev := strings.Join(h.drainEvents(), "\n"); strings.Count(ev, "XIDWatchFailed") != 1 {
		t.Errorf("events = %q, want one XIDWatchFailed for the outage", ev)
	}

	// NVML recovers: the next attempt watches again, and faults from XIDs
	// come through.
	h.gpus.BreakXIDEvents(false)
	poll(t, "the watcher to wait before retrying", h.clock.HasWaiters)
	h.clock.Step(4 * time.Second)
	poll(t, "the watcher to watch again", func() bool { return up() == 1 })
	h.sync(t)
	if c := h.xidCondition(t); c.Status != corev1.ConditionTrue {
		t.Errorf("XID watch condition after recovery = %+v, want True", c)
	}
	h.gpus.InjectXID(2, 79)
	poll(t, "the XID to be recorded", func() bool { return h.agent.faults.kind(h.uuid(2)) == tesserav1alpha1.GPUFaultXID })
}
