// Package podgpu reads what a pod asks of a node's GPUs: whole GPUs (the
// NVIDIA device plugin's nvidia.com/gpu), or a share of one GPU
// (tessera.dev/gpu-milli), and which GPU models will do
// (tessera.dev/gpu-models). Every Tessera plugin reads pods through it, so
// that they agree on what a pod holds.
package podgpu

import (
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// ResourceGPU is the NVIDIA device plugin's extended resource.
const ResourceGPU v1.ResourceName = "nvidia.com/gpu"

// MilliGPU is one whole GPU.
const MilliGPU = topology.MilliGPU

// Request is what a pod asks of one node's GPUs.
type Request struct {
	// GPUs is how many GPUs the pod uses: whole GPUs, or 1 for a share.
	GPUs int
	// Milli is how much of each of those GPUs: MilliGPU for whole GPUs,
	// less for a share of one GPU.
	Milli int64
	// Models are the GPU models the pod may use, sorted; empty means any.
	Models []string
}

// Shared reports whether the pod asks for part of one GPU.
func (r Request) Shared() bool { return r.GPUs == 1 && r.Milli < MilliGPU }

// AllowsModel reports whether the pod may use a GPU of the model.
func (r Request) AllowsModel(model string) bool {
	return len(r.Models) == 0 || slices.Contains(r.Models, model)
}

// ModelsKey is Models as one comparable string, for map keys.
func (r Request) ModelsKey() string { return strings.Join(r.Models, ",") }

// Read returns the pod's request. A malformed annotation, or a share asked
// together with more than one nvidia.com/gpu, is an error that names the
// annotation. (A share may come with nvidia.com/gpu: 1 where the device
// plugin advertises time-sliced replicas under that name.)
func Read(pod *v1.Pod) (Request, error) {
	r := Request{GPUs: WholeGPUs(pod), Milli: MilliGPU}
	if s, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUModels]; ok {
		models, err := tesserav1alpha1.ParseGPUModels(s)
		if err != nil {
			return Request{}, err
		}
		r.Models = models
	}
	s, ok := pod.Annotations[tesserav1alpha1.AnnotationGPUMilli]
	if !ok {
		return r, nil
	}
	milli, err := tesserav1alpha1.ParseGPUMilli(s)
	if err != nil {
		return Request{}, err
	}
	if r.GPUs > 1 {
		return Request{}, fmt.Errorf("%s=%q: a share is of one GPU, but the pod asks for %d %s", tesserav1alpha1.AnnotationGPUMilli, s, r.GPUs, ResourceGPU)
	}
	r.GPUs, r.Milli = 1, milli
	return r, nil
}

// Held returns what a pod already on a node holds. A malformed share, which
// this scheduler would not have placed, counts as a whole GPU so that no
// GPU is ever counted free twice.
func Held(pod *v1.Pod) Request {
	if r, err := Read(pod); err == nil {
		return r
	}
	return Request{GPUs: max(WholeGPUs(pod), 1), Milli: MilliGPU}
}

// WholeGPUs is how many nvidia.com/gpu a pod holds while it runs: the sum
// over its containers and sidecars, or more if an init container needs
// more. (The kubelet also adds the sidecars started before an init
// container to it; GPU sidecars are rare enough that this leaves that out.)
func WholeGPUs(pod *v1.Pod) int {
	count := func(c *v1.Container) int64 {
		if q, ok := c.Resources.Requests[ResourceGPU]; ok {
			return q.Value()
		}
		q := c.Resources.Limits[ResourceGPU]
		return q.Value()
	}
	var sum, initMax int64
	for i := range pod.Spec.Containers {
		sum += count(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sum += count(c) // a sidecar runs alongside the containers
			continue
		}
		initMax = max(initMax, count(c))
	}
	return int(max(sum, initMax))
}
