// Package dra describes a node's GPUs to Dynamic Resource Allocation as
// driver gpu.tessera.dev: one ResourceSlice device per GPU, built from the
// same GPUNodeTopology status the scheduler reads, so that one model feeds
// both. A device can be claimed whole, or in milli-GPU shares through its
// consumable "milli" capacity; an unhealthy GPU stays listed, tainted.
package dra

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// DriverName is the DRA driver Tessera's devices belong to.
const DriverName = "gpu.tessera.dev"

// Device attributes and capacities, in the driver's domain (a claim's CEL
// selects them as device.attributes["gpu.tessera.dev"].uuid, ...).
const (
	AttrUUID          resourceapi.QualifiedName = "uuid"
	AttrIndex         resourceapi.QualifiedName = "index"
	AttrProductName   resourceapi.QualifiedName = "productName"
	AttrNUMANode      resourceapi.QualifiedName = "numaNode"
	AttrMIGEnabled    resourceapi.QualifiedName = "migEnabled"
	AttrDriverVersion resourceapi.QualifiedName = "driverVersion"
	// AttrNVLinkIsland numbers the GPUs connected by NVLink (directly or
	// through NVSwitch) on the node: a claim's matchAttribute constraint on
	// it keeps a multi-GPU request inside one island.
	AttrNVLinkIsland resourceapi.QualifiedName = "nvlinkIsland"
	// AttrNVLinkIslandKind is NVSwitch, NVLink or None.
	AttrNVLinkIslandKind resourceapi.QualifiedName = "nvlinkIslandKind"
	// AttrClique is the multi-node NVLink domain (nvidia.com/gpu.clique).
	AttrClique resourceapi.QualifiedName = "clique"

	// CapacityMemory is the GPU's memory, in bytes; a claim consumes none of
	// it unless it asks.
	CapacityMemory resourceapi.QualifiedName = "memory"
	// CapacityMilli is the GPU in thousandths: a request that names no
	// capacity consumes all of it (a whole GPU); a share asks for less.
	CapacityMilli resourceapi.QualifiedName = "milli"

	// StandardPCIBusID and StandardPCIeRoot are Kubernetes' standard
	// attributes, shared across drivers (matchAttribute on pcieRoot puts a
	// GPU and a NIC under one PCIe root).
	StandardPCIBusID resourceapi.QualifiedName = "resource.kubernetes.io/pciBusID"
	StandardPCIeRoot resourceapi.QualifiedName = "resource.kubernetes.io/pcieRoot"

	// TaintUnhealthy marks a GPU with a fault; its value is the fault's
	// kind (NVML: ECC or another fault NVML reports; XID; Lost).
	TaintUnhealthy = DriverName + "/unhealthy"
)

// MilliGPU is a whole GPU in the milli capacity.
const MilliGPU = 1000

// PCIeRootOf finds the PCIe root complex of a PCI bus ID ("pci0000:00");
// false where it cannot be read (no sysfs, a fake GPU).
type PCIeRootOf func(pciBusID string) (string, bool)

// DeviceClassName is the chart's DeviceClass of every device of the driver:
// the class a claim names to ask for Tessera's GPUs.
const DeviceClassName = DriverName

// DeviceName is the DRA device name of the GPU with the given NVML index.
func DeviceName(index int32) string { return "gpu-" + strconv.Itoa(int(index)) }

// DeviceIndex is the NVML index of the GPU a device name of the driver
// names; false for a name DeviceName does not write.
func DeviceIndex(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "gpu-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || strconv.Itoa(i) != digits {
		return 0, false
	}
	return i, true
}

