// Command node-agent runs on every GPU node (a DaemonSet): it reads the
// node's GPUs through NVML and publishes their topology and health as the
// GPUNodeTopology named after the node, keeps the TesseraGPUHealthy and
// TesseraGPUXIDWatch Node conditions, and serves GPU metrics on /metrics and liveness on /healthz.
// With --once --print it prints the discovered topology and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"tessera.dev/tessera/internal/version"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/dra/prepare"
	"tessera.dev/tessera/pkg/nodeagent"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/nvmlfake"
	"tessera.dev/tessera/pkg/topology/nvmlsource"
)

type options struct {
	nvml, nodeName, kubeconfig, metricsAddr, podResources string
	// The DRA driver's kubelet plugin (--kubelet-plugin).
	kubeletPlugin                    bool
	pluginDir, registryDir, cdiDir   string
	once, print, resourceSlices      bool
	interval, heartbeat, xidRetryMax time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "node-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	flag.StringVar(&o.nvml, "nvml", "real", "where GPUs are read: real (the NVIDIA driver's NVML) or fake:<shape> ("+strings.Join(nvmlfake.ShapeNames(), ", ")+")")
	flag.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name, from the downward API (spec.nodeName)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig to use outside a cluster; in-cluster config otherwise")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":9445", "address serving /metrics and /healthz; empty disables")
	flag.StringVar(&o.podResources, "pod-resources-socket", nodeagent.DefaultPodResourcesSocket, "the kubelet's PodResources socket, to attribute GPUs to pods and report drift from the scheduler's assignment; empty disables")
	printVersion := flag.Bool("version", false, "print the node agent's version and exit")
	flag.BoolVar(&o.once, "once", false, "sync once and exit")
	flag.BoolVar(&o.print, "print", false, "with --once: print the discovered topology as nvidia-smi-like text instead of publishing it")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "how often NVML is read")
	flag.DurationVar(&o.heartbeat, "heartbeat", 5*time.Minute, "longest time between writes of an unchanged GPUNodeTopology")
	flag.BoolVar(&o.resourceSlices, "publish-resource-slices", false, "also publish this node's GPUs as a ResourceSlice of the DRA driver "+dra.DriverName+" (a preview; never on a node whose GPUs the NVIDIA device plugin also serves, docs/dra.md)")
	flag.BoolVar(&o.kubeletPlugin, "kubelet-plugin", false, "serve the kubelet plugin of DRA driver "+dra.DriverName+": prepare the claims allocated on this node by writing a CDI spec per claim (needs --publish-resource-slices and the kubelet's plugin directories)")
	flag.StringVar(&o.pluginDir, "kubelet-plugin-dir", "/var/lib/kubelet/plugins/"+dra.DriverName, "the kubelet plugin's socket and checkpoint directory")
	flag.StringVar(&o.registryDir, "kubelet-registry-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin registration directory")
	flag.StringVar(&o.cdiDir, "cdi-dir", "/var/run/cdi", "where the container runtime reads CDI specs")
	flag.DurationVar(&o.xidRetryMax, "xid-retry-max", 5*time.Minute, "longest wait between attempts to watch NVML XID events again after watching failed (the wait doubles from 1s)")
	klog.InitFlags(nil)
	flag.Parse()
	if *printVersion {
		fmt.Println("node-agent", version.String())
		return nil
	}
	if o.print && !o.once {
		return errors.New("--print needs --once")
	}
	if o.once && (o.resourceSlices || o.kubeletPlugin) {
		return errors.New("--once publishes the GPUNodeTopology only: the ResourceSlice and the kubelet plugin need the agent running")
	}
	if o.kubeletPlugin && !o.resourceSlices {
		return errors.New("--kubelet-plugin needs --publish-resource-slices: the kubelet prepares only claims allocated from this node's slice")
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	lib, err := library(o.nvml, o.nodeName)
	if err != nil {
		return err
	}
	src, err := nvmlsource.New(lib)
	if err != nil {
		return err
	}
	defer func() {
		if err := src.Close(); err != nil {
			klog.Background().Error(err, "Closing NVML")
		}
	}()
	if o.print {
		return printTopology(src, o.nvml)
	}
	return publish(ctx, o, src)
}

func publish(ctx context.Context, o options, src *nvmlsource.Source) error {
	if o.nodeName == "" {
		return errors.New("--node-name is empty: set it, or NODE_NAME from the downward API (spec.nodeName)")
	}
	config, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	client, err := nodeagent.NewClient(ctx, config, o.nodeName)
	if err != nil {
		return err
	}
	clientset, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	scheme, err := nodeagent.Scheme()
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: clientset.CoreV1().Events("")})
	defer broadcaster.Shutdown()

	var podResources nodeagent.PodResourcesLister
	if o.podResources != "" {
		if _, err := os.Stat(o.podResources); err != nil {
			klog.FromContext(ctx).Info("No kubelet PodResources socket: GPU attribution and drift reports are off", "socket", o.podResources, "err", err)
		} else {
			k, err := nodeagent.DialPodResources(o.podResources, "nvidia.com/gpu")
			if err != nil {
				return err
			}
			defer func() { _ = k.Close() }()
			podResources = k
		}
	}

	var slices nodeagent.DevicePublisher
	var pcieRoot dra.PCIeRootOf
	if o.resourceSlices {
		publisher := dra.NewPublisher(ctx, clientset, o.nodeName, func(ctx context.Context, err error, msg string) {
			klog.FromContext(ctx).Error(err, "Publishing the ResourceSlice", "driver", dra.DriverName, "detail", msg)
		})
		defer publisher.Stop()
		slices = publisher
		if strings.HasPrefix(o.nvml, "real") {
			pcieRoot = dra.SysfsPCIeRoot
		}
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	agent, err := nodeagent.New(nodeagent.Config{
		Slices:       slices,
		PCIeRoot:     pcieRoot,
		NodeName:     o.nodeName,
		Source:       src,
		Client:       client,
		Recorder:     broadcaster.NewRecorder(scheme, corev1.EventSource{Component: "tessera-node-agent", Host: o.nodeName}),
		Registry:     registry,
		Interval:     o.interval,
		Heartbeat:    o.heartbeat,
		PodResources: podResources,
		XIDRetryMax:  o.xidRetryMax,
	})
	if err != nil {
		return err
	}
	if o.once {
		return agent.Sync(ctx)
	}
	if o.kubeletPlugin {
		helper, err := startKubeletPlugin(ctx, o, clientset, agent)
		if err != nil {
			return err
		}
		defer helper.Stop()
	}
	if o.metricsAddr != "" {
		go serve(ctx, o.metricsAddr, registry, agent)
	}
	return agent.Run(ctx)
}

