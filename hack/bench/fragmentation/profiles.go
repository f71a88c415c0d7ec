package main

import (
	"fmt"
	"os"

	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/simkit"
	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/plugins/nvlink"
)

// The policies, in the table's column order.
const (
	policyTessera = "Tessera"
	policyDefault = "default"
)

var baselines = []struct {
	name  string
	score scoreFunc
	// picksShares: the policy also chooses the GPU of a share inside the
	// node (FGD's paper does); the others leave it to NVLinkTopology,
	// which gives a share the GPU it fits most tightly.
	picksShares bool
}{
	{"Random", randomScore, false},
	{"DotProd", dotProdScore, false},
	{"GpuPacking", gpuPackingScore, false},
	{"BestFit", bestFitScore, false},
	{"FGD", fgdScore, true},
}

func allPolicies() []string {
	out := []string{policyTessera, policyDefault}
	for _, b := range baselines {
		out = append(out, b.name)
	}
	return out
}

// defaultConfig is the stock profile, with NVLinkTopology accounting and
// assigning the GPUs (its own score off), as for every policy.
const defaultConfig = `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: bench
  percentageOfNodesToScore: 100
  plugins:
    preFilter: {enabled: [{name: NVLinkTopology}]}
    filter: {enabled: [{name: NVLinkTopology}]}
    reserve: {enabled: [{name: NVLinkTopology}]}
    bind:
      disabled: [{name: DefaultBinder}]
      enabled: [{name: NVLinkTopology}, {name: DefaultBinder}]
`

// baselineConfig is the default profile with every score plugin replaced
// by the baseline %s.
const baselineConfig = defaultConfig + `    preScore: {disabled: [{name: "*"}], enabled: [{name: %[1]s}]}
    score: {disabled: [{name: "*"}], enabled: [{name: %[1]s}]}
`

// profileFor returns the profile a policy runs: Tessera's is the
// tessera-scheduler profile of the shipped configuration; every profile
// goes without the plugins the simulation leaves out (simkit.LeftOut), and
// filters every node.
func profileFor(policy, configPath string) (*config.KubeSchedulerProfile, error) {
	var data []byte
	switch policy {
	case policyTessera:
		b, err := os.ReadFile(configPath)
		if err != nil {
			return nil, err
		}
		data = b
	case policyDefault:
		data = []byte(defaultConfig)
	default:
		data = fmt.Appendf(nil, baselineConfig, policy)
	}
	name := "bench"
	if policy == policyTessera {
		name = "tessera-scheduler"
	}
	p, err := simkit.Profile(data, name)
	if err != nil {
		return nil, fmt.Errorf("profile of %s: %w", policy, err)
	}
	p.PercentageOfNodesToScore = ptr.To[int32](100)
	return p, nil
}

// registry is simkit's (the in-tree plugins and Tessera's, topologies from
// objs) and the baselines.
func registry(objs []*tesserav1alpha1.GPUNodeTopology, mix []frag.Shape, seed uint64) (frameworkruntime.Registry, error) {
	r, err := simkit.NewRegistry(objs)
	if err != nil {
		return nil, err
	}
	baselineRegistry := frameworkruntime.Registry{}
	for _, b := range baselines {
		var picks *nvlink.SharePickers
		if b.picksShares {
			picks = r.Pickers
		}
		baselineRegistry[b.name] = baselineFactory(b.name, b.score, r.Accountants, picks, mix, seed)
	}
	if err := r.Merge(baselineRegistry); err != nil {
		return nil, err
	}
	return r.Registry, nil
}
