package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	"tessera.dev/tessera/hack/bench/benchkit"
)

// gangCount is how many of a gang's size members are bound (or running).
type gangCount struct{ present, size int }

// tally counts the gangs with every member present and those with some
// but not all: partly bound, or partly running.
func tally(counts []gangCount) (complete, partial int) {
	for _, c := range counts {
		switch {
		case c.present >= c.size:
			complete++
		case c.present > 0:
			partial++
		}
	}
	return complete, partial
}

// allBound reports whether every run of r bound every pod.
func allBound(r result) bool {
	return r.unsupported == "" && len(r.runs) > 0 && !slices.ContainsFunc(r.runs, func(s runStats) bool { return !s.allBound })
}

func seconds(r result) []float64 {
	out := make([]float64, len(r.runs))
	for i, s := range r.runs {
		out[i] = s.seconds
	}
	return out
}

func podsPerSecond(r result) []float64 {
	out := make([]float64, len(r.runs))
	for i, s := range r.runs {
		out[i] = s.podsPerSecond
	}
	return out
}

// spread is the median of v with its unit, then (min–max) when v holds
// more than one value, each formatted by f.
func spread(v []float64, f func(float64) string, unit string) string {
	if len(v) == 0 {
		return "-"
	}
	m := f(benchkit.Median(v)) + unit
	if len(v) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, f(slices.Min(v)), f(slices.Max(v)))
}

func formatSeconds(v float64) string       { return strconv.FormatFloat(v, 'f', 3, 64) }
func formatPodsPerSecond(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// timeCell is the row's time from the last pod created to all bound; for
// a row whose last run timed out, how long that run waited.
func timeCell(r result) string {
	switch {
	case r.unsupported != "":
		return "cannot: " + r.unsupported
	case len(r.runs) == 0:
		return "-"
	case !allBound(r):
		return fmt.Sprintf("not all bound in %.0fs", r.runs[len(r.runs)-1].seconds)
	}
	return spread(seconds(r), formatSeconds, "s")
}

func podsPerSecondCell(r result) string {
	if r.unsupported != "" {
		return "-"
	}
	return spread(podsPerSecond(r), formatPodsPerSecond, "")
}

// ratio is num ÷ den, "-" when either row did not bind every pod.
func ratio(num, den result, of func(result) []float64) string {
	if !allBound(num) || !allBound(den) {
		return "-"
	}
	d := benchkit.Median(of(den))
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(benchkit.Median(of(num))/d, 'f', 2, 64)
}

// countRange is the value of f over the runs, or min–max where it differs.
func countRange(r result, f func(runStats) int) string {
	if len(r.runs) == 0 {
		return "-"
	}
	v := make([]int, len(r.runs))
	for i, s := range r.runs {
		v[i] = f(s)
	}
	lo, hi := slices.Min(v), slices.Max(v)
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

// tableRow is the cells of one result, ref being Tessera's result of the
// same workload (nil for Tessera's own rows, or none measured).
func tableRow(r result, ref *result) []string {
	timeRatio, rateRatio := "-", "-"
	if ref != nil {
		timeRatio, rateRatio = ratio(*ref, r, seconds), ratio(*ref, r, podsPerSecond)
	}
	gangs, partial, evicted, broken := "-", "-", "-", "-"
	if len(r.runs) > 0 && r.runs[0].gangs > 0 {
		gangs = countRange(r, func(s runStats) int { return s.completed }) + " of " + strconv.Itoa(r.runs[0].gangs)
		partial = countRange(r, func(s runStats) int { return s.partial })
	}
	if r.evictions && len(r.runs) > 0 {
		evicted = countRange(r, func(s runStats) int { return s.evicted })
		broken = countRange(r, func(s runStats) int { return s.victimsPartial })
	}
	return []string{r.scheduler, r.workload, strconv.Itoa(r.pods), strconv.Itoa(len(r.runs)), timeCell(r), podsPerSecondCell(r),
		timeRatio, rateRatio, gangs, partial, evicted, broken}
}

func printTable(out io.Writer, o options, results []result) {
	fmt.Fprintf(out, "\nGang scheduling on %d simulated DGX H100 nodes (%d GPUs), pods of 8 GPUs unless the row says, median (min–max) of up to %d runs\n\n", o.nodes, 8*o.nodes, o.repeats)
	tessera := map[string]*result{}
	for i, r := range results {
		if r.scheduler == "tessera" {
			tessera[r.workload] = &results[i]
		}
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCHEDULER\tWORKLOAD\tPODS\tRUNS\tLAST CREATED -> ALL BOUND\tPODS/S\tTIME T÷P\tPODS/S T÷P\tGANGS COMPLETED\tPARTLY BOUND\tLOW EVICTED\tLOW GANGS PARTLY RUNNING")
	for _, r := range results {
		var ref *result
		if r.scheduler != "tessera" {
			ref = tessera[r.workload]
		}
		row := tableRow(r, ref)
		for i, c := range row {
			if i > 0 {
				fmt.Fprint(w, "\t")
			}
			fmt.Fprint(w, c)
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	fmt.Fprint(out, `
T÷P: Tessera's median ÷ this peer's, on the same workload: TIME T÷P below 1 means Tessera binds all
sooner (lower is better for Tessera), PODS/S T÷P above 1 means Tessera binds more pods a second;
"-" where either scheduler left pods unbound. RUNS: a run that times out ends its row.
PARTLY BOUND: gangs with some but not all members bound at the end (an all-or-nothing failure).
LOW EVICTED, LOW GANGS PARTLY RUNNING: in the preemption row, the low-priority pods evicted and the
low-priority gangs left with only part of their members running.
`)
}
