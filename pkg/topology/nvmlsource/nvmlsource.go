// Package nvmlsource is topology.Source over go-nvml: the NVIDIA driver's
// library on a real node, or go-nvml's mocks (package nvmlfake). Only the
// node agent links it, so the scheduler and launcher build without cgo.
package nvmlsource

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"tessera.dev/tessera/pkg/topology"
)

// ErrNoDriver means the NVML library could not be loaded: no NVIDIA driver on
// this machine, or it is not mounted into the container.
var ErrNoDriver = errors.New("NVML library (libnvidia-ml.so.1) not found: is the NVIDIA driver installed and visible to this container?")

// Source reads GPUs through go-nvml: the real library (nvml.New(), loaded
// at run time so the binary starts without a GPU) or one of its mocks.
type Source struct {
	lib     nvml.Interface
	devices []nvml.Device

	// eventsMu guards events, the XID event set: registered on the first
	// WaitXID, and again on the next one after a registration or a wait
	// fails, so that a watcher can retry.
	eventsMu sync.Mutex
	events   nvml.EventSet
}

var _ topology.Source = (*Source)(nil)

// New initializes NVML and opens every device handle. Close it.
func New(lib nvml.Interface) (*Source, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
			return nil, ErrNoDriver
		}
		return nil, fmt.Errorf("initializing NVML: %w", ret)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown()
		return nil, fmt.Errorf("counting devices: %w", ret)
	}
	s := &Source{lib: lib, devices: make([]nvml.Device, n)}
	for i := range n {
		// A handle that cannot be opened stays nil; that device's queries fail.
		if d, ret := lib.DeviceGetHandleByIndex(i); ret == nvml.SUCCESS {
			s.devices[i] = d
		}
	}
	return s, nil
}

// Close shuts NVML down.
func (s *Source) Close() error {
	s.eventsMu.Lock()
	if s.events != nil {
		_ = s.events.Free()
		s.events = nil
	}
	s.eventsMu.Unlock()
	if ret := s.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("shutting NVML down: %w", ret)
	}
	return nil
}

// DriverVersion is the NVIDIA driver's version string.
func (s *Source) DriverVersion() (string, error) {
	v, ret := s.lib.SystemGetDriverVersion()
	return v, check("driver version", ret)
}

func (s *Source) DeviceCount() (int, error) { return len(s.devices), nil }

func (s *Source) device(i int) (nvml.Device, error) {
	if i < 0 || i >= len(s.devices) {
		return nil, fmt.Errorf("no GPU %d", i)
	}
	if s.devices[i] == nil {
		return nil, fmt.Errorf("GPU %d: no device handle", i)
	}
	return s.devices[i], nil
}

func (s *Source) Identity(i int) (topology.Identity, error) {
	d, err := s.device(i)
	if err != nil {
		return topology.Identity{}, err
	}
	id := topology.Identity{NUMANode: -1, Minor: -1}
	var ret nvml.Return
	if id.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return topology.Identity{}, check("UUID", ret)
	}
	if id.Model, ret = d.GetName(); ret != nvml.SUCCESS {
		return topology.Identity{}, check("name", ret)
	}
	mem, ret := d.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return topology.Identity{}, check("memory", ret)
	}
	id.MemoryMiB = int64(mem.Total / (1 << 20))
	pci, ret := d.GetPciInfo()
	if ret != nvml.SUCCESS {
		return topology.Identity{}, check("PCI info", ret)
	}
	id.PCIBusID = busID(pci)
	if arch, ret := d.GetArchitecture(); ret == nvml.SUCCESS {
		id.Architecture = architecture(arch)
	} else {
		id.Architecture = topology.ArchUnknown
	}
	id.NUMANode = numaNode(d)
	if minor, ret := d.GetMinorNumber(); ret == nvml.SUCCESS {
		id.Minor = minor
	}
	if current, _, ret := d.GetMigMode(); ret == nvml.SUCCESS {
		id.MIGEnabled = current == nvml.DEVICE_MIG_ENABLE
	}
	id.Clique = clique(d)
	return id, nil
}

