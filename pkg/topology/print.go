package topology

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes the topology the way nvidia-smi shows it: one line per GPU,
// the link matrix (nvidia-smi topo -m), the NVLink islands, then warnings.
func (d *Discovery) Print(w io.Writer) error {
	t := d.Topology
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GPU\tMODEL\tMEMORY\tPCI BUS ID\tNUMA\tMIG\tHEALTH\tUUID")
	for _, g := range t.GPUs {
		health := "ok"
		if !g.Healthy {
			health = "UNHEALTHY: " + g.UnhealthyReason
		}
		mig := "off"
		if g.MIGEnabled {
			mig = "on"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d MiB\t%s\t%s\t%s\t%s\t%s\n",
			g.Index, g.Model, g.MemoryMiB, g.PCIBusID, numa(g.NUMANode), mig, health, g.UUID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := []string{""}
	for _, g := range t.GPUs {
		header = append(header, fmt.Sprintf("GPU%d", g.Index))
	}
	fmt.Fprintln(tw, strings.Join(append(header, "NUMA Affinity"), "\t"))
	for a, g := range t.GPUs {
		row := []string{fmt.Sprintf("GPU%d", g.Index)}
		for b := range t.GPUs {
			row = append(row, t.Link(a, b).String())
		}
		fmt.Fprintln(tw, strings.Join(append(row, numa(g.NUMANode)), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprint(w, `
Legend:
  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes
  NODE = Connection traversing PCIe and the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe and a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks (directly or through NVSwitch)
`)

	fmt.Fprintln(w)
	var pcieOnly []string
	for _, island := range t.Islands() {
		idx := make([]string, len(island))
		for i, pos := range island {
			idx[i] = fmt.Sprint(t.GPUs[pos].Index)
		}
		switch {
		case len(island) == 1:
			pcieOnly = append(pcieOnly, idx[0])
		case t.Link(island[0], island[1]).Type == LinkNVSwitch:
			fmt.Fprintf(w, "NVSwitch domain: GPUs %s\n", strings.Join(idx, ","))
		default:
			fmt.Fprintf(w, "NVLink island: GPUs %s\n", strings.Join(idx, ","))
		}
	}
	if len(pcieOnly) > 0 {
		fmt.Fprintf(w, "No NVLink peer: GPUs %s\n", strings.Join(pcieOnly, ","))
	}
	if c := t.Clique(); c != "" {
		fmt.Fprintf(w, "Multi-node NVLink clique: %s\n", c)
	}
	for _, warning := range d.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", warning)
	}
	return nil
}

func numa(n int) string {
	if n < 0 {
		return "N/A"
	}
	return fmt.Sprint(n)
}
