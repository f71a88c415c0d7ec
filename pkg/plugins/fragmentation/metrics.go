package fragmentation

import (
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	frag "tessera.dev/tessera/pkg/fragmentation"
	"tessera.dev/tessera/pkg/podgpu"
)

// Node labels the GPU metrics group by: a node's pool (as Kueue flavors
// select them) and its GPU product (GPU feature discovery's label).
const (
	PoolLabel    = "tessera.dev/pool"
	ProductLabel = "nvidia.com/gpu.product"
)

var (
	gpusDesc = metrics.NewDesc("tessera_cluster_gpus",
		"Healthy GPUs of the cluster's nodes as the scheduler accounts them, by pool (node label tessera.dev/pool), product (nvidia.com/gpu.product) and state: allocated (shares counted by their fraction) or free.",
		[]string{"pool", "product", "state"}, nil, metrics.ALPHA, "")
	fragmentedDesc = metrics.NewDesc("tessera_cluster_gpus_fragmented",
		"Free GPU capacity, in GPUs, that the workload mix GPUFragmentation learned could not use (its measure; docs/fragmentation.md), by pool and product.",
		[]string{"pool", "product"}, nil, metrics.ALPHA, "")
)

// uncachedAccountant is a GPUAccountant that can also answer for a NodeInfo
// built outside a cycle without disturbing its cycle caches.
type uncachedAccountant interface {
	FreeGPUMilliUncached(info fwk.NodeInfo) ([]int64, string, bool)
}

// gpuCollector computes the cluster's GPU allocation and fragmentation at
// each scrape, from the scheduler's informer caches (bound pods only: a
// pod being bound shows at the next scrape) and the latest plugin built,
// whose mix and measure it uses.
type gpuCollector struct {
	metrics.BaseStableCollector
	plugin atomic.Pointer[GPUFragmentation]
}

var (
	collectorOnce sync.Once
	collector     = &gpuCollector{}
)

// serveMetrics makes pl the plugin the GPU metrics come from, registering
// them once per process.
func serveMetrics(pl *GPUFragmentation) {
	if pl.handle == nil || pl.handle.SharedInformerFactory() == nil {
		return
	}
	// The listers' informers must be started with the scheduler's.
	pl.handle.SharedInformerFactory().Core().V1().Pods().Lister()
	collector.plugin.Store(pl)
	collectorOnce.Do(func() { legacyregistry.CustomMustRegister(collector) })
}

func (c *gpuCollector) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- gpusDesc
	ch <- fragmentedDesc
}

type poolProduct struct{ pool, product string }

type gpuTotals struct{ allocated, free, fragmented float64 }

func (c *gpuCollector) CollectWithStability(ch chan<- metrics.Metric) {
	pl := c.plugin.Load()
	if pl == nil {
		return
	}
	informers := pl.handle.SharedInformerFactory().Core().V1()
	totals, err := pl.gpuTotals(informers.Nodes().Lister(), informers.Pods().Lister())
	if err != nil {
		return
	}
	// A replica that schedules nothing (not the leader) learns no mix:
	// it serves no fragmentation rather than a false 0.
	withMix := len(pl.mix.current().shapes) > 0
	for k, t := range totals {
		ch <- metrics.NewLazyConstMetric(gpusDesc, metrics.GaugeValue, t.allocated, k.pool, k.product, "allocated")
		ch <- metrics.NewLazyConstMetric(gpusDesc, metrics.GaugeValue, t.free, k.pool, k.product, "free")
		if withMix {
			ch <- metrics.NewLazyConstMetric(fragmentedDesc, metrics.GaugeValue, t.fragmented, k.pool, k.product)
		}
	}
}

// gpuTotals sums, by pool and product, the GPUs of every node with GPUs.
func (pl *GPUFragmentation) gpuTotals(nodes corelisters.NodeLister, pods corelisters.PodLister) (map[poolProduct]*gpuTotals, error) {
	nodeList, err := nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	podList, err := pods.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	byNode := map[string][]*v1.Pod{}
	for _, p := range podList {
		if p.Spec.NodeName != "" && p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	acct, _ := pl.accountants.Get(pl.handle)
	mix := pl.mix.current().shapes
	totals := map[poolProduct]*gpuTotals{}
	for _, node := range nodeList {
		info := framework.NewNodeInfo(byNode[node.Name]...)
		info.SetNode(node)
		n, capacity := measureNodeNow(acct, info)
		if capacity == 0 {
			continue
		}
		k := poolProduct{pool: node.Labels[PoolLabel], product: node.Labels[ProductLabel]}
		if k.product == "" {
			k.product = n.Model
		}
		t := totals[k]
		if t == nil {
			t = &gpuTotals{}
			totals[k] = t
		}
		free := float64(n.FreeGPU()) / frag.MilliGPU
		t.free += free
		t.allocated += float64(capacity) - free
		t.fragmented += n.Expected(mix, pl.measure) / frag.MilliGPU
	}
	return totals, nil
}

// measureNodeNow is MeasureNode outside a cycle, with the node's count of
// healthy GPUs (its nvidia.com/gpu allocatable where acct does not know its
// GPUs one by one).
func measureNodeNow(acct GPUAccountant, info fwk.NodeInfo) (frag.Node, int) {
	if acct != nil {
		freeMilli := acct.FreeGPUMilli
		if u, ok := acct.(uncachedAccountant); ok {
			freeMilli = u.FreeGPUMilliUncached
		}
		if free, model, known := freeMilli(info); known {
			cpu := info.GetAllocatable().GetMilliCPU() - info.GetRequested().GetMilliCPU()
			return frag.Node{FreeCPUMilli: cpu, FreeGPUMilli: free, Model: model}, len(free)
		}
	}
	return MeasureNode(nil, info), int(info.GetAllocatable().GetScalarResources()[podgpu.ResourceGPU])
}
