package dra

import (
	"context"
	"fmt"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/dynamic-resource-allocation/resourceslice"
)

// Publisher keeps the node's ResourceSlice for the driver equal to the
// devices it is given, through the upstream ResourceSlice controller
// (owned by the Node, so that a deleted node's slice is collected).
type Publisher struct {
	node string
	ctrl *resourceslice.Controller

	mu   sync.Mutex
	last []resourceapi.Device
}

// StartPublisher starts publishing for node, with no devices until the
// first Publish. onError hears of every failed write (the controller
// retries); DroppedFieldsError there means the apiserver lacks a DRA
// feature the devices use (DRAConsumableCapacity, DRADeviceTaints).
func StartPublisher(ctx context.Context, client kubernetes.Interface, node string, onError func(ctx context.Context, err error, msg string)) (*Publisher, error) {
	ctrl, err := resourceslice.StartController(ctx, resourceslice.Options{
		DriverName:   DriverName,
		KubeClient:   client,
		Owner:        &resourceslice.Owner{APIVersion: "v1", Kind: "Node", Name: node},
		ErrorHandler: onError,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the ResourceSlice controller for %s: %w", node, err)
	}
	return &Publisher{node: node, ctrl: ctrl}, nil
}

// Publish makes devices the node's slice, if they changed.
func (p *Publisher) Publish(devices []resourceapi.Device) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil && equality.Semantic.DeepEqual(p.last, devices) {
		return
	}
	p.last = devices
	p.ctrl.Update(&resourceslice.DriverResources{Pools: map[string]resourceslice.Pool{
		p.node: {Slices: []resourceslice.Slice{{Devices: devices}}},
	}})
}

// Stop stops publishing; the slice stays until the node goes.
func (p *Publisher) Stop() { p.ctrl.Stop() }

// SysfsPCIeRoot reads a GPU's PCIe root complex from this machine's sysfs.
func SysfsPCIeRoot(pciBusID string) (string, bool) {
	attr, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(pciBusID)
	if err != nil || attr.Value.StringValue == nil {
		return "", false
	}
	return *attr.Value.StringValue, true
}
