package dra

import (
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

func twoIslands() *tesserav1alpha1.GPUNodeTopologyStatus {
	return &tesserav1alpha1.GPUNodeTopologyStatus{
		DriverVersion: "580.65.06",
		Clique:        "cluster-a.1",
		Devices: []tesserav1alpha1.GPUDevice{
			{Index: 0, UUID: "GPU-a", Model: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, PCIBusID: "00000000:18:00.0", NUMANode: 0, Healthy: true},
			{Index: 1, UUID: "GPU-b", Model: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, PCIBusID: "00000000:2A:00.0", NUMANode: 0, Healthy: true},
			{Index: 2, UUID: "GPU-c", Model: "NVIDIA H100 80GB HBM3", MemoryMiB: 81559, PCIBusID: "00000000:BA:00.0", NUMANode: 1, Healthy: false, FaultKind: tesserav1alpha1.GPUFaultXID},
		},
		Islands: []tesserav1alpha1.GPUIsland{{Kind: "NVLink", GPUs: []int32{0, 1}}, {Kind: "None", GPUs: []int32{2}}},
	}
}

func str(d resourceapi.Device, name resourceapi.QualifiedName) string {
	if a, ok := d.Attributes[name]; ok && a.StringValue != nil {
		return *a.StringValue
	}
	return ""
}

func num(d resourceapi.Device, name resourceapi.QualifiedName) int64 {
	if a, ok := d.Attributes[name]; ok && a.IntValue != nil {
		return *a.IntValue
	}
	return -1
}

func TestDevicesDescribeEachGPU(t *testing.T) {
	roots := map[string]string{"0000:18:00.0": "pci0000:15", "0000:2a:00.0": "pci0000:15"}
	devices := Devices(twoIslands(), func(bdf string) (string, bool) { r, ok := roots[bdf]; return r, ok })
	if len(devices) != 3 {
		t.Fatalf("%d devices, want one per GPU (3)", len(devices))
	}
	for i, want := range []struct {
		name, uuid, bus, root string
		island, numa          int64
	}{
		{"gpu-0", "GPU-a", "0000:18:00.0", "pci0000:15", 0, 0},
		{"gpu-1", "GPU-b", "0000:2a:00.0", "pci0000:15", 0, 0},
		{"gpu-2", "GPU-c", "0000:ba:00.0", "", 1, 1},
	} {
		d := devices[i]
		if d.Name != want.name || str(d, AttrUUID) != want.uuid || num(d, AttrIndex) != int64(i) {
			t.Errorf("device %d: name %s uuid %s index %d, want %s %s %d", i, d.Name, str(d, AttrUUID), num(d, AttrIndex), want.name, want.uuid, i)
		}
		if got := str(d, StandardPCIBusID); got != want.bus {
			t.Errorf("%s: pciBusID %q, want %q", d.Name, got, want.bus)
		}
		if got := str(d, StandardPCIeRoot); got != want.root {
			t.Errorf("%s: pcieRoot %q, want %q", d.Name, got, want.root)
		}
		if got := num(d, AttrNVLinkIsland); got != want.island {
			t.Errorf("%s: nvlinkIsland %d, want %d", d.Name, got, want.island)
		}
		if got := num(d, AttrNUMANode); got != want.numa {
			t.Errorf("%s: numaNode %d, want %d", d.Name, got, want.numa)
		}
		if str(d, AttrProductName) != "NVIDIA H100 80GB HBM3" || str(d, AttrClique) != "cluster-a.1" || str(d, AttrDriverVersion) != "580.65.06" {
			t.Errorf("%s: product %q clique %q driver %q", d.Name, str(d, AttrProductName), str(d, AttrClique), str(d, AttrDriverVersion))
		}
		if mem := d.Capacity[CapacityMemory].Value; mem.Cmp(resource.MustParse("81559Mi")) != 0 {
			t.Errorf("%s: memory capacity %s, want 81559Mi", d.Name, mem.String())
		}
		milli := d.Capacity[CapacityMilli]
		if milli.Value.Value() != MilliGPU || milli.RequestPolicy == nil || milli.RequestPolicy.Default.Value() != MilliGPU ||
			milli.RequestPolicy.ValidRange.Min.Value() != 1 || milli.RequestPolicy.ValidRange.Max.Value() != MilliGPU {
			t.Errorf("%s: milli capacity %+v: want 1000, a whole GPU by default, shares of 1 to 1000", d.Name, milli)
		}
		if d.AllowMultipleAllocations == nil || !*d.AllowMultipleAllocations {
			t.Errorf("%s: shares need allowMultipleAllocations", d.Name)
		}
	}
	if got := str(devices[0], AttrNVLinkIslandKind); got != "NVLink" {
		t.Errorf("gpu-0 island kind %q, want NVLink", got)
	}
}

// An unhealthy GPU stays listed, tainted with its fault's kind, so that
// nothing is allocated on it and a claim's status can say why.
func TestUnhealthyGPUIsTaintedNotDropped(t *testing.T) {
	devices := Devices(twoIslands(), nil)
	for _, d := range devices[:2] {
		if len(d.Taints) != 0 {
			t.Errorf("healthy %s tainted: %v", d.Name, d.Taints)
		}
	}
	taints := devices[2].Taints
	if len(taints) != 1 || taints[0].Key != TaintUnhealthy || taints[0].Value != "XID" || taints[0].Effect != resourceapi.DeviceTaintEffectNoSchedule {
		t.Errorf("unhealthy gpu-2 taints %+v, want one %s=XID:NoSchedule", taints, TaintUnhealthy)
	}
}

func TestNormalizePCIBusID(t *testing.T) {
	for in, want := range map[string]string{
		"00000000:18:00.0": "0000:18:00.0",
		"00000001:BA:1F.7": "0001:ba:1f.7",
		"0000:2a:00.0":     "0000:2a:00.0",
		"10000000:18:00.0": "",
		"18:00.0":          "",
		"":                 "",
		"0000:18:00.9":     "",
	} {
		got, ok := NormalizePCIBusID(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizePCIBusID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
