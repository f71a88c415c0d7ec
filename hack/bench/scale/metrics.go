package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
)

// loopback reads the scheduler's own endpoints on 127.0.0.1, whose
// certificate it made itself.
var loopback = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback, self-signed

func get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := loopback.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

// waitReady waits until the scheduler is ready (/readyz: its informers
// synced), so that a CPU profile started then covers scheduling.
func waitReady(ctx context.Context, endpoint string) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := get(ctx, endpoint+"/readyz")
		if err != nil {
			return false, nil
		}
		return true, resp.Body.Close()
	})
}

// scrape reads the scheduler's /metrics.
func scrape(ctx context.Context, endpoint string) (map[string]*dto.MetricFamily, error) {
	resp, err := get(ctx, endpoint+"/metrics")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s/metrics: %w", endpoint, err)
	}
	return families, nil
}

// quantiles of a latency histogram, in seconds; count is its observations.
type quantiles struct {
	p50, p99 float64
	count    uint64
}

// histogramQuantiles sums the series of family whose labels include match
// and reads p50 and p99 off the buckets, interpolating linearly inside a
// bucket (as PromQL's histogram_quantile does).
func histogramQuantiles(family *dto.MetricFamily, match map[string]string) quantiles {
	if family == nil {
		return quantiles{}
	}
	cumulative := map[float64]uint64{}
	var count uint64
	for _, m := range family.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		h := m.GetHistogram()
		count += h.GetSampleCount()
		for _, b := range h.GetBucket() {
			cumulative[b.GetUpperBound()] += b.GetCumulativeCount()
		}
	}
	bounds := make([]float64, 0, len(cumulative))
	for b := range cumulative {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	at := func(q float64) float64 {
		rank := q * float64(count)
		lower, below := 0.0, uint64(0)
		for _, b := range bounds {
			c := cumulative[b]
			if float64(c) >= rank {
				if math.IsInf(b, 1) {
					return lower // past the last bucket: its bound, as PromQL
				}
				if c == below {
					return b
				}
				return lower + (b-lower)*(rank-float64(below))/float64(c-below)
			}
			lower, below = b, c
		}
		return lower
	}
	if count == 0 {
		return quantiles{}
	}
	return quantiles{p50: at(0.5), p99: at(0.99), count: count}
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if want, ok := match[l.GetName()]; ok {
			if l.GetValue() != want {
				return false
			}
			found++
		}
	}
	return found == len(match)
}

// counterSum is the sum of the family's counters with the labels in match.
func counterSum(family *dto.MetricFamily, match map[string]string) float64 {
	sum := 0.0
	for _, m := range family.GetMetric() {
		if hasLabels(m, match) {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's CPU
// times: 100 on every Linux architecture Go runs on but alpha and ia64.
const clockTicks = 100

// cpuTime is the CPU time, user and system, the process has used.
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := statCPUTime(string(raw))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// statCPUTime reads utime and stime, fields 14 and 15, off a line of
// /proc/<pid>/stat. The command name, in parentheses, may hold spaces, so
// fields count from after its closing parenthesis (field 3 on).
func statCPUTime(stat string) (time.Duration, error) {
	i := strings.LastIndex(stat, ") ")
	if i < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	fields := strings.Fields(stat[i+2:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// peakRSS is the process's peak resident memory (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// saveCPUProfile saves the scheduler's CPU profile of the next seconds.
func saveCPUProfile(ctx context.Context, endpoint string, seconds int, path string) error {
	resp, err := get(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", endpoint, seconds))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
