package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"tessera.dev/tessera/hack/bench/benchkit"
)

func printTable(out io.Writer, o options, nodes int, qualities []quality, speeds []speed) {
	fmt.Fprintf(out, "\nPlacement quality: %d jobs per profile drawn from %s (seed %d), cluster kept under %.0f %% GPU use\n",
		o.jobs, filepath.Base(o.trace), o.seed, 100*o.utilization)
	fmt.Fprintf(out, "Cluster: %d racks of %d DGX H100, 1 rack of %d H100 NVL (bridged pairs), 1 rack of %d L40S (PCIe)\n\n",
		o.dgxRacks, o.perRack, o.perRack, o.perRack)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "profile\tjobs\tunplaced\tpods on one NVLink island when one was free\tgangs on fewest racks\tall-reduce slowdown, link table: mean\tmedian\tnccl-tests figures: mean\tmedian\tlink table vs best free at arrival: mean\t")
	for _, q := range qualities {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.1f %% (%d/%d)\t%.1f %% (%d/%d)\t%.2f× (%d jobs)\t%.2f×\t%.2f×\t%.2f×\t%.2f×\t\n", q.profile, q.jobs, q.unplaced,
			q.islandPercent(), q.islandHits, q.islandChances, q.rackPercent(), q.gangsMinRacks, q.gangs, q.meanSlowdown(), len(q.slowdowns), benchkit.Median(q.slowdowns),
			q.meanNCCLSlowdown(), benchkit.Median(q.ncclSlowdowns), mean(q.freeSlowdowns))
	}
	_ = w.Flush()
	fmt.Fprintln(out, "\nLink table: the bandwidths the NVLinkTopology plugin ranks GPU sets by (hack/bench/placement/model.go).")
	fmt.Fprintln(out, "nccl-tests figures: measured all_reduce_perf bus bandwidths per kind of path, cited in hack/bench/placement/ncclmodel.go.")
	fmt.Fprintln(out, "Vs best free at arrival: against the best placement the free GPUs offered when the job arrived, not the empty cluster's.")
	for _, q := range qualities {
		if len(q.slow) > 0 {
			fmt.Fprintf(out, "\n%s: the %d jobs slowed 2× or more\n", q.profile, len(q.slow))
			for _, s := range q.slow[:min(len(q.slow), 10)] {
				fmt.Fprintln(out, "  "+s)
			}
		}
	}
	if len(speeds) == 0 {
		return
	}
	fmt.Fprintf(out, "\nScheduling throughput: %d pods of 1-8 GPUs on %d nodes, median of %d runs\n\n", o.throughputPods, nodes, o.repeats)
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "profile\tpods/s\tvs default\tleft pending\t")
	base := 0.0
	for _, s := range speeds {
		if s.profile == defaultProfile {
			base = benchkit.Median(s.podsPerSecond)
		}
	}
	for _, s := range speeds {
		ratio := "-"
		if base > 0 {
			ratio = fmt.Sprintf("%.2f×", benchkit.Median(s.podsPerSecond)/base)
		}
		fmt.Fprintf(w, "%s\t%.0f\t%s\t%d\t\n", s.profile, benchkit.Median(s.podsPerSecond), ratio, s.pending)
	}
	_ = w.Flush()
}

func writeCSV(path string, qualities []quality, speeds []speed) error {
	rows := [][]string{{"profile", "metric", "value", "count", "of"}}
	for _, q := range qualities {
		rows = append(rows,
			[]string{q.profile, "single_island_percent", ff(q.islandPercent()), strconv.Itoa(q.islandHits), strconv.Itoa(q.islandChances)},
			[]string{q.profile, "gangs_fewest_racks_percent", ff(q.rackPercent()), strconv.Itoa(q.gangsMinRacks), strconv.Itoa(q.gangs)},
			[]string{q.profile, "mean_allreduce_slowdown", ff(q.meanSlowdown()), strconv.Itoa(len(q.slowdowns)), strconv.Itoa(q.jobs)},
			[]string{q.profile, "median_allreduce_slowdown", ff(benchkit.Median(q.slowdowns)), strconv.Itoa(len(q.slowdowns)), strconv.Itoa(q.jobs)},
			[]string{q.profile, "mean_allreduce_slowdown_nccl_tests", ff(q.meanNCCLSlowdown()), strconv.Itoa(len(q.ncclSlowdowns)), strconv.Itoa(q.jobs)},
			[]string{q.profile, "median_allreduce_slowdown_nccl_tests", ff(benchkit.Median(q.ncclSlowdowns)), strconv.Itoa(len(q.ncclSlowdowns)), strconv.Itoa(q.jobs)},
			[]string{q.profile, "mean_allreduce_slowdown_vs_best_free", ff(mean(q.freeSlowdowns)), strconv.Itoa(len(q.freeSlowdowns)), strconv.Itoa(q.jobs)},
			[]string{q.profile, "unplaced_jobs", strconv.Itoa(q.unplaced), strconv.Itoa(q.unplaced), strconv.Itoa(q.jobs)})
	}
	for _, s := range speeds {
		for i, v := range s.podsPerSecond {
			rows = append(rows, []string{s.profile, "pods_per_second", ff(v), strconv.Itoa(i + 1), strconv.Itoa(s.pods)})
		}
	}
	return benchkit.WriteCSV(path, rows)
}

func ff(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
