// Package gpunodes describes the GPU server shapes of Tessera's simulated
// clusters and builds kwok-managed Node objects for them, labelled the way
// NVIDIA's GPU feature discovery labels real nodes.
package gpunodes

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ResourceGPU is the extended resource NVIDIA's device plugin advertises.
const ResourceGPU corev1.ResourceName = "nvidia.com/gpu"

// Labels set on every simulated GPU node.
const (
	// LabelShape names the Shape a node was built from.
	LabelShape = "tessera.dev/shape"
	// LabelRack is the rack a node sits in; racks group nodes on one leaf switch.
	LabelRack = "tessera.dev/rack"
	// Labels published by NVIDIA GPU feature discovery on real nodes.
	LabelGPUProduct = "nvidia.com/gpu.product"
	LabelGPUCount   = "nvidia.com/gpu.count"
	LabelGPUMemory  = "nvidia.com/gpu.memory"
	LabelGPUFamily  = "nvidia.com/gpu.family"
)

// Shape is a GPU server model.
type Shape struct {
	// Name is the short name used in flags and labels, e.g. dgx-h100.
	Name string
	// Description says what the shape is, for humans.
	Description string
	// GPUProduct is the product name as GPU feature discovery writes it.
	GPUProduct string
	GPUFamily  string
	GPUs       int
	// GPUMemoryMiB is the memory of one GPU.
	GPUMemoryMiB int
	CPU          string
	Memory       string
}

// Shapes lists the supported shapes by name.
var Shapes = map[string]Shape{
	"dgx-h100": {
		Name: "dgx-h100", Description: "DGX H100: 8x H100 SXM5 80GB on four NVSwitches",
		GPUProduct: "NVIDIA-H100-80GB-HBM3", GPUFamily: "hopper", GPUs: 8, GPUMemoryMiB: 81559,
		CPU: "224", Memory: "2Ti",
	},
	"dgx-a100": {
		Name: "dgx-a100", Description: "DGX A100: 8x A100 SXM4 80GB on six NVSwitches",
		GPUProduct: "NVIDIA-A100-SXM4-80GB", GPUFamily: "ampere", GPUs: 8, GPUMemoryMiB: 81920,
		CPU: "256", Memory: "2Ti",
	},
	"h100-nvl-pairs": {
		Name: "h100-nvl-pairs", Description: "8x H100 NVL 94GB, PCIe, NVLink-bridged in pairs",
		GPUProduct: "NVIDIA-H100-NVL", GPUFamily: "hopper", GPUs: 8, GPUMemoryMiB: 95830,
		CPU: "192", Memory: "2Ti",
	},
	"l40s-pcie": {
		Name: "l40s-pcie", Description: "8x L40S 48GB, PCIe, two GPUs per PCIe switch",
		GPUProduct: "NVIDIA-L40S", GPUFamily: "ada-lovelace", GPUs: 8, GPUMemoryMiB: 46068,
		CPU: "128", Memory: "1Ti",
	},
	"l4-pcie": {
		Name: "l4-pcie", Description: "4x L4 24GB, PCIe only",
		GPUProduct: "NVIDIA-L4", GPUFamily: "ada-lovelace", GPUs: 4, GPUMemoryMiB: 23034,
		CPU: "64", Memory: "256Gi",
	},
}

// ShapeNames returns the shape names, sorted.
func ShapeNames() []string {
	names := make([]string, 0, len(Shapes))
	for name := range Shapes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the shape called name, or an error naming the known shapes.
func Lookup(name string) (Shape, error) {
	s, ok := Shapes[name]
	if !ok {
		return Shape{}, fmt.Errorf("unknown GPU node shape %q; known shapes: %s", name, strings.Join(ShapeNames(), ", "))
	}
	return s, nil
}

// Node builds a Node of this shape for kwok to manage. rack may be empty.
func (s Shape) Node(name, rack string) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
		"type":                 "kwok",
		LabelShape:             s.Name,
		LabelGPUProduct:        s.GPUProduct,
		LabelGPUFamily:         s.GPUFamily,
		LabelGPUCount:          strconv.Itoa(s.GPUs),
		LabelGPUMemory:         strconv.Itoa(s.GPUMemoryMiB),
	}
	if rack != "" {
		labels[LabelRack] = rack
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(s.CPU),
		corev1.ResourceMemory: resource.MustParse(s.Memory),
		corev1.ResourcePods:   resource.MustParse("110"),
		ResourceGPU:           *resource.NewQuantity(int64(s.GPUs), resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      labels,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{
			Capacity:    resources,
			Allocatable: resources.DeepCopy(),
		},
	}
}
