package main

import (
	"fmt"
	"os"
	"sort"

	v1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/openb"
)

type debugState struct {
	nodes  map[string]openb.Node
	gpu    map[string][]int64
	cpu    map[string]int64
	failed []openb.Pod
}

func newDebug(nodes []openb.Node) *debugState {
	d := &debugState{nodes: map[string]openb.Node{}, gpu: map[string][]int64{}, cpu: map[string]int64{}}
	for _, n := range nodes {
		d.nodes[n.Name] = n
		d.gpu[n.Name] = make([]int64, n.GPUs)
	}
	return d
}

func (d *debugState) placed(s *simulator, pod *v1.Pod, p openb.Pod, node string) {
	d.cpu[node] += p.CPUMilli
	if p.GPUs == 0 {
		return
	}
	ids, _ := tesserav1alpha1.ParseGPUIDs(s.bindings[pod.UID].Annotations[tesserav1alpha1.AnnotationGPUIDs])
	for _, i := range ids {
		d.gpu[node][i] += p.GPUMilli
	}
}

func (d *debugState) report() {
	if os.Getenv("FRAG_DEBUG") == "" {
		return
	}
	var partial, wholeFree, cpuStarvedGPU int64
	wholeByModel := map[string]int64{}
	for name, n := range d.nodes {
		freeCPU := n.CPUMilli - d.cpu[name]
		var nodeFree int64
		for _, u := range d.gpu[name] {
			f := 1000 - u
			if f < 0 {
				fmt.Fprintln(os.Stderr, "OVERCOMMIT", name)
			}
			nodeFree += f
			if f == 1000 {
				wholeFree += f
				wholeByModel[fmt.Sprintf("%s x%d", n.Model, n.GPUs)] += f
			} else {
				partial += f
			}
		}
		if freeCPU < 2000 {
			cpuStarvedGPU += nodeFree
		}
	}
	fmt.Fprintf(os.Stderr, "free: partial %d, whole %d, on nodes with <2 CPUs free %d; whole by node type %v\n", partial, wholeFree, cpuStarvedGPU, wholeByModel)
	counts := map[string]int{}
	for _, p := range d.failed {
		counts[fmt.Sprintf("gpus=%d milli=%d models=%v", p.GPUs, p.GPUMilli, p.Models)]++
	}
	var keys []string
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	for i, k := range keys {
		if i > 12 {
			break
		}
		fmt.Fprintf(os.Stderr, "failed %5d %s\n", counts[k], k)
	}
}
