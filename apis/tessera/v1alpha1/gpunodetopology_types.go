package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// AnnotationClearFaults, set on a GPUNodeTopology by an admin, clears the
// sticky faults of the listed GPUs (comma-separated UUIDs, or "all") once the
// node agent has read it; the agent then removes the annotation.
const AnnotationClearFaults = "tessera.dev/clear-gpu-faults"

// NodeConditionGPUHealthy is the Node condition the node agent keeps: False
// while any GPU of the node has a fault.
const NodeConditionGPUHealthy = "TesseraGPUHealthy"

// NodeConditionXIDWatch is the Node condition the node agent keeps about its
// watch of NVML's XID events: False while it cannot watch them (it retries
// with backoff), when faults come from ECC counters only.
const NodeConditionXIDWatch = "TesseraGPUXIDWatch"

// GPUFaultKind says what raised a GPU's fault, and so what clears it.
// +kubebuilder:validation:Enum=NVML;XID;Lost
type GPUFaultKind string

// Fault kinds.
const (
	// GPUFaultNVML is a fault NVML reports on every read (uncorrectable ECC
	// errors, unreadable health): it clears when NVML stops reporting it.
	GPUFaultNVML GPUFaultKind = "NVML"
	// GPUFaultXID is a critical XID event: NVML never says it cleared, so
	// only an admin clears it (AnnotationClearFaults).
	GPUFaultXID GPUFaultKind = "XID"
	// GPUFaultLost is a GPU NVML no longer reports (its handle fails, or it
	// is no longer enumerated): it clears when NVML reports it again, or
	// when an admin clears it (the GPU is then forgotten).
	GPUFaultLost GPUFaultKind = "Lost"
)

// GPUNodeTopology describes the GPUs of one node and how they are linked. The
// node agent on that node owns it; its name is the node's name.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=gputopo
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="GPUs",type=integer,JSONPath=`.status.gpuCount`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.healthyGPUs`
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.status.model`
// +kubebuilder:printcolumn:name="Heartbeat",type=date,JSONPath=`.status.heartbeatTime`
type GPUNodeTopology struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is what the node agent last observed through NVML.
	// +optional
	Status GPUNodeTopologyStatus `json:"status,omitempty"`
}

// GPUNodeTopologyStatus is the observed GPU topology of a node.
type GPUNodeTopologyStatus struct {
	// GPUCount is the number of GPUs discovered on the node.
	// +kubebuilder:validation:Minimum=0
	GPUCount int32 `json:"gpuCount"`
	// HealthyGPUs is the number of GPUs without a fault.
	// +kubebuilder:validation:Minimum=0
	HealthyGPUs int32 `json:"healthyGPUs"`
	// Model is the product name shared by the node's GPUs, or "mixed".
	// +optional
	Model string `json:"model,omitempty"`
	// DriverVersion is the NVIDIA driver's version.
	// +optional
	DriverVersion string `json:"driverVersion,omitempty"`
	// Devices lists the GPUs by NVML index.
	// +listType=map
	// +listMapKey=index
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Devices []GPUDevice `json:"devices,omitempty"`
	// Links lists the connection between each pair of GPUs, once per pair.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=2016
	// +optional
	Links []GPULink `json:"links,omitempty"`
	// Islands groups the GPUs connected by NVLink, directly or through NVSwitch.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Islands []GPUIsland `json:"islands,omitempty"`
	// Clique is the multi-node NVLink domain the node's GPUs belong to, in
	// the form of the nvidia.com/gpu.clique label (<cluster UUID>.<clique
	// ID>); empty without one. Nodes with the same clique reach each other's
	// GPUs over NVLink.
	// +optional
	Clique string `json:"clique,omitempty"`
	// Allocatable lists the indexes of healthy GPUs the scheduler may assign.
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Allocatable []int32 `json:"allocatable,omitempty"`
	// Holders are the GPUs the kubelet reports held by containers (its
	// PodResources API), one entry per GPU and pod, sorted. Where they
	// differ from a pod's tessera.dev/gpu-ids (the device plugin chose other
	// GPUs), the scheduler trusts them. Empty when the agent does not read
	// PodResources.
	// +kubebuilder:validation:MaxItems=512
	// +optional
	Holders []GPUHolder `json:"holders,omitempty"`
	// Telemetry summarizes the GPUs' load at the last heartbeat.
	// +optional
	Telemetry *GPUTelemetrySummary `json:"telemetry,omitempty"`
	// Warnings says what NVML could not answer; the view above leaves it out.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Warnings []string `json:"warnings,omitempty"`
	// HeartbeatTime is when the node agent last wrote this status.
	// +optional
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`
}

// GPUDevice is one physical GPU.
type GPUDevice struct {
	// Index is the NVML device index.
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`
	// UUID is NVML's stable identifier, e.g. GPU-6b3c…
	UUID string `json:"uuid"`
	// Model is the NVML product name, e.g. "NVIDIA H100 80GB HBM3".
	// +optional
	Model string `json:"model,omitempty"`
	// MemoryMiB is the total device memory.
	// +optional
	MemoryMiB int64 `json:"memoryMiB,omitempty"`
	// PCIBusID is the PCI address, e.g. 0000:18:00.0.
	// +optional
	PCIBusID string `json:"pciBusID,omitempty"`
	// NUMANode is the CPU NUMA node closest to the GPU, -1 when unknown.
	// +optional
	NUMANode int32 `json:"numaNode"`
	// MinorNumber is the GPU's device node minor (/dev/nvidia<minor>);
	// absent when NVML cannot say.
	// +optional
	MinorNumber *int32 `json:"minorNumber,omitempty"`
	// MIGEnabled is true when the GPU is partitioned with MIG.
	// +optional
	MIGEnabled bool `json:"migEnabled,omitempty"`
	// Healthy is false once the GPU has had a fault (uncorrectable ECC error,
	// critical XID). Faults are sticky: see AnnotationClearFaults.
	Healthy bool `json:"healthy"`
	// Fault says why the GPU is unhealthy.
	// +optional
	Fault string `json:"fault,omitempty"`
	// FaultKind says what raised the fault, and so what clears it. The node
	// agent restores faults from it when it restarts.
	// +optional
	FaultKind GPUFaultKind `json:"faultKind,omitempty"`
}

