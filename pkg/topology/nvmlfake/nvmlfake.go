// Package nvmlfake builds NVML fakes of whole GPU servers for tests and
// simulation, on go-nvml's mock server (mock/dgxh100, mock/dgxa100, or
// gpus.Config for models it lacks), adding what those mocks leave unset:
// NVLink state and peers, PCIe common ancestors, NUMA affinity, PCI bus IDs,
// ECC counters and telemetry. Discovery reads them through the same
// nvmlsource.Source code path as a real node.
package nvmlfake

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// Shape is one fake GPU server.
type Shape struct {
	Name        string
	Description string
	build       func() *server.Server
	busIDs      []string
	// switchLinks is each GPU's NVLink count into an NVSwitch fabric (0: none).
	switchLinks int
	// bridges pairs GPUs over direct NVLink bridges: GPU -> peer, with links per pair.
	bridges     map[int]int
	bridgeLinks int
	// pcie returns the common-ancestor level between two GPUs.
	pcie func(a, b int) nvml.GpuTopologyLevel
	// numa returns a GPU's NUMA node.
	numa func(i int) int
	// failed GPUs report uncorrectable ECC errors.
	failed []int
	// clique is the multi-node NVLink clique ID, 0 for none.
	clique uint32
}

var (
	l40s = gpus.Config{
		Name: "NVIDIA L40S", Architecture: nvml.DEVICE_ARCH_ADA, Brand: nvml.BRAND_NVIDIA,
		MemoryMB: 46068, CudaMajor: 8, CudaMinor: 9, PciDeviceId: 0x26B910DE,
	}
	l4 = gpus.Config{
		Name: "NVIDIA L4", Architecture: nvml.DEVICE_ARCH_ADA, Brand: nvml.BRAND_NVIDIA,
		MemoryMB: 23034, CudaMajor: 8, CudaMinor: 9, PciDeviceId: 0x27B810DE,
	}
	h100NVL = gpus.Config{
		Name: "NVIDIA H100 NVL", Architecture: nvml.DEVICE_ARCH_HOPPER, Brand: nvml.BRAND_NVIDIA,
		MemoryMB: 95830, CudaMajor: 9, CudaMinor: 0, PciDeviceId: 0x232110DE,
	}
)

// halves puts GPUs 0..n/2-1 on NUMA node 0 and the rest on node 1.
func halves(n int) func(int) int { return func(i int) int { return i * 2 / n } }

// pairsPerSwitch: GPUs 2k and 2k+1 share a PCIe switch; the rest meet at
// the CPU (NODE) or across sockets (SYS).
func pairsPerSwitch(numa func(int) int, sameSwitch nvml.GpuTopologyLevel) func(a, b int) nvml.GpuTopologyLevel {
	return func(a, b int) nvml.GpuTopologyLevel {
		switch {
		case a/2 == b/2:
			return sameSwitch
		case numa(a) == numa(b):
			return nvml.TOPOLOGY_NODE
		}
		return nvml.TOPOLOGY_SYSTEM
	}
}

