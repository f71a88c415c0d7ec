package nodeagent

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"tessera.dev/tessera/pkg/topology"
)

// gpuSample is one GPU's state at the last sync, as /metrics shows it.
type gpuSample struct {
	gpu              topology.GPU
	telemetry        topology.Telemetry
	uncorrectableECC uint64
	nvlinks          int
}

// collector serves the last sync's GPU state to Prometheus. It reads a
// snapshot rather than NVML so a scrape never waits on the driver.
type collector struct {
	node string

	mu         sync.Mutex
	samples    []gpuSample
	containers []containerSample

	utilization, memUsed, memTotal, temperature, power, ecc, healthy, nvlinks, containerInfo *prometheus.Desc

	xids   *prometheus.CounterVec
	writes *prometheus.CounterVec
	// drift and driftedPods carry no pod labels, so their series do not
	// grow with the pods the node has run: the GPUAssignmentDrift event on
	// the pod names it.
	drift       prometheus.Counter
	driftedPods prometheus.Gauge

	xidWatchUp       prometheus.Gauge
	xidWatchFailures prometheus.Counter
}

var gpuLabels = []string{"node", "gpu", "uuid", "model"}

func newCollector(node string) *collector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("tessera_gpu_"+name, help, gpuLabels, nil)
	}
	constLabels := prometheus.Labels{"node": node}
	c := &collector{
		node:        node,
		utilization: desc("utilization_percent", "GPU utilization over the driver's last sample period."),
		memUsed:     desc("memory_used_bytes", "GPU memory in use, excluding driver-reserved memory."),
		memTotal:    desc("memory_total_bytes", "GPU memory in total."),
		temperature: desc("temperature_celsius", "GPU core temperature."),
		power:       desc("power_watts", "GPU power draw."),
		ecc:         desc("ecc_uncorrectable_errors", "Uncorrectable ECC errors since the driver loaded (volatile count)."),
		healthy:     desc("healthy", "1 if the GPU has no fault, 0 while it has one."),
		nvlinks:     desc("nvlink_active_links", "NVLinks of the GPU that are up, to peers or NVSwitches."),
		containerInfo: prometheus.NewDesc("tessera_gpu_container_info",
			"1 for each container holding the GPU, as the kubelet's PodResources API reports; join on uuid for per-pod GPU metrics.",
			append(gpuLabels, "namespace", "pod", "container"), nil),
		xids: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_gpu_xid_errors_total", Help: "Critical XID errors reported by NVML.", ConstLabels: constLabels,
		}, []string{"uuid", "xid"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_node_agent_topology_writes_total", Help: "GPUNodeTopology status writes, by why.", ConstLabels: constLabels,
		}, []string{"reason"}),
		drift: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_gpu_assignment_drift_total", Help: "Pods seen holding GPUs other than the scheduler assigned, once per distinct drift; the pod's GPUAssignmentDrift event names it.", ConstLabels: constLabels,
		}),
		driftedPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_gpu_assignment_drifted_pods", Help: "Pods on the node now holding GPUs other than the scheduler assigned.", ConstLabels: constLabels,
		}),
		xidWatchUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_node_agent_xid_watch_up", Help: "1 while the agent watches NVML XID events, 0 while watching fails and it retries with backoff.", ConstLabels: constLabels,
		}),
		xidWatchFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_node_agent_xid_watch_failures_total", Help: "Failed attempts to watch NVML XID events.", ConstLabels: constLabels,
		}),
	}
	// Every reason from the start, so that a rate over them is 0, not absent.
	for _, reason := range []string{"change", "heartbeat"} {
		c.writes.WithLabelValues(reason)
	}
	return c
}

// containerSample is one container holding one GPU.
type containerSample struct {
	gpu                       topology.GPU
	namespace, pod, container string
	// uid is the pod's, when the agent could read the pod on its node.
	uid types.UID
}

func (c *collector) set(samples []gpuSample, containers []containerSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples, c.containers = samples, containers
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.utilization, c.memUsed, c.memTotal, c.temperature, c.power, c.ecc, c.healthy, c.nvlinks, c.containerInfo} {
		ch <- d
	}
	c.xids.Describe(ch)
	c.writes.Describe(ch)
	c.drift.Describe(ch)
	c.driftedPods.Describe(ch)
	c.xidWatchUp.Describe(ch)
	c.xidWatchFailures.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	samples, containers := c.samples, c.containers
	c.mu.Unlock()
	const mib = 1 << 20
	for _, s := range samples {
		labels := []string{c.node, strconv.Itoa(s.gpu.Index), s.gpu.UUID, s.gpu.Model}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		gauge(c.utilization, float64(s.telemetry.UtilizationPercent))
		gauge(c.memUsed, float64(s.telemetry.MemoryUsedMiB)*mib)
		gauge(c.memTotal, float64(s.gpu.MemoryMiB)*mib)
		gauge(c.temperature, float64(s.telemetry.TemperatureC))
		gauge(c.power, s.telemetry.PowerWatts)
		gauge(c.ecc, float64(s.uncorrectableECC))
		gauge(c.nvlinks, float64(s.nvlinks))
		healthy := 0.0
		if s.gpu.Healthy {
			healthy = 1
		}
		gauge(c.healthy, healthy)
	}
	for _, s := range containers {
		ch <- prometheus.MustNewConstMetric(c.containerInfo, prometheus.GaugeValue, 1,
			c.node, strconv.Itoa(s.gpu.Index), s.gpu.UUID, s.gpu.Model, s.namespace, s.pod, s.container)
	}
	c.xids.Collect(ch)
	c.writes.Collect(ch)
	c.drift.Collect(ch)
	c.driftedPods.Collect(ch)
	c.xidWatchUp.Collect(ch)
	c.xidWatchFailures.Collect(ch)
}
