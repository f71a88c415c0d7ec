// Command node-agent discovers a node's GPUs through NVML and reports their
// topology and health. This first cut supports --once --print: print the
// discovered topology as nvidia-smi-like text and exit. Publishing
// GPUNodeTopology objects and serving /metrics come next (issue 4).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "node-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("node-agent", flag.ContinueOnError)
	nvmlMode := fs.String("nvml", "real", "where GPUs are read: real (the NVIDIA driver's NVML) or fake:<shape> ("+strings.Join(nvmlfake.ShapeNames(), ", ")+")")
	nodeName := fs.String("node-name", os.Getenv("NODE_NAME"), "this node's name (from the downward API); seeds fake GPU UUIDs")
	once := fs.Bool("once", false, "discover once and exit")
	print := fs.Bool("print", false, "print the discovered topology as nvidia-smi-like text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*once || !*print {
		return errors.New("only --once --print is implemented so far; publishing GPUNodeTopology is not built yet")
	}

	lib, err := library(*nvmlMode, *nodeName)
	if err != nil {
		return err
	}
	src, err := topology.NewNVMLSource(lib)
	if err != nil {
		return err
	}
	defer src.Close()

	d, err := topology.Discover(src)
	if err != nil {
		return err
	}
	if v, err := src.DriverVersion(); err == nil {
		fmt.Printf("Driver %s, %d GPUs (%s)\n\n", v, len(d.Topology.GPUs), *nvmlMode)
	}
	if err := d.Print(os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	for _, g := range d.Topology.GPUs {
		t, err := src.Telemetry(g.Index)
		if err != nil {
			fmt.Printf("GPU%d telemetry partly unreadable: %v\n", g.Index, err)
		}
		fmt.Printf("GPU%d: utilization %d%%, memory used %d MiB, %d C, %.1f W\n",
			g.Index, t.UtilizationPercent, t.MemoryUsedMiB, t.TemperatureC, t.PowerWatts)
	}
	return nil
}

func library(mode, nodeName string) (nvml.Interface, error) {
	if mode == "real" {
		return nvml.New(), nil
	}
	if shape, ok := strings.CutPrefix(mode, "fake:"); ok {
		if nodeName == "" {
			nodeName = "fake-node"
		}
		f, err := nvmlfake.New(shape, nodeName)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("--nvml=%q: want real or fake:<shape>", mode)
}
