package nvlink

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	configv1alpha1 "tessera.dev/tessera/apis/config/v1alpha1"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/topology"
	"tessera.dev/tessera/pkg/topology/published"
)

// claimStore is a claim tracker: claims by namespace/name.
type claimStore map[string]*resourceapi.ResourceClaim

func (s claimStore) Get(namespace, name string) (*resourceapi.ResourceClaim, error) {
	if c, ok := s[namespace+"/"+name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("claim %s/%s not found", namespace, name)
}

func (s claimStore) add(c *resourceapi.ResourceClaim) *resourceapi.ResourceClaim {
	s[c.Namespace+"/"+c.Name] = c
	return c
}

// gpuRequest asks count GPUs of class, each milli of one (0: whole).
func gpuRequest(name, class string, count, milli int64) resourceapi.DeviceRequest {
	e := &resourceapi.ExactDeviceRequest{DeviceClassName: class, AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: count}
	if milli > 0 {
		e.Capacity = &resourceapi.CapacityRequirements{Requests: map[resourceapi.QualifiedName]resource.Quantity{
			dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)}}
	}
	return resourceapi.DeviceRequest{Name: name, Exactly: e}
}

func gpuClaim(name string, requests ...resourceapi.DeviceRequest) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)},
		Spec:       resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: requests}},
	}
}

// allocated gives c an allocation of the devices (gpu-<index>) in pool,
// each consuming milli (0: no consumed capacity recorded, a whole GPU).
func allocated(c *resourceapi.ResourceClaim, driver, pool string, milli int64, indexes ...int32) *resourceapi.ResourceClaim {
	var results []resourceapi.DeviceRequestAllocationResult
	for _, i := range indexes {
		r := resourceapi.DeviceRequestAllocationResult{Request: "gpu", Driver: driver, Pool: pool, Device: dra.DeviceName(i)}
		if milli > 0 {
			r.ConsumedCapacity = map[resourceapi.QualifiedName]resource.Quantity{dra.CapacityMilli: *resource.NewQuantity(milli, resource.DecimalSI)}
		}
		results = append(results, r)
	}
	c.Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{Results: results}}
	return c
}

// withClaim gives pod a claim made from a template, named claim.
func withClaim(pod *v1.Pod, claim string) *v1.Pod {
	ref := fmt.Sprintf("c%d", len(pod.Spec.ResourceClaims))
	pod.Spec.ResourceClaims = append(pod.Spec.ResourceClaims, v1.PodResourceClaim{Name: ref, ResourceClaimTemplateName: ptr.To("tpl")})
	pod.Status.ResourceClaimStatuses = append(pod.Status.ResourceClaimStatuses, v1.PodResourceClaimStatus{Name: ref, ResourceClaimName: ptr.To(claim)})
	return pod
}

func TestClaimedGPUs(t *testing.T) {
	const class = dra.DeviceClassName
	tests := []struct {
		name   string
		claims []*resourceapi.ResourceClaim
		gpus   int
		share  int64
		err    string
	}{
		{name: "whole GPUs over requests and claims", claims: []*resourceapi.ResourceClaim{
			gpuClaim("a", gpuRequest("x", class, 2, 0), gpuRequest("y", class, 1, 1000)), gpuClaim("b", gpuRequest("x", class, 0, 0))}, gpus: 4},
		{name: "a share", claims: []*resourceapi.ResourceClaim{gpuClaim("a", gpuRequest("x", class, 1, 250))}, gpus: 0, share: 250},
		{name: "other classes and allocated claims left out", claims: []*resourceapi.ResourceClaim{
			gpuClaim("nic", gpuRequest("x", "nic.example.com", 4, 0)),
			allocated(gpuClaim("held", gpuRequest("x", class, 2, 0)), dra.DriverName, "n", 0, 0, 1),
			gpuClaim("one", gpuRequest("x", class, 1, 0))}, gpus: 1},
		{name: "allocation mode All is the allocator's", claims: []*resourceapi.ResourceClaim{
			gpuClaim("all", resourceapi.DeviceRequest{Name: "x", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class, AllocationMode: resourceapi.DeviceAllocationModeAll}})}},
		{name: "shares of two GPUs", claims: []*resourceapi.ResourceClaim{gpuClaim("a", gpuRequest("x", class, 2, 500))}, err: "shares of 2 GPUs"},
		{name: "a share with a whole GPU", claims: []*resourceapi.ResourceClaim{
			gpuClaim("a", gpuRequest("x", class, 1, 500)), gpuClaim("b", gpuRequest("x", class, 1, 0))}, err: "a share of one GPU comes with no other GPU"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gpus, share, err := claimedGPUs(tc.claims)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || gpus != tc.gpus || share != tc.share {
				t.Errorf("got %d GPUs, share %d, %v; want %d, %d", gpus, share, err, tc.gpus, tc.share)
			}
		})
	}
}

