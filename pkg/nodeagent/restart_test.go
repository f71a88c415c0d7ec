package nodeagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

// restart replaces the harness's agent with a new one, as a DaemonSet
// rollout does: a new process with nothing in memory, over the same GPUs
// (NVML initialized again) and the same API objects.
func (h *harness) restart(t *testing.T) {
	t.Helper()
	src, err := nvmlsource.New(h.gpus)
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.agent.cfg
	cfg.Source = src
	cfg.Registry = nil
	if h.agent, err = New(cfg); err != nil {
		t.Fatal(err)
	}
}

// device is the published device with that UUID.
func (h *harness) device(t *testing.T, uuid string) (tesserav1alpha1.GPUDevice, bool) {
	t.Helper()
	for _, d := range h.topology(t).Status.Devices {
		if d.UUID == uuid {
			return d, true
		}
	}
	return tesserav1alpha1.GPUDevice{}, false
}

func (h *harness) clearFaults(t *testing.T, value string) {
	t.Helper()
	obj := h.topology(t)
	obj.Annotations = map[string]string{tesserav1alpha1.AnnotationClearFaults: value}
	if err := h.client.Update(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func TestFaultsSurviveARestart(t *testing.T) {
	type want struct {
		Healthy bool
		Fault   string
		Kind    tesserav1alpha1.GPUFaultKind
	}
	for _, tc := range []struct {
		name string
		// fault faults GPU 6 before the restart; during changes NVML while
		// the agent is down.
		fault, during func(h *harness)
		// beforeSync runs on the new agent before its first sync.
		beforeSync func(h *harness)
		// published rewrites the status before the restart (an older agent's).
		published    func(st *tesserav1alpha1.GPUNodeTopologyStatus)
		afterRestart want
		// adminClears clears the fault after the restart.
		adminClears bool
		afterClear  want
	}{{
		name:         "a critical XID stays until an admin clears it",
		fault:        func(h *harness) { h.agent.faults.recordXID(h.uuid(6), 79) },
		afterRestart: want{false, "critical XID 79", tesserav1alpha1.GPUFaultXID},
		adminClears:  true,
		afterClear:   want{Healthy: true},
	}, {
		name:         "uncorrectable ECC errors NVML still reports stay",
		fault:        func(h *harness) { h.gpus.InjectECCErrors(6, 2) },
		afterRestart: want{false, "2 uncorrectable ECC errors", tesserav1alpha1.GPUFaultNVML},
	}, {
		name:         "uncorrectable ECC errors cleared by a GPU reset while the agent was down clear",
		fault:        func(h *harness) { h.gpus.InjectECCErrors(6, 2) },
		during:       func(h *harness) { h.gpus.ClearECCErrors(6) },
		afterRestart: want{Healthy: true},
	}, {
		name:  "a fault published without a kind (an older agent) is kept as sticky as an XID",
		fault: func(h *harness) { h.agent.faults.recordXID(h.uuid(6), 48) },
		published: func(st *tesserav1alpha1.GPUNodeTopologyStatus) {
			st.Devices[6].FaultKind = ""
		},
		afterRestart: want{false, "critical XID 48", tesserav1alpha1.GPUFaultXID},
		adminClears:  true,
		afterClear:   want{Healthy: true},
	}, {
		name:         "an XID seen before the first sync is not replaced by an older published fault",
		fault:        func(h *harness) { h.gpus.InjectECCErrors(6, 2) },
		during:       func(h *harness) { h.gpus.ClearECCErrors(6) },
		beforeSync:   func(h *harness) { h.agent.faults.recordXID(h.uuid(6), 79) },
		afterRestart: want{false, "critical XID 79", tesserav1alpha1.GPUFaultXID},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "dgx-h100")
			h.sync(t)
			tc.fault(h)
			h.sync(t)
			if d, _ := h.device(t, h.uuid(6)); d.Healthy {
				t.Fatalf("GPU 6 healthy before the restart: %+v", d)
			}
			if tc.published != nil {
				obj := h.topology(t)
				tc.published(&obj.Status)
				if err := h.client.Status().Update(context.Background(), obj); err != nil {
					t.Fatal(err)
				}
			}
			if tc.during != nil {
				tc.during(h)
			}
			h.restart(t)
			if tc.beforeSync != nil {
				tc.beforeSync(h)
			}
			h.sync(t)
			check := func(when string, w want) {
				t.Helper()
				d, _ := h.device(t, h.uuid(6))
				if diff := cmp.Diff(w, want{d.Healthy, d.Fault, d.FaultKind}); diff != "" {
					t.Errorf("GPU 6 %s (-want +got):\n%s", when, diff)
				}
				healthy := h.condition(t).Status == corev1.ConditionTrue
				if healthy != w.Healthy {
					t.Errorf("node condition %s = %+v, want healthy %v", when, h.condition(t), w.Healthy)
				}
			}
			check("after the restart", tc.afterRestart)
			if tc.adminClears {
				h.clearFaults(t, h.uuid(6))
				h.sync(t)
				check("after the admin cleared it", tc.afterClear)
			}
		})
	}
}