// Shapes lists every fake server by name.
var Shapes = map[string]Shape{
	"dgx-h100": {
		Name: "dgx-h100", Description: "DGX H100: 8x H100 SXM5 80GB, 18 NVLinks each into four NVSwitches",
		build: dgxh100.New, switchLinks: 18,
		busIDs: []string{"0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0", "0000:9d:00.0", "0000:c3:00.0", "0000:d1:00.0", "0000:df:00.0"},
		numa:   halves(8), pcie: pairsPerSwitch(halves(8), nvml.TOPOLOGY_MULTIPLE),
	},
	"dgx-h100-gpu-failed": {
		Name: "dgx-h100-gpu-failed", Description: "DGX H100 whose GPU 5 reports uncorrectable ECC errors",
		build: dgxh100.New, switchLinks: 18, failed: []int{5},
		busIDs: []string{"0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0", "0000:9d:00.0", "0000:c3:00.0", "0000:d1:00.0", "0000:df:00.0"},
		numa:   halves(8), pcie: pairsPerSwitch(halves(8), nvml.TOPOLOGY_MULTIPLE),
	},
	"dgx-a100": {
		Name: "dgx-a100", Description: "DGX A100: 8x A100 SXM4 80GB, 12 NVLinks each into six NVSwitches",
		build: func() *server.Server { return dgxa100.NewWithGPUs(gpus.Multiple(8, gpus.A100_SXM4_80GB)...) }, switchLinks: 12,
		busIDs: []string{"0000:07:00.0", "0000:0f:00.0", "0000:47:00.0", "0000:4e:00.0", "0000:87:00.0", "0000:90:00.0", "0000:b7:00.0", "0000:bd:00.0"},
		numa:   halves(8), pcie: pairsPerSwitch(halves(8), nvml.TOPOLOGY_MULTIPLE),
	},
	"h100-nvl-pairs": {
		Name: "h100-nvl-pairs", Description: "8x H100 NVL PCIe, NVLink-bridged in pairs (NV12), pairs on one PCIe switch",
		build:   func() *server.Server { return dgxh100.NewWithGPUs(gpus.Multiple(8, h100NVL)...) },
		bridges: map[int]int{0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4, 6: 7, 7: 6}, bridgeLinks: 12,
		busIDs: []string{"0000:17:00.0", "0000:18:00.0", "0000:3d:00.0", "0000:3e:00.0", "0000:99:00.0", "0000:9a:00.0", "0000:bd:00.0", "0000:be:00.0"},
		numa:   halves(8), pcie: pairsPerSwitch(halves(8), nvml.TOPOLOGY_SINGLE),
	},
	"gb200-nvl72-tray": {
		Name: "gb200-nvl72-tray", Description: "GB200 NVL72 compute tray: 4x B200, 18 NVLinks each into the rack's NVLink switch trays, multi-node NVLink clique 1",
		build: func() *server.Server { return dgxh100.NewWithGPUs(gpus.Multiple(4, gpus.B200_SXM5_180GB)...) }, switchLinks: 18, clique: 1,
		busIDs: []string{"0008:01:00.0", "0009:01:00.0", "0018:01:00.0", "0019:01:00.0"},
		numa:   halves(4), pcie: pairsPerSwitch(halves(4), nvml.TOPOLOGY_SYSTEM),
	},
	"l40s-pcie": {
		Name: "l40s-pcie", Description: "8x L40S 48GB, PCIe only (L40S has no NVLink), two GPUs per PCIe switch",
		build:  func() *server.Server { return dgxh100.NewWithGPUs(gpus.Multiple(8, l40s)...) },
		busIDs: []string{"0000:16:00.0", "0000:17:00.0", "0000:38:00.0", "0000:39:00.0", "0000:98:00.0", "0000:99:00.0", "0000:b8:00.0", "0000:b9:00.0"},
		numa:   halves(8), pcie: pairsPerSwitch(halves(8), nvml.TOPOLOGY_SINGLE),
	},
	"l4-pcie": {
		Name: "l4-pcie", Description: "4x L4 24GB, PCIe only, each GPU on its own root port",
		build:  func() *server.Server { return dgxh100.NewWithGPUs(gpus.Multiple(4, l4)...) },
		busIDs: []string{"0000:31:00.0", "0000:4b:00.0", "0000:b1:00.0", "0000:ca:00.0"},
		numa:   halves(4),
		pcie: func(a, b int) nvml.GpuTopologyLevel {
			if halves(4)(a) == halves(4)(b) {
				return nvml.TOPOLOGY_NODE
			}
			return nvml.TOPOLOGY_SYSTEM
		},
	},
}

