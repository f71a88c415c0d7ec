package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
// +kubebuilder:printcolumn:name="Model",type=string,JSONPath=`.status.model`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GPUNodeTopology struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is what the node agent last observed through NVML.
	// +optional
	Status GPUNodeTopologyStatus `json:"status,omitempty"`
}

// GPUNodeTopologyStatus is the observed GPU topology of a node.
type GPUNodeTopologyStatus struct {
	// GPUCount is the number of GPUs NVML reports on the node.
	// +kubebuilder:validation:Minimum=0
	GPUCount int32 `json:"gpuCount"`
	// Model is the product name shared by the node's GPUs, or "mixed".
	// +optional
	Model string `json:"model,omitempty"`
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
	// ObservedTime is when the node agent last read NVML.
	// +optional
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`
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
	NUMANode int32 `json:"numaNode,omitempty"`
	// Healthy is false once NVML reports a fault (XID, uncorrectable ECC).
	Healthy bool `json:"healthy"`
}

// GPULinkType is a connection class in nvidia-smi topo -m vocabulary.
// +kubebuilder:validation:Enum=NVLink;NVSwitch;PIX;PXB;PHB;NODE;SYS
type GPULinkType string

// Link classes, fastest first.
const (
	LinkNVLink   GPULinkType = "NVLink"
	LinkNVSwitch GPULinkType = "NVSwitch"
	LinkPIX      GPULinkType = "PIX"
	LinkPXB      GPULinkType = "PXB"
	LinkPHB      GPULinkType = "PHB"
	LinkNode     GPULinkType = "NODE"
	LinkSys      GPULinkType = "SYS"
)

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
}

// GPUNodeTopologyList is a list of GPUNodeTopology.
//
// +kubebuilder:object:root=true
type GPUNodeTopologyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GPUNodeTopology `json:"items"`
}
