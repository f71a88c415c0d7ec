package nodeagent

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

type staticLister []ContainerGPUs

func (s staticLister) ListGPUs(context.Context) ([]ContainerGPUs, error) { return s, nil }

func createPod(t *testing.T, h *harness, name, gpuIDs string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: h.agent.cfg.NodeName}}
	if gpuIDs != "" {
		pod.Annotations = map[string]string{tesserav1alpha1.AnnotationGPUIDs: gpuIDs}
	}
	if err := h.client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

func TestAttributionAndDrift(t *testing.T) {
	h := newHarness(t, "dgx-h100")
	sync := func() {
		t.Helper()
		h.sync(t)
		h.drainEvents()
	}
	h.sync(t) // learn the UUIDs
	uuid := func(i int) string { return h.topology(t).Status.Devices[i].UUID }

	createPod(t, h, "agrees", "0,1")
	createPod(t, h, "drifted", "2,3")
	createPod(t, h, "malformed", "two")
	createPod(t, h, "not-tessera", "")
	h.agent.cfg.PodResources = staticLister{
		{Namespace: "team-a", Pod: "agrees", Container: "train", DeviceIDs: []string{uuid(1), uuid(0)}},
		{Namespace: "team-a", Pod: "drifted", Container: "train", DeviceIDs: []string{uuid(4)}},
		{Namespace: "team-a", Pod: "drifted", Container: "sidecar", DeviceIDs: []string{"5"}}, // index-strategy ID
		{Namespace: "team-a", Pod: "malformed", Container: "c", DeviceIDs: []string{uuid(6)}},
		{Namespace: "team-a", Pod: "not-tessera", Container: "c", DeviceIDs: []string{uuid(7)}},
		{Namespace: "team-a", Pod: "agrees", Container: "train", DeviceIDs: []string{"GPU-not-on-this-node"}},
	}
	h.drainEvents()
	h.sync(t)
	events := h.drainEvents()
	want := []string{
		"Warning GPUAssignmentDrift scheduler assigned GPUs 2,3 but the containers hold GPUs 4,5: the device plugin chose other devices",
		`Warning InvalidGPUAssignment cannot check the GPU assignment: tessera.dev/gpu-ids="two": "two" is not a GPU index`,
	}
	if diff := cmp.Diff(want, slices.Sorted(slices.Values(events))); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got := testutil.ToFloat64(h.agent.metrics.drift); got != 1 {
		t.Errorf("drift counted %v times, want 1", got)
	}

	// What the kubelet reports is published for the scheduler, which trusts
	// it over the annotations, matching pods by UID.
	wantHolders := []tesserav1alpha1.GPUHolder{
		{Index: 0, Namespace: "team-a", Pod: "agrees", UID: "uid-agrees"}, {Index: 1, Namespace: "team-a", Pod: "agrees", UID: "uid-agrees"},
		{Index: 4, Namespace: "team-a", Pod: "drifted", UID: "uid-drifted"}, {Index: 5, Namespace: "team-a", Pod: "drifted", UID: "uid-drifted"},
		{Index: 6, Namespace: "team-a", Pod: "malformed", UID: "uid-malformed"}, {Index: 7, Namespace: "team-a", Pod: "not-tessera", UID: "uid-not-tessera"},
	}
	if diff := cmp.Diff(wantHolders, h.topology(t).Status.Holders); diff != "" {
		t.Errorf("published holders (-want +got):\n%s", diff)
	}

	// A lasting drift is reported once.
	sync()
	if got := testutil.ToFloat64(h.agent.metrics.drift); got != 1 {
		t.Errorf("drift counted %v times after a second sync, want still 1", got)
	}

	// Every held GPU shows up in the info metric, attributed to its container.
	const info = "tessera_gpu_container_info"
	if n := testutil.CollectAndCount(h.agent.metrics, info); n != 6 {
		t.Errorf("%d %s series, want 6 (GPUs 0,1,4,5,6,7)", n, info)
	}
	families, err := h.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() != info {
			continue
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["container"] == "sidecar" {
				found = true
				want := map[string]string{"container": "sidecar", "gpu": "5", "model": "NVIDIA H100 80GB HBM3", "namespace": "team-a", "node": "gpu-1", "pod": "drifted", "uuid": uuid(5)}
				if diff := cmp.Diff(want, labels); diff != "" {
					t.Errorf("sidecar's series labels (-want +got):\n%s", diff)
				}
			}
		}
	}
	if !found {
		t.Errorf("no %s series for the sidecar holding GPU 5 by index", info)
	}
}

// podResourcesServer is a stand-in kubelet serving the PodResources API on a
// unix socket, for the real gRPC client to talk to.
type podResourcesServer struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
}

func (podResourcesServer) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	return &podresourcesv1.ListPodResourcesResponse{PodResources: []*podresourcesv1.PodResources{{
		Namespace: "team-a", Name: "trainer",
		Containers: []*podresourcesv1.ContainerResources{
			{Name: "train", Devices: []*podresourcesv1.ContainerDevices{
				{ResourceName: "nvidia.com/gpu", DeviceIds: []string{"GPU-a", "GPU-b"}},
				{ResourceName: "rdma/ib", DeviceIds: []string{"mlx5_0"}},
			}},
			{Name: "no-gpu"},
		},
	}}}, nil
}

func TestKubeletPodResourcesClient(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "kubelet.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	podresourcesv1.RegisterPodResourcesListerServer(srv, podResourcesServer{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	k, err := DialPodResources(socket, "nvidia.com/gpu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	got, err := k.ListGPUs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []ContainerGPUs{{Namespace: "team-a", Pod: "trainer", Container: "train", DeviceIDs: []string{"GPU-a", "GPU-b"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListGPUs (-want +got):\n%s", diff)
	}
}
