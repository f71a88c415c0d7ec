// Package openb reads the Alibaba GPU cluster trace v2023 ("openb", the
// trace of Weng et al., ATC'23) node and pod lists, turns them into
// fragmentation shapes, and inflates a pod list the way the paper's
// experiments do.
package openb

import (
	"encoding/csv"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"tessera.dev/tessera/pkg/fragmentation"
)

// Node is one row of an openb node list.
type Node struct {
	Name      string
	CPUMilli  int64
	MemoryMiB int64
	GPUs      int
	// Model is the GPU model; "" for a CPU-only node.
	Model string
}

// Pod is one row of an openb pod list.
type Pod struct {
	Name      string
	CPUMilli  int64
	MemoryMiB int64
	GPUs      int
	// GPUMilli is the share of each GPU, 1 to 1000; below 1000 only for a
	// pod of one GPU (GPU sharing). 0 for a CPU-only pod.
	GPUMilli int64
	// Models are the GPU models the pod may use; empty means any.
	Models []string
}

// GPURequestMilli is the pod's whole GPU request in milli-GPUs.
func (p Pod) GPURequestMilli() int64 { return int64(p.GPUs) * p.GPUMilli }

// Task is the pod's shape for the fragmentation measure.
func (p Pod) Task() fragmentation.Task {
	return fragmentation.Task{CPUMilli: p.CPUMilli, GPUs: p.GPUs, GPUMilli: p.GPUMilli, Models: p.Models}
}

// Empty is the node with nothing placed on it.
func (n Node) Empty() fragmentation.Node {
	free := make([]int64, n.GPUs)
	for i := range free {
		free[i] = fragmentation.MilliGPU
	}
	return fragmentation.Node{FreeCPUMilli: n.CPUMilli, FreeGPUMilli: free, Model: n.Model}
}

// ReadNodes reads a node list (sn,cpu_milli,memory_mib,gpu,model).
func ReadNodes(r io.Reader) ([]Node, error) {
	var nodes []Node
	err := readRows(r, []string{"sn", "cpu_milli", "memory_mib", "gpu", "model"}, func(row rowReader) error {
		n := Node{Name: row.str("sn"), Model: row.str("model")}
		n.CPUMilli = row.int("cpu_milli")
		n.MemoryMiB = row.int("memory_mib")
		n.GPUs = int(row.int("gpu"))
		if n.GPUs > 0 && n.Model == "" {
			row.fail("model", "a node with GPUs needs a GPU model")
		}
		nodes = append(nodes, n)
		return row.err
	})
	return nodes, err
}

// ReadPods reads a pod list (name,cpu_milli,memory_mib,num_gpu,gpu_milli
// and, where present, gpu_spec; other columns are ignored).
func ReadPods(r io.Reader) ([]Pod, error) {
	var pods []Pod
	err := readRows(r, []string{"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}, func(row rowReader) error {
		p := Pod{Name: row.str("name")}
		p.CPUMilli = row.int("cpu_milli")
		p.MemoryMiB = row.int("memory_mib")
		p.GPUs = int(row.int("num_gpu"))
		p.GPUMilli = row.int("gpu_milli")
		if spec := row.optional("gpu_spec"); spec != "" {
			p.Models = strings.Split(spec, "|")
		}
		switch {
		case p.GPUs == 0 && p.GPUMilli != 0:
			row.fail("gpu_milli", "a pod without GPUs asks for no GPU share")
		case p.GPUs > 0 && (p.GPUMilli < 1 || p.GPUMilli > fragmentation.MilliGPU):
			row.fail("gpu_milli", "must be 1 to 1000 for a GPU pod")
		case p.GPUs > 1 && p.GPUMilli != fragmentation.MilliGPU:
			row.fail("gpu_milli", "a pod of several GPUs takes them whole (1000)")
		}
		pods = append(pods, p)
		return row.err
	})
	return pods, err
}

// Inflate returns the arrivals of one experiment run: the pods, plus pods
// drawn from them with replacement until their GPU request reaches factor ×
// capacityMilli, shuffled, with the seed making it repeatable. Drawn copies
// get the suffix -dup<N> so that names stay unique.
func Inflate(pods []Pod, capacityMilli int64, factor float64, seed uint64) []Pod {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := slices.Clone(pods)
	var requested int64
	for _, p := range pods {
		requested += p.GPURequestMilli()
	}
	target := int64(factor * float64(capacityMilli))
	for n := 0; requested < target && len(pods) > 0; n++ {
		p := pods[rng.IntN(len(pods))]
		p.Name = fmt.Sprintf("%s-dup%d", p.Name, n)
		out = append(out, p)
		requested += p.GPURequestMilli()
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// rowReader reads one CSV row's columns by name, keeping the first error.
type rowReader struct {
	line    int
	columns map[string]int
	record  []string
	err     error
}

func (r *rowReader) fail(column, msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("line %d, column %s: %s", r.line, column, msg)
	}
}

func (r *rowReader) str(column string) string { return r.record[r.columns[column]] }

func (r *rowReader) optional(column string) string {
	if i, ok := r.columns[column]; ok {
		return r.record[i]
	}
	return ""
}

func (r *rowReader) int(column string) int64 {
	v, err := strconv.ParseInt(r.str(column), 10, 64)
	if err != nil || v < 0 {
		r.fail(column, fmt.Sprintf("%q is not a non-negative integer", r.str(column)))
	}
	return v
}

func readRows(r io.Reader, required []string, row func(rowReader) error) error {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	columns := map[string]int{}
	for i, name := range header {
		columns[strings.TrimSpace(name)] = i
	}
	for _, name := range required {
		if _, ok := columns[name]; !ok {
			return fmt.Errorf("no %s column in the header %v", name, header)
		}
	}
	for line := 2; ; line++ {
		record, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := row(rowReader{line: line, columns: columns, record: record}); err != nil {
			return err
		}
	}
}
