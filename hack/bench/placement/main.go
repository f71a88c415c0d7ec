// Command placement benchmarks NVLink-topology placement on a simulated
// mixed GPU cluster (kwok nodes on a real etcd and kube-apiserver, each
// with the GPUNodeTopology its node agent would publish). It replays a job
// mix drawn from the Microsoft ITP trace's GPU counts through the
// tessera-scheduler binary, once with Tessera's profile and once with the
// stock default profile, and reports side by side: how often multi-GPU pods got a
// single NVLink island while one was free, how often multi-node gangs got
// the fewest racks possible, and the mean estimated all-reduce slowdown
// against each job's ideal placement under two cost models: the link
// table the plugin ranks by (model.go), and measured nccl-tests bus
// bandwidths per kind of path (ncclmodel.go). It then
// grows the cluster to 1,000 nodes and measures scheduling pods/s of both
// profiles. It prints a table and writes CSV.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"tessera.dev/tessera/hack/bench/benchkit"
)

// defaultProfile is stock kube-scheduler's default profile, run by the
// same binary as Tessera's.
const defaultProfile = "default-scheduler"

const tesseraProfile = "tessera-scheduler"

type options struct {
	repo, trace, out    string
	jobs                int
	seed                uint64
	utilization         float64
	dgxRacks, perRack   int
	throughputNodes     int
	throughputPods      int
	repeats             int
	jobTimeout, timeout time.Duration
	stall               time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-placement:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.repo, "repo", ".", "root of the Tessera checkout (bin/, manifests/)")
	flag.StringVar(&o.trace, "trace", "../shared/traces/microsoft-itp-elasticflow-2021/cluster04.csv", "ITP trace CSV whose num_gpu column gives the job mix")
	flag.StringVar(&o.out, "out", "_output/bench-placement.csv", "CSV file to write")
	flag.IntVar(&o.jobs, "jobs", 400, "jobs to replay per profile")
	flag.Uint64Var(&o.seed, "seed", 42, "seed of the job draw and of departures")
	flag.Float64Var(&o.utilization, "utilization", 0.85, "GPU utilization the replay keeps the cluster under")
	flag.IntVar(&o.dgxRacks, "dgx-racks", 4, "racks of DGX H100 in the placement cluster (plus one of H100 NVL pairs, one of L40S)")
	flag.IntVar(&o.perRack, "nodes-per-rack", 8, "nodes per rack in the placement cluster")
	flag.IntVar(&o.throughputNodes, "throughput-nodes", 1000, "nodes in the cluster for the pods/s rows (DGX H100 added to the placement cluster); 0 skips them")
	flag.IntVar(&o.throughputPods, "throughput-pods", 1500, "pods per pods/s run")
	flag.IntVar(&o.repeats, "repeats", 3, "pods/s runs per profile; the table shows the median")
	flag.DurationVar(&o.jobTimeout, "job-timeout", 30*time.Second, "how long one job may take to bind before it counts as unplaced")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long one pods/s run may take")
	flag.DurationVar(&o.stall, "stall", 10*time.Second, "a pods/s run ends when no pod has been bound for this long")
	klog.InitFlags(nil)
	flag.Parse()

	mix, err := readMix(o.trace, 64)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stack, err := benchkit.Start(ctx, o.repo, "bench-placement")
	if err != nil {
		return err
	}
	defer func() { _ = stack.Stop() }()
	client, cr, workDir := stack.Client, stack.CR, stack.WorkDir
	b := &bench{o: o, Stack: stack, byName: map[string]*node{}}
	// The refresher stops before the stack does (deferred calls run last
	// first), so that it does not write to a stopped apiserver.
	fresh, stopFresh := context.WithCancel(ctx)
	defer stopFresh()
	stack.KeepTopologiesFresh(fresh, 4*time.Minute)

	racks := mixedCluster(o.dgxRacks, o.perRack)
	b.shapes, err = shapeTopologies([]string{"dgx-h100", "h100-nvl-pairs", "l40s-pcie"})
	if err != nil {
		return err
	}
	benchkit.Progress("creating the placement cluster: %d racks of %d nodes", len(racks), o.perRack)
	if b.nodes, err = createNodes(ctx, client, cr, racks, b.shapes); err != nil {
		return err
	}
	for _, n := range b.nodes {
		b.byName[n.name] = n
	}

	rng := newRand(o.seed)
	sizes := make([]int, o.jobs)
	b.ideal, b.idealNCCL = map[int]float64{}, map[int]float64{}
	for i := range sizes {
		sizes[i] = mix.draw(rng)
		b.ideal[sizes[i]] = idealBusBandwidth(sizes[i], b.shapes)
		b.idealNCCL[sizes[i]] = idealNCCLBusBandwidth(sizes[i], b.shapes)
	}
	var qualities []quality
	for _, profile := range []string{tesseraProfile, defaultProfile} {
		err := b.withScheduler(ctx, profile, func() error {
			benchkit.Progress("replaying %d jobs through %s", len(sizes), profile)
			q, err := b.replay(ctx, profile, sizes)
			qualities = append(qualities, q)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w (logs in %s)", profile, err, workDir)
		}
	}

	var speeds []speed
	if o.throughputNodes > len(b.nodes) {
		more := o.throughputNodes - len(b.nodes)
		benchkit.Progress("growing the cluster to %d nodes (%d DGX H100 more)", o.throughputNodes, more)
		extra, err := createNodes(ctx, client, cr, []rackLayout{{"scale", "dgx-h100", more}}, b.shapes)
		if err != nil {
			return err
		}
		b.nodes = append(b.nodes, extra...)
		for _, profile := range []string{tesseraProfile, defaultProfile} {
			err := b.withScheduler(ctx, profile, func() error {
				s, err := b.throughput(ctx, profile, mix)
				speeds = append(speeds, s)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s pods/s: %w (logs in %s)", profile, err, workDir)
			}
		}
	}
	if err := stack.Healthy(); err != nil {
		return err
	}
	printTable(os.Stdout, o, len(b.nodes), qualities, speeds)
	if err := writeCSV(o.out, qualities, speeds); err != nil {
		return err
	}
	benchkit.Progress("wrote %s", o.out)
	return nil
}

// withScheduler runs fn while bin/tessera-scheduler runs the profile: the
// shipped config for Tessera's, or a config of stock kube-scheduler's
// default profile alone (a scheduler's profiles must share one queue sort,
// and the default profile's is PrioritySort, Tessera's is Gang).
func (b *bench) withScheduler(ctx context.Context, profile string, fn func() error) error {
	config := filepath.Join(b.o.repo, "manifests", "scheduler", "config.yaml")
	if profile == defaultProfile {
		config = filepath.Join(b.WorkDir, "default-profile.yaml")
		doc := "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n" +
			"clientConnection: {qps: 200, burst: 400}\nprofiles:\n- schedulerName: " + defaultProfile + "\n"
		if err := os.WriteFile(config, []byte(doc), 0o644); err != nil {
			return err
		}
	}
	name := "scheduler-" + profile
	benchkit.Progress("starting bin/tessera-scheduler for profile %s", profile)
	if err := b.StartSchedulerProcess(ctx, name, filepath.Join(b.o.repo, "bin", "tessera-scheduler"), config,
		"--feature-gates=NominatedNodeNameForExpectation=false"); err != nil {
		return err
	}
	defer func() { _ = b.StopProcess(name) }()
	return fn()
}
