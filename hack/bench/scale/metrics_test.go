package main

import (
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/ptr"
)

func series(labels map[string]string, buckets map[float64]uint64, count uint64) *dto.Metric {
	m := &dto.Metric{Histogram: &dto.Histogram{SampleCount: ptr.To(count)}}
	for name, value := range labels {
		m.Label = append(m.Label, &dto.LabelPair{Name: ptr.To(name), Value: ptr.To(value)})
	}
	for _, b := range []float64{0.01, 0.1, 1, math.Inf(1)} {
		m.Histogram.Bucket = append(m.Histogram.Bucket, &dto.Bucket{UpperBound: ptr.To(b), CumulativeCount: ptr.To(buckets[b])})
	}
	return m
}

func TestHistogramQuantilesSumsMatchingSeriesAndInterpolates(t *testing.T) {
	family := &dto.MetricFamily{Metric: []*dto.Metric{
		series(map[string]string{"profile": "p", "result": "scheduled"}, map[float64]uint64{0.01: 40, 0.1: 90, 1: 100, math.Inf(1): 100}, 100),
		series(map[string]string{"profile": "p", "result": "scheduled"}, map[float64]uint64{0.01: 60, 0.1: 100, 1: 100, math.Inf(1): 100}, 100),
		series(map[string]string{"profile": "p", "result": "error"}, map[float64]uint64{0.01: 0, 0.1: 0, 1: 0, math.Inf(1): 1000}, 1000),
	}}
	q := histogramQuantiles(family, map[string]string{"profile": "p", "result": "scheduled"})
	// 200 observations: 100 under 10 ms, 190 under 100 ms, 200 under 1 s.
	if q.count != 200 || q.p50 != 0.01 {
		t.Errorf("count %d, p50 %v; want 200, 0.01 (the 100th of 200 is the last under 10 ms)", q.count, q.p50)
	}
	if want := 0.1 + 0.9*(198.0-190)/10; math.Abs(q.p99-want) > 1e-9 {
		t.Errorf("p99 %v, want %v, interpolated inside (0.1, 1]", q.p99, want)
	}
	if q := histogramQuantiles(family, map[string]string{"profile": "other"}); q.count != 0 {
		t.Errorf("a profile with no series: %+v", q)
	}
}

func TestWorkloadIsSeededAndKeepsGangsWhole(t *testing.T) {
	a, b := newWorkload(1000, 7), newWorkload(1000, 7)
	if len(a.pods) != 1000 || a.describe() != b.describe() {
		t.Fatalf("two draws with one seed differ: %s / %s", a.describe(), b.describe())
	}
	members := map[string]int{}
	for _, p := range a.pods {
		if p.gang != "" {
			members[p.gang]++
		}
	}
	for gang, n := range members {
		if n != a.gangs[gang] || n != gangSize {
			t.Errorf("gang %s has %d pods, PodGroup says %d", gang, n, a.gangs[gang])
		}
	}
	// About 5 % of the pods are gang members, by the mix.
	if n := len(members) * gangSize; n < 20 || n > 90 {
		t.Errorf("%d of 1000 pods in gangs, want about 50", n)
	}
}

func TestStatCPUTime(t *testing.T) {
	// A command name with a space and a parenthesis; utime 1234, stime 66.
	stat := "4242 (tessera sched) x) S 1 4242 4242 0 -1 4194560 9213 0 0 0 1234 66 0 0 20 0 12 0 99 0 0"
	got, err := statCPUTime(stat)
	if err != nil || got != 13*time.Second {
		t.Errorf("statCPUTime = %v, %v; want 13s", got, err)
	}
	if _, err := statCPUTime("4242 tessera S 1"); err == nil {
		t.Error("statCPUTime of a line without a command name: no error")
	}
}

func TestOverallRatio(t *testing.T) {
	results := []result{
		{round: 1, profile: tesseraProfile, podsPerSecond: 81}, {round: 1, profile: defaultProfile, podsPerSecond: 114},
		{round: 2, profile: defaultProfile, podsPerSecond: 125}, {round: 2, profile: tesseraProfile, podsPerSecond: 96},
		{round: 3, profile: tesseraProfile, podsPerSecond: 500}, // no default burst in round 3: left out
	}
	got, rounds := overallRatio(results)
	if want := 177.0 / 239; rounds != 2 || math.Abs(got-want) > 1e-9 {
		t.Errorf("overallRatio = %v over %d rounds; want %v over 2", got, rounds, want)
	}
	if _, rounds := overallRatio(results[:1]); rounds != 0 {
		t.Errorf("overallRatio without a default burst: %d rounds", rounds)
	}
}
