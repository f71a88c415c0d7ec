package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/simkit"
	"tessera.dev/tessera/internal/openb"
	frag "tessera.dev/tessera/pkg/fragmentation"
)

// trace is one pod list.
type trace struct {
	name string
	pods []openb.Pod
	// mix is the pod list's own distribution of shapes: FGD's target
	// workload, known in advance as in the paper.
	mix []frag.Shape
}

func readTrace(path string, nodes []openb.Node) (*trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pods, err := openb.ReadPods(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "openb_pod_list_"), ".csv")
	counts := map[string]*frag.Shape{}
	var order []string
	for _, p := range pods {
		key := fmt.Sprint(p.Task())
		s, ok := counts[key]
		if !ok {
			s = &frag.Shape{Task: p.Task()}
			counts[key] = s
			order = append(order, key)
		}
		s.Weight++
	}
	t := &trace{name: name, pods: pods}
	for _, key := range order {
		t.mix = append(t.mix, *counts[key])
	}
	frag.SortHeaviestFirst(t.mix)
	return t, nil
}

// result is one run: one pod list, one policy, one seed.
type result struct {
	trace, policy string
	seed          uint64
	pods, placed  int
	// alloc100 and allocEnd are the allocated share of cluster GPU
	// capacity, in percent, once the arrived GPU request reached 100 % of
	// capacity and at the end.
	alloc100, allocEnd float64
	// partialEnd and idleEnd are the unallocated share of capacity at the
	// end, in percent: in GPUs shares use in part, and in idle GPUs.
	partialEnd, idleEnd float64
	seconds             float64
}

// line writes the result on one line, as a child process reports it.
func (r result) line() string {
	return fmt.Sprintf("RESULT %s %s %d %d %d %.4f %.4f %.4f %.4f %.3f", r.trace, r.policy, r.seed, r.pods, r.placed, r.alloc100, r.allocEnd, r.partialEnd, r.idleEnd, r.seconds)
}

// parseLine reads a line written by line.
func parseLine(s string) (result, error) {
	var r result
	var tag string
	_, err := fmt.Sscan(s, &tag, &r.trace, &r.policy, &r.seed, &r.pods, &r.placed, &r.alloc100, &r.allocEnd, &r.partialEnd, &r.idleEnd, &r.seconds)
	if err != nil || tag != "RESULT" {
		return result{}, fmt.Errorf("unreadable result %q: %v", s, err)
	}
	return r, nil
}

// replay runs one pod list through one policy's profile.
func replay(ctx context.Context, t *trace, nodes []openb.Node, policy string, seed uint64, o options) (result, error) {
	start := time.Now()
	capacity := gpuCapacity(nodes)
	pods := openb.Inflate(t.pods, capacity, o.ratio, seed)
	now := time.Now()
	var kubeNodes []*v1.Node
	var topologies []*tesserav1alpha1.GPUNodeTopology
	for _, n := range nodes {
		kubeNodes = append(kubeNodes, kubeNode(n))
		if n.GPUs > 0 {
			topologies = append(topologies, nodeTopology(n, now))
		}
	}
	reg, err := registry(topologies, t.mix, seed)
	if err != nil {
		return result{}, err
	}
	profile, err := profileFor(policy, o.config)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sim, err := simkit.New(ctx, reg, profile, kubeNodes, simkit.Options{Seed: seed, EveryNode: true})
	if err != nil {
		return result{}, err
	}
	r := result{trace: t.name, policy: policy, seed: seed, pods: len(pods), alloc100: -1}
	var arrived, allocated int64
	left := newLeftover(nodes)
	for i, p := range pods {
		if err := ctx.Err(); err != nil {
			return result{}, err
		}
		arrived += p.GPURequestMilli()
		pod := kubePod(p, fmt.Sprintf("%d-%d", seed, i))
		node, err := sim.Schedule(ctx, pod)
		if err != nil {
			return result{}, err
		}
		if node != "" {
			r.placed++
			allocated += p.GPURequestMilli()
			if err := left.place(p, node, sim.Bindings[pod.UID].Annotations[tesserav1alpha1.AnnotationGPUIDs]); err != nil {
				return result{}, err
			}
		}
		if r.alloc100 < 0 && arrived >= capacity {
			r.alloc100 = percent(allocated, capacity)
		}
	}
	r.allocEnd = percent(allocated, capacity)
	partial, idle := left.split()
	r.partialEnd, r.idleEnd = percent(partial, capacity), percent(idle, capacity)
	r.seconds = time.Since(start).Seconds()
	return r, nil
}

func percent(a, b int64) float64 { return 100 * float64(a) / float64(b) }
