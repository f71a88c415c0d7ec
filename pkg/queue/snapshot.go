package queue

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology/published"
)

// snapshot reads the cluster's free capacity: every Ready, schedulable
// node, its published GPU topology and how the pods bound to it hold its
// GPUs, CPU and memory. A node whose topology is malformed is left without
// GPUs (the scheduler does not trust it either).
func snapshot(ctx context.Context, c ctrlclient.Reader) ([]*Node, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var topologies tesserav1alpha1.GPUNodeTopologyList
	if err := c.List(ctx, &topologies); err != nil {
		return nil, fmt.Errorf("listing GPUNodeTopologies: %w", err)
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	gpus := make(map[string]*published.Node, len(topologies.Items))
	for i := range topologies.Items {
		t := &topologies.Items[i]
		var heartbeat = t.CreationTimestamp.Time
		if t.Status.HeartbeatTime != nil {
			heartbeat = t.Status.HeartbeatTime.Time
		}
		if n, err := published.Read(&t.Status, heartbeat); err == nil {
			gpus[t.Name] = n
		}
	}
	onNode := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		onNode[p.Spec.NodeName] = append(onNode[p.Spec.NodeName], p)
	}
	out := make([]*Node, 0, len(nodes.Items))
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Spec.Unschedulable || !ready(n) {
			continue
		}
		node := &Node{
			Name:            n.Name,
			Labels:          n.Labels,
			Taints:          n.Spec.Taints,
			FreeMilliCPU:    n.Status.Allocatable.Cpu().MilliValue(),
			FreeMemoryBytes: n.Status.Allocatable.Memory().Value(),
		}
		for _, p := range onNode[n.Name] {
			cpu, mem := requests(&p.Spec)
			node.FreeMilliCPU -= cpu
			node.FreeMemoryBytes -= mem
		}
		if g := gpus[n.Name]; g != nil {
			used, fits := g.Use(onNode[n.Name], published.AnnotatedGPUs)
			if fits {
				node.GPUs, node.Used = g, used
			}
		}
		out = append(out, node)
	}
	return out, nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// requests sums the CPU and memory requests of a pod's containers.
func requests(spec *corev1.PodSpec) (milliCPU, memoryBytes int64) {
	for _, c := range spec.Containers {
		milliCPU += c.Resources.Requests.Cpu().MilliValue()
		memoryBytes += c.Resources.Requests.Memory().Value()
	}
	return milliCPU, memoryBytes
}
