package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/gpunodes"
)

type bench struct {
	o options
	*benchkit.Stack
}

// measureScheduler starts one scheduler, runs every row on it and stops it.
func (b *bench) measureScheduler(ctx context.Context, name string) ([]result, error) {
	spec := schedulerSpecs[name]
	benchkit.Progress("starting %s", name)
	start := b.startKubeScheduler
	if spec.volcano {
		start = b.startVolcano
	}
	if err := start(ctx, name, spec); err != nil {
		return nil, err
	}
	defer func() { _ = b.StopProcess(name) }()
	// Warm-up: the scheduler's caches sync and its first cycles run.
	if _, _, err := b.run(ctx, spec, true, 8); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var results []result
	for _, size := range b.o.sizes {
		for _, gang := range []bool{false, true} {
			r := result{scheduler: name, workload: workloadName(gang, size), pods: size}
			for range b.o.repeats {
				latency, throughput, err := b.run(ctx, spec, gang, size)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", r.workload, err)
				}
				r.latency = append(r.latency, latency)
				r.throughput = append(r.throughput, throughput)
			}
			benchkit.Progress("%s %s: %.3fs after the last pod, %.0f pods/s (median of %d)", name, r.workload, benchkit.Median(r.latency), benchkit.Median(r.throughput), b.o.repeats)
			results = append(results, r)
		}
	}
	if b.o.interleavedFraction > 0 {
		r, err := b.interleaved(ctx, name, spec)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

// startKubeScheduler starts a kube-scheduler build (Tessera's or a peer's)
// with its KubeSchedulerConfiguration made local.
func (b *bench) startKubeScheduler(ctx context.Context, name string, spec schedulerSpec) error {
	return b.StartSchedulerProcess(ctx, name, filepath.Join(b.o.repo, spec.binary), filepath.Join(b.o.repo, spec.config), spec.args...)
}

func workloadName(gang bool, size int) string {
	if gang {
		return fmt.Sprintf("gang of %d", size)
	}
	return fmt.Sprintf("%d independent pods", size)
}

// run creates size pods of 8 GPUs (a gang, or independent), waits until all
// are bound, removes them, and returns the seconds from the last pod created
// to the last bound, and pods/s from the first created.
func (b *bench) run(ctx context.Context, spec schedulerSpec, gang bool, size int) (float64, float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, err := b.Namespace(ctx)
	if err != nil {
		return 0, 0, err
	}
	bs, err := b.WatchBinds(ctx, ns)
	if err != nil {
		return 0, 0, err
	}
	names := make([]string, size)
	for i := range names {
		names[i] = fmt.Sprintf("w-%04d", i)
	}
	group := ""
	if gang {
		group = "gang"
		if err := b.podGroup(ctx, spec, ns, group, size); err != nil {
			return 0, 0, err
		}
	} else if spec.volcano {
		// What vc-controller-manager would make for each bare pod.
		if err := benchkit.Parallel(size, 8, func(i int) error { return b.volcanoPodGroup(ctx, ns, volcanoGroup(names[i], ""), 1) }); err != nil {
			return 0, 0, err
		}
	}
	first := time.Now()
	if err := benchkit.Parallel(size, 8, func(i int) error { return b.createPod(ctx, ns, names[i], group, spec) }); err != nil {
		return 0, 0, err
	}
	lastCreated := time.Now()
	var lastBound time.Time
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, b.o.timeout, true, func(context.Context) (bool, error) {
		if err := b.Healthy(); err != nil {
			return false, err
		}
		n, last := bs.Count(names)
		lastBound = last
		return n == size, nil
	})
	if err != nil {
		n, _ := bs.Count(names)
		return 0, 0, fmt.Errorf("%d of %d pods bound: %w", n, size, err)
	}
	if err := b.deleteAll(ctx, spec, ns); err != nil {
		return 0, 0, err
	}
	return max(lastBound.Sub(lastCreated), 0).Seconds(), float64(size) / lastBound.Sub(first).Seconds(), nil
}

