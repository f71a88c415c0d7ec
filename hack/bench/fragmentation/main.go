// Command fragmentation benchmarks GPU-fragmentation-aware placement on the
// Alibaba GPU cluster trace v2023 ("openb"), with the protocol of Weng et
// al., "Beware of Fragmentation" (USENIX ATC'23): the pod list is inflated
// by sampling its own pods with replacement until the arrived GPU request
// is 130 % of the cluster's GPU capacity, shuffled per seed, and replayed
// one pod at a time; pods never leave and a pod that fits nowhere is not
// retried. Each policy is a profile of the real scheduler framework with
// the real plugins (see hack/bench/simkit): Tessera's shipped tessera-scheduler
// profile, the stock default profile, and the paper's baselines as score
// plugins. It prints the GPU allocation ratio at 100 % and 130 % arrived
// demand per policy, next to the paper's published figures, and writes
// one CSV row per run.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/hack/bench/simkit"
	"tessera.dev/tessera/internal/openb"
)

type options struct {
	nodes, pods, policies, seeds string
	config, readme, out          string
	ratio                        float64
	workers, job                 int
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fragmentation:", err)
		os.Exit(1)
	}
}

func run() error {
	traces := "../shared/traces/alibaba-gpu-2023"
	var o options
	flag.StringVar(&o.nodes, "nodes", filepath.Join(traces, "openb_node_list_gpu_node.csv"), "openb node list CSV")
	flag.StringVar(&o.pods, "pods", filepath.Join(traces, "openb_pod_list_default.csv"), "openb pod list CSVs, comma-separated (globs allowed)")
	flag.StringVar(&o.policies, "policies", strings.Join(allPolicies(), ","), "policies to run, comma-separated")
	flag.StringVar(&o.seeds, "seeds", "42-51", "seeds: a range a-b or a comma-separated list")
	flag.Float64Var(&o.ratio, "demand", 1.3, "arrived GPU demand to replay, as a multiple of cluster GPU capacity")
	flag.StringVar(&o.config, "config", "manifests/scheduler/config.yaml", "KubeSchedulerConfiguration whose tessera-scheduler profile is Tessera's policy")
	flag.StringVar(&o.readme, "published", filepath.Join(traces, "README.md"), "trace README with the paper's published figures (\"\" for none)")
	flag.StringVar(&o.out, "out", "_output/bench-fragmentation.csv", "CSV file to write")
	flag.IntVar(&o.workers, "workers", runtime.NumCPU(), "runs in parallel, each in a process of its own (1: all in this process)")
	flag.IntVar(&o.job, "job", -1, "run only this job of the list and print its result (how the runs in parallel are started)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole benchmark to this file")
	klog.InitFlags(nil)
	flag.Parse()
	// Plugin start-up notes would repeat for every run: only errors show.
	klog.LogToStderr(false)
	klog.SetOutputBySeverity("INFO", io.Discard)
	klog.SetOutputBySeverity("WARNING", io.Discard)
	klog.SetOutputBySeverity("ERROR", os.Stderr)
	klog.SetOutputBySeverity("FATAL", os.Stderr)
	if err := simkit.Setup(); err != nil {
		return err
	}
	// The replay allocates mostly short-lived objects and keeps a small
	// heap: collecting less often is a large share of its run time.
	debug.SetGCPercent(400)

	podFiles, err := expand(o.pods)
	if err != nil {
		return err
	}
	seeds, err := parseSeeds(o.seeds)
	if err != nil {
		return err
	}
	policies := strings.Split(o.policies, ",")
	for _, p := range policies {
		if _, err := profileFor(p, o.config); err != nil {
			return err
		}
	}
	nodes, err := readNodes(o.nodes)
	if err != nil {
		return err
	}
	published, err := readPublished(o.readme)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	type job struct {
		trace  *trace
		policy string
		seed   uint64
	}
	var jobs []job
	var all []*trace
	for _, f := range podFiles {
		t, err := readTrace(f, nodes)
		if err != nil {
			return err
		}
		all = append(all, t)
		for _, p := range policies {
			for _, s := range seeds {
				jobs = append(jobs, job{t, p, s})
			}
		}
	}
	if o.job < 0 {
		benchkit.Progress("%d nodes (%d GPUs); %d pod list(s) × %d policies × %d seeds = %d runs, %d at a time",
			len(nodes), gpuCapacity(nodes)/1000, len(podFiles), len(policies), len(seeds), len(jobs), o.workers)
	}

	if o.job >= 0 {
		// A child: run one job, report it on stdout.
		if o.job >= len(jobs) {
			return fmt.Errorf("--job %d: only %d jobs", o.job, len(jobs))
		}
		j := jobs[o.job]
		r, err := replay(ctx, j.trace, nodes, j.policy, j.seed, o)
		if err != nil {
			return err
		}
		fmt.Println(r.line())
		return nil
	}

	start := time.Now()
	results := make([]result, len(jobs))
	var mu sync.Mutex
	done := 0
	err = benchkit.Parallel(len(jobs), o.workers, func(i int) error {
		j := jobs[i]
		var r result
		var err error
		if o.workers == 1 {
			r, err = replay(ctx, j.trace, nodes, j.policy, j.seed, o)
		} else {
			r, err = runChild(ctx, i)
		}
		if err != nil {
			return fmt.Errorf("%s %s seed %d: %w", j.trace.name, j.policy, j.seed, err)
		}
		results[i] = r
		mu.Lock()
		defer mu.Unlock()
		done++
		benchkit.Progress("[%d/%d] %s %-10s seed %d: %5.2f %% allocated at 100 %%, %5.2f %% at %.0f %% (%d of %d pods placed, %.1f s)",
			done, len(jobs), j.trace.name, j.policy, j.seed, r.alloc100, r.allocEnd, o.ratio*100, r.placed, r.pods, r.seconds)
		return nil
	})
	if err != nil {
		return err
	}
	printTables(os.Stdout, all, policies, results, published, o.ratio)
	fmt.Printf("\n%d runs in %s on %d CPUs (%d workers)\n", len(jobs), time.Since(start).Round(time.Second), runtime.NumCPU(), o.workers)
	return writeCSV(o.out, results)
}

