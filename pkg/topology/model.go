// Package topology models the GPUs of one node and the links between them,
// estimates each link's bandwidth, groups GPUs into NVLink islands, and
// searches for the best set of free GPUs for a request. It also owns the
// narrow NVML seam (Source) that discovery reads through.
package topology

import (
	"fmt"
	"slices"
)

// LinkType is the fastest path between two GPUs, in nvidia-smi topo -m
// vocabulary. Lower values are faster paths.
type LinkType int

// Link types, fastest first.
const (
	// LinkSelf is a GPU's link to itself ("X").
	LinkSelf LinkType = iota
	// LinkNVLink is one or more direct NVLinks between the two GPUs.
	LinkNVLink
	// LinkNVSwitch is NVLink through the node's NVSwitch fabric.
	LinkNVSwitch
	// LinkPIX crosses at most a single PCIe bridge.
	LinkPIX
	// LinkPXB crosses multiple PCIe bridges, without the host bridge.
	LinkPXB
	// LinkPHB crosses a PCIe host bridge (the CPU's root complex).
	LinkPHB
	// LinkNode crosses PCIe host bridges within one NUMA node.
	LinkNode
	// LinkSys crosses the SMP interconnect between NUMA nodes.
	LinkSys
)

var linkTypeNames = map[LinkType]string{
	LinkSelf: "X", LinkNVLink: "NVLink", LinkNVSwitch: "NVSwitch", LinkPIX: "PIX",
	LinkPXB: "PXB", LinkPHB: "PHB", LinkNode: "NODE", LinkSys: "SYS",
}

func (t LinkType) String() string {
	if s, ok := linkTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("LinkType(%d)", int(t))
}

// IsNVLink reports whether the path is NVLink, direct or switched.
func (t LinkType) IsNVLink() bool { return t == LinkNVLink || t == LinkNVSwitch }

// ParseLinkType parses a LinkType's String form.
func ParseLinkType(s string) (LinkType, error) {
	for t, name := range linkTypeNames {
		if name == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown link type %q", s)
}

// Link is the connection between two GPUs.
type Link struct {
	Type LinkType
	// NVLinks is the number of NVLink lanes on an NVLink or NVSwitch path.
	NVLinks int
}

// String prints the link as nvidia-smi topo -m does: X, NV#, PIX, …, SYS.
func (l Link) String() string {
	if l.Type.IsNVLink() {
		return fmt.Sprintf("NV%d", l.NVLinks)
	}
	return l.Type.String()
}

// GPU is one physical GPU as NVML reports it.
type GPU struct {
	Index int
	Identity
	Healthy bool
	// UnhealthyReason says which fault made the GPU unhealthy.
	UnhealthyReason string
	// UncorrectableECC is NVML's volatile count of uncorrectable ECC errors.
	UncorrectableECC uint64
	// ActiveNVLinks counts the GPU's NVLinks that are up.
	ActiveNVLinks int
}

// Topology is the GPUs of one node and the link between every pair.
type Topology struct {
	GPUs  []GPU
	links [][]Link
	// bandwidth holds the estimated GB/s of every pair, kept with links so
	// that the search reads it without locking.
	bandwidth [][]float64
}

// New returns a topology over gpus, with every pair of GPUs linked through
// the system (SYS) until SetLink says better.
func New(gpus []GPU) *Topology {
	n := len(gpus)
	t := &Topology{GPUs: gpus, links: make([][]Link, n), bandwidth: make([][]float64, n)}
	for i := range n {
		t.links[i] = make([]Link, n)
		t.bandwidth[i] = make([]float64, n)
	}
	for i := range n {
		t.links[i][i] = Link{Type: LinkSelf}
		for j := i + 1; j < n; j++ {
			t.SetLink(i, j, Link{Type: LinkSys})
		}
	}
	return t
}

// SetLink records the link between GPUs a and b (positions in GPUs).
func (t *Topology) SetLink(a, b int, l Link) {
	t.links[a][b] = l
	t.links[b][a] = l
	bw := linkBandwidth(l, t.GPUs[a].Architecture, t.GPUs[b].Architecture)
	t.bandwidth[a][b] = bw
	t.bandwidth[b][a] = bw
}

// SetLinkBandwidth records the link between GPUs a and b with a bandwidth
// already estimated elsewhere (a published GPUNodeTopology), in GB/s.
func (t *Topology) SetLinkBandwidth(a, b int, l Link, gbps float64) {
	t.links[a][b] = l
	t.links[b][a] = l
	t.bandwidth[a][b] = gbps
	t.bandwidth[b][a] = gbps
}

// Link returns the link between GPUs a and b.
func (t *Topology) Link(a, b int) Link { return t.links[a][b] }

// Bandwidth is the estimated one-direction bandwidth between GPUs a and b in
// GB/s (see bandwidth.go for the figures).
func (t *Topology) Bandwidth(a, b int) float64 { return t.bandwidth[a][b] }

// Islands groups the GPUs into NVLink islands: sets connected by NVLink,
// directly or through NVSwitches. A GPU without NVLink is an island alone.
// Islands are sorted by their lowest GPU position.
func (t *Topology) Islands() [][]int {
	n := len(t.GPUs)
	seen := make([]bool, n)
	var islands [][]int
	for start := range n {
		if seen[start] {
			continue
		}
		island := []int{start}
		seen[start] = true
		for q := 0; q < len(island); q++ {
			for other := range n {
				if !seen[other] && t.links[island[q]][other].Type.IsNVLink() {
					seen[other] = true
					island = append(island, other)
				}
			}
		}
		slices.Sort(island)
		islands = append(islands, island)
	}
	return islands
}

// Clique is the multi-node NVLink clique all GPUs share, or "" if they have
// none or disagree.
func (t *Topology) Clique() string {
	c, _ := t.shared(func(g GPU) string { return g.Clique })
	return c
}

// Model is the model shared by all GPUs, "mixed" if they differ, or "" with none.
func (t *Topology) Model() string {
	m, ok := t.shared(func(g GPU) string { return g.Model })
	if !ok {
		return "mixed"
	}
	return m
}

// shared returns the value every GPU has for field; false if they differ.
func (t *Topology) shared(field func(GPU) string) (string, bool) {
	if len(t.GPUs) == 0 {
		return "", true
	}
	v := field(t.GPUs[0])
	for _, g := range t.GPUs[1:] {
		if field(g) != v {
			return "", false
		}
	}
	return v, true
}
