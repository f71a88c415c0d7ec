package gpunodes

import (
	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
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
	src, err := topology.NewNVMLSource(gpus)
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