func (s *Source) NVLinks(i int) ([]topology.NVLinkPort, error) {
	d, err := s.device(i)
	if err != nil {
		return nil, err
	}
	var ports []topology.NVLinkPort
	for link := range nvml.NVLINK_MAX_LINKS {
		state, ret := d.GetNvLinkState(link)
		if ret == nvml.ERROR_NOT_SUPPORTED && link == 0 {
			return nil, nil // no NVLink on this GPU
		}
		if ret == nvml.ERROR_INVALID_ARGUMENT || ret == nvml.ERROR_NOT_SUPPORTED {
			break // past the device's last link
		}
		if ret != nvml.SUCCESS {
			return ports, fmt.Errorf("NVLink %d state: %w", link, ret)
		}
		if state != nvml.FEATURE_ENABLED {
			continue
		}
		port := topology.NVLinkPort{Link: link, Remote: topology.RemoteOther}
		if kind, ret := d.GetNvLinkRemoteDeviceType(link); ret == nvml.SUCCESS {
			switch kind {
			case nvml.NVLINK_DEVICE_TYPE_GPU:
				port.Remote = topology.RemoteGPU
			case nvml.NVLINK_DEVICE_TYPE_SWITCH:
				port.Remote = topology.RemoteSwitch
			}
		}
		pci, ret := d.GetNvLinkRemotePciInfo(link)
		if ret != nvml.SUCCESS {
			return ports, fmt.Errorf("NVLink %d remote PCI info: %w", link, ret)
		}
		port.RemotePCIBusID = busID(pci)
		ports = append(ports, port)
	}
	return ports, nil
}

func (s *Source) CommonAncestor(a, b int) (topology.LinkType, error) {
	da, err := s.device(a)
	if err != nil {
		return 0, err
	}
	db, err := s.device(b)
	if err != nil {
		return 0, err
	}
	level, ret := da.GetTopologyCommonAncestor(db)
	if ret != nvml.SUCCESS {
		return 0, check("topology common ancestor", ret)
	}
	switch level {
	case nvml.TOPOLOGY_INTERNAL, nvml.TOPOLOGY_SINGLE:
		return topology.LinkPIX, nil
	case nvml.TOPOLOGY_MULTIPLE:
		return topology.LinkPXB, nil
	case nvml.TOPOLOGY_HOSTBRIDGE:
		return topology.LinkPHB, nil
	case nvml.TOPOLOGY_NODE:
		return topology.LinkNode, nil
	case nvml.TOPOLOGY_SYSTEM:
		return topology.LinkSys, nil
	}
	return 0, fmt.Errorf("unknown topology level %d", level)
}

func (s *Source) Health(i int) (topology.Health, error) {
	d, err := s.device(i)
	if err != nil {
		return topology.Health{}, err
	}
	n, ret := d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
	switch ret {
	case nvml.SUCCESS:
		return topology.Health{UncorrectableECC: n, ECCSupported: true}, nil
	case nvml.ERROR_NOT_SUPPORTED:
		return topology.Health{}, nil
	}
	return topology.Health{}, check("uncorrectable ECC count", ret)
}

func (s *Source) Telemetry(i int) (topology.Telemetry, error) {
	d, err := s.device(i)
	if err != nil {
		return topology.Telemetry{}, err
	}
	var t topology.Telemetry
	var errs []error
	if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		t.UtilizationPercent = u.Gpu
	} else {
		errs = append(errs, check("utilization", ret))
	}
	// v2 counts driver-reserved memory apart from used, as nvidia-smi does;
	// v1's used includes it (615 MiB on an idle H200 with driver 580).
	if m, ret := d.GetMemoryInfo_v2(); ret == nvml.SUCCESS {
		t.MemoryUsedMiB = int64(m.Used / (1 << 20))
	} else if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		t.MemoryUsedMiB = int64(m.Used / (1 << 20))
	} else {
		errs = append(errs, check("memory", ret))
	}
	if c, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		t.TemperatureC = c
	} else {
		errs = append(errs, check("temperature", ret))
	}
	if mw, ret := d.GetPowerUsage(); ret == nvml.SUCCESS {
		t.PowerWatts = float64(mw) / 1000
	} else {
		errs = append(errs, check("power", ret))
	}
	return t, errors.Join(errs...)
}

