// Command scale benchmarks scheduling at scale, scheduler_perf style: DGX
// H100 kwok nodes (8 GPUs each, with the GPUNodeTopology their node agents
// would publish) on a real etcd and kube-apiserver, and one seeded burst of
// pods of mixed shapes (GPU shares, 1 to 8 GPUs, gangs of 8), scheduled once
// by Tessera's shipped profile and once by stock kube-scheduler's default
// profile, run by the same binary at the same client QPS, in the same run;
// the pods are created first, so that the scheduler, not the apiserver,
// sets the pace. Each round measures the profiles one after the other, the
// order reversed from one round to the next: the first burst of a run is
// the slower one (2026-12-02: the default profile's pods/s was 110 first,
// 130 second).
// It reports pods/s, the scheduler's own scheduling-attempt and end-to-end
// latency quantiles, and its peak RSS; with --cpu-profiles it saves a CPU
// profile of each scheduler during the burst. It prints a table and writes
// CSV.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"tessera.dev/tessera/hack/bench/benchkit"
)

const (
	tesseraProfile = "tessera-scheduler"
	// defaultProfile is stock kube-scheduler's default profile.
	defaultProfile = "default-scheduler"
)

type options struct {
	repo, out, cpuProfiles string
	// profiles are measured in this order in odd rounds, reversed in even.
	profiles       []string
	rounds         int
	nodes, pods    int
	seed           uint64
	profileSeconds int
	timeout, stall time.Duration
	// inProcess measures each profile's CPU per pod on the framework in
	// this process instead (inprocess.go).
	inProcess bool
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.repo, "repo", ".", "root of the Tessera checkout (bin/, manifests/)")
	flag.StringVar(&o.out, "out", "_output/bench-scale.csv", "CSV file to write")
	flag.StringVar(&o.cpuProfiles, "cpu-profiles", "", "folder to save each scheduler's CPU profile of each burst in (<profile>-<round>.pprof); empty saves none")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 30, "length of each CPU profile, from the burst's start")
	flag.IntVar(&o.nodes, "nodes", 5000, "DGX H100 nodes (8 GPUs each)")
	flag.IntVar(&o.pods, "pods", 10000, "pods in the burst")
	flag.Uint64Var(&o.seed, "seed", 42, "seed of the workload's shapes and order")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long one profile's burst may take")
	flag.DurationVar(&o.stall, "stall", 20*time.Second, "a burst ends when no pod has been bound for this long")
	order := flag.String("order", tesseraProfile+","+defaultProfile, "the profiles to measure, in this order in the first round")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of one burst per profile, each in the reverse order of the one before")
	flag.BoolVar(&o.inProcess, "in-process", false, "measure each profile's CPU per pod on the real scheduler framework in this process, without an apiserver, instead")
	klog.InitFlags(nil)
	flag.Parse()
	for _, p := range strings.Split(*order, ",") {
		if p != tesseraProfile && p != defaultProfile {
			return fmt.Errorf("--order: unknown profile %q (%s, %s)", p, tesseraProfile, defaultProfile)
		}
		if slices.Contains(o.profiles, p) {
			return fmt.Errorf("--order: profile %q twice", p)
		}
		o.profiles = append(o.profiles, p)
	}

	w := newWorkload(o.pods, o.seed)
	if gpus, capacity := w.gpus(), 8*o.nodes; float64(gpus) > 0.6*float64(capacity) {
		return fmt.Errorf("%d pods ask for %d GPUs, over 60 %% of the cluster's %d: raise --nodes or lower --pods", o.pods, gpus, capacity)
	}
	if o.rounds < 1 {
		return fmt.Errorf("--rounds: %d is not a positive count", o.rounds)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if o.inProcess {
		return runInProcess(ctx, o, w)
	}
	stack, err := benchkit.Start(ctx, o.repo, "bench-scale")
	if err != nil {
		return err
	}
	defer func() { _ = stack.Stop() }()
	if err := stack.CreateDGXNodes(ctx, o.nodes, 32); err != nil {
		return err
	}
	b := &bench{o: o, Stack: stack}
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for _, profile := range roundOrder(o.profiles, round) {
			// Fresh heartbeats before each burst, none during it: the run
			// stays well inside the 15-minute staleness window, and a
			// rewrite of every topology mid-burst would land in one
			// profile's figures only.
			benchkit.Progress("round %d: renewing the %d topologies' heartbeats", round, o.nodes)
			if err := stack.RefreshTopologies(ctx); err != nil {
				return err
			}
			r, err := b.measure(ctx, profile, round, w)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w (logs in %s)", profile, round, err, stack.WorkDir)
			}
			results = append(results, r)
		}
	}
	if err := stack.Healthy(); err != nil {
		return err
	}
	printTable(os.Stdout, o, w, results)
	if err := writeCSV(o.out, results); err != nil {
		return err
	}
	benchkit.Progress("wrote %s", o.out)
	if o.cpuProfiles != "" {
		benchkit.Progress("CPU profiles in %s: go tool pprof -top %s", o.cpuProfiles, filepath.Join(o.cpuProfiles, tesseraProfile+"-1.pprof"))
	}
	return nil
}

// roundOrder is the order the profiles are measured in in round: as given
// in odd rounds, reversed in even ones.
func roundOrder(profiles []string, round int) []string {
	order := slices.Clone(profiles)
	if round%2 == 0 {
		slices.Reverse(order)
	}
	return order
}
