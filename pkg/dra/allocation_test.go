package dra

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/utils/ptr"
)

// The devices as Kubernetes' own structured allocator (the scheduler's
// DynamicResources plugin) reads them: whole-GPU claims and milli shares
// are counted against each GPU's milli capacity, and a tainted GPU is never
// allocated.

type classes []*resourceapi.DeviceClass

func (c classes) List() ([]*resourceapi.DeviceClass, error) { return c, nil }
func (c classes) Get(name string) (*resourceapi.DeviceClass, error) {
	for _, class := range c {
		if class.Name == name {
			return class, nil
		}
	}
	return nil, nil
}

var gpuClass = &resourceapi.DeviceClass{
	ObjectMeta: metav1.ObjectMeta{Name: DriverName},
	Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{{
		CEL: &resourceapi.CELDeviceSelector{Expression: `device.driver == "` + DriverName + `"`},
	}}},
}

// claim asks for one GPU of the class, or a share of milli of one.
func claim(name string, milli int64) *resourceapi.ResourceClaim {
	if milli == 0 {
		return claimOf(name, nil)
	}
	return claimOf(name, map[resourceapi.QualifiedName]resource.Quantity{CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)})
}

// claimOf asks for one GPU of the class with these capacities.
func claimOf(name string, capacity map[resourceapi.QualifiedName]resource.Quantity) *resourceapi.ResourceClaim {
	req := resourceapi.ExactDeviceRequest{DeviceClassName: DriverName, AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1}
	if capacity != nil {
		req.Capacity = &resourceapi.CapacityRequirements{Requests: capacity}
	}
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(name)},
		Spec:       resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &req}}}},
	}
}

// node holds the slice of twoIslands with gpu-1 made unhealthy too: one
// usable GPU (gpu-0), two tainted.
type node struct {
	slice *resourceapi.ResourceSlice
	state structured.AllocatedState
}

func oneUsableGPU() *node {
	status := twoIslands()
	status.Devices[1].Healthy = false
	return &node{
		slice: &resourceapi.ResourceSlice{
			ObjectMeta: metav1.ObjectMeta{Name: "n1-gpu"},
			Spec: resourceapi.ResourceSliceSpec{
				Driver: DriverName, NodeName: ptr.To("n1"),
				Pool:    resourceapi.ResourcePool{Name: "n1", ResourceSliceCount: 1},
				Devices: Devices(status, nil),
			},
		},
		state: structured.AllocatedState{
			AllocatedDevices:         sets.New[structured.DeviceID](),
			AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
			AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
		},
	}
}

