package gpunodes

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

// TopologyStatus is the GPUNodeTopology status a node agent publishes for
// node on a fake-NVML server of shape (an nvmlfake shape name), built by
// the agent's own discovery and status code; heartbeat and telemetry are
// left for the caller.
func TopologyStatus(node, shape string) (tesserav1alpha1.GPUNodeTopologyStatus, error) {
	gpus, err := nvmlfake.New(shape, node)
	if err != nil {
		return tesserav1alpha1.GPUNodeTopologyStatus{}, err
	}
	src, err := nvmlsource.New(gpus)
	if err != nil {
		return tesserav1alpha1.GPUNodeTopologyStatus{}, err
	}
	d, err := topology.Discover(src)
	if err != nil {
		return tesserav1alpha1.GPUNodeTopologyStatus{}, err
	}
	driver, err := src.DriverVersion()
	if err != nil {
		return tesserav1alpha1.GPUNodeTopologyStatus{}, err
	}
	return nodeagent.BuildStatus(d, driver), nil
}

// PublishTopology creates node's GPUNodeTopology with the status a node
// agent on a fake-NVML server of shape publishes, beating at heartbeat.
func PublishTopology(ctx context.Context, c ctrlclient.Client, node, shape string, heartbeat time.Time) (*tesserav1alpha1.GPUNodeTopology, error) {
	status, err := TopologyStatus(node, shape)
	if err != nil {
		return nil, err
	}
	obj := &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: node}}
	if err := c.Create(ctx, obj); err != nil {
		return nil, fmt.Errorf("creating GPUNodeTopology %s: %w", node, err)
	}
	obj.Status = status
	obj.Status.HeartbeatTime = &metav1.Time{Time: heartbeat}
	if err := c.Status().Update(ctx, obj); err != nil {
		return nil, fmt.Errorf("publishing GPUNodeTopology %s: %w", node, err)
	}
	return obj, nil
}
