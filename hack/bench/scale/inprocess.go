package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/hack/bench/simkit"
	"tessera.dev/tessera/internal/gpunodes"
)

// cycleCost is one profile's pass over the burst in-process.
type cycleCost struct {
	profile string
	round   int
	placed  int
	pods    int
	cpu     time.Duration
	wall    time.Duration
	// filtered and scored are simkit's counts of the nodes filtered and
	// scored (Simulator.Filtered, Scored).
	filtered, scored int64
	allocated        uint64
	// batched are the pods placed on OpportunisticBatching's hint.
	batched int64
}

// runInProcess schedules the burst through each profile on the real
// scheduler framework in this process (hack/bench/simkit: cache, snapshot,
// every extension point up to Bind, nodes filtered as kube-scheduler
// filters them, at its parallelism of 16, OpportunisticBatching as in
// kube-scheduler, the pods signed as queued), with no apiserver, etcd or
// kwok competing for the CPUs, so that what each profile's scheduling
// costs is measured apart from what the control plane costs. (On this
// 2-core machine the same profile's CPU per pod still moved by up to 15 %
// between rounds and 45 % between runs: compare profiles within a round.)
// Gang and DRA are left out (simkit.LeftOut): gang members schedule as
// independent pods in both profiles, and no pod is retried.
func runInProcess(ctx context.Context, o options, w *workload) error {
	if err := simkit.Setup(); err != nil {
		return err
	}
	shape := gpunodes.Shapes["dgx-h100"]
	status, err := gpunodes.TopologyStatus("h100-0000", shape.Name)
	if err != nil {
		return err
	}
	nodes := make([]*corev1.Node, o.nodes)
	topologies := make([]*tesserav1alpha1.GPUNodeTopology, o.nodes)
	now := metav1.Now()
	for i := range nodes {
		name := fmt.Sprintf("h100-%04d", i)
		nodes[i] = shape.Node(name, fmt.Sprintf("rack-%03d", i/32))
		topologies[i] = &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: *status.DeepCopy()}
		topologies[i].Status.HeartbeatTime = &now
	}
	shipped, err := os.ReadFile(filepath.Join(o.repo, "manifests", "scheduler", "config.yaml"))
	if err != nil {
		return err
	}
	var costs []cycleCost
	for round := 1; round <= o.rounds; round++ {
		for _, profile := range roundOrder(o.profiles, round) {
			data := []byte(defaultConfig)
			if profile == tesseraProfile {
				data = shipped
			}
			p, err := simkit.Profile(data, profile)
			if err != nil {
				return err
			}
			benchkit.Progress("round %d: %s in-process on %d nodes", round, profile, o.nodes)
			c, err := passInProcess(ctx, o, p, nodes, topologies, w, round)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", profile, round, err)
			}
			costs = append(costs, c)
		}
	}
	printCycleCosts(os.Stdout, o, w, costs)
	return nil
}

func passInProcess(ctx context.Context, o options, p *config.KubeSchedulerProfile, nodes []*corev1.Node, topologies []*tesserav1alpha1.GPUNodeTopology, w *workload, round int) (cycleCost, error) {
	reg, err := simkit.NewRegistry(topologies)
	if err != nil {
		return cycleCost{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sim, err := simkit.New(ctx, reg.Registry, p, nodes, simkit.Options{Seed: o.seed, Parallelism: 16, Batch: true})
	if err != nil {
		return cycleCost{}, err
	}
	pods := make([]*corev1.Pod, len(w.pods))
	for i, s := range w.pods {
		pods[i] = podObject("bench", p.SchedulerName, s)
		pods[i].UID = types.UID(fmt.Sprintf("%s-%d-%d", p.SchedulerName, round, i))
	}
	if o.cpuProfiles != "" {
		if err := os.MkdirAll(o.cpuProfiles, 0o755); err != nil {
			return cycleCost{}, err
		}
		f, err := os.Create(filepath.Join(o.cpuProfiles, fmt.Sprintf("%s-inprocess-%d.pprof", p.SchedulerName, round)))
		if err != nil {
			return cycleCost{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return cycleCost{}, err
		}
		defer pprof.StopCPUProfile()
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0, err := processCPU()
	if err != nil {
		return cycleCost{}, err
	}
	start := time.Now()
	c := cycleCost{profile: p.SchedulerName, round: round, pods: len(pods)}
	sim.Enqueue(ctx, pods)
	for _, pod := range pods {
		node, err := sim.Schedule(ctx, pod)
		if err != nil {
			return cycleCost{}, err
		}
		if node != "" {
			c.placed++
		}
	}
	c.wall = time.Since(start)
	cpu1, err := processCPU()
	if err != nil {
		return cycleCost{}, err
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	c.cpu, c.filtered, c.scored, c.batched, c.allocated = cpu1-cpu0, sim.Filtered, sim.Scored, sim.Batched, after.TotalAlloc-before.TotalAlloc
	return c, nil
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() (time.Duration, error) {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0, err
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()), nil
}

func printCycleCosts(out io.Writer, o options, w *workload, costs []cycleCost) {
	fmt.Fprintf(out, "\nIn-process scheduling cost: %s on %d DGX H100 nodes, the real framework without an apiserver (Gang and DRA left out)\n\n", w.describe(), o.nodes)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tprofile\tplaced\tCPU per pod\tvs default\twall per pod\tfiltered per pod\tscored per pod\tCPU per node filtered\tallocated per pod\tbatched\t")
	defaults := map[int]float64{}
	for _, c := range costs {
		if c.profile == defaultProfile {
			defaults[c.round] = perPod(c.cpu, c.pods)
		}
	}
	for _, c := range costs {
		vs := "-"
		if d := defaults[c.round]; d > 0 {
			vs = fmt.Sprintf("%.2f×", perPod(c.cpu, c.pods)/d)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.2f ms\t%s\t%.2f ms\t%.0f\t%.0f\t%.2f µs\t%.0f KiB\t%d\t\n", c.round, c.profile, c.placed,
			perPod(c.cpu, c.pods), vs, perPod(c.wall, c.pods), float64(c.filtered)/float64(c.pods), float64(c.scored)/float64(c.pods),
			float64(c.cpu.Microseconds())/float64(max(c.filtered, 1)), float64(c.allocated)/1024/float64(c.pods), c.batched)
	}
	_ = tw.Flush()
	fmt.Fprintln(out, "\n\"vs default\" is CPU per pod against the default profile's in the same round (above 1: Tessera's costs more).")
}

// perPod is d per pod, in milliseconds.
func perPod(d time.Duration, pods int) float64 { return d.Seconds() * 1000 / float64(pods) }