// allocate runs the allocator for c on the node and records what it took;
// "" when c does not fit.
func (n *node) allocate(t *testing.T, c *resourceapi.ResourceClaim) (string, int64) {
	t.Helper()
	features := structured.Features{ConsumableCapacity: true, DeviceTaints: true}
	allocator, err := structured.NewAllocator(context.Background(), features, n.state, classes{gpuClass},
		[]*resourceapi.ResourceSlice{n.slice}, cel.NewCache(10, cel.Features{EnableConsumableCapacity: true}))
	if err != nil {
		t.Fatal(err)
	}
	results, err := allocator.Allocate(context.Background(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, []*resourceapi.ResourceClaim{c})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 {
		return "", 0
	}
	r := results[0].Devices.Results[0]
	id := structured.MakeDeviceID(r.Driver, r.Pool, r.Device)
	// The devices allow multiple allocations: every allocation, a whole
	// GPU too, is a share with its consumed capacity.
	if r.ShareID == nil {
		t.Fatalf("claim %s got %s without a share ID", c.Name, r.Device)
	}
	n.state.AllocatedSharedDeviceIDs.Insert(structured.MakeSharedDeviceID(id, r.ShareID))
	n.state.AggregatedCapacity.Insert(structured.NewDeviceConsumedCapacity(id, r.ConsumedCapacity))
	consumed := r.ConsumedCapacity[CapacityMilli]
	return r.Device, consumed.Value()
}

func TestTwoHalfSharesFitOneGPUAndAThirdDoesNot(t *testing.T) {
	n := oneUsableGPU()
	for _, c := range []string{"a", "b"} {
		if device, milli := n.allocate(t, claim(c, 500)); device != "gpu-0" || milli != 500 {
			t.Fatalf("share %s: got %q consuming %d, want gpu-0 consuming 500", c, device, milli)
		}
	}
	if device, _ := n.allocate(t, claim("c", 500)); device != "" {
		t.Errorf("a third 500-milli share got %s: gpu-0 is full and the others are tainted", device)
	}
}

func TestWholeGPUClaimTakesAllOfItsCapacity(t *testing.T) {
	n := oneUsableGPU()
	if device, milli := n.allocate(t, claim("whole", 0)); device != "gpu-0" || milli != MilliGPU {
		t.Fatalf("whole-GPU claim: got %q consuming %d, want gpu-0 consuming all 1000", device, milli)
	}
	if device, _ := n.allocate(t, claim("share", 1)); device != "" {
		t.Errorf("a share got %s beside a whole-GPU claim", device)
	}
}

func TestTaintedGPUIsNeverAllocated(t *testing.T) {
	n := oneUsableGPU()
	n.slice.Spec.Devices[0].Taints = []resourceapi.DeviceTaint{{Key: TaintUnhealthy, Value: "ECC", Effect: resourceapi.DeviceTaintEffectNoSchedule}}
	if device, _ := n.allocate(t, claim("whole", 0)); device != "" {
		t.Errorf("claim allocated %s with every GPU tainted", device)
	}
}

// A share's memory is counted when it asks for some (MPS memory limits):
// two shares with room in milli but not in memory do not both fit.
func TestShareMemoryIsCountedWhenAsked(t *testing.T) {
	n := oneUsableGPU()
	share := func(name, memory string) string {
		device, _ := n.allocate(t, claimOf(name, map[resourceapi.QualifiedName]resource.Quantity{
			CapacityMilli: resource.MustParse("300"), CapacityMemory: resource.MustParse(memory),
		}))
		return device
	}
	if device := share("a", "40Gi"); device != "gpu-0" {
		t.Fatalf("first share with 40Gi: got %q, want gpu-0", device)
	}
	if device := share("b", "50Gi"); device != "" {
		t.Errorf("a second share with 50Gi got %s: 90Gi is more than the GPU's 79.6Gi", device)
	}
	if device := share("c", "30Gi"); device != "gpu-0" {
		t.Errorf("a second share with 30Gi: got %q, want gpu-0", device)
	}
}

// The upstream allocator takes a node's devices in the order its slice lists
// them: of equally good GPUs, the first. Issue 17's planned route to make the
// allocation Tessera's choice (list the chosen GPUs first, per pod) rests on
// this; the test fails if an upstream release changes the order it tries.
func TestUpstreamAllocatorTakesDevicesInSliceOrder(t *testing.T) {
	twoGPUs := func(order ...int) *node {
		n := oneUsableGPU()
		healthy := twoIslands()
		healthy.Devices[2].Healthy = false // gpu-0 and gpu-1 usable, alike
		devices := Devices(healthy, nil)
		var listed []resourceapi.Device
		for _, i := range order {
			listed = append(listed, devices[i])
		}
		n.slice.Spec.Devices = listed
		return n
	}
	for _, order := range [][]int{{0, 1, 2}, {1, 0, 2}, {2, 1, 0}} {
		n := twoGPUs(order...)
		want := DeviceName(int32(order[0]))
		if order[0] == 2 {
			want = DeviceName(int32(order[1])) // gpu-2 is tainted
		}
		if device, _ := n.allocate(t, claim("first", 0)); device != want {
			t.Errorf("slice order %v: allocated %q, want %s, the first usable GPU listed", order, device, want)
		}
	}
}
