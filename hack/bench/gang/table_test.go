package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTallyCountsCompleteAndPartlyPresentGangs(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		counts                []gangCount
		wantComplete, wantPar int
	}{
		{name: "none"},
		{name: "all complete", counts: []gangCount{{8, 8}, {4, 4}}, wantComplete: 2},
		{name: "untouched gangs are neither", counts: []gangCount{{0, 8}, {8, 8}}, wantComplete: 1},
		{name: "some but not all members", counts: []gangCount{{1, 8}, {7, 8}, {8, 8}, {0, 8}}, wantComplete: 1, wantPar: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			complete, partial := tally(tc.counts)
			if diff := cmp.Diff([2]int{tc.wantComplete, tc.wantPar}, [2]int{complete, partial}); diff != "" {
				t.Errorf("tally (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSpreadIsMedianThenMinMax(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    []float64
		want string
	}{
		{name: "no runs", want: "-"},
		{name: "one run", v: []float64{0.25}, want: "0.250s"},
		{name: "three runs", v: []float64{0.3, 0.1, 0.2}, want: "0.200s (0.100–0.300)"},
		{name: "even count takes the upper middle", v: []float64{4, 1, 3, 2}, want: "3.000s (1.000–4.000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, spread(tc.v, formatSeconds, "s")); diff != "" {
				t.Errorf("spread (-want +got):\n%s", diff)
			}
		})
	}
}

func bound(secs ...float64) []runStats {
	var runs []runStats
	for _, s := range secs {
		runs = append(runs, runStats{seconds: s, podsPerSecond: 100 / s, allBound: true})
	}
	return runs
}

func TestRatioIsTesseraOverPeerOfMedians(t *testing.T) {
	tessera := result{scheduler: "tessera", runs: bound(0.1, 0.2, 0.3)}
	peer := result{scheduler: "peer", runs: bound(0.4, 0.8, 1.2)}
	timedOut := result{scheduler: "peer", runs: append(bound(0.4), runStats{seconds: 180})}
	for _, tc := range []struct {
		name       string
		num, den   result
		of         func(result) []float64
		wantFormat string
	}{
		{name: "time: Tessera 4 times sooner", num: tessera, den: peer, of: seconds, wantFormat: "0.25"},
		{name: "pods/s: Tessera 4 times the rate", num: tessera, den: peer, of: podsPerSecond, wantFormat: "4.00"},
		{name: "a peer run that timed out has no ratio", num: tessera, den: timedOut, of: seconds, wantFormat: "-"},
		{name: "an unsupported row has no ratio", num: tessera, den: result{unsupported: "no"}, of: seconds, wantFormat: "-"},
		{name: "zero denominator", num: tessera, den: result{runs: []runStats{{allBound: true}}}, of: seconds, wantFormat: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.wantFormat, ratio(tc.num, tc.den, tc.of)); diff != "" {
				t.Errorf("ratio (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTableRowFormatsEveryKindOfRow(t *testing.T) {
	ref := &result{scheduler: "tessera", workload: "w", runs: bound(0.1, 0.2, 0.3)}
	for _, tc := range []struct {
		name string
		r    result
		ref  *result
		want []string
	}{
		{
			name: "Tessera's own row has no ratio",
			r:    *ref,
			want: []string{"tessera", "w", "0", "3", "0.200s (0.100–0.300)", "500 (333–1000)", "-", "-", "-", "-", "-", "-"},
		},
		{
			name: "a peer's row of gangs",
			r: result{scheduler: "peer", workload: "w", pods: 16, runs: []runStats{
				{seconds: 0.4, podsPerSecond: 50, allBound: true, gangs: 2, completed: 2},
				{seconds: 0.8, podsPerSecond: 40, allBound: true, gangs: 2, completed: 2},
			}},
			ref:  ref,
			want: []string{"peer", "w", "16", "2", "0.800s (0.400–0.800)", "50 (40–50)", "0.25", "10.00", "2 of 2", "0", "-", "-"},
		},
		{
			name: "a preemption row whose last run timed out",
			r: result{scheduler: "peer", workload: "w", pods: 64, evictions: true, runs: []runStats{
				{seconds: 2, podsPerSecond: 30, allBound: true, gangs: 2, completed: 2, evicted: 64},
				{seconds: 180, podsPerSecond: 0.1, gangs: 2, completed: 1, partial: 1, evicted: 70, victimsPartial: 3},
			}},
			ref:  ref,
			want: []string{"peer", "w", "64", "2", "not all bound in 180s", "30 (0–30)", "-", "-", "1–2 of 2", "0–1", "64–70", "0–3"},
		},
		{
			name: "a row the scheduler cannot do",
			r:    result{scheduler: "peer", workload: "w", pods: 64, evictions: true, unsupported: "the low-priority gangs did not fill the nodes"},
			ref:  ref,
			want: []string{"peer", "w", "64", "0", "cannot: the low-priority gangs did not fill the nodes", "-", "-", "-", "-", "-", "-", "-"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, tableRow(tc.r, tc.ref)); diff != "" {
				t.Errorf("tableRow (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrintTableComparesEachPeerWithTesseraOnTheSameWorkload(t *testing.T) {
	var out bytes.Buffer
	printTable(&out, options{nodes: 10, repeats: 1}, []result{
		{scheduler: "tessera", workload: "gang of 8", pods: 8, runs: bound(0.5)},
		{scheduler: "tessera", workload: "8 independent pods", pods: 8, runs: bound(0.1)},
		{scheduler: "peer", workload: "gang of 8", pods: 8, runs: bound(1)},
	})
	var peerRow string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "peer") {
			peerRow = strings.Join(strings.Fields(line), " ")
		}
	}
	if want := "peer gang of 8 8 1 1.000s 100 0.50 2.00 - - - -"; peerRow != want {
		t.Errorf("peer row = %q, want %q in\n%s", peerRow, want, out.String())
	}
}
