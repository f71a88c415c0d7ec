package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/plugins/nvlink"
	"tessera.dev/tessera/pkg/topology/published"
)

// draNode joins for the DRA part: its GPUs are served by the
// gpu.tessera.dev driver only (its agent publishes a ResourceSlice, and no
// device plugin advertises nvidia.com/gpu).
var draNode = demoNode{"nvl-h0", "h100-nvl-pairs", "rack-h", "dra"}

// runDRADemo installs the chart's DeviceClass, joins the DRA node and
// places examples/dra's pods on it: an unchanged nvidia.com/gpu pod and two
// half-GPU claims. It prints each pod's claimed devices beside its
// tessera.dev/gpu-ids and fails unless they are equal.
func runDRADemo(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, cr ctrlclient.Client, repo string, timeout time.Duration) error {
	progress("the DRA node joins: %s (%s), served by DRA driver %s only", draNode.name, draNode.shape, dra.DriverName)
	if err := installDeviceClass(ctx, cr, repo); err != nil {
		return err
	}
	shape, err := gpunodes.Lookup(draNode.shape)
	if err != nil {
		return err
	}
	node := shape.Node(draNode.name, draNode.rack)
	node.Labels[labelPool] = draNode.pool
	delete(node.Status.Capacity, gpunodes.ResourceGPU)
	delete(node.Status.Allocatable, gpunodes.ResourceGPU)
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating node %s: %w", node.Name, err)
	}
	if err := c.StartProcess(ctx, "node-agent-"+draNode.name, filepath.Join(repo, "bin", "node-agent"),
		"--nvml=fake:"+draNode.shape, "--node-name="+draNode.name, "--kubeconfig="+c.KubeconfigPath,
		"--metrics-bind-address=", "--interval=1s", "--publish-resource-slices"); err != nil {
		return err
	}
	if err := waitPublished(ctx, client, cr, draNode.name, timeout); err != nil {
		return err
	}
	dir := filepath.Join(repo, "examples", "dra")
	progress("submitting examples/dra/workloads.yaml")
	decoder := serializer.NewCodecFactory(cr.Scheme()).UniversalDeserializer()
	if err := createFromFile(ctx, cr, decoder, filepath.Join(dir, "workloads.yaml")); err != nil {
		return err
	}
	rows, err := waitClaimed(ctx, c, client, []string{"dra-finetune", "dra-notebook-a", "dra-notebook-b"}, timeout)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nPOD\tNODE\tCLAIMED DEVICES\tTESSERA.DEV/GPU-IDS\tEQUAL")
	var errs []error
	for _, r := range rows {
		equal := r.ids == tesserav1alpha1.FormatGPUIDs(r.indexes)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\n", r.pod, r.node, strings.Join(r.devices, ","), r.ids, equal)
		if !equal {
			errs = append(errs, fmt.Errorf("pod %s: claimed %v, but %s=%q", r.pod, r.devices, tesserav1alpha1.AnnotationGPUIDs, r.ids))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if a, b := rows[1], rows[2]; !slices.Equal(a.indexes, b.indexes) {
		errs = append(errs, fmt.Errorf("the two half-GPU notebooks got GPUs %v and %v, want one GPU shared", a.indexes, b.indexes))
	}
	return errors.Join(errs...)
}

// installDeviceClass applies the chart's DeviceClass, rendered by bin/helm
// with dra.enabled.
func installDeviceClass(ctx context.Context, cr ctrlclient.Client, repo string) error {
	out, err := exec.CommandContext(ctx, filepath.Join(repo, "bin", "helm"), "template", "tessera", filepath.Join(repo, "charts", "tessera"),
		"--show-only", "templates/dra/deviceclass.yaml", "--set", "dra.enabled=true").Output()
	if err != nil {
		return fmt.Errorf("rendering the chart's DeviceClass: %w", err)
	}
	file, err := os.CreateTemp("", "deviceclass-*.yaml")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(file.Name()) }()
	if _, err := file.Write(out); err != nil {
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	return cluster.ApplyFromFiles(ctx, cr, file.Name())
}

// waitPublished waits until the node's agent has published its
// ResourceSlice and its GPUNodeTopology's status: without the topology,
// Tessera chooses no GPUs there and the allocator's first fit is taken.
func waitPublished(ctx context.Context, client kubernetes.Interface, cr ctrlclient.Client, node string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
			FieldSelector: resourceapi.ResourceSliceSelectorNodeName + "=" + node + "," + resourceapi.ResourceSliceSelectorDriver + "=" + dra.DriverName,
		})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		var topo tesserav1alpha1.GPUNodeTopology
		if err := cr.Get(ctx, ctrlclient.ObjectKey{Name: node}, &topo); err != nil {
			return false, nil
		}
		return topo.Status.HeartbeatTime != nil, nil
	})
	if err != nil {
		return fmt.Errorf("node %s published no ResourceSlice and GPU topology in %s: %w", node, timeout, err)
	}
	return nil
}

// claimedPod is one row of the DRA table.
type claimedPod struct {
	pod, node, ids string
	devices        []string
	indexes        []int
}

// waitClaimed waits until the pods are bound with their claims allocated,
// and returns what each was allocated.
func waitClaimed(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, names []string, timeout time.Duration) ([]claimedPod, error) {
	var rows []claimedPod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Healthy(); err != nil {
			return false, err
		}
		claims, err := client.ResourceV1().ResourceClaims(demoNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		rows = rows[:0]
		for _, name := range names {
			pod, err := client.CoreV1().Pods(demoNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil || pod.Spec.NodeName == "" {
				return false, err
			}
			var reserved []*resourceapi.ResourceClaim
			for i := range claims.Items {
				if slices.ContainsFunc(claims.Items[i].Status.ReservedFor, func(r resourceapi.ResourceClaimConsumerReference) bool { return r.UID == pod.UID }) {
					reserved = append(reserved, &claims.Items[i])
				}
			}
			held, ok := nvlink.AllocatedGPUs(reserved, pod.Spec.NodeName)
			if !ok {
				return false, nil
			}
			row := claimedPod{pod: name, node: pod.Spec.NodeName, ids: pod.Annotations[tesserav1alpha1.AnnotationGPUIDs]}
			for _, h := range held {
				row.devices = append(row.devices, describeHolding(h))
				row.indexes = append(row.indexes, h.Index)
			}
			rows = append(rows, row)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("DRA pods bound with their claims allocated: not after %s: %w", timeout, err)
	}
	return rows, nil
}

// describeHolding names an allocated device, with the share it holds.
func describeHolding(h published.Holding) string {
	name := dra.DeviceName(int32(h.Index))
	if h.Milli < dra.MilliGPU {
		return fmt.Sprintf("%s (%d milli)", name, h.Milli)
	}
	return name
}
