package nodeagent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

	"tessera.dev/tessera/pkg/topology"
)

// DefaultPodResourcesSocket is where the kubelet serves the PodResources API.
const DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"

// ContainerGPUs is the GPUs one container holds, as the kubelet reports them.
type ContainerGPUs struct {
	Namespace, Pod, Container string
	// DeviceIDs are the device plugin's IDs: GPU UUIDs, or NVML indexes
	// where the plugin runs with DEVICE_ID_STRATEGY=index.
	DeviceIDs []string
}

// PodResourcesLister lists which containers hold which GPUs.
type PodResourcesLister interface {
	ListGPUs(ctx context.Context) ([]ContainerGPUs, error)
}

// KubeletPodResources reads the kubelet's PodResources API over its socket.
type KubeletPodResources struct {
	conn     *grpc.ClientConn
	client   podresourcesv1.PodResourcesListerClient
	resource string
}

// DialPodResources connects to the kubelet's PodResources socket; the
// connection is made lazily, so a missing socket shows up in ListGPUs.
func DialPodResources(socket, resourceName string) (*KubeletPodResources, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to the kubelet PodResources socket %s: %w", socket, err)
	}
	return &KubeletPodResources{conn: conn, client: podresourcesv1.NewPodResourcesListerClient(conn), resource: resourceName}, nil
}

// Close closes the connection.
func (k *KubeletPodResources) Close() error { return k.conn.Close() }

// ListGPUs lists every container holding devices of the GPU resource.
func (k *KubeletPodResources) ListGPUs(ctx context.Context) ([]ContainerGPUs, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := k.client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing pod resources from the kubelet: %w", err)
	}
	var out []ContainerGPUs
	for _, pod := range resp.GetPodResources() {
		for _, c := range pod.GetContainers() {
			var ids []string
			for _, d := range c.GetDevices() {
				if d.GetResourceName() == k.resource {
					ids = append(ids, d.GetDeviceIds()...)
				}
			}
			if len(ids) > 0 {
				out = append(out, ContainerGPUs{Namespace: pod.GetNamespace(), Pod: pod.GetName(), Container: c.GetName(), DeviceIDs: ids})
			}
		}
	}
	return out, nil
}

// gpuIndex resolves a device plugin ID (UUID or index) to an NVML index.
// With time-slicing the device plugin advertises each GPU as replicas
// <id>::<n>; a replica is a share of the GPU it slices.
func gpuIndex(t *topology.Topology, id string) (int, bool) {
	id, _, _ = strings.Cut(id, "::")
	for _, g := range t.GPUs {
		if g.UUID == id {
			return g.Index, true
		}
	}
	if i, err := strconv.Atoi(id); err == nil {
		for _, g := range t.GPUs {
			if g.Index == i {
				return i, true
			}
		}
	}
	return 0, false
}
