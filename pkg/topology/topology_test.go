package topology_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/google/go-cmp/cmp"

	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

func discover(t testing.TB, f *nvmlfake.Server) *topology.Discovery {
	t.Helper()
	src, err := nvmlsource.New(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	d, err := topology.Discover(src)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func discoverShape(t testing.TB, shape string) *topology.Discovery {
	t.Helper()
	f, err := nvmlfake.New(shape, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	return discover(t, f)
}

// matrix renders the link matrix as nvidia-smi topo -m rows.
func matrix(topo *topology.Topology) []string {
	var rows []string
	for a := range topo.GPUs {
		var row []string
		for b := range topo.GPUs {
			row = append(row, topo.Link(a, b).String())
		}
		rows = append(rows, strings.Join(row, " "))
	}
	return rows
}

func TestDiscoverShapes(t *testing.T) {
	tests := []struct {
		shape     string
		wantModel string
		wantRows  []string
		islands   [][]int
		unhealthy []int
		clique    string
	}{{
		shape:     "dgx-h100",
		wantModel: "NVIDIA H100 80GB HBM3",
		wantRows: []string{
			"X NV18 NV18 NV18 NV18 NV18 NV18 NV18",
			"NV18 X NV18 NV18 NV18 NV18 NV18 NV18",
			"NV18 NV18 X NV18 NV18 NV18 NV18 NV18",
			"NV18 NV18 NV18 X NV18 NV18 NV18 NV18",
			"NV18 NV18 NV18 NV18 X NV18 NV18 NV18",
			"NV18 NV18 NV18 NV18 NV18 X NV18 NV18",
			"NV18 NV18 NV18 NV18 NV18 NV18 X NV18",
			"NV18 NV18 NV18 NV18 NV18 NV18 NV18 X",
		},
		islands: [][]int{{0, 1, 2, 3, 4, 5, 6, 7}},
	}, {
		shape:     "dgx-a100",
		wantModel: "NVIDIA A100-SXM4-80GB",
		islands:   [][]int{{0, 1, 2, 3, 4, 5, 6, 7}},
	}, {
		shape:     "dgx-h100-gpu-failed",
		wantModel: "NVIDIA H100 80GB HBM3",
		islands:   [][]int{{0, 1, 2, 3, 4, 5, 6, 7}},
		unhealthy: []int{5},
	}, {
		shape:     "h100-nvl-pairs",
		wantModel: "NVIDIA H100 NVL",
		wantRows: []string{
			"X NV12 NODE NODE SYS SYS SYS SYS",
			"NV12 X NODE NODE SYS SYS SYS SYS",
			"NODE NODE X NV12 SYS SYS SYS SYS",
			"NODE NODE NV12 X SYS SYS SYS SYS",
			"SYS SYS SYS SYS X NV12 NODE NODE",
			"SYS SYS SYS SYS NV12 X NODE NODE",
			"SYS SYS SYS SYS NODE NODE X NV12",
			"SYS SYS SYS SYS NODE NODE NV12 X",
		},
		islands: [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}},
	}, {
		shape:     "l40s-pcie",
		wantModel: "NVIDIA L40S",
		wantRows: []string{
			"X PIX NODE NODE SYS SYS SYS SYS",
			"PIX X NODE NODE SYS SYS SYS SYS",
			"NODE NODE X PIX SYS SYS SYS SYS",
			"NODE NODE PIX X SYS SYS SYS SYS",
			"SYS SYS SYS SYS X PIX NODE NODE",
			"SYS SYS SYS SYS PIX X NODE NODE",
			"SYS SYS SYS SYS NODE NODE X PIX",
			"SYS SYS SYS SYS NODE NODE PIX X",
		},
		islands: [][]int{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}},
	}, {
		shape:     "gb200-nvl72-tray",
		wantModel: "NVIDIA B200 180GB HBM3e",
		wantRows:  []string{"X NV18 NV18 NV18", "NV18 X NV18 NV18", "NV18 NV18 X NV18", "NV18 NV18 NV18 X"},
		islands:   [][]int{{0, 1, 2, 3}},
		clique:    "74657373-6572-612d-6e76-6c37322d3031.1",
	}, {
		shape:     "l4-pcie",
		wantModel: "NVIDIA L4",
		wantRows:  []string{"X NODE SYS SYS", "NODE X SYS SYS", "SYS SYS X NODE", "SYS SYS NODE X"},
		islands:   [][]int{{0}, {1}, {2}, {3}},
	}}
	for _, tc := range tests {
		t.Run(tc.shape, func(t *testing.T) {
			d := discoverShape(t, tc.shape)
			if len(d.Warnings) > 0 {
				t.Errorf("warnings on a healthy fake: %q", d.Warnings)
			}
			if got := d.Topology.Model(); got != tc.wantModel {
				t.Errorf("model = %q, want %q", got, tc.wantModel)
			}
			if tc.wantRows != nil {
				if diff := cmp.Diff(tc.wantRows, matrix(d.Topology)); diff != "" {
					t.Errorf("link matrix (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tc.islands, d.Topology.Islands()); diff != "" {
				t.Errorf("islands (-want +got):\n%s", diff)
			}
			var unhealthy []int
			for _, g := range d.Topology.GPUs {
				if !g.Healthy {
					unhealthy = append(unhealthy, g.Index)
				}
				if !strings.HasPrefix(g.UUID, "GPU-") || g.PCIBusID == "" || g.NUMANode < 0 {
					t.Errorf("GPU %d identity incomplete: %+v", g.Index, g)
				}
			}
			if diff := cmp.Diff(tc.unhealthy, unhealthy); diff != "" {
				t.Errorf("unhealthy GPUs (-want +got):\n%s", diff)
			}
			if got := d.Topology.Clique(); got != tc.clique {
				t.Errorf("clique = %q, want %q", got, tc.clique)
			}
		})
	}
}

func TestFakeUUIDsAreStablePerNode(t *testing.T) {
	a, b, other := discoverShape(t, "dgx-h100"), discoverShape(t, "dgx-h100"), discoverShape(t, "l4-pcie")
	if a.Topology.GPUs[3].UUID != b.Topology.GPUs[3].UUID {
		t.Errorf("same node, different UUIDs: %s vs %s", a.Topology.GPUs[3].UUID, b.Topology.GPUs[3].UUID)
	}
	f, err := nvmlfake.New("dgx-h100", "node-2")
	if err != nil {
		t.Fatal(err)
	}
	if c := discover(t, f); c.Topology.GPUs[3].UUID == a.Topology.GPUs[3].UUID {
		t.Errorf("two nodes share GPU UUID %s", a.Topology.GPUs[3].UUID)
	}
	seen := map[string]bool{}
	for _, g := range append(a.Topology.GPUs, other.Topology.GPUs...) {
		if seen[g.UUID] && g.Model == a.Topology.GPUs[0].Model {
			t.Errorf("duplicate UUID %s", g.UUID)
		}
		seen[g.UUID] = true
	}
}

func TestBandwidthEstimates(t *testing.T) {
	tests := []struct {
		shape string
		a, b  int
		want  float64
	}{
		{"dgx-h100", 0, 7, 450},       // 18 NVLink4 × 25 GB/s
		{"dgx-a100", 0, 7, 300},       // 12 NVLink3 × 25 GB/s
		{"h100-nvl-pairs", 0, 1, 300}, // NVLink bridge, 12 links
		{"h100-nvl-pairs", 0, 2, 30},  // PCIe Gen5 50 GB/s × NODE 0.6
		{"l40s-pcie", 0, 1, 25},       // PCIe Gen4 under one switch
		{"l40s-pcie", 0, 4, 10},       // across sockets: 25 × 0.4
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d-%d", tc.shape, tc.a, tc.b), func(t *testing.T) {
			if got := discoverShape(t, tc.shape).Topology.Bandwidth(tc.a, tc.b); got != tc.want {
				t.Errorf("Bandwidth = %v GB/s, want %v", got, tc.want)
			}
		})
	}
}

// Faults in NVML answers shrink the view with a warning; they never add a link.
func TestDiscoverDegradesOnBadNVMLAnswers(t *testing.T) {
	t.Run("device errors mid-scan", func(t *testing.T) {
		f, _ := nvmlfake.New("dgx-h100", "n")
		f.Devices[2].(*server.Device).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
		d := discover(t, f)
		if len(d.Topology.GPUs) != 7 {
			t.Fatalf("%d GPUs, want 7 with the lost one left out", len(d.Topology.GPUs))
		}
		for _, g := range d.Topology.GPUs {
			if g.Index == 2 {
				t.Errorf("lost GPU 2 is in the topology")
			}
		}
		if !containsWarning(d, "GPU 2 left out") {
			t.Errorf("warnings %q do not mention GPU 2", d.Warnings)
		}
		// GPU 3 now sits at position 2; its NVSwitch links are still there.
		if l := d.Topology.Link(0, 2); l.String() != "NV18" {
			t.Errorf("link GPU0-GPU3 = %s, want NV18", l)
		}
	})
	t.Run("NVLink to an unknown peer", func(t *testing.T) {
		f, _ := nvmlfake.New("h100-nvl-pairs", "n")
		dev := f.Devices[0].(*server.Device)
		dev.GetNvLinkRemotePciInfoFunc = func(int) (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			copy8(&p, "00000000:ee:00.0")
			return p, nvml.SUCCESS
		}
		d := discover(t, f)
		if l := d.Topology.Link(0, 1); l.Type.IsNVLink() {
			t.Errorf("link GPU0-GPU1 = %s, but GPU0 no longer reports GPU1 as its peer", l)
		}
		if !containsWarning(d, "unknown peer") {
			t.Errorf("warnings %q do not mention the unknown peer", d.Warnings)
		}
	})
	t.Run("PCIe ancestor unreadable", func(t *testing.T) {
		f, _ := nvmlfake.New("l40s-pcie", "n")
		f.Devices[0].(*server.Device).GetTopologyCommonAncestorFunc = func(nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			return 0, nvml.ERROR_UNKNOWN
		}
		d := discover(t, f)
		if l := d.Topology.Link(0, 1); l.Type != topology.LinkSys {
			t.Errorf("link GPU0-GPU1 = %s, want SYS when unknown", l)
		}
		if l := d.Topology.Link(2, 3); l.Type != topology.LinkPIX {
			t.Errorf("link GPU2-GPU3 = %s, want PIX (unaffected)", l)
		}
	})
	t.Run("health unreadable", func(t *testing.T) {
		f, _ := nvmlfake.New("dgx-a100", "n")
		f.Devices[4].(*server.Device).GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
			return 0, nvml.ERROR_UNKNOWN
		}
		d := discover(t, f)
		if g := d.Topology.GPUs[4]; g.Healthy || !strings.Contains(g.UnhealthyReason, "unreadable") {
			t.Errorf("GPU 4 = healthy %v (%q), want unhealthy because health is unreadable", g.Healthy, g.UnhealthyReason)
		}
	})
	t.Run("ECC not supported", func(t *testing.T) {
		f, _ := nvmlfake.New("l4-pcie", "n")
		f.Devices[1].(*server.Device).GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
		if g := discover(t, f).Topology.GPUs[1]; !g.Healthy {
			t.Errorf("GPU 1 without ECC support marked unhealthy: %q", g.UnhealthyReason)
		}
	})
	t.Run("injected ECC fault and its clearing", func(t *testing.T) {
		f, _ := nvmlfake.New("dgx-h100", "n")
		f.InjectECCErrors(6, 2)
		if g := discover(t, f).Topology.GPUs[6]; g.Healthy {
			t.Errorf("GPU 6 healthy after 2 uncorrectable ECC errors")
		}
		f.ClearECCErrors(6)
		if g := discover(t, f).Topology.GPUs[6]; !g.Healthy {
			t.Errorf("GPU 6 unhealthy after the fault cleared: %q", g.UnhealthyReason)
		}
	})
}

