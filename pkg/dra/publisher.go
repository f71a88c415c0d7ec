package dra

import (
	"context"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/dynamic-resource-allocation/resourceslice"
)

// Publisher keeps the node's ResourceSlice for the driver equal to the
// devices it is given, through the upstream ResourceSlice controller
// (owned by the Node, so that a deleted node's slice is collected). The
// controller starts with the first devices: started empty, it would delete
// a slice a previous run left if the first read of the GPUs came late.
type Publisher struct {
	ctx     context.Context
	client  kubernetes.Interface
	node    string
	onError func(ctx context.Context, err error, msg string)

	mu   sync.Mutex
	ctrl *resourceslice.Controller
	last []resourceapi.Device
}

// NewPublisher publishes for node once Publish is first called. onError
// hears of every failed write (the controller retries); DroppedFieldsError
// there means the apiserver lacks a DRA feature the devices use
// (DRAConsumableCapacity, DRADeviceTaints).
func NewPublisher(ctx context.Context, client kubernetes.Interface, node string, onError func(ctx context.Context, err error, msg string)) *Publisher {
	return &Publisher{ctx: ctx, client: client, node: node, onError: onError}
}

// Publish makes devices the node's slice, if they changed.
func (p *Publisher) Publish(devices []resourceapi.Device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctrl != nil && equality.Semantic.DeepEqual(p.last, devices) {
		return
	}
	p.last = devices
	resources := &resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		p.node: {Slices: []resourceslice.Slice{{Devices: devices}}},
	}}
	if p.ctrl != nil {
		p.ctrl.Update(resources)
		return
	}
	ctrl, err := resourceslice.StartController(p.ctx, resourceslice.Options{
		DriverName:   DriverName,
		KubeClient:   p.client,
		Owner:        &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: p.node},
		Resources:    resources,
		ErrorHandler: p.onError,
	})
	if err != nil {
		// Only a bad option fails here; the next read tries again.
		p.onError(p.ctx, err, "starting the ResourceSlice controller")
		p.last = nil
		return
	}
	p.ctrl = ctrl
}

// Stop stops publishing; the slice stays until the node goes.
func (p *Publisher) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ctrl.Stop()
}

// SysfsPCIeRoot reads a GPU's PCIe root complex from this machine's sysfs.
func SysfsPCIeRoot(pciBusID string) (string, bool) {
	attr, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(pciBusID)
	if err != nil || attr.Value.StringValue == nil {
		return "", false
	}
	return *attr.Value.StringValue, true
}
