package nodeagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// xidRetryInitial is the first wait before watching XID events again after
// a failure; each further failure doubles it, up to Config.XIDRetryMax.
const xidRetryInitial = time.Second

// nextXIDRetry is the wait after a failure that followed a wait of prev (0
// for the first failure).
func nextXIDRetry(prev, limit time.Duration) time.Duration {
	if prev <= 0 {
		return min(xidRetryInitial, limit)
	}
	return min(2*prev, limit)
}

// xidWatchState is whether XID events are being watched, for the Node
// condition.
type xidWatchState struct {
	mu sync.Mutex
	// started is set once the watch runs (never with --once).
	started  bool
	err      error
	since    time.Time
	failures int
}

// condition is the TesseraGPUXIDWatch condition; false before the watch
// has started, when there is nothing to say.
func (s *xidWatchState) condition(limit time.Duration) (corev1.NodeCondition, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return corev1.NodeCondition{}, false
	}
	c := corev1.NodeCondition{Type: tesserav1alpha1.NodeConditionXIDWatch, Status: corev1.ConditionTrue, Reason: "Watching",
		Message: "watching NVML XID events"}
	if s.err != nil {
		c.Status, c.Reason = corev1.ConditionFalse, "XIDWatchFailed"
		// No retry count or time here: the condition is written once per
		// outage, the metrics count the retries.
		c.Message = fmt.Sprintf("cannot watch NVML XID events since %s: %v; GPU faults come from ECC counters only until it recovers (retrying with backoff up to %s)",
			s.since.UTC().Format(time.RFC3339), s.err, limit)
	}
	return c, true
}

// watchXIDs turns critical XID events into sticky faults and a prompt sync.
// When watching fails it retries with exponential backoff (capped at
// XIDRetryMax), keeping the xid watch metrics and Node condition meanwhile.
func (a *Agent) watchXIDs(ctx context.Context) {
	logger := klog.FromContext(ctx)
	a.xidWatch.mu.Lock()
	a.xidWatch.started = true
	a.xidWatch.mu.Unlock()
	a.metrics.xidWatchUp.Set(1)
	var delay time.Duration
	for ctx.Err() == nil {
		ev, ok, err := a.cfg.Source.WaitXID(time.Second)
		if err != nil {
			delay = nextXIDRetry(delay, a.cfg.XIDRetryMax)
			a.xidWatchDown(logger, err, delay)
			select {
			case <-ctx.Done():
				return
			case <-a.cfg.Clock.After(delay):
			}
			continue
		}
		if delay > 0 {
			delay = 0
			a.xidWatchRecovered(logger)
		}
		if !ok {
			continue
		}
		a.metrics.xids.WithLabelValues(ev.UUID, fmt.Sprint(ev.XID)).Inc()
		if !CriticalXID(ev.XID) {
			logger.V(2).Info("Application XID, GPU stays healthy", "uuid", ev.UUID, "xid", ev.XID)
			continue
		}
		if a.faults.recordXID(ev.UUID, ev.XID) {
			a.nodeEvent(corev1.EventTypeWarning, "GPUFault", "GPU %s is unhealthy: critical XID %d", ev.UUID, ev.XID)
		}
		a.requestSync()
	}
}

func (a *Agent) xidWatchDown(logger klog.Logger, err error, retry time.Duration) {
	a.metrics.xidWatchUp.Set(0)
	a.metrics.xidWatchFailures.Inc()
	s := &a.xidWatch
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.since = a.cfg.Clock.Now()
	}
	s.err = err
	s.failures++
	failures := s.failures
	s.mu.Unlock()
	if first {
		logger.Info("Not watching XID events; GPU faults come from ECC counters only until it recovers", "err", err, "retryIn", retry)
		a.nodeEvent(corev1.EventTypeWarning, "XIDWatchFailed", "cannot watch NVML XID events: %v; retrying with backoff", err)
		a.requestSync()
	} else {
		logger.V(2).Info("XID watch still failing", "err", err, "failures", failures, "retryIn", retry)
	}
}

func (a *Agent) xidWatchRecovered(logger klog.Logger) {
	a.metrics.xidWatchUp.Set(1)
	s := &a.xidWatch
	s.mu.Lock()
	failures := s.failures
	s.err, s.failures = nil, 0
	s.mu.Unlock()
	logger.Info("Watching XID events again", "failures", failures)
	a.nodeEvent(corev1.EventTypeNormal, "XIDWatchRecovered", "watching NVML XID events again after %d failures", failures)
	a.requestSync()
}

// requestSync asks for a sync before the next tick.
func (a *Agent) requestSync() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}
