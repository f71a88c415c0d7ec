package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"
	pgclientset "sigs.k8s.io/scheduler-plugins/pkg/generated/clientset/versioned"

	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/gpunodes"
)

type bench struct {
	o options
	*benchkit.Stack
}

// gangDef is a PodGroup a run creates.
type gangDef struct {
	name          string
	minMember     int
	priorityClass string
}

// podDef is a pod a run creates: of gpus GPUs, a member of group ("" for
// none), of priorityClass ("" for none).
type podDef struct {
	name, group   string
	gpus          int
	priorityClass string
}

// unsupportedError is a row the scheduler cannot do at all: the table
// says so instead of the run failing.
type unsupportedError struct{ reason string }

func (e unsupportedError) Error() string { return e.reason }

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
	if s, err := b.sized(ctx, spec, true, 8); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	} else if !s.allBound {
		return nil, fmt.Errorf("warm-up: a gang of 8 not bound within %s", b.o.timeout)
	}
	var results []result
	add := func(workload string, pods int, evictions bool, measure func(context.Context, schedulerSpec) (runStats, error)) error {
		r, err := b.repeat(ctx, spec, result{scheduler: name, workload: workload, pods: pods, evictions: evictions}, measure)
		results = append(results, r)
		return err
	}
	for _, size := range b.o.sizes {
		for _, gang := range []bool{false, true} {
			measure := func(ctx context.Context, spec schedulerSpec) (runStats, error) { return b.sized(ctx, spec, gang, size) }
			if err := add(workloadName(gang, size), size, false, measure); err != nil {
				return nil, err
			}
		}
	}
	if o := b.o; o.togetherGangs > 0 {
		if err := add(togetherName(o), o.togetherGangs*o.togetherSize, false, b.together); err != nil {
			return nil, err
		}
	}
	if o := b.o; o.preemptHighGangs > 0 {
		if err := add(preemptionName(o), o.preemptHighGangs*o.preemptHighSize, true, b.preemption); err != nil {
			return nil, err
		}
	}
	if b.o.interleavedFraction > 0 {
		size := interleavedSize(b.o)
		if err := add(fmt.Sprintf("3 interleaved gangs of %d", size), 3*size, false, b.interleaved); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// repeat runs a row --repeats times, each in a namespace of its own. A run
// that does not bind everything within the timeout ends the row: the
// others would wait as long to say the same.
func (b *bench) repeat(ctx context.Context, spec schedulerSpec, r result, measure func(context.Context, schedulerSpec) (runStats, error)) (result, error) {
	for i := range b.o.repeats {
		s, err := measure(ctx, spec)
		if u := (unsupportedError{}); errors.As(err, &u) {
			r.unsupported = u.reason
			benchkit.Progress("%s %s: cannot: %s", r.scheduler, r.workload, u.reason)
			return r, nil
		}
		if err != nil {
			return r, fmt.Errorf("%s: %w", r.workload, err)
		}
		r.runs = append(r.runs, s)
		if !s.allBound {
			if i+1 < b.o.repeats {
				benchkit.Progress("%s %s: not all bound within %s: its other runs skipped", r.scheduler, r.workload, b.o.timeout)
			}
			break
		}
	}
	benchkit.Progress("%s %s: %s after the last pod, %s pods/s", r.scheduler, r.workload, timeCell(r), podsPerSecondCell(r))
	return r, nil
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

// sized creates size pods of 8 GPUs (a gang, or independent), waits until
// all are bound, and removes them.
func (b *bench) sized(ctx context.Context, spec schedulerSpec, gang bool, size int) (runStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, bs, err := b.WatchedNamespace(ctx)
	if err != nil {
		return runStats{}, err
	}
	var gangs []gangDef
	pods := make([]podDef, size)
	for i := range pods {
		pods[i] = podDef{name: fmt.Sprintf("w-%04d", i), gpus: 8}
	}
	if gang {
		gangs = []gangDef{{name: "gang", minMember: size}}
		for i := range pods {
			pods[i].group = "gang"
		}
	}
	s, err := b.submitAndAwait(ctx, spec, ns, bs, gangs, pods)
	if err != nil {
		return s, err
	}
	return s, b.deleteAll(ctx, spec, ns)
}

// submitAndAwait submits the gangs and pods (see submit), waits until the
// pods are bound or the timeout (see awaitBound), and counts the gangs
// fully and partly bound.
func (b *bench) submitAndAwait(ctx context.Context, spec schedulerSpec, ns string, bs *benchkit.Binds, gangs []gangDef, pods []podDef) (runStats, error) {
	first, lastCreated, err := b.submit(ctx, spec, ns, gangs, pods)
	if err != nil {
		return runStats{}, err
	}
	s, err := b.awaitBound(ctx, bs, names(pods), first, lastCreated)
	if err != nil || len(gangs) == 0 {
		return s, err
	}
	s.gangs = len(gangs)
	s.completed, s.partial = tally(boundCounts(bs, pods))
	return s, nil
}

// submit creates the gangs' PodGroups, and for Volcano the one-member
// PodGroup that vc-controller-manager would make for each pod outside any
// gang, then the pods, 8 at a time. It returns when the first pod's
// creation began and when the last one's ended.
func (b *bench) submit(ctx context.Context, spec schedulerSpec, ns string, gangs []gangDef, pods []podDef) (first, last time.Time, err error) {
	if err := benchkit.Parallel(len(gangs), 8, func(i int) error { return b.podGroup(ctx, spec, ns, gangs[i]) }); err != nil {
		return first, last, err
	}
	if spec.volcano {
		err := benchkit.Parallel(len(pods), 8, func(i int) error {
			if pods[i].group != "" {
				return nil
			}
			return b.volcanoPodGroup(ctx, ns, gangDef{name: volcanoGroup(pods[i].name, ""), minMember: 1, priorityClass: pods[i].priorityClass})
		})
		if err != nil {
			return first, last, err
		}
	}
	first = time.Now()
	if err := benchkit.Parallel(len(pods), 8, func(i int) error { return b.createPod(ctx, ns, spec, pods[i]) }); err != nil {
		return first, last, err
	}
	return first, time.Now(), nil
}

// awaitBound waits until the named pods are all bound, or the timeout. Its
// stats run from the last pod created to the last bound (to the timeout,
// when not all were), and pods/s from first, of the pods bound. Only a
// component that exited or ctx ending is an error.
func (b *bench) awaitBound(ctx context.Context, bs *benchkit.Binds, names []string, first, lastCreated time.Time) (runStats, error) {
	var (
		n    int
		last time.Time
	)
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, b.o.timeout, true, func(context.Context) (bool, error) {
		if err := b.Healthy(); err != nil {
			return false, err
		}
		n, last = bs.Count(names)
		return n == len(names), nil
	})
	s := runStats{allBound: err == nil}
	switch {
	case err == nil:
	case wait.Interrupted(err) && ctx.Err() == nil:
		last = time.Now()
	default:
		return s, fmt.Errorf("%d of %d pods bound: %w", n, len(names), err)
	}
	s.seconds = max(last.Sub(lastCreated), 0).Seconds()
	if took := last.Sub(first).Seconds(); took > 0 {
		s.podsPerSecond = float64(n) / took
	}
	return s, nil
}

func names(pods []podDef) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.name
	}
	return out
}