// A pod's request is its nvidia.com/gpu and its claims' GPUs together; a
// share through a claim is the pod's share.
func TestPodRequestReadsClaims(t *testing.T) {
	store := claimStore{}
	store.add(gpuClaim("two", gpuRequest("x", dra.DeviceClassName, 2, 0)))
	store.add(gpuClaim("quarter", gpuRequest("x", dra.DeviceClassName, 1, 250)))
	req, err := podRequest(withClaim(gpuPod("both", 1, ""), "two"), configv1alpha1.GPULocalityNone, store)
	if err != nil || req.gpus != 3 || req.milli != topology.MilliGPU {
		t.Errorf("nvidia.com/gpu: 1 and a 2-GPU claim: %+v, %v; want 3 whole GPUs", req, err)
	}
	req, err = podRequest(withClaim(gpuPod("share", 0, ""), "quarter"), configv1alpha1.GPULocalityNone, store)
	if err != nil || req.gpus != 1 || req.milli != 250 {
		t.Errorf("a 250-milli claim: %+v, %v; want one share of 250", req, err)
	}
	if _, err := podRequest(withClaim(gpuPod("mixed", 1, ""), "quarter"), configv1alpha1.GPULocalityNone, store); err == nil {
		t.Error("a share claim with nvidia.com/gpu: 1 was accepted")
	}
	// Without the claim yet (its template not made into one), the pod asks
	// for nothing of it: DynamicResources waits for the claim.
	req, err = podRequest(withClaim(gpuPod("waiting", 0, ""), "not-made"), configv1alpha1.GPULocalityNone, store)
	if err != nil || req.gpus != 0 {
		t.Errorf("a claim not made yet: %+v, %v; want no GPUs", req, err)
	}
}

// What claims are allocated on the node is held: a claim shared by two
// pods once, the scheduler's claim for a pod's nvidia.com/gpu instead of
// the pod's own count, devices of another node's pool or another driver
// not at all; a pod whose claim is not allocated yet holds what it asks.
func TestUseOfCountsClaimAllocations(t *testing.T) {
	n := shapeGPUs(t, "dgx-h100")
	store := claimStore{}
	store.add(allocated(gpuClaim("whole"), dra.DriverName, "n", 0, 2))
	store.add(allocated(gpuClaim("shared"), dra.DriverName, "n", 300, 4))
	store.add(allocated(gpuClaim("extended"), dra.DriverName, "n", 0, 5))
	store.add(allocated(gpuClaim("elsewhere"), dra.DriverName, "m", 0, 6))
	store.add(allocated(gpuClaim("nic"), "nic.example.com", "n", 0, 7))
	store.add(gpuClaim("planned", gpuRequest("x", dra.DeviceClassName, 2, 0)))
	extended := gpuPod("extended", 1, "")
	extended.Status.ExtendedResourceClaimStatus = &v1.PodExtendedResourceClaimStatus{ResourceClaimName: "extended"}
	info := nodeInfo("n", 8, nil,
		withClaim(gpuPod("a", 0, ""), "whole"),
		withClaim(gpuPod("b", 0, ""), "shared"),
		withClaim(gpuPod("c", 0, ""), "shared"),
		extended,
		withClaim(gpuPod("d", 0, ""), "elsewhere"),
		withClaim(gpuPod("e", 0, ""), "nic"),
		withClaim(gpuPod("f", 0, ""), "planned"), // a gang member being planned
	)
	used, fits := useOf(n, info, holders{reserved: newReservations(), claims: store})
	if !fits {
		t.Fatal("pods do not fit")
	}
	// The planned pod's two GPUs come from the search, like any pod's
	// without a record: the first idle pair of the NVSwitch node.
	want := topology.Usage{1000, 1000, 1000, 0, 300, 1000, 0, 0}
	if diff := cmp.Diff(want, used); diff != "" {
		t.Errorf("usage by position (-want +got):\n%s", diff)
	}
}

// The claims' allocation becomes the pod's assignment, which its binding
// writes as tessera.dev/gpu-ids, with the part of each GPU it holds.
func TestTakeAllocation(t *testing.T) {
	pl := &NVLinkTopology{reserved: newReservations(), topologies: newTopologyStore()}
	pod := gpuPod("p", 2, "")
	whole := func(indexes ...int) []published.Holding { return published.Holdings(indexes, topology.MilliGPU) }
	if _, same := pl.TakeAllocation(pod, "n", whole(0, 1)); !same {
		t.Error("a pod without a reservation reported a disagreement")
	}
	pl.reserved.set(pod.UID, newAssignment("n", []int{2, 3}, topology.MilliGPU))
	if chosen, same := pl.TakeAllocation(pod, "n", whole(2, 3)); !same || !cmp.Equal(chosen, []int{2, 3}) {
		t.Errorf("the chosen GPUs allocated: %v, same %v", chosen, same)
	}
	chosen, same := pl.TakeAllocation(pod, "n", []published.Holding{{Index: 4, Milli: 1000}, {Index: 6, Milli: 300}})
	if same || !cmp.Equal(chosen, []int{2, 3}) {
		t.Errorf("other GPUs allocated: chosen %v, same %v; want [2 3], false", chosen, same)
	}
	a, _ := pl.reserved.get(pod.UID)
	if want := []published.Holding{{Index: 4, Milli: 1000}, {Index: 6, Milli: 300}}; a.annotation != "4,6" || !cmp.Equal(a.held, want) {
		t.Errorf("assignment after the allocation: %+v, want GPUs 4,6 holding %v", a, want)
	}
}

// AllocatedGPUs merges a pod's claims per GPU.
func TestAllocatedGPUsMergesPerGPU(t *testing.T) {
	claims := []*resourceapi.ResourceClaim{
		allocated(gpuClaim("a"), dra.DriverName, "n", 300, 1),
		allocated(gpuClaim("b"), dra.DriverName, "n", 400, 1),
		allocated(gpuClaim("c"), dra.DriverName, "n", 0, 0),
	}
	got, ok := AllocatedGPUs(claims, "n")
	if want := []published.Holding{{Index: 0, Milli: 1000}, {Index: 1, Milli: 700}}; !ok || !cmp.Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, ok, want)
	}
}
