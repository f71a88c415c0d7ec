// Command gang benchmarks gang scheduling on a simulated cluster (kwok nodes
// on a real etcd and kube-apiserver): for gangs of several sizes it measures
// the time from the last member's creation to the whole gang bound, and
// pods/s, side by side with as many independent pods, for Tessera's
// scheduler and for its peers, built by hack/build-peers.sh: coscheduling
// (scheduler-plugins v0.34.7) and Volcano v1.15.1's vc-scheduler (its
// queue, PodGroups and rack HyperNodes in volcano.go), in the same run, on
// the same nodes. It also runs (rows.go) many small gangs arriving
// together, high-priority gangs that fit only by preempting low-priority
// ones, and three interleaved gangs that each need 60 % of the nodes, which
// deadlock a scheduler that lets gangs hold partial reservations. Every row
// runs --repeats times; it prints a table of medians and spreads, with
// Tessera's ratio to each peer (table.go), and writes CSV, one line a
// repeat.
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
	repo, out      string
	nodes, repeats int
	sizes          []int
	schedulers     []string
	// The arriving-together row: togetherGangs gangs of togetherSize
	// pods of togetherGPUs GPUs each.
	togetherGangs, togetherSize, togetherGPUs int
	// The preemption row: low-priority gangs of preemptLowSize fill every
	// node, then preemptHighGangs gangs of preemptHighSize arrive (pods of
	// 8 GPUs).
	preemptLowSize, preemptHighGangs, preemptHighSize int
	interleavedFraction                               float64
	timeout                                           time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gang:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	sizes := flag.String("sizes", "8,32,128,256", "gang sizes (pods of 8 GPUs each)")
	schedulers := flag.String("schedulers", "tessera,coscheduling,volcano", "schedulers to measure, in order")
	flag.StringVar(&o.repo, "repo", ".", "root of the Tessera checkout (bin/, manifests/, hack/peers/)")
	flag.StringVar(&o.out, "out", "_output/bench-gang.csv", "CSV file to write")
	flag.IntVar(&o.nodes, "nodes", 500, "simulated DGX H100 nodes (8 GPUs each)")
	flag.IntVar(&o.repeats, "repeats", 3, "runs of each row; the table shows the median and the spread")
	flag.IntVar(&o.togetherGangs, "together-gangs", 100, "gangs arriving together; 0 skips that row")
	flag.IntVar(&o.togetherSize, "together-size", 8, "pods in each gang arriving together")
	flag.IntVar(&o.togetherGPUs, "together-gpus", 4, "GPUs of each pod of the gangs arriving together (the default 100 gangs of 8 pods of 4 GPUs take 3,200 of 500 nodes' 4,000 GPUs)")
	flag.IntVar(&o.preemptLowSize, "preempt-low-size", 20, "pods (8 GPUs each) in each low-priority gang that fills the nodes in the preemption row")
	flag.IntVar(&o.preemptHighGangs, "preempt-high-gangs", 4, "high-priority gangs that must preempt; 0 skips that row")
	flag.IntVar(&o.preemptHighSize, "preempt-high-size", 32, "pods (8 GPUs each) in each high-priority gang")
	flag.Float64Var(&o.interleavedFraction, "interleaved-fraction", 0.6, "each of the three interleaved gangs needs this fraction of the nodes; 0 skips that row")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long one run of a row may take before it counts as stuck")
	klog.InitFlags(nil)
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("--sizes: %q is not a positive size", s)
		}
		if n > o.nodes {
			return fmt.Errorf("--sizes: a gang of %d pods of 8 GPUs needs more than %d nodes", n, o.nodes)
		}
		o.sizes = append(o.sizes, n)
	}
	o.schedulers = strings.Split(*schedulers, ",")
	for _, s := range o.schedulers {
		if _, ok := schedulerSpecs[s]; !ok {
			return fmt.Errorf("--schedulers: unknown scheduler %q (tessera, coscheduling, volcano)", s)
		}
	}
	if err := o.validateRows(); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stack, err := benchkit.Start(ctx, o.repo, "bench-gang")
	if err != nil {
		return err
	}
	defer func() { _ = stack.Stop() }()
	b := &bench{o: o, Stack: stack}
	// The refresher stops before the stack does (deferred calls run last
	// first), so that it does not write to a stopped apiserver.
	fresh, stopFresh := context.WithCancel(ctx)
	defer stopFresh()
	stack.KeepTopologiesFresh(fresh, 4*time.Minute)
	if err := b.CreateDGXNodes(ctx, b.o.nodes, 20); err != nil {
		return err
	}
	if err := b.createPriorityClasses(ctx); err != nil {
		return err
	}

	began := time.Now()
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
	benchkit.Progress("wrote %s; the rows took %s", o.out, time.Since(began).Round(time.Second))
	return nil
}