// GPULinkType is a connection class in nvidia-smi topo -m vocabulary.
// +kubebuilder:validation:Enum=NVLink;NVSwitch;PIX;PXB;PHB;NODE;SYS
type GPULinkType string

// GPULink is the connection between two GPUs of the node.
type GPULink struct {
	// A and B are the NVML indexes of the two GPUs, A < B.
	A int32 `json:"a"`
	B int32 `json:"b"`
	// Type is the fastest path between them.
	Type GPULinkType `json:"type"`
	// NVLinks is the number of NVLink lanes between them (nvidia-smi NV#).
	// +optional
	NVLinks int32 `json:"nvlinks,omitempty"`
	// BandwidthGBps is Tessera's estimate of the path's one-direction
	// bandwidth (see pkg/topology/bandwidth.go).
	BandwidthGBps int32 `json:"bandwidthGBps"`
}

// GPUIslandKind says what joins the GPUs of an island.
// +kubebuilder:validation:Enum=NVSwitch;NVLink;None
type GPUIslandKind string

// GPUIsland is a set of GPUs connected by NVLink.
type GPUIsland struct {
	// Kind is NVSwitch for a switched domain, NVLink for direct links, None
	// for a GPU without NVLink peers.
	Kind GPUIslandKind `json:"kind"`
	// GPUs are NVML indexes.
	// +listType=atomic
	GPUs []int32 `json:"gpus"`
}

// GPUHolder is a pod holding a GPU.
type GPUHolder struct {
	// Index is the GPU's NVML index.
	Index     int32  `json:"index"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// UID is the pod's UID: controllers reuse pod names across attempts,
	// so the scheduler matches holders to pods by it. Holders without one
	// (written by an older agent) are matched by namespace and name.
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// GPUTelemetrySummary is the node's GPU load, refreshed on heartbeats only so
// that it never causes writes of its own.
type GPUTelemetrySummary struct {
	// AverageUtilizationPercent is the mean GPU utilization.
	AverageUtilizationPercent int32 `json:"averageUtilizationPercent"`
	// MemoryUsedMiB is the memory in use, summed over the GPUs.
	MemoryUsedMiB int64 `json:"memoryUsedMiB"`
	// MaxTemperatureC is the hottest GPU's temperature.
	MaxTemperatureC int32 `json:"maxTemperatureC"`
	// PowerWatts is the GPUs' summed power draw.
	PowerWatts int32 `json:"powerWatts"`
}

// GPUNodeTopologyList is a list of GPUNodeTopology.
//
// +kubebuilder:object:root=true
type GPUNodeTopologyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUNodeTopology `json:"items"`
}
