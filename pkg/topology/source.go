package topology

import "time"

// Source is the narrow view of a node's GPUs that discovery and telemetry
// read: NVML on a real node (package nvmlsource), go-nvml's mocks in tests and
// simulation (package nvmlfake). Devices are addressed by NVML index.
type Source interface {
	DeviceCount() (int, error)
	Identity(index int) (Identity, error)
	// NVLinks lists the device's NVLink ports that are up.
	NVLinks(index int) ([]NVLinkPort, error)
	// CommonAncestor is the PCIe/CPU path between two devices (PIX…SYS).
	CommonAncestor(a, b int) (LinkType, error)
	Health(index int) (Health, error)
	Telemetry(index int) (Telemetry, error)
	// WaitXID waits up to timeout for the next critical XID error on any
	// GPU; ok is false when none came.
	WaitXID(timeout time.Duration) (ev XIDEvent, ok bool, err error)
}

// XIDEvent is a critical XID error that NVML reported for a GPU.
type XIDEvent struct {
	UUID string
	XID  uint64
}

// Identity is what a GPU is and where it sits.
type Identity struct {
	UUID         string
	Model        string
	Architecture Architecture
	MemoryMiB    int64
	PCIBusID     string
	// NUMANode is -1 when NVML cannot say.
	NUMANode   int
	MIGEnabled bool
	// Minor is the GPU's device node minor number (/dev/nvidia<Minor>),
	// -1 when NVML cannot say; not always its index.
	Minor int
	// Clique is the multi-node NVLink domain the GPU has joined, as GPU
	// feature discovery's nvidia.com/gpu.clique label writes it
	// (<cluster UUID>.<clique ID>); empty without a multi-node NVLink fabric.
	Clique string
}

// RemoteKind is what sits at the far end of an NVLink port.
type RemoteKind int

// Kinds of NVLink peer.
const (
	RemoteGPU RemoteKind = iota
	RemoteSwitch
	RemoteOther
)

// NVLinkPort is one active NVLink of a GPU.
type NVLinkPort struct {
	Link   int
	Remote RemoteKind
	// RemotePCIBusID is the peer's PCI address (a GPU's, or the NVSwitch's).
	RemotePCIBusID string
}

// Health is a GPU's fault counters.
type Health struct {
	// UncorrectableECC is the volatile count of uncorrectable ECC errors
	// since the driver loaded; any is a fault.
	UncorrectableECC uint64
	// ECCSupported is false on GPUs without ECC, where the count means nothing.
	ECCSupported bool
}

// Telemetry is a GPU's current load.
type Telemetry struct {
	UtilizationPercent uint32
	MemoryUsedMiB      int64
	TemperatureC       uint32
	PowerWatts         float64
}
