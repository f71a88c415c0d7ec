package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
)

type bench struct {
	o options
	*benchkit.Stack
}

// result is one profile's burst.
type result struct {
	profile string
	// round is the run's round, from 1.
	round int
	bound int
	// podsPerSecond is (pods bound - 1) / (last bind - first bind).
	podsPerSecond float64
	// allBound is from the scheduler's start to the last bind.
	allBound time.Duration
	// attempt is the scheduler's own latency quantiles of a scheduling
	// attempt that scheduled the pod, in seconds (exponential buckets).
	attempt quantiles
	// boundAfter are the p50 and p99 of the time from the scheduler's
	// start to each pod's bind, as the benchmark saw the binds: with every
	// pod queued at the start, the queue-to-bound latency.
	boundAfter []time.Duration
	// peakRSS is the scheduler's peak resident memory, in bytes.
	peakRSS int64
	// cpu is the CPU time the scheduler process used, from its start to
	// the burst's end.
	cpu time.Duration
	// batched counts the pods the scheduler placed on a node hint from
	// the previous pod's scores (OpportunisticBatching, on by default since
	// Kubernetes 1.35), without filtering and scoring the nodes again.
	batched int
}

// measure creates the burst's pods, then starts a scheduler of the profile
// and waits until it has bound them (or stalls), and removes them. The pods
// wait in the queue from the start, so pods/s is the scheduler's own rate,
// not the rate the apiserver takes pods in at.
func (b *bench) measure(ctx context.Context, profile string, round int, w *workload) (result, error) {
	ctx, cancel := context.WithCancel(ctx) // ends the bind watch with the run
	defer cancel()
	r := result{profile: profile, round: round}
	ns, binds, err := b.WatchedNamespace(ctx)
	if err != nil {
		return r, err
	}
	for gang, members := range w.gangs {
		pg := &schedv1alpha1.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: gang},
			Spec: schedv1alpha1.PodGroupSpec{MinMember: int32(members), ScheduleTimeoutSeconds: ptr.To[int32](300)}}
		if err := b.CR.Create(ctx, pg); err != nil {
			return r, err
		}
	}
	names := make([]string, len(w.pods))
	for i, p := range w.pods {
		names[i] = p.name
	}
	start := time.Now()
	if err := benchkit.Parallel(len(w.pods), 16, func(i int) error { return b.createPod(ctx, ns, profile, w.pods[i]) }); err != nil {
		return r, err
	}
	benchkit.Progress("%s: created %d pods in %.1fs", profile, len(w.pods), time.Since(start).Seconds())

	name := "scheduler-" + profile
	port, err := cluster.FreePort()
	if err != nil {
		return r, err
	}
	config, err := b.config(profile)
	if err != nil {
		return r, err
	}
	benchkit.Progress("starting bin/tessera-scheduler for profile %s", profile)
	started := time.Now()
	// The scheduler serves /metrics and /debug/pprof to anyone, on loopback.
	if err := b.StartSchedulerProcess(ctx, name, filepath.Join(b.o.repo, "bin", "tessera-scheduler"), config,
		"--feature-gates=NominatedNodeNameForExpectation=false", fmt.Sprintf("--secure-port=%d", port),
		"--authentication-kubeconfig="+b.KubeconfigPath, "--authorization-kubeconfig="+b.KubeconfigPath,
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*"); err != nil {
		return r, err
	}
	defer func() { _ = b.StopProcess(name) }()
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := waitReady(ctx, endpoint); err != nil {
		return r, err
	}
	profiled := make(chan error, 1)
	if b.o.cpuProfiles != "" {
		go func() {
			profiled <- saveCPUProfile(ctx, endpoint, b.o.profileSeconds, filepath.Join(b.o.cpuProfiles, fmt.Sprintf("%s-%d.pprof", profile, round)))
		}()
	} else {
		profiled <- nil
	}
	var firstBound, lastBound time.Time
	lastCount := -1
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, b.o.timeout, true, func(context.Context) (bool, error) {
		if err := b.Healthy(); err != nil {
			return false, err
		}
		n, first, last := binds.Span(names)
		if n != lastCount {
			lastCount, firstBound, lastBound = n, first, last
		}
		return n == len(names) || n > 0 && time.Since(lastBound) > b.o.stall, nil
	})
	if err != nil {
		return r, fmt.Errorf("%d of %d pods bound: %w", lastCount, len(names), err)
	}
	r.bound = lastCount
	if lastCount > 1 {
		r.podsPerSecond = float64(lastCount-1) / lastBound.Sub(firstBound).Seconds()
	}
	r.allBound = lastBound.Sub(started)
	benchkit.Progress("%s: %d of %d pods bound %.0fs after the scheduler started, %.0f pods/s from the first bind", profile, r.bound, len(names), r.allBound.Seconds(), r.podsPerSecond)
	// CPU and memory as the burst ends, before any wait for the profile.
	pid, _ := b.PID(name)
	if r.peakRSS, err = peakRSS(pid); err != nil {
		return r, err
	}
	if r.cpu, err = cpuTime(pid); err != nil {
		return r, err
	}
	if err := <-profiled; err != nil {
		return r, fmt.Errorf("CPU profile: %w", err)
	}
	families, err := scrape(ctx, endpoint)
	if err != nil {
		return r, err
	}
	r.attempt = histogramQuantiles(families["scheduler_scheduling_attempt_duration_seconds"], map[string]string{"profile": profile, "result": "scheduled"})
	r.batched = int(counterSum(families["scheduler_batch_attempts_total"], map[string]string{"profile": profile, "result": "hint_used"}))
	r.boundAfter = binds.QuantilesSince(names, started, 0.5, 0.99)
	benchkit.Progress("%s: removing the pods", profile)
	return r, b.DeleteAll(ctx, ns)
}

