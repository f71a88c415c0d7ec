package nodeagent

import (
	"cmp"
	"math"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/topology"
)

// BuildStatus turns a discovery into the GPUNodeTopology status the
// scheduler reads. Heartbeat time and telemetry are filled in by the caller.
func BuildStatus(d *topology.Discovery, driver string) tesserav1alpha1.GPUNodeTopologyStatus {
	t := d.Topology
	st := tesserav1alpha1.GPUNodeTopologyStatus{
		GPUCount:      int32(len(t.GPUs)),
		Model:         t.Model(),
		Clique:        t.Clique(),
		DriverVersion: driver,
		Warnings:      d.Warnings,
	}
	for pos, g := range t.GPUs {
		st.Devices = append(st.Devices, tesserav1alpha1.GPUDevice{
			Index: int32(g.Index), UUID: g.UUID, Model: g.Model, MemoryMiB: g.MemoryMiB,
			PCIBusID: g.PCIBusID, NUMANode: int32(g.NUMANode), MIGEnabled: g.MIGEnabled,
			Healthy: g.Healthy, Fault: g.UnhealthyReason,
			MinorNumber: minor(g.Minor),
		})
		if g.Healthy {
			st.HealthyGPUs++
			st.Allocatable = append(st.Allocatable, int32(g.Index))
		}
		for peer := pos + 1; peer < len(t.GPUs); peer++ {
			l := t.Link(pos, peer)
			st.Links = append(st.Links, tesserav1alpha1.GPULink{
				A: int32(g.Index), B: int32(t.GPUs[peer].Index),
				Type:          tesserav1alpha1.GPULinkType(l.Type.String()),
				NVLinks:       int32(l.NVLinks),
				BandwidthGBps: int32(math.Round(t.Bandwidth(pos, peer))),
			})
		}
	}
	for _, island := range t.Islands() {
		is := tesserav1alpha1.GPUIsland{Kind: "None"}
		if len(island) > 1 {
			is.Kind = tesserav1alpha1.GPUIslandKind(t.Link(island[0], island[1]).Type.String())
		}
		for _, pos := range island {
			is.GPUs = append(is.GPUs, int32(t.GPUs[pos].Index))
		}
		st.Islands = append(st.Islands, is)
	}
	return st
}

func minor(m int) *int32 {
	if m < 0 {
		return nil
	}
	v := int32(m)
	return &v
}

// holders lists each pod holding each GPU once, sorted by GPU then pod.
func holders(containers []containerSample) []tesserav1alpha1.GPUHolder {
	var out []tesserav1alpha1.GPUHolder
	for _, c := range containers {
		h := tesserav1alpha1.GPUHolder{Index: int32(c.gpu.Index), Namespace: c.namespace, Pod: c.pod, UID: c.uid}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b tesserav1alpha1.GPUHolder) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Pod, b.Pod))
	})
	return out
}

// summarize averages and sums per-GPU telemetry for the status.
func summarize(samples []topology.Telemetry) *tesserav1alpha1.GPUTelemetrySummary {
	if len(samples) == 0 {
		return nil
	}
	s := &tesserav1alpha1.GPUTelemetrySummary{}
	var util, power float64
	for _, t := range samples {
		util += float64(t.UtilizationPercent)
		power += t.PowerWatts
		s.MemoryUsedMiB += t.MemoryUsedMiB
		s.MaxTemperatureC = max(s.MaxTemperatureC, int32(t.TemperatureC))
	}
	s.AverageUtilizationPercent = int32(math.Round(util / float64(len(samples))))
	s.PowerWatts = int32(math.Round(power))
	return s
}

// sameTopology compares two statuses on what the scheduler uses: heartbeat
// time and telemetry change on their own and never warrant a write.
func sameTopology(a, b tesserav1alpha1.GPUNodeTopologyStatus) bool {
	a.HeartbeatTime, b.HeartbeatTime = nil, nil
	a.Telemetry, b.Telemetry = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}
