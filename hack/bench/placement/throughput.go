package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/benchkit"
)

// speed is one profile's scheduling throughput on the large cluster.
type speed struct {
	profile string
	pods    int
	// podsPerSecond is pods bound / (last bound - first created), per repeat.
	podsPerSecond []float64
	// pending is the most pods left unbound in a run.
	pending int
}

// throughput creates pods of single-node job sizes from the mix (1 to 8
// GPUs) as fast as the client allows, and measures pods/s from the first
// created to the last bound. The pods ask for at most 60 % of the
// cluster's GPUs.
func (b *bench) throughput(ctx context.Context, profile string, mix *jobMix) (speed, error) {
	s := speed{profile: profile, pods: b.o.throughputPods}
	rng := newRand(b.o.seed + 1)
	sizes := make([]int, b.o.throughputPods)
	for i := range sizes {
		for sizes[i] = mix.draw(rng); sizes[i] > 8; sizes[i] = mix.draw(rng) {
		}
	}
	tessera := profile != defaultProfile
	asked, capacity := 0, 0
	for _, n := range sizes {
		asked += n
	}
	for _, n := range b.nodes {
		capacity += len(n.used)
	}
	if float64(asked) > 0.6*float64(capacity) {
		return s, fmt.Errorf("%d pods ask for %d GPUs, over 60 %% of the cluster's %d: raise --throughput-nodes or lower --throughput-pods", len(sizes), asked, capacity)
	}
	// Run 0 warms the scheduler up (its caches fill, its first cycles run)
	// and is not counted.
	for r := range b.o.repeats + 1 {
		ns, err := b.Namespace(ctx)
		if err != nil {
			return s, err
		}
		w, err := b.watchPods(ctx, ns)
		if err != nil {
			return s, err
		}
		names := make([]string, len(sizes))
		for i := range names {
			names[i] = fmt.Sprintf("p-%05d", i)
		}
		first := time.Now()
		if err := benchkit.Parallel(len(sizes), 16, func(i int) error {
			return b.createPod(ctx, ns, names[i], "", profile, sizes[i])
		}); err != nil {
			return s, err
		}
		// Wait until every pod is bound, or until none has been bound for
		// the stall window: a profile that spreads GPU pods can leave no
		// node with 8 free GPUs, and those pods then wait for good.
		var lastBound time.Time
		lastCount := -1
		err = w.waitFor(ctx, b.o.timeout, b.Healthy, func(pods map[string]*corev1.Pod) bool {
			n := 0
			for _, name := range names {
				if p := pods[name]; p != nil && p.Spec.NodeName != "" {
					n++
				}
			}
			if n != lastCount {
				lastCount, lastBound = n, time.Now()
			}
			return n == len(names) || time.Since(lastBound) > b.o.stall
		})
		if err != nil {
			return s, fmt.Errorf("%d of %d pods bound: %w", lastCount, len(names), err)
		}
		s.pending = max(s.pending, len(names)-lastCount)
		if tessera {
			if err := checkAssignments(w); err != nil {
				return s, err
			}
		}
		rate := float64(lastCount) / lastBound.Sub(first).Seconds()
		if r == 0 {
			benchkit.Progress("%s: warm-up, %d of %d pods bound on %d nodes, %.0f pods/s", profile, lastCount, len(names), len(b.nodes), rate)
		} else {
			s.podsPerSecond = append(s.podsPerSecond, rate)
			benchkit.Progress("%s: %d of %d pods bound on %d nodes, %.0f pods/s (run %d/%d)", profile, lastCount, len(names), len(b.nodes), rate, r, b.o.repeats)
		}
		if err := b.DeleteAll(ctx, ns); err != nil {
			return s, err
		}
	}
	return s, nil
}

// checkAssignments verifies that every watched pod has its GPUs recorded
// and that no GPU of a node is held by two pods.
func checkAssignments(w *podWatch) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	held := map[string]string{}
	for _, p := range w.pods {
		ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
		if err != nil || len(ids) == 0 {
			return fmt.Errorf("pod %s on %s has no valid %s (%v)", p.Name, p.Spec.NodeName, tesserav1alpha1.AnnotationGPUIDs, err)
		}
		for _, id := range ids {
			key := fmt.Sprintf("%s/%d", p.Spec.NodeName, id)
			if other, taken := held[key]; taken {
				return fmt.Errorf("GPU %s assigned to both %s and %s", key, other, p.Name)
			}
			held[key] = p.Name
		}
	}
	return nil
}
