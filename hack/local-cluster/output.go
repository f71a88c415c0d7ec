package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"tessera.dev/tessera/internal/gpunodes"
)

// printPlacements prints one row per pod: GPUs asked, node, its shape and rack, outcome.
func printPlacements(out io.Writer, client kubernetes.Interface, pods []*corev1.Pod) error {
	nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	byName := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		byName[n.Name] = n
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tGPUS\tNODE\tSHAPE\tRACK\tSTATUS")
	for _, p := range pods {
		node, shape, rack := "-", "-", "-"
		if n, ok := byName[p.Spec.NodeName]; ok {
			node, shape, rack = n.Name, n.Labels[gpunodes.LabelShape], n.Labels[gpunodes.LabelRack]
		}
		status := string(p.Status.Phase)
		if c := podScheduledCondition(p); c != nil && c.Status == corev1.ConditionFalse {
			status = fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", p.Name, requestedGPUs(p), node, shape, rack, status)
	}
	return w.Flush()
}

func requestedGPUs(p *corev1.Pod) int64 {
	var total int64
	for _, c := range p.Spec.Containers {
		q, ok := c.Resources.Limits[gpunodes.ResourceGPU]
		if !ok {
			q = c.Resources.Requests[gpunodes.ResourceGPU]
		}
		total += q.Value()
	}
	return total
}
