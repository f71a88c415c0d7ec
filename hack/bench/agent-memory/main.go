// Command agent-memory measures the node agent's memory against the number of
// pods in the cluster. It starts the simulated cluster (etcd, kube-apiserver
// and kwok on loopback), creates one GPU node for the agent with one pod
// holding a GPU, and N pods bound to other nodes; then, for each N, it runs
// the real node agent binary (bin/node-agent, fake NVML of a DGX H100) as its
// own process, with a stand-in kubelet PodResources socket so that the agent
// reads pods as on a real node, and reads the agent's resident set size from
// /proc/<pid>/status and its Go heap from its own /metrics. It prints a table
// and writes CSV.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/gpunodes"
)

type options struct {
	repo, agent, out, shape string
	pods                    []int
	otherNodes              int
	settle                  time.Duration
}

const agentNode = "agent-0"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-agent-memory:", err)
		os.Exit(1)
	}
}

func run() error {
	var o options
	pods := flag.String("pods", "0,5000", "pods in the cluster on other nodes, one agent run per count")
	flag.StringVar(&o.repo, "repo", ".", "root of the Tessera checkout (bin/, manifests/)")
	flag.StringVar(&o.agent, "agent", "bin/node-agent", "the node agent binary to measure (make build)")
	flag.StringVar(&o.out, "out", "_output/bench-agent-memory.csv", "CSV file to write")
	flag.StringVar(&o.shape, "shape", "dgx-h100", "the agent's node shape and fake NVML")
	flag.IntVar(&o.otherNodes, "other-nodes", 50, "nodes the other pods are bound to")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "how long the agent runs, sampled every second, once it has published")
	klog.InitFlags(nil)
	flag.Parse()
	for _, s := range strings.Split(*pods, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			return fmt.Errorf("--pods: %q is not a pod count", s)
		}
		o.pods = append(o.pods, n)
	}
	slices.Sort(o.pods)
	if _, err := os.Stat(o.agent); err != nil {
		return fmt.Errorf("no agent binary (run make build): %w", err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stack, err := benchkit.Start(ctx, o.repo, "bench-agent-memory")
	if err != nil {
		return err
	}
	defer func() { _ = stack.Stop() }()
	b := &bench{o: o, Stack: stack}
	if err := b.setUp(ctx); err != nil {
		return err
	}
	var results []result
	created := 0
	for _, n := range o.pods {
		benchkit.Progress("creating pods on other nodes: %d -> %d", created, n)
		if err := b.createPods(ctx, created, n); err != nil {
			return err
		}
		created = n
		r, err := b.measure(ctx, n)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	return report(o, results)
}

type bench struct {
	o options
	*benchkit.Stack
	ns, socket string
}

type result struct {
	pods                    int
	rssMiB, hwmMiB, heapMiB float64
	anonMiB, fileMiB        float64
	startup                 time.Duration
}

// setUp creates the agent's node and the other nodes, the namespace, the one
// pod on the agent's node that holds GPU 0, and a stand-in kubelet socket
// that reports it.
func (b *bench) setUp(ctx context.Context) error {
	shape, err := gpunodes.Lookup(b.o.shape)
	if err != nil {
		return err
	}
	err = benchkit.Parallel(b.o.otherNodes+1, 8, func(i int) error {
		name := agentNode
		if i > 0 {
			name = fmt.Sprintf("other-%03d", i-1)
		}
		_, err := b.Client.CoreV1().Nodes().Create(ctx, shape.Node(name, "rack-a"), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("creating nodes: %w", err)
	}
	if b.ns, err = b.Namespace(ctx); err != nil {
		return err
	}
	holder := benchPod(b.ns, "gpu-holder", agentNode)
	holder.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUIDs: "0"}
	if _, err := b.Client.CoreV1().Pods(b.ns).Create(ctx, holder, metav1.CreateOptions{}); err != nil {
		return err
	}
	b.socket = filepath.Join(b.WorkDir, "pod-resources.sock")
	l, err := net.Listen("unix", b.socket)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, kubelet{ns: b.ns})
	go func() { _ = srv.Serve(l) }()
	context.AfterFunc(ctx, srv.Stop)
	return nil
}

// createPods creates pods from..to-1, spread over the other nodes.
func (b *bench) createPods(ctx context.Context, from, to int) error {
	return benchkit.Parallel(to-from, 16, func(i int) error {
		i += from
		pod := benchPod(b.ns, fmt.Sprintf("pod-%05d", i), fmt.Sprintf("other-%03d", i%b.o.otherNodes))
		_, err := b.Client.CoreV1().Pods(b.ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
}

// benchPod is a pod of an ordinary size: labels, one container with an
// image, command, environment and requests, as a Deployment would make.
func benchPod(ns, name, node string) *corev1.Pod {
	var env []corev1.EnvVar
	for i := range 8 {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%d", i), Value: fmt.Sprintf("value-%d-of-an-ordinary-length", i)})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			"app.kubernetes.io/name": "inference", "app.kubernetes.io/instance": "bench", "pod-template-hash": "7d9f8c6b5",
		}},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{
				Name: "server", Image: "registry.example/inference/server:v1.2.3",
				Command: []string{"/bin/server", "--port=8080", "--model=/models/current"},
				Env:     env,
				Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi"),
				}},
			}},
		},
	}
}