// interleaved creates three gangs that each need the given fraction of the
// nodes, members interleaved, and removes each gang once it is fully bound
// (it "finishes"); it counts the gangs that complete before the timeout.
func (b *bench) interleaved(ctx context.Context, name string, spec schedulerSpec) (result, error) {
	size := max(1, int(b.o.interleavedFraction*float64(b.o.nodes)))
	r := result{scheduler: name, workload: fmt.Sprintf("3 interleaved gangs of %d", size), pods: 3 * size}
	benchkit.Progress("%s: %s", name, r.workload)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, err := b.Namespace(ctx)
	if err != nil {
		return r, err
	}
	bs, err := b.WatchBinds(ctx, ns)
	if err != nil {
		return r, err
	}
	gangs := []string{"a", "b", "c"}
	members := map[string][]string{}
	for _, g := range gangs {
		if err := b.podGroup(ctx, spec, ns, g, size); err != nil {
			return r, err
		}
		for i := range size {
			members[g] = append(members[g], fmt.Sprintf("%s-%04d", g, i))
		}
	}
	first := time.Now()
	if err := benchkit.Parallel(3*size, 8, func(i int) error {
		g := gangs[i%3]
		return b.createPod(ctx, ns, members[g][i/3], g, spec)
	}); err != nil {
		return r, err
	}
	lastCreated := time.Now()
	done := map[string]bool{}
	deadline := time.Now().Add(b.o.timeout)
	for len(done) < len(gangs) && time.Now().Before(deadline) {
		for _, g := range gangs {
			if done[g] {
				continue
			}
			if n, _ := bs.Count(members[g]); n == size {
				done[g] = true
				if err := b.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: schedv1alpha1.PodGroupLabel + "=" + g}); err != nil {
					return r, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.completed, r.stuck = len(done), len(gangs)-len(done)
	took := time.Since(first)
	r.latency = append(r.latency, time.Since(lastCreated).Seconds())
	r.throughput = append(r.throughput, float64(len(done)*size)/took.Seconds())
	benchkit.Progress("%s: %d of 3 gangs completed in %s", name, r.completed, took.Round(time.Millisecond))
	return r, b.deleteAll(ctx, spec, ns)
}

// deleteAll deletes ns's pods, and the PodGroups a Volcano run made
// (vc-scheduler keeps every PodGroup it sees in its cache).
func (b *bench) deleteAll(ctx context.Context, spec schedulerSpec, ns string) error {
	if err := b.DeleteAll(ctx, ns); err != nil {
		return err
	}
	if spec.volcano {
		return b.deleteVolcanoPodGroups(ctx, ns)
	}
	return nil
}

// podGroup creates the gang's PodGroup of the scheduler under test.
func (b *bench) podGroup(ctx context.Context, spec schedulerSpec, ns, name string, minMember int) error {
	if spec.volcano {
		return b.volcanoPodGroup(ctx, ns, name, minMember)
	}
	client, err := pgclientset.NewForConfig(b.Config)
	if err != nil {
		return err
	}
	timeout := int32(60)
	_, err = client.SchedulingV1alpha1().PodGroups(ns).Create(ctx, &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: int32(minMember), ScheduleTimeoutSeconds: &timeout},
	}, metav1.CreateOptions{})
	return err
}

// createPod creates an 8-GPU pod for the scheduler under test, a member of
// group if not empty. The scheduler-plugins PodGroup label marks a gang's
// members for every scheduler (the interleaved row deletes by it); Volcano
// finds the PodGroup by annotation.
func (b *bench) createPod(ctx context.Context, ns, name, group string, spec schedulerSpec) error {
	gpus := *resource.NewQuantity(8, resource.DecimalSI)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: spec.schedulerName,
			Containers: []corev1.Container{{
				Name: "worker", Image: "trainer",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{gpunodes.ResourceGPU: gpus}},
			}},
		},
	}
	if group != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: group}
	}
	if spec.volcano {
		pod.Annotations = map[string]string{volcanoGroupAnnotation: volcanoGroup(name, group)}
	}
	_, err := b.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	return err
}

func printTable(out io.Writer, o options, results []result) {
	fmt.Fprintf(out, "\nGang scheduling on %d simulated DGX H100 nodes (%d GPUs), pods of 8 GPUs, median of %d runs\n\n", o.nodes, 8*o.nodes, o.repeats)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCHEDULER\tWORKLOAD\tPODS\tLAST CREATED -> ALL BOUND\tPODS/S\tGANGS COMPLETED")
	for _, r := range results {
		completed := "-"
		if r.completed+r.stuck > 0 {
			completed = fmt.Sprintf("%d of %d", r.completed, r.completed+r.stuck)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%.3fs\t%.0f\t%s\n", r.scheduler, r.workload, r.pods, benchkit.Median(r.latency), benchkit.Median(r.throughput), completed)
	}
	_ = w.Flush()
}
