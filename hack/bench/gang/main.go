// Command gang benchmarks gang scheduling on a simulated cluster (kwok nodes
// on a real etcd and kube-apiserver): for gangs of several sizes it measures
// the time from the last member's creation to the whole gang bound, and
// pods/s, side by side with as many independent pods, for Tessera's
// scheduler and for its peers, built by hack/build-peers.sh: coscheduling
// (scheduler-plugins v0.34.7) and Volcano v1.15.1's vc-scheduler (its
// queue, PodGroups and rack HyperNodes in volcano.go), in the same run, on
// the same nodes. It also runs
// three interleaved gangs that each need 60 % of the nodes, which deadlock a
// scheduler that lets gangs hold partial reservations. It prints a table and
// writes CSV.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"tessera.dev/tessera/hack/bench/benchkit"
)

type options struct {
	repo, out           string
	nodes, repeats      int
	sizes               []int
	schedulers          []string
	interleavedFraction float64
	timeout             time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gang:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	sizes := flag.String("sizes", "8,32,128", "gang sizes (pods of 8 GPUs each)")
	schedulers := flag.String("schedulers", "tessera,coscheduling,volcano", "schedulers to measure, in order")
	flag.StringVar(&o.repo, "repo", ".", "root of the Tessera checkout (bin/, manifests/, hack/peers/)")
	flag.StringVar(&o.out, "out", "_output/bench-gang.csv", "CSV file to write")
	flag.IntVar(&o.nodes, "nodes", 500, "simulated DGX H100 nodes (8 GPUs each)")
	flag.IntVar(&o.repeats, "repeats", 3, "runs of each row; the table shows the median")
	flag.Float64Var(&o.interleavedFraction, "interleaved-fraction", 0.6, "each of the three interleaved gangs needs this fraction of the nodes; 0 skips that row")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long one row may take before it counts as stuck")
	klog.InitFlags(nil)
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--sizes: %q is not a positive size", s)
		}
		o.sizes = append(o.sizes, n)
	}
	o.schedulers = strings.Split(*schedulers, ",")
	for _, s := range o.schedulers {
		if _, ok := schedulerSpecs[s]; !ok {
			return fmt.Errorf("--schedulers: unknown scheduler %q (tessera, coscheduling, volcano)", s)
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stack, err := benchkit.Start(ctx, o.repo, "bench-gang")
	if err != nil {
		return err
	}
	defer func() { _ = stack.Stop() }()
	b := &bench{o: o, Stack: stack}
	stack.KeepTopologiesFresh(ctx, 4*time.Minute)
	if err := b.CreateDGXNodes(ctx, b.o.nodes, 20); err != nil {
		return err
	}

	var results []result
	for _, name := range o.schedulers {
		rs, err := b.measureScheduler(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: %w (logs in %s)", name, err, stack.WorkDir)
		}
		results = append(results, rs...)
	}
	printTable(os.Stdout, o, results)
	if err := writeCSV(o.out, results); err != nil {
		return err
	}
	benchkit.Progress("wrote %s", o.out)
	return nil
}

// schedulerSpec is how to start one scheduler under test.
type schedulerSpec struct {
	binary, config, schedulerName string
	args                          []string
	// volcano: config is a Volcano scheduler conf, not a
	// KubeSchedulerConfiguration, and gangs are Volcano PodGroups.
	volcano bool
}

var schedulerSpecs = map[string]schedulerSpec{
	// As deployed (manifests/scheduler/deployment.yaml): without the
	// pre-bind nominatedNodeName write for every member waiting at Permit.
	"tessera": {"bin/tessera-scheduler", "manifests/scheduler/config.yaml", "tessera-scheduler",
		[]string{"--feature-gates=NominatedNodeNameForExpectation=false"}, false},
	"coscheduling": {"bin/coscheduling-scheduler", "hack/peers/coscheduling/config.yaml", "coscheduling-scheduler", nil, false},
	"volcano":      {"bin/volcano-scheduler", "hack/peers/volcano/scheduler.conf", "volcano-scheduler", nil, true},
}

// result is one measured row.
type result struct {
	scheduler, workload string
	pods                int
	// runs are the seconds from the last pod created to the last bound,
	// and pods/s from the first created to the last bound, per repeat.
	latency, throughput []float64
	// completed and stuck report the interleaved row.
	completed, stuck int
}

func writeCSV(path string, results []result) error {
	rows := [][]string{{"scheduler", "workload", "pods", "repeat", "seconds_last_created_to_all_bound", "pods_per_second", "gangs_completed", "gangs_stuck"}}
	for _, r := range results {
		for i := range r.latency {
			rows = append(rows, []string{r.scheduler, r.workload, strconv.Itoa(r.pods), strconv.Itoa(i + 1),
				strconv.FormatFloat(r.latency[i], 'f', 3, 64), strconv.FormatFloat(r.throughput[i], 'f', 1, 64),
				strconv.Itoa(r.completed), strconv.Itoa(r.stuck)})
		}
	}
	return benchkit.WriteCSV(path, rows)
}
