package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"tessera.dev/tessera/hack/bench/benchkit"
)

// published are the paper's figures by trace, then policy: allocation %
// at 130 % arrived demand, mean of seeds 42-51.
type published map[string]map[string]float64

// readPublished reads the table of the trace README whose header starts
// "| trace |".
func readPublished(path string) (published, error) {
	out := published{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("published figures: %w", err)
	}
	defer f.Close()
	var header []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := tableCells(sc.Text())
		switch {
		case len(cells) > 1 && cells[0] == "trace":
			header = cells
		case header != nil && len(cells) == len(header) && !strings.HasPrefix(cells[0], "-"):
			row := map[string]float64{}
			for i, c := range cells[1:] {
				v, err := strconv.ParseFloat(c, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %q in row %s is not a number", path, c, cells[0])
				}
				row[header[i+1]] = v
			}
			out[cells[0]] = row
		case header != nil && len(cells) == 0 && len(out) > 0:
			return out, sc.Err()
		}
	}
	return out, sc.Err()
}

func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") {
		return nil
	}
	var cells []string
	for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
		cells = append(cells, strings.TrimSpace(c))
	}
	return cells
}

// stats summarizes one policy on one trace over seeds.
type stats struct {
	n                            int
	mean100, meanEnd, sd, lo, hi float64
	// partial and idle are the mean unallocated share at the end, in
	// partly used and in idle GPUs.
	partial, idle float64
	seconds       float64
}

func summarize(results []result, trace, policy string) stats {
	var s stats
	s.lo, s.hi = math.Inf(1), math.Inf(-1)
	var ends []float64
	for _, r := range results {
		if r.trace != trace || r.policy != policy {
			continue
		}
		s.n++
		s.mean100 += r.alloc100
		s.meanEnd += r.allocEnd
		s.partial += r.partialEnd
		s.idle += r.idleEnd
		s.seconds += r.seconds
		s.lo, s.hi = min(s.lo, r.allocEnd), max(s.hi, r.allocEnd)
		ends = append(ends, r.allocEnd)
	}
	if s.n == 0 {
		return s
	}
	s.mean100 /= float64(s.n)
	s.meanEnd /= float64(s.n)
	s.partial /= float64(s.n)
	s.idle /= float64(s.n)
	s.seconds /= float64(s.n)
	for _, e := range ends {
		s.sd += (e - s.meanEnd) * (e - s.meanEnd)
	}
	s.sd = math.Sqrt(s.sd / float64(s.n))
	return s
}

func printTables(w io.Writer, traces []*trace, policies []string, results []result, pub published, ratio float64) {
	for _, t := range traces {
		fmt.Fprintf(w, "\nTrace %s: GPU allocation, %% of cluster GPU capacity (mean over seeds)\n", t.name)
		fmt.Fprintf(w, "%-11s %12s %22s %19s %10s %12s %9s %9s\n", "policy", "at 100 %", fmt.Sprintf("at %.0f %% (sd)", ratio*100), "min–max", "published",
			"left: partly", "idle", "s/run")
		by := map[string]stats{}
		for _, p := range policies {
			s := summarize(results, t.name, p)
			by[p] = s
			pubCell := "—"
			if v, ok := pub[t.name][p]; ok && ratio == 1.3 {
				pubCell = fmt.Sprintf("%.2f", v)
			}
			fmt.Fprintf(w, "%-11s %12.2f %15.2f (%.2f) %9.2f–%.2f %10s %12.2f %9.2f %9.1f\n", p, s.mean100, s.meanEnd, s.sd, s.lo, s.hi, pubCell, s.partial, s.idle, s.seconds)
		}
		tessera, okT := by[policyTessera]
		if !okT || tessera.n == 0 {
			continue
		}
		if fgd, ok := pub[t.name]["FGD"]; ok && ratio == 1.3 {
			fmt.Fprintf(w, "Tessera vs published FGD: %+.2f points\n", tessera.meanEnd-fgd)
		}
		if bf, ok := by["BestFit"]; ok && bf.n > 0 {
			fmt.Fprintf(w, "Tessera vs BestFit (this run): %+.2f points\n", tessera.meanEnd-bf.meanEnd)
		}
		if fgd, ok := by["FGD"]; ok && fgd.n > 0 {
			fmt.Fprintf(w, "Tessera vs FGD (this run): %+.2f points\n", tessera.meanEnd-fgd.meanEnd)
		}
	}
}

func writeCSV(path string, results []result) error {
	rows := [][]string{{"trace", "policy", "seed", "pods", "placed", "alloc_at_100_pct", "alloc_at_end_pct", "free_partly_used_pct", "free_idle_pct", "seconds"}}
	for _, r := range results {
		rows = append(rows, []string{r.trace, r.policy, strconv.FormatUint(r.seed, 10), strconv.Itoa(r.pods), strconv.Itoa(r.placed),
			strconv.FormatFloat(r.alloc100, 'f', 3, 64), strconv.FormatFloat(r.allocEnd, 'f', 3, 64),
			strconv.FormatFloat(r.partialEnd, 'f', 3, 64), strconv.FormatFloat(r.idleEnd, 'f', 3, 64), strconv.FormatFloat(r.seconds, 'f', 2, 64)})
	}
	if err := benchkit.WriteCSV(path, rows); err != nil {
		return err
	}
	benchkit.Progress("wrote %s", path)
	return nil
}
