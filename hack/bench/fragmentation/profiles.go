package main

import (
	"fmt"
	"os"
	"slices"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	frameworkplugins "k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/plugins/fragmentation"
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
// goes without the plugins the simulation leaves out.
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
	obj, _, err := scheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("profile of %s: %w", policy, err)
	}
	cfg := obj.(*config.KubeSchedulerConfiguration)
	want := "bench"
	if policy == policyTessera {
		want = "tessera-scheduler"
	}
	for i := range cfg.Profiles {
		if p := &cfg.Profiles[i]; p.SchedulerName == want {
			p.PercentageOfNodesToScore = ptr.To[int32](100)
			withoutSimulatedAway(p)
			return p, nil
		}
	}
	return nil, fmt.Errorf("profile %s not found for %s", want, policy)
}

// simulatedAway are the plugins the simulation leaves out: Gang (the trace
// has no gangs, and Gang needs an apiserver for PodGroups), and
// DynamicResources and TesseraDynamicResources (the trace has no DRA
// claims, and they need the DRA manager of a running scheduler).
var simulatedAway = []string{"Gang", "DynamicResources", "TesseraDynamicResources"}

// withoutSimulatedAway removes those plugins from every extension point.
func withoutSimulatedAway(p *config.KubeSchedulerProfile) {
	for _, set := range []*config.PluginSet{&p.Plugins.MultiPoint, &p.Plugins.PreEnqueue, &p.Plugins.QueueSort, &p.Plugins.PreFilter,
		&p.Plugins.Filter, &p.Plugins.PostFilter, &p.Plugins.PreScore, &p.Plugins.Score, &p.Plugins.Reserve,
		&p.Plugins.Permit, &p.Plugins.PreBind, &p.Plugins.Bind, &p.Plugins.PostBind} {
		set.Enabled = slices.DeleteFunc(set.Enabled, func(pl config.Plugin) bool { return slices.Contains(simulatedAway, pl.Name) })
	}
	// Gang stood in for the stock queue sort, which a profile needs.
	if len(p.Plugins.QueueSort.Enabled) == 0 {
		p.Plugins.QueueSort.Enabled = []config.Plugin{{Name: "PrioritySort"}}
	}
	p.PluginConfig = slices.DeleteFunc(p.PluginConfig, func(c config.PluginConfig) bool { return slices.Contains(simulatedAway, c.Name) })
}

// registry is the in-tree plugins, Tessera's, and the baselines, wired as
// cmd/scheduler wires them except that topologies come from objs.
func registry(objs []*tesserav1alpha1.GPUNodeTopology, mix []frag.Shape, seed uint64) (frameworkruntime.Registry, error) {
	r := frameworkplugins.NewInTreeRegistry()
	accountants := fragmentation.NewAccountants()
	pickers := nvlink.NewSharePickers()
	ours := frameworkruntime.Registry{
		nvlink.Name: nvlink.FactoryWithFeed(nvlink.StaticTopologies(objs), nvlink.NewLedger(), func(h fwk.Handle, pl *nvlink.NVLinkTopology) {
			accountants.Set(h, pl)
		}, pickers),
		fragmentation.Name: fragmentation.Factory(accountants, func(h fwk.Handle, pl *fragmentation.GPUFragmentation) {
			pickers.Set(h, pl)
		}),
	}
	for _, b := range baselines {
		var picks *nvlink.SharePickers
		if b.picksShares {
			picks = pickers
		}
		ours[b.name] = baselineFactory(b.name, b.score, accountants, picks, mix, seed)
	}
	if err := r.Merge(ours); err != nil {
		return nil, err
	}
	return r, nil
}
