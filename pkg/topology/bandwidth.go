package topology

// Architecture is a GPU generation, which sets its NVLink and PCIe speeds.
type Architecture string

// Architectures Tessera knows link speeds for.
const (
	ArchVolta     Architecture = "volta"
	ArchAmpere    Architecture = "ampere"
	ArchAda       Architecture = "ada-lovelace"
	ArchHopper    Architecture = "hopper"
	ArchBlackwell Architecture = "blackwell"
	ArchUnknown   Architecture = "unknown"
)

// Per-direction bandwidth of one NVLink, in GB/s, from NVIDIA's product
// pages and the A100/H100/B200 whitepapers: V100 NVLink2 (6 links, 300 GB/s
// total both directions), A100 NVLink3 (12 links, 600 GB/s), H100 NVLink4
// (18 links, 900 GB/s) are all 25 GB/s per link per direction; B200 NVLink5
// (18 links, 1.8 TB/s) is 50.
var nvlinkGBpsPerLink = map[Architecture]float64{
	ArchVolta:     25,
	ArchAmpere:    25,
	ArchHopper:    25,
	ArchBlackwell: 50,
}

// Usable per-direction PCIe x16 bandwidth in GB/s: 32 GB/s (Gen4) and
// 64 GB/s (Gen5) raw, of which NCCL's p2p and bus-bandwidth tests reach about
// 80 %. H100/H200 SXM and Blackwell are Gen5; A100, L40S, L4 and V100 (Gen3,
// 16 GB/s raw) are slower.
var pcieGBps = map[Architecture]float64{
	ArchVolta:     12,
	ArchAmpere:    25,
	ArchAda:       25,
	ArchHopper:    50,
	ArchBlackwell: 50,
	ArchUnknown:   12,
}

// pcieFactor discounts PCIe paths by how far they travel: peer-to-peer
// under one switch runs at full speed, through the CPU root complex it is
// bounced through host memory, and across sockets it crosses the SMP link.
// These are ranking estimates, not measurements; they only need to order
// paths the way nvidia-smi's levels do.
var pcieFactor = map[LinkType]float64{
	LinkPIX:  1.0,
	LinkPXB:  0.9,
	LinkPHB:  0.7,
	LinkNode: 0.6,
	LinkSys:  0.4,
}

// linkBandwidth estimates a link's per-direction bandwidth in GB/s. Across
// two architectures the slower end bounds it.
func linkBandwidth(l Link, a, b Architecture) float64 {
	if l.Type.IsNVLink() {
		per := min(nvlinkPerLink(a), nvlinkPerLink(b))
		return per * float64(l.NVLinks)
	}
	return min(pcie(a), pcie(b)) * pcieFactor[l.Type]
}

func nvlinkPerLink(a Architecture) float64 {
	if v, ok := nvlinkGBpsPerLink[a]; ok {
		return v
	}
	return nvlinkGBpsPerLink[ArchAmpere]
}

func pcie(a Architecture) float64 {
	if v, ok := pcieGBps[a]; ok {
		return v
	}
	return pcieGBps[ArchUnknown]
}