// runChild runs job i in a child process of this program with the same
// flags. Separate processes keep the runs from sharing the scheduler's
// global metrics, whose counters two runs in one process would contend on.
func runChild(ctx context.Context, i int) (result, error) {
	args := append(slices.Clone(os.Args[1:]), fmt.Sprintf("--job=%d", i))
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("run %d: %w", i, err)
	}
	return parseLine(strings.TrimSpace(string(out)))
}

// expand splits a comma-separated list of files and globs.
func expand(list string) ([]string, error) {
	var out []string
	for _, pattern := range strings.Split(list, ",") {
		matches, err := filepath.Glob(strings.TrimSpace(pattern))
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("no pod list matches %q", pattern)
		}
		out = append(out, matches...)
	}
	return out, nil
}

func parseSeeds(s string) ([]uint64, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b, err2 := strconv.ParseUint(hi, 10, 64)
		if err1 != nil || err2 != nil || b < a {
			return nil, fmt.Errorf("--seeds %q: want a-b with a <= b", s)
		}
		var out []uint64
		for v := a; v <= b; v++ {
			out = append(out, v)
		}
		return out, nil
	}
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--seeds %q: %q is not a seed", s, part)
		}
		out = append(out, v)
	}
	return out, nil
}

func readNodes(path string) ([]openb.Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nodes, err := openb.ReadNodes(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nodes, nil
}

func gpuCapacity(nodes []openb.Node) int64 {
	var total int64
	for _, n := range nodes {
		total += int64(n.GPUs) * 1000
	}
	return total
}
