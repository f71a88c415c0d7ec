package nvlink

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// ResourceGPU is the NVIDIA device plugin's extended resource.
const ResourceGPU v1.ResourceName = "nvidia.com/gpu"

const stateKey fwk.StateKey = Name

// request is what a pod asks of one node's GPUs.
type request struct {
	gpus       int
	islandOnly bool
}

// cycleState is the pod's request and the cycle's clock reading, both
// taken once at PreFilter.
type cycleState struct {
	request
	now time.Time
}

func (c *cycleState) Clone() fwk.StateData { return c }

// gpuRequest is how many GPUs a pod holds while it runs: the sum over its
// containers and sidecars, or more if an init container needs more. (The
// kubelet also adds the sidecars started before an init container to it;
// GPU sidecars are rare enough that this leaves that out.)
func gpuRequest(pod *v1.Pod) int {
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

// podRequest reads the pod's GPU count and locality; a malformed locality
// annotation is an error that names it.
func podRequest(pod *v1.Pod, defaultLocality configv1alpha1.GPULocality) (*request, error) {
	locality := defaultLocality
	if s, ok := pod.Annotations[tesserav1alpha1.AnnotationGPULocality]; ok {
		l, err := configv1alpha1.ParseGPULocality(s)
		if err != nil {
			return nil, fmt.Errorf("annotation %s: %w", tesserav1alpha1.AnnotationGPULocality, err)
		}
		locality = l
	}
	return &request{gpus: gpuRequest(pod), islandOnly: locality == configv1alpha1.GPULocalityNVLinkIsland}, nil
}

func readState(state fwk.CycleState) (*cycleState, error) {
	data, err := state.Read(stateKey)
	if err != nil {
		return nil, fmt.Errorf("reading %s state: %w", Name, err)
	}
	r, ok := data.(*cycleState)
	if !ok {
		return nil, fmt.Errorf("%s state has type %T", Name, data)
	}
	return r, nil
}
