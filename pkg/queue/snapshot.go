package queue

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/podgpu"
	"tessera.dev/tessera/pkg/topology/published"
)

// snapshot reads the cluster's free capacity: every Ready, schedulable
// node, its published GPU topology and how the pods bound to it hold its
// GPUs, CPU and memory. It trusts a topology as the scheduler does, only
// when readable and fresh at the check's clock; a node without one is
// counted by nvidia.com/gpu instead (see countGPUs).
func (r *TopologyFit) snapshot(ctx context.Context) ([]*Node, error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var topologies tesserav1alpha1.GPUNodeTopologyList
	if err := r.Client.List(ctx, &topologies); err != nil {
		return nil, fmt.Errorf("listing GPUNodeTopologies: %w", err)
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	gpus := r.trusted(topologies.Items)
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
			// Pods the topology cannot account for leave the node without
			// free GPUs, as in the scheduler.
			if used, fits := g.Use(onNode[n.Name], published.AnnotatedHoldings, podgpu.Held); fits {
				node.GPUs, node.Used = g, used
			}
		} else {
			r.countGPUs(node, n, onNode[n.Name])
		}
		out = append(out, node)
	}
	return out, nil
}

// trusted reads the topologies the scheduler would use now: readable, with
// a heartbeat no older than StaleAfter (published.Node.Stale).
func (r *TopologyFit) trusted(items []tesserav1alpha1.GPUNodeTopology) map[string]*published.Node {
	now, staleAfter := r.Clock.Now(), r.staleAfter()
	out := make(map[string]*published.Node, len(items))
	for i := range items {
		t := &items[i]
		var heartbeat time.Time
		if t.Status.HeartbeatTime != nil {
			heartbeat = t.Status.HeartbeatTime.Time
		}
		n, err := published.Read(&t.Status, heartbeat)
		if err != nil {
			continue
		}
		if _, stale := n.Stale(now, staleAfter); !stale {
			out[t.Name] = n
		}
	}
	return out
}

// countGPUs counts the GPUs of a node without a trusted topology as the
// scheduler's NodeResourcesFit does: nvidia.com/gpu allocatable less the
// pods' requests. GPU pods go there by count only under missingTopology
// CountOnly.
func (r *TopologyFit) countGPUs(node *Node, n *corev1.Node, pods []*corev1.Pod) {
	free := n.Status.Allocatable[podgpu.ResourceGPU]
	node.CountedGPUs = int(free.Value())
	for _, p := range pods {
		node.CountedGPUs -= podgpu.WholeGPUs(p)
	}
	node.CountedGPUs = max(node.CountedGPUs, 0)
	node.CountOnly = r.missingTopology() == configv1alpha1.MissingTopologyCountOnly
}

// staleAfter is StaleAfter, or the scheduler's default.
func (r *TopologyFit) staleAfter() time.Duration {
	if r.StaleAfter == 0 {
		return configv1alpha1.DefaultTopologyStaleAfterSeconds * time.Second
	}
	return r.StaleAfter
}

// missingTopology is MissingTopology, or the scheduler's default.
func (r *TopologyFit) missingTopology() configv1alpha1.MissingTopologyPolicy {
	if r.MissingTopology == "" {
		return configv1alpha1.MissingTopologyCountOnly
	}
	return r.MissingTopology
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