// boundCounts is, for each gang of pods in order of first appearance, how
// many of its members bs saw bound, of how many.
func boundCounts(bs *benchkit.Binds, pods []podDef) []gangCount {
	gangs := members(pods)
	counts := make([]gangCount, len(gangs))
	for i, g := range gangs {
		n, _ := bs.Count(g)
		counts[i] = gangCount{present: n, size: len(g)}
	}
	return counts
}

// members is the names of each gang's members, gangs in order of first
// appearance in pods; pods outside any gang are left out.
func members(pods []podDef) [][]string {
	var gangs [][]string
	index := map[string]int{}
	for _, p := range pods {
		if p.group == "" {
			continue
		}
		i, ok := index[p.group]
		if !ok {
			i = len(gangs)
			index[p.group] = i
			gangs = append(gangs, nil)
		}
		gangs[i] = append(gangs[i], p.name)
	}
	return gangs
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
func (b *bench) podGroup(ctx context.Context, spec schedulerSpec, ns string, g gangDef) error {
	if spec.volcano {
		return b.volcanoPodGroup(ctx, ns, g)
	}
	client, err := pgclientset.NewForConfig(b.Config)
	if err != nil {
		return err
	}
	timeout := int32(60)
	_, err = client.SchedulingV1alpha1().PodGroups(ns).Create(ctx, &schedv1alpha1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: g.name},
		Spec:       schedv1alpha1.PodGroupSpec{MinMember: int32(g.minMember), ScheduleTimeoutSeconds: &timeout},
	}, metav1.CreateOptions{})
	return err
}

// createPod creates a pod for the scheduler under test. The
// scheduler-plugins PodGroup label marks a gang's members for every
// scheduler (the interleaved row deletes by it); Volcano finds the
// PodGroup by annotation.
func (b *bench) createPod(ctx context.Context, ns string, spec schedulerSpec, p podDef) error {
	gpus := *resource.NewQuantity(int64(p.gpus), resource.DecimalSI)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name},
		Spec: corev1.PodSpec{
			SchedulerName:     spec.schedulerName,
			PriorityClassName: p.priorityClass,
			Containers: []corev1.Container{{
				Name: "worker", Image: "trainer",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{gpunodes.ResourceGPU: gpus}},
			}},
		},
	}
	if p.group != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: p.group}
	}
	if spec.volcano {
		pod.Annotations = map[string]string{volcanoGroupAnnotation: volcanoGroup(p.name, p.group)}
	}
	_, err := b.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// The preemption row's PriorityClasses, made once for the whole run.
const (
	priorityLow, priorityHigh = "bench-low", "bench-high"
)

func (b *bench) createPriorityClasses(ctx context.Context) error {
	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: priorityLow}, Value: 100},
		{ObjectMeta: metav1.ObjectMeta{Name: priorityHigh}, Value: 1000, PreemptionPolicy: ptr.To(corev1.PreemptLowerPriority)},
	} {
		if _, err := b.Client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating PriorityClass %s: %w", pc.Name, err)
		}
	}
	return nil
}