// ShapeNames returns the fake shapes' names, sorted.
func ShapeNames() []string {
	names := make([]string, 0, len(Shapes))
	for n := range Shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Server is a fake NVML library for one node, with knobs for fault injection.
type Server struct {
	*server.Server
	shape Shape
	// eccErrors is each GPU's volatile uncorrectable ECC count.
	eccErrors []uint64
	// xids carries injected XID events to the event set's Wait.
	xids chan nvml.EventData
	// xidsBroken makes event sets fail to create and to wait.
	xidsBroken atomic.Bool
	// lost GPUs answer every query with GPU_IS_LOST; hidden ones are not
	// enumerated at all (the count drops and later indexes shift down).
	lost, hidden []atomic.Bool
}

// New builds the fake server called shape for a node. The node name seeds
// the GPU UUIDs, so each fake node has its own stable ones.
func New(shape, nodeName string) (*Server, error) {
	s, ok := Shapes[shape]
	if !ok {
		return nil, fmt.Errorf("unknown fake NVML shape %q; known: %s", shape, strings.Join(ShapeNames(), ", "))
	}
	f := &Server{Server: s.build(), shape: s, xids: make(chan nvml.EventData, 64)}
	f.eccErrors = make([]uint64, len(f.Devices))
	f.lost, f.hidden = make([]atomic.Bool, len(f.Devices)), make([]atomic.Bool, len(f.Devices))
	f.DeviceGetCountFunc = func() (int, nvml.Return) { return len(f.visible()), nvml.SUCCESS }
	f.DeviceGetHandleByIndexFunc = func(index int) (nvml.Device, nvml.Return) {
		v := f.visible()
		if index < 0 || index >= len(v) {
			return nil, nvml.ERROR_INVALID_ARGUMENT
		}
		return v[index], nvml.SUCCESS
	}
	f.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		if f.xidsBroken.Load() {
			return nil, nvml.ERROR_UNKNOWN
		}
		return &mock.EventSet{
			WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
				if f.xidsBroken.Load() {
					return nvml.EventData{}, nvml.ERROR_UNKNOWN
				}
				select {
				case ev := <-f.xids:
					return ev, nvml.SUCCESS
				case <-time.After(time.Duration(ms) * time.Millisecond):
					return nvml.EventData{}, nvml.ERROR_TIMEOUT
				}
			},
			FreeFunc: func() nvml.Return { return nvml.SUCCESS },
		}, nvml.SUCCESS
	}
	for _, i := range s.failed {
		f.eccErrors[i] = 3
	}
	// Switch fabric PCI address, reported as the remote end of NVSwitch links.
	switchBusID := "0000:05:00.0"
	for i, d := range f.Devices {
		dev := d.(*server.Device)
		dev.UUID = stableUUID(nodeName, i)
		dev.PciBusID = s.busIDs[i]
		f.wire(i, dev, switchBusID)
	}
	return f, nil
}

// InjectECCErrors adds uncorrectable ECC errors to GPU i, as a failing HBM stack would.
func (f *Server) InjectECCErrors(i int, n uint64) { f.eccErrors[i] += n }

// InjectXID reports critical XID xid on GPU i, as the driver would.
func (f *Server) InjectXID(i int, xid uint64) {
	f.xids <- nvml.EventData{Device: f.Devices[i], EventType: nvml.EventTypeXidCriticalError, EventData: xid}
}

// LoseGPU makes GPU i answer every identity query with GPU_IS_LOST, as a GPU
// that has fallen off the bus does, or answer again with false.
func (f *Server) LoseGPU(i int, lost bool) { f.lost[i].Store(lost) }

// HideGPU leaves GPU i out of the devices NVML enumerates from the next
// initialization on (a node booted without it): the count drops and the
// GPUs after it take lower indexes.
func (f *Server) HideGPU(i int, hidden bool) { f.hidden[i].Store(hidden) }

func (f *Server) visible() []nvml.Device {
	var out []nvml.Device
	for i, d := range f.Devices {
		if !f.hidden[i].Load() {
			out = append(out, d)
		}
	}
	return out
}

// BreakXIDEvents makes XID event reporting fail (waits on an event set and
// the creation of new ones) until it is called with false.
func (f *Server) BreakXIDEvents(broken bool) { f.xidsBroken.Store(broken) }

// ClearECCErrors resets GPU i's volatile count, as a GPU reset does.
func (f *Server) ClearECCErrors(i int) { f.eccErrors[i] = 0 }

