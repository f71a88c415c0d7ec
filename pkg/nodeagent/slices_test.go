package nodeagent

import (
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	"tessera.dev/tessera/pkg/dra"
)

// devicesSeen records what the agent publishes as DRA devices.
type devicesSeen struct{ last []resourceapi.Device }

func (d *devicesSeen) Publish(devices []resourceapi.Device) { d.last = devices }

// The DRA devices come from the same read as the GPUNodeTopology: one per
// GPU, and a GPU the topology marks unhealthy is tainted with its fault.
func TestPublishesDevicesFromTheSameModel(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	seen := &devicesSeen{}
	h.agent.cfg.Slices = seen
	h.sync(t)
	if len(seen.last) != 8 {
		t.Fatalf("published %d devices, want the DGX H100's 8", len(seen.last))
	}
	for _, d := range seen.last {
		if len(d.Taints) != 0 {
			t.Errorf("%s tainted on a healthy node: %v", d.Name, d.Taints)
		}
	}

	h.gpus.InjectECCErrors(3, 2)
	h.sync(t)
	topo := h.topology(t)
	for i, d := range seen.last {
		healthy := topo.Status.Devices[i].Healthy
		if tainted := len(d.Taints) > 0; tainted == healthy {
			t.Errorf("%s: tainted %v, but the topology says healthy %v", d.Name, tainted, healthy)
		}
		if d.Name != dra.DeviceName(topo.Status.Devices[i].Index) {
			t.Errorf("device %d is %s, want %s", i, d.Name, dra.DeviceName(topo.Status.Devices[i].Index))
		}
	}
	// NVML reports ECC faults (the fault kind NVML; XID and Lost are the others).
	if taints := seen.last[3].Taints; len(taints) != 1 || taints[0].Value != string(topo.Status.Devices[3].FaultKind) || taints[0].Value != "NVML" {
		t.Errorf("gpu-3 taints %+v, want %s=NVML", taints, dra.TaintUnhealthy)
	}
}
