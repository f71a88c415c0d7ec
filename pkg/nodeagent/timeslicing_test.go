package nodeagent

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// The NVIDIA device plugin's time-slicing advertises each GPU as replicas
// <uuid>::<n> (or <index>::<n> with DEVICE_ID_STRATEGY=index): each replica is
// a share of the GPU it slices.
func TestTimeSlicedReplicasAreAttributedToTheirGPU(t *testing.T) {
	type holder struct{ pod, ids string } // pod, its tessera.dev/gpu-ids
	for _, tc := range []struct {
		name        string
		pods        []holder
		held        func(uuid func(int) string) []ContainerGPUs
		wantHolders []tesserav1alpha1.GPUHolder
		wantSeries  int
		wantEvents  []string
	}{{
		name: "two pods share one GPU, one of them with two replicas",
		pods: []holder{{"a", "2"}, {"b", "2"}},
		held: func(uuid func(int) string) []ContainerGPUs {
			return []ContainerGPUs{
				{Namespace: "team-a", Pod: "a", Container: "c", DeviceIDs: []string{uuid(2) + "::0", uuid(2) + "::3"}},
				{Namespace: "team-a", Pod: "b", Container: "c", DeviceIDs: []string{uuid(2) + "::1"}},
			}
		},
		wantHolders: []tesserav1alpha1.GPUHolder{{Index: 2, Namespace: "team-a", Pod: "a", UID: "uid-a"}, {Index: 2, Namespace: "team-a", Pod: "b", UID: "uid-b"}},
		wantSeries:  2,
	}, {
		name: "index-strategy replicas",
		pods: []holder{{"a", "3"}},
		held: func(func(int) string) []ContainerGPUs {
			return []ContainerGPUs{{Namespace: "team-a", Pod: "a", Container: "c", DeviceIDs: []string{"3::0"}}}
		},
		wantHolders: []tesserav1alpha1.GPUHolder{{Index: 3, Namespace: "team-a", Pod: "a", UID: "uid-a"}},
		wantSeries:  1,
	}, {
		name: "a replica of another GPU than assigned is a drift",
		pods: []holder{{"a", "4"}},
		held: func(uuid func(int) string) []ContainerGPUs {
			return []ContainerGPUs{{Namespace: "team-a", Pod: "a", Container: "c", DeviceIDs: []string{uuid(5) + "::2"}}}
		},
		wantHolders: []tesserav1alpha1.GPUHolder{{Index: 5, Namespace: "team-a", Pod: "a", UID: "uid-a"}},
		wantSeries:  1,
		wantEvents:  []string{"Warning GPUAssignmentDrift scheduler assigned GPUs 4 but the containers hold GPUs 5: the device plugin chose other devices"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "dgx-h100")
			h.sync(t)
			devices := h.topology(t).Status.Devices
			for _, p := range tc.pods {
				createPod(t, h, p.pod, p.ids)
			}
			h.agent.cfg.PodResources = staticLister(tc.held(func(i int) string { return devices[i].UUID }))
			h.drainEvents()
			h.sync(t)
			if diff := cmp.Diff(tc.wantHolders, h.topology(t).Status.Holders); diff != "" {
				t.Errorf("published holders (-want +got):\n%s", diff)
			}
			if n := testutil.CollectAndCount(h.agent.metrics, "tessera_gpu_container_info"); n != tc.wantSeries {
				t.Errorf("%d tessera_gpu_container_info series, want %d", n, tc.wantSeries)
			}
			if _, err := h.registry.Gather(); err != nil {
				t.Errorf("gathering metrics: %v", err)
			}
			if diff := cmp.Diff(tc.wantEvents, h.drainEvents()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnknownDeviceIDIsLoggedOnceWhileItLasts(t *testing.T) {
	h := newHarness(t, "l4-pcie")
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx := klog.NewContext(context.Background(), logger)
	const line = "Container holds a GPU this node does not report"
	logged := func() int {
		return strings.Count(logger.GetSink().(ktesting.Underlier).GetBuffer().String(), line)
	}
	sync := func() {
		t.Helper()
		if err := h.agent.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stranger := staticLister{{Namespace: "team-a", Pod: "a", Container: "c", DeviceIDs: []string{"GPU-elsewhere::1"}}}
	h.agent.cfg.PodResources = stranger
	for range 3 {
		sync()
	}
	if n := logged(); n != 1 {
		t.Errorf("logged %d times over three syncs, want once", n)
	}
	h.agent.cfg.PodResources = staticLister{}
	sync()
	h.agent.cfg.PodResources = stranger
	sync()
	if n := logged(); n != 2 {
		t.Errorf("logged %d times in all, want once more after it went away and came back", n)
	}
}

// The drift metrics have no pod labels: many pods drifting over time leave
// one series each, and the gauge follows the pods drifted now.
func TestDriftMetricsHaveBoundedCardinality(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.sync(t)
	devices := h.topology(t).Status.Devices
	const pods = 20
	for i := range pods {
		name := fmt.Sprintf("drifted-%02d", i)
		createPod(t, h, name, "0")
		h.agent.cfg.PodResources = staticLister{{Namespace: "team-a", Pod: name, Container: "c", DeviceIDs: []string{devices[1].UUID}}}
		h.sync(t)
		if got := testutil.ToFloat64(h.agent.metrics.driftedPods); got != 1 {
			t.Fatalf("pod %d: %v pods drifted now, want 1", i, got)
		}
		if err := h.client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	h.agent.cfg.PodResources = staticLister{}
	h.sync(t)
	got := map[string]int{}
	for _, name := range []string{"tessera_gpu_assignment_drift_total", "tessera_gpu_assignment_drifted_pods"} {
		got[name] = testutil.CollectAndCount(h.agent.metrics, name)
	}
	want := map[string]int{"tessera_gpu_assignment_drift_total": 1, "tessera_gpu_assignment_drifted_pods": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series per metric after %d drifted pods came and went (-want +got):\n%s", pods, diff)
	}
	if v := testutil.ToFloat64(h.agent.metrics.drift); v != pods {
		t.Errorf("drift counted %v times, want %d", v, pods)
	}
	if v := testutil.ToFloat64(h.agent.metrics.driftedPods); v != 0 {
		t.Errorf("%v pods drifted now, want 0 once they are gone", v)
	}
}
