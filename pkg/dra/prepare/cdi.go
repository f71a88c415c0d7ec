package prepare

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The Container Device Interface spec, as much of it as a claim's GPUs need
// (github.com/cncf-tags/container-device-interface, specification 0.6.0).
type cdiSpec struct {
	Version        string         `json:"cdiVersion"`
	Kind           string         `json:"kind"`
	Devices        []cdiDevice    `json:"devices"`
	ContainerEdits containerEdits `json:"containerEdits,omitempty"`
}

type cdiDevice struct {
	Name           string         `json:"name"`
	ContainerEdits containerEdits `json:"containerEdits"`
}

type containerEdits struct {
	Env         []string     `json:"env,omitempty"`
	DeviceNodes []deviceNode `json:"deviceNodes,omitempty"`
}

type deviceNode struct {
	Path string `json:"path"`
}

const (
	cdiVersion = "0.6.0"
	// cdiKind is the vendor/class of every CDI device the driver writes.
	cdiKind = "gpu.tessera.dev/claim"
)

// The device nodes every CUDA container needs besides its GPUs' (not
// nvidia-uvm-tools, for profilers only and absent on some hosts: a CDI
// device node that is missing fails the container).
var controlDeviceNodes = []deviceNode{{Path: "/dev/nvidiactl"}, {Path: "/dev/nvidia-uvm"}}

// cdiDeviceID is the fully qualified CDI name the runtime resolves.
func cdiDeviceID(name string) string { return cdiKind + "=" + name }

// specPath is the claim's spec file: one per claim, named after its UID,
// so that a runtime's cache never serves another claim's devices.
func specPath(dir, claimUID string) string {
	return filepath.Join(dir, strings.ReplaceAll(cdiKind, "/", "-")+"-"+claimUID+".json")
}

// writeSpec writes spec to path atomically (the runtime may read it at
// any time).
func writeSpec(path string, spec cdiSpec) error {
	raw, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("writing CDI spec: %w", err)
	}
	return os.Rename(tmp, path)
}