// Devices describes every GPU of status, in index order.
func Devices(status *tesserav1alpha1.GPUNodeTopologyStatus, pcieRoot PCIeRootOf) []resourceapi.Device {
	island := map[int32]int{}
	islandKind := map[int32]string{}
	for i, is := range status.Islands {
		for _, g := range is.GPUs {
			island[g], islandKind[g] = i, string(is.Kind)
		}
	}
	devices := make([]resourceapi.Device, 0, len(status.Devices))
	for _, g := range status.Devices {
		attrs := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			AttrUUID:         {StringValue: ptr.To(g.UUID)},
			AttrIndex:        {IntValue: ptr.To(int64(g.Index))},
			AttrNUMANode:     {IntValue: ptr.To(int64(g.NUMANode))},
			AttrMIGEnabled:   {BoolValue: ptr.To(g.MIGEnabled)},
			AttrNVLinkIsland: {IntValue: ptr.To(int64(island[g.Index]))},
		}
		if kind := islandKind[g.Index]; kind != "" {
			attrs[AttrNVLinkIslandKind] = resourceapi.DeviceAttribute{StringValue: ptr.To(kind)}
		}
		if g.Model != "" {
			attrs[AttrProductName] = resourceapi.DeviceAttribute{StringValue: ptr.To(g.Model)}
		}
		if status.DriverVersion != "" {
			attrs[AttrDriverVersion] = resourceapi.DeviceAttribute{StringValue: ptr.To(status.DriverVersion)}
		}
		if status.Clique != "" {
			attrs[AttrClique] = resourceapi.DeviceAttribute{StringValue: ptr.To(status.Clique)}
		}
		if bdf, ok := NormalizePCIBusID(g.PCIBusID); ok {
			attrs[StandardPCIBusID] = resourceapi.DeviceAttribute{StringValue: ptr.To(bdf)}
			if pcieRoot != nil {
				if root, ok := pcieRoot(bdf); ok {
					attrs[StandardPCIeRoot] = resourceapi.DeviceAttribute{StringValue: ptr.To(root)}
				}
			}
		}
		capacity := map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
			CapacityMilli: {
				Value: *resource.NewQuantity(MilliGPU, resource.DecimalSI),
				RequestPolicy: &resourceapi.CapacityRequestPolicy{
					Default: resource.NewQuantity(MilliGPU, resource.DecimalSI),
					ValidRange: &resourceapi.CapacityRequestPolicyRange{
						Min:  resource.NewQuantity(1, resource.DecimalSI),
						Max:  resource.NewQuantity(MilliGPU, resource.DecimalSI),
						Step: resource.NewQuantity(1, resource.DecimalSI),
					},
				},
			},
		}
		if g.MemoryMiB > 0 {
			// Counted only for claims that ask for it (a share with an MPS
			// memory limit): left to its default, every share would take all
			// of it, and the next share none.
			memory := resource.NewQuantity(g.MemoryMiB<<20, resource.BinarySI)
			capacity[CapacityMemory] = resourceapi.DeviceCapacity{
				Value: *memory,
				RequestPolicy: &resourceapi.CapacityRequestPolicy{
					Default:    resource.NewQuantity(0, resource.BinarySI),
					ValidRange: &resourceapi.CapacityRequestPolicyRange{Min: resource.NewQuantity(0, resource.BinarySI), Max: memory},
				},
			}
		}
		d := resourceapi.Device{
			Name:                     DeviceName(g.Index),
			Attributes:               attrs,
			Capacity:                 capacity,
			AllowMultipleAllocations: ptr.To(true),
		}
		if !g.Healthy {
			d.Taints = []resourceapi.DeviceTaint{{Key: TaintUnhealthy, Value: taintValue(g.FaultKind), Effect: resourceapi.DeviceTaintEffectNoSchedule}}
		}
		devices = append(devices, d)
	}
	return devices
}

func taintValue(kind tesserav1alpha1.GPUFaultKind) string {
	if kind == "" {
		return "Fault"
	}
	return string(kind)
}

// bdf is a PCI address as NVML gives it (an 8-digit domain) or as sysfs and
// Kubernetes' standard attribute want it (4 digits).
var bdf = regexp.MustCompile(`^([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$`)

// NormalizePCIBusID turns NVML's "00000000:18:00.0" into the extended BDF
// form "0000:18:00.0" that sysfs and resource.kubernetes.io/pciBusID use;
// false for anything else.
func NormalizePCIBusID(id string) (string, bool) {
	m := bdf.FindStringSubmatch(id)
	if m == nil {
		return "", false
	}
	domain := m[1]
	if len(domain) > 4 {
		if strings.Trim(domain[:len(domain)-4], "0") != "" {
			return "", false
		}
		domain = domain[len(domain)-4:]
	}
	return strings.ToLower(fmt.Sprintf("%s:%s:%s.%s", domain, m[2], m[3], m[4])), true
}
