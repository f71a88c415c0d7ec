package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"tessera.dev/tessera/hack/bench/benchkit"
)

// printTable prints the profiles side by side, each burst's pods/s against
// the default profile's of the same round, and Tessera's over all rounds.
func printTable(out io.Writer, o options, wl *workload, results []result) {
	fmt.Fprintf(out, "\nScale, %s: %d DGX H100 nodes (%d GPUs), one burst of %d pods (%s), seed %d\n\n",
		time.Now().Format(time.DateOnly), o.nodes, 8*o.nodes, len(wl.pods), wl.describe(), o.seed)
	base := map[int]float64{} // the default profile's pods/s by round
	for _, r := range results {
		if r.profile == defaultProfile {
			base[r.round] = r.podsPerSecond
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "round\tprofile\tbound\tall bound after\tpods/s\tvs default\tattempt p50\tattempt p99\tbound after p50\tbound after p99\tpeak RSS\tCPU\tCPU per pod\tbatched\t")
	for _, r := range results {
		ratio := "-"
		if b := base[r.round]; b > 0 {
			ratio = fmt.Sprintf("%.2f×", r.podsPerSecond/b)
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%.0f s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d MiB\t%.0f s\t%.1f ms\t%d\t\n", r.round, r.profile, r.bound, r.allBound.Seconds(), r.podsPerSecond, ratio,
			ms(r.attempt.p50), ms(r.attempt.p99), seconds(r.boundAfter[0]), seconds(r.boundAfter[1]), r.peakRSS>>20,
			r.cpu.Seconds(), 1000*r.cpu.Seconds()/float64(max(r.bound, 1)), r.batched)
	}
	_ = w.Flush()
	if ratio, rounds := overallRatio(results); rounds > 0 {
		fmt.Fprintf(out, "\nTessera ÷ default pods/s over %d rounds: %.2f× (the ratio of their summed pods/s).\n", rounds, ratio)
	}
	for _, r := range results {
		if r.bound < len(wl.pods) {
			fmt.Fprintf(out, "\n%s bound %d of %d pods in round %d before it stalled: its pods/s counts fewer pods than a profile that bound all.\n", r.profile, r.bound, len(wl.pods), r.round)
		}
	}
	fmt.Fprintln(out, "\nThe pods are created before the scheduler starts. all bound after, bound after p50/p99: from the scheduler's start to the binds the benchmark saw; pods/s: from the first bind to the last.")
	fmt.Fprintln(out, "CPU: the scheduler process's user and system time from its start to the burst's end (informer sync included); batched: pods placed on OpportunisticBatching's node hint.")
	fmt.Fprintln(out, "attempt: the scheduler's scheduler_scheduling_attempt_duration_seconds of attempts that scheduled a pod (until its binding ended, a gang member's wait at Permit included), interpolated inside exponential buckets: as precise as a bucket.")
}

// overallRatio is Tessera's summed pods/s over the default profile's, over
// the rounds both profiles ran in, and how many those are.
func overallRatio(results []result) (float64, int) {
	byRound := map[int]map[string]float64{}
	for _, r := range results {
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]float64{}
		}
		byRound[r.round][r.profile] = r.podsPerSecond
	}
	var tessera, stock float64
	rounds := 0
	for _, m := range byRound {
		t, okT := m[tesseraProfile]
		d, okD := m[defaultProfile]
		if okT && okD {
			tessera, stock, rounds = tessera+t, stock+d, rounds+1
		}
	}
	if stock == 0 {
		return 0, 0
	}
	return tessera / stock, rounds
}

func ms(seconds float64) string { return fmt.Sprintf("%.0f ms", 1000*seconds) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func writeCSV(path string, results []result) error {
	rows := [][]string{{"round", "profile", "bound", "all_bound_seconds", "pods_per_second", "attempt_p50_s", "attempt_p99_s", "bound_after_p50_s", "bound_after_p99_s", "peak_rss_bytes", "cpu_seconds", "batched"}}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range results {
		rows = append(rows, []string{strconv.Itoa(r.round), r.profile, strconv.Itoa(r.bound), f(r.allBound.Seconds()), f(r.podsPerSecond), f(r.attempt.p50), f(r.attempt.p99),
			f(r.boundAfter[0].Seconds()), f(r.boundAfter[1].Seconds()), strconv.FormatInt(r.peakRSS, 10), f(r.cpu.Seconds()), strconv.Itoa(r.batched)})
	}
	return benchkit.WriteCSV(path, rows)
}