// kubelet answers the PodResources API as the agent node's kubelet would:
// one container of gpu-holder holds GPU 0 (index device IDs).
type kubelet struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	ns string
}

func (k kubelet) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	return &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{{
		Namespace: k.ns, Name: "gpu-holder",
		Containers: []*podresourcesv1.ContainerResources{{Name: "server", Devices: []*podresourcesv1.ContainerDevices{
			{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"0"}},
		}}},
	}}}, nil
}

// measure runs the agent until it has published the holder of GPU 0 (so it
// has read pods), samples it for the settle time and stops it.
func (b *bench) measure(ctx context.Context, pods int) (result, error) {
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	logPath := filepath.Join(b.WorkDir, fmt.Sprintf("node-agent-%d.log", pods))
	logFile, err := os.Create(logPath)
	if err != nil {
		return result{}, err
	}
	defer func() { _ = logFile.Close() }()
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, b.o.agent,
		"--nvml=fake:"+b.o.shape, "--node-name="+agentNode, "--kubeconfig="+b.KubeconfigPath,
		"--metrics-bind-address="+metricsAddr, "--pod-resources-socket="+b.socket, "--interval=1s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	benchkit.Progress("running the node agent with %d pods on other nodes (log %s)", pods, logPath)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		stopped := <-exited
		_ = stopped // stopped by us: its exit status says nothing
	}()

	r := result{pods: pods}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("the agent exited (log %s): %v", logPath, err)
		default:
		}
		obj := &tesserav1alpha1.GPUNodeTopology{}
		if err := b.CR.Get(ctx, types.NamespacedName{Name: agentNode}, obj); err != nil {
			return false, nil
		}
		hb := obj.Status.HeartbeatTime
		return hb != nil && !hb.Time.Before(start.Truncate(time.Second)) && len(obj.Status.Holders) > 0, nil
	})
	if err != nil {
		return r, fmt.Errorf("waiting for the agent to publish the GPU holder: %w", err)
	}
	r.startup = time.Since(start)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for end := time.Now().Add(b.o.settle); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-ticker.C:
		}
		mem, err := procMemory(cmd.Process.Pid)
		if err != nil {
			return r, err
		}
		r.rssMiB, r.hwmMiB = max(r.rssMiB, mem["VmRSS"]), max(r.hwmMiB, mem["VmHWM"])
		r.anonMiB, r.fileMiB = max(r.anonMiB, mem["RssAnon"]), max(r.fileMiB, mem["RssFile"])
		heap, err := heapInUse(ctx, metricsAddr)
		if err != nil {
			return r, err
		}
		r.heapMiB = max(r.heapMiB, heap)
	}
	return r, nil
}

// procMemory reads the resident set (VmRSS), its peak (VmHWM) and its
// anonymous and file-backed parts (RssAnon, RssFile: mostly the binary's own
// pages) of pid, in MiB.
func procMemory(pid int) (map[string]float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	out := map[string]float64{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		key, value, ok := strings.Cut(s.Text(), ":")
		if !ok || !slices.Contains([]string{"VmRSS", "VmHWM", "RssAnon", "RssFile"}, key) {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 64)
		if err != nil {
			return nil, fmt.Errorf("parsing %s %q: %w", key, value, err)
		}
		out[key] = kb / 1024
	}
	return out, s.Err()
}

// heapInUse reads go_memstats_heap_inuse_bytes from the agent's /metrics, in MiB.
func heapInUse(ctx context.Context, addr string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping the agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "go_memstats_heap_inuse_bytes "); ok {
			bytes, err := strconv.ParseFloat(v, 64)
			return bytes / (1 << 20), err
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_memstats_heap_inuse_bytes in the agent's /metrics")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func report(o options, results []result) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "pods on other nodes\tpods on the agent's node\tRSS MiB\tof it anon\tof it file\tpeak RSS MiB\tGo heap in use MiB\tstart to first publish\t\n")
	rows := [][]string{{"pods_other_nodes", "pods_own_node", "rss_mib", "rss_anon_mib", "rss_file_mib", "peak_rss_mib", "heap_inuse_mib", "startup_seconds"}}
	f := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	for _, r := range results {
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.pods, 1, f(r.rssMiB), f(r.anonMiB), f(r.fileMiB), f(r.hwmMiB), f(r.heapMiB), r.startup.Round(100*time.Millisecond))
		rows = append(rows, []string{strconv.Itoa(r.pods), "1", f(r.rssMiB), f(r.anonMiB), f(r.fileMiB), f(r.hwmMiB), f(r.heapMiB), f(r.startup.Seconds())})
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("\nagent: %s, fake NVML %s, the largest of one sample a second for %s after its first publish; the goal is under 64 MiB RSS, flat in the pod count\n", o.agent, o.shape, o.settle)
	return benchkit.WriteCSV(o.out, rows)
}