// config is the scheduler configuration for the profile: the shipped one
// for Tessera's, stock kube-scheduler's default profile alone otherwise,
// at the shipped client QPS (a scheduler's profiles must share one queue
// sort: the default profile's is PrioritySort, Tessera's is Gang).
func (b *bench) config(profile string) (string, error) {
	if profile == tesseraProfile {
		return filepath.Join(b.o.repo, "manifests", "scheduler", "config.yaml"), nil
	}
	path := filepath.Join(b.WorkDir, "default-profile.yaml")
	return path, os.WriteFile(path, []byte(defaultConfig), 0o644)
}

// defaultConfig runs stock kube-scheduler's default profile alone.
const defaultConfig = "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n" +
	"clientConnection: {qps: 200, burst: 400}\nprofiles:\n- schedulerName: " + defaultProfile + "\n"

// createPod creates one pod of the burst for the profile.
func (b *bench) createPod(ctx context.Context, ns, profile string, p podShape) error {
	_, err := b.Client.CoreV1().Pods(ns).Create(ctx, podObject(ns, profile, p), metav1.CreateOptions{})
	return err
}

// podObject is one pod of the burst for the profile: whole GPUs as
// nvidia.com/gpu, a share as tessera.dev/gpu-milli (the default profile
// sees only its CPU), a gang member labelled with its PodGroup (which the
// default profile ignores). Its requests are its limits, as the apiserver
// would default them (the in-process mode has no apiserver).
func podObject(ns, profile string, p podShape) *corev1.Pod {
	limits := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi")}
	if p.gpus > 0 {
		limits[gpunodes.ResourceGPU] = *resource.NewQuantity(int64(p.gpus), resource.DecimalSI)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.name},
		Spec: corev1.PodSpec{
			SchedulerName: profile,
			Containers:    []corev1.Container{{Name: "c", Image: "cuda", Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits.DeepCopy()}}},
		},
	}
	if p.milli > 0 {
		pod.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUMilli: strconv.Itoa(p.milli)}
	}
	if p.gang != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: p.gang}
	}
	return pod
}
