package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/podgpu"
)

// printTopologies prints what each node agent published.
func printTopologies(out io.Writer, topologies []tesserav1alpha1.GPUNodeTopology) error {
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tGPUS\tHEALTHY\tMODEL\tNVLINK")
	for _, t := range topologies {
		var islands []string
		for _, is := range t.Status.Islands {
			if is.Kind == "None" {
				continue
			}
			ids := make([]string, len(is.GPUs))
			for i, g := range is.GPUs {
				ids[i] = fmt.Sprint(g)
			}
			islands = append(islands, string(is.Kind)+"["+strings.Join(ids, ",")+"]")
		}
		nvlink := strings.Join(islands, " ")
		if nvlink == "" {
			nvlink = "none (PCIe only)"
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", t.Name, t.Status.GPUCount, t.Status.HealthyGPUs, t.Status.Model, nvlink)
	}
	return w.Flush()
}

// printPlacements prints one row per pod: GPUs asked, node, its shape and
// rack, the GPUs the scheduler chose there, outcome.
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
	fmt.Fprintln(w, "POD\tGANG\tGPUS\tNODE\tSHAPE\tRACK\tGPU IDS\tSTATUS")
	for _, p := range pods {
		node, shape, rack := "-", "-", "-"
		if n, ok := byName[p.Spec.NodeName]; ok {
			node, shape, rack = n.Name, n.Labels[gpunodes.LabelShape], n.Labels[gpunodes.LabelRack]
		}
		status := string(p.Status.Phase)
		if c := podScheduledCondition(p); c != nil && c.Status == corev1.ConditionFalse {
			status = fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
		gang := p.Labels[schedv1alpha1.PodGroupLabel]
		if gang == "" {
			gang = "-"
		}
		ids := p.Annotations[tesserav1alpha1.AnnotationGPUIDs]
		if ids == "" {
			ids = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, gang, gpusCell(p), node, shape, rack, ids, status)
	}
	return w.Flush()
}

// requestedGPUs is how many GPUs the pod uses: whole GPUs, or 1 for a
// share of one GPU.
func requestedGPUs(p *corev1.Pod) int64 {
	return int64(podgpu.Held(p).GPUs)
}

// gpusCell shows whole GPUs as a count and a share as milli-GPUs ("500m").
func gpusCell(p *corev1.Pod) string {
	if r := podgpu.Held(p); r.Shared() {
		return fmt.Sprintf("%dm", r.Milli)
	}
	return fmt.Sprint(requestedGPUs(p))
}
