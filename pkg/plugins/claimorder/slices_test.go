package claimorder

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	plfeature "k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/utils/ptr"

	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/dra"
)

// publishedSlice is the slice the node agent publishes for a node of shape.
func publishedSlice(t *testing.T, node, shape string) *resourceapi.ResourceSlice {
	t.Helper()
	status, err := gpunodes.TopologyStatus(node, shape)
	if err != nil {
		t.Fatal(err)
	}
	return &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-gpus"},
		Spec: resourceapi.ResourceSliceSpec{
			Driver: dra.DriverName, NodeName: ptr.To(node),
			Pool:    resourceapi.ResourcePool{Name: node, ResourceSliceCount: 1},
			Devices: dra.Devices(&status, nil),
		},
	}
}

func deviceNames(devices []resourceapi.Device) []string {
	out := make([]string, len(devices))
	for i, d := range devices {
		out[i] = d.Name
	}
	return out
}

func TestPutFirstListsTheChosenGPUsFirstFromThePublishedOrder(t *testing.T) {
	n1, n2 := publishedSlice(t, "n1", "l4-pcie"), publishedSlice(t, "n2", "l4-pcie")
	other := &resourceapi.ResourceSlice{ObjectMeta: metav1.ObjectMeta{Name: "nic"}, Spec: resourceapi.ResourceSliceSpec{
		Driver: "nic.example.com", NodeName: ptr.To("n1"), Devices: []resourceapi.Device{{Name: "gpu-1"}, {Name: "gpu-0"}}}}
	v := newSliceView([]*resourceapi.ResourceSlice{n1, other, n2})

	v.putFirst("n1", []int{3})
	v.putFirst("n1", []int{2, 1}) // each call starts from the published order
	if diff := cmp.Diff([]string{"gpu-2", "gpu-1", "gpu-0", "gpu-3"}, deviceNames(v.all[0].Spec.Devices)); diff != "" {
		t.Errorf("n1's devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"gpu-0", "gpu-1", "gpu-2", "gpu-3"}, deviceNames(v.all[2].Spec.Devices)); diff != "" {
		t.Errorf("n2's devices changed with n1's (-want +got):\n%s", diff)
	}
	if v.all[1] != other || deviceNames(other.Spec.Devices)[0] != "gpu-1" {
		t.Error("another driver's slice was copied or reordered")
	}
	if diff := cmp.Diff([]string{"gpu-0", "gpu-1", "gpu-2", "gpu-3"}, deviceNames(n1.Spec.Devices)); diff != "" {
		t.Errorf("the informer's slice was changed (-want +got):\n%s", diff)
	}
}

// gpuClass selects every device of the driver, as the chart's DeviceClass.
var gpuClass = &resourceapi.DeviceClass{
	ObjectMeta: metav1.ObjectMeta{Name: dra.DeviceClassName},
	Spec: resourceapi.DeviceClassSpec{Selectors: []resourceapi.DeviceSelector{{
		CEL: &resourceapi.CELDeviceSelector{Expression: `device.driver == "` + dra.DriverName + `"`},
	}}},
}

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

// gpuClaim asks for count GPUs of the class, or a share of milli of one.
func gpuClaim(name string, count, milli int64) *resourceapi.ResourceClaim {
	req := resourceapi.ExactDeviceRequest{DeviceClassName: dra.DeviceClassName, AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: count}
	if milli > 0 {
		req.Capacity = &resourceapi.CapacityRequirements{Requests: map[resourceapi.QualifiedName]resource.Quantity{
			dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)}}
	}
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(name)},
		Spec:       resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &req}}}},
	}
}

// The upstream allocator, built once for the cycle as DynamicResources'
// PreFilter builds it, with the scheduler's default features, allocates on
// each node the GPUs put first there before that node is filtered: whole
// GPUs, an NVLink-bridged pair that first fit would not take, and a share
// on the GPU chosen for it. Every upstream allocator that serves those
// features (the scheduler takes the first) is tried.
func TestAllocatorTakesTheGPUsPutFirst(t *testing.T) {
	features := dynamicresources.AllocatorFeatures(plfeature.NewSchedulerFeaturesFromGates(featureGate()))
	served := 0
	for _, name := range []string{"stable", "incubating", "experimental"} {
		structured.EnableAllocators(name)
		v := newSliceView([]*resourceapi.ResourceSlice{publishedSlice(t, "n1", "h100-nvl-pairs"), publishedSlice(t, "n2", "dgx-h100")})
		state := structured.AllocatedState{
			AllocatedDevices:         sets.New[structured.DeviceID](),
			AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
			AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
		}
		allocator, err := structured.NewAllocator(context.Background(), features, state, classes{gpuClass}, v.all,
			cel.NewCache(10, cel.Features{EnableConsumableCapacity: features.ConsumableCapacity}))
		if err != nil {
			t.Logf("the %s allocator does not serve the scheduler's features: %v", name, err)
			continue
		}
		served++
		tests := []struct {
			node   string
			chosen []int
			claim  *resourceapi.ResourceClaim
		}{
			{node: "n1", chosen: []int{4, 5}, claim: gpuClaim("bridged-pair", 2, 0)},
			{node: "n1", chosen: []int{6}, claim: gpuClaim("share", 1, 500)},
			{node: "n2", chosen: []int{1, 2, 5, 7}, claim: gpuClaim("whole", 4, 0)},
		}
		for _, tc := range tests {
			v.putFirst(tc.node, tc.chosen)
			results, err := allocator.Allocate(context.Background(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: tc.node}}, []*resourceapi.ResourceClaim{tc.claim})
			if err != nil || len(results) != 1 {
				t.Fatalf("%s allocator, claim %s on %s: %d results, %v", name, tc.claim.Name, tc.node, len(results), err)
			}
			var got []int
			for _, r := range results[0].Devices.Results {
				i, _ := dra.DeviceIndex(r.Device)
				got = append(got, i)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.chosen) {
				t.Errorf("%s allocator: claim %s on %s allocated GPUs %v, want the chosen %v", name, tc.claim.Name, tc.node, got, tc.chosen)
			}
		}
	}
	structured.EnableAllocators()
	if served == 0 {
		t.Fatal("no upstream allocator serves the scheduler's default features")
	}
}

type fixedSlices []*resourceapi.ResourceSlice

func (f fixedSlices) ListWithDeviceTaintRules() ([]*resourceapi.ResourceSlice, error) { return f, nil }

// Only the list PreFilter arms is copied and handed to the cycle: another
// caller of the lister (DynamicResources' node-allocatable path) gets the
// informer's slices.
func TestOnlyTheArmedListIsTheCycles(t *testing.T) {
	published := publishedSlice(t, "n1", "l4-pcie")
	c := &cycleSlices{upstream: fixedSlices{published}}
	if got, _ := c.ListWithDeviceTaintRules(); got[0] != published || c.take() != nil {
		t.Error("an unarmed list was copied or kept")
	}
	c.arm()
	got, _ := c.ListWithDeviceTaintRules()
	v := c.take()
	if got[0] == published || v == nil || v.all[0] != got[0] {
		t.Error("the armed list was not the cycle's copy")
	}
	if c.take() != nil {
		t.Error("the cycle's copy was handed out twice")
	}
}
