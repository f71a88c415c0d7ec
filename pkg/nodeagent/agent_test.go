package nodeagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

type harness struct {
	agent    *Agent
	gpus     *nvmlfake.Server
	client   ctrlclient.Client
	clock    *clocktesting.FakeClock
	events   *record.FakeRecorder
	registry *prometheus.Registry
}

func newHarness(t *testing.T, shape string) *harness {
	t.Helper()
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gpu-1", UID: "uid-1"}}
	client := fake.NewClientBuilder().WithScheme(scheme).WithObjects(node).
		WithStatusSubresource(&tesserav1alpha1.GPUNodeTopology{}, &corev1.Node{}).Build()
	gpus, err := nvmlfake.New(shape, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	src, err := nvmlsource.New(gpus)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{gpus: gpus, client: client, clock: clocktesting.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)),
		events: record.NewFakeRecorder(100), registry: prometheus.NewRegistry()}
	h.agent, err = New(Config{NodeName: "gpu-1", Source: src, Client: client, Recorder: h.events,
		Registry: h.registry, Interval: time.Second, Heartbeat: time.Minute, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) sync(t *testing.T) {
	t.Helper()
	if err := h.agent.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func (h *harness) topology(t *testing.T) *tesserav1alpha1.GPUNodeTopology {
	t.Helper()
	obj := &tesserav1alpha1.GPUNodeTopology{}
	if err := h.client.Get(context.Background(), types.NamespacedName{Name: "gpu-1"}, obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func (h *harness) condition(t *testing.T) corev1.NodeCondition {
	t.Helper()
	node := &corev1.Node{}
	if err := h.client.Get(context.Background(), types.NamespacedName{Name: "gpu-1"}, node); err != nil {
		t.Fatal(err)
	}
	for _, c := range node.Status.Conditions {
		if c.Type == tesserav1alpha1.NodeConditionGPUHealthy {
			return c
		}
	}
	t.Fatalf("node has no %s condition", tesserav1alpha1.NodeConditionGPUHealthy)
	return corev1.NodeCondition{}
}

func (h *harness) writes(reason string) float64 {
	return testutil.ToFloat64(h.agent.metrics.writes.WithLabelValues(reason))
}

func (h *harness) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-h.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestPublishesTopology(t *testing.T) {
	h := newHarness(t, "h100-nvl-pairs")
	h.sync(t)
	obj := h.topology(t)
	st := obj.Status
	if st.GPUCount != 8 || st.HealthyGPUs != 8 || st.Model != "NVIDIA H100 NVL" || st.DriverVersion != "550.54.15" {
		t.Errorf("summary = %d GPUs, %d healthy, %q, driver %q", st.GPUCount, st.HealthyGPUs, st.Model, st.DriverVersion)
	}
	if diff := cmp.Diff([]int32{0, 1, 2, 3, 4, 5, 6, 7}, st.Allocatable); diff != "" {
		t.Errorf("allocatable (-want +got):\n%s", diff)
	}
	wantIslands := []tesserav1alpha1.GPUIsland{
		{Kind: "NVLink", GPUs: []int32{0, 1}}, {Kind: "NVLink", GPUs: []int32{2, 3}},
		{Kind: "NVLink", GPUs: []int32{4, 5}}, {Kind: "NVLink", GPUs: []int32{6, 7}},
	}
	if diff := cmp.Diff(wantIslands, st.Islands); diff != "" {
		t.Errorf("islands (-want +got):\n%s", diff)
	}
	if len(st.Links) != 28 {
		t.Fatalf("%d links, want 28 (one per pair)", len(st.Links))
	}
	if l := st.Links[0]; l != (tesserav1alpha1.GPULink{A: 0, B: 1, Type: "NVLink", NVLinks: 12, BandwidthGBps: 300}) {
		t.Errorf("link 0-1 = %+v", l)
	}
	if st.Telemetry == nil || st.Telemetry.PowerWatts != 588 || st.Telemetry.MaxTemperatureC != 37 {
		t.Errorf("telemetry = %+v, want 588 W over 8 GPUs and 37 C at most", st.Telemetry)
	}
	if len(obj.OwnerReferences) != 1 || obj.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("owner references = %+v, want the node", obj.OwnerReferences)
	}
	if c := h.condition(t); c.Status != corev1.ConditionTrue {
		t.Errorf("node condition = %+v, want True", c)
	}
}

func TestWritesOnlyOnChangeOrHeartbeat(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.sync(t)
	rv := h.topology(t).ResourceVersion

	h.clock.Step(30 * time.Second)
	h.sync(t)
	if got := h.topology(t).ResourceVersion; got != rv || h.writes("change") != 1 || h.writes("heartbeat") != 0 {
		t.Errorf("unchanged GPUs were written again before the heartbeat (rv %s -> %s)", rv, got)
	}

	h.clock.Step(31 * time.Second)
	h.sync(t)
	if h.writes("heartbeat") != 1 {
		t.Errorf("no heartbeat write after the heartbeat period")
	}
	if hb := h.topology(t).Status.HeartbeatTime; hb == nil || !hb.Time.Equal(h.clock.Now()) {
		t.Errorf("heartbeat time = %v, want %v", hb, h.clock.Now())
	}
}

func TestECCFaultMarksGPUUnhealthy(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.sync(t)
	h.drainEvents()

	h.gpus.InjectECCErrors(3, 2)
	h.sync(t)
	st := h.topology(t).Status
	if st.Devices[3].Healthy || st.Devices[3].Fault != "2 uncorrectable ECC errors" {
		t.Errorf("device 3 = %+v, want unhealthy with its ECC count", st.Devices[3])
	}
	if diff := cmp.Diff([]int32{0, 1, 2, 4, 5, 6, 7}, st.Allocatable); diff != "" {
		t.Errorf("allocatable (-want +got):\n%s", diff)
	}
	if c := h.condition(t); c.Status != corev1.ConditionFalse || !strings.Contains(c.Message, "GPU 3") {
		t.Errorf("node condition = %+v, want False naming GPU 3", c)
	}
	if ev := h.drainEvents(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning GPUFault GPU 3") {
		t.Errorf("events = %q, want one GPUFault for GPU 3", ev)
	}
}

func TestECCFaultClearsWhenNVMLClearsIt(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.gpus.InjectECCErrors(3, 2)
	h.sync(t)
	h.gpus.ClearECCErrors(3) // a GPU reset zeroes the volatile count
	h.sync(t)
	if d := h.topology(t).Status.Devices[3]; !d.Healthy {
		t.Errorf("device 3 still unhealthy after NVML cleared its fault: %+v", d)
	}
	if c := h.condition(t); c.Status != corev1.ConditionTrue {
		t.Errorf("node condition = %+v, want True again", c)
	}
}

func TestXIDFaultIsStickyUntilAnAdminClearsIt(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	h.sync(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.agent.watchXIDs(ctx)

	uuid := h.topology(t).Status.Devices[6].UUID
	h.gpus.InjectXID(6, 13) // application error: no fault
	h.gpus.InjectXID(6, 79) // fallen off the bus
	select {
	case <-h.agent.trigger:
	case <-time.After(10 * time.Second):
		t.Fatal("no sync requested after a critical XID")
	}
	h.sync(t)
	if d := h.topology(t).Status.Devices[6]; d.Healthy || d.Fault != "critical XID 79" {
		t.Fatalf("device 6 = %+v, want unhealthy from XID 79", d)
	}
	if got := testutil.ToFloat64(h.agent.metrics.xids.WithLabelValues(uuid, "13")); got != 1 {
		t.Errorf("xid 13 counted %v times, want 1", got)
	}

	// NVML reports nothing wrong, but an XID never says it cleared.
	h.sync(t)
	if d := h.topology(t).Status.Devices[6]; d.Healthy {
		t.Fatal("XID fault cleared without an admin")
	}

	obj := h.topology(t)
	obj.Annotations = map[string]string{tesserav1alpha1.AnnotationClearFaults: uuid}
	if err := h.client.Update(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
	h.sync(t)
	obj = h.topology(t)
	if d := obj.Status.Devices[6]; !d.Healthy {
		t.Errorf("device 6 = %+v after the admin cleared it", d)
	}
	if _, ok := obj.Annotations[tesserav1alpha1.AnnotationClearFaults]; ok {
		t.Errorf("clear annotation left in place")
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, "dgx-h100-gpu-failed")
	h.sync(t)
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			key := f.GetName()
			for _, l := range m.Label {
				if l.GetName() == "gpu" || l.GetName() == "reason" {
					key += "/" + l.GetValue()
				}
			}
			switch {
			case m.Gauge != nil:
				values[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				values[key] = m.Counter.GetValue()
			}
		}
	}
	for key, v := range map[string]float64{
		"tessera_gpu_healthy/5":                              0,
		"tessera_gpu_healthy/4":                              1,
		"tessera_gpu_ecc_uncorrectable_errors/5":             3,
		"tessera_gpu_nvlink_active_links/0":                  18,
		"tessera_gpu_memory_total_bytes/0":                   81920 * (1 << 20),
		"tessera_gpu_power_watts/2":                          72,
		"tessera_node_agent_topology_writes_total/change":    1,
		"tessera_node_agent_topology_writes_total/heartbeat": 0,
	} {
		if got, ok := values[key]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, v)
		}
	}
}

func TestHealthy(t *testing.T) {
	h := newHarness(t, "l4-pcie")
	if err := h.agent.Healthy(); err == nil {
		t.Error("healthy before any sync")
	}
	h.sync(t)
	if err := h.agent.Healthy(); err != nil {
		t.Errorf("unhealthy right after a sync: %v", err)
	}
	h.clock.Step(4 * time.Second)
	if err := h.agent.Healthy(); err == nil {
		t.Error("healthy after three missed intervals")
	}
}

func TestCriticalXID(t *testing.T) {
	for xid, want := range map[uint64]bool{13: false, 31: false, 43: false, 48: true, 63: true, 79: true, 94: true} {
		if got := CriticalXID(xid); got != want {
			t.Errorf("CriticalXID(%d) = %v, want %v", xid, got, want)
		}
	}
}
