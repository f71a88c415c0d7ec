// Package churn drives the real stack (kube-apiserver, etcd, kwok, and
// Tessera's scheduler as a process of its own) through a seeded random
// sequence of what a busy GPU cluster does in a week: gangs and lone pods
// of both profiles, whole GPUs and shares, mixed priorities (some that
// never preempt, some under a PodDisruptionBudget), pod deletions, nodes
// deleted, cordoned and tainted, and the scheduler killed with SIGKILL and
// restarted. After every step an invariant checker reads the cluster back
// and reports each violation: a GPU held twice, a gang partly bound past
// its timeout, an eviction while a victim-free placement existed, a
// preemption by a pod whose policy is Never, a preemption that broke a
// PodDisruptionBudget.
//
// go test runs the seeds in -churn.seeds (make test: two seeds); make soak
// SEEDS=1-20 runs more and prints steps, evictions and violations per seed.
package churn

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"tessera.dev/tessera/test/integration/framework"
)

var (
	env      *framework.Env
	seedList = flag.String("churn.seeds", "1,2", "seeds to run: a comma-separated list of numbers or ranges (1-20)")
	steps    = flag.Int("churn.steps", 40, "steps per seed")
	// strictEvictions makes an eviction the checker finds needless a
	// violation; otherwise it is reported and counted as a suspect. The
	// checker sees only pods bound through the API, not those a scheduler
	// holds reserved at Permit, so under load it can take held GPUs for
	// free ones (make soak runs strict; make test does not).
	strictEvictions = flag.Bool("churn.strict-evictions", false, "count evictions that look needless as violations, not suspects")
	// scheduler is the binary built from cmd/scheduler for this run.
	scheduler string
)

func TestMain(m *testing.M) {
	flag.Parse()
	bin, err := buildScheduler()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scheduler = bin
	os.Exit(framework.Main(m, framework.Options{}, &env))
}

// buildScheduler builds cmd/scheduler into the repository's bin/, so that
// the suite always runs the scheduler of this checkout as a process.
func buildScheduler() (string, error) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "tessera-scheduler")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/scheduler")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the scheduler: %v\n%s", err, out)
	}
	return bin, nil
}

// parseSeeds reads "1,3,5-8".
func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a {
				return nil, fmt.Errorf("seed range %q: want low-high", part)
			}
		}
		for seed := a; seed <= b; seed++ {
			out = append(out, seed)
		}
	}
	return out, nil
}

func TestChurnKeepsTheInvariants(t *testing.T) {
	seeds, err := parseSeeds(*seedList)
	if err != nil {
		t.Fatal(err)
	}
	var total summary
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			s := runSeed(t, seed, *steps)
			total.add(s)
			t.Logf("churn seed %d: %s", seed, s)
			for _, v := range s.violations {
				t.Errorf("violation: %s", v)
			}
		})
	}
	// One line for make soak's summary.
	fmt.Printf("churn: %d seeds: %s\n", len(seeds), total)
}