// uuid is the UUID of the fake's GPU i (NVML index i with none hidden).
func (h *harness) uuid(i int) string { return h.gpus.Devices[i].(*server.Device).UUID }

func TestLostGPUIsReportedUnhealthy(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.sync(t)
	lostUUID := h.uuid(3)

	// Its handle fails: fallen off the bus.
	h.gpus.LoseGPU(3, true)
	h.sync(t)
	st := h.topology(t).Status
	d, ok := h.device(t, lostUUID)
	if !ok || d.Healthy || d.Index != 3 || d.FaultKind != tesserav1alpha1.GPUFaultLost {
		t.Errorf("lost GPU published as %+v (listed %v), want unhealthy at index 3, kind Lost", d, ok)
	}
	if st.GPUCount != 8 || st.HealthyGPUs != 7 {
		t.Errorf("status counts %d GPUs, %d healthy; want 8, 7", st.GPUCount, st.HealthyGPUs)
	}
	if c := h.condition(t); c.Status != corev1.ConditionFalse || !strings.HasPrefix(c.Message, "1 of 8 GPUs unhealthy: GPU 3") {
		t.Errorf("node condition = %+v, want False, 1 of 8 unhealthy naming GPU 3", c)
	}

	// It comes back.
	h.gpus.LoseGPU(3, false)
	h.sync(t)
	if d, _ := h.device(t, lostUUID); !d.Healthy {
		t.Errorf("GPU back in NVML still unhealthy: %+v", d)
	}

	// The node restarts without it: the count drops and GPU 4 takes index
	// 3. The lost GPU stays listed, unhealthy, at the first free index.
	h.gpus.HideGPU(3, true)
	h.restart(t)
	h.sync(t)
	st = h.topology(t).Status
	if d, ok := h.device(t, lostUUID); !ok || d.Healthy || d.Index != 7 {
		t.Errorf("GPU lost over a restart published as %+v (listed %v), want unhealthy at index 7", d, ok)
	}
	if d, _ := h.device(t, h.uuid(4)); d.Index != 3 || !d.Healthy {
		t.Errorf("GPU 4 after the restart = %+v, want healthy at index 3", d)
	}
	if st.GPUCount != 8 || st.HealthyGPUs != 7 {
		t.Errorf("status counts %d GPUs, %d healthy; want 8, 7", st.GPUCount, st.HealthyGPUs)
	}

	// An admin who knows the GPU is gone for good forgets it.
	h.clearFaults(t, lostUUID)
	h.sync(t)
	st = h.topology(t).Status
	if _, ok := h.device(t, lostUUID); ok || st.GPUCount != 7 {
		t.Errorf("after the admin cleared the lost GPU: listed %v, %d GPUs; want gone, 7", ok, st.GPUCount)
	}
	if c := h.condition(t); c.Status != corev1.ConditionTrue || c.Message != "all 7 GPUs healthy" {
		t.Errorf("node condition = %+v, want all 7 GPUs healthy", c)
	}
}

func TestGPUUnreadableFromTheStartIsNotCountedHealthy(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.gpus.LoseGPU(5, true)
	h.sync(t)
	c := h.condition(t)
	want := "1 of 8 GPUs unhealthy: GPU 5: unreadable by NVML and never identified"
	if c.Status != corev1.ConditionFalse || c.Message != want {
		t.Errorf("node condition = %s %q, want False %q", c.Status, c.Message, want)
	}
}

func TestNextXIDRetry(t *testing.T) {
	limit := 10 * time.Second
	for _, tc := range []struct{ prev, want time.Duration }{
		{0, time.Second}, {time.Second, 2 * time.Second}, {4 * time.Second, 8 * time.Second},
		{8 * time.Second, limit}, {limit, limit},
	} {
		if got := nextXIDRetry(tc.prev, limit); got != tc.want {
			t.Errorf("nextXIDRetry(%s) = %s, want %s", tc.prev, got, tc.want)
		}
	}
}