// validateRows checks that the arriving-together gangs fit the nodes' GPUs
// and that the preemption row's high-priority gangs fit the nodes (only by
// preempting: the low-priority gangs fill every node).
func (o options) validateRows() error {
	if o.togetherGangs > 0 {
		if o.togetherSize < 1 || o.togetherGPUs < 1 || o.togetherGPUs > 8 {
			return fmt.Errorf("--together-size must be positive and --together-gpus 1 to 8")
		}
		// Pods of g GPUs pack 8/g to a node, whatever the placement.
		if perNode := 8 / o.togetherGPUs; o.togetherGangs*o.togetherSize > perNode*o.nodes {
			return fmt.Errorf("--together-gangs: %d gangs of %d pods of %d GPUs do not fit %d nodes", o.togetherGangs, o.togetherSize, o.togetherGPUs, o.nodes)
		}
	}
	if o.preemptHighGangs > 0 {
		if o.preemptLowSize < 1 || o.preemptHighSize < 1 {
			return fmt.Errorf("--preempt-low-size and --preempt-high-size must be positive")
		}
		if o.preemptHighGangs*o.preemptHighSize > o.nodes {
			return fmt.Errorf("--preempt-high-gangs: %d gangs of %d pods of 8 GPUs need more than %d nodes", o.preemptHighGangs, o.preemptHighSize, o.nodes)
		}
	}
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

// result is one row: the runs of one workload on one scheduler.
type result struct {
	scheduler, workload string
	pods                int
	runs                []runStats
	// evictions: the row counts low-priority pods evicted.
	evictions bool
	// unsupported says why the scheduler could not do the row at all
	// (then runs is empty).
	unsupported string
}

// runStats is one run of a row.
type runStats struct {
	// seconds from the last pod created to the last bound, and pods/s
	// from the first created to the last bound (of the pods bound, when
	// not all were).
	seconds, podsPerSecond float64
	// allBound: every pod measured was bound before the timeout.
	allBound bool
	// gangs measured, those fully bound, and those with some but not
	// all members bound at the end (a failure of all-or-nothing); all 0
	// for independent pods.
	gangs, completed, partial int
	// The preemption row: low-priority pods evicted, and low-priority
	// gangs left with some but not all members running.
	evicted, victimsPartial int
}

func writeCSV(path string, results []result) error {
	rows := [][]string{{"scheduler", "workload", "pods", "repeat", "seconds_last_created_to_all_bound", "pods_per_second", "all_bound",
		"gangs", "gangs_completed", "gangs_partly_bound", "low_priority_pods_evicted", "low_priority_gangs_partly_running", "unsupported"}}
	for _, r := range results {
		if r.unsupported != "" {
			rows = append(rows, []string{r.scheduler, r.workload, strconv.Itoa(r.pods), "", "", "", "", "", "", "", "", "", r.unsupported})
		}
		for i, s := range r.runs {
			rows = append(rows, []string{r.scheduler, r.workload, strconv.Itoa(r.pods), strconv.Itoa(i + 1),
				strconv.FormatFloat(s.seconds, 'f', 3, 64), strconv.FormatFloat(s.podsPerSecond, 'f', 1, 64), strconv.FormatBool(s.allBound),
				strconv.Itoa(s.gangs), strconv.Itoa(s.completed), strconv.Itoa(s.partial),
				strconv.Itoa(s.evicted), strconv.Itoa(s.victimsPartial), ""})
		}
	}
	return benchkit.WriteCSV(path, rows)
}