// WaitXID waits for the next critical XID. An error (no event set could be
// registered, or waiting failed) is returned once per call; the next call
// registers a new event set, so a caller may retry.
func (s *Source) WaitXID(timeout time.Duration) (topology.XIDEvent, bool, error) {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	if s.events == nil {
		set, err := s.registerXIDEvents()
		if err != nil {
			return topology.XIDEvent{}, false, err
		}
		s.events = set
	}
	ev, ret := s.events.Wait(uint32(timeout.Milliseconds()))
	switch ret {
	case nvml.SUCCESS:
	case nvml.ERROR_TIMEOUT:
		return topology.XIDEvent{}, false, nil
	default:
		_ = s.events.Free()
		s.events = nil
		return topology.XIDEvent{}, false, check("waiting for XID events", ret)
	}
	if ev.EventType != nvml.EventTypeXidCriticalError || ev.Device == nil {
		return topology.XIDEvent{}, false, nil
	}
	uuid, ret := ev.Device.GetUUID()
	if ret != nvml.SUCCESS {
		return topology.XIDEvent{}, false, check("UUID of the GPU with an XID", ret)
	}
	return topology.XIDEvent{UUID: uuid, XID: ev.EventData}, true, nil
}

// registerXIDEvents subscribes every GPU that supports it to critical XIDs.
func (s *Source) registerXIDEvents() (nvml.EventSet, error) {
	set, ret := s.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		return nil, check("creating an NVML event set", ret)
	}
	registered := 0
	for _, d := range s.devices {
		if d != nil && d.RegisterEvents(nvml.EventTypeXidCriticalError, set) == nvml.SUCCESS {
			registered++
		}
	}
	if registered == 0 && len(s.devices) > 0 {
		_ = set.Free()
		return nil, errors.New("no GPU supports XID event reporting")
	}
	return set, nil
}

// clique reads the GPU's multi-node NVLink fabric membership. The v1 call is
// used because its answer is a plain struct; the versioned one cannot be
// faked. GPUs outside such a fabric answer NOT_SUPPORTED.
func clique(d nvml.Device) string {
	info, ret := d.GetGpuFabricInfo()
	if ret != nvml.SUCCESS || info.State != nvml.GPU_FABRIC_STATE_COMPLETED || nvml.Return(info.Status) != nvml.SUCCESS {
		return ""
	}
	u := info.ClusterUuid
	return fmt.Sprintf("%x-%x-%x-%x-%x.%d", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], info.CliqueId)
}

// numaNode is the GPU's NUMA node, or -1. Where NVML has no NUMA id for the
// GPU (seen in a VM with driver 580), its memory affinity still names the node
// that nvidia-smi topo -m reports.
func numaNode(d nvml.Device) int {
	if n, ret := d.GetNumaNodeId(); ret == nvml.SUCCESS && n >= 0 {
		return n
	}
	const maxNodes = 64
	mask, ret := d.GetMemoryAffinity(maxNodes, nvml.AFFINITY_SCOPE_NODE)
	if ret != nvml.SUCCESS {
		return -1
	}
	node := -1
	for word, bits := range mask {
		for bit := range 64 {
			if bits&(1<<bit) == 0 {
				continue
			}
			if node >= 0 {
				return -1 // affine to several nodes: no single answer
			}
			node = word*64 + bit
		}
	}
	return node
}

// check turns an nvml.Return into an error; nvml.SUCCESS is itself a non-nil
// error value, so it must not escape the seam.
func check(what string, ret nvml.Return) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return fmt.Errorf("%s: %w", what, ret)
}

// busID reads the NUL-terminated bus ID that NVML returns as [32]int8.
func busID(pci nvml.PciInfo) string {
	b := make([]byte, 0, len(pci.BusId))
	for _, c := range pci.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return topology.NormalizeBusID(string(b))
}

func architecture(a nvml.DeviceArchitecture) topology.Architecture {
	switch a {
	case nvml.DEVICE_ARCH_VOLTA:
		return topology.ArchVolta
	case nvml.DEVICE_ARCH_AMPERE:
		return topology.ArchAmpere
	case nvml.DEVICE_ARCH_ADA:
		return topology.ArchAda
	case nvml.DEVICE_ARCH_HOPPER:
		return topology.ArchHopper
	case nvml.DEVICE_ARCH_BLACKWELL:
		return topology.ArchBlackwell
	}
	return topology.ArchUnknown
}
