// Package dra_test tests the gpu.tessera.dev DRA driver against a real
// apiserver: Tessera's scheduler allocating claims with the GPUs it
// chooses (kube-controller-manager makes the claims of pods' templates),
// and the kubelet plugin (pkg/dra/prepare under the upstream kubeletplugin
// helper, as the chart's node-agent ServiceAccount) driven through its real
// gRPC socket with the kubelet's DRA v1 API.
package dra_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	"k8s.io/utils/ptr"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/dra/prepare"
	"tessera.dev/tessera/test/integration/framework"
)

var env *framework.Env

func TestMain(m *testing.M) {
	os.Exit(framework.Main(m, framework.Options{ControllerManager: true}, &env))
}

// plugin runs the driver for node as the kubelet would find it: its
// socket in a plugin directory, its registration socket beside.
type plugin struct {
	client drapb.DRAPluginClient
	cdiDir string
	stop   func()
}

// agentClient is the node agent's identity on node, as in a cluster: the
// chart's ServiceAccount and RBAC with DRA on, a token bound to the node.
func agentClient(t *testing.T, node *corev1.Node) kubernetes.Interface {
	t.Helper()
	rendered := env.RenderChart(t, []string{"templates/node-agent/rbac.yaml"}, "dra.enabled=true")
	if err := cluster.ApplyFromFiles(t.Context(), env.CR, rendered); err != nil {
		t.Fatal(err)
	}
	cfg := env.NodeAgentConfig(t, node)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func startPlugin(t *testing.T, node string, client kubernetes.Interface, status *tesserav1alpha1.GPUNodeTopologyStatus, dataDir string) *plugin {
	t.Helper()
	root, err := os.MkdirTemp("", "dra") // short: a socket path has at most 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	cdiDir := filepath.Join(root, "cdi")
	driver, err := prepare.New(node, cdiDir, dataDir, prepare.StatusInventory(func() *tesserav1alpha1.GPUNodeTopologyStatus { return status }))
	if err != nil {
		t.Fatal(err)
	}
	pluginDir := filepath.Join(root, "plugins", dra.DriverName)
	registryDir := filepath.Join(root, "registry")
	for _, dir := range []string{pluginDir, registryDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	helper, err := kubeletplugin.Start(t.Context(), driver,
		kubeletplugin.DriverName(dra.DriverName), kubeletplugin.NodeName(node), kubeletplugin.KubeClient(client),
		kubeletplugin.PluginDataDirectoryPath(pluginDir), kubeletplugin.RegistrarDirectoryPath(registryDir))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+filepath.Join(pluginDir, "dra.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		_ = conn.Close()
		helper.Stop()
	})
	t.Cleanup(stop)
	return &plugin{client: drapb.NewDRAPluginClient(conn), cdiDir: cdiDir, stop: stop}
}

// claim creates a claim for request "gpus" of the class and gives it the
// status the scheduler would: allocated on node's devices (a share of
// milli each, or whole), reserved for a pod unless reserved is false.
func claim(t *testing.T, ns, name, node string, milli int64, reserved bool, devices ...string) *resourceapi.ResourceClaim {
	t.Helper()
	c := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{
			Name: "gpus", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: dra.DriverName, AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: int64(len(devices))},
		}}}},
	}
	c, err := env.Client.ResourceV1().ResourceClaims(ns).Create(t.Context(), c, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var results []resourceapi.DeviceRequestAllocationResult
	for _, d := range devices {
		r := resourceapi.DeviceRequestAllocationResult{Request: "gpus", Driver: dra.DriverName, Pool: node, Device: d}
		if milli > 0 {
			r.ShareID = ptr.To(uuid.NewUUID())
			r.ConsumedCapacity = map[resourceapi.QualifiedName]resource.Quantity{dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)}
		}
		results = append(results, r)
	}
	c.Status.Allocation = &resourceapi.AllocationResult{
		Devices: resourceapi.DeviceAllocationResult{Results: results},
		NodeSelector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}},
	}
	if reserved {
		// A real pod on the node: kube-controller-manager drops a
		// reservation for a pod that does not exist.
		pod, err := env.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-pod"},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "cuda"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: pod.Name, UID: pod.UID}}
	}
	c, err = env.Client.ResourceV1().ResourceClaims(ns).UpdateStatus(t.Context(), c, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("allocating claim %s: %v", name, err)
	}
	return c
}

func (p *plugin) prepare(t *testing.T, c *resourceapi.ResourceClaim) *drapb.NodePrepareResourceResponse {
	t.Helper()
	resp, err := p.client.NodePrepareResources(t.Context(), &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}}})
	if err != nil {
		t.Fatalf("NodePrepareResources: %v", err)
	}
	return resp.Claims[string(c.UID)]
}