func (f *Server) wire(i int, dev *server.Device, switchBusID string) {
	s := f.shape
	dev.RegisterEventsFunc = func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS }
	dev.GetUUIDFunc = func() (string, nvml.Return) {
		if f.lost[i].Load() {
			return "", nvml.ERROR_GPU_IS_LOST
		}
		return dev.UUID, nvml.SUCCESS
	}
	dev.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
		return pciInfo(dev.PciBusID, dev.Config.PciDeviceId), nvml.SUCCESS
	}
	dev.GetNumaNodeIdFunc = func() (int, nvml.Return) { return s.numa(i), nvml.SUCCESS }
	dev.GetMemoryAffinityFunc = func(int, nvml.AffinityScope) ([]uint, nvml.Return) {
		return []uint{1 << s.numa(i)}, nvml.SUCCESS
	}
	dev.GetMemoryInfo_v2Func = func() (nvml.Memory_v2, nvml.Return) {
		return nvml.Memory_v2{Total: dev.MemoryInfo.Total, Free: dev.MemoryInfo.Total}, nvml.SUCCESS
	}
	dev.GetTopologyCommonAncestorFunc = func(other nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
		o, ok := other.(*server.Device)
		if !ok {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		if o.Index == i {
			return nvml.TOPOLOGY_INTERNAL, nvml.SUCCESS
		}
		return s.pcie(i, o.Index), nvml.SUCCESS
	}

	links := s.switchLinks
	peer, bridged := s.bridges[i]
	if bridged {
		links = s.bridgeLinks
	}
	dev.GetNvLinkStateFunc = func(link int) (nvml.EnableState, nvml.Return) {
		if links == 0 {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		if link >= links {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.FEATURE_ENABLED, nvml.SUCCESS
	}
	dev.GetNvLinkRemoteDeviceTypeFunc = func(link int) (nvml.IntNvLinkDeviceType, nvml.Return) {
		if link >= links {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		if bridged {
			return nvml.NVLINK_DEVICE_TYPE_GPU, nvml.SUCCESS
		}
		return nvml.NVLINK_DEVICE_TYPE_SWITCH, nvml.SUCCESS
	}
	dev.GetNvLinkRemotePciInfoFunc = func(link int) (nvml.PciInfo, nvml.Return) {
		if link >= links {
			return nvml.PciInfo{}, nvml.ERROR_INVALID_ARGUMENT
		}
		if bridged {
			return pciInfo(s.busIDs[peer], dev.Config.PciDeviceId), nvml.SUCCESS
		}
		return pciInfo(switchBusID, 0x22A310DE), nvml.SUCCESS
	}

	dev.GetGpuFabricInfoFunc = func() (nvml.GpuFabricInfo, nvml.Return) {
		if s.clique == 0 {
			return nvml.GpuFabricInfo{}, nvml.ERROR_NOT_SUPPORTED
		}
		// One NVL72 rack: every tray of this shape shares the cluster.
		info := nvml.GpuFabricInfo{CliqueId: s.clique, State: nvml.GPU_FABRIC_STATE_COMPLETED, Status: uint32(nvml.SUCCESS)}
		copy(info.ClusterUuid[:], []byte("tessera-nvl72-01"))
		return info, nvml.SUCCESS
	}
	dev.GetTotalEccErrorsFunc = func(typ nvml.MemoryErrorType, counter nvml.EccCounterType) (uint64, nvml.Return) {
		if typ == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && counter == nvml.VOLATILE_ECC {
			return f.eccErrors[i], nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	// Telemetry: a GPU at rest, varied a little by index so the series differ.
	dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		return nvml.Utilization{Gpu: 0, Memory: 0}, nvml.SUCCESS
	}
	dev.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) {
		return uint32(30 + i), nvml.SUCCESS
	}
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		return uint32(70000 + 1000*i), nvml.SUCCESS
	}
}

func pciInfo(busID string, deviceID uint32) nvml.PciInfo {
	p := nvml.PciInfo{PciDeviceId: deviceID}
	// NVML reports an eight-digit domain.
	long := "0000" + busID
	for i := 0; i < len(long) && i < len(p.BusId)-1; i++ {
		p.BusId[i] = int8(long[i])
	}
	return p
}

// stableUUID derives a GPU UUID from the node name and index.
func stableUUID(node string, i int) string {
	b := sha256.Sum256(fmt.Appendf(nil, "%s/%d", node, i))
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