func TestNUMAFromMemoryAffinity(t *testing.T) {
	f, _ := nvmlfake.New("l4-pcie", "n")
	for _, d := range f.Devices {
		d.(*server.Device).GetNumaNodeIdFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	}
	f.Devices[3].(*server.Device).GetMemoryAffinityFunc = func(int, nvml.AffinityScope) ([]uint, nvml.Return) {
		return []uint{0b11}, nvml.SUCCESS // two nodes: no single answer
	}
	var got []int
	for _, g := range discover(t, f).Topology.GPUs {
		got = append(got, g.NUMANode)
	}
	if diff := cmp.Diff([]int{0, 0, 1, -1}, got); diff != "" {
		t.Errorf("NUMA nodes (-want +got):\n%s", diff)
	}
}

func TestNoDriver(t *testing.T) {
	_, err := nvmlsource.New(&initFails{})
	if err != nvmlsource.ErrNoDriver {
		t.Fatalf("err = %v, want ErrNoDriver", err)
	}
}

type initFails struct{ nvml.Interface }

func (initFails) Init() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }

func TestNormalizeBusID(t *testing.T) {
	for in, want := range map[string]string{
		"00000000:1B:00.0":  "0000:1b:00.0",
		"0000:1b:00.0":      "0000:1b:00.0",
		" 00000001:AB:00.0": "0001:ab:00.0",
		"garbage":           "garbage",
	} {
		if got := topology.NormalizeBusID(in); got != want {
			t.Errorf("NormalizeBusID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	if err := discoverShape(t, "dgx-h100-gpu-failed").Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"GPU0  X     NV18",
		"UNHEALTHY: 3 uncorrectable ECC errors",
		"NVSwitch domain: GPUs 0,1,2,3,4,5,6,7",
		"NV#  = Connection traversing a bonded set of # NVLinks",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func containsWarning(d *topology.Discovery, s string) bool {
	for _, w := range d.Warnings {
		if strings.Contains(w, s) {
			return true
		}
	}
	return false
}

func copy8(p *nvml.PciInfo, s string) {
	for i := 0; i < len(s) && i < len(p.BusId)-1; i++ {
		p.BusId[i] = int8(s[i])
	}
}
