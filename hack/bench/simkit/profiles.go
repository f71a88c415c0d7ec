package simkit

import (
	"fmt"
	"slices"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	frameworkplugins "k8s.io/kubernetes/pkg/scheduler/framework/plugins"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/plugins/fragmentation"
	"tessera.dev/tessera/pkg/plugins/nvlink"
)

// Setup readies the process for simulators: it registers the scheduler's
// metrics, which the cache and framework report into as in kube-scheduler,
// and turns DRAExtendedResource off: no DRA manager runs in a simulation,
// and NodeResourcesFit would otherwise ask it whether nvidia.com/gpu is
// DRA-backed.
func Setup() error {
	schedmetrics.Register()
	return utilfeature.DefaultMutableFeatureGate.Set("DRAExtendedResource=false")
}

// Profile decodes a KubeSchedulerConfiguration and returns its profile
// named name, without the plugins a simulation leaves out (LeftOut).
func Profile(data []byte, name string) (*config.KubeSchedulerProfile, error) {
	obj, _, err := scheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	cfg, ok := obj.(*config.KubeSchedulerConfiguration)
	if !ok {
		return nil, fmt.Errorf("not a KubeSchedulerConfiguration but %T", obj)
	}
	for i := range cfg.Profiles {
		if p := &cfg.Profiles[i]; p.SchedulerName == name {
			withoutLeftOut(p)
			return p, nil
		}
	}
	return nil, fmt.Errorf("no profile %s", name)
}

// LeftOut are the plugins a simulation runs without: Gang (it needs an
// apiserver for PodGroups), and DynamicResources and
// TesseraDynamicResources (they need the DRA manager of a running
// scheduler). Gang members then schedule as independent pods, and pods
// with resource claims cannot be simulated.
var LeftOut = []string{"Gang", "DynamicResources", "TesseraDynamicResources"}

// withoutLeftOut removes those plugins from every extension point.
func withoutLeftOut(p *config.KubeSchedulerProfile) {
	for _, set := range []*config.PluginSet{&p.Plugins.MultiPoint, &p.Plugins.PreEnqueue, &p.Plugins.QueueSort, &p.Plugins.PreFilter,
		&p.Plugins.Filter, &p.Plugins.PostFilter, &p.Plugins.PreScore, &p.Plugins.Score, &p.Plugins.Reserve,
		&p.Plugins.Permit, &p.Plugins.PreBind, &p.Plugins.Bind, &p.Plugins.PostBind} {
		set.Enabled = slices.DeleteFunc(set.Enabled, func(pl config.Plugin) bool { return slices.Contains(LeftOut, pl.Name) })
	}
	// Gang stood in for the stock queue sort, which a profile needs.
	if len(p.Plugins.QueueSort.Enabled) == 0 {
		p.Plugins.QueueSort.Enabled = []config.Plugin{{Name: "PrioritySort"}}
	}
	p.PluginConfig = slices.DeleteFunc(p.PluginConfig, func(c config.PluginConfig) bool { return slices.Contains(LeftOut, c.Name) })
}

// Registry is the in-tree plugins and Tessera's NVLinkTopology and
// GPUFragmentation, wired as cmd/scheduler wires them except that the
// topologies are objs. accountants and pickers are the links between the
// two, for further plugins that read NVLinkTopology's GPU use or choose
// the GPUs of shares.
type Registry struct {
	frameworkruntime.Registry
	Accountants *fragmentation.Accountants
	Pickers     *nvlink.SharePickers
}

// NewRegistry returns the registry with topologies objs.
func NewRegistry(objs []*tesserav1alpha1.GPUNodeTopology) (*Registry, error) {
	r := &Registry{Registry: frameworkplugins.NewInTreeRegistry(), Accountants: fragmentation.NewAccountants(), Pickers: nvlink.NewSharePickers()}
	ours := frameworkruntime.Registry{
		nvlink.Name: nvlink.FactoryWithFeed(nvlink.StaticTopologies(objs), nvlink.NewLedger(), func(h fwk.Handle, pl *nvlink.NVLinkTopology) {
			r.Accountants.Set(h, pl)
		}, r.Pickers),
		fragmentation.Name: fragmentation.Factory(r.Accountants, func(h fwk.Handle, pl *fragmentation.GPUFragmentation) {
			r.Pickers.Set(h, pl)
		}),
	}
	if err := r.Merge(ours); err != nil {
		return nil, err
	}
	return r, nil
}
