package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	"tessera.dev/tessera/hack/bench/benchkit"
)

func togetherName(o options) string {
	return fmt.Sprintf("%d gangs of %d together, %d-GPU pods", o.togetherGangs, o.togetherSize, o.togetherGPUs)
}

// together creates --together-gangs PodGroups of --together-size, then
// all their pods (of --together-gpus GPUs: the default 100 gangs of 8 pods
// of 4 GPUs take 3,200 of 500 nodes' 4,000 GPUs, so every gang fits at
// once, wherever its pods go) as fast as the client allows, the gangs'
// members interleaved (pod i is a member of gang i mod gangs), and waits
// until all are bound or the timeout. It counts the gangs fully bound and
// those left partly bound: some members bound, not all, a failure of
// all-or-nothing.
func (b *bench) together(ctx context.Context, spec schedulerSpec) (runStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, bs, err := b.WatchedNamespace(ctx)
	if err != nil {
		return runStats{}, err
	}
	o := b.o
	gangs := make([]gangDef, o.togetherGangs)
	for i := range gangs {
		gangs[i] = gangDef{name: fmt.Sprintf("t-%03d", i), minMember: o.togetherSize}
	}
	pods := make([]podDef, o.togetherGangs*o.togetherSize)
	for i := range pods {
		g := i % o.togetherGangs
		pods[i] = podDef{name: fmt.Sprintf("t-%03d-%03d", g, i/o.togetherGangs), group: gangs[g].name, gpus: o.togetherGPUs}
	}
	s, err := b.submitAndAwait(ctx, spec, ns, bs, gangs, pods)
	if err != nil {
		return s, err
	}
	return s, b.deleteAll(ctx, spec, ns)
}

func preemptionName(o options) string {
	low := fillSizes(o.nodes, o.preemptLowSize)
	lows := fmt.Sprintf("%d low of %d", len(low), o.preemptLowSize)
	if last := low[len(low)-1]; last != o.preemptLowSize {
		lows = fmt.Sprintf("%d low of %d and 1 of %d", len(low)-1, o.preemptLowSize, last)
	}
	return fmt.Sprintf("%d high-priority gangs of %d preempting %s", o.preemptHighGangs, o.preemptHighSize, lows)
}

// fillSizes is the sizes of the gangs of size that fill nodes nodes, one
// pod of 8 GPUs a node: as many whole ones as fit, then one of the rest.
func fillSizes(nodes, size int) []int {
	var sizes []int
	for left := nodes; left > 0; left -= size {
		sizes = append(sizes, min(size, left))
	}
	return sizes
}

// preemption fills every node with low-priority gangs (PriorityClass
// bench-low, 100) of --preempt-low-size pods of 8 GPUs and waits until
// they are all bound, then creates --preempt-high-gangs high-priority
// gangs (bench-high, 1000, PreemptLowerPriority) of --preempt-high-size,
// which fit only if low-priority pods are preempted. It measures from the
// last high-priority pod created to all of them bound, counts the
// high-priority gangs fully bound and partly bound, and, 2 s after (any
// eviction still on its way), the low-priority pods evicted and the
// low-priority gangs left partly running (part of a gang evicted). A
// scheduler that cannot fill the nodes cannot do the row.
func (b *bench) preemption(ctx context.Context, spec schedulerSpec) (runStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, bs, err := b.WatchedNamespace(ctx)
	if err != nil {
		return runStats{}, err
	}
	o := b.o
	lowGangs, lowPods := priorityGangs("low", priorityLow, fillSizes(o.nodes, o.preemptLowSize))
	fill, err := b.submitAndAwait(ctx, spec, ns, bs, lowGangs, lowPods)
	if err != nil {
		return fill, err
	}
	if !fill.allBound {
		n, _ := bs.Count(names(lowPods))
		// The next row needs the nodes empty.
		if err := b.deleteAll(ctx, spec, ns); err != nil {
			return runStats{}, err
		}
		return runStats{}, unsupportedError{fmt.Sprintf("the low-priority gangs did not fill the nodes (%d of %d pods bound within %s)", n, len(lowPods), o.timeout)}
	}
	high := make([]int, o.preemptHighGangs)
	for i := range high {
		high[i] = o.preemptHighSize
	}
	highGangs, highPods := priorityGangs("high", priorityHigh, high)
	s, err := b.submitAndAwait(ctx, spec, ns, bs, highGangs, highPods)
	if err != nil {
		return s, err
	}
	select {
	case <-ctx.Done():
		return s, ctx.Err()
	case <-time.After(2 * time.Second):
	}
	pods, err := b.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return s, err
	}
	running := map[string]int{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.NodeName != "" {
			running[p.Labels[schedv1alpha1.PodGroupLabel]]++
		}
	}
	victims := make([]gangCount, len(lowGangs))
	s.evicted = len(lowPods)
	for i, g := range lowGangs {
		victims[i] = gangCount{present: running[g.name], size: g.minMember}
		s.evicted -= running[g.name]
	}
	_, s.victimsPartial = tally(victims)
	return s, b.deleteAll(ctx, spec, ns)
}