func (p *plugin) unprepare(t *testing.T, c *resourceapi.ResourceClaim) string {
	t.Helper()
	resp, err := p.client.NodeUnprepareResources(t.Context(), &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: c.Namespace, Name: c.Name, Uid: string(c.UID)}}})
	if err != nil {
		t.Fatalf("NodeUnprepareResources: %v", err)
	}
	return resp.Claims[string(c.UID)].GetError()
}

// cdiEnv reads the environment of the one CDI device the claim's spec holds.
func (p *plugin) cdiEnv(t *testing.T, c *resourceapi.ResourceClaim) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(p.cdiDir, "gpu.tessera.dev-claim-"+string(c.UID)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Devices []struct {
			ContainerEdits struct{ Env []string } `json:"containerEdits"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil || len(spec.Devices) != 1 {
		t.Fatalf("CDI spec %s: %v", raw, err)
	}
	return spec.Devices[0].ContainerEdits.Env
}

func TestKubeletPreparesClaimsThroughThePlugin(t *testing.T) {
	node := "dra-a"
	n := env.GPUNode(t, node, "dgx-h100", "rack-dra")
	topo := env.PublishTopology(t, node, "dgx-h100")
	uuid := func(i int) string { return topo.Status.Devices[i].UUID }
	dataDir := t.TempDir()
	// As the agent: the helper reads each claim with the agent's client.
	client := agentClient(t, n)
	p := startPlugin(t, node, client, &topo.Status, dataDir)
	ns := env.Namespace(t)

	pair := claim(t, ns, "pair", node, 0, true, "gpu-2", "gpu-3")
	res := p.prepare(t, pair)
	if res.GetError() != "" {
		t.Fatalf("prepare pair: %s", res.GetError())
	}
	var ids []string
	for _, d := range res.Devices {
		ids = append(ids, d.CdiDeviceIds...)
	}
	if want := []string{"gpu.tessera.dev/claim=" + string(pair.UID) + "-gpus"}; !slices.Equal(ids, want) {
		t.Errorf("CDI device IDs %v, want %v", ids, want)
	}
	if env := p.cdiEnv(t, pair); !slices.Contains(env, "NVIDIA_VISIBLE_DEVICES="+uuid(2)+","+uuid(3)) {
		t.Errorf("the container would see %v, want exactly GPUs 2 and 3 (%s, %s)", env, uuid(2), uuid(3))
	}

	unreserved := claim(t, ns, "unreserved", node, 0, false, "gpu-4")
	if res := p.prepare(t, unreserved); !strings.Contains(res.GetError(), "not reserved for any pod") {
		t.Errorf("unreserved claim: error %q, want it refused", res.GetError())
	}
	for _, name := range []string{"half-a", "half-b"} {
		if res := p.prepare(t, claim(t, ns, name, node, 500, true, "gpu-0")); res.GetError() != "" {
			t.Fatalf("share %s: %s", name, res.GetError())
		}
	}
	if res := p.prepare(t, claim(t, ns, "half-c", node, 500, true, "gpu-0")); !strings.Contains(res.GetError(), "1000 of its 1000 are prepared") {
		t.Errorf("a third half of gpu-0: error %q, want it refused", res.GetError())
	}

	// The plugin restarts (the agent's pod is replaced): what it prepared
	// holds; unprepare is fine twice.
	p.stop()
	restarted := startPlugin(t, node, client, &topo.Status, dataDir)
	if res := restarted.prepare(t, claim(t, ns, "rival", node, 0, true, "gpu-3")); !strings.Contains(res.GetError(), "prepared for "+ns+"/pair") {
		t.Errorf("after a restart, a claim on gpu-3, which pair holds: error %q, want refused naming pair", res.GetError())
	}
	for range 2 {
		if err := restarted.unprepare(t, pair); err != "" {
			t.Errorf("unprepare pair: %s", err)
		}
	}
}

// The chart's DeviceClass keeps its extendedResourceName on the real
// apiserver: DRAExtendedResource is on, so pods asking for nvidia.com/gpu
// can be served by the class where no device plugin advertises it.
func TestDeviceClassKeepsItsExtendedResourceName(t *testing.T) {
	rendered := env.RenderChart(t, []string{"templates/dra/deviceclass.yaml"}, "dra.enabled=true")
	if err := cluster.ApplyFromFiles(t.Context(), env.CR, rendered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.ResourceV1().DeviceClasses().Delete(context.Background(), dra.DriverName, metav1.DeleteOptions{})
	})
	class, err := env.Client.ResourceV1().DeviceClasses().Get(t.Context(), dra.DriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(class.Spec.ExtendedResourceName, ""); got != "nvidia.com/gpu" {
		t.Errorf("DeviceClass %s kept extendedResourceName %q, want nvidia.com/gpu: is DRAExtendedResource off?", class.Name, got)
	}
}
