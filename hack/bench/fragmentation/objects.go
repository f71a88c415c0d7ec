package main

import (
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/openb"
	"tessera.dev/tessera/pkg/podgpu"
)

// kubeNode is an openb node as a Node: its CPU, memory and GPU count
// allocatable, room for any number of pods.
func kubeNode(n openb.Node) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU:     *resource.NewMilliQuantity(n.CPUMilli, resource.DecimalSI),
			v1.ResourceMemory:  *resource.NewQuantity(n.MemoryMiB<<20, resource.BinarySI),
			v1.ResourcePods:    *resource.NewQuantity(10000, resource.DecimalSI),
			podgpu.ResourceGPU: *resource.NewQuantity(int64(n.GPUs), resource.DecimalSI),
		}},
	}
}

// nodeTopology is what a node agent would publish for an openb node: its
// GPUs by index, model and health. The trace says nothing of NVLink, so
// there are no links.
func nodeTopology(n openb.Node, now time.Time) *tesserav1alpha1.GPUNodeTopology {
	t := &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}
	for i := range n.GPUs {
		t.Status.Devices = append(t.Status.Devices, tesserav1alpha1.GPUDevice{
			Index: int32(i), UUID: "GPU-" + n.Name + "-" + strconv.Itoa(i), Model: n.Model, Healthy: true,
		})
	}
	t.Status.HeartbeatTime = &metav1.Time{Time: now}
	return t
}

// kubePod is an openb pod as a Pod: CPU and memory requests, whole GPUs as
// nvidia.com/gpu, a share as tessera.dev/gpu-milli, gpu_spec as
// tessera.dev/gpu-models.
func kubePod(p openb.Pod, uid string) *v1.Pod {
	requests := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewMilliQuantity(p.CPUMilli, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(p.MemoryMiB<<20, resource.BinarySI),
	}
	annotations := map[string]string{}
	limits := v1.ResourceList{}
	switch {
	case p.GPUs == 1 && p.GPUMilli < podgpu.MilliGPU:
		annotations[tesserav1alpha1.AnnotationGPUMilli] = strconv.FormatInt(p.GPUMilli, 10)
	case p.GPUs > 0:
		requests[podgpu.ResourceGPU] = *resource.NewQuantity(int64(p.GPUs), resource.DecimalSI)
		limits[podgpu.ResourceGPU] = requests[podgpu.ResourceGPU]
	}
	if len(p.Models) > 0 && p.GPUs > 0 {
		annotations[tesserav1alpha1.AnnotationGPUModels] = strings.Join(p.Models, ",")
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: p.Name + "-" + uid, UID: types.UID(uid), Annotations: annotations},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "main", Image: "trace",
			Resources: v1.ResourceRequirements{Requests: requests, Limits: limits}}}},
	}
}