// startKubeletPlugin serves the DRA kubelet plugin over the agent's GPUs.
func startKubeletPlugin(ctx context.Context, o options, clientset kubernetes.Interface, agent *nodeagent.Agent) (*kubeletplugin.Helper, error) {
	driver, err := prepare.New(o.nodeName, o.cdiDir, o.pluginDir, prepare.StatusInventory(agent.Status))
	if err != nil {
		return nil, fmt.Errorf("the kubelet plugin: %w", err)
	}
	helper, err := kubeletplugin.Start(ctx, driver,
		kubeletplugin.DriverName(dra.DriverName), kubeletplugin.NodeName(o.nodeName), kubeletplugin.KubeClient(clientset),
		kubeletplugin.PluginDataDirectoryPath(o.pluginDir), kubeletplugin.RegistrarDirectoryPath(o.registryDir))
	if err != nil {
		return nil, fmt.Errorf("starting the kubelet plugin: %w", err)
	}
	return helper, nil
}

func serve(ctx context.Context, addr string, registry *prometheus.Registry, agent *nodeagent.Agent) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := agent.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.FromContext(ctx).Error(err, "Metrics server stopped", "address", addr)
	}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return c, nil
}

func printTopology(src *nvmlsource.Source, mode string) error {
	d, err := topology.Discover(src)
	if err != nil {
		return err
	}
	if v, err := src.DriverVersion(); err == nil {
		fmt.Printf("Driver %s, %d GPUs (%s)\n\n", v, len(d.Topology.GPUs), mode)
	}
	if err := d.Print(os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	for _, g := range d.Topology.GPUs {
		t, err := src.Telemetry(g.Index)
		if err != nil {
			fmt.Printf("GPU%d telemetry partly unreadable: %v\n", g.Index, err)
		}
		fmt.Printf("GPU%d: utilization %d%%, memory used %d MiB, %d C, %.1f W\n",
			g.Index, t.UtilizationPercent, t.MemoryUsedMiB, t.TemperatureC, t.PowerWatts)
	}
	if ev, ok, err := src.WaitXID(100 * time.Millisecond); err != nil {
		fmt.Printf("XID events: not watchable: %v\n", err)
	} else if ok {
		fmt.Printf("XID events: watching; pending XID %d on %s\n", ev.XID, ev.UUID)
	} else {
		fmt.Println("XID events: watching; none pending")
	}
	return nil
}

func library(mode, nodeName string) (nvml.Interface, error) {
	if mode == "real" {
		return nvml.New(), nil
	}
	if shape, ok := strings.CutPrefix(mode, "fake:"); ok {
		if nodeName == "" {
			nodeName = "fake-node"
		}
		return nvmlfake.New(shape, nodeName)
	}
	return nil, fmt.Errorf("--nvml=%q: want real or fake:<shape>", mode)
}