// priorityGangs is gangs prefix-NNN of the given sizes and their pods of 8
// GPUs, of priorityClass.
func priorityGangs(prefix, priorityClass string, sizes []int) ([]gangDef, []podDef) {
	var (
		gangs []gangDef
		pods  []podDef
	)
	for i, n := range sizes {
		g := gangDef{name: fmt.Sprintf("%s-%03d", prefix, i), minMember: n, priorityClass: priorityClass}
		gangs = append(gangs, g)
		for j := range n {
			pods = append(pods, podDef{name: fmt.Sprintf("%s-%04d", g.name, j), group: g.name, gpus: 8, priorityClass: priorityClass})
		}
	}
	return gangs, pods
}

func interleavedSize(o options) int {
	return max(1, int(o.interleavedFraction*float64(o.nodes)))
}

// interleaved creates three gangs that each need the given fraction of the
// nodes, members interleaved, and removes each gang once it is fully bound
// (it "finishes"); it counts the gangs that complete before the timeout.
func (b *bench) interleaved(ctx context.Context, spec schedulerSpec) (runStats, error) {
	size := interleavedSize(b.o)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, bs, err := b.WatchedNamespace(ctx)
	if err != nil {
		return runStats{}, err
	}
	gangs := []string{"a", "b", "c"}
	members := map[string][]string{}
	for _, g := range gangs {
		if err := b.podGroup(ctx, spec, ns, gangDef{name: g, minMember: size}); err != nil {
			return runStats{}, err
		}
		for i := range size {
			members[g] = append(members[g], fmt.Sprintf("%s-%04d", g, i))
		}
	}
	first := time.Now()
	if err := benchkit.Parallel(3*size, 8, func(i int) error {
		g := gangs[i%3]
		return b.createPod(ctx, ns, spec, podDef{name: members[g][i/3], group: g, gpus: 8})
	}); err != nil {
		return runStats{}, err
	}
	lastCreated := time.Now()
	done := map[string]bool{}
	deadline := time.Now().Add(b.o.timeout)
	for len(done) < len(gangs) && time.Now().Before(deadline) {
		if err := b.Healthy(); err != nil {
			return runStats{}, err
		}
		for _, g := range gangs {
			if done[g] {
				continue
			}
			if n, _ := bs.Count(members[g]); n == size {
				done[g] = true
				if err := b.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: schedv1alpha1.PodGroupLabel + "=" + g}); err != nil {
					return runStats{}, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return runStats{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	took := time.Since(first)
	s := runStats{
		seconds: time.Since(lastCreated).Seconds(), podsPerSecond: float64(len(done)*size) / took.Seconds(),
		allBound: len(done) == len(gangs), gangs: len(gangs),
	}
	counts := make([]gangCount, len(gangs))
	for i, g := range gangs {
		n, _ := bs.Count(members[g])
		counts[i] = gangCount{present: n, size: size}
	}
	s.completed, s.partial = tally(counts)
	return s, b.deleteAll(ctx, spec, ns)
}
