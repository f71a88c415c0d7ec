package topology

import (
	"fmt"
	"strconv"
	"strings"
)

// Discovery is a node's topology as read from a Source, with what could not
// be read. A device or link that errors is left out, never guessed: the
// topology may be smaller than the node, but every link in it exists.
type Discovery struct {
	Topology *Topology
	Warnings []string
}

// Discover reads every GPU, its health, and the link between every pair.
// It fails only if the device count cannot be read.
func Discover(src Source) (*Discovery, error) {
	n, err := src.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("counting GPUs: %w", err)
	}
	d := &Discovery{}
	warn := func(format string, args ...any) { d.Warnings = append(d.Warnings, fmt.Sprintf(format, args...)) }

	var gpus []GPU
	for i := range n {
		id, err := src.Identity(i)
		if err != nil {
			warn("GPU %d left out: %v", i, err)
			continue
		}
		g := GPU{Index: i, Identity: id, Healthy: true}
		h, err := src.Health(i)
		g.UncorrectableECC = h.UncorrectableECC
		switch {
		case err != nil:
			// Unknown health is not good health: keep the GPU out of placement.
			g.Healthy, g.UnhealthyReason = false, fmt.Sprintf("health unreadable: %v", err)
		case h.ECCSupported && h.UncorrectableECC > 0:
			g.Healthy, g.UnhealthyReason = false, fmt.Sprintf("%d uncorrectable ECC errors", h.UncorrectableECC)
		}
		gpus = append(gpus, g)
	}
	t := New(gpus)
	d.Topology = t

	byBusID := map[string]int{}
	for pos, g := range gpus {
		byBusID[g.PCIBusID] = pos
	}
	for a := range gpus {
		for b := a + 1; b < len(gpus); b++ {
			lt, err := src.CommonAncestor(gpus[a].Index, gpus[b].Index)
			if err != nil {
				warn("GPU %d-%d PCIe path unknown, assuming SYS: %v", gpus[a].Index, gpus[b].Index, err)
				continue
			}
			t.SetLink(a, b, Link{Type: lt})
		}
	}

	// NVLink: count direct links per peer, and links into the NVSwitch fabric.
	direct := make([]map[int]int, len(gpus))
	switchLinks := make([]int, len(gpus))
	for pos, g := range gpus {
		direct[pos] = map[int]int{}
		ports, err := src.NVLinks(g.Index)
		if err != nil {
			warn("GPU %d NVLinks partly read (%d up): %v", g.Index, len(ports), err)
		}
		t.GPUs[pos].ActiveNVLinks = len(ports)
		for _, p := range ports {
			switch p.Remote {
			case RemoteSwitch:
				switchLinks[pos]++
			case RemoteGPU:
				peer, ok := byBusID[p.RemotePCIBusID]
				if !ok || peer == pos {
					warn("GPU %d NVLink %d reports unknown peer %q, ignored", g.Index, p.Link, p.RemotePCIBusID)
					continue
				}
				direct[pos][peer]++
			default:
				warn("GPU %d NVLink %d leads to an unsupported device type, ignored", g.Index, p.Link)
			}
		}
	}
	for a := range gpus {
		for b := a + 1; b < len(gpus); b++ {
			// Both ends must agree that a link exists: count what both see.
			nDirect := min(direct[a][b], direct[b][a])
			nSwitch := min(switchLinks[a], switchLinks[b])
			switch {
			case nSwitch > 0 && nSwitch >= nDirect:
				t.SetLink(a, b, Link{Type: LinkNVSwitch, NVLinks: nSwitch})
			case nDirect > 0:
				t.SetLink(a, b, Link{Type: LinkNVLink, NVLinks: nDirect})
			}
		}
	}
	return d, nil
}

// NormalizeBusID writes a PCI address as domain:bus:device.function with a
// four-digit domain in lower case; NVML uses eight domain digits, sysfs four.
func NormalizeBusID(id string) string {
	id = strings.ToLower(strings.TrimSpace(id))
	domain, rest, ok := strings.Cut(id, ":")
	if !ok || strings.Count(rest, ":") != 1 {
		return id
	}
	d, err := strconv.ParseUint(domain, 16, 32)
	if err != nil {
		return id
	}
	return fmt.Sprintf("%04x:%s", d, rest)
}
